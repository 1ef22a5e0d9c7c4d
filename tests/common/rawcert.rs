//! Certificates and CRLs built by hand with the x509-cert builder and a
//! profile that adds exactly the extensions given: no profile checks at all,
//! for the defects tka's own builder refuses to make. Signed with
//! sha256WithRSAEncryption (deterministic) by the TEST-ONLY keys in
//! certs/test/. Used by tests/verify.rs, tests/gen_vectors.rs and
//! tests/differential.rs.

use super::{test_key_path, DAY, NOW};
use const_oid::{AssociatedOid, ObjectIdentifier};
use der::{Decode, Encode};
use sha2::Sha256;
use std::str::FromStr;
use tka::pki::TKA_TOKEN_SIGNING_EKU;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder, CrlBuilder};
use x509_cert::crl::RevokedCert;
use x509_cert::ext::pkix::{BasicConstraints, CrlNumber, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// A builder profile with fixed names and exactly the extensions `exts`.
pub struct RawProfile {
    pub subject: Name,
    pub issuer: Name,
    pub exts: Vec<Extension>,
}

impl BuilderProfile for RawProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }
    fn get_subject(&self) -> Name {
        self.subject.clone()
    }
    fn build_extensions(
        &self,
        _spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.exts.clone())
    }
}

/// A TEST-ONLY key from certs/test/ as an `rsa` private key.
pub fn private_key(name: &str) -> rsa::PrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::PrivateKey::from_pkcs8_pem(&std::fs::read_to_string(test_key_path(name)).unwrap()).unwrap()
}

/// RSASSA-PKCS1-v1_5 with SHA-256 by test key `name`.
pub fn pkcs1_signer(name: &str) -> rsa::pkcs1v15::SigningKey<Sha256> {
    rsa::pkcs1v15::SigningKey::<Sha256>::new(private_key(name))
}

pub fn time(t: i64) -> Time {
    Time::try_from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64)).unwrap()
}

/// The SubjectPublicKeyInfo (DER) of test key `key`.
pub fn spki_of(key: &str) -> Vec<u8> {
    tka::keys::spki_der(&private_key(key).to_public_key())
}

/// A certificate for test key `key` with the names and extensions of
/// `profile`, valid from `nb` to `na`, signed by test key `signing_key`.
pub fn sign_cert(profile: RawProfile, serial: SerialNumber, nb: i64, na: i64, key: &str, signing_key: &str) -> Vec<u8> {
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_of(key)).unwrap();
    let builder = CertificateBuilder::new(profile, serial, Validity::new(time(nb), time(na)), spki).unwrap();
    builder.build::<_, rsa::pkcs1v15::Signature>(&pkcs1_signer(signing_key)).unwrap().to_der().unwrap()
}

/// A certificate for test key `key` with exactly the extensions `exts`,
/// issued under the name of `issuer.0` (a DER certificate) and signed with
/// test key `issuer.1`; self-signed with `key` when `issuer` is `None`.
pub fn cert_under(
    subject: &str,
    key: &str,
    issuer: Option<(&[u8], &str)>,
    serial: SerialNumber,
    nb: i64,
    na: i64,
    exts: Vec<Extension>,
) -> Vec<u8> {
    let subject = Name::from_str(subject).unwrap();
    let issuer_name = match issuer {
        None => subject.clone(),
        Some((der, _)) => Certificate::from_der(der).unwrap().tbs_certificate().subject().clone(),
    };
    let profile = RawProfile { subject, issuer: issuer_name, exts };
    sign_cert(profile, serial, nb, na, key, issuer.map_or(key, |(_, k)| k))
}

/// A DER CRL from `issuer` (a DER CA certificate), number `number`, listing
/// `revoked` (revoked at NOW - 1 day), issued at NOW - 1 day with next
/// update in 30 days, signed by test key `key`.
pub fn crl_der(issuer: &[u8], number: u32, revoked: Vec<SerialNumber>, key: &str) -> Vec<u8> {
    let issuer = Certificate::from_der(issuer).unwrap();
    let entries: Vec<RevokedCert> = revoked
        .into_iter()
        .map(|serial_number| RevokedCert {
            serial_number,
            revocation_date: time(NOW - DAY),
            crl_entry_extensions: None,
        })
        .collect();
    CrlBuilder::new_with_this_update(&issuer, CrlNumber::try_from(number).unwrap(), time(NOW - DAY))
        .unwrap()
        .with_next_update(Some(time(NOW + 30 * DAY)))
        .with_certificates(entries.into_iter())
        .build::<_, rsa::pkcs1v15::Signature>(&pkcs1_signer(key))
        .unwrap()
        .to_der()
        .unwrap()
}

/// [`crl_der`] with `crl_exts` added to the CRL's extensions and
/// `entry_exts` to every entry, re-signed by test key `key`: CRL kinds tka's
/// own `crl create` never makes (delta, partitioned, indirect, unknown
/// critical extensions).
pub fn crl_der_with(
    issuer: &[u8],
    number: u32,
    revoked: Vec<SerialNumber>,
    key: &str,
    crl_exts: Vec<Extension>,
    entry_exts: Vec<Extension>,
) -> Vec<u8> {
    use signature::{SignatureEncoding, Signer as _};
    use x509_cert::crl::CertificateList;
    let base: CertificateList = CertificateList::from_der(&crl_der(issuer, number, revoked, key)).unwrap();
    let mut tbs = base.tbs_cert_list;
    tbs.crl_extensions.get_or_insert_with(Vec::new).extend(crl_exts);
    if !entry_exts.is_empty() {
        for entry in tbs.revoked_certificates.iter_mut().flatten() {
            entry.crl_entry_extensions.get_or_insert_with(Vec::new).extend(entry_exts.clone());
        }
    }
    let sig = pkcs1_signer(key).sign(&tbs.to_der().unwrap());
    let signature = der::asn1::BitString::from_bytes(&sig.to_vec()).unwrap();
    CertificateList { signature_algorithm: tbs.signature.clone(), tbs_cert_list: tbs, signature }.to_der().unwrap()
}

