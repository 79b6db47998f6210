//! Memory that outlives runs, as the checker sees it: `recall(key)` in
//! expressions and templates, and a step's `remember: { key: value }`.
//!
//! Keys are string literals, so the checker knows which keys each step reads
//! (they go into its input hash at run time) and which it writes.

use super::expr::{ExprChecker, Scope};
use super::module_cx::ModuleCx;
use super::scope::Mode;
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic, FileId};
use crate::ir::{Ty, Value};
use crate::journal::memory_key_problem;
use crate::span::Span;
use crate::syntax::ast::{self, Expr, ExprKind};

/// E0325 for a key that is not a string literal.
pub fn not_literal(file: FileId, span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::E0325,
        file,
        span,
        "the key of `recall` must be a string literal",
    )
    .label("not a string literal")
    .help(
        "write the key itself, as in `recall(\"reflect/lesson\")`: flowc reads the keys a step \
         recalls before it runs, and a step re-runs on resume when one of their values changed",
    )
}

/// E0325 for a literal key that cannot name memory (empty, too long, control characters).
pub fn key_problem(file: FileId, span: Span, key: &str) -> Option<Diagnostic> {
    let why = memory_key_problem(key)?;
    Some(
        Diagnostic::new(
            Code::E0325,
            file,
            span,
            format!("invalid memory key `{key}`"),
        )
        .label(why)
        .help("a key is `name` or `namespace/name`, such as `\"reflect/lesson\"`"),
    )
}

/// E0325 for `recall` where no run's memory exists (a trigger, a policy rule, a parameter default).
pub fn outside_skill(file: FileId, span: Span) -> Diagnostic {
    Diagnostic::new(
        Code::E0325,
        file,
        span,
        "`recall` reads memory only in a skill's steps, blocks and `return`",
    )
    .label("no run's memory here")
    .help("recall the value in a step of the skill instead (a trigger's arguments, a policy rule and a parameter default are evaluated before a run loads its memory)")
}

/// The type of `recall(key, default)`: the default's, else `json`.
pub fn recall_type(default: Option<&Ty>) -> Ty {
    match default {
        Some(ty)
            if !ty.is_dynamic() && !matches!(ty, Ty::Optional(inner) if inner.is_dynamic()) =>
        {
            ty.clone()
        }
        _ => Ty::Json,
    }
}

impl ExprChecker<'_> {
    /// `recall(key)` or `recall(key, default)` in an expression.
    pub fn recall(&mut self, span: Span, args: &[Expr], scope: &mut dyn Scope) -> Ty {
        let arg_tys: Vec<Ty> = args.iter().map(|a| self.check(a, scope)).collect();
        if args.is_empty() || args.len() > 2 {
            self.diags.push(
                Diagnostic::new(
                    Code::E0304,
                    self.file,
                    span,
                    format!(
                        "`recall` takes 1 or 2 arguments, but {} {} given",
                        args.len(),
                        if args.len() == 1 { "was" } else { "were" }
                    ),
                )
                .label("expects a key and an optional default"),
            );
            return Ty::Error;
        }
        let key = &args[0];
        match &key.kind {
            ExprKind::Str(lit) => {
                if let Some(d) = key_problem(self.file, key.span, &lit.value) {
                    self.diags.push(d);
                } else if !scope.recall(&lit.value) {
                    self.diags.push(outside_skill(self.file, span));
                }
            }
            _ => self.diags.push(not_literal(self.file, key.span)),
        }
        recall_type(arg_tys.get(1))
    }
}

impl<'a> ModuleCx<'a> {
    /// A step's `remember: { key: value, … }`: each key checked, each value
    /// compiled with the step's own result in scope (as in `accept`).
    pub(super) fn remember(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> Vec<(String, Value)> {
        let Some(field) = def.fields.iter().find(|f| f.key.name == "remember") else {
            return Vec::new();
        };
        let Some(expr) = self.value(field) else {
            return Vec::new();
        };
        let ExprKind::Map(entries) = &expr.kind else {
            self.diags.push(
                Diagnostic::new(
                    Code::E0301,
                    self.file,
                    expr.span,
                    "`remember` expects a map of memory keys to values",
                )
                .label("not a map")
                .help("write `remember: { \"reflect/lesson\": text }`"),
            );
            return Vec::new();
        };
        let mut out: Vec<(String, Value)> = Vec::new();
        for (key, value) in entries {
            if let Some(d) = key_problem(self.file, key.span, &key.name) {
                self.diags.push(d);
                continue;
            }
            let what = format!("`remember.{}`", key.name);
            let (v, _) = self.data_value(value, sk, Some(id), Mode::Accept(id), None, &what);
            out.push((key.name.clone(), v));
        }
        out
    }
}
