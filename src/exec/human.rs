//! The human queue: asking a person (approvals, escalations), approval timeouts, recorded decisions, and questions on the terminal.

use super::frame::Settle;
use super::scheduler::{Decision, IKind, Msg, RunEnd, Runner};
use crate::ir::{NodeKind, StepKind};
use crate::journal::{ApprovalRow, NewEvent, now_ms};
use serde_json::json;

impl Runner<'_> {
    /// Puts an item in the human queue (journaled before anything waits).
    pub fn ask(&mut self, inst: usize, kind: &'static str, prompt: String) {
        let key = self.insts[inst].key.clone();
        let hash = self.insts[inst].input_hash.clone();
        if let Some(row) = self.prior_approvals.get(&key).cloned()
            && row.input_hash == hash
            && row.kind == kind
        {
            if row.status != "pending" {
                self.prior_approvals.remove(&key);
                if self.status.get(&key).is_none_or(|s| s != "waiting") {
                    self.set_status(&key, "waiting", None, json!({}));
                }
                self.insts[inst].asking = Some(kind);
                self.waiting += 1;
                let decision = decision_of(&row);
                self.apply_decision(inst, decision, false);
                return;
            }
        } else {
            let mut data = json!({ "kind": kind, "prompt": prompt, "input_hash": hash });
            if let Some(spec) = self.approval_spec(inst, kind) {
                data["approvers"] = json!(spec.approvers);
                data["required"] = json!(spec.required);
                data["self_approval"] = json!(spec.self_approval);
            }
            // For deciders that have no IR (the web page, the API, the CLI).
            self.approval_extras(inst, kind, &mut data);
            // For the service's live timer, which has no IR.
            if let Some((timeout_ms, approve)) = self.approval_timeout(inst) {
                data["timeout_ms"] = json!(timeout_ms);
                data["default"] = json!(if approve { "approve" } else { "reject" });
            }
            let event = NewEvent::node(&self.run_id, "approval_requested", &key, None, data);
            self.push(event);
        }
        self.prior_approvals.remove(&key);
        if self.status.get(&key).is_none_or(|s| s != "waiting") {
            self.set_status(
                &key,
                "waiting",
                None,
                json!({ "error": format!("waiting for a person ({kind})") }),
            );
        }
        self.insts[inst].asking = Some(kind);
        self.waiting += 1;
        if let Some(decision) = self.approval_timed_out(inst, kind) {
            self.apply_decision(inst, decision, true);
            return;
        }
        // Approvals with approvers or a quorum are decided through `flowc approve`,
        // where the authorization rule runs; the terminal cannot say who answers.
        let open = self
            .approval_spec(inst, kind)
            .is_none_or(|s| s.approvers.is_empty() && s.required <= 1);
        if self.interactive && open {
            self.prompts.push_back(inst);
        }
    }

    /// Who may decide an approval step, journaled with the question so every decider reads the same rules.
    fn approval_spec(&self, inst: usize, kind: &str) -> Option<crate::approvals::ApprovalSpec> {
        if kind != "approval" {
            return None;
        }
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return None;
        };
        let StepKind::Approval {
            approvers,
            required,
            self_approval,
            ..
        } = &step.kind
        else {
            return None;
        };
        Some(crate::approvals::ApprovalSpec {
            approvers: approvers.clone(),
            required: *required,
            self_approval: *self_approval,
        })
    }

    /// The form's schema and the notification targets (the step's and the
    /// policy's), journaled with the question.
    fn approval_extras(&self, inst: usize, kind: &str, data: &mut serde_json::Value) {
        let (skill, node) = self.step(inst);
        let mut targets = match kind {
            "escalation" => skill.policy.notify.escalations.clone(),
            _ => skill.policy.notify.approvals.clone(),
        };
        if let NodeKind::Step(step) = &skill.nodes[node].kind
            && let StepKind::Approval { form, notify, .. } = &step.kind
        {
            if let Some(ty) = form {
                data["form_schema"] = crate::llm::schema::schema(ty);
            }
            for t in notify {
                if !targets.contains(t) {
                    targets.push(t.clone());
                }
            }
        }
        if !targets.is_empty() {
            data["notify"] = targets.iter().map(|t| t.to_json()).collect();
        }
    }

    /// An approved step's result: every approver in `by`, and the form's answers
    /// checked against its type (a default decision gives an empty form).
    fn approved_result(
        &self,
        inst: usize,
        by: String,
        comment: Option<String>,
        answers: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let answers = answers.unwrap_or_default();
        let everyone = match answers.get("by") {
            Some(list @ serde_json::Value::Array(_)) => list.clone(),
            _ => json!([by]),
        };
        let mut result =
            json!({ "approved": true, "by": everyone, "comment": comment.unwrap_or_default() });
        let (skill, node) = self.step(inst);
        if let NodeKind::Step(step) = &skill.nodes[node].kind
            && let StepKind::Approval { form: Some(ty), .. } = &step.kind
        {
            let form = answers.get("form").cloned().unwrap_or_default();
            if by == "timeout" {
                result["form"] = json!({});
            } else if let Err(e) = super::eval::validate(&form, ty) {
                return Err(format!(
                    "the form given with `flowc approve --form` does not fit the type `{ty}`: {e}"
                ));
            } else {
                result["form"] = form;
            }
        }
        Ok(result)
    }

    /// An approval step's `timeout` and whether its `default` approves.
    fn approval_timeout(&self, inst: usize) -> Option<(u64, bool)> {
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return None;
        };
        match step.kind {
            StepKind::Approval {
                timeout_ms: Some(t),
                default_approve,
                ..
            } => Some((t, default_approve)),
            _ => None,
        }
    }

    /// An approval step whose `timeout` has passed gets its `default` decision.
    pub fn approval_timed_out(&self, inst: usize, kind: &str) -> Option<Decision> {
        if kind != "approval" {
            return None;
        }
        let (t, default_approve) = self.approval_timeout(inst)?;
        let key = &self.insts[inst].key;
        let asked = self
            .journal
            .approvals(Some(&self.run_id))
            .ok()?
            .into_iter()
            .find(|a| &a.node == key)?
            .requested_at;
        if now_ms() - asked < t as i64 {
            return None;
        }
        let by = "timeout".to_string();
        Some(if default_approve {
            Decision::Approve {
                by,
                comment: Some("approved by default when the timeout passed".into()),
                answers: None,
            }
        } else {
            Decision::Reject {
                by,
                reason: "rejected by default when the timeout passed".into(),
            }
        })
    }

    /// A decision arrived from the terminal.
    pub fn decide(&mut self, inst: usize, decision: Decision) {
        self.apply_decision(inst, decision, true);
    }

    pub fn apply_decision(&mut self, inst: usize, decision: Decision, record: bool) {
        let Some(kind) = self.insts[inst].asking.take() else {
            return;
        };
        if self.insts[inst].done {
            return;
        }
        self.waiting = self.waiting.saturating_sub(1);
        let key = self.insts[inst].key.clone();
        if record {
            self.record_decision(&key, &decision);
        }
        if kind == "policy" && self.tool_decided(inst, &decision) {
            return;
        }
        let (skill, node) = self.step(inst);
        let name = skill.nodes[node].name.clone();
        match (kind, decision) {
            (
                "approval",
                Decision::Approve {
                    by,
                    comment,
                    answers,
                },
            ) => self.approve_step(inst, &name, by, comment, answers),
            ("approval" | "policy", Decision::Reject { by, reason }) => {
                let result = json!({ "approved": false, "by": [&by], "comment": reason });
                let why = format!("rejected by {by}: {reason}");
                self.set_status(
                    &key,
                    "failed",
                    None,
                    json!({ "result": result, "error": why }),
                );
                self.insts[inst].result = Some(result);
                self.exhausted_no_escalate(inst, why);
            }
            ("policy", _) => self.queue_attempt(inst),
            ("escalation", Decision::Skip { output, .. }) => {
                // The result a person gives is data like any step's: it must fit the type.
                if let (Some(o), NodeKind::Step(step)) = (&output, &skill.nodes[node].kind)
                    && let Err(e) = super::eval::validate(o, &step.result)
                {
                    let why = format!(
                        "the result given with `flowc skip` does not fit the step's result type `{}`: {e}",
                        step.result
                    );
                    self.set_status(&key, "failed", None, json!({ "error": why }));
                    self.insts[inst].done = true;
                    self.stop_run(RunEnd::Failed, format!("step `{key}`: {why}"));
                    return;
                }
                self.set_status(&key, "skipped", None, json!({ "result": output }));
                let settle = if output.is_some() {
                    Settle::Done
                } else {
                    Settle::Skipped
                };
                self.bind_skipped(inst, output);
                self.settle(inst, settle);
            }
            ("escalation", Decision::Reject { by, reason }) => {
                let why = format!("aborted by {by}: {reason}");
                self.set_status(&key, "failed", None, json!({ "error": why }));
                self.insts[inst].done = true;
                self.stop_run(RunEnd::Failed, format!("step `{key}` was {why}"));
            }
            ("escalation", _) => self.retry_block_or_step(inst),
            (_, _) => self.queue_attempt(inst),
        }
    }

    /// Journals a decision taken here (on the terminal, or by the timeout).
    fn record_decision(&mut self, key: &str, decision: &Decision) {
        let (word, by, comment, output) = match &decision {
            Decision::Approve {
                by,
                comment,
                answers,
            } => ("approved", by, comment.clone(), answers.clone()),
            Decision::Reject { by, reason } => ("rejected", by, Some(reason.clone()), None),
            Decision::Retry { by } => ("retry", by, None, None),
            Decision::Skip { by, output } => ("skip", by, None, output.clone()),
        };
        let event = NewEvent::node(
            &self.run_id,
            "approval_decided",
            key,
            None,
            json!({ "decision": word, "by": by, "comment": comment, "output": output }),
        );
        self.push(event);
    }

    /// An approval step approved: its result, unless the form's answers do not fit.
    fn approve_step(
        &mut self,
        inst: usize,
        name: &str,
        by: String,
        comment: Option<String>,
        answers: Option<serde_json::Value>,
    ) {
        let key = self.insts[inst].key.clone();
        let (skill, node) = self.step(inst);
        let remembered = |me: &mut Self, result: serde_json::Value| match &skill.nodes[node].kind {
            NodeKind::Step(step) => me.remember(inst, step, &result).map(|()| result),
            _ => Ok(result),
        };
        let result = match self
            .approved_result(inst, by, comment, answers)
            .and_then(|r| remembered(self, r))
        {
            Ok(result) => result,
            Err(why) => {
                self.set_status(&key, "failed", None, json!({ "error": why }));
                self.insts[inst].done = true;
                self.stop_run(RunEnd::Failed, format!("step `{key}`: {why}"));
                return;
            }
        };
        self.set_status(&key, "succeeded", None, json!({ "result": result }));
        self.frames[self.insts[inst].frame].vars.set(name, result);
        self.settle(inst, Settle::Done);
    }

    /// `flowc retry` on an escalation: a fresh budget of attempts or iterations.
    pub fn retry_block_or_step(&mut self, inst: usize) {
        let key = self.insts[inst].key.clone();
        self.set_status(&key, "retrying", None, json!({}));
        match &mut self.insts[inst].kind {
            IKind::Step => {
                let (skill, node) = self.step(inst);
                let extra = match &skill.nodes[node].kind {
                    NodeKind::Step(s) => s.attempts.max(1),
                    _ => 1,
                };
                self.insts[inst].budget = self.insts[inst].attempt + extra;
                self.queue_attempt(inst);
            }
            IKind::Loop { iteration, max, .. } => {
                *max += *iteration;
                *iteration += 1;
                self.next_iteration(inst);
            }
            IKind::For { .. } => self.restart_for(inst),
        }
    }

    /// Shows the next queued item on the terminal (one at a time).
    pub fn next_prompt(&mut self) {
        if self.prompting || !self.interactive {
            return;
        }
        while let Some(inst) = self.prompts.pop_front() {
            let Some(kind) = self.insts[inst].asking else {
                continue;
            };
            if self.insts[inst].done {
                continue;
            }
            let key = self.insts[inst].key.clone();
            let prompt = self
                .journal
                .approvals(Some(&self.run_id))
                .ok()
                .and_then(|a| a.into_iter().find(|r| r.node == key))
                .map(|r| r.prompt)
                .unwrap_or_default();
            self.prompting = true;
            self.spawn.push(Box::pin(async move {
                let decision =
                    tokio::task::spawn_blocking(move || ask_terminal(&key, kind, &prompt))
                        .await
                        .unwrap_or(Decision::Reject {
                            by: user(),
                            reason: "no answer".into(),
                        });
                Msg::Decision { inst, decision }
            }));
            return;
        }
    }
}

