//! Policies at run time: a forbidden step never starts, caps stop the run
//! fail-closed, and every violation is journaled and shown by `flowc status`.
#![allow(clippy::unwrap_used)]

use serde_json::Value as Json;
use std::path::Path;
use std::process::Output;

mod common;
use common::{flowc, latest_run, stderr};

fn run_flow(dir: &Path, text: &str) -> (Output, Json) {
    std::fs::write(dir.join("p.flow"), text).unwrap();
    let out = flowc(dir, &["run", "p.flow"]);
    let journal = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let id = journal.runs().unwrap()[0].id.clone();
    let status = flowc(dir, &["status", &id, "--json"]);
    assert!(status.status.success());
    (out, serde_json::from_slice(&status.stdout).unwrap())
}

#[test]
fn a_forbidden_command_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (out, status) = run_flow(
        dir.path(),
        r#"
policy guarded {
  forbid: step.kind == "run" && step.command.contains("rm -rf")
}
skill main() {
  policy: guarded
  step first: run { command: "true" }
  step danger: run { command: "touch marker; rm -rf ./nothing", after: [first] }
}
"#,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !dir.path().join("marker").exists(),
        "the forbidden step ran"
    );
    assert!(
        stderr(&out).contains("refused by `forbid` of policy `guarded`"),
        "{}",
        stderr(&out)
    );
    let v = &status["violations"][0];
    assert_eq!(v["rule"], "forbid");
    assert_eq!(v["node"], "danger");
    assert_eq!(v["policy"], "guarded");
    let text = flowc(
        dir.path(),
        &["status", status["run"]["id"].as_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&text.stdout).contains("policy violation: `forbid`"));
}

#[test]
fn max_steps_stops_a_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let (out, status) = run_flow(
        dir.path(),
        r#"
policy small {
  max_steps: 5
  max_parallel: 1
}
skill main(n: int = 20) {
  policy: small
  for i in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] {
    step work: run { command: "echo {{ i }} >> effects" }
  }
}
"#,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let effects = std::fs::read_to_string(dir.path().join("effects")).unwrap();
    assert_eq!(effects.lines().count(), 5, "{effects}");
    assert!(stderr(&out).contains("cap `max_steps` (5) of policy `small` reached"));
    let v = &status["violations"][0];
    assert_eq!(v["rule"], "max_steps");
    assert_eq!(v["value"], 5);
    assert_eq!(status["run"]["status"], "failed");
}

#[test]
fn run_timeout_stops_the_run_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (out, status) = run_flow(
        dir.path(),
        r#"
policy quick {
  run_timeout: 1s
  step_timeout: 1s
}
skill main() {
  policy: quick
  step a: run { command: "sleep 0.7" }
  step b: run { command: "sleep 0.7; touch b_done", after: [a] }
}
"#,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 5, "the run was not stopped");
    assert!(!dir.path().join("b_done").exists());
    let v = &status["violations"][0];
    assert_eq!(v["rule"], "run_timeout", "{status}");
    assert_eq!(v["value"], "1s");
    assert!(v["node"].is_null());
}

#[test]
fn max_steps_counts_the_attempts_of_earlier_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.flow"),
        r#"
