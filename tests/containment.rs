//! A step cannot change flowc's own state, whatever `writable` says: the
//! journal's directory is read-only in the step's mount namespace (both ways
//! of starting a step, with or without root), and through the spawner the
//! step sees a /proc of its own PID namespace, without flowc's processes or
//! their environment. Outside `writable` every mount is read-only there, so
//! metadata (which Landlock does not cover) cannot change either; and the
//! `running` event says which of these a step got.
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
    // As root the fork mounts in a mount namespace; without root, in a user
    // namespace of its own (`an_unprivileged_fork_keeps_the_state_and_the_rest_read_only`).
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

/// A step under `writable: ["out"]` changing the metadata of a file beside
/// `out` (refused) and of one inside it (allowed).
const METADATA: &str = r#"
policy confined {
  sandbox { writable: ["out"] }
}

skill main() {
  policy: confined
  step meta: run {
    command: """
      chmod 777 f 2>/dev/null && echo "chmod outside"
      chown "$(id -u)" f 2>/dev/null && echo "chown outside"
      touch -d 2001-02-03 f 2>/dev/null && echo "touch outside"
      XATTR
      chmod 777 out/g && touch -d 2001-02-03 out/g && echo "inside ok"
    """
  }
}
"#;

/// Sets a user xattr on `file`, with python3 (`setfattr` is rarely installed).
fn setxattr_command(file: &str) -> String {
    format!("python3 -c 'import os; os.setxattr(\"{file}\", \"user.flowc\", b\"x\")'")
}

