//! Reading runs, nodes, approvals and events back.

use super::db::{DbError, Row, params};
use super::{Event, Journal, JournalError};
use std::collections::{HashMap, HashSet};

/// A row of `runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Skill name.
    pub skill: String,
    /// The flow file.
    pub file: String,
    /// Inputs as JSON.
    pub inputs: serde_json::Value,
    /// `running`, `paused`, `succeeded`, `failed`, `interrupted`, `cancelled`.
    pub status: String,
    /// Start, Unix ms.
    pub started_at: i64,
    /// Last change, Unix ms.
    pub updated_at: i64,
    /// End, Unix ms.
    pub finished_at: Option<i64>,
    /// The skill's return value.
    pub output: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A row of `nodes`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRow {
    /// Instance key.
    pub key: String,
    /// Step or block name.
    pub name: String,
    /// Step kind or `loop`/`for`.
    pub kind: String,
    /// Status.
    pub status: String,
    /// Attempts made.
    pub attempt: u32,
    /// Input hash of the instance.
    pub input_hash: Option<String>,
    /// First start, Unix ms.
    pub started_at: Option<i64>,
    /// End, Unix ms.
    pub finished_at: Option<i64>,
    /// Result of the last attempt.
    pub result: Option<serde_json::Value>,
    /// Last error.
    pub error: Option<String>,
    /// Last feedback.
    pub feedback: Option<String>,
    /// Block state.
    pub data: Option<serde_json::Value>,
}

/// A row of `approvals`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApprovalRow {
    /// Run id.
    pub run_id: String,
    /// Node instance key.
    pub node: String,
    /// `approval`, `policy` or `escalation`.
    pub kind: String,
    /// The question.
    pub prompt: String,
    /// The input hash the decision is bound to.
    pub input_hash: String,
    /// `pending`, `approved`, `rejected`, `retry` or `skip`.
    pub status: String,
    /// When asked.
    pub requested_at: i64,
    /// Who decided.
    pub decided_by: Option<String>,
    /// Their comment or reason.
    pub comment: Option<String>,
    /// For `skip`: the result given.
    pub output: Option<serde_json::Value>,
}

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn run_row(r: &Row<'_>) -> Result<RunRow, DbError> {
    Ok(RunRow {
        id: r.get(0)?,
        skill: r.get(1)?,
        file: r.get(2)?,
        inputs: parse_json(r.get(3)?).unwrap_or(serde_json::Value::Null),
        status: r.get(4)?,
        started_at: r.get(5)?,
        updated_at: r.get(6)?,
        finished_at: r.get(7)?,
        output: parse_json(r.get(8)?),
        error: r.get(9)?,
    })
}

const RUN_COLS: &str =
    "id, skill, file, inputs, status, started_at, updated_at, finished_at, output, error";

impl Journal {
    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRow>, JournalError> {
        let rows = self.conn.query_map(
            &format!("SELECT {RUN_COLS} FROM runs ORDER BY started_at DESC, id DESC"),
            params![],
            run_row,
        )?;
        Ok(rows)
    }

    /// One run.
    pub fn run(&self, id: &str) -> Result<RunRow, JournalError> {
        self.conn
            .query_opt(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
                params![id],
                run_row,
            )?
            .ok_or_else(|| JournalError::NoRun {
                run: id.to_string(),
            })
    }

    /// The id of the newest run, if any.
    pub fn latest_run(&self) -> Result<Option<String>, JournalError> {
        Ok(self.conn.query_opt(
            "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1",
            params![],
            |r| r.get(0),
        )?)
    }

