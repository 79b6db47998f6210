//! Through the spawner, steps with the same sandbox are served one after
//! another by one namespace init (`src/sandbox/pool.rs`). These tests show
//! the reuse happens (the init's start time, field 22 of /proc/1/stat, is the
//! same in both steps) and that it keeps the guarantees of a fresh namespace:
//! nothing of the step before is left, and a mounted directory replaced
//! between two steps is not served from the old init's mounts.
#![allow(clippy::unwrap_used)]

mod common;
use common::BIN;
use flowc::journal::Journal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sandbox")
        .join(name)
}

fn has_landlock_fs() -> bool {
    common::has_layer("landlock_fs")
}

/// Runs a fixture through the spawner in `dir`: exit code, each step's
/// stdout (trimmed), and the wall time.
fn run(dir: &Path, flow: &str) -> (i32, HashMap<String, String>, Duration, String) {
    let begun = Instant::now();
    let out = Command::new(BIN)
        .args(["run", fixture(flow).to_str().unwrap(), "--no-input"])
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_NO_SPAWNER")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = begun.elapsed();
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let id = journal.runs().unwrap()[0].id.clone();
    let mut stdout = HashMap::new();
    for e in journal.events(&id).unwrap() {
        if let (Some(node), Some(o)) = (e.node.as_deref(), e.output()) {
            let text = o["stdout"].as_str().unwrap_or_default().trim().to_string();
            stdout.insert(node.to_string(), text);
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stdout, took, stderr)
}

/// The line of a step's stdout that is the init's start time.
fn init_start(out: &HashMap<String, String>, step: &str) -> String {
    out[step].lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_reused_init_shows_the_next_step_nothing_of_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, took, stderr) = run(dir.path(), "reuse_clean.flow");
    assert_eq!(code, 0, "{stderr}");
    if !has_landlock_fs() {
        // Without Landlock's filesystem rules a command could have changed
        // the mounts, so no init serves a second step.
        assert_ne!(init_start(&out, "leave"), init_start(&out, "look"));
        return;
    }
    assert_eq!(
        init_start(&out, "leave"),
        init_start(&out, "look"),
        "the second step was not served by the first one's init: {out:?}"
    );
    let seen = out["look"].lines().nth(1).unwrap_or_default();
    assert!(
        !seen.contains("sleep"),
        "a process of the step before is left: {seen}"
    );
    assert!(seen.contains("sort"), "the listing did not run: {seen}");
    // Each step's end comes when its command ends, not when the idle init is
    // ended (2 s) or may take no more jobs (10 s): that was a leaked pipe end.
    assert!(took < Duration::from_secs(4), "two steps took {took:?}");
}

#[test]
fn a_mounted_directory_replaced_between_steps_gets_a_new_init() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _, stderr) = run(dir.path(), "reuse_renamed.flow");
    if !has_landlock_fs() {
        // A written `writable` that cannot be enforced is refused.
        assert_eq!(code, 1, "{stderr}");
        return;
    }
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        init_start(&out, "first"),
        init_start(&out, "again"),
        "steps with the same sandbox were not served by one init: {out:?}"
    );
    assert_ne!(
        init_start(&out, "first"),
        init_start(&out, "second"),
        "the init whose `out` was renamed away served the next step: {out:?}"
    );
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(read("old/f").trim(), "one");
    assert_eq!(read("out/f").trim(), "two");
}
