//! Certificate creation with the x509-cert builder, signed through the
//! [`Signer`] seam.

use crate::core::error::{Error, Result};
use crate::core::keys::{spki_der, SignatureAlgorithm, Signer};
use crate::core::pki::cert::{key_identifier, tka_eku_der, CertInfo};
use crate::core::pki::delegation::tlv as der_tlv;
use crate::core::pki::{Delegation, TKA_DELEGATION_OID};
use der::asn1::{BitString, OctetString};
use der::{Decode, Encode};

use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

/// What a certificate is for. Each kind has a fixed, documented profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKind {
    /// Self-signed root CA: CA:TRUE, keyCertSign + cRLSign.
    Root,
    /// Issuing CA: CA:TRUE with pathLen 0 (it may sign only signers), keyCertSign + cRLSign.
    Intermediate,
    /// Token signer (leaf): CA:FALSE, digitalSignature, the tka token-signing EKU.
    Signer,
    /// Cross-certificate for a root rollover: a new root's subject and key,
    /// signed by an existing (old) root. Same profile as a root (CA:TRUE, no
    /// pathLen, keyCertSign + cRLSign), but issued by another CA.
    Cross,
}

/// Default lifetimes, days.
pub mod lifetimes {
    /// Root CA: 20 years.
    pub const ROOT_DAYS: i64 = 20 * 365;
    /// Issuing CA: 5 years.
    pub const INTERMEDIATE_DAYS: i64 = 5 * 365;
    /// Token signer: about a year (400 days covers a 365-day token issued soon after rotation).
    pub const SIGNER_DAYS: i64 = 400;
}

/// The parameters of a new certificate.
#[derive(Debug, Clone)]
pub struct CertRequest<'a> {
    /// Profile.
    pub kind: CertKind,
    /// Subject in RFC 4514 form, e.g. `CN=Example Root,O=Example`.
    pub subject: &'a str,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The tka delegation extension (critical) for a token signer or CA
    /// whose tokens are limited (an activation host's certificate).
    pub delegation: Option<Delegation>,
}

/// Creates a certificate for `subject_key`, signed by `issuer_key` (whose
/// certificate is `issuer`; `None` for a self-signed root). Returns DER.
///
/// Refuses to let a certificate outlive its issuer and refuses a CA issuer
/// that may not sign this kind.
pub fn create_certificate(
    req: &CertRequest<'_>,
    subject_key: &rsa::PublicKey,
    issuer: Option<&CertInfo>,
    issuer_key: &dyn Signer,
) -> Result<Vec<u8>> {
    let subject = parse_name(req.subject)?;
    build_certificate(
        req.kind,
        subject,
        spki_der(subject_key),
        (req.not_before, req.not_after),
        req.delegation.as_ref(),
        issuer,
        issuer_key,
    )
}

/// Re-issues `old` (an issuing CA or a token signer) under `issuer`: same
/// subject (byte for byte, so certificates it issued keep chaining) and
/// profile (its delegation included), a new serial and the validity
/// given. `new_key` is `None` to renew (keep the public key) or the new
/// public key to rekey.
pub fn reissue_certificate(
    old: &CertInfo,
    new_key: Option<&rsa::PublicKey>,
    issuer: &CertInfo,
    issuer_key: &dyn Signer,
    not_before: i64,
    not_after: i64,
) -> Result<Vec<u8>> {
    let kind = if old.is_self_issued() {
        return Err(Error::Usage(format!(
            "{} is a root certificate: a root is replaced by a root rotation (a new root, cross-signed), not renewed",
            old.subject
        )));
    } else if old.is_ca {
        CertKind::Intermediate
    } else if old.has_signer_eku() {
        CertKind::Signer
    } else {
        return Err(Error::Usage(format!("{} is neither an issuing CA nor a tka token signer", old.subject)));
    };
    let subject = Name::from_der(&old.subject_raw).map_err(|e| Error::format("subject name", e))?;
    let spki = match new_key {
        Some(k) => {
            let spki = spki_der(k);
            if spki == old.spki_der {
                return Err(Error::Usage("rekey needs a new key: this is the certificate's current key".into()));
            }
            spki
        }
        None => old.spki_der.clone(),
    };
    build_certificate(kind, subject, spki, (not_before, not_after), old.delegation.as_ref(), Some(issuer), issuer_key)
}