pub fn ext<T: Encode + AssociatedOid>(value: &T, critical: bool) -> Extension {
    Extension { extn_id: T::OID, critical, extn_value: der::asn1::OctetString::new(value.to_der().unwrap()).unwrap() }
}

pub fn bc(ca: bool, path_len: Option<u8>) -> Extension {
    ext(&BasicConstraints { ca, path_len_constraint: path_len }, true)
}

pub fn ku(usages: impl Into<der::flagset::FlagSet<KeyUsages>>) -> Extension {
    ext(&KeyUsage(usages.into()), true)
}

/// `SEQUENCE { OID 2.25.<uuid> }`, encoded by hand (the arc is wider than const-oid's).
pub fn tka_eku() -> Extension {
    let arc: u128 = TKA_TOKEN_SIGNING_EKU.strip_prefix("2.25.").unwrap().parse().unwrap();
    let mut groups = vec![(arc & 0x7f) as u8];
    let mut n = arc >> 7;
    while n > 0 {
        groups.push(((n & 0x7f) as u8) | 0x80);
        n >>= 7;
    }
    groups.reverse();
    let mut oid = vec![0x06, (groups.len() + 1) as u8, 2 * 40 + 25];
    oid.extend(groups);
    let mut seq = vec![0x30, oid.len() as u8];
    seq.extend(oid);
    Extension { extn_id: ExtendedKeyUsage::OID, critical: false, extn_value: der::asn1::OctetString::new(seq).unwrap() }
}

/// An extension no one knows, with OID `oid` and content `value`.
pub fn unknown_ext(oid: &str, critical: bool, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical,
        extn_value: der::asn1::OctetString::new(value).unwrap(),
    }
}

/// A critical extension no one knows (content: NULL).
pub fn unknown_critical() -> Extension {
    unknown_ext("1.3.6.1.4.1.55555.1.1", true, vec![0x05, 0x00])
}

/// A CA's basic constraints (critical, CA:TRUE, `path_len`) and key usage (keyCertSign, cRLSign).
pub fn ca_exts(path_len: Option<u8>) -> Vec<Extension> {
    vec![bc(true, path_len), ku(KeyUsages::KeyCertSign | KeyUsages::CRLSign)]
}

/// A token signer's: CA:FALSE, digitalSignature and the tka EKU.
pub fn signer_exts() -> Vec<Extension> {
    vec![bc(false, None), ku(KeyUsages::DigitalSignature), tka_eku()]
}

/// DER tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The elements of a DER value's content, each whole (tag, length, content).
fn elements(mut content: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (len, start) = match content[1] {
            l if l < 0x80 => (usize::from(l), 2),
            l => {
                let n = usize::from(l & 0x7f);
                (content[2..2 + n].iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)), 2 + n)
            }
        };
        let (e, rest) = content.split_at(start + len);
        out.push(e);
        content = rest;
    }
    out
}

fn inner(e: &[u8]) -> &[u8] {
    let start = if e[1] < 0x80 { 2 } else { 2 + usize::from(e[1] & 0x7f) };
    &e[start..]
}

/// `cert` (DER) with `extension` (a DER `Extension`) added after its
/// extensions, re-signed by test key `signing_key`: for extensions whose
/// OID `const-oid` cannot hold (arcs wider than 32 bits, the tka UUID OIDs).
pub fn with_raw_extension(cert: &[u8], extension: &[u8], signing_key: &str) -> Vec<u8> {
    use signature::{SignatureEncoding, Signer as _};
    let outer = elements(cert);
    let parts = elements(inner(outer[0]));
    let tbs = parts[0];
    let fields = elements(inner(tbs));
    let last = *fields.last().unwrap();
    assert_eq!(last[0], 0xa3, "the certificate has extensions");
    let mut exts = inner(inner(last)).to_vec();
    exts.extend_from_slice(extension);
    let mut body: Vec<u8> = fields[..fields.len() - 1].concat();
    body.extend(tlv(0xa3, &tlv(0x30, &exts)));
    let tbs = tlv(0x30, &body);
    let sig = pkcs1_signer(signing_key).sign(&tbs).to_vec();
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut out = tbs;
    out.extend_from_slice(parts[1]);
    out.extend(tlv(0x03, &bits));
    tlv(0x30, &out)
}

/// DER of the tka delegation `Extension` with `value` (a `TkaDelegation`).
pub fn delegation_ext(value: &[u8], critical: bool) -> Vec<u8> {
    let arc: u128 = tka::pki::TKA_DELEGATION_OID.strip_prefix("2.25.").unwrap().parse().unwrap();
    let mut groups = vec![(arc & 0x7f) as u8];
    let mut n = arc >> 7;
    while n > 0 {
        groups.push(((n & 0x7f) as u8) | 0x80);
        n >>= 7;
    }
    groups.reverse();
    let mut oid = vec![2 * 40 + 25];
    oid.extend(groups);
    let mut body = tlv(0x06, &oid);
    if critical {
        body.extend([0x01, 0x01, 0xff]);
    }
    body.extend(tlv(0x04, value));
    tlv(0x30, &body)
}
