//! Ctrl-C: `flowc run` stops scheduling, kills the running step's process
//! group, marks it `interrupted`, exits 130; `--resume` then finishes the run.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, flowc, latest_run};

const FLOW: &str = r#"
skill main() -> string {
  step slow: run {
    command: "echo $$ > pid; touch started; sleep ${SLEEP:-30}; echo done"
  }
  step after: run { command: "echo after" }
  return after.stdout.trim()
}
"#;

fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigint_interrupts_the_running_step_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.flow"), FLOW).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "s.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("SLEEP")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(&d.join("started"), Duration::from_secs(20)),
        "the step never started"
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "flowc did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));

    // Nothing of the step is left: no process works in the run's directory
    // (`$$` would be a pid inside the step's PID namespace, so look from here).
    let leftover = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .chars()
                    .all(|c| c.is_ascii_digit())
            })
            .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c == d))
            .filter(|e| {
                !std::fs::read_to_string(e.path().join("stat"))
                    .unwrap_or_default()
                    .contains(") Z ")
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let start = Instant::now();
    while !leftover().is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        leftover().is_empty(),
        "the interrupted step left processes: {:?}",
        leftover()
    );

    let run = latest_run(d);
    let status = flowc(d, &["status", &run, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let slow = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "slow")
        .unwrap();
    assert_eq!(slow["status"], "interrupted");

    let out = Command::new(BIN)
        .args(["run", "--resume", &run, "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env("SLEEP", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"after\"");
    assert!(flowc(d, &["replay", &run]).status.success());
}
