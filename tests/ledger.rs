//! The issuer ledger through the library: counting, re-issue without
//! consumption, refusal at the limit, release, revocation, entitlement
//! updates, and the ledger file's bad states (newer version, damaged,
//! foreign, locked). Time is fixed (`common::NOW`).

#![cfg(feature = "issuer")]

mod common;
#[path = "common/pg.rs"]
mod pg;
mod tools;

use common::*;
use std::time::Duration;
use tka::issuer::bulk::synthetic_request;
use tka::issuer::issue::{IssueOptions, TokenSigner};
use tka::ledger::{EntitlementUpdate, KeyState, Ledger, NewEntitlement, TokenFilter, SCHEMA_VERSION};
use tka::product_key::ProductKey;
use tka::request::ActivationRequest;
use tka::Error;
use tka::IssueRefusal;

fn signer() -> TokenSigner {
    let p = pki();
    TokenSigner::new(Box::new(test_key("signer")), vec![p.signer.clone(), p.int.clone()]).unwrap()
}

/// The same test body over an SQLite ledger (`NAME::sqlite`) and a
/// PostgreSQL one (`NAME::postgres`, in a database of its own in the
/// binary's throwaway cluster; skipped, visibly, without PostgreSQL).
macro_rules! both {
    ($(#[$m:meta])* fn $name:ident($l:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let d = tempfile::tempdir().unwrap();
                let $l = &mut Ledger::open(&d.path().join("ledger.sqlite")).unwrap();
                $body
            }

            #[test]
            fn postgres() {
                let Some(url) = pg::database(stringify!($name)) else { return };
                let $l = &mut Ledger::open_url(&url).unwrap();
                $body
            }
        }
    };
}

fn ent(l: &mut Ledger, machines: u32) -> tka::ledger::Entitlement {
    l.add_entitlement(
        &NewEntitlement {
            product: PRODUCT.into(),
            machines,
            features: vec!["reports".into(), "export".into()],
            expires: None,
            name: Some("acme".into()),
            allow_weak_binding: false,
        },
        NOW,
    )
    .unwrap()
}

fn req(n: u64) -> ActivationRequest {
    synthetic_request(PRODUCT, n, NOW)
}

fn refused(r: tka::Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::Refused(m)) => m,
        Err(Error::Issue(r)) => r.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

both! {
fn counting_reissue_and_refusal_at_the_limit(l) {
    let e = ent(l, 2);
    assert_eq!((e.id, e.used, e.free()), (1, 0, 2));
    let s = signer();
    let opts = IssueOptions::default();

    let a = l.issue(&req(1), Some("acme"), &opts, &s, NOW).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
    // A second request from the same machine (re-image): a new token, no new seat.
    let a2 = l.issue(&req(1), Some("1"), &opts, &s, NOW + 60).unwrap();
    assert_ne!(a.serial, a2.serial);
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
    l.issue(&req(2), Some("acme"), &opts, &s, NOW).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 2);

    let before = l.token_count().unwrap();
    let msg = refused(l.issue(&req(3), Some("acme"), &opts, &s, NOW));
    assert_eq!(
        msg,
        "entitlement 1 (\"acme\") is exhausted: all 2 machines are counted (2 of 2 used); \
         release a machine or raise the count"
    );
    assert_eq!(l.token_count().unwrap(), before, "a refusal records nothing");
    // Counted machines still get tokens when the entitlement is full.
    l.issue(&req(2), Some("acme"), &opts, &s, NOW + 120).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 2);

    // The recorded token is the issued text, with its claims.
    let rec = l.token(&a.serial).unwrap();
    assert_eq!(rec.token, a.text);
    assert_eq!(rec.entitlement, Some(1));
    assert_eq!(rec.cmid, req(1).cmid);
    assert_eq!(rec.components, req(1).components);
    assert_eq!(rec.expires, Some(NOW + 180 * DAY));
    assert_eq!(rec.signer, s.certificate().fingerprint);
    let (_, claims) = tka::token::decode_unverified(&a.text).unwrap();
    assert_eq!(claims.tka.entitlement.as_deref(), Some("1"));
    assert_eq!(claims.tka.features, vec!["reports", "export"], "features default to the entitlement's");
    assert_eq!(l.tokens(&TokenFilter { machine: Some(req(1).cmid), ..Default::default() }).unwrap().len(), 2);
}
}

