//! The process-wide redactor: every resolved secret value, in the forms it
//! is likely to be printed in, replaced by `[redacted]`.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde_json::Value as Json;
use std::sync::{Arc, Mutex, RwLock};

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

/// The registered forms and the automaton that finds them all in one pass.
struct Matcher {
    finder: AhoCorasick,
}

static MATCHER: RwLock<Option<Arc<Matcher>>> = RwLock::new(None);

fn matcher() -> Option<Arc<Matcher>> {
    MATCHER.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Registers a secret value: from now on it is redacted everywhere.
pub fn register(value: &str) {
    let new = forms(value);
    if new.is_empty() {
        return;
    }
    let mut patterns = PATTERNS.lock().unwrap_or_else(|p| p.into_inner());
    let before = patterns.len();
    for f in new {
        if !patterns.contains(&f) {
            patterns.push(f);
        }
    }
    if patterns.len() == before {
        return;
    }
    patterns.sort_by_key(|s| std::cmp::Reverse(s.len()));
    if let Some(m) = build(&patterns) {
        *MATCHER.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(m));
    }
}

fn build(patterns: &[String]) -> Option<Matcher> {
    let finder = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(patterns)
        .ok()?;
    Some(Matcher { finder })
}

/// `text` with every registered secret form replaced (unchanged, and not
/// copied, when it holds none).
pub fn redact(text: String) -> String {
    let Some(m) = matcher() else {
        return text;
    };
    match redact_with(&m, text.as_bytes()) {
        Some(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        None => text,
    }
}

/// `bytes` with every registered secret form replaced; `None` when it holds
/// none. For output captured before it is cut to its tail: redacting first
/// means a cut never leaves part of a secret.
pub fn redact_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    redact_with(&*matcher()?, bytes)
}

/// Finds the registered forms in `text` as it is and in its decoded views
/// (base64 lines joined, JSON escapes and percent-escapes decoded), and
/// masks the original bytes each match came from.
fn redact_with(m: &Matcher, text: &[u8]) -> Option<Vec<u8>> {
    let mut hits: Vec<(usize, usize)> = m
        .finder
        .find_iter(text)
        .map(|h| (h.start(), h.end()))
        .collect();
    for view in [
        View::unwrapped(text),
        View::json_unescaped(text),
        View::percent_decoded(text),
    ]
    .into_iter()
    .flatten()
    {
        hits.extend(
            m.finder
                .find_iter(&view.bytes)
                .map(|h| (view.start(h.start()), view.end(h.end()))),
        );
    }
    if hits.is_empty() {
        return None;
    }
    hits.sort_unstable();
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in hits {
        if end <= pos {
            continue;
        }
        if start >= pos {
            out.extend_from_slice(&text[pos..start]);
            out.extend_from_slice(MASK.as_bytes());
        }
        pos = end;
    }
    out.extend_from_slice(&text[pos..]);
    Some(out)
}

/// A decoded copy of a text and where each of its pieces came from.
struct View {
    bytes: Vec<u8>,
    /// (start in `bytes`, start in the text, length in the text, copied as is).
    pieces: Vec<(usize, usize, usize, bool)>,
}

impl View {
    fn new(cap: usize) -> View {
        View {
            bytes: Vec::with_capacity(cap),
            pieces: Vec::new(),
        }
    }

    /// Copies `text[from..to]` unchanged.
    fn copy(&mut self, text: &[u8], from: usize, to: usize) {
        if from < to {
            self.pieces.push((self.bytes.len(), from, to - from, true));
            self.bytes.extend_from_slice(&text[from..to]);
        }
    }

    /// `decoded` stands for the `len` bytes of the text at `at`.
    fn decoded(&mut self, at: usize, len: usize, decoded: &[u8]) {
        self.pieces.push((self.bytes.len(), at, len, false));
        self.bytes.extend_from_slice(decoded);
    }

