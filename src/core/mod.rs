//! The core both wings stand on: errors, time, file reading, JSON, keys
//! (files and PKCS#11), certificates and CRLs, JWS, the token and request
//! formats, machine identity and the ordered verification. It imports
//! neither wing.

pub mod agent_error;
pub mod bundle;
pub mod clock;
pub mod error;
pub mod fsutil;
pub(crate) mod hex;
pub(crate) mod json;
pub mod jws;
pub mod keys;
pub mod machine;
pub mod pkcs11;
pub mod pki;
pub mod product_key;
pub mod request;
pub mod revocation_list;
pub(crate) mod sha256;
pub mod store_error;
pub mod token;
pub mod verify;
