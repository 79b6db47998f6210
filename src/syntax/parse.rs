//! Pest to AST: one `lower_*` method per grammar rule, and syntax errors in English.

use super::ast::*;
use super::literal::{Number, decode_number, decode_string};
use super::prescan;
use super::rule_names::describe;
use crate::diag::{Code, Diagnostic, FileId};
use crate::span::Span;
use pest::Parser;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use std::cell::RefCell;
use std::sync::LazyLock;

/// The pest parser of `grammar/flow.pest` (the formatter reads its pairs too).
#[derive(pest_derive::Parser)]
#[grammar = "../grammar/flow.pest"]
pub(crate) struct FlowParser;

/// Words that cannot be used as the name of an item, step, block or parameter.
pub const KEYWORDS: &[&str] = &[
    "import", "as", "type", "model", "policy", "skill", "trigger", "step", "loop", "for", "in",
    "return", "true", "false", "null",
];

/// Deepest expression tree accepted (operators and postfix chains).
pub const MAX_EXPR_DEPTH: usize = 64;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::op_coalesce, Assoc::Left))
        .op(Op::infix(Rule::op_or, Assoc::Left))
        .op(Op::infix(Rule::op_and, Assoc::Left))
        .op(Op::infix(Rule::op_eq, Assoc::Left) | Op::infix(Rule::op_ne, Assoc::Left))
        .op(Op::infix(Rule::op_lt, Assoc::Left)
            | Op::infix(Rule::op_le, Assoc::Left)
            | Op::infix(Rule::op_gt, Assoc::Left)
            | Op::infix(Rule::op_ge, Assoc::Left)
            | Op::infix(Rule::op_in, Assoc::Left))
        .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
        .op(Op::infix(Rule::op_mul, Assoc::Left)
            | Op::infix(Rule::op_div, Assoc::Left)
            | Op::infix(Rule::op_rem, Assoc::Left))
        .op(Op::prefix(Rule::op_not) | Op::prefix(Rule::op_neg))
});

/// Parses one file. Returns every item that parsed and every syntax error.
pub fn parse_file(text: &str, file: FileId) -> (File, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let chunks = prescan::split_items(text, file, &mut diags);
    let mut items = Vec::new();
    for chunk in chunks {
        let src = &text[chunk.start..chunk.end];
        match skill_by_members(src, chunk.start, file) {
            Some((item, item_diags)) => {
                items.push(item);
                diags.extend(item_diags);
            }
            None => parse_whole(text, chunk, file, &mut items, &mut diags),
        }
    }
    (File { items }, diags)
}

/// Parses one item chunk in one go.
fn parse_whole(
    text: &str,
    chunk: Span,
    file: FileId,
    items: &mut Vec<Item>,
    diags: &mut Vec<Diagnostic>,
) {
    let src = &text[chunk.start..chunk.end];
    match FlowParser::parse(Rule::item_only, src) {
        Ok(pairs) => {
            let lower = Lower {
                file,
                base: chunk.start,
                diags: RefCell::new(Vec::new()),
            };
            for pair in pairs {
                if pair.as_rule() != Rule::EOI {
                    items.push(lower.item(pair));
                }
            }
            diags.extend(lower.diags.into_inner());
        }
        Err(_) => diags.push(syntax_error(text, chunk, file)),
    }
}

/// The end of the whitespace and comments starting at `at` (what pest skips
/// between tokens: `WHITESPACE` and `COMMENT` in the grammar).
fn skip_trivia(src: &str, mut at: usize) -> usize {
    let bytes = src.as_bytes();
    loop {
        match bytes.get(at) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => at += 1,
            Some(b'#') => {
                at = match src[at..].find('\n') {
                    Some(nl) => at + nl,
                    None => src.len(),
                }
            }
            _ => return at,
        }
    }
}

