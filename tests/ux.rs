//! The edges a user meets first, end to end through the binary: QR codes,
//! pasted and wrapped text, `-` for standard input and output, closed pipes,
//! read-only commands that write nothing, and the semantics of the
//! machine-side and issuing commands (issue 15).

use std::fs;
use std::path::Path;
use std::process::Stdio;

mod sandbox;
mod tools;

use sandbox::{assert_fails, Run, Sandbox, PRODUCT};

/// Decodes the one QR code in a PNG file with an independent decoder (rqrr).
fn decode_png_qr(path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale, "tka writes grey-scale PNGs");
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in {}", path.display());
    grids[0].decode().unwrap().1
}

/// Runs `args` with `input` on standard input.
fn tka_stdin(s: &Sandbox, args: &[&str], input: &str) -> Run {
    use std::io::Write;
    let mut c = s.cmd(args);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// --- QR codes -------------------------------------------------------------

/// `token issue --compact --qr-out FILE.png` writes a QR code that an
/// independent decoder reads back as the token, and that token activates.
#[test]
fn compact_token_png_qr_decodes_to_a_token_that_activates() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.ok(&["request", "create", "--product", PRODUCT, "--text", "--out", "req.txt"]);
    let out = s.ok(&[
        "token",
        "issue",
        "--request",
        "req.txt",
        "--home",
        "home",
        "--compact",
        "--qr-out",
        "token.png",
        "--out",
        "token.jws",
    ]);
    assert!(out.contains("qr code: token.png"), "{out}");
    let decoded = decode_png_qr(&s.path("token.png"));
    assert_eq!(decoded, s.read("token.jws").trim());
    s.write("from-qr.jws", &decoded);
    let out = s.ok(&["activate", "from-qr.jws", "--chain", "home/chain.pem"]);
    assert!(out.starts_with(&format!("activated: {PRODUCT}")), "{out}");
}

/// `trust add ROOT --chain CHAIN.pem` keeps the issuer's chain as known
/// certificates: a compact token (no `x5c`) then activates with no
/// `--chain`; without it the same token is refused as `UnknownSigner`.
#[test]
fn trust_add_chain_lets_a_compact_token_activate_without_chain() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.ok(&["request", "create", "--product", PRODUCT, "--text", "--out", "req.txt"]);
    s.ok(&["token", "issue", "--request", "req.txt", "--home", "home", "--compact", "--out", "token.jws"]);
    s.ok(&["trust", "add", "home/root.pem", "--yes", "--store", "plain"]);
    let r = s.tka(&["activate", "token.jws", "--store", "plain"]);
    assert_fails(&r, 1, "the token carries no certificate chain and its signer certificate");
    let out = s.ok(&["trust", "add", "home/root.pem", "--chain", "home/chain.pem", "--yes"]);
    assert!(out.contains("known certificates added: 2"), "{out}");
    let out = s.ok(&["activate", "token.jws"]);
    assert!(out.starts_with(&format!("activated: {PRODUCT}")), "{out}");
}

/// `request create --qr-out FILE.svg` writes an SVG image, and `--qr` prints
/// the code in half blocks within its quiet zone.
#[test]
fn request_qr_prints_half_blocks_and_writes_svg() {
    let s = Sandbox::new();
    let out = s.ok(&["request", "create", "--product", PRODUCT, "--text", "--qr", "--qr-out", "req.svg"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TKAR1-"), "{out}");
    // The quiet zone: the code's first rows are all light (full blocks).
    assert!(!lines[1].is_empty() && lines[1].chars().all(|c| c == '\u{2588}'), "{out}");
    assert!(lines[3].contains('\u{2580}') || lines[3].contains('\u{2584}'), "{out}");
    let svg = s.read("req.svg");
    assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
}

/// `token qr` of a full token (too large for any QR code) says to use
/// compact tokens, exit 2; `token issue --qr` without `--compact` is refused
/// before anything is signed or recorded.
#[test]
fn full_token_too_large_for_a_qr_code_suggests_compact() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "full.jws");
    let r = s.tka(&["token", "qr", "full.jws", "--qr-out", "full.png"]);
    assert_fails(&r, 2, "the token is ");
    assert!(r.2.contains("tka token issue --compact"), "{}", r.2);
    assert!(!s.path("full.png").exists());
    let before = s.snapshot("home");
    let r = s.tka(&["token", "issue", "--request", "req-example-pro.json", "--home", "home", "--qr"]);
    assert_fails(&r, 2, "a full token (about 5 KB with its certificate chain) does not fit in a QR code");
    assert!(r.2.contains("add --compact"), "{}", r.2);
    assert_eq!(before, s.snapshot("home"));
}

