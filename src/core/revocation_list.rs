//! The token revocation list format: its claims, and verifying a list
//! against trust anchors. Signing lists is the issuer wing's
//! (`tka::issuer::revocation_list`); importing them the machine wing's
//! (`tka::revocation`).

use crate::core::error::{Error, Result, VerifyError};
use crate::core::jws::{self, REVOCATION_TYP};
use crate::core::keys::scheme_of;
use crate::core::pki::CertInfo;
use crate::core::pki::{validate_path, Crl, LeafRole, TrustAnchors};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Version of the list payload format.
pub const LIST_VERSION: u8 = 1;

/// How far in the future a list's `iat` or a CRL's thisUpdate may be (clock skew), seconds.
pub const ISSUED_SKEW_SECS: i64 = 300;

/// What a token revocation list is called in errors.
pub const WHAT_LIST: &str = "token revocation list";

/// One revoked token on a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedToken {
    /// The token serial (`jti`).
    pub jti: String,
    /// When it was revoked, Unix seconds.
    pub at: i64,
    /// Why, free text (from the ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RevokedToken {
    /// Parses `SERIAL[:reason]` (a token serial, hex, any case; the reason
    /// is free text), revoked at `at`.
    pub fn parse_arg(arg: &str, at: i64) -> Result<RevokedToken> {
        let (serial, reason) = match arg.split_once(':') {
            Some((s, r)) => (s, Some(r.trim().to_string()).filter(|r| !r.is_empty())),
            None => (arg, None),
        };
        let jti = serial.trim().to_ascii_lowercase();
        if jti.is_empty() || jti.len() > 64 || !jti.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Usage(format!(
                "invalid token serial {serial:?}: expected the token's hex serial (its jti)"
            )));
        }
        Ok(RevokedToken { jti, at, reason })
    }
}

/// The payload of a token revocation list (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListClaims {
    /// Format version, [`LIST_VERSION`].
    pub v: u8,
    /// The list id: which sequence this list belongs to (lowercase hex).
    pub iss: String,
    /// Sequence number; never goes backwards on a machine.
    pub seq: u64,
    /// Signed at, Unix seconds.
    pub iat: i64,
    /// When a newer list is due, Unix seconds.
    pub next_update: i64,
    /// Every revoked token.
    pub revoked: Vec<RevokedToken>,
}

impl ListClaims {
    /// The revoked serials.
    pub fn serials(&self) -> HashSet<String> {
        self.revoked.iter().map(|r| r.jti.clone()).collect()
    }

    /// Whether the list is past its next update at `now`.
    pub fn is_stale(&self, now: i64) -> bool {
        now > self.next_update
    }
}

/// A list that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedList {
    /// Its payload.
    pub claims: ListClaims,
    /// The signer certificate.
    pub signer: CertInfo,
    /// Subjects from the signer to the trusted root.
    pub path: Vec<String>,
}

/// Checks that `id` can name a list (1 to 128 lowercase hex digits).
pub(crate) fn check_list_id(id: &str) -> Result<(), VerifyError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ok {
        Ok(())
    } else {
        Err(VerifyError::BadClaims {
            detail: format!("revocation list id {id:?} is not 1 to 128 lowercase hex digits"),
        })
    }
}

/// Verifies a token revocation list: header checks with `typ`
/// [`REVOCATION_TYP`], the `x5c` chain to `anchors` at `at` with the token
/// signer profile (consulting `crls`), `kid`, the signature, the payload.
/// Sequence and freshness are the caller's to judge.
pub fn verify_list(text: &str, anchors: &TrustAnchors, crls: &[Crl], at: i64) -> Result<VerifiedList, VerifyError> {
    let jws = jws::decode(text.trim(), REVOCATION_TYP)?;
    let path = validate_path(&jws.x5c, anchors, at, crls, LeafRole::TokenSigner)?;
    let signer = path.signer().clone();
    if jws.kid.as_deref().is_some_and(|k| k != signer.fingerprint) {
        return Err(VerifyError::Malformed {
            what: "revocation list header",
            detail: "kid does not match the x5c signer certificate".into(),
        });
    }
    if !signer.verifies(scheme_of(jws.alg), &jws.signing_input, &jws.signature)? {
        return Err(VerifyError::BadSignature);
    }
    let claims = parse_claims(&jws.payload)?;
    Ok(VerifiedList { claims, signer, path: path.certs.iter().map(|c| c.subject.clone()).collect() })
}

/// Interprets a payload as list claims, without checking any signature.
pub(crate) fn parse_claims(payload: &serde_json::Value) -> Result<ListClaims, VerifyError> {
    let claims: ListClaims = serde_json::from_value(payload.clone())
        .map_err(|e| VerifyError::BadClaims { detail: format!("revocation list: {e}") })?;
    if claims.v != LIST_VERSION {
        return Err(VerifyError::BadClaims { detail: format!("unsupported revocation list version {}", claims.v) });
    }
    check_list_id(&claims.iss)?;
    Ok(claims)
}

/// Decodes a list without deciding whether to trust it.
pub fn decode_unverified(text: &str) -> Result<ListClaims, VerifyError> {
    parse_claims(&jws::decode(text.trim(), REVOCATION_TYP)?.payload)
}

// ----- issuer side -----
