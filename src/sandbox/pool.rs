//! The spawner's namespace inits: one serves a step at a time and, when its
//! command has ended and its namespace is empty again, the next step with
//! the same namespaces, mounts and directory (its key), so most steps start
//! without creating or tearing down a namespace. One spare is kept ready per
//! key, made while the others run.
//!
//! An init is given a new job only while every path its mounts name is still
//! the file it was when the mounts were made, for at most [`MAX_AGE`] after
//! it was made and [`IDLE_MAX`] after its last job, and only after a job
//! whose command could not have changed the namespaces ([`reusable`]).

use super::spawner::Request;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// Inits kept in all, busy or idle; one made beyond it (more steps at once)
/// ends after its job.
pub(super) const MAX: usize = 8;
/// An init older than this takes no new job (its mounts are as they were then).
pub(super) const MAX_AGE: Duration = Duration::from_secs(10);
/// An idle init is ended after this: it holds its mounts busy.
pub(super) const IDLE_MAX: Duration = Duration::from_secs(2);

/// Whether the init of `req` may serve another step after it: the command
/// could not have changed the namespaces. Landlock's filesystem rules forbid
/// mounting and unmounting; a network namespace could be reconfigured by a
/// command that is root.
pub(super) fn reusable(req: &Request) -> bool {
    let landlocked = req.landlock.as_ref().is_some_and(|l| l.fs.is_some());
    landlocked && (!req.ns.net || !nix::unistd::geteuid().is_root())
}

/// What an init has fixed before its first job: `None` when the request is
/// not started in a PID namespace.
pub(super) fn key(req: &Request) -> Option<String> {
    req.ns
        .pid
        .then(|| serde_json::to_string(&(&req.ns, &req.mounts, &req.cwd)).unwrap_or_default())
}

/// Device and inode of every path the mounts of `req` name (its writable
/// trees, flowc's state, the hidden files) and of its directory.
fn identities(req: &Request) -> Vec<Option<(u64, u64)>> {
    let mut paths: Vec<&str> = req.cwd.iter().map(String::as_str).collect();
    if let Some(m) = &req.mounts {
        paths.extend(m.writable.iter().flatten().map(String::as_str));
        paths.extend(m.protect.iter().map(String::as_str));
        paths.extend(m.hide.iter().map(String::as_str));
    }
    paths
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        .collect()
}

/// One init, as the spawner holds it.
pub(super) struct Init {
    pub pid: i32,
    key: String,
    /// The spawner's end of its job socket.
    pub job: OwnedFd,
    ids: Vec<Option<(u64, u64)>>,
    born: Instant,
    idle_since: Instant,
    /// The reply socket of the job it runs (`None`: idle).
    pub reply: Option<OwnedFd>,
    /// Whether it may take another job after this one.
    reusable: bool,
    /// Its job was killed at flowc's word: its reaping answers.
    pub killed: bool,
    /// Its job socket closed: it is ending, and its reaping answers.
    pub gone: bool,
}

impl Init {
    pub(super) fn new(req: &Request, pid: i32, job: OwnedFd) -> Init {
        let now = Instant::now();
        Init {
            pid,
            key: key(req).unwrap_or_default(),
            job,
            ids: identities(req),
            born: now,
            idle_since: now,
            reply: None,
            reusable: false,
            killed: false,
            gone: false,
        }
    }

    fn idle(&self) -> bool {
        self.reply.is_none() && !self.gone
    }

    fn expired(&self) -> bool {
        self.born.elapsed() >= MAX_AGE || self.idle_since.elapsed() >= IDLE_MAX
    }
}

#[derive(Default)]
pub(super) struct Pool {
    inits: Vec<Init>,
}

impl Pool {
    /// An idle init for `req`, if one fits. Expired idle ones, and those of
    /// the key when its paths changed, are removed and returned in `stale`.
    pub(super) fn idle(&mut self, req: &Request, stale: &mut Vec<Init>) -> Option<i32> {
        let key = key(req)?;
        self.expire(stale);
        let found = self.inits.iter().find(|i| i.idle() && i.key == key)?;
        if found.ids == identities(req) {
            return Some(found.pid);
        }
        let (gone, kept) = std::mem::take(&mut self.inits)
            .into_iter()
            .partition(|i| i.idle() && i.key == key);
        self.inits = kept;
        stale.extend::<Vec<Init>>(gone);
        None
    }

    /// Whether `req`'s key has no spare and the pool has room for one.
    pub(super) fn wants_spare(&self, req: &Request) -> bool {
        let Some(key) = key(req) else {
            return false;
        };
        self.inits.len() < MAX && !self.inits.iter().any(|i| i.idle() && i.key == key)
    }

    pub(super) fn add(&mut self, init: Init) {
        self.inits.push(init);
    }

    /// Marks `pid` busy with the job answered on `reply`.
    pub(super) fn begin(&mut self, pid: i32, reply: OwnedFd, reusable: bool) {
        if let Some(i) = self.get_mut(pid) {
            i.reply = Some(reply);
            i.reusable = reusable;
        }
    }

    /// Its job is over: it is idle again, or removed and returned when it
    /// may not take another (to be ended).
    pub(super) fn end(&mut self, pid: i32, failed: bool) -> Option<Init> {
        let over = self.inits.len() > MAX;
        let i = self.get_mut(pid)?;
        i.reply = None;
        i.idle_since = Instant::now();
        if !i.reusable || failed || over || i.expired() {
            return self.remove(pid);
        }
        None
    }

    /// Removes the idle ones past their time into `stale`.
    pub(super) fn expire(&mut self, stale: &mut Vec<Init>) {
        let (old, young) = std::mem::take(&mut self.inits)
            .into_iter()
            .partition(|i| i.idle() && i.expired());
        self.inits = young;
        stale.extend::<Vec<Init>>(old);
    }

    /// How long until an idle one expires.
    pub(super) fn next_expiry(&self) -> Option<Duration> {
        self.inits
            .iter()
            .filter(|i| i.idle())
            .map(|i| {
                MAX_AGE
                    .saturating_sub(i.born.elapsed())
                    .min(IDLE_MAX.saturating_sub(i.idle_since.elapsed()))
            })
            .min()
    }

    pub(super) fn get_mut(&mut self, pid: i32) -> Option<&mut Init> {
        self.inits.iter_mut().find(|i| i.pid == pid)
    }

    pub(super) fn remove(&mut self, pid: i32) -> Option<Init> {
        let at = self.inits.iter().position(|i| i.pid == pid)?;
        Some(self.inits.remove(at))
    }

    pub(super) fn all(&self) -> &[Init] {
        &self.inits
    }

    /// The spawner's descriptors held for the inits (no clone may keep them).
    pub(super) fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.inits.iter().flat_map(|i| {
            std::iter::once(i.job.as_raw_fd()).chain(i.reply.as_ref().map(AsRawFd::as_raw_fd))
        })
    }
}
