//! Offline revocation (issue 5), end to end through the binary: CRLs
//! (`tka crl create`, openssl interop, `revocations import`, `token verify
//! --crl`) and signed token revocation lists (`tka ledger revoke` →
//! `tka revocations create` → `tka revocations import`), each de-activating
//! exactly what it should; and the bad inputs (wrong CA, untrusted signer,
//! rollback, stale data with `--require-fresh`), each leaving the store
//! unchanged.

mod tools;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;

mod sandbox;

use sandbox::{assert_fails, have_openssl, named, Sandbox, Snapshot, MACHINE_B};

/// What the tests here do on top of the shared sandbox.
trait RevocationSandbox {
    fn issuer(&self, rel: &str, org: &str);
    fn activated(&self, home: &str, product: &str) -> String;
    fn active(&self) -> Vec<String>;
    fn store_snapshot(&self) -> Snapshot;
    fn serial_of(&self, cert: &str) -> String;
}

impl RevocationSandbox for Sandbox {
    fn issuer(&self, rel: &str, org: &str) {
        self.ok(&["issuer", "init", "--home", rel, "--org", org, "--root-bits", "2048", "--ca-bits", "2048"]);
    }

    /// Issues a token for `product` on the fake machine from `home` (recorded
    /// in its ledger), activates it, and returns its serial.
    fn activated(&self, home: &str, product: &str) -> String {
        let tok = format!("{product}.jws");
        self.ok(&["request", "create", "--product", product, "--out", "req.json", "--force"]);
        let out = self.ok(&["token", "issue", "--request", "req.json", "--home", home, "--out", &tok, "--days", "30"]);
        self.ok(&["activate", &tok]);
        named(&out)["serial"].clone()
    }

