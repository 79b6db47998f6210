//! The concrete syntax the formatter prints from: pest's pairs with file offsets, trivia trimmed.

use crate::span::Span;
use crate::syntax::{FlowParser, Rule};
use pest::Parser;
use pest::iterators::Pair;

/// One grammar rule matched at `span`, with the rules matched inside it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The grammar rule.
    pub rule: Rule,
    /// Where it is written in the file, without trailing whitespace or comments.
    pub span: Span,
    /// The rules inside, in order (literal tokens such as `{` are not nodes).
    pub kids: Vec<Node>,
}

impl Node {
    /// The children that are not keywords (`kw_*`).
    pub fn parts(&self) -> impl Iterator<Item = &Node> {
        self.kids.iter().filter(|k| !is_keyword(k.rule))
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_import
            | Rule::kw_as
            | Rule::kw_type
            | Rule::kw_model
            | Rule::kw_policy
            | Rule::kw_trigger
            | Rule::kw_mcp
            | Rule::kw_skill
            | Rule::kw_step
            | Rule::kw_loop
            | Rule::kw_for
            | Rule::kw_in
            | Rule::kw_return
    )
}

/// The items of `text` (each a chunk the prescanner found), or `None` when one
/// does not parse. The caller has already made sure the file has no syntax error.
pub fn items(text: &str, chunks: &[Span]) -> Option<Vec<Node>> {
    let mut out = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let src = text.get(chunk.start..chunk.end)?;
        let pairs = FlowParser::parse(Rule::item_only, src).ok()?;
        for pair in pairs {
            if pair.as_rule() != Rule::EOI {
                out.push(node(text, pair, chunk.start));
            }
        }
    }
    Some(out)
}

fn node(text: &str, pair: Pair<Rule>, base: usize) -> Node {
    let rule = pair.as_rule();
    let span = pair.as_span();
    let (start, mut end) = (base + span.start(), base + span.end());
    let kids: Vec<Node> = pair.into_inner().map(|p| node(text, p, base)).collect();
    // A rule that ends in an optional part or a repetition may have eaten the
    // whitespace and comments after its last child: give them back.
    if let Some(last) = kids.last() {
        if last.span.end < end && skip_trivia(text, last.span.end) >= end {
            end = last.span.end;
        }
    } else {
        let kept = text.get(start..end).map_or(0, |s| s.trim_end().len());
        end = start + kept;
    }
    Node {
        rule,
        span: Span::new(start, end),
        kids,
    }
}

/// The end of the whitespace and comments starting at `at`.
pub fn skip_trivia(text: &str, mut at: usize) -> usize {
    let bytes = text.as_bytes();
    loop {
        match bytes.get(at) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => at += 1,
            Some(b'#') => at = text[at..].find('\n').map_or(text.len(), |nl| at + nl),
            _ => return at,
        }
    }
}
