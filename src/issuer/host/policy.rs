//! The host's counting rules, pure: time is a parameter.
//!
//! Per product the host keeps the machines (CMIDs) it has seen, each with
//! when it was last seen. The rules:
//! - the **count** is the number of distinct CMIDs seen within the aging
//!   window (default 30 days): an entry last seen exactly `aging` seconds
//!   ago has aged out;
//! - a request from a known CMID (a retry or a renewal) refreshes its
//!   `last_seen` and does not add to the count;
//! - a machine is activated when the count, itself included, reaches the
//!   product's **threshold**; below it the answer is *pending*;
//! - the host keeps at most **cache size** entries per product: twice the
//!   largest threshold ever configured for it, a size that never shrinks
//!   (lowering the threshold keeps the larger cache); beyond it the entry
//!   seen longest ago is evicted (ties: the smaller CMID first);
//! - a **return** drops the machine's entry at once;
//! - a **seat cap** (from the host's delegation) refuses a new CMID while
//!   that many are counted; known ones still renew.

/// One machine the host has seen for a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The machine's CMID.
    pub cmid: String,
    /// When it was last seen, Unix seconds.
    pub last_seen: i64,
}

/// The rules a product is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Machines needed before any is activated (at least 1).
    pub threshold: u32,
    /// Most entries kept ([`cache_size`]).
    pub cache_size: u32,
    /// How long an entry counts after it was last seen, seconds.
    pub aging_secs: i64,
    /// Most distinct machines the delegation allows, if it caps them.
    pub seats: Option<u32>,
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The count reached the threshold: sign a token.
    Activated,
    /// Below the threshold: counted, retry later.
    Pending,
    /// A new machine while every seat of the delegation is counted.
    SeatsFull,
}

/// The decision for one activation request and the change it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The verdict.
    pub verdict: Verdict,
    /// The count after the request (unchanged when refused).
    pub count: u32,
    /// The threshold it was compared with.
    pub threshold: u32,
    /// Whether the machine is new (it was not counted before).
    pub new: bool,
    /// Entries to delete: aged out, or evicted beyond the cache size
    /// (oldest first). Empty when refused.
    pub drop: Vec<String>,
}

/// Whether `e` still counts at `now`.
pub fn is_live(e: &Seen, now: i64, aging_secs: i64) -> bool {
    now - e.last_seen < aging_secs
}

/// The count at `now`: distinct live entries.
pub fn count(entries: &[Seen], now: i64, aging_secs: i64) -> u32 {
    entries.iter().filter(|e| is_live(e, now, aging_secs)).count() as u32
}

/// The cache size for a product configured with `threshold`, given the
/// size it had (`previous`, 0 for a new product): twice the largest
/// threshold ever configured; it never shrinks.
pub fn cache_size(previous: u32, threshold: u32) -> u32 {
    previous.max(threshold.saturating_mul(2))
}

/// When the next live entry ages out (the oldest one's `last_seen + aging`),
/// or `None` with no live entry.
pub fn next_aging(entries: &[Seen], now: i64, aging_secs: i64) -> Option<i64> {
    entries.iter().filter(|e| is_live(e, now, aging_secs)).map(|e| e.last_seen + aging_secs).min()
}

