//! Static type checking of expressions.

use super::builtins::{self, FUNCTIONS};
use crate::diag::{Code, Diagnostic, FileId, did_you_mean, suggest};
use crate::ir::Ty;
use crate::span::Span;
use crate::syntax::ast::{BinOp, Expr, ExprKind, UnOp};

/// The result of looking a name up.
pub enum Lookup {
    /// The name's type.
    Found(Ty),
    /// Not in scope: the checker reports E0201.
    Missing,
    /// Not in scope, and the scope already said why.
    Reported,
}

/// The names an expression may read, and the record of what it read.
pub trait Scope {
    /// The type of `name` (written at `span`), recording the use.
    fn lookup(&mut self, name: &str, span: Span, diags: &mut Vec<Diagnostic>) -> Lookup;
    /// Every name in scope, for "did you mean".
    fn names(&self) -> Vec<String>;
    /// Why the value of `name` may be absent (`null`) here, if it may.
    fn absence(&self, _name: &str) -> Option<String> {
        None
    }
    /// Records that the position reads memory `key` (`recall`); `false`
    /// where there is no run memory to read (outside a skill).
    fn recall(&mut self, _key: &str) -> bool {
        false
    }
}

/// A scope in which some names are known to be present (`x != null && …`).
struct Narrowed<'s> {
    inner: &'s mut dyn Scope,
    present: Vec<String>,
}

impl Scope for Narrowed<'_> {
    fn lookup(&mut self, name: &str, span: Span, diags: &mut Vec<Diagnostic>) -> Lookup {
        match self.inner.lookup(name, span, diags) {
            Lookup::Found(ty) if self.present.iter().any(|n| n == name) => {
                Lookup::Found(ty.strip_optional().clone())
            }
            other => other,
        }
    }

    fn names(&self) -> Vec<String> {
        self.inner.names()
    }

    fn absence(&self, name: &str) -> Option<String> {
        if self.present.iter().any(|n| n == name) {
            return None;
        }
        self.inner.absence(name)
    }

    fn recall(&mut self, key: &str) -> bool {
        self.inner.recall(key)
    }
}

/// The names `expr` being `truth` proves present: `a != null` (true),
/// `a == null` (false), and the conjuncts (or disjuncts) of such tests.
pub fn proven_present(expr: &Expr, truth: bool) -> Vec<String> {
    match &expr.kind {
        ExprKind::Binary(op @ (BinOp::Ne | BinOp::Eq), l, r) if (*op == BinOp::Ne) == truth => {
            match (&l.kind, &r.kind) {
                (ExprKind::Name(n), ExprKind::Null) | (ExprKind::Null, ExprKind::Name(n)) => {
                    vec![n.clone()]
                }
                _ => Vec::new(),
            }
        }
        ExprKind::Binary(BinOp::And, l, r) if truth => {
            let mut v = proven_present(l, true);
            v.extend(proven_present(r, true));
            v
        }
        ExprKind::Binary(BinOp::Or, l, r) if !truth => {
            let mut v = proven_present(l, false);
            v.extend(proven_present(r, false));
            v
        }
        ExprKind::Unary(UnOp::Not, inner) => proven_present(inner, !truth),
        _ => Vec::new(),
    }
}

/// The name an access chain starts from (`a` in `a.b[0].c()`).
fn root_name(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::Name(n) => Some(n),
        ExprKind::Member(b, _)
        | ExprKind::OptMember(b, _)
        | ExprKind::Index(b, _)
        | ExprKind::Method(b, _, _)
        | ExprKind::OptMethod(b, _, _) => root_name(b),
        _ => None,
    }
}

/// `T?`, unless `ty` is already optional or dynamic.
pub fn optional(ty: Ty) -> Ty {
    if matches!(ty, Ty::Optional(_) | Ty::Json | Ty::Error) {
        ty
    } else {
        Ty::Optional(Box::new(ty))
    }
}

/// Whether a value of `ty` may be `null` (and is not merely unknown).
pub fn may_be_null(ty: &Ty) -> bool {
    matches!(ty, Ty::Optional(inner) if !inner.is_dynamic())
}

