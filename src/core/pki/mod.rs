//! The PKI layer: certificate profiles and creation, parsing, path
//! validation, CRLs and trust anchors.

mod cert;
mod create;
mod crl;
mod path;
pub mod pem;
mod pin;

pub use cert::{sha256_hex, CertInfo, MAX_CERT_SIZE, TKA_TOKEN_SIGNING_EKU};
pub use create::{create_certificate, lifetimes, parse_name, reissue_certificate, CertKind, CertRequest};
#[allow(unused_imports)]
pub(crate) use create::{key_identifier, random_serial, sign_with_builder, to_der, unix_to_time};
pub use crl::{create_crl, normalize_serial, CrlEntry, CrlParams, RevocationReason};
pub use path::{
    check_cross_certificate, check_root, check_valid_at, validate_path, vouching_chain, Crl, LeafRole, TrustAnchors,
    ValidatedPath, MAX_CHAIN_LEN, MAX_VOUCHING_CHAIN, MIN_RSA_BITS,
};
pub use pin::{InvalidFingerprint, RootFingerprint};
