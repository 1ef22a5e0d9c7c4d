//! Property tests (issue 6 item 4, the part that runs in `cargo test`):
//! round trips of requests, tokens and PEM for arbitrary content, and the
//! strict JSON parser (reached through the JWS decoder and the request
//! parser) never panicking and always catching duplicate member names, and
//! `pkcs11:` URIs surviving print-and-parse with any characters.

mod common;

use base64::Engine;
use common::*;
use proptest::prelude::*;
use std::collections::HashSet;
use tka::issuer::issue::{issue_token, IssueOptions, TokenLifetime, TokenSigner};
use tka::jws::{self, TOKEN_TYP};
use tka::machine::{ComponentHash, MatchRule};
use tka::pki::pem;
use tka::request::{ActivationRequest, MAX_COMPONENTS};
use tka::verify::{verify_token, MachineCheck, VerifyContext};
use tka::VerifyError;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A string of 1..=255 UTF-8 bytes (the request field limit), any characters.
fn field() -> impl Strategy<Value = String> {
    "\\PC{1,60}".prop_filter("1..=255 bytes", |s| !s.is_empty() && s.len() <= 255)
}

/// A product, feature or edition name: what issuance accepts.
fn plain_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"
}

fn b64_bytes(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..=max).prop_map(|b| B64URL.encode(b))
}

fn component() -> impl Strategy<Value = ComponentHash> {
    ("[a-z]{1,8}|\\PC{1,20}", b64_bytes(32)).prop_map(|(kind, hash)| ComponentHash { kind, hash })
}

