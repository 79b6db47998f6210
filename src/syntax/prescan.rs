//! A fast pass over the raw text before pest sees it.
//!
//! It splits a file into top-level items so one broken item does not hide the
//! errors of the others, and it rejects what would make the recursive parser
//! misbehave: unbalanced or too deeply nested brackets and unterminated strings.
//! An item with such a problem is reported and left out; scanning picks up
//! again at the next line that starts an item (`skill NAME` at column 0), so
//! the other items are still checked.

use crate::diag::{Code, Diagnostic, FileId};
use crate::span::Span;

/// Deepest bracket nesting accepted; deeper input is reported, not parsed.
pub const MAX_DEPTH: usize = 64;

/// Words that start a top-level item.
const ITEM_KEYWORDS: &[&str] = &[
    "import", "type", "model", "policy", "skill", "trigger", "mcp",
];

/// The byte ranges of the top-level items that can be parsed; the problems of
/// the others are in `diags`.
pub fn split_items(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> Vec<Span> {
    scan(text, file, diags).0
}

/// The items of [`split_items`] and the span of every comment, in order: the
/// grammar skips comments, so the formatter takes them from here.
pub fn scan(text: &str, file: FileId, diags: &mut Vec<Diagnostic>) -> (Vec<Span>, Vec<Span>) {
    let mut scan = Scan {
        bytes: text.as_bytes(),
        file,
        diags,
        stack: Vec::new(),
        items: Vec::new(),
        suspect: None,
        skipping: false,
        line_start: 0,
        indent: None,
        comments: Vec::new(),
    };
    scan.run();
    let items = scan.items;
    let comments = scan.comments;
    let mut spans = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let end = items.get(n + 1).map_or(text.len(), |next| next.start);
        if !item.broken {
            spans.push(Span::new(item.start, end));
        }
    }
    (spans, comments)
}

/// An open bracket: the byte, its offset, and the indentation of its line.
#[derive(Clone, Copy)]
struct Open {
    byte: u8,
    at: usize,
    indent: usize,
}

struct Item {
    start: usize,
    broken: bool,
}

struct Scan<'a, 'd> {
    bytes: &'a [u8],
    file: FileId,
    diags: &'d mut Vec<Diagnostic>,
    stack: Vec<Open>,
    items: Vec<Item>,
    /// In the current item, the first bracket closed by a `}` that starts a
    /// line less indented than the bracket's own line: if the item turns out
    /// unclosed, that bracket is the likely culprit (opening, closing offsets).
    suspect: Option<(Open, usize)>,
    /// The current item is broken; brackets are ignored until the next item.
    skipping: bool,
    line_start: usize,
    /// The indentation of the current line, once computed.
    indent: Option<usize>,
    /// Every comment met, `#` to the end of its line.
    comments: Vec<Span>,
}

impl Scan<'_, '_> {
    fn run(&mut self) {
        let mut i = 0;
        while i < self.bytes.len() {
            if i == self.line_start
                && (self.skipping || !self.stack.is_empty())
                && self.starts_item(i)
            {
                self.recover();
            }
            let b = self.bytes[i];
            let next = match b {
                b'\n' => {
                    self.newline(i + 1);
                    i + 1
                }
                b'#' => {
                    let end = memchr_newline(self.bytes, i);
                    self.comments.push(Span::new(i, end));
                    end
                }
                b'"' if self.bytes[i..].starts_with(b"\"\"\"") => {
                    match find(self.bytes, i + 3, b"\"\"\"") {
                        Some(end) => self.skip_to(i, end + 3),
                        None => {
                            self.unterminated_multiline(i);
                            return;
                        }
                    }
                }
                b'"' => self.string(i),
                _ if self.skipping => i + 1,
                b'{' | b'(' | b'[' => self.open(b, i),
                b'}' | b')' | b']' => self.close(b, i),
                _ if self.stack.is_empty() && is_word_start(self.bytes, i) => {
                    let end = word_end(self.bytes, i);
                    // Text before the first item becomes a chunk of its own, so it is reported.
                    // `policy.careful` (a namespace, as in `policy mine: policy.careful`)
                    // starts no item.
                    let keyword = ITEM_KEYWORDS.contains(&word(self.bytes, i, end))
                        && self.bytes.get(end) != Some(&b'.');
                    if keyword || self.items.is_empty() {
                        self.start_item(i);
                    }
                    end
                }
                _ if self.stack.is_empty() && !b.is_ascii_whitespace() && self.items.is_empty() => {
                    self.start_item(i);
                    i + 1
                }
                _ => i + 1,
            };
            i = next;
        }
        if !self.stack.is_empty() {
            self.unclosed();
        }
    }

    fn start_item(&mut self, at: usize) {
        self.items.push(Item {
            start: at,
            broken: false,
        });
        self.suspect = None;
    }

    /// The current item is reported broken: leave it out of the parse.
    fn break_item(&mut self) {
        if self.items.is_empty() {
            self.start_item(0);
        }
        if let Some(item) = self.items.last_mut() {
            item.broken = true;
        }
        self.stack.clear();
        self.skipping = true;
    }

