//! The notification outbox: messages to send, their attempts, and the cursor over the events that cause them.

use super::db::{DbError, Row, params};
use super::{Event, Journal, JournalError};
use serde_json::Value as Json;

/// A notification to queue.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Its run.
    pub run: String,
    /// The node instance it is about, if any.
    pub node: Option<String>,
    /// `approval`, `failure` or `escalation`.
    pub event: String,
    /// The seq of the event that caused it.
    pub source_seq: i64,
    /// The target as journaled (`NotifyTarget::to_json`).
    pub target: Json,
    /// The message (redacted).
    pub message: Json,
}

/// A row of `notifications`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoticeRow {
    /// Its id.
    pub id: i64,
    /// Its run.
    pub run_id: String,
    /// The node instance it is about.
    pub node: Option<String>,
    /// `approval`, `failure` or `escalation`.
    pub event: String,
    /// Where it goes.
    pub target: Json,
    /// What it says.
    pub message: Json,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_at: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
}

const COLS: &str =
    "id, run_id, node, event, target, message, status, attempts, next_at, last_error, delivered_at";

fn notice_row(r: &Row<'_>) -> Result<NoticeRow, DbError> {
    let json = |i: usize| -> Result<Json, DbError> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or(Json::Null))
    };
    Ok(NoticeRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        node: r.get(2)?,
        event: r.get(3)?,
        target: json(4)?,
        message: json(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        last_error: r.get(9)?,
        delivered_at: r.get(10)?,
    })
}

impl Journal {
    /// The rowid of the newest event (0 for an empty journal): it changes with every change of any run.
    pub fn last_event_rowid(&self) -> Result<i64, JournalError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(rowid), 0) FROM events",
            params![],
            |r| r.get(0),
        )?)
    }

    /// The events after `rowid` that may cause a notification (asks with a
    /// `notify` list, runs that ended failed), at most `limit`, with their rowids.
    pub fn notify_sources(
        &self,
        rowid: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Event)>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT rowid, run_id, seq, at, kind, node, attempt, data FROM events
              WHERE rowid > ?1 AND kind IN ('approval_requested', 'run_status')
                AND json_extract(data, '$.notify') IS NOT NULL
              ORDER BY rowid LIMIT ?2",
            params![rowid, limit],
            |r| {
                let data: String = r.get(7)?;
                Ok((
                    r.get(0)?,
                    Event {
                        run_id: r.get(1)?,
                        seq: r.get(2)?,
                        at: r.get(3)?,
                        kind: r.get(4)?,
                        node: r.get(5)?,
                        attempt: r.get(6)?,
                        data: serde_json::from_str(&data).unwrap_or(Json::Null),
                    },
                ))
            },
        )?;
        Ok(rows)
    }

    /// The last event rowid the notifier has looked at (the newest event when it never has).
    pub fn notify_cursor(&self) -> Result<Option<i64>, JournalError> {
        Ok(self.conn.query_opt(
            "SELECT rowid FROM notify_cursor WHERE id = 1",
            params![],
            |r| r.get(0),
        )?)
    }

    /// Queues `notices` and moves the cursor to `rowid`, in one transaction.
    pub fn queue_notices(
        &mut self,
        notices: &[Notice],
        rowid: i64,
        now: i64,
    ) -> Result<(), JournalError> {
        let tx = self.conn.transaction(super::db::Lock::Write)?;
        for n in notices {
            tx.execute(
                "INSERT INTO notifications (run_id, node, event, source_seq, target, message, status, next_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7) ON CONFLICT DO NOTHING",
                params![n.run, n.node, n.event, n.source_seq, n.target.to_string(), n.message.to_string(), now],
            )?;
        }
        tx.execute(
            "INSERT INTO notify_cursor (id, rowid) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET rowid = CASE WHEN excluded.rowid > notify_cursor.rowid THEN excluded.rowid ELSE notify_cursor.rowid END",
            params![rowid],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Notifications due at `now`, oldest first.
    pub fn due_notices(&self, now: i64, limit: i64) -> Result<Vec<NoticeRow>, JournalError> {
        let rows = self.conn.query_map(
            &format!(
                "SELECT {COLS} FROM notifications WHERE status = 'pending' AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2"
            ),
            params![now, limit],
            notice_row,
        )?;
        Ok(rows)
    }

    /// The notifications about one run.
    pub fn notices_of(&self, run: &str) -> Result<Vec<NoticeRow>, JournalError> {
        let rows = self.conn.query_map(
            &format!("SELECT {COLS} FROM notifications WHERE run_id = ?1 ORDER BY id"),
            params![run],
            notice_row,
        )?;
        Ok(rows)
    }

    /// Records one delivery attempt: delivered, to be retried at `retry_at`, or given up (`None`).
    pub fn notice_attempted(
        &mut self,
        id: i64,
        now: i64,
        result: Result<(), (&str, Option<i64>)>,
    ) -> Result<(), JournalError> {
        match result {
            Ok(()) => self.conn.execute(
                "UPDATE notifications SET status = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = NULL WHERE id = ?1",
                params![id, now],
            )?,
            Err((why, Some(retry_at))) => self.conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, next_at = ?3 WHERE id = ?1",
                params![id, why, retry_at],
            )?,
            Err((why, None)) => self.conn.execute(
                "UPDATE notifications SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, why],
            )?,
        };
        Ok(())
    }
}
