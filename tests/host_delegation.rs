//! Delegated host certificates (issue 13, part 1): the tka delegation
//! extension limits the products and token lifetime of everything below
//! the certificate carrying it. Library tests build certificates and
//! tokens directly (as a thief of the host key would, past any signing-side
//! check) and verify them; CLI tests run `tka host init/certify/install`
//! and `tka token issue/verify` end to end.

mod common;
mod sandbox;
mod tools;

use common::rawcert::{delegation_ext, with_raw_extension};
use common::{machine_for, pki, test_key, DAY, NOW};
use sandbox::{assert_fails, have_openssl, named, Sandbox, PRODUCT};
use std::fs;
use tka::issuer::issue::{build_claims, issue_token, IssueOptions, TokenLifetime, TokenSigner};
use tka::issuer::{create_certificate, reissue_certificate, CertKind, CertRequest};
use tka::jws::TOKEN_TYP;
use tka::keys::{SignatureAlgorithm, Signer, SoftwareKey};
use tka::pki::{CertInfo, Delegation, TrustAnchors};
use tka::request::ActivationRequest;
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::{Error, VerifyError};

// ---------------------------------------------------------------------------
// Library: what every machine enforces.

const HOST: &str = "CN=Host,O=tka tests";

fn only_a() -> Delegation {
    Delegation { products: vec!["a".into()], max_lifetime_secs: 180 * DAY as u64, seats: Some(25) }
}

/// A token signer for test key `signer2` under the fixture issuing CA, with `delegation`.
fn host_cert(delegation: Option<Delegation>) -> Vec<u8> {
    let p = pki();
    let req = CertRequest {
        kind: CertKind::Signer,
        subject: HOST,
        not_before: NOW - DAY,
        not_after: NOW + 365 * DAY,
        delegation,
    };
    let int = CertInfo::parse(&p.int).unwrap();
    create_certificate(&req, test_key("signer2").public_key(), Some(&int), &p.int_key).unwrap()
}

/// A token for `product` with `lifetime`, signed by test key `signer2`
/// under `chain` directly (claims built, never checked against a delegation).
fn forged(chain: &[Vec<u8>], product: &str, lifetime: TokenLifetime) -> String {
    let signer = CertInfo::parse(&chain[0]).unwrap();
    let req = ActivationRequest::new(&machine_for(product), NOW - 60, None);
    let opts = IssueOptions { lifetime, ..IssueOptions::default() };
    let claims = build_claims(&req, &opts, &signer, NOW - 30).unwrap();
    let payload = serde_json::to_value(&claims).unwrap();
    tka::jws::encode(&payload, TOKEN_TYP, &signer.fingerprint, chain, SignatureAlgorithm::Ps256, &test_key("signer2"))
        .unwrap()
}

fn verify(text: &str, product: &str) -> Result<(), VerifyError> {
    let anchors = TrustAnchors::from_der(std::slice::from_ref(&pki().root)).unwrap();
    let revoked = Default::default();
    let ctx = VerifyContext {
        anchors: &anchors,
        pinned_roots: &[],
        now: NOW,
        product: Some(product),
        machine: MachineCheck::Skip,
        crls: &[],
        revoked_serials: &revoked,
        certificates: &[],
        clock: None,
    };
    verify_token(text, &ctx).map(|_| ())
}

fn outside(subject: &str, what: &str) -> Result<(), VerifyError> {
    Err(VerifyError::OutsideDelegation { subject: subject.into(), what: what.into() })
}

#[test]
fn the_delegation_is_a_critical_extension_read_back_as_written() {
    let info = CertInfo::parse(&host_cert(Some(only_a()))).unwrap();
    assert_eq!(info.delegation, Some(only_a()));
    assert!(info.unknown_critical.is_empty(), "{:?}", info.unknown_critical);
}

#[test]
fn a_token_within_the_delegation_verifies() {
    let chain = vec![host_cert(Some(only_a())), pki().int.clone()];
    assert_eq!(verify(&forged(&chain, "a", TokenLifetime::Days(180)), "a"), Ok(()));
}

/// The attack: the host key signs a token for product b under a
/// certificate limited to a, bypassing any signing-side check.
#[test]
fn a_compromised_host_key_signing_another_product_is_refused() {
    let chain = vec![host_cert(Some(only_a())), pki().int.clone()];
    let text = forged(&chain, "b", TokenLifetime::Days(30));
    assert_eq!(verify(&text, "b"), outside(HOST, "product \"b\" is not delegated (a)"));
}

#[test]
fn a_token_longer_than_the_delegated_lifetime_is_refused() {
    let chain = vec![host_cert(Some(only_a())), pki().int.clone()];
    let text = forged(&chain, "a", TokenLifetime::Seconds(180 * DAY as u64 + 1));
    assert_eq!(verify(&text, "a"), outside(HOST, "lifetime of 15552001 s exceeds the delegated 180d (15552000 s)"));
}

