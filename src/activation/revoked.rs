//! The revoked serials a verification uses: every installed revocation
//! list, re-verified against the trusted roots.

use crate::activation::store::StoreError;
use crate::activation::store::{split_list_key, Store, StoreState};
use crate::activation::trust::{anchors_from_stored, root_products, TrustData};
use crate::core::error::{Error, Result, VerifyError};
use crate::core::pki::{Crl, TrustAnchors};
use crate::core::revocation_list::{decode_unverified, verify_list};
use crate::core::revocation_list::{ListClaims, WHAT_LIST};
use std::collections::HashSet;

/// Serials revoked by the token revocation lists installed in `store`,
/// each re-verified against `anchors` (see [`verified_revoked_serials`]).
pub fn installed_revoked_serials(store: &Store, anchors: &TrustAnchors) -> Result<HashSet<String>> {
    verified_revoked_serials(store, anchors)
}

/// Serials revoked by the installed token revocation lists. Each list is
/// re-verified at the time it was signed (its `iat`) against the root it
/// was accepted under (its key, [`list_key`](crate::activation::store::list_key); a list of the old, unbound
/// layout against every trusted root), without consulting CRLs: a list
/// signed by a signer that was later revoked still counts, since a list can
/// only deny. A list that cannot be read or no longer verifies (tampered
/// with) is an error, never silently skipped: skipping it would re-activate
/// the tokens it revokes. A list whose root is no longer trusted is out of
/// force (tokens chaining only to that root no longer verify either).
///
/// A list older than the sequence `state.json` records for it, or a recorded
/// sequence without its list (an import interrupted by an older tka, or a
/// deleted file), is [`StoreError::Corrupt`]: the newer list's revocations
/// would otherwise be silently missing. Importing that list again repairs it.
pub fn verified_revoked_serials(store: &Store, anchors: &TrustAnchors) -> Result<HashSet<String>> {
    verified_revoked_serials_with(store, &store.state()?, anchors)
}

/// [`verified_revoked_serials`] with the store's state already read (a
/// caller that holds it reads `state.json` once).
pub(crate) fn verified_revoked_serials_with(
    store: &Store,
    state: &StoreState,
    anchors: &TrustAnchors,
) -> Result<HashSet<String>> {
    let entries = store.revocation_list_entries()?;
    let mut out = HashSet::new();
    for (key, text) in &entries {
        let Some(claims) = installed_claims(key, text, anchors)? else {
            continue;
        };
        if let Some(&recorded) = state.revocation_seq.get(key) {
            if claims.seq < recorded {
                return Err(StoreError::corrupt(
                    &store.dir().join("revocations").join(format!("{key}.jws")),
                    format!(
                        "holds sequence {}, but state.json records {recorded} for it (an interrupted import?); \
                         import token revocation list {} sequence {recorded} or newer again",
                        claims.seq, claims.iss
                    ),
                )
                .into());
            }
        }
        out.extend(claims.serials());
    }
    for (key, &recorded) in &state.revocation_seq {
        if entries.iter().any(|(k, _)| k == key) {
            continue;
        }
        let in_force = match split_list_key(key) {
            (Some(fp), _) => anchors.roots().iter().any(|r| r.fingerprint == fp),
            // An old-layout sequence is superseded once a bound list of that id exists.
            (None, id) => !state.revocation_seq.keys().any(|k| matches!(split_list_key(k), (Some(_), i) if i == id)),
        };
        if in_force {
            return Err(StoreError::corrupt(
                &store.dir().join("revocations").join(format!("{key}.jws")),
                format!(
                    "missing, but state.json records sequence {recorded} for it (an interrupted import?); \
                     import token revocation list {} sequence {recorded} or newer again",
                    split_list_key(key).1
                ),
            )
            .into());
        }
    }
    Ok(out)
}

/// The claims of the list installed under `key`, re-verified against the
/// root the key names (every root for an old-layout key); `None` when that
/// root is no longer trusted.
pub(crate) fn installed_claims(
    key: &str,
    text: &str,
    anchors: &TrustAnchors,
) -> Result<Option<ListClaims>, VerifyError> {
    let (root, id) = split_list_key(key);
    let claims = match root {
        None => reverify_installed(text, anchors)?,
        Some(fp) => {
            let Some(r) = anchors.roots().iter().find(|r| r.fingerprint == fp) else {
                return Ok(None);
            };
            reverify_installed(text, &TrustAnchors::from_der(std::slice::from_ref(&r.der))?)?
        }
    };
    if claims.iss != id {
        return Err(VerifyError::RevocationNotTrusted {
            what: WHAT_LIST,
            detail: format!("the list installed as {key} is list {}; import a current list", claims.iss),
        });
    }
    Ok(Some(claims))
}

pub(crate) fn reverify_installed(text: &str, anchors: &TrustAnchors) -> Result<ListClaims, VerifyError> {
    let unverified = decode_unverified(text).map_err(|e| VerifyError::RevocationNotTrusted {
        what: WHAT_LIST,
        detail: format!("an installed list cannot be read ({e}); import a current list"),
    })?;
    match verify_list(text, anchors, &[], unverified.iat) {
        Ok(v) => Ok(v.claims),
        Err(e) => Err(VerifyError::RevocationNotTrusted {
            what: WHAT_LIST,
            detail: format!(
                "installed list {} sequence {} no longer verifies ({e}); importing a current list replaces it",
                unverified.iss, unverified.seq
            ),
        }),
    }
}

/// Trust data for comparing activations around an import: like
/// [`TrustData::from_store`], but an installed list that no longer verifies
/// still contributes its serials (the import may be replacing it).
pub(crate) fn lenient_trust(store: &Store) -> Result<TrustData> {
    match TrustData::from_store(store) {
        Ok(t) => Ok(t),
        Err(Error::Verify(VerifyError::RevocationNotTrusted { .. }))
        | Err(Error::Store(StoreError::Corrupt { .. })) => {
            let stored = store.roots()?;
            let root_products = root_products(&stored);
            let anchors = anchors_from_stored(&stored)?;
            let crls = store.crls()?.iter().map(|d| Crl::parse(d)).collect::<Result<Vec<_>, _>>()?;
            let mut revoked_serials = HashSet::new();
            for text in store.revocation_lists()? {
                if let Ok(c) = decode_unverified(&text) {
                    revoked_serials.extend(c.serials());
                }
            }
            let certificates = store.certificates()?;
            Ok(TrustData { anchors, crls, revoked_serials, root_products, certificates })
        }
        Err(e) => Err(e),
    }
}

impl TrustData {
    /// Reads the store's roots, revocation data and known certificates
    /// ([`Store::certificates`]). A damaged CRL is an error, never silently
    /// skipped.
    pub fn from_store(store: &Store) -> Result<Self> {
        Self::from_store_with(store, &store.state()?)
    }

    /// [`TrustData::from_store`] with the store's state already read.
    pub(crate) fn from_store_with(store: &Store, state: &StoreState) -> Result<Self> {
        let stored = store.roots()?;
        let root_products = root_products(&stored);
        let anchors = anchors_from_stored(&stored)?;
        let crls = store.crls()?.iter().map(|d| Crl::parse(d)).collect::<Result<Vec<_>, _>>()?;
        let revoked_serials = verified_revoked_serials_with(store, state, &anchors)?;
        let certificates = store.certificates()?;
        Ok(TrustData { anchors, crls, revoked_serials, root_products, certificates })
    }
}