/// `--qr-out` names a PNG or SVG file: anything else is a usage error
/// before anything is written.
#[test]
fn qr_out_needs_png_or_svg() {
    let s = Sandbox::new();
    let r = s.tka(&["request", "create", "--product", PRODUCT, "--qr-out", "req.jpg", "--out", "req.json"]);
    assert_fails(&r, 2, "--qr-out req.jpg: the file name must end in .png or .svg");
    assert!(!s.path("req.json").exists());
}

// --- Pasted text ----------------------------------------------------------

/// Wraps `text` at `width` characters, as a mail client does.
fn wrap(text: &str, width: usize) -> String {
    text.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n") + "\n"
}

/// `token issue --request` takes the text form itself as the argument, and
/// a request wrapped over several lines, in a file or as the argument.
#[test]
fn request_text_pasted_or_wrapped_is_accepted() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    let text = s.ok(&["request", "create", "--product", PRODUCT, "--text"]).trim().to_string();
    s.ok(&["token", "issue", "--request", &text, "--home", "home", "--out", "pasted.jws"]);
    s.write("wrapped.txt", wrap(&text, 40));
    s.ok(&["token", "issue", "--request", "wrapped.txt", "--home", "home", "--out", "wrapped.jws", "--force"]);
    s.ok(&["token", "issue", "--request", &wrap(&text, 30), "--home", "home", "--out", "arg.jws", "--force"]);
    let r = tka_stdin(&s, &["token", "issue", "--request", "-", "--home", "home"], &wrap(&text, 50));
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.starts_with("eyJ"), "{}", r.1);
}

/// A wrapped token, pasted as the argument or read from a file, activates.
#[test]
fn token_text_wrapped_is_accepted() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "token.jws");
    let token = s.read("token.jws");
    let out = s.ok(&["token", "inspect", &wrap(token.trim(), 76)]);
    assert!(out.contains(&format!("product: {PRODUCT}")), "{out}");
    s.write("wrapped.jws", wrap(token.trim(), 64));
    let out = s.ok(&["activate", "wrapped.jws"]);
    assert!(out.starts_with(&format!("activated: {PRODUCT}")), "{out}");
}

/// A request cut short when copied says so; so does a mistyped character;
/// both are errors in the input (exit 2), and nothing is issued.
#[test]
fn request_text_cut_or_mistyped_says_what_happened() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    let text = s.ok(&["request", "create", "--product", PRODUCT, "--text"]).trim().to_string();
    let before = s.snapshot("home");
    let r = s.tka(&["token", "issue", "--request", &text[..text.len() - 12], "--home", "home"]);
    assert_fails(&r, 2, "malformed request: the text ends early: was it cut when copied?");
    let typo = format!("{}*{}", &text[..20], &text[21..]);
    let r = s.tka(&["token", "issue", "--request", &typo, "--home", "home"]);
    assert_fails(
        &r,
        2,
        "malformed request: character '*' at position 21 cannot be in a text request: was it mistyped?",
    );
    s.write("junk.txt", "hello\n");
    let r = s.tka(&["token", "issue", "--request", "junk.txt", "--home", "home"]);
    assert_fails(&r, 2, "malformed request: neither a JSON request nor a TKAR1-... text request");
    assert_eq!(before, s.snapshot("home"));
    // A short name that is no file is a missing file, not text.
    let r = s.tka(&["token", "issue", "--request", "req.tx", "--home", "home"]);
    assert_fails(&r, 2, "req.tx: No such file or directory");
}

