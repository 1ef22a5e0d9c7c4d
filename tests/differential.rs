//! Differential chain testing against OpenSSL (issue 6 item 3).
//!
//! Chains with one deliberate defect each (and good ones) are built here;
//! tka's verdict (`validate_path`) must equal
//! `openssl verify -attime T -auth_level 2 -no-CApath -no-CAstore -CAfile root -untrusted int leaf`
//! (accept or reject; the reasons are named in each case but only the
//! verdict is compared, OpenSSL's codes being its own).
//!
//! What is compared, like with like:
//! - Every leaf satisfies tka's token-signer profile (CA:FALSE,
//!   digitalSignature, the tka EKU, non-critical), which OpenSSL accepts
//!   without a `-purpose`, so `LeafRole::TokenSigner` is compared for
//!   defects anywhere in the chain. Cases about a CA certificate at the end
//!   of the path use `LeafRole::Ca` (tka's check of an intermediate on its
//!   own). tka-only leaf rules (the tka EKU, digitalSignature, "a CA never
//!   signs tokens") have no OpenSSL counterpart and are covered by
//!   tests/verify.rs and the corpus instead.
//! - `-auth_level 2` makes OpenSSL refuse keys under 112-bit security (RSA
//!   under 2048 bits), tka's `MIN_RSA_BITS`.
//! - tka reads `x5c` in order and does not search; OpenSSL builds paths.
//!   Every chain here has exactly one candidate path, so the two agree on
//!   what the path is.
//!
//! Without `openssl` on PATH the test prints a visible skip (tests/tools)
//! and passes, unless `TKA_REQUIRE_TOOLS=1`, in which case it fails.

mod common;
mod tools;

use common::rawcert::{bc, ca_exts as ca, ku, sign_cert, signer_exts as leaf, unknown_critical, RawProfile};
use common::{DAY, NOW};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use tka::pki::{pem, validate_path, LeafRole, TrustAnchors};
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;

