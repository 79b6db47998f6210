//! The sandbox of `run` steps, end to end: each `tests/fixtures/sandbox/*.flow`
//! misbehaves in one way, and the journal must show the classified outcome, with
//! no process left behind. Where this machine lacks the layer a fixture needs
//! (see `flowc doctor --json`), the test asserts the refusal instead.
#![allow(clippy::unwrap_used)]

mod common;
use common::BIN;
use flowc::journal::{Event, Journal};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sandbox")
        .join(name)
}

/// Layers this machine supports, from `flowc doctor --json`.
fn has(layer: &str) -> bool {
    common::has_layer(layer)
}

struct Run {
    dir: tempfile::TempDir,
    code: i32,
    stderr: String,
    events: Vec<Event>,
}

/// How `flowc run` starts step processes: each sandbox test runs both ways.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// Through the spawner process (the default).
    Spawner,
    /// By forking flowc (`FLOWC_NO_SPAWNER=1`, and the fallback).
    Forked,
}

macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[test]
            fn spawner() {
                super::$name(super::Start::Spawner)
            }
            #[test]
            fn forked() {
                super::$name(super::Start::Forked)
            }
        })*
    };
}

both_ways!(
    a_write_outside_writable_is_denied,
    a_connect_with_network_off_is_denied,
    a_fork_bomb_is_bounded_and_leaves_nothing,
    allocating_past_the_memory_limit_is_classified,
    a_process_ignoring_sigterm_dies_at_its_timeout,
    a_daemon_dies_with_its_step,
    a_daemon_is_dead_before_the_next_step_starts,
    std_strict_runs_with_what_the_machine_enforces,
);

impl Run {
    fn new(how: Start, flow: &str, inputs: &[&str]) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let flow = fixture(flow);
        let mut args = vec!["run", flow.to_str().unwrap(), "--no-input"];
        for i in inputs {
            args.extend(["-i", i]);
        }
        let mut cmd = Command::new(BIN);
        cmd.args(&args)
            .current_dir(dir.path())
            .env_remove("FLOWC_JOURNAL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        match how {
            Start::Spawner => cmd.env_remove("FLOWC_NO_SPAWNER"),
            Start::Forked => cmd.env("FLOWC_NO_SPAWNER", "1"),
        };
        let out = cmd.output().unwrap();
        let journal = Journal::open_existing(&dir.path().join(".flowc/journal.db")).unwrap();
        let run = journal.runs().unwrap()[0].id.clone();
        let events = journal.events(&run).unwrap();
        Run {
            dir,
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            events,
        }
    }

    fn output(&self) -> &Json {
        self.events
            .iter()
            .find_map(|e| e.output())
            .unwrap_or_else(|| panic!("no output event; stderr:\n{}", self.stderr))
    }

    fn outcome(&self) -> &str {
        self.output()["outcome"].as_str().unwrap()
    }

    /// The layers recorded in the (first) running event.
    fn layers(&self) -> Vec<String> {
        let running = self
            .events
            .iter()
            .find(|e| e.kind == "node_status" && e.data["status"] == "running")
            .unwrap();
        running.data["sandbox"]["layers"]
            .as_array()
            .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }

    /// The error of the step's final `failed` status.
    fn error(&self) -> String {
        self.events
            .iter()
            .rev()
            .find(|e| e.kind == "node_status" && e.data["status"] == "failed")
            .and_then(|e| e.data["error"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Live processes whose working directory is inside `dir`, as the host sees
/// them (a step's own /proc shows it other pids). Waits up to five seconds
/// for there to be none.
fn survivors_in(dir: &Path) -> Vec<i32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let start = Instant::now();
    loop {
        let left: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir))
                    && alive(*pid)
            })
            .collect();
        if left.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_all(pids: &[i32]) {
    for &p in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn a_write_outside_writable_is_denied(how: Start) {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escaped.txt");
    let run = Run::new(
        how,
        "write_outside.flow",
        &[&format!("target={}", target.display())],
    );
    if !has("landlock_fs") {
        assert_eq!(run.code, 1);
        assert!(run.error().contains("landlock_fs"), "{}", run.error());
        return;
    }
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(), "denied", "{}", run.output());
    assert!(run.layers().contains(&"landlock_fs".to_string()));
    assert!(
        run.path("inside.txt").exists(),
        "the writable tree stays writable"
    );
    assert!(
        !target.exists(),
        "the write outside `writable` went through"
    );
}

