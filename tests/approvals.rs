//! Approvals with `approvers`, `required` and `self_approval`: who may decide,
//! and every refusal journaled. Runs the binary as different OS users (`$USER`).
#![allow(clippy::unwrap_used)]

mod common;

use common::{BIN, latest_run};
use flowc::journal::Journal;
use serde_json::Value as Json;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PEOPLE: &str = "people:
  - name: alice
    os_user: alice
    groups: [release]
  - name: bob
    os_user: bob
    groups: [release]
  - name: carol
    os_user: carol
    groups: []
";

/// Runs `flowc ARGS` in `dir` as the OS user `user`.
fn as_user(dir: &Path, user: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env("USER", user)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with `gate.flow` holding one approval with `fields`, and its run paused at the gate, started by `initiator`.
fn paused(fields: &str, initiator: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("people.yaml"), PEOPLE).unwrap();
    let flow = format!(
        "skill main() -> bool {{\n  step gate: approval {{\n    prompt: \"Ship?\"\n    {fields}\n  }}\n  return gate.approved\n}}\n"
    );
    std::fs::write(dir.path().join("gate.flow"), flow).unwrap();
    let o = as_user(dir.path(), initiator, &["run", "gate.flow", "--no-input"]);
    assert_eq!(o.status.code(), Some(75), "{}", err(&o));
    let run = latest_run(dir.path());
    (dir, run)
}

fn approve(dir: &Path, user: &str, run: &str, extra: &[&str]) -> Output {
    let mut args = vec!["approve", run, "gate", "--people", "people.yaml"];
    args.extend(extra);
    as_user(dir, user, &args)
}

fn events(dir: &Path, run: &str, kind: &str) -> Vec<Json> {
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let events = journal.events_of(run, Some(kind)).unwrap();
    events.into_iter().map(|e| e.data).collect()
}

/// Asserts a refusal: exit 1, the whole message, and one `approval_refused` event saying why.
fn refused(o: &Output, dir: &Path, run: &str, code: &str, message: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", err(o));
    assert_eq!(
        err(o).trim_end(),
        format!("error: refused: `gate` of run `{run}`: {message}")
    );
    let refusals = events(dir, run, "approval_refused");
    let last = refusals.last().unwrap();
    assert_eq!(last["code"], code, "{refusals:?}");
    assert_eq!(last["reason"], message);
    // Nothing was decided after the refusal: it is the run's last event.
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    assert_eq!(
        journal.events(run).unwrap().last().unwrap().kind,
        "approval_refused"
    );
}

#[test]
fn run_started_names_the_initiator() {
    let (dir, run) = paused("", "dora");
    let started = events(dir.path(), &run, "run_started");
    assert_eq!(started[0]["initiator"], "dora");
    let asked = events(dir.path(), &run, "approval_requested");
    assert_eq!(asked[0]["approvers"], serde_json::json!([]));
    assert_eq!(asked[0]["required"], 1);
    assert_eq!(asked[0]["self_approval"], true);
}

