//! Long explanations of diagnostic codes, for `flowc explain`.
//!
//! The texts live in `docs/diagnostics.md` (one `## CODE` section each), so the
//! user reference and the command can never disagree.

use super::Code;

const TEXT: &str = include_str!("../../docs/diagnostics.md");

/// The long explanation of `code`: a paragraph and a small example.
pub fn explanation(code: Code) -> Option<&'static str> {
    let heading = format!("## {}", code.as_str());
    let start = TEXT.find(&heading)?;
    let body_start = start + TEXT[start..].find('\n')? + 1;
    let body_end = TEXT[body_start..]
        .find("\n## ")
        .map_or(TEXT.len(), |i| body_start + i);
    Some(TEXT[body_start..body_end].trim())
}
