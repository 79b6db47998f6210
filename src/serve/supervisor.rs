//! The supervisor: claims queued runs up to `--workers`, drives each in a
//! child `flowc run --resume` process, and reads how it ended.
//!
//! A run process is a child so that a panic, an OOM kill or a stuck step
//! takes down one run, never the service, and so that each run forks its own
//! spawner while single-threaded (this process is multi-threaded and never
//! forks one).

use super::Service;
use crate::journal::{Journal, NewEvent, now_ms};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A run whose process died this many times without ending it is failed.
pub const MAX_RESTARTS: i64 = 3;

/// A live run process.
#[derive(Debug)]
pub struct Child {
    /// Its process id.
    pub pid: u32,
}

/// How a run process ended.
#[derive(Debug)]
pub struct Exit {
    /// The run.
    pub run: String,
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

/// The directory run processes write their output to, beside the journal
/// (`.flowc/logs` here for a journal on Postgres).
pub fn log_dir(journal: &std::path::Path) -> PathBuf {
    crate::journal::state_dir(journal).join("logs")
}

/// Starts a run process for `run`; its end is sent on `exits`.
pub fn spawn(
    svc: &Arc<Service>,
    run: &str,
    exits: mpsc::UnboundedSender<Exit>,
) -> Result<Child, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find flowc's own binary: {e}"))?;
    let dir = log_dir(&svc.journal_path);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let log_path = dir.join(format!("{run}.log"));
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open `{}`: {e}", log_path.display()))
    };
    let (out, err) = (open()?, open()?);
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("run").arg("--resume").arg(run).arg("--no-input");
    if crate::journal::postgres_url(&svc.journal_path).is_some() {
        // A URL may carry a password: the environment, unlike the command
        // line, is not readable by other users of the machine.
        cmd.env("FLOWC_JOURNAL", &svc.journal_path);
    } else {
        cmd.arg("--journal").arg(&svc.journal_path);
    }
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("FLOWC_SUPERVISOR_PID", std::process::id().to_string())
        .env("NO_COLOR", "1")
        // Its own process group: a Ctrl-C or a SIGTERM to the service's group
        // reaches the service, which decides when runs are interrupted.
        .process_group(0)
        .kill_on_drop(false);
    for var in super::notify::MANAGER_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start a run process: {e}"))?;
    let pid = child.id().unwrap_or(0);
    let run = run.to_string();
    tokio::spawn(async move {
        use std::os::unix::process::ExitStatusExt;
        let status = child.wait().await;
        let (code, signal) = match status {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        let _ = exits.send(Exit { run, code, signal });
    });
    Ok(Child { pid })
}

/// What the supervisor does once a run process ended, decided by the run's
/// status in the journal (not the exit code alone: a process may die at any point).
pub fn settle(svc: &Service, exit: &Exit) {
    let run = exit.run.as_str();
    let mut journal = svc.journal();
    let status = journal.run(run).map(|r| r.status).unwrap_or_default();
    let how = match (exit.code, exit.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "vanished".to_string(),
    };
    let result = match status.as_str() {
        "succeeded" | "failed" | "cancelled" => journal.dequeue(run).map(|()| "ended"),
        "paused" => journal.park(run).map(|()| "paused"),
        "interrupted" => journal
            .requeue(run, now_ms(), "interrupted", false)
            .map(|_| "requeued"),
        // Another live process drives it (a second service, a `flowc run --resume`).
        "running" if matches!(journal.lease_holder(run), Ok(Some(_))) => journal
            .requeue(run, now_ms() + 2_000, "driven elsewhere", false)
            .map(|_| "waiting for its driver"),
        // Still `running` or `queued`: the process died without ending the run.
        _ => crashed(svc, &mut journal, run, &how),
    };
    drop(journal);
    match result {
        Ok(what) => svc.log.event(
            "run.exited",
            &[
                ("run", json!(run)),
                ("status", json!(status)),
                ("process", json!(how)),
                ("then", json!(what)),
            ],
        ),
        Err(e) => svc.log.event(
            "run.error",
            &[("run", json!(run)), ("error", json!(e.to_string()))],
        ),
    }
}

/// A run process died without ending its run: resumed after a backoff, or
/// failed (journaled, with the reason) after [`MAX_RESTARTS`].
fn crashed(
    svc: &Service,
    journal: &mut Journal,
    run: &str,
    how: &str,
) -> Result<&'static str, crate::journal::JournalError> {
    let restarts = journal
        .queue()?
        .into_iter()
        .find(|q| q.run_id == run)
        .map_or(0, |q| q.restarts)
        + 1;
    if restarts > MAX_RESTARTS {
        let tail = log_tail(&log_dir(&svc.journal_path).join(format!("{run}.log")));
        let why = format!(
            "the run's process died {restarts} times without ending it (last: {how}){}",
            tail.map(|t| format!("; its last output: {t}"))
                .unwrap_or_default()
        );
        journal.acquire_lease(run)?;
        let appended = journal.append(&[NewEvent::run(
            run,
            "run_status",
            json!({ "status": "failed", "error": crate::secrets::redact(why) }),
        )]);
        let _ = journal.release_lease(run);
        appended?;
        journal.dequeue(run)?;
        return Ok("failed");
    }
    let backoff = 500i64 << restarts.min(6);
    journal.requeue(run, now_ms() + backoff, "crashed", true)?;
    Ok("restarting")
}

/// The last non-empty line a run process wrote, shortened.
fn log_tail(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    Some(line.chars().take(200).collect())
}

/// Children by run, for the loop.
pub type Children = HashMap<String, Child>;
