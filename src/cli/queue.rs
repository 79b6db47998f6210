//! The human queue: `flowc approvals`, `approve`, `reject`, `retry`, `skip`.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, JournalArgs, write_stdout};
use crate::journal::{Journal, NewEvent, timestamp};
use serde_json::json;
use std::fmt::Write;

/// Arguments of `flowc approvals`.
#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of the decision commands.
#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The run id (or a unique prefix).
    pub run: String,
    /// The step instance key, as `flowc approvals` shows it.
    pub step: String,
    /// `approve`: a comment kept with the decision.
    #[arg(long)]
    pub comment: Option<String>,
    /// `reject`: why (required).
    #[arg(long)]
    pub reason: Option<String>,
    /// `skip`: the step's result as JSON, for the steps that read it.
    #[arg(long, value_name = "JSON")]
    pub output: Option<String>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Which decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `flowc approve`
    Approve,
    /// `flowc reject`
    Reject,
    /// `flowc retry`
    Retry,
    /// `flowc skip`
    Skip,
}

fn open(args: &JournalArgs) -> Result<Journal, u8> {
    Journal::open_existing(&args.path()).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

/// `flowc approvals`: pending items across runs.
pub fn approvals(args: &ApprovalsArgs) -> u8 {
    let journal = match open(&args.journal) {
        Ok(j) => j,
        Err(c) => return c,
    };
    let items = match journal.approvals(None) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
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
        let _ = writeln!(
            out,
            "{} {} [{}] asked {} (UTC)\n  {}\n  decide: {how}",
            a.run_id,
            a.node,
            a.kind,
            timestamp(a.requested_at),
            a.prompt.lines().next().unwrap_or_default(),
        );
    }
    write_stdout(out.as_bytes())
}

/// Records a decision on a pending item.
pub fn decide(verb: Verb, args: &DecideArgs) -> u8 {
    let mut journal = match open(&args.journal) {
        Ok(j) => j,
        Err(c) => return c,
    };
    let run = match idle_run(
        &journal,
        &args.run,
        "answer on its terminal, or stop it and decide here",
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let items = match journal.approvals(Some(&run)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let Some(item) = items.iter().find(|a| a.node == args.step) else {
        let pending: Vec<&str> = items
            .iter()
            .filter(|a| a.status == "pending")
            .map(|a| a.node.as_str())
            .collect();
        let hint = if pending.is_empty() {
            "nothing in this run is waiting for a person".to_string()
        } else {
            format!("waiting: {}", pending.join(", "))
        };
        eprintln!(
            "error: run `{run}` has no item `{}` in the human queue ({hint})",
            args.step
        );
        return EXIT_USAGE;
    };
    if item.status != "pending" {
        eprintln!(
            "error: `{}` of run `{run}` is already decided ({} by {})",
            args.step,
            item.status,
            item.decided_by.as_deref().unwrap_or("unknown")
        );
        return EXIT_USAGE;
    }
    let escalation = item.kind == "escalation";
    let by = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let data = match verb {
        Verb::Approve if escalation => {
            eprintln!(
                "error: `{}` is an escalation: decide it with `flowc retry`, `flowc skip` or `flowc reject`",
                args.step
            );
            return EXIT_USAGE;
        }
        Verb::Retry | Verb::Skip if !escalation => {
            eprintln!(
                "error: `{}` is an approval: decide it with `flowc approve` or `flowc reject`",
                args.step
            );
            return EXIT_USAGE;
        }
        Verb::Approve => json!({ "decision": "approved", "by": by, "comment": args.comment }),
        Verb::Reject => {
            let Some(reason) = args.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
                eprintln!("error: `flowc reject` needs `--reason TEXT`");
                return EXIT_USAGE;
            };
            json!({ "decision": "rejected", "by": by, "comment": reason })
        }
        Verb::Retry => json!({ "decision": "retry", "by": by }),
        Verb::Skip => {
            let output = match args
                .output
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>)
            {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    eprintln!("error: `--output` is not valid JSON: {e}");
                    return EXIT_USAGE;
                }
            };
            json!({ "decision": "skip", "by": by, "output": output })
        }
    };
    let event = NewEvent::node(&run, "approval_decided", &args.step, None, data);
    if let Err(e) = journal.append(&[event]) {
        eprintln!("error: {e}");
        return EXIT_FAILED;
    }
    let flag = if args.journal.is_default() {
        String::new()
    } else {
        format!(" --journal {}", args.journal.path().display())
    };
    eprintln!("recorded; continue with `flowc run --resume {run}{flag}`");
    EXIT_OK
}

/// Resolves `run` for a change made from outside it: a run driven by a live
/// process is refused (the exit code), saying `what_to_do`.
pub fn idle_run(journal: &Journal, run: &str, what_to_do: &str) -> Result<String, u8> {
    let run = journal.resolve_run(run).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    if let Ok(Some(holder)) = journal.lease_holder(&run) {
        eprintln!(
            "error: run `{run}` is being driven by {}; {what_to_do}",
            holder.owner
        );
        return Err(EXIT_USAGE);
    }
    Ok(run)
}
