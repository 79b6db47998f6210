//! Clipping long lines before they reach miette.
//!
//! miette pads underlines with `format!("{:width$}")`, and a width past
//! `u16::MAX` panics; a line of 17,000 tabs is enough (a tab is 4 columns). So
//! the human renderer hands miette a copy of the file whose long lines are cut
//! to short windows around the points a label starts or ends at, joined by `…`.
//! Line numbers are kept (no newline is removed) and the `[file:line:col]`
//! header reports the column in the original line.

use crate::span::{Span, floor_char_boundary};
use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Lines longer than this many bytes are clipped. Each byte is at most 4
/// display columns (a tab), so an unclipped line stays far below `u16::MAX`.
const MAX_LINE: usize = 400;
/// Bytes kept on each side of a label's start or end in a clipped line.
const CONTEXT: usize = 60;
const ELLIPSIS: &str = "…";

/// A piece of an original line kept in the clipped text.
#[derive(Debug, Clone, Copy)]
struct Kept {
    /// Offset in the clipped text.
    new: usize,
    /// Offset in the original text.
    orig: usize,
    len: usize,
}

/// The file as miette sees it: long lines cut around the labels' ends.
#[derive(Debug)]
pub struct Clipped {
    name: String,
    text: String,
    /// Kept pieces of clipped lines, in order (unclipped lines are not listed).
    kept: Vec<Kept>,
    /// Original offsets of clipped-text line starts that differ from a plain
    /// shift, for the header column: (new line start, original line start).
    line_starts: Vec<(usize, usize)>,
    orig: String,
}

impl Clipped {
    /// Clips `text` so that every point of `spans` stays visible.
    pub fn new(name: String, text: &str, spans: &[Span]) -> Clipped {
        let mut points: Vec<usize> = spans
            .iter()
            .flat_map(|s| {
                let start = s.start.min(text.len());
                [start, s.end.clamp(start, text.len())]
            })
            .map(|p| floor_char_boundary(text, p))
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut out = Clipped {
            name,
            text: String::with_capacity(text.len().min(1 << 20)),
            kept: Vec::new(),
            line_starts: Vec::new(),
            orig: String::new(),
        };
        let mut line_start = 0;
        for line in text.split_inclusive('\n') {
            let body = line.strip_suffix('\n').unwrap_or(line);
            if body.len() <= MAX_LINE {
                out.push_plain(line_start, line);
            } else {
                let end = line_start + body.len();
                let lo = points.partition_point(|&p| p < line_start);
                let hi = points.partition_point(|&p| p <= end);
                out.push_clipped(text, line_start, end, &points[lo..hi]);
                if line.ends_with('\n') {
                    out.text.push('\n');
                }
            }
            line_start += line.len();
        }
        if !out.kept.is_empty() {
            out.orig = text.to_string();
        }
        out
    }

    fn push_plain(&mut self, orig: usize, line: &str) {
        if self.text.len() != orig {
            self.line_starts.push((self.text.len(), orig));
        }
        self.text.push_str(line);
    }

    fn push_clipped(&mut self, text: &str, start: usize, end: usize, points: &[usize]) {
        self.line_starts.push((self.text.len(), start));
        let mut windows: Vec<(usize, usize)> = Vec::new();
        if points.is_empty() {
            windows.push((start, start + MAX_LINE / 2));
        }
        for &p in points {
            let lo = p.saturating_sub(CONTEXT).max(start);
            let hi = (p + CONTEXT).min(end);
            match windows.last_mut() {
                Some(last) if lo <= last.1 => last.1 = hi,
                _ => windows.push((lo, hi)),
            }
        }
        let mut at = start;
        for (lo, hi) in windows {
            let lo = floor_char_boundary(text, lo);
            let hi = floor_char_boundary(text, hi);
            if lo > at {
                self.text.push_str(ELLIPSIS);
            }
            self.kept.push(Kept {
                new: self.text.len(),
                orig: lo,
                len: hi - lo,
            });
            self.text.push_str(&text[lo..hi]);
            at = hi;
        }
        if at < end {
            self.text.push_str(ELLIPSIS);
        }
    }

    /// The clipped text's offset for an original offset.
    fn map_offset(&self, orig: usize) -> usize {
        let i = self.kept.partition_point(|k| k.orig + k.len < orig);
        if let Some(k) = self.kept.get(i).filter(|k| k.orig <= orig) {
            return k.new + (orig - k.orig);
        }
        // Outside any clipped line: shift by the last line start before it.
        let j = self.line_starts.partition_point(|&(_, o)| o <= orig);
        match j.checked_sub(1).map(|j| self.line_starts[j]) {
            Some((new, o)) => (new + (orig - o)).min(self.text.len()),
            None => orig.min(self.text.len()),
        }
    }

    /// A span of the original text, as a span of the clipped text.
    pub fn map(&self, span: Span, len: usize) -> SourceSpan {
        let start = span.start.min(len);
        let end = span.end.clamp(start, len);
        if self.line_starts.is_empty() {
            return SourceSpan::new(start.into(), end - start);
        }
        let start = self.map_offset(floor_char_boundary(&self.orig, start));
        let end = self
            .map_offset(floor_char_boundary(&self.orig, end))
            .max(start);
        SourceSpan::new(start.into(), end - start)
    }

    /// The original byte column of a clipped-text offset (miette counts bytes).
    fn orig_column(&self, new: usize) -> Option<usize> {
        let i = self.kept.partition_point(|k| k.new + k.len < new);
        let k = self.kept.get(i).filter(|k| k.new <= new)?;
        let orig = k.orig + (new - k.new);
        let line_start = self.orig[..orig].rfind('\n').map_or(0, |i| i + 1);
        Some(orig - line_start)
    }
}

impl SourceCode for Clipped {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        let column = match (before, after) {
            (0, 0) => self.orig_column(span.offset()).unwrap_or(inner.column()),
            _ => inner.column(),
        };
        Ok(Box::new(
            MietteSpanContents::new_named(
                self.name.clone(),
                inner.data(),
                *inner.span(),
                inner.line(),
                column,
                inner.line_count(),
            )
            .with_language("flow"),
        ))
    }
}
