//! Naming and opening keys: a [`KeyRef`] (file or `pkcs11:` URI), what
//! unlocks it ([`KeyUnlock`]), and generating new ones ([`NewKey`]).

use super::signer::{Passphrase, Signer};
use super::software::{load_private_key, save_private_key, KeyProtection, SoftwareKey};
use crate::core::error::{Error, Result};
use crate::core::pkcs11::{is_pkcs11_uri, Pkcs11Uri};
use std::path::{Path, PathBuf};

/// Where a private key lives: a PKCS#8 file or a key on a PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A PKCS#8 PEM file.
    File(PathBuf),
    /// An RFC 7512 `pkcs11:` URI.
    Pkcs11(Box<Pkcs11Uri>),
}

impl KeyRef {
    /// A `pkcs11:` URI, or else a file path.
    pub fn parse(s: &str) -> Result<KeyRef> {
        if is_pkcs11_uri(s) {
            Pkcs11Uri::parse(s).map(|u| KeyRef::Pkcs11(Box::new(u)))
        } else {
            Ok(KeyRef::File(PathBuf::from(s)))
        }
    }

    /// As [`KeyRef::parse`], for a command-line path argument.
    pub fn from_path(p: &Path) -> Result<KeyRef> {
        match p.to_str() {
            Some(s) if is_pkcs11_uri(s) => KeyRef::parse(s),
            _ => Ok(KeyRef::File(p.to_path_buf())),
        }
    }

    /// As [`KeyRef::from_path`], for an entry read from a configuration
    /// file: a URI is marked [`UriSource::ConfigFile`](crate::core::pkcs11::UriSource::ConfigFile),
    /// so its `module-path` is loaded only from the PKCS#11 module
    /// directories unless [`KeyUnlock::allow_config_module_path`].
    pub fn from_config(p: &Path) -> Result<KeyRef> {
        match p.to_str() {
            Some(s) if is_pkcs11_uri(s) => Pkcs11Uri::from_config(s).map(|u| KeyRef::Pkcs11(Box::new(u))),
            _ => Ok(KeyRef::File(p.to_path_buf())),
        }
    }

    /// The form a configuration file stores, read back by
    /// [`KeyRef::from_config`]: the file's path, or the URI as text.
    pub fn into_path(self) -> PathBuf {
        match self {
            KeyRef::File(p) => p,
            KeyRef::Pkcs11(uri) => PathBuf::from(uri.to_string()),
        }
    }

    /// Whether the key is on a PKCS#11 token.
    pub fn is_pkcs11(&self) -> bool {
        matches!(self, KeyRef::Pkcs11(_))
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::File(p) => write!(f, "{}", p.display()),
            KeyRef::Pkcs11(u) => write!(f, "{u}"),
        }
    }
}

/// What unlocks keys: the passphrase of encrypted key files, the user PIN
/// of PKCS#11 tokens, and the module to load for a URI that names none.
/// (A URI's own `pin-source` or `pin-value` comes before `pin`.)
#[derive(Debug, Clone, Default)]
pub struct KeyUnlock {
    /// Passphrase of encrypted PKCS#8 files (and of new key files).
    pub passphrase: Option<Passphrase>,
    /// User PIN of PKCS#11 tokens.
    pub pin: Option<Passphrase>,
    /// PKCS#11 module for URIs without `module-path` or `module-name`.
    pub default_module: Option<PathBuf>,
    /// Accept key files, and PIN files named by a URI's `pin-source`,
    /// readable by group or others.
    pub allow_insecure_permissions: bool,
    /// Load a `module-path` outside the PKCS#11 module directories even
    /// when the URI was read from a configuration file (the operator
    /// vouches for it); see [`crate::core::pkcs11::UriSource`].
    pub allow_config_module_path: bool,
}

impl KeyUnlock {
    /// Unlocks files with `passphrase` (if any); nothing else set.
    pub fn with_passphrase(passphrase: Option<&Passphrase>, allow_insecure_permissions: bool) -> Self {
        KeyUnlock { passphrase: passphrase.cloned(), allow_insecure_permissions, ..KeyUnlock::default() }
    }

    /// The protection for new key files: the passphrase, or none.
    pub fn protection(&self) -> KeyProtection<'_> {
        match &self.passphrase {
            Some(p) => KeyProtection::Passphrase(p),
            None => KeyProtection::InsecurePlaintext,
        }
    }

    /// What the PKCS#11 functions take from this: the PIN and the default module.
    #[cfg(feature = "pkcs11")]
    pub fn pkcs11_options(&self) -> crate::core::pkcs11::Pkcs11Options {
        crate::core::pkcs11::Pkcs11Options {
            default_module: self.default_module.clone(),
            pin: self.pin.clone(),
            allow_insecure_permissions: self.allow_insecure_permissions,
            allow_config_module_path: self.allow_config_module_path,
        }
    }
}

