//! Effective policies: caps, rules and sandbox limits.

use super::CompiledExpr;
use std::sync::Arc;

/// What a step does when this machine cannot enforce a sandbox limit it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The step is refused, naming the missing layer.
    Refuse,
    /// The step runs with the layers that are available; the gaps are journaled.
    Weaker,
}

impl Fallback {
    /// The word used in `.flow` files and in the journal.
    pub fn word(self) -> &'static str {
        match self {
            Fallback::Refuse => "refuse",
            Fallback::Weaker => "weaker",
        }
    }
}

/// Sandbox limits for `run` steps; `None` means "no limit set".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sandbox {
    /// Network allowed.
    pub network: Option<bool>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU time limit in milliseconds.
    pub cpu_ms: Option<u64>,
    /// Process count limit.
    pub processes: Option<u64>,
    /// Open file limit.
    pub open_files: Option<u64>,
    /// Largest file a step may write, in bytes.
    pub file_size: Option<u64>,
    /// Paths the step may write.
    pub writable: Option<Vec<String>>,
    /// Paths the step may read (everything when `None`).
    pub readable: Option<Vec<String>>,
    /// What happens when a written limit cannot be enforced (`None` behaves as `Refuse`).
    pub fallback: Option<Fallback>,
    /// The fields written in a `sandbox` block (not inherited from the built-in
    /// default): only these are refused when they cannot be enforced.
    pub written: Vec<&'static str>,
}

/// An effective policy: a `policy` item over the built-in defaults.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name (`builtin` for the built-in default).
    pub name: String,
    /// Cap on any step's `attempts` and loop's `max`.
    pub max_attempts: u32,
    /// Cap on concurrent steps.
    pub max_parallel: u32,
    /// Cap on step attempts executed in a run.
    pub max_steps: u64,
    /// Cap on nested `call` depth.
    pub max_depth: u32,
    /// Cap on spend over all `llm` steps of a run.
    pub max_cost_usd: Option<f64>,
    /// Cap on tokens over all `llm` steps of a run.
    pub max_tokens: Option<u64>,
    /// Ceiling of an `agent` step's `max_turns`.
    pub max_turns: Option<u32>,
    /// Default and ceiling of step timeouts, in milliseconds.
    pub step_timeout_ms: u64,
    /// Ceiling of a whole run, in milliseconds.
    pub run_timeout_ms: u64,
    /// True ⇒ a person approves the step before it runs.
    pub require_approval: Option<CompiledExpr>,
    /// True ⇒ the step is refused and the run fails closed.
    pub forbid: Option<CompiledExpr>,
    /// Limits for `run` steps.
    pub sandbox: Sandbox,
    /// The default of `cache` for steps that do not write it (`None`: each kind's own).
    pub cache: Option<bool>,
    /// Who is told when an approval is asked, a step escalates or a run fails.
    pub notify: PolicyNotify,
}

/// A policy's `notify { approvals: […], escalations: […], failures: […] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyNotify {
    /// For every approval asked (beside the step's own `notify`).
    pub approvals: Vec<super::NotifyTarget>,
    /// For every step that escalates to a person.
    pub escalations: Vec<super::NotifyTarget>,
    /// For every run that ends failed.
    pub failures: Vec<super::NotifyTarget>,
}

impl Policy {
    /// The built-in conservative default, used when no policy is in scope.
    pub fn builtin() -> Arc<Policy> {
        Arc::new(Policy {
            name: "builtin".to_string(),
            max_attempts: 5,
            max_parallel: 4,
            max_steps: 1_000,
            max_depth: 8,
            max_cost_usd: Some(5.0),
            max_tokens: Some(1_000_000),
            max_turns: None,
            step_timeout_ms: 30 * 60 * 1000,
            run_timeout_ms: 6 * 3600 * 1000,
            require_approval: None,
            forbid: None,
            notify: PolicyNotify::default(),
            sandbox: Sandbox {
                network: Some(true),
                memory: Some(4 << 30),
                cpu_ms: None,
                processes: Some(512),
                open_files: Some(1024),
                file_size: Some(1 << 30),
                writable: Some(vec![".".to_string(), "/tmp".to_string()]),
                readable: None,
                fallback: None,
                // Nothing is written: the built-in limits are applied as far as the
                // machine can, so they never make flowc unusable (root, no Landlock).
                written: Vec::new(),
            },
            cache: None,
        })
    }
}
