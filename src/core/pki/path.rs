//! Certification path validation (RFC 5280 §6, restricted to what tka
//! issues): from a token signer certificate, through the intermediates the
//! token carries, to a pinned root, at a caller-supplied time.
//!
//! Each rule is a named `check_*` function citing what it enforces.

use super::cert::CertInfo;
use crate::core::error::{CrossLimit, VerifyError};
use crate::core::keys::backend;
use std::collections::{BTreeMap, HashSet};
use x509_parser::prelude::FromDer;

/// Most certificates a token may carry (signer plus intermediates).
pub const MAX_CHAIN_LEN: usize = 5;
/// Smallest RSA modulus accepted anywhere in a chain.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest CRL tka parses.
pub const MAX_CRL_SIZE: usize = 1024 * 1024;

/// Most certificates in the vouching chain of a root trusted through a
/// cross-certificate (four rollovers, each a cross-certificate and its issuer).
pub const MAX_VOUCHING_CHAIN: usize = 8;

/// The roots a machine trusts.
///
/// A root trusted through a cross-certificate carries its *vouching
/// chain*: the cross-certificate, the root that signed it, and that root's
/// own vouching chain if it has one. Every path that ends at such a root
/// is held to the cross-certificates' constraints ([`validate_path`]).
#[derive(Debug, Clone, Default)]
pub struct TrustAnchors {
    roots: Vec<CertInfo>,
    vouching: BTreeMap<String, Vec<CertInfo>>,
}

impl TrustAnchors {
    /// Parses root certificates (DER).
    pub fn from_der(ders: &[Vec<u8>]) -> Result<Self, VerifyError> {
        let roots = ders.iter().map(|d| CertInfo::parse(d)).collect::<Result<Vec<_>, _>>()?;
        Ok(TrustAnchors { roots, vouching: BTreeMap::new() })
    }

    /// Roots already parsed (each checked by the caller, e.g. with [`check_root`]).
    pub fn from_certs(roots: Vec<CertInfo>) -> Self {
        TrustAnchors { roots, vouching: BTreeMap::new() }
    }

    /// Records that the root with fingerprint `root_fingerprint` is trusted
    /// through a cross-certificate: `chain` (DER) is its vouching chain,
    /// cross-certificate first, then the root that signed it, then that
    /// root's own vouching chain (pairs of cross-certificate and issuer).
    pub fn with_vouching(mut self, root_fingerprint: &str, chain: &[Vec<u8>]) -> Result<Self, VerifyError> {
        if chain.is_empty() || !chain.len().is_multiple_of(2) || chain.len() > MAX_VOUCHING_CHAIN {
            return Err(VerifyError::Malformed {
                what: "vouching chain",
                detail: format!(
                    "{} certificates: expected pairs of cross-certificate and issuer, at most {MAX_VOUCHING_CHAIN}",
                    chain.len()
                ),
            });
        }
        let certs = chain.iter().map(|d| CertInfo::parse(d)).collect::<Result<Vec<_>, _>>()?;
        self.vouching.insert(root_fingerprint.to_string(), certs);
        Ok(self)
    }

    /// The vouching chain of a root trusted through a cross-certificate
    /// (see [`TrustAnchors::with_vouching`]); `None` for a root trusted on its own.
    pub fn vouching(&self, root_fingerprint: &str) -> Option<&[CertInfo]> {
        self.vouching.get(root_fingerprint).map(Vec::as_slice)
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertInfo] {
        &self.roots
    }

    /// Whether there are no roots at all.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The roots for which `keep` is true.
    pub fn filtered(&self, keep: impl Fn(&CertInfo) -> bool) -> TrustAnchors {
        TrustAnchors {
            roots: self.roots.iter().filter(|r| keep(r)).cloned().collect(),
            vouching: self.vouching.clone(),
        }
    }
}