/// Parses a skill item one member at a time, or `None` if `src` is not a
/// skill item that parses.
///
/// Parsing a whole item makes pest build one token queue for all of it,
/// about 4 KB per step; a skill of 100,000 steps needed ~400 MB for the
/// queue alone. `skill_head` and `skill_member_one` match, in sequence,
/// exactly what `item_only` matches for a skill (PEG repetition is greedy,
/// so reading members one after another is what `skill_body` does). Any
/// failure returns `None` and the caller parses the item whole, so syntax
/// errors come out as before.
fn skill_by_members(src: &str, base: usize, file: FileId) -> Option<(Item, Vec<Diagnostic>)> {
    let start = skip_trivia(src, 0);
    let rest = &src[start..];
    let is_skill = rest.strip_prefix("skill").is_some_and(|after| {
        !after
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    });
    if !is_skill {
        return None;
    }
    let head = FlowParser::parse(Rule::skill_head, rest).ok()?.next()?;
    let lower = Lower {
        file,
        base: base + start,
        diags: RefCell::new(Vec::new()),
    };
    let mut at = start + head.as_span().end();
    let mut inner = head.into_inner();
    inner.next(); // the keyword
    let name = lower.declared(next(&mut inner));
    let mut params = Vec::new();
    let mut ret = None;
    for p in inner {
        match p.as_rule() {
            Rule::params => params = p.into_inner().map(|p| lower.param(p)).collect(),
            Rule::return_type => ret = Some(lower.type_expr(first(p))),
            _ => {}
        }
    }
    let mut diags = lower.diags.into_inner();
    let mut body = Body::default();
    loop {
        at = skip_trivia(src, at);
        if src[at..].starts_with('}') {
            at += 1;
            break;
        }
        let one = FlowParser::parse(Rule::skill_member_one, &src[at..])
            .ok()?
            .next()?;
        let end = at + one.as_span().end();
        let lower = Lower {
            file,
            base: base + at,
            diags: RefCell::new(Vec::new()),
        };
        for member in one.into_inner() {
            lower.member(member, &mut body);
        }
        diags.extend(lower.diags.into_inner());
        at = end;
    }
    let end = at;
    if skip_trivia(src, end) != src.len() {
        return None;
    }
    body.nodes.shrink_to_fit();
    body.fields.shrink_to_fit();
    let item = Item::Skill(SkillDef {
        name,
        params,
        ret,
        body,
        span: Span::new(base + start, base + end),
    });
    Some((item, diags))
}

/// Re-parses a failed item with pest's detailed error tracking and words the result.
fn syntax_error(text: &str, chunk: Span, file: FileId) -> Diagnostic {
    let src = &text[chunk.start..chunk.end];
    pest::set_error_detail(true);
    let result = FlowParser::parse(Rule::item_only, src);
    pest::set_error_detail(false);
    let Err(error) = result else {
        return Diagnostic::new(Code::E0102, file, chunk, "this item could not be parsed");
    };
    let pos = match error.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !expected.contains(&s) {
            expected.push(s);
        }
    };
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &error.variant {
        for rule in positives {
            if !matches!(rule, Rule::WHITESPACE | Rule::COMMENT | Rule::EOI) {
                push(describe(*rule).to_string());
            }
        }
    }
    if let Some(attempts) = error.parse_attempts() {
        for token in attempts.expected_tokens() {
            // Ranges (`a..z`) and built-ins say nothing useful; literal tokens do.
            let token = token.to_string();
            let is_range = token.chars().count() == 4 && token.get(1..3) == Some("..");
            if !is_range && token != "BUILTIN_RULE" && !token.trim().is_empty() && token != "#" {
                push(format!("`{token}`"));
            }
        }
    }
    // Tokens that merely start an expression add nothing to "an expression".
    if expected.iter().any(|e| e == "an expression") {
        expected.retain(|e| {
            !matches!(
                e.as_str(),
                "`!`" | "`-`" | "`\"`" | "`\"\"\"`" | "`(`" | "`[`" | "`{`"
            )
        });
    }
    let at = chunk.start + pos;
    let (found, span) = found_token(text, at);
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", join_or(&expected))
    };
    let label = if expected.is_empty() {
        "not expected here".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    let mut diag = Diagnostic::new(Code::E0102, file, span, message).label(label);
    if found == "`=`" && expected.iter().any(|e| e == "`:`") {
        diag = diag.help("fields are written `key: value`");
    }
    diag
}

