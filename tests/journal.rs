#![allow(clippy::unwrap_used)]
//! The journal's guarantees, tested against the library API.

use flowc::journal::params;
use flowc::journal::{
    Difference, Durability, Journal, JournalError, LEASE_HEARTBEAT_MS, LEASE_STALE_MS, NewEvent,
    OUTPUT_CAP, SCHEMA_VERSION, now_ms,
};
use serde_json::json;

#[macro_use]
mod common;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- helpers

fn new_journal(store: &common::store::TestStore) -> Journal {
    Journal::open(&store.path, Durability::Normal).unwrap()
}

fn start_run(j: &mut Journal, run: &str) {
    j.append(&[NewEvent::run(
        run,
        "run_started",
        json!({ "skill": "demo", "file": "demo.flow", "inputs": { "n": 1 } }),
    )])
    .unwrap();
}

fn add_node(j: &mut Journal, run: &str, key: &str) {
    j.append(&[NewEvent::node(
        run,
        "node_added",
        key,
        None,
        json!({ "name": key.rsplit('/').next().unwrap(), "kind": "run" }),
    )])
    .unwrap();
}

fn set_status(j: &mut Journal, run: &str, key: &str, status: &str) -> Result<(), JournalError> {
    j.append(&[NewEvent::node(
        run,
        "node_status",
        key,
        None,
        json!({ "status": status }),
    )])
}

fn event_count(j: &Journal) -> i64 {
    j.connection()
        .query_row("SELECT count(*) FROM events", params![], |r| r.get(0))
        .unwrap()
}

fn node_status(j: &Journal, run: &str, key: &str) -> String {
    j.connection()
        .query_row(
            "SELECT status FROM nodes WHERE run_id = ?1 AND key = ?2",
            params![run, key],
            |r| r.get(0),
        )
        .unwrap()
}

