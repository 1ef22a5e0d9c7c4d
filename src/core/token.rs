//! Activation tokens: claims, issuance and decoding.
//!
//! A token is a JWS (RFC 7515) compact serialization, PS256 by default,
//! whose protected header carries `alg`, `typ` (`tka-token+jwt`), `kid` (the
//! SHA-256 fingerprint of the signer certificate) and `x5c` (signer
//! certificate, then intermediates). Any JOSE library holding the signer
//! certificate can check the signature.

use crate::core::error::{Error, Result, VerifyError};
use crate::core::jws::{self, DecodedJws, TOKEN_TYP};
use crate::core::keys::{spki_der, SignatureAlgorithm, Signer};
use crate::core::machine::{ComponentHash, MatchRule};
use crate::core::pki::CertInfo;
use crate::core::request::ActivationRequest;
use serde::{Deserialize, Serialize};

/// The claims of an activation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Serial number of the token (32 hex digits).
    pub jti: String,
    /// The machine's CMID.
    pub sub: String,
    /// The product.
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds; absent for a perpetual token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// tka-specific claims.
    pub tka: TkaClaims,
}

/// The `tka` claim object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TkaClaims {
    /// Claims format version, 1.
    pub v: u8,
    /// Licensed features.
    #[serde(default)]
    pub features: Vec<String>,
    /// Edition name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<String>,
    /// Entitlement the token was counted against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<String>,
    /// Component hashes the token is bound to.
    #[serde(default)]
    pub components: Vec<ComponentHash>,
    /// How many components must still match.
    #[serde(rename = "match")]
    pub match_rule: MatchRule,
    /// When the machine should ask for a renewal, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_after: Option<i64>,
    /// Seconds after `exp` during which the token still activates (reported as grace).
    #[serde(default)]
    pub grace: i64,
    /// The issuer chose to bind without a hardware anchor or explicit
    /// identity (`--allow-weak-binding`); see [`crate::core::machine::check_binding`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weak_binding: bool,
}

/// How long a token lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLifetime {
    /// `exp = iat + days`.
    Days(u32),
    /// `exp = iat + seconds`; at least [`MIN_TOKEN_LIFETIME_SECS`].
    Seconds(u64),
    /// No `exp`: valid as long as its signer certificate chain is valid.
    Perpetual,
}

/// The shortest token lifetime the library signs: one minute.
pub const MIN_TOKEN_LIFETIME_SECS: u64 = 60;

impl TokenLifetime {
    /// The lifetime in seconds; `None` for [`TokenLifetime::Perpetual`].
    pub fn seconds(&self) -> Option<u64> {
        match *self {
            TokenLifetime::Days(d) => Some(u64::from(d) * crate::core::clock::DAY as u64),
            TokenLifetime::Seconds(s) => Some(s),
            TokenLifetime::Perpetual => None,
        }
    }
}

/// Issuance options beyond the request itself.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// Lifetime; default 180 days.
    pub lifetime: TokenLifetime,
    /// Licensed features.
    pub features: Vec<String>,
    /// Edition.
    pub edition: Option<String>,
    /// Entitlement id.
    pub entitlement: Option<String>,
    /// Match rule; `None` picks the default for the request's components.
    pub match_rule: Option<MatchRule>,
    /// Grace after expiry, seconds.
    pub grace_secs: u64,
    /// When the machine should renew, seconds after issuance; `None` is two
    /// thirds of the lifetime. Must fall before the token expires.
    pub renew_after_secs: Option<u64>,
    /// Signature algorithm; default PS256.
    pub alg: SignatureAlgorithm,
    /// Serial to use (re-issue); `None` makes a fresh random one.
    pub serial: Option<String>,
    /// Sign a weak binding (no hardware anchor, no explicit identity) instead
    /// of refusing it; the token records the choice.
    pub allow_weak_binding: bool,
}

impl Default for IssueOptions {
    fn default() -> Self {
        IssueOptions {
            lifetime: TokenLifetime::Days(180),
            features: Vec::new(),
            edition: None,
            entitlement: None,
            match_rule: None,
            grace_secs: 0,
            renew_after_secs: None,
            alg: SignatureAlgorithm::Ps256,
            serial: None,
            allow_weak_binding: false,
        }
    }
}

/// A signer certificate, its chain and its key, ready to issue tokens.
pub struct TokenSigner {
    key: Box<dyn Signer>,
    cert: CertInfo,
    x5c: Vec<Vec<u8>>,
    /// The base64url protected header of a token, per algorithm (PS256,
    /// RS256): the same for every token of this signer, encoded once.
    token_headers: [std::sync::OnceLock<String>; 2],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("cert", &self.cert.subject).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// `chain` is the signer certificate (DER) followed by its intermediates.
    /// Refuses a key that does not match the certificate and a certificate
    /// that is not a token signer.
    pub fn new(key: Box<dyn Signer>, chain: Vec<Vec<u8>>) -> Result<Self> {
        let first = chain.first().ok_or_else(|| Error::Usage("no signer certificate given".into()))?;
        let cert = CertInfo::parse(first)?;
        if spki_der(key.public_key()) != cert.spki_der {
            return Err(Error::Usage(format!("the signer key does not belong to certificate {}", cert.subject)));
        }
        if cert.is_ca || !cert.has_signer_eku() {
            return Err(Error::Refused(format!(
                "{} is not a token-signer certificate (CA:FALSE with the tka token-signing EKU); CA keys never sign tokens",
                cert.subject
            )));
        }
        for c in &chain[1..] {
            CertInfo::parse(c)?;
        }
        Ok(TokenSigner { key, cert, x5c: chain, token_headers: Default::default() })
    }

