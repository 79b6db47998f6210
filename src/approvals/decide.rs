//! Recording a decision: the CLI, the web page, one-time links and the API all come here, and here ask [`authorize`].

use super::{ApprovalSpec, Link, People, Person, Refusal, Request, authorize};
use crate::journal::{ApprovalRow, Journal, JournalError, NewEvent, now_ms};
use serde_json::{Value as Json, json};

/// Which decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Approve an approval.
    Approve,
    /// Reject an approval, or abort an escalated step's run.
    Reject,
    /// Give an escalated step a fresh budget, or ask a rejected approval again.
    Retry,
    /// Skip an escalated step.
    Skip,
}

impl Verb {
    /// The word journaled as `decision`.
    pub fn word(self) -> &'static str {
        match self {
            Verb::Approve => "approved",
            Verb::Reject => "rejected",
            Verb::Retry => "retry",
            Verb::Skip => "skip",
        }
    }
}

/// What someone decides, and how they came.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The decision.
    pub verb: Verb,
    /// Who decides (for a link: the link's approver).
    pub by: Person,
    /// A comment, or a rejection's reason.
    pub comment: Option<String>,
    /// The answers to the approval's `form`.
    pub form: Option<Json>,
    /// For `skip`: the step's result.
    pub output: Option<Json>,
    /// The input hash (a prefix) the decider saw, when they name one.
    pub expected_hash: Option<String>,
    /// The path it came by: `cli`, `web`, `link` or `api` (journaled).
    pub via: &'static str,
    /// A one-time link's grant, when it came by a link.
    pub link: Option<Link>,
    /// The person signed in where a link was opened, if any.
    pub presenter: Option<String>,
}

impl Decision {
    /// A decision by `by` through `via`, with nothing else given.
    pub fn new(verb: Verb, by: Person, via: &'static str) -> Decision {
        Decision {
            verb,
            by,
            comment: None,
            form: None,
            output: None,
            expected_hash: None,
            via,
            link: None,
            presenter: None,
        }
    }
}

/// What a recorded decision did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// The item is decided; the run can go on.
    Recorded,
    /// One approval of several: `have` of `required` so far.
    Vote { have: usize, required: usize },
    /// A rejected approval will be asked again.
    AskedAgain,
}

/// Why nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The request names no such item, or does not fit it (bad form, wrong verb).
    #[error("{0}")]
    Usage(String),
    /// The authorization rule said no; journaled as `approval_refused`.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What an item was asked with, and the approvals it has had since.
#[derive(Debug, Clone)]
pub struct Asked {
    /// Who may decide, and how many.
    pub spec: ApprovalSpec,
    /// Who started the run ("" when not journaled).
    pub initiator: String,
    /// The `approval_vote` events' data since the item was (last) asked.
    pub votes: Vec<Json>,
    /// The seq of the latest `approval_requested`: the ask a link is bound to.
    pub seq: i64,
    /// The journaled data of that ask (`form_schema`, `timeout_ms`, `notify`, …).
    pub data: Json,
    /// When it was asked (Unix ms).
    pub at: i64,
}

