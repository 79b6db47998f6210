//! `flowc check --against`: a run paused at an approval, the flow edited, the
//! prediction of what resuming it reuses and redoes, and the resume itself
//! doing exactly that; edits a paused run cannot survive; bad journals.
#![allow(clippy::unwrap_used)]

mod common;

use common::{flowc, latest_run, stderr};
use flowc::journal::Journal;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/against");

/// A temporary directory with `flow.flow` (a copy of fixture `name`) and a run of it paused at `gate`.
fn paused(name: &str) -> (tempfile::TempDir, String) {
    started(name, 75)
}

/// A temporary directory with `flow.flow` (a copy of fixture `name`) and a run of it that exited `code`.
fn started(name: &str, code: i32) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
    std::fs::write(dir.path().join("flow.flow"), text).unwrap();
    let out = flowc(dir.path(), &["run", "flow.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
    let run = latest_run(dir.path());
    (dir, run)
}

/// Writes `flow.flow` with `from` replaced by `to` as `name`.
fn edit(dir: &Path, name: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(dir.join("flow.flow")).unwrap();
    assert!(text.contains(from), "`{from}` is not in the flow");
    std::fs::write(dir.join(name), text.replacen(from, to, 1)).unwrap();
}

/// `flowc check FILE --against JOURNAL --json ARGS`: the exit code and the report's `against`.
fn against(dir: &Path, file: &str, extra: &[&str]) -> (i32, Json) {
    let mut args = vec!["check", file, "--against", ".flowc/journal.db", "--json"];
    args.extend(extra);
    let out = flowc(dir, &args);
    let report: Json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), report["against"].clone())
}

/// Each step's fate and reason in the report's only run.
fn fates(report: &Json) -> BTreeMap<String, (String, String)> {
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{report:#}");
    runs[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap().to_string();
            (text("key"), (text("fate"), text("reason")))
        })
        .collect()
}

