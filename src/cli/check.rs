//! `flowc check`.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, collect_files, term_width, write_stdout};
use crate::check::{CheckOutput, FsLoader, check_files};
use crate::diag::{Format, RenderOptions, Severity, render, render_json_value};
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
}

/// Runs the check and prints the report.
pub fn run(args: &CheckArgs, color: bool) -> u8 {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let files = match collect_files(&paths) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    let out = check_files(&FsLoader, &files);
    print_report(&out, args, color, files.len());
    if !out.unreadable.is_empty() {
        return EXIT_USAGE;
    }
    let errors = out.count(Severity::Error);
    let warnings = out.count(Severity::Warning);
    // Freeing the programs of a large check takes a noticeable share of the
    // run (one free per IR node, expression and string); the process is about
    // to exit, so do it off the critical path.
    std::thread::spawn(move || drop(out));
    if errors > 0 || (args.deny_warnings && warnings > 0) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn summary_line(files: usize, errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "checked {}: {}, {}",
        plural(files, "file"),
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

fn print_report(out: &CheckOutput, args: &CheckArgs, color: bool, files: usize) {
    let errors = out.count(Severity::Error);
    let warnings = out.count(Severity::Warning);
    for (path, reason) in &out.unreadable {
        eprintln!("error: cannot read `{path}`: {reason}");
    }
    match args.format {
        Format::Human => {
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
            if args.summary {
                let mut s = String::new();
                for file in &out.files {
                    if let Some(program) = &file.program {
                        s.push_str(&format!("# {}\n{}\n", file.path, program.summary()));
                    }
                }
                write_stdout(s.as_bytes());
            }
            eprintln!("{}", summary_line(files, errors, warnings));
        }
        Format::Json => {
            let diagnostics: Vec<serde_json::Value> = out
                .diagnostics
                .iter()
                .map(|d| render_json_value(d, &out.sources))
                .collect();
            let report = serde_json::json!({
                "files": files,
                "errors": errors,
                "warnings": warnings,
                "unreadable": out.unreadable.iter().map(|(p, r)| serde_json::json!({"file": p, "reason": r})).collect::<Vec<_>>(),
                "diagnostics": diagnostics,
            });
            write_stdout(format!("{report:#}\n").as_bytes());
        }
        Format::Github => {
            let opts = RenderOptions {
                color: false,
                width: 100,
            };
            let mut text = String::new();
            for diag in &out.diagnostics {
                text.push_str(&render(diag, &out.sources, Format::Github, opts));
                text.push('\n');
            }
            text.push_str(&summary_line(files, errors, warnings));
            text.push('\n');
            write_stdout(text.as_bytes());
        }
    }
}
