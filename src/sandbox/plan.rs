//! The plan for one process: the effective limits, the layers that enforce them,
//! and what could not be enforced.

use super::support::Support;
use crate::ir::{Fallback, Sandbox};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

/// How one process is confined; built before it starts, recorded in the journal.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The effective limits (`memory`, `open_files`, `file_size` become rlimits as they are).
    pub sandbox: Sandbox,
    /// RLIMIT_CPU in whole seconds (rounded up).
    pub cpu_secs: Option<u64>,
    /// RLIMIT_NPROC (only where it binds).
    pub processes: Option<u64>,
    /// Landlock filesystem rules, when applied.
    pub landlock_fs: Option<FsRules>,
    /// Landlock denies TCP connect and bind.
    pub landlock_net: bool,
    /// `unshare` arguments that wrap the command (PID and maybe network namespace).
    pub unshare: Option<Vec<String>>,
    /// flowc's own state (the journal's directory, the secret store, the key
    /// file): bound read-only in the step's mount namespace, whatever
    /// `writable` says. Set by the executor ([`Plan::protect_state`]).
    pub protect: Vec<String>,
    /// Files of flowc's a step must not even read (the secret store, the key
    /// file): `/dev/null` is bound over each in the step's mount namespace.
    pub hide: Vec<String>,
    /// The process starts by forking flowc, not through the spawner ([`Plan::forked`]).
    pub forked: bool,
    /// Names of the layers applied.
    pub applied: Vec<&'static str>,
    /// Limits asked for that this machine cannot enforce (run anyway: `fallback: "weaker"`).
    pub missing: Vec<String>,
    /// The Landlock ruleset, built on first use and shared by the clones of
    /// this plan (each process gets a duplicate of its descriptor).
    pub ruleset: std::sync::Arc<std::sync::OnceLock<Result<landlock::RulesetCreated, String>>>,
    /// The rlimits applied in the child, built on first use and shared likewise.
    pub rlimits: std::sync::Arc<std::sync::OnceLock<Vec<(nix::sys::resource::Resource, u64, u64)>>>,
}

/// Absolute paths for Landlock.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FsRules {
    /// Writable (and readable) trees; `None` means writes are not restricted.
    pub writable: Option<Vec<PathBuf>>,
    /// Readable trees; `None` means everything.
    pub readable: Option<Vec<PathBuf>>,
}

/// What a plan lacks when its process does not start through the spawner.
const NO_OWN_PROC: &str = "a /proc of the step's own PID namespace (needs the spawner; this step starts by forking flowc)";

/// Device files every step may write: discarding output is not escaping the sandbox.
pub const DEVICE_WRITES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty"];

/// Trees every step may read when `readable` is set: without them no program starts.
pub const SYSTEM_READS: &[&str] = &[
    "/bin", "/sbin", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev", "/proc", "/sys",
];

