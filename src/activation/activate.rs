//! The machine side: install a token after verifying it, report status,
//! deactivate. Verification itself is [`crate::core::verify`]; storage is
//! [`crate::activation::store`]; this module is the short glue between them, and the
//! API an application uses to ask "is product P activated here?".

use crate::activation::store::{Store, StoreLock, DEFAULT_CLOCK_TOLERANCE_SECS};
use crate::activation::trust::{IdentifyFn, TrustData};
pub use crate::core::error::{BundleRefusal, BundleScan, MAX_BUNDLE_PRODUCTS};
use crate::core::error::{Error, Result, VerifyError};
use crate::core::machine::MachineIdentity;
use crate::core::pki::RootFingerprint;
use crate::core::token::decode_unverified;
use crate::core::verify::VerifiedToken;

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
pub const MAX_CLOCK_TOLERANCE_SECS: i64 = crate::core::clock::DAY;

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
    activate_with_chain(store, token, &[], identify, pinned_roots, now, tolerance)
}

/// [`activate_with_tolerance`] for a token that may be compact (no `x5c`):
/// `chain` (DER certificates, such as the issuer's signer and intermediate
/// certificates) is added to the certificates the store knows
/// ([`Store::add_certificates`]) and the token is verified with them. The
/// certificates are stored, under the store lock, only when the token
/// verifies; a refused activation leaves every file as it was. Later
/// compact tokens from the same signer then activate without a chain.
///
/// The certificates are not trusted by being given: the token's chain must
/// still end at a root the store trusts.
pub fn activate_with_chain(
    store: &Store,
    token: &str,
    chain: &[Vec<u8>],
    identify: IdentifyFn<'_>,
    pinned_roots: &[RootFingerprint],
    now: i64,
    tolerance: i64,
) -> Result<VerifiedToken> {
    check_clock_tolerance(tolerance)?;
    let token = token.trim();
    let (_, claims) = decode_unverified(token)?;
    let identity = identify(&claims.aud)?;
    let mut trust = store_trust(store)?;
    trust.certificates.extend(chain.iter().cloned());
    install(store, &trust, token, &claims.aud, &identity, pinned_roots, now, tolerance, chain)
}

/// The store's trust data; a store that trusts no root is a usage error.
fn store_trust(store: &Store) -> Result<TrustData> {
    let trust = TrustData::from_store(store)?;
    if trust.anchors.is_empty() {
        return Err(Error::NoTrustedRoot);
    }
    Ok(trust)
}

/// Verifies `token` for `product` on the machine `identity` and installs
/// it, under the store lock (the clock mark checked and raised); `chain`
/// (known certificates the trust data already holds) is stored with it.
#[allow(clippy::too_many_arguments)]
fn install(
    store: &Store,
    trust: &TrustData,
    token: &str,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
    tolerance: i64,
    chain: &[Vec<u8>],
) -> Result<VerifiedToken> {
    let lock = store.lock()?;
    let mut state = lock.state()?;
    let clock = Some((state.clock_high_water, tolerance));
    let verified = trust.verify_for_product(token, product, identity, pinned_roots, now, clock)?;
    if !chain.is_empty() {
        lock.add_certificates(chain)?;
    }
    state.observe(now);
    lock.save_state(&state)?;
    lock.put_token(&verified.claims.aud, token, now)?;
    Ok(verified)
}

/// How a status check treats the store's clock high-water mark (the
/// latest *now* the store has accepted; a *now* more than the tolerance
/// before it is [`VerifyError::ClockRollback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMark {
    /// `now` is the system clock: the mark is raised to `now` (never
    /// lowered) under the store lock, and `now` is checked against it with
    /// [`DEFAULT_CLOCK_TOLERANCE_SECS`]. Needs write access to the store:
    /// without it the check fails with the store's I/O error, it never
    /// answers without raising the mark.
    Raise,
    /// As [`ClockMark::Raise`], but nothing is written: `now` is checked
    /// against the mark as it stands, which is not raised. For a process
    /// that cannot write the store; the mark then only moves when a writer
    /// (an activation, `tka status`) runs.
    ReadOnly,
    /// `now` is a time asked about, not the clock (`tka status --at`): it
    /// is checked against the mark with no tolerance, nothing is written.
    At,
}

