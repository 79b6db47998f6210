//! Leases: at most one process drives a run at a time, and a driver that lost
//! its lease can never append again (epochs, checked in every append).

use super::db::{Db, Lock, params};
use super::{Journal, JournalError, now_ms};

/// How often a driving process renews its lease.
pub const LEASE_HEARTBEAT_MS: i64 = 5_000;
/// A lease whose heartbeat is older than this is stale and may be taken over.
pub const LEASE_STALE_MS: i64 = 30_000;

/// The stale age in force: `FLOWC_LEASE_STALE_MS` (a test aid, at least 1 s)
/// or [`LEASE_STALE_MS`].
pub fn stale_ms() -> i64 {
    std::env::var("FLOWC_LEASE_STALE_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(LEASE_STALE_MS, |v| v.max(1_000))
}

/// The heartbeat interval in force: a sixth of the stale age, at most [`LEASE_HEARTBEAT_MS`].
pub fn heartbeat_ms() -> i64 {
    (stale_ms() / 6).clamp(100, LEASE_HEARTBEAT_MS)
}

/// Who holds a lease.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    /// `flowc (pid N) on HOST`.
    pub owner: String,
    /// Milliseconds since its last heartbeat.
    pub age_ms: i64,
}

/// This machine's name, read once per process: every append checks the
/// lease's fence against it, and a lease is taken under the name the process
/// started with.
pub fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string())
    })
}

/// Whether process `pid` exists on this host (signal 0: no signal is sent).
pub fn process_alive(pid: i64) -> bool {
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

/// A lease row: owner, pid, host, heartbeat, epoch.
type Row = (String, i64, String, i64, i64);

fn lease_row(tx: &Db, run: &str) -> Result<Option<Row>, JournalError> {
    Ok(tx.query_opt(
        "SELECT owner, pid, host, heartbeat, epoch FROM leases WHERE run_id = ?1",
        params![run],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?)
}

/// Whether a lease row is held by a live driver other than this process.
fn held_by_other(row: &Row, now: i64) -> bool {
    let (_, pid, their_host, beat, _) = row;
    if *pid == 0 {
        return false;
    }
    let here = *their_host == host();
    let same_process = here && *pid == i64::from(std::process::id());
    let dead = here && !process_alive(*pid);
    !same_process && !dead && now - beat < stale_ms()
}

/// Refuses the append when this process's `epoch` is no longer the lease's.
pub(super) fn check_fence(tx: &Db, run: &str, epoch: i64) -> Result<(), JournalError> {
    match lease_row(tx, run)? {
        Some((_, pid, their_host, _, e))
            if e == epoch && pid == i64::from(std::process::id()) && their_host == host() =>
        {
            Ok(())
        }
        other => Err(JournalError::Fenced {
            run: run.to_string(),
            holder: other.map_or_else(|| "nobody".to_string(), |r| r.0),
        }),
    }
}

impl Journal {
    /// Takes the lease on `run` (a new epoch), or fails naming the live holder.
    /// From then on, appends to `run` by this journal are fenced by that epoch.
    pub fn acquire_lease(&mut self, run: &str) -> Result<(), JournalError> {
        let me = std::process::id();
        let host = host();
        let now = now_ms();
        let tx = self.conn.transaction(Lock::Write)?;
        let held = lease_row(&tx, run)?;
        if let Some(row) = &held
            && held_by_other(row, now)
        {
            return Err(JournalError::Leased {
                run: run.to_string(),
                holder: row.0.clone(),
                age_s: (now - row.3) / 1000,
            });
        }
        let epoch = held.map_or(0, |r| r.4) + 1;
        tx.execute(
            "INSERT INTO leases (run_id, owner, pid, host, heartbeat, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, pid = excluded.pid,
               host = excluded.host, heartbeat = excluded.heartbeat, epoch = excluded.epoch",
            params![run, format!("flowc (pid {me}) on {host}"), me, host, now, epoch],
        )?;
        tx.commit()?;
        self.fence = Some((run.to_string(), epoch));
        Ok(())
    }

    /// Renews the lease on `run`; fails with [`JournalError::Fenced`] when
    /// another driver took it over meanwhile.
    pub fn heartbeat(&mut self, run: &str) -> Result<(), JournalError> {
        let epoch = self.fence.as_ref().map_or(0, |f| f.1);
        let changed = self.conn.execute(
            "UPDATE leases SET heartbeat = ?2 WHERE run_id = ?1 AND pid = ?3 AND epoch = ?4",
            params![run, now_ms(), std::process::id(), epoch],
        )?;
        if changed == 0 {
            let holder = lease_row(&self.conn, run)?.map_or_else(|| "nobody".into(), |r| r.0);
            return Err(JournalError::Fenced {
                run: run.to_string(),
                holder,
            });
        }
        Ok(())
    }

    /// Gives the lease on `run` up (the row stays, so its epoch keeps counting).
    pub fn release_lease(&mut self, run: &str) -> Result<(), JournalError> {
        let epoch = self.fence.take().map_or(0, |f| f.1);
        self.conn.execute(
            "UPDATE leases SET pid = 0, heartbeat = 0 WHERE run_id = ?1 AND pid = ?2 AND epoch = ?3",
            params![run, std::process::id(), epoch],
        )?;
        Ok(())
    }

    /// The live holder of `run`'s lease, if any.
    pub fn lease_holder(&self, run: &str) -> Result<Option<LeaseHolder>, JournalError> {
        live_holder(&self.conn, run)
    }
}

/// The live holder of `run`'s lease (this process included), if any.
pub(super) fn live_holder(conn: &Db, run: &str) -> Result<Option<LeaseHolder>, JournalError> {
    let now = now_ms();
    Ok(lease_row(conn, run)?.and_then(|row| {
        let live = row.1 != 0 && {
            let here = row.2 == host();
            (!here || process_alive(row.1)) && now - row.3 < stale_ms()
        };
        live.then(|| LeaseHolder {
            owner: row.0,
            age_ms: now - row.3,
        })
    }))
}
