//! Keys on smart cards and HSMs through PKCS#11 (feature `pkcs11`).
//!
//! A key is named by an RFC 7512 URI ([`Pkcs11Uri`]). [`Pkcs11Key`] is a
//! [`Signer`](crate::core::keys::Signer): certificates, CRLs, tokens and revocation lists are signed on
//! the token, and the private key never leaves it. [`generate_rsa_key`]
//! creates a key pair on the token (sensitive, not extractable), and
//! [`list`] shows what a module offers, to help write URIs.
//!
//! Each module file is loaded and initialised once per process and kept for
//! the life of the process (one library context per process). A
//! [`Pkcs11Key`] keeps a pool of sessions: a thread that signs takes one (or
//! opens one) and puts it back, so parallel bulk issuance uses one session
//! per worker. The login made when the key is opened holds for every
//! session of the process (PKCS#11 login state is per application), and
//! the first session is kept open so the login lasts as long as the key.
//!
//! A wrong PIN is reported once and never retried: tokens lock after a few
//! failures.

mod uri;
pub use uri::{check_module_name, in_module_dirs, is_pkcs11_uri, Pkcs11Uri, UriSource, MODULE_DIRS, SCHEME};

#[cfg(feature = "pkcs11")]
mod device;
#[cfg(feature = "pkcs11")]
pub use device::*;
