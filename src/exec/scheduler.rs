//! The scheduler: frames, node instances, the ready queue and the run's end.

use super::attempt::{AttemptEnd, ScriptJob};
use super::eval::Evaluator;
use super::frame::{Frame, Vars};
use super::observer::Observer;
use crate::ir::{NodeId, Program, Skill, StepKind};
use crate::journal::{ApprovalRow, Journal, JournalError, NewEvent, NodeRow};
use serde_json::{Value as Json, json};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue this run instead of starting a new one.
    pub resume: Option<String>,
    /// The skill's inputs, already typed.
    pub inputs: serde_json::Map<String, Json>,
    /// Ask for approvals on the terminal instead of pausing.
    pub interactive: bool,
    /// The display path of the flow file.
    pub file: String,
    /// Answer `llm` steps from this run's recorded calls instead of asking models.
    pub replay_llm: Option<String>,
    /// Start this queued run (`flowc submit`, a trigger) rather than a new one.
    pub queued: Option<String>,
    /// The step cache's directory (`None`: no step is reused across runs).
    pub cache_dir: Option<std::path::PathBuf>,
    /// The cache's size cap in bytes, kept by evicting least recently used entries after the run.
    pub cache_max_bytes: u64,
    /// A dry run: no step runs and nothing is journaled; the report's `plan` says what would happen.
    pub plan: bool,
    /// Every file compiled (display path, text), kept in the journal when the run starts.
    pub sources: Vec<(String, String)>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every node settled and the return value was computed.
    Succeeded,
    /// A node failed (or a cap was hit).
    Failed,
    /// Waiting for a person.
    Paused,
    /// Stopped by a signal.
    Interrupted,
    /// Cancelled by a person (`flowc cancel`).
    Cancelled,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// How it ended.
    pub end: RunEnd,
    /// The skill's return value.
    pub output: Option<Json>,
    /// Why it failed.
    pub error: Option<String>,
    /// Node instances reused from an earlier session of the run.
    pub reused: usize,
    /// Step attempts started in this session.
    pub attempts: u64,
    /// Steps whose result came from the step cache (an earlier run).
    pub cache_hits: usize,
    /// For a dry run: what each node instance would do.
    pub plan: Vec<super::plan::PlanRow>,
    /// Model calls of the whole run (all its sessions), per model.
    pub usage: Vec<crate::journal::LlmUsage>,
}

/// A person's decision on a queued item.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Approve (approval steps and policy approvals).
    Approve {
        /// Who decided.
        by: String,
        /// Their comment.
        comment: Option<String>,
        /// For a quorum or a form: `{ by: [every approver], form: {...} }`.
        answers: Option<Json>,
    },
    /// Reject; for an escalation, abort the run.
    Reject {
        /// Who decided.
        by: String,
        /// Why.
        reason: String,
    },
    /// Escalations: give the step a fresh attempt budget.
    Retry {
        /// Who decided.
        by: String,
    },
    /// Escalations: skip the step, optionally with a result.
    Skip {
        /// Who decided.
        by: String,
        /// The result to use.
        output: Option<Json>,
    },
}

pub(super) type Task = Pin<Box<dyn Future<Output = Msg> + Send>>;

/// What tasks report to the scheduler.
pub(super) enum Msg {
    Attempt {
        inst: usize,
        attempt: u32,
        end: AttemptEnd,
    },
    Retry {
        inst: usize,
    },
    Decision {
        inst: usize,
        decision: Decision,
    },
    Tail {
        inst: usize,
        line: String,
    },
    Llm {
        inst: usize,
        attempt: u32,
        call: Box<super::llm::Exchange>,
    },
    AgentTurn {
        inst: usize,
        attempt: u32,
        turn: Box<super::agent::turn::Turn>,
    },
    AgentServers {
        inst: usize,
        attempt: u32,
        started: super::agent::servers::Started,
    },
    AgentMcp {
        inst: usize,
        attempt: u32,
        done: Box<super::agent::tools::McpDone>,
    },
    AgentRetry {
        inst: usize,
        attempt: u32,
    },
    Interrupt,
    Heartbeat,
    /// Someone asked to cancel the run.
    Cancel(String),
    RunTimeout,
}

/// Block-specific instance state.
#[derive(Debug)]
pub(super) enum IKind {
    Step,
    Loop {
        iteration: u32,
        max: u32,
        feedback: String,
    },
    For {
        elements: Vec<Json>,
        next: usize,
        live: usize,
        parallel: usize,
        results: Vec<Option<Arc<Vars>>>,
        failed: Option<(String, String)>,
    },
}

