//! Token verification, one test per rule or attack, each naming the exact error.
//!
//! The order of the sections follows the ordered checks of the design
//! ("Verification, in order"): step 1 (size, structure, strict base64url and
//! JSON), step 2 (header), step 3 (certificate path), step 4 (signature),
//! step 5 (claims), step 6 (clock), then issuance and round trips.
//!
//! Forged tokens are re-signed with the legitimate signer key whenever the
//! rule under test is not the signature itself, so that the forged field is
//! the only defect. Certificates the library's builder refuses to make are
//! built here with the x509-cert builder and a custom profile.

mod common;
use base64::Engine;
use common::rawcert::*;
use common::*;
use const_oid::ObjectIdentifier;
use der::Decode;
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::HashSet;
use tka::issuer::issue::{issue_token, IssueOptions, TokenLifetime, TokenSigner};
use tka::issuer::CertKind;
use tka::jws::{MAX_JWS_SIZE, REVOCATION_TYP, TOKEN_TYP};
use tka::keys::{SignatureAlgorithm, Signer, SoftwareKey};
use tka::machine::{MachineIdentity, MatchRule};
use tka::pki::{sha256_hex, CertInfo, Crl, TrustAnchors};
use tka::request::ActivationRequest;
use tka::token::decode_unverified;
use tka::verify::{verify_token, MachineCheck, VerifiedToken, VerifyContext, IAT_SKEW_SECS};
use tka::{Error, VerifyError};
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::Certificate;

fn signer_with(chain: Vec<Vec<u8>>, key: &str) -> TokenSigner {
    TokenSigner::new(Box::new(test_key(key)), chain).unwrap()
}

fn default_signer() -> TokenSigner {
    let p = pki();
    signer_with(vec![p.signer.clone(), p.int.clone()], "signer")
}

fn request() -> ActivationRequest {
    ActivationRequest::new(&machine(), NOW - 60, None)
}

/// Issued at NOW - 30 (so `iat = nbf = NOW - 30`).
const ISSUED: i64 = NOW - 30;

fn issue(opts: &IssueOptions) -> String {
    issue_token(&request(), opts, &default_signer(), ISSUED).unwrap().text
}

fn token() -> String {
    issue(&IssueOptions::default())
}

fn anchors() -> TrustAnchors {
    TrustAnchors::from_der(&[pki().root.clone()]).unwrap()
}

fn verify_at(text: &str, now: i64, id: &MachineIdentity) -> Result<VerifiedToken, VerifyError> {
    let anchors = anchors();
    let revoked = HashSet::new();
    let ctx = VerifyContext {
        anchors: &anchors,
        pinned_roots: &[],
        now,
        product: Some(PRODUCT),
        machine: MachineCheck::Identity(id),
        crls: &[],
        revoked_serials: &revoked,
        clock: None,
        certificates: &[],
    };
    verify_token(text, &ctx)
}

fn verify(text: &str) -> Result<VerifiedToken, VerifyError> {
    verify_at(text, NOW, &machine())
}

/// The error verifying `text` at NOW on this machine; panics (briefly) if it verifies.
fn err(text: &str) -> VerifyError {
    match verify(text) {
        Err(e) => e,
        Ok(v) => panic!("expected an error, but the token verified (signer {}, path {:?})", v.signer.subject, v.path),
    }
}

// ---------------------------------------------------------------------------
// A verification context that owns its inputs, for tests that vary them.

enum Machine {
    Identity(MachineIdentity),
    Cmid(String),
    Skip,
}

struct V {
    roots: Vec<Vec<u8>>,
    now: i64,
    product: Option<String>,
    machine: Machine,
    crls: Vec<Crl>,
    revoked: HashSet<String>,
    clock: Option<(i64, i64)>,
    /// Known certificates (the pool compact tokens are verified with).
    certificates: Vec<Vec<u8>>,
}

impl Default for V {
    fn default() -> Self {
        V {
            roots: vec![pki().root.clone()],
            now: NOW,
            product: Some(PRODUCT.into()),
            machine: Machine::Identity(machine()),
            crls: Vec::new(),
            revoked: HashSet::new(),
            clock: None,
            certificates: Vec::new(),
        }
    }
}

impl V {
    fn run(&self, text: &str) -> Result<VerifiedToken, VerifyError> {
        let anchors = TrustAnchors::from_der(&self.roots).unwrap();
        let machine = match &self.machine {
            Machine::Identity(id) => MachineCheck::Identity(id),
            Machine::Cmid(c) => MachineCheck::Cmid(c),
            Machine::Skip => MachineCheck::Skip,
        };
        let ctx = VerifyContext {
            anchors: &anchors,
            pinned_roots: &[],
            now: self.now,
            product: self.product.as_deref(),
            machine,
            crls: &self.crls,
            revoked_serials: &self.revoked,
            clock: self.clock,
            certificates: &self.certificates,
        };
        verify_token(text, &ctx)
    }
}

// ---------------------------------------------------------------------------
// JWS forging.

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

fn b64_json(v: &Map<String, Value>) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

fn split(token: &str) -> (String, String, String) {
    let p: Vec<&str> = token.split('.').collect();
    assert_eq!(p.len(), 3);
    (p[0].to_string(), p[1].to_string(), p[2].to_string())
}

/// Header, payload (both JSON objects) and signature bytes of a token.
fn decode_parts(token: &str) -> (Map<String, Value>, Map<String, Value>, Vec<u8>) {
    let (h, p, s) = split(token);
    let h = serde_json::from_slice(&B64URL.decode(h).unwrap()).unwrap();
    let p = serde_json::from_slice(&B64URL.decode(p).unwrap()).unwrap();
    (h, p, B64URL.decode(s).unwrap())
}

/// Signs already-encoded header and payload parts.
fn sign_parts(h: &str, p: &str, key: &dyn Signer, alg: SignatureAlgorithm) -> String {
    let input = format!("{h}.{p}");
    let sig = key.sign(alg, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

fn forge(h: &Map<String, Value>, p: &Map<String, Value>, key: &dyn Signer, alg: SignatureAlgorithm) -> String {
    sign_parts(&b64_json(h), &b64_json(p), key, alg)
}

/// Edits a good token's header and payload, then signs it again with the
/// legitimate signer key (PS256), so the edit is the only defect.
fn resign(edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> String {
    let (mut h, mut p, _) = decode_parts(&token());
    edit(&mut h, &mut p);
    forge(&h, &p, &pki().signer_key, SignatureAlgorithm::Ps256)
}

/// Rewrites a good token's header and payload JSON texts, then signs it
/// again with the legitimate signer key (PS256): for JSON a `Map` cannot
/// hold (duplicate keys, escaped names, non-objects).
fn resign_text(edit: impl FnOnce(&mut String, &mut String)) -> String {
    let (h, p, _) = decode_parts(&token());
    let (mut h, mut p) = (serde_json::to_string(&h).unwrap(), serde_json::to_string(&p).unwrap());
    edit(&mut h, &mut p);
    sign_parts(&b64(h.as_bytes()), &b64(p.as_bytes()), &pki().signer_key, SignatureAlgorithm::Ps256)
}

/// Edits a good token's header and payload and keeps the original signature.
fn tamper(token: &str, edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> String {
    let (mut h, mut p, s) = decode_parts(token);
    edit(&mut h, &mut p);
    format!("{}.{}.{}", b64_json(&h), b64_json(&p), b64(&s))
}

fn header_for(chain: &[&[u8]], alg: &str) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("alg".into(), json!(alg));
    h.insert("typ".into(), json!(TOKEN_TYP));
    h.insert("kid".into(), json!(sha256_hex(chain[0])));
    h.insert("x5c".into(), Value::Array(chain.iter().map(|c| json!(B64STD.encode(c))).collect()));
    h
}

/// The default token's claims with a header for `chain`, signed (PS256) by `key`.
fn token_for_chain(chain: &[&[u8]], key: &SoftwareKey) -> String {
    let (_, p, _) = decode_parts(&token());
    forge(&header_for(chain, "PS256"), &p, key, SignatureAlgorithm::Ps256)
}

fn subject_of(der: &[u8]) -> String {
    CertInfo::parse(der).unwrap().subject
}

fn serial_of(der: &[u8]) -> String {
    CertInfo::parse(der).unwrap().serial_hex
}

// ---------------------------------------------------------------------------
// Certificates the library's builder refuses to make.

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::new(&b).unwrap()
}

/// A certificate for test key `key` with exactly the extensions `exts`,
/// issued under the name of `issuer.0` (a DER certificate) and signed
/// (sha256WithRSAEncryption) with test key `issuer.1`; self-signed with
/// `key` when `issuer` is `None`. No profile checks whatsoever.
fn raw_cert(
    subject: &str,
    key: &str,
    issuer: Option<(&[u8], &str)>,
    nb: i64,
    na: i64,
    exts: Vec<Extension>,
) -> Vec<u8> {
    cert_under(subject, key, issuer, random_serial(), nb, na, exts)
}

/// A signer certificate under the test issuing CA with the given extensions.
fn raw_signer(subject: &str, exts: Vec<Extension>) -> Vec<u8> {
    raw_cert(subject, "signer", Some((&pki().int, "intermediate")), NOW - 30 * DAY, NOW + 335 * DAY, exts)
}

/// A DER CRL from `issuer` (a DER CA certificate) listing `revoked`, signed by test key `key`.
fn make_crl(issuer: &[u8], key: &str, revoked: &[&[u8]]) -> Crl {
    let serials =
        revoked.iter().map(|c| Certificate::from_der(c).unwrap().tbs_certificate().serial_number().clone()).collect();
    Crl::parse(&crl_der(issuer, 1, serials, key)).unwrap()
}

// ===========================================================================
// Baseline.

#[test]
fn good_token_verifies() {
    let v = verify(&token()).unwrap();
    assert_eq!(v.claims.aud, PRODUCT);
    assert_eq!(v.alg, SignatureAlgorithm::Ps256);
    assert_eq!(v.path.len(), 3);
    assert!(!v.in_grace);
    assert_eq!(v.machine_match.unwrap().matched, 5);
}

#[test]
fn rs256_token_verifies() {
    let t = issue(&IssueOptions { alg: SignatureAlgorithm::Rs256, ..Default::default() });
    assert_eq!(verify(&t).unwrap().alg, SignatureAlgorithm::Rs256);
}

#[test]
fn verified_path_names_signer_intermediate_and_root() {
    let v = verify(&token()).unwrap();
    let p = pki();
    assert_eq!(v.path, vec![subject_of(&p.signer), subject_of(&p.int), subject_of(&p.root)]);
    assert_eq!(v.signer.der, p.signer);
}

#[test]
fn resigned_unchanged_token_verifies() {
    // Sanity check of the forging helpers: a re-signed but unchanged token is fine.
    verify(&resign(|_, _| {})).unwrap();
}

// ===========================================================================
// Step 1: size, structure, strict base64url, UTF-8 JSON, duplicate keys.

#[test]
fn input_over_64_kib_is_too_large() {
    let text = "a".repeat(MAX_JWS_SIZE + 1);
    assert_eq!(err(&text), VerifyError::TooLarge { what: "token", limit: MAX_JWS_SIZE });
}

#[test]
fn input_of_exactly_64_kib_is_not_too_large() {
    let text = "a".repeat(MAX_JWS_SIZE);
    {
        let e = err(&text);
        assert!(matches!(e, VerifyError::Malformed { what: "token", .. }));
        says(&e, "malformed token: expected 3 dot-separated parts (JWS compact form), found 1");
    }
}

#[test]
fn hundred_megabyte_input_is_refused_before_parsing() {
    // A well-formed-looking token padded to 100 MB: refused on size alone.
    let mut text = token();
    text.push_str(&"A".repeat(100 * 1024 * 1024));
    // Refused as TooLarge, not Malformed: the size check came first.
    assert_eq!(err(&text), VerifyError::TooLarge { what: "token", limit: MAX_JWS_SIZE });
}

#[test]
fn two_parts_is_malformed() {
    let (h, p, _) = split(&token());
    {
        let e = err(&format!("{h}.{p}"));
        assert!(matches!(e, VerifyError::Malformed { what: "token", .. }));
        says(&e, "malformed token: expected 3 dot-separated parts (JWS compact form), found 2");
    }
}

#[test]
fn four_parts_is_malformed() {
    {
        let e = err(&format!("{}.AAAA", token()));
        assert!(matches!(e, VerifyError::Malformed { what: "token", .. }));
        says(&e, "malformed token: expected 3 dot-separated parts (JWS compact form), found 4");
    }
}

#[test]
fn one_part_and_empty_input_are_malformed() {
    {
        let e = err("");
        assert!(matches!(e, VerifyError::Malformed { what: "token", .. }));
        says(&e, "malformed token: expected 3 dot-separated parts (JWS compact form), found 1");
    }
    {
        let e = err("eyJhbGciOiJQUzI1NiJ9");
        assert!(matches!(e, VerifyError::Malformed { what: "token", .. }));
        says(&e, "malformed token: expected 3 dot-separated parts (JWS compact form), found 1");
    }
}

#[test]
fn trailing_garbage_after_signature_is_malformed() {
    for (garbage, symbol) in [(" ", 32), ("!", 33), ("\n\nx", 10), (" extra", 32), ("\t", 9)] {
        let e = err(&format!("{}{garbage}", token()));
        assert!(matches!(e, VerifyError::Malformed { what: "token signature", .. }), "{garbage:?}: {e:?}");
        says(&e, &format!("malformed token signature: not base64url: Invalid symbol {symbol}, offset 342."));
    }
}

#[test]
fn trailing_newline_is_accepted() {
    verify(&format!("{}\n", token())).unwrap();
    verify(&format!("{}\r\n", token())).unwrap();
}

#[test]
fn standard_base64_characters_are_malformed() {
    let (h, p, s) = split(&token());
    // '+' and '/' are the standard alphabet, not base64url.
    let bad_payload = format!("{}+{}", &p[..10], &p[11..]);
    {
        let e = err(&format!("{h}.{bad_payload}.{s}"));
        assert!(matches!(e, VerifyError::Malformed { what: "token payload", .. }));
        says(&e, "malformed token payload: not base64url: Invalid symbol 43, offset 10.");
    }
    let bad_header = format!("{}/{}", &h[..10], &h[11..]);
    {
        let e = err(&format!("{bad_header}.{p}.{s}"));
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }));
        says(&e, "malformed token header: not base64url: Invalid symbol 47, offset 10.");
    }
}

