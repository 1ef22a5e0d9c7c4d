//! Clock rollback, driven through an injected clock (issue 6 item 5).
//!
//! The store keeps a clock high-water mark: the latest "now" any activation
//! (or `tka status`, or the library's `check_activated` and `status`) has
//! seen. Activation and status refuse with
//! `VerifyError::ClockRollback` while *now* is more than the tolerance
//! (default one day) behind it, and work again once the clock is right. A
//! token whose `iat` is after *now* (beyond 5 minutes of skew) is refused
//! as `IssuedInFuture`. The library never reads the clock: every test here
//! passes *now* explicitly; the last tests drive the real binary.

mod common;
mod sandbox;
mod tools;

use common::*;
use tka::activation::{
    self, activate, activate_with_tolerance, check_activated, check_activated_read_only, status, statuses, ClockMark,
    ProductStatus,
};
use tka::issuer::issue::{issue_token, IssueOptions, TokenLifetime, TokenSigner};
use tka::keys::SignatureAlgorithm;
use tka::machine::MachineIdentity;
use tka::request::ActivationRequest;
use tka::store::{Store, StoreState, DEFAULT_CLOCK_TOLERANCE_SECS};
use tka::{Error, VerifyError};

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

/// A token for the fixture machine issued at `iat` (valid 180 days).
fn token_at(iat: i64) -> String {
    token_for(iat, 180)
}

/// A token for the fixture machine issued at `iat`, valid `days`.
fn token_for(iat: i64, days: u32) -> String {
    let req = ActivationRequest::new(&machine(), iat, None);
    let opts =
        IssueOptions { alg: SignatureAlgorithm::Rs256, lifetime: TokenLifetime::Days(days), ..Default::default() };
    issue_token(&req, &opts, &signer(), iat).unwrap().text
}

/// A store in a temp dir that trusts the test root.
fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    store.lock().unwrap().add_root(&pki().root).unwrap();
    (tmp, store)
}

fn ident(_: &str) -> tka::Result<MachineIdentity> {
    Ok(machine())
}

fn rollback(r: tka::Result<impl std::fmt::Debug>) -> (i64, i64) {
    match r {
        Err(Error::Verify(VerifyError::ClockRollback { now, high_water })) => (now, high_water),
        other => panic!("expected ClockRollback, got {other:?}"),
    }
}

#[test]
fn activation_raises_the_high_water_mark() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    assert_eq!(store.state().unwrap().clock_high_water, NOW);
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW + 3600).unwrap();
    assert_eq!(store.state().unwrap().clock_high_water, NOW + 3600);
}

#[test]
fn clock_set_back_more_than_a_day_refuses_activation() {
    let (_t, store) = store();
    let token = token_at(NOW - 10 * DAY);
    activate(&store, &token, &ident, &[], NOW).unwrap();
    let before = store.tokens().unwrap();
    // Wound back 2 days: the token is still within its own validity, but
    // the store has seen later.
    assert_eq!(rollback(activate(&store, &token, &ident, &[], NOW - 2 * DAY)), (NOW - 2 * DAY, NOW));
    // Refused without side effects.
    assert_eq!(store.tokens().unwrap(), before);
    assert_eq!(store.state().unwrap().clock_high_water, NOW);
}

#[test]
fn default_tolerance_is_one_day_inclusive() {
    assert_eq!(DEFAULT_CLOCK_TOLERANCE_SECS, DAY);
    let (_t, store) = store();
    let token = token_at(NOW - 10 * DAY);
    activate(&store, &token, &ident, &[], NOW).unwrap();
    // Exactly one day behind: accepted (the rule is now < high_water - tolerance).
    activate(&store, &token, &ident, &[], NOW - DAY).unwrap();
    // One second more: refused.
    rollback(activate(&store, &token, &ident, &[], NOW - DAY - 1));
    // Accepting a time behind the mark never lowers it.
    assert_eq!(store.state().unwrap().clock_high_water, NOW);
}

#[test]
fn tolerance_is_configurable() {
    let (_t, store) = store();
    let token = token_at(NOW - 10 * DAY);
    activate(&store, &token, &ident, &[], NOW).unwrap();
    // One hour of tolerance: two hours back is a rollback.
    rollback(activate_with_tolerance(&store, &token, &ident, &[], NOW - 2 * 3600, 3600));
    // Half a day of tolerance: ten hours back is fine.
    activate_with_tolerance(&store, &token, &ident, &[], NOW - 10 * 3600, DAY / 2).unwrap();
    // Zero tolerance: one second back is a rollback.
    rollback(activate_with_tolerance(&store, &token, &ident, &[], NOW - 1, 0));
}

