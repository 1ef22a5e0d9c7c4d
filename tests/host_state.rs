//! The activation host's state through the library ([`HostState`]), the
//! same suite on SQLite (`HOSTDIR/state.sqlite`) and PostgreSQL (a database
//! of its own per test in the binary's throwaway cluster; skipped, visibly,
//! without PostgreSQL unless TKA_REQUIRE_POSTGRES=1): counts and serials,
//! replays, a failed signature, the cache size, several handles (hosts) on
//! one state counting together, exactly, under concurrency. Then what only
//! PostgreSQL has: a newer schema refused, a status that creates nothing,
//! a state sharing its database with a ledger. Time is a parameter.

#![cfg(feature = "postgres")]

#[path = "common/pg.rs"]
mod pg;
mod tools;

use tka::issuer::host::pg_state::PgState;
use tka::issuer::host::policy::{Admission, Verdict};
use tka::issuer::host::state::{HostState, ProductConfig, Recorded, Signed, SqliteState, Visit, SCHEMA_VERSION};
use tka::Error;

const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// The same test body over an SQLite state (`NAME::sqlite`) and a
/// PostgreSQL one (`NAME::postgres`); `$open()` opens one more handle on
/// that state (another host's).
macro_rules! both {
    ($(#[$m:meta])* fn $name:ident($open:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let d = tempfile::tempdir().unwrap();
                let path = d.path().join("state.sqlite");
                let $open = || -> Box<dyn HostState> { Box::new(SqliteState::open(&path).unwrap()) };
                $body
            }

            #[test]
            fn postgres() {
                let Some(url) = pg::database(concat!("hs_", stringify!($name))) else { return };
                let $open = || -> Box<dyn HostState> { Box::new(PgState::open(&url).unwrap()) };
                $body
            }
        }
    };
}

fn configured(mut s: Box<dyn HostState>, threshold: u32) -> Box<dyn HostState> {
    s.configure(&[ProductConfig { product: "acme".into(), threshold, seats: None }], 30 * DAY).unwrap();
    s
}

fn visit(cmid: &str, nonce: &str) -> Visit {
    Visit { product: "acme".into(), cmid: cmid.into(), nonce: nonce.into() }
}

fn signed(_: &Admission) -> tka::Result<Signed> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Signed { serial: format!("s{n:06}"), text: "t".into(), expires: Some(T0 + 100) })
}

/// The verdict and count of a recorded visit.
fn verdict(r: Recorded) -> (Verdict, u32, bool) {
    match r {
        Recorded::Admitted(a, token) => (a.verdict, a.count, token.is_some()),
        other => panic!("not admitted: {other:?}"),
    }
}

both! {
/// Counts persist across handles; each activation's serial is recorded.
fn counts_persist_and_serials_are_recorded(open) {
    let mut s = configured(open(), 2);
    assert_eq!(verdict(s.activate(&visit("a", "n1"), 900, T0, &mut signed).unwrap()), (Verdict::Pending, 1, false));
    assert_eq!(verdict(s.activate(&visit("b", "n2"), 900, T0, &mut signed).unwrap()), (Verdict::Activated, 2, true));
    drop(s);
    let mut s = open();
    let st = s.status(T0).unwrap();
    assert_eq!((st[0].product.as_str(), st[0].count, st[0].threshold, st[0].cache_size), ("acme", 2, 2, 4));
    assert_eq!(s.issued_serials("acme").unwrap().len(), 1);
}
}

both! {
/// A nonce seen for another machine within the window is a replay; the
/// same machine retrying the same request is not.
fn a_nonce_seen_for_another_machine_is_a_replay(open) {
    let mut s = configured(open(), 2);
    s.activate(&visit("a", "n1"), 900, T0, &mut signed).unwrap();
    assert_eq!(s.activate(&visit("b", "n1"), 900, T0 + 899, &mut signed).unwrap(), Recorded::Replayed);
    assert!(matches!(s.activate(&visit("a", "n1"), 900, T0 + 1, &mut signed).unwrap(), Recorded::Admitted(..)));
    assert_eq!(s.status(T0 + 2).unwrap()[0].count, 1);
}
}

