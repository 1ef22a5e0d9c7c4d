//! Runs the adversarial corpus in `tests/vectors/` (age-testkit style)
//! through `tka::verify::verify_token` and checks each vector's exact
//! expected verdict.
//!
//! A vector is a few `name: value` header lines, a blank line, then the
//! token text exactly (the file's final newline is not part of it):
//!
//! ```text
//! expect: BadSignature          `ok` or the exact VerifyError variant
//! what: token header            optional: the `what` of a Malformed error
//! reason: ...                   for a refusal: the error's exact text (the rule it breaks)
//! comment: ...                  what the vector breaks
//! now: 1800000000               the instant of verification (Unix seconds)
//! product: example-pro          the expected product, `*` for any
//! machine: fixture              fixture | fixture-changed=K,K | fixture-without=K,K | other | cmid:<CMID> | skip
//! roots: root                   trusted roots, files in tests/vectors/pki/ (comma-separated, may be empty)
//! crls: int-revokes-signer      optional: CRLs in tests/vectors/pki/<name>.crl.pem
//! clock: <high-water> <tol>     optional: the store's clock high-water mark and tolerance
//! revoked: <serial>,...         optional: revoked token serials
//! ```
//!
//! The corpus is produced by `tests/gen_vectors.rs` (`scripts/gen-vectors.sh`),
//! whose own test fails when the committed files are stale.

mod common;

use common::raw;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tka::machine::MachineIdentity;
use tka::pki::{pem, Crl, TrustAnchors};
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::VerifyError;

fn dir() -> PathBuf {
    common::repo().join("tests/vectors")
}

/// The fixture machine's raw identifiers (the same values as `common::machine`).
const FIXTURE: [(&str, &str); 5] = [
    ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"),
    ("dmi", "4c4c4544-0042-3510-8052-b4c04f4e4e32"),
    ("bsn", "L1HF12345"),
    ("mac", "00:11:22:33:44:55"),
    ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
];

struct Vector {
    name: String,
    headers: BTreeMap<String, String>,
    token: String,
}

fn parse_vector(path: &Path) -> Vector {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (head, body) = text.split_once("\n\n").unwrap_or_else(|| panic!("{}: no blank line", path.display()));
    let mut headers = BTreeMap::new();
    for line in head.lines() {
        let (k, v) = line.split_once(": ").or_else(|| line.split_once(':')).expect("header line");
        assert!(headers.insert(k.to_string(), v.trim().to_string()).is_none(), "{}: {k} twice", path.display());
    }
    let token = body.strip_suffix('\n').unwrap_or(body).to_string();
    Vector { name: path.file_stem().unwrap().to_string_lossy().into_owned(), headers, token }
}

fn machine_for(spec: &str) -> Option<MachineIdentity> {
    let product = common::PRODUCT;
    if spec == "fixture" {
        return Some(MachineIdentity::from_raw(product, &raw(&FIXTURE)));
    }
    if spec == "other" {
        return Some(common::other_machine());
    }
    if let Some(kinds) = spec.strip_prefix("fixture-changed=") {
        let kinds: Vec<&str> = kinds.split(',').collect();
        let pairs: Vec<(String, String)> = FIXTURE
            .iter()
            .map(|(k, v)| (k.to_string(), if kinds.contains(k) { format!("{v}-replaced") } else { v.to_string() }))
            .collect();
        return Some(MachineIdentity::from_raw(product, &pairs));
    }
    if let Some(kinds) = spec.strip_prefix("fixture-without=") {
        let kinds: Vec<&str> = kinds.split(',').collect();
        let pairs: Vec<(&str, &str)> = FIXTURE.iter().copied().filter(|(k, _)| !kinds.contains(k)).collect();
        return Some(MachineIdentity::from_raw(product, &raw(&pairs)));
    }
    None
}

fn cert_file(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(dir().join("pki").join(format!("{name}.pem"))).unwrap();
    pem::decode_all(&text, "CERTIFICATE").unwrap().remove(0)
}

fn crl_file(name: &str) -> Crl {
    let text = std::fs::read_to_string(dir().join("pki").join(format!("{name}.crl.pem"))).unwrap();
    Crl::parse(&pem::decode_all(&text, "X509 CRL").unwrap()[0]).unwrap()
}

/// The variant name of a VerifyError (`TooLarge { .. }` -> `TooLarge`).
fn variant(e: &VerifyError) -> String {
    format!("{e:?}").split([' ', '{', '(']).next().unwrap().to_string()
}

