//! The hash chain over each run's events, and the checks that find a changed history: gaps, reordering, rewrites, invalid rows.
//!
//! Each event stores `hash = blake3(previous event's hash, its own content)`,
//! the content being every column as stored. Rewriting, inserting, dropping
//! or reordering an event changes the hash of every later one, so `replay`
//! and `--resume` find it by walking the run once. The chain has no secret
//! key: it catches corruption and edits that do not recompute it, and the
//! sandbox keeps steps from writing the journal at all (docs/security.md).

use super::db::{Db, DbError, params};
use super::{Journal, JournalError};
use std::collections::HashSet;

/// One thing wrong with a run's stored history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The event's sequence number (0: the run as a whole).
    pub seq: i64,
    /// What is wrong, in words.
    pub what: String,
}

/// The hash of an event given the previous event's hash (`""` for the first).
#[allow(clippy::too_many_arguments)]
pub fn event_hash(
    prev: &str,
    run_id: &str,
    seq: i64,
    at: i64,
    kind: &str,
    node: Option<&str>,
    attempt: Option<u32>,
    data: &str,
) -> String {
    let mut h = blake3::Hasher::new();
    // Lengths before every field, so no two different rows hash alike.
    for part in [
        prev.as_bytes(),
        run_id.as_bytes(),
        seq.to_string().as_bytes(),
        at.to_string().as_bytes(),
        kind.as_bytes(),
        node.map_or(b"\0-".as_slice(), str::as_bytes),
        attempt
            .map(|a| a.to_string())
            .unwrap_or_else(|| "\0-".into())
            .as_bytes(),
        data.as_bytes(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// One stored event, as its columns hold it.
struct Row {
    seq: i64,
    at: i64,
    kind: String,
    node: Option<String>,
    attempt: Option<i64>,
    data: String,
    hash: Option<String>,
}

impl Row {
    /// This row's link in `run`'s chain, after the link `prev`.
    fn link(&self, prev: &str, run: &str) -> String {
        let attempt = self.attempt.and_then(|a| u32::try_from(a).ok());
        event_hash(
            prev,
            run,
            self.seq,
            self.at,
            &self.kind,
            self.node.as_deref(),
            attempt,
            &self.data,
        )
    }
}

fn rows(conn: &Db, run: &str) -> Result<Vec<Row>, DbError> {
    conn.query_map(
        "SELECT seq, at, kind, node, attempt, CAST(data AS TEXT), hash FROM events \
         WHERE run_id = ?1 ORDER BY seq",
        params![run],
        |r| {
            Ok(Row {
                seq: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                node: r.get(3)?,
                attempt: r.get(4)?,
                data: r.get::<Option<String>>(5)?.unwrap_or_default(),
                hash: r.get(6)?,
            })
        },
    )
}

/// Fills the chain of every run (the v1 → v2 migration: events had no hash).
pub fn fill(conn: &Db) -> Result<(), DbError> {
    let runs: Vec<String> =
        conn.query_map("SELECT DISTINCT run_id FROM events", params![], |r| {
            r.get(0)
        })?;
    for run in runs {
        let mut prev = String::new();
        for row in rows(conn, &run)? {
            prev = row.link(&prev, &run);
            conn.execute(
                "UPDATE events SET hash = ?3 WHERE run_id = ?1 AND seq = ?2",
                params![run, row.seq, prev],
            )?;
        }
    }
    Ok(())
}

/// Event kinds about a node that need the node to have been added first.
fn needs_node(kind: &str) -> bool {
    !matches!(
        kind,
        "node_added" | "run_queued" | "run_started" | "run_resumed" | "run_status"
    )
}

impl Journal {
    /// Walks `run`'s events: the chain, the order, and that every row is well formed.
    /// Empty: the history is as flowc wrote it.
    pub fn verify(&self, run: &str) -> Result<Vec<Problem>, JournalError> {
        self.run(run)?;
        let rows = rows(&self.conn, run)?;
        let mut problems = Vec::new();
        let mut prev = String::new();
        let mut nodes: HashSet<String> = HashSet::new();
        let mut expect = 1;
        for row in &rows {
            let at = |what: String| Problem { seq: row.seq, what };
            if row.seq != expect {
                problems.push(at(if row.seq > expect {
                    format!(
                        "events {expect}..{} are missing (the sequence jumps)",
                        row.seq - 1
                    )
                } else {
                    format!("out of order: expected event {expect}")
                }));
            }
            expect = row.seq + 1;
            let data = serde_json::from_str::<serde_json::Value>(&row.data);
            if data.is_err() {
                problems.push(at("its data is not valid JSON".into()));
            }
            // A first status that adds its node (schema version 6) counts as `node_added`.
            let adds = row.kind == "node_added"
                || (row.kind == "node_status" && data.is_ok_and(|d| d.get("added").is_some()));
            if row.at <= 0 {
                problems.push(at(format!("its time ({}) is not a time", row.at)));
            }
            if row.seq == 1 && row.kind != "run_started" && row.kind != "run_queued" {
                problems.push(at(format!(
                    "the first event is `{}`, not `run_started` or `run_queued`",
                    row.kind
                )));
            }
            match (&row.node, row.kind.as_str()) {
                (Some(n), _) if adds => {
                    nodes.insert(n.clone());
                }
                (Some(n), kind) if needs_node(kind) && !nodes.contains(n) => problems.push(at(
                    format!("`{kind}` for `{n}`, a node this run never added"),
                )),
                _ => {}
            }
            let want = row.link(&prev, run);
            match &row.hash {
                Some(h) if *h == want => {}
                Some(_) => problems.push(at(
                    "its content or an earlier event's changed after it was written (the hash chain breaks here)"
                        .into(),
                )),
                None => problems.push(at("it has no hash (written outside flowc)".into())),
            }
            // Continue from the stored hash, so one edit is reported once.
            prev = row.hash.clone().unwrap_or(want);
        }
        Ok(problems)
    }

    /// Refuses to go on with `run` when its history was changed, or its stored
    /// state disagrees with what its events say: decisions trust events only.
    pub fn check_untampered(&self, run: &str) -> Result<(), JournalError> {
        let problems = self.verify(run)?;
        if let Some(p) = problems.first() {
            return Err(JournalError::Tampered {
                run: run.to_string(),
                detail: format!("event {}: {}", p.seq, p.what),
            });
        }
        let diffs = self.replay(run)?;
        if let Some(d) = diffs.first() {
            return Err(JournalError::Tampered {
                run: run.to_string(),
                detail: format!(
                    "{} `{}` is stored as {} but its events say {}",
                    d.row, d.column, d.stored, d.replayed
                ),
            });
        }
        Ok(())
    }
}
