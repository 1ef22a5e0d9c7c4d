//! The host's state in PostgreSQL ([`PgState`]), so that several hosts of
//! one site share their counts exactly: the threshold and the aging window
//! are counted over the machines every host has seen, and a machine first
//! seen by one host and renewing on another is refreshed, not added.
//!
//! The tables are those of the SQLite state, in PostgreSQL's types, in a
//! namespace of their own (`tka_host`), so the state can share a database
//! with an issuer ledger (whose tables are in the connection's current
//! schema). Their version is the one row of `tka_host.schema_version`,
//! created on first use, migrated forwards, never downgraded.
//!
//! Each request is one READ COMMITTED transaction that first locks the
//! product's row (`SELECT ... FOR UPDATE`) and the request's nonce (a
//! transaction-scoped advisory lock): the requests for one product are
//! decided one after the other, whichever host received them, so every
//! decision sees every committed visit. A transaction the server aborts
//! (deadlock, serialization failure) is run again, up to
//! [`WRITE_RETRIES`] times.

use crate::core::error::{Error, Result};
use crate::issuer::host::policy::{self, Rules, Seen, Verdict};
use crate::issuer::host::state::{
    decide, product_status, released, return_mark, Decision, HostState, ProductConfig, ProductStatus, Recorded,
    Released, SignFn, Snapshot, Visit, APPLICATION_ID, SCHEMA_VERSION,
};
use crate::issuer::ledger::pg::{PgConn, Versioned};
use crate::issuer::ledger::sql::{args, retryable, LedgerLocation, Row};
use crate::issuer::ledger::WRITE_RETRIES;

/// Migration `i` takes the PostgreSQL host state from version `i` to
/// `i + 1`: the same steps as the SQLite state's.
const PG_MIGRATIONS: &[&str] = &[r#"
CREATE TABLE tka_host.settings (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
CREATE TABLE tka_host.products (
    product     TEXT PRIMARY KEY,
    threshold   BIGINT NOT NULL CHECK (threshold >= 1),
    cache_size  BIGINT NOT NULL CHECK (cache_size >= 2),
    seats       BIGINT
);
CREATE TABLE tka_host.seen (
    product     TEXT NOT NULL REFERENCES tka_host.products(product),
    cmid        TEXT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    PRIMARY KEY (product, cmid)
);
CREATE TABLE tka_host.nonces (
    nonce  TEXT PRIMARY KEY,
    cmid   TEXT NOT NULL,
    seen   BIGINT NOT NULL
);
CREATE INDEX nonces_by_time ON tka_host.nonces(seen);
CREATE TABLE tka_host.issued (
    serial     TEXT PRIMARY KEY,
    product    TEXT NOT NULL,
    cmid       TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires    BIGINT
);
"#];

const _: () = assert!(PG_MIGRATIONS.len() as i64 == SCHEMA_VERSION, "one PostgreSQL migration per version");

/// The host state's schema on PostgreSQL.
const HOST_SCHEMA: Versioned = Versioned {
    kind: "host state",
    table: "tka_host.schema_version",
    exists: "SELECT count(*) FROM pg_tables WHERE schemaname = 'tka_host' AND tablename = 'schema_version'",
    app_id: APPLICATION_ID,
    migrations: PG_MIGRATIONS,
    setup: "CREATE SCHEMA IF NOT EXISTS tka_host",
    occupied: "SELECT count(*) FROM pg_tables WHERE schemaname = 'tka_host'",
    occupied_why: "its schema tka_host holds tables and no schema_version",
};

/// The first key of the nonce locks (the second is the nonce's hash).
const NONCE_LOCK: i64 = APPLICATION_ID;

/// The host state in a PostgreSQL database.
pub struct PgState {
    conn: PgConn,
    location: LedgerLocation,
}

impl std::fmt::Debug for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgState").field("location", &self.location.display()).finish()
    }
}

impl PgState {
    /// Opens the state in the database at `url`
    /// (`postgres://user[:password]@host[:port]/database`), creating its
    /// tables on first use and migrating older ones forwards. Refuses a
    /// state written by a newer tka, and a `tka_host` schema that holds
    /// tables tka did not create.
    pub fn open(url: &str) -> Result<Self> {
        let mut s = Self::connect(url)?;
        s.conn.prepare_schema(&HOST_SCHEMA)?;
        Ok(s)
    }

