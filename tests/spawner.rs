//! The spawner: `flowc run` starts step processes through a small process it
//! forks at start-up. These tests check that it starts them exactly as the
//! fallback (forking flowc, `FLOWC_NO_SPAWNER=1`) does, that it goes away
//! with flowc, and that a request too large for it still runs.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{BIN, stderr};

const FLOW: &str = r#"
skill main() -> { env: string, fds: string, signalled: int, script: string, code: int } {
  step env_stdin_cwd: run {
    command: "printf '%s|%s|%s|%s' \"$X\" \"$(cat)\" \"$(basename \"$(pwd)\")\" \"$FLOWC_STEP\""
    env: { X: "from-env" }
    stdin: "from-stdin"
    cwd: "sub"
  }
  step fds: run { command: "ls /proc/self/fd | sort -n | tr '\n' ' '" }
  step signalled: run { command: "kill -TERM $$", on_failure: continue }
  step missing: run { argv: ["no-such-program-for-flowc"], on_failure: continue }
  step no_shebang: run { argv: ["./no-shebang", "arg"] }
  step exit_code: run { command: "exit 7", accept: exit_code == 7 }
  return {
    env: env_stdin_cwd.stdout,
    fds: fds.stdout,
    signalled: signalled?.exit_code ?? -1,
    script: no_shebang.stdout,
    code: exit_code.exit_code,
  }
}
"#;

fn run_flow(dir: &Path, spawner: bool) -> (String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "s.flow", "--no-input"])
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null());
    if spawner {
        cmd.env_remove("FLOWC_NO_SPAWNER");
    } else {
        cmd.env("FLOWC_NO_SPAWNER", "1");
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = Command::new(BIN)
        .args(["log", &common::latest_run(dir), "missing"])
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&log.stdout).into_owned(),
    )
}

#[test]
fn the_spawner_starts_steps_as_the_fallback_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.flow"), FLOW).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("no-shebang"), "echo \"script $1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.join("no-shebang"), std::fs::Permissions::from_mode(0o755)).unwrap();

    let (spawned, spawned_log) = run_flow(d, true);
    let (forked, forked_log) = run_flow(d, false);
    let values: serde_json::Value = serde_json::from_str(spawned.trim()).unwrap();
    assert_eq!(
        values,
        serde_json::json!({
            "env": "from-env|from-stdin|sub|env_stdin_cwd",
            // The standard streams, the directory `ls` reads, and whatever
            // this test process itself passes down: nothing of flowc's own.
            "fds": inherited_fds(),
            "signalled": 143,
            "script": "script arg\n",
            "code": 7,
        })
    );
    assert_eq!(spawned, forked, "the two ways of starting a step disagree");
    for log in [&spawned_log, &forked_log] {
        assert!(
            log.contains(
                "cannot start `no-such-program-for-flowc`: No such file or directory (os error 2)"
            ),
            "{log}"
        );
    }
}

/// "0 1 2 3 " plus the descriptors above 3 that this process leaves open
/// across exec (a test harness may pass some down), sorted like `sort -n`.
fn inherited_fds() -> String {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 3)
        .filter(|&fd| {
            // `flags:` in fdinfo is octal; O_CLOEXEC is 02000000.
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            info.lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .is_some_and(|f| f & 0o2_000_000 == 0)
        })
        .collect();
    fds.extend([0, 1, 2, 3]);
    fds.sort_unstable();
    fds.iter().map(|fd| format!("{fd} ")).collect()
}

/// (parent pid, command name, state) of a live process.
fn stat(pid: i32) -> Option<(i32, String, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((ppid, comm, state))
}

fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(_, _, state)| state != 'Z' && state != 'X')
}