/// Type-checks expressions of one file.
pub struct ExprChecker<'d> {
    /// The file the spans point into.
    pub file: FileId,
    /// Where errors go.
    pub diags: &'d mut Vec<Diagnostic>,
}

impl ExprChecker<'_> {
    fn error(&mut self, diag: Diagnostic) -> Ty {
        self.diags.push(diag);
        Ty::Error
    }

    /// Checks `expr` and requires it to fit `want`; `what` names the place ("`attempts`").
    pub fn expect(&mut self, expr: &Expr, scope: &mut dyn Scope, want: &Ty, what: &str) -> Ty {
        let ty = self.check(expr, scope);
        self.require(expr, &ty, want, what);
        ty
    }

    /// Reports E0301 unless `ty` fits `want` (and string literals fit unions).
    pub fn require(&mut self, expr: &Expr, ty: &Ty, want: &Ty, what: &str) {
        if let (ExprKind::Str(lit), Ty::Union(options)) = (&expr.kind, want.strip_optional()) {
            if !options.contains(&lit.value) {
                let help = suggest(&lit.value, options.iter().map(String::as_str))
                    .map(|s| format!("did you mean `\"{s}\"`?"))
                    .unwrap_or_else(|| format!("expected one of {want}"));
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        expr.span,
                        format!("`\"{}\"` is not one of {want}", lit.value),
                    )
                    .label(format!("{what} expects {want}"))
                    .help(help),
                );
            }
            return;
        }
        if !ty.fits(want) {
            let mut diag = Diagnostic::new(
                Code::E0301,
                self.file,
                expr.span,
                format!("mismatched types: {what} expects `{want}`, found `{ty}`"),
            )
            .label(format!("this is `{ty}`"));
            diag = diag.maybe_help(conversion_help(expr, ty, want));
            self.diags.push(diag);
        }
    }

    /// Checks a condition: it must be a bool (E0306).
    pub fn condition(&mut self, expr: &Expr, scope: &mut dyn Scope, what: &str) -> Ty {
        let ty = self.check(expr, scope);
        if may_be_null(&ty) && ty.fits(&Ty::Bool) {
            self.absent(expr, &*scope, what, "?? false");
            return Ty::Bool;
        }
        if !ty.fits(&Ty::Bool) {
            let help = match ty.strip_optional() {
                Ty::Int => Some("compare it, for example `... == 0`".to_string()),
                t if t.is_stringy() => Some(
                    "compare it, for example `... == \"yes\"`, or test `.contains(...)`"
                        .to_string(),
                ),
                Ty::List(_) => Some("test it, for example `!list.is_empty()`".to_string()),
                _ => None,
            };
            self.diags.push(
                Diagnostic::new(
                    Code::E0306,
                    self.file,
                    expr.span,
                    format!("{what} must be a `bool`, found `{ty}`"),
                )
                .label(format!("this is `{ty}`"))
                .maybe_help(help),
            );
        }
        Ty::Bool
    }

    /// The static type of `expr`; errors are reported and yield [`Ty::Error`].
    pub fn check(&mut self, expr: &Expr, scope: &mut dyn Scope) -> Ty {
        match &expr.kind {
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Float(_) => Ty::Float,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::Size(_) => Ty::Size,
            ExprKind::Str(lit) => {
                if lit.value.contains("{{") || lit.value.contains("{%") {
                    self.diags.push(
                        Diagnostic::new(
                            Code::W0005,
                            self.file,
                            expr.span,
                            "`{{ … }}` inside an expression is not a template",
                        )
                        .label("this string is used as it is written")
                        .help("only a field whose whole value is a string is a template; inside an expression, join text with `+`, as in `\"coverage \" + output`"),
                    );
                }
                Ty::String
            }
            ExprKind::Null => Ty::Optional(Box::new(Ty::Error)),
            ExprKind::Error => Ty::Error,
            ExprKind::Name(name) => match scope.lookup(name, expr.span, self.diags) {
                Lookup::Found(ty) => ty,
                Lookup::Reported => Ty::Error,
                Lookup::Missing => {
                    let names = scope.names();
                    let help = did_you_mean(name, names.iter().map(String::as_str));
                    self.error(
                        Diagnostic::new(
                            Code::E0201,
                            self.file,
                            expr.span,
                            format!("cannot find `{name}` in this scope"),
                        )
                        .label("not a parameter, step or loop name here")
                        .maybe_help(help),
                    )
                }
            },
            ExprKind::Member(base, field) => {
                let base_ty = self.present(base, scope, &format!("`.{}`", field.name));
                self.member(&base_ty, base, &field.name, field.span)
            }
            ExprKind::OptMember(base, field) => {
                let base_ty = self.check(base, scope);
                let ty = self.member(base_ty.strip_optional(), base, &field.name, field.span);
                if may_be_null(&base_ty) {
                    optional(ty)
                } else {
                    ty
                }
            }
            ExprKind::Index(base, index) => {
                let base_ty = self.present(base, scope, "indexing");
                let index_ty = self.check(index, scope);
                self.index(&base_ty, base, &index_ty, index)
            }
            ExprKind::Method(recv, name, args) => {
                let recv_ty = self.present(recv, scope, &format!("`.{}()`", name.name));
                let arg_tys: Vec<Ty> = args.iter().map(|a| self.check(a, scope)).collect();
                self.method(&recv_ty, name.name.as_str(), name.span, args, &arg_tys)
            }
            ExprKind::OptMethod(recv, name, args) => {
                let recv_ty = self.check(recv, scope);
                let arg_tys: Vec<Ty> = args.iter().map(|a| self.check(a, scope)).collect();
                let absent = may_be_null(&recv_ty);
                let recv_ty = recv_ty.strip_optional().clone();
                let ty = self.method(&recv_ty, name.name.as_str(), name.span, args, &arg_tys);
                if absent { optional(ty) } else { ty }
            }
            ExprKind::Call(name, args) if name.name == "recall" => {
                self.recall(expr.span, args, scope)
            }
            ExprKind::Call(name, args) => {
                let arg_tys: Vec<Ty> = args.iter().map(|a| self.check(a, scope)).collect();
                self.call(&name.name, name.span, args, &arg_tys)
            }
            ExprKind::Unary(op, inner) => {
                let what = match op {
                    UnOp::Not => "`!`",
                    UnOp::Neg => "`-`",
                };
                let ty = self.present(inner, scope, what);
                match op {
                    UnOp::Not if ty.fits(&Ty::Bool) => Ty::Bool,
                    UnOp::Neg
                        if ty.is_dynamic()
                            || ty.is_numeric()
                            || *ty.strip_optional() == Ty::Duration =>
                    {
                        ty.strip_optional().clone()
                    }
                    _ => {
                        let (sym, want) = match op {
                            UnOp::Not => ("!", "`bool`"),
                            UnOp::Neg => ("-", "a number"),
                        };
                        self.error(
                            Diagnostic::new(
                                Code::E0305,
                                self.file,
                                expr.span,
                                format!("`{sym}` expects {want}, found `{ty}`"),
                            )
                            .label(format!("this is `{ty}`")),
                        )
                    }
                }
            }
            ExprKind::Binary(BinOp::Coalesce, l, r) => {
                let lt = self.check(l, scope);
                let rt = self.check(r, scope);
                self.coalesce(&lt, r, &rt)
            }
            ExprKind::Binary(op, l, r) => {
                let lt = self.check(l, scope);
                let rt = match op {
                    // `a != null && a.x`: the right side sees `a` present.
                    BinOp::And | BinOp::Or => {
                        let present = proven_present(l, *op == BinOp::And);
                        if present.is_empty() {
                            self.check(r, scope)
                        } else {
                            let mut narrowed = Narrowed {
                                inner: scope,
                                present,
                            };
                            self.check(r, &mut narrowed)
                        }
                    }
                    _ => self.check(r, scope),
                };
                if !matches!(op, BinOp::Eq | BinOp::Ne) {
                    let what = format!("`{}`", op.symbol());
                    for (side, ty) in [(l, &lt), (r, &rt)] {
                        if may_be_null(ty) {
                            self.absent(side, &*scope, &what, "");
                        }
                    }
                }
                self.binary(*op, expr, l, &lt, r, &rt)
            }
            ExprKind::List(items) => {
                let mut elem: Option<Ty> = None;
                for item in items {
                    let ty = self.check(item, scope);
                    match &elem {
                        None => elem = Some(ty),
                        Some(e) if e.is_dynamic() => elem = Some(ty),
                        Some(e) => {
                            if !ty.fits(e) {
                                self.diags.push(
                                    Diagnostic::new(
                                        Code::E0301,
                                        self.file,
                                        item.span,
                                        format!("list elements must share one type: found `{e}` and `{ty}`"),
                                    )
                                    .label(format!("this is `{ty}`")),
                                );
                            }
                        }
                    }
                }
                elem.unwrap_or(Ty::Error).list_of()
            }
            ExprKind::Map(entries) => {
                let mut fields: Vec<(&str, Ty)> = Vec::new();
                for (key, value) in entries {
                    let ty = self.check(value, scope);
                    if fields.iter().any(|(n, _)| *n == key.name) {
                        self.diags.push(
                            Diagnostic::new(
                                Code::E0213,
                                self.file,
                                key.span,
                                format!("key `{}` is given twice", key.name),
                            )
                            .label("duplicate key"),
                        );
                        continue;
                    }
                    fields.push((key.name.as_str(), ty));
                }
                Ty::record(fields)
            }
        }
    }

    /// Checks `expr` where a value is required (`what` uses it): a value that
    /// may be absent is E0320. Returns the type without its `?`.
    fn present(&mut self, expr: &Expr, scope: &mut dyn Scope, what: &str) -> Ty {
        let ty = self.check(expr, scope);
        if may_be_null(&ty) {
            self.absent(expr, &*scope, what, "");
            return ty.strip_optional().clone();
        }
        ty
    }

    /// Reports E0320: `expr` may be `null` where `what` needs a value.
    /// `what` is an access (`.stdout`, `.len()`) or an operator (`` `+` ``).
    fn absent(&mut self, expr: &Expr, scope: &dyn Scope, what: &str, default: &str) {
        let text = base_text(expr);
        let why = root_name(expr).and_then(|n| scope.absence(n));
        let label = why.unwrap_or_else(|| "this may be `null`".to_string());
        let guard = root_name(expr)
            .map(|root| format!(", or test `{root} != null && …` first"))
            .unwrap_or_default();
        let help = match what.strip_prefix("`.").and_then(|w| w.strip_suffix('`')) {
            Some(access) => {
                format!("read it with `?.` and give a default: `{text}?.{access} ?? …`{guard}")
            }
            None if !default.is_empty() => format!("give a default: `{text} {default}`{guard}"),
            None => format!("give a default with `{text} ?? …`{guard}"),
        };
        let message = match what.strip_prefix('`') {
            Some(_) if what.starts_with("`.") => {
                format!(
                    "`{text}` may be absent, so `{text}{}` may fail",
                    &what[1..what.len() - 1]
                )
            }
            _ => format!("`{text}` may be absent where {what} needs a value"),
        };
        self.diags.push(
            Diagnostic::new(Code::E0320, self.file, expr.span, message)
                .label(label)
                .help(help),
        );
    }

    /// `a ?? b`: `a` without its `?`, where `b` must fit.
    fn coalesce(&mut self, lt: &Ty, r: &Expr, rt: &Ty) -> Ty {
        let inner = lt.strip_optional();
        if inner.is_dynamic() {
            return rt.clone();
        }
        self.require(r, rt, inner, "the default after `??`");
        if may_be_null(rt) {
            return lt.clone();
        }
        inner.clone()
    }

    fn member(&mut self, base_ty: &Ty, base: &Expr, field: &str, span: Span) -> Ty {
        let full = base.span.to(span);
        match base_ty.strip_optional() {
            Ty::Error => Ty::Error,
            Ty::Json => Ty::Json,
            Ty::Record(rec) => {
                if let Some(ty) = rec.field(field) {
                    return ty.clone();
                }
                if builtins::method(base_ty, field).is_some() {
                    return self.method_as_field(base, field, full);
                }
                let names: Vec<&str> = rec.fields.iter().map(|(n, _)| n.as_str()).collect();
                let is_result = rec.name.as_deref().is_some_and(|n| n.ends_with("result"));
                let help = if field == "output" && is_result {
                    Some("declare `output: Type` on the step to get a typed `output`".to_string())
                } else {
                    did_you_mean(field, names.iter().copied()).or_else(|| {
                        Some(format!(
                            "`{base_ty}` has the fields {}",
                            names
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .filter(|_| !names.is_empty())
                    })
                };
                self.error(
                    Diagnostic::new(
                        Code::E0302,
                        self.file,
                        span,
                        format!("no field `{field}` on type `{base_ty}`"),
                    )
                    .label("unknown field")
                    .maybe_help(help),
                )
            }
            Ty::List(elem) => {
                let field_of_elem =
                    matches!(elem.strip_optional(), Ty::Record(r) if r.field(field).is_some());
                if builtins::method(base_ty, field).is_some() {
                    return self.method_as_field(base, field, full);
                }
                let help = if field_of_elem {
                    let b = base_text(base);
                    format!(
                        "`{b}` is a list here (one result per element): index it, as in `{b}[0].{field}`"
                    )
                } else {
                    "lists have no fields; their methods are `len()`, `is_empty()` and `contains(x)`".to_string()
                };
                self.error(
                    Diagnostic::new(
                        Code::E0302,
                        self.file,
                        span,
                        format!("no field `{field}` on type `{base_ty}`"),
                    )
                    .label("lists have no fields")
                    .help(help),
                )
            }
            other => {
                if builtins::method(other, field).is_some() {
                    return self.method_as_field(base, field, full);
                }
                self.error(
                    Diagnostic::new(
                        Code::E0302,
                        self.file,
                        span,
                        format!("no field `{field}` on type `{other}`"),
                    )
                    .label(format!("`{other}` has no fields")),
                )
            }
        }
    }

    fn method_as_field(&mut self, base: &Expr, name: &str, span: Span) -> Ty {
        self.error(
            Diagnostic::new(
                Code::E0303,
                self.file,
                span,
                format!("`{name}` is a method, not a field"),
            )
            .label("used as a field")
            .help(format!("call it: `{}.{name}()`", base_text(base))),
        )
    }

    fn index(&mut self, base_ty: &Ty, base: &Expr, index_ty: &Ty, index: &Expr) -> Ty {
        match base_ty.strip_optional() {
            Ty::Error | Ty::Json => Ty::Json,
            Ty::List(elem) => {
                if !index_ty.fits(&Ty::Int) {
                    return self.error(
                        Diagnostic::new(
                            Code::E0315,
                            self.file,
                            index.span,
                            format!("a list index must be an `int`, found `{index_ty}`"),
                        )
                        .label("not an int"),
                    );
                }
                (**elem).clone()
            }
            Ty::Record(rec) => {
                if !index_ty.is_stringy() && !index_ty.is_dynamic() {
                    return self.error(
                        Diagnostic::new(
                            Code::E0315,
                            self.file,
                            index.span,
                            format!("a record key must be a `string`, found `{index_ty}`"),
                        )
                        .label("not a string"),
                    );
                }
                if let ExprKind::Str(key) = &index.kind {
                    return match rec.field(&key.value) {
                        Some(ty) => ty.clone(),
                        None => self.error(
                            Diagnostic::new(
                                Code::E0302,
                                self.file,
                                index.span,
                                format!("no field `{}` on type `{base_ty}`", key.value),
                            )
                            .label("unknown field"),
                        ),
                    };
                }
                Ty::Json
            }
            other => self.error(
                Diagnostic::new(
                    Code::E0315,
                    self.file,
                    base.span.to(index.span),
                    format!("cannot index a value of type `{other}`"),
                )
                .label("only lists and records can be indexed")
                .maybe_help(
                    other
                        .is_stringy()
                        .then(|| "to split text, use `.lines()` first".to_string()),
                ),
            ),
        }
    }

    fn method(&mut self, recv: &Ty, name: &str, span: Span, args: &[Expr], arg_tys: &[Ty]) -> Ty {
        if matches!(recv, Ty::Error) {
            return Ty::Error;
        }
        let Some(sig) = builtins::method(recv, name) else {
            if let Ty::Record(rec) = recv.strip_optional()
                && rec.field(name).is_some()
            {
                return self.error(
                    Diagnostic::new(
                        Code::E0303,
                        self.file,
                        span,
                        format!("`{name}` is a field, not a method"),
                    )
                    .label("called like a method")
                    .help("drop the parentheses"),
                );
            }
            let names = builtins::method_names(recv);
            let help = did_you_mean(name, names.iter().copied()).or_else(|| {
                (!names.is_empty()).then(|| {
                    format!(
                        "`{recv}` has the methods {}",
                        names
                            .iter()
                            .map(|n| format!("`{n}()`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            });
            return self.error(
                Diagnostic::new(
                    Code::E0303,
                    self.file,
                    span,
                    format!("no method `{name}` on type `{recv}`"),
                )
                .label("unknown method")
                .maybe_help(help),
            );
        };
        self.arguments(&format!("method `{name}`"), span, &sig, args, arg_tys);
        if name == "matches" {
            self.check_pattern(args);
        }
        sig.ret
    }

    /// A literal pattern of `matches` is compiled now, so a bad one is a check
    /// error rather than a run-time failure of every step it is applied to.
    fn check_pattern(&mut self, args: &[Expr]) {
        let Some(Expr {
            kind: ExprKind::Str(lit),
            span,
        }) = args.first()
        else {
            return;
        };
        if let Err(e) = regex::Regex::new(&lit.value) {
            let detail = match &e {
                regex::Error::Syntax(text) => text.lines().last().unwrap_or("").to_string(),
                other => other.to_string(),
            };
            self.diags.push(
                Diagnostic::new(
                    Code::E0321,
                    self.file,
                    *span,
                    "invalid regular expression in `matches`",
                )
                .label(detail.trim_start_matches("error: ").to_string())
                .help(
                    "`matches` takes the syntax of Rust's `regex` crate; to match a bracket or parenthesis itself, escape it (`\\\\(` in a string)",
                ),
            );
        }
    }

    fn call(&mut self, name: &str, span: Span, args: &[Expr], arg_tys: &[Ty]) -> Ty {
        let Some(sig) = builtins::function(name) else {
            let is_method = builtins::STRING_METHODS.contains(&name)
                || builtins::LIST_METHODS.contains(&name)
                || builtins::MAP_METHODS.contains(&name);
            let help = if is_method {
                Some(format!("`{name}` is a method: write `value.{name}()`"))
            } else {
                did_you_mean(name, FUNCTIONS.iter().copied()).or_else(|| {
                    Some(format!(
                        "the functions are {}",
                        FUNCTIONS
                            .iter()
                            .map(|f| format!("`{f}()`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            };
            return self.error(
                Diagnostic::new(
                    Code::E0303,
                    self.file,
                    span,
                    format!("unknown function `{name}`"),
                )
                .label("not a built-in function")
                .maybe_help(help),
            );
        };
        self.arguments(&format!("`{name}`"), span, &sig, args, arg_tys);
        sig.ret
    }

    fn arguments(
        &mut self,
        what: &str,
        span: Span,
        sig: &builtins::Signature,
        args: &[Expr],
        arg_tys: &[Ty],
    ) {
        let min = sig.params.len();
        let max = min + sig.optional.len();
        if args.len() < min || args.len() > max {
            let expected = match (min, max) {
                (0, 0) => "no arguments".to_string(),
                (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
                (a, b) => format!("{a} or {b} arguments"),
            };
            self.diags.push(
                Diagnostic::new(
                    Code::E0304,
                    self.file,
                    span,
                    format!(
                        "{what} takes {expected}, but {} {} given",
                        args.len(),
                        if args.len() == 1 { "was" } else { "were" }
                    ),
                )
                .label(format!("expects {expected}")),
            );
            return;
        }
        for (i, (arg, ty)) in args.iter().zip(arg_tys).enumerate() {
            let want = sig
                .params
                .iter()
                .chain(&sig.optional)
                .nth(i)
                .cloned()
                .unwrap_or(Ty::Json);
            self.require(arg, ty, &want, &format!("argument {} of {what}", i + 1));
        }
    }

    fn binary(&mut self, op: BinOp, whole: &Expr, l: &Expr, lt: &Ty, r: &Expr, rt: &Ty) -> Ty {
        let (a, b) = (lt.strip_optional(), rt.strip_optional());
        let dynamic = a.is_dynamic() || b.is_dynamic();
        use BinOp::*;
        let result = match op {
            // Checked by `coalesce` before this is reached.
            Coalesce => Some(a.clone()),
            And | Or => {
                for (side, ty) in [(l, a), (r, b)] {
                    if !ty.fits(&Ty::Bool) {
                        self.diags.push(
                            Diagnostic::new(
                                Code::E0305,
                                self.file,
                                side.span,
                                format!(
                                    "`{}` expects `bool` on both sides, found `{ty}`",
                                    op.symbol()
                                ),
                            )
                            .label(format!("this is `{ty}`")),
                        );
                    }
                }
                return Ty::Bool;
            }
            Eq | Ne => {
                if comparable(a, b) {
                    self.check_union_literal(l, a, r, b);
                    return Ty::Bool;
                }
                None
            }
            Lt | Le | Gt | Ge => {
                let ok = dynamic
                    || (a.is_numeric() && b.is_numeric())
                    || (a.is_stringy() && b.is_stringy())
                    || (a == b && matches!(a, Ty::Duration | Ty::Size));
                ok.then_some(Ty::Bool)
            }
            In => match b {
                Ty::List(elem) => (a.fits(elem) || elem.fits(a)).then_some(Ty::Bool),
                t if t.is_stringy() => (a.is_stringy() || a.is_dynamic()).then_some(Ty::Bool),
                Ty::Record(_) | Ty::Json | Ty::Error => {
                    (a.is_stringy() || a.is_dynamic()).then_some(Ty::Bool)
                }
                _ => None,
            },
            Add => match (a, b) {
                _ if dynamic => Some(if a.is_dynamic() { b.clone() } else { a.clone() }),
                (Ty::Int, Ty::Int) => Some(Ty::Int),
                _ if a.is_numeric() && b.is_numeric() => Some(Ty::Float),
                _ if a.is_stringy() && b.is_stringy() => Some(Ty::String),
                (Ty::List(x), Ty::List(y)) if y.fits(x) => Some(a.clone()),
                (Ty::Duration, Ty::Duration) | (Ty::Size, Ty::Size) => Some(a.clone()),
                _ => None,
            },
            Sub | Mul | Div | Rem => match (a, b) {
                _ if dynamic => Some(if a.is_dynamic() { b.clone() } else { a.clone() }),
                (Ty::Int, Ty::Int) => Some(Ty::Int),
                _ if a.is_numeric() && b.is_numeric() => Some(Ty::Float),
                (Ty::Duration, Ty::Duration) | (Ty::Size, Ty::Size) if op == Sub => Some(a.clone()),
                (Ty::Duration | Ty::Size, Ty::Int) if matches!(op, Mul | Div) => Some(a.clone()),
                (Ty::Int, Ty::Duration | Ty::Size) if op == Mul => Some(b.clone()),
                _ => None,
            },
        };
        if let Some(ty) = result {
            return ty;
        }
        let verb = match op {
            Eq | Ne => format!("cannot compare `{lt}` with `{rt}`"),
            Lt | Le | Gt | Ge => format!("cannot order `{lt}` and `{rt}` with `{}`", op.symbol()),
            In => format!("cannot test `{lt}` in `{rt}`"),
            _ => format!("cannot apply `{}` to `{lt}` and `{rt}`", op.symbol()),
        };
        let help = literal_help(l, a, r, b).or_else(|| literal_help(r, b, l, a));
        self.error(
            Diagnostic::new(Code::E0305, self.file, whole.span, verb)
                .with(l.span, format!("this is `{lt}`"))
                .with(r.span, format!("this is `{rt}`"))
                .maybe_help(help),
        )
    }

    /// `risk == "lo"` where `risk` is `"low" | "high"` can never hold.
    fn check_union_literal(&mut self, l: &Expr, a: &Ty, r: &Expr, b: &Ty) {
        for (lit_side, other) in [(r, a), (l, b)] {
            if let (ExprKind::Str(lit), Ty::Union(options)) = (&lit_side.kind, other)
                && !options.contains(&lit.value)
            {
                let help = suggest(&lit.value, options.iter().map(String::as_str))
                    .map(|s| format!("did you mean `\"{s}\"`?"));
                self.diags.push(
                    Diagnostic::new(
                        Code::E0305,
                        self.file,
                        lit_side.span,
                        format!("`\"{}\"` is not one of {other}", lit.value),
                    )
                    .label("this comparison can never hold")
                    .maybe_help(help),
                );
            }
        }
    }
}

fn comparable(a: &Ty, b: &Ty) -> bool {
    a.is_dynamic()
        || b.is_dynamic()
        || (a.is_numeric() && b.is_numeric())
        || (a.is_stringy() && b.is_stringy())
        || a.fits(b)
        || b.fits(a)
}

/// "compare with the number `0`" when a string literal holds a number.
fn literal_help(lit: &Expr, lit_ty: &Ty, _other: &Expr, other_ty: &Ty) -> Option<String> {
    let ExprKind::Str(s) = &lit.kind else {
        return None;
    };
    let _ = lit_ty;
    match other_ty {
        Ty::Int if s.value.trim().parse::<i64>().is_ok() => Some(format!(
            "write the number without quotes: `{}`",
            s.value.trim()
        )),
        Ty::Float if s.value.trim().parse::<f64>().is_ok() => Some(format!(
            "write the number without quotes: `{}`",
            s.value.trim()
        )),
        Ty::Bool if matches!(s.value.as_str(), "true" | "false") => {
            Some(format!("write `{}` without quotes", s.value))
        }
        _ => None,
    }
}

fn conversion_help(expr: &Expr, ty: &Ty, want: &Ty) -> Option<String> {
    if let ExprKind::Str(s) = &expr.kind {
        return literal_help(expr, ty, expr, want.strip_optional()).or_else(|| {
            match want.strip_optional() {
                Ty::Duration => Some(format!(
                    "durations are written without quotes, like `{}`",
                    guess_unit(&s.value, "s")
                )),
                Ty::Size => Some(format!(
                    "sizes are written without quotes, like `{}`",
                    guess_unit(&s.value, "MiB")
                )),
                _ => None,
            }
        });
    }
    match (ty.strip_optional(), want.strip_optional()) {
        (Ty::Int, Ty::Duration) => Some("add a unit: `ms`, `s`, `m`, `h` or `d`".to_string()),
        (Ty::Int, Ty::Size) => Some("add a unit such as `MiB` or `GiB`".to_string()),
        (Ty::Int | Ty::Float | Ty::Bool, Ty::String) => {
            Some("write it as a string, for example `\"{{ value }}\"`".to_string())
        }
        (Ty::String, Ty::Int) => Some("convert it with `.parse_int()`".to_string()),
        _ => None,
    }
}

fn guess_unit(text: &str, unit: &str) -> String {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        format!("10{unit}")
    } else {
        format!("{digits}{unit}")
    }
}

/// A short rendering of an expression for help lines.
pub fn base_text(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Name(n) => n.clone(),
        ExprKind::Member(b, f) => format!("{}.{}", base_text(b), f.name),
        ExprKind::Method(b, m, _) => format!("{}.{}()", base_text(b), m.name),
        ExprKind::OptMember(b, f) => format!("{}?.{}", base_text(b), f.name),
        ExprKind::OptMethod(b, m, _) => format!("{}?.{}()", base_text(b), m.name),
        ExprKind::Index(b, _) => format!("{}[…]", base_text(b)),
        _ => "value".to_string(),
    }
}
