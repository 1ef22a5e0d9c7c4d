//! The ledger's one small SQL interface over its two backends.
//!
//! Every query of the ledger, of issuance (`Decider`, `Recorder`), of the
//! seat rule and of bulk issuance and renewal is written once, in the SQL
//! both SQLite and PostgreSQL accept, with `?N` placeholders, and run
//! through a [`Db`]: on SQLite as a cached prepared statement (so a bulk
//! run prepares each query once), on PostgreSQL with `?N` translated to
//! `$N` (and SQLite's `+column` index hints dropped), prepared once per
//! connection.

use super::sql::{sqlite_err, Row, Val};
use crate::core::error::{Error, Result};
use std::path::Path;

/// A connection of either backend, as the queries see it.
#[derive(Clone, Copy)]
pub(crate) enum Db<'c> {
    Sqlite(&'c rusqlite::Connection, &'c Path),
    #[cfg(feature = "postgres")]
    Pg(&'c std::cell::RefCell<super::pg::PgConn>),
}

impl<'c> Db<'c> {
    /// Whether this is PostgreSQL.
    pub(crate) fn is_pg(&self) -> bool {
        !matches!(self, Db::Sqlite(..))
    }

    /// Whether entitlement rows read now are locked until the transaction
    /// ends (inside a PostgreSQL write transaction; SQLite's write lock
    /// already covers the whole file).
    pub(crate) fn locks_rows(&self) -> bool {
        match self {
            Db::Sqlite(..) => false,
            #[cfg(feature = "postgres")]
            Db::Pg(c) => c.borrow().writing,
        }
    }

    /// Rows of `sql`.
    pub(crate) fn query(&self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        match self {
            Db::Sqlite(c, path) => sqlite_query(c, sql, args).map_err(|e| sqlite_err(path, e)),
            #[cfg(feature = "postgres")]
            Db::Pg(c) => c.borrow_mut().query(sql, args),
        }
    }

    /// The first row of `sql`, if any.
    pub(crate) fn query_opt(&self, sql: &str, args: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The one row of `sql`.
    pub(crate) fn query_one(&self, sql: &str, args: &[Val]) -> Result<Row> {
        self.query_opt(sql, args)?.ok_or_else(|| Error::format("ledger query", "returned no row"))
    }

    /// Runs `sql`; returns the rows changed.
    pub(crate) fn execute(&self, sql: &str, args: &[Val]) -> Result<u64> {
        match self {
            Db::Sqlite(c, path) => c
                .prepare_cached(sql)
                .and_then(|mut st| st.execute(rusqlite::params_from_iter(args.iter())))
                .map(|n| n as u64)
                .map_err(|e| sqlite_err(path, e)),
            #[cfg(feature = "postgres")]
            Db::Pg(c) => c.borrow_mut().execute(sql, args),
        }
    }

    /// SQLite's `PRAGMA data_version`: within one connection, a number that
    /// changes whenever *another* connection has committed to the file
    /// since it was last read (this connection's own commits leave it
    /// unchanged). `None` on PostgreSQL, which has no such counter.
    pub(crate) fn data_version(&self) -> Result<Option<i64>> {
        match self {
            Db::Sqlite(c, path) => c
                .prepare_cached("PRAGMA data_version")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map(Some)
                .map_err(|e| sqlite_err(path, e)),
            #[cfg(feature = "postgres")]
            Db::Pg(_) => Ok(None),
        }
    }

    /// Runs several statements without parameters.
    pub(crate) fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c, path) => c.execute_batch(sql).map_err(|e| sqlite_err(path, e)),
            #[cfg(feature = "postgres")]
            Db::Pg(c) => c.borrow_mut().batch(sql),
        }
    }
}

fn sqlite_query(c: &rusqlite::Connection, sql: &str, args: &[Val]) -> rusqlite::Result<Vec<Row>> {
    let mut st = c.prepare_cached(sql)?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            use rusqlite::types::ValueRef as V;
            vals.push(match r.get_ref(i)? {
                V::Null => Val::Null,
                V::Integer(v) => Val::I64(v),
                V::Real(v) => Val::I64(v as i64),
                V::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                V::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}