fn build_certificate(
    kind: CertKind,
    subject: Name,
    subject_spki: Vec<u8>,
    (not_before, not_after): (i64, i64),
    delegation: Option<&Delegation>,
    issuer: Option<&CertInfo>,
    issuer_key: &dyn Signer,
) -> Result<Vec<u8>> {
    let req = CertRequest { kind, subject: "", not_before, not_after, delegation: None };
    if let Some(d) = delegation {
        d.validate().map_err(|e| Error::Usage(format!("delegation: {e}")))?;
    }
    if req.not_after <= req.not_before {
        return Err(Error::Usage("certificate validity must be at least one second".into()));
    }
    let (issuer_name, issuer_spki) = match issuer {
        None => {
            if req.kind != CertKind::Root {
                return Err(Error::Usage("only a root certificate is self-signed".into()));
            }
            if spki_der(issuer_key.public_key()) != subject_spki {
                return Err(Error::Usage("a root certificate is signed by its own key".into()));
            }
            (subject.clone(), subject_spki.clone())
        }
        Some(ca) => {
            if req.kind == CertKind::Root {
                return Err(Error::Usage("a root certificate cannot have an issuer".into()));
            }
            if req.kind == CertKind::Cross && !ca.is_self_issued() {
                return Err(Error::Usage(format!("a cross-certificate is signed by a root, not by {}", ca.subject)));
            }
            if !ca.is_ca || ca.key_usage.is_some_and(|(_, cert_sign, _)| !cert_sign) {
                return Err(Error::Refused(format!(
                    "{} is not a CA certificate that may sign certificates",
                    ca.subject
                )));
            }
            if ca.path_len == Some(0) && matches!(req.kind, CertKind::Intermediate | CertKind::Cross) {
                return Err(Error::Refused(format!("{} has pathLen 0 and may not sign another CA", ca.subject)));
            }
            if spki_der(issuer_key.public_key()) != ca.spki_der {
                return Err(Error::Usage(format!("the CA key does not belong to {}", ca.subject)));
            }
            if req.not_after > ca.not_after {
                return Err(Error::Refused(format!(
                    "certificate would outlive its issuer {} (expires {}): shorten its lifetime or renew the CA",
                    ca.subject,
                    crate::core::clock::rfc3339(ca.not_after)
                )));
            }
            let name = Name::from_der(&ca.subject_raw).map_err(|e| Error::format("issuer name", e))?;
            (name, ca.spki_der.clone())
        }
    };

    let profile = TkaProfile { kind: req.kind, subject, issuer: issuer_name, issuer_spki };
    let spki = SubjectPublicKeyInfoOwned::from_der(&subject_spki).map_err(|e| Error::format("public key", e))?;
    let validity = Validity::new(unix_to_time(req.not_before)?, unix_to_time(req.not_after)?);
    let builder = CertificateBuilder::new(profile, random_serial(), validity, spki)
        .map_err(|e| Error::format("certificate", e))?;
    match delegation {
        None => to_der(&sign_with_builder(builder, issuer_key)?),
        Some(d) => sign_with_extension(builder, &delegation_extension(d), issuer_key),
    }
}

/// DER of the critical tka delegation `Extension` (its OID has an arc wider
/// than `const-oid` supports, so it is encoded here).
fn delegation_extension(d: &Delegation) -> Vec<u8> {
    let mut body = oid_der(TKA_DELEGATION_OID);
    body.extend([0x01, 0x01, 0xff]); // critical BOOLEAN TRUE
    body.extend(der_tlv(0x04, &d.to_der()));
    der_tlv(0x30, &body)
}

