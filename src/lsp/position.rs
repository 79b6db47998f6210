//! Byte offsets ↔ LSP positions (0-based lines, UTF-16 code units within the line).

use crate::span::{Span, floor_char_boundary};
use lsp_types::{Position, Range};

/// Where each line of one text starts, for converting positions both ways.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// The index of `text`.
    pub fn new(text: &str) -> LineIndex {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// The position of byte `offset` (clamped to the text, floored to a character).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = floor_char_boundary(text, offset);
        let line = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts.get(line).copied().unwrap_or(0).min(offset);
        let column = text
            .get(start..offset)
            .map_or(0, |s| s.encode_utf16().count());
        Position::new(to_u32(line), to_u32(column))
    }

    /// The range of `span`.
    pub fn range(&self, text: &str, span: Span) -> Range {
        Range::new(
            self.position(text, span.start),
            self.position(text, span.end),
        )
    }

    /// The byte offset of `pos`; a column past the end of its line is the
    /// line's end, a line past the end is the text's end, and a column inside
    /// a surrogate pair is the character's start.
    pub fn offset(&self, text: &str, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return text.len();
        };
        let line = text.get(start..).unwrap_or("");
        let line = line.split('\n').next().unwrap_or("");
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            let next = units + c.len_utf16() as u32;
            if next > pos.character {
                return start + i;
            }
            units = next;
        }
        start + line.trim_end_matches('\r').len()
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_utf16_units_after_multibyte_characters() {
        // `é` is 2 bytes and 1 unit, `😀` 4 bytes and 2 units.
        let text = "a\né😀 step x\n";
        let index = LineIndex::new(text);
        let at = text.find("step").unwrap();
        assert_eq!(index.position(text, at), Position::new(1, 4));
        assert_eq!(index.offset(text, Position::new(1, 4)), at);
        // Inside the surrogate pair: the emoji's start.
        assert_eq!(
            index.offset(text, Position::new(1, 2)),
            text.find('😀').unwrap()
        );
        // Past the end of a line: its end.
        assert_eq!(index.offset(text, Position::new(0, 99)), 1);
        assert_eq!(index.offset(text, Position::new(9, 0)), text.len());
    }
}
