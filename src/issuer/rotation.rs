//! Certificate rotation: when to renew, re-issuing certificates, rotating
//! the issuer home's signer, issuing CA and root, expiry planning, and the
//! machine side of a root rollover.
//!
//! # Rotations in an issuer home
//!
//! Each rotation loads the key that signs the new certificates first (so a
//! wrong passphrase fails before anything is written), creates every new
//! key and certificate under a new file name, then switches
//! `tka-issuer.json` in one atomic rename, and only then moves the
//! replaced files into `<home>/retired/` (certificates for the audit trail;
//! CA keys because they still sign CRLs for what they issued). If any step
//! before the switch fails, the files it created are removed: nothing
//! half-created is left and issuance keeps using the old configuration.
//!
//! Every rotation holds the home's exclusive lock
//! ([`IssuerHome::lock`], waiting at most [`RotateOptions::lock_wait`]) from
//! before it reads the configuration until it has retired the old files, so
//! two rotations run one after the other, each on the configuration the
//! other left; with [`RotateOptions::if_due`] the rotation decides under the
//! lock whether it is due at all.
//!
//! A rotation killed part-way (power cut, SIGKILL) leaves a home that works
//! as before (killed before the switch) or as after (killed after it), plus
//! leftovers: new files the configuration does not name yet, old files not
//! yet retired, a stale `chain.pem`, a temporary file. [`check_home`] finds
//! them ([`health`] reports them) and [`repair`] retires or removes them and
//! re-derives `chain.pem`.
//!
//! - [`rotate_signer`]: a new signer key and certificate under the current
//!   issuing CA. Tokens already issued keep verifying: their own `x5c`
//!   carries the old signer, which stays valid until it expires.
//! - [`rotate_issuing_ca`]: a new issuing CA (new key, next generation
//!   name) from the root, and a new signer under it.
//! - [`rotate_root`]: a new self-signed root (next generation name), a
//!   **cross-certificate** (the new root's subject and key, signed by the
//!   old root), a new issuing CA and signer under the new root. Tokens then
//!   carry `x5c` = [signer, new issuing CA, cross-certificate], which
//!   validates both on machines that trust only the old root (through the
//!   cross-certificate) and on machines that trust the new one.
//!
//! Every new certificate gets its default lifetime (or the one asked
//! for), or the rotation is refused before anything is written
//! ([`Error::WouldOutliveIssuer`]): a certificate never ends after the one
//! that issues it, and is not silently shortened to end with it. With
//! [`RotateOptions::shorten`] it ends with its issuer instead
//! ([`RotationReport::shortened`] names it). The cross-certificate of a root
//! rotation is the exception by design: it ends when the new root or the old
//! root ends, whichever is first, since it is of no use once the old root
//! has ended.
//!
//! New keys have the size of the key they replace and are protected like
//! the home's other keys (the same passphrase). A key on a PKCS#11 token is
//! replaced by a new key generated on the same token, labelled
//! `<label>@<UTC time>-<4 random hex digits>`; the old key object stays on the token (it is not
//! moved into `retired/`), to be deleted there when it has no more use.
//! A rotation that fails after generating a key on a token leaves that
//! unused key object behind (`tka pkcs11 list` shows it).

use crate::core::clock::{rfc3339, DAY};
use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use crate::core::keys::{public_bits, KeyRef, KeyUnlock, NewKey, Signer};
use crate::core::pki::{check_cross_certificate, pem, CertInfo, Crl};
use crate::issuer::certs::{create_certificate, lifetimes, reissue_certificate, CertKind, CertRequest};
use crate::issuer::home::{read_cert_chain, HomeLock, IssuerHome, CHAIN_FILE, DEFAULT_LOCK_WAIT};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory inside an issuer home that keeps replaced certificates and keys.
pub const RETIRED_DIR: &str = "retired";
/// Directory inside an issuer home whose CRLs `health` watches.
pub const CRLS_DIR: &str = "crls";
/// Default `needs-renewal` threshold: renew once this share of the lifetime has passed (like step CLI).
pub const DEFAULT_RENEW_PERCENT: u8 = 66;
/// New certificates start this many seconds before *now* (clock differences between machines).
const BACKDATE_SECS: i64 = 300;

// ----- needs-renewal -----

/// When a certificate should be renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalPolicy {
    /// Renew when it expires within this many seconds.
    ExpiresIn(i64),
    /// Renew when this percentage (1-100) of its lifetime has passed.
    Percent(u8),
}

/// The answer of [`needs_renewal`].
#[derive(Debug, Clone, Serialize)]
pub struct RenewalCheck {
    /// Renew now.
    pub renew: bool,
    /// Why, in one line.
    pub reason: String,
    /// Seconds until notAfter (negative once expired).
    pub remaining_secs: i64,
    /// Share of the lifetime that has passed, percent.
    pub elapsed_percent: f64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
}

/// Whether `cert` should be renewed at `now` under `policy`. An expired
/// certificate always should.
pub fn needs_renewal(cert: &CertInfo, policy: RenewalPolicy, now: i64) -> Result<RenewalCheck> {
    let life = (cert.not_after - cert.not_before).max(1);
    let remaining = cert.not_after - now;
    let elapsed_percent = ((now - cert.not_before) as f64 * 100.0 / life as f64).clamp(0.0, 100.0);
    let (renew, reason) = if remaining < 0 {
        (true, format!("{} expired at {}", cert.subject, rfc3339(cert.not_after)))
    } else {
        match policy {
            RenewalPolicy::ExpiresIn(secs) => {
                if secs < 0 {
                    return Err(Error::InvalidLifetime {
                        what: "renewal window",
                        detail: format!("{secs} s is negative"),
                    });
                }
                let renew = remaining <= secs;
                let verb = if renew { "within" } else { "not within" };
                (renew, format!("expires {} ({verb} the {} day threshold)", rfc3339(cert.not_after), secs / DAY))
            }
            RenewalPolicy::Percent(p) => {
                if p == 0 || p > 100 {
                    return Err(Error::InvalidLifetime {
                        what: "renewal threshold",
                        detail: format!("{p}% is not between 1 and 100"),
                    });
                }
                let renew = elapsed_percent >= f64::from(p);
                (
                    renew,
                    format!(
                        "{elapsed_percent:.0}% of its lifetime has passed (threshold {p}%), expires {}",
                        rfc3339(cert.not_after)
                    ),
                )
            }
        }
    };
    Ok(RenewalCheck { renew, reason, remaining_secs: remaining, elapsed_percent, not_after: cert.not_after })
}

