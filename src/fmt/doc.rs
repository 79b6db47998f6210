//! [`Doc`]: the layout-independent document the formatter builds and the printer lays out.

/// A document in the style of Wadler's "prettier printer": text, optional
/// line breaks, indentation, and groups that are printed flat when they fit.
#[derive(Debug, Clone)]
pub enum Doc {
    /// Nothing.
    Nil,
    /// Text without a newline.
    Text(String),
    /// Text printed byte for byte, newlines included (a multi-line string
    /// that cannot be re-indented); it never fits on one line.
    Raw(String),
    /// A space when flat, a newline when broken.
    Line,
    /// Nothing when flat, a newline when broken.
    SoftLine,
    /// Always a newline; the enclosing groups break.
    HardLine,
    /// Nothing, but the enclosing groups break (after a line comment).
    BreakParent,
    /// The document indented by this many more spaces after each newline.
    Nest(usize, Box<Doc>),
    /// Printed flat if it fits in the rest of the line, else broken.
    Group(Box<Doc>),
    /// The first when the enclosing group breaks, the second when it is flat.
    IfBreak(Box<Doc>, Box<Doc>),
    /// Documents one after the other.
    Concat(Vec<Doc>),
}

/// Indentation of one level.
pub const INDENT: usize = 2;

impl Doc {
    /// Text without a newline.
    pub fn text(s: impl Into<String>) -> Doc {
        Doc::Text(s.into())
    }

    /// The documents one after the other.
    pub fn concat(docs: impl IntoIterator<Item = Doc>) -> Doc {
        Doc::Concat(docs.into_iter().collect())
    }

    /// This document as a group.
    pub fn group(self) -> Doc {
        Doc::Group(Box::new(self))
    }

    /// This document indented one level after each newline.
    pub fn nest(self) -> Doc {
        Doc::Nest(INDENT, Box::new(self))
    }

    /// `broken` when the enclosing group breaks, else nothing.
    pub fn if_break(broken: Doc) -> Doc {
        Doc::IfBreak(Box::new(broken), Box::new(Doc::Nil))
    }

    /// The documents with `sep` between them.
    pub fn join(docs: impl IntoIterator<Item = Doc>, sep: impl Fn() -> Doc) -> Doc {
        let mut out = Vec::new();
        for (n, d) in docs.into_iter().enumerate() {
            if n > 0 {
                out.push(sep());
            }
            out.push(d);
        }
        Doc::Concat(out)
    }
}
