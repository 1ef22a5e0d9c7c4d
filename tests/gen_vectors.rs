//! Generator of the adversarial corpus in `tests/vectors/` (age-testkit style).
//!
//! Everything is deterministic: keys are the TEST-ONLY keys in `certs/test/`,
//! certificates are built here with fixed serials and fixed times and signed
//! with RSASSA-PKCS1-v1_5 (deterministic), RS256 tokens are deterministic,
//! and PS256 tokens draw their salt from a seeded generator ([`DetRng`]).
//! The same source therefore always produces the same bytes.
//!
//! `committed_vectors_are_up_to_date` regenerates the corpus in memory and
//! fails if any committed file differs, is missing or is stale; run
//! `scripts/gen-vectors.sh` (which sets `TKA_REGENERATE_VECTORS=1`) to
//! rewrite the files after changing this generator. `tests/vectors.rs` then
//! runs every vector through `tka::verify::verify_token`.
//!
//! Each vector breaks exactly one thing; tokens whose defect is not the
//! signature are re-signed with the legitimate signer key so the defect is
//! the only one.

mod common;

use base64::Engine;
use common::rawcert::{
    self, bc, ca_exts, cert_under, crl_der, ext, ku, private_key, spki_of, tka_eku, unknown_critical,
};
use common::{hmac_sha256, machine, other_machine, test_key, DAY, NOW, PRODUCT};
use der::{Decode, EncodePem};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tka::keys::{SignatureAlgorithm, Signer};
use tka::machine::MatchRule;
use tka::token::{Claims, TkaClaims};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, KeyUsages, SubjectKeyIdentifier};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::Certificate;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Tokens are issued at this instant (`iat = nbf`).
const ISSUED: i64 = NOW - 30;
/// Default token lifetime.
const LIFETIME: i64 = 180 * DAY;
/// Every vector's serial, unless the vector is about the serial.
const SERIAL: &str = "7e57ec7012345678900000000000c0de";

fn dir() -> PathBuf {
    common::repo().join("tests/vectors")
}

// ---------------------------------------------------------------------------
// Deterministic randomness for PSS salts.

/// A SHA-256 counter-mode byte stream seeded by a label: the salt of a PS256
/// vector is a function of the vector, so regeneration is byte-identical.
/// (Also feeds RSA blinding, which does not change the signature.)
struct DetRng {
    seed: [u8; 32],
    counter: u64,
    buf: Vec<u8>,
}

impl DetRng {
    fn new(label: &str) -> Self {
        DetRng { seed: Sha256::digest(label.as_bytes()).into(), counter: 0, buf: Vec::new() }
    }
    fn fill(&mut self, dst: &mut [u8]) {
        for b in dst.iter_mut() {
            if self.buf.is_empty() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_be_bytes());
                self.counter += 1;
                self.buf = h.finalize().to_vec();
            }
            *b = self.buf.pop().expect("refilled");
        }
    }
}

impl rsa::rand_core::TryRng for DetRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        Ok(u32::from_be_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        Ok(u64::from_be_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for DetRng {}

/// Signs `input` with test key `key`: RS256 directly (deterministic), PS256
/// with a salt derived from `label`.
fn sign_with(key: &str, alg: SignatureAlgorithm, input: &[u8], label: &str) -> Vec<u8> {
    match alg {
        SignatureAlgorithm::Rs256 => test_key(key).sign(SignatureAlgorithm::Rs256, input).unwrap(),
        SignatureAlgorithm::Ps256 => {
            private_key(key).pss_sign_with_rng::<Sha256, _>(&mut DetRng::new(label), input).unwrap()
        }
    }
}

// ---------------------------------------------------------------------------
// Fixture certificates.

fn serial(n: u8) -> SerialNumber {
    let mut b = [0u8; 16];
    b[0] = 0x40;
    b[15] = n;
    SerialNumber::new(&b).unwrap()
}

/// RFC 7093 §2 method 1, as tka's own builder computes it.
fn key_id(key: &str) -> Vec<u8> {
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_of(key)).unwrap();
    Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn ids(subject_key: &str, issuer_key: &str) -> Vec<Extension> {
    vec![
        ext(&SubjectKeyIdentifier(der::asn1::OctetString::new(key_id(subject_key)).unwrap()), false),
        ext(
            &AuthorityKeyIdentifier {
                key_identifier: Some(der::asn1::OctetString::new(key_id(issuer_key)).unwrap()),
                ..Default::default()
            },
            false,
        ),
    ]
}

/// tka's own profiles (what `tka ca` writes).
fn root_exts(key: &str) -> Vec<Extension> {
    let mut e = ca_exts(None);
    e.extend(ids(key, key));
    e
}
fn int_exts(key: &str, issuer_key: &str) -> Vec<Extension> {
    let mut e = ca_exts(Some(0));
    e.extend(ids(key, issuer_key));
    e
}
fn signer_exts(key: &str, issuer_key: &str) -> Vec<Extension> {
    let mut e = rawcert::signer_exts();
    e.extend(ids(key, issuer_key));
    e
}

/// One fixture certificate.
struct CertSpec<'a> {
    subject: &'a str,
    key: &'a str,
    /// Issuer certificate (DER) and the test key that signs; `None` = self-signed.
    issuer: Option<(&'a [u8], &'a str)>,
    serial: u8,
    nb: i64,
    na: i64,
    exts: Vec<Extension>,
}

fn build_cert(s: CertSpec<'_>) -> Vec<u8> {
    cert_under(s.subject, s.key, s.issuer, serial(s.serial), s.nb, s.na, s.exts)
}

/// The fixture PKI: name -> DER. Written to `tests/vectors/pki/<name>.pem`.
struct Pki {
    certs: BTreeMap<&'static str, Vec<u8>>,
    crls: BTreeMap<&'static str, Vec<u8>>,
}

impl Pki {
    fn get(&self, name: &str) -> &[u8] {
        self.certs.get(name).unwrap_or_else(|| panic!("no fixture {name}"))
    }
}

const ROOT_NB: i64 = NOW - 365 * DAY;
const ROOT_NA: i64 = NOW + 10 * 365 * DAY;
const INT_NB: i64 = NOW - 300 * DAY;
const INT_NA: i64 = NOW + 5 * 365 * DAY;
const SIGNER_NB: i64 = NOW - 30 * DAY;
const SIGNER_NA: i64 = NOW + 335 * DAY;

fn build_pki() -> Pki {
    let mut c: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let root = build_cert(CertSpec {
        subject: "CN=Vector Root,O=tka vectors",
        key: "root",
        issuer: None,
        serial: 1,
        nb: ROOT_NB,
        na: ROOT_NA,
        exts: root_exts("root"),
    });
    let int = build_cert(CertSpec {
        subject: "CN=Vector Issuing CA,O=tka vectors",
        key: "intermediate",
        issuer: Some((&root, "root")),
        serial: 2,
        nb: INT_NB,
        na: INT_NA,
        exts: int_exts("intermediate", "root"),
    });
    let signer_under = |subject: &str, key: &str, issuer: (&[u8], &str), serial: u8, exts: Vec<Extension>| {
        build_cert(CertSpec { subject, key, issuer: Some(issuer), serial, nb: SIGNER_NB, na: SIGNER_NA, exts })
    };
    let signer = signer_under(
        "CN=Vector Signer,O=tka vectors",
        "signer",
        (&int, "intermediate"),
        3,
        signer_exts("signer", "intermediate"),
    );

    // A second, untrusted root with the same name as the trusted one, and its chain.
    let other_root = build_cert(CertSpec {
        subject: "CN=Vector Root,O=tka vectors",
        key: "other",
        issuer: None,
        serial: 10,
        nb: ROOT_NB,
        na: ROOT_NA,
        exts: root_exts("other"),
    });
    let other_int = build_cert(CertSpec {
        subject: "CN=Vector Issuing CA,O=tka vectors",
        key: "intermediate",
        issuer: Some((&other_root, "other")),
        serial: 11,
        nb: INT_NB,
        na: INT_NA,
        exts: int_exts("intermediate", "other"),
    });

    // Signers under the good intermediate, each with one defect.
    let s = |subject: &str, serial: u8, exts: Vec<Extension>| {
        signer_under(subject, "signer", (&int, "intermediate"), serial, exts)
    };
    c.insert(
        "signer-no-eku",
        s("CN=Signer Without EKU,O=tka vectors", 20, {
            let mut e = vec![bc(false, None), ku(KeyUsages::DigitalSignature)];
            e.extend(ids("signer", "intermediate"));
            e
        }),
    );
    c.insert(
        "signer-no-digital-signature",
        s("CN=Signer Without digitalSignature,O=tka vectors", 21, {
            let mut e = vec![bc(false, None), ku(KeyUsages::NonRepudiation), tka_eku()];
            e.extend(ids("signer", "intermediate"));
            e
        }),
    );
    c.insert(
        "signer-unknown-critical",
        s("CN=Signer With Unknown Critical,O=tka vectors", 22, {
            let mut e = signer_exts("signer", "intermediate");
            e.push(unknown_critical());
            e
        }),
    );
    c.insert(
        "signer-is-ca",
        s("CN=Signer That Is A CA,O=tka vectors", 23, {
            let mut e = vec![bc(true, Some(0)), ku(KeyUsages::DigitalSignature | KeyUsages::KeyCertSign), tka_eku()];
            e.extend(ids("signer", "intermediate"));
            e
        }),
    );
    c.insert(
        "signer-expired",
        build_cert(CertSpec {
            subject: "CN=Expired Signer,O=tka vectors",
            key: "signer",
            issuer: Some((&int, "intermediate")),
            serial: 24,
            nb: NOW - 400 * DAY,
            na: NOW - DAY,
            exts: signer_exts("signer", "intermediate"),
        }),
    );
    c.insert(
        "signer-not-yet-valid",
        build_cert(CertSpec {
            subject: "CN=Future Signer,O=tka vectors",
            key: "signer",
            issuer: Some((&int, "intermediate")),
            serial: 25,
            nb: NOW + DAY,
            na: NOW + 300 * DAY,
            exts: signer_exts("signer", "intermediate"),
        }),
    );
    // Names the good intermediate as issuer but is signed by another key.
    c.insert(
        "signer-bad-signature",
        signer_under(
            "CN=Forged Signer,O=tka vectors",
            "signer",
            (&int, "other"),
            26,
            signer_exts("signer", "intermediate"),
        ),
    );
    c.insert(
        "signer-weak-1024",
        signer_under(
            "CN=Weak Signer,O=tka vectors",
            "weak1024",
            (&int, "intermediate"),
            27,
            signer_exts("weak1024", "intermediate"),
        ),
    );

    // Intermediates with one defect each, and a good signer (signer2 key) under each.
    // The signer under each variant is valid now (even under an expired
    // issuing CA), so the variant's own defect is the only one.
    let mut int_variant = |name: &'static str, subject: &str, serial: u8, nb: i64, na: i64, exts: Vec<Extension>| {
        let i =
            build_cert(CertSpec { subject, key: "intermediate", issuer: Some((&root, "root")), serial, nb, na, exts });
        let sg = build_cert(CertSpec {
            subject: &format!("CN=Signer Under {name},O=tka vectors"),
            key: "signer2",
            issuer: Some((&i, "intermediate")),
            serial: serial + 100,
            nb: SIGNER_NB,
            na: SIGNER_NA,
            exts: signer_exts("signer2", "intermediate"),
        });
        c.insert(name, i);
        c.insert(Box::leak(format!("{name}.signer").into_boxed_str()), sg);
    };
    int_variant("int-ca-false", "CN=Intermediate CA FALSE,O=tka vectors", 30, INT_NB, INT_NA, {
        let mut e = vec![bc(false, None), ku(KeyUsages::KeyCertSign | KeyUsages::CRLSign)];
        e.extend(ids("intermediate", "root"));
        e
    });
    int_variant("int-no-key-cert-sign", "CN=Intermediate Without keyCertSign,O=tka vectors", 31, INT_NB, INT_NA, {
        let mut e = vec![bc(true, Some(0)), ku(KeyUsages::CRLSign | KeyUsages::DigitalSignature)];
        e.extend(ids("intermediate", "root"));
        e
    });
    int_variant("int-unknown-critical", "CN=Intermediate With Unknown Critical,O=tka vectors", 32, INT_NB, INT_NA, {
        let mut e = int_exts("intermediate", "root");
        e.push(unknown_critical());
        e
    });
    int_variant(
        "int-expired",
        "CN=Expired Intermediate,O=tka vectors",
        33,
        NOW - 800 * DAY,
        NOW - DAY,
        int_exts("intermediate", "root"),
    );
    int_variant(
        "int-not-yet-valid",
        "CN=Future Intermediate,O=tka vectors",
        34,
        NOW + DAY,
        INT_NA,
        int_exts("intermediate", "root"),
    );

    // pathLen: the good intermediate (pathLen 0) signs a second CA, which signs a signer.
    let int2 = build_cert(CertSpec {
        subject: "CN=Second-Level CA,O=tka vectors",
        key: "other",
        issuer: Some((&int, "intermediate")),
        serial: 40,
        nb: INT_NB,
        na: INT_NA,
        exts: int_exts("other", "intermediate"),
    });
    let int2_signer = build_cert(CertSpec {
        subject: "CN=Signer Under Second-Level CA,O=tka vectors",
        key: "signer2",
        issuer: Some((&int2, "other")),
        serial: 41,
        nb: SIGNER_NB,
        na: SIGNER_NA,
        exts: signer_exts("signer2", "other"),
    });

    // An expired trusted root with its own chain.
    let old_root = build_cert(CertSpec {
        subject: "CN=Expired Vector Root,O=tka vectors",
        key: "other",
        issuer: None,
        serial: 50,
        nb: NOW - 3650 * DAY,
        na: NOW - DAY,
        exts: root_exts("other"),
    });
    let old_root_signer = build_cert(CertSpec {
        subject: "CN=Signer Under Expired Root,O=tka vectors",
        key: "signer2",
        issuer: Some((&old_root, "other")),
        serial: 51,
        nb: NOW - 400 * DAY,
        na: NOW - 2 * DAY,
        exts: signer_exts("signer2", "other"),
    });

    // CRLs from the issuing CA: one listing the signer, one forged with another key.
    let crl = |serials: &[u8], key: &str| crl_der(&int, 7, serials.iter().map(|n| serial(*n)).collect(), key);
    let mut crls = BTreeMap::new();
    crls.insert("int-revokes-signer", crl(&[3], "intermediate"));
    crls.insert("int-revokes-signer-forged", crl(&[3], "other"));

    c.insert("root", root);
    c.insert("int", int);
    c.insert("signer", signer);
    c.insert("other-root", other_root);
    c.insert("other-int", other_int);
    c.insert("int2-path-len", int2);
    c.insert("int2-path-len.signer", int2_signer);
    c.insert("expired-root", old_root);
    c.insert("expired-root.signer", old_root_signer);
    Pki { certs: c, crls }
}