/// DER of a `2.25.<uuid>` OBJECT IDENTIFIER.
fn oid_der(oid: &str) -> Vec<u8> {
    let arc: u128 = oid.strip_prefix("2.25.").and_then(|n| n.parse().ok()).expect("a 2.25 UUID OID");
    // X.690 §8.19: first subidentifier 2*40+25, then base-128 big-endian
    // groups with the high bit set on all but the last.
    let mut groups = vec![(arc & 0x7f) as u8];
    let mut n = arc >> 7;
    while n > 0 {
        groups.push(((n & 0x7f) as u8) | 0x80);
        n >>= 7;
    }
    groups.reverse();
    let mut content = vec![2 * 40 + 25];
    content.extend(groups);
    der_tlv(0x06, &content)
}

/// The elements of a DER constructed value's content, each with its tag and header.
fn der_elements(mut content: &[u8]) -> Result<Vec<&[u8]>> {
    let bad = || Error::format("certificate", "the builder's TBSCertificate is not DER");
    let mut out = Vec::new();
    while !content.is_empty() {
        let first = *content.get(1).ok_or_else(bad)?;
        let (len, start) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            let bytes = content.get(2..2 + n).ok_or_else(bad)?;
            (bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)), 2 + n)
        };
        let (element, rest) = content.split_at_checked(start + len).ok_or_else(bad)?;
        out.push(element);
        content = rest;
    }
    Ok(out)
}

/// The content of one DER element (after its tag and length).
fn der_content(element: &[u8]) -> &[u8] {
    let first = element[1];
    let start = if first < 0x80 { 2 } else { 2 + usize::from(first & 0x7f) };
    &element[start..]
}

/// Signs the builder's certificate with `extension` (DER) added at the end
/// of its extensions: the TBSCertificate is extended, signed by `key`
/// (sha256WithRSAEncryption, as [`sign_with_builder`]) and assembled here.
fn sign_with_extension(
    mut builder: CertificateBuilder<TkaProfile>,
    extension: &[u8],
    key: &dyn Signer,
) -> Result<Vec<u8>> {
    let adapter = BuilderKey::new(key);
    let tbs = builder.finalize(&adapter).map_err(|e| Error::format("certificate", e))?;
    let outer = der_elements(&tbs)?;
    let [tbs_seq] = outer[..] else { return Err(Error::format("certificate", "TBSCertificate is not one element")) };
    let fields = der_elements(der_content(tbs_seq))?;
    let (Some(last), Some(sig_alg)) = (fields.last(), fields.get(2)) else {
        return Err(Error::format("certificate", "TBSCertificate is too short"));
    };
    if last.first() != Some(&0xa3) {
        return Err(Error::format("certificate", "TBSCertificate has no extensions"));
    }
    let mut exts = der_content(der_content(last)).to_vec();
    exts.extend_from_slice(extension);
    let mut body: Vec<u8> = fields[..fields.len() - 1].concat();
    body.extend(der_tlv(0xa3, &der_tlv(0x30, &exts)));
    let tbs = der_tlv(0x30, &body);
    let sig = key.sign(SignatureAlgorithm::Rs256, &tbs)?;
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut cert = tbs;
    cert.extend_from_slice(sig_alg);
    cert.extend(der_tlv(0x03, &bits));
    let der = der_tlv(0x30, &cert);
    CertInfo::parse(&der)?;
    Ok(der)
}

/// Runs an x509-cert [`Builder`] with a tka [`Signer`]: the builder produces
/// the to-be-signed bytes, the signer signs them (sha256WithRSAEncryption,
/// the algorithm every X.509 verifier accepts), the builder assembles.
pub(crate) fn sign_with_builder<B: Builder>(mut builder: B, key: &dyn Signer) -> Result<B::Output> {
    let adapter = BuilderKey::new(key);
    let tbs = builder.finalize(&adapter).map_err(|e| Error::format("certificate", e))?;
    let sig = key.sign(SignatureAlgorithm::Rs256, &tbs)?;
    let bits = BitString::from_bytes(&sig).map_err(|e| Error::format("signature", e))?;
    builder.assemble(bits, &adapter).map_err(|e| Error::format("certificate", e))
}

/// Turns a built x509-cert object into DER.
pub(crate) fn to_der<T: Encode>(t: &T) -> Result<Vec<u8>> {
    t.to_der().map_err(|e| Error::format("DER encoding", e))
}

