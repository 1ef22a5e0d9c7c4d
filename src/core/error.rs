//! Errors. [`VerifyError`] is a verdict ("this token is not good here");
//! [`Error`] covers everything else a command can run into.
//!
//! Every message says what was checked and what was found, on one line.

use crate::core::agent_error::AgentError;
use crate::core::clock::rfc3339;
use crate::core::machine::errors::{BindingError, MachineError};
use crate::core::machine::report::MatchReport;
use crate::core::product_key::ProductKeyError;
use crate::core::store_error::StoreError;
use std::fmt;
use std::path::PathBuf;

/// Why a token, certificate chain or revocation list was refused.
///
/// The variants follow the ordered checks in `docs/verification.md`; each
/// names the rule it enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Step 1: the input is larger than the limit for its kind.
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// Step 1: the JWS compact form is broken (parts, base64url, UTF-8, JSON).
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Step 1: a JSON object repeats a member name (RFC 8725 §3.x, RFC 7515 §5.2).
    DuplicateKey {
        /// The repeated name.
        key: String,
    },
    /// Step 2: `alg` is not on the allow-list (PS256, RS256); covers `none` and HMAC.
    AlgorithmNotAllowed {
        /// The algorithm found.
        alg: String,
    },
    /// Step 2: `typ` is not the one expected for this kind of object.
    WrongType {
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// Step 2: a header parameter that lets the token pick its own key (`jwk`, `jku`, `x5u`).
    ForbiddenHeader {
        /// The parameter name.
        name: String,
    },
    /// Step 2: `crit` names an extension tka does not understand (RFC 7515 §4.1.11).
    UnknownCritical {
        /// The extension name.
        name: String,
    },
    /// Step 2: no `x5c` certificate chain in the header and no `kid`
    /// naming the signer certificate (a compact token needs one).
    MissingChain,
    /// Step 3: a compact token (no `x5c`) whose `kid` names no certificate
    /// the verifier knows (`VerifyContext::certificates`).
    UnknownSigner {
        /// The token's `kid`: the SHA-256 fingerprint of its signer certificate.
        kid: String,
    },
    /// Step 3: the chain is longer than allowed or a certificate could not be parsed.
    BadCertificate {
        /// Subject or position of the certificate.
        subject: String,
        /// What is wrong with it.
        detail: String,
    },
    /// Step 3: the chain does not end at a trusted root (RFC 5280 §6.1).
    UntrustedRoot {
        /// Issuer name the chain ended on.
        issuer: String,
    },
    /// Step 3: a certificate's notAfter is in the past (RFC 5280 §6.1.3 (a)(2)).
    CertExpired {
        /// The certificate.
        subject: String,
        /// Its notAfter.
        not_after: i64,
        /// The time of verification.
        now: i64,
    },
    /// Step 3: a certificate's notBefore is in the future (RFC 5280 §6.1.3 (a)(2)).
    CertNotYetValid {
        /// The certificate.
        subject: String,
        /// Its notBefore.
        not_before: i64,
        /// The time of verification.
        now: i64,
    },
    /// Step 3: a certificate signature does not verify under its issuer's key (RFC 5280 §6.1.3 (a)(1)).
    BadCertSignature {
        /// The certificate.
        subject: String,
    },
    /// Step 3: an issuing certificate is not a CA (basicConstraints, RFC 5280 §6.1.4 (k)).
    NotCa {
        /// The certificate.
        subject: String,
    },
    /// Step 3: an issuing certificate lacks keyCertSign (RFC 5280 §6.1.4 (n)).
    MissingKeyCertSign {
        /// The certificate.
        subject: String,
    },
    /// Step 3: pathLenConstraint exceeded (RFC 5280 §6.1.4 (l)-(m)).
    PathLenExceeded {
        /// The CA whose constraint was exceeded.
        subject: String,
    },
    /// Step 3: the token signer is a CA certificate; CA keys never sign tokens.
    SignerIsCa {
        /// The certificate.
        subject: String,
    },
    /// Step 3: the signer lacks the tka token-signing extended key usage.
    MissingSignerEku {
        /// The certificate.
        subject: String,
    },
    /// Step 3: the signer's keyUsage lacks digitalSignature.
    MissingDigitalSignature {
        /// The certificate.
        subject: String,
    },
    /// Step 3: a critical extension tka does not process (RFC 5280 §6.1.4 (o)).
    UnknownCriticalExtension {
        /// The certificate.
        subject: String,
        /// The extension OID.
        oid: String,
    },
    /// Step 3: an RSA key shorter than 2048 bits, or not RSA at all.
    WeakKey {
        /// The certificate.
        subject: String,
        /// What was found.
        detail: String,
    },
    /// Step 3: a certificate is on a CRL from its issuer.
    CertRevoked {
        /// The certificate.
        subject: String,
        /// Its serial in hex.
        serial: String,
    },
    /// Step 4: the JWS signature does not verify with the signer's key.
    BadSignature,
    /// Step 5: a certificate of the path carries a tka delegation
    /// (docs/verification.md) that does not allow this token: another
    /// product, a longer lifetime, or no expiry at all.
    OutsideDelegation {
        /// The delegated certificate.
        subject: String,
        /// What it does not allow.
        what: String,
    },
    /// Step 5: the token is for another product.
    WrongProduct {
        /// The product expected here.
        expected: String,
        /// The product in the token.
        found: String,
    },
    /// Step 5: the token is bound to another machine.
    WrongMachine {
        /// This machine's CMID.
        expected: String,
        /// The CMID in the token.
        found: String,
        /// Component comparison, when the token carries components.
        report: Option<Box<MatchReport>>,
    },
    /// Step 5: the token binds a component set no real machine produces
    /// (or its `sub` is not their CMID, or a weak binding it does not
    /// declare): no current issuer signs such a token.
    ImpossibleBinding {
        /// Which rule it breaks.
        reason: BindingError,
    },
    /// Step 5: `now` is before the token's `nbf`.
    TokenNotYetValid {
        /// The token's nbf.
        nbf: i64,
        /// The time of verification.
        now: i64,
    },
    /// Step 5: `now` is past the token's `exp` plus its grace period.
    TokenExpired {
        /// The token's exp.
        exp: i64,
        /// Grace period after exp, seconds.
        grace: i64,
        /// The time of verification.
        now: i64,
    },
    /// Step 5: the token's validity extends beyond its signer certificate's.
    TokenOutlivesSigner {
        /// The token's exp (or `None` for perpetual).
        exp: Option<i64>,
        /// The signer's notAfter.
        signer_not_after: i64,
    },
    /// Step 5: the token's serial is on an installed token revocation list.
    TokenRevoked {
        /// The token serial.
        serial: String,
    },
    /// Step 5: a required claim is missing or has the wrong type.
    BadClaims {
        /// What is wrong.
        detail: String,
    },
    /// Step 6: the token says it was issued after `now`.
    IssuedInFuture {
        /// The token's iat.
        iat: i64,
        /// The time of verification.
        now: i64,
    },
    /// Step 6: `now` is earlier than the store has already seen.
    ClockRollback {
        /// The time of verification.
        now: i64,
        /// The store's high-water mark.
        high_water: i64,
    },
    /// A CRL of a kind tka does not implement exactly (delta, partitioned
    /// or indirect, or with an unrecognised critical extension): refused,
    /// never applied as if it were complete (RFC 5280 §5.2, §6.3.3).
    UnsupportedCrl {
        /// What it is.
        detail: String,
    },
    /// A revocation list's sequence number is lower than one already installed.
    RevocationRollback {
        /// Sequence installed.
        installed: u64,
        /// Sequence offered.
        offered: u64,
    },
    /// Step 3: the chain ends at a trusted root, but not at one the caller
    /// pinned (an application insisting on its vendor's root).
    WrongRoot {
        /// Subject of the root the chain ends at.
        subject: String,
        /// The pinned fingerprints (lowercase hex).
        expected: Vec<String>,
        /// The fingerprint of the root the chain ends at.
        found: String,
    },
    /// A certificate's SHA-256 fingerprint is not the one the user expected.
    FingerprintMismatch {
        /// The certificate.
        subject: String,
        /// The fingerprint expected (lowercase hex).
        expected: String,
        /// The certificate's fingerprint.
        found: String,
    },
    /// A CRL or token revocation list is not acceptable: not signed by a
    /// CA or signer this machine can chain to a trusted root, issued in the
    /// future, or otherwise unusable.
    RevocationNotTrusted {
        /// `CRL` or `token revocation list`.
        what: &'static str,
        /// What was checked and found.
        detail: String,
    },
    /// Step 3: the chain leads to a trusted root, but that root is trusted
    /// here only for other products (its product scope in the store).
    RootNotTrustedForProduct {
        /// The root's subject.
        root: String,
        /// The token's product.
        product: String,
        /// The products the root may activate here.
        allowed: Vec<String>,
    },
    /// A CRL or token revocation list is past its next-update time and the
    /// caller asked for fresh revocation data (`--require-fresh`).
    RevocationStale {
        /// `CRL` or `token revocation list`, and whose.
        what: String,
        /// Its next-update time.
        next_update: i64,
        /// The time of the check.
        now: i64,
    },
    /// A cross-certificate grants less than a root needs, so it cannot
    /// vouch for one (at `trust add`), or no longer covers the path of a
    /// root it vouched for (at verification): a root trusted through a
    /// cross-certificate is held to the cross-certificate's constraints.
    CrossCertificateTooNarrow {
        /// The cross-certificate.
        subject: String,
        /// Which constraint is too narrow.
        limit: CrossLimit,
    },
    /// A new root's key is the key of an issuing CA (a CA certificate
    /// that directly issued a token signer of an installed token): an
    /// issuing CA re-signed as a "root" is refused as a trust anchor.
    RootKeyIsIssuingCa {
        /// The root offered.
        root: String,
        /// The issuing CA certificate with the same key.
        ca: String,
    },
    /// A token bundle holds no token for this machine (and product) that
    /// verifies: no line is labelled for it, or every such line was refused.
    NoTokenInBundle {
        /// The bundle.
        bundle: String,
        /// What the scan saw: lines read, skipped, refused and why.
        scan: Box<BundleScan>,
    },
    /// The product has no activation on this machine.
    NotActivated {
        /// The product.
        product: String,
    },
}

