//! One database connection, SQLite or PostgreSQL, behind the few calls the journal makes.
//!
//! The journal's SQL is written once, in the dialect both engines share;
//! Postgres gets `$N` for `?N` and the schema in `postgres.sql` supplies the
//! SQLite functions the queries use (`json_extract`, `total`). Parameters
//! are anything rusqlite can bind (so `params![…]` works for both), and a
//! [`Row`] reads a column as the Rust type asked for from either engine.
//! Nothing outside `src/journal/` names rusqlite or postgres for the journal.

use bytes::{BufMut, BytesMut};
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use rusqlite::types::{ToSqlOutput, ValueRef};
use std::collections::HashMap;
use std::sync::mpsc;

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

/// A Postgres connection, owned by a thread of its own: the driver blocks
/// on a runtime of its own, which must not happen on a thread that drives
/// the executor's (a runtime cannot start inside another). Each call sends
/// the statement there and waits for the rows.
pub struct Pg {
    jobs: mpsc::Sender<Job>,
    /// Whether a transaction is open (a failed prepare must not abort it).
    in_tx: std::cell::Cell<bool>,
}

/// Rows and their column names.
type Rows = (Vec<String>, Vec<postgres::Row>);

/// One call for the connection's thread, with where to send the answer.
enum Job {
    Batch(String, mpsc::SyncSender<Result<(), postgres::Error>>),
    Execute(
        String,
        Vec<Param>,
        bool,
        mpsc::SyncSender<Result<u64, postgres::Error>>,
    ),
    Query(
        String,
        Vec<Param>,
        bool,
        mpsc::SyncSender<Result<Rows, postgres::Error>>,
    ),
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
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// A value of the wrong type, or a statement that changed an unexpected number of rows.
    #[error("{0}")]
    Value(String),
}

impl DbError {
    /// Whether a trigger or constraint refused the change (never a broken connection).
    pub fn is_constraint(&self) -> bool {
        match self {
            DbError::Sqlite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
            }
            DbError::Postgres(e) => e.as_db_error().is_some_and(|d| {
                let c = d.code().code();
                c.starts_with("23") || c == "P0001"
            }),
            _ => false,
        }
    }

    /// Whether the database connection itself failed (a server gone, a dropped socket).
    pub fn is_connection(&self) -> bool {
        matches!(self, DbError::Postgres(e) if e.is_closed() || e.as_db_error().is_none_or(|d| d.code().code().starts_with("08") || d.code().code().starts_with("57P")))
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

/// A value read from Postgres, before it becomes the type asked for.
#[derive(Debug)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any integer type (and booleans read as numbers).
    Int(i64),
    /// A floating-point or numeric value.
    Real(f64),
    /// Text, JSON.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A Rust type a column can be read as, from either engine.
pub trait Column: rusqlite::types::FromSql + Sized {
    /// The value from a Postgres column.
    fn from_value(v: Value) -> Result<Self, String>;
}

impl Column for i64 {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            Value::Real(f) if f.fract() == 0.0 => Ok(f as i64),
            Value::Text(t) => t.parse().map_err(|_| format!("`{t}` is not an integer")),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

macro_rules! narrow_int {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_value(v: Value) -> Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("{i} is out of range"))
            }
        }
    )*};
}
narrow_int!(i32, u32);

impl Column for f64 {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i as f64),
            Value::Real(f) => Ok(f),
            Value::Text(t) => t.parse().map_err(|_| format!("`{t}` is not a number")),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl Column for bool {
    fn from_value(v: Value) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl Column for String {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Text(t) => Ok(t),
            Value::Int(i) => Ok(i.to_string()),
            Value::Real(f) => Ok(f.to_string()),
            Value::Blob(b) => String::from_utf8(b).map_err(|_| "bytes that are not UTF-8".into()),
            Value::Null => Err("expected text, found NULL".into()),
        }
    }
}