both! {
fn release_frees_a_seat_for_another_machine(l) {
    ent(l, 1);
    let s = signer();
    let opts = IssueOptions::default();
    let a = l.issue(&req(1), Some("acme"), &opts, &s, NOW).unwrap();
    refused(l.issue(&req(2), Some("acme"), &opts, &s, NOW));

    let r = l.release(&a.serial, "decommissioned", NOW + 10).unwrap();
    assert_eq!((r.entitlement, r.cmid.as_str(), r.reason.as_str()), (1, req(1).cmid.as_str(), "decommissioned"));
    assert_eq!(l.entitlement("acme").unwrap().used, 0);
    assert_eq!(l.token(&a.serial).unwrap().released_at, Some(NOW + 10));
    assert_eq!(l.releases().unwrap(), vec![r]);
    let again = l.release(&a.serial, "again", NOW + 20).unwrap_err();
    assert!(
        matches!(&again, Error::NothingToRelease { cmid, entitlement: Some(e) }
            if *cmid == req(1).cmid && e == "entitlement 1 (\"acme\")"),
        "{again:?}"
    );
    assert_eq!(
        again.to_string(),
        format!(
            "machine {} holds no seat in entitlement 1 (\"acme\"): nothing to release (already released?)",
            req(1).cmid
        )
    );

    l.issue(&req(2), Some("acme"), &opts, &s, NOW + 30).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
    // Releasing by machine works too, and needs a reason.
    assert!(matches!(l.release_machine(&req(2).cmid, None, " ", NOW), Err(Error::ReasonRequired { what: "release" })));
    l.release_machine(&req(2).cmid, None, "transferred", NOW + 40).unwrap();
    assert_eq!(l.entitlement("acme").unwrap().used, 0);
}
}

both! {
/// Releasing a machine that holds no seat (released already, or never
/// counted) is the same typed "nothing to release", by serial or by machine.
fn releasing_a_machine_without_a_seat_is_nothing_to_release(l) {
    ent(l, 1);
    let a = l.issue(&req(1), Some("acme"), &IssueOptions::default(), &signer(), NOW).unwrap();
    l.release(&a.serial, "decommissioned", NOW + 10).unwrap();
    let e = l.release_machine(&req(1).cmid, None, "again", NOW + 20).unwrap_err();
    assert!(matches!(&e, Error::NothingToRelease { cmid, entitlement: None } if *cmid == req(1).cmid), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("machine {} holds no seat in any entitlement: nothing to release (already released?)", req(1).cmid)
    );
    let e = l.release_machine(&req(2).cmid, Some("acme"), "never counted", NOW + 20).unwrap_err();
    assert!(matches!(&e, Error::NothingToRelease { entitlement: Some(_), .. }), "{e:?}");
    assert_eq!(l.releases().unwrap().len(), 1, "nothing recorded");
}
}

both! {
fn revoke_and_list_revoked_tokens(l) {
    let s = signer();
    let a = l.issue(&req(1), None, &IssueOptions::default(), &s, NOW).unwrap();
    let b = l.issue(&req(2), None, &IssueOptions::default(), &s, NOW).unwrap();
    assert!(l.revoked_tokens().unwrap().is_empty());
    let r = l.revoke(&b.serial, "key compromised", NOW + 5).unwrap();
    l.revoke(&a.serial, "machine stolen", NOW + 9).unwrap();
    let all = l.revoked_tokens().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], r);
    assert_eq!(
        (all[0].serial.as_str(), all[0].reason.as_str(), all[0].revoked_at),
        (b.serial.as_str(), "key compromised", NOW + 5)
    );
    assert_eq!(all[1].serial, a.serial);
    assert_eq!(all[1].product, PRODUCT);
    assert_eq!(all[1].expires, Some(NOW + 180 * DAY));
    assert_eq!(
        refused(l.revoke(&b.serial, "again", NOW + 10)),
        format!("token {} is already revoked (at 2027-01-15T08:00:05Z: key compromised)", b.serial)
    );
    match l.revoke("00ff", "x", NOW) {
        Err(Error::Usage(m)) => assert!(m.starts_with("no token with serial 00ff in ledger "), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.token(&b.serial).unwrap().revoked_at, Some(NOW + 5));
}
}

