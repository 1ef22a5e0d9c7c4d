//! An outside review of the PostgreSQL batch path: a chunk's decisions on
//! PostgreSQL answer from its machines' tokens and seats read in two
//! statements (`Decider::prefetch`; SQLite since s8-bulk too, by its own SQL). Each
//! scenario here runs on both backends and must give the same verdicts
//! (the exact refusals, with serials and CMIDs named by their role in the
//! scenario), and every refusal of a batch must be the refusal `issue_one`
//! gives for the same request on the ledger the batch left. Then two
//! batches at once, and a release from another connection between chunks,
//! on one PostgreSQL ledger: the count is never exceeded, no request gets
//! two tokens, and every live token of an entitlement holds a seat.
#![cfg(feature = "issuer")]

mod common;
#[path = "common/pg.rs"]
mod pg;
mod tools;

use common::*;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tka::issuer::bulk::{
    issue_batch, renew_batch, synthetic_request, BatchInput, BatchOptions, BatchReport, ItemStatus, RenewOptions,
};
use tka::issuer::issue::{IssueOptions, TokenLifetime, TokenSigner};
use tka::ledger::{Ledger, NewEntitlement, TokenFilter};
use tka::request::ActivationRequest;
use tka::{Error, IssueRefusal};

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

/// Serials and CMIDs by their role in a scenario (the same on both backends).
#[derive(Default)]
struct Roles(Vec<(String, String)>);

impl Roles {
    fn add(&mut self, value: &str, role: &str) {
        self.0.push((value.to_string(), role.to_string()));
    }

    /// `text` with every known serial and CMID replaced by its role.
    fn map(&self, text: &str) -> String {
        self.0.iter().fold(text.to_string(), |t, (v, r)| t.replace(v.as_str(), r))
    }
}

/// One scenario's ledger: the backend's, with its roles and signer.
struct Case {
    l: Ledger,
    roles: Roles,
    s: TokenSigner,
    /// The clock: each batch runs at `t` and moves it on 100 s; `one` issues at `t`.
    t: i64,
}

impl Case {
    fn ent(&mut self, name: &str, machines: u32) {
        let new = NewEntitlement { product: PRODUCT.into(), machines, name: Some(name.into()), ..Default::default() };
        let e = self.l.add_entitlement(&new, NOW).unwrap();
        // Refusals are compared in their Debug form, where the label is escaped.
        let label = format!("{:?}", e.label());
        self.roles.add(&label[1..label.len() - 1], name);
    }

    /// A request of synthetic machine `n` (its CMID named `M<n>`).
    fn req(&mut self, n: u64, at: i64) -> ActivationRequest {
        let r = synthetic_request(PRODUCT, n, at);
        self.roles.add(&r.cmid, &format!("M{n}"));
        r
    }

