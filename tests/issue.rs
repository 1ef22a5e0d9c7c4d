//! The one issuance path (`tka::issuer::issue::issue_one`): lifetimes in
//! seconds, typed refusals, and many workers on one ledger file, each with
//! its own connection. Time is fixed (`common::NOW`).

#![cfg(feature = "issuer")]

mod common;

use common::*;
use tka::issuer::bulk::{issue_batch, renew_batch, synthetic_request, BatchInput, BatchOptions, RenewOptions};
use tka::issuer::issue::{issue_one, IssueOptions, TokenLifetime, TokenSigner};
use tka::ledger::{Ledger, NewEntitlement, TokenFilter};
use tka::{Error, IssueRefusal};

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

fn new_ledger(path: &std::path::Path, machines: u32) -> Ledger {
    let mut l = Ledger::open(path).unwrap();
    let new = NewEntitlement { product: PRODUCT.into(), machines, name: Some("acme".into()), ..Default::default() };
    l.add_entitlement(&new, NOW).unwrap();
    l
}

fn lifetime(secs: u64) -> IssueOptions {
    IssueOptions { lifetime: TokenLifetime::Seconds(secs), ..Default::default() }
}

#[test]
fn a_two_hour_token_lasts_7200_seconds_with_or_without_a_ledger() {
    let req = synthetic_request(PRODUCT, 1, NOW);
    let t = issue_one(None, None, &req, &lifetime(7200), &signer(), NOW).unwrap();
    assert_eq!(t.claims.exp.unwrap() - t.claims.nbf, 7200);
    // Renewal at two thirds of the life by default.
    assert_eq!(t.claims.tka.renew_after, Some(NOW + 4800));

    let d = tempfile::tempdir().unwrap();
    let mut l = new_ledger(&d.path().join("ledger.sqlite"), 5);
    let t = issue_one(Some(&mut l), Some("acme"), &req, &lifetime(7200), &signer(), NOW).unwrap();
    assert_eq!(t.claims.exp.unwrap() - t.claims.nbf, 7200);
    let rec = l.token(&t.claims.jti).unwrap();
    assert_eq!((rec.not_before, rec.expires), (NOW, Some(NOW + 7200)));
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
}

#[test]
fn lifetimes_below_a_minute_and_renewals_past_expiry_are_refused() {
    let req = synthetic_request(PRODUCT, 1, NOW);
    let d = tempfile::tempdir().unwrap();
    let mut l = new_ledger(&d.path().join("ledger.sqlite"), 5);
    for ledger in [None, Some(&mut l)] {
        let ent = ledger.as_ref().map(|_| "acme");
        match issue_one(ledger, ent, &req, &lifetime(59), &signer(), NOW) {
            Err(Error::InvalidLifetime { what: "token lifetime", detail }) => {
                assert_eq!(detail, "59 s is shorter than the minimum of 60 s")
            }
            other => panic!("expected InvalidLifetime, got {other:?}"),
        }
    }
    let late = IssueOptions { renew_after_secs: Some(7200), ..lifetime(7200) };
    match issue_one(Some(&mut l), Some("acme"), &req, &late, &signer(), NOW) {
        Err(Error::InvalidLifetime { what: "renewal time", detail }) => {
            assert_eq!(detail, "7200 s after issuance is not within the token's lifetime")
        }
        other => panic!("expected InvalidLifetime, got {other:?}"),
    }
    let ok = IssueOptions { renew_after_secs: Some(7199), ..lifetime(7200) };
    let t = issue_one(None, None, &req, &ok, &signer(), NOW).unwrap();
    assert_eq!(t.claims.tka.renew_after, Some(NOW + 7199));
    // Nothing refused was counted or recorded.
    assert_eq!((l.entitlement("acme").unwrap().used, l.token_count().unwrap()), (0, 0));
}

#[test]
fn an_entitlement_needs_a_ledger() {
    let req = synthetic_request(PRODUCT, 1, NOW);
    assert!(matches!(
        issue_one(None, Some("acme"), &req, &IssueOptions::default(), &signer(), NOW),
        Err(Error::Usage(m)) if m == "an entitlement is counted in a ledger, and no ledger was given"
    ));
}

/// A renewal keeps the old token's lifetime to the second.
#[test]
fn renewal_keeps_the_lifetime_in_seconds() {
    let d = tempfile::tempdir().unwrap();
    let mut l = new_ledger(&d.path().join("ledger.sqlite"), 5);
    let inputs = vec![BatchInput { source: "a".into(), request: Ok(synthetic_request(PRODUCT, 1, NOW)) }];
    let opts = BatchOptions { entitlement: Some("acme".into()), issue: lifetime(5400), ..Default::default() };
    assert_eq!(issue_batch(&mut l, inputs, &opts, &signer(), NOW, None, &|_| {}).unwrap().ok, 1);
    let later = NOW + 4000;
    let renew = RenewOptions {
        within: 3600,
        entitlement: None,
        product: None,
        lifetime: None,
        alg: tka::keys::SignatureAlgorithm::Ps256,
        chunk: 16,
    };
    let r = renew_batch(&mut l, &renew, &signer(), later, None, &|_| {}).unwrap();
    assert_eq!(r.ok, 1, "{:?}", r.items[0].reason);
    let t = r.items[0].issued.as_ref().unwrap();
    let (_, claims) = tka::token::decode_unverified(&t.text).unwrap();
    assert_eq!((claims.iat, claims.exp), (later, Some(later + 5400)));
}

/// Workers of a service each open their own `Ledger` on one file and call
/// the single path at once: exactly the entitlement's count is issued, the
/// rest are refused with the typed "entitlement full".
#[test]
fn concurrent_workers_with_their_own_connection_issue_exactly_the_count() {
    const WORKERS: u64 = 6;
    const EACH: u64 = 4;
    const SEATS: u32 = 9;
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    drop(new_ledger(&path, SEATS));
    let signer = signer();
    let results: Vec<tka::Result<tka::issuer::issue::IssuedToken>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (path, signer) = (&path, &signer);
                s.spawn(move || {
                    let mut l = Ledger::open(path).unwrap();
                    (0..EACH)
                        .map(|i| {
                            let req = synthetic_request(PRODUCT, w * EACH + i, NOW);
                            issue_one(Some(&mut l), Some("acme"), &req, &IssueOptions::default(), signer, NOW)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let issued = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(issued, SEATS as usize);
    for r in results.iter().filter(|r| r.is_err()) {
        match r {
            Err(Error::Issue(IssueRefusal::EntitlementFull { entitlement, machines: SEATS, used: SEATS })) => {
                assert_eq!(entitlement, "entitlement 1 (\"acme\")")
            }
            other => panic!("expected the entitlement to be full, got {other:?}"),
        }
    }
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, SEATS);
    assert_eq!(l.tokens(&TokenFilter::default()).unwrap().len(), SEATS as usize);
}
