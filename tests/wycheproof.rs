//! Project Wycheproof vectors (C2SP/wycheproof, `testvectors_v1`) run through
//! tka's own verification code: [`tka::keys::verify_signature`] for the RSA
//! files and [`tka::jws::verify_compact_with_key`] for the JWS file. The
//! default build verifies with aws-lc-rs, `--no-default-features` with the
//! `rsa` crate (scripts/check-verifier-build.sh); in the aws-lc-rs build
//! every RSA vector's verdict must also equal the `rsa` crate's.
//!
//! Semantics: `valid` must verify, `invalid` must be rejected, `acceptable`
//! may go either way (what tka did is printed). Where tka's policy is
//! stricter than the vector's parameters (PS256 pins SHA-256, MGF1-SHA-256
//! and a 32-byte salt, RFC 7518 §3.5; only PS256 and RS256 are allowed), tka
//! must reject every vector, `valid` ones included; those are counted as
//! "valid, refused by policy". Any other disagreement fails the test with
//! the tcId and comment.
//!
//! The vectors live in the repository, `tests/wycheproof/` (Apache-2.0,
//! with their licence and provenance in that folder's README), so a plain
//! clone runs them; a missing file is a failure.

use base64::Engine;
use pkcs8::DecodePublicKey;
use rsa::BoxedUint;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::PathBuf;
use tka::keys::{spki_der, verify_signature, verify_signature_rsa_crate, SignatureAlgorithm, VERIFY_BACKEND};
use tka::VerifyError;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wycheproof");

fn load(name: &str) -> Value {
    let dir = PathBuf::from(VECTORS);
    assert!(dir.is_dir(), "Wycheproof vectors not found at {} (they are part of the repository)", dir.display());
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex string");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit")).collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("missing string field {key:?}"))
}

/// Builds a public key from big-endian modulus and exponent bytes.
fn key_from_parts(n: &[u8], e: &[u8]) -> Result<rsa::PublicKey, String> {
    let strip = |b: &[u8]| -> Vec<u8> {
        let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b[first..].to_vec()
    };
    rsa::PublicKey::new(BoxedUint::from_be_slice_vartime(&strip(n)), BoxedUint::from_be_slice_vartime(&strip(e)))
        .map_err(|e| e.to_string())
}

/// What a vector's verdict must be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Accept,
    Reject,
    Either,
    /// The vector is `valid` for its own parameters, but tka's policy refuses them.
    RejectByPolicy,
    /// The vector's parameters are outside tka's policy, but its signature is a
    /// genuine one under tka's parameters, so tka must accept it.
    AcceptUnderPolicy,
}

#[derive(Default)]
struct Tally {
    file: String,
    total: usize,
    valid_accepted: usize,
    valid_refused_by_policy: usize,
    genuine_under_policy_accepted: usize,
    invalid_rejected: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    acceptable_log: String,
    failures: Vec<String>,
}

impl Tally {
    fn new(file: &str) -> Self {
        Tally { file: file.into(), ..Default::default() }
    }

    fn expect_of(result: &str) -> Expect {
        match result {
            "valid" => Expect::Accept,
            "invalid" => Expect::Reject,
            "acceptable" => Expect::Either,
            other => panic!("unknown result {other:?}"),
        }
    }

    /// Records tka's verdict on one test case. `detail` says why it was rejected.
    fn record(&mut self, test: &Value, expect: Expect, accepted: bool, detail: &str) {
        self.total += 1;
        let id = test["tcId"].as_u64().unwrap_or(0);
        let comment = test["comment"].as_str().unwrap_or("");
        let flags = test["flags"].to_string();
        let result = test["result"].as_str().unwrap_or("?");
        match (expect, accepted) {
            (Expect::Accept, true) => self.valid_accepted += 1,
            (Expect::Reject, false) => self.invalid_rejected += 1,
            (Expect::RejectByPolicy, false) => self.valid_refused_by_policy += 1,
            (Expect::AcceptUnderPolicy, true) => self.genuine_under_policy_accepted += 1,
            (Expect::Either, true) => {
                self.acceptable_accepted += 1;
                let _ = writeln!(self.acceptable_log, "  acceptable tcId {id} ({comment}, flags {flags}): accepted");
            }
            (Expect::Either, false) => {
                self.acceptable_rejected += 1;
                let _ = writeln!(
                    self.acceptable_log,
                    "  acceptable tcId {id} ({comment}, flags {flags}): rejected ({detail})"
                );
            }
            (Expect::Accept | Expect::AcceptUnderPolicy, false) => self
                .failures
                .push(format!("tcId {id} ({comment}, flags {flags}): result {result} but tka rejected it: {detail}")),
            (Expect::Reject | Expect::RejectByPolicy, true) => self.failures.push(format!(
                "tcId {id} ({comment}, flags {flags}): result {result}{} but tka accepted it",
                if expect == Expect::RejectByPolicy { " (parameters outside tka's policy)" } else { "" }
            )),
        }
    }

