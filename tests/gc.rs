//! `flowc gc`: finished runs older than a bound leave the journal whole, in one
//! transaction; runs that can still go on, and the newest run, stay; the
//! append-only guard is back afterwards and the prune is recorded.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::stderr;
use common::store::TestStore;
use flowc::journal::Journal;
use std::path::Path;
use std::process::Output;

const FLOW: &str = r#"
skill ok() -> string {
  step s: run { command: "echo ok" }
  return s.stdout
}
skill bad() -> string {
  step s: run { command: "exit 3" }
  return s.stdout
}
skill gated() -> string {
  step g: approval { prompt: "go?" }
  step s: run { command: "echo gated", after: [g] }
  return s.stdout
}
"#;

/// `flowc ARGS` in `dir` on the test's journal.
fn flowc(store: &TestStore, dir: &Path, args: &[&str]) -> Output {
    common::flowc_env(dir, args, &[("FLOWC_JOURNAL", &store.location())])
}

fn runs(store: &TestStore) -> Vec<(String, String)> {
    let j = Journal::open_existing(&store.path).unwrap();
    j.runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.status))
        .collect()
}

on_both_stores! {
fn gc_prunes_old_finished_runs_and_keeps_the_rest_working(store) {
    let d = store.dir.path();
    std::fs::write(d.join("f.flow"), FLOW).unwrap();
    assert!(flowc(store, d, &["run", "f.flow", "ok"]).status.success());
    assert_eq!(flowc(store, d, &["run", "f.flow", "bad"]).status.code(), Some(1));
    assert_eq!(
        flowc(store, d, &["run", "f.flow", "gated", "--no-input"])
            .status
            .code(),
        Some(75)
    );
    assert!(flowc(store, d, &["run", "f.flow", "ok"]).status.success());
    let before = runs(store);
    assert_eq!(before.len(), 4);
    let newest = before[0].0.clone();
    let paused = before
        .iter()
        .find(|(_, s)| s == "paused")
        .unwrap()
        .0
        .clone();
    std::thread::sleep(std::time::Duration::from_millis(20));

    // A dry run says which, and removes nothing.
    let dry = flowc(store, d, &["gc", "--older-than", "0s", "--dry-run", "--json"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    let said: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(said["runs"].as_array().unwrap().len(), 2, "{said}");
    assert_eq!(runs(store).len(), 4);

    let out = flowc(store, d, &["gc", "--older-than", "0s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pruned 2 run(s)"));
    let after: Vec<String> = runs(store).into_iter().map(|(id, _)| id).collect();
    assert_eq!(after.len(), 2);
    assert!(
        after.contains(&newest) && after.contains(&paused),
        "{after:?}"
    );

    let j = Journal::open_existing(&store.path).unwrap();
    j.integrity_check().unwrap();
    for run in &after {
        assert!(j.replay(run).unwrap().is_empty(), "{run} does not replay");
    }
    let c = j.connection();
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM events WHERE run_id NOT IN (SELECT id FROM runs)",
            flowc::journal::params![],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    // The guard is back: a delete is refused again.
    let refused = c.execute(
        "DELETE FROM events WHERE run_id = ?1",
        flowc::journal::params![newest],
    );
    assert!(refused.unwrap_err().to_string().contains("append-only"));
    // What was pruned, by whom and why, is recorded.
    let record: String = c
        .query_row(
            "SELECT value FROM meta WHERE key LIKE 'gc:%'",
            flowc::journal::params![],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        record.contains("--older-than 0s") && record.contains("\"events\""),
        "{record}"
    );
    drop(j);

    // The paused run still goes on.
    assert!(flowc(store, d, &["approve", &paused, "g"]).status.success());
    let resumed = flowc(store, d, &["run", "--resume", &paused]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));

    // A bad bound is a usage error, and nothing is touched.
    let bad = flowc(store, d, &["gc", "--older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("is not a duration"),
        "{}",
        stderr(&bad)
    );
}
}
