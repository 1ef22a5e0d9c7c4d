//! Trust with eyes open: `issuer init` names its root after `--org` and
//! prints its SHA-256 fingerprint; `trust add` shows the fingerprint, asks
//! on a terminal, reads the fingerprint in the forms people paste, and
//! words a mismatch with both fingerprints in one form; verification shows
//! the root's fingerprint.

mod sandbox;
mod tools;

use sandbox::{assert_fails, named, Sandbox, PRODUCT};

/// `issuer init --org NAME`: the root's subject and fingerprint, which
/// `cert inspect` confirms.
#[test]
fn issuer_init_prints_the_root_fingerprint_and_names_the_root_after_org() {
    let s = Sandbox::new();
    let out =
        named(&s.ok(&["issuer", "init", "--home", "h", "--org", "Acme", "--root-bits", "2048", "--ca-bits", "2048"]));
    assert_eq!(out["root subject"], "CN=Acme Root CA");
    let cert: serde_json::Value = serde_json::from_str(&s.ok(&["cert", "inspect", "h/root.pem", "--json"])).unwrap();
    assert_eq!(out["root fingerprint"], cert[0]["fingerprint"].as_str().unwrap());
}

/// Without `--org` and off a terminal: a root name unique to this issuer,
/// and a note naming `--org`.
#[test]
fn issuer_init_without_org_off_a_terminal_names_the_root_uniquely_and_says_so() {
    let s = Sandbox::new();
    let init = |home: &str| s.tka(&["issuer", "init", "--home", home, "--root-bits", "2048", "--ca-bits", "2048"]);
    let (a, b) = (init("a"), init("b"));
    assert_eq!((a.0, b.0), (0, 0), "{a:?} {b:?}");
    let (sa, sb) = (named(&a.1)["root subject"].clone(), named(&b.1)["root subject"].clone());
    assert_ne!(sa, sb, "two issuers, two root names");
    let name = sa.strip_prefix("CN=").and_then(|n| n.strip_suffix(" Root CA")).unwrap();
    assert!(name.starts_with("tka-") && name.len() == 12, "{sa}");
    assert_eq!(a.2.trim_end(), format!("note: no --org given: the root is named {sa} (give --org NAME to name it)"));
}

/// The fingerprint as openssl prints it (either case of its label), with
/// colons, with spaces, in upper case: each accepted.
#[test]
fn trust_add_fingerprint_accepts_the_forms_people_paste() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--home", "h", "--org", "tka", "--root-bits", "2048", "--ca-bits", "2048"]);
    let fp: serde_json::Value = serde_json::from_str(&s.ok(&["cert", "inspect", "h/root.pem", "--json"])).unwrap();
    let fp = fp[0]["fingerprint"].as_str().unwrap().to_string();
    let pairs: Vec<String> = fp.as_bytes().chunks(2).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    let colons_upper = pairs.join(":").to_uppercase();
    let forms = [
        format!("sha256 Fingerprint={colons_upper}"),
        format!("SHA256 Fingerprint={colons_upper}"),
        colons_upper.clone(),
        pairs.join(" "),
        fp.to_uppercase(),
    ];
    for (i, form) in forms.iter().enumerate() {
        let store = s.path(&format!("store-{i}"));
        let r = sandbox::run(s.cmd(&["trust", "add", "h/root.pem", "--fingerprint", form]).env("TKA_STORE", &store));
        assert_eq!(r.0, 0, "{form}: {r:?}");
        assert_eq!(named(&r.1)["vouched for by"], "its fingerprint", "{form}");
        assert!(r.2.is_empty(), "no note when the fingerprint was compared: {}", r.2);
    }
}

/// A mismatch, given in openssl's form, names both fingerprints as
/// lowercase hex; nothing is trusted.
#[test]
fn trust_add_fingerprint_mismatch_shows_both_fingerprints_in_one_form() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--home", "h", "--org", "tka", "--root-bits", "2048", "--ca-bits", "2048"]);
    let fp: serde_json::Value = serde_json::from_str(&s.ok(&["cert", "inspect", "h/root.pem", "--json"])).unwrap();
    let fp = fp[0]["fingerprint"].as_str().unwrap().to_string();
    let other = "9e".repeat(32);
    let openssl = format!("sha256 Fingerprint={}", ["9E"; 32].join(":"));
    let r = s.tka(&["trust", "add", "h/root.pem", "--fingerprint", &openssl]);
    assert_fails(
        &r,
        1,
        &format!("fingerprint mismatch for CN=tka Root CA: expected {other}, the certificate's is {fp}"),
    );
    // Nothing trusted, and the store the refused command would have made is gone.
    let r = s.tka(&["trust", "list"]);
    assert_fails(&r, 1, "no store at ");
    let r = s.tka(&["trust", "add", "h/root.pem", "--fingerprint", "sha1 Fingerprint=9E:07"]);
    assert_fails(&r, 2, "invalid root fingerprint \"sha1 Fingerprint=9E:07\"");
}

