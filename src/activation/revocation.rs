//! Offline revocation: signed token revocation lists and X.509 CRLs, from
//! the issuer's side (creation) to the machine's (import, verification).
//!
//! # Token revocation lists
//!
//! A list is a JWS compact serialization signed exactly like a token — by
//! the current token signer, with `kid` and the `x5c` chain — but with
//! `typ` [`REVOCATION_TYP`] (`tka-revocations+jwt`), so neither can be
//! passed off as the other. Its payload ([`ListClaims`]):
//!
//! ```json
//! {"v": 1, "iss": "<list id: 32 hex digits>", "seq": 7, "iat": 1800000000,
//!  "next_update": 1802592000, "revoked": [{"jti": "<token serial>", "at": 1799990000, "reason": "stolen"}]}
//! ```
//!
//! - `iss` names the sequence: a random id made once per issuer home and
//!   kept across every rotation (signer, issuing CA, root), so the
//!   anti-rollback counter survives rotations. On a machine, the list is
//!   kept under the trusted root it validates to and its id
//!   ([`crate::activation::store::list_key`]: `revocations/<root fp>-<iss>.jws`,
//!   `state.json` `revocation_seq[<root fp>-<iss>]`), so another trusted
//!   issuer claiming the same id can neither replace nor block it.
//! - `seq` increases with every list the home signs. The last one used is
//!   kept in `<home>/revocations.json` and reserved (written) before the
//!   list is signed, so a crash can skip a number but never reuse one.
//! - A list is complete: it names every revoked token, and a newer list
//!   replaces the older one.
//!
//! # What a machine accepts ([`import`])
//!
//! - A list whose chain validates at *now* to a trusted root with the
//!   token-signer profile ([`validate_path`] with [`LeafRole::TokenSigner`],
//!   installed CRLs consulted), whose signature verifies, whose `iat` is not
//!   in the future, and whose `seq` is not lower than the installed one for
//!   the same `iss` under the same root ([`VerifyError::RevocationRollback`];
//!   the store is left unchanged). Re-importing the installed sequence is a
//!   no-op. The list file is written before its sequence is raised, so a
//!   crash never leaves a raised sequence without its list; a store found
//!   that way (an older tka's interrupted import) is reported corrupt until
//!   the list is imported again.
//! - A CRL signed by a trusted root, or by a CA certificate given alongside
//!   it (`--ca-cert`, or CERTIFICATE blocks in the same PEM file) that
//!   validates at *now* to a trusted root and may sign CRLs. A CRL whose
//!   cRLNumber is lower than the installed CRL of the same CA key is a
//!   rollback and refused.
//! - **Stale data** (past next-update) is accepted with a warning by
//!   default — newer revocation data can only remove activations, so
//!   refusing it would be the less safe choice — and refused with
//!   [`VerifyError::RevocationStale`] when the caller requires fresh data
//!   (`--require-fresh`). Installed data that goes stale stays in force.
//!
//! # Verification
//!
//! [`verified_revoked_serials`] feeds [`crate::activation::trust::TrustData`]:
//! every installed list is re-verified against the trusted roots at the
//! list's own `iat` (so a list keeps working after the signer that made it
//! expires) without consulting CRLs (a list signed by a signer revoked
//! later still counts: lists only deny). A list that cannot be read or no
//! longer verifies — tampered with, or its root was removed too early in a
//! rollover — is an error, never skipped: skipping it would silently
//! re-activate the tokens it revokes. Importing a current list fixes it.
//! Installed CRLs are consulted during path validation, each only for
//! certificates issued by the CA whose signature the CRL carries
//! ([`Crl::is_signed_by`]).

