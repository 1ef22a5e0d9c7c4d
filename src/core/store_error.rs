//! The store's error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Fewest hex digits accepted to select a root by fingerprint prefix.
pub const MIN_FINGERPRINT_PREFIX: usize = 4;

/// Everything that can go wrong reading or writing an activation store.
///
/// Each variant's `Display` is one line that names the file or value at
/// fault and what is wrong with it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system error on `path` (permissions, disk full, ...).
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A store file exists but its content is not what tka writes there
    /// (unparsable, too large, wrong name, missing state file, ...). The
    /// store never repairs or resets such a file by itself.
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The thing asked for is not in the store; the message says what.
    NotFound(String),
    /// Removing this root would leave the store trusting no root at all;
    /// pass `force` to do it anyway.
    LastRoot,
    /// A product name that cannot be used as a file name in the store: it
    /// must be 1 to 64 characters from `A-Z a-z 0-9 . _ -`, not starting
    /// with `.`.
    BadProduct(String),
    /// A CRL or revocation-list key that is not 1 to 128 lowercase hex
    /// digits (a list key: optionally prefixed by `<root fingerprint>-`).
    BadKey(String),
    /// A root fingerprint selector that is not at least
    /// [`MIN_FINGERPRINT_PREFIX`](MIN_FINGERPRINT_PREFIX) hex digits
    /// (colons allowed).
    BadFingerprint(String),
    /// A fingerprint prefix that matches more than one trusted root.
    AmbiguousFingerprint {
        /// The prefix as given.
        prefix: String,
        /// Fingerprints of every matching root.
        matches: Vec<String>,
    },
    /// Bytes offered to [`StoreLock::add_root`](crate::activation::store::StoreLock::add_root)
    /// that are not a DER certificate (empty, too large, or not a DER
    /// SEQUENCE).
    BadCertificate(String),
    /// Adding certificates would make the store keep more known
    /// certificates (`certs/`) than it allows.
    TooManyCertificates {
        /// How many it would keep.
        count: usize,
        /// The most it keeps.
        limit: usize,
    },
    /// Data offered for storage is larger than the store accepts.
    TooLarge {
        /// What was being stored.
        what: String,
        /// Its size in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The store was written by a newer tka whose layout this code does not
    /// understand; it is left untouched.
    NewerVersion {
        /// The store's `version` file.
        path: PathBuf,
        /// The version found there.
        found: u32,
        /// The highest version this code understands.
        supported: u32,
    },
    /// The directory holds files that are not part of a store layout, so it
    /// is not initialised as one (guards against `--store $HOME`).
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        detail: String,
    },
    /// A read-only opening ([`Store::open_existing`](crate::activation::store::Store::open_existing))
    /// found no store at the path: nothing was ever activated or trusted there.
    NoStore {
        /// The directory.
        path: PathBuf,
    },
    /// A store directory is writable by group or others, so anyone could
    /// plant a trusted root or a token; the store refuses to use it.
    InsecurePermissions {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A state write that would lower the clock high-water mark or a
    /// revocation sequence number (or drop one). Those values only move
    /// forward; a caller that read the state without holding the lock, or
    /// an outright rollback attempt, ends up here.
    Regression {
        /// The state file.
        path: PathBuf,
        /// Which value would have gone backwards, from what to what.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: io::Error) -> StoreError {
        StoreError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt { path: path.to_path_buf(), detail: detail.into() }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { path, source } => {
                write!(f, "activation store: {}: {source}", path.display())
            }
            StoreError::Corrupt { path, detail } => {
                write!(f, "activation store file {} is corrupt: {detail}", path.display())
            }
            StoreError::NotFound(what) => write!(f, "{what}"),
            StoreError::LastRoot => write!(
                f,
                "refusing to remove the last trusted root: no token could be verified \
                 without one (force the removal to do it anyway)"
            ),
            StoreError::BadProduct(name) => write!(
                f,
                "invalid product name {name:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -, \
                 not starting with '.'"
            ),
            StoreError::BadKey(key) => {
                write!(
                    f,
                    "invalid revocation key {key:?}: expected 1 to 128 lowercase hex digits \
                     (a list's key may start with its root's fingerprint and '-')"
                )
            }
            StoreError::BadFingerprint(fp) => write!(
                f,
                "invalid root fingerprint {fp:?}: expected at least {} hex digits of its \
                 SHA-256 (colons allowed)",
                MIN_FINGERPRINT_PREFIX
            ),
            StoreError::AmbiguousFingerprint { prefix, matches } => write!(
                f,
                "fingerprint prefix {prefix:?} matches {} trusted roots ({}); give more digits",
                matches.len(),
                matches.join(", ")
            ),
            StoreError::BadCertificate(detail) => {
                write!(f, "not a DER certificate: {detail}")
            }
            StoreError::TooManyCertificates { count, limit } => {
                write!(f, "the store would keep {count} known certificates, more than its limit of {limit}")
            }
            StoreError::TooLarge { what, len, limit } => {
                write!(f, "{what} is {len} bytes, larger than the store's {limit}-byte limit")
            }
            StoreError::NewerVersion { path, found, supported } => write!(
                f,
                "{} says store layout version {found}, but this tka understands only up to \
                 {supported}; use a newer tka",
                path.display()
            ),
            StoreError::NotAStore { path, detail } => {
                write!(f, "{} is not a tka activation store: {detail}", path.display())
            }
            StoreError::NoStore { path } => write!(f, "no store at {} (nothing activated here)", path.display()),
            StoreError::InsecurePermissions { path, mode } => write!(
                f,
                "activation store directory {} is writable by group or others (mode {:04o}); \
                 run `chmod go-w` on it",
                path.display(),
                mode & 0o7777
            ),
            StoreError::Regression { path, detail } => {
                write!(f, "refusing to write {}: {detail}; these values never go backwards", path.display())
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
