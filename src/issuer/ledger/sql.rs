//! What both ledger backends share: query values and rows, where a ledger
//! is, the translation of a query for PostgreSQL, and the errors that name
//! a ledger.

use crate::core::error::{Error, Result};
use std::path::Path;

/// A value passed to or read from a query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    I64(i64),
    Text(String),
    Bool(bool),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::I64(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::I64(i64::from(v))
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Bool(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}
impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Self {
        v.as_deref().map_or(Val::Null, Val::from)
    }
}

/// Query parameters: `args![a, b]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => { &[$($crate::issuer::ledger::sql::Val::from($x)),*][..] };
}
pub(crate) use args;

/// One row of a result.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) Vec<Val>);

impl Row {
    fn bad(&self, i: usize, want: &str) -> Error {
        Error::format("ledger row", format!("column {i} is {:?}, not {want}", self.0.get(i)))
    }
    pub(crate) fn i64(&self, i: usize) -> Result<i64> {
        match self.0.get(i) {
            Some(Val::I64(v)) => Ok(*v),
            _ => Err(self.bad(i, "an integer")),
        }
    }
    pub(crate) fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.i64(i).map(Some),
        }
    }
    pub(crate) fn u32(&self, i: usize) -> Result<u32> {
        u32::try_from(self.i64(i)?).map_err(|_| self.bad(i, "a count"))
    }
    pub(crate) fn text(&self, i: usize) -> Result<String> {
        match self.0.get(i) {
            Some(Val::Text(v)) => Ok(v.clone()),
            _ => Err(self.bad(i, "text")),
        }
    }
    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.0.get(i) {
            Some(Val::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    pub(crate) fn bool(&self, i: usize) -> Result<bool> {
        match self.0.get(i) {
            Some(Val::Bool(v)) => Ok(*v),
            Some(Val::I64(v)) => Ok(*v != 0),
            _ => Err(self.bad(i, "a boolean")),
        }
    }
}

/// Where a ledger is: an SQLite file or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerLocation {
    /// An SQLite file.
    File(std::path::PathBuf),
    /// A PostgreSQL connection URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl LedgerLocation {
    /// A `postgres://` or `postgresql://` URL is a PostgreSQL ledger;
    /// anything else is the path of an SQLite file.
    pub fn parse(s: &str) -> LedgerLocation {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            LedgerLocation::Postgres(s.to_string())
        } else {
            LedgerLocation::File(s.into())
        }
    }

    /// How messages name it: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            LedgerLocation::File(p) => p.display().to_string(),
            LedgerLocation::Postgres(u) => redact(u),
        }
    }
}

impl std::fmt::Display for LedgerLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// A URL with the password of its user part replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth, tail) = match rest.find('@') {
        Some(i) if !rest[..i].contains('/') => (&rest[..i], &rest[i..]),
        _ => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{tail}"),
        None => url.to_string(),
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::I64(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Bool(v) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// `sql` for PostgreSQL: `?N` becomes `$N`, and SQLite's index hint
/// `+column` becomes `column` (outside string literals).
#[cfg(feature = "postgres")]
pub(crate) fn to_pg(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut in_str = false;
    for (i, &c) in b.iter().enumerate() {
        let next = b.get(i + 1).copied().unwrap_or(b' ');
        match c {
            b'\'' => {
                in_str = !in_str;
                out.push('\'');
            }
            b'?' if !in_str && next.is_ascii_digit() => out.push('$'),
            b'+' if !in_str && next.is_ascii_alphabetic() => {}
            _ => out.push(c as char),
        }
    }
    out
}

/// A database that is not a tka ledger (`what` names it).
pub(crate) fn not_a_ledger(what: &str, why: &str) -> Error {
    not_ours("ledger", what, why)
}

/// A database that does not hold a tka `kind` ("ledger", "host state"):
/// refused, left as it was.
pub(crate) fn not_ours(kind: &str, what: &str, why: &str) -> Error {
    Error::format(format!("{kind} {what}"), format!("not a tka {kind} ({why}); nothing was changed"))
}

/// A ledger whose schema is newer than this tka's: refused, never downgraded.
pub(crate) fn newer_schema(what: &str, version: i64) -> Error {
    newer_schema_of("ledger", what, version, super::schema::SCHEMA_VERSION)
}

/// A `kind` ("ledger", "host state") written by a newer tka (schema
/// `version`, this tka knows `known`): refused, never downgraded.
pub(crate) fn newer_schema_of(kind: &str, what: &str, version: i64, known: i64) -> Error {
    Error::format(
        format!("{kind} {what}"),
        format!(
            "written by a newer tka (schema version {version}); this tka knows version {known} \
             and never downgrades a {kind}: use a newer tka"
        ),
    )
}

/// Runs the migrations of a versioned schema from `version` on, in order:
/// `apply(sql, to)` runs one and records version `to`. The one migration
/// loop of the ledger and the host state, on SQLite and PostgreSQL alike
/// (the caller holds the transaction).
pub(crate) fn run_migrations(
    migrations: &[&str],
    version: i64,
    mut apply: impl FnMut(&str, i64) -> Result<()>,
) -> Result<()> {
    let from = usize::try_from(version).unwrap_or(usize::MAX);
    for (i, sql) in migrations.iter().enumerate().skip(from) {
        apply(sql, i as i64 + 1)?;
    }
    Ok(())
}

/// Turns an SQLite error into a one-line error naming the ledger.
pub(crate) fn sqlite_err(path: &Path, e: rusqlite::Error) -> Error {
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

/// SQLSTATEs worth running the transaction again for: a serialization
/// failure and a deadlock.
pub(crate) fn retryable(e: &Error) -> bool {
    matches!(e, Error::Ledger { code: Some(c), .. } if c == "40001" || c == "40P01")
}

/// Runs `open` (the check/configure/migrate sequence of an SQLite file being
/// opened) again while it fails "busy" (an [`Error::Io`] of kind
/// `WouldBlock`) and `timeout` has not passed. Racing first opens of a new
/// file can be told "busy" at once, without SQLite's busy handler (a
/// journal-mode change, a lock upgrade refused to avoid a deadlock); each
/// attempt must leave no transaction open.
pub(crate) fn retry_while_busy<T>(timeout: std::time::Duration, mut open: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match open() {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "postgres")]
    fn placeholders_and_index_hints_translate_for_postgres() {
        assert_eq!(
            to_pg("SELECT a || '?1+x' FROM t WHERE +t.a = ?1 AND b = used + ?12"),
            "SELECT a || '?1+x' FROM t WHERE t.a = $1 AND b = used + $12"
        );
    }

    #[test]
    fn a_postgres_url_is_named_without_its_password() {
        let l = LedgerLocation::parse("postgres://tka:s3cret@db:5432/tka");
        assert_eq!(l.display(), "postgres://tka:***@db:5432/tka");
        assert_eq!(LedgerLocation::parse("ledger.sqlite"), LedgerLocation::File("ledger.sqlite".into()));
    }
}
