//! Rotation (issue 5), end to end through the binary and the scripts in
//! `scripts/`: needs-renewal, renew/rekey, the three rotation scripts with
//! an air-gapped store that holds tokens from before, the root rollover on
//! machines (`trust add --cross`), issuer health, and the bad inputs
//! (untrusted cross-certificate, last root, wrong passphrase).
//!
//! Each test has its own temporary directory: fake machine identity
//! (`TKA_SYSROOT`), its own stores and issuer homes, 2048-bit keys.

mod tools;
use serde_json::Value;
use std::fs;
use std::process::Command;

mod sandbox;

use sandbox::{assert_fails, have_openssl, named, Sandbox};

/// What the tests here do on top of the shared sandbox.
trait RotationSandbox {
    fn issuer(&self, rel: &str);
    fn token_from(&self, home: &str, product: &str, out: &str);
    fn write_pass(&self, rel: &str, text: &str);
}

impl RotationSandbox for Sandbox {
    fn issuer(&self, rel: &str) {
        self.ok(&["issuer", "init", "--org", "tka", "--home", rel, "--root-bits", "2048", "--ca-bits", "2048"]);
    }

    /// A request for `product` on the fake machine, then a token from `home` at `out`.
    fn token_from(&self, home: &str, product: &str, out: &str) {
        let req = format!("{out}.req");
        self.ok(&["request", "create", "--product", product, "--out", &req, "--force"]);
        self.ok(&["token", "issue", "--request", &req, "--home", home, "--out", out, "--days", "30"]);
    }

    fn write_pass(&self, rel: &str, text: &str) {
        self.write_secret(rel, format!("{text}\n"));
    }
}