/// The policy for the signer of an issuer home when none is given: renew
/// when it can no longer cover a standard token (`token_days`) issued
/// today, or when [`DEFAULT_RENEW_PERCENT`] of its life has passed.
pub fn signer_needs_renewal(home: &IssuerHome, now: i64) -> Result<RenewalCheck> {
    let signer = first_cert(&home.path(&home.config.signer_cert))?;
    let by_days = needs_renewal(&signer, RenewalPolicy::ExpiresIn(i64::from(home.config.token_days) * DAY), now)?;
    if by_days.renew {
        return Ok(RenewalCheck {
            reason: format!(
                "{} can no longer cover a {}-day token: {}",
                signer.subject, home.config.token_days, by_days.reason
            ),
            ..by_days
        });
    }
    needs_renewal(&signer, RenewalPolicy::Percent(DEFAULT_RENEW_PERCENT), now)
}

/// What a certificate is, from its profile: `root` (self-issued CA),
/// `CA` (issuing CA or cross-certificate), `token signer`, or `other`.
pub fn cert_role(c: &CertInfo) -> &'static str {
    if c.is_ca && c.is_self_issued() {
        "root"
    } else if c.is_ca {
        "CA"
    } else if c.has_signer_eku() {
        "token signer"
    } else {
        "other"
    }
}

// ----- renew / rekey -----

/// Re-issues `old` under `issuer` at `now`: the same key (`new_key` `None`,
/// "renew") or a new one ("rekey"), the same subject and profile, a new
/// serial. `days` defaults to the old certificate's lifetime. One that
/// would end after the issuer is refused ([`Error::WouldOutliveIssuer`]),
/// unless `shorten`: then it ends with the issuer.
pub fn reissue(
    old: &CertInfo,
    new_key: Option<&rsa::PublicKey>,
    issuer: &CertInfo,
    issuer_key: &dyn Signer,
    days: Option<i64>,
    shorten: bool,
    now: i64,
) -> Result<Vec<u8>> {
    let not_before = now - BACKDATE_SECS;
    let wanted = match days {
        Some(d) if d < 1 => return Err(cert_days(d)),
        Some(d) => now + d * DAY,
        None => now + (old.not_after - old.not_before),
    };
    // A root is refused as such by reissue_certificate, whatever its lifetime.
    let not_after = match old.is_self_issued() {
        true => wanted,
        false => fit(&old.subject, wanted, (&issuer.subject, issuer.not_after), shorten)?.not_after,
    };
    reissue_certificate(old, new_key, issuer, issuer_key, not_before, not_after)
}

// ----- issuer home rotations -----

/// What a rotation created and retired.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// New files by role (`root`, `cross`, `ca`, `signer`, `chain`), in creation order.
    pub created: Vec<(String, PathBuf)>,
    /// Files moved into `retired/`.
    pub retired: Vec<PathBuf>,
    /// Subject and notAfter of each new certificate, by role.
    pub certificates: Vec<(String, String, i64)>,
    /// With [`RotateOptions::if_due`]: the rotation was not due (why, in
    /// one line) and nothing was changed.
    pub not_due: Option<String>,
    /// Roles of the new certificates that end with their issuer, shorter
    /// than asked for ([`RotateOptions::shorten`]).
    pub shortened: Vec<String>,
}

impl RotationReport {
    fn empty() -> Self {
        RotationReport {
            created: Vec::new(),
            retired: Vec::new(),
            certificates: Vec::new(),
            not_due: None,
            shortened: Vec::new(),
        }
    }
}

/// Options shared by the rotations.
#[derive(Debug, Clone, Default)]
pub struct RotateOptions {
    /// Lifetime of the new signer, days (default: [`lifetimes::SIGNER_DAYS`]).
    pub signer_days: Option<i64>,
    /// Lifetime of a new issuing CA, days (default: [`lifetimes::INTERMEDIATE_DAYS`]).
    pub ca_days: Option<i64>,
    /// Lifetime of a new root, days (default: [`lifetimes::ROOT_DAYS`]).
    pub root_days: Option<i64>,
    /// Subject of a new root or issuing CA (default: the next generation of the old name).
    pub subject: Option<String>,
    /// Rotate only when due, decided under the home's lock: the signer by
    /// [`signer_needs_renewal`], an issuing CA or root when
    /// [`DEFAULT_RENEW_PERCENT`] of its life has passed. When not due the
    /// report says why ([`RotationReport::not_due`]) and nothing changes.
    pub if_due: bool,
    /// How long to wait for another command holding the home (default
    /// [`DEFAULT_LOCK_WAIT`]); then [`Error::HomeBusy`].
    pub lock_wait: Option<Duration>,
    /// Accept a new certificate shorter than its default (or requested)
    /// lifetime: one that would end after its issuer ends with it instead.
    /// Without it such a rotation is refused ([`Error::WouldOutliveIssuer`]).
    pub shorten: bool,
}

/// Whether the certificate of `role` (`signer`, `ca` or `root`) of `home`
/// is due for rotation at `now`, by the policy of [`RotateOptions::if_due`].
pub fn role_needs_renewal(home: &IssuerHome, role: &str, now: i64) -> Result<RenewalCheck> {
    let cert = match role {
        "signer" => return signer_needs_renewal(home, now),
        "ca" => &home.config.ca_cert,
        "root" => &home.config.root_cert,
        other => return Err(Error::Usage(format!("no rotation for role {other:?}"))),
    };
    needs_renewal(&first_cert(&home.path(cert))?, RenewalPolicy::Percent(DEFAULT_RENEW_PERCENT), now)
}