    /// Products activated now, sorted.
    fn active(&self) -> Vec<String> {
        let r = self.tka(&["status", "--json"]);
        let rows: Value = serde_json::from_str(&r.1).unwrap_or_else(|_| panic!("{r:?}"));
        let mut v: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["activated"] == true)
            .map(|r| r["product"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    /// The store, but for its lock file and clock high-water mark, which change on every command.
    fn store_snapshot(&self) -> Snapshot {
        let mut m = self.snapshot("store");
        m.retain(|p, _| !p.ends_with("state.json") && !p.ends_with("lock"));
        m
    }

    fn serial_of(&self, cert: &str) -> String {
        let j: Value =
            serde_json::from_str::<Value>(&self.ok(&["cert", "inspect", cert, "--json"])).unwrap()[0].clone();
        j["serial"].as_str().unwrap().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// A CRL from the issuing CA revoking the first signer de-activates exactly
/// the tokens that signer made; a token revocation list from the ledger
/// then de-activates exactly the token it names. Rollback, an untrusted
/// signer and the wrong CA are refused with the store unchanged.
/// A machine trusting `home`'s root with `app1` activated by a signer that
/// has since been rotated out; returns the sandbox and that signer's serial.
fn app1_under_a_replaced_signer() -> (Sandbox, String) {
    let s = Sandbox::with_machine(MACHINE_B);
    s.issuer("home", "Example");
    s.ok(&["trust", "add", "home/root.pem"]);
    let old_signer_serial = s.serial_of("home/signer.pem");
    s.activated("home", "app1");
    s.ok(&["issuer", "rotate-signer", "--home", "home"]);
    (s, old_signer_serial)
}

#[test]
fn crl_and_token_list_deactivate_exactly_what_they_should() {
    let (s, old_signer_serial) = app1_under_a_replaced_signer();
    let app2 = s.activated("home", "app2");
    s.activated("home", "app3");
    assert_eq!(s.active(), ["app1", "app2", "app3"]);

    // The CRL: the issuing CA revokes the old signer. An earlier CRL of the
    // same CA (a lower number: numbers only increase) is kept for later.
    s.crl_create("home/ca", &[], "old-crl.pem");
    let revoke = format!("{old_signer_serial}:keyCompromise");
    s.crl_create("home/ca", &["--revoke", &revoke], "crl.pem");
    // `token verify --crl` uses it without installing it.
    let r = s.tka(&["token", "verify", "app1.jws", "--trust", "home/root.pem", "--crl", "crl.pem"]);
    assert_fails(&r, 1, "certificate CN=Example Token Signer");
    assert!(r.2.contains("is revoked"), "{r:?}");

    // An issuing-CA CRL needs the CA certificate to be checked against the root.
    let before = s.store_snapshot();
    assert_fails(
        &s.tka(&["revocations", "import", "crl.pem"]),
        1,
        "CRL refused: the CRL of CN=Example Issuing CA is not signed",
    );
    // The wrong CA: another issuer's CA, with the same name, signs a CRL.
    s.issuer("evil", "Example");
    s.crl_create("evil/ca", &["--revoke", &revoke], "evil-crl.pem");
    let r = s.tka(&["revocations", "import", "evil-crl.pem", "--ca-cert", "evil/ca.pem"]);
    assert_fails(
        &r,
        1,
        "CRL refused: the CA certificate that signed the CRL of CN=Example Issuing CA is not trusted here",
    );
    // A CRL signed by another CA than its own certificate names.
    let r = s.tka(&["revocations", "import", "evil-crl.pem", "--ca-cert", "home/ca.pem"]);
    assert_fails(&r, 1, "CRL refused");
    assert_eq!(s.store_snapshot(), before);
    assert_eq!(s.active(), ["app1", "app2", "app3"]);

    let r = s.ok(&["revocations", "import", "crl.pem", "--ca-cert", "home/ca.pem"]);
    assert!(r.contains("installed: CRL of CN=Example Issuing CA"), "{r}");
    assert!(r.contains("app1: NOT activated any more: certificate CN=Example Token Signer"), "{r}");
    assert!(r.contains("app2: still activated") && r.contains("app3: still activated"), "{r}");
    assert_eq!(s.active(), ["app2", "app3"]);

    // An older CRL (lower cRLNumber) from the same CA is a rollback.
    let before = s.store_snapshot();
    let r = s.tka(&["revocations", "import", "old-crl.pem", "--ca-cert", "home/ca.pem"]);
    assert_fails(&r, 1, "revocation list sequence ");
    assert!(r.2.contains(" is older than the installed"), "{r:?}");
    // And `crl create` never makes a CRL numbered at or below the last one.
    assert_fails(
        &s.tka(&[
            "crl",
            "create",
            "--ca-cert",
            "home/ca.pem",
            "--ca-key",
            "home/ca.key",
            "--number",
            "7",
            "--out",
            "x.pem",
        ]),
        1,
        "CRL number 7 is not above ",
    );
    assert_eq!(s.store_snapshot(), before);

    // The token revocation list, from the ledger.
    s.ok(&["ledger", "revoke", &app2, "--reason", "laptop stolen", "--home", "home"]);
    let out = named(&s.ok(&["revocations", "create", "--home", "home", "--out", "r1.jws"]));
    assert_eq!(out["sequence"], "1");
    assert!(out["revoked tokens"].starts_with("1 (1 from the ledger)"), "{out:?}");
    let r = s.ok(&["revocations", "import", "r1.jws"]);
    assert!(r.contains("installed: token revocation list"), "{r}");
    assert!(r.contains(&format!("app2: NOT activated any more: token {app2} is revoked")), "{r}");
    assert_eq!(s.active(), ["app3"]);
    let st = s.tka(&["status", "--product", "app2"]);
    assert_eq!(st.0, 1, "{st:?}");

    // A newer list replaces it; the older one is a rollback afterwards.
    s.ok(&["revocations", "create", "--home", "home", "--out", "r2.jws"]);
    s.ok(&["revocations", "import", "r2.jws"]);
    let before = s.store_snapshot();
    let state_before = fs::read_to_string(s.path("store/state.json")).unwrap();
    let r = s.tka(&["revocations", "import", "r1.jws"]);
    assert_fails(&r, 1, "revocation list sequence 1 is older than the installed 2: refusing rollback");
    assert_eq!(s.store_snapshot(), before);
    let state: Value = serde_json::from_str(&fs::read_to_string(s.path("store/state.json")).unwrap()).unwrap();
    let state0: Value = serde_json::from_str(&state_before).unwrap();
    assert_eq!(state["revocation_seq"], state0["revocation_seq"]);

    // A list signed under a root this machine does not trust.
    s.ok(&["revocations", "create", "--home", "evil", "--serial", "00ff", "--out", "evil.jws"]);
    assert_fails(
        &s.tka(&["revocations", "import", "evil.jws"]),
        1,
        "certificate chain does not lead to a trusted root",
    );
    // A token is not a revocation list.
    assert_fails(&s.tka(&["revocations", "import", "app3.jws"]), 1, "wrong typ");
    assert_eq!(s.store_snapshot(), before);
    assert_eq!(s.active(), ["app3"]);

    // What is installed.
    let l: Value = serde_json::from_str(&s.ok(&["revocations", "list", "--json"])).unwrap();
    let kinds: Vec<&str> = l.as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["crl", "list"]);
    assert_eq!(l[1]["number"], "2");
    assert_eq!(l[1]["problem"], Value::Null);
}

/// A root's CRL revoking the issuing CA takes everything under it down;
/// openssl verifies both CRLs and sees the right authority key identifier.
#[test]
fn crls_verify_with_openssl_and_a_root_crl_revokes_the_issuing_ca() {
    let s = Sandbox::with_machine(MACHINE_B);
    s.issuer("home", "Example");
    s.ok(&["trust", "add", "home/root.pem"]);
    s.activated("home", "app");
    let signer = s.serial_of("home/signer.pem");
    let ca = s.serial_of("home/ca.pem");
    s.crl_create("home/ca", &["--revoke", &signer], "ca-crl.pem");
    let revoke = format!("{ca}:cACompromise");
    s.crl_create("home/root", &["--revoke", &revoke], "root-crl.pem");

    if have_openssl() {
        let mut bundle = fs::read_to_string(s.path("home/ca.pem")).unwrap();
        bundle += &fs::read_to_string(s.path("home/root.pem")).unwrap();
        fs::write(s.path("bundle.pem"), bundle).unwrap();
        let dir = s.path("");
        let (ok, out) = openssl(&dir, &["crl", "-in", "ca-crl.pem", "-noout", "-verify", "-CAfile", "bundle.pem"]);
        assert!(ok && out.contains("verify OK"), "{out}");
        let (ok, out) = openssl(&dir, &["crl", "-in", "root-crl.pem", "-noout", "-verify", "-CAfile", "home/root.pem"]);
        assert!(ok && out.contains("verify OK"), "{out}");
        // The CRL's authority key identifier is the issuing CA's own key id.
        let (_, crl_text) = openssl(&dir, &["crl", "-in", "ca-crl.pem", "-noout", "-text"]);
        let (_, ca_text) = openssl(&dir, &["x509", "-in", "home/ca.pem", "-noout", "-text"]);
        let after = |t: &str, label: &str| {
            let mut lines = t.lines().skip_while(|l| !l.contains(label));
            lines.next();
            lines.next().unwrap_or("").trim().trim_start_matches("keyid:").to_string()
        };
        assert_eq!(after(&crl_text, "Authority Key Identifier"), after(&ca_text, "Subject Key Identifier"));
        assert!(crl_text.contains(&signer), "{crl_text}");
        // openssl checks a chain against the CRLs too.
        fs::write(
            s.path("crls.pem"),
            fs::read_to_string(s.path("ca-crl.pem")).unwrap() + &fs::read_to_string(s.path("root-crl.pem")).unwrap(),
        )
        .unwrap();
        let (ok, out) = openssl(
            &dir,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "home/root.pem",
                "-CRLfile",
                "crls.pem",
                "-untrusted",
                "home/ca.pem",
                "home/signer.pem",
            ],
        );
        assert!(!ok && out.contains("revoked"), "{out}");
    }

    // The root's CRL is checked against the trusted root itself (no --ca-cert needed).
    let r = s.ok(&["revocations", "import", "root-crl.pem"]);
    assert!(r.contains("app: NOT activated any more: certificate CN=Example Issuing CA"), "{r}");
    assert!(s.active().is_empty());
}

/// Stale data (past next-update) is installed with a warning by default and
/// refused with `--require-fresh`, leaving the store unchanged.
#[test]
fn stale_revocation_data_warns_or_fails_with_require_fresh() {
    let s = Sandbox::with_machine(MACHINE_B);
    s.issuer("home", "Example");
    s.ok(&["trust", "add", "home/root.pem"]);
    s.crl_create("home/root", &["--next-update", "1s"], "crl.pem");
    s.ok(&[
        "revocations",
        "create",
        "--home",
        "home",
        "--next-update",
        "1s",
        "--serial",
        "abcd:test",
        "--out",
        "r.jws",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2100));

    let before = s.store_snapshot();
    assert_fails(
        &s.tka(&["revocations", "import", "crl.pem", "--require-fresh"]),
        1,
        "CRL of CN=Example Root CA is stale",
    );
    let r = s.tka(&["revocations", "import", "r.jws", "--require-fresh"]);
    assert_fails(&r, 1, "token revocation list");
    assert!(r.2.contains("is stale"), "{r:?}");
    assert_eq!(s.store_snapshot(), before);

    for f in ["crl.pem", "r.jws"] {
        let r = s.tka(&["revocations", "import", f]);
        assert_eq!(r.0, 0, "{r:?}");
        assert!(r.2.starts_with("warning: ") && r.2.contains("is stale"), "{r:?}");
    }
    assert_eq!(s.tka(&["revocations", "list"]).0, 0);
    let r = s.tka(&["revocations", "list", "--require-fresh"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.1.contains("STALE"), "{r:?}");
}

/// The list id of an issuer home (`HOME/revocations.json`).
fn list_id(s: &Sandbox, home: &str) -> String {
    let j: Value = serde_json::from_str(&s.read(&format!("{home}/revocations.json"))).unwrap();
    j["list_id"].as_str().unwrap().to_string()
}

/// The store's recorded revocation sequences.
fn revocation_seq(s: &Sandbox) -> Value {
    let state: Value = serde_json::from_str(&s.read("store/state.json")).unwrap();
    state["revocation_seq"].clone()
}

/// Review finding F6: list ids are bound to the root a list is accepted
/// under. In a store trusting two issuers, the second publishes a list with
/// the first's id and a huge sequence: it is installed as the second's own
/// list, the first's list stays in force, and the first's next list still
/// imports.
#[test]
fn another_issuers_list_with_the_same_id_neither_replaces_nor_blocks() {
    let s = Sandbox::with_machine(MACHINE_B);
    s.issuer("home", "Example");
    s.issuer("evil", "Evil");
    let home_fp = named(&s.ok(&["trust", "add", "home/root.pem"]))["fingerprint"].clone();
    let evil_fp = s.ok(&["cert", "inspect", "evil/root.pem", "--json"]);
    let evil_fp = serde_json::from_str::<Value>(&evil_fp).unwrap()[0]["fingerprint"].as_str().unwrap().to_string();
    s.ok(&["trust", "add", "evil/root.pem", "--fingerprint", &evil_fp]);
    let app = s.activated("home", "app");
    let other = s.activated("home", "other");
    s.ok(&["revocations", "create", "--home", "home", "--serial", &app, "--out", "r1.jws"]);
    s.ok(&["revocations", "import", "r1.jws"]);
    assert_eq!(s.active(), ["other"]);

    // The other issuer claims our list id, with a huge sequence and an empty list.
    let id = list_id(&s, "home");
    s.write("evil/revocations.json", format!("{{\"list_id\": \"{id}\", \"seq\": 999999}}\n"));
    s.ok(&["revocations", "create", "--home", "evil", "--out", "evil.jws"]);
    let r = s.ok(&["revocations", "import", "evil.jws"]);
    assert!(r.contains(&format!("installed: token revocation list {id} sequence 1000000")), "{r}");
    assert_eq!(s.active(), ["other"], "our revocation of app stays in force");
    let seq = revocation_seq(&s);
    assert_eq!(seq[format!("{home_fp}-{id}")], 1);
    assert_eq!(seq[format!("{evil_fp}-{id}")], 1_000_000);

    // Our next list is not blocked by the other issuer's sequence.
    s.ok(&["revocations", "create", "--home", "home", "--serial", &app, "--serial", &other, "--out", "r2.jws"]);
    let r = s.ok(&["revocations", "import", "r2.jws"]);
    assert!(r.contains("other: NOT activated any more"), "{r}");
    assert_eq!(revocation_seq(&s)[format!("{home_fp}-{id}")], 2);
    // And ours, old, is still a rollback for us.
    assert_fails(
        &s.tka(&["revocations", "import", "r1.jws"]),
        1,
        "revocation list sequence 1 is older than the installed 2",
    );
    let l: Value = serde_json::from_str(&s.ok(&["revocations", "list", "--json"])).unwrap();
    let mut lists: Vec<(&str, &str, &str)> = l
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["root"].as_str().unwrap(), r["id"].as_str().unwrap(), r["number"].as_str().unwrap()))
        .collect();
    lists.sort();
    let mut want = vec![(home_fp.as_str(), id.as_str(), "2"), (evil_fp.as_str(), id.as_str(), "1000000")];
    want.sort();
    assert_eq!(lists, want);
    assert!(l.as_array().unwrap().iter().all(|r| r["problem"].is_null()), "{l}");

    // Once the other root is removed, its list is out of force (kept, and
    // shown as such); ours stays in force.
    s.ok(&["trust", "remove", &evil_fp]);
    let st = s.tka(&["status", "--product", "other"]);
    assert!(st.0 == 1 && st.1.contains(&format!("token {other} is revoked")), "{st:?}");
    let l: Value = serde_json::from_str(&s.tka(&["revocations", "list", "--json"]).1).unwrap();
    let problems: Vec<(&str, &Value)> =
        l.as_array().unwrap().iter().map(|r| (r["root"].as_str().unwrap(), &r["problem"])).collect();
    let orphan = Value::from("its root is no longer trusted; not in force");
    let mut want = vec![(home_fp.as_str(), &Value::Null), (evil_fp.as_str(), &orphan)];
    want.sort_by_key(|w| w.0);
    assert_eq!(problems, want);
}

/// Replaces the store with `snap` (a `Sandbox::snapshot` of it).
fn restore_store(s: &Sandbox, snap: &Snapshot) {
    fs::remove_dir_all(s.store()).unwrap();
    for (path, content) in snap {
        match content {
            None => fs::create_dir_all(path).unwrap(),
            Some(bytes) => fs::write(path, bytes).unwrap(),
        }
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(s.store(), fs::Permissions::from_mode(0o700)).unwrap();
}

/// Review finding F2: an import that is killed at any of its writes. The
/// import writes (1) the list, then (2) the raised sequence in state.json;
/// each write is atomic, so a kill leaves the store as before (1), after
/// (1), or after (2). In each, the newer list is either in force or not
/// installed at all, and re-importing it completes the import. The state
/// the old order could leave (sequence raised, list not written) is
/// reported as corrupt, never silently treated as applied, and the
/// re-import repairs it.
#[test]
fn import_killed_at_each_write_step_is_completed_by_reimport() {
    let s = Sandbox::with_machine(MACHINE_B);
    s.issuer("home", "Example");
    let fp = named(&s.ok(&["trust", "add", "home/root.pem"]))["fingerprint"].clone();
    let app = s.activated("home", "app");
    s.ok(&["revocations", "create", "--home", "home", "--out", "r1.jws"]);
    s.ok(&["revocations", "create", "--home", "home", "--serial", &app, "--out", "r2.jws"]);
    s.ok(&["revocations", "import", "r1.jws"]);
    let key = format!("{fp}-{}", list_id(&s, "home"));
    let list_file = s.store().join(format!("revocations/{key}.jws"));
    let state_file = s.store().join("state.json");
    let before = s.snapshot("store");
    s.ok(&["revocations", "import", "r2.jws"]);
    let after = s.snapshot("store");
    let mixed = |file: &Path| {
        let mut m = before.clone();
        m.insert(file.to_path_buf(), after[file].clone());
        m
    };
    // (killed before step 1, after step 1, after step 2, the old order's state, is it in force)
    let cases = [
        ("before the list", before.clone(), Some(true)),
        ("after the list", mixed(&list_file), Some(false)),
        ("after the state", after.clone(), Some(false)),
        ("state raised without the list (old order)", mixed(&state_file), None),
    ];
    for (step, snap, active) in cases {
        restore_store(&s, &snap);
        let st = s.tka(&["status", "--product", "app"]);
        match active {
            Some(true) => assert_eq!(st.0, 0, "{step}: {st:?}"),
            Some(false) => assert!(st.0 == 1 && st.1.contains(&format!("token {app} is revoked")), "{step}: {st:?}"),
            None => assert_fails(
                &st,
                2,
                &format!(
                    "activation store file {} is corrupt: holds sequence 1, but state.json records 2 for it",
                    list_file.display()
                ),
            ),
        }
        let r = s.ok(&["revocations", "import", "r2.jws"]);
        assert!(r.contains("installed: token revocation list"), "{step}: {r}");
        assert_eq!(s.read(&format!("store/revocations/{key}.jws")).trim(), s.read("r2.jws").trim(), "{step}");
        assert_eq!(revocation_seq(&s)[&key], 2, "{step}");
        let st = s.tka(&["status", "--product", "app"]);
        assert_eq!(st.0, 1, "{step}: the revocation is in force after the re-import: {st:?}");
        assert_fails(
            &s.tka(&["revocations", "import", "r1.jws"]),
            1,
            "revocation list sequence 1 is older than the installed 2",
        );
    }
}

/// Stores written before lists were bound to roots keep a list as
/// `revocations/<id>.jws` with its sequence under the bare id. Such a list
/// stays in force and its sequence is still the floor for the same issuer;
/// the next newer list is installed under its bound key and replaces it. An
/// old-layout sequence ahead of its list (the interrupted import of review
/// F2, as an older tka left it) is reported as corrupt until re-imported.
#[test]
fn old_layout_list_stays_in_force_and_migrates_on_the_next_import() {
    let s = Sandbox::with_machine(MACHINE_B);
    s.issuer("home", "Example");
    let fp = named(&s.ok(&["trust", "add", "home/root.pem"]))["fingerprint"].clone();
    let app = s.activated("home", "app");
    for (n, serial) in [(1, None), (2, Some(&app)), (3, Some(&app)), (4, Some(&app))] {
        let out = format!("r{n}.jws");
        let mut args = vec!["revocations", "create", "--home", "home", "--out", &out];
        if let Some(serial) = serial {
            args.extend(["--serial", serial.as_str()]);
        }
        s.ok(&args);
    }
    let id = list_id(&s, "home");
    let bound = format!("{fp}-{id}");
    // Make the store look like an older tka's after importing r1, then r2.
    let to_old_layout = |seq: u64, list: &str| {
        let _ = fs::remove_file(s.store().join(format!("revocations/{bound}.jws")));
        fs::write(s.store().join(format!("revocations/{id}.jws")), s.read(list)).unwrap();
        let mut state: Value = serde_json::from_str(&s.read("store/state.json")).unwrap();
        state["revocation_seq"] = serde_json::json!({ id.clone(): seq });
        fs::write(s.store().join("state.json"), serde_json::to_vec(&state).unwrap()).unwrap();
    };
    to_old_layout(2, "r2.jws");
    let st = s.tka(&["status", "--product", "app"]);
    assert!(st.0 == 1 && st.1.contains(&format!("token {app} is revoked")), "old-layout list in force: {st:?}");
    let before = s.store_snapshot();
    assert_fails(
        &s.tka(&["revocations", "import", "r1.jws"]),
        1,
        "revocation list sequence 1 is older than the installed 2",
    );
    assert_eq!(s.store_snapshot(), before);

    s.ok(&["revocations", "import", "r3.jws"]);
    assert!(!s.store().join(format!("revocations/{id}.jws")).exists(), "the old-layout list is replaced");
    assert_eq!(s.read(&format!("store/revocations/{bound}.jws")).trim(), s.read("r3.jws").trim());
    assert_eq!(revocation_seq(&s), serde_json::json!({ id.clone(): 2, bound.clone(): 3 }));
    let st = s.tka(&["status", "--product", "app"]);
    assert_eq!(st.0, 1, "{st:?}");

    // The old layout's interrupted import: sequence 3 recorded, list 2 installed.
    to_old_layout(3, "r2.jws");
    let st = s.tka(&["status", "--product", "app"]);
    let file = s.store().join(format!("revocations/{id}.jws"));
    let msg =
        format!("activation store file {} is corrupt: holds sequence 2, but state.json records 3", file.display());
    assert_fails(&st, 2, &msg);
    assert_fails(
        &s.tka(&["revocations", "import", "r2.jws"]),
        1,
        "revocation list sequence 2 is older than the installed 3",
    );
    s.ok(&["revocations", "import", "r3.jws"]);
    assert_eq!(s.tka(&["status", "--product", "app"]).0, 1);
    s.ok(&["revocations", "import", "r4.jws"]);
    assert_eq!(revocation_seq(&s)[&bound], 4);
}

/// Review 2, finding 4: `crl create` numbered CRLs by Unix seconds, so two
/// made in one second shared a number, and importing the older content
/// after the newer un-revoked the signer. Two CRLs with one number (here
/// made as an older tka or a second workstation would, the counter file
/// gone) are never both installed: the second is refused and changes
/// nothing; the same CRL again is a no-op.
#[test]
fn a_crl_with_the_number_of_the_installed_one_but_other_content_is_refused() {
    let (s, old_signer_serial) = app1_under_a_replaced_signer();
    let revoke = format!("{old_signer_serial}:keyCompromise");
    s.crl_create("home/ca", &["--number", "4242", "--revoke", &revoke], "revoking.pem");
    fs::remove_file(s.path("home/ca.crlnumber")).unwrap();
    s.crl_create("home/ca", &["--number", "4242"], "empty.pem");
    s.ok(&["revocations", "import", "revoking.pem", "--ca-cert", "home/ca.pem"]);
    assert!(s.active().is_empty());
    let before = s.store_snapshot();
    assert_fails(
        &s.tka(&["revocations", "import", "empty.pem", "--ca-cert", "home/ca.pem"]),
        1,
        "CRL refused: CRL of CN=Example Issuing CA",
    );
    let r = s.tka(&["revocations", "import", "empty.pem", "--ca-cert", "home/ca.pem"]);
    assert!(r.2.contains("number 4242 is already installed with other content"), "{r:?}");
    assert_eq!(s.store_snapshot(), before);
    assert!(s.active().is_empty(), "the signer stays revoked");
    s.ok(&["revocations", "import", "revoking.pem", "--ca-cert", "home/ca.pem"]);
    assert_eq!(s.store_snapshot(), before, "the same CRL again changes nothing");
}
