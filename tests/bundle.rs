//! `activation::activate_from_bundle`: a token bundle (JSON Lines written by
//! `tka token issue-bulk --bundle`) whose `product` and `cmid` labels are not
//! signed. The attacks: a forged line placed before the real one, a line
//! labelled for one product carrying another product's token, a malformed
//! line, a bundle of foreign lines only, and identification once per line.
//! Each line labelled for this machine is verified in full; the first that
//! verifies is installed.

mod common;

use common::*;
use std::cell::Cell;
use std::io::Cursor;
use tka::activation::{
    activate_from_bundle, BundleOptions, BundleRefusal, BundleScan, MAX_BUNDLE_LINE, MAX_BUNDLE_PRODUCTS,
};
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::keys::SignatureAlgorithm;
use tka::machine::MachineIdentity;
use tka::pki::sha256_hex;
use tka::request::ActivationRequest;
use tka::store::Store;
use tka::{Error, VerifyError};

const OTHER_PRODUCT: &str = "example-lite";

/// A token for `id` signed by `key` (certificate chain `chain`).
fn token_by(id: &MachineIdentity, key: &str, chain: Vec<Vec<u8>>) -> String {
    let signer = TokenSigner::new(Box::new(test_key(key)), chain).unwrap();
    let req = ActivationRequest::new(id, NOW - 60, None);
    let opts = IssueOptions { alg: SignatureAlgorithm::Rs256, ..Default::default() };
    issue_token(&req, &opts, &signer, NOW - 60).unwrap().text
}

/// A token from the vendor's PKI for `id`.
fn vendor_token(id: &MachineIdentity) -> String {
    token_by(id, "signer", vec![pki().signer.clone(), pki().int.clone()])
}

/// A bundle line: the fields of `ledger::bulk::BundleLine`.
fn line(product: &str, cmid: &str, token: &str) -> String {
    serde_json::json!({"product": product, "cmid": cmid, "serial": "0", "token": token}).to_string() + "\n"
}

/// A store that trusts the vendor's root (and, with `both`, a self-made one).
fn store(both: bool) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let lock = store.lock().unwrap();
    lock.add_root(&pki().root).unwrap();
    if both {
        lock.add_root(&other_pki().root).unwrap();
    }
    drop(lock);
    (tmp, store)
}

fn ident(product: &str) -> tka::Result<MachineIdentity> {
    Ok(machine_for(product))
}

fn opts(product: Option<&str>) -> BundleOptions<'_> {
    BundleOptions { name: "b.jsonl", product, pinned_roots: &[], now: NOW, clock_tolerance: 86_400 }
}

/// The verdict when no line verifies.
fn no_token(r: tka::Result<tka::activation::BundleActivation>) -> BundleScan {
    match r {
        Err(Error::Verify(VerifyError::NoTokenInBundle { bundle, scan })) => {
            assert_eq!(bundle, "b.jsonl");
            *scan
        }
        other => panic!("expected NoTokenInBundle, got {other:?}"),
    }
}

/// `token` with one character in the middle of its signature changed.
fn tampered(token: &str) -> String {
    let at = token.rfind('.').unwrap() + 20;
    let mut t = token.as_bytes().to_vec();
    t[at] = if t[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(t).unwrap()
}

#[test]
fn a_forged_line_first_does_not_hide_the_real_one() {
    let (_t, store) = store(false);
    let m = machine();
    let real = vendor_token(&m);
    let bundle = line(PRODUCT, m.cmid(), &tampered(&real)) + &line(PRODUCT, m.cmid(), &real);
    let a = activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(None)).unwrap();
    assert_eq!(a.line, 2);
    assert_eq!(a.scan.considered, 2);
    assert_eq!(a.scan.refused, 1);
    assert_eq!(a.scan.first_refused, Some(BundleRefusal { line: 1, reason: VerifyError::BadSignature }));
    assert_eq!(store.token(PRODUCT).unwrap().unwrap().token, real, "the real token is installed");
}