    fn piece(&self, v: usize) -> (usize, usize, usize, bool) {
        let i = self.pieces.partition_point(|p| p.0 <= v).saturating_sub(1);
        self.pieces[i]
    }

    /// Where a match starting at `v` starts in the text.
    fn start(&self, v: usize) -> usize {
        let (vs, os, _, copied) = self.piece(v);
        if copied { os + (v - vs) } else { os }
    }

    /// Where a match ending at `v` (exclusive) ends in the text.
    fn end(&self, v: usize) -> usize {
        let (vs, os, len, copied) = self.piece(v.saturating_sub(1));
        if copied { os + (v - vs) } else { os + len }
    }

    /// Base64 wrapped into lines (GNU `base64` at 76 columns, PEM at 64):
    /// a line break after a line of at least 16 base64 characters, followed
    /// by another, is dropped.
    fn unwrapped(text: &[u8]) -> Option<View> {
        let b64 =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_');
        let mut view: Option<View> = None;
        let (mut copied, mut line) = (0, 0);
        for nl in memchr::memchr_iter(b'\n', text) {
            let body = text[line..nl]
                .strip_suffix(b"\r")
                .unwrap_or(&text[line..nl]);
            let next = text.get(nl + 1).copied();
            if body.len() >= 16 && body.iter().all(|&b| b64(b)) && next.is_some_and(b64) {
                let v = view.get_or_insert_with(|| View::new(text.len()));
                v.copy(text, copied, line + body.len());
                copied = nl + 1;
            }
            line = nl + 1;
        }
        let mut v = view?;
        v.copy(text, copied, text.len());
        Some(v)
    }