/// A parsed certificate revocation list. Its signature is checked against
/// the issuing CA when it is used, not when it is parsed.
#[derive(Debug, Clone)]
pub struct Crl {
    /// DER of the CRL.
    pub der: Vec<u8>,
    /// Issuer name (RFC 4514).
    pub issuer: String,
    /// DER of the issuer name.
    pub issuer_raw: Vec<u8>,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds.
    pub next_update: Option<i64>,
    /// Revoked serials, uppercase hex.
    pub revoked: HashSet<String>,
    /// cRLNumber, if present.
    pub number: Option<String>,
    tbs_der: Vec<u8>,
    sig_alg: String,
    signature: Vec<u8>,
}

impl Crl {
    /// Parses one DER CRL.
    pub fn parse(der: &[u8]) -> Result<Crl, VerifyError> {
        let bad = |detail: String| VerifyError::Malformed { what: "CRL", detail };
        if der.len() > MAX_CRL_SIZE {
            return Err(VerifyError::TooLarge { what: "CRL", limit: MAX_CRL_SIZE });
        }
        let (rest, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
            .map_err(|e| bad(format!("not a DER CRL: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the CRL".into()));
        }
        check_crl_scope(&crl)?;
        Ok(Crl {
            der: der.to_vec(),
            issuer: crl.issuer().to_string(),
            issuer_raw: crl.issuer().as_raw().to_vec(),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked: crl.iter_revoked_certificates().map(|r| hex_upper(r.raw_serial())).collect(),
            number: crl.crl_number().map(|n| n.to_string()),
            tbs_der: crl.tbs_cert_list.as_ref().to_vec(),
            sig_alg: crl.signature_algorithm.algorithm.to_id_string(),
            signature: crl.signature_value.data.to_vec(),
        })
    }

    /// Whether the CRL is past its nextUpdate at `now` (a CRL without one never is).
    pub fn is_stale(&self, now: i64) -> bool {
        self.next_update.is_some_and(|n| now > n)
    }

    /// Whether `issuer` (a CA certificate) signed this CRL.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        if issuer.subject_raw != self.issuer_raw {
            return false;
        }
        match backend::scheme_of_oid(&self.sig_alg) {
            Some(scheme) => issuer.verifies(scheme, &self.tbs_der, &self.signature).unwrap_or(false),
            None => false,
        }
    }
}

/// The CRLs tka implements exactly: complete, direct CRLs for every
/// certificate of their issuer. RFC 5280 §5.2/§6.3.3: a CRL with an
/// unrecognised critical extension must not be used; a delta CRL
/// (deltaCRLIndicator, §5.2.4) lists only changes since a base CRL and
/// would "un-revoke" whatever it leaves out if it replaced the complete
/// one; an issuingDistributionPoint (§5.2.5) scopes a CRL to part of the
/// issuer's certificates (only CA or only user certificates, some reasons)
/// or makes it indirect; a certificateIssuer entry extension (§5.3.3) means
/// the entry is about another issuer's certificate. tka refuses all of them
/// (`UnsupportedCrl`) rather than apply them as if complete and direct.
/// Recognised and used or harmless: authorityKeyIdentifier, cRLNumber,
/// freshestCRL and authorityInfoAccess (non-critical pointers), and the
/// reasonCode and invalidityDate entry extensions.
fn check_crl_scope(crl: &x509_parser::revocation_list::CertificateRevocationList<'_>) -> Result<(), VerifyError> {
    const AKI: &str = "2.5.29.35";
    const CRL_NUMBER: &str = "2.5.29.20";
    const DELTA_CRL_INDICATOR: &str = "2.5.29.27";
    const ISSUING_DISTRIBUTION_POINT: &str = "2.5.29.28";
    const FRESHEST_CRL: &str = "2.5.29.46";
    const AUTHORITY_INFO_ACCESS: &str = "1.3.6.1.5.5.7.1.1";
    const REASON_CODE: &str = "2.5.29.21";
    const INVALIDITY_DATE: &str = "2.5.29.24";
    const CERTIFICATE_ISSUER: &str = "2.5.29.29";
    let refuse = |detail: String| Err(VerifyError::UnsupportedCrl { detail });
    for ext in crl.extensions() {
        let oid = ext.oid.to_id_string();
        match oid.as_str() {
            DELTA_CRL_INDICATOR => {
                return refuse("a delta CRL (deltaCRLIndicator); tka uses complete CRLs only".into())
            }
            ISSUING_DISTRIBUTION_POINT => {
                return refuse(
                    "a partitioned or indirect CRL (issuingDistributionPoint); tka uses complete, direct CRLs only"
                        .into(),
                )
            }
            AKI | CRL_NUMBER => {}
            FRESHEST_CRL | AUTHORITY_INFO_ACCESS if !ext.critical => {}
            _ if ext.critical => return refuse(format!("an unrecognised critical extension {oid}")),
            _ => {}
        }
    }
    for entry in crl.iter_revoked_certificates() {
        for ext in entry.extensions() {
            let oid = ext.oid.to_id_string();
            match oid.as_str() {
                CERTIFICATE_ISSUER => {
                    return refuse("an indirect CRL entry (certificateIssuer); tka uses direct CRLs only".into())
                }
                REASON_CODE | INVALIDITY_DATE => {}
                _ if ext.critical => return refuse(format!("an unrecognised critical entry extension {oid}")),
                _ => {}
            }
        }
    }
    Ok(())
}

