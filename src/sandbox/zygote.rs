//! The spawner's own process: forked from flowc before anything else runs, it
//! starts each step's process on request and reports how it ended.
//!
//! It is single-threaded, so the processes it clones may do anything between
//! clone and exec (allocate included): no other thread can hold a lock. Its
//! children are cheap to create because it stays small, whatever the size of
//! the flowc process it serves.

use super::child::{Child, raw_owned};
use super::mounts::Mounts;
use super::spawn::{STAGE_LANDLOCK, STAGE_UNSHARE, ruleset, staged_raw};
use super::spawner::{FdRole, KIND_EXITED, KIND_FAILED, KIND_STARTED, MAX_REQUEST, Request};
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
use std::ffi::{CStr, CString, OsStr};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// The clone child's stack; untouched pages are never materialized.
const STACK: usize = 1 << 20;

struct Zygote {
    sock: OwnedFd,
    signals: SignalFd,
    devnull: OwnedFd,
    /// Live children: the reply socket of a started one (`None`: failed to start, only reaped).
    children: HashMap<i32, Option<OwnedFd>>,
    /// Children cloned whose command has not exec'd yet (namespace inits).
    starting: Vec<Starting>,
    /// Namespace inits running their command: the pipe on which each says
    /// how the command ended once nothing else of the step is left.
    done: Vec<(i32, OwnedFd)>,
    rulesets: HashMap<String, RulesetCreated>,
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
        starting: Vec::new(),
        done: Vec::new(),
        rulesets: HashMap::new(),
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
        let (sock_ready, sig_ready, started, ended) = {
            let mut fds = vec![
                PollFd::new(z.sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(z.signals.as_fd(), PollFlags::POLLIN),
            ];
            fds.extend(
                z.starting
                    .iter()
                    .map(|s| PollFd::new(s.err.as_fd(), PollFlags::POLLIN)),
            );
            fds.extend(
                z.done
                    .iter()
                    .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => z.shutdown(),
            }
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let n = z.starting.len();
            let started: Vec<bool> = fds[2..2 + n].iter().map(ready).collect();
            let ended: Vec<bool> = fds[2 + n..].iter().map(ready).collect();
            (ready(&fds[0]), ready(&fds[1]), started, ended)
        };
        // Before reaping: an init that said how its command ended is
        // answered from its pipe, and its reaping sends nothing more.
        for i in (0..ended.len()).rev() {
            if ended[i] {
                let (pid, fd) = z.done.swap_remove(i);
                z.early_end(pid, &fd);
            }
        }
        if sig_ready {
            while let Ok(Some(_)) = z.signals.read_signal() {}
            z.reap();
        }
        // Newest first, so removing one keeps the earlier indices valid.
        for i in (0..started.len()).rev() {
            if started[i] {
                let s = z.starting.swap_remove(i);
                z.resolve(s);
            }
        }
        if sock_ready {
            match z.receive(&mut buf) {
                Received::Request(req, fds) => z.start(&req, fds, &mut stack),
                Received::Nothing => {}
                Received::Closed => z.shutdown(),
            }
        }
    }
}

/// A child whose start is not known yet: its error pipe closes when the
/// command has exec'd, or carries the errno of the failure.
struct Starting {
    pid: i32,
    err: OwnedFd,
    reply: OwnedFd,
    /// Its wait status, when it ended before the pipe said how it started.
    exited: Option<i32>,
    /// A namespace init's end pipe (see [`Zygote::early_end`]).
    done: Option<OwnedFd>,
}

