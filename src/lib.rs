//! tka — token-based offline activation.
#![warn(missing_docs)]

pub mod activation;
pub mod clock;
mod error;
mod fsutil;
pub mod issuer;
mod json;
pub mod jws;
pub mod keys;
pub mod machine;
pub mod pki;
pub mod request;
pub mod revocation;
pub mod store;
pub mod token;
pub mod verify;

pub use error::{Error, Result, VerifyError};