/// A token cut short when copied says so (not "File name too long"), and a
/// character no token holds is named.
#[test]
fn token_text_cut_or_mistyped_says_what_happened() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "token.jws");
    let token = s.read("token.jws").trim().to_string();
    let before = s.snapshot("store");
    let r = s.tka(&["activate", &token[..600]]);
    assert_fails(
        &r,
        1,
        "malformed token: the text ends early (1 of the 3 dot-separated parts): was it cut when copied?",
    );
    let r = s.tka(&["activate", &token[..token.len() - 30]]);
    assert_fails(&r, 1, "malformed token: the text ends early (a signature of ");
    let typo = format!("{}%{}", &token[..10], &token[11..]);
    let r = s.tka(&["token", "verify", &typo, "--trust", "home/root.pem"]);
    assert_fails(&r, 1, "malformed token: character '%' at position 11 cannot be in a token: was it mistyped?");
    assert_eq!(before, s.snapshot("store"));
}

// --- Read-only commands ---------------------------------------------------

/// Read-only commands on a store that does not exist create nothing; the
/// machine side's say "no store at PATH (nothing activated here)", exit 1.
#[test]
fn read_only_commands_on_a_missing_store_create_nothing() {
    let s = Sandbox::new();
    let ghost = s.path("no-such-store");
    let g = ghost.to_str().unwrap();
    let before = s.snapshot("");
    for args in [
        &["status", "--store", g][..],
        &["list", "--store", g][..],
        &["trust", "list", "--store", g][..],
        &["revocations", "list", "--store", g][..],
        &["deactivate", "--product", PRODUCT, "--store", g][..],
    ] {
        let r = s.tka(args);
        assert_fails(&r, 1, &format!("no store at {g} (nothing activated here)"));
    }
    s.ok(&["machine", "id", "--product", PRODUCT]);
    assert_eq!(before, s.snapshot(""), "a read-only command wrote");
}

/// A failed `trust add` into a store that did not exist leaves no store behind.
#[test]
fn failed_trust_add_leaves_nothing_behind() {
    let s = Sandbox::new();
    s.write("not-a-cert.pem", "hello\n");
    let before = s.snapshot("");
    let r = s.tka(&["trust", "add", "not-a-cert.pem"]);
    assert_eq!(r.0, 2, "{r:?}");
    assert!(!s.store().exists());
    assert_eq!(before, s.snapshot(""));
}

// --- Semantics ------------------------------------------------------------

/// `activate --product P` refuses another product's token (exit 1) and
/// leaves the store as it was.
#[test]
fn activate_product_guard_refuses_another_products_token() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token("other-product", "other.jws");
    let before = s.snapshot("store");
    let r = s.tka(&["activate", "other.jws", "--product", PRODUCT]);
    assert_fails(&r, 1, &format!("wrong product: expected {PRODUCT:?}, token is for \"other-product\""));
    assert_eq!(before, s.snapshot("store"));
    let out = s.ok(&["activate", "other.jws", "--product", "other-product"]);
    assert!(out.starts_with("activated: other-product"), "{out}");
}

