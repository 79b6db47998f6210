//! Executor overhead benchmark: `cargo bench --bench run`.
//!
//! Runs the release binary (`CARGO_BIN_EXE_flowc`) on generated flows with the
//! journal on, and reports wall time, time per step and peak RSS
//! (`/usr/bin/time -v`). Cases:
//! - 1,000 chained `script` steps (each adds one to the previous result);
//! - a fan-out of 10,000 `run` steps of `true` with `parallel: 2`, next to
//!   10,000 bare `sh -c true` spawns from Rust, two at a time, in the same run;
//! - the same fan-out with `FLOWC_NO_SPAWNER=1` (each step forks flowc);
//! - `--resume` of the finished 10,000-step run (nothing to do).
//!
//! Set `FLOWC_BENCH_STEPS` to change the fan-out size.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");

const POLICY: &str =
    "policy bench {\n  max_parallel: 2\n  max_steps: 100000\n  run_timeout: 2h\n}\n";

fn chain(n: usize) -> String {
    let mut s = String::from(POLICY);
    s.push_str(
        "skill main() -> int {\n  policy: bench\n  step s0: script { code: \"0\", output: int }\n",
    );
    for i in 1..n {
        writeln!(
            s,
            "  step s{i}: script {{ code: \"s{} + 1\", output: int }}",
            i - 1
        )
        .unwrap();
    }
    writeln!(s, "  return s{}\n}}", n - 1).unwrap();
    s
}

fn fan_out(n: usize) -> String {
    format!(
        "{POLICY}skill main() {{\n  policy: bench\n  for i in range_list {{\n    parallel: 2\n    step t: run {{ argv: [\"true\"] }}\n  }}\n  step range_list: script {{ code: \"let l = []; for i in 0..{n} {{ l.push(i) }} l\", output: [int] }}\n}}\n"
    )
}

/// Runs flowc with `/usr/bin/time -v`; returns (wall time, peak RSS in MB, exit code).
fn timed(dir: &Path, args: &[&str]) -> (Duration, f64, i32) {
    timed_with(dir, args, &[])
}

/// `timed` with extra environment variables.
fn timed_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Duration, f64, i32) {
    let time = Path::new("/usr/bin/time").exists();
    let mut cmd = if time {
        let mut c = Command::new("/usr/bin/time");
        c.arg("-v").arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    let start = Instant::now();
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_NO_SPAWNER")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let wall = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rss = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0);
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!(
            "flowc {args:?} exited {code}:\n{}",
            stderr.lines().rev().take(15).collect::<Vec<_>>().join("\n")
        );
    }
    (wall, rss, code)
}

/// `n` spawns of `argv`, two at a time.
fn bare_spawns(n: usize, argv: &[&str]) -> Duration {
    let spawn = || {
        Command::new(argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let a = spawn();
        let b = (done + 1 < n).then(spawn);
        let mut a = a;
        a.wait().unwrap();
        done += 1;
        if let Some(mut b) = b {
            b.wait().unwrap();
            done += 1;
        }
    }
    start.elapsed()
}

fn main() {
    let steps: usize = std::env::var("FLOWC_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chain.flow"), chain(1000)).unwrap();
    std::fs::write(dir.path().join("fan.flow"), fan_out(steps)).unwrap();

    println!("| case | steps | wall time | per step | peak RSS (MB) |");
    println!("|---|---:|---:|---:|---:|");
    let (t, rss, code) = timed(dir.path(), &["run", "chain.flow", "--no-input"]);
    assert_eq!(code, 0);
    println!(
        "| chain of `script` steps | 1,000 | {:.0} ms | {:.1} µs | {rss:.1} |",
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e6 / 1000.0
    );

    let bare = bare_spawns(steps, &["sh", "-c", "true"]);
    println!(
        "| bare `sh -c true` spawns from Rust, 2 at a time | {steps} | {:.0} ms | {:.1} µs | — |",
        bare.as_secs_f64() * 1e3,
        bare.as_secs_f64() * 1e6 / steps as f64
    );
    // The same isolation the sandbox gives a `run` step when a PID namespace
    // is available: `unshare` and a small `sh` as PID 1 around the command.
    let pid_ns: &[&str] = &[
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "--",
        "/bin/sh",
        "-c",
        "exec 3<&0; \"$@\" <&3 3<&- & wait $!",
        "flowc-init",
        "true",
    ];
    let isolated = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .status()
        .is_ok_and(|s| s.success())
        .then(|| bare_spawns(steps, pid_ns));
    if let Some(iso) = isolated {
        println!(
            "| bare spawns in a PID namespace (`unshare` + `sh` + `true`), 2 at a time | {steps} | {:.0} ms | {:.1} µs | — |",
            iso.as_secs_f64() * 1e3,
            iso.as_secs_f64() * 1e6 / steps as f64
        );
    }
    let (t, rss, code) = timed(dir.path(), &["run", "fan.flow", "--no-input"]);
    assert_eq!(code, 0);
    println!(
        "| fan-out of `run` steps (`true`), parallel 2 | {steps} | {:.0} ms | {:.1} µs | {rss:.1} |",
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e6 / steps as f64
    );
    println!(
        "ratio fan-out/bare: {:.2}",
        t.as_secs_f64() / bare.as_secs_f64()
    );
    if let Some(iso) = isolated {
        println!(
            "ratio fan-out/bare in a PID namespace: {:.2}",
            t.as_secs_f64() / iso.as_secs_f64()
        );
    }
    // The fallback: every step forks flowc itself (its page tables grow with the run).
    let (f, frss, code) = timed_with(
        dir.path(),
        &["run", "fan.flow", "--no-input"],
        &[("FLOWC_NO_SPAWNER", "1")],
    );
    assert_eq!(code, 0);
    println!(
        "| the same fan-out with `FLOWC_NO_SPAWNER=1` (fork of flowc per step) | {steps} | {:.0} ms | {:.1} µs | {frss:.1} |",
        f.as_secs_f64() * 1e3,
        f.as_secs_f64() * 1e6 / steps as f64
    );
    let out = Command::new(BIN)
        .args(["runs"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let run = text
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (t, rss, code) = timed(dir.path(), &["run", "--resume", &run, "--no-input"]);
    assert_eq!(code, 0);
    println!(
        "| `--resume` of the finished fan-out | {steps} | {:.0} ms | — | {rss:.1} |",
        t.as_secs_f64() * 1e3
    );
}