#[test]
fn non_base64url_characters_are_malformed() {
    let (h, p, s) = split(&token());
    // The symbol is the first byte of the character (é is 0xc3 0xa9 in UTF-8).
    for (c, symbol) in [("*", 42), (" ", 32), ("%", 37), ("\u{e9}", 195)] {
        let bad = format!("{}{c}{}", &p[..10], &p[11..]);
        let e = err(&format!("{h}.{bad}.{s}"));
        assert!(matches!(e, VerifyError::Malformed { what: "token payload", .. }), "{c:?}: {e:?}");
        says(&e, &format!("malformed token payload: not base64url: Invalid symbol {symbol}, offset 10."));
    }
}

#[test]
fn padding_is_malformed() {
    let (h, p, s) = split(&token());
    // A 256-byte signature encodes to 342 characters; standard padding would add "==".
    assert_eq!(s.len() % 4, 2);
    {
        let e = err(&format!("{h}.{p}.{s}=="));
        assert!(matches!(e, VerifyError::Malformed { what: "token signature", .. }));
        says(&e, "malformed token signature: not base64url: Invalid padding");
    }
    // Padding on a header too: a 16-byte header needs `==`, refused before
    // the header is read.
    let padded_h = base64::engine::general_purpose::URL_SAFE.encode(br#"{"alg": "PS256"}"#);
    assert!(padded_h.ends_with('='), "{padded_h}");
    {
        let e = err(&format!("{padded_h}.{p}.{s}"));
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }));
        says(&e, "malformed token header: not base64url: Invalid padding");
    }
}

#[test]
fn non_canonical_trailing_bits_are_malformed() {
    // The last character of a 342-character signature carries 4 unused bits;
    // setting one gives another spelling of the same bytes. Strict decoding
    // refuses it (otherwise one token would have many valid spellings).
    let (h, p, s) = split(&token());
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = s.chars().last().unwrap();
    let idx = alphabet.find(last).unwrap();
    let other = alphabet.chars().nth(idx ^ 1).unwrap();
    let s2 = format!("{}{other}", &s[..s.len() - 1]);
    {
        let e = err(&format!("{h}.{p}.{s2}"));
        assert!(matches!(e, VerifyError::Malformed { what: "token signature", .. }));
        says(
            &e,
            &format!("malformed token signature: not base64url: Invalid last symbol {}, offset 341.", other as u32),
        );
    }
}

#[test]
fn non_utf8_header_is_malformed() {
    let (_, p, s) = split(&token());
    let h = b64(b"{\"alg\":\"PS256\",\"typ\":\"\xff\"}");
    assert_eq!(
        err(&format!("{h}.{p}.{s}")),
        VerifyError::Malformed { what: "token header", detail: "not UTF-8".into() }
    );
}

#[test]
fn non_utf8_payload_is_malformed() {
    let (h, _, _) = split(&token());
    let p = b64(b"{\"aud\":\"\xc3\x28\"}");
    let t = sign_parts(&h, &p, &pki().signer_key, SignatureAlgorithm::Ps256);
    assert_eq!(err(&t), VerifyError::Malformed { what: "token payload", detail: "not UTF-8".into() });
}

#[test]
fn header_json_array_is_malformed() {
    let (_, p, s) = split(&token());
    let h = b64(br#"[{"alg":"PS256","typ":"tka-token+jwt"}]"#);
    assert_eq!(
        err(&format!("{h}.{p}.{s}")),
        VerifyError::Malformed { what: "token header", detail: "not a JSON object".into() }
    );
}

#[test]
fn header_not_json_is_malformed() {
    let (_, p, s) = split(&token());
    for (h, why) in [
        (&b""[..], "invalid JSON: EOF while parsing a value at line 1 column 0"),
        (b"alg=PS256", "invalid JSON: expected value at line 1 column 1"),
        (b"{\"alg\":\"PS256\"", "invalid JSON: EOF while parsing an object at line 1 column 14"),
        (b"{\"alg\":\"PS256\"} {}", "trailing data after the JSON value"),
    ] {
        let e = err(&format!("{}.{p}.{s}", b64(h)));
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }), "{e:?}");
        says(&e, &format!("malformed token header: {why}"));
    }
}

#[test]
fn duplicate_key_in_header_is_refused() {
    // A second "alg" that a lenient parser might let win.
    let t = resign_text(|h, _| *h = format!("{{\"alg\":\"none\",{}", &h[1..]));
    assert_eq!(err(&t), VerifyError::DuplicateKey { key: "alg".into() });
}

#[test]
fn duplicate_key_spelled_with_escapes_is_refused() {
    // "\u0061lg" is "alg": a parser differential if only raw bytes were compared.
    let t = resign_text(|h, _| *h = format!("{{\"\\u0061lg\":\"none\",{}", &h[1..]));
    assert_eq!(err(&t), VerifyError::DuplicateKey { key: "alg".into() });
}

#[test]
fn duplicate_key_in_payload_is_refused() {
    let t = resign_text(|_, p| *p = format!("{{\"aud\":\"other-product\",{}", &p[1..]));
    assert_eq!(err(&t), VerifyError::DuplicateKey { key: "aud".into() });
}

#[test]
fn duplicate_key_nested_in_tka_claims_is_refused() {
    let t = resign_text(|_, p| {
        let dup = p.replacen("\"tka\":{", "\"tka\":{\"grace\":999999999,", 1);
        assert_ne!(&dup, p);
        *p = dup;
    });
    assert_eq!(err(&t), VerifyError::DuplicateKey { key: "grace".into() });
}

#[test]
fn deeply_nested_payload_is_malformed() {
    let (h, _, s) = split(&token());
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let text = format!("{h}.{}.{s}", b64(deep.as_bytes()));
    assert!(text.len() < MAX_JWS_SIZE);
    {
        let e = err(&text);
        assert!(matches!(e, VerifyError::Malformed { what: "token payload", .. }));
        says(&e, "malformed token payload: invalid JSON: recursion limit exceeded at line 1 column 128");
    }
}

#[test]
fn deeply_nested_header_is_malformed() {
    let (_, p, s) = split(&token());
    let deep = format!("{{\"a\":{}{}}}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    let e = err(&format!("{}.{p}.{s}", b64(deep.as_bytes())));
    assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }), "{e:?}");
    says(&e, "malformed token header: invalid JSON: recursion limit exceeded at line 1 column 636");
}

// ===========================================================================
// Step 2: header.

#[test]
fn alg_none_with_empty_signature_is_not_allowed() {
    let (mut h, p, _) = decode_parts(&token());
    h.insert("alg".into(), json!("none"));
    let t = format!("{}.{}.", b64_json(&h), b64_json(&p));
    assert_eq!(err(&t), VerifyError::AlgorithmNotAllowed { alg: "none".into() });
}

#[test]
fn alg_none_spellings_are_not_allowed() {
    for alg in ["None", "NONE", "nOnE", ""] {
        let (mut h, p, _) = decode_parts(&token());
        h.insert("alg".into(), json!(alg));
        let t = format!("{}.{}.", b64_json(&h), b64_json(&p));
        assert_eq!(err(&t), VerifyError::AlgorithmNotAllowed { alg: alg.into() });
    }
}

#[test]
fn hs256_keyed_with_signer_public_key_is_not_allowed() {
    // Classic key confusion: HMAC keyed with the public key the verifier holds.
    let (mut h, p, _) = decode_parts(&token());
    h.insert("alg".into(), json!("HS256"));
    let input = format!("{}.{}", b64_json(&h), b64_json(&p));
    let spki = CertInfo::parse(&pki().signer).unwrap().spki_der;
    for secret in [spki.clone(), pki().signer.clone(), B64STD.encode(&spki).into_bytes()] {
        let t = format!("{input}.{}", b64(&hmac_sha256(&secret, input.as_bytes())));
        assert_eq!(err(&t), VerifyError::AlgorithmNotAllowed { alg: "HS256".into() });
    }
}

#[test]
fn other_algorithms_are_not_allowed() {
    for alg in ["HS384", "HS512", "RS384", "RS512", "PS384", "PS512", "ES256", "EdDSA", "ps256", "rs256", "PS256 "] {
        let t = resign(|h, _| {
            h.insert("alg".into(), json!(alg));
        });
        assert_eq!(err(&t), VerifyError::AlgorithmNotAllowed { alg: alg.into() }, "{alg}");
    }
}

#[test]
fn alg_not_a_string_is_not_allowed() {
    for alg in [json!(256), json!(["PS256"]), json!({"name": "PS256"}), json!(null), json!(true)] {
        // The refusal names the value as its JSON text.
        let want = format!("algorithm {:?} is not allowed: expected PS256 or RS256", alg.to_string());
        let t = resign(|h, _| {
            h.insert("alg".into(), alg.clone());
        });
        {
            let e = err(&t);
            assert!(matches!(e, VerifyError::AlgorithmNotAllowed { .. }), "{alg}");
            says(&e, &want);
        }
    }
}