#[test]
fn a_token_under_another_root_first_is_refused_by_the_pin_and_the_vendor_token_activates() {
    let (_t, store) = store(true);
    let m = machine();
    let real = vendor_token(&m);
    let own = token_by(&m, "signer2", vec![other_pki().signer.clone()]);
    let pins = [fingerprint(&pki().root)];
    let o = BundleOptions { pinned_roots: &pins, ..opts(None) };
    let bundle = line(PRODUCT, m.cmid(), &own) + &line(PRODUCT, m.cmid(), &real);
    let a = activate_from_bundle(&store, Cursor::new(bundle), &ident, &o).unwrap();
    assert_eq!(a.line, 2);
    let wrong_root = VerifyError::WrongRoot {
        subject: "CN=Self-made Root,O=someone".into(),
        expected: vec![sha256_hex(&pki().root)],
        found: sha256_hex(&other_pki().root),
    };
    assert_eq!(a.scan.first_refused, Some(BundleRefusal { line: 1, reason: wrong_root }));
    assert_eq!(store.token(PRODUCT).unwrap().unwrap().token, real);
}

#[test]
fn a_line_labelled_for_one_product_carrying_another_products_token_activates_neither() {
    let (_t, store) = store(false);
    let state = store.state().unwrap();
    // The line is labelled PRODUCT with this machine's CMID for PRODUCT; its
    // token is a valid one for this machine, but for OTHER_PRODUCT.
    let token_b = vendor_token(&machine_for(OTHER_PRODUCT));
    let bundle = line(PRODUCT, machine().cmid(), &token_b);
    let scan = no_token(activate_from_bundle(&store, Cursor::new(bundle.clone()), &ident, &opts(None)));
    let wrong = VerifyError::WrongProduct { expected: PRODUCT.into(), found: OTHER_PRODUCT.into() };
    assert_eq!(scan.first_refused, Some(BundleRefusal { line: 1, reason: wrong }));
    assert_eq!((scan.considered, scan.refused), (1, 1));
    // Asking for the token's product: the line is labelled for another, so
    // it is never checked, let alone installed.
    let scan = no_token(activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(Some(OTHER_PRODUCT))));
    assert_eq!((scan.other, scan.considered), (1, 0));
    assert!(store.tokens().unwrap().is_empty(), "neither product is activated");
    assert_eq!(store.state().unwrap(), state, "nothing stored changed");
}

#[test]
fn the_product_filter_takes_only_that_products_line() {
    let (_t, store) = store(false);
    let (a, b) = (machine(), machine_for(OTHER_PRODUCT));
    let bundle = line(PRODUCT, a.cmid(), &vendor_token(&a)) + &line(OTHER_PRODUCT, b.cmid(), &vendor_token(&b));
    let got = activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(Some(OTHER_PRODUCT))).unwrap();
    assert_eq!((got.line, got.verified.claims.aud.as_str()), (2, OTHER_PRODUCT));
    assert_eq!((got.scan.other, got.scan.considered), (1, 1));
    assert!(store.token(PRODUCT).unwrap().is_none());
}

#[test]
fn a_bundle_of_foreign_lines_only_is_no_token_in_bundle_and_changes_nothing() {
    let (_t, store) = store(false);
    let state = store.state().unwrap();
    let o = other_machine();
    let bundle = line(PRODUCT, o.cmid(), &vendor_token(&o)) + "\n" + &line(PRODUCT, o.cmid(), &vendor_token(&o));
    let r = activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(None));
    let msg = r.as_ref().unwrap_err().to_string();
    let scan = no_token(r);
    assert_eq!((scan.lines, scan.blank, scan.other, scan.considered), (3, 1, 2, 0));
    assert_eq!(msg, "b.jsonl holds no token for this machine (3 lines read; none labelled for it)");
    assert!(store.tokens().unwrap().is_empty());
    assert_eq!(store.state().unwrap(), state);
}

#[test]
fn refused_lines_are_counted_and_the_first_and_last_reasons_named() {
    let (_t, store) = store(false);
    let m = machine();
    let real = vendor_token(&m);
    let token_b = vendor_token(&machine_for(OTHER_PRODUCT));
    let bundle = line(PRODUCT, m.cmid(), &tampered(&real)) + "{}\n" + &line(PRODUCT, m.cmid(), &token_b);
    let r = activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(Some(PRODUCT)));
    assert_eq!(
        r.as_ref().unwrap_err().to_string(),
        format!(
            "b.jsonl holds no token for this machine and product \"{PRODUCT}\" (3 lines read; 2 labelled for it \
             refused, the first: line 1: token signature does not verify with the signer certificate's key; the \
             last: line 3: wrong product: expected \"{PRODUCT}\", token is for \"{OTHER_PRODUCT}\"; 1 not a bundle \
             line: line 2: malformed bundle line: missing field `product` at line 1 column 2)"
        )
    );
    assert_eq!(no_token(r).refused, 2);
}

