//! Cross-certificates grant no more than they say (second review, findings
//! 1 and 6), through the library: what `trust_root` refuses (a
//! cross-certificate too narrow for a root, a root outside its validity, a
//! root with an issuing CA's key, a scope wider than the signing root's),
//! and how a root trusted through a cross-certificate is held to it when a
//! token is checked (validity, pathLen, CRLs of the root that signed it),
//! also after that root is removed. One test per rule or attack, each
//! naming the exact error.
//!
//! The end-to-end attack through the binary is in tests/rotation.rs.

mod common;
mod sandbox;
mod tools;

use common::rawcert::*;
use common::*;
use const_oid::ObjectIdentifier;
use tka::activation::{activate, check_activated};
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::issuer::CertKind;
use tka::pki::CertInfo;
use tka::request::ActivationRequest;
use tka::revocation::{import, ImportOptions};
use tka::store::Store;
use tka::trust::{trust_root, ProductScope, TrustRootOptions};
use tka::{CrossLimit, Error, VerifyError};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::serial_number::SerialNumber;

/// Subject of the new root (test key `other`) in the rollover tests.
const NEW_ROOT: &str = "CN=Test Root G2,O=tka tests";

/// A store in a temporary directory that trusts the test PKI's root (as
/// its first root, limited to `products` when given).
fn store_trusting_root(products: Option<&[String]>) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let scope = products.map_or(ProductScope::Unchanged, ProductScope::Only);
    trust_root(&store, &pki().root, &TrustRootOptions { products: scope, ..Default::default() }, NOW).unwrap();
    (tmp, store)
}

fn with_cross(cross: &[u8]) -> TrustRootOptions<'_> {
    TrustRootOptions { cross: Some(cross), ..Default::default() }
}

/// Every file under the store, with its content.
fn snapshot(store: &Store) -> sandbox::Snapshot {
    sandbox::snapshot(store.dir())
}

/// A token for this machine signed by test key `key`, whose certificate
/// chain (signer first) is `chain`.
fn token(chain: Vec<Vec<u8>>, key: &str) -> String {
    let signer = TokenSigner::new(Box::new(test_key(key)), chain).unwrap();
    let req = ActivationRequest::new(&machine(), NOW - 60, None);
    issue_token(&req, &IssueOptions::default(), &signer, NOW - 30).unwrap().text
}

fn identify(_product: &str) -> tka::Result<tka::machine::MachineIdentity> {
    Ok(machine())
}

/// A token signer certificate (test key `signer`) issued by `issuer`
/// (DER) with test key `issuer_key`.
fn signer_under(issuer: &[u8], issuer_key: &str) -> Vec<u8> {
    cert_under(
        "CN=Test Signer,O=tka tests",
        "signer",
        Some((issuer, issuer_key)),
        SerialNumber::from(0x5101u32),
        NOW - 10 * DAY,
        NOW + 300 * DAY,
        signer_exts(),
    )
}

/// The new root: self-signed by test key `other`, valid `nb` to `na`.
fn new_root(nb: i64, na: i64) -> Vec<u8> {
    cert(CertKind::Root, NEW_ROOT, &test_key("other"), None, nb, na)
}

/// A genuine cross-certificate for [`NEW_ROOT`] (tka's Cross profile),
/// signed by the test PKI's root, valid until `na`.
fn genuine_cross(na: i64) -> Vec<u8> {
    let p = pki();
    cert(CertKind::Cross, NEW_ROOT, &test_key("other"), Some((&p.root, &p.root_key)), NOW - DAY, na)
}

/// A root CRL of the test PKI listing `serial`.
fn root_crl(serial: &[u8]) -> Vec<u8> {
    crl_der(&pki().root, 1, vec![SerialNumber::new(serial).unwrap()], "root")
}

