//! The write side: everything that changes the store holds a [`StoreLock`].

use super::clock::StoreState;
use super::files::{
    open_lock_file, Store, TokenFile, CERTS_DIR, CRLS_DIR, LAYOUT_VERSION, LOCK_FILE, MAX_KNOWN_CERTS,
    MAX_REVOCATION_FILE, MAX_ROOT_DER, MAX_ROOT_FILE, MAX_STATE_FILE, MAX_TOKEN_FILE, MIN_FINGERPRINT_PREFIX,
    REVOCATIONS_DIR, ROOTS_DIR, SUBDIRS, TOKENS_DIR, VERSION_FILE,
};
use super::names;
use crate::core::clock::rfc3339;
use crate::core::fsutil::{sync_dir, write_atomic, Overwrite};
use crate::core::store_error::StoreError;
use std::fs::{self, File};
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Mode of data files (the store directory's 0700 is the access gate).
const FILE_MODE: u32 = 0o644;
/// Mode of the store's subdirectories.
const SUBDIR_MODE: u32 = 0o755;

/// Exclusive write access to a [`Store`], from [`Store::lock`].
///
/// Every write method is here; the lock is released when this is dropped.
/// It dereferences to the [`Store`], so reads done while holding it (the
/// "read" half of a read-modify-write) are plain `lock.state()` calls.
#[derive(Debug)]
pub struct StoreLock<'a> {
    store: &'a Store,
    // Holds the flock; closing the file releases it.
    _file: File,
}

impl Deref for StoreLock<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
    }
}

impl Store {
    /// Takes the store's exclusive write lock, waiting for any other holder
    /// (thread or process). Released when the [`StoreLock`] is dropped.
    ///
    /// Also removes temporary files left by a writer that was killed
    /// mid-write (safe because only lock holders write).
    pub fn lock(&self) -> Result<StoreLock<'_>, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = open_lock_file(&path)?;
        file.lock().map_err(|e| StoreError::io(&path, e))?;
        StoreLock::acquired(self, file)
    }

    /// [`Store::lock`] for a status check, which writes at most the clock
    /// mark: the sweep of temporary files is left to
    /// [`StoreLock::save_state_swept`], so a check that finds the mark
    /// already at or past its time reads the store's directories once,
    /// not twice.
    pub(crate) fn lock_for_clock(&self) -> Result<StoreLock<'_>, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = open_lock_file(&path)?;
        file.lock().map_err(|e| StoreError::io(&path, e))?;
        Ok(StoreLock { store: self, _file: file })
    }

    /// [`StoreLock::add_certificates`] under the store lock (taken and
    /// released here): stores public certificates (DER) the chains of
    /// compact tokens are built from. Returns how many were new.
    pub fn add_certificates(&self, ders: &[Vec<u8>]) -> Result<usize, StoreError> {
        self.lock()?.add_certificates(ders)
    }

    /// Like [`Store::lock`], but returns `Ok(None)` at once if another
    /// thread or process holds the lock.
    pub fn try_lock(&self) -> Result<Option<StoreLock<'_>>, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => StoreLock::acquired(self, file).map(Some),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }
}