#[test]
fn malformed_lines_in_the_middle_do_not_stop_the_scan() {
    let (_t, store) = store(false);
    let m = machine();
    let real = vendor_token(&m);
    let mut bundle = line(PRODUCT, other_machine().cmid(), &vendor_token(&other_machine())).into_bytes();
    bundle.extend_from_slice(b"not json\n");
    bundle.extend_from_slice(b"{\"product\":\"\xff\"}\n");
    bundle.extend(std::iter::repeat_n(b'x', 3 * MAX_BUNDLE_LINE));
    bundle.extend_from_slice(b"\r\n");
    bundle.extend_from_slice(line(PRODUCT, m.cmid(), &real).as_bytes());
    let a = activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(None)).unwrap();
    assert_eq!(a.line, 5);
    assert_eq!((a.scan.lines, a.scan.other, a.scan.malformed, a.scan.considered), (5, 1, 3, 1));
    let first = VerifyError::Malformed { what: "bundle line", detail: "expected ident at line 1 column 2".into() };
    assert_eq!(a.scan.first_malformed, Some(BundleRefusal { line: 2, reason: first }));
    assert_eq!(store.token(PRODUCT).unwrap().unwrap().token, real);
}

#[test]
fn an_overlong_line_is_skipped_and_named() {
    let (_t, store) = store(false);
    let mut bundle = vec![b'{'; MAX_BUNDLE_LINE + 1];
    bundle.push(b'\n');
    let scan = no_token(activate_from_bundle(&store, Cursor::new(bundle), &ident, &opts(None)));
    let too_large = VerifyError::TooLarge { what: "bundle line", limit: MAX_BUNDLE_LINE };
    assert_eq!(scan.first_malformed, Some(BundleRefusal { line: 1, reason: too_large }));
    assert_eq!((scan.lines, scan.malformed), (1, 1));
}

#[test]
fn identity_is_computed_once_per_product() {
    let (_t, store) = store(false);
    let calls = Cell::new(Vec::<String>::new());
    let counting = |p: &str| {
        let mut v = calls.take();
        v.push(p.to_string());
        calls.set(v);
        ident(p)
    };
    let o = other_machine();
    let foreign = line(PRODUCT, o.cmid(), &vendor_token(&o));
    let lite = line(OTHER_PRODUCT, "not-this-machine", "x.y.z");
    let bundle = foreign.repeat(200) + &lite.repeat(200) + &foreign;
    no_token(activate_from_bundle(&store, Cursor::new(bundle.clone()), &counting, &opts(None)));
    assert_eq!(calls.take(), [PRODUCT, OTHER_PRODUCT], "once per product, not once per line");
    // With a product filter, lines for other products are skipped before
    // identification: only the product asked for is identified.
    let scan = no_token(activate_from_bundle(&store, Cursor::new(bundle), &counting, &opts(Some(OTHER_PRODUCT))));
    assert_eq!(calls.take(), [OTHER_PRODUCT]);
    assert_eq!((scan.other, scan.considered), (401, 0));
}

#[test]
fn products_beyond_the_cap_are_not_identified_and_a_product_filter_reaches_past_them() {
    let (_t, store) = store(false);
    let calls = Cell::new(0);
    let counting = |p: &str| {
        calls.set(calls.get() + 1);
        ident(p)
    };
    let m = machine();
    let mut bundle: String = (0..MAX_BUNDLE_PRODUCTS).map(|n| line(&format!("p{n}"), "x", "x.y.z")).collect();
    bundle += &line(PRODUCT, m.cmid(), &vendor_token(&m));
    let r = activate_from_bundle(&store, Cursor::new(bundle.clone()), &counting, &opts(None));
    assert_eq!(
        r.as_ref().unwrap_err().to_string(),
        format!(
            "b.jsonl holds no token for this machine ({} lines read; none labelled for it; 1 for products beyond \
             the first {MAX_BUNDLE_PRODUCTS} not checked)",
            MAX_BUNDLE_PRODUCTS + 1
        )
    );
    assert_eq!(no_token(r).unchecked, 1);
    assert_eq!(calls.get(), MAX_BUNDLE_PRODUCTS);
    calls.set(0);
    let a = activate_from_bundle(&store, Cursor::new(bundle), &counting, &opts(Some(PRODUCT))).unwrap();
    assert_eq!((a.line as usize, calls.get()), (MAX_BUNDLE_PRODUCTS + 1, 1));
}
