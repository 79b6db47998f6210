//! The `fake` provider: answers from a script file, for tests, demos and offline use.
//!
//! The file (YAML, or JSON when it ends in `.json`) is a list of answers, or a
//! map with an `answers` list. An answer with `step` (an instance key like
//! `repair#2/patch`, or a step name) and/or `attempt` is used for exactly
//! that call; answers with neither are used in order, each once per run.
//!
//! An `agent` step takes one answer per turn: an answer with `tool_calls`
//! asks for those calls (`text` beside them is optional), and an answer
//! with `text` or `json` ends the loop. For agents, answers naming the step
//! are used in order too, each once (or exactly at `turn: N`).

use super::{CallError, Reply, estimate_tokens};
use serde::Deserialize;
use serde_json::Value as Json;

/// One scripted answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The step it answers: an instance key or a step name.
    pub step: Option<String>,
    /// The attempt it answers.
    pub attempt: Option<u32>,
    /// The turn of an agent it answers (1 is the first).
    pub turn: Option<u32>,
    /// Tool calls an agent turn asks for.
    pub tool_calls: Option<Vec<FakeCall>>,
    /// The reply text.
    pub text: Option<String>,
    /// A reply given as a value; sent as its JSON text.
    pub json: Option<Json>,
    /// Input tokens to report (default: estimated from the prompt).
    pub tokens_in: Option<u64>,
    /// Output tokens to report (default: estimated from the reply).
    pub tokens_out: Option<u64>,
    /// Answer with an HTTP error instead.
    pub error: Option<FakeError>,
}

/// A scripted tool call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeCall {
    /// The call's id (default: `call_TURN_N`).
    pub id: Option<String>,
    /// The tool.
    pub name: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Json,
}

/// A scripted HTTP error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeError {
    /// The status (429 and 5xx are transient, others fail the step at once).
    pub status: u16,
    /// The message.
    pub message: Option<String>,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    List(Vec<Answer>),
    Map { answers: Vec<Answer> },
}

/// A loaded script.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it was read from.
    pub path: String,
    /// Its answers, in file order.
    pub answers: Vec<Answer>,
}

