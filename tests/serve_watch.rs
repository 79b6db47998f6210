//! `watch` triggers under `flowc serve`: a change under a watched directory
//! starts one run after the debounce; a change under an ignored directory
//! starts none (it is never watched).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> Service {
    let child = Command::new(common::BIN)
        .args(["serve", "--listen", "none", "--log-format", "json"])
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    Service(child)
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
}

/// Polls `what` until it holds or 20 s pass.
fn wait_for(dir: &Path, why: &str, what: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !what() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {why}; service log:\n{}",
            log(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fires(dir: &Path) -> Vec<(String, String)> {
    let Ok(j) = flowc::journal::Journal::open_read_only(&dir.join(".flowc/journal.db")) else {
        return Vec::new();
    };
    j.fires(None, 100)
        .unwrap_or_default()
        .into_iter()
        .map(|f| (f.outcome, f.data["event"]["paths"].to_string()))
        .collect()
}

#[test]
fn a_change_under_a_watched_directory_starts_one_run_and_an_ignored_one_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("src")).unwrap();
    std::fs::create_dir_all(d.join("target/debug")).unwrap();
    std::fs::write(d.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(
        d.join("t.flow"),
        r#"skill changed(paths: [path]) {
  step a: run { command: "echo {{ paths | join(',') }} >> seen" }
}
trigger edits {
  watch: ["src/**", "target/**"]
  debounce: 300ms
  run: changed(event.paths)
}
"#,
    )
    .unwrap();
    let _svc = start(d);
    wait_for(d, "the watcher", || log(d).contains("watch.started"));
    // Only the directory itself and `src` are watched: `target/` is ignored.
    assert!(log(d).contains(r#""directories":2"#), "{}", log(d));
    // A burst of changes inside the debounce is one fire.
    std::fs::write(d.join("src/a.rs"), "a").unwrap();
    std::fs::write(d.join("src/b.rs"), "b").unwrap();
    std::fs::write(d.join("target/debug/c"), "c").unwrap();
    wait_for(d, "the run", || {
        std::fs::read_to_string(d.join("seen")).is_ok_and(|s| s.contains("src/a.rs"))
    });
    // Time for a second fire, had the ignored change produced one.
    std::thread::sleep(Duration::from_millis(800));
    let fired = fires(d);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, "queued");
    assert_eq!(fired[0].1, r#"["src/a.rs","src/b.rs"]"#);
    assert_eq!(
        std::fs::read_to_string(d.join("seen")).unwrap(),
        "src/a.rs,src/b.rs\n"
    );
    // A new directory gets a watch; a change in it fires again.
    std::fs::create_dir(d.join("src/sub")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(d.join("src/sub/d.rs"), "d").unwrap();
    wait_for(d, "the second run", || {
        std::fs::read_to_string(d.join("seen")).is_ok_and(|s| s.contains("src/sub/d.rs"))
    });
    let fired = fires(d);
    assert_eq!(fired.len(), 2, "{fired:?}");
}
