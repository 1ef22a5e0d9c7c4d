//! The host's state: per product its threshold, cache size and the machines
//! it has seen; the request nonces seen recently (replays); the serial of
//! every token it issued (audit).
//!
//! [`HostState`] is what the server needs from a store, so another database
//! can back it (`pg_state::PgState`, PostgreSQL, shared by several hosts,
//! under the `postgres` feature); [`SqliteState`] keeps it in one SQLite file
//! (`HOSTDIR/state.sqlite`). Each request is recorded in a write
//! transaction (`BEGIN IMMEDIATE`; the server puts the activations
//! that arrive together in one, [`HostState::activate_batch`]), and the
//! server answers only after it committed: a host killed at any instant
//! restarts with every answered request counted once. The file is in WAL mode with `synchronous=NORMAL`: a committed
//! transaction survives the process being killed; a power loss may lose
//! the last commits, and the machines they counted are counted again on
//! their next retry.

use crate::core::error::{Error, Result};
use crate::issuer::host::policy::{self, Admission, Rules, Seen, Verdict};
use crate::issuer::ledger::sql::{newer_schema_of, retry_while_busy, run_migrations};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state file in a host directory.
pub const HOST_STATE_FILE: &str = "state.sqlite";

/// `PRAGMA application_id` of a tka host state ("TKAH").
pub const APPLICATION_ID: i64 = 0x544b_4148;

/// The schema version this tka writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Migration `i` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE products (
    product     TEXT PRIMARY KEY,
    threshold   INTEGER NOT NULL CHECK (threshold >= 1),
    cache_size  INTEGER NOT NULL CHECK (cache_size >= 2),
    seats       INTEGER
) WITHOUT ROWID;
CREATE TABLE seen (
    product     TEXT NOT NULL REFERENCES products(product),
    cmid        TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (product, cmid)
) WITHOUT ROWID;
CREATE TABLE nonces (
    nonce  TEXT PRIMARY KEY,
    cmid   TEXT NOT NULL,
    seen   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX nonces_by_time ON nonces(seen);
CREATE TABLE issued (
    serial     TEXT PRIMARY KEY,
    product    TEXT NOT NULL,
    cmid       TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires    INTEGER
) WITHOUT ROWID;
"#];

/// A product the host serves, as configured when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductConfig {
    /// The product.
    pub product: String,
    /// Machines needed before any is activated (at least 1).
    pub threshold: u32,
    /// Most distinct machines the delegation allows, if it caps them.
    pub seats: Option<u32>,
}

/// One product's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProductStatus {
    /// The product.
    pub product: String,
    /// Distinct machines seen within the aging window.
    pub count: u32,
    /// The threshold.
    pub threshold: u32,
    /// Most entries kept (never shrinks).
    pub cache_size: u32,
    /// The seat cap of the delegation, if any.
    pub seats: Option<u32>,
    /// When the machine seen longest ago was last seen.
    pub oldest_last_seen: Option<i64>,
    /// When the machine seen most recently was last seen.
    pub newest_last_seen: Option<i64>,
    /// When the next entry ages out (the count drops).
    pub next_aging: Option<i64>,
}

/// One activation request, as the state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// The product.
    pub product: String,
    /// The machine.
    pub cmid: String,
    /// The request's nonce.
    pub nonce: String,
}

/// A token signed for an admitted visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Its serial (`jti`).
    pub serial: String,
    /// The JWS text.
    pub text: String,
    /// Its expiry.
    pub expires: Option<i64>,
}

/// What the state made of a visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The product is not one the host serves.
    UnknownProduct,
    /// The nonce was seen within the replay window for another machine.
    Replayed,
    /// Decided by the policy ([`policy::admit`]); a token when activated.
    /// Refused visits ([`Verdict::SeatsFull`]) change nothing.
    Admitted(Admission, Option<Signed>),
}