impl Script {
    /// Reads and checks a script file.
    pub fn load(path: &str) -> Result<Script, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the answers file `{path}`: {e}"))?;
        Script::parse(path, &text)
    }

    /// Parses a script (`path` tells YAML from JSON and names it in messages).
    pub fn parse(path: &str, text: &str) -> Result<Script, String> {
        let value: Json = if path.ends_with(".json") {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())
        }
        .map_err(|e| format!("the answers file `{path}` is not valid: {e}"))?;
        let file: File = serde_json::from_value(value).map_err(|e| {
            format!(
                "the answers file `{path}` must be a list of answers (or `answers:` with one): {e}"
            )
        })?;
        let answers = match file {
            File::List(a) | File::Map { answers: a } => a,
        };
        for (i, a) in answers.iter().enumerate() {
            let n = i + 1;
            match (&a.text, &a.json, &a.error, &a.tool_calls) {
                (Some(_), None, None, _)
                | (None, Some(_), None, None)
                | (None, None, Some(_), None)
                | (None, None, None, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "answer {n} of `{path}` needs exactly one of `text`, `json`, `error` \
                         or `tool_calls` (which may have `text` beside it)"
                    ));
                }
            }
        }
        Ok(Script {
            path: path.to_string(),
            answers,
        })
    }

    /// The answer for a call, by instance key, step name and attempt; `used`
    /// lists in-order answers already given in this run.
    pub fn pick(&self, key: &str, name: &str, attempt: u32, used: &[usize]) -> Option<usize> {
        let targeted = self.answers.iter().position(|a| {
            (a.step.is_some() || a.attempt.is_some())
                && a.step.as_deref().is_none_or(|s| s == key || s == name)
                && a.attempt.is_none_or(|n| n == attempt)
        });
        targeted.or_else(|| {
            self.answers
                .iter()
                .enumerate()
                .position(|(i, a)| a.step.is_none() && a.attempt.is_none() && !used.contains(&i))
        })
    }

    /// The answer for turn `turn` of an agent: one at exactly that turn, else
    /// the first unused one for this step (or for no step) in file order.
    pub fn pick_turn(
        &self,
        key: &str,
        name: &str,
        attempt: u32,
        turn: u32,
        used: &[usize],
    ) -> Option<usize> {
        let fits = |a: &Answer| {
            a.step.as_deref().is_none_or(|s| s == key || s == name)
                && a.attempt.is_none_or(|n| n == attempt)
        };
        let exact = self
            .answers
            .iter()
            .position(|a| a.turn == Some(turn) && a.step.is_some() && fits(a));
        let used: std::collections::HashSet<usize> = used.iter().copied().collect();
        exact.or_else(|| {
            let mine = |i: usize, a: &Answer| {
                a.turn.is_none() && a.step.is_some() && fits(a) && !used.contains(&i)
            };
            let free = |i: usize, a: &Answer| {
                a.turn.is_none() && a.step.is_none() && a.attempt.is_none() && !used.contains(&i)
            };
            let all = || self.answers.iter().enumerate();
            all()
                .position(|(i, a)| mine(i, a))
                .or_else(|| all().position(|(i, a)| free(i, a)))
        })
    }

    /// An agent turn from answer `index`.
    pub fn turn_answer(
        &self,
        index: usize,
        est_in: u64,
        turn: u32,
    ) -> Result<super::agent::TurnReply, CallError> {
        let a = &self.answers[index];
        let calls: Vec<super::agent::ToolCall> = a
            .tool_calls
            .iter()
            .flatten()
            .enumerate()
            .map(|(n, c)| super::agent::ToolCall {
                id: c
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("call_{turn}_{}", n + 1)),
                name: c.name.clone(),
                args: if c.args.is_null() {
                    serde_json::json!({})
                } else {
                    c.args.clone()
                },
            })
            .collect();
        if a.tool_calls.is_some() {
            let text = a.text.clone().unwrap_or_default();
            return Ok(super::agent::TurnReply {
                tokens_in: a.tokens_in.unwrap_or(est_in),
                tokens_out: a
                    .tokens_out
                    .unwrap_or_else(|| estimate_tokens(&text) + 10 * calls.len() as u64),
                text,
                calls,
            });
        }
        let r = self.answer(index, "")?;
        Ok(super::agent::TurnReply {
            text: r.text,
            calls,
            tokens_in: a.tokens_in.unwrap_or(est_in),
            tokens_out: r.tokens_out,
        })
    }

    /// What answer `index` says, for a prompt of `prompt_len` bytes.
    pub fn answer(&self, index: usize, prompt: &str) -> Result<Reply, CallError> {
        let a = &self.answers[index];
        if let Some(e) = &a.error {
            let transient = super::http::classify(e.status);
            return Err(CallError {
                transient,
                retry_after_ms: e.retry_after.map(|s| (s.max(0.0) * 1000.0) as u64),
                status: Some(e.status),
                message: format!(
                    "the fake model answered HTTP {}: {}",
                    e.status,
                    e.message.as_deref().unwrap_or("scripted error")
                ),
            });
        }
        let text = match (&a.text, &a.json) {
            (Some(t), _) => t.clone(),
            (None, Some(j)) => j.to_string(),
            (None, None) => String::new(),
        };
        Ok(Reply {
            tokens_in: a.tokens_in.unwrap_or_else(|| estimate_tokens(prompt)),
            tokens_out: a.tokens_out.unwrap_or_else(|| estimate_tokens(&text)),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
- step: plan
  attempt: 2
  json: { summary: "fix", files: ["a.rs"] }
- text: "first"
- error: { status: 429, retry_after: 1.5 }
- text: "third"
  tokens_in: 10
  tokens_out: 3
"#;

    #[test]
    fn targeted_answers_win_then_order() {
        let s = Script::parse("a.yaml", YAML).expect("parses");
        assert_eq!(s.pick("repair#1/plan", "plan", 2, &[]), Some(0));
        assert_eq!(s.pick("plan", "plan", 1, &[]), Some(1));
        assert_eq!(s.pick("plan", "plan", 1, &[1]), Some(2));
        assert_eq!(s.pick("x", "x", 1, &[1, 2, 3]), None);
        let e = s.answer(2, "p").err();
        assert_eq!(
            e.as_ref().map(|e| (e.transient, e.retry_after_ms)),
            Some((true, Some(1500)))
        );
        let r = s.answer(3, "p").ok();
        assert_eq!(r.map(|r| (r.tokens_in, r.tokens_out)), Some((10, 3)));
        let r = s.answer(0, "p").ok();
        assert!(r.is_some_and(|r| r.text.contains("\"summary\":\"fix\"")));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let e = Script::parse("a.yaml", "- text: a\n  json: 1\n").err();
        assert!(e.is_some_and(|e| e.contains("exactly one of")));
        let e = Script::parse("a.yaml", "- txt: a\n").err();
        assert!(e.is_some_and(|e| e.contains("must be a list")));
        let e = Script::parse("a.json", "{").err();
        assert!(e.is_some_and(|e| e.contains("not valid")));
        assert!(Script::parse("a.yaml", "answers:\n  - text: a\n").is_ok());
    }
}