enum Received {
    Request(Box<Request>, Vec<OwnedFd>),
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
                Received::Request(Box::new(req), fds)
            }
            (_, Some(fd)) => {
                // A malformed request: say so on its reply socket, if it has one.
                let _ = send_reply(fd, KIND_FAILED, Errno::EINVAL as i32);
                Received::Nothing
            }
            (_, None) => Received::Nothing,
        }
    }

    /// Starts the process of `req`; replies `started` or `failed` on its socket.
    fn start(&mut self, req: &Request, fds: Vec<OwnedFd>, stack: &mut [u8]) {
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
        match self.clone_child(req, stdin, stdout, stderr, reply.as_raw_fd(), stack) {
            Ok((pid, err, done)) => {
                let starting = Starting {
                    pid,
                    err,
                    reply,
                    exited: None,
                    done,
                };
                if req.ns.pid {
                    // Answered when the command has exec'd; meanwhile this
                    // process serves other requests.
                    self.starting.push(starting);
                } else {
                    // Cloned with CLONE_VFORK: it has exec'd or failed already.
                    self.resolve(starting);
                }
            }
            Err((errno, pid)) => {
                let _ = send_reply(reply.as_raw_fd(), KIND_FAILED, errno);
                if let Some(pid) = pid {
                    self.children.insert(pid, None);
                }
            }
        }
    }

    /// Says how a child started, once its error pipe has closed or spoken.
    fn resolve(&mut self, s: Starting) {
        let mut word = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match nix::unistd::read(&s.err, &mut word[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    word = (e as i32).to_le_bytes();
                    got = 4;
                }
            }
        }
        let fd = s.reply.as_raw_fd();
        if got > 0 {
            let errno = if got == 4 {
                i32::from_le_bytes(word)
            } else {
                Errno::EIO as i32
            };
            let _ = send_reply(fd, KIND_FAILED, errno);
            if s.exited.is_none() {
                self.children.insert(s.pid, None);
            }
            return;
        }
        let _ = send_reply(fd, KIND_STARTED, s.pid);
        match s.exited {
            Some(raw) => {
                let _ = send_reply(fd, KIND_EXITED, raw);
            }
            None => {
                self.children.insert(s.pid, Some(s.reply));
                if let Some(done) = s.done {
                    self.done.push((s.pid, done));
                }
            }
        }
    }

    /// A namespace init's report: its command has ended and every other
    /// process of the step is dead and reaped, so the step's end is told now,
    /// before the namespaces are torn down (the init's own exit, which its
    /// reaping then only collects). A pipe closed without a report (an init
    /// that died otherwise) leaves the answer to the reaping.
    fn early_end(&mut self, pid: i32, fd: &OwnedFd) {
        let mut word = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match nix::unistd::read(fd, &mut word[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
        if let Some(slot) = self.children.get_mut(&pid)
            && let Some(reply) = slot.take()
        {
            let _ = send_reply(reply.as_raw_fd(), KIND_EXITED, i32::from_le_bytes(word));
        }
    }

    /// Clones the child. Returns its pid and the error pipe that closes when
    /// the command has exec'd (or carries the errno of a failure); errors are
    /// raw staged errnos, with the pid when a child exists to reap.
    fn clone_child(
        &mut self,
        req: &Request,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
        reply: RawFd,
        stack: &mut [u8],
    ) -> Result<Cloned, (i32, Option<i32>)> {
        let no_child = |errno: i32| (errno, None);
        let argv = cstrings(req.argv.iter().map(|s| s.as_bytes())).map_err(no_child)?;
        let Some(program) = req.argv.first() else {
            return Err(no_child(Errno::ENOENT as i32));
        };
        let mut landlock = match &req.landlock {
            None => None,
            Some(spec) => {
                let key = serde_json::to_string(spec).unwrap_or_default();
                if !self.rulesets.contains_key(&key) {
                    let built = ruleset(spec.fs.as_ref(), spec.net)
                        .map_err(|_| no_child(staged_raw(STAGE_LANDLOCK, Errno::EINVAL as i32)))?;
                    self.rulesets.insert(key.clone(), built);
                }
                let shared = self
                    .rulesets
                    .get(&key)
                    .ok_or_else(|| no_child(Errno::EINVAL as i32))?;
                Some(
                    shared
                        .try_clone()
                        .map_err(|e| no_child(e.raw_os_error().unwrap_or(0)))?,
                )
            }
        };
        let overrides = Self::overrides(&req.env).map_err(no_child)?;
        let envp = self.environment(&overrides, &req.unset);
        let candidates = candidates(program, &envp, req.cwd.as_deref()).map_err(no_child)?;
        let cwd = match &req.cwd {
            Some(c) => {
                Some(CString::new(c.as_bytes()).map_err(|_| no_child(Errno::EINVAL as i32))?)
            }
            None => None,
        };
        let rlimits = req.rlimits();
        let (err_r, err_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| no_child(e as i32))?;
        // A namespace init reports its command's end on this pipe (close-on-exec:
        // the command never holds it).
        let done = match req.ns.pid {
            true => Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| no_child(e as i32))?,
            ),
            false => None,
        };
        let sync = match req.ns.user {
            true => Some(
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| no_child(e as i32))?,
            ),
            false => None,
        };
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
                Some(Mounts::new(spec, req.cwd.as_deref(), true).map_err(no_child)?)
            }
            _ => None,
        };
        let namespaces = flags;
        if !req.ns.pid {
            // The child execs the command itself: it may borrow this process's
            // memory until then (as posix_spawn does), which spares copying it.
            flags |= CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK;
        }
        let (own_stack, command_stack) = stack.split_at_mut(stack.len() / 2);
        // Descriptors of this process the child must not keep (it may live as
        // the namespace's init for as long as the command runs). The cached
        // Landlock rulesets are close-on-exec and grant nothing by being open.
        let mut foreign: Vec<RawFd> = self
            .children
            .values()
            .flatten()
            .map(AsRawFd::as_raw_fd)
            .collect();
        foreign.extend(
            self.starting
                .iter()
                .flat_map(|s| [s.err.as_raw_fd(), s.reply.as_raw_fd()]),
        );
        foreign.extend(
            self.starting
                .iter()
                .filter_map(|s| s.done.as_ref())
                .chain(self.done.iter().map(|(_, fd)| fd))
                .map(AsRawFd::as_raw_fd),
        );
        if let Some((r, _)) = &done {
            foreign.push(r.as_raw_fd());
        }
        // Its own reply socket too: flowc must see it close if this process dies.
        foreign.extend([
            self.sock.as_raw_fd(),
            self.signals.as_raw_fd(),
            err_r.as_raw_fd(),
            reply,
        ]);
        if let Some((_, w)) = &sync {
            foreign.push(w.as_raw_fd());
        }
        let stdin_fd = stdin
            .as_ref()
            .map_or(self.devnull.as_raw_fd(), AsRawFd::as_raw_fd);
        let mut child = Child {
            command_stack,
            stdin: stdin_fd,
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
            devnull: self.devnull.as_raw_fd(),
            err: err_w.as_raw_fd(),
            done: done.as_ref().map(|(_, w)| w.as_raw_fd()),
            sync: sync.as_ref().map(|(r, _)| r.as_raw_fd()),
            foreign: &foreign,
            // Entered by its absolute path under the new mounts.
            cwd: mounts.as_ref().map_or(cwd.as_deref(), |m| Some(m.cwd())),
            rlimits: &rlimits,
            mounts: mounts.as_ref(),
            init: req.ns.pid,
            argv: &argv,
            envp: &envp,
            candidates: &candidates,
        };
        let cb = Box::new(move || child.run(landlock.take()));
        // SAFETY: this process has a single thread, so the child may run any
        // code; the stack is ours and large for what the child does (no
        // recursion). Without namespaces the child shares this memory
        // (CLONE_VM) while this process is suspended until it has exec'd or
        // exited (CLONE_VFORK), as posix_spawn does.
        #[allow(unsafe_code)]
        let cloned =
            unsafe { nix::sched::clone(cb, own_stack, flags, Some(Signal::SIGCHLD as i32)) };
        let done = done.map(|(r, w)| {
            drop(w);
            r
        });
        drop((err_w, stdin, stdout, stderr));
        let pid = match cloned {
            Ok(pid) => pid.as_raw(),
            Err(e) if namespaces.is_empty() => return Err(no_child(e as i32)),
            Err(e) => return Err(no_child(staged_raw(STAGE_UNSHARE, e as i32))),
        };
        if let Some((sync_r, sync_w)) = sync {
            drop(sync_r);
            if let Err(e) = write_id_maps(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                return Err((staged_raw(STAGE_UNSHARE, e), Some(pid)));
            }
            let _ = nix::unistd::write(&sync_w, &[1]);
        }
        Ok((pid, err_r, done))
    }

    /// The step's variables (the last of each name), as `NAME=value`.
    fn overrides(set: &[(String, String)]) -> Result<Vec<(usize, CString)>, i32> {
        set.iter()
            .enumerate()
            .filter(|(i, (k, _))| !set[i + 1..].iter().any(|(later, _)| later == k))
            .map(|(_, (k, v))| {
                let entry = [k.as_bytes(), b"=", v.as_bytes()].concat();
                CString::new(entry)
                    .map(|c| (k.len(), c))
                    .map_err(|_| Errno::EINVAL as i32)
            })
            .collect()
    }

    /// flowc's environment at fork time without `unset`, with `overrides` set over it.
    fn environment<'a>(
        &'a self,
        overrides: &'a [(usize, CString)],
        unset: &[String],
    ) -> Vec<&'a CStr> {
        fn name((len, entry): &(usize, CString)) -> &[u8] {
            &entry.as_bytes()[..*len]
        }
        self.base_env
            .iter()
            .filter(|kv| !overrides.iter().any(|o| name(o) == name(kv)))
            .filter(|kv| !unset.iter().any(|u| u.as_bytes() == name(kv)))
            .chain(overrides)
            .map(|(_, entry)| entry.as_c_str())
            .collect()
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
            if let Some(Some(reply)) = self.children.remove(&pid.as_raw()) {
                let _ = send_reply(reply.as_raw_fd(), KIND_EXITED, raw);
            } else if let Some(s) = self.starting.iter_mut().find(|s| s.pid == pid.as_raw()) {
                s.exited = Some(raw);
            }
        }
    }

    /// flowc is gone or closed the socket: nothing it started may outlive it.
    fn shutdown(&mut self) -> ! {
        for s in &self.starting {
            if s.exited.is_none() {
                self.children.insert(s.pid, None);
            }
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
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&kind.to_le_bytes());
    msg[4..].copy_from_slice(&value.to_le_bytes());
    send(fd, &msg, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT)
}

