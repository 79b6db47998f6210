//! A run's history cannot be changed without flowc noticing: the hash chain,
//! the in-order trigger, resume trusting events over the projection, and the
//! v1 → v2 migration that gives old journals their chain.
#![allow(clippy::unwrap_used)]

mod common;
use common::{flowc, latest_run, stderr};
use rusqlite::Connection;
use std::path::Path;

const GATED: &str = r#"
skill main() {
  step a: run { command: "echo a" }
  step gate: approval { prompt: "ok?", after: [a] }
  step b: run { command: "echo b > b_ran", after: [gate] }
}
"#;

/// A run paused at its gate; returns the run id.
fn paused_run(dir: &Path) -> String {
    std::fs::write(dir.join("g.flow"), GATED).unwrap();
    let out = flowc(dir, &["run", "g.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    latest_run(dir)
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join(".flowc/journal.db")).unwrap()
}

fn replay(dir: &Path, run: &str) -> (Option<i32>, String) {
    let out = flowc(dir, &["replay", run]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_projection_row_edited_from_outside_stops_the_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = paused_run(d);
    // What a step with write access did: approve its own gate in the projection.
    db(d)
        .execute(
            "UPDATE approvals SET status = 'approved' WHERE node = 'gate'",
            [],
        )
        .unwrap();
    let out = flowc(d, &["run", "--resume", &run, "--no-input"]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(err.contains("journal tampered or corrupt"), "{err}");
    assert!(err.contains("approvals gate"), "{err}");
    assert!(!d.join("b_ran").exists(), "the guarded step ran");
}

#[test]
fn rewritten_inserted_and_deleted_events_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = paused_run(d);
    let conn = db(d);
    let attempts = [
        // REPLACE deletes the row it overwrites: refused like a DELETE.
        "INSERT OR REPLACE INTO events (run_id, seq, at, kind, node, attempt, data, hash) \
         SELECT run_id, seq, at, kind, node, attempt, '{\"forged\":1}', hash FROM events WHERE seq = 2",
        "INSERT INTO events (run_id, seq, at, kind, data, hash) SELECT run_id, 999, 1, 'note', '{}', 'x' FROM runs",
        "INSERT INTO events (run_id, seq, at, kind, data, hash) SELECT run_id, 0, 1, 'note', '{}', 'x' FROM runs",
        "UPDATE events SET data = '{}' WHERE seq = 3",
        "DELETE FROM events WHERE seq = 3",
    ];
    for sql in attempts {
        assert!(conn.execute(sql, []).is_err(), "accepted: {sql}");
    }
    let (code, text) = replay(d, &run);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_changed_history_is_reported_by_replay_and_stops_the_resume() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = paused_run(d);
    let conn = db(d);
    // Someone who can drop the triggers rewrites an event and drops another.
    conn.execute_batch(
        "DROP TRIGGER events_append_only_update; DROP TRIGGER events_append_only_delete;
         UPDATE events SET data = '{\"text\":\"forged\"}' WHERE seq = 4;
         DELETE FROM events WHERE seq = 6;",
    )
    .unwrap();
    let (code, text) = replay(d, &run);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("event 4"), "{text}");
    assert!(text.contains("hash chain"), "{text}");
    assert!(text.contains("missing"), "{text}");
    let out = flowc(d, &["run", "--resume", &run, "--no-input"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("journal tampered or corrupt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_rows_are_each_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = paused_run(d);
    let conn = db(d);
    conn.execute_batch("DROP TRIGGER events_in_order; DROP TRIGGER events_hashed;")
        .unwrap();
    let next: i64 = conn
        .query_row("SELECT max(seq) + 1 FROM events", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "INSERT INTO events (run_id, seq, at, kind, node, data) VALUES (?1, ?2, 0, 'note', 'ghost', 'not json')",
        rusqlite::params![run, next],
    )
    .unwrap();
    let (code, text) = replay(d, &run);
    assert_eq!(code, Some(1), "{text}");
    for part in ["not valid JSON", "is not a time", "never added", "no hash"] {
        assert!(text.contains(part), "missing {part:?} in {text}");
    }
}

/// Migrates the fixture journal `vN.db` (written by the release of schema
/// version N: a finished run and one paused at an approval), keeping a backup,
/// then approves, resumes, and replays both runs.
fn migrates_and_its_runs_go_on(from: i64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixtures = Path::new("tests/fixtures/journal");
    std::fs::create_dir_all(d.join(".flowc")).unwrap();
    std::fs::copy(
        fixtures.join(format!("v{from}.db")),
        d.join(".flowc/journal.db"),
    )
    .unwrap();
    for f in ["paused.flow", "done.flow"] {
        std::fs::copy(fixtures.join(f), d.join(f)).unwrap();
    }
    let version = |d: &Path| -> i64 {
        db(d)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(d), from);
    let conn = db(d);
    let runs: Vec<(String, String)> = conn
        .prepare("SELECT id, status FROM runs ORDER BY started_at")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    let done = runs.iter().find(|r| r.1 == "succeeded").unwrap().0.clone();
    let paused = runs.iter().find(|r| r.1 == "paused").unwrap().0.clone();
    // Inspection does not migrate: it asks for a resume first.
    let out = flowc(d, &["status", &done]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    // Resuming migrates; the run is still waiting for its gate.
    let out = flowc(d, &["run", "--resume", &paused, "--no-input"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(version(d), flowc::journal::SCHEMA_VERSION);
    assert!(d.join(format!(".flowc/journal.db.v{from}.bak")).exists());
    let out = flowc(d, &["approve", &paused, "gate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flowc(d, &["run", "--resume", &paused, "--no-input"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.join("shipped").exists());
    for run in [&done, &paused] {
        let (code, text) = replay(d, run);
        assert_eq!(code, Some(0), "{run}: {text}");
    }
    // The old run's output and the new steps' (folded into their status) both show.
    let out = flowc(d, &["log", &paused]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("prepare attempt 1 output"), "{text}");
    assert!(text.contains("ship attempt 1 output"), "{text}");
    // The steps run after the migration each cost two events: start and end.
    let conn = db(d);
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM events WHERE run_id = ?1 AND node = 'ship' ORDER BY seq")
        .unwrap()
        .query_map([&paused], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds, ["node_status", "node_status"], "{kinds:?}");
}

#[test]
fn a_v1_journal_is_migrated_with_a_backup_and_its_runs_go_on() {
    migrates_and_its_runs_go_on(1);
}

#[test]
fn a_v5_journal_is_migrated_with_a_backup_and_its_runs_go_on() {
    migrates_and_its_runs_go_on(5);
}

#[test]
fn a_decision_on_a_tampered_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = paused_run(d);
    db(d)
        .execute(
            "UPDATE nodes SET status = 'succeeded' WHERE key = 'a' AND 0",
            [],
        )
        .unwrap();
    db(d)
        .execute("UPDATE runs SET error = 'edited'", [])
        .unwrap();
    let out = flowc(d, &["approve", &run, "gate"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("journal tampered or corrupt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn events_lost_from_a_damaged_log_are_reported_and_not_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("w.flow"),
        "skill main() {\n  step a: run { command: \"true\" }\n  step b: run { command: \"true\", after: [a] }\n  step c: run { command: \"true\", after: [b] }\n  step d: run { command: \"true\", after: [c] }\n}\n",
    )
    .unwrap();
    // Killed mid-run, so the write-ahead log is not checkpointed.
    let out = std::process::Command::new(common::BIN)
        .args(["run", "w.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env("FLOWC_DEBUG_CRASH_AFTER_COMMITS", "5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let wal = d.join(".flowc/journal.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    // Flip one byte in a frame near the end of the log (32-byte header, then
    // frames of a 24-byte header and a 4 KiB page).
    let frames = (bytes.len() - 32) / (24 + 4096);
    assert!(frames >= 4, "{frames} frames");
    // Late enough to spare the schema (one big first commit), early enough to lose events.
    let at = 32 + (24 + 4096) * (frames - 3) + 24 + 100;
    bytes[at] ^= 0xff;
    std::fs::write(&wal, bytes).unwrap();
    let out = flowc(d, &["runs"]);
    assert!(
        stderr(&out).contains("lost its last"),
        "no warning: {}",
        stderr(&out)
    );
    // A new run would checkpoint the damaged log and make the loss final.
    let out = flowc(d, &["run", "w.flow", "--no-input"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("lost its last"), "{}", stderr(&out));
    assert!(wal.exists(), "the damaged log was checkpointed away");
}
