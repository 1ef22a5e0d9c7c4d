//! Third-party acceptance: what tka writes is read and accepted by other
//! tools — OpenSSL for certificates and keys, Python jwcrypto for tokens.
//!
//! A missing tool skips its test visibly (tests/tools: a `SKIPPED` line
//! naming the test, and a count when the binary exits). With
//! `TKA_REQUIRE_TOOLS=1` (set by `.ci/run`, which installs the tools) a
//! missing tool is a failure instead.

mod tools;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod sandbox;

use sandbox::{have, have_openssl, run, Run, Sandbox, PASS, PRODUCT};

const TKA_EKU: &str = "2.25.111504080495062926421002432311158376797";

fn have_jwcrypto() -> bool {
    have("python3 with jwcrypto (pip install jwcrypto)", Command::new("python3").args(["-c", "import jwcrypto.jws"]))
}

/// What the tests here do on top of the shared sandbox.
trait InteropSandbox {
    fn openssl(&self, args: &[&str]) -> String;
    fn issuer(&self, rel: &str) -> PathBuf;
    fn manual_pki(&self, rel: &str);
    fn x509_text(&self, cert: &str) -> String;
}

impl InteropSandbox for Sandbox {
    /// Runs openssl inside the sandbox and requires exit 0; returns stdout.
    #[track_caller]
    fn openssl(&self, args: &[&str]) -> String {
        let r = run(&mut self.command("openssl", args));
        assert_eq!(r.0, 0, "openssl {args:?} failed:\nstdout: {}\nstderr: {}", r.1, r.2);
        r.1
    }

    /// `tka issuer init` into `rel`; returns the root path it printed.
    fn issuer(&self, rel: &str) -> PathBuf {
        let home = self.path(rel);
        let out = self.ok(&[
            "issuer",
            "init",
            "--org",
            "tka",
            "--home",
            home.to_str().unwrap(),
            "--root-bits",
            "2048",
            "--ca-bits",
            "2048",
        ]);
        PathBuf::from(out.lines().find_map(|l| l.strip_prefix("root: ")).expect("root: line"))
    }

    /// root.key/ca.key/signer.key and root.pem/ca.pem/signer.pem made with `tka key` and `tka ca` in `rel`.
    fn manual_pki(&self, rel: &str) {
        fs::create_dir(self.path(rel)).unwrap();
        let p = |f: &str| format!("{rel}/{f}");
        for k in ["root.key", "ca.key", "signer.key"] {
            self.ok(&["key", "generate", "--bits", "2048", "--out", &p(k)]);
        }
        self.ok(&[
            "ca",
            "root",
            "--key",
            &p("root.key"),
            "--subject",
            "CN=Interop Root,O=tka",
            "--out",
            &p("root.pem"),
        ]);
        self.ok(&[
            "ca",
            "intermediate",
            "--ca-cert",
            &p("root.pem"),
            "--ca-key",
            &p("root.key"),
            "--key",
            &p("ca.key"),
            "--subject",
            "CN=Interop Issuing CA,O=tka",
            "--out",
            &p("ca.pem"),
        ]);
        self.ok(&[
            "ca",
            "signer",
            "--ca-cert",
            &p("ca.pem"),
            "--ca-key",
            &p("ca.key"),
            "--key",
            &p("signer.key"),
            "--subject",
            "CN=Interop Signer,O=tka",
            "--out",
            &p("signer.pem"),
        ]);
    }

    fn x509_text(&self, cert: &str) -> String {
        self.openssl(&["x509", "-in", cert, "-noout", "-text"])
    }
}

/// The lines following `heading` in `openssl x509 -text` output, up to the next extension.
fn extension<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text.find(heading).unwrap_or_else(|| panic!("no {heading:?} in\n{text}"));
    let rest = &text[start..];
    let end = rest[heading.len()..].find("X509v3 ").map_or(rest.len(), |i| i + heading.len());
    &rest[..end]
}

