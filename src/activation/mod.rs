//! The machine wing: what runs on a machine that verifies. The activation
//! store, root trust, activation (verify, then store), and revocation-list
//! import and re-verification. It imports only the core.

pub(crate) mod activate;
#[cfg(feature = "agent")]
pub mod agent;
#[cfg(feature = "agent")]
pub mod online;
pub mod revocation;
pub(crate) mod revoked;
pub mod store;
pub mod trust;

pub use activate::*;

pub use trust::{anchors_from_stored, IdentifyFn, TrustData};
