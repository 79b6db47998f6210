//! `flowc serve`: triggers, the run queue, and a supervisor that drives each run in its own process.

mod clock;
mod cron;
mod drive;
pub mod fire;
mod http;
pub mod load;
pub mod log;
mod metrics;
mod notices;
mod notify;
mod supervisor;
mod watch;
pub mod web;
pub mod webhook;

pub use clock::{Clock, parse_instant, rfc3339};
pub use load::{Loaded, load};

use crate::ir::{SecretSource, TriggerSource};
use crate::journal::{Journal, now_ms, supervisor_id};
use fire::Outcome;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// How often the scheduler looks at the clock and the queue.
const TICK_MS: u64 = 200;

/// What `flowc serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The journal.
    pub journal: PathBuf,
    /// Where to listen (`127.0.0.1:8737`); `None`: no listener.
    pub listen: Option<String>,
    /// How many run processes at once.
    pub workers: usize,
    /// How long running steps may finish after SIGTERM, in ms.
    pub drain_ms: u64,
    /// The log format.
    pub log: log::Log,
    /// Who may sign in to the page and decide (`--people FILE`), and the file.
    pub people: (Option<PathBuf>, crate::approvals::People),
    /// The address people reach the page at, for links in notifications.
    pub public_url: Option<String>,
}

/// The service's shared state.
pub struct Service {
    journal: Mutex<Journal>,
    /// The journal's path.
    pub journal_path: PathBuf,
    /// The triggers loaded at start.
    pub triggers: Vec<Loaded>,
    /// The service's notion of now.
    pub clock: Clock,
    /// The service's log.
    pub log: log::Log,
    /// Signing secrets of webhook triggers, by trigger name.
    pub secrets: HashMap<String, zeroize::Zeroizing<String>>,
    /// Woken when a run was queued, so it is claimed without waiting for a tick.
    pub wake: Notify,
    /// Set on SIGTERM: nothing more is fired or claimed.
    pub draining: AtomicBool,
    /// When the scheduler last ticked (Unix ms, real time).
    pub last_tick: AtomicI64,
    /// Run processes alive now.
    pub active: AtomicUsize,
    /// This supervisor's id in the queue (`PID@HOST`).
    pub owner: String,
    /// Who may sign in and decide (read again when the file changes).
    pub people_file: crate::approvals::PeopleFile,
    /// Signed-in browsers.
    pub sessions: web::auth::Sessions,
    /// The directory the service serves (web submissions must name a file under it).
    pub root: PathBuf,
    /// The page's address for links (`--public-url`, else the listener's).
    pub public_url: Mutex<String>,
    /// The key that signs `webhook(…)` notifications, if the people file names one.
    pub notify_secret: Option<zeroize::Zeroizing<String>>,
    /// The journal's newest event id, watched by one poller for every open page.
    pub live: std::sync::OnceLock<tokio::sync::watch::Receiver<i64>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("journal", &self.journal_path)
            .finish()
    }
}

impl Service {
    /// The people file as it is now.
    pub fn people(&self) -> std::sync::Arc<crate::approvals::People> {
        self.people_file.get()
    }

    /// The journal, for one short piece of work (never held across an await).
    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Logs a fire.
    pub fn report_fire(&self, loaded: &Loaded, key: &str, outcome: &Outcome) {
        let mut fields = vec![
            ("trigger", json!(loaded.trigger.name)),
            ("key", json!(key)),
            ("outcome", json!(outcome.word())),
        ];
        match outcome {
            Outcome::Queued(run) => fields.push(("run", json!(run))),
            Outcome::Duplicate(run) => fields.push(("run", json!(run))),
            Outcome::Skipped(why) | Outcome::Rejected(why) => fields.push(("reason", json!(why))),
        }
        self.log.event("trigger.fired", &fields);
    }
}

/// Resolves every webhook trigger's signing secret; a missing one stops the start.
fn secrets(triggers: &[Loaded]) -> Result<HashMap<String, zeroize::Zeroizing<String>>, String> {
    let mut out = HashMap::new();
    for l in triggers {
        let TriggerSource::Webhook {
            secret: Some(source),
            ..
        } = &l.trigger.source
        else {
            continue;
        };
        let value = match source {
            SecretSource::Secret(name) => crate::secrets::resolve(name),
            SecretSource::Env(name) => std::env::var(name)
                .map_err(|_| format!("the environment variable `{name}` is not set")),
        }
        .map_err(|e| format!("trigger `{}`: its secret: {e}", l.trigger.name))?;
        crate::secrets::register(&value);
        out.insert(l.trigger.name.clone(), zeroize::Zeroizing::new(value));
    }
    Ok(out)
}