/// Opens a private key for signing, wherever it lives.
pub fn open_key(key: &KeyRef, unlock: &KeyUnlock) -> Result<Box<dyn Signer>> {
    match key {
        KeyRef::File(p) => {
            Ok(Box::new(load_private_key(p, unlock.passphrase.as_ref(), unlock.allow_insecure_permissions)?))
        }
        #[cfg(feature = "pkcs11")]
        KeyRef::Pkcs11(uri) => Ok(Box::new(crate::core::pkcs11::Pkcs11Key::open(uri, &unlock.pkcs11_options())?)),
        #[cfg(not(feature = "pkcs11"))]
        KeyRef::Pkcs11(uri) => Err(Error::Pkcs11(format!("{uri}: this tka was built without the pkcs11 feature"))),
    }
}

/// A freshly generated key: in memory (to be saved as a file) or already
/// on a token.
pub enum NewKey {
    /// A software key, not yet saved.
    Software(SoftwareKey),
    /// A key generated on a PKCS#11 token; the URI names it (with its id).
    #[cfg(feature = "pkcs11")]
    Pkcs11(crate::core::pkcs11::Pkcs11Key),
}

impl NewKey {
    /// Generates an RSA key of `bits`: in memory for `KeyRef::File`, on the
    /// token (labelled with the URI's `object`) for `KeyRef::Pkcs11`.
    pub fn generate(place: &KeyRef, bits: usize, unlock: &KeyUnlock) -> Result<NewKey> {
        match place {
            KeyRef::File(_) => Ok(NewKey::Software(SoftwareKey::generate(bits)?)),
            #[cfg(feature = "pkcs11")]
            KeyRef::Pkcs11(uri) => {
                let opts = unlock.pkcs11_options();
                let (mut new_uri, _) = crate::core::pkcs11::generate_rsa_key(uri, bits, &opts)?;
                // The new URI leaves out any pin-value; opening needs it (the
                // opened key leaves it out again).
                new_uri.pin_value = uri.pin_value.clone();
                match crate::core::pkcs11::Pkcs11Key::open(&new_uri, &opts) {
                    Ok(key) => Ok(NewKey::Pkcs11(key)),
                    // A key that cannot be opened is of no use: take it off the token.
                    Err(e) => Err(match crate::core::pkcs11::remove_key_pair(&new_uri, &opts) {
                        Ok(_) => e,
                        Err(r) => Error::KeysLeftOnToken { error: Box::new(e), left: vec![r.to_string()] },
                    }),
                }
            }
            #[cfg(not(feature = "pkcs11"))]
            KeyRef::Pkcs11(uri) => {
                let _ = unlock;
                Err(Error::Pkcs11(format!("{uri}: this tka was built without the pkcs11 feature")))
            }
        }
    }

    /// The key as a signer.
    pub fn signer(&self) -> &dyn Signer {
        match self {
            NewKey::Software(k) => k,
            #[cfg(feature = "pkcs11")]
            NewKey::Pkcs11(k) => k,
        }
    }

    /// Undoes the generation, for a command that failed after it: a key on
    /// a token is removed from the token (its private and public key
    /// objects, found by label and id); a software key, never saved, is
    /// just dropped (and zeroized).
    pub fn discard(self, unlock: &KeyUnlock) -> Result<()> {
        match self {
            NewKey::Software(_) => {
                let _ = unlock;
                Ok(())
            }
            #[cfg(feature = "pkcs11")]
            NewKey::Pkcs11(k) => {
                // The key stays open meanwhile: its session holds the login
                // (closing an application's last session logs it out).
                let removed = crate::core::pkcs11::remove_key_pair(k.uri(), &unlock.pkcs11_options());
                drop(k);
                removed.map(|_| ())
            }
        }
    }

    /// Saves a software key to `path` (0600, never replacing a file) and
    /// returns where the key now is: the file, or the token URI.
    pub fn store(&self, path: &Path, protection: KeyProtection<'_>) -> Result<KeyRef> {
        match self {
            NewKey::Software(k) => {
                save_private_key(path, k, protection, false)?;
                Ok(KeyRef::File(path.to_path_buf()))
            }
            #[cfg(feature = "pkcs11")]
            NewKey::Pkcs11(k) => Ok(KeyRef::Pkcs11(Box::new(k.uri().clone()))),
        }
    }
}
