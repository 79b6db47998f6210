//! Starting step processes through a spawner: a small process forked from
//! flowc before it opens the journal or starts a thread (see `zygote.rs`).
//!
//! Forking flowc itself for every step costs more as flowc grows (its page
//! tables are copied and its writes fault until the child has exec'd), and a
//! PID namespace needs a parent process for the command. The spawner is
//! small, and its clone of itself is that parent, so a sandboxed step costs
//! two small forks and one exec. Each request carries its own reply socket,
//! on which the spawner says `started` (with the pid) or `failed` (with the
//! errno, staged like the `pre_exec` path), and later how the process ended.
//!
//! When the spawner is not there (`flowc doctor`, tests of the library, a
//! request too large for one message, `FLOWC_NO_SPAWNER=1`, or a spawner that
//! died), `run_process` forks flowc as before.

use super::mounts::MountSpec;
use super::plan::{FsRules, Plan};
use nix::sys::resource::Resource;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// The largest request sent as one message; larger ones (huge argv or
/// environment) are started by forking flowc.
pub(super) const MAX_REQUEST: usize = 160 * 1024;
pub(super) const KIND_STARTED: i32 = 1;
pub(super) const KIND_FAILED: i32 = 2;
pub(super) const KIND_EXITED: i32 = 3;
/// flowc to the spawner, on a step's reply socket: end this step now.
pub(super) const KIND_KILL: i32 = 4;

/// A message on the spawner's sockets: a kind and a value, little-endian.
pub(super) fn encode(kind: i32, value: i32) -> [u8; 8] {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&kind.to_le_bytes());
    msg[4..].copy_from_slice(&value.to_le_bytes());
    msg
}

/// The kind and value of a message made by [`encode`].
pub(super) fn decode(msg: &[u8; 8]) -> (i32, i32) {
    let word = |i: usize| i32::from_le_bytes([msg[i], msg[i + 1], msg[i + 2], msg[i + 3]]);
    (word(0), word(4))
}

/// One process to start, as the spawner receives it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Request {
    pub argv: Vec<String>,
    /// Variables set over flowc's environment.
    pub env: Vec<(String, String)>,
    /// Variables of flowc's environment the step does not inherit.
    pub unset: Vec<String>,
    pub cwd: Option<String>,
    /// A pipe for stdin comes with the request (otherwise /dev/null).
    pub stdin: bool,
    /// (index in `RESOURCES`, soft, hard).
    pub rlimits: Vec<(u8, u64, u64)>,
    pub landlock: Option<LandlockSpec>,
    pub ns: Namespaces,
    /// A new mount namespace (with a fresh /proc), with a PID namespace only.
    pub mounts: Option<MountSpec>,
}

/// The Landlock ruleset of a request (the spawner builds and caches it).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LandlockSpec {
    pub fs: Option<FsRules>,
    pub net: bool,
}

/// Namespaces the child is cloned into.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Namespaces {
    pub pid: bool,
    pub net: bool,
    /// A user namespace too (without root), mapping the user to itself.
    pub user: bool,
}

impl Namespaces {
    /// The namespaces of `plan` (from its `unshare` arguments).
    pub(super) fn of(plan: &Plan) -> Namespaces {
        let Some(args) = &plan.unshare else {
            return Namespaces::default();
        };
        let has = |a: &str| args.iter().any(|x| x == a);
        Namespaces {
            pid: true,
            net: has("--net"),
            user: has("--user"),
        }
    }
}

/// What each descriptor sent with a request is, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FdRole {
    Reply,
    Stdout,
    Stderr,
    Stdin,
}

const RESOURCES: [Resource; 5] = [
    Resource::RLIMIT_DATA,
    Resource::RLIMIT_CPU,
    Resource::RLIMIT_NOFILE,
    Resource::RLIMIT_FSIZE,
    Resource::RLIMIT_NPROC,
];

impl Request {
    /// Builds the request for `argv` confined by `plan`.
    pub(super) fn new(
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
        stdin: bool,
        plan: Option<&Plan>,
    ) -> Request {
        let mut req = Request {
            argv: argv.to_vec(),
            env: env.to_vec(),
            unset: super::env::hidden(env),
            cwd: cwd.map(String::from),
            stdin,
            rlimits: Vec::new(),
            landlock: None,
            ns: Namespaces::default(),
            mounts: None,
        };
        let Some(plan) = plan else {
            return req;
        };
        req.rlimits = super::spawn::rlimits(plan)
            .iter()
            .filter_map(|&(r, soft, hard)| {
                let i = RESOURCES.iter().position(|x| *x == r)?;
                Some((i as u8, soft, hard))
            })
            .collect();
        if plan.landlock_fs.is_some() || plan.landlock_net {
            req.landlock = Some(LandlockSpec {
                fs: plan.landlock_fs.clone(),
                net: plan.landlock_net,
            });
        }
        req.ns = Namespaces::of(plan);
        if req.ns.pid {
            req.mounts = plan.mounts();
        }
        req
    }