both! {
fn entitlements_by_id_or_name_and_updates(l) {
    let e = ent(l, 2);
    assert_eq!(l.entitlement("1").unwrap(), e);
    assert_eq!(l.entitlement("acme").unwrap(), e);
    match l.entitlement("nope") {
        Err(e @ Error::UnknownEntitlement { .. }) => {
            assert!(matches!(&e, Error::UnknownEntitlement { selector } if selector == "nope"));
            assert_eq!(e.to_string(), "no entitlement \"nope\" (give its id or its name)")
        }
        other => panic!("{other:?}"),
    }
    let dup = NewEntitlement { product: "p".into(), machines: 1, name: Some("acme".into()), ..Default::default() };
    assert!(
        matches!(l.add_entitlement(&dup, NOW), Err(Error::Usage(m)) if m == "an entitlement named \"acme\" already exists")
    );
    let digits = NewEntitlement { product: "p".into(), machines: 1, name: Some("42".into()), ..Default::default() };
    assert!(matches!(l.add_entitlement(&digits, NOW), Err(Error::Usage(_))));

    let s = signer();
    l.issue(&req(1), Some("acme"), &IssueOptions::default(), &s, NOW).unwrap();
    l.issue(&req(2), Some("acme"), &IssueOptions::default(), &s, NOW).unwrap();
    let lower = EntitlementUpdate { machines: Some(1), ..Default::default() };
    assert_eq!(
        refused(l.update_entitlement("acme", &lower, NOW)),
        "entitlement 1 (\"acme\") has 2 machines counted: it cannot allow fewer (1); release seats first"
    );
    let upd = EntitlementUpdate {
        machines: Some(5),
        features: Some(vec!["reports".into()]),
        expires: Some(Some(NOW + 400 * DAY)),
        name: Some(Some("acme-2027".into())),
        allow_weak_binding: None,
    };
    let e = l.update_entitlement("acme", &upd, NOW + 1).unwrap();
    assert_eq!((e.machines, e.used, e.free(), e.name.as_deref()), (5, 2, 3, Some("acme-2027")));
    assert_eq!(e.updated_at, NOW + 1);
    assert_eq!(l.seats(1).unwrap().len(), 2);
}
}

both! {
fn policy_refusals_product_features_expiry_and_cmid(l) {
    ent(l, 10);
    let s = signer();
    let other = synthetic_request("other-product", 1, NOW);
    assert_eq!(
        refused(l.issue(&other, Some("acme"), &IssueOptions::default(), &s, NOW)),
        "wrong product: the request is for \"other-product\", entitlement 1 (\"acme\") is for \"example-pro\""
    );
    let opts = IssueOptions { features: vec!["admin".into()], ..Default::default() };
    assert_eq!(
        refused(l.issue(&req(1), Some("acme"), &opts, &s, NOW)),
        "feature \"admin\" is not in entitlement 1 (\"acme\") (features: reports,export)"
    );
    let upd = EntitlementUpdate { expires: Some(Some(NOW + 30 * DAY)), ..Default::default() };
    l.update_entitlement("acme", &upd, NOW).unwrap();
    assert_eq!(
        refused(l.issue(&req(1), Some("acme"), &IssueOptions::default(), &s, NOW)),
        "a token valid until 2027-07-14T08:00:00Z would outlive entitlement 1 (\"acme\") (expires 2027-02-14T08:00:00Z): \
         issue shorter tokens"
    );
    let short = IssueOptions { lifetime: tka::token::TokenLifetime::Days(30), ..Default::default() };
    l.issue(&req(1), Some("acme"), &short, &s, NOW).unwrap();
    assert_eq!(
        refused(l.issue(&req(2), Some("acme"), &short, &s, NOW + 31 * DAY)),
        "entitlement 1 (\"acme\") expired at 2027-02-14T08:00:00Z"
    );
    // A request whose CMID is not its components' is refused.
    let mut forged = req(3);
    forged.cmid = req(1).cmid;
    assert!(matches!(
        l.issue(&forged, Some("acme"), &short, &s, NOW),
        Err(Error::Binding(tka::machine::BindingError::CmidMismatch { claimed, computed }))
            if claimed == req(1).cmid && computed == req(3).cmid
    ));
    assert_eq!(l.entitlement("acme").unwrap().used, 1);
}
}

