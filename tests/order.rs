//! The order of verification, generated from its documentation: the tests
//! read the ordered table of docs/verification.md ("Verification, in
//! order"), build a token (and context) with one defect per rule, and for
//! every pair of rules in different rows a token with both defects; the
//! error reported must be the one of the rule that comes first in the
//! table. Swapping two rows of the table makes them fail
//! (`swapping_two_adjacent_rows_makes_the_order_test_fail` does it on a copy).

mod common;
use base64::Engine;
use common::rawcert::*;
use common::*;
use der::flagset::FlagSet;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};
use tka::issuer::issue::{issue_token, IssueOptions, TokenSigner};
use tka::jws::{MAX_JWS_SIZE, TOKEN_TYP};
use tka::keys::{SignatureAlgorithm, Signer};
use tka::machine::MachineIdentity;
use tka::pki::{sha256_hex, Crl, RootFingerprint, TrustAnchors};
use tka::request::ActivationRequest;
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::VerifyError;
use x509_cert::ext::pkix::KeyUsages;
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------------------
// The table.

/// One row of the ordered table: its position, step, check text and the
/// `VerifyError` variants it names.
#[derive(Debug, Clone)]
struct Row {
    step: u32,
    check: String,
    errors: Vec<String>,
}

fn doc() -> String {
    std::fs::read_to_string(repo().join("docs/verification.md")).unwrap()
}

/// The rows of the table under `| step | check | error ...`, in order.
fn table(doc: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut lines = doc.lines().skip_while(|l| !l.starts_with("| step | check | error"));
    assert!(lines.next().is_some(), "docs/verification.md has no `| step | check | error` table");
    lines.next(); // |---|---|---|
    for line in lines.take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 3, "a table row has three cells: {line}");
        let step = cells[0].parse().unwrap_or_else(|_| panic!("step is a number: {line}"));
        rows.push(Row { step, check: cells[1].to_string(), errors: variant_names(cells[2]) });
    }
    assert!(!rows.is_empty());
    rows
}

/// The CamelCase names in backticks of a table cell.
fn variant_names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && s.chars().all(char::is_alphanumeric))
        .map(str::to_string)
        .collect()
}

/// The variant name of an error (`Malformed` for `Malformed { .. }`).
fn variant_of(e: &VerifyError) -> String {
    format!("{e:?}").chars().take_while(|c| c.is_alphanumeric()).collect()
}

// ---------------------------------------------------------------------------
// Tokens with chosen defects.

