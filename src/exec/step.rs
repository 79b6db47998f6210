//! Steps: inputs and their hash, attempts, acceptance, retries, and the human queue.

use super::accept::{FEEDBACK_CAP, first_line, tail};
use super::attempt::AttemptEnd;
use super::frame::{Settle, hash};
use super::scheduler::{Runner, step_kind_word};
use crate::ir::{Command, NodeKind, Skill, StepKind};
use crate::journal::NewEvent;
use serde_json::{Value as Json, json};
use std::sync::Arc;

impl Runner<'_> {
    pub fn step(&self, inst: usize) -> (Arc<Skill>, usize) {
        let i = &self.insts[inst];
        (self.frames[i.frame].skill.clone(), i.node)
    }

    /// Looks names up for a template or field of `inst` at attempt `number`.
    pub fn names<'a>(
        &'a self,
        inst: usize,
        number: u32,
        feedback: &'a str,
    ) -> impl Fn(&str) -> Option<Json> + 'a {
        let frame = self.insts[inst].frame;
        move |name: &str| {
            if name == "attempt" {
                return Some(json!({ "number": number, "feedback": feedback }));
            }
            self.lookup(frame, name)
        }
    }

    /// The rendered inputs of an attempt: what the step will act on.
    pub fn inputs(&self, inst: usize, number: u32, feedback: &str) -> Result<Json, String> {
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return Ok(Json::Null);
        };
        let names = self.names(inst, number, feedback);
        let ev = &self.eval;
        let mut env = serde_json::Map::new();
        for (k, v) in &step.env {
            env.insert(k.clone(), json!(ev.text(&skill, v, &names)?));
        }
        Ok(match &step.kind {
            StepKind::Run(run) => {
                let argv: Vec<String> = match &run.command {
                    Command::Shell(v) => {
                        vec!["sh".into(), "-c".into(), ev.text(&skill, v, &names)?]
                    }
                    Command::Argv(items) => items
                        .iter()
                        .map(|v| ev.text(&skill, v, &names))
                        .collect::<Result<_, _>>()?,
                };
                let stdin = run
                    .stdin
                    .as_ref()
                    .map(|v| ev.text(&skill, v, &names))
                    .transpose()?;
                let cwd = run
                    .cwd
                    .as_ref()
                    .map(|v| ev.text(&skill, v, &names))
                    .transpose()?;
                json!({ "argv": argv, "stdin": stdin, "cwd": cwd, "env": env })
            }
            StepKind::Llm(llm) => {
                let prompt = ev.text(&skill, &llm.prompt, &names)?;
                let system = llm
                    .system
                    .as_ref()
                    .map(|v| ev.text(&skill, v, &names))
                    .transpose()?;
                super::llm::inputs(llm, prompt, system)?
            }
            StepKind::Agent(agent) => super::agent::inputs(agent, &skill, ev, &names)?,
            StepKind::Approval { prompt, .. } => {
                json!({ "prompt": ev.text(&skill, prompt, &names)? })
            }
            StepKind::Call {
                skill: callee,
                args,
            } => {
                let mut map = serde_json::Map::new();
                for (k, v) in args {
                    map.insert(k.clone(), ev.value(&skill, v, &names)?);
                }
                json!({ "skill": callee, "args": map })
            }
            StepKind::Script { code, .. } => {
                let mut map = serde_json::Map::new();
                for name in crate::check::script::identifiers(code) {
                    if let Some(why) = super::eval::Names::failure(&names, name) {
                        return Err(why);
                    }
                    if let Some(v) = names(name) {
                        map.insert(name.to_string(), v);
                    }
                }
                json!({ "values": map, "env": env })
            }
            StepKind::Wait {
                duration_ms, until, ..
            } => {
                json!({ "duration": duration_ms, "until": until.as_ref().map(|u| u.source.clone()) })
            }
        })
    }

    /// `step` as policy rules see it.
    pub fn step_info(&self, inst: usize, inputs: &Json) -> Json {
        let (skill, node) = self.step(inst);
        let n = &skill.nodes[node];
        let NodeKind::Step(step) = &n.kind else {
            return Json::Null;
        };
        let argv: Vec<String> = inputs["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let command = match argv.as_slice() {
            [sh, c, cmd] if sh == "sh" && c == "-c" => cmd.clone(),
            _ => argv.join(" "),
        };
        let view = match (&step.kind, argv.as_slice()) {
            (StepKind::Run(run), [_, _, script]) if matches!(run.command, Command::Shell(_)) => {
                crate::shell::of_script(script)
            }
            (StepKind::Run(_), _) => crate::shell::of_argv(&argv),
            _ => crate::shell::View::default(),
        };
        let commands: Vec<Json> = view
            .commands
            .iter()
            .map(|c| json!({ "name": c.name, "subcommand": c.subcommand, "args": c.args }))
            .collect();
        let model = match &step.kind {
            StepKind::Llm(l) => l.model.name.clone(),
            StepKind::Agent(a) => a.model.name.clone(),
            _ => String::new(),
        };
        let called = match &step.kind {
            StepKind::Call { skill, .. } => {
                skill.rsplit('#').next().unwrap_or_default().to_string()
            }
            _ => String::new(),
        };
        json!({
            "kind": step_kind_word(&step.kind),
            "name": n.name,
            "skill": called,
            "command": command,
            "argv": argv,
            "commands": commands,
            "parsed": view.parsed(),
            "opaque": view.opaque.is_some(),
            "opaque_why": view.opaque,
            "cwd": inputs["cwd"].as_str().unwrap_or_default(),
            "model": model,
            "prompt": inputs["prompt"].as_str().unwrap_or_default(),
            "attempt": self.insts[inst].attempt.max(1),
        })
    }

    /// A step's instance is ready: hash its inputs, reuse a finished result,
    /// apply policy rules, then queue its first attempt.
    pub fn begin_step(&mut self, inst: usize) {
        let (skill, node) = self.step(inst);
        let n = &skill.nodes[node];
        let NodeKind::Step(step) = &n.kind else {
            return;
        };
        let key = self.insts[inst].key.clone();
        let kind = step_kind_word(&step.kind);
        let inputs = match self.inputs(inst, 1, "") {
            Ok(i) => i,
            Err(e) if self.plan.is_some() => {
                self.plan_step(inst, Err(e));
                return;
            }
            Err(e) => {
                self.ensure_ready(inst, kind);
                self.fail_now(inst, e);
                return;
            }
        };
        let input_hash = self.input_hash(inst, step, &inputs);
        self.insts[inst].input_hash = input_hash.clone();
        if self.reuse_prior(inst, step, &n.name, &input_hash) {
            return;
        }
        // A step waiting for a person keeps waiting (or takes the recorded decision)
        // as long as its inputs are unchanged.
        let waiting_kind = self
            .prior_approvals
            .get(&key)
            .filter(|a| {
                a.input_hash == input_hash && self.status.get(&key).is_some_and(|s| s == "waiting")
            })
            .map(|a| (a.kind.clone(), a.prompt.clone()));
        if let Some((item_kind, prompt)) = &waiting_kind
            && item_kind == "escalation"
        {
            self.insts[inst].attempt = self.prior.get(&key).map_or(0, |p| p.attempt);
            self.ask(inst, "escalation", prompt.clone());
            return;
        }
        if waiting_kind.is_none() {
            self.ensure_ready(inst, kind);
        }
        let policies = self.step_policies(&skill);
        // `step` as the rules see it; built only when there is a rule to read it.
        let info = if policies
            .iter()
            .any(|p| p.forbid.is_some() || p.require_approval.is_some())
        {
            self.step_info(inst, &inputs)
        } else {
            Json::Null
        };
        if self.forbidden(inst, &policies, &info) {
            return;
        }
        if self.plan.is_some() {
            self.plan_step(inst, Ok(&inputs));
            return;
        }
        // A result stored by an earlier run is reused without running anything;
        // policy `forbid` above still refuses the step.
        if step.cache.enabled && self.cache.is_some() && self.try_reuse(inst, &inputs) {
            return;
        }
        if let StepKind::Approval { .. } = step.kind {
            let prompt = inputs["prompt"].as_str().unwrap_or_default().to_string();
            self.ask(inst, "approval", prompt);
            return;
        }
        if self.needs_approval(inst, &policies, &info, kind, &n.name) {
            return;
        }
        self.insts[inst].first_inputs = Some(inputs);
        self.queue_attempt(inst);
    }

    /// The input hash: the normalised definition, the rendered inputs, the
    /// frame's context, the upstream results and the memory values it recalls.
    fn input_hash(&self, inst: usize, step: &crate::ir::Step, inputs: &Json) -> String {
        let node = self.insts[inst].node;
        let f = &self.frames[self.insts[inst].frame];
        let mut parts: Vec<String> = vec![
            step.definition.clone(),
            inputs.to_string(),
            f.context_hash.clone(),
        ];
        for d in f.deps.get(&node).into_iter().flatten() {
            parts.push(f.out_hash.get(d).cloned().unwrap_or_default());
        }
        parts.extend(self.eval.memory().hash_parts(&step.recalls));
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        hash(&refs)
    }

    /// Reuses what an earlier session finished with the same input hash;
    /// otherwise says why the step runs (for `--explain`). `true`: reused.
    fn reuse_prior(
        &mut self,
        inst: usize,
        step: &crate::ir::Step,
        name: &str,
        input_hash: &str,
    ) -> bool {
        let key = self.insts[inst].key.clone();
        let Some(prior) = self.prior.get(&key) else {
            return false;
        };
        let same = prior.input_hash.as_deref() == Some(input_hash);
        if same && prior.status == "succeeded" {
            let result = prior.result.clone().unwrap_or(Json::Null);
            self.observer
                .explain(&key, true, "finished earlier and its inputs are unchanged");
            self.reused += 1;
            self.eval.memory().reuse(&key);
            self.frames[self.insts[inst].frame].vars.set(name, result);
            self.settle(inst, Settle::Done);
            return true;
        }
        let since = prior.finished_at.or(prior.started_at).unwrap_or(i64::MAX);
        let recalled = self.eval.memory().changed_after(&step.recalls, since);
        let why = if let (Some(k), false) = (recalled, same) {
            format!("a recalled memory value changed (`{k}`)")
        } else if prior.input_hash.is_some() && !same {
            "its inputs changed (the step, its rendered fields or an upstream result)".to_string()
        } else {
            format!("it had not finished (it was {})", prior.status)
        };
        self.observer.explain(&key, false, &why);
        false
    }

    pub fn queue_attempt(&mut self, inst: usize) {
        let (skill, node) = self.step(inst);
        if let NodeKind::Step(step) = &skill.nodes[node].kind
            && matches!(step.kind, StepKind::Call { .. })
        {
            // A call holds no slot itself: its steps do.
            self.launch_attempt(inst);
        } else {
            self.launch.push_back(inst);
        }
    }

    /// An attempt ended: check acceptance, then succeed, retry or give up.
    pub fn attempt_ended(&mut self, inst: usize, attempt: u32, end: AttemptEnd) {
        if self.insts[inst].done || self.insts[inst].attempt != attempt {
            return;
        }
        self.insts[inst].cancel = None;
        self.insts[inst].child = None;
        // An agent's servers stop with its attempt.
        self.agents.remove(&inst);
        // A result never carries a secret value on: the journal holds the
        // redacted form, so a resumed run must see the same as a fresh one.
        let end = redact_end(end);
        let key = self.insts[inst].key.clone();
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        match end {
            AttemptEnd::Cancelled => self.mark_stopped(inst),
            AttemptEnd::Result(mut result) => {
                self.log_output(inst, attempt, &mut result);
                let name = skill.nodes[node].name.clone();
                self.result_ended(inst, attempt, step, &name, result);
            }
            AttemptEnd::Rejected(result, feedback) => {
                self.set_status(
                    &key,
                    "rejected",
                    Some(attempt),
                    json!({ "result": result, "feedback": feedback, "error": first_line(&feedback) }),
                );
                self.insts[inst].result = Some(result);
                self.after_failure(inst, step, feedback);
            }
            AttemptEnd::Fatal(error) => {
                self.set_status(
                    &key,
                    "failed",
                    Some(attempt),
                    json!({ "error": error, "feedback": error }),
                );
                self.insts[inst].feedback = error.clone();
                if self.stop.is_some() || self.frames[self.insts[inst].frame].stopping {
                    self.mark_stopped(inst);
                } else {
                    self.exhausted(inst, error);
                }
            }
            AttemptEnd::NotStarted(error) => {
                self.insts[inst].budget = self.insts[inst].budget.saturating_add(1);
                self.passing_failure(inst, attempt, step, error, Some(0));
            }
            AttemptEnd::Transient(error, wait) => {
                self.passing_failure(inst, attempt, step, error, wait)
            }
            AttemptEnd::Error(error, mut result) => {
                if let Some(r) = &mut result {
                    self.log_output(inst, attempt, r);
                }
                let mut feedback = error.clone();
                if let Some(stderr) = result
                    .as_ref()
                    .and_then(|r| r["stderr"].as_str())
                    .filter(|s| !s.trim().is_empty())
                {
                    feedback = format!("{error}\n{}", tail(stderr, FEEDBACK_CAP));
                }
                self.set_status(
                    &key,
                    "failed",
                    Some(attempt),
                    json!({ "result": result, "error": error, "feedback": feedback }),
                );
                self.insts[inst].result = result;
                self.after_failure(inst, step, feedback);
            }
        }
    }

    /// An attempt gave a result: `accept` (and `remember`) decide whether the
    /// step succeeded, or the attempt was rejected or failed.
    fn result_ended(
        &mut self,
        inst: usize,
        attempt: u32,
        step: &crate::ir::Step,
        name: &str,
        result: Json,
    ) {
        let key = self.insts[inst].key.clone();
        let verdict = match self.accept(inst, step, &result) {
            Ok(None) => self.remember(inst, step, &result).map(|()| None),
            other => other,
        };
        match verdict {
            Ok(None) => {
                self.store_result(inst, attempt, &result);
                self.set_status(
                    &key,
                    "succeeded",
                    Some(attempt),
                    json!({ "result": result }),
                );
                self.frames[self.insts[inst].frame].vars.set(name, result);
                self.settle(inst, Settle::Done);
            }
            Ok(Some(feedback)) => {
                let data =
                    json!({ "result": result, "feedback": feedback, "error": "not accepted" });
                self.set_status(&key, "rejected", Some(attempt), data);
                self.insts[inst].result = Some(result);
                self.after_failure(inst, step, feedback);
            }
            Err(e) => {
                let data = json!({ "result": result, "error": e, "feedback": e });
                self.set_status(&key, "failed", Some(attempt), data);
                self.insts[inst].result = Some(result);
                self.after_failure(inst, step, e);
            }
        }
    }

    /// A failure that says nothing about the step (a busy server, a start that
    /// never happened): the feedback of the last real rejection is kept.
    fn passing_failure(
        &mut self,
        inst: usize,
        attempt: u32,
        step: &crate::ir::Step,
        error: String,
        wait: Option<u64>,
    ) {
        let key = self.insts[inst].key.clone();
        let feedback = self.insts[inst].feedback.clone();
        let data = json!({ "error": error, "feedback": feedback, "transient": true });
        self.set_status(&key, "failed", Some(attempt), data);
        self.insts[inst].retry_after_ms = wait;
        self.after_failure_because(inst, step, feedback, &error);
    }

    /// Journals an attempt's output, moving its sandbox outcome out of the result.
    pub fn log_output(&mut self, inst: usize, attempt: u32, result: &mut Json) {
        let outcome = result.as_object_mut().and_then(|m| m.remove("outcome"));
        if let (Some(out), Some(err)) = (result["stdout"].as_str(), result["stderr"].as_str()) {
            let key = self.insts[inst].key.clone();
            let truncated = out.starts_with("[flowc: ") || err.starts_with("[flowc: ");
            let mut data = json!({ "stdout": out, "stderr": err, "exit_code": result["exit_code"], "truncated": truncated });
            if let (Some(d), Some(Json::Object(o))) = (data.as_object_mut(), outcome) {
                d.extend(o);
            }
            let event = NewEvent::node(&self.run_id, "output", &key, Some(attempt), data);
            self.push(event);
        }
    }
}

/// An attempt's end with every registered secret value redacted.
pub fn redact_end(end: AttemptEnd) -> AttemptEnd {
    use crate::secrets::{redact, redact_json};
    let json = |mut j: Json| {
        redact_json(&mut j);
        j
    };
    match end {
        AttemptEnd::Result(r) => AttemptEnd::Result(json(r)),
        AttemptEnd::Error(e, r) => AttemptEnd::Error(redact(e), r.map(json)),
        AttemptEnd::Rejected(r, f) => AttemptEnd::Rejected(json(r), redact(f)),
        AttemptEnd::Fatal(e) => AttemptEnd::Fatal(redact(e)),
        AttemptEnd::Transient(e, w) => AttemptEnd::Transient(redact(e), w),
        AttemptEnd::NotStarted(e) => AttemptEnd::NotStarted(redact(e)),
        AttemptEnd::Cancelled => AttemptEnd::Cancelled,
    }
}