    /// The roles of the descriptors that come with this request.
    pub(super) fn fds(&self) -> Vec<FdRole> {
        let mut roles = vec![FdRole::Reply, FdRole::Stdout, FdRole::Stderr];
        if self.stdin {
            roles.push(FdRole::Stdin);
        }
        roles
    }

    /// The rlimits as the child sets them.
    pub(super) fn rlimits(&self) -> Vec<(Resource, u64, u64)> {
        self.rlimits
            .iter()
            .filter_map(|&(i, soft, hard)| Some((*RESOURCES.get(usize::from(i))?, soft, hard)))
            .collect()
    }
}

struct Spawner {
    sock: OwnedFd,
    /// Registered with the runtime on first use.
    io: OnceLock<Option<AsyncFd<RawFd>>>,
    /// Set when the spawner stopped answering: later steps fork flowc.
    dead: AtomicBool,
}

static SPAWNER: OnceLock<Spawner> = OnceLock::new();

/// Whether steps start through the spawner (it was forked at start-up).
pub fn spawner_started() -> bool {
    SPAWNER.get().is_some()
}

/// Forks the spawner. Call it before any thread starts and before files that
/// steps must not inherit are opened; it does nothing when another thread
/// exists, when `FLOWC_NO_SPAWNER` is set, or when the fork fails.
pub fn start_spawner() {
    if std::env::var_os("FLOWC_NO_SPAWNER").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let single = std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1);
    if !single || SPAWNER.get().is_some() {
        return;
    }
    let Ok((mine, theirs)) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) else {
        return;
    };
    // SAFETY: this process has one thread (checked above), so the child may
    // run any code; it never returns into flowc (`serve` exits).
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(mine);
            super::zygote::serve(theirs)
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(theirs);
            if nix::fcntl::fcntl(
                &mine,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .is_ok()
            {
                let _ = SPAWNER.set(Spawner {
                    sock: mine,
                    io: OnceLock::new(),
                    dead: AtomicBool::new(false),
                });
            }
        }
        Err(_) => {}
    }
}

