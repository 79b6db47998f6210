//! The run queue: runs waiting for a driver, claims by supervisors, cancel requests.

use super::append::append_in;
use super::db::params;
use super::lease::{host, process_alive};
use super::{Journal, JournalError, NewEvent, now_ms};
use serde_json::Value as Json;

/// A run id: the UTC time it was made and a random-looking suffix.
pub fn new_run_id() -> String {
    let ms = now_ms();
    let stamp: String = super::timestamp(ms)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let salt = blake3::hash(
        format!(
            "{ms}/{}/{:?}/{:?}",
            std::process::id(),
            std::time::Instant::now(),
            std::thread::current().id()
        )
        .as_bytes(),
    )
    .to_hex();
    format!("{}-{}-{}", &stamp[..8], &stamp[8..], &salt[..6])
}

/// What a trigger fire records beside the run it queues.
#[derive(Debug, Clone)]
pub struct Fire {
    /// The trigger's name.
    pub trigger: String,
    /// What identifies this fire: a slot time, a delivery id, a hash of paths.
    pub key: String,
    /// What is kept about it (the event, the scheduled time, …).
    pub data: Json,
}

/// A run to queue.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The skill's name.
    pub skill: String,
    /// The flow file, as the driver will open it.
    pub file: String,
    /// The typed inputs.
    pub inputs: serde_json::Map<String, Json>,
    /// Who asked: a person, or `trigger NAME`.
    pub by: String,
    /// Why it is queued (`submitted`, `trigger`).
    pub reason: String,
    /// Held until the trigger's previous run has ended (`overlap: queue`, `cancel_previous`).
    pub wait_previous: bool,
}

/// A row of the run queue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueRow {
    /// The run.
    pub run_id: String,
    /// When it may be claimed (Unix ms); `None` while it waits for a person.
    pub ready_at: Option<i64>,
    /// The supervisor that claimed it.
    pub owner: Option<String>,
    /// How often its process died without ending the run.
    pub restarts: i64,
    /// `approval` while it waits for a person.
    pub waiting: Option<String>,
    /// Why it is queued.
    pub reason: String,
}

/// This process as a queue owner: `PID@HOST`.
pub fn supervisor_id() -> String {
    format!("{}@{}", std::process::id(), host())
}

/// Whether owner `PID@HOST` is a process on this host that no longer exists.
fn owner_dead(owner: &str) -> bool {
    let Some((pid, their_host)) = owner.split_once('@') else {
        return false;
    };
    their_host == host() && pid.parse::<i64>().is_ok_and(|p| !process_alive(p))
}

impl Journal {
    /// Queues a new run; with `fire`, only when this fire is new (its
    /// `(trigger, key)` row is inserted in the same transaction). Returns the
    /// run id, or `None` for a fire seen before.
    pub fn enqueue(
        &mut self,
        sub: &Submission,
        fire: Option<&Fire>,
    ) -> Result<Option<String>, JournalError> {
        let run = new_run_id();
        let now = now_ms();
        let tx = self.conn.transaction(super::db::Lock::Write)?;
        if let Some(f) = fire {
            let fresh = tx.execute(
                "INSERT INTO trigger_events (trigger, key, at, run_id, outcome, data) VALUES (?1, ?2, ?3, ?4, 'queued', ?5)
                 ON CONFLICT DO NOTHING",
                params![f.trigger, f.key, now, run, f.data.to_string()],
            )?;
            if fresh == 0 {
                return Ok(None);
            }
        }
        let mut data = serde_json::json!({
            "skill": sub.skill,
            "file": sub.file,
            "inputs": sub.inputs,
            "by": sub.by,
        });
        if let Some(f) = fire {
            data["trigger"] = Json::String(f.trigger.clone());
            data["trigger_key"] = Json::String(f.key.clone());
        }
        let rowid = append_in(&tx, &[NewEvent::run(&run, "run_queued", data)])?;
        let (ready, waiting) = if sub.wait_previous {
            (None, Some("previous"))
        } else {
            (Some(now), None)
        };
        tx.execute(
            "INSERT INTO run_queue (run_id, ready_at, reason, waiting) VALUES (?1, ?2, ?3, ?4)",
            params![run, ready, sub.reason, waiting],
        )?;
        tx.commit()?;
        self.committed(rowid);
        Ok(Some(run))
    }

