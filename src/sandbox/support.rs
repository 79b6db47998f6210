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
            .filter(|args| probe_unshare(args, Some("--net")))
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
fn probe_pid_ns(root: bool) -> (Option<Vec<String>>, String) {
    let base = ["--pid", "--fork", "--kill-child"];
    let mut candidates: Vec<Vec<&str>> = Vec::new();
    if root {
        candidates.push(base.to_vec());
    }
    // Without root, a user namespace grants the right to make a PID namespace
    // (the second form for util-linux before 2.38; flowc writes the maps
    // itself, always mapping the user to itself).
    candidates.push([&["--user", "--map-current-user"][..], &base].concat());
    candidates.push([&["--user", "--map-root-user"][..], &base].concat());
    for c in candidates {
        let args: Vec<String> = c.iter().map(|s| s.to_string()).collect();
        if probe_unshare(&args, None) {
            return (Some(args), String::new());
        }
    }
    let why = if Command::new("unshare")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        "`unshare` (util-linux) is not on PATH".to_string()
    } else {
        "`unshare --pid --fork` is not permitted here (no root, no user namespaces)".to_string()
    };
    (None, why)
}

fn probe_unshare(args: &[String], extra: Option<&str>) -> bool {
    Command::new("unshare")
        .args(args)
        .args(extra)
        .args(["--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
