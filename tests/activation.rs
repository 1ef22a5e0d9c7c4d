//! The application's question, `activation::check_activated`, and the
//! machine side (`activate`, `status`) with pinned vendor roots.
//!
//! The attack: the store is the user's (`--store`, `TKA_STORE`), and any
//! root it trusts can issue for any product. A user makes a root of their
//! own, has a store trust it next to the vendor's, and self-issues a token.
//! An application that pins its vendor's root fingerprint refuses that token
//! with `VerifyError::WrongRoot`, naming both fingerprints.

mod common;

use common::*;
use tka::activation::{activate, check_activated, status, ProductStatus};
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::keys::SignatureAlgorithm;
use tka::machine::MachineIdentity;
use tka::pki::sha256_hex;
use tka::request::ActivationRequest;
use tka::store::Store;
use tka::{Error, VerifyError};

/// A token for the fixture machine signed by `signer` (certificate chain `chain`).
fn token_by(key: &str, chain: Vec<Vec<u8>>) -> String {
    let signer = TokenSigner::new(Box::new(test_key(key)), chain).unwrap();
    let req = ActivationRequest::new(&machine(), NOW - 60, None);
    let opts = IssueOptions { alg: SignatureAlgorithm::Rs256, ..Default::default() };
    issue_token(&req, &opts, &signer, NOW - 60).unwrap().text
}

/// A token from the vendor's PKI.
fn vendor_token() -> String {
    token_by("signer", vec![pki().signer.clone(), pki().int.clone()])
}

/// A token self-issued under the other root.
fn self_issued_token() -> String {
    token_by("signer2", vec![other_pki().signer.clone()])
}

/// A store that trusts the vendor's root and the self-made one.
fn store_trusting_both() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let lock = store.lock().unwrap();
    lock.add_root(&pki().root).unwrap();
    lock.add_root(&other_pki().root).unwrap();
    drop(lock);
    (tmp, store)
}

fn ident(_: &str) -> tka::Result<MachineIdentity> {
    Ok(machine())
}

/// The refusal a vendor pin gives a self-issued token.
fn wrong_root() -> VerifyError {
    VerifyError::WrongRoot {
        subject: "CN=Self-made Root,O=someone".into(),
        expected: vec![sha256_hex(&pki().root)],
        found: sha256_hex(&other_pki().root),
    }
}

#[test]
fn check_activated_with_the_vendor_pin_refuses_a_self_issued_token() {
    let (_t, store) = store_trusting_both();
    activate(&store, &self_issued_token(), &ident, &[], NOW).unwrap();
    // The attack, unpinned: the self-issued token counts as an activation.
    check_activated(&store, PRODUCT, &machine(), &[], NOW + 60).unwrap();
    // Pinned to the vendor's root: refused, naming both fingerprints.
    let pins = [fingerprint(&pki().root)];
    match check_activated(&store, PRODUCT, &machine(), &pins, NOW + 60) {
        Err(Error::Verify(e)) => assert_eq!(e, wrong_root()),
        other => panic!("expected WrongRoot, got {other:?}"),
    }
    let msg = wrong_root().to_string();
    assert_eq!(
        msg,
        format!(
            "token chain ends at root CN=Self-made Root,O=someone with fingerprint {}, not at the pinned root {}",
            sha256_hex(&other_pki().root),
            sha256_hex(&pki().root)
        )
    );
}

#[test]
fn status_with_the_vendor_pin_reports_a_self_issued_token_as_wrong_root() {
    let (_t, store) = store_trusting_both();
    activate(&store, &self_issued_token(), &ident, &[], NOW).unwrap();
    match status(&store, PRODUCT, &machine(), &[fingerprint(&pki().root)], NOW + 60).unwrap() {
        ProductStatus::Invalid { product, reason } => {
            assert_eq!(product, PRODUCT);
            assert_eq!(reason, wrong_root());
        }
        other => panic!("expected WrongRoot, got {other:?}"),
    }
}

#[test]
fn activate_with_the_vendor_pin_refuses_a_self_issued_token_and_changes_nothing() {
    let (_t, store) = store_trusting_both();
    let state = store.state().unwrap();
    let pins = [fingerprint(&pki().root)];
    match activate(&store, &self_issued_token(), &ident, &pins, NOW) {
        Err(Error::Verify(e)) => assert_eq!(e, wrong_root()),
        other => panic!("expected WrongRoot, got {other:?}"),
    }
    assert!(store.tokens().unwrap().is_empty());
    assert_eq!(store.state().unwrap(), state, "a refused token does not move the clock mark");
}

#[test]
fn the_vendor_token_passes_the_vendor_pin() {
    let (_t, store) = store_trusting_both();
    let pins = [fingerprint(&pki().root)];
    activate(&store, &vendor_token(), &ident, &pins, NOW).unwrap();
    let v = check_activated(&store, PRODUCT, &machine(), &pins, NOW + 60).unwrap();
    assert_eq!(v.claims.aud, PRODUCT);
    assert!(status(&store, PRODUCT, &machine(), &pins, NOW + 60).unwrap().is_active());
    // Any of several pins will do.
    let both = [fingerprint(&other_pki().root), fingerprint(&pki().root)];
    check_activated(&store, PRODUCT, &machine(), &both, NOW + 60).unwrap();
}

#[test]
fn several_pins_are_all_named_in_the_refusal() {
    let (_t, store) = store_trusting_both();
    let pins = [fingerprint(&pki().root), fingerprint(&pki().int)];
    match activate(&store, &self_issued_token(), &ident, &pins, NOW) {
        Err(Error::Verify(e)) => assert_eq!(
            e.to_string(),
            format!(
                "token chain ends at root CN=Self-made Root,O=someone with fingerprint {}, \
                 not at one of the pinned roots {}, {}",
                sha256_hex(&other_pki().root),
                sha256_hex(&pki().root),
                sha256_hex(&pki().int)
            )
        ),
        other => panic!("expected WrongRoot, got {other:?}"),
    }
}
