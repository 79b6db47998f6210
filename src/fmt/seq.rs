//! Bracketed sequences (bodies, lists, maps, arguments) with their comments and blank lines.

use super::cst::Node;
use super::doc::Doc;
use super::layout::Fmt;
use crate::span::Span;

/// How a sequence is laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// Always one element per line (skill, loop and for bodies; the file).
    Always,
    /// One per line if the source had a newline after the opening bracket,
    /// else flat when it fits (bodies, records, lists and maps).
    Preserve,
    /// Flat when it fits (arguments and parameters).
    Fit,
}

/// The brackets and separators of a sequence.
#[derive(Clone, Copy)]
pub struct Style {
    /// The opening and closing brackets.
    pub open: &'static str,
    /// The closing bracket.
    pub close: &'static str,
    /// A space inside the brackets when flat (`{ a: 1 }`, but `[1]`).
    pub pad: bool,
    /// Elements are separated by commas on every line, with a trailing comma
    /// when broken (lists, arguments); else commas only when flat.
    pub commas: bool,
    /// How the sequence breaks.
    pub brk: Break,
}

/// The bodies of items, steps, blocks, records and maps.
pub const BODY: Style = Style {
    open: "{",
    close: "}",
    pad: true,
    commas: false,
    brk: Break::Preserve,
};

impl Fmt<'_> {
    /// The sequence of `elems` between the bracket at `open` and the one at
    /// `close`, each element printed by `each`.
    pub fn seq(
        &mut self,
        open: usize,
        close: usize,
        elems: &[&Node],
        style: Style,
        each: &mut dyn FnMut(&mut Self, &Node) -> Doc,
    ) -> Doc {
        let mut parts: Vec<Doc> = Vec::new();
        let mut prev = open + 1;
        let preserve = style.brk == Break::Preserve && self.newline_between(open + 1, elems);
        for (n, elem) in elems.iter().enumerate() {
            let mut part = self.lines_before(elem.span.start, &mut prev, !parts.is_empty(), true);
            part.push(each(self, elem));
            prev = elem.span.end;
            let last = n + 1 == elems.len();
            part.push(match (style.commas, last) {
                (true, false) => Doc::text(","),
                (true, true) => Doc::if_break(Doc::text(",")),
                (false, false) => Doc::IfBreak(Box::new(Doc::Nil), Box::new(Doc::text(","))),
                (false, true) => Doc::Nil,
            });
            if let Some(c) = self.comments.take_trailing(prev) {
                part.push(Doc::text(format!(" {}", self.comments.text(c))));
                part.push(Doc::BreakParent);
                prev = c.end;
            }
            parts.push(Doc::concat(part));
        }
        let mut tail = self.lines_before(close, &mut prev, !parts.is_empty(), false);
        // The closing bracket's own line break ends the last comment.
        if matches!(tail.last(), Some(Doc::HardLine)) {
            tail.pop();
        }
        if !tail.is_empty() {
            parts.push(Doc::concat(tail));
        }
        if parts.is_empty() {
            return Doc::text(format!("{}{}", style.open, style.close));
        }
        let line = || if style.pad { Doc::Line } else { Doc::SoftLine };
        let force = if style.brk == Break::Always || preserve {
            Doc::BreakParent
        } else {
            Doc::Nil
        };
        Doc::concat([
            Doc::text(style.open),
            Doc::concat([force, line(), Doc::join(parts, || Doc::Line)]).nest(),
            line(),
            Doc::text(style.close),
        ])
        .group()
    }

    /// The comments before `offset` as lines of their own, each after an empty
    /// line where the source had one (the first only if something came
    /// before), and an empty line before `offset` itself if `blank_last` and
    /// the source had one; `prev` moves past them.
    pub fn lines_before(
        &mut self,
        offset: usize,
        prev: &mut usize,
        something_before: bool,
        blank_last: bool,
    ) -> Vec<Doc> {
        let mut out = Vec::new();
        let mut before = something_before;
        for c in self.comments.take_before(offset) {
            if before && self.blank_between(*prev, c.start) {
                out.push(Doc::HardLine);
            }
            out.push(Doc::text(self.comments.text(c)));
            out.push(Doc::BreakParent);
            out.push(Doc::HardLine);
            *prev = c.end;
            before = true;
        }
        if blank_last && before && self.blank_between(*prev, offset) {
            out.push(Doc::HardLine);
        }
        out
    }

    /// Whether the source between `from` and `to` holds an empty line.
    pub fn blank_between(&self, from: usize, to: usize) -> bool {
        let Some(gap) = self.text.get(from.min(to)..to) else {
            return false;
        };
        let mut newlines = 0;
        for b in gap.bytes() {
            match b {
                b'\n' => {
                    newlines += 1;
                    if newlines >= 2 {
                        return true;
                    }
                }
                b' ' | b'\t' | b'\r' | b',' => {}
                _ => newlines = 0,
            }
        }
        false
    }

    /// Whether a newline follows the opening bracket before the first element.
    fn newline_between(&self, from: usize, elems: &[&Node]) -> bool {
        let to = elems.first().map_or(from, |e| e.span.start);
        self.text
            .get(from.min(to)..to)
            .is_some_and(|gap| gap.contains('\n'))
    }

    /// The offset of the first `byte` at or after `from`, skipping trivia.
    pub fn find(&self, from: usize, byte: u8) -> usize {
        let at = super::cst::skip_trivia(self.text, from);
        if self.text.as_bytes().get(at) == Some(&byte) {
            at
        } else {
            self.text
                .get(from..)
                .and_then(|s| s.bytes().position(|b| b == byte))
                .map_or(from, |p| from + p)
        }
    }

    /// A span's source text.
    pub fn src(&self, span: Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }
}
