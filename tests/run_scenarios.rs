//! Run scenarios: each `tests/fixtures/run/*.flow` lists commands in `# do:` lines
//! (`run`, `resume`, `approve STEP`, `reject STEP REASON`, `retry STEP`,
//! `skip STEP [JSON]`, each with `-> EXIT`). The harness runs them with the built
//! binary in a scratch directory, then snapshots the journal's event trace (ids,
//! times, hashes and durations left out) and checks `flowc replay` verifies.
#![allow(clippy::unwrap_used)]

use flowc::journal::{Event, Journal};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");

struct Scenario {
    dir: tempfile::TempDir,
    flow: PathBuf,
}

impl Scenario {
    fn new(flow: &Path) -> Scenario {
        Scenario {
            dir: tempfile::tempdir().unwrap(),
            flow: flow.to_path_buf(),
        }
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join(".flowc/journal.db")
    }

    fn flowc(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("FLOWC_JOURNAL")
            .env("USER", "tester")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn run_id(&self) -> String {
        let j = Journal::open_existing(&self.journal()).unwrap();
        j.runs().unwrap()[0].id.clone()
    }

    /// Runs one `# do:` line; returns a transcript line.
    fn step(&self, line: &str) -> String {
        let (cmd, want) = line.rsplit_once("->").unwrap();
        let want: i32 = want.trim().parse().unwrap();
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let flow = self.flow.to_str().unwrap();
        let (code, stdout, stderr) = match words.as_slice() {
            ["run", rest @ ..] => {
                let mut args = vec!["run", flow];
                args.extend(rest);
                self.flowc(&args)
            }
            ["resume"] => self.flowc(&["run", "--resume"]),
            ["approve", step] => {
                self.flowc(&["approve", &self.run_id(), step, "--comment", "fine"])
            }
            ["reject", step, reason] => {
                self.flowc(&["reject", &self.run_id(), step, "--reason", reason])
            }
            ["retry", step] => self.flowc(&["retry", &self.run_id(), step]),
            ["skip", step] => self.flowc(&["skip", &self.run_id(), step]),
            ["skip", step, json @ ..] => {
                let json = json.join(" ");
                self.flowc(&["skip", &self.run_id(), step, "--output", &json])
            }
            other => panic!("unknown scenario command {other:?}"),
        };
        assert_eq!(
            code, want,
            "`{cmd}` exited {code}, expected {want}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let mut t = format!("$ {} -> {code}\n", cmd.trim());
        if !stdout.trim().is_empty() && words[0] != "approve" {
            let _ = writeln!(t, "{}", stdout.trim_end());
        }
        t
    }
}

/// One line per event, without times, ids, hashes or durations.
fn trace(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        let node = e.node.as_deref().unwrap_or("");
        let attempt = e.attempt.map(|a| format!(" #{a}")).unwrap_or_default();
        let d = &e.data;
        let detail = match e.kind.as_str() {
            "node_status" => {
                let mut s = d["status"].as_str().unwrap_or_default().to_string();
                // A folded start (version 6): added, then this status.
                if d.get("added").is_some() {
                    s.insert_str(0, "added→");
                }
                // A folded end: the attempt's output, then this status.
                if let Some(log) = d.get("log") {
                    let _ = write!(
                        s,
                        " log(exit={} stdout={:?})",
                        log["exit_code"],
                        log["stdout"].as_str().unwrap_or_default().trim()
                    );
                }
                for k in ["error", "feedback"] {
                    if let Some(v) = d[k].as_str() {
                        let _ = write!(s, " {k}={:?}", v.lines().next().unwrap_or_default());
                    }
                }
                if let Some(r) = d.get("result").filter(|r| !r.is_null()) {
                    let mut r = r.clone();
                    if let Some(m) = r.as_object_mut() {
                        m.remove("duration");
                    }
                    let _ = write!(s, " result={r}");
                }
                if let Some(data) = d.get("data").filter(|x| !x.is_null()) {
                    let mut data = data.clone();
                    if let Some(m) = data.as_object_mut() {
                        m.remove("deadline");
                    }
                    let _ = write!(s, " data={data}");
                }
                s
            }
            "output" => format!(
                "exit={} stdout={:?}",
                d["exit_code"],
                d["stdout"].as_str().unwrap_or_default().trim()
            ),
            "run_started" => format!("skill={} inputs={}", d["skill"], d["inputs"]),
            "run_status" => {
                let mut s = d["status"].as_str().unwrap_or_default().to_string();
                if !d["output"].is_null() {
                    let _ = write!(s, " output={}", d["output"]);
                }
                if let Some(err) = d["error"].as_str() {
                    let _ = write!(s, " error={err:?}");
                }
                s
            }
            "approval_requested" => format!(
                "kind={} prompt={:?}",
                d["kind"],
                d["prompt"].as_str().unwrap_or_default()
            ),
            "approval_decided" => format!(
                "decision={} by={} comment={}",
                d["decision"], d["by"], d["comment"]
            ),
            _ => d.to_string(),
        };
        let _ = writeln!(out, "{:<18} {node}{attempt} {detail}", e.kind);
    }
    out
}

#[test]
fn scenarios() {
    insta::glob!("fixtures/run/*.flow", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let s = Scenario::new(path);
        let mut transcript = String::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# do:")) {
            transcript.push_str(&s.step(line.trim()));
        }
        let journal = Journal::open_existing(&s.journal()).unwrap();
        journal.integrity_check().unwrap();
        let run = s.run_id();
        let diffs = journal.replay(&run).unwrap();
        assert!(diffs.is_empty(), "replay differs: {diffs:?}");
        let events = journal.events(&run).unwrap();
        // Fan-out order depends on timing; sort instance lines for a stable trace.
        let mut body = trace(&events);
        if text.contains("parallel:") {
            let mut lines: Vec<&str> = body.lines().collect();
            lines.sort_unstable();
            body = lines.join("\n");
        }
        insta::assert_snapshot!(format!("{transcript}\n--- events\n{body}"));
    });
}

