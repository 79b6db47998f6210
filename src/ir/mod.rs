//! The compiled program: everything the executor needs, nothing from the AST.
//!
//! Expressions arrive compiled to rhai ASTs and templates compiled into one
//! minijinja environment per skill; the executor only evaluates them.

pub mod agent;
pub mod bounds;
mod cache;
mod policy;
mod summary;
pub mod template_methods;
mod ty;

pub use agent::{AgentStep, McpServer, Tool, ToolKind};
pub use cache::{CacheSpec, Effect, Glob, OnInterrupt};
pub use policy::{Fallback, Policy, PolicyNotify, Sandbox};
pub use summary::format_ms;
pub use ty::{Record, Ty};

use crate::span::Span;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Index of a node in [`Skill::nodes`].
pub type NodeId = usize;

/// The compiled form of one checked file and everything it imports.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The display path of the checked file.
    pub file: String,
    /// Every skill reachable from the file, keyed by [`Skill::key`].
    pub skills: BTreeMap<String, Arc<Skill>>,
    /// Keys of the skills defined in the file itself, in source order.
    pub entry: Vec<String>,
    /// Models defined in the file itself.
    pub models: Vec<Arc<Model>>,
    /// Policies defined in the file itself.
    pub policies: Vec<Arc<Policy>>,
    /// Triggers defined in the file itself.
    pub triggers: Vec<Trigger>,
}

impl Program {
    /// The skill the file names `name`, or its only/`main` skill when `name` is `None`.
    pub fn entry_skill(&self, name: Option<&str>) -> Option<&Arc<Skill>> {
        let local = || self.entry.iter().filter_map(|k| self.skills.get(k));
        match name {
            Some(n) => local().find(|s| s.name == n),
            None => local().find(|s| s.name == "main").or_else(|| {
                if self.entry.len() == 1 {
                    local().next()
                } else {
                    None
                }
            }),
        }
    }

    /// Whether any step of any skill meets `f`.
    pub fn any_step(&self, f: impl Fn(&Step) -> bool) -> bool {
        self.skills.values().any(|s| {
            s.nodes
                .iter()
                .any(|n| matches!(&n.kind, NodeKind::Step(st) if f(st)))
        })
    }
}

/// A compiled expression: its source text, its type and its rhai form.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    /// The expression as the author wrote it (for messages).
    pub source: String,
    /// The rhai code it was translated to; names are `v_NAME`, methods `m_NAME`, functions `f_NAME`.
    pub code: String,
    /// The compiled rhai AST.
    pub ast: Arc<rhai::AST>,
    /// Its static type.
    pub ty: Ty,
    /// Where it is written.
    pub span: Span,
}

/// A template compiled into its skill's environment.
#[derive(Debug, Clone)]
pub struct TemplateRef {
    /// The template's name in [`Skill::templates`].
    pub name: String,
    /// Its source text.
    pub source: String,
}

/// A value built at run time: a constant, a template, an expression, or a list or map of them.
#[derive(Debug, Clone)]
pub enum Value {
    /// Known at compile time.
    Const(serde_json::Value),
    /// A string template to render.
    Template(TemplateRef),
    /// An expression to evaluate.
    Expr(CompiledExpr),
    /// A list of values.
    List(Vec<Value>),
    /// A map of values, in source order.
    Map(Vec<(String, Value)>),
}

/// A skill parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: Ty,
    /// Its default, if any.
    pub default: Option<Value>,
}

/// One compiled skill: its parameters, policy and graph of nodes.
#[derive(Debug, Clone)]
pub struct Skill {
    /// Its unique key, `FILE#name`.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its description, if it has one.
    pub description: Option<String>,
    /// Its parameters.
    pub params: Vec<Param>,
    /// Its declared result type.
    pub returns: Option<Ty>,
    /// The value of its `return`.
    pub output: Option<Value>,
    /// The effective policy.
    pub policy: Arc<Policy>,
    /// Every step and block, parents before children.
    pub nodes: Vec<Node>,
    /// The graph of the top-level nodes.
    pub graph: Graph,
    /// All templates of the skill, checked at compile time; each is compiled
    /// once, on its first `get_template`.
    pub templates: Arc<minijinja::Environment<'static>>,
}

/// A dependency graph over the direct children of a skill or block.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// Edge `a → b`: `b` waits for `a`. Weights are [`NodeId`]s.
    pub dag: DiGraph<NodeId, ()>,
}