prop_compose! {
    fn request()(
        product in plain_name(),
        cmid in field(),
        hostname in proptest::option::of(field()),
        components in proptest::collection::vec(component(), 0..=MAX_COMPONENTS),
        created in any::<i64>(),
        nonce in proptest::collection::vec(any::<u8>(), 8).prop_map(|b| B64URL.encode(b)),
    ) -> ActivationRequest {
        ActivationRequest { version: 1, product, cmid, components, created, nonce, hostname }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn request_json_round_trips(req in request()) {
        prop_assert_eq!(ActivationRequest::parse(&req.to_json()).unwrap(), req);
    }

    #[test]
    fn request_text_round_trips(req in request()) {
        let text = req.to_text().unwrap();
        prop_assert!(text.is_ascii() && !text.contains(char::is_whitespace));
        prop_assert_eq!(ActivationRequest::parse(&text).unwrap(), req);
    }

    #[test]
    fn request_text_with_any_one_character_changed_is_refused_or_identical(
        req in request(), pos in any::<prop::sample::Index>(), c in "[A-Za-z0-9_-]",
    ) {
        // The 4-byte checksum catches a mistyped character (or the result
        // is the same request, when the change hits unused trailing bits).
        let text = req.to_text().unwrap();
        let i = 6 + pos.index(text.len() - 6);
        let mut bytes = text.into_bytes();
        bytes[i] = c.as_bytes()[0];
        if let Ok(parsed) = ActivationRequest::parse(std::str::from_utf8(&bytes).unwrap()) {
            prop_assert_eq!(parsed, req);
        }
    }

    #[test]
    fn pem_round_trips(blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..4),
                       label in "(CERTIFICATE|X509 CRL|[A-Z]{1,12})", crlf in any::<bool>()) {
        let mut text = String::from("leading text\n");
        for b in &blocks {
            text.push_str(&pem::encode(&label, b));
            text.push_str("between blocks\n");
        }
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        prop_assert_eq!(pem::decode_all(&text, &label).unwrap(), blocks);
    }

    #[test]
    fn pem_decode_never_panics(text in "\\PC{0,400}", label in "[A-Z ]{0,12}") {
        let _ = pem::decode_all(&text, &label);
        let _ = pem::certificates_from_bytes(text.as_bytes(), "input");
    }

    #[test]
    fn strict_json_never_panics_on_arbitrary_bytes(h in proptest::collection::vec(any::<u8>(), 0..600),
                                                   p in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = format!("{}.{}.AA", B64URL.encode(&h), B64URL.encode(&p));
        // Any verdict is fine; a panic is not.
        let _ = jws::decode(&text, TOKEN_TYP);
        if let Ok(s) = std::str::from_utf8(&h) {
            let _ = ActivationRequest::parse(s);
        }
    }

    #[test]
    fn strict_json_never_panics_on_json_like_text(s in "[\\[\\]{}\",:0-9a-z\\\\ .eE+-]{0,300}") {
        let text = format!("{}.e30.AA", B64URL.encode(s.as_bytes()));
        let _ = jws::decode(&text, TOKEN_TYP);
        let _ = ActivationRequest::parse(&format!("{{{s}"));
    }

    #[test]
    fn duplicate_keys_are_always_detected(
        key in "\\PC{0,12}",
        v1 in json_value(), v2 in json_value(),
        before in proptest::collection::btree_map("[a-z]{1,4}", json_value(), 0..3),
        depth in 0usize..4,
    ) {
        // {"<other>":..., "<key>": v1, "<key>": v2} nested `depth` levels deep.
        prop_assume!(!before.contains_key(&key));
        let k = serde_json::to_string(&key).unwrap();
        let mut members: Vec<String> = before.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
        members.push(format!("{k}:{v1}"));
        members.push(format!("{k}:{v2}"));
        let mut obj = format!("{{{}}}", members.join(","));
        for _ in 0..depth {
            obj = format!("{{\"wrap\":{obj}}}");
        }
        let want = VerifyError::DuplicateKey { key: key.clone() };
        let text = format!("{}.e30.AA", B64URL.encode(obj.as_bytes()));
        prop_assert_eq!(jws::decode(&text, TOKEN_TYP).unwrap_err(), want.clone());
        let text = format!("e30.{}.AA", B64URL.encode(obj.as_bytes()));
        prop_assert_eq!(jws::decode(&text, TOKEN_TYP).unwrap_err(), want.clone());
        prop_assert_eq!(ActivationRequest::parse(&obj).unwrap_err(), want);
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "\\PC{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn duplicate_key_named_like_an_error_position_is_reported_exactly() {
    // serde_json appends " at line L column C" to the message; a key that
    // itself contains that text must not be cut short.
    let key = "x at line 5 column 6";
    let obj = format!("{{\"{key}\":1,\"{key}\":2}}");
    assert_eq!(ActivationRequest::parse(&obj).unwrap_err(), VerifyError::DuplicateKey { key: key.into() });
}

// ---------------------------------------------------------------------------
// Token issue -> verify for arbitrary features, edition and lifetime.

fn signer() -> &'static TokenSigner {
    static S: std::sync::OnceLock<TokenSigner> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let p = pki();
        TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn issued_tokens_verify_with_their_claims(
        features in proptest::collection::vec(plain_name(), 0..6),
        edition in proptest::option::of(plain_name()),
        days in 1u32..=300,
        grace_days in 0u32..=30,
        rule in prop_oneof![Just(MatchRule::Most), Just(MatchRule::All), (1u32..=5).prop_map(MatchRule::AtLeast)],
        rs256 in any::<bool>(),
        perpetual in any::<bool>(),
        after in 0i64..DAY,
    ) {
        let issued = NOW - 30;
        prop_assume!(perpetual || issued + i64::from(days + grace_days) * DAY <= pki_signer_not_after());
        let opts = IssueOptions {
            lifetime: if perpetual { TokenLifetime::Perpetual } else { TokenLifetime::Days(days) },
            features: features.clone(),
            edition: edition.clone(),
            match_rule: Some(rule),
            grace_secs: u64::from(grace_days) * DAY as u64,
            alg: if rs256 { tka::keys::SignatureAlgorithm::Rs256 } else { tka::keys::SignatureAlgorithm::Ps256 },
            ..Default::default()
        };
        let req = ActivationRequest::new(&machine(), issued, None);
        let t = issue_token(&req, &opts, signer(), issued).unwrap();
        let anchors = tka::pki::TrustAnchors::from_der(&[pki().root.clone()]).unwrap();
        let revoked = HashSet::new();
        let id = machine();
        let ctx = VerifyContext {
            anchors: &anchors, pinned_roots: &[],
            now: issued + after,
            product: Some(PRODUCT),
            machine: MachineCheck::Identity(&id),
            crls: &[],
            revoked_serials: &revoked,
            clock: Some((issued, DAY)),
            certificates: &[],
        };
        let v = verify_token(&t.text, &ctx).unwrap();
        prop_assert_eq!(&v.claims, &t.claims);
        prop_assert_eq!(&v.claims.tka.features, &features);
        prop_assert_eq!(&v.claims.tka.edition, &edition);
        prop_assert_eq!(v.claims.exp, if perpetual { None } else { Some(issued + i64::from(days) * DAY) });
        // And it is refused the second its lifetime (plus grace) is over.
        if let Some(exp) = v.claims.exp {
            let ctx = VerifyContext { now: exp + v.claims.tka.grace, clock: None, ..ctx };
            let is_expired = matches!(verify_token(&t.text, &ctx), Err(VerifyError::TokenExpired { .. }));
            prop_assert!(is_expired);
        }
    }
}

