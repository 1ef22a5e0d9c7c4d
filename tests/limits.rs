//! Bounded inputs (issue 6 item 8): every parser refuses oversized input on
//! its length alone, before reading or parsing it, and deeply nested input
//! fails cleanly instead of exhausting the stack.
//!
//! Covered elsewhere and not repeated here: a 1 TiB token through the CLI
//! (`tests/cli.rs::huge_token_file_is_refused_unread`, a sparse file for
//! `token verify`, `token inspect`, `activate` and `token issue --request`),
//! a 100 MB token in process (`tests/verify.rs::hundred_megabyte_input_is_refused_before_parsing`),
//! oversized store files (`tests/store.rs`), and the corpus vectors
//! `size-over-64k`, `json-*-deeply-nested`, `chain-too-long`.

mod common;
mod sandbox;
mod tools;

use std::time::Duration;
use tka::jws::{self, MAX_JWS_SIZE, REVOCATION_TYP, TOKEN_TYP};
use tka::pki::{validate_path, CertInfo, Crl, LeafRole, TrustAnchors, MAX_CERT_SIZE, MAX_CHAIN_LEN};
use tka::request::{ActivationRequest, MAX_COMPONENTS, MAX_REQUEST_SIZE};
use tka::VerifyError;

const MIB: usize = 1024 * 1024;
/// `tka::pki::path::MAX_CRL_SIZE` (not re-exported).
const MAX_CRL_SIZE: usize = MIB;

// An input past its limit is refused on its length before any parsing:
// the 100 MB inputs below are malformed too, so a parser that ran first
// would refuse them as `Malformed` instead of `TooLarge`. (No timing: what
// the refusal says shows what was done.)

/// 1 TiB: a sparse file no read of the whole can finish (not in memory,
/// not in the 20 s the guard allows), so a command that refuses it has
/// read at most a bounded prefix.
const TIB: u64 = 1 << 40;

/// Runs tka with its data segment (heap) limited to `kib` KiB
/// (`ulimit -d`): a command that held a 100 MB input in memory fails
/// with an allocation error instead of giving its verdict.
fn tka_in_memory(s: &sandbox::Sandbox, kib: u64, args: &[&str]) -> sandbox::Run {
    let script = format!("ulimit -d {kib} && exec \"$0\" \"$@\"");
    let mut all = vec!["-c", script.as_str(), sandbox::BIN];
    all.extend_from_slice(args);
    sandbox::run_within(&mut s.command("sh", &all), Duration::from_secs(60))
}

/// The heap limit for [`tka_in_memory`]: far below 100 MB.
const HEAP_KIB: u64 = 48 * 1024;

#[test]
fn the_heap_limit_refuses_a_command_that_holds_100_mb() {
    // What the memory-bounded tests below rely on: under HEAP_KIB, a
    // process that allocates a 100 MB buffer (dd with bs=100M) cannot.
    let s = sandbox::Sandbox::new();
    let script = format!("ulimit -d {HEAP_KIB} && exec dd if=/dev/zero of=/dev/null bs=100M count=1");
    let r = sandbox::run(&mut s.command("sh", &["-c", &script]));
    assert_ne!(r.0, 0, "a 100 MB allocation succeeded under the limit: {r:?}");
    assert!(r.2.contains("memory exhausted"), "{r:?}");
}

#[test]
fn documented_limits() {
    assert_eq!(MAX_JWS_SIZE, 64 * 1024, "token and token revocation list");
    assert_eq!(MAX_REQUEST_SIZE, 16 * 1024, "activation request");
    assert_eq!(MAX_CERT_SIZE, 16 * 1024, "one certificate");
    assert_eq!(MAX_CHAIN_LEN, 5, "certificates in x5c");
    assert_eq!(MAX_COMPONENTS, 32, "components in a request");
}

// ---------------------------------------------------------------------------
// Tokens and token revocation lists.

#[test]
fn hundred_megabyte_revocation_list_is_refused_on_size() {
    let text = "A".repeat(100 * MIB);
    let e = jws::decode(&text, REVOCATION_TYP).unwrap_err();
    assert_eq!(e, VerifyError::TooLarge { what: "token", limit: MAX_JWS_SIZE });
}

