//! The RSA arithmetic of signature verification: aws-lc-rs when the
//! `aws-lc` feature is on (the CLI's default), the pure-Rust `rsa` crate
//! otherwise, with the same verdicts.
//!
//! A key is admitted by the `rsa` crate's rules in both builds: its
//! SubjectPublicKeyInfo decoding (rsaEncryption with NULL parameters,
//! DER `RSAPublicKey`), a modulus of 1024 to 8192 bits, odd, an odd
//! exponent from 3 to 2^33 − 1 below the modulus. [`admitted_parts`]
//! applies exactly these to the DER (the same decoders, the same limits)
//! without building the `rsa` crate's key, whose Montgomery set-up costs as
//! much as a verification; what it does not admit goes to the `rsa` crate,
//! which gives the verdict and the error. aws-lc-rs then does the
//! public-key operation and the padding check for moduli of 2048 to 8192
//! bits, the range its verification parameters cover; a smaller modulus
//! (tka never accepts one in a certificate chain, `MIN_RSA_BITS`) is left
//! to the `rsa` crate. The rules are the same in
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

/// The scheme of an X.509 signature algorithm OID (dotted), `None` when
/// tka does not verify it.
pub(crate) fn scheme_of_oid(alg_oid: &str) -> Option<RsaScheme> {
    match alg_oid {
        "1.2.840.113549.1.1.11" => Some(RsaScheme::Pkcs1Sha256),
        "1.2.840.113549.1.1.12" => Some(RsaScheme::Pkcs1Sha384),
        "1.2.840.113549.1.1.13" => Some(RsaScheme::Pkcs1Sha512),
        _ => None,
    }
}

/// The modulus and exponent of an admitted key, big-endian, no leading zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RsaParts<'a> {
    /// The modulus.
    pub n: &'a [u8],
    /// The public exponent.
    pub e: &'a [u8],
}

impl RsaParts<'_> {
    /// Modulus size in bits (the position of its highest set bit).
    pub(crate) fn bits(&self) -> usize {
        self.n.first().map_or(0, |&top| (self.n.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
    }
}

/// The parts of the RSA key in `spki_der` when the `rsa` crate's
/// `PublicKey::from_public_key_der` (rsa 0.10) would accept it by the same
/// rules; `None` for anything else (the caller then asks the `rsa` crate,
/// which may accept a key this refuses, such as an id-RSASSA-PSS one, and
/// which says why it refuses).
pub(crate) fn admitted_parts(spki_der: &[u8]) -> Option<RsaParts<'_>> {
    use rsa::pkcs1::der::asn1::Null;
    let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der).ok()?;
    if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID || spki.algorithm.parameters_any().ok()? != Null.into() {
        return None;
    }
    let key = rsa::pkcs1::RsaPublicKeyRef::try_from(spki.subject_public_key.as_bytes()?).ok()?;
    let parts = RsaParts { n: key.modulus.as_bytes(), e: key.public_exponent.as_bytes() };
    // rsa::PublicKey::new: 1024..=8192 bits, n odd, e odd, 2 <= e <= 2^33 - 1, e < n.
    let (n_last, e_last) = (*parts.n.last()?, *parts.e.last()?);
    let e_value =
        parts.e.iter().try_fold(0u64, |v, &b| if v >> 56 == 0 { Some(v << 8 | u64::from(b)) } else { None })?;
    let e_below_n = parts.e.len() < parts.n.len() || (parts.e.len() == parts.n.len() && parts.e < parts.n);
    let admitted = (1024..=8192).contains(&parts.bits())
        && n_last & 1 == 1
        && e_last & 1 == 1
        && (2..=(1 << 33) - 1).contains(&e_value)
        && e_below_n;
    admitted.then_some(parts)
}

/// Verifies with the key in `spki_der` when the fast path applies (the
/// `aws-lc` feature, an admitted key of 2048 to 8192 bits); `None` leaves
/// the verdict to [`rsa_verify`] with the `rsa` crate's key.
pub(crate) fn verify_spki(spki_der: &[u8], scheme: RsaScheme, message: &[u8], sig: &[u8]) -> Option<bool> {
    #[cfg(feature = "aws-lc")]
    {
        let parts = admitted_parts(spki_der)?;
        aws_lc_verify_parts(parts, scheme, message, sig)
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        let _ = (spki_der, scheme, message, sig);
        None
    }
}

