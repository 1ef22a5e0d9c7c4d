//! The errors of machine identity and binding checks.
//!
//! A leaf: `crate::core::error` wraps these types, so this file imports
//! nothing that imports it.

use std::fmt;

/// Errors from identifying the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MachineError {
    /// No identity component could be read.
    NoComponents,
    /// A match rule string could not be parsed (or does not fit the components).
    BadRule(String),
    /// The explicit identity was given but is unusable (file unreadable, empty).
    BadExplicitId(String),
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineError::NoComponents => write!(
                f,
                "cannot identify this machine: no usable identity component could be read \
                 (no machine-id, DMI identifiers, physical NICs or disk ids); give it an explicit \
                 identity in an explicit machine-id file or the TKA_MACHINE_ID environment variable"
            ),
            MachineError::BadRule(s) => {
                write!(f, "invalid match rule {s:?}: expected all, most or a number of components")
            }
            MachineError::BadExplicitId(why) => {
                write!(f, "unusable explicit machine identity: {why}")
            }
        }
    }
}

impl std::error::Error for MachineError {}

/// Why a component set (with its CMID) is not one a real machine produces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingError {
    /// No components at all.
    NoComponents,
    /// A component kind tka does not know.
    UnknownKind {
        /// The kind code (escaped when shown).
        kind: String,
    },
    /// The same component (kind and hash) twice: a machine reports each
    /// once, and a repeated MAC would outweigh the others in the MAC vote.
    DuplicateComponent {
        /// Its kind.
        kind: String,
    },
    /// More than one value of a single-valued kind.
    DuplicateKind {
        /// The kind.
        kind: String,
        /// How many values were given.
        count: usize,
    },
    /// More MAC addresses than one machine binds.
    TooManyMacs {
        /// How many were given.
        count: usize,
        /// [`super::kinds::MAX_MACS`].
        limit: usize,
    },
    /// An explicit identity together with other components.
    ExplicitMixed {
        /// The other kinds present.
        others: Vec<String>,
    },
    /// A component hash that is not 16 base64url characters (12 bytes).
    MalformedHash {
        /// Its kind.
        kind: String,
    },
    /// The CMID is not a well-formed CMID in canonical form.
    MalformedCmid {
        /// The CMID given (escaped when shown).
        cmid: String,
    },
    /// The CMID is well-formed but not the one the components give.
    CmidMismatch {
        /// The CMID given.
        claimed: String,
        /// The CMID the components give.
        computed: String,
    },
    /// No explicit identity and no hardware anchor, and weak bindings were
    /// not allowed.
    WeakBinding {
        /// The kinds present.
        kinds: Vec<String>,
    },
}

impl fmt::Display for BindingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingError::NoComponents => f.write_str("the binding has no components"),
            BindingError::UnknownKind { kind } => write!(f, "unknown component kind {kind:?}"),
            BindingError::DuplicateComponent { kind } => {
                write!(f, "the same {kind:?} component twice: a machine reports each once")
            }
            BindingError::DuplicateKind { kind, count } => {
                write!(f, "{count} values of component kind {kind:?}: a machine has one")
            }
            BindingError::TooManyMacs { count, limit } => {
                write!(f, "{count} MAC addresses: a machine binds at most {limit}")
            }
            BindingError::ExplicitMixed { others } => {
                write!(f, "an explicit identity (xid) must stand alone, but the binding also has {}", others.join(", "))
            }
            BindingError::MalformedHash { kind } => {
                write!(f, "a {kind:?} component hash is not 16 base64url characters")
            }
            BindingError::MalformedCmid { cmid } => write!(f, "malformed CMID {cmid:?}"),
            BindingError::CmidMismatch { claimed, computed } => {
                write!(f, "the CMID {claimed} does not match the components (which give {computed})")
            }
            BindingError::WeakBinding { kinds } => write!(
                f,
                "weak binding: only {} (no hardware anchor: DMI UUID, serial numbers, disk serial or MAC; \
                 no explicit identity), which a copied disk or VM image carries to other hardware",
                kinds.join(", ")
            ),
        }
    }
}

impl std::error::Error for BindingError {}
