//! The issuer's ledger: counted entitlements and every issued token, in
//! SQLite or PostgreSQL.
//!
//! The ledger lives in the issuer home (`<home>/ledger.sqlite`, see
//! [`LEDGER_FILE`]), in another SQLite file, or in a PostgreSQL database
//! ([`Ledger::open_url`], [`LedgerLocation`]; feature `postgres`). It records entitlements (product, features, allowed
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
//!   busy timeout) and can never both take the last seat. On PostgreSQL every
//!   write is one transaction that locks the entitlement rows it counts
//!   against (`SELECT ... FOR UPDATE`), run again (up to [`WRITE_RETRIES`]
//!   times) when the server aborts it as a serialization failure or deadlock.
//!   Serials are the primary key: a duplicate cannot be stored.
//! - **Versions:** the schema is migrated forwards when a ledger is opened;
//!   a ledger from a newer tka is refused, never downgraded (SQLite keeps
//!   the version in `PRAGMA user_version`, PostgreSQL in the
//!   `schema_version` table).
//!
//! Time is always a parameter (`now`, Unix seconds).

pub(crate) mod db;
mod fill;
#[cfg(feature = "postgres")]
pub(crate) mod pg;
mod schema;
pub(crate) mod sql;

pub use schema::SCHEMA_VERSION;
pub use sql::LedgerLocation;

use crate::core::error::{Error, Result};
use crate::core::machine::ComponentHash;
use crate::core::product_key::ProductKey;
use db::Db;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
pub(crate) use sql::sqlite_err as db_err;
use sql::{args, newer_schema, not_a_ledger, retryable, Row, Val};
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
    backend: Backend,
    location: LedgerLocation,
    busy_timeout: Duration,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("location", &self.location).finish_non_exhaustive()
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
    /// Its product key for online activation (only its hash is stored).
    pub key: KeyState,
}

/// Whether an entitlement has a product key ([`crate::core::product_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// No key.
    None,
    /// A key that activates machines online.
    Active,
    /// A key that was disabled: it activates nothing.
    Disabled,
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

/// The backend of an open ledger.
enum Backend {
    Sqlite(Connection),
    #[cfg(feature = "postgres")]
    Pg(Box<std::cell::RefCell<pg::PgConn>>),
}

