//! Applying one event to the projection (`runs`, `nodes`, `approvals`, and `memory`).
//!
//! This is the only code that writes the projection, both when events are
//! appended and when `flowc replay` rebuilds state from events.

use super::db::{Db, DbError, params};
use serde_json::Value;

/// Node statuses after which a node instance has finished (for `finished_at`).
const FINISHED: &[&str] = &["succeeded", "skipped", "failed", "cancelled"];

/// Node statuses that replace the stored error with the event's (clearing it when absent).
const REPLACE_ERROR: &[&str] = &["ready", "running", "stale", "succeeded"];

fn text(data: &Value, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json(data: &Value, key: &str) -> Option<String> {
    data.get(key).map(Value::to_string)
}

/// Applies one event; an unknown kind or an illegal change aborts the transaction.
pub fn apply(
    conn: &Db,
    run: &str,
    at: i64,
    kind: &str,
    node: Option<&str>,
    attempt: Option<u32>,
    data: &Value,
) -> Result<(), DbError> {
    match kind {
        "run_queued" => {
            conn.execute("INSERT INTO runs (id, skill, file, inputs, status, started_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?5)", params![run, text(data, "skill"), text(data, "file"), json(data, "inputs").unwrap_or_else(|| "{}".into()), at],
            )?;
        }
        // A queued run's row exists: its first session starts it.
        "run_started" if conn.execute("UPDATE runs SET status = 'running', started_at = ?2, updated_at = ?2 WHERE id = ?1 AND status = 'queued'", params![run, at])? == 1 => {}
        "run_started" => {
            conn.execute("INSERT INTO runs (id, skill, file, inputs, status, started_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?5)", params![run, text(data, "skill"), text(data, "file"), json(data, "inputs").unwrap_or_else(|| "{}".into()), at],
            )?;
        }
        "run_resumed" => {
            expect_one(conn.execute("UPDATE runs SET status = 'running', updated_at = ?2, finished_at = NULL, error = NULL WHERE id = ?1", params![run, at],
            )?)?;
        }
        "run_status" => {
            let status = text(data, "status").unwrap_or_default();
            let finished = matches!(status.as_str(), "succeeded" | "failed" | "cancelled");
            expect_one(conn.execute("UPDATE runs SET status = ?2, updated_at = ?3, finished_at = CASE WHEN ?4 = 1 THEN ?3 ELSE NULL END,
                 output = COALESCE(?5, output), error = ?6 WHERE id = ?1", params![run, status, at, finished, json(data, "output"), text(data, "error")],
            )?)?;
        }
        "node_added" => {
            conn.execute("INSERT INTO nodes (run_id, key, name, kind, status) VALUES (?1, ?2, ?3, ?4, 'pending')", params![run, node, text(data, "name"), text(data, "kind")],
            )?;
        }
        // A step's first event in version 6: added and already `ready` or `running`.
        "node_status" if data.get("added").is_some() => {
            let status = text(data, "status").unwrap_or_default();
            if status != "ready" && status != "running" {
                return Err(DbError::Value(format!(
                    "a node added by its first status must be ready or running, not `{status}`"
                )));
            }
            let added = &data["added"];
            conn.execute("INSERT INTO nodes (run_id, key, name, kind, status, attempt, input_hash, started_at, error, feedback, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?5 = 'running' THEN ?8 END, ?9, ?10, ?11)", params![
                    run,
                    node,
                    text(added, "name"),
                    text(added, "kind"),
                    status,
                    attempt.unwrap_or(0),
                    text(data, "input_hash"),
                    at,
                    text(data, "error"),
                    text(data, "feedback"),
                    json(data, "data"),
                ],
            )?;
        }
        "node_status" => {
            let status = text(data, "status").unwrap_or_default();
            let finished = FINISHED.contains(&status.as_str());
            // Decided here rather than with `?3 IN (…)` in SQL: an IN list of
            // more than two values makes SQLite build an ephemeral b-tree on
            // every execution, which cost more than the rest of the UPDATE.
            let replace_error = REPLACE_ERROR.contains(&status.as_str());
            let explain = |err: DbError| {
                let from: Option<String> = conn
                    .query_row(
                        "SELECT status FROM nodes WHERE run_id = ?1 AND key = ?2",
                        params![run, node],
                        |r| r.get(0),
                    )
                    .ok();
                match from {
                    Some(from) if err.to_string().contains("illegal node status transition") => {
                        DbError::Value(format!(
                            "illegal node status transition of `{}`: {from} → {status}",
                            node.unwrap_or_default()
                        ))
                    }
                    _ => err,
                }
            };
            expect_one(conn.execute("UPDATE nodes SET status = ?3,
                   attempt = COALESCE(?4, attempt),
                   input_hash = COALESCE(?5, input_hash),
                   started_at = CASE WHEN ?3 = 'running' AND started_at IS NULL THEN ?6 ELSE started_at END,
                   finished_at = CASE WHEN ?7 = 1 THEN ?6 ELSE NULL END,
                   result = COALESCE(?8, result),
                   error = CASE WHEN ?12 = 1 THEN ?9 ELSE COALESCE(?9, error) END,
                   feedback = COALESCE(?10, feedback),
                   data = COALESCE(?11, data)
                 WHERE run_id = ?1 AND key = ?2", params![
                    run,
                    node,
                    status,
                    attempt,
                    text(data, "input_hash"),
                    at,
                    finished,
                    json(data, "result"),
                    text(data, "error"),
                    text(data, "feedback"),
                    json(data, "data"),
                    replace_error,
                ],
            ).map_err(explain)?)?;
        }
        "approval_requested" => {
            conn.execute("INSERT INTO approvals (run_id, node, kind, prompt, input_hash, status, requested_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)
                 ON CONFLICT (run_id, node) DO UPDATE SET kind = excluded.kind, prompt = excluded.prompt,
                   input_hash = excluded.input_hash, status = 'pending', requested_at = excluded.requested_at,
                   decided_at = NULL, decided_by = NULL, comment = NULL, output = NULL", params![run, node, text(data, "kind"), text(data, "prompt").unwrap_or_default(), text(data, "input_hash").unwrap_or_default(), at],
            )?;
        }
        "approval_decided" => {
            expect_one(conn.execute("UPDATE approvals SET status = ?3, decided_at = ?4, decided_by = ?5, comment = ?6, output = ?7
                 WHERE run_id = ?1 AND node = ?2 AND status = 'pending'", params![run, node, text(data, "decision"), at, text(data, "by"), text(data, "comment"), json(data, "output")],
            )?)?;
        }
        "memory_set" => {
            let key = text(data, "key").unwrap_or_default();
            let value = json(data, "value").unwrap_or_else(|| "null".into());
            let by = format!("run {run}");
            conn.execute("INSERT INTO memory (key, namespace, value, version, updated_at, updated_by, run_id)
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = memory.version + 1,
                   updated_at = excluded.updated_at, updated_by = excluded.updated_by, run_id = excluded.run_id", params![key, crate::journal::memory_namespace(&key), value, at, by, run])?;
            conn.execute("INSERT INTO memory_log (key, value, at, by, run_id) VALUES (?1, ?2, ?3, ?4, ?5)", params![key, value, at, by, run])?;
        }
        // Logs, traces, refused decisions and votes short of a quorum: kept in `events` only.
        "output" | "note" | "llm_call" | "tool_call_started" | "tool_call_finished" | "policy_violation"
        | "approval_refused" | "approval_vote" => {}
        other => {
            return Err(DbError::Value(format!(
                "unknown journal event kind `{other}`"
            )));
        }
    }
    Ok(())
}

fn expect_one(changed: usize) -> Result<(), DbError> {
    if changed == 1 {
        Ok(())
    } else {
        Err(DbError::Value(format!(
            "the event changed {changed} rows of the projection, not one"
        )))
    }
}
