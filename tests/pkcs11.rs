//! Keys on PKCS#11 tokens, against SoftHSM2: signing through the token,
//! key generation on the token, the CLI's `pkcs11:` URIs, bulk issuance
//! and rotation with token keys, and every bad input of issue 7 (wrong PIN,
//! missing module, a URI naming no object or several, several tokens, a
//! key of the wrong type, no PIN). The mechanism choice for a token that
//! lacks a mechanism is covered by unit tests in src/pkcs11/device.rs.
//!
//! Each CLI test gets its own SoftHSM2 configuration and tokens; the
//! in-process tests share one (PKCS#11 modules are initialised once per
//! process), each with its own object labels. Test PINs only.

mod sandbox;
mod softhsm;
mod tools;

use sandbox::{Run, Sandbox, PRODUCT};
use serde_json::Value;
use softhsm::SoftHsm;
use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use tka::issuer::issue::{issue_token, IssueOptions};
use tka::issuer::{InitOptions, IssuerHome};
use tka::keys::{verify_signature, KeyRef, KeyUnlock, Passphrase, SignatureAlgorithm, Signer};
use tka::machine::MachineIdentity;
use tka::pkcs11::{MechanismPlan, Pkcs11Key, Pkcs11Options, Pkcs11Uri};
use tka::pki::TrustAnchors;
use tka::request::ActivationRequest;
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::VerifyError;

const NOW: i64 = 1_800_000_000;

// ----- in-process: one SoftHSM2 configuration for this test process -----

/// The name of the directory of the shared configuration (made on first
/// use): `tka-pkcs11-<pid>` in the temporary directory.
fn shared_dir_name() -> String {
    format!("tka-pkcs11-{}", std::process::id())
}

/// Names the shared configuration in `SOFTHSM2_CONF` before `main`, while
/// the process has one thread: no test changes the environment while
/// others run.
extern "C" fn name_the_shared_configuration() {
    let conf = std::env::temp_dir().join(shared_dir_name()).join("softhsm2.conf");
    // Before main no other thread exists to read the environment meanwhile.
    std::env::set_var("SOFTHSM2_CONF", conf);
}

#[used]
#[link_section = ".init_array"]
static NAME_THE_SHARED_CONFIGURATION: extern "C" fn() = name_the_shared_configuration;

/// The shared configuration (token "lib"), written where `SOFTHSM2_CONF`
/// already points before the module is first loaded.
fn shared() -> Option<&'static SoftHsm> {
    static HSM: OnceLock<Option<SoftHsm>> = OnceLock::new();
    HSM.get_or_init(|| {
        if !softhsm::available() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix(&shared_dir_name()).rand_bytes(0).tempdir().unwrap();
        let hsm = SoftHsm::in_dir(dir, &["lib"]);
        // Read by the module at C_Initialize, which happens after this.
        assert_eq!(std::env::var_os("SOFTHSM2_CONF"), Some(hsm.conf().into_os_string()));
        Some(hsm)
    })
    .as_ref()
}

fn lib_uri(hsm: &SoftHsm, object: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(&hsm.uri("lib", Some(object))).unwrap()
}

fn new_token_key(hsm: &SoftHsm, label: &str) -> Pkcs11Key {
    let (uri, _) = tka::pkcs11::generate_rsa_key(&lib_uri(hsm, label), 2048, &Pkcs11Options::default()).unwrap();
    Pkcs11Key::open(&uri, &Pkcs11Options::default()).unwrap()
}

