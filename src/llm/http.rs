//! The HTTP providers: OpenAI-compatible Chat Completions and Anthropic Messages.
//!
//! Calls are blocking (ureq) and run on a blocking thread; the request has one
//! overall timeout. `build` is separate from `call` so the executor can
//! journal exactly the body that is sent (the key travels in a header only).

use super::{CallError, Reply, Request, estimate_tokens};
use crate::ir::Provider;
use crate::secrets::redact;
use serde_json::{Value as Json, json};

/// Largest response body read, in bytes.
const BODY_LIMIT: u64 = 16 << 20;
/// Anthropic requires a reply limit; this one is used when neither the step nor the model sets one.
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u64 = 4096;

/// The provider's default base URL.
pub fn default_base_url(provider: Provider) -> &'static str {
    match provider {
        Provider::Anthropic => "https://api.anthropic.com",
        _ => "https://api.openai.com/v1",
    }
}

/// The URL and JSON body of a request.
pub fn build(req: &Request) -> (String, Json) {
    let base = req
        .base_url
        .as_deref()
        .unwrap_or(default_base_url(req.provider))
        .trim_end_matches('/');
    let system = super::system_prompt(req.system.as_deref(), req.schema.as_ref());
    match req.provider {
        Provider::Anthropic => {
            let mut body = json!({
                "model": req.name,
                "max_tokens": req.max_tokens.unwrap_or(ANTHROPIC_DEFAULT_MAX_TOKENS),
                "messages": [{ "role": "user", "content": req.prompt }],
            });
            if let Some(s) = system {
                body["system"] = json!(s);
            }
            if let Some(t) = req.temperature {
                body["temperature"] = json!(t);
            }
            (format!("{base}/v1/messages"), body)
        }
        _ => {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({ "role": "system", "content": s }));
            }
            messages.push(json!({ "role": "user", "content": req.prompt }));
            let mut body = json!({ "model": req.name, "messages": messages });
            if let Some(t) = req.temperature {
                body["temperature"] = json!(t);
            }
            if let Some(n) = req.max_tokens {
                body["max_tokens"] = json!(n);
            }
            if req.structured
                && let Some(schema) = &req.schema
                && schema["type"] == "object"
            {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": { "name": "output", "schema": schema, "strict": is_strict(schema) },
                });
            }
            (format!("{base}/chat/completions"), body)
        }
    }
}

/// Strict mode needs every object closed; `json` fields (`{}`) are open.
fn is_strict(schema: &Json) -> bool {
    let Json::Object(m) = schema else {
        return true;
    };
    if m.is_empty() {
        return false;
    }
    let maps = ["properties", "$defs"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Json::as_object))
        .flat_map(|p| p.values());
    let lists = m
        .get("anyOf")
        .and_then(Json::as_array)
        .into_iter()
        .flatten();
    let items = m.get("items").into_iter();
    maps.chain(lists).chain(items).all(is_strict)
}

/// Reads the reply text and token counts from a response body.
pub fn parse(provider: Provider, body: &Json) -> Result<Reply, String> {
    let (text, tin, tout) = match provider {
        Provider::Anthropic => {
            let blocks = body["content"]
                .as_array()
                .ok_or("the response has no `content` list")?;
            let text: String = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            (
                text,
                &body["usage"]["input_tokens"],
                &body["usage"]["output_tokens"],
            )
        }
        _ => {
            let message = &body["choices"][0]["message"];
            let text = match (message["content"].as_str(), message["refusal"].as_str()) {
                (Some(t), _) => t.to_string(),
                (None, Some(r)) => r.to_string(),
                (None, None) => {
                    return Err("the response has no `choices[0].message.content`".into());
                }
            };
            (
                text,
                &body["usage"]["prompt_tokens"],
                &body["usage"]["completion_tokens"],
            )
        }
    };
    Ok(Reply {
        tokens_in: tin.as_u64().unwrap_or(0),
        tokens_out: tout.as_u64().unwrap_or_else(|| estimate_tokens(&text)),
        text,
    })
}

/// `Retry-After` in milliseconds (the seconds form; an HTTP date is ignored).
pub fn retry_after(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).min(3_600_000.0) as u64)
}

/// Classifies an HTTP status that is not a success.
pub fn classify(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429 | 500..=599)
}

