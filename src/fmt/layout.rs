//! Items, bodies and their members as [`Doc`]s: the canonical layout of a file.

use super::comments::Comments;
use super::cst::Node;
use super::doc::Doc;
use super::seq::{BODY, Break, Style};
use crate::syntax::Rule;

/// The formatter's state while it walks one file in source order.
pub struct Fmt<'a> {
    /// The file's text.
    pub text: &'a str,
    /// Its comments, handed out in order.
    pub comments: Comments<'a>,
}

impl<'a> Fmt<'a> {
    /// The whole file: items one after the other, comments kept, one blank
    /// line between items (none between two imports unless the source had one).
    pub fn file(&mut self, items: &[Node]) -> Doc {
        let mut out = Vec::new();
        let mut prev = 0;
        let mut prev_rule = None;
        for item in items {
            if let Some(rule) = prev_rule {
                let both_imports = rule == Rule::import && item.rule == Rule::import;
                let first = self.comments.peek_start().filter(|&c| c < item.span.start);
                let to = first.unwrap_or(item.span.start);
                if !both_imports && !self.blank_between(prev, to) {
                    out.push(Doc::HardLine);
                }
            }
            out.extend(self.lines_before(item.span.start, &mut prev, prev_rule.is_some(), true));
            out.push(self.item(item));
            prev = item.span.end;
            if let Some(c) = self.comments.take_trailing(prev) {
                out.push(Doc::text(format!(" {}", self.comments.text(c))));
                prev = c.end;
            }
            out.push(Doc::HardLine);
            prev_rule = Some(item.rule);
        }
        out.extend(self.lines_before(usize::MAX, &mut prev, !items.is_empty(), false));
        Doc::concat(out)
    }

    fn item(&mut self, item: &Node) -> Doc {
        let parts: Vec<&Node> = item.parts().collect();
        match item.rule {
            Rule::import => {
                let mut out = vec![Doc::text("import "), self.leaf(parts.first().copied())];
                if let Some(alias) = parts.get(1) {
                    out.push(Doc::text(format!(" as {}", self.src(alias.span))));
                }
                Doc::concat(out)
            }
            Rule::skill_def => self.skill(item),
            _ => {
                let keyword = match item.rule {
                    Rule::type_def => "type",
                    Rule::model_def => "model",
                    Rule::policy_def => "policy",
                    Rule::mcp_def => "mcp",
                    _ => "trigger",
                };
                let mut out = vec![
                    Doc::text(format!("{keyword} ")),
                    self.leaf(parts.first().copied()),
                ];
                for part in parts.iter().skip(1) {
                    match part.rule {
                        Rule::policy_base => {
                            out.push(Doc::text(": "));
                            out.push(self.qualified(part.kids.first()));
                        }
                        Rule::record_type => {
                            out.push(Doc::text(" "));
                            out.push(self.record(part));
                        }
                        _ => {
                            out.push(Doc::text(" "));
                            out.push(self.body(part, Break::Preserve));
                        }
                    }
                }
                Doc::concat(out)
            }
        }
    }

    fn skill(&mut self, item: &Node) -> Doc {
        let mut out = vec![Doc::text("skill ")];
        for part in item.parts() {
            match part.rule {
                Rule::ident => out.push(self.leaf(Some(part))),
                Rule::params => {
                    let elems: Vec<&Node> = part.kids.iter().collect();
                    let style = Style {
                        open: "(",
                        close: ")",
                        pad: false,
                        commas: true,
                        brk: Break::Fit,
                    };
                    let close = part.span.end.saturating_sub(1);
                    out.push(
                        self.seq(part.span.start, close, &elems, style, &mut |f, p| {
                            f.param(p)
                        }),
                    );
                }
                Rule::return_type => {
                    out.push(Doc::text(" -> "));
                    if let Some(ty) = part.kids.first() {
                        out.push(self.type_expr(ty));
                    }
                }
                _ => {
                    out.push(Doc::text(" "));
                    out.push(self.body(part, Break::Always));
                }
            }
        }
        Doc::concat(out)
    }