/// The start of every rotation: the home's exclusive lock, the
/// configuration as it is now, and (with `if_due`) the decision whether to
/// rotate at all (`Some(reason)`: not due).
fn begin(home: &mut IssuerHome, opts: &RotateOptions, role: &str, now: i64) -> Result<(HomeLock, Option<String>)> {
    let lock = home.lock(opts.lock_wait.unwrap_or(DEFAULT_LOCK_WAIT))?;
    home.reload()?;
    if opts.if_due {
        let check = role_needs_renewal(home, role, now)?;
        if !check.renew {
            return Ok((lock, Some(check.reason)));
        }
    }
    Ok((lock, None))
}

fn not_due(reason: String) -> RotationReport {
    RotationReport { not_due: Some(reason), ..RotationReport::empty() }
}

/// Files written so far by a rotation; removed again unless committed.
struct Created {
    files: Vec<PathBuf>,
    committed: bool,
}

impl Created {
    fn new() -> Self {
        Created { files: Vec::new(), committed: false }
    }

    /// Saves a new software key to `path`; a key generated on a token is
    /// already stored and is named by its URI. Returns the configuration
    /// entry: the file, or the URI.
    fn key(&mut self, path: PathBuf, key: &NewKey, unlock: &KeyUnlock) -> Result<PathBuf> {
        let stored = key.store(&path, unlock.protection())?;
        if let KeyRef::File(p) = &stored {
            self.files.push(p.clone());
        }
        Ok(stored.into_path())
    }

    fn public(&mut self, path: PathBuf, text: &str) -> Result<PathBuf> {
        crate::issuer::home::write_public(&path, text)?;
        self.files.push(path.clone());
        Ok(path)
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if !self.committed {
            for f in &self.files {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

fn first_cert(path: &Path) -> Result<CertInfo> {
    let der = read_cert_chain(path)?.into_iter().next().expect("read_cert_chain returns at least one");
    Ok(CertInfo::parse(&der)?)
}

fn short_serial(c: &CertInfo) -> String {
    c.serial_hex.chars().take(8).collect::<String>().to_ascii_lowercase()
}

/// A new key where the key it replaces lives: in memory (saved as a file
/// later) for a file, on the same token for a `pkcs11:` URI, labelled
/// `<label>@<UTC time>-<4 hex digits>` (the old label up to any `@`).
fn new_key_like(home: &IssuerHome, old: &Path, bits: usize, unlock: &KeyUnlock, now: i64) -> Result<NewKey> {
    let place = match home.key_ref(old)? {
        KeyRef::Pkcs11(uri) => {
            let old_label = uri.object.clone().unwrap_or_else(|| "tka".into());
            let base = old_label.split('@').next().unwrap_or("tka").to_string();
            // Two rotations in one second (rotate-signer, then rotate-ca) must not
            // collide: a short random suffix keeps the labels apart.
            let stamp = rfc3339(now).replace(['-', ':'], "");
            let mut r = [0u8; 2];
            getrandom::fill(&mut r).map_err(|e| Error::Usage(format!("random label suffix: {e}")))?;
            let suffix = format!("{:02x}{:02x}", r[0], r[1]);
            KeyRef::Pkcs11(Box::new(uri.with_object(&format!("{base}@{stamp}-{suffix}"))))
        }
        file => file,
    };
    NewKey::generate(&place, bits, unlock)
}

/// Moves a replaced key file into `retired/`; a key on a token stays there
/// (`None`): delete it on the token when it has no more use.
fn retire_key(home: &IssuerHome, configured: &Path, serial: &str) -> Result<Option<PathBuf>> {
    match home.key_ref(configured)? {
        KeyRef::File(p) => retire(home.dir(), &p, serial).map(Some),
        KeyRef::Pkcs11(_) => Ok(None),
    }
}

fn key_bits(c: &CertInfo) -> Result<usize> {
    let bits = public_bits(&c.rsa_public_key()?);
    Ok(if crate::core::keys::ALLOWED_BITS.contains(&bits) { bits } else { 3072 })
}

/// The next generation of a CA name: `CN=X Root CA` becomes
/// `CN=X Root CA G2`, `CN=X Root CA G2` becomes `CN=X Root CA G3`. Only the
/// first attribute (the most specific, as `--subject` is written) changes.
pub fn next_generation_name(subject: &str) -> String {
    let (first, rest) = match subject.find(',') {
        Some(i) => (&subject[..i], &subject[i..]),
        None => (subject, ""),
    };
    let bumped = match first.rsplit_once(" G") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{base} G{}", n.parse::<u64>().unwrap_or(1) + 1)
        }
        _ => format!("{first} G2"),
    };
    format!("{bumped}{rest}")
}

/// Moves `path` into `<home>/retired/`, adding `-<serial>` to the name when
/// `serial` is given and the name does not carry it yet.
fn retire(home: &Path, path: &Path, serial: &str) -> Result<PathBuf> {
    let dir = home.join(RETIRED_DIR);
    if !dir.exists() {
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(&dir, e))?;
        }
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|s| format!(".{}", s.to_string_lossy())).unwrap_or_default();
    let base = if stem.ends_with(serial) { stem } else { format!("{stem}-{serial}") };
    let mut dest = dir.join(format!("{base}{ext}"));
    let mut n = 1;
    while dest.exists() {
        n += 1;
        dest = dir.join(format!("{base}.{n}{ext}"));
    }
    fsutil::crash_point("rotation.retire", path).map_err(|e| Error::io(path, e))?;
    std::fs::rename(path, &dest).map_err(|e| Error::io(path, e))?;
    for d in [home, dir.as_path()] {
        fsutil::sync_dir(d).map_err(|e| Error::io(d, e))?;
    }
    Ok(dest)
}

/// A certificate lifetime of less than a day.
fn cert_days(d: i64) -> Error {
    Error::InvalidLifetime { what: "certificate lifetime", detail: format!("{d} days is less than one day") }
}