/// How many times a write transaction PostgreSQL aborted (a serialization
/// failure or a deadlock) is run again before its error is returned.
pub const WRITE_RETRIES: u32 = 8;

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

    /// Opens the ledger at `location`: [`Ledger::open`] (or, unless
    /// `create`, [`Ledger::open_existing`]) for a file, [`Ledger::open_url`]
    /// for a PostgreSQL database.
    pub fn open_location(location: &LedgerLocation, create: bool) -> Result<Ledger> {
        match location {
            LedgerLocation::File(p) if create => Self::open(p),
            LedgerLocation::File(p) => Self::open_existing(p),
            LedgerLocation::Postgres(url) => Self::open_url(url),
        }
    }

    /// Opens the ledger in the PostgreSQL database at `url`
    /// (`postgres://user[:password]@host[:port]/database`), creating its
    /// schema in an empty database and migrating an older one forwards.
    /// Refuses a database that holds other tables and a ledger written by
    /// a newer tka. A plain path (no `postgres://`) opens an SQLite file.
    pub fn open_url(url: &str) -> Result<Ledger> {
        let location = LedgerLocation::parse(url);
        let LedgerLocation::Postgres(url) = &location else {
            return Self::open_location(&location, true);
        };
        #[cfg(feature = "postgres")]
        {
            let mut conn = pg::PgConn::connect(url, &location.display())?;
            conn.prepare_schema(&pg::LEDGER_SCHEMA)?;
            Ok(Ledger {
                backend: Backend::Pg(Box::new(std::cell::RefCell::new(conn))),
                location,
                busy_timeout: DEFAULT_BUSY_TIMEOUT,
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            Err(Error::Ledger {
                ledger: location.display(),
                detail: "this tka was built without PostgreSQL support (the postgres feature)".into(),
                code: None,
            })
        }
    }

    fn open_inner(path: &Path, create: bool) -> Result<Ledger> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(path, e))?;
        let ledger = Ledger {
            backend: Backend::Sqlite(conn),
            location: LedgerLocation::File(path.to_path_buf()),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        };
        let conn = ledger.sqlite().expect("an SQLite ledger");
        // Racing first opens of a new file may be told "busy" at once: run again.
        sql::retry_while_busy(ledger.busy_timeout, || prepare_file(conn, path, ledger.busy_timeout))?;
        Ok(ledger)
    }

    /// How long a write waits for another process holding the ledger (an
    /// SQLite file's lock; PostgreSQL's row locks wait as long as needed).
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.busy_timeout = timeout;
        match &self.backend {
            Backend::Sqlite(c) => c.busy_timeout(timeout).map_err(|e| db_err(self.path(), e)),
            #[cfg(feature = "postgres")]
            Backend::Pg(_) => Ok(()),
        }
    }

    /// Where the ledger is.
    pub fn location(&self) -> &LedgerLocation {
        &self.location
    }

    /// The ledger file; an empty path for a PostgreSQL ledger (see
    /// [`Ledger::location`]).
    pub fn path(&self) -> &Path {
        match &self.location {
            LedgerLocation::File(p) => p,
            LedgerLocation::Postgres(_) => Path::new(""),
        }
    }

    /// The schema version of the open ledger.
    pub fn schema_version(&self) -> Result<i64> {
        match &self.backend {
            Backend::Sqlite(c) => sqlite_version(c).map_err(|e| db_err(self.path(), e)),
            #[cfg(feature = "postgres")]
            Backend::Pg(c) => Ok(c.borrow_mut().version(&pg::LEDGER_SCHEMA)?.map_or(0, |v| v.0)),
        }
    }

    /// The SQLite connection of a file ledger.
    pub(crate) fn sqlite(&self) -> Option<&Connection> {
        match &self.backend {
            Backend::Sqlite(c) => Some(c),
            #[cfg(feature = "postgres")]
            Backend::Pg(_) => None,
        }
    }

    /// The ledger's connection, outside any transaction (each statement on
    /// its own).
    pub(crate) fn db(&self) -> Db<'_> {
        match &self.backend {
            Backend::Sqlite(c) => Db::Sqlite(c, self.path()),
            #[cfg(feature = "postgres")]
            Backend::Pg(c) => Db::Pg(c),
        }
    }

    /// A transaction: a write one takes SQLite's write lock at once
    /// (`BEGIN IMMEDIATE`) or, on PostgreSQL, reads entitlement rows
    /// `FOR UPDATE`; a read one is one snapshot. Rolled back unless
    /// committed.
    pub(crate) fn begin(&self, write: bool) -> Result<Tx<'_>> {
        match &self.backend {
            Backend::Sqlite(c) => {
                c.execute_batch(if write { "BEGIN IMMEDIATE" } else { "BEGIN" }).map_err(|e| db_err(self.path(), e))?
            }
            #[cfg(feature = "postgres")]
            Backend::Pg(c) => {
                let mut c = c.borrow_mut();
                c.batch(if write {
                    "BEGIN ISOLATION LEVEL READ COMMITTED"
                } else {
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                })?;
                c.writing = write;
            }
        }
        Ok(Tx { ledger: self, open: true })
    }

    /// Runs `f` in one write transaction and commits it; on PostgreSQL, a
    /// transaction the server aborted (serialization failure, deadlock) is
    /// run again, up to [`WRITE_RETRIES`] times. An error from `f` rolls
    /// everything back.
    pub(crate) fn write<T>(&self, mut f: impl FnMut(Db<'_>) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            let tx = self.begin(true)?;
            let r = f(tx.db());
            let r = match r {
                Ok(v) => crate::core::fsutil::crash_point("ledger.commit", Path::new(""))
                    .map_err(|e| Error::io(Path::new("ledger"), e))
                    .and_then(|()| tx.commit())
                    .and_then(|()| {
                        crate::core::fsutil::crash_point("ledger.committed", Path::new(""))
                            .map_err(|e| Error::io(Path::new("ledger"), e))
                    })
                    .map(|()| v),
                Err(e) => {
                    drop(tx);
                    Err(e)
                }
            };
            match r {
                Err(e) if retryable(&e) && tries < WRITE_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    // ----- entitlements -------------------------------------------------

    /// Adds an entitlement and returns it with its id.
    pub fn add_entitlement(&mut self, new: &NewEntitlement, now: i64) -> Result<Entitlement> {
        self.add_entitlement_inner(new, None, now)
    }

    /// Adds an entitlement with a new random product key, in one
    /// transaction; returns it and the key (only its hash is stored, so
    /// this is the one time the key can be shown).
    pub fn add_entitlement_with_key(&mut self, new: &NewEntitlement, now: i64) -> Result<(Entitlement, ProductKey)> {
        let key = ProductKey::generate();
        let e = self.add_entitlement_inner(new, Some(&key.hash()), now)?;
        Ok((e, key))
    }

    fn add_entitlement_inner(&mut self, new: &NewEntitlement, key_hash: Option<&str>, now: i64) -> Result<Entitlement> {
        if !crate::core::request::is_plain_name(&new.product) {
            return Err(Error::Usage(format!("product {:?}: {}", new.product, crate::core::request::PLAIN_NAME_RULE)));
        }
        if let Some(n) = &new.name {
            check_name(n)?;
        }
        let features = features_json(&new.features)?;
        let id = self.write(|db| {
            if let Some(n) = &new.name {
                let taken = db.query_one("SELECT EXISTS(SELECT 1 FROM entitlements WHERE name = ?1)", args![n])?;
                if taken.bool(0)? {
                    return Err(Error::Usage(format!("an entitlement named {n:?} already exists")));
                }
            }
            db.query_one(
                "INSERT INTO entitlements (name, product, machines, features, expires, created_at, updated_at,
                                           allow_weak_binding, key_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8) RETURNING id",
                args![
                    &new.name,
                    &new.product,
                    new.machines,
                    &features,
                    new.expires,
                    now,
                    new.allow_weak_binding,
                    key_hash
                ],
            )?
            .i64(0)
        })?;
        self.entitlement_by_id(id)
    }

    /// All entitlements, by id.
    pub fn entitlements(&self) -> Result<Vec<Entitlement>> {
        self.db().query(&format!("{ENT_SELECT} ORDER BY id"), &[])?.iter().map(ent_row).collect()
    }

    /// Finds an entitlement by id or unique name.
    pub fn entitlement(&self, selector: &str) -> Result<Entitlement> {
        find_entitlement(self.db(), selector)?.ok_or_else(|| no_entitlement(selector))
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
        let features = upd.features.as_deref().map(features_json).transpose()?;
        let id = self.write(|db| {
            let ent = find_entitlement(db, selector)?.ok_or_else(|| no_entitlement(selector))?;
            if let Some(m) = upd.machines {
                if m < ent.used {
                    return Err(Error::Refused(format!(
                        "{} has {} machines counted: it cannot allow fewer ({m}); release seats first",
                        ent.label(),
                        ent.used
                    )));
                }
                db.execute("UPDATE entitlements SET machines = ?1 WHERE id = ?2", args![m, ent.id])?;
            }
            if let Some(f) = &features {
                db.execute("UPDATE entitlements SET features = ?1 WHERE id = ?2", args![f, ent.id])?;
            }
            if let Some(w) = upd.allow_weak_binding {
                db.execute("UPDATE entitlements SET allow_weak_binding = ?1 WHERE id = ?2", args![w, ent.id])?;
            }
            if let Some(x) = &upd.expires {
                db.execute("UPDATE entitlements SET expires = ?1 WHERE id = ?2", args![*x, ent.id])?;
            }
            if let Some(n) = &upd.name {
                if let Some(n) = n {
                    let taken = db.query_one(
                        "SELECT EXISTS(SELECT 1 FROM entitlements WHERE name = ?1 AND id != ?2)",
                        args![n, ent.id],
                    )?;
                    if taken.bool(0)? {
                        return Err(Error::Usage(format!("an entitlement named {n:?} already exists")));
                    }
                }
                db.execute("UPDATE entitlements SET name = ?1 WHERE id = ?2", args![n, ent.id])?;
            }
            db.execute("UPDATE entitlements SET updated_at = ?1 WHERE id = ?2", args![now, ent.id])?;
            Ok(ent.id)
        })?;
        self.entitlement_by_id(id)
    }

    // ----- product keys ------------------------------------------------

    /// Gives an entitlement (id or name) a new random product key and
    /// returns it; only its hash is stored. A key it had before stops
    /// working at once (rotation); a disabled one is replaced by an
    /// active one. The key is returned once: it cannot be read back.
    pub fn new_key(&mut self, selector: &str, now: i64) -> Result<(Entitlement, ProductKey)> {
        let key = ProductKey::generate();
        let hash = key.hash();
        let id = self.write(|db| {
            let ent = find_entitlement(db, selector)?.ok_or_else(|| no_entitlement(selector))?;
            db.execute(
                "UPDATE entitlements SET key_hash = ?1, key_disabled = ?2, updated_at = ?3 WHERE id = ?4",
                args![&hash, false, now, ent.id],
            )?;
            Ok(ent.id)
        })?;
        Ok((self.entitlement_by_id(id)?, key))
    }

    /// Disables an entitlement's product key: it activates nothing from
    /// now on ([`IssueRefusal::KeyDisabled`](crate::core::error::IssueRefusal::KeyDisabled));
    /// [`Ledger::new_key`] gives it a new one. An entitlement without a key
    /// is refused ([`Error::Usage`]).
    pub fn disable_key(&mut self, selector: &str, now: i64) -> Result<Entitlement> {
        let id = self.write(|db| {
            let ent = find_entitlement(db, selector)?.ok_or_else(|| no_entitlement(selector))?;
            if ent.key == KeyState::None {
                return Err(Error::Usage(format!("{} has no product key to disable", ent.label())));
            }
            db.execute(
                "UPDATE entitlements SET key_disabled = ?1, updated_at = ?2 WHERE id = ?3",
                args![true, now, ent.id],
            )?;
            Ok(ent.id)
        })?;
        self.entitlement_by_id(id)
    }

    /// The entitlement a product key belongs to. An unknown key (never
    /// given, or rotated away) is [`IssueRefusal::UnknownKey`](crate::core::error::IssueRefusal::UnknownKey),
    /// a disabled one [`IssueRefusal::KeyDisabled`](crate::core::error::IssueRefusal::KeyDisabled),
    /// both inside [`Error::Issue`].
    pub fn entitlement_for_key(&self, key: &ProductKey) -> Result<Entitlement> {
        use crate::core::error::IssueRefusal;
        let row = self.db().query_opt(&format!("{ENT_SELECT} WHERE key_hash = ?1"), args![key.hash()])?;
        let ent = row.as_ref().map(ent_row).transpose()?.ok_or(Error::Issue(IssueRefusal::UnknownKey))?;
        if ent.key == KeyState::Disabled {
            return Err(Error::Issue(IssueRefusal::KeyDisabled { entitlement: ent.label() }));
        }
        Ok(ent)
    }

    /// The machines (CMIDs) an entitlement has counted, with when.
    pub fn seats(&self, entitlement: i64) -> Result<Vec<(String, i64)>> {
        let rows = self.db().query(
            "SELECT cmid, counted_at FROM seats WHERE entitlement_id = ?1 ORDER BY counted_at, cmid",
            args![entitlement],
        )?;
        rows.iter().map(|r| Ok((r.text(0)?, r.i64(1)?))).collect()
    }

    // ----- tokens -------------------------------------------------------

    /// One token by serial.
    pub fn token(&self, serial: &str) -> Result<TokenRecord> {
        let sql = format!("{TOKEN_SELECT} WHERE t.serial = ?1");
        match self.db().query_opt(&sql, args![serial])? {
            Some(r) => token_row(&r),
            None => Err(Error::Usage(format!("no token with serial {serial} in ledger {}", self.location))),
        }
    }

    /// Tokens matching `filter`, by issue time then serial.
    pub fn tokens(&self, filter: &TokenFilter) -> Result<Vec<TokenRecord>> {
        let mut sql = format!("{TOKEN_SELECT} WHERE TRUE");
        let mut args: Vec<Val> = Vec::new();
        if let Some(p) = &filter.product {
            args.push(p.into());
            sql += &format!(" AND t.product = ?{}", args.len());
        }
        if let Some(m) = &filter.machine {
            args.push(m.into());
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
        self.db().query(&sql, &args)?.iter().map(token_row).collect()
    }

    /// Number of tokens recorded.
    pub fn token_count(&self) -> Result<u64> {
        Ok(self.db().query_one("SELECT count(*) FROM tokens", &[])?.i64(0)? as u64)
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
                let rows = self.db().query("SELECT entitlement_id FROM seats WHERE cmid = ?1", args![cmid])?;
                let ids = rows.iter().map(|r| r.i64(0)).collect::<Result<Vec<i64>>>()?;
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
        self.write(|db| {
            let e = find_entitlement(db, &ent.to_string())?.ok_or_else(|| no_entitlement(&ent.to_string()))?;
            let n = db.execute("DELETE FROM seats WHERE entitlement_id = ?1 AND cmid = ?2", args![ent, cmid])?;
            if n == 0 {
                return Err(Error::NothingToRelease { cmid: cmid.to_string(), entitlement: Some(e.label()) });
            }
            db.execute("UPDATE entitlements SET used = used - 1 WHERE id = ?1", args![ent])?;
            db.execute(
                "UPDATE tokens SET released_at = ?1 WHERE cmid = ?3 AND +entitlement_id = ?2 AND released_at IS NULL",
                args![now, ent, cmid],
            )?;
            db.execute(
                "INSERT INTO releases (entitlement_id, cmid, serial, reason, released_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![ent, cmid, serial, reason, now],
            )?;
            Ok(())
        })?;
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
        let rows = self
            .db()
            .query("SELECT entitlement_id, cmid, serial, reason, released_at FROM releases ORDER BY id", &[])?;
        rows.iter()
            .map(|r| {
                Ok(Release {
                    entitlement: r.i64(0)?,
                    cmid: r.text(1)?,
                    serial: r.opt_text(2)?,
                    reason: r.text(3)?,
                    released_at: r.i64(4)?,
                })
            })
            .collect()
    }

    /// Records that a token is revoked. Revoking does not free its seat
    /// (release does). Revoking a token twice is refused, naming the first
    /// revocation; an unknown serial is an error.
    pub fn revoke(&mut self, serial: &str, reason: &str, now: i64) -> Result<RevokedToken> {
        if reason.trim().is_empty() {
            return Err(Error::ReasonRequired { what: "revocation" });
        }
        let rec = self.token(serial)?;
        self.write(|db| {
            let prior = db.query_opt("SELECT reason, revoked_at FROM revocations WHERE serial = ?1", args![serial])?;
            if let Some(r) = prior {
                return Err(Error::Refused(format!(
                    "token {serial} is already revoked (at {}: {})",
                    crate::core::clock::rfc3339(r.i64(1)?),
                    r.text(0)?
                )));
            }
            db.execute(
                "INSERT INTO revocations (serial, reason, revoked_at) VALUES (?1, ?2, ?3)",
                args![serial, reason, now],
            )?;
            Ok(())
        })?;
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
        let rows = self.db().query(
            "SELECT r.serial, r.reason, r.revoked_at, t.product, t.cmid, t.entitlement_id, t.expires
             FROM revocations r JOIN tokens t ON t.serial = r.serial ORDER BY r.revoked_at, r.serial",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(RevokedToken {
                    serial: r.text(0)?,
                    reason: r.text(1)?,
                    revoked_at: r.i64(2)?,
                    product: r.text(3)?,
                    cmid: r.text(4)?,
                    entitlement: r.opt_i64(5)?,
                    expires: r.opt_i64(6)?,
                })
            })
            .collect()
    }

    // ----- moving a ledger -----------------------------------------------

    /// Copies every row of this ledger (entitlements, seats, token headers,
    /// tokens, releases, revocations; ids and serials kept) into `target`,
    /// in one transaction on the target. Refuses a target that holds
    /// anything. Before committing, the counts per table and per
    /// entitlement (tokens, seats, machines counted) are compared on both
    /// sides; any difference rolls the copy back. Returns the rows moved
    /// per table.
    pub fn copy_into(&self, target: &Ledger) -> Result<Vec<(&'static str, u64)>> {
        let source = self.begin(false)?;
        let src = source.db();
        let moved = target.write(|dst| {
            for (table, _) in MOVED_TABLES {
                let n = dst.query_one(&format!("SELECT count(*) FROM {table}"), &[])?.i64(0)?;
                if n != 0 {
                    return Err(Error::Refused(format!(
                        "ledger {}: the target is not empty ({n} rows in {table}); nothing was copied",
                        target.location
                    )));
                }
            }
            let mut moved = Vec::new();
            for (table, columns) in MOVED_TABLES {
                let key = columns.split(',').next().unwrap_or("1");
                let rows = src.query(&format!("SELECT {columns} FROM {table} ORDER BY {key}"), &[])?;
                let n = columns.split(',').count();
                let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
                let insert = format!("INSERT INTO {table} ({columns}) VALUES ({})", marks.join(", "));
                for r in &rows {
                    dst.execute(&insert, &r.0)?;
                }
                moved.push((*table, rows.len() as u64));
            }
            if dst.is_pg() {
                for table in ["entitlements", "jws_headers", "releases"] {
                    dst.query(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(max(id), 0) + 1, false) \
                             FROM {table}"
                        ),
                        &[],
                    )?;
                }
            }
            for check in VERIFY_QUERIES {
                let (a, b) = (src.query(check, &[])?, dst.query(check, &[])?);
                let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0);
                if !same {
                    return Err(Error::Refused(format!(
                        "ledger {}: the copy does not match its source ({check}); it was rolled back",
                        target.location
                    )));
                }
            }
            Ok(moved)
        })?;
        drop(source);
        Ok(moved)
    }
}