/// Checks the extensions openssl sees on a root, an issuing CA and a signer.
fn check_profiles(s: &Sandbox, dir: &str) {
    let root = s.x509_text(&format!("{dir}/root.pem"));
    assert!(root.contains("Version: 3"), "{root}");
    assert!(extension(&root, "X509v3 Basic Constraints").contains("critical"), "{root}");
    assert!(extension(&root, "X509v3 Basic Constraints").contains("CA:TRUE"), "{root}");
    assert!(extension(&root, "X509v3 Key Usage: critical").contains("Certificate Sign"), "{root}");
    assert!(root.contains("X509v3 Subject Key Identifier"), "{root}");

    let ca = s.x509_text(&format!("{dir}/ca.pem"));
    let bc = extension(&ca, "X509v3 Basic Constraints");
    assert!(bc.contains("critical") && bc.contains("CA:TRUE, pathlen:0"), "{ca}");
    let ku = extension(&ca, "X509v3 Key Usage: critical");
    assert!(ku.contains("Certificate Sign") && ku.contains("CRL Sign"), "{ca}");
    assert!(!ku.contains("Digital Signature"), "a CA key never signs tokens: {ca}");
    assert!(ca.contains("X509v3 Subject Key Identifier") && ca.contains("X509v3 Authority Key Identifier"), "{ca}");

    let signer = s.x509_text(&format!("{dir}/signer.pem"));
    assert!(extension(&signer, "X509v3 Basic Constraints").contains("CA:FALSE"), "{signer}");
    let ku = extension(&signer, "X509v3 Key Usage: critical");
    assert!(ku.contains("Digital Signature") && !ku.contains("Certificate Sign"), "{signer}");
    assert!(extension(&signer, "X509v3 Extended Key Usage").contains(TKA_EKU), "{signer}");
    assert!(
        signer.contains("X509v3 Subject Key Identifier") && signer.contains("X509v3 Authority Key Identifier"),
        "{signer}"
    );
    assert!(signer.contains("Public-Key: (2048 bit)"), "{signer}");
}

