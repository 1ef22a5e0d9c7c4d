//! Secrets never leak (issue 6 item 7): passphrases and private keys do not
//! appear in `Debug` output, error messages, `--help` (even with
//! `TKA_PASSPHRASE` set) or anything the binary prints, and the buffers that
//! hold them are all zero when freed (a watching allocator checks).
//!
//! Key-file permissions (refused when group/others can read, unless
//! `--insecure-key-permissions`) are covered by
//! `tests/cli.rs::group_readable_key_is_refused_unless_allowed`.

mod common;
mod sandbox;
mod tools;

use sandbox::Sandbox;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use tka::keys::{load_private_key, save_private_key, KeyProtection, Passphrase, Signer, SoftwareKey};

const MARKER: &str = "s3cr3t-Marker-7f3a";

#[test]
fn passphrase_debug_is_redacted() {
    let p = Passphrase::new(MARKER.into());
    let d = format!("{p:?} {:#?}", p);
    assert!(!d.contains(MARKER), "{d}");
    assert!(d.contains("redacted"), "{d}");
}

#[test]
fn software_key_and_signer_debug_show_no_key_material() {
    use rsa::traits::PublicKeyParts;
    let key = common::test_key("signer");
    let n_hex: String = key.public_key().n().to_be_bytes().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let d = format!("{key:?} {:#?}", key);
    assert!(!d.to_lowercase().contains(&n_hex), "{d}");
    assert!(d.len() < 64, "Debug of a key should be a short label: {d}");
    let p = common::pki();
    let signer = tka::issuer::issue::TokenSigner::new(Box::new(key), vec![p.signer.clone(), p.int.clone()]).unwrap();
    let d = format!("{signer:?}");
    assert!(d.len() < 200 && !d.to_lowercase().contains(&n_hex), "{d}");
}

// ----- zeroizing, checked by what a buffer holds when it is freed -----

/// The system allocator, watching one buffer: when the block at `WATCHED`
/// is freed, it records whether its bytes were all zero at that moment.
struct Watching;

static WATCHED: AtomicUsize = AtomicUsize::new(0);
/// 0: not freed yet; 1: freed all zero; 2: freed with its contents.
static FREED: AtomicU8 = AtomicU8::new(0);
static ONE_WATCH: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize != 0 && WATCHED.compare_exchange(ptr as usize, 0, SeqCst, SeqCst).is_ok() {
            // SAFETY: the block is still allocated (freed below) and `layout.size()` long.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            FREED.store(if bytes.iter().all(|&b| b == 0) { 1 } else { 2 }, SeqCst);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Drops `value`, whose heap buffer starts at `buffer`; whether that
/// buffer was all zero when it was freed.
fn zeroed_when_freed<T>(value: T, buffer: *const u8) -> bool {
    let _one = ONE_WATCH.lock().unwrap_or_else(|e| e.into_inner());
    FREED.store(0, SeqCst);
    WATCHED.store(buffer as usize, SeqCst);
    drop(value);
    let freed = FREED.load(SeqCst);
    assert_ne!(freed, 0, "the watched buffer was not freed by the drop");
    freed == 1
}

#[test]
fn a_plain_string_is_freed_with_its_contents() {
    // The check can fail: an ordinary String keeps the secret until freed.
    let s = MARKER.to_string();
    let p = s.as_ptr();
    assert!(!zeroed_when_freed(s, p));
}

#[test]
fn a_passphrase_is_zero_when_freed() {
    let s = MARKER.to_string();
    let p = s.as_ptr();
    assert!(zeroed_when_freed(Passphrase::new(s), p));
}

#[test]
fn a_private_key_pem_is_zero_when_freed() {
    let key = common::test_key("signer");
    let pass = Passphrase::new(MARKER.into());
    for pem in [
        key.to_pkcs8_pem(KeyProtection::InsecurePlaintext).unwrap(),
        key.to_pkcs8_pem(KeyProtection::Passphrase(&pass)).unwrap(),
    ] {
        let p = pem.as_ptr();
        assert!(zeroed_when_freed(pem, p));
    }
}

#[test]
fn wrong_passphrase_errors_do_not_echo_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("k.key");
    let key = common::test_key("signer");
    save_private_key(&path, &key, KeyProtection::Passphrase(&Passphrase::new("right one".into())), false).unwrap();
    let e = load_private_key(&path, Some(&Passphrase::new(MARKER.into())), false).unwrap_err();
    // (Hints are fixed texts in the binary, which never quote an error.)
    let text = format!("{e} {e:?}");
    assert!(!text.contains(MARKER), "{text}");
    assert!(matches!(e, tka::Error::WrongPassphrase { .. }), "{e:?}");
    // Nor is the key's content in the error for a damaged file.
    let pem = std::fs::read_to_string(&path).unwrap();
    let damaged = pem.replacen("MII", "MIX", 1);
    let e = SoftwareKey::from_pkcs8_pem(&damaged, Some(&Passphrase::new("right one".into())), Path::new("k.key"))
        .unwrap_err();
    let body_line = pem.lines().nth(2).unwrap();
    assert!(!format!("{e} {e:?}").contains(body_line), "{e:?}");
}

/// Every subcommand path, discovered from `--help` (so new commands are covered too).
fn command_paths(s: &Sandbox) -> Vec<Vec<String>> {
    fn subcommands(help: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut inside = false;
        for line in help.lines() {
            if line.starts_with("Commands:") {
                inside = true;
                continue;
            }
            if inside {
                if !line.starts_with("  ") {
                    break;
                }
                let name = line.split_whitespace().next().unwrap_or("");
                if !name.is_empty() && name != "help" && line.starts_with("  ") && !line.starts_with("   ") {
                    out.push(name.to_string());
                }
            }
        }
        out
    }
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let mut args = paths[i].clone();
        args.push("--help".into());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let help = s.ok(&a);
        for sub in subcommands(&help) {
            let mut p = paths[i].clone();
            p.push(sub);
            paths.push(p);
        }
        i += 1;
    }
    paths
}