/// After `ledger revoke`, the machine is not issued a fresh token in the
/// same entitlement (exit 1, typed `IssueRefusal::MachineRevoked`), by
/// `token issue` or `issue-bulk`, unless `--allow-revoked-machine`.
#[test]
fn revoked_machine_is_not_reissued_silently() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "5", "--name", "rev"]);
    s.ok(&["request", "create", "--product", PRODUCT, "--text", "--out", "req.txt"]);
    let issue = ["token", "issue", "--request", "req.txt", "--home", "home", "--entitlement", "rev"];
    let out = s.ok(&[&issue[..], &["--out", "t1.jws"]].concat());
    let serial = sandbox::named(&out)["serial"].clone();
    s.ok(&["ledger", "revoke", &serial, "--reason", "stolen", "--home", "home"]);
    let before = s.snapshot("home");
    let r = s.tka(&[&issue[..], &["--out", "t2.jws"]].concat());
    assert_fails(&r, 1, "machine ");
    assert!(r.2.contains(&format!("was revoked: its token {serial} in entitlement ")), "{}", r.2);
    assert!(r.2.trim_end().ends_with("(--allow-revoked-machine)"), "{}", r.2);
    fs::create_dir(s.path("reqs")).unwrap();
    fs::copy(s.path("req.txt"), s.path("reqs/a.txt")).unwrap();
    let r =
        s.tka(&["token", "issue-bulk", "--home", "home", "--entitlement", "rev", "--requests", "reqs", "--out", "out"]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.contains("was revoked: its token"), "{}", r.2);
    assert!(!s.path("t2.jws").exists());
    let after = s.snapshot("home");
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    s.ok(&[&issue[..], &["--out", "t3.jws", "--allow-revoked-machine"]].concat());
    // Re-admitted: its newest token is not revoked, so it is no longer refused.
    s.ok(&[&issue[..], &["--out", "t4.jws"]].concat());
}

// --- Streams --------------------------------------------------------------

/// `-` is standard input for every file argument: a root, a certificate, a
/// token (inspect, verify, activate), a revocation list; standard input is
/// read for one argument only.
#[test]
fn dash_reads_standard_input_for_file_arguments() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    let root = s.read("home/root.pem");
    let r = tka_stdin(&s, &["trust", "add", "-"], &root);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.starts_with("trusted: "), "{}", r.1);
    let r = tka_stdin(&s, &["cert", "inspect", "-", "--json"], &s.read("home/chain.pem"));
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.contains("\"fingerprint\""), "{}", r.1);
    s.token(PRODUCT, "token.jws");
    let token = s.read("token.jws");
    let r = tka_stdin(&s, &["token", "inspect", "-"], &token);
    assert!(r.0 == 0 && r.1.contains(&format!("product: {PRODUCT}")), "{r:?}");
    let r = tka_stdin(&s, &["token", "verify", "-", "--trust", "home/root.pem"], &token);
    assert!(r.0 == 0 && r.1.starts_with("valid signature and chain"), "{r:?}");
    let r = tka_stdin(&s, &["token", "verify", "token.jws", "--trust", "-"], &root);
    assert!(r.0 == 0 && r.1.starts_with("valid signature and chain"), "{r:?}");
    let r = tka_stdin(&s, &["activate", "-"], &token);
    assert!(r.0 == 0 && r.1.starts_with(&format!("activated: {PRODUCT}")), "{r:?}");
    s.ok(&["revocations", "create", "--home", "home", "--out", "revoked.jws"]);
    let r = tka_stdin(&s, &["revocations", "import", "-"], &s.read("revoked.jws"));
    assert!(r.0 == 0 && r.1.starts_with("installed: "), "{r:?}");
    // Two arguments cannot both be standard input.
    let before = s.snapshot("store");
    let r = tka_stdin(&s, &["trust", "add", "-", "--cross", "-"], &root);
    assert_fails(&r, 2, "standard input (`-`) can be read for one argument only");
    assert_eq!(before, s.snapshot("store"));
}

