//! A step definition's normalised text: what it means, without spans, comments or layout.
//!
//! Input hashes and cache keys are built from this text, so reformatting a
//! file, editing a comment or reordering a step's fields changes no key.

use crate::syntax::ast::{Expr, ExprKind, FieldValue, StepDef, TypeExpr, TypeExprKind, UnOp};
use std::fmt::Write;

/// The normalised text of `def`: a first line with its name, kind and
/// callee, then one line `key: value` per field, sorted by key. A value never
/// holds a newline (strings are written as JSON), so the lines are the fields.
pub fn definition(def: &StepDef) -> String {
    let mut out = format!("step {}: {}", def.name.name, def.kind.name);
    if let Some(callee) = &def.callee {
        let _ = write!(out, " {}", callee.text());
    }
    let mut fields: Vec<_> = def.fields.iter().collect();
    fields.sort_by(|a, b| a.key.name.cmp(&b.key.name));
    for field in fields {
        let _ = write!(out, "\n{}: ", field.key.name);
        match &field.value {
            FieldValue::Expr(e) => expr(e, &mut out),
            FieldValue::Type(t) => ty(t, &mut out),
        }
    }
    out
}

fn list(items: &[Expr], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        expr(item, out);
    }
}

/// Writes `e` fully parenthesised, strings as JSON (escapes decoded, multi-line strings dedented).
fn expr(e: &Expr, out: &mut String) {
    match &e.kind {
        ExprKind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ExprKind::Int(n) => out.push_str(&n.to_string()),
        ExprKind::Float(f) => out.push_str(&format!("{f:?}")),
        ExprKind::Duration(ms) => out.push_str(&format!("{ms}ms")),
        ExprKind::Size(b) => out.push_str(&format!("{b}B")),
        ExprKind::Str(s) => out.push_str(&serde_json::Value::from(s.value.as_str()).to_string()),
        ExprKind::Name(n) => out.push_str(n),
        ExprKind::Null => out.push_str("null"),
        ExprKind::Error => out.push_str("<error>"),
        ExprKind::Member(base, f) | ExprKind::OptMember(base, f) => {
            expr(base, out);
            out.push_str(if matches!(e.kind, ExprKind::OptMember(..)) {
                "?."
            } else {
                "."
            });
            out.push_str(&f.name);
        }
        ExprKind::Index(base, i) => {
            expr(base, out);
            out.push('[');
            expr(i, out);
            out.push(']');
        }
        ExprKind::Method(base, m, args) | ExprKind::OptMethod(base, m, args) => {
            expr(base, out);
            out.push_str(if matches!(e.kind, ExprKind::OptMethod(..)) {
                "?."
            } else {
                "."
            });
            out.push_str(&m.name);
            out.push('(');
            list(args, out);
            out.push(')');
        }
        ExprKind::Call(f, args) => {
            out.push_str(&f.name);
            out.push('(');
            list(args, out);
            out.push(')');
        }
        ExprKind::Unary(op, inner) => {
            out.push_str(match op {
                UnOp::Not => "(!",
                UnOp::Neg => "(-",
            });
            expr(inner, out);
            out.push(')');
        }
        ExprKind::Binary(op, a, b) => {
            out.push('(');
            expr(a, out);
            let _ = write!(out, " {} ", op.symbol());
            expr(b, out);
            out.push(')');
        }
        ExprKind::List(items) => {
            out.push('[');
            list(items, out);
            out.push(']');
        }
        ExprKind::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", k.name);
                expr(v, out);
            }
            out.push('}');
        }
    }
}

fn ty(t: &TypeExpr, out: &mut String) {
    match &t.kind {
        TypeExprKind::Named(q) => out.push_str(&q.text()),
        TypeExprKind::List(inner) => {
            out.push('[');
            ty(inner, out);
            out.push(']');
        }
        TypeExprKind::Optional(inner) => {
            ty(inner, out);
            out.push('?');
        }
        TypeExprKind::Union(items) => {
            let words: Vec<String> = items
                .iter()
                .map(|s| serde_json::Value::from(s.value.as_str()).to_string())
                .collect();
            out.push_str(&words.join(" | "));
        }
        TypeExprKind::Record(fields) => {
            out.push('{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: ", f.name.name);
                ty(&f.ty, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::check_text;
    use crate::ir::NodeKind;

    fn definition_of(text: &str) -> String {
        let mut out = check_text("a.flow", text);
        let program = out.files.remove(0).program.expect("checks");
        let skill = program.skills.values().next().expect("a skill");
        match &skill.nodes[0].kind {
            NodeKind::Step(s) => s.definition.clone(),
            _ => panic!("not a step"),
        }
    }

    #[test]
    fn layout_and_comments_do_not_change_the_definition() {
        let a = definition_of(
            "skill main() {\n  step a: run { command: \"echo 1\", timeout: 5s }\n}\n",
        );
        let b = definition_of(
            "skill main() {\n  # a comment\n  step a: run {\n    timeout: 5s   # why\n\n    command: \"echo 1\"\n  }\n}\n",
        );
        assert_eq!(a, b);
        let c = definition_of(
            "skill main() {\n  step a: run { command: \"echo 2\", timeout: 5s }\n}\n",
        );
        assert_ne!(a, c);
    }
}