    /// The signer certificate.
    pub fn certificate(&self) -> &CertInfo {
        &self.cert
    }

    /// The signing key.
    pub fn key(&self) -> &dyn Signer {
        self.key.as_ref()
    }

    /// The x5c chain (DER, signer first).
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.x5c
    }

    /// Signs an arbitrary payload with this signer's header (`kid`, `x5c`).
    ///
    /// The text is what [`jws::encode`] gives; for tokens (`typ` is
    /// [`TOKEN_TYP`]) the protected header is encoded once per signer and
    /// algorithm instead of once per token.
    pub fn sign_payload(&self, payload: &serde_json::Value, typ: &str, alg: SignatureAlgorithm) -> Result<String> {
        if typ != TOKEN_TYP {
            return jws::encode(payload, typ, &self.cert.fingerprint, &self.x5c, alg, self.key.as_ref());
        }
        let slot = match alg {
            SignatureAlgorithm::Ps256 => &self.token_headers[0],
            SignatureAlgorithm::Rs256 => &self.token_headers[1],
        };
        let header = match slot.get() {
            Some(h) => h,
            None => {
                let h = jws::protected_header(typ, &self.cert.fingerprint, &self.x5c, alg)?;
                slot.get_or_init(|| h)
            }
        };
        jws::encode_with_header(header, payload, alg, self.key.as_ref())
    }
}

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWS compact text.
    pub text: String,
    /// Its claims.
    pub claims: Claims,
}

/// A new random token serial: 128 bits as 32 lowercase hex digits.
pub fn new_serial() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("operating system random number generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The claims a token for `req` would carry, checked against the signer's
/// validity. Refuses (never shortens) a token that would outlive its signer.
///
/// The request is input, not instructions: its fields must be well-formed
/// ([`ActivationRequest::check_fields`]) and its binding one a real machine
/// produces ([`crate::core::machine::check_binding`]; a weak one only with
/// [`IssueOptions::allow_weak_binding`]). Feature and edition names use the
/// product name's character set.
pub fn build_claims(req: &ActivationRequest, opts: &IssueOptions, signer: &CertInfo, now: i64) -> Result<Claims> {
    let strength = check_request(req, opts.allow_weak_binding)?;
    for (what, name) in opts.features.iter().map(|f| ("feature", f)).chain(opts.edition.iter().map(|e| ("edition", e)))
    {
        if !crate::core::request::is_plain_name(name) {
            return Err(Error::Usage(format!("{what} name {name:?}: {}", crate::core::request::PLAIN_NAME_RULE)));
        }
    }
    if now < signer.not_before || now > signer.not_after {
        return Err(Error::Refused(format!(
            "signer certificate {} is not valid now (valid {} to {})",
            signer.subject,
            crate::core::clock::rfc3339(signer.not_before),
            crate::core::clock::rfc3339(signer.not_after)
        )));
    }
    let exp = match opts.lifetime.seconds() {
        Some(secs) if secs < MIN_TOKEN_LIFETIME_SECS => {
            return Err(Error::InvalidLifetime {
                what: "token lifetime",
                detail: format!("{secs} s is shorter than the minimum of {MIN_TOKEN_LIFETIME_SECS} s"),
            })
        }
        Some(secs) => Some(now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))),
        None => None,
    };
    let grace = i64::try_from(opts.grace_secs).unwrap_or(i64::MAX);
    let renew_after = match (opts.renew_after_secs, exp) {
        (None, Some(e)) => Some(now + (e - now) * 2 / 3),
        (None, None) => None,
        (Some(r), exp) => {
            let at = now.saturating_add(i64::try_from(r).unwrap_or(i64::MAX));
            if r == 0 || exp.is_some_and(|e| at >= e) {
                return Err(Error::InvalidLifetime {
                    what: "renewal time",
                    detail: format!("{r} s after issuance is not within the token's lifetime"),
                });
            }
            Some(at)
        }
    };
    if let Some(exp) = exp {
        // The grace period is part of the token's life: a signer that expires
        // during it would make the promised grace fail with CertExpired.
        if exp + grace > signer.not_after {
            return Err(Error::Verify(VerifyError::TokenOutlivesSigner {
                exp: Some(exp + grace),
                signer_not_after: signer.not_after,
            }));
        }
    }
    let match_rule = opts.match_rule.unwrap_or_else(|| crate::core::machine::default_rule_for(&req.components));
    match_rule
        .check_for(&req.components)
        .map_err(|e| Error::Usage(format!("--match {match_rule} does not fit this request: {e}")))?;
    Ok(Claims {
        jti: opts.serial.clone().unwrap_or_else(new_serial),
        sub: req.cmid.clone(),
        aud: req.product.clone(),
        iat: now,
        nbf: now,
        exp,
        tka: TkaClaims {
            v: 1,
            features: opts.features.clone(),
            edition: opts.edition.clone(),
            entitlement: opts.entitlement.clone(),
            components: req.components.clone(),
            match_rule,
            renew_after,
            grace,
            weak_binding: strength == crate::core::machine::BindingStrength::Weak,
        },
    })
}

