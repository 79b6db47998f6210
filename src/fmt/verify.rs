//! The formatter's safety net: the output must parse to the same tree, spans aside, with the same comments.

use crate::syntax::ast::File;
use crate::syntax::{parse_file, prescan};
use std::sync::LazyLock;

static SPAN: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"Span \{ start: \d+, end: \d+ \}").ok());

/// A syntax tree as text, without its spans.
pub fn without_spans(file: &File) -> Option<String> {
    let tree = format!("{:?}", file.items);
    let span = SPAN.as_ref()?;
    Some(span.replace_all(&tree, "Span").into_owned())
}

/// The syntax tree of `text` as text, without its spans; `None` if it does not parse.
fn tree_without_spans(text: &str) -> Option<String> {
    let (file, diags) = parse_file(text, 0);
    if !diags.is_empty() {
        return None;
    }
    without_spans(&file)
}

fn comment_texts(text: &str) -> Vec<String> {
    let mut ignored = Vec::new();
    let (_, comments) = prescan::scan(text, 0, &mut ignored);
    comments
        .iter()
        .map(|c| {
            text.get(c.start..c.end)
                .unwrap_or("")
                .trim_end()
                .to_string()
        })
        .collect()
}

/// `Ok` when `after` means what `before` (whose tree without spans is
/// `before_tree`) means, and keeps its comments in order.
pub fn same_meaning(before: &str, before_tree: Option<&str>, after: &str) -> Result<(), String> {
    let Some(tree) = tree_without_spans(after) else {
        return Err("the formatted text does not parse".into());
    };
    if before_tree != Some(tree.as_str()) {
        return Err("the formatted text would mean something else".into());
    }
    if comment_texts(before) != comment_texts(after) {
        return Err("the formatted text would lose or reorder a comment".into());
    }
    Ok(())
}