policy small {
  max_steps: 3
}
skill main() {
  policy: small
  step a: run { command: "echo a >> effects" }
  step b: run { command: "echo b >> effects", after: [a] }
  step gate: approval { prompt: "go on?", after: [b] }
  step c: run { command: "echo c >> effects", after: [gate] }
  step e: run { command: "echo e >> effects", after: [c] }
}
"#,
    )
    .unwrap();
    let out = flowc(d, &["run", "p.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let id = latest_run(d);
    assert!(flowc(d, &["approve", &id, "gate"]).status.success());
    let out = flowc(d, &["run", "--resume", &id, "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cap `max_steps` (3)"),
        "{}",
        stderr(&out)
    );
    let effects = std::fs::read_to_string(d.join("effects")).unwrap();
    assert_eq!(effects, "a\nb\nc\n");
}

#[test]
fn a_skip_result_that_does_not_fit_the_type_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.flow"),
        "skill main() -> string {\n  step broken: run { command: \"exit 3\", on_failure: escalate }\n  step next: run { command: \"echo {{ broken.stdout | default('') }} > next_ran\" }\n  return next.stdout\n}\n",
    )
    .unwrap();
    assert_eq!(
        flowc(d, &["run", "p.flow", "--no-input"]).status.code(),
        Some(75)
    );
    let id = latest_run(d);
    let skip = flowc(
        d,
        &[
            "skip",
            &id,
            "broken",
            "--output",
            r#"{"exit_code": "zero"}"#,
        ],
    );
    assert!(skip.status.success());
    let out = flowc(d, &["run", "--resume", &id, "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not fit the step's result type"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("$.exit_code should be int"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("next_ran").exists());
}

#[test]
fn a_called_skills_own_policy_still_forbids() {
    let dir = tempfile::tempdir().unwrap();
    let (out, status) = run_flow(
        dir.path(),
        r#"
policy loose {
  max_steps: 100
}
policy tight {
  forbid: step.kind == "run" && step.command.contains("marker")
}
skill cleanup() {
  policy: tight
  step wipe: run { command: "touch marker" }
}
skill main() {
  policy: loose
  step first: run { command: "touch allowed" }
  step c: call cleanup { after: [first] }
}
"#,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(dir.path().join("allowed").exists());
    assert!(
        !dir.path().join("marker").exists(),
        "the callee's forbid was ignored"
    );
    assert_eq!(status["violations"][0]["policy"], "tight");
    assert_eq!(status["violations"][0]["node"], "c/wipe");
}

#[test]
fn run_timeout_counts_the_time_of_earlier_sessions_but_not_the_pause() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("p.flow"),
        r#"
policy quick {
  run_timeout: 2s
  step_timeout: 2s
}
skill main() {
  policy: quick
  step a: run { command: "sleep 1.2" }
  step gate: approval { prompt: "go on?", after: [a] }
  step b: run { command: "sleep 1.2; touch b_done", after: [gate] }
}
"#,
    )
    .unwrap();
    assert_eq!(
        flowc(d, &["run", "p.flow", "--no-input"]).status.code(),
        Some(75)
    );
    let id = latest_run(d);
    // The pause itself does not count: wait longer than the whole cap.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(flowc(d, &["approve", &id, "gate"]).status.success());
    // About 0.8 s are left of the 2 s, and `b` needs 1.2 s: without the first
    // session's time it would finish.
    let out = flowc(d, &["run", "--resume", &id, "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cap `run_timeout` (2s)"),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("b_done").exists());
}

/// Most attempts under `prefix` running at once, from the journal's status changes.
fn most_at_once(dir: &Path, prefix: &str) -> usize {
    let journal = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let id = journal.runs().unwrap()[0].id.clone();
    let (mut now, mut most) = (0usize, 0usize);
    for e in journal.events(&id).unwrap() {
        if e.kind != "node_status" || !e.node.as_deref().unwrap_or("").starts_with(prefix) {
            continue;
        }
        match e.data["status"].as_str().unwrap_or_default() {
            "running" => now += 1,
            "succeeded" | "failed" => now = now.saturating_sub(1),
            _ => {}
        }
        most = most.max(now);
    }
    most
}

