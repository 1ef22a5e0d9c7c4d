//! Token decoding and full verification against the fixture root, with a
//! fixed machine and instant. A token that verifies must have been signed
//! by the fixture PKI, which the fuzzer cannot do; any `Ok` is checked to be
//! consistent with what was decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::OnceLock;
use tka::jws::{self, TOKEN_TYP};
use tka::machine::MachineIdentity;
use tka::pki::TrustAnchors;
use tka::verify::{verify_token, MachineCheck, VerifyContext};

const NOW: i64 = 1_800_000_000;

struct Fixed {
    anchors: TrustAnchors,
    machine: MachineIdentity,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let raw: Vec<(String, String)> = [
            ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"),
            ("dmi", "4c4c4544-0042-3510-8052-b4c04f4e4e32"),
            ("bsn", "L1HF12345"),
            ("mac", "00:11:22:33:44:55"),
            ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Fixed {
            anchors: TrustAnchors::from_der(
                &tka::pki::pem::decode_all(include_str!("../../tests/vectors/pki/root.pem"), "CERTIFICATE")
                    .expect("fixture PEM"),
            )
            .expect("fixture root"),
            machine: MachineIdentity::from_raw("example-pro", &raw),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let decoded = jws::decode(text, TOKEN_TYP);
    let _ = tka::token::decode_unverified(text);
    let f = fixed();
    let revoked = HashSet::new();
    for machine in [MachineCheck::Identity(&f.machine), MachineCheck::Skip] {
        let ctx = VerifyContext {
            anchors: &f.anchors,
            pinned_roots: &[],
            now: NOW,
            product: None,
            machine,
            crls: &[],
            revoked_serials: &revoked,
            clock: Some((NOW, 86_400)),
            certificates: &[],
        };
        if let Ok(v) = verify_token(text, &ctx) {
            let d = decoded.as_ref().expect("a verified token decodes");
            assert_eq!(d.alg, v.alg);
            assert_eq!(serde_json::to_value(&v.claims).expect("claims serialize")["jti"], d.payload["jti"]);
        }
    }
});