/// The constraint of a cross-certificate that is too narrow for a root
/// (see [`VerifyError::CrossCertificateTooNarrow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrossLimit {
    /// Its pathLenConstraint: a root signs issuing CAs, which sign token
    /// signers, so it needs at least 1 (or none).
    PathLen(u32),
    /// Its extended key usage (the OIDs it lists) leaves out tka token
    /// signing (and anyExtendedKeyUsage).
    ExtendedKeyUsage(Vec<String>),
}

impl fmt::Display for CrossLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrossLimit::PathLen(n) => write!(
                f,
                "its pathLenConstraint is {n}, and a root needs at least 1 (it signs issuing CAs, which sign token signers)"
            ),
            CrossLimit::ExtendedKeyUsage(oids) => {
                write!(f, "its extended key usage ({}) excludes tka token signing", oids.join(", "))
            }
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VerifyError::*;
        match self {
            TooLarge { what, limit } => write!(f, "{what} is larger than the {limit}-byte limit"),
            Malformed { what, detail } => write!(f, "malformed {what}: {detail}"),
            DuplicateKey { key } => write!(f, "duplicate JSON member {key:?}"),
            AlgorithmNotAllowed { alg } => {
                write!(f, "algorithm {alg:?} is not allowed: expected PS256 or RS256")
            }
            WrongType { expected, found } => {
                write!(f, "wrong typ: expected {expected:?}, found {found:?}")
            }
            ForbiddenHeader { name } => write!(
                f,
                "header parameter {name:?} is refused: the key must come from the x5c chain to a trusted root"
            ),
            UnknownCritical { name } => write!(f, "unknown critical header extension {name:?}"),
            MissingChain => {
                write!(f, "no x5c certificate chain and no kid in the token header: nothing names the signer")
            }
            UnknownSigner { kid } => write!(
                f,
                "the token carries no certificate chain and its signer certificate (kid {kid}) is not among the \
                 certificates known here; the issuer's certificate chain must be added once"
            ),
            BadCertificate { subject, detail } => write!(f, "certificate {subject}: {detail}"),
            UntrustedRoot { issuer } => {
                write!(f, "certificate chain does not lead to a trusted root (ends at issuer {issuer})")
            }
            CertExpired { subject, not_after, now } => {
                write!(f, "certificate {subject} expired at {}, now is {}", rfc3339(*not_after), rfc3339(*now))
            }
            CertNotYetValid { subject, not_before, now } => write!(
                f,
                "certificate {subject} is not valid before {}, now is {}",
                rfc3339(*not_before),
                rfc3339(*now)
            ),
            BadCertSignature { subject } => {
                write!(f, "certificate {subject} has a signature its issuer did not make")
            }
            NotCa { subject } => write!(f, "certificate {subject} issues certificates but is not a CA"),
            MissingKeyCertSign { subject } => {
                write!(f, "CA certificate {subject} lacks the keyCertSign key usage")
            }
            PathLenExceeded { subject } => {
                write!(f, "chain is longer than the path length CA {subject} allows")
            }
            SignerIsCa { subject } => {
                write!(f, "token signed by CA certificate {subject}: only token-signer certificates may sign tokens")
            }
            MissingSignerEku { subject } => {
                write!(f, "certificate {subject} lacks the tka token-signing extended key usage")
            }
            MissingDigitalSignature { subject } => {
                write!(f, "signer certificate {subject} lacks the digitalSignature key usage")
            }
            UnknownCriticalExtension { subject, oid } => {
                write!(f, "certificate {subject} has unknown critical extension {oid}")
            }
            WeakKey { subject, detail } => write!(f, "certificate {subject}: {detail}"),
            CertRevoked { subject, serial } => {
                write!(f, "certificate {subject} (serial {serial}) is revoked")
            }
            BadSignature => write!(f, "token signature does not verify with the signer certificate's key"),
            OutsideDelegation { subject, what } => {
                write!(f, "token outside the delegation of certificate {subject}: {what}")
            }
            WrongProduct { expected, found } => {
                write!(f, "wrong product: expected {expected:?}, token is for {found:?}")
            }
            WrongMachine { expected, found, report } => {
                write!(f, "token is bound to machine {found}, this machine is {expected}")?;
                if let Some(r) = report {
                    write!(f, " ({r})")?;
                }
                Ok(())
            }
            ImpossibleBinding { reason } => write!(f, "token binding refused: {reason}"),
            TokenNotYetValid { nbf, now } => {
                write!(f, "token is not valid before {}, now is {}", rfc3339(*nbf), rfc3339(*now))
            }
            TokenExpired { exp, grace, now } => {
                write!(f, "token expired at {}", rfc3339(*exp))?;
                if *grace > 0 {
                    write!(f, " (grace ended {})", rfc3339(exp + grace))?;
                }
                write!(f, ", now is {}", rfc3339(*now))
            }
            TokenOutlivesSigner { exp, signer_not_after } => write!(
                f,
                "token valid until {} outlives its signer certificate (expires {})",
                exp.map(rfc3339).unwrap_or_else(|| "forever".into()),
                rfc3339(*signer_not_after)
            ),
            TokenRevoked { serial } => write!(f, "token {serial} is revoked"),
            BadClaims { detail } => write!(f, "invalid token claims: {detail}"),
            IssuedInFuture { iat, now } => write!(
                f,
                "token was issued at {}, after now ({}): check the system clock",
                rfc3339(*iat),
                rfc3339(*now)
            ),
            ClockRollback { now, high_water } => write!(
                f,
                "clock moved backwards: now is {}, but this store has seen {}; fix the system clock",
                rfc3339(*now),
                rfc3339(*high_water)
            ),
            UnsupportedCrl { detail } => write!(f, "CRL refused: it is {detail}"),
            RevocationRollback { installed, offered } => write!(
                f,
                "revocation list sequence {offered} is older than the installed {installed}: refusing rollback"
            ),
            WrongRoot { subject, expected, found } => {
                let expected = match expected.as_slice() {
                    [one] => format!("the pinned root {one}"),
                    many => format!("one of the pinned roots {}", many.join(", ")),
                };
                write!(f, "token chain ends at root {subject} with fingerprint {found}, not at {expected}")
            }
            FingerprintMismatch { subject, expected, found } => {
                write!(f, "fingerprint mismatch for {subject}: expected {expected}, the certificate's is {found}")
            }
            RevocationNotTrusted { what, detail } => write!(f, "{what} refused: {detail}"),
            CrossCertificateTooNarrow { subject, limit } => {
                write!(f, "cross-certificate {subject} cannot vouch for a root: {limit}")
            }
            RootKeyIsIssuingCa { root, ca } => write!(
                f,
                "root {root} has the key of issuing CA {ca}, which signed the token signer of an installed token: \
                 an issuing CA is not a root"
            ),
            RootNotTrustedForProduct { root, product, allowed } => write!(
                f,
                "root {root} is not trusted for product {product:?} on this machine (only for {})",
                allowed.join(", ")
            ),
            RevocationStale { what, next_update, now } => write!(
                f,
                "{what} is stale: its next update was due {}, now is {}",
                rfc3339(*next_update),
                rfc3339(*now)
            ),
            NoTokenInBundle { bundle, scan } => fmt_no_token_in_bundle(f, bundle, scan),
            NotActivated { product } => write!(f, "{product} is not activated on this machine"),
        }
    }
}

