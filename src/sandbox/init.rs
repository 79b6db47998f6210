//! A namespace init: PID 1 of a step's PID (and mount) namespace. It runs
//! one job at a time as its child and, once the command has ended, kills and
//! reaps everything else in the namespace before it says how the command
//! ended, so nothing of a step outlives the report; then it waits for the
//! next job, or exits when the spawner says so (see `pool.rs`).
//!
//! It runs in a copy of the single-threaded spawner, so it may allocate; it
//! never returns into the spawner's code.

use super::child::{Child, enter, exit_now, read_word};
use super::job::{Job, environment, landlock};
use super::mounts::Mounts;
use super::pool::reusable;
use super::spawn::{STAGE_MOUNT, staged_raw};
use super::spawner::{KIND_EXITED, KIND_FAILED, KIND_STARTED, MAX_REQUEST, Request, encode};
use landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, send};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What the init was cloned with.
pub(super) struct Init<'a> {
    pub sync: Option<RawFd>,
    pub foreign: &'a [RawFd],
    pub mounts: Option<&'a Mounts>,
    /// Its end of the job socket: jobs come in, `started`/`failed`/`exited` go out.
    pub job: RawFd,
    pub devnull: RawFd,
    pub base_env: &'a [(usize, CString)],
    pub rulesets: &'a HashMap<String, RulesetCreated>,
    /// The stack its command's process starts on.
    pub stack: &'a mut [u8],
}

impl Init<'_> {
    pub(super) fn run(&mut self) -> isize {
        // Its namespace (and the step in it) ends with the spawner, which
        // alone knows whose step it runs. Had the spawner died before this,
        // its job socket is closed and the first `receive` ends this process.
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        let set_up = enter(self.sync, self.foreign).and_then(|()| match self.mounts {
            Some(m) => m.apply().map_err(|e| staged_raw(STAGE_MOUNT, e as i32)),
            None => Ok(()),
        });
        // A command of the same user must not read or trace this process,
        // which serves the steps after it.
        let _ = nix::sys::prctl::set_dumpable(false);
        let mut buf = vec![0u8; MAX_REQUEST];
        loop {
            // The spawner gone or done with this init (its end closed).
            let Some((len, fds)) = receive(self.job, &mut buf) else {
                exit_now(0)
            };
            if let Err(raw) = set_up {
                // The job learns why its namespaces could not be made.
                self.say(KIND_FAILED, raw);
                exit_now(127);
            }
            let parsed = serde_json::from_slice::<Request>(&buf[..len]);
            let Ok(req) = parsed else {
                self.say(KIND_FAILED, Errno::EINVAL as i32);
                continue;
            };
            let again = self.serve(&req, fds);
            if !again || !reusable(&req) {
                exit_now(0);
            }
        }
    }

    /// Runs one job; false when this init cannot take another.
    fn serve(&mut self, req: &Request, mut fds: Vec<OwnedFd>) -> bool {
        // stdout, stderr and maybe stdin, in the order the request lists them.
        if fds.len() != 2 + usize::from(req.stdin) {
            self.say(KIND_FAILED, Errno::EINVAL as i32);
            return true;
        }
        let stdin = req.stdin.then(|| fds.remove(2));
        let (stdout, stderr) = (fds.remove(0), fds.remove(0));
        let job = match Job::new(req, self.base_env) {
            Ok(job) => job,
            Err(raw) => {
                self.say(KIND_FAILED, raw);
                return true;
            }
        };
        let mut ruleset = match req.landlock.as_ref().map(|s| landlock(self.rulesets, s)) {
            Some(Err(raw)) => {
                self.say(KIND_FAILED, raw);
                return true;
            }
            Some(Ok(r)) => Some(r),
            None => None,
        };
        let Ok((err_r, err_w)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
            self.say(KIND_FAILED, Errno::EMFILE as i32);
            return true;
        };
        let envp = environment(self.base_env, &job.overrides, &req.unset);
        let child = Child {
            stdin: stdin.as_ref().map_or(self.devnull, AsRawFd::as_raw_fd),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
            err: err_w.as_raw_fd(),
            foreign: &[],
            // Entered by its absolute path under the new mounts.
            cwd: self.mounts.map_or(job.cwd.as_deref(), |m| Some(m.cwd())),
            rlimits: &job.rlimits,
            argv: &job.argv,
            envp: &envp,
            candidates: &job.candidates,
        };
        let start = Box::new(|| child.run(ruleset.take()));
        // SAFETY: as posix_spawn does: the command's process shares this one's
        // memory, on its own stack, while this one is suspended until it has
        // exec'd or exited (CLONE_VFORK); it only sets itself up and execs or
        // reports and exits. Its descriptors, directory, rlimits and Landlock
        // domain are its own (no CLONE_FILES, CLONE_FS or CLONE_THREAD).
        #[allow(unsafe_code)]
        let cloned = unsafe {
            nix::sched::clone(
                start,
                self.stack,
                CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
                Some(Signal::SIGCHLD as i32),
            )
        };
        // Only the command holds the job's pipes now.
        drop((err_w, stdin, stdout, stderr));
        let command = match cloned {
            Ok(pid) => pid,
            Err(e) => {
                self.say(KIND_FAILED, e as i32);
                return true;
            }
        };
        if let Some(raw) = read_word(&err_r) {
            // It reported why it could not exec, and exited.
            let _ = waitpid(command, None);
            self.say(KIND_FAILED, raw);
            return true;
        }
        self.say(KIND_STARTED, 0);
        let code = loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => break (code & 0xff) << 8,
                Ok(WaitStatus::Signaled(pid, sig, core)) if pid == command => {
                    break sig as i32 | if core { 0x80 } else { 0 };
                }
                Err(Errno::ECHILD) => exit_now(127),
                _ => {}
            }
        };
        if !empty_namespace() {
            // Something is left that cannot be killed now: the kernel kills it
            // at this process's exit, and the spawner answers from the reaping.
            exit_now(wait_code(code));
        }
        self.say(KIND_EXITED, code)
    }

    /// One message to the spawner; false when it is gone.
    fn say(&self, kind: i32, value: i32) -> bool {
        send(self.job, &encode(kind, value), MsgFlags::MSG_NOSIGNAL).is_ok()
    }
}

/// Kills every other process of the namespace and reaps them all (orphans
/// are this process's children), as the kernel would at this process's
/// exit. True once none is left; false after about a second if one this
/// process may not signal, or one stuck in the kernel, remains.
fn empty_namespace() -> bool {
    for _ in 0..10_000 {
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::ECHILD) => return true,
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_micros(100)),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    false
}

/// The exit code that tells the same end as the wait status `raw`.
fn wait_code(raw: i32) -> i32 {
    match raw & 0x7f {
        0 => (raw >> 8) & 0xff,
        sig => 128 + sig,
    }
}

/// Waits for a job: the request's bytes and its descriptors; `None` when
/// the spawner's end has closed.
fn receive(sock: RawFd, buf: &mut [u8]) -> Option<(usize, Vec<OwnedFd>)> {
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 3]);
        let mut iov = [IoSliceMut::new(buf)];
        match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: SCM_RIGHTS hands this process new descriptors it alone owns.
                            #[allow(unsafe_code)]
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                let cut = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                if msg.bytes == 0 || cut {
                    return None;
                }
                return Some((msg.bytes, fds));
            }
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}
