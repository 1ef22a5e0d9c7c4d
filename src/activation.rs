//! The machine side: install a token after verifying it, report status,
//! deactivate. Verification itself is [`crate::verify`]; storage is
//! [`crate::store`]; this module is the short glue between them, and the
//! API an application uses to ask "is product P activated here?".

use crate::error::{Error, Result, VerifyError};
use crate::machine::MachineIdentity;
use crate::pki::LeafRole;
use crate::pki::{Crl, RootFingerprint, TrustAnchors};
use crate::store::{Store, TrustedRoot, DEFAULT_CLOCK_TOLERANCE_SECS};
use crate::token::decode_unverified;
use crate::verify::{verify_token, MachineCheck, VerifiedToken, VerifyContext};
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
}

impl TrustData {
    /// Reads the store's roots and revocation data. A damaged CRL is an
    /// error, never silently skipped.
    pub fn from_store(store: &Store) -> Result<Self> {
        let stored = store.roots()?;
        let root_products = root_products(&stored);
        let anchors = anchors_from_stored(&stored)?;
        let crls = store.crls()?.iter().map(|d| Crl::parse(d)).collect::<Result<Vec<_>, _>>()?;
        let revoked_serials = crate::revocation::verified_revoked_serials(store, &anchors)?;
        Ok(TrustData { anchors, crls, revoked_serials, root_products })
    }

    /// The anchors that may activate `product`: every trusted root whose
    /// product scope includes it or that has none.
    pub fn anchors_for(&self, product: &str) -> TrustAnchors {
        self.anchors.filtered(|r| self.root_products.get(&r.fingerprint).is_none_or(|p| p.iter().any(|p| p == product)))
    }