/// Records `decision` on the item `node` of `run`, or says why not. A refusal
/// by the rule is journaled (with who tried) before it is returned.
pub fn decide(
    journal: &mut Journal,
    run: &str,
    node: &str,
    decision: Decision,
) -> Result<Decided, DecideError> {
    if let Ok(Some(holder)) = journal.lease_holder(run) {
        return Err(DecideError::Usage(format!(
            "run `{run}` is being driven by {}; decide when it pauses, or answer on its terminal",
            holder.owner
        )));
    }
    // Decide from what the events say, never from a projection row alone.
    journal.check_untampered(run)?;
    let items = journal.approvals(Some(run))?;
    let Some(item) = items.iter().find(|a| a.node == node) else {
        return Err(DecideError::Usage(no_item(run, node, &items)));
    };
    if decision.verb == Verb::Retry && item.kind == "approval" && item.status == "rejected" {
        ask_again(journal, run, item, &decision)?;
        return Ok(Decided::AskedAgain);
    }
    check_verb(decision.verb, item, node)?;
    let asked = asked_with(journal, run, node)?;
    let form = match decision.verb {
        Verb::Approve => checked_form(&asked, decision.form.clone())?,
        _ => None,
    };
    allowed(journal, run, item, &asked, &decision)?;
    let mut data = json!({
        "decision": decision.verb.word(),
        "by": decision.by.name,
        "comment": decision.comment,
        "via": decision.via,
    });
    if decision.verb == Verb::Skip {
        data["output"] = decision.output.clone().unwrap_or(Json::Null);
    }
    if decision.verb == Verb::Approve && item.kind != "escalation" {
        data["form"] = form.unwrap_or(Json::Null);
        return vote(journal, run, node, &asked, data);
    }
    let event = NewEvent::node(run, "approval_decided", node, None, data);
    journal.append(&[event])?;
    Ok(Decided::Recorded)
}

fn no_item(run: &str, node: &str, items: &[ApprovalRow]) -> String {
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
    format!("run `{run}` has no item `{node}` in the human queue ({hint})")
}

fn check_verb(verb: Verb, item: &ApprovalRow, node: &str) -> Result<(), DecideError> {
    let escalation = item.kind == "escalation";
    match verb {
        Verb::Approve if escalation => Err(DecideError::Usage(format!(
            "`{node}` is an escalation: decide it with retry, skip or reject"
        ))),
        Verb::Retry | Verb::Skip if !escalation => Err(DecideError::Usage(format!(
            "`{node}` is an approval: decide it with approve or reject"
        ))),
        _ => Ok(()),
    }
}

/// The answers checked against the form the item was asked with.
fn checked_form(asked: &Asked, form: Option<Json>) -> Result<Option<Json>, DecideError> {
    let Some(schema) = asked.data.get("form_schema") else {
        return Ok(form);
    };
    let answers = form.unwrap_or_else(|| json!({}));
    let ty = super::form::ty_of(schema);
    crate::exec::eval::validate(&answers, &ty).map_err(|e| {
        DecideError::Usage(format!(
            "the form's answers do not fit the type `{ty}`: {e}"
        ))
    })?;
    Ok(Some(answers))
}

/// Asks the one authorization rule; a refusal is journaled, then returned.
fn allowed(
    journal: &mut Journal,
    run: &str,
    item: &ApprovalRow,
    asked: &Asked,
    decision: &Decision,
) -> Result<(), DecideError> {
    let run_status = journal.run(run)?.status;
    let prior: Vec<String> = asked
        .votes
        .iter()
        .filter_map(|v| v["by"].as_str().map(str::to_string))
        .collect();
    let request = Request {
        run,
        node: &item.node,
        status: &item.status,
        decided_by: item.decided_by.as_deref(),
        run_status: &run_status,
        input_hash: &item.input_hash,
        expected_hash: decision.expected_hash.as_deref(),
        asked_seq: asked.seq,
        now: now_ms(),
        link: decision.link.as_ref(),
        presenter: decision.presenter.as_deref(),
    };
    let Err(refusal) = authorize(
        &asked.spec,
        &decision.by,
        &asked.initiator,
        &prior,
        &request,
    ) else {
        return Ok(());
    };
    let event = NewEvent::node(
        run,
        "approval_refused",
        &item.node,
        None,
        json!({
            "by": decision.by.name,
            "presenter": decision.presenter,
            "decision": decision.verb.word(),
            "via": decision.via,
            "code": refusal.code(),
            "reason": refusal.to_string(),
        }),
    );
    journal.append(&[event])?;
    Err(DecideError::Refused(refusal))
}