/// Runs the service until SIGTERM/SIGINT; returns the process exit code.
pub fn serve(config: Config, triggers: Vec<Loaded>) -> Result<u8, String> {
    let journal = Journal::open(&config.journal, Default::default()).map_err(|e| e.to_string())?;
    let root =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let notify_secret = notices::signing_secret(&config.people.1)?;
    let svc = Arc::new(Service {
        journal: Mutex::new(journal),
        journal_path: std::fs::canonicalize(&config.journal).unwrap_or(config.journal.clone()),
        secrets: secrets(&triggers)?,
        triggers,
        clock: Clock::from_env(),
        log: config.log,
        wake: Notify::new(),
        draining: AtomicBool::new(false),
        last_tick: AtomicI64::new(now_ms()),
        active: AtomicUsize::new(0),
        owner: supervisor_id(),
        people_file: crate::approvals::PeopleFile::new(
            config.people.0.clone(),
            config.people.1.clone(),
        ),
        sessions: web::auth::Sessions::default(),
        root: std::fs::canonicalize(&root).unwrap_or(root),
        public_url: Mutex::new(config.public_url.clone().unwrap_or_default()),
        notify_secret,
        live: std::sync::OnceLock::new(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(run(svc, config))
}

async fn run(svc: Arc<Service>, config: Config) -> Result<u8, String> {
    let listener = match &config.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on `{addr}`: {e}"))?,
        ),
        None => None,
    };
    let addr = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string());
    let recovered = svc.journal().reclaim_stale().map_err(|e| e.to_string())?;
    svc.log.event(
        "serve.started",
        &[
            ("listen", json!(addr)),
            ("workers", json!(config.workers)),
            ("triggers", json!(svc.triggers.len())),
            (
                "journal",
                json!(crate::journal::redact_url(
                    &svc.journal_path.display().to_string()
                )),
            ),
            ("recovered", json!(recovered)),
            ("fake_clock", json!(svc.clock.is_fake())),
        ],
    );
    {
        let mut url = svc
            .public_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if url.is_empty()
            && let Some(a) = &addr
        {
            *url = format!("http://{a}");
        }
    }
    if let Some(listener) = listener {
        let app = http::router(svc.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    watch::start(&svc, svc.root.clone())?;
    notices::start(&svc);
    notify::notify("READY=1");
    let result = drive::Driver::new(svc.clone(), &config).run().await;
    notify::notify("STOPPING=1");
    svc.log.event("serve.stopped", &[]);
    result
}

/// One tick's journal work: stale claims back to the queue, decided approvals
/// and freed overlaps woken, cron fired, this service's claims renewed.
fn housekeeping(svc: &Service, cursors: &mut cron::Cursors, renew: bool) -> Result<(), String> {
    {
        let mut journal = svc.journal();
        let err = |e: crate::journal::JournalError| e.to_string();
        if renew {
            let until = now_ms() + claim_ms();
            journal.renew_claims(&svc.owner, until).map_err(err)?;
            for run in journal.reclaim_stale().map_err(err)? {
                svc.log.event("run.recovered", &[("run", json!(run))]);
            }
        }
        for run in journal.decide_timed_out(now_ms()).map_err(err)? {
            svc.log.event("approval.timed_out", &[("run", json!(run))]);
        }
        for run in journal.wake_decided().map_err(err)? {
            svc.log.event(
                "run.woken",
                &[
                    ("run", json!(run)),
                    ("why", json!("a decision was recorded")),
                ],
            );
        }
        for run in journal.wake_after_previous().map_err(err)? {
            svc.log.event(
                "run.woken",
                &[
                    ("run", json!(run)),
                    ("why", json!("the trigger's previous run ended")),
                ],
            );
        }
    }
    cron::tick(svc, cursors, svc.clock.now_ms());
    Ok(())
}

/// How long a claim lasts without renewal: three times the lease's stale age, at least 10 s.
pub(crate) fn claim_ms() -> i64 {
    (crate::journal::stale_ms()).max(10_000)
}
