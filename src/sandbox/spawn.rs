//! The fallback start of a process inside its plan (flowc forks itself): the
//! `unshare --fork` wrapper around the command, the namespaces and the
//! Landlock ruleset built in the parent, and the few syscalls made in the child. The rlimit values, the
//! ruleset and the stage codes are shared with the spawner.

use super::mounts::Mounts;
use super::plan::{DEVICE_WRITES, FsRules, Plan, SYSTEM_READS};
use super::spawner::Namespaces;
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr,
};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::path::Path;

/// The PID 1 of a step's namespace: it runs the command as its child, so the
/// command keeps ordinary signal handling (PID 1 ignores signals it has no
/// handler for), and its exit ends the namespace and everything left in it.
const INIT: &str = "exec 3<&0; \"$@\" <&3 3<&- & wait $!";

/// Raw OS errors returned from the child carry the failed stage above this bit.
const STAGE_SHIFT: i32 = 16;
pub(super) const STAGE_RLIMIT: i32 = 1;
pub(super) const STAGE_LANDLOCK: i32 = 2;
pub(super) const STAGE_UNSHARE: i32 = 3;
const STAGE_PDEATHSIG: i32 = 4;
pub(super) const STAGE_MOUNT: i32 = 5;

/// What the child does between fork and exec, prepared in the parent.
#[derive(Debug)]
pub struct ChildSetup {
    rlimits: Vec<(Resource, u64, u64)>,
    landlock: Option<RulesetCreated>,
    /// The step's namespaces, made by the child itself.
    enter: Option<Enter>,
}

/// The command line to run and the child's setup.
#[derive(Debug)]
pub struct Prepared {
    /// The argv to execute (the command, maybe wrapped by `unshare`).
    pub argv: Vec<String>,
    /// Limits applied in the child.
    pub setup: ChildSetup,
}

/// Builds everything the child needs, so the child itself only makes syscalls.
pub fn prepare(
    argv: &[String],
    cwd: Option<&str>,
    path_var: Option<&str>,
    plan: &Plan,
) -> Result<Prepared, String> {
    let Some(program) = argv.first() else {
        return Err("`argv` is empty".into());
    };
    let failed = |e: i32| {
        let e = std::io::Error::from_raw_os_error(e);
        format!("sandbox setup failed: {e}")
    };
    let (argv, enter) = match &plan.unshare {
        Some(_) => {
            // The wrapper would turn "not found" into exit code 127: say it as before.
            if !program_exists(program, cwd, path_var) {
                return Err(format!(
                    "cannot start `{program}`: {}",
                    std::io::Error::from_raw_os_error(nix::errno::Errno::ENOENT as i32)
                ));
            }
            // The child enters the namespaces itself (see `Enter`); `unshare
            // --fork` only forks `sh` into the PID namespace as its PID 1, and
            // the command is its child: the command keeps ordinary signal
            // handling, and the namespace ends with it. (The spawner does the
            // same with two clones and no program starts.)
            let mut wrapped = ["unshare", "--fork", "--kill-child", "--"]
                .map(String::from)
                .to_vec();
            wrapped.extend(["/bin/sh", "-c", INIT, "flowc-init"].map(String::from));
            wrapped.extend(argv.iter().cloned());
            let enter = Enter::new(plan, cwd).map_err(failed)?;
            (wrapped, Some(enter))
        }
        None => (argv.to_vec(), None),
    };
    let landlock = match (&plan.landlock_fs, plan.landlock_net) {
        (None, false) => None,
        (fs, net) => {
            let shared = plan.ruleset.get_or_init(|| {
                ruleset(fs.as_ref(), net)
                    .map_err(|e| format!("sandbox setup failed: Landlock ruleset: {e}"))
            });
            let created = shared.as_ref().map_err(Clone::clone)?;
            Some(
                created
                    .try_clone()
                    .map_err(|e| format!("sandbox setup failed: Landlock ruleset: {e}"))?,
            )
        }
    };
    Ok(Prepared {
        argv,
        setup: ChildSetup {
            rlimits: rlimits(plan).to_vec(),
            landlock,
            enter,
        },
    })
}

