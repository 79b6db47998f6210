//! The spawner's own process: forked from flowc before anything else runs, it
//! starts each step's process on request and reports how it ended.
//!
//! It is single-threaded, so the processes it clones may do anything between
//! clone and exec (allocate included): no other thread can hold a lock. Its
//! children are cheap to create because it stays small, whatever the size of
//! the flowc process it serves.

use super::child::{Child, raw_owned, read_word};
use super::job::{Job, environment, ruleset_key};
use super::mounts::Mounts;
use super::pool::Pool;
use super::spawn::{STAGE_LANDLOCK, STAGE_UNSHARE, ruleset, staged_raw};
use super::spawner::{
    FdRole, KIND_EXITED, KIND_FAILED, KIND_STARTED, LandlockSpec, MAX_REQUEST, Request, encode,
};
use landlock::RulesetCreated;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, killpg, signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, send};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::{CStr, CString};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

mod namespaces;

/// The clone child's stack; untouched pages are never materialized.
const STACK: usize = 1 << 20;
/// Landlock rulesets kept at most (a key per spec and identity of its paths).
const MAX_RULESETS: usize = 64;

struct Zygote {
    sock: OwnedFd,
    signals: SignalFd,
    devnull: OwnedFd,
    /// Live children: the reply socket of a started one (`None`: failed to start, only reaped).
    children: HashMap<i32, Option<OwnedFd>>,
    rulesets: HashMap<String, RulesetCreated>,
    /// The namespace inits, busy or idle.
    pool: Pool,
    /// The environment flowc had when it forked this process, as `NAME=value`
    /// entries with the length of the name.
    base_env: Vec<(usize, CString)>,
}

/// Serves requests on `sock` until flowc closes it, then kills what is left and exits.
pub(super) fn serve(sock: OwnedFd) -> ! {
    let _ = nix::sys::prctl::set_name(c"flowc-spawner");
    // flowc decides how to stop (Ctrl-C reaches the whole foreground group);
    // this process ends when flowc's end of the socket closes.
    for s in [
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGHUP,
    ] {
        // SAFETY: setting a disposition to SIG_IGN installs no handler code.
        #[allow(unsafe_code)]
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    let (Ok(signals), Ok(devnull)) = (
        SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK),
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null"),
    ) else {
        std::process::exit(1);
    };
    let devnull = OwnedFd::from(devnull);
    // Nothing is written to flowc's terminal or pipes from here: a test that
    // waits for flowc's output to close must not wait for this process.
    for fd in 0..3 {
        let mut target = std::mem::ManuallyDrop::new(raw_owned(fd));
        let _ = nix::unistd::dup2(devnull.as_fd(), &mut target);
    }
    let mut z = Zygote {
        sock,
        signals,
        devnull,
        children: HashMap::new(),
        rulesets: HashMap::new(),
        pool: Pool::default(),
        // flowc's own variables are dropped here already; each request
        // names the rest (secrets read from the environment) in `unset`.
        base_env: std::env::vars_os()
            .filter(|(k, _)| !super::env::is_hidden(k))
            .filter_map(|(k, v)| {
                let entry = [k.as_bytes(), b"=", v.as_bytes()].concat();
                Some((k.len(), CString::new(entry).ok()?))
            })
            .collect(),
    };
    wipe_environ();
    let mut stack = vec![0u8; STACK];
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (sock_ready, sig_ready, heard) = {
            let mut fds = vec![
                PollFd::new(z.sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(z.signals.as_fd(), PollFlags::POLLIN),
            ];
            // Each init's job socket, and the reply socket of each job (flowc
            // asks there for the job's end, or closes it).
            let mut whose = Vec::new();
            for init in z.pool.all().iter().filter(|i| !i.gone) {
                fds.push(PollFd::new(init.job.as_fd(), PollFlags::POLLIN));
                whose.push((init.pid, false));
                if let Some(reply) = init.reply.as_ref().filter(|_| !init.killed) {
                    fds.push(PollFd::new(reply.as_fd(), PollFlags::POLLIN));
                    whose.push((init.pid, true));
                }
            }
            // Woken in time to end an idle init.
            let timeout = z.pool.next_expiry().map_or(PollTimeout::NONE, |d| {
                PollTimeout::try_from(d.as_millis() + 1).unwrap_or(PollTimeout::MAX)
            });
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => z.shutdown(),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let heard: Vec<(i32, bool)> = whose
                .into_iter()
                .zip(&fds[2..])
                .filter(|(_, f)| ready(f))
                .map(|(w, _)| w)
                .collect();
            (ready(&fds[0]), ready(&fds[1]), heard)
        };
        // Before reaping: an init's word on its job comes first.
        for (pid, on_reply) in heard {
            if on_reply {
                z.kill_job(pid);
            } else {
                z.hear(pid);
            }
        }
        if sig_ready {
            while let Ok(Some(_)) = z.signals.read_signal() {}
            z.reap();
        }
        z.expire();
        if sock_ready {
            match z.receive(&mut buf) {
                Received::Request(req, len, fds) => z.start(&req, &buf[..len], fds, &mut stack),
                Received::Nothing => {}
                Received::Closed => z.shutdown(),
            }
        }
    }
}