#[test]
fn token_keys_sign_ps256_and_rs256_with_either_mechanism_plan() {
    let Some(hsm) = shared() else { return };
    let key = new_token_key(hsm, "plans");
    let msg = b"eyJhbGciOiJQUzI1NiJ9.eyJqdGkiOiIxIn0";
    for alg in [SignatureAlgorithm::Ps256, SignatureAlgorithm::Rs256] {
        let sig = key.sign(alg, msg).unwrap();
        assert_eq!(sig.len(), 256);
        assert!(verify_signature(key.public_key(), alg, msg, &sig), "{alg:?}");
        assert!(!verify_signature(key.public_key(), alg, b"another message", &sig), "{alg:?}");
        for plan in [MechanismPlan::Combined, MechanismPlan::RawDigest] {
            let sig = key.sign_with(alg, plan, msg).unwrap();
            assert!(verify_signature(key.public_key(), alg, msg, &sig), "{alg:?} {plan:?}");
        }
    }
    // PKCS#1 v1.5 is deterministic: the token hashing and tka hashing give the same bytes.
    let a = key.sign_with(SignatureAlgorithm::Rs256, MechanismPlan::Combined, msg).unwrap();
    let b = key.sign_with(SignatureAlgorithm::Rs256, MechanismPlan::RawDigest, msg).unwrap();
    assert_eq!(a, b);
}

#[test]
fn parallel_signing_takes_one_session_per_worker() {
    let Some(hsm) = shared() else { return };
    let key = new_token_key(hsm, "parallel");
    std::thread::scope(|s| {
        for t in 0..6 {
            let key = &key;
            s.spawn(move || {
                for i in 0..15 {
                    let msg = format!("worker {t} message {i}");
                    let sig = key.sign(SignatureAlgorithm::Ps256, msg.as_bytes()).unwrap();
                    assert!(verify_signature(key.public_key(), SignatureAlgorithm::Ps256, msg.as_bytes(), &sig));
                }
            });
        }
    });
}

#[test]
fn generated_private_keys_are_sensitive_and_never_extractable() {
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let Some(hsm) = shared() else { return };
    let key = new_token_key(hsm, "sensitive");
    let ctx = tka::pkcs11::context(&softhsm::module().unwrap()).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == "lib")
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    // Logged in already by the key above (login state is per process).
    let found = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Label(b"sensitive".to_vec())])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attrs = session
        .get_attributes(found[0], &[AttributeType::Sensitive, AttributeType::Extractable, AttributeType::Token])
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Token(true)), "{attrs:?}");
    assert!(key.uri().id.as_ref().is_some_and(|id| id.len() == 16), "{}", key.uri());
}

fn machine() -> MachineIdentity {
    MachineIdentity::from_raw(
        PRODUCT,
        &[
            ("mid".into(), "4f1d2c3b4a5968778695a4b3c2d1e0f1".into()),
            ("dmi".into(), "4c4c4544-0042-3510-8052-b4c04f4e4e32".into()),
        ],
    )
}

/// Issues one token from a new issuer home with keys in `pkcs11` (or in files).
fn issue_from_home(dir: &Path, pkcs11: Option<Pkcs11Uri>) -> (String, Vec<u8>) {
    let opts = InitOptions { root_bits: 2048, ca_bits: 2048, pkcs11, ..Default::default() };
    let unlock = KeyUnlock::default();
    let home = IssuerHome::init(dir, &opts, &unlock, NOW).unwrap();
    let signer = home.token_signer(&unlock).unwrap();
    let req = ActivationRequest::new(&machine(), NOW, None);
    let token = issue_token(&req, &IssueOptions::default(), &signer, NOW).unwrap();
    let root = tka::issuer::read_cert_chain(&home.root_cert_path()).unwrap().remove(0);
    (token.text, root)
}

fn verify(text: &str, root: &[u8]) -> Result<tka::verify::VerifiedToken, VerifyError> {
    let anchors = TrustAnchors::from_der(&[root.to_vec()]).unwrap();
    let revoked = HashSet::new();
    let id = machine();
    let ctx = VerifyContext {
        anchors: &anchors,
        pinned_roots: &[],
        now: NOW + 60,
        product: Some(PRODUCT),
        machine: MachineCheck::Identity(&id),
        crls: &[],
        revoked_serials: &revoked,
        clock: None,
        certificates: &[],
    };
    verify_token(text, &ctx)
}

/// Replaces the first character of the signature part.
fn tamper_signature(text: &str) -> String {
    let dot = text.rfind('.').unwrap();
    let c = if text.as_bytes()[dot + 1] == b'A' { "B" } else { "A" };
    format!("{}{c}{}", &text[..=dot], &text[dot + 2..])
}