/// The notAfter a new certificate gets, and whether it was shortened to
/// end with its issuer.
#[derive(Debug, Clone, Copy)]
struct Lifetime {
    not_after: i64,
    shortened: bool,
}

/// The lifetime of a new certificate `subject` that should end at `wanted`,
/// under an issuer (subject, notAfter): `wanted`, or refused if that is
/// after the issuer ends, unless `shorten` (then the issuer's end).
fn fit(subject: &str, wanted: i64, issuer: (&str, i64), shorten: bool) -> Result<Lifetime> {
    let (issuer, issuer_not_after) = issuer;
    if wanted <= issuer_not_after {
        return Ok(Lifetime { not_after: wanted, shortened: false });
    }
    if !shorten {
        return Err(Error::WouldOutliveIssuer {
            subject: subject.to_string(),
            wanted,
            issuer: issuer.to_string(),
            issuer_not_after,
        });
    }
    Ok(Lifetime { not_after: issuer_not_after, shortened: true })
}

/// The lifetime of a new certificate: `days` from `now` (at least 1), or by
/// default `default_days`, fitted under its issuer ([`fit`]).
fn lifetime(
    subject: &str,
    days: Option<i64>,
    default_days: i64,
    issuer: (&str, i64),
    opts: &RotateOptions,
    now: i64,
) -> Result<Lifetime> {
    let d = days.unwrap_or(default_days);
    if d < 1 {
        return Err(cert_days(d));
    }
    fit(subject, now + d * DAY, issuer, opts.shorten)
}

/// The lifetime of a new signer under the issuing CA (subject, notAfter),
/// which must cover a standard token issued today.
fn signer_lifetime(
    home: &IssuerHome,
    old_signer: &CertInfo,
    ca: (&str, i64),
    opts: &RotateOptions,
    now: i64,
) -> Result<Lifetime> {
    let life = lifetime(&old_signer.subject, opts.signer_days, lifetimes::SIGNER_DAYS, ca, opts, now)?;
    let token_secs = i64::from(home.config.token_days) * DAY;
    if life.not_after - now < token_secs {
        return Err(Error::Refused(format!(
            "a new signer under {} would expire {}, before a standard {}-day token issued today; \
             rotate the issuing CA first (tka issuer rotate-ca)",
            ca.0,
            rfc3339(life.not_after),
            home.config.token_days
        )));
    }
    Ok(life)
}

/// A new signer key (where the current one lives) and certificate under
/// `ca`, ending at `not_after` ([`signer_lifetime`]).
fn new_signer(
    home: &IssuerHome,
    ca: &CertInfo,
    ca_key: &dyn Signer,
    old_signer: &CertInfo,
    unlock: &KeyUnlock,
    not_after: i64,
    now: i64,
) -> Result<(NewKey, Vec<u8>, CertInfo)> {
    let subject = old_signer.subject.as_str();
    let key = new_key_like(home, &home.config.signer_key, key_bits(old_signer)?, unlock, now)?;
    let der = create_certificate(
        &CertRequest { kind: CertKind::Signer, subject, not_before: now - BACKDATE_SECS, not_after, delegation: None },
        key.signer().public_key(),
        Some(ca),
        ca_key,
    )?;
    let info = CertInfo::parse(&der)?;
    Ok((key, der, info))
}

fn write_chain(created: &mut Created, home: &IssuerHome, chain: &[&[u8]]) -> Result<PathBuf> {
    let text: String = chain.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
    let path = home.dir().join(CHAIN_FILE);
    fsutil::write_atomic(&path, text.as_bytes(), 0o644, Overwrite::Replace).map_err(|e| Error::io(&path, e))?;
    created.files.retain(|f| f != &path);
    Ok(path)
}

/// Relative path of `p` inside the home (config entries are relative).
fn rel(home: &IssuerHome, p: &Path) -> PathBuf {
    p.strip_prefix(home.dir()).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf())
}

/// One new certificate of a rotation, and its key when the key is new.
struct Part<'a> {
    /// `root`, `cross`, `ca` or `signer`.
    role: &'static str,
    der: &'a [u8],
    info: &'a CertInfo,
    key: Option<&'a NewKey>,
    /// Ends with its issuer, shorter than asked for.
    shortened: bool,
}

