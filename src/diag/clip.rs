//! The part of a file miette is given to render one diagnostic.
//!
//! Two limits of miette shape it. It pads underlines with `format!("{:width$}")`,
//! and a width past `u16::MAX` panics (a line of 17,000 tabs is enough: a tab
//! is 4 columns); so long lines are cut to short windows around the points a
//! label starts or ends at, joined by `…`. And it finds each label by scanning
//! its source from the first byte; so it is given only the lines from the
//! first label to the last (and a margin of context), not the whole file, and
//! the line numbers and the `[file:line:col]` column are put back.

use crate::source::SourceFile;
use crate::span::{Span, floor_char_boundary};
use miette::{MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

/// Lines longer than this many bytes are clipped. Each byte is at most 4
/// display columns (a tab), so an unclipped line stays far below `u16::MAX`.
const MAX_LINE: usize = 400;
/// Bytes kept on each side of a label's start or end in a clipped line.
const CONTEXT: usize = 60;
/// Lines kept around the labels (miette shows one on each side).
const MARGIN_LINES: usize = 2;
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

/// One line of the excerpt.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Where it starts in the clipped text.
    new: usize,
    /// Where it starts in the file.
    orig: usize,
    /// Its 0-based line number in the file.
    line: usize,
}

/// The excerpt of a file miette sees: the lines of each label with a margin
/// (groups far apart are joined without the lines between them), long lines
/// cut around the labels' ends.
#[derive(Debug)]
pub struct Clipped<'a> {
    file: &'a SourceFile,
    text: String,
    rows: Vec<Row>,
    /// Kept pieces of clipped lines, in order.
    kept: Vec<Kept>,
}

impl<'a> Clipped<'a> {
    /// The excerpt of `file` that shows every point of `spans`.
    pub fn new(file: &'a SourceFile, spans: &[Span]) -> Clipped<'a> {
        let text = &*file.text;
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
            file,
            text: String::new(),
            rows: Vec::new(),
            kept: Vec::new(),
        };
        for (first, last) in line_ranges(file, spans) {
            for line_no in first..=last {
                // Lines are found through the index, never by scanning: a
                // long line costs its windows, not its length.
                let line_start = file.line_start(line_no);
                let line = &text[line_start..file.line_start(line_no + 1)];
                out.rows.push(Row {
                    new: out.text.len(),
                    orig: line_start,
                    line: line_no,
                });
                let body = line.strip_suffix('\n').unwrap_or(line);
                if body.len() <= MAX_LINE {
                    out.text.push_str(line);
                } else {
                    let end = line_start + body.len();
                    let from = points.partition_point(|&p| p < line_start);
                    let to = points.partition_point(|&p| p <= end);
                    out.push_clipped(text, line_start, end, &points[from..to]);
                    if line.ends_with('\n') {
                        out.text.push('\n');
                    }
                }
            }
        }
        out
    }

    fn push_clipped(&mut self, text: &str, start: usize, end: usize, points: &[usize]) {
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
    fn to_new(&self, orig: usize) -> usize {
        let i = self.kept.partition_point(|k| k.orig + k.len < orig);
        if let Some(k) = self.kept.get(i).filter(|k| k.orig <= orig) {
            return k.new + (orig - k.orig);
        }
        let row = self.rows.partition_point(|r| r.orig <= orig);
        match row.checked_sub(1).map(|r| self.rows[r]) {
            Some(r) => (r.new + (orig - r.orig)).min(self.text.len()),
            None => 0,
        }
    }

    /// The original offset of a clipped-text offset.
    fn to_orig(&self, new: usize) -> usize {
        let i = self.kept.partition_point(|k| k.new + k.len < new);
        if let Some(k) = self.kept.get(i).filter(|k| k.new <= new) {
            return k.orig + (new - k.new);
        }
        let row = self.row_of(new);
        (row.orig + (new - row.new)).min(self.file.text.len())
    }

    /// The excerpt line a clipped-text offset is on.
    fn row_of(&self, new: usize) -> Row {
        let i = self.rows.partition_point(|r| r.new <= new);
        i.checked_sub(1).map_or(
            Row {
                new: 0,
                orig: 0,
                line: 0,
            },
            |i| self.rows[i],
        )
    }

    /// A span of the original text, as a span of the clipped text.
    pub fn map(&self, span: Span) -> SourceSpan {
        let text = &*self.file.text;
        let start = floor_char_boundary(text, span.start);
        let mut end = span.end.clamp(start, text.len());
        // Round the end up: a span over part of a character (an invalid byte
        // shown as U+FFFD) still underlines that character.
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let (start, end) = (self.to_new(start), self.to_new(end));
        SourceSpan::new(start.into(), end.max(start) - start)
    }
}

impl SourceCode for Clipped<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let inner = self.text.read_span(span, before, after)?;
        // The header's `line:col` reads a label with no context; miette counts
        // the column in bytes, so give it the original line's byte column.
        let column = if (before, after) == (0, 0) {
            let orig = self.to_orig(span.offset());
            orig - self.file.line_start(self.file.line_of(orig))
        } else {
            inner.column()
        };
        Ok(Box::new(
            MietteSpanContents::new_named(
                self.file.path.clone(),
                inner.data(),
                *inner.span(),
                // miette counts lines from here on within `data`, which lies
                // in one group of contiguous lines.
                self.row_of(inner.span().offset()).line,
                column,
                inner.line_count(),
            )
            .with_language("flow"),
        ))
    }
}

/// The line ranges to show (0-based, inclusive): every line of each span, and
/// [`MARGIN_LINES`] around it, overlapping ranges merged.
fn line_ranges(file: &SourceFile, spans: &[Span]) -> Vec<(usize, usize)> {
    let last_line = file.line_of(file.text.len());
    let mut ranges: Vec<(usize, usize)> = spans
        .iter()
        .map(|s| {
            let start = s.start.min(file.text.len());
            let end = s.end.clamp(start, file.text.len());
            (
                file.line_of(start).saturating_sub(MARGIN_LINES),
                (file.line_of(end) + MARGIN_LINES).min(last_line),
            )
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}
