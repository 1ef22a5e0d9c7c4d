//! Opening a store and reading its files: the [`Store`], its layout
//! constants and the bounded readers the writer shares.

use super::clock::StoreState;
use super::names;
use crate::core::store_error::StoreError;

use crate::core::fsutil::{read_bounded, ReadError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The store layout version this code writes and understands.
pub const LAYOUT_VERSION: u32 = 1;
/// The system-wide store, used when running as root.
pub const SYSTEM_STORE_DIR: &str = "/var/lib/tka";
pub use crate::core::store_error::MIN_FINGERPRINT_PREFIX;
/// Size limit of an installed-token file, in bytes.
pub const MAX_TOKEN_FILE: usize = 64 * 1024;
/// Size limit of `state.json`, in bytes.
pub const MAX_STATE_FILE: usize = 64 * 1024;
/// Size limit of a root's PEM file, in bytes.
pub const MAX_ROOT_FILE: usize = 64 * 1024;
/// Size limit of a root certificate's DER accepted by
/// [`StoreLock::add_root`](super::StoreLock::add_root) (its PEM then fits in [`MAX_ROOT_FILE`]).
pub const MAX_ROOT_DER: usize = 32 * 1024;
/// Size limit of a CRL or token revocation-list file, in bytes.
pub const MAX_REVOCATION_FILE: usize = 1024 * 1024;
/// Size limit of a known certificate's file (`certs/<fp>.pem`), in bytes:
/// the PEM of a certificate at the parser's limit
/// ([`crate::core::pki::MAX_CERT_SIZE`]) fits.
pub const MAX_CERT_FILE: usize = 32 * 1024;
/// Most certificates the store keeps in `certs/` (every verification of a
/// compact token searches them).
pub const MAX_KNOWN_CERTS: usize = 64;

pub(super) const VERSION_FILE: &str = "version";
pub(super) const LOCK_FILE: &str = "lock";
pub(super) const STATE_FILE: &str = "state.json";
pub(super) const ROOTS_DIR: &str = "roots";
pub(super) const TOKENS_DIR: &str = "tokens";
pub(super) const CRLS_DIR: &str = "crls";
pub(super) const REVOCATIONS_DIR: &str = "revocations";
pub(super) const CERTS_DIR: &str = "certs";
pub(super) const SUBDIRS: [&str; 5] = [ROOTS_DIR, TOKENS_DIR, CRLS_DIR, REVOCATIONS_DIR, CERTS_DIR];

pub(super) const ROOT_EXT: &str = ".pem";
pub(super) const ROOT_SCOPE_EXT: &str = ".json";
pub(super) const ROOT_VOUCHING_EXT: &str = ".cross";
pub(super) const TOKEN_EXT: &str = ".json";
pub(super) const CRL_EXT: &str = ".der";
pub(super) const REVOCATION_EXT: &str = ".jws";
pub(super) const CERT_EXT: &str = ".pem";

/// The store key of token revocation list `list_id` accepted under the
/// trusted root `root_fingerprint`: `<root fingerprint>-<list id>`. It names
/// both the installed file (`revocations/<key>.jws`) and the sequence in
/// [`StoreState::revocation_seq`], so one issuer's lists can never replace
/// or block another's, whatever list id they claim.
///
/// ```
/// let fp = "ab".repeat(32);
/// assert_eq!(tka::store::list_key(&fp, "00ff"), format!("{fp}-00ff"));
/// ```
pub fn list_key(root_fingerprint: &str, list_id: &str) -> String {
    format!("{root_fingerprint}-{list_id}")
}

/// Splits a revocation-list key into (root fingerprint, list id). A key
/// written before lists were bound to roots is a bare list id: `None` for
/// the root.
pub fn split_list_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('-') {
        Some((fp, id)) => (Some(fp), id),
        None => (None, key),
    }
}

/// An activation store directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    pub(super) dir: PathBuf,
}

/// A token installed in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledToken {
    /// The product it activates (also its file name).
    pub product: String,
    /// The token text (JWS compact serialization), exactly as installed.
    pub token: String,
    /// Unix seconds when it was installed.
    pub installed_at: i64,
}

