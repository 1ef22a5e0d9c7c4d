//! Token verification: a pure function of (token text, trust anchors,
//! revocation data, known certificates, this machine's identity, *now*, the
//! store's clock high-water mark). It never reads the clock or the disk.
//!
//! The checks run in the order of `docs/verification.md`; each failure is
//! its own [`VerifyError`] variant.

use crate::core::error::VerifyError;
use crate::core::jws::{self, DecodedJws, TOKEN_TYP};
use crate::core::keys::{scheme_of, SignatureAlgorithm};
use crate::core::machine::{MachineIdentity, MatchReport};
use crate::core::pki::{
    chain_from_pool, validate_path, CertInfo, Crl, LeafRole, RootFingerprint, TrustAnchors, ValidatedPath,
};
use crate::core::token::{parse_claims, Claims};
use std::collections::HashSet;

/// How far a token's `iat` may be ahead of *now* (clock skew between the
/// issuing workstation and the machine), seconds.
pub const IAT_SKEW_SECS: i64 = 300;

/// What "this machine" is for the binding check.
#[derive(Debug, Clone, Copy)]
pub enum MachineCheck<'a> {
    /// Do not check the machine (inspecting a token on the issuer's side).
    Skip,
    /// Compare the token's bound components (k-of-n).
    Identity(&'a MachineIdentity),
    /// Compare the token's `sub` with this CMID only.
    Cmid(&'a str),
}

/// Everything verification depends on besides the token.
#[derive(Debug, Clone)]
pub struct VerifyContext<'a> {
    /// Trusted roots.
    pub anchors: &'a TrustAnchors,
    /// Roots the chain must end at (an application's vendor roots); empty
    /// accepts any of the trusted `anchors`.
    pub pinned_roots: &'a [RootFingerprint],
    /// The time of verification, Unix seconds.
    pub now: i64,
    /// The product the caller expects; `None` accepts any.
    pub product: Option<&'a str>,
    /// This machine.
    pub machine: MachineCheck<'a>,
    /// CRLs to consult for every certificate in the chain.
    pub crls: &'a [Crl],
    /// Token serials revoked by installed revocation lists.
    pub revoked_serials: &'a HashSet<String>,
    /// The store's clock high-water mark and tolerance, seconds.
    pub clock: Option<(i64, i64)>,
    /// Certificates known but not trusted (DER): where the chain of a
    /// compact token (no `x5c`) is found ([`chain_from_pool`]). A token
    /// with `x5c` ignores them.
    pub certificates: &'a [Vec<u8>],
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The claims.
    pub claims: Claims,
    /// The algorithm it was signed with.
    pub alg: SignatureAlgorithm,
    /// Signer certificate.
    pub signer: CertInfo,
    /// Subjects from the signer up to the trusted root.
    pub path: Vec<String>,
    /// The SHA-256 fingerprint (lowercase hex) of the trusted root the path ends at.
    pub root_fingerprint: String,
    /// Component comparison, when the token carries components and a machine was given.
    pub machine_match: Option<MatchReport>,
    /// Expired but within its grace period.
    pub in_grace: bool,
}