fn with_fate(fates: &BTreeMap<String, (String, String)>, fate: &str) -> BTreeSet<String> {
    fates
        .iter()
        .filter(|(_, (f, _))| f == fate)
        .map(|(k, _)| k.clone())
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// The node instances that started an attempt (a `running` event) after the run's last `run_resumed`.
fn ran_after_resume(dir: &Path, run: &str) -> BTreeSet<String> {
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let events = journal.events(run).unwrap();
    let resumed = events
        .iter()
        .rposition(|e| e.kind == "run_resumed")
        .unwrap();
    events[resumed..]
        .iter()
        .filter(|e| e.kind == "node_status" && e.data["status"] == "running")
        .filter_map(|e| e.node.clone())
        .collect()
}

#[test]
fn an_edited_step_and_its_dependents_are_redone_and_the_resume_agrees() {
    let (dir, run) = paused("paused.flow");
    let dir = dir.path();
    edit(dir, "edited.flow", "echo built {{", "echo rebuilt {{");
    let (code, report) = against(dir, "edited.flow", &["--deny-breaking"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["breaking"], 0, "{report:#}");
    assert_eq!(report["runs"][0]["run"], run.as_str());
    assert_eq!(report["runs"][0]["waiting_at"], serde_json::json!(["gate"]));
    let fates = fates(&report);
    assert_eq!(with_fate(&fates, "redo"), set(&["build", "verify"]));
    assert_eq!(with_fate(&fates, "reused"), set(&["lint", "prepare"]));
    assert_eq!(with_fate(&fates, "waiting"), set(&["gate"]));
    assert_eq!(with_fate(&fates, "new"), set(&["ship"]));
    assert_eq!(fates["build"].1, "its definition changed");
    assert_eq!(fates["verify"].1, "upstream `build` runs again");

    let out = flowc(dir, &["approve", &run, "gate", "--comment", "fine"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Decided, not yet resumed: the same prediction, the gate taking the decision.
    let (_, decided) = against(dir, "edited.flow", &[]);
    let decided = self::fates(&decided);
    assert_eq!(
        decided["gate"],
        (
            "waiting".to_string(),
            "a person decided (`approved`), and the resume takes it".to_string()
        )
    );
    assert_eq!(with_fate(&decided, "redo"), set(&["build", "verify"]));
    let out = flowc(dir, &["run", "edited.flow", "--resume", &run, "--no-input"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let predicted: BTreeSet<String> = with_fate(&fates, "redo")
        .union(&with_fate(&fates, "new"))
        .cloned()
        .collect();
    assert_eq!(ran_after_resume(dir, &run), predicted);
    let effects = std::fs::read_to_string(dir.join("effects")).unwrap();
    let count = |w: &str| effects.lines().filter(|l| *l == w).count();
    assert_eq!(
        (
            count("prepared"),
            count("linted"),
            count("built"),
            count("verified")
        ),
        (1, 1, 2, 2),
        "{effects}"
    );
}

#[test]
fn a_failed_run_redoes_its_failed_step_and_the_resume_agrees() {
    let (dir, run) = started("failed.flow", 1);
    let dir = dir.path();
    edit(dir, "fixed.flow", "exit 3", "echo parsed");
    let (code, report) = against(dir, "fixed.flow", &["--deny-breaking"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["runs"][0]["status"], "failed");
    let fates = fates(&report);
    assert_eq!(
        fates["parse"],
        (
            "redo".to_string(),
            "it had not finished (it was failed)".to_string()
        )
    );
    assert_eq!(with_fate(&fates, "reused"), set(&["fetch"]));
    assert_eq!(with_fate(&fates, "new"), set(&["report"]));
    let out = flowc(dir, &["run", "fixed.flow", "--resume", &run, "--no-input"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ran_after_resume(dir, &run), set(&["parse", "report"]));
}

#[test]
fn a_comment_or_layout_edit_redoes_nothing() {
    let (dir, _) = paused("paused.flow");
    let dir = dir.path();
    edit(
        dir,
        "comment.flow",
        "  step lint: run { command: \"echo linted >> effects; echo lint-ok\" }",
        "  # the linter\n  step lint: run {\n    command: \"echo linted >> effects; echo lint-ok\"\n  }",
    );
    let (code, report) = against(dir, "comment.flow", &[]);
    assert_eq!(code, 0);
    let fates = fates(&report);
    assert!(with_fate(&fates, "redo").is_empty(), "{fates:?}");
    assert_eq!(
        with_fate(&fates, "reused"),
        set(&["build", "lint", "prepare", "verify"])
    );
}

#[test]
fn removing_the_gate_the_run_waits_at_is_breaking() {
    let (dir, run) = paused("paused.flow");
    let dir = dir.path();
    edit(
        dir,
        "nogate.flow",
        "  step gate: approval {\n    prompt: \"Ship {{ prepare.stdout.trim() }}?\"\n  }\n",
        "",
    );
    // `ship` waited for the gate; it no longer does.
    let text = std::fs::read_to_string(dir.join("nogate.flow")).unwrap();
    std::fs::write(
        dir.join("nogate.flow"),
        text.replace("after: [gate, lint]", "after: [lint]"),
    )
    .unwrap();
    let (code, report) = against(dir, "nogate.flow", &["--deny-breaking"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["breaking"], 1);
    let fates = fates(&report);
    assert_eq!(fates["gate"].0, "removed");
    let problem = report["runs"][0]["breaking"][0].as_str().unwrap();
    assert!(problem.contains("waits at approval `gate`"), "{problem}");
    // Without --deny-breaking it is a report, not a failure.
    let (code, _) = against(dir, "nogate.flow", &[]);
    assert_eq!(code, 0);
    // A gate that is no longer an approval breaks the run too.
    edit(
        dir,
        "rungate.flow",
        "step gate: approval {\n    prompt: \"Ship {{ prepare.stdout.trim() }}?\"",
        "step gate: run {\n    command: \"echo {{ prepare.stdout.trim() }}\"",
    );
    let (code, report) = against(dir, "rungate.flow", &["--deny-breaking"]);
    assert_eq!(code, 1, "{report:#}");
    let problem = report["runs"][0]["breaking"][0].as_str().unwrap();
    assert_eq!(
        problem,
        "the run waits at approval `gate`, which the edit makes a `run` step"
    );
    // The human form, for the run named by id in the default journal.
    let out = flowc(dir, &["check", "nogate.flow", "--against", &run[..12]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.starts_with(&format!(
            "run {run} (paused at gate, started from `flow.flow`): 4 reused, 0 redo"
        )),
        "{text}"
    );
    assert!(text.contains("  removed  gate "), "{text}");
    assert!(
        text.contains("  breaking: the run waits at approval `gate`"),
        "{text}"
    );
}

#[test]
fn a_reused_result_that_no_longer_fits_its_type_is_breaking() {
    let (dir, _) = paused("typed.flow");
    let dir = dir.path();
    edit(
        dir,
        "retyped.flow",
        "type Report { count: int }",
        "type Report { count: string }",
    );
    let (code, report) = against(dir, "retyped.flow", &["--deny-breaking"]);
    assert_eq!(code, 1, "{report:#}");
    let fates = fates(&report);
    assert_eq!(fates["measure"].0, "reused");
    let problem = report["runs"][0]["breaking"][0].as_str().unwrap();
    assert!(
        problem.starts_with("`measure` is reused, but the result it has no longer fits"),
        "{problem}"
    );
    assert!(
        problem.contains("$.output.count should be string"),
        "{problem}"
    );
}

#[test]
fn missing_and_corrupt_journals_and_unknown_runs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let flow = Path::new(FIXTURES).join("paused.flow");
    let flow = flow.to_str().unwrap();
    let out = flowc(dir, &["check", flow, "--against", "nowhere/journal.db"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error: no journal at `nowhere/journal.db`"),
        "{}",
        stderr(&out)
    );
    let out = flowc(dir, &["check", flow, "--against", "01JUNKNOWN"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no journal at `.flowc/journal.db`"));
    std::fs::write(
        dir.join("junk.db"),
        b"this is not a database at all, not even close",
    )
    .unwrap();
    let out = flowc(dir, &["check", flow, "--against", "junk.db"]);
    assert!(matches!(out.status.code(), Some(1 | 2)), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: "), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    let (paused_dir, _) = paused("paused.flow");
    let out = flowc(
        paused_dir.path(),
        &["check", "flow.flow", "--against", "01JUNKNOWN"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("01JUNKNOWN"), "{}", stderr(&out));
    let out = flowc(
        paused_dir.path(),
        &["check", "flow.flow", "--deny-breaking"],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--deny-breaking needs --against"
    );
}
