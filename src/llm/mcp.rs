//! A small Model Context Protocol client over stdio: newline-delimited JSON-RPC 2.0,
//! `initialize`, `tools/list` (with pages) and `tools/call`, one request at a time.
//!
//! Written here rather than taken from the official `rmcp` SDK: flowc needs four
//! messages of the protocol, and the SDK brings its own async stack, macros and
//! schema generation into a build that is already dominated by its dependencies.

use serde_json::{Value as Json, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The protocol version asked for; servers answer with the one they speak.
pub const PROTOCOL_VERSION: &str = "2025-06-18";
/// Longest message accepted from a server, in bytes.
const LINE_MAX: usize = 32 << 20;

/// A tool a server lists.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// Its name at the server.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The JSON Schema of its arguments.
    pub schema: Json,
}

/// What a `tools/call` gave back.
#[derive(Debug, Clone, PartialEq)]
pub struct McpResult {
    /// The text content, joined.
    pub text: String,
    /// The server said the call failed.
    pub is_error: bool,
}

/// A connected server.
pub struct Client {
    writer: Box<dyn AsyncWrite + Unpin + Send>,
    reader: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    next_id: u64,
    /// The server's name and version, from `initialize`.
    pub server: String,
    /// How long one request may take.
    pub timeout: Duration,
}

impl Client {
    /// Connects over a server's standard input and output and initialises the session.
    pub async fn connect(
        writer: Box<dyn AsyncWrite + Unpin + Send>,
        reader: Box<dyn AsyncRead + Unpin + Send>,
        timeout: Duration,
    ) -> Result<Client, String> {
        let mut c = Client {
            writer,
            reader: BufReader::new(reader),
            next_id: 0,
            server: String::new(),
            timeout,
        };
        let init = c
            .request(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": { "name": "flowc", "version": env!("CARGO_PKG_VERSION") },
                }),
            )
            .await?;
        let info = &init["serverInfo"];
        c.server = format!(
            "{} {}",
            info["name"].as_str().unwrap_or("server"),
            info["version"].as_str().unwrap_or("")
        )
        .trim()
        .to_string();
        c.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await?;
        Ok(c)
    }

    /// Every tool the server lists, following `nextCursor`.
    pub async fn list_tools(&mut self) -> Result<Vec<McpTool>, String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            for t in page["tools"].as_array().into_iter().flatten() {
                let Some(name) = t["name"].as_str() else {
                    continue;
                };
                out.push(McpTool {
                    name: name.to_string(),
                    description: t["description"].as_str().unwrap_or_default().to_string(),
                    schema: match &t["inputSchema"] {
                        Json::Object(_) => t["inputSchema"].clone(),
                        _ => json!({ "type": "object" }),
                    },
                });
            }
            match page["nextCursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(out),
            }
        }
        Err("the server's tool list did not end after 100 pages".into())
    }

    /// Calls a tool.
    pub async fn call(&mut self, name: &str, args: &Json) -> Result<McpResult, String> {
        let r = self
            .request("tools/call", json!({ "name": name, "arguments": args }))
            .await?;
        let mut text = String::new();
        for c in r["content"].as_array().into_iter().flatten() {
            if !text.is_empty() {
                text.push('\n');
            }
            match c["type"].as_str() {
                Some("text") => text.push_str(c["text"].as_str().unwrap_or_default()),
                Some(other) => text.push_str(&format!("[{other} content]")),
                None => {}
            }
        }
        if text.is_empty() && !r["structuredContent"].is_null() {
            text = r["structuredContent"].to_string();
        }
        Ok(McpResult {
            text,
            is_error: r["isError"] == true,
        })
    }

    async fn send(&mut self, msg: &Json) -> Result<(), String> {
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("cannot write to the server (it exited?): {e}"))?;
        self.writer
            .flush()
            .await
            .map_err(|e| format!("cannot write to the server (it exited?): {e}"))
    }

    /// Sends a request and waits for its response, answering what the server asks meanwhile.
    async fn request(&mut self, method: &str, params: Json) -> Result<Json, String> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await?;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.response(id)).await {
            Ok(r) => r.map_err(|e| format!("`{method}`: {e}")),
            Err(_) => Err(format!(
                "`{method}`: the server did not answer within {}",
                crate::ir::format_ms(timeout.as_millis() as u64)
            )),
        }
    }

    async fn response(&mut self, id: u64) -> Result<Json, String> {
        loop {
            let line = self.read_line().await?;
            if line.trim().is_empty() {
                continue;
            }
            let msg: Json = match serde_json::from_str(&line) {
                Ok(m) => m,
                // Not a protocol message (a server that logs to stdout): skipped.
                Err(_) => continue,
            };
            if msg["id"] == json!(id) && msg.get("method").is_none() {
                if let Some(e) = msg.get("error") {
                    return Err(format!(
                        "the server answered error {}: {}",
                        e["code"],
                        e["message"].as_str().unwrap_or("no message")
                    ));
                }
                return Ok(msg["result"].clone());
            }
            if let (Some(method), Some(req_id)) = (msg["method"].as_str(), msg.get("id")) {
                // A request from the server: ping is answered, the rest refused.
                let reply = if method == "ping" {
                    json!({ "jsonrpc": "2.0", "id": req_id, "result": {} })
                } else {
                    json!({ "jsonrpc": "2.0", "id": req_id,
                            "error": { "code": -32601, "message": "flowc does not offer this" } })
                };
                self.send(&reply).await?;
            }
        }
    }

    async fn read_line(&mut self) -> Result<String, String> {
        let mut buf = Vec::new();
        loop {
            let chunk = self
                .reader
                .fill_buf()
                .await
                .map_err(|e| format!("cannot read from the server: {e}"))?;
            if chunk.is_empty() {
                return Err("the server closed its output (it exited?)".into());
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    buf.extend_from_slice(&chunk[..i]);
                    self.reader.consume(i + 1);
                    break;
                }
                None => {
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    self.reader.consume(n);
                }
            }
            if buf.len() > LINE_MAX {
                return Err(format!("the server sent a message over {LINE_MAX} bytes"));
            }
        }
        String::from_utf8(buf).map_err(|_| "the server sent a message that is not UTF-8".into())
    }
}

