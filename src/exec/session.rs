//! One session of a run: the runner set up from the journal, the tasks beside
//! it (lease heartbeat, cancel requests, the supervisor's presence, signals,
//! `run_timeout`), and the lease given back at the end.

use super::eval::Evaluator;
use super::frame::{Frame, Owner, Vars, hash};
use super::observer::Observer;
use super::scheduler::*;
use crate::ir::{Program, Skill};
use crate::journal::{Journal, JournalError, NewEvent};
use serde_json::{Value as Json, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Runs (or resumes) `skill` of `program`, journaling to `journal`.
pub async fn execute(
    program: Arc<Program>,
    skill: Arc<Skill>,
    mut journal: Journal,
    opts: RunOptions,
    observer: &mut dyn Observer,
) -> Result<RunReport, JournalError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let resuming = opts.resume.is_some();
    let run_id = match opts.resume.as_ref().or(opts.queued.as_ref()) {
        Some(id) => id.clone(),
        None => crate::journal::new_run_id(),
    };
    if resuming || opts.queued.is_some() {
        // Resume decides from events only: a history that was changed, or
        // stored state its events do not explain, stops here.
        journal.check_untampered(&run_id)?;
    }
    journal.acquire_lease(&run_id)?;
    let Prior {
        nodes: prior,
        approvals: prior_approvals,
        status,
        spent_ms,
        steps: prior_steps,
    } = Prior::load(&journal, &run_id, resuming)?;
    let llm = super::llm::LlmState::load(
        &journal,
        resuming.then_some(run_id.as_str()),
        opts.replay_llm.as_deref(),
    )?;
    let memory = super::memory::Memory::load(&journal, &program, &run_id, resuming)?;
    let mut runner = Runner {
        run_id: run_id.clone(),
        program,
        journal,
        eval: Arc::new(Evaluator::with_memory(memory)),
        frames: Vec::new(),
        insts: Vec::new(),
        work: VecDeque::new(),
        events: Vec::new(),
        spawn: Vec::new(),
        inline: Vec::new(),
        inbox: VecDeque::new(),
        launch: VecDeque::new(),
        tx: tx.clone(),
        running: 0,
        timers: 0,
        prompts: VecDeque::new(),
        prompting: false,
        waiting: 0,
        status,
        prior,
        prior_approvals,
        steps_run: 0,
        prior_steps,
        reused: 0,
        root_policy: skill.policy.clone(),
        stop: None,
        interactive: opts.interactive,
        observer,
        root_done: None,
        llm,
        plans: Vec::new(),
        cache: open_cache(&opts),
        cache_hits: 0,
        plan: opts.plan.then(super::plan::Plan::default),
        agents: HashMap::new(),
    };
    runner.begin(&skill, &opts, resuming)?;
    spawn_signal_watch(tx.clone());
    let heartbeat = spawn_heartbeat(
        tx.clone(),
        runner.journal.path().to_path_buf(),
        run_id.clone(),
    );
    let limit = tx.clone();
    // `run_timeout` counts the time the run was driven in earlier sessions too.
    let timeout_ms = skill
        .policy
        .run_timeout_ms
        .saturating_sub(spent_ms.max(0) as u64);
    let run_timer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(timeout_ms)).await;
        let _ = limit.send(Msg::RunTimeout);
    });
    let result = runner.drive(&mut rx).await;
    heartbeat.abort();
    run_timer.abort();
    let _ = runner.journal.release_lease(&run_id);
    result
}

/// What a resumed run brings from its earlier sessions (all empty for a new run).
struct Prior {
    /// Its node instances by key, and their statuses.
    nodes: HashMap<String, crate::journal::NodeRow>,
    status: HashMap<String, String>,
    /// Its approvals by node.
    approvals: HashMap<String, crate::journal::ApprovalRow>,
    /// The time it was driven, which `run_timeout` counts.
    spent_ms: i64,
    /// The step attempts it started, which `max_steps` counts.
    steps: u64,
}