enum Received {
    /// The request, its length in the buffer and its descriptors.
    Request(Box<Request>, usize, Vec<OwnedFd>),
    Nothing,
    Closed,
}

impl Zygote {
    fn receive(&mut self, buf: &mut [u8]) -> Received {
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(buf)];
        let (len, fds, truncated) = match recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw.into_iter().map(|fd| {
                                // SAFETY: SCM_RIGHTS hands this process new descriptors it alone owns.
                                #[allow(unsafe_code)]
                                unsafe {
                                    OwnedFd::from_raw_fd(fd)
                                }
                            }));
                        }
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                (msg.bytes, fds, truncated)
            }
            Err(Errno::EAGAIN | Errno::EINTR) => return Received::Nothing,
            Err(_) => return Received::Closed,
        };
        if len == 0 && fds.is_empty() {
            return Received::Closed;
        }
        let reply = fds.first().map(|fd| fd.as_raw_fd());
        let parsed = if truncated {
            None
        } else {
            serde_json::from_slice::<Request>(&buf[..len]).ok()
        };
        match (parsed, reply) {
            (Some(req), Some(_)) if fds.len() == req.fds().len() => {
                Received::Request(Box::new(req), len, fds)
            }
            (_, Some(fd)) => {
                // A malformed request: say so on its reply socket, if it has one.
                let _ = send_reply(fd, KIND_FAILED, Errno::EINVAL as i32);
                Received::Nothing
            }
            (_, None) => Received::Nothing,
        }
    }

    /// Starts the process of `req` (sent as `raw`), by a ready init when one
    /// fits; replies `started` or `failed` on its socket.
    fn start(&mut self, req: &Request, raw: &[u8], fds: Vec<OwnedFd>, stack: &mut [u8]) {
        let roles = req.fds();
        let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
        let mut take = |role: FdRole| -> Option<OwnedFd> {
            let i = roles.iter().position(|r| *r == role)?;
            fds.get_mut(i)?.take()
        };
        let (Some(reply), Some(stdout), Some(stderr)) = (
            take(FdRole::Reply),
            take(FdRole::Stdout),
            take(FdRole::Stderr),
        ) else {
            return;
        };
        let stdin = take(FdRole::Stdin);
        if req.ns.pid {
            self.start_in_namespaces(req, raw, reply, [Some(stdout), Some(stderr), stdin], stack);
            return;
        }
        match self.clone_child(req, stdin, stdout, stderr, reply.as_raw_fd(), stack) {
            Ok((pid, err)) => self.resolve(pid, &err, reply),
            Err(errno) => {
                let _ = send_reply(reply.as_raw_fd(), KIND_FAILED, errno);
            }
        }
    }

    /// Says how a child cloned with CLONE_VFORK started: its error pipe has
    /// closed (it exec'd) or carries the errno of the failure.
    fn resolve(&mut self, pid: i32, err: &OwnedFd, reply: OwnedFd) {
        let fd = reply.as_raw_fd();
        if let Some(errno) = read_word(err) {
            let _ = send_reply(fd, KIND_FAILED, errno);
            self.children.insert(pid, None);
            return;
        }
        let _ = send_reply(fd, KIND_STARTED, pid);
        self.children.insert(pid, Some(reply));
    }

    /// Clones the child of a step without namespaces (CLONE_VFORK: it has
    /// exec'd or failed when this returns). Returns its pid and its error
    /// pipe; errors are raw staged errnos.
    fn clone_child(
        &mut self,
        req: &Request,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
        reply: RawFd,
        stack: &mut [u8],
    ) -> Result<(i32, OwnedFd), i32> {
        let job = Job::new(req, &self.base_env)?;
        let mut landlock = match &req.landlock {
            None => None,
            Some(spec) => Some(self.ruleset(spec)?),
        };
        let envp = environment(&self.base_env, &job.overrides, &req.unset);
        let frame = Frame::new(req)?;
        // Its own reply socket too: flowc must see it close if this process dies.
        let foreign = self.foreign(&frame, &[reply]);
        let child = Child {
            stdin: stdin
                .as_ref()
                .map_or(self.devnull.as_raw_fd(), AsRawFd::as_raw_fd),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
            err: frame.err.1.as_raw_fd(),
            foreign: &foreign,
            cwd: job.cwd.as_deref(),
            rlimits: &job.rlimits,
            argv: &job.argv,
            envp: &envp,
            candidates: &job.candidates,
        };
        let cb = Box::new(move || child.run(landlock.take()));
        // The child execs the command itself: it borrows this process's
        // memory until then (as posix_spawn does), which spares copying it.
        let flags = CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK;
        // SAFETY: this process has a single thread; the child shares this
        // memory on its own stack while this process is suspended until it
        // has exec'd or exited (CLONE_VFORK), as posix_spawn does.
        #[allow(unsafe_code)]
        let cloned = unsafe { nix::sched::clone(cb, stack, flags, Some(Signal::SIGCHLD as i32)) };
        drop((stdin, stdout, stderr));
        match frame.cloned(cloned) {
            Ok(done) => Ok(done),
            Err((errno, pid)) => {
                if let Some(pid) = pid {
                    self.children.insert(pid, None);
                }
                Err(errno)
            }
        }
    }

    /// A copy of the Landlock ruleset of `spec`, built once and cached.
    fn ruleset(&mut self, spec: &LandlockSpec) -> Result<RulesetCreated, i32> {
        let key = ruleset_key(spec);
        if !self.rulesets.contains_key(&key) && self.rulesets.len() >= MAX_RULESETS {
            // Keys of paths replaced over time must not pile up.
            self.rulesets.clear();
        }
        let shared = match self.rulesets.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                ruleset(spec.fs.as_ref(), spec.net)
                    .map_err(|_| staged_raw(STAGE_LANDLOCK, Errno::EINVAL as i32))?,
            ),
        };
        shared
            .try_clone()
            .map_err(|e| e.raw_os_error().unwrap_or(0))
    }

    /// Descriptors of this process a new child must not keep (an init lives
    /// for as long as its jobs), with `extra`. The cached Landlock rulesets
    /// are close-on-exec and grant nothing by being open.
    fn foreign(&self, frame: &Frame, extra: &[RawFd]) -> Vec<RawFd> {
        let mut foreign: Vec<RawFd> = self
            .children
            .values()
            .flatten()
            .map(AsRawFd::as_raw_fd)
            .collect();
        foreign.extend(self.pool.fds());
        foreign.extend([
            self.sock.as_raw_fd(),
            self.signals.as_raw_fd(),
            frame.err.0.as_raw_fd(),
        ]);
        foreign.extend(extra);
        if let Some((_, w)) = &frame.sync {
            foreign.push(w.as_raw_fd());
        }
        foreign
    }

    fn reap(&mut self) {
        loop {
            let (pid, raw) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    (pid, sig as i32 | if core { 0x80 } else { 0 })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if self.init_ended(pid.as_raw(), raw) {
                continue;
            }
            if let Some(Some(reply)) = self.children.remove(&pid.as_raw()) {
                let _ = send_reply(reply.as_raw_fd(), KIND_EXITED, raw);
            }
        }
    }

    /// flowc is gone or closed the socket: nothing it started may outlive it.
    fn shutdown(&mut self) -> ! {
        let inits: Vec<i32> = self.pool.all().iter().map(|i| i.pid).collect();
        for pid in inits {
            self.children.insert(pid, None);
        }
        for &pid in self.children.keys() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in self.children.keys() {
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        std::process::exit(0)
    }
}

