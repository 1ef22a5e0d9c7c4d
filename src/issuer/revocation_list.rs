//! Signing token revocation lists in an issuer home: the list id and
//! sequence kept in `<home>/revocations.json`, and the revoked tokens taken
//! from the ledger. The format is [`crate::revocation`].

use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use crate::core::jws::{self, REVOCATION_TYP};
use crate::core::keys::SignatureAlgorithm;
use crate::core::revocation_list::{check_list_id, ListClaims, RevokedToken, LIST_VERSION};
use crate::issuer::home::IssuerHome;
use crate::issuer::signer::TokenSigner;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// File in the issuer home that keeps the list id and the last sequence number.
pub const LIST_STATE_FILE: &str = "revocations.json";

/// Signs `claims` as a token revocation list with `signer` (the same key,
/// `kid` and `x5c` as tokens). Refuses a signer not valid at `claims.iat`
/// and a next update that is not after `iat`.
pub fn sign_list(signer: &TokenSigner, claims: &ListClaims) -> Result<String> {
    check_list_id(&claims.iss)?;
    let cert = signer.certificate();
    if claims.iat < cert.not_before || claims.iat > cert.not_after {
        return Err(Error::Refused(format!(
            "signer certificate {} is not valid now (valid {} to {})",
            cert.subject,
            crate::core::clock::rfc3339(cert.not_before),
            crate::core::clock::rfc3339(cert.not_after)
        )));
    }
    if claims.next_update <= claims.iat {
        return Err(Error::Usage("the list's next update must be after the time it is signed".into()));
    }
    let payload = serde_json::to_value(claims).map_err(|e| Error::format("revocation list", e))?;
    signer.sign_payload(&payload, REVOCATION_TYP, SignatureAlgorithm::Ps256)
}

/// `<home>/revocations.json`: the list id and the last sequence number used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListState {
    /// The list id (`iss`), made once.
    pub list_id: String,
    /// The last sequence number signed (reserved).
    pub seq: u64,
}

/// Reads the home's list state; `None` before the first list.
pub fn list_state(home: &IssuerHome) -> Result<Option<ListState>> {
    let path = home.dir().join(LIST_STATE_FILE);
    match fsutil::read_bounded(&path, 64 * 1024) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::format(path.display().to_string(), e)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.at(&path)),
    }
}

/// Creates the next token revocation list of `home`, signed by `signer`
/// (its current signer), listing `revoked`, valid until `next_update`.
///
/// The sequence number is reserved in `<home>/revocations.json` (atomic
/// write) before signing, so no two lists ever share one.
pub fn create_list(
    home: &IssuerHome,
    signer: &TokenSigner,
    mut revoked: Vec<RevokedToken>,
    now: i64,
    next_update: i64,
) -> Result<(String, ListClaims)> {
    if next_update <= now {
        return Err(Error::Usage("the list's next update must be in the future".into()));
    }
    let mut seen = HashSet::new();
    revoked.retain(|r| seen.insert(r.jti.clone()));
    revoked.sort_by(|a, b| a.jti.cmp(&b.jti));
    // The sequence is read, reserved and written under the home's lock.
    let _lock = home.lock(crate::issuer::home::DEFAULT_LOCK_WAIT)?;
    let state = match list_state(home)? {
        Some(s) => ListState { list_id: s.list_id, seq: s.seq + 1 },
        None => ListState { list_id: crate::issuer::signer::new_serial(now), seq: 1 },
    };
    let claims =
        ListClaims { v: LIST_VERSION, iss: state.list_id.clone(), seq: state.seq, iat: now, next_update, revoked };
    // Check everything that can fail before reserving the number.
    let cert = signer.certificate();
    if now < cert.not_before || now > cert.not_after {
        return Err(Error::Refused(format!(
            "signer certificate {} is not valid now (expires {}); rotate the signer",
            cert.subject,
            crate::core::clock::rfc3339(cert.not_after)
        )));
    }
    let path = home.dir().join(LIST_STATE_FILE);
    let json = serde_json::to_string_pretty(&state).expect("list state serializes") + "\n";
    fsutil::write_atomic(&path, json.as_bytes(), 0o644, Overwrite::Replace).map_err(|e| Error::io(&path, e))?;
    let text = sign_list(signer, &claims)?;
    if text.len() > jws::MAX_JWS_SIZE {
        return Err(Error::Refused(format!(
            "a list of {} revoked tokens is {} bytes, over the {}-byte limit machines accept",
            claims.revoked.len(),
            text.len(),
            jws::MAX_JWS_SIZE
        )));
    }
    Ok((text, claims))
}

/// How long after a revoked token's expiry it stays on lists, seconds: far
/// beyond any grace period, after which the token cannot verify anyway.
pub const KEEP_EXPIRED_SECS: i64 = 366 * crate::core::clock::DAY;

/// The revoked tokens recorded in `home`'s ledger (`tka ledger revoke`), as
/// list entries: every revoked token except those that expired more than
/// [`KEEP_EXPIRED_SECS`] before `now`. No ledger yet means none.
#[cfg(feature = "issuer")]
pub fn revoked_from_ledger(home: &IssuerHome, now: i64) -> Result<Vec<RevokedToken>> {
    let path = crate::issuer::ledger::default_path(home.dir());
    if !path.exists() {
        return Ok(Vec::new());
    }
    revoked_from(&crate::issuer::ledger::Ledger::open_existing(&path)?, now)
}

/// The revoked tokens recorded in `ledger`, as list entries: every revoked
/// token except those that expired more than [`KEEP_EXPIRED_SECS`] before
/// `now`.
#[cfg(feature = "issuer")]
pub fn revoked_from(ledger: &crate::issuer::ledger::Ledger, now: i64) -> Result<Vec<RevokedToken>> {
    Ok(ledger
        .revoked_tokens()?
        .into_iter()
        .filter(|r| r.expires.is_none_or(|e| e + KEEP_EXPIRED_SECS >= now))
        .map(|r| RevokedToken { jti: r.serial, at: r.revoked_at, reason: Some(r.reason).filter(|s| !s.is_empty()) })
        .collect())
}

// ----- machine side -----