both! {
/// A product key finds its entitlement; the ledger holds its hash, never
/// the key.
fn a_product_key_finds_its_entitlement_and_only_its_hash_is_stored(l) {
    let new = NewEntitlement { product: PRODUCT.into(), machines: 2, name: Some("keyed".into()), ..Default::default() };
    let (e, key) = l.add_entitlement_with_key(&new, NOW).unwrap();
    assert_eq!(e.key, KeyState::Active);
    assert_eq!(l.entitlement_for_key(&key).unwrap().id, e.id);
    let typed = ProductKey::parse(&key.to_string().to_lowercase()).unwrap();
    assert_eq!(l.entitlement_for_key(&typed).unwrap().id, e.id);
    assert_eq!(ent(l, 1).key, KeyState::None, "no key unless asked for");
    if let tka::ledger::LedgerLocation::File(path) = l.location().clone() {
        let c = rusqlite::Connection::open(path).unwrap();
        let stored: String = c.query_row("SELECT key_hash FROM entitlements WHERE name = 'keyed'", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, key.hash());
        let dump: i64 = c
            .query_row("SELECT count(*) FROM entitlements WHERE instr(coalesce(key_hash, ''), ?1) > 0", [key.canonical()], |r| r.get(0))
            .unwrap();
        assert_eq!(dump, 0);
    }
}
}

both! {
/// Rotating a key: the old value is unknown at once, the new one works.
fn a_rotated_key_stops_working(l) {
    let new = NewEntitlement { product: PRODUCT.into(), machines: 2, name: Some("keyed".into()), ..Default::default() };
    let (_, old) = l.add_entitlement_with_key(&new, NOW).unwrap();
    let (e, fresh) = l.new_key("keyed", NOW + 1).unwrap();
    assert_ne!(old, fresh);
    assert!(matches!(l.entitlement_for_key(&old), Err(Error::Issue(IssueRefusal::UnknownKey))));
    assert_eq!(l.entitlement_for_key(&fresh).unwrap().id, e.id);
    assert_eq!(
        l.entitlement_for_key(&old).unwrap_err().to_string(),
        "unknown product key: no entitlement has it"
    );
}
}

both! {
/// A disabled key is refused naming its entitlement; rotating gives a
/// working one; an entitlement without a key has none to disable.
fn a_disabled_key_is_refused_until_rotated(l) {
    let new = NewEntitlement { product: PRODUCT.into(), machines: 2, name: Some("keyed".into()), ..Default::default() };
    let (e, key) = l.add_entitlement_with_key(&new, NOW).unwrap();
    assert_eq!(l.disable_key("keyed", NOW).unwrap().key, KeyState::Disabled);
    match l.entitlement_for_key(&key) {
        Err(Error::Issue(IssueRefusal::KeyDisabled { entitlement })) => assert_eq!(entitlement, e.label()),
        other => panic!("{other:?}"),
    }
    let (_, fresh) = l.new_key("keyed", NOW).unwrap();
    assert_eq!(l.entitlement_for_key(&fresh).unwrap().key, KeyState::Active);
    let plain = ent(l, 1);
    match l.disable_key("acme", NOW) {
        Err(Error::Usage(m)) => assert_eq!(m, format!("{} has no product key to disable", plain.label())),
        other => panic!("{other:?}"),
    }
}
}