use crate::activation::activate::{status_with, ProductStatus};
use crate::activation::revoked::{installed_claims, lenient_trust, reverify_installed};
pub use crate::activation::revoked::{installed_revoked_serials, verified_revoked_serials};
use crate::activation::store::{list_key, split_list_key, Store, StoreLock, DEFAULT_CLOCK_TOLERANCE_SECS};
use crate::activation::trust::{IdentifyFn, TrustData};
use crate::core::error::{Error, Result, VerifyError};
use crate::core::jws::{self, REVOCATION_TYP};
use crate::core::pki::{pem, validate_path, CertInfo, Crl, LeafRole, TrustAnchors};
pub use crate::core::revocation_list::{
    decode_unverified, verify_list, ListClaims, RevokedToken, VerifiedList, ISSUED_SKEW_SECS, LIST_VERSION, WHAT_LIST,
};
use serde::Serialize;
use std::collections::HashSet;

const WHAT_CRL: &str = "CRL";

/// What [`import`] installed.
#[derive(Debug, Clone)]
pub enum Imported {
    /// A token revocation list.
    List {
        /// Its payload.
        claims: ListClaims,
        /// The signer certificate's subject.
        signer: String,
        /// The sequence installed before (`None` for the first list of this id).
        previous_seq: Option<u64>,
    },
    /// An X.509 CRL.
    Crl {
        /// The CA that signed it.
        issuer: String,
        /// Store key (the CA's key identifier, hex).
        key: String,
        /// cRLNumber, decimal.
        number: Option<String>,
        /// Revoked certificate serials.
        revoked: usize,
        /// thisUpdate and nextUpdate, Unix seconds.
        this_update: i64,
        /// nextUpdate, Unix seconds.
        next_update: Option<i64>,
    },
}

impl Imported {
    /// Whether the imported data is past its next update at `now`.
    pub fn is_stale(&self, now: i64) -> bool {
        match self {
            Imported::List { claims, .. } => claims.is_stale(now),
            Imported::Crl { next_update, .. } => next_update.is_some_and(|n| now > n),
        }
    }

    /// One-line description.
    pub fn describe(&self) -> String {
        match self {
            Imported::List { claims, signer, .. } => format!(
                "token revocation list {} sequence {} ({} revoked tokens, signed by {signer})",
                claims.iss,
                claims.seq,
                claims.revoked.len()
            ),
            Imported::Crl { issuer, number, revoked, .. } => {
                format!("CRL of {issuer} number {} ({revoked} revoked certificates)", number.as_deref().unwrap_or("-"))
            }
        }
    }
}

/// Options of [`import`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Refuse data past its next update instead of warning.
    pub require_fresh: bool,
    /// CA certificates (DER) that may have signed a CRL, each validated to
    /// a trusted root before it is used (e.g. the issuing CA, and a
    /// cross-certificate during a root rollover).
    pub ca_certs: Vec<Vec<u8>>,
}

/// The outcome of [`import`].
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// What was installed.
    pub imported: Vec<Imported>,
    /// Warnings (stale data).
    pub warnings: Vec<String>,
    /// Products that were activated before the import and are not after it, with the reason.
    pub deactivated: Vec<(String, VerifyError)>,
    /// Products still activated after the import.
    pub still_active: Vec<String>,
}

/// Parsed input of [`import`].
enum Input {
    List(String),
    Crls(Vec<Crl>, Vec<Vec<u8>>),
}

fn parse_input(bytes: &[u8]) -> Result<Input> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let t = text.trim();
        if t.contains("-----BEGIN") {
            let crls = pem::decode_all(t, "X509 CRL")?;
            if crls.is_empty() {
                return Err(Error::format("revocation data", "the PEM file holds no X509 CRL block"));
            }
            let certs = pem::decode_all(t, "CERTIFICATE")?;
            let crls = crls.iter().map(|d| Crl::parse(d)).collect::<Result<Vec<_>, _>>()?;
            return Ok(Input::Crls(crls, certs));
        }
        if !t.is_empty() && t.split('.').count() == 3 && !t.contains(char::is_whitespace) {
            return Ok(Input::List(t.to_string()));
        }
    }
    if bytes.first() == Some(&0x30) {
        return Ok(Input::Crls(vec![Crl::parse(bytes)?], Vec::new()));
    }
    Err(Error::format("revocation data", "neither a token revocation list (JWS) nor an X.509 CRL (PEM or DER)"))
}

