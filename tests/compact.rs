//! Compact tokens on a machine: the store's known certificates
//! (`Store::add_certificates`, `certs/`), activation with the issuer's
//! chain given once (`activation::activate_with_chain`, `tka activate
//! --chain`), later compact tokens without it, and `tka token verify
//! --chain`. The verification rules themselves are in tests/verify.rs.

mod common;
mod sandbox;
mod tools;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use tka::activation::{activate, activate_with_chain, check_activated, status, ProductStatus};
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::issuer::CertKind;
use tka::machine::MachineIdentity;
use tka::pki::sha256_hex;
use tka::request::ActivationRequest;
use tka::store::{Store, StoreError, MAX_KNOWN_CERTS};
use tka::{Error, VerifyError};

const ISSUING_CA: &str = "CN=Test Issuing CA,O=tka tests";

fn compact_token() -> String {
    let p = pki();
    let signer = TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap();
    let req = ActivationRequest::new(&machine(), NOW - 60, None);
    let opts = IssueOptions { compact: true, ..Default::default() };
    issue_token(&req, &opts, &signer, NOW - 60).unwrap().text
}

fn chain() -> Vec<Vec<u8>> {
    vec![pki().signer.clone(), pki().int.clone()]
}

/// A store that trusts the fixture root.
fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    store.lock().unwrap().add_root(&pki().root).unwrap();
    (tmp, store)
}

fn ident(_: &str) -> tka::Result<MachineIdentity> {
    Ok(machine())
}