/// Parses an RFC 4514 name such as `CN=Example Root,O=Example`.
pub fn parse_name(s: &str) -> Result<Name> {
    if s.trim().is_empty() {
        return Err(Error::Usage("the subject must not be empty (e.g. \"CN=Example Root\")".into()));
    }
    Name::from_str(s).map_err(|e| Error::Usage(format!("invalid subject {s:?}: {e}")))
}

/// A random positive 128-bit serial number.
pub(crate) fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("operating system random number generator");
    b[0] &= 0x7f;
    b[0] |= 0x40; // keep it 16 bytes long and positive
    SerialNumber::new(&b).expect("16 bytes fit a serial")
}

pub(crate) fn unix_to_time(t: i64) -> Result<Time> {
    let secs = u64::try_from(t).map_err(|_| Error::Usage("times before 1970 are not supported".into()))?;
    let st = std::time::UNIX_EPOCH + Duration::from_secs(secs);
    Time::try_from(st).map_err(|e| Error::format("time", e))
}

struct TkaProfile {
    kind: CertKind,
    subject: Name,
    issuer: Name,
    issuer_spki: Vec<u8>,
}

fn ext<T: Encode + const_oid::AssociatedOid>(value: &T, critical: bool) -> x509_cert::builder::Result<Extension> {
    Ok(Extension { extn_id: T::OID, critical, extn_value: OctetString::new(value.to_der()?)? })
}

impl BuilderProfile for TkaProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: spki::SubjectPublicKeyInfoRef<'_>,
        _tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let own_spki = spk.to_der()?;
        let ski = key_identifier(&own_spki).map_err(|_| der::Error::from(der::ErrorKind::Failed))?;
        let aki = key_identifier(&self.issuer_spki).map_err(|_| der::Error::from(der::ErrorKind::Failed))?;
        let mut exts = Vec::new();
        let (bc, ku) = match self.kind {
            CertKind::Root | CertKind::Cross => {
                (BasicConstraints { ca: true, path_len_constraint: None }, KeyUsages::KeyCertSign | KeyUsages::CRLSign)
            }
            CertKind::Intermediate => (
                BasicConstraints { ca: true, path_len_constraint: Some(0) },
                KeyUsages::KeyCertSign | KeyUsages::CRLSign,
            ),
            CertKind::Signer => {
                (BasicConstraints { ca: false, path_len_constraint: None }, KeyUsages::DigitalSignature.into())
            }
        };
        exts.push(ext(&bc, true)?);
        exts.push(ext(&KeyUsage(ku), true)?);
        if self.kind == CertKind::Signer {
            exts.push(Extension {
                extn_id: <ExtendedKeyUsage as const_oid::AssociatedOid>::OID,
                critical: false,
                extn_value: OctetString::new(tka_eku_der())?,
            });
        }
        exts.push(ext(&SubjectKeyIdentifier(OctetString::new(ski)?), false)?);
        exts.push(ext(
            &AuthorityKeyIdentifier { key_identifier: Some(OctetString::new(aki)?), ..Default::default() },
            false,
        )?);
        Ok(exts)
    }
}

/// Adapts a tka [`Signer`] to the traits the x509-cert builder asks for
/// (the public key and the signature algorithm identifier).
struct BuilderKey {
    spki: Vec<u8>,
}

impl BuilderKey {
    fn new(key: &dyn Signer) -> Self {
        BuilderKey { spki: spki_der(key.public_key()) }
    }
}

#[derive(Clone)]
struct SpkiBytes(Vec<u8>);

impl spki::EncodePublicKey for SpkiBytes {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.as_slice())?)
    }
}

impl signature::Keypair for BuilderKey {
    type VerifyingKey = SpkiBytes;
    fn verifying_key(&self) -> SpkiBytes {
        SpkiBytes(self.spki.clone())
    }
}

impl spki::DynSignatureAlgorithmIdentifier for BuilderKey {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned {
            oid: const_oid::db::rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
            parameters: Some(der::asn1::Null.into()),
        })
    }
}