#[test]
fn a_perpetual_token_is_outside_any_delegation() {
    let chain = vec![host_cert(Some(only_a())), pki().int.clone()];
    let text = forged(&chain, "a", TokenLifetime::Perpetual);
    assert_eq!(verify(&text, "a"), outside(HOST, "a perpetual token"));
}

/// A delegation on the issuing CA constrains every signer below it, also
/// one that carries none itself; the signing side refuses as well.
#[test]
fn a_delegation_on_the_issuing_ca_constrains_the_signers_below_it() {
    let p = pki();
    let root = CertInfo::parse(&p.root).unwrap();
    let ca_key = test_key("other");
    let ca_req = CertRequest {
        kind: CertKind::Intermediate,
        subject: "CN=Delegated CA,O=tka tests",
        not_before: NOW - DAY,
        not_after: NOW + 900 * DAY,
        delegation: Some(only_a()),
    };
    let ca = create_certificate(&ca_req, ca_key.public_key(), Some(&root), &p.root_key).unwrap();
    let signer_req = CertRequest {
        kind: CertKind::Signer,
        subject: HOST,
        not_before: NOW - DAY,
        not_after: NOW + 365 * DAY,
        delegation: None,
    };
    let signer = create_certificate(
        &signer_req,
        test_key("signer2").public_key(),
        Some(&CertInfo::parse(&ca).unwrap()),
        &ca_key,
    )
    .unwrap();
    let chain = vec![signer, ca];
    assert_eq!(
        verify(&forged(&chain, "b", TokenLifetime::Days(30)), "b"),
        outside("CN=Delegated CA,O=tka tests", "product \"b\" is not delegated (a)")
    );
    assert_eq!(verify(&forged(&chain, "a", TokenLifetime::Days(30)), "a"), Ok(()));
    let ts = TokenSigner::new(Box::new(test_key("signer2")), chain).unwrap();
    let req = ActivationRequest::new(&machine_for("b"), NOW - 60, None);
    match issue_token(&req, &IssueOptions::default(), &ts, NOW) {
        Err(Error::Verify(e)) => {
            assert_eq!(Err(e), outside("CN=Delegated CA,O=tka tests", "product \"b\" is not delegated (a)"))
        }
        other => panic!("expected OutsideDelegation, got {other:?}"),
    }
}

/// Decision: the extension is enforced whether or not it is marked
/// critical (tka always writes it critical; a constraint is never ignored).
#[test]
fn a_non_critical_delegation_is_still_enforced() {
    let plain = host_cert(None);
    let cert = with_raw_extension(&plain, &delegation_ext(&only_a().to_der(), false), "intermediate");
    assert_eq!(CertInfo::parse(&cert).unwrap().delegation, Some(only_a()));
    let chain = vec![cert, pki().int.clone()];
    assert_eq!(
        verify(&forged(&chain, "b", TokenLifetime::Days(30)), "b"),
        outside(HOST, "product \"b\" is not delegated (a)")
    );
}

#[test]
fn a_malformed_delegation_makes_the_certificate_malformed() {
    // maxLifetime 0.
    let value = [0x30, 0x08, 0x30, 0x03, 0x0c, 0x01, b'a', 0x02, 0x01, 0x00];
    let cert = with_raw_extension(&host_cert(None), &delegation_ext(&value, true), "intermediate");
    assert_eq!(
        CertInfo::parse(&cert),
        Err(VerifyError::BadCertificate {
            subject: HOST.into(),
            detail: "the tka delegation extension is malformed: the longest token lifetime is 0 seconds".into()
        })
    );
}

/// The signing side: a delegated signer refuses before it signs.
#[test]
fn a_delegated_signer_refuses_a_token_outside_its_delegation() {
    let ts =
        TokenSigner::new(Box::new(test_key("signer2")), vec![host_cert(Some(only_a())), pki().int.clone()]).unwrap();
    assert_eq!(ts.delegation(), Some(&only_a()));
    let req = ActivationRequest::new(&machine_for("b"), NOW - 60, None);
    match issue_token(&req, &IssueOptions::default(), &ts, NOW) {
        Err(Error::Verify(e)) => assert_eq!(Err(e), outside(HOST, "product \"b\" is not delegated (a)")),
        other => panic!("expected OutsideDelegation, got {other:?}"),
    }
    let req = ActivationRequest::new(&machine_for("a"), NOW - 60, None);
    let opts = IssueOptions { lifetime: TokenLifetime::Perpetual, ..IssueOptions::default() };
    assert!(matches!(
        issue_token(&req, &opts, &ts, NOW),
        Err(Error::Verify(VerifyError::OutsideDelegation { what, .. })) if what == "a perpetual token"
    ));
    let issued = issue_token(&req, &IssueOptions::default(), &ts, NOW).unwrap();
    assert_eq!(verify(&issued.text, "a"), Ok(()));
}