#[test]
fn tokens_signed_on_a_token_verify_exactly_like_file_signed_ones() {
    let Some(hsm) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let on_token = Pkcs11Uri::parse(&hsm.uri("lib", Some("home"))).unwrap();
    let (hsm_token, hsm_root) = issue_from_home(&tmp.path().join("token-home"), Some(on_token));
    let (file_token, file_root) = issue_from_home(&tmp.path().join("file-home"), None);
    let a = verify(&hsm_token, &hsm_root).unwrap();
    let b = verify(&file_token, &file_root).unwrap();
    assert_eq!((a.claims.aud.as_str(), a.claims.sub.as_str()), (b.claims.aud.as_str(), b.claims.sub.as_str()));
    assert_eq!(a.path.len(), b.path.len());
    assert_eq!(a.alg, b.alg);
    // Same refusals: a bad signature, and the other issuer's root.
    assert!(matches!(verify(&tamper_signature(&hsm_token), &hsm_root), Err(VerifyError::BadSignature)));
    assert!(matches!(verify(&tamper_signature(&file_token), &file_root), Err(VerifyError::BadSignature)));
    let e1 = verify(&hsm_token, &file_root).unwrap_err();
    let e2 = verify(&file_token, &hsm_root).unwrap_err();
    assert_eq!(std::mem::discriminant(&e1), std::mem::discriminant(&e2), "{e1} / {e2}");
}

#[test]
fn key_refs_tell_uris_from_files() {
    assert!(matches!(KeyRef::parse("signer.key").unwrap(), KeyRef::File(_)));
    assert!(matches!(KeyRef::parse("PKCS11:token=t;object=k").unwrap(), KeyRef::Pkcs11(_)));
    let e = KeyRef::parse("pkcs11:token=t;label=k").unwrap_err().to_string();
    assert_eq!(e, "invalid pkcs11: URI: unknown attribute \"label\"");
    // A URI without object or id names no key.
    let uri = Pkcs11Uri::parse("pkcs11:token=t?module-path=/nonexistent.so").unwrap();
    let e = Pkcs11Key::open(&uri, &Pkcs11Options::default()).unwrap_err().to_string();
    assert_eq!(e, "pkcs11:token=t?module-path=/nonexistent.so names no key: add object=LABEL or id=%XX");
    let _ = Passphrase::new("unused".into());
}

// ----- the CLI: each test its own SoftHSM2 configuration -----

struct World {
    s: Sandbox,
    hsm: SoftHsm,
}

impl World {
    fn new(tokens: &[&str]) -> Option<World> {
        if !softhsm::available() {
            return None;
        }
        Some(World { s: Sandbox::new(), hsm: SoftHsm::new(tokens) })
    }

    fn tka(&self, args: &[&str]) -> Run {
        self.tka_env(args, &[])
    }

    fn tka_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.s.cmd(args);
        c.env("SOFTHSM2_CONF", self.hsm.conf()).env_remove("TKA_PKCS11_PIN").env_remove("TKA_PKCS11_MODULE");
        c.envs(env.iter().copied());
        sandbox::run(&mut c)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let r = self.tka(args);
        assert_eq!(r.0, 0, "tka {args:?} failed:\nstdout: {}\nstderr: {}", r.1, r.2);
        r.1
    }

    /// An issuer home at `home/` with all three keys on token `token`.
    fn home_on_token(&self, token: &str) {
        let uri = self.hsm.uri(token, None);
        self.ok(&[
            "issuer",
            "init",
            "--org",
            "tka",
            "--home",
            "home",
            "--root-bits",
            "2048",
            "--ca-bits",
            "2048",
            "--pkcs11",
            &uri,
        ]);
    }
}

/// Exit code 2, a one-line `error:` starting with `want`.
#[track_caller]
fn assert_error(r: &Run, want: &str) {
    assert_eq!(r.0, 2, "exit code: {r:?}");
    let first = r.2.lines().next().unwrap_or("");
    assert!(first.starts_with(&format!("error: {want}")), "want `error: {want}`, got:\n{}", r.2);
}

fn signer_cmd(key: &str) -> Vec<&str> {
    vec![
        "token",
        "issue",
        "--request",
        "req.json",
        "--signer-cert",
        "home/signer.pem",
        "--chain",
        "home/ca.pem",
        "--signer-key",
        key,
        "--out",
        "t.jws",
    ]
}