fn join_or(items: &[String]) -> String {
    const MAX: usize = 6;
    let items: Vec<&str> = items.iter().take(MAX).map(String::as_str).collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Describes the token starting at `at` ("`}`", "`name`", "end of file").
fn found_token(text: &str, at: usize) -> (String, Span) {
    let rest = &text[at.min(text.len())..];
    let Some(c) = rest.chars().next() else {
        return ("end of file".to_string(), Span::new(text.len(), text.len()));
    };
    if c.is_ascii_alphanumeric() || c == '_' {
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        return (format!("`{}`", &rest[..len]), Span::new(at, at + len));
    }
    if c == '"' {
        return ("a string".to_string(), Span::new(at, at + 1));
    }
    if c == '\n' {
        return ("end of line".to_string(), Span::new(at, at + 1));
    }
    let two: String = rest.chars().take(2).collect();
    if matches!(two.as_str(), "==" | "!=" | "<=" | ">=" | "&&" | "||" | "->") {
        return (format!("`{two}`"), Span::new(at, at + 2));
    }
    (format!("`{c}`"), Span::new(at, at + c.len_utf8()))
}

/// Lowers pest pairs of one item; errors collect in `diags`.
struct Lower {
    file: FileId,
    base: usize,
    diags: RefCell<Vec<Diagnostic>>,
}

type Depth = usize;

impl Lower {
    /// The pair's span without the trailing whitespace pest may include.
    fn span(&self, pair: &Pair<Rule>) -> Span {
        let s = pair.as_span();
        let kept = pair.as_str().trim_end().len();
        Span::new(s.start() + self.base, s.start() + kept + self.base)
    }

    fn error(&self, diag: Diagnostic) {
        self.diags.borrow_mut().push(diag);
    }

    fn item(&self, pair: Pair<Rule>) -> Item {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = pair.into_inner();
        inner.next(); // the keyword
        match rule {
            Rule::import => {
                let path = self.string_lit(next(&mut inner));
                let alias = inner
                    .find(|p| p.as_rule() == Rule::ident)
                    .map(|p| self.declared(p));
                Item::Import(Import { path, alias, span })
            }
            Rule::type_def => {
                let name = self.declared(next(&mut inner));
                let fields = self.record_fields(next(&mut inner));
                Item::Type(TypeDef { name, fields, span })
            }
            Rule::skill_def => {
                let name = self.declared(next(&mut inner));
                let mut params = Vec::new();
                let mut ret = None;
                let mut body = Body::default();
                for p in inner {
                    match p.as_rule() {
                        Rule::params => params = p.into_inner().map(|p| self.param(p)).collect(),
                        Rule::return_type => ret = Some(self.type_expr(first(p))),
                        _ => body = self.body(p),
                    }
                }
                Item::Skill(SkillDef {
                    name,
                    params,
                    ret,
                    body,
                    span,
                })
            }
            _ => {
                let kind = match rule {
                    Rule::model_def => ConfigKind::Model,
                    Rule::policy_def => ConfigKind::Policy,
                    Rule::mcp_def => ConfigKind::Mcp,
                    _ => ConfigKind::Trigger,
                };
                let name = self.declared(next(&mut inner));
                let mut body = next(&mut inner);
                let mut base = None;
                if body.as_rule() == Rule::policy_base {
                    base = Some(self.qualified(first(body)));
                    body = next(&mut inner);
                }
                let fields = self.block_fields(body);
                Item::Config(ConfigItem {
                    kind,
                    name,
                    base,
                    fields,
                    span,
                })
            }
        }
    }

    fn ident(&self, pair: Pair<Rule>) -> Ident {
        Ident {
            span: self.span(&pair),
            name: pair.as_str().to_string(),
        }
    }

    /// An identifier that declares something, so it must not be a keyword.
    fn declared(&self, pair: Pair<Rule>) -> Ident {
        let ident = self.ident(pair);
        if KEYWORDS.contains(&ident.name.as_str()) {
            self.error(
                Diagnostic::new(
                    Code::E0108,
                    self.file,
                    ident.span,
                    format!(
                        "`{}` is a reserved word and cannot be used as a name",
                        ident.name
                    ),
                )
                .label("reserved word")
                .help(format!("choose another name, such as `{}_`", ident.name)),
            );
        }
        ident
    }

    fn qualified(&self, pair: Pair<Rule>) -> QualifiedName {
        let span = self.span(&pair);
        let mut parts: Vec<Ident> = pair.into_inner().map(|p| self.ident(p)).collect();
        let name = parts.pop().unwrap_or_else(|| Ident {
            name: String::new(),
            span,
        });
        QualifiedName {
            namespace: parts.pop(),
            name,
            span,
        }
    }

    fn param(&self, pair: Pair<Rule>) -> Param {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.declared(next(&mut inner));
        let ty = self.type_expr(next(&mut inner));
        let default = inner.next().map(|p| self.expr(p).0);
        Param {
            name,
            ty,
            default,
            span,
        }
    }

    fn body(&self, pair: Pair<Rule>) -> Body {
        let mut body = Body::default();
        for p in pair.into_inner() {
            self.member(p, &mut body);
        }
        // The tree lives until its module is checked: no spare capacity.
        body.nodes.shrink_to_fit();
        body.fields.shrink_to_fit();
        body
    }

    /// Adds one member of a skill, loop or for body.
    fn member(&self, p: Pair<Rule>, body: &mut Body) {
        match p.as_rule() {
            Rule::step_def => body.nodes.push(NodeDef::Step(self.step(p))),
            Rule::loop_def => {
                let span = self.span(&p);
                let mut inner = p.into_inner();
                inner.next();
                let name = self.declared(next(&mut inner));
                let inner_body = self.body(next(&mut inner));
                body.nodes.push(NodeDef::Loop(LoopDef {
                    name,
                    body: inner_body,
                    span,
                }));
            }
            Rule::for_def => {
                let span = self.span(&p);
                let mut inner = p.into_inner();
                inner.next();
                let var = self.declared(next(&mut inner));
                inner.next(); // `in`
                let iter = self.expr(next(&mut inner)).0;
                let inner_body = self.body(next(&mut inner));
                body.nodes.push(NodeDef::For(ForDef {
                    var,
                    iter,
                    body: inner_body,
                    span,
                }));
            }
            Rule::return_stmt => {
                let mut inner = p.into_inner();
                inner.next();
                body.returns.push(self.expr(next(&mut inner)).0);
            }
            Rule::block => body.fields.push(self.block(p)),
            _ => body.fields.push(self.field(p)),
        }
    }

    fn step(&self, pair: Pair<Rule>) -> StepDef {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        inner.next();
        let name = self.declared(next(&mut inner));
        let kind = self.ident(next(&mut inner));
        let mut callee = None;
        let mut fields = Vec::new();
        for p in inner {
            match p.as_rule() {
                Rule::qualified_name => callee = Some(self.qualified(p)),
                _ => {
                    for f in p.into_inner() {
                        fields.push(match f.as_rule() {
                            Rule::output_field => {
                                let span = self.span(&f);
                                let mut parts = f.into_inner();
                                let key = self.ident(next(&mut parts));
                                let ty = self.type_expr(next(&mut parts));
                                Field {
                                    key,
                                    value: FieldValue::Type(ty),
                                    span,
                                }
                            }
                            Rule::block => self.block(f),
                            _ => self.field(f),
                        });
                    }
                }
            }
        }
        fields.shrink_to_fit();
        StepDef {
            name,
            kind,
            callee,
            fields,
            span,
        }
    }

    fn field(&self, pair: Pair<Rule>) -> Field {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let key = self.ident(next(&mut inner));
        let value = FieldValue::Expr(self.expr(next(&mut inner)).0);
        Field { key, value, span }
    }

    /// `name { fields }` becomes the field `name: { fields }`.
    fn block(&self, pair: Pair<Rule>) -> Field {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let key = self.ident(next(&mut inner));
        let body = next(&mut inner);
        let body_span = self.span(&body);
        let entries = self
            .block_fields(body)
            .into_iter()
            .filter_map(|f| match f.value {
                FieldValue::Expr(e) => Some((
                    MapKey {
                        name: f.key.name,
                        span: f.key.span,
                    },
                    e,
                )),
                FieldValue::Type(_) => None,
            })
            .collect();
        Field {
            key,
            value: FieldValue::Expr(Expr {
                kind: ExprKind::Map(entries),
                span: body_span,
            }),
            span,
        }
    }

    fn block_fields(&self, pair: Pair<Rule>) -> Vec<Field> {
        pair.into_inner()
            .map(|p| match p.as_rule() {
                Rule::block => self.block(p),
                _ => self.field(p),
            })
            .collect()
    }

    fn record_fields(&self, pair: Pair<Rule>) -> Vec<RecordField> {
        pair.into_inner()
            .map(|p| {
                let mut inner = p.into_inner();
                let name = self.ident(next(&mut inner));
                let ty = self.type_expr(next(&mut inner));
                RecordField { name, ty }
            })
            .collect()
    }

    fn type_expr(&self, pair: Pair<Rule>) -> TypeExpr {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let base = next(&mut inner);
        let base_span = self.span(&base);
        let kind = match base.as_rule() {
            Rule::string_union => {
                TypeExprKind::Union(base.into_inner().map(|s| self.string_lit(s)).collect())
            }
            Rule::list_type => TypeExprKind::List(Box::new(self.type_expr(first(base)))),
            Rule::record_type => TypeExprKind::Record(self.record_fields(base)),
            _ => TypeExprKind::Named(self.qualified(base)),
        };
        if inner.next().is_some() {
            TypeExpr {
                kind: TypeExprKind::Optional(Box::new(TypeExpr {
                    kind,
                    span: base_span,
                })),
                span,
            }
        } else {
            TypeExpr { kind, span }
        }
    }

    fn string_lit(&self, pair: Pair<Rule>) -> StrLit {
        let span = self.span(&pair);
        let multiline = pair.as_rule() == Rule::multiline_string;
        let inner = first(pair);
        let base = self.span(&inner).start;
        let mut bad = Vec::new();
        let decoded = decode_string(inner.as_str(), base, multiline, false, &mut bad);
        for b in bad {
            self.error(
                Diagnostic::new(
                    Code::E0104,
                    self.file,
                    b,
                    "invalid escape sequence in string",
                )
                .label("unknown escape")
                .help("strings take `\\n`, `\\t`, `\\\"` and `\\\\`; use `\"\"\"` for raw text"),
            );
        }
        StrLit {
            value: decoded.value,
            multiline,
            span,
        }
    }

    fn error_expr(&self, span: Span) -> (Expr, Depth) {
        (
            Expr {
                kind: ExprKind::Error,
                span,
            },
            1,
        )
    }

    fn too_deep(&self, span: Span) -> (Expr, Depth) {
        self.error(
            Diagnostic::new(
                Code::E0105,
                self.file,
                span,
                "expression is nested too deeply",
            )
            .label(format!(
                "more than {MAX_EXPR_DEPTH} levels of operators here"
            ))
            .help("split it into smaller expressions, for example with a `script` step"),
        );
        self.error_expr(span)
    }

    /// Lowers `expr` with the Pratt parser; returns the tree and its depth.
    fn expr(&self, pair: Pair<Rule>) -> (Expr, Depth) {
        let span = self.span(&pair);
        // The Pratt parser recurses once per prefix operator: bound that first.
        let mut run = 0usize;
        for p in pair.clone().into_inner() {
            if matches!(p.as_rule(), Rule::op_not | Rule::op_neg) {
                run += 1;
                if run > MAX_EXPR_DEPTH {
                    return self.too_deep(span);
                }
            } else {
                run = 0;
            }
        }
        PRATT
            .map_primary(|p| self.postfix_expr(p))
            .map_prefix(|op, (rhs, depth)| {
                let span = self.span(&op).to(rhs.span);
                if matches!(rhs.kind, ExprKind::Error) {
                    return self.error_expr(span);
                }
                if depth >= MAX_EXPR_DEPTH {
                    return self.too_deep(span);
                }
                let op = if op.as_rule() == Rule::op_not {
                    UnOp::Not
                } else {
                    UnOp::Neg
                };
                // Fold `-<number>` into a negative literal so `-9223372036854775808` fits.
                let kind = match (op, &rhs.kind) {
                    (UnOp::Neg, ExprKind::Int(n)) => ExprKind::Int(-n),
                    (UnOp::Neg, ExprKind::Float(f)) => ExprKind::Float(-f),
                    _ => ExprKind::Unary(op, Box::new(rhs)),
                };
                (Expr { kind, span }, depth + 1)
            })
            .map_infix(|(lhs, ld), op, (rhs, rd)| {
                let span = lhs.span.to(rhs.span);
                // An operand already in error was reported: one E0105 per
                // over-long chain, not one every 64 operators.
                if matches!(lhs.kind, ExprKind::Error) || matches!(rhs.kind, ExprKind::Error) {
                    return self.error_expr(span);
                }
                let depth = ld.max(rd) + 1;
                if depth > MAX_EXPR_DEPTH {
                    return self.too_deep(span);
                }
                let op = match op.as_rule() {
                    Rule::op_coalesce => BinOp::Coalesce,
                    Rule::op_or => BinOp::Or,
                    Rule::op_and => BinOp::And,
                    Rule::op_eq => BinOp::Eq,
                    Rule::op_ne => BinOp::Ne,
                    Rule::op_lt => BinOp::Lt,
                    Rule::op_le => BinOp::Le,
                    Rule::op_gt => BinOp::Gt,
                    Rule::op_ge => BinOp::Ge,
                    Rule::op_in => BinOp::In,
                    Rule::op_add => BinOp::Add,
                    Rule::op_sub => BinOp::Sub,
                    Rule::op_mul => BinOp::Mul,
                    Rule::op_div => BinOp::Div,
                    _ => BinOp::Rem,
                };
                (
                    Expr {
                        kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                        span,
                    },
                    depth,
                )
            })
            .parse(pair.into_inner())
    }

    fn postfix_expr(&self, pair: Pair<Rule>) -> (Expr, Depth) {
        let mut inner = pair.into_inner();
        let (mut expr, mut depth) = self.primary(next(&mut inner));
        for post in inner {
            depth += 1;
            let span = expr.span.to(self.span(&post));
            if depth > MAX_EXPR_DEPTH {
                return self.too_deep(span);
            }
            let rule = post.as_rule();
            let mut parts = post.into_inner();
            let kind = match rule {
                Rule::member => ExprKind::Member(Box::new(expr), self.ident(next(&mut parts))),
                Rule::opt_member => {
                    ExprKind::OptMember(Box::new(expr), self.ident(next(&mut parts)))
                }
                Rule::opt_method_call => {
                    let name = self.ident(next(&mut parts));
                    let (args, d) = self.args(next(&mut parts));
                    depth = depth.max(d + 1);
                    ExprKind::OptMethod(Box::new(expr), name, args)
                }
                Rule::index => {
                    let (index, d) = self.expr(next(&mut parts));
                    depth = depth.max(d + 1);
                    ExprKind::Index(Box::new(expr), Box::new(index))
                }
                _ => {
                    let name = self.ident(next(&mut parts));
                    let (args, d) = self.args(next(&mut parts));
                    depth = depth.max(d + 1);
                    ExprKind::Method(Box::new(expr), name, args)
                }
            };
            expr = Expr { kind, span };
        }
        (expr, depth)
    }

    fn args(&self, pair: Pair<Rule>) -> (Vec<Expr>, Depth) {
        let mut depth = 0;
        let args = pair
            .into_inner()
            .map(|p| {
                let (e, d) = self.expr(p);
                depth = depth.max(d);
                e
            })
            .collect();
        (args, depth)
    }

    fn primary(&self, pair: Pair<Rule>) -> (Expr, Depth) {
        let span = self.span(&pair);
        let leaf = |kind| (Expr { kind, span }, 1);
        match pair.as_rule() {
            Rule::boolean => leaf(ExprKind::Bool(pair.as_str() == "true")),
            Rule::null => leaf(ExprKind::Null),
            Rule::number => match decode_number(pair.as_str(), span, self.file) {
                Ok(Number::Int(n)) => leaf(ExprKind::Int(n)),
                Ok(Number::Float(f)) => leaf(ExprKind::Float(f)),
                Ok(Number::Duration(ms)) => leaf(ExprKind::Duration(ms)),
                Ok(Number::Size(b)) => leaf(ExprKind::Size(b)),
                Err(diag) => {
                    self.error(diag);
                    self.error_expr(span)
                }
            },
            Rule::string | Rule::multiline_string => leaf(ExprKind::Str(self.string_lit(pair))),
            Rule::ident => leaf(ExprKind::Name(pair.as_str().to_string())),
            Rule::paren => {
                // The parentheses belong to the span, so an enclosing
                // expression's source text keeps its closing `)`.
                let (e, d) = self.expr(first(pair));
                (Expr { kind: e.kind, span }, d)
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                let name = self.ident(next(&mut inner));
                let (args, d) = self.args(next(&mut inner));
                (
                    Expr {
                        kind: ExprKind::Call(name, args),
                        span,
                    },
                    d + 1,
                )
            }
            Rule::list => {
                let mut depth = 0;
                let items = pair
                    .into_inner()
                    .map(|p| {
                        let (e, d) = self.expr(p);
                        depth = depth.max(d);
                        e
                    })
                    .collect();
                (
                    Expr {
                        kind: ExprKind::List(items),
                        span,
                    },
                    depth + 1,
                )
            }
            Rule::map => {
                let mut depth = 0;
                let entries = pair
                    .into_inner()
                    .map(|entry| {
                        let mut inner = entry.into_inner();
                        let key_pair = next(&mut inner);
                        let key = match key_pair.as_rule() {
                            Rule::ident => MapKey {
                                span: self.span(&key_pair),
                                name: key_pair.as_str().to_string(),
                            },
                            _ => {
                                let lit = self.string_lit(key_pair);
                                MapKey {
                                    name: lit.value,
                                    span: lit.span,
                                }
                            }
                        };
                        let (value, d) = self.expr(next(&mut inner));
                        depth = depth.max(d);
                        (key, value)
                    })
                    .collect();
                (
                    Expr {
                        kind: ExprKind::Map(entries),
                        span,
                    },
                    depth + 1,
                )
            }
            _ => self.error_expr(span),
        }
    }
}

/// The next child; the grammar guarantees it exists, so a missing one is a bug
/// in the grammar or here, reported as an empty identifier rather than a panic.
fn next<'i>(pairs: &mut pest::iterators::Pairs<'i, Rule>) -> Pair<'i, Rule> {
    match pairs.next() {
        Some(p) => p,
        None => missing(),
    }
}

