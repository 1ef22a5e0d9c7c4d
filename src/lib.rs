//! tka — token-based offline activation.
#![warn(missing_docs)]

mod fsutil;
pub mod machine;
pub mod store;
