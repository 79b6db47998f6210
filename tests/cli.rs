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
        let title = format!("{}: {}", code.as_str(), code.title());
        assert!(body.starts_with(&title), "{body}");
        // Rendered for a terminal: no fences, no bold markers, the title once.
        assert!(!body.contains("```"), "{body}");
        assert!(!body.contains("**"), "{body}");
        assert_eq!(body.matches(code.title()).count(), 1, "{body}");
        assert!(body.contains("\n    "), "{} has no example", code.as_str());
        let out = flowc(dir.path(), &["explain", code.as_str(), "--markdown"]);
        assert!(
            text(&out.stdout).contains("```"),
            "{} has no example",
            code.as_str()
        );
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
fn check_reports_every_file_and_the_unreadable_one_in_each_format() {
    let dir = project(&[("typo.flow", BROKEN)]);
    let args = ["check", "typo.flow", "missing.flow"];
    let out = flowc(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("error: cannot read `missing.flow`"), "{err}");
    assert!(err.contains("E0305"), "{err}");
    assert!(
        err.contains("checked 1 file: 1 error, 0 warnings, 1 path not readable"),
        "{err}"
    );

    let out = flowc(
        dir.path(),
        &["check", "--format", "json", "typo.flow", "missing.flow"],
    );
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unreadable"][0]["file"], "missing.flow");
    assert!(
        report["unreadable"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("No such file")
    );
    assert_eq!(report["diagnostics"][0]["code"], "E0305");

    let out = flowc(
        dir.path(),
        &["check", "--format", "github", "typo.flow", "missing.flow"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("::error file=missing.flow,title=flowc::cannot read `missing.flow`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("::error file=typo.flow,line=4,col=13"),
        "{stdout}"
    );
}

#[test]
fn a_byte_order_mark_is_skipped_and_columns_stay_right() {
    let dir = project(&[]);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(WARNS.as_bytes());
    std::fs::write(dir.path().join("bom.flow"), bytes).unwrap();
    let out = flowc(dir.path(), &["check", "--format", "json", "bom.flow"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["errors"], 0);
    let diag = &report["diagnostics"][0];
    assert_eq!(diag["code"], "W0003");
    assert_eq!((&diag["line"], &diag["column"]), (&1.into(), &12.into()));
}

#[test]
fn flowcignore_excludes_paths_from_the_walk() {
    let dir = project(&[
        (".flowcignore", "# broken on purpose\n/fixtures/\n"),
        ("fixtures/bad.flow", BROKEN),
        ("sub/.flowcignore", "*.draft.flow\n"),
        ("sub/wip.draft.flow", BROKEN),
        ("sub/ok.flow", CLEAN),
    ]);
    let out = flowc(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("checked 1 file"));
    // Named directly, an ignored file is checked.
    let out = flowc(dir.path(), &["check", "fixtures/bad.flow"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bare_check_at_the_repository_root_is_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = flowc(root, &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn graph_expand_draws_called_skills_in_every_format() {
    let body = "skill main() {\n  step prep: run { command: \"true\" }\n  step sub: call helper { after: [prep] }\n}\n\nskill helper() {\n  step a: run { command: \"true\" }\n  step b: run { command: \"true\", after: [a] }\n}\n";
    let dir = project(&[("g.flow", body)]);
    let out = flowc(dir.path(), &["graph", "g.flow", "main"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("n_sub [label=\"sub: call helper\"]"));
    let out = flowc(dir.path(), &["graph", "g.flow", "main", "--expand"]);
    let dot = text(&out.stdout);
    assert!(dot.contains("subgraph cluster_sub {"), "{dot}");
    assert!(dot.contains("n_sub__a -> n_sub__b;"), "{dot}");
    assert!(
        dot.contains("n_prep -> n_sub__a [lhead=cluster_sub];"),
        "{dot}"
    );
    let out = flowc(
        dir.path(),
        &["graph", "g.flow", "main", "--expand", "--format", "mermaid"],
    );
    let mermaid = text(&out.stdout);
    assert!(
        mermaid.contains("subgraph n_sub[\"sub: call helper\"]"),
        "{mermaid}"
    );
    assert!(mermaid.contains("n_sub__a --> n_sub__b"), "{mermaid}");
    assert!(mermaid.contains("n_prep --> n_sub"), "{mermaid}");
}

#[test]
fn decide_commands_take_only_their_own_options() {
    let dir = project(&[]);
    for (cmd, foreign) in [
        ("approve", vec!["--reason", "--output"]),
        ("reject", vec!["--comment", "--output"]),
        ("retry", vec!["--comment", "--reason", "--output"]),
        ("skip", vec!["--comment", "--reason"]),
    ] {
        let help = text(&flowc(dir.path(), &[cmd, "--help"]).stdout);
        for option in &foreign {
            assert!(
                !help.contains(option),
                "`{cmd} --help` lists {option}:\n{help}"
            );
            let out = flowc(dir.path(), &[cmd, "RUN", "STEP", option, "x"]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {option}");
            assert!(
                text(&out.stderr).contains("unexpected argument"),
                "{cmd} {option}"
            );
        }
    }
    let help = text(&flowc(dir.path(), &["reject", "--help"]).stdout);
    assert!(help.contains("--reason <REASON>"), "{help}");
    let out = flowc(dir.path(), &["reject", "RUN", "STEP"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Runs `flowc run` of CLEAN in `dir` and returns the run id it printed.
fn run_clean(dir: &Path) -> String {
    let out = flowc(dir, &["run", "a.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let start = err.find("run ").unwrap() + 4;
    err[start..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn status_and_log_default_to_the_latest_run() {
    let dir = project(&[("a.flow", CLEAN)]);
    let out = flowc(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(2));
    run_clean(dir.path());
    let latest = run_clean(dir.path());
    let out = flowc(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("run {latest} ")));
    let out = flowc(dir.path(), &["log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello"));
    // A step alone is read as a run; the error says how to ask for the step.
    let out = flowc(dir.path(), &["log", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: no run `hello` in this journal"),
        "{err}"
    );
    assert!(err.contains(&format!("help: `hello` is a step of the latest run; name the run first: `flowc log {latest} hello`")), "{err}");
    let help = text(&flowc(dir.path(), &["status", "--help"]).stdout);
    assert!(help.contains("default: the latest run"), "{help}");
}

#[test]
fn an_ambiguous_run_prefix_is_a_usage_error_listing_the_runs() {
    let dir = project(&[("a.flow", CLEAN)]);
    let first = run_clean(dir.path());
    let second = run_clean(dir.path());
    for cmd in ["status", "log", "replay"] {
        let out = flowc(dir.path(), &[cmd, "2"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: `2` matches several runs: "),
            "{err}"
        );
        assert!(err.contains(&first) && err.contains(&second), "{err}");
        assert!(!err.contains("journal error"), "{err}");
    }
}

#[test]
fn reading_and_resuming_never_create_a_journal() {
    let dir = project(&[("a.flow", CLEAN)]);
    for args in [
        vec!["run", "--resume"],
        vec!["run", "--resume", "2026"],
        vec!["runs"],
        vec!["status"],
        vec!["log"],
        vec!["approvals"],
    ] {
        let out = flowc(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("no journal at `.flowc/journal.db`"),
            "{args:?}: {err}"
        );
        assert!(
            !dir.path().join(".flowc").exists(),
            "{args:?} created a journal"
        );
    }
}

#[test]
fn a_read_only_journal_can_be_inspected() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = project(&[("a.flow", CLEAN)]);
    let id = run_clean(dir.path());
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let state = dir.path().join(".flowc");
    for entry in std::fs::read_dir(&state).unwrap() {
        set(&entry.unwrap().path(), 0o444);
    }
    set(&state, 0o555);
    set(dir.path(), 0o755);
    for args in [
        vec!["runs"],
        vec!["status", id.as_str()],
        vec!["log", id.as_str()],
        vec!["approvals"],
        vec!["replay", id.as_str()],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowc"));
        cmd.args(&args).current_dir(dir.path()).env("NO_COLOR", "1");
        if nix::unistd::Uid::effective().is_root() {
            // Root writes anything; a plain user sees the permissions.
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    set(&state, 0o755);
}

#[test]
fn graph_shows_each_steps_description() {
    let flow = "skill main() {\n  step a: run { command: \"true\", description: \"say hi\" }\n}\n";
    let dir = project(&[("d.flow", flow)]);
    for format in ["dot", "mermaid"] {
        let out = flowc(dir.path(), &["graph", "d.flow", "--format", format]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("say hi"),
            "{format}: {}",
            text(&out.stdout)
        );
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
