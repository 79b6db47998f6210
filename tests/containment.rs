//! A step cannot change flowc's own state, whatever `writable` says: the
//! journal's directory is read-only in the step's mount namespace (both ways
//! of starting a step), and through the spawner the step sees a /proc of its
//! own PID namespace, without flowc's processes or their environment.
#![allow(clippy::unwrap_used)]

mod common;
use common::{BIN, latest_run, stderr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const ATTACK: &str = r#"
skill main() {
  step tamper: run {
    command: """
      for f in .flowc/journal.db .flowc/journal.db-wal .flowc/journal.db-head; do
        echo x >> "$f" 2>/dev/null && echo "wrote $f"
      done
      touch .flowc/evil 2>/dev/null && echo "made .flowc/evil"
      echo ok > beside.txt && echo "wrote the checkout"
      echo "procs $(ls /proc | grep -c '^[0-9]')"
      tr '\0' '\n' < /proc/1/environ | grep -c FLOWC_SECRETS_KEY || true
    """
  }
  step gate: approval { prompt: "ship?", after: [tamper] }
}
"#;

fn run(dir: &Path, args: &[&str], spawner: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env("FLOWC_SECRETS_KEY", "correct-horse-battery")
        .stdin(Stdio::null());
    if spawner {
        cmd.env_remove("FLOWC_NO_SPAWNER");
    } else {
        cmd.env("FLOWC_NO_SPAWNER", "1");
    }
    cmd.output().unwrap()
}

/// The sandbox records of a run's `running` events, as text.
fn sandbox_records(dir: &Path, run: &str) -> String {
    let journal = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    journal
        .events(run)
        .unwrap()
        .iter()
        .filter(|e| !e.data["sandbox"].is_null())
        .map(|e| e.data["sandbox"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn attack(spawner: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a.flow"), ATTACK).unwrap();
    let out = run(d, &["run", "a.flow", "--no-input"], spawner);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let id = latest_run(d);
    let log = run(d, &["log", &id, "tamper"], spawner);
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(log.contains("wrote the checkout"), "{log}");
    assert!(!log.contains("wrote .flowc"), "{log}");
    assert!(!log.contains("made .flowc/evil"), "{log}");
    assert!(!d.join(".flowc/evil").exists());
    let running = run(d, &["status", &id, "--json"], spawner);
    let status: serde_json::Value = serde_json::from_slice(&running.stdout).unwrap();
    assert_eq!(status["nodes"][1]["status"], "waiting", "{status}");
    let replay = run(d, &["replay", &id], spawner);
    assert!(replay.status.success(), "{}", stderr(&replay));
    if spawner {
        // A few processes of the step's own namespace, not the machine's.
        let procs: usize = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("procs ")?.parse().ok())
            .unwrap_or_else(|| panic!("{log}"));
        assert!(procs < 10, "the step sees {procs} processes: {log}");
        let layers = sandbox_records(d, &id);
        assert!(layers.contains("state_read_only"), "{layers}");
        assert!(layers.contains("own_proc"), "{layers}");
    }
    // Its init's environment shows none of flowc's variables.
    let counted: Vec<&str> = log.lines().map(str::trim).collect();
    assert!(counted.contains(&"0"), "{log}");
}

#[test]
fn a_step_cannot_write_the_journal_through_the_spawner() {
    attack(true);
}

#[test]
fn a_step_cannot_write_the_journal_when_flowc_forks_it() {
    if !nix::unistd::geteuid().is_root() {
        // Without root the fork path cannot mount: the plan says so.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.flow"), ATTACK).unwrap();
        run(d, &["run", "a.flow", "--no-input"], false);
        let records = sandbox_records(d, &latest_run(d));
        assert!(records.contains("needs the spawner, or root"), "{records}");
        return;
    }
    attack(false);
}

#[test]
fn the_secret_store_and_key_file_read_empty_inside_a_step() {
    for spawner in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("keyfile"), "a-long-passphrase-for-the-test\n").unwrap();
        let mut set = Command::new(BIN);
        set.args(["secret", "set", "TOKEN"])
            .current_dir(d)
            .env("FLOWC_SECRETS_KEY_FILE", d.join("keyfile"))
            .env_remove("FLOWC_SECRETS_KEY")
            .env_remove("FLOWC_SECRETS")
            .stdin(Stdio::piped());
        let mut child = set.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"s3cr3t-token-value")
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert!(
            std::fs::metadata(d.join(".flowc/secrets.json"))
                .unwrap()
                .len()
                > 0
        );
        std::fs::write(
            d.join("s.flow"),
            "skill main() -> string {\n  step peek: run { command: \"echo store=$(wc -c < .flowc/secrets.json) key=$(wc -c < keyfile)\" }\n  return peek.stdout.trim()\n}\n",
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "s.flow", "--no-input"])
            .current_dir(d)
            .env_remove("FLOWC_JOURNAL")
            .env_remove("FLOWC_SECRETS_KEY")
            .env_remove("FLOWC_SECRETS")
            .env("FLOWC_SECRETS_KEY_FILE", d.join("keyfile"))
            .stdin(Stdio::null());
        if spawner {
            cmd.env_remove("FLOWC_NO_SPAWNER");
        } else {
            cmd.env("FLOWC_NO_SPAWNER", "1");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let seen = String::from_utf8_lossy(&out.stdout).to_string();
        if spawner || nix::unistd::geteuid().is_root() {
            assert!(seen.contains("store=0 key=0"), "spawner {spawner}: {seen}");
        }
    }
}

#[test]
fn beside_a_journal_outside_dot_flowc_only_its_own_files_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("state")).unwrap();
    std::fs::write(
        d.join("b.flow"),
        "skill main() {\n  step w: run { command: \"echo out > state/out.txt; echo x >> state/j.db 2>/dev/null && echo wrote-journal; true\" }\n}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "b.flow", "--no-input", "--journal", "state/j.db"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(d.join("state/out.txt")).unwrap(),
        "out\n"
    );
    let log = Command::new(BIN)
        .args(["log", "--journal", "state/j.db"])
        .current_dir(d)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(!log.contains("wrote-journal"), "{log}");
}