/// Imports revocation data (a token revocation list, or one or more CRLs)
/// into `store` at `now`, then re-evaluates every installed token with
/// `identify` and reports which ones stopped being activated.
///
/// Everything is checked before anything is written; on any error the
/// store is unchanged.
pub fn import(
    store: &Store,
    bytes: &[u8],
    opts: &ImportOptions,
    identify: IdentifyFn<'_>,
    now: i64,
) -> Result<ImportReport> {
    let input = parse_input(bytes)?;
    let before_trust = lenient_trust(store)?;
    if before_trust.anchors.is_empty() {
        return Err(Error::NoTrustedRoot);
    }
    let products: Vec<String> = store.tokens()?.into_iter().map(|t| t.product).collect();
    let clock = Some((store.state()?.clock_high_water, DEFAULT_CLOCK_TOLERANCE_SECS));
    let mut active_before = Vec::new();
    for p in &products {
        let id = identify(p)?;
        if status_with(store, &before_trust, p, &id, &[], now, clock)?.is_active() {
            active_before.push(p.clone());
        }
    }

    let mut warnings = Vec::new();
    let mut stale_check = |what: String, next_update: Option<i64>| -> Result<(), VerifyError> {
        match next_update {
            Some(n) if now > n => {
                if opts.require_fresh {
                    return Err(VerifyError::RevocationStale { what, next_update: n, now });
                }
                warnings.push(format!(
                    "{what} is stale (next update was due {}); installed anyway, ask the issuer for a newer one",
                    crate::core::clock::rfc3339(n)
                ));
                Ok(())
            }
            _ => Ok(()),
        }
    };

    let imported = match input {
        Input::List(text) => {
            let v = verify_list(&text, &before_trust.anchors, &before_trust.crls, now)?;
            if v.claims.iat > now + ISSUED_SKEW_SECS {
                return Err(VerifyError::RevocationNotTrusted {
                    what: WHAT_LIST,
                    detail: format!(
                        "signed at {}, after now ({}): check the system clock",
                        crate::core::clock::rfc3339(v.claims.iat),
                        crate::core::clock::rfc3339(now)
                    ),
                }
                .into());
            }
            stale_check(format!("{WHAT_LIST} {} sequence {}", v.claims.iss, v.claims.seq), Some(v.claims.next_update))?;
            let roots = roots_of_list(&text, &before_trust.anchors, &before_trust.crls, now)?;
            let lock = store.lock()?;
            let previous_seq = install_list(&lock, &text, &v.claims, &roots, now)?;
            vec![Imported::List { signer: v.signer.subject.clone(), claims: v.claims, previous_seq }]
        }
        Input::Crls(crls, mut certs) => {
            certs.extend(opts.ca_certs.iter().cloned());
            let mut checked = Vec::new();
            for crl in &crls {
                let issuer = crl_issuer(crl, &before_trust, &certs, now)?;
                if crl.this_update > now + ISSUED_SKEW_SECS {
                    return Err(VerifyError::RevocationNotTrusted {
                        what: WHAT_CRL,
                        detail: format!(
                            "CRL of {} was issued at {}, after now ({}): check the system clock",
                            crl.issuer,
                            crate::core::clock::rfc3339(crl.this_update),
                            crate::core::clock::rfc3339(now)
                        ),
                    }
                    .into());
                }
                stale_check(format!("CRL of {}", crl.issuer), crl.next_update)?;
                let key = crl_key(&issuer)?;
                checked.push((crl.clone(), key));
            }
            let lock = store.lock()?;
            let mut unchanged = HashSet::new();
            for (crl, key) in &checked {
                if let Some(old_der) = lock.crl(key)? {
                    if old_der == crl.der {
                        // The same CRL again: nothing to do.
                        unchanged.insert(key.clone());
                        continue;
                    }
                    if let Ok(old) = Crl::parse(&old_der) {
                        let (o, n) = (crl_order(&old), crl_order(crl));
                        if n < o {
                            return Err(VerifyError::RevocationRollback {
                                installed: u64::try_from(o).unwrap_or(u64::MAX),
                                offered: u64::try_from(n).unwrap_or(u64::MAX),
                            }
                            .into());
                        }
                        if n == o {
                            return Err(VerifyError::RevocationNotTrusted {
                                what: WHAT_CRL,
                                detail: format!(
                                    "CRL of {} number {n} is already installed with other content; \
                                     a CA never issues two CRLs with one number (RFC 5280 §5.2.3)",
                                    crl.issuer
                                ),
                            }
                            .into());
                        }
                    }
                }
            }
            let mut out = Vec::new();
            for (crl, key) in checked {
                if !unchanged.contains(&key) {
                    lock.put_crl(&key, &crl.der)?;
                }
                out.push(Imported::Crl {
                    issuer: crl.issuer.clone(),
                    key,
                    number: crl.number.clone(),
                    revoked: crl.revoked.len(),
                    this_update: crl.this_update,
                    next_update: crl.next_update,
                });
            }
            out
        }
    };

    let after_trust = lenient_trust(store)?;
    let mut deactivated = Vec::new();
    let mut still_active = Vec::new();
    for p in &active_before {
        let id = identify(p)?;
        match status_with(store, &after_trust, p, &id, &[], now, clock)? {
            ProductStatus::Invalid { reason, .. } => deactivated.push((p.clone(), reason)),
            ProductStatus::Active(_) => still_active.push(p.clone()),
            ProductStatus::NotInstalled { .. } => {}
        }
    }
    Ok(ImportReport { imported, warnings, deactivated, still_active })
}

