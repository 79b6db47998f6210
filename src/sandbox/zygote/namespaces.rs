//! The spawner's side of steps in namespaces: a job goes to an idle init of
//! its key or to one cloned for it; the init's word on its job socket is
//! passed on to the job's reply socket; a spare is cloned while the job runs.

use super::super::init::Init as Body;
use super::super::pool::{Init, reusable};
use super::super::spawner::{KIND_EXITED, KIND_FAILED, KIND_STARTED, Request, decode};
use super::{Frame, Zygote, send_reply};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recv, sendmsg, socketpair,
};
use nix::unistd::Pid;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

impl Zygote {
    /// Hands the request (sent as `raw`, with its stdout, stderr and maybe
    /// stdin) to an init; `started` or `failed` comes from the init.
    pub(super) fn start_in_namespaces(
        &mut self,
        req: &Request,
        raw: &[u8],
        reply: OwnedFd,
        fds: [Option<OwnedFd>; 3],
        stack: &mut [u8],
    ) {
        let job: Vec<RawFd> = fds.iter().flatten().map(AsRawFd::as_raw_fd).collect();
        // A ruleset built here is inherited by the inits cloned after it.
        if let Some(spec) = &req.landlock
            && let Err(errno) = self.ruleset(spec)
        {
            let _ = send_reply(reply.as_raw_fd(), KIND_FAILED, errno);
            return;
        }
        let mut stale = Vec::new();
        let idle = self.pool.idle(req, &mut stale);
        self.retire(stale);
        let mut sent = idle.filter(|&pid| self.send_job(pid, raw, &job));
        if sent.is_none() {
            // None idle (or it had just died): one cloned for this job.
            // It must not keep the spawner's copies of this job's pipes
            // (their ends would never close) nor of its reply socket.
            let inherited: Vec<RawFd> = job.iter().copied().chain([reply.as_raw_fd()]).collect();
            match self.clone_init(req, stack, &inherited) {
                Ok(init) => {
                    let pid = init.pid;
                    self.pool.add(init);
                    sent = Some(pid).filter(|&pid| self.send_job(pid, raw, &job));
                }
                Err(errno) => {
                    let _ = send_reply(reply.as_raw_fd(), KIND_FAILED, errno);
                    return;
                }
            }
        }
        let Some(pid) = sent else {
            let _ = send_reply(reply.as_raw_fd(), KIND_FAILED, Errno::EIO as i32);
            return;
        };
        // The init holds its own copies of the job's pipes now.
        drop(fds);
        let again = reusable(req);
        self.pool.begin(pid, reply, again);
        if again && self.pool.wants_spare(req) {
            // Made while this job runs, so the next one need not wait.
            if let Ok(spare) = self.clone_init(req, stack, &[]) {
                self.pool.add(spare);
            }
        }
    }

    /// Sends the job to init `pid`; false (and the init ended) when it cannot take it.
    fn send_job(&mut self, pid: i32, raw: &[u8], fds: &[RawFd]) -> bool {
        let Some(init) = self.pool.get_mut(pid) else {
            return false;
        };
        let rights = [ControlMessage::ScmRights(fds)];
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        let sent = sendmsg::<()>(
            init.job.as_raw_fd(),
            &[IoSlice::new(raw)],
            &rights,
            flags,
            None,
        );
        if sent.is_err() {
            let gone = self.pool.remove(pid).into_iter().collect();
            self.retire(gone);
            return false;
        }
        true
    }

    /// Clones an init for requests like `req`, idle until its first job.
    /// `inherited`: descriptors the spawner holds for a job, which the
    /// init closes with the rest it must not keep.
    fn clone_init(
        &mut self,
        req: &Request,
        stack: &mut [u8],
        inherited: &[RawFd],
    ) -> Result<Init, i32> {
        let frame = Frame::new(req)?;
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| e as i32)?;
        // The error pipe is for a step's command, which the init clones itself.
        let mut extra = vec![mine.as_raw_fd(), frame.err.1.as_raw_fd()];
        extra.extend(inherited);
        let foreign = self.foreign(&frame, &extra);
        let (own_stack, command_stack) = stack.split_at_mut(stack.len() / 2);
        let mut body = Body {
            sync: frame.sync.as_ref().map(|(r, _)| r.as_raw_fd()),
            foreign: &foreign,
            mounts: frame.mounts.as_ref(),
            job: theirs.as_raw_fd(),
            devnull: self.devnull.as_raw_fd(),
            base_env: &self.base_env,
            rulesets: &self.rulesets,
            stack: command_stack,
        };
        let cb = Box::new(move || body.run());
        // SAFETY: this process has a single thread, so the child (a copy of
        // it) may run any code; the stack is ours and large for what it does.
        #[allow(unsafe_code)]
        let cloned =
            unsafe { nix::sched::clone(cb, own_stack, frame.flags, Some(Signal::SIGCHLD as i32)) };
        drop(theirs);
        match frame.cloned(cloned) {
            Ok((pid, _)) => Ok(Init::new(req, pid, mine)),
            Err((errno, pid)) => {
                if let Some(pid) = pid {
                    self.children.insert(pid, None);
                }
                Err(errno)
            }
        }
    }

    /// Passes on what init `pid` says about its job.
    pub(super) fn hear(&mut self, pid: i32) {
        loop {
            let Some(init) = self.pool.get_mut(pid) else {
                return;
            };
            let mut msg = [0u8; 8];
            let n = match recv(init.job.as_raw_fd(), &mut msg, MsgFlags::MSG_DONTWAIT) {
                Ok(8) => 8,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                // Closed (or garbled): it is ending; its reaping answers.
                _ => 0,
            };
            if n == 0 {
                init.gone = true;
                return;
            }
            let (kind, value) = decode(&msg);
            let Some(reply) = init.reply.as_ref().map(AsRawFd::as_raw_fd) else {
                continue;
            };
            match kind {
                KIND_STARTED => {
                    let _ = send_reply(reply, KIND_STARTED, pid);
                }
                KIND_FAILED | KIND_EXITED => {
                    let _ = send_reply(reply, kind, value);
                    let done = self.pool.end(pid, kind == KIND_FAILED);
                    self.retire(done.into_iter().collect());
                }
                _ => {}
            }
        }
    }

    /// flowc asked for the job's end (or closed its reply socket): the init
    /// is killed, which ends its namespace; its reaping answers.
    pub(super) fn kill_job(&mut self, pid: i32) {
        if let Some(init) = self.pool.get_mut(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            init.killed = true;
        }
    }

    /// An init was reaped with wait status `raw`: its job, if one was still
    /// running, ended with it. Whether `pid` was an init.
    pub(super) fn init_ended(&mut self, pid: i32, raw: i32) -> bool {
        // Its last words first (a report written before it exited).
        self.hear(pid);
        let Some(init) = self.pool.remove(pid) else {
            return false;
        };
        if let Some(reply) = &init.reply {
            let _ = send_reply(reply.as_raw_fd(), KIND_EXITED, raw);
        }
        true
    }

    /// Ends the idle inits past their time.
    pub(super) fn expire(&mut self) {
        let mut stale = Vec::new();
        self.pool.expire(&mut stale);
        self.retire(stale);
    }

    /// Ends inits taken out of the pool: closing the job socket ends an idle
    /// one; SIGKILL makes sure. They are reaped like any child.
    fn retire(&mut self, inits: Vec<Init>) {
        for init in inits {
            let _ = kill(Pid::from_raw(init.pid), Signal::SIGKILL);
            self.children.insert(init.pid, None);
        }
    }
}