/// One node instance.
#[derive(Debug)]
pub(super) struct Inst {
    pub key: String,
    pub frame: usize,
    pub node: NodeId,
    pub attempt: u32,
    pub budget: u32,
    pub feedback: String,
    pub input_hash: String,
    pub result: Option<Json>,
    pub cancel: Option<Arc<Notify>>,
    pub child: Option<usize>,
    pub done: bool,
    pub kind: IKind,
    /// Waiting for a person: the kind of item.
    pub asking: Option<&'static str>,
    /// A wait step's deadline, journaled so a resumed run waits only for the rest.
    pub deadline: Option<i64>,
    /// A block that had succeeded before this session: its status stays
    /// `succeeded` unless something inside it must run again.
    pub quiet: bool,
    /// The first attempt's rendered inputs, kept from computing the input hash.
    pub first_inputs: Option<Json>,
    /// The least wait before the next attempt (a server's `Retry-After`), in ms.
    pub retry_after_ms: Option<u64>,
    /// The snapshot taken before the current attempt: (store, id).
    pub snapshot: Option<(std::path::PathBuf, String)>,
    /// A cacheable step's key, until its accepted result is stored.
    pub cache_key: Option<super::reuse::CacheKey>,
}

pub(super) enum Work {
    Start(usize, NodeId),
    FrameEnd(usize),
}

/// The scheduler's state for one session of a run.
pub(super) struct Runner<'o> {
    pub run_id: String,
    pub program: Arc<Program>,
    pub journal: Journal,
    pub eval: Arc<Evaluator>,
    pub frames: Vec<Frame>,
    pub insts: Vec<Inst>,
    pub work: VecDeque<Work>,
    pub events: Vec<NewEvent>,
    pub spawn: Vec<Task>,
    /// Script attempts to start after the next commit, inline when small.
    pub inline: Vec<(usize, u32, ScriptJob)>,
    /// Results of attempts that ended inline, handled before waiting on `rx`.
    pub inbox: VecDeque<Msg>,
    pub launch: VecDeque<usize>,
    pub tx: mpsc::UnboundedSender<Msg>,
    pub running: usize,
    pub timers: usize,
    pub prompts: VecDeque<usize>,
    pub prompting: bool,
    pub waiting: usize,
    pub status: HashMap<String, String>,
    pub prior: HashMap<String, NodeRow>,
    pub prior_approvals: HashMap<String, ApprovalRow>,
    pub steps_run: u64,
    /// Step attempts started by earlier sessions of this run (for `max_steps`).
    pub prior_steps: u64,
    pub reused: usize,
    pub root_policy: Arc<crate::ir::Policy>,
    pub stop: Option<(RunEnd, String)>,
    pub interactive: bool,
    pub observer: &'o mut dyn Observer,
    pub root_done: Option<Result<Json, String>>,
    pub llm: super::llm::LlmState,
    /// Sandbox plans by the limits they were made for: a plan only depends on
    /// those, the run's policy and this machine, so it is made once per run
    /// for each distinct sandbox rather than per step or attempt (a chain of
    /// steps under one policy resolves its paths once).
    pub plans: Vec<(crate::ir::Sandbox, Result<crate::sandbox::Plan, String>)>,
    /// The step cache, when on.
    pub cache: Option<crate::cache::Store>,
    /// Steps reused from the cache in this session.
    pub cache_hits: usize,
    /// The dry run's state; `None` in a real run.
    pub plan: Option<super::plan::Plan>,
    /// Agent attempts in progress, by instance.
    pub agents: HashMap<usize, super::agent::AgentRun>,
}

/// At most this many task messages are handled before one commit (a step's
/// end waits for no more than the others that were already waiting).
const GROUP_COMMIT_MAX: usize = 64;

