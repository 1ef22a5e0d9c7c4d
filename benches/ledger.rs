//! Bulk issuance through the ledger, in process: a batch of 256 requests
//! signed in parallel and recorded (RSA-2048 PS256, TEST-ONLY keys from
//! certs/test/), and the raw signature for comparison.
//!
//! Run: `cargo bench --bench ledger` (the end-to-end figure with token files
//! and the OpenSSL comparison is `scripts/bench-issue.sh`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use tka::issuer::bulk::{issue_batch, synthetic_request, BatchInput, BatchOptions};
use tka::issuer::issue::TokenSigner;
use tka::issuer::{create_certificate, CertKind, CertRequest};
use tka::keys::{SignatureAlgorithm, Signer, SoftwareKey};
use tka::ledger::{Ledger, NewEntitlement};
use tka::pki::CertInfo;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const BATCH: u64 = 256;

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
    let raw = key("signer");
    let signer = TokenSigner::new(Box::new(signer_key), vec![signer_der, int]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    ledger
        .add_entitlement(
            &NewEntitlement {
                product: "bench".into(),
                machines: u32::MAX,
                name: Some("b".into()),
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
    let opts = BatchOptions { entitlement: Some("b".into()), ..Default::default() };

    let mut g = c.benchmark_group("issuance");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("raw RSA-2048 PS256 signature ({})", raw.backend()), |b| {
        b.iter(|| raw.sign(SignatureAlgorithm::Ps256, black_box(b"message")).unwrap())
    });
    g.throughput(Throughput::Elements(BATCH));
    let mut next = 0u64;
    g.bench_function(format!("issue_batch of {BATCH} into the ledger (parallel)"), |b| {
        b.iter(|| {
            let inputs: Vec<BatchInput> = (next..next + BATCH)
                .map(|n| BatchInput { source: n.to_string(), request: Ok(synthetic_request("bench", n, NOW)) })
                .collect();
            next += BATCH;
            let r = issue_batch(&mut ledger, inputs, &opts, &signer, NOW, None, &|_| {}).unwrap();
            assert_eq!(r.ok as u64, BATCH);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(10));
    targets = bench
}
criterion_main!(benches);
