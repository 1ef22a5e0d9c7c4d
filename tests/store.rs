//! The activation store through its public API: layout, roots, tokens,
//! state, clock rollback, corruption, versioning and concurrency.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tka::store::{
    check_clock, Store, StoreError, StoreState, DEFAULT_CLOCK_TOLERANCE_SECS, LAYOUT_VERSION, MAX_TOKEN_FILE,
};

/// A fresh store in its own temp directory (kept alive by the guard).
fn new_store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    (tmp, store)
}

/// Stand-in certificate bytes: a DER SEQUENCE; the store checks no more.
fn fake_cert(n: u16) -> Vec<u8> {
    let [a, b] = n.to_be_bytes();
    vec![0x30, 0x04, 0x04, 0x02, a, b]
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|b| format!("{b:02x}")).collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file under `dir` whose name starts with '.' (write temporaries).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            found.push(path.clone());
        }
        if path.is_dir() {
            found.extend(temp_files(&path));
        }
    }
    found
}

fn assert_no_temp_files(store: &Store) {
    assert_eq!(temp_files(store.dir()), Vec::<PathBuf>::new());
}

// ----- layout -----

#[test]
fn open_creates_private_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/store");
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.dir(), dir);
    assert_eq!(mode(&dir), 0o700);
    for sub in ["roots", "tokens", "crls", "revocations"] {
        assert!(dir.join(sub).is_dir(), "{sub}");
        assert_eq!(mode(&dir.join(sub)), 0o755, "{sub}");
    }
    assert_eq!(fs::read_to_string(dir.join("version")).unwrap(), format!("{LAYOUT_VERSION}\n"));
    assert_eq!(store.state().unwrap(), StoreState::default());
    assert!(store.roots().unwrap().is_empty());
    assert!(store.tokens().unwrap().is_empty());
    assert!(store.crls().unwrap().is_empty());
    assert!(store.revocation_lists().unwrap().is_empty());
    assert_no_temp_files(&store);

    // Re-opening an existing store changes nothing.
    store.lock().unwrap().put_token("p", "t", 5).unwrap();
    let again = Store::open(&dir).unwrap();
    assert_eq!(again.token("p").unwrap().unwrap().token, "t");
}

#[test]
fn open_initialises_an_existing_empty_dir_but_not_a_foreign_one() {
    let tmp = tempfile::tempdir().unwrap();
    Store::open(tmp.path()).unwrap();
    assert!(tmp.path().join("version").is_file());

    let foreign = tempfile::tempdir().unwrap();
    fs::write(foreign.path().join("notes.txt"), "mine").unwrap();
    match Store::open(foreign.path()) {
        Err(StoreError::NotAStore { path, detail }) => {
            assert_eq!(path, foreign.path());
            assert!(detail.contains("notes.txt"), "{detail}");
        }
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert!(!foreign.path().join("version").exists(), "left untouched");

    let file = foreign.path().join("notes.txt");
    assert!(matches!(Store::open(&file), Err(StoreError::NotAStore { path, .. }) if path == file));
}

#[test]
fn concurrent_first_opens_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| Store::open(&dir))).collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.state().unwrap(), StoreState::default());
    assert_no_temp_files(&store);
}

#[test]
fn group_writable_store_is_refused() {
    let (_tmp, store) = new_store();
    fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o770)).unwrap();
    match Store::open(store.dir()) {
        Err(StoreError::InsecurePermissions { path, mode }) => {
            assert_eq!(path, store.dir());
            assert_eq!(mode & 0o777, 0o770);
        }
        other => panic!("expected InsecurePermissions, got {other:?}"),
    }
    fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o700)).unwrap();
    let roots = store.dir().join("roots");
    fs::set_permissions(&roots, fs::Permissions::from_mode(0o757)).unwrap();
    assert!(matches!(Store::open(store.dir()), Err(StoreError::InsecurePermissions { path, .. }) if path == roots));
}

