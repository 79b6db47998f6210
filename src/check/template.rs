//! Templates: compiled with minijinja at check time, names checked against the scope.

use super::expr::{Lookup, Scope};
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::ir::{TemplateRef, Ty, Value};
use crate::span::Span;
use crate::syntax::{ast::StrLit, decode_string};

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
        let variables = match templates.env.get_template(&name) {
            Ok(t) => t.undeclared_variables(true),
            Err(_) => Default::default(),
        };
        // Only checked here; the IR's environment compiles it again when used.
        templates.env.remove_template(&name);
        templates.sources.push(Some(source.clone()));
        let mut paths: Vec<String> = variables.into_iter().collect();
        paths.sort();
        for path in paths {
            self.template_path(lit, &path, scope);
        }
        Value::Template(TemplateRef {
            name,
            source: source.clone(),
        })
    }

    fn template_path(&mut self, lit: &StrLit, path: &str, scope: &mut dyn Scope) {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        if TEMPLATE_GLOBALS.contains(&root) {
            return;
        }
        let span = self.find_in_template(lit, path, root);
        let mut ty = match scope.lookup(root, span, &mut self.diags) {
            Lookup::Found(ty) => ty,
            Lookup::Reported => return,
            Lookup::Missing => {
                let names = scope.names();
                self.diags.push(
                    Diagnostic::new(
                        Code::E0402,
                        self.file,
                        span,
                        format!("unknown name `{root}` in template"),
                    )
                    .label("not a parameter, step or loop name here")
                    .maybe_help(did_you_mean(root, names.iter().map(String::as_str))),
                );
                return;
            }
        };
        let mut walked = root.to_string();
        for part in parts {
            match ty.strip_optional() {
                Ty::Record(rec) => match rec.field(part) {
                    Some(t) => ty = t.clone(),
                    None => {
                        let names: Vec<&str> = rec.fields.iter().map(|(n, _)| n.as_str()).collect();
                        let span = self.find_in_template(lit, path, path);
                        let help = if part == "output"
                            && rec.name.as_deref().is_some_and(|n| n.ends_with("result"))
                        {
                            Some(
                                "declare `output: Type` on the step to get a typed `output`"
                                    .to_string(),
                            )
                        } else {
                            did_you_mean(part, names.iter().copied())
                        };
                        self.diags.push(
                            Diagnostic::new(
                                Code::E0403,
                                self.file,
                                span,
                                format!("no field `{part}` on `{walked}` (type `{}`)", ty),
                            )
                            .label("unknown field")
                            .maybe_help(help),
                        );
                        return;
                    }
                },
                _ => return,
            }
            walked.push('.');
            walked.push_str(part);
        }
    }

    /// The span of `needle` (or else `root`) inside a template literal.
    fn find_in_template(&self, lit: &StrLit, needle: &str, root: &str) -> Span {
        let value = &lit.value;
        let found = find_word(value, needle).or_else(|| find_word(value, root));
        match found {
            Some(start) => {
                let len = if value[start..].starts_with(needle) {
                    needle.len()
                } else {
                    root.len()
                };
                self.span_in_literal(lit, start..start + len)
            }
            None => lit.span,
        }
    }
}

/// The first occurrence of `word` not inside a longer identifier.
fn find_word(haystack: &str, word: &str) -> Option<usize> {
    if word.is_empty() {
        return None;
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(pos) = haystack[from..].find(word) {
        let start = from + pos;
        let end = start + word.len();
        let before_ok = !haystack[..start]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) || c == '.');
        let after_ok = !haystack[end..].chars().next().is_some_and(is_ident);
        if before_ok && after_ok {
            return Some(start);
        }
        from = start + word.len().max(1);
        if from >= haystack.len() {
            break;
        }
    }
    None
}
