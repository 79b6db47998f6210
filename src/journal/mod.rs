//! The journal: an SQLite database whose append-only `events` table is the
//! source of truth and whose `runs`, `nodes` and `approvals` tables are its
//! projection, written in the same transaction as each event.
//!
//! Architecture invariant: only [`Journal::append`] (through `apply`) writes
//! the projection, so `flowc replay` can rebuild it from the events alone.

mod apply;
mod error;
mod event;
mod file;
mod lease;
mod query;
mod replay;

pub use error::JournalError;
pub use event::{Event, NewEvent};
pub use lease::{LEASE_HEARTBEAT_MS, LEASE_STALE_MS, LeaseHolder};
pub use query::{ApprovalRow, LlmUsage, NodeRow, RunRow};
pub use replay::Difference;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema version this flowc writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Schema migrations: entry `i` takes a journal from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

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
    conn: Connection,
    path: PathBuf,
    commits: u64,
    crash_after: Option<u64>,
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

impl Journal {
    /// Opens (creating if needed) the journal at `path` for writing.
    pub fn open(path: &Path, durability: Durability) -> Result<Journal, JournalError> {
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
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        // Switching to WAL can fail with SQLITE_BUSY without waiting on the busy
        // handler when another process opens a new journal at the same moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match journal.conn.pragma_update(None, "journal_mode", "WAL") {
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
        journal
            .conn
            .pragma_update(None, "synchronous", sync)
            .map_err(|e| JournalError::open(path, e))?;
        journal.migrate()?;
        journal.crash_after = std::env::var("FLOWC_DEBUG_CRASH_AFTER_COMMITS")
            .ok()
            .filter(|_| cfg!(debug_assertions))
            .and_then(|v| v.parse().ok());
        Ok(journal)
    }

    /// Opens an existing journal for reading (inspection commands).
    pub fn open_existing(path: &Path) -> Result<Journal, JournalError> {
        file::check_journal_file(path)?;
        if !path.exists() {
            return Err(JournalError::Missing {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .or_else(|_| {
            Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
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
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            commits: 0,
            crash_after: None,
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn version(&self) -> Result<i64, JournalError> {
        // One statement, so one snapshot: read separately, a journal created by
        // another process in between would look like a foreign database.
        let (version, tables): (i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT count(*) FROM sqlite_master WHERE type = 'table')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| JournalError::open(&self.path, e))?;
        if version == 0 && tables > 0 {
            return Err(JournalError::Foreign {
                path: self.path.clone(),
            });
        }
        Ok(version)
    }

    /// The schema version, refusing a foreign database or a journal from a newer flowc.
    fn check_version(&self) -> Result<i64, JournalError> {
        let version = self.version()?;
        if version > SCHEMA_VERSION {
            return Err(JournalError::Newer {
                path: self.path.clone(),
                found: version,
            });
        }
        Ok(version)
    }

    /// Brings the schema to [`SCHEMA_VERSION`], refusing a journal from a newer flowc.
    fn migrate(&mut self) -> Result<(), JournalError> {
        if self.check_version()? == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
            .map_err(|e| JournalError::open(&path, e))?;
        // Read the version again under the lock: another process may have
        // created or migrated the journal since the check above.
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| JournalError::open(&path, e))?;
        if version > SCHEMA_VERSION {
            return Err(JournalError::Newer {
                path,
                found: version,
            });
        }
        let from_version = usize::try_from(version).unwrap_or(0);
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(from_version) {
            tx.execute_batch(sql)
                .map_err(|e| JournalError::open(&path, e))?;
            let to = from as i64 + 1;
            tx.execute_batch(&format!("PRAGMA user_version = {to}"))
                .map_err(|e| JournalError::open(&path, e))?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![to.to_string()],
            )
            .map_err(|e| JournalError::open(&path, e))?;
        }
        tx.commit().map_err(|e| JournalError::open(&path, e))?;
        Ok(())
    }

    /// Appends `events` and applies each to the projection, all in one transaction.
    pub fn append(&mut self, events: &[NewEvent]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let at = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut seqs: Vec<(String, i64)> = Vec::new();
        for event in events {
            let seq = match seqs.iter_mut().find(|(r, _)| *r == event.run_id) {
                Some((_, s)) => {
                    *s += 1;
                    *s
                }
                None => {
                    // Read under the write lock, never from a cache: another
                    // process (`flowc approve`, …) may have appended to this run.
                    let max: Option<i64> = tx
                        .prepare_cached("SELECT max(seq) FROM events WHERE run_id = ?1")?
                        .query_row(params![event.run_id], |r| r.get(0))
                        .optional()?
                        .flatten();
                    let next = max.unwrap_or(0) + 1;
                    seqs.push((event.run_id.clone(), next));
                    next
                }
            };
            let data = event.data.to_string();
            // Cached statements: a step's few events cost one prepare per session, not per event.
            tx.prepare_cached(
                "INSERT INTO events (run_id, seq, at, kind, node, attempt, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![event.run_id, seq, at, event.kind, event.node, event.attempt, data])?;
            apply::apply(
                &tx,
                &event.run_id,
                at,
                event.kind,
                event.node.as_deref(),
                event.attempt,
                &event.data,
            )?;
        }
        tx.commit()?;
        self.commits += 1;
        if self.crash_after.is_some_and(|n| self.commits >= n) {
            // Debug-only crash hook for the crash tests: die like SIGKILL would.
            std::process::abort();
        }
        Ok(())
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when the database is sound.
    pub fn integrity_check(&self) -> Result<(), JournalError> {
        let corrupt = |e: rusqlite::Error| JournalError::corrupt(&self.path, &e);
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check(20)")
            .map_err(corrupt)?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(corrupt)?
            .collect::<Result<_, _>>()
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
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}
