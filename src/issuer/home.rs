//! The issuer home: one directory holding a ready PKI (root, issuing CA,
//! token signer) and its configuration, so day-one use is one command.
//!
//! ```text
//! <home>/                 0700
//!   tka-issuer.json       configuration: where everything is, defaults
//!   root.pem  root.key    root CA (the certificate machines must trust)
//!   ca.pem    ca.key      issuing CA (signs signer certificates)
//!   signer.pem signer.key token signer (signs tokens)
//!   chain.pem             signer certificate then issuing CA: the x5c chain
//! ```
//!
//! Every key is written 0600 and encrypted unless the caller asked for
//! plaintext. `init` refuses a non-empty directory and removes what it
//! created if any step fails, so a failed init leaves nothing behind: the
//! files it wrote, and the keys it generated on a PKCS#11 token (what
//! cannot be removed from the token is named in the error,
//! [`Error::KeysLeftOnToken`]).

use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use crate::core::keys::{open_key, KeyRef, KeyUnlock, NewKey, Signer};
use crate::core::pkcs11::Pkcs11Uri;
use crate::core::pki::{pem, CertInfo};
use crate::issuer::certs::{create_certificate, lifetimes, CertKind, CertRequest};
use crate::issuer::signer::TokenSigner;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File name of the lock inside an issuer home.
pub const LOCK_FILE: &str = "tka-issuer.lock";
/// How long a command waits by default for another one holding the home.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);
/// File name of the chain (signer, issuing CA, cross-certificate) inside an issuer home.
pub const CHAIN_FILE: &str = "chain.pem";

/// File name of the configuration inside an issuer home.
pub const CONFIG_FILE: &str = "tka-issuer.json";
/// Configuration format version.
pub const CONFIG_VERSION: u32 = 1;

/// What `tka issuer init` builds.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Organisation name used in the subjects (`CN=<org> Root CA`, ...).
    pub org: String,
    /// Root key size (default 4096).
    pub root_bits: usize,
    /// Issuing CA key size (default 3072).
    pub ca_bits: usize,
    /// Signer key size (default 2048).
    pub signer_bits: usize,
    /// Root lifetime, days.
    pub root_days: i64,
    /// Issuing CA lifetime, days.
    pub ca_days: i64,
    /// Signer lifetime, days.
    pub signer_days: i64,
    /// Generate the three keys on this PKCS#11 token instead of in files.
    /// The URI names the token (and module, PIN source); the keys are
    /// labelled `<object>-root`, `<object>-ca` and `<object>-signer`, with
    /// `object` defaulting to `tka`.
    pub pkcs11: Option<Pkcs11Uri>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            org: "tka".into(),
            root_bits: 4096,
            ca_bits: 3072,
            signer_bits: 2048,
            root_days: lifetimes::ROOT_DAYS,
            ca_days: lifetimes::INTERMEDIATE_DAYS,
            signer_days: lifetimes::SIGNER_DAYS,
            pkcs11: None,
        }
    }
}

/// The configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Format version.
    pub version: u32,
    /// Root certificate, relative to the home.
    pub root_cert: PathBuf,
    /// Root key: a file relative to the home, or a `pkcs11:` URI.
    pub root_key: PathBuf,
    /// Issuing CA certificate.
    pub ca_cert: PathBuf,
    /// Issuing CA key: a file or a `pkcs11:` URI.
    pub ca_key: PathBuf,
    /// Signer certificate.
    pub signer_cert: PathBuf,
    /// Signer key: a file or a `pkcs11:` URI.
    pub signer_key: PathBuf,
    /// Default token lifetime, days.
    pub token_days: u32,
    /// Cross-certificate (the current root's subject and key, signed by the
    /// previous root), appended to the x5c chain after a root rotation so
    /// machines that still trust only the previous root verify new tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_cert: Option<PathBuf>,
}

/// A lock on an issuer home, from [`IssuerHome::lock`] (exclusive: the
/// holder may change the home) or [`IssuerHome::lock_shared`] (readers).
/// Released when dropped, or by the kernel when the process dies.
#[derive(Debug)]
pub struct HomeLock {
    // Holds the flock; closing the file releases it. `None`: a shared lock
    // on a home whose lock file cannot be created (a read-only home).
    file: Option<File>,
    exclusive: bool,
}