/// "B holds no token for this machine (N lines read; ...)": what the scan
/// saw and the first and last reasons lines were refused.
fn fmt_no_token_in_bundle(f: &mut fmt::Formatter<'_>, bundle: &str, scan: &BundleScan) -> fmt::Result {
    let lines = |n: u64| if n == 1 { "1 line".to_string() } else { format!("{n} lines") };
    write!(f, "{bundle} holds no token for this machine")?;
    if let Some(p) = &scan.product {
        write!(f, " and product {p:?}")?;
    }
    write!(f, " ({} read; ", lines(scan.lines))?;
    match (&scan.first_refused, &scan.last_refused) {
        (Some(first), Some(last)) if scan.refused > 1 => write!(
            f,
            "{} labelled for it refused, the first: line {}: {}; the last: line {}: {}",
            scan.refused, first.line, first.reason, last.line, last.reason
        )?,
        (Some(first), _) => write!(f, "1 labelled for it refused: line {}: {}", first.line, first.reason)?,
        _ => write!(f, "none labelled for it")?,
    }
    if let Some(m) = &scan.first_malformed {
        match scan.malformed {
            1 => write!(f, "; 1 not a bundle line: line {}: {}", m.line, m.reason)?,
            n => write!(f, "; {n} not bundle lines, the first: line {}: {}", m.line, m.reason)?,
        }
    }
    if scan.unchecked > 0 {
        write!(f, "; {} for products beyond the first {} not checked", scan.unchecked, MAX_BUNDLE_PRODUCTS)?;
    }
    write!(f, ")")
}

