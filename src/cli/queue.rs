//! The human queue: `flowc approvals`, `approve`, `reject`, `retry`, `skip`.

use super::{CliError, CliResult, EXIT_FAILED, EXIT_OK, JournalArgs, write_stdout};
use crate::approvals::{DecideError, Decided, Decision, People, Person, Verb, decide};
use crate::journal::{Journal, timestamp};
use std::fmt::Write;

/// Lines of a question `flowc approvals` shows (the first, then the last ones).
const PROMPT_LINES: usize = 8;

/// Arguments of `flowc approvals`.
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// The item every decision names.
#[derive(Debug, clap::Args)]
pub struct Item {
    /// The run id (or a unique prefix).
    pub run: String,
    /// The step instance key, as `flowc approvals` shows it.
    pub step: String,
    /// The people file: who is who, and their groups (default: none, so you decide as your OS user).
    #[arg(long, value_name = "FILE")]
    pub people: Option<std::path::PathBuf>,
    /// Refuse the decision unless the item was asked with this input hash (a prefix).
    #[arg(long, value_name = "HASH")]
    pub input_hash: Option<String>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of `flowc approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub item: Item,
    /// A comment kept with the decision.
    #[arg(long)]
    pub comment: Option<String>,
    /// The answers to the step's `form`, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub form: Option<String>,
}

/// Arguments of `flowc reject`.
#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    #[command(flatten)]
    pub item: Item,
    /// Why: kept with the decision, and the step's error.
    #[arg(long, required = true)]
    pub reason: String,
}

/// Arguments of `flowc retry`.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub item: Item,
}

/// Arguments of `flowc skip`.
#[derive(Debug, clap::Args)]
pub struct SkipArgs {
    #[command(flatten)]
    pub item: Item,
    /// The step's result as JSON, for the steps that read it.
    #[arg(long, value_name = "JSON")]
    pub output: Option<String>,
}

/// `flowc approve`.
pub fn approve(args: &ApproveArgs) -> CliResult {
    let form = match args.form.as_deref() {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => Some(v),
            Ok(_) => return Err(CliError::usage("`--form` must be a JSON object")),
            Err(e) => return Err(CliError::usage(format!("`--form` is not valid JSON: {e}"))),
        },
    };
    let mut d = Decision::new(Verb::Approve, decider_in(&args.item)?, "cli");
    d.comment = args.comment.clone();
    d.form = form;
    decide_item(&args.item, d)
}

/// `flowc reject`.
pub fn reject(args: &RejectArgs) -> CliResult {
    if args.reason.trim().is_empty() {
        return Err(CliError::usage("`flowc reject` needs `--reason TEXT`"));
    }
    let mut d = Decision::new(Verb::Reject, decider_in(&args.item)?, "cli");
    d.comment = Some(args.reason.clone());
    decide_item(&args.item, d)
}

/// `flowc retry`.
pub fn retry(args: &RetryArgs) -> CliResult {
    let d = Decision::new(Verb::Retry, decider_in(&args.item)?, "cli");
    decide_item(&args.item, d)
}

/// `flowc skip`.
pub fn skip(args: &SkipArgs) -> CliResult {
    let output = match args.output.as_deref() {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| CliError::usage(format!("`--output` is not valid JSON: {e}")))?,
        ),
    };
    let mut d = Decision::new(Verb::Skip, decider_in(&args.item)?, "cli");
    d.output = output;
    decide_item(&args.item, d)
}

pub(super) fn decider() -> String {
    crate::exec::user()
}

/// The person deciding: the OS user, as the people file names them.
fn decider_in(item: &Item) -> Result<Person, CliError> {
    let people = match &item.people {
        Some(path) => People::load(path).map_err(CliError::usage)?,
        None => People::default(),
    };
    Ok(people.for_os_user(&decider()))
}

/// `flowc approvals`: pending items across runs.
pub fn approvals(args: &ApprovalsArgs) -> CliResult {
    let journal = args.journal.open_read_only()?;
    let items = journal.approvals(None).map_err(CliError::failed)?;
    if args.json {
        return write_stdout(
            format!("{}\n", serde_json::to_value(&items).unwrap_or_default()).as_bytes(),
        );
    }
    if items.is_empty() {
        return write_stdout(b"nothing is waiting for a person\n");
    }
    let mut out = String::new();
    for a in &items {
        let how = match a.kind.as_str() {
            "escalation" => format!(
                "flowc retry {run} {node}  |  flowc skip {run} {node} [--output JSON]  |  flowc reject {run} {node} --reason TEXT",
                run = a.run_id,
                node = a.node
            ),
            _ => format!(
                "flowc approve {run} {node} [--comment TEXT]  |  flowc reject {run} {node} --reason TEXT",
                run = a.run_id,
                node = a.node
            ),
        };
        // The question and, for an escalation, the end of the failure (the
        // stderr tail it carries), so a person can decide from here.
        let lines: Vec<&str> = a.prompt.lines().collect();
        let shown = if lines.len() > PROMPT_LINES {
            let mut v = vec![lines[0], "…"];
            v.extend(&lines[lines.len() - (PROMPT_LINES - 2)..]);
            v
        } else {
            lines
        };
        let _ = writeln!(
            out,
            "{} {} [{}] asked {} (UTC)\n  {}\n  decide: {how}",
            a.run_id,
            a.node,
            a.kind,
            timestamp(a.requested_at),
            shown.join("\n  "),
        );
    }
    write_stdout(out.as_bytes())
}

/// Records a decision through the one decision path, and says what it did.
fn decide_item(args: &Item, mut decision: Decision) -> CliResult {
    let mut journal = args.journal.open_existing()?;
    let run = journal.resolve_run(&args.run)?;
    decision.expected_hash = args.input_hash.clone();
    let flag = if args.journal.is_default() {
        String::new()
    } else {
        format!(" --journal {}", journal.name())
    };
    match decide(&mut journal, &run, &args.step, decision) {
        Ok(Decided::Recorded) => {
            eprintln!("recorded; continue with `flowc run --resume {run}{flag}`");
            Ok(EXIT_OK)
        }
        Ok(Decided::Vote { have, required }) => {
            eprintln!(
                "recorded approval {have} of {required}; `{}` waits for {} more",
                args.step,
                required - have
            );
            Ok(EXIT_OK)
        }
        Ok(Decided::AskedAgain) => {
            eprintln!(
                "`{}` will be asked again; continue with `flowc run --resume {run}{flag}`",
                args.step
            );
            Ok(EXIT_OK)
        }
        Err(DecideError::Usage(why)) => Err(CliError::usage(why)),
        Err(DecideError::Refused(refusal)) => Err(CliError::new(
            EXIT_FAILED,
            format!("refused: `{}` of run `{run}`: {refusal}", args.step),
        )),
        Err(DecideError::Journal(e)) => Err(e.into()),
    }
}

/// Resolves `run` for a change made from outside it: a run driven by a live
/// process is refused, saying `what_to_do`.
pub fn idle_run(journal: &Journal, run: &str, what_to_do: &str) -> Result<String, CliError> {
    let run = journal.resolve_run(run)?;
    if let Ok(Some(holder)) = journal.lease_holder(&run) {
        return Err(CliError::usage(format!(
            "run `{run}` is being driven by {}; {what_to_do}",
            holder.owner
        )));
    }
    Ok(run)
}
