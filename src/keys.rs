//! RSA keys: generation, PKCS#8 files, passphrases, and the [`Signer`] seam.
//!
//! Private keys are PKCS#8 PEM files, encrypted (PBES2) unless the caller
//! explicitly asks for plaintext. They are created with mode 0600, never
//! replaced unless asked, and refused when group or others can read them.
//! Key material is zeroized on drop (the `rsa` crate zeroizes its keys;
//! passphrases and PEM text are held in [`Zeroizing`] buffers).

use crate::error::{Error, Result};
use crate::fsutil::{self, Overwrite};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use sha2::Sha256;
use std::path::Path;
use zeroize::Zeroizing;

/// Key sizes tka generates.
pub const ALLOWED_BITS: [usize; 3] = [2048, 3072, 4096];
/// Largest key file tka reads.
const MAX_KEY_FILE: u64 = 64 * 1024;

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

/// Something that can sign with an RSA private key: a key file today, a
/// PKCS#11 token tomorrow. Everything that signs (certificates, tokens,
/// revocation lists) goes through this trait.
pub trait Signer: Send + Sync {
    /// The public half of the key.
    fn public_key(&self) -> &rsa::PublicKey;
    /// Signs `message` (not a digest) with `alg`.
    fn sign(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>>;
}

/// A passphrase, zeroized on drop. Never printed by `Debug`.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase string.
    pub fn new(s: String) -> Self {
        Passphrase(Zeroizing::new(s))
    }

    /// Reads a passphrase from the first line of a file (trailing newline removed).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = Zeroizing::new(fsutil::read_bounded(path, 4096).map_err(|e| Error::io(path, e))?);
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
pub struct SoftwareKey {
    key: rsa::PrivateKey,
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
        Ok(SoftwareKey { key })
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
        Ok(SoftwareKey { key })
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
        match alg {
            SignatureAlgorithm::Ps256 => self.key.pss_sign::<Sha256>(message),
            SignatureAlgorithm::Rs256 => self.key.pkcs1v15_sign::<Sha256>(message),
        }
        .map_err(|e| Error::format("RSA signature", e))
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
    #[cfg(unix)]
    if !allow_insecure_permissions {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::InsecureKeyPermissions { path: path.into(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = allow_insecure_permissions;
    let bytes = Zeroizing::new(fsutil::read_bounded(path, MAX_KEY_FILE).map_err(|e| Error::io(path, e))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::format(path.display().to_string(), "not a PEM file"))?;
    SoftwareKey::from_pkcs8_pem(text, passphrase, path)
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