fn pem_cert(der: &[u8]) -> String {
    Certificate::from_der(der).unwrap().to_pem(der::pem::LineEnding::LF).unwrap()
}

fn pem_crl(der: &[u8]) -> String {
    tka::pki::pem::encode("X509 CRL", der)
}

// ---------------------------------------------------------------------------
// Tokens.

fn claims() -> Claims {
    let id = machine();
    Claims {
        jti: SERIAL.into(),
        sub: id.cmid().into(),
        aud: PRODUCT.into(),
        iat: ISSUED,
        nbf: ISSUED,
        exp: Some(ISSUED + LIFETIME),
        tka: TkaClaims {
            v: 1,
            features: vec!["reports".into(), "export".into()],
            edition: Some("pro".into()),
            entitlement: None,
            components: id.components().to_vec(),
            match_rule: MatchRule::Most,
            renew_after: Some(ISSUED + LIFETIME * 2 / 3),
            grace: 0,
            weak_binding: false,
        },
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn payload() -> Map<String, Value> {
    obj(serde_json::to_value(claims()).unwrap())
}

fn header(chain: &[&[u8]], alg: &str) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("alg".into(), json!(alg));
    h.insert("typ".into(), json!("tka-token+jwt"));
    h.insert("kid".into(), json!(tka::pki::sha256_hex(chain[0])));
    h.insert("x5c".into(), Value::Array(chain.iter().map(|c| json!(B64STD.encode(c))).collect()));
    h
}

fn b64(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

fn b64_json(v: &Map<String, Value>) -> String {
    b64(&serde_json::to_vec(v).unwrap())
}

/// What a vector needs besides the token.
#[derive(Clone)]
struct Ctx {
    now: i64,
    product: Option<String>,
    machine: String,
    roots: Vec<&'static str>,
    crls: Vec<&'static str>,
    clock: Option<(i64, i64)>,
    revoked: Vec<String>,
}

impl Default for Ctx {
    fn default() -> Self {
        Ctx {
            now: NOW,
            product: Some(PRODUCT.into()),
            machine: "fixture".into(),
            roots: vec!["root"],
            crls: Vec::new(),
            clock: None,
            revoked: Vec::new(),
        }
    }
}

struct Vector {
    name: String,
    expect: String,
    what: Option<&'static str>,
    comment: String,
    ctx: Ctx,
    token: String,
}

struct Gen {
    pki: Pki,
    out: Vec<Vector>,
}

impl Gen {
    fn good_chain(&self) -> Vec<&[u8]> {
        vec![self.pki.get("signer"), self.pki.get("int")]
    }

    /// Header and payload as given, signed by test key `key` with `alg`.
    fn sign_maps(
        &self,
        label: &str,
        h: &Map<String, Value>,
        p: &Map<String, Value>,
        key: &str,
        alg: SignatureAlgorithm,
    ) -> String {
        self.sign_parts(label, &b64_json(h), &b64_json(p), key, alg)
    }

    fn sign_parts(&self, label: &str, h: &str, p: &str, key: &str, alg: SignatureAlgorithm) -> String {
        let input = format!("{h}.{p}");
        let sig = sign_with(key, alg, input.as_bytes(), label);
        format!("{input}.{}", b64(&sig))
    }

    /// The default token (PS256) with header and payload edited, re-signed by the signer.
    fn resign(&self, label: &str, edit: impl FnOnce(&mut Map<String, Value>, &mut Map<String, Value>)) -> String {
        let mut h = header(&self.good_chain(), "PS256");
        let mut p = payload();
        edit(&mut h, &mut p);
        self.sign_maps(label, &h, &p, "signer", SignatureAlgorithm::Ps256)
    }

    /// The default token's claims over `chain`, signed (RS256) by test key `key`.
    fn with_chain(&self, label: &str, chain: &[&str], key: &str) -> String {
        let ders: Vec<&[u8]> = chain.iter().map(|n| self.pki.get(n)).collect();
        self.sign_maps(label, &header(&ders, "RS256"), &payload(), key, SignatureAlgorithm::Rs256)
    }

    fn good(&self) -> String {
        self.resign("good", |_, _| {})
    }

    fn add(&mut self, name: &str, expect: &str, comment: &str, ctx: Ctx, token: String) {
        self.out.push(Vector {
            name: name.into(),
            expect: expect.into(),
            what: None,
            comment: comment.into(),
            ctx,
            token,
        });
    }

    fn add_malformed(&mut self, name: &str, what: &'static str, comment: &str, ctx: Ctx, token: String) {
        self.out.push(Vector {
            name: name.into(),
            expect: "Malformed".into(),
            what: Some(what),
            comment: comment.into(),
            ctx,
            token,
        });
    }
}

fn at(now: i64) -> Ctx {
    Ctx { now, ..Ctx::default() }
}

fn on_machine(m: &str) -> Ctx {
    Ctx { machine: m.into(), ..Ctx::default() }
}

fn edit_tka(p: &mut Map<String, Value>, f: impl FnOnce(&mut Map<String, Value>)) {
    f(p.get_mut("tka").unwrap().as_object_mut().unwrap())
}

fn split(t: &str) -> (String, String, String) {
    let p: Vec<&str> = t.split('.').collect();
    (p[0].into(), p[1].into(), p[2].into())
}

fn generate() -> (Pki, Vec<Vector>) {
    let mut g = Gen { pki: build_pki(), out: Vec::new() };
    baseline(&mut g);
    structure(&mut g);
    jose(&mut g);
    chain(&mut g);
    claims_tampering(&mut g);
    machines(&mut g);
    time_edges(&mut g);
    (g.pki, g.out)
}

// ---------------------------------------------------------------------------
// The vectors, by theme.

fn baseline(g: &mut Gen) {
    let t = g.good();
    g.add(
        "ok-ps256",
        "ok",
        "the default token: PS256, signer + issuing CA in x5c, bound to five components with `most`",
        Ctx::default(),
        t.clone(),
    );
    let t = g.with_chain("ok-rs256", &["signer", "int"], "signer");
    g.add("ok-rs256", "ok", "the same claims signed RS256", Ctx::default(), t);
    let t = g.with_chain("ok-root-in-x5c", &["signer", "int", "root"], "signer");
    g.add("ok-root-in-x5c", "ok", "x5c may include the trusted root itself", Ctx::default(), t);
    let t = g.resign("ok-no-kid", |h, _| {
        h.remove("kid");
    });
    g.add("ok-no-kid", "ok", "kid is optional: the signer is x5c[0]", Ctx::default(), t);
    let t = g.resign("ok-typ-application", |h, _| {
        h.insert("typ".into(), json!("application/tka-token+jwt"));
    });
    g.add(
        "ok-typ-media-type",
        "ok",
        "typ may carry the application/ media-type prefix (RFC 7515 §4.1.9)",
        Ctx::default(),
        t,
    );
    let good = g.good();
    g.add(
        "ok-trailing-crlf",
        "ok",
        "a trailing CRLF (a token file saved on Windows) is accepted",
        Ctx::default(),
        good + "\r\n",
    );
    let t = g.resign("ok-perpetual", |_, p| {
        p.remove("exp");
        edit_tka(p, |t| {
            t.remove("renew_after");
        });
    });
    g.add("ok-perpetual", "ok", "no exp: a perpetual token, valid while its signer chain is", Ctx::default(), t);
    let t = g.resign("ok-unknown-claim", |_, p| {
        p.insert("x-note".into(), json!("ignored"));
    });
    g.add(
        "ok-unknown-claim-ignored",
        "ok",
        "an unknown claim is signed data and ignored (RFC 7519 §4)",
        Ctx::default(),
        t,
    );
    let t = g.good();
    g.add(
        "ok-crl-forged-does-not-revoke",
        "ok",
        "a CRL listing the signer but signed by another key is not the issuer's and revokes nothing",
        Ctx { crls: vec!["int-revokes-signer-forged"], ..Ctx::default() },
        t,
    );
}

fn structure(g: &mut Gen) {
    let good = g.good();
    let (h, p, s) = split(&good);
    let pad = "A".repeat(tka::jws::MAX_JWS_SIZE + 1 - good.len());
    g.add(
        "size-over-64k",
        "TooLarge",
        "a good token followed by padding to 64 KiB + 1: refused on size before any parsing",
        Ctx::default(),
        format!("{good}{pad}"),
    );
    g.add_malformed(
        "size-exactly-64k",
        "token",
        "64 KiB exactly is within the limit, then fails on structure",
        Ctx::default(),
        "A".repeat(tka::jws::MAX_JWS_SIZE),
    );
    g.add_malformed("parts-two", "token", "header.payload without a signature", Ctx::default(), format!("{h}.{p}"));
    g.add_malformed("parts-four", "token", "an extra dot-separated part", Ctx::default(), format!("{good}.{s}"));
    g.add_malformed("parts-empty", "token", "empty input", Ctx::default(), String::new());
    g.add_malformed(
        "jwe-five-parts",
        "token",
        "a JWE compact serialization (five parts) is not a JWS",
        Ctx::default(),
        format!("{h}..{p}.{s}.AAAA"),
    );
    g.add_malformed(
        "trailing-space",
        "token signature",
        "trailing garbage: a space",
        Ctx::default(),
        format!("{good} "),
    );
    g.add_malformed("trailing-tab", "token signature", "trailing garbage: a tab", Ctx::default(), format!("{good}\t"));
    g.add_malformed(
        "trailing-text",
        "token signature",
        "trailing garbage: a second word",
        Ctx::default(),
        format!("{good} extra"),
    );
    g.add_malformed(
        "trailing-second-token",
        "token",
        "two tokens on two lines",
        Ctx::default(),
        format!("{good}\n{good}"),
    );
    g.add_malformed("leading-space", "token header", "leading whitespace", Ctx::default(), format!(" {good}"));
    g.add_malformed(
        "padding",
        "token signature",
        "base64 padding is not base64url (RFC 7515 §2)",
        Ctx::default(),
        format!("{h}.{p}.{s}=="),
    );
    let std_b64 = format!("{}+{}", &p[..10], &p[11..]);
    g.add_malformed(
        "standard-base64-alphabet",
        "token payload",
        "'+' belongs to the standard alphabet, not base64url",
        Ctx::default(),
        format!("{h}.{std_b64}.{s}"),
    );
    let spaced = format!("{} {}", &p[..10], &p[10..]);
    g.add_malformed(
        "space-inside-payload",
        "token payload",
        "whitespace inside a part",
        Ctx::default(),
        format!("{h}.{spaced}.{s}"),
    );
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = s.chars().last().unwrap();
    let other = alphabet.chars().nth(alphabet.find(last).unwrap() ^ 1).unwrap();
    g.add_malformed(
        "non-canonical-base64",
        "token signature",
        "the unused low bits of the last character are set: another spelling of the same bytes",
        Ctx::default(),
        format!("{h}.{p}.{}{other}", &s[..s.len() - 1]),
    );

    // JSON.
    let non_utf8_h = b64(b"{\"alg\":\"PS256\",\"typ\":\"tka-token+jwt\xff\"}");
    g.add_malformed(
        "json-header-not-utf8",
        "token header",
        "header bytes are not UTF-8 (RFC 8725 §3.7)",
        Ctx::default(),
        format!("{non_utf8_h}.{p}.{s}"),
    );
    let bad_p = b64(&[br#"{"aud":"example-pro","x":""#.as_slice(), b"\xc3\x28", br#""}"#].concat());
    let t = g.sign_parts("json-payload-not-utf8", &h, &bad_p, "signer", SignatureAlgorithm::Ps256);
    g.add_malformed(
        "json-payload-not-utf8",
        "token payload",
        "payload bytes are not UTF-8 (RFC 8725 §3.7), correctly signed",
        Ctx::default(),
        t,
    );
    let overlong = b64(&[br#"{"alg":"PS256","typ":"tka-token+jwt","x":""#.as_slice(), b"\xc0\xaf", br#""}"#].concat());
    g.add_malformed(
        "json-header-overlong-utf8",
        "token header",
        "an overlong UTF-8 encoding of '/' is not UTF-8",
        Ctx::default(),
        format!("{overlong}.{p}.{s}"),
    );
    let nested = format!("{{\"alg\":\"PS256\",\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    g.add_malformed(
        "json-header-deeply-nested",
        "token header",
        "10 000 nested arrays in the header: refused by the recursion limit, no stack overflow",
        Ctx::default(),
        format!("{}.{p}.{s}", b64(nested.as_bytes())),
    );
    let nested_p = format!("{{\"aud\":{}1{}}}", "{\"a\":".repeat(5_000), "}".repeat(5_000));
    let t =
        g.sign_parts("json-payload-deeply-nested", &h, &b64(nested_p.as_bytes()), "signer", SignatureAlgorithm::Ps256);
    g.add_malformed(
        "json-payload-deeply-nested",
        "token payload",
        "5 000 nested objects in a correctly signed payload",
        Ctx::default(),
        t,
    );
    let t = g.resign("json-nesting-within-limit", |_, p| {
        let mut v = json!("x");
        for _ in 0..100 {
            v = json!([v]);
        }
        edit_tka(p, |t| {
            t.insert("features".into(), v);
        });
    });
    g.add(
        "json-nesting-within-limit",
        "BadClaims",
        "100 levels of nesting parse as JSON, then fail as claims (features must be strings)",
        Ctx::default(),
        t,
    );
    let h_trailing = b64(format!("{} x", String::from_utf8(B64URL.decode(&h).unwrap()).unwrap()).as_bytes());
    g.add_malformed(
        "json-header-trailing-data",
        "token header",
        "data after the header's JSON value",
        Ctx::default(),
        format!("{h_trailing}.{p}.{s}"),
    );
    g.add_malformed(
        "json-header-array",
        "token header",
        "header is a JSON array, not an object",
        Ctx::default(),
        format!("{}.{p}.{s}", b64(br#"[{"alg":"PS256","typ":"tka-token+jwt"}]"#)),
    );
    g.add_malformed("json-header-empty", "token header", "header is empty", Ctx::default(), format!(".{p}.{s}"));
    let t = g.sign_parts("json-payload-array", &h, &b64(b"[1,2,3]"), "signer", SignatureAlgorithm::Ps256);
    g.add("json-payload-array", "BadClaims", "payload is a JSON array, correctly signed", Ctx::default(), t);
    let t = g.sign_parts("json-huge-number", &h, &b64(br#"{"iat":1e400}"#), "signer", SignatureAlgorithm::Ps256);
    g.add_malformed(
        "json-payload-number-out-of-range",
        "token payload",
        "1e400 is not a representable number",
        Ctx::default(),
        t,
    );

    // Duplicate keys (RFC 8725 §3.x / RFC 7515 §5.2: no guessing which one wins).
    let hjson = String::from_utf8(B64URL.decode(&h).unwrap()).unwrap();
    let dup_alg = hjson.replacen('{', r#"{"alg":"none","#, 1);
    g.add(
        "dup-header-alg",
        "DuplicateKey",
        "alg appears twice in the header (none, then PS256)",
        Ctx::default(),
        format!("{}.{p}.{s}", b64(dup_alg.as_bytes())),
    );
    let dup_escaped = hjson.replacen('{', r#"{"\u0061lg":"none","#, 1);
    g.add(
        "dup-header-alg-escaped",
        "DuplicateKey",
        "the duplicate alg is spelled with a \\u escape",
        Ctx::default(),
        format!("{}.{p}.{s}", b64(dup_escaped.as_bytes())),
    );
    let dup_pos = hjson.replacen('{', r#"{"x at line 1 column 2":0,"x at line 1 column 2":1,"#, 1);
    g.add(
        "dup-header-key-spelling-a-position",
        "DuplicateKey",
        "the duplicated name looks like the parser's own error position (found by tests/proptest.rs)",
        Ctx::default(),
        format!("{}.{p}.{s}", b64(dup_pos.as_bytes())),
    );
    let pjson = String::from_utf8(B64URL.decode(&p).unwrap()).unwrap();
    let dup_aud = pjson.replacen('{', r#"{"aud":"other-product","#, 1);
    let t = g.sign_parts("dup-payload-aud", &h, &b64(dup_aud.as_bytes()), "signer", SignatureAlgorithm::Ps256);
    g.add("dup-payload-aud", "DuplicateKey", "aud appears twice in a correctly signed payload", Ctx::default(), t);
    let dup_match = pjson.replacen(r#""match":"most""#, r#""match":"all","match":"most""#, 1);
    assert_ne!(dup_match, pjson);
    let t = g.sign_parts("dup-payload-nested", &h, &b64(dup_match.as_bytes()), "signer", SignatureAlgorithm::Ps256);
    g.add("dup-payload-nested-match", "DuplicateKey", "tka.match appears twice (nested object)", Ctx::default(), t);
}

fn jose(g: &mut Gen) {
    let good = g.good();
    let (h, p, s) = split(&good);
    // RFC 8725 §3.1: algorithm verification.
    let mut none_h = header(&g.good_chain(), "none");
    g.add(
        "alg-none",
        "AlgorithmNotAllowed",
        "alg none with an empty signature (RFC 8725 §3.1)",
        Ctx::default(),
        format!("{}.{p}.", b64_json(&none_h)),
    );
    none_h.insert("alg".into(), json!("None"));
    g.add(
        "alg-none-capitalised",
        "AlgorithmNotAllowed",
        "alg \"None\": no case-insensitive matching",
        Ctx::default(),
        format!("{}.{p}.", b64_json(&none_h)),
    );
    // HS256 keyed with the signer's public key (the classic RS/HS confusion).
    let hs_h = b64_json(&header(&g.good_chain(), "HS256"));
    let input = format!("{hs_h}.{p}");
    let mac = hmac_sha256(&spki_of("signer"), input.as_bytes());
    g.add(
        "alg-hs256-public-key-as-secret",
        "AlgorithmNotAllowed",
        "HS256 MAC keyed with the signer certificate's public key (RFC 8725 §2.1)",
        Ctx::default(),
        format!("{input}.{}", b64(&mac)),
    );
    for (alg, why) in [
        ("ES256", "an EC algorithm"),
        ("RS512", "RSA with another hash"),
        ("PS384", "PSS with another hash"),
        ("EdDSA", "EdDSA"),
    ] {
        let t = g.resign(&format!("alg-{alg}"), |h, _| {
            h.insert("alg".into(), json!(alg));
        });
        g.add(
            &format!("alg-{}", alg.to_lowercase()),
            "AlgorithmNotAllowed",
            &format!("{alg} ({why}) is not on the allow-list"),
            Ctx::default(),
            t,
        );
    }
    let t = g.resign("alg-number", |h, _| {
        h.insert("alg".into(), json!(256));
    });
    g.add("alg-not-a-string", "AlgorithmNotAllowed", "alg is a number", Ctx::default(), t);
    let t = g.resign("alg-missing", |h, _| {
        h.remove("alg");
    });
    g.add("alg-missing", "AlgorithmNotAllowed", "no alg at all", Ctx::default(), t);
    // The signature is checked with the header's algorithm, never another.
    let rs = g.with_chain("alg-relabel-rs", &["signer", "int"], "signer");
    let (_, rp, rsig) = split(&rs);
    let relabelled = b64_json(&header(&g.good_chain(), "PS256"));
    g.add(
        "alg-rs256-relabelled-ps256",
        "BadSignature",
        "an RS256 signature under a header that says PS256",
        Ctx::default(),
        format!("{relabelled}.{rp}.{rsig}"),
    );
    let relabelled = b64_json(&header(&g.good_chain(), "RS256"));
    g.add(
        "alg-ps256-relabelled-rs256",
        "BadSignature",
        "a PS256 signature under a header that says RS256",
        Ctx::default(),
        format!("{relabelled}.{p}.{s}"),
    );
    // PSS with salt length 0 (RFC 7518 §3.5 requires the hash length).
    let input = format!("{h}.{p}");
    let sk = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(private_key("signer"), 0);
    let sig: rsa::pss::Signature =
        signature::RandomizedSigner::sign_with_rng(&sk, &mut DetRng::new("pss-salt-0"), input.as_bytes());
    g.add(
        "alg-ps256-salt-length-0",
        "BadSignature",
        "RSASSA-PSS with an empty salt: PS256 requires a 32-byte salt (RFC 7518 §3.5)",
        Ctx::default(),
        format!("{input}.{}", b64(&signature::SignatureEncoding::to_vec(&sig))),
    );

    // RFC 8725 §3.3 / §3.4: every signature is verified; bad inputs fail cleanly.
    let mut flipped = B64URL.decode(&s).unwrap();
    flipped[100] ^= 1;
    g.add(
        "sig-bit-flipped",
        "BadSignature",
        "one bit of the signature flipped",
        Ctx::default(),
        format!("{h}.{p}.{}", b64(&flipped)),
    );
    g.add(
        "sig-truncated",
        "BadSignature",
        "signature cut to 255 bytes",
        Ctx::default(),
        format!("{h}.{p}.{}", b64(&B64URL.decode(&s).unwrap()[..255])),
    );
    g.add("sig-empty", "BadSignature", "no signature bytes", Ctx::default(), format!("{h}.{p}."));
    g.add("sig-all-zero", "BadSignature", "256 zero bytes", Ctx::default(), format!("{h}.{p}.{}", b64(&[0u8; 256])));
    g.add(
        "sig-all-ff",
        "BadSignature",
        "256 0xff bytes: larger than the modulus",
        Ctx::default(),
        format!("{h}.{p}.{}", b64(&[0xffu8; 256])),
    );
    let mut long = vec![0u8];
    long.extend(B64URL.decode(&s).unwrap());
    g.add(
        "sig-leading-zero",
        "BadSignature",
        "the right signature with a leading zero byte (257 bytes)",
        Ctx::default(),
        format!("{h}.{p}.{}", b64(&long)),
    );
    let t =
        g.sign_maps("sig-other-key", &header(&g.good_chain(), "PS256"), &payload(), "other", SignatureAlgorithm::Ps256);
    g.add("sig-other-key", "BadSignature", "signed with a key that is not the signer certificate's", Ctx::default(), t);
    let mut tampered = payload();
    tampered.insert("aud".into(), json!("other-product"));
    g.add(
        "sig-payload-tampered",
        "BadSignature",
        "aud edited after signing, signature kept: the signature check comes before the claims",
        Ctx { product: None, ..Ctx::default() },
        format!("{h}.{}.{s}", b64_json(&tampered)),
    );
    let mut th = header(&g.good_chain(), "PS256");
    th.insert("x-extra".into(), json!(1));
    g.add(
        "sig-header-tampered",
        "BadSignature",
        "a header member added after signing",
        Ctx::default(),
        format!("{}.{p}.{s}", b64_json(&th)),
    );

    // RFC 8725 §3.10 / RFC 7515 §4.1.2-5: the token never names its own key.
    for name in ["jwk", "jku", "x5u"] {
        let t = g.resign(&format!("hdr-{name}"), |h, _| {
            let v = match name {
                "jwk" => json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
                _ => json!("https://attacker.example/keys"),
            };
            h.insert(name.into(), v);
        });
        g.add(
            &format!("header-{name}"),
            "ForbiddenHeader",
            &format!("a {name} header offering the attacker's key"),
            Ctx::default(),
            t,
        );
    }
    let t = g.resign("hdr-jku-null", |h, _| {
        h.insert("jku".into(), Value::Null);
    });
    g.add("header-jku-null", "ForbiddenHeader", "jku present with a null value is still refused", Ctx::default(), t);
    let t = g.resign("kid-other", |h, _| {
        h.insert("kid".into(), json!(tka::pki::sha256_hex(b"another certificate")));
    });
    g.add_malformed("kid-mismatch", "token header", "kid names another certificate than x5c[0]", Ctx::default(), t);
    let t = g.resign("kid-traversal", |h, _| {
        h.insert("kid".into(), json!("../../../../etc/passwd"));
    });
    g.add_malformed(
        "kid-path-traversal",
        "token header",
        "kid is never used as a file name or lookup key",
        Ctx::default(),
        t,
    );
    let t = g.resign("kid-number", |h, _| {
        h.insert("kid".into(), json!(7));
    });
    g.add_malformed("kid-not-a-string", "token header", "kid is a number", Ctx::default(), t);

    // RFC 7515 §4.1.11: crit.
    let t = g.resign("crit-exp", |h, _| {
        h.insert("crit".into(), json!(["exp"]));
        h.insert("exp".into(), json!(ISSUED));
    });
    g.add("crit-unknown", "UnknownCritical", "crit names an extension tka does not implement", Ctx::default(), t);
    let t = g.resign("crit-b64", |h, _| {
        h.insert("crit".into(), json!(["b64"]));
        h.insert("b64".into(), json!(false));
    });
    g.add(
        "crit-b64-false",
        "UnknownCritical",
        "unencoded payload option (RFC 7797) is not supported",
        Ctx::default(),
        t,
    );
    let t = g.resign("crit-empty", |h, _| {
        h.insert("crit".into(), json!([]));
    });
    g.add("crit-empty", "UnknownCritical", "an empty crit is still a crit (RFC 7515 §4.1.11)", Ctx::default(), t);

    // RFC 8725 §3.11 / §3.12: explicit typing.
    let t = g.resign("typ-missing", |h, _| {
        h.remove("typ");
    });
    g.add("typ-missing", "WrongType", "no typ (RFC 8725 §3.11)", Ctx::default(), t);
    let t = g.resign("typ-jwt", |h, _| {
        h.insert("typ".into(), json!("JWT"));
    });
    g.add("typ-jwt", "WrongType", "a generic JWT is not an activation token", Ctx::default(), t);
    let t = g.resign("typ-revocations", |h, _| {
        h.insert("typ".into(), json!("tka-revocations+jwt"));
    });
    g.add(
        "typ-revocation-list",
        "WrongType",
        "a revocation list signed by the same signer cannot pass as a token (RFC 8725 §3.12)",
        Ctx::default(),
        t,
    );
    let t = g.resign("typ-number", |h, _| {
        h.insert("typ".into(), json!(1));
    });
    g.add("typ-not-a-string", "WrongType", "typ is a number", Ctx::default(), t);
}

fn chain(g: &mut Gen) {
    // x5c syntax.
    let t = g.resign("x5c-missing", |h, _| {
        h.remove("x5c");
        h.remove("kid");
    });
    g.add("x5c-missing", "MissingChain", "no x5c and no kid: nothing names the signer", Ctx::default(), t);
    let t = g.resign("x5c-missing-kid-unknown", |h, _| {
        h.remove("x5c");
    });
    g.add(
        "x5c-missing-kid-unknown",
        "UnknownSigner",
        "a compact token (kid, no x5c) whose signer certificate the verifier does not know",
        Ctx::default(),
        t,
    );
    let t = g.resign("x5c-empty", |h, _| {
        h.insert("x5c".into(), json!([]));
    });
    g.add_malformed("x5c-empty", "token header", "x5c is an empty array", Ctx::default(), t);
    let t = g.resign("x5c-string", |h, _| {
        let first = h["x5c"][0].clone();
        h.insert("x5c".into(), first);
    });
    g.add_malformed("x5c-not-an-array", "token header", "x5c is a string", Ctx::default(), t);
    let t = g.resign("x5c-b64url", |h, _| {
        let der = g_signer_der(h);
        h.insert("x5c".into(), json!([B64URL.encode(der)]));
    });
    g.add_malformed(
        "x5c-base64url",
        "token header",
        "x5c entries are standard base64 (RFC 7515 §4.1.6), not base64url",
        Ctx::default(),
        t,
    );
    let t = g.resign("x5c-garbage", |h, _| {
        h.insert("x5c".into(), json!([B64STD.encode(b"not a certificate")]));
        h.remove("kid");
    });
    g.add("x5c-garbage-der", "BadCertificate", "x5c[0] is not DER", Ctx::default(), t);
    let t = g.resign("x5c-trailing", |h, _| {
        let mut der = g_signer_der(h);
        der.extend_from_slice(&[0, 0]);
        h.insert("x5c".into(), json!([B64STD.encode(&der)]));
        h.remove("kid");
    });
    g.add("x5c-trailing-bytes", "BadCertificate", "a certificate followed by two extra bytes", Ctx::default(), t);
    let six: Vec<&str> = vec!["signer", "int", "root", "root", "root", "root"];
    let t = g.with_chain("x5c-six", &six, "signer");
    g.add("chain-too-long", "BadCertificate", "six certificates: more than the five allowed", Ctx::default(), t);

    // Step 3 rules, one per vector.
    let t = g.with_chain("chain-other-root", &["signer", "other-int"], "signer");
    g.add(
        "chain-untrusted-root-same-name",
        "UntrustedRoot",
        "the chain ends at a root with the trusted root's name but another key",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("chain-no-int", &["signer"], "signer");
    g.add("chain-missing-intermediate", "UntrustedRoot", "x5c holds the signer only", Ctx::default(), t);
    let t = g.good();
    g.add(
        "chain-no-trusted-roots",
        "UntrustedRoot",
        "a machine that trusts no root accepts nothing",
        Ctx { roots: vec![], ..Ctx::default() },
        t,
    );
    let t = g.with_chain("chain-wrong-order", &["int", "signer"], "signer");
    g.add(
        "chain-wrong-order",
        "BadCertificate",
        "intermediate first: x5c[0] must be the signer (RFC 7515 §4.1.6)",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("chain-issuer-mismatch", &["signer", "root"], "signer");
    g.add(
        "chain-issuer-subject-mismatch",
        "BadCertificate",
        "the signer's issuer name is not the next certificate's subject",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("chain-trailing-unrelated", &["signer", "int", "root", "other-root"], "signer");
    g.add(
        "chain-unrelated-after-root",
        "BadCertificate",
        "x5c continues past the trusted root with a certificate that does not certify it",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("chain-bad-cert-sig", &["signer-bad-signature", "int"], "signer");
    g.add(
        "cert-signer-bad-signature",
        "BadCertSignature",
        "signer certificate signed by a key that is not the issuing CA's",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("chain-int-other-root", &["signer", "other-int", "root"], "signer");
    g.add(
        "cert-intermediate-bad-signature",
        "BadCertSignature",
        "intermediate names the trusted root but was signed by another key (root included in x5c)",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-signer-expired", &["signer-expired", "int"], "signer");
    g.add("cert-signer-expired", "CertExpired", "signer certificate expired yesterday", Ctx::default(), t);
    let t = g.with_chain("cert-signer-future", &["signer-not-yet-valid", "int"], "signer");
    g.add("cert-signer-not-yet-valid", "CertNotYetValid", "signer certificate valid from tomorrow", Ctx::default(), t);
    let t = g.with_chain("cert-int-expired", &["int-expired.signer", "int-expired"], "signer2");
    g.add("cert-intermediate-expired", "CertExpired", "issuing CA expired yesterday", Ctx::default(), t);
    let t = g.with_chain("cert-int-future", &["int-not-yet-valid.signer", "int-not-yet-valid"], "signer2");
    g.add("cert-intermediate-not-yet-valid", "CertNotYetValid", "issuing CA valid from tomorrow", Ctx::default(), t);
    let t = g.with_chain("cert-root-expired", &["expired-root.signer"], "signer2");
    g.add(
        "cert-root-expired",
        "CertExpired",
        "the trusted root itself has expired (the signer under it too; the first failure in path order is reported)",
        Ctx { roots: vec!["expired-root"], ..Ctx::default() },
        t,
    );
    let t = g.with_chain("cert-signer-weak", &["signer-weak-1024", "int"], "weak1024");
    g.add("cert-signer-rsa-1024", "WeakKey", "a 1024-bit RSA signer key", Ctx::default(), t);
    let t = g.with_chain("cert-signer-crit", &["signer-unknown-critical", "int"], "signer");
    g.add(
        "cert-signer-unknown-critical",
        "UnknownCriticalExtension",
        "signer carries a critical extension tka does not process (RFC 5280 §6.1.4 (o))",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-int-crit", &["int-unknown-critical.signer", "int-unknown-critical"], "signer2");
    g.add(
        "cert-intermediate-unknown-critical",
        "UnknownCriticalExtension",
        "issuing CA carries an unknown critical extension",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-signer-is-ca", &["signer-is-ca", "int"], "signer");
    g.add("cert-signer-is-ca", "SignerIsCa", "a CA:TRUE certificate signs a token", Ctx::default(), t);
    let t = g.with_chain("cert-int-signs", &["int"], "intermediate");
    g.add(
        "cert-intermediate-signs-token",
        "SignerIsCa",
        "the issuing CA's key signs a token directly",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-no-eku", &["signer-no-eku", "int"], "signer");
    g.add("cert-signer-no-eku", "MissingSignerEku", "signer lacks the tka token-signing EKU", Ctx::default(), t);
    let t = g.with_chain("cert-no-ds", &["signer-no-digital-signature", "int"], "signer");
    g.add(
        "cert-signer-no-digital-signature",
        "MissingDigitalSignature",
        "signer keyUsage lacks digitalSignature",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-int-ca-false", &["int-ca-false.signer", "int-ca-false"], "signer2");
    g.add(
        "cert-intermediate-ca-false",
        "NotCa",
        "issuing certificate is CA:FALSE (RFC 5280 §6.1.4 (k))",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-int-no-kcs", &["int-no-key-cert-sign.signer", "int-no-key-cert-sign"], "signer2");
    g.add(
        "cert-intermediate-no-key-cert-sign",
        "MissingKeyCertSign",
        "issuing CA keyUsage lacks keyCertSign (RFC 5280 §6.1.4 (n))",
        Ctx::default(),
        t,
    );
    let t = g.with_chain("cert-path-len", &["int2-path-len.signer", "int2-path-len", "int"], "signer2");
    g.add(
        "cert-path-len-exceeded",
        "PathLenExceeded",
        "the issuing CA has pathLen 0 but a second CA sits below it (RFC 5280 §6.1.4 (l))",
        Ctx::default(),
        t,
    );
    let t = g.good();
    g.add(
        "cert-signer-revoked",
        "CertRevoked",
        "the issuing CA's CRL lists the signer's serial",
        Ctx { crls: vec!["int-revokes-signer"], ..Ctx::default() },
        t,
    );
    let t = g.good();
    g.add(
        "cert-signer-valid-from-now",
        "ok",
        "now is the signer's notBefore second and the token's iat/nbf: valid (RFC 5280 inclusive bounds)",
        Ctx { now: SIGNER_NB, ..Ctx::default() },
        g.resign("cert-signer-nb-edge", |_, p| {
            p.insert("iat".into(), json!(SIGNER_NB));
            p.insert("nbf".into(), json!(SIGNER_NB));
        }),
    );
    let _ = t;
}

/// The DER of x5c[0] of a header.
fn g_signer_der(h: &Map<String, Value>) -> Vec<u8> {
    B64STD.decode(h["x5c"][0].as_str().unwrap()).unwrap()
}

fn claims_tampering(g: &mut Gen) {
    type Edit = Box<dyn Fn(&mut Map<String, Value>)>;
    let cases: Vec<(&str, &str, &str, Edit)> = vec![
        (
            "claim-jti-missing",
            "BadClaims",
            "no jti",
            Box::new(|p| {
                p.remove("jti");
            }),
        ),
        (
            "claim-jti-number",
            "BadClaims",
            "jti is a number",
            Box::new(|p| {
                p.insert("jti".into(), json!(1));
            }),
        ),
        (
            "claim-sub-missing",
            "BadClaims",
            "no sub",
            Box::new(|p| {
                p.remove("sub");
            }),
        ),
        (
            "claim-aud-missing",
            "BadClaims",
            "no aud (RFC 8725 §3.9)",
            Box::new(|p| {
                p.remove("aud");
            }),
        ),
        (
            "claim-aud-array",
            "BadClaims",
            "aud as an array is not accepted: one token, one product",
            Box::new(|p| {
                p.insert("aud".into(), json!([PRODUCT]));
            }),
        ),
        (
            "claim-aud-other-product",
            "WrongProduct",
            "aud names another product (RFC 8725 §3.9)",
            Box::new(|p| {
                p.insert("aud".into(), json!("other-product"));
            }),
        ),
        (
            "claim-iat-missing",
            "BadClaims",
            "no iat",
            Box::new(|p| {
                p.remove("iat");
            }),
        ),
        (
            "claim-iat-string",
            "BadClaims",
            "iat as an RFC 3339 string",
            Box::new(|p| {
                p.insert("iat".into(), json!("2027-01-15T08:00:00Z"));
            }),
        ),
        (
            "claim-iat-float",
            "BadClaims",
            "iat with a fraction",
            Box::new(|p| {
                p.insert("iat".into(), json!(1799999970.5));
            }),
        ),
        (
            "claim-iat-in-future",
            "IssuedInFuture",
            "iat an hour after now, nbf in the past",
            Box::new(|p| {
                p.insert("iat".into(), json!(NOW + 3600));
            }),
        ),
        (
            "claim-iat-before-signer",
            "BadClaims",
            "iat before the signer certificate existed",
            Box::new(|p| {
                p.insert("iat".into(), json!(SIGNER_NB - 1));
            }),
        ),
        (
            "claim-nbf-missing",
            "BadClaims",
            "no nbf",
            Box::new(|p| {
                p.remove("nbf");
            }),
        ),
        (
            "claim-nbf-future",
            "TokenNotYetValid",
            "nbf tomorrow",
            Box::new(|p| {
                p.insert("nbf".into(), json!(NOW + DAY));
            }),
        ),
        (
            "claim-exp-past",
            "TokenExpired",
            "exp yesterday",
            Box::new(|p| {
                p.insert("exp".into(), json!(NOW - DAY));
            }),
        ),
        (
            "claim-exp-null",
            "ok",
            "exp null reads as absent: a perpetual token (still bounded by its signer)",
            Box::new(|p| {
                p.insert("exp".into(), Value::Null);
            }),
        ),
        (
            "claim-exp-outlives-signer",
            "TokenOutlivesSigner",
            "exp one second after the signer's notAfter",
            Box::new(|p| {
                p.insert("exp".into(), json!(SIGNER_NA + 1));
            }),
        ),
        (
            "claim-exp-i64-max",
            "TokenOutlivesSigner",
            "exp at i64::MAX: no overflow",
            Box::new(|p| {
                p.insert("exp".into(), json!(i64::MAX));
            }),
        ),
        (
            "claim-exp-u64",
            "BadClaims",
            "exp beyond i64",
            Box::new(|p| {
                p.insert("exp".into(), json!(u64::MAX));
            }),
        ),
        (
            "claim-tka-missing",
            "BadClaims",
            "no tka object",
            Box::new(|p| {
                p.remove("tka");
            }),
        ),
        (
            "claim-tka-v2",
            "BadClaims",
            "tka claims version 2",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("v".into(), json!(2));
                })
            }),
        ),
        (
            "claim-tka-grace-negative",
            "BadClaims",
            "negative grace",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("grace".into(), json!(-1));
                })
            }),
        ),
        (
            "claim-tka-grace-huge",
            "ok",
            "grace at i64::MAX: exp + grace saturates, no overflow",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("grace".into(), json!(i64::MAX));
                })
            }),
        ),
        (
            "claim-tka-match-invalid",
            "BadClaims",
            "match rule \"some\"",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("match".into(), json!("some"));
                })
            }),
        ),
        (
            "claim-tka-match-missing",
            "BadClaims",
            "no match rule",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.remove("match");
                })
            }),
        ),
        (
            "claim-tka-features-string",
            "BadClaims",
            "features is a string, not an array",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("features".into(), json!("reports,export"));
                })
            }),
        ),
        (
            "claim-tka-components-swapped",
            "WrongMachine",
            "every bound component hash (and the CMID) replaced by another machine's",
            Box::new(|p| {
                let other = other_machine();
                p.insert("sub".into(), json!(other.cmid()));
                edit_tka(p, |t| {
                    t.insert("components".into(), serde_json::to_value(other.components()).unwrap());
                })
            }),
        ),
        (
            "claim-tka-edition-number",
            "BadClaims",
            "edition is a number",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("edition".into(), json!(2));
                })
            }),
        ),
        (
            "claim-tka-entitlement-object",
            "BadClaims",
            "entitlement is an object",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("entitlement".into(), json!({"id": 1}));
                })
            }),
        ),
        (
            "claim-tka-renew-after-string",
            "BadClaims",
            "renew_after is a string",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("renew_after".into(), json!("soon"));
                })
            }),
        ),
        (
            "claim-tka-features-extra",
            "ok",
            "features edited to add one the customer did not buy: accepted, because the signer signed it (this is what re-signing means)",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("features".into(), json!(["reports", "export", "everything"]));
                })
            }),
        ),
        (
            "claim-tka-component-bad-shape",
            "BadClaims",
            "a component without its hash",
            Box::new(|p| {
                edit_tka(p, |t| {
                    t.insert("components".into(), json!([{"k": "mid"}]));
                })
            }),
        ),
    ];
    for (name, expect, comment, edit) in cases {
        let t = g.resign(name, |_, p| edit(p));
        g.add(
            name,
            expect,
            &format!("{comment}; re-signed by the signer, so this is the only defect"),
            Ctx::default(),
            t,
        );
    }
    let t = g.resign("claim-sub-other-cmid", |_, p| {
        p.insert("sub".into(), json!(other_machine().cmid()));
    });
    g.add(
        "claim-sub-other-cmid",
        "ImpossibleBinding",
        "sub is not the CMID of the bound components (refused before the machine is compared)",
        Ctx { machine: format!("cmid:{}", machine().cmid()), ..Ctx::default() },
        t,
    );
    let t = g.resign("claim-sub-malformed-cmid", |_, p| {
        p.insert("sub".into(), json!("AAAA-BBBB-CCCC-DDDD-E"));
    });
    g.add(
        "claim-sub-malformed-cmid",
        "ImpossibleBinding",
        "sub is not a well-formed CMID (refused before the machine is compared)",
        Ctx { machine: format!("cmid:{}", machine().cmid()), ..Ctx::default() },
        t,
    );
    let t = g.good();
    g.add(
        "claim-jti-revoked",
        "TokenRevoked",
        "the serial is on an installed token revocation list",
        Ctx { revoked: vec![SERIAL.into()], ..Ctx::default() },
        t,
    );
    let t = g.good();
    g.add(
        "claim-product-unexpected",
        "WrongProduct",
        "the machine expects another product",
        Ctx { product: Some("other-product".into()), ..Ctx::default() },
        t,
    );
}