/// A root certificate the store trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The PEM file it was read from.
    pub path: PathBuf,
    /// The products this root may activate (`roots/<fp>.json`); `None`:
    /// every product.
    pub products: Option<Vec<String>>,
    /// For a root trusted through a cross-certificate, its vouching chain
    /// (`roots/<fp>.cross`, DER, cross-certificate first; see
    /// [`crate::core::pki::TrustAnchors::with_vouching`]); `None`: trusted on its own.
    pub vouching: Option<Vec<Vec<u8>>>,
}

impl TrustedRoot {
    /// For a root trusted through a cross-certificate, the subject of the
    /// root that signed that cross-certificate (`None`: trusted on its own,
    /// or a chain that does not parse, which verification reports).
    pub fn vouched_by(&self) -> Option<String> {
        let chain = self.vouching.as_ref()?;
        crate::core::pki::CertInfo::parse(chain.get(1)?).ok().map(|c| c.subject)
    }
}

/// Root certificate files (fingerprint, path) and the product scope and
/// vouching chain files (fingerprint -> path) in `roots/`.
type RootFiles = (Vec<(String, PathBuf)>, BTreeMap<String, PathBuf>, BTreeMap<String, PathBuf>);

/// On-disk form of a root's product scope, `roots/<fp>.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeFile {
    pub(super) products: Vec<String>,
}

/// On-disk form of an installed token.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenFile {
    pub(super) product: String,
    pub(super) installed_at: i64,
    pub(super) token: String,
}