/// Re-verifies the installed token for each of `products` (every installed
/// product when `None`), in order, at `now`, with this machine's identity
/// from `identify`. `mark` says how the store's clock high-water mark is
/// checked and whether it is raised ([`ClockMark`]); with
/// [`ClockMark::Raise`] the mark is raised under the store lock before
/// anything is verified, so it moves even when no product is active.
/// `pinned_roots` as in [`activate`].
pub fn statuses(
    store: &Store,
    products: Option<&[String]>,
    identify: IdentifyFn<'_>,
    pinned_roots: &[RootFingerprint],
    now: i64,
    mark: ClockMark,
) -> Result<Vec<ProductStatus>> {
    let (lock, clock, trust) = marked_trust(store, now, mark)?;
    let products: Vec<String> = match products {
        Some(p) => p.to_vec(),
        None => store.tokens()?.into_iter().map(|t| t.product).collect(),
    };
    let mut out = Vec::with_capacity(products.len());
    for p in &products {
        let identity = identify(p)?;
        out.push(status_with(store, &trust, p, &identity, pinned_roots, now, clock)?);
    }
    drop(lock);
    Ok(out)
}

/// The first half of a status check: the store's clock mark checked and
/// (with [`ClockMark::Raise`]) raised as [`statuses`] describes, and the
/// trust data, read with the same `state.json`. Returns the store lock
/// (held by the caller until it has verified; `None` unless
/// [`ClockMark::Raise`]), the clock check for [`status_with`] and the
/// trust data.
fn marked_trust(store: &Store, now: i64, mark: ClockMark) -> Result<(Option<StoreLock<'_>>, ClockCheck, TrustData)> {
    let (lock, state) = match mark {
        ClockMark::Raise => {
            // The lock without its sweep of temporary files unless the
            // mark moves (then it writes, and sweeps first).
            let lock = store.lock_for_clock()?;
            let mut state = lock.state()?;
            if now > state.clock_high_water {
                state.observe(now);
                lock.save_state_swept(&state)?;
            }
            (Some(lock), state)
        }
        ClockMark::ReadOnly | ClockMark::At => (None, store.state()?),
    };
    let tolerance = if mark == ClockMark::At { 0 } else { DEFAULT_CLOCK_TOLERANCE_SECS };
    let clock = Some((state.clock_high_water, tolerance));
    let trust = TrustData::from_store_with(store, &state)?;
    Ok((lock, clock, trust))
}

/// The store's clock mark and the tolerance, or `None` for no clock check.
type ClockCheck = Option<(i64, i64)>;

/// Re-verifies the installed token for `product` at `now`, the system
/// clock: raises the store's clock high-water mark to `now` under the store
/// lock, as [`ClockMark::Raise`] (so it needs write access to the store).
/// `pinned_roots` as in [`activate`].
pub fn status(
    store: &Store,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
) -> Result<ProductStatus> {
    status_marked(store, product, identity, pinned_roots, now, ClockMark::Raise)
}

/// [`status`] for one product with `mark` as in [`statuses`].
fn status_marked(
    store: &Store,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
    mark: ClockMark,
) -> Result<ProductStatus> {
    // `statuses` for one product, without copying the identity.
    let (lock, clock, trust) = marked_trust(store, now, mark)?;
    let status = status_with(store, &trust, product, identity, pinned_roots, now, clock)?;
    drop(lock);
    Ok(status)
}

/// [`status`] with trust data and clock check already read; reads only:
/// `clock` is the store's mark and the tolerance, or `None` for no check
/// ([`statuses`] reads and raises the mark).
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
    Ok(match trust.verify_for_product(&installed.token, product, identity, pinned_roots, now, clock) {
        Ok(v) => ProductStatus::Active(Box::new(v)),
        Err(reason) => ProductStatus::Invalid { product: product.into(), reason },
    })
}

