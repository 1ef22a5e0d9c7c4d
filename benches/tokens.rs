//! In-process token verification, `check_activated` (store read
//! included) and single issuance (RSA-2048 signer, PS256), with the
//! TEST-ONLY keys from certs/test/. The benchmark names say which library
//! verifies (`tka::keys::VERIFY_BACKEND`) and which signs.
//!
//! Run: `cargo bench --bench tokens` (aws-lc-rs), and
//! `cargo bench --bench tokens --no-default-features --features issuer`
//! (the rsa crate).

use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::HashSet;
use std::hint::black_box;
use tka::activation::{activate, check_activated};
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::issuer::{create_certificate, CertKind, CertRequest};
use tka::keys::{Signer, SoftwareKey, VERIFY_BACKEND};
use tka::machine::MachineIdentity;
use tka::pki::{CertInfo, TrustAnchors};
use tka::request::ActivationRequest;
use tka::store::Store;
use tka::verify::{verify_token, MachineCheck, VerifyContext};

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn key(name: &str) -> SoftwareKey {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("certs/test/{name}.key"));
    SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
}

fn cert(kind: CertKind, subject: &str, k: &SoftwareKey, issuer: Option<(&[u8], &SoftwareKey)>) -> Vec<u8> {
    let req = CertRequest { kind, subject, not_before: NOW - DAY, not_after: NOW + 300 * DAY, delegation: None };
    match issuer {
        None => create_certificate(&req, k.public_key(), None, k).unwrap(),
        Some((der, ik)) => create_certificate(&req, k.public_key(), Some(&CertInfo::parse(der).unwrap()), ik).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let (root_key, int_key, signer_key) = (key("root"), key("intermediate"), key("signer"));
    let root = cert(CertKind::Root, "CN=Bench Root", &root_key, None);
    let int = cert(CertKind::Intermediate, "CN=Bench CA", &int_key, Some((&root, &root_key)));
    let signer_der = cert(CertKind::Signer, "CN=Bench Signer", &signer_key, Some((&int, &int_key)));
    // The default build signs with aws-lc-rs (feature `aws-lc`), else the rsa crate.
    let backend = signer_key.backend();
    let signer = TokenSigner::new(Box::new(signer_key), vec![signer_der, int]).unwrap();
    let machine = MachineIdentity::from_raw(
        "bench",
        &[
            ("mid".into(), "4f1d2c3b4a5968778695a4b3c2d1e0f1".into()),
            ("dmi".into(), "4c4c4544-0042-3510-8052-b4c04f4e4e32".into()),
            ("mac".into(), "00:11:22:33:44:55".into()),
        ],
    );
    let request = ActivationRequest::new(&machine, NOW, None);
    let opts = IssueOptions::default();
    let token = issue_token(&request, &opts, &signer, NOW).unwrap().text;
    let anchors = TrustAnchors::from_der(std::slice::from_ref(&root)).unwrap();
    let revoked = HashSet::new();
    let ctx = VerifyContext {
        anchors: &anchors,
        pinned_roots: &[],
        now: NOW + 60,
        product: Some("bench"),
        machine: MachineCheck::Identity(&machine),
        crls: &[],
        revoked_serials: &revoked,
        clock: None,
        certificates: &[],
    };
    verify_token(&token, &ctx).unwrap();

    c.bench_function(&format!("verify_token (3-certificate chain, PS256, {VERIFY_BACKEND} verifier)"), |b| {
        b.iter(|| verify_token(black_box(&token), &ctx).unwrap())
    });

    // An application's check at start: open the store, read its state,
    // roots, CRLs, revocation lists and the token, verify, (not) raise the
    // clock mark: the files stay in the page cache, as on a machine.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.lock().unwrap().add_root(&root).unwrap();
    let identify = |_: &str| Ok(machine.clone());
    activate(&store, &token, &identify, &[], NOW + 60).unwrap();
    c.bench_function(&format!("check_activated (store read, {VERIFY_BACKEND} verifier)"), |b| {
        b.iter(|| {
            let store = Store::open(black_box(dir.path())).unwrap();
            check_activated(&store, "bench", &machine, &[], NOW + 60).unwrap()
        })
    });
    c.bench_function(&format!("issue_token (RSA-2048 PS256, {backend} signer)"), |b| {
        b.iter(|| issue_token(black_box(&request), &opts, &signer, NOW).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