fn a_connect_with_network_off_is_denied(how: Start) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let run = Run::new(how, "network.flow", &[&format!("port={port}")]);
    if !has("landlock_net") && !has("net_namespace") {
        assert_eq!(run.code, 1);
        assert!(run.error().contains("network"), "{}", run.error());
        return;
    }
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(), "denied", "{}", run.output());
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the listener was reached"
    );
}

fn a_fork_bomb_is_bounded_and_leaves_nothing(how: Start) {
    let run = Run::new(how, "fork_bomb.flow", &[]);
    if !has("rlimit_nproc") {
        // Root: RLIMIT_NPROC does not bind, so `processes: 16` is refused before it starts.
        assert_eq!(run.code, 1);
        assert!(run.error().contains("rlimit_nproc"), "{}", run.error());
        assert!(
            run.error().starts_with("sandbox refused"),
            "{}",
            run.error()
        );
        assert!(!run.path("pids").exists(), "a refused step must not start");
    } else {
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert_eq!(run.outcome(), "process_limit", "{}", run.output());
    }
    // With `fallback: "weaker"` it runs anyway; nothing it forked may outlive it.
    let weak = Run::new(how, "fork_bomb_weaker.flow", &[]);
    let pids: Vec<i32> = std::fs::read_dir(weak.path("pids"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().ends_with("tmp"))
                .map(|e| read_pid(&e.path()))
                .collect()
        })
        .unwrap_or_default();
    assert!(!pids.is_empty(), "{}", weak.stderr);
    let left = survivors_in(weak.dir.path());
    kill_all(&left);
    if has("pid_namespace") || has("rlimit_nproc") {
        assert!(left.is_empty(), "children outlived the step: {left:?}");
    }
}

fn allocating_past_the_memory_limit_is_classified(how: Start) {
    let run = Run::new(how, "memory.flow", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(), "memory_limit", "{}", run.output());
    assert!(run.layers().contains(&"rlimits".to_string()));
}

fn a_process_ignoring_sigterm_dies_at_its_timeout(how: Start) {
    let run = Run::new(how, "ignores_sigterm.flow", &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.outcome(), "timeout", "{}", run.output());
    assert!(
        run.error().starts_with("timed out after"),
        "{}",
        run.error()
    );
    assert!(run.path("pid").exists(), "{}", run.stderr);
    let left = survivors_in(run.dir.path());
    kill_all(&left);
    assert!(left.is_empty(), "the stubborn process survived its timeout");
}

fn a_daemon_dies_with_its_step(how: Start) {
    let run = Run::new(how, "daemon.flow", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.outcome(), "exit");
    assert!(run.path("daemon.pid").exists(), "{}", run.stderr);
    let left = survivors_in(run.dir.path());
    kill_all(&left);
    if has("pid_namespace") {
        assert!(run.layers().contains(&"pid_namespace".to_string()));
        assert!(left.is_empty(), "the daemon outlived its step");
    } else {
        // Without a PID namespace a `setsid` daemon escapes the process group:
        // that gap is what `flowc doctor` reports, so there is nothing to assert.
    }
}

/// The spawner reports a step's end as soon as its namespace's init has
/// killed and reaped the rest, before the namespaces' teardown: still,
/// nothing of the step may run once the next one has started.
fn a_daemon_is_dead_before_the_next_step_starts(how: Start) {
    let run = Run::new(how, "daemon_next.flow", &[]);
    let left = survivors_in(run.dir.path());
    kill_all(&left);
    if has("pid_namespace") {
        assert_eq!(
            run.code, 0,
            "the heartbeat moved on after its step: {}",
            run.stderr
        );
        assert!(run.path("beat").exists(), "{}", run.stderr);
        assert!(left.is_empty(), "the daemon outlived its step");
    }
}

