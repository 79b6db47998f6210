//! What a step declares about its effect and about reusing its result across runs.

use super::Value;

/// What running a step does to the world (design §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Only reads: running it twice is the same as once, and it changes nothing.
    Read,
    /// Changes the world, but running it again with the same inputs changes nothing more.
    Idempotent,
    /// Changes the world each time it runs.
    Write,
}

impl Effect {
    /// The word written in a flow (`read`, `idempotent`, `write`).
    pub fn word(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Idempotent => "idempotent",
            Effect::Write => "write",
        }
    }
}

/// What to do with a step an interrupted run left running, when the run resumes (design §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Run it again.
    Retry,
    /// Fail it: its effect may have happened, and repeating it is not safe.
    Fail,
    /// Ask a person whether to run it again.
    Ask,
}

impl OnInterrupt {
    /// The words a flow may write, in the order of the variants.
    pub const WORDS: &'static [&'static str] = &["retry", "fail", "ask"];

    /// The value a flow writes as `word`, if it is one.
    pub fn parse(word: &str) -> Option<OnInterrupt> {
        Some(match word {
            "retry" => OnInterrupt::Retry,
            "fail" => OnInterrupt::Fail,
            "ask" => OnInterrupt::Ask,
            _ => return None,
        })
    }

    /// The word written in a flow (`retry`, `fail`, `ask`).
    pub fn word(self) -> &'static str {
        match self {
            OnInterrupt::Retry => "retry",
            OnInterrupt::Fail => "fail",
            OnInterrupt::Ask => "ask",
        }
    }
}

/// A glob as written, and compiled as a template.
#[derive(Debug, Clone)]
pub struct Glob {
    /// The text as written.
    pub source: String,
    /// What renders it.
    pub value: Value,
}

/// A step's content-addressed cache settings (`cache`, `inputs`, `outputs`, `cache_key`).
#[derive(Debug, Clone, Default)]
pub struct CacheSpec {
    /// Whether a new run may reuse a result recorded by an earlier one.
    pub enabled: bool,
    /// Globs of the files the step reads, relative to its `cwd`: their contents
    /// are in the key. Each is a template (`"shards/{{ f }}"`), with its source text.
    pub inputs: Vec<Glob>,
    /// Globs of the files the step writes: stored after success, restored on a hit.
    pub outputs: Vec<Glob>,
    /// What flowc cannot see (a tool version), rendered into the key.
    pub key: Option<Value>,
}
