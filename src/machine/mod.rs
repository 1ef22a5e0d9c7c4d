//! Machine identity: component sources, salted hashing, the CMID, matching.
//!
//! PLACEHOLDER API — being replaced by the full implementation (issue 3).
//! The public items below are the contract the rest of the crate uses.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// One hashed identity component as it travels in requests and tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHash {
    /// Short kind code, e.g. `mid` (machine-id), `dmi` (DMI product UUID), `mac`.
    #[serde(rename = "k")]
    pub kind: String,
    /// Truncated salted SHA-256, base64url without padding.
    #[serde(rename = "h")]
    pub hash: String,
}

/// How many bound components must still match for the machine to count as the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchRule {
    /// Every bound component must match.
    All,
    /// More than half of the bound components must match (and at least one).
    Most,
    /// At least N bound components must match (N >= 1).
    AtLeast(u32),
}

/// The outcome of comparing a token's bound components with this machine's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchReport {
    /// Number of bound components found on this machine.
    pub matched: usize,
    /// Number required by the rule.
    pub required: usize,
    /// Number of bound components.
    pub total: usize,
    /// Kinds of the bound components that did not match.
    pub changed: Vec<String>,
}

impl MatchReport {
    /// Whether the rule is satisfied.
    pub fn is_match(&self) -> bool {
        self.matched >= self.required && self.required > 0
    }
}

/// Errors from identifying the machine.
#[derive(Debug)]
#[non_exhaustive]
pub enum MachineError {
    /// No identity component could be read.
    NoComponents,
    /// A match rule string could not be parsed.
    BadRule(String),
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineError::NoComponents => write!(f, "cannot identify this machine: no identity component could be read"),
            MachineError::BadRule(s) => write!(f, "invalid match rule {s:?}: expected all, most or a number"),
        }
    }
}
impl std::error::Error for MachineError {}

/// Where and how to look for identity components.
#[derive(Debug, Clone, Default)]
pub struct IdentifyOptions {
    /// Root of the file system to read from; `/` when `None`.
    pub sysroot: Option<PathBuf>,
    /// An explicit identity that replaces hardware sources (containers).
    pub explicit_id: Option<String>,
}

/// The identity of one machine for one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineIdentity {
    product: String,
    cmid: String,
    components: Vec<ComponentHash>,
}

impl MachineIdentity {
    /// Reads this machine's components and hashes them for `product`.
    pub fn identify(product: &str, opts: &IdentifyOptions) -> Result<Self, MachineError> {
        let root = opts.sysroot.clone().unwrap_or_else(|| PathBuf::from("/"));
        let mut raw = Vec::new();
        if let Some(id) = &opts.explicit_id {
            raw.push(("xid".to_string(), id.clone()));
        } else if let Ok(s) = std::fs::read_to_string(root.join("etc/machine-id")) {
            if !s.trim().is_empty() {
                raw.push(("mid".to_string(), s.trim().to_string()));
            }
        }
        if raw.is_empty() {
            return Err(MachineError::NoComponents);
        }
        Ok(Self::from_raw(product, &raw))
    }

    /// Builds an identity from raw (kind, value) pairs; for tests and embedding.
    pub fn from_raw(product: &str, raw: &[(String, String)]) -> Self {
        let components: Vec<ComponentHash> = raw
            .iter()
            .map(|(k, v)| ComponentHash { kind: k.clone(), hash: hash_component(product, k, v) })
            .collect();
        let cmid = components.first().map(|c| c.hash[..12].to_string()).unwrap_or_default();
        MachineIdentity { product: product.to_string(), cmid, components }
    }

    /// The product this identity is scoped to.
    pub fn product(&self) -> &str {
        &self.product
    }
    /// The short human form of the identity.
    pub fn cmid(&self) -> &str {
        &self.cmid
    }
    /// The hashed components.
    pub fn components(&self) -> &[ComponentHash] {
        &self.components
    }
}

fn hash_component(product: &str, kind: &str, value: &str) -> String {
    use base64::Engine;
    let mut h = Sha256::new();
    h.update(product.as_bytes());
    h.update([0]);
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h.finalize()[..12])
}

impl MatchRule {
    /// Compares `bound` (from a token) with `current` (this machine).
    pub fn evaluate(&self, bound: &[ComponentHash], current: &[ComponentHash]) -> MatchReport {
        let total = bound.len();
        let changed: Vec<String> = bound.iter().filter(|b| !current.contains(b)).map(|b| b.kind.clone()).collect();
        let matched = total - changed.len();
        let required = match *self {
            MatchRule::All => total,
            MatchRule::Most => total / 2 + 1,
            MatchRule::AtLeast(n) => n as usize,
        };
        MatchReport { matched, required, total, changed }
    }
}

impl fmt::Display for MatchRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchRule::All => f.write_str("all"),
            MatchRule::Most => f.write_str("most"),
            MatchRule::AtLeast(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for MatchRule {
    type Err = MachineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(MatchRule::All),
            "most" => Ok(MatchRule::Most),
            n => match n.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(MatchRule::AtLeast(n)),
                _ => Err(MachineError::BadRule(s.to_string())),
            },
        }
    }
}

impl Serialize for MatchRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MatchRule::AtLeast(n) => s.serialize_u32(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for MatchRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(serde::de::Error::custom("match rule must be \"all\", \"most\" or a number")),
        };
        s.parse().map_err(serde::de::Error::custom)
    }
}