impl<'a> StoreLock<'a> {
    /// Wraps a freshly locked file and sweeps stale temporary files.
    pub(super) fn acquired(store: &'a Store, file: File) -> Result<StoreLock<'a>, StoreError> {
        let lock = StoreLock { store, _file: file };
        lock.sweep_temps()?;
        Ok(lock)
    }

    /// The store this lock belongs to.
    pub fn store(&self) -> &Store {
        self.store
    }

    /// Trusts the root certificate `der`, writing `roots/<fp>.pem` (PEM
    /// `CERTIFICATE`, 0644). Returns its fingerprint, the lowercase hex
    /// SHA-256 of `der`. Adding a root that is already there is a no-op.
    ///
    /// Only the framing is checked (a non-empty DER SEQUENCE of at most
    /// [`MAX_ROOT_DER`] bytes); deciding that the certificate is a sensible
    /// root is the caller's job.
    pub fn add_root(&self, der: &[u8]) -> Result<String, StoreError> {
        check_root_der(der)?;
        let fp = names::fingerprint(der);
        let path = self.root_path(&fp);
        // Already trusted with exactly these bytes: nothing to do. A file
        // that is unreadable or differs is rewritten.
        if let Ok(Some(bytes)) = super::files::read_opt(&path, MAX_ROOT_FILE) {
            let same =
                std::str::from_utf8(&bytes).ok().and_then(|t| names::pem_decode(t).ok()).is_some_and(|d| d == der);
            if same {
                return Ok(fp);
            }
        }
        self.ensure_subdir(ROOTS_DIR)?;
        write(&path, names::pem_encode(der).as_bytes())?;
        Ok(fp)
    }

    /// Like [`StoreLock::add_root`], and records which products the root
    /// may activate: `Some(products)` writes `roots/<fp>.json`, `None`
    /// (every product) removes it. The scope is written before the root, so
    /// a crash never leaves the root trusted without its scope.
    ///
    /// Errors: those of `add_root`, [`StoreError::BadProduct`] for a product
    /// name that cannot be stored (or an empty list).
    pub fn add_root_with_products(&self, der: &[u8], products: Option<&[String]>) -> Result<String, StoreError> {
        check_root_der(der)?;
        check_products(products)?;
        let scope = scope_bytes(products)?;
        self.put_side_file(&self.scope_path(&names::fingerprint(der)), scope.as_deref())?;
        self.add_root(der)
    }

    /// Like [`StoreLock::add_root_with_products`], and records how the root
    /// is trusted: `Some(chain)` writes its vouching chain
    /// (`roots/<fp>.cross`: the cross-certificate, the root that signed it,
    /// and that root's own chain; see
    /// [`crate::core::pki::TrustAnchors::with_vouching`]), `None` (trusted on its
    /// own) removes it. The chain is written before the root, so a crash
    /// never leaves the root trusted without the cross-certificate's limits.
    ///
    /// Errors: those of `add_root_with_products`, [`StoreError::TooLarge`]
    /// for a chain that does not fit in a root file.
    pub fn add_root_vouched(
        &self,
        der: &[u8],
        products: Option<&[String]>,
        vouching: Option<&[Vec<u8>]>,
    ) -> Result<String, StoreError> {
        // Everything is checked, and both side files are made, before the
        // first write: a refused add leaves every file as it was.
        check_root_der(der)?;
        check_products(products)?;
        let scope = scope_bytes(products)?;
        let chain: Option<String> = vouching.map(|chain| chain.iter().map(|d| names::pem_encode(d)).collect());
        if let Some(text) = &chain {
            check_side_file_size("the root's vouching chain", text.len())?;
        }
        let fp = names::fingerprint(der);
        self.put_side_file(&self.vouching_path(&fp), chain.as_deref().map(str::as_bytes))?;
        self.put_side_file(&self.scope_path(&fp), scope.as_deref())?;
        self.add_root(der)
    }

    /// Writes a root's side file (`roots/<fp>.json` scope, `roots/<fp>.cross`
    /// vouching chain) with `bytes`, or removes it for `None`.
    fn put_side_file(&self, path: &Path, bytes: Option<&[u8]>) -> Result<(), StoreError> {
        match bytes {
            Some(bytes) => {
                self.ensure_subdir(ROOTS_DIR)?;
                write(path, bytes)
            }
            None => remove(path).map(drop),
        }
    }

    /// Stops trusting the root whose fingerprint is, or uniquely starts
    /// with, `fingerprint_or_unique_prefix` (hex, any case, `:` separators
    /// allowed, at least [`MIN_FINGERPRINT_PREFIX`] digits).
    ///
    /// Refuses with [`StoreError::LastRoot`] to remove the only root unless
    /// `force`. Roots are matched by file name, so a corrupt root file can
    /// still be removed. Errors: [`StoreError::BadFingerprint`],
    /// [`StoreError::NotFound`], [`StoreError::AmbiguousFingerprint`].
    pub fn remove_root(&self, fingerprint_or_unique_prefix: &str, force: bool) -> Result<(), StoreError> {
        let prefix = names::normalize_fingerprint_prefix(fingerprint_or_unique_prefix, MIN_FINGERPRINT_PREFIX)?;
        let all: Vec<String> = self.root_files()?.0.into_iter().map(|(fp, _)| fp).collect();
        let matches: Vec<String> = all.iter().filter(|fp| fp.starts_with(&prefix)).cloned().collect();
        let fp = match matches.as_slice() {
            [] => {
                return Err(StoreError::NotFound(format!(
                    "no trusted root with fingerprint {fingerprint_or_unique_prefix:?} in {}",
                    self.dir().join(ROOTS_DIR).display()
                )))
            }
            [one] => one,
            _ => {
                return Err(StoreError::AmbiguousFingerprint {
                    prefix: fingerprint_or_unique_prefix.to_string(),
                    matches,
                })
            }
        };
        if all.len() == 1 && !force {
            return Err(StoreError::LastRoot);
        }
        remove(&self.root_path(fp))?;
        remove(&self.scope_path(fp))?;
        remove(&self.vouching_path(fp))?;
        Ok(())
    }

    /// Installs `token` as the token for `product`, replacing any previous
    /// one atomically; `now` (Unix seconds) is recorded as `installed_at`.
    ///
    /// The token text is stored as given (the caller has verified it). The
    /// resulting file must fit in [`MAX_TOKEN_FILE`] bytes.
    pub fn put_token(&self, product: &str, token: &str, now: i64) -> Result<(), StoreError> {
        names::check_product(product)?;
        let file = TokenFile { product: product.to_string(), installed_at: now, token: token.to_string() };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| StoreError::io(&self.token_path(product), io::Error::other(e)))?;
        bytes.push(b'\n');
        if bytes.len() > MAX_TOKEN_FILE {
            return Err(StoreError::TooLarge {
                what: format!("the token file for {product:?}"),
                len: bytes.len(),
                limit: MAX_TOKEN_FILE,
            });
        }
        self.ensure_subdir(TOKENS_DIR)?;
        write(&self.token_path(product), &bytes)
    }

