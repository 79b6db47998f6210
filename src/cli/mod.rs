//! The command line: argument parsing and one module per subcommand.

mod check;
mod compile;
mod doctor;
mod explain;
mod graph;
mod inspect;
mod progress;
mod queue;
mod rollback;
mod run;
mod secret;

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
    /// Run a skill, or continue a run with --resume.
    #[command(
        after_help = "Examples:\n  flowc run workflows/repo_health.flow\n  flowc run workflows/fix_failing_test.flow -i test=parser::tests::empty\n  flowc run release.flow --inputs inputs.yaml --no-input\n  flowc run --resume                 continue the latest unfinished run\n  flowc run --resume 20261121-1030 --explain\n\nExit status: 0 succeeded, 1 failed, 2 usage or compile error, 75 paused (a person must decide), 130 interrupted."
    )]
    Run(run::RunArgs),
    /// List runs in the journal, newest first.
    #[command(after_help = "Examples:\n  flowc runs\n  flowc runs --json | jq '.[0].id'")]
    Runs(inspect::RunsArgs),
    /// Show every step instance of a run: status, attempts, duration, last error.
    #[command(
        after_help = "Examples:\n  flowc status 20261121-103000-ab12cd\n  flowc status 2026 --json"
    )]
    Status(inspect::StatusArgs),
    /// Show a run's events and step output.
    #[command(
        after_help = "Examples:\n  flowc log RUN\n  flowc log RUN build --attempt 2\n  flowc log RUN 'repair#2/verify'"
    )]
    Log(inspect::LogArgs),
    /// Rebuild a run's state from its events and compare it with the stored state.
    #[command(after_help = "Exit status: 0 when the journal verifies, 1 listing every difference.")]
    Replay(inspect::ReplayArgs),
    /// List items waiting for a person, across runs.
    #[command(after_help = "Examples:\n  flowc approvals\n  flowc approvals --json")]
    Approvals(queue::ApprovalsArgs),
    /// Approve a waiting approval step or policy approval.
    #[command(
        after_help = "Examples:\n  flowc approve RUN review --comment 'looks good'\n  flowc run --resume RUN"
    )]
    Approve(queue::DecideArgs),
    /// Reject a waiting item (for an escalation: abort the run).
    #[command(
        after_help = "Examples:\n  flowc reject RUN review --reason 'touches the public API'"
    )]
    Reject(queue::DecideArgs),
    /// Give an escalated step a fresh budget of attempts.
    #[command(after_help = "Examples:\n  flowc retry RUN deploy\n  flowc run --resume RUN")]
    Retry(queue::DecideArgs),
    /// Skip an escalated step, optionally giving its result.
    #[command(
        after_help = "Examples:\n  flowc skip RUN flaky_check\n  flowc skip RUN fetch --output '{\"exit_code\": 0, \"stdout\": \"\", \"stderr\": \"\", \"duration\": 0, \"output\": null}'"
    )]
    Skip(queue::DecideArgs),
    /// Restore the files a `run` step's `snapshot:` saved before its attempt.
    #[command(
        after_help = "Files matching the step's globs are written back as they were (contents and modes), and files the step created there are removed.\n\nExamples:\n  flowc rollback RUN apply\n  flowc rollback RUN 'repair#2/apply' --attempt 1"
    )]
    Rollback(rollback::RollbackArgs),
    /// Manage the encrypted secret store that `secret("NAME")` reads after the environment.
    #[command(
        after_help = "The store is encrypted with a key derived from $FLOWC_SECRETS_KEY (a passphrase) or the file named by $FLOWC_SECRETS_KEY_FILE.\n\nExamples:\n  printf %s \"$TOKEN\" | flowc secret set GITHUB_TOKEN\n  flowc secret list\n  flowc secret rm GITHUB_TOKEN"
    )]
    Secret(secret::SecretArgs),
    /// Explain a diagnostic code, with an example; without a code, list them all.
    #[command(after_help = "Examples:\n  flowc explain E0301\n  flowc explain")]
    Explain {
        /// A code such as `E0301` or `W0002`.
        code: Option<String>,
    },
    /// Show which sandbox layers this machine supports for `run` steps.
    #[command(after_help = "Examples:\n  flowc doctor\n  flowc doctor --json")]
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
/// Whether these arguments (without the program name) ask for `flowc run`:
/// decided before parsing, so the spawner can be forked before any thread starts.
pub fn runs_steps(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--color") => {
                args.next();
            }
            Some(a) if a.starts_with('-') => {}
            Some(a) => return a == "run",
            None => return false,
        }
    }
    false
}

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
        Command::Run(args) => run::run(&args, color),
        Command::Runs(args) => inspect::runs(&args),
        Command::Status(args) => inspect::status(&args),
        Command::Log(args) => inspect::log(&args),
        Command::Replay(args) => inspect::replay(&args),
        Command::Approvals(args) => queue::approvals(&args),
        Command::Approve(args) => queue::decide(queue::Verb::Approve, &args),
        Command::Reject(args) => queue::decide(queue::Verb::Reject, &args),
        Command::Retry(args) => queue::decide(queue::Verb::Retry, &args),
        Command::Skip(args) => queue::decide(queue::Verb::Skip, &args),
        Command::Secret(args) => secret::run(&args),
        Command::Rollback(args) => rollback::run(&args),
        Command::Explain { code } => explain::run(code.as_deref()),
        Command::Doctor { json } => doctor::run(json),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flowc", &mut buf);
            write_stdout(&buf)
        }
    };
    ExitCode::from(code)
}

/// Where the journal is: `--journal`, else `FLOWC_JOURNAL`, else `.flowc/journal.db`.
#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// The journal database (default: `$FLOWC_JOURNAL`, else `.flowc/journal.db`).
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,
}

/// The default journal location, under the current directory.
pub const DEFAULT_JOURNAL: &str = ".flowc/journal.db";

impl JournalArgs {
    /// The journal path to use.
    pub fn path(&self) -> PathBuf {
        self.journal
            .clone()
            .or_else(|| {
                std::env::var_os("FLOWC_JOURNAL")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_JOURNAL))
    }

    /// Whether the default location is used (so messages need not repeat it).
    pub fn is_default(&self) -> bool {
        self.path() == std::path::Path::new(DEFAULT_JOURNAL)
    }

    /// Creates `.flowc/` for the default location; other directories must exist.
    pub fn ensure_dir(&self) -> Result<(), String> {
        let path = self.path();
        let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return Ok(());
        };
        if dir.is_dir() {
            return Ok(());
        }
        if self.is_default() {
            return std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()));
        }
        Err(format!(
            "the journal's directory `{}` does not exist; create it or pass another `--journal PATH`",
            dir.display()
        ))
    }
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