#[test]
fn doctor_lists_every_layer() {
    let out = Command::new(BIN).arg("doctor").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for layer in [
        "process_group",
        "rlimits",
        "rlimit_nproc",
        "landlock_fs",
        "landlock_net",
        "pid_namespace",
        "net_namespace",
        "fs_read_only",
    ] {
        assert!(text.contains(layer), "{layer} missing from:\n{text}");
    }
}

/// Runs `flow` as the unprivileged user `nobody` (when the tests run as root
/// and `setpriv` exists), so the non-root layers are exercised too:
/// RLIMIT_NPROC, and the PID namespace inside a user namespace.
fn run_as_nobody(flow: &str) -> Option<(i32, Vec<Event>, tempfile::TempDir)> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // The fixture is copied where `nobody` can read it.
    let copy = dir.path().join(flow);
    std::fs::copy(fixture(flow), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    // And the binary too: the checkout may sit under a directory `nobody`
    // cannot enter (such as /root).
    let bin = dir.path().join("flowc");
    std::fs::copy(BIN, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["run", copy.to_str().unwrap(), "--no-input"])
        .current_dir(dir.path())
        .env_remove("FLOWC_JOURNAL")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .ok()?; // no setpriv: nothing to test here
    let journal =
        Journal::open_existing(&dir.path().join(".flowc/journal.db")).unwrap_or_else(|e| {
            panic!(
                "flowc as nobody left no journal ({e}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let run = journal.runs().unwrap()[0].id.clone();
    let events = journal.events(&run).unwrap();
    Some((out.status.code().unwrap_or(-1), events, dir))
}

#[test]
fn unprivileged_users_get_every_layer_the_fork_bomb_hits_its_process_limit() {
    let Some((code, events, _dir)) = run_as_nobody("fork_bomb.flow") else {
        return; // not root, or no setpriv: the other tests ran this path already
    };
    assert_eq!(code, 1);
    let running = events
        .iter()
        .find(|e| e.data["status"] == "running")
        .unwrap();
    let layers = running.data["sandbox"]["layers"].as_array().unwrap();
    assert!(layers.iter().any(|l| l == "rlimit_nproc"), "{layers:?}");
    let output = events.iter().find_map(|e| e.output()).unwrap();
    assert_eq!(output["outcome"], "process_limit", "{output}");
    // The user-namespaced PID namespace started: no `uid_map` denial.
    assert!(!output["stderr"].as_str().unwrap_or("").contains("uid_map"));
}

fn std_strict_runs_with_what_the_machine_enforces(how: Start) {
    let run = Run::new(how, "std_strict.flow", &[]);
    if !has("landlock_fs") {
        // `writable` and `readable` are not best effort: without Landlock strict refuses.
        assert_eq!(run.code, 1);
        assert!(run.error().contains("landlock_fs"), "{}", run.error());
        return;
    }
    assert_eq!(run.code, 0, "{}", run.stderr);
    let running = run
        .events
        .iter()
        .find(|e| e.kind == "node_status" && e.data["status"] == "running")
        .unwrap();
    let missing = running.data["sandbox"]["missing"].to_string();
    let note = "note: not enforced on this machine: `processes: 64` needs `rlimit_nproc`";
    if has("rlimit_nproc") {
        assert!(run.layers().contains(&"rlimit_nproc".to_string()));
        assert!(!run.stderr.contains("note: not enforced"), "{}", run.stderr);
    } else {
        // Root: the limit the kernel ignores is stated, in the journal and at run start.
        assert!(!run.layers().contains(&"rlimit_nproc".to_string()));
        assert!(missing.contains("`processes: 64`"), "{missing}");
        assert!(run.stderr.contains(note), "{}", run.stderr);
    }
    assert!(run.layers().contains(&"landlock_fs".to_string()));
}
