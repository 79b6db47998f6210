//! Watch triggers: inotify watches on every directory under the service's
//! directory that `.gitignore` (and `.ignore`, `.flowcignore`) do not exclude
//! — never inside an ignored one, so `target/` costs no watch — with changes
//! debounced per trigger and matched to its globs.

use super::Service;
use super::fire::fire;
use super::load::Loaded;
use crate::ir::TriggerSource;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One watch trigger's globs and the changes waiting out its debounce.
struct Pending {
    loaded: Loaded,
    globs: GlobSet,
    debounce: Duration,
    paths: BTreeSet<String>,
    last: Option<Instant>,
}

fn globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        // `*` stays inside one directory; `**` crosses them.
        let glob = GlobBuilder::new(p.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{p}`: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

/// The directories to watch under `dir`, honouring ignore files (hidden
/// directories such as `.git` and `.flowc` are skipped too).
fn directories(dir: &Path) -> Vec<PathBuf> {
    ignore::WalkBuilder::new(dir)
        .require_git(false)
        .add_custom_ignore_filename(crate::cli::IGNORE_FILE)
        .filter_entry(|e| e.file_type().is_some_and(|t| t.is_dir()))
        .build()
        .filter_map(Result::ok)
        .map(ignore::DirEntry::into_path)
        .collect()
}

/// Starts watching for the service's watch triggers, if it has any; the
/// watcher lives on its own thread until the service drains.
pub fn start(svc: &Arc<Service>, root: PathBuf) -> Result<(), String> {
    let mut pending = Vec::new();
    for l in &svc.triggers {
        if let TriggerSource::Watch {
            globs: g,
            debounce_ms,
        } = &l.trigger.source
        {
            pending.push(Pending {
                loaded: l.clone(),
                globs: globs(g).map_err(|e| format!("trigger `{}`: {e}", l.trigger.name))?,
                debounce: Duration::from_millis(*debounce_ms),
                paths: BTreeSet::new(),
                last: None,
            });
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher =
        notify::recommended_watcher(tx).map_err(|e| format!("cannot watch files: {e}"))?;
    let mut watched = HashSet::new();
    for dir in directories(&root) {
        add(&mut watcher, &mut watched, dir, svc);
    }
    svc.log.event(
        "watch.started",
        &[
            ("directories", json!(watched.len())),
            ("triggers", json!(pending.len())),
        ],
    );
    let svc = svc.clone();
    std::thread::Builder::new()
        .name("flowc-watch".into())
        .spawn(move || run(&svc, &root, watcher, watched, rx, pending))
        .map_err(|e| format!("cannot start the watcher: {e}"))?;
    Ok(())
}

fn add(watcher: &mut impl Watcher, watched: &mut HashSet<PathBuf>, dir: PathBuf, svc: &Service) {
    if watched.contains(&dir) {
        return;
    }
    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
        Ok(()) => {
            watched.insert(dir);
        }
        Err(e) => svc.log.event(
            "watch.error",
            &[
                ("directory", json!(dir.display().to_string())),
                ("error", json!(e.to_string())),
            ],
        ),
    }
}

fn run(
    svc: &Service,
    root: &Path,
    mut watcher: impl Watcher,
    mut watched: HashSet<PathBuf>,
    rx: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    mut pending: Vec<Pending>,
) {
    loop {
        if svc.draining.load(Ordering::SeqCst) {
            return;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(event)) => {
                if matches!(event.kind, EventKind::Access(_)) {
                    continue;
                }
                for path in event.paths {
                    // A new directory that is not ignored gets watches too.
                    if path.is_dir() {
                        if matches!(event.kind, EventKind::Create(_)) {
                            for dir in directories(&path) {
                                add(&mut watcher, &mut watched, dir, svc);
                            }
                        }
                        // Files changed; a directory alone is not a change.
                        continue;
                    }
                    let Ok(rel) = path.strip_prefix(root) else {
                        continue;
                    };
                    for p in pending.iter_mut().filter(|p| p.globs.is_match(rel)) {
                        p.paths.insert(rel.display().to_string());
                        p.last = Some(Instant::now());
                    }
                }
            }
            Ok(Err(e)) => svc
                .log
                .event("watch.error", &[("error", json!(e.to_string()))]),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        for p in pending.iter_mut() {
            if p.last.is_some_and(|t| t.elapsed() >= p.debounce) {
                let paths: Vec<String> = std::mem::take(&mut p.paths).into_iter().collect();
                p.last = None;
                fire_paths(svc, root, &p.loaded, paths);
            }
        }
    }
}

/// The key of a burst of changes: the changed paths and what each holds now,
/// so the same files in the same state fire once.
fn key(root: &Path, paths: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    for p in paths {
        h.update(p.as_bytes());
        h.update(&[0]);
        match std::fs::read(root.join(p)) {
            Ok(bytes) => h.update(blake3::hash(&bytes).as_bytes()),
            Err(_) => h.update(b"(gone)"),
        };
    }
    format!("paths:{}", &h.finalize().to_hex()[..32])
}

fn fire_paths(svc: &Service, root: &Path, loaded: &Loaded, paths: Vec<String>) {
    let key = key(root, &paths);
    match fire(svc, loaded, &key, json!({ "paths": paths })) {
        Ok(outcome) => svc.report_fire(loaded, &key, &outcome),
        Err(e) => svc.log.event(
            "trigger.error",
            &[("trigger", json!(loaded.trigger.name)), ("error", json!(e))],
        ),
    }
}