/// An open transaction on a ledger; rolled back when dropped uncommitted.
pub(crate) struct Tx<'l> {
    ledger: &'l Ledger,
    open: bool,
}

impl Tx<'_> {
    /// Its queries.
    pub(crate) fn db(&self) -> Db<'_> {
        self.ledger.db()
    }

    /// Commits it (a failed commit rolls back).
    pub(crate) fn commit(mut self) -> Result<()> {
        self.ledger.db().batch("COMMIT")?;
        self.open = false;
        self.ledger.end_tx();
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.ledger.db().batch("ROLLBACK");
            self.ledger.end_tx();
        }
    }
}

impl Ledger {
    fn end_tx(&self) {
        #[cfg(feature = "postgres")]
        if let Backend::Pg(c) = &self.backend {
            c.borrow_mut().writing = false;
        }
    }
}

/// The tables a ledger copy moves, in an order their references allow,
/// with their columns (the first is the key they are copied in order of).
const MOVED_TABLES: &[(&str, &str)] = &[
    (
        "entitlements",
        "id,name,product,machines,used,features,expires,created_at,updated_at,allow_weak_binding,key_hash,key_disabled",
    ),
    ("seats", "entitlement_id,cmid,counted_at"),
    ("jws_headers", "id,header"),
    (
        "tokens",
        "serial,entitlement_id,product,cmid,components,issued_at,not_before,expires,signer,header_id,body,\
         request_nonce,request_digest,replaces,released_at",
    ),
    ("releases", "id,entitlement_id,cmid,serial,reason,released_at"),
    ("revocations", "serial,reason,revoked_at"),
];

