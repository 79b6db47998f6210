//! The built binary: exit codes, output formats, directory walking, explain, graph.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn flowc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CLEAN: &str = "skill main() {\n  step hello: run { command: \"echo hello\" }\n}\n";
const BROKEN: &str = "skill main() {\n  step verify: run {\n    command: \"cargo test\"\n    accept: exit_code == \"0\"\n  }\n}\n";
const WARNS: &str =
    "skill main(unused: string) {\n  step hello: run { command: \"echo hello\" }\n}\n";

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

#[test]
fn clean_directory_exits_zero_with_summary() {
    let dir = project(&[
        ("a.flow", CLEAN),
        ("sub/b.flow", CLEAN),
        ("notes.txt", "not a flow"),
    ]);
    let out = flowc(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("checked 2 files: 0 errors, 0 warnings"));
}

#[test]
fn errors_exit_one_and_render_the_span() {
    let dir = project(&[("bad.flow", BROKEN)]);
    let out = flowc(dir.path(), &["check", "bad.flow"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("E0305"), "{err}");
    assert!(err.contains("cannot compare `int` with `string`"), "{err}");
    assert!(err.contains("bad.flow:4:13"), "{err}");
    assert!(
        err.contains("write the number without quotes: `0`"),
        "{err}"
    );
    assert!(err.contains("checked 1 file: 1 error, 0 warnings"), "{err}");
}

#[test]
fn json_format_is_machine_readable() {
    let dir = project(&[("bad.flow", BROKEN), ("ok.flow", CLEAN)]);
    let out = flowc(dir.path(), &["check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"], 2);
    assert_eq!(report["errors"], 1);
    let diag = &report["diagnostics"][0];
    assert_eq!(diag["code"], "E0305");
    assert_eq!(diag["severity"], "error");
    assert_eq!(diag["line"], 4);
    assert_eq!(diag["column"], 13);
    assert!(diag["file"].as_str().unwrap().ends_with("bad.flow"));
}

#[test]
fn github_format_prints_annotations() {
    let dir = project(&[("bad.flow", BROKEN)]);
    let out = flowc(dir.path(), &["check", "--format", "github", "bad.flow"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let line = stdout.lines().next().unwrap();
    assert!(
        line.starts_with("::error file=bad.flow,line=4,col=13,"),
        "{line}"
    );
    assert!(
        line.contains("::E0305: cannot compare `int` with `string`"),
        "{line}"
    );
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let dir = project(&[("w.flow", WARNS)]);
    let out = flowc(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("W0003"));
    let out = flowc(dir.path(), &["check", "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_path_is_a_usage_error() {
    let dir = project(&[]);
    let out = flowc(dir.path(), &["check", "nope.flow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read `nope.flow`"));
    let out = flowc(dir.path(), &["check", "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn directory_walk_honours_gitignore() {
    let dir = project(&[
        (".gitignore", "generated/\n"),
        ("generated/bad.flow", BROKEN),
        ("ok.flow", CLEAN),
    ]);
    let out = flowc(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("checked 1 file"));
}

#[test]
fn invalid_utf8_is_a_diagnostic_not_a_crash() {
    let dir = project(&[]);
    std::fs::write(dir.path().join("bin.flow"), b"skill main() { \xff\xfe }").unwrap();
    let out = flowc(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("E0101"));
}

#[test]
fn explain_prints_every_code_and_rejects_unknown_ones() {
    let dir = project(&[]);
    for code in flowc::diag::Code::ALL {
        let out = flowc(dir.path(), &["explain", code.as_str()]);
        assert_eq!(out.status.code(), Some(0));
        let body = text(&out.stdout);
        assert!(
            body.starts_with(&format!("{}: {}", code.as_str(), code.title())),
            "{body}"
        );
        assert!(body.contains("```"), "{} has no example", code.as_str());
    }
    let out = flowc(dir.path(), &["explain", "E9999"]);
    assert_eq!(out.status.code(), Some(2));
    let out = flowc(dir.path(), &["explain"]);
    assert!(text(&out.stdout).contains("E0501"));
}

#[test]
fn graph_prints_dot_and_mermaid_with_blocks_as_clusters() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = flowc(root, &["graph", "workflows/fix_failing_test.flow"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph \"fix_failing_test\""));
    assert!(dot.contains("subgraph cluster_repair"));
    assert!(dot.contains("n_plan -> n_review"));
    let out = flowc(
        root,
        &[
            "graph",
            "workflows/fix_failing_test.flow",
            "--format",
            "mermaid",
        ],
    );
    let mermaid = text(&out.stdout);
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("subgraph n_repair"));
    let out = flowc(root, &["graph", "workflows/fix_failing_test.flow", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn completions_are_generated() {
    let dir = project(&[]);
    for shell in ["bash", "zsh", "fish"] {
        let out = flowc(dir.path(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        assert!(text(&out.stdout).contains("flowc"));
    }
}

#[test]
fn a_diagnostic_past_column_65535_is_rendered_not_a_crash() {
    // 17,000 tabs then an unknown field: miette would panic on the column.
    let body = format!(
        "skill main() {{\n{}step a: run {{ command: \"x\", bogus: 1 }}\n}}\n",
        "\t".repeat(17_000)
    );
    let dir = project(&[("tabs.flow", &body)]);
    let out = flowc(dir.path(), &["check", "tabs.flow"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("E0307"), "{err}");
    assert!(err.contains("unknown field `bogus`"), "{err}");
    assert!(err.contains("tabs.flow:2:17029"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs the binary, failing the test (instead of hanging CI) after 20 seconds.
fn flowc_within(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("flowc {args:?} hung; stderr: {}", text(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_at_the_journal_path_is_an_error_not_a_hang() {
    let dir = project(&[("a.flow", CLEAN)]);
    let fifo = dir.path().join("fifo.db");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for args in [
        &["runs", "--journal", "fifo.db"][..],
        &["status", "r", "--journal", "fifo.db"],
        &["approvals", "--journal", "fifo.db"],
        &["run", "a.flow", "--journal", "fifo.db"],
    ] {
        let out = flowc_within(dir.path(), args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is a FIFO, not a regular file"), "{err}");
    }
}

#[test]
fn a_one_byte_journal_is_refused_and_kept() {
    let dir = project(&[("a.flow", CLEAN), ("j.db", "x")]);
    for args in [
        &["run", "a.flow", "--journal", "j.db"][..],
        &["runs", "--journal", "j.db"],
    ] {
        let out = flowc_within(dir.path(), args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is a 1-byte file that is not an SQLite database"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(dir.path().join("j.db")).unwrap(), b"x");
}