impl Store {
    /// Whether the store directory `dir` holds no data: every data
    /// subdirectory (roots, tokens, CRLs, revocation lists, known
    /// certificates) is empty or missing. A skeleton just made holds none.
    pub fn holds_no_data(dir: &Path) -> bool {
        SUBDIRS.iter().all(|sub| match fs::read_dir(dir.join(sub)) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        })
    }

    /// Opens the store in `dir`, creating the directory (0700, parents as
    /// needed) and the layout if missing.
    ///
    /// An existing store is only checked, never written to, so read-only
    /// callers can open it. Fails with [`StoreError::NewerVersion`] for a
    /// newer layout, [`StoreError::NotAStore`] for a non-empty directory that
    /// is not a store, [`StoreError::InsecurePermissions`] if the directory
    /// or a subdirectory is writable by group or others.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        match fs::metadata(dir) {
            // An existing directory: its mode is checked from this metadata.
            Ok(m) if m.is_dir() => check_mode(dir, &m)?,
            Ok(_) => {
                return Err(StoreError::NotAStore {
                    path: dir.to_path_buf(),
                    detail: "it is not a directory".to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_private_dir(dir)?;
                check_not_writable_by_others(dir)?;
            }
            Err(e) => return Err(StoreError::io(dir, e)),
        }
        let store = Store { dir: dir.to_path_buf() };
        match store.read_version()? {
            Some(v) => store.check_version(v)?,
            None => store.initialize()?,
        }
        for sub in SUBDIRS {
            check_not_writable_by_others(&store.dir.join(sub))?;
        }
        Ok(store)
    }

    /// Opens the existing store in `dir` for reading, writing nothing:
    /// [`StoreError::NoStore`] when `dir` does not exist or is empty, so a
    /// read-only command on a mistyped path creates nothing. Otherwise
    /// checked as [`Store::open`] checks (a directory with store files but
    /// no layout version is refused as it refuses it).
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StoreError::NotAStore {
                    path: dir.to_path_buf(),
                    detail: "it is not a directory".to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoStore { path: dir.to_path_buf() })
            }
            Err(e) => return Err(StoreError::io(dir, e)),
        }
        let store = Store { dir: dir.to_path_buf() };
        check_not_writable_by_others(&store.dir)?;
        match store.read_version()? {
            Some(v) => store.check_version(v)?,
            // An empty directory holds no store; one with store files but
            // no version is damaged, and refused as `open` refuses it.
            None if dir_is_empty(dir)? => return Err(StoreError::NoStore { path: dir.to_path_buf() }),
            None => return Store::open(dir),
        }
        for sub in SUBDIRS {
            check_not_writable_by_others(&store.dir.join(sub))?;
        }
        Ok(store)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The documented default store directory: [`SYSTEM_STORE_DIR`]
    /// (`/var/lib/tka`) when running as root; otherwise `$XDG_DATA_HOME/tka`
    /// if `xdg_data_home` is an absolute path (the XDG spec says to ignore a
    /// relative one), else `$HOME/.local/share/tka`; with neither, the
    /// system store.
    ///
    /// A pure function: the caller supplies the effective uid check and the
    /// environment.
    ///
    /// ```
    /// use std::path::{Path, PathBuf};
    /// use tka::store::Store;
    /// assert_eq!(Store::default_dir_for(true, Some(Path::new("/root")), None),
    ///            PathBuf::from("/var/lib/tka"));
    /// assert_eq!(Store::default_dir_for(false, Some(Path::new("/home/a")), None),
    ///            PathBuf::from("/home/a/.local/share/tka"));
    /// ```
    pub fn default_dir_for(euid_is_root: bool, home: Option<&Path>, xdg_data_home: Option<&Path>) -> PathBuf {
        if euid_is_root {
            return PathBuf::from(SYSTEM_STORE_DIR);
        }
        if let Some(xdg) = xdg_data_home.filter(|p| p.is_absolute()) {
            return xdg.join("tka");
        }
        match home.filter(|p| !p.as_os_str().is_empty()) {
            Some(home) => home.join(".local").join("share").join("tka"),
            None => PathBuf::from(SYSTEM_STORE_DIR),
        }
    }

    /// The trusted roots, sorted by fingerprint.
    ///
    /// Each `roots/<fp>.pem` must hold one PEM certificate whose SHA-256 is
    /// `<fp>`; anything else is [`StoreError::Corrupt`].
    ///
    /// A root's product scope is read from `roots/<fp>.json`
    /// (`{"products": [..]}`; no file: every product); a scope file that
    /// does not parse, or names an invalid product, is corrupt too. A scope
    /// file without its root (left by a crash) is ignored. So is a
    /// vouching chain (`roots/<fp>.cross`), which must hold an even number
    /// (at most [`crate::core::pki::MAX_VOUCHING_CHAIN`]) of PEM certificates.
    pub fn roots(&self) -> Result<Vec<TrustedRoot>, StoreError> {
        let mut roots = Vec::new();
        let (pems, scopes, vouchings) = self.root_files()?;
        for (fp, path) in pems {
            let Some(bytes) = read_opt(&path, MAX_ROOT_FILE)? else {
                continue;
            };
            let text = String::from_utf8(bytes).map_err(|_| StoreError::corrupt(&path, "not UTF-8 PEM text"))?;
            let der = names::pem_decode(&text).map_err(|d| StoreError::corrupt(&path, d))?;
            let actual = names::fingerprint(&der);
            if actual != fp {
                return Err(StoreError::corrupt(
                    &path,
                    format!("certificate fingerprint is {actual}, not the file name's {fp}"),
                ));
            }
            let products = match scopes.get(&fp) {
                Some(scope) => read_scope(scope)?,
                None => None,
            };
            let vouching = match vouchings.get(&fp) {
                Some(chain) => read_vouching(chain)?,
                None => None,
            };
            roots.push(TrustedRoot { fingerprint: fp, der, path, products, vouching });
        }
        Ok(roots)
    }

    /// The root certificate files (fingerprint, path) and the product scope
    /// files (fingerprint -> path) in `roots/`, sorted.
    pub(super) fn root_files(&self) -> Result<RootFiles, StoreError> {
        let fp_of = |name: &str| -> Option<(String, &str)> {
            let ext = [ROOT_EXT, ROOT_SCOPE_EXT, ROOT_VOUCHING_EXT].into_iter().find(|e| name.ends_with(e))?;
            let stem = name.strip_suffix(ext)?;
            names::is_fingerprint(stem).then(|| (stem.to_string(), ext))
        };
        let (mut pems, mut scopes, mut vouchings) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        let pattern = "<sha256>.pem, <sha256>.json or <sha256>.cross";
        for (name, path) in self.list(ROOTS_DIR, "", |n| fp_of(n).is_some(), pattern)? {
            match fp_of(&name) {
                Some((fp, ROOT_EXT)) => pems.push((fp, path)),
                Some((fp, ROOT_SCOPE_EXT)) => drop(scopes.insert(fp, path)),
                Some((fp, _)) => drop(vouchings.insert(fp, path)),
                None => {}
            }
        }
        Ok((pems, scopes, vouchings))
    }

    /// The installed tokens, sorted by product.
    pub fn tokens(&self) -> Result<Vec<InstalledToken>, StoreError> {
        let valid = |s: &str| names::check_product(s).is_ok();
        let mut out = Vec::new();
        for (product, path) in self.list(TOKENS_DIR, TOKEN_EXT, valid, "<product>.json")? {
            if let Some(t) = read_token(&path, &product)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The token installed for `product`, if any.
    pub fn token(&self, product: &str) -> Result<Option<InstalledToken>, StoreError> {
        names::check_product(product)?;
        read_token(&self.token_path(product), product)
    }

    /// The store's state. A missing or unparsable `state.json` is
    /// [`StoreError::Corrupt`]: it is never silently reset.
    pub fn state(&self) -> Result<StoreState, StoreError> {
        let path = self.dir.join(STATE_FILE);
        let bytes = read_opt(&path, MAX_STATE_FILE)?.ok_or_else(|| {
            StoreError::corrupt(&path, "missing (it holds the clock high-water mark and revocation sequence numbers)")
        })?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(&path, e.to_string()))
    }

    /// The installed X.509 CRLs (DER), sorted by key.
    pub fn crls(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for (_, path) in self.list(CRLS_DIR, CRL_EXT, |k| names::check_key(k).is_ok(), "<hex key>.der")? {
            if let Some(der) = read_opt(&path, MAX_REVOCATION_FILE)? {
                out.push(der);
            }
        }
        Ok(out)
    }

    /// The CRL installed under `key`, if any.
    pub fn crl(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        names::check_key(key)?;
        read_opt(&self.crl_path(key), MAX_REVOCATION_FILE)
    }

    /// The installed token revocation lists (JWS compact text), sorted by key.
    pub fn revocation_lists(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.revocation_list_entries()?.into_iter().map(|(_, text)| text).collect())
    }

    /// The installed token revocation lists as (key, JWS compact text),
    /// sorted by key (see [`list_key`]).
    pub fn revocation_list_entries(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let valid = |k: &str| names::check_list_key(k).is_ok();
        for (key, path) in self.list(REVOCATIONS_DIR, REVOCATION_EXT, valid, "<root fp>-<list id>.jws")? {
            if let Some(text) = read_text(&path)? {
                out.push((key, text));
            }
        }
        Ok(out)
    }

    /// The known certificates (DER), sorted by fingerprint: public
    /// certificates of issuers (signers, intermediates) that compact tokens
    /// (no `x5c`) are verified with. They are not trusted: a chain built
    /// from them must still end at a trusted root.
    ///
    /// Each `certs/<fp>.pem` must hold one PEM certificate that parses as
    /// X.509 and whose SHA-256 is `<fp>`; anything else is
    /// [`StoreError::Corrupt`], as is more than [`MAX_KNOWN_CERTS`] files.
    pub fn certificates(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let files = self.list(CERTS_DIR, CERT_EXT, names::is_fingerprint, "<sha256>.pem")?;
        if files.len() > MAX_KNOWN_CERTS {
            return Err(StoreError::corrupt(
                &self.dir.join(CERTS_DIR),
                format!("{} certificates, more than the {MAX_KNOWN_CERTS} a store keeps", files.len()),
            ));
        }
        let mut out = Vec::with_capacity(files.len());
        for (fp, path) in files {
            let Some(bytes) = read_opt(&path, MAX_CERT_FILE)? else {
                continue;
            };
            let text = String::from_utf8(bytes).map_err(|_| StoreError::corrupt(&path, "not UTF-8 PEM text"))?;
            let der = names::pem_decode(&text).map_err(|d| StoreError::corrupt(&path, d))?;
            let actual = names::fingerprint(&der);
            if actual != fp {
                return Err(StoreError::corrupt(
                    &path,
                    format!("certificate fingerprint is {actual}, not the file name's {fp}"),
                ));
            }
            crate::core::pki::CertInfo::parse(&der).map_err(|e| StoreError::corrupt(&path, e.to_string()))?;
            out.push(der);
        }
        Ok(out)
    }

    /// The token revocation list installed under `key`, if any.
    pub fn revocation_list(&self, key: &str) -> Result<Option<String>, StoreError> {
        names::check_list_key(key)?;
        read_text(&self.revocation_path(key))
    }

    // ----- paths and helpers -----

    pub(super) fn token_path(&self, product: &str) -> PathBuf {
        self.dir.join(TOKENS_DIR).join(format!("{product}{TOKEN_EXT}"))
    }

    pub(super) fn root_path(&self, fp: &str) -> PathBuf {
        self.dir.join(ROOTS_DIR).join(format!("{fp}{ROOT_EXT}"))
    }

    pub(super) fn vouching_path(&self, fp: &str) -> PathBuf {
        self.dir.join(ROOTS_DIR).join(format!("{fp}{ROOT_VOUCHING_EXT}"))
    }

    pub(super) fn scope_path(&self, fp: &str) -> PathBuf {
        self.dir.join(ROOTS_DIR).join(format!("{fp}{ROOT_SCOPE_EXT}"))
    }

    pub(super) fn crl_path(&self, key: &str) -> PathBuf {
        self.dir.join(CRLS_DIR).join(format!("{key}{CRL_EXT}"))
    }

    pub(super) fn revocation_path(&self, key: &str) -> PathBuf {
        self.dir.join(REVOCATIONS_DIR).join(format!("{key}{REVOCATION_EXT}"))
    }

    pub(super) fn cert_path(&self, fp: &str) -> PathBuf {
        self.dir.join(CERTS_DIR).join(format!("{fp}{CERT_EXT}"))
    }

    pub(super) fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Lists `<dir>/<sub>/<stem><ext>` sorted by stem. Names starting with
    /// `.` (temporary files) are skipped; any other name that does not fit
    /// the pattern is [`StoreError::Corrupt`]. A missing subdirectory is
    /// empty.
    pub(super) fn list(
        &self,
        sub: &str,
        ext: &str,
        valid: impl Fn(&str) -> bool,
        pattern: &str,
    ) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let dir = self.dir.join(sub);
        let entries = match entry_names(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for name in entries {
            let path = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(StoreError::corrupt(&path, "file name is not UTF-8"));
            };
            if name.starts_with('.') {
                continue;
            }
            match name.strip_suffix(ext).filter(|stem| valid(stem)) {
                Some(stem) => out.push((stem.to_string(), path)),
                None => {
                    return Err(StoreError::corrupt(
                        &path,
                        format!(
                            "unexpected file in {sub}/ (expected {pattern}); \
                             move it out of the store"
                        ),
                    ))
                }
            }
        }
        out.sort();
        Ok(out)
    }

    pub(super) fn read_version(&self) -> Result<Option<u32>, StoreError> {
        let path = self.dir.join(VERSION_FILE);
        let Some(bytes) = read_opt(&path, 64)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes).unwrap_or("");
        let digits = text.strip_suffix('\n').unwrap_or(text);
        match digits.parse::<u32>() {
            Ok(v) if v >= 1 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(v)),
            _ => Err(StoreError::corrupt(&path, format!("expected a layout version number, found {text:?}"))),
        }
    }

    pub(super) fn check_version(&self, found: u32) -> Result<(), StoreError> {
        if found > LAYOUT_VERSION {
            return Err(StoreError::NewerVersion {
                path: self.dir.join(VERSION_FILE),
                found,
                supported: LAYOUT_VERSION,
            });
        }
        Ok(())
    }

    /// Creates the layout in a directory that has no `version` file yet.
    pub(super) fn initialize(&self) -> Result<(), StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let known = name == LOCK_FILE
                || name == STATE_FILE
                || SUBDIRS.contains(&name.as_ref())
                || names::is_write_temp(&name);
            if !known {
                return Err(StoreError::NotAStore {
                    path: self.dir.clone(),
                    detail: format!(
                        "it has no `{VERSION_FILE}` file but already holds {name:?}; \
                         use an empty or new directory"
                    ),
                });
            }
        }
        let lock = self.lock()?;
        // Another process may have initialised the store while we waited.
        if let Some(v) = self.read_version()? {
            return self.check_version(v);
        }
        // Data is only ever written into an initialised store (`version`
        // is written last), so data without `version` means the file was
        // lost or deleted: re-initialising would reset the clock mark and
        // the revocation sequences under the installed tokens.
        if let Some(found) = self.first_data_file()? {
            let missing = if self.state_path().exists() { "" } else { " (and state.json)" };
            return Err(StoreError::corrupt(
                &self.dir.join(VERSION_FILE),
                format!(
                    "missing{missing}, but the store holds {}; \
                     it is not re-initialised over existing data",
                    found.strip_prefix(&self.dir).unwrap_or(&found).display()
                ),
            ));
        }
        lock.initialize_layout()
    }
}

