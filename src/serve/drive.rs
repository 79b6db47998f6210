//! The service's loop: ticks, claims up to `--workers`, run process ends, stop signals.

use super::{Config, Service, TICK_MS, claim_ms, cron, housekeeping, notify, supervisor};
use crate::journal::now_ms;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The loop's state between turns.
pub(super) struct Driver {
    svc: Arc<Service>,
    workers: usize,
    drain_ms: u64,
    children: supervisor::Children,
    exits_tx: mpsc::UnboundedSender<supervisor::Exit>,
    exits: mpsc::UnboundedReceiver<supervisor::Exit>,
    cursors: cron::Cursors,
    last_renew: i64,
    watchdog: Option<(Duration, Instant)>,
    /// Set by the first stop signal: when running steps get interrupted.
    drain: Option<Instant>,
    interrupted: bool,
}

impl Driver {
    pub(super) fn new(svc: Arc<Service>, config: &Config) -> Driver {
        let (exits_tx, exits) = mpsc::unbounded_channel();
        Driver {
            svc,
            workers: config.workers,
            drain_ms: config.drain_ms,
            children: supervisor::Children::new(),
            exits_tx,
            exits,
            cursors: cron::Cursors::default(),
            last_renew: 0,
            watchdog: notify::watchdog_interval().map(|every| (every, Instant::now())),
            drain: None,
            interrupted: false,
        }
    }

    /// Runs until a stop signal drained every run process; the exit code.
    pub(super) async fn run(mut self) -> Result<u8, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut ticker = tokio::time::interval(Duration::from_millis(TICK_MS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.svc.wake.notified() => {}
                Some(exit) = self.exits.recv() => self.exited(exit).await,
                _ = term.recv() => self.stop_signal(),
                _ = int.recv() => self.stop_signal(),
            }
            self.svc.last_tick.store(now_ms(), Ordering::SeqCst);
            self.feed_watchdog();
            if let Some(deadline) = self.drain {
                if self.children.is_empty() {
                    return Ok(0);
                }
                if !self.interrupted && Instant::now() >= deadline {
                    self.interrupt_all("the drain timeout passed");
                }
                continue;
            }
            self.housekeep().await?;
            self.claim_up_to_workers().await?;
        }
    }

    async fn exited(&mut self, exit: supervisor::Exit) {
        self.children.remove(&exit.run);
        self.svc.active.store(self.children.len(), Ordering::SeqCst);
        let svc = self.svc.clone();
        let _ = tokio::task::spawn_blocking(move || supervisor::settle(&svc, &exit)).await;
    }

    fn feed_watchdog(&mut self) {
        if let Some((every, last)) = &mut self.watchdog
            && last.elapsed() >= *every
        {
            notify::notify("WATCHDOG=1");
            *last = Instant::now();
        }
    }

    /// The tick's journal work, off the async threads.
    async fn housekeep(&mut self) -> Result<(), String> {
        let now = now_ms();
        let renew = now - self.last_renew >= 2_000;
        if renew {
            self.last_renew = now;
        }
        let svc = self.svc.clone();
        let mut cursors = std::mem::take(&mut self.cursors);
        let (done, cursors) = tokio::task::spawn_blocking(move || {
            let done = housekeeping(&svc, &mut cursors, renew);
            (done, cursors)
        })
        .await
        .map_err(|e| e.to_string())?;
        self.cursors = cursors;
        if let Err(e) = done {
            // A busy or full journal: said, and tried again next tick.
            self.svc.log.event("serve.error", &[("error", json!(e))]);
        }
        Ok(())
    }

    async fn claim_up_to_workers(&mut self) -> Result<(), String> {
        while self.children.len() < self.workers {
            let svc = self.svc.clone();
            let next = tokio::task::spawn_blocking(move || claim(&svc))
                .await
                .map_err(|e| e.to_string())?;
            let Some(run) = next else { break };
            match supervisor::spawn(&self.svc, &run, self.exits_tx.clone()) {
                Ok(child) => {
                    self.svc.log.event(
                        "run.claimed",
                        &[("run", json!(run)), ("pid", json!(child.pid))],
                    );
                    self.children.insert(run, child);
                }
                Err(e) => {
                    self.svc
                        .log
                        .event("run.error", &[("run", json!(run)), ("error", json!(e))]);
                    let _ =
                        self.svc
                            .journal()
                            .requeue(&run, now_ms() + 5_000, "spawn failed", true);
                    break;
                }
            }
        }
        self.svc.active.store(self.children.len(), Ordering::SeqCst);
        Ok(())
    }

    /// The first stop signal drains; a second one interrupts at once.
    fn stop_signal(&mut self) {
        self.svc.draining.store(true, Ordering::SeqCst);
        notify::notify("STOPPING=1");
        if self.drain.is_none() {
            self.drain = Some(Instant::now() + Duration::from_millis(self.drain_ms));
            self.svc.log.event(
                "serve.draining",
                &[
                    ("runs", json!(self.children.len())),
                    ("drain_timeout_ms", json!(self.drain_ms)),
                ],
            );
        } else if !self.interrupted {
            self.interrupt_all("a second stop signal");
        }
    }

    /// Interrupts every run process (they journal their running steps as interrupted).
    fn interrupt_all(&mut self, why: &str) {
        self.interrupted = true;
        self.svc.log.event(
            "serve.interrupting",
            &[("runs", json!(self.children.len())), ("why", json!(why))],
        );
        for child in self.children.values() {
            if let Ok(pid) = i32::try_from(child.pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}

/// Claims the next ready run, reading first so an idle queue is never written.
fn claim(svc: &Service) -> Option<String> {
    let mut journal = svc.journal();
    let now = now_ms();
    if !journal.any_ready(now).unwrap_or(false) {
        return None;
    }
    journal
        .claim_next(&svc.owner, now + claim_ms())
        .ok()
        .flatten()
}
