//! The activation host (issue 13): a *delegated issuer* on an isolated
//! network. Its key signs tokens under a token-signer certificate that
//! carries the tka delegation extension ([`crate::core::pki::Delegation`]):
//! the products it may sign for and the longest token lifetime, which
//! every machine enforces (docs/verification.md).
//!
//! - [`HostDir`] (`dir.rs`): the host's directory, made by
//!   [`HostDir::init`] (key and PKCS#10 host request) and completed by
//!   [`HostDir::install`] (the certificate chain).
//! - [`certify`] (`certify.rs`): the issuer's side, a delegated
//!   token-signer certificate for a host request from the issuer home's
//!   issuing CA.
//! - [`policy`]: the counting rules (threshold, aging, cache size, seats),
//!   pure; [`state`]: the store behind them ([`state::HostState`], in
//!   SQLite by default, or in PostgreSQL with `pg_state::PgState` under
//!   the `postgres` feature, shared by several hosts); [`server`]: the HTTP/1.1 service `host serve` runs
//!   (behind the `host` feature); [`tls`]: its optional TLS, the host's
//!   chain and key in a rustls server configuration.

mod certify;
mod dir;
#[cfg(feature = "postgres")]
pub mod pg_state;
pub mod policy;
#[cfg(feature = "host")]
pub mod server;
pub mod state;
#[cfg(feature = "host")]
pub mod tls;

pub use certify::{certify, read_host_request, CertifyOptions, HostRequest, MAX_HOST_REQUEST};
pub use dir::{
    HostConfig, HostDir, HostInitOptions, InstalledCert, HOST_CHAIN_FILE, HOST_CONFIG_FILE, HOST_KEY_FILE,
    HOST_REQUEST_FILE, HOST_ROOT_FILE,
};
