//! The conversation of an agent: messages, tool calls and results, and how each
//! provider writes them (OpenAI `tools`/`tool_calls`, Anthropic `tool_use`/`tool_result`).

use super::{CallError, Request, estimate_tokens};
use crate::ir::Provider;
use serde_json::{Value as Json, json};

/// A tool as the model is told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The name the model calls.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its arguments (an object).
    pub schema: Json,
}

/// One call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The provider's id of the call (results name it).
    pub id: String,
    /// The tool.
    pub name: String,
    /// The arguments; a string the model sent that is not JSON stays a string.
    pub args: Json,
}

/// What a tool call gave back, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The call it answers.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The text (cut to the step's `tool_result_max`).
    pub content: String,
    /// The call failed or was refused.
    pub is_error: bool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The user's prompt (or feedback).
    User(String),
    /// A model turn: its text and the calls it asked for.
    Assistant {
        /// Its text.
        text: String,
        /// Its calls, in order.
        calls: Vec<ToolCall>,
    },
    /// The results of the previous turn's calls, in the same order.
    Results(Vec<ToolResult>),
}

/// What a model answered in one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReply {
    /// Its text.
    pub text: String,
    /// The calls it asks for (none: this is the answer).
    pub calls: Vec<ToolCall>,
    /// Input tokens, as counted by the provider.
    pub tokens_in: u64,
    /// Output tokens, as counted by the provider.
    pub tokens_out: u64,
}

impl TurnReply {
    /// The reply as journaled (and read back on resume).
    pub fn to_json(&self) -> Json {
        json!({
            "text": self.text,
            "tool_calls": self.calls.iter().map(call_json).collect::<Vec<_>>(),
        })
    }