/// Renewing a host certificate keeps its delegation: a renewal never widens it.
#[test]
fn reissuing_a_delegated_certificate_keeps_the_delegation() {
    let p = pki();
    let old = CertInfo::parse(&host_cert(Some(only_a()))).unwrap();
    let int = CertInfo::parse(&p.int).unwrap();
    let der = reissue_certificate(&old, None, &int, &p.int_key, NOW, NOW + 100 * DAY).unwrap();
    assert_eq!(CertInfo::parse(&der).unwrap().delegation, Some(only_a()));
}

// ---------------------------------------------------------------------------
// CLI: host init / certify / install, token issue and verify.

const OID_CRITICAL: &str = "2.25.236812418305419463823512950212404736315: critical";

/// An issuer home at `home/` and an initialised host at `host/`; returns the request path.
fn home_and_host(s: &Sandbox) -> String {
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    let out = s.ok(&["host", "init", "--dir", "host"]);
    named(&out)["request"].clone()
}

fn certify(s: &Sandbox, request: &str, products: &str) {
    s.ok(&[
        "host",
        "certify",
        "--home",
        "home",
        "--request",
        request,
        "--products",
        products,
        "--max-lifetime",
        "180d",
        "--days",
        "365",
        "--seats",
        "25",
        "--out",
        "host.pem",
    ]);
}

