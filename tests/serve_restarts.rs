//! A run whose process keeps dying is resumed a bounded number of times,
//! then failed by the service with the reason journaled.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_run_that_keeps_crashing_its_process_is_failed_after_bounded_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A long chain, so the sessions between crashes cannot finish it.
    let mut flow = String::from("skill main() {\n  step s0: run { argv: [\"true\"] }\n");
    for i in 1..40 {
        flow.push_str(&format!(
            "  step s{i}: run {{ argv: [\"true\"], after: [s{}] }}\n",
            i - 1
        ));
    }
    flow.push_str("}\n");
    std::fs::write(d.join("chain.flow"), flow).unwrap();
    let out = common::flowc(d, &["submit", "chain.flow"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let run = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The debug build's crash hook: every run process aborts after 3 commits
    // (the service itself appends once, when it gives up).
    let mut svc = Command::new(common::BIN)
        .args(["serve", "--listen", "none", "--log-format", "json"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env("FLOWC_DEBUG_CRASH_AFTER_COMMITS", "3")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(d.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let journal = d.join(".flowc/journal.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        let j = flowc::journal::Journal::open_read_only(&journal).unwrap();
        let row = j.run(&run).unwrap();
        if row.status == "failed" {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after 60 s; log:\n{}",
            row.status,
            std::fs::read_to_string(d.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = svc.kill();
    let _ = svc.wait();
    let error = row.error.unwrap_or_default();
    assert!(error.contains("died 4 times"), "{error}");
    assert!(error.contains("signal 6"), "{error}");
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    assert_eq!(log.matches(r#""then":"restarting""#).count(), 3, "{log}");
    assert_eq!(log.matches(r#""then":"failed""#).count(), 1, "{log}");
    // The run left the queue; its history verifies.
    let j = flowc::journal::Journal::open_read_only(&journal).unwrap();
    assert!(j.queue().unwrap().is_empty());
    let out = common::flowc(d, &["replay", &run]);
    assert!(out.status.success(), "{}", common::stderr(&out));
}
