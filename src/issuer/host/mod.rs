//! The activation host: a delegated issuer on a LAN that activates machines
//! once enough of them asked (the threshold), counts them in its state and
//! serves them over HTTP/1.1. [`policy`] holds the counting rules,
//! [`state`] the store behind them, [`server`] the HTTP service. Behind the
//! `host` feature.

pub mod policy;
pub mod server;
pub mod state;