/// The OS user this process runs as: `$USER`, `$LOGNAME`, else the passwd name of the uid.
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let uid = nix::unistd::getuid();
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| format!("uid {uid}"), |u| u.name)
        })
}

/// The decision recorded in an approvals row.
pub fn decision_of(row: &ApprovalRow) -> Decision {
    let by = row.decided_by.clone().unwrap_or_else(|| "unknown".into());
    match row.status.as_str() {
        "approved" => Decision::Approve {
            by,
            comment: row.comment.clone(),
            answers: row.output.clone(),
        },
        "retry" => Decision::Retry { by },
        "skip" => Decision::Skip {
            by,
            output: row.output.clone(),
        },
        _ => Decision::Reject {
            by,
            reason: row.comment.clone().unwrap_or_default(),
        },
    }
}

pub fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

pub fn ask_terminal(key: &str, kind: &str, prompt: &str) -> Decision {
    use std::io::Write;
    let by = user();
    let mut err = std::io::stderr();
    loop {
        let _ = match kind {
            "escalation" => write!(
                err,
                "\n? step `{key}` needs a person: {prompt}\n  [r]etry, [s]kip, or [a]bort the run: "
            ),
            _ => write!(
                err,
                "\n? {prompt}\n  (step `{key}`) [a]pprove or [r]eject: "
            ),
        };
        let _ = err.flush();
        let Some(answer) = read_line().map(|a| a.to_lowercase()) else {
            return Decision::Reject {
                by,
                reason: "stdin closed before an answer".into(),
            };
        };
        match (kind, answer.as_str()) {
            ("escalation", "r" | "retry") => return Decision::Retry { by },
            ("escalation", "s" | "skip") => return Decision::Skip { by, output: None },
            ("escalation", "a" | "abort") | (_, "r" | "reject") => {
                let _ = write!(err, "  reason: ");
                let _ = err.flush();
                let reason = read_line().unwrap_or_default();
                return Decision::Reject {
                    by,
                    reason: if reason.is_empty() {
                        "no reason given".into()
                    } else {
                        reason
                    },
                };
            }
            (_, "a" | "approve" | "y" | "yes") => {
                let _ = write!(err, "  comment (optional): ");
                let _ = err.flush();
                let comment = read_line().unwrap_or_default();
                return Decision::Approve {
                    by,
                    comment: (!comment.is_empty()).then_some(comment),
                    answers: None,
                };
            }
            _ => {}
        }
    }
}