#[test]
fn token_one_byte_over_the_limit_is_too_large() {
    let text = "A".repeat(MAX_JWS_SIZE + 1);
    refused(jws::decode(&text, TOKEN_TYP), "token is larger than the 65536-byte limit");
    // At the limit, the size check passes and structure is checked next.
    refused(
        jws::decode(&text[1..], TOKEN_TYP),
        "malformed token: expected 3 dot-separated parts (JWS compact form), found 1",
    );
}

#[test]
fn deeply_nested_token_header_within_size_is_refused_cleanly() {
    // 20 000 nested arrays fit in 64 KiB of base64url; serde_json's recursion
    // limit (128) refuses them without overflowing the stack.
    use base64::Engine;
    let json = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let text = format!("{h}.e30.AA");
    assert!(text.len() <= MAX_JWS_SIZE);
    let e = jws::decode(&text, TOKEN_TYP).unwrap_err();
    assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }), "{e:?}");
}

// ---------------------------------------------------------------------------
// Activation requests.

#[test]
fn hundred_megabyte_request_is_refused_on_size() {
    let mut text = String::from("{\"version\":1,\"product\":\"");
    text.push_str(&"a".repeat(100 * MIB));
    let e = ActivationRequest::parse(&text).unwrap_err();
    assert_eq!(e, VerifyError::TooLarge { what: "request", limit: MAX_REQUEST_SIZE });
    let text = format!("TKAR1-{}", "A".repeat(100 * MIB));
    refused(ActivationRequest::parse(&text), "request is larger than the 16384-byte limit");
}

#[test]
fn request_one_byte_over_the_limit_is_too_large() {
    let text = format!("{}{}", "{", " ".repeat(MAX_REQUEST_SIZE));
    refused(ActivationRequest::parse(&text), "request is larger than the 16384-byte limit");
}

#[test]
fn deeply_nested_request_is_refused_cleanly() {
    let text = format!("{{\"version\":{}1{}}}", "[".repeat(8_000), "]".repeat(8_000));
    assert!(text.len() <= MAX_REQUEST_SIZE);
    let e = ActivationRequest::parse(&text).unwrap_err();
    assert!(matches!(e, VerifyError::Malformed { what: "request", .. }), "{e:?}");
}

#[test]
fn request_fields_and_components_are_bounded() {
    let base = || serde_json::json!({"version": 1, "product": "p", "cmid": "c", "components": [], "created": 0, "nonce": "AAAAAAAAAAA"});
    let mut long = base();
    long["product"] = "p".repeat(256).into();
    refused(ActivationRequest::parse(&long.to_string()), &format!("malformed request: product {:?} is not a product name (1 to 64 letters, digits, '.', '_' or '-', not starting with '.')", "p".repeat(256)));
    let mut many = base();
    many["components"] =
        (0..=MAX_COMPONENTS).map(|i| serde_json::json!({"k": format!("k{i}"), "h": "AAAAAAAAAAAAAAAA"})).collect();
    let e = ActivationRequest::parse(&many.to_string()).unwrap_err();
    assert!(matches!(&e, VerifyError::Malformed { detail, .. } if detail.contains("components")), "{e:?}");
}

// ---------------------------------------------------------------------------
// Certificates, chains and CRLs.

/// DER: `depth` nested SEQUENCEs (definite lengths), innermost empty.
fn nested_der(depth: usize) -> Vec<u8> {
    let mut v: Vec<u8> = vec![0x30, 0x00];
    for _ in 0..depth {
        let len = v.len();
        let mut outer = vec![0x30];
        if len < 0x80 {
            outer.push(len as u8);
        } else if len < 0x100 {
            outer.extend([0x81, len as u8]);
        } else if len < 0x10000 {
            outer.extend([0x82, (len >> 8) as u8, len as u8]);
        } else {
            outer.extend([0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]);
        }
        outer.extend(v);
        v = outer;
    }
    v
}

