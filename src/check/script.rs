//! `script` steps: rhai code compiled at check time, its names resolved.

use super::expr::{Lookup, Scope};
use super::module_cx::ModuleCx;
use super::scope::{Mode, NodeScope};
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic};
use crate::syntax::ast::StrLit;
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// The engine scripts are compiled with (compile only), built once.
static SCRIPT_ENGINE: LazyLock<rhai::Engine> = LazyLock::new(|| {
    let mut engine = rhai::Engine::new_raw();
    engine.set_strict_variables(true);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_strings_interned(super::module::STRINGS_INTERNED);
    engine
});

/// Compiles a script with strict variables: every name it reads must be a
/// parameter, a step, or a loop name or variable in scope. The steps it names
/// become its dependencies.
pub fn compile_script<'a>(
    cx: &mut ModuleCx<'a>,
    lit: &StrLit,
    id: usize,
    sk: &mut SkillCx<'a>,
) -> rhai::AST {
    let mut rhai_scope = rhai::Scope::new();
    {
        let mut scope = NodeScope {
            state: &mut sk.state,
            at: Some(id),
            mode: Mode::Plain,
        };
        for ident in identifiers(&lit.value) {
            if scope.knows(ident) {
                let span = lit.span;
                if let Lookup::Found(_) = scope.lookup(ident, span, &mut cx.diags) {
                    rhai_scope.push_dynamic(ident.to_string(), rhai::Dynamic::UNIT);
                }
            }
        }
    }
    refuse_secret_calls(cx, lit);
    match SCRIPT_ENGINE.compile_with_scope(&rhai_scope, &lit.value) {
        Ok(ast) => ast,
        Err(err) => {
            let pos = err.position();
            let span = match (pos.line(), pos.position()) {
                (Some(line), col) => {
                    let offset = line_col_offset(&lit.value, line, col.unwrap_or(1));
                    cx.span_in_literal(lit, offset..offset + 1)
                }
                _ => lit.span,
            };
            let message = err.err_type().to_string();
            let help = if message.contains("Variable not found") {
                Some(
                    "scripts read parameters, steps and loop names in scope by their names"
                        .to_string(),
                )
            } else {
                None
            };
            cx.diags.push(
                Diagnostic::new(
                    Code::E0316,
                    cx.file,
                    span,
                    format!("script does not compile: {message}"),
                )
                .label("here")
                .maybe_help(help),
            );
            rhai::AST::empty()
        }
    }
}

/// `secret("KEY")` exists in expressions, not in scripts: a script's value
/// and prints are journaled and shown, so a script never sees a secret. Without
/// this check the call would pass `check` and fail at run time.
fn refuse_secret_calls(cx: &mut ModuleCx<'_>, lit: &StrLit) {
    let spans = identifier_spans(&lit.value);
    for (i, &(at, name, property)) in spans.iter().enumerate() {
        let end = at + name.len();
        let called = lit.value[end..].trim_start().starts_with('(');
        // `fn secret(…)` defines the script's own function of that name.
        let defined = i > 0 && spans[i - 1].1 == "fn";
        if name != "secret" || property || !called || defined {
            continue;
        }
        let span = cx.span_in_literal(lit, at..end);
        cx.diags.push(
            Diagnostic::new(
                Code::E0303,
                cx.file,
                span,
                "`secret()` is not available in a `script` step",
            )
            .label("a script cannot read secrets")
            .help(
                "read the secret in a `run` step's `env` (`env: { TOKEN: secret(\"token\") }`), where its value is redacted; a script's value is journaled",
            ),
        );
    }
}

/// Byte offset of 1-based `line`/`col` (in characters) in `text`.
fn line_col_offset(text: &str, line: usize, col: usize) -> usize {
    let start: usize = text
        .split('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    let start = start.min(text.len());
    let rest = &text[start..];
    rest.char_indices()
        .nth(col.saturating_sub(1))
        .map_or(text.len(), |(i, _)| start + i)
}

/// The identifiers of rhai code outside strings and comments.
pub fn identifiers(code: &str) -> BTreeSet<&str> {
    identifier_spans(code)
        .into_iter()
        .filter(|&(_, _, property)| !property)
        .map(|(_, name, _)| name)
        .collect()
}

/// Each identifier of rhai code outside strings and comments: its offset, its
/// text, and whether it follows a `.` (a property or method, not a variable).
fn identifier_spans(code: &str) -> Vec<(usize, &str, bool)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b == b'"' || b == b'`' || b == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != b {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            // `x.name` is a property access, not a variable; `1..name` is a range.
            let property =
                start > 0 && bytes[start - 1] == b'.' && (start < 2 || bytes[start - 2] != b'.');
            out.push((start, &code[start..i], property));
        } else {
            i += 1;
        }
    }
    out
}
