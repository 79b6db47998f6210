//! `flowc failures` and `flowc stats`: a journal with known outcomes, grouped and counted as by hand.
#![allow(clippy::unwrap_used)]

mod common;

use common::{flowc, stderr};
use serde_json::Value;

const FAILING: &str = r#"skill main(n: int, kind: string) {
  step ex: run {
    command: "{% if kind == 'slow' %}echo timeout after {{ n }}s in /tmp/d{{ n }}x >&2{% else %}echo disk quota exceeded >&2{% endif %}; exit 3"
  }
}
"#;

const GATE: &str = r#"skill gated() {
  step gate: approval { prompt: "ship it?" }
  step ship: run { command: "true", after: [gate] }
}
"#;

fn groups(dir: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["failures", "--json"];
    args.extend_from_slice(extra);
    let out = flowc(dir, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn failures_group_by_step_class_and_normalised_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fail.flow"), FAILING).unwrap();
    std::fs::write(d.join("gate.flow"), GATE).unwrap();
    // Four timeouts with different numbers and paths, two quota errors.
    for n in 1..=4 {
        let n = n.to_string();
        let out = flowc(
            d,
            &[
                "run",
                "fail.flow",
                "-i",
                &format!("n={n}"),
                "-i",
                "kind=slow",
                "--no-input",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    for n in 5..=6 {
        let out = flowc(
            d,
            &[
                "run",
                "fail.flow",
                "-i",
                &format!("n={n}"),
                "-i",
                "kind=quota",
                "--no-input",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    // One rejected approval.
    let out = flowc(d, &["run", "gate.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let run = common::latest_run(d);
    let out = flowc(d, &["reject", &run, "gate", "--reason", "not on a Friday"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let all = groups(d, &[]);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0]["step"], "ex");
    assert_eq!(all[0]["class"], "exit_code");
    assert_eq!(all[0]["signature"], "timeout after <n>s in <path>");
    assert_eq!(all[0]["count"], 4);
    assert_eq!(all[0]["runs"].as_array().unwrap().len(), 4);
    assert_eq!(all[0]["latest"], "timeout after 4s in /tmp/d4x");
    assert_eq!(all[1]["signature"], "disk quota exceeded");
    assert_eq!(all[1]["count"], 2);
    assert_eq!(all[2]["step"], "gate");
    assert_eq!(all[2]["class"], "rejected_approval");
    assert_eq!(all[2]["latest"], "not on a Friday");

    let gated = groups(d, &["--skill", "gated"]);
    assert_eq!(gated.len(), 1);
    assert_eq!(groups(d, &["--since", "1h", "--limit", "1"]).len(), 1);

    let table = flowc(d, &["failures"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("main/ex"), "{text}");
    assert!(text.contains("in 4 runs"), "{text}");
    // The same journal in `flowc stats`.
    let out = flowc(d, &["stats", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let main = stats.iter().find(|s| s["skill"] == "main").unwrap();
    assert_eq!(main["runs"], 6);
    assert_eq!(main["failed"], 6);
    assert_eq!(main["success_rate"], 0.0);
    let ex = &main["steps"][0];
    assert_eq!(ex["step"], "ex");
    assert_eq!(ex["instances"], 6);
    assert_eq!(ex["failed"], 6);
    assert_eq!(ex["attempts"], 6);
    assert!(ex["attempts_per_success"].is_null());
    assert_eq!(ex["failures"]["exit code"], 6);
    let gated = stats.iter().find(|s| s["skill"] == "gated").unwrap();
    assert_eq!(gated["runs"], 1);
    assert!(
        gated["success_rate"].is_null(),
        "a paused run has not ended"
    );
    let table = flowc(d, &["stats", "--skill", "main"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("skill main: 6 runs, 0 succeeded, 6 failed (0% success)"),
        "{text}"
    );
    assert!(!text.contains("gated"), "{text}");

    let bad = flowc(d, &["failures", "--since", "lately"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("is not a duration"),
        "{}",
        stderr(&bad)
    );
}

/// A step whose first answer fails its `accept` and whose second passes.
const PLANNER: &str = r#"model m { provider: "fake", name: "m", script: "answers.yaml" }

type Plan { ok: bool }

skill plan() -> bool {
  step p: llm { model: m, prompt: "PROMPT for the plan", output: Plan, accept: output.ok, attempts: 3 }
  return p.output.ok
}
"#;

#[test]
fn prompt_versions_stand_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("answers.yaml"),
        "- step: p\n  attempt: 1\n  text: '{\"ok\": false}'\n- step: p\n  text: '{\"ok\": true}'\n",
    )
    .unwrap();
    // Version one: two runs, each failing its first attempt.
    std::fs::write(d.join("plan.flow"), PLANNER.replace("PROMPT", "Write")).unwrap();
    for _ in 0..2 {
        let out = flowc(d, &["run", "plan.flow", "--no-input"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Version two: the prompt was edited; one run. Its inputs are the same,
    // so only the text as written tells the versions apart.
    std::fs::write(
        d.join("plan.flow"),
        PLANNER.replace("PROMPT", "Carefully write"),
    )
    .unwrap();
    let out = flowc(d, &["run", "plan.flow", "--no-input"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = flowc(d, &["stats", "--prompts", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let (one, two) = (&rows[0], &rows[1]);
    assert_ne!(one["version"], two["version"]);
    assert_eq!(one["version"].as_str().unwrap().len(), 12);
    assert_eq!(
        (
            one["calls"].as_u64(),
            one["attempts"].as_u64(),
            one["succeeded"].as_u64()
        ),
        (Some(4), Some(4), Some(2))
    );
    assert_eq!(one["success_rate"].as_f64(), Some(0.5));
    assert_eq!(
        (
            two["calls"].as_u64(),
            two["attempts"].as_u64(),
            two["succeeded"].as_u64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert!(one["last_at"].as_i64() <= two["first_at"].as_i64());
    let table = flowc(d, &["stats", "--prompts"]);
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("plan/p") && text.contains("50%"), "{text}");
}
