//! What of a model call is journaled and what its reply means: the prompt
//! and reply caps (redacted before the cut), a recorded call answered again
//! for `--replay-llm`, and a reply checked against the step's `output` type.

use super::attempt::AttemptEnd;
use super::eval::validate;
use crate::ir::LlmStep;
use crate::journal::OUTPUT_CAP;
use crate::llm::{Reply, schema};
use serde_json::{Value as Json, json};

/// Longest prompt text kept in the journal per message (the tail is kept).
const PROMPT_CAP: usize = 4 * OUTPUT_CAP;

/// The request body as journaled: each message's text within `PROMPT_CAP`.
pub(super) fn journaled_body(mut body: Json) -> Json {
    let clip = |v: &mut Json| {
        if let Some(text) = v.as_str()
            && text.len() > PROMPT_CAP
        {
            // Redacted before the cut, which could fall inside a secret.
            let text = &crate::secrets::redact(text.to_string());
            let cut = super::accept::tail_cut(text, PROMPT_CAP);
            *v = json!(format!("[flowc: {cut} bytes dropped]{}", &text[cut..]));
        }
    };
    if let Some(messages) = body["messages"].as_array_mut() {
        for m in messages {
            clip(&mut m["content"]);
        }
    }
    if body.get("system").is_some() {
        clip(&mut body["system"]);
    }
    body
}

/// Keeps journaled reply text within the output cap (the tail is kept).
pub(super) fn cap(text: &str) -> String {
    if text.len() <= OUTPUT_CAP {
        return text.to_string();
    }
    // Redacted before the cut, which could fall inside a secret.
    let text = &crate::secrets::redact(text.to_string());
    match super::accept::tail_cut(text, OUTPUT_CAP) {
        0 => text.to_string(),
        cut => format!("[flowc: {cut} bytes dropped]{}", &text[cut..]),
    }
}

/// What a reply means: a result, or a rejection whose feedback re-prompts.
pub(super) fn reply_end(llm: &LlmStep, reply: Reply, cost_usd: f64) -> AttemptEnd {
    let result = json!({
        "text": reply.text,
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "cost_usd": cost_usd,
    });
    typed_end(llm.output.as_ref(), result, &reply.text)
}

/// A model's final text against the step's declared `output` type: the result
/// with `output` parsed, or a rejection whose feedback says what is wrong.
pub fn typed_end(output: Option<&crate::ir::Ty>, mut result: Json, text: &str) -> AttemptEnd {
    let Some(ty) = output else {
        return AttemptEnd::Result(result);
    };
    let parsed: Json = match serde_json::from_str(schema::strip_fence(text)) {
        Ok(v) => v,
        Err(e) => {
            result["output"] = Json::Null;
            return AttemptEnd::Rejected(
                result,
                format!(
                    "the reply is not valid JSON ({e}); reply with only a JSON value of type `{ty}`"
                ),
            );
        }
    };
    if let Err(e) = validate(&parsed, ty) {
        result["output"] = parsed;
        return AttemptEnd::Rejected(
            result,
            format!("the reply does not match `output: {ty}`: {e}"),
        );
    }
    result["output"] = parsed;
    AttemptEnd::Result(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_prompts_are_clipped_in_the_journal_only() {
        let long = "x".repeat(PROMPT_CAP + 10);
        let body = json!({
            "messages": [{ "role": "user", "content": long }, { "role": "user", "content": "short" }],
            "system": "brief",
        });
        let j = journaled_body(body);
        let first = j["messages"][0]["content"].as_str().unwrap_or_default();
        assert!(
            first.starts_with("[flowc: 10 bytes dropped]"),
            "{}",
            &first[..40]
        );
        assert_eq!(first.len(), PROMPT_CAP + "[flowc: 10 bytes dropped]".len());
        assert_eq!(j["messages"][1]["content"], "short");
        assert_eq!(j["system"], "brief");
    }
}
