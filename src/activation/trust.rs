//! Root trust on a machine: the trust data a verification uses (anchors,
//! CRLs, revoked serials, product scopes) and adding a root to the store
//! ([`trust_root`]), with or without a vouching chain.

use crate::activation::store::{Store, TrustedRoot};
use crate::core::error::{Error, Result, VerifyError};
use crate::core::machine::MachineIdentity;
use crate::core::pki::{check_cross_certificate, check_root, check_valid_at, vouching_chain};
use crate::core::pki::{CertInfo, Crl, LeafRole, RootFingerprint, TrustAnchors};
use crate::core::verify::{token_chain, verify_token, MachineCheck, VerifiedToken, VerifyContext};
use std::collections::{BTreeMap, HashSet};

/// Identity of this machine for a given product (identities are salted per
/// product). The CLI passes the real machine; tests pass a fake.
pub type IdentifyFn<'a> = &'a dyn Fn(&str) -> Result<MachineIdentity>;

/// Trust anchors, CRLs and revoked serials, read from a store.
#[derive(Debug, Clone, Default)]
pub struct TrustData {
    /// Trusted roots.
    pub anchors: TrustAnchors,
    /// Installed CRLs.
    pub crls: Vec<Crl>,
    /// Token serials revoked by installed revocation lists.
    pub revoked_serials: HashSet<String>,
    /// Product scopes of the roots that have one: root fingerprint ->
    /// the products it may activate. A root not in the map may activate any.
    pub root_products: BTreeMap<String, Vec<String>>,
    /// Known, untrusted certificates (DER, the store's `certs/`): where the
    /// chain of a compact token (no `x5c`) is found.
    pub certificates: Vec<Vec<u8>>,
}

impl TrustData {
    /// The anchors that may activate `product`: every trusted root whose
    /// product scope includes it or that has none.
    pub fn anchors_for(&self, product: &str) -> TrustAnchors {
        self.anchors.filtered(|r| self.root_products.get(&r.fingerprint).is_none_or(|p| p.iter().any(|p| p == product)))
    }

    /// [`verify_token`] of `token` for `product` on the machine `identity`,
    /// with this trust data's CRLs and revoked serials and its anchors
    /// narrowed to [`TrustData::anchors_for`]; `clock` is the store's mark
    /// and the tolerance, or `None` for no clock check. A token whose chain
    /// leads only to a root scoped to other products is refused with
    /// [`VerifyError::RootNotTrustedForProduct`].
    pub(crate) fn verify_for_product(
        &self,
        token: &str,
        product: &str,
        identity: &MachineIdentity,
        pinned_roots: &[RootFingerprint],
        now: i64,
        clock: Option<(i64, i64)>,
    ) -> Result<VerifiedToken, VerifyError> {
        // No root with a product scope (the usual store): every anchor, uncopied.
        let narrowed;
        let scoped = if self.root_products.is_empty() {
            &self.anchors
        } else {
            narrowed = self.anchors_for(product);
            &narrowed
        };
        let ctx = VerifyContext {
            anchors: scoped,
            pinned_roots,
            now,
            product: Some(product),
            machine: MachineCheck::Identity(identity),
            crls: &self.crls,
            revoked_serials: &self.revoked_serials,
            clock,
            certificates: &self.certificates,
        };
        let result = verify_token(token, &ctx);
        if !matches!(result, Err(VerifyError::UntrustedRoot { .. }))
            || scoped.roots().len() == self.anchors.roots().len()
        {
            return result;
        }
        let jws = crate::core::jws::decode(token, crate::core::jws::TOKEN_TYP)?;
        let chain = token_chain(&jws, &self.certificates, &self.anchors, now)?;
        match crate::core::pki::validate_path(&chain, &self.anchors, now, &self.crls, LeafRole::TokenSigner) {
            Ok(path) => {
                let root = path.root();
                Err(VerifyError::RootNotTrustedForProduct {
                    root: root.subject.clone(),
                    product: product.to_string(),
                    allowed: self.root_products.get(&root.fingerprint).cloned().unwrap_or_default(),
                })
            }
            Err(_) => result,
        }
    }
}

/// The trust anchors of stored roots, each root trusted through a
/// cross-certificate with its vouching chain
/// ([`TrustAnchors::with_vouching`]).
pub fn anchors_from_stored(roots: &[TrustedRoot]) -> Result<TrustAnchors, VerifyError> {
    let ders: Vec<Vec<u8>> = roots.iter().map(|r| r.der.clone()).collect();
    let mut anchors = TrustAnchors::from_der(&ders)?;
    for r in roots {
        if let Some(chain) = &r.vouching {
            anchors = anchors.with_vouching(&r.fingerprint, chain)?;
        }
    }
    Ok(anchors)
}