/// The end of every rotation: writes each part under a new name
/// (`<role>-<serial>.pem|.key`), switches the configuration in one atomic
/// rename, writes `chain.pem` (the new signer, then the new or current
/// issuing CA and cross-certificate), then retires what the parts replaced (the
/// old certificate and key of each role, and the old cross-certificate
/// when there is a new one). Files written before the switch are removed
/// again if it fails.
fn commit(home: &mut IssuerHome, unlock: &KeyUnlock, parts: &[Part<'_>]) -> Result<RotationReport> {
    let cfg = home.config.clone();
    let new_der = |role: &str| parts.iter().find(|p| p.role == role).map(|p| p.der.to_vec());
    let mut chain = vec![new_der("signer").expect("every rotation makes a new signer")];
    chain.push(match new_der("ca") {
        Some(d) => d,
        None => first_cert(&home.path(&cfg.ca_cert))?.der,
    });
    match (new_der("cross"), &cfg.cross_cert) {
        (Some(d), _) => chain.push(d),
        (None, Some(c)) => chain.extend(read_cert_chain(&home.path(c))?),
        (None, None) => {}
    }
    let mut created = Created::new();
    let mut config = cfg.clone();
    let mut report = RotationReport::empty();
    for part in parts {
        let (role, s) = (part.role, short_serial(part.info));
        let cert_path =
            created.public(home.dir().join(format!("{role}-{s}.pem")), &pem::encode("CERTIFICATE", part.der))?;
        report.created.push((role.into(), cert_path.clone()));
        let key_path = match part.key {
            Some(k) => {
                let p = created.key(home.dir().join(format!("{role}-{s}.key")), k, unlock)?;
                report.created.push((format!("{role}-key"), p.clone()));
                Some(rel(home, &p))
            }
            None => None,
        };
        let cert = rel(home, &cert_path);
        match role {
            "root" => config.root_cert = cert,
            "cross" => config.cross_cert = Some(cert),
            "ca" => config.ca_cert = cert,
            _ => config.signer_cert = cert,
        }
        if let Some(k) = key_path {
            match role {
                "root" => config.root_key = k,
                "ca" => config.ca_key = k,
                _ => config.signer_key = k,
            }
        }
        report.certificates.push((role.into(), part.info.subject.clone(), part.info.not_after));
        if part.shortened {
            report.shortened.push(role.into());
        }
    }
    home.save_config(config)?;
    created.committed = true;

    let refs: Vec<&[u8]> = chain.iter().map(|d| d.as_slice()).collect();
    report.created.push(("chain".into(), write_chain(&mut created, home, &refs)?));
    for part in parts {
        let (old_cert, old_key) = match part.role {
            "root" => (&cfg.root_cert, Some(&cfg.root_key)),
            "ca" => (&cfg.ca_cert, Some(&cfg.ca_key)),
            "signer" => (&cfg.signer_cert, Some(&cfg.signer_key)),
            _ => match &cfg.cross_cert {
                Some(c) => (c, None),
                None => continue,
            },
        };
        let serial = short_serial(&first_cert(&home.path(old_cert))?);
        report.retired.push(retire(home.dir(), &home.path(old_cert), &serial)?);
        if let Some(k) = old_key {
            report.retired.extend(retire_key(home, k, &serial)?);
        }
    }
    Ok(report)
}

/// Rotates the token signer of `home` (see the module documentation).
pub fn rotate_signer(
    home: &mut IssuerHome,
    unlock: &KeyUnlock,
    opts: &RotateOptions,
    now: i64,
) -> Result<RotationReport> {
    let (_lock, skip) = begin(home, opts, "signer", now)?;
    if let Some(reason) = skip {
        return Ok(not_due(reason));
    }
    let cfg = home.config.clone();
    let ca = first_cert(&home.path(&cfg.ca_cert))?;
    let ca_key = home.open_key(&cfg.ca_key, unlock)?;
    let old_signer = first_cert(&home.path(&cfg.signer_cert))?;
    let life = signer_lifetime(home, &old_signer, (&ca.subject, ca.not_after), opts, now)?;
    let (key, der, info) = new_signer(home, &ca, ca_key.as_ref(), &old_signer, unlock, life.not_after, now)?;
    commit(home, unlock, &[Part { role: "signer", der: &der, info: &info, key: Some(&key), shortened: life.shortened }])
}

/// Rotates the issuing CA of `home`: a new CA key and certificate from the
/// root, and a new signer under it (see the module documentation).
pub fn rotate_issuing_ca(
    home: &mut IssuerHome,
    unlock: &KeyUnlock,
    opts: &RotateOptions,
    now: i64,
) -> Result<RotationReport> {
    let (_lock, skip) = begin(home, opts, "ca", now)?;
    if let Some(reason) = skip {
        return Ok(not_due(reason));
    }
    let cfg = home.config.clone();
    let root = first_cert(&home.path(&cfg.root_cert))?;
    let root_key = home.open_key(&cfg.root_key, unlock)?;
    let old_ca = first_cert(&home.path(&cfg.ca_cert))?;
    let old_signer = first_cert(&home.path(&cfg.signer_cert))?;
    let subject = opts.subject.clone().unwrap_or_else(|| next_generation_name(&old_ca.subject));
    // Every lifetime is settled before any key is made.
    let ca_life =
        lifetime(&subject, opts.ca_days, lifetimes::INTERMEDIATE_DAYS, (&root.subject, root.not_after), opts, now)?;
    let signer_life = signer_lifetime(home, &old_signer, (&subject, ca_life.not_after), opts, now)?;
    let ca_key = new_key_like(home, &cfg.ca_key, key_bits(&old_ca)?, unlock, now)?;
    let ca_der = create_certificate(
        &CertRequest {
            kind: CertKind::Intermediate,
            subject: &subject,
            not_before: now - BACKDATE_SECS,
            not_after: ca_life.not_after,
            delegation: None,
        },
        ca_key.signer().public_key(),
        Some(&root),
        root_key.as_ref(),
    )?;
    let ca = CertInfo::parse(&ca_der)?;
    let (signer_key, signer_der, signer) =
        new_signer(home, &ca, ca_key.signer(), &old_signer, unlock, signer_life.not_after, now)?;

    let parts = [
        Part { role: "ca", der: &ca_der, info: &ca, key: Some(&ca_key), shortened: ca_life.shortened },
        Part {
            role: "signer",
            der: &signer_der,
            info: &signer,
            key: Some(&signer_key),
            shortened: signer_life.shortened,
        },
    ];
    commit(home, unlock, &parts)
}

/// Rotates the root of `home`: a new root, a cross-certificate from the old
/// root, a new issuing CA and signer (see the module documentation).
pub fn rotate_root(
    home: &mut IssuerHome,
    unlock: &KeyUnlock,
    opts: &RotateOptions,
    now: i64,
) -> Result<RotationReport> {
    let (_lock, skip) = begin(home, opts, "root", now)?;
    if let Some(reason) = skip {
        return Ok(not_due(reason));
    }
    let cfg = home.config.clone();
    let old_root = first_cert(&home.path(&cfg.root_cert))?;
    let old_root_key = home.open_key(&cfg.root_key, unlock)?;
    let old_ca = first_cert(&home.path(&cfg.ca_cert))?;
    let old_signer = first_cert(&home.path(&cfg.signer_cert))?;
    let not_before = now - BACKDATE_SECS;

    let root_subject = opts.subject.clone().unwrap_or_else(|| next_generation_name(&old_root.subject));
    let root_days = opts.root_days.unwrap_or(lifetimes::ROOT_DAYS);
    if root_days < 1 {
        return Err(cert_days(root_days));
    }
    let root_after = now + root_days * DAY;
    if root_subject == old_root.subject {
        return Err(Error::Usage(format!(
            "the new root needs a subject different from the old root's ({})",
            old_root.subject
        )));
    }
    // Every lifetime is settled before any key is made.
    let ca_subject = next_generation_name(&old_ca.subject);
    let ca_life =
        lifetime(&ca_subject, opts.ca_days, lifetimes::INTERMEDIATE_DAYS, (&root_subject, root_after), opts, now)?;
    let signer_life = signer_lifetime(home, &old_signer, (&ca_subject, ca_life.not_after), opts, now)?;
    let root_key = new_key_like(home, &cfg.root_key, key_bits(&old_root)?, unlock, now)?;
    let root_der = create_certificate(
        &CertRequest {
            kind: CertKind::Root,
            subject: &root_subject,
            not_before,
            not_after: root_after,
            delegation: None,
        },
        root_key.signer().public_key(),
        None,
        root_key.signer(),
    )?;
    let root = CertInfo::parse(&root_der)?;
    if root.subject_raw == old_root.subject_raw {
        return Err(Error::Usage(format!(
            "the new root needs a subject different from the old root's ({})",
            old_root.subject
        )));
    }
    // The cross-certificate: the new root's name and key, vouched for by the old root.
    let cross_der = create_certificate(
        &CertRequest {
            kind: CertKind::Cross,
            subject: &root_subject,
            not_before,
            not_after: root_after.min(old_root.not_after),
            delegation: None,
        },
        root_key.signer().public_key(),
        Some(&old_root),
        old_root_key.as_ref(),
    )?;
    let cross = CertInfo::parse(&cross_der)?;
    // What machines will check at `trust add --cross`: the cross-certificate
    // must introduce the new root under the old one as it stands now.
    let old_anchor = crate::core::pki::TrustAnchors::from_der(std::slice::from_ref(&old_root.der))?;
    check_cross_certificate(&root, &cross, &old_anchor, now, &[])?;
    let ca_key = new_key_like(home, &cfg.ca_key, key_bits(&old_ca)?, unlock, now)?;
    let ca_der = create_certificate(
        &CertRequest {
            kind: CertKind::Intermediate,
            subject: &ca_subject,
            not_before,
            not_after: ca_life.not_after,
            delegation: None,
        },
        ca_key.signer().public_key(),
        Some(&root),
        root_key.signer(),
    )?;
    let ca = CertInfo::parse(&ca_der)?;
    let (signer_key, signer_der, signer) =
        new_signer(home, &ca, ca_key.signer(), &old_signer, unlock, signer_life.not_after, now)?;

    let parts = [
        Part { role: "root", der: &root_der, info: &root, key: Some(&root_key), shortened: false },
        Part { role: "cross", der: &cross_der, info: &cross, key: None, shortened: false },
        Part { role: "ca", der: &ca_der, info: &ca, key: Some(&ca_key), shortened: ca_life.shortened },
        Part {
            role: "signer",
            der: &signer_der,
            info: &signer,
            key: Some(&signer_key),
            shortened: signer_life.shortened,
        },
    ];
    commit(home, unlock, &parts)
}

// ----- health -----

/// How urgent a health item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthLevel {
    /// Nothing to do.
    Ok,
    /// Plan a rotation.
    Warn,
    /// Act now: something expired or can no longer do its job.
    Action,
}