    /// Synthetic machine `n` with a network card it did not have: the same
    /// CMID (machine id and DMI UUID), other hardware.
    fn moved(&mut self, n: u64, at: i64) -> ActivationRequest {
        let raw = [
            ("mid".to_string(), format!("{:032x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1)),
            ("dmi".to_string(), format!("00000000-0000-4000-8000-{n:012x}")),
            ("mac".to_string(), format!("00:1b:21:aa:bb:{:02x}", n & 0xff)),
        ];
        let id = tka::machine::MachineIdentity::from_raw(PRODUCT, &raw);
        let r = ActivationRequest::new(&id, at, None);
        assert_eq!(r.cmid, synthetic_request(PRODUCT, n, at).cmid);
        r
    }

    /// `issue_one` (through [`Ledger::issue`]) now: the serial, named `role`.
    fn one(&mut self, req: &ActivationRequest, ent: Option<&str>, role: &str) -> String {
        let t = self.l.issue(req, ent, &IssueOptions::default(), &self.s, self.t).unwrap();
        self.roles.add(&t.serial, role);
        t.serial
    }

    fn revoke(&mut self, serial: &str) {
        self.l.revoke(serial, "stolen", NOW).unwrap();
    }

    /// A batch of `reqs` (item `i` named `<step>.<i>`) against `ent` with
    /// `chunk` items per transaction: one verdict per item. Every new token
    /// is named `<step>.<i>`; every refusal is checked against `issue_one`.
    fn batch_with(
        &mut self,
        step: &str,
        reqs: &[ActivationRequest],
        ent: Option<&str>,
        chunk: usize,
        issue: IssueOptions,
    ) -> Vec<String> {
        let inputs: Vec<BatchInput> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| BatchInput { source: format!("{step}.{i}"), request: Ok(r.clone()) })
            .collect();
        let o = BatchOptions { entitlement: ent.map(str::to_string), chunk, issue: issue.clone(), reissue: false };
        let now = self.t;
        self.t += 100;
        let r = issue_batch(&mut self.l, inputs, &o, &self.s, now, None, &|_| {}).unwrap();
        for it in r.items.iter().filter(|i| i.status == ItemStatus::Ok && !i.existing) {
            self.roles.add(it.serial.as_ref().unwrap(), &it.source);
        }
        // A refusal the ledger decides is issue_one's for the same request
        // on the ledger the batch left (the batch's own refusals of
        // duplicates and malformed requests are not issue_one's business).
        for (it, req) in r.items.iter().zip(reqs) {
            if let Some(refusal) = it.reason.as_ref().and_then(|x| x.refusal()).filter(|r| decided_by_ledger(r)) {
                match self.l.issue(req, ent, &issue, &self.s, now) {
                    Err(Error::Issue(one)) => assert_eq!(&one, refusal, "issue_one vs the batch, {}", it.source),
                    other => panic!("{}: the batch refused {refusal:?}, issue_one gave {other:?}", it.source),
                }
            }
        }
        self.verdicts(&r)
    }

    fn batch(&mut self, step: &str, reqs: &[ActivationRequest], ent: Option<&str>) -> Vec<String> {
        self.batch_with(step, reqs, ent, 3, IssueOptions::default())
    }

    fn verdicts(&self, r: &BatchReport) -> Vec<String> {
        r.items
            .iter()
            .map(|i| match i.status {
                ItemStatus::Ok if i.existing => {
                    format!("existing {} {:?}", self.roles.map(i.serial.as_ref().unwrap()), i.seat)
                }
                ItemStatus::Ok => format!("new {:?}", i.seat),
                ItemStatus::Refused => {
                    self.roles.map(&format!("{:?}", i.reason.as_ref().and_then(|x| x.refusal()).unwrap()))
                }
                ItemStatus::Error => format!("error {}", i.reason_text().unwrap_or_default()),
            })
            .collect()
    }

    fn used(&self, ent: &str) -> u32 {
        self.l.entitlement(ent).unwrap().used
    }
}

/// Runs `scenario` on a new SQLite ledger and a new PostgreSQL database
/// `name`, each time expecting `want`.
fn on_both(name: &str, want: &[&str], scenario: impl Fn(&mut Case) -> Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    let mut c = Case {
        l: Ledger::open(&d.path().join("ledger.sqlite")).unwrap(),
        roles: Roles::default(),
        s: signer(),
        t: NOW + 100,
    };
    assert_eq!(scenario(&mut c), want, "SQLite");
    let Some(url) = pg::database(name) else { return };
    let mut c = Case { l: Ledger::open_url(&url).unwrap(), roles: Roles::default(), s: signer(), t: NOW + 100 };
    assert_eq!(scenario(&mut c), want, "PostgreSQL");
}

/// The refusals a decision reads the ledger for.
fn decided_by_ledger(r: &IssueRefusal) -> bool {
    matches!(
        r,
        IssueRefusal::MachineRevoked { .. }
            | IssueRefusal::SeatHardwareChanged { .. }
            | IssueRefusal::SeatHeldByAnotherMachine { .. }
            | IssueRefusal::EntitlementFull { .. }
    )
}

/// The serial of the role `role`.
fn serial(c: &Case, role: &str) -> String {
    c.roles.0.iter().find(|(_, r)| r == role).unwrap_or_else(|| panic!("no {role}")).0.clone()
}

/// The revoked-machine rule: refused when every token of the machine in
/// the entitlement is revoked, naming the newest (at the same second, the
/// smallest serial); a machine with one live token left, a machine revoked
/// in another entitlement, and `allow_revoked_machine` are issued.
#[test]
fn revoked_machine_rule_is_the_same_on_both_backends() {
    let want = [
        "MachineRevoked { cmid: \"M0\", entitlement: \"acme\", serial: \"tie-first\" }",
        "new Some(Counted)",
        "MachineRevoked { cmid: \"M2\", entitlement: \"acme\", serial: \"b1.2\" }",
        "MachineRevoked { cmid: \"M3\", entitlement: \"acme\", serial: \"M3b\" }",
        "new Some(New)",
        // In "beta" machine 2 is a new machine; allowed revoked, it is counted.
        "new Some(New)",
        "new Some(Counted)",
    ];
    on_both("revoked", &want, |c| {
        c.ent("acme", 10);
        c.ent("beta", 10);
        let first: Vec<_> = (0..4).map(|n| c.req(n, NOW)).collect();
        assert!(c.batch("b1", &first, Some("acme")).iter().all(|v| v == "new Some(New)"));
        // Machine 0: two more tokens at the same second, all three revoked.
        let (a, b) = (c.req(0, NOW + 1), c.req(0, NOW + 2));
        let x = c.one(&a, Some("acme"), "x");
        let y = c.one(&b, Some("acme"), "y");
        c.roles.0.retain(|(v, _)| v != &x && v != &y);
        c.roles.add(x.as_str().min(&y), "tie-first");
        c.roles.add(x.as_str().max(&y), "tie-second");
        for s in [serial(c, "b1.0"), x, y] {
            c.revoke(&s);
        }
        // Machine 1: the first token revoked, a later one live.
        let later = c.req(1, NOW + 1);
        c.one(&later, Some("acme"), "M1b");
        c.revoke(&serial(c, "b1.1"));
        // Machine 2: its only token revoked.
        c.revoke(&serial(c, "b1.2"));
        // Machine 3: two tokens, both revoked.
        let again = c.req(3, NOW + 1);
        let s3b = c.one(&again, Some("acme"), "M3b");
        c.revoke(&serial(c, "b1.3"));
        c.revoke(&s3b);
        let second: Vec<_> = (0..5).map(|n| c.req(n, NOW + 50)).collect();
        let mut v = c.batch("b2", &second, Some("acme"));
        assert_eq!(c.used("acme"), 5);
        let m2 = c.req(2, NOW + 60);
        v.extend(c.batch("b3", &[m2], Some("beta")));
        let allow = IssueOptions { allow_revoked_machine: true, ..Default::default() };
        let m2 = c.req(2, NOW + 70);
        v.extend(c.batch_with("b4", &[m2], Some("acme"), 3, allow));
        assert_eq!(c.used("acme"), 5, "an allowed revoked machine takes no seat");
        v
    });
}

/// The seat rule names the seat's oldest token; of tokens issued at the
/// same second, the smallest serial: on SQLite per query, on PostgreSQL
/// from the chunk's rows, and through `issue_one`, the same token.
#[test]
fn seat_rule_names_the_oldest_token_even_at_the_same_second() {
    let want = [
        "SeatHardwareChanged { cmid: \"M2\", entitlement: \"acme\", serial: \"oldest\", changed: [\"mac\"] }",
        "SeatHardwareChanged { cmid: \"M2\", entitlement: \"acme\", serial: \"oldest\", changed: [\"mac\"] }",
    ];
    on_both("seat_tie", &want, |c| {
        c.ent("acme", 10);
        // Three tokens of machine 2's seat, two of them issued at the same
        // second; whichever is recorded first, the smaller serial is named.
        let reqs: Vec<_> = (0..3).map(|i| c.req(2, NOW + i)).collect();
        let x = c.one(&reqs[0], Some("acme"), "x");
        let y = c.one(&reqs[1], Some("acme"), "y");
        c.t += 1;
        c.one(&reqs[2], Some("acme"), "newer");
        c.roles.0.retain(|(v, _)| v != &x && v != &y);
        c.roles.add(x.as_str().min(&y), "oldest");
        c.roles.add(x.as_str().max(&y), "other");
        let moved = c.moved(2, NOW + 50);
        let mut v = c.batch_with("b1", std::slice::from_ref(&moved), Some("acme"), 1, IssueOptions::default());
        v.extend(c.batch_with("b2", &[moved], Some("acme"), 512, IssueOptions::default()));
        assert_eq!(c.used("acme"), 1);
        v
    });
}

/// A released seat: the released tokens are never returned for their
/// request again, the machine is counted anew (with new hardware too), and
/// only the tokens of the seat as it is now bind it.
#[test]
fn a_released_seat_is_taken_again_and_only_its_new_tokens_bind_it() {
    let want = [
        "new Some(New)",
        "new Some(New)",
        "new Some(New)",
        "SeatHardwareChanged { cmid: \"M5\", entitlement: \"acme\", serial: \"b3.0\", changed: [\"mac\"] }",
        "existing b3.0 Some(Counted)",
        "EntitlementFull { entitlement: \"acme\", machines: 1, used: 1 }",
    ];
    on_both("released", &want, |c| {
        c.ent("acme", 1);
        let r5 = c.req(5, NOW);
        let mut v = c.batch("b1", std::slice::from_ref(&r5), Some("acme"));
        c.l.release(&serial(c, "b1.0"), "re-imaged", NOW + 1).unwrap();
        v.extend(c.batch("b2", std::slice::from_ref(&r5), Some("acme")));
        c.l.release(&serial(c, "b2.0"), "new network card", NOW + 2).unwrap();
        let moved = c.moved(5, NOW + 3);
        v.extend(c.batch("b3", std::slice::from_ref(&moved), Some("acme")));
        v.extend(c.batch("b4", &[r5], Some("acme")));
        v.extend(c.batch("b5", &[moved], Some("acme")));
        let other = c.req(6, NOW);
        v.extend(c.batch("b6", &[other], Some("acme")));
        assert_eq!(c.used("acme"), 1);
        assert_eq!(c.l.seats(1).unwrap().len(), 1);
        v
    });
}

/// One machine counted in two entitlements and issued without one: an
/// existing token is returned only for its own entitlement (or for none),
/// a revocation in one entitlement bars the machine there only, and a
/// release in one frees that seat only.
#[test]
fn one_machine_in_two_entitlements_and_without_one() {
    let want = [
        "new None",
        "new Some(New)",
        "new Some(New)",
        "existing a.0 Some(Counted)",
        "existing n.0 None",
        "existing b.0 Some(Counted)",
        "MachineRevoked { cmid: \"M7\", entitlement: \"A\", serial: \"a.0\" }",
        "MachineRevoked { cmid: \"M7\", entitlement: \"A\", serial: \"a.0\" }",
        "new Some(Counted)",
        "new None",
        "new Some(New)",
    ];
    on_both("two_ents", &want, |c| {
        c.ent("A", 10);
        c.ent("B", 10);
        let r = c.req(7, NOW);
        let one = std::slice::from_ref(&r);
        let mut v = c.batch("n", one, None);
        v.extend(c.batch("a", one, Some("A")));
        v.extend(c.batch("b", one, Some("B")));
        v.extend(c.batch("a2", one, Some("A")));
        v.extend(c.batch("n2", one, None));
        v.extend(c.batch("b2", one, Some("B")));
        c.revoke(&serial(c, "a.0"));
        let r2 = c.req(7, NOW + 1);
        v.extend(c.batch("a3", std::slice::from_ref(&r2), Some("A")));
        v.extend(c.batch("a4", one, Some("A")));
        v.extend(c.batch("b3", std::slice::from_ref(&r2), Some("B")));
        v.extend(c.batch("n3", &[r2], None));
        c.l.release_machine(&r.cmid, Some("B"), "moved", NOW + 2).unwrap();
        v.extend(c.batch("b4", one, Some("B")));
        assert_eq!((c.used("A"), c.used("B")), (1, 1));
        v
    });
}

/// Renewal (items with `replaces` and no digest) of a ledger with a live
/// token, a revoked one, a released one, one without entitlement, one
/// machine in two entitlements, and a machine whose newest token is
/// revoked (its older live one is renewed): the same renewals on both
/// backends, whatever the chunk; nothing consumed; a rerun renews nothing.
fn renewals(c: &mut Case, chunk: usize) -> Vec<String> {
    c.ent("A", 10);
    c.ent("B", 10);
    let short = IssueOptions { lifetime: TokenLifetime::Days(20), ..Default::default() };
    let reqs: Vec<_> = (0..6).map(|n| c.req(n, NOW)).collect();
    let in_a = [reqs[0].clone(), reqs[1].clone(), reqs[2].clone(), reqs[4].clone(), reqs[5].clone()];
    c.batch_with("i", &in_a, Some("A"), 3, short.clone());
    c.batch_with("j", &reqs[3..4], None, 3, short.clone());
    let m4 = c.req(4, NOW + 1);
    c.batch_with("k", &[m4], Some("B"), 3, short.clone());
    let m5 = c.req(5, NOW + 1);
    let t = c.l.issue(&m5, Some("A"), &short, &c.s, c.t).unwrap();
    c.roles.add(&t.serial, "m5-newest");
    c.revoke(&t.serial);
    c.revoke(&serial(c, "i.1"));
    c.l.release(&serial(c, "i.2"), "gone", NOW + 6).unwrap();
    let ro = RenewOptions {
        within: 10 * DAY,
        entitlement: None,
        product: None,
        lifetime: None,
        alg: tka::keys::SignatureAlgorithm::Ps256,
        chunk,
    };
    let at = NOW + 15 * DAY;
    let r = renew_batch(&mut c.l, &ro, &c.s, at, None, &|_| {}).unwrap();
    let mut v: Vec<String> =
        r.items.iter().map(|i| c.roles.map(&i.source)).zip(c.verdicts(&r)).map(|(s, v)| format!("{s}: {v}")).collect();
    v.sort();
    assert_eq!((c.used("A"), c.used("B")), (4, 1), "renewals consume nothing");
    for it in &r.items {
        let rec = c.l.token(it.serial.as_ref().unwrap()).unwrap();
        assert_eq!(rec.expires, Some(at + 20 * DAY));
        assert_eq!(format!("renewal of {}", rec.replaces.unwrap()), it.source);
    }
    assert_eq!(renew_batch(&mut c.l, &ro, &c.s, at, None, &|_| {}).unwrap().total, 0, "a rerun renews nothing");
    v
}

const RENEWED: [&str; 5] = [
    "renewal of i.0: new Some(Counted)",
    "renewal of i.3: new Some(Counted)",
    "renewal of i.4: new Some(Counted)",
    "renewal of j.0: new None",
    "renewal of k.0: new Some(Counted)",
];

#[test]
fn renewals_are_the_same_on_both_backends_one_per_chunk() {
    on_both("renew_1", &RENEWED, |c| renewals(c, 1));
}

#[test]
fn renewals_are_the_same_on_both_backends_in_one_chunk() {
    on_both("renew_all", &RENEWED, |c| renewals(c, 10_000));
}

/// One mixed batch (an existing request, a revoked machine, a machine with
/// new hardware, a known machine, new machines up to and past the count,
/// a duplicate, malformed CMIDs that JSON escapes) gives the same verdicts
/// with one item per transaction, three, or all in one.
fn mixed(c: &mut Case, chunk: usize) -> Vec<String> {
    c.ent("acme", 6);
    let first: Vec<_> = (0..4).map(|n| c.req(n, NOW)).collect();
    c.batch_with("b1", &first, Some("acme"), chunk, IssueOptions::default());
    c.revoke(&serial(c, "b1.1"));
    let mut odd = c.req(9, NOW);
    odd.cmid = "M\"\\\u{1}é".into();
    let mut items = vec![first[0].clone(), c.req(1, NOW + 1), c.moved(2, NOW + 1), c.req(3, NOW + 1)];
    items.extend((4..6).map(|n| c.req(n, NOW)));
    items.push(c.req(6, NOW));
    items.push(first[0].clone());
    items.push(odd);
    items.push(c.req(8, NOW));
    let v = c.batch_with("b2", &items, Some("acme"), chunk, IssueOptions::default());
    assert_eq!(c.used("acme"), 6);
    v
}

const MIXED: [&str; 10] = [
    "existing b1.0 Some(Counted)",
    "MachineRevoked { cmid: \"M1\", entitlement: \"acme\", serial: \"b1.1\" }",
    "SeatHardwareChanged { cmid: \"M2\", entitlement: \"acme\", serial: \"b1.2\", changed: [\"mac\"] }",
    "new Some(Counted)",
    "new Some(New)",
    "new Some(New)",
    "EntitlementFull { entitlement: \"acme\", machines: 6, used: 6 }",
    "DuplicateRequest { first: 1 }",
    "Invalid { detail: \"request: cmid \\\"M\\\\\\\"\\\\\\\\\\\\u{1}é\\\" holds control or format characters\" }",
    "EntitlementFull { entitlement: \"acme\", machines: 6, used: 6 }",
];

#[test]
fn a_mixed_batch_one_item_per_chunk() {
    on_both("mixed_1", &MIXED, |c| mixed(c, 1));
}

#[test]
fn a_mixed_batch_three_items_per_chunk() {
    on_both("mixed_3", &MIXED, |c| mixed(c, 3));
}

#[test]
fn a_mixed_batch_in_one_chunk() {
    on_both("mixed_all", &MIXED, |c| mixed(c, 10_000));
}

/// What must hold of entitlement `ent` of a ledger after any sequence:
/// its count is the number of its seats (at most its machines), every
/// seat has a live token, every token not released holds a seat, and no
/// request has two tokens.
fn consistent(l: &Ledger, ent: &str) {
    let e = l.entitlement(ent).unwrap();
    let seats: HashSet<String> = l.seats(e.id).unwrap().into_iter().map(|(m, _)| m).collect();
    assert_eq!(e.used as usize, seats.len());
    assert!(e.used <= e.machines, "{} of {}", e.used, e.machines);
    let f = TokenFilter { entitlement: Some(e.id), ..Default::default() };
    let tokens = l.tokens(&f).unwrap();
    let held: HashSet<String> = tokens.iter().filter(|t| t.released_at.is_none()).map(|t| t.cmid.clone()).collect();
    assert_eq!(held, seats, "the machines with tokens not released are the seats");
    let mut digests = HashSet::new();
    for t in &tokens {
        assert!(digests.insert(t.request_digest.clone().unwrap()), "two tokens for one request");
    }
}

/// Two batches at once, on two connections to one PostgreSQL ledger, of
/// overlapping requests past the count: the count holds, each request gets
/// one token, and both batches return that same token.
#[test]
fn two_batches_at_once_on_one_postgres_ledger_share_the_count_and_the_tokens() {
    let Some(url) = pg::database("two_at_once") else { return };
    let mut l = Ledger::open_url(&url).unwrap();
    let new = NewEntitlement { product: PRODUCT.into(), machines: 10, name: Some("acme".into()), ..Default::default() };
    l.add_entitlement(&new, NOW).unwrap();
    let reqs: Vec<ActivationRequest> = (0..30).map(|n| synthetic_request(PRODUCT, n, NOW)).collect();
    let s = signer();
    let run = |range: std::ops::Range<usize>| {
        let mut l = Ledger::open_url(&url).unwrap();
        let inputs =
            reqs[range].iter().map(|r| BatchInput { source: r.cmid.clone(), request: Ok(r.clone()) }).collect();
        let o = BatchOptions { entitlement: Some("acme".into()), chunk: 2, ..Default::default() };
        issue_batch(&mut l, inputs, &o, &s, NOW, None, &|_| {}).unwrap()
    };
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| run(0..20));
        let b = sc.spawn(|| run(10..30));
        (a.join().unwrap(), b.join().unwrap())
    });
    consistent(&l, "acme");
    assert_eq!(l.entitlement("acme").unwrap().used, 10);
    assert_eq!(a.new_seats + b.new_seats, 10);
    let mut by_machine: HashMap<String, String> = HashMap::new();
    for it in a.items.iter().chain(&b.items) {
        match it.status {
            ItemStatus::Ok => {
                let s = it.serial.clone().unwrap();
                assert_eq!(
                    by_machine.entry(it.source.clone()).or_insert_with(|| s.clone()),
                    &s,
                    "one token per request"
                );
            }
            ItemStatus::Refused => assert!(matches!(
                it.reason.as_ref().and_then(|r| r.refusal()),
                Some(IssueRefusal::EntitlementFull { machines: 10, used: 10, .. })
            )),
            ItemStatus::Error => panic!("{:?}", it.reason),
        }
    }
    assert_eq!(by_machine.len(), 10);
    assert_eq!(l.token_count().unwrap(), 10);
}

