//! Token revocation lists (signed JWS, `typ` `tka-revocations+jwt`).
//! Creation and import arrive with the rotation and revocation work; this
//! module already reads installed lists so verification consults them.

use crate::error::Result;
use crate::pki::TrustAnchors;
use crate::store::Store;
use std::collections::HashSet;

/// Serials revoked by the revocation lists installed in `store`.
pub fn installed_revoked_serials(store: &Store, _anchors: &TrustAnchors) -> Result<HashSet<String>> {
    let lists = store.revocation_lists()?;
    if !lists.is_empty() {
        return Err(crate::Error::Usage("token revocation lists are not supported by this version".into()));
    }
    Ok(HashSet::new())
}
