//! The issuer's ledger: counted entitlements and every issued token, in SQLite.
//!
//! The ledger lives in the issuer home (`<home>/ledger.sqlite`, see
//! [`LEDGER_FILE`]). It records entitlements (product, features, allowed
//! machine count), the seats they have counted (one per distinct CMID), every
//! token issued (serial, entitlement, CMID, component hashes, times, signer
//! fingerprint, the token text, the request's nonce and digest), releases and
//! revocations. `docs/ledger.md` describes the schema and the guarantees.
//!
//! - **Counting:** issuing against an entitlement counts the machine (its
//!   CMID) once. Re-issuing to a counted machine (re-image, renewal) counts
//!   nothing. A new machine beyond the entitlement's count is refused with
//!   [`IssueRefusal::EntitlementFull`](crate::core::error::IssueRefusal::EntitlementFull)
//!   naming the entitlement and its count; nothing
//!   overrides the refusal. [`Ledger::release`] frees a seat and records why.
//! - **Transactions:** every write is one `BEGIN IMMEDIATE` transaction, so
//!   two processes on one ledger are serialized by SQLite's write lock (with a
//!   busy timeout) and can never both take the last seat. Serials are the
//!   primary key: a duplicate cannot be stored.
//! - **Versions:** the schema is migrated forwards by [`Ledger::open`]; a
//!   ledger from a newer tka is refused, never downgraded.
//!
//! Time is always a parameter (`now`, Unix seconds).

mod schema;

pub use schema::SCHEMA_VERSION;

use crate::core::error::{Error, Result};
use crate::core::machine::ComponentHash;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// File name of the ledger inside an issuer home.
pub const LEDGER_FILE: &str = "ledger.sqlite";

/// How long a write waits for another process's transaction by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The ledger path of an issuer home.
pub fn default_path(home: &Path) -> PathBuf {
    home.join(LEDGER_FILE)
}

/// An open ledger.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    busy_timeout: Duration,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish_non_exhaustive()
    }
}

/// An entitlement: a product, its features and how many machines it may activate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entitlement {
    /// Numeric id, unique in the ledger.
    pub id: i64,
    /// Optional unique name (never all digits, so it cannot be mistaken for an id).
    pub name: Option<String>,
    /// The product.
    pub product: String,
    /// How many distinct machines it may activate.
    pub machines: u32,
    /// Machines counted so far.
    pub used: u32,
    /// Features its tokens carry by default.
    pub features: Vec<String>,
    /// After this instant no token is issued against it, and no token outlives it.
    pub expires: Option<i64>,
    /// When it was added.
    pub created_at: i64,
    /// When it was last changed.
    pub updated_at: i64,
    /// Its tokens may bind weakly (no hardware anchor, no explicit identity).
    pub allow_weak_binding: bool,
}

impl Entitlement {
    /// Seats still free.
    pub fn free(&self) -> u32 {
        self.machines.saturating_sub(self.used)
    }

    /// How it is named in messages: `entitlement 3 ("acme-2027")`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("entitlement {} ({n:?})", self.id),
            None => format!("entitlement {}", self.id),
        }
    }
}

/// A new entitlement.
#[derive(Debug, Clone, Default)]
pub struct NewEntitlement {
    /// The product.
    pub product: String,
    /// Allowed machines.
    pub machines: u32,
    /// Default features.
    pub features: Vec<String>,
    /// Expiry, Unix seconds.
    pub expires: Option<i64>,
    /// Unique name.
    pub name: Option<String>,
    /// Allow weak bindings (see [`crate::core::machine::check_binding`]).
    pub allow_weak_binding: bool,
}

/// Changes to an entitlement; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EntitlementUpdate {
    /// New machine count (not below the machines already counted).
    pub machines: Option<u32>,
    /// New default features.
    pub features: Option<Vec<String>>,
    /// New expiry (`Some(None)` removes it).
    pub expires: Option<Option<i64>>,
    /// New name (`Some(None)` removes it).
    pub name: Option<Option<String>>,
    /// Allow (or stop allowing) weak bindings for tokens issued from now on.
    pub allow_weak_binding: Option<bool>,
}