impl std::error::Error for VerifyError {}

/// Why the issuer refused to issue a token for a request under its policy
/// (the entitlement, its seats, the batch). Nothing was signed or recorded
/// for it. Each names what was checked and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueRefusal {
    /// Every seat of the entitlement is taken by other machines.
    EntitlementFull {
        /// The entitlement, as it is named in messages (`entitlement 3 ("acme")`).
        entitlement: String,
        /// Its machine count.
        machines: u32,
        /// Machines counted.
        used: u32,
    },
    /// The entitlement expired.
    EntitlementExpired {
        /// The entitlement.
        entitlement: String,
        /// When it expired.
        expired: i64,
    },
    /// The token (with its grace period) would outlive the entitlement:
    /// a shorter lifetime would do.
    OutlivesEntitlement {
        /// Until when the token would be good (`None`: perpetual).
        until: Option<i64>,
        /// The entitlement.
        entitlement: String,
        /// When the entitlement expires.
        expires: i64,
    },
    /// The request is for another product than the entitlement.
    WrongProduct {
        /// The request's product.
        requested: String,
        /// The entitlement.
        entitlement: String,
        /// The entitlement's product.
        product: String,
    },
    /// A feature asked for is not among the entitlement's.
    FeatureNotEntitled {
        /// The feature.
        feature: String,
        /// The entitlement.
        entitlement: String,
        /// The entitlement's features.
        features: Vec<String>,
    },
    /// The machine's seat is held through a token bound to other hardware.
    SeatHardwareChanged {
        /// The machine.
        cmid: String,
        /// The entitlement.
        entitlement: String,
        /// The token holding the seat.
        serial: String,
        /// The hardware kinds that differ.
        changed: Vec<String>,
    },
    /// The machine's seat is held through a token this request's machine
    /// does not pass: another machine with the same CMID.
    SeatHeldByAnotherMachine {
        /// The machine.
        cmid: String,
        /// The entitlement.
        entitlement: String,
        /// The token holding the seat.
        serial: String,
        /// How the request's components compare with the token's.
        report: String,
    },
    /// A token of the same product and entitlement issued to this machine
    /// was revoked: the machine is not issued a fresh one unless the caller
    /// allows it ([`IssueOptions::allow_revoked_machine`](crate::issuer::issue::IssueOptions)).
    MachineRevoked {
        /// The machine.
        cmid: String,
        /// The entitlement.
        entitlement: String,
        /// The revoked token.
        serial: String,
    },
    /// The same request is already an earlier item of the batch.
    DuplicateRequest {
        /// That item, from 1.
        first: usize,
    },
    /// The same machine is already asked for by an earlier item of the batch.
    DuplicateMachine {
        /// The machine.
        cmid: String,
        /// That item, from 1.
        first: usize,
    },
    /// The input is not a request (it could not be read or parsed).
    Unreadable {
        /// Why.
        detail: String,
    },
    /// No entitlement has this product key (or it was rotated away).
    UnknownKey,
    /// The entitlement's product key was disabled.
    KeyDisabled {
        /// The entitlement.
        entitlement: String,
    },
    /// A ledger token to renew cannot be decoded.
    UnreadableToken {
        /// Its serial.
        serial: String,
        /// Why.
        detail: String,
    },
    /// The request cannot be issued at all (malformed fields, an impossible
    /// or weak binding, a lifetime the library does not sign, a token that
    /// would outlive its signer): the error, as text, since a batch keeps
    /// going. The single path returns the error itself.
    Invalid {
        /// The error's message.
        detail: String,
    },
}

