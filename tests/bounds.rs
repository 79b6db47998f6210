//! `flowc check --bounds`: worst cases added up from the limits written in a flow.
#![allow(clippy::unwrap_used)]

mod common;

use serde_json::Value;

fn bounds(file: &str) -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = common::flowc(dir, &["check", file, "--bounds", "--format", "json"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["bounds"].as_array().unwrap().clone()
}

#[test]
fn bounds_add_up_attempts_calls_tokens_cost_and_the_longest_path() {
    let rows = bounds("tests/fixtures/bounds/mixed.flow");
    let main = rows.iter().find(|r| r["skill"] == "main").unwrap();
    let b = &main["bounds"];
    // a: 3; loop l: 2 × (b: 2 + b2: 1); for: 3 × c; d: 1 + helper's 2; g: 1.
    assert_eq!(b["attempts"], 16);
    // b: 2 attempts in each of 2 iterations, 100 tokens each at $2 per million.
    assert_eq!(b["llm_calls"], 4);
    assert_eq!(b["output_tokens"], 400);
    assert!((b["output_cost_usd"].as_f64().unwrap() - 0.0008).abs() < 1e-12);
    // a (3 × 10 s + 1 s + 2 s of backoff) → l (2 × (2 × 5 s + 1 m)) → d
    // (helper's 2 m, cut to d's 1 m timeout) → g: 33 + 140 + 60 = 233 s.
    // The `for` (2 rounds of 5 s) runs beside `l` and is shorter.
    assert_eq!(b["wall_ms"], 233_000);
    assert_eq!(b["person_ms"], 3_600_000);
    let warnings: Vec<&str> = main["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("longer than `run_timeout` (2m)"),
        "{warnings:?}"
    );
    let helper = rows.iter().find(|r| r["skill"] == "helper").unwrap();
    assert_eq!(helper["bounds"]["attempts"], 2);
}

#[test]
fn a_for_over_a_list_only_the_run_knows_is_unbounded_and_says_what_bounds_it() {
    let rows = bounds("workflows/lint_files.flow");
    let b = &rows[0]["bounds"];
    assert!(b["attempts"].is_null(), "{b}");
    assert!(b["wall_ms"].is_null(), "{b}");
    // Steps without a model add no model calls, however often they run.
    assert_eq!(b["llm_calls"], 0);
    let warnings = rows[0]["warnings"].to_string();
    assert!(warnings.contains("`max_steps` (5000)"), "{warnings}");
}