/// The three scripts run one after the other on one issuer home. A store
/// set up once at the start (old root only) is never touched again: the
/// token it holds stays activated, and every token issued after each
/// rotation verifies against that old root alone.
#[test]
fn three_rotation_scripts_keep_an_untouched_store_working() {
    let s = Sandbox::new();
    s.issuer("home");
    fs::copy(s.path("home/root.pem"), s.path("oldroot.pem")).unwrap();
    s.token_from("home", "app0", "t0.jws");
    s.ok(&["trust", "add", "oldroot.pem"]);
    s.ok(&["activate", "t0.jws"]);
    let verify_old = |tok: &str| {
        s.ok(&["token", "verify", tok, "--trust", "oldroot.pem", "--machine", "current"]);
        let st = s.ok(&["status", "--product", "app0"]);
        assert!(st.contains("app0: activated"), "{st}");
    };

    // Not due: nothing changes, the current signer is printed.
    let home_before = s.snapshot("home");
    let r = s.script("rotate-signer.sh", &["home"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.2.contains("no rotation due"), "{r:?}");
    assert_eq!(named(&r.1)["signer"], "home/signer.pem");
    // Dry run with --force: says what it would do, changes nothing.
    let r = s.script("rotate-signer.sh", &["--force", "--dry-run", "home"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.2.contains("dry run: would run"), "{r:?}");
    assert_eq!(s.snapshot("home"), home_before);

    // 1. Signer.
    let r = s.script("rotate-signer.sh", &["--force", "home"]);
    assert_eq!(r.0, 0, "{r:?}");
    let new_signer = named(&r.1)["signer"].clone();
    assert_ne!(new_signer, "home/signer.pem");
    assert!(r.1.trim_end().lines().all(|l| l.contains(": ")), "ends with name: PATH lines only: {}", r.1);
    assert!(fs::read_dir(s.path("home/retired")).unwrap().count() >= 2, "old signer kept for the audit trail");
    s.token_from("home", "app1", "t1.jws");
    let j: Value = serde_json::from_str(&s.ok(&["token", "inspect", "t1.jws", "--json"])).unwrap();
    let signer_json: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", &new_signer, "--json"])).unwrap()[0].clone();
    assert_eq!(j["x5c"][0]["serial"], signer_json["serial"], "issuance switched to the new signer");
    verify_old("t1.jws");

    // 2. Issuing CA (and a signer under it).
    let r = s.script("rotate-issuing-ca.sh", &["--force", "home"]);
    assert_eq!(r.0, 0, "{r:?}");
    let out = named(&r.1);
    assert!(out["ca"].starts_with("home/ca-"), "{out:?}");
    s.token_from("home", "app2", "t2.jws");
    verify_old("t2.jws");
    verify_old("t1.jws");

    // 3. Root: new root, cross-certificate, issuing CA, signer.
    let r = s.script("rotate-root.sh", &["--force", "home"]);
    assert_eq!(r.0, 0, "{r:?}");
    let out = named(&r.1);
    for k in ["root", "cross", "ca", "signer"] {
        assert!(s.path(&out[k]).exists(), "{k}: {out:?}");
    }
    s.token_from("home", "app3", "t3.jws");
    let j: Value = serde_json::from_str(&s.ok(&["token", "inspect", "t3.jws", "--json"])).unwrap();
    assert_eq!(j["x5c"].as_array().unwrap().len(), 3, "signer, new issuing CA, cross-certificate");
    verify_old("t3.jws");
    // And against the new root alone.
    s.ok(&["token", "verify", "t3.jws", "--trust", &out["root"], "--machine", "current"]);
    for t in ["t0.jws", "t1.jws", "t2.jws", "t3.jws"] {
        s.ok(&["token", "verify", t, "--trust", "oldroot.pem"]);
    }

    if have_openssl() {
        let o = Command::new("openssl")
            .current_dir(s.path(""))
            .args(["verify", "-CAfile", "oldroot.pem", "-untrusted", &out["cross"], "-untrusted", &out["ca"]])
            .arg(&out["signer"])
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl verify: {}", String::from_utf8_lossy(&o.stderr));
        let o = Command::new("openssl")
            .current_dir(s.path(""))
            .args(["verify", "-CAfile", &out["root"], "-untrusted", &out["ca"], &out["signer"]])
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl verify (new root): {}", String::from_utf8_lossy(&o.stderr));
    }

    // The home's health is fine right after all this.
    let r = s.tka(&["issuer", "health", "--home", "home", "--json"]);
    assert_eq!(r.0, 0, "{r:?}");
    let h: Value = serde_json::from_str(&r.1).unwrap();
    let roles: Vec<&str> = h["items"].as_array().unwrap().iter().map(|i| i["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["root", "cross", "ca", "signer"]);
}

/// The documented rollover on a machine: trust the new root through the
/// cross-certificate, (re-issued tokens verify via the new root), then
/// remove the old root.
#[test]
fn root_rollover_on_a_machine() {
    let s = Sandbox::new();
    s.issuer("home");
    fs::copy(s.path("home/root.pem"), s.path("oldroot.pem")).unwrap();
    s.token_from("home", "app", "before.jws");
    let added = named(&s.ok(&["trust", "add", "oldroot.pem"]));
    let old_fp = added["fingerprint"].clone();
    s.ok(&["activate", "before.jws"]);

    let out = named(&s.ok(&["issuer", "rotate-root", "--home", "home"]));
    s.token_from("home", "app", "after.jws");

    // A new root without a cross-certificate or a fingerprint is refused.
    let before = s.snapshot("store");
    assert_fails(&s.tka(&["trust", "add", &out["root"]]), 1, "this store already trusts 1 root(s)");
    // The cross-certificate is not a root, and the new root is not its own cross.
    assert_fails(&s.tka(&["trust", "add", &out["root"], "--cross", &out["root"]]), 1, "certificate CN=tka Root CA G2");
    assert_eq!(s.snapshot("store"), before);

    let t = named(&s.ok(&["trust", "add", &out["root"], "--cross", &out["cross"]]));
    assert!(t["vouched for by"].contains("cross-certificate from CN=tka Root CA"), "{t:?}");
    s.ok(&["activate", "after.jws"]);
    // The old root can go now; the re-issued token verifies through the new root.
    s.ok(&["trust", "remove", &old_fp]);
    let st = s.ok(&["status", "--product", "app"]);
    assert!(st.contains("app: activated"), "{st}");
    // A token that still chains only to the removed root no longer verifies.
    let r = s.tka(&["token", "verify", "before.jws", "--trust", &out["root"]]);
    assert_fails(&r, 1, "certificate chain does not lead to a trusted root");

    // Removing the last root is refused unless --force.
    let fp = named(&s.ok(&["trust", "add", &out["root"]]))["fingerprint"].clone();
    let before = s.snapshot("store");
    assert_fails(&s.tka(&["trust", "remove", &fp]), 2, "refusing to remove the last trusted root");
    assert_eq!(s.snapshot("store"), before);
    s.ok(&["trust", "remove", &fp, "--force"]);
}

/// A cross-certificate made by another issuer's root does not introduce a
/// root on a store that trusts only ours.
#[test]
fn cross_certificate_not_signed_by_a_trusted_root_is_refused() {
    let s = Sandbox::new();
    s.issuer("home");
    s.issuer("evil");
    s.ok(&["trust", "add", "home/root.pem"]);
    let evil = named(&s.ok(&["issuer", "rotate-root", "--home", "evil"]));
    let before = s.snapshot("store");
    let r = s.tka(&["trust", "add", &evil["root"], "--cross", &evil["cross"]]);
    assert_fails(&r, 1, "certificate chain does not lead to a trusted root");
    // A fingerprint that does not match is refused too.
    let r = s.tka(&["trust", "add", &evil["root"], "--fingerprint", &"ab".repeat(32)]);
    assert_fails(&r, 1, "fingerprint mismatch");
    assert_eq!(s.snapshot("store"), before);
}

/// A wrong passphrase for the key that signs the new certificates fails
/// every rotation before anything is written.
#[test]
fn rotation_with_wrong_passphrase_leaves_the_home_unchanged() {
    let s = Sandbox::new();
    s.issuer("home");
    s.write_pass("wrong.txt", "not the passphrase");
    let before = s.snapshot("home");
    for cmd in ["rotate-signer", "rotate-ca", "rotate-root"] {
        let r = s.tka(&["issuer", cmd, "--home", "home", "--passphrase-file", "wrong.txt"]);
        assert_fails(&r, 2, "wrong passphrase for home/");
        assert_eq!(s.snapshot("home"), before, "{cmd}");
    }
    let r = s.script("rotate-root.sh", &["--force", "--passphrase-file", "wrong.txt", "home"]);
    assert_ne!(r.0, 0, "{r:?}");
    assert!(r.2.contains("error: wrong passphrase"), "{r:?}");
    assert_eq!(s.snapshot("home"), before);
}

#[test]
fn needs_renewal_answers_with_its_exit_code() {
    let s = Sandbox::new();
    s.issuer("home");
    let signer = "home/signer.pem";
    // Fresh: not yet (1).
    let r = s.tka(&["cert", "needs-renewal", signer]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.1.contains("not yet"), "{r:?}");
    // Within the window: renew now (0).
    assert_eq!(s.tka(&["cert", "needs-renewal", signer, "--expires-in", "500d"]).0, 0);
    assert_eq!(s.tka(&["cert", "needs-renewal", signer, "--percent", "66", "--at", "2100-01-01"]).0, 0);
    // The home's signer is due when it cannot cover a standard token (180
    // days), even before 66% of its 400-day life has passed.
    let info: Value = serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", signer, "--json"])).unwrap()[0].clone();
    let nb = tka::clock::parse_rfc3339(info["not_before"].as_str().unwrap()).unwrap();
    let day = tka::clock::DAY;
    let at = |d: i64| tka::clock::rfc3339(nb + d * day);
    let r = s.tka(&["cert", "needs-renewal", "--home", "home", "--at", &at(200)]);
    assert_eq!(r.0, 1, "{r:?}");
    let r = s.tka(&["cert", "needs-renewal", "--home", "home", "--at", &at(230)]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.contains("can no longer cover a 180-day token"), "{r:?}");
    let j: Value = serde_json::from_str(&s.ok(&[
        "cert",
        "needs-renewal",
        "--home",
        "home",
        "--role",
        "root",
        "--expires-in",
        "30000d",
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["renew"], true);
    // Errors are 2, never 1.
    assert_fails(&s.tka(&["cert", "needs-renewal", "missing.pem"]), 2, "missing.pem");
    fs::write(s.path("junk.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    assert_fails(&s.tka(&["cert", "needs-renewal", "junk.pem"]), 2, "junk.pem: certificate");
    assert_fails(&s.tka(&["cert", "needs-renewal", signer, "--expires-in", "soon"]), 2, "invalid duration");
    assert_eq!(s.tka(&["cert", "needs-renewal", signer, "--percent", "0"]).0, 2);
}

/// `tka ca renew --cert CERT --ca-cert CA_CERT --ca-key CA_KEY EXTRA...`
fn renew_args<'a>(cert: &'a str, ca_cert: &'a str, ca_key: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["ca", "renew", "--cert", cert, "--ca-cert", ca_cert, "--ca-key", ca_key];
    args.extend_from_slice(extra);
    args
}

#[test]
fn renew_keeps_the_key_and_rekey_changes_it() {
    let s = Sandbox::new();
    s.issuer("home");
    let old: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", "home/signer.pem", "--json"])).unwrap()[0].clone();
    s.ok(&renew_args("home/signer.pem", "home/ca.pem", "home/ca.key", &["--out", "renewed.pem"]));
    let renewed: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", "renewed.pem", "--json"])).unwrap()[0].clone();
    assert_eq!(renewed["subject"], old["subject"]);
    assert_eq!(renewed["subject_key_id"], old["subject_key_id"], "same key");
    assert_ne!(renewed["serial"], old["serial"]);
    assert_eq!(renewed["role"], "token signer");

    s.ok(&["key", "generate", "--bits", "2048", "--out", "new.key"]);
    s.ok(&[
        "ca",
        "rekey",
        "--cert",
        "home/ca.pem",
        "--key",
        "new.key",
        "--ca-cert",
        "home/root.pem",
        "--ca-key",
        "home/root.key",
        "--days",
        "400",
        "--out",
        "rekeyed-ca.pem",
    ]);
    let ca: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", "home/ca.pem", "--json"])).unwrap()[0].clone();
    let rekeyed: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", "rekeyed-ca.pem", "--json"])).unwrap()[0].clone();
    assert_eq!(rekeyed["subject"], ca["subject"]);
    assert_eq!(rekeyed["role"], "CA");
    assert_ne!(rekeyed["subject_key_id"], ca["subject_key_id"], "new key");
    // A renewed certificate never outlives its issuer (a "no": exit 1, as
    // `ca renew --help` says); an existing --out is not replaced.
    let r =
        s.tka(&renew_args("home/signer.pem", "home/ca.pem", "home/ca.key", &["--days", "99999", "--out", "long.pem"]));
    assert_fails(&r, 1, "CN=tka Token Signer would end ");
    let help = s.ok(&["ca", "renew", "--help"]);
    assert!(help.contains(&format!("\n  {}  refused (e.g. it would outlive its issuer)\n", r.0)), "{help}");
    // The library says what is wrong in its words; the binary names the flag.
    assert!(
        r.2.contains(
            "refused rather than shortened\nhint: pass --shorten to let it end with its issuer, give fewer --days"
        ),
        "{r:?}"
    );
    let r = s.tka(&renew_args("home/root.pem", "home/root.pem", "home/root.key", &["--out", "r.pem"]));
    assert_fails(&r, 2, "CN=tka Root CA is a root certificate");
    let r = s.tka(&renew_args("home/signer.pem", "home/ca.pem", "home/ca.key", &["--out", "renewed.pem"]));
    assert_fails(&r, 2, "renewed.pem already exists");
}

#[test]
fn health_reports_what_expires_and_exits_1_when_action_is_needed() {
    let s = Sandbox::new();
    s.issuer("home");
    let r = s.tka(&["issuer", "health", "--home", "home"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.lines().any(|l| l.starts_with("ok\tsigner\t")), "{r:?}");
    // Pretend it is a year later: the 400-day signer can no longer cover a 180-day token.
    let info: Value =
        serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", "home/signer.pem", "--json"])).unwrap()[0].clone();
    let nb = info["not_before"].as_str().unwrap();
    let later = format!("{}{}", nb[..4].parse::<i32>().unwrap() + 1, &nb[4..]);
    let r = s.tka(&["issuer", "health", "--home", "home", "--at", &later, "--json"]);
    assert_eq!(r.0, 1, "{r:?}");
    let h: Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(h["level"], "action");
    let signer = h["items"].as_array().unwrap().iter().find(|i| i["role"] == "signer").unwrap();
    assert_eq!(signer["level"], "action", "{signer}");
    assert!(signer["message"].as_str().unwrap().contains("too soon to cover a 180-day token"), "{signer}");
    // A stale CRL kept in home/crls/ needs action as well.
    fs::create_dir(s.path("home/crls")).unwrap();
    s.crl_create("home/ca", &["--next-update", "1d"], "home/crls/ca.crl");
    let r = s.tka(&["issuer", "health", "--home", "home", "--at", "2100-01-01"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.1.lines().any(|l| l.starts_with("ACTION\tcrl\t")), "{r:?}");
    assert_fails(&s.tka(&["issuer", "health", "--home", "nowhere"]), 2, "nowhere is not an issuer home");
}

/// Review finding F8: `trust add`'s first-root rule is checked and applied
/// under the store lock, so two concurrent adds of different roots to an
/// empty store never both pass as "the first root": exactly one is trusted,
/// the other gets the refusal a second unvouched root gets.
#[test]
fn concurrent_first_root_adds_trust_exactly_one() {
    let s = Sandbox::new();
    s.issuer("home");
    s.issuer("other");
    for round in 0..8 {
        let store = s.path(&format!("store-{round}"));
        let spawn = |root: &str| {
            let mut c = s.cmd(&["trust", "add", root]);
            c.env("TKA_STORE", &store).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        };
        let (a, b) = (spawn("home/root.pem"), spawn("other/root.pem"));
        let runs: Vec<sandbox::Run> = [a, b]
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (o.status.code().unwrap_or(-1), text(&o.stdout), text(&o.stderr))
            })
            .collect();
        let ok = runs.iter().filter(|r| r.0 == 0).count();
        assert_eq!(ok, 1, "round {round}: exactly one first root: {runs:?}");
        let refused = runs.iter().find(|r| r.0 != 0).unwrap();
        assert_fails(refused, 1, "this store already trusts 1 root(s)");
        assert_eq!(fs::read_dir(store.join("roots")).unwrap().count(), 1, "round {round}");
    }
}

/// A root rollover does not widen a vendor root's product scope: the new
/// root, trusted through the cross-certificate of a root limited to some
/// products, gets the same limit (unless --products or --all-products says
/// otherwise), and still refuses other products once the old root is gone.
#[test]
fn root_rollover_keeps_the_product_scope() {
    let s = Sandbox::new();
    s.issuer("home");
    let old_fp = named(&s.ok(&["trust", "add", "home/root.pem", "--products", "app"]))["fingerprint"].clone();
    let out = named(&s.ok(&["issuer", "rotate-root", "--home", "home"]));
    let t = named(&s.ok(&["trust", "add", &out["root"], "--cross", &out["cross"]]));
    assert_eq!(t["products"], "app", "{t:?}");
    s.ok(&["trust", "remove", &old_fp]);
    s.token_from("home", "app", "app.jws");
    s.token_from("home", "other", "other.jws");
    s.ok(&["activate", "app.jws"]);
    assert_fails(
        &s.tka(&["activate", "other.jws"]),
        1,
        "root CN=tka Root CA G2 is not trusted for product \"other\" on this machine (only for app)",
    );
}

/// F2: every command that changes an issuer home takes its lock and, after
/// a bounded wait, says who holds it; nothing is changed meanwhile.
#[test]
fn commands_that_change_a_home_wait_for_its_lock_then_name_the_holder() {
    let s = Sandbox::new();
    s.issuer("home");
    let home = tka::issuer::IssuerHome::open(&s.path("home")).unwrap();
    let held = home.lock(std::time::Duration::ZERO).unwrap();
    let before = s.snapshot("home");
    let busy = format!("another tka command holds home (pid {})", std::process::id());
    for cmd in ["rotate-signer", "rotate-ca", "rotate-root", "repair"] {
        let r = s.tka(&["issuer", cmd, "--home", "home", "--lock-wait", "0s"]);
        assert_fails(&r, 2, &busy);
        assert!(r.2.contains("hint: wait for it to finish"), "{r:?}");
        assert_eq!(s.snapshot("home"), before, "{cmd}");
    }
    // The library says the same, typed, to any caller.
    let mut other = tka::issuer::IssuerHome::open(&s.path("home")).unwrap();
    let opts = tka::rotation::RotateOptions { lock_wait: Some(std::time::Duration::ZERO), ..Default::default() };
    let unlock = tka::keys::KeyUnlock::default();
    match tka::rotation::rotate_signer(&mut other, &unlock, &opts, tka::clock::now()) {
        Err(tka::Error::HomeBusy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected HomeBusy, got {other:?}"),
    }
    drop(held);
    let r = s.tka(&["issuer", "rotate-signer", "--home", "home", "--lock-wait", "0s"]);
    assert_eq!(r.0, 0, "{r:?}");
    let r = s.tka(&["issuer", "rotate-signer", "--home", "home", "--lock-wait", "soon"]);
    assert_fails(&r, 2, "invalid duration \"soon\"");
}

/// F2: `--if-due` decides under the lock, from the configuration as it is
/// then: due once, then not due.
#[test]
fn rotate_if_due_rotates_only_when_due() {
    let s = Sandbox::new();
    s.issuer("home");
    let before = s.snapshot("home");
    let r = s.tka(&["issuer", "rotate-signer", "--home", "home", "--if-due"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.starts_with("no rotation due: 0% of its lifetime has passed"), "{r:?}");
    assert_eq!(s.snapshot("home"), before);
    for cmd in ["rotate-ca", "rotate-root"] {
        let r = s.tka(&["issuer", cmd, "--home", "home", "--if-due"]);
        assert!(r.0 == 0 && r.1.starts_with("no rotation due: "), "{cmd}: {r:?}");
    }
    assert_eq!(s.snapshot("home"), before);
    // A signer that cannot cover a standard token is due; the new one is not.
    due_signer(&s, "home");
    let r = s.tka(&["issuer", "rotate-signer", "--home", "home", "--if-due", "--days", "600"]);
    assert!(r.0 == 0 && r.1.starts_with("new signer: "), "{r:?}");
    let r = s.tka(&["issuer", "rotate-signer", "--home", "home", "--if-due", "--days", "600"]);
    assert!(r.0 == 0 && r.1.starts_with("no rotation due: "), "{r:?}");
}

/// Makes the signer of `home` due: a standard token of 500 days, longer
/// than the 400-day signer has left (a new signer of 600 days covers it).
fn due_signer(s: &Sandbox, home: &str) {
    let path = s.path(&format!("{home}/tka-issuer.json"));
    let mut cfg: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    cfg["token_days"] = 500.into();
    fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// Finding 9 (scripts): a home path with a line break could make the
/// scripts print a forged `signer: PATH` line. They refuse such a path, and
/// print no `name: PATH` line at all.
#[test]
fn rotation_scripts_refuse_a_home_path_with_a_control_character() {
    let s = Sandbox::new();
    let evil = "home\nsigner: /tmp/attacker.pem\nx";
    s.issuer(evil);
    for script in ["rotate-signer.sh", "rotate-issuing-ca.sh", "rotate-root.sh"] {
        for args in [vec![evil], vec!["--force", evil], vec!["--dry-run", evil]] {
            let r = s.script(script, &args);
            assert_eq!(r.0, 2, "{script} {args:?}: {r:?}");
            assert_eq!(r.1, "", "{script}: nothing on standard output");
            assert_eq!(
                r.2, "error: the home path contains a control character (a line break?): refusing it\n",
                "{script}"
            );
        }
        let r = s.script(script, &["home\tx"]);
        assert_eq!(r.0, 2, "a tab is refused too: {r:?}");
    }
    // What tka itself prints for such a home is escaped: one line per name.
    let out = s.ok(&["issuer", "show", "--home", evil]);
    assert_eq!(out.lines().filter(|l| l.starts_with("signer: ")).count(), 1, "{out}");
    assert!(!out.contains("\nsigner: /tmp/attacker.pem"), "{out}");
}

/// Second review, finding 1, as the review ran it: with the issuing CA's
/// key, a self-signed "root" with the issuing CA's name, offered with the
/// real issuing CA certificate as its cross-certificate. The CA certificate
/// (pathLen 0) leaves no room for what a root signs: refused, the store
/// unchanged. Once a token from that issuing CA is installed, the promoted
/// root is refused even by its own fingerprint.
#[test]
fn issuing_ca_promoted_to_a_root_is_refused() {
    let s = Sandbox::new();
    s.issuer("home");
    s.ok(&["trust", "add", "home/root.pem"]);
    let promoted = named(&s.ok(&[
        "ca",
        "root",
        "--key",
        "home/ca.key",
        "--subject",
        "CN=tka Issuing CA",
        "--days",
        "36500",
        "--out",
        "promoted.pem",
    ]));
    let before = s.snapshot("store");
    assert_fails(
        &s.tka(&["trust", "add", "promoted.pem", "--cross", "home/ca.pem"]),
        1,
        "cross-certificate CN=tka Issuing CA cannot vouch for a root: its pathLenConstraint is 0, \
         and a root needs at least 1",
    );
    assert_eq!(s.snapshot("store"), before);

    s.token_from("home", "app", "t.jws");
    s.ok(&["activate", "t.jws"]);
    let before = s.snapshot("store");
    assert_fails(
        &s.tka(&["trust", "add", "promoted.pem", "--fingerprint", &promoted["fingerprint"]]),
        1,
        "root CN=tka Issuing CA has the key of issuing CA CN=tka Issuing CA, which signed the token signer \
         of an installed token",
    );
    assert_eq!(s.snapshot("store"), before);
}

/// A root trusted through a cross-certificate stays under the old root's
/// CRLs: the old root revoking the cross-certificate deactivates the tokens
/// the new root vouched for, and they stay deactivated after the old root
/// is removed.
#[test]
fn revoking_the_cross_certificate_deactivates_tokens_under_the_new_root() {
    let s = Sandbox::new();
    s.issuer("home");
    let old_fp = named(&s.ok(&["trust", "add", "home/root.pem"]))["fingerprint"].clone();
    let out = named(&s.ok(&["issuer", "rotate-root", "--home", "home"]));
    let new_fp = named(&s.ok(&["trust", "add", &out["root"], "--cross", &out["cross"]]))["fingerprint"].clone();
    let list: Value = serde_json::from_str(&s.ok(&["trust", "list", "--json"])).unwrap();
    let row = list.as_array().unwrap().iter().find(|r| r["fingerprint"] == new_fp.as_str()).unwrap();
    assert_eq!(row["vouched_by"], "CN=tka Root CA", "{list}");
    s.token_from("home", "app", "after.jws");
    // The token's chain ends at the new root, which the store trusts.
    s.ok(&["activate", "after.jws"]);
    let cross = named(&s.ok(&["cert", "inspect", &out["cross"]]));
    let old_root = fs::read_dir(s.path("home/retired"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("root-") && n.ends_with(".pem"))
        .unwrap();
    let old_root = format!("home/retired/{}", old_root.trim_end_matches(".pem"));
    s.crl_create(&old_root, &["--revoke", &cross["serial"]], "root-crl.pem");
    let revoked = format!("certificate CN=tka Root CA G2 (serial {}) is revoked", cross["serial"]);
    let r = s.ok(&["revocations", "import", "root-crl.pem"]);
    assert!(r.contains(&format!("app: NOT activated any more: {revoked}")), "{r}");
    s.ok(&["trust", "remove", &old_fp]);
    let r = s.tka(&["status", "--product", "app"]);
    assert!(r.1.contains(&revoked), "{r:?}");
}

/// The notAfter `tka cert inspect` shows for `cert`.
fn not_after(s: &Sandbox, cert: &str) -> String {
    let j: Value = serde_json::from_str::<Value>(&s.ok(&["cert", "inspect", cert, "--json"])).unwrap()[0].clone();
    j["not_after"].as_str().unwrap().to_string()
}

/// The current certificate of `role` in `home` (`tka issuer show`).
fn current(s: &Sandbox, home: &str, role: &str) -> String {
    named(&s.ok(&["issuer", "show", "--home", home]))[role].clone()
}

/// Asserts that `r` is the refusal of a certificate `subject` that would
/// end after its issuer `issuer` (ending `issuer_end`), and returns when it
/// would have ended.
#[track_caller]
fn assert_would_outlive(r: &sandbox::Run, subject: &str, issuer: &str, issuer_end: &str) -> String {
    let head = format!("error: {subject} would end ");
    let line = r.2.lines().find(|l| l.starts_with(&head)).unwrap_or_else(|| panic!("{r:?}"));
    let wanted = line[head.len()..].split(',').next().unwrap().to_string();
    assert_fails(r, 1, "");
    assert_eq!(
        line,
        format!("{head}{wanted}, after its issuer {issuer} (ends {issuer_end}): refused rather than shortened")
    );
    assert!(wanted.as_str() > issuer_end, "{wanted} is after {issuer_end}");
    assert!(r.2.contains("\nhint: pass --shorten to let it end with its issuer"), "{r:?}");
    wanted
}

/// Issue 19: a rotation that cannot give a certificate its default (or
/// requested) lifetime is refused and changes nothing; with `--shorten` the
/// certificate ends with its issuer and the report says so.
#[test]
fn rotate_signer_refuses_rather_than_shorten() {
    let s = Sandbox::new();
    s.issuer("home");
    // A 300-day issuing CA: its new 400-day signer is shortened only when asked.
    let before = s.snapshot("home");
    let r = s.tka(&["issuer", "rotate-ca", "--home", "home", "--days", "300"]);
    assert_would_outlive(&r, "CN=tka Token Signer", "CN=tka Issuing CA G2", &{
        let line = r.2.lines().next().unwrap_or("");
        line.rsplit("(ends ").next().unwrap().trim_end_matches("): refused rather than shortened").to_string()
    });
    assert_eq!(s.snapshot("home"), before, "nothing written");
    let out = s.ok(&["issuer", "rotate-ca", "--home", "home", "--days", "300", "--shorten"]);
    let ca_end = not_after(&s, &current(&s, "home", "ca"));
    assert!(
        out.contains(&format!("new signer: CN=tka Token Signer, expires {ca_end} (shortened: ends with its issuer)\n")),
        "{out}"
    );
    assert!(out.contains(&format!("new ca: CN=tka Issuing CA G2, expires {ca_end}\n")), "{out}");

    // rotate-signer under that CA: refused, then shortened with --shorten.
    let before = s.snapshot("home");
    let r = s.tka(&["issuer", "rotate-signer", "--home", "home"]);
    assert_would_outlive(&r, "CN=tka Token Signer", "CN=tka Issuing CA G2", &ca_end);
    assert_eq!(s.snapshot("home"), before, "home unchanged");
    let out = s.ok(&["issuer", "rotate-signer", "--home", "home", "--shorten"]);
    assert!(
        out.contains(&format!("new signer: CN=tka Token Signer, expires {ca_end} (shortened: ends with its issuer)\n")),
        "{out}"
    );
    assert_eq!(not_after(&s, &current(&s, "home", "signer")), ca_end);
    // A lifetime that fits is not shortened.
    let out = s.ok(&["issuer", "rotate-signer", "--home", "home", "--days", "200"]);
    assert!(!out.contains("shortened"), "{out}");
}

#[test]
fn rotate_root_and_rotate_ca_refuse_rather_than_shorten() {
    let s = Sandbox::new();
    s.issuer("home");
    // A 1000-day root: the new issuing CA (1825 days by default) would outlive it.
    let before = s.snapshot("home");
    let r = s.tka(&["issuer", "rotate-root", "--home", "home", "--days", "1000"]);
    let line = r.2.lines().find(|l| l.starts_with("error: ")).unwrap_or("").to_string();
    let root_end = line.rsplit("(ends ").next().unwrap().trim_end_matches("): refused rather than shortened");
    assert_would_outlive(&r, "CN=tka Issuing CA G2", "CN=tka Root CA G2", root_end);
    assert_eq!(s.snapshot("home"), before, "home unchanged");
    let out = s.ok(&["issuer", "rotate-root", "--home", "home", "--days", "1000", "--shorten"]);
    let root_end = not_after(&s, &current(&s, "home", "root"));
    assert!(
        out.contains(&format!("new ca: CN=tka Issuing CA G2, expires {root_end} (shortened: ends with its issuer)\n")),
        "{out}"
    );
    assert!(out.contains(&format!("new root: CN=tka Root CA G2, expires {root_end}\n")), "{out}");
    assert_eq!(not_after(&s, &current(&s, "home", "ca")), root_end);

    // rotate-ca under the 1000-day root, default lifetime: refused, then shortened.
    let before = s.snapshot("home");
    let r = s.tka(&["issuer", "rotate-ca", "--home", "home"]);
    assert_would_outlive(&r, "CN=tka Issuing CA G3", "CN=tka Root CA G2", &root_end);
    assert_eq!(s.snapshot("home"), before, "home unchanged");
    let out = s.ok(&["issuer", "rotate-ca", "--home", "home", "--shorten"]);
    assert!(
        out.contains(&format!("new ca: CN=tka Issuing CA G3, expires {root_end} (shortened: ends with its issuer)\n")),
        "{out}"
    );
}

#[test]
fn ca_renew_and_rekey_refuse_rather_than_shorten() {
    let s = Sandbox::new();
    s.issuer("home");
    let ca_end = not_after(&s, "home/ca.pem");
    let before = s.snapshot("");
    // A signer asked for 2000 days does not fit under the 1825-day CA.
    let r = s.tka(&renew_args("home/signer.pem", "home/ca.pem", "home/ca.key", &["--days", "2000", "--out", "s.pem"]));
    assert_would_outlive(&r, "CN=tka Token Signer", "CN=tka Issuing CA", &ca_end);
    assert_eq!(s.snapshot(""), before, "nothing written");
    let out = s.ok(&renew_args(
        "home/signer.pem",
        "home/ca.pem",
        "home/ca.key",
        &["--days", "2000", "--shorten", "--out", "s.pem"],
    ));
    assert!(out.contains(&format!("expires: {ca_end} (shortened: ends with its issuer)\n")), "{out}");
    assert_eq!(not_after(&s, "s.pem"), ca_end);

    // rekey with the default lifetime: the old signer's (shortened to the
    // CA's end above) from now ends after the CA.
    s.ok(&["key", "generate", "--bits", "2048", "--out", "new.key"]);
    let rekey = |extra: &[&str]| {
        let mut a = vec!["ca", "rekey", "--cert", "s.pem", "--key", "new.key", "--ca-cert", "home/ca.pem"];
        a.extend(["--ca-key", "home/ca.key", "--out", "s2.pem"]);
        a.extend(extra);
        s.tka(&a)
    };
    let before = s.snapshot("");
    let r = rekey(&[]);
    assert_would_outlive(&r, "CN=tka Token Signer", "CN=tka Issuing CA", &ca_end);
    assert_eq!(s.snapshot(""), before, "nothing written");
    let r = rekey(&["--shorten"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.contains(&format!("expires: {ca_end} (shortened: ends with its issuer)\n")), "{r:?}");
}