#[test]
fn tolerance_over_a_day_is_refused_before_anything_is_read() {
    let (_t, store) = store();
    let token = token_at(NOW - 10 * DAY);
    activate(&store, &token, &ident, &[], NOW).unwrap();
    let before = store.state().unwrap();
    // The review's attack: a clock wound back 3 days, a huge tolerance.
    match activate_with_tolerance(&store, &token, &ident, &[], NOW - 3 * DAY, 100_000 * 7 * DAY) {
        Err(Error::Usage(msg)) => assert_eq!(
            msg,
            format!(
                "clock tolerance of {} seconds is outside 0 to 86400 seconds (one day, the default)",
                100_000 * 7 * DAY
            )
        ),
        other => panic!("expected a usage error, got {other:?}"),
    }
    assert!(matches!(
        activate_with_tolerance(&store, &token, &ident, &[], NOW, DAY + 1),
        Err(Error::Usage(m)) if m.starts_with("clock tolerance of 86401 seconds is outside")
    ));
    assert_eq!(store.state().unwrap(), before);
    // Exactly one day is the largest accepted.
    activate_with_tolerance(&store, &token, &ident, &[], NOW - DAY, DAY).unwrap();
}

#[test]
fn activation_works_again_once_the_clock_is_right() {
    let (_t, store) = store();
    let token = token_at(NOW - 10 * DAY);
    activate(&store, &token, &ident, &[], NOW).unwrap();
    rollback(activate(&store, &token, &ident, &[], NOW - 5 * DAY));
    rollback(activate(&store, &token, &ident, &[], NOW - 2 * DAY));
    // Clock fixed (back within a day of the mark, or past it).
    activate(&store, &token, &ident, &[], NOW - DAY + 1).unwrap();
    activate(&store, &token, &ident, &[], NOW + 60).unwrap();
    assert_eq!(store.state().unwrap().clock_high_water, NOW + 60);
}

#[test]
fn rollback_to_revive_an_expired_token_is_refused() {
    // The attack the high-water mark exists for: a token expired, the admin
    // winds the clock back into its validity and re-activates.
    let (_t, store) = store();
    let old = token_for(NOW - 20 * DAY, 30); // expires NOW + 10 days
    activate(&store, &old, &ident, &[], NOW).unwrap();
    let later = NOW + 20 * DAY;
    activation::observe_clock(&store, later).unwrap(); // e.g. `tka status` ran
    match activate(&store, &old, &ident, &[], later) {
        Err(Error::Verify(e)) => {
            assert_eq!(e, VerifyError::TokenExpired { exp: NOW + 10 * DAY, grace: 0, now: later })
        }
        other => panic!("expected TokenExpired, got {other:?}"),
    }
    assert_eq!(rollback(activate(&store, &old, &ident, &[], NOW + 5 * DAY)), (NOW + 5 * DAY, later));
}

#[test]
fn status_reports_clock_rollback() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 10 * DAY), &ident, &[], NOW).unwrap();
    match status(&store, PRODUCT, &machine(), &[], NOW - 3 * DAY).unwrap() {
        ProductStatus::Invalid { reason: VerifyError::ClockRollback { now, high_water }, .. } => {
            assert_eq!((now, high_water), (NOW - 3 * DAY, NOW));
        }
        other => panic!("expected ClockRollback, got {other:?}"),
    }
    // And check_activated says no for the same reason.
    assert!(matches!(
        activation::check_activated(&store, PRODUCT, &machine(), &[], NOW - 3 * DAY),
        Err(Error::Verify(VerifyError::ClockRollback { .. }))
    ));
    // With the clock right again the product is active.
    assert!(status(&store, PRODUCT, &machine(), &[], NOW + 60).unwrap().is_active());
}

#[test]
fn observe_clock_never_lowers_the_mark() {
    let (_t, store) = store();
    activation::observe_clock(&store, NOW).unwrap();
    activation::observe_clock(&store, NOW - 10 * DAY).unwrap();
    assert_eq!(store.state().unwrap().clock_high_water, NOW);
    // Nor does saving an older state.
    let lock = store.lock().unwrap();
    match lock.save_state(&StoreState { clock_high_water: NOW - 1, ..Default::default() }) {
        Err(tka::store::StoreError::Regression { path, detail }) => {
            assert_eq!(path, store.dir().join("state.json"));
            assert_eq!(
                detail,
                "the clock high-water mark would go back from 2027-01-15T08:00:00Z to 2027-01-15T07:59:59Z"
            );
        }
        other => panic!("expected Regression, got {other:?}"),
    }
}