#[test]
fn a_wrong_pin_is_one_clear_error_and_writes_nothing() {
    let Some(w) = World::new(&["t"]) else { return };
    w.home_on_token("t");
    w.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    let uri = format!(
        "{}?module-path={}&pin-source=file:{}",
        "pkcs11:token=t;object=tka-signer",
        softhsm::module().unwrap().display(),
        w.hsm.wrong_pin_file().display()
    );
    let r = w.tka(&signer_cmd(&uri));
    assert_error(&r, "wrong PIN for token \"t\" (not retried)");
    assert!(r.2.contains("hint: check the PIN before trying again"), "{}", r.2);
    assert!(!w.s.path("t.jws").exists());
    // The right PIN from TKA_PKCS11_PIN works for a URI without a PIN source.
    let uri = w.hsm.uri_without_pin("t", Some("tka-signer"));
    let r = w.tka_env(&signer_cmd(&uri), &[("TKA_PKCS11_PIN", softhsm::PIN)]);
    assert_eq!(r.0, 0, "{r:?}");
    let v =
        w.ok(&["token", "verify", "t.jws", "--trust", "home/root.pem", "--product", PRODUCT, "--machine", "current"]);
    assert!(v.starts_with("valid\n"), "{v}");
}

#[test]
fn no_pin_without_a_terminal_is_refused_with_a_hint() {
    let Some(w) = World::new(&["t"]) else { return };
    w.home_on_token("t");
    w.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    let r = w.tka(&signer_cmd(&w.hsm.uri_without_pin("t", Some("tka-signer"))));
    assert_error(&r, "token \"t\" needs a user PIN and none was given");
    assert!(r.2.contains("TKA_PKCS11_PIN"), "{}", r.2);
}

#[test]
fn a_missing_module_is_named() {
    let Some(w) = World::new(&["t"]) else { return };
    let r = w.tka(&["key", "generate", "--out", "pkcs11:token=t;object=k?module-path=/nonexistent/libnone.so"]);
    assert_error(&r, "PKCS#11: PKCS#11 module /nonexistent/libnone.so does not exist");
    let r = w.tka(&["pkcs11", "list", "--module", "/nonexistent/libnone.so"]);
    assert_error(&r, "PKCS#11: PKCS#11 module /nonexistent/libnone.so does not exist");
    // No module at all: neither in the URI nor in TKA_PKCS11_MODULE.
    let r = w.tka(&["key", "generate", "--out", "pkcs11:token=t;object=k"]);
    assert_error(&r, "PKCS#11: pkcs11:token=t;object=k names no PKCS#11 module: add ?module-path=");
    // TKA_PKCS11_MODULE supplies it.
    let pin = format!("pkcs11:token=t;object=k?pin-source=file:{}", w.hsm.pin_file().display());
    let module = softhsm::module().unwrap();
    let r = w.tka_env(
        &["key", "generate", "--bits", "2048", "--out", &pin],
        &[("TKA_PKCS11_MODULE", module.to_str().unwrap())],
    );
    assert_eq!(r.0, 0, "{r:?}");
}

#[test]
fn a_uri_naming_no_key_or_several_keys_or_tokens_is_refused() {
    let Some(w) = World::new(&["t", "u"]) else { return };
    w.home_on_token("t");
    w.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    let r = w.tka(&signer_cmd(&w.hsm.uri("t", Some("nope"))));
    assert_error(&r, "PKCS#11: no private key \"nope\" on token \"t\" matches pkcs11:token=t;object=nope");
    // Two keys under one label (imported with ids 01 and 02).
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/test/signer.key");
    w.hsm.import("t", &key, "dup", "01");
    w.hsm.import("t", &key, "dup", "02");
    let r = w.tka(&signer_cmd(&w.hsm.uri("t", Some("dup"))));
    assert_error(&r, "PKCS#11: 2 private keys match \"dup\" on token \"t\": add object= or id= to name exactly one");
    // Without token=, two tokens match.
    let any_token = format!(
        "pkcs11:object=tka-signer?module-path={}&pin-source=file:{}",
        softhsm::module().unwrap().display(),
        w.hsm.pin_file().display()
    );
    let r = w.tka(&signer_cmd(&any_token));
    assert_error(&r, "PKCS#11: 2 tokens match pkcs11:object=tka-signer");
    // A token that is not there.
    let r = w.tka(&signer_cmd(&w.hsm.uri("absent", Some("tka-signer"))));
    assert_error(&r, "PKCS#11: no token matches pkcs11:token=absent");
    assert!(!w.s.path("t.jws").exists());
}

