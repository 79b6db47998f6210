//! Read-only queries for analytics: every failed attempt, rejected approval
//! and policy violation since a time, with what the journal says about it.

use super::db::params;
use super::{Journal, JournalError};

/// One thing that went wrong, as journaled.
#[derive(Debug, Clone)]
pub struct FailureRow {
    /// The run.
    pub run_id: String,
    /// The run's skill.
    pub skill: String,
    /// The step's name (without its instance path).
    pub step: String,
    /// `attempt` (a step attempt rejected or failed), `approval` (rejected), `policy` (a violation).
    pub what: &'static str,
    /// When (Unix ms).
    pub at: i64,
    /// The event's data.
    pub data: serde_json::Value,
    /// The attempt's `output` event, for `run` steps.
    pub output: Option<serde_json::Value>,
    /// Whether the attempt made a model call that failed.
    pub model_error: bool,
}

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl Journal {
    /// Everything that went wrong since `since` (Unix ms), of `skill` when given, oldest first.
    pub fn failures(
        &self,
        since: i64,
        skill: Option<&str>,
    ) -> Result<Vec<FailureRow>, JournalError> {
        let mut out = Vec::new();
        let rows = self.conn.query_map(
            "SELECT e.run_id, r.skill, COALESCE(n.name, e.node), e.at, e.data,
                    COALESCE(json_extract(e.data, '$.log'),
                      (SELECT o.data FROM events o WHERE o.run_id = e.run_id AND o.node = e.node
                         AND o.attempt = e.attempt AND o.kind = 'output' LIMIT 1)),
                    EXISTS (SELECT 1 FROM events l WHERE l.run_id = e.run_id AND l.node = e.node
                       AND l.attempt = e.attempt AND l.kind = 'llm_call'
                       AND json_extract(l.data, '$.error') IS NOT NULL)
             FROM events e CROSS JOIN runs r ON r.id = e.run_id
             LEFT JOIN nodes n ON n.run_id = e.run_id AND n.key = e.node
             WHERE e.kind = 'node_status' AND e.attempt IS NOT NULL AND e.at >= ?1
               AND json_extract(e.data, '$.status') IN ('rejected', 'failed')
               AND (?2 IS NULL OR r.skill = ?2)
             ORDER BY e.at, e.run_id, e.seq",
            params![since, skill],
            |r| {
                Ok(FailureRow {
                    run_id: r.get(0)?,
                    skill: r.get(1)?,
                    step: r.get::<Option<String>>(2)?.unwrap_or_default(),
                    what: "attempt",
                    at: r.get(3)?,
                    data: json(r.get(4)?).unwrap_or_default(),
                    output: json(r.get(5)?),
                    model_error: r.get(6)?,
                })
            },
        )?;
        out.extend(rows);
        // Two halves, so each reads its own partial index (an `OR` of kinds
        // would scan every event).
        let rows = self.conn.query_map(
            "SELECT e.run_id, r.skill, COALESCE(n.name, e.node, ''), e.at, e.data, e.kind, e.seq
             FROM events e CROSS JOIN runs r ON r.id = e.run_id
             LEFT JOIN nodes n ON n.run_id = e.run_id AND n.key = e.node
             WHERE e.kind = 'policy_violation' AND e.at >= ?1 AND (?2 IS NULL OR r.skill = ?2)
             UNION ALL
             SELECT e.run_id, r.skill, COALESCE(n.name, e.node, ''), e.at, e.data, e.kind, e.seq
             FROM events e CROSS JOIN runs r ON r.id = e.run_id
             LEFT JOIN nodes n ON n.run_id = e.run_id AND n.key = e.node
             WHERE e.kind = 'approval_decided' AND e.at >= ?1 AND (?2 IS NULL OR r.skill = ?2)
               AND json_extract(e.data, '$.decision') = 'rejected'
             ORDER BY 4, 1, 7",
            params![since, skill],
            |r| {
                let kind: String = r.get(5)?;
                Ok(FailureRow {
                    run_id: r.get(0)?,
                    skill: r.get(1)?,
                    step: r.get(2)?,
                    what: if kind == "policy_violation" {
                        "policy"
                    } else {
                        "approval"
                    },
                    at: r.get(3)?,
                    data: json(r.get(4)?).unwrap_or_default(),
                    output: None,
                    model_error: false,
                })
            },
        )?;
        out.extend(rows);
        out.sort_by_key(|r| r.at);
        Ok(out)
    }
}

