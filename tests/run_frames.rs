//! Failures next to running child frames (`call`, `loop`, `for`): random small
//! graphs with random failures always end with the real cause, and `status`
//! leaves nothing running. Also the two reproductions of issue 11 as fixtures.
#![allow(clippy::unwrap_used)]

mod common;
use common::{flowc, latest_run, stderr};
use proptest::prelude::*;
use std::path::Path;

/// One top-level node of the generated `main` skill.
#[derive(Debug, Clone)]
enum Node {
    /// A `run` step: sleeps (tenths of a second), then exits 0 or fails.
    Run { sleep: u8, fails: bool },
    /// A `call` of the helper, whose one step sleeps then exits 0 or fails.
    Call { sleep: u8, fails: bool },
    /// A `loop` (max 2) whose inner step fails every time or passes.
    Loop { fails: bool },
    /// A `for` over two elements; the inner step fails for the second one or not.
    For { fails: bool },
}

impl Node {
    fn fails(&self) -> bool {
        match self {
            Node::Run { fails, .. }
            | Node::Call { fails, .. }
            | Node::Loop { fails }
            | Node::For { fails } => *fails,
        }
    }

    fn source(&self, i: usize) -> String {
        let code = |fails: bool| if fails { 3 } else { 0 };
        match self {
            Node::Run { sleep, fails } => format!(
                "  step n{i}: run {{ command: \"sleep 0.{sleep}; exit {}\" }}\n",
                code(*fails)
            ),
            Node::Call { sleep, fails } => format!(
                "  step n{i}: call helper {{ with {{ nap: \"0.{sleep}\", code: {} }} }}\n",
                code(*fails)
            ),
            Node::Loop { fails } => format!(
                "  loop n{i} {{\n    max: 2\n    step l{i}: run {{ command: \"sleep 0.1; exit {}\" }}\n  }}\n",
                code(*fails)
            ),
            Node::For { fails } => format!(
                "  for x{i} in [\"a\", \"b\"] {{\n    step f{i}: run {{ command: \"sleep 0.1; test {{{{ x{i} }}}} = a || exit {}\" }}\n  }}\n",
                code(*fails)
            ),
        }
    }

    /// The top-level key the run's error names when this node fails.
    fn key(&self, i: usize) -> String {
        match self {
            Node::For { .. } => format!("for_x{i}"),
            _ => format!("n{i}"),
        }
    }
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(sleep, fails)| Node::Run { sleep, fails }),
        (0u8..4, any::<bool>()).prop_map(|(sleep, fails)| Node::Call { sleep, fails }),
        any::<bool>().prop_map(|fails| Node::Loop { fails }),
        any::<bool>().prop_map(|fails| Node::For { fails }),
    ]
}

fn flow(nodes: &[Node]) -> String {
    let mut s = String::from(
        "skill helper(nap: string, code: int) -> { ok: bool } {\n  step work: run { command: \"sleep {{ nap }}; exit {{ code }}\" }\n  return { ok: work.exit_code == 0 }\n}\n\nskill main() {\n",
    );
    for (i, n) in nodes.iter().enumerate() {
        s.push_str(&n.source(i));
    }
    s.push_str("}\n");
    s
}

const TERMINAL: &[&str] = &["succeeded", "failed", "skipped", "cancelled"];

/// Runs `main` of `src` in `dir`; returns the exit code, stderr and the status JSON.
fn run(dir: &Path, src: &str) -> (Option<i32>, String, serde_json::Value) {
    std::fs::write(dir.join("g.flow"), src).unwrap();
    let out = flowc(dir, &["run", "g.flow", "--no-input"]);
    let id = latest_run(dir);
    let status = flowc(dir, &["status", &id, "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let json = serde_json::from_slice(&status.stdout).unwrap();
    (out.status.code(), stderr(&out), json)
}

fn check_consistent(src: &str, status: &serde_json::Value) {
    for node in status["nodes"].as_array().unwrap() {
        let s = node["status"].as_str().unwrap();
        assert!(
            TERMINAL.contains(&s),
            "node `{}` left `{s}` after the run ended\n{src}",
            node["key"]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_failure_beside_child_frames_ends_with_its_cause(nodes in prop::collection::vec(node(), 2..5)) {
        let dir = tempfile::tempdir().unwrap();
        let src = flow(&nodes);
        let (code, err, status) = run(dir.path(), &src);
        prop_assert!(!err.contains("stalled"), "{src}\n{err}");
        prop_assert!(!err.contains("flowc bug"), "{src}\n{err}");
        check_consistent(&src, &status);
        let failing: Vec<String> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.fails())
            .map(|(i, n)| n.key(i))
            .collect();
        if failing.is_empty() {
            prop_assert_eq!(code, Some(0), "{}\n{}", src, err);
            prop_assert_eq!(status["run"]["status"].as_str(), Some("succeeded"));
        } else {
            prop_assert_eq!(code, Some(1), "{}\n{}", src, err);
            prop_assert_eq!(status["run"]["status"].as_str(), Some("failed"));
            let error = status["run"]["error"].as_str().unwrap_or_default().to_string();
            prop_assert!(
                failing.iter().any(|k| error.starts_with(&format!("step `{k}` failed"))),
                "the run's error names no failing node ({:?}): {}\n{}", failing, error, src
            );
        }
    }
}

#[test]
fn a_failing_step_next_to_a_call_reports_its_own_failure() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string("tests/fixtures/frames/fail_beside_call.flow").unwrap();
    let (code, err, status) = run(dir.path(), &src);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        status["run"]["error"]
            .as_str()
            .unwrap()
            .starts_with("step `fails` failed"),
        "{status}"
    );
    check_consistent(&src, &status);
    let sub = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "sub")
        .unwrap();
    assert_eq!(sub["status"], "cancelled");
}

#[test]
fn two_calls_with_accept_report_the_rejected_one() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string("tests/fixtures/frames/two_calls_accept.flow").unwrap();
    let (code, err, status) = run(dir.path(), &src);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        status["run"]["error"]
            .as_str()
            .unwrap()
            .starts_with("step `a` failed: `accept: ok` did not hold"),
        "{status}"
    );
    check_consistent(&src, &status);
}

#[test]
fn durations_after_a_crash_leave_out_the_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("c.flow"),
        "skill main() {\n  step a: run { command: \"sleep 0.5\" }\n}\n",
    )
    .unwrap();
    // Dies right after its first commit (`a` running), like a SIGKILL.
    let out = std::process::Command::new(common::BIN)
        .args(["run", "c.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env("FLOWC_DEBUG_CRASH_AFTER_COMMITS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let id = latest_run(d);
    let listed = |d: &Path| {
        let out = flowc(d, &["runs", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v[0]["shown_status"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            v[0]["duration_ms"].as_i64().unwrap(),
        )
    };
    let (status, before) = listed(d);
    assert_eq!(status, "stopped");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (_, later) = listed(d);
    assert_eq!(before, later, "a stopped run's duration grew");
    let out = flowc(d, &["run", "--resume", &id, "--no-input"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = flowc(d, &["status", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let a = &v["nodes"][0];
    let log = flowc(d, &["log", &id, "a"]);
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(
        log.contains("running (attempt 1 again, after an interruption)"),
        "{log}"
    );
    let text = String::from_utf8_lossy(&flowc(d, &["status", &id]).stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap()
        .to_string();
    let ms: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_suffix("ms").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        ms < 2000,
        "`a` took {ms} ms, counting the downtime: {line} ({a})"
    );
    let (_, total) = listed(d);
    assert!(
        total < 2000,
        "the run took {total} ms, counting the downtime"
    );
}