/// The gist of an error body: the API's `error.message` when there is one.
fn gist(body: &str) -> String {
    let parsed: Option<Json> = serde_json::from_str(body).ok();
    let msg = parsed
        .as_ref()
        .and_then(|j| {
            j["error"]["message"]
                .as_str()
                .or_else(|| j["error"].as_str())
                .or_else(|| j["message"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string());
    let mut msg: String = msg.chars().take(300).collect();
    if msg.len() < body.trim().len() && parsed.is_none() {
        msg.push('…');
    }
    msg
}

/// Sends a request and waits for the reply (blocking).
pub fn call(req: &Request) -> Result<Reply, CallError> {
    let (url, body) = build(req);
    let (who, json) = post(req, &url, &body)?;
    parse(req.provider, &json).map_err(|e| CallError::transient(format!("{who}: {e}")))
}

/// POSTs `body` to `url` with the request's key and timeout; the JSON answer,
/// and how the model is named in messages.
pub fn post(req: &Request, url: &str, body: &Json) -> Result<(String, Json), CallError> {
    let who = format!(
        "model `{}` ({} `{}` at {url})",
        req.model,
        req.provider.word(),
        req.name
    );
    let key = req.api_key.as_deref();
    // The key joins the secrets every message is redacted of (a server may echo it).
    if let Some(k) = key {
        crate::secrets::register(k);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(req.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("flowc/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent.post(url).header("content-type", "application/json");
    match (req.provider, key) {
        (Provider::Anthropic, k) => {
            request = request.header("anthropic-version", "2023-06-01");
            if let Some(k) = k {
                request = request.header("x-api-key", k);
            }
        }
        (_, Some(k)) => request = request.header("authorization", format!("Bearer {k}")),
        (_, None) => {}
    }
    let mut response = match request.send(body.to_string()) {
        Ok(r) => r,
        Err(e) => return Err(transport_error(&who, e)),
    };
    let status = response.status().as_u16();
    let wait = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(retry_after);
    let text = match response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_string()
    {
        Ok(t) => t,
        Err(e) => return Err(transport_error(&who, e)),
    };
    if !(200..300).contains(&status) {
        let transient = classify(status);
        let hint = match status {
            401 | 403 => " (check the API key)",
            404 => " (check `name` and `base_url`)",
            _ => "",
        };
        return Err(CallError {
            transient,
            retry_after_ms: wait,
            status: Some(status),
            message: redact(format!(
                "{who} answered HTTP {status}{hint}: {}",
                gist(&text)
            )),
        });
    }
    let json: Json = serde_json::from_str(&text).map_err(|e| {
        CallError::transient(redact(format!(
            "{who} sent a response that is not JSON: {e}"
        )))
    })?;
    Ok((who, json))
}

fn transport_error(who: &str, e: ureq::Error) -> CallError {
    use ureq::Error as E;
    let transient = matches!(
        e,
        E::Io(_)
            | E::Timeout(_)
            | E::HostNotFound
            | E::ConnectionFailed
            | E::Protocol(_)
            | E::Tls(_)
    );
    let what = match &e {
        E::Timeout(_) => "did not answer in time".to_string(),
        E::HostNotFound => "could not be found (DNS)".to_string(),
        E::ConnectionFailed => "could not be reached".to_string(),
        E::Http(_) => {
            "could not be asked: the request is malformed (is the API key a valid header value?)"
                .to_string()
        }
        other => format!("could not be reached: {other}"),
    };
    CallError {
        transient,
        retry_after_ms: None,
        status: None,
        message: redact(format!("{who} {what}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(provider: Provider) -> Request {
        Request {
            model: "planner".into(),
            provider,
            name: "m-1".into(),
            base_url: Some("http://127.0.0.1:9/v1/".into()),
            api_key: Some("sk-secret-key".into()),
            system: Some("be brief".into()),
            prompt: "hello".into(),
            schema: Some(
                json!({ "type": "object", "properties": {}, "required": [], "additionalProperties": false }),
            ),
            structured: true,
            temperature: Some(0.2),
            max_tokens: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn openai_body_has_messages_and_schema() {
        let (url, body) = build(&req(Provider::OpenAi));
        assert_eq!(url, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(body["messages"][0]["role"], "system");
        assert!(
            body["messages"][0]["content"]
                .as_str()
                .is_some_and(|s| s.starts_with("be brief") && s.contains("JSON Schema"))
        );
        assert_eq!(body["messages"][1]["content"], "hello");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert!(body.get("max_tokens").is_none());
        assert!(!body.to_string().contains("sk-secret-key"));
        assert!(!is_strict(
            &json!({ "type": "object", "properties": { "x": {} } })
        ));
        assert!(is_strict(
            &json!({ "type": "array", "items": { "type": "string" } })
        ));
    }

    #[test]
    fn anthropic_body_has_system_and_default_limit() {
        let (url, body) = build(&req(Provider::Anthropic));
        assert_eq!(url, "http://127.0.0.1:9/v1/v1/messages");
        assert_eq!(body["max_tokens"], ANTHROPIC_DEFAULT_MAX_TOKENS);
        assert!(
            body["system"]
                .as_str()
                .is_some_and(|s| s.contains("be brief"))
        );
        assert!(body.get("response_format").is_none());
    }

    #[test]
    fn replies_are_parsed() {
        let r = parse(
            Provider::OpenAi,
            &json!({ "choices": [{ "message": { "content": "hi" } }], "usage": { "prompt_tokens": 7, "completion_tokens": 2 } }),
        )
        .ok();
        assert_eq!(
            r,
            Some(Reply {
                text: "hi".into(),
                tokens_in: 7,
                tokens_out: 2
            })
        );
        let r = parse(
            Provider::Anthropic,
            &json!({ "content": [{ "type": "text", "text": "a" }, { "type": "text", "text": "b" }], "usage": { "input_tokens": 3, "output_tokens": 4 } }),
        )
        .ok();
        assert_eq!(
            r.map(|r| (r.text, r.tokens_in, r.tokens_out)),
            Some(("ab".into(), 3, 4))
        );
        assert!(parse(Provider::OpenAi, &json!({ "choices": [] })).is_err());
    }

    #[test]
    fn statuses_and_retry_after() {
        assert!(classify(429) && classify(503) && classify(529));
        assert!(!classify(400) && !classify(401) && !classify(404));
        assert_eq!(retry_after("2"), Some(2000));
        assert_eq!(retry_after("0.5"), Some(500));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn unreachable_server_is_transient_and_keyless() {
        let mut r = req(Provider::OpenAi);
        r.base_url = Some("http://127.0.0.1:1/v1".into());
        let e = call(&r).err();
        assert!(e.as_ref().is_some_and(|e| e.transient), "{e:?}");
        assert!(
            e.is_some_and(|e| e.message.contains("`planner`") && !e.message.contains("sk-secret"))
        );
    }
}