fn hex_upper(b: &[u8]) -> String {
    let s: String = b.iter().map(|b| format!("{b:02X}")).collect();
    if s.is_empty() {
        "00".into()
    } else {
        s
    }
}

/// A validated path: the signer first, the trust anchor last.
#[derive(Debug, Clone)]
pub struct ValidatedPath {
    /// Certificates from the token signer up to and including the root.
    pub certs: Vec<CertInfo>,
}

impl ValidatedPath {
    /// The token signer certificate.
    pub fn signer(&self) -> &CertInfo {
        &self.certs[0]
    }

    /// The trusted root the path ends at.
    pub fn root(&self) -> &CertInfo {
        self.certs.last().expect("a path has at least signer and root")
    }
}

/// What the end-entity certificate of a path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafRole {
    /// A token signer: CA:FALSE, digitalSignature, the tka EKU.
    TokenSigner,
    /// Any CA certificate (used when checking an intermediate or cross certificate on its own).
    Ca,
}

/// Validates `chain` (end-entity first, then the certificates that certify
/// it, in order) against `anchors` at time `now`, consulting `crls`.
pub fn validate_path(
    chain: &[Vec<u8>],
    anchors: &TrustAnchors,
    now: i64,
    crls: &[Crl],
    role: LeafRole,
) -> Result<ValidatedPath, VerifyError> {
    if chain.is_empty() {
        return Err(VerifyError::MissingChain);
    }
    if chain.len() > MAX_CHAIN_LEN {
        return Err(VerifyError::BadCertificate {
            subject: "chain".into(),
            detail: format!("{} certificates, more than the {MAX_CHAIN_LEN} allowed", chain.len()),
        });
    }
    // One rule at a time over the whole path (signer first), in the order
    // of the table in docs/verification.md: a chain-wide rule is reported
    // before any later rule, whichever certificate breaks it.
    let given = chain.iter().map(|d| CertInfo::parse(d)).collect::<Result<Vec<_>, _>>()?;
    let certs = build_path(given, anchors)?;
    let last = certs.len() - 1;
    certs.iter().try_for_each(|c| check_validity(c, now))?;
    certs.iter().try_for_each(check_key_size)?;
    certs.iter().try_for_each(check_critical_extensions)?;
    if role == LeafRole::TokenSigner {
        check_token_signer(&certs[0])?;
    }
    let issuers_from = if role == LeafRole::TokenSigner { 1 } else { 0 };
    certs[issuers_from..].iter().try_for_each(check_issuer_ca)?;
    certs.iter().enumerate().skip(1).try_for_each(|(i, c)| check_path_len(c, i))?;
    for i in 0..last {
        check_not_revoked(&certs[i], &certs[i + 1], crls)?;
    }
    if let Some(chain) = anchors.vouching(&certs[last].fingerprint) {
        check_vouching(chain, last, now, crls)?;
    }
    Ok(ValidatedPath { certs })
}

