//! Issuing a token: the options beyond the request, the claims a token
//! for a request gets, and the signature. The ledger-aware path that also
//! counts seats and records the token is [`crate::issuer::issue`].

use crate::core::error::{Error, Result, VerifyError};
use crate::core::keys::SignatureAlgorithm;
use crate::core::machine::MatchRule;
use crate::core::pki::CertInfo;
use crate::core::request::ActivationRequest;
use crate::core::token::{Claims, TkaClaims, TokenLifetime, MIN_TOKEN_LIFETIME_SECS};
use crate::issuer::signer::{new_serial, TokenSigner};

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
    /// Write a compact token: no `x5c` in the header, only `kid` (the
    /// signer certificate's fingerprint). About a fifth of the full form's
    /// size; the machine must know the signer's chain (given once, then
    /// kept in its store). Default false: the full form carries its chain.
    pub compact: bool,
    /// Issue to a machine although a token of the same product and
    /// entitlement issued to it was revoked (a revoked machine is refused
    /// as [`IssueRefusal::MachineRevoked`](crate::core::error::IssueRefusal::MachineRevoked)
    /// otherwise). Default false.
    pub allow_revoked_machine: bool,
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
            compact: false,
            allow_revoked_machine: false,
        }
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

/// How far in the past a service that answers machines in real time (the
/// activation host, the online service) dates the tokens it signs: the
/// clock skew every verifier allows on `iat` ([`crate::core::verify::IAT_SKEW_SECS`]).
/// A machine whose clock runs a little behind the service's then accepts
/// its fresh token at once instead of refusing it as not yet valid.
pub const REALTIME_BACKDATE_SECS: i64 = crate::core::verify::IAT_SKEW_SECS;

/// The issuance time a real-time service passes to [`build_claims`] at
/// `now`: [`REALTIME_BACKDATE_SECS`] earlier, but never before `signer`'s
/// certificate starts.
pub fn realtime_issue_time(now: i64, signer: &TokenSigner) -> i64 {
    now.saturating_sub(REALTIME_BACKDATE_SECS).max(signer.certificate().not_before.min(now))
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
        .map_err(|e| Error::MatchRuleDoesNotFit { rule: match_rule.to_string(), detail: e.to_string() })?;
    Ok(Claims {
        jti: opts.serial.clone().unwrap_or_else(|| new_serial(now)),
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

/// Issues a token for `req` at time `now`. A signer whose chain carries a
/// tka delegation refuses a token outside it before signing
/// ([`TokenSigner::check_delegation`]).
pub fn issue_token(
    req: &ActivationRequest,
    opts: &IssueOptions,
    signer: &TokenSigner,
    now: i64,
) -> Result<IssuedToken> {
    let claims = build_claims(req, opts, signer.certificate(), now)?;
    signer.check_delegation(&claims)?;
    let payload = serde_json::to_value(&claims).map_err(|e| Error::format("token claims", e))?;
    let text = signer.sign_token(&payload, opts.alg, opts.compact)?;
    Ok(IssuedToken { text, claims })
}