/// A node instance of a step, for statistics.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// The run's skill.
    pub skill: String,
    /// The step's name.
    pub step: String,
    /// Its kind (`run`, `llm`, …).
    pub kind: String,
    /// Its status.
    pub status: String,
    /// Attempts it started.
    pub attempts: i64,
    /// How long it took (ms), when it finished.
    pub ms: Option<i64>,
}

/// Model use of one step, by model.
#[derive(Debug, Clone)]
pub struct StepLlm {
    /// The run's skill.
    pub skill: String,
    /// The step's name.
    pub step: String,
    /// The model's name.
    pub model: String,
    /// Calls.
    pub calls: i64,
    /// Tokens in.
    pub tokens_in: i64,
    /// Tokens out.
    pub tokens_out: i64,
    /// Cost in USD.
    pub cost_usd: f64,
}

/// One model call, with its prompt version and whether its attempt succeeded.
#[derive(Debug, Clone)]
pub struct PromptCall {
    /// The run's skill.
    pub skill: String,
    /// The step's name.
    pub step: String,
    /// The prompt version (`llm::prompt_version`; empty for calls journaled before it was).
    pub version: String,
    /// The model's name.
    pub model: String,
    /// The attempt, as `RUN/NODE/ATTEMPT`.
    pub attempt: String,
    /// Whether that attempt succeeded.
    pub succeeded: bool,
    /// Tokens in.
    pub tokens_in: i64,
    /// Tokens out.
    pub tokens_out: i64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// When it was made (Unix ms).
    pub at: i64,
}

/// Runs of one skill started on one day (UTC), by outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayRuns {
    /// The skill.
    pub skill: String,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Runs that succeeded.
    pub succeeded: i64,
    /// Runs that failed.
    pub failed: i64,
}

/// Model spend of one model on one day (UTC).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayCost {
    /// The model.
    pub model: String,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// Calls.
    pub calls: i64,
}