    /// Removes the token for `product`. Returns whether there was one.
    pub fn remove_token(&self, product: &str) -> Result<bool, StoreError> {
        names::check_product(product)?;
        remove(&self.token_path(product))
    }

    /// Writes `state`, refusing with [`StoreError::Regression`] if it would
    /// lower the clock high-water mark or any revocation sequence number, or
    /// drop a sequence number, compared with the state on disk.
    ///
    /// Read the state with `lock.state()` while holding this same lock, so
    /// no concurrent update can be lost.
    pub fn save_state(&self, state: &StoreState) -> Result<(), StoreError> {
        let path = self.state_path();
        let current = self.state()?;
        if state.clock_high_water < current.clock_high_water {
            return Err(StoreError::Regression {
                path,
                detail: format!(
                    "the clock high-water mark would go back from {} to {}",
                    rfc3339(current.clock_high_water),
                    rfc3339(state.clock_high_water)
                ),
            });
        }
        for (key, &seq) in &current.revocation_seq {
            match state.revocation_seq.get(key) {
                Some(&new) if new >= seq => {}
                Some(&new) => {
                    return Err(StoreError::Regression {
                        path,
                        detail: format!("the revocation sequence for {key} would go back from {seq} to {new}"),
                    })
                }
                None => {
                    return Err(StoreError::Regression {
                        path,
                        detail: format!("the revocation sequence for {key} ({seq}) would be dropped"),
                    })
                }
            }
        }
        self.replace_state(state)
    }

