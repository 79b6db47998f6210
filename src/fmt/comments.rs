//! The side table of comments by offset, handed out to the printer as it walks the file in order.

use crate::span::Span;

/// The file's comments, each handed out once.
pub struct Comments<'a> {
    text: &'a str,
    spans: Vec<Span>,
    used: Vec<bool>,
    /// Every comment before this index has been handed out.
    next: usize,
}

impl<'a> Comments<'a> {
    /// The table for `text`, whose comments are at `spans` (in order).
    pub fn new(text: &'a str, spans: Vec<Span>) -> Comments<'a> {
        let used = vec![false; spans.len()];
        Comments {
            text,
            spans,
            used,
            next: 0,
        }
    }

    /// The comments not yet handed out that start before `offset`.
    pub fn take_before(&mut self, offset: usize) -> Vec<Span> {
        let mut out = Vec::new();
        let mut i = self.next;
        while i < self.spans.len() && self.spans[i].start < offset {
            if !self.used[i] {
                self.used[i] = true;
                out.push(self.spans[i]);
            }
            i += 1;
        }
        self.advance();
        out
    }

    /// The comment after `end` on the same line (only spaces and a comma
    /// between), if it is the next one not handed out (so comments keep their order).
    pub fn take_trailing(&mut self, end: usize) -> Option<Span> {
        let i = self.next;
        let span = *self.spans.get(i)?;
        let gap = self.text.get(end..span.start)?;
        if !gap.bytes().all(|b| matches!(b, b' ' | b'\t' | b',')) {
            return None;
        }
        self.used[i] = true;
        self.advance();
        Some(span)
    }

    fn advance(&mut self) {
        while self.next < self.spans.len() && self.used[self.next] {
            self.next += 1;
        }
    }

    /// Where the first comment not yet handed out starts.
    pub fn peek_start(&self) -> Option<usize> {
        (self.next..self.spans.len())
            .find(|&i| !self.used[i])
            .map(|i| self.spans[i].start)
    }

    /// The comments never handed out (none, once the whole file is printed).
    pub fn left(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }

    /// A comment's text without trailing whitespace.
    pub fn text(&self, span: Span) -> &'a str {
        self.text
            .get(span.start..span.end)
            .unwrap_or("#")
            .trim_end()
    }
}