/// What the state made of an early return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The product is not one the host serves.
    UnknownProduct,
    /// The request's nonce was seen within the replay window.
    Replayed,
    /// The machine's entry is gone; the count after it and the threshold.
    Released {
        /// Machines counted now.
        count: u32,
        /// The product's threshold.
        threshold: u32,
    },
}

/// How a return's nonce is recorded: under a machine name no CMID has,
/// so the activation check (a nonce seen for another machine) refuses it too.
pub(crate) fn return_mark(cmid: &str) -> String {
    format!("return:{cmid}")
}

/// A product's rules and entries as one read sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The rules.
    pub rules: Rules,
    /// The entries (live and aged).
    pub entries: Vec<Seen>,
}

/// Signs the token of an admitted visit, inside its transaction.
pub type SignFn<'a> = dyn FnMut(&Admission) -> Result<Signed> + 'a;

/// Signs the token of the admitted visit at an index of a batch
/// ([`HostState::activate_batch`]), inside its transaction.
pub type BatchSignFn<'a> = dyn FnMut(usize, &Admission) -> Result<Signed> + 'a;

/// [`HostState::activate`] on each visit in turn, each in its own
/// transaction (`sign` gets the visit's index): the default
/// [`HostState::activate_batch`], and [`SqliteState`]'s when its one
/// transaction for the batch fails.
fn activate_each<S: HostState + ?Sized>(
    state: &mut S,
    visits: &[(Visit, i64)],
    replay_window_secs: i64,
    sign: &mut BatchSignFn<'_>,
) -> Vec<Result<Recorded>> {
    visits
        .iter()
        .enumerate()
        .map(|(i, (v, now))| state.activate(v, replay_window_secs, *now, &mut |a| sign(i, a)))
        .collect()
}