#[test]
fn token_issued_in_the_future_is_refused() {
    let (_t, store) = store();
    // The issuer's clock is 2 hours ahead of this machine's: iat > now + 5 min.
    let token = token_at(NOW + 2 * 3600);
    match activate(&store, &token, &ident, &[], NOW) {
        // nbf = iat, so the window check fires first; forge iat alone in
        // tests/verify.rs (iat_in_future_with_nbf_in_past_is_issued_in_future)
        // and the corpus (claim-iat-in-future, time-iat-beyond-skew).
        Err(Error::Verify(VerifyError::TokenNotYetValid { .. } | VerifyError::IssuedInFuture { .. })) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(store.tokens().unwrap().is_empty());
    // Within the 5-minute skew it activates.
    let (_t2, store2) = self::store();
    let token = token_at(NOW + 200);
    activate(&store2, &token, &ident, &[], NOW + 200).unwrap();
}

#[test]
fn refused_activation_does_not_raise_the_mark() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    // A token for another machine at a later time: refused, mark unchanged,
    // so a bad token cannot be used to push the mark (and lock the machine out).
    let other = |_: &str| Ok(other_machine());
    let r = activate(&store, &token_at(NOW - 60), &other, &[], NOW + 30 * DAY);
    assert!(matches!(r, Err(Error::Verify(VerifyError::WrongMachine { .. }))), "{r:?}");
    assert_eq!(store.state().unwrap().clock_high_water, NOW);
}

// ---------------------------------------------------------------------------
// The library keeps the clock guard (issue 19 item 1): an application that
// only ever calls `check_activated` (or `status`) still raises the mark.

#[test]
fn check_activated_raises_the_mark_and_refuses_a_later_rollback() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    // The application checks at every start; the last start was at T.
    let t = NOW + 10 * DAY;
    check_activated(&store, PRODUCT, &machine(), &[], t).unwrap();
    assert_eq!(store.state().unwrap().clock_high_water, t);
    // Clock wound back 3 days: still after the activation, but before T.
    assert_eq!(rollback(check_activated(&store, PRODUCT, &machine(), &[], t - 3 * DAY)), (t - 3 * DAY, t));
    assert_eq!(store.state().unwrap().clock_high_water, t);
}

/// A check that finds the mark already at its time writes nothing, not
/// even the sweep of a killed writer's temporary file; one that raises the
/// mark sweeps it first, as every writer does.
#[test]
fn check_activated_sweeps_temporary_files_only_when_it_raises_the_mark() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    let temp = store.dir().join("tokens").join(".app.0123456789abcdef.tmp");
    std::fs::write(&temp, b"left by a killed writer").unwrap();
    let before = sandbox::snapshot(store.dir());
    check_activated(&store, PRODUCT, &machine(), &[], NOW).unwrap();
    assert_eq!(sandbox::snapshot(store.dir()), before);
    check_activated(&store, PRODUCT, &machine(), &[], NOW + 1).unwrap();
    assert!(!temp.exists(), "the temporary file was not swept");
    assert_eq!(store.state().unwrap().clock_high_water, NOW + 1);
}

#[test]
fn status_raises_the_mark() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    let t = NOW + 10 * DAY;
    assert!(status(&store, PRODUCT, &machine(), &[], t).unwrap().is_active());
    assert_eq!(store.state().unwrap().clock_high_water, t);
    // Even for a product that is not installed: the mark is about the clock.
    let later = t + DAY;
    match status(&store, "other-product", &machine(), &[], later).unwrap() {
        ProductStatus::NotInstalled { product } => assert_eq!(product, "other-product"),
        other => panic!("expected NotInstalled, got {other:?}"),
    }
    assert_eq!(store.state().unwrap().clock_high_water, later);
}

#[test]
fn check_activated_read_only_refuses_a_time_before_the_mark_and_writes_nothing() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    let t = NOW + 10 * DAY;
    check_activated(&store, PRODUCT, &machine(), &[], t).unwrap();
    let before = sandbox::snapshot(store.dir());
    assert_eq!(rollback(check_activated_read_only(&store, PRODUCT, &machine(), &[], t - 3 * DAY)), (t - 3 * DAY, t));
    // A later time is answered, and the mark is not raised to it.
    check_activated_read_only(&store, PRODUCT, &machine(), &[], t + 5 * DAY).unwrap();
    assert_eq!(sandbox::snapshot(store.dir()), before);
    assert_eq!(store.state().unwrap().clock_high_water, t);
}

#[test]
fn statuses_at_an_explicit_time_has_no_tolerance_and_writes_nothing() {
    let (_t, store) = store();
    activate(&store, &token_at(NOW - 60), &ident, &[], NOW).unwrap();
    let before = sandbox::snapshot(store.dir());
    let at = |now| statuses(&store, None, &ident, &[], now, ClockMark::At).unwrap();
    // One second before the mark: a clock problem, not "activated".
    match &at(NOW - 1)[..] {
        [ProductStatus::Invalid { reason: VerifyError::ClockRollback { now, high_water }, .. }] => {
            assert_eq!((*now, *high_water), (NOW - 1, NOW))
        }
        other => panic!("expected one ClockRollback, got {other:?}"),
    }
    assert!(at(NOW + 30 * DAY)[0].is_active());
    assert_eq!(sandbox::snapshot(store.dir()), before);
}

