//! `flowc rollback RUN STEP`: restore the files a `run` step's snapshot saved.

use super::{CliError, CliResult, EXIT_OK, JournalArgs};
use crate::journal::NewEvent;
use serde_json::json;

/// Arguments of `flowc rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The run (an id, or a unique prefix of one).
    pub run: String,
    /// The step instance (its full key, e.g. `apply` or `repair#2/apply`).
    pub step: String,
    /// The attempt whose snapshot to restore (default: the latest with one).
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Restores a step's snapshot; returns the exit code.
pub fn run(args: &RollbackArgs) -> CliResult {
    let path = args.journal.path();
    let mut journal = args.journal.open_existing()?;
    let run = super::queue::idle_run(&journal, &args.run, "stop it before rolling back its files")?;
    let events = journal
        .events_of(&run, Some("node_status"))
        .map_err(CliError::failed)?;
    let snap = events
        .iter()
        .rev()
        .filter(|e| e.node.as_deref() == Some(args.step.as_str()))
        .filter(|e| args.attempt.is_none() || e.attempt == args.attempt)
        .find_map(|e| Some((e.data["snapshot"]["id"].as_str()?.to_string(), e.attempt)));
    let Some((id, attempt)) = snap else {
        let which = args
            .attempt
            .map(|a| format!(" at attempt {a}"))
            .unwrap_or_default();
        return Err(CliError::usage(format!(
            "step `{}` of run `{run}` has no snapshot{which} (only `run` steps with `snapshot:` take one)",
            args.step
        )));
    };
    // Only the store beside this journal is used, whatever an event says: a
    // journal is data, and must not steer writes to another store.
    let store = path
        .parent()
        .map(|d| d.join("snapshots"))
        .unwrap_or_else(|| std::path::PathBuf::from(".flowc/snapshots"));
    let restored = crate::snapshot::restore(&store, &id).map_err(CliError::failed)?;
    let text = format!(
        "rolled back snapshot {id} by `flowc rollback`: {} file(s) restored, {} created file(s) removed",
        restored.written, restored.removed
    );
    let event = NewEvent::node(
        &run,
        "note",
        &args.step,
        attempt,
        json!({ "text": text, "rollback": id }),
    );
    journal.append(&[event]).map_err(|e| {
        CliError::failed(format!(
            "the files were restored, but the journal could not record it: {e}"
        ))
    })?;
    eprintln!(
        "{}: {} file(s) restored, {} created file(s) removed (snapshot {id} of attempt {})",
        args.step,
        restored.written,
        restored.removed,
        attempt.unwrap_or(0)
    );
    Ok(EXIT_OK)
}