#[test]
fn missing_alg_is_not_allowed() {
    let t = resign(|h, _| {
        h.remove("alg");
    });
    assert_eq!(err(&t), VerifyError::AlgorithmNotAllowed { alg: tka::jws::ALG_ABSENT.into() });
}

#[test]
fn rs256_token_relabelled_ps256_is_bad_signature() {
    let t = issue(&IssueOptions { alg: SignatureAlgorithm::Rs256, ..Default::default() });
    let t = tamper(&t, |h, _| {
        h.insert("alg".into(), json!("PS256"));
    });
    assert_eq!(err(&t), VerifyError::BadSignature);
}

#[test]
fn ps256_token_relabelled_rs256_is_bad_signature() {
    let t = tamper(&token(), |h, _| {
        h.insert("alg".into(), json!("RS256"));
    });
    assert_eq!(err(&t), VerifyError::BadSignature);
}

#[test]
fn header_alg_pins_the_verification_algorithm() {
    // Signed by the real signer key over the real header, but with the other
    // algorithm than the header names: the header's alg must be the one used.
    let (mut h, p, _) = decode_parts(&token());
    h.insert("alg".into(), json!("PS256"));
    let t = forge(&h, &p, &pki().signer_key, SignatureAlgorithm::Rs256);
    assert_eq!(err(&t), VerifyError::BadSignature);
    h.insert("alg".into(), json!("RS256"));
    let t = forge(&h, &p, &pki().signer_key, SignatureAlgorithm::Ps256);
    assert_eq!(err(&t), VerifyError::BadSignature);
}

#[test]
fn ps256_with_wrong_salt_length_is_bad_signature() {
    // RFC 7518 §3.5: PS256 uses a 32-byte salt; a 20-byte salt is another algorithm.
    use rsa::signature::{SignatureEncoding, Signer as _};
    let (h, p, _) = split(&token());
    let input = format!("{h}.{p}");
    for (salt, ok) in [(20usize, false), (0, false), (64, false), (32, true)] {
        let key = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(private_key("signer"), salt);
        let sig = key.try_sign(input.as_bytes()).unwrap().to_vec();
        let r = verify(&format!("{input}.{}", b64(&sig)));
        if ok {
            r.unwrap();
        } else {
            assert_eq!(r.unwrap_err(), VerifyError::BadSignature, "salt {salt}");
        }
    }
}

#[test]
fn jwk_header_is_forbidden() {
    let t = resign(|h, _| {
        h.insert("jwk".into(), json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}));
    });
    assert_eq!(err(&t), VerifyError::ForbiddenHeader { name: "jwk".into() });
}

#[test]
fn jku_header_is_forbidden() {
    let t = resign(|h, _| {
        h.insert("jku".into(), json!("https://attacker.example/keys.json"));
    });
    assert_eq!(err(&t), VerifyError::ForbiddenHeader { name: "jku".into() });
}

#[test]
fn x5u_header_is_forbidden() {
    let t = resign(|h, _| {
        h.insert("x5u".into(), json!("https://attacker.example/chain.pem"));
    });
    assert_eq!(err(&t), VerifyError::ForbiddenHeader { name: "x5u".into() });
}

#[test]
fn forbidden_header_with_null_value_is_still_forbidden() {
    let t = resign(|h, _| {
        h.insert("jwk".into(), Value::Null);
    });
    assert_eq!(err(&t), VerifyError::ForbiddenHeader { name: "jwk".into() });
}

#[test]
fn crit_exp_is_unknown_critical() {
    let t = resign(|h, _| {
        h.insert("crit".into(), json!(["exp"]));
        h.insert("exp".into(), json!(NOW + DAY));
    });
    assert_eq!(err(&t), VerifyError::UnknownCritical { name: "exp".into() });
}

#[test]
fn crit_b64_is_unknown_critical() {
    let t = resign(|h, _| {
        h.insert("crit".into(), json!(["b64"]));
        h.insert("b64".into(), json!(false));
    });
    assert_eq!(err(&t), VerifyError::UnknownCritical { name: "b64".into() });
}

#[test]
fn crit_empty_or_not_an_array_is_unknown_critical() {
    for crit in [json!([]), json!("exp"), json!(null), json!({"exp": true})] {
        let t = resign(|h, _| {
            h.insert("crit".into(), crit.clone());
        });
        assert_eq!(err(&t), VerifyError::UnknownCritical { name: crit.to_string() }, "{crit}");
    }
}

#[test]
fn missing_typ_is_wrong_type() {
    let t = resign(|h, _| {
        h.remove("typ");
    });
    assert_eq!(err(&t), VerifyError::WrongType { expected: TOKEN_TYP, found: String::new() });
}

#[test]
fn typ_jwt_is_wrong_type() {
    let t = resign(|h, _| {
        h.insert("typ".into(), json!("JWT"));
    });
    assert_eq!(err(&t), VerifyError::WrongType { expected: TOKEN_TYP, found: "JWT".into() });
}

#[test]
fn typ_with_media_type_prefix_is_accepted() {
    // RFC 7515 §4.1.9: "application/" may be omitted; media types are case-insensitive.
    for typ in ["application/tka-token+jwt", "Application/TKA-Token+JWT", "TKA-TOKEN+JWT"] {
        let t = resign(|h, _| {
            h.insert("typ".into(), json!(typ));
        });
        verify(&t).unwrap_or_else(|e| panic!("{typ}: {e}"));
    }
}

#[test]
fn revocation_list_typ_is_refused_for_tokens() {
    for typ in [REVOCATION_TYP.to_string(), format!("application/{REVOCATION_TYP}")] {
        let t = resign(|h, _| {
            h.insert("typ".into(), json!(typ));
        });
        assert_eq!(err(&t), VerifyError::WrongType { expected: TOKEN_TYP, found: typ.clone() });
    }
}

#[test]
fn typ_not_a_string_is_wrong_type() {
    let t = resign(|h, _| {
        h.insert("typ".into(), json!(["tka-token+jwt"]));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::WrongType { expected: TOKEN_TYP, .. }));
        says(&e, "wrong typ: expected \"tka-token+jwt\", found \"[\\\"tka-token+jwt\\\"]\"");
    }
}

#[test]
fn missing_x5c_and_kid_is_missing_chain() {
    let t = resign(|h, _| {
        h.remove("x5c");
        h.remove("kid");
    });
    assert_eq!(err(&t), VerifyError::MissingChain);
}

/// Without `x5c` but with a `kid` the token is compact: with no known
/// certificates its signer is unknown.
#[test]
fn missing_x5c_with_kid_and_no_known_certificates_is_unknown_signer() {
    let t = resign(|h, _| {
        h.remove("x5c");
    });
    assert_eq!(err(&t), VerifyError::UnknownSigner { kid: sha256_hex(&pki().signer) });
}

#[test]
fn x5c_empty_or_not_an_array_is_malformed() {
    for (x5c, why) in [
        (json!([]), "x5c must be a non-empty array"),
        (json!(B64STD.encode(&pki().signer)), "x5c must be a non-empty array"),
        (json!(null), "x5c must be a non-empty array"),
        (json!([42]), "x5c entry is not a string"),
    ] {
        let t = resign(|h, _| {
            h.insert("x5c".into(), x5c.clone());
        });
        {
            let e = err(&t);
            assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }), "{x5c}");
            says(&e, &format!("malformed token header: {why}"));
        }
    }
}

#[test]
fn x5c_not_base64_is_malformed() {
    let t = resign(|h, _| {
        h.insert("x5c".into(), json!(["*** not base64 ***", B64STD.encode(&pki().int)]));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }));
        says(&e, "malformed token header: x5c entry is not base64: Invalid symbol 42, offset 0.");
    }
}

#[test]
fn x5c_base64url_instead_of_standard_base64_is_malformed() {
    // RFC 7515 §4.1.6: x5c entries are standard base64 (with padding), not base64url.
    let url = b64(&pki().signer);
    assert_ne!(url, B64STD.encode(&pki().signer));
    let t = resign(|h, _| {
        h.insert("x5c".into(), json!([url, B64STD.encode(&pki().int)]));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }));
        // The first base64url-only character ('-' or '_') is the one refused.
        let (at, c) = url.char_indices().find(|(_, c)| matches!(c, '-' | '_')).unwrap();
        says(
            &e,
            &format!("malformed token header: x5c entry is not base64: Invalid symbol {}, offset {at}.", c as u32),
        );
    }
}

#[test]
fn x5c_garbage_der_is_bad_certificate() {
    let t = resign(|h, _| {
        h.insert("x5c".into(), json!([B64STD.encode(b"this is not a certificate"), B64STD.encode(&pki().int)]));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { .. }));
        says(&e, "certificate (unparsed): not X.509 DER: Parsing Error: NomError(Eof)");
    }
}

#[test]
fn x5c_certificate_with_trailing_bytes_is_bad_certificate() {
    let mut signer = pki().signer.clone();
    signer.extend_from_slice(&[0, 0]);
    let t = resign(|h, _| {
        h.insert("x5c".into(), json!([B64STD.encode(&signer), B64STD.encode(&pki().int)]));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { .. }));
        says(&e, "certificate (unparsed): trailing bytes after the certificate");
    }
}

#[test]
fn x5c_oversized_certificate_is_bad_certificate() {
    // A signer certificate over the 16 KiB certificate limit (padded with a
    // large non-critical extension), in a token still under 64 KiB.
    let mut exts = signer_exts();
    exts.push(unknown_ext("1.3.6.1.4.1.55555.1.3", false, vec![0u8; tka::pki::MAX_CERT_SIZE]));
    let c = raw_signer("CN=Big Signer,O=tka tests", exts);
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    assert!(t.len() < MAX_JWS_SIZE);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { ref detail, .. } if detail.contains("larger")));
        says(&e, "certificate (unparsed): larger than 16384 bytes");
    }
}

#[test]
fn x5c_with_more_than_five_certificates_is_bad_certificate() {
    let p = pki();
    let chain: Vec<&[u8]> = vec![&p.signer, &p.int, &p.root, &p.root, &p.root, &p.root];
    let t = token_for_chain(&chain, &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { ref subject, .. } if subject == "chain"));
        says(&e, "certificate chain: 6 certificates, more than the 5 allowed");
    }
}

#[test]
fn kid_not_matching_signer_is_malformed() {
    let t = resign(|h, _| {
        h.insert("kid".into(), json!(sha256_hex(&pki().int)));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::Malformed { what: "token header", ref detail } if detail.contains("kid")));
        says(&e, "malformed token header: kid does not match the x5c signer certificate");
    }
}

#[test]
fn kid_uppercase_fingerprint_is_malformed() {
    let t = resign(|h, _| {
        h.insert("kid".into(), json!(sha256_hex(&pki().signer).to_uppercase()));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }));
        says(&e, "malformed token header: kid does not match the x5c signer certificate");
    }
}

#[test]
fn kid_not_a_string_is_malformed() {
    let t = resign(|h, _| {
        h.insert("kid".into(), json!(1));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::Malformed { what: "token header", .. }));
        says(&e, "malformed token header: kid is not a string");
    }
}

#[test]
fn kid_absent_is_accepted() {
    // RFC 7515: kid is optional; the key comes from x5c either way.
    let t = resign(|h, _| {
        h.remove("kid");
    });
    verify(&t).unwrap();
}

// ===========================================================================
// Step 3: certificate path.