impl Store {
    /// The first data file (root, token, CRL, revocation list) in the
    /// store's subdirectories, temporary files aside.
    pub(super) fn first_data_file(&self) -> Result<Option<PathBuf>, StoreError> {
        for sub in SUBDIRS {
            let dir = self.dir.join(sub);
            for entry in dir_entries(&dir)? {
                if !names::is_write_temp(&entry.file_name().to_string_lossy()) {
                    return Ok(Some(entry.path()));
                }
            }
        }
        Ok(None)
    }
}

/// Whether `dir` has no entries.
fn dir_is_empty(dir: &Path) -> Result<bool, StoreError> {
    Ok(fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?.next().is_none())
}

/// Creates `dir` with mode 0700 (parents with default permissions).
pub(super) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {
            set_mode(dir, 0o700)?;
            crate::core::fsutil::sync_dir(parent).map_err(|e| StoreError::io(parent, e))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// Sets exact permission bits (the umask may have removed some).
pub(super) fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| StoreError::io(path, e))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Refuses a directory writable by group or others. A missing one is fine.
pub(super) fn check_not_writable_by_others(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) => check_mode(dir, &m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// [`check_not_writable_by_others`] with `dir`'s metadata already read.
fn check_mode(dir: &Path, m: &fs::Metadata) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if m.permissions().mode() & 0o022 != 0 {
            return Err(StoreError::InsecurePermissions { path: dir.to_path_buf(), mode: m.permissions().mode() });
        }
    }
    #[cfg(not(unix))]
    let _ = (dir, m);
    Ok(())
}

