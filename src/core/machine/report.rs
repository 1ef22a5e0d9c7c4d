//! The outcome of matching a token's bound components with this machine.
//!
//! A leaf (it reads only the kinds table): `crate::core::error` shows a
//! [`MatchReport`], so this file imports nothing that imports it.

use super::kinds::{spec, MatchTier};
use serde::Serialize;
use std::fmt;

/// The outcome of comparing a token's bound components with this machine's.
///
/// Counts are in *votes* (distinct component kinds; all MACs are one vote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchReport {
    /// Number of bound votes that match this machine.
    pub matched: usize,
    /// Number of matching votes the rule requires (never zero unless there
    /// is nothing bound, in which case nothing matches).
    pub required: usize,
    /// Number of bound votes.
    pub total: usize,
    /// Kinds of the bound votes that did not match (including [`Self::missing`]).
    pub changed: Vec<String>,
    /// Kinds of the bound votes this machine does not have at all (e.g. DMI
    /// unreadable without root). A subset of [`Self::changed`].
    pub missing: Vec<String>,
    /// The bound hardware kinds of which more than half must match (and
    /// `dmi`, when bound) — the hardware anchor of `most`; empty when the
    /// rule has no anchor requirement.
    pub anchor: Vec<String>,
    /// Whether the anchor requirement holds (true when there is none).
    pub anchor_matched: bool,
}

impl MatchReport {
    /// Whether the rule is satisfied.
    pub fn is_match(&self) -> bool {
        self.required > 0 && self.matched >= self.required && self.anchor_matched
    }
}

impl fmt::Display for MatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} components match, {} required", self.matched, self.total, self.required)?;
        if !self.changed.is_empty() {
            write!(f, "; changed: {}", self.changed.join(", "))?;
        }
        if !self.missing.is_empty() {
            write!(f, " (not readable here: {})", self.missing.join(", "))?;
        }
        if !self.anchor_matched {
            // The anchor kinds that must match whenever bound (the DMI UUID).
            let keys: Vec<&str> = self
                .anchor
                .iter()
                .filter(|k| spec(k).is_some_and(|s| s.match_tier == MatchTier::KeyAnchor))
                .map(String::as_str)
                .collect();
            let keys = if keys.is_empty() { String::new() } else { format!("; {} required", keys.join(", ")) };
            write!(f, "; hardware anchor (most of {}{keys}) does not match", self.anchor.join(", "))?;
        }
        Ok(())
    }
}