impl Column for Vec<u8> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(t) => Ok(t.into_bytes()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let int = |n: usize| -> Result<i64, Box<dyn std::error::Error + Sync + Send>> {
            if raw.len() != n {
                return Err("a truncated integer".into());
            }
            let mut b = [0u8; 8];
            b[8 - n..].copy_from_slice(raw);
            let shift = 64 - 8 * n as u32;
            Ok(i64::from_be_bytes(b) << shift >> shift)
        };
        Ok(match *ty {
            Type::BOOL => Value::Int(i64::from(raw.first().is_some_and(|b| *b != 0))),
            Type::INT2 => Value::Int(int(2)?),
            Type::INT4 => Value::Int(int(4)?),
            Type::INT8 => Value::Int(int(8)?),
            Type::OID => Value::Int(int(4)? & 0xffff_ffff),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::JSONB => {
                Value::Text(std::str::from_utf8(raw.get(1..).unwrap_or(&[]))?.to_string())
            }
            _ => Value::Text(std::str::from_utf8(raw)?.to_string()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Postgres's binary NUMERIC (base-10000 digits) as an integer when whole, else a float.
fn numeric(raw: &[u8]) -> Result<Value, Box<dyn std::error::Error + Sync + Send>> {
    let word = |i: usize| -> Result<i16, Box<dyn std::error::Error + Sync + Send>> {
        raw.get(i..i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".into())
    };
    let (ndigits, weight, sign, scale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut value = 0f64;
    for d in 0..ndigits.max(0) as usize {
        let digit = f64::from(word(8 + 2 * d)?);
        value += digit * 10000f64.powi(i32::from(weight) - d as i32);
    }
    if sign == 0x4000 {
        value = -value;
    }
    Ok(if scale == 0 && value.abs() < 9.0e15 {
        Value::Int(value as i64)
    } else {
        Value::Real(value)
    })
}

/// One parameter for Postgres, converted from what rusqlite would bind to
/// whatever type the server expects in that place.
#[derive(Debug)]
struct Param(rusqlite::types::Value);

impl Param {
    fn from_sqlite(p: &dyn rusqlite::ToSql) -> Result<Param, DbError> {
        use rusqlite::types::Value as V;
        let owned = |v: ValueRef<'_>| match v {
            ValueRef::Null => V::Null,
            ValueRef::Integer(i) => V::Integer(i),
            ValueRef::Real(f) => V::Real(f),
            ValueRef::Text(t) => V::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => V::Blob(b.to_vec()),
        };
        Ok(Param(match p.to_sql()? {
            ToSqlOutput::Borrowed(v) => owned(v),
            ToSqlOutput::Owned(v) => v,
            _ => return Err(DbError::Value("an unsupported parameter".into())),
        }))
    }
}

impl Param {
    /// The Postgres type this value has by itself (text for NULL).
    fn natural_type(&self) -> Type {
        use rusqlite::types::Value as V;
        match self.0 {
            V::Integer(_) => Type::INT8,
            V::Real(_) => Type::FLOAT8,
            V::Blob(_) => Type::BYTEA,
            V::Null | V::Text(_) => Type::TEXT,
        }
    }
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use rusqlite::types::Value as V;
        let text = |s: &str, out: &mut BytesMut| {
            if *ty == Type::JSONB {
                out.put_u8(1);
            }
            out.put_slice(s.as_bytes());
        };
        match (&self.0, ty) {
            (V::Null, _) => return Ok(IsNull::Yes),
            (V::Integer(i), &Type::INT8) => out.put_i64(*i),
            (V::Integer(i), &Type::INT4) => out.put_i32(i32::try_from(*i)?),
            (V::Integer(i), &Type::INT2) => out.put_i16(i16::try_from(*i)?),
            (V::Integer(i), &Type::FLOAT8) => out.put_f64(*i as f64),
            (V::Integer(i), &Type::FLOAT4) => out.put_f32(*i as f32),
            (V::Integer(i), &Type::BOOL) => out.put_u8(u8::from(*i != 0)),
            (V::Integer(i), _) => text(&i.to_string(), out),
            (V::Real(f), &Type::FLOAT8) => out.put_f64(*f),
            (V::Real(f), &Type::FLOAT4) => out.put_f32(*f as f32),
            (V::Real(f), &Type::INT8) if f.fract() == 0.0 => out.put_i64(*f as i64),
            (V::Real(f), _) => text(&f.to_string(), out),
            (V::Text(s), &Type::INT8) => out.put_i64(s.parse()?),
            (V::Text(s), &Type::INT4) => out.put_i32(s.parse()?),
            (V::Text(s), &Type::FLOAT8) => out.put_f64(s.parse()?),
            (V::Text(s), _) => text(s, out),
            (V::Blob(b), &Type::BYTEA) => out.put_slice(b),
            (V::Blob(b), _) => text(std::str::from_utf8(b)?, out),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// The journal's SQL as Postgres takes it: `?N` (and bare `?`) placeholders
/// as `$N`, leaving string literals alone, and SQLite's join-order hint
/// `CROSS JOIN … ON` as a plain `JOIN` (Postgres plans the order itself).
pub fn postgres_sql(sql: &str) -> String {
    let sql = sql.replace(" CROSS JOIN runs r ON ", " JOIN runs r ON ");
    let sql = sql.as_str();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next = 1;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                }
                next = digits.parse::<usize>().unwrap_or(next) + 1;
                out.push('$');
                out.push_str(&digits);
            }
            (None, c) => out.push(c),
        }
    }
    out
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
        let mut config: postgres::Config = url.parse()?;
        if config.get_application_name().is_none() {
            config.application_name("flowc");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("flowc-postgres".into())
            .spawn(move || match config.connect(postgres::NoTls) {
                Ok(client) => {
                    let _ = ready.send(Ok(()));
                    serve_jobs(client, &inbox);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| {
                DbError::Value(format!(
                    "cannot start the Postgres connection's thread: {e}"
                ))
            })?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Db::Postgres(Pg {
                jobs,
                in_tx: std::cell::Cell::new(false),
            })),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(DbError::Value(
                "the Postgres connection's thread died".into(),
            )),
        }
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
                        values.push(render(match r.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(n) => Value::Int(n),
                            ValueRef::Real(f) => Value::Real(f),
                            ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        }));
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

fn pg_params(params: Params<'_>) -> Result<Vec<Param>, DbError> {
    params.iter().map(|p| Param::from_sqlite(*p)).collect()
}

fn pg_refs(values: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Pg {
    /// Sends a job to the connection's thread and waits for its answer.
    fn call<T>(
        &self,
        job: impl FnOnce(mpsc::SyncSender<Result<T, postgres::Error>>) -> Job,
    ) -> Result<T, DbError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || DbError::Value("the connection to the Postgres server was lost".into());
        self.jobs.send(job(reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?.map_err(DbError::from)
    }
}

/// The connection's thread: runs jobs until the [`Pg`] is dropped, each
/// statement prepared once.
fn serve_jobs(mut client: postgres::Client, inbox: &mpsc::Receiver<Job>) {
    let mut statements = Statements::default();
    while let Ok(job) = inbox.recv() {
        match job {
            Job::Batch(sql, reply) => {
                let _ = reply.send(client.batch_execute(&sql));
            }
            Job::Execute(sql, values, in_tx, reply) => {
                let refs = pg_refs(&values);
                let r = statements
                    .get(&mut client, &sql, &values, in_tx)
                    .and_then(|stmt| client.execute(&stmt, &refs));
                let _ = reply.send(r);
            }
            Job::Query(sql, values, in_tx, reply) => {
                let refs = pg_refs(&values);
                let r = statements
                    .get(&mut client, &sql, &values, in_tx)
                    .and_then(|stmt| {
                        let cols = stmt
                            .columns()
                            .iter()
                            .map(|c| c.name().to_string())
                            .collect();
                        client.query(&stmt, &refs).map(|rows| (cols, rows))
                    });
                let _ = reply.send(r);
            }
        }
    }
}

/// Prepared statements of one connection. Postgres infers each parameter's
/// type from where it stands; where it cannot (`?1 IS NULL OR skill = ?1`
/// gives the same parameter two types), the statement is prepared again
/// with the types of the values bound, once per combination of them.
#[derive(Default)]
struct Statements {
    inferred: HashMap<String, postgres::Statement>,
    typed: HashMap<(String, Vec<Type>), postgres::Statement>,
    needs_types: std::collections::HashSet<String>,
}

impl Statements {
    fn get(
        &mut self,
        client: &mut postgres::Client,
        sql: &str,
        values: &[Param],
        in_tx: bool,
    ) -> Result<postgres::Statement, postgres::Error> {
        if !self.needs_types.contains(sql) {
            if let Some(s) = self.inferred.get(sql) {
                return Ok(s.clone());
            }
            // Inside a transaction a failed prepare would abort it: try
            // under a savepoint, given back either way.
            if in_tx {
                client.batch_execute("SAVEPOINT flowc_prepare")?;
            }
            let tried = client.prepare(&postgres_sql(sql));
            if in_tx {
                client.batch_execute(if tried.is_ok() {
                    "RELEASE SAVEPOINT flowc_prepare"
                } else {
                    "ROLLBACK TO SAVEPOINT flowc_prepare; RELEASE SAVEPOINT flowc_prepare"
                })?;
            }
            match tried {
                Ok(stmt) => {
                    self.inferred.insert(sql.to_string(), stmt.clone());
                    return Ok(stmt);
                }
                Err(e)
                    if !e.as_db_error().is_some_and(|d| {
                        matches!(d.code().code(), "42P18" | "42P08" | "42804" | "42883")
                    }) =>
                {
                    return Err(e);
                }
                Err(_) => {
                    self.needs_types.insert(sql.to_string());
                }
            }
        }
        let types: Vec<Type> = values.iter().map(Param::natural_type).collect();
        let key = (sql.to_string(), types);
        if let Some(s) = self.typed.get(&key) {
            return Ok(s.clone());
        }
        let stmt = client.prepare_typed(&postgres_sql(sql), &key.1)?;
        self.typed.insert(key, stmt.clone());
        Ok(stmt)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?2"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $2"
        );
        assert_eq!(postgres_sql("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(
            postgres_sql("x LIKE ?2 ESCAPE '\\'"),
            "x LIKE $2 ESCAPE '\\'"
        );
    }

    #[test]
    fn numeric_decodes_whole_and_fractional_values() {
        // 12345.5: ndigits 3, weight 1, sign +, scale 1: digits 1, 2345, 5000.
        let raw = [0, 3, 0, 1, 0, 0, 0, 1, 0, 1, 0x09, 0x29, 0x13, 0x88];
        match numeric(&raw).unwrap() {
            Value::Real(f) => assert!((f - 12345.5).abs() < 1e-9),
            v => panic!("{v:?}"),
        }
        // -20000: ndigits 1, weight 1, sign -, scale 0.
        let raw = [0, 1, 0, 1, 0x40, 0, 0, 0, 0, 2];
        assert!(matches!(numeric(&raw).unwrap(), Value::Int(-20000)));
    }
}
