//! The human queue: `flowc approvals`, `approve`, `reject`, `retry`, `skip`.

use super::{CliError, CliResult, EXIT_FAILED, EXIT_OK, JournalArgs, write_stdout};
use crate::approvals::{ApprovalSpec, People, Person, Request, authorize};
use crate::journal::{Journal, NewEvent, timestamp};
use serde_json::json;
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

/// Which decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Approve,
    Reject,
    Retry,
    Skip,
}

/// `flowc approve`.
pub fn approve(args: &ApproveArgs) -> CliResult {
    let by = decider_in(&args.item)?.name;
    let form = match args.form.as_deref() {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => Some(v),
            Ok(_) => return Err(CliError::usage("`--form` must be a JSON object")),
            Err(e) => return Err(CliError::usage(format!("`--form` is not valid JSON: {e}"))),
        },
    };
    let data = json!({ "decision": "approved", "by": by, "comment": args.comment, "form": form });
    decide(Verb::Approve, &args.item, data)
}

/// `flowc reject`.
pub fn reject(args: &RejectArgs) -> CliResult {
    if args.reason.trim().is_empty() {
        return Err(CliError::usage("`flowc reject` needs `--reason TEXT`"));
    }
    let by = decider_in(&args.item)?.name;
    let data = json!({ "decision": "rejected", "by": by, "comment": args.reason });
    decide(Verb::Reject, &args.item, data)
}

/// `flowc retry`.
pub fn retry(args: &RetryArgs) -> CliResult {
    decide(
        Verb::Retry,
        &args.item,
        json!({ "decision": "retry", "by": decider_in(&args.item)?.name }),
    )
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
    let by = decider_in(&args.item)?.name;
    let data = json!({ "decision": "skip", "by": by, "output": output });
    decide(Verb::Skip, &args.item, data)
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

/// Records a decision on a pending item, once it is known to fit the item.
fn decide(verb: Verb, args: &Item, data: serde_json::Value) -> CliResult {
    let mut journal = args.journal.open_existing()?;
    let run = idle_run(
        &journal,
        &args.run,
        "answer on its terminal, or stop it and decide here",
    )?;
    // Decide from what the events say, never from a projection row alone.
    journal.check_untampered(&run).map_err(CliError::failed)?;
    let items = journal.approvals(Some(&run)).map_err(CliError::failed)?;
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
        return Err(CliError::usage(format!(
            "run `{run}` has no item `{}` in the human queue ({hint})",
            args.step
        )));
    };
    if verb == Verb::Retry && item.kind == "approval" && item.status == "rejected" {
        return ask_again(&mut journal, args, &run, item, &data);
    }
    let escalation = item.kind == "escalation";
    match verb {
        Verb::Approve if escalation => {
            return Err(CliError::usage(format!(
                "`{}` is an escalation: decide it with `flowc retry`, `flowc skip` or `flowc reject`",
                args.step
            )));
        }
        Verb::Retry | Verb::Skip if !escalation => {
            return Err(CliError::usage(format!(
                "`{}` is an approval: decide it with `flowc approve` or `flowc reject`",
                args.step
            )));
        }
        _ => {}
    }
    let decider = decider_in(args)?;
    let asked = check_allowed(&mut journal, args, &run, item, &decider, &data)?;
    if verb == Verb::Approve && !escalation {
        return vote(&mut journal, args, &run, &asked, data);
    }
    let event = NewEvent::node(&run, "approval_decided", &args.step, None, data);
    journal.append(&[event]).map_err(CliError::failed)?;
    print_recorded(args, &run);
    Ok(EXIT_OK)
}

/// An approval: a vote while fewer than `required` distinct approvers have
/// approved, else the decision, naming every approver and the first one's form.
fn vote(
    journal: &mut Journal,
    args: &Item,
    run: &str,
    asked: &Asked,
    mut data: serde_json::Value,
) -> CliResult {
    let required = asked.spec.required.max(1) as usize;
    if asked.votes.len() + 1 < required {
        let vote = json!({ "by": data["by"], "comment": data["comment"], "form": data["form"] });
        let event = NewEvent::node(run, "approval_vote", &args.step, None, vote);
        journal.append(&[event]).map_err(CliError::failed)?;
        let left = required - asked.votes.len() - 1;
        eprintln!(
            "recorded approval {} of {required}; `{}` waits for {left} more",
            asked.votes.len() + 1,
            args.step
        );
        return Ok(EXIT_OK);
    }
    let mut everyone: Vec<serde_json::Value> =
        asked.votes.iter().map(|v| v["by"].clone()).collect();
    everyone.push(data["by"].clone());
    // The first approver's answers are kept; later ones stay in their votes.
    let form = asked
        .votes
        .iter()
        .map(|v| v["form"].clone())
        .chain([data["form"].clone()])
        .find(|f| !f.is_null());
    data["output"] = json!({ "by": everyone, "form": form });
    if let Some(map) = data.as_object_mut() {
        map.remove("form");
    }
    let event = NewEvent::node(run, "approval_decided", &args.step, None, data);
    journal.append(&[event]).map_err(CliError::failed)?;
    print_recorded(args, run);
    Ok(EXIT_OK)
}