fn machines(g: &mut Gen) {
    let with_rule = |g: &Gen, rule: MatchRule| {
        g.resign(&format!("match-{rule}"), |_, p| {
            edit_tka(p, |t| {
                t.insert("match".into(), serde_json::to_value(rule).unwrap());
            })
        })
    };
    let all = with_rule(g, MatchRule::All);
    let most = g.good();
    let two = with_rule(g, MatchRule::AtLeast(2));
    let nine = with_rule(g, MatchRule::AtLeast(9));
    let cases: [(&str, &str, &str, &str, &String); 13] = [
        ("machine-all-same", "ok", "all: the same machine", "fixture", &all),
        ("machine-all-one-changed", "WrongMachine", "all: one NIC replaced", "fixture-changed=mac", &all),
        ("machine-most-same", "ok", "most: the same machine", "fixture", &most),
        (
            "machine-most-two-changed",
            "ok",
            "most: machine-id and root filesystem changed (reinstall), 3 of 5 still match with the DMI anchor",
            "fixture-changed=mid,rfs",
            &most,
        ),
        ("machine-most-three-changed", "WrongMachine", "most: 2 of 5 match", "fixture-changed=mid,bsn,rfs", &most),
        (
            "machine-most-anchor-changed",
            "WrongMachine",
            "most: 4 of 5 match but the DMI UUID (hardware anchor) changed: a cloned disk",
            "fixture-changed=dmi",
            &most,
        ),
        (
            "machine-most-missing-kinds",
            "WrongMachine",
            "most: this machine cannot read DMI or the board serial (missing counts as changed)",
            "fixture-without=dmi,bsn",
            &most,
        ),
        ("machine-most-other", "WrongMachine", "most: another machine entirely", "other", &most),
        (
            "machine-n2-three-changed",
            "ok",
            "N=2: 2 of 5 match, no anchor requirement",
            "fixture-changed=dmi,bsn,mac",
            &two,
        ),
        ("machine-n2-four-changed", "WrongMachine", "N=2: 1 of 5 matches", "fixture-changed=dmi,bsn,mac,rfs", &two),
        ("machine-n9-clamped-same", "ok", "N=9 is clamped to the 5 bound votes: same machine", "fixture", &nine),
        (
            "machine-n9-clamped-one-changed",
            "WrongMachine",
            "N=9 clamped to 5: behaves as all",
            "fixture-changed=rfs",
            &nine,
        ),
        ("machine-skip", "ok", "no machine check (issuer-side inspection)", "skip", &most),
    ];
    for (name, expect, comment, m, t) in cases {
        let t = t.clone();
        g.add(name, expect, comment, on_machine(m), t);
    }
    let no_components = g.resign("machine-cmid-only", |_, p| {
        edit_tka(p, |t| {
            t.insert("components".into(), json!([]));
        })
    });
    g.add(
        "machine-no-components-same-cmid",
        "ImpossibleBinding",
        "a token without components (it used to bind by CMID alone): no issuer signs it",
        Ctx::default(),
        no_components.clone(),
    );
    g.add(
        "machine-no-components-other",
        "ImpossibleBinding",
        "a token without components on another machine: refused for its binding, before any comparison",
        on_machine("other"),
        no_components,
    );
}

