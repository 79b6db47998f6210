//! Templates: compiled with minijinja at check time, names checked against the scope.

use super::expr::Scope;
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{TemplateRef, Value};
use crate::span::Span;
use crate::syntax::{ast::StrLit, decode_string};

/// A skill's template environment, the sources of its templates, and a
/// counter for template names.
///
/// Each template is compiled once here, to report syntax errors and find the
/// names it reads, and then dropped: a compiled minijinja template keeps
/// buffers of about 12 KB however short it is, which made templates most of
/// the checker's memory. The environment handed to the IR loads (and
/// compiles, once) each template from its source on first use instead.
pub struct Templates {
    /// The environment every template of the skill is checked in.
    env: minijinja::Environment<'static>,
    /// The source of template `t{i + 1}` at `i` (`None`: it did not compile),
    /// for the environment's loader.
    sources: Vec<Option<String>>,
    count: usize,
}

impl Templates {
    /// An empty environment configured like the executor's.
    pub fn new() -> Templates {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_unknown_method_callback(crate::ir::template_methods::call);
        env.set_formatter(json_formatter);
        env.add_function("recall", crate::ir::template_methods::recall);
        Templates {
            env,
            sources: Vec::new(),
            count: 0,
        }
    }

    /// The environment for the IR: every template of the skill, by name,
    /// compiled on first use.
    pub fn into_env(self) -> minijinja::Environment<'static> {
        let mut env = self.env;
        let mut sources = self.sources;
        sources.shrink_to_fit();
        env.set_loader(move |name| {
            Ok(template_number(name)
                .and_then(|n| sources.get(n - 1))
                .and_then(Clone::clone))
        });
        env
    }
}

/// Prints values as JSON where minijinja would print Python (`true`, not
/// `True`; `null`, not `None`; `["a"]`, not `['a']`); text and numbers as they are.
fn json_formatter(
    out: &mut minijinja::Output<'_>,
    state: &mut minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    use minijinja::value::ValueKind;
    let text = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Some("null".to_string()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            Some(serde_json::to_string(value).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
            })?)
        }
        _ => None,
    };
    match text {
        Some(t) => out
            .write_str(&t)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())),
        None => minijinja::escape_formatter(out, state, value),
    }
}

/// `n` of a template named `t{n}` (as [`ModuleCx::template`] names them).
fn template_number(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('t')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl ModuleCx<'_> {
    /// File offsets of every byte of a string literal's value.
    fn literal_map(&self, lit: &StrLit) -> Vec<usize> {
        let quote = if lit.multiline { 3 } else { 1 };
        let start = lit.span.start + quote;
        let end = lit.span.end.saturating_sub(quote).max(start);
        let raw = self.text.get(start..end).unwrap_or_default();
        decode_string(raw, start, lit.multiline, true, &mut Vec::new()).map
    }

    /// The file span of `range` inside the value of `lit`.
    pub fn span_in_literal(&self, lit: &StrLit, range: std::ops::Range<usize>) -> Span {
        let map = self.literal_map(lit);
        let at = |i: usize| map.get(i.min(map.len().saturating_sub(1))).copied();
        match (at(range.start), at(range.end.max(range.start + 1) - 1)) {
            (Some(s), Some(e)) if e >= s => Span::new(s, e + 1),
            _ => lit.span,
        }
    }

    /// Compiles a string field value: a template if it has `{{`, `{%` or `{#`, else a constant.
    pub fn template(
        &mut self,
        templates: &mut Templates,
        lit: &StrLit,
        scope: &mut dyn Scope,
    ) -> Value {
        let source = &lit.value;
        if !(source.contains("{{") || source.contains("{%") || source.contains("{#")) {
            return Value::Const(serde_json::Value::String(source.clone()));
        }
        templates.count += 1;
        let name = format!("t{}", templates.count);
        if let Err(err) = templates
            .env
            .add_template_owned(name.clone(), source.clone())
        {
            let span = err
                .range()
                .map_or(lit.span, |r| self.span_in_literal(lit, r));
            let detail = err
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| err.kind().to_string());
            self.diags.push(
                Diagnostic::new(Code::E0401, self.file, span, format!("template syntax error: {detail}"))
                    .label("here")
                    .help("templates use `{{ expression }}` and `{% tag %}`; write `{{ \"{{\" }}` for a literal `{{`"),
            );
            templates.sources.push(None);
            return Value::Const(serde_json::Value::String(source.clone()));
        }
        // Only checked here; the IR's environment compiles it again when used.
        templates.env.remove_template(&name);
        templates.sources.push(Some(source.clone()));
        self.check_template_names(lit, scope);
        Value::Template(TemplateRef {
            name,
            source: source.clone(),
        })
    }
}
