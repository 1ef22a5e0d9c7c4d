//! Token verification, one test per rule or attack, each naming the exact error.

mod common;
use common::*;
use std::collections::HashSet;
use tka::keys::SignatureAlgorithm;
use tka::machine::MachineIdentity;
use tka::pki::TrustAnchors;
use tka::request::ActivationRequest;
use tka::token::{issue_token, IssueOptions, TokenSigner};
use tka::verify::{verify_token, MachineCheck, VerifiedToken, VerifyContext};
use tka::VerifyError;

fn signer_with(chain: Vec<Vec<u8>>, key: &str) -> TokenSigner {
    TokenSigner::new(Box::new(test_key(key)), chain).unwrap()
}

fn default_signer() -> TokenSigner {
    let p = pki();
    signer_with(vec![p.signer.clone(), p.int.clone()], "signer")
}

fn request() -> ActivationRequest {
    ActivationRequest::new(&machine(), NOW - 60, None)
}

fn issue(opts: &IssueOptions) -> String {
    issue_token(&request(), opts, &default_signer(), NOW - 30).unwrap().text
}

fn token() -> String {
    issue(&IssueOptions::default())
}

fn anchors() -> TrustAnchors {
    TrustAnchors::from_der(&[pki().root.clone()]).unwrap()
}

fn verify_at(text: &str, now: i64, id: &MachineIdentity) -> Result<VerifiedToken, VerifyError> {
    let anchors = anchors();
    let revoked = HashSet::new();
    let ctx = VerifyContext {
        anchors: &anchors,
        now,
        product: Some(PRODUCT),
        machine: MachineCheck::Identity(id),
        crls: &[],
        revoked_serials: &revoked,
        clock: None,
    };
    verify_token(text, &ctx)
}

fn verify(text: &str) -> Result<VerifiedToken, VerifyError> {
    verify_at(text, NOW, &machine())
}

#[test]
fn good_token_verifies() {
    let v = verify(&token()).unwrap();
    assert_eq!(v.claims.aud, PRODUCT);
    assert_eq!(v.alg, SignatureAlgorithm::Ps256);
    assert_eq!(v.path.len(), 3);
    assert!(!v.in_grace);
    assert_eq!(v.machine_match.unwrap().matched, 5);
}

#[test]
fn rs256_token_verifies() {
    let t = issue(&IssueOptions { alg: SignatureAlgorithm::Rs256, ..Default::default() });
    assert_eq!(verify(&t).unwrap().alg, SignatureAlgorithm::Rs256);
}