/// A token as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Serial (`jti`).
    pub serial: String,
    /// Entitlement it was counted against.
    pub entitlement: Option<i64>,
    /// Product (`aud`).
    pub product: String,
    /// Machine (`sub`).
    pub cmid: String,
    /// Component hashes it is bound to.
    pub components: Vec<ComponentHash>,
    /// Issued at.
    pub issued_at: i64,
    /// Not before.
    pub not_before: i64,
    /// Expiry; `None` for a perpetual token.
    pub expires: Option<i64>,
    /// SHA-256 fingerprint of the signer certificate.
    pub signer: String,
    /// Nonce of the request it answered (absent for renewals).
    pub request_nonce: Option<String>,
    /// SHA-256 of the request it answered (absent for renewals).
    pub request_digest: Option<String>,
    /// Serial of the token this one renewed.
    pub replaces: Option<String>,
    /// When its seat was released.
    pub released_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// The JWS compact text.
    pub token: String,
}

/// Which tokens [`Ledger::tokens`] returns.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    /// Only this product.
    pub product: Option<String>,
    /// Only this machine (CMID).
    pub machine: Option<String>,
    /// Only tokens of this entitlement.
    pub entitlement: Option<i64>,
    /// Only tokens with `now <= exp <= now + secs`: `(now, secs)`.
    pub expiring_within: Option<(i64, i64)>,
    /// Only tokens issued at or after this instant.
    pub issued_since: Option<i64>,
}

/// A released seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    /// The entitlement whose seat was freed.
    pub entitlement: i64,
    /// The machine.
    pub cmid: String,
    /// The serial named in the release, if one was.
    pub serial: Option<String>,
    /// Why.
    pub reason: String,
    /// When.
    pub released_at: i64,
}

/// A revoked token, for building signed token revocation lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedToken {
    /// Serial (`jti`).
    pub serial: String,
    /// Why, free text.
    pub reason: String,
    /// When it was revoked.
    pub revoked_at: i64,
    /// Its product.
    pub product: String,
    /// Its machine.
    pub cmid: String,
    /// Its entitlement.
    pub entitlement: Option<i64>,
    /// Its expiry (a list may drop a serial once it has expired).
    pub expires: Option<i64>,
}

impl Ledger {
    /// Opens the ledger at `path`, creating it (and migrating it to the
    /// current schema) if needed. Refuses a file that is not a tka ledger, a
    /// damaged one, and one written by a newer tka.
    pub fn open(path: &Path) -> Result<Ledger> {
        Self::open_inner(path, true)
    }

    /// Opens an existing ledger; a missing file is an error naming the path.
    pub fn open_existing(path: &Path) -> Result<Ledger> {
        if !path.exists() {
            return Err(Error::NoLedger { path: path.to_path_buf() });
        }
        Self::open_inner(path, false)
    }