/// `--out -` writes the document to standard output, whole: the lines that
/// report on it go to standard error. A private key is not written there.
#[test]
fn dash_out_writes_the_document_to_standard_output() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "token.jws");
    let r = s.tka(&["revocations", "create", "--home", "home", "--out", "-"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert_eq!(r.1.lines().count(), 1, "{}", r.1);
    assert!(r.1.starts_with("eyJ"), "{}", r.1);
    assert!(r.2.contains("sequence: 1"), "{}", r.2);
    let r = s.tka(&["ledger", "export", "--home", "home", "--format", "json", "--out", "-"]);
    assert_eq!(r.0, 0, "{r:?}");
    let rows: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{}", r.1);
    assert!(!s.path("-").exists());
    let r = s.tka(&["crl", "create", "--ca-cert", "home/ca.pem", "--ca-key", "home/ca.key", "--out", "-"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(r.1.starts_with("-----BEGIN X509 CRL-----") && r.1.trim_end().ends_with("-----END X509 CRL-----"));
    let r = s.tka(&["key", "generate", "--out", "-", "--insecure-no-passphrase"]);
    assert_fails(&r, 2, "--out -: a private key is not written to standard output; give a file (written 0600)");
    assert!(!s.path("-").exists());
}

/// `issue-bulk --report -` prints the report (JSON) on standard output and
/// the summary on standard error; `--requests-file -` reads standard input.
#[test]
fn bulk_report_and_requests_file_take_dash() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "5", "--name", "e"]);
    let text = s.ok(&["request", "create", "--product", PRODUCT, "--text"]);
    let r = tka_stdin(
        &s,
        &["token", "issue-bulk", "--home", "home", "--entitlement", "e", "--requests-file", "-"]
            .iter()
            .chain(&["--out", "out", "--report", "-"])
            .copied()
            .collect::<Vec<_>>(),
        &text,
    );
    assert_eq!(r.0, 0, "{r:?}");
    let report: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(report["ok"], 1, "{}", r.1);
    assert!(r.2.contains("issued: 1 of 1"), "{}", r.2);
}

/// Runs `args` with standard output a pipe that is closed after one line
/// (`tka ... | head -1`): the exit status is not a panic's (101), and
/// nothing panicked.
fn assert_no_panic_on_closed_pipe(s: &Sandbox, args: &[&str]) {
    use std::io::BufRead;
    let mut c = s.cmd(args);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "tka {args:?} printed nothing");
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "tka {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "tka {args:?}: {stderr}");
}

/// Every command that prints more than a line ends quietly when its reader
/// goes away: a ledger of 300 tokens exported (well past a pipe's buffer),
/// ledger list, token and chain inspection, status, list, trust list, help.
#[test]
fn closed_pipe_never_panics() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.token(PRODUCT, "token.jws");
    s.ok(&["activate", "token.jws"]);
    s.ok(&["request", "generate-test", "--product", PRODUCT, "--count", "300", "--out", "reqs.txt"]);
    s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "1000", "--name", "bulk"]);
    s.ok(&["token", "issue-bulk", "--home", "home", "--entitlement", "bulk", "--requests-file", "reqs.txt"]
        .iter()
        .chain(&["--out", "tokens", "--allow-weak-binding", "--quiet"])
        .copied()
        .collect::<Vec<_>>());
    for args in [
        &["ledger", "export", "--home", "home", "--format", "csv"][..],
        &["ledger", "export", "--home", "home", "--format", "json"][..],
        &["ledger", "list", "--home", "home"][..],
        &["token", "inspect", "token.jws"][..],
        &["cert", "inspect", "home/chain.pem"][..],
        &["status"][..],
        &["list"][..],
        &["trust", "list"][..],
        &["--help"][..],
    ] {
        assert_no_panic_on_closed_pipe(&s, args);
    }
}

// --- The container warning ------------------------------------------------

/// Turns the sandbox's machine into a Docker container.
fn in_a_container(s: &Sandbox) {
    s.write("sysroot/.dockerenv", "");
}

const CONTAINER_WARNING: &str = "warning: running in a container (docker)";

