//! Reading literal field values (ints, sizes, durations, strings, words) and reporting bad ones.

use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::span::Span;
use crate::syntax::ast::{self, Expr, ExprKind, Field, FieldValue};

impl ModuleCx<'_> {
    /// Reports unknown (E0307) and duplicate (E0213) fields.
    pub fn known_fields(
        &mut self,
        fields: &[Field],
        allowed: &[&str],
        what: &str,
        hint: impl Fn(&str) -> Option<String>,
    ) {
        let mut seen: Vec<&Field> = Vec::new();
        for field in fields {
            let key = field.key.name.as_str();
            if let Some(prev) = seen.iter().find(|f| f.key.name == key) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0213,
                        self.file,
                        field.key.span,
                        format!("field `{key}` is given twice"),
                    )
                    .label("second value")
                    .with(prev.key.span, "first value")
                    .help("remove one of them"),
                );
                continue;
            }
            seen.push(field);
            if !allowed.contains(&key) {
                let help = did_you_mean(key, allowed.iter().copied())
                    .or_else(|| hint(key))
                    .or_else(|| {
                        Some(format!(
                            "{what} takes {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    });
                self.diags.push(
                    Diagnostic::new(
                        Code::E0307,
                        self.file,
                        field.key.span,
                        format!("unknown field `{key}` in {what}"),
                    )
                    .label("not a field here")
                    .maybe_help(help),
                );
            }
        }
    }

    /// The expression of a field (a type where a value is expected is reported).
    pub fn value<'f>(&mut self, field: &'f Field) -> Option<&'f Expr> {
        match &field.value {
            // A value that failed to lower was reported already.
            FieldValue::Expr(Expr {
                kind: ExprKind::Error,
                ..
            }) => None,
            FieldValue::Expr(e) => Some(e),
            FieldValue::Type(t) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        t.span,
                        format!("`{}` expects a value, not a type", field.key.name),
                    )
                    .label("a type"),
                );
                None
            }
        }
    }

    pub(super) fn lit_error(&mut self, field: &Field, expr: &Expr, want: &str) {
        let what = describe(expr);
        let mut diag = Diagnostic::new(
            Code::E0301,
            self.file,
            expr.span,
            format!(
                "mismatched types: `{}` expects {want}, found {what}",
                field.key.name
            ),
        )
        .label(format!("this is {what}"));
        if let ExprKind::Str(s) = &expr.kind {
            let t = s.value.trim();
            if want.contains("duration")
                || want.contains("size")
                || want.contains("int")
                || want.contains("number")
                || want.contains("bool")
            {
                diag = diag.help(format!("write it without quotes: `{t}`"));
            }
        } else if matches!(expr.kind, ExprKind::Int(_)) && want.contains("duration") {
            diag = diag.help("add a unit: `ms`, `s`, `m`, `h` or `d`");
        }
        self.diags.push(diag);
    }

    /// A literal int at least `min` (`code` for out of range).
    pub fn lit_int(&mut self, field: &Field, min: i64, code: Code) -> Option<i64> {
        let expr = self.value(field)?;
        match expr.kind {
            ExprKind::Int(n) if n >= min => Some(n),
            ExprKind::Int(n) => {
                self.range_error(
                    field,
                    expr,
                    &format!("`{}` must be at least {min}, found {n}", field.key.name),
                    code,
                );
                None
            }
            _ => {
                self.lit_error(field, expr, "an `int` literal");
                None
            }
        }
    }

    /// A literal number (int or float) in `min..=max`.
    pub fn lit_float(&mut self, field: &Field, min: f64, max: f64, code: Code) -> Option<f64> {
        let expr = self.value(field)?;
        let value = match expr.kind {
            ExprKind::Int(n) => n as f64,
            ExprKind::Float(f) => f,
            _ => {
                self.lit_error(field, expr, "a number");
                return None;
            }
        };
        if !(min..=max).contains(&value) {
            let range = if max == f64::MAX {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            self.range_error(
                field,
                expr,
                &format!("`{}` must be {range}, found {value}", field.key.name),
                code,
            );
            return None;
        }
        Some(value)
    }

    /// A literal duration, in milliseconds, above zero.
    pub fn lit_duration(&mut self, field: &Field, code: Code) -> Option<u64> {
        let expr = self.value(field)?;
        match expr.kind {
            ExprKind::Duration(0) => {
                self.range_error(
                    field,
                    expr,
                    &format!("`{}` must be longer than zero", field.key.name),
                    code,
                );
                None
            }
            ExprKind::Duration(ms) => Some(ms),
            _ => {
                self.lit_error(field, expr, "a duration such as `30s` or `10m`");
                None
            }
        }
    }

    /// A literal size, in bytes, above zero.
    pub fn lit_size(&mut self, field: &Field, code: Code) -> Option<u64> {
        let expr = self.value(field)?;
        match expr.kind {
            ExprKind::Size(0) => {
                self.range_error(
                    field,
                    expr,
                    &format!("`{}` must be larger than zero", field.key.name),
                    code,
                );
                None
            }
            ExprKind::Size(b) => Some(b),
            _ => {
                self.lit_error(field, expr, "a size such as `512MiB`");
                None
            }
        }
    }

    /// A literal bool.
    pub fn lit_bool(&mut self, field: &Field) -> Option<bool> {
        let expr = self.value(field)?;
        match expr.kind {
            ExprKind::Bool(b) => Some(b),
            _ => {
                self.lit_error(field, expr, "`true` or `false`");
                None
            }
        }
    }

    /// A literal string.
    pub fn lit_string(&mut self, field: &Field) -> Option<String> {
        let expr = self.value(field)?;
        match &expr.kind {
            ExprKind::Str(s) => Some(s.value.clone()),
            _ => {
                self.lit_error(field, expr, "a string");
                None
            }
        }
    }

    /// A literal list of strings.
    pub fn lit_strings(&mut self, field: &Field) -> Option<Vec<String>> {
        let expr = self.value(field)?;
        let ExprKind::List(items) = &expr.kind else {
            self.lit_error(field, expr, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match &item.kind {
                ExprKind::Str(s) => out.push(s.value.clone()),
                _ => self.lit_error(field, item, "a string"),
            }
        }
        Some(out)
    }

    /// A bare word (or string) among `choices`.
    pub fn word(&mut self, field: &Field, choices: &[&str]) -> Option<String> {
        let expr = self.value(field)?;
        let text = match &expr.kind {
            ExprKind::Name(n) => n.clone(),
            ExprKind::Str(s) => s.value.clone(),
            _ => {
                self.lit_error(field, expr, &format!("one of {}", choices.join(", ")));
                return None;
            }
        };
        if choices.contains(&text.as_str()) {
            return Some(text);
        }
        let list = choices
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        self.diags.push(
            Diagnostic::new(
                Code::E0309,
                self.file,
                expr.span,
                format!("`{text}` is not a valid `{}`", field.key.name),
            )
            .label(format!("expected one of {list}"))
            .maybe_help(
                did_you_mean(&text, choices.iter().copied())
                    .or_else(|| Some(format!("`{}` is one of {list}", field.key.name))),
            ),
        );
        None
    }

    /// Reports a value out of range.
    pub fn range_error(&mut self, field: &Field, expr: &Expr, message: &str, code: Code) {
        let _ = field;
        self.diags.push(
            Diagnostic::new(code, self.file, expr.span, message.to_string()).label("out of range"),
        );
    }

    /// Reports a missing required field.
    pub fn missing(&mut self, span: Span, what: &str, field: &str, example: &str) {
        self.diags.push(
            Diagnostic::new(
                Code::E0308,
                self.file,
                span,
                format!("{what} is missing the field `{field}`"),
            )
            .label(format!("needs `{field}`"))
            .help(format!("add it, for example `{example}`")),
        );
    }
}

/// A field built from a map entry, so blocks and maps are read alike.
pub fn map_field(key: &ast::MapKey, value: &Expr) -> Field {
    Field {
        key: ast::Ident {
            name: key.name.clone(),
            span: key.span,
        },
        value: FieldValue::Expr(value.clone()),
        span: key.span.to(value.span),
    }
}

/// "a string", "an int", "the name `x`", for messages.
pub fn describe(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Str(_) => "a string".into(),
        ExprKind::Int(_) => "an int".into(),
        ExprKind::Float(_) => "a float".into(),
        ExprKind::Duration(_) => "a duration".into(),
        ExprKind::Size(_) => "a size".into(),
        ExprKind::Bool(_) => "a bool".into(),
        ExprKind::List(_) => "a list".into(),
        ExprKind::Map(_) => "a map".into(),
        ExprKind::Name(n) => format!("the name `{n}`"),
        _ => "an expression".into(),
    }
}