/// Verifies an activation token. See the module documentation.
pub fn verify_token(text: &str, ctx: &VerifyContext<'_>) -> Result<VerifiedToken, VerifyError> {
    // Steps 1-2: size, structure, strict JSON, header allow-lists.
    let jws = jws::decode(text, TOKEN_TYP)?;
    // Step 3: path validation to a pinned root at `now`, from `x5c` or,
    // for a compact token, from the known certificates.
    // (The `x5c` in place, not copied as `token_chain` returns it.)
    let pool_chain;
    let chain = if jws.x5c.is_empty() {
        pool_chain = token_chain(&jws, ctx.certificates, ctx.anchors, ctx.now)?;
        &pool_chain
    } else {
        &jws.x5c
    };
    let mut path = validate_path(chain, ctx.anchors, ctx.now, ctx.crls, LeafRole::TokenSigner)?;
    check_pinned_root(&path, ctx.pinned_roots)?;
    let signer = path.signer();
    check_kid(jws.kid.as_deref(), signer)?;
    // Step 4: the signature, with the algorithm pinned in step 2.
    check_signature(signer, jws.alg, &jws.signing_input, &jws.signature)?;
    // Step 5: claims.
    let claims = parse_claims(&jws.payload)?;
    check_delegations(&path.certs, &claims)?;
    check_product(&claims, ctx.product)?;
    check_binding(&claims)?;
    let machine_match = check_machine(&claims, ctx.machine)?;
    let in_grace = check_time_window(&claims, ctx.now)?;
    check_within_signer(&claims, path.signer())?;
    check_not_revoked(&claims, ctx.revoked_serials)?;
    // Step 6: clock sanity.
    check_clock(&claims, ctx.now, ctx.clock)?;
    let subjects = path.certs.iter().map(|c| c.subject.clone()).collect();
    let root_fingerprint = path.root().fingerprint.clone();
    // The signer moved out of the path, not copied (a path holds at least
    // the signer and its root).
    let signer = path.certs.swap_remove(0);
    Ok(VerifiedToken { claims, alg: jws.alg, path: subjects, root_fingerprint, signer, machine_match, in_grace })
}

/// The certificate chain of a decoded token, signer first: its `x5c`, or
/// for a compact token (no `x5c`) the chain [`chain_from_pool`] finds for
/// its `kid` in `certificates` up to `anchors`. Not validated.
pub fn token_chain(
    jws: &DecodedJws,
    certificates: &[Vec<u8>],
    anchors: &TrustAnchors,
    now: i64,
) -> Result<Vec<Vec<u8>>, VerifyError> {
    if !jws.x5c.is_empty() {
        return Ok(jws.x5c.clone());
    }
    match jws.kid.as_deref() {
        Some(kid) => chain_from_pool(kid, certificates, anchors, now),
        None => Err(VerifyError::MissingChain),
    }
}

/// Step 3: with pinned roots, the validated chain ends at one of them.
fn check_pinned_root(path: &ValidatedPath, pinned: &[RootFingerprint]) -> Result<(), VerifyError> {
    let root = path.root();
    if pinned.is_empty() || pinned.iter().any(|p| p.matches(root)) {
        return Ok(());
    }
    Err(VerifyError::WrongRoot {
        subject: root.subject.clone(),
        expected: pinned.iter().map(|p| p.to_string()).collect(),
        found: root.fingerprint.clone(),
    })
}

/// RFC 7515 §4.1.4: when present, `kid` names the signer certificate.
fn check_kid(kid: Option<&str>, signer: &CertInfo) -> Result<(), VerifyError> {
    match kid {
        Some(k) if k != signer.fingerprint => Err(VerifyError::Malformed {
            what: "token header",
            detail: "kid does not match the x5c signer certificate".into(),
        }),
        _ => Ok(()),
    }
}

