//! Templates checked like expressions: every name, field and method a template reads, over minijinja's syntax tree.
//!
//! minijinja's own `undeclared_variables` gives dotted paths only, which
//! cannot tell `{{ s.len }}` from `{{ s.len() }}` nor see an `{% if %}` that
//! guards a value that may be absent. Walking the tree can: a template reads
//! fields, calls methods and tests values the way an expression does, so the
//! same rules apply (E0402, E0403, E0320).

use super::builtins;
use super::expr::{Lookup, Scope, may_be_null};
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::ir::Ty;
use crate::syntax::ast::StrLit;
use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use std::collections::HashMap;

/// Globals minijinja provides itself.
const TEMPLATE_GLOBALS: &[&str] = &[
    "range",
    "dict",
    "debug",
    "namespace",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
];

/// Filters that accept a missing value and give something in its place.
const DEFAULT_FILTERS: &[&str] = &["default", "d"];

/// Tests that accept a value that may be absent.
const PRESENCE_TESTS: &[&str] = &["defined", "undefined", "none"];

/// One template being walked.
struct Walk<'c, 'm, 's> {
    cx: &'c mut ModuleCx<'m>,
    lit: &'c StrLit,
    scope: &'s mut dyn Scope,
    /// Names bound inside the template (`{% for x in … %}`, `{% set x = … %}`).
    locals: Vec<HashMap<String, Ty>>,
    /// Names an enclosing `{% if %}` proved present.
    present: Vec<String>,
    /// Names already reported as unknown (one error per name).
    reported: Vec<String>,
}

impl ModuleCx<'_> {
    /// Checks what a compiled template reads against `scope`, recording its dataflow.
    pub fn check_template_names(&mut self, lit: &StrLit, scope: &mut dyn Scope) {
        let source = lit.value.clone();
        let Ok(tree) = minijinja::machinery::parse(&source, "<template>", Default::default())
        else {
            // Syntax errors were reported when the template was compiled.
            return;
        };
        let mut walk = Walk {
            cx: self,
            lit,
            scope,
            locals: vec![HashMap::new()],
            present: Vec::new(),
            reported: Vec::new(),
        };
        walk.stmt(&tree);
    }
}

