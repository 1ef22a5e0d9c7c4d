//! PEM (RFC 7468) encoding and decoding of certificates and CRLs.

use crate::core::error::{Error, Result};
use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Encodes DER as PEM with the given label (e.g. `CERTIFICATE`).
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes every PEM block labelled `label` in `text`, in order. Text
/// outside blocks (such as `openssl x509 -text` output) is ignored.
pub fn decode_all(text: &str, label: &str) -> Result<Vec<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        match &mut body {
            None if line == begin => body = Some(String::new()),
            None => {}
            Some(_) if line == end => {
                let b = body.take().expect("inside a block");
                let der = B64
                    .decode(b.as_bytes())
                    .map_err(|e| Error::format(format!("PEM {label}"), format!("bad base64: {e}")))?;
                out.push(der);
            }
            Some(b) => b.push_str(line),
        }
    }
    if body.is_some() {
        return Err(Error::format(format!("PEM {label}"), format!("missing {end}")));
    }
    Ok(out)
}

/// Decodes certificates from PEM text or, if the input is not PEM, treats it as one DER certificate.
pub fn certificates_from_bytes(bytes: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.contains("-----BEGIN") {
            let certs = decode_all(text, "CERTIFICATE")?;
            if certs.is_empty() {
                return Err(Error::format(what.to_string(), "no CERTIFICATE block found"));
            }
            return Ok(certs);
        }
    }
    if bytes.first() == Some(&0x30) {
        return Ok(vec![bytes.to_vec()]);
    }
    Err(Error::format(what.to_string(), "not a PEM or DER certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_many() {
        let a = vec![0x30, 1, 2, 3];
        let b = vec![0x30; 100];
        let text = format!("junk\n{}{}", encode("CERTIFICATE", &a), encode("CERTIFICATE", &b));
        assert_eq!(decode_all(&text, "CERTIFICATE").unwrap(), vec![a, b]);
    }

    #[test]
    fn unterminated_block() {
        let text = "-----BEGIN CERTIFICATE-----\nMAEC\n";
        assert!(decode_all(text, "CERTIFICATE").is_err());
    }
}
