//! Shared test support: a PKI built at test time from the TEST-ONLY keys in
//! certs/test/, at a fixed instant, a fake machine, and (in `rawcert`)
//! certificates and CRLs built by hand with no profile checks.
//! Without the `issuer` feature (the verifier build) only what needs no
//! issuing code is here: the machines, the raw certificates (`rawcert`).
#![allow(dead_code)]

pub mod rawcert;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
#[cfg(feature = "issuer")]
use std::sync::OnceLock;
#[cfg(feature = "issuer")]
use tka::issuer::{create_certificate, CertKind, CertRequest};
#[cfg(feature = "issuer")]
use tka::keys::{Signer, SoftwareKey};
use tka::machine::MachineIdentity;
#[cfg(feature = "issuer")]
use tka::pki::CertInfo;

/// 2027-01-15T08:00:00Z: every test runs "now" at this instant.
pub const NOW: i64 = 1_800_000_000;
pub const DAY: i64 = 86_400;
pub const PRODUCT: &str = "example-pro";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn test_key_path(name: &str) -> PathBuf {
    repo().join("certs/test").join(format!("{name}.key"))
}

#[cfg(feature = "issuer")]
/// Loads a TEST-ONLY key from certs/test/ (ignoring file permissions, which git does not keep).
pub fn test_key(name: &str) -> SoftwareKey {
    let path = test_key_path(name);
    let pem = std::fs::read_to_string(&path).unwrap();
    SoftwareKey::from_pkcs8_pem(&pem, None, &path).unwrap()
}

/// Copies a test key into `dir` with mode 0600 and returns its path.
pub fn private_copy(name: &str, dir: &Path) -> PathBuf {
    let to = dir.join(format!("{name}.key"));
    std::fs::copy(test_key_path(name), &to).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    to
}

#[cfg(feature = "issuer")]
pub struct Pki {
    pub root_key: SoftwareKey,
    pub int_key: SoftwareKey,
    pub signer_key: SoftwareKey,
    pub root: Vec<u8>,
    pub int: Vec<u8>,
    pub signer: Vec<u8>,
}

#[cfg(feature = "issuer")]
pub fn cert(
    kind: CertKind,
    subject: &str,
    key: &SoftwareKey,
    issuer: Option<(&[u8], &SoftwareKey)>,
    nb: i64,
    na: i64,
) -> Vec<u8> {
    let req = CertRequest { kind, subject, not_before: nb, not_after: na, delegation: None };
    match issuer {
        None => create_certificate(&req, key.public_key(), None, key).unwrap(),
        Some((der, ikey)) => {
            let info = CertInfo::parse(der).unwrap();
            create_certificate(&req, key.public_key(), Some(&info), ikey).unwrap()
        }
    }
}

#[cfg(feature = "issuer")]
/// Root (10 years around NOW) -> issuing CA (5 years) -> signer (1 year).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root_key = test_key("root");
        let int_key = test_key("intermediate");
        let signer_key = test_key("signer");
        let root =
            cert(CertKind::Root, "CN=Test Root,O=tka tests", &root_key, None, NOW - 365 * DAY, NOW + 10 * 365 * DAY);
        let int = cert(
            CertKind::Intermediate,
            "CN=Test Issuing CA,O=tka tests",
            &int_key,
            Some((&root, &root_key)),
            NOW - 300 * DAY,
            NOW + 5 * 365 * DAY,
        );
        let signer = cert(
            CertKind::Signer,
            "CN=Test Signer,O=tka tests",
            &signer_key,
            Some((&int, &int_key)),
            NOW - 30 * DAY,
            NOW + 335 * DAY,
        );
        Pki { root_key, int_key, signer_key, root, int, signer }
    })
}

/// HMAC-SHA256 (RFC 2104), for tokens forged with a public key used as an HMAC secret.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 { Sha256::digest(key).to_vec() } else { key.to_vec() };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().to_vec()
}

pub fn raw(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A fake machine with five components.
pub fn machine() -> MachineIdentity {
    MachineIdentity::from_raw(
        PRODUCT,
        &raw(&[
            ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"),
            ("dmi", "4c4c4544-0042-3510-8052-b4c04f4e4e32"),
            ("bsn", "L1HF12345"),
            ("mac", "00:11:22:33:44:55"),
            ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
        ]),
    )
}

/// Another machine entirely.
pub fn other_machine() -> MachineIdentity {
    MachineIdentity::from_raw(
        PRODUCT,
        &raw(&[
            ("mid", "99999999999999999999999999999999"),
            ("dmi", "00000000-1111-2222-3333-444444444444"),
            ("bsn", "ZZZ999"),
            ("mac", "00:aa:bb:cc:dd:ee"),
            ("rfs", "11111111-2222-3333-4444-555555555555"),
        ]),
    )
}

/// The fixture machine ([`machine`]) identified for `product` (identities
/// are salted per product): the same raw values, hashed for `product`.
pub fn machine_for(product: &str) -> MachineIdentity {
    let m = machine();
    let raw: Vec<(String, String)> =
        m.sources().iter().flat_map(|s| s.values().iter().map(|v| (s.kind.clone(), v.clone()))).collect();
    MachineIdentity::from_raw(product, &raw)
}

#[cfg(feature = "issuer")]
/// A second, unrelated PKI (TEST-ONLY keys `other` and `signer2`): a root
/// someone made themselves and a token signer directly under it.
pub struct OtherPki {
    pub root: Vec<u8>,
    pub signer: Vec<u8>,
}

#[cfg(feature = "issuer")]
pub fn other_pki() -> &'static OtherPki {
    static OTHER: OnceLock<OtherPki> = OnceLock::new();
    OTHER.get_or_init(|| {
        let root_key = test_key("other");
        let root =
            cert(CertKind::Root, "CN=Self-made Root,O=someone", &root_key, None, NOW - 365 * DAY, NOW + 10 * 365 * DAY);
        let signer = cert(
            CertKind::Signer,
            "CN=Self-made Signer,O=someone",
            &test_key("signer2"),
            Some((&root, &root_key)),
            NOW - 30 * DAY,
            NOW + 335 * DAY,
        );
        OtherPki { root, signer }
    })
}

/// The SHA-256 fingerprint of a certificate (DER), as tka pins it.
pub fn fingerprint(der: &[u8]) -> tka::pki::RootFingerprint {
    tka::pki::RootFingerprint::parse(&tka::pki::sha256_hex(der)).unwrap()
}