#[test]
fn a_key_of_the_wrong_type_is_refused() {
    let Some(w) = World::new(&["t"]) else { return };
    let ec = w.s.path("ec.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec.to_str().unwrap()])
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        tools::missing("openssl (to make an EC key)", "TKA_REQUIRE_INTEROP");
        return;
    }
    w.hsm.import("t", &ec, "ec", "0e");
    w.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    w.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    let r = w.tka(&signer_cmd(&w.hsm.uri("t", Some("ec"))));
    assert_error(&r, "PKCS#11: \"ec\" on token \"t\" has key type EC: tka signs with RSA keys only");
}

#[test]
fn key_generate_on_a_token_never_replaces_a_key() {
    let Some(w) = World::new(&["t"]) else { return };
    let uri = w.hsm.uri("t", Some("signer"));
    let out = w.ok(&["key", "generate", "--bits", "2048", "--out", &uri]);
    assert!(out.starts_with("key: pkcs11:token=t;object=signer;id="), "{out}");
    assert!(out.contains("bits: 2048"), "{out}");
    let r = w.tka(&["key", "generate", "--bits", "2048", "--out", &uri]);
    assert_error(&r, "PKCS#11: token \"t\" already holds an object labelled \"signer\"");
    let r = w.tka(&["key", "generate", "--bits", "2048", "--out", &uri, "--force"]);
    assert_error(&r, "--force cannot replace a key on a token");
    // The new key works as a CA key for `ca root` (self-signed on the token), and openssl reads the result.
    let printed = out.lines().next().unwrap().strip_prefix("key: ").unwrap().to_string();
    assert!(printed.contains("pin-source=file:"), "the printed URI keeps the PIN source: {printed}");
    w.ok(&["ca", "root", "--key", &printed, "--subject", "CN=Token Root", "--out", "root.pem"]);
    let listed = w.ok(&["pkcs11", "list", "--module", softhsm::module().unwrap().to_str().unwrap()]);
    assert!(listed.contains("slot ") && listed.contains("token \"t\""), "{listed}");
    assert!(listed.contains("public RSA-2048 \"signer\""), "{listed}");
    assert!(!listed.contains("private RSA"), "private keys need --login: {listed}");
    assert!(listed.contains("[private keys hidden: use --login]"), "{listed}");
}

#[test]
fn bulk_issuance_signs_with_a_token_key() {
    let Some(w) = World::new(&["bulk"]) else { return };
    w.home_on_token("bulk");
    w.ok(&["entitlement", "add", "--home", "home", "--product", "bench", "--machines", "100", "--name", "e"]);
    w.ok(&["request", "generate-test", "--product", "bench", "--count", "64", "--out", "reqs.txt"]);
    let args =
        ["token", "issue-bulk", "--home", "home", "--entitlement", "e", "--requests-file", "reqs.txt", "--out", "out"];
    let mut with_report = args.to_vec();
    with_report.extend(["--report", "report.json", "--quiet"]);
    w.ok(&with_report);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(w.s.path("report.json")).unwrap()).unwrap();
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 64);
    assert!(items.iter().all(|i| i["status"] == "ok"), "{report}");
    let files: Vec<_> = std::fs::read_dir(w.s.path("out")).unwrap().collect();
    assert_eq!(files.len(), 64);
    // Each token verifies against the root, for its own machine.
    for item in items.iter().take(4) {
        let file = item["file"].as_str().unwrap();
        let cmid = item["cmid"].as_str().unwrap();
        let v = w.ok(&["token", "verify", file, "--trust", "home/root.pem", "--product", "bench", "--machine", cmid]);
        assert!(v.starts_with("valid\n"), "{v}");
    }
    // A re-run is idempotent: no new seats.
    w.ok(&with_report);
    let e: Value = serde_json::from_str(&w.ok(&["entitlement", "show", "e", "--home", "home", "--json"])).unwrap();
    assert_eq!(e["used"], 64, "{e}");
}