fn time_edges(g: &mut Gen) {
    let t = g.good();
    let exp = ISSUED + LIFETIME;
    g.add("time-exactly-nbf", "ok", "now == nbf: valid (nbf <= now)", at(ISSUED), t.clone());
    g.add("time-one-second-before-nbf", "TokenNotYetValid", "now == nbf - 1", at(ISSUED - 1), t.clone());
    g.add("time-one-second-before-exp", "ok", "now == exp - 1", at(exp - 1), t.clone());
    g.add("time-exactly-exp", "TokenExpired", "now == exp: expired (now < exp required)", at(exp), t.clone());
    let graced = g.resign("time-grace", |_, p| {
        edit_tka(p, |t| {
            t.insert("grace".into(), json!(7 * DAY));
        })
    });
    g.add(
        "time-grace-exactly-exp",
        "ok",
        "now == exp with 7 days of grace: accepted, reported in grace",
        at(exp),
        graced.clone(),
    );
    g.add("time-grace-last-second", "ok", "now == exp + grace - 1", at(exp + 7 * DAY - 1), graced.clone());
    g.add("time-grace-over", "TokenExpired", "now == exp + grace", at(exp + 7 * DAY), graced);
    let future = g.resign("time-iat-skew", |_, p| {
        p.insert("iat".into(), json!(NOW + 300));
        p.insert("nbf".into(), json!(NOW - 30));
    });
    g.add(
        "time-iat-within-skew",
        "ok",
        "iat 300 s ahead of now: within the allowed issuer/machine skew",
        Ctx::default(),
        future,
    );
    let future = g.resign("time-iat-beyond-skew", |_, p| {
        p.insert("iat".into(), json!(NOW + 301));
        p.insert("nbf".into(), json!(NOW - 30));
    });
    g.add("time-iat-beyond-skew", "IssuedInFuture", "iat 301 s ahead of now", Ctx::default(), future);
    g.add(
        "clock-rollback",
        "ClockRollback",
        "the store has seen a time 2 days later than now (tolerance 1 day)",
        Ctx { clock: Some((NOW + 2 * DAY, DAY)), ..Ctx::default() },
        t.clone(),
    );
    g.add(
        "clock-at-tolerance",
        "ok",
        "the store has seen exactly now + tolerance: still accepted",
        Ctx { clock: Some((NOW + DAY, DAY)), ..Ctx::default() },
        t,
    );
}

