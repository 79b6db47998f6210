//! The command line: argument parsing and one module per subcommand.

mod against;
mod analytics;
mod bounds;
mod cache;
mod check;
mod compile;
mod doctor;
mod error;
mod explain;
mod fmt;
mod gc;
mod graph;
mod inspect;
mod link;
mod memory;
mod people;
mod plan;
mod progress;
mod queue;
mod rollback;
mod run;
mod secret;
mod serve;
mod submit;

pub use error::{CliError, CliResult};

use crate::journal::Journal;
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
    /// Say, per step, whether a run would reuse a cached result or run it, and why; runs nothing (`flowc run --dry-run`).
    #[command(
        after_help = "Examples:\n  flowc plan workflows/shards/lint.flow\n  flowc plan lint.flow --json | jq '.steps[] | select(.reuse | not)'"
    )]
    Plan(run::RunArgs),
    /// The step cache beside the journal: stats, entries, removal, garbage collection.
    #[command(
        after_help = "Examples:\n  flowc cache stats\n  flowc cache ls --json\n  flowc cache rm --all\n  flowc cache gc --older-than 7d --max-size 500MiB"
    )]
    Cache(cache::CacheArgs),
    /// List runs in the journal, newest first.
    #[command(after_help = "Examples:\n  flowc runs\n  flowc runs --json | jq '.[0].id'")]
    Runs(inspect::RunsArgs),
    /// Show every step instance of a run (default: the latest): status, attempts, duration, last error.
    #[command(
        after_help = "Without RUN, the newest run in the journal is shown.\n\nExamples:\n  flowc status                      the latest run\n  flowc status 20261121-103000-ab12cd\n  flowc status 2026 --json"
    )]
    Status(inspect::StatusArgs),
    /// Show a run's events and step output (default: the latest run).
    #[command(
        after_help = "Without RUN, the newest run in the journal is shown; to pick a step, name the run too.\n\nExamples:\n  flowc log                         the latest run\n  flowc log RUN build --attempt 2\n  flowc log RUN 'repair#2/verify'\n  flowc log RUN 'for_area[3]/checksums'"
    )]
    Log(inspect::LogArgs),
    /// Rebuild a run's state from its events and compare it with the stored state.
    #[command(after_help = "Exit status: 0 when the journal verifies, 1 listing every difference.")]
    Replay(inspect::ReplayArgs),
    /// What keeps failing: failed attempts, rejected approvals and policy violations, grouped by step, class and a normalised error.
    #[command(
        after_help = "Failures group by (skill, step, class, signature): the signature is the error's first line with numbers, paths, ids and hex taken out, so the same failure on another day counts once more rather than once again.\n\nExamples:\n  flowc failures --since 7d\n  flowc failures --skill release --json | jq '.[0]'"
    )]
    Failures(analytics::FailuresArgs),
    /// Per skill and per step: runs, success rate, attempts per success, time p50/p95, failures by class, model tokens and cost.
    #[command(
        after_help = "Examples:\n  flowc stats\n  flowc stats --since 7d --skill release\n  flowc stats --json | jq '.[0].steps'"
    )]
    Stats(analytics::StatsArgs),
    /// List items waiting for a person, across runs.
    #[command(after_help = "Examples:\n  flowc approvals\n  flowc approvals --json")]
    Approvals(queue::ApprovalsArgs),
    /// Approve a waiting approval step or policy approval.
    #[command(
        after_help = "Examples:\n  flowc approve RUN review --comment 'looks good'\n  flowc run --resume RUN"
    )]
    Approve(queue::ApproveArgs),
    /// Reject a waiting item (for an escalation: abort the run).
    #[command(
        after_help = "Examples:\n  flowc reject RUN review --reason 'touches the public API'"
    )]
    Reject(queue::RejectArgs),
    /// Give an escalated step a fresh budget of attempts, or ask a rejected approval again.
    #[command(after_help = "Examples:\n  flowc retry RUN deploy\n  flowc run --resume RUN")]
    Retry(queue::RetryArgs),
    /// Skip an escalated step, optionally giving its result.
    #[command(
        after_help = "Examples:\n  flowc skip RUN flaky_check\n  flowc skip RUN fetch --output '{\"exit_code\": 0, \"stdout\": \"\", \"stderr\": \"\", \"duration\": 0, \"output\": null}'"
    )]
    Skip(queue::SkipArgs),
    /// Queue a run for `flowc serve`; prints its id.
    #[command(
        after_help = "The file is compiled and the inputs are typed now; the run appears in `flowc runs` as `queued` until a service claims it.\n\nExamples:\n  flowc submit workflows/repo_health.flow\n  flowc submit release.flow release -i version=1.4.0 --json"
    )]
    Submit(submit::SubmitArgs),
    /// Cancel a queued, paused or running run (running steps are killed and journaled `cancelled`).
    #[command(
        after_help = "A run no process drives is cancelled at once; a running one is cancelled by its own process, which this command waits for (--no-wait returns at once).\n\nExamples:\n  flowc cancel 20261202-0610\n  flowc cancel RUN --no-wait"
    )]
    Cancel(submit::CancelArgs),
    /// Run triggers, the run queue and a supervisor that drives each run in its own process.
    #[command(
        after_help = "Loads every trigger under PATH (default: the current directory), fires them, claims queued runs up to --workers and drives each in a child `flowc run --resume` process. A paused run holds no process and is requeued when its approval is decided; a run whose process dies is resumed. SIGTERM drains: nothing new starts, running steps get --drain-timeout, then are interrupted (a second SIGTERM interrupts at once).\n\nExamples:\n  flowc serve\n  flowc serve workflows --listen 0.0.0.0:8737 --workers 4\n  flowc serve --log-format json 2>> serve.log\n  curl -s localhost:8737/metrics"
    )]
    Serve(serve::ServeArgs),
    /// List triggers: kind, what they listen to, the skill they run, next fire times.
    #[command(
        after_help = "Examples:\n  flowc triggers\n  flowc triggers workflows --next 5 --json"
    )]
    Triggers(serve::TriggersArgs),
    /// Fire a trigger by hand.
    #[command(subcommand)]
    Trigger(serve::TriggerCommand),
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
    /// Read and edit the memory runs share (`recall`, `remember`): keys, values, and who changed them.
    #[command(
        after_help = "Examples:\n  flowc memory list\n  flowc memory list lessons --json\n  flowc memory get lessons/flaky\n  flowc memory set lessons/flaky '\"rerun test_io once\"'\n  flowc memory history lessons/flaky\n  flowc memory rm lessons/flaky"
    )]
    Memory(memory::MemoryArgs),
    /// Prune runs that ended long ago (the one way anything is deleted from the journal; recorded in it).
    #[command(
        after_help = "Runs still going, paused or interrupted are never pruned, nor the newest run.\n\nExamples:\n  flowc gc --older-than 30d --dry-run\n  flowc gc --older-than 90d"
    )]
    Gc(gc::GcArgs),
    /// Manage the people file that `approvers` are looked up in.
    #[command(
        after_help = "Examples:\n  flowc people add alice --group release --os-user alice --people people.yaml"
    )]
    People(people::PeopleArgs),
    /// Print a one-time link with which one approver decides a waiting approval on the page.
    #[command(
        after_help = "The link decides once, as that person, for this ask of the step only, and expires with the approval (or after 7 days). Opening it shows the question; deciding is a POST.\n\nExamples:\n  flowc link RUN deploy_gate --for carol --people people.yaml --base https://flowc.example.com"
    )]
    Link(link::LinkArgs),
    /// Format .flow files in the one canonical layout (comments kept).
    #[command(
        after_help = "Files are rewritten in place (atomically); a file with syntax errors is left alone and reported.\n\nExamples:\n  flowc fmt                         every .flow file under the current directory\n  flowc fmt --check workflows stdlib  list unformatted files, exit 1 if any (for CI)\n  flowc fmt --stdin < a.flow        print the formatted text\n\nExit status: 0 formatted (or already so), 1 with --check when a file is not formatted, 2 syntax errors or unreadable files."
    )]
    Fmt(fmt::FmtArgs),
    /// Serve the language server protocol on stdin/stdout, for editors.
    #[command(
        after_help = "Diagnostics (as you type), hover, go to definition, completion, document symbols and formatting. See docs/editors.md for VS Code, Neovim and Helix."
    )]
    Lsp,
    /// Explain a diagnostic code, with an example; without a code, list them all.
    #[command(
        after_help = "Examples:\n  flowc explain E0301\n  flowc explain E0301 --markdown   the source text, as in docs/diagnostics.md\n  flowc explain"
    )]
    Explain(explain::ExplainArgs),
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
    let result = match cli.command {
        Command::Check(args) => check::run(&args, color),
        Command::Graph(args) => graph::run(&args, color),
        Command::Run(args) => run::run(&args, color),
        Command::Plan(args) => plan::plan(&args, color),
        Command::Cache(args) => cache::run(&args),
        Command::Runs(args) => inspect::runs(&args),
        Command::Status(args) => inspect::status(&args),
        Command::Log(args) => inspect::log(&args),
        Command::Replay(args) => inspect::replay(&args),
        Command::Failures(args) => analytics::failures(&args),
        Command::Stats(args) => analytics::stats(&args),
        Command::Approvals(args) => queue::approvals(&args),
        Command::Approve(args) => queue::approve(&args),
        Command::Reject(args) => queue::reject(&args),
        Command::Retry(args) => queue::retry(&args),
        Command::Skip(args) => queue::skip(&args),
        Command::Secret(args) => secret::run(&args),
        Command::Memory(args) => memory::run(&args),
        Command::Gc(args) => gc::run(&args),
        Command::People(args) => people::run(&args),
        Command::Link(args) => link::link(&args),
        Command::Submit(args) => submit::submit(&args, color),
        Command::Serve(args) => serve::serve(&args, color),
        Command::Triggers(args) => serve::triggers(&args, color),
        Command::Trigger(cmd) => serve::trigger(&cmd, color),
        Command::Cancel(args) => submit::cancel(&args),
        Command::Rollback(args) => rollback::run(&args),
        Command::Fmt(args) => fmt::run(&args, color),
        Command::Lsp => crate::lsp::run()
            .map(|()| EXIT_OK)
            .map_err(|e| CliError::failed(format!("language server: {e}"))),
        Command::Explain(args) => explain::run(&args),
        Command::Doctor { json } => doctor::run(json),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "flowc", &mut buf);
            write_stdout(&buf)
        }
    };
    ExitCode::from(result.unwrap_or_else(|e| e.report()))
}

