//! Journal errors, each with a message a user can act on.

use super::db::DbError;
use std::path::{Path, PathBuf};

/// Something went wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No journal at the path.
    #[error("no journal at `{}`: nothing has run here yet (run `flowc run FILE` first, or pass `--journal PATH`)", path.display())]
    Missing {
        /// The journal path.
        path: PathBuf,
    },
    /// The file could not be opened or is not an SQLite database.
    #[error("cannot open the journal `{}`: {detail}", path.display())]
    Open {
        /// The journal path.
        path: PathBuf,
        /// What SQLite said, in words.
        detail: String,
    },
    /// The path names a FIFO, a directory, a device: SQLite would block or fail on it.
    #[error("the journal `{}` is {kind}, not a regular file; pass another `--journal PATH`", path.display())]
    NotAFile {
        /// The journal path (or its `-wal`/`-shm` companion).
        path: PathBuf,
        /// What it is, in words (`a FIFO`).
        kind: &'static str,
    },
    /// A non-empty file that does not start with the SQLite header.
    #[error("`{}` is a {len}-byte file that is not an SQLite database, so not a flowc journal; flowc leaves it as it is: move it away or pass another `--journal PATH`", path.display())]
    NotSqlite {
        /// The journal path.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
    },
    /// An SQLite database that is not a flowc journal.
    #[error("`{}` is an SQLite database but not a flowc journal; pass another `--journal PATH`", path.display())]
    Foreign {
        /// The journal path.
        path: PathBuf,
    },
    /// A journal written by a newer flowc.
    #[error("the journal `{}` has schema version {found}, newer than this flowc supports ({}); upgrade flowc", path.display(), super::SCHEMA_VERSION)]
    Newer {
        /// The journal path.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A journal from an older flowc opened read-only.
    #[error("the journal `{}` has schema version {found} and must be migrated; run `flowc run --resume` (or any `flowc run`) once to migrate it", path.display())]
    Outdated {
        /// The journal path.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// `PRAGMA integrity_check` failed.
    #[error("the journal `{}` is corrupt: {detail}", path.display())]
    Corrupt {
        /// The journal path.
        path: PathBuf,
        /// SQLite's report.
        detail: String,
    },
    /// Another process drives the run.
    #[error(
        "run `{run}` is being driven by {holder} (last heartbeat {age_s}s ago); wait for it to finish, or stop that process"
    )]
    Leased {
        /// The run.
        run: String,
        /// Who holds the lease.
        holder: String,
        /// Seconds since its last heartbeat.
        age_s: i64,
    },
    /// This process lost its lease on the run: another driver took it over.
    #[error(
        "run `{run}` was taken over by {holder} while this process was stalled; this process stops without writing anything more"
    )]
    Fenced {
        /// The run.
        run: String,
        /// Who holds the lease now.
        holder: String,
    },
    /// A run that does not exist.
    #[error("no run `{run}` in this journal (see `flowc runs`)")]
    NoRun {
        /// The id asked for.
        run: String,
    },
    /// A run's history was changed, or its state disagrees with its events.
    #[error(
        "journal tampered or corrupt: run `{run}`: {detail}; flowc will not continue it (see `flowc replay {run}`)"
    )]
    Tampered {
        /// The run.
        run: String,
        /// The first problem found.
        detail: String,
    },
    /// The journal holds fewer events than were committed to it.
    #[error(
        "the journal `{}` lost its last {lost} committed event(s): its write-ahead log was damaged or the machine lost power; copy `{p}`, `{p}-wal` and `{p}-shm` somewhere safe (the log may still hold what was lost), then delete `{p}-head` to go on with what is left",
        path.display(),
        p = path.display()
    )]
    Lost {
        /// The journal path.
        path: PathBuf,
        /// How many events are missing.
        lost: i64,
    },
    /// A run-id prefix that matches several runs.
    #[error("`{prefix}` matches several runs: {}{}; give more of the id", candidates.join(", "), if *more { ", …" } else { "" })]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// Matching run ids, newest first (at most ten).
        candidates: Vec<String>,
        /// Whether more runs match than are listed.
        more: bool,
    },
    /// An event or query failed.
    #[error("journal error: {0}")]
    Sql(String),
}

impl JournalError {
    /// A failed integrity check: SQLite could not even read the file.
    pub(super) fn corrupt(path: &Path, err: &DbError) -> JournalError {
        JournalError::Corrupt {
            path: path.to_path_buf(),
            detail: describe(err),
        }
    }

    /// An open error with the database's message translated.
    pub fn open(path: &Path, err: impl Into<DbError>) -> JournalError {
        let err = err.into();
        let detail = match &err {
            // Not yet connected: what the server or the network said.
            DbError::Postgres(_) => err.to_string(),
            _ => describe(&err),
        };
        JournalError::Open {
            path: path.to_path_buf(),
            detail,
        }
    }
}

fn describe(err: &DbError) -> String {
    use rusqlite::ErrorCode;
    let DbError::Sqlite(err) = err else {
        if err.is_connection() {
            return format!(
                "lost the connection to the Postgres journal ({err}); nothing half-written stays: once the server is back, `flowc run --resume` goes on"
            );
        }
        return err.to_string();
    };
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "the file is not an SQLite database (truncated or overwritten?)".to_string()
        }
        Some(ErrorCode::ReadOnly) => {
            "the journal is read-only; flowc needs to write to it and to its directory".to_string()
        }
        Some(ErrorCode::CannotOpen) => {
            "the file cannot be opened (does its directory exist, and may flowc write there?)"
                .to_string()
        }
        Some(ErrorCode::DatabaseCorrupt) => "the database is corrupt".to_string(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the journal is locked by another process".to_string()
        }
        Some(ErrorCode::PermissionDenied) => "permission denied".to_string(),
        _ => err.to_string(),
    }
}

impl From<DbError> for JournalError {
    fn from(err: DbError) -> JournalError {
        JournalError::Sql(describe(&err))
    }
}

impl From<rusqlite::Error> for JournalError {
    fn from(err: rusqlite::Error) -> JournalError {
        JournalError::Sql(describe(&DbError::Sqlite(err)))
    }
}
