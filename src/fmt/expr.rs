//! Expressions, literals and types as [`Doc`]s; literals are printed as written.

use super::cst::Node;
use super::doc::Doc;
use super::layout::Fmt;
use super::seq::{BODY, Break, Style};
use crate::syntax::{Rule, decode_string};

const LIST: Style = Style {
    open: "[",
    close: "]",
    pad: false,
    commas: true,
    brk: Break::Preserve,
};

const ARGS: Style = Style {
    open: "(",
    close: ")",
    pad: false,
    commas: true,
    brk: Break::Fit,
};

/// How tightly an infix operator binds (loosest 0), as in `syntax::parse`.
fn precedence(rule: Rule) -> u8 {
    match rule {
        Rule::op_coalesce => 0,
        Rule::op_or => 1,
        Rule::op_and => 2,
        Rule::op_eq | Rule::op_ne => 3,
        Rule::op_lt | Rule::op_le | Rule::op_gt | Rule::op_ge | Rule::op_in => 4,
        Rule::op_add | Rule::op_sub => 5,
        _ => 6,
    }
}

impl Fmt<'_> {
    /// An expression: operands and infix operators; a long one breaks before
    /// its loosest operators.
    pub fn expr(&mut self, e: &Node) -> Doc {
        let mut operands: Vec<Doc> = Vec::new();
        let mut ops: Vec<(Rule, String)> = Vec::new();
        let mut prefix = String::new();
        for k in &e.kids {
            match k.rule {
                Rule::op_not | Rule::op_neg => prefix.push_str(self.src(k.span)),
                Rule::postfix_expr => {
                    let doc = self.postfix(k);
                    let doc = Doc::concat([Doc::text(std::mem::take(&mut prefix)), doc]);
                    operands.push(doc);
                }
                rule => ops.push((rule, self.src(k.span).to_string())),
            }
        }
        chain(operands, &ops)
    }

    fn postfix(&mut self, p: &Node) -> Doc {
        let mut out = Vec::new();
        for k in &p.kids {
            let doc = match k.rule {
                Rule::member => Doc::text(format!(".{}", self.first_src(k))),
                Rule::opt_member => Doc::text(format!("?.{}", self.first_src(k))),
                Rule::method_call | Rule::opt_method_call => {
                    let dot = if k.rule == Rule::method_call {
                        "."
                    } else {
                        "?."
                    };
                    let name = format!("{dot}{}", self.first_src(k));
                    let args = k.kids.get(1).map_or(Doc::text("()"), |a| self.args(k, a));
                    Doc::concat([Doc::text(name), args])
                }
                Rule::index => {
                    let inner = k.kids.first().map_or(Doc::Nil, |e| self.expr(e));
                    bracketed("[", inner, "]")
                }
                _ => self.primary(k),
            };
            out.push(doc);
        }
        Doc::concat(out)
    }

    fn first_src(&self, n: &Node) -> String {
        n.kids
            .first()
            .map_or(String::new(), |k| self.src(k.span).to_string())
    }

    /// The arguments of the call `owner`, `(` after its name to its closing `)`.
    fn args(&mut self, owner: &Node, args: &Node) -> Doc {
        let name_end = owner.kids.first().map_or(owner.span.start, |n| n.span.end);
        let open = self.find(name_end, b'(');
        let close = owner.span.end.saturating_sub(1);
        let elems: Vec<&Node> = args.kids.iter().collect();
        self.seq(open, close, &elems, ARGS, &mut |f, e| f.expr(e))
    }

    fn primary(&mut self, p: &Node) -> Doc {
        match p.rule {
            Rule::multiline_string => self.multiline(p),
            Rule::call => {
                let name = self.first_src(p);
                let args = p.kids.get(1).map_or(Doc::text("()"), |a| self.args(p, a));
                Doc::concat([Doc::text(name), args])
            }
            Rule::list => {
                let elems: Vec<&Node> = p.kids.iter().collect();
                let close = p.span.end.saturating_sub(1);
                self.seq(p.span.start, close, &elems, LIST, &mut |f, e| f.expr(e))
            }
            Rule::map => {
                let elems: Vec<&Node> = p.kids.iter().collect();
                let close = p.span.end.saturating_sub(1);
                self.seq(p.span.start, close, &elems, BODY, &mut |f, entry| {
                    let key = f.leaf(entry.kids.first());
                    let value = entry.kids.get(1).map_or(Doc::Nil, |e| f.expr(e));
                    Doc::concat([key, Doc::text(": "), value])
                })
            }
            Rule::paren => {
                let inner = p.kids.first().map_or(Doc::Nil, |e| self.expr(e));
                bracketed("(", inner, ")")
            }
            // Identifiers, numbers (units and `_` as written), strings (escapes as written).
            _ => Doc::text(self.src(p.span)),
        }
    }

    /// A `"""` string re-indented under its field when that keeps its value,
    /// else byte for byte.
    fn multiline(&self, p: &Node) -> Doc {
        let raw = self.src(p.span);
        match reindent(raw) {
            Some(lines) => {
                let body = lines
                    .into_iter()
                    .map(|l| Doc::concat([Doc::HardLine, Doc::text(l)]));
                Doc::concat([
                    Doc::text("\"\"\""),
                    Doc::concat(body).nest(),
                    Doc::HardLine,
                    Doc::text("\"\"\""),
                ])
            }
            None => Doc::Raw(raw.to_string()),
        }
    }

    /// A type: a name, `[T]`, a record, a union of strings, maybe `?`.
    pub fn type_expr(&mut self, t: &Node) -> Doc {
        let mut out = Vec::new();
        for k in &t.kids {
            out.push(match k.rule {
                Rule::string_union => {
                    let alts = k.kids.iter().map(|s| Doc::text(self.src(s.span)));
                    let rest = Doc::join(alts, || Doc::concat([Doc::Line, Doc::text("| ")]));
                    rest.nest().group()
                }
                Rule::list_type => {
                    let inner = k.kids.first().map_or(Doc::Nil, |t| self.type_expr(t));
                    Doc::concat([Doc::text("["), inner, Doc::text("]")])
                }
                Rule::record_type => self.record(k),
                Rule::optional_mark => Doc::text("?"),
                _ => self.qualified(Some(k)),
            });
        }
        Doc::concat(out)
    }

    /// `{ field: T, ... }`
    pub fn record(&mut self, r: &Node) -> Doc {
        let elems: Vec<&Node> = r.kids.iter().collect();
        let close = r.span.end.saturating_sub(1);
        self.seq(r.span.start, close, &elems, BODY, &mut |f, field| {
            let name = f.leaf(field.kids.first());
            let ty = field.kids.get(1).map_or(Doc::Nil, |t| f.type_expr(t));
            Doc::concat([name, Doc::text(": "), ty])
        })
    }
}