/// `openssl verify` of the signer through the issuing CA to the root.
fn check_openssl_verify(s: &Sandbox, dir: &str) {
    let verify = |args: &[&str]| run(s.command("openssl", args).current_dir(s.path(dir)));
    let r = verify(&["verify", "-CAfile", "root.pem", "-untrusted", "ca.pem", "signer.pem"]);
    assert_eq!((r.0, r.1.trim()), (0, "signer.pem: OK"), "{r:?}");
    // Strict X.509 checking and the intermediate on its own.
    let r = verify(&["verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "ca.pem", "signer.pem"]);
    assert_eq!((r.0, r.1.trim()), (0, "signer.pem: OK"), "{r:?}");
    let r = verify(&["verify", "-x509_strict", "-CAfile", "root.pem", "ca.pem"]);
    assert_eq!((r.0, r.1.trim()), (0, "ca.pem: OK"), "{r:?}");
    // Without the issuing CA the signer does not verify (the check is real).
    assert_ne!(verify(&["verify", "-CAfile", "root.pem", "signer.pem"]).0, 0);
}

#[test]
fn openssl_accepts_the_issuer_init_chain() {
    if !have_openssl() {
        return;
    }
    let s = Sandbox::new();
    let root = s.issuer("home");
    assert_eq!(fs::canonicalize(root).unwrap(), fs::canonicalize(s.path("home/root.pem")).unwrap());
    check_openssl_verify(&s, "home");
    check_profiles(&s, "home");
}

#[test]
fn openssl_accepts_the_manual_ca_chain() {
    if !have_openssl() {
        return;
    }
    let s = Sandbox::new();
    s.manual_pki("pki");
    check_openssl_verify(&s, "pki");
    check_profiles(&s, "pki");
    // Another root does not verify this signer.
    s.issuer("other");
    let mut c =
        s.command("openssl", &["verify", "-CAfile", "other/root.pem", "-untrusted", "pki/ca.pem", "pki/signer.pem"]);
    assert_ne!(run(&mut c).0, 0);
}

#[test]
fn openssl_reads_tka_private_keys() {
    if !have_openssl() {
        return;
    }
    let s = Sandbox::new();
    s.issuer("home");
    let pass = format!("pass:{PASS}");
    s.openssl(&["pkey", "-in", "home/signer.key", "-passin", &pass, "-noout"]);
    // The key is the one in the certificate.
    let from_key = s.openssl(&["pkey", "-in", "home/signer.key", "-passin", &pass, "-pubout"]);
    let from_cert = s.openssl(&["x509", "-in", "home/signer.pem", "-noout", "-pubkey"]);
    assert_eq!(from_key, from_cert);
    // PBES2 with a real KDF and cipher (what the design promises).
    let asn1 = s.openssl(&["asn1parse", "-in", "home/signer.key"]);
    assert!(asn1.contains(":PBES2") && (asn1.contains(":PBKDF2") || asn1.contains(":scrypt")), "{asn1}");
    assert!(asn1.contains(":aes-256-cbc") || asn1.contains(":aes-256-gcm"), "{asn1}");
    // A wrong passphrase is rejected by openssl too (the key really is encrypted).
    let r = run(&mut s.command("openssl", &["pkey", "-in", "home/signer.key", "-passin", "pass:wrong", "-noout"]));
    assert_ne!(r.0, 0, "{r:?}");

    // A plaintext key (--insecure-no-passphrase) reads without a passphrase.
    let mut c = s.cmd(&["key", "generate", "--bits", "2048", "--out", "plain.key", "--insecure-no-passphrase"]);
    c.env_remove("TKA_PASSPHRASE");
    assert_eq!(run(&mut c).0, 0);
    s.openssl(&["pkey", "-in", "plain.key", "-noout", "-passin", "pass:"]);
}

#[test]
fn tka_reads_openssl_private_keys() {
    if !have_openssl() {
        return;
    }
    let s = Sandbox::new();
    let pass = format!("pass:{PASS}");
    s.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-aes-256-cbc",
        "-pass",
        &pass,
        "-out",
        "ossl.key",
    ]);
    s.openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "plain.key"]);
    for k in ["ossl.key", "plain.key"] {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(s.path(k), fs::Permissions::from_mode(0o600)).unwrap();
    }
    s.ok(&["ca", "root", "--key", "ossl.key", "--subject", "CN=OpenSSL Key Root", "--out", "root.pem"]);
    s.ok(&["ca", "root", "--key", "plain.key", "--subject", "CN=Plain Key Root", "--out", "root2.pem"]);
    let r = run(s
        .cmd(&["ca", "root", "--key", "ossl.key", "--subject", "CN=x", "--out", "r3.pem"])
        .env("TKA_PASSPHRASE", "wrong"));
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.starts_with("error: wrong passphrase for ossl.key"), "{r:?}");
}

/// Issues a token for PRODUCT with `alg` from the issuer home `home`; returns its file name.
fn issue(s: &Sandbox, alg: &str) -> String {
    if !s.path("req.json").exists() {
        s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    }
    let file = format!("token-{alg}.jws");
    s.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--alg", alg, "--out", &file]);
    file
}

fn jwcrypto(s: &Sandbox, cert: &str, token: &str, alg: Option<&str>) -> Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jwcrypto_verify.py");
    let mut args = vec![script.to_str().unwrap(), cert, token];
    args.extend(alg);
    run(&mut s.command("python3", &args))
}

