//! JWS compact serialization (RFC 7515) with the checks of verification
//! steps 1 and 2: bounded size, three parts, strict base64url, UTF-8 JSON
//! without duplicate members, an allow-listed `alg`, the expected `typ`, no
//! header that lets the token choose its own key, no unknown `crit`.

use crate::core::error::{Error, Result, VerifyError};
use crate::core::json;
use crate::core::keys::{SignatureAlgorithm, Signer};
use base64::Engine;
use serde_json::{Map, Value};

/// Largest token or revocation list accepted, in bytes.
pub const MAX_JWS_SIZE: usize = 64 * 1024;

/// `typ` of an activation token (RFC 8725 §3.11 explicit typing).
pub const TOKEN_TYP: &str = "tka-token+jwt";
/// `typ` of a token revocation list.
pub const REVOCATION_TYP: &str = "tka-revocations+jwt";

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Header parameters that would let a token name its own verification key.
const FORBIDDEN_HEADERS: [&str; 3] = ["jwk", "jku", "x5u"];

/// A decoded JWS whose header passed step 2. The signature is NOT verified yet.
#[derive(Debug, Clone)]
pub struct DecodedJws {
    /// The protected header.
    pub header: Map<String, Value>,
    /// The payload, parsed as strict JSON.
    pub payload: Value,
    /// The pinned algorithm.
    pub alg: SignatureAlgorithm,
    /// `x5c`: DER certificates, signer first. Empty for a compact token
    /// (no `x5c` in the header, a `kid` naming the signer certificate);
    /// an `x5c` that is present is never empty.
    pub x5c: Vec<Vec<u8>>,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`.
    pub signing_input: Vec<u8>,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

fn malformed(what: &'static str, detail: impl Into<String>) -> VerifyError {
    VerifyError::Malformed { what, detail: detail.into() }
}

/// Strict base64url without padding (RFC 7515 §2): no `=`, no whitespace,
/// no standard-alphabet characters, canonical trailing bits.
fn b64url_decode(part: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    B64URL.decode(part).map_err(|e| malformed(what, format!("not base64url: {e}")))
}

/// The three parts of a JWS compact serialization, base64url-decoded.
struct Compact {
    header: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
    signing_input: Vec<u8>,
}

/// Step 1, first two rows: bounded size, exactly three parts, strict
/// base64url. Header and payload stay bytes.
fn split_compact(text: &str) -> Result<Compact, VerifyError> {
    if text.len() > MAX_JWS_SIZE {
        return Err(VerifyError::TooLarge { what: "token", limit: MAX_JWS_SIZE });
    }
    let text = text.trim_end_matches(['\n', '\r']);
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 {
        return Err(malformed(
            "token",
            format!("expected 3 dot-separated parts (JWS compact form), found {}", parts.len()),
        ));
    }
    let header = b64url_decode(parts[0], "token header")?;
    let payload = b64url_decode(parts[1], "token payload")?;
    let signature = b64url_decode(parts[2], "token signature")?;
    let signing_input = format!("{}.{}", parts[0], parts[1]).into_bytes();
    Ok(Compact { header, payload, signature, signing_input })
}

/// A header part decoded on its own (see [`decode_body_payload`]): the
/// checks [`decode`] makes of the header, with its errors. Returns `kid`
/// and `x5c`.
#[cfg(feature = "issuer")]
pub(crate) fn decode_header_part(
    part: &str,
    expected_typ: &'static str,
) -> Result<(Option<String>, Vec<Vec<u8>>), VerifyError> {
    let header = b64url_decode(part, "token header")?;
    header_well_formed(&header)?;
    let header = header_strict(&header)?;
    check_alg(&header)?;
    check_typ(&header, expected_typ)?;
    check_no_key_headers(&header)?;
    check_crit(&header)?;
    let x5c = parse_x5c(&header)?;
    Ok((check_kid_type(&header)?, x5c))
}

/// The payload of a token's body (`BASE64URL(payload) '.'
/// BASE64URL(signature)`) whose header is decoded on its own (the same
/// header, with its chain, stands before many bodies in the ledger): the
/// checks [`decode`] makes of these two parts, with its errors.
#[cfg(feature = "issuer")]
pub(crate) fn decode_body_payload(body: &str) -> Result<Value, VerifyError> {
    let parts: Vec<&str> = body.split('.').collect();
    if parts.len() != 2 {
        return Err(malformed(
            "token",
            format!("expected 3 dot-separated parts (JWS compact form), found {}", parts.len() + 1),
        ));
    }
    let payload = b64url_decode(parts[0], "token payload")?;
    b64url_decode(parts[1], "token signature")?;
    json::parse_well_formed(&payload, "token payload")?;
    json::parse(&payload, "token payload")
}

/// Step 1, third row for the header: UTF-8 JSON, and an object.
fn header_well_formed(header: &[u8]) -> Result<(), VerifyError> {
    match json::parse_well_formed(header, "token header")? {
        Value::Object(_) => Ok(()),
        _ => Err(malformed("token header", "not a JSON object")),
    }
}

/// Step 1, fourth row for the header: no duplicate member names (the
/// header is well-formed already).
fn header_strict(header: &[u8]) -> Result<Map<String, Value>, VerifyError> {
    match json::parse(header, "token header")? {
        Value::Object(m) => Ok(m),
        _ => Err(malformed("token header", "not a JSON object")),
    }
}

/// Step 1 and 2: decodes `text` and checks the header. `expected_typ` is
/// [`TOKEN_TYP`] or [`REVOCATION_TYP`]. The checks run in the order of the
/// table in docs/verification.md: every row for header and payload before
/// the next row.
pub fn decode(text: &str, expected_typ: &'static str) -> Result<DecodedJws, VerifyError> {
    // Step 1: bound, split, decode; both parts well-formed JSON before
    // either is searched for duplicate names.
    let parts = split_compact(text)?;
    header_well_formed(&parts.header)?;
    json::parse_well_formed(&parts.payload, "token payload")?;
    let header = header_strict(&parts.header)?;
    let payload = json::parse(&parts.payload, "token payload")?;

    // Step 2: header.
    let alg = check_alg(&header)?;
    check_typ(&header, expected_typ)?;
    check_no_key_headers(&header)?;
    check_crit(&header)?;
    let x5c = parse_x5c(&header)?;
    let kid = check_kid_type(&header)?;
    Ok(DecodedJws { header, payload, alg, x5c, kid, signing_input: parts.signing_input, signature: parts.signature })
}

/// RFC 7515 §4.1.4: `kid`, when present, is a string (whether it names the
/// signer certificate is checked in step 3).
fn check_kid_type(header: &Map<String, Value>) -> Result<Option<String>, VerifyError> {
    match header.get("kid") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed("token header", "kid is not a string")),
    }
}