#[test]
fn hundred_megabyte_crl_is_refused_on_size() {
    let mut der = vec![0u8; 100 * MIB];
    der[0] = 0x30;
    let e = Crl::parse(&der).unwrap_err();
    assert_eq!(e, VerifyError::TooLarge { what: "CRL", limit: MAX_CRL_SIZE });
    refused(Crl::parse(&der[..MAX_CRL_SIZE + 1]), "CRL is larger than the 1048576-byte limit");
}

#[test]
fn deeply_nested_crl_is_refused_cleanly() {
    let der = nested_der(100_000);
    assert!(der.len() <= MAX_CRL_SIZE, "{}", der.len());
    assert!(matches!(Crl::parse(&der), Err(VerifyError::Malformed { what: "CRL", .. })));
}

#[test]
fn oversized_and_deeply_nested_certificates_are_refused_cleanly() {
    let big = vec![0x30u8; MAX_CERT_SIZE + 1];
    let too_large = "certificate (unparsed): larger than 16384 bytes";
    assert_eq!(CertInfo::parse(&big).unwrap_err().to_string(), too_large);
    let huge = vec![0x30u8; 100 * MIB];
    assert_eq!(CertInfo::parse(&huge).unwrap_err().to_string(), too_large);
    let nested = nested_der(3_000);
    assert!(nested.len() <= MAX_CERT_SIZE);
    refused(CertInfo::parse(&nested), "certificate (unparsed): not X.509 DER: Parsing Error: InvalidSerial");
}

#[test]
fn chain_length_is_bounded_before_any_parsing() {
    let anchors = TrustAnchors::from_der(&[common::pki().root.clone()]).unwrap();
    // Six entries of garbage: refused for the count, not parsed.
    let chain = vec![b"garbage".to_vec(); MAX_CHAIN_LEN + 1];
    let e = validate_path(&chain, &anchors, common::NOW, &[], LeafRole::TokenSigner).unwrap_err();
    assert!(matches!(&e, VerifyError::BadCertificate { subject, .. } if subject == "chain"), "{e:?}");
    // Five real certificates are allowed: the trusted root repeated after
    // itself certifies the one before it (self-signed), so the path is
    // signer, issuing CA, root.
    let p = common::pki();
    let five = vec![p.signer.clone(), p.int.clone(), p.root.clone(), p.root.clone(), p.root.clone()];
    let path = validate_path(&five, &anchors, common::NOW, &[], LeafRole::TokenSigner).unwrap();
    assert_eq!(path.certs.len(), 3);
}

// ---------------------------------------------------------------------------
// Through the binary: huge files other than tokens are not read whole.

fn sparse(s: &sandbox::Sandbox, name: &str, size: u64) {
    let f = std::fs::File::create(s.path(name)).unwrap();
    f.set_len(size).unwrap();
}