impl fmt::Display for IssueRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IssueRefusal::*;
        match self {
            EntitlementFull { entitlement, machines, used } => write!(
                f,
                "{entitlement} is exhausted: all {machines} machines are counted ({used} of {machines} used); \
                 release a machine or raise the count"
            ),
            EntitlementExpired { entitlement, expired } => write!(f, "{entitlement} expired at {}", rfc3339(*expired)),
            OutlivesEntitlement { until, entitlement, expires } => write!(
                f,
                "a token valid until {} would outlive {entitlement} (expires {}): issue shorter tokens",
                until.map(rfc3339).unwrap_or_else(|| "forever".into()),
                rfc3339(*expires)
            ),
            WrongProduct { requested, entitlement, product } => {
                write!(f, "wrong product: the request is for {requested:?}, {entitlement} is for {product:?}")
            }
            FeatureNotEntitled { feature, entitlement, features } => write!(
                f,
                "feature {feature:?} is not in {entitlement} (features: {})",
                if features.is_empty() { "none".to_string() } else { features.join(",") }
            ),
            SeatHardwareChanged { cmid, entitlement, serial, changed } => write!(
                f,
                "machine {cmid} holds a seat in {entitlement} through token {serial}, bound to other hardware \
                 (changed: {}): a machine's hardware stays the same within a seat; if this is that machine with new \
                 hardware, release the seat first (tka ledger release)",
                changed.join(", ")
            ),
            SeatHeldByAnotherMachine { cmid, entitlement, serial, report } => write!(
                f,
                "machine {cmid} holds a seat in {entitlement} through token {serial}, which this request's machine \
                 does not pass ({report}): it is another machine with the same CMID (a disk or VM copy needs its own \
                 machine-id), or release the seat first (tka ledger release)"
            ),
            MachineRevoked { cmid, entitlement, serial } => write!(
                f,
                "machine {cmid} was revoked: its token {serial} in {entitlement} is revoked; a revoked machine \
                 is not issued a fresh token unless that is asked for explicitly"
            ),
            DuplicateRequest { first } => write!(f, "duplicate: the same request as item {first}"),
            DuplicateMachine { cmid, first } => {
                write!(f, "duplicate: machine {cmid} is already asked for by item {first}")
            }
            Unreadable { detail } => f.write_str(detail),
            UnknownKey => f.write_str("unknown product key: no entitlement has it"),
            KeyDisabled { entitlement } => write!(f, "the product key of {entitlement} is disabled"),
            UnreadableToken { serial, detail } => write!(f, "the ledger's token {serial} cannot be read: {detail}"),
            Invalid { detail } => f.write_str(detail),
        }
    }
}

