//! Tolerant k-of-n matching of bound components against the current machine.
//!
//! # Votes
//! Components are grouped by kind and each kind is one *vote*. A vote matches
//! when more than half of the bound hashes of that kind are present on this
//! machine. Only `mac` is multi-valued (see [`super::binding::check_components`]):
//! all of a machine's physical MACs together are one vote, which matches if
//! most of the bound MACs are still present. A machine with four NICs
//! therefore does not get four times the say of its DMI UUID, replacing one
//! of its four NICs changes nothing, and a token bound to the MACs of
//! several machines matches none of them on that vote.
//!
//! # Rules
//! * `all` — every vote must match.
//! * `most` (the default) — more than half of the votes must match, *and*
//!   the hardware anchor must hold (see below).
//! * `N` — at least `N` votes must match, clamped to the number of votes (a
//!   token bound to 2 votes with `--match 3` behaves as `all`). Pure count, no
//!   anchor: this is the escape hatch for vendors who want leniency.
//!
//! No rule ever requires zero: with no bound votes nothing matches.
//!
//! # Hardware anchor (`most` only)
//! Copying a disk or VM image to other hardware keeps the machine-id, the
//! root filesystem UUID and usually the CPU model; only hardware-side
//! components change. A plain majority could therefore accept a clone. So
//! `most` additionally requires, of the bound hardware votes (`dmi`, `psn`,
//! `bsn`, `csn`, `dsk`, `mac`):
//! * more than half of them match — so a token bound to the hardware of
//!   two machines (a crafted request) matches at most one of them;
//! * and if the DMI product UUID (`dmi`) is bound, it matches.
//!
//! The hardware votes are the kinds table's hardware anchors
//! ([`HARDWARE_ANCHORS`]); the ones that must match whenever bound are its
//! [`MatchTier::KeyAnchor`] rows.

use super::component::ComponentHash;
use super::errors::MachineError;
use super::kinds::{self, MatchTier, HARDWARE_ANCHORS, KINDS};
use super::report::MatchReport;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How many bound components must still match for the machine to count as the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchRule {
    /// Every bound vote must match.
    All,
    /// More than half of the bound votes must match, and the hardware anchor
    /// must hold (see the module documentation).
    Most,
    /// At least N bound votes must match (N is clamped to `1..=votes`).
    AtLeast(u32),
}

/// Number of votes (distinct kinds) in `components`.
pub fn vote_count(components: &[ComponentHash]) -> usize {
    let mut kinds: Vec<&str> = components.iter().map(|c| c.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds.len()
}

/// The default match rule for a set of components: `most` (for one vote
/// that means that one; for two, both; for three, two; ...).
pub fn default_rule_for(_components: &[ComponentHash]) -> MatchRule {
    MatchRule::Most
}

impl MatchRule {
    /// Number of matching votes this rule requires out of `total` votes.
    /// Never zero for `total > 0`.
    pub fn required_votes(&self, total: usize) -> usize {
        let r = match *self {
            MatchRule::All => total,
            MatchRule::Most => total / 2 + 1,
            MatchRule::AtLeast(n) => (n as usize).min(total),
        };
        r.max(1)
    }

    /// Checks that this rule is satisfiable and meaningful for `bound` at
    /// issuance time: `N` must not exceed the number of votes.
    pub fn check_for(&self, bound: &[ComponentHash]) -> Result<(), MachineError> {
        let votes = vote_count(bound);
        match *self {
            MatchRule::AtLeast(n) if n == 0 || n as usize > votes => {
                Err(MachineError::BadRule(format!("{n}: the machine has {votes} component votes")))
            }
            _ if votes == 0 => Err(MachineError::NoComponents),
            _ => Ok(()),
        }
    }

    /// Compares `bound` (from a token) with `current` (this machine).
    pub fn evaluate(&self, bound: &[ComponentHash], current: &[ComponentHash]) -> MatchReport {
        // kind -> matched?
        // kind -> (bound values, values present here)
        let mut tally: BTreeMap<(usize, &str), (usize, usize)> = BTreeMap::new();
        for b in bound {
            let hit = current.iter().any(|c| c.kind == b.kind && c.hash == b.hash);
            let t = tally.entry((kinds::rank(&b.kind), b.kind.as_str())).or_insert((0, 0));
            t.0 += 1;
            t.1 += usize::from(hit);
        }
        // A vote matches when more than half of its bound values are present:
        // two machines with different NICs can never both hold a majority of
        // the same bound MACs.
        let votes: BTreeMap<(usize, &str), bool> = tally.into_iter().map(|(k, (n, hits))| (k, 2 * hits > n)).collect();
        let total = votes.len();
        let matched = votes.values().filter(|m| **m).count();
        let changed: Vec<String> = votes.iter().filter(|(_, m)| !**m).map(|((_, k), _)| k.to_string()).collect();
        let missing: Vec<String> = changed.iter().filter(|k| !current.iter().any(|c| &c.kind == *k)).cloned().collect();
        let is_bound = |k: &str| votes.keys().any(|(_, bk)| *bk == k);
        let vote_ok = |k: &str| votes.iter().any(|((_, bk), m)| *bk == k && *m);

        // The hardware anchor of `most`: the DMI UUID when bound, and more
        // than half of the bound hardware votes (DMI UUID, serials, disk,
        // MACs). "More than half", not "one of": a token bound to the
        // hardware of two machines (half each) must match neither.
        let anchor: Vec<String> = match self {
            MatchRule::Most => HARDWARE_ANCHORS.iter().filter(|k| is_bound(k)).map(|k| k.to_string()).collect(),
            _ => Vec::new(),
        };
        let anchor_hits = anchor.iter().filter(|k| vote_ok(k)).count();
        // Key anchors (the DMI UUID) must match whenever they are bound.
        let keys_hold =
            KINDS.iter().filter(|s| s.match_tier == MatchTier::KeyAnchor).all(|s| !is_bound(s.code) || vote_ok(s.code));
        let anchor_matched = anchor.is_empty() || (2 * anchor_hits > anchor.len() && keys_hold);
        let required = if total == 0 { 1 } else { self.required_votes(total) };
        MatchReport { matched, required, total, changed, missing, anchor, anchor_matched }
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
        match s.trim().to_ascii_lowercase().as_str() {
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
