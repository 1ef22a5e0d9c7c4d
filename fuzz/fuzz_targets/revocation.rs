//! Revocation data: X.509 CRLs (`Crl::parse`, then the signature check
//! against the fixture issuing CA) and token revocation lists (the JWS
//! decoder with the revocation `typ`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tka::jws::{self, REVOCATION_TYP};
use tka::pki::{CertInfo, Crl};

fn issuers() -> &'static [CertInfo] {
    static I: OnceLock<Vec<CertInfo>> = OnceLock::new();
    I.get_or_init(|| {
        [include_str!("../../tests/vectors/pki/root.pem"), include_str!("../../tests/vectors/pki/int.pem")]
            .iter()
            .map(|p| {
                CertInfo::parse(&tka::pki::pem::decode_all(p, "CERTIFICATE").expect("fixture PEM")[0])
                    .expect("fixture parses")
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the parser so one corpus serves both.
    let Some((&sel, rest)) = data.split_first() else { return };
    if sel & 1 == 0 {
        if let Ok(crl) = Crl::parse(rest) {
            for i in issuers() {
                let _ = crl.is_signed_by(i);
            }
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let _ = jws::decode(text, REVOCATION_TYP);
    }
});