/// `inner` narrowed by `outer` (the run's policy over a step's own limits).
pub fn narrow(inner: &Sandbox, outer: &Sandbox) -> Sandbox {
    let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let paths = |a: &Option<Vec<String>>, b: &Option<Vec<String>>| match (a, b) {
        (Some(a), Some(b)) => {
            let mut out: Vec<String> = Vec::new();
            let both = a
                .iter()
                .filter(|p| b.iter().any(|q| within(p, q)))
                .chain(b.iter().filter(|q| a.iter().any(|p| within(q, p))));
            for p in both {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            Some(out)
        }
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    let network = match (inner.network, outer.network) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (a, b) => a.or(b),
    };
    let mut written = outer.written.clone();
    written.extend(inner.written.iter().filter(|w| !outer.written.contains(w)));
    let fallback = match (inner.fallback, outer.fallback) {
        (Some(Fallback::Weaker), Some(Fallback::Weaker)) => Some(Fallback::Weaker),
        (None, f) | (f, None) => f,
        _ => Some(Fallback::Refuse),
    };
    Sandbox {
        network,
        memory: min(inner.memory, outer.memory),
        cpu_ms: min(inner.cpu_ms, outer.cpu_ms),
        processes: min(inner.processes, outer.processes),
        open_files: min(inner.open_files, outer.open_files),
        file_size: min(inner.file_size, outer.file_size),
        writable: paths(&inner.writable, &outer.writable),
        readable: paths(&inner.readable, &outer.readable),
        fallback,
        written,
    }
}

fn within(path: &str, tree: &str) -> bool {
    let (p, t) = (resolve(path), resolve(tree));
    p.starts_with(&t)
}

/// A sandbox path made absolute: `~` is the home directory, a relative path is
/// relative to the directory flowc runs in.
pub fn resolve(path: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    let p = if path == "~" {
        home().unwrap_or_else(|| PathBuf::from("/"))
    } else if let Some(rest) = path.strip_prefix("~/") {
        home().unwrap_or_else(|| PathBuf::from("/")).join(rest)
    } else {
        PathBuf::from(path)
    };
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    // Landlock follows the real tree, so symlinks are resolved where the path exists.
    std::fs::canonicalize(&p).unwrap_or_else(|_| clean(&p))
}

fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Why a step under `rules` could read the secret store's key file, if it
/// could. Only with `readable` set: without it Landlock allows every read,
/// and what stands between a step and the key file is that flowc does not
/// tell it the path (see `sandbox::env`).
fn key_file_exposed(rules: &FsRules) -> Option<String> {
    let var = crate::secrets::KEY_FILE_ENV;
    let file = std::env::var_os(var).filter(|v| !v.is_empty())?;
    let key = std::fs::canonicalize(&file).ok()?;
    let readable = rules.readable.as_ref()?;
    let system = SYSTEM_READS.iter().map(PathBuf::from);
    let trees = readable
        .iter()
        .cloned()
        .chain(rules.writable.iter().flatten().cloned())
        .chain(system);
    for tree in trees {
        if key.starts_with(&tree) {
            return Some(format!(
                "sandbox refused: the secrets key file `{}` (`{var}`) is inside `{}`, which the step may read; keep the key file outside the step's `readable` and `writable` paths and the system trees",
                key.display(),
                tree.display()
            ));
        }
    }
    None
}

impl Plan {
    /// The plan for `sandbox` on this machine, or a refusal naming the missing layers.
    pub fn new(sandbox: &Sandbox, support: &Support) -> Result<Plan, String> {
        let mut plan = Plan {
            sandbox: sandbox.clone(),
            ..Plan::default()
        };
        plan.applied.push("process_group");
        // What is missing: the fields it concerns, how to say it, the layer it needs.
        let mut missing: Vec<(&[&str], String, &'static str)> = Vec::new();
        // Resource limits are plain setrlimit calls: always there on Linux.
        plan.cpu_secs = sandbox.cpu_ms.map(|ms| ms.div_ceil(1000).max(1));
        if sandbox.memory.is_some()
            || sandbox.cpu_ms.is_some()
            || sandbox.open_files.is_some()
            || sandbox.file_size.is_some()
        {
            plan.applied.push("rlimits");
        }
        if let Some(n) = sandbox.processes {
            if support.has("rlimit_nproc") {
                plan.processes = Some(n);
                plan.applied.push("rlimit_nproc");
            } else {
                missing.push((&["processes"], format!("`processes: {n}`"), "rlimit_nproc"));
            }
        }
        if sandbox.writable.is_some() || sandbox.readable.is_some() {
            if support.has("landlock_fs") {
                plan.landlock_fs = Some(FsRules {
                    writable: sandbox
                        .writable
                        .as_ref()
                        .map(|w| w.iter().map(|p| resolve(p)).collect()),
                    readable: sandbox
                        .readable
                        .as_ref()
                        .map(|r| r.iter().map(|p| resolve(p)).collect()),
                });
                plan.applied.push("landlock_fs");
                if let Some(rules) = &plan.landlock_fs
                    && let Some(why) = key_file_exposed(rules)
                {
                    return Err(why);
                }
            } else {
                let what = if sandbox.readable.is_some() {
                    "`writable`/`readable`"
                } else {
                    "`writable`"
                };
                missing.push((&["writable", "readable"], what.to_string(), "landlock_fs"));
            }
        }
        if let Some(args) = &support.pid_ns {
            let mut args = args.clone();
            plan.applied.push("pid_namespace");
            if sandbox.network == Some(false)
                && let Some(net) = &support.net_ns
            {
                args.push(net.clone());
                plan.applied.push("net_namespace");
            }
            plan.unshare = Some(args);
        }
        plan.read_only_rest(support, &mut missing);
        if sandbox.network == Some(false) {
            if support.has("landlock_net") {
                plan.landlock_net = true;
                plan.applied.push("landlock_net");
            }
            if !plan.landlock_net && !plan.applied.contains(&"net_namespace") {
                missing.push((
                    &["network"],
                    "`network: false`".to_string(),
                    "landlock_net or net_namespace",
                ));
            }
        }
        if missing.is_empty() {
            return Ok(plan);
        }
        let written = |fields: &[&str]| fields.iter().any(|f| sandbox.written.contains(f));
        let refuse = sandbox.fallback != Some(Fallback::Weaker)
            && missing.iter().any(|(fields, ..)| written(fields));
        let refused_fields: Vec<&str> = missing
            .iter()
            .flat_map(|(fields, ..)| fields.iter().copied())
            .filter(|f| sandbox.written.contains(f))
            .collect();
        let what: Vec<String> = missing
            .iter()
            // A refusal names only what was written; the built-in limits never refuse.
            .filter(|(fields, ..)| !refuse || written(fields))
            .map(|(_, what, layer)| {
                let why = layer
                    .split(" or ")
                    .map(|l| support.detail(l))
                    .collect::<Vec<_>>()
                    .join("; ");
                format!("{what} needs `{layer}`, which this machine lacks ({why})")
            })
            .collect();
        if !refuse {
            plan.missing = what;
            return Ok(plan);
        }
        Err(format!(
            "sandbox refused: {}; `flowc doctor` lists what this machine supports, \
             and `best_effort: [{}]` (or `fallback: \"weaker\"` for every limit) in the policy's sandbox \
             runs the step with the layers available",
            what.join(", and "),
            refused_fields
                .iter()
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// What the journal records in the attempt's `running` event.
    pub fn record(&self) -> Json {
        let s = &self.sandbox;
        json!({
            "layers": self.applied,
            "missing": self.missing,
            "limits": {
                "network": s.network,
                "memory": s.memory,
                "cpu": s.cpu_ms,
                "processes": s.processes,
                "open_files": s.open_files,
                "file_size": s.file_size,
                "writable": s.writable,
                "readable": s.readable,
                "fallback": s.fallback.map(Fallback::word),
            },
        })
    }

    /// `fs_read_only` where Landlock restricts writes: Landlock's rights do
    /// not cover metadata (chmod, chown, utimes, xattrs), a read-only mount does.
    fn read_only_rest(
        &mut self,
        support: &Support,
        missing: &mut Vec<(&[&str], String, &'static str)>,
    ) {
        let Some(FsRules {
            writable: Some(trees),
            ..
        }) = &self.landlock_fs
        else {
            return;
        };
        if trees.iter().any(|t| t == Path::new("/")) {
            return;
        }
        if support.has("fs_read_only") {
            self.applied.push("fs_read_only");
        } else {
            let what = "`writable` for metadata (chmod, chown, utimes, xattrs)".to_string();
            missing.push((&["writable"], what, "fs_read_only"));
        }
    }

    /// Keeps `paths` (existing ones; absolute) read-only for the step, and
    /// gives it a /proc of its own PID namespace. Both ride on the namespace
    /// init's mount namespace, so they need a PID namespace.
    pub fn protect_state(&mut self, paths: &[std::path::PathBuf], hide: &[std::path::PathBuf]) {
        if self.unshare.is_none() {
            self.missing
                .push("flowc's state read-only (needs the PID namespace)".into());
            return;
        }
        let mut protect: Vec<String> = paths
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .map(|p| p.display().to_string())
            .collect();
        protect.sort();
        protect.dedup();
        self.protect = protect;
        self.hide = hide
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        // Both ways of starting a step make the mount namespace (the fork in
        // a user namespace of its own without root); only the spawner's
        // namespace init, inside the PID namespace, can mount its /proc.
        self.applied.push("state_read_only");
        if super::spawner::spawner_started() {
            self.applied.push("own_proc");
        } else {
            self.missing.push(NO_OWN_PROC.into());
        }
    }

    /// This plan's process starts by forking flowc (its request is too
    /// large for the spawner, or the spawner is gone): no /proc of its own.
    pub fn forked(&mut self) {
        if std::mem::replace(&mut self.forked, true) {
            return;
        }
        if let Some(i) = self.applied.iter().position(|l| *l == "own_proc") {
            self.applied.remove(i);
            self.missing.push(NO_OWN_PROC.into());
        }
    }

    /// The step's mount namespace, when it has one.
    pub(super) fn mounts(&self) -> Option<super::mounts::MountSpec> {
        let state = self.has("state_read_only");
        let rest = self.has("fs_read_only");
        if self.unshare.is_none() || !(state || rest) {
            return None;
        }
        let strings = |ps: &[PathBuf]| ps.iter().map(|p| p.display().to_string()).collect();
        Some(super::mounts::MountSpec {
            protect: if state {
                self.protect.clone()
            } else {
                Vec::new()
            },
            hide: if state { self.hide.clone() } else { Vec::new() },
            writable: self
                .landlock_fs
                .as_ref()
                .and_then(|fs| fs.writable.as_deref())
                .filter(|_| rest)
                .map(strings),
        })
    }

    /// Whether a layer was applied.
    pub fn has(&self, layer: &str) -> bool {
        self.applied.contains(&layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Layer;

    /// A machine with every layer but `rlimit_nproc` and the namespaces.
    fn root_machine() -> Support {
        let layer = |name, available| Layer {
            name,
            available,
            detail: format!("{name} detail"),
        };
        Support {
            layers: vec![
                layer("rlimits", true),
                layer("rlimit_nproc", false),
                layer("landlock_fs", true),
                layer("landlock_net", true),
            ],
            landlock_abi: 4,
            pid_ns: None,
            net_ns: None,
        }
    }

    fn sandbox(processes: u64, written: &[&'static str], fallback: Option<Fallback>) -> Sandbox {
        Sandbox {
            processes: Some(processes),
            written: written.to_vec(),
            fallback,
            ..Sandbox::default()
        }
    }

    #[test]
    fn narrowing_keeps_the_tighter_of_each_limit() {
        let step = Sandbox {
            memory: Some(10),
            network: Some(true),
            fallback: Some(Fallback::Weaker),
            written: vec!["memory"],
            ..Sandbox::default()
        };
        let run = Sandbox {
            memory: Some(20),
            cpu_ms: Some(5),
            network: Some(false),
            written: vec!["network"],
            ..Sandbox::default()
        };
        let n = narrow(&step, &run);
        assert_eq!(n.memory, Some(10));
        assert_eq!(n.cpu_ms, Some(5));
        assert_eq!(n.network, Some(false));
        assert_eq!(n.fallback, Some(Fallback::Weaker));
        assert_eq!(n.written, vec!["network", "memory"]);
    }

    #[test]
    fn only_written_limits_are_refused() {
        let m = root_machine();
        let refused = Plan::new(&sandbox(64, &["processes"], None), &m).unwrap_err();
        assert!(refused.starts_with("sandbox refused: `processes: 64` needs `rlimit_nproc`"));
        let inherited = Plan::new(&sandbox(512, &[], None), &m).unwrap();
        assert_eq!(inherited.processes, None);
        assert_eq!(inherited.missing.len(), 1);
        let weaker = Plan::new(&sandbox(64, &["processes"], Some(Fallback::Weaker)), &m).unwrap();
        assert!(weaker.missing[0].contains("rlimit_nproc"));
    }

    #[test]
    fn a_written_writable_needs_the_rest_read_only() {
        let confined = |writable: &str, written: &[&'static str]| Sandbox {
            writable: Some(vec![writable.to_string()]),
            written: written.to_vec(),
            ..Sandbox::default()
        };
        let m = root_machine();
        let refused = Plan::new(&confined("out", &["writable"]), &m).unwrap_err();
        assert!(refused.contains("needs `fs_read_only`"), "{refused}");
        let inherited = Plan::new(&confined("out", &[]), &m).unwrap();
        assert!(inherited.has("landlock_fs") && !inherited.has("fs_read_only"));
        assert!(inherited.missing[0].contains("`fs_read_only`"));
        // Everything writable: nothing to make read-only, nothing missing.
        let everything = Plan::new(&confined("/", &["writable"]), &m).unwrap();
        assert!(everything.missing.is_empty());
        let mut full = m.clone();
        full.layers.push(Layer {
            name: "fs_read_only",
            available: true,
            detail: String::new(),
        });
        let applied = Plan::new(&confined("out", &["writable"]), &full).unwrap();
        assert!(applied.has("fs_read_only") && applied.missing.is_empty());
    }

    #[test]
    fn a_forked_start_has_no_own_proc() {
        let mut plan = Plan {
            applied: vec!["process_group", "state_read_only", "own_proc"],
            ..Plan::default()
        };
        plan.forked();
        plan.forked();
        assert!(plan.forked && !plan.has("own_proc") && plan.has("state_read_only"));
        assert_eq!(plan.missing, vec![NO_OWN_PROC.to_string()]);
    }

    #[test]
    fn network_off_uses_landlock_without_namespaces() {
        let off = Sandbox {
            network: Some(false),
            written: vec!["network"],
            ..Sandbox::default()
        };
        let plan = Plan::new(&off, &root_machine()).unwrap();
        assert!(plan.landlock_net && plan.unshare.is_none());
        assert!(plan.has("landlock_net") && !plan.has("net_namespace"));
    }
}
