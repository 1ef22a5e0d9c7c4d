//! RSA keys in PKCS#8 files: generation, encryption, loading.

use super::signer::{public_bits, secret_access, Passphrase, SignatureAlgorithm, Signer, ALLOWED_BITS};
use crate::core::error::{Error, Result};
use crate::core::fsutil::{self, Overwrite};
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

use sha2::Sha256;
use std::path::Path;
use zeroize::Zeroizing;

/// Largest key file tka reads.
const MAX_KEY_FILE: u64 = 64 * 1024;
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

    /// With aws-lc-rs (the `aws-lc` feature), signs the digest; without
    /// it, `None`.
    fn sign_sha256_digest(&self, alg: SignatureAlgorithm, digest: &[u8; 32]) -> Option<Result<Vec<u8>>> {
        #[cfg(feature = "aws-lc")]
        if let Some(fast) = &self.fast {
            use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256};
            let encoding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
                SignatureAlgorithm::Ps256 => &RSA_PSS_SHA256,
                SignatureAlgorithm::Rs256 => &RSA_PKCS1_SHA256,
            };
            let digest = aws_lc_rs::digest::Digest::import_less_safe(digest, &aws_lc_rs::digest::SHA256)
                .expect("a SHA-256 digest is 32 bytes");
            let mut sig = vec![0u8; fast.public_modulus_len()];
            return Some(
                fast.sign_digest(encoding, &digest, &mut sig)
                    .map(|()| sig)
                    .map_err(|_| Error::format("RSA signature", "aws-lc-rs failed to sign")),
            );
        }
        let _ = (alg, digest);
        None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::keys::signer::verify_signature;

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

    /// Signing a SHA-256 digest gives the signature of the message it is
    /// the digest of (RS256 byte for byte; PS256 verifies); a key that
    /// signs with the rsa crate (here: a 1,024-bit one) signs no digest.
    #[test]
    fn digest_signatures_are_the_message_signatures() {
        use sha2::Digest;
        let key = test_key("signer");
        let msg = b"eyJhbGciOiJQUzI1NiJ9.eyJqdGkiOiIxIn0";
        let digest: [u8; 32] = sha2::Sha256::digest(msg).into();
        let rs = key.sign_sha256_digest(SignatureAlgorithm::Rs256, &digest);
        assert_eq!(rs.is_some(), cfg!(feature = "aws-lc"));
        if let Some(rs) = rs {
            assert_eq!(rs.unwrap(), key.sign(SignatureAlgorithm::Rs256, msg).unwrap());
            let ps = key.sign_sha256_digest(SignatureAlgorithm::Ps256, &digest).unwrap().unwrap();
            assert!(verify_signature(key.public_key(), SignatureAlgorithm::Ps256, msg, &ps));
        }
        assert!(test_key("weak1024").sign_sha256_digest(SignatureAlgorithm::Rs256, &digest).is_none());
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
