//! The `tka` executable is a small front (src/bin/tka/front.rs): `tka token
//! verify` runs in it alone; every other command line, and a verify line
//! it is not sure of, runs in `tka-full`, found next to it or in
//! `../libexec/tka/`, exactly as if `tka-full` had been run.

mod sandbox;
mod tools;

use sandbox::{run, Run, Sandbox, BIN, PRODUCT};
use std::path::{Path, PathBuf};

const FULL: &str = env!("CARGO_BIN_EXE_tka-full");

/// A sandbox with an issuer home (`home/`, fast 2048-bit keys) and a token
/// for PRODUCT on the sandbox's machine at `token.jws`.
fn issued() -> Sandbox {
    let sb = Sandbox::new();
    sb.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    sb.ok(&["request", "create", "--product", PRODUCT, "--out", "req.json"]);
    sb.ok(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "token.jws"]);
    sb
}

/// `src` linked (or copied) to `dest`, its directories made.
fn place(src: &str, dest: &Path) -> PathBuf {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    if std::fs::hard_link(src, dest).is_err() {
        std::fs::copy(src, dest).unwrap();
    }
    dest.to_path_buf()
}

/// `program args` in the sandbox.
fn run_in(sb: &Sandbox, program: &Path, args: &[&str]) -> Run {
    run(&mut sb.command(program, args))
}

/// The same verification lines give the same exit code, output and errors
/// from the front and from the full command: valid, a "no" (wrong machine,
/// wrong product), JSON, an anchor that is no root, a bad `--at`.
#[test]
fn a_verify_line_gives_the_same_result_from_the_front_and_the_full_command() {
    let sb = issued();
    let lines: &[&[&str]] = &[
        &["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", "current"],
        &["token", "verify", "token.jws", "--trust", "home/root.pem", "--product", PRODUCT],
        &["--json", "token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", "current"],
        &["token", "verify", "token.jws", "--trust", "home/root.pem", "--product", "other-app", "--json"],
        &["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", "ZA3Y-M1KV-B3C8-7AB5-G"],
        &["token", "verify", "token.jws", "--trust", "home/chain.pem"],
        &["token", "verify", "token.jws", "--trust", "home/root.pem", "--at", "yesterday"],
        &["token", "verify", "missing.jws", "--trust", "home/root.pem"],
    ];
    let mut codes = Vec::new();
    for line in lines {
        let front = sb.tka(line);
        let full = run_in(&sb, Path::new(FULL), line);
        assert_eq!(front, full, "{line:?}");
        codes.push(front.0);
    }
    assert_eq!(codes, [0, 0, 0, 1, 1, 2, 2, 2]);
}

/// Without `tka-full` beside it, the front still verifies tokens; any other
/// line is refused with one error line naming what is missing (exit 2), as
/// JSON under `--json`.
#[test]
fn the_front_alone_verifies_and_names_the_missing_full_command() {
    let sb = issued();
    let alone = place(BIN, &sb.path("alone/tka"));
    let r = run_in(&sb, &alone, &["token", "verify", "token.jws", "--trust", "home/root.pem", "--machine", "current"]);
    assert_eq!((r.0, r.1.lines().next()), (0, Some("valid")), "{}", r.2);
    let missing = format!(
        "error: the full tka command (tka-full) is not installed next to {} or in ../libexec/tka/ (reinstall tka)\n",
        std::fs::canonicalize(&alone).unwrap().display()
    );
    for line in [&["--version"][..], &["token", "verify", "token.jws"], &["token", "verify", "--help"]] {
        assert_eq!(run_in(&sb, &alone, line), (2, String::new(), missing.clone()), "{line:?}");
    }
    let r = run_in(&sb, &alone, &["status", "--json"]);
    assert_eq!(r.0, 2);
    let doc: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(doc["kind"], "Usage", "{doc}");
    assert!(doc["error"].as_str().unwrap().starts_with("the full tka command (tka-full) is not installed"), "{doc}");
}

/// A package install: `bin/tka` and `libexec/tka/tka-full`. Other lines run
/// in the full command under the name `tka` (argv[0] kept): its version,
/// clap's help and usage errors, its exit codes; the environment and
/// standard input pass through.
#[test]
fn other_lines_run_in_the_full_command_from_libexec_as_tka() {
    let sb = issued();
    let front = place(BIN, &sb.path("pkg/bin/tka"));
    place(FULL, &sb.path("pkg/libexec/tka/tka-full"));
    let r = run_in(&sb, &front, &["--version"]);
    assert_eq!(r, (0, format!("tka {}\n", env!("CARGO_PKG_VERSION")), String::new()));
    let r = run_in(&sb, &front, &["token", "verify", "token.jws", "--trust", "home/root.pem", "--bogus"]);
    assert_eq!(r.0, 2);
    assert!(r.2.starts_with("error: unexpected argument '--bogus' found"), "{}", r.2);
    assert!(r.2.contains("Usage: tka token verify"), "{}", r.2);
    let r = run_in(&sb, &front, &["token", "verify", "--help"]);
    assert!(r.0 == 0 && r.1.contains("Usage: tka token verify") && r.1.contains("EXIT CODES:"), "{r:?}");
    // A token on standard input (`-`): a line the front leaves to the full command.
    let token = std::fs::File::open(sb.path("token.jws")).unwrap();
    let mut cmd = sb.command(&front, &["token", "verify", "-", "--trust", "home/root.pem", "--machine", "current"]);
    let r = run(cmd.stdin(token));
    assert_eq!((r.0, r.1.lines().next()), (0, Some("valid")), "{}", r.2);
    // The environment reaches it: the machine is the sandbox's (TKA_SYSROOT).
    let r = run_in(&sb, &front, &["machine", "id", "--product", PRODUCT]);
    assert_eq!(r.0, 0, "{}", r.2);
    assert_eq!(r, run_in(&sb, Path::new(FULL), &["machine", "id", "--product", PRODUCT]));
}
