//! The step's mount namespace: the rest read-only around `writable`, flowc's state read-only, its secrets hidden, a /proc of its own.
//!
//! Built in the parent (paths as C strings), applied in the child before
//! Landlock (which forbids mounting) with syscalls only: the fork path runs
//! it between fork and exec, where nothing may allocate or lock.

use nix::errno::Errno;
use nix::libc;
use nix::mount::{MsFlags, mount};
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// What the step's mount namespace holds, as the plan and the spawner's request say it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct MountSpec {
    /// flowc's state, bound read-only over itself.
    pub protect: Vec<String>,
    /// Files hidden behind `/dev/null`.
    pub hide: Vec<String>,
    /// `Some`: everything is read-only but these trees (`fs_read_only`).
    pub writable: Option<Vec<String>>,
}

/// A [`MountSpec`] ready for the child.
#[derive(Debug)]
pub(super) struct Mounts {
    /// Left as they are on the host; parents only, outermost first.
    writable: Option<Vec<CString>>,
    /// The detached copies of `writable`, taken before `/` turns read-only.
    trees: Vec<AtomicI32>,
    protect: Vec<(CString, MsFlags)>,
    hide: Vec<CString>,
    /// The working directory, to enter again once the new mounts cover the old one.
    cwd: CString,
    /// Mount a /proc: only a process inside the new PID namespace can.
    proc: bool,
}

impl Mounts {
    /// Resolves `spec` now (each writable tree as it is at this attempt's
    /// start); `cwd` is made absolute against this process's directory.
    pub(super) fn new(spec: &MountSpec, cwd: Option<&str>, proc: bool) -> Result<Mounts, i32> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL as i32)
        };
        // A copy of `/` over `/` would not show (lookups start at the root
        // below it): everything writable leaves nothing to make read-only.
        let writable = match spec.writable.as_deref().map(outermost) {
            Some(trees) if !trees.iter().any(|t| t == Path::new("/")) => {
                Some(trees.iter().map(|p| c(p)).collect::<Result<_, _>>()?)
            }
            _ => None,
        };
        let here = std::env::current_dir().map_err(|e| e.raw_os_error().unwrap_or(0))?;
        Ok(Mounts {
            trees: (0..writable.as_ref().map_or(0, Vec::len))
                .map(|_| AtomicI32::new(-1))
                .collect(),
            writable,
            protect: protected(&spec.protect)?,
            hide: spec
                .hide
                .iter()
                .map(|p| c(Path::new(p)))
                .collect::<Result<_, _>>()?,
            cwd: c(&here.join(cwd.unwrap_or(".")))?,
            proc,
        })
    }

    /// In the step's new mount namespace: nothing propagates back to the
    /// host; with `writable`, every mount turns read-only and a copy of each
    /// writable tree taken before is attached over it; flowc's state is bound
    /// read-only over itself, its secrets hidden, and /proc mounted.
    pub(super) fn apply(&self) -> Result<(), Errno> {
        let none: Option<&str> = None;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)?;
        if let Some(writable) = &self.writable {
            for (path, slot) in writable.iter().zip(&self.trees) {
                slot.store(open_tree(path)?, Ordering::Relaxed);
            }
            set_read_only(c"/")?;
            for (path, slot) in writable.iter().zip(&self.trees) {
                let tree = slot.swap(-1, Ordering::Relaxed);
                let moved = move_mount(tree, path);
                let _ = nix::unistd::close(tree);
                moved?;
            }
        }
        for (path, kept) in &self.protect {
            let path = path.as_c_str();
            mount(
                Some(path),
                path,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            )?;
            read_only(path, *kept)?;
        }
        for path in &self.hide {
            let bind = MsFlags::MS_BIND;
            mount(Some("/dev/null"), path.as_c_str(), none, bind, none)?;
        }
        if self.proc {
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(Some("proc"), "/proc", Some("proc"), flags, none)?;
        }
        Ok(())
    }

    /// The working directory by its absolute path: entered again after
    /// [`Mounts::apply`], since the one held before is on the old mounts.
    pub(super) fn cwd(&self) -> &CStr {
        &self.cwd
    }
}

/// The existing trees of `paths`, resolved, without those inside another
/// (its copy holds them already), outermost first. A tree that does not
/// exist is left out: it stays read-only, as Landlock leaves it unwritable.
fn outermost(paths: &[String]) -> Vec<PathBuf> {
    let mut trees: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    trees.sort();
    trees.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for t in trees {
        if !out.iter().any(|o| t.starts_with(o)) {
            out.push(t);
        }
    }
    out
}

/// Makes the mount at `path` and every mount below it read-only (Linux 5.12+).
fn set_read_only(path: &CStr) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a plain syscall on a NUL-terminated path and a struct that
    // outlives it, of the size passed.
    #[allow(unsafe_code)]
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &raw const attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    Errno::result(set).map(drop)
}

/// [`set_read_only`], or before Linux 5.12 a read-only remount of the mount
/// at `path` alone, with `kept`: the flags a user namespace may not clear.
fn read_only(path: &CStr, kept: MsFlags) -> Result<(), Errno> {
    match set_read_only(path) {
        Err(Errno::ENOSYS) => {
            let none: Option<&str> = None;
            let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept;
            mount(none, path, none, ro, none)
        }
        done => done,
    }
}

/// A detached copy of the mounts at and below `path`, as they are now.
fn open_tree(path: &CStr) -> Result<RawFd, Errno> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as u32;
    // SAFETY: a plain syscall on a NUL-terminated path.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    Errno::result(fd).map(|fd| fd as RawFd)
}

/// Attaches the detached tree `tree` over `path`.
fn move_mount(tree: RawFd, path: &CStr) -> Result<(), Errno> {
    // SAFETY: a plain syscall on a descriptor of ours and NUL-terminated paths.
    #[allow(unsafe_code)]
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(moved).map(drop)
}

/// Whether `fs_read_only` works here: a forked child makes a mount
/// namespace (in a user namespace of its own with `user`), turns every mount
/// read-only and attaches a copy of `/` taken before, as a step's would.
/// Tried rather than inferred from the kernel's version: a seccomp filter or
/// a security module may refuse any of these calls.
pub(super) fn probe(user: bool) -> bool {
    let mut flags = nix::sched::CloneFlags::CLONE_NEWNS;
    if user {
        flags |= nix::sched::CloneFlags::CLONE_NEWUSER;
    }
    super::support::in_child(|| {
        let none: Option<&str> = None;
        let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        nix::sched::unshare(flags).is_ok()
            && mount(none, "/", none, private, none).is_ok()
            && open_tree(c"/")
                .is_ok_and(|tree| set_read_only(c"/").is_ok() && move_mount(tree, c"/").is_ok())
    })
}

/// The paths as C strings, each with the flags of the mount it is on that
/// a read-only remount must keep (a user namespace may not clear them).
fn protected(paths: &[String]) -> Result<Vec<(CString, MsFlags)>, i32> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    paths
        .iter()
        .map(|p| {
            let c = CString::new(p.as_bytes()).map_err(|_| Errno::EINVAL as i32)?;
            let mut kept = MsFlags::empty();
            if let Ok(st) = statvfs(p.as_str()) {
                let f = st.flags();
                for (s, m) in [
                    (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                    (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                    (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                    (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                    (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                    (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
                ] {
                    if f.contains(s) {
                        kept |= m;
                    }
                }
            }
            Ok((c, kept))
        })
        .collect()
}
