//! A fast pass over the raw text before pest sees it.
//!
//! It splits a file into top-level items so one broken item does not hide the
//! errors of the others, and it rejects what would make the recursive parser
//! misbehave: unbalanced or too deeply nested brackets and unterminated strings.

use crate::diag::{Code, Diagnostic, FileId};
use crate::span::Span;

/// Deepest bracket nesting accepted; deeper input is reported, not parsed.
pub const MAX_DEPTH: usize = 64;

/// Words that start a top-level item.
const ITEM_KEYWORDS: &[&str] = &["import", "type", "model", "policy", "skill", "trigger"];

/// The byte ranges of the top-level items, or `None` when the structure of the
/// file is too broken to split (the reasons are in `diags`).
pub fn split_items(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<Vec<Span>> {
    let bytes = text.as_bytes();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let mut ok = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => {
                i = memchr_newline(bytes, i);
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => match find(bytes, i + 3, b"\"\"\"") {
                Some(end) => i = end + 3,
                None => {
                    diags.push(
                        Diagnostic::new(
                            Code::E0103,
                            file,
                            Span::new(i, i + 3),
                            "unterminated multi-line string",
                        )
                        .label("this string is never closed")
                        .help("close it with `\"\"\"`"),
                    );
                    return None;
                }
            },
            b'"' => {
                let mut j = i + 1;
                let mut closed = false;
                while j < bytes.len() {
                    match bytes[j] {
                        b'\\' => j += 2,
                        b'"' => {
                            closed = true;
                            break;
                        }
                        b'\n' => break,
                        _ => j += 1,
                    }
                }
                let j = j.min(bytes.len());
                if closed {
                    i = j + 1;
                } else {
                    diags.push(
                        Diagnostic::new(Code::E0103, file, Span::new(i, j), "unterminated string")
                            .label("this string is not closed on its line")
                            .help(
                                "add the closing `\"`, or use `\"\"\"` for text over several lines",
                            ),
                    );
                    ok = false;
                    i = j;
                }
                continue;
            }
            b'{' | b'(' | b'[' => {
                stack.push((b, i));
                if stack.len() > MAX_DEPTH {
                    diags.push(
                        Diagnostic::new(
                            Code::E0105,
                            file,
                            Span::new(i, i + 1),
                            "brackets are nested too deeply",
                        )
                        .label(format!("more than {MAX_DEPTH} levels deep here"))
                        .help(
                            "split the value into smaller pieces, such as separate steps or types",
                        ),
                    );
                    return None;
                }
            }
            b'}' | b')' | b']' => {
                let open = match b {
                    b'}' => b'{',
                    b')' => b'(',
                    _ => b'[',
                };
                match stack.pop() {
                    Some((o, _)) if o == open => {}
                    Some((o, at)) => {
                        diags.push(
                            Diagnostic::new(
                                Code::E0107,
                                file,
                                Span::new(i, i + 1),
                                format!("mismatched closing delimiter `{}`", b as char),
                            )
                            .label(format!("expected `{}` here", closing(o)))
                            .with(Span::new(at, at + 1), "unclosed delimiter opened here"),
                        );
                        return None;
                    }
                    None => {
                        diags.push(
                            Diagnostic::new(
                                Code::E0107,
                                file,
                                Span::new(i, i + 1),
                                format!("unexpected closing delimiter `{}`", b as char),
                            )
                            .label("nothing to close here"),
                        );
                        return None;
                    }
                }
            }
            _ if stack.is_empty() && is_word_start(bytes, i) => {
                let end = word_end(bytes, i);
                // Text before the first item becomes a chunk of its own, so it is reported.
                // `policy.careful` (a namespace, as in `policy mine: policy.careful`)
                // starts no item.
                let keyword =
                    ITEM_KEYWORDS.contains(&&text[i..end]) && bytes.get(end) != Some(&b'.');
                if keyword || starts.is_empty() {
                    starts.push(i);
                }
                i = end;
                continue;
            }
            _ if stack.is_empty() && !b.is_ascii_whitespace() && starts.is_empty() => {
                starts.push(i)
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(&(o, at)) = stack.last() {
        diags.push(
            Diagnostic::new(
                Code::E0107,
                file,
                Span::new(at, at + 1),
                format!("unclosed delimiter `{}`", o as char),
            )
            .label("opened here and never closed")
            .help(format!("add the matching `{}`", closing(o))),
        );
        return None;
    }
    if !ok {
        return None;
    }
    let mut spans = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        spans.push(Span::new(start, end));
    }
    Some(spans)
}

fn closing(open: u8) -> char {
    match open {
        b'{' => '}',
        b'(' => ')',
        _ => ']',
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_word_start(bytes: &[u8], i: usize) -> bool {
    (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
        && (i == 0 || !(is_ident_byte(bytes[i - 1]) || bytes[i - 1] == b'.'))
}

fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_ident_byte(bytes[i]) {
        i += 1;
    }
    i
}

fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > bytes.len() {
        return None;
    }
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}
