//! The process the spawner clones for a step: it sets up what the request
//! asks (descriptors, mounts, rlimits, Landlock) and execs the command, or,
//! as the init of a new PID namespace, starts the command as its child, and
//! once it has ended kills and reaps the rest of the namespace and reports.
//!
//! It runs in a copy of the single-threaded spawner, so it may allocate; it
//! never returns into the spawner's code.

use super::mounts::Mounts;
use super::spawn::{STAGE_LANDLOCK, STAGE_MOUNT, STAGE_RLIMIT, staged_raw};
use landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::ffi::{CStr, CString};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Everything the cloned child needs, prepared before the clone.
pub(super) struct Child<'a> {
    /// The stack the namespace's init starts the command on.
    pub(super) command_stack: &'a mut [u8],
    pub(super) stdin: RawFd,
    pub(super) stdout: RawFd,
    pub(super) stderr: RawFd,
    pub(super) devnull: RawFd,
    pub(super) err: RawFd,
    /// A namespace init's end pipe: the command's wait status, once the rest is gone.
    pub(super) done: Option<RawFd>,
    pub(super) sync: Option<RawFd>,
    pub(super) foreign: &'a [RawFd],
    pub(super) cwd: Option<&'a CStr>,
    pub(super) rlimits: &'a [(nix::sys::resource::Resource, u64, u64)],
    /// The step's new mount namespace, set up before Landlock forbids it.
    pub(super) mounts: Option<&'a Mounts>,
    /// The child is PID 1 of a new namespace: it runs the command as its own child.
    pub(super) init: bool,
    pub(super) argv: &'a [CString],
    pub(super) envp: &'a [&'a CStr],
    pub(super) candidates: &'a [CString],
}