impl Journal {
    /// Runs started since `since`, per skill and day, by outcome.
    pub fn day_runs(&self, since: i64) -> Result<Vec<DayRuns>, JournalError> {
        let rows = self.conn.query_map("SELECT skill, started_at / 86400000, total(status = 'succeeded'), total(status = 'failed')
             FROM runs WHERE started_at >= ?1 GROUP BY 1, 2 ORDER BY 1, 2", params![since], |r| {
            Ok(DayRuns {
                skill: r.get(0)?,
                day: r.get(1)?,
                succeeded: r.get::<f64>(2)? as i64,
                failed: r.get::<f64>(3)? as i64,
            })
        })?;
        Ok(rows)
    }

    /// Model spend since `since`, per model and day.
    pub fn day_costs(&self, since: i64) -> Result<Vec<DayCost>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT COALESCE(json_extract(data, '$.model'), ''), at / 86400000,
                    total(json_extract(data, '$.cost_usd')), count(*)
             FROM events WHERE kind = 'llm_call' AND at >= ?1 GROUP BY 1, 2 ORDER BY 1, 2",
            params![since],
            |r| {
                Ok(DayCost {
                    model: r.get(0)?,
                    day: r.get(1)?,
                    cost_usd: r.get(2)?,
                    calls: r.get(3)?,
                })
            },
        )?;
        Ok(rows)
    }

    /// Model calls of runs started since `since`, each with its prompt version
    /// and its attempt's outcome.
    pub fn prompt_calls(
        &self,
        since: i64,
        skill: Option<&str>,
    ) -> Result<Vec<PromptCall>, JournalError> {
        let rows = self.conn.query_map("SELECT r.skill, COALESCE(n.name, e.node), COALESCE(json_extract(e.data, '$.prompt_version'), ''),
                    json_extract(e.data, '$.model'), e.run_id || '/' || e.node || '/' || e.attempt,
                    EXISTS (SELECT 1 FROM events s WHERE s.run_id = e.run_id AND s.node = e.node
                       AND s.attempt = e.attempt AND s.kind = 'node_status'
                       AND json_extract(s.data, '$.status') = 'succeeded'),
                    COALESCE(CAST(json_extract(e.data, '$.tokens_in') AS DOUBLE PRECISION), 0),
                    COALESCE(CAST(json_extract(e.data, '$.tokens_out') AS DOUBLE PRECISION), 0),
                    COALESCE(CAST(json_extract(e.data, '$.cost_usd') AS DOUBLE PRECISION), 0.0), e.at
             FROM events e JOIN runs r ON r.id = e.run_id
             LEFT JOIN nodes n ON n.run_id = e.run_id AND n.key = e.node
             WHERE e.kind = 'llm_call' AND r.started_at >= ?1 AND (?2 IS NULL OR r.skill = ?2)
             ORDER BY e.at", params![since, skill], |r| {
            Ok(PromptCall {
                skill: r.get(0)?,
                step: r.get::<Option<String>>(1)?.unwrap_or_default(),
                version: r.get(2)?,
                model: r.get::<Option<String>>(3)?.unwrap_or_default(),
                attempt: r.get::<Option<String>>(4)?.unwrap_or_default(),
                succeeded: r.get(5)?,
                tokens_in: r.get::<f64>(6)? as i64,
                tokens_out: r.get::<f64>(7)? as i64,
                cost_usd: r.get(8)?,
                at: r.get(9)?,
            })
        })?;
        Ok(rows)
    }

    /// Runs started since `since` (Unix ms): (skill, status, duration in ms when ended).
    pub fn run_rows(
        &self,
        since: i64,
        skill: Option<&str>,
    ) -> Result<Vec<(String, String, Option<i64>)>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT skill, status, finished_at - started_at FROM runs
             WHERE started_at >= ?1 AND (?2 IS NULL OR skill = ?2)",
            params![since, skill],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(rows)
    }

    /// Step instances (not blocks) of runs started since `since`.
    pub fn step_rows(&self, since: i64, skill: Option<&str>) -> Result<Vec<StepRow>, JournalError> {
        let rows = self.conn.query_map("SELECT r.skill, n.name, n.kind, n.status, n.attempt, n.finished_at - n.started_at
             FROM nodes n JOIN runs r ON r.id = n.run_id
             WHERE r.started_at >= ?1 AND (?2 IS NULL OR r.skill = ?2) AND n.kind NOT IN ('loop', 'for')", params![since, skill], |r| {
            Ok(StepRow {
                skill: r.get(0)?,
                step: r.get(1)?,
                kind: r.get(2)?,
                status: r.get(3)?,
                attempts: r.get(4)?,
                ms: r.get(5)?,
            })
        })?;
        Ok(rows)
    }

    /// Model calls of runs started since `since`, summed by (skill, step, model).
    pub fn step_llm(&self, since: i64, skill: Option<&str>) -> Result<Vec<StepLlm>, JournalError> {
        let rows = self.conn.query_map("SELECT r.skill, COALESCE(n.name, e.node), json_extract(e.data, '$.model'), count(*),
                    total(json_extract(e.data, '$.tokens_in')), total(json_extract(e.data, '$.tokens_out')),
                    total(json_extract(e.data, '$.cost_usd'))
             FROM events e JOIN runs r ON r.id = e.run_id
             LEFT JOIN nodes n ON n.run_id = e.run_id AND n.key = e.node
             WHERE e.kind = 'llm_call' AND r.started_at >= ?1 AND (?2 IS NULL OR r.skill = ?2)
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 NULLS FIRST", params![since, skill], |r| {
            Ok(StepLlm {
                skill: r.get(0)?,
                step: r.get::<Option<String>>(1)?.unwrap_or_default(),
                model: r.get::<Option<String>>(2)?.unwrap_or_default(),
                calls: r.get(3)?,
                tokens_in: r.get::<f64>(4)? as i64,
                tokens_out: r.get::<f64>(5)? as i64,
                cost_usd: r.get(6)?,
            })
        })?;
        Ok(rows)
    }
}