#[test]
fn chain_to_untrusted_root_with_same_name_is_untrusted_root() {
    // An attacker's own root with the trusted root's name, and an issuing CA
    // with the real issuing CA's name.
    let p = pki();
    let other = test_key("other");
    let signer2 = test_key("signer2");
    let evil_root = cert(CertKind::Root, "CN=Test Root,O=tka tests", &other, None, NOW - DAY, NOW + 3650 * DAY);
    let evil_int = cert(
        CertKind::Intermediate,
        "CN=Test Issuing CA,O=tka tests",
        &signer2,
        Some((&evil_root, &other)),
        NOW - DAY,
        NOW + 1000 * DAY,
    );
    let evil_signer = cert(
        CertKind::Signer,
        "CN=Test Signer,O=tka tests",
        &p.signer_key,
        Some((&evil_int, &signer2)),
        NOW - DAY,
        NOW + 365 * DAY,
    );
    let expected = VerifyError::UntrustedRoot { issuer: "CN=Test Root,O=tka tests".into() };
    let t = token_for_chain(&[&evil_signer, &evil_int], &p.signer_key);
    assert_eq!(err(&t), expected);
    // Including the forged root in x5c changes nothing.
    let t = token_for_chain(&[&evil_signer, &evil_int, &evil_root], &p.signer_key);
    assert_eq!(err(&t), expected);
}

#[test]
fn chain_to_different_root_is_untrusted_root() {
    let p = pki();
    let other = test_key("other");
    let root = cert(CertKind::Root, "CN=Evil Root,O=evil", &other, None, NOW - DAY, NOW + 3650 * DAY);
    let signer = cert(
        CertKind::Signer,
        "CN=Evil Signer,O=evil",
        &p.signer_key,
        Some((&root, &other)),
        NOW - DAY,
        NOW + 365 * DAY,
    );
    let t = issue_token(&request(), &IssueOptions::default(), &signer_with(vec![signer], "signer"), ISSUED).unwrap();
    assert_eq!(err(&t.text), VerifyError::UntrustedRoot { issuer: "CN=Evil Root,O=evil".into() });
}

#[test]
fn two_trusted_roots_with_the_same_name_pick_the_one_whose_key_verifies() {
    // Root rotation: an old and a new root may share a name; the chain must
    // be checked against the key that actually signed it.
    let other = test_key("other");
    let same_name = cert(CertKind::Root, "CN=Test Root,O=tka tests", &other, None, NOW - DAY, NOW + 3650 * DAY);
    for roots in [vec![same_name.clone(), pki().root.clone()], vec![pki().root.clone(), same_name.clone()]] {
        let v = V { roots, ..V::default() }.run(&token()).unwrap();
        assert_eq!(v.path.len(), 3);
    }
}

#[test]
fn no_trusted_roots_is_untrusted_root() {
    let r = V { roots: vec![], ..V::default() }.run(&token());
    assert_eq!(r.unwrap_err(), VerifyError::UntrustedRoot { issuer: "CN=Test Root,O=tka tests".into() });
}

#[test]
fn intermediate_missing_from_x5c_is_untrusted_root() {
    let p = pki();
    let t = issue_token(&request(), &IssueOptions::default(), &signer_with(vec![p.signer.clone()], "signer"), ISSUED)
        .unwrap();
    assert_eq!(err(&t.text), VerifyError::UntrustedRoot { issuer: subject_of(&p.int) });
}

#[test]
fn trusted_root_included_in_x5c_is_accepted() {
    let p = pki();
    let s = signer_with(vec![p.signer.clone(), p.int.clone(), p.root.clone()], "signer");
    let t = issue_token(&request(), &IssueOptions::default(), &s, ISSUED).unwrap();
    assert_eq!(verify(&t.text).unwrap().path.len(), 3);
}

#[test]
fn chain_in_wrong_order_is_bad_certificate() {
    let p = pki();
    let t = token_for_chain(&[&p.signer, &p.root, &p.int], &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { ref subject, .. } if *subject == subject_of(&p.signer)));
        says(&e, "certificate CN=Test Signer,O=tka tests: issuer CN=Test Issuing CA,O=tka tests does not match the next certificate's subject CN=Test Root,O=tka tests");
    }
}

#[test]
fn chain_with_intermediate_first_is_bad_certificate() {
    // x5c's first certificate holds the token key (RFC 7515 §4.1.6): with the
    // intermediate first, the path ends at the root after one certificate and
    // the signer certificate trailing it certifies nothing: refused.
    let p = pki();
    let t = token_for_chain(&[&p.int, &p.signer], &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { ref subject, ref detail }
            if *subject == subject_of(&p.signer) && detail.contains("continues past the trusted root")));
        says(&e, "certificate CN=Test Signer,O=tka tests: x5c continues past the trusted root with a certificate that does not certify the one before it");
    }
}

#[test]
fn x5c_with_unrelated_trailing_certificate_is_bad_certificate() {
    let p = pki();
    let other = test_key("other");
    let unrelated = cert(CertKind::Root, "CN=Unrelated,O=elsewhere", &other, None, NOW - DAY, NOW + 365 * DAY);
    let t = token_for_chain(&[&p.signer, &p.int, &unrelated], &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { .. }));
        says(&e, "certificate CN=Unrelated,O=elsewhere: x5c continues past the trusted root with a certificate that does not certify the one before it");
    }
}

#[test]
fn issuer_subject_mismatch_is_bad_certificate() {
    let p = pki();
    let other = test_key("other");
    let unrelated = cert(CertKind::Root, "CN=Unrelated CA,O=elsewhere", &other, None, NOW - DAY, NOW + 365 * DAY);
    let t = token_for_chain(&[&p.signer, &unrelated], &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { ref subject, ref detail }
            if *subject == subject_of(&p.signer) && detail.contains("Unrelated CA")));
        says(&e, "certificate CN=Test Signer,O=tka tests: issuer CN=Test Issuing CA,O=tka tests does not match the next certificate's subject CN=Unrelated CA,O=elsewhere");
    }
}

#[test]
fn signer_signed_by_wrong_key_is_bad_cert_signature() {
    // Names the real issuing CA as issuer, but signed with another key.
    let p = pki();
    let forged = raw_cert(
        "CN=Test Signer,O=tka tests",
        "signer",
        Some((&p.int, "other")),
        NOW - 30 * DAY,
        NOW + 335 * DAY,
        signer_exts(),
    );
    let t = token_for_chain(&[&forged, &p.int], &p.signer_key);
    assert_eq!(err(&t), VerifyError::BadCertSignature { subject: subject_of(&forged) });
}

#[test]
fn intermediate_signed_by_wrong_key_is_bad_cert_signature() {
    // Same name and key as the real issuing CA, signed by someone else's key
    // in the root's name; the real root is in x5c too.
    let p = pki();
    let forged = raw_cert(
        "CN=Test Issuing CA,O=tka tests",
        "intermediate",
        Some((&p.root, "other")),
        NOW - 300 * DAY,
        NOW + 5 * 365 * DAY,
        ca_exts(Some(0)),
    );
    let t = token_for_chain(&[&p.signer, &forged, &p.root], &p.signer_key);
    assert_eq!(err(&t), VerifyError::BadCertSignature { subject: subject_of(&forged) });
    // Without the root in x5c the forged intermediate simply leads nowhere.
    let t = token_for_chain(&[&p.signer, &forged], &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::UntrustedRoot { .. }));
        says(&e, "certificate chain does not lead to a trusted root (ends at issuer CN=Test Root,O=tka tests)");
    }
}

#[test]
fn tampered_signer_certificate_is_bad_cert_signature() {
    // Flip a bit in the certificate's signature (the last byte of its DER).
    let p = pki();
    let mut signer = p.signer.clone();
    *signer.last_mut().unwrap() ^= 1;
    let t = token_for_chain(&[&signer, &p.int], &p.signer_key);
    assert_eq!(err(&t), VerifyError::BadCertSignature { subject: subject_of(&p.signer) });
}

#[test]
fn ca_certificate_as_signer_is_signer_is_ca() {
    let p = pki();
    let t = token_for_chain(&[&p.int], &p.int_key);
    assert_eq!(err(&t), VerifyError::SignerIsCa { subject: subject_of(&p.int) });
}

#[test]
fn root_certificate_as_signer_is_signer_is_ca() {
    let p = pki();
    let t = token_for_chain(&[&p.root], &p.root_key);
    assert_eq!(err(&t), VerifyError::SignerIsCa { subject: subject_of(&p.root) });
}

#[test]
fn signer_without_eku_is_missing_signer_eku() {
    let c = raw_signer("CN=No EKU Signer,O=tka tests", vec![bc(false, None), ku(KeyUsages::DigitalSignature)]);
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::MissingSignerEku { subject: subject_of(&c) });
}

#[test]
fn signer_with_other_eku_is_missing_signer_eku() {
    // codeSigning and anyExtendedKeyUsage are not the tka token-signing EKU.
    let code_signing = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
    let any = ObjectIdentifier::new_unwrap("2.5.29.37.0");
    for ekus in [vec![code_signing], vec![any]] {
        let c = raw_signer(
            "CN=Other EKU Signer,O=tka tests",
            vec![bc(false, None), ku(KeyUsages::DigitalSignature), ext(&ExtendedKeyUsage(ekus), false)],
        );
        let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
        assert_eq!(err(&t), VerifyError::MissingSignerEku { subject: subject_of(&c) });
    }
}

#[test]
fn signer_without_digital_signature_is_missing_digital_signature() {
    let c = raw_signer("CN=NR Signer,O=tka tests", vec![bc(false, None), ku(KeyUsages::NonRepudiation), tka_eku()]);
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::MissingDigitalSignature { subject: subject_of(&c) });
}

#[test]
fn signer_without_key_usage_is_missing_digital_signature() {
    let c = raw_signer("CN=No KU Signer,O=tka tests", vec![bc(false, None), tka_eku()]);
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::MissingDigitalSignature { subject: subject_of(&c) });
}

#[test]
fn raw_signer_with_the_tka_profile_verifies() {
    // Sanity check of the raw certificate builder: the normal profile passes.
    let c = raw_signer("CN=Raw Signer,O=tka tests", signer_exts());
    verify(&token_for_chain(&[&c, &pki().int], &pki().signer_key)).unwrap();
}

#[test]
fn signer_as_v1_certificate_is_bad_certificate() {
    // No extensions at all: the builder writes an X.509 v1 certificate.
    let c = raw_signer("CN=V1 Signer,O=tka tests", vec![]);
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { .. }));
        says(&e, "certificate CN=V1 Signer,O=tka tests: not an X.509 v3 certificate");
    }
}

#[test]
fn signer_with_duplicate_extension_is_bad_certificate() {
    let c = raw_signer(
        "CN=Dup Ext Signer,O=tka tests",
        vec![bc(false, None), ku(KeyUsages::DigitalSignature), tka_eku(), tka_eku()],
    );
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadCertificate { .. }));
        says(&e, "certificate CN=Dup Ext Signer,O=tka tests: extension 2.5.29.37 appears twice");
    }
}

/// A CA certificate (key `key`) under the test root, and a normal signer under it.
fn chain_through(int_subject: &str, int_exts: Vec<Extension>) -> (Vec<u8>, Vec<u8>) {
    let p = pki();
    let int = raw_cert(int_subject, "signer2", Some((&p.root, "root")), NOW - 300 * DAY, NOW + 1000 * DAY, int_exts);
    let signer = raw_cert(
        "CN=Signer Below,O=tka tests",
        "signer",
        Some((&int, "signer2")),
        NOW - DAY,
        NOW + 365 * DAY,
        signer_exts(),
    );
    (int, signer)
}

