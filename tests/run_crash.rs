//! Crash and resume: flowc is killed after its Nth journal commit (a debug-only
//! hook, `FLOWC_DEBUG_CRASH_AFTER_COMMITS`), for N = 1, 2, … until a run
//! completes, and resumed each time. Also: editing a step re-runs exactly it
//! and its downstream, and journal trouble gives clear errors.
#![allow(clippy::unwrap_used)]

use flowc::journal::Journal;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");
const STEPS: &[&str] = &["a", "b", "d", "e-p", "e-q", "e-r", "f", "g"];

fn chain() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resume/chain.flow")
}

fn flowc(dir: &Path, args: &[&str], crash_after: Option<u32>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_DEBUG_CRASH_AFTER_COMMITS")
        .stdin(Stdio::null());
    if let Some(n) = crash_after {
        cmd.env("FLOWC_DEBUG_CRASH_AFTER_COMMITS", n.to_string());
    }
    cmd.output().unwrap()
}

fn effects(dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(dir.join("effects"))
        .unwrap_or_default()
        .lines()
    {
        *counts.entry(line.to_string()).or_default() += 1;
    }
    counts
}

/// The journal is sound, verifies, and no step that had succeeded ran again.
fn check_journal(dir: &Path, strict: bool) -> String {
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    journal.integrity_check().unwrap();
    let run = journal.runs().unwrap()[0].id.clone();
    assert!(journal.replay(&run).unwrap().is_empty(), "replay differs");
    let mut succeeded: HashMap<String, i64> = HashMap::new();
    for e in journal.events(&run).unwrap() {
        let (Some(node), Some(status)) = (e.node.clone(), e.data["status"].as_str()) else {
            continue;
        };
        if status == "running" && strict {
            assert!(
                !succeeded.contains_key(&node),
                "`{node}` ran again after it had succeeded"
            );
        }
        if status == "succeeded" {
            succeeded.insert(node, e.seq);
        }
    }
    run
}

/// The id of the newest run in `dir`'s journal.
fn latest_run(dir: &Path) -> String {
    let journal = Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    journal.runs().unwrap()[0].id.clone()
}

fn uninterrupted_output() -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = flowc(dir.path(), &["run", chain().to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn killed_after_every_commit_then_resumed() {
    let expected = uninterrupted_output();
    let mut n = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let out = flowc(dir.path(), &["run", chain().to_str().unwrap()], Some(n));
        if out.status.success() {
            // The run needs fewer than n commits: every crash point was covered.
            // About 9 to 11 (ends that arrive together share a commit).
            assert!(n > 7, "the run finished after only {n} commits");
            assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
            break;
        }
        assert_eq!(
            out.status.code(),
            None,
            "N={n}: flowc should have been killed by the crash hook"
        );
        let run = latest_run(dir.path());
        let resumed = flowc(dir.path(), &["run", "--resume", &run], None);
        assert!(
            resumed.status.success(),
            "N={n}: resume failed: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            String::from_utf8(resumed.stdout).unwrap(),
            expected,
            "N={n}: output differs"
        );
        let counts = effects(dir.path());
        for step in STEPS {
            let c = counts.get(*step).copied().unwrap_or(0);
            assert!(
                (1..=2).contains(&c),
                "N={n}: side effect of `{step}` happened {c} times"
            );
        }
        check_journal(dir.path(), true);
        n += 1;
    }
}

#[test]
fn killed_repeatedly_until_done() {
    let expected = uninterrupted_output();
    let dir = tempfile::tempdir().unwrap();
    let mut out = flowc(dir.path(), &["run", chain().to_str().unwrap()], Some(3));
    let mut kills = 0;
    while !out.status.success() {
        assert_eq!(
            out.status.code(),
            None,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        kills += 1;
        assert!(kills < 100, "no progress after 100 kills");
        let run = latest_run(dir.path());
        out = flowc(dir.path(), &["run", "--resume", &run], Some(3));
    }
    assert!(kills >= 3, "expected several kills, got {kills}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    for (step, c) in effects(dir.path()) {
        assert!(
            c >= 1 && c <= 1 + kills,
            "`{step}` ran {c} times with {kills} kills"
        );
    }
    check_journal(dir.path(), true);
}

#[test]
fn editing_a_step_reruns_it_and_its_downstream_only() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("chain.flow");
    std::fs::copy(chain(), &flow).unwrap();
    let out = flowc(dir.path(), &["run", "chain.flow"], None);
    assert!(out.status.success());
    let run = check_journal(dir.path(), true);
    let text = std::fs::read_to_string(&flow).unwrap();
    std::fs::write(
        &flow,
        text.replace(
            "echo d >> effects; echo {{ c }}",
            "echo d >> effects; echo {{ c + 1 }}",
        ),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("effects")).unwrap();
    let out = flowc(dir.path(), &["run", "--resume", &run, "--explain"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "\"p21,q21,r21\""
    );
    let mut again: Vec<String> = effects(dir.path()).into_keys().collect();
    again.sort();
    assert_eq!(
        again,
        ["d", "e-p", "e-q", "e-r", "g"],
        "only `d` and its downstream run again"
    );
    assert!(
        stderr.contains("↺ d runs again: its inputs changed"),
        "{stderr}"
    );
    assert!(stderr.contains("= a reused"), "{stderr}");
    check_journal(dir.path(), false);
}

#[test]
fn journal_trouble_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let flow = chain();
    let flow = flow.to_str().unwrap();
    // Garbage where the journal should be.
    std::fs::write(dir.path().join("garbage.db"), vec![0x5a; 8192]).unwrap();
    let out = flowc(dir.path(), &["run", flow, "--journal", "garbage.db"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not an SQLite database"), "{err}");
    // A directory that does not exist.
    let out = flowc(
        dir.path(),
        &["run", flow, "--journal", "no/such/dir/j.db"],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // A truncated journal.
    let out = flowc(dir.path(), &["run", flow, "--journal", "real.db"], None);
    assert!(out.status.success());
    let bytes = std::fs::read(dir.path().join("real.db")).unwrap();
    std::fs::write(dir.path().join("cut.db"), &bytes[..bytes.len() / 3]).unwrap();
    let out = flowc(dir.path(), &["status", "x", "--journal", "cut.db"], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    // Inspection of a journal that does not exist.
    let out = flowc(dir.path(), &["runs", "--journal", "none.db"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no journal at"));
}

#[test]
fn a_second_runner_is_refused_while_the_first_is_alive() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("slow.flow");
    std::fs::write(
        &flow,
        "skill main() {\n  step nap: run { command: \"sleep 3\" }\n}\n",
    )
    .unwrap();
    let mut first = Command::new(BIN)
        .args(["run", "slow.flow"])
        .current_dir(dir.path())
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal_path = dir.path().join(".flowc/journal.db");
    let mut run = None;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Ok(j) = Journal::open_existing(&journal_path)
            && let Ok(runs) = j.runs()
            && let Some(r) = runs.first()
        {
            run = Some(r.id.clone());
            break;
        }
    }
    let run = run.expect("the first run never appeared in the journal");
    let out = flowc(dir.path(), &["run", "--resume", &run], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("is being driven by flowc (pid"), "{err}");
    assert!(first.wait().unwrap().success());
    check_journal(dir.path(), true);
}
