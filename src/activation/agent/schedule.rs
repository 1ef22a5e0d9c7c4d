//! When `agent run` wakes next: a pure function of what the last round
//! found and the time, with the randomness of the jitter passed in.

use super::discover::UniformFn;

/// Renewal interval when neither the token nor the host names one: 7 days.
pub const DEFAULT_RENEW_SECS: i64 = 7 * crate::core::clock::DAY;
/// Retry interval below the threshold or without a host: 2 hours.
pub const DEFAULT_RETRY_SECS: i64 = 2 * 3600;
/// Shortest wait between two rounds, seconds (a host asking for less is not obeyed).
pub const MIN_WAIT_SECS: i64 = 60;

/// What the last round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastRound {
    /// No round yet and no valid token installed: go now.
    None,
    /// Activated (or a valid token already installed): renew at `renew_at`
    /// (Unix seconds).
    Activated {
        /// When the token should be renewed.
        renew_at: i64,
    },
    /// Below the threshold; the host asked to come back after `retry_after`
    /// seconds (`None`: [`Schedule::retry_secs`]).
    Pending {
        /// The host's retry interval.
        retry_after: Option<i64>,
    },
    /// No host answered, or the round failed.
    Failed,
}

/// The agent's intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Retry interval when pending (and the host names none) or failed, seconds.
    pub retry_secs: i64,
    /// Jitter, percent of the wait, each way (10: the wait is stretched or
    /// shrunk by up to 10 %), so machines started together spread out.
    pub jitter_percent: u32,
}

impl Default for Schedule {
    /// Retry every 2 hours, jitter ±10 %.
    fn default() -> Self {
        Schedule { retry_secs: DEFAULT_RETRY_SECS, jitter_percent: 10 }
    }
}

impl Schedule {
    /// When to wake next after `last`, at `now` (Unix seconds). `uniform`
    /// gives the jitter. A renewal already due goes now; any other wait is
    /// at least [`MIN_WAIT_SECS`] after jitter.
    pub fn next_wake(&self, last: LastRound, now: i64, uniform: UniformFn<'_>) -> i64 {
        let wait = match last {
            LastRound::None => return now,
            LastRound::Activated { renew_at } if renew_at <= now => return now,
            LastRound::Activated { renew_at } => renew_at - now,
            LastRound::Pending { retry_after } => retry_after.unwrap_or(self.retry_secs),
            LastRound::Failed => self.retry_secs,
        };
        now + self.jittered(wait, uniform).max(MIN_WAIT_SECS)
    }

    /// `wait` moved by a uniform amount within ±`jitter_percent` of it.
    fn jittered(&self, wait: i64, uniform: UniformFn<'_>) -> i64 {
        let span = wait.saturating_mul(i64::from(self.jitter_percent)) / 100;
        let span32 = u32::try_from(span.clamp(0, i64::from(u32::MAX / 2))).unwrap_or(0);
        wait - i64::from(span32) + i64::from(uniform(span32 * 2).min(span32 * 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    #[test]
    fn first_round_goes_now() {
        assert_eq!(Schedule::default().next_wake(LastRound::None, NOW, &mut |_| 0), NOW);
    }

    #[test]
    fn activated_wakes_at_the_renewal_time_within_the_jitter() {
        let s = Schedule::default();
        let renew_at = NOW + 7 * 86_400;
        let span = 7 * 86_400 / 10;
        assert_eq!(s.next_wake(LastRound::Activated { renew_at }, NOW, &mut |_| 0), renew_at - span);
        assert_eq!(s.next_wake(LastRound::Activated { renew_at }, NOW, &mut |m| m / 2), renew_at);
        assert_eq!(s.next_wake(LastRound::Activated { renew_at }, NOW, &mut |m| m), renew_at + span);
    }

    #[test]
    fn a_renewal_already_due_goes_now() {
        let last = LastRound::Activated { renew_at: NOW - 5 };
        assert_eq!(Schedule::default().next_wake(last, NOW, &mut |m| m), NOW);
    }

    #[test]
    fn pending_retries_after_two_hours_by_default_or_what_the_host_asks() {
        let s = Schedule { retry_secs: DEFAULT_RETRY_SECS, jitter_percent: 0 };
        assert_eq!(s.next_wake(LastRound::Pending { retry_after: None }, NOW, &mut |_| 0), NOW + 7200);
        assert_eq!(s.next_wake(LastRound::Pending { retry_after: Some(600) }, NOW, &mut |_| 0), NOW + 600);
    }

    #[test]
    fn failure_retries_after_two_hours_with_jitter() {
        let s = Schedule::default();
        assert_eq!(s.next_wake(LastRound::Failed, NOW, &mut |_| 0), NOW + 7200 - 720);
        assert_eq!(s.next_wake(LastRound::Failed, NOW, &mut |m| m), NOW + 7200 + 720);
    }

    #[test]
    fn a_host_cannot_make_the_agent_spin() {
        let s = Schedule { retry_secs: DEFAULT_RETRY_SECS, jitter_percent: 0 };
        assert_eq!(s.next_wake(LastRound::Pending { retry_after: Some(0) }, NOW, &mut |_| 0), NOW + MIN_WAIT_SECS);
    }
}
