//! Decoding literals: string escapes, multi-line dedent, numbers with units.

use crate::diag::{Code, Diagnostic, FileId};
use crate::span::Span;

/// A decoded string and, if asked for, the source offset of every value byte.
pub struct Decoded {
    /// The string's value.
    pub value: String,
    /// `map[i]` is the file offset of value byte `i` (one extra entry for the end).
    pub map: Vec<usize>,
}

/// Decodes the text between the quotes of a literal starting at `base`.
///
/// Normal strings take the escapes `\n \t \" \\`; multi-line strings are raw,
/// lose their first and last line when blank, and lose their common indentation.
pub fn decode_string(
    raw: &str,
    base: usize,
    multiline: bool,
    want_map: bool,
    bad: &mut Vec<Span>,
) -> Decoded {
    if multiline {
        dedent(raw, base, want_map)
    } else {
        unescape(raw, base, want_map, bad)
    }
}

fn unescape(raw: &str, base: usize, want_map: bool, bad: &mut Vec<Span>) -> Decoded {
    let mut value = String::with_capacity(raw.len());
    let mut map = Vec::new();
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at = base + i;
        let push = |value: &mut String, map: &mut Vec<usize>, c: char| {
            if want_map {
                map.extend(std::iter::repeat_n(at, c.len_utf8()));
            }
            value.push(c);
        };
        if c != '\\' {
            push(&mut value, &mut map, c);
            continue;
        }
        match chars.next() {
            Some((_, 'n')) => push(&mut value, &mut map, '\n'),
            Some((_, 't')) => push(&mut value, &mut map, '\t'),
            Some((_, '"')) => push(&mut value, &mut map, '"'),
            Some((_, '\\')) => push(&mut value, &mut map, '\\'),
            Some((j, other)) => {
                bad.push(Span::new(at, base + j + other.len_utf8()));
                push(&mut value, &mut map, other);
            }
            None => bad.push(Span::new(at, at + 1)),
        }
    }
    if want_map {
        map.push(base + raw.len());
    }
    Decoded { value, map }
}

fn dedent(raw: &str, base: usize, want_map: bool) -> Decoded {
    // (offset in raw, line text without its newline)
    let mut lines: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for line in raw.split('\n') {
        lines.push((offset, line));
        offset += line.len() + 1;
    }
    if lines.first().is_some_and(|(_, l)| l.trim().is_empty()) {
        lines.remove(0);
    }
    if lines.last().is_some_and(|(_, l)| l.trim().is_empty()) {
        lines.pop();
    }
    let indent = lines
        .iter()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(_, l)| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let mut value = String::with_capacity(raw.len());
    let mut map = Vec::new();
    for (n, (start, line)) in lines.iter().enumerate() {
        if n > 0 {
            if want_map {
                map.push(base + start - 1);
            }
            value.push('\n');
        }
        let cut = indent.min(line.len() - line.trim_start_matches([' ', '\t']).len());
        let kept = line[cut..].trim_end_matches('\r');
        if want_map {
            map.extend((0..kept.len()).map(|k| base + start + cut + k));
        }
        value.push_str(kept);
    }
    if want_map {
        map.push(base + raw.len());
    }
    Decoded { value, map }
}

/// A decoded number literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// No unit, no dot.
    Int(i64),
    /// No unit, with a dot.
    Float(f64),
    /// A duration, in milliseconds.
    Duration(u64),
    /// A size, in bytes.
    Size(u64),
}

const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Decodes `3`, `0.25`, `10m`, `2GiB`; reports overflow and unknown units.
/// Reads a duration written as in flow files (`500ms`, `30s`, `2m`, `1h`) into milliseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let file: FileId = 0;
    match decode_number(text.trim(), Span::new(0, text.len()), file) {
        Ok(Number::Duration(ms)) => Some(ms),
        _ => None,
    }
}