/// What a ledger copy compares on both sides before it commits.
const VERIFY_QUERIES: &[&str] = &[
    "SELECT count(*) FROM entitlements",
    "SELECT count(*) FROM seats",
    "SELECT count(*) FROM jws_headers",
    "SELECT count(*) FROM tokens",
    "SELECT count(*) FROM releases",
    "SELECT count(*) FROM revocations",
    "SELECT e.id, e.used, e.machines, (SELECT count(*) FROM seats s WHERE s.entitlement_id = e.id),
            (SELECT count(*) FROM tokens t WHERE t.entitlement_id = e.id) FROM entitlements e ORDER BY e.id",
];

// ----- SQLite: opening, identity, migrations --------------------------------

fn sqlite_version(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
}

fn configure_read(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    // Nothing in the file's schema may call functions with side effects
    // (defence in depth: the schema is checked against tka's own).
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    // Reading the header first turns "not a database" into an error here.
    let _: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    Ok(())
}

/// Checks, configures and migrates an SQLite ledger file as it is opened.
fn prepare_file(conn: &Connection, path: &Path, busy_timeout: Duration) -> Result<()> {
    // Read-only checks first: a file that is not a tka ledger is refused
    // before anything (even the journal mode) is written to it.
    configure_read(conn, busy_timeout).map_err(|e| db_err(path, e))?;
    // One read transaction: the version, id and schema objects are read
    // from one snapshot (a first open racing another one that creates the
    // schema sees it before or after, never half).
    conn.execute_batch("BEGIN DEFERRED").map_err(|e| db_err(path, e))?;
    let checked = check_identity(conn, path);
    let _ = conn.execute_batch("COMMIT");
    checked?;
    configure(conn).map_err(|e| db_err(path, e))?;
    migrate(conn, path)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidQuery);
    }
    // FULL: a committed transaction is on disk before any token file is written.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// The version and application id are ones tka writes, and the schema
