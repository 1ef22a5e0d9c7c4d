//! The [`Signer`] seam, signature algorithms, passphrases and public-key
//! helpers: what every key, on file or on a token, shares.

use crate::core::error::{Error, Result};
use crate::core::fsutil;
use pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use std::path::Path;
use zeroize::Zeroizing;

/// Key sizes tka generates.
pub const ALLOWED_BITS: [usize; 3] = [2048, 3072, 4096];

/// Largest passphrase or PIN file tka reads.
pub const MAX_PASSPHRASE_FILE: u64 = 4096;

pub(crate) fn secret_access(allow_insecure_permissions: bool) -> fsutil::Access {
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
/// ([`SoftwareKey`](crate::core::keys::SoftwareKey)) or a key on a PKCS#11 token (`pkcs11::Pkcs11Key`).
/// Everything that signs (certificates, CRLs, tokens, revocation lists)
/// goes through this trait.
pub trait Signer: Send + Sync {
    /// The public half of the key.
    fn public_key(&self) -> &rsa::PublicKey;
    /// Signs `message` (not a digest) with `alg`.
    fn sign(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>>;

    /// Signs, with `alg`, the message whose SHA-256 is `digest` (both
    /// algorithms hash with SHA-256), for a caller that hashed the message
    /// itself (a JWS signer hashes the protected header shared by many
    /// tokens once). The signature is the one [`Signer::sign`] makes of the
    /// message. `None` when this key cannot sign a digest computed
    /// elsewhere: the caller then signs the message with [`Signer::sign`].
    fn sign_sha256_digest(&self, alg: SignatureAlgorithm, digest: &[u8; 32]) -> Option<Result<Vec<u8>>> {
        let _ = (alg, digest);
        None
    }
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

    #[cfg_attr(not(feature = "issuer"), allow(dead_code))]
    pub(crate) fn as_bytes(&self) -> &[u8] {
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
/// The arithmetic is aws-lc-rs's with the `aws-lc` feature, the `rsa`
/// crate's without ([`VERIFY_BACKEND`](crate::core::keys::VERIFY_BACKEND)),
/// with the same verdicts.
pub fn verify_signature(key: &rsa::PublicKey, alg: SignatureAlgorithm, message: &[u8], sig: &[u8]) -> bool {
    super::backend::rsa_verify(key, scheme_of(alg), message, sig)
}

/// [`verify_signature`] with the pure-Rust `rsa` crate whatever the
/// features: the reference the aws-lc-rs verdicts are compared with in
/// tests (cargo feature `test-hooks` only).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub fn verify_signature_rsa_crate(key: &rsa::PublicKey, alg: SignatureAlgorithm, message: &[u8], sig: &[u8]) -> bool {
    super::backend::rsa_crate_verify(key, scheme_of(alg), message, sig)
}

pub(crate) fn scheme_of(alg: SignatureAlgorithm) -> super::backend::RsaScheme {
    match alg {
        SignatureAlgorithm::Ps256 => super::backend::RsaScheme::PssSha256,
        SignatureAlgorithm::Rs256 => super::backend::RsaScheme::Pkcs1Sha256,
    }
}