fn legal_transitions(j: &Journal) -> BTreeSet<(String, String)> {
    j.connection()
        .query_map(
            "SELECT from_status, to_status FROM transitions",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
        .into_iter()
        .collect()
}

/// Shortest legal path of statuses from `pending` to every reachable status.
fn paths_from_pending(legal: &BTreeSet<(String, String)>) -> HashMap<String, Vec<String>> {
    let mut paths: HashMap<String, Vec<String>> = HashMap::new();
    paths.insert("pending".into(), Vec::new());
    let mut queue = VecDeque::from(["pending".to_string()]);
    while let Some(at) = queue.pop_front() {
        for (from, to) in legal {
            if *from == at && !paths.contains_key(to) {
                let mut path = paths[&at].clone();
                path.push(to.clone());
                paths.insert(to.clone(), path);
                queue.push_back(to.clone());
            }
        }
    }
    paths
}

fn message(err: &JournalError) -> String {
    err.to_string()
}

// ---------------------------------------------------- 1. state machine

on_both_stores! {
fn every_illegal_transition_is_refused_and_every_legal_one_accepted(store) {
    let mut j = new_journal(store);
    let legal = legal_transitions(&j);
    let statuses: BTreeSet<String> = legal
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let documented: BTreeSet<String> = [
        "pending",
        "ready",
        "running",
        "succeeded",
        "rejected",
        "failed",
        "retrying",
        "waiting",
        "skipped",
        "cancelled",
        "interrupted",
        "stale",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(statuses, documented, "docs/journal.md lists these statuses");
    let paths = paths_from_pending(&legal);
    for s in &statuses {
        assert!(
            paths.contains_key(s),
            "status `{s}` unreachable from pending"
        );
    }

    start_run(&mut j, "r");
    let mut n = 0;
    let mut drive_to = |j: &mut Journal, from: &str| -> String {
        n += 1;
        let key = format!("n{n}");
        add_node(j, "r", &key);
        for step in &paths[from] {
            set_status(j, "r", &key, step).unwrap();
        }
        assert_eq!(node_status(j, "r", &key), from);
        key
    };

    let mut refused = 0;
    let mut accepted = 0;
    for from in &statuses {
        for to in &statuses {
            if from == to {
                continue;
            }
            let key = drive_to(&mut j, from);
            let before = event_count(&j);
            let result = set_status(&mut j, "r", &key, to);
            if legal.contains(&(from.clone(), to.clone())) {
                result.unwrap_or_else(|e| panic!("legal {from} -> {to} refused: {e}"));
                assert_eq!(node_status(&j, "r", &key), *to);
                assert_eq!(event_count(&j), before + 1);
                accepted += 1;
            } else {
                let Err(err) = result else {
                    panic!("illegal {from} -> {to} accepted");
                };
                assert!(
                    message(&err).contains("illegal node status transition"),
                    "{from} -> {to}: {err}"
                );
                assert_eq!(event_count(&j), before, "{from} -> {to} left an event");
                assert_eq!(node_status(&j, "r", &key), *from);
                refused += 1;
            }
        }
    }
    assert_eq!(accepted, legal.len());
    assert_eq!(refused, statuses.len() * (statuses.len() - 1) - legal.len());

    // A status outside the state machine, or none at all, is refused too.
    let key = drive_to(&mut j, "running");
    let before = event_count(&j);
    assert!(set_status(&mut j, "r", &key, "done").is_err());
    assert!(
        j.append(&[NewEvent::node("r", "node_status", &key, None, json!({}))])
            .is_err()
    );
    assert_eq!(event_count(&j), before);
    assert_eq!(node_status(&j, "r", &key), "running");

    // Re-stating the current status is allowed (a new attempt number, new data).
    j.append(&[NewEvent::node(
        "r",
        "node_status",
        &key,
        Some(2),
        json!({ "status": "running" }),
    )])
    .unwrap();
    assert_eq!(event_count(&j), before + 1);
    assert_eq!(
        j.nodes("r")
            .unwrap()
            .iter()
            .find(|n| n.key == key)
            .unwrap()
            .attempt,
        2
    );
}
}

on_both_stores! {
fn terminal_statuses_only_leave_through_stale_retrying_or_waiting(store) {
    // succeeded, skipped and cancelled are terminal: the only way out is `stale`
    // (an input changed on resume). `failed` can also be retried or escalated.
    let j = new_journal(store);
    let legal = legal_transitions(&j);
    for terminal in ["succeeded", "skipped", "cancelled"] {
        let out: Vec<&str> = legal
            .iter()
            .filter(|(f, _)| f == terminal)
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(out, ["stale"], "{terminal}");
    }
    let failed: Vec<&str> = legal
        .iter()
        .filter(|(f, _)| f == "failed")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(failed, ["retrying", "stale", "waiting"]);
}
}

// --------------------------------------------------- 2. append-only events

on_both_stores! {
fn events_refuse_update_and_delete(store) {
    let mut j = new_journal(store);
    start_run(&mut j, "r");
    let conn = j.connection();
    let err = conn
        .execute("UPDATE events SET kind = 'note' WHERE run_id = 'r'", params![])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = conn
        .execute("DELETE FROM events WHERE run_id = 'r'", params![])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let kind: String = conn
        .query_row("SELECT kind FROM events WHERE run_id = 'r'", params![], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kind, "run_started");
    assert_eq!(event_count(&j), 1);
}
}

// ------------------------------------------------ 3. node insertion rules

on_both_stores! {
fn nodes_start_pending_and_unknown_nodes_leave_no_event(store) {
    let mut j = new_journal(store);
    start_run(&mut j, "r");
    let err = j
        .connection()
        .execute(
            "INSERT INTO nodes (run_id, key, name, kind, status) VALUES ('r', 'x', 'x', 'run', 'succeeded')", params![],
        )
        .unwrap_err();
    assert!(err.to_string().contains("must start as pending"), "{err}");

    // A first status that adds its node (version 6) may only say ready or running.
    let first = |status: &str| {
        NewEvent::node(
            "r",
            "node_status",
            "quick",
            Some(1),
            json!({ "status": status, "added": { "name": "quick", "kind": "run" } }),
        )
    };
    let before = event_count(&j);
    let err = j.append(&[first("succeeded")]).unwrap_err();
    assert!(message(&err).contains("must be ready or running"), "{}", message(&err));
    assert_eq!(event_count(&j), before);
    j.append(&[first("running")]).unwrap();
    assert_eq!(node_status(&j, "r", "quick"), "running");
    // Without an attempt (an approval, a block): added ready.
    j.append(&[NewEvent::node(
        "r",
        "node_status",
        "gate",
        None,
        json!({ "status": "ready", "added": { "name": "gate", "kind": "approval" } }),
    )])
    .unwrap();
    assert_eq!(node_status(&j, "r", "gate"), "ready");
    // ... and adds it once: a second is refused like a second `node_added`.
    assert!(j.append(&[first("running")]).is_err());
    assert_eq!(event_count(&j), before + 2);

    let before = event_count(&j);
    assert!(set_status(&mut j, "r", "ghost", "ready").is_err());
    assert_eq!(event_count(&j), before);

    // A node added twice, or an unknown event kind, is refused and leaves nothing.
    add_node(&mut j, "r", "build");
    let before = event_count(&j);
    let dup = j.append(&[NewEvent::node(
        "r",
        "node_added",
        "build",
        None,
        json!({ "name": "build", "kind": "run" }),
    )]);
    assert!(dup.is_err());
    let unknown = j.append(&[NewEvent::run("r", "run_exploded", json!({}))]);
    assert!(message(&unknown.unwrap_err()).contains("run_exploded"));
    assert_eq!(event_count(&j), before);

    // One bad event in a batch rolls the whole batch back.
    let batch = [
        NewEvent::node(
            "r",
            "node_status",
            "build",
            None,
            json!({ "status": "ready" }),
        ),
        NewEvent::node(
            "r",
            "node_status",
            "build",
            None,
            json!({ "status": "succeeded" }),
        ),
    ];
    assert!(j.append(&batch).is_err());
    assert_eq!(event_count(&j), before);
    assert_eq!(node_status(&j, "r", "build"), "pending");
    // ... and the next good append still gets the next sequence number.
    set_status(&mut j, "r", "build", "ready").unwrap();
    let seqs: Vec<i64> = j.events("r").unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>()
    );
}
}

// ------------------------------------------------------ 4. schema versions

#[test]
fn a_new_journal_is_created_at_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let j = Journal::open(&path, Durability::Normal).unwrap();
    assert_eq!(SCHEMA_VERSION, 6);
    let version: i64 = j
        .connection()
        .query_row("PRAGMA user_version", params![], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let meta: String = j
        .connection()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(meta, SCHEMA_VERSION.to_string());
    drop(j);
    // Reopening does not migrate again.
    Journal::open(&path, Durability::Normal).unwrap();
    Journal::open_existing(&path).unwrap();

    // An empty file is a new journal for `open`, and "nothing ran here" for readers.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = Journal::open_existing(&empty).unwrap_err();
    assert!(matches!(err, JournalError::Missing { .. }), "{err}");
    let j = Journal::open(&empty, Durability::Normal).unwrap();
    let version: i64 = j
        .connection()
        .query_row("PRAGMA user_version", params![], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_journal_from_a_newer_flowc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    {
        let mut j = Journal::open(&path, Durability::Normal).unwrap();
        start_run(&mut j, "r");
        j.connection()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
    }
    for err in [
        Journal::open(&path, Durability::Normal).unwrap_err(),
        Journal::open_existing(&path).unwrap_err(),
    ] {
        assert!(
            matches!(err, JournalError::Newer { found: 99, .. }),
            "{err:?}"
        );
        let text = message(&err);
        assert!(text.contains("99"), "{text}");
        assert!(text.contains("upgrade"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    // Refusing did not touch it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", params![], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[test]
fn a_foreign_sqlite_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('ada');")
            .unwrap();
    }
    for err in [
        Journal::open(&path, Durability::Normal).unwrap_err(),
        Journal::open_existing(&path).unwrap_err(),
    ] {
        assert!(matches!(err, JournalError::Foreign { .. }), "{err:?}");
        assert!(message(&err).contains("not a flowc journal"), "{err}");
    }
    // Not converted to WAL, not migrated.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", params![], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

// ------------------------------------------------- 5. broken files, paths

fn assert_unreadable(err: &JournalError, path: &Path) {
    let text = message(err);
    assert!(
        text.contains("not an SQLite database") || text.contains("corrupt"),
        "not a clear message: {text}"
    );
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn a_garbage_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    // Deterministic "random" bytes (xorshift), never a valid SQLite header.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::open(&path, Durability::Normal).unwrap_err();
    assert_unreadable(&err, &path);
    let err = Journal::open_existing(&path).unwrap_err();
    assert_unreadable(&err, &path);
    // Nothing was written over it.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_truncated_journal_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    {
        let mut j = Journal::open(&path, Durability::Normal).unwrap();
        j.integrity_check().unwrap();
        start_run(&mut j, "r");
        for i in 0..400 {
            j.append(&[NewEvent::run(
                "r",
                "note",
                json!({ "text": format!("{i}: {}", "x".repeat(500)) }),
            )])
            .unwrap();
        }
    }
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(
        len > 100_000,
        "journal too small to truncate meaningfully: {len}"
    );
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    // However far SQLite gets, the user sees a clear message, never a panic.
    let mut errors = Vec::new();
    match Journal::open_existing(&path) {
        Err(e) => errors.push(e),
        Ok(j) => {
            errors.push(j.integrity_check().unwrap_err());
            if let Err(e) = j.events("r") {
                assert!(message(&e).contains("corrupt"), "{e}");
            }
        }
    }
    match Journal::open(&path, Durability::Normal) {
        Err(e) => errors.push(e),
        Ok(j) => errors.push(j.integrity_check().unwrap_err()),
    }
    for e in &errors {
        eprintln!("truncated journal: {e}");
        assert_unreadable(e, &path);
    }
}

#[test]
fn a_missing_directory_names_the_path() {
    let path = PathBuf::from("/nonexistent/dir/j.db");
    let err = Journal::open(&path, Durability::Normal).unwrap_err();
    let text = message(&err);
    assert!(text.contains("/nonexistent/dir/j.db"), "{text}");
    assert!(text.contains("directory"), "{text}");
    let err = Journal::open_existing(&path).unwrap_err();
    assert!(matches!(err, JournalError::Missing { .. }), "{err}");
    assert!(message(&err).contains("/nonexistent/dir/j.db"));
}

/// A FIFO, a directory and a device at the journal path (or at its `-wal`
/// companion) are refused by every open path before SQLite sees them; the
/// calls return instead of blocking on the FIFO.
#[test]
fn a_journal_path_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.db");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let wal_fifo = dir.path().join("walfifo.db");
    let mut wal = wal_fifo.as_os_str().to_owned();
    wal.push("-wal");
    nix::unistd::mkfifo(
        Path::new(&wal),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let cases = [
        (fifo.clone(), fifo.clone(), "a FIFO"),
        (wal_fifo, PathBuf::from(&wal), "a FIFO"),
        (
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
            "a directory",
        ),
        (
            PathBuf::from("/dev/null"),
            PathBuf::from("/dev/null"),
            "a device",
        ),
    ];
    for (path, named, kind) in cases {
        for err in [
            Journal::open(&path, Durability::Normal).unwrap_err(),
            Journal::open_existing(&path).unwrap_err(),
        ] {
            assert!(matches!(err, JournalError::NotAFile { .. }), "{err:?}");
            let text = message(&err);
            assert!(text.contains(kind), "{text}");
            assert!(text.contains(&named.display().to_string()), "{text}");
        }
    }
}

/// A short file is not an empty database: SQLite would treat one byte as an
/// empty journal and the next run would write over it.
#[test]
fn a_short_non_sqlite_file_is_refused_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    for bytes in [
        &b"x"[..],
        b"SQLite format",
        b"hello, world: not a journal at all\n",
    ] {
        let path = dir.path().join("journal.db");
        std::fs::write(&path, bytes).unwrap();
        for err in [
            Journal::open(&path, Durability::Normal).unwrap_err(),
            Journal::open_existing(&path).unwrap_err(),
        ] {
            assert!(matches!(err, JournalError::NotSqlite { .. }), "{err:?}");
            assert_unreadable(&err, &path);
            assert!(message(&err).contains("leaves it as it is"), "{err}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
    // An empty file is still a journal not yet written to.
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(
        Journal::open_existing(&path).unwrap_err(),
        JournalError::Missing { .. }
    ));
    Journal::open(&path, Durability::Normal).unwrap();
}

#[test]
fn a_read_only_journal_gives_a_clear_error_on_append() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("ro");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("journal.db");
    {
        let mut j = Journal::open(&path, Durability::Normal).unwrap();
        start_run(&mut j, "r");
    }
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set(&path, 0o444);
    set(&sub, 0o555);
    let probe = sub.join("probe");
    let privileged = std::fs::write(&probe, b"x").is_ok();
    let outcome = if privileged {
        None
    } else {
        let result = Journal::open(&path, Durability::Normal)
            .and_then(|mut j| j.append(&[NewEvent::run("r", "note", json!({ "text": "hi" }))]));
        // Reading still works.
        let reader = Journal::open_existing(&path).map(|j| j.run("r").map(|r| r.status));
        Some((result, reader))
    };
    set(&sub, 0o755);
    set(&path, 0o644);
    let Some((result, reader)) = outcome else {
        eprintln!(
            "note: running with privileges that ignore file modes; read-only assertion skipped"
        );
        // Still: the journal is intact after the attempt.
        Journal::open_existing(&path)
            .unwrap()
            .integrity_check()
            .unwrap();
        return;
    };
    let err = result.unwrap_err();
    let text = message(&err);
    eprintln!("read-only journal: {text}");
    assert!(
        text.contains("read-only") && text.contains(&path.display().to_string()),
        "not a clear message: {text}"
    );
    eprintln!("read-only journal, reader: {reader:?}");
    if let Ok(status) = reader {
        assert_eq!(status.unwrap(), "running");
    }
    let j = Journal::open_existing(&path).unwrap();
    assert_eq!(
        j.events("r").unwrap().len(),
        1,
        "the refused event was stored"
    );
}

// ---------------------------------------------------------------- 6. replay

fn realistic_run(j: &mut Journal, run: &str) {
    start_run(j, run);
    let n = |kind: &'static str, node: &str, attempt: Option<u32>, data| {
        NewEvent::node(run, kind, node, attempt, data)
    };
    j.append(&[
        n(
            "node_added",
            "build",
            None,
            json!({ "name": "build", "kind": "run" }),
        ),
        n(
            "node_added",
            "review",
            None,
            json!({ "name": "review", "kind": "approval" }),
        ),
        n(
            "node_added",
            "loop#1/fix",
            None,
            json!({ "name": "fix", "kind": "agent" }),
        ),
    ])
    .unwrap();
    j.append(&[n(
        "node_status",
        "build",
        None,
        json!({ "status": "ready" }),
    )])
    .unwrap();
    j.append(&[n(
        "node_status",
        "build",
        Some(1),
        json!({ "status": "running", "input_hash": "h-build" }),
    )])
    .unwrap();
    j.append(&[NewEvent::node(
        run,
        "output",
        "build",
        Some(1),
        json!({ "stream": "stdout", "text": "ok\n", "truncated": false }),
    )])
    .unwrap();
    j.append(&[n(
        "node_status",
        "build",
        Some(1),
        json!({ "status": "succeeded", "result": { "exit": 0, "score": 0.1, "stdout": "ok\n" } }),
    )])
    .unwrap();
    j.append(&[n(
        "node_status",
        "review",
        None,
        json!({ "status": "ready" }),
    )])
    .unwrap();
    j.append(&[
        n(
            "node_status",
            "review",
            None,
            json!({ "status": "waiting", "input_hash": "h-review" }),
        ),
        n(
            "approval_requested",
            "review",
            None,
            json!({ "kind": "approval", "prompt": "Ship it?", "input_hash": "h-review" }),
        ),
    ])
    .unwrap();
    j.append(&[n(
        "approval_decided",
        "review",
        None,
        json!({ "decision": "approved", "by": "ada", "comment": "fine", "output": null }),
    )])
    .unwrap();
    j.append(&[n(
        "node_status",
        "review",
        None,
        json!({ "status": "succeeded", "result": { "approved": true } }),
    )])
    .unwrap();
    j.append(&[n(
        "node_status",
        "loop#1/fix",
        None,
        json!({ "status": "skipped" }),
    )])
    .unwrap();
    j.append(&[NewEvent::run(run, "note", json!({ "text": "done" }))])
        .unwrap();
    j.append(&[NewEvent::run(
        run,
        "run_status",
        json!({ "status": "succeeded", "output": { "shipped": true } }),
    )])
    .unwrap();
}

on_both_stores! {
fn replay_verifies_an_untouched_run_and_reports_tampering(store) {
    let mut j = new_journal(store);
    realistic_run(&mut j, "r");
    realistic_run(&mut j, "other");
    assert_eq!(j.replay("r").unwrap(), Vec::<Difference>::new());
    assert_eq!(j.run("r").unwrap().status, "succeeded");
    assert_eq!(j.approvals(Some("r")).unwrap()[0].status, "approved");

    let stored: String = j
        .connection()
        .query_row(
            "SELECT result FROM nodes WHERE run_id = 'r' AND key = 'build'", params![],
            |r| r.get(0),
        )
        .unwrap();
    j.connection()
        .execute(
            "UPDATE nodes SET result = '{\"exit\":1}' WHERE run_id = 'r' AND key = 'build'", params![],
        )
        .unwrap();
    assert_eq!(
        j.replay("r").unwrap(),
        vec![Difference {
            row: "nodes build".into(),
            column: "result".into(),
            stored: "{\"exit\":1}".into(),
            replayed: stored.clone(),
        }]
    );
    // Other runs are unaffected.
    assert!(j.replay("other").unwrap().is_empty());

    // A status tamper that bypasses the state machine is caught as well.
    let on = match store.kind {
        common::store::Kind::Sqlite => "",
        common::store::Kind::Postgres => " ON nodes",
    };
    j.connection()
        .execute_batch(&format!(
            "DROP TRIGGER nodes_legal_transition{on};
             UPDATE nodes SET status = 'failed' WHERE run_id = 'r' AND key = 'review';"
        ))
        .unwrap();
    let diffs = j.replay("r").unwrap();
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    assert!(diffs.contains(&Difference {
        row: "nodes review".into(),
        column: "status".into(),
        stored: "failed".into(),
        replayed: "succeeded".into(),
    }));

    // A missing projection row.
    j.connection()
        .execute("DELETE FROM approvals WHERE run_id = 'other'", params![])
        .unwrap();
    assert_eq!(
        j.replay("other").unwrap(),
        vec![Difference {
            row: "approvals review".into(),
            column: "(row)".into(),
            stored: "missing".into(),
            replayed: "present".into(),
        }]
    );

    assert!(matches!(
        j.replay("nope").unwrap_err(),
        JournalError::NoRun { .. }
    ));
}
}

// ---------------------------------------------------------------- 7. leases

fn our_host(j: &mut Journal) -> String {
    j.acquire_lease("host-probe").unwrap();
    let host: String = j
        .connection()
        .query_row(
            "SELECT host FROM leases WHERE run_id = 'host-probe'",
            params![],
            |r| r.get(0),
        )
        .unwrap();
    j.release_lease("host-probe").unwrap();
    host
}

fn insert_lease(j: &Journal, run: &str, owner: &str, pid: u32, host: &str, heartbeat: i64) {
    j.connection()
        .execute(
            "INSERT INTO leases (run_id, owner, pid, host, heartbeat) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, pid = excluded.pid,
               host = excluded.host, heartbeat = excluded.heartbeat",
            params![run, owner, pid, host, heartbeat],
        )
        .unwrap();
}

fn lease_pid(j: &Journal, run: &str) -> Option<u32> {
    j.connection()
        .query_row(
            "SELECT pid FROM leases WHERE run_id = ?1",
            params![run],
            |r| r.get(0),
        )
        .ok()
}

on_both_stores! {
fn leases_keep_a_second_driver_out_and_are_taken_over_when_stale(store) {
    assert_eq!(LEASE_HEARTBEAT_MS, 5_000);
    assert_eq!(LEASE_STALE_MS, 30_000);
    let mut j = new_journal(store);
    let me = std::process::id();

    // The same process may take its own lease again.
    j.acquire_lease("a").unwrap();
    j.acquire_lease("a").unwrap();
    assert_eq!(lease_pid(&j, "a"), Some(me));
    let holder = j.lease_holder("a").unwrap().unwrap();
    assert!(holder.owner.contains(&me.to_string()), "{}", holder.owner);
    j.connection()
        .execute("UPDATE leases SET heartbeat = 0 WHERE run_id = 'a'", params![])
        .unwrap();
    j.heartbeat("a").unwrap();
    let beat: i64 = j
        .connection()
        .query_row("SELECT heartbeat FROM leases WHERE run_id = 'a'", params![], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(now_ms() - beat < 5_000);
    j.release_lease("a").unwrap();
    // The row stays (pid 0), so the epoch keeps counting across drivers.
    assert_eq!(lease_pid(&j, "a"), Some(0));
    assert!(j.lease_holder("a").unwrap().is_none());

    // A live other process on this host with a fresh heartbeat holds the run.
    let host = our_host(&mut j);
    let mut child = std::process::Command::new("sleep")
        .arg("5")
        .spawn()
        .unwrap();
    let owner = format!("flowc (pid {}) on {host}", child.id());
    insert_lease(&j, "b", &owner, child.id(), &host, now_ms());
    let err = j.acquire_lease("b").unwrap_err();
    match &err {
        JournalError::Leased { run, holder, .. } => {
            assert_eq!(run, "b");
            assert_eq!(holder, &owner);
        }
        other => panic!("expected Leased, got {other:?}"),
    }
    assert!(message(&err).contains(&owner));
    assert_eq!(j.lease_holder("b").unwrap().unwrap().owner, owner);
    assert_eq!(lease_pid(&j, "b"), Some(child.id()));
    // Our heartbeat and release do not touch someone else's lease.
    j.release_lease("b").unwrap();
    assert_eq!(lease_pid(&j, "b"), Some(child.id()));

    // Once that process is gone, the lease is taken over.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(j.lease_holder("b").unwrap().is_none());
    j.acquire_lease("b").unwrap();
    assert_eq!(lease_pid(&j, "b"), Some(me));

    // Another host: the pid cannot be checked, so only the heartbeat counts.
    insert_lease(
        &j,
        "c",
        "flowc (pid 1) on elsewhere",
        1,
        "elsewhere.invalid",
        now_ms(),
    );
    assert!(matches!(
        j.acquire_lease("c").unwrap_err(),
        JournalError::Leased { .. }
    ));
    insert_lease(
        &j,
        "c",
        "flowc (pid 1) on elsewhere",
        1,
        "elsewhere.invalid",
        now_ms() - LEASE_STALE_MS - 1_000,
    );
    assert!(j.lease_holder("c").unwrap().is_none());
    j.acquire_lease("c").unwrap();
    assert_eq!(lease_pid(&j, "c"), Some(me));
}
}

on_both_stores! {
fn a_live_process_on_this_host_keeps_its_lease_even_with_an_old_heartbeat_only_until_stale(store) {
    // pid 1 always exists; a heartbeat just inside the window keeps the lease,
    // one just outside releases it.
    let mut j = new_journal(store);
    let host = our_host(&mut j);
    insert_lease(&j, "d", "init", 1, &host, now_ms() - LEASE_STALE_MS + 5_000);
    assert!(j.acquire_lease("d").is_err());
    insert_lease(&j, "d", "init", 1, &host, now_ms() - LEASE_STALE_MS - 1_000);
    j.acquire_lease("d").unwrap();
}
}

// ----------------------------------------------------------- 8. concurrency

fn seqs(j: &Journal, run: &str) -> Vec<i64> {
    j.events(run).unwrap().iter().map(|e| e.seq).collect()
}

on_both_stores! {
fn two_handles_append_to_different_runs_concurrently(store) {
    const N: i64 = 200;
    let path = store.path.clone();
    drop(Journal::open(&path, Durability::Normal).unwrap());
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = ["left", "right"]
        .into_iter()
        .map(|run| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut j = Journal::open(&path, Durability::Normal).unwrap();
                barrier.wait();
                start_run(&mut j, run);
                for i in 1..N {
                    j.append(&[NewEvent::run(run, "note", json!({ "i": i }))])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let j = Journal::open_existing(&path).unwrap();
    for run in ["left", "right"] {
        assert_eq!(seqs(&j, run), (1..=N).collect::<Vec<_>>(), "{run}");
    }
    assert_eq!(event_count(&j), 2 * N);
}
}

on_both_stores! {
fn two_handles_appending_to_the_same_run_never_reuse_a_seq(store) {
    // `flowc approve` appends to a run from another process while its driver
    // may still be appending to it.
    let path = store.path.clone();
    let mut driver = Journal::open(&path, Durability::Normal).unwrap();
    let mut other = Journal::open(&path, Durability::Normal).unwrap();
    start_run(&mut driver, "r");
    for i in 0..10 {
        driver
            .append(&[NewEvent::run(
                "r",
                "note",
                json!({ "from": "driver", "i": i }),
            )])
            .unwrap();
        other
            .append(&[NewEvent::run(
                "r",
                "note",
                json!({ "from": "other", "i": i }),
            )])
            .unwrap();
    }
    assert_eq!(seqs(&driver, "r"), (1..=21).collect::<Vec<_>>());
}
}

on_both_stores! {
fn concurrent_first_opens_of_a_new_journal_all_succeed(store) {
    let path = store.path.clone();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                Journal::open(&path, Durability::Normal).map(|_| ())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let j = Journal::open_existing(&path).unwrap();
    let meta: i64 = j
        .connection()
        .query_row("SELECT count(*) FROM meta", params![], |r| r.get(0))
        .unwrap();
    assert_eq!(meta, 1);
}
}

// ------------------------------------------------------------ 9. durability

#[test]
fn both_durability_modes_open_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    for (durability, synchronous) in [(Durability::Full, 2), (Durability::Normal, 1)] {
        let mut j = Journal::open(&path, durability).unwrap();
        let mode: String = j
            .connection()
            .query_row("PRAGMA journal_mode", params![], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = j
            .connection()
            .query_row("PRAGMA synchronous", params![], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, synchronous, "{durability:?}");
        let run = format!("{durability:?}");
        start_run(&mut j, &run);
        j.integrity_check().unwrap();
    }
    assert_eq!(Durability::default(), Durability::Normal);
}

// ------------------------------------------------------------ 10. output cap

#[test]
fn output_cap_is_64_kib() {
    assert_eq!(OUTPUT_CAP, 64 * 1024);
    assert_eq!(OUTPUT_CAP, 65_536);
}

on_both_stores! {
fn a_driver_whose_lease_was_taken_over_cannot_append_or_renew(store) {
    let mut j = new_journal(store);
    let run = "fenced";
    j.append(&[NewEvent::run(
        run,
        "run_started",
        json!({"skill": "s", "file": "f", "inputs": {}}),
    )])
    .unwrap();
    j.acquire_lease(run).unwrap();
    let epoch = |j: &Journal| -> i64 {
        j.connection()
            .query_row(
                "SELECT epoch FROM leases WHERE run_id = ?1",
                params![run],
                |r| r.get(0),
            )
            .unwrap()
    };
    let first = epoch(&j);
    j.append(&[NewEvent::run(run, "note", json!({"text": "mine"}))])
        .unwrap();
    // Another driver takes the lease over: a new epoch.
    j.connection()
        .execute("UPDATE leases SET epoch = epoch + 1, pid = 1, owner = 'the other driver' WHERE run_id = ?1", params![run])
        .unwrap();
    let before = j.events(run).unwrap().len();
    let err = j
        .append(&[NewEvent::run(run, "note", json!({"text": "late"}))])
        .unwrap_err();
    assert!(matches!(err, JournalError::Fenced { .. }), "{err}");
    assert!(err.to_string().contains("the other driver"), "{err}");
    assert_eq!(j.events(run).unwrap().len(), before, "nothing was appended");
    assert!(matches!(j.heartbeat(run), Err(JournalError::Fenced { .. })));
    // Events of other runs are not fenced by this lease.
    j.append(&[NewEvent::run(
        "other",
        "run_started",
        json!({"skill": "s", "file": "f", "inputs": {}}),
    )])
    .unwrap();
    // Taking the lease again starts a newer epoch still.
    j.connection()
        .execute("UPDATE leases SET pid = 0 WHERE run_id = ?1", params![run])
        .unwrap();
    j.acquire_lease(run).unwrap();
    assert_eq!(epoch(&j), first + 2);
    j.append(&[NewEvent::run(run, "note", json!({"text": "mine again"}))])
        .unwrap();
}
}