/// is exactly tka's for that version. Reads only.
fn check_identity(conn: &Connection, path: &Path) -> Result<()> {
    let what = path.display().to_string();
    let version = sqlite_version(conn).map_err(|e| db_err(path, e))?;
    let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| db_err(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(newer_schema(&what, version));
    }
    if version < 0 {
        return Err(not_a_ledger(&what, &format!("its schema version {version} is not one tka writes")));
    }
    if app_id != schema::APPLICATION_ID && (version > 0 || app_id != 0) {
        return Err(not_a_ledger(&what, "its application id is not tka's"));
    }
    // Every schema object (table, index, trigger, view) must be the one
    // tka's migrations create for `version`: a trigger or view added with
    // `sqlite3` could change what issuance counts.
    let found = schema::schema_objects(conn).map_err(|e| db_err(path, e))?;
    match schema::schema_difference(&found, version) {
        Some(why) => Err(not_a_ledger(&what, &why)),
        None => Ok(()),
    }
}

fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    if sqlite_version(conn).map_err(|e| db_err(path, e))? == SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| db_err(path, e))?;
    let r = migrate_locked(conn, path).and_then(|()| conn.execute_batch("COMMIT").map_err(|e| db_err(path, e)));
    if r.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    r
}

/// The migrations, inside the write lock.
fn migrate_locked(conn: &Connection, path: &Path) -> Result<()> {
    // Re-read inside the write lock: another process may have migrated meanwhile.
    let version = sqlite_version(conn).map_err(|e| db_err(path, e))?;
    let found = schema::schema_objects(conn).map_err(|e| db_err(path, e))?;
    if let Some(why) = schema::schema_difference(&found, version) {
        return Err(not_a_ledger(&path.display().to_string(), &why));
    }
    if version == 0 {
        conn.pragma_update(None, "application_id", schema::APPLICATION_ID).map_err(|e| db_err(path, e))?;
    }
    sql::run_migrations(schema::MIGRATIONS, version, |sql, to| {
        conn.execute_batch(sql).map_err(|e| db_err(path, e))?;
        conn.pragma_update(None, "user_version", to).map_err(|e| db_err(path, e))
    })
}
// ----- row mapping and helpers ----------------------------------------------

