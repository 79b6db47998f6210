//! `flowc submit` and `flowc cancel`: queue a run for `flowc serve`, or stop one.

use super::queue::decider as user;
use super::{CliError, CliResult, EXIT_OK, JournalArgs, write_stdout};
use crate::journal::{Journal, Submission};
use std::path::PathBuf;

/// Arguments of `flowc submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The .flow file.
    pub file: PathBuf,
    /// The skill (default: `main`, or the file's only skill).
    pub skill: Option<String>,
    /// An input, typed by the skill's parameters (ints, bools, durations; lists and records as JSON).
    #[arg(short = 'i', long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Inputs from a YAML or JSON file (a map of names to values).
    #[arg(long = "inputs", value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Print `{"run_id": …}` instead of the bare id.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of `flowc cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The run id (or a unique prefix).
    pub run: String,
    /// Do not wait for a running run's process to stop its steps.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Compiles and types the run, then queues it; prints its id.
pub fn submit(args: &SubmitArgs, color: bool) -> CliResult {
    let (_, skill) = super::compile::compile_entry(&args.file, args.skill.as_deref(), color)?;
    let inputs = super::run::typed_inputs(&skill, &args.inputs, args.inputs_file.as_deref())?;
    // The service may run in another directory: name the file absolutely.
    let file = std::fs::canonicalize(&args.file)
        .map_err(|e| CliError::usage(format!("cannot read `{}`: {e}", args.file.display())))?;
    args.journal.ensure_dir().map_err(CliError::usage)?;
    let mut journal = Journal::open(&args.journal.path(), Default::default())?;
    let sub = Submission {
        skill: skill.name.clone(),
        file: file.display().to_string(),
        inputs,
        by: user(),
        reason: "submitted".into(),
        wait_previous: false,
    };
    let Some(run) = journal.enqueue(&sub, None)? else {
        return Err(CliError::failed("the run was not queued"));
    };
    eprintln!(
        "queued run {run} ({}); `flowc serve` starts it, `flowc status {run}` follows it",
        skill.name
    );
    let text = if args.json {
        format!("{}\n", serde_json::json!({ "run_id": run }))
    } else {
        format!("{run}\n")
    };
    write_stdout(text.as_bytes())
}

/// Cancels a run: at once when nothing drives it, else through its process.
pub fn cancel(args: &CancelArgs) -> CliResult {
    let mut journal = args.journal.open_existing()?;
    let run = journal.resolve_run(&args.run)?;
    let row = journal.run(&run)?;
    if matches!(row.status.as_str(), "succeeded" | "cancelled") {
        return Err(CliError::usage(format!(
            "run `{run}` has already ended ({}); nothing to cancel",
            row.status
        )));
    }
    if journal.cancel(&run, &user())? {
        eprintln!("run {run} cancelled (it was {})", row.status);
        return Ok(EXIT_OK);
    }
    let holder = journal
        .lease_holder(&run)?
        .map_or_else(|| "its process".to_string(), |h| h.owner);
    if args.no_wait {
        eprintln!("asked {holder} to cancel run {run}");
        return Ok(EXIT_OK);
    }
    eprintln!("asked {holder} to cancel run {run}; waiting for its steps to stop…");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let status = journal.run(&run)?.status;
        if status == "cancelled" {
            eprintln!("run {run} cancelled");
            return Ok(EXIT_OK);
        }
        if status != "running" {
            return Err(CliError::failed(format!(
                "run `{run}` ended as {status} before it could be cancelled"
            )));
        }
        if journal.lease_holder(&run)?.is_none() && journal.cancel(&run, &user())? {
            eprintln!("run {run} cancelled (its process had stopped)");
            return Ok(EXIT_OK);
        }
        if std::time::Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "run `{run}` is still running after 60 s; its process ({holder}) has the request and will stop it"
            )));
        }
    }
}