#[test]
fn a_newer_ledger_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    drop(Ledger::open(&path).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let e = Ledger::open(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "ledger {}: written by a newer tka (schema version {}); this tka knows version {SCHEMA_VERSION} and never \
             downgrades a ledger: use a newer tka",
            path.display(),
            SCHEMA_VERSION + 1
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let c = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), SCHEMA_VERSION + 1);
}

#[test]
fn a_damaged_or_foreign_file_is_refused_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
    let e = Ledger::open(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "ledger {}: the file is damaged or not an SQLite database; nothing was changed: restore it from a backup",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x5au8; 8192]);

    // A real ledger whose pages were overwritten in the middle.
    let path2 = d.path().join("ledger2.sqlite");
    {
        let mut l = Ledger::open(&path2).unwrap();
        ent(&mut l, 3);
        let s = signer();
        for n in 0..3 {
            l.issue(&req(n), Some("acme"), &IssueOptions::default(), &s, NOW).unwrap();
        }
    }
    let mut bytes = std::fs::read(&path2).unwrap();
    for b in &mut bytes[4096..] {
        *b = 0xa5;
    }
    std::fs::write(&path2, &bytes).unwrap();
    let r = Ledger::open(&path2).and_then(|l| l.tokens(&TokenFilter::default()).map(|_| ()));
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("the file is damaged or not an SQLite database"), "{msg}");

    let foreign = d.path().join("other.sqlite");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    assert_eq!(
        Ledger::open(&foreign).unwrap_err().to_string(),
        format!(
            "ledger {}: not a tka ledger (it holds a table \"t\" tka did not create); nothing was changed",
            foreign.display()
        )
    );
}

/// A ledger at `path` with entitlement "acme" (1 machine), changed by `sql`
/// run with the sqlite3 shell's powers; returns its bytes after the change.
fn tampered(path: &std::path::Path, sql: &str) -> Vec<u8> {
    {
        let mut l = Ledger::open(path).unwrap();
        ent(&mut l, 1);
    }
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(c);
    std::fs::read(path).unwrap()
}

#[track_caller]
fn refused_schema(path: &std::path::Path, before: &[u8], why: &str) {
    assert_eq!(
        Ledger::open(path).unwrap_err().to_string(),
        format!("ledger {}: not a tka ledger ({why}); nothing was changed", path.display())
    );
    assert!(std::fs::read(path).unwrap() == before, "the file is left as it was");
}

/// Review 2, finding 8: two triggers added with sqlite3 made a 1-machine
/// entitlement issue three machines and report "0 used". The ledger is
/// refused before anything is issued.
#[test]
fn a_ledger_with_foreign_triggers_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    let before = tampered(
        &path,
        "CREATE TRIGGER free_seat AFTER INSERT ON seats BEGIN DELETE FROM seats WHERE cmid = NEW.cmid; END;
         CREATE TRIGGER zero_used AFTER UPDATE OF used ON entitlements BEGIN UPDATE entitlements SET used = 0; END;",
    );
    refused_schema(&path, &before, "it holds a trigger \"free_seat\" tka did not create");
}

/// Views, indexes and changed tables are refused too, at every version.
#[test]
fn a_ledger_with_any_foreign_schema_object_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("CREATE VIEW v AS SELECT * FROM tokens", "it holds a view \"v\" tka did not create"),
        ("CREATE INDEX seats_by_time ON seats(counted_at)", "it holds a index \"seats_by_time\" tka did not create"),
        ("ALTER TABLE entitlements ADD COLUMN note TEXT", "its table \"entitlements\" is not the one tka creates"),
        ("DROP INDEX tokens_expires", "its index \"tokens_expires\" is missing"),
    ];
    for (i, (sql, why)) in cases.into_iter().enumerate() {
        let path = d.path().join(format!("l{i}.sqlite"));
        let before = tampered(&path, sql);
        refused_schema(&path, &before, why);
    }
    // An older version with a foreign trigger: the unit test
    // `ledger::schema::tests::an_old_ledger_with_a_foreign_trigger_is_not_migrated`.
}