/// One certificate or CRL of an issuer home.
#[derive(Debug, Clone, Serialize)]
pub struct HealthItem {
    /// `root`, `cross`, `ca`, `signer` or `crl`.
    pub role: String,
    /// Its file.
    pub path: PathBuf,
    /// Subject (certificates) or issuer (CRLs).
    pub subject: String,
    /// notAfter (certificates) or nextUpdate (CRLs), Unix seconds.
    pub expires: Option<i64>,
    /// Whole days left (negative once past).
    pub days_left: Option<i64>,
    /// Urgency.
    pub level: HealthLevel,
    /// What to do, in one line.
    pub message: String,
}

/// The result of [`health`].
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The home's standard token lifetime, days.
    pub token_days: u32,
    /// Root, cross-certificate, issuing CA, signer, then CRLs.
    pub items: Vec<HealthItem>,
    /// What is not as a completed rotation leaves the home ([`check_home`]).
    pub problems: Vec<HomeProblem>,
}

impl HealthReport {
    /// The most urgent level: [`HealthLevel::Action`] when the home has a
    /// problem.
    pub fn level(&self) -> HealthLevel {
        let home = if self.problems.is_empty() { HealthLevel::Ok } else { HealthLevel::Action };
        self.items.iter().map(|i| i.level).chain(std::iter::once(home)).max().unwrap_or(HealthLevel::Ok)
    }
}

/// Something in an issuer home that no completed command leaves there:
/// the trace of an interrupted rotation, or a damaged home.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HomeProblem {
    /// A file the configuration names is missing ([`repair`] cannot make it
    /// again: restore it from a backup).
    Missing {
        /// `root`, `root-key`, `ca`, `ca-key`, `signer`, `signer-key` or `cross`.
        role: String,
        /// The file.
        path: PathBuf,
    },
    /// A certificate or key file of the kind rotations write
    /// (`root|ca|signer|cross[-<serial>].pem|.key`) that the configuration
    /// does not name: written by a rotation interrupted before its switch,
    /// or replaced by one interrupted before it retired it.
    Orphan {
        /// The file.
        path: PathBuf,
        /// `certificate`, `key`, or `key without its certificate`.
        what: String,
    },
    /// `chain.pem` is missing or is not the configured chain (signer,
    /// issuing CA, cross-certificate).
    StaleChain {
        /// The file.
        path: PathBuf,
    },
    /// A temporary file of a write that was interrupted.
    Temporary {
        /// The file.
        path: PathBuf,
    },
}

