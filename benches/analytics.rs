//! `flowc failures` and `flowc stats` over a large journal: `cargo bench --bench analytics`.
//!
//! Builds a journal of RUNS runs (default 10,000; `FLOWC_BENCH_RUNS`) of ten
//! steps, a tenth of whose attempts fail and are retried, about 100 events a
//! run (1,000,000 events at the default), through the journal's own append,
//! then times each query, best of 3. Issue 18's target: under 1 s each.
//! `FLOWC_BENCH_JOURNAL=PATH` writes the journal to PATH and keeps it.
#![allow(clippy::unwrap_used)]

use flowc::journal::{Durability, Journal, NewEvent};
use serde_json::json;
use std::time::Instant;

fn run_events(run: &str, i: usize) -> Vec<NewEvent> {
    let mut ev = vec![NewEvent::run(
        run,
        "run_started",
        json!({ "skill": format!("skill{}", i % 5), "file": "bench.flow", "inputs": {} }),
    )];
    for s in 0..10 {
        let key = format!("s{s}");
        ev.push(NewEvent::node(
            run,
            "node_added",
            &key,
            None,
            json!({ "name": key, "kind": "run" }),
        ));
        ev.push(NewEvent::node(
            run,
            "node_status",
            &key,
            None,
            json!({ "status": "ready" }),
        ));
        let fails = (i + s) % 10 == 0;
        let attempts = if fails { 2 } else { 1 };
        for a in 1..=attempts {
            ev.push(NewEvent::node(
                run,
                "node_status",
                &key,
                Some(a),
                json!({ "status": "running", "input_hash": "h" }),
            ));
            let bad = fails && a == 1;
            ev.push(NewEvent::node(
                run,
                "output",
                &key,
                Some(a),
                json!({ "exit_code": i32::from(bad), "outcome": "exit", "stdout": "", "stderr": if bad { format!("error: timeout after {}s in /tmp/w{i}", i % 60) } else { String::new() } }),
            ));
            if bad {
                ev.push(NewEvent::node(
                    run,
                    "node_status",
                    &key,
                    Some(a),
                    json!({ "status": "rejected", "error": "not accepted", "feedback": "exit 1" }),
                ));
                ev.push(NewEvent::node(
                    run,
                    "node_status",
                    &key,
                    Some(a),
                    json!({ "status": "retrying" }),
                ));
            } else {
                ev.push(NewEvent::node(
                    run,
                    "node_status",
                    &key,
                    Some(a),
                    json!({ "status": "succeeded", "result": {} }),
                ));
            }
        }
    }
    ev.push(NewEvent::run(
        run,
        "run_status",
        json!({ "status": "succeeded" }),
    ));
    ev
}

fn best<T>(f: impl Fn() -> T) -> (f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[0], last.unwrap())
}

fn main() {
    let runs: usize = std::env::var("FLOWC_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    // `FLOWC_BENCH_JOURNAL=PATH` keeps the journal there, to time the commands themselves.
    let path = std::env::var_os("FLOWC_BENCH_JOURNAL")
        .map_or_else(|| dir.path().join("journal.db"), std::path::PathBuf::from);
    let mut j = Journal::open(&path, Durability::Normal).unwrap();
    let t = Instant::now();
    let mut events = 0;
    for i in 0..runs {
        let ev = run_events(&format!("r{i:06}"), i);
        events += ev.len();
        j.append(&ev).unwrap();
    }
    println!(
        "journal: {runs} runs, {events} events, built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (secs, rows) = best(|| j.failures(0, None).unwrap());
    let (gsecs, groups) = best(|| flowc::analytics::group(&rows));
    println!("| query | rows | best of 3 |");
    println!("|---|---:|---:|");
    println!(
        "| `failures` (the journal query) | {} | {secs:.3} s |",
        rows.len()
    );
    println!(
        "| `failures` grouping | {} groups | {gsecs:.3} s |",
        groups.len()
    );
    let (s1, runs_rows) = best(|| j.run_rows(0, None).unwrap());
    let (s2, steps) = best(|| j.step_rows(0, None).unwrap());
    let (s3, llm) = best(|| j.step_llm(0, None).unwrap());
    let (s4, stats) = best(|| flowc::analytics::stats(&runs_rows, &steps, &llm, &rows));
    println!("| `stats`: runs | {} | {s1:.3} s |", runs_rows.len());
    println!("| `stats`: step instances | {} | {s2:.3} s |", steps.len());
    println!("| `stats`: model calls | {} | {s3:.3} s |", llm.len());
    println!("| `stats`: figures | {} skills | {s4:.3} s |", stats.len());
    println!("| `stats` total | | {:.3} s |", s1 + s2 + s3 + s4 + secs);
}