/// What [`VerifyError::AlgorithmNotAllowed`] names when a header has no `alg`.
pub const ALG_ABSENT: &str = "(absent)";

/// RFC 8725 §3.1: the algorithm comes from an allow-list, never from the
/// token alone; `none`, HMAC and a header without `alg` are refused.
fn check_alg(header: &Map<String, Value>) -> Result<SignatureAlgorithm, VerifyError> {
    match header.get("alg") {
        Some(Value::String(a)) => {
            SignatureAlgorithm::from_jws_name(a).ok_or_else(|| VerifyError::AlgorithmNotAllowed { alg: a.clone() })
        }
        Some(other) => Err(VerifyError::AlgorithmNotAllowed { alg: other.to_string() }),
        None => Err(VerifyError::AlgorithmNotAllowed { alg: ALG_ABSENT.into() }),
    }
}

/// RFC 8725 §3.11: explicit typing, so one kind of JWS cannot be passed off as another.
fn check_typ(header: &Map<String, Value>, expected: &'static str) -> Result<(), VerifyError> {
    let found = match header.get("typ") {
        Some(Value::String(t)) => t.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let normalized = found.to_ascii_lowercase();
    let normalized = normalized.strip_prefix("application/").unwrap_or(&normalized);
    if normalized != expected {
        return Err(VerifyError::WrongType { expected, found });
    }
    Ok(())
}

/// RFC 8725 §3.10 / RFC 7515 §4.1.2-4.1.5: keys named by the token itself are not trusted.
fn check_no_key_headers(header: &Map<String, Value>) -> Result<(), VerifyError> {
    for name in FORBIDDEN_HEADERS {
        if header.contains_key(name) {
            return Err(VerifyError::ForbiddenHeader { name: name.into() });
        }
    }
    Ok(())
}

/// RFC 7515 §4.1.11: tka understands no extensions, so any `crit` is
/// refused, whatever its value (`[]` and a non-array too: a header that
/// says "critical" is never accepted).
fn check_crit(header: &Map<String, Value>) -> Result<(), VerifyError> {
    match header.get("crit") {
        None => Ok(()),
        Some(Value::Array(names)) if !names.is_empty() && names.iter().all(Value::is_string) => {
            Err(VerifyError::UnknownCritical {
                name: names.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            })
        }
        Some(other) => Err(VerifyError::UnknownCritical { name: other.to_string() }),
    }
}

/// RFC 7515 §4.1.6: `x5c` is an array of standard-base64 DER certificates.
/// A header without `x5c` is a compact token (empty result) when a `kid`
/// names its signer certificate, and [`VerifyError::MissingChain`] when
/// nothing does.
fn parse_x5c(header: &Map<String, Value>) -> Result<Vec<Vec<u8>>, VerifyError> {
    let arr = match header.get("x5c") {
        None if header.contains_key("kid") => return Ok(Vec::new()),
        None => return Err(VerifyError::MissingChain),
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(_) => return Err(malformed("token header", "x5c must be a non-empty array")),
    };
    if arr.len() > crate::core::pki::MAX_CHAIN_LEN {
        return Err(VerifyError::BadCertificate {
            subject: "chain".into(),
            detail: format!("{} certificates, more than the {} allowed", arr.len(), crate::core::pki::MAX_CHAIN_LEN),
        });
    }
    arr.iter()
        .map(|v| match v {
            Value::String(s) => {
                B64STD.decode(s).map_err(|e| malformed("token header", format!("x5c entry is not base64: {e}")))
            }
            _ => Err(malformed("token header", "x5c entry is not a string")),
        })
        .collect()
}

/// Signs `payload` as a JWS with `alg`, `typ`, `kid` and `x5c` (DER
/// certificates, signer first) in the protected header; an empty `x5c`
/// writes a compact header (no `x5c` member, see [`protected_header`]).
pub fn encode(
    payload: &Value,
    typ: &str,
    kid: &str,
    x5c: &[Vec<u8>],
    alg: SignatureAlgorithm,
    key: &dyn Signer,
) -> Result<String> {
    encode_with_header(&protected_header(typ, kid, x5c, alg)?, payload, alg, key)
}

/// The base64url protected header [`encode`] writes: `alg`, `typ`, `kid`
/// and `x5c`, in that order. A signer that signs many payloads encodes it
/// once and passes it to [`encode_with_header`].
///
/// An empty `x5c` gives the header of a *compact* token: `alg`, `typ` and
/// `kid` only. A verifier finds the signer certificate by `kid` (its
/// SHA-256 fingerprint) among certificates it already knows
/// (`VerifyContext::certificates`).
pub fn protected_header(typ: &str, kid: &str, x5c: &[Vec<u8>], alg: SignatureAlgorithm) -> Result<String> {
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(alg.jws_name().into()));
    header.insert("typ".into(), Value::String(typ.into()));
    header.insert("kid".into(), Value::String(kid.into()));
    if !x5c.is_empty() {
        header.insert("x5c".into(), Value::Array(x5c.iter().map(|c| Value::String(B64STD.encode(c))).collect()));
    }
    let h = serde_json::to_vec(&Value::Object(header)).map_err(|e| Error::format("token header", e))?;
    Ok(B64URL.encode(h))
}