    fn open_inner(path: &Path, create: bool) -> Result<Ledger> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
        let mut ledger = Ledger { conn, path: path.to_path_buf(), busy_timeout: DEFAULT_BUSY_TIMEOUT };
        // Read-only checks first: a file that is not a tka ledger is refused
        // before anything (even the journal mode) is written to it.
        ledger.configure_read().map_err(|e| db_err(path, e))?;
        ledger.check_identity()?;
        ledger.configure().map_err(|e| db_err(path, e))?;
        ledger.migrate()?;
        Ok(ledger)
    }

    fn configure_read(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(self.busy_timeout)?;
        // Nothing in the file's schema may call functions with side effects
        // (defence in depth: the schema is checked against tka's own).
        self.conn.pragma_update(None, "trusted_schema", "OFF")?;
        // Reading the header first turns "not a database" into an error here.
        let _: i64 = self.conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
        Ok(())
    }

    fn configure(&self) -> rusqlite::Result<()> {
        let mode: String = self.conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        // FULL: a committed transaction is on disk before any token file is written.
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        self.conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    /// How long a write waits for another process holding the ledger.
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.busy_timeout = timeout;
        self.conn.busy_timeout(timeout).map_err(|e| self.err(e))
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open ledger.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.err(e))
    }

    /// The version and application id are ones tka writes, and the schema
    /// is exactly tka's for that version. Reads only.
    fn check_identity(&self) -> Result<()> {
        let path = &self.path;
        let version = self.schema_version()?;
        let app_id: i64 = self.conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(Error::format(
                format!("ledger {}", path.display()),
                format!(
                    "written by a newer tka (schema version {version}); this tka knows version {SCHEMA_VERSION} \
                     and never downgrades a ledger: use a newer tka"
                ),
            ));
        }
        if version < 0 {
            return Err(not_a_ledger(path, &format!("its schema version {version} is not one tka writes")));
        }
        if app_id != schema::APPLICATION_ID && (version > 0 || app_id != 0) {
            return Err(not_a_ledger(path, "its application id is not tka's"));
        }
        self.check_schema(version)
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        if self.schema_version()? == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        // Re-read inside the write lock: another process may have migrated meanwhile.
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| db_err(&path, e))?;
        let found = schema::schema_objects(&tx).map_err(|e| db_err(&path, e))?;
        if let Some(why) = schema::schema_difference(&found, version) {
            return Err(not_a_ledger(&path, &why));
        }
        if version == 0 {
            tx.pragma_update(None, "application_id", schema::APPLICATION_ID).map_err(|e| db_err(&path, e))?;
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|e| db_err(&path, e))?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(|e| db_err(&path, e))?;
        }
        tx.commit().map_err(|e| db_err(&path, e))
    }

    /// Every schema object (table, index, trigger, view) must be the one
    /// tka's migrations create for `version`: a trigger or view added with
    /// `sqlite3` could change what issuance counts.
    fn check_schema(&self, version: i64) -> Result<()> {
        let found = schema::schema_objects(&self.conn).map_err(|e| self.err(e))?;
        match schema::schema_difference(&found, version) {
            Some(why) => Err(not_a_ledger(&self.path, &why)),
            None => Ok(()),
        }
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        db_err(&self.path, e)
    }

    /// The connection, for the issuance path's reads.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A `BEGIN IMMEDIATE` transaction: the write lock, held until it ends.
    pub(crate) fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        let path = self.path.clone();
        self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))
    }

    // ----- entitlements -------------------------------------------------

    /// Adds an entitlement and returns it with its id.
    pub fn add_entitlement(&mut self, new: &NewEntitlement, now: i64) -> Result<Entitlement> {
        if !crate::core::request::is_plain_name(&new.product) {
            return Err(Error::Usage(format!("product {:?}: {}", new.product, crate::core::request::PLAIN_NAME_RULE)));
        }
        if let Some(n) = &new.name {
            check_name(n)?;
        }
        let features = features_json(&new.features)?;
        let path = self.path.clone();
        let tx = self.write_tx()?;
        if let Some(n) = &new.name {
            let taken: bool = tx
                .query_row("SELECT EXISTS(SELECT 1 FROM entitlements WHERE name = ?1)", [n], |r| r.get(0))
                .map_err(|e| db_err(&path, e))?;
            if taken {
                return Err(Error::Usage(format!("an entitlement named {n:?} already exists")));
            }
        }
        tx.execute(
            "INSERT INTO entitlements (name, product, machines, features, expires, created_at, updated_at,
                                       allow_weak_binding)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
            params![new.name, new.product, new.machines, features, new.expires, now, new.allow_weak_binding],
        )
        .map_err(|e| db_err(&path, e))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(|e| db_err(&path, e))?;
        self.entitlement_by_id(id)
    }

    /// All entitlements, by id.
    pub fn entitlements(&self) -> Result<Vec<Entitlement>> {
        let mut st = self.conn.prepare(&format!("{ENT_SELECT} ORDER BY id")).map_err(|e| self.err(e))?;
        let rows = st.query_map([], ent_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Finds an entitlement by id or unique name.
    pub fn entitlement(&self, selector: &str) -> Result<Entitlement> {
        find_entitlement(&self.conn, selector).map_err(|e| self.err(e))?.ok_or_else(|| no_entitlement(selector))
    }

    fn entitlement_by_id(&self, id: i64) -> Result<Entitlement> {
        self.entitlement(&id.to_string())
    }

    /// Changes an entitlement. Lowering its machine count below the machines
    /// already counted is refused (release seats first).
    pub fn update_entitlement(&mut self, selector: &str, upd: &EntitlementUpdate, now: i64) -> Result<Entitlement> {
        if let Some(Some(n)) = &upd.name {
            check_name(n)?;
        }
        let path = self.path.clone();
        let tx = self.write_tx()?;
        let ent =
            find_entitlement(&tx, selector).map_err(|e| db_err(&path, e))?.ok_or_else(|| no_entitlement(selector))?;
        if let Some(m) = upd.machines {
            if m < ent.used {
                return Err(Error::Refused(format!(
                    "{} has {} machines counted: it cannot allow fewer ({m}); release seats first",
                    ent.label(),
                    ent.used
                )));
            }
            tx.execute("UPDATE entitlements SET machines = ?1 WHERE id = ?2", params![m, ent.id])
                .map_err(|e| db_err(&path, e))?;
        }
        if let Some(f) = &upd.features {
            tx.execute("UPDATE entitlements SET features = ?1 WHERE id = ?2", params![features_json(f)?, ent.id])
                .map_err(|e| db_err(&path, e))?;
        }
        if let Some(w) = upd.allow_weak_binding {
            tx.execute("UPDATE entitlements SET allow_weak_binding = ?1 WHERE id = ?2", params![w, ent.id])
                .map_err(|e| db_err(&path, e))?;
        }
        if let Some(x) = &upd.expires {
            tx.execute("UPDATE entitlements SET expires = ?1 WHERE id = ?2", params![x, ent.id])
                .map_err(|e| db_err(&path, e))?;
        }
        if let Some(n) = &upd.name {
            if let Some(n) = n {
                let taken: bool = tx
                    .query_row(
                        "SELECT EXISTS(SELECT 1 FROM entitlements WHERE name = ?1 AND id != ?2)",
                        params![n, ent.id],
                        |r| r.get(0),
                    )
                    .map_err(|e| db_err(&path, e))?;
                if taken {
                    return Err(Error::Usage(format!("an entitlement named {n:?} already exists")));
                }
            }
            tx.execute("UPDATE entitlements SET name = ?1 WHERE id = ?2", params![n, ent.id])
                .map_err(|e| db_err(&path, e))?;
        }
        tx.execute("UPDATE entitlements SET updated_at = ?1 WHERE id = ?2", params![now, ent.id])
            .map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        self.entitlement_by_id(ent.id)
    }

    /// The machines (CMIDs) an entitlement has counted, with when.
    pub fn seats(&self, entitlement: i64) -> Result<Vec<(String, i64)>> {
        let mut st = self
            .conn
            .prepare("SELECT cmid, counted_at FROM seats WHERE entitlement_id = ?1 ORDER BY counted_at, cmid")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([entitlement], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    // ----- tokens -------------------------------------------------------

    /// One token by serial.
    pub fn token(&self, serial: &str) -> Result<TokenRecord> {
        let sql = format!("{TOKEN_SELECT} WHERE t.serial = ?1");
        self.conn
            .query_row(&sql, [serial], token_row)
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::Usage(format!("no token with serial {serial} in ledger {}", self.path.display())))
    }

    /// Tokens matching `filter`, by issue time then serial.
    pub fn tokens(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>> {
        let mut sql = format!("{TOKEN_SELECT} WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(p) = &filter.product {
            args.push(p.clone().into());
            sql += &format!(" AND t.product = ?{}", args.len());
        }
        if let Some(m) = &filter.machine {
            args.push(m.clone().into());
            sql += &format!(" AND t.cmid = ?{}", args.len());
        }
        if let Some(e) = filter.entitlement {
            args.push(e.into());
            sql += &format!(" AND t.entitlement_id = ?{}", args.len());
        }
        if let Some((now, secs)) = filter.expiring_within {
            args.push(now.into());
            args.push(now.saturating_add(secs).into());
            sql += &format!(" AND t.expires >= ?{} AND t.expires <= ?{}", args.len() - 1, args.len());
        }
        if let Some(t) = filter.issued_since {
            args.push(t.into());
            sql += &format!(" AND t.issued_at >= ?{}", args.len());
        }
        sql += " ORDER BY t.issued_at, t.serial";
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = st.query_map(rusqlite::params_from_iter(args), token_row).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Number of tokens recorded.
    pub fn token_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM tokens", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    // ----- releases and revocations --------------------------------------

    /// Frees the seat of the machine a token was issued to, recording why.
    /// The machine's tokens stay valid until they expire (revoke them to
    /// stop them); re-issuing to the machine later counts it again.
    pub fn release(&mut self, serial: &str, reason: &str, now: i64) -> Result<Release> {
        let rec = self.token(serial)?;
        let ent = rec.entitlement.ok_or_else(|| {
            Error::Usage(format!("token {serial} was not counted against an entitlement: there is no seat to release"))
        })?;
        self.release_seat(ent, &rec.cmid, Some(serial), reason, now)
    }

    /// Frees the seats a machine holds, recording why. With several
    /// entitlements counting the machine, `entitlement` must say which.
    pub fn release_machine(
        &mut self,
        cmid: &str,
        entitlement: Option<&str>,
        reason: &str,
        now: i64,
    ) -> Result<Release> {
        let ent = match entitlement {
            Some(sel) => self.entitlement(sel)?.id,
            None => {
                let mut st =
                    self.conn.prepare("SELECT entitlement_id FROM seats WHERE cmid = ?1").map_err(|e| self.err(e))?;
                let ids = st
                    .query_map([cmid], |r| r.get::<_, i64>(0))
                    .and_then(|r| r.collect::<rusqlite::Result<Vec<i64>>>())
                    .map_err(|e| self.err(e))?;
                match ids.as_slice() {
                    [] => return Err(Error::NothingToRelease { cmid: cmid.to_string(), entitlement: None }),
                    [one] => *one,
                    many => {
                        return Err(Error::AmbiguousSeat { cmid: cmid.to_string(), entitlements: many.to_vec() });
                    }
                }
            }
        };
        self.release_seat(ent, cmid, None, reason, now)
    }

    fn release_seat(&mut self, ent: i64, cmid: &str, serial: Option<&str>, reason: &str, now: i64) -> Result<Release> {
        if reason.trim().is_empty() {
            return Err(Error::ReasonRequired { what: "release" });
        }
        let path = self.path.clone();
        let tx = self.write_tx()?;
        let e = find_entitlement(&tx, &ent.to_string())
            .map_err(|e| db_err(&path, e))?
            .ok_or_else(|| no_entitlement(&ent.to_string()))?;
        let n = tx
            .execute("DELETE FROM seats WHERE entitlement_id = ?1 AND cmid = ?2", params![ent, cmid])
            .map_err(|e| db_err(&path, e))?;
        if n == 0 {
            return Err(Error::NothingToRelease { cmid: cmid.to_string(), entitlement: Some(e.label()) });
        }
        tx.execute("UPDATE entitlements SET used = used - 1 WHERE id = ?1", [ent]).map_err(|e| db_err(&path, e))?;
        tx.execute(
            "UPDATE tokens SET released_at = ?1 WHERE cmid = ?3 AND +entitlement_id = ?2 AND released_at IS NULL",
            params![now, ent, cmid],
        )
        .map_err(|e| db_err(&path, e))?;
        tx.execute(
            "INSERT INTO releases (entitlement_id, cmid, serial, reason, released_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ent, cmid, serial, reason, now],
        )
        .map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(Release {
            entitlement: ent,
            cmid: cmid.into(),
            serial: serial.map(str::to_string),
            reason: reason.into(),
            released_at: now,
        })
    }

    /// Releases recorded, oldest first.
    pub fn releases(&self) -> Result<Vec<Release>> {
        let mut st = self
            .conn
            .prepare("SELECT entitlement_id, cmid, serial, reason, released_at FROM releases ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(Release {
                    entitlement: r.get(0)?,
                    cmid: r.get(1)?,
                    serial: r.get(2)?,
                    reason: r.get(3)?,
                    released_at: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Records that a token is revoked. Revoking does not free its seat
    /// (release does). Revoking a token twice is refused, naming the first
    /// revocation; an unknown serial is an error.
    pub fn revoke(&mut self, serial: &str, reason: &str, now: i64) -> Result<RevokedToken> {
        if reason.trim().is_empty() {
            return Err(Error::ReasonRequired { what: "revocation" });
        }
        let rec = self.token(serial)?;
        let path = self.path.clone();
        let tx = self.write_tx()?;
        let prior: Option<(String, i64)> = tx
            .query_row("SELECT reason, revoked_at FROM revocations WHERE serial = ?1", [serial], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| db_err(&path, e))?;
        if let Some((why, at)) = prior {
            return Err(Error::Refused(format!(
                "token {serial} is already revoked (at {}: {why})",
                crate::core::clock::rfc3339(at)
            )));
        }
        tx.execute(
            "INSERT INTO revocations (serial, reason, revoked_at) VALUES (?1, ?2, ?3)",
            params![serial, reason, now],
        )
        .map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(RevokedToken {
            serial: serial.into(),
            reason: reason.into(),
            revoked_at: now,
            product: rec.product,
            cmid: rec.cmid,
            entitlement: rec.entitlement,
            expires: rec.expires,
        })
    }

    /// Every revoked token, by revocation time then serial.
    pub fn revoked_tokens(&self) -> Result<Vec<RevokedToken>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT r.serial, r.reason, r.revoked_at, t.product, t.cmid, t.entitlement_id, t.expires
                 FROM revocations r JOIN tokens t ON t.serial = r.serial ORDER BY r.revoked_at, r.serial",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(RevokedToken {
                    serial: r.get(0)?,
                    reason: r.get(1)?,
                    revoked_at: r.get(2)?,
                    product: r.get(3)?,
                    cmid: r.get(4)?,
                    entitlement: r.get(5)?,
                    expires: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| self.err(e))
    }

    /// Fills the ledger with `count` synthetic tokens under a new entitlement
    /// named `name`, with plain SQL (no signing): for benchmarks that need a
    /// large ledger. The token texts are random placeholders of realistic size.
    #[doc(hidden)]
    pub fn bench_fill(&mut self, name: &str, count: u64, now: i64) -> Result<Entitlement> {
        let ent = self.add_entitlement(
            &NewEntitlement {
                product: "bench-fill".into(),
                machines: u32::try_from(count).unwrap_or(u32::MAX),
                name: Some(name.into()),
                ..Default::default()
            },
            now,
        )?;
        let path = self.path.clone();
        let tx = self.write_tx()?;
        tx.execute("INSERT OR IGNORE INTO jws_headers (header) VALUES ('bench-fill')", [])
            .map_err(|e| db_err(&path, e))?;
        let header: i64 = tx
            .query_row("SELECT id FROM jws_headers WHERE header = 'bench-fill'", [], |r| r.get(0))
            .map_err(|e| db_err(&path, e))?;
        tx.execute_batch(&format!(
            "CREATE TEMP TABLE fill AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
               SELECT i, lower(hex(randomblob(16))) AS serial, 'FILL-' || lower(hex(randomblob(10))) AS cmid FROM n;
             INSERT INTO seats (entitlement_id, cmid, counted_at) SELECT {id}, cmid, {now} FROM fill;
             INSERT INTO tokens (serial, entitlement_id, product, cmid, components, issued_at, not_before, expires,
                                 signer, header_id, body, request_nonce, request_digest)
               SELECT serial, {id}, 'bench-fill', cmid, '[]', {now} - i, {now} - i, {now} + 86400 * 180 - i,
                      'bench-fill', {header}, hex(randomblob(350)) || '.' || hex(randomblob(256)),
                      lower(hex(randomblob(8))), lower(hex(randomblob(32)))
               FROM fill;
             UPDATE entitlements SET used = {count} WHERE id = {id};
             DROP TABLE fill;",
            id = ent.id
        ))
        .map_err(|e| db_err(&path, e))?;
        tx.commit().map_err(|e| db_err(&path, e))?;
        self.entitlement_by_id(ent.id)
    }
}

// ----- row mapping and helpers ----------------------------------------------

const ENT_SELECT: &str =
    "SELECT id, name, product, machines, used, features, expires, created_at, updated_at, allow_weak_binding
     FROM entitlements";

pub(crate) const TOKEN_SELECT: &str = "SELECT t.serial, t.entitlement_id, t.product, t.cmid, t.components, t.issued_at,
        t.not_before, t.expires, t.signer, t.request_nonce, t.request_digest, t.replaces, t.released_at,
        r.revoked_at, h.header || '.' || t.body
     FROM tokens t JOIN jws_headers h ON h.id = t.header_id LEFT JOIN revocations r ON r.serial = t.serial";

fn ent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entitlement> {
    let features: String = r.get(5)?;
    Ok(Entitlement {
        id: r.get(0)?,
        name: r.get(1)?,
        product: r.get(2)?,
        machines: r.get(3)?,
        used: r.get(4)?,
        features: serde_json::from_str(&features).map_err(|e| bad_column(5, e))?,
        expires: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        allow_weak_binding: r.get(9)?,
    })
}

pub(crate) fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let components: String = r.get(4)?;
    Ok(TokenRecord {
        serial: r.get(0)?,
        entitlement: r.get(1)?,
        product: r.get(2)?,
        cmid: r.get(3)?,
        components: serde_json::from_str(&components).map_err(|e| bad_column(4, e))?,
        issued_at: r.get(5)?,
        not_before: r.get(6)?,
        expires: r.get(7)?,
        signer: r.get(8)?,
        request_nonce: r.get(9)?,
        request_digest: r.get(10)?,
        replaces: r.get(11)?,
        released_at: r.get(12)?,
        revoked_at: r.get(13)?,
        token: r.get(14)?,
    })
}

fn bad_column(i: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

pub(crate) fn find_entitlement(conn: &Connection, selector: &str) -> rusqlite::Result<Option<Entitlement>> {
    let sel = selector.trim();
    if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 = match sel.parse() {
            Ok(id) => id,
            Err(_) => return Ok(None),
        };
        conn.query_row(&format!("{ENT_SELECT} WHERE id = ?1"), [id], ent_row).optional()
    } else {
        conn.query_row(&format!("{ENT_SELECT} WHERE name = ?1"), [sel], ent_row).optional()
    }
}

fn no_entitlement(selector: &str) -> Error {
    Error::UnknownEntitlement { selector: selector.to_string() }
}

fn check_name(n: &str) -> Result<()> {
    if n.is_empty() || n.len() > 100 || n.trim() != n || n.chars().any(char::is_control) {
        return Err(Error::Usage(format!(
            "invalid entitlement name {n:?}: 1 to 100 characters, no control characters or surrounding spaces"
        )));
    }
    if n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Usage(format!("invalid entitlement name {n:?}: a name cannot be all digits (ids are)")));
    }
    Ok(())
}

fn features_json(f: &[String]) -> Result<String> {
    if let Some(x) = f.iter().find(|x| !crate::core::request::is_plain_name(x)) {
        return Err(Error::Usage(format!("feature name {x:?}: {}", crate::core::request::PLAIN_NAME_RULE)));
    }
    Ok(serde_json::to_string(f).expect("strings serialize"))
}

fn not_a_ledger(path: &Path, why: &str) -> Error {
    Error::format(format!("ledger {}", path.display()), format!("not a tka ledger ({why}); nothing was changed"))
}

/// Turns an SQLite error into a one-line error naming the ledger.
pub(crate) fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode as C;
    let what = format!("ledger {}", path.display());
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            C::NotADatabase | C::DatabaseCorrupt => {
                return Error::format(
                    what,
                    "the file is damaged or not an SQLite database; nothing was changed: restore it from a backup",
                )
            }
            C::DatabaseBusy | C::DatabaseLocked => return Error::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "the ledger is locked by another process (busy timeout reached); nothing was changed: try again",
                ),
            ),
            C::DiskFull => {
                return Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full; the transaction was rolled back"),
                )
            }
            C::SystemIoFailure | C::CannotOpen | C::ReadOnly | C::PermissionDenied => {
                return Error::io(path, std::io::Error::other(format!("{e}; the transaction was rolled back")))
            }
            _ => {}
        }
    }
    if matches!(e, rusqlite::Error::InvalidQuery) {
        return Error::format(what, "cannot switch the ledger to WAL mode");
    }
    Error::format(what, e)
}

