//! Leases: at most one process drives a run at a time.

use super::{Journal, JournalError, now_ms};
use rusqlite::{OptionalExtension, params};

/// How often a driving process renews its lease.
pub const LEASE_HEARTBEAT_MS: i64 = 5_000;
/// A lease whose heartbeat is older than this is stale and may be taken over.
pub const LEASE_STALE_MS: i64 = 30_000;

/// Who holds a lease.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    /// `pid@host`.
    pub owner: String,
    /// Milliseconds since its last heartbeat.
    pub age_ms: i64,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// Whether process `pid` exists on this host (signal 0: no signal is sent).
fn process_alive(pid: i64) -> bool {
    use nix::errno::Errno;
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // EPERM: it exists but belongs to another user.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

impl Journal {
    /// Takes the lease on `run`, or fails naming the live holder.
    pub fn acquire_lease(&mut self, run: &str) -> Result<(), JournalError> {
        let me = std::process::id();
        let host = host();
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let held: Option<(String, i64, String, i64)> = tx
            .query_row(
                "SELECT owner, pid, host, heartbeat FROM leases WHERE run_id = ?1",
                params![run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((owner, pid, their_host, beat)) = held {
            let age = now - beat;
            let same_process = their_host == host && pid == i64::from(me);
            let dead = their_host == host && !process_alive(pid);
            if !same_process && !dead && age < LEASE_STALE_MS {
                return Err(JournalError::Leased {
                    run: run.to_string(),
                    holder: owner,
                    age_s: age / 1000,
                });
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO leases (run_id, owner, pid, host, heartbeat) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run, format!("flowc (pid {me}) on {host}"), me, host, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Renews the lease on `run`.
    pub fn heartbeat(&mut self, run: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "UPDATE leases SET heartbeat = ?2 WHERE run_id = ?1 AND pid = ?3",
            params![run, now_ms(), std::process::id()],
        )?;
        Ok(())
    }

    /// Gives the lease on `run` up.
    pub fn release_lease(&mut self, run: &str) -> Result<(), JournalError> {
        self.conn.execute(
            "DELETE FROM leases WHERE run_id = ?1 AND pid = ?2",
            params![run, std::process::id()],
        )?;
        Ok(())
    }

    /// The live holder of `run`'s lease, if any.
    pub fn lease_holder(&self, run: &str) -> Result<Option<LeaseHolder>, JournalError> {
        let held: Option<(String, i64, String, i64)> = self
            .conn
            .query_row(
                "SELECT owner, pid, host, heartbeat FROM leases WHERE run_id = ?1",
                params![run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        Ok(held.and_then(|(owner, pid, their_host, beat)| {
            let age_ms = now_ms() - beat;
            let dead = their_host == host() && !process_alive(pid);
            (!dead && age_ms < LEASE_STALE_MS).then_some(LeaseHolder { owner, age_ms })
        }))
    }
}