both! {
/// A signature that fails records nothing: the machine is not counted.
fn a_failed_signature_records_nothing(open) {
    let mut s = configured(open(), 2);
    s.activate(&visit("a", "n1"), 900, T0, &mut signed).unwrap();
    let e = s.activate(&visit("b", "n2"), 900, T0, &mut |_| Err(Error::Refused("no".into()))).unwrap_err();
    assert!(matches!(&e, Error::Refused(m) if m == "no"), "{e}");
    assert_eq!(s.status(T0).unwrap()[0].count, 1);
    assert!(s.issued_serials("acme").unwrap().is_empty());
}
}

both! {
/// A batch (group commit) is decided in order, each visit on what the ones
/// before it recorded (the second machine reaches the threshold, a nonce
/// reused by another machine in the same batch is a replay), and a visit
/// whose signature fails gets its error and records nothing while the
/// others of the batch are recorded.
fn a_batch_is_decided_in_order_and_a_failed_signature_spoils_only_its_visit(open) {
    let mut s = configured(open(), 2);
    let visits = [(visit("a", "n1"), T0), (visit("b", "n2"), T0), (visit("c", "n1"), T0), (visit("d", "n4"), T0 + 1)];
    let mut asked = Vec::new();
    let out = s.activate_batch(&visits, 900, &mut |i, a| {
        asked.push(i);
        match i {
            3 => Err(Error::Refused("no".into())),
            _ => signed(a),
        }
    });
    assert_eq!(asked, [1, 3]);
    let mut out = out.into_iter();
    assert_eq!(verdict(out.next().unwrap().unwrap()), (Verdict::Pending, 1, false));
    assert_eq!(verdict(out.next().unwrap().unwrap()), (Verdict::Activated, 2, true));
    assert_eq!(out.next().unwrap().unwrap(), Recorded::Replayed);
    let e = out.next().unwrap().unwrap_err();
    assert!(matches!(&e, Error::Refused(m) if m == "no"), "{e}");
    assert!(out.next().is_none());
    drop(s);
    let mut s = open();
    assert_eq!(s.status(T0 + 1).unwrap()[0].count, 2);
    assert_eq!(s.issued_serials("acme").unwrap().len(), 1);
}
}

both! {
/// Configured again with a lower threshold, the cache keeps its size.
fn the_cache_size_is_persisted_and_never_shrinks(open) {
    let mut s = configured(open(), 2);
    s.configure(&[ProductConfig { product: "acme".into(), threshold: 1, seats: None }], DAY).unwrap();
    let st = open().status(T0).unwrap();
    assert_eq!((st[0].threshold, st[0].cache_size), (1, 4));
}
}

both! {
/// A product nobody configured is unknown, for activations and returns.
fn an_unknown_product_is_refused(open) {
    let mut s = configured(open(), 2);
    let v = Visit { product: "other".into(), cmid: "a".into(), nonce: "n1".into() };
    assert_eq!(s.activate(&v, 900, T0, &mut signed).unwrap(), Recorded::UnknownProduct);
    assert_eq!(s.release(&v, 900, T0).unwrap(), tka::issuer::host::state::Released::UnknownProduct);
    assert_eq!(s.status(T0).unwrap().len(), 1);
}
}

both! {
/// Two hosts on one state count together: the threshold is reached by
/// machines seen by either, a renewal on host B of a machine first seen
/// on host A refreshes it (the count stays), a return on one host drops
/// it for both, and the 30-day aging counts the last visit on either.
fn two_handles_count_together(open) {
    let (mut a, mut b) = (configured(open(), 3), configured(open(), 3));
    assert_eq!(verdict(a.activate(&visit("m1", "n1"), 900, T0, &mut signed).unwrap()), (Verdict::Pending, 1, false));
    assert_eq!(verdict(b.activate(&visit("m2", "n2"), 900, T0, &mut signed).unwrap()), (Verdict::Pending, 2, false));
    assert_eq!(verdict(a.activate(&visit("m3", "n3"), 900, T0, &mut signed).unwrap()), (Verdict::Activated, 3, true));
    // m1 (first seen by a) renews on b 20 days later: refreshed, not added.
    let later = T0 + 20 * DAY;
    assert_eq!(verdict(b.activate(&visit("m1", "n4"), 900, later, &mut signed).unwrap()), (Verdict::Activated, 3, true));
    // 30 days after T0, m2 and m3 age out on both; m1's renewal on b keeps it.
    let aged = T0 + 30 * DAY;
    assert_eq!((a.status(aged).unwrap()[0].count, b.status(aged).unwrap()[0].count), (1, 1));
    assert_eq!(verdict(a.activate(&visit("m4", "n5"), 900, aged, &mut signed).unwrap()), (Verdict::Pending, 2, false));
    // A return of m4 on b drops it for a too.
    let r = b.release(&visit("m4", "n6"), 900, aged).unwrap();
    assert_eq!(r, tka::issuer::host::state::Released::Released { count: 1, threshold: 3 });
    assert_eq!(a.status(aged).unwrap()[0].count, 1);
    // Both hosts' tokens are in the one audit list.
    assert_eq!(a.issued_serials("acme").unwrap(), b.issued_serials("acme").unwrap());
    assert_eq!(a.issued_serials("acme").unwrap().len(), 2);
}
}