#[test]
fn help_never_shows_the_passphrase_from_the_environment() {
    let s = Sandbox::new();
    let paths = command_paths(&s);
    assert!(paths.len() > 10, "{paths:?}");
    for p in &paths {
        for flag in ["--help", "-h"] {
            let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
            args.push(flag);
            let out = s.cmd(&args).env("TKA_PASSPHRASE", MARKER).output().unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(!text.contains(MARKER), "tka {args:?} printed an environment secret:\n{text}");
        }
    }
}

#[test]
fn cli_output_never_contains_the_passphrase() {
    let s = Sandbox::new();
    // Success paths: key generation, issuer init, issuance.
    let run = |args: &[&str]| {
        let out = s.cmd(args).env("TKA_PASSPHRASE", MARKER).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains(MARKER), "tka {args:?} printed the passphrase:\n{text}");
        (out.status.code(), text)
    };
    assert_eq!(run(&["key", "generate", "--bits", "2048", "--out", "k.key"]).0, Some(0));
    assert_eq!(
        run(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]).0,
        Some(0)
    );
    run(&["request", "create", "--product", "p", "--out", "req.json"]);
    assert_eq!(run(&["token", "issue", "--request", "req.json", "--home", "home", "--out", "t.jws"]).0, Some(0));
    // Failure paths: the wrong passphrase, from the environment and from a file.
    let out = s
        .cmd(&["ca", "root", "--key", "k.key", "--subject", "CN=R", "--out", "r.pem"])
        .env("TKA_PASSPHRASE", MARKER)
        .output()
        .unwrap();
    assert!(out.status.success());
    let wrong = format!("{MARKER}-wrong");
    let out = s
        .cmd(&["ca", "root", "--key", "k.key", "--subject", "CN=R", "--out", "r2.pem"])
        .env("TKA_PASSPHRASE", &wrong)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("wrong passphrase") && !err.contains(MARKER), "{err}");
    s.write_secret("pass.txt", format!("{wrong}\n"));
    let out = s
        .cmd(&["ca", "root", "--key", "k.key", "--subject", "CN=R", "--out", "r3.pem", "--passphrase-file", "pass.txt"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong passphrase") && !err.contains(MARKER), "{err}");
    // The key file itself is private and encrypted.
    let pem = std::fs::read_to_string(s.path("k.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(s.path("k.key")).unwrap().permissions().mode() & 0o777, 0o600);
}

// ---------------------------------------------------------------------------
// Passphrase and PIN files are secrets like key files (review #17 item 7):
// one that group or others can read is refused unless the user passes the
// key files' escape, --insecure-key-permissions.

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn passphrase_file_readable_by_others_is_refused_by_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pin.txt");
    std::fs::write(&path, format!("{MARKER}\n")).unwrap();
    chmod(&path, 0o644);
    let e = Passphrase::from_file(&path, false).unwrap_err();
    assert!(matches!(&e, tka::Error::InsecureSecretPermissions { path: p, mode: 0o644 } if p == &path), "{e:?}");
    assert!(!format!("{e} {e:?}").contains(MARKER));
    chmod(&path, 0o640);
    let e = Passphrase::from_file(&path, false).unwrap_err();
    assert!(matches!(e, tka::Error::InsecureSecretPermissions { mode: 0o640, .. }), "{e:?}");
    // Accepted when the user explicitly allows it, and at 0600.
    assert!(Passphrase::from_file(&path, true).is_ok());
    chmod(&path, 0o600);
    assert!(Passphrase::from_file(&path, false).is_ok());
}

#[test]
fn cli_refuses_a_world_readable_passphrase_file_unless_allowed() {
    let s = Sandbox::new();
    s.ok(&["issuer", "init", "--org", "tka", "--home", "home", "--root-bits", "2048", "--ca-bits", "2048"]);
    s.ok(&["request", "create", "--product", "p", "--out", "req.json"]);
    s.write("pass.txt", format!("{}\n", sandbox::PASS));
    chmod(&s.path("pass.txt"), 0o644);
    let before = s.snapshot("home");
    let issue = ["token", "issue", "--request", "req.json", "--home", "home", "--passphrase-file", "pass.txt"];
    let r = s.tka(&[&issue[..], &["--out", "t.jws"]].concat());
    sandbox::assert_fails(
        &r,
        2,
        "secret file pass.txt has permissions 0644: it must not be readable by group or others",
    );
    assert!(r.2.contains("\nhint: run chmod 600 on the file, or pass --insecure-key-permissions"), "{r:?}");
    assert!(!s.path("t.jws").exists());
    assert_eq!(s.snapshot("home"), before);
    s.ok(&[&issue[..], &["--out", "t.jws", "--insecure-key-permissions"]].concat());
    // The same for a new key's passphrase file and for a PKCS#11 PIN file.
    let r = s.tka(&["key", "generate", "--bits", "2048", "--out", "k.key", "--passphrase-file", "pass.txt"]);
    sandbox::assert_fails(&r, 2, "secret file pass.txt has permissions 0644");
    assert!(!s.path("k.key").exists());
    let r = s.tka(&["pkcs11", "list", "--module", "/nonexistent.so", "--login", "--pin-file", "pass.txt"]);
    sandbox::assert_fails(&r, 2, "secret file pass.txt has permissions 0644");
}