#[test]
fn host_init_certify_install_round_trip() {
    let s = Sandbox::new();
    let request = home_and_host(&s);
    assert_eq!(s.path(&request), s.path("host/host.csr"));
    let key = s.read("host/host.key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "unencrypted by default");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(s.path("host/host.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    if have_openssl() {
        let r = sandbox::run(&mut s.command("openssl", &["req", "-verify", "-noout", "-in", "host/host.csr"]));
        assert_eq!(r.0, 0, "openssl req -verify: {}", r.2);
    }
    certify(&s, &request, &format!("{PRODUCT},other-app"));
    if have_openssl() {
        let r = sandbox::run(&mut s.command("openssl", &["x509", "-noout", "-text", "-in", "host.pem"]));
        assert_eq!(r.0, 0, "{}", r.2);
        assert!(r.1.contains(OID_CRITICAL), "{}", r.1);
    }
    let out = s.ok(&["host", "install", "host.pem", "--dir", "host"]);
    assert_eq!(
        named(&out)["delegation"],
        format!("products {PRODUCT},other-app; tokens up to 180d (15552000 s); seats 25")
    );
    let chain = tka::pki::pem::decode_all(&s.read("host/chain.pem"), "CERTIFICATE").unwrap();
    assert_eq!(chain.len(), 2, "host certificate and issuing CA, no root");
    let host = tka::issuer::host::HostDir::open(&s.path("host")).unwrap();
    assert_eq!(host.delegation().unwrap().products, vec![PRODUCT.to_string(), "other-app".into()]);
    let inspect: serde_json::Value =
        serde_json::from_str(&s.ok(&["cert", "inspect", "host/chain.pem", "--json"])).unwrap();
    assert_eq!(inspect[0]["delegation"]["seats"], 25);
    // The host signs within its delegation, with the home's chain.pem as --chain (as documented).
    s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    s.ok(&[
        "token",
        "issue",
        "--request",
        "req.json",
        "--signer-cert",
        "host.pem",
        "--signer-key",
        "host/host.key",
        "--chain",
        "home/chain.pem",
        "--out",
        "token.jws",
    ]);
    s.ok(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--product", PRODUCT]);
    let signer = host.token_signer(&tka::keys::KeyUnlock::default()).unwrap();
    assert_eq!(signer.certificate().fingerprint, CertInfo::parse(&chain[0]).unwrap().fingerprint);
}

#[test]
fn token_issue_outside_the_delegation_is_refused_at_signing() {
    let s = Sandbox::new();
    let request = home_and_host(&s);
    certify(&s, &request, PRODUCT);
    s.ok(&["host", "install", "host.pem", "--dir", "host"]);
    s.ok(&["request", "create", "--product", "other", "--out", "other.json"]);
    let r = s.tka(&[
        "token",
        "issue",
        "--request",
        "other.json",
        "--signer-cert",
        "host.pem",
        "--signer-key",
        "host/host.key",
        "--chain",
        "home/chain.pem",
        "--out",
        "other.jws",
    ]);
    assert_fails(
        &r,
        1,
        &format!("token outside the delegation of certificate CN=tka activation host: product \"other\" is not delegated ({PRODUCT})"),
    );
    assert!(!s.path("other.jws").exists());
}

/// A token signed with the host key past the signing check (a stolen key)
/// is refused by `token verify` with exit 1.
#[test]
fn a_token_forged_with_the_host_key_is_refused_by_verify() {
    let s = Sandbox::new();
    let request = home_and_host(&s);
    certify(&s, &request, PRODUCT);
    s.ok(&["host", "install", "host.pem", "--dir", "host"]);
    s.ok(&["request", "create", "--product", "other", "--out", "other.json"]);
    let key_path = s.path("host/host.key");
    let key = SoftwareKey::from_pkcs8_pem(&s.read("host/host.key"), None, &key_path).unwrap();
    let chain = tka::pki::pem::decode_all(&s.read("host/chain.pem"), "CERTIFICATE").unwrap();
    let signer = CertInfo::parse(&chain[0]).unwrap();
    let req = ActivationRequest::parse(&s.read("other.json")).unwrap();
    let claims = build_claims(&req, &IssueOptions::default(), &signer, tka::clock::now()).unwrap();
    let payload = serde_json::to_value(&claims).unwrap();
    let text =
        tka::jws::encode(&payload, TOKEN_TYP, &signer.fingerprint, &chain, SignatureAlgorithm::Ps256, &key).unwrap();
    s.write("forged.jws", text);
    let r = s.tka(&["token", "verify", "forged.jws", "--trust", "home/root.pem", "--product", "other"]);
    assert_fails(
        &r,
        1,
        &format!("token outside the delegation of certificate CN=tka activation host: product \"other\" is not delegated ({PRODUCT})"),
    );
}

#[test]
fn host_certify_refuses_a_forged_or_broken_request() {
    let s = Sandbox::new();
    let request = home_and_host(&s);
    let der = tka::pki::pem::decode_all(&s.read(&request), "CERTIFICATE REQUEST").unwrap().remove(0);
    let mut tampered = der.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1; // the signature's last byte
    s.write("forged.csr", tka::pki::pem::encode("CERTIFICATE REQUEST", &tampered));
    s.write("garbage.csr", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    let home = s.snapshot("home");
    for (file, message) in [
        ("forged.csr", "host request: its signature does not verify with the key it carries"),
        ("garbage.csr", "host request: not a PKCS#10 certification request"),
    ] {
        let r = s.tka(&[
            "host",
            "certify",
            "--home",
            "home",
            "--request",
            file,
            "--products",
            PRODUCT,
            "--max-lifetime",
            "180d",
            "--out",
            "host.pem",
        ]);
        assert_fails(&r, 2, message);
        assert!(!s.path("host.pem").exists());
    }
    assert_eq!(s.snapshot("home"), home);
}

#[test]
fn host_certify_refuses_bad_product_names_and_a_lifetime_beyond_the_certificate() {
    let s = Sandbox::new();
    let request = home_and_host(&s);
    let certify = |products: &str, max: &str| {
        s.tka(&[
            "host",
            "certify",
            "--home",
            "home",
            "--request",
            &request,
            "--products",
            products,
            "--max-lifetime",
            max,
            "--days",
            "365",
            "--out",
            "host.pem",
        ])
    };
    assert_fails(&certify("bad name", "180d"), 2, "delegation: product name \"bad name\"");
    assert_fails(
        &certify(PRODUCT, "400d"),
        2,
        "invalid delegated token lifetime: 34560000 s is longer than the certificate's 365 days",
    );
    assert!(!s.path("host.pem").exists());
}

#[test]
fn host_install_refuses_a_certificate_for_another_key() {
    let s = Sandbox::new();
    let request = home_and_host(&s);
    certify(&s, &request, PRODUCT);
    s.ok(&["host", "init", "--dir", "host2"]);
    let before = s.snapshot("host2");
    let r = s.tka(&["host", "install", "host.pem", "--dir", "host2"]);
    assert_fails(&r, 2, "CN=tka activation host certifies another key than this host's");
    assert_eq!(s.snapshot("host2"), before, "nothing written");
    // A certificate without a delegation is not a host certificate.
    let r = s.tka(&["host", "install", "home/signer.pem", "--dir", "host"]);
    assert_fails(&r, 2, "CN=tka Token Signer carries no tka delegation");
}

#[test]
fn host_init_never_replaces_a_key() {
    let s = Sandbox::new();
    s.ok(&["host", "init", "--dir", "host"]);
    let before = s.snapshot("host");
    let r = s.tka(&["host", "init", "--dir", "host"]);
    assert_fails(&r, 2, &format!("{} already holds a host", "host"));
    assert_eq!(s.snapshot("host"), before, "the key and request are unchanged");
}