impl Walk<'_, '_, '_> {
    fn span(&self, span: minijinja::machinery::Span) -> crate::span::Span {
        let (s, e) = (span.start_offset as usize, span.end_offset as usize);
        self.cx.span_in_literal(self.lit, s..e.max(s + 1))
    }

    fn stmts(&mut self, body: &[Stmt<'_>]) {
        for s in body {
            self.stmt(s);
        }
    }

    fn guarded(&mut self, names: Vec<String>, body: &[Stmt<'_>]) {
        let before = self.present.len();
        self.present.extend(names);
        self.stmts(body);
        self.present.truncate(before);
    }

    fn stmt(&mut self, stmt: &Stmt<'_>) {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => {
                self.expr(&e.expr, false);
            }
            Stmt::EmitRaw(_) => {}
            Stmt::IfCond(c) => {
                self.expr(&c.expr, true);
                let (yes, no) = (proves(&c.expr, true), proves(&c.expr, false));
                self.guarded(yes, &c.true_body);
                self.guarded(no, &c.false_body);
            }
            Stmt::ForLoop(f) => {
                let elem = match self.expr(&f.iter, false) {
                    Ty::List(elem) => *elem,
                    _ => Ty::Json,
                };
                let mut frame = HashMap::new();
                bind(&f.target, &elem, &mut frame);
                self.locals.push(frame);
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter, true);
                }
                self.stmts(&f.body);
                self.locals.pop();
                self.stmts(&f.else_body);
            }
            Stmt::WithBlock(w) => {
                let mut frame = HashMap::new();
                for (target, value) in &w.assignments {
                    let ty = self.expr(value, false);
                    bind(target, &ty, &mut frame);
                }
                self.locals.push(frame);
                self.stmts(&w.body);
                self.locals.pop();
            }
            Stmt::Set(s) => {
                let ty = self.expr(&s.expr, false);
                if let Some(frame) = self.locals.last_mut() {
                    bind(&s.target, &ty, frame);
                }
            }
            Stmt::SetBlock(s) => {
                if let Some(filter) = &s.filter {
                    self.expr(filter, false);
                }
                self.stmts(&s.body);
                if let Some(frame) = self.locals.last_mut() {
                    bind(&s.target, &Ty::String, frame);
                }
            }
            Stmt::AutoEscape(a) => self.stmts(&a.body),
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter, false);
                self.stmts(&f.body);
            }
            Stmt::Do(d) => {
                self.call(&d.call, false);
            }
        }
    }

    fn local(&self, name: &str) -> Option<Ty> {
        self.locals.iter().rev().find_map(|f| f.get(name).cloned())
    }

    /// The type of `expr`. `lenient`: the value may be absent here (a test,
    /// a `default` filter, an `if` condition), so reading it is no error.
    fn expr(&mut self, expr: &Expr<'_>, lenient: bool) -> Ty {
        match expr {
            Expr::Var(v) => self.var(v.id, expr),
            Expr::Const(c) => match c.value.kind() {
                minijinja::value::ValueKind::String => Ty::String,
                minijinja::value::ValueKind::Bool => Ty::Bool,
                minijinja::value::ValueKind::None => Ty::Optional(Box::new(Ty::Error)),
                _ => Ty::Json,
            },
            Expr::GetAttr(g) => {
                let base = self.expr(&g.expr, false);
                let base = self.require_present(&g.expr, base, &format!(".{}", g.name), lenient);
                self.field(&g.expr, &base, g.name, expr)
            }
            Expr::GetItem(g) => {
                let base = self.expr(&g.expr, false);
                self.expr(&g.subscript_expr, false);
                let base = self.require_present(&g.expr, base, "[…]", lenient);
                match base {
                    Ty::List(elem) => *elem,
                    _ => Ty::Json,
                }
            }
            Expr::Call(c) => self.call(c, lenient),
            Expr::Filter(f) => {
                let default = DEFAULT_FILTERS.contains(&f.name);
                let ty = match &f.expr {
                    Some(inner) => self.expr(inner, default),
                    None => Ty::Json,
                };
                self.args(&f.args);
                if default {
                    return ty.strip_optional().clone();
                }
                match f.name {
                    "upper" | "lower" | "trim" | "title" | "capitalize" | "replace" | "join"
                    | "tojson" | "string" | "indent" => Ty::String,
                    "length" | "count" => Ty::Int,
                    _ => Ty::Json,
                }
            }
            Expr::Test(t) => {
                self.expr(&t.expr, PRESENCE_TESTS.contains(&t.name));
                self.args(&t.args);
                Ty::Bool
            }
            Expr::UnaryOp(u) => {
                self.expr(&u.expr, lenient && matches!(u.op, ast::UnaryOpKind::Not));
                match u.op {
                    ast::UnaryOpKind::Not => Ty::Bool,
                    ast::UnaryOpKind::Neg => Ty::Json,
                }
            }
            Expr::BinOp(b) => {
                let logical = matches!(b.op, ast::BinOpKind::ScAnd | ast::BinOpKind::ScOr);
                self.expr(&b.left, lenient && logical);
                let names = match b.op {
                    ast::BinOpKind::ScAnd => proves(&b.left, true),
                    ast::BinOpKind::ScOr => proves(&b.left, false),
                    _ => Vec::new(),
                };
                let before = self.present.len();
                self.present.extend(names);
                self.expr(&b.right, lenient && logical);
                self.present.truncate(before);
                match b.op {
                    ast::BinOpKind::Concat => Ty::String,
                    _ => Ty::Json,
                }
            }
            Expr::Compare(c) => {
                let none_test = c.ops.iter().all(|op| {
                    matches!(op.op, ast::CompareOpKind::Eq | ast::CompareOpKind::Ne)
                        && is_none(&op.expr)
                });
                self.expr(&c.expr, none_test);
                for op in &c.ops {
                    self.expr(&op.expr, false);
                }
                Ty::Bool
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr, true);
                let before = self.present.len();
                self.present.extend(proves(&i.test_expr, true));
                let ty = self.expr(&i.true_expr, lenient);
                self.present.truncate(before);
                if let Some(other) = &i.false_expr {
                    self.present.extend(proves(&i.test_expr, false));
                    self.expr(other, lenient);
                    self.present.truncate(before);
                }
                ty
            }
            Expr::Slice(s) => {
                let ty = self.expr(&s.expr, false);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part, false);
                }
                ty
            }
            Expr::List(l) => {
                for item in &l.items {
                    self.expr(item, false);
                }
                Ty::Json
            }
            Expr::Tuple(t) => {
                for item in &t.items {
                    self.expr(item, false);
                }
                Ty::Json
            }
            Expr::Map(m) => {
                for item in m.keys.iter().chain(&m.values) {
                    self.expr(item, false);
                }
                Ty::Json
            }
        }
    }

    fn var(&mut self, name: &str, expr: &Expr<'_>) -> Ty {
        if let Some(ty) = self.local(name) {
            return ty;
        }
        if TEMPLATE_GLOBALS.contains(&name) {
            return Ty::Json;
        }
        let span = self.span(expr.span());
        let ty = match self.scope.lookup(name, span, &mut self.cx.diags) {
            Lookup::Found(ty) => ty,
            Lookup::Reported => return Ty::Error,
            Lookup::Missing => {
                if !self.reported.iter().any(|r| r == name) {
                    self.reported.push(name.to_string());
                    let names = self.scope.names();
                    self.cx.diags.push(
                        Diagnostic::new(
                            Code::E0402,
                            self.cx.file,
                            span,
                            format!("unknown name `{name}` in template"),
                        )
                        .label("not a parameter, step or loop name here")
                        .maybe_help(did_you_mean(name, names.iter().map(String::as_str))),
                    );
                }
                return Ty::Error;
            }
        };
        if self.present.iter().any(|p| p == name) {
            return ty.strip_optional().clone();
        }
        ty
    }

    /// `base` is read through (`access` is `.field`, `.method()`, `[…]`):
    /// it must be present unless the position is lenient. Returns it without `?`.
    fn require_present(&mut self, base: &Expr<'_>, ty: Ty, access: &str, lenient: bool) -> Ty {
        if !may_be_null(&ty) {
            return ty;
        }
        if !lenient {
            let text = path_text(base);
            let root = root_var(base).unwrap_or("value");
            let why = root_var(base)
                .and_then(|r| self.scope.absence(r))
                .unwrap_or_else(|| "this may be `null`".to_string());
            let span = self.span(base.span());
            self.cx.diags.push(
                Diagnostic::new(
                    Code::E0320,
                    self.cx.file,
                    span,
                    format!("`{text}` may be absent, so `{text}{access}` may fail"),
                )
                .label(why)
                .help(format!(
                    "guard it: `{{% if {root} %}}…{{% endif %}}`, or give a default: `{{{{ {text}{access} | default(\"\") }}}}`"
                )),
            );
        }
        ty.strip_optional().clone()
    }

    /// The type of `base.name` (a field, never a method call).
    fn field(&mut self, base: &Expr<'_>, ty: &Ty, name: &str, whole: &Expr<'_>) -> Ty {
        let text = path_text(base);
        let (help, names) = match ty {
            Ty::Error | Ty::Json => return Ty::Json,
            Ty::Record(rec) => {
                if let Some(t) = rec.field(name) {
                    return t.clone();
                }
                let names: Vec<&str> = rec.fields.iter().map(|(n, _)| n.as_str()).collect();
                let help = if name == "output"
                    && rec.name.as_deref().is_some_and(|n| n.ends_with("result"))
                {
                    Some("declare `output: Type` on the step to get a typed `output`".to_string())
                } else {
                    did_you_mean(name, names.iter().copied())
                };
                (help, true)
            }
            // `xs.0` indexes a list.
            Ty::List(elem) if name.bytes().all(|b| b.is_ascii_digit()) => return (**elem).clone(),
            _ => (None, false),
        };
        let help = help.or_else(|| {
            builtins::method(ty, name)
                .map(|_| format!("`{name}` is a method: write `{text}.{name}()`"))
        });
        let label = if names {
            "unknown field"
        } else {
            "this type has no fields"
        };
        let span = self.span(whole.span());
        self.cx.diags.push(
            Diagnostic::new(
                Code::E0403,
                self.cx.file,
                span,
                format!("no field `{name}` on `{text}` (type `{ty}`)"),
            )
            .label(label)
            .maybe_help(help),
        );
        Ty::Error
    }

    /// A call: `x.method(args)` (checked against the built-in methods) or a global.
    fn call(&mut self, call: &ast::Call<'_>, lenient: bool) -> Ty {
        if matches!(&call.expr, Expr::Var(v) if v.id == "recall" && self.local("recall").is_none())
        {
            return self.recall(call);
        }
        self.args(&call.args);
        let Expr::GetAttr(g) = &call.expr else {
            self.expr(&call.expr, lenient);
            return Ty::Json;
        };
        let base = self.expr(&g.expr, false);
        let base = self.require_present(&g.expr, base, &format!(".{}()", g.name), lenient);
        if base.is_dynamic() {
            return Ty::Json;
        }
        if let Some(sig) = builtins::method(&base, g.name) {
            return sig.ret;
        }
        let text = path_text(&g.expr);
        let names = builtins::method_names(&base);
        let help = did_you_mean(g.name, names.iter().copied());
        let span = self.span(call.expr.span());
        self.cx.diags.push(
            Diagnostic::new(
                Code::E0403,
                self.cx.file,
                span,
                format!("no method `{}` on `{text}` (type `{base}`)", g.name),
            )
            .label("unknown method")
            .maybe_help(help),
        );
        Ty::Error
    }

    /// `recall(key)` or `recall(key, default)`: the key a string literal, as in expressions.
    fn recall(&mut self, call: &ast::Call<'_>) -> Ty {
        let span = self.span(call.expr.span());
        let file = self.cx.file;
        let (key, default) = match call.args.as_slice() {
            [CallArg::Pos(k)] => (k, None),
            [CallArg::Pos(k), CallArg::Pos(d)] => (k, Some(d)),
            _ => {
                self.args(&call.args);
                self.cx.diags.push(
                    Diagnostic::new(
                        Code::E0304,
                        file,
                        span,
                        "`recall` takes a key and an optional default",
                    )
                    .label("expects `recall(\"key\")` or `recall(\"key\", default)`"),
                );
                return Ty::Error;
            }
        };
        let key_span = self.span(key.span());
        match key {
            Expr::Const(c) if c.value.as_str().is_some() => {
                let key = c.value.as_str().unwrap_or_default();
                if let Some(d) = super::memory::key_problem(file, key_span, key) {
                    self.cx.diags.push(d);
                } else if !self.scope.recall(key) {
                    self.cx.diags.push(super::memory::outside_skill(file, span));
                }
            }
            _ => {
                self.expr(key, false);
                self.cx
                    .diags
                    .push(super::memory::not_literal(file, key_span));
            }
        }
        let default = default.map(|d| self.expr(d, false));
        super::memory::recall_type(default.as_ref())
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for a in args {
            match a {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => {
                    self.expr(e, false);
                }
            }
        }
    }
}