/// An approval: a vote while fewer than `required` distinct approvers have
/// approved, else the decision, naming every approver and the first one's form.
fn vote(
    journal: &mut Journal,
    run: &str,
    node: &str,
    asked: &Asked,
    mut data: Json,
) -> Result<Decided, DecideError> {
    let required = asked.spec.required.max(1) as usize;
    if asked.votes.len() + 1 < required {
        let vote = json!({ "by": data["by"], "comment": data["comment"], "form": data["form"], "via": data["via"] });
        journal.append(&[NewEvent::node(run, "approval_vote", node, None, vote)])?;
        return Ok(Decided::Vote {
            have: asked.votes.len() + 1,
            required,
        });
    }
    let mut everyone: Vec<Json> = asked.votes.iter().map(|v| v["by"].clone()).collect();
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
    journal.append(&[NewEvent::node(run, "approval_decided", node, None, data)])?;
    Ok(Decided::Recorded)
}

/// Retry on a rejected approval: the same question is asked again (journaled,
/// with who re-opened it), under the same rules as the first time.
fn ask_again(
    journal: &mut Journal,
    run: &str,
    item: &ApprovalRow,
    decision: &Decision,
) -> Result<(), DecideError> {
    let by = &decision.by.name;
    let mut asked = json!({ "kind": item.kind, "prompt": item.prompt, "input_hash": item.input_hash, "asked_again_by": by });
    let first = journal
        .events_of(run, Some("approval_requested"))?
        .into_iter()
        .rfind(|e| e.node.as_deref() == Some(item.node.as_str()));
    for key in [
        "approvers",
        "required",
        "self_approval",
        "timeout_ms",
        "default",
        "form_schema",
        "notify",
    ] {
        if let Some(v) = first.as_ref().and_then(|e| e.data.get(key)) {
            asked[key] = v.clone();
        }
    }
    let note = format!(
        "{by} asked again after the rejection by {}",
        item.decided_by.as_deref().unwrap_or("unknown")
    );
    let events = [
        NewEvent::node(run, "note", &item.node, None, json!({ "text": note })),
        NewEvent::node(run, "approval_requested", &item.node, None, asked),
    ];
    journal.append(&events)?;
    Ok(())
}

/// The rules an item was asked with (its latest `approval_requested`), the
/// run's initiator, and the votes since.
pub fn asked_with(journal: &Journal, run: &str, node: &str) -> Result<Asked, JournalError> {
    let asked = journal
        .events_of(run, Some("approval_requested"))?
        .into_iter()
        .rfind(|e| e.node.as_deref() == Some(node));
    let seq = asked.as_ref().map_or(0, |e| e.seq);
    let votes = journal
        .events_of(run, Some("approval_vote"))?
        .into_iter()
        .filter(|e| e.node.as_deref() == Some(node) && e.seq > seq)
        .map(|e| e.data)
        .collect();
    let at = asked.as_ref().map_or(0, |e| e.at);
    let data = asked.map(|e| e.data).unwrap_or(Json::Null);
    let spec = serde_json::from_value(data.clone()).unwrap_or_default();
    Ok(Asked {
        spec,
        initiator: initiator(journal, run)?,
        votes,
        seq,
        data,
        at,
    })
}

/// Who started `run`, as `run_started` journaled it ("" for a run journaled
/// before initiators were recorded: then nobody is its initiator).
pub fn initiator(journal: &Journal, run: &str) -> Result<String, JournalError> {
    Ok(journal
        .events_of(run, Some("run_started"))?
        .into_iter()
        .next()
        .and_then(|e| e.data.get("initiator")?.as_str().map(str::to_string))
        .unwrap_or_default())
}

/// The people a decision may come from for this item: listed people who are
/// approvers, minus the initiator unless `self_approval` (for links and notices).
pub fn eligible<'a>(people: &'a People, asked: &Asked) -> Vec<&'a Person> {
    people
        .people
        .iter()
        .filter(|p| {
            asked.spec.approvers.is_empty() || asked.spec.approvers.iter().any(|a| p.matches(a))
        })
        .filter(|p| asked.spec.self_approval || !p.is(&asked.initiator))
        .collect()
}