impl Graph {
    /// The nodes in a dependency order.
    pub fn topo_order(&self) -> Vec<NodeId> {
        match petgraph::algo::toposort(&self.dag, None) {
            Ok(order) => order.into_iter().map(|i| self.dag[i]).collect(),
            Err(_) => self.dag.node_weights().copied().collect(),
        }
    }

    /// The graph index of node `id`.
    ///
    /// The checker adds nodes in increasing [`NodeId`] order, so a binary
    /// search finds them; a graph built otherwise falls back to a scan.
    pub fn index_of(&self, id: NodeId) -> Option<NodeIndex> {
        let nodes = self.dag.raw_nodes();
        if let Ok(i) = nodes.binary_search_by_key(&id, |n| n.weight) {
            return Some(NodeIndex::new(i));
        }
        self.dag.node_indices().find(|&i| self.dag[i] == id)
    }

    /// The nodes `id` depends on directly.
    pub fn dependencies(&self, id: NodeId) -> Vec<NodeId> {
        let Some(ix) = self.index_of(id) else {
            return Vec::new();
        };
        let mut deps: Vec<NodeId> = self
            .dag
            .neighbors_directed(ix, petgraph::Direction::Incoming)
            .map(|i| self.dag[i])
            .collect();
        deps.sort_unstable();
        deps
    }
}

/// What happens when a step's or block's attempts are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The run fails.
    Fail,
    /// The node fails and the run goes on.
    Continue,
    /// A person decides (retry, skip or abort).
    Escalate,
}

/// A step or a block.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its index in [`Skill::nodes`].
    pub id: NodeId,
    /// Its name, unique in the skill.
    pub name: String,
    /// The enclosing block, if any.
    pub parent: Option<NodeId>,
    /// Skip the node when this is false.
    pub when: Option<CompiledExpr>,
    /// What to do when it fails for good.
    pub on_failure: OnFailure,
    /// Shown in progress and graphs: a constant, or a template rendered when the node starts.
    pub description: Option<Value>,
    /// Step or block specifics.
    pub kind: NodeKind,
    /// Where it is defined (for messages).
    pub span: Span,
}

/// Step or block specifics.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A step.
    Step(Box<Step>),
    /// `loop name { max: N, ... }`
    Loop {
        /// Iterations at most.
        max: u32,
        /// The inner nodes.
        body: Graph,
    },
    /// `for var in iter { parallel: N, ... }`
    For {
        /// The loop variable.
        var: String,
        /// The list iterated over.
        iter: CompiledExpr,
        /// Element type.
        elem: Ty,
        /// At most this many elements at once.
        parallel: u32,
        /// The inner nodes.
        body: Graph,
    },
}

/// Exponential wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait, in milliseconds.
    pub initial_ms: u64,
    /// Multiplier per attempt.
    pub factor: f64,
    /// The longest wait, in milliseconds.
    pub max_ms: u64,
}

/// A step: its kind, retry settings and acceptance criteria.
#[derive(Debug, Clone)]
pub struct Step {
    /// Kind-specific settings.
    pub kind: StepKind,
    /// Total attempts (at least 1).
    pub attempts: u32,
    /// Wait between attempts.
    pub backoff: Option<Backoff>,
    /// Per-attempt timeout in milliseconds (the policy's `step_timeout` when not set).
    pub timeout_ms: u64,
    /// All must hold for an attempt to be accepted; empty means the kind's default.
    pub accept: Vec<CompiledExpr>,
    /// Text handed to the next attempt when rejected (an expression, or a
    /// template when written as a string); `None` means the kind's default.
    pub feedback: Option<Value>,
    /// Environment variables (values are rendered to text).
    pub env: Vec<(String, Value)>,
    /// The type of the step's result.
    pub result: Ty,
    /// The definition's source text (secret names are read from it).
    pub fingerprint: String,
    /// The definition normalised (no spans, comments or layout), for input hashes and cache keys.
    pub definition: String,
    /// What running it does to the world.
    pub effect: Effect,
    /// Reuse across runs.
    pub cache: CacheSpec,
    /// Memory written after the step is accepted: key, value (`remember`).
    pub remember: Vec<(String, Value)>,
    /// Memory keys the step reads (`recall`), part of its input hash.
    pub recalls: Vec<String>,
    /// What a resumed run does with it when an interruption left it running; `None`: not declared.
    pub on_interrupt: Option<OnInterrupt>,
}