#[test]
fn rotation_crl_and_revocation_lists_sign_on_the_token() {
    let Some(w) = World::new(&["rot"]) else { return };
    w.home_on_token("rot");
    w.ok(&["trust", "add", "home/root.pem"]);
    let out = w.ok(&["issuer", "rotate-signer", "--home", "home"]);
    assert!(out.contains("new signer: "), "{out}");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(w.s.path("home/tka-issuer.json")).unwrap()).unwrap();
    let signer = cfg["signer_key"].as_str().unwrap();
    assert!(signer.starts_with("pkcs11:token=rot;object=tka-signer@"), "{signer}");
    assert!(!w.s.path("home/retired").exists() || !out.contains(".key"), "no key file is retired: {out}");
    // Tokens from the new signer activate.
    w.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    w.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws"]);
    let a = w.ok(&["activate", "t.jws"]);
    assert!(a.starts_with(&format!("activated: {PRODUCT}")), "{a}");
    // A CRL signed by the issuing CA key on the token.
    let ca_key = cfg["ca_key"].as_str().unwrap();
    w.ok(&["crl", "create", "--ca-cert", "home/ca.pem", "--ca-key", ca_key, "--out", "ca.crl"]);
    let ok = std::process::Command::new("openssl")
        .args(["crl", "-in", "ca.crl", "-CAfile", "home/ca.pem", "-noout"])
        .current_dir(w.s.dir())
        .output();
    match ok {
        Ok(o) => assert!(String::from_utf8_lossy(&o.stderr).contains("verify OK"), "{o:?}"),
        Err(_) => tools::missing("openssl (to check the CRL)", "TKA_REQUIRE_INTEROP"),
    }
    // A token revocation list signed by the signer on the token, imported on the machine.
    w.ok(&["revocations", "create", "--home", "home", "--out", "rev.jws"]);
    w.ok(&["revocations", "import", "rev.jws"]);

    // The issuing CA and the root rotate on the token too; the machine still
    // trusts only the first root and accepts tokens through the cross-certificate.
    w.ok(&["issuer", "rotate-ca", "--home", "home"]);
    let out = w.ok(&["issuer", "rotate-root", "--home", "home"]);
    assert!(out.contains("new cross: "), "{out}");
    assert!(!out.contains(".key"), "no key file is created or retired: {out}");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(w.s.path("home/tka-issuer.json")).unwrap()).unwrap();
    for (field, label) in [("root_key", "tka-root@"), ("ca_key", "tka-ca@"), ("signer_key", "tka-signer@")] {
        let v = cfg[field].as_str().unwrap();
        assert!(v.starts_with(&format!("pkcs11:token=rot;object={label}")), "{field}: {v}");
    }
    w.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t2.jws"]);
    let a = w.ok(&["activate", "t2.jws"]);
    assert!(a.starts_with(&format!("activated: {PRODUCT}")), "{a}");
}

// ----- issue 7 (second review): which modules load, and a failed init -----

/// The objects on token `token` as (type, label, id), sorted, private keys
/// included: `tka pkcs11 list --login --json`.
fn objects(w: &World, token: &str) -> Vec<(String, String, String)> {
    let module = softhsm::module().unwrap();
    let r = w.tka_env(
        &["pkcs11", "list", "--module", module.to_str().unwrap(), "--login", "--json"],
        &[("TKA_PKCS11_PIN", softhsm::PIN)],
    );
    assert_eq!(r.0, 0, "{r:?}");
    let v: Value = serde_json::from_str(&r.1).unwrap();
    let t = v.as_array().unwrap().iter().find(|t| t["label"] == token).unwrap();
    assert_eq!(t["logged_in"], true, "{t}");
    let s = |o: &Value, k: &str| o[k].as_str().unwrap().to_string();
    let mut all: Vec<_> =
        t["objects"].as_array().unwrap().iter().map(|o| (s(o, "type"), s(o, "label"), s(o, "id"))).collect();
    all.sort();
    all
}

