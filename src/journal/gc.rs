//! `flowc gc`: pruning finished runs, the one way anything leaves the journal.
//!
//! Events are append-only: their `DELETE` trigger refuses every delete. A
//! prune lifts that trigger inside its own transaction, removes whole runs
//! (events, projection, queue rows, links, notifications), puts the trigger
//! back as it was, and records what it did in `meta` — all or nothing. The
//! run that holds the journal's newest event is always kept, so event row ids
//! never go back (notification cursors, `/live` and the head mark read them).

use super::db::{Db, DbError, params};
use super::{Journal, JournalError};

/// The tables that hold rows of a run, besides `events`.
const RUN_TABLES: &[&str] = &[
    "nodes",
    "approvals",
    "leases",
    "run_queue",
    "cancel_requests",
    "approval_links",
    "notifications",
];

/// What a prune removed (or, for a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The runs, oldest first.
    pub runs: Vec<String>,
    /// Their events.
    pub events: u64,
}

/// Runs that ended (succeeded, failed or cancelled) before `before` (Unix
/// ms), oldest first, without the run holding the newest event.
fn prunable(conn: &Db, before: i64) -> Result<Vec<String>, DbError> {
    conn.query_map(
        "SELECT id FROM runs
         WHERE status IN ('succeeded', 'failed', 'cancelled')
           AND finished_at IS NOT NULL AND finished_at < ?1
           AND id <> COALESCE((SELECT run_id FROM events ORDER BY rowid DESC LIMIT 1), '')
         ORDER BY finished_at, id",
        params![before],
        |r| r.get::<String>(0),
    )
}

impl Journal {
    /// Removes the runs that ended before `before` (Unix ms); with `dry_run`,
    /// only says which. `by` and `rule` (`--older-than 30d`) go into `meta`.
    pub fn gc(
        &mut self,
        before: i64,
        dry_run: bool,
        by: &str,
        rule: &str,
    ) -> Result<Pruned, JournalError> {
        let tx = self.conn.transaction(super::db::Lock::Write)?;
        let runs = prunable(&tx, before)?;
        let mut events = 0u64;
        for run in &runs {
            let n: i64 = tx.query_row(
                "SELECT count(*) FROM events WHERE run_id = ?1",
                params![run],
                |r| r.get(0),
            )?;
            events += n as u64;
        }
        if dry_run || runs.is_empty() {
            return Ok(Pruned { runs, events });
        }
        // The one deletion of events: SQLite's trigger is lifted inside this
        // transaction; Postgres's lets a transaction that says so through.
        let trigger: Option<String> = if tx.is_postgres() {
            tx.execute_batch("SET LOCAL flowc.gc = 'on'")?;
            None
        } else {
            let sql = tx
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_append_only_delete'",
                    params![],
                    |r| r.get(0),
                )
                .ok();
            tx.execute_batch("DROP TRIGGER IF EXISTS events_append_only_delete")?;
            sql
        };
        let tables: Vec<&str> = RUN_TABLES
            .iter()
            .copied()
            .filter(|t| {
                tx.is_postgres()
                    || tx
                        .query_row(
                            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                            params![t],
                            |r| r.get(0),
                        )
                        .unwrap_or(false)
            })
            .collect();
        for run in &runs {
            tx.execute("DELETE FROM events WHERE run_id = ?1", params![run])?;
            for table in &tables {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE run_id = ?1"),
                    params![run],
                )?;
            }
            tx.execute("DELETE FROM runs WHERE id = ?1", params![run])?;
        }
        if let Some(sql) = trigger {
            tx.execute_batch(&sql)?;
        }
        let record = serde_json::json!({
            "rule": rule,
            "before": before,
            "by": by,
            "runs": runs,
            "events": events,
        });
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![format!("gc:{}", super::now_ms()), record.to_string()],
        )?;
        tx.commit()?;
        Ok(Pruned { runs, events })
    }
}