/// RFC 7515 §5.2 step 8 with RFC 7518 §3.3 / §3.5.
fn check_signature(signer: &CertInfo, alg: SignatureAlgorithm, input: &[u8], sig: &[u8]) -> Result<(), VerifyError> {
    if signer.verifies(scheme_of(alg), input, sig)? {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The tka delegation extension (docs/verification.md): every certificate
/// of the path that carries one (the signer, an issuing CA, any CA up to
/// the root) allows the token's product and lifetime, and the token
/// expires. Issuers run the same check before they sign
/// (`TokenSigner`), machines after the signature.
pub fn check_delegations(certs: &[CertInfo], claims: &Claims) -> Result<(), VerifyError> {
    for cert in certs {
        if let Some(d) = &cert.delegation {
            d.permits(&claims.aud, claims.nbf, claims.exp)
                .map_err(|what| VerifyError::OutsideDelegation { subject: cert.subject.clone(), what })?;
        }
    }
    Ok(())
}

/// RFC 7519 §4.1.3: `aud` names the product this machine runs.
fn check_product(claims: &Claims, expected: Option<&str>) -> Result<(), VerifyError> {
    match expected {
        Some(p) if p != claims.aud => Err(VerifyError::WrongProduct { expected: p.into(), found: claims.aud.clone() }),
        _ => Ok(()),
    }
}

/// Defence in depth: the token binds a component set a real machine
/// produces, its `sub` is the CMID of those components, and a weak binding
/// is one the issuer chose (`weak_binding`). Issuers check the same with the
/// same function before they sign (docs/machine-identity.md).
fn check_binding(claims: &Claims) -> Result<(), VerifyError> {
    crate::core::machine::check_binding(&claims.sub, &claims.tka.components, claims.tka.weak_binding)
        .map(|_| ())
        .map_err(|reason| VerifyError::ImpossibleBinding { reason })
}

/// Machine binding: k-of-n over component hashes (a token without any is
/// refused by [`check_binding`] before this).
fn check_machine(claims: &Claims, machine: MachineCheck<'_>) -> Result<Option<MatchReport>, VerifyError> {
    match machine {
        MachineCheck::Skip => Ok(None),
        MachineCheck::Cmid(cmid) => {
            if cmid == claims.sub {
                Ok(None)
            } else {
                Err(VerifyError::WrongMachine { expected: cmid.into(), found: claims.sub.clone(), report: None })
            }
        }
        MachineCheck::Identity(id) => {
            let report = claims.tka.match_rule.evaluate(&claims.tka.components, id.components());
            if report.is_match() {
                Ok(Some(report))
            } else {
                Err(VerifyError::WrongMachine {
                    expected: id.cmid().into(),
                    found: claims.sub.clone(),
                    report: Some(Box::new(report)),
                })
            }
        }
    }
}

/// RFC 7519 §4.1.4-4.1.5: `nbf <= now < exp`; within `exp + grace` the
/// token is accepted and reported as in grace.
fn check_time_window(claims: &Claims, now: i64) -> Result<bool, VerifyError> {
    if now < claims.nbf {
        return Err(VerifyError::TokenNotYetValid { nbf: claims.nbf, now });
    }
    match claims.exp {
        None => Ok(false),
        Some(exp) if now < exp => Ok(false),
        Some(exp) if now < exp.saturating_add(claims.tka.grace) => Ok(true),
        Some(exp) => Err(VerifyError::TokenExpired { exp, grace: claims.tka.grace, now }),
    }
}

/// A token never outlives its signer: `exp` must not be after the signer's notAfter.
fn check_within_signer(claims: &Claims, signer: &CertInfo) -> Result<(), VerifyError> {
    match claims.exp {
        Some(exp) if exp > signer.not_after => {
            Err(VerifyError::TokenOutlivesSigner { exp: Some(exp), signer_not_after: signer.not_after })
        }
        _ => {
            if claims.iat < signer.not_before {
                return Err(VerifyError::BadClaims {
                    detail: "token claims to be issued before its signer certificate existed".into(),
                });
            }
            Ok(())
        }
    }
}

/// The serial is not on an installed token revocation list.
fn check_not_revoked(claims: &Claims, revoked: &HashSet<String>) -> Result<(), VerifyError> {
    if revoked.contains(&claims.jti) {
        Err(VerifyError::TokenRevoked { serial: claims.jti.clone() })
    } else {
        Ok(())
    }
}

/// Step 6: *now* is not earlier than the store's high-water mark (less the
/// tolerance) nor than the token's `iat` (less [`IAT_SKEW_SECS`]).
fn check_clock(claims: &Claims, now: i64, clock: Option<(i64, i64)>) -> Result<(), VerifyError> {
    if let Some((high_water, tolerance)) = clock {
        check_clock_mark(now, high_water, tolerance)?;
    }
    if claims.iat > now + IAT_SKEW_SECS {
        return Err(VerifyError::IssuedInFuture { iat: claims.iat, now });
    }
    Ok(())
}

/// The one clock-rollback rule: *now* may be at most `tolerance` seconds
/// (a negative tolerance counts as zero) before the `high_water` mark of
/// every *now* a store has accepted; earlier is
/// [`VerifyError::ClockRollback`].
pub fn check_clock_mark(now: i64, high_water: i64, tolerance: i64) -> Result<(), VerifyError> {
    if now < high_water.saturating_sub(tolerance.max(0)) {
        Err(VerifyError::ClockRollback { now, high_water })
    } else {
        Ok(())
    }
}