/// `open inner close`, breaking inside the brackets when it does not fit.
fn bracketed(open: &str, inner: Doc, close: &str) -> Doc {
    Doc::concat([
        Doc::text(open),
        Doc::concat([Doc::SoftLine, inner]).nest(),
        Doc::SoftLine,
        Doc::text(close),
    ])
    .group()
}

/// Operands joined by operators; breaks go before the loosest operators, and
/// each run between them is laid out the same way, one level tighter.
fn chain(mut operands: Vec<Doc>, ops: &[(Rule, String)]) -> Doc {
    if ops.is_empty() || operands.len() != ops.len() + 1 {
        return Doc::concat(operands);
    }
    let loosest = ops.iter().map(|(r, _)| precedence(*r)).min().unwrap_or(0);
    let mut segments: Vec<(Option<&str>, Doc)> = Vec::new();
    let mut run_ops: Vec<(Rule, String)> = Vec::new();
    let mut run: Vec<Doc> = vec![operands.remove(0)];
    let mut op_before: Option<&str> = None;
    for ((rule, text), operand) in ops.iter().zip(operands) {
        if precedence(*rule) == loosest {
            segments.push((op_before, chain(std::mem::take(&mut run), &run_ops)));
            run_ops.clear();
            op_before = Some(text);
        } else {
            run_ops.push((*rule, text.clone()));
        }
        run.push(operand);
    }
    segments.push((op_before, chain(run, &run_ops)));
    let mut iter = segments.into_iter();
    let first = iter.next().map_or(Doc::Nil, |(_, d)| d);
    let rest = iter.map(|(op, d)| {
        Doc::concat([
            Doc::Line,
            Doc::text(format!("{} ", op.unwrap_or(""))),
            d.group(),
        ])
    });
    Doc::concat([first.group(), Doc::concat(rest).nest()]).group()
}

/// The lines of a `"""` string's content with their common indentation
/// removed, when re-indenting keeps the string's value: it opens and closes
/// on lines of its own and no line is only spaces (those keep what exceeds
/// the indentation).
fn reindent(raw: &str) -> Option<Vec<String>> {
    let inner = raw.strip_prefix("\"\"\"")?.strip_suffix("\"\"\"")?;
    let lines: Vec<&str> = inner.split('\n').collect();
    let (first, rest) = lines.split_first()?;
    let (last, middle) = rest.split_last()?;
    if !first.trim().is_empty() || !last.trim().is_empty() || middle.is_empty() {
        return None;
    }
    let middle: Vec<&str> = middle.iter().map(|l| l.trim_end_matches('\r')).collect();
    if middle.iter().any(|l| !l.is_empty() && l.trim().is_empty()) {
        return None;
    }
    let indent = middle
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()?;
    let out: Vec<String> = middle
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").to_string())
        .collect();
    let mut rebuilt = String::from("\n");
    for l in &out {
        if !l.is_empty() {
            rebuilt.push_str("  ");
        }
        rebuilt.push_str(l);
        rebuilt.push('\n');
    }
    let mut bad = Vec::new();
    let before = decode_string(inner, 0, true, false, &mut bad).value;
    let after = decode_string(&rebuilt, 0, true, false, &mut bad).value;
    (before == after).then_some(out)
}