    /// Records a fire that starts no run (skipped, rejected, capped); false
    /// when this `(trigger, key)` was recorded before.
    pub fn record_fire(&mut self, fire: &Fire, outcome: &str) -> Result<bool, JournalError> {
        Ok(self.conn.execute(
            "INSERT INTO trigger_events (trigger, key, at, outcome, data) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
            params![fire.trigger, fire.key, now_ms(), outcome, fire.data.to_string()],
        )? == 1)
    }

    /// Claims the next ready run for `owner` until `until`; one statement, so
    /// two supervisors never claim the same run.
    pub fn claim_next(&mut self, owner: &str, until: i64) -> Result<Option<String>, JournalError> {
        // Postgres: concurrent claimers skip the row another is taking
        // rather than queue behind it; the outer `owner IS NULL` makes a
        // claim that lost the race change nothing (SQLite: one writer).
        let skip_locked = if self.conn.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE run_queue SET owner = ?1, lease_until = ?2
             WHERE owner IS NULL AND run_id = (SELECT run_id FROM run_queue WHERE owner IS NULL AND ready_at IS NOT NULL AND ready_at <= ?3
                             ORDER BY priority DESC, ready_at, run_id LIMIT 1{skip_locked})
             RETURNING run_id"
        );
        Ok(self
            .conn
            .query_opt(&sql, params![owner, until, now_ms()], |r| r.get(0))?)
    }

    /// Extends the claims `owner` holds.
    pub fn renew_claims(&mut self, owner: &str, until: i64) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE run_queue SET lease_until = ?2 WHERE owner = ?1",
            params![owner, until],
        )?;
        Ok(())
    }

    /// Returns claims whose supervisor died or stopped renewing them to the
    /// queue; the runs they name are resumed by the next claim.
    pub fn reclaim_stale(&mut self) -> Result<Vec<String>, JournalError> {
        let now = now_ms();
        let claimed: Vec<(String, String, i64)> = self.conn.query_map(
            "SELECT run_id, owner, lease_until FROM run_queue WHERE owner IS NOT NULL",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut back = Vec::new();
        for (run, owner, until) in claimed {
            if until < now || owner_dead(&owner) {
                let n = self.conn.execute(
                    "UPDATE run_queue SET owner = NULL, ready_at = ?3, reason = 'recovered' WHERE run_id = ?1 AND owner = ?2",
                    params![run, owner, now],
                )?;
                if n == 1 {
                    back.push(run);
                }
            }
        }
        Ok(back)
    }

    /// The run left the queue: it ended, or was cancelled.
    pub fn dequeue(&mut self, run: &str) -> Result<(), JournalError> {
        self.conn
            .execute("DELETE FROM run_queue WHERE run_id = ?1", params![run])?;
        self.conn.execute(
            "DELETE FROM cancel_requests WHERE run_id = ?1",
            params![run],
        )?;
        Ok(())
    }

    /// Puts a claimed run back, ready at `ready_at`; `crashed` counts a restart.
    pub fn requeue(
        &mut self,
        run: &str,
        ready_at: i64,
        reason: &str,
        crashed: bool,
    ) -> Result<i64, JournalError> {
        Ok(self.conn.query_row(
            "UPDATE run_queue SET owner = NULL, lease_until = NULL, ready_at = ?2, reason = ?3,
                    restarts = restarts + ?4, waiting = NULL WHERE run_id = ?1 RETURNING restarts",
            params![run, ready_at, reason, i64::from(crashed)],
            |r| r.get(0),
        )?)
    }

    /// A paused run waits for a person without a process.
    pub fn park(&mut self, run: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE run_queue SET owner = NULL, lease_until = NULL, ready_at = NULL, waiting = 'approval',
                    paused_at = ?2, reason = 'paused' WHERE run_id = ?1",
            params![run, now_ms()],
        )?;
        Ok(())
    }

    /// Makes parked runs ready when a decision was recorded since they paused
    /// (one read when nothing was decided: an idle queue writes nothing).
    pub fn wake_decided(&mut self) -> Result<Vec<String>, JournalError> {
        let decided: Vec<String> = self
            .conn
            .query_map("SELECT q.run_id FROM run_queue q WHERE q.waiting = 'approval' AND EXISTS
                   (SELECT 1 FROM approvals a WHERE a.run_id = q.run_id AND a.decided_at >= q.paused_at)", params![], |r| r.get(0))?;
        for run in &decided {
            self.requeue(run, now_ms(), "decided", false)?;
        }
        Ok(decided)
    }

    /// Makes runs held behind their trigger's previous run ready once no
    /// other run of that trigger is going.
    pub fn wake_after_previous(&mut self) -> Result<Vec<String>, JournalError> {
        let free: Vec<String> = self.conn.query_map(
            "SELECT q.run_id FROM run_queue q JOIN trigger_events t ON t.run_id = q.run_id
                 WHERE q.waiting = 'previous' AND NOT EXISTS (
                   SELECT 1 FROM trigger_events t2 JOIN runs r ON r.id = t2.run_id
                   WHERE t2.trigger = t.trigger AND r.id <> q.run_id
                     AND r.status IN ('running', 'paused', 'interrupted'))",
            params![],
            |r| r.get(0),
        )?;
        for run in &free {
            self.requeue(run, now_ms(), "previous ended", false)?;
        }
        Ok(free)
    }

    /// Whether any queued run is ready to claim (a read: an idle queue writes nothing).
    pub fn any_ready(&self, now: i64) -> Result<bool, JournalError> {
        Ok(self
            .conn
            .query_opt("SELECT 1 FROM run_queue WHERE owner IS NULL AND ready_at IS NOT NULL AND ready_at <= ?1 LIMIT 1", params![now], |_| Ok(()))?
            .is_some())
    }

    /// Every row of the queue.
    pub fn queue(&self) -> Result<Vec<QueueRow>, JournalError> {
        let rows = self.conn.query_map("SELECT run_id, ready_at, owner, restarts, waiting, reason FROM run_queue ORDER BY ready_at NULLS FIRST, run_id", params![], |r| {
            Ok(QueueRow {
                run_id: r.get(0)?,
                ready_at: r.get(1)?,
                owner: r.get(2)?,
                restarts: r.get(3)?,
                waiting: r.get(4)?,
                reason: r.get(5)?,
            })
        })?;
        Ok(rows)
    }

    /// Who asked to cancel `run`, if anyone did.
    pub fn cancel_request(&self, run: &str) -> Result<Option<String>, JournalError> {
        Ok(self.conn.query_opt(
            "SELECT by FROM cancel_requests WHERE run_id = ?1",
            params![run],
            |r| r.get(0),
        )?)
    }

    /// Cancels `run`. When no process drives it (queued, paused, interrupted,
    /// crashed), its open items and the run are journaled `cancelled` now and
    /// it leaves the queue: `Ok(true)`. When a live process drives it, that
    /// process is asked to (it kills its running steps): `Ok(false)`.
    pub fn cancel(&mut self, run: &str, by: &str) -> Result<bool, JournalError> {
        let tx = self.conn.transaction(super::db::Lock::Write)?;
        if super::lease::live_holder(&tx, run)?.is_some() {
            tx.execute(
                "INSERT INTO cancel_requests (run_id, at, by) VALUES (?1, ?2, ?3)
                 ON CONFLICT (run_id) DO UPDATE SET at = excluded.at, by = excluded.by",
                params![run, now_ms(), by],
            )?;
            tx.commit()?;
            return Ok(false);
        }
        let pending: Vec<String> = tx.query_map(
            "SELECT node FROM approvals WHERE run_id = ?1 AND status = 'pending'",
            params![run],
            |r| r.get(0),
        )?;
        let mut events: Vec<NewEvent> = pending
            .iter()
            .map(|node| {
                NewEvent::node(
                    run,
                    "approval_decided",
                    node,
                    None,
                    serde_json::json!({ "decision": "rejected", "by": by, "comment": "the run was cancelled" }),
                )
            })
            .collect();
        let open: Vec<String> = tx
            .query_map("SELECT key FROM nodes WHERE run_id = ?1 AND status IN ('pending', 'ready', 'waiting', 'retrying', 'running')", params![run], |r| r.get(0))?;
        events.extend(open.iter().map(|node| {
            NewEvent::node(
                run,
                "node_status",
                node,
                None,
                serde_json::json!({ "status": "cancelled" }),
            )
        }));
        events.push(NewEvent::run(
            run,
            "run_status",
            serde_json::json!({ "status": "cancelled", "error": format!("cancelled by {by}") }),
        ));
        let rowid = append_in(&tx, &events)?;
        tx.execute("DELETE FROM run_queue WHERE run_id = ?1", params![run])?;
        tx.execute(
            "DELETE FROM cancel_requests WHERE run_id = ?1",
            params![run],
        )?;
        tx.commit()?;
        self.committed(rowid);
        Ok(true)
    }
}