impl HomeProblem {
    /// Whether [`repair`] fixes it.
    pub fn repairable(&self) -> bool {
        !matches!(self, HomeProblem::Missing { .. })
    }

    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            HomeProblem::Missing { path, .. }
            | HomeProblem::Orphan { path, .. }
            | HomeProblem::StaleChain { path }
            | HomeProblem::Temporary { path } => path,
        }
    }
}

impl std::fmt::Display for HomeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HomeProblem::Missing { role, path } => {
                write!(f, "{}: the configured {role} file is missing", path.display())
            }
            HomeProblem::Orphan { path, what } => write!(
                f,
                "{}: a {what} the configuration does not name (left by an interrupted rotation)",
                path.display()
            ),
            HomeProblem::StaleChain { path } => {
                write!(f, "{}: not the configured chain (signer, issuing CA, cross-certificate)", path.display())
            }
            HomeProblem::Temporary { path } => {
                write!(f, "{}: a temporary file of an interrupted write", path.display())
            }
        }
    }
}

/// Whether a file name is one a rotation or `issuer init` writes for a
/// certificate or key: `root|ca|signer|cross`, optionally `-<hex serial>`,
/// then `.pem` or `.key`.
fn is_rotation_file(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else { return false };
    if ext != "pem" && ext != "key" {
        return false;
    }
    let (role, serial) = match stem.split_once('-') {
        Some((r, s)) => (r, Some(s)),
        None => (stem, None),
    };
    matches!(role, "root" | "ca" | "signer" | "cross")
        && serial.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Looks at `home` for what no completed command leaves there: configured
/// files missing, certificate and key files the configuration does not
/// name, a `chain.pem` that is not the configured chain, temporary files.
/// Reads only; hold a lock on the home for an answer that is not racing a
/// rotation ([`health`] takes the shared one).
pub fn check_home(home: &IssuerHome) -> Result<Vec<HomeProblem>> {
    let cfg = &home.config;
    let mut problems = Vec::new();
    let mut configured = Vec::new();
    let mut entries: Vec<(&str, &Path)> = vec![
        ("root", &cfg.root_cert),
        ("root-key", &cfg.root_key),
        ("ca", &cfg.ca_cert),
        ("ca-key", &cfg.ca_key),
        ("signer", &cfg.signer_cert),
        ("signer-key", &cfg.signer_key),
    ];
    if let Some(c) = &cfg.cross_cert {
        entries.push(("cross", c));
    }
    for (role, p) in entries {
        if let KeyRef::File(path) = home.key_ref(p)? {
            if !path.exists() {
                problems.push(HomeProblem::Missing { role: role.into(), path: path.clone() });
            }
            configured.push(path);
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(home.dir())
        .map_err(|e| Error::io(home.dir(), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let path = home.dir().join(name);
        if name.starts_with('.') && name.ends_with(".tmp") {
            problems.push(HomeProblem::Temporary { path });
        } else if is_rotation_file(name) && !configured.contains(&path) {
            let what = if name.ends_with(".pem") {
                "certificate"
            } else if names.contains(&format!("{}.pem", &name[..name.len() - 4])) {
                "key"
            } else {
                "key without its certificate"
            };
            problems.push(HomeProblem::Orphan { path, what: what.into() });
        }
    }
    if problems.iter().all(|p| !matches!(p, HomeProblem::Missing { .. })) {
        let path = home.dir().join(CHAIN_FILE);
        let current = if path.exists() { Some(read_cert_chain(&path)?) } else { None };
        if current != Some(home.token_chain()?) {
            problems.push(HomeProblem::StaleChain { path });
        }
    }
    Ok(problems)
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Orphan certificates and keys moved into `retired/` (from, to).
    pub retired: Vec<(PathBuf, PathBuf)>,
    /// Temporary files removed.
    pub removed: Vec<PathBuf>,
    /// `chain.pem`, when it was written again from the configuration.
    pub chain: Option<PathBuf>,
    /// Problems repair cannot fix (configured files missing).
    pub remaining: Vec<HomeProblem>,
}

/// Repairs what an interrupted rotation left in `home`, under its
/// exclusive lock (waiting at most `wait`): moves orphan certificates and
/// keys into `retired/` (a key is never deleted: an old CA key still signs
/// CRLs; a new key that never signed anything may be deleted by hand),
/// removes temporary files and writes `chain.pem` again from the
/// configuration. The configuration itself is not changed: the home keeps
/// working as it does. Missing configured files are reported, not fixed.
pub fn repair(home: &mut IssuerHome, wait: Duration) -> Result<RepairReport> {
    let _lock = home.lock(wait)?;
    home.reload()?;
    let problems = check_home(home)?;
    let mut report = RepairReport::default();
    // Keys first, while the certificate of the same name (and its serial) is still here.
    let mut orphans: Vec<&PathBuf> = problems
        .iter()
        .filter_map(|p| match p {
            HomeProblem::Orphan { path, .. } => Some(path),
            _ => None,
        })
        .collect();
    orphans.sort_by_key(|p| p.extension().is_none_or(|e| e != "key"));
    for path in orphans {
        let cert = path.with_extension("pem");
        let serial = first_cert(&cert).map(|c| short_serial(&c)).unwrap_or_default();
        let to = retire(home.dir(), path, &serial)?;
        report.retired.push((path.clone(), to));
    }
    for p in &problems {
        match p {
            HomeProblem::Temporary { path } => {
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
                fsutil::sync_dir(home.dir()).map_err(|e| Error::io(home.dir(), e))?;
                report.removed.push(path.clone());
            }
            HomeProblem::StaleChain { path } => {
                let text: String = home.token_chain()?.iter().map(|d| pem::encode("CERTIFICATE", d)).collect();
                fsutil::write_atomic(path, text.as_bytes(), 0o644, Overwrite::Replace)
                    .map_err(|e| Error::io(path, e))?;
                report.chain = Some(path.clone());
            }
            _ => {}
        }
    }
    report.remaining = check_home(home)?;
    Ok(report)
}

/// What in `home` expires when, and what needs doing, at `now`:
///
/// - **signer**: action when it can no longer cover a standard token
///   (`token_days`) issued today, or expired; warning within 30 days of that.
/// - **issuing CA**: action when a new signer under it could not cover a
///   standard token; warning when it expires within a signer lifetime.
/// - **root** (and a cross-certificate): action when it cannot cover a
///   standard token; warning within an issuing-CA lifetime (root rollover
///   takes as long as the slowest machine).
/// - **CRLs** in `<home>/crls/` (`*.pem`, `*.crl`, `*.der`): action when past
///   nextUpdate; warning within 7 days.
///
/// It also reports what [`check_home`] finds (an action: exit 1 for the
/// CLI). It reads under the home's shared lock, so a rotation running at
/// the same time is waited for, not seen half-way.
pub fn health(home: &IssuerHome, now: i64) -> Result<HealthReport> {
    let _lock = home.lock_shared(DEFAULT_LOCK_WAIT)?;
    let home = &IssuerHome::open(home.dir())?;
    let problems = check_home(home)?;
    let token = i64::from(home.config.token_days) * DAY;
    let mut items = Vec::new();
    let mut cert_item = |role: &str, path: PathBuf, action_within: i64, warn_within: i64, todo: &str| -> Result<()> {
        if !path.exists() {
            return Ok(()); // a problem (`Missing`) already
        }
        let c = first_cert(&path)?;
        let left = c.not_after - now;
        let (level, message) = if left < 0 {
            (HealthLevel::Action, format!("expired {}: {todo}", rfc3339(c.not_after)))
        } else if left < action_within {
            (
                HealthLevel::Action,
                format!(
                    "expires {}, too soon to cover a {}-day token: {todo}",
                    rfc3339(c.not_after),
                    home.config.token_days
                ),
            )
        } else if left < warn_within {
            (HealthLevel::Warn, format!("expires {}: plan to {todo}", rfc3339(c.not_after)))
        } else {
            (HealthLevel::Ok, format!("expires {}", rfc3339(c.not_after)))
        };
        items.push(HealthItem {
            role: role.into(),
            path,
            subject: c.subject,
            expires: Some(c.not_after),
            days_left: Some(left.div_euclid(DAY)),
            level,
            message,
        });
        Ok(())
    };
    let cfg = &home.config;
    cert_item(
        "root",
        home.path(&cfg.root_cert),
        token,
        lifetimes::INTERMEDIATE_DAYS * DAY,
        "rotate the root (scripts/rotate-root.sh)",
    )?;
    if let Some(cross) = &cfg.cross_cert {
        cert_item(
            "cross",
            home.path(cross),
            token,
            lifetimes::SIGNER_DAYS * DAY,
            "finish the root rollover on every machine (trust the new root)",
        )?;
    }
    cert_item(
        "ca",
        home.path(&cfg.ca_cert),
        token,
        lifetimes::SIGNER_DAYS * DAY,
        "rotate the issuing CA (scripts/rotate-issuing-ca.sh)",
    )?;
    cert_item(
        "signer",
        home.path(&cfg.signer_cert),
        token,
        token + 30 * DAY,
        "rotate the signer (scripts/rotate-signer.sh)",
    )?;
    let crl_dir = home.dir().join(CRLS_DIR);
    if let Ok(entries) = std::fs::read_dir(&crl_dir) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crl" || x == "der"))
            .collect();
        paths.sort();
        for path in paths {
            let bytes = fsutil::read_bounded(&path, 1024 * 1024).map_err(|e| e.at(&path))?;
            let ders = match std::str::from_utf8(&bytes) {
                Ok(t) if t.contains("-----BEGIN") => pem::decode_all(t, "X509 CRL")?,
                _ => vec![bytes],
            };
            for der in ders {
                let crl = Crl::parse(&der)?;
                let (level, message) = match crl.next_update {
                    Some(n) if n < now => {
                        (HealthLevel::Action, format!("stale since {}: publish a new CRL (tka crl create)", rfc3339(n)))
                    }
                    Some(n) if n - now < 7 * DAY => {
                        (HealthLevel::Warn, format!("next update due {}: publish a new CRL soon", rfc3339(n)))
                    }
                    Some(n) => (HealthLevel::Ok, format!("next update due {}", rfc3339(n))),
                    None => (HealthLevel::Ok, "no next update".into()),
                };
                items.push(HealthItem {
                    role: "crl".into(),
                    path: path.clone(),
                    subject: crl.issuer.clone(),
                    expires: crl.next_update,
                    days_left: crl.next_update.map(|n| (n - now).div_euclid(DAY)),
                    level,
                    message,
                });
            }
        }
    }
    Ok(HealthReport { token_days: cfg.token_days, items, problems })
}

// ----- machines: trusting a new root -----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_file_names_are_the_ones_init_and_rotations_write() {
        for ok in ["root.pem", "ca.key", "signer-0a1b2c3d.pem", "cross-ff.pem", "signer-0A1B.key"] {
            assert!(is_rotation_file(ok), "{ok}");
        }
        for other in ["chain.pem", "tka-issuer.json", "signer-.pem", "signer-x1.pem", "root.pem.bak", "my-ca.pem"] {
            assert!(!is_rotation_file(other), "{other}");
        }
    }

    #[test]
    fn retire_keeps_a_name_without_serial_and_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            std::fs::write(d.path().join("signer.key"), "k").unwrap();
            retire(d.path(), &d.path().join("signer.key"), "").unwrap();
        }
        std::fs::write(d.path().join("signer.pem"), "c").unwrap();
        retire(d.path(), &d.path().join("signer.pem"), "0a1b").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(d.path().join(RETIRED_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["signer-0a1b.pem", "signer.2.key", "signer.key"]);
    }

    #[test]
    fn generation_names() {
        assert_eq!(next_generation_name("CN=tka Root CA"), "CN=tka Root CA G2");
        assert_eq!(next_generation_name("CN=tka Root CA G2,O=Example"), "CN=tka Root CA G3,O=Example");
        assert_eq!(next_generation_name("CN=Gx G"), "CN=Gx G G2");
    }
}
