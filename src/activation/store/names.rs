//! File names in the store and the small encodings behind them: product
//! names, revocation keys, root fingerprints, PEM.

use crate::core::store_error::StoreError;
use base64::Engine as _;

/// Longest CRL / revocation-list key accepted (hex digits).
pub(crate) const MAX_KEY_LEN: usize = 128;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// Checks that `product` can be used as a file name in the store.
pub(crate) fn check_product(product: &str) -> Result<(), StoreError> {
    if crate::core::request::is_plain_name(product) {
        Ok(())
    } else {
        Err(StoreError::BadProduct(product.to_string()))
    }
}

/// Whether `s` is 1..=`max` lowercase hex digits.
fn is_lower_hex(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a CRL / revocation-list key.
pub(crate) fn check_key(key: &str) -> Result<(), StoreError> {
    if is_lower_hex(key, MAX_KEY_LEN) {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_string()))
    }
}

/// Checks a token revocation-list key: `<root fingerprint>-<list id>` (64
/// lowercase hex digits, `-`, 1 to 128 lowercase hex digits), or a bare list
/// id as stores before issuer-bound keys wrote them.
pub(crate) fn check_list_key(key: &str) -> Result<(), StoreError> {
    let ok = match key.split_once('-') {
        Some((fp, id)) => is_fingerprint(fp) && is_lower_hex(id, MAX_KEY_LEN),
        None => is_lower_hex(key, MAX_KEY_LEN),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_string()))
    }
}

/// Whether `s` looks like a full root fingerprint (64 lowercase hex digits).
pub(crate) fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s, 64)
}

/// Lowercase hex SHA-256 of `der`.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    crate::core::pki::sha256_hex(der)
}

/// Normalises a user-supplied fingerprint or prefix: drops `:` separators,
/// lowercases, and requires at least `min` hex digits.
pub(crate) fn normalize_fingerprint_prefix(sel: &str, min: usize) -> Result<String, StoreError> {
    let norm: String = sel.chars().filter(|c| *c != ':').map(|c| c.to_ascii_lowercase()).collect();
    if norm.len() >= min && is_lower_hex(&norm, 64) {
        Ok(norm)
    } else {
        Err(StoreError::BadFingerprint(sel.to_string()))
    }
}

/// PEM-encodes a certificate: one `CERTIFICATE` block, 64-column base64.
pub(crate) fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str(PEM_BEGIN);
    out.push('\n');
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(PEM_END);
    out.push('\n');
    out
}

/// Decodes exactly one PEM `CERTIFICATE` block (surrounding whitespace
/// allowed, nothing else).
pub(crate) fn pem_decode(text: &str) -> Result<Vec<u8>, String> {
    let body = text
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or_else(|| "expected exactly one PEM CERTIFICATE block".to_string())?;
    let b64: String = body.split_ascii_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("bad base64 in PEM body: {e}"))?;
    if der.is_empty() {
        return Err("empty PEM body".to_string());
    }
    Ok(der)
}

/// Whether `name` is a temporary file left by `fsutil::write_atomic`
/// (`.<name>.<16 hex>.tmp`).
pub(crate) fn is_write_temp(name: &str) -> bool {
    let Some(stem) = name.strip_prefix('.').and_then(|s| s.strip_suffix(".tmp")) else {
        return false;
    };
    match stem.rsplit_once('.') {
        Some((base, rnd)) => !base.is_empty() && rnd.len() == 16 && is_lower_hex(rnd, 16),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names() {
        for ok in ["a", "Office-2024", "x.y_z", &"p".repeat(64), "0"] {
            check_product(ok).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"p".repeat(65), "a\0"] {
            assert!(matches!(check_product(bad), Err(StoreError::BadProduct(n)) if n == bad));
        }
    }

    #[test]
    fn keys() {
        check_key("00ff").unwrap();
        for bad in ["", "00FF", "xyz", "../a", &"a".repeat(129)] {
            assert!(matches!(check_key(bad), Err(StoreError::BadKey(_))));
            assert!(matches!(check_list_key(bad), Err(StoreError::BadKey(_))));
        }
        let fp = "0f".repeat(32);
        check_list_key("00ff").unwrap();
        check_list_key(&format!("{fp}-00ff")).unwrap();
        for bad in [format!("{fp}-"), format!("{fp}-00FF"), "00ff-00ff".to_string(), format!("{fp}-{fp}-00")] {
            assert!(matches!(check_list_key(&bad), Err(StoreError::BadKey(_))), "{bad}");
        }
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = pem_encode(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(pem_decode(&pem).unwrap(), der);
        assert!(pem_decode(&format!("{pem}{pem}")).is_err());
        assert!(pem_decode("garbage").is_err());
    }

    #[test]
    fn fingerprint_prefixes() {
        assert_eq!(normalize_fingerprint_prefix("AB:cd:01:23", 4).unwrap(), "abcd0123");
        assert!(normalize_fingerprint_prefix("abc", 4).is_err());
        assert!(normalize_fingerprint_prefix("abcg", 4).is_err());
        assert!(is_fingerprint(&fingerprint(b"x")));
    }

    #[test]
    fn temp_names() {
        assert!(is_write_temp(".state.json.0123456789abcdef.tmp"));
        assert!(!is_write_temp(".state.json.tmp"));
        assert!(!is_write_temp("state.json.0123456789abcdef.tmp"));
        assert!(!is_write_temp("..0123456789abcdef.tmp"));
    }
}