pub(super) fn open_lock_file(path: &Path) -> Result<fs::File, StoreError> {
    let mut opts = fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(|e| StoreError::io(path, e))
}

/// Reads `path` with a size limit; `None` if it does not exist.
pub(super) fn read_opt(path: &Path, limit: usize) -> Result<Option<Vec<u8>>, StoreError> {
    match read_bounded(path, limit as u64) {
        Ok(b) => Ok(Some(b)),
        Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(ReadError::Io(e)) => Err(StoreError::io(path, e)),
        Err(ReadError::TooLarge { .. }) => {
            Err(StoreError::corrupt(path, format!("larger than the {limit}-byte limit")))
        }
        Err(e) => Err(StoreError::corrupt(path, e.to_string())),
    }
}

/// Reads a root's product scope file.
pub(super) fn read_scope(path: &Path) -> Result<Option<Vec<String>>, StoreError> {
    let Some(bytes) = read_opt(path, MAX_ROOT_FILE)? else {
        return Ok(None);
    };
    let file: ScopeFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(path, e.to_string()))?;
    if file.products.is_empty() {
        return Err(StoreError::corrupt(path, "the product scope names no product"));
    }
    for p in &file.products {
        names::check_product(p).map_err(|e| StoreError::corrupt(path, e.to_string()))?;
    }
    Ok(Some(file.products))
}