/// The question an application asks: is `product` activated on this
/// machine at `now`, the system clock? `Ok` carries the verified token
/// (features, expiry); `Err` says why not ([`VerifyError::NotActivated`]
/// when nothing is installed).
///
/// The clock guard: the store's clock high-water mark is raised to `now`
/// under the store lock, and a `now` more than a day
/// ([`DEFAULT_CLOCK_TOLERANCE_SECS`]) before it is refused with
/// [`VerifyError::ClockRollback`]; an application that checks at every
/// start thus notices a clock wound back. Raising the mark needs write
/// access to the store: a process that cannot write it gets the store's I/O
/// error (permission denied), never an answer; it calls
/// [`check_activated_read_only`] instead.
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
    activated(status_marked(store, product, identity, pinned_roots, now, ClockMark::Raise)?)
}

/// [`check_activated`] for a process that cannot write the store (e.g. one
/// owned by root): never writes. `now` is still checked against the
/// store's clock high-water mark ([`VerifyError::ClockRollback`] more than
/// a day before it), but the mark is not raised, so it only guards up to
/// the latest *now* a writer (an activation, `tka status`,
/// [`check_activated`]) recorded.
pub fn check_activated_read_only(
    store: &Store,
    product: &str,
    identity: &MachineIdentity,
    pinned_roots: &[RootFingerprint],
    now: i64,
) -> Result<VerifiedToken> {
    activated(status_marked(store, product, identity, pinned_roots, now, ClockMark::ReadOnly)?)
}