    fn finish(self, number_of_tests: &Value) {
        println!(
            "{}: total {}, valid accepted {}, valid refused by policy {}, genuine under tka's policy accepted {}, \
             invalid rejected {}, acceptable accepted {}, acceptable rejected {}, mismatches {}",
            self.file,
            self.total,
            self.valid_accepted,
            self.valid_refused_by_policy,
            self.genuine_under_policy_accepted,
            self.invalid_rejected,
            self.acceptable_accepted,
            self.acceptable_rejected,
            self.failures.len()
        );
        print!("{}", self.acceptable_log);
        assert_eq!(Some(self.total as u64), number_of_tests.as_u64(), "{}: numberOfTests disagrees", self.file);
        assert!(
            self.failures.is_empty(),
            "{}: tka disagrees with Wycheproof on {} vectors:\n{}",
            self.file,
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The key of an RSA verify group, from `publicKeyDer` (SubjectPublicKeyInfo,
/// as tka reads keys from certificates), cross-checked against `publicKey`
/// {modulus, publicExponent}.
///
/// The `_params` files give an id-RSASSA-PSS SubjectPublicKeyInfo with
/// RFC 8017 parameters (SHA-256, MGF1-SHA-256, salt 32: exactly PS256).
/// `rsa::PublicKey::from_public_key_der` (rsa 0.10) refuses id-RSASSA-PSS
/// with parameters, so tka cannot take such a key from a certificate; these
/// files then use `publicKey` {modulus, publicExponent} to test the
/// signature verification, and say so.
fn group_key(group: &Value) -> Result<rsa::PublicKey, String> {
    let der = rsa::PublicKey::from_public_key_der(&hex(str_field(group, "publicKeyDer"))).map_err(|e| e.to_string());
    let parts = &group["publicKey"];
    let raw = key_from_parts(&hex(str_field(parts, "modulus")), &hex(str_field(parts, "publicExponent")));
    match (der, raw) {
        (Ok(a), Ok(b)) => {
            assert_eq!(spki_der(&a), spki_der(&b), "publicKeyDer and publicKey disagree");
            Ok(a)
        }
        (Err(a), Ok(b)) if str_field(group, "type") == "RsassaPssWithParametersVerify" => {
            println!("  note: SPKI with id-RSASSA-PSS parameters refused by rsa ({a}); using modulus/exponent");
            Ok(b)
        }
        (Err(a), Err(b)) => Err(format!("key refused: {a} / {b}")),
        (a, b) => panic!("publicKeyDer and publicKey decode differently: {:?} / {:?}", a.err(), b.err()),
    }
}

/// Runs every test of every group through `verify_signature` with `alg`.
/// `in_policy(group)` says whether the group's parameters are the ones tka
/// pins for `alg`; when not, every vector must be rejected, except those
/// listed in `genuine` (tcIds whose signature is in fact a valid one under
/// tka's parameters, which tka must accept).
fn run_rsa(file: &str, group_type: &str, alg: SignatureAlgorithm, in_policy: impl Fn(&Value) -> bool, genuine: &[u64]) {
    let doc = load(file);
    let mut tally = Tally::new(file);
    for group in doc["testGroups"].as_array().expect("testGroups") {
        assert_eq!(str_field(group, "type"), group_type, "{file}: unexpected group type");
        let policy_ok = in_policy(group);
        let key = group_key(group);
        for test in group["tests"].as_array().expect("tests") {
            let mut expect = Tally::expect_of(str_field(test, "result"));
            if !policy_ok && expect != Expect::Reject {
                expect = Expect::RejectByPolicy;
            }
            if !policy_ok && genuine.contains(&test["tcId"].as_u64().unwrap_or(0)) {
                expect = Expect::AcceptUnderPolicy;
            }
            let (accepted, detail) = match &key {
                Ok(k) => {
                    let (msg, sig) = (hex(str_field(test, "msg")), hex(str_field(test, "sig")));
                    let ok = verify_signature(k, alg, &msg, &sig);
                    // Both backends give every vector the same verdict.
                    assert_eq!(
                        ok,
                        verify_signature_rsa_crate(k, alg, &msg, &sig),
                        "{file} tcId {}: {VERIFY_BACKEND} and the rsa crate disagree",
                        test["tcId"]
                    );
                    (ok, "signature does not verify".to_string())
                }
                Err(e) => (false, e.clone()),
            };
            tally.record(test, expect, accepted, &detail);
        }
    }
    tally.finish(&doc["numberOfTests"]);
}

fn run_pkcs1(file: &str) {
    run_rsa(file, "RsassaPkcs1Verify", SignatureAlgorithm::Rs256, |g| str_field(g, "sha") == "SHA-256", &[]);
}

/// PS256 = SHA-256, MGF1 with SHA-256, 32-byte salt (RFC 7518 §3.5).
fn is_ps256(group: &Value) -> bool {
    str_field(group, "sha") == "SHA-256"
        && str_field(group, "mgf") == "MGF1"
        && str_field(group, "mgfSha") == "SHA-256"
        && group["sLen"].as_u64() == Some(32)
}

fn run_pss(file: &str, group_type: &str, genuine: &[u64]) {
    run_rsa(file, group_type, SignatureAlgorithm::Ps256, is_ps256, genuine);
}

#[test]
fn rsa_signature_2048_sha256() {
    run_pkcs1("rsa_signature_2048_sha256_test.json");
}

#[test]
fn rsa_signature_3072_sha256() {
    run_pkcs1("rsa_signature_3072_sha256_test.json");
}

#[test]
fn rsa_signature_4096_sha256() {
    run_pkcs1("rsa_signature_4096_sha256_test.json");
}

#[test]
fn rsa_pss_2048_sha256_mgf1_32() {
    run_pss("rsa_pss_2048_sha256_mgf1_32_test.json", "RsassaPssVerify", &[]);
}

#[test]
fn rsa_pss_3072_sha256_mgf1_32() {
    run_pss("rsa_pss_3072_sha256_mgf1_32_test.json", "RsassaPssVerify", &[]);
}

#[test]
fn rsa_pss_4096_sha256_mgf1_32() {
    run_pss("rsa_pss_4096_sha256_mgf1_32_test.json", "RsassaPssVerify", &[]);
}

/// Salt length 0: valid RSASSA-PSS, but not PS256. tka must refuse them all,
/// except tcId 69 ("s_len changed to 32", `invalid` for an sLen-0 verifier):
/// its signature really uses a 32-byte salt, i.e. it is a genuine PS256
/// signature (OpenSSL, via Python `cryptography` 50 with salt_length=32,
/// accepts it too and accepts no other vector of this file), so tka must accept it.
#[test]
fn rsa_pss_2048_sha256_mgf1_0() {
    run_pss("rsa_pss_2048_sha256_mgf1_0_test.json", "RsassaPssVerify", &[69]);
}

/// The key is an id-RSASSA-PSS SubjectPublicKeyInfo with RFC 8017 parameters.
#[test]
fn rsa_pss_2048_sha256_mgf1_32_params() {
    run_pss("rsa_pss_2048_sha256_mgf1_32_params_test.json", "RsassaPssWithParametersVerify", &[]);
}

#[test]
fn rsa_pss_3072_sha256_mgf1_32_params() {
    run_pss("rsa_pss_3072_sha256_mgf1_32_params_test.json", "RsassaPssWithParametersVerify", &[]);
}

// ---------------------------------------------------------------------------
// JSON Web Signature

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The `alg` of a compact JWS header, if the header decodes at all.
fn header_alg(jws: &str) -> Option<String> {
    let first = jws.split('.').next()?;
    let bytes = B64URL.decode(first).ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}

fn is_rsa_jwk(jwk: &Value) -> bool {
    jwk.get("kty").map(|k| k == "RSA").unwrap_or(false) || (jwk.get("n").is_some() && jwk.get("e").is_some())
}

/// Imports an RSA JWK as a pinned (key, algorithm) pair, honouring the JWK's
/// own constraints: RFC 7517 §4.2 `use`, §4.3 `key_ops`, §4.4 `alg` (one key,
/// one algorithm: RFC 8725 §3.1). tka never reads JWKs (its keys come from
/// certificates, where keyUsage plays this role), so this is the harness's
/// job, done before tka sees the key, exactly as an embedder would have to.
fn jwk_pinned_key(jwk: &Value) -> Result<(rsa::PublicKey, SignatureAlgorithm), String> {
    if let Some(u) = jwk.get("use") {
        if u != "sig" {
            return Err(format!("JWK use {u} is not \"sig\""));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("key_ops is not an array")?;
        if !ops.iter().any(|o| o == "verify") {
            return Err(format!("JWK key_ops {ops:?} lacks \"verify\""));
        }
    }
    let alg = match jwk.get("alg").and_then(Value::as_str) {
        Some(a) => SignatureAlgorithm::from_jws_name(a).ok_or(format!("JWK alg {a} is not one tka supports"))?,
        None => return Err("JWK has no alg, so there is no algorithm to pin".into()),
    };
    let n = B64URL.decode(str_field(jwk, "n")).map_err(|e| e.to_string())?;
    let e = B64URL.decode(str_field(jwk, "e")).map_err(|e| e.to_string())?;
    Ok((key_from_parts(&n, &e)?, alg))
}

fn reason(e: &VerifyError) -> String {
    match e {
        VerifyError::Malformed { what, .. } => format!("tka: Malformed ({what})"),
        VerifyError::AlgorithmNotAllowed { alg } => format!("tka: AlgorithmNotAllowed ({alg})"),
        VerifyError::BadSignature => "tka: BadSignature".into(),
        other => format!("tka: {other:?}"),
    }
}

#[test]
fn json_web_signature() {
    let file = "json_web_signature_test.json";
    let doc = load(file);
    let groups = doc["testGroups"].as_array().expect("testGroups");
    // Vectors whose key the harness cannot hand to tka (EC, HMAC, JWKs for
    // encryption or for an algorithm tka lacks) are still given to tka with
    // this RSA key under both pins whenever their `alg` is not RS256/PS256:
    // whatever the key, tka must never accept HS*, ES*, RS384, PS512, none...
    let probe_key = groups
        .iter()
        .filter_map(|g| g.get("public"))
        .find_map(|k| jwk_pinned_key(k).ok())
        .map(|(k, _)| k)
        .expect("the file has an RSA signing key");
    let mut tally = Tally::new(file);
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for group in groups {
        let jwk = group.get("public").or_else(|| group.get("private")).expect("a JWK");
        let pinned = if is_rsa_jwk(jwk) {
            jwk_pinned_key(jwk)
        } else {
            Err(format!("kty {} is not RSA", jwk.get("kty").unwrap_or(&Value::Null)))
        };
        for test in group["tests"].as_array().expect("tests") {
            let id = &test["tcId"];
            let jws = test["jws"].as_str().expect("jws is a string");
            let alg = header_alg(jws);
            let allow_listed = matches!(alg.as_deref(), Some("RS256" | "PS256"));
            let mut expect = Tally::expect_of(str_field(test, "result"));
            if !allow_listed && expect != Expect::Reject {
                expect = Expect::RejectByPolicy;
            }
            if !allow_listed {
                for pin in [SignatureAlgorithm::Rs256, SignatureAlgorithm::Ps256] {
                    let r = tka::jws::verify_compact_with_key(jws, &probe_key, pin);
                    assert!(r.is_err(), "tcId {id}: tka accepted alg {alg:?} with an RSA key pinned to {pin:?}");
                }
            }
            let (accepted, why) = match &pinned {
                Ok((key, pin)) => match tka::jws::verify_compact_with_key(jws, key, *pin) {
                    Ok(_) => (true, String::new()),
                    Err(e) => (false, reason(&e)),
                },
                Err(e) if allow_listed => (false, format!("harness: {e}")),
                Err(_) => {
                    let e = tka::jws::verify_compact_with_key(jws, &probe_key, SignatureAlgorithm::Ps256)
                        .expect_err("checked above");
                    (false, reason(&e))
                }
            };
            if !accepted {
                *reasons.entry(why.clone()).or_default() += 1;
            }
            tally.record(test, expect, accepted, &why);
        }
    }
    for (why, n) in &reasons {
        println!("  rejected {n:>3}: {why}");
    }
    tally.finish(&doc["numberOfTests"]);
}
