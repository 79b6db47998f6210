//! After an attempt: acceptance and its feedback, retries with backoff, rollback, and `on_failure` when the attempts are spent.

use super::frame::Settle;
use super::scheduler::{Msg, Runner};
use crate::ir::{OnFailure, Step, StepKind};
use crate::journal::NewEvent;
use serde_json::{Value as Json, json};
use std::time::Duration;

impl Runner<'_> {
    /// The names `accept`, `feedback` and `remember` see: the step's own
    /// result fields by bare name, `attempt`, then the frame's names.
    pub fn result_names<'a>(
        &'a self,
        inst: usize,
        result: &'a Json,
    ) -> impl Fn(&str) -> Option<Json> + 'a {
        let frame = self.insts[inst].frame;
        let attempt = self.insts[inst].attempt;
        move |name: &str| {
            if name == "attempt" {
                return Some(json!(attempt));
            }
            if let Some(v) = result.as_object().and_then(|m| m.get(name)) {
                return Some(v.clone());
            }
            if name == "output" {
                return Some(result.clone());
            }
            self.lookup(frame, name)
        }
    }

    /// `None` when accepted, else the feedback for the next attempt.
    pub fn accept(
        &self,
        inst: usize,
        step: &Step,
        result: &Json,
    ) -> Result<Option<String>, String> {
        let frame = self.insts[inst].frame;
        let names = self.result_names(inst, result);
        let mut failed: Option<&str> = None;
        if step.accept.is_empty() {
            if let StepKind::Run(_) = step.kind
                && result["exit_code"].as_i64() != Some(0)
            {
                failed = Some("exit_code == 0");
            }
        } else {
            for criterion in &step.accept {
                if !self
                    .eval
                    .condition(criterion, &names)
                    .map_err(|e| format!("`accept` could not be evaluated: {e}"))?
                {
                    failed = Some(&criterion.source);
                    break;
                }
            }
        }
        let Some(failed) = failed else {
            return Ok(None);
        };
        let feedback = match &step.feedback {
            Some(value) => match self.eval.text(&self.frames[frame].skill, value, &names) {
                Ok(s) => s,
                Err(e) => format!("`accept: {failed}` did not hold (and `feedback` failed: {e})"),
            },
            None => match step.kind {
                StepKind::Run(_) => {
                    let stderr = result["stderr"].as_str().unwrap_or_default();
                    let text = if stderr.trim().is_empty() {
                        result["stdout"].as_str().unwrap_or_default()
                    } else {
                        stderr
                    };
                    format!(
                        "`accept: {failed}` did not hold (exit code {})\n{}",
                        result["exit_code"],
                        tail(text, FEEDBACK_CAP)
                    )
                }
                // Say what the step gave, so a person (or a re-prompted model)
                // sees why it was rejected.
                _ => format!(
                    "`accept: {failed}` did not hold; the result was: {}",
                    shown_result(&step.kind, result)
                ),
            },
        };
        Ok(Some(feedback))
    }

    /// After a rejected or failed attempt: retry within the budget, else `on_failure`.
    pub fn after_failure(&mut self, inst: usize, step: &Step, feedback: String) {
        let why = feedback.clone();
        self.after_failure_because(inst, step, feedback, &why);
    }

    /// `after_failure`, where the reason to give up may differ from the feedback.
    pub fn after_failure_because(&mut self, inst: usize, step: &Step, feedback: String, why: &str) {
        self.insts[inst].feedback = feedback;
        if let StepKind::Run(run) = &step.kind
            && run.rollback
        {
            self.roll_back(inst);
        }
        let attempt = self.insts[inst].attempt;
        let stopping = self.frames[self.insts[inst].frame].stopping || self.stop.is_some();
        if attempt < self.insts[inst].budget && !stopping {
            let key = self.insts[inst].key.clone();
            self.set_status(&key, "retrying", Some(attempt), json!({}));
            let delay = step.backoff.map_or(0, |b| {
                let ms = b.initial_ms as f64 * b.factor.powi(attempt.saturating_sub(1) as i32);
                (ms.min(b.max_ms as f64)).max(0.0) as u64
            });
            let delay = delay.max(self.insts[inst].retry_after_ms.take().unwrap_or(0));
            if delay == 0 {
                self.launch.push_back(inst);
            } else {
                self.timers += 1;
                self.spawn.push(Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Msg::Retry { inst }
                }));
            }
            return;
        }
        if stopping {
            self.mark_stopped(inst);
            return;
        }
        let why = if attempt > 1 {
            format!("{} after {attempt} attempts", first_line(why))
        } else {
            first_line(why)
        };
        self.exhausted(inst, why);
    }

    /// Where snapshots are kept: `snapshots/` beside the journal.
    pub fn snapshot_store(&self) -> std::path::PathBuf {
        crate::journal::state_dir(self.journal.path()).join("snapshots")
    }

    /// `rollback: true`: restores the files saved before the attempt that
    /// just failed, and journals what was done.
    pub fn roll_back(&mut self, inst: usize) {
        let Some((store, id)) = self.insts[inst].snapshot.take() else {
            return;
        };
        let key = self.insts[inst].key.clone();
        let attempt = self.insts[inst].attempt;
        let text = match crate::snapshot::restore(&store, &id) {
            Ok(r) => format!(
                "rolled back snapshot {id}: {} file(s) restored, {} created file(s) removed",
                r.written, r.removed
            ),
            Err(e) => format!("rollback of snapshot {id} failed: {e}"),
        };
        let event = NewEvent::node(
            &self.run_id,
            "note",
            &key,
            Some(attempt),
            json!({ "text": text, "rollback": id }),
        );
        self.push(event);
    }

    /// A failure before any attempt (a field could not be rendered, `when` failed).
    pub fn fail_now(&mut self, inst: usize, why: String) {
        let key = self.insts[inst].key.clone();
        self.insts[inst].feedback = why.clone();
        self.set_status(
            &key,
            "failed",
            None,
            json!({ "error": why, "feedback": why }),
        );
        self.exhausted(inst, why);
    }

    /// The attempts (or iterations) are spent: apply `on_failure`.
    pub fn exhausted(&mut self, inst: usize, why: String) {
        let (skill, node) = self.step(inst);
        let key = self.insts[inst].key.clone();
        let current = self.status.get(&key).cloned().unwrap_or_default();
        match skill.nodes[node].on_failure {
            OnFailure::Escalate => {
                // The person deciding sees the end of the failure too (the
                // stderr tail the feedback carries), not only its first line.
                let feedback = &self.insts[inst].feedback;
                let detail = feedback.split_once('\n').map_or("", |(_, rest)| rest);
                let prompt = if detail.trim().is_empty() {
                    why
                } else {
                    format!("{why}\n{}", detail.trim_end())
                };
                self.ask(inst, "escalation", prompt)
            }
            _ => {
                if current != "failed" {
                    self.set_status(&key, "failed", None, json!({ "error": why }));
                }
                self.exhausted_no_escalate(inst, why);
            }
        }
    }

    /// `on_failure: continue` binds the last result and goes on; otherwise the frame fails.
    pub fn exhausted_no_escalate(&mut self, inst: usize, why: String) {
        let (skill, node) = self.step(inst);
        if skill.nodes[node].on_failure == OnFailure::Continue {
            let name = skill.nodes[node].name.clone();
            let vars = &self.frames[self.insts[inst].frame].vars;
            match self.insts[inst].result.clone() {
                Some(result) => vars.set(&name, result),
                None => {
                    let key = &self.insts[inst].key;
                    vars.set_failed(
                        &name,
                        format!("`{name}` has no result: step `{key}` failed: {why}"),
                    )
                }
            }
            self.settle(inst, Settle::FailedContinue);
        } else {
            self.fail_frame(inst, why);
        }
    }
}

/// Longest feedback handed to the next attempt; the tail is kept.
pub const FEEDBACK_CAP: usize = 4000;

pub fn tail(text: &str, max: usize) -> String {
    match tail_cut(text, max) {
        0 => text.to_string(),
        cut => format!("…{}", &text[cut..]),
    }
}

/// Where the last `max` bytes of `text` start, on a char boundary (0 when it fits).
pub(super) fn tail_cut(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return 0;
    }
    let mut cut = text.len() - max;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    cut
}

pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// A step's result as the feedback of a failed `accept` shows it: an `llm`
/// step's typed output (else its text), anything else as JSON, cut short.
pub fn shown_result(kind: &StepKind, result: &Json) -> String {
    let value = match kind {
        StepKind::Llm(_) | StepKind::Agent(_) if !result["output"].is_null() => {
            result["output"].to_string()
        }
        StepKind::Llm(_) | StepKind::Agent(_) => {
            result["text"].as_str().unwrap_or_default().to_string()
        }
        _ => result.to_string(),
    };
    const MAX: usize = 2000;
    if value.len() <= MAX {
        return value;
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &value[..end], value.len())
}