// ---------------------------------------------------------------------------
// Rendering and the up-to-date check.

/// The exact reason (the error's text) each refusal vector is refused for:
/// a hand label checked against the comment, so a vector refused for
/// another reason of the same kind fails (`tests/vectors.rs`).
fn reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "alg-eddsa" => "algorithm \"EdDSA\" is not allowed: expected PS256 or RS256",
        "alg-es256" => "algorithm \"ES256\" is not allowed: expected PS256 or RS256",
        "alg-hs256-public-key-as-secret" => "algorithm \"HS256\" is not allowed: expected PS256 or RS256",
        "alg-missing" => "algorithm \"(absent)\" is not allowed: expected PS256 or RS256",
        "alg-none-capitalised" => "algorithm \"None\" is not allowed: expected PS256 or RS256",
        "alg-none" => "algorithm \"none\" is not allowed: expected PS256 or RS256",
        "alg-not-a-string" => "algorithm \"256\" is not allowed: expected PS256 or RS256",
        "alg-ps256-relabelled-rs256" => "token signature does not verify with the signer certificate's key",
        "alg-ps256-salt-length-0" => "token signature does not verify with the signer certificate's key",
        "alg-ps384" => "algorithm \"PS384\" is not allowed: expected PS256 or RS256",
        "alg-rs256-relabelled-ps256" => "token signature does not verify with the signer certificate's key",
        "alg-rs512" => "algorithm \"RS512\" is not allowed: expected PS256 or RS256",
        "cert-intermediate-bad-signature" => "certificate CN=Vector Issuing CA,O=tka vectors has a signature its issuer did not make",
        "cert-intermediate-ca-false" => "certificate CN=Intermediate CA FALSE,O=tka vectors issues certificates but is not a CA",
        "cert-intermediate-expired" => "certificate CN=Expired Intermediate,O=tka vectors expired at 2027-01-14T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "cert-intermediate-no-key-cert-sign" => "CA certificate CN=Intermediate Without keyCertSign,O=tka vectors lacks the keyCertSign key usage",
        "cert-intermediate-not-yet-valid" => "certificate CN=Future Intermediate,O=tka vectors is not valid before 2027-01-16T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "cert-intermediate-signs-token" => "token signed by CA certificate CN=Vector Issuing CA,O=tka vectors: only token-signer certificates may sign tokens",
        "cert-intermediate-unknown-critical" => "certificate CN=Intermediate With Unknown Critical,O=tka vectors has unknown critical extension 1.3.6.1.4.1.55555.1.1",
        "cert-path-len-exceeded" => "chain is longer than the path length CA CN=Vector Issuing CA,O=tka vectors allows",
        "cert-root-expired" => "certificate CN=Signer Under Expired Root,O=tka vectors expired at 2027-01-13T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "cert-signer-bad-signature" => "certificate CN=Forged Signer,O=tka vectors has a signature its issuer did not make",
        "cert-signer-expired" => "certificate CN=Expired Signer,O=tka vectors expired at 2027-01-14T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "cert-signer-is-ca" => "token signed by CA certificate CN=Signer That Is A CA,O=tka vectors: only token-signer certificates may sign tokens",
        "cert-signer-no-digital-signature" => "signer certificate CN=Signer Without digitalSignature,O=tka vectors lacks the digitalSignature key usage",
        "cert-signer-no-eku" => "certificate CN=Signer Without EKU,O=tka vectors lacks the tka token-signing extended key usage",
        "cert-signer-not-yet-valid" => "certificate CN=Future Signer,O=tka vectors is not valid before 2027-01-16T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "cert-signer-revoked" => "certificate CN=Vector Signer,O=tka vectors (serial 40000000000000000000000000000003) is revoked",
        "cert-signer-rsa-1024" => "certificate CN=Weak Signer,O=tka vectors: RSA key of 1024 bits is below the 2048-bit minimum",
        "cert-signer-unknown-critical" => "certificate CN=Signer With Unknown Critical,O=tka vectors has unknown critical extension 1.3.6.1.4.1.55555.1.1",
        "chain-issuer-subject-mismatch" => "certificate CN=Vector Signer,O=tka vectors: issuer CN=Vector Issuing CA,O=tka vectors does not match the next certificate's subject CN=Vector Root,O=tka vectors",
        "chain-missing-intermediate" => "certificate chain does not lead to a trusted root (ends at issuer CN=Vector Issuing CA,O=tka vectors)",
        "chain-no-trusted-roots" => "certificate chain does not lead to a trusted root (ends at issuer CN=Vector Root,O=tka vectors)",
        "chain-too-long" => "certificate chain: 6 certificates, more than the 5 allowed",
        "chain-unrelated-after-root" => "certificate CN=Vector Root,O=tka vectors: x5c continues past the trusted root with a certificate that does not certify the one before it",
        "chain-untrusted-root-same-name" => "certificate chain does not lead to a trusted root (ends at issuer CN=Vector Root,O=tka vectors)",
        "chain-wrong-order" => "certificate CN=Vector Signer,O=tka vectors: x5c continues past the trusted root with a certificate that does not certify the one before it",
        "claim-aud-array" => "invalid token claims: invalid type: sequence, expected a string",
        "claim-aud-missing" => "invalid token claims: missing field `aud`",
        "claim-aud-other-product" => "wrong product: expected \"example-pro\", token is for \"other-product\"",
        "claim-exp-i64-max" => "token valid until @9223372036854775807 outlives its signer certificate (expires 2027-12-16T08:00:00Z)",
        "claim-exp-outlives-signer" => "token valid until 2027-12-16T08:00:01Z outlives its signer certificate (expires 2027-12-16T08:00:00Z)",
        "claim-exp-past" => "token expired at 2027-01-14T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "claim-exp-u64" => "invalid token claims: invalid value: integer `18446744073709551615`, expected i64",
        "claim-iat-before-signer" => "invalid token claims: token claims to be issued before its signer certificate existed",
        "claim-iat-float" => "invalid token claims: invalid type: floating point `1799999970.5`, expected i64",
        "claim-iat-in-future" => "token was issued at 2027-01-15T09:00:00Z, after now (2027-01-15T08:00:00Z): check the system clock",
        "claim-iat-missing" => "invalid token claims: missing field `iat`",
        "claim-iat-string" => "invalid token claims: invalid type: string \"2027-01-15T08:00:00Z\", expected i64",
        "claim-jti-missing" => "invalid token claims: missing field `jti`",
        "claim-jti-number" => "invalid token claims: invalid type: integer `1`, expected a string",
        "claim-jti-revoked" => "token 7e57ec7012345678900000000000c0de is revoked",
        "claim-nbf-future" => "token is not valid before 2027-01-16T08:00:00Z, now is 2027-01-15T08:00:00Z",
        "claim-nbf-missing" => "invalid token claims: missing field `nbf`",
        "claim-product-unexpected" => "wrong product: expected \"other-product\", token is for \"example-pro\"",
        "claim-sub-missing" => "invalid token claims: missing field `sub`",
        "claim-sub-malformed-cmid" => "token binding refused: malformed CMID \"AAAA-BBBB-CCCC-DDDD-E\"",
        "claim-sub-other-cmid" => {
            "token binding refused: the CMID BBMY-0NYG-FDQA-MY1P-H does not match the components (which give 4V0N-SNC2-GRPH-ZSAE-M)"
        }
        "claim-tka-component-bad-shape" => "invalid token claims: missing field `h`",
        "claim-tka-components-swapped" => "token is bound to machine BBMY-0NYG-FDQA-MY1P-H, this machine is 4V0N-SNC2-GRPH-ZSAE-M (0 of 4 components match, 3 required; changed: dmi, bsn, mac, rfs; hardware anchor (most of dmi, bsn, mac; dmi required) does not match)",
        "claim-tka-edition-number" => "invalid token claims: invalid type: integer `2`, expected a string",
        "claim-tka-entitlement-object" => "invalid token claims: invalid type: map, expected a string",
        "claim-tka-features-string" => "invalid token claims: invalid type: string \"reports,export\", expected a sequence",
        "claim-tka-grace-negative" => "invalid token claims: negative grace period",
        "claim-tka-match-invalid" => "invalid token claims: invalid match rule \"some\": expected all, most or a number of components",
        "claim-tka-match-missing" => "invalid token claims: missing field `match`",
        "claim-tka-missing" => "invalid token claims: missing field `tka`",
        "claim-tka-renew-after-string" => "invalid token claims: invalid type: string \"soon\", expected i64",
        "claim-tka-v2" => "invalid token claims: unsupported tka claims version 2",
        "clock-rollback" => "clock moved backwards: now is 2027-01-15T08:00:00Z, but this store has seen 2027-01-17T08:00:00Z; fix the system clock",
        "crit-b64-false" => "unknown critical header extension \"b64\"",
        "crit-empty" => "unknown critical header extension \"[]\"",
        "crit-unknown" => "unknown critical header extension \"exp\"",
        "dup-header-alg-escaped" => "duplicate JSON member \"alg\"",
        "dup-header-alg" => "duplicate JSON member \"alg\"",
        "dup-header-key-spelling-a-position" => "duplicate JSON member \"x at line 1 column 2\"",
        "dup-payload-aud" => "duplicate JSON member \"aud\"",
        "dup-payload-nested-match" => "duplicate JSON member \"match\"",
        "header-jku-null" => "header parameter \"jku\" is refused: the key must come from the x5c chain to a trusted root",
        "header-jku" => "header parameter \"jku\" is refused: the key must come from the x5c chain to a trusted root",
        "header-jwk" => "header parameter \"jwk\" is refused: the key must come from the x5c chain to a trusted root",
        "header-x5u" => "header parameter \"x5u\" is refused: the key must come from the x5c chain to a trusted root",
        "json-header-array" => "malformed token header: not a JSON object",
        "json-header-deeply-nested" => "malformed token header: invalid JSON: recursion limit exceeded at line 1 column 146",
        "json-header-empty" => "malformed token header: invalid JSON: EOF while parsing a value at line 1 column 0",
        "json-header-not-utf8" => "malformed token header: not UTF-8",
        "json-header-overlong-utf8" => "malformed token header: not UTF-8",
        "json-header-trailing-data" => "malformed token header: trailing data after the JSON value",
        "json-nesting-within-limit" => "invalid token claims: invalid type: sequence, expected a string",
        "json-payload-array" => "invalid token claims: invalid type: integer `1`, expected a string",
        "json-payload-deeply-nested" => "malformed token payload: invalid JSON: recursion limit exceeded at line 1 column 638",
        "json-payload-not-utf8" => "malformed token payload: not UTF-8",
        "json-payload-number-out-of-range" => "malformed token payload: invalid JSON: number out of range at line 1 column 12",
        "jwe-five-parts" => "malformed token: expected 3 dot-separated parts (JWS compact form), found 5",
        "kid-mismatch" => "malformed token header: kid does not match the x5c signer certificate",
        "kid-not-a-string" => "malformed token header: kid is not a string",
        "kid-path-traversal" => "malformed token header: kid does not match the x5c signer certificate",
        "leading-space" => "malformed token header: not base64url: Invalid symbol 32, offset 0.",
        "machine-all-one-changed" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is 4V0N-SNC2-GRPH-ZSAE-M (4 of 5 components match, 5 required; changed: mac (not readable here: mac))",
        "machine-most-anchor-changed" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is 474T-6W85-2QAS-3M1H-6 (4 of 5 components match, 3 required; changed: dmi; hardware anchor (most of dmi, bsn, mac; dmi required) does not match)",
        "machine-most-missing-kinds" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is V0A3-CR5M-HRBQ-PPM1-N (3 of 5 components match, 3 required; changed: dmi, bsn (not readable here: dmi, bsn); hardware anchor (most of dmi, bsn, mac; dmi required) does not match)",
        "machine-most-other" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is BBMY-0NYG-FDQA-MY1P-H (0 of 5 components match, 3 required; changed: mid, dmi, bsn, mac, rfs (not readable here: mid); hardware anchor (most of dmi, bsn, mac; dmi required) does not match)",
        "machine-most-three-changed" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is YAKB-DYJF-H598-TN2C-R (2 of 5 components match, 3 required; changed: mid, bsn, rfs (not readable here: mid))",
        "machine-n2-four-changed" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is 474T-6W85-2QAS-3M1H-6 (1 of 5 components match, 2 required; changed: dmi, bsn, mac, rfs (not readable here: mac))",
        "machine-n9-clamped-one-changed" => "token is bound to machine 4V0N-SNC2-GRPH-ZSAE-M, this machine is 4V0N-SNC2-GRPH-ZSAE-M (4 of 5 components match, 5 required; changed: rfs)",
        "machine-no-components-other" => "token binding refused: the binding has no components",
        "machine-no-components-same-cmid" => "token binding refused: the binding has no components",
        "non-canonical-base64" => "malformed token signature: not base64url: Invalid last symbol 66, offset 341.",
        "padding" => "malformed token signature: not base64url: Invalid padding",
        "parts-empty" => "malformed token: expected 3 dot-separated parts (JWS compact form), found 1",
        "parts-four" => "malformed token: expected 3 dot-separated parts (JWS compact form), found 4",
        "parts-two" => "malformed token: expected 3 dot-separated parts (JWS compact form), found 2",
        "sig-all-ff" => "token signature does not verify with the signer certificate's key",
        "sig-all-zero" => "token signature does not verify with the signer certificate's key",
        "sig-bit-flipped" => "token signature does not verify with the signer certificate's key",
        "sig-empty" => "token signature does not verify with the signer certificate's key",
        "sig-header-tampered" => "token signature does not verify with the signer certificate's key",
        "sig-leading-zero" => "token signature does not verify with the signer certificate's key",
        "sig-other-key" => "token signature does not verify with the signer certificate's key",
        "sig-payload-tampered" => "token signature does not verify with the signer certificate's key",
        "sig-truncated" => "token signature does not verify with the signer certificate's key",
        "size-exactly-64k" => "malformed token: expected 3 dot-separated parts (JWS compact form), found 1",
        "size-over-64k" => "token is larger than the 65536-byte limit",
        "space-inside-payload" => "malformed token payload: not base64url: Invalid symbol 32, offset 10.",
        "standard-base64-alphabet" => "malformed token payload: not base64url: Invalid symbol 43, offset 10.",
        "time-exactly-exp" => "token expired at 2027-07-14T07:59:30Z, now is 2027-07-14T07:59:30Z",
        "time-grace-over" => "token expired at 2027-07-14T07:59:30Z (grace ended 2027-07-21T07:59:30Z), now is 2027-07-21T07:59:30Z",
        "time-iat-beyond-skew" => "token was issued at 2027-01-15T08:05:01Z, after now (2027-01-15T08:00:00Z): check the system clock",
        "time-one-second-before-nbf" => "token is not valid before 2027-01-15T07:59:30Z, now is 2027-01-15T07:59:29Z",
        "trailing-second-token" => "malformed token: expected 3 dot-separated parts (JWS compact form), found 5",
        "trailing-space" => "malformed token signature: not base64url: Invalid symbol 32, offset 342.",
        "trailing-tab" => "malformed token signature: not base64url: Invalid symbol 9, offset 342.",
        "trailing-text" => "malformed token signature: not base64url: Invalid symbol 32, offset 342.",
        "typ-jwt" => "wrong typ: expected \"tka-token+jwt\", found \"JWT\"",
        "typ-missing" => "wrong typ: expected \"tka-token+jwt\", found \"\"",
        "typ-not-a-string" => "wrong typ: expected \"tka-token+jwt\", found \"1\"",
        "typ-revocation-list" => "wrong typ: expected \"tka-token+jwt\", found \"tka-revocations+jwt\"",
        "x5c-base64url" => "malformed token header: x5c entry is not base64: Invalid symbol 45, offset 341.",
        "x5c-empty" => "malformed token header: x5c must be a non-empty array",
        "x5c-garbage-der" => "certificate (unparsed): not X.509 DER: Parsing Error: NomError(Eof)",
        "x5c-missing-kid-unknown" => "the token carries no certificate chain and its signer certificate (kid cbd75c26a5a2f8c391fb6a3e63dc31e113a7cb904e021838352377548c15cbf7) is not among the certificates known here; the issuer's certificate chain must be added once",
        "x5c-missing" => "no x5c certificate chain and no kid in the token header: nothing names the signer",
        "x5c-not-an-array" => "malformed token header: x5c must be a non-empty array",
        "x5c-trailing-bytes" => "certificate (unparsed): trailing bytes after the certificate",
        _ => return None,
    })
}

