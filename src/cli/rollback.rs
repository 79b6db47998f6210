//! `flowc rollback RUN STEP`: restore the files a `run` step's snapshot saved.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, JournalArgs};
use crate::journal::{Journal, NewEvent};
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
pub fn run(args: &RollbackArgs) -> u8 {
    let path = args.journal.path();
    let mut journal = match Journal::open_existing(&path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let run = match super::queue::idle_run(
        &journal,
        &args.run,
        "stop it before rolling back its files",
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let events = match journal.events_of(&run, Some("node_status")) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
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
        eprintln!(
            "error: step `{}` of run `{run}` has no snapshot{which} (only `run` steps with `snapshot:` take one)",
            args.step
        );
        return EXIT_USAGE;
    };
    // Only the store beside this journal is used, whatever an event says: a
    // journal is data, and must not steer writes to another store.
    let store = path
        .parent()
        .map(|d| d.join("snapshots"))
        .unwrap_or_else(|| std::path::PathBuf::from(".flowc/snapshots"));
    let restored = match crate::snapshot::restore(&store, &id) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
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
    if let Err(e) = journal.append(&[event]) {
        eprintln!("error: the files were restored, but the journal could not record it: {e}");
        return EXIT_FAILED;
    }
    eprintln!(
        "{}: {} file(s) restored, {} created file(s) removed (snapshot {id} of attempt {})",
        args.step,
        restored.written,
        restored.removed,
        attempt.unwrap_or(0)
    );
    EXIT_OK
}
