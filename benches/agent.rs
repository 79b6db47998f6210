//! Agent loop benchmark: `cargo bench --bench agent`.
//!
//! A scripted instant model (the `fake` provider) and an instant tool (a skill
//! with no steps, so a call is a child frame that ends at once), with the
//! release binary and a durable journal:
//!
//! - `turns`: N turns of one call each, against one turn of no call (the
//!   fixed cost of a run), so (T - T0) / N is the cost of one turn and its call;
//! - `calls`: one turn asking N calls at once, so (T - T0) / N is the cost of a
//!   call with its two journal events;
//! - `resume`: the run of `calls` killed (SIGKILL) once its N finished calls
//!   are journaled, then resumed; the resumed attempt journals how long it took
//!   to read the conversation back.
//!
//! Runs alternate (A B A B …); medians of `FLOWC_BENCH_ROUNDS` (default 5).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const FLOW: &str = r#"
model m { provider: "fake", script: "answers.yaml" }
policy p { max_steps: 100000, max_turns: 100000, max_tokens: 1_000_000_000_000 }
skill echo(n: int) -> int {
  description: "Give n back"
  effect: "read"
  return n
}
skill main() -> string {
  policy: p
  step work: agent {
    model: m
    prompt: "go"
    tools: [echo]
    max_turns: 100000
    max_tool_calls: 100000
    max_repeats: 100000
  }
  return work.text
}
"#;

/// An answers file: `turns` turns of `per_turn` calls, then an answer.
fn answers(turns: usize, per_turn: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for _ in 0..turns.min(if per_turn == 0 { 0 } else { turns }) {
        out.push_str("- step: work\n  tool_calls:\n");
        for _ in 0..per_turn {
            n += 1;
            out.push_str(&format!("    - {{ name: echo, args: {{ n: {n} }} }}\n"));
        }
    }
    out.push_str("- step: work\n  text: done\n");
    out
}

fn setup(dir: &Path, turns: usize, per_turn: usize) {
    std::fs::write(dir.join("agent.flow"), FLOW).unwrap();
    std::fs::write(dir.join("answers.yaml"), answers(turns, per_turn)).unwrap();
}

fn run(dir: &Path, args: &[&str], crash: Option<usize>) -> (Duration, bool) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(n) = crash {
        cmd.env("FLOWC_DEBUG_CRASH_AFTER_COMMITS", n.to_string());
    }
    let start = Instant::now();
    let ok = cmd.status().unwrap().success();
    (start.elapsed(), ok)
}

/// A fresh run of `turns` × `per_turn`: its wall time.
fn fresh(turns: usize, per_turn: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), turns, per_turn);
    let (t, ok) = run(dir.path(), &["run", "agent.flow"], None);
    assert!(ok, "the run failed");
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn per(total: Duration, base: Duration, n: usize) -> String {
    let us = (total.as_secs_f64() - base.as_secs_f64()) * 1e6 / n as f64;
    format!("{us:.1} µs")
}

fn journal_counts(dir: &Path) -> (usize, usize) {
    let j = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let run = j.runs().unwrap()[0].id.clone();
    let calls = j.events_of(&run, Some("tool_call_finished")).unwrap().len();
    let turns = j.events_of(&run, Some("llm_call")).unwrap().len();
    (turns, calls)
}

/// The resume case: a run whose second turn meets a server error (and waits
/// 60 s to ask again) is killed once its `n` calls are journaled, then resumed.
/// (The crash-after-commit hook is in debug builds only.)
fn resume(n: usize, rounds: usize) {
    let mut walls = Vec::new();
    let mut rebuilt = Vec::new();
    for _ in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path(), 1, n);
        let answers = answers(1, n).replace(
            "- step: work\n  text: done\n",
            "- step: work\n  error: { status: 503, retry_after: 60 }\n- step: work\n  text: done\n",
        );
        std::fs::write(dir.path().join("answers.yaml"), answers).unwrap();
        let mut child = Command::new(BIN)
            .args(["run", "agent.flow"])
            .current_dir(dir.path())
            .env_remove("FLOWC_JOURNAL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let db = dir.path().join(".flowc/journal.db");
            if db.exists()
                && let Ok(j) = flowc::journal::Journal::open_existing(&db)
                && let Ok(runs) = j.runs()
                && let Some(r) = runs.first()
                && j.events_of(&r.id, Some("llm_call")).map_or(0, |e| e.len()) == 2
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the run never reached its second turn"
            );
        }
        child.kill().unwrap();
        let _ = child.wait();
        let (turns, calls) = journal_counts(dir.path());
        assert_eq!((turns, calls), (2, n));
        let j =
            flowc::journal::Journal::open_existing(&dir.path().join(".flowc/journal.db")).unwrap();
        let id = j.runs().unwrap()[0].id.clone();
        drop(j);
        let (t, ok) = run(dir.path(), &["run", "--resume", &id], None);
        assert!(ok, "the resume failed");
        walls.push(t);
        let j =
            flowc::journal::Journal::open_existing(&dir.path().join(".flowc/journal.db")).unwrap();
        let us = j
            .events_of(&id, Some("note"))
            .unwrap()
            .iter()
            .find_map(|e| e.data["rebuilt_us"].as_u64())
            .unwrap_or(0);
        rebuilt.push(Duration::from_micros(us));
    }
    println!(
        "resume after {n} finished calls: conversation read back in {:.2?} (median), whole resume {:.2?}",
        median(rebuilt),
        median(walls)
    );
}

fn main() {
    let rounds = env_usize("FLOWC_BENCH_ROUNDS", 5);
    let turns = env_usize("FLOWC_BENCH_TURNS", 500);
    let calls = env_usize("FLOWC_BENCH_CALLS", 1000);
    let (mut t0, mut tt, mut tc) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        t0.push(fresh(1, 0));
        tt.push(fresh(turns, 1));
        tc.push(fresh(1, calls));
    }
    let (t0, tt, tc) = (median(t0), median(tt), median(tc));
    println!("one turn, no call (a run's fixed cost): {t0:.2?}");
    println!(
        "{turns} turns of one call: {tt:.2?}: {} per turn and its call",
        per(tt, t0, turns)
    );
    println!(
        "one turn of {calls} calls: {tc:.2?}: {} per call",
        per(tc, t0, calls)
    );
    resume(calls, rounds);
}