/// Binds a `for`/`set`/`with` target to `ty` (tuples unpack to unknowns).
fn bind(target: &Expr<'_>, ty: &Ty, frame: &mut HashMap<String, Ty>) {
    match target {
        Expr::Var(v) => {
            frame.insert(v.id.to_string(), ty.clone());
        }
        Expr::Tuple(t) => {
            for item in &t.items {
                bind(item, &Ty::Json, frame);
            }
        }
        _ => {}
    }
}

fn is_none(expr: &Expr<'_>) -> bool {
    matches!(expr, Expr::Const(c) if c.value.is_none())
}

/// Names `expr` being `truth` proves present: `{% if a %}`, `a is defined`,
/// `a is not none`, `a != none`, and `and`/`or`/`not` of those.
fn proves(expr: &Expr<'_>, truth: bool) -> Vec<String> {
    match expr {
        Expr::Var(v) if truth => vec![v.id.to_string()],
        Expr::Test(t) => match (&t.expr, t.name, truth) {
            (Expr::Var(v), "defined", true) | (Expr::Var(v), "none", false) => {
                vec![v.id.to_string()]
            }
            _ => Vec::new(),
        },
        Expr::Compare(c) if c.ops.len() == 1 && is_none(&c.ops[0].expr) => {
            let ne = matches!(c.ops[0].op, ast::CompareOpKind::Ne);
            match &c.expr {
                Expr::Var(v) if ne == truth => vec![v.id.to_string()],
                _ => Vec::new(),
            }
        }
        Expr::UnaryOp(u) if matches!(u.op, ast::UnaryOpKind::Not) => proves(&u.expr, !truth),
        Expr::BinOp(b) => match (b.op, truth) {
            (ast::BinOpKind::ScAnd, true) | (ast::BinOpKind::ScOr, false) => {
                let mut v = proves(&b.left, truth);
                v.extend(proves(&b.right, truth));
                v
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The variable an access chain starts from.
fn root_var<'a>(expr: &'a Expr<'a>) -> Option<&'a str> {
    match expr {
        Expr::Var(v) => Some(v.id),
        Expr::GetAttr(g) => root_var(&g.expr),
        Expr::GetItem(g) => root_var(&g.expr),
        Expr::Call(c) => root_var(&c.expr),
        _ => None,
    }
}

/// A short rendering of an access chain for messages (`plan.output.files`).
fn path_text(expr: &Expr<'_>) -> String {
    match expr {
        Expr::Var(v) => v.id.to_string(),
        Expr::GetAttr(g) => format!("{}.{}", path_text(&g.expr), g.name),
        Expr::GetItem(g) => format!("{}[…]", path_text(&g.expr)),
        Expr::Call(c) => format!("{}()", path_text(&c.expr)),
        _ => "value".to_string(),
    }
}