/// A status as [`check_activated`]'s answer.
fn activated(status: ProductStatus) -> Result<VerifiedToken> {
    match status {
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

/// Largest token bundle read, bytes (16 GiB: about four million tokens of
/// 4 KB). A bundle is streamed line by line, never held in memory; this
/// bounds only how long a scan can run.
pub const MAX_BUNDLE_SIZE: u64 = 16 << 30;

/// Largest bundle line, bytes: a token at its size limit and its labels.
/// A longer line is skipped (read through, never held).
pub const MAX_BUNDLE_LINE: usize = crate::core::jws::MAX_JWS_SIZE + 1024;

/// What [`activate_from_bundle`] takes from a bundle, and how.
#[derive(Debug, Clone, Copy)]
pub struct BundleOptions<'a> {
    /// How messages name the bundle (its path).
    pub name: &'a str,
    /// Only lines labelled for this product, whose token is for it; `None`:
    /// any product (each line's token must still be for its label's product).
    pub product: Option<&'a str>,
    /// Pinned roots, as in [`activate`].
    pub pinned_roots: &'a [RootFingerprint],
    /// The time of the activation.
    pub now: i64,
    /// Clock-rollback tolerance, seconds, as in [`activate_with_tolerance`].
    pub clock_tolerance: i64,
}

/// A token taken from a bundle and installed.
#[derive(Debug, Clone)]
pub struct BundleActivation {
    /// The line it came from, from 1.
    pub line: u64,
    /// The installed token.
    pub verified: VerifiedToken,
    /// What the scan saw up to that line.
    pub scan: BundleScan,
}

use crate::core::bundle::BundleLineRef as RawBundleLine;

/// How [`next_line`] ended.
enum LineRead {
    End,
    Line,
    TooLong,
}

/// Reads the next line into `buf` (without its line break), holding at
/// most `limit` + 2 bytes: a longer line is read through to its end and
/// reported as [`LineRead::TooLong`]. `total` counts the bytes read.
fn next_line(
    r: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
    total: &mut u64,
) -> std::io::Result<LineRead> {
    use std::io::{BufRead, Read};
    buf.clear();
    let got = r.by_ref().take(limit as u64 + 2).read_until(b'\n', buf)?;
    *total += got as u64;
    if got == 0 {
        return Ok(LineRead::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() == limit + 2 {
        // Overlong: skip the rest of the line without keeping it.
        while *total <= MAX_BUNDLE_SIZE {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            let (used, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            r.consume(used);
            *total += used as u64;
            if end {
                break;
            }
        }
        buf.clear();
        return Ok(LineRead::TooLong);
    }
    Ok(if buf.len() > limit { LineRead::TooLong } else { LineRead::Line })
}

/// Activates this machine's token from a token bundle (JSON Lines with
/// `product`, `cmid` and `token`, as `tka token issue-bulk --bundle`
/// writes).
///
/// The labels are not signed, so they only select: every line labelled
/// with this machine's CMID for its product (and for `opts.product`, if
/// given) is verified in full, exactly as [`activate`] verifies a token,
/// with the label's product as the product the token must be for; the first
/// that verifies is installed. A line that is refused, labelled for another
/// machine or product, or not a bundle line at all does not stop the scan.
/// Lines for another machine or product are skipped before any signature
/// or certificate check; this machine's identity is computed once per
/// product (`identify` is called at most once for each product, and at most
/// for [`MAX_BUNDLE_PRODUCTS`] of them).
///
/// The bundle is streamed: one line at a time, at most [`MAX_BUNDLE_LINE`]
/// bytes of it held, at most [`MAX_BUNDLE_SIZE`] bytes read
/// ([`VerifyError::TooLarge`] beyond). When no line verifies, the verdict is
/// [`VerifyError::NoTokenInBundle`] with what the scan saw, and the store is
/// unchanged.
pub fn activate_from_bundle(
    store: &Store,
    bundle: impl std::io::BufRead,
    identify: IdentifyFn<'_>,
    opts: &BundleOptions<'_>,
) -> Result<BundleActivation> {
    check_clock_tolerance(opts.clock_tolerance)?;
    let trust = store_trust(store)?;
    let mut scan = BundleScan { product: opts.product.map(str::to_string), ..Default::default() };
    let mut identities: std::collections::HashMap<String, MachineIdentity> = std::collections::HashMap::new();
    let mut bundle = bundle;
    let mut buf = Vec::new();
    let mut total = 0u64;
    loop {
        let read =
            next_line(&mut bundle, &mut buf, MAX_BUNDLE_LINE, &mut total).map_err(|e| Error::io(opts.name, e))?;
        if total > MAX_BUNDLE_SIZE {
            return Err(VerifyError::TooLarge { what: "bundle", limit: MAX_BUNDLE_SIZE as usize }.into());
        }
        let malformed = |scan: &mut BundleScan, reason: VerifyError| {
            scan.malformed += 1;
            if scan.first_malformed.is_none() {
                scan.first_malformed = Some(BundleRefusal { line: scan.lines, reason });
            }
        };
        match read {
            LineRead::End => break,
            LineRead::TooLong => {
                scan.lines += 1;
                malformed(&mut scan, VerifyError::TooLarge { what: "bundle line", limit: MAX_BUNDLE_LINE });
                continue;
            }
            LineRead::Line => scan.lines += 1,
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            malformed(&mut scan, VerifyError::Malformed { what: "bundle line", detail: "not UTF-8 text".into() });
            continue;
        };
        if text.trim().is_empty() {
            scan.blank += 1;
            continue;
        }
        let line: RawBundleLine = match crate::core::bundle::parse_line(text) {
            Ok(l) => l,
            Err(e) => {
                malformed(&mut scan, VerifyError::Malformed { what: "bundle line", detail: e.to_string() });
                continue;
            }
        };
        if opts.product.is_some_and(|p| p != line.product) {
            scan.other += 1;
            continue;
        }
        if !identities.contains_key(&*line.product) {
            if identities.len() >= MAX_BUNDLE_PRODUCTS {
                scan.unchecked += 1;
                continue;
            }
            let id = identify(&line.product)?;
            identities.insert(line.product.to_string(), id);
        }
        let identity = &identities[&*line.product];
        if line.cmid != identity.cmid() {
            scan.other += 1;
            continue;
        }
        scan.considered += 1;
        let token = line.token.trim();
        match install(
            store,
            &trust,
            token,
            &line.product,
            identity,
            opts.pinned_roots,
            opts.now,
            opts.clock_tolerance,
            &[],
        ) {
            Ok(verified) => return Ok(BundleActivation { line: scan.lines, verified, scan }),
            Err(Error::Verify(reason)) => {
                scan.refused += 1;
                let refusal = BundleRefusal { line: scan.lines, reason };
                if scan.first_refused.is_none() {
                    scan.first_refused = Some(refusal.clone());
                }
                scan.last_refused = Some(refusal);
            }
            Err(e) => return Err(e),
        }
    }
    Err(VerifyError::NoTokenInBundle { bundle: opts.name.to_string(), scan: Box::new(scan) }.into())
}