fn openssl_available() -> bool {
    Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------
// Certificate building (no profile checks): tests/common/rawcert.rs.

/// A certificate for test key `key`, issued under `issuer_name` and signed by test key `signing_key`.
fn cert(
    subject: &str,
    key: &str,
    issuer_name: &str,
    signing_key: &str,
    nb: i64,
    na: i64,
    exts: Vec<Extension>,
) -> Vec<u8> {
    let n = Sha256::digest(format!("{subject}{key}{nb}{na}").as_bytes());
    let mut serial = n[..16].to_vec();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let profile =
        RawProfile { subject: Name::from_str(subject).unwrap(), issuer: Name::from_str(issuer_name).unwrap(), exts };
    sign_cert(profile, SerialNumber::new(&serial).unwrap(), nb, na, key, signing_key)
}

const ROOT: &str = "CN=Diff Root,O=tka differential";
const INT: &str = "CN=Diff Issuing CA,O=tka differential";
const INT2: &str = "CN=Diff Second CA,O=tka differential";
const LEAF: &str = "CN=Diff Signer,O=tka differential";

fn root() -> Vec<u8> {
    cert(ROOT, "root", ROOT, "root", NOW - 365 * DAY, NOW + 3650 * DAY, ca(None))
}
fn int_with(exts: Vec<Extension>) -> Vec<u8> {
    cert(INT, "intermediate", ROOT, "root", NOW - 300 * DAY, NOW + 1800 * DAY, exts)
}
fn good_int() -> Vec<u8> {
    int_with(ca(Some(0)))
}
fn leaf_with(exts: Vec<Extension>) -> Vec<u8> {
    cert(LEAF, "signer", INT, "intermediate", NOW - 30 * DAY, NOW + 335 * DAY, exts)
}

/// One case: the chain (end entity first, then untrusted intermediates), the root, the role, the time.
struct Case {
    name: &'static str,
    why: &'static str,
    chain: Vec<Vec<u8>>,
    root: Vec<u8>,
    role: LeafRole,
    at: i64,
    /// A documented, expected disagreement (asserted to still be one).
    known_difference: Option<&'static str>,
}

fn case(name: &'static str, why: &'static str, chain: Vec<Vec<u8>>) -> Case {
    Case { name, why, chain, root: root(), role: LeafRole::TokenSigner, at: NOW, known_difference: None }
}

fn cases() -> Vec<Case> {
    let leaf_nb = NOW - 30 * DAY;
    let leaf_na = NOW + 335 * DAY;
    let mut v = vec![
        case("good", "signer -> issuing CA -> root", vec![leaf_with(leaf()), good_int()]),
        case(
            "leaf-expired",
            "signer notAfter yesterday",
            vec![cert(LEAF, "signer", INT, "intermediate", NOW - 300 * DAY, NOW - DAY, leaf()), good_int()],
        ),
        case(
            "leaf-not-yet-valid",
            "signer notBefore tomorrow",
            vec![cert(LEAF, "signer", INT, "intermediate", NOW + DAY, NOW + 300 * DAY, leaf()), good_int()],
        ),
        case(
            "int-expired",
            "issuing CA notAfter yesterday",
            vec![leaf_with(leaf()), cert(INT, "intermediate", ROOT, "root", NOW - 900 * DAY, NOW - DAY, ca(Some(0)))],
        ),
        case(
            "int-not-yet-valid",
            "issuing CA notBefore tomorrow",
            vec![leaf_with(leaf()), cert(INT, "intermediate", ROOT, "root", NOW + DAY, NOW + 900 * DAY, ca(Some(0)))],
        ),
        case(
            "int-ca-false",
            "issuing certificate is CA:FALSE",
            vec![leaf_with(leaf()), int_with(vec![bc(false, None), ku(KeyUsages::KeyCertSign | KeyUsages::CRLSign)])],
        ),
        case(
            "int-no-basic-constraints",
            "issuing certificate has no basicConstraints",
            vec![leaf_with(leaf()), int_with(vec![ku(KeyUsages::KeyCertSign | KeyUsages::CRLSign)])],
        ),
        case(
            "int-no-key-cert-sign",
            "issuing CA keyUsage without keyCertSign",
            vec![
                leaf_with(leaf()),
                int_with(vec![bc(true, Some(0)), ku(KeyUsages::CRLSign | KeyUsages::DigitalSignature)]),
            ],
        ),
        case(
            "int-unknown-critical",
            "issuing CA has an unknown critical extension",
            vec![
                leaf_with(leaf()),
                int_with({
                    let mut e = ca(Some(0));
                    e.push(unknown_critical());
                    e
                }),
            ],
        ),
        case(
            "leaf-unknown-critical",
            "signer has an unknown critical extension",
            vec![
                leaf_with({
                    let mut e = leaf();
                    e.push(unknown_critical());
                    e
                }),
                good_int(),
            ],
        ),
        case(
            "leaf-wrong-signature",
            "signer names the issuing CA but another key signed it",
            vec![cert(LEAF, "signer", INT, "other", leaf_nb, leaf_na, leaf()), good_int()],
        ),
        case(
            "int-wrong-signature",
            "issuing CA names the root but another key signed it",
            vec![
                leaf_with(leaf()),
                cert(INT, "intermediate", ROOT, "other", NOW - 300 * DAY, NOW + 1800 * DAY, ca(Some(0))),
            ],
        ),
        case(
            "issuer-subject-mismatch",
            "the signer's issuer name is not the CA's subject",
            vec![
                cert(LEAF, "signer", "CN=Someone Else,O=tka differential", "intermediate", leaf_nb, leaf_na, leaf()),
                good_int(),
            ],
        ),
        case(
            "leaf-rsa-1024",
            "signer key is RSA-1024",
            vec![cert(LEAF, "weak1024", INT, "intermediate", leaf_nb, leaf_na, leaf()), good_int()],
        ),
        case("no-intermediate", "the issuing CA is missing", vec![leaf_with(leaf())]),
        case(
            "path-len-one-ok",
            "root -> CA (pathLen 1) -> CA -> signer",
            vec![
                cert(LEAF, "signer", INT2, "other", leaf_nb, leaf_na, leaf()),
                cert(INT2, "other", INT, "intermediate", NOW - 300 * DAY, NOW + 1800 * DAY, ca(None)),
                int_with(ca(Some(1))),
            ],
        ),
        case(
            "path-len-exceeded",
            "root -> CA (pathLen 0) -> CA -> signer",
            vec![
                cert(LEAF, "signer", INT2, "other", leaf_nb, leaf_na, leaf()),
                cert(INT2, "other", INT, "intermediate", NOW - 300 * DAY, NOW + 1800 * DAY, ca(None)),
                good_int(),
            ],
        ),
        case(
            "path-len-exceeded-lower",
            "root -> CA -> CA (pathLen 0) -> CA -> signer",
            vec![
                cert(LEAF, "signer2", "CN=Diff Third CA,O=tka differential", "signer", leaf_nb, leaf_na, leaf()),
                cert(
                    "CN=Diff Third CA,O=tka differential",
                    "signer",
                    INT2,
                    "other",
                    NOW - 300 * DAY,
                    NOW + 1800 * DAY,
                    ca(None),
                ),
                cert(INT2, "other", INT, "intermediate", NOW - 300 * DAY, NOW + 1800 * DAY, ca(Some(0))),
                int_with(ca(None)),
            ],
        ),
        case(
            "leaf-duplicate-extension",
            "signer carries keyUsage twice",
            vec![
                leaf_with({
                    let mut e = leaf();
                    e.push(ku(KeyUsages::DigitalSignature));
                    e
                }),
                good_int(),
            ],
        ),
    ];
    // Time edges (RFC 5280: notBefore and notAfter are inclusive).
    let edge = cert(LEAF, "signer", INT, "intermediate", NOW - 10 * DAY, NOW + 10 * DAY, leaf());
    for (name, why, at) in [
        ("at-leaf-not-before", "verified at the signer's notBefore second", NOW - 10 * DAY),
        ("before-leaf-not-before", "one second before the signer's notBefore", NOW - 10 * DAY - 1),
        ("at-leaf-not-after", "verified at the signer's notAfter second", NOW + 10 * DAY),
        ("after-leaf-not-after", "one second after the signer's notAfter", NOW + 10 * DAY + 1),
    ] {
        v.push(Case { at, ..case(name, why, vec![edge.clone(), good_int()]) });
    }
    // RFC 5280 §4.1.2.5: "the period of time from notBefore through notAfter,
    // inclusive". tka follows it (tests/verify.rs::signer_valid_through_its_not_after_second);
    // OpenSSL 3's X509_cmp_time treats the notAfter second itself as expired.
    v.iter_mut().find(|c| c.name == "at-leaf-not-after").unwrap().known_difference =
        Some("OpenSSL treats notAfter as exclusive; tka follows RFC 5280 (inclusive)");
    // Root defects.
    v.push(Case {
        root: cert(ROOT, "root", ROOT, "root", NOW - 3650 * DAY, NOW - DAY, ca(None)),
        ..case("root-expired", "the trusted root itself has expired", vec![leaf_with(leaf()), good_int()])
    });
    v.push(Case {
        root: cert(ROOT, "other", ROOT, "other", NOW - 365 * DAY, NOW + 3650 * DAY, ca(None)),
        ..case(
            "other-root-same-name",
            "the trusted root has the right name but another key",
            vec![leaf_with(leaf()), good_int()],
        )
    });
    // A CA at the end of the path (LeafRole::Ca).
    v.push(Case { role: LeafRole::Ca, ..case("ca-role-good", "an issuing CA checked on its own", vec![good_int()]) });
    v.push(Case {
        role: LeafRole::Ca,
        ..case(
            "ca-role-expired",
            "an expired issuing CA checked on its own",
            vec![cert(INT, "intermediate", ROOT, "root", NOW - 900 * DAY, NOW - DAY, ca(Some(0)))],
        )
    });
    v.push(Case {
        role: LeafRole::Ca,
        ..case(
            "ca-role-unknown-critical",
            "an issuing CA with an unknown critical extension",
            vec![int_with({
                let mut e = ca(Some(0));
                e.push(unknown_critical());
                e
            })],
        )
    });
    v
}

fn write_pem(path: &Path, ders: &[Vec<u8>]) {
    let text: String = ders.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
    std::fs::write(path, text).unwrap();
}

fn openssl_verdict(dir: &Path, c: &Case) -> (bool, String) {
    write_pem(&dir.join("root.pem"), std::slice::from_ref(&c.root));
    write_pem(&dir.join("leaf.pem"), &c.chain[..1]);
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-attime", &c.at.to_string(), "-auth_level", "2", "-no-CApath", "-no-CAstore"])
        .arg("-CAfile")
        .arg(dir.join("root.pem"));
    if c.chain.len() > 1 {
        write_pem(&dir.join("untrusted.pem"), &c.chain[1..]);
        cmd.arg("-untrusted").arg(dir.join("untrusted.pem"));
    }
    let out = cmd.arg(dir.join("leaf.pem")).env("OPENSSL_CONF", "/dev/null").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.replace(&dir.display().to_string(), "").trim().replace('\n', " | "))
}

