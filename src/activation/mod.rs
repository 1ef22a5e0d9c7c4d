//! The machine wing: what runs on a machine that verifies. The activation
//! store, activation (verify, then store), revocation-list import and
//! re-verification, and root trust. It imports only the core.

pub(crate) mod activate;
pub mod revocation;
pub mod store;

pub use activate::*;