/// The trusted roots a verified list validates to at `at`, each on its
/// own, with single-root anchors for each: the list is kept (and its
/// sequence counted) once per root, under [`list_key`]`(root, iss)`.
fn roots_of_list(text: &str, anchors: &TrustAnchors, crls: &[Crl], at: i64) -> Result<Vec<(String, TrustAnchors)>> {
    let mut out = Vec::new();
    for root in anchors.roots() {
        let single = TrustAnchors::from_der(std::slice::from_ref(&root.der))?;
        if verify_list(text, &single, crls, at).is_ok() {
            out.push((root.fingerprint.clone(), single));
        }
    }
    if out.is_empty() {
        // verify_list against all the roots passed, so one of them must.
        return Err(VerifyError::RevocationNotTrusted {
            what: WHAT_LIST,
            detail: "it validates to no single trusted root".into(),
        }
        .into());
    }
    Ok(out)
}

/// Installs the verified list `text` (payload `claims`) under each of
/// `roots`, holding `lock`. Returns the highest sequence installed before.
///
/// Crash-safe order: every check first; then (1) the list files, (2) the
/// raised sequences in `state.json`, (3) removal of a superseded list of the
/// old, unbound layout. Each write is atomic, so a crash leaves a list at
/// least as new as the recorded sequence (in force at once, the state
/// catching up at the next import of it) and never a raised sequence
/// without its list.
fn install_list(
    lock: &StoreLock<'_>,
    text: &str,
    claims: &ListClaims,
    roots: &[(String, TrustAnchors)],
    now: i64,
) -> Result<Option<u64>> {
    let mut state = lock.state()?;
    let legacy = legacy_list(lock, &claims.iss)?;
    let mut previous_seq: Option<u64> = None;
    let mut to_write = Vec::new();
    for (fp, single) in roots {
        let key = list_key(fp, &claims.iss);
        let recorded = state.revocation_seq.get(&key).copied();
        let file_seq = lock.revocation_list(&key)?.and_then(|t| decode_unverified(&t).ok()).map(|c| c.seq);
        // Migration: a list of the old layout that validates to this root
        // carries this root's sequence until a bound list replaces it.
        let legacy_seq = match (&legacy, recorded.or(file_seq)) {
            (Some((legacy_text, legacy_claims)), None) if reverify_installed(legacy_text, single).is_ok() => {
                state.revocation_seq.get(&claims.iss).copied().into_iter().chain([legacy_claims.seq]).max()
            }
            _ => None,
        };
        if let Some(installed) = [recorded, file_seq, legacy_seq].into_iter().flatten().max() {
            if claims.seq < installed {
                return Err(VerifyError::RevocationRollback { installed, offered: claims.seq }.into());
            }
            previous_seq = previous_seq.max(Some(installed));
        }
        if file_seq != Some(claims.seq) {
            to_write.push(key);
        }
    }
    for key in &to_write {
        lock.put_revocation_list(key, text)?;
    }
    let mut raised = false;
    for (fp, _) in roots {
        let key = list_key(fp, &claims.iss);
        if state.revocation_seq.get(&key) != Some(&claims.seq) {
            state.revocation_seq.insert(key, claims.seq);
            raised = true;
        }
    }
    if raised {
        state.observe(now);
        lock.save_state(&state)?;
    }
    if let Some((legacy_text, legacy_claims)) = &legacy {
        let superseded = legacy_claims.seq <= claims.seq
            && roots.iter().any(|(_, single)| reverify_installed(legacy_text, single).is_ok());
        if superseded {
            lock.remove_revocation_list(&claims.iss)?;
        }
    }
    Ok(previous_seq)
}