/// A protected header (from [`protected_header`]) ready to sign many
/// payloads under: its text and the SHA-256 state over `header.`, which
/// [`encode_prepared`] continues with each payload instead of hashing the
/// header (with an `x5c` chain, most of the signing input) again.
#[derive(Clone)]
pub struct PreparedHeader {
    text: String,
    prefix: sha2::Sha256,
}

impl PreparedHeader {
    /// Prepares the base64url protected header `text`.
    pub fn new(text: String) -> Self {
        use sha2::Digest;
        let mut prefix = sha2::Sha256::new();
        prefix.update(text.as_bytes());
        prefix.update(b".");
        PreparedHeader { text, prefix }
    }

    /// The base64url protected header.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for PreparedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedHeader").field("text", &self.text).finish_non_exhaustive()
    }
}

/// [`encode_with_header`] under a [`PreparedHeader`] (with the same `alg`):
/// the same text, hashed from the header's saved state when the key signs
/// a digest ([`Signer::sign_sha256_digest`]), else signed as a message.
pub fn encode_prepared(
    header: &PreparedHeader,
    payload: &Value,
    alg: SignatureAlgorithm,
    key: &dyn Signer,
) -> Result<String> {
    use sha2::Digest;
    let p = serde_json::to_vec(payload).map_err(|e| Error::format("token payload", e))?;
    let mut text = String::with_capacity(header.text.len() + p.len() * 4 / 3 + 8 + 700);
    text.push_str(&header.text);
    text.push('.');
    B64URL.encode_string(&p, &mut text);
    let mut hash = header.prefix.clone();
    hash.update(&text.as_bytes()[header.text.len() + 1..]);
    let digest: [u8; 32] = hash.finalize().into();
    let sig = match key.sign_sha256_digest(alg, &digest) {
        Some(sig) => sig?,
        None => key.sign(alg, text.as_bytes())?,
    };
    text.push('.');
    B64URL.encode_string(sig, &mut text);
    Ok(text)
}

