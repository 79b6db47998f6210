//! Counts over the whole journal, for the service's `/metrics`.

use super::db::params;
use super::{Journal, JournalError};

/// What `/metrics` reports, read in one pass over the journal's tables.
#[derive(Debug, Default)]
pub struct Stats {
    /// Ended runs by (skill, status).
    pub runs: Vec<(String, String, u64)>,
    /// Runs by status that have not ended (queued, running, paused, interrupted).
    pub open_runs: Vec<(String, u64)>,
    /// Settled step instances by (kind, status).
    pub steps: Vec<(String, String, u64)>,
    /// Durations of finished step instances in seconds, by kind.
    pub step_seconds: Vec<(String, f64)>,
    /// Trigger fires by (trigger, outcome).
    pub fires: Vec<(String, String, u64)>,
    /// Missed cron slots that started no run, by trigger.
    pub missed: Vec<(String, u64)>,
    /// Approvals waiting for a person in runs that have not ended.
    pub approvals_pending: u64,
    /// LLM use by model: (model, tokens in, tokens out, cost in USD).
    pub llm: Vec<(String, u64, u64, f64)>,
    /// Notifications by status (`pending`, `delivered`, `failed`).
    pub notifications: Vec<(String, u64)>,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Journal {
    /// Reads [`Stats`].
    pub fn stats(&self) -> Result<Stats, JournalError> {
        let c = &self.conn;
        let triples = |sql: &str| -> Result<Vec<(String, String, u64)>, JournalError> {
            let rows = c.query_map(sql, params![], |r| {
                Ok((
                    r.get::<Option<String>>(0)?.unwrap_or_default(),
                    r.get::<Option<String>>(1)?.unwrap_or_default(),
                    count(r.get(2)?),
                ))
            })?;
            Ok(rows)
        };
        let pairs = |sql: &str| -> Result<Vec<(String, u64)>, JournalError> {
            let rows = c.query_map(sql, params![], |r| {
                Ok((
                    r.get::<Option<String>>(0)?.unwrap_or_default(),
                    count(r.get::<f64>(1)? as i64),
                ))
            })?;
            Ok(rows)
        };
        let mut stats = Stats {
            runs: triples(
                "SELECT skill, status, count(*) FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY 1, 2 ORDER BY 1, 2",
            )?,
            notifications: pairs(
                "SELECT status, total(1) FROM notifications GROUP BY 1 ORDER BY 1",
            )?,
            open_runs: pairs(
                "SELECT status, total(1) FROM runs WHERE status NOT IN ('succeeded', 'failed', 'cancelled') GROUP BY 1 ORDER BY 1",
            )?,
            steps: triples(
                "SELECT kind, status, count(*) FROM nodes WHERE status IN ('succeeded', 'failed', 'skipped', 'cancelled') GROUP BY 1, 2 ORDER BY 1, 2",
            )?,
            fires: triples(
                "SELECT trigger, outcome, count(*) FROM trigger_events GROUP BY 1, 2 ORDER BY 1, 2",
            )?,
            missed: pairs(
                "SELECT trigger, total(json_extract(data, '$.not_run')) FROM trigger_events WHERE outcome IN ('missed', 'capped') GROUP BY 1 ORDER BY 1",
            )?,
            ..Stats::default()
        };
        stats.step_seconds = c.query_map(
            "SELECT kind, (finished_at - started_at) / 1000.0 FROM nodes
             WHERE finished_at IS NOT NULL AND started_at IS NOT NULL",
            params![],
            |r| Ok((r.get(0)?, r.get::<f64>(1)?.max(0.0))),
        )?;
        stats.approvals_pending = count(c.query_row(
            "SELECT count(*) FROM approvals a JOIN runs r ON r.id = a.run_id
             WHERE a.status = 'pending' AND r.status NOT IN ('succeeded', 'failed', 'cancelled')",
            params![],
            |r| r.get(0),
        )?);
        stats.llm = c.query_map(
            "SELECT json_extract(data, '$.model'), total(json_extract(data, '$.tokens_in')),
                    total(json_extract(data, '$.tokens_out')), total(json_extract(data, '$.cost_usd'))
             FROM events WHERE kind = 'llm_call' GROUP BY 1 ORDER BY 1 NULLS FIRST",
            params![],
            |r| {
                Ok((
                    r.get::<Option<String>>(0)?.unwrap_or_default(),
                    r.get::<f64>(1)? as u64,
                    r.get::<f64>(2)? as u64,
                    r.get::<f64>(3)?,
                ))
            },
        )?;
        Ok(stats)
    }

    /// Whether the journal takes writes now (`/readyz`): a write lock is taken and given back.
    pub fn writable(&self) -> Result<(), JournalError> {
        if self.conn.is_postgres() {
            let standby: bool =
                self.conn
                    .query_row("SELECT pg_is_in_recovery()", params![], |r| r.get(0))?;
            if standby {
                return Err(JournalError::Sql(
                    "the Postgres server is a read-only standby".into(),
                ));
            }
        } else {
            self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        }
        Ok(())
    }
}