/// The namespaces of a step started by the fallback, which its child makes
/// with `unshare(2)` before exec: the PID namespace (for the children of
/// `unshare --fork`), the network namespace, and the mount namespace with
/// its mounts. Without root they come with a user namespace whose id maps
/// the child writes itself, as `unshare --map-current-user` would; so the
/// fork can mount without root, as the spawner's clone does.
#[derive(Debug)]
struct Enter {
    flags: nix::sched::CloneFlags,
    /// `/proc/self` files and what to write in each, in this order.
    maps: Vec<(&'static std::ffi::CStr, std::ffi::CString)>,
    mounts: Option<Mounts>,
}

impl Enter {
    fn new(plan: &Plan, cwd: Option<&str>) -> Result<Enter, i32> {
        use nix::sched::CloneFlags;
        let ns = Namespaces::of(plan);
        let mut flags = CloneFlags::CLONE_NEWPID;
        if ns.net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let mut maps = Vec::new();
        if ns.user {
            flags |= CloneFlags::CLONE_NEWUSER;
            // The user as itself, as the spawner maps it (see `write_id_maps`).
            let line = |id: u32| std::ffi::CString::new(format!("{id} {id} 1"));
            let bad = |_| nix::errno::Errno::EINVAL as i32;
            let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
            maps.push((c"/proc/self/setgroups", c"deny".to_owned()));
            maps.push((c"/proc/self/uid_map", line(uid.as_raw()).map_err(bad)?));
            maps.push((c"/proc/self/gid_map", line(gid.as_raw()).map_err(bad)?));
        }
        let mounts = match plan.mounts() {
            Some(spec) => {
                flags |= CloneFlags::CLONE_NEWNS;
                // Its /proc would show flowc's PID namespace: only a process
                // inside the new one can mount the step's, after Landlock.
                Some(Mounts::new(&spec, cwd, false)?)
            }
            None => None,
        };
        Ok(Enter {
            flags,
            maps,
            mounts,
        })
    }

