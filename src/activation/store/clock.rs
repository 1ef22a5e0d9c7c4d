//! The persistent state and the clock high-water check.

use crate::core::error::VerifyError;
use crate::core::verify::check_clock_mark;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default tolerance for [`check_clock`]: one day. Clocks on air-gapped
/// machines drift and get corrected; a day absorbs that (and time-zone
/// mistakes) while still catching a clock wound back to reuse an expired
/// token.
pub const DEFAULT_CLOCK_TOLERANCE_SECS: i64 = 86_400;

/// The store's small mutable state, kept in `state.json`.
///
/// Both parts only ever move forward; [`StoreLock::save_state`] refuses a
/// write that would move either back.
///
/// [`StoreLock::save_state`]: super::StoreLock::save_state
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreState {
    /// Unix seconds: the latest "now" any activation or verification on this
    /// store has seen (see [`StoreState::observe`]).
    pub clock_high_water: i64,
    /// For each token revocation list, by its store key
    /// ([`list_key`](super::list_key): root fingerprint and list id), the
    /// highest sequence number installed; an older list must never be
    /// accepted. (Stores written before lists were bound to roots also
    /// hold bare list ids here.)
    pub revocation_seq: BTreeMap<String, u64>,
}

impl StoreState {
    /// Raises the clock high-water mark to `now`; never lowers it.
    pub fn observe(&mut self, now: i64) {
        self.clock_high_water = self.clock_high_water.max(now);
    }
}

/// Checks `now` against the store's clock high-water mark.
///
/// Fails when `now < state.clock_high_water - tolerance`; being exactly
/// `tolerance` seconds behind is still accepted. A negative tolerance counts
/// as zero. This is a pure function: the caller reads the clock and the
/// state and passes them in.
///
/// ```
/// use tka::store::{check_clock, StoreState, DEFAULT_CLOCK_TOLERANCE_SECS};
/// let mut state = StoreState::default();
/// state.observe(1_700_000_000);
/// assert!(check_clock(&state, 1_700_000_000 - 3600, DEFAULT_CLOCK_TOLERANCE_SECS).is_ok());
/// let err = check_clock(&state, 1_600_000_000, DEFAULT_CLOCK_TOLERANCE_SECS).unwrap_err();
/// assert!(matches!(err, tka::VerifyError::ClockRollback { high_water: 1_700_000_000, .. }));
/// ```
pub fn check_clock(state: &StoreState, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    check_clock_mark(now, state.clock_high_water, tolerance)
}
