//! The RSA arithmetic of signature verification: aws-lc-rs when the
//! `aws-lc` feature is on (the CLI's default), the pure-Rust `rsa` crate
//! otherwise, with the same verdicts.
//!
//! The key is always admitted by the `rsa` crate first (its parsing rules:
//! modulus of 1024 to 8192 bits, odd; odd exponent from 3 to 2^33 − 1,
//! below the modulus), so both builds accept and refuse the same keys.
//! aws-lc-rs then does the public-key operation and the padding check for
//! moduli of 2048 to 8192 bits, the range its verification parameters
//! cover; a smaller modulus (tka never accepts one in a certificate chain,
//! `MIN_RSA_BITS`) is left to the `rsa` crate. The rules are the same in
//! both: the signature is exactly as long as the modulus, below it, PKCS#1
//! v1.5 with the DigestInfo of the named hash, PSS with MGF1 of the same
//! hash and a salt exactly as long as the hash (RFC 7518 §3.5). Wycheproof
//! (tests/wycheproof.rs) checks that the two agree on every vector.

use sha2::{Sha256, Sha384, Sha512};

/// Which library does the RSA arithmetic when tka verifies a signature:
/// `"aws-lc-rs"` (cargo feature `aws-lc`) or `"rsa crate"`.
pub const VERIFY_BACKEND: &str = if cfg!(feature = "aws-lc") { "aws-lc-rs" } else { "rsa crate" };

/// An RSA signature scheme tka verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RsaScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Pkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384 (certificates only).
    Pkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512 (certificates only).
    Pkcs1Sha512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    PssSha256,
}

/// Verifies `sig` over `message` (not a digest) with `key` under `scheme`.
pub(crate) fn rsa_verify(key: &rsa::PublicKey, scheme: RsaScheme, message: &[u8], sig: &[u8]) -> bool {
    #[cfg(feature = "aws-lc")]
    if let Some(verdict) = aws_lc::verify(key, scheme, message, sig) {
        return verdict;
    }
    rsa_crate_verify(key, scheme, message, sig)
}

/// The pure-Rust verification, whatever the features.
pub(crate) fn rsa_crate_verify(key: &rsa::PublicKey, scheme: RsaScheme, message: &[u8], sig: &[u8]) -> bool {
    match scheme {
        RsaScheme::Pkcs1Sha256 => key.pkcs1v15_verify::<Sha256>(message, sig).is_ok(),
        RsaScheme::Pkcs1Sha384 => key.pkcs1v15_verify::<Sha384>(message, sig).is_ok(),
        RsaScheme::Pkcs1Sha512 => key.pkcs1v15_verify::<Sha512>(message, sig).is_ok(),
        RsaScheme::PssSha256 => key.pss_verify::<Sha256>(message, sig).is_ok(),
    }
}

/// Big-endian bytes without leading zeros (aws-lc-rs refuses them).
#[cfg_attr(not(feature = "aws-lc"), allow(dead_code))]
fn minimal_be(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

#[cfg(feature = "aws-lc")]
mod aws_lc {
    use super::{minimal_be, RsaScheme};
    use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents};
    use rsa::traits::PublicKeyParts;

    /// The moduli aws-lc-rs's verification parameters accept.
    const BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

    /// `None` when the modulus is outside [`BITS`] (the rsa crate decides).
    pub(super) fn verify(key: &rsa::PublicKey, scheme: RsaScheme, message: &[u8], sig: &[u8]) -> Option<bool> {
        if !BITS.contains(&(key.n().as_ref().bit_width() as usize)) {
            return None;
        }
        let params: &RsaParameters = match scheme {
            RsaScheme::Pkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaScheme::Pkcs1Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            RsaScheme::Pkcs1Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            RsaScheme::PssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        };
        let (n, e) = (key.n().to_be_bytes(), key.e().to_be_bytes());
        let components = RsaPublicKeyComponents { n: minimal_be(&n), e: minimal_be(&e) };
        Some(components.verify(params, message, sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_be_strips_leading_zeros_only() {
        assert_eq!(minimal_be(&[0, 0, 1, 0, 1]), &[1, 0, 1]);
        assert_eq!(minimal_be(&[0, 0]), &[] as &[u8]);
        assert_eq!(minimal_be(&[7]), &[7]);
    }
}