    /// The newest run that has not finished (running, paused or interrupted).
    pub fn latest_unfinished(&self) -> Result<Option<RunRow>, JournalError> {
        Ok(self
            .conn
            .query_opt(
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE status IN ('running', 'paused', 'interrupted', 'failed')
                     ORDER BY CASE WHEN status = 'failed' THEN 1 ELSE 0 END, started_at DESC, id DESC LIMIT 1"
                ), params![],
                run_row,
            )?)
    }

    /// Every node instance of a run, in the order they were added.
    pub fn nodes(&self, run: &str) -> Result<Vec<NodeRow>, JournalError> {
        let rows = self.conn.query_map("SELECT key, name, kind, status, attempt, input_hash, started_at, finished_at, result, error, feedback, data
             FROM nodes WHERE run_id = ?1 ORDER BY rowid", params![run], |r| {
            Ok(NodeRow {
                key: r.get(0)?,
                name: r.get(1)?,
                kind: r.get(2)?,
                status: r.get(3)?,
                attempt: r.get(4)?,
                input_hash: r.get(5)?,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
                result: parse_json(r.get(8)?),
                error: r.get(9)?,
                feedback: r.get(10)?,
                data: parse_json(r.get(11)?),
            })
        })?;
        Ok(rows)
    }

    /// The definition hash each step instance of a run last became `ready`
    /// with (its `ready` events' `definition_hash`, or its first status's
    /// when that added it already ready or running); instances journaled before
    /// the hash was recorded have none.
    pub fn definition_hashes(&self, run: &str) -> Result<HashMap<String, String>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT node, CASE WHEN json_type(data, '$.definition_hash') = 'text' \
             THEN json_extract(data, '$.definition_hash') END FROM events \
             WHERE run_id = ?1 AND kind = 'node_status' AND node IS NOT NULL \
             AND json_valid(data) AND (json_extract(data, '$.status') = 'ready' \
               OR json_type(data, '$.added') = 'object') ORDER BY seq",
            params![run],
            |r| Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?)),
        )?;
        let mut out = HashMap::new();
        for row in rows {
            match row {
                (node, Some(h)) => out.insert(node, h),
                // A later `ready` without a hash (an older flowc resumed the run) forgets it.
                (node, None) => out.remove(&node),
            };
        }
        Ok(out)
    }

    /// Approval items: pending ones across runs, or every item of one run.
    pub fn approvals(&self, run: Option<&str>) -> Result<Vec<ApprovalRow>, JournalError> {
        let sql = "SELECT run_id, node, kind, prompt, input_hash, status, requested_at, decided_by, comment, output
                   FROM approvals WHERE (?1 IS NULL AND status = 'pending') OR run_id = ?1
                   ORDER BY requested_at, run_id, node";
        let rows = self.conn.query_map(sql, params![run], |r| {
            Ok(ApprovalRow {
                run_id: r.get(0)?,
                node: r.get(1)?,
                kind: r.get(2)?,
                prompt: r.get(3)?,
                input_hash: r.get(4)?,
                status: r.get(5)?,
                requested_at: r.get(6)?,
                decided_by: r.get(7)?,
                comment: r.get(8)?,
                output: parse_json(r.get(9)?),
            })
        })?;
        Ok(rows)
    }

    /// Every event of a run, in order.
    pub fn events(&self, run: &str) -> Result<Vec<Event>, JournalError> {
        self.events_of(run, None)
    }

    /// The events of a run, of one kind or all, in order.
    pub fn events_of(&self, run: &str, kind: Option<&str>) -> Result<Vec<Event>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT run_id, seq, at, kind, node, attempt, data FROM events \
             WHERE run_id = ?1 AND (?2 IS NULL OR kind = ?2) ORDER BY seq",
            params![run, kind],
            event_row,
        )?;
        Ok(rows)
    }

    /// The turns and tool calls of one agent attempt, in order.
    pub fn agent_events(
        &self,
        run: &str,
        node: &str,
        attempt: u32,
    ) -> Result<Vec<Event>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT run_id, seq, at, kind, node, attempt, data FROM events \
             WHERE run_id = ?1 AND node = ?2 AND attempt = ?3 \
               AND kind IN ('llm_call', 'tool_call_started', 'tool_call_finished') ORDER BY seq",
            params![run, node, attempt],
            event_row,
        )?;
        Ok(rows)
    }

    /// How long the run has been driven so far, in ms: each session counts
    /// from its `run_started`/`run_resumed` to its last own event. Time while
    /// paused or stopped, and decisions recorded from outside, do not count.
    pub fn active_ms(&self, run: &str) -> Result<i64, JournalError> {
        let rows = self.conn.query_map(
            "SELECT kind, at FROM events WHERE run_id = ?1 \
             AND kind IN ('run_started', 'run_resumed', 'run_status', 'node_status') ORDER BY seq",
            params![run],
            |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
        )?;
        let mut total = 0i64;
        let mut session: Option<(i64, i64)> = None;
        for row in rows {
            let (kind, at) = row;
            if kind == "run_started" || kind == "run_resumed" {
                if let Some((start, end)) = session {
                    total += (end - start).max(0);
                }
                session = Some((at, at));
            } else if let Some((_, end)) = session.as_mut() {
                *end = (*end).max(at);
            }
        }
        if let Some((start, end)) = session {
            total += (end - start).max(0);
        }
        Ok(total)
    }

    /// How long `run` took: the time it was driven ([`Journal::active_ms`]),
    /// plus, while a live process drives it, the time since its last event.
    /// Downtime after a crash and time paused for a person do not count.
    pub fn driven_ms(&self, run: &str, live: bool) -> Result<i64, JournalError> {
        let mut total = self.active_ms(run)?;
        if live {
            let last: Option<i64> = self.conn.query_row(
                "SELECT max(at) FROM events WHERE run_id = ?1",
                params![run],
                |r| r.get(0),
            )?;
            total += last.map_or(0, |at| (super::now_ms() - at).max(0));
        }
        Ok(total)
    }

    /// Node instances that ran again after an interruption (a crash, Ctrl-C):
    /// when that last run began. Their durations count from there.
    pub fn restarts(&self, run: &str) -> Result<HashMap<String, i64>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT node, at, json_extract(data, '$.status') FROM events \
             WHERE run_id = ?1 AND kind = 'node_status' ORDER BY seq",
            params![run],
            |r| {
                Ok((
                    r.get::<Option<String>>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<Option<String>>(2)?,
                ))
            },
        )?;
        let mut interrupted: HashSet<String> = HashSet::new();
        let mut out = HashMap::new();
        for row in rows {
            let (Some(node), at, Some(status)) = row else {
                continue;
            };
            match status.as_str() {
                "interrupted" => {
                    interrupted.insert(node);
                }
                "running" if interrupted.remove(&node) => {
                    out.insert(node, at);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Step attempts a run has started so far (its `running` events).
    pub fn attempts_started(&self, run: &str) -> Result<u64, JournalError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM events WHERE run_id = ?1 AND kind = 'node_status' \
             AND attempt IS NOT NULL AND json_extract(data, '$.status') = 'running'",
            params![run],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// Model calls of a run, summed per model (from the `llm_call` events).
    pub fn llm_usage(&self, run: &str) -> Result<Vec<LlmUsage>, JournalError> {
        let rows = self.conn.query_map("SELECT json_extract(data, '$.model'), count(*), \
                    total(json_extract(data, '$.tokens_in')), total(json_extract(data, '$.tokens_out')), \
                    total(json_extract(data, '$.cost_usd')) \
             FROM events WHERE run_id = ?1 AND kind = 'llm_call' GROUP BY 1 ORDER BY 1 NULLS FIRST", params![run], |r| {
            Ok(LlmUsage {
                model: r.get::<Option<String>>(0)?.unwrap_or_default(),
                calls: r.get::<i64>(1)? as u64,
                tokens_in: r.get::<f64>(2)? as u64,
                tokens_out: r.get::<f64>(3)? as u64,
                cost_usd: r.get(4)?,
            })
        })?;
        Ok(rows)
    }

    /// Resolves a run id or a unique prefix of one.
    pub fn resolve_run(&self, id: &str) -> Result<String, JournalError> {
        if id.trim().is_empty() {
            return Err(JournalError::Sql(
                "a run id is needed (see `flowc runs`)".to_string(),
            ));
        }
        let escaped = id
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let ids: Vec<String> = self.conn.query_map(
            "SELECT id FROM runs WHERE id = ?1 OR id LIKE ?2 ESCAPE '\\'
             ORDER BY id = ?1 DESC, started_at DESC, id DESC LIMIT 11",
            params![id, format!("{escaped}%")],
            |r| r.get(0),
        )?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            _ if ids.iter().any(|i| i == id) => Ok(id.to_string()),
            [] => Err(JournalError::NoRun {
                run: id.to_string(),
            }),
            _ => Err(JournalError::Ambiguous {
                prefix: id.to_string(),
                more: ids.len() > 10,
                candidates: ids.into_iter().take(10).collect(),
            }),
        }
    }
}

/// Model calls of one model in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LlmUsage {
    /// The model item's name.
    pub model: String,
    /// Calls made (failed ones included).
    pub calls: u64,
    /// Input tokens.
    pub tokens_in: u64,
    /// Output tokens.
    pub tokens_out: u64,
    /// Cost in USD, from the model's prices.
    pub cost_usd: f64,
}

/// An `events` row selected as `run_id, seq, at, kind, node, attempt, data`.
fn event_row(r: &Row<'_>) -> Result<Event, DbError> {
    let data: String = r.get(6)?;
    Ok(Event {
        run_id: r.get(0)?,
        seq: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        node: r.get(4)?,
        attempt: r.get(5)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    })
}