fn send_reply(fd: RawFd, kind: i32, value: i32) -> nix::Result<usize> {
    let msg = encode(kind, value);
    send(fd, &msg, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT)
}

/// Maps the user to itself in the user namespace of `pid`, as `unshare
/// --map-current-user` does. Never to root there: a command that is root in
/// its user namespace keeps capabilities over the step's mount namespace,
/// and Landlock does not stop `mount_setattr` from clearing a read-only flag.
fn write_id_maps(pid: i32) -> Result<(), i32> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(|e| e.raw_os_error().unwrap_or(Errno::EPERM as i32))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))
}

/// Overwrites this process's original environment block (flowc's, from its
/// exec) with zeros, once `base_env` holds what steps may inherit. Every
/// namespace init is a copy of this process, and a step can read its init's
/// `/proc/1/environ`: that must not show `FLOWC_SECRETS_KEY` or an API key.
fn wipe_environ() {
    #[allow(unsafe_code)]
    unsafe extern "C" {
        static environ: *const *mut std::ffi::c_char;
    }
    // SAFETY: this process has one thread and reads its environment no more
    // (`base_env` is a copy); each entry is a NUL-terminated string that the
    // kernel or libc placed in writable memory, overwritten within its length.
    #[allow(unsafe_code)]
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return;
        }
        while !(*p).is_null() {
            let entry = *p;
            let len = CStr::from_ptr(entry).to_bytes().len();
            std::ptr::write_bytes(entry, 0, len);
            p = p.add(1);
        }
    }
}

