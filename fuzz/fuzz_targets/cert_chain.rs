//! Certificate parsing and path validation: the input is split into up to
//! six DER certificates (2-byte big-endian length prefixes) and validated
//! against the fixture root, for both leaf roles.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tka::pki::{validate_path, CertInfo, LeafRole, TrustAnchors};

/// 2027-01-15T08:00:00Z, the instant the fixtures are valid at.
const NOW: i64 = 1_800_000_000;

fn anchors() -> &'static TrustAnchors {
    static A: OnceLock<TrustAnchors> = OnceLock::new();
    A.get_or_init(|| {
        TrustAnchors::from_der(
            &tka::pki::pem::decode_all(include_str!("../../tests/vectors/pki/root.pem"), "CERTIFICATE")
                .expect("fixture PEM"),
        )
        .expect("fixture root")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut chain = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && chain.len() < 6 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        chain.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    for c in &chain {
        let _ = CertInfo::parse(c);
    }
    let _ = validate_path(&chain, anchors(), NOW, &[], LeafRole::TokenSigner);
    let _ = validate_path(&chain, anchors(), NOW, &[], LeafRole::Ca);
});