#[cfg(test)]
mod tests {
    // The schema's migrations, run through `Ledger::open`.
    use super::schema::{APPLICATION_ID, MIGRATIONS};
    use super::{Ledger, SCHEMA_VERSION};

    fn plan(l: &Ledger, sql: &str) -> String {
        let mut st = l.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(3)).unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    }

    /// A version 1 ledger at `path` as tka wrote it, then `sql` run on it.
    fn version_1_ledger(path: &std::path::Path, sql: &str) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute_batch(sql).unwrap();
    }

    /// A foreign trigger in a version 1 ledger is refused before any
    /// migration runs: every version is checked against its own schema.
    #[test]
    fn an_old_ledger_with_a_foreign_trigger_is_not_migrated() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ledger.sqlite");
        version_1_ledger(&path, "CREATE TRIGGER t AFTER INSERT ON tokens BEGIN DELETE FROM seats; END;");
        let before = std::fs::read(&path).unwrap();
        let e = Ledger::open(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("not a tka ledger (it holds a trigger \"t\" tka did not create); nothing was changed"),
            "{e}"
        );
        assert!(std::fs::read(&path).unwrap() == before, "the file is left as it was");
    }

    /// A version 1 ledger with tokens is migrated to version 2 in place: its
    /// rows are kept, and the lookups of a batch and of a release use the
    /// machine index.
    #[test]
    fn version_1_ledger_migrates_to_2() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ledger.sqlite");
        version_1_ledger(
            &path,
            "INSERT INTO entitlements (name, product, machines, created_at, updated_at) VALUES ('e', 'p', 5, 1, 1);
                 INSERT INTO jws_headers (header) VALUES ('h');
                 INSERT INTO tokens (serial, entitlement_id, product, cmid, components, issued_at, not_before,
                                     signer, header_id, body, request_digest)
                   VALUES ('00ff', 1, 'p', 'C1', '[]', 5, 5, 'fp', 1, 'b.s', 'dd');",
        );
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.schema_version().unwrap(), SCHEMA_VERSION);
        let n: i64 =
            l.conn.query_row("SELECT count(*) FROM tokens WHERE request_digest = 'dd'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        let indexes: Vec<String> = l
            .conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'tokens' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(indexes, ["tokens_entitlement_issued", "tokens_expires", "tokens_machine"]);
        let p = plan(
            &l,
            "SELECT t.serial FROM tokens t WHERE t.cmid = 'C1' AND t.product = 'p' AND +t.request_digest = 'dd'
               AND +t.entitlement_id IS 1 AND t.released_at IS NULL",
        );
        assert!(p.contains("tokens_machine"), "{p}");
        let p = plan(
            &l,
            "UPDATE tokens SET released_at = 9 WHERE cmid = 'C1' AND +entitlement_id = 1 AND released_at IS NULL",
        );
        assert!(p.contains("tokens_machine"), "{p}");
        let p = plan(&l, "SELECT serial FROM tokens t WHERE t.entitlement_id = 1 ORDER BY t.issued_at, t.serial");
        assert!(p.contains("tokens_entitlement_issued"), "{p}");
    }
}