    fn param(&mut self, p: &Node) -> Doc {
        let mut out = Vec::new();
        for (n, k) in p.kids.iter().enumerate() {
            match n {
                0 => out.push(self.leaf(Some(k))),
                1 => {
                    out.push(Doc::text(": "));
                    out.push(self.type_expr(k));
                }
                _ => {
                    out.push(Doc::text(" = "));
                    out.push(self.expr(k));
                }
            }
        }
        Doc::concat(out)
    }

    /// A `{ ... }` body of members.
    pub fn body(&mut self, body: &Node, brk: Break) -> Doc {
        let elems: Vec<&Node> = body.kids.iter().collect();
        let close = body.span.end.saturating_sub(1);
        let style = Style { brk, ..BODY };
        self.seq(body.span.start, close, &elems, style, &mut |f, m| {
            f.member(m)
        })
    }

    fn member(&mut self, m: &Node) -> Doc {
        let parts: Vec<&Node> = m.parts().collect();
        match m.rule {
            Rule::step_def => {
                let mut out = vec![Doc::text("step ")];
                for (n, p) in parts.iter().enumerate() {
                    match (n, p.rule) {
                        (0, _) => out.push(self.leaf(Some(p))),
                        (1, _) => {
                            out.push(Doc::text(": "));
                            out.push(self.leaf(Some(p)));
                        }
                        (_, Rule::qualified_name) => {
                            out.push(Doc::text(" "));
                            out.push(self.qualified(Some(p)));
                        }
                        _ => {
                            out.push(Doc::text(" "));
                            out.push(self.body(p, Break::Preserve));
                        }
                    }
                }
                Doc::concat(out)
            }
            Rule::loop_def => {
                let mut out = vec![Doc::text("loop "), self.leaf(parts.first().copied())];
                if let Some(body) = parts.get(1) {
                    out.push(Doc::text(" "));
                    out.push(self.body(body, Break::Always));
                }
                Doc::concat(out)
            }
            Rule::for_def => {
                let mut out = vec![Doc::text("for "), self.leaf(parts.first().copied())];
                if let Some(iter) = parts.get(1) {
                    out.push(Doc::text(" in "));
                    out.push(self.expr(iter));
                }
                if let Some(body) = parts.get(2) {
                    out.push(Doc::text(" "));
                    out.push(self.body(body, Break::Always));
                }
                Doc::concat(out)
            }
            Rule::return_stmt => {
                let value = parts.first().map_or(Doc::Nil, |e| self.expr(e));
                Doc::concat([Doc::text("return "), value])
            }
            Rule::block => {
                let mut out = vec![self.leaf(parts.first().copied())];
                if let Some(body) = parts.get(1) {
                    out.push(Doc::text(" "));
                    out.push(self.body(body, Break::Preserve));
                }
                Doc::concat(out)
            }
            Rule::output_field => {
                let key = m
                    .kids
                    .first()
                    .map_or("output", |k| self.src(k.span))
                    .to_string();
                let ty = m.kids.get(1).map_or(Doc::Nil, |t| self.type_expr(t));
                Doc::concat([Doc::text(format!("{key}: ")), ty])
            }
            _ => {
                let key = self.leaf(parts.first().copied());
                let value = parts.get(1).map_or(Doc::Nil, |e| self.expr(e));
                Doc::concat([key, Doc::text(": "), value])
            }
        }
    }

    /// `name` or `namespace.name`.
    pub fn qualified(&self, node: Option<&Node>) -> Doc {
        let names = node.map(|n| n.kids.iter().map(|k| self.src(k.span)).collect::<Vec<_>>());
        Doc::text(names.unwrap_or_default().join("."))
    }

    /// A token printed as written.
    pub fn leaf(&self, node: Option<&Node>) -> Doc {
        node.map_or(Doc::Nil, |n| Doc::text(self.src(n.span)))
    }
}
