//! A parsed certificate (read with x509-parser) reduced to the facts path
//! validation and `cert inspect` need.

use super::delegation::{Delegation, TKA_DELEGATION_OID};
use crate::core::error::VerifyError;
use crate::core::hex::lower_hex;
use crate::core::keys::backend;
use x509_parser::prelude::*;

/// OID of the tka token-signing extended key usage:
/// `2.25.111504080495062926421002432311158376797`, a UUID-based OID
/// (ITU-T X.667, UUID 53e2e79e-00b4-41bf-a154-cf7fb6c8095d) fixed once for tka.
pub const TKA_TOKEN_SIGNING_EKU: &str = "2.25.111504080495062926421002432311158376797";

/// Largest certificate tka parses.
pub const MAX_CERT_SIZE: usize = 16 * 1024;

/// Extensions tka understands and processes when critical.
const KNOWN_CRITICAL: [&str; 6] = [
    "2.5.29.19", // basicConstraints
    "2.5.29.15", // keyUsage
    "2.5.29.37", // extKeyUsage
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.35", // authorityKeyIdentifier
    TKA_DELEGATION_OID,
];

/// What a certificate says, extracted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER (the `kid` of tokens it signs).
    pub fingerprint: String,
    /// Subject in RFC 4514 form.
    pub subject: String,
    /// Issuer in RFC 4514 form.
    pub issuer: String,
    /// DER of the subject name, for exact chaining.
    pub subject_raw: Vec<u8>,
    /// DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// Serial in uppercase hex, as `openssl x509 -serial` prints it.
    pub serial_hex: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// basicConstraints cA (false when the extension is absent).
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// keyUsage: `Some((digitalSignature, keyCertSign, cRLSign))` when present.
    pub key_usage: Option<(bool, bool, bool)>,
    /// extKeyUsage OIDs in dotted form, when present.
    pub eku: Option<Vec<String>>,
    /// subjectKeyIdentifier.
    pub ski: Option<Vec<u8>>,
    /// authorityKeyIdentifier keyIdentifier.
    pub aki: Option<Vec<u8>>,
    /// The tka delegation extension: what the tokens below this
    /// certificate may be ([`Delegation`]); enforced critical or not.
    pub delegation: Option<Delegation>,
    /// Critical extensions tka does not process.
    pub unknown_critical: Vec<String>,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The signed part (TBSCertificate DER).
    pub tbs_der: Vec<u8>,
    /// Outer signature algorithm OID.
    pub sig_alg: String,
    /// DER of the outer signature algorithm parameters, if any.
    pub sig_params: Option<Vec<u8>>,
    /// Signature bytes.
    pub signature: Vec<u8>,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    lower_hex(&crate::core::sha256::digest(bytes))
}

/// RFC 4514 string form: most specific RDN first (`CN=Signer,O=Example`),
/// the order `--subject` takes. Written into one string.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<&RelativeDistinguishedName<'_>> = name.iter_rdn().collect();
    let mut out = String::with_capacity(name.as_raw().len());
    for (i, rdn) in rdns.into_iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type();
            match NAME_ABBREVIATIONS.iter().find(|(bytes, _)| *bytes == oid.as_bytes()) {
                Some((_, key)) => out.push_str(key),
                None => match x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry()) {
                    Ok(key) => out.push_str(key),
                    Err(_) => out.push_str(&oid_to_string(oid.as_bytes())),
                },
            }
            out.push('=');
            match atv.as_str() {
                Ok(v) => {
                    for c in v.chars() {
                        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
                Err(_) => {
                    out.push('#');
                    out.push_str(&lower_hex(atv.as_slice()));
                }
            }
        }
    }
    out
}

/// The attribute types x509-parser abbreviates in names (its `oid2abbrev`
/// table), by their content bytes: a name made of these is written without
/// x509-parser's OID registry, which is built (hundreds of entries hashed
/// into a map) the first time it is asked for, some 15 µs of every
/// verification process. Other attribute types still go to the registry.
const NAME_ABBREVIATIONS: [(&[u8], &str); 8] = [
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19], "DC"),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01], "Email"),
];

