//! The work of one attempt, run off the scheduler: processes, scripts, waits.
//!
//! Each function returns the step's result (the kind's result record) or an
//! error message; none of them touches the journal.

use super::eval::{Evaluator, validate};
use crate::ir::{CompiledExpr, Ty};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Largest stdout or stderr kept in memory and in the result; the tail is kept.
pub const CAPTURE_CAP: usize = super::super::journal::OUTPUT_CAP;

/// What a finished attempt reports.
#[derive(Debug)]
pub enum AttemptEnd {
    /// The step produced a result (acceptance is checked by the scheduler).
    Result(Json),
    /// The attempt failed (could not start, timed out, crashed); the result, if any, is kept.
    Error(String, Option<Json>),
    /// It was cancelled (run failing, interrupted).
    Cancelled,
    /// The step produced a result that is rejected before `accept` (an
    /// `llm` reply that does not parse or validate), with the feedback.
    Rejected(Json, String),
    /// A failure more attempts cannot fix (a model that is misconfigured or
    /// refuses the key, a cap): the attempts are spent at once.
    Fatal(String),
    /// A passing failure (HTTP 429, 5xx, connection trouble): the next
    /// attempt waits at least the given milliseconds and the feedback is kept.
    Transient(String, Option<u64>),
    /// The process never started, for a reason that is not the step's (the
    /// spawner died after the `running` event): the attempt does not count,
    /// and the next one starts at once.
    NotStarted(String),
}

/// A rendered JSON list of strings (`argv`) as strings.
pub fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A rendered JSON map of strings (`env`) as (name, value) pairs.
pub fn string_pairs(v: &Json) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub use super::process::{Piped, ProcessSpec, TailFn, run_process, start_piped};

/// A `script` step attempt, ready to run.
pub struct ScriptJob {
    /// The shared evaluator.
    pub evaluator: Arc<Evaluator>,
    /// The compiled script.
    pub ast: Arc<rhai::AST>,
    /// The names it reads.
    pub names: Vec<String>,
    /// Their values.
    pub values: HashMap<String, Json>,
    /// The declared output type.
    pub output: Option<Ty>,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl ScriptJob {
    /// Runs a small script right here, on the scheduler's thread; `Err(self)`
    /// when it needs more than the inline operation budget, to be run with
    /// [`ScriptJob::run`] (from the start) instead.
    pub fn run_inline(self) -> Result<AttemptEnd, ScriptJob> {
        let started = Instant::now();
        let lookup = |n: &str| self.values.get(n).cloned();
        let Some(out) = self
            .evaluator
            .script_inline(&self.names, &self.ast, &lookup)
        else {
            return Err(self);
        };
        if started.elapsed() > self.timeout {
            return Ok(timed_out(self.timeout));
        }
        Ok(script_end(out, self.output.as_ref()))
    }

    /// Runs the script on a blocking thread.
    pub async fn run(self) -> AttemptEnd {
        let ScriptJob {
            evaluator,
            ast,
            names,
            values,
            output,
            timeout,
        } = self;
        let task = tokio::task::spawn_blocking(move || {
            let lookup = |n: &str| values.get(n).cloned();
            evaluator.script(&names, &ast, &lookup)
        });
        match tokio::time::timeout(timeout, task).await {
            Err(_) => timed_out(timeout),
            Ok(Err(e)) => AttemptEnd::Error(format!("script crashed: {e}"), None),
            Ok(Ok(out)) => script_end(out, output.as_ref()),
        }
    }
}

fn timed_out(timeout: Duration) -> AttemptEnd {
    AttemptEnd::Error(
        format!(
            "timed out after {}",
            crate::ir::format_ms(timeout.as_millis() as u64)
        ),
        None,
    )
}

/// A script's value checked against its declared output type.
fn script_end(out: Result<Json, String>, output: Option<&Ty>) -> AttemptEnd {
    match out {
        Err(e) => AttemptEnd::Error(e, None),
        Ok(value) => match output.map(|ty| (ty, validate(&value, ty))) {
            Some((ty, Err(e))) => AttemptEnd::Error(
                format!("the script's value does not match `output: {ty}`: {e}"),
                Some(value),
            ),
            _ => AttemptEnd::Result(value),
        },
    }
}

/// A polled `until` condition: the evaluator, the expression, the values it reads, the interval in ms.
pub type Until = (Arc<Evaluator>, CompiledExpr, HashMap<String, Json>, u64);

/// A `wait` step: until a deadline, or until a condition holds.
pub async fn run_wait(
    deadline_ms: Option<i64>,
    until: Option<Until>,
    timeout: Duration,
    cancel: Arc<Notify>,
) -> AttemptEnd {
    let started = Instant::now();
    let work = async {
        if let Some(deadline) = deadline_ms {
            let left = deadline - crate::journal::now_ms();
            if left > 0 {
                tokio::time::sleep(Duration::from_millis(left as u64)).await;
            }
        }
        if let Some((evaluator, expr, values, interval)) = &until {
            loop {
                let lookup = |n: &str| values.get(n).cloned();
                match evaluator.condition(expr, &lookup) {
                    Ok(true) => break,
                    Ok(false) => {
                        tokio::time::sleep(Duration::from_millis((*interval).max(10))).await
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    };
    // A fixed wait is bounded by its deadline; only `until` is bounded by the timeout.
    let limit = if until.is_some() {
        timeout
    } else {
        Duration::from_secs(100 * 365 * 86_400)
    };
    tokio::select! {
        r = work => match r {
            Ok(()) => AttemptEnd::Result(json!({ "waited": started.elapsed().as_millis() as i64 })),
            Err(e) => AttemptEnd::Error(e, None),
        },
        () = tokio::time::sleep(limit) => AttemptEnd::Error(
            format!("`until` did not hold within {}", crate::ir::format_ms(timeout.as_millis() as u64)),
            None,
        ),
        () = cancel.notified() => AttemptEnd::Cancelled,
    }
}