fn render(v: &Vector) -> String {
    let mut s = format!("expect: {}\n", v.expect);
    if let Some(w) = v.what {
        s.push_str(&format!("what: {w}\n"));
    }
    match (v.expect.as_str(), reason(&v.name)) {
        ("ok", None) => {}
        ("ok", Some(_)) => panic!("{}: an accepted vector has no reason", v.name),
        (_, Some(r)) => s.push_str(&format!("reason: {r}\n")),
        (_, None) => panic!("{}: a refusal vector needs its exact reason in reason()", v.name),
    }
    s.push_str(&format!("comment: {}\n", v.comment));
    s.push_str(&format!("now: {}\n", v.ctx.now));
    s.push_str(&format!("product: {}\n", v.ctx.product.as_deref().unwrap_or("*")));
    s.push_str(&format!("machine: {}\n", v.ctx.machine));
    s.push_str(&format!("roots: {}\n", v.ctx.roots.join(",")));
    if !v.ctx.crls.is_empty() {
        s.push_str(&format!("crls: {}\n", v.ctx.crls.join(",")));
    }
    if let Some((hw, tol)) = v.ctx.clock {
        s.push_str(&format!("clock: {hw} {tol}\n"));
    }
    if !v.ctx.revoked.is_empty() {
        s.push_str(&format!("revoked: {}\n", v.ctx.revoked.join(",")));
    }
    s.push('\n');
    s.push_str(&v.token);
    s.push('\n');
    s
}