/// A root trusted through a cross-certificate grants no more than the
/// cross-certificate says: a path ending at it at position `root_pos` is
/// validated as if it went on through the vouching chain (each
/// cross-certificate in place of the root it vouches for, then the root
/// that signed it). Each cross-certificate must be valid at `now`, a CA
/// whose pathLenConstraint covers the path below it and whose extended key
/// usage allows token signing, signed by the next certificate, and not
/// revoked by a CRL of that issuer.
fn check_vouching(chain: &[CertInfo], root_pos: usize, now: i64, crls: &[Crl]) -> Result<(), VerifyError> {
    for (j, pair) in chain.chunks(2).enumerate() {
        let [cross, issuer] = pair else {
            return Err(VerifyError::Malformed { what: "vouching chain", detail: "odd number of certificates".into() });
        };
        check_validity(cross, now)?;
        check_validity(issuer, now)?;
        check_issuer_ca(cross)?;
        check_cross_limits(cross)?;
        check_path_len(cross, root_pos + j)?;
        check_signature(cross, issuer)?;
        check_not_revoked(cross, issuer, crls)?;
    }
    Ok(())
}

/// The constraints a cross-certificate needs to vouch for a root: no
/// pathLenConstraint below 1 (a root signs issuing CAs, which sign token
/// signers) and, when it has an extended key usage, tka token signing or
/// anyExtendedKeyUsage among it.
fn check_cross_limits(cross: &CertInfo) -> Result<(), VerifyError> {
    const ANY_EKU: &str = "2.5.29.37.0";
    let too_narrow = |limit| Err(VerifyError::CrossCertificateTooNarrow { subject: cross.subject.clone(), limit });
    if let Some(n) = cross.path_len.filter(|&n| n < 1) {
        return too_narrow(CrossLimit::PathLen(n));
    }
    if let Some(eku) = &cross.eku {
        if !eku.iter().any(|o| o == super::cert::TKA_TOKEN_SIGNING_EKU || o == ANY_EKU) {
            return too_narrow(CrossLimit::ExtendedKeyUsage(eku.clone()));
        }
    }
    Ok(())
}

/// RFC 5280 §6.1.3 (a)(1), (a)(4) and RFC 7515 §4.1.6: each certificate is
/// issued (name chaining and signature) by the next one in `x5c`, until one
/// is issued by a trusted root.
fn build_path(given: Vec<CertInfo>, anchors: &TrustAnchors) -> Result<Vec<CertInfo>, VerifyError> {
    let mut path: Vec<CertInfo> = Vec::new();
    let mut iter = given.into_iter().peekable();
    while let Some(cert) = iter.next() {
        // A trusted root included in the chain ends it.
        if anchors.roots.iter().any(|r| r.der == cert.der) && !path.is_empty() {
            check_rest_certifies(&cert, iter)?;
            path.push(cert);
            return Ok(path);
        }
        if let Some(root) = anchors.roots.iter().find(|r| r.subject_raw == cert.issuer_raw && signature_ok(&cert, r)) {
            let root = root.clone();
            check_rest_certifies(&cert, iter)?;
            path.push(cert);
            path.push(root);
            return Ok(path);
        }
        match iter.peek() {
            Some(next) => {
                if next.subject_raw != cert.issuer_raw {
                    return Err(VerifyError::BadCertificate {
                        subject: cert.subject.clone(),
                        detail: format!(
                            "issuer {} does not match the next certificate's subject {}",
                            cert.issuer, next.subject
                        ),
                    });
                }
                check_signature(&cert, next)?;
                path.push(cert);
            }
            None => return Err(VerifyError::UntrustedRoot { issuer: cert.issuer.clone() }),
        }
    }
    Err(VerifyError::MissingChain)
}