impl Prior {
    fn load(journal: &Journal, run_id: &str, resuming: bool) -> Result<Prior, JournalError> {
        let mut prior = Prior {
            nodes: HashMap::new(),
            status: HashMap::new(),
            approvals: HashMap::new(),
            spent_ms: 0,
            steps: 0,
        };
        if !resuming {
            return Ok(prior);
        }
        for row in journal.nodes(run_id)? {
            prior.status.insert(row.key.clone(), row.status.clone());
            prior.nodes.insert(row.key.clone(), row);
        }
        for row in journal.approvals(Some(run_id))? {
            prior.approvals.insert(row.node.clone(), row);
        }
        prior.spent_ms = journal.active_ms(run_id)?;
        prior.steps = journal.attempts_started(run_id)?;
        Ok(prior)
    }
}

impl Runner<'_> {
    /// The run's first event of this session (`run_started` with its inputs,
    /// initiator and sources, or `run_resumed`) and the root skill's frame.
    fn begin(
        &mut self,
        skill: &Arc<Skill>,
        opts: &RunOptions,
        resuming: bool,
    ) -> Result<(), JournalError> {
        let run_id = self.run_id.clone();
        if resuming {
            self.push(NewEvent::run(&run_id, "run_resumed", json!({})));
        } else {
            let initiator = initiator(&self.journal, &run_id);
            let mut data = json!({ "skill": skill.name, "file": opts.file, "inputs": opts.inputs, "initiator": initiator });
            if !opts.sources.is_empty() && !opts.plan {
                data["sources"] = self.journal.store_sources(&opts.sources)?;
            }
            self.push(NewEvent::run(&run_id, "run_started", data));
        }
        let vars = Vars::child(None);
        for (k, v) in &opts.inputs {
            vars.set(k, v.clone());
        }
        let ctx = hash(&[&Json::Object(opts.inputs.clone()).to_string()]);
        self.new_frame(Frame::new(
            skill.clone(),
            None,
            String::new(),
            vars,
            ctx,
            Owner::Root,
            0,
        ));
        Ok(())
    }
}

/// The step cache of `opts`; one that cannot be opened leaves the cache off
/// (the CLI opened it first and said why).
fn open_cache(opts: &RunOptions) -> Option<crate::cache::Store> {
    let mut store = crate::cache::Store::open(opts.cache_dir.as_deref()?).ok()?;
    store.max_bytes = opts.cache_max_bytes;
    Some(store)
}

/// Renews the lease now and then, and looks for a cancel request twice a second
/// (through its own read-only connection, so the driver's is never shared).
fn spawn_heartbeat(
    tx: mpsc::UnboundedSender<Msg>,
    path: std::path::PathBuf,
    run: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let beat = crate::journal::heartbeat_ms().max(1) as u64;
        let tick = beat.min(500);
        let mut since_beat = 0;
        let reader = Journal::open_read_only(&path).ok();
        // A run process of `flowc serve` stops (interrupted, resumable) when
        // the service that started it is gone, rather than run unsupervised.
        let supervisor: Option<i32> = std::env::var("FLOWC_SUPERVISOR_PID")
            .ok()
            .and_then(|p| p.parse().ok());
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(tick)).await;
            if supervisor.is_some_and(|pid| nix::unistd::getppid().as_raw() != pid) {
                let _ = tx.send(Msg::Interrupt);
                break;
            }
            since_beat += tick;
            if since_beat >= beat {
                since_beat = 0;
                if tx.send(Msg::Heartbeat).is_err() {
                    break;
                }
            }
            if let Some(by) = reader
                .as_ref()
                .and_then(|j| j.cancel_request(&run).ok().flatten())
                && tx.send(Msg::Cancel(by)).is_err()
            {
                break;
            }
        }
    })
}

fn spawn_signal_watch(tx: mpsc::UnboundedSender<Msg>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            count += 1;
            if count > 1 {
                eprintln!("flowc: interrupted again, exiting at once");
                std::process::exit(130);
            }
            if tx.send(Msg::Interrupt).is_err() {
                break;
            }
        }
    });
}

/// Who started a run: the `by` of its `run_queued` event (a submitter, `trigger NAME`), else this OS user.
fn initiator(journal: &Journal, run: &str) -> String {
    journal
        .events_of(run, Some("run_queued"))
        .ok()
        .and_then(|events| events.into_iter().next())
        .and_then(|e| {
            e.data
                .get("by")
                .and_then(|b| b.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(super::user)
}
