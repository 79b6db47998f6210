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

/// A one-time link's grant, as the journal keeps it (the token only as its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The run it is for.
    pub run: String,
    /// The node instance it is for.
    pub node: String,
    /// The `approval_requested` event (its seq) it was minted for.
    pub asked_seq: i64,
    /// The input hash the item was asked with.
    pub input_hash: String,
    /// The person it speaks for.
    pub approver: String,
    /// When it stops working (Unix ms).
    pub expires_at: i64,
    /// When it was used, if it was.
    pub used_at: Option<i64>,
}

/// The item a decision is for, as the journal has it now.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The run.
    pub run: &'a str,
    /// The node instance.
    pub node: &'a str,
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
    /// The seq of the `approval_requested` the item is waiting on.
    pub asked_seq: i64,
    /// Now (Unix ms), for a link's expiry.
    pub now: i64,
    /// The one-time link the decision came by, if it did.
    pub link: Option<&'a Link>,
    /// Who is signed in where the link was opened, if anyone.
    pub presenter: Option<&'a str>,
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
    /// A one-time link was used before.
    #[error("this link was used already; each link decides once")]
    LinkUsed,
    /// A one-time link's approval timed out or its time passed.
    #[error("this link expired")]
    LinkExpired,
    /// A link minted for another run, step or ask of the step.
    #[error("this link is for another item (or an earlier ask of this one)")]
    LinkElsewhere,
    /// A link opened by someone signed in as another person.
    #[error("this link is `{approver}`'s; `{presenter}` is signed in (links are not forwarded)")]
    LinkForwarded { approver: String, presenter: String },
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
            Refusal::LinkUsed => "link_used",
            Refusal::LinkExpired => "link_expired",
            Refusal::LinkElsewhere => "link_elsewhere",
            Refusal::LinkForwarded { .. } => "link_forwarded",
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
    if let Some(link) = request.link {
        check_link(link, decider, request)?;
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

/// A link decides only its own ask of its own item, once, in time, for its own person.
fn check_link(link: &Link, decider: &super::Person, request: &Request<'_>) -> Result<(), Refusal> {
    if link.run != request.run || link.node != request.node || link.asked_seq != request.asked_seq {
        return Err(Refusal::LinkElsewhere);
    }
    if link.used_at.is_some() {
        return Err(Refusal::LinkUsed);
    }
    if request.now >= link.expires_at {
        return Err(Refusal::LinkExpired);
    }
    if link.input_hash != request.input_hash {
        return Err(Refusal::StaleInput {
            expected: link.input_hash.clone(),
            actual: request.input_hash.to_string(),
        });
    }
    if let Some(presenter) = request.presenter
        && presenter != link.approver
    {
        return Err(Refusal::LinkForwarded {
            approver: link.approver.clone(),
            presenter: presenter.to_string(),
        });
    }
    if decider.name != link.approver {
        return Err(Refusal::LinkElsewhere);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approvals::Person;

    fn person(name: &str, groups: &[&str]) -> Person {
        Person {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Person::unlisted(name)
        }
    }

    fn pending() -> Request<'static> {
        Request {
            run: "r",
            node: "gate",
            status: "pending",
            decided_by: None,
            run_status: "paused",
            input_hash: "abc123",
            expected_hash: None,
            asked_seq: 7,
            now: 1_000,
            link: None,
            presenter: None,
        }
    }

    fn spec(approvers: &[&str], required: u32, self_approval: bool) -> ApprovalSpec {
        ApprovalSpec {
            approvers: approvers.iter().map(|a| a.to_string()).collect(),
            required,
            self_approval,
        }
    }

    fn code(r: Result<(), Refusal>) -> Option<&'static str> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn anyone_decides_without_approvers() {
        let ok = authorize(
            &ApprovalSpec::default(),
            &person("x", &[]),
            "x",
            &[],
            &pending(),
        );
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn approvers_by_name_or_group() {
        let s = spec(&["alice", "group:release"], 1, false);
        let r = |p: &Person| code(authorize(&s, p, "dora", &[], &pending()));
        assert_eq!(r(&person("alice", &[])), None);
        assert_eq!(r(&person("bob", &["release"])), None);
        assert_eq!(r(&person("carol", &["ops"])), Some("not_an_approver"));
    }

    #[test]
    fn the_initiator_only_with_self_approval() {
        let alice = Person {
            os_user: Some("al".into()),
            ..person("alice", &[])
        };
        let r = |s: &ApprovalSpec, who: &str| code(authorize(s, &alice, who, &[], &pending()));
        assert_eq!(r(&spec(&["alice"], 1, false), "al"), Some("self_approval"));
        assert_eq!(
            r(&spec(&["alice"], 1, false), "alice"),
            Some("self_approval")
        );
        assert_eq!(r(&spec(&["alice"], 1, true), "alice"), None);
    }

    #[test]
    fn the_same_person_counts_once() {
        let s = spec(&["group:release"], 2, false);
        let bob = person("bob", &["release"]);
        let r = authorize(&s, &bob, "dora", &["bob".into()], &pending());
        assert_eq!(code(r), Some("twice"));
    }

    #[test]
    fn the_item_must_be_pending_the_run_live_and_the_hash_current() {
        let s = ApprovalSpec::default();
        let p = person("bob", &[]);
        let decided = Request {
            status: "approved",
            decided_by: Some("ann"),
            ..pending()
        };
        assert_eq!(
            code(authorize(&s, &p, "", &[], &decided)),
            Some("not_pending")
        );
        let ended = Request {
            run_status: "cancelled",
            ..pending()
        };
        assert_eq!(code(authorize(&s, &p, "", &[], &ended)), Some("run_ended"));
        let stale = Request {
            expected_hash: Some("abd"),
            ..pending()
        };
        assert_eq!(
            code(authorize(&s, &p, "", &[], &stale)),
            Some("stale_input")
        );
        let current = Request {
            expected_hash: Some("abc"),
            ..pending()
        };
        assert_eq!(code(authorize(&s, &p, "", &[], &current)), None);
    }

    fn link() -> Link {
        Link {
            run: "r".into(),
            node: "gate".into(),
            asked_seq: 7,
            input_hash: "abc123".into(),
            approver: "bob".into(),
            expires_at: 2_000,
            used_at: None,
        }
    }

    #[test]
    fn a_link_decides_its_own_ask_once_in_time_for_its_person() {
        let s = spec(&["bob", "carol"], 1, false);
        let bob = person("bob", &[]);
        let with = |l: &Link, presenter: Option<&'static str>| {
            let l = l.clone();
            let mut r = pending();
            r.presenter = presenter;
            code(authorize(
                &s,
                &bob,
                "dora",
                &[],
                &Request {
                    link: Some(&l),
                    ..r
                },
            ))
        };
        assert_eq!(with(&link(), None), None);
        assert_eq!(with(&link(), Some("bob")), None);
        assert_eq!(with(&link(), Some("carol")), Some("link_forwarded"));
        let used = Link {
            used_at: Some(1_500),
            ..link()
        };
        assert_eq!(with(&used, None), Some("link_used"));
        let late = Link {
            expires_at: 1_000,
            ..link()
        };
        assert_eq!(with(&late, None), Some("link_expired"));
        let other = Link {
            node: "deploy".into(),
            ..link()
        };
        assert_eq!(with(&other, None), Some("link_elsewhere"));
        let earlier = Link {
            asked_seq: 3,
            ..link()
        };
        assert_eq!(with(&earlier, None), Some("link_elsewhere"));
        let stale = Link {
            input_hash: "abc999".into(),
            ..link()
        };
        assert_eq!(with(&stale, None), Some("stale_input"));
        let carols = Link {
            approver: "carol".into(),
            ..link()
        };
        assert_eq!(with(&carols, None), Some("link_elsewhere"));
    }
}