#[test]
fn newer_layout_version_is_refused_and_left_alone() {
    let (_tmp, store) = new_store();
    let version = store.dir().join("version");
    fs::write(&version, "2\n").unwrap();
    match Store::open(store.dir()) {
        Err(StoreError::NewerVersion { path, found, supported }) => {
            assert_eq!(path, version);
            assert_eq!(found, 2);
            assert_eq!(supported, LAYOUT_VERSION);
        }
        other => panic!("expected NewerVersion, got {other:?}"),
    }
    assert_eq!(fs::read_to_string(&version).unwrap(), "2\n");
    let msg = Store::open(store.dir()).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "{} says store layout version 2, but this tka understands only up to 1; use a newer tka",
            version.display()
        )
    );
}

#[test]
fn default_dir() {
    let home = Path::new("/home/ann");
    assert_eq!(Store::default_dir_for(true, Some(home), None), Path::new("/var/lib/tka"));
    assert_eq!(Store::default_dir_for(false, Some(home), None), Path::new("/home/ann/.local/share/tka"));
    assert_eq!(Store::default_dir_for(false, Some(home), Some(Path::new("/data"))), Path::new("/data/tka"));
}

// ----- roots -----

#[test]
fn roots_add_list_remove() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    let (c1, c2) = (fake_cert(1), fake_cert(2));
    let fp1 = lock.add_root(&c1).unwrap();
    let fp2 = lock.add_root(&c2).unwrap();
    assert_eq!(fp1, sha256_hex(&c1));
    assert_eq!(fp2, sha256_hex(&c2));
    // idempotent
    assert_eq!(lock.add_root(&c1).unwrap(), fp1);

    let roots = lock.roots().unwrap();
    let mut want = vec![(fp1.clone(), c1.clone()), (fp2.clone(), c2.clone())];
    want.sort();
    let got: Vec<_> = roots.iter().map(|r| (r.fingerprint.clone(), r.der.clone())).collect();
    assert_eq!(got, want, "sorted by fingerprint");
    for r in &roots {
        assert_eq!(r.path, store.dir().join("roots").join(format!("{}.pem", r.fingerprint)));
        assert_eq!(mode(&r.path), 0o644);
        let text = fs::read_to_string(&r.path).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
        assert!(text.ends_with("-----END CERTIFICATE-----\n"), "{text}");
    }

    // by upper-case, colon-separated prefix, as openssl prints it
    let sel: Vec<String> =
        fp1.as_bytes()[..8].chunks(2).map(|c| std::str::from_utf8(c).unwrap().to_uppercase()).collect();
    lock.remove_root(&sel.join(":"), false).unwrap();
    let left: Vec<_> = lock.roots().unwrap().into_iter().map(|r| r.fingerprint).collect();
    assert_eq!(left, vec![fp2]);
    drop(lock);
    assert_no_temp_files(&store);
}

#[test]
fn last_root_refused_unless_forced() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    let fp = lock.add_root(&fake_cert(7)).unwrap();
    assert!(matches!(lock.remove_root(&fp, false), Err(StoreError::LastRoot)));
    assert_eq!(lock.roots().unwrap().len(), 1);
    lock.remove_root(&fp, true).unwrap();
    assert!(lock.roots().unwrap().is_empty());
}

