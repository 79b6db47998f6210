//! `flowc fmt`: the one canonical layout of a `.flow` file, comments and blank-line groups kept.
//!
//! Text → prescan (items and a side table of comments) → pest pairs ([`cst`])
//! → a [`doc::Doc`] ([`layout`], [`expr`], [`seq`]) → text ([`printer`]).
//! The result is parsed again and must give the same syntax tree (spans
//! aside) and the same comments, or nothing is returned ([`verify`]).

mod comments;
mod cst;
mod doc;
mod expr;
mod layout;
mod printer;
mod seq;
mod verify;

use crate::diag::Diagnostic;
use crate::syntax::prescan;

/// The line width the layout aims for.
pub const WIDTH: usize = 100;

/// Why a file was not formatted.
#[derive(Debug)]
pub enum FormatError {
    /// The file has syntax errors; nothing is formatted until they are fixed.
    Syntax(Vec<Diagnostic>),
    /// The formatter would have changed the file's meaning or lost a comment
    /// (a bug in the formatter); the file is left as it is.
    Internal(String),
}

/// `text` in the canonical layout.
pub fn format_source(text: &str) -> Result<String, FormatError> {
    // As when checking, a byte-order mark is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (tree, diags) = crate::syntax::parse_file(text, 0);
    if !diags.is_empty() {
        return Err(FormatError::Syntax(diags));
    }
    let before = verify::without_spans(&tree);
    drop(tree);
    let mut ignored = Vec::new();
    let (chunks, comment_spans) = prescan::scan(text, 0, &mut ignored);
    let Some(items) = cst::items(text, &chunks) else {
        return Err(FormatError::Internal(
            "an item parsed once but not twice".into(),
        ));
    };
    let mut fmt = layout::Fmt {
        text,
        comments: comments::Comments::new(text, comment_spans),
    };
    let doc = fmt.file(&items);
    if fmt.comments.left() > 0 {
        return Err(FormatError::Internal(format!(
            "{} comment(s) would have been lost",
            fmt.comments.left()
        )));
    }
    let out = if items.is_empty() && text.trim().is_empty() {
        String::new()
    } else {
        printer::print(&doc, WIDTH)
    };
    verify::same_meaning(text, before.as_deref(), &out).map_err(FormatError::Internal)?;
    Ok(out)
}