/// The chain of a compact token (no `x5c`) from `pool`, certificates the
/// verifier knows but does not trust (DER, any order): the signer is the
/// pool certificate whose SHA-256 fingerprint is `kid`
/// ([`VerifyError::UnknownSigner`] when none is), then each certificate's
/// issuer is looked up in the pool by subject name and key identifier
/// (authorityKeyIdentifier against subjectKeyIdentifier, when both are
/// present) until a certificate is issued by a trusted root of `anchors`.
///
/// The search is bounded like `x5c`: at most [`MAX_CHAIN_LEN`]
/// certificates, each pool certificate at most once, one issuer per step
/// (a candidate whose signature verifies, valid at `now` first, the latest
/// notAfter first), no backtracking. It decides nothing: the result goes
/// through [`validate_path`] exactly as an `x5c` would, so an issuer missing
/// from the pool is the [`VerifyError::UntrustedRoot`] of an `x5c` that
/// stops short, and a pool certificate with the issuer's name but another
/// key is the [`VerifyError::BadCertSignature`] of a wrong `x5c` entry.
/// Pool certificates that do not parse are never anybody's issuer.
pub fn chain_from_pool(
    kid: &str,
    pool: &[Vec<u8>],
    anchors: &TrustAnchors,
    now: i64,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    let leaf = pool
        .iter()
        .find(|d| super::cert::sha256_hex(d) == kid)
        .ok_or_else(|| VerifyError::UnknownSigner { kid: kid.to_string() })?;
    let mut chain = vec![leaf.clone()];
    // A signer that does not parse is reported by validate_path.
    let Ok(mut current) = CertInfo::parse(leaf) else {
        return Ok(chain);
    };
    let known: Vec<CertInfo> = pool.iter().filter_map(|d| CertInfo::parse(d).ok()).collect();
    while chain.len() < MAX_CHAIN_LEN && !current.is_self_issued() {
        if anchors.roots.iter().any(|r| r.subject_raw == current.issuer_raw && signature_ok(&current, r)) {
            break;
        }
        let mut named: Vec<&CertInfo> = known
            .iter()
            .filter(|c| c.subject_raw == current.issuer_raw && key_ids_agree(&current, c) && !chain.contains(&c.der))
            .collect();
        named.sort_by_key(|c| (check_validity(c, now).is_err(), std::cmp::Reverse(c.not_after)));
        let Some(next) = named.iter().find(|c| signature_ok(&current, c)).or(named.first()) else {
            break;
        };
        chain.push(next.der.clone());
        if !signature_ok(&current, next) {
            break;
        }
        current = (*next).clone();
    }
    Ok(chain)
}

/// RFC 5280 §4.2.1.1: when a certificate names its issuer's key
/// (authorityKeyIdentifier) and the candidate names its own
/// (subjectKeyIdentifier), they are the same.
fn key_ids_agree(cert: &CertInfo, issuer: &CertInfo) -> bool {
    match (&cert.aki, &issuer.ski) {
        (Some(aki), Some(ski)) => aki == ski,
        _ => true,
    }
}

/// RFC 7515 §4.1.6: every certificate in `x5c` certifies the one before it,
/// also past the point where the path reached a trusted root. What may
/// follow is therefore the root itself or another certificate for the same
/// CA (such as a cross-certificate during a root rollover), never an
/// unrelated certificate.
fn check_rest_certifies(last: &CertInfo, rest: impl Iterator<Item = CertInfo>) -> Result<(), VerifyError> {
    let mut prev = last.clone();
    for c in rest {
        if c.subject_raw != prev.issuer_raw || !signature_ok(&prev, &c) {
            return Err(VerifyError::BadCertificate {
                subject: c.subject,
                detail:
                    "x5c continues past the trusted root with a certificate that does not certify the one before it"
                        .into(),
            });
        }
        prev = c;
    }
    Ok(())
}

/// A certificate offered as a trust anchor is a self-signed CA whose
/// signature verifies with its own key and whose key is strong enough.
pub fn check_root(cert: &CertInfo) -> Result<(), VerifyError> {
    if !cert.is_self_issued() {
        return Err(VerifyError::BadCertificate {
            subject: cert.subject.clone(),
            detail: format!("not a root: issued by {}", cert.issuer),
        });
    }
    check_issuer_ca(cert)?;
    check_key_size(cert)?;
    check_critical_extensions(cert)?;
    check_signature(cert, cert)
}