#[test]
fn ca_false_intermediate_is_not_ca() {
    let (int, signer) = chain_through(
        "CN=Not A CA,O=tka tests",
        vec![bc(false, None), ku(KeyUsages::KeyCertSign | KeyUsages::CRLSign)],
    );
    let t = token_for_chain(&[&signer, &int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::NotCa { subject: subject_of(&int) });
}

#[test]
fn intermediate_without_basic_constraints_is_not_ca() {
    let (int, signer) = chain_through("CN=No BC,O=tka tests", vec![ku(KeyUsages::KeyCertSign | KeyUsages::CRLSign)]);
    let t = token_for_chain(&[&signer, &int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::NotCa { subject: subject_of(&int) });
}

#[test]
fn intermediate_without_key_cert_sign_is_missing_key_cert_sign() {
    let (int, signer) = chain_through("CN=No KeyCertSign,O=tka tests", vec![bc(true, Some(0)), ku(KeyUsages::CRLSign)]);
    let t = token_for_chain(&[&signer, &int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::MissingKeyCertSign { subject: subject_of(&int) });
}

#[test]
fn path_len_exceeded() {
    // root -> issuing CA (pathLen 0) -> second CA -> signer.
    let p = pki();
    let int2 = raw_cert(
        "CN=Second CA,O=tka tests",
        "signer2",
        Some((&p.int, "intermediate")),
        NOW - 100 * DAY,
        NOW + 1000 * DAY,
        ca_exts(None),
    );
    let signer = cert(
        CertKind::Signer,
        "CN=Deep Signer,O=tka tests",
        &p.signer_key,
        Some((&int2, &test_key("signer2"))),
        NOW - DAY,
        NOW + 365 * DAY,
    );
    let t = token_for_chain(&[&signer, &int2, &p.int], &p.signer_key);
    assert_eq!(err(&t), VerifyError::PathLenExceeded { subject: subject_of(&p.int) });
}

#[test]
fn path_len_one_allows_one_more_ca() {
    // root -> CA (pathLen 1) -> CA (pathLen 0) -> signer is within bounds.
    let p = pki();
    let a = raw_cert(
        "CN=CA A,O=tka tests",
        "intermediate",
        Some((&p.root, "root")),
        NOW - DAY,
        NOW + 1000 * DAY,
        ca_exts(Some(1)),
    );
    let b = raw_cert(
        "CN=CA B,O=tka tests",
        "signer2",
        Some((&a, "intermediate")),
        NOW - DAY,
        NOW + 1000 * DAY,
        ca_exts(Some(0)),
    );
    let s =
        raw_cert("CN=Signer B,O=tka tests", "signer", Some((&b, "signer2")), NOW - DAY, NOW + 365 * DAY, signer_exts());
    let v = verify(&token_for_chain(&[&s, &b, &a], &p.signer_key)).unwrap();
    assert_eq!(v.path.len(), 4);
}

#[test]
fn unknown_critical_extension_on_signer_is_refused() {
    let oid = "1.3.6.1.4.1.55555.1.2";
    let mut exts = signer_exts();
    exts.push(unknown_ext(oid, true, vec![0x05, 0x00]));
    let c = raw_signer("CN=Crit Signer,O=tka tests", exts);
    let t = token_for_chain(&[&c, &pki().int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::UnknownCriticalExtension { subject: subject_of(&c), oid: oid.into() });
}

#[test]
fn unknown_non_critical_extension_on_signer_is_accepted() {
    let mut exts = signer_exts();
    exts.push(unknown_ext("1.3.6.1.4.1.55555.1.2", false, vec![0x05, 0x00]));
    let c = raw_signer("CN=Noncrit Signer,O=tka tests", exts);
    verify(&token_for_chain(&[&c, &pki().int], &pki().signer_key)).unwrap();
}

#[test]
fn unknown_critical_extension_on_intermediate_is_refused() {
    let oid = "1.3.6.1.4.1.55555.9";
    let mut exts = ca_exts(Some(0));
    exts.push(unknown_ext(oid, true, vec![0x05, 0x00]));
    let (int, signer) = chain_through("CN=Crit CA,O=tka tests", exts);
    let t = token_for_chain(&[&signer, &int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::UnknownCriticalExtension { subject: subject_of(&int), oid: oid.into() });
}

/// A signer certificate for `key` under the test issuing CA, made by the library's builder.
fn signer_under_int(subject: &str, key: &SoftwareKey, nb: i64, na: i64) -> Vec<u8> {
    let p = pki();
    cert(CertKind::Signer, subject, key, Some((&p.int, &p.int_key)), nb, na)
}

#[test]
fn rsa_1024_signer_is_weak_key() {
    let p = pki();
    let weak = test_key("weak1024");
    let c = signer_under_int("CN=Weak Signer,O=tka tests", &weak, NOW - DAY, NOW + 300 * DAY);
    let t = token_for_chain(&[&c, &p.int], &weak);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::WeakKey { ref subject, .. } if *subject == subject_of(&c)));
        says(&e, "certificate CN=Weak Signer,O=tka tests: RSA key of 1024 bits is below the 2048-bit minimum");
    }
}

#[test]
fn rsa_1024_intermediate_is_weak_key() {
    let p = pki();
    let weak = test_key("weak1024");
    let int = cert(
        CertKind::Intermediate,
        "CN=Weak CA,O=tka tests",
        &weak,
        Some((&p.root, &p.root_key)),
        NOW - DAY,
        NOW + 1000 * DAY,
    );
    let s = cert(
        CertKind::Signer,
        "CN=Signer Under Weak,O=tka tests",
        &p.signer_key,
        Some((&int, &weak)),
        NOW - DAY,
        NOW + 300 * DAY,
    );
    let t = token_for_chain(&[&s, &int], &p.signer_key);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::WeakKey { ref subject, .. } if *subject == subject_of(&int)));
        says(&e, "certificate CN=Weak CA,O=tka tests: RSA key of 1024 bits is below the 2048-bit minimum");
    }
}

/// A fresh RSA key of an unusual size (not one of tka's key sizes), as a SoftwareKey.
fn odd_size_key(bits: usize) -> SoftwareKey {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    SoftwareKey::from_pkcs8_pem(&pem, None, std::path::Path::new("generated")).unwrap()
}

#[test]
fn rsa_2000_signer_is_weak_key() {
    let p = pki();
    let weak = odd_size_key(2000);
    {
        use rsa::traits::PublicKeyParts;
        assert_eq!(weak.public_key().size(), 250, "a 2000-bit modulus");
    }
    let c = signer_under_int("CN=2000-bit Signer,O=tka tests", &weak, NOW - DAY, NOW + 300 * DAY);
    let t = token_for_chain(&[&c, &p.int], &weak);
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::WeakKey { ref subject, .. } if *subject == subject_of(&c)));
        says(&e, "certificate CN=2000-bit Signer,O=tka tests: RSA key of 2000 bits is below the 2048-bit minimum");
    }
}

#[test]
fn expired_signer_is_cert_expired() {
    let p = pki();
    let na = NOW - DAY;
    let c = signer_under_int("CN=Expired Signer,O=tka tests", &p.signer_key, NOW - 400 * DAY, na);
    let opts = IssueOptions { lifetime: TokenLifetime::Days(30), ..Default::default() };
    let t = issue_token(&request(), &opts, &signer_with(vec![c.clone(), p.int.clone()], "signer"), NOW - 100 * DAY)
        .unwrap();
    assert_eq!(err(&t.text), VerifyError::CertExpired { subject: subject_of(&c), not_after: na, now: NOW });
    // One second before notAfter (and inside the token's life) it was fine.
    verify_at(&t.text, NOW - 90 * DAY, &machine()).unwrap();
}

#[test]
fn signer_valid_through_its_not_after_second() {
    // RFC 5280: the validity period includes notAfter itself.
    let p = pki();
    let na = CertInfo::parse(&p.signer).unwrap().not_after;
    let t = issue(&IssueOptions { lifetime: TokenLifetime::Perpetual, ..Default::default() });
    verify_at(&t, na, &machine()).unwrap();
    assert_eq!(
        verify_at(&t, na + 1, &machine()).unwrap_err(),
        VerifyError::CertExpired { subject: subject_of(&p.signer), not_after: na, now: na + 1 }
    );
}

#[test]
fn not_yet_valid_signer_is_cert_not_yet_valid() {
    let p = pki();
    let nb = NOW + 10 * DAY;
    let c = signer_under_int("CN=Future Signer,O=tka tests", &p.signer_key, nb, NOW + 300 * DAY);
    let opts = IssueOptions { lifetime: TokenLifetime::Days(30), ..Default::default() };
    let t = issue_token(&request(), &opts, &signer_with(vec![c.clone(), p.int.clone()], "signer"), nb + DAY).unwrap();
    assert_eq!(err(&t.text), VerifyError::CertNotYetValid { subject: subject_of(&c), not_before: nb, now: NOW });
}

/// An issuing CA (test key "intermediate", under the test root) valid from
/// `nb` to `na`, and a signer under it valid from 30 days ago for 300 days
/// (it may outlive its issuer: the library's builder refuses to make one).
fn dated_intermediate(int_subject: &str, signer_subject: &str, nb: i64, na: i64) -> (Vec<u8>, Vec<u8>) {
    let p = pki();
    let int = raw_cert(int_subject, "intermediate", Some((&p.root, "root")), nb, na, ca_exts(Some(0)));
    let s = raw_cert(
        signer_subject,
        "signer",
        Some((&int, "intermediate")),
        NOW - 30 * DAY,
        NOW + 300 * DAY,
        signer_exts(),
    );
    (int, s)
}