// ---------------------------------------------------------------------------
// Through the binary: `tka activate --clock-tolerance`.

#[test]
fn cli_activate_refuses_rollback_and_honours_clock_tolerance() {
    let s = sandbox::Sandbox::new();
    s.issuer_and_trust();
    s.token(sandbox::PRODUCT, "t.jws");
    // The store has seen a time 2 days from now (the clock was then wound back).
    let store = Store::open(&s.store()).unwrap();
    let ahead = tka::clock::now() + 2 * DAY;
    store.lock().unwrap().replace_state(&StoreState { clock_high_water: ahead, ..Default::default() }).unwrap();

    let (code, _, err) = s.tka(&["activate", "t.jws"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: clock moved backwards"), "{err}");
    assert!(err.contains("hint: set the system clock to the right time"), "{err}");
    assert!(store.tokens().unwrap().is_empty());

    // The mark two hours ahead: the default day forgives it, 1h does not.
    let ahead = tka::clock::now() + 2 * 3600;
    store.lock().unwrap().replace_state(&StoreState { clock_high_water: ahead, ..Default::default() }).unwrap();
    let (code, _, err) = s.tka(&["activate", "t.jws", "--clock-tolerance", "1h"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("error: clock moved backwards"), "{err}");
    assert!(store.tokens().unwrap().is_empty());
    s.ok(&["activate", "t.jws"]);
    assert_eq!(store.tokens().unwrap().len(), 1);
    // The mark is not lowered by the accepted activation.
    assert_eq!(store.state().unwrap().clock_high_water, ahead);

    // A malformed tolerance is a usage error.
    let (code, _, err) = s.tka(&["activate", "t.jws", "--clock-tolerance", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid duration"), "{err}");
}

#[test]
fn cli_status_reports_rollback() {
    let s = sandbox::Sandbox::new();
    s.issuer_and_trust();
    s.token(sandbox::PRODUCT, "t.jws");
    s.ok(&["activate", "t.jws"]);
    let store = Store::open(&s.store()).unwrap();
    let ahead = tka::clock::now() + 3 * DAY;
    store.lock().unwrap().replace_state(&StoreState { clock_high_water: ahead, ..Default::default() }).unwrap();
    let (code, out, err) = s.tka(&["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("clock moved backwards"), "{out}");
}

#[test]
fn cli_clock_tolerance_over_a_day_is_a_usage_error() {
    // The review installed a token with `--clock-tolerance 100000w` on a
    // machine whose clock was wound back 3 days.
    let s = sandbox::Sandbox::new();
    s.issuer_and_trust();
    s.token(sandbox::PRODUCT, "t.jws");
    let store = Store::open(&s.store()).unwrap();
    let ahead = tka::clock::now() + 3 * DAY;
    store.lock().unwrap().replace_state(&StoreState { clock_high_water: ahead, ..Default::default() }).unwrap();
    let before = s.snapshot("store");
    for tolerance in ["100000w", "2d", "86401s"] {
        let r = s.tka(&["activate", "t.jws", "--clock-tolerance", tolerance]);
        sandbox::assert_fails(&r, 2, &format!("invalid value '{tolerance}' for '--clock-tolerance <DURATION>'"));
        assert!(r.2.contains("is outside 0 to 86400 seconds (one day, the default)"), "{}", r.2);
        assert_eq!(s.snapshot("store"), before);
    }
}

#[test]
fn cli_status_at_a_time_before_the_clock_mark_is_not_activated() {
    let s = sandbox::Sandbox::new();
    s.issuer_and_trust();
    s.token(sandbox::PRODUCT, "t.jws");
    s.ok(&["activate", "t.jws"]);
    // The store has seen a time an hour from now (a later `tka status`).
    let store = Store::open(&s.store()).unwrap();
    let mark = tka::clock::now() + 3600;
    store.lock().unwrap().replace_state(&StoreState { clock_high_water: mark, ..Default::default() }).unwrap();
    let before = s.snapshot("store");
    // Half an hour from now: inside the token's validity, before the mark.
    let at = tka::clock::rfc3339(mark - 1800);
    let (code, out, err) = s.tka(&["status", "--at", &at]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with(&format!("{}: NOT activated: clock moved backwards", sandbox::PRODUCT)), "{out}");
    let (code, out, _) = s.tka(&["status", "--at", &at, "--json"]);
    assert_eq!(code, 1);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((j[0]["activated"].as_bool(), j[0]["kind"].as_str()), (Some(false), Some("ClockRollback")));
    // At the mark itself it is activated; nothing was written.
    s.ok(&["status", "--at", &tka::clock::rfc3339(mark)]);
    assert_eq!(s.snapshot("store"), before);
}