/// Reads a root's vouching chain file.
pub(super) fn read_vouching(path: &Path) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
    let Some(bytes) = read_opt(path, MAX_ROOT_FILE)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| StoreError::corrupt(path, "not UTF-8 PEM text"))?;
    let chain = crate::core::pki::pem::decode_all(&text, "CERTIFICATE")
        .map_err(|e| StoreError::corrupt(path, e.to_string()))?;
    if chain.is_empty() || !chain.len().is_multiple_of(2) || chain.len() > crate::core::pki::MAX_VOUCHING_CHAIN {
        return Err(StoreError::corrupt(
            path,
            format!("{} certificates: expected pairs of cross-certificate and issuer", chain.len()),
        ));
    }
    Ok(Some(chain))
}

pub(super) fn read_text(path: &Path) -> Result<Option<String>, StoreError> {
    match read_opt(path, MAX_REVOCATION_FILE)? {
        Some(b) => String::from_utf8(b).map(Some).map_err(|_| StoreError::corrupt(path, "not UTF-8 text")),
        None => Ok(None),
    }
}

pub(super) fn read_token(path: &Path, product: &str) -> Result<Option<InstalledToken>, StoreError> {
    let Some(bytes) = read_opt(path, MAX_TOKEN_FILE)? else {
        return Ok(None);
    };
    let file: TokenFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::corrupt(path, e.to_string()))?;
    if file.product != product {
        return Err(StoreError::corrupt(
            path,
            format!("holds a token for product {:?}, not {product:?}", file.product),
        ));
    }
    Ok(Some(InstalledToken { product: file.product, token: file.token, installed_at: file.installed_at }))
}