    /// JSON string escapes decoded: `\u0073`, surrogate pairs, `\n`, `\/`, ...
    fn json_unescaped(text: &[u8]) -> Option<View> {
        let mut view: Option<View> = None;
        let mut copied = 0;
        let mut i = memchr::memchr(b'\\', text)?;
        while i + 1 < text.len() {
            if text[i] != b'\\' {
                i += 1;
                continue;
            }
            let simple = match text[i + 1] {
                b'"' => Some(b'"'),
                b'\\' => Some(b'\\'),
                b'/' => Some(b'/'),
                b'b' => Some(8),
                b'f' => Some(12),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            let (len, ch) = if let Some(b) = simple {
                (2, Some(char::from(b)))
            } else {
                unicode_escape(&text[i..])
            };
            match ch {
                Some(c) => {
                    let v = view.get_or_insert_with(|| View::new(text.len()));
                    v.copy(text, copied, i);
                    let mut buf = [0u8; 4];
                    v.decoded(i, len, c.encode_utf8(&mut buf).as_bytes());
                    copied = i + len;
                    i += len;
                }
                None => i += 1,
            }
        }
        let mut v = view?;
        v.copy(text, copied, text.len());
        Some(v)
    }

    /// Percent-escapes decoded, every one of them (`%73%65%63...`).
    fn percent_decoded(text: &[u8]) -> Option<View> {
        let hex = |b: u8| (b as char).to_digit(16);
        let mut view: Option<View> = None;
        let mut copied = 0;
        for i in memchr::memchr_iter(b'%', text) {
            if i < copied {
                continue;
            }
            let (Some(h), Some(l)) = (
                text.get(i + 1).copied().and_then(hex),
                text.get(i + 2).copied().and_then(hex),
            ) else {
                continue;
            };
            let v = view.get_or_insert_with(|| View::new(text.len()));
            v.copy(text, copied, i);
            v.decoded(i, 3, &[(h * 16 + l) as u8]);
            copied = i + 3;
        }
        let mut v = view?;
        v.copy(text, copied, text.len());
        Some(v)
    }
}

/// A `\uXXXX` escape (or a surrogate pair of two) at the start of `text`:
/// its length and character.
fn unicode_escape(text: &[u8]) -> (usize, Option<char>) {
    let unit = |t: &[u8]| -> Option<u32> {
        let digits = t.strip_prefix(b"\\u")?.get(..4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let Some(first) = unit(text) else {
        return (1, None);
    };
    if (0xD800..0xDC00).contains(&first)
        && let Some(second) = text.get(6..).and_then(unit)
        && (0xDC00..0xE000).contains(&second)
    {
        let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
        return (12, char::from_u32(c));
    }
    (6, char::from_u32(first))
}

/// Redacts every string (and object key) inside a JSON value, in place.
pub fn redact_json(value: &mut Json) {
    let Some(m) = matcher() else {
        return;
    };
    walk(value, &m);
}

fn redact_str(m: &Matcher, s: &str) -> Option<String> {
    redact_with(m, s.as_bytes()).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn walk(value: &mut Json, m: &Matcher) {
    match value {
        Json::String(s) => {
            if let Some(r) = redact_str(m, s) {
                *s = r;
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|v| walk(v, m)),
        Json::Object(map) => {
            let keys: Vec<(String, String)> = map
                .keys()
                .filter_map(|k| Some((k.clone(), redact_str(m, k)?)))
                .collect();
            for (k, red) in keys {
                if let Some(v) = map.remove(&k) {
                    map.insert(red, v);
                }
            }
            map.values_mut().for_each(|v| walk(v, m));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(text: &str, secret: &str) -> String {
        let Some(m) = build(&forms(secret)) else {
            return text.to_string();
        };
        redact_str(&m, text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn every_form_is_caught() {
        let secret = "s3cr3t value/with+odd&chars\nsecond-line-9";
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
            let red = red(&text, secret);
            assert!(!red.contains(secret), "{red}");
            assert!(!red.contains("second-line-9"), "{red}");
            assert!(!red.contains("s3cr3t"), "{red}");
            assert!(!red.contains(&b64[..12]), "{red}");
            assert!(!red.contains(&url), "{red}");
            assert!(red.contains(MASK), "{red}");
        }
    }

    #[test]
    fn wrapped_base64_json_escapes_and_full_percent_encoding() {
        let secret = "hunter22-is-the-token";
        // GNU base64 wraps at 76 columns: put the break inside the secret's part.
        let encoded = STANDARD.encode(format!("{}{secret}", "x".repeat(50)));
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let wrapped = wrapped.join("\n");
        let json: String = secret
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let percent: String = secret.bytes().map(|b| format!("%{b:02x}")).collect();
        for text in [
            format!("out:\n{wrapped}\nend"),
            format!("{{\"t\": \"{json}\"}}"),
            format!("?q={percent}&x=1"),
            "mixed \\u0068unter22-is-the-tok\\u0065n".to_string(),
        ] {
            let r = red(&text, secret);
            assert!(r.contains(MASK), "{text} -> {r}");
            assert!(!r.contains(&json[..12]), "{r}");
            assert!(!r.contains(&percent[..12]), "{r}");
        }
        // The text around a decoded match is kept.
        assert_eq!(red(&format!("a {json} b"), secret), "a [redacted] b");
        assert_eq!(red(&format!("a {percent} b"), secret), "a [redacted] b");
        assert_eq!(
            red("no \\u0041 secret %41 here\n", secret),
            "no \\u0041 secret %41 here\n"
        );
    }

    #[test]
    fn short_values_are_left_alone() {
        assert!(forms("abc").is_empty());
        assert_eq!(red("abc", "abc"), "abc");
    }

    #[test]
    fn json_strings_and_keys() {
        let m = build(&forms("hunter22")).unwrap();
        let mut v = serde_json::json!({ "a": ["x hunter22 y"], "hunter22": 1, "n": 3 });
        walk(&mut v, &m);
        assert_eq!(
            v,
            serde_json::json!({ "a": ["x [redacted] y"], "[redacted]": 1, "n": 3 })
        );
    }
}