/// Every file the corpus consists of, relative to tests/vectors/.
fn files() -> BTreeMap<String, String> {
    let (pki, vectors) = generate();
    let mut out = BTreeMap::new();
    for (name, der) in &pki.certs {
        out.insert(format!("pki/{name}.pem"), pem_cert(der));
    }
    for (name, der) in &pki.crls {
        out.insert(format!("pki/{name}.crl.pem"), pem_crl(der));
    }
    for v in &vectors {
        assert!(out.insert(format!("{}.txt", v.name), render(v)).is_none(), "duplicate vector name {}", v.name);
    }
    out
}

fn committed() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["", "pki"] {
        let d = dir().join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if sub.is_empty() { name } else { format!("{sub}/{name}") };
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn generation_is_deterministic() {
    // Two runs in one process give the same bytes (PS256 salts included).
    assert!(files() == files(), "the generator is not deterministic");
}

#[test]
fn committed_vectors_are_up_to_date() {
    let want = files();
    if std::env::var_os("TKA_REGENERATE_VECTORS").is_some() {
        let _ = std::fs::remove_dir_all(dir());
        std::fs::create_dir_all(dir().join("pki")).unwrap();
        for (rel, text) in &want {
            std::fs::write(dir().join(rel), text).unwrap();
        }
        eprintln!("wrote {} files to {}", want.len(), dir().display());
        return;
    }
    let have = committed();
    let mut problems = Vec::new();
    for (rel, text) in &want {
        match have.get(rel) {
            None => problems.push(format!("missing: tests/vectors/{rel}")),
            Some(b) if b != text.as_bytes() => problems.push(format!("stale: tests/vectors/{rel}")),
            Some(_) => {}
        }
    }
    for rel in have.keys() {
        if !want.contains_key(rel) {
            problems.push(format!("not produced by the generator: tests/vectors/{rel}"));
        }
    }
    assert!(problems.is_empty(), "{}\nrun scripts/gen-vectors.sh to regenerate", problems.join("\n"));
}
