//! Trigger bookkeeping: the fires recorded, and each cron trigger's cursor.

use super::db::{DbError, Row, params};
use super::{Journal, JournalError};

/// A recorded fire of a trigger.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FireRow {
    /// The trigger's name.
    pub trigger: String,
    /// What identified the fire.
    pub key: String,
    /// When it was recorded (Unix ms).
    pub at: i64,
    /// The run it queued.
    pub run_id: Option<String>,
    /// `queued`, `skipped`, `rejected`, `capped`.
    pub outcome: String,
    /// What was kept about it.
    pub data: serde_json::Value,
}

impl Journal {
    /// The last slot time (Unix ms) cron trigger `trigger` considered.
    pub fn cursor(&self, trigger: &str) -> Result<Option<i64>, JournalError> {
        Ok(self.conn.query_opt(
            "SELECT slot FROM trigger_cursors WHERE trigger = ?1",
            params![trigger],
            |r| r.get(0),
        )?)
    }

    /// Moves `trigger`'s cursor forward to `slot` (never back: two services
    /// on one journal may both move it).
    pub fn advance_cursor(&mut self, trigger: &str, slot: i64) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO trigger_cursors (trigger, slot) VALUES (?1, ?2)
             ON CONFLICT (trigger) DO UPDATE SET slot = CASE WHEN excluded.slot > trigger_cursors.slot THEN excluded.slot ELSE trigger_cursors.slot END",
            params![trigger, slot],
        )?;
        Ok(())
    }

    /// Recorded fires, newest first; of one trigger when given.
    pub fn fires(&self, trigger: Option<&str>, limit: usize) -> Result<Vec<FireRow>, JournalError> {
        let rows = self.conn.query_map(
            &format!(
                "SELECT {FIRE_COLS} FROM trigger_events
             WHERE ?1 IS NULL OR trigger = ?1 ORDER BY at DESC, key DESC LIMIT ?2"
            ),
            params![trigger, limit as i64],
            fire_row,
        )?;
        Ok(rows)
    }

    /// The runs a trigger queued that have not ended, oldest first (for `overlap`).
    pub fn trigger_active_runs(
        &self,
        trigger: &str,
    ) -> Result<Vec<(String, String)>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT r.id, r.status FROM trigger_events t JOIN runs r ON r.id = t.run_id
             WHERE t.trigger = ?1 AND r.status IN ('queued', 'running', 'paused', 'interrupted')
             ORDER BY r.started_at",
            params![trigger],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows)
    }
}

impl Journal {
    /// The recorded fire `(trigger, key)`, if there is one.
    pub fn fire_row(&self, trigger: &str, key: &str) -> Result<Option<FireRow>, JournalError> {
        Ok(self.conn.query_opt(
            &format!("SELECT {FIRE_COLS} FROM trigger_events WHERE trigger = ?1 AND key = ?2"),
            params![trigger, key],
            fire_row,
        )?)
    }
}

/// The columns [`fire_row`] reads, in its order.
const FIRE_COLS: &str = "trigger, key, at, run_id, outcome, data";

fn fire_row(r: &Row<'_>) -> Result<FireRow, DbError> {
    let data: String = r.get(5)?;
    Ok(FireRow {
        trigger: r.get(0)?,
        key: r.get(1)?,
        at: r.get(2)?,
        run_id: r.get(3)?,
        outcome: r.get(4)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}