/// Where the journal is: `--journal`, else `FLOWC_JOURNAL`, else `.flowc/journal.db`.
#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// The journal: an SQLite file, or a `postgres://user:password@host/db`
    /// URL for a journal shared by many machines (default: `$FLOWC_JOURNAL`,
    /// else `.flowc/journal.db`).
    #[arg(long, value_name = "PATH|URL")]
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

    /// Opens the journal read-only, for the commands that only look.
    pub fn open_read_only(&self) -> Result<Journal, CliError> {
        Journal::open_read_only(&self.path())
            .map(warn_lost)
            .map_err(CliError::usage)
    }

    /// Opens the journal to append decisions and notes; it must exist.
    pub fn open_existing(&self) -> Result<Journal, CliError> {
        Journal::open_existing(&self.path())
            .map(warn_lost)
            .map_err(CliError::usage)
    }

    /// Creates `.flowc/` for the default location; other directories must exist.
    pub fn ensure_dir(&self) -> Result<(), String> {
        let path = self.path();
        if crate::journal::postgres_url(&path).is_some() {
            return Ok(());
        }
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
pub fn write_stdout(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(EXIT_OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(EXIT_OK),
        Err(e) => Err(CliError::failed(format!("cannot write output: {e}"))),
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

/// Name of the ignore files `flowc check` honours besides `.gitignore` (same syntax).
pub const IGNORE_FILE: &str = ".flowcignore";

/// What `collect_files` found: the `.flow` files, and the paths it could not read.
#[derive(Debug, Default)]
pub struct Collected {
    /// Files to check, each directory's sorted, in the order the paths were given.
    pub files: Vec<PathBuf>,
    /// Paths that could not be read (path, reason).
    pub unreadable: Vec<(String, String)>,
}

/// Every `.flow` file under `paths`: directories are walked honouring
/// `.gitignore`, `.ignore` and `.flowcignore` files (in them and their parents);
/// a file named directly is always taken.
pub fn collect_files(paths: &[PathBuf]) -> Collected {
    let mut out = Collected::default();
    for path in paths {
        match std::fs::metadata(path) {
            Err(e) => out
                .unreadable
                .push((path.display().to_string(), e.to_string())),
            Ok(meta) if !meta.is_dir() => out.files.push(path.clone()),
            Ok(_) => walk(path, &mut out),
        }
    }
    out.files.dedup();
    out
}

fn walk(dir: &std::path::Path, out: &mut Collected) {
    let mut found = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .require_git(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .build();
    for entry in walker {
        match entry {
            Ok(entry) => {
                if entry.file_type().is_some_and(|t| t.is_file())
                    && entry.path().extension().is_some_and(|e| e == "flow")
                {
                    found.push(entry.into_path());
                }
            }
            Err(e) => out
                .unreadable
                .push((dir.display().to_string(), e.to_string())),
        }
    }
    found.sort();
    out.files.extend(found);
}

/// Says so on stderr when the journal lost committed events (its head mark
/// is ahead of it): history is gone, and nothing else would tell.
pub fn warn_lost(journal: Journal) -> Journal {
    if let Some(n) = journal.lost_events() {
        eprintln!(
            "warning: the journal `{}` lost its last {n} committed event(s): its write-ahead log was damaged or the machine lost power; runs may be missing steps they had finished",
            journal.name()
        );
    }
    journal
}

/// A skill's inputs from `NAME=VALUE` texts, typed by its parameters (for the service's API).
pub fn typed_inputs(
    skill: &crate::ir::Skill,
    given: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    run::typed_inputs(skill, given, None).map_err(|e| e.messages.join("; "))
}