/// Flips one character in the middle of the payload.
fn tamper(s: &Sandbox, token: &str) -> String {
    let text = fs::read_to_string(s.path(token)).unwrap();
    let parts: Vec<&str> = text.trim().split('.').collect();
    let mut p: Vec<char> = parts[1].chars().collect();
    let i = p.len() / 2;
    p[i] = if p[i] == 'A' { 'B' } else { 'A' };
    let out = format!("tampered-{token}");
    fs::write(s.path(&out), format!("{}.{}.{}\n", parts[0], p.iter().collect::<String>(), parts[2])).unwrap();
    out
}

fn check_jwcrypto(alg: &str) {
    if !have_jwcrypto() {
        return;
    }
    let s = Sandbox::new();
    s.issuer("home");
    let token = issue(&s, alg);
    let r = jwcrypto(&s, "home/signer.pem", &token, Some(alg));
    assert_eq!(r.0, 0, "{r:?}");
    assert_eq!(r.1, format!("alg: {alg}\naud: {PRODUCT}\n"), "{r:?}");
    // tka itself agrees.
    s.ok(&["token", "verify", &token, "--trust", "home/root.pem", "--product", PRODUCT]);

    // A tampered payload fails in jwcrypto.
    let bad = tamper(&s, &token);
    let r = jwcrypto(&s, "home/signer.pem", &bad, None);
    assert_rejected(&r, BAD_SIGNATURE);
    // So does the right token with someone else's signer certificate.
    s.issuer("other");
    let r = jwcrypto(&s, "other/signer.pem", &token, None);
    assert_rejected(&r, BAD_SIGNATURE);
    // And the algorithm in the header is what was asked for (no PS/RS confusion).
    let other_alg = if alg == "PS256" { "RS256" } else { "PS256" };
    let r = jwcrypto(&s, "home/signer.pem", &token, Some(other_alg));
    assert_rejected(
        &r,
        "InvalidJWSSignature: Verification failed for all signatures\
         [\"Failed: [InvalidJWSOperation('Algorithm not allowed')]\"]",
    );
}

#[test]
fn jwcrypto_verifies_a_ps256_token() {
    check_jwcrypto("PS256");
}

#[test]
fn jwcrypto_verifies_an_rs256_token() {
    check_jwcrypto("RS256");
}

/// A compact token (no `x5c`) is still a JWS that jwcrypto verifies given
/// the signer certificate, and tka verifies given the chain.
#[test]
fn jwcrypto_verifies_a_compact_token() {
    if !have_jwcrypto() {
        return;
    }
    let s = Sandbox::new();
    s.issuer("home");
    s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    s.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--compact", "--out", "compact.jws"]);
    let r = jwcrypto(&s, "home/signer.pem", "compact.jws", Some("PS256"));
    assert_eq!((r.0, r.1.as_str()), (0, format!("alg: PS256\naud: {PRODUCT}\n").as_str()), "{r:?}");
    s.ok(&["token", "verify", "compact.jws", "--trust", "home/root.pem", "--chain", "home/chain.pem"]);
    let bad = tamper(&s, "compact.jws");
    let r = jwcrypto(&s, "home/signer.pem", &bad, None);
    assert_rejected(&r, BAD_SIGNATURE);
}

/// jwcrypto's own rejection of a signature that does not verify.
const BAD_SIGNATURE: &str = "InvalidJWSSignature: Verification failed for all signatures\
[\"Failed: [InvalidJWSSignature('Verification failed')]\"]";

/// The helper exited 1 with jwcrypto's own rejection (`rejected: <class>:
/// <message>`), not with a crash (which exits 3, or 1 with a traceback).
#[track_caller]
fn assert_rejected(r: &sandbox::Run, want: &str) {
    assert_eq!((r.0, r.2.trim_end()), (1, format!("rejected: {want}").as_str()), "{r:?}");
}

#[test]
fn only_the_value_1_requires_the_tools() {
    // TKA_REQUIRE_TOOLS=0 (or empty, or unset) lets a missing tool skip.
    assert!(tools::requires(Some("1")));
    for v in [None, Some("0"), Some(""), Some("yes")] {
        assert!(!tools::requires(v), "{v:?}");
    }
}
