//! Policy `forbid` and `require_approval` before a step starts: the policies
//! that govern it, `step` and `tool` in scope, refusals journaled as violations.

use super::scheduler::{RunEnd, Runner};
use crate::ir::{Policy, Skill};
use serde_json::{Value as Json, json};
use std::sync::Arc;

impl Runner<'_> {
    /// The run's policy, which governs every step, and a called skill's own
    /// policy, which adds its rules (it can only refuse more, never allow more).
    pub fn step_policies(&self, skill: &Skill) -> Vec<Arc<Policy>> {
        let root = self.root_policy.clone();
        let own = (!Arc::ptr_eq(&skill.policy, &root)).then(|| skill.policy.clone());
        [Some(root), own].into_iter().flatten().collect()
    }

    /// `forbid`: a step a rule refuses fails and the run stops (fail-closed,
    /// as does a rule that cannot be evaluated). `true`: it was refused.
    pub fn forbidden(&mut self, inst: usize, policies: &[Arc<Policy>], info: &Json) -> bool {
        let key = self.insts[inst].key.clone();
        let names = rule_names(info);
        for policy in policies {
            let Some(rule) = &policy.forbid else {
                continue;
            };
            match self.eval.condition(rule, &names) {
                Ok(false) => {}
                Ok(true) => {
                    let why = format!(
                        "refused by `forbid` of policy `{}`: `{}`",
                        policy.name, rule.source
                    );
                    self.set_status(&key, "failed", None, json!({ "error": why }));
                    self.violation_of(&policy.name, Some(&key), "forbid", json!(rule.source), &why);
                    self.insts[inst].done = true;
                    self.stop_run(RunEnd::Failed, format!("step `{key}` {why}"));
                    return true;
                }
                Err(e) => {
                    self.fail_now(inst, format!("policy `forbid` could not be evaluated: {e}"));
                    return true;
                }
            }
        }
        false
    }

    /// `require_approval`: a step a rule names waits for a person. `true`: it waits (or failed).
    pub fn needs_approval(
        &mut self,
        inst: usize,
        policies: &[Arc<Policy>],
        info: &Json,
        kind: &str,
        name: &str,
    ) -> bool {
        let names = rule_names(info);
        for policy in policies {
            let Some(rule) = &policy.require_approval else {
                continue;
            };
            match self.eval.condition(rule, &names) {
                Ok(false) => {}
                Ok(true) => {
                    let mut what = match info["command"].as_str() {
                        Some(c) if !c.is_empty() => format!("run `{c}`"),
                        _ => format!("run {kind} step `{name}`"),
                    };
                    if let Some(why) = info["opaque_why"].as_str() {
                        what.push_str(&format!(" (flowc cannot tell what it runs: {why})"));
                    }
                    let prompt = format!("policy `{}` requires approval to {what}", policy.name);
                    self.ask(inst, "policy", prompt);
                    return true;
                }
                Err(e) => {
                    self.fail_now(
                        inst,
                        format!("policy `require_approval` could not be evaluated: {e}"),
                    );
                    return true;
                }
            }
        }
        false
    }
}

/// The names a rule sees before a step starts: `step`, and `tool` empty (it is
/// an agent's call only when the rules run again before that call).
fn rule_names(info: &Json) -> impl Fn(&str) -> Option<Json> + '_ {
    move |name: &str| match name {
        "step" => Some(info.clone()),
        "tool" => Some(json!({ "name": "", "args": {}, "effect": "" })),
        _ => None,
    }
}