/// Runs one vector; `Err` describes a mismatch.
fn run(v: &Vector) -> Result<(), String> {
    let h = |k: &str| v.headers.get(k).map(String::as_str);
    let expect = h("expect").ok_or("no expect header")?;
    let now: i64 = h("now").ok_or("no now header")?.parse().map_err(|_| "bad now")?;
    let product = match h("product") {
        None | Some("*") => None,
        Some(p) => Some(p),
    };
    let roots: Vec<Vec<u8>> = h("roots").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(cert_file).collect();
    let anchors = TrustAnchors::from_der(&roots).map_err(|e| format!("roots: {e}"))?;
    let crls: Vec<Crl> = h("crls").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(crl_file).collect();
    let revoked: HashSet<String> =
        h("revoked").unwrap_or("").split(',').filter(|s| !s.is_empty()).map(String::from).collect();
    let clock = h("clock").map(|c| {
        let (a, b) = c.split_once(' ').expect("clock: <high-water> <tolerance>");
        (a.parse().unwrap(), b.parse().unwrap())
    });
    let spec = h("machine").unwrap_or("fixture");
    let identity = machine_for(spec);
    let machine = match (spec, &identity) {
        (_, Some(id)) => MachineCheck::Identity(id),
        ("skip", None) => MachineCheck::Skip,
        (s, None) => MachineCheck::Cmid(s.strip_prefix("cmid:").ok_or_else(|| format!("bad machine {s}"))?),
    };
    let ctx = VerifyContext {
        anchors: &anchors,
        pinned_roots: &[],
        now,
        product,
        machine,
        crls: &crls,
        revoked_serials: &revoked,
        clock,
        certificates: &[],
    };
    match (verify_token(&v.token, &ctx), expect) {
        (Ok(_), "ok") => Ok(()),
        (Ok(t), want) => Err(format!("expected {want}, but it verified (signer {})", t.signer.subject)),
        (Err(e), "ok") => Err(format!("expected ok, got {e:?}")),
        (Err(e), want) => {
            if variant(&e) != want {
                return Err(format!("expected {want}, got {e:?}"));
            }
            if let (Some(w), VerifyError::Malformed { what, .. }) = (h("what"), &e) {
                if *what != w {
                    return Err(format!("expected Malformed in {w:?}, got {e:?}"));
                }
            }
            // The kind alone covers many rules (`BadClaims`, `Malformed`):
            // the exact text says which one broke.
            let reason = h("reason").ok_or("a refusal vector without its reason header")?;
            if e.to_string() != reason {
                return Err(format!("expected {want} because {reason:?}, refused because {:?}", e.to_string()));
            }
            Ok(())
        }
    }
}

fn vectors() -> Vec<Vector> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse_vector(p)).collect()
}

#[test]
fn every_vector_gives_its_expected_verdict() {
    let vs = vectors();
    assert!(vs.len() >= 100, "only {} vectors found", vs.len());
    let failures: Vec<String> = vs.iter().filter_map(|v| run(v).err().map(|e| format!("{}: {e}", v.name))).collect();
    assert!(failures.is_empty(), "{} of {} vectors failed:\n{}", failures.len(), vs.len(), failures.join("\n"));
}

#[test]
fn every_vector_names_one_expectation_and_a_comment() {
    for v in vectors() {
        assert!(v.headers.contains_key("expect"), "{}: no expect", v.name);
        assert!(v.headers.get("comment").is_some_and(|c| !c.is_empty()), "{}: no comment", v.name);
    }
}

#[test]
fn corpus_covers_every_verdict_of_steps_one_to_six() {
    // Every VerifyError a token can produce appears at least once.
    let seen: HashSet<String> = vectors().iter().map(|v| v.headers["expect"].clone()).collect();
    for want in [
        "ok",
        "TooLarge",
        "Malformed",
        "DuplicateKey",
        "AlgorithmNotAllowed",
        "WrongType",
        "ForbiddenHeader",
        "UnknownCritical",
        "MissingChain",
        "UnknownSigner",
        "BadCertificate",
        "UntrustedRoot",
        "CertExpired",
        "CertNotYetValid",
        "BadCertSignature",
        "NotCa",
        "MissingKeyCertSign",
        "PathLenExceeded",
        "SignerIsCa",
        "MissingSignerEku",
        "MissingDigitalSignature",
        "UnknownCriticalExtension",
        "WeakKey",
        "CertRevoked",
        "BadSignature",
        "WrongProduct",
        "ImpossibleBinding",
        "WrongMachine",
        "TokenNotYetValid",
        "TokenExpired",
        "TokenOutlivesSigner",
        "TokenRevoked",
        "BadClaims",
        "IssuedInFuture",
        "ClockRollback",
    ] {
        assert!(seen.contains(want), "no vector expects {want}");
    }
}