fn serial_of(der: &[u8]) -> Vec<u8> {
    let hex = CertInfo::parse(der).unwrap().serial_hex;
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn verify_error(r: tka::Result<impl std::fmt::Debug>) -> VerifyError {
    match r {
        Err(Error::Verify(e)) => e,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

// ----- finding 1: an issuing CA promoted to a root -----

/// The review's attack: with only the issuing CA's key, a self-signed
/// "root" with the CA's name and key, offered with the real issuing CA
/// certificate as its "cross-certificate". The CA certificate has pathLen
/// 0, which leaves no room for the issuing CAs a root signs: refused, and
/// the store is unchanged.
#[test]
fn issuing_ca_certificate_offered_as_a_cross_certificate_is_refused() {
    let p = pki();
    let (_tmp, store) = store_trusting_root(None);
    let subject = CertInfo::parse(&p.int).unwrap().subject;
    let promoted = cert(CertKind::Root, &subject, &p.int_key, None, NOW - DAY, NOW + 36_500 * DAY);
    let before = snapshot(&store);
    let e = verify_error(trust_root(&store, &promoted, &with_cross(&p.int), NOW));
    assert_eq!(e, VerifyError::CrossCertificateTooNarrow { subject, limit: CrossLimit::PathLen(0) });
    assert_eq!(snapshot(&store), before);
}

/// The same promoted "root", once a token issued under the real issuing CA
/// is installed, is refused whatever vouches for it, even its own
/// fingerprint: its key is the key that signed that token's signer.
#[test]
fn root_with_the_key_of_an_installed_tokens_issuing_ca_is_refused() {
    let p = pki();
    let (_tmp, store) = store_trusting_root(None);
    activate(&store, &token(vec![p.signer.clone(), p.int.clone()], "signer"), &identify, &[], NOW).unwrap();
    let subject = CertInfo::parse(&p.int).unwrap().subject;
    let promoted = cert(CertKind::Root, &subject, &p.int_key, None, NOW - DAY, NOW + 36_500 * DAY);
    let fp = tka::pki::sha256_hex(&promoted);
    let before = snapshot(&store);
    let opts = TrustRootOptions { fingerprint: Some(&fp), ..Default::default() };
    let e = verify_error(trust_root(&store, &promoted, &opts, NOW));
    assert_eq!(e, VerifyError::RootKeyIsIssuingCa { root: subject.clone(), ca: subject });
    assert_eq!(snapshot(&store), before);
}

/// An issuing CA with room below it (pathLen 1, not tka's profile), 100
/// days left, promoted the same way, is accepted as a cross-certificate,
/// but the anchor it makes is held to it. Returns (CA certificate,
/// promoted root, store).
fn promoted_wide_ca() -> (Vec<u8>, Vec<u8>, tempfile::TempDir, Store) {
    let p = pki();
    let subject = "CN=Test Wide CA,O=tka tests";
    let ca = cert_under(
        subject,
        "intermediate",
        Some((&p.root, "root")),
        SerialNumber::from(0xCA1u32),
        NOW - 300 * DAY,
        NOW + 100 * DAY,
        ca_exts(Some(1)),
    );
    let promoted = cert_under(
        subject,
        "intermediate",
        None,
        SerialNumber::from(0xBAD1u32),
        NOW - DAY,
        NOW + 36_500 * DAY,
        ca_exts(None),
    );
    let (tmp, store) = store_trusting_root(None);
    let added = trust_root(&store, &promoted, &with_cross(&ca), NOW).unwrap();
    assert_eq!(added.vouched_by, "a cross-certificate from CN=Test Root,O=tka tests");
    (ca, promoted, tmp, store)
}

/// The root's CRL revoking the issuing CA deactivates what the promoted
/// anchor vouched for ("still activated" in the review).
#[test]
fn promoted_issuing_ca_is_revoked_with_the_issuing_ca() {
    let (ca, promoted, _tmp, store) = promoted_wide_ca();
    activate(&store, &token(vec![signer_under(&promoted, "intermediate")], "signer"), &identify, &[], NOW).unwrap();
    let r = import(&store, &root_crl(&serial_of(&ca)), &ImportOptions::default(), &identify, NOW).unwrap();
    let subject = CertInfo::parse(&ca).unwrap().subject;
    let revoked = VerifyError::CertRevoked { subject, serial: "0CA1".into() };
    assert_eq!(r.deactivated, vec![(PRODUCT.to_string(), revoked.clone())]);
    assert_eq!(verify_error(check_activated(&store, PRODUCT, &machine(), &[], NOW)), revoked);
}

/// The issuing CA's pathLen still binds: a chain of two CAs under the
/// promoted anchor exceeds the pathLen 1 of the certificate that vouches
/// for it.
#[test]
fn promoted_issuing_ca_keeps_the_issuing_cas_path_len() {
    let (ca, promoted, _tmp, store) = promoted_wide_ca();
    let sub1 = cert_under(
        "CN=Test Sub CA 1,O=tka tests",
        "other",
        Some((&promoted, "intermediate")),
        SerialNumber::from(0x5B1u32),
        NOW - DAY,
        NOW + 300 * DAY,
        ca_exts(None),
    );
    let sub2 = cert_under(
        "CN=Test Sub CA 2,O=tka tests",
        "signer2",
        Some((&sub1, "other")),
        SerialNumber::from(0x5B2u32),
        NOW - DAY,
        NOW + 300 * DAY,
        ca_exts(Some(0)),
    );
    let signer = signer_under(&sub2, "signer2");
    let e = verify_error(activate(&store, &token(vec![signer, sub2, sub1], "signer"), &identify, &[], NOW));
    assert_eq!(e, VerifyError::PathLenExceeded { subject: CertInfo::parse(&ca).unwrap().subject });
}

/// The promoted anchor ends when the issuing CA certificate does (100
/// days), not in a hundred years.
#[test]
fn promoted_issuing_ca_expires_with_the_issuing_ca() {
    let (ca, promoted, _tmp, store) = promoted_wide_ca();
    activate(&store, &token(vec![signer_under(&promoted, "intermediate")], "signer"), &identify, &[], NOW).unwrap();
    check_activated(&store, PRODUCT, &machine(), &[], NOW + 100 * DAY).unwrap();
    let later = NOW + 101 * DAY;
    let e = verify_error(check_activated(&store, PRODUCT, &machine(), &[], later));
    let ca = CertInfo::parse(&ca).unwrap();
    assert_eq!(e, VerifyError::CertExpired { subject: ca.subject, not_after: ca.not_after, now: later });
}

// ----- finding 6: constraints of a cross-certificate -----

/// A cross-certificate with pathLen 0 (here tka's issuing-CA profile for
/// the new root's name and key) cannot make a root.
#[test]
fn cross_certificate_with_path_len_0_is_refused() {
    let p = pki();
    let (_tmp, store) = store_trusting_root(None);
    let cross = cert(
        CertKind::Intermediate,
        NEW_ROOT,
        &test_key("other"),
        Some((&p.root, &p.root_key)),
        NOW - DAY,
        NOW + 365 * DAY,
    );
    let before = snapshot(&store);
    let e = verify_error(trust_root(&store, &new_root(NOW - DAY, NOW + 3650 * DAY), &with_cross(&cross), NOW));
    assert_eq!(e, VerifyError::CrossCertificateTooNarrow { subject: NEW_ROOT.into(), limit: CrossLimit::PathLen(0) });
    assert_eq!(snapshot(&store), before);
}

/// A cross-certificate whose extended key usage is serverAuth only does not
/// vouch for a root that signs token signers.
#[test]
fn cross_certificate_for_server_auth_only_is_refused() {
    let (_tmp, store) = store_trusting_root(None);
    let mut exts = ca_exts(None);
    exts.push(ext(&ExtendedKeyUsage(vec![ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1")]), false));
    let cross = cert_under(
        NEW_ROOT,
        "other",
        Some((&pki().root, "root")),
        SerialNumber::from(0xC0u32),
        NOW - DAY,
        NOW + 365 * DAY,
        exts,
    );
    let before = snapshot(&store);
    let e = verify_error(trust_root(&store, &new_root(NOW - DAY, NOW + 3650 * DAY), &with_cross(&cross), NOW));
    let limit = CrossLimit::ExtendedKeyUsage(vec!["1.3.6.1.5.5.7.3.1".into()]);
    assert_eq!(e, VerifyError::CrossCertificateTooNarrow { subject: NEW_ROOT.into(), limit });
    assert_eq!(snapshot(&store), before);
}

/// An expired new root is refused, through a cross-certificate, by its
/// fingerprint, or as a store's first root.
#[test]
fn expired_new_root_is_refused() {
    let root = new_root(NOW - 20 * DAY, NOW - 10 * DAY);
    let fp = tka::pki::sha256_hex(&root);
    let expired = VerifyError::CertExpired { subject: NEW_ROOT.into(), not_after: NOW - 10 * DAY, now: NOW };
    let (_tmp, store) = store_trusting_root(None);
    let before = snapshot(&store);
    let cross = genuine_cross(NOW + 365 * DAY);
    assert_eq!(verify_error(trust_root(&store, &root, &with_cross(&cross), NOW)), expired);
    let by_fp = TrustRootOptions { fingerprint: Some(&fp), ..Default::default() };
    assert_eq!(verify_error(trust_root(&store, &root, &by_fp, NOW)), expired);
    assert_eq!(snapshot(&store), before);
    let tmp = tempfile::tempdir().unwrap();
    let empty = Store::open(&tmp.path().join("store")).unwrap();
    assert_eq!(verify_error(trust_root(&empty, &root, &TrustRootOptions::default(), NOW)), expired);
    assert!(empty.roots().unwrap().is_empty());
}

/// A new root that becomes valid only in ten years is refused the same ways.
#[test]
fn not_yet_valid_new_root_is_refused() {
    let nb = NOW + 3650 * DAY;
    let root = new_root(nb, NOW + 7300 * DAY);
    let fp = tka::pki::sha256_hex(&root);
    let early = VerifyError::CertNotYetValid { subject: NEW_ROOT.into(), not_before: nb, now: NOW };
    let (_tmp, store) = store_trusting_root(None);
    let before = snapshot(&store);
    let cross = genuine_cross(NOW + 365 * DAY);
    assert_eq!(verify_error(trust_root(&store, &root, &with_cross(&cross), NOW)), early);
    let by_fp = TrustRootOptions { fingerprint: Some(&fp), ..Default::default() };
    assert_eq!(verify_error(trust_root(&store, &root, &by_fp, NOW)), early);
    assert_eq!(snapshot(&store), before);
    let tmp = tempfile::tempdir().unwrap();
    let empty = Store::open(&tmp.path().join("store")).unwrap();
    assert_eq!(verify_error(trust_root(&empty, &root, &TrustRootOptions::default(), NOW)), early);
    assert!(empty.roots().unwrap().is_empty());
}

/// A genuine rollover: the new root is stored with its vouching chain
/// (the cross-certificate, then the root that signed it), keeps working
/// after the old root is removed, and a fingerprint makes it a root on its
/// own.
#[test]
fn genuine_cross_certificate_is_stored_with_its_vouching_chain() {
    let p = pki();
    let (_tmp, store) = store_trusting_root(None);
    let root = new_root(NOW - DAY, NOW + 7300 * DAY);
    let cross = genuine_cross(NOW + 3650 * DAY);
    trust_root(&store, &root, &with_cross(&cross), NOW).unwrap();
    let stored = store.roots().unwrap();
    let new = stored.iter().find(|r| r.der == root).unwrap();
    assert_eq!(new.vouching, Some(vec![cross.clone(), p.root.clone()]));
    activate(&store, &token(vec![signer_under(&root, "other")], "signer"), &identify, &[], NOW).unwrap();
    store.lock().unwrap().remove_root(&tka::pki::sha256_hex(&p.root), false).unwrap();
    check_activated(&store, PRODUCT, &machine(), &[], NOW).unwrap();
    let fp = tka::pki::sha256_hex(&root);
    trust_root(&store, &root, &TrustRootOptions { fingerprint: Some(&fp), ..Default::default() }, NOW).unwrap();
    assert_eq!(store.roots().unwrap()[0].vouching, None);
}

/// A root trusted through a cross-certificate ends with it, even when the
/// root itself is valid for twenty years.
#[test]
fn root_trusted_through_a_cross_certificate_expires_with_it() {
    let (_tmp, store) = store_trusting_root(None);
    let root = new_root(NOW - DAY, NOW + 7300 * DAY);
    trust_root(&store, &root, &with_cross(&genuine_cross(NOW + 50 * DAY)), NOW).unwrap();
    activate(&store, &token(vec![signer_under(&root, "other")], "signer"), &identify, &[], NOW).unwrap();
    let later = NOW + 51 * DAY;
    let e = verify_error(check_activated(&store, PRODUCT, &machine(), &[], later));
    assert_eq!(e, VerifyError::CertExpired { subject: NEW_ROOT.into(), not_after: NOW + 50 * DAY, now: later });
}

/// The old root's CRL revoking the cross-certificate revokes the root it
/// vouched for, also once the old root is no longer trusted.
#[test]
fn revoking_the_cross_certificate_revokes_the_root_it_vouched_for() {
    let p = pki();
    let (_tmp, store) = store_trusting_root(None);
    let root = new_root(NOW - DAY, NOW + 7300 * DAY);
    let cross = genuine_cross(NOW + 3650 * DAY);
    trust_root(&store, &root, &with_cross(&cross), NOW).unwrap();
    activate(&store, &token(vec![signer_under(&root, "other")], "signer"), &identify, &[], NOW).unwrap();
    let r = import(&store, &root_crl(&serial_of(&cross)), &ImportOptions::default(), &identify, NOW).unwrap();
    let serial = CertInfo::parse(&cross).unwrap().serial_hex;
    let revoked = VerifyError::CertRevoked { subject: NEW_ROOT.into(), serial };
    assert_eq!(r.deactivated, vec![(PRODUCT.to_string(), revoked.clone())]);
    store.lock().unwrap().remove_root(&tka::pki::sha256_hex(&p.root), false).unwrap();
    assert_eq!(verify_error(check_activated(&store, PRODUCT, &machine(), &[], NOW)), revoked);
}

/// A root vouched for by a cross-certificate may activate at most what the
/// signing root may: the signer's scope by default, a part of it on
/// request, never more.
#[test]
fn root_trusted_through_a_cross_certificate_gets_at_most_the_signers_scope() {
    let scope = vec![PRODUCT.to_string()];
    let (_tmp, store) = store_trusting_root(Some(&scope));
    let root = new_root(NOW - DAY, NOW + 7300 * DAY);
    let cross = genuine_cross(NOW + 3650 * DAY);
    let before = snapshot(&store);
    let wider = ["other-product".to_string()];
    for products in [ProductScope::All, ProductScope::Only(&wider)] {
        let opts = TrustRootOptions { cross: Some(&cross), products, ..Default::default() };
        match trust_root(&store, &root, &opts, NOW) {
            Err(Error::Refused(m)) => assert!(
                m.starts_with(
                    "a root vouched for by a cross-certificate from CN=Test Root,O=tka tests may activate at most \
                     what CN=Test Root,O=tka tests may (example-pro), not "
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(snapshot(&store), before);
    let added = trust_root(&store, &root, &with_cross(&cross), NOW).unwrap();
    assert_eq!(added.products, Some(scope));
}

/// `TrustAnchors::with_vouching` takes pairs of cross-certificate and
/// issuer only.
#[test]
fn vouching_chain_of_odd_length_is_malformed() {
    let p = pki();
    let anchors = tka::pki::TrustAnchors::from_der(std::slice::from_ref(&p.root)).unwrap();
    let e = anchors.with_vouching("00", std::slice::from_ref(&p.int)).unwrap_err();
    let detail = "1 certificates: expected pairs of cross-certificate and issuer, at most 8".to_string();
    assert_eq!(e, VerifyError::Malformed { what: "vouching chain", detail });
}

/// A vouching chain file that does not hold pairs of cross-certificate and
/// issuer is a corrupt store, never read as "trusted on its own"; one left
/// without its root (a crash before the root was written) is ignored.
#[test]
fn vouching_chain_file_with_one_certificate_is_corrupt() {
    let (_tmp, store) = store_trusting_root(None);
    let root = new_root(NOW - DAY, NOW + 7300 * DAY);
    let cross = genuine_cross(NOW + 3650 * DAY);
    let orphan = store.dir().join(format!("roots/{}.cross", tka::pki::sha256_hex(&root)));
    std::fs::write(&orphan, tka::pki::pem::encode("CERTIFICATE", &cross)).unwrap();
    assert_eq!(store.roots().unwrap().len(), 1, "a chain without its root is ignored");
    std::fs::remove_file(&orphan).unwrap();
    trust_root(&store, &root, &with_cross(&cross), NOW).unwrap();
    std::fs::write(&orphan, tka::pki::pem::encode("CERTIFICATE", &cross)).unwrap();
    let detail = "1 certificates: expected pairs of cross-certificate and issuer".to_string();
    match store.roots() {
        Err(tka::store::StoreError::Corrupt { path, detail: d }) => assert_eq!((path, d), (orphan, detail)),
        other => panic!("{other:?}"),
    }
}