/// OIDs met in every certificate, by their content bytes: what
/// [`oid_to_string`] makes of exactly these bytes, without the arithmetic.
const KNOWN_OIDS: [(&[u8], &str); 12] = [
    (&[0x55, 0x1d, 0x13], "2.5.29.19"),
    (&[0x55, 0x1d, 0x0f], "2.5.29.15"),
    (&[0x55, 0x1d, 0x25], "2.5.29.37"),
    (&[0x55, 0x1d, 0x0e], "2.5.29.14"),
    (&[0x55, 0x1d, 0x23], "2.5.29.35"),
    (&[0x55, 0x1d, 0x11], "2.5.29.17"),
    (&[0x55, 0x1d, 0x1f], "2.5.29.31"),
    (&[0x55, 0x1d, 0x20], "2.5.29.32"),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a], "1.2.840.113549.1.1.10"),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], "1.2.840.113549.1.1.11"),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], "1.2.840.113549.1.1.12"),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], "1.2.840.113549.1.1.13"),
];

/// Content bytes of [`TKA_TOKEN_SIGNING_EKU`] (checked against the
/// encoder in the tests).
const TKA_EKU_BYTES: [u8; 20] = [
    0x69, 0x81, 0xa7, 0xe2, 0xf3, 0xe7, 0xc0, 0x8b, 0xa2, 0x86, 0xff, 0xa1, 0xaa, 0xb3, 0xef, 0xfb, 0xb6, 0xa0, 0x92,
    0x5d,
];

/// [`oid_to_string`], borrowed for the OIDs of [`KNOWN_OIDS`] and the tka
/// token-signing EKU.
fn oid_str(bytes: &[u8]) -> std::borrow::Cow<'static, str> {
    if bytes == TKA_EKU_BYTES {
        return TKA_TOKEN_SIGNING_EKU.into();
    }
    match KNOWN_OIDS.iter().find(|(b, _)| *b == bytes) {
        Some((_, s)) => (*s).into(),
        None => oid_to_string(bytes).into(),
    }
}

/// Dotted decimal form of an OID's content bytes, with arcs up to 128 bits
/// (UUID OIDs under `2.25`); hex when an arc is wider or the encoding is bad.
pub(crate) fn oid_to_string(bytes: &[u8]) -> String {
    let hex = || bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    let mut arcs: Vec<u128> = Vec::new();
    let mut cur: u128 = 0;
    for (i, b) in bytes.iter().enumerate() {
        if cur > (u128::MAX >> 7) {
            return hex();
        }
        cur = (cur << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(cur);
            cur = 0;
        } else if i == bytes.len() - 1 {
            return hex();
        }
    }
    let Some(&first) = arcs.first() else { return hex() };
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    use std::fmt::Write as _;
    let mut out = String::with_capacity(4 * arcs.len() + 4);
    let _ = write!(out, "{a}.{b}");
    for arc in &arcs[1..] {
        let _ = write!(out, ".{arc}");
    }
    out
}