fn processes() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Starts `flowc run s.flow` in `d` with piped output, waits until its step
/// has touched `started`, and returns it with the pid of its spawner.
fn run_until_started(d: &Path) -> (std::process::Child, i32) {
    let child = Command::new(BIN)
        .args(["run", "s.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_NO_SPAWNER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let flowc = child.id() as i32;
    let start = Instant::now();
    while !d.join("started").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let spawner = processes()
        .into_iter()
        .find(|&p| stat(p).is_some_and(|(ppid, comm, _)| ppid == flowc && comm == "flowc-spawner"))
        .expect("flowc run has a spawner process");
    (child, spawner)
}

#[test]
fn the_spawner_and_its_steps_end_with_flowc() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("s.flow"),
        "skill main() {\n  step slow: run { command: \"touch started; exec sleep 60\" }\n}\n",
    )
    .unwrap();
    let (mut child, spawner) = run_until_started(d);
    // The step's `sleep`, somewhere below the spawner.
    let below = |mut p: i32| {
        for _ in 0..4 {
            match stat(p) {
                Some((ppid, _, _)) if ppid == spawner => return true,
                Some((ppid, _, _)) => p = ppid,
                None => return false,
            }
        }
        false
    };
    let sleep = processes()
        .into_iter()
        .find(|&p| stat(p).is_some_and(|(_, comm, _)| comm == "sleep") && below(p))
        .expect("the step runs below the spawner");

    // flowc dies without any chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    while alive(spawner) || alive(sleep) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "left behind: spawner {}, step {}",
            alive(spawner),
            alive(sleep)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_step_too_large_for_one_message_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Over the spawner's message size, in arguments under the kernel's 128 KiB each.
    let part = format!("\"{}\"", "x".repeat(60_000));
    let args = [part.as_str(); 3].join(", ");
    std::fs::write(
        d.join("s.flow"),
        format!(
            "skill main() -> string {{\n  step big: run {{ argv: [\"sh\", \"-c\", \"printf %s \\\"$@\\\" | wc -c\", \"sh\", {args}] }}\n  return big.stdout.trim()\n}}\n"
        ),
    )
    .unwrap();
    let out = common::flowc(d, &["run", "s.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"180000\"");
}

#[test]
fn a_dead_spawner_fails_its_running_step_and_later_steps_fork() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("s.flow"),
        r#"skill main() -> string {
  step first: run { command: "touch started; exec sleep 30", on_failure: continue }
  step second: run { command: "echo second", after: [first] }
  return second.stdout.trim()
}
"#,
    )
    .unwrap();
    let (child, spawner) = run_until_started(d);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(spawner),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let out = child.wait_with_output().unwrap();
    // The running step is killed at once, not waited for (it sleeps 30 s).
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{}",
        stderr(&out)
    );
    // It failed once under a fully loaded machine (1 in about 10 full runs):
    // on failure, show what each step's attempt said, to tell which way.
    if out.status.code() != Some(0) {
        let log = common::flowc(d, &["log", &common::latest_run(d)]);
        panic!(
            "exit {:?}\nstderr:\n{}\nlog:\n{}",
            out.status.code(),
            stderr(&out),
            String::from_utf8_lossy(&log.stdout)
        );
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"second\"");
    assert!(
        stderr(&out).contains("the process spawner exited before the process did"),
        "{}",
        stderr(&out)
    );
}

/// Whether some live process has `marker` in its command line.
fn running_with(marker: &str) -> bool {
    processes().into_iter().any(|p| {
        alive(p)
            && std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.windows(marker.len()).any(|w| w == marker.as_bytes()))
    })
}

/// Kills `flowc run` with SIGKILL while its step sleeps, and checks that the
/// step dies with it: no process of it survives and its late write never happens.
fn killed_flowc_leaves_no_step(flow: &str, marker: &str, spawner: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.flow"), flow).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "s.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if spawner {
        cmd.env_remove("FLOWC_NO_SPAWNER");
    } else {
        cmd.env("FLOWC_NO_SPAWNER", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while !d.join("started").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(running_with(marker), "the step is not running");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    while running_with(marker) {
        assert!(
            // Well before the step's sleep would end by itself.
            killed.elapsed() < Duration::from_secs(1),
            "a step process survived flowc"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the step's own 2 s: a surviving copy would have written by now.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!d.join("late").exists(), "a late side effect appeared");
}

#[test]
fn the_fallback_s_steps_end_with_flowc() {
    let flow = "skill main() {\n  step slow: run { command: \"touch started; sleep 2.0417; touch late\" }\n}\n";
    killed_flowc_leaves_no_step(flow, "2.0417", false);
}

#[test]
fn a_step_too_large_for_the_spawner_ends_with_flowc() {
    // Over the spawner's message size, so it is started by forking flowc.
    let part = format!("\"{}\"", "x".repeat(60_000));
    let args = [part.as_str(); 3].join(", ");
    let flow = format!(
        "skill main() {{\n  step big: run {{ argv: [\"sh\", \"-c\", \"touch started; sleep 2.0419; touch late\", \"sh\", {args}] }}\n}}\n"
    );
    killed_flowc_leaves_no_step(&flow, "2.0419", true);
}