impl Child<'_> {
    /// Runs in the cloned child; returns only as the exit code.
    pub(super) fn run(&mut self, landlock: Option<RulesetCreated>) -> isize {
        let errno = match self.setup(landlock) {
            Ok(()) if self.init => return self.init(),
            Ok(()) => self.exec(),
            Err(raw) => raw,
        };
        self.fail(errno)
    }

    fn fail(&self, raw: i32) -> ! {
        let _ = nix::unistd::write(borrowed(self.err), &raw.to_le_bytes());
        exit_now(127)
    }

    fn setup(&self, landlock: Option<RulesetCreated>) -> Result<(), i32> {
        if let Some(fd) = self.sync {
            // Wait until the spawner has written this user namespace's id maps.
            let mut byte = [0u8; 1];
            while let Err(Errno::EINTR) = nix::unistd::read(borrowed(fd), &mut byte) {}
        }
        for s in [
            Signal::SIGPIPE,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGTERM,
            Signal::SIGHUP,
        ] {
            // SAFETY: restoring the default disposition installs no handler code.
            #[allow(unsafe_code)]
            let _ = unsafe { signal(s, SigHandler::SigDfl) };
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        for &fd in self.foreign {
            let _ = nix::unistd::close(fd);
        }
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(|e| e as i32)?;
        for (fd, target) in [(self.stdin, 0), (self.stdout, 1), (self.stderr, 2)] {
            let mut target = std::mem::ManuallyDrop::new(raw_owned(target));
            nix::unistd::dup2(borrowed(fd), &mut target).map_err(|e| e as i32)?;
        }
        if let Some(mounts) = self.mounts {
            mounts
                .apply()
                .map_err(|e| staged_raw(STAGE_MOUNT, e as i32))?;
        }
        if let Some(cwd) = self.cwd {
            nix::unistd::chdir(cwd).map_err(|e| e as i32)?;
        }
        for &(resource, soft, hard) in self.rlimits {
            nix::sys::resource::setrlimit(resource, soft, hard)
                .map_err(|e| staged_raw(STAGE_RLIMIT, e as i32))?;
        }
        if let Some(ruleset) = landlock {
            ruleset.restrict_self().map_err(|_| {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                staged_raw(STAGE_LANDLOCK, errno)
            })?;
        }
        Ok(())
    }

    /// PID 1 of the step's namespace: the command is its child, so it keeps
    /// ordinary signal handling, and this process's exit ends the namespace.
    fn init(&mut self) -> isize {
        let stack = std::mem::take(&mut self.command_stack);
        let this = &*self;
        let start = Box::new(|| -> isize { this.fail(this.exec()) });
        // SAFETY: as posix_spawn does: the command's process shares this one's
        // memory, on its own stack, while this one is suspended until it has
        // exec'd or exited (CLONE_VFORK); it only execs or reports and exits.
        #[allow(unsafe_code)]
        let cloned = unsafe {
            nix::sched::clone(
                start,
                stack,
                CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
                Some(Signal::SIGCHLD as i32),
            )
        };
        let command = match cloned {
            Ok(pid) => pid,
            Err(e) => self.fail(e as i32),
        };
        // Only the command holds the output pipes and the error pipe now.
        for fd in [self.err, self.stdin, self.stdout, self.stderr, 0, 1, 2] {
            if fd != self.devnull {
                let _ = nix::unistd::close(fd);
            }
        }
        let code = loop {
            match waitpid(None, None) {
                Ok(WaitStatus::Exited(pid, code)) if pid == command => break code,
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => {
                    break 128 + sig as i32;
                }
                Err(Errno::ECHILD) => exit_now(127),
                _ => {}
            }
        };
        // Nothing the command started outlives it: kill every other process
        // of the namespace and reap them all (orphans are this process's
        // children), as the kernel would at this process's exit. Only then
        // tell the spawner, which answers flowc before the namespaces' own
        // teardown (this exit) has finished.
        // A process this one may not signal, or one stuck in the kernel, is
        // left to the kernel's kill at this exit (and the answer to the
        // reaping, as without the report) after at most about a second.
        let mut gone = false;
        for _ in 0..10_000 {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Err(Errno::ECHILD) => {
                    gone = true;
                    break;
                }
                Ok(WaitStatus::StillAlive) => {
                    std::thread::sleep(std::time::Duration::from_micros(100))
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        if let Some(fd) = self.done.filter(|_| gone) {
            // The wait status the spawner would read from this process's exit.
            let raw: i32 = (code & 0xff) << 8;
            let _ = nix::unistd::write(borrowed(fd), &raw.to_le_bytes());
        }
        exit_now(code)
    }

    /// Tries each candidate like `execvp`; returns the errno that explains the failure.
    fn exec(&self) -> i32 {
        let mut denied = false;
        let mut last = Errno::ENOENT;
        for path in self.candidates {
            let Err(e) = nix::unistd::execve(path, self.argv, self.envp);
            match e {
                Errno::ENOEXEC => {
                    // A script without `#!`: run it with sh, as execvp does.
                    let mut argv = vec![c"/bin/sh".to_owned(), path.clone()];
                    argv.extend(self.argv.iter().skip(1).cloned());
                    let Err(e) = nix::unistd::execve(c"/bin/sh", &argv, self.envp);
                    return e as i32;
                }
                Errno::EACCES => denied = true,
                Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG => {}
                other => return other as i32,
            }
            last = e;
        }
        if denied {
            Errno::EACCES as i32
        } else {
            last as i32
        }
    }
}

pub(super) fn raw_owned(fd: RawFd) -> OwnedFd {
    // SAFETY: used only for 0, 1 and 2 under ManuallyDrop (never closed through it).
    #[allow(unsafe_code)]
    unsafe {
        OwnedFd::from_raw_fd(fd)
    }
}

/// Ends a cloned child at once: no exit handlers of the spawner's copy run.
pub(super) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::_exit(code)
    }
}

pub(super) fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: every descriptor passed here stays open for the child's whole life.
    #[allow(unsafe_code)]
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(fd)
    }
}