#[test]
fn expired_intermediate_is_cert_expired() {
    let na = NOW - DAY;
    let (int, s) =
        dated_intermediate("CN=Old Issuing CA,O=tka tests", "CN=Outliving Signer,O=tka tests", NOW - 1000 * DAY, na);
    let t = token_for_chain(&[&s, &int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::CertExpired { subject: subject_of(&int), not_after: na, now: NOW });
}

#[test]
fn not_yet_valid_intermediate_is_cert_not_yet_valid() {
    let nb = NOW + DAY;
    let (int, s) = dated_intermediate("CN=Future CA,O=tka tests", "CN=Early Signer,O=tka tests", nb, NOW + 1000 * DAY);
    let t = token_for_chain(&[&s, &int], &pki().signer_key);
    assert_eq!(err(&t), VerifyError::CertNotYetValid { subject: subject_of(&int), not_before: nb, now: NOW });
}

#[test]
fn expired_root_is_cert_expired() {
    let p = pki();
    let na = NOW - DAY;
    let root = raw_cert("CN=Old Root,O=tka tests", "root", None, NOW - 7000 * DAY, na, ca_exts(None));
    let int = raw_cert(
        "CN=Issuing CA X,O=tka tests",
        "intermediate",
        Some((&root, "root")),
        NOW - 300 * DAY,
        NOW + 1000 * DAY,
        ca_exts(Some(0)),
    );
    let s = cert(
        CertKind::Signer,
        "CN=Signer X,O=tka tests",
        &p.signer_key,
        Some((&int, &p.int_key)),
        NOW - 30 * DAY,
        NOW + 335 * DAY,
    );
    let t = token_for_chain(&[&s, &int], &p.signer_key);
    let r = V { roots: vec![root.clone()], ..V::default() }.run(&t);
    assert_eq!(r.unwrap_err(), VerifyError::CertExpired { subject: subject_of(&root), not_after: na, now: NOW });
}

// ===========================================================================
// Step 3: compact tokens (no x5c): the chain from the known certificates.

fn compact_token() -> String {
    issue(&IssueOptions { compact: true, ..Default::default() })
}

/// Verifies `text` with `pool` as the known certificates.
fn with_pool(text: &str, pool: Vec<Vec<u8>>) -> Result<VerifiedToken, VerifyError> {
    V { certificates: pool, ..V::default() }.run(text)
}

/// The full token's header with `x5c` set to `chain`, signed again.
fn with_x5c(chain: &[Vec<u8>]) -> String {
    resign(|h, _| {
        h.insert("x5c".into(), Value::Array(chain.iter().map(|c| json!(B64STD.encode(c))).collect()));
    })
}

const ISSUING_CA: &str = "CN=Test Issuing CA,O=tka tests";

#[test]
fn compact_token_verifies_with_its_chain_among_the_known_certificates() {
    let p = pki();
    let t = compact_token();
    // Any order, with unrelated certificates around.
    let v = with_pool(&t, vec![other_pki().signer.clone(), p.int.clone(), p.root.clone(), p.signer.clone()]).unwrap();
    let full = verify(&token()).unwrap();
    assert_eq!(v.path, full.path);
    assert_eq!(v.signer.fingerprint, sha256_hex(&p.signer));
}

/// The format fixes the compact header: `alg`, `kid`, `typ`, nothing else.
#[test]
fn compact_header_is_alg_kid_typ_only() {
    let t = compact_token();
    let (h, _, sig) = decode_parts(&t);
    assert_eq!(
        Value::Object(h),
        json!({"alg": "PS256", "kid": sha256_hex(&pki().signer), "typ": TOKEN_TYP}),
        "no x5c in a compact header"
    );
    let header_b64 = t.split('.').next().unwrap().len();
    // {"alg":"PS256","kid":"<64 hex>","typ":"tka-token+jwt"}: 110 bytes.
    assert!(header_b64 <= 147, "compact header is {header_b64} base64url characters");
    assert_eq!(sig.len(), 256, "RSA-2048 signature");
}

#[test]
fn compact_token_with_an_unknown_kid_is_unknown_signer() {
    let p = pki();
    // Issuers known, the signer not.
    let e = with_pool(&compact_token(), vec![p.int.clone(), p.root.clone()]).unwrap_err();
    assert_eq!(e, VerifyError::UnknownSigner { kid: sha256_hex(&p.signer) });
}

/// A pool without the intermediate is an `x5c` that stops at the signer:
/// the same error, naming the issuer nobody supplied.
#[test]
fn compact_token_without_its_intermediate_gives_the_error_of_a_short_x5c() {
    let p = pki();
    let from_pool = with_pool(&compact_token(), vec![p.signer.clone()]).unwrap_err();
    let from_x5c = err(&with_x5c(std::slice::from_ref(&p.signer)));
    assert_eq!(from_pool, VerifyError::UntrustedRoot { issuer: ISSUING_CA.into() });
    assert_eq!(from_pool, from_x5c);
}

/// A known CA certificate with the intermediate's name but another key
/// (and key identifier) is not the signer's issuer: not used.
#[test]
fn compact_token_ignores_a_known_certificate_that_is_not_its_issuer() {
    let p = pki();
    let impostor = cert(
        CertKind::Intermediate,
        ISSUING_CA,
        &test_key("other"),
        Some((&p.root, &p.root_key)),
        NOW - DAY,
        NOW + 365 * DAY,
    );
    let e = with_pool(&compact_token(), vec![p.signer.clone(), impostor.clone()]).unwrap_err();
    assert_eq!(e, VerifyError::UntrustedRoot { issuer: ISSUING_CA.into() });
    // With the real intermediate also known, the impostor does not get in the way.
    with_pool(&compact_token(), vec![p.signer.clone(), impostor, p.int.clone()]).unwrap();
}

/// An issuer candidate by name only (no key identifiers to tell it apart)
/// whose key did not sign the signer: the `x5c` error for that chain.
#[test]
fn compact_token_with_a_same_name_issuer_of_another_key_gives_the_x5c_error() {
    let p = pki();
    let impostor = cert_under(
        ISSUING_CA,
        "other",
        Some((&p.root, "root")),
        SerialNumber::new(&[0x51]).unwrap(),
        NOW - DAY,
        NOW + 365 * DAY,
        ca_exts(None),
    );
    let from_pool = with_pool(&compact_token(), vec![p.signer.clone(), impostor.clone()]).unwrap_err();
    assert_eq!(from_pool, VerifyError::BadCertSignature { subject: "CN=Test Signer,O=tka tests".into() });
    assert_eq!(from_pool, err(&with_x5c(&[p.signer.clone(), impostor])));
}

/// A `kid` naming a CA certificate makes that CA the signer: refused by
/// the signer profile, as an `x5c` starting with a CA is.
#[test]
fn compact_token_whose_kid_names_a_ca_is_signer_is_ca() {
    let p = pki();
    let t = resign(|h, _| {
        h.remove("x5c");
        h.insert("kid".into(), json!(sha256_hex(&p.int)));
    });
    let e = with_pool(&t, vec![p.signer.clone(), p.int.clone()]).unwrap_err();
    assert_eq!(e, VerifyError::SignerIsCa { subject: ISSUING_CA.into() });
}

/// The `kid` switched to another known signer: its key did not sign.
#[test]
fn compact_token_with_kid_of_another_known_signer_is_bad_signature() {
    let p = pki();
    let other_signer = cert(
        CertKind::Signer,
        "CN=Test Signer 2,O=tka tests",
        &test_key("signer2"),
        Some((&p.int, &p.int_key)),
        NOW - DAY,
        NOW + 300 * DAY,
    );
    let t = compact_token();
    let (mut h, pl, _) = decode_parts(&t);
    h.insert("kid".into(), json!(sha256_hex(&other_signer)));
    let (_, _, sig) = split(&t);
    let forged = format!("{}.{}.{sig}", b64_json(&h), b64_json(&pl));
    let e = with_pool(&forged, vec![p.signer.clone(), other_signer, p.int.clone()]).unwrap_err();
    assert_eq!(e, VerifyError::BadSignature);
}

#[test]
fn compact_token_with_tampered_claims_is_bad_signature() {
    let p = pki();
    let t = compact_token();
    let (h, mut pl, _) = decode_parts(&t);
    pl.insert("exp".into(), json!(NOW + 300 * DAY));
    let (_, _, sig) = split(&t);
    let forged = format!("{}.{}.{sig}", b64_json(&h), b64_json(&pl));
    assert_eq!(with_pool(&forged, vec![p.signer.clone(), p.int.clone()]).unwrap_err(), VerifyError::BadSignature);
}

/// The known certificates are only for tokens without `x5c`: a broken
/// `x5c` is not repaired by them, and an unrelated pool does not matter.
#[test]
fn a_token_with_x5c_ignores_the_known_certificates() {
    let p = pki();
    let short = with_x5c(std::slice::from_ref(&p.signer));
    let e = with_pool(&short, vec![p.signer.clone(), p.int.clone()]).unwrap_err();
    assert_eq!(e, VerifyError::UntrustedRoot { issuer: ISSUING_CA.into() });
    with_pool(&token(), vec![other_pki().signer.clone(), b"not a certificate".to_vec()]).unwrap();
}

/// Known certificates are not trusted: a compact token from another PKI
/// whose whole chain is known still needs a trusted root.
#[test]
fn compact_token_from_an_untrusted_pki_is_untrusted_root() {
    let o = other_pki();
    let signer = TokenSigner::new(Box::new(test_key("signer2")), vec![o.signer.clone()]).unwrap();
    let opts = IssueOptions { compact: true, ..Default::default() };
    let t = issue_token(&request(), &opts, &signer, ISSUED).unwrap().text;
    let e = with_pool(&t, vec![o.signer.clone(), o.root.clone()]).unwrap_err();
    assert_eq!(e, VerifyError::UntrustedRoot { issuer: "CN=Self-made Root,O=someone".into() });
}

/// An expired and a current certificate of the same issuing CA (same name
/// and key) are both known: the current one is chosen.
#[test]
fn compact_token_prefers_the_issuer_certificate_valid_now() {
    let p = pki();
    let old =
        cert(CertKind::Intermediate, ISSUING_CA, &p.int_key, Some((&p.root, &p.root_key)), NOW - 900 * DAY, NOW - DAY);
    with_pool(&compact_token(), vec![old.clone(), p.signer.clone(), p.int.clone()]).unwrap();
    // With only the expired one, the path is built and then refused.
    let e = with_pool(&compact_token(), vec![old, p.signer.clone()]).unwrap_err();
    assert!(matches!(e, VerifyError::CertExpired { ref subject, .. } if subject == ISSUING_CA), "{e:?}");
    says(&e, "certificate CN=Test Issuing CA,O=tka tests expired at 2027-01-14T08:00:00Z, now is 2027-01-15T08:00:00Z");
}

// ===========================================================================
// Step 3: CRLs.

#[test]
fn signer_on_crl_from_intermediate_is_cert_revoked() {
    let p = pki();
    let crl = make_crl(&p.int, "intermediate", &[&p.signer]);
    let r = V { crls: vec![crl], ..V::default() }.run(&token());
    assert_eq!(
        r.unwrap_err(),
        VerifyError::CertRevoked { subject: subject_of(&p.signer), serial: serial_of(&p.signer) }
    );
}

#[test]
fn crl_signed_by_wrong_key_does_not_revoke() {
    let p = pki();
    let crl = make_crl(&p.int, "other", &[&p.signer]);
    assert!(crl.revoked.contains(&serial_of(&p.signer)));
    V { crls: vec![crl], ..V::default() }.run(&token()).unwrap();
}

#[test]
fn crl_from_another_issuer_does_not_revoke_signer() {
    // The root's CRL lists the signer's serial, but the root did not issue the signer.
    let p = pki();
    let crl = make_crl(&p.root, "root", &[&p.signer]);
    V { crls: vec![crl], ..V::default() }.run(&token()).unwrap();
}

#[test]
fn crl_not_listing_signer_does_not_revoke() {
    let p = pki();
    let crl = make_crl(&p.int, "intermediate", &[]);
    V { crls: vec![crl], ..V::default() }.run(&token()).unwrap();
}

#[test]
fn intermediate_on_crl_from_root_is_cert_revoked() {
    let p = pki();
    let crl = make_crl(&p.root, "root", &[&p.int]);
    let r = V { crls: vec![crl], ..V::default() }.run(&token());
    assert_eq!(r.unwrap_err(), VerifyError::CertRevoked { subject: subject_of(&p.int), serial: serial_of(&p.int) });
}

/// Review 2, finding 5: a delta CRL, a partitioned CRL (issuingDistributionPoint
/// onlyContainsCACerts), an indirect CRL and a CRL with an unknown critical
/// extension were applied as complete, direct CRLs (an empty one with a
/// higher number replaced the complete CRL and un-revoked a signer). tka
/// refuses each when it is parsed; a non-critical unknown extension is
/// harmless and accepted.
#[test]
fn crl_kinds_tka_does_not_implement_are_refused() {
    let p = pki();
    let serials = || vec![Certificate::from_der(&p.signer).unwrap().tbs_certificate().serial_number().clone()];
    // deltaCRLIndicator: BaseCRLNumber INTEGER 1.
    let delta = unknown_ext("2.5.29.27", true, vec![0x02, 0x01, 0x01]);
    // issuingDistributionPoint { onlyContainsCACerts [2] TRUE }.
    let idp = unknown_ext("2.5.29.28", true, vec![0x30, 0x03, 0x82, 0x01, 0xff]);
    // certificateIssuer: GeneralNames { dNSName "x" }.
    let cert_issuer = unknown_ext("2.5.29.29", true, vec![0x30, 0x03, 0x82, 0x01, b'x']);
    let cases: Vec<(Vec<Extension>, Vec<Extension>, &str)> = vec![
        (vec![delta], vec![], "a delta CRL (deltaCRLIndicator); tka uses complete CRLs only"),
        (
            vec![idp],
            vec![],
            "a partitioned or indirect CRL (issuingDistributionPoint); tka uses complete, direct CRLs only",
        ),
        (vec![unknown_critical()], vec![], "an unrecognised critical extension 1.3.6.1.4.1.55555.1.1"),
        (vec![], vec![cert_issuer], "an indirect CRL entry (certificateIssuer); tka uses direct CRLs only"),
        (vec![], vec![unknown_critical()], "an unrecognised critical entry extension 1.3.6.1.4.1.55555.1.1"),
    ];
    for (crl_exts, entry_exts, detail) in cases {
        let der = crl_der_with(&p.int, 9, serials(), "intermediate", crl_exts, entry_exts);
        let e = Crl::parse(&der).unwrap_err();
        assert_eq!(e, VerifyError::UnsupportedCrl { detail: detail.into() });
        assert_eq!(e.to_string(), format!("CRL refused: it is {detail}"));
    }
    let harmless = unknown_ext("1.3.6.1.4.1.55555.1.2", false, vec![0x05, 0x00]);
    let der = crl_der_with(&p.int, 9, serials(), "intermediate", vec![harmless], vec![]);
    let crl = Crl::parse(&der).unwrap();
    assert!(crl.is_signed_by(&CertInfo::parse(&p.int).unwrap()), "re-signed correctly");
}

// ===========================================================================
// Step 4: signature.

#[test]
fn tampered_payload_is_bad_signature() {
    type Edit = Box<dyn Fn(&mut Map<String, Value>)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("aud", Box::new(|p| drop(p.insert("aud".into(), json!("other-product"))))),
        ("exp", Box::new(|p| drop(p.insert("exp".into(), json!(NOW + 3000 * DAY))))),
        ("features", Box::new(|p| drop(p["tka"].as_object_mut().unwrap().insert("features".into(), json!(["all"]))))),
        ("sub", Box::new(|p| drop(p.insert("sub".into(), json!(other_machine().cmid()))))),
        ("grace", Box::new(|p| drop(p["tka"].as_object_mut().unwrap().insert("grace".into(), json!(3650 * DAY))))),
        ("exp removed", Box::new(|p| drop(p.remove("exp")))),
    ];
    for (what, edit) in edits {
        let t = tamper(&token(), |_, p| edit(p));
        assert_eq!(err(&t), VerifyError::BadSignature, "{what}");
    }
}