/// Review 2, finding 8: `PRAGMA user_version=-1` skipped the application-id
/// and foreign-table checks.
#[test]
fn a_negative_or_foreign_version_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    let before =
        tampered(&path, "PRAGMA user_version = -1; CREATE TRIGGER t AFTER INSERT ON seats BEGIN SELECT 1; END;");
    refused_schema(&path, &before, "its schema version -1 is not one tka writes");
    let path = d.path().join("other-app.sqlite");
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "application_id", 0x1234).unwrap();
    let before = std::fs::read(&path).unwrap();
    refused_schema(&path, &before, "its application id is not tka's");
}

#[test]
fn a_locked_ledger_times_out_with_a_clear_error_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    let mut l = Ledger::open(&path).unwrap();
    ent(&mut l, 3);
    l.set_busy_timeout(Duration::from_millis(200)).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let s = signer();
    let e = l.issue(&req(1), Some("acme"), &IssueOptions::default(), &s, NOW).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the ledger is locked by another process (busy timeout reached); nothing was changed: try again",
            path.display()
        )
    );
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(l.token_count().unwrap(), 0);
    assert_eq!(l.entitlement("acme").unwrap().used, 0);
    l.issue(&req(1), Some("acme"), &IssueOptions::default(), &s, NOW).unwrap();
}

#[test]
fn ledger_is_created_with_wal_and_the_current_version() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("ledger.sqlite");
    assert!(matches!(Ledger::open_existing(&path), Err(Error::NoLedger { path: p }) if p == path));
    let l = Ledger::open(&path).unwrap();
    assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
    let c = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)).unwrap(), "wal");
    assert_eq!(c.query_row("PRAGMA application_id", [], |r| r.get::<_, i64>(0)).unwrap(), 0x544b414c);
    // Opening again does not migrate twice.
    drop(l);
    assert_eq!(Ledger::open(&path).unwrap().schema_version().unwrap(), SCHEMA_VERSION);
}

// ----- PostgreSQL only ------------------------------------------------------

/// A PostgreSQL ledger whose schema version is newer than this tka's is
/// refused with the same error as an SQLite file, and left as it was.
#[test]
fn postgres_a_newer_ledger_is_refused_and_left_alone() {
    let name = "newer_schema";
    let Some(url) = pg::database(name) else { return };
    drop(Ledger::open_url(&url).unwrap());
    pg::psql(name, &format!("UPDATE schema_version SET version = {}", SCHEMA_VERSION + 1));
    let e = Ledger::open_url(&url).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "ledger {url}: written by a newer tka (schema version {}); this tka knows version {SCHEMA_VERSION} and \
             never downgrades a ledger: use a newer tka",
            SCHEMA_VERSION + 1
        )
    );
    assert_eq!(pg::psql(name, "SELECT version FROM schema_version"), (SCHEMA_VERSION + 1).to_string());
}

/// A database that holds other tables is not taken for a ledger.
#[test]
fn postgres_a_database_with_foreign_tables_is_refused() {
    let name = "foreign_tables";
    let Some(url) = pg::database(name) else { return };
    pg::psql(name, "CREATE TABLE payroll (id BIGINT)");
    assert_eq!(
        Ledger::open_url(&url).unwrap_err().to_string(),
        format!(
            "ledger {url}: not a tka ledger (the database holds tables and no schema_version); nothing was changed"
        )
    );
    assert_eq!(pg::psql(name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "1");
}

/// 8 threads, each with its own connection, issue 25 tokens each to
/// distinct machines against one entitlement of 50: exactly 50 are issued
/// and counted, the other 150 are refused as EntitlementFull, and no serial
/// repeats.
#[test]
fn postgres_concurrent_issuance_counts_exactly() {
    let Some(url) = pg::database("concurrency") else { return };
    let mut l = Ledger::open_url(&url).unwrap();
    ent(&mut l, 50);
    let s = std::sync::Arc::new(signer());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let (url, s) = (url.clone(), s.clone());
            std::thread::spawn(move || {
                let mut l = Ledger::open_url(&url).unwrap();
                let (mut ok, mut full) = (Vec::new(), 0);
                for i in 0..25 {
                    match l.issue(&req(1000 + t * 25 + i), Some("acme"), &IssueOptions::default(), &s, NOW) {
                        Ok(t) => ok.push(t.serial),
                        Err(Error::Issue(tka::issuer::issue::IssueRefusal::EntitlementFull {
                            machines: 50, ..
                        })) => full += 1,
                        Err(e) => panic!("unexpected: {e}"),
                    }
                }
                (ok, full)
            })
        })
        .collect();
    let (mut serials, mut full) = (Vec::new(), 0);
    for t in threads {
        let (ok, f) = t.join().unwrap();
        serials.extend(ok);
        full += f;
    }
    assert_eq!((serials.len(), full), (50, 150));
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 50, "no serial repeats");
    let e = l.entitlement("acme").unwrap();
    assert_eq!((e.used, l.seats(e.id).unwrap().len(), l.token_count().unwrap()), (50, 50, 50));
}