/// What the host server needs from its store.
pub trait HostState: Send {
    /// Records the products served (thresholds, seat caps; every cache size
    /// grows to [`policy::cache_size`], never shrinks) and the aging window,
    /// as the host starts.
    fn configure(&mut self, products: &[ProductConfig], aging_secs: i64) -> Result<()>;
    /// Whether a write is local and short (a file on this machine, no
    /// network round trip): the server then records activations on its
    /// worker threads; otherwise (the default) on its blocking pool.
    fn is_local(&self) -> bool {
        false
    }
    /// Every product's counters at `now`.
    fn status(&mut self, now: i64) -> Result<Vec<ProductStatus>>;
    /// A product's rules and entries, `None` for a product not served.
    fn snapshot(&mut self, product: &str) -> Result<Option<Snapshot>>;
    /// Decides and records one activation request in one transaction: the
    /// replay check (a nonce seen since `now - replay_window_secs` for
    /// another machine), the policy, the entry, the nonce and, when
    /// activated, the token `sign` makes (its serial is recorded). Nothing
    /// is recorded when `sign` fails or the visit is refused.
    fn activate(&mut self, visit: &Visit, replay_window_secs: i64, now: i64, sign: &mut SignFn<'_>)
        -> Result<Recorded>;
    /// Drops a machine's entry (an early return) in one transaction with
    /// the replay check: a return whose nonce was seen since
    /// `now - replay_window_secs` (for a return or an activation, of any
    /// machine) is [`Released::Replayed`] and changes nothing; else the
    /// nonce is recorded as a return's, so the same request is refused
    /// again both as a return and as an activation.
    fn release(&mut self, visit: &Visit, replay_window_secs: i64, now: i64) -> Result<Released>;
    /// [`HostState::activate`] for several requests (`visits`, each with
    /// its own `now`), decided in order as if one after the other; `sign`
    /// gets the index of the visit it signs for. One result per visit, in
    /// order. A store may record them in one transaction (group commit:
    /// [`SqliteState`] does), so none of them is durable before all are;
    /// the default runs [`HostState::activate`] on each in turn.
    fn activate_batch(
        &mut self,
        visits: &[(Visit, i64)],
        replay_window_secs: i64,
        sign: &mut BatchSignFn<'_>,
    ) -> Vec<Result<Recorded>> {
        activate_each(self, visits, replay_window_secs, sign)
    }
    /// The serials of the tokens issued for a product, oldest first (audit).
    fn issued_serials(&mut self, product: &str) -> Result<Vec<String>>;
}

/// What one activation request comes to, decided the same way on every
/// backend from the product's [`Snapshot`] and the machine its nonce was
/// seen for (if it was, within the replay window).
#[derive(Debug)]
pub(crate) enum Decision {
    /// The nonce was seen for another machine: refused, nothing recorded.
    Replayed,
    /// The policy refused it ([`Verdict::SeatsFull`]): nothing recorded.
    Refused(Admission),
    /// Record it: drop `admission.drop`, refresh or add the machine, record
    /// the nonce and, when activated, the token.
    Record(Admission),
}

/// The one decision of [`HostState::activate`].
pub(crate) fn decide(snap: &Snapshot, nonce_seen_for: Option<&str>, cmid: &str, now: i64) -> Decision {
    if nonce_seen_for.is_some_and(|c| c != cmid) {
        return Decision::Replayed;
    }
    let admission = policy::admit(&snap.rules, &snap.entries, cmid, now);
    if admission.verdict == Verdict::SeatsFull {
        Decision::Refused(admission)
    } else {
        Decision::Record(admission)
    }
}

/// A product's counters at `now`, from its [`Snapshot`].
pub(crate) fn product_status(product: String, s: &Snapshot, now: i64) -> ProductStatus {
    let live: Vec<&Seen> = s.entries.iter().filter(|e| policy::is_live(e, now, s.rules.aging_secs)).collect();
    ProductStatus {
        count: live.len() as u32,
        threshold: s.rules.threshold,
        cache_size: s.rules.cache_size,
        seats: s.rules.seats,
        oldest_last_seen: live.iter().map(|e| e.last_seen).min(),
        newest_last_seen: live.iter().map(|e| e.last_seen).max(),
        next_aging: policy::next_aging(&s.entries, now, s.rules.aging_secs),
        product,
    }
}

/// What a return leaves: the count without the machine, and the threshold.
pub(crate) fn released(snap: Snapshot, cmid: &str, now: i64) -> Released {
    let left: Vec<Seen> = snap.entries.into_iter().filter(|e| e.cmid != cmid).collect();
    Released::Released { count: policy::count(&left, now, snap.rules.aging_secs), threshold: snap.rules.threshold }
}

/// What a transaction of [`SqliteState`] read and wrote so far: each
/// product's snapshot as it is now inside it, and the cut-off the nonces
/// were last pruned at.
#[derive(Default)]
struct InTransaction {
    snapshots: std::collections::HashMap<String, Option<Snapshot>>,
    pruned: Option<i64>,
}

/// The host state in an SQLite file.
#[derive(Debug)]
pub struct SqliteState {
    conn: Connection,
    path: PathBuf,
    /// Write transactions committed.
    commits: u64,
    /// Started after the first [`CHECKPOINT_EVERY`] commits.
    checkpointer: Option<Checkpointer>,
}

/// Commits after which the WAL is checkpointed, on a thread of its own.
const CHECKPOINT_EVERY: u64 = 32;

/// WAL pages after which the writing connection checkpoints the WAL
/// itself, after a commit (and waits for its fsync): under a steady load
/// the background checkpoints never find the WAL wholly copied, so SQLite
/// never starts it over; this bounds it. (SQLite's own automatic
/// checkpoint is off: when it finds the background one running, the
/// commit that ran it reports an error although it committed.)
const WAL_LIMIT: i64 = 8192;

/// A thread with its own connection that checkpoints the WAL (copies the
/// committed pages into the database file, and syncs both) when woken, so
/// the connection that commits rarely waits for a checkpoint's fsync.
/// A checkpoint never blocks a commit (`PASSIVE`); when it cannot run, the
/// next one does.
#[derive(Debug)]
struct Checkpointer {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Pages in the WAL after the last checkpoint.
    wal_pages: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ok()?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let wal_pages = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let pages = wal_pages.clone();
        let thread = std::thread::Builder::new()
            .name("tka-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Some(n) = checkpoint(&conn) {
                        pages.store(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
            .ok()?;
        Some(Checkpointer { wake: Some(wake), thread: Some(thread), wal_pages })
    }

    /// Whether the WAL passed [`WAL_LIMIT`] pages.
    fn behind(&self) -> bool {
        self.wal_pages.load(std::sync::atomic::Ordering::Relaxed) > WAL_LIMIT
    }

    /// Asks for a checkpoint (none if one is already asked for).
    fn wake(&self) {
        if let Some(w) = &self.wake {
            let _ = w.try_send(());
        }
    }
}

/// A `PASSIVE` checkpoint on `conn` (copies what it can, never waits for a
/// writer); the pages in the WAL then, if it ran.
fn checkpoint(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)).ok()
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteState {
    /// Opens the state at `path`, creating it if needed. Refuses a file
    /// that is not a tka host state and one written by a newer tka.
    pub fn open(path: &Path) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
        let mut s = SqliteState { conn, path: path.to_path_buf(), commits: 0, checkpointer: None };
        s.conn.busy_timeout(Duration::from_secs(10)).map_err(|e| db_err(path, e))?;
        // Racing first opens of a new file may be told "busy" at once: run again.
        retry_while_busy(Duration::from_secs(10), || s.prepare_file())?;
        Ok(s)
    }

