//! The issuer wing: what runs on the administrator's workstation. The
//! issuer home, rotation of its certificates, CRL numbers, the ledger and
//! issuance: [`issue`] is the one path that issues a token, and [`bulk`]
//! the pipeline that issues and renews many on top of it. It imports only
//! the core. Behind the `issuer` feature.

pub mod bulk;
pub mod certs;
mod claims;
pub mod crl;
pub mod crl_number;
pub(crate) mod home;
pub mod host;
pub mod issue;
pub mod ledger;
#[cfg(feature = "host")]
pub mod online;
pub mod revocation_list;
pub mod rotation;
mod seats;
pub mod signer;

pub use certs::{create_certificate, lifetimes, parse_name, reissue_certificate, CertKind, CertRequest};
pub use crl::{create_crl, normalize_serial, CrlEntry, CrlParams, RevocationReason};
pub use home::*;
