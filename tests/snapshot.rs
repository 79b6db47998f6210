//! `snapshot:` and rollback of `run` steps: `rollback: true` restores the
//! files after a failed attempt, `flowc rollback RUN STEP` after the fact.
#![allow(clippy::unwrap_used)]

use std::path::Path;

mod common;
use common::{flowc, latest_run};

fn project(dir: &Path) {
    std::fs::create_dir_all(dir.join("src/deep")).unwrap();
    std::fs::write(dir.join("src/a.txt"), "original a\n").unwrap();
    std::fs::write(dir.join("src/deep/b.txt"), "original b\n").unwrap();
    std::fs::write(dir.join("keep.txt"), "outside the globs\n").unwrap();
}

fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

const EDIT: &str =
    "echo broken > src/a.txt; rm src/deep/b.txt; echo new > src/deep/c.txt; echo more >> keep.txt";

#[test]
fn rollback_true_restores_the_files_after_each_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let before = tree(d);
    let flow = format!(
        "skill main() {{\n  step edit: run {{\n    command: \"{EDIT}; exit 1\"\n    snapshot: [\"src/**\"]\n    rollback: true\n    attempts: 2\n  }}\n}}\n"
    );
    std::fs::write(d.join("f.flow"), flow).unwrap();
    let out = flowc(d, &["run", "f.flow"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(d), before);
    // Outside the globs nothing is restored: both attempts appended a line.
    assert_eq!(
        std::fs::read_to_string(d.join("keep.txt")).unwrap(),
        "outside the globs\nmore\nmore\n"
    );
    let journal = flowc::journal::Journal::open_existing(&d.join(".flowc/journal.db")).unwrap();
    let run = journal.runs().unwrap()[0].id.clone();
    let notes: Vec<String> = journal
        .events_of(&run, Some("note"))
        .unwrap()
        .iter()
        .filter_map(|e| e.data["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    for n in &notes {
        assert!(
            n.contains("2 file(s) restored, 1 created file(s) removed"),
            "{notes:?}"
        );
    }
    assert!(journal.replay(&run).unwrap().is_empty());
}

#[test]
fn flowc_rollback_restores_a_finished_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    project(d);
    let before = tree(d);
    let flow = format!(
        "skill main() {{\n  step edit: run {{\n    command: \"{EDIT}\"\n    snapshot: [\"src/**\"]\n  }}\n  step other: run {{ command: \"true\" }}\n}}\n"
    );
    std::fs::write(d.join("f.flow"), flow).unwrap();
    let out = flowc(d, &["run", "f.flow"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(tree(d), before);
    let run = latest_run(d);

    let out = flowc(d, &["rollback", &run, "edit"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 created file(s) removed"));
    assert_eq!(tree(d), before);
    let log = flowc(d, &["log", &run, "edit"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("rolled back snapshot"));
    let replay = flowc(d, &["replay", &run]);
    assert!(replay.status.success());

    // A step without a snapshot, or an unknown attempt: clear usage errors.
    let out = flowc(d, &["rollback", &run, "other"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no snapshot"));
    let out = flowc(d, &["rollback", &run, "edit", "--attempt", "7"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn rollback_without_snapshot_is_a_compile_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("f.flow"),
        "skill main() {\n  step edit: run { command: \"true\", rollback: true }\n}\n",
    )
    .unwrap();
    let out = flowc(dir.path(), &["check", "f.flow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing the field `snapshot`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