/// The names in directory `dir`, in the order the file system lists them
/// (`.` and `..` left out), as `fs::read_dir` gives them.
#[cfg(not(target_os = "linux"))]
fn entry_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect()
}

/// The names in directory `dir`, in the order the file system lists them
/// (`.` and `..` left out), as `fs::read_dir` gives them, with fewer system
/// calls: the directory is opened and read with `getdents64`, without the
/// `fstat` of `opendir`. Only the system call is unsafe; the records are
/// parsed from the bytes it returned.
#[cfg(target_os = "linux")]
fn entry_names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let d = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(dir)?;
    // Room for several records (one is at most 280 bytes); small, as it
    // is zeroed for every listing.
    let mut buf = [0u8; 2048];
    let mut names = Vec::new();
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`,
        // which lives for the call; `d` is an open directory.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, d.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(names);
        }
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let mut records = &buf[..n as usize];
        while records.len() >= 19 {
            let reclen = usize::from(u16::from_ne_bytes([records[16], records[17]]));
            if reclen < 19 || reclen > records.len() {
                return Err(io::Error::other("malformed directory record from getdents64"));
            }
            let field = &records[19..reclen];
            let name = &field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())];
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
            }
            records = &records[reclen..];
        }
    }
}

/// The entries of `dir` (none when it does not exist).
pub(crate) fn dir_entries(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.collect::<io::Result<Vec<_>>>().map_err(|e| StoreError::io(dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dirs() {
        let home = Path::new("/home/u");
        assert_eq!(Store::default_dir_for(true, Some(home), Some(Path::new("/x"))), PathBuf::from("/var/lib/tka"));
        assert_eq!(Store::default_dir_for(false, Some(home), Some(Path::new("/x/data"))), PathBuf::from("/x/data/tka"));
        assert_eq!(
            Store::default_dir_for(false, Some(home), Some(Path::new("rel"))),
            PathBuf::from("/home/u/.local/share/tka")
        );
        assert_eq!(Store::default_dir_for(false, None, None), PathBuf::from("/var/lib/tka"));
    }

    #[test]
    fn killed_writer_temp_is_swept_by_next_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("s")).unwrap();
        let stale = store.dir().join(TOKENS_DIR).join(".a.json.0123456789abcdef.tmp");
        fs::write(&stale, b"half").unwrap();
        assert!(store.tokens().unwrap().is_empty(), "readers skip temp files");
        drop(store.lock().unwrap());
        assert!(!stale.exists());
    }

    /// More names than one 2 KiB `getdents64` read returns: every one is
    /// listed, as `fs::read_dir` lists them, without `.` and `..`.
    #[test]
    fn entry_names_lists_a_directory_longer_than_one_read() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..200 {
            fs::write(tmp.path().join(format!("{i:03}-{}", "n".repeat(60))), b"").unwrap();
        }
        let mut names = entry_names(tmp.path()).unwrap();
        let mut std_names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        std_names.sort();
        assert_eq!(names.len(), 200);
        assert_eq!(names, std_names);
        let e = entry_names(&tmp.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn try_lock_reports_busy() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("s")).unwrap();
        let held = store.lock().unwrap();
        assert!(store.try_lock().unwrap().is_none());
        drop(held);
        assert!(store.try_lock().unwrap().is_some());
    }

    #[test]
    fn version_file_is_strict() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        Store::open(&dir).unwrap();
        assert_eq!(fs::read_to_string(dir.join(VERSION_FILE)).unwrap(), "1\n");
        for bad in ["", "one\n", "+1\n", "0\n", "1\n\n"] {
            fs::write(dir.join(VERSION_FILE), bad).unwrap();
            assert!(matches!(Store::open(&dir), Err(StoreError::Corrupt { .. })), "{bad:?}");
        }
    }
}