    /// A journaled reply; `None` when it is not one.
    pub fn from_json(v: &Json, tokens_in: u64, tokens_out: u64) -> Option<TurnReply> {
        let calls = v["tool_calls"]
            .as_array()?
            .iter()
            .map(|c| {
                Some(ToolCall {
                    id: c["id"].as_str()?.to_string(),
                    name: c["name"].as_str()?.to_string(),
                    args: c["args"].clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(TurnReply {
            text: v["text"].as_str()?.to_string(),
            calls,
            tokens_in,
            tokens_out,
        })
    }
}

/// A call as journaled and as the `command` protocol writes it.
pub fn call_json(c: &ToolCall) -> Json {
    json!({ "id": c.id, "name": c.name, "args": c.args })
}

/// The URL and body of one agent turn: `req` gives the model, system prompt
/// and sampling; `messages` the conversation so far; `tools` what may be called.
pub fn build(req: &Request, messages: &[Message], tools: &[ToolSpec]) -> (String, Json) {
    let (url, mut body) = super::http::build(req);
    // The output type is for the answer that ends the loop, not for the calls before it.
    let system = super::with_format(
        req.system.as_deref(),
        req.schema.as_ref(),
        "Use the tools as you need. When you are done and call no more tools, reply with",
    );
    match req.provider {
        Provider::Anthropic => {
            match &system {
                Some(s) => body["system"] = json!(s),
                None => drop(body.as_object_mut().map(|m| m.remove("system"))),
            }
            body["messages"] = Json::Array(anthropic_messages(messages));
            if !tools.is_empty() {
                body["tools"] = tools
                    .iter()
                    .map(|t| json!({ "name": t.name, "description": t.description, "input_schema": t.schema }))
                    .collect();
            }
        }
        _ => {
            let mut out: Vec<Json> = system
                .iter()
                .map(|s| json!({ "role": "system", "content": s }))
                .collect();
            out.extend(openai_messages(messages));
            body["messages"] = Json::Array(out);
            if !tools.is_empty() {
                body["tools"] = tools
                    .iter()
                    .map(|t| {
                        json!({ "type": "function", "function": {
                            "name": t.name, "description": t.description, "parameters": t.schema } })
                    })
                    .collect();
            }
        }
    }
    (url, body)
}

fn openai_messages(messages: &[Message]) -> Vec<Json> {
    let mut out = Vec::new();
    for m in messages {
        match m {
            Message::User(text) => out.push(json!({ "role": "user", "content": text })),
            Message::Assistant { text, calls } => {
                let mut msg = json!({ "role": "assistant", "content": text });
                if !calls.is_empty() {
                    msg["tool_calls"] = calls
                        .iter()
                        .map(|c| {
                            let args = match &c.args {
                                Json::String(raw) => raw.clone(),
                                other => other.to_string(),
                            };
                            json!({ "id": c.id, "type": "function",
                                    "function": { "name": c.name, "arguments": args } })
                        })
                        .collect();
                }
                out.push(msg);
            }
            Message::Results(results) => {
                for r in results {
                    out.push(json!({ "role": "tool", "tool_call_id": r.id, "content": r.content }));
                }
            }
        }
    }
    out
}

fn anthropic_messages(messages: &[Message]) -> Vec<Json> {
    let mut out = Vec::new();
    for m in messages {
        match m {
            Message::User(text) => out.push(json!({ "role": "user", "content": text })),
            Message::Assistant { text, calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({ "type": "text", "text": text }));
                }
                for c in calls {
                    let input = if c.args.is_object() {
                        c.args.clone()
                    } else {
                        json!({})
                    };
                    blocks.push(
                        json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": input }),
                    );
                }
                out.push(json!({ "role": "assistant", "content": blocks }));
            }
            Message::Results(results) => {
                let blocks: Vec<Json> = results
                    .iter()
                    .map(|r| {
                        json!({ "type": "tool_result", "tool_use_id": r.id,
                                "content": r.content, "is_error": r.is_error })
                    })
                    .collect();
                out.push(json!({ "role": "user", "content": blocks }));
            }
        }
    }
    out
}

/// Reads a turn's text, tool calls and token counts from a response body.
pub fn parse(provider: Provider, body: &Json) -> Result<TurnReply, String> {
    match provider {
        Provider::Anthropic => {
            let blocks = body["content"]
                .as_array()
                .ok_or("the response has no `content` list")?;
            let mut text = String::new();
            let mut calls = Vec::new();
            for b in blocks {
                match b["type"].as_str() {
                    Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
                    Some("tool_use") => calls.push(ToolCall {
                        id: b["id"]
                            .as_str()
                            .ok_or("a `tool_use` block has no `id`")?
                            .to_string(),
                        name: b["name"]
                            .as_str()
                            .ok_or("a `tool_use` block has no `name`")?
                            .to_string(),
                        args: b["input"].clone(),
                    }),
                    _ => {}
                }
            }
            Ok(TurnReply {
                tokens_in: body["usage"]["input_tokens"].as_u64().unwrap_or(0),
                tokens_out: body["usage"]["output_tokens"]
                    .as_u64()
                    .unwrap_or_else(|| estimate_tokens(&text)),
                text,
                calls,
            })
        }
        _ => {
            let message = &body["choices"][0]["message"];
            if !message.is_object() {
                return Err("the response has no `choices[0].message`".into());
            }
            let text = message["content"]
                .as_str()
                .or_else(|| message["refusal"].as_str())
                .unwrap_or_default()
                .to_string();
            let mut calls = Vec::new();
            for c in message["tool_calls"].as_array().into_iter().flatten() {
                let f = &c["function"];
                let raw = f["arguments"].as_str().unwrap_or("{}");
                calls.push(ToolCall {
                    id: c["id"]
                        .as_str()
                        .ok_or("a tool call has no `id`")?
                        .to_string(),
                    name: f["name"]
                        .as_str()
                        .ok_or("a tool call has no `function.name`")?
                        .to_string(),
                    args: serde_json::from_str(raw).unwrap_or_else(|_| json!(raw)),
                });
            }
            Ok(TurnReply {
                tokens_in: body["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                tokens_out: body["usage"]["completion_tokens"]
                    .as_u64()
                    .unwrap_or_else(|| estimate_tokens(&text)),
                text,
                calls,
            })
        }
    }
}

/// Asks an HTTP provider for one turn (blocking).
pub fn call(
    req: &Request,
    messages: &[Message],
    tools: &[ToolSpec],
) -> Result<TurnReply, CallError> {
    let (url, body) = build(req, messages, tools);
    let (who, json) = super::http::post(req, &url, &body)?;
    parse(req.provider, &json).map_err(|e| CallError::transient(format!("{who}: {e}")))
}

/// The conversation for the `command` provider's standard input (docs/agents.md).
pub fn command_input(system: Option<&str>, messages: &[Message], tools: &[ToolSpec]) -> Json {
    let msgs: Vec<Json> = messages
        .iter()
        .map(|m| match m {
            Message::User(t) => json!({ "role": "user", "content": t }),
            Message::Assistant { text, calls } => json!({
                "role": "assistant", "content": text,
                "tool_calls": calls.iter().map(call_json).collect::<Vec<_>>(),
            }),
            Message::Results(rs) => json!({
                "role": "tool_results",
                "results": rs.iter().map(|r| json!({
                    "id": r.id, "name": r.name, "content": r.content, "is_error": r.is_error,
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({
        "system": system,
        "messages": msgs,
        "tools": tools.iter().map(|t| json!({
            "name": t.name, "description": t.description, "parameters": t.schema,
        })).collect::<Vec<_>>(),
    })
}

/// Reads the `command` provider's reply: `{"text": ..., "tool_calls": [{"id", "name", "args"}]}`,
/// or plain text (an answer without calls).
pub fn command_reply(stdout: &str, tokens_in: u64) -> Result<TurnReply, String> {
    let trimmed = stdout.trim();
    let parsed: Option<Json> = serde_json::from_str(trimmed)
        .ok()
        .filter(|v: &Json| v.get("tool_calls").is_some() || v.get("text").is_some());
    let Some(v) = parsed else {
        return Ok(TurnReply {
            text: stdout.to_string(),
            calls: Vec::new(),
            tokens_in,
            tokens_out: estimate_tokens(stdout),
        });
    };
    let mut calls = Vec::new();
    for (i, c) in v["tool_calls"].as_array().into_iter().flatten().enumerate() {
        let name = c["name"]
            .as_str()
            .ok_or_else(|| format!("tool call {} of the reply has no `name`", i + 1))?;
        calls.push(ToolCall {
            id: c["id"]
                .as_str()
                .map_or_else(|| format!("call_{}", i + 1), str::to_string),
            name: name.to_string(),
            args: c.get("args").cloned().unwrap_or_else(|| json!({})),
        });
    }
    let text = v["text"].as_str().unwrap_or_default().to_string();
    Ok(TurnReply {
        tokens_in: v["tokens_in"].as_u64().unwrap_or(tokens_in),
        tokens_out: v["tokens_out"]
            .as_u64()
            .unwrap_or_else(|| estimate_tokens(trimmed)),
        text,
        calls,
    })
}

/// `text` cut to `max` bytes for the conversation: its head and tail, and a mark between.
pub fn cut(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_string(), false);
    }
    let half = max / 2;
    let mut head = half;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - half;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    let dropped = tail - head;
    (
        format!(
            "{}\n[flowc: {dropped} bytes cut; the whole result is in the journal]\n{}",
            &text[..head],
            &text[tail..]
        ),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(provider: Provider) -> Request {
        Request {
            model: "coder".into(),
            provider,
            name: "m".into(),
            base_url: Some("http://127.0.0.1:9".into()),
            api_key: None,
            system: Some("be brief".into()),
            prompt: "fix it".into(),
            schema: None,
            structured: false,
            temperature: None,
            max_tokens: None,
            timeout: Duration::from_secs(1),
        }
    }

    fn conversation() -> Vec<Message> {
        vec![
            Message::User("fix it".into()),
            Message::Assistant {
                text: "looking".into(),
                calls: vec![ToolCall {
                    id: "c1".into(),
                    name: "read_file".into(),
                    args: json!({ "path": "a.sh" }),
                }],
            },
            Message::Results(vec![ToolResult {
                id: "c1".into(),
                name: "read_file".into(),
                content: "echo hi".into(),
                is_error: false,
            }]),
        ]
    }

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "read_file".into(),
            description: "read".into(),
            schema: json!({ "type": "object" }),
        }]
    }

    #[test]
    fn openai_turns_carry_tool_calls_and_results() {
        let (_, body) = build(&req(Provider::OpenAi), &conversation(), &tools());
        let m = &body["messages"];
        assert_eq!(m[0]["role"], "system");
        assert_eq!(m[1]["content"], "fix it");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"path\":\"a.sh\"}"
        );
        assert_eq!(m[3]["role"], "tool");
        assert_eq!(m[3]["tool_call_id"], "c1");
        assert_eq!(body["tools"][0]["function"]["name"], "read_file");
    }

    #[test]
    fn anthropic_turns_carry_tool_use_and_results() {
        let (_, body) = build(&req(Provider::Anthropic), &conversation(), &tools());
        let m = &body["messages"];
        assert_eq!(m[1]["content"][1]["type"], "tool_use");
        assert_eq!(m[1]["content"][1]["input"]["path"], "a.sh");
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0]["tool_use_id"], "c1");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(body["system"], "be brief");
    }

    #[test]
    fn parallel_calls_are_parsed_in_order() {
        let openai = json!({ "choices": [{ "message": { "content": null, "tool_calls": [
            { "id": "a", "type": "function", "function": { "name": "x", "arguments": "{\"n\":1}" } },
            { "id": "b", "type": "function", "function": { "name": "y", "arguments": "not json" } }
        ] } }], "usage": { "prompt_tokens": 5, "completion_tokens": 2 } });
        let r = parse(Provider::OpenAi, &openai).expect("parses");
        assert_eq!(r.calls.len(), 2);
        assert_eq!(r.calls[0].args, json!({ "n": 1 }));
        assert_eq!(r.calls[1].args, json!("not json"));
        let anthropic = json!({ "content": [
            { "type": "text", "text": "ok" },
            { "type": "tool_use", "id": "t1", "name": "x", "input": { "n": 2 } },
            { "type": "tool_use", "id": "t2", "name": "y", "input": {} }
        ], "usage": { "input_tokens": 3, "output_tokens": 4 } });
        let r = parse(Provider::Anthropic, &anthropic).expect("parses");
        assert_eq!(
            r.calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["t1", "t2"]
        );
        assert_eq!((r.text.as_str(), r.tokens_in, r.tokens_out), ("ok", 3, 4));
    }

    #[test]
    fn long_results_keep_head_and_tail() {
        let text = format!("{}{}", "a".repeat(1000), "z".repeat(1000));
        let (cut_text, truncated) = cut(&text, 100);
        assert!(truncated);
        assert!(cut_text.starts_with(&"a".repeat(50)) && cut_text.ends_with(&"z".repeat(50)));
        assert!(cut_text.contains("1900 bytes cut"));
        assert_eq!(cut("short", 100), ("short".to_string(), false));
    }

    #[test]
    fn replies_round_trip_through_the_journal() {
        let r = TurnReply {
            text: "t".into(),
            calls: vec![ToolCall {
                id: "1".into(),
                name: "n".into(),
                args: json!({}),
            }],
            tokens_in: 1,
            tokens_out: 2,
        };
        assert_eq!(TurnReply::from_json(&r.to_json(), 1, 2), Some(r));
    }
}