    /// In the child: syscalls on what `new` built. Errors are staged.
    fn enter(&self) -> std::io::Result<()> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        let unshared = |e: nix::errno::Errno| staged(STAGE_UNSHARE, e as i32);
        nix::sched::unshare(self.flags).map_err(unshared)?;
        // The maps first: /proc is read-only once the mounts are made.
        for (file, line) in &self.maps {
            let fd =
                open(*file, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(unshared)?;
            nix::unistd::write(&fd, line.as_bytes()).map_err(unshared)?;
        }
        if let Some(mounts) = &self.mounts {
            mounts.apply().map_err(|e| staged(STAGE_MOUNT, e as i32))?;
            nix::unistd::chdir(mounts.cwd())?;
        }
        Ok(())
    }
}

/// Installs the child's setup on `cmd` (the environment flowc keeps from
/// steps is dropped, and the child dies with flowc, with or without a plan).
pub fn install(cmd: &mut tokio::process::Command, setup: Option<ChildSetup>) {
    let explicit: Vec<(String, String)> = cmd
        .as_std()
        .get_envs()
        .filter_map(|(k, _)| Some((k.to_str()?.to_string(), String::new())))
        .collect();
    for name in super::env::hidden(&explicit) {
        cmd.env_remove(name);
    }
    let (rlimits, mut landlock, enter) = match setup {
        Some(ChildSetup {
            rlimits,
            landlock,
            enter,
        }) => (rlimits, landlock, enter),
        None => (Vec::new(), None, None),
    };
    let parent = nix::unistd::getpid();
    let child = move || -> std::io::Result<()> {
        if let Some(enter) = &enter {
            // Before Landlock, which forbids changing mounts.
            enter.enter()?;
        }
        // The spawner kills what it started when flowc goes away; here the
        // kernel does: SIGKILL when the thread that forked ends, which is the
        // runtime's only thread (it lives as long as the run). Set after the
        // namespaces, since a change of credentials may clear it. With a PID
        // namespace the child is `unshare --kill-child`, whose death kills the
        // namespace's init and so everything in it.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| staged(STAGE_PDEATHSIG, e as i32))?;
        if nix::unistd::getppid() != parent {
            // flowc died before the line above: nothing may start.
            return Err(staged(STAGE_PDEATHSIG, nix::errno::Errno::ESRCH as i32));
        }
        for &(resource, soft, hard) in &rlimits {
            setrlimit(resource, soft, hard).map_err(|e| staged(STAGE_RLIMIT, e as i32))?;
        }
        if let Some(ruleset) = landlock.take() {
            ruleset.restrict_self().map_err(|_| {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                staged(STAGE_LANDLOCK, errno)
            })?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed (the parent may have other threads, e.g.
    // tokio's blocking pool, holding the allocator's locks). Everything it uses was
    // built in the parent: it makes syscalls on ready strings and slices (unshare,
    // open/write/close of the id maps, the mounts of `Mounts::apply`, chdir,
    // prctl, getppid, setrlimit, landlock_restrict_self), closes the ruleset fd,
    // and builds an io::Error from a raw errno; none of these allocate or take locks.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(child);
    }
}

fn staged(stage: i32, errno: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(staged_raw(stage, errno))
}

/// A raw errno with the stage of the child's setup that failed.
pub(super) fn staged_raw(stage: i32, errno: i32) -> i32 {
    (stage << STAGE_SHIFT) | (errno & 0xffff)
}

/// The message for a spawn error that came from the child's setup, if it did.
pub fn setup_error(e: &std::io::Error) -> Option<String> {
    let raw = e.raw_os_error()?;
    let stage = raw >> STAGE_SHIFT;
    let errno = std::io::Error::from_raw_os_error(raw & 0xffff);
    let what = match stage {
        STAGE_RLIMIT => "setrlimit",
        STAGE_LANDLOCK => "Landlock restrict_self",
        STAGE_UNSHARE => "unshare (PID/network/user namespace)",
        STAGE_PDEATHSIG => "parent-death signal",
        STAGE_MOUNT => {
            "mount namespace (the rest read-only around `writable`, flowc's state read-only, a fresh /proc)"
        }
        _ => return None,
    };
    Some(format!("sandbox setup failed: {what}: {errno}"))
}

/// The rlimits of `plan`, computed once per step definition (each reads the
/// current hard limit) and shared by the clones of the plan.
pub(super) fn rlimits(plan: &Plan) -> &[(Resource, u64, u64)] {
    plan.rlimits.get_or_init(|| compute_rlimits(plan))
}

fn compute_rlimits(plan: &Plan) -> Vec<(Resource, u64, u64)> {
    let mut out = Vec::new();
    let mut add = |r: Resource, soft: Option<u64>, hard: Option<u64>| {
        let (Some(soft), Some(hard)) = (soft, hard) else {
            return;
        };
        // Only lowering is always allowed: never ask for more than the current hard limit.
        let cur = getrlimit(r).map_or(u64::MAX, |(_, h)| h);
        out.push((r, soft.min(cur), hard.min(cur)));
    };
    let s = &plan.sandbox;
    add(Resource::RLIMIT_DATA, s.memory, s.memory);
    // SIGXCPU at the limit, SIGKILL a second later for a process that catches it.
    add(
        Resource::RLIMIT_CPU,
        plan.cpu_secs,
        plan.cpu_secs.map(|s| s + 1),
    );
    add(Resource::RLIMIT_NOFILE, s.open_files, s.open_files);
    add(Resource::RLIMIT_FSIZE, s.file_size, s.file_size);
    add(Resource::RLIMIT_NPROC, plan.processes, plan.processes);
    out
}

/// Landlock's filesystem rights are those of ABI 4 (no ioctl rules): enough for
/// reads, writes, truncation and renames without breaking terminal ioctls.
const FS_ABI: ABI = ABI::V4;

pub(super) fn ruleset(
    fs: Option<&FsRules>,
    net: bool,
) -> Result<RulesetCreated, landlock::RulesetError> {
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if fs.is_some() {
        ruleset = ruleset.handle_access(AccessFs::from_all(FS_ABI))?;
    }
    if net {
        // No port rule is added: every TCP connect and bind is denied.
        ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4))?;
    }
    let mut created = ruleset.create()?;
    let Some(fs) = fs else {
        return Ok(created);
    };
    let read = AccessFs::from_read(FS_ABI);
    let all = AccessFs::from_all(FS_ABI);
    match &fs.readable {
        None => created = rule(created, Path::new("/"), read)?,
        Some(trees) => {
            for p in trees
                .iter()
                .map(|p| p.as_path())
                .chain(SYSTEM_READS.iter().map(Path::new))
            {
                created = rule(created, p, read)?;
            }
        }
    }
    match &fs.writable {
        None => created = rule(created, Path::new("/"), AccessFs::from_write(FS_ABI) | read)?,
        Some(trees) => {
            for p in trees {
                created = rule(created, p, all)?;
            }
        }
    }
    for p in DEVICE_WRITES {
        created = rule(created, Path::new(p), all)?;
    }
    Ok(created)
}

/// Adds a rule for `path` if it exists; a file gets only the rights files have.
fn rule(
    created: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<RulesetCreated, landlock::RulesetError> {
    let Ok(meta) = std::fs::metadata(path) else {
        // A tree that does not exist cannot be written or read; nothing to allow.
        return Ok(created);
    };
    let access = if meta.is_dir() {
        access
    } else {
        access & AccessFs::from_file(FS_ABI)
    };
    let Ok(fd) = PathFd::new(path) else {
        return Ok(created);
    };
    created.add_rule(PathBeneath::new(fd, access))
}

pub(super) fn program_exists(program: &str, cwd: Option<&str>, path_var: Option<&str>) -> bool {
    if program.contains('/') {
        return Path::new(cwd.unwrap_or(".")).join(program).exists();
    }
    let path = path_var
        .map(String::from)
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}
