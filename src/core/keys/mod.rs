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
//! passphrases and PEM text are held in [`zeroize::Zeroizing`] buffers).

// Private keys (files and tokens) sign: the issuer's side. A verifier-only
// build (`--no-default-features`) keeps just the public-key half.
pub(crate) mod backend;
#[cfg(feature = "issuer")]
mod open;
pub(crate) mod signer;
#[cfg(feature = "issuer")]
mod software;

pub use backend::VERIFY_BACKEND;
#[cfg(feature = "issuer")]
pub use open::*;
pub use signer::*;
#[cfg(feature = "issuer")]
pub use software::*;