impl Drop for HomeLock {
    fn drop(&mut self) {
        if let (Some(f), true) = (&self.file, self.exclusive) {
            // Forget the pid before the kernel releases the lock.
            let _ = f.set_len(0);
        }
    }
}

fn acquire_lock(dir: &Path, exclusive: bool, wait: Duration) -> Result<HomeLock> {
    let path = dir.join(LOCK_FILE);
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = match opts.open(&path) {
        Ok(f) => f,
        Err(e)
            if !exclusive
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
        {
            match File::open(&path) {
                Ok(f) => f,
                Err(_) => return Ok(HomeLock { file: None, exclusive }),
            }
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let deadline = Instant::now() + wait;
    loop {
        let attempt = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match attempt {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                let now = Instant::now();
                if now >= deadline {
                    let mut text = String::new();
                    let _ = (&file).take(64).read_to_string(&mut text);
                    return Err(Error::HomeBusy { home: dir.to_path_buf(), pid: text.trim().parse().ok() });
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
    }
    if exclusive {
        let mut f = &file;
        f.set_len(0)
            .and_then(|()| f.rewind())
            .and_then(|()| f.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(HomeLock { file: Some(file), exclusive })
}

/// An opened issuer home.
#[derive(Debug, Clone)]
pub struct IssuerHome {
    dir: PathBuf,
    /// Its configuration.
    pub config: IssuerConfig,
}

impl IssuerHome {
    /// Creates a new issuer home in `dir` (which must not exist or be empty).
    /// Key files are protected by `unlock.passphrase` (plaintext when
    /// `None`); keys on a token (`opts.pkcs11`) are unlocked with
    /// `unlock.pin` unless the URI names a PIN source.
    pub fn init(dir: &Path, opts: &InitOptions, unlock: &KeyUnlock, now: i64) -> Result<IssuerHome> {
        let existed = dir.exists();
        if existed {
            let mut entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
            if entries.next().is_some() {
                return Err(Error::Usage(format!(
                    "{} is not empty: an issuer home is created in a new or empty directory",
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut made = Vec::new();
        let mut result = Self::init_inner(dir, opts, unlock, now, &mut made);
        if let Err(error) = result {
            // Keys made on a token are taken off it again (best effort;
            // what cannot be removed is named in the error).
            let left: Vec<String> =
                made.into_iter().filter_map(|k| k.discard(unlock).err().map(|e| e.to_string())).collect();
            result = Err(if left.is_empty() { error } else { Error::KeysLeftOnToken { error: Box::new(error), left } });
        }
        if result.is_err() {
            // Leave nothing half-created: remove what this call wrote.
            if existed {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    for e in entries.flatten() {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        result
    }

    /// Builds the home; every key it generates goes into `made` as soon as
    /// it exists, so [`IssuerHome::init`] can remove it if a later step fails.
    fn init_inner(
        dir: &Path,
        opts: &InitOptions,
        unlock: &KeyUnlock,
        now: i64,
        made: &mut Vec<NewKey>,
    ) -> Result<IssuerHome> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir, e))?;
        }
        let not_before = now - 300; // tolerate small clock differences between machines
        let place = |role: &str, file: &str| match &opts.pkcs11 {
            Some(uri) => {
                let base = uri.object.clone().unwrap_or_else(|| "tka".into());
                KeyRef::Pkcs11(Box::new(uri.with_object(&format!("{base}-{role}"))))
            }
            None => KeyRef::File(dir.join(file)),
        };
        for (role, file, bits) in [
            ("root", "root.key", opts.root_bits),
            ("ca", "ca.key", opts.ca_bits),
            ("signer", "signer.key", opts.signer_bits),
        ] {
            made.push(NewKey::generate(&place(role, file), bits, unlock)?);
        }
        let [root_new, ca_new, signer_new] = &made[..] else { unreachable!("three keys were made") };
        let (root_key, ca_key, signer_key) = (root_new.signer(), ca_new.signer(), signer_new.signer());

        let root_subject = format!("CN={} Root CA", escape_rdn(&opts.org));
        let root_der = create_certificate(
            &CertRequest {
                kind: CertKind::Root,
                subject: &root_subject,
                not_before,
                not_after: now + opts.root_days * crate::core::clock::DAY,
                delegation: None,
            },
            root_key.public_key(),
            None,
            root_key,
        )?;
        let root = CertInfo::parse(&root_der)?;
        let ca_subject = format!("CN={} Issuing CA", escape_rdn(&opts.org));
        let ca_der = create_certificate(
            &CertRequest {
                kind: CertKind::Intermediate,
                subject: &ca_subject,
                not_before,
                not_after: (now + opts.ca_days * crate::core::clock::DAY).min(root.not_after),
                delegation: None,
            },
            ca_key.public_key(),
            Some(&root),
            root_key,
        )?;
        let ca = CertInfo::parse(&ca_der)?;
        let signer_subject = format!("CN={} Token Signer", escape_rdn(&opts.org));
        let signer_der = create_certificate(
            &CertRequest {
                kind: CertKind::Signer,
                subject: &signer_subject,
                not_before,
                not_after: (now + opts.signer_days * crate::core::clock::DAY).min(ca.not_after),
                delegation: None,
            },
            signer_key.public_key(),
            Some(&ca),
            ca_key,
        )?;

        // Configuration entries: key files relative to the home, URIs as they are.
        let stored = |k: &NewKey, file: &str| -> Result<PathBuf> {
            let p = k.store(&dir.join(file), unlock.protection())?.into_path();
            Ok(p.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(p))
        };
        let config = IssuerConfig {
            version: CONFIG_VERSION,
            root_cert: "root.pem".into(),
            root_key: stored(root_new, "root.key")?,
            ca_cert: "ca.pem".into(),
            ca_key: stored(ca_new, "ca.key")?,
            signer_cert: "signer.pem".into(),
            signer_key: stored(signer_new, "signer.key")?,
            token_days: 180,
            cross_cert: None,
        };
        write_public(&dir.join(&config.root_cert), &pem::encode("CERTIFICATE", &root_der))?;
        write_public(&dir.join(&config.ca_cert), &pem::encode("CERTIFICATE", &ca_der))?;
        write_public(&dir.join(&config.signer_cert), &pem::encode("CERTIFICATE", &signer_der))?;
        write_public(
            &dir.join(CHAIN_FILE),
            &(pem::encode("CERTIFICATE", &signer_der) + &pem::encode("CERTIFICATE", &ca_der)),
        )?;
        let json = serde_json::to_string_pretty(&config).expect("config serializes") + "\n";
        write_public(&dir.join(CONFIG_FILE), &json)?;
        // The lock file exists from the start (empty while nobody holds it).
        fsutil::write_atomic(&dir.join(LOCK_FILE), b"", 0o600, Overwrite::Refuse)
            .map_err(|e| Error::io(dir.join(LOCK_FILE), e))?;
        Ok(IssuerHome { dir: dir.into(), config })
    }

    /// Opens an existing issuer home.
    pub fn open(dir: &Path) -> Result<IssuerHome> {
        let path = dir.join(CONFIG_FILE);
        let bytes = fsutil::read_bounded(&path, 64 * 1024).map_err(|e| {
            if e.is_not_found() {
                Error::NotAnIssuerHome { path: dir.to_path_buf() }
            } else {
                e.at(&path)
            }
        })?;
        let config: IssuerConfig =
            serde_json::from_slice(&bytes).map_err(|e| Error::format(path.display().to_string(), e))?;
        if config.version > CONFIG_VERSION {
            return Err(Error::format(
                path.display().to_string(),
                format!("written by a newer tka (version {}); this tka reads version {CONFIG_VERSION}", config.version),
            ));
        }
        Ok(IssuerHome { dir: dir.into(), config })
    }

    /// Takes the home's exclusive lock, waiting at most `wait` for another
    /// holder (any process, or this one) to finish; then
    /// [`Error::HomeBusy`], naming the holder's pid when it is known. Every
    /// change to the home's files is made under it. Re-read the
    /// configuration under the lock ([`IssuerHome::reload`]) before
    /// deciding anything from it.
    pub fn lock(&self, wait: Duration) -> Result<HomeLock> {
        acquire_lock(&self.dir, true, wait)
    }

    /// Takes the home's shared lock (many readers at once, no writer),
    /// waiting at most `wait` like [`IssuerHome::lock`].
    pub fn lock_shared(&self, wait: Duration) -> Result<HomeLock> {
        acquire_lock(&self.dir, false, wait)
    }

    /// Reads the configuration again (after taking a lock).
    pub fn reload(&mut self) -> Result<()> {
        *self = IssuerHome::open(&self.dir)?;
        Ok(())
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Absolute path of a file named in the configuration.
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.dir.join(rel)
    }

    /// The root certificate machines must trust.
    pub fn root_cert_path(&self) -> PathBuf {
        self.path(&self.config.root_cert)
    }

    /// Where a key named in the configuration lives: a `pkcs11:` URI as
    /// it is (marked as read from a configuration file, so its
    /// `module-path` must lie in the PKCS#11 module directories unless the
    /// caller allows otherwise), a file relative to the home.
    pub fn key_ref(&self, configured: &Path) -> Result<KeyRef> {
        match KeyRef::from_config(configured)? {
            KeyRef::File(p) => Ok(KeyRef::File(self.path(&p))),
            uri => Ok(uri),
        }
    }

    /// Opens a key named in the configuration.
    pub fn open_key(&self, configured: &Path, unlock: &KeyUnlock) -> Result<Box<dyn Signer>> {
        open_key(&self.key_ref(configured)?, unlock)
    }

    /// Loads the signer key and chain, ready to issue tokens: under the
    /// shared lock, from the configuration as it is then (a rotation that
    /// finished since this home was opened is followed).
    pub fn token_signer(&self, unlock: &KeyUnlock) -> Result<TokenSigner> {
        let _lock = self.lock_shared(DEFAULT_LOCK_WAIT)?;
        let current = IssuerHome::open(&self.dir)?;
        current.token_signer_unlocked(unlock)
    }

    fn token_signer_unlocked(&self, unlock: &KeyUnlock) -> Result<TokenSigner> {
        let key = self.open_key(&self.config.signer_key, unlock)?;
        let mut chain = read_cert_chain(&self.path(&self.config.signer_cert))?;
        chain.extend(read_cert_chain(&self.path(&self.config.ca_cert))?);
        if let Some(cross) = &self.config.cross_cert {
            chain.extend(read_cert_chain(&self.path(cross))?);
        }
        TokenSigner::new(key, chain)
    }

    /// The x5c chain tokens carry (DER): signer, issuing CA, and the
    /// cross-certificate when there is one. Reads certificates only.
    pub fn token_chain(&self) -> Result<Vec<Vec<u8>>> {
        let mut chain = read_cert_chain(&self.path(&self.config.signer_cert))?;
        chain.truncate(1);
        chain.extend(read_cert_chain(&self.path(&self.config.ca_cert))?);
        if let Some(cross) = &self.config.cross_cert {
            chain.extend(read_cert_chain(&self.path(cross))?);
        }
        Ok(chain)
    }

    /// Replaces `tka-issuer.json` atomically (temp file, fsync, rename):
    /// a reader sees the old configuration or the new one, never a mix.
    pub fn save_config(&mut self, config: IssuerConfig) -> Result<()> {
        let path = self.dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(&config).expect("config serializes") + "\n";
        fsutil::write_atomic(&path, json.as_bytes(), 0o644, Overwrite::Replace).map_err(|e| Error::io(&path, e))?;
        self.config = config;
        Ok(())
    }
}

/// Reads every certificate in a PEM (or DER) file.
pub fn read_cert_chain(path: &Path) -> Result<Vec<Vec<u8>>> {
    let bytes = fsutil::read_bounded(path, 1024 * 1024).map_err(|e| e.at(path))?;
    pem::certificates_from_bytes(&bytes, &path.display().to_string())
}

/// Writes a public file (certificate, config): 0644, never replacing one.
pub fn write_public(path: &Path, text: &str) -> Result<()> {
    fsutil::write_atomic(path, text.as_bytes(), 0o644, Overwrite::Refuse).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Exists { path: path.into() }
        } else {
            Error::io(path, e)
        }
    })
}

/// Escapes RFC 4514 special characters in an attribute value.
fn escape_rdn(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') || (i == 0 && matches!(c, '#' | ' ')) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
