//! One database connection, SQLite or PostgreSQL, behind the few calls the journal makes.
//!
//! The journal's SQL is written once, in the dialect both engines share;
//! Postgres gets `$N` for `?N` (`pg.rs`) and the schema in `postgres.sql`
//! supplies the SQLite functions the queries use (`json_extract`, `total`).
//! Parameters are anything rusqlite can bind (so `params![…]` works for
//! both), and a [`Row`] reads a column as the Rust type asked for from either
//! engine (`value.rs`). Nothing outside `src/journal/` names rusqlite or
//! postgres for the journal.

mod pg;
mod value;

pub use value::{Column, Value};

use pg::{Job, Pg, pg_params};

pub use rusqlite::params;

/// Bound values: `params![a, b]` or `params![]`.
pub type Params<'a> = &'a [&'a dyn rusqlite::ToSql];

/// A connection to one of the two stores.
pub enum Db {
    /// The embedded default: one file.
    Sqlite(rusqlite::Connection),
    /// A shared server.
    Postgres(Pg),
}

/// What went wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite said so.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Postgres said so (or its connection broke).
    #[error("{}", describe_pg(.0))]
    Postgres(#[from] postgres::Error),
    /// The connection's thread or socket went away.
    #[error("the connection to the Postgres server was lost")]
    Lost,
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// A value of the wrong type, or a statement that changed an unexpected number of rows.
    #[error("{0}")]
    Value(String),
}

impl DbError {
    /// Whether the database connection itself failed (a server gone, a dropped socket).
    pub fn is_connection(&self) -> bool {
        matches!(self, DbError::Lost)
            || matches!(self, DbError::Postgres(e) if e.is_closed() || e.as_db_error().is_none_or(|d| d.code().code().starts_with("08") || d.code().code().starts_with("57P")))
    }
}

/// Postgres's own message for a server error; the driver's for the rest.
fn describe_pg(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => d.message().to_string(),
        None if e.is_closed() => "the connection to the Postgres server was lost".to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// One result row of either engine.
pub enum Row<'a> {
    /// An SQLite row.
    Sqlite(&'a rusqlite::Row<'a>),
    /// A Postgres row.
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `i` as `T`.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, DbError> {
        match self {
            Row::Sqlite(r) => Ok(r.get(i)?),
            Row::Postgres(r) => {
                let v: Value = r.try_get(i)?;
                T::from_value(v).map_err(|e| DbError::Value(format!("column {i}: {e}")))
            }
        }
    }
}

/// How a transaction takes its locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Take the write lock at once (`BEGIN IMMEDIATE`).
    Write,
    /// Keep out readers too (`BEGIN EXCLUSIVE`), for migrations.
    Exclusive,
}

impl Db {
    /// Connects to a Postgres server at `url` (`postgres://…` or `postgresql://…`).
    pub fn connect_postgres(url: &str) -> Result<Db, DbError> {
        pg::connect(url).map(Db::Postgres)
    }

    /// Whether this is the Postgres store.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// The SQLite connection, for what only SQLite has (pragmas, the WAL).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Db::Sqlite(c) => Some(c),
            Db::Postgres(_) => None,
        }
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: Params<'_>) -> Result<usize, DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(params)?),
            Db::Postgres(pg) => {
                let values = pg_params(params)?;
                let n =
                    pg.call(|reply| Job::Execute(sql.to_string(), values, pg.in_tx.get(), reply))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Runs statements separated by `;`, with no parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(pg) => pg.call(|reply| Job::Batch(sql.to_string(), reply)),
        }
    }

    /// Every row of a query, each read by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let mut out = Vec::new();
        self.each(sql, params, |r| {
            out.push(f(r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row of a query read by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.query_opt(sql, params, f)?.ok_or(DbError::NoRows)
    }

    /// The first row of a query read by `f`, if there is one.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: Params<'_>,
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let mut f = Some(f);
        let mut out = None;
        self.each(sql, params, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// Calls `f` on each row until it returns `false`.
    pub fn each(
        &self,
        sql: &str,
        params: Params<'_>,
        mut f: impl FnMut(&Row<'_>) -> Result<bool, DbError>,
    ) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(params)?;
                while let Some(r) = rows.next()? {
                    if !f(&Row::Sqlite(r))? {
                        break;
                    }
                }
            }
            Db::Postgres(pg) => {
                let values = pg_params(params)?;
                let (_, rows) =
                    pg.call(|reply| Job::Query(sql.to_string(), values, pg.in_tx.get(), reply))?;
                for r in &rows {
                    if !f(&Row::Postgres(r))? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// A query's column names and every row with each value as text
    /// (`NULL`, numbers as written, `<N bytes>` for blobs): for comparing
    /// rows across stores.
    pub fn text_rows(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), DbError> {
        let render = |v: Value| match v {
            Value::Null => "NULL".to_string(),
            Value::Int(n) => n.to_string(),
            Value::Real(f) => f.to_string(),
            Value::Text(t) => t,
            Value::Blob(b) => format!("<{} bytes>", b.len()),
        };
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare(sql)?;
                let cols: Vec<String> = stmt.column_names().map(str::to_string).collect();
                let n = cols.len();
                let mut rows = stmt.query(params)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut values = Vec::with_capacity(n);
                    for i in 0..n {
                        values.push(render(Value::from(r.get_ref(i)?)));
                    }
                    out.push(values);
                }
                Ok((cols, out))
            }
            Db::Postgres(pg) => {
                let values = pg_params(params)?;
                let (cols, rows) =
                    pg.call(|reply| Job::Query(sql.to_string(), values, pg.in_tx.get(), reply))?;
                let mut out = Vec::new();
                for r in &rows {
                    let mut values = Vec::with_capacity(r.len());
                    for i in 0..r.len() {
                        values.push(render(r.try_get(i)?));
                    }
                    out.push(values);
                }
                Ok((cols, out))
            }
        }
    }

    /// Begins a transaction, rolled back when the guard is dropped uncommitted.
    pub fn transaction(&self, lock: Lock) -> Result<Tx<'_>, DbError> {
        // Postgres: one writer at a time, as SQLite's write lock gives. The
        // service reads new events by `rowid`, and Postgres hands identities
        // out at insert, not at commit: with writers in turn, rows commit in
        // `rowid` order, so a reader that saw row N never later meets a
        // smaller one. The lock ends with the transaction.
        let begin = match (self, lock) {
            (Db::Sqlite(_), Lock::Write) => "BEGIN IMMEDIATE",
            (Db::Sqlite(_), Lock::Exclusive) => "BEGIN EXCLUSIVE",
            (Db::Postgres(_), _) => "BEGIN; SELECT pg_advisory_xact_lock(7460236773)",
        };
        self.execute_batch(begin)?;
        if let Db::Postgres(pg) = self {
            pg.in_tx.set(true);
        }
        Ok(Tx {
            db: self,
            open: true,
        })
    }
}

/// An open transaction on a [`Db`]; derefs to it for the statements inside.
pub struct Tx<'a> {
    db: &'a Db,
    open: bool,
}

impl Tx<'_> {
    /// Commits what the transaction wrote.
    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        let r = self.db.execute_batch("COMMIT");
        if r.is_err() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        self.ended();
        r
    }

    fn ended(&self) {
        if let Db::Postgres(pg) = self.db {
            pg.in_tx.set(false);
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.db.execute_batch("ROLLBACK");
            self.ended();
        }
    }
}