/// The list installed under the bare list id `iss` (the layout before lists
/// were bound to roots), if any and readable.
fn legacy_list(store: &Store, iss: &str) -> Result<Option<(String, ListClaims)>> {
    Ok(store.revocation_list(iss)?.and_then(|t| decode_unverified(&t).ok().map(|c| (t, c))))
}

/// (cRLNumber, thisUpdate): the order of CRLs from one CA.
/// A CRL's place in its CA's sequence: its cRLNumber (0 without one).
/// Only the number counts, never the time (RFC 5280 §5.2.3): a CRL with the
/// number of the installed one but other content is refused.
fn crl_order(crl: &Crl) -> u128 {
    crl.number.as_deref().and_then(|n| n.parse::<u128>().ok()).unwrap_or(0)
}

/// The store key of a CA's CRLs: its key identifier (SKI, or RFC 7093
/// method 1 of its key), lowercase hex. A renewed CA (same key) shares it.
fn crl_key(issuer: &CertInfo) -> Result<String> {
    let id = match &issuer.ski {
        Some(k) if !k.is_empty() && k.len() <= 64 => k.clone(),
        _ => crate::core::pki::cert::key_identifier(&issuer.spki_der)?,
    };
    Ok(crate::core::hex::lower_hex(&id))
}

/// Finds the CA that signed `crl`: a trusted root, or one of `certs` that
/// validates to a trusted root at `now`. It must be allowed to sign CRLs.
fn crl_issuer(crl: &Crl, trust: &TrustData, certs: &[Vec<u8>], now: i64) -> Result<CertInfo> {
    let refuse = |detail: String| Error::Verify(VerifyError::RevocationNotTrusted { what: WHAT_CRL, detail });
    let check_crl_sign = |c: &CertInfo| -> Result<()> {
        if c.key_usage.is_some_and(|(_, _, crl_sign)| !crl_sign) {
            return Err(refuse(format!("{} may not sign CRLs (no cRLSign key usage)", c.subject)));
        }
        Ok(())
    };
    if let Some(root) = trust.anchors.roots().iter().find(|r| crl.is_signed_by(r)) {
        check_crl_sign(root)?;
        return Ok(root.clone());
    }
    let parsed: Vec<CertInfo> = certs.iter().filter_map(|d| CertInfo::parse(d).ok()).collect();
    let mut last_err = None;
    for cand in parsed.iter().filter(|c| crl.is_signed_by(c)) {
        let rest: Vec<Vec<u8>> = parsed.iter().filter(|c| c.der != cand.der).map(|c| c.der.clone()).collect();
        let alone = vec![cand.der.clone()];
        let with_rest: Vec<Vec<u8>> = std::iter::once(cand.der.clone()).chain(rest).collect();
        let mut result = validate_path(&alone, &trust.anchors, now, &trust.crls, LeafRole::Ca);
        if result.is_err() && with_rest.len() > 1 {
            result = validate_path(&with_rest, &trust.anchors, now, &trust.crls, LeafRole::Ca);
        }
        match result {
            Ok(_) => {
                check_crl_sign(cand)?;
                return Ok(cand.clone());
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(refuse(match last_err {
        Some(e) => format!("the CA certificate that signed the CRL of {} is not trusted here: {e}", crl.issuer),
        None => format!(
            "the CRL of {} is not signed by a trusted root or by a CA certificate given with it \
             (pass the issuing CA with --ca-cert, or the CRL is signed by the wrong CA)",
            crl.issuer
        ),
    }))
}

/// One piece of installed revocation data, as `tka revocations list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledRevocation {
    /// `list` or `crl`.
    pub kind: &'static str,
    /// List id (lists only).
    pub key: Option<String>,
    /// Fingerprint of the root the list was accepted under and is bound to
    /// (lists only; `None` for a list of the old, unbound layout).
    pub root: Option<String>,
    /// Signer (list) or issuing CA (CRL).
    pub issuer: String,
    /// Sequence (list) or cRLNumber (CRL).
    pub number: Option<String>,
    /// Signed at / thisUpdate, Unix seconds.
    pub issued: i64,
    /// Next update, Unix seconds.
    pub next_update: Option<i64>,
    /// Revoked tokens or certificates.
    pub entries: usize,
    /// Past its next update.
    pub stale: bool,
    /// `None` if it verifies against the trusted roots; else why not.
    pub problem: Option<String>,
}

/// Describes every installed CRL and token revocation list at `now`.
pub fn installed(store: &Store, now: i64) -> Result<Vec<InstalledRevocation>> {
    let trust = lenient_trust(store)?;
    let mut out = Vec::new();
    for crl in &trust.crls {
        out.push(InstalledRevocation {
            kind: "crl",
            key: None,
            root: None,
            issuer: crl.issuer.clone(),
            number: crl.number.clone(),
            issued: crl.this_update,
            next_update: crl.next_update,
            entries: crl.revoked.len(),
            stale: crl.is_stale(now),
            problem: None,
        });
    }
    for (key, text) in store.revocation_list_entries()? {
        let claims = decode_unverified(&text)?;
        let problem = match installed_claims(&key, &text, &trust.anchors) {
            Ok(Some(_)) => None,
            Ok(None) => Some("its root is no longer trusted; not in force".to_string()),
            Err(e) => Some(e.to_string()),
        };
        let signer = jws::decode(&text, REVOCATION_TYP)
            .ok()
            .and_then(|j| j.x5c.first().and_then(|d| CertInfo::parse(d).ok()))
            .map(|c| c.subject)
            .unwrap_or_default();
        out.push(InstalledRevocation {
            kind: "list",
            key: Some(claims.iss.clone()),
            root: split_list_key(&key).0.map(str::to_string),
            issuer: signer,
            number: Some(claims.seq.to_string()),
            issued: claims.iat,
            next_update: Some(claims.next_update),
            entries: claims.revoked.len(),
            stale: claims.is_stale(now),
            problem,
        });
    }
    Ok(out)
}
