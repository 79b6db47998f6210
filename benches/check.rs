//! Checker scaling benchmark: `cargo bench --bench check`.
//!
//! Generates workflows in a temporary directory and, for each case, times
//! `flowc::check::check_files` in-process (best of 3; one run for 100k steps)
//! and measures the peak RSS of `flowc check <path>` run as a child process
//! (the release binary cargo builds for benches, `CARGO_BIN_EXE_flowc`).
//! Peak RSS comes from `/usr/bin/time -v` when present, otherwise from polling
//! `/proc/<pid>/status` (VmHWM), which may miss a very short-lived peak.
//!
//! `check_files` runs on a thread with a 64 MiB stack, as `flowc` itself does
//! (src/main.rs): on the default 8 MiB main-thread stack a 100k-step chain
//! overflows the stack (see docs/performance.md).
//!
//! The second table times pathological shapes from issue 12 (a chain of
//! skills calling each other, a dependency cycle through every step, duplicate
//! step names, a huge string union, long flat operator chains), each at two
//! sizes ten times apart: the checker must be near-linear in each, and so must
//! rendering its diagnostics (`render`, human format, all of them).
//!
//! Set `FLOWC_BENCH_QUICK=1` to skip the 100k-step cases.
#![allow(clippy::unwrap_used)]

use flowc::check::{FsLoader, check_files};
use flowc::diag::{Format, RenderOptions, Severity, render};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One skill whose steps form a chain: each reads the previous one.
fn chain(n: usize) -> String {
    let mut s = String::with_capacity(n * 110);
    s.push_str("skill chain() {\n  step s0: run { command: \"echo 0\", accept: exit_code == 0 }\n");
    for i in 1..n {
        let p = i - 1;
        writeln!(
            s,
            "  step s{i}: run {{ command: \"echo {{{{ s{p}.stdout }}}}\", accept: exit_code == 0 && s{p}.stdout != \"\" }}"
        )
        .unwrap();
    }
    s.push_str("}\n");
    s
}

/// One skill whose steps all read one root step.
fn fanout(n: usize) -> String {
    let mut s = String::with_capacity(n * 110);
    s.push_str(
        "skill fanout() {\n  step root: run { command: \"echo 0\", accept: exit_code == 0 }\n",
    );
    for i in 1..n {
        writeln!(
            s,
            "  step s{i}: run {{ command: \"echo {{{{ root.stdout }}}}\", accept: exit_code == 0 && root.stdout != \"\" }}"
        )
        .unwrap();
    }
    s.push_str("}\n");
    s
}

/// Skill `k{i}` calls `k{i+1}`: `n` skills, calls nested `n` deep.
fn skill_chain(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n - 1 {
        writeln!(s, "skill k{i}() {{\n  step c: call k{} {{}}\n}}", i + 1).unwrap();
    }
    writeln!(
        s,
        "skill k{}() {{\n  step c: run {{ command: \"echo\" }}\n}}",
        n - 1
    )
    .unwrap();
    s
}

/// Step `s{i}` reads `s{i+1}`, and the last reads the first: one cycle of `n`.
fn cycle(n: usize) -> String {
    let mut s = String::from("skill cyc() {\n");
    for i in 0..n {
        let next = (i + 1) % n;
        writeln!(
            s,
            "  step s{i}: run {{ command: \"echo {{{{ s{next}.stdout }}}}\" }}"
        )
        .unwrap();
    }
    s.push_str("}\n");
    s
}

/// `n` steps all named `a`.
fn duplicates(n: usize) -> String {
    format!(
        "skill d() {{\n{}}}\n",
        "  step a: run { command: \"echo\" }\n".repeat(n)
    )
}

/// A record field typed by a union of `n` strings, read through a step's output.
fn union(n: usize) -> String {
    let members: Vec<String> = (0..n).map(|i| format!("\"m{i}\"")).collect();
    format!(
        "type Big {{\n  v: {}\n}}\nskill u(x: Big) -> Big {{\n  step a: run {{ command: \"echo {{{{ x.v }}}}\", output: Big }}\n  return {{ v: a.output.v }}\n}}\n",
        members.join(" | ")
    )
}

/// An `accept` of `n` operands joined by `op` (a flat, left-deep chain).
fn operator_chain(op: &str, operand: &str, n: usize) -> String {
    let chain = vec![operand; n].join(op);
    format!("skill p() {{\n  step a: run {{ command: \"echo\", accept: {chain} == {chain} }}\n}}\n")
}

struct Case {
    name: &'static str,
    steps: usize,
    /// What `flowc check` is given (a file or a directory).
    target: PathBuf,
    /// The files `check_files` is given.
    roots: Vec<PathBuf>,
    runs: usize,
}

struct Row {
    name: &'static str,
    steps: usize,
    time: Duration,
    rss_mb: Option<f64>,
    errors: usize,
}

fn time_check(roots: &[PathBuf], runs: usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut errors = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let owned = roots.to_vec();
        let out = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || check_files(&FsLoader, &owned))
            .unwrap()
            .join()
            .unwrap();
        let took = start.elapsed();
        errors = out.count(Severity::Error) + out.unreadable.len();
        drop(out);
        best = best.min(took);
    }
    (best, errors)
}

/// Peak resident set size of `flowc check <target>`, in MB.
fn peak_rss_mb(bin: &Path, target: &Path) -> Option<f64> {
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let out = Command::new(time)
            .arg("-v")
            .arg(bin)
            .args(["check", "--color", "never"])
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .ok()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let kb: f64 = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))?
            .trim()
            .parse()
            .ok()?;
        return Some(kb / 1024.0);
    }
    // Fallback: poll VmHWM until the child exits.
    let mut child = Command::new(bin)
        .args(["check", "--color", "never"])
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0.0f64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if child.try_wait().ok()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Some(peak_kb / 1024.0)
}