/// Whether a request can be issued at all: its fields are well-formed
/// ([`ActivationRequest::check_fields`], else [`Error::Format`]) and its
/// binding is one a real machine produces ([`crate::core::machine::check_binding`],
/// else [`Error::Binding`]; a weak one only with `allow_weak`). Every
/// issuance path runs it (through [`build_claims`], and before a ledger
/// looks at seats).
pub fn check_request(req: &ActivationRequest, allow_weak: bool) -> Result<crate::core::machine::BindingStrength> {
    req.check_fields().map_err(|detail| Error::Format { what: "request".into(), detail })?;
    Ok(crate::core::machine::check_binding(&req.cmid, &req.components, allow_weak)?)
}

/// Issues a token for `req` at time `now`.
pub fn issue_token(
    req: &ActivationRequest,
    opts: &IssueOptions,
    signer: &TokenSigner,
    now: i64,
) -> Result<IssuedToken> {
    let claims = build_claims(req, opts, &signer.cert, now)?;
    let payload = serde_json::to_value(&claims).map_err(|e| Error::format("token claims", e))?;
    let text = signer.sign_payload(&payload, TOKEN_TYP, opts.alg)?;
    Ok(IssuedToken { text, claims })
}

/// Decodes a token without deciding whether to trust it (`tka token inspect`).
pub fn decode_unverified(text: &str) -> Result<(DecodedJws, Claims), VerifyError> {
    let jws = jws::decode(text, TOKEN_TYP)?;
    let claims = parse_claims(&jws.payload)?;
    Ok((jws, claims))
}

/// Interprets a payload as token claims.
pub fn parse_claims(payload: &serde_json::Value) -> Result<Claims, VerifyError> {
    let claims: Claims =
        serde_json::from_value(payload.clone()).map_err(|e| VerifyError::BadClaims { detail: e.to_string() })?;
    if claims.tka.v != 1 {
        return Err(VerifyError::BadClaims { detail: format!("unsupported tka claims version {}", claims.tka.v) });
    }
    if claims.tka.grace < 0 {
        return Err(VerifyError::BadClaims { detail: "negative grace period".into() });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::SoftwareKey;
    use crate::issuer::certs::{create_certificate, CertKind, CertRequest};

    fn key(name: &str) -> SoftwareKey {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("certs/test/{name}.key"));
        SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
    }

    /// The header encoded once per signer is byte for byte what `jws::encode` writes.
    #[test]
    fn cached_token_header_is_the_one_jws_encode_writes() {
        let now = 1_800_000_000;
        let (int_key, signer_key) = (key("intermediate"), key("signer"));
        let req = |kind, subject| CertRequest { kind, subject, not_before: now - 86_400, not_after: now + 86_400 };
        let int = create_certificate(&req(CertKind::Root, "CN=T Root"), int_key.public_key(), None, &int_key).unwrap();
        let int_info = CertInfo::parse(&int).unwrap();
        let der = create_certificate(
            &req(CertKind::Signer, "CN=T Signer"),
            signer_key.public_key(),
            Some(&int_info),
            &int_key,
        )
        .unwrap();
        let signer = TokenSigner::new(Box::new(key("signer")), vec![der, int]).unwrap();
        let payload = serde_json::json!({"jti": "ab", "sub": "c\"d", "n": 1});
        for alg in [SignatureAlgorithm::Ps256, SignatureAlgorithm::Rs256] {
            for _ in 0..2 {
                let fast = signer.sign_payload(&payload, TOKEN_TYP, alg).unwrap();
                let slow =
                    jws::encode(&payload, TOKEN_TYP, &signer.cert.fingerprint, &signer.x5c, alg, signer.key()).unwrap();
                let (f, s) = (fast.rsplit_once('.').unwrap(), slow.rsplit_once('.').unwrap());
                assert_eq!(f.0, s.0, "{alg:?}: same header and payload");
                let back = jws::decode(&fast, TOKEN_TYP).unwrap();
                assert!(crate::core::keys::verify_signature(
                    signer.key().public_key(),
                    alg,
                    f.0.as_bytes(),
                    &back.signature
                ));
            }
        }
    }
}
