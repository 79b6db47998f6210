//! The process-wide redactor: every resolved secret value, in the forms it
//! is likely to be printed in, replaced by `[redacted]`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::Value as Json;
use std::sync::Mutex;

/// What replaces a secret.
pub const MASK: &str = "[redacted]";
/// Shorter texts are not redacted: they would mangle ordinary output.
const MIN_LEN: usize = 4;
/// Base64 fragments shorter than this are not redacted.
const MIN_B64: usize = 8;

static PATTERNS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The forms of `value` to redact: itself, each of its lines, its base64
/// (standard and URL-safe alphabets, at any alignment inside a longer
/// encoded text) and its URL-encoded forms.
pub fn forms(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String, min: usize| {
        if s.len() >= min && !out.contains(&s) {
            out.push(s);
        }
    };
    add(value.to_string(), MIN_LEN);
    for line in value.lines() {
        add(line.trim_end_matches('\r').to_string(), MIN_LEN);
    }
    let bytes = value.as_bytes();
    for engine in [&STANDARD, &URL_SAFE] {
        add(engine.encode(bytes), MIN_B64);
        // Inside a longer text the value may start 0, 1 or 2 bytes into a
        // 3-byte group; the groups made of its bytes alone encode the same
        // way whatever surrounds them.
        for offset in 0..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            let first = offset.div_ceil(3);
            let last = (offset + bytes.len()) / 3;
            if last > first {
                add(encoded[4 * first..4 * last].to_string(), MIN_B64);
            }
        }
    }
    for upper in [true, false] {
        for plus in [false, true] {
            let enc = url_encode(value, upper, plus);
            if enc != value {
                add(enc, MIN_LEN);
            }
        }
    }
    // Longest first, so a form is never half-replaced by a shorter one.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn url_encode(value: &str, upper: bool, plus: bool) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' if plus => out.push('+'),
            _ if upper => out.push_str(&format!("%{b:02X}")),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Registers a secret value: from now on it is redacted everywhere.
pub fn register(value: &str) {
    let new = forms(value);
    if new.is_empty() {
        return;
    }
    let mut patterns = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    for f in new {
        if !patterns.contains(&f) {
            patterns.push(f);
        }
    }
    patterns.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret form replaced (unchanged, and not
/// copied, when it holds none).
pub fn redact(text: String) -> String {
    let patterns = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    if patterns.iter().any(|p| text.contains(p.as_str())) {
        redact_with(&text, &patterns)
    } else {
        text
    }
}

fn redact_with(text: &str, patterns: &[String]) -> String {
    let mut out = text.to_string();
    for p in patterns {
        if out.contains(p.as_str()) {
            out = out.replace(p.as_str(), MASK);
        }
    }
    out
}

/// Redacts every string (and object key) inside a JSON value, in place.
pub fn redact_json(value: &mut Json) {
    let patterns = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    if patterns.is_empty() {
        return;
    }
    walk(value, &patterns);
}

fn walk(value: &mut Json, patterns: &[String]) {
    match value {
        Json::String(s) if patterns.iter().any(|p| s.contains(p.as_str())) => {
            *s = redact_with(s, patterns);
        }
        Json::Array(items) => items.iter_mut().for_each(|v| walk(v, patterns)),
        Json::Object(map) => {
            let keys: Vec<String> = map
                .keys()
                .filter(|k| patterns.iter().any(|p| k.contains(p.as_str())))
                .cloned()
                .collect();
            for k in keys {
                if let Some(v) = map.remove(&k) {
                    map.insert(redact_with(&k, patterns), v);
                }
            }
            map.values_mut().for_each(|v| walk(v, patterns));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_is_caught() {
        let secret = "s3cr3t value/with+odd&chars\nsecond-line-9";
        let patterns = forms(secret);
        let b64 = STANDARD.encode(format!("{secret}\n"));
        let prefixed = STANDARD.encode(format!("user:{secret}"));
        let url = url_encode(secret, true, false);
        for text in [
            format!("plain {secret} end"),
            format!("b64 {b64}"),
            format!("prefixed {prefixed}"),
            format!("url ?q={url}&x=1"),
            "only the second line: second-line-9".to_string(),
        ] {
            let red = redact_with(&text, &patterns);
            assert!(!red.contains(secret), "{red}");
            assert!(!red.contains("second-line-9"), "{red}");
            assert!(!red.contains("s3cr3t"), "{red}");
            assert!(!red.contains(&b64[..12]), "{red}");
            assert!(!red.contains(&url), "{red}");
            assert!(red.contains(MASK), "{red}");
        }
    }

    #[test]
    fn short_values_are_left_alone() {
        assert!(forms("abc").is_empty());
        assert_eq!(redact_with("abc", &forms("abc")), "abc");
    }

    #[test]
    fn json_strings_and_keys() {
        let patterns = forms("hunter22");
        let mut v = serde_json::json!({ "a": ["x hunter22 y"], "hunter22": 1, "n": 3 });
        walk(&mut v, &patterns);
        assert_eq!(
            v,
            serde_json::json!({ "a": ["x [redacted] y"], "[redacted]": 1, "n": 3 })
        );
    }
}
