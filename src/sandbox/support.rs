//! What this machine can enforce: each sandbox layer, probed once per process.

use landlock::{ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr};
use serde_json::{Value as Json, json};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// One layer and whether it works here.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its stable name (`rlimits`, `landlock_fs`, …).
    pub name: &'static str,
    /// It can be applied on this machine.
    pub available: bool,
    /// How it is applied, or why it cannot be.
    pub detail: String,
}

/// The layers this machine supports.
#[derive(Debug, Clone)]
pub struct Support {
    /// Every layer, in the order they are applied.
    pub layers: Vec<Layer>,
    /// The highest Landlock ABI whose access rights were verified (0: none; at most 5).
    pub landlock_abi: i32,
    /// The `unshare` wrapper arguments that make a PID namespace, when it works.
    pub pid_ns: Option<Vec<String>>,
    /// The extra `unshare` argument for a network namespace, when it works.
    pub net_ns: Option<String>,
}

impl Support {
    /// The probed support of this machine (probes run once per process).
    pub fn get() -> &'static Support {
        static SUPPORT: OnceLock<Support> = OnceLock::new();
        SUPPORT.get_or_init(Support::probe)
    }

    /// Whether the layer `name` is available.
    pub fn has(&self, name: &str) -> bool {
        self.layers.iter().any(|l| l.name == name && l.available)
    }

    /// The detail of layer `name`, for refusals.
    pub fn detail(&self, name: &str) -> &str {
        self.layers
            .iter()
            .find(|l| l.name == name)
            .map_or("unknown layer", |l| l.detail.as_str())
    }

    /// `flowc doctor --json`.
    pub fn to_json(&self) -> Json {
        json!({
            "landlock_abi_at_least": self.landlock_abi,
            "layers": self.layers.iter().map(|l| json!({
                "name": l.name,
                "available": l.available,
                "detail": l.detail,
            })).collect::<Vec<_>>(),
        })
    }

    fn probe() -> Support {
        let abi = landlock_abi();
        let root = real_uid() == Some(0);
        let privileged = root || has_resource_caps();
        let (pid_ns, pid_why) = probe_pid_ns(root);
        let net_ns = pid_ns
            .as_ref()
            .filter(|args| probe_net_ns(args))
            .map(|_| "--net".to_string());
        let user = pid_ns
            .as_ref()
            .is_some_and(|a| a.iter().any(|x| x == "--user"));
        let fs_read_only = pid_ns.is_some() && super::mounts::probe(user);
        let unshare_cmd = |args: &[String]| format!("`unshare {}`", args.join(" "));
        let layers = vec![
            Layer {
                name: "process_group",
                available: true,
                detail: "each step runs in its own process group; a timeout kills the group".into(),
            },
            Layer {
                name: "rlimits",
                available: true,
                detail: "setrlimit in the child: RLIMIT_DATA (memory), RLIMIT_CPU, RLIMIT_NOFILE, RLIMIT_FSIZE".into(),
            },
            Layer {
                name: "rlimit_nproc",
                available: !privileged,
                detail: if privileged {
                    "RLIMIT_NPROC does not bind root or a process with CAP_SYS_RESOURCE/CAP_SYS_ADMIN, \
                     so `processes` cannot be enforced"
                        .into()
                } else {
                    "RLIMIT_NPROC, counted over all processes of this user".into()
                },
            },
            Layer {
                name: "landlock_fs",
                available: abi >= 1,
                detail: if abi >= 1 {
                    format!("Landlock (ABI {abi} or later): `writable` and `readable` are enforced by the kernel")
                } else {
                    "the kernel has no Landlock (needs Linux 5.13+ with `landlock` in the LSM list)".into()
                },
            },
            Layer {
                name: "landlock_net",
                available: abi >= 4,
                detail: if abi >= 4 {
                    format!("Landlock (ABI {abi} or later): TCP connect and bind are denied when `network: false`")
                } else {
                    format!("Landlock ABI {abi}: TCP rules need ABI 4 (Linux 6.7+)")
                },
            },
            Layer {
                name: "pid_namespace",
                available: pid_ns.is_some(),
                detail: match &pid_ns {
                    Some(args) => format!(
                        "{}: every process of a step dies with it, daemons included",
                        unshare_cmd(args)
                    ),
                    None => pid_why,
                },
            },
            Layer {
                name: "net_namespace",
                available: net_ns.is_some(),
                detail: match (&pid_ns, &net_ns) {
                    (Some(args), Some(net)) => format!(
                        "{} {net}: no network interface but a down loopback when `network: false`",
                        unshare_cmd(args)
                    ),
                    (Some(_), None) => "`unshare --net` failed".into(),
                    (None, _) => "needs the PID namespace wrapper (`unshare`)".into(),
                },
            },
            Layer {
                name: "fs_read_only",
                available: fs_read_only,
                detail: if fs_read_only {
                    "in the step's mount namespace every mount is read-only but the `writable` trees: \
                     chmod, chown, utimes and xattrs fail outside them too"
                        .into()
                } else if pid_ns.is_some() {
                    "a mount namespace whose mounts turn read-only (`mount_setattr`, `open_tree`, \
                     `move_mount`: Linux 5.12+) failed here"
                        .into()
                } else {
                    "needs the PID namespace (root, or user namespaces) for the step's mount namespace"
                        .into()
                },
            },
        ];
        Support {
            layers,
            landlock_abi: abi,
            pid_ns,
            net_ns,
        }
    }
}