#[test]
fn self_approval_is_refused_when_false() {
    let (dir, run) = paused("approvers: [\"group:release\"]", "alice");
    let o = approve(dir.path(), "alice", &run, &[]);
    refused(
        &o,
        dir.path(),
        &run,
        "self_approval",
        "`alice` started this run and `self_approval` is false",
    );
    let o = approve(dir.path(), "bob", &run, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(events(dir.path(), &run, "approval_decided")[0]["by"], "bob");
}

#[test]
fn self_approval_true_lets_the_initiator_decide() {
    let (dir, run) = paused("approvers: [\"alice\"]\n    self_approval: true", "alice");
    let o = approve(dir.path(), "alice", &run, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn a_non_approver_is_refused() {
    let (dir, run) = paused("approvers: [\"group:release\"]", "dora");
    let o = approve(dir.path(), "carol", &run, &[]);
    refused(
        &o,
        dir.path(),
        &run,
        "not_an_approver",
        "`carol` is not among the approvers (group:release)",
    );
    // Someone the people file does not list decides as their OS user name.
    let o = approve(dir.path(), "mallory", &run, &[]);
    refused(
        &o,
        dir.path(),
        &run,
        "not_an_approver",
        "`mallory` is not among the approvers (group:release)",
    );
    assert_eq!(events(dir.path(), &run, "approval_refused").len(), 2);
}

#[test]
fn a_rejection_is_authorized_too() {
    let (dir, run) = paused("approvers: [\"alice\"]", "dora");
    let o = as_user(
        dir.path(),
        "carol",
        &[
            "reject",
            &run,
            "gate",
            "--reason",
            "no",
            "--people",
            "people.yaml",
        ],
    );
    refused(
        &o,
        dir.path(),
        &run,
        "not_an_approver",
        "`carol` is not among the approvers (alice)",
    );
    assert_eq!(
        events(dir.path(), &run, "approval_refused")[0]["decision"],
        "rejected"
    );
}

#[test]
fn a_stale_input_hash_is_refused() {
    let (dir, run) = paused("", "dora");
    let hash = events(dir.path(), &run, "approval_requested")[0]["input_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let o = approve(dir.path(), "bob", &run, &["--input-hash", "0000"]);
    refused(
        &o,
        dir.path(),
        &run,
        "stale_input",
        &format!("the item was asked with input hash `{hash}`, not `0000`; look at it again"),
    );
    let o = approve(dir.path(), "bob", &run, &["--input-hash", &hash[..12]]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn a_decided_item_is_refused() {
    let (dir, run) = paused("", "dora");
    assert_eq!(approve(dir.path(), "bob", &run, &[]).status.code(), Some(0));
    let o = approve(dir.path(), "alice", &run, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        err(&o).trim_end(),
        format!(
            "error: refused: `gate` of run `{run}`: the item is already decided (approved by bob)"
        )
    );
    let refusals = events(dir.path(), &run, "approval_refused");
    assert_eq!(refusals[0]["code"], "not_pending");
    assert_eq!(refusals[0]["by"], "alice");
}

#[test]
fn a_cancelled_run_is_refused() {
    let (dir, run) = paused("", "dora");
    let o = as_user(dir.path(), "dora", &["cancel", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = approve(dir.path(), "bob", &run, &[]);
    refused(
        &o,
        dir.path(),
        &run,
        "run_ended",
        "the run is cancelled; its approvals can no longer be decided",
    );
}

#[test]
fn people_add_prints_a_token_once_and_stores_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let o = as_user(
        dir.path(),
        "root",
        &[
            "people",
            "add",
            "erin",
            "--group",
            "release",
            "--os-user",
            "erin",
            "--people",
            "p.yaml",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(token.len(), 43, "256 bits in base64url: {token}");
    let text = std::fs::read_to_string(dir.path().join("p.yaml")).unwrap();
    assert!(!text.contains(&token), "{text}");
    let hash = blake3::hash(token.as_bytes()).to_hex().to_string();
    assert!(text.contains(&hash), "{text}");
    let people = flowc::approvals::People::load(&dir.path().join("p.yaml")).unwrap();
    assert_eq!(people.people[0].groups, ["release"]);
    assert_eq!(people.people[0].os_user.as_deref(), Some("erin"));
}

fn resume(dir: &Path, run: &str) -> Output {
    as_user(dir, "dora", &["run", "--resume", run, "--no-input"])
}

/// The stored result of the `gate` step.
fn gate_result(dir: &Path, run: &str) -> Json {
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let nodes = journal.nodes(run).unwrap();
    nodes
        .into_iter()
        .find(|n| n.key == "gate")
        .unwrap()
        .result
        .unwrap()
}

fn approval_status(dir: &Path, run: &str) -> String {
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    journal.approvals(Some(run)).unwrap()[0].status.clone()
}

#[test]
fn required_two_needs_two_different_people() {
    let (dir, run) = paused("approvers: [\"group:release\"]\n    required: 2", "dora");
    let o = approve(dir.path(), "alice", &run, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        err(&o).trim_end(),
        "recorded approval 1 of 2; `gate` waits for 1 more"
    );
    assert_eq!(approval_status(dir.path(), &run), "pending");
    let o = approve(dir.path(), "alice", &run, &[]);
    refused(
        &o,
        dir.path(),
        &run,
        "twice",
        "`alice` approved this item already; 2 distinct approvers are required",
    );
    assert_eq!(approval_status(dir.path(), &run), "pending");
    let o = approve(dir.path(), "bob", &run, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(approval_status(dir.path(), &run), "approved");
    let o = resume(dir.path(), &run);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        gate_result(dir.path(), &run)["by"],
        serde_json::json!(["alice", "bob"])
    );
    // The projection is rebuilt from the events alone.
    let o = as_user(dir.path(), "dora", &["replay", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn one_rejection_rejects_a_quorum() {
    let (dir, run) = paused("approvers: [\"group:release\"]\n    required: 2", "dora");
    assert_eq!(
        approve(dir.path(), "alice", &run, &[]).status.code(),
        Some(0)
    );
    let o = as_user(
        dir.path(),
        "bob",
        &[
            "reject",
            &run,
            "gate",
            "--reason",
            "not today",
            "--people",
            "people.yaml",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(approval_status(dir.path(), &run), "rejected");
    let o = resume(dir.path(), &run);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        gate_result(dir.path(), &run)["by"],
        serde_json::json!(["bob"])
    );
}

#[test]
fn the_form_is_typed_and_kept_in_the_result() {
    let (dir, run) = paused("form: { reason: string, window: string? }", "dora");
    let o = approve(
        dir.path(),
        "bob",
        &run,
        &["--form", r#"{"reason": "tested"}"#],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = resume(dir.path(), &run);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        gate_result(dir.path(), &run)["form"],
        serde_json::json!({"reason": "tested"})
    );
}

#[test]
fn a_form_that_does_not_fit_is_refused_when_it_is_given() {
    let (dir, run) = paused("form: { reason: string }", "dora");
    let o = approve(dir.path(), "bob", &run, &["--form", r#"{"reason": 5}"#]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("the form's answers do not fit the type `{ reason: string }`"),
        "{}",
        err(&o)
    );
    assert!(
        events(dir.path(), &run, "approval_decided").is_empty(),
        "nothing is recorded for a form that does not fit"
    );
    let o = approve(dir.path(), "bob", &run, &["--form", "{}"]);
    assert_eq!(o.status.code(), Some(2), "a missing field: {}", err(&o));
    let o = approve(dir.path(), "bob", &run, &["--form", "[1]"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = approve(dir.path(), "bob", &run, &["--form", r#"{"reason": "ok"}"#]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = resume(dir.path(), &run);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn the_service_decides_a_parked_approval_by_its_default_when_the_timeout_passes() {
    use common::service::{Serve, ServeOpts, fixture, run_log, status, wait_status};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut serve = Serve::start(d, ServeOpts::default());
    let flow = fixture("approval_timeout.flow");
    let out = as_user(d, "dora", &["submit", flow.to_str().unwrap()]);
    assert!(out.status.success(), "{}", err(&out));
    let run = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let context = || format!("{}{}", serve.log(), run_log(d, &run));
    wait_status(d, &run, "paused", context);
    let started = events(d, &run, "run_started");
    assert_eq!(
        started[0]["initiator"], "dora",
        "a submitted run's initiator is its submitter"
    );
    let asked = events(d, &run, "approval_requested");
    assert_eq!(asked[0]["timeout_ms"], 2000);
    assert_eq!(asked[0]["default"], "reject");
    // Nobody answers: the service decides at the deadline and wakes the run,
    // which fails closed.
    wait_status(d, &run, "failed", context);
    let decided = events(d, &run, "approval_decided");
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["by"], "timeout");
    assert_eq!(decided[0]["decision"], "rejected");
    let journal = Journal::open_existing(&d.join(".flowc/journal.db")).unwrap();
    let at = |kind: &str| journal.events_of(&run, Some(kind)).unwrap()[0].at;
    let waited = at("approval_decided") - at("approval_requested");
    assert!(
        (2000..10_000).contains(&waited),
        "decided after {waited} ms"
    );
    assert_eq!(status(d, &run), "failed");
    assert!(
        serve.log().contains("approval.timed_out"),
        "{}",
        serve.log()
    );
    // Too late for a person: the item is decided.
    let o = approve(d, "bob", &run, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let o = as_user(d, "dora", &["replay", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    serve.stop();
}
