//! `flowc check`.

use super::against::Against;
use super::{CliResult, EXIT_FAILED, EXIT_OK, EXIT_USAGE, collect_files, term_width, write_stdout};
use crate::check::{CheckOutput, FsLoader, check_files};
use crate::diag::{Format, RenderOptions, Severity, github_file_error, render, render_json_value};
use std::path::PathBuf;

/// Arguments of `flowc check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Files and directories to check (directories are walked; default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Treat warnings as errors (exit 1 when there is any).
    #[arg(long)]
    pub deny_warnings: bool,
    /// Also print a summary of each compiled file (skills, policies, nodes and their order).
    #[arg(long)]
    pub summary: bool,
    /// Also print each skill's worst case: step attempts, model calls, output tokens and cost, wall time, and the policy caps they pass.
    #[arg(long)]
    pub bounds: bool,
    /// Say, for each unfinished run in this journal (a path) or for this run
    /// (an id, in `$FLOWC_JOURNAL` or `.flowc/journal.db`), which finished
    /// steps resuming it on the checked files would reuse and which it would run again.
    #[arg(long, value_name = "JOURNAL|RUN")]
    pub against: Option<String>,
    /// With --against: exit 1 when a run cannot survive the edit.
    #[arg(long, requires = "against")]
    pub deny_breaking: bool,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the check and prints the report: every readable file's diagnostics,
/// and every path that could not be read (exit 2 when there is one).
pub fn run(args: &CheckArgs, color: bool) -> CliResult {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let collected = collect_files(&paths);
    let mut out = check_files(&FsLoader, &collected.files);
    let mut unreadable = collected.unreadable;
    unreadable.append(&mut out.unreadable);
    out.unreadable = unreadable;
    // A file with errors has no program to compare; its errors say why.
    let against = match &args.against {
        Some(value) if out.count(Severity::Error) == 0 => {
            Some(super::against::predict_all(&out, value)?)
        }
        _ => None,
    };
    print_report(&out, args, color, collected.files.len(), against.as_ref());
    let breaking = against.as_ref().is_some_and(|a| a.breaking() > 0);
    let errors = out.count(Severity::Error);
    let warnings = out.count(Severity::Warning);
    let unreadable = !out.unreadable.is_empty();
    // Freeing the programs of a large check takes a noticeable share of the
    // run (one free per IR node, expression and string); the process is about
    // to exit, so do it off the critical path.
    std::thread::spawn(move || drop(out));
    Ok(if unreadable {
        EXIT_USAGE
    } else if errors > 0 || (args.deny_warnings && warnings > 0) || (args.deny_breaking && breaking)
    {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

fn summary_line(out: &CheckOutput, files: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut line = format!(
        "checked {}: {}, {}",
        plural(files, "file"),
        plural(out.count(Severity::Error), "error"),
        plural(out.count(Severity::Warning), "warning")
    );
    if !out.unreadable.is_empty() {
        line.push_str(&format!(
            ", {} not readable",
            plural(out.unreadable.len(), "path")
        ));
    }
    line
}

fn print_report(
    out: &CheckOutput,
    args: &CheckArgs,
    color: bool,
    files: usize,
    against: Option<&Against>,
) {
    for (path, reason) in &out.unreadable {
        eprintln!("error: cannot read `{path}`: {reason}");
    }
    let format = if args.json { Format::Json } else { args.format };
    // The output goes out whole; a closed pipe or full disk is not worth a second report.
    let _ = match format {
        Format::Human => print_human(out, args, color, files, against),
        Format::Json => print_json(out, files, args.bounds, against),
        Format::Github => print_github(out, files, against),
    };
}

fn print_human(
    out: &CheckOutput,
    args: &CheckArgs,
    color: bool,
    files: usize,
    against: Option<&Against>,
) -> CliResult {
    let opts = RenderOptions {
        color,
        width: term_width(),
    };
    let mut text = String::new();
    for diag in &out.diagnostics {
        text.push_str(&render(diag, &out.sources, Format::Human, opts));
        text.push('\n');
    }
    eprint!("{text}");
    if args.bounds {
        write_stdout(super::bounds::text(out).as_bytes())?;
    }
    if let Some(a) = against {
        write_stdout(super::against::text(a).as_bytes())?;
    }
    if args.summary {
        let mut s = String::new();
        for file in &out.files {
            if let Some(program) = &file.program {
                s.push_str(&format!("# {}\n{}\n", file.path, program.summary()));
            }
        }
        write_stdout(s.as_bytes())?;
    }
    eprintln!("{}", summary_line(out, files));
    Ok(EXIT_OK)
}

fn print_json(
    out: &CheckOutput,
    files: usize,
    bounds: bool,
    against: Option<&Against>,
) -> CliResult {
    let diagnostics: Vec<serde_json::Value> = out
        .diagnostics
        .iter()
        .map(|d| render_json_value(d, &out.sources))
        .collect();
    let unreadable: Vec<serde_json::Value> = out
        .unreadable
        .iter()
        .map(|(p, r)| serde_json::json!({"file": p, "reason": r}))
        .collect();
    let mut report = serde_json::json!({
        "files": files,
        "errors": out.count(Severity::Error),
        "warnings": out.count(Severity::Warning),
        "unreadable": unreadable,
        "diagnostics": diagnostics,
    });
    if bounds {
        report["bounds"] = super::bounds::json(out);
    }
    if let Some(a) = against {
        report["against"] = super::against::json(a);
    }
    write_stdout(format!("{report:#}\n").as_bytes())
}

fn print_github(out: &CheckOutput, files: usize, against: Option<&Against>) -> CliResult {
    let opts = RenderOptions {
        color: false,
        width: 100,
    };
    let mut text = String::new();
    for (path, reason) in &out.unreadable {
        let message = format!("cannot read `{path}`: {reason}");
        text.push_str(&github_file_error(path, "flowc", &message));
        text.push('\n');
    }
    for diag in &out.diagnostics {
        text.push_str(&render(diag, &out.sources, Format::Github, opts));
        text.push('\n');
    }
    text.push_str(&summary_line(out, files));
    text.push('\n');
    if let Some(a) = against {
        text.push_str(&super::against::text(a));
    }
    write_stdout(text.as_bytes())
}