#[test]
fn tampered_header_is_bad_signature() {
    let t = tamper(&token(), |h, _| {
        h.insert("cty".into(), json!("JWT"));
    });
    assert_eq!(err(&t), VerifyError::BadSignature);
}

#[test]
fn reencoded_header_is_bad_signature() {
    // Same JSON members, different bytes (whitespace): the signature covers bytes.
    let (h, p, s) = split(&token());
    let json = String::from_utf8(B64URL.decode(&h).unwrap()).unwrap();
    let spaced = json.replacen(':', ": ", 1);
    assert_ne!(spaced, json);
    assert_eq!(err(&format!("{}.{p}.{s}", b64(spaced.as_bytes()))), VerifyError::BadSignature);
}

#[test]
fn signature_from_another_key_is_bad_signature() {
    let (h, p, _) = split(&token());
    for alg in [SignatureAlgorithm::Ps256, SignatureAlgorithm::Rs256] {
        let mut hdr: Map<String, Value> = serde_json::from_slice(&B64URL.decode(&h).unwrap()).unwrap();
        hdr.insert("alg".into(), json!(alg.jws_name()));
        let t = sign_parts(&b64_json(&hdr), &p, &test_key("other"), alg);
        assert_eq!(err(&t), VerifyError::BadSignature);
    }
    // signer2 is another legitimate-looking token key, but not the x5c signer's.
    assert_eq!(err(&sign_parts(&h, &p, &test_key("signer2"), SignatureAlgorithm::Ps256)), VerifyError::BadSignature);
}

#[test]
fn truncated_signature_is_bad_signature() {
    let (h, p, sig) = decode_parts(&token());
    for len in [255, 128, 1] {
        let t = format!("{}.{}.{}", b64_json(&h), b64_json(&p), b64(&sig[..len]));
        assert_eq!(err(&t), VerifyError::BadSignature, "{len}");
    }
}

#[test]
fn truncated_token_text_is_refused() {
    // Cut in the middle of the signature text: either not canonical base64url
    // or a short signature; never accepted.
    let t = token();
    for cut in 1..6 {
        let e = err(&t[..t.len() - cut]);
        assert!(matches!(e, VerifyError::BadSignature | VerifyError::Malformed { .. }), "{cut}: {e:?}");
    }
}

#[test]
fn empty_signature_is_bad_signature() {
    let (h, p, _) = split(&token());
    assert_eq!(err(&format!("{h}.{p}.")), VerifyError::BadSignature);
}

#[test]
fn signature_with_leading_zero_byte_is_bad_signature() {
    let (h, p, sig) = decode_parts(&token());
    let mut longer = vec![0u8];
    longer.extend_from_slice(&sig);
    let t = format!("{}.{}.{}", b64_json(&h), b64_json(&p), b64(&longer));
    assert_eq!(err(&t), VerifyError::BadSignature);
}

#[test]
fn flipped_signature_bit_is_bad_signature() {
    let (h, p, mut sig) = decode_parts(&token());
    sig[100] ^= 0x10;
    let t = format!("{}.{}.{}", b64_json(&h), b64_json(&p), b64(&sig));
    assert_eq!(err(&t), VerifyError::BadSignature);
}

#[test]
fn all_zero_and_all_ff_signatures_are_bad_signature() {
    let (h, p, _) = split(&token());
    for byte in [0u8, 0xff] {
        assert_eq!(err(&format!("{h}.{p}.{}", b64(&[byte; 256]))), VerifyError::BadSignature);
    }
}

// ===========================================================================
// Step 5: claims.

#[test]
fn missing_jti_is_bad_claims() {
    let t = resign(|_, p| drop(p.remove("jti")));
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadClaims { .. }));
        says(&e, "invalid token claims: missing field `jti`");
    }
}

#[test]
fn missing_aud_is_bad_claims() {
    let t = resign(|_, p| drop(p.remove("aud")));
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadClaims { .. }));
        says(&e, "invalid token claims: missing field `aud`");
    }
}

#[test]
fn missing_sub_iat_nbf_or_tka_is_bad_claims() {
    for claim in ["sub", "iat", "nbf", "tka"] {
        let t = resign(|_, p| drop(p.remove(claim)));
        {
            let e = err(&t);
            assert!(matches!(e, VerifyError::BadClaims { .. }), "{claim}");
            says(&e, &format!("invalid token claims: missing field `{claim}`"));
        }
    }
}

#[test]
fn claims_of_wrong_type_are_bad_claims() {
    for (claim, value, why) in [
        ("exp", json!("tomorrow"), "invalid type: string \"tomorrow\", expected i64"),
        ("aud", json!([PRODUCT]), "invalid type: sequence, expected a string"),
        ("iat", json!(1.5), "invalid type: floating point `1.5`, expected i64"),
        ("jti", json!(7), "invalid type: integer `7`, expected a string"),
    ] {
        let t = resign(|_, p| drop(p.insert(claim.into(), value.clone())));
        {
            let e = err(&t);
            assert!(matches!(e, VerifyError::BadClaims { .. }), "{claim}");
            says(&e, &format!("invalid token claims: {why}"));
        }
    }
}

#[test]
fn payload_not_an_object_is_bad_claims() {
    let t = resign_text(|_, p| *p = "[1,2,3]".into());
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadClaims { .. }));
        says(&e, "invalid token claims: invalid type: integer `1`, expected a string");
    }
}

#[test]
fn tka_version_2_is_bad_claims() {
    let t = resign(|_, p| drop(p["tka"].as_object_mut().unwrap().insert("v".into(), json!(2))));
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadClaims { ref detail } if detail.contains("version")));
        says(&e, "invalid token claims: unsupported tka claims version 2");
    }
}

#[test]
fn negative_grace_is_bad_claims() {
    let t = resign(|_, p| drop(p["tka"].as_object_mut().unwrap().insert("grace".into(), json!(-1))));
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadClaims { ref detail } if detail.contains("grace")));
        says(&e, "invalid token claims: negative grace period");
    }
}

#[test]
fn wrong_product_is_wrong_product() {
    let r = V { product: Some("other-product".into()), ..V::default() }.run(&token());
    assert_eq!(r.unwrap_err(), VerifyError::WrongProduct { expected: "other-product".into(), found: PRODUCT.into() });
}

#[test]
fn any_product_when_none_expected() {
    V { product: None, ..V::default() }.run(&token()).unwrap();
}

#[test]
fn wrong_machine_is_wrong_machine_with_report() {
    let other = other_machine();
    match verify_at(&token(), NOW, &other).unwrap_err() {
        VerifyError::WrongMachine { expected, found, report } => {
            assert_eq!(expected, other.cmid());
            assert_eq!(found, machine().cmid());
            let report = report.expect("a component report");
            assert_eq!(report.matched, 0);
            assert_eq!(report.total, 5);
            assert!(!report.is_match());
        }
        e => panic!("expected WrongMachine, got {e:?}"),
    }
}

#[test]
fn one_replaced_nic_still_matches() {
    let id = MachineIdentity::from_raw(
        PRODUCT,
        &raw(&[
            ("mid", "4f1d2c3b4a5968778695a4b3c2d1e0f1"),
            ("dmi", "4c4c4544-0042-3510-8052-b4c04f4e4e32"),
            ("bsn", "L1HF12345"),
            ("mac", "00:11:22:33:44:66"),
            ("rfs", "6f0a1f0e-1c2b-4f7e-9a55-0d3c1f2e3a4b"),
        ]),
    );
    let v = verify_at(&token(), NOW, &id).unwrap();
    let report = v.machine_match.unwrap();
    assert_eq!(report.matched, 4);
    assert_eq!(report.changed, vec!["mac".to_string()]);
}

#[test]
fn cmid_mismatch_is_wrong_machine() {
    let other = other_machine().cmid().to_string();
    let r = V { machine: Machine::Cmid(other.clone()), ..V::default() }.run(&token());
    assert_eq!(
        r.unwrap_err(),
        VerifyError::WrongMachine { expected: other, found: machine().cmid().into(), report: None }
    );
}

#[test]
fn cmid_match_and_skip_are_accepted() {
    V { machine: Machine::Cmid(machine().cmid().into()), ..V::default() }.run(&token()).unwrap();
    let v = V { machine: Machine::Skip, ..V::default() }.run(&token()).unwrap();
    assert!(v.machine_match.is_none());
}

#[test]
fn revoked_serial_is_token_revoked() {
    let t = issue_token(&request(), &IssueOptions::default(), &default_signer(), ISSUED).unwrap();
    let revoked: HashSet<String> = [t.claims.jti.clone(), "0".repeat(32)].into_iter().collect();
    let r = V { revoked, ..V::default() }.run(&t.text);
    assert_eq!(r.unwrap_err(), VerifyError::TokenRevoked { serial: t.claims.jti });
}

#[test]
fn other_revoked_serials_do_not_matter() {
    let revoked: HashSet<String> = ["0".repeat(32)].into_iter().collect();
    V { revoked, ..V::default() }.run(&token()).unwrap();
}

// Time window: nbf <= now < exp, then grace.

fn exp_of(t: &str) -> i64 {
    decode_unverified(t).unwrap().1.exp.unwrap()
}

#[test]
fn token_exactly_at_exp_is_expired() {
    let t = token();
    let exp = exp_of(&t);
    assert_eq!(exp, ISSUED + 180 * DAY);
    assert_eq!(verify_at(&t, exp, &machine()).unwrap_err(), VerifyError::TokenExpired { exp, grace: 0, now: exp });
}

#[test]
fn token_one_second_before_exp_is_valid() {
    let t = token();
    let v = verify_at(&t, exp_of(&t) - 1, &machine()).unwrap();
    assert!(!v.in_grace);
}

