//! The journal: an SQLite database whose append-only `events` table is the
//! source of truth and whose `runs`, `nodes` and `approvals` tables are its
//! projection, written in the same transaction as each event.
//!
//! Architecture invariant: only [`Journal::append`] (through `apply`) writes
//! the projection, so `flowc replay` can rebuild it from the events alone.

mod analytics;
mod append;
mod apply;
mod chain;
mod db;
mod error;
mod event;
mod file;
mod fold;
mod gc;
mod lease;
mod links;
mod memory;
mod notices;
mod query;
mod queue;
mod replay;
mod sources;
mod stats;
mod timeouts;
mod triggers;

pub use analytics::{DayCost, DayRuns, FailureRow, PromptCall, StepLlm, StepRow};
pub use chain::Problem;
pub use db::{Db, DbError, Row, params};
pub use error::JournalError;
pub use event::{Event, NewEvent};
pub use fold::fold;
pub use lease::{
    LEASE_HEARTBEAT_MS, LEASE_STALE_MS, LeaseHolder, heartbeat_ms, host, process_alive, stale_ms,
};
pub use links::LinkRow;
pub use memory::{
    MEMORY_KEY_MAX, MEMORY_KEYS_MAX, MEMORY_VALUE_MAX, MemoryChange, MemoryRow, memory_key_problem,
    memory_namespace,
};
pub use notices::{Notice, NoticeRow};
pub use query::{ApprovalRow, LlmUsage, NodeRow, RunRow};
pub use queue::{Fire, QueueRow, Submission, new_run_id, supervisor_id};
pub use replay::Difference;
pub use stats::Stats;
pub use triggers::FireRow;

use db::Lock;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema version this flowc writes.
pub const SCHEMA_VERSION: i64 = 6;

/// Code run over the data between a migration's two SQL halves.
type Fill = fn(&Db) -> Result<(), DbError>;

/// One step of the schema: SQL, then code over the data, then more SQL.
struct Migration {
    before: &'static str,
    fill: Option<Fill>,
    after: &'static str,
}

/// Schema migrations: entry `i` takes a journal from version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        before: include_str!("schema.sql"),
        fill: None,
        after: "",
    },
    Migration {
        before: include_str!("schema_v2_before.sql"),
        fill: Some(chain::fill),
        after: include_str!("schema_v2_after.sql"),
    },
    Migration {
        before: include_str!("schema_v3.sql"),
        fill: None,
        after: "",
    },
    Migration {
        before: include_str!("schema_v4.sql"),
        fill: None,
        after: "",
    },
    Migration {
        before: include_str!("schema_v5.sql"),
        fill: None,
        after: "",
    },
    Migration {
        before: include_str!("schema_v6.sql"),
        fill: None,
        after: "",
    },
];

/// Postgres migrations from its first schema, version 5 (`postgres.sql`):
/// entry `i` takes a database from version `5 + i` to `6 + i`, each script
/// setting `meta.schema_version` itself.
const POSTGRES_MIGRATIONS: &[&str] = &[include_str!("postgres_v6.sql")];

/// Refuses to open `path` for writing when it lost commits: a connection
/// that may write could checkpoint the damaged log and make the loss final
/// (the log may still hold what was lost). Checked through a reader first.
fn refuse_lost(path: &Path) -> Result<(), JournalError> {
    if PathBuf::from(format!("{}-head", path.display())).exists()
        && let Ok(reader) = Journal::open_read_only(path)
    {
        return reader.refuse_lost();
    }
    Ok(())
}

/// Creates the current schema in an empty database (replay's scratch copy).
fn create_schema(conn: &Db) -> Result<(), DbError> {
    for m in MIGRATIONS {
        conn.execute_batch(m.before)?;
        if let Some(fill) = m.fill {
            fill(conn)?;
        }
        conn.execute_batch(m.after)?;
    }
    Ok(())
}

/// Largest stdout or stderr kept per attempt in the journal; longer output keeps its tail.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// How hard the journal tries to survive crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL`: survives a crash of flowc; the last commits may be lost on power loss.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is on disk before flowc goes on.
    Full,
}