fn pki_signer_not_after() -> i64 {
    tka::pki::CertInfo::parse(&pki().signer).unwrap().not_after
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn verification_never_panics_at_any_instant(
        now in prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), (i64::MAX - 1000)..=i64::MAX],
        high_water in any::<i64>(),
        tolerance in any::<i64>(),
    ) {
        // Time is a caller-supplied parameter: extreme values must give a verdict, not an overflow.
        static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let token = TOKEN.get_or_init(|| {
            let req = ActivationRequest::new(&machine(), NOW - 30, None);
            issue_token(&req, &IssueOptions::default(), signer(), NOW - 30).unwrap().text
        });
        let anchors = tka::pki::TrustAnchors::from_der(&[pki().root.clone()]).unwrap();
        let revoked = HashSet::new();
        let id = machine();
        for clock in [None, Some((high_water, tolerance))] {
            let ctx = VerifyContext {
                anchors: &anchors, pinned_roots: &[],
                now,
                product: Some(PRODUCT),
                machine: MachineCheck::Identity(&id),
                crls: &[],
                revoked_serials: &revoked,
                clock,
                certificates: &[],
            };
            if let Err(e) = verify_token(token, &ctx) {
                let _ = e.to_string();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A `pkcs11:` URI tka prints parses back to the same token, object,
    /// id, module and PIN source, whatever characters they hold.
    #[test]
    fn pkcs11_uris_round_trip(
        token in "\\PC{1,32}",
        object in proptest::option::of("\\PC{1,32}"),
        id in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=20)),
        module in "/[a-zA-Z0-9 ._&;?=%-]{1,40}",
        pin in proptest::option::of("file:/[a-zA-Z0-9 ._&;?=%-]{1,40}"),
    ) {
        let uri = tka::pkcs11::Pkcs11Uri {
            token: Some(token),
            object,
            id,
            module_path: Some(module.into()),
            pin_source: pin,
            ..Default::default()
        };
        let back = tka::pkcs11::Pkcs11Uri::parse(&uri.to_string()).unwrap();
        prop_assert_eq!(back, uri);
    }

    /// The URI parser never panics, and refuses or accepts every input with a result.
    #[test]
    fn pkcs11_uri_parser_never_panics(s in "(pkcs11:|PKCS11:)?\\PC{0,80}") {
        let _ = tka::pkcs11::Pkcs11Uri::parse(&s);
    }
}