/// Releases from another connection while a batch runs (the progress
/// callback, on the batch's file-writing thread, releases the machine
/// counted first after each chunk): the ledger stays consistent, every
/// release is counted, and the batch takes at most the entitlement's seats
/// plus the seats freed. (How many freed seats it takes depends on when the
/// releases land against its chunks' decisions: the callback runs after a
/// chunk was handed to the writer, not in step with the next chunk, so a
/// fast run may have decided every chunk before the first release.)
#[test]
fn releases_from_another_connection_between_chunks_keep_the_ledger_consistent() {
    let Some(url) = pg::database("release_between") else { return };
    let mut l = Ledger::open_url(&url).unwrap();
    let new = NewEntitlement { product: PRODUCT.into(), machines: 4, name: Some("acme".into()), ..Default::default() };
    let id = l.add_entitlement(&new, NOW).unwrap().id;
    let other = Mutex::new(Ledger::open_url(&url).unwrap());
    let released = Mutex::new(0);
    let progress = |_| {
        let mut o = other.lock().unwrap();
        if let Some((cmid, _)) = o.seats(id).unwrap().first() {
            o.release_machine(cmid, Some("acme"), "moved", NOW).unwrap();
            *released.lock().unwrap() += 1;
        }
    };
    let inputs: Vec<BatchInput> = (0..16)
        .map(|n| BatchInput { source: n.to_string(), request: Ok(synthetic_request(PRODUCT, n, NOW)) })
        .collect();
    let o = BatchOptions { entitlement: Some("acme".into()), chunk: 2, ..Default::default() };
    let r = issue_batch(&mut l, inputs, &o, &signer(), NOW, None, &progress).unwrap();
    assert_eq!(r.errors, 0);
    consistent(&l, "acme");
    let released = *released.lock().unwrap();
    assert_eq!(l.releases().unwrap().len(), released);
    assert_eq!(r.new_seats as usize, l.entitlement("acme").unwrap().used as usize + released);
    assert!(r.ok as usize >= 4 && r.ok as usize <= 4 + released, "{} tokens for 4 seats and {released} released", r.ok);
}