/// In a container without an explicit identity, the warning is shown until
/// a command that writes the store (activate) has shown it, then not again
/// for that store; a read-only command (status) shows it but writes nothing.
#[test]
fn container_warning_is_shown_once_per_store() {
    let s = Sandbox::new();
    in_a_container(&s);
    s.issuer_and_trust();
    s.token(PRODUCT, "token.jws");
    // Installed quietly: the warning was not shown, so it is not remembered.
    s.ok(&["activate", "token.jws", "--quiet"]);
    assert!(!s.store().join("container-warning-shown").exists());
    let before = s.snapshot("store");
    let r = s.tka(&["status"]);
    assert!(r.2.contains(CONTAINER_WARNING), "{r:?}");
    assert_eq!(before, s.snapshot("store"), "a read-only command wrote");
    let r = s.tka(&["activate", "token.jws"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert_eq!(r.2.matches(CONTAINER_WARNING).count(), 1, "{}", r.2);
    assert!(s.store().join("container-warning-shown").exists());
    for args in [&["status"][..], &["activate", "token.jws"][..]] {
        let r = s.tka(args);
        assert_eq!(r.0, 0, "{r:?}");
        assert!(!r.2.contains("running in a container"), "{args:?}: {}", r.2);
    }
}

/// An explicit identity (`--machine-id-file`, `TKA_MACHINE_ID`) or
/// `--quiet` silences the container warning.
#[test]
fn container_warning_is_silenced_by_an_explicit_identity_or_quiet() {
    let s = Sandbox::new();
    in_a_container(&s);
    let r = s.tka(&["machine", "id", "--product", PRODUCT]);
    assert!(r.0 == 0 && r.2.contains(CONTAINER_WARNING), "{r:?}");
    let r = s.tka(&["machine", "id", "--product", PRODUCT, "--quiet"]);
    assert!(r.0 == 0 && !r.2.contains("running in a container"), "{r:?}");
    s.write("id.txt", "container-7\n");
    let r = s.tka(&["machine", "id", "--product", PRODUCT, "--machine-id-file", "id.txt"]);
    assert!(r.0 == 0 && !r.2.contains("running in a container"), "{r:?}");
    let r = sandbox::run(s.cmd(&["machine", "id", "--product", PRODUCT]).env("TKA_MACHINE_ID", "container-7"));
    assert!(r.0 == 0 && !r.2.contains("running in a container"), "{r:?}");
}

/// With `--json`, standard output is the JSON document alone: the container
/// warning never enters it.
#[test]
fn container_warning_never_enters_json_output() {
    let s = Sandbox::new();
    in_a_container(&s);
    s.issuer_and_trust();
    s.token(PRODUCT, "token.jws");
    for args in [&["activate", "token.jws", "--json"][..], &["machine", "id", "--product", PRODUCT, "--json"][..]] {
        let r = s.tka(args);
        assert_eq!(r.0, 0, "{r:?}");
        serde_json::from_str::<serde_json::Value>(&r.1).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.1));
        assert!(!r.1.contains("running in a container"), "{}", r.1);
    }
}

// --- Malformed requests ---------------------------------------------------

/// A malformed request is an error in the input, exit 2, everywhere:
/// `token issue` (above) and `issue-bulk` (the item is reported with its
/// reason, and the batch exits 2, not 1).
#[test]
fn malformed_requests_exit_2_everywhere() {
    let s = Sandbox::new();
    s.issuer_and_trust();
    s.write("junk.txt", "hello\n");
    s.ok(&["entitlement", "add", "--home", "home", "--product", PRODUCT, "--machines", "5", "--name", "e"]);
    let r = s.tka(
        &["token", "issue-bulk", "--home", "home", "--entitlement", "e", "--requests-file", "junk.txt"]
            .iter()
            .chain(&["--out", "out", "--report", "report.json"])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert_eq!(r.0, 2, "{r:?}");
    assert!(r.2.contains("(junk.txt:1): malformed request: neither a JSON request nor"), "{}", r.2);
    let report: serde_json::Value = serde_json::from_str(&s.read("report.json")).unwrap();
    assert_eq!(report["items"][0]["reason"], "malformed request: neither a JSON request nor a TKAR1-... text request");
}