both! {
/// 4 hosts (handles) at once, 10 distinct machines each, threshold 25:
/// every visit gets its own count (1 to 40, none twice), the threshold is
/// crossed once (16 activations, one of them at count 25), and the state
/// counts 40 machines and 16 serials.
fn concurrent_hosts_count_exactly(open) {
    let open = &open;
    // The state is created first (as a host does when it starts): this
    // test is about counting, not about two first opens of a new state.
    drop(configured(open(), 25));
    let results: Vec<(Verdict, u32, bool)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    let mut s = configured(open(), 25);
                    (0..10)
                        .map(|i| {
                            let m = format!("m{t}-{i}");
                            verdict(s.activate(&visit(&m, &format!("n-{m}")), 900, T0, &mut signed).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let mut counts: Vec<u32> = results.iter().map(|r| r.1).collect();
    counts.sort();
    assert_eq!(counts, (1..=40).collect::<Vec<u32>>(), "each visit counted once, in some order");
    for (v, count, token) in &results {
        assert_eq!((*v == Verdict::Activated, *token), (*count >= 25, *count >= 25), "{results:?}");
    }
    let mut s = open();
    assert_eq!(s.status(T0).unwrap()[0].count, 40);
    let mut serials = s.issued_serials("acme").unwrap();
    serials.dedup();
    assert_eq!(serials.len(), 16);
}
}

// ----- PostgreSQL only ------------------------------------------------------

/// A PostgreSQL host state whose schema version is newer than this tka's
/// is refused with the SQLite state's error, naming the URL, and left as it
/// was.
#[test]
fn postgres_a_newer_host_state_is_refused_and_left_alone() {
    let name = "hs_newer";
    let Some(url) = pg::database(name) else { return };
    drop(PgState::open(&url).unwrap());
    pg::psql(name, &format!("UPDATE tka_host.schema_version SET version = {}", SCHEMA_VERSION + 1));
    for e in [PgState::open(&url).unwrap_err(), PgState::open_existing(&url).unwrap_err()] {
        match &e {
            Error::Format { what, detail } => {
                assert_eq!(what, &format!("host state {url}"));
                assert_eq!(
                    detail,
                    &format!(
                        "written by a newer tka (schema version {}); this tka knows version {SCHEMA_VERSION} and \
                         never downgrades a host state: use a newer tka",
                        SCHEMA_VERSION + 1
                    )
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pg::psql(name, "SELECT version FROM tka_host.schema_version"), (SCHEMA_VERSION + 1).to_string());
}

/// Reading the counters of a database no host has used is refused and
/// creates nothing.
#[test]
fn postgres_status_never_creates_the_state() {
    let name = "hs_status";
    let Some(url) = pg::database(name) else { return };
    let e = PgState::open_existing(&url).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("host state {url}: there is none in this database (no host has run on it yet); nothing was created")
    );
    assert_eq!(pg::psql(name, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tka_host'"), "0");
}

/// A `tka_host` schema holding tables tka did not create is not taken for
/// a host state.
#[test]
fn postgres_a_foreign_tka_host_schema_is_refused() {
    let name = "hs_foreign";
    let Some(url) = pg::database(name) else { return };
    pg::psql(name, "CREATE SCHEMA tka_host; CREATE TABLE tka_host.payroll (id BIGINT)");
    assert_eq!(
        PgState::open(&url).unwrap_err().to_string(),
        format!(
            "host state {url}: not a tka host state (its schema tka_host holds tables and no schema_version); \
             nothing was changed"
        )
    );
}

/// A host state and an issuer ledger share one database, in either order:
/// the ledger's tables are in the current schema, the host's in tka_host.
#[test]
fn postgres_a_host_state_and_a_ledger_share_one_database() {
    for (i, ledger_first) in [true, false].into_iter().enumerate() {
        let Some(url) = pg::database(&format!("hs_shared_{i}")) else { return };
        if ledger_first {
            drop(tka::ledger::Ledger::open_url(&url).unwrap());
        }
        let mut s = configured(Box::new(PgState::open(&url).unwrap()), 1);
        assert_eq!(verdict(s.activate(&visit("m1", "n1"), 900, T0, &mut signed).unwrap()).0, Verdict::Activated);
        let l = tka::ledger::Ledger::open_url(&url).unwrap();
        assert_eq!((l.schema_version().unwrap(), l.token_count().unwrap()), (tka::ledger::SCHEMA_VERSION, 0));
        assert_eq!(PgState::open(&url).unwrap().status(T0).unwrap()[0].count, 1);
    }
}

/// A server that is not there is one line naming the URL.
#[test]
fn postgres_an_unreachable_server_is_one_line() {
    let url = "postgres://postgres@127.0.0.1:1/tka";
    let e = PgState::open(url).unwrap_err();
    assert!(matches!(e, Error::Ledger { code: None, .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.starts_with(&format!("ledger {url}: the PostgreSQL server cannot be reached")), "{m}");
    assert!(!m.contains('\n'), "{m}");
}

/// The server ends the state's connection (`pg_terminate_backend`): the
/// request that meets it fails with one line naming the URL and records
/// nothing; the next one runs on a new connection.
#[test]
fn postgres_a_terminated_connection_is_replaced_on_the_next_request() {
    let name = "hs_reconnect";
    let Some(url) = pg::database(name) else { return };
    let mut s = configured(Box::new(PgState::open(&url).unwrap()), 3);
    assert_eq!(verdict(s.activate(&visit("m1", "n1"), 900, T0, &mut signed).unwrap()), (Verdict::Pending, 1, false));
    pg::psql(
        name,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}' \
             AND pid <> pg_backend_pid()"
        ),
    );
    let e = s.activate(&visit("m2", "n2"), 900, T0, &mut signed).unwrap_err();
    assert!(matches!(e, Error::Ledger { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("ledger {url}: the PostgreSQL server ")), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    assert_eq!(verdict(s.activate(&visit("m2", "n2"), 900, T0, &mut signed).unwrap()), (Verdict::Pending, 2, false));
    assert_eq!(s.status(T0).unwrap()[0].count, 2);
}

/// Runs `open` on four threads released at once; their results.
fn four_at_once(open: impl Fn() -> tka::Result<()> + Sync) -> Vec<tka::Result<()>> {
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    open()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

fn acme() -> [ProductConfig; 1] {
    [ProductConfig { product: "acme".into(), threshold: 25, seats: None }]
}

/// Four hosts started at once on a state file that does not exist yet:
/// every one opens it and writes its product settings (each reads the new
/// file's identity from one snapshot, then creates or finds the schema
/// under the write lock).
#[test]
fn first_opens_of_a_new_state_at_once_all_succeed() {
    for round in 0..12 {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("host-state.sqlite");
        for r in four_at_once(|| SqliteState::open(&path)?.configure(&acme(), 30 * DAY)) {
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
        assert_eq!(SqliteState::open(&path).map(drop).ok(), Some(()));
    }
}

/// The same on PostgreSQL: four hosts at once on a database without the
/// host state's schema (rounds in databases of their own).
#[test]
fn postgres_first_opens_of_a_new_state_at_once_all_succeed() {
    for round in 0..4 {
        let Some(url) = pg::database(&format!("hs_first_open_{round}")) else { return };
        for r in four_at_once(|| PgState::open(&url)?.configure(&acme(), 30 * DAY)) {
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
    }
}