    /// An item starts here while the previous one is still open or broken:
    /// report that one and scan on as at the top level, which starts the item.
    fn recover(&mut self) {
        if !self.stack.is_empty() {
            self.unclosed();
        }
        self.stack.clear();
        self.skipping = false;
    }

    /// Whether a line starting at `at` starts an item: an item keyword, a
    /// space, then a name (or an import's path). A field such as `type: string`
    /// at column 0 does not.
    fn starts_item(&self, at: usize) -> bool {
        if !is_word_start(self.bytes, at) {
            return false;
        }
        let end = word_end(self.bytes, at);
        if !ITEM_KEYWORDS.contains(&word(self.bytes, at, end)) {
            return false;
        }
        let rest = &self.bytes[end..];
        let gap = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        gap > 0
            && rest
                .get(gap)
                .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'"')
    }

    fn newline(&mut self, next_line: usize) {
        self.line_start = next_line;
        self.indent = None;
    }

    /// Moves past `from..to` (a multi-line string), keeping track of lines.
    fn skip_to(&mut self, from: usize, to: usize) -> usize {
        if let Some(nl) = self.bytes[from..to].iter().rposition(|&b| b == b'\n') {
            self.newline(from + nl + 1);
        }
        to
    }

    fn line_indent(&mut self) -> usize {
        let start = self.line_start;
        *self.indent.get_or_insert_with(|| {
            self.bytes[start..]
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count()
        })
    }

    fn string(&mut self, i: usize) -> usize {
        let mut j = i + 1;
        while j < self.bytes.len() {
            match self.bytes[j] {
                b'\\' => j += 2,
                b'"' => return j + 1,
                b'\n' => break,
                _ => j += 1,
            }
        }
        let j = j.min(self.bytes.len());
        self.diags.push(
            Diagnostic::new(
                Code::E0103,
                self.file,
                Span::new(i, j),
                "unterminated string",
            )
            .label("this string is not closed on its line")
            .help("add the closing `\"`, or use `\"\"\"` for text over several lines"),
        );
        self.break_item();
        j
    }

    fn unterminated_multiline(&mut self, i: usize) {
        self.diags.push(
            Diagnostic::new(
                Code::E0103,
                self.file,
                Span::new(i, i + 3),
                "unterminated multi-line string",
            )
            .label("this string is never closed")
            .help("close it with `\"\"\"`"),
        );
        self.break_item();
    }

    fn open(&mut self, b: u8, i: usize) -> usize {
        let indent = self.line_indent();
        self.stack.push(Open {
            byte: b,
            at: i,
            indent,
        });
        if self.stack.len() > MAX_DEPTH {
            self.diags.push(
                Diagnostic::new(
                    Code::E0105,
                    self.file,
                    Span::new(i, i + 1),
                    "brackets are nested too deeply",
                )
                .label(format!("more than {MAX_DEPTH} levels deep here"))
                .help("split the value into smaller pieces, such as separate steps or types"),
            );
            self.break_item();
        }
        i + 1
    }

    fn close(&mut self, b: u8, i: usize) -> usize {
        let open = match b {
            b'}' => b'{',
            b')' => b'(',
            _ => b'[',
        };
        let indent = self.line_indent();
        let starts_line = self.line_start + indent == i;
        match self.stack.pop() {
            Some(o) if o.byte == open => {
                if starts_line && indent < o.indent && self.suspect.is_none() {
                    self.suspect = Some((o, i));
                }
            }
            Some(o) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0107,
                        self.file,
                        Span::new(i, i + 1),
                        format!("mismatched closing delimiter `{}`", b as char),
                    )
                    .label(format!("expected `{}` here", closing(o.byte)))
                    .with(Span::new(o.at, o.at + 1), "unclosed delimiter opened here"),
                );
                self.break_item();
            }
            None => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0107,
                        self.file,
                        Span::new(i, i + 1),
                        format!("unexpected closing delimiter `{}`", b as char),
                    )
                    .label("nothing to close here"),
                );
                self.break_item();
            }
        }
        i + 1
    }

    /// Reports the current item's unclosed bracket: the one a less indented
    /// `}` seems to skip when there is one, else the innermost still open.
    fn unclosed(&mut self) {
        let Some(&innermost) = self.stack.last() else {
            return;
        };
        let (open, closer) = match self.suspect {
            Some((open, closer)) => (open, Some(closer)),
            None => (innermost, None),
        };
        let mut diag = Diagnostic::new(
            Code::E0107,
            self.file,
            Span::new(open.at, open.at + 1),
            format!("unclosed delimiter `{}`", open.byte as char),
        )
        .label("opened here and never closed")
        .help(format!("add the matching `{}`", closing(open.byte)));
        if let Some(at) = closer {
            diag = diag.with(
                Span::new(at, at + 1),
                "this is indented like an outer block, so it probably closes that one",
            );
        }
        self.diags.push(diag);
        self.break_item();
    }
}

fn closing(open: u8) -> char {
    match open {
        b'{' => '}',
        b'(' => ')',
        _ => ']',
    }
}

fn word(bytes: &[u8], start: usize, end: usize) -> &str {
    std::str::from_utf8(&bytes[start..end]).unwrap_or_default()
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