#[test]
fn cli_refuses_huge_crl_request_root_and_passphrase_files_unread() {
    let s = sandbox::Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.token(sandbox::PRODUCT, "t.jws");
    // 1 TiB: refused for its size means read with a bound (see TIB).
    sparse(&s, "huge", TIB);
    // Private, so that a passphrase file is refused for its size, not its mode.
    std::fs::set_permissions(s.path("huge"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    s.ok(&["trust", "add", "home/root.pem"]);
    let before = s.snapshot("store");
    for (args, code, first_line) in [
        (
            &["token", "verify", "t.jws", "--trust", "home/root.pem", "--crl", "huge"][..],
            1,
            "error: CRL is larger than the 2097152-byte limit",
        ),
        (&["token", "verify", "t.jws", "--trust", "huge"][..], 2, "error: huge is larger than the 1048576-byte limit"),
        (&["trust", "add", "huge"][..], 2, "error: huge is larger than the 1048576-byte limit"),
        (
            &["request", "create", "--product", "p", "--machine-id-file", "huge"][..],
            2,
            "error: unusable explicit machine identity: cannot read huge: it is larger than the 65536-byte limit",
        ),
        (
            &["token", "issue", "--request", "req-example-pro.json", "--home", "home", "--passphrase-file", "huge"][..],
            2,
            "error: huge is larger than the 4096-byte limit",
        ),
    ] {
        let (got, out, err) = s.tka_guarded(args);
        assert_eq!((got, err.lines().next().unwrap_or("")), (code, first_line), "{args:?}: {out}{err}");
    }
    assert_eq!(s.snapshot("store"), before, "a refused file changes nothing");
}

#[test]
fn cli_issue_bulk_refuses_an_overlong_request_line_without_reading_it_whole() {
    let s = sandbox::Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.ok(&["entitlement", "add", "--home", "home", "--product", sandbox::PRODUCT, "--machines", "5", "--name", "e"]);
    s.ok(&["request", "create", "--product", sandbox::PRODUCT, "--text", "--out", "req.txt"]);
    let good = std::fs::read_to_string(s.path("req.txt")).unwrap();
    // Line 1: 100 MB without a newline (a sparse file of zero bytes); line 2: a good request.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(s.path("reqs.txt")).unwrap();
        f.seek(SeekFrom::Start(100 * MIB as u64)).unwrap();
        f.write_all(format!("\n{good}").as_bytes()).unwrap();
    }
    // Within a heap far smaller than the line: it is read through, never held.
    let (code, out, err) = tka_in_memory(
        &s,
        HEAP_KIB,
        &[
            "token",
            "issue-bulk",
            "--home",
            "home",
            "--entitlement",
            "e",
            "--requests-file",
            "reqs.txt",
            "--out",
            "out",
            "--quiet",
            "--report",
            "report.json",
        ],
    );
    // A malformed request item makes the run exit 2 (an error in the input).
    assert_eq!(code, 2, "the malformed item refused, the rest issued: {out}{err}");
    let report = std::fs::read_to_string(s.path("report.json")).unwrap();
    assert!(report.contains("larger than the 16384-byte limit"), "{report}");
    assert_eq!(std::fs::read_dir(s.path("out")).unwrap().count(), 1, "the good request was issued");
}

#[test]
fn cli_activate_bundle_skips_an_overlong_line_without_holding_it() {
    let s = sandbox::Sandbox::new();
    s.issuer_and_trust();
    // A 100 MB bundle that is one line of zero bytes (a sparse file): read
    // through to its end (a later line may be this machine's), never held.
    sparse(&s, "bundle.jsonl", 100 * MIB as u64);
    // Within a heap far smaller than the line (HEAP_KIB).
    let (code, out, err) = tka_in_memory(&s, HEAP_KIB, &["activate", "--bundle", "bundle.jsonl"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "error: bundle.jsonl holds no token for this machine (1 line read; none labelled for it; 1 not a bundle \
             line: line 1: bundle line is larger than the {}-byte limit)",
            tka::activation::MAX_BUNDLE_LINE
        )
    );
    assert!(tka::store::Store::open(&s.store()).unwrap().tokens().unwrap().is_empty());
}

#[test]
fn cli_revocations_import_refuses_a_huge_file_unread() {
    let s = sandbox::Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.ok(&["trust", "add", "home/root.pem", "--store", "store"]);
    sparse(&s, "huge", TIB);
    let (code, _, err) = s.tka_guarded(&["revocations", "import", "huge", "--store", "store"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().next().unwrap(), "error: revocation file is larger than the 1048576-byte limit");
}

// ---------------------------------------------------------------------------
// Files that are not regular files (review F8): `/dev/zero` used to be read
// until memory ran out and a FIFO blocked forever, because the size check
// trusted the size the file system reports. Every file tka is named is now
// opened without blocking, refused unless it is a regular file, and read
// through a cap. `tka_guarded` kills a command that blocks, so a regression
// fails instead of hanging.

/// A sandbox with an issuer home and a request (`req.json`) for PRODUCT, and
/// a FIFO with no writer at `fifo`.
fn issuer_with_fifo() -> sandbox::Sandbox {
    let s = sandbox::Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.ok(&["request", "create", "--product", sandbox::PRODUCT, "--out", "req.json"]);
    sandbox::mkfifo(&s.path("fifo"));
    s
}

#[test]
fn cli_refuses_dev_zero_and_a_fifo_as_machine_id_file() {
    let s = issuer_with_fifo();
    for (file, kind) in [("/dev/zero", "a character device"), ("fifo", "a FIFO")] {
        let r = s.tka_guarded(&["request", "create", "--product", "p", "--machine-id-file", file, "--out", "r.json"]);
        sandbox::assert_fails(
            &r,
            2,
            &format!("unusable explicit machine identity: cannot read {file}: it is {kind}, not a regular file"),
        );
        assert!(!s.path("r.json").exists());
    }
}

#[test]
fn cli_refuses_dev_zero_and_a_fifo_as_passphrase_file() {
    let s = issuer_with_fifo();
    for (file, kind) in [("/dev/zero", "a character device"), ("fifo", "a FIFO")] {
        let r = s.tka_guarded(&[
            "token",
            "issue",
            "--request",
            "req.json",
            "--home",
            "home",
            "--passphrase-file",
            file,
            "--out",
            "t.jws",
        ]);
        sandbox::assert_fails(&r, 2, &format!("{file} is {kind}, not a regular file: refusing to read it"));
        assert!(!s.path("t.jws").exists());
    }
}

#[test]
fn cli_refuses_dev_zero_and_a_fifo_as_request_file() {
    let s = issuer_with_fifo();
    for (file, kind) in [("/dev/zero", "a character device"), ("fifo", "a FIFO")] {
        let r = s.tka_guarded(&["token", "issue", "--request", file, "--home", "home", "--out", "t.jws"]);
        sandbox::assert_fails(&r, 2, &format!("{file} is {kind}, not a regular file: refusing to read it"));
        assert!(!s.path("t.jws").exists());
    }
}

#[test]
fn cli_refuses_a_fifo_as_token_crl_bundle_and_requests_file() {
    let s = issuer_with_fifo();
    s.ok(&["trust", "add", "home/root.pem"]);
    s.token(sandbox::PRODUCT, "t.jws");
    let before = s.snapshot("store");
    for args in [
        &["token", "verify", "fifo", "--trust", "home/root.pem"][..],
        &["token", "verify", "t.jws", "--trust", "home/root.pem", "--crl", "fifo"][..],
        &["trust", "add", "fifo"][..],
        &["activate", "--bundle", "fifo"][..],
        &["revocations", "import", "fifo"][..],
        &["token", "issue-bulk", "--home", "home", "--entitlement", "e", "--requests-file", "fifo", "--out", "o"][..],
    ] {
        let r = s.tka_guarded(args);
        sandbox::assert_fails(&r, 2, "fifo is a FIFO, not a regular file: refusing to read it");
    }
    assert_eq!(s.snapshot("store"), before);
}

#[test]
fn cli_refuses_a_passphrase_file_over_the_limit() {
    let s = issuer_with_fifo();
    s.write_secret("big.txt", format!("{}\n", "p".repeat(tka::keys::MAX_PASSPHRASE_FILE as usize)));
    let r = s.tka_guarded(&[
        "token",
        "issue",
        "--request",
        "req.json",
        "--home",
        "home",
        "--passphrase-file",
        "big.txt",
        "--out",
        "t.jws",
    ]);
    sandbox::assert_fails(&r, 2, "big.txt is larger than the 4096-byte limit");
    assert!(!s.path("t.jws").exists());
}

#[test]
fn cli_refuses_a_machine_id_file_over_the_limit() {
    let s = sandbox::Sandbox::new();
    s.write("big-id", "a".repeat(64 * 1024 + 1));
    let r = s.tka_guarded(&["machine", "id", "--product", "p", "--machine-id-file", "big-id"]);
    sandbox::assert_fails(
        &r,
        2,
        "unusable explicit machine identity: cannot read big-id: it is larger than the 65536-byte limit",
    );
}

/// The refusal's exact text: the rule it breaks, not only its kind.
#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, VerifyError>, want: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.to_string(), want, "refused for another reason: {e:?}");
}