    /// Checks, configures and migrates the file as it is opened.
    fn prepare_file(&mut self) -> Result<()> {
        // One read transaction: the version, id and object count come from
        // one snapshot (a first open racing another one that creates the
        // state sees it before or after, never half).
        self.conn.execute_batch("BEGIN DEFERRED").map_err(|e| db_err(&self.path, e))?;
        let checked = self.check_identity();
        let _ = self.conn.execute_batch("COMMIT");
        checked?;
        self.configure_rw().map_err(|e| db_err(&self.path, e))?;
        self.migrate()
    }

    /// Opens an existing state for reading only; a missing file is an
    /// [`Error::Io`] (not found) naming it, and nothing is created.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no host state (the host has never run)"),
            ));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
        let s = SqliteState { conn, path: path.to_path_buf(), commits: 0, checkpointer: None };
        s.check_identity()?;
        if s.version()? != SCHEMA_VERSION {
            return Err(Error::format(format!("host state {}", path.display()), "not initialized by a host yet"));
        }
        Ok(s)
    }

    /// Counts a commit; every [`CHECKPOINT_EVERY`] commits, wakes the
    /// checkpointer (started the first time; without it, checkpoints
    /// here). When the WAL passed [`WAL_LIMIT`] pages, checkpoints here.
    fn committed(&mut self) {
        self.commits += 1;
        if self.commits.is_multiple_of(CHECKPOINT_EVERY) {
            if self.checkpointer.is_none() {
                self.checkpointer = Checkpointer::start(&self.path);
            }
            match &self.checkpointer {
                Some(c) => c.wake(),
                None => drop(checkpoint(&self.conn)),
            }
        }
        if let Some(c) = self.checkpointer.as_ref().filter(|c| c.behind()) {
            if let Some(n) = checkpoint(&self.conn) {
                c.wal_pages.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| db_err(&self.path, e))
    }

    fn check_identity(&self) -> Result<()> {
        let path = &self.path;
        self.conn.busy_timeout(Duration::from_secs(10)).map_err(|e| db_err(path, e))?;
        self.conn.pragma_update(None, "trusted_schema", "OFF").map_err(|e| db_err(path, e))?;
        let version = self.version()?;
        let app_id: i64 =
            self.conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| db_err(path, e))?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema_of("host state", &path.display().to_string(), version, SCHEMA_VERSION));
        }
        if version < 0 || (app_id != APPLICATION_ID && (version > 0 || app_id != 0)) {
            return Err(Error::format(
                format!("host state {}", path.display()),
                "not a tka host state (its application id or version is not tka's); nothing was changed",
            ));
        }
        if version == 0 {
            let objects: i64 = self
                .conn
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| db_err(path, e))?;
            if objects > 0 {
                return Err(Error::format(
                    format!("host state {}", path.display()),
                    "not a tka host state (an SQLite database with other tables); nothing was changed",
                ));
            }
        }
        Ok(())
    }

    fn configure_rw(&self) -> rusqlite::Result<()> {
        let mode: String = self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        self.conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| db_err(&path, e))?;
        if version == 0 {
            tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(|e| db_err(&path, e))?;
        }
        run_migrations(MIGRATIONS, version, |sql, to| {
            tx.execute_batch(sql).map_err(|e| db_err(&path, e))?;
            tx.pragma_update(None, "user_version", to).map_err(|e| db_err(&path, e))
        })?;
        tx.commit().map_err(|e| db_err(&path, e))
    }

    fn aging(conn: &Connection) -> rusqlite::Result<i64> {
        Ok(conn
            .prepare_cached("SELECT value FROM settings WHERE name = 'aging_secs'")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(30 * crate::core::clock::DAY))
    }

    fn snapshot_in(conn: &Connection, product: &str) -> rusqlite::Result<Option<Snapshot>> {
        let aging_secs = Self::aging(conn)?;
        let row = conn
            .prepare_cached("SELECT threshold, cache_size, seats FROM products WHERE product = ?1")?
            .query_row([product], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?, r.get::<_, Option<u32>>(2)?)))
            .optional()?;
        let Some((threshold, cache_size, seats)) = row else { return Ok(None) };
        let entries = conn
            .prepare_cached("SELECT cmid, last_seen FROM seen WHERE product = ?1")?
            .query_map([product], |r| Ok(Seen { cmid: r.get(0)?, last_seen: r.get(1)? }))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(Snapshot { rules: Rules { threshold, cache_size, aging_secs, seats }, entries }))
    }

    /// Decides and records one visit inside `tx`: the outer error is the
    /// database's (the caller rolls back), the inner one the signature's
    /// (nothing of this visit was written). `seen` is what this
    /// transaction read and wrote before.
    fn activate_in(
        tx: &Connection,
        visit: &Visit,
        replay_window_secs: i64,
        now: i64,
        seen: &mut InTransaction,
        sign: &mut SignFn<'_>,
    ) -> rusqlite::Result<Result<Recorded>> {
        if !seen.snapshots.contains_key(&visit.product) {
            let snap = Self::snapshot_in(tx, &visit.product)?;
            seen.snapshots.insert(visit.product.clone(), snap);
        }
        let Some(Some(snap)) = seen.snapshots.get_mut(&visit.product) else {
            return Ok(Ok(Recorded::UnknownProduct));
        };
        let cutoff = now - replay_window_secs;
        if seen.pruned != Some(cutoff) {
            tx.prepare_cached("DELETE FROM nonces WHERE seen < ?1")?.execute([cutoff])?;
            seen.pruned = Some(cutoff);
        }
        let earlier: Option<String> = tx
            .prepare_cached("SELECT cmid FROM nonces WHERE nonce = ?1")?
            .query_row([&visit.nonce], |r| r.get(0))
            .optional()?;
        let admission = match decide(snap, earlier.as_deref(), &visit.cmid, now) {
            Decision::Replayed => return Ok(Ok(Recorded::Replayed)),
            Decision::Refused(a) => return Ok(Ok(Recorded::Admitted(a, None))),
            Decision::Record(a) => a,
        };
        // Signed before anything is written: a failed signature records nothing.
        let token = match admission.verdict {
            Verdict::Activated => match sign(&admission) {
                Ok(t) => Some(t),
                Err(e) => return Ok(Err(e)),
            },
            _ => None,
        };
        {
            let mut del = tx.prepare_cached("DELETE FROM seen WHERE product = ?1 AND cmid = ?2")?;
            for cmid in &admission.drop {
                del.execute(params![visit.product, cmid])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO seen (product, cmid, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (product, cmid) DO UPDATE SET last_seen = excluded.last_seen",
        )?
        .execute(params![visit.product, visit.cmid, now])?;
        tx.prepare_cached("INSERT OR REPLACE INTO nonces (nonce, cmid, seen) VALUES (?1, ?2, ?3)")?
            .execute(params![visit.nonce, visit.cmid, now])?;
        if let Some(t) = &token {
            tx.prepare_cached(
                "INSERT INTO issued (serial, product, cmid, issued_at, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![t.serial, visit.product, visit.cmid, now, t.expires])?;
        }
        // The snapshot follows what was written, for the next visit of the batch.
        snap.entries.retain(|e| !admission.drop.contains(&e.cmid));
        match snap.entries.iter_mut().find(|e| e.cmid == visit.cmid) {
            Some(e) => e.last_seen = now,
            None => snap.entries.push(Seen { cmid: visit.cmid.clone(), last_seen: now }),
        }
        Ok(Ok(Recorded::Admitted(admission, token)))
    }
}

impl HostState for SqliteState {
    fn is_local(&self) -> bool {
        true
    }

    fn configure(&mut self, products: &[ProductConfig], aging_secs: i64) -> Result<()> {
        let path = self.path.clone();
        let err = |e| db_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        tx.execute("INSERT OR REPLACE INTO settings (name, value) VALUES ('aging_secs', ?1)", [aging_secs])
            .map_err(err)?;
        for p in products {
            let previous: u32 = tx
                .query_row("SELECT cache_size FROM products WHERE product = ?1", [&p.product], |r| r.get(0))
                .optional()
                .map_err(err)?
                .unwrap_or(0);
            tx.execute(
                "INSERT OR REPLACE INTO products (product, threshold, cache_size, seats) VALUES (?1, ?2, ?3, ?4)",
                params![p.product, p.threshold, policy::cache_size(previous, p.threshold), p.seats],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn status(&mut self, now: i64) -> Result<Vec<ProductStatus>> {
        let path = self.path.clone();
        let err = |e| db_err(&path, e);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let names = tx
            .prepare("SELECT product FROM products ORDER BY product")
            .map_err(err)?
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        let mut out = Vec::new();
        for product in names {
            let Some(s) = Self::snapshot_in(&tx, &product).map_err(err)? else { continue };
            out.push(product_status(product, &s, now));
        }
        Ok(out)
    }

    fn snapshot(&mut self, product: &str) -> Result<Option<Snapshot>> {
        Self::snapshot_in(&self.conn, product).map_err(|e| db_err(&self.path, e))
    }

    fn activate(
        &mut self,
        visit: &Visit,
        replay_window_secs: i64,
        now: i64,
        sign: &mut SignFn<'_>,
    ) -> Result<Recorded> {
        let path = self.path.clone();
        let err = |e| db_err(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let recorded =
            Self::activate_in(&tx, visit, replay_window_secs, now, &mut InTransaction::default(), sign).map_err(err)?;
        if recorded.is_ok() {
            tx.commit().map_err(err)?;
            self.committed();
        }
        recorded
    }

    /// One transaction for the whole batch (group commit): each visit is
    /// decided on what the ones before it recorded; a visit whose
    /// signature fails records nothing and gets its error. When the
    /// transaction itself fails, it is rolled back and every visit is run
    /// again in its own ([`HostState::activate`]), so each gets its own
    /// answer.
    fn activate_batch(
        &mut self,
        visits: &[(Visit, i64)],
        replay_window_secs: i64,
        sign: &mut BatchSignFn<'_>,
    ) -> Vec<Result<Recorded>> {
        let mut batch = || -> rusqlite::Result<Vec<Result<Recorded>>> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut seen = InTransaction::default();
            let mut out = Vec::with_capacity(visits.len());
            for (i, (v, now)) in visits.iter().enumerate() {
                out.push(Self::activate_in(&tx, v, replay_window_secs, *now, &mut seen, &mut |a| sign(i, a))?);
            }
            tx.commit()?;
            Ok(out)
        };
        if visits.len() > 1 {
            if let Ok(out) = batch() {
                self.committed();
                return out;
            }
        }
        activate_each(self, visits, replay_window_secs, sign)
    }

    fn release(&mut self, visit: &Visit, replay_window_secs: i64, now: i64) -> Result<Released> {
        let path = self.path.clone();
        let err = |e| db_err(&path, e);
        let (product, cmid) = (visit.product.as_str(), visit.cmid.as_str());
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let Some(snap) = Self::snapshot_in(&tx, product).map_err(err)? else { return Ok(Released::UnknownProduct) };
        tx.prepare_cached("DELETE FROM nonces WHERE seen < ?1")
            .map_err(err)?
            .execute([now - replay_window_secs])
            .map_err(err)?;
        let seen: Option<String> = tx
            .prepare_cached("SELECT cmid FROM nonces WHERE nonce = ?1")
            .map_err(err)?
            .query_row([&visit.nonce], |r| r.get(0))
            .optional()
            .map_err(err)?;
        if seen.is_some() {
            return Ok(Released::Replayed);
        }
        tx.execute("DELETE FROM seen WHERE product = ?1 AND cmid = ?2", params![product, cmid]).map_err(err)?;
        tx.prepare_cached("INSERT INTO nonces (nonce, cmid, seen) VALUES (?1, ?2, ?3)")
            .map_err(err)?
            .execute(params![visit.nonce, return_mark(cmid), now])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        self.committed();
        Ok(released(snap, cmid, now))
    }

    fn issued_serials(&mut self, product: &str) -> Result<Vec<String>> {
        let err = |e| db_err(&self.path, e);
        self.conn
            .prepare("SELECT serial FROM issued WHERE product = ?1 ORDER BY issued_at, serial")
            .map_err(err)?
            .query_map([product], |r| r.get(0))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)
    }
}

/// Turns an SQLite error into a one-line error naming the state file.
fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let what = format!("host state {}", path.display());
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            C::NotADatabase | C::DatabaseCorrupt => {
                return Error::format(what, "the file is damaged or not an SQLite database; nothing was changed")
            }
            C::DatabaseBusy | C::DatabaseLocked => {
                return Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::WouldBlock, "the host state is locked by another process"),
                )
            }
            C::SystemIoFailure | C::CannotOpen | C::ReadOnly | C::PermissionDenied | C::DiskFull => {
                return Error::io(path, std::io::Error::other(format!("{e}; the transaction was rolled back")))
            }
            _ => {}
        }
    }
    if matches!(e, rusqlite::Error::InvalidQuery) {
        return Error::format(what, "cannot switch the host state to WAL mode");
    }
    Error::format(what, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(dir: &Path) -> SqliteState {
        let mut s = SqliteState::open(&dir.join("state.sqlite")).unwrap();
        s.configure(&[ProductConfig { product: "acme".into(), threshold: 2, seats: None }], 30 * 86_400).unwrap();
        s
    }

    // The suite that runs on both backends is tests/host_state.rs; these
    // are the SQLite file's own cases.

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(state(dir.path()));
        let path = dir.path().join("state.sqlite");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let before = std::fs::read(&path).unwrap();
        let e = SqliteState::open(&path).unwrap_err();
        assert!(e.to_string().contains("written by a newer tka (schema version 2)"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn read_only_open_never_creates_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let e = SqliteState::open_read_only(&path).unwrap_err();
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{e}");
        assert!(!path.exists());
    }
}