const ENT_SELECT: &str =
    "SELECT id, name, product, machines, used, features, expires, created_at, updated_at, allow_weak_binding,
            key_hash IS NOT NULL, key_disabled
     FROM entitlements";

pub(crate) const TOKEN_SELECT: &str = "SELECT t.serial, t.entitlement_id, t.product, t.cmid, t.components, t.issued_at,
        t.not_before, t.expires, t.signer, t.request_nonce, t.request_digest, t.replaces, t.released_at,
        r.revoked_at, h.header || '.' || t.body
     FROM tokens t JOIN jws_headers h ON h.id = t.header_id LEFT JOIN revocations r ON r.serial = t.serial";

fn ent_row(r: &Row) -> Result<Entitlement> {
    let id = r.i64(0)?;
    Ok(Entitlement {
        id,
        name: r.opt_text(1)?,
        product: r.text(2)?,
        machines: r.u32(3)?,
        used: r.u32(4)?,
        features: serde_json::from_str(&r.text(5)?)
            .map_err(|e| Error::format(format!("ledger entitlement {id}"), format!("features: {e}")))?,
        expires: r.opt_i64(6)?,
        created_at: r.i64(7)?,
        updated_at: r.i64(8)?,
        allow_weak_binding: r.bool(9)?,
        key: match (r.bool(10)?, r.bool(11)?) {
            (false, _) => KeyState::None,
            (true, false) => KeyState::Active,
            (true, true) => KeyState::Disabled,
        },
    })
}