/// A cross-certificate offered to introduce `new_root` on a machine (a
/// root rollover, as ISRG introduced its root): `cross` carries exactly
/// `new_root`'s subject and public key, is a CA, and validates at `now` to a
/// root the machine already trusts (signature, validity, CA constraints,
/// CRLs). `new_root` itself must be a proper self-signed root. Returns the
/// validated path of the cross-certificate (cross first, trusted root last).
pub fn check_cross_certificate(
    new_root: &CertInfo,
    cross: &CertInfo,
    anchors: &TrustAnchors,
    now: i64,
    crls: &[Crl],
) -> Result<ValidatedPath, VerifyError> {
    check_root(new_root)?;
    if cross.subject_raw != new_root.subject_raw || cross.spki_der != new_root.spki_der {
        return Err(VerifyError::BadCertificate {
            subject: cross.subject.clone(),
            detail: format!(
                "is not a cross-certificate for {}: it must carry the new root's exact subject and public key",
                new_root.subject
            ),
        });
    }
    if cross.is_self_issued() {
        return Err(VerifyError::BadCertificate {
            subject: cross.subject.clone(),
            detail: "is self-issued: a cross-certificate is signed by a root the machine already trusts".into(),
        });
    }
    check_cross_limits(cross)?;
    validate_path(std::slice::from_ref(&cross.der), anchors, now, crls, LeafRole::Ca)
}

/// The vouching chain to store for a root introduced by the
/// cross-certificate whose validated path is `cross_path` (from
/// [`check_cross_certificate`]): the cross-certificate, the root that
/// signed it, and that root's own vouching chain, if any. Longer than
/// [`MAX_VOUCHING_CHAIN`] is refused.
pub fn vouching_chain(cross_path: &ValidatedPath, anchors: &TrustAnchors) -> Result<Vec<Vec<u8>>, VerifyError> {
    let [cross, issuer] = cross_path.certs.as_slice() else {
        return Err(VerifyError::BadCertificate {
            subject: cross_path.signer().subject.clone(),
            detail: "a cross-certificate must be signed directly by a trusted root".into(),
        });
    };
    let mut chain = vec![cross.der.clone(), issuer.der.clone()];
    if let Some(further) = anchors.vouching(&issuer.fingerprint) {
        chain.extend(further.iter().map(|c| c.der.clone()));
    }
    if chain.len() > MAX_VOUCHING_CHAIN {
        return Err(VerifyError::BadCertificate {
            subject: cross.subject.clone(),
            detail: format!(
                "vouches for a root through {} cross-certificates, more than the {} allowed; \
                 trust the new root by its fingerprint instead",
                chain.len() / 2,
                MAX_VOUCHING_CHAIN / 2
            ),
        });
    }
    Ok(chain)
}

/// RFC 5280 §6.1.3 (a)(2) for a certificate offered as a trust anchor:
/// valid at `now` ([`VerifyError::CertExpired`],
/// [`VerifyError::CertNotYetValid`] otherwise).
pub fn check_valid_at(cert: &CertInfo, now: i64) -> Result<(), VerifyError> {
    check_validity(cert, now)
}

fn signature_ok(cert: &CertInfo, issuer: &CertInfo) -> bool {
    check_signature(cert, issuer).is_ok()
}

/// RFC 5280 §6.1.3 (a)(1): the signature verifies with the issuer's key.
fn check_signature(cert: &CertInfo, issuer: &CertInfo) -> Result<(), VerifyError> {
    let Some(scheme) = backend::scheme_of_oid(&cert.sig_alg) else {
        // The issuer's key is judged first, as before the algorithm.
        issuer.rsa_bits()?;
        return Err(VerifyError::BadCertificate {
            subject: cert.subject.clone(),
            detail: format!("unsupported signature algorithm {}", cert.sig_alg),
        });
    };
    match issuer.verifies(scheme, &cert.tbs_der, &cert.signature)? {
        true => Ok(()),
        false => Err(VerifyError::BadCertSignature { subject: cert.subject.clone() }),
    }
}