    /// [`verify_token`] for `product` with `ctx`'s anchors narrowed to
    /// [`TrustData::anchors_for`]. A token whose chain leads only to a root
    /// scoped to other products is refused with
    /// [`VerifyError::RootNotTrustedForProduct`].
    fn verify_for_product(
        &self,
        token: &str,
        ctx: &VerifyContext<'_>,
        product: &str,
    ) -> Result<VerifiedToken, VerifyError> {
        let scoped = self.anchors_for(product);
        let result = verify_token(token, &VerifyContext { anchors: &scoped, ..ctx.clone() });
        if !matches!(result, Err(VerifyError::UntrustedRoot { .. }))
            || scoped.roots().len() == self.anchors.roots().len()
        {
            return result;
        }
        match crate::pki::validate_path(&jws_chain(token)?, &self.anchors, ctx.now, ctx.crls, LeafRole::TokenSigner) {
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

/// The `x5c` chain of a token.
fn jws_chain(token: &str) -> Result<Vec<Vec<u8>>, VerifyError> {
    Ok(crate::jws::decode(token, crate::jws::TOKEN_TYP)?.x5c)
}

/// What `status` found for one product.
#[derive(Debug, Clone)]
pub enum ProductStatus {
    /// A token is installed and verifies now.
    Active(Box<VerifiedToken>),
    /// A token is installed but no longer verifies (expired, revoked, moved machine ...).
    Invalid {
        /// The product.
        product: String,
        /// Why.
        reason: VerifyError,
    },
    /// No token is installed for the product.
    NotInstalled {
        /// The product.
        product: String,
    },
}

impl ProductStatus {
    /// Whether the product is activated.
    pub fn is_active(&self) -> bool {
        matches!(self, ProductStatus::Active(_))
    }
}

/// Largest clock-rollback tolerance [`activate_with_tolerance`] accepts:
/// one day, the default. A tolerance can be made smaller, never larger: a
/// larger one would let a clock wound back by weeks revive an expired token.
pub const MAX_CLOCK_TOLERANCE_SECS: i64 = crate::clock::DAY;

/// Checks a clock-rollback tolerance, seconds: from 0 to
/// [`MAX_CLOCK_TOLERANCE_SECS`]. Returns it.
pub fn check_clock_tolerance(secs: i64) -> Result<i64> {
    if (0..=MAX_CLOCK_TOLERANCE_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(Error::Usage(format!(
            "clock tolerance of {secs} seconds is outside 0 to {MAX_CLOCK_TOLERANCE_SECS} seconds (one day, the default)"
        )))
    }
}

/// Verifies `token` for this machine and installs it. The store's clock
/// high-water mark is checked and raised under the store lock, so a token
/// is never installed on a machine whose clock was wound back.
///
/// With `pinned_roots`, the token's chain must end at one of them
/// ([`VerifyError::WrongRoot`] otherwise), whatever else the store trusts;
/// empty accepts any root the store trusts.
pub fn activate(
    store: &Store,
    token: &str,
    identify: IdentifyFn<'_>,
    pinned_roots: &[RootFingerprint],
    now: i64,
) -> Result<VerifiedToken> {
    activate_with_tolerance(store, token, identify, pinned_roots, now, DEFAULT_CLOCK_TOLERANCE_SECS)
}

/// [`activate`] with an explicit clock-rollback tolerance, seconds, at most
/// [`MAX_CLOCK_TOLERANCE_SECS`] (checked before anything is read).
pub fn activate_with_tolerance(
    store: &Store,
    token: &str,
    identify: IdentifyFn<'_>,
    pinned_roots: &[RootFingerprint],
    now: i64,
    tolerance: i64,
) -> Result<VerifiedToken> {
    check_clock_tolerance(tolerance)?;
    let token = token.trim();
    let (_, claims) = decode_unverified(token)?;
    let identity = identify(&claims.aud)?;
    let trust = TrustData::from_store(store)?;
    if trust.anchors.is_empty() {
        return Err(Error::Usage("this store trusts no root yet: run `tka trust add ROOT.pem` first".into()));
    }
    let lock = store.lock()?;
    let mut state = lock.state()?;
    let ctx = VerifyContext {
        anchors: &trust.anchors,
        pinned_roots,
        now,
        product: Some(&claims.aud),
        machine: MachineCheck::Identity(&identity),
        crls: &trust.crls,
        revoked_serials: &trust.revoked_serials,
        clock: Some((state.clock_high_water, tolerance)),
    };
    let verified = trust.verify_for_product(token, &ctx, &claims.aud)?;
    state.observe(now);
    lock.save_state(&state)?;
    lock.put_token(&verified.claims.aud, token, now)?;
    Ok(verified)
}

/// Re-verifies the installed token for `product` at `now`. Reads only.
/// `pinned_roots` as in [`activate`].
pub fn status(
    store: &Store,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
) -> Result<ProductStatus> {
    let trust = TrustData::from_store(store)?;
    let state = store.state()?;
    let clock = Some((state.clock_high_water, DEFAULT_CLOCK_TOLERANCE_SECS));
    status_with(store, &trust, product, identity, pinned_roots, now, clock)
}

/// [`status`] with trust data and clock already read (for listing many products).
pub fn status_with(
    store: &Store,
    trust: &TrustData,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
    clock: Option<(i64, i64)>,
) -> Result<ProductStatus> {
    let Some(installed) = store.token(product)? else {
        return Ok(ProductStatus::NotInstalled { product: product.into() });
    };
    let ctx = VerifyContext {
        anchors: &trust.anchors,
        pinned_roots,
        now,
        product: Some(product),
        machine: MachineCheck::Identity(identity),
        crls: &trust.crls,
        revoked_serials: &trust.revoked_serials,
        clock,
    };
    Ok(match trust.verify_for_product(&installed.token, &ctx, product) {
        Ok(v) => ProductStatus::Active(Box::new(v)),
        Err(reason) => ProductStatus::Invalid { product: product.into(), reason },
    })
}

/// The question an application asks: is `product` activated on this
/// machine at `now`? `Ok` carries the verified token (features, expiry);
/// `Err` says why not ([`VerifyError::NotActivated`] when nothing is installed).
///
/// An application passes its vendor's root fingerprint(s) as
/// `pinned_roots` (compiled in, see [`RootFingerprint`]): then a token
/// self-issued under another root that the store was made to trust (e.g.
/// through `TKA_STORE`) is refused with [`VerifyError::WrongRoot`]. Empty
/// accepts any root the store trusts.
pub fn check_activated(
    store: &Store,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
) -> Result<VerifiedToken> {
    match status(store, product, identity, pinned_roots, now)? {
        ProductStatus::Active(v) => Ok(*v),
        ProductStatus::Invalid { reason, .. } => Err(reason.into()),
        ProductStatus::NotInstalled { product } => Err(VerifyError::NotActivated { product }.into()),
    }
}

/// Removes the installed token for `product`. Returns whether one was installed.
pub fn deactivate(store: &Store, product: &str) -> Result<bool> {
    Ok(store.lock()?.remove_token(product)?)
}

/// Raises the store's clock high-water mark to `now` (never lowers it).
/// The CLI calls this with the real clock on every store command.
pub fn observe_clock(store: &Store, now: i64) -> Result<()> {
    let lock = store.lock()?;
    let mut state = lock.state()?;
    if now > state.clock_high_water {
        state.observe(now);
        lock.save_state(&state)?;
    }
    Ok(())
}

/// Largest token bundle read, bytes (about 70,000 tokens).
pub const MAX_BUNDLE_SIZE: u64 = 256 * 1024 * 1024;

/// Picks this machine's token out of a token bundle (JSON Lines with
/// `product`, `cmid` and `token`, as `tka token issue-bulk --bundle`
/// writes): the first line whose CMID is this machine's for that product.
/// Lines are read one at a time; none may exceed the token size limit.
pub fn token_from_bundle(bundle: impl std::io::BufRead, identify: IdentifyFn<'_>) -> Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Line {
        product: String,
        cmid: String,
        token: String,
    }
    use std::io::{BufRead, Read};
    let mut bundle = bundle;
    let limit = crate::jws::MAX_JWS_SIZE + 1024;
    let mut mine: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for n in 0.. {
        // Read at most one line's limit (plus "\r\n"): an overlong line is
        // refused without being held in memory.
        let mut raw = Vec::new();
        let got = (&mut bundle)
            .take(limit as u64 + 2)
            .read_until(b'\n', &mut raw)
            .map_err(|e| Error::Usage(format!("bundle line {}: {e}", n + 1)))?;
        if got == 0 {
            break;
        }
        if raw.last() == Some(&b'\n') {
            raw.pop();
            if raw.last() == Some(&b'\r') {
                raw.pop();
            }
        }
        if raw.len() > limit {
            return Err(VerifyError::TooLarge { what: "bundle line", limit }.into());
        }
        let line = String::from_utf8(raw)
            .map_err(|_| Error::Usage(format!("bundle line {}: stream did not contain valid UTF-8", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line)
            .map_err(|e| VerifyError::Malformed { what: "bundle", detail: format!("line {}: {e}", n + 1) })?;
        let cmid = match mine.get(&l.product) {
            Some(c) => c.clone(),
            None => {
                let c = identify(&l.product)?.cmid().to_string();
                mine.insert(l.product.clone(), c.clone());
                c
            }
        };
        if l.cmid == cmid {
            return Ok(Some(l.token));
        }
    }
    Ok(None)
}