/// An SQLite ledger with entitlements, tokens, releases and revocations is
/// copied into PostgreSQL with every row, id and serial; a second copy into
/// the now non-empty target is refused; ids go on after the copied ones.
#[test]
fn postgres_migration_round_trip() {
    let Some(url) = pg::database("migration") else { return };
    let d = tempfile::tempdir().unwrap();
    let mut src = Ledger::open(&d.path().join("ledger.sqlite")).unwrap();
    ent(&mut src, 3);
    src.add_entitlement(&NewEntitlement { product: PRODUCT.into(), machines: 1, ..Default::default() }, NOW).unwrap();
    let (s, o) = (signer(), IssueOptions::default());
    let a = src.issue(&req(1), Some("acme"), &o, &s, NOW).unwrap();
    src.issue(&req(2), Some("acme"), &o, &s, NOW).unwrap();
    src.issue(&req(3), Some("2"), &o, &s, NOW).unwrap();
    let free = src.issue(&req(4), None, &o, &s, NOW).unwrap();
    src.release(&a.serial, "moved", NOW + 1).unwrap();
    src.revoke(&free.serial, "leaked", NOW + 2).unwrap();

    let dst = Ledger::open_url(&url).unwrap();
    let moved = src.copy_into(&dst).unwrap();
    assert_eq!(
        moved,
        [("entitlements", 2), ("seats", 2), ("jws_headers", 1), ("tokens", 4), ("releases", 1), ("revocations", 1)]
    );
    assert_eq!(dst.entitlements().unwrap(), src.entitlements().unwrap());
    assert_eq!(dst.tokens(&TokenFilter::default()).unwrap(), src.tokens(&TokenFilter::default()).unwrap());
    assert_eq!(dst.releases().unwrap(), src.releases().unwrap());
    assert_eq!(dst.revoked_tokens().unwrap(), src.revoked_tokens().unwrap());
    assert_eq!(dst.seats(1).unwrap(), src.seats(1).unwrap());
    assert_eq!(dst.token(&a.serial).unwrap(), src.token(&a.serial).unwrap());

    match src.copy_into(&dst) {
        Err(Error::Refused(m)) => {
            assert_eq!(m, format!("ledger {url}: the target is not empty (2 rows in entitlements); nothing was copied"))
        }
        other => panic!("{other:?}"),
    }
    let mut dst = dst;
    let e = dst.add_entitlement(&NewEntitlement { product: PRODUCT.into(), machines: 1, ..Default::default() }, NOW);
    assert_eq!(e.unwrap().id, 3, "ids go on after the copied ones");
}

/// A signer that stops the server (as if it went away) when asked for its
/// `at`-th signature, then signs as usual.
struct StopAt {
    key: tka::keys::SoftwareKey,
    n: std::sync::atomic::AtomicUsize,
    at: usize,
    cluster: std::sync::Arc<pg::Cluster>,
}

impl tka::keys::Signer for StopAt {
    fn public_key(&self) -> &rsa::PublicKey {
        tka::keys::Signer::public_key(&self.key)
    }
    fn sign(&self, alg: tka::keys::SignatureAlgorithm, message: &[u8]) -> tka::Result<Vec<u8>> {
        if self.n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == self.at {
            self.cluster.stop();
        }
        tka::keys::Signer::sign(&self.key, alg, message)
    }
}