/// What to build: a clean token and context unless a field says otherwise.
#[derive(Clone, Default)]
struct Recipe {
    oversize: bool,
    two_parts: bool,
    payload_not_json: bool,
    header_duplicate: bool,
    /// Header members to set (`Some`) or remove (`None`), after the clean header.
    header: Vec<(&'static str, Option<Value>)>,
    /// Payload members to set or remove, after the clean claims.
    payload: Vec<(&'static str, Option<Value>)>,
    bad_signature: bool,
    int_garbage: bool,
    int_expired: bool,
    int_unknown_critical: bool,
    int_without_key_cert_sign: bool,
    /// The issuing CA has pathLen 0 and a sub-CA below it issues the signer.
    path_len_exceeded: bool,
    signer_by_wrong_key: bool,
    signer_weak: bool,
    signer_is_ca: bool,
    signer_ends_tomorrow: bool,
    signer_revoked: bool,
    /// The signer carries a tka delegation for another product only.
    signer_delegated: bool,
    /// The chain ends at a new root trusted through a cross-certificate with pathLen 0.
    narrow_cross: bool,
    pinned_other_root: bool,
    other_product: bool,
    other_machine: bool,
    revoked_token: bool,
    clock_rolled_back: bool,
}

struct Built {
    text: String,
    roots: Vec<Vec<u8>>,
    vouching: Option<(String, Vec<Vec<u8>>)>,
    pinned: Vec<RootFingerprint>,
    product: &'static str,
    machine: MachineIdentity,
    crls: Vec<Crl>,
    revoked: HashSet<String>,
    clock: Option<(i64, i64)>,
}

impl Built {
    fn verify(&self) -> Result<(), VerifyError> {
        let mut anchors = TrustAnchors::from_der(&self.roots).unwrap();
        if let Some((fp, chain)) = &self.vouching {
            anchors = anchors.with_vouching(fp, chain).unwrap();
        }
        let ctx = VerifyContext {
            anchors: &anchors,
            pinned_roots: &self.pinned,
            now: NOW,
            product: Some(self.product),
            machine: MachineCheck::Identity(&self.machine),
            crls: &self.crls,
            revoked_serials: &self.revoked,
            clock: self.clock,
            certificates: &[],
        };
        verify_token(&self.text, &ctx).map(|_| ())
    }
}

/// Issued at NOW - 30, expiring in 30 days.
const ISSUED: i64 = NOW - 30;

/// The claims of a token issued for [`machine`] by the fixture PKI.
fn clean_claims() -> Map<String, Value> {
    static CLAIMS: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    CLAIMS.get_or_init(issue_clean_claims).clone()
}

fn issue_clean_claims() -> Map<String, Value> {
    let p = pki();
    let signer = TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap();
    let request = ActivationRequest::new(&machine(), NOW - 60, None);
    let text = issue_token(&request, &IssueOptions::default(), &signer, ISSUED).unwrap().text;
    let payload = text.split('.').nth(1).unwrap();
    let mut claims: Map<String, Value> = serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap();
    claims.insert("exp".into(), json!(NOW + 30 * DAY));
    claims
}

fn serial(n: u8) -> SerialNumber {
    SerialNumber::new(&[0x40, n]).unwrap()
}

fn ca(path_len: Option<u8>, key_cert_sign: bool) -> Vec<Extension> {
    let usages: FlagSet<KeyUsages> =
        if key_cert_sign { KeyUsages::KeyCertSign | KeyUsages::CRLSign } else { KeyUsages::CRLSign.into() };
    vec![bc(true, path_len), ku(usages)]
}

const ROOT: &str = "CN=Order Root,O=tka tests";
const NEW_ROOT: &str = "CN=Order New Root,O=tka tests";

fn build(r: &Recipe) -> Built {
    // The chain: root -> issuing CA [-> sub-CA] -> signer.
    let root = cert_under(ROOT, "root", None, serial(1), NOW - 365 * DAY, NOW + 3650 * DAY, ca(None, true));
    let (anchor, anchor_key, vouching) = if r.narrow_cross {
        let new_root = cert_under(NEW_ROOT, "other", None, serial(2), NOW - DAY, NOW + 3650 * DAY, ca(None, true));
        let cross = cert_under(
            NEW_ROOT,
            "other",
            Some((&root, "root")),
            serial(3),
            NOW - DAY,
            NOW + 3650 * DAY,
            ca(Some(0), true),
        );
        (new_root.clone(), "other", Some((sha256_hex(&new_root), vec![cross, root.clone()])))
    } else {
        (root.clone(), "root", None)
    };
    let mut int_exts = ca(r.path_len_exceeded.then_some(0), !r.int_without_key_cert_sign);
    if r.int_unknown_critical {
        int_exts.push(unknown_critical());
    }
    let int_na = if r.int_expired { NOW - DAY } else { NOW + 1825 * DAY };
    let int = cert_under(
        "CN=Order Issuing CA,O=tka tests",
        "intermediate",
        Some((&anchor, anchor_key)),
        serial(4),
        NOW - 300 * DAY,
        int_na,
        int_exts,
    );
    let mut issuers = vec![(int.clone(), "intermediate")];
    if r.path_len_exceeded {
        let sub = cert_under(
            "CN=Order Sub CA,O=tka tests",
            "signer2",
            Some((&int, "intermediate")),
            serial(5),
            NOW - 300 * DAY,
            NOW + 1825 * DAY,
            ca(None, true),
        );
        issuers.insert(0, (sub, "signer2"));
    }
    let signer_key = if r.signer_weak { "weak1024" } else { "signer" };
    let mut signer_exts = signer_exts();
    if r.signer_is_ca {
        signer_exts[0] = bc(true, None);
    }
    let (issuer_der, issuer_key) = &issuers[0];
    let signing = if r.signer_by_wrong_key { "other" } else { issuer_key };
    let signer_na = if r.signer_ends_tomorrow { NOW + DAY } else { NOW + 335 * DAY };
    let signer = cert_under(
        "CN=Order Signer,O=tka tests",
        signer_key,
        Some((issuer_der, signing)),
        serial(6),
        NOW - 30 * DAY,
        signer_na,
        signer_exts,
    );
    let signer = if r.signer_delegated {
        let d = tka::pki::Delegation {
            products: vec!["delegated-only".into()],
            max_lifetime_secs: 365 * DAY as u64,
            seats: None,
        };
        with_raw_extension(&signer, &delegation_ext(&d.to_der(), true), signing)
    } else {
        signer
    };
    let mut x5c = vec![signer.clone()];
    x5c.extend(issuers.iter().map(|(d, _)| d.clone()));
    if r.int_garbage {
        let last = x5c.len() - 1;
        x5c[last] = b"not a certificate".to_vec();
    }

    // The JWS.
    let mut header = Map::new();
    header.insert("alg".into(), json!("PS256"));
    header.insert("typ".into(), json!(TOKEN_TYP));
    header.insert("kid".into(), json!(sha256_hex(&signer)));
    header.insert("x5c".into(), Value::Array(x5c.iter().map(|c| json!(B64STD.encode(c))).collect()));
    edit(&mut header, &r.header);
    let mut claims = clean_claims();
    edit(&mut claims, &r.payload);
    let mut h = serde_json::to_string(&header).unwrap();
    if r.header_duplicate {
        h.insert_str(1, r#""dup":1,"dup":2,"#);
    }
    let p = if r.payload_not_json { "not JSON".to_string() } else { serde_json::to_string(&claims).unwrap() };
    let input = format!("{}.{}", B64URL.encode(h), B64URL.encode(p));
    let mut sig = test_key(signer_key).sign(SignatureAlgorithm::Ps256, input.as_bytes()).unwrap();
    if r.bad_signature {
        sig[10] ^= 1;
    }
    let mut text = if r.two_parts { input } else { format!("{input}.{}", B64URL.encode(sig)) };
    if r.oversize {
        text.push_str(&"A".repeat(MAX_JWS_SIZE));
    }

    // The context.
    let crls = if r.signer_revoked {
        vec![Crl::parse(&crl_der(&int, 1, vec![serial(6)], "intermediate")).unwrap()]
    } else {
        Vec::new()
    };
    let jti = clean_claims()["jti"].as_str().unwrap().to_string();
    Built {
        text,
        roots: vec![anchor],
        vouching,
        pinned: if r.pinned_other_root { vec![fingerprint(&other_pki().root)] } else { Vec::new() },
        product: if r.other_product { "other-product" } else { PRODUCT },
        machine: if r.other_machine { other_machine() } else { machine() },
        crls,
        revoked: if r.revoked_token { HashSet::from([jti]) } else { HashSet::new() },
        clock: r.clock_rolled_back.then_some((NOW + 10 * DAY, DAY)),
    }
}

fn edit(map: &mut Map<String, Value>, edits: &[(&'static str, Option<Value>)]) {
    for (k, v) in edits {
        match v {
            Some(v) => map.insert(k.to_string(), v.clone()),
            None => map.remove(*k),
        };
    }
}

// ---------------------------------------------------------------------------
// One defect per rule.

/// A defect that breaks exactly the rule of the table row whose check text
/// contains `row`, reported as `expect` with `detail` in its message.
struct Defect {
    name: &'static str,
    row: &'static str,
    expect: &'static str,
    detail: &'static str,
    apply: fn(&mut Recipe),
}

impl Defect {
    fn reported_by(&self, e: &VerifyError) -> bool {
        variant_of(e) == self.expect && e.to_string().contains(self.detail)
    }
}

fn defects() -> Vec<Defect> {
    macro_rules! d {
        ($name:literal, $row:literal, $expect:literal, $detail:literal, $apply:expr) => {
            Defect { name: $name, row: $row, expect: $expect, detail: $detail, apply: $apply }
        };
    }
    vec![
        d!("oversize", "input at most 64 KiB", "TooLarge", "", |r| r.oversize = true),
        d!("two parts", "exactly three dot-separated parts", "Malformed", "expected 3", |r| r.two_parts = true),
        d!("payload not JSON", "header and payload are UTF-8 JSON", "Malformed", "payload: invalid JSON", |r| {
            r.payload_not_json = true
        }),
        d!("duplicate header member", "no duplicate member names", "DuplicateKey", "dup", |r| r.header_duplicate =
            true),
        d!("no alg", "`alg` is on the allow-list", "AlgorithmNotAllowed", "(absent)", |r| r.header.push(("alg", None))),
        d!("typ JWT", "`typ` is `tka-token+jwt`", "WrongType", "", |r| r.header.push(("typ", Some(json!("JWT"))))),
        d!("jwk", "no `jwk`, `jku`, `x5u`", "ForbiddenHeader", "jwk", |r| r.header.push(("jwk", Some(json!({}))))),
        d!("crit []", "no `crit`", "UnknownCritical", "[]", |r| r.header.push(("crit", Some(json!([]))))),
        d!("no x5c and no kid", "`x5c`, when present", "MissingChain", "", |r| {
            r.header.push(("x5c", None));
            r.header.push(("kid", None));
        }),
        d!("x5c empty", "`x5c`, when present", "Malformed", "x5c must be a non-empty array", |r| r
            .header
            .push(("x5c", Some(json!([]))))),
        d!("kid a number", "`kid`, when present, is a string", "Malformed", "kid is not a string", |r| r
            .header
            .push(("kid", Some(json!(5))))),
        d!("no x5c, signer not among the known certificates", "a token without `x5c`", "UnknownSigner", "", |r| r
            .header
            .push(("x5c", None))),
        d!("intermediate not DER", "each certificate parses", "BadCertificate", "not X.509 DER", |r| r.int_garbage =
            true),
        d!("signer signed by another key", "chaining:", "BadCertSignature", "Order Signer", |r| r
            .signer_by_wrong_key =
            true),
        d!("intermediate expired", "every certificate, root included, is valid", "CertExpired", "Order Issuing", |r| {
            r.int_expired = true
        }),
        d!("signer key 1024 bits", "at least 2048 bits", "WeakKey", "Order Signer", |r| r.signer_weak = true),
        d!(
            "intermediate with unknown critical extension",
            "no unknown critical extension",
            "UnknownCriticalExtension",
            "Order Issuing",
            |r| r.int_unknown_critical = true
        ),
        d!("signer is a CA", "the token signer is not a CA", "SignerIsCa", "", |r| r.signer_is_ca = true),
        d!("intermediate without keyCertSign", "every issuer is a CA", "MissingKeyCertSign", "", |r| r
            .int_without_key_cert_sign =
            true),
        d!("pathLen 0 above a sub-CA", "pathLenConstraint respected", "PathLenExceeded", "", |r| r.path_len_exceeded =
            true),
        d!("signer on the issuing CA's CRL", "no certificate is on a CRL", "CertRevoked", "", |r| r.signer_revoked =
            true),
        d!(
            "root vouched for by a pathLen 0 cross-certificate",
            "through a cross-certificate",
            "CrossCertificateTooNarrow",
            "",
            |r| r.narrow_cross = true
        ),
        d!("another root pinned", "with pinned roots", "WrongRoot", "", |r| r.pinned_other_root = true),
        d!(
            "kid of another certificate",
            "`kid`, when present, is the signer",
            "Malformed",
            "kid does not match",
            |r| r.header.push(("kid", Some(json!("00".repeat(32)))))
        ),
        d!("signature tampered", "the JWS signature verifies", "BadSignature", "", |r| r.bad_signature = true),
        d!("no jti", "claims parse", "BadClaims", "jti", |r| r.payload.push(("jti", None))),
        d!("signer delegated for another product", "delegation: every certificate", "OutsideDelegation", "", |r| r
            .signer_delegated =
            true),
        d!("other product", "`aud` is the expected product", "WrongProduct", "", |r| r.other_product = true),
        d!("sub not the components' CMID", "the bound components are a set", "ImpossibleBinding", "", |r| r
            .payload
            .push(("sub", Some(json!(other_machine().cmid()))))),
        d!("other machine", "machine binding:", "WrongMachine", "", |r| r.other_machine = true),
        d!("expired", "`nbf <= now < exp`", "TokenExpired", "", |r| r.payload.push(("exp", Some(json!(NOW - 10))))),
        d!("signer ends before the token", "does not outlive its signer", "TokenOutlivesSigner", "", |r| r
            .signer_ends_tomorrow =
            true),
        d!("token revoked", "installed token revocation list", "TokenRevoked", "", |r| r.revoked_token = true),
        d!("clock behind the mark", "high-water mark", "ClockRollback", "", |r| r.clock_rolled_back = true),
        d!("issued in an hour", "earlier than the token's `iat`", "IssuedInFuture", "", |r| r
            .payload
            .push(("iat", Some(json!(NOW + 3600))))),
    ]
}

/// The index of the table row whose check text contains `needle` (exactly one).
fn row_of(rows: &[Row], needle: &str) -> usize {
    let hits: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].check.contains(needle)).collect();
    assert_eq!(hits.len(), 1, "exactly one table row contains {needle:?}, found {hits:?}");
    hits[0]
}

/// Whether `a` and `b` edit the same header or payload member (such as
/// `kid` for "not a string" and "another certificate's"): one token cannot
/// carry both.
fn same_member(a: &Defect, b: &Defect) -> bool {
    let (mut ra, mut rb) = (Recipe::default(), Recipe::default());
    (a.apply)(&mut ra);
    (b.apply)(&mut rb);
    let names = |edits: &[(&'static str, Option<Value>)]| edits.iter().map(|(k, _)| *k).collect::<HashSet<_>>();
    !names(&ra.header).is_disjoint(&names(&rb.header)) || !names(&ra.payload).is_disjoint(&names(&rb.payload))
}

/// Every pair of defects in different rows, built together: the one whose
/// row comes first in `doc`'s table must be reported. Returns the pairs
/// that break the rule (empty when code and table agree). `only` limits the
/// pairs to those with both rows in it.
fn order_violations(doc: &str, only: Option<&[usize]>) -> Vec<String> {
    let rows = table(doc);
    let defects = defects();
    let placed: Vec<(usize, &Defect)> = defects.iter().map(|d| (row_of(&rows, d.row), d)).collect();
    let mut cache: HashMap<(usize, usize), Result<(), VerifyError>> = HashMap::new();
    let mut out = Vec::new();
    for &(ra, a) in &placed {
        for &(rb, b) in &placed {
            if ra >= rb || only.is_some_and(|o| !o.contains(&ra) || !o.contains(&rb)) || same_member(a, b) {
                continue;
            }
            let mut recipe = Recipe::default();
            (a.apply)(&mut recipe);
            (b.apply)(&mut recipe);
            let key = (a as *const Defect as usize, b as *const Defect as usize);
            let got = cache.entry(key).or_insert_with(|| build(&recipe).verify());
            match got {
                Err(e) if a.reported_by(e) && !b.reported_by(e) => {}
                other => out.push(format!(
                    "{:?} (row {}, step {}) before {:?} (row {}, step {}): expected {}, got {other:?}",
                    a.name,
                    ra + 1,
                    rows[ra].step,
                    b.name,
                    rb + 1,
                    rows[rb].step,
                    a.expect
                )),
            }
        }
    }
    out
}

#[test]
fn the_clean_recipe_verifies() {
    build(&Recipe::default()).verify().unwrap();
}

#[test]
fn each_defect_alone_is_reported_by_its_rows_error() {
    let rows = table(&doc());
    for d in defects() {
        let row = &rows[row_of(&rows, d.row)];
        assert!(row.errors.iter().any(|e| e == d.expect), "{}: {} is not among {:?}", d.name, d.expect, row.errors);
        let mut recipe = Recipe::default();
        (d.apply)(&mut recipe);
        match build(&recipe).verify() {
            Err(e) if d.reported_by(&e) => {}
            other => panic!("{}: expected {} ({:?}), got {other:?}", d.name, d.expect, d.detail),
        }
    }
}

#[test]
fn every_row_of_the_table_has_a_defect() {
    let rows = table(&doc());
    let covered: BTreeSet<usize> = defects().iter().map(|d| row_of(&rows, d.row)).collect();
    let missing: Vec<&str> = (0..rows.len()).filter(|i| !covered.contains(i)).map(|i| rows[i].check.as_str()).collect();
    assert!(missing.is_empty(), "table rows without a defect in tests/order.rs: {missing:#?}");
}

#[test]
fn defects_in_different_rows_are_told_apart_by_their_errors() {
    let rows = table(&doc());
    let defects = defects();
    for a in &defects {
        for b in &defects {
            if row_of(&rows, a.row) != row_of(&rows, b.row) {
                assert!(
                    !(a.expect == b.expect && (a.detail.contains(b.detail) || b.detail.contains(a.detail))),
                    "{:?} and {:?} report the same error: a pair of them cannot show which wins",
                    a.name,
                    b.name
                );
            }
        }
    }
}

#[test]
fn with_two_defects_the_first_rule_in_the_table_is_reported() {
    let violations = order_violations(&doc(), None);
    assert!(violations.is_empty(), "{} pairs break the documented order:\n{}", violations.len(), violations.join("\n"));
}

/// The order test can fail: with any two adjacent rows of the table
/// swapped (in a copy), the pairs across them break.
#[test]
fn swapping_two_adjacent_rows_makes_the_order_test_fail() {
    let doc = doc();
    let rows = table(&doc);
    let lines: Vec<&str> = doc.lines().collect();
    let first = lines.iter().position(|l| l.starts_with("| step | check | error")).unwrap() + 2;
    for i in 0..rows.len() - 1 {
        let mut swapped = lines.clone();
        swapped.swap(first + i, first + i + 1);
        let violations = order_violations(&swapped.join("\n"), Some(&[i, i + 1]));
        assert!(
            !violations.is_empty(),
            "swapping rows {} and {} ({:?} / {:?}) goes unnoticed",
            i + 1,
            i + 2,
            rows[i].check,
            rows[i + 1].check
        );
    }
}

/// Variants `verify_token` never returns, and where they come from instead.
const NOT_FROM_VERIFY_TOKEN: [(&str, &str); 9] = [
    ("UnsupportedCrl", "Crl::parse: a CRL is read before verification"),
    ("RevocationRollback", "importing a token revocation list"),
    ("FingerprintMismatch", "trusting a root by its fingerprint"),
    ("RevocationNotTrusted", "importing a CRL or token revocation list"),
    ("RootNotTrustedForProduct", "activation: the store's product scope of roots (documented below the table)"),
    ("RevocationStale", "activation with fresh revocation data required"),
    ("RootKeyIsIssuingCa", "trust add"),
    ("NoTokenInBundle", "activation from a bundle"),
    ("NotActivated", "status of a product without activation"),
];

/// The variants of `VerifyError` in src/core/error.rs.
fn verify_error_variants() -> BTreeSet<String> {
    let src = std::fs::read_to_string(repo().join("src/core/error.rs")).unwrap();
    let body = src.split("pub enum VerifyError {").nth(1).unwrap().split("\n}\n").next().unwrap();
    body.lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .map(|l| l.chars().take_while(|c| c.is_alphanumeric()).collect())
        .collect()
}

/// The source files the documentation says hold the checks.
fn check_files(doc: &str) -> Vec<String> {
    // Line breaks in the paragraph are spaces.
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    let after = flat.split("Each check is a small named function in").nth(1).unwrap();
    let sentence = after.split("that cites").next().unwrap();
    sentence.split('`').skip(1).step_by(2).filter(|s| s.ends_with(".rs")).map(str::to_string).collect()
}

#[test]
fn every_error_the_verifier_returns_is_in_the_table() {
    let doc = doc();
    let in_table: BTreeSet<String> = table(&doc).into_iter().flat_map(|r| r.errors).collect();
    let all = verify_error_variants();
    let elsewhere: BTreeSet<String> = NOT_FROM_VERIFY_TOKEN.iter().map(|(v, _)| v.to_string()).collect();
    for v in &in_table {
        assert!(all.contains(v), "the table names {v}, which is no VerifyError variant");
        assert!(!elsewhere.contains(v), "{v} is in the table and listed as not returned by verify_token");
    }
    for v in &all {
        assert!(
            in_table.contains(v) || elsewhere.contains(v),
            "VerifyError::{v} is neither in the table nor explained"
        );
    }
    // Every variant the check files construct is in the table (or explained).
    let files = check_files(&doc);
    assert!(files.len() >= 6, "the documentation names the files holding the checks: {files:?}");
    for f in files {
        let src = std::fs::read_to_string(repo().join(&f)).unwrap_or_else(|e| panic!("{f} (named in the docs): {e}"));
        for used in src.split("VerifyError::").skip(1) {
            let v: String = used.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                in_table.contains(&v) || elsewhere.contains(&v),
                "{f} constructs VerifyError::{v}, which the table does not list"
            );
        }
    }
}