impl Runner<'_> {
    /// Queues an event for the next commit.
    pub fn push(&mut self, event: NewEvent) {
        self.events.push(event);
    }

    /// Journals a trace line about attempt `attempt` of step `key` (`data` holds its `text`).
    pub fn note(&mut self, key: &str, attempt: u32, data: Json) {
        let event = NewEvent::node(&self.run_id, "note", key, Some(attempt), data);
        self.push(event);
    }

    /// A policy rule was violated: journals which rule, its value and the
    /// policy (`flowc status` lists these). The caller stops the run.
    pub fn violation(&mut self, node: Option<&str>, rule: &str, value: Json, why: &str) {
        let policy = self.root_policy.name.clone();
        self.violation_of(&policy, node, rule, value, why);
    }

    /// [`Runner::violation`] of a rule of `policy` (a called skill's own, say).
    pub fn violation_of(
        &mut self,
        policy: &str,
        node: Option<&str>,
        rule: &str,
        value: Json,
        why: &str,
    ) {
        let data = json!({
            "rule": rule,
            "value": value,
            "policy": policy,
            "message": why,
        });
        let event = match node {
            Some(k) => NewEvent::node(&self.run_id, "policy_violation", k, None, data),
            None => NewEvent::run(&self.run_id, "policy_violation", data),
        };
        self.push(event);
    }

    /// Queues a node status change, tracking the status locally.
    pub fn set_status(&mut self, key: &str, status: &str, attempt: Option<u32>, extra: Json) {
        let mut data = match extra {
            Json::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        data.insert("status".into(), json!(status));
        self.status.insert(key.to_string(), status.to_string());
        let event = NewEvent::node(
            &self.run_id,
            "node_status",
            key,
            attempt,
            Json::Object(data),
        );
        self.push(event);
    }

    /// Commits queued events, then starts the tasks they announce.
    fn flush(&mut self) -> Result<(), JournalError> {
        if self.plan.is_some() {
            // A dry run journals nothing and starts nothing.
            self.events.clear();
            self.spawn.clear();
            self.inline.clear();
            return Ok(());
        }
        if !self.events.is_empty() {
            let mut events = crate::journal::fold(std::mem::take(&mut self.events));
            // Nothing a secret was resolved into reaches the journal or a view.
            for e in &mut events {
                crate::secrets::redact_json(&mut e.data);
            }
            self.journal.append(&events)?;
            for e in &events {
                self.observer.event(e);
            }
            self.observer.committed();
        }
        for task in self.spawn.drain(..) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let msg = task.await;
                let _ = tx.send(msg);
            });
        }
        // Their `running` is committed: run small scripts here and now (no
        // thread hand-over), move the others to a blocking thread.
        for (inst, attempt, job) in std::mem::take(&mut self.inline) {
            match job.run_inline() {
                Ok(end) => self.inbox.push_back(Msg::Attempt { inst, attempt, end }),
                Err(job) => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let end = job.run().await;
                        let _ = tx.send(Msg::Attempt { inst, attempt, end });
                    });
                }
            }
        }
        Ok(())
    }

    pub fn new_frame(&mut self, mut frame: Frame) -> usize {
        use super::frame::Owner;
        let parent = match frame.owner {
            Owner::Root => None,
            Owner::Loop(i) | Owner::ForElem(i, _) | Owner::Call(i) | Owner::Tool(i) => {
                Some(self.insts[i].frame)
            }
        };
        let own = match frame.owner {
            Owner::Tool(i) => self.agents.get(&i).and_then(|r| r.cwd.clone()),
            _ => None,
        };
        frame.dir = own.or_else(|| parent.and_then(|p| self.frames[p].dir.clone()));
        let id = self.frames.len();
        let roots: Vec<NodeId> = frame
            .order
            .iter()
            .copied()
            .filter(|n| frame.deps_left.get(n) == Some(&0))
            .collect();
        let empty = frame.order.is_empty();
        self.frames.push(frame);
        for n in roots {
            self.work.push_back(Work::Start(id, n));
        }
        if empty {
            self.check_frame_end(id);
        }
        id
    }

    /// The value of `name` as seen from `frame`.
    pub fn lookup(&self, frame: usize, name: &str) -> Option<Json> {
        self.frames[frame].vars.get(name)
    }

    pub(super) async fn drive(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Msg>,
    ) -> Result<RunReport, JournalError> {
        let mut turned = std::time::Instant::now();
        loop {
            self.pump()?;
            if let Some(done) = self.root_done.take() {
                return self.finish(Some(done));
            }
            let idle =
                self.running == 0 && self.timers == 0 && !self.prompting && self.spawn.is_empty();
            if idle {
                return self.finish(None);
            }
            // Messages from tasks first, so a chain of inline scripts cannot starve them.
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(_) => match self.inbox.pop_front() {
                    Some(msg) => {
                        // Let the runtime turn now and then (timers, signals,
                        // processes) while inline results keep coming.
                        if turned.elapsed() >= std::time::Duration::from_millis(2) {
                            tokio::task::yield_now().await;
                            turned = std::time::Instant::now();
                        }
                        msg
                    }
                    None => {
                        let Some(msg) = rx.recv().await else {
                            return self.finish(None);
                        };
                        turned = std::time::Instant::now();
                        msg
                    }
                },
            };
            self.handle(msg)?;
            // Group commit: what other tasks have already reported joins this
            // commit. A lone message is never held back (nothing is awaited).
            for _ in 1..GROUP_COMMIT_MAX {
                if self.root_done.is_some() {
                    break;
                }
                let Ok(msg) = rx.try_recv() else {
                    break;
                };
                self.handle(msg)?;
            }
        }
    }

    /// Processes queued work and launches what may start, then commits.
    fn pump(&mut self) -> Result<(), JournalError> {
        loop {
            while let Some(w) = self.work.pop_front() {
                match w {
                    Work::Start(frame, node) => self.start_node(frame, node),
                    Work::FrameEnd(frame) => self.frame_ended(frame),
                }
            }
            let cap = self.root_policy.max_parallel.max(1) as usize;
            while self.running < cap && self.stop.is_none() {
                let Some(inst) = self.launch.pop_front() else {
                    break;
                };
                if self.insts[inst].done {
                    continue;
                }
                self.launch_attempt(inst);
            }
            if self.stop.is_some() {
                self.launch.clear();
            }
            self.next_prompt();
            if self.work.is_empty() {
                break;
            }
        }
        self.flush()
    }

    /// Stops scheduling and cancels everything running.
    pub fn stop_run(&mut self, end: RunEnd, why: String) {
        if self.stop.is_none() {
            self.stop = Some((end, why));
        }
        if !self.frames.is_empty() {
            self.cancel_frame(0);
        }
    }

    /// Ends the run: its status, output and summary.
    fn finish(&mut self, done: Option<Result<Json, String>>) -> Result<RunReport, JournalError> {
        let (end, output, error) = match (&self.stop, done) {
            (Some((RunEnd::Interrupted, why)), _) => (RunEnd::Interrupted, None, Some(why.clone())),
            (Some((end, why)), _) => (*end, None, Some(why.clone())),
            (None, Some(Ok(out))) => (RunEnd::Succeeded, Some(out), None),
            (None, Some(Err(e))) => (RunEnd::Failed, None, Some(e)),
            (None, None) if self.waiting > 0 => (
                RunEnd::Paused,
                None,
                Some(format!("waiting for a person on {} item(s)", self.waiting)),
            ),
            (None, None) => (
                RunEnd::Failed,
                None,
                Some("the run stalled: no step can start (this is a flowc bug)".into()),
            ),
        };
        let mut output = output;
        if let Some(o) = &mut output {
            crate::secrets::redact_json(o);
        }
        let error = error.map(crate::secrets::redact);
        let status = match end {
            RunEnd::Succeeded => "succeeded",
            RunEnd::Failed => "failed",
            RunEnd::Paused => "paused",
            RunEnd::Interrupted => "interrupted",
            RunEnd::Cancelled => "cancelled",
        };
        let mut data = json!({ "status": status, "output": output, "error": error });
        // For the service's notifier, which has no IR.
        if end == RunEnd::Failed && !self.root_policy.notify.failures.is_empty() {
            let targets: Vec<_> = self
                .root_policy
                .notify
                .failures
                .iter()
                .map(|t| t.to_json())
                .collect();
            data["notify"] = json!(targets);
        }
        let event = NewEvent::run(&self.run_id, "run_status", data);
        self.push(event);
        self.flush()?;
        self.evict_cache();
        // Read from the open journal (a reopen costs a connection and its
        // schema read); only a program that asks models can have any.
        let asks = |st: &crate::ir::Step| matches!(st.kind, StepKind::Llm(_) | StepKind::Agent(_));
        let usage = if self.program.any_step(asks) {
            // The run has ended and is committed: a failed read shows no usage.
            self.journal.llm_usage(&self.run_id).unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(RunReport {
            run_id: self.run_id.clone(),
            end,
            output,
            error,
            reused: self.reused,
            attempts: self.steps_run,
            cache_hits: self.cache_hits,
            plan: self.plan.take().map(|p| p.rows).unwrap_or_default(),
            usage,
        })
    }
}

/// The word for a step kind, as in the flow file.
pub fn step_kind_word(kind: &StepKind) -> &'static str {
    match kind {
        StepKind::Run(_) => "run",
        StepKind::Llm(_) => "llm",
        StepKind::Agent(_) => "agent",
        StepKind::Approval { .. } => "approval",
        StepKind::Call { .. } => "call",
        StepKind::Script { .. } => "script",
        StepKind::Wait { .. } => "wait",
    }
}

/// Names of the steps and blocks nested anywhere inside `block`.
pub fn inner_step_names(skill: &Skill, block: NodeId) -> Vec<String> {
    skill
        .nodes
        .iter()
        .filter(|n| {
            let mut cur = n.parent;
            while let Some(p) = cur {
                if p == block {
                    return true;
                }
                cur = skill.nodes[p].parent;
            }
            false
        })
        .map(|n| n.name.clone())
        .collect()
}