/// Checks `value` against the parts of JSON Schema tool schemas use: `type`,
/// `properties`, `required`, `additionalProperties: false`, `items`, `enum`,
/// `anyOf`/`oneOf`. The first problem, with its path.
pub fn validate(value: &Json, schema: &Json) -> Result<(), String> {
    check(value, schema, "arguments")
}

fn check(v: &Json, s: &Json, at: &str) -> Result<(), String> {
    let Json::Object(s) = s else {
        return Ok(());
    };
    if let Some(options) = s
        .get("anyOf")
        .or_else(|| s.get("oneOf"))
        .and_then(Json::as_array)
        && !options.is_empty()
        && !options.iter().any(|o| check(v, o, at).is_ok())
    {
        return Err(format!("{at} matches none of the allowed shapes"));
    }
    if let Some(allowed) = s.get("enum").and_then(Json::as_array)
        && !allowed.contains(v)
    {
        return Err(format!(
            "{at} must be one of {}",
            Json::Array(allowed.clone())
        ));
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| is_type(v, t)) {
        return Err(format!(
            "{at} must be {}, not {}",
            types.join(" or "),
            kind(v)
        ));
    }
    if let Json::Object(m) = v {
        for r in s
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = r.as_str()
                && !m.contains_key(name)
            {
                return Err(format!("{at} is missing `{name}`"));
            }
        }
        let props = s.get("properties").and_then(Json::as_object);
        for (k, val) in m {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check(val, ps, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Json::Bool(false)) => {
                    return Err(format!("{at} has no field `{k}`"));
                }
                None => {}
            }
        }
    }
    if let (Json::Array(items), Some(item_schema)) = (v, s.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item, item_schema, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn is_type(v: &Json, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        _ => true,
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let s = json!({
            "type": "object",
            "properties": {
                "repo_path": { "type": "string" },
                "max_count": { "type": "integer" },
                "mode": { "enum": ["a", "b"] },
                "files": { "type": "array", "items": { "type": "string" } }
            },
            "required": ["repo_path"],
            "additionalProperties": false
        });
        assert!(validate(&json!({ "repo_path": "." }), &s).is_ok());
        let e = |v: Json| validate(&v, &s).err().unwrap_or_default();
        assert!(e(json!({})).contains("missing `repo_path`"));
        assert!(e(json!({ "repo_path": 1 })).contains("arguments.repo_path must be string"));
        assert!(e(json!({ "repo_path": ".", "x": 1 })).contains("no field `x`"));
        assert!(e(json!({ "repo_path": ".", "max_count": 1.5 })).contains("integer"));
        assert!(e(json!({ "repo_path": ".", "mode": "c" })).contains("one of"));
        assert!(e(json!({ "repo_path": ".", "files": ["a", 2] })).contains("files[1]"));
        assert!(e(json!("x")).contains("must be object"));
    }

    #[tokio::test]
    async fn a_session_lists_and_calls_over_pipes() {
        // A server written as a shell script: it answers by line number.
        let script = r#"
read init; echo '{"jsonrpc":"2.0","id":1,"result":{"serverInfo":{"name":"t","version":"1"}}}'
read note
read list; echo 'log line that is not json'
echo '{"jsonrpc":"2.0","id":"s1","method":"ping"}'
read pong
echo '{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}],"nextCursor":"p2"}}'
read list2; echo '{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"two"}]}}'
read call; echo '{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"hi"}],"isError":true}}'
"#;
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sh starts");
        let w = Box::new(child.stdin.take().expect("stdin"));
        let r = Box::new(child.stdout.take().expect("stdout"));
        let mut c = Client::connect(w, r, Duration::from_secs(5))
            .await
            .expect("initialises");
        assert_eq!(c.server, "t 1");
        let tools = c.list_tools().await.expect("lists");
        assert_eq!(
            tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["echo", "two"]
        );
        assert_eq!(tools[1].schema, json!({ "type": "object" }));
        let r = c.call("echo", &json!({})).await.expect("calls");
        assert_eq!(
            r,
            McpResult {
                text: "hi".into(),
                is_error: true
            }
        );
        // The server has gone: a clear error, whether it is seen writing or reading.
        let e = c.call("echo", &json!({})).await.err().unwrap_or_default();
        assert!(e.contains("exited"), "{e}");
    }
}
