//! Salted component hashing and the CMID.
//!
//! Everything in this file is pinned by the golden test in
//! `tests/machine.rs`: changing a byte of the framing de-activates every
//! machine in the field, so don't, or bump the version tags and migrate.

use super::component::ComponentHash;
use super::kinds::{self, cmid_steps};
use crate::core::sha256::Sha256;
use base64::Engine;

/// Domain tag of the product-scoped salt.
const SALT_TAG: &[u8] = b"tka-machine-salt-v1\0";
/// Domain tag of the CMID derivation.
const CMID_TAG: &[u8] = b"tka-cmid-v1\0";
/// Bytes of SHA-256 kept in a component hash (96 bits -> 16 base64url chars).
pub const COMPONENT_HASH_BYTES: usize = 12;
/// Crockford base32 alphabet (no I, L, O, U).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Number of data symbols in a CMID (16 x 5 = 80 bits).
const CMID_DATA_SYMBOLS: usize = 16;

/// The product-scoped salt: `SHA-256("tka-machine-salt-v1" NUL || product)`.
pub fn product_salt(product: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SALT_TAG);
    h.update(product.as_bytes());
    h.finalize()
}

fn put_framed(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u32).to_be_bytes());
    h.update(bytes);
}

/// Hashes one normalized component value for `product`:
///
/// `SHA-256(salt || be32(len kind) || kind || be32(len value) || value)`,
/// truncated to 12 bytes and encoded as base64url without padding (16 chars).
pub fn hash_component(product: &str, kind: &str, normalized_value: &str) -> String {
    let salt = product_salt(product);
    let mut h = Sha256::new();
    h.update(salt);
    put_framed(&mut h, kind.as_bytes());
    put_framed(&mut h, normalized_value.as_bytes());
    let digest = h.finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..COMPONENT_HASH_BYTES])
}

/// Which components the CMID is derived from, in the documented priority
/// (the [`CmidTier`](super::kinds::CmidTier)s of the kinds table,
/// [`cmid_steps`]):
///
/// 1. an explicit identity (`xid`) — alone;
/// 2. otherwise the OS install id (`mid`) and the DMI product UUID (`dmi`),
///    whichever of the two are present;
/// 3. otherwise the first present of board serial (`bsn`), product serial
///    (`psn`), chassis serial (`csn`), root filesystem UUID (`rfs`), disk
///    serial (`dsk`);
/// 4. otherwise (only MACs / CPU model / unknown kinds exist) everything.
///
/// MACs and the CPU model are never used while anything better exists, so a
/// NIC or CPU swap doesn't change the CMID.
pub fn cmid_basis(components: &[ComponentHash]) -> Vec<&ComponentHash> {
    let mut chosen: Vec<&ComponentHash> = Vec::new();
    for step in cmid_steps() {
        chosen = components.iter().filter(|c| step.contains(&c.kind.as_str())).collect();
        if !chosen.is_empty() {
            break;
        }
    }
    if chosen.is_empty() {
        chosen = components.iter().collect();
    }
    chosen.sort_by(|a, b| (kinds::rank(&a.kind), &a.kind, &a.hash).cmp(&(kinds::rank(&b.kind), &b.kind, &b.hash)));
    chosen.dedup();
    chosen
}

/// Derives the CMID from (already hashed) components.
///
/// Anyone holding the component hashes (e.g. the issuer reading an
/// activation request) can recompute it, so a request whose CMID does not
/// match its components can be rejected. Returns `None` for no components.
pub fn cmid_from_components(components: &[ComponentHash]) -> Option<String> {
    let basis = cmid_basis(components);
    if basis.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    h.update(CMID_TAG);
    for c in &basis {
        put_framed(&mut h, c.kind.as_bytes());
        put_framed(&mut h, c.hash.as_bytes());
    }
    let digest = h.finalize();
    // First 80 bits as 16 base32 symbols, most significant first.
    let mut value: u128 = 0;
    for b in &digest[..10] {
        value = (value << 8) | u128::from(*b);
    }
    Some(cmid_from_value(value))
}

/// The CMID written for an 80-bit value (the low 80 bits of `value`): 16
/// base32 symbols, most significant first, and the check symbol. Larger
/// values give CMIDs that sort after smaller ones (byte order).
pub(crate) fn cmid_from_value(value: u128) -> String {
    let mut symbols = [0u8; CMID_DATA_SYMBOLS];
    for (i, s) in symbols.iter_mut().enumerate() {
        let shift = 5 * (CMID_DATA_SYMBOLS - 1 - i);
        *s = ((value >> shift) & 0x1f) as u8;
    }
    let check = luhn_mod32_check(&symbols);
    format_cmid(&symbols, check)
}

fn format_cmid(symbols: &[u8], check: u8) -> String {
    let mut out = String::with_capacity(21);
    for (i, s) in symbols.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(CROCKFORD[*s as usize] as char);
    }
    out.push('-');
    out.push(CROCKFORD[check as usize] as char);
    out
}

/// Luhn mod N (N = 32) check symbol over `symbols` (values 0..32).
///
/// Detects every single-symbol substitution and most adjacent transpositions.
fn luhn_mod32_check(symbols: &[u8]) -> u8 {
    const N: u32 = 32;
    let mut factor = 2;
    let mut sum = 0u32;
    for &s in symbols.iter().rev() {
        let mut addend = factor * u32::from(s);
        factor = if factor == 2 { 1 } else { 2 };
        addend = addend / N + addend % N;
        sum += addend;
    }
    ((N - sum % N) % N) as u8
}

fn crockford_value(c: char) -> Option<u8> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    CROCKFORD.iter().position(|&a| a as char == c).map(|p| p as u8)
}

/// Parses a CMID typed by a human: case-insensitive, hyphens and spaces
/// ignored, Crockford aliases accepted (`O` = `0`, `I`/`L` = `1`). Returns the
/// canonical grouped form if the check character verifies.
pub fn normalize_cmid(s: &str) -> Option<String> {
    let mut symbols = Vec::with_capacity(CMID_DATA_SYMBOLS + 1);
    for c in s.chars() {
        if c == '-' || c == ' ' {
            continue;
        }
        symbols.push(crockford_value(c)?);
    }
    if symbols.len() != CMID_DATA_SYMBOLS + 1 {
        return None;
    }
    let check = symbols.pop()?;
    if luhn_mod32_check(&symbols) != check {
        return None;
    }
    Some(format_cmid(&symbols, check))
}

/// Whether `s` is a well-formed CMID whose check character verifies.
pub fn validate_cmid(s: &str) -> bool {
    normalize_cmid(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_detects_every_single_substitution() {
        let body: Vec<u8> = (0..16).map(|i| (i * 7 + 3) % 32).collect();
        let check = luhn_mod32_check(&body);
        for pos in 0..16 {
            for v in 0..32u8 {
                if v == body[pos] {
                    continue;
                }
                let mut b = body.clone();
                b[pos] = v;
                assert_ne!(luhn_mod32_check(&b), check, "pos {pos} value {v}");
            }
        }
    }

    #[test]
    fn cmid_shape_and_roundtrip() {
        let c = vec![ComponentHash { kind: "mid".into(), hash: "AAAAAAAAAAAAAAAA".into() }];
        let cmid = cmid_from_components(&c).unwrap();
        assert_eq!(cmid.len(), 21);
        assert_eq!(cmid.matches('-').count(), 4);
        assert!(validate_cmid(&cmid));
        assert_eq!(normalize_cmid(&cmid.to_lowercase().replace('-', "")).as_deref(), Some(cmid.as_str()));
        assert!(cmid_from_components(&[]).is_none());
    }
}