/// Kind-specific step settings.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Run a process.
    Run(RunStep),
    /// Ask a model.
    Llm(LlmStep),
    /// A model that calls tools until it answers.
    Agent(Arc<AgentStep>),
    /// Ask a person.
    Approval {
        /// The question.
        prompt: Value,
        /// How long to wait, in milliseconds.
        timeout_ms: Option<u64>,
        /// The decision when the timeout passes.
        default_approve: bool,
        /// Who may decide: person names and `group:NAME`; empty means anyone.
        approvers: Vec<String>,
        /// How many distinct approvers must approve (at least 1).
        required: u32,
        /// Whether the run's initiator may decide.
        self_approval: bool,
        /// The record type of the answers a decider gives, if any.
        form: Option<Ty>,
        /// Who is told when it is asked.
        notify: Vec<NotifyTarget>,
    },
    /// Run another skill.
    Call {
        /// The callee's [`Skill::key`].
        skill: String,
        /// Arguments by parameter name.
        args: Vec<(String, Value)>,
    },
    /// Run a rhai script.
    Script {
        /// The script's source.
        code: String,
        /// The compiled script.
        ast: Arc<rhai::AST>,
        /// The declared result type.
        output: Option<Ty>,
    },
    /// Wait for a time or a condition.
    Wait {
        /// A fixed wait, in milliseconds.
        duration_ms: Option<u64>,
        /// A condition polled until true.
        until: Option<CompiledExpr>,
        /// Poll interval, in milliseconds.
        interval_ms: u64,
    },
}

/// How a `run` step names its program.
#[derive(Debug, Clone)]
pub enum Command {
    /// A template run by `sh -c`.
    Shell(Value),
    /// Program and arguments, each a template.
    Argv(Vec<Value>),
}

/// A `run` step.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// What to run.
    pub command: Command,
    /// Text fed to standard input.
    pub stdin: Option<Value>,
    /// Working directory.
    pub cwd: Option<Value>,
    /// Type of the JSON expected on stdout.
    pub output: Option<Ty>,
    /// Globs of files saved before each attempt.
    pub snapshot: Vec<String>,
    /// Restore the snapshot after a failed or rejected attempt.
    pub rollback: bool,
    /// Limits narrower than the policy's.
    pub sandbox: Sandbox,
}

/// An `llm` step.
#[derive(Debug, Clone)]
pub struct LlmStep {
    /// The model to ask.
    pub model: Arc<Model>,
    /// The system prompt.
    pub system: Option<Value>,
    /// The prompt.
    pub prompt: Value,
    /// Type of the JSON expected in the reply.
    pub output: Option<Ty>,
    /// Overrides the model's temperature.
    pub temperature: Option<f64>,
    /// Overrides the model's token limit.
    pub max_tokens: Option<u64>,
}

/// Model providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI-compatible Chat Completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// A local command: prompt on stdin, reply on stdout.
    Command,
    /// Scripted answers from a file, for tests and demos.
    Fake,
}

impl Provider {
    /// The provider named `word` (`openai`, `anthropic`, `command`, `fake`).
    pub fn parse(word: &str) -> Option<Provider> {
        Some(match word {
            "openai" => Provider::OpenAi,
            "anthropic" => Provider::Anthropic,
            "command" => Provider::Command,
            "fake" => Provider::Fake,
            _ => return None,
        })
    }

    /// Its name in flow files.
    pub fn word(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Command => "command",
            Provider::Fake => "fake",
        }
    }
}

/// A model setting given literally or read from the environment when the run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// Written in the flow.
    Text(String),
    /// `env("NAME")` or `env("NAME", "default")`.
    Env {
        /// The variable.
        name: String,
        /// Used when the variable is unset.
        default: Option<String>,
    },
}

/// Where a notification goes: `webhook(URL)` or `slack(URL)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// `webhook` (a signed JSON message) or `slack` (an incoming-webhook message).
    pub kind: NotifyKind,
    /// Where its URL comes from.
    pub url: UrlSource,
}

/// The shape of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyKind {
    /// A JSON message signed like Standard Webhooks.
    Webhook,
    /// Slack's incoming-webhook shape.
    Slack,
}

/// A URL written in the flow, or where to read it when the message is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// The URL itself.
    Url(String),
    /// `env("NAME")`.
    Env(String),
    /// `secret("NAME")`: a URL that is itself a credential (Slack's are).
    Secret(String),
}

