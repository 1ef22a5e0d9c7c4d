//! RSA keys: generation, PKCS#8 files, passphrases, and the [`Signer`] seam.
//!
//! A key is named by a [`KeyRef`]: a PKCS#8 file or a `pkcs11:` URI (see
//! [`crate::core::pkcs11`]); [`open_key`] opens either with what a [`KeyUnlock`]
//! carries (passphrase, PIN), and [`NewKey`] generates one in memory or on
//! a token.
//!
//! Private keys are PKCS#8 PEM files, encrypted (PBES2) unless the caller
//! explicitly asks for plaintext. They are created with mode 0600, never
//! replaced unless asked, and refused when group or others can read them.
//! Key material is zeroized on drop (the `rsa` crate zeroizes its keys;
//! passphrases and PEM text are held in [`Zeroizing`] buffers).

use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use crate::core::pkcs11::{is_pkcs11_uri, Pkcs11Uri};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Key sizes tka generates.
pub const ALLOWED_BITS: [usize; 3] = [2048, 3072, 4096];
/// Largest key file tka reads.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// Largest passphrase or PIN file tka reads.
pub const MAX_PASSPHRASE_FILE: u64 = 4096;

fn secret_access(allow_insecure_permissions: bool) -> fsutil::Access {
    if allow_insecure_permissions {
        fsutil::Access::PrivateInsecureAllowed
    } else {
        fsutil::Access::Private
    }
}