/// `None` for an unsupported algorithm.
#[cfg(feature = "issuer")]
pub(crate) fn verify_rsa(alg_oid: &str, key: &rsa::PublicKey, msg: &[u8], sig: &[u8]) -> Option<bool> {
    Some(backend::rsa_verify(key, backend::scheme_of_oid(alg_oid)?, msg, sig))
}

/// RFC 5280 §6.1.3 (a)(2): notBefore <= now <= notAfter.
fn check_validity(cert: &CertInfo, now: i64) -> Result<(), VerifyError> {
    if now < cert.not_before {
        return Err(VerifyError::CertNotYetValid { subject: cert.subject.clone(), not_before: cert.not_before, now });
    }
    if now > cert.not_after {
        return Err(VerifyError::CertExpired { subject: cert.subject.clone(), not_after: cert.not_after, now });
    }
    Ok(())
}

/// tka policy: RSA keys of at least 2048 bits, everywhere in the chain.
fn check_key_size(cert: &CertInfo) -> Result<(), VerifyError> {
    let bits = cert.rsa_bits()?;
    if bits < MIN_RSA_BITS {
        return Err(VerifyError::WeakKey {
            subject: cert.subject.clone(),
            detail: format!("RSA key of {bits} bits is below the {MIN_RSA_BITS}-bit minimum"),
        });
    }
    Ok(())
}

/// RFC 5280 §6.1.4 (o) / §6.1.5 (f): no unprocessed critical extension.
fn check_critical_extensions(cert: &CertInfo) -> Result<(), VerifyError> {
    match cert.unknown_critical.first() {
        Some(oid) => Err(VerifyError::UnknownCriticalExtension { subject: cert.subject.clone(), oid: oid.clone() }),
        None => Ok(()),
    }
}

/// The tka signer profile: not a CA, digitalSignature, tka token-signing EKU.
fn check_token_signer(cert: &CertInfo) -> Result<(), VerifyError> {
    if cert.is_ca {
        return Err(VerifyError::SignerIsCa { subject: cert.subject.clone() });
    }
    if !cert.key_usage.is_some_and(|(digital_signature, _, _)| digital_signature) {
        return Err(VerifyError::MissingDigitalSignature { subject: cert.subject.clone() });
    }
    if !cert.has_signer_eku() {
        return Err(VerifyError::MissingSignerEku { subject: cert.subject.clone() });
    }
    Ok(())
}

/// RFC 5280 §6.1.4 (k) and (n): an issuer is a CA and, when keyUsage is
/// present, asserts keyCertSign.
fn check_issuer_ca(cert: &CertInfo) -> Result<(), VerifyError> {
    if !cert.is_ca {
        return Err(VerifyError::NotCa { subject: cert.subject.clone() });
    }
    if cert.key_usage.is_some_and(|(_, cert_sign, _)| !cert_sign) {
        return Err(VerifyError::MissingKeyCertSign { subject: cert.subject.clone() });
    }
    Ok(())
}

/// RFC 5280 §6.1.4 (l)-(m): a CA at position `i` (0 = end entity) has
/// `i - 1` non-self-issued intermediates below it, which must not exceed its
/// pathLenConstraint.
fn check_path_len(cert: &CertInfo, i: usize) -> Result<(), VerifyError> {
    match cert.path_len {
        Some(max) if (i - 1) as u64 > u64::from(max) => {
            Err(VerifyError::PathLenExceeded { subject: cert.subject.clone() })
        }
        _ => Ok(()),
    }
}

/// RFC 5280 §6.3: a certificate listed on a CRL signed by its issuer is revoked.
fn check_not_revoked(cert: &CertInfo, issuer: &CertInfo, crls: &[Crl]) -> Result<(), VerifyError> {
    for crl in crls {
        if crl.revoked.contains(&cert.serial_hex) && crl.is_signed_by(issuer) {
            return Err(VerifyError::CertRevoked { subject: cert.subject.clone(), serial: cert.serial_hex.clone() });
        }
    }
    Ok(())
}