#[test]
fn remove_root_selector_errors() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    // Two certificates whose fingerprints share their first 4 hex digits.
    let mut seen: BTreeMap<String, u16> = BTreeMap::new();
    let (a, b) = (0u16..)
        .find_map(|n| {
            let fp = sha256_hex(&fake_cert(n));
            seen.insert(fp[..4].to_string(), n).map(|m| (m, n))
        })
        .unwrap();
    let fpa = lock.add_root(&fake_cert(a)).unwrap();
    let fpb = lock.add_root(&fake_cert(b)).unwrap();
    match lock.remove_root(&fpa[..4], false) {
        Err(StoreError::AmbiguousFingerprint { prefix, matches }) => {
            assert_eq!(prefix, fpa[..4]);
            let mut want = vec![fpa.clone(), fpb.clone()];
            want.sort();
            assert_eq!(matches, want);
        }
        other => panic!("expected AmbiguousFingerprint, got {other:?}"),
    }
    for bad in ["", "abc", "zzzz", "12 34"] {
        assert!(matches!(lock.remove_root(bad, true), Err(StoreError::BadFingerprint(s)) if s == bad), "{bad:?}");
    }
    let absent = if fpa.starts_with("ffff") { "0000" } else { "ffff" };
    match lock.remove_root(absent, true) {
        Err(StoreError::NotFound(msg)) => assert!(msg.contains(absent), "{msg}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(lock.roots().unwrap().len(), 2, "nothing removed");
}

/// A root's product scope is stored with it (`roots/<fp>.json`), read back
/// by `roots()`, replaced or dropped by re-adding, removed with the root; a
/// store without scope files (older layout) reads as "every product"; a
/// damaged scope file is corrupt.
#[test]
fn root_product_scope_round_trip() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    let fp = lock.add_root(&fake_cert(1)).unwrap();
    let fp2 = lock.add_root(&fake_cert(2)).unwrap();
    assert_eq!(lock.roots().unwrap()[0].products, None);
    let scope = vec!["b".to_string(), "a".to_string(), "b".to_string()];
    lock.add_root_with_products(&fake_cert(1), Some(&scope)).unwrap();
    let scope_file = store.dir().join("roots").join(format!("{fp}.json"));
    assert!(scope_file.exists());
    let roots = lock.roots().unwrap();
    let find = |f: &str| roots.iter().find(|r| r.fingerprint == f).unwrap().products.clone();
    assert_eq!(find(&fp), Some(vec!["a".to_string(), "b".to_string()]));
    assert_eq!(find(&fp2), None);

    for bad in [&[][..], &["../x".to_string()][..]] {
        assert!(matches!(lock.add_root_with_products(&fake_cert(1), Some(bad)), Err(StoreError::BadProduct(_))));
    }
    fs::write(&scope_file, r#"{"products": ["a"], "extra": 1}"#).unwrap();
    assert!(matches!(lock.roots(), Err(StoreError::Corrupt { path, .. }) if path == scope_file));
    fs::write(&scope_file, r#"{"products": []}"#).unwrap();
    assert!(matches!(lock.roots(), Err(StoreError::Corrupt { path, .. }) if path == scope_file));

    lock.add_root_with_products(&fake_cert(1), None).unwrap();
    assert!(!scope_file.exists());
    lock.add_root_with_products(&fake_cert(1), Some(&scope)).unwrap();
    lock.remove_root(&fp, false).unwrap();
    assert!(!scope_file.exists(), "the scope goes with its root");
    assert_eq!(lock.roots().unwrap().len(), 1);
    drop(lock);
    assert_no_temp_files(&store);
}

#[test]
fn add_root_rejects_non_der() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    assert!(matches!(lock.add_root(b""), Err(StoreError::BadCertificate(_))));
    assert!(matches!(lock.add_root(b"-----BEGIN CERTIFICATE-----"), Err(StoreError::BadCertificate(_))));
    let huge = [vec![0x30], vec![0; 40 * 1024]].concat();
    assert!(matches!(lock.add_root(&huge), Err(StoreError::TooLarge { .. })));
    assert!(lock.roots().unwrap().is_empty());
}

#[test]
fn tampered_root_file_is_corrupt() {
    let (_tmp, store) = new_store();
    let fp = store.lock().unwrap().add_root(&fake_cert(1)).unwrap();
    let path = store.dir().join("roots").join(format!("{fp}.pem"));
    let other = fs::read_to_string(
        store.dir().join("roots").join(format!("{}.pem", store.lock().unwrap().add_root(&fake_cert(2)).unwrap())),
    )
    .unwrap();
    fs::write(&path, other).unwrap();
    match store.roots() {
        Err(StoreError::Corrupt { path: p, detail }) => {
            assert_eq!(p, path);
            assert!(detail.contains("fingerprint"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A corrupt root can still be removed by name.
    store.lock().unwrap().remove_root(&fp, false).unwrap();
    assert_eq!(store.roots().unwrap().len(), 1);
}

#[test]
fn unexpected_file_in_store_dir_is_corrupt() {
    let (_tmp, store) = new_store();
    let stray = store.dir().join("roots").join("root.crt");
    fs::write(&stray, "x").unwrap();
    assert!(matches!(store.roots(), Err(StoreError::Corrupt { path, .. }) if path == stray));
}

// ----- tokens -----

#[test]
fn tokens_put_replace_remove() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    lock.put_token("zeta", "z.z.z", 100).unwrap();
    lock.put_token("alpha", "a.a.a", 200).unwrap();
    lock.put_token("alpha.pro", "p.p.p", 300).unwrap();
    let products: Vec<_> = lock.tokens().unwrap().into_iter().map(|t| t.product).collect();
    assert_eq!(products, ["alpha", "alpha.pro", "zeta"]);

    lock.put_token("alpha", "a2.a2.a2", 400).unwrap();
    let t = lock.token("alpha").unwrap().unwrap();
    assert_eq!((t.product.as_str(), t.token.as_str(), t.installed_at), ("alpha", "a2.a2.a2", 400));
    assert_eq!(lock.tokens().unwrap().len(), 3);

    assert!(lock.remove_token("alpha").unwrap());
    assert!(!lock.remove_token("alpha").unwrap());
    assert_eq!(lock.token("alpha").unwrap(), None);
    assert_eq!(lock.token("never").unwrap(), None);
    assert_eq!(lock.tokens().unwrap().len(), 2);
    drop(lock);
    assert_no_temp_files(&store);
}

#[test]
fn bad_product_names() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    let long = "p".repeat(65);
    for bad in ["", ".hidden", "..", "a/b", "../x", "a b", "caf\u{e9}", "x\n", long.as_str()] {
        let is_bad = |r: Result<(), StoreError>| matches!(r, Err(StoreError::BadProduct(n)) if n == bad);
        assert!(is_bad(lock.put_token(bad, "t", 1)), "put {bad:?}");
        assert!(is_bad(lock.token(bad).map(|_| ())), "get {bad:?}");
        assert!(is_bad(lock.remove_token(bad).map(|_| ())), "remove {bad:?}");
    }
    lock.put_token(&"p".repeat(64), "t", 1).unwrap();
    lock.put_token("A-z_0.9", "t", 1).unwrap();
    assert_eq!(
        StoreError::BadProduct("a/b".into()).to_string(),
        "invalid product name \"a/b\": use 1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with '.'"
    );
}

#[test]
fn oversized_tokens_refused_both_ways() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    let big = "x".repeat(MAX_TOKEN_FILE);
    assert!(matches!(
        lock.put_token("p", &big, 1),
        Err(StoreError::TooLarge { limit, .. }) if limit == MAX_TOKEN_FILE
    ));
    assert_eq!(lock.token("p").unwrap(), None);

    let path = store.dir().join("tokens/p.json");
    fs::write(&path, vec![b' '; MAX_TOKEN_FILE + 1]).unwrap();
    assert!(matches!(lock.token("p"), Err(StoreError::Corrupt { path: p, .. }) if p == path));
}

#[test]
fn token_file_for_another_product_is_corrupt() {
    let (_tmp, store) = new_store();
    store.lock().unwrap().put_token("a", "t", 1).unwrap();
    let (a, b) = (store.dir().join("tokens/a.json"), store.dir().join("tokens/b.json"));
    fs::copy(&a, &b).unwrap();
    assert!(matches!(store.token("b"), Err(StoreError::Corrupt { path, .. }) if path == b));
    assert!(matches!(store.tokens(), Err(StoreError::Corrupt { path, .. }) if path == b));
}

// ----- revocation data -----

#[test]
fn crls_and_revocation_lists() {
    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    lock.put_crl("bb", b"crl-b").unwrap();
    lock.put_crl("aa", b"crl-a").unwrap();
    lock.put_crl("bb", b"crl-b2").unwrap();
    assert_eq!(lock.crls().unwrap(), vec![b"crl-a".to_vec(), b"crl-b2".to_vec()]);
    assert_eq!(lock.crl("aa").unwrap(), Some(b"crl-a".to_vec()));

    lock.put_revocation_list("02", "r2").unwrap();
    lock.put_revocation_list("01", "r1").unwrap();
    lock.put_revocation_list("01", "r1b").unwrap();
    assert_eq!(lock.revocation_lists().unwrap(), ["r1b", "r2"]);
    assert_eq!(lock.revocation_list("02").unwrap().as_deref(), Some("r2"));

    for bad in ["", "AA", "a/b", "xyz"] {
        assert!(matches!(lock.put_crl(bad, b"x"), Err(StoreError::BadKey(k)) if k == bad));
        assert!(matches!(lock.put_revocation_list(bad, "x"), Err(StoreError::BadKey(k)) if k == bad));
    }
    assert!(lock.remove_crl("aa").unwrap());
    assert!(lock.remove_revocation_list("01").unwrap());
    assert_eq!(lock.crls().unwrap().len(), 1);
    assert_eq!(lock.revocation_lists().unwrap(), ["r2"]);
    drop(lock);
    assert_no_temp_files(&store);
}

// ----- state and clock -----

#[test]
fn state_round_trip() {
    let (_tmp, store) = new_store();
    let mut state = StoreState::default();
    state.observe(1_750_000_000);
    state.revocation_seq.insert("abcd".into(), 7);
    state.revocation_seq.insert("0123".into(), 1);
    store.lock().unwrap().save_state(&state).unwrap();
    assert_eq!(store.state().unwrap(), state);
    assert_eq!(Store::open(store.dir()).unwrap().state().unwrap(), state);
    assert_no_temp_files(&store);
}

#[test]
fn high_water_never_lowered() {
    let mut state = StoreState::default();
    state.observe(1000);
    state.observe(500);
    assert_eq!(state.clock_high_water, 1000);
    state.observe(2000);
    assert_eq!(state.clock_high_water, 2000);

    let (_tmp, store) = new_store();
    let lock = store.lock().unwrap();
    state.revocation_seq.insert("aa".into(), 5);
    lock.save_state(&state).unwrap();

    let path = store.dir().join("state.json");
    let mut back = state.clone();
    back.clock_high_water = 1999;
    assert!(matches!(lock.save_state(&back), Err(StoreError::Regression { path: p, .. }) if p == path));
    let mut back = state.clone();
    back.revocation_seq.insert("aa".into(), 4);
    assert!(matches!(lock.save_state(&back), Err(StoreError::Regression { .. })));
    let mut back = state.clone();
    back.revocation_seq.clear();
    assert!(matches!(lock.save_state(&back), Err(StoreError::Regression { .. })));
    assert_eq!(lock.state().unwrap(), state, "unchanged by refused writes");

    // Forward moves and equal values are fine.
    let mut fwd = state.clone();
    fwd.revocation_seq.insert("aa".into(), 6);
    fwd.revocation_seq.insert("bb".into(), 1);
    lock.save_state(&fwd).unwrap();
    lock.save_state(&fwd).unwrap();

    // The explicit escape hatch can lower it.
    lock.replace_state(&StoreState::default()).unwrap();
    assert_eq!(lock.state().unwrap(), StoreState::default());
}

#[test]
fn check_clock_tolerance() {
    let hw = 1_700_000_000; // 2023-11-14T22:13:20Z
    let state = StoreState { clock_high_water: hw, ..Default::default() };
    let tol = DEFAULT_CLOCK_TOLERANCE_SECS;
    assert_eq!(check_clock(&state, hw + 10, tol), Ok(()));
    assert_eq!(check_clock(&state, hw, tol), Ok(()));
    assert_eq!(check_clock(&state, hw - tol, tol), Ok(()), "exactly at the edge");
    let err = check_clock(&state, hw - tol - 1, tol).unwrap_err();
    assert_eq!(err, tka::VerifyError::ClockRollback { now: hw - tol - 1, high_water: hw });
    assert_eq!(
        err.to_string(),
        "clock moved backwards: now is 2023-11-13T22:13:19Z, but this store has seen \
         2023-11-14T22:13:20Z; fix the system clock"
    );
    assert_eq!(check_clock(&state, hw - 1, 0), Err(tka::VerifyError::ClockRollback { now: hw - 1, high_water: hw }));
    assert_eq!(check_clock(&StoreState::default(), 0, 0), Ok(()));
    // Extreme values saturate instead of overflowing.
    assert_eq!(check_clock(&state, 0, i64::MAX), Ok(()));
    let low = StoreState { clock_high_water: i64::MIN, ..Default::default() };
    assert_eq!(check_clock(&low, i64::MIN, i64::MAX), Ok(()));
    assert_eq!(
        check_clock(&state, hw - 1, -5),
        Err(tka::VerifyError::ClockRollback { now: hw - 1, high_water: hw }),
        "negative tolerance counts as 0"
    );
}

#[test]
fn corrupt_state_is_reported_with_path() {
    let (_tmp, store) = new_store();
    let path = store.dir().join("state.json");
    fs::write(&path, "{\"clock_high_water\": ").unwrap();
    let err = store.state().unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { path: p, .. } if *p == path), "{err:?}");
    assert!(err.to_string().starts_with(&format!("activation store file {} is corrupt: ", path.display())));
    // Not silently reset by a write either.
    let lock = store.lock().unwrap();
    assert!(matches!(lock.save_state(&StoreState::default()), Err(StoreError::Corrupt { .. })));
    assert_eq!(fs::read_to_string(&path).unwrap(), "{\"clock_high_water\": ");

    // Unknown fields and a missing file are corrupt too.
    fs::write(&path, r#"{"clock_high_water":1,"revocation_seq":{},"extra":1}"#).unwrap();
    assert!(matches!(store.state(), Err(StoreError::Corrupt { .. })));
    fs::remove_file(&path).unwrap();
    match store.state() {
        Err(StoreError::Corrupt { path: p, detail }) => {
            assert_eq!(p, path);
            assert!(detail.contains("missing"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Re-opening does not recreate it.
    drop(lock);
    Store::open(store.dir()).unwrap();
    assert!(!path.exists());
}

/// Review finding F5: deleting `version` (and `state.json`) must not
/// re-initialise a store that holds data: that would reset the clock
/// high-water mark and the revocation sequences under the installed tokens.
/// Every file is left as it was.
#[test]
fn store_with_data_but_no_version_is_corrupt_not_reinitialised() {
    for delete_state in [false, true] {
        for data in ["roots", "tokens", "crls", "revocations"] {
            let (_tmp, store) = new_store();
            {
                let lock = store.lock().unwrap();
                let mut state = lock.state().unwrap();
                state.observe(1_750_000_000);
                lock.save_state(&state).unwrap();
                match data {
                    "roots" => drop(lock.add_root(&fake_cert(1)).unwrap()),
                    "tokens" => lock.put_token("office", "t", 1).unwrap(),
                    "crls" => lock.put_crl("aa", b"crl").unwrap(),
                    _ => lock.put_revocation_list("aa", "list").unwrap(),
                }
            }
            let version = store.dir().join("version");
            fs::remove_file(&version).unwrap();
            if delete_state {
                fs::remove_file(store.dir().join("state.json")).unwrap();
            }
            let before = snapshot(store.dir());
            match Store::open(store.dir()) {
                Err(StoreError::Corrupt { path, detail }) => {
                    assert_eq!(path, version, "{data}");
                    let also = if delete_state { " (and state.json)" } else { "" };
                    assert!(detail.starts_with(&format!("missing{also}, but the store holds {data}/")), "{detail}");
                }
                other => panic!("{data}, state deleted: {delete_state}: expected Corrupt, got {other:?}"),
            }
            assert_eq!(snapshot(store.dir()), before, "{data}: the store was written to");
        }
    }
}

/// The other cases of F5: `state.json` alone missing from a store with data
/// is corrupt (never reset, see `corrupt_state_is_reported_with_path`);
/// without data, a lost `version` is re-written and keeps the clock mark,
/// and a store with neither file nor data is simply a new store.
#[test]
fn store_without_data_missing_version_or_state() {
    let (_tmp, store) = new_store();
    store.lock().unwrap().add_root(&fake_cert(1)).unwrap();
    fs::remove_file(store.dir().join("state.json")).unwrap();
    let store = Store::open(store.dir()).unwrap();
    assert!(matches!(store.state(), Err(StoreError::Corrupt { path, .. }) if path.ends_with("state.json")));
    let lock = store.lock().unwrap();
    assert!(matches!(lock.save_state(&StoreState::default()), Err(StoreError::Corrupt { .. })));
    drop(lock);

    let (_tmp, store) = new_store();
    let mut state = StoreState::default();
    state.observe(1_750_000_000);
    store.lock().unwrap().save_state(&state).unwrap();
    fs::remove_file(store.dir().join("version")).unwrap();
    let reopened = Store::open(store.dir()).unwrap();
    assert_eq!(reopened.state().unwrap(), state, "the clock mark survives");
    assert_eq!(fs::read_to_string(store.dir().join("version")).unwrap(), format!("{LAYOUT_VERSION}\n"));

    fs::remove_file(store.dir().join("version")).unwrap();
    fs::remove_file(store.dir().join("state.json")).unwrap();
    let fresh = Store::open(store.dir()).unwrap();
    assert_eq!(fresh.state().unwrap(), StoreState::default());
}

/// Every file (relative path -> bytes) under `dir`, but the lock file.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else if !path.ends_with("lock") {
            out.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn errors_display_on_one_line() {
    let errs = [
        StoreError::LastRoot,
        StoreError::NotFound("no such thing".into()),
        StoreError::BadKey("x".into()),
        StoreError::Io { path: "/p".into(), source: std::io::Error::other("boom") },
    ];
    for e in errs {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
    }
    assert_eq!(
        StoreError::Io { path: "/p".into(), source: std::io::Error::other("boom") }.to_string(),
        "activation store: /p: boom"
    );
}

// ----- concurrency -----

const CHILD_ENV: &str = "TKA_STORE_TEST_CHILD_DIR";
const INCREMENTS: u64 = 50;

/// One read-modify-write round of the shared counter, under the lock.
fn increment(store: &Store, n: u64) {
    let lock = store.lock().unwrap();
    let mut state = lock.state().unwrap();
    *state.revocation_seq.entry("counter".into()).or_insert(0) += 1;
    state.observe(n as i64);
    lock.save_state(&state).unwrap();
}

fn run_increments(dir: &Path) {
    let store = Store::open(dir).unwrap();
    for i in 0..INCREMENTS {
        increment(&store, i);
    }
}

/// Child role for `no_update_lost_across_threads_and_processes`; a no-op
/// unless started by it.
#[test]
fn concurrency_child() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        run_increments(Path::new(&dir));
    }
}

#[test]
fn no_update_lost_across_threads_and_processes() {
    const THREADS: u64 = 4;
    const PROCESSES: u64 = 3;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    Store::open(&dir).unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "concurrency_child", "--nocapture", "--test-threads", "1"])
                .env(CHILD_ENV, &dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| run_increments(&dir));
        }
    });
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1 passed"), "child did not run the role: {stdout}");
    }

    let store = Store::open(&dir).unwrap();
    let state = store.state().unwrap();
    assert_eq!(state.revocation_seq["counter"], (THREADS + PROCESSES) * INCREMENTS);
    assert_eq!(state.clock_high_water, INCREMENTS as i64 - 1);
    assert_no_temp_files(&store);
}

#[test]
fn writers_on_one_store_value_serialize_too() {
    let (_tmp, store) = new_store();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..25 {
                    increment(&store, i);
                }
            });
        }
    });
    assert_eq!(store.state().unwrap().revocation_seq["counter"], 100);
}