/// A token row's components (JSON, as recorded), parsed.
pub(crate) fn row_components(serial: &str, json: &str) -> Result<Vec<ComponentHash>> {
    serde_json::from_str(json).map_err(|e| Error::format(format!("ledger token {serial}"), format!("components: {e}")))
}

pub(crate) fn token_row(r: &Row) -> Result<TokenRecord> {
    let serial = r.text(0)?;
    let components = row_components(&serial, &r.text(4)?)?;
    Ok(TokenRecord {
        entitlement: r.opt_i64(1)?,
        product: r.text(2)?,
        cmid: r.text(3)?,
        components,
        issued_at: r.i64(5)?,
        not_before: r.i64(6)?,
        expires: r.opt_i64(7)?,
        signer: r.text(8)?,
        request_nonce: r.opt_text(9)?,
        request_digest: r.opt_text(10)?,
        replaces: r.opt_text(11)?,
        released_at: r.opt_i64(12)?,
        revoked_at: r.opt_i64(13)?,
        token: r.text(14)?,
        serial,
    })
}

/// An entitlement by id or unique name; inside a PostgreSQL write
/// transaction its row is locked (`FOR UPDATE`) until the transaction ends,
/// so concurrent issuers against it take turns.
pub(crate) fn find_entitlement(db: Db<'_>, selector: &str) -> Result<Option<Entitlement>> {
    let lock = if db.locks_rows() { " FOR UPDATE" } else { "" };
    let sel = selector.trim();
    let row = if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 = match sel.parse() {
            Ok(id) => id,
            Err(_) => return Ok(None),
        };
        db.query_opt(&format!("{ENT_SELECT} WHERE id = ?1{lock}"), args![id])?
    } else {
        db.query_opt(&format!("{ENT_SELECT} WHERE name = ?1{lock}"), args![sel])?
    };
    row.as_ref().map(ent_row).transpose()
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

#[cfg(test)]
mod tests {
    // The schema's migrations, run through `Ledger::open`.
    use super::schema::{APPLICATION_ID, MIGRATIONS};
    use super::{Ledger, SCHEMA_VERSION};

    fn plan(l: &Ledger, sql: &str) -> String {
        let mut st = l.sqlite().unwrap().prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
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
        let n: i64 = l
            .sqlite()
            .unwrap()
            .query_row("SELECT count(*) FROM tokens WHERE request_digest = 'dd'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        let indexes: Vec<String> = l
            .sqlite()
            .unwrap()
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