#[test]
fn an_extended_policy_overrides_its_fields_and_keeps_the_bases_rules() {
    let flow = |last: &str| {
        format!(
            r#"
import "std/policy.flow"

policy wide: policy.careful {{
  max_parallel: 3
  forbid: step.command.contains("refused-by-wide")
}}

skill main() {{
  policy: wide
  for each in [1, 2, 3, 4, 5, 6, 7, 8] {{
    step work: run {{ command: "sleep 0.2; echo {{{{ each }}}}" }}
  }}
  step last: run {{ after: [work], command: "touch marker; {last}" }}
}}
"#
        )
    };
    // careful's own `forbid` (privilege escalation) still refuses under `wide`.
    let dir = tempfile::tempdir().unwrap();
    let (out, status) = run_flow(dir.path(), &flow("sudo true"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !dir.path().join("marker").exists(),
        "the forbidden step ran"
    );
    assert!(
        stderr(&out).contains("refused by `forbid` of policy `wide`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(status["violations"][0]["node"], "last");
    // The overridden cap applies: careful alone runs four at a time.
    assert_eq!(most_at_once(dir.path(), "for_each["), 3);
    // The rule `wide` adds refuses too.
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_flow(dir.path(), &flow("echo refused-by-wide"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !dir.path().join("marker").exists(),
        "the forbidden step ran"
    );
    // And a step neither forbids runs.
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_flow(dir.path(), &flow("echo fine"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(dir.path().join("marker").exists());
}

/// Runs one `run` step under `policy.careful` with `--no-input`; returns the
/// output and whether the step's marker file exists.
fn under_careful(step: &str) -> (Output, bool, Json) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = format!(
        "import \"std/policy.flow\"\nskill main() {{\n  policy: policy.careful\n  step s: run {{ {step} }}\n}}\n"
    );
    std::fs::write(d.join("p.flow"), text).unwrap();
    let out = flowc(d, &["run", "p.flow", "--no-input"]);
    let approvals = flowc(d, &["approvals", "--json"]);
    let approvals = serde_json::from_slice(&approvals.stdout).unwrap_or(Json::Null);
    (out, d.join("marker").exists(), approvals)
}

#[test]
fn shell_evasions_of_git_push_still_need_approval_under_careful() {
    let cases = [
        ("tab", r#"command: "touch marker && git\tpush""#),
        ("-C .", r#"command: "touch marker && git -C . push""#),
        ("-c k=v", r#"command: "touch marker && git -c k=v push""#),
        ("quotes", r#"command: "touch marker && g\"i\"t push""#),
        ("variable", r#"command: "touch marker; G=git; $G push""#),
        (
            "substitution",
            r#"command: "touch marker; $(printf git) push""#,
        ),
        (
            "backslash-newline",
            r#"command: "touch marker && git \\\npush""#,
        ),
        (
            "stdin script",
            r#"command: "sh", stdin: "touch marker; git push""#,
        ),
        (
            "argv shell",
            r#"argv: ["sh"], stdin: "touch marker; git push""#,
        ),
        ("sh -c", r#"command: "sh -c 'touch marker; git push'""#),
        (
            "wrapper",
            r#"command: "touch marker && env X=1 timeout 5 /usr/bin/git push""#,
        ),
    ];
    for (what, step) in cases {
        let (out, ran, approvals) = under_careful(step);
        assert_eq!(out.status.code(), Some(75), "{what}: {}", stderr(&out));
        assert!(!ran, "{what}: the command ran");
        let text = approvals.to_string();
        assert!(
            text.contains("policy `careful` requires approval"),
            "{what}: {text}"
        );
    }
}

#[test]
fn an_opaque_command_says_why_it_needs_approval() {
    let (out, ran, approvals) = under_careful(r#"command: "touch marker; $(printf git) push""#);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(!ran);
    assert!(
        approvals.to_string().contains(
            "flowc cannot tell what it runs: the command name `$(printf git)` is not a static word"
        ),
        "{approvals}"
    );
}

#[test]
fn a_plain_git_status_runs_under_careful() {
    let (out, ran, _) = under_careful(r#"command: "touch marker && (git status || true)""#);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ran, "the step did not run");
}

#[test]
fn every_regex_of_the_standard_policies_compiles() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib/std/policy.flow"),
    )
    .unwrap();
    let mut count = 0;
    for part in text.split(".matches(\"").skip(1) {
        let pattern = part.split("\")").next().unwrap();
        // The .flow string escapes these patterns use.
        let pattern = pattern.replace("\\n", "\n").replace("\\\\", "\\");
        regex::Regex::new(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        count += 1;
    }
    assert!(count > 30, "{count}");
}
