//! The command line: argument parsing and one module per subcommand.

mod check;
mod explain;
mod graph;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when diagnostics (or a failed run) were reported.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for usage errors and unreadable files.
pub const EXIT_USAGE: u8 = 2;

/// flowc compiles and runs declarative workflows (`.flow` files).
#[derive(Debug, Parser)]
#[command(name = "flowc", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Examples:\n  flowc check                      check every .flow file under the current directory\n  flowc check workflows --format github\n  flowc graph workflows/release.flow --format mermaid\n  flowc explain E0301"
)]
pub struct Cli {
    /// When to use colours in human output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and type-check .flow files, reporting every mistake.
    #[command(
        after_help = "Examples:\n  flowc check                       every .flow file under the current directory (honours .gitignore)\n  flowc check workflows stdlib\n  flowc check --format json > report.json\n  flowc check --format github --deny-warnings   annotations in GitHub Actions\n\nExit status: 0 clean, 1 diagnostics reported, 2 usage error or unreadable file."
    )]
    Check(check::CheckArgs),
    /// Print the compiled graph of a skill as Graphviz dot or Mermaid.
    #[command(
        after_help = "Examples:\n  flowc graph workflows/fix_failing_test.flow | dot -Tsvg > flow.svg\n  flowc graph workflows/release.flow release --format mermaid"
    )]
    Graph(graph::GraphArgs),
    /// Explain a diagnostic code, with an example; without a code, list them all.
    #[command(after_help = "Examples:\n  flowc explain E0301\n  flowc explain")]
    Explain {
        /// A code such as `E0301` or `W0002`.
        code: Option<String>,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  flowc completions bash > /etc/bash_completion.d/flowc\n  flowc completions zsh > \"${fpath[1]}/_flowc\"\n  flowc completions fish > ~/.config/fish/completions/flowc.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                EXIT_USAGE
            } else {
                EXIT_OK
            });
        }
    };
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let code = match cli.command {
        Command::Check(args) => check::run(&args, color),
        Command::Graph(args) => graph::run(&args, color),
        Command::Explain { code } => explain::run(code.as_deref()),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flowc", &mut buf);
            write_stdout(&buf)
        }
    };
    ExitCode::from(code)
}

/// Writes to stdout; a closed pipe is not an error worth reporting.
pub fn write_stdout(bytes: &[u8]) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            EXIT_FAILED
        }
    }
}

/// The width for human diagnostics: `COLUMNS`, else 100.
pub fn term_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w: &usize| *w >= 40)
        .unwrap_or(100)
}

/// Every `.flow` file under `paths` (directories are walked honouring `.gitignore`).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        if !meta.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        let walker = ignore::WalkBuilder::new(path).require_git(false).build();
        for entry in walker {
            let entry = entry.map_err(|e| format!("cannot walk `{}`: {e}", path.display()))?;
            if entry.file_type().is_some_and(|t| t.is_file())
                && entry.path().extension().is_some_and(|e| e == "flow")
            {
                found.push(entry.into_path());
            }
        }
        found.sort();
        files.extend(found);
    }
    files.dedup();
    Ok(files)
}