#[test]
fn tka_and_openssl_agree_on_every_chain() {
    if !openssl_available() {
        tools::missing("openssl", "TKA_REQUIRE_INTEROP");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut disagreements = Vec::new();
    let cases = cases();
    for c in &cases {
        let anchors = TrustAnchors::from_der(std::slice::from_ref(&c.root)).unwrap();
        let tka = validate_path(&c.chain, &anchors, c.at, &[], c.role);
        let (ossl, ossl_text) = openssl_verdict(tmp.path(), c);
        eprintln!(
            "{:<28} tka: {:<40} openssl: {}",
            c.name,
            match &tka {
                Ok(_) => "accept".to_string(),
                Err(e) => format!("{e:?}").chars().take(40).collect(),
            },
            if ossl { "accept".to_string() } else { ossl_text.chars().take(70).collect() }
        );
        if let Some(note) = c.known_difference {
            eprintln!("{:<28} known difference: {note}", "");
            assert!(tka.is_ok() && !ossl, "{}: the known difference ({note}) is gone; update the case", c.name);
        } else if tka.is_ok() != ossl {
            disagreements.push(format!("{} ({}): tka {:?}, openssl {}", c.name, c.why, tka.err(), ossl_text));
        }
    }
    assert!(disagreements.is_empty(), "tka and openssl disagree:\n{}", disagreements.join("\n"));
    // Both good and bad chains were exercised.
    assert!(cases.iter().filter(|c| c.name.contains("good") || c.name.ends_with("-ok")).count() >= 2);
    assert!(cases.len() >= 20);
}

#[test]
fn the_cases_that_should_be_accepted_are() {
    // Independent of OpenSSL: tka accepts exactly the cases designed to be good.
    let good = ["good", "path-len-one-ok", "at-leaf-not-before", "at-leaf-not-after", "ca-role-good"];
    for c in cases() {
        let anchors = TrustAnchors::from_der(std::slice::from_ref(&c.root)).unwrap();
        let r = validate_path(&c.chain, &anchors, c.at, &[], c.role);
        assert_eq!(r.is_ok(), good.contains(&c.name), "{}: {:?}", c.name, r.err());
    }
}
