//! `agent` steps and their tools: what the model may call, and the caps of its loop.

use super::{Effect, Model, Ty, Value};
use std::sync::Arc;

/// Default of `max_turns`: model calls in one attempt.
pub const MAX_TURNS: u32 = 20;
/// Default of `max_tool_calls`: tool calls in one attempt.
pub const MAX_TOOL_CALLS: u32 = 50;
/// Default of `max_repeats`: the same call with the same arguments.
pub const MAX_REPEATS: u32 = 3;
/// Default of `tool_result_max`: bytes of a result the model sees.
pub const TOOL_RESULT_MAX: u64 = 16 << 10;

/// An `agent` step: a model that calls tools until it answers.
#[derive(Debug, Clone)]
pub struct AgentStep {
    /// The model asked each turn.
    pub model: Arc<Model>,
    /// The system prompt.
    pub system: Option<Value>,
    /// The first user message.
    pub prompt: Value,
    /// What the model may call, in the order written.
    pub tools: Vec<Tool>,
    /// The directory the tools work in: relative `cwd`s of their steps, and
    /// MCP servers without a `cwd`, are taken from here.
    pub cwd: Option<Value>,
    /// Model calls per attempt at most.
    pub max_turns: u32,
    /// Tool calls per attempt at most.
    pub max_tool_calls: u32,
    /// The same call (tool and arguments) per attempt at most.
    pub max_repeats: u32,
    /// Bytes of one tool result the model sees (head and tail kept).
    pub tool_result_max: u64,
    /// Type of the JSON expected in the final answer.
    pub output: Option<Ty>,
    /// Overrides the model's temperature.
    pub temperature: Option<f64>,
    /// Overrides the model's token limit per turn.
    pub max_tokens: Option<u64>,
}

/// One tool an agent may call.
#[derive(Debug, Clone)]
pub struct Tool {
    /// The name the model calls it by (unique in the step).
    pub name: String,
    /// Where it is reached.
    pub kind: ToolKind,
}

/// A skill, or a tool of an MCP server.
#[derive(Debug, Clone)]
pub enum ToolKind {
    /// A skill run as a child frame, like `call`.
    Skill {
        /// The skill's key (`FILE#name`).
        key: String,
        /// Its description (what the model reads).
        description: String,
        /// The JSON Schema of its parameters (an object).
        schema: serde_json::Value,
        /// What calling it does, when the skill declares it (otherwise the
        /// strongest effect of its steps, worked out when it is called).
        effect: Option<Effect>,
    },
    /// A tool listed by an MCP server; its schema comes from the server.
    Mcp {
        /// The server, with its command rendered in the step's scope.
        server: Arc<McpServer>,
        /// The tool's name at the server (`None`: every tool in `allow`).
        tool: Option<String>,
    },
}

/// An `mcp` item, as one agent step uses it.
#[derive(Debug, Clone)]
pub struct McpServer {
    /// The item's name.
    pub name: String,
    /// Program and arguments, each a template (a `command` is run by `sh -c`).
    pub argv: Vec<Value>,
    /// Extra environment variables.
    pub env: Vec<(String, Value)>,
    /// Working directory.
    pub cwd: Option<Value>,
    /// The tools that may be called (`*`: all).
    pub allow: Vec<String>,
    /// Declared effects by tool; the rest are `write`.
    pub effects: Vec<(String, Effect)>,
}

impl McpServer {
    /// Whether the model may call `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        self.allow.iter().any(|a| a == "*" || a == tool)
    }

    /// The effect of `tool`: declared in `effects`, else `write` (a server's
    /// own annotations never loosen it).
    pub fn effect(&self, tool: &str) -> Effect {
        self.effects
            .iter()
            .find(|(t, _)| t == tool)
            .map_or(Effect::Write, |(_, e)| *e)
    }
}
