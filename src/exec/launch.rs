//! Starting one attempt of a step: the `max_steps` cap, rendering its inputs, and the task of each kind (a sandboxed process, a script, a wait, a call's child frame, a model call).

use super::attempt::{self, AttemptEnd, ProcessSpec};
use super::frame::{Frame, Owner, Vars, hash};
use super::scheduler::{Msg, RunEnd, Runner, Task};
use crate::ir::{CompiledExpr, NodeKind, RunStep, Skill, StepKind};
use crate::journal::now_ms;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

impl Runner<'_> {
    /// Starts the next attempt of a step instance.
    pub fn launch_attempt(&mut self, inst: usize) {
        if self.plan.is_some() {
            // A dry run starts nothing (`plan_step` settled every step already).
            return;
        }
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        self.steps_run += 1;
        self.continue_agent_attempt(inst);
        if self.over_max_steps(inst) {
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
                let task = self.run_task(inst, attempt, run, &inputs, timeout, &cancel, &mut data);
                // `None`: the attempt already ended (refused, or its snapshot failed).
                let Some(task) = task else { return };
                Some(task)
            }
            StepKind::Script { ast, output, .. } => {
                let job = attempt::ScriptJob {
                    evaluator: self.eval.clone(),
                    ast: ast.clone(),
                    names: Vec::new(),
                    values: HashMap::new(),
                    output: output.clone(),
                    timeout,
                };
                self.queue_script(inst, attempt, job, &inputs, cancel, data);
                return;
            }
            StepKind::Wait {
                duration_ms,
                until,
                interval_ms,
            } => self.wait_task(
                inst,
                attempt,
                *duration_ms,
                until.as_ref(),
                *interval_ms,
                timeout,
                &cancel,
                &mut data,
            ),
            StepKind::Call { skill: callee, .. } => {
                self.start_call(inst, attempt, callee, &inputs, data);
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
            StepKind::Agent(_) => {
                self.launch_agent(inst, attempt, &inputs, data);
                return;
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

    /// Whether the run's `max_steps` is spent with this attempt: then the
    /// violation is journaled, the run stops failed and the step is stopped.
    fn over_max_steps(&mut self, inst: usize) -> bool {
        if self.prior_steps + self.steps_run <= self.root_policy.max_steps {
            return false;
        }
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
        true
    }

    /// A `script` attempt with its input values, started by `flush` once
    /// `running` is committed (inline when small).
    fn queue_script(
        &mut self,
        inst: usize,
        attempt: u32,
        mut job: attempt::ScriptJob,
        inputs: &Json,
        cancel: Arc<tokio::sync::Notify>,
        data: Json,
    ) {
        job.values = inputs["values"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        job.names = job.values.keys().cloned().collect();
        let key = self.insts[inst].key.clone();
        self.set_status(&key, "running", Some(attempt), data);
        self.insts[inst].cancel = Some(cancel);
        self.running += 1;
        self.inline.push((inst, attempt, job));
    }

    /// The task of a `run` attempt: its environment, sandbox plan and
    /// snapshot; `None` when the attempt already ended (refused, snapshot failed).
    #[allow(clippy::too_many_arguments)]
    fn run_task(
        &mut self,
        inst: usize,
        attempt: u32,
        run: &RunStep,
        inputs: &Json,
        timeout: Duration,
        cancel: &Arc<tokio::sync::Notify>,
        data: &mut Json,
    ) -> Option<Task> {
        let key = self.insts[inst].key.clone();
        let idem = hash(&[&self.run_id, &key, &self.insts[inst].input_hash]);
        let mut env = attempt::string_pairs(&inputs["env"]);
        env.push(("FLOWC_RUN_ID".into(), self.run_id.clone()));
        env.push(("FLOWC_STEP".into(), key.clone()));
        env.push(("FLOWC_ATTEMPT".into(), attempt.to_string()));
        env.push(("FLOWC_IDEMPOTENCY_KEY".into(), idem));
        let plan = self.sandbox_plan(&run.sandbox);
        let plan = match plan {
            Ok(plan) => plan,
            Err(refused) => {
                self.set_status(&key, "running", Some(attempt), std::mem::take(data));
                self.attempt_ended(inst, attempt, AttemptEnd::Error(refused, None));
                return None;
            }
        };
        let mut spec = ProcessSpec {
            argv: attempt::strings(&inputs["argv"]),
            stdin: inputs["stdin"].as_str().map(str::to_string),
            cwd: match (
                &self.frames[self.insts[inst].frame].dir,
                inputs["cwd"].as_str(),
            ) {
                (Some(dir), Some(c)) => Some(super::agent::within(Some(dir), c)),
                (Some(dir), None) => Some(dir.clone()),
                (None, c) => c.map(str::to_string),
            },
            env,
            timeout,
            output: run.output.clone(),
            sandbox: Some(plan),
        };
        spec.settle_start();
        if let Some(plan) = &spec.sandbox {
            data["sandbox"] = plan.record();
        }
        if !run.snapshot.is_empty() {
            let root = spec.cwd.clone().unwrap_or_else(|| ".".into());
            let store = self.snapshot_store();
            match crate::snapshot::take(&store, std::path::Path::new(&root), &run.snapshot) {
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
                    self.set_status(&key, "running", Some(attempt), std::mem::take(data));
                    self.attempt_ended(
                        inst,
                        attempt,
                        AttemptEnd::Error(
                            format!("the snapshot before the attempt failed: {e}"),
                            None,
                        ),
                    );
                    return None;
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

    /// The task of a `wait` attempt: a durable deadline, or `until` polling.
    #[allow(clippy::too_many_arguments)]
    fn wait_task(
        &mut self,
        inst: usize,
        attempt: u32,
        duration_ms: Option<u64>,
        until: Option<&CompiledExpr>,
        interval_ms: u64,
        timeout: Duration,
        cancel: &Arc<tokio::sync::Notify>,
        data: &mut Json,
    ) -> Option<Task> {
        let key = self.insts[inst].key.clone();
        let feedback = self.insts[inst].feedback.clone();
        let prior_deadline = self
            .prior
            .get(&key)
            .filter(|p| p.input_hash.as_deref() == Some(self.insts[inst].input_hash.as_str()))
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
            (self.eval.clone(), (*u).clone(), values, interval_ms)
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

    /// A `call` attempt: the callee's graph as a child frame (or the
    /// `max_depth` refusal).
    fn start_call(&mut self, inst: usize, attempt: u32, callee: &str, inputs: &Json, data: Json) {
        let key = self.insts[inst].key.clone();
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
        let args = inputs["args"].as_object().cloned().unwrap_or_default();
        let prefix = if attempt > 1 {
            format!("{key}@{attempt}/")
        } else {
            format!("{key}/")
        };
        match self.child_frame(inst, callee_skill, args, prefix, Owner::Call(inst)) {
            Ok(child) => self.insts[inst].child = Some(child),
            Err(e) => self.attempt_ended(inst, attempt, AttemptEnd::Error(e, None)),
        }
    }

    /// A frame running `callee` with `args` (defaults filled in) for instance
    /// `inst`, one call deeper than its frame; its nodes' keys start with `prefix`.
    pub fn child_frame(
        &mut self,
        inst: usize,
        callee: Arc<Skill>,
        args: serde_json::Map<String, Json>,
        prefix: String,
        owner: Owner,
    ) -> Result<usize, String> {
        let frame = self.insts[inst].frame;
        let depth = self.frames[frame].depth + 1;
        let vars = Vars::child(None);
        for (k, v) in &args {
            vars.set(k, v.clone());
        }
        for p in &callee.params {
            if args.contains_key(&p.name) {
                continue;
            }
            if let Some(d) = &p.default {
                let lookup = |n: &str| vars.get(n);
                let v = self
                    .eval
                    .value(&callee, d, &lookup)
                    .map_err(|e| format!("default of `{}`: {e}", p.name))?;
                vars.set(&p.name, v);
            }
        }
        let ctx = hash(&[
            &self.frames[frame].context_hash,
            &Json::Object(args).to_string(),
        ]);
        Ok(self.new_frame(Frame::new(callee, None, prefix, vars, ctx, owner, depth)))
    }
}