fn cstrings<'a>(items: impl Iterator<Item = &'a [u8]>) -> Result<Vec<CString>, i32> {
    items
        .map(|b| CString::new(b).map_err(|_| Errno::EINVAL as i32))
        .collect()
}

/// The paths `execve` tries, in `PATH` order like `execvp`; absolute
/// directories without the program are left out here rather than tried.
fn candidates(program: &str, env: &[&CStr], cwd: Option<&str>) -> Result<Vec<CString>, i32> {
    if program.contains('/') {
        return cstrings(std::iter::once(program.as_bytes()));
    }
    let path = env
        .iter()
        .find_map(|kv| kv.to_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"/bin:/usr/bin");
    let mut out = Vec::new();
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
        let full = [dir, b"/", program.as_bytes()].concat();
        if dir.starts_with(b"/") {
            if !std::path::Path::new(OsStr::from_bytes(&full)).is_file() {
                continue;
            }
        } else if cwd.is_none() && !std::path::Path::new(OsStr::from_bytes(&full)).exists() {
            continue;
        }
        out.push(CString::new(full).map_err(|_| Errno::EINVAL as i32)?);
    }
    if out.is_empty() {
        return Err(Errno::ENOENT as i32);
    }
    Ok(out)
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

/// A cloned child: its pid, its error pipe, and a namespace init's end pipe.
type Cloned = (i32, OwnedFd, Option<OwnedFd>);

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