/// Best of 3: checking `path`, then rendering every diagnostic (human format).
fn time_check_and_render(path: &Path) -> (Duration, Duration, usize) {
    let (mut check, mut render_time, mut errors) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..3 {
        let roots = vec![path.to_path_buf()];
        let (took, rendered, n) = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                let start = Instant::now();
                let out = check_files(&FsLoader, &roots);
                let took = start.elapsed();
                let start = Instant::now();
                let opts = RenderOptions {
                    color: false,
                    width: 100,
                };
                let bytes: usize = out
                    .diagnostics
                    .iter()
                    .map(|d| render(d, &out.sources, Format::Human, opts).len())
                    .sum();
                assert!(out.diagnostics.is_empty() || bytes > 0);
                (took, start.elapsed(), out.count(Severity::Error))
            })
            .unwrap()
            .join()
            .unwrap();
        check = check.min(took);
        render_time = render_time.min(rendered);
        errors = n;
    }
    (check, render_time, errors)
}

/// A shape's name, its smaller size, and its generator.
type Shape<'a> = (&'a str, usize, &'a dyn Fn(usize) -> String);

/// Times the issue-12 shapes at two sizes each and prints their table.
fn shapes(root: &Path) {
    let and_chain = |n| operator_chain(" && ", "true", n);
    let plus_chain = |n| operator_chain(" + ", "1", n);
    let cases: [Shape<'_>; 6] = [
        ("skill chain", 1_000, &skill_chain),
        ("step cycle", 1_000, &cycle),
        ("duplicate names", 1_000, &duplicates),
        ("string union", 10_000, &union),
        ("`1 + 1 + …`", 10_000, &plus_chain),
        ("`true && true …`", 4_000, &and_chain),
    ];
    println!();
    println!("| shape | n | check (ms) | render (ms) | errors | check ×10 | render ×10 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, small, make) in cases {
        let mut prev: Option<(Duration, Duration)> = None;
        for n in [small, small * 10] {
            eprintln!("checking {name} ({n})...");
            let path = root.join(format!("shape_{n}.flow"));
            std::fs::write(&path, make(n)).unwrap();
            let (check, rendered, errors) = time_check_and_render(&path);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let times = |a: Duration, b: Duration| format!("{:.1}×", ms(a) / ms(b).max(1e-3));
            let (rc, rr) = prev.map_or((String::new(), String::new()), |(c, r)| {
                (times(check, c), times(rendered, r))
            });
            println!(
                "| {name} | {n} | {:.1} | {:.1} | {errors} | {rc} | {rr} |",
                ms(check),
                ms(rendered)
            );
            prev = Some((check, rendered));
        }
    }
}

fn ratio(rows: &[Row], name: &str, big: usize, small: usize) -> Option<f64> {
    let t = |n| {
        rows.iter()
            .find(|r| r.name == name && r.steps == n)
            .map(|r| r.time.as_secs_f64())
    };
    Some(t(big)? / t(small)?)
}

fn main() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_flowc"));
    let quick = std::env::var_os("FLOWC_BENCH_QUICK").is_some();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let mut cases = Vec::new();
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    for &n in sizes {
        let runs = if n >= 100_000 { 1 } else { 3 };
        for (name, text) in [("chain", chain(n)), ("fan-out", fanout(n))] {
            let path = root.join(format!("{name}_{n}.flow"));
            std::fs::write(&path, text).unwrap();
            cases.push(Case {
                name,
                steps: n,
                target: path.clone(),
                roots: vec![path],
                runs,
            });
        }
    }
    // A tree of 1,000 files in 10 directories, each one skill of 100 steps.
    let tree = root.join("tree");
    let mut tree_roots = Vec::new();
    for d in 0..10 {
        let sub = tree.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            let path = sub.join(format!("f{f}.flow"));
            std::fs::write(&path, chain(100)).unwrap();
            tree_roots.push(path);
        }
    }
    cases.push(Case {
        name: "tree 1000×100",
        steps: 100_000,
        target: tree,
        roots: tree_roots,
        runs: 3,
    });

    let mut rows = Vec::new();
    for case in &cases {
        eprintln!("checking {} ({} steps)...", case.name, case.steps);
        let (time, errors) = time_check(&case.roots, case.runs);
        let rss_mb = peak_rss_mb(&bin, &case.target);
        rows.push(Row {
            name: case.name,
            steps: case.steps,
            time,
            rss_mb,
            errors,
        });
    }

    println!("| case | steps | time (ms) | µs per step | peak RSS (MB) | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        let ms = r.time.as_secs_f64() * 1e3;
        let us = r.time.as_secs_f64() * 1e6 / r.steps as f64;
        let rss = r.rss_mb.map_or("n/a".to_string(), |m| format!("{m:.1}"));
        println!(
            "| {} | {} | {ms:.1} | {us:.2} | {rss} | {} |",
            r.name, r.steps, r.errors
        );
    }
    println!();
    println!("| case | time 10k/1k | time 100k/10k |");
    println!("|---|---:|---:|");
    for name in ["chain", "fan-out"] {
        let fmt = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.1}×"));
        println!(
            "| {name} | {} | {} |",
            fmt(ratio(&rows, name, 10_000, 1_000)),
            fmt(ratio(&rows, name, 100_000, 10_000))
        );
    }
    shapes(root);
}