/// The highest Landlock ABI (up to 5, the last to add access rights flowc uses or
/// could use) whose rights the kernel accepts, found by asking for each one strictly.
fn landlock_abi() -> i32 {
    (1..=5)
        .rev()
        .find(|&n| {
            let abi = ABI::from(n);
            let ruleset = Ruleset::default()
                .set_compatibility(CompatLevel::HardRequirement)
                .handle_access(AccessFs::from_all(abi));
            let ruleset = if n >= 4 {
                ruleset.and_then(|r| r.handle_access(AccessNet::from_all(abi)))
            } else {
                ruleset
            };
            ruleset.and_then(Ruleset::create).is_ok()
        })
        .unwrap_or(0)
}

/// The real uid, from `/proc/self/status` (RLIMIT_NPROC is counted per real uid).
fn real_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CAP_SYS_ADMIN (21) or CAP_SYS_RESOURCE (24) in the effective set: RLIMIT_NPROC is then ignored.
fn has_resource_caps() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & ((1 << 21) | (1 << 24)) != 0)
}

/// The `unshare` arguments that work here for a PID namespace, or why none do.
///
/// Probed with the namespace syscalls themselves (a forked child unshares
/// and forks the namespace's first process), not by running `unshare … true`:
/// that started four processes and two programs on every run, about a sixth
/// of a one-step run. The `unshare` program must still be on
/// PATH, since a step the spawner cannot take is started through it.
fn probe_pid_ns(root: bool) -> (Option<Vec<String>>, String) {
    if !super::spawn::program_exists("unshare", None, None) {
        return (None, "`unshare` (util-linux) is not on PATH".to_string());
    }
    let base = ["--pid", "--fork", "--kill-child"];
    let args = if root && probe_namespaces(false, false) {
        base.to_vec()
    } else if probe_namespaces(true, false) {
        // Without root, a user namespace grants the right to make a PID
        // namespace (the second form for util-linux before 2.38; the spawner
        // writes the maps itself, always mapping the user to itself).
        let map = if maps_current_user() {
            "--map-current-user"
        } else {
            "--map-root-user"
        };
        [&["--user", map][..], &base].concat()
    } else {
        return (
            None,
            "`unshare --pid --fork` is not permitted here (no root, no user namespaces)"
                .to_string(),
        );
    };
    (
        Some(args.iter().map(|s| s.to_string()).collect()),
        String::new(),
    )
}

/// Whether a network namespace can be made beside the PID namespace of `args`.
fn probe_net_ns(args: &[String]) -> bool {
    probe_namespaces(args.iter().any(|a| a == "--user"), true)
}

/// Whether a child can unshare a PID namespace (in a user namespace of its
/// own with `user`, with a network namespace with `net`) and start the
/// namespace's first process in it.
fn probe_namespaces(user: bool, net: bool) -> bool {
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::CLONE_NEWPID;
    if user {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    in_child(|| nix::sched::unshare(flags).is_ok() && in_child(|| true))
}

/// Whether `check` holds when run in a forked child (which exits with it).
/// `check` may only make syscalls: no allocation and no locks, since this
/// process may have other threads.
pub(super) fn in_child(check: impl FnOnce() -> bool) -> bool {
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::ForkResult;
    // SAFETY: the child runs only `check` (syscalls, by its contract) and
    // ends with `_exit`.
    #[allow(unsafe_code)]
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let works = check();
            // SAFETY: `_exit` only ends the process.
            unsafe { nix::libc::_exit(if works { 0 } else { 1 }) }
        }
        Ok(ForkResult::Parent { child }) => {
            matches!(waitpid(child, None), Ok(WaitStatus::Exited(_, 0)))
        }
        Err(_) => false,
    }
}

/// Whether this `unshare` knows `--map-current-user` (util-linux 2.38 and
/// later; asked only without root, where the fallback path needs the form).
fn maps_current_user() -> bool {
    let Ok(out) = Command::new("unshare")
        .arg("--help")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    String::from_utf8_lossy(&out.stdout).contains("--map-current-user")
}