/// A signature algorithm tka can produce and accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt (JWS `PS256`). The default.
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`, X.509 sha256WithRSAEncryption).
    Rs256,
}

impl SignatureAlgorithm {
    /// The JWS `alg` name.
    pub fn jws_name(self) -> &'static str {
        match self {
            SignatureAlgorithm::Ps256 => "PS256",
            SignatureAlgorithm::Rs256 => "RS256",
        }
    }

    /// Looks up a JWS `alg` name on the allow-list.
    pub fn from_jws_name(name: &str) -> Option<Self> {
        match name {
            "PS256" => Some(SignatureAlgorithm::Ps256),
            "RS256" => Some(SignatureAlgorithm::Rs256),
            _ => None,
        }
    }
}

/// Something that can sign with an RSA private key: a key file
/// ([`SoftwareKey`]) or a key on a PKCS#11 token (`pkcs11::Pkcs11Key`).
/// Everything that signs (certificates, CRLs, tokens, revocation lists)
/// goes through this trait.
pub trait Signer: Send + Sync {
    /// The public half of the key.
    fn public_key(&self) -> &rsa::PublicKey;
    /// Signs `message` (not a digest) with `alg`.
    fn sign(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>>;
}

/// A passphrase (or PKCS#11 PIN), zeroized on drop. Never printed by `Debug`.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase string.
    pub fn new(s: String) -> Self {
        Passphrase(Zeroizing::new(s))
    }

    /// Reads a passphrase (or PIN) from the first line of a file (trailing
    /// newline removed). Like a private key file, the file must be a regular
    /// file that group and others cannot read
    /// ([`Error::InsecureSecretPermissions`]) unless
    /// `allow_insecure_permissions` is set; it is read up to
    /// [`MAX_PASSPHRASE_FILE`] bytes.
    pub fn from_file(path: &Path, allow_insecure_permissions: bool) -> Result<Self> {
        let bytes = fsutil::read_secret(path, MAX_PASSPHRASE_FILE, secret_access(allow_insecure_permissions))
            .map_err(|e| e.at(path))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::format(path.display().to_string(), "passphrase file is not UTF-8"))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(Error::format(path.display().to_string(), "passphrase file is empty"));
        }
        Ok(Passphrase::new(line.to_string()))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret text, for handing to a PKCS#11 login.
    #[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// How a private key is protected on disk.
#[derive(Debug, Clone, Copy)]
pub enum KeyProtection<'a> {
    /// PBES2 encryption under this passphrase (the default).
    Passphrase(&'a Passphrase),
    /// No encryption. Only on the user's explicit, insecure request.
    InsecurePlaintext,
}

/// An RSA private key held in memory.
///
/// With the `aws-lc` feature (on by default) signatures are made by
/// aws-lc-rs from a key pair built once when the key is loaded or generated;
/// the `rsa` crate's key still provides [`Signer::public_key`] and PKCS#8
/// encoding. Without the feature (or for a key aws-lc-rs does not accept,
/// such as one under 2048 bits) the `rsa` crate signs: a pure-Rust build.
pub struct SoftwareKey {
    key: rsa::PrivateKey,
    #[cfg(feature = "aws-lc")]
    fast: Option<aws_lc_rs::signature::RsaKeyPair>,
}

impl std::fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SoftwareKey(RSA-{})", self.bits())
    }
}

impl SoftwareKey {
    /// Generates a new RSA key with exponent 65537.
    pub fn generate(bits: usize) -> Result<Self> {
        if !ALLOWED_BITS.contains(&bits) {
            return Err(Error::Usage(format!("unsupported key size {bits}: choose 2048, 3072 or 4096")));
        }
        let mut rng = getrandom::SysRng;
        let key = rsa::PrivateKey::new(&mut rng, bits).map_err(|e| Error::format("RSA key generation", e))?;
        Ok(Self::wrap(key))
    }

    /// Pairs the `rsa` crate key with its aws-lc-rs signing key (built once).
    fn wrap(key: rsa::PrivateKey) -> Self {
        #[cfg(feature = "aws-lc")]
        {
            let fast = key
                .to_pkcs8_der()
                .ok()
                .and_then(|der| aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der.as_bytes()).ok());
            SoftwareKey { key, fast }
        }
        #[cfg(not(feature = "aws-lc"))]
        SoftwareKey { key }
    }

    /// Which implementation makes this key's signatures: `"aws-lc-rs"` or `"rsa"`.
    pub fn backend(&self) -> &'static str {
        #[cfg(feature = "aws-lc")]
        if self.fast.is_some() {
            return "aws-lc-rs";
        }
        "rsa"
    }

    /// Signs with the pure-Rust `rsa` crate, whatever the backend.
    pub fn sign_with_rsa_crate(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>> {
        match alg {
            SignatureAlgorithm::Ps256 => self.key.pss_sign::<Sha256>(message),
            SignatureAlgorithm::Rs256 => self.key.pkcs1v15_sign::<Sha256>(message),
        }
        .map_err(|e| Error::format("RSA signature", e))
    }

    /// Parses a PKCS#8 PEM key; `path` only names it in errors.
    pub fn from_pkcs8_pem(pem: &str, passphrase: Option<&Passphrase>, path: &Path) -> Result<Self> {
        let encrypted = pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----");
        let key = if encrypted {
            let pass = passphrase.ok_or_else(|| Error::PassphraseRequired { path: path.into() })?;
            rsa::PrivateKey::from_pkcs8_encrypted_pem(pem, pass.as_bytes())
                .map_err(|_| Error::WrongPassphrase { path: path.into() })?
        } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
            rsa::PrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| Error::format(path.display().to_string(), format!("not an RSA PKCS#8 key: {e}")))?
        } else {
            return Err(Error::format(
                path.display().to_string(),
                "not a PKCS#8 PEM private key (expected BEGIN PRIVATE KEY or BEGIN ENCRYPTED PRIVATE KEY)",
            ));
        };
        Ok(Self::wrap(key))
    }

    /// Serializes the key as PKCS#8 PEM, encrypted unless plaintext is asked for.
    pub fn to_pkcs8_pem(&self, protection: KeyProtection<'_>) -> Result<Zeroizing<String>> {
        match protection {
            KeyProtection::Passphrase(p) => self.key.to_pkcs8_encrypted_pem(p.as_bytes(), LineEnding::LF),
            KeyProtection::InsecurePlaintext => self.key.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| Error::format("PKCS#8 encoding", e))
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        public_bits(self.key.as_public_key())
    }
}

impl Signer for SoftwareKey {
    fn public_key(&self) -> &rsa::PublicKey {
        self.key.as_public_key()
    }

    fn sign(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>> {
        #[cfg(feature = "aws-lc")]
        if let Some(fast) = &self.fast {
            use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256};
            let encoding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
                SignatureAlgorithm::Ps256 => &RSA_PSS_SHA256,
                SignatureAlgorithm::Rs256 => &RSA_PKCS1_SHA256,
            };
            let mut sig = vec![0u8; fast.public_modulus_len()];
            let rng = aws_lc_rs::rand::SystemRandom::new();
            fast.sign(encoding, &rng, message, &mut sig)
                .map_err(|_| Error::format("RSA signature", "aws-lc-rs failed to sign"))?;
            return Ok(sig);
        }
        self.sign_with_rsa_crate(alg, message)
    }
}

/// Writes a private key file with mode 0600. An existing file is an error
/// unless `force` is set.
pub fn save_private_key(path: &Path, key: &SoftwareKey, protection: KeyProtection<'_>, force: bool) -> Result<()> {
    let pem = key.to_pkcs8_pem(protection)?;
    let mode = if force { Overwrite::Replace } else { Overwrite::Refuse };
    fsutil::write_atomic(path, pem.as_bytes(), 0o600, mode).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Exists { path: path.into() }
        } else {
            Error::io(path, e)
        }
    })
}

/// Reads a private key file. Refuses a file readable by group or others
/// unless `allow_insecure_permissions` is set.
pub fn load_private_key(
    path: &Path,
    passphrase: Option<&Passphrase>,
    allow_insecure_permissions: bool,
) -> Result<SoftwareKey> {
    // Permissions are checked on the opened file, before anything is read.
    let bytes =
        fsutil::read_secret(path, MAX_KEY_FILE, secret_access(allow_insecure_permissions)).map_err(|e| match e {
            fsutil::ReadError::Readable { mode } => Error::InsecureKeyPermissions { path: path.into(), mode },
            e => e.at(path),
        })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::format(path.display().to_string(), "not a PEM file"))?;
    SoftwareKey::from_pkcs8_pem(text, passphrase, path)
}

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

/// The DER SubjectPublicKeyInfo of an RSA public key.
pub fn spki_der(key: &rsa::PublicKey) -> Vec<u8> {
    key.to_public_key_der().expect("an RSA public key always encodes").as_bytes().to_vec()
}

/// Modulus size of a public key in bits: the position of its highest set
/// bit, not the storage width (which rounds up to a multiple of 64).
pub fn public_bits(key: &rsa::PublicKey) -> usize {
    key.n().as_ref().bit_width() as usize
}

/// Verifies `sig` over `message` with `alg` (PS256 requires a 32-byte salt).
pub fn verify_signature(key: &rsa::PublicKey, alg: SignatureAlgorithm, message: &[u8], sig: &[u8]) -> bool {
    match alg {
        SignatureAlgorithm::Ps256 => key.pss_verify::<Sha256>(message, sig).is_ok(),
        SignatureAlgorithm::Rs256 => key.pkcs1v15_verify::<Sha256>(message, sig).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key(name: &str) -> SoftwareKey {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("certs/test/{name}.key"));
        SoftwareKey::from_pkcs8_pem(&std::fs::read_to_string(&path).unwrap(), None, &path).unwrap()
    }

    #[test]
    fn signatures_verify_with_the_rsa_crate_for_both_algorithms() {
        let key = test_key("signer");
        #[cfg(feature = "aws-lc")]
        assert_eq!(key.backend(), "aws-lc-rs");
        #[cfg(not(feature = "aws-lc"))]
        assert_eq!(key.backend(), "rsa");
        let msg = b"eyJhbGciOiJQUzI1NiJ9.eyJqdGkiOiIxIn0";
        for alg in [SignatureAlgorithm::Ps256, SignatureAlgorithm::Rs256] {
            let sig = key.sign(alg, msg).unwrap();
            assert_eq!(sig.len(), 256);
            assert!(verify_signature(key.public_key(), alg, msg, &sig), "{alg:?} does not verify");
            assert!(!verify_signature(key.public_key(), alg, b"other message", &sig));
            let other =
                if alg == SignatureAlgorithm::Ps256 { SignatureAlgorithm::Rs256 } else { SignatureAlgorithm::Ps256 };
            assert!(!verify_signature(key.public_key(), other, msg, &sig), "{alg:?} verifies as {other:?}");
        }
    }

    #[test]
    fn rs256_is_deterministic_and_equal_across_backends() {
        let key = test_key("signer");
        let msg = b"same message";
        let a = key.sign(SignatureAlgorithm::Rs256, msg).unwrap();
        let b = key.sign_with_rsa_crate(SignatureAlgorithm::Rs256, msg).unwrap();
        assert_eq!(a, b, "PKCS#1 v1.5 signatures are deterministic: both backends must agree");
    }

    #[test]
    fn small_keys_fall_back_to_the_rsa_crate() {
        let key = test_key("weak1024");
        assert_eq!(key.backend(), "rsa");
        let sig = key.sign(SignatureAlgorithm::Ps256, b"m").unwrap();
        assert!(verify_signature(key.public_key(), SignatureAlgorithm::Ps256, b"m", &sig));
    }

    #[test]
    fn generated_keys_sign_with_the_fast_backend() {
        let key = SoftwareKey::generate(2048).unwrap();
        #[cfg(feature = "aws-lc")]
        assert_eq!(key.backend(), "aws-lc-rs");
        let sig = key.sign(SignatureAlgorithm::Ps256, b"m").unwrap();
        assert!(verify_signature(key.public_key(), SignatureAlgorithm::Ps256, b"m", &sig));
    }
}