impl std::error::Error for IssueRefusal {}

/// Any failure of a tka operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A verdict: the token, chain or list is not acceptable.
    Verify(VerifyError),
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An output file exists and `--force` was not given.
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An encrypted key was given without a passphrase source.
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },
    /// A PKCS#11 token needs a user PIN and none was given.
    PinRequired {
        /// The token label.
        token: String,
    },
    /// The token refused the PIN. tka never retries: tokens lock after a few failures.
    WrongPin {
        /// The token label.
        token: String,
    },
    /// A PKCS#11 module, token or key cannot be used.
    Pkcs11(String),
    /// A `pkcs11:` URI's `module-name` is not a bare file name (it is empty
    /// or holds `/`, `..` or NUL): a module name is looked up only in the
    /// PKCS#11 module directories, never as a path.
    ModuleNameNotBare {
        /// The name given.
        name: String,
    },
    /// A `module-path` read from a configuration file names a module
    /// outside the PKCS#11 module directories, and the caller did not allow
    /// module paths from configuration files. Nothing was loaded.
    ModulePathNotAllowed {
        /// The module file named.
        path: PathBuf,
    },
    /// A command failed after creating keys on a PKCS#11 token, and
    /// removing some of them failed too: they are still on the token.
    KeysLeftOnToken {
        /// Why the command failed.
        error: Box<Error>,
        /// The keys left behind (URIs), each with why it could not be removed.
        left: Vec<String>,
    },
    /// The passphrase does not decrypt the key.
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// A private key file is readable by group or others.
    InsecureKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A passphrase or PIN file is readable by group or others.
    InsecureSecretPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file to read is a FIFO, device, socket or directory, not a regular
    /// file; it was not read (so a FIFO cannot hang tka, nor `/dev/zero`
    /// fill its memory).
    NotARegularFile {
        /// The path given.
        path: PathBuf,
        /// What it is (`FIFO`, `character device`, ...).
        kind: &'static str,
    },
    /// A file is larger than the limit for what it holds; it was not read
    /// past the limit.
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// A key, certificate or request could not be parsed or produced.
    Format {
        /// What it is.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The operation is refused by policy (e.g. a token would outlive its signer).
    Refused(String),
    /// A lifetime or renewal setting the library does not use: a token
    /// shorter than a minute, a renewal time outside the token's life, a
    /// certificate shorter than a day, a renewal threshold outside 1-100 %.
    InvalidLifetime {
        /// Which setting (`token lifetime`, `renewal time`, `certificate
        /// lifetime`, `renewal window`, `renewal threshold`).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Bad arguments.
    Usage(String),
    /// The issuer refused to issue a token for a request under its policy.
    Issue(IssueRefusal),
    /// A ledger operation that records why (a release, a revocation) was
    /// given no reason.
    ReasonRequired {
        /// The operation (`release`, `revocation`).
        what: &'static str,
    },
    /// There is no seat to release: the machine holds none (in the
    /// entitlement named, or in any), never did or was released already.
    NothingToRelease {
        /// The machine.
        cmid: String,
        /// The entitlement looked in (its label), or `None`: every one.
        entitlement: Option<String>,
    },
    /// A new certificate cannot have the lifetime asked for (or its default
    /// one) because it would end after the certificate that issues it; it is
    /// refused rather than shortened, unless shortening was allowed.
    WouldOutliveIssuer {
        /// The new certificate's subject.
        subject: String,
        /// When it would end with the lifetime asked for (Unix seconds).
        wanted: i64,
        /// The issuer's subject.
        issuer: String,
        /// When the issuer ends (Unix seconds): the latest the new certificate may end.
        issuer_not_after: i64,
    },
    /// A machine holds seats in several entitlements and none was named.
    AmbiguousSeat {
        /// The machine.
        cmid: String,
        /// The entitlements holding it.
        entitlements: Vec<i64>,
    },
    /// No entitlement in the ledger has this id or name.
    UnknownEntitlement {
        /// The id or name given.
        selector: String,
    },
    /// A directory that should be an issuer home has no configuration.
    NotAnIssuerHome {
        /// The directory.
        path: PathBuf,
    },
    /// The activation store trusts no root, so nothing can verify.
    NoTrustedRoot,
    /// The ledger's database failed: a PostgreSQL server that cannot be
    /// reached or went away, or a statement it refused. The transaction
    /// was rolled back: nothing of it was recorded.
    Ledger {
        /// The ledger (its path, or its URL without the password).
        ledger: String,
        /// What failed, one line.
        detail: String,
        /// The SQLSTATE the server gave, if any (`40001`: a serialization
        /// failure, `40P01`: a deadlock; both are retried before this
        /// error is returned).
        code: Option<String>,
    },
    /// There is no ledger at the path given (and it was not to be created).
    NoLedger {
        /// The path.
        path: PathBuf,
    },
    /// The match rule asked for cannot be met by the request's components.
    MatchRuleDoesNotFit {
        /// The rule.
        rule: String,
        /// Why.
        detail: String,
    },
    /// Machine identity could not be established.
    Machine(MachineError),
    /// The activation store failed.
    Store(StoreError),
    /// Another process holds the issuer home's lock and did not release it
    /// within the wait.
    HomeBusy {
        /// The issuer home.
        home: PathBuf,
        /// The holder's process id, when it wrote one.
        pid: Option<u32>,
    },
    /// A request (or token) binds a component set no real machine produces,
    /// or a weak one that was not allowed; nothing was signed.
    Binding(BindingError),
    /// The activation agent could not get an answer from an activation host.
    Agent(AgentError),
    /// A string is not a product key (a typo, caught by its check character).
    ProductKey(ProductKeyError),
}

impl Error {
    /// Whether this is a "no" verdict (exit code 1: a token, chain or list
    /// refused, or a request refused at issuance) rather than a failure to
    /// run (exit code 2).
    pub fn is_verdict(&self) -> bool {
        match self {
            Error::KeysLeftOnToken { error, .. } => error.is_verdict(),
            _ => matches!(self, Error::Verify(_) | Error::Binding(_) | Error::Issue(_)),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn format(what: impl Into<String>, detail: impl fmt::Display) -> Self {
        Error::Format { what: what.into(), detail: detail.to_string() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Verify(e) => e.fmt(f),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Exists { path } => write!(f, "{} already exists", path.display()),
            Error::PassphraseRequired { path } => {
                write!(f, "{} is encrypted and no passphrase was given", path.display())
            }
            Error::PinRequired { token } => write!(f, "token \"{token}\" needs a user PIN and none was given"),
            Error::WrongPin { token } => write!(f, "wrong PIN for token \"{token}\" (not retried)"),
            Error::Pkcs11(s) => write!(f, "PKCS#11: {s}"),
            Error::ModuleNameNotBare { name } => write!(
                f,
                "PKCS#11: module-name {name:?} is not a bare file name: a module-name holds no \"/\", no \"..\" \
                 and no NUL, and is looked up only in the PKCS#11 module directories"
            ),
            Error::ModulePathNotAllowed { path } => write!(
                f,
                "PKCS#11: module-path {} comes from a configuration file and is outside the PKCS#11 module \
                 directories: not loaded",
                path.display()
            ),
            Error::KeysLeftOnToken { error, left } => write!(
                f,
                "{error} (and the keys it created could not all be removed from the token: {})",
                left.join("; ")
            ),
            Error::WrongPassphrase { path } => {
                write!(f, "wrong passphrase for {} (or the key file is damaged)", path.display())
            }
            Error::InsecureKeyPermissions { path, mode } => write!(
                f,
                "private key {} has permissions {mode:04o}: it must not be readable by group or others",
                path.display()
            ),
            Error::InsecureSecretPermissions { path, mode } => write!(
                f,
                "secret file {} has permissions {mode:04o}: it must not be readable by group or others",
                path.display()
            ),
            Error::NotARegularFile { path, kind } => {
                write!(f, "{} is a {kind}, not a regular file: refusing to read it", path.display())
            }
            Error::FileTooLarge { path, limit } => {
                write!(f, "{} is larger than the {limit}-byte limit", path.display())
            }
            Error::Format { what, detail } => write!(f, "{what}: {detail}"),
            Error::Refused(s) => f.write_str(s),
            Error::InvalidLifetime { what, detail } => write!(f, "invalid {what}: {detail}"),
            Error::Usage(s) => f.write_str(s),
            Error::Issue(r) => r.fmt(f),
            Error::ReasonRequired { what } => write!(f, "a {what} needs a reason"),
            Error::NothingToRelease { cmid, entitlement: Some(e) } => {
                write!(f, "machine {cmid} holds no seat in {e}: nothing to release (already released?)")
            }
            Error::NothingToRelease { cmid, entitlement: None } => {
                write!(f, "machine {cmid} holds no seat in any entitlement: nothing to release (already released?)")
            }
            Error::WouldOutliveIssuer { subject, wanted, issuer, issuer_not_after } => write!(
                f,
                "{subject} would end {}, after its issuer {issuer} (ends {}): refused rather than shortened",
                rfc3339(*wanted),
                rfc3339(*issuer_not_after)
            ),
            Error::AmbiguousSeat { cmid, entitlements } => {
                let list: Vec<String> = entitlements.iter().map(i64::to_string).collect();
                write!(f, "machine {cmid} holds seats in entitlements {}: name one", list.join(", "))
            }
            Error::NoLedger { path } => write!(f, "no ledger at {}", path.display()),
            Error::Ledger { ledger, detail, .. } => write!(f, "ledger {ledger}: {detail}"),
            Error::NotAnIssuerHome { path } => {
                write!(f, "{} is not an issuer home (no tka-issuer.json)", path.display())
            }
            Error::NoTrustedRoot => f.write_str("this store trusts no root yet"),
            Error::UnknownEntitlement { selector } => {
                write!(f, "no entitlement {selector:?} (give its id or its name)")
            }
            Error::MatchRuleDoesNotFit { rule, detail } => {
                write!(f, "match rule {rule} does not fit this request: {detail}")
            }
            Error::Machine(e) => e.fmt(f),
            Error::Store(e) => e.fmt(f),
            Error::Binding(e) => write!(f, "request refused: {e}"),
            Error::Agent(e) => e.fmt(f),
            Error::ProductKey(e) => e.fmt(f),
            Error::HomeBusy { home, pid: Some(pid) } => {
                write!(f, "another tka command holds {} (pid {pid})", home.display())
            }
            Error::HomeBusy { home, pid: None } => write!(f, "another tka command holds {}", home.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Verify(e) => Some(e),
            _ => None,
        }
    }
}

impl From<VerifyError> for Error {
    fn from(e: VerifyError) -> Self {
        Error::Verify(e)
    }
}
impl From<MachineError> for Error {
    fn from(e: MachineError) -> Self {
        Error::Machine(e)
    }
}
impl From<IssueRefusal> for Error {
    fn from(e: IssueRefusal) -> Self {
        Error::Issue(e)
    }
}
impl From<BindingError> for Error {
    fn from(e: BindingError) -> Self {
        Error::Binding(e)
    }
}
impl From<ProductKeyError> for Error {
    fn from(e: ProductKeyError) -> Self {
        Error::ProductKey(e)
    }
}

impl From<AgentError> for Error {
    fn from(e: AgentError) -> Self {
        Error::Agent(e)
    }
}
impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Most distinct products a scan without a product filter computes this
/// machine's identity for (identities are salted per product). Lines for
/// further products are counted as [`BundleScan::unchecked`], not checked.
pub const MAX_BUNDLE_PRODUCTS: usize = 64;

/// A bundle line that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRefusal {
    /// Line number, from 1.
    pub line: u64,
    /// Why: the verification verdict for a line labelled for this machine,
    /// or [`VerifyError::Malformed`] / [`VerifyError::TooLarge`] for a line
    /// that is not a bundle line.
    pub reason: VerifyError,
}

/// What a bundle scan saw: every line is counted in exactly one of
/// `blank`, `malformed`, `other`, `unchecked` or `considered`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleScan {
    /// The product filter, if one was given.
    pub product: Option<String>,
    /// Lines read (up to the one activated, or all of them).
    pub lines: u64,
    /// Empty lines.
    pub blank: u64,
    /// Lines that are not bundle lines (not UTF-8, not JSON, fields
    /// missing, too long): skipped.
    pub malformed: u64,
    /// The first of them.
    pub first_malformed: Option<BundleRefusal>,
    /// Lines labelled for another machine or product: skipped before any
    /// signature or certificate check.
    pub other: u64,
    /// Lines for a product beyond the first [`MAX_BUNDLE_PRODUCTS`] seen
    /// (scan without a product filter): not checked.
    pub unchecked: u64,
    /// Lines labelled for this machine (and product): fully verified.
    pub considered: u64,
    /// Considered lines whose token did not verify.
    pub refused: u64,
    /// The first refused line.
    pub first_refused: Option<BundleRefusal>,
    /// The last refused line.
    pub last_refused: Option<BundleRefusal>,
}