    /// Opens an existing state for reading its counters; creates nothing.
    /// A database without one (no host has run on it yet) is an
    /// [`Error::Format`] naming it.
    pub fn open_existing(url: &str) -> Result<Self> {
        let mut s = Self::connect(url)?;
        match s.conn.version(&HOST_SCHEMA)? {
            Some((v, _)) if v == SCHEMA_VERSION => Ok(s),
            Some(_) => Err(s.format("not migrated to this tka's schema yet (a host of this version migrates it)")),
            None => Err(s.format("there is none in this database (no host has run on it yet); nothing was created")),
        }
    }

    fn connect(url: &str) -> Result<Self> {
        let location = LedgerLocation::parse(url);
        let LedgerLocation::Postgres(u) = &location else {
            return Err(Error::Usage(format!("{url:?} is not a postgres:// or postgresql:// URL")));
        };
        let conn = PgConn::connect(u, &location.display())?;
        Ok(PgState { conn, location })
    }

    /// Where the state is (the URL).
    pub fn location(&self) -> &LedgerLocation {
        &self.location
    }

    fn format(&self, detail: &str) -> Error {
        Error::format(format!("host state {}", self.location), detail)
    }

    /// A new connection in place of one the server ended (restarted, or
    /// the backend terminated), so the host serves again once the server
    /// is back.
    fn reconnect(&mut self) -> Result<()> {
        if self.conn.is_closed() {
            if let LedgerLocation::Postgres(u) = &self.location {
                self.conn = PgConn::connect(u, &self.location.display())?;
            }
        }
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it; a transaction the
    /// server aborted (deadlock, serialization failure) runs again.
    fn write<T>(&mut self, mut f: impl FnMut(&mut PgConn) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            self.reconnect()?;
            self.conn.batch("BEGIN ISOLATION LEVEL READ COMMITTED")?;
            let r = f(&mut self.conn).and_then(|v| self.conn.batch("COMMIT").map(|()| v));
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let _ = self.conn.batch("ROLLBACK");
                    if retryable(&e) && tries < WRITE_RETRIES {
                        tries += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// A product's rules and entries; with `lock`, its row stays locked
    /// until the transaction ends.
    fn snapshot_in(c: &mut PgConn, product: &str, lock: bool) -> Result<Option<Snapshot>> {
        let sql = if lock {
            "SELECT threshold, cache_size, seats FROM tka_host.products WHERE product = ?1 FOR UPDATE"
        } else {
            "SELECT threshold, cache_size, seats FROM tka_host.products WHERE product = ?1"
        };
        let Some(r) = c.query(sql, args![product])?.into_iter().next() else { return Ok(None) };
        let seats = r.opt_i64(2)?.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        let (threshold, cache_size) = (r.u32(0)?, r.u32(1)?);
        let aging_secs = c
            .query("SELECT value FROM tka_host.settings WHERE name = 'aging_secs'", &[])?
            .first()
            .map(|r| r.i64(0))
            .transpose()?
            .unwrap_or(30 * crate::core::clock::DAY);
        let entries = c
            .query("SELECT cmid, last_seen FROM tka_host.seen WHERE product = ?1", args![product])?
            .iter()
            .map(|r| Ok(Seen { cmid: r.text(0)?, last_seen: r.i64(1)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Snapshot { rules: Rules { threshold, cache_size, aging_secs, seats }, entries }))
    }

    /// Locks the nonce (until the transaction ends), drops the nonces
    /// older than the replay window, and returns the machine the nonce was
    /// seen for, if any.
    fn nonce_seen_for(c: &mut PgConn, nonce: &str, since: i64) -> Result<Option<String>> {
        c.query("SELECT pg_advisory_xact_lock(?1, hashtext(?2))", args![NONCE_LOCK, nonce])?;
        c.execute("DELETE FROM tka_host.nonces WHERE seen < ?1", args![since])?;
        c.query("SELECT cmid FROM tka_host.nonces WHERE nonce = ?1", args![nonce])?
            .first()
            .map(|r: &Row| r.text(0))
            .transpose()
    }
}

impl HostState for PgState {
    fn configure(&mut self, products: &[ProductConfig], aging_secs: i64) -> Result<()> {
        self.write(|c| {
            c.execute(
                "INSERT INTO tka_host.settings (name, value) VALUES ('aging_secs', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                args![aging_secs],
            )?;
            for p in products {
                c.execute(
                    "INSERT INTO tka_host.products (product, threshold, cache_size, seats) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (product) DO NOTHING",
                    args![&p.product, p.threshold, policy::cache_size(0, p.threshold), p.seats],
                )?;
                let previous = c
                    .query("SELECT cache_size FROM tka_host.products WHERE product = ?1 FOR UPDATE", args![&p.product])?
                    .first()
                    .map(|r| r.u32(0))
                    .transpose()?
                    .unwrap_or(0);
                c.execute(
                    "UPDATE tka_host.products SET threshold = ?2, cache_size = ?3, seats = ?4 WHERE product = ?1",
                    args![&p.product, p.threshold, policy::cache_size(previous, p.threshold), p.seats],
                )?;
            }
            Ok(())
        })
    }

    fn status(&mut self, now: i64) -> Result<Vec<ProductStatus>> {
        self.reconnect()?;
        let c = &mut self.conn;
        c.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let r = (|| {
            let names = c.query("SELECT product FROM tka_host.products ORDER BY product", &[])?;
            let mut out = Vec::new();
            for r in names {
                let product = r.text(0)?;
                if let Some(s) = Self::snapshot_in(c, &product, false)? {
                    out.push(product_status(product, &s, now));
                }
            }
            Ok(out)
        })();
        let _ = c.batch("COMMIT");
        r
    }

    fn snapshot(&mut self, product: &str) -> Result<Option<Snapshot>> {
        self.reconnect()?;
        Self::snapshot_in(&mut self.conn, product, false)
    }

    fn activate(
        &mut self,
        visit: &Visit,
        replay_window_secs: i64,
        now: i64,
        sign: &mut SignFn<'_>,
    ) -> Result<Recorded> {
        self.write(|c| {
            let Some(snap) = Self::snapshot_in(c, &visit.product, true)? else { return Ok(Recorded::UnknownProduct) };
            let earlier = Self::nonce_seen_for(c, &visit.nonce, now - replay_window_secs)?;
            let admission = match decide(&snap, earlier.as_deref(), &visit.cmid, now) {
                Decision::Replayed => return Ok(Recorded::Replayed),
                Decision::Refused(a) => return Ok(Recorded::Admitted(a, None)),
                Decision::Record(a) => a,
            };
            for cmid in &admission.drop {
                c.execute("DELETE FROM tka_host.seen WHERE product = ?1 AND cmid = ?2", args![&visit.product, cmid])?;
            }
            c.execute(
                "INSERT INTO tka_host.seen (product, cmid, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (product, cmid) DO UPDATE SET last_seen = excluded.last_seen",
                args![&visit.product, &visit.cmid, now],
            )?;
            c.execute(
                "INSERT INTO tka_host.nonces (nonce, cmid, seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT (nonce) DO UPDATE SET cmid = excluded.cmid, seen = excluded.seen",
                args![&visit.nonce, &visit.cmid, now],
            )?;
            let token = if admission.verdict == Verdict::Activated {
                let t = sign(&admission)?;
                c.execute(
                    "INSERT INTO tka_host.issued (serial, product, cmid, issued_at, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![&t.serial, &visit.product, &visit.cmid, now, t.expires],
                )?;
                Some(t)
            } else {
                None
            };
            Ok(Recorded::Admitted(admission, token))
        })
    }

    fn release(&mut self, visit: &Visit, replay_window_secs: i64, now: i64) -> Result<Released> {
        let (product, cmid) = (visit.product.as_str(), visit.cmid.as_str());
        self.write(|c| {
            let Some(snap) = Self::snapshot_in(c, product, true)? else { return Ok(Released::UnknownProduct) };
            if Self::nonce_seen_for(c, &visit.nonce, now - replay_window_secs)?.is_some() {
                return Ok(Released::Replayed);
            }
            c.execute("DELETE FROM tka_host.seen WHERE product = ?1 AND cmid = ?2", args![product, cmid])?;
            c.execute(
                "INSERT INTO tka_host.nonces (nonce, cmid, seen) VALUES (?1, ?2, ?3)",
                args![&visit.nonce, return_mark(cmid), now],
            )?;
            Ok(released(snap, cmid, now))
        })
    }

    fn issued_serials(&mut self, product: &str) -> Result<Vec<String>> {
        self.conn
            .query("SELECT serial FROM tka_host.issued WHERE product = ?1 ORDER BY issued_at, serial", args![product])?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }
}