fn print_recorded(args: &Item, run: &str) {
    let flag = if args.journal.is_default() {
        String::new()
    } else {
        format!(" --journal {}", args.journal.path().display())
    };
    eprintln!("recorded; continue with `flowc run --resume {run}{flag}`");
}

/// `flowc retry` on a rejected approval: the same question is asked again
/// (journaled, with who re-opened it); the next `--resume` waits for it.
fn ask_again(
    journal: &mut Journal,
    args: &Item,
    run: &str,
    item: &crate::journal::ApprovalRow,
    data: &serde_json::Value,
) -> CliResult {
    let by = data["by"].as_str().unwrap_or("unknown");
    // The same rules as the first time: who may decide, the quorum, the timeout.
    let mut asked = json!({ "kind": item.kind, "prompt": item.prompt, "input_hash": item.input_hash, "asked_again_by": by });
    let first = journal
        .events_of(run, Some("approval_requested"))
        .map_err(CliError::failed)?
        .into_iter()
        .rfind(|e| e.node.as_deref() == Some(args.step.as_str()));
    for key in [
        "approvers",
        "required",
        "self_approval",
        "timeout_ms",
        "default",
    ] {
        if let Some(v) = first.as_ref().and_then(|e| e.data.get(key)) {
            asked[key] = v.clone();
        }
    }
    let events = [
        NewEvent::node(
            run,
            "note",
            &args.step,
            None,
            json!({ "text": format!("{by} asked again after the rejection by {}", item.decided_by.as_deref().unwrap_or("unknown")) }),
        ),
        NewEvent::node(run, "approval_requested", &args.step, None, asked),
    ];
    journal.append(&events).map_err(CliError::failed)?;
    let flag = if args.journal.is_default() {
        String::new()
    } else {
        format!(" --journal {}", args.journal.path().display())
    };
    eprintln!(
        "`{}` will be asked again; continue with `flowc run --resume {run}{flag}`",
        args.step
    );
    Ok(EXIT_OK)
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

/// What an item was asked with, and the approvals it has had since.
struct Asked {
    spec: ApprovalSpec,
    initiator: String,
    /// The `approval_vote` events' data since the item was (last) asked.
    votes: Vec<serde_json::Value>,
}

/// Asks the one authorization rule; a refusal is journaled, then reported (exit 1).
fn check_allowed(
    journal: &mut Journal,
    args: &Item,
    run: &str,
    item: &crate::journal::ApprovalRow,
    decider: &Person,
    data: &serde_json::Value,
) -> Result<Asked, CliError> {
    let run_status = journal.run(run).map_err(CliError::failed)?.status;
    let asked = asked_with(journal, run, &args.step)?;
    let prior: Vec<String> = asked
        .votes
        .iter()
        .filter_map(|v| v["by"].as_str().map(str::to_string))
        .collect();
    let request = Request {
        status: &item.status,
        decided_by: item.decided_by.as_deref(),
        run_status: &run_status,
        input_hash: &item.input_hash,
        expected_hash: args.input_hash.as_deref(),
    };
    let Err(refusal) = authorize(&asked.spec, decider, &asked.initiator, &prior, &request) else {
        return Ok(asked);
    };
    let event = NewEvent::node(
        run,
        "approval_refused",
        &args.step,
        None,
        json!({ "by": decider.name, "decision": data["decision"], "code": refusal.code(), "reason": refusal.to_string() }),
    );
    journal.append(&[event]).map_err(CliError::failed)?;
    Err(CliError::new(
        EXIT_FAILED,
        format!("refused: `{}` of run `{run}`: {refusal}", args.step),
    ))
}

/// The rules an item was asked with (its latest `approval_requested`), the
/// run's initiator, and the votes since.
fn asked_with(journal: &Journal, run: &str, node: &str) -> Result<Asked, CliError> {
    let asked = journal
        .events_of(run, Some("approval_requested"))
        .map_err(CliError::failed)?
        .into_iter()
        .rfind(|e| e.node.as_deref() == Some(node));
    let since = asked.as_ref().map_or(0, |e| e.seq);
    let votes = journal
        .events_of(run, Some("approval_vote"))
        .map_err(CliError::failed)?
        .into_iter()
        .filter(|e| e.node.as_deref() == Some(node) && e.seq > since)
        .map(|e| e.data)
        .collect();
    let spec = asked
        .and_then(|e| serde_json::from_value(e.data).ok())
        .unwrap_or_default();
    // A run journaled before initiators were recorded has none: nobody is its initiator.
    let initiator = journal
        .events_of(run, Some("run_started"))
        .map_err(CliError::failed)?
        .into_iter()
        .next()
        .and_then(|e| e.data.get("initiator")?.as_str().map(str::to_string))
        .unwrap_or_default();
    Ok(Asked {
        spec,
        initiator,
        votes,
    })
}