/// Whether user xattrs can be set in `dir` (python3 sets them; CI installs it).
fn xattrs_work(dir: &Path) -> bool {
    std::fs::write(dir.join("probe"), "").unwrap();
    Command::new("sh")
        .args(["-c", &setxattr_command("probe")])
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn metadata_outside_writable(spawner: bool) {
    use std::os::unix::fs::PermissionsExt;
    // The target directory, not /tmp: tmpfs before Linux 6.6 has no user
    // xattrs, and this test must check them rather than skip them.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("out")).unwrap();
    for f in ["f", "out/g"] {
        std::fs::write(d.join(f), "data\n").unwrap();
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    assert!(
        xattrs_work(d),
        "user xattrs cannot be set in {}: python3 is needed (.ci/run installs it) on a filesystem with user xattrs",
        d.display()
    );
    let xattr = format!(
        "{} 2>/dev/null && echo \"xattr outside\"\n      {} && echo \"xattr inside\"",
        setxattr_command("f"),
        setxattr_command("out/g")
    );
    std::fs::write(d.join("m.flow"), METADATA.replace("XATTR", &xattr)).unwrap();
    let before = std::fs::metadata(d.join("f")).unwrap();
    let out = run(d, &["run", "m.flow", "--no-input"], spawner);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = run(d, &["log", &latest_run(d), "meta"], spawner);
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    for refused in ["chmod", "chown", "touch", "xattr"] {
        assert!(!log.contains(&format!("{refused} outside")), "{log}");
    }
    assert!(log.contains("inside ok"), "{log}");
    assert!(log.contains("xattr inside"), "{log}");
    let after = std::fs::metadata(d.join("f")).unwrap();
    assert_eq!(after.permissions().mode() & 0o7777, 0o640);
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    let inside = std::fs::metadata(d.join("out/g")).unwrap();
    assert_eq!(inside.permissions().mode() & 0o7777, 0o777);
    assert_ne!(inside.modified().unwrap(), before.modified().unwrap());
    let records = sandbox_records(d, &latest_run(d));
    assert!(records.contains("fs_read_only"), "{records}");
}

#[test]
fn metadata_outside_writable_cannot_change_through_the_spawner() {
    metadata_outside_writable(true);
}

#[test]
fn metadata_outside_writable_cannot_change_when_flowc_forks_it() {
    metadata_outside_writable(false);
}

/// The unprivileged user the tests run flowc as, when they run as root.
const NOBODY: &str = "65534";

/// `flowc` in `dir` as an unprivileged user: as `nobody` through `setpriv`
/// when the tests run as root (as in CI), as the user itself otherwise.
fn unprivileged(dir: &Path, bin: &Path, args: &[&str]) -> Output {
    let mut cmd = if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_SECRETS_KEY")
        .env("HOME", dir)
        .env("FLOWC_NO_SPAWNER", "1")
        .stdin(Stdio::null());
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run flowc unprivileged (setpriv, util-linux): {e}"))
}

#[test]
fn an_unprivileged_fork_keeps_the_state_and_the_rest_read_only() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path();
    let work = top.join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(top.join("outside.txt"), "data\n").unwrap();
    std::fs::set_permissions(
        top.join("outside.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    // `writable` is written: the step is refused unless both layers hold it.
    let confined = "policy confined {\n  sandbox { writable: [\".\"] }\n}\n";
    let attack = ATTACK.replace("skill main() {", "skill main() {\n  policy: confined");
    std::fs::write(
        work.join("a.flow"),
        format!("{confined}{attack}").replace(
            "echo ok > beside.txt",
            "chmod 777 ../outside.txt 2>/dev/null && echo \"chmod outside\"\n      \
             touch -d 2001-02-03 ../outside.txt 2>/dev/null && echo \"touch outside\"\n      \
             echo ok > beside.txt",
        ),
    )
    .unwrap();
    // The binary where the user can run it (the checkout may be under /root).
    let bin = top.join("flowc");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    if nix::unistd::geteuid().is_root() {
        let id: u32 = NOBODY.parse().unwrap();
        for p in [
            top,
            work.as_path(),
            &top.join("outside.txt"),
            &work.join("a.flow"),
        ] {
            chown(p, Some(id), Some(id)).unwrap();
        }
    }
    let before = std::fs::metadata(top.join("outside.txt")).unwrap();
    let doctor = unprivileged(&work, &bin, &["doctor", "--json"]);
    let doctor: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let has = |layer: &str| {
        doctor["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == layer && l["available"] == true)
    };
    let out = unprivileged(&work, &bin, &["run", "a.flow", "--no-input"]);
    if !has("fs_read_only") {
        // No user namespaces here, so no mount namespace: refused, not run weaker.
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let refused = "sandbox refused: `writable` for metadata (chmod, chown, utimes, xattrs) needs `fs_read_only`";
        assert!(stderr(&out).contains(refused), "{}", stderr(&out));
        return;
    }
    let records = sandbox_records(&work, &latest_run(&work));
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    for layer in ["\"state_read_only\"", "\"fs_read_only\""] {
        assert!(records.contains(layer), "{records}");
    }
    assert!(!records.contains("\"own_proc\""), "{records}");
    assert!(records.contains("a /proc of the step's own"), "{records}");
    let log = unprivileged(&work, &bin, &["log", &latest_run(&work), "tamper"]);
    let log = String::from_utf8_lossy(&log.stdout).to_string();
    assert!(log.contains("wrote the checkout"), "{log}");
    for refused in [
        "wrote .flowc",
        "made .flowc/evil",
        "chmod outside",
        "touch outside",
    ] {
        assert!(!log.contains(refused), "{log}");
    }
    assert!(!work.join(".flowc/evil").exists());
    let after = std::fs::metadata(top.join("outside.txt")).unwrap();
    assert_eq!(after.permissions().mode() & 0o7777, 0o640);
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
}

#[test]
fn a_request_too_large_for_the_spawner_is_recorded_without_its_own_proc() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Over the spawner's 160 KiB message, in arguments under the kernel's
    // 128 KiB each: this step starts by forking flowc, its neighbour does not.
    let part = format!("\"{}\"", "x".repeat(60_000));
    let args = [part.as_str(); 3].join(", ");
    let count = "echo procs $(ls /proc | grep -c '^[0-9]')";
    std::fs::write(
        d.join("big.flow"),
        format!(
            "skill main() {{\n  step small: run {{ command: \"{count}\" }}\n  \
             step big: run {{ argv: [\"sh\", \"-c\", \"{count}\", \"sh\", {args}] }}\n}}\n"
        ),
    )
    .unwrap();
    let out = run(d, &["run", "big.flow", "--no-input"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = latest_run(d);
    let journal = flowc::journal::Journal::open_existing(&d.join(".flowc/journal.db")).unwrap();
    let events = journal.events(&id).unwrap();
    let record = |node: &str| {
        let e = events
            .iter()
            .find(|e| e.node.as_deref() == Some(node) && !e.data["sandbox"].is_null())
            .unwrap_or_else(|| panic!("no running event for {node}"));
        e.data["sandbox"].clone()
    };
    let layers = |r: &serde_json::Value| r["layers"].to_string();
    let (small, big) = (record("small"), record("big"));
    assert!(layers(&small).contains("\"own_proc\""), "{small}");
    for layer in [
        "\"state_read_only\"",
        "\"fs_read_only\"",
        "\"pid_namespace\"",
    ] {
        assert!(layers(&big).contains(layer), "{big}");
    }
    assert!(!layers(&big).contains("\"own_proc\""), "{big}");
    assert!(
        big["missing"]
            .to_string()
            .contains("a /proc of the step's own PID namespace"),
        "{big}"
    );
    // And that is what each saw: its own namespace's few processes, or the host's.
    let procs = |step: &str| -> usize {
        let log = run(d, &["log", &id, step], true);
        String::from_utf8_lossy(&log.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("procs ")?.parse().ok())
            .unwrap_or_else(|| panic!("{step}: {}", String::from_utf8_lossy(&log.stdout)))
    };
    assert!(procs("small") < 10);
    assert!(procs("big") > procs("small"));
}
