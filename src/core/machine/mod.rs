//! Machine identity: component sources, salted hashing, the CMID, matching.
//!
//! A machine is described by a set of *components* (machine-id, DMI product
//! UUID, serial numbers, physical MACs, root file system UUID, disk serial,
//! CPU model — or a single explicit identity in containers). Each component
//! is normalized and hashed with a product-scoped salt, so raw identifiers
//! never leave the machine; only [`ComponentHash`]es go into requests and
//! tokens. The CMID is a short human form derived from the strongest
//! components, and [`MatchRule`] compares a token's bound components with
//! the current machine tolerantly.
//!
//! Every component kind is one row of the kinds table, [`kinds::KINDS`]:
//! its code, description, normalizer, CMID tier, match tier, whether it is a
//! hardware anchor, and how many values a machine binds. Normalization, the
//! CMID, the binding rules, matching and the warnings all read it.
//!
//! The library never reads environment variables on its own:
//! [`IdentifyOptions::from_env`] does that for the CLI.
//!
//! This file is a facade. The files below it are layered bottom-up, each
//! naming its siblings directly: `normalize` (value rules), `kinds` (the
//! table), `component`, `errors` and `report` (the leaves
//! `crate::core::error` names), `hash`, `binding`, `matching`, `sources`,
//! `platform`, `environment`, `identity`.
//!
//! See `docs/machine-identity.md` for the design.

mod binding;
mod component;
mod environment;
pub(crate) mod errors;
mod hash;
mod identity;
pub mod kinds;
mod matching;
mod normalize;
mod platform;
pub(crate) mod report;
mod sources;

pub use binding::{check_binding, check_components, BindingStrength};
pub use component::ComponentHash;
pub use environment::Environment;
pub use errors::{BindingError, MachineError};
#[cfg(feature = "issuer")]
pub(crate) use hash::cmid_from_value;
pub use hash::{cmid_basis, cmid_from_components, hash_component, normalize_cmid, product_salt, validate_cmid};
pub use identity::{ExplainedSource, Explanation, IdentifyOptions, MachineIdentity, SourceReport};
pub use kinds::{normalize, HARDWARE_ANCHORS, MAX_MACS};
pub use matching::{default_rule_for, vote_count, MatchRule};
pub use normalize::{normalize_mac, Rejection};
pub use platform::platform_sources;
pub use report::MatchReport;
pub use sources::{
    linux_sources, ComponentSource, CpuModelSource, DiskSerialSource, DmiSource, MacSource, MachineIdSource,
    RawReading, RootFsSource,
};
