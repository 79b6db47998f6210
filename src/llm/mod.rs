//! Models: requests to providers, replies, error classes, JSON Schema,
//! scripted answers, rate limits and spend.
//!
//! Nothing here touches the journal; the executor (`exec::llm`) journals
//! every request and reply and decides what an outcome means for the step.

pub mod agent;
pub mod fake;
pub mod http;
pub mod limits;
pub mod mcp;
pub mod schema;

use crate::ir::Provider;
use serde_json::Value as Json;
use std::time::Duration;

/// One call to a model, fully rendered.
#[derive(Debug, Clone)]
pub struct Request {
    /// The model item's name (for messages).
    pub model: String,
    /// The API it speaks.
    pub provider: Provider,
    /// The provider's model name.
    pub name: String,
    /// API base URL (the provider's default when `None`).
    pub base_url: Option<String>,
    /// The API key, if the model has one.
    pub api_key: Option<String>,
    /// The system prompt.
    pub system: Option<String>,
    /// The user prompt.
    pub prompt: String,
    /// The JSON Schema of the declared `output`.
    pub schema: Option<Json>,
    /// Send the schema with the request (the server supports structured output).
    pub structured: bool,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Reply token limit.
    pub max_tokens: Option<u64>,
    /// Whole-request timeout.
    pub timeout: Duration,
}

/// What a model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The reply text.
    pub text: String,
    /// Input tokens, as the provider counted them.
    pub tokens_in: u64,
    /// Output tokens, as the provider counted them.
    pub tokens_out: u64,
}

/// Why a call produced no reply.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// Worth another attempt (429, 5xx, connection trouble, timeouts).
    pub transient: bool,
    /// What the server asked us to wait (`Retry-After`), in milliseconds.
    pub retry_after_ms: Option<u64>,
    /// The HTTP status, if the server answered.
    pub status: Option<u16>,
    /// The message, naming the model and provider; never the key.
    pub message: String,
}

impl CallError {
    /// An error that further attempts would not fix.
    pub fn fatal(message: impl Into<String>) -> CallError {
        CallError {
            transient: false,
            retry_after_ms: None,
            status: None,
            message: message.into(),
        }
    }

    /// A passing trouble: the next attempt may succeed.
    pub fn transient(message: impl Into<String>) -> CallError {
        CallError {
            transient: true,
            retry_after_ms: None,
            status: None,
            message: message.into(),
        }
    }
}

/// A rough token count for text (about four bytes a token), for caps and
/// rate limits before the provider has counted.
/// A step's prompt version: a hash of its prompt and system text as written
/// (templates, not rendered values), so an edit of the prompt is a new version
/// and a run with other inputs is not.
pub fn prompt_version(llm: &crate::ir::LlmStep) -> String {
    fn text(v: &crate::ir::Value) -> String {
        match v {
            crate::ir::Value::Const(j) => j.as_str().map_or_else(|| j.to_string(), str::to_string),
            crate::ir::Value::Template(t) => t.source.clone(),
            crate::ir::Value::Expr(e) => e.source.clone(),
            other => format!("{other:?}"),
        }
    }
    let mut h = blake3::Hasher::new();
    h.update(text(&llm.prompt).as_bytes());
    h.update(b"\0");
    if let Some(system) = &llm.system {
        h.update(text(system).as_bytes());
    }
    h.finalize().to_hex()[..12].to_string()
}

pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// The system prompt sent to the model: the step's own, plus the reply
/// format when the step declares an `output` type.
pub fn system_prompt(system: Option<&str>, schema: Option<&Json>) -> Option<String> {
    with_format(system, schema, "Reply with")
}

/// The step's system prompt and, when there is a schema, the answer's format
/// introduced by `lead` ("Reply with", or an agent's "When you are done, reply with").
pub fn with_format(system: Option<&str>, schema: Option<&Json>, lead: &str) -> Option<String> {
    let format = schema.map(|s| {
        format!(
            "{lead} one JSON value and nothing else (no prose, no code fence). \
             It must match this JSON Schema:\n{s}"
        )
    });
    match (system.filter(|s| !s.trim().is_empty()), format) {
        (Some(s), Some(f)) => Some(format!("{s}\n\n{f}")),
        (Some(s), None) => Some(s.to_string()),
        (None, f) => f,
    }
}
