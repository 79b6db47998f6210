//! Steps: inputs and their hash, attempts, acceptance, retries, and the human queue.

use super::attempt::{self, AttemptEnd, ProcessSpec};
use super::frame::{Frame, Owner, Settle, Vars, hash};
use super::scheduler::{Decision, IKind, Msg, RunEnd, Runner, Task, step_kind_word};
use crate::ir::{Command, NodeKind, OnFailure, Skill, Step, StepKind};
use crate::journal::{ApprovalRow, NewEvent, now_ms};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Longest feedback handed to the next attempt; the tail is kept.
const FEEDBACK_CAP: usize = 4000;

fn tail(text: &str, max: usize) -> String {
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

fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

impl Runner<'_> {
    fn step(&self, inst: usize) -> (Arc<Skill>, usize) {
        let i = &self.insts[inst];
        (self.frames[i.frame].skill.clone(), i.node)
    }

    /// Looks names up for a template or field of `inst` at attempt `number`.
    fn names<'a>(
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
    fn inputs(&self, inst: usize, number: u32, feedback: &str) -> Result<Json, String> {
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
    fn step_info(&self, inst: usize, inputs: &Json) -> Json {
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
        let model = match &step.kind {
            StepKind::Llm(l) => l.model.name.clone(),
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
        let frame = self.insts[inst].frame;
        let inputs = match self.inputs(inst, 1, "") {
            Ok(i) => i,
            Err(e) => {
                self.ensure_ready(&key, &n.name, kind);
                self.fail_now(inst, e);
                return;
            }
        };
        let f = &self.frames[frame];
        let mut parts: Vec<String> = vec![
            step.fingerprint.clone(),
            inputs.to_string(),
            f.context_hash.clone(),
        ];
        for d in f.deps.get(&node).into_iter().flatten() {
            parts.push(f.out_hash.get(d).cloned().unwrap_or_default());
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let input_hash = hash(&refs);
        self.insts[inst].input_hash = input_hash.clone();
        if let Some(prior) = self.prior.get(&key) {
            let same = prior.input_hash.as_deref() == Some(input_hash.as_str());
            if same && prior.status == "succeeded" {
                let result = prior.result.clone().unwrap_or(Json::Null);
                self.observer
                    .explain(&key, true, "finished earlier and its inputs are unchanged");
                self.reused += 1;
                self.frames[frame].vars.set(&n.name, result);
                self.settle(inst, Settle::Done);
                return;
            }
            let why = if prior.input_hash.is_some() && !same {
                "its inputs changed (the step, its rendered fields or an upstream result)"
                    .to_string()
            } else {
                format!("it had not finished (it was {})", prior.status)
            };
            self.observer.explain(&key, false, &why);
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
            self.ensure_ready(&key, &n.name, kind);
        }
        // The run's policy governs every step; a called skill's own policy
        // adds its rules (it can only refuse more, never allow more).
        let root = self.root_policy.clone();
        let own = (!Arc::ptr_eq(&skill.policy, &root)).then(|| skill.policy.clone());
        let policies = [Some(root), own];
        let policies = policies.iter().flatten();
        // `step` as the rules see it; built only when there is a rule to read it.
        let info = if policies
            .clone()
            .any(|p| p.forbid.is_some() || p.require_approval.is_some())
        {
            self.step_info(inst, &inputs)
        } else {
            Json::Null
        };
        let info_names = |name: &str| (name == "step").then(|| info.clone());
        for policy in policies.clone() {
            let Some(rule) = &policy.forbid else {
                continue;
            };
            match self.eval.condition(rule, &info_names) {
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
                    return;
                }
                Err(e) => {
                    self.fail_now(inst, format!("policy `forbid` could not be evaluated: {e}"));
                    return;
                }
            }
        }
        if let StepKind::Approval { .. } = step.kind {
            let prompt = inputs["prompt"].as_str().unwrap_or_default().to_string();
            self.ask(inst, "approval", prompt);
            return;
        }
        for policy in policies.clone() {
            let Some(rule) = &policy.require_approval else {
                continue;
            };
            match self.eval.condition(rule, &info_names) {
                Ok(false) => {}
                Ok(true) => {
                    let what = match info["command"].as_str() {
                        Some(c) if !c.is_empty() => format!("run `{c}`"),
                        _ => format!("run {kind} step `{}`", n.name),
                    };
                    let prompt = format!("policy `{}` requires approval to {what}", policy.name);
                    self.ask(inst, "policy", prompt);
                    return;
                }
                Err(e) => {
                    self.fail_now(
                        inst,
                        format!("policy `require_approval` could not be evaluated: {e}"),
                    );
                    return;
                }
            }
        }
        self.insts[inst].first_inputs = Some(inputs);
        self.queue_attempt(inst);
    }

    fn queue_attempt(&mut self, inst: usize) {
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

    /// Starts the next attempt of a step instance.
    pub fn launch_attempt(&mut self, inst: usize) {
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        self.steps_run += 1;
        if self.prior_steps + self.steps_run > self.root_policy.max_steps {
            let why = format!(
                "cap `max_steps` ({}) of policy `{}` reached: no more step attempts may start",
                self.root_policy.max_steps, self.root_policy.name
            );
            let key = self.insts[inst].key.clone();
            self.violation(
                Some(&key),
                "max_steps",
                json!(self.root_policy.max_steps),
                &why,
            );
            self.stop_run(RunEnd::Failed, why);
            self.mark_stopped(inst);
            return;
        }
        self.insts[inst].attempt += 1;
        let attempt = self.insts[inst].attempt;
        let key = self.insts[inst].key.clone();
        let feedback = self.insts[inst].feedback.clone();
        // The first attempt's inputs were rendered for the input hash already.
        let first = self.insts[inst]
            .first_inputs
            .take()
            .filter(|_| attempt == 1);
        let inputs = match first.map_or_else(|| self.inputs(inst, attempt, &feedback), Ok) {
            Ok(i) => i,
            Err(e) => {
                self.set_status(
                    &key,
                    "running",
                    Some(attempt),
                    json!({ "input_hash": self.insts[inst].input_hash }),
                );
                self.attempt_ended(inst, attempt, AttemptEnd::Error(e, None));
                return;
            }
        };
        let timeout = Duration::from_millis(step.timeout_ms.max(1));
        let cancel = Arc::new(tokio::sync::Notify::new());
        let mut data = json!({ "input_hash": self.insts[inst].input_hash });
        let task: Option<Task> = match &step.kind {
            StepKind::Run(run) => {
                let idem = hash(&[&self.run_id, &key, &self.insts[inst].input_hash]);
                let mut env: Vec<(String, String)> = inputs["env"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                env.push(("FLOWC_RUN_ID".into(), self.run_id.clone()));
                env.push(("FLOWC_STEP".into(), key.clone()));
                env.push(("FLOWC_ATTEMPT".into(), attempt.to_string()));
                env.push(("FLOWC_IDEMPOTENCY_KEY".into(), idem));
                let plan = self.sandbox_plan(&skill, Some(node), &run.sandbox);
                let plan = match plan {
                    Ok(plan) => plan,
                    Err(refused) => {
                        self.set_status(&key, "running", Some(attempt), data);
                        self.attempt_ended(inst, attempt, AttemptEnd::Error(refused, None));
                        return;
                    }
                };
                data["sandbox"] = plan.record();
                let spec = ProcessSpec {
                    argv: inputs["argv"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    stdin: inputs["stdin"].as_str().map(str::to_string),
                    cwd: inputs["cwd"].as_str().map(str::to_string),
                    env,
                    timeout,
                    output: run.output.clone(),
                    sandbox: Some(plan),
                };
                if !run.snapshot.is_empty() {
                    let root = spec.cwd.clone().unwrap_or_else(|| ".".into());
                    let store = self.snapshot_store();
                    match crate::snapshot::take(&store, std::path::Path::new(&root), &run.snapshot)
                    {
                        Ok(t) => {
                            data["snapshot"] = json!({
                                "id": t.id,
                                "store": store.display().to_string(),
                                "entries": t.entries,
                                "bytes": t.bytes,
                            });
                            self.insts[inst].snapshot = Some((store, t.id));
                        }
                        Err(e) => {
                            self.set_status(&key, "running", Some(attempt), data);
                            self.attempt_ended(
                                inst,
                                attempt,
                                AttemptEnd::Error(
                                    format!("the snapshot before the attempt failed: {e}"),
                                    None,
                                ),
                            );
                            return;
                        }
                    }
                }
                let tx = self.tx.clone();
                let tail: Box<attempt::TailFn> = Box::new(move |line| {
                    let _ = tx.send(Msg::Tail { inst, line });
                });
                let c = cancel.clone();
                Some(Box::pin(async move {
                    Msg::Attempt {
                        inst,
                        attempt,
                        end: attempt::run_process(spec, c, Some(tail)).await,
                    }
                }))
            }
            StepKind::Script { ast, output, .. } => {
                let values: HashMap<String, Json> = inputs["values"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                let names: Vec<String> = values.keys().cloned().collect();
                let job = attempt::ScriptJob {
                    evaluator: self.eval.clone(),
                    ast: ast.clone(),
                    names,
                    values,
                    output: output.clone(),
                    timeout,
                };
                // Started by `flush` once `running` is committed: inline when small.
                self.set_status(&key, "running", Some(attempt), data);
                self.insts[inst].cancel = Some(cancel);
                self.running += 1;
                self.inline.push((inst, attempt, job));
                return;
            }
            StepKind::Wait {
                duration_ms,
                until,
                interval_ms,
            } => {
                let prior_deadline = self
                    .prior
                    .get(&key)
                    .filter(|p| {
                        p.input_hash.as_deref() == Some(self.insts[inst].input_hash.as_str())
                    })
                    .and_then(|p| p.data.as_ref())
                    .and_then(|d| d["deadline"].as_i64());
                let deadline = self.insts[inst]
                    .deadline
                    .or(prior_deadline)
                    .or_else(|| duration_ms.map(|d| now_ms() + d as i64));
                self.insts[inst].deadline = deadline;
                data["data"] = json!({ "deadline": deadline });
                let until = until.as_ref().map(|u| {
                    let names = self.names(inst, attempt, &feedback);
                    let values: HashMap<String, Json> = super::eval::prefixed_names(&u.code)
                        .filter_map(|n| names(n).map(|v| (n.to_string(), v)))
                        .collect();
                    (self.eval.clone(), u.clone(), values, *interval_ms)
                });
                let c = cancel.clone();
                Some(Box::pin(async move {
                    Msg::Attempt {
                        inst,
                        attempt,
                        end: attempt::run_wait(deadline, until, timeout, c).await,
                    }
                }))
            }
            StepKind::Call { skill: callee, .. } => {
                let Some(callee_skill) = self.program.skills.get(callee).cloned() else {
                    self.set_status(&key, "running", Some(attempt), data);
                    self.attempt_ended(
                        inst,
                        attempt,
                        AttemptEnd::Error(format!("skill `{callee}` is not in the program"), None),
                    );
                    return;
                };
                let frame = self.insts[inst].frame;
                let depth = self.frames[frame].depth + 1;
                self.set_status(&key, "running", Some(attempt), data);
                if depth > self.root_policy.max_depth {
                    let why = format!(
                        "cap `max_depth` ({}) of policy `{}` reached by nested calls",
                        self.root_policy.max_depth, self.root_policy.name
                    );
                    // Fail closed: the step fails naming the cap, and the run stops.
                    self.set_status(&key, "failed", Some(attempt), json!({ "error": why }));
                    self.violation(
                        Some(&key),
                        "max_depth",
                        json!(self.root_policy.max_depth),
                        &why,
                    );
                    self.stop_run(RunEnd::Failed, format!("step `{key}` {why}"));
                    return;
                }
                let vars = Vars::child(None);
                let args = inputs["args"].as_object().cloned().unwrap_or_default();
                for (k, v) in &args {
                    vars.set(k, v.clone());
                }
                for p in &callee_skill.params {
                    if args.contains_key(&p.name) {
                        continue;
                    }
                    if let Some(d) = &p.default {
                        let lookup = |n: &str| vars.get(n);
                        match self.eval.value(&callee_skill, d, &lookup) {
                            Ok(v) => vars.set(&p.name, v),
                            Err(e) => {
                                self.attempt_ended(
                                    inst,
                                    attempt,
                                    AttemptEnd::Error(
                                        format!("default of `{}`: {e}", p.name),
                                        None,
                                    ),
                                );
                                return;
                            }
                        }
                    }
                }
                let prefix = if attempt > 1 {
                    format!("{key}@{attempt}/")
                } else {
                    format!("{key}/")
                };
                let ctx = hash(&[
                    &self.frames[frame].context_hash,
                    &Json::Object(args).to_string(),
                ]);
                let child = self.new_frame(Frame::new(
                    callee_skill,
                    None,
                    prefix,
                    vars,
                    ctx,
                    Owner::Call(inst),
                    depth,
                ));
                self.insts[inst].child = Some(child);
                return;
            }
            StepKind::Llm(llm) => {
                match self.launch_llm(
                    inst,
                    attempt,
                    llm,
                    &inputs,
                    &feedback,
                    timeout,
                    cancel.clone(),
                ) {
                    Ok(task) => Some(task),
                    Err(None) => return,
                    Err(Some(end)) => {
                        self.set_status(&key, "running", Some(attempt), data);
                        self.attempt_ended(inst, attempt, end);
                        return;
                    }
                }
            }
            StepKind::Approval { .. } => return,
        };
        self.set_status(&key, "running", Some(attempt), data);
        if let Some(task) = task {
            self.insts[inst].cancel = Some(cancel);
            self.running += 1;
            self.spawn.push(task);
        }
    }

    /// An attempt ended: check acceptance, then succeed, retry or give up.
    pub fn attempt_ended(&mut self, inst: usize, attempt: u32, end: AttemptEnd) {
        if self.insts[inst].done || self.insts[inst].attempt != attempt {
            return;
        }
        self.insts[inst].cancel = None;
        self.insts[inst].child = None;
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
                match self.accept(inst, step, &result) {
                    Ok(None) => {
                        let name = skill.nodes[node].name.clone();
                        self.set_status(
                            &key,
                            "succeeded",
                            Some(attempt),
                            json!({ "result": result }),
                        );
                        self.frames[self.insts[inst].frame].vars.set(&name, result);
                        self.settle(inst, Settle::Done);
                    }
                    Ok(Some(feedback)) => {
                        self.set_status(&key, "rejected", Some(attempt), json!({ "result": result, "feedback": feedback, "error": "not accepted" }));
                        self.insts[inst].result = Some(result);
                        self.after_failure(inst, step, feedback);
                    }
                    Err(e) => {
                        self.set_status(
                            &key,
                            "failed",
                            Some(attempt),
                            json!({ "result": result, "error": e, "feedback": e }),
                        );
                        self.insts[inst].result = Some(result);
                        self.after_failure(inst, step, e);
                    }
                }
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
            AttemptEnd::Transient(error, wait) => {
                // The feedback of the last real rejection is kept: a busy
                // server says nothing about the reply.
                let feedback = self.insts[inst].feedback.clone();
                self.set_status(
                    &key,
                    "failed",
                    Some(attempt),
                    json!({ "error": error, "feedback": feedback, "transient": true }),
                );
                self.insts[inst].retry_after_ms = wait;
                self.after_failure_because(inst, step, feedback, &error);
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

    /// Journals an attempt's output, moving its sandbox outcome out of the result.
    fn log_output(&mut self, inst: usize, attempt: u32, result: &mut Json) {
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

    /// `None` when accepted, else the feedback for the next attempt.
    fn accept(&self, inst: usize, step: &Step, result: &Json) -> Result<Option<String>, String> {
        let frame = self.insts[inst].frame;
        let attempt = self.insts[inst].attempt;
        let names = |name: &str| {
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
        };
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
            Some(expr) => match self.eval.expr(expr, &names) {
                Ok(Json::String(s)) => s,
                Ok(other) => other.to_string(),
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
                _ => format!("`accept: {failed}` did not hold"),
            },
        };
        Ok(Some(feedback))
    }

    /// After a rejected or failed attempt: retry within the budget, else `on_failure`.
    fn after_failure(&mut self, inst: usize, step: &Step, feedback: String) {
        let why = feedback.clone();
        self.after_failure_because(inst, step, feedback, &why);
    }

    /// `after_failure`, where the reason to give up may differ from the feedback.
    fn after_failure_because(&mut self, inst: usize, step: &Step, feedback: String, why: &str) {
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
    fn snapshot_store(&self) -> std::path::PathBuf {
        self.journal
            .path()
            .parent()
            .map(|d| d.join("snapshots"))
            .unwrap_or_else(|| std::path::PathBuf::from(".flowc/snapshots"))
    }

    /// `rollback: true`: restores the files saved before the attempt that
    /// just failed, and journals what was done.
    fn roll_back(&mut self, inst: usize) {
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
            OnFailure::Escalate => self.ask(inst, "escalation", why),
            _ => {
                if current != "failed" {
                    self.set_status(&key, "failed", None, json!({ "error": why }));
                }
                self.exhausted_no_escalate(inst, why);
            }
        }
    }

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
            let event = NewEvent::node(
                &self.run_id,
                "approval_requested",
                &key,
                None,
                json!({ "kind": kind, "prompt": prompt, "input_hash": hash }),
            );
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
        if self.interactive {
            self.prompts.push_back(inst);
        }
    }

    /// An approval step whose `timeout` has passed gets its `default` decision.
    fn approval_timed_out(&self, inst: usize, kind: &str) -> Option<Decision> {
        if kind != "approval" {
            return None;
        }
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return None;
        };
        let StepKind::Approval {
            timeout_ms: Some(t),
            default_approve,
            ..
        } = step.kind
        else {
            return None;
        };
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

    fn apply_decision(&mut self, inst: usize, decision: Decision, record: bool) {
        let Some(kind) = self.insts[inst].asking.take() else {
            return;
        };
        if self.insts[inst].done {
            return;
        }
        self.waiting = self.waiting.saturating_sub(1);
        let key = self.insts[inst].key.clone();
        if record {
            let (word, by, comment, output) = match &decision {
                Decision::Approve { by, comment } => ("approved", by, comment.clone(), None),
                Decision::Reject { by, reason } => ("rejected", by, Some(reason.clone()), None),
                Decision::Retry { by } => ("retry", by, None, None),
                Decision::Skip { by, output } => ("skip", by, None, output.clone()),
            };
            let event = NewEvent::node(
                &self.run_id,
                "approval_decided",
                &key,
                None,
                json!({ "decision": word, "by": by, "comment": comment, "output": output }),
            );
            self.push(event);
        }
        let (skill, node) = self.step(inst);
        let name = skill.nodes[node].name.clone();
        match (kind, decision) {
            ("approval", Decision::Approve { by, comment }) => {
                let result =
                    json!({ "approved": true, "by": by, "comment": comment.unwrap_or_default() });
                self.set_status(&key, "succeeded", None, json!({ "result": result }));
                self.frames[self.insts[inst].frame].vars.set(&name, result);
                self.settle(inst, Settle::Done);
            }
            ("approval" | "policy", Decision::Reject { by, reason }) => {
                let result = json!({ "approved": false, "by": by, "comment": reason });
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

    /// `on_failure: continue` binds the last result and goes on; otherwise the frame fails.
    fn exhausted_no_escalate(&mut self, inst: usize, why: String) {
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

    /// `flowc retry` on an escalation: a fresh budget of attempts or iterations.
    fn retry_block_or_step(&mut self, inst: usize) {
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

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// The decision recorded in an approvals row.
pub fn decision_of(row: &ApprovalRow) -> Decision {
    let by = row.decided_by.clone().unwrap_or_else(|| "unknown".into());
    match row.status.as_str() {
        "approved" => Decision::Approve {
            by,
            comment: row.comment.clone(),
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

fn read_line() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

fn ask_terminal(key: &str, kind: &str, prompt: &str) -> Decision {
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
                };
            }
            _ => {}
        }
    }
}

/// An attempt's end with every registered secret value redacted.
fn redact_end(end: AttemptEnd) -> AttemptEnd {
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
        AttemptEnd::Cancelled => AttemptEnd::Cancelled,
    }
}