#[test]
fn token_before_nbf_is_not_yet_valid() {
    assert_eq!(
        verify_at(&token(), ISSUED - 1, &machine()).unwrap_err(),
        VerifyError::TokenNotYetValid { nbf: ISSUED, now: ISSUED - 1 }
    );
}

#[test]
fn token_exactly_at_nbf_is_valid() {
    verify_at(&token(), ISSUED, &machine()).unwrap();
}

#[test]
fn forged_future_nbf_is_not_yet_valid() {
    let t = resign(|_, p| drop(p.insert("nbf".into(), json!(NOW + DAY))));
    assert_eq!(err(&t), VerifyError::TokenNotYetValid { nbf: NOW + DAY, now: NOW });
}

#[test]
fn token_in_grace_is_accepted_and_reported() {
    let t = issue(&IssueOptions { grace_secs: 7 * 86_400, ..Default::default() });
    let exp = exp_of(&t);
    for now in [exp, exp + 7 * DAY - 1] {
        let v = verify_at(&t, now, &machine()).unwrap();
        assert!(v.in_grace, "{now}");
    }
    assert!(!verify_at(&t, exp - 1, &machine()).unwrap().in_grace);
}

#[test]
fn token_past_grace_is_expired() {
    let t = issue(&IssueOptions { grace_secs: 7 * 86_400, ..Default::default() });
    let exp = exp_of(&t);
    let now = exp + 7 * DAY;
    assert_eq!(verify_at(&t, now, &machine()).unwrap_err(), VerifyError::TokenExpired { exp, grace: 7 * DAY, now });
}

#[test]
fn token_outliving_signer_is_refused() {
    let na = CertInfo::parse(&pki().signer).unwrap().not_after;
    let t = resign(|_, p| drop(p.insert("exp".into(), json!(na + 1))));
    assert_eq!(err(&t), VerifyError::TokenOutlivesSigner { exp: Some(na + 1), signer_not_after: na });
    // Ending exactly with the signer is allowed.
    let t = resign(|_, p| drop(p.insert("exp".into(), json!(na))));
    verify(&t).unwrap();
}

#[test]
fn huge_grace_does_not_overflow() {
    let t = resign(|_, p| drop(p["tka"].as_object_mut().unwrap().insert("grace".into(), json!(i64::MAX))));
    let exp = exp_of(&t);
    assert!(verify_at(&t, exp + 10 * DAY, &machine()).unwrap().in_grace);
}

#[test]
fn iat_before_signer_existed_is_bad_claims() {
    let nb = CertInfo::parse(&pki().signer).unwrap().not_before;
    let t = resign(|_, p| {
        p.insert("iat".into(), json!(nb - 1));
        p.insert("nbf".into(), json!(nb - 1));
    });
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::BadClaims { .. }));
        says(&e, "invalid token claims: token claims to be issued before its signer certificate existed");
    }
}

// ===========================================================================
// Step 6: clock sanity.

#[test]
fn iat_in_future_with_nbf_in_past_is_issued_in_future() {
    let iat = NOW + 3600;
    let t = resign(|_, p| drop(p.insert("iat".into(), json!(iat))));
    assert_eq!(err(&t), VerifyError::IssuedInFuture { iat, now: NOW });
}

#[test]
fn iat_within_skew_is_accepted() {
    let t = resign(|_, p| drop(p.insert("iat".into(), json!(NOW + IAT_SKEW_SECS))));
    verify(&t).unwrap();
    let t = resign(|_, p| drop(p.insert("iat".into(), json!(NOW + IAT_SKEW_SECS + 1))));
    {
        let e = err(&t);
        assert!(matches!(e, VerifyError::IssuedInFuture { .. }));
        says(&e, "token was issued at 2027-01-15T08:05:01Z, after now (2027-01-15T08:00:00Z): check the system clock");
    }
}

#[test]
fn clock_rollback_is_refused() {
    let high_water = NOW + 2 * DAY;
    let r = V { clock: Some((high_water, 300)), ..V::default() }.run(&token());
    assert_eq!(r.unwrap_err(), VerifyError::ClockRollback { now: NOW, high_water });
}

#[test]
fn clock_within_tolerance_is_accepted() {
    V { clock: Some((NOW + 299, 300)), ..V::default() }.run(&token()).unwrap();
    V { clock: Some((NOW + 300, 300)), ..V::default() }.run(&token()).unwrap();
    V { clock: Some((NOW - DAY, 300)), ..V::default() }.run(&token()).unwrap();
    assert!(matches!(
        V { clock: Some((NOW + 301, 300)), ..V::default() }.run(&token()),
        Err(VerifyError::ClockRollback { .. })
    ));
}

// ===========================================================================
// Issuance.

#[test]
fn issuing_token_that_outlives_signer_is_refused() {
    let na = CertInfo::parse(&pki().signer).unwrap().not_after;
    let opts = IssueOptions { lifetime: TokenLifetime::Days(400), ..Default::default() };
    match issue_token(&request(), &opts, &default_signer(), ISSUED) {
        Err(Error::Verify(VerifyError::TokenOutlivesSigner { exp, signer_not_after })) => {
            assert_eq!(exp, Some(ISSUED + 400 * DAY));
            assert_eq!(signer_not_after, na);
        }
        other => panic!("expected TokenOutlivesSigner, got {other:?}"),
    }
}

#[test]
fn issuing_token_whose_grace_outlives_signer_is_refused() {
    // Signer notAfter is NOW + 335 days; exp = ISSUED + 330 days is inside it,
    // but a 30-day grace runs to ISSUED + 360 days.
    let opts = IssueOptions { lifetime: TokenLifetime::Days(330), grace_secs: 30 * 86_400, ..Default::default() };
    let r = issue_token(&request(), &opts, &default_signer(), ISSUED);
    // (Issued, it would fail inside the promised grace, after the signer expired.)
    let na = CertInfo::parse(&pki().signer).unwrap().not_after;
    match r {
        Err(Error::Verify(e)) => assert_eq!(
            e,
            VerifyError::TokenOutlivesSigner { exp: Some(ISSUED + 360 * DAY), signer_not_after: na },
            "{e}"
        ),
        other => panic!("expected TokenOutlivesSigner, got {other:?}"),
    }
}

#[test]
fn issuing_with_zero_days_is_an_invalid_lifetime() {
    let opts = IssueOptions { lifetime: TokenLifetime::Days(0), ..Default::default() };
    assert!(matches!(
        issue_token(&request(), &opts, &default_signer(), ISSUED),
        Err(Error::InvalidLifetime { what: "token lifetime", detail }) if detail == "0 s is shorter than the minimum of 60 s"
    ));
}

#[test]
fn issuing_outside_signer_validity_is_refused() {
    let na = CertInfo::parse(&pki().signer).unwrap().not_after;
    let opts = IssueOptions { lifetime: TokenLifetime::Perpetual, ..Default::default() };
    for at in [na + 1, NOW - 31 * DAY] {
        match issue_token(&request(), &opts, &default_signer(), at) {
            Err(Error::Refused(why)) => assert_eq!(
                why,
                "signer certificate CN=Test Signer,O=tka tests is not valid now (valid 2026-12-16T08:00:00Z to 2027-12-16T08:00:00Z)",
                "at {at}"
            ),
            other => panic!("expected Refused, got {other:?}"),
        }
    }
}

#[test]
fn token_signer_with_intermediate_cert_is_refused() {
    let p = pki();
    let r = TokenSigner::new(Box::new(test_key("intermediate")), vec![p.int.clone()]);
    assert!(matches!(r, Err(Error::Refused(_))), "{r:?}");
}

#[test]
fn token_signer_without_eku_is_refused() {
    let c = raw_signer("CN=No EKU Signer,O=tka tests", vec![bc(false, None), ku(KeyUsages::DigitalSignature)]);
    let r = TokenSigner::new(Box::new(test_key("signer")), vec![c, pki().int.clone()]);
    assert!(matches!(r, Err(Error::Refused(_))), "{r:?}");
}

#[test]
fn token_signer_with_key_not_matching_cert_is_usage_error() {
    let p = pki();
    let r = TokenSigner::new(Box::new(test_key("other")), vec![p.signer.clone(), p.int.clone()]);
    assert!(matches!(r, Err(Error::Usage(_))), "{r:?}");
}

#[test]
fn token_signer_without_certificate_is_usage_error() {
    let r = TokenSigner::new(Box::new(test_key("signer")), vec![]);
    assert!(matches!(r, Err(Error::Usage(_))), "{r:?}");
}

#[test]
fn perpetual_token_has_no_exp_and_verifies() {
    let issued = issue_token(
        &request(),
        &IssueOptions { lifetime: TokenLifetime::Perpetual, ..Default::default() },
        &default_signer(),
        ISSUED,
    )
    .unwrap();
    assert_eq!(issued.claims.exp, None);
    assert_eq!(issued.claims.tka.renew_after, None);
    let (_, payload, _) = decode_parts(&issued.text);
    assert!(!payload.contains_key("exp"));
    let v = verify(&issued.text).unwrap();
    assert_eq!(v.claims.exp, None);
    assert!(!v.in_grace);
    // Still valid long after; bounded only by the signer certificate.
    verify_at(&issued.text, NOW + 300 * DAY, &machine()).unwrap();
}

#[test]
fn issued_header_has_alg_typ_kid_x5c() {
    let (h, _, _) = decode_parts(&token());
    let p = pki();
    assert_eq!(h["alg"], json!("PS256"));
    assert_eq!(h["typ"], json!(TOKEN_TYP));
    assert_eq!(h["kid"], json!(sha256_hex(&p.signer)));
    assert_eq!(h["x5c"], json!([B64STD.encode(&p.signer), B64STD.encode(&p.int)]));
    let mut keys: Vec<&str> = h.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["alg", "kid", "typ", "x5c"]);
}

#[test]
fn issued_claims_round_trip_through_verification() {
    let option_sets = vec![
        IssueOptions::default(),
        IssueOptions { alg: SignatureAlgorithm::Rs256, ..Default::default() },
        IssueOptions { lifetime: TokenLifetime::Perpetual, ..Default::default() },
        IssueOptions { lifetime: TokenLifetime::Days(1), grace_secs: 3 * 86_400, ..Default::default() },
        IssueOptions {
            features: vec!["reports".into(), "export".into(), "export-pdf_2.0".into()],
            edition: Some("enterprise".into()),
            entitlement: Some("ENT-2027-0001".into()),
            match_rule: Some(MatchRule::All),
            serial: Some("0123456789abcdef0123456789abcdef".into()),
            ..Default::default()
        },
        IssueOptions { match_rule: Some(MatchRule::AtLeast(2)), ..Default::default() },
    ];
    for opts in option_sets {
        let issued = issue_token(&request(), &opts, &default_signer(), ISSUED).unwrap();
        let verified = verify(&issued.text).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
        assert_eq!(verified.claims, issued.claims, "{opts:?}");
        assert_eq!(verified.alg, opts.alg);
        assert_eq!(decode_unverified(&issued.text).unwrap().1, issued.claims);
        if let Some(serial) = &opts.serial {
            assert_eq!(&verified.claims.jti, serial);
        }
    }
}

#[test]
fn fresh_serials_are_unique() {
    let a = issue_token(&request(), &IssueOptions::default(), &default_signer(), ISSUED).unwrap();
    let b = issue_token(&request(), &IssueOptions::default(), &default_signer(), ISSUED).unwrap();
    assert_ne!(a.claims.jti, b.claims.jti);
    assert_eq!(a.claims.jti.len(), 32);
}

/// The refusal's exact text: the rule it breaks, not only its kind.
#[track_caller]
fn says(e: &VerifyError, want: &str) {
    assert_eq!(e.to_string(), want, "refused for another reason: {e:?}");
}
