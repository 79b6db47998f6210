//! A step's command process between clone and exec: it sets up what the
//! request asks (descriptors, directory, rlimits, Landlock) and execs, or
//! reports why it could not on its error pipe. Cloned by the spawner for a
//! step without namespaces, by a namespace init (`init.rs`) otherwise.
//!
//! It shares the memory of its suspended parent (CLONE_VFORK) and never
//! returns into the parent's code.

use super::spawn::{STAGE_LANDLOCK, STAGE_RLIMIT, staged_raw};
use landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
use nix::unistd::Pid;
use std::ffi::{CStr, CString};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Everything the cloned child needs, prepared before the clone.
pub(super) struct Child<'a> {
    pub(super) stdin: RawFd,
    pub(super) stdout: RawFd,
    pub(super) stderr: RawFd,
    pub(super) err: RawFd,
    pub(super) foreign: &'a [RawFd],
    pub(super) cwd: Option<&'a CStr>,
    pub(super) rlimits: &'a [(nix::sys::resource::Resource, u64, u64)],
    pub(super) argv: &'a [CString],
    pub(super) envp: &'a [&'a CStr],
    pub(super) candidates: &'a [CString],
}

impl Child<'_> {
    /// Runs in the cloned child; returns only as the exit code.
    pub(super) fn run(&self, landlock: Option<RulesetCreated>) -> isize {
        let errno = match self.setup(landlock) {
            Ok(()) => self.exec(),
            Err(raw) => raw,
        };
        self.fail(errno)
    }

    pub(super) fn fail(&self, raw: i32) -> ! {
        let _ = nix::unistd::write(borrowed(self.err), &raw.to_le_bytes());
        exit_now(127)
    }

    fn setup(&self, landlock: Option<RulesetCreated>) -> Result<(), i32> {
        enter(None, self.foreign)?;
        self.confine(landlock)
    }

    /// The step's own descriptors, directory, rlimits and Landlock.
    fn confine(&self, landlock: Option<RulesetCreated>) -> Result<(), i32> {
        for (fd, target) in [(self.stdin, 0), (self.stdout, 1), (self.stderr, 2)] {
            let mut target = std::mem::ManuallyDrop::new(raw_owned(target));
            nix::unistd::dup2(borrowed(fd), &mut target).map_err(|e| e as i32)?;
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

/// What every cloned child does first: waits for its user namespace's id
/// maps, takes the default signal handling back, closes the spawner's
/// descriptors it must not keep and leads a process group of its own.
pub(super) fn enter(sync: Option<RawFd>, foreign: &[RawFd]) -> Result<(), i32> {
    if let Some(fd) = sync {
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
    for &fd in foreign {
        let _ = nix::unistd::close(fd);
    }
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(|e| e as i32)
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

/// A word written on an error pipe, or `None` at its end (the command
/// exec'd); a read error or a partial word is an errno too.
pub(super) fn read_word(fd: &OwnedFd) -> Option<i32> {
    let mut word = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match nix::unistd::read(fd, &mut word[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Some(e as i32),
        }
    }
    match got {
        0 => None,
        4 => Some(i32::from_le_bytes(word)),
        _ => Some(Errno::EIO as i32),
    }
}