impl CertInfo {
    /// Parses one DER certificate; trailing bytes are refused.
    pub fn parse(der: &[u8]) -> Result<CertInfo, VerifyError> {
        let bad = |detail: String| VerifyError::BadCertificate { subject: "(unparsed)".into(), detail };
        if der.len() > MAX_CERT_SIZE {
            return Err(bad(format!("larger than {MAX_CERT_SIZE} bytes")));
        }
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(format!("not X.509 DER: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the certificate".into()));
        }
        let subject = rfc4514(cert.subject());
        let fail = |detail: String| VerifyError::BadCertificate { subject: subject.clone(), detail };
        if cert.version() != X509Version::V3 {
            return Err(fail("not an X.509 v3 certificate".into()));
        }
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(fail("outer and inner signature algorithms differ (RFC 5280 4.1.1.2)".into()));
        }
        let mut info = CertInfo {
            der: der.to_vec(),
            fingerprint: sha256_hex(der),
            subject: subject.clone(),
            issuer: rfc4514(cert.issuer()),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            serial_hex: lower_hex(cert.raw_serial()).to_ascii_uppercase(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: false,
            path_len: None,
            key_usage: None,
            eku: None,
            ski: None,
            aki: None,
            delegation: None,
            unknown_critical: Vec::new(),
            spki_der: cert.public_key().raw.to_vec(),
            tbs_der: cert.tbs_certificate.as_ref().to_vec(),
            sig_alg: match KNOWN_OIDS.iter().find(|(b, _)| *b == cert.signature_algorithm.algorithm.as_bytes()) {
                Some((_, s)) => (*s).to_string(),
                None => cert.signature_algorithm.algorithm.to_id_string(),
            },
            sig_params: cert
                .signature_algorithm
                .parameters
                .as_ref()
                .and_then(|p| x509_parser::asn1_rs::ToDer::to_der_vec(p).ok()),
            signature: cert.signature_value.data.to_vec(),
        };
        let mut seen: Vec<std::borrow::Cow<'static, str>> = Vec::with_capacity(cert.extensions().len());
        for ext in cert.extensions() {
            // Dotted form with arcs up to 128 bits (the tka UUID OIDs).
            let oid = oid_str(ext.oid.as_bytes());
            if seen.contains(&oid) {
                return Err(fail(format!("extension {oid} appears twice")));
            }
            seen.push(oid.clone());
            if oid == TKA_DELEGATION_OID {
                let d = Delegation::from_der(ext.value)
                    .map_err(|e| fail(format!("the tka delegation extension is malformed: {e}")))?;
                info.delegation = Some(d);
                continue;
            }
            match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => {
                    info.is_ca = bc.ca;
                    info.path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => {
                    info.key_usage = Some((ku.digital_signature(), ku.key_cert_sign(), ku.crl_sign()));
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let mut oids: Vec<String> = eku.other.iter().map(|o| oid_str(o.as_bytes()).into_owned()).collect();
                    if eku.any {
                        oids.push("2.5.29.37.0".into());
                    }
                    for (set, oid) in [
                        (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
                        (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
                        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
                        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
                        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
                        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
                    ] {
                        if set {
                            oids.push(oid.into());
                        }
                    }
                    info.eku = Some(oids);
                }
                ParsedExtension::SubjectKeyIdentifier(k) => info.ski = Some(k.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    info.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                ParsedExtension::ParseError { error } => {
                    return Err(fail(format!("extension {oid} is malformed: {error}")))
                }
                _ => {}
            }
            if ext.critical && !KNOWN_CRITICAL.contains(&oid.as_ref()) {
                info.unknown_critical.push(oid.into_owned());
            }
        }
        Ok(info)
    }

    /// Whether this certificate's subject is its issuer (a root candidate).
    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// Whether the certificate carries the tka token-signing EKU.
    pub fn has_signer_eku(&self) -> bool {
        self.eku.as_ref().is_some_and(|e| e.iter().any(|o| o == TKA_TOKEN_SIGNING_EKU))
    }

    /// Modulus size in bits of the RSA key, or [`VerifyError::WeakKey`] if
    /// it is not a usable RSA key (the `rsa` crate's rules, without building
    /// its key when the fast decoding admits it).
    pub(crate) fn rsa_bits(&self) -> Result<usize, VerifyError> {
        match backend::admitted_parts(&self.spki_der) {
            Some(parts) => Ok(parts.bits()),
            None => Ok(crate::core::keys::public_bits(&self.rsa_public_key()?)),
        }
    }

    /// Whether `sig` over `message` verifies under `scheme` with this
    /// certificate's key ([`VerifyError::WeakKey`] if it is not a usable RSA
    /// key): aws-lc-rs straight from the DER with the `aws-lc` feature, the
    /// `rsa` crate otherwise (`keys::backend`).
    pub(crate) fn verifies(&self, scheme: backend::RsaScheme, message: &[u8], sig: &[u8]) -> Result<bool, VerifyError> {
        match backend::verify_spki(&self.spki_der, scheme, message, sig) {
            Some(verdict) => Ok(verdict),
            None => Ok(backend::rsa_verify(&self.rsa_public_key()?, scheme, message, sig)),
        }
    }

    /// The RSA public key, or a [`VerifyError::WeakKey`] if it is not RSA.
    pub fn rsa_public_key(&self) -> Result<rsa::PublicKey, VerifyError> {
        use pkcs8::DecodePublicKey;
        rsa::PublicKey::from_public_key_der(&self.spki_der).map_err(|e| VerifyError::WeakKey {
            subject: self.subject.clone(),
            detail: format!("not a usable RSA public key: {e}"),
        })
    }
}

/// DER of `ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId`
/// holding only the tka token-signing OID. Encoded by hand because its
/// UUID arc (RFC 4122 as an X.667 `2.25` OID) is wider than the 32-bit arcs
/// `const-oid` supports.
#[cfg(any(test, feature = "issuer"))]
pub(crate) fn tka_eku_der() -> Vec<u8> {
    let uuid_arc: u128 =
        TKA_TOKEN_SIGNING_EKU.strip_prefix("2.25.").and_then(|n| n.parse().ok()).expect("the tka EKU is a 2.25 OID");
    // X.690 §8.19: first subidentifier 2*40+25, then base-128 big-endian
    // groups with the high bit set on all but the last.
    let mut groups = vec![(uuid_arc & 0x7f) as u8];
    let mut n = uuid_arc >> 7;
    while n > 0 {
        groups.push(((n & 0x7f) as u8) | 0x80);
        n >>= 7;
    }
    groups.reverse();
    let mut oid = vec![0x06, (groups.len() + 1) as u8, 2 * 40 + 25];
    oid.extend(groups);
    let mut seq = vec![0x30, oid.len() as u8];
    seq.extend(oid);
    seq
}

/// Key identifier per RFC 7093 §2 method 1: leftmost 160 bits of the
/// SHA-256 of the subjectPublicKey BIT STRING value.
pub(crate) fn key_identifier(spki_der: &[u8]) -> crate::core::error::Result<Vec<u8>> {
    let spki = <x509_cert::spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(spki_der)
        .map_err(|e| crate::core::error::Error::format("public key", e))?;
    Ok(<sha2::Sha256 as sha2::Digest>::digest(spki.subject_public_key.raw_bytes())[..20].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_strings() {
        assert_eq!(oid_to_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]), "1.2.840.113549.1.1.11");
        // The tka EKU as written by the certificate builder.
        let der = tka_eku_der();
        assert_eq!(oid_to_string(&der[4..]), TKA_TOKEN_SIGNING_EKU);
    }

    #[test]
    fn known_oids_are_what_oid_to_string_makes_of_their_bytes() {
        for (bytes, s) in KNOWN_OIDS {
            assert_eq!(oid_to_string(bytes), s);
            assert_eq!(oid_str(bytes), s);
        }
        assert_eq!(&tka_eku_der()[4..], TKA_EKU_BYTES);
        assert_eq!(oid_str(&TKA_EKU_BYTES), TKA_TOKEN_SIGNING_EKU);
        // Anything else is computed: here a non-minimal encoding of 2.5.29.19.
        assert_eq!(oid_str(&[0x55, 0x1d, 0x80, 0x13]), "2.5.29.19");
    }

    /// The name abbreviations written without the registry are x509-parser's
    /// own for those attribute types.
    #[test]
    fn name_abbreviations_are_x509_parsers() {
        for (bytes, key) in NAME_ABBREVIATIONS {
            let oid = x509_parser::der_parser::oid::Oid::new(bytes.into());
            assert_eq!(x509_parser::objects::oid2abbrev(&oid, x509_parser::objects::oid_registry()), Ok(key), "{oid}");
        }
    }
}