/// The pipes and namespaces of a child cloned for a request: the error pipe
/// (closes when the command has exec'd, or carries the errno of a failure)
/// and a user namespace's sync pipe.
struct Frame {
    err: (OwnedFd, OwnedFd),
    sync: Option<(OwnedFd, OwnedFd)>,
    flags: CloneFlags,
    mounts: Option<Mounts>,
}

impl Frame {
    fn new(req: &Request) -> Result<Frame, i32> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e as i32);
        let err = pipe()?;
        let sync = if req.ns.user { Some(pipe()?) } else { None };
        let mut flags = CloneFlags::empty();
        if req.ns.pid {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        if req.ns.net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        if req.ns.user {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        let mounts = match &req.mounts {
            Some(spec) if req.ns.pid => {
                flags |= CloneFlags::CLONE_NEWNS;
                Some(Mounts::new(spec, req.cwd.as_deref(), true)?)
            }
            _ => None,
        };
        Ok(Frame {
            err,
            sync,
            flags,
            mounts,
        })
    }

    /// After the clone: keeps the read ends, and writes a user namespace's id maps.
    fn cloned(self, cloned: nix::Result<Pid>) -> Result<(i32, OwnedFd), (i32, Option<i32>)> {
        let Frame {
            err, sync, flags, ..
        } = self;
        drop(err.1);
        let pid = match cloned {
            Ok(pid) => pid.as_raw(),
            Err(e) if flags.is_empty() => return Err((e as i32, None)),
            Err(e) => return Err((staged_raw(STAGE_UNSHARE, e as i32), None)),
        };
        if let Some((sync_r, sync_w)) = sync {
            drop(sync_r);
            if let Err(e) = write_id_maps(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                return Err((staged_raw(STAGE_UNSHARE, e), Some(pid)));
            }
            let _ = nix::unistd::write(&sync_w, &[1]);
        }
        Ok((pid, err.0))
    }
}