fn first(pair: Pair<Rule>) -> Pair<Rule> {
    let mut inner = pair.into_inner();
    next(&mut inner)
}

#[cold]
fn missing<'i>() -> Pair<'i, Rule> {
    // Unreachable for every input pest accepts; a parse of the empty identifier
    // keeps this total without `unwrap`.
    static EMPTY: &str = "_";
    match FlowParser::parse(Rule::ident, EMPTY) {
        Ok(mut p) => match p.next() {
            Some(p) => p,
            None => unreachable!("pest returned no pair for a successful parse"),
        },
        Err(_) => unreachable!("`_` is an identifier"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn flow_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                flow_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "flow") {
                out.push(path);
            }
        }
    }

    /// Reading a skill member by member gives the same tree and diagnostics
    /// as parsing it whole, for every fixture, workflow and standard module.
    #[test]
    fn skills_by_members_match_whole_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["tests", "workflows", "stdlib"] {
            flow_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 50, "found only {} files", files.len());
        let mut compared = 0;
        let mut extra = vec![
            "# lead\nskill a(x: int = 1) -> string { # c\n step s: run { command: \"echo\", accept: exit_code == 0 }, return s.stdout } # tail\n".to_string(),
            "skill b() {\n  step s: run { command: \"x\" }\n  step s2: run { command: \"{{ s.stdout }}\" },\n  loop l { max: 2\n step t: run { command: \"y\" } }\n  for x in [1, 2] { step u: run { command: \"{{ x }}\" } }\n}".to_string(),
            "skill c() { step s: run { command: 1 +\n 2 } step t: run { } }".to_string(),
            "skill d() { step s: run { command: \"x\" } } extra".to_string(),
            "skill e() { step s run { } }".to_string(),
            "skill f() {}".to_string(),
            "skill g(,) { }".to_string(),
        ];
        for path in &files {
            if let Ok(text) = std::fs::read_to_string(path) {
                extra.push(text);
            }
        }
        for text in &extra {
            let mut diags = Vec::new();
            let chunks = prescan::split_items(text, 0, &mut diags);
            if !diags.is_empty() {
                continue;
            }
            for chunk in chunks {
                let src = &text[chunk.start..chunk.end];
                let mut items = Vec::new();
                let mut whole = Vec::new();
                parse_whole(text, chunk, 0, &mut items, &mut whole);
                if let Some((item, diags)) = skill_by_members(src, chunk.start, 0) {
                    assert_eq!(items.len(), 1, "{src}");
                    assert_eq!(format!("{:?}", items[0]), format!("{item:?}"), "{src}");
                    assert_eq!(format!("{whole:?}"), format!("{diags:?}"), "{src}");
                    compared += 1;
                } else {
                    // Only items that do not parse, or are not skills, go whole.
                    let is_skill = matches!(items.first(), Some(Item::Skill(_)));
                    assert!(
                        !is_skill,
                        "a skill that parses was not read by members: {src}"
                    );
                }
            }
        }
        assert!(compared > 50, "compared only {compared} skills");
    }
}