/// A working module outside the module directories (a link to SoftHSM2):
/// what an attacker would plant, so that loading it would succeed.
fn planted_module(w: &World) -> std::path::PathBuf {
    let evil = w.s.path("planted/libevil.so");
    std::fs::create_dir_all(evil.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(softhsm::module().unwrap(), &evil).unwrap();
    evil
}

#[test]
fn a_module_name_that_is_a_path_is_refused_and_nothing_is_loaded() {
    let Some(w) = World::new(&["t"]) else { return };
    let evil = planted_module(&w);
    let pin = w.hsm.pin_file();
    for name in [evil.display().to_string(), "../x".to_string()] {
        let uri = format!("pkcs11:token=t;object=k?module-name={name}&pin-source=file:{}", pin.display());
        let r = w.tka(&["key", "generate", "--bits", "2048", "--out", &uri]);
        assert_error(&r, &format!("PKCS#11: module-name \"{name}\" is not a bare file name: a module-name holds no"));
        assert!(r.2.contains("hint: give a module file elsewhere with module-path="), "{}", r.2);
    }
    assert_eq!(objects(&w, "t"), vec![], "no key was generated through the planted module");
    // A bare name is looked up in the module directories (libsofthsm2.so there).
    let uri = format!("pkcs11:token=t;object=k?module-name=softhsm2&pin-source=file:{}", pin.display());
    w.ok(&["key", "generate", "--bits", "2048", "--out", &uri]);
    let labels: Vec<_> = objects(&w, "t").into_iter().map(|(kind, label, _)| format!("{kind} {label}")).collect();
    assert_eq!(labels, ["private k", "public k"]);
}

#[test]
fn a_module_path_in_a_tampered_issuer_config_is_refused_unless_allowed() {
    let Some(w) = World::new(&["t"]) else { return };
    w.home_on_token("t");
    w.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    // Someone who can write to the home points the keys at their own library.
    let evil = planted_module(&w);
    let cfg_path = w.s.path("home/tka-issuer.json");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let real = format!("module-path={}", softhsm::module().unwrap().display());
    let tampered = cfg.replace(&real, &format!("module-path={}", evil.display()));
    assert_ne!(tampered, cfg);
    std::fs::write(&cfg_path, tampered).unwrap();
    let home_before = w.s.snapshot("home");
    let objects_before = objects(&w, "t");
    let refused = format!(
        "PKCS#11: module-path {} comes from a configuration file and is outside the PKCS#11 module directories: \
         not loaded",
        evil.display()
    );
    let issue = ["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws"];
    let r = w.tka(&issue);
    assert_error(&r, &refused);
    assert!(r.2.contains("hint: ") && r.2.contains("--allow-config-module-path"), "{}", r.2);
    assert!(!w.s.path("t.jws").exists());
    // Rotation (which generates a key through the module) is refused the same way.
    let r = w.tka(&["issuer", "rotate-signer", "--home", "home"]);
    assert_error(&r, &refused);
    assert_eq!(w.s.snapshot("home"), home_before, "the home is left as it was");
    assert_eq!(objects(&w, "t"), objects_before, "no key was made on the token");
    // The operator may vouch for the configured module.
    let mut allowed = issue.to_vec();
    allowed.push("--allow-config-module-path");
    w.ok(&allowed);
    assert!(w.s.path("t.jws").exists());
    // A module-path typed on the command line is the operator's own choice.
    std::fs::remove_file(w.s.path("t.jws")).unwrap();
    let uri = format!(
        "pkcs11:token=t;object=tka-signer?module-path={}&pin-source=file:{}",
        evil.display(),
        w.hsm.pin_file().display()
    );
    w.ok(&signer_cmd(&uri));
    assert!(w.s.path("t.jws").exists());
}

/// A token holding a key labelled `tka-signer` already, so `issuer init
/// --pkcs11` fails at its third key, after making the root and CA keys.
fn token_with_a_signer_label(w: &World) -> Vec<(String, String, String)> {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/test/signer.key");
    w.hsm.import("t", &key, "tka-signer", "05");
    let before = objects(w, "t");
    assert!(before.iter().any(|(kind, label, _)| kind == "private" && label == "tka-signer"), "{before:?}");
    before
}

const INIT_COLLIDES: &str = "PKCS#11: token \"t\" already holds an object labelled \"tka-signer\": tka never replaces \
                             a key; choose another object=";

#[test]
fn a_failed_issuer_init_removes_the_keys_it_made_on_the_token() {
    let Some(w) = World::new(&["t"]) else { return };
    let before = token_with_a_signer_label(&w);
    let uri = w.hsm.uri("t", None);
    let r = w.tka(&[
        "issuer",
        "init",
        "--org",
        "tka",
        "--home",
        "home",
        "--root-bits",
        "2048",
        "--ca-bits",
        "2048",
        "--pkcs11",
        &uri,
    ]);
    assert_error(&r, INIT_COLLIDES);
    assert_eq!(r.2.lines().count(), 1, "{}", r.2);
    assert!(!w.s.path("home").exists());
    // tka-root and tka-ca were made, then removed; the existing key is untouched.
    assert_eq!(objects(&w, "t"), before);
}

#[test]
fn keys_a_failed_issuer_init_cannot_remove_are_named() {
    let Some(w) = World::new(&["t"]) else { return };
    let before = token_with_a_signer_label(&w);
    let uri = w.hsm.uri("t", None);
    let r = w.tka_env(
        &[
            "issuer",
            "init",
            "--org",
            "tka",
            "--home",
            "home",
            "--root-bits",
            "2048",
            "--ca-bits",
            "2048",
            "--pkcs11",
            &uri,
        ],
        &[("TKA_TEST_FAIL_KEY_REMOVAL", "1")],
    );
    assert_error(
        &r,
        &format!(
            "{INIT_COLLIDES} (and the keys it created could not all be removed from the token: PKCS#11: cannot remove \
             pkcs11:token=t;object=tka-root;id="
        ),
    );
    let error = r.2.lines().next().unwrap();
    assert!(error.contains("; PKCS#11: cannot remove pkcs11:token=t;object=tka-ca;id="), "{error}");
    assert!(r.2.contains("hint: delete the keys named above"), "{}", r.2);
    assert!(!w.s.path("home").exists());
    let after = objects(&w, "t");
    let left: Vec<_> = after.iter().filter(|o| !before.contains(o)).map(|(k, l, _)| format!("{k} {l}")).collect();
    assert_eq!(left, ["private tka-ca", "private tka-root", "public tka-ca", "public tka-root"]);
}

#[test]
fn an_init_that_fails_after_making_all_three_keys_removes_them() {
    if shared().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A root validity that ends before it starts: the root certificate fails,
    // after the three keys were generated. The PIN is a pin-value, which tka
    // does not keep in the new keys' URIs: removal relies on the login made.
    let module = softhsm::module().unwrap();
    let uri = format!("pkcs11:token=lib;object=undone?module-path={}&pin-value={}", module.display(), softhsm::PIN);
    let on_token = Pkcs11Uri::parse(&uri).unwrap();
    let opts =
        InitOptions { root_bits: 2048, ca_bits: 2048, root_days: -1, pkcs11: Some(on_token), ..Default::default() };
    match IssuerHome::init(&tmp.path().join("home"), &opts, &KeyUnlock::default(), NOW) {
        Err(tka::Error::Usage(m)) => assert_eq!(m, "certificate validity must be at least one second"),
        other => panic!("{other:?}"),
    }
    assert!(!tmp.path().join("home").exists());
    let pin = Passphrase::new(softhsm::PIN.into());
    let listing = tka::pkcs11::list(&module, Some(&pin)).unwrap();
    let lib = listing.iter().find(|t| t.label == "lib").unwrap();
    assert!(lib.logged_in);
    let left: Vec<_> = lib.objects.iter().filter(|o| o.label.starts_with("undone-")).map(|o| &o.label).collect();
    assert!(left.is_empty(), "left on the token: {left:?}");
}