fn max_concurrency(events: &[Event], prefix: &str) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for e in events.iter().filter(|e| {
        e.kind == "node_status" && e.node.as_deref().is_some_and(|n| n.starts_with(prefix))
    }) {
        match e.data["status"].as_str().unwrap_or_default() {
            "running" => now += 1,
            "succeeded" | "failed" | "rejected" | "cancelled" | "interrupted" => {
                now = now.saturating_sub(1)
            }
            _ => {}
        }
        max = max.max(now);
    }
    max
}

#[test]
fn fan_out_never_exceeds_parallel() {
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run/fan_out.flow");
    let s = Scenario::new(&flow);
    let (code, stdout, stderr) = s.flowc(&["run", flow.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        (1..=50).map(|n| n * n).sum::<i64>().to_string()
    );
    let journal = Journal::open_existing(&s.journal()).unwrap();
    let events = journal.events(&s.run_id()).unwrap();
    let max = max_concurrency(&events, "for_n[");
    assert!(
        max <= 4,
        "{max} element steps ran at once, more than `parallel: 4`"
    );
    assert!(max >= 2, "the fan-out never ran in parallel (max {max})");
    // Timestamps agree: no instant has more than 4 element steps between running and done.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.kind == "node_status" && e.data["status"] == "running")
    {
        let key = e.node.clone().unwrap();
        if !key.starts_with("for_n[") {
            continue;
        }
        let end = events
            .iter()
            .find(|x| {
                x.seq > e.seq && x.node.as_deref() == Some(&key) && x.data["status"] == "succeeded"
            })
            .unwrap();
        spans.push((e.at, end.at));
    }
    assert_eq!(spans.len(), 50);
    for &(start, _) in &spans {
        let overlapping = spans
            .iter()
            .filter(|(s, f)| *s <= start && start < *f)
            .count();
        assert!(
            overlapping <= 4,
            "{overlapping} element steps overlap at {start}"
        );
    }
}

#[test]
fn a_resumed_finished_run_reuses_everything() {
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run/call.flow");
    let s = Scenario::new(&flow);
    assert_eq!(s.flowc(&["run", flow.to_str().unwrap()]).0, 0);
    let run = s.run_id();
    let (code, stdout, stderr) = s.flowc(&["run", "--resume", &run, "--explain"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "84");
    assert!(stderr.contains("= first reused"), "{stderr}");
    assert!(stderr.contains("0 step attempts, 2 reused"), "{stderr}");
}

#[test]
fn small_scripts_run_inline_and_large_ones_move_to_a_thread_printing_once() {
    // `small` fits the inline operation budget; `big` does not, so it is
    // stopped inline and run again on a blocking thread: its print must
    // appear once, and both results must be right.
    let s = Scenario::new(Path::new("inline.flow"));
    std::fs::write(
        s.dir.path().join("inline.flow"),
        "skill main() -> int {\n  step small: script { code: \"print(\\\"small ran\\\"); 41\", output: int }\n  step big: script { code: \"let n = 0; for i in 0..20000 { n += 1 } print(\\\"big ran\\\"); n + small - 41\", output: int }\n  return big\n}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = s.flowc(&["run", "inline.flow", "--no-input"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "small ran\nbig ran\n20000\n", "{stderr}");
}