/// The server goes away in the middle of a batch: the run stops with a
/// one-line ledger error, what committed stays, nothing is half-recorded;
/// once the server is back the same batch completes, returning the tokens
/// already issued and issuing the rest.
#[test]
fn postgres_server_stopped_mid_batch_then_the_batch_resumes() {
    use tka::issuer::bulk::{issue_batch, BatchInput, BatchOptions};
    let Some(cluster) = pg::Cluster::start() else { return };
    let cluster = std::sync::Arc::new(cluster);
    let url = cluster.database("resume");
    let mut l = Ledger::open_url(&url).unwrap();
    ent(&mut l, 100);
    let p = pki();
    let stopping = StopAt { key: test_key("signer"), n: 0.into(), at: 40, cluster: cluster.clone() };
    let s = TokenSigner::new(Box::new(stopping), vec![p.signer.clone(), p.int.clone()]).unwrap();
    // (Built once: a synthetic request's nonce is random.)
    let requests: Vec<BatchInput> =
        (0..60).map(|n| BatchInput { source: format!("req-{n}"), request: Ok(req(n)) }).collect();
    let batch = || requests.clone();
    let opts = BatchOptions { entitlement: Some("acme".into()), chunk: 5, ..Default::default() };
    let first = issue_batch(&mut l, batch(), &opts, &s, NOW, None, &|_| {}).unwrap();
    let why = first.aborted_reason.clone().expect("the run stopped");
    assert!(matches!(first.aborted, Some(Error::Ledger { code: None, .. })), "{:?}", first.aborted);
    assert!(
        why.starts_with(&format!("ledger {url}: the PostgreSQL server cannot be reached or closed the connection (")),
        "{why}"
    );
    assert!(why.ends_with("nothing was recorded: run the same command again once it is up"), "{why}");
    assert!(!why.contains('\n'));
    assert!(first.ok < 60 && first.ok.is_multiple_of(5), "whole chunks only: {}", first.ok);
    drop(l);

    cluster.resume();
    let mut l = Ledger::open_url(&url).unwrap();
    assert_eq!(l.token_count().unwrap(), first.ok as u64, "nothing half-recorded");
    let again = issue_batch(&mut l, batch(), &opts, &signer(), NOW, None, &|_| {}).unwrap();
    assert!(again.aborted.is_none(), "{:?}", again.aborted_reason);
    assert_eq!((again.ok, again.existing, again.new_seats), (60, first.ok, 60 - first.ok));
    assert_eq!((l.token_count().unwrap(), l.entitlement("acme").unwrap().used), (60, 60));
}

/// This build has no TLS for PostgreSQL: a URL asking for it
/// (`sslmode=require`) is refused when connecting, in one line naming the
/// ledger, rather than connecting in clear.
#[test]
fn postgres_sslmode_require_is_refused_in_one_line() {
    let Some(url) = pg::database("sslmode") else { return };
    let url = format!("{url}?sslmode=require");
    let e = Ledger::open_url(&url).unwrap_err();
    assert!(matches!(e, Error::Ledger { code: None, .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.starts_with(&format!("ledger {url}: the PostgreSQL server cannot be reached")), "{m}");
    assert!(m.contains("TLS"), "{m}");
    assert!(!m.contains('\n'), "{m}");
}

/// Four issuers started at once on a ledger file that does not exist yet:
/// every one opens it at the current version (each reads the new file's
/// identity and schema from one snapshot, then creates or finds the schema
/// under the write lock).
#[test]
fn first_opens_of_a_new_ledger_at_once_all_succeed() {
    for round in 0..12 {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ledger.sqlite");
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<tka::Result<i64>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        Ledger::open(&path).and_then(|l| l.schema_version())
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for r in results {
            assert_eq!(r.map_err(|e| format!("round {round}: {e}")), Ok(SCHEMA_VERSION));
        }
    }
}
