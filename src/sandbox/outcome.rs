//! How a sandboxed process ended, in words the journal keeps.
//!
//! Signals are certain; limits hit through a failing system call (memory,
//! processes, a denied write or connect) are inferred from the exit status and
//! the usual messages on stderr, because the kernel does not tell the parent.

use super::plan::Plan;
use serde_json::{Value as Json, json};

/// The classified end of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `exit`, `signal`, `timeout`, `cpu_limit`, `memory_limit`,
    /// `file_size_limit`, `process_limit` or `denied`.
    pub kind: &'static str,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// One line for people.
    pub detail: String,
}

/// How the process stopped, as the caller saw it.
#[derive(Debug, Clone, Copy)]
pub enum Ended {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// flowc killed it when its timeout passed.
    Timeout,
}

const SIGKILL: i32 = 9;
const SIGXCPU: i32 = 24;
const SIGXFSZ: i32 = 25;

const MEMORY: &[&str] = &[
    "Cannot allocate memory",
    "Out of memory",
    "out of memory",
    "MemoryError",
    "memory allocation of",
    "bad_alloc",
    "failed to allocate",
];
const PROCESSES: &[&str] = &[
    "Resource temporarily unavailable",
    "Cannot fork",
    "can't fork",
    "fork: retry",
    "fork failed",
];
const DENIED: &[&str] = &[
    "Permission denied",
    // Outside `writable` the mount is read-only (`fs_read_only`), which the
    // kernel checks before Landlock when a file is created or changed.
    "Read-only file system",
    "Operation not permitted",
    "Network is unreachable",
];

impl Outcome {
    /// Classifies an ended process under `plan`, given its stderr and wall time.
    pub fn classify(plan: Option<&Plan>, ended: Ended, stderr: &str, wall_ms: u64) -> Outcome {
        let said = |words: &[&'static str]| words.iter().find(|w| stderr.contains(**w)).copied();
        let outcome = |kind, signal, detail: String| Outcome {
            kind,
            signal,
            detail,
        };
        let (code, signal) = match ended {
            Ended::Timeout => {
                return outcome(
                    "timeout",
                    Some(SIGKILL),
                    "killed when its timeout passed".into(),
                );
            }
            Ended::Signal(s) => (128 + s, Some(s)),
            // A shell (or the namespace's init) reports a signal as 128 + its number.
            Ended::Code(c) if plan.is_some() && (129..=192).contains(&c) => (c, Some(c - 128)),
            Ended::Code(c) => (c, None),
        };
        let Some(plan) = plan else {
            return plain(code, signal);
        };
        if let Some(secs) = plan.cpu_secs
            && (signal == Some(SIGXCPU) || (signal == Some(SIGKILL) && wall_ms >= secs * 1000))
        {
            return outcome(
                "cpu_limit",
                signal,
                format!("CPU time limit ({secs}s) reached"),
            );
        }
        if let Some(limit) = plan.sandbox.file_size
            && signal == Some(SIGXFSZ)
        {
            return outcome(
                "file_size_limit",
                signal,
                format!("file size limit ({limit} bytes) reached"),
            );
        }
        if code == 0 {
            return plain(code, signal);
        }
        if let (Some(limit), Some(word)) = (plan.sandbox.memory, said(MEMORY)) {
            return outcome(
                "memory_limit",
                signal,
                format!("memory limit ({limit} bytes) reached: stderr says `{word}`"),
            );
        }
        if let (Some(limit), Some(word)) = (plan.processes, said(PROCESSES)) {
            return outcome(
                "process_limit",
                signal,
                format!("process limit ({limit}) reached: stderr says `{word}`"),
            );
        }
        let confined = plan.landlock_fs.is_some() || plan.landlock_net || plan.has("net_namespace");
        if confined && let Some(word) = said(DENIED) {
            return outcome(
                "denied",
                signal,
                format!("the sandbox likely denied an access: stderr says `{word}`"),
            );
        }
        plain(code, signal)
    }

    /// The fields added to the attempt's `output` event.
    pub fn record(&self) -> Json {
        json!({ "outcome": self.kind, "signal": self.signal, "outcome_detail": self.detail })
    }
}

fn plain(code: i32, signal: Option<i32>) -> Outcome {
    match signal {
        Some(s) => Outcome {
            kind: "signal",
            signal,
            detail: format!("killed by signal {s}"),
        },
        None => Outcome {
            kind: "exit",
            signal: None,
            detail: format!("exited with code {code}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            sandbox: crate::ir::Sandbox {
                memory: Some(1 << 20),
                file_size: Some(10),
                ..Default::default()
            },
            cpu_secs: Some(1),
            processes: Some(8),
            landlock_fs: Some(Default::default()),
            ..Plan::default()
        }
    }

    #[test]
    fn classifies_limits() {
        let p = plan();
        let kind = |e, err: &str| Outcome::classify(Some(&p), e, err, 2000).kind;
        assert_eq!(kind(Ended::Code(0), "Permission denied"), "exit");
        assert_eq!(kind(Ended::Code(1), "x: Permission denied"), "denied");
        assert_eq!(kind(Ended::Code(1), "x: Read-only file system"), "denied");
        assert_eq!(kind(Ended::Code(1), "Out of memory!"), "memory_limit");
        assert_eq!(kind(Ended::Code(2), "sh: Cannot fork"), "process_limit");
        assert_eq!(kind(Ended::Signal(24), ""), "cpu_limit");
        assert_eq!(kind(Ended::Signal(25), ""), "file_size_limit");
        assert_eq!(kind(Ended::Signal(15), ""), "signal");
        assert_eq!(kind(Ended::Timeout, ""), "timeout");
        assert_eq!(kind(Ended::Code(3), "boom"), "exit");
        assert_eq!(
            Outcome::classify(None, Ended::Code(1), "Permission denied", 0).kind,
            "exit"
        );
    }
}