/// Off a terminal without `--yes` or `--fingerprint` (a script): trusted,
/// with a note on standard error that nobody compared the fingerprint;
/// `--yes` trusts without the note.
#[test]
fn trust_add_off_a_terminal_trusts_with_a_note_and_yes_silences_it() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--home", "h", "--org", "tka", "--root-bits", "2048", "--ca-bits", "2048"]);
    let r = s.tka(&["trust", "add", "h/root.pem"]);
    assert_eq!(r.0, 0, "{r:?}");
    let fp = named(&r.1)["fingerprint"].clone();
    assert_eq!(
        r.2.trim_end(),
        format!(
            "note: trusting CN=tka Root CA (SHA-256 fingerprint {fp}) unchecked: compare the fingerprint with the \
             issuer's, or pass --fingerprint to have it compared (--yes: no note)"
        )
    );
    let r = sandbox::run(s.cmd(&["trust", "add", "h/root.pem", "--yes"]).env("TKA_STORE", s.path("other")));
    assert_eq!((r.0, r.2.as_str()), (0, ""), "{r:?}");
}

/// `script` gives tka a terminal; its standard input is the answer.
fn on_a_terminal(s: &Sandbox, tka_args: &str, answer: &str, store: &str) -> (i32, String) {
    use std::io::Write;
    let cmd = format!("{} {tka_args}", sandbox::BIN);
    let mut c = s.command("script", &["-qec", &cmd, "/dev/null"]);
    c.env("TKA_STORE", s.path(store)).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = c.spawn().expect("script (util-linux) runs");
    child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// On a terminal without `--fingerprint`: the subject and fingerprint and a
/// question; "n" trusts nothing and creates no store (exit 1), "y" trusts.
#[test]
fn trust_add_on_a_terminal_asks_and_a_no_trusts_nothing() {
    let s = Sandbox::new();
    if !sandbox::have("script", std::process::Command::new("script").arg("--version")) {
        return;
    }
    s.ok(&["issuer", "init", "--home", "h", "--org", "Pty", "--root-bits", "2048", "--ca-bits", "2048"]);
    let (code, out) = on_a_terminal(&s, "trust add h/root.pem", "n\n", "no-store");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Trust this root [y/N]: "), "{out}");
    assert!(out.contains("error: root CN=Pty Root CA not trusted: not confirmed"), "{out}");
    assert!(!s.path("no-store").exists(), "a refused root leaves no store");
    let (code, out) = on_a_terminal(&s, "trust add h/root.pem", "y\n", "yes-store");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("trusted: CN=Pty Root CA"), "{out}");
}

/// On a terminal without `--org`, `issuer init` asks for the name.
#[test]
fn issuer_init_on_a_terminal_asks_for_the_organisation() {
    let s = Sandbox::new();
    if !sandbox::have("script", std::process::Command::new("script").arg("--version")) {
        return;
    }
    let (code, out) =
        on_a_terminal(&s, "issuer init --home h --root-bits 2048 --ca-bits 2048", "Asked Corp\n", "store");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Organisation name for the certificates (CN=NAME Root CA): "), "{out}");
    assert!(out.contains("root subject: CN=Asked Corp Root CA"), "{out}");
}

/// `token verify` and `status` show the fingerprint of the root the token
/// chains to, as `issuer init` printed it.
#[test]
fn verify_and_status_show_the_root_fingerprint() {
    let s = Sandbox::new();
    let init =
        named(&s.ok(&["issuer", "init", "--home", "home", "--org", "tka", "--root-bits", "2048", "--ca-bits", "2048"]));
    let fp = &init["root fingerprint"];
    s.ok(&["trust", "add", "home/root.pem", "--yes"]);
    s.token(PRODUCT, "t.jws");
    let v = named(&s.ok(&["token", "verify", "t.jws", "--trust", "home/root.pem"]));
    assert_eq!(&v["root fingerprint"], fp);
    s.ok(&["activate", "t.jws"]);
    let status = s.ok(&["status"]);
    assert!(status.trim_end().ends_with(&format!(", root fingerprint {fp}")), "{status}");
}
