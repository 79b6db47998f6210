//! What steps see of each other's results at run time: absent results read
//! through the checked forms, `feedback` templates, and run-time template
//! errors in the user's terms.
#![allow(clippy::unwrap_used)]

mod common;
use common::{flowc, latest_run, stderr};
use std::path::Path;

fn fixture(dir: &Path, name: &str) -> String {
    let src = std::fs::read_to_string(format!("tests/fixtures/results/{name}")).unwrap();
    std::fs::write(dir.join(name), &src).unwrap();
    name.to_string()
}

fn output(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

#[test]
fn absent_results_take_their_defaults_and_present_ones_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "absent_results.flow");
    let skipped = flowc(d, &["run", &f, "--no-input"]);
    assert!(skipped.status.success(), "{}", stderr(&skipped));
    let v = output(&skipped);
    assert_eq!(v["tests"], -1);
    assert_eq!(v["shown"], "[|none]");
    assert_eq!(v["label"], "lint");
    let ran = flowc(d, &["run", &f, "-i", "full=true", "--no-input"]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    let v = output(&ran);
    assert_eq!(v["tests"], 5);
    assert_eq!(v["shown"], "[5|5]");
}

#[test]
fn a_feedback_string_is_rendered_with_the_steps_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "feedback_template.flow");
    let out = flowc(d, &["run", &f, "--no-input"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("coverage 75% is below 80% (attempt 1)"),
        "{err}"
    );
    assert!(err.contains("(attempt 2)"), "{err}");
    assert!(!err.contains("{{"), "{err}");
}

#[test]
fn a_template_error_names_the_missing_value_not_an_internal_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "undefined_in_json.flow");
    let out = flowc(d, &["run", &f, "--no-input"]);
    assert_eq!(out.status.code(), Some(1));
    let status = flowc(d, &["status", &latest_run(d), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let error = v["run"]["error"].as_str().unwrap();
    assert!(error.contains("`j.output.b` is undefined"), "{error}");
    assert!(!error.contains("(in t"), "{error}");
}

#[test]
fn a_steps_description_is_rendered_and_shown_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "description.flow");
    let out = flowc(d, &["run", &f, "-i", "who=team", "--no-input"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("▶ a running (attempt 1): say hello to team"),
        "{err}"
    );
    assert!(err.contains("▶ b running (attempt 1): repeat"), "{err}");
    let log = flowc(d, &["log", &latest_run(d), "a"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(
        log.contains(r#""description":"say hello to team""#),
        "{log}"
    );
}

#[test]
fn a_rejected_llm_reply_is_shown_in_the_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "llm_accept_value.flow");
    fixture(d, "llm_accept_value.yaml");
    let out = flowc(d, &["run", &f, "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(r#"the result was: {"ok":false,"why":"too risky"}"#),
        "{err}"
    );
}

#[test]
fn the_human_queue_shows_the_end_of_an_escalated_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "escalate_tail.flow");
    let out = flowc(d, &["run", &f, "--no-input"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let queue = flowc(d, &["approvals"]);
    let text = String::from_utf8_lossy(&queue.stdout);
    assert!(text.contains("error: the disk is full"), "{text}");
    assert!(text.contains("did not hold (exit code 3)"), "{text}");
}

#[test]
fn a_script_value_over_the_cap_fails_its_attempt_instead_of_being_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture(d, "script_result_cap.flow");
    // 512 KiB is under the 1 MiB cap: the value reaches the next step whole.
    let ok = flowc(d, &["run", &f, "-i", "bytes=524288", "--no-input"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(output(&ok), serde_json::json!(524_288));
    // 2 MiB: the attempt fails, and the journal stays small.
    let big = flowc(d, &["run", &f, "-i", "bytes=2097152", "--no-input"]);
    assert_eq!(big.status.code(), Some(1), "{}", stderr(&big));
    let err = stderr(&big);
    assert!(
        err.contains("over the 1 MiB cap of a script result"),
        "{err}"
    );
    let journal = std::fs::metadata(d.join(".flowc/journal.db"))
        .unwrap()
        .len()
        + std::fs::metadata(d.join(".flowc/journal.db-wal")).map_or(0, |m| m.len());
    assert!(journal < 4 << 20, "journal is {journal} bytes");
    // Nested deeper than the journal can read back: refused too.
    let deep = flowc(d, &["run", &f, "-i", "depth=200", "--no-input"]);
    assert_eq!(deep.status.code(), Some(1), "{}", stderr(&deep));
    assert!(
        stderr(&deep).contains("nested more than 64 levels"),
        "{}",
        stderr(&deep)
    );
}