/// Every file under the store with its content.
fn files(store: &Store) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![store.dir().to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.display().to_string(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------
// The store's known certificates.

#[test]
fn known_certificates_are_stored_once_each_as_public_pem_files() {
    let (_t, store) = store();
    let p = pki();
    assert_eq!(store.add_certificates(&[p.signer.clone(), p.int.clone(), p.signer.clone()]).unwrap(), 2);
    assert_eq!(store.add_certificates(&chain()).unwrap(), 0, "already known");
    let mut want = chain();
    want.sort_by_key(|d| sha256_hex(d));
    assert_eq!(store.certificates().unwrap(), want);
    for der in chain() {
        let path = store.dir().join("certs").join(format!("{}.pem", sha256_hex(&der)));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        assert!(fs::read_to_string(&path).unwrap().starts_with("-----BEGIN CERTIFICATE-----\n"));
    }
}

#[test]
fn adding_something_that_is_not_a_certificate_is_refused_and_writes_nothing() {
    let (_t, store) = store();
    let before = files(&store);
    let e = store.add_certificates(&[pki().signer.clone(), b"garbage".to_vec()]).unwrap_err();
    assert!(matches!(e, StoreError::BadCertificate(_)), "{e:?}");
    assert_eq!(files(&store), before);
}

#[test]
fn a_garbage_file_among_the_known_certificates_is_corrupt() {
    let (_t, store) = store();
    store.add_certificates(&chain()).unwrap();
    let path = store.dir().join("certs").join(format!("{}.pem", sha256_hex(&pki().int)));
    fs::write(&path, "not PEM\n").unwrap();
    match store.certificates() {
        Err(StoreError::Corrupt { path: p, detail }) => {
            assert_eq!(p, path);
            assert_eq!(detail, "expected exactly one PEM CERTIFICATE block");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Another certificate under this name: its fingerprint gives it away.
    fs::write(&path, pem(&pki().signer)).unwrap();
    assert!(matches!(store.certificates(), Err(StoreError::Corrupt { detail, .. }) if detail.contains("fingerprint")));
}

#[test]
fn more_known_certificates_than_the_store_keeps_is_refused() {
    let (_t, store) = store();
    let p = pki();
    let many: Vec<Vec<u8>> = (0..=MAX_KNOWN_CERTS)
        .map(|i| {
            let subject = format!("CN=Signer {i},O=tka tests");
            cert(CertKind::Signer, &subject, &p.signer_key, Some((&p.int, &p.int_key)), NOW - DAY, NOW + DAY)
        })
        .collect();
    let e = store.add_certificates(&many).unwrap_err();
    assert!(
        matches!(e, StoreError::TooManyCertificates { count, limit } if count == MAX_KNOWN_CERTS + 1 && limit == MAX_KNOWN_CERTS),
        "{e:?}"
    );
    assert!(store.certificates().unwrap().is_empty());
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

// ---------------------------------------------------------------------------
// Activation.

#[test]
fn compact_token_activates_with_the_chain_then_the_next_without_it() {
    let (_t, store) = store();
    let v = activate_with_chain(&store, &compact_token(), &chain(), &ident, &[], NOW, DAY).unwrap();
    assert_eq!(v.path, ["CN=Test Signer,O=tka tests", ISSUING_CA, "CN=Test Root,O=tka tests"]);
    assert!(status(&store, PRODUCT, &machine(), &[], NOW + 1).unwrap().is_active());
    check_activated(&store, PRODUCT, &machine(), &[], NOW + 2).unwrap();
    // A second compact token from the same signer: the store knows the chain.
    let second = compact_token();
    let again = activate(&store, &second, &ident, &[], NOW + 3).unwrap();
    assert_ne!(again.claims.jti, v.claims.jti);
    match status(&store, PRODUCT, &machine(), &[], NOW + 4).unwrap() {
        ProductStatus::Active(v) => assert_eq!(v.claims.jti, again.claims.jti),
        other => panic!("{other:?}"),
    }
}

#[test]
fn compact_token_without_a_chain_on_a_store_that_knows_none_is_unknown_signer() {
    let (_t, store) = store();
    let before = files(&store);
    let e = activate(&store, &compact_token(), &ident, &[], NOW).unwrap_err();
    assert_eq!(e.to_string(), Error::Verify(VerifyError::UnknownSigner { kid: sha256_hex(&pki().signer) }).to_string());
    assert_eq!(files(&store), before);
}

/// A refused activation keeps nothing of the chain it was given.
#[test]
fn refused_activation_with_a_chain_leaves_every_file_as_it_was() {
    let (_t, store) = store();
    let before = files(&store);
    let e = activate_with_chain(&store, &compact_token(), &[pki().signer.clone()], &ident, &[], NOW, DAY).unwrap_err();
    assert!(matches!(e, Error::Verify(VerifyError::UntrustedRoot { ref issuer }) if issuer == ISSUING_CA), "{e:?}");
    assert_eq!(files(&store), before);
    assert!(store.certificates().unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// The command line.

mod cli {
    use super::sandbox::*;
    use std::fs;

    /// A request for PRODUCT from this machine and a compact token for it in `out`.
    fn compact(s: &Sandbox, out: &str) -> String {
        if !s.path("req.json").exists() {
            s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
        }
        s.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--compact", "--out", out]);
        s.read(out)
    }

    #[test]
    fn issue_compact_then_activate_with_chain_then_the_next_without() {
        let s = Sandbox::new();
        s.issuer_and_trust();
        let text = compact(&s, "c1.jws");
        s.token(PRODUCT, "full.jws");
        let (compact_len, full_len) = (text.trim().len(), s.read("full.jws").trim().len());
        eprintln!("compact token: {compact_len} bytes; full token: {full_len} bytes");
        assert!(compact_len < full_len, "{compact_len} vs {full_len}");

        // Without the chain the machine cannot find the signer: a "no".
        let before = s.snapshot("store");
        let r = s.tka(&["activate", "c1.jws"]);
        assert_eq!(r.0, 1, "{r:?}");
        assert!(
            r.2.starts_with("error: the token carries no certificate chain and its signer certificate (kid "),
            "{}",
            r.2
        );
        assert!(r.2.ends_with("\nhint: this is a compact token: give the issuer's certificate chain once with --chain CHAIN.pem (the issuer home's chain.pem)\n"), "{}", r.2);
        assert_eq!(s.snapshot("store"), before, "a refusal writes nothing");

        let out = s.ok(&["activate", "c1.jws", "--chain", "home/chain.pem"]);
        assert!(out.starts_with(&format!("activated: {PRODUCT}\n")), "{out}");
        let st = s.ok(&["status", "--product", PRODUCT]);
        assert!(st.contains("activated"), "{st}");
        assert!(fs::read_dir(s.store().join("certs")).unwrap().count() >= 2);

        compact(&s, "c2.jws");
        s.ok(&["activate", "c2.jws"]);
    }

    #[test]
    fn token_verify_takes_the_chain_of_a_compact_token() {
        let s = Sandbox::new();
        s.issuer_and_trust();
        compact(&s, "c.jws");
        let out = s.ok(&["token", "verify", "c.jws", "--trust", "home/root.pem", "--chain", "home/chain.pem"]);
        assert!(out.starts_with("valid signature and chain; machine binding not checked\n"), "{out}");
        let r = s.tka(&["token", "verify", "c.jws", "--trust", "home/root.pem", "--json"]);
        assert_eq!(r.0, 1, "{r:?}");
        let j: serde_json::Value = serde_json::from_str(&r.1).unwrap();
        assert_eq!(j["kind"], "UnknownSigner");
    }

    #[test]
    fn issue_bulk_compact_tokens_activate_with_the_chain() {
        let s = Sandbox::new();
        s.issuer_and_trust();
        s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "5", "--name", "acme"]);
        fs::create_dir(s.path("reqs")).unwrap();
        s.ok(&["request", "create", "--product", PRODUCT, "--out", "reqs/a.json"]);
        s.ok(&[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "acme",
            "--requests",
            "reqs",
            "--out",
            "out",
            "--compact",
            "--quiet",
        ]);
        let token = fs::read_dir(s.path("out")).unwrap().next().unwrap().unwrap().path();
        let text = fs::read_to_string(&token).unwrap();
        assert!(!text.contains("x5c") && !decode_header(&text).contains("x5c"), "compact: no x5c");
        let r = s.tka(&["activate", token.to_str().unwrap()]);
        assert_eq!(r.0, 1, "{r:?}");
        s.ok(&["activate", token.to_str().unwrap(), "--chain", "home/chain.pem"]);
    }

    fn decode_header(token: &str) -> String {
        use base64::Engine;
        let h = token.trim().split('.').next().unwrap();
        String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    }

    #[test]
    fn activate_with_a_chain_file_that_is_not_pem_is_a_usage_error_and_writes_nothing() {
        let s = Sandbox::new();
        s.issuer_and_trust();
        compact(&s, "c.jws");
        s.write("bad.pem", "not a certificate\n");
        let before = s.snapshot("store");
        let r = s.tka(&["activate", "c.jws", "--chain", "bad.pem"]);
        assert_eq!(r.0, 2, "{r:?}");
        assert_eq!(r.2.lines().count(), 1, "one line: {}", r.2);
        assert_eq!(s.snapshot("store"), before);
    }
}