    /// Writes `state` as given, without the forward-only check of
    /// [`StoreLock::save_state`].
    ///
    /// For explicit administrator recovery only, e.g. after the clock was
    /// once set years ahead and the high-water mark now blocks every
    /// activation, or to rewrite a corrupt `state.json`. Lowering these
    /// values re-opens clock-rollback and old-revocation-list attacks.
    pub fn replace_state(&self, state: &StoreState) -> Result<(), StoreError> {
        let path = self.state_path();
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::io(&path, io::Error::other(e)))?;
        bytes.push(b'\n');
        if bytes.len() > MAX_STATE_FILE {
            return Err(StoreError::TooLarge {
                what: "the store state".to_string(),
                len: bytes.len(),
                limit: MAX_STATE_FILE,
            });
        }
        write(&path, &bytes)
    }

    /// Installs the X.509 CRL `der` under `key` (the issuer identifier the
    /// caller chose, lowercase hex), replacing any previous one.
    pub fn put_crl(&self, key: &str, der: &[u8]) -> Result<(), StoreError> {
        names::check_key(key)?;
        check_revocation_size("CRL", der.len())?;
        self.ensure_subdir(CRLS_DIR)?;
        write(&self.crl_path(key), der)
    }

    /// Installs the token revocation list `jws` (compact text) under `key`
    /// (lowercase hex), replacing any previous one. Its sequence number is
    /// the caller's to record in [`StoreState::revocation_seq`].
    pub fn put_revocation_list(&self, key: &str, jws: &str) -> Result<(), StoreError> {
        names::check_list_key(key)?;
        check_revocation_size("token revocation list", jws.len())?;
        self.ensure_subdir(REVOCATIONS_DIR)?;
        write(&self.revocation_path(key), jws.as_bytes())
    }

    /// Removes the CRL stored under `key`. Returns whether there was one.
    pub fn remove_crl(&self, key: &str) -> Result<bool, StoreError> {
        names::check_key(key)?;
        remove(&self.crl_path(key))
    }

    /// Removes the token revocation list stored under `key`. Returns whether
    /// there was one. (The sequence number in the state stays, so while the
    /// list's root is trusted, activation checks report the list as missing
    /// until it is imported again.)
    pub fn remove_revocation_list(&self, key: &str) -> Result<bool, StoreError> {
        names::check_list_key(key)?;
        remove(&self.revocation_path(key))
    }

    /// Adds public certificates (DER) to the store's known certificates
    /// (`certs/<fp>.pem`, PEM, 0644; see [`Store::certificates`]): the
    /// issuers of compact tokens. Returns how many were new; a certificate
    /// already known (same fingerprint) is skipped, so are repeats in
    /// `ders`.
    ///
    /// Every certificate is checked before the first write, so a refused
    /// add leaves every file as it was: each must parse as an X.509
    /// certificate of at most [`crate::core::pki::MAX_CERT_SIZE`] bytes
    /// ([`StoreError::BadCertificate`], [`StoreError::TooLarge`]), and the
    /// store keeps at most [`MAX_KNOWN_CERTS`] ([`StoreError::TooLarge`]).
    /// Nothing is trusted by being added: a chain built from these must
    /// still end at a trusted root.
    pub fn add_certificates(&self, ders: &[Vec<u8>]) -> Result<usize, StoreError> {
        let mut new: Vec<(String, &[u8])> = Vec::new();
        for der in ders {
            check_known_cert(der)?;
            let fp = names::fingerprint(der);
            if !new.iter().any(|(f, _)| *f == fp) && !self.cert_path(&fp).exists() {
                new.push((fp, der));
            }
        }
        if new.is_empty() {
            return Ok(0);
        }
        let total = self.certificates()?.len() + new.len();
        if total > MAX_KNOWN_CERTS {
            return Err(StoreError::TooManyCertificates { count: total, limit: MAX_KNOWN_CERTS });
        }
        self.ensure_subdir(CERTS_DIR)?;
        for (fp, der) in &new {
            write(&self.cert_path(fp), names::pem_encode(der).as_bytes())?;
        }
        Ok(new.len())
    }

    // ----- internals -----

    /// Creates the layout of a new store; `version` is written last, so a
    /// crash part-way leaves a directory that the next open finishes.
    pub(super) fn initialize_layout(&self) -> Result<(), StoreError> {
        for sub in SUBDIRS {
            self.ensure_subdir(sub)?;
        }
        let state = self.state_path();
        if !state.exists() {
            self.replace_state(&StoreState::default())?;
        }
        write(&self.dir().join(VERSION_FILE), format!("{LAYOUT_VERSION}\n").as_bytes())
    }

    fn ensure_subdir(&self, sub: &str) -> Result<PathBuf, StoreError> {
        let path = self.dir().join(sub);
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(SUBDIR_MODE);
        }
        match builder.create(&path) {
            Ok(()) => {
                super::files::set_mode(&path, SUBDIR_MODE)?;
                sync_dir(self.dir()).map_err(|e| StoreError::io(self.dir(), e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        Ok(path)
    }

    /// Removes temporary files a killed writer left behind. Safe because
    /// temporary files are only ever created by a lock holder.
    /// [`StoreLock::save_state`] under a lock from
    /// [`Store::lock_for_clock`]: sweeps the temporary files first, as
    /// [`Store::lock`] would have.
    pub(crate) fn save_state_swept(&self, state: &StoreState) -> Result<(), StoreError> {
        self.sweep_temps()?;
        self.save_state(state)
    }

    fn sweep_temps(&self) -> Result<(), StoreError> {
        let dirs = std::iter::once(self.dir().to_path_buf()).chain(SUBDIRS.iter().map(|s| self.dir().join(s)));
        for dir in dirs {
            for entry in super::files::dir_entries(&dir)? {
                if names::is_write_temp(&entry.file_name().to_string_lossy()) {
                    remove(&entry.path())?;
                }
            }
        }
        Ok(())
    }
}

fn check_revocation_size(what: &str, len: usize) -> Result<(), StoreError> {
    if len > MAX_REVOCATION_FILE {
        return Err(StoreError::TooLarge { what: what.to_string(), len, limit: MAX_REVOCATION_FILE });
    }
    Ok(())
}

pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_atomic(path, bytes, FILE_MODE, Overwrite::Replace).map_err(|e| StoreError::io(path, e))
}

/// Removes `path` durably; `Ok(false)` if it was not there.
/// The framing [`StoreLock::add_root`] checks: a non-empty DER SEQUENCE of
/// at most [`MAX_ROOT_DER`] bytes.
fn check_root_der(der: &[u8]) -> Result<(), StoreError> {
    if der.len() > MAX_ROOT_DER {
        return Err(StoreError::TooLarge { what: "root certificate".to_string(), len: der.len(), limit: MAX_ROOT_DER });
    }
    if der.first() != Some(&0x30) {
        return Err(StoreError::BadCertificate(if der.is_empty() {
            "empty input".to_string()
        } else {
            format!("starts with byte 0x{:02x}, not a DER SEQUENCE", der[0])
        }));
    }
    Ok(())
}

/// What [`StoreLock::add_certificates`] accepts: an X.509 certificate of
/// at most [`crate::core::pki::MAX_CERT_SIZE`] bytes.
fn check_known_cert(der: &[u8]) -> Result<(), StoreError> {
    let limit = crate::core::pki::MAX_CERT_SIZE;
    if der.len() > limit {
        return Err(StoreError::TooLarge { what: "certificate".to_string(), len: der.len(), limit });
    }
    crate::core::pki::CertInfo::parse(der).map(drop).map_err(|e| StoreError::BadCertificate(e.to_string()))
}

/// A product scope that can be stored: not empty, valid product names.
/// The scope file of a root limited to `products` (`None`: every product,
/// no file), checked against the root file limit.
fn scope_bytes(products: Option<&[String]>) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(products) = products else { return Ok(None) };
    let mut list: Vec<String> = products.to_vec();
    list.sort();
    list.dedup();
    let mut bytes = serde_json::to_vec_pretty(&super::files::ScopeFile { products: list })
        .map_err(|e| StoreError::io(Path::new(ROOTS_DIR), io::Error::other(e)))?;
    bytes.push(b'\n');
    check_side_file_size("the root's product scope", bytes.len())?;
    Ok(Some(bytes))
}

/// A root's side file must fit in a root file.
fn check_side_file_size(what: &str, len: usize) -> Result<(), StoreError> {
    if len > MAX_ROOT_FILE {
        return Err(StoreError::TooLarge { what: what.to_string(), len, limit: MAX_ROOT_FILE });
    }
    Ok(())
}

fn check_products(products: Option<&[String]>) -> Result<(), StoreError> {
    if let Some(products) = products {
        if products.is_empty() {
            return Err(StoreError::BadProduct(String::new()));
        }
        for p in products {
            names::check_product(p)?;
        }
    }
    Ok(())
}

pub(super) fn remove(path: &Path) -> Result<bool, StoreError> {
    crate::core::fsutil::crash_point("store.remove", path).map_err(|e| StoreError::io(path, e))?;
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io(path, e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    Ok(true)
}