/// Decides an activation (or renewal) request from `cmid` at `now`, given
/// the product's entries: the verdict, the count after it, and which
/// entries to delete once `cmid`'s entry is set to `now`.
pub fn admit(rules: &Rules, entries: &[Seen], cmid: &str, now: i64) -> Admission {
    let mut live: Vec<&Seen> = Vec::with_capacity(entries.len() + 1);
    let mut drop = Vec::new();
    for e in entries {
        if is_live(e, now, rules.aging_secs) {
            live.push(e);
        } else {
            drop.push(e.cmid.clone());
        }
    }
    let known = live.iter().any(|e| e.cmid == cmid);
    if !known && rules.seats.is_some_and(|s| live.len() as u32 >= s) {
        return Admission {
            verdict: Verdict::SeatsFull,
            count: live.len() as u32,
            threshold: rules.threshold,
            new: true,
            drop: Vec::new(),
        };
    }
    // The others, oldest first; the requester is the newest.
    let mut others: Vec<&Seen> = live.into_iter().filter(|e| e.cmid != cmid).collect();
    others.sort_by(|a, b| a.last_seen.cmp(&b.last_seen).then_with(|| a.cmid.cmp(&b.cmid)));
    let keep = (rules.cache_size.max(1) - 1) as usize;
    let excess = others.len().saturating_sub(keep);
    drop.extend(others.iter().take(excess).map(|e| e.cmid.clone()));
    let count = (others.len() - excess + 1) as u32;
    let verdict = if count >= rules.threshold { Verdict::Activated } else { Verdict::Pending };
    Admission { verdict, count, threshold: rules.threshold, new: !known, drop }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const T0: i64 = 1_800_000_000;

    fn rules(threshold: u32) -> Rules {
        Rules { threshold, cache_size: cache_size(0, threshold), aging_secs: 30 * DAY, seats: None }
    }

    fn seen(cmid: &str, last_seen: i64) -> Seen {
        Seen { cmid: cmid.into(), last_seen }
    }

    /// Applies an admission to the entries, as the state does.
    fn apply(entries: &mut Vec<Seen>, a: &Admission, cmid: &str, now: i64) {
        entries.retain(|e| !a.drop.contains(&e.cmid) && e.cmid != cmid);
        entries.push(seen(cmid, now));
    }

    #[test]
    fn below_threshold_is_pending_and_reaching_it_activates() {
        let r = rules(3);
        let mut entries = Vec::new();
        for (i, (cmid, want)) in
            [("a", Verdict::Pending), ("b", Verdict::Pending), ("c", Verdict::Activated)].into_iter().enumerate()
        {
            let a = admit(&r, &entries, cmid, T0 + i as i64);
            assert_eq!((a.verdict, a.count, a.threshold, a.new), (want, i as u32 + 1, 3, true));
            apply(&mut entries, &a, cmid, T0 + i as i64);
        }
        // The first machine's retry is activated, and not counted twice.
        let a = admit(&r, &entries, "a", T0 + 10);
        assert_eq!((a.verdict, a.count, a.new), (Verdict::Activated, 3, false));
    }

    #[test]
    fn an_entry_ages_out_exactly_after_the_window() {
        let r = rules(2);
        let entries = vec![seen("a", T0)];
        assert_eq!(count(&entries, T0 + 30 * DAY - 1, r.aging_secs), 1);
        assert_eq!(count(&entries, T0 + 30 * DAY, r.aging_secs), 0);
        let a = admit(&r, &entries, "b", T0 + 30 * DAY - 1);
        assert_eq!((a.verdict, a.count), (Verdict::Activated, 2));
        let a = admit(&r, &entries, "b", T0 + 30 * DAY);
        assert_eq!((a.verdict, a.count, a.drop.clone()), (Verdict::Pending, 1, vec!["a".to_string()]));
        assert_eq!(next_aging(&entries, T0, r.aging_secs), Some(T0 + 30 * DAY));
        assert_eq!(next_aging(&entries, T0 + 30 * DAY, r.aging_secs), None);
    }

    #[test]
    fn a_renewal_refreshes_last_seen() {
        let r = rules(2);
        let mut entries = vec![seen("a", T0), seen("b", T0)];
        let a = admit(&r, &entries, "a", T0 + 20 * DAY);
        assert_eq!((a.count, a.new), (2, false));
        apply(&mut entries, &a, "a", T0 + 20 * DAY);
        // Thirty days after the first visit, b aged out, a (renewed) did not.
        assert_eq!(count(&entries, T0 + 30 * DAY, r.aging_secs), 1);
        assert_eq!(count(&entries, T0 + 50 * DAY - 1, r.aging_secs), 1);
        assert_eq!(count(&entries, T0 + 50 * DAY, r.aging_secs), 0);
    }

    #[test]
    fn the_cache_never_shrinks_when_the_threshold_is_lowered() {
        assert_eq!(cache_size(0, 25), 50);
        assert_eq!(cache_size(50, 5), 50);
        assert_eq!(cache_size(50, 30), 60);
        // Under the lowered threshold, 50 machines still count.
        let r = Rules { threshold: 5, cache_size: cache_size(50, 5), aging_secs: 30 * DAY, seats: None };
        let entries: Vec<Seen> = (0..49).map(|i| seen(&format!("m{i:02}"), T0 + i)).collect();
        let a = admit(&r, &entries, "new", T0 + 100);
        assert_eq!((a.count, a.drop.len()), (50, 0));
    }

    #[test]
    fn beyond_the_cache_the_oldest_entry_is_evicted_first() {
        let r = rules(2); // cache 4
        let entries = vec![seen("d", T0 + 3), seen("a", T0 + 1), seen("c", T0 + 1), seen("b", T0 + 2)];
        let a = admit(&r, &entries, "e", T0 + 10);
        assert_eq!((a.count, a.drop.clone()), (4, vec!["a".to_string()]));
        let mut more = entries.clone();
        more.push(seen("f", T0));
        let a = admit(&r, &more, "e", T0 + 10);
        assert_eq!((a.count, a.drop.clone()), (4, vec!["f".to_string(), "a".to_string()]));
        // A known machine beyond the cache keeps its place as the newest.
        let a = admit(&r, &entries, "a", T0 + 10);
        assert_eq!((a.count, a.drop.len(), a.new), (4, 0, false));
    }

    #[test]
    fn a_seat_cap_refuses_new_machines_but_not_known_ones() {
        let r = Rules { seats: Some(2), ..rules(1) };
        let entries = vec![seen("a", T0), seen("b", T0)];
        let a = admit(&r, &entries, "c", T0 + 1);
        assert_eq!((a.verdict, a.count, a.drop.len()), (Verdict::SeatsFull, 2, 0));
        assert_eq!(admit(&r, &entries, "a", T0 + 1).verdict, Verdict::Activated);
        // An aged-out seat is free again.
        assert_eq!(admit(&r, &entries, "c", T0 + 30 * DAY).verdict, Verdict::Activated);
    }
}
