//! Translation of checked expressions to rhai source.
//!
//! Names become `v_NAME`, methods `m_NAME(recv, ...)` and functions `f_NAME(...)`,
//! so no user name can collide with a rhai keyword and the executor registers
//! exactly the built-ins the checker knows.

use crate::syntax::ast::{BinOp, Expr, ExprKind, UnOp};
use std::fmt::Write;

/// The rhai source of an expression.
pub fn to_rhai(expr: &Expr) -> String {
    let mut out = String::new();
    emit(expr, &mut out);
    out
}

fn emit(expr: &Expr, out: &mut String) {
    match &expr.kind {
        ExprKind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ExprKind::Int(n) => {
            if *n == i64::MIN {
                out.push_str("(-9223372036854775807 - 1)");
            } else if *n < 0 {
                let _ = write!(out, "({n})");
            } else {
                let _ = write!(out, "{n}");
            }
        }
        ExprKind::Float(f) => emit_float(*f, out),
        ExprKind::Duration(n) | ExprKind::Size(n) => {
            let _ = write!(out, "{n}");
        }
        ExprKind::Str(s) => emit_string(&s.value, out),
        ExprKind::Name(n) => {
            let _ = write!(out, "v_{n}");
        }
        ExprKind::Member(base, field) => {
            emit(base, out);
            out.push('[');
            emit_string(&field.name, out);
            out.push(']');
        }
        ExprKind::OptMember(base, field) => {
            // rhai's `?[` yields `()` when the base is `()`.
            out.push('(');
            emit(base, out);
            out.push_str(")?[");
            emit_string(&field.name, out);
            out.push(']');
        }
        ExprKind::OptMethod(recv, name, args) => {
            // Method-call syntax, so rhai's `?.` skips the call on `()`.
            out.push('(');
            emit(recv, out);
            let _ = write!(out, ")?.m_{}(", name.name);
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit(arg, out);
            }
            out.push(')');
        }
        ExprKind::Null => out.push_str("()"),
        ExprKind::Index(base, index) => {
            emit(base, out);
            out.push('[');
            emit(index, out);
            out.push(']');
        }
        ExprKind::Method(recv, name, args) => {
            let _ = write!(out, "m_{}(", name.name);
            emit(recv, out);
            for arg in args {
                out.push_str(", ");
                emit(arg, out);
            }
            out.push(')');
        }
        ExprKind::Call(name, args) => {
            let _ = write!(out, "f_{}(", name.name);
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit(arg, out);
            }
            out.push(')');
        }
        ExprKind::Unary(op, inner) => {
            out.push_str(match op {
                UnOp::Not => "!(",
                UnOp::Neg => "-(",
            });
            emit(inner, out);
            out.push(')');
        }
        ExprKind::Binary(BinOp::In, l, r) => {
            out.push_str("f_in(");
            emit(l, out);
            out.push_str(", ");
            emit(r, out);
            out.push(')');
        }
        ExprKind::Binary(op, l, r) => {
            out.push('(');
            emit(l, out);
            let _ = write!(out, " {} ", op.symbol());
            emit(r, out);
            out.push(')');
        }
        ExprKind::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit(item, out);
            }
            out.push(']');
        }
        ExprKind::Map(entries) => {
            out.push_str("#{");
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_string(&key.name, out);
                out.push_str(": ");
                emit(value, out);
            }
            out.push('}');
        }
        ExprKind::Error => out.push_str("()"),
    }
}

fn emit_float(f: f64, out: &mut String) {
    let text = format!("{f:?}");
    // rhai wants a digit before the exponent: `1e300` → `1.0e300`.
    match text.split_once('e') {
        Some((mantissa, exp)) if !mantissa.contains('.') => {
            let _ = write!(out, "({mantissa}.0e{exp})");
        }
        _ => {
            let _ = write!(out, "({text})");
        }
    }
}

fn emit_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
