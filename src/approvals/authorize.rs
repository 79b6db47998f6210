//! The only place that knows who may decide an approval.

use serde::{Deserialize, Serialize};

/// An approval's rules, as journaled when it was asked (`approval_requested`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalSpec {
    /// Person names and `group:NAME`; empty means anyone may decide.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How many distinct approvers must approve.
    #[serde(default = "one")]
    pub required: u32,
    /// Whether the run's initiator may decide.
    #[serde(default = "yes")]
    pub self_approval: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

impl Default for ApprovalSpec {
    fn default() -> ApprovalSpec {
        ApprovalSpec {
            approvers: Vec::new(),
            required: 1,
            self_approval: true,
        }
    }
}

/// The item a decision is for, as the journal has it now.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The item's status (`pending`, `approved`, ...).
    pub status: &'a str,
    /// Who decided it, when it is decided.
    pub decided_by: Option<&'a str>,
    /// The run's status (`running`, `paused`, `cancelled`, ...).
    pub run_status: &'a str,
    /// The input hash the item was asked with.
    pub input_hash: &'a str,
    /// The input hash the decider saw (a prefix), when they name one.
    pub expected_hash: Option<&'a str>,
}

/// Why a decision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The run is over.
    #[error("the run is {status}; its approvals can no longer be decided")]
    RunEnded { status: String },
    /// The item was decided already.
    #[error("the item is already decided ({status} by {by})")]
    NotPending { status: String, by: String },
    /// The step's inputs changed since the decider looked.
    #[error("the item was asked with input hash `{actual}`, not `{expected}`; look at it again")]
    StaleInput { expected: String, actual: String },
    /// The decider is not among the approvers.
    #[error("`{who}` is not among the approvers ({approvers})")]
    NotAnApprover { who: String, approvers: String },
    /// The decider started the run and may not approve it.
    #[error("`{who}` started this run and `self_approval` is false")]
    SelfApproval { who: String },
    /// The decider approved this item already.
    #[error("`{who}` approved this item already; {required} distinct approvers are required")]
    Twice { who: String, required: u32 },
}

impl Refusal {
    /// A stable word for the journal (`approval_refused.reason_code`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::RunEnded { .. } => "run_ended",
            Refusal::NotPending { .. } => "not_pending",
            Refusal::StaleInput { .. } => "stale_input",
            Refusal::NotAnApprover { .. } => "not_an_approver",
            Refusal::SelfApproval { .. } => "self_approval",
            Refusal::Twice { .. } => "twice",
        }
    }
}

/// Whether `decider` (a person's name and groups) may decide `request` now.
///
/// `initiator` is who started the run; `prior` are the people who already
/// approved this request (for `required`).
pub fn authorize(
    spec: &ApprovalSpec,
    decider: &super::Person,
    initiator: &str,
    prior: &[String],
    request: &Request<'_>,
) -> Result<(), Refusal> {
    if matches!(request.run_status, "succeeded" | "failed" | "cancelled") {
        return Err(Refusal::RunEnded {
            status: request.run_status.to_string(),
        });
    }
    if request.status != "pending" {
        return Err(Refusal::NotPending {
            status: request.status.to_string(),
            by: request.decided_by.unwrap_or("unknown").to_string(),
        });
    }
    if let Some(expected) = request.expected_hash
        && (expected.is_empty() || !request.input_hash.starts_with(expected))
    {
        return Err(Refusal::StaleInput {
            expected: expected.to_string(),
            actual: request.input_hash.to_string(),
        });
    }
    if !spec.approvers.is_empty() && !spec.approvers.iter().any(|a| decider.matches(a)) {
        return Err(Refusal::NotAnApprover {
            who: decider.name.clone(),
            approvers: spec.approvers.join(", "),
        });
    }
    if !spec.self_approval && decider.is(initiator) {
        return Err(Refusal::SelfApproval {
            who: decider.name.clone(),
        });
    }
    if prior.iter().any(|p| decider.is(p)) {
        return Err(Refusal::Twice {
            who: decider.name.clone(),
            required: spec.required,
        });
    }
    Ok(())
}