/// Whether [`spawn_process`] will hand this process to the spawner: one
/// runs, has not hung up, and the request fits one message. Asked before the
/// attempt's `running` event, which says how the process is confined.
pub fn spawner_takes(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    stdin: bool,
    plan: Option<&Plan>,
) -> bool {
    let Some(spawner) = SPAWNER.get() else {
        return false;
    };
    if spawner.dead.load(Ordering::Relaxed) {
        return false;
    }
    if hung_up(&spawner.sock) {
        spawner.dead.store(true, Ordering::Relaxed);
        return false;
    }
    /// Counts the request's bytes, and stops it once over the limit.
    struct Size(usize);
    impl io::Write for Size {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            if self.0 > MAX_REQUEST {
                return Err(io::ErrorKind::FileTooLarge.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let req = Request::new(argv, env, cwd, stdin, plan);
    serde_json::to_writer(Size(0), &req).is_ok()
}

/// Whether the spawner's end of the socket has closed (it died).
fn hung_up(sock: &OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::empty())];
    poll(&mut fds, PollTimeout::ZERO).is_ok_and(|_| {
        fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
    })
}

/// A process started by the spawner, with its pipes.
#[derive(Debug)]
pub struct Spawned {
    pub child: SpawnedChild,
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

/// Why the spawner did not start a process.
#[derive(Debug)]
pub enum NotSpawned {
    /// No spawner (or this request does not fit): start it another way.
    Unavailable,
    /// Starting it failed, as `Command::spawn` would have (raw errno, staged
    /// for the sandbox's own setup: see `setup_error`).
    Failed(io::Error),
}

/// Starts `argv` through the spawner.
pub async fn spawn_process(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
    stdin: bool,
    plan: Option<&Plan>,
) -> Result<Spawned, NotSpawned> {
    use NotSpawned::Unavailable;
    if plan.is_some_and(|p| p.forked) {
        return Err(Unavailable);
    }
    let spawner = SPAWNER
        .get()
        .filter(|s| !s.dead.load(Ordering::Relaxed))
        .ok_or(Unavailable)?;
    let io = spawner
        .io
        .get_or_init(|| {
            // SAFETY: the descriptor is `spawner.sock`, which lives in a static
            // and is never closed or replaced.
            #[allow(unsafe_code)]
            unsafe {
                AsyncFd::register(spawner.sock.as_raw_fd()).ok()
            }
        })
        .as_ref()
        .ok_or(Unavailable)?;
    let req = Request::new(argv, env, cwd, stdin, plan);
    let bytes = serde_json::to_vec(&req).map_err(|_| Unavailable)?;
    if bytes.len() > MAX_REQUEST {
        return Err(Unavailable);
    }
    let failed = NotSpawned::Failed;
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(|e| failed(e.into()))?;
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed(e.into()));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let input = if stdin { Some(pipe()?) } else { None };
    let mut fds = vec![theirs.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    if let Some((r, _)) = &input {
        fds.push(r.as_raw_fd());
    }
    let rights = [ControlMessage::ScmRights(&fds)];
    loop {
        let mut guard = io.writable().await.map_err(|_| Unavailable)?;
        let sent = guard.try_io(|fd| {
            sendmsg::<()>(
                *fd.get_ref(),
                &[IoSlice::new(&bytes)],
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(io::Error::from)
        });
        match sent {
            Ok(Ok(_)) => break,
            Ok(Err(_)) => {
                spawner.dead.store(true, Ordering::Relaxed);
                return Err(Unavailable);
            }
            Err(_would_block) => {}
        }
    }
    // The spawner holds its own copies now.
    drop((theirs, out_w, err_w));
    let stdin = match input {
        Some((r, w)) => {
            drop(r);
            Some(pipe::Sender::from_owned_fd(w).map_err(failed)?)
        }
        None => None,
    };
    let stdout = pipe::Receiver::from_owned_fd(out_r).map_err(failed)?;
    let stderr = pipe::Receiver::from_owned_fd(err_r).map_err(failed)?;
    // SAFETY: the AsyncFd owns `mine`, so it stays open for as long as the AsyncFd lives.
    #[allow(unsafe_code)]
    let reply = unsafe { AsyncFd::register(mine) }.map_err(|e| failed(e.into()))?;
    let pid = match next_message(&reply).await {
        Ok(Some((KIND_STARTED, pid))) => pid,
        Ok(Some((_, errno))) => return Err(failed(io::Error::from_raw_os_error(errno))),
        Ok(None) | Err(_) => {
            // The spawner went away mid-request: start this one (and later ones) by forking.
            spawner.dead.store(true, Ordering::Relaxed);
            return Err(Unavailable);
        }
    };
    Ok(Spawned {
        child: SpawnedChild {
            pid,
            reply,
            status: None,
            namespaced: req.ns.pid,
        },
        stdin,
        stdout,
        stderr,
    })
}

/// The next (kind, value) message, or `None` at end of stream.
async fn next_message(sock: &AsyncFd<OwnedFd>) -> io::Result<Option<(i32, i32)>> {
    loop {
        let mut guard = sock.readable().await?;
        let got = guard.try_io(|fd| {
            let mut msg = [0u8; 8];
            let n = recv(fd.as_raw_fd(), &mut msg, MsgFlags::MSG_DONTWAIT)?;
            Ok((n, msg))
        });
        match got {
            Ok(Ok((0, _))) => return Ok(None),
            Ok(Ok((8, msg))) => return Ok(Some(decode(&msg))),
            Ok(Ok(_)) => return Err(io::Error::other("malformed message from the spawner")),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
}

/// A process the spawner started: its pid in flowc's namespace, and the
/// socket on which its end is reported.
///
/// A step in namespaces is its namespace init's job, and an init serves one
/// step after another: flowc never signals it, it asks the spawner (which
/// knows whether the job still runs) on the reply socket.
#[derive(Debug)]
pub struct SpawnedChild {
    pid: i32,
    reply: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
    namespaced: bool,
}

impl SpawnedChild {
    /// Its pid (the namespace init's, for a step in namespaces).
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// The process group flowc may kill itself: `None` for a step in
    /// namespaces (nothing of it is left when its end is reported, and its
    /// init's group serves the next step).
    pub fn group(&self) -> Option<u32> {
        (!self.namespaced).then_some(self.pid as u32)
    }

    /// Waits until it has ended (cancel-safe).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        loop {
            match next_message(&self.reply).await? {
                Some((KIND_EXITED, raw)) => {
                    let status = ExitStatus::from_raw(raw);
                    self.status = Some(status);
                    return Ok(status);
                }
                Some(_) => {}
                None => {
                    return Err(io::Error::other(
                        "the process spawner exited before the process did",
                    ));
                }
            }
        }
    }

    /// Sends SIGKILL; a step in namespaces is killed by the spawner (its
    /// init, which ends the namespace), asked on the reply socket.
    pub fn start_kill(&self) {
        if self.status.is_some() {
            return;
        }
        if self.namespaced {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            let msg = encode(KIND_KILL, 0);
            let _ = nix::sys::socket::send(self.reply.get_ref().as_raw_fd(), &msg, flags);
        } else {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for SpawnedChild {
    fn drop(&mut self) {
        // A step in namespaces: closing the reply socket (with this) tells
        // the spawner to end it.
        if self.status.is_none() && !self.namespaced {
            let pid = nix::unistd::Pid::from_raw(self.pid);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            self.start_kill();
        }
    }
}