pub fn decode_number(text: &str, span: Span, file: FileId) -> Result<Number, Diagnostic> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    let overflow = || {
        Diagnostic::new(
            Code::E0106,
            file,
            span,
            format!("number `{text}` is too large"),
        )
        .label("does not fit in 64 bits")
    };
    if unit.is_empty() {
        return if digits.contains('.') {
            digits
                .parse::<f64>()
                .map(Number::Float)
                .map_err(|_| overflow())
        } else {
            digits
                .parse::<i64>()
                .map(Number::Int)
                .map_err(|_| overflow())
        };
    }
    let scale = |units: &[(&str, u64)]| units.iter().find(|(u, _)| *u == unit).map(|(_, s)| *s);
    let (factor, is_duration) = match (scale(DURATION_UNITS), scale(SIZE_UNITS)) {
        (Some(f), _) => (f, true),
        (None, Some(f)) => (f, false),
        (None, None) => {
            let all: Vec<&str> = DURATION_UNITS
                .iter()
                .chain(SIZE_UNITS)
                .map(|(u, _)| *u)
                .collect();
            let mut diag = Diagnostic::new(Code::E0106, file, span, format!("unknown unit `{unit}` in `{text}`"))
                .label("not a duration or size unit")
                .help("durations use `ms`, `s`, `m`, `h`, `d`; sizes use `B`, `KB`, `MB`, `GB`, `TB`, `KiB`, `MiB`, `GiB`, `TiB`");
            if let Some(s) = crate::diag::suggest(unit, all) {
                diag = diag.help(format!("did you mean `{digits}{s}`?"));
            }
            return Err(diag);
        }
    };
    let amount = if digits.contains('.') {
        let f: f64 = digits.parse().map_err(|_| overflow())?;
        let v = f * factor as f64;
        if !v.is_finite() || v >= u64::MAX as f64 {
            return Err(overflow());
        }
        v.round() as u64
    } else {
        let n: u64 = digits.parse().map_err(|_| overflow())?;
        n.checked_mul(factor).ok_or_else(overflow)?
    };
    // Durations and sizes must also fit the signed integers of expressions.
    if amount > i64::MAX as u64 {
        return Err(overflow());
    }
    Ok(if is_duration {
        Number::Duration(amount)
    } else {
        Number::Size(amount)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Result<Number, Diagnostic> {
        decode_number(text, Span::new(0, text.len()), 0)
    }

    #[test]
    fn numbers_with_units() {
        assert_eq!(num("200_000").ok(), Some(Number::Int(200_000)));
        assert_eq!(num("0.25").ok(), Some(Number::Float(0.25)));
        assert_eq!(num("250ms").ok(), Some(Number::Duration(250)));
        assert_eq!(num("10m").ok(), Some(Number::Duration(600_000)));
        assert_eq!(num("1d").ok(), Some(Number::Duration(86_400_000)));
        assert_eq!(num("2GiB").ok(), Some(Number::Size(2 << 30)));
        assert_eq!(num("10MB").ok(), Some(Number::Size(10_000_000)));
        assert_eq!(num("1.5s").ok(), Some(Number::Duration(1500)));
        assert_eq!(num("10x").map_err(|d| d.code).err(), Some(Code::E0106));
        assert_eq!(
            num("99999999999999999999").map_err(|d| d.code).err(),
            Some(Code::E0106)
        );
        assert_eq!(
            num("9999999999999999d").map_err(|d| d.code).err(),
            Some(Code::E0106)
        );
    }

    #[test]
    fn escapes_and_map() {
        let mut bad = Vec::new();
        let d = decode_string(r#"a\n\"b\q"#, 10, false, true, &mut bad);
        assert_eq!(d.value, "a\n\"bq");
        assert_eq!(bad, vec![Span::new(16, 18)]);
        assert_eq!(d.map[..4], [10, 11, 13, 15]);
    }

    #[test]
    fn dedent_removes_common_indentation() {
        let mut bad = Vec::new();
        let raw = "\n      Test {{ t }}\n        indented\n      end\n    ";
        let d = decode_string(raw, 0, true, true, &mut bad);
        assert_eq!(d.value, "Test {{ t }}\n  indented\nend");
        assert_eq!(d.map.len(), d.value.len() + 1);
        assert_eq!(&raw[d.map[0]..d.map[0] + 4], "Test");
        let nl = d.value.find("indented").unwrap_or(0);
        assert_eq!(&raw[d.map[nl]..d.map[nl] + 8], "indented");
    }
}