/// Fingerprint -> product scope of the roots that have one.
pub(crate) fn root_products(roots: &[TrustedRoot]) -> BTreeMap<String, Vec<String>> {
    roots.iter().filter_map(|r| r.products.clone().map(|p| (r.fingerprint.clone(), p))).collect()
}
/// How a new root is vouched for in [`trust_root`].
#[derive(Debug, Clone, Default)]
pub struct TrustRootOptions<'a> {
    /// The SHA-256 fingerprint the root must have, in any form [`RootFingerprint::parse`] reads.
    pub fingerprint: Option<&'a str>,
    /// A cross-certificate (DER) for the root, signed by a root already trusted.
    pub cross: Option<&'a [u8]>,
    /// Which products the root may activate on this machine.
    pub products: ProductScope<'a>,
}

/// The product scope [`trust_root`] gives a root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProductScope<'a> {
    /// No choice made: a root already trusted keeps its scope; a new root
    /// vouched for by a cross-certificate takes the scope of the trusted
    /// root that signed it (a rollover does not widen what a vendor may
    /// activate); any other new root may activate every product.
    #[default]
    Unchanged,
    /// Only these products.
    Only(&'a [String]),
    /// Every product.
    All,
}

/// The result of [`trust_root`].
#[derive(Debug, Clone)]
pub struct TrustedRootAdded {
    /// The root.
    pub root: CertInfo,
    /// How it was vouched for, in words.
    pub vouched_by: String,
    /// The products it may activate (`None`: every product), as stored.
    pub products: Option<Vec<String>>,
}

/// Adds `root_der` to the roots `store` trusts, at `now`.
///
/// - With a cross-certificate: it must carry the root's exact subject and
///   key, be signed by a root the store already trusts and validate at
///   `now` ([`check_cross_certificate`]; installed CRLs consulted), and
///   grant what a root needs (no pathLenConstraint below 1, an extended key
///   usage, if any, that allows token signing:
///   [`VerifyError::CrossCertificateTooNarrow`]). The root is then stored
///   with its *vouching chain* (the cross-certificate and the root that
///   signed it, [`crate::core::pki::vouching_chain`]), and every path that ends at
///   it is held to the cross-certificate's validity, path length, extended
///   key usage and to the signing root's CRLs
///   ([`crate::core::pki::TrustAnchors::with_vouching`]). Its product scope is at
///   most the signing root's.
/// - With a fingerprint: the root's SHA-256 must equal it; the root is
///   trusted on its own (any vouching chain it had is dropped).
/// - With neither: allowed only for the store's first root (or a root it
///   already trusts, which keeps how it is trusted); any further root must
///   be vouched for.
///
/// The root must always be a proper self-signed CA ([`check_root`]), valid
/// at `now` ([`VerifyError::CertExpired`], [`VerifyError::CertNotYetValid`]),
/// and its key must not be the key of an issuing CA that signed the token
/// signer of an installed token ([`VerifyError::RootKeyIsIssuingCa`]).
/// `opts.products` sets the products it may activate ([`ProductScope`];
/// stored with the root, applied by
/// [`crate::activation::trust::TrustData::anchors_for`]). Everything from reading
/// the trusted roots to writing the new one runs under the store lock, so
/// the first-root rule holds against concurrent adds.
pub fn trust_root(store: &Store, root_der: &[u8], opts: &TrustRootOptions<'_>, now: i64) -> Result<TrustedRootAdded> {
    let root = CertInfo::parse(root_der)?;
    let mut vouched = Vec::new();
    if let Some(expected) = opts.fingerprint {
        let want = RootFingerprint::parse(expected)?;
        if !want.matches(&root) {
            return Err(VerifyError::FingerprintMismatch {
                subject: root.subject.clone(),
                expected: want.as_str().to_string(),
                found: root.fingerprint.clone(),
            }
            .into());
        }
        vouched.push("its fingerprint".to_string());
    }
    check_root(&root)?;
    check_valid_at(&root, now)?;
    // The whole check-then-write runs under the store lock: two concurrent
    // adds of different roots to an empty store must not both pass as "the
    // first root".
    let lock = store.lock()?;
    // Roots and CRLs only: an installed revocation list has no say here.
    let stored = lock.roots()?;
    let crls = lock.crls()?.iter().map(|d| Crl::parse(d)).collect::<Result<Vec<_>, _>>()?;
    let scope_of = |fp: &str| stored.iter().find(|r| r.fingerprint == fp).and_then(|r| r.products.clone());
    let anchors = anchors_from_stored(&stored)?;
    check_not_an_issuing_ca(&lock, &root, &anchors, now)?;
    // With a cross-certificate: (the signing root, its scope, the vouching chain).
    let mut cross_vouching = None;
    if let Some(cross_der) = opts.cross {
        let cross = CertInfo::parse(cross_der)?;
        let path = check_cross_certificate(&root, &cross, &anchors, now, &crls)?;
        let chain = vouching_chain(&path, &anchors)?;
        let signer = path.root().clone();
        vouched.push(format!("a cross-certificate from {}", signer.subject));
        let scope = scope_of(&signer.fingerprint);
        cross_vouching = Some((signer, scope, chain));
    }
    let existing = stored.iter().find(|r| r.der == root.der);
    let already = existing.is_some();
    if vouched.is_empty() {
        if already {
            vouched.push("already trusted".into());
        } else if anchors.is_empty() {
            vouched.push("first root of this store".into());
        } else {
            return Err(Error::Refused(format!(
                "this store already trusts {} root(s); a new root ({}) must be vouched for with --cross CROSS.pem \
                 (signed by a trusted root) or --fingerprint SHA256",
                anchors.roots().len(),
                root.subject
            )));
        }
    }
    let requested: Option<Option<Vec<String>>> = match opts.products {
        ProductScope::Only(p) => Some(Some(p.to_vec())),
        ProductScope::All => Some(None),
        ProductScope::Unchanged if already => Some(scope_of(&root.fingerprint)),
        ProductScope::Unchanged => None,
    };
    // A fingerprint makes the root an anchor on its own; a cross-certificate
    // alone makes it one held to the cross-certificate; neither keeps what
    // a root already trusted had.
    let (products, vouching) = match (&cross_vouching, opts.fingerprint) {
        (Some((signer, scope, chain)), None) => {
            (narrow_scope(requested, scope.as_deref(), &signer.subject)?, Some(chain.clone()))
        }
        _ => (
            requested.flatten(),
            if opts.fingerprint.is_some() { None } else { existing.and_then(|r| r.vouching.clone()) },
        ),
    };
    lock.add_root_vouched(&root.der, products.as_deref(), vouching.as_deref())?;
    let products = lock.roots()?.into_iter().find(|r| r.fingerprint == root.fingerprint).and_then(|r| r.products);
    Ok(TrustedRootAdded { root, vouched_by: vouched.join(" and "), products })
}