/// An open journal.
pub struct Journal {
    conn: Db,
    path: PathBuf,
    /// How the journal is named to people: the path, or the URL without its password.
    name: String,
    commits: u64,
    crash_after: Option<u64>,
    /// The head mark beside the journal (see [`Journal::lost_events`]), once opened.
    mark: Option<std::fs::File>,
    /// The run this process drives and the lease epoch it took: appends to
    /// that run are refused once another driver took the lease over.
    fence: Option<(String, i64)>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `path` for an SQLite `file:` URI: `%`, `?` and `#` escaped.
fn uri_path(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23")
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` for writing: an SQLite
    /// file, or a Postgres database when `path` is a `postgres://` URL.
    pub fn open(path: &Path, durability: Durability) -> Result<Journal, JournalError> {
        if let Some(url) = postgres_url(path) {
            let mut journal = Journal::connect(url)?;
            journal.migrate()?;
            return Ok(journal);
        }
        file::check_journal_file(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| JournalError::open(path, e))?;
        let mut journal = Journal::wrap(conn, path)?;
        // Refuse a foreign or newer database before changing anything in it
        // (setting `journal_mode` would convert someone else's file to WAL).
        journal.check_version()?;
        // Asked on this connection before it writes anything: a second,
        // read-only connection for it cost a schema parse on every run.
        if let Err(lost) = journal.refuse_lost() {
            // Closing the last connection checkpoints the log: that would
            // write the damaged log's remains over the database and make the
            // loss final, so this one closes without.
            if let Some(conn) = journal.conn.sqlite() {
                let _ = conn.set_db_config(
                    rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                    true,
                );
            }
            return Err(lost);
        }
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        let conn = journal.conn.sqlite().expect("an SQLite journal");
        // Switching to WAL can fail with SQLITE_BUSY without waiting on the busy
        // handler when another process opens a new journal at the same moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(JournalError::open(path, e)),
            }
        }
        conn.pragma_update(None, "synchronous", sync)
            .map_err(|e| JournalError::open(path, e))?;
        journal.migrate()?;
        journal.crash_after = std::env::var("FLOWC_DEBUG_CRASH_AFTER_COMMITS")
            .ok()
            .filter(|_| cfg!(debug_assertions))
            .and_then(|v| v.parse().ok());
        Ok(journal)
    }

    /// Connects to the Postgres journal at `url` (the schema is not touched).
    fn connect(url: &str) -> Result<Journal, JournalError> {
        let name = redact_url(url);
        let conn =
            Db::connect_postgres(url).map_err(|e| JournalError::open(Path::new(&name), e))?;
        Ok(Journal::with(conn, PathBuf::from(url), name))
    }

    fn with(conn: Db, path: PathBuf, name: String) -> Journal {
        Journal {
            conn,
            path,
            name,
            commits: 0,
            crash_after: None,
            mark: None,
            fence: None,
        }
    }

    /// Opens a Postgres journal that must already hold a current schema.
    fn connect_existing(url: &str) -> Result<Journal, JournalError> {
        let journal = Journal::connect(url)?;
        match journal.check_version()? {
            0 => Err(JournalError::Missing {
                path: PathBuf::from(&journal.name),
            }),
            v if v < SCHEMA_VERSION => Err(JournalError::Outdated {
                path: PathBuf::from(&journal.name),
                found: v,
            }),
            _ => Ok(journal),
        }
    }

    /// Opens an existing journal for reading and appending (the decision commands,
    /// `rollback`); a missing journal is an error, never created.
    pub fn open_existing(path: &Path) -> Result<Journal, JournalError> {
        if let Some(url) = postgres_url(path) {
            return Journal::connect_existing(url);
        }
        refuse_lost(path)?;
        Journal::open_existing_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Opens an existing journal read-only (`runs`, `status`, `log`, `approvals`,
    /// `replay`): a journal this user may read but not write can still be inspected.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        if let Some(url) = postgres_url(path) {
            return Journal::connect_existing(url);
        }
        Journal::open_existing_with(path, OpenFlags::SQLITE_OPEN_READ_ONLY).or_else(|e| {
            // Reading a WAL database needs its `-shm` file, which a reader
            // without write access to the directory cannot create. When the
            // journal is closed (no `-wal` file), nothing writes to it and it
            // can be read as immutable.
            let wal = PathBuf::from(format!("{}-wal", path.display()));
            match e {
                JournalError::Open { .. } if !wal.exists() => {
                    let uri = PathBuf::from(format!("file:{}?immutable=1", uri_path(path)));
                    Journal::open_existing_with(
                        &uri,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
                    )
                    .map(|mut j| {
                        j.path = path.to_path_buf();
                        j.name = path.display().to_string();
                        j
                    })
                    .map_err(|_| e)
                }
                e => Err(e),
            }
        })
    }

    fn open_existing_with(path: &Path, mode: OpenFlags) -> Result<Journal, JournalError> {
        if !mode.contains(OpenFlags::SQLITE_OPEN_URI) {
            file::check_journal_file(path)?;
        }
        if !mode.contains(OpenFlags::SQLITE_OPEN_URI) && !path.exists() {
            return Err(JournalError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, mode | flags)
            .or_else(|e| {
                if mode.contains(OpenFlags::SQLITE_OPEN_READ_WRITE) {
                    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | flags)
                } else {
                    Err(e)
                }
            })
            .map_err(|e| JournalError::open(path, e))?;
        let journal = Journal::wrap(conn, path)?;
        let version = journal.check_version()?;
        if version == 0 {
            // An empty database (e.g. a zero-byte file): nothing has run here.
            return Err(JournalError::Missing {
                path: path.to_path_buf(),
            });
        }
        if version < SCHEMA_VERSION {
            return Err(JournalError::Outdated {
                path: path.to_path_buf(),
                found: version,
            });
        }
        Ok(journal)
    }

    fn wrap(conn: Connection, path: &Path) -> Result<Journal, JournalError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| JournalError::open(path, e))?;
        // `INSERT OR REPLACE` deletes the row it replaces: with recursive
        // triggers that delete meets the append-only trigger too.
        conn.pragma_update(None, "recursive_triggers", "ON")
            .map_err(|e| JournalError::open(path, e))?;
        // Query-planner stability: without it, a cached statement whose plan
        // could depend on a bound value (`SELECT max(seq) … WHERE run_id = ?1`
        // with this build's STAT4) is re-prepared on every execution, which
        // cost about 35,000 instructions per append. Our plans never depend on
        // the values (there are no statistics), so nothing is lost.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(|e| JournalError::open(path, e))?;
        // Every statement the journal runs stays prepared (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Journal::with(
            Db::Sqlite(conn),
            path.to_path_buf(),
            path.display().to_string(),
        ))
    }

    /// The journal's file, or its Postgres URL (password included: show [`Journal::name`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal as people see it named: its path, or its URL without the password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this journal lives in Postgres.
    pub fn is_postgres(&self) -> bool {
        self.conn.is_postgres()
    }

    fn version(&self) -> Result<i64, JournalError> {
        let open = |e| JournalError::open(Path::new(&self.name), e);
        // One statement, so one snapshot: read separately, a journal created by
        // another process in between would look like a foreign database.
        let (version, tables): (i64, i64) = match &self.conn {
            Db::Sqlite(_) => self.conn.query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
                params![],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ),
            Db::Postgres(_) => self
                .conn
                .query_row(
                    "SELECT to_regclass('meta') IS NOT NULL,
                            (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())",
                    params![],
                    |r| Ok((r.get::<bool>(0)?, r.get::<i64>(1)?)),
                )
                .and_then(|(meta, tables)| {
                    // Read apart: the table is known to exist (DDL commits whole).
                    let version = if meta {
                        self.conn
                            .query_opt(
                                "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'schema_version'",
                                params![],
                                |r| r.get::<i64>(0),
                            )?
                            .unwrap_or(0)
                    } else {
                        0
                    };
                    Ok((version, tables))
                }),
        }
        .map_err(open)?;
        if version == 0 && tables > 0 {
            return Err(JournalError::Foreign {
                path: PathBuf::from(&self.name),
            });
        }
        Ok(version)
    }

    /// The schema version, refusing a foreign database or a journal from a newer flowc.
    fn check_version(&self) -> Result<i64, JournalError> {
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            return Err(JournalError::Newer {
                path: PathBuf::from(&self.name),
                found: version,
            });
        }
        Ok(version)
    }

    /// Brings the schema to [`SCHEMA_VERSION`], refusing a journal from a newer flowc.
    fn migrate(&mut self) -> Result<(), JournalError> {
        let found = self.check_version()?;
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        if self.conn.is_postgres() {
            return self.migrate_postgres();
        }
        let path = self.path.clone();
        let open = |e| JournalError::open(&path, e);
        if found > 0 {
            // A copy of the journal as it was, beside it, before anything changes.
            let backup = PathBuf::from(format!("{}.v{found}.bak", path.display()));
            if !backup.exists() {
                self.conn
                    .execute("VACUUM INTO ?1", params![backup.display().to_string()])
                    .map_err(open)?;
            }
        }
        let tx = self.conn.transaction(Lock::Exclusive).map_err(open)?;
        // Read the version again under the lock: another process may have
        // created or migrated the journal since the check above.
        let version: i64 = tx
            .query_row("PRAGMA user_version", params![], |r| r.get(0))
            .map_err(open)?;
        if version > SCHEMA_VERSION {
            return Err(JournalError::Newer {
                path,
                found: version,
            });
        }
        let from_version = usize::try_from(version).unwrap_or(0);
        for (from, m) in MIGRATIONS.iter().enumerate().skip(from_version) {
            tx.execute_batch(m.before).map_err(open)?;
            if let Some(fill) = m.fill {
                fill(&tx).map_err(open)?;
            }
            tx.execute_batch(m.after).map_err(open)?;
            let to = from as i64 + 1;
            tx.execute_batch(&format!("PRAGMA user_version = {to}"))
                .map_err(open)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![to.to_string()],
            )
            .map_err(open)?;
        }
        tx.commit().map_err(open)?;
        Ok(())
    }

    /// Creates the schema in an empty Postgres database, once however many
    /// processes try at the same moment (the writers' lock serialises them).
    fn migrate_postgres(&mut self) -> Result<(), JournalError> {
        let name = PathBuf::from(&self.name);
        let open = |e| JournalError::open(&name, e);
        // The transaction takes the writers' lock: one creator at a time.
        let tx = self.conn.transaction(Lock::Exclusive).map_err(open)?;
        let mut version = self.check_version()?;
        if version == 0 {
            tx.execute_batch(include_str!("postgres.sql"))
                .map_err(open)?;
            version = 5;
        } else if version < 5 {
            // The first Postgres schema is version 5: nothing older exists there.
            return Err(JournalError::Outdated {
                path: name.clone(),
                found: version,
            });
        }
        let from = usize::try_from(version - 5).unwrap_or(0);
        for script in POSTGRES_MIGRATIONS.iter().skip(from) {
            tx.execute_batch(script).map_err(open)?;
        }
        tx.commit().map_err(open)?;
        Ok(())
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when the database is sound
    /// (Postgres checks its own pages: nothing to ask it here).
    pub fn integrity_check(&self) -> Result<(), JournalError> {
        let corrupt = |e: DbError| JournalError::corrupt(&self.path, &e);
        if self.conn.is_postgres() {
            return Ok(());
        }
        let lines: Vec<String> = self
            .conn
            .query_map("PRAGMA integrity_check(20)", params![], |r| r.get(0))
            .map_err(corrupt)?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(())
        } else {
            Err(JournalError::Corrupt {
                path: self.path.clone(),
                detail: lines.join("; "),
            })
        }
    }

    /// The underlying connection, for queries in tests.
    pub fn connection(&self) -> &Db {
        &self.conn
    }
}

/// The directory for flowc's files beside a journal (snapshots, the cache):
/// the SQLite file's directory, or `.flowc` here for a Postgres journal,
/// whose database holds nothing of this machine's.
pub fn state_dir(journal: &Path) -> PathBuf {
    if postgres_url(journal).is_some() {
        return PathBuf::from(".flowc");
    }
    match journal.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The URL when `path` names a Postgres database rather than an SQLite file.
pub fn postgres_url(path: &Path) -> Option<&str> {
    path.to_str()
        .filter(|p| p.starts_with("postgres://") || p.starts_with("postgresql://"))
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut out = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    // A password given as a query parameter.
    if let Some(at) = out.find("password=") {
        let end = out[at..].find('&').map_or(out.len(), |e| at + e);
        out.replace_range(at + "password=".len()..end, "***");
    }
    out
}