impl NotifyTarget {
    /// The target as journaled: never the value of an env variable or secret, only its name.
    pub fn to_json(&self) -> serde_json::Value {
        let kind = match self.kind {
            NotifyKind::Webhook => "webhook",
            NotifyKind::Slack => "slack",
        };
        let url = match &self.url {
            UrlSource::Url(u) => serde_json::json!({ "url": u }),
            UrlSource::Env(n) => serde_json::json!({ "env": n }),
            UrlSource::Secret(n) => serde_json::json!({ "secret": n }),
        };
        serde_json::json!({ "kind": kind, "url": url })
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `secret("NAME")`: the environment or the secret store.
    Secret(String),
    /// `env("NAME")`: the environment only.
    Env(String),
}

/// A `model` item: the one place a model and its settings are named.
#[derive(Debug, Clone)]
pub struct Model {
    /// Its unique key, `FILE#name`.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Which API it speaks (the default when `provider_env` is set).
    pub provider: Provider,
    /// `provider: env("NAME", "default")`: the variable that may choose another provider.
    pub provider_env: Option<String>,
    /// The provider's model name.
    pub model: Option<String>,
    /// API base URL.
    pub base_url: Option<Setting>,
    /// API key source.
    pub api_key: Option<SecretSource>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Reply token limit.
    pub max_tokens: Option<u64>,
    /// USD per million input tokens.
    pub input_price: Option<f64>,
    /// USD per million output tokens.
    pub output_price: Option<f64>,
    /// Whether the server accepts a JSON schema for structured output.
    pub structured_output: bool,
    /// Request timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The command of the `command` provider.
    pub command: Option<String>,
    /// The answer file of the `fake` provider.
    pub script: Option<String>,
    /// Requests per minute allowed.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute allowed.
    pub tokens_per_minute: Option<u64>,
}

/// A `trigger` item: what starts a run of a skill without a person (`flowc serve`).
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Its name.
    pub name: String,
    /// Its `description`.
    pub description: Option<String>,
    /// The key (`FILE#name`) of the skill it starts.
    pub skill: Option<String>,
    /// The `run:` arguments by parameter name, evaluated when it fires (`event` in scope).
    pub args: Vec<(String, CompiledExpr)>,
    /// What happens when it fires while its previous run has not ended.
    pub overlap: Overlap,
    /// What makes it fire.
    pub source: TriggerSource,
}

/// `overlap`: a fire while the trigger's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Start nothing (the default); the fire is recorded as skipped.
    #[default]
    Skip,
    /// Queue at most one run behind the one going.
    Queue,
    /// Start another run.
    Allow,
    /// Cancel the run going, then start one.
    CancelPrevious,
}

/// `catchup`: slots missed while no service ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Catchup {
    /// Missed slots start nothing.
    None,
    /// One run for the most recent missed slot (the default).
    #[default]
    Latest,
    /// A run for every missed slot inside `catchup_window`, capped.
    All,
}

/// `verify` of a webhook trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the body).
    Github,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// Unsigned calls accepted (must be written).
    None,
}

/// What makes a trigger fire.
#[derive(Debug, Clone)]
pub enum TriggerSource {
    /// A schedule.
    Cron {
        /// The expression as written.
        expr: String,
        /// The IANA zone it is read in.
        timezone: String,
        /// Missed slots after downtime.
        catchup: Catchup,
        /// How far back `catchup: all` looks, in ms.
        catchup_window_ms: u64,
        /// Each fire waits a random delay up to this, in ms.
        jitter_ms: u64,
    },
    /// Changes to files.
    Watch {
        /// Globs, relative to the service's directory.
        globs: Vec<String>,
        /// Quiet time before a burst of changes fires, in ms.
        debounce_ms: u64,
    },
    /// An HTTP POST to the service's listener.
    Webhook {
        /// The path, starting with `/`.
        path: String,
        /// How calls are authenticated.
        verify: Verify,
        /// The signing secret.
        secret: Option<SecretSource>,
        /// The header that identifies a delivery (dedup).
        dedup: Option<String>,
        /// Largest body accepted, in bytes.
        max_body: u64,
        /// Largest age of a Standard Webhooks timestamp, in ms.
        tolerance_ms: u64,
    },
    /// None given (reported).
    Missing,
}