/// The product scope of a root trusted through a cross-certificate from
/// `signer` (whose scope is `signer_scope`, `None`: every product): what
/// was asked for (`None`: nothing asked, `Some(None)`: every product), but
/// never more than the signer may activate.
fn narrow_scope(
    requested: Option<Option<Vec<String>>>,
    signer_scope: Option<&[String]>,
    signer: &str,
) -> Result<Option<Vec<String>>> {
    let Some(allowed) = signer_scope else {
        return Ok(requested.flatten());
    };
    match requested {
        None => Ok(Some(allowed.to_vec())),
        Some(Some(p)) if p.iter().all(|p| allowed.contains(p)) => Ok(Some(p)),
        Some(asked) => Err(Error::Refused(format!(
            "a root vouched for by a cross-certificate from {signer} may activate at most what {signer} may ({}), \
             not {}",
            allowed.join(", "),
            asked.map(|p| p.join(", ")).unwrap_or_else(|| "every product".into())
        ))),
    }
}

/// A root's key must not be the key of an issuing CA: the CA certificate
/// that directly issued the token signer of an installed token (`x5c[1]`,
/// or for a compact token the signer's issuer among the store's known
/// certificates; not self-issued). Such a "root" would be the issuing CA
/// re-signed by its own key, free of the pathLen, validity and CRLs of its
/// real hierarchy.
fn check_not_an_issuing_ca(store: &Store, root: &CertInfo, anchors: &TrustAnchors, now: i64) -> Result<()> {
    let known = store.certificates()?;
    for installed in store.tokens()? {
        let Ok(jws) = crate::core::jws::decode(installed.token.trim(), crate::core::jws::TOKEN_TYP) else {
            continue;
        };
        let Ok(chain) = token_chain(&jws, &known, anchors, now) else {
            continue;
        };
        let Some(ca) = chain.get(1).and_then(|d| CertInfo::parse(d).ok()) else {
            continue;
        };
        if !ca.is_self_issued() && ca.spki_der == root.spki_der {
            return Err(VerifyError::RootKeyIsIssuingCa { root: root.subject.clone(), ca: ca.subject }.into());
        }
    }
    Ok(())
}