/// Signs `payload` under an already encoded protected header (from
/// [`protected_header`] with the same `alg`).
pub fn encode_with_header(header: &str, payload: &Value, alg: SignatureAlgorithm, key: &dyn Signer) -> Result<String> {
    let p = serde_json::to_vec(payload).map_err(|e| Error::format("token payload", e))?;
    let mut text = String::with_capacity(header.len() + p.len() * 4 / 3 + 8 + 700);
    text.push_str(header);
    text.push('.');
    B64URL.encode_string(&p, &mut text);
    let sig = key.sign(alg, text.as_bytes())?;
    text.push('.');
    B64URL.encode_string(sig, &mut text);
    Ok(text)
}

/// Verifies a JWS compact serialization against a pinned RSA public key and
/// returns the payload bytes (base64url-decoded, not parsed).
///
/// This is for external test vectors and embedders who pin a key instead of
/// a chain. It applies the same step 1 checks as [`decode`] (size bound,
/// three parts, strict base64url, UTF-8 JSON header without duplicate
/// members) and the same header checks except `typ` and `x5c`: `alg` must be
/// on the allow-list (PS256 with a 32-byte salt, or RS256) and, since a
/// pinned key is used with exactly one algorithm (RFC 8725 §3.1), equal to
/// `alg`; `jwk`/`jku`/`x5u` are refused and any `crit` is refused. The
/// signature is then verified with [`crate::core::keys::verify_signature`]. The
/// payload is returned as bytes because a general JWS payload need not be
/// JSON; activation tokens and revocation lists must still go through
/// [`decode`] and the chain checks.
pub fn verify_compact_with_key(
    text: &str,
    key: &rsa::PublicKey,
    alg: SignatureAlgorithm,
) -> Result<Vec<u8>, VerifyError> {
    let Compact { header, payload, signature, signing_input } = split_compact(text)?;
    header_well_formed(&header)?;
    let header = header_strict(&header)?;
    let found = check_alg(&header)?;
    if found != alg {
        return Err(VerifyError::AlgorithmNotAllowed { alg: found.jws_name().into() });
    }
    check_no_key_headers(&header)?;
    check_crit(&header)?;
    if crate::core::keys::verify_signature(key, alg, &signing_input, &signature) {
        Ok(payload)
    } else {
        Err(VerifyError::BadSignature)
    }
}
