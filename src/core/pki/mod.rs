//! The PKI layer: certificate profiles, parsing, path
//! validation, CRLs and trust anchors.

pub(crate) mod cert;
pub(crate) mod delegation;
mod path;
pub mod pem;
mod pin;

pub use cert::{sha256_hex, CertInfo, MAX_CERT_SIZE, TKA_TOKEN_SIGNING_EKU};
pub use delegation::{Delegation, TKA_DELEGATION_OID};
#[cfg(feature = "issuer")]
pub(crate) use path::verify_rsa;
pub use path::{
    chain_from_pool, check_cross_certificate, check_root, check_valid_at, validate_path, vouching_chain, Crl, LeafRole,
    TrustAnchors, ValidatedPath, MAX_CHAIN_LEN, MAX_VOUCHING_CHAIN, MIN_RSA_BITS,
};
pub use pin::{InvalidFingerprint, RootFingerprint};
