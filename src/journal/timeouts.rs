//! The live approval timer: a parked run's approval whose `timeout` passed is decided by its `default`.

use super::db::params;
use super::{Journal, JournalError, NewEvent};
use serde_json::json;

/// A pending approval of a parked run whose deadline has passed.
struct Due {
    run: String,
    node: String,
    approve: bool,
}

impl Journal {
    /// Decides, by their `default`, the approvals of parked runs whose
    /// `timeout` (journaled with the question) has passed at `now`; returns
    /// the runs decided. A decision recorded first wins: the losing event is
    /// refused because the item is no longer pending, and nothing is written.
    pub fn decide_timed_out(&mut self, now: i64) -> Result<Vec<String>, JournalError> {
        let due: Vec<Due> = self
            .conn
            .query_map("SELECT a.run_id, a.node, json_extract(e.data, '$.default') FROM run_queue q
                   JOIN approvals a ON a.run_id = q.run_id AND a.status = 'pending' AND a.kind = 'approval'
                   JOIN events e ON e.run_id = a.run_id AND e.node = a.node
                        AND e.kind = 'approval_requested' AND e.at = a.requested_at
                  WHERE q.waiting = 'approval'
                    AND json_extract(e.data, '$.timeout_ms') IS NOT NULL
                    AND a.requested_at + CAST(json_extract(e.data, '$.timeout_ms') AS BIGINT) <= ?1", params![now], |r| {
                Ok(Due {
                    run: r.get(0)?,
                    node: r.get(1)?,
                    approve: r.get::<Option<String>>(2)?.as_deref() == Some("approve"),
                })
            })?;
        let mut decided = Vec::new();
        for d in due {
            // The same words as a decision taken when a run resumes after the deadline.
            let (decision, comment) = if d.approve {
                ("approved", "approved by default when the timeout passed")
            } else {
                ("rejected", "rejected by default when the timeout passed")
            };
            let event = NewEvent::node(
                &d.run,
                "approval_decided",
                &d.node,
                None,
                json!({ "decision": decision, "by": "timeout", "comment": comment, "output": null }),
            );
            match self.append(&[event]) {
                Ok(()) => decided.push(d.run),
                // Decided meanwhile by a person: theirs is the one outcome.
                Err(e) if self.still_pending(&d.run, &d.node) == Some(false) => drop(e),
                Err(e) => return Err(e),
            }
        }
        Ok(decided)
    }

    fn still_pending(&self, run: &str, node: &str) -> Option<bool> {
        self.conn
            .query_row(
                "SELECT status = 'pending' FROM approvals WHERE run_id = ?1 AND node = ?2",
                params![run, node],
                |r| r.get(0),
            )
            .ok()
    }
}