/// Verifies `sig` over `message` (not a digest) with `key` under `scheme`.
pub(crate) fn rsa_verify(key: &rsa::PublicKey, scheme: RsaScheme, message: &[u8], sig: &[u8]) -> bool {
    #[cfg(feature = "aws-lc")]
    if let Some(verdict) = aws_lc_verify(key, scheme, message, sig) {
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

/// The moduli aws-lc-rs's verification parameters accept.
#[cfg(feature = "aws-lc")]
const AWS_LC_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// `None` when the modulus is outside [`AWS_LC_BITS`] (the rsa crate decides).
#[cfg(feature = "aws-lc")]
fn aws_lc_verify(key: &rsa::PublicKey, scheme: RsaScheme, message: &[u8], sig: &[u8]) -> Option<bool> {
    use rsa::traits::PublicKeyParts;
    let (n, e) = (key.n().to_be_bytes(), key.e().to_be_bytes());
    aws_lc_verify_parts(RsaParts { n: minimal_be(&n), e: minimal_be(&e) }, scheme, message, sig)
}

/// `None` when the modulus is outside [`AWS_LC_BITS`].
#[cfg(feature = "aws-lc")]
fn aws_lc_verify_parts(parts: RsaParts<'_>, scheme: RsaScheme, message: &[u8], sig: &[u8]) -> Option<bool> {
    if !AWS_LC_BITS.contains(&parts.bits()) {
        return None;
    }
    let params: &aws_lc_rs::signature::RsaParameters = match scheme {
        RsaScheme::Pkcs1Sha256 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        RsaScheme::Pkcs1Sha384 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
        RsaScheme::Pkcs1Sha512 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
        RsaScheme::PssSha256 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
    };
    let components = aws_lc_rs::signature::RsaPublicKeyComponents { n: parts.n, e: parts.e };
    Some(components.verify(params, message, sig).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pkcs8::DecodePublicKey;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A DER INTEGER holding the unsigned big-endian `v` (minimal).
    fn integer(v: &[u8]) -> Vec<u8> {
        let v = minimal_be(v);
        let mut c = if v.first().is_none_or(|&b| b & 0x80 != 0) { vec![0] } else { vec![] };
        c.extend_from_slice(v);
        tlv(0x02, &c)
    }

    /// An rsaEncryption SubjectPublicKeyInfo: `params` is the DER after the
    /// OID (NULL normally), `unused` the BIT STRING's unused-bit count.
    fn spki(n: &[u8], e: &[u8], params: &[u8], unused: u8) -> Vec<u8> {
        let oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        let alg = tlv(0x30, &[&oid[..], params].concat());
        let key = tlv(0x30, &[integer(n), integer(e)].concat());
        let bits = tlv(0x03, &[&[unused][..], &key].concat());
        tlv(0x30, &[alg, bits].concat())
    }

    /// An odd modulus of exactly `bits` bits.
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0xa5u8; bits.div_ceil(8)];
        let top_bits = bits - (n.len() - 1) * 8;
        n[0] = (0xa5u8 >> (8 - top_bits)) | (1 << (top_bits - 1));
        *n.last_mut().unwrap() |= 1;
        n
    }

    /// `admitted_parts` admits exactly what `rsa::PublicKey::from_public_key_der`
    /// accepts among rsaEncryption keys, with the same modulus and exponent,
    /// at every limit of the `rsa` crate's rules.
    #[test]
    fn admitted_parts_agrees_with_the_rsa_crate() {
        let null = [0x05, 0x00];
        let f4 = [0x01, 0x00, 0x01];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("2048-bit, e = 65537", spki(&modulus(2048), &f4, &null, 0)),
            ("2047-bit", spki(&modulus(2047), &f4, &null, 0)),
            ("1024-bit", spki(&modulus(1024), &f4, &null, 0)),
            ("1023-bit", spki(&modulus(1023), &f4, &null, 0)),
            ("8192-bit", spki(&modulus(8192), &f4, &null, 0)),
            ("8193-bit", spki(&modulus(8193), &f4, &null, 0)),
            ("even modulus", spki(&[&modulus(2048)[..255], &[0xa4]].concat(), &f4, &null, 0)),
            ("e = 3", spki(&modulus(2048), &[3], &null, 0)),
            ("e = 1", spki(&modulus(2048), &[1], &null, 0)),
            ("e = 2", spki(&modulus(2048), &[2], &null, 0)),
            ("even e", spki(&modulus(2048), &[0x01, 0x00, 0x00], &null, 0)),
            ("e = 2^33 - 1", spki(&modulus(2048), &[0x01, 0xff, 0xff, 0xff, 0xff], &null, 0)),
            ("e = 2^33 + 1", spki(&modulus(2048), &[0x02, 0x00, 0x00, 0x00, 0x01], &null, 0)),
            ("e of 9 bytes", spki(&modulus(2048), &[1, 0, 0, 0, 0, 0, 0, 0, 1], &null, 0)),
            ("e above n", spki(&modulus(1024), &modulus(1025), &null, 0)),
            ("no parameters", spki(&modulus(2048), &f4, &[], 0)),
            ("parameters not NULL", spki(&modulus(2048), &f4, &[0x04, 0x00], 0)),
            ("unused bits", spki(&modulus(2048), &f4, &null, 1)),
            ("trailing byte", [spki(&modulus(2048), &f4, &null, 0), vec![0]].concat()),
        ];
        for (what, der) in &cases {
            let ours = admitted_parts(der);
            let theirs = rsa::PublicKey::from_public_key_der(der);
            match (ours, &theirs) {
                (Some(p), Ok(k)) => {
                    use rsa::traits::PublicKeyParts;
                    assert_eq!(p.n, minimal_be(&k.n().to_be_bytes()), "{what}");
                    assert_eq!(p.e, minimal_be(&k.e().to_be_bytes()), "{what}");
                    assert_eq!(p.bits(), k.n().as_ref().bit_width() as usize, "{what}");
                }
                (None, Err(_)) => {}
                (ours, theirs) => panic!("{what}: admitted {:?}, rsa crate {:?}", ours.is_some(), theirs.is_ok()),
            }
        }
        // The limits above really are on both sides of the line.
        let admitted: Vec<&str> = cases.iter().filter(|(_, d)| admitted_parts(d).is_some()).map(|(w, _)| *w).collect();
        assert_eq!(admitted, ["2048-bit, e = 65537", "2047-bit", "1024-bit", "8192-bit", "e = 3", "e = 2^33 - 1"]);
    }

    #[test]
    fn minimal_be_strips_leading_zeros_only() {
        assert_eq!(minimal_be(&[0, 0, 1, 0, 1]), &[1, 0, 1]);
        assert_eq!(minimal_be(&[0, 0]), &[] as &[u8]);
        assert_eq!(minimal_be(&[7]), &[7]);
    }
}
