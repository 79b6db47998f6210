//! A step's `effect` and its cache fields (`cache`, `inputs`, `outputs`, `cache_key`).

use super::module_cx::ModuleCx;
use super::scope::Mode;
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{CacheSpec, Effect, Glob, Policy, Ty};
use crate::syntax::ast::{self, ExprKind, Field};

/// The step kinds whose results may be reused across runs.
pub const CACHEABLE: &[&str] = &["run", "llm", "script"];

/// The effect a kind has when the step does not say (design §12: a `run` step is `idempotent`).
fn default_effect(kind: &str) -> Effect {
    match kind {
        "run" | "call" => Effect::Idempotent,
        _ => Effect::Read,
    }
}

impl<'a> ModuleCx<'a> {
    /// Reads `effect` and the cache fields of step `def` of kind `kind` under `policy`.
    pub(super) fn cache_fields(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
        policy: &Policy,
    ) -> (Effect, CacheSpec) {
        let kind = def.kind.name.as_str();
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let effect =
            match get("effect").and_then(|f| self.word(f, &["read", "idempotent", "write"])) {
                Some(w) if w == "read" => Effect::Read,
                Some(w) if w == "idempotent" => Effect::Idempotent,
                Some(_) => Effect::Write,
                None => default_effect(kind),
            };
        let mut spec = CacheSpec {
            inputs: get("inputs")
                .map(|f| self.globs(f, id, sk))
                .unwrap_or_default(),
            outputs: get("outputs")
                .map(|f| self.globs(f, id, sk))
                .unwrap_or_default(),
            ..CacheSpec::default()
        };
        if let Some(f) = get("cache_key")
            && let Some(expr) = self.value(f)
        {
            let (value, _) = self.data_value(expr, sk, Some(id), Mode::Plain, None, "`cache_key`");
            spec.key = Some(value);
        }
        if !CACHEABLE.contains(&kind) {
            return (effect, spec);
        }
        let written = get("cache").and_then(|f| self.lit_bool(f).map(|on| (f, on)));
        spec.enabled = match written {
            Some((field, true)) if effect == Effect::Write => {
                self.write_cached(def, field, get("effect"));
                false
            }
            Some((_, on)) => on,
            // A policy's default never turns on caching for a step that writes.
            None => effect != Effect::Write && policy.cache.unwrap_or(kind == "script"),
        };
        (effect, spec)
    }

    /// A list of glob strings, each a template; one without `{{` is checked as a glob now.
    fn globs(&mut self, field: &'a Field, id: usize, sk: &mut SkillCx<'a>) -> Vec<Glob> {
        let Some(expr) = self.value(field) else {
            return Vec::new();
        };
        let ExprKind::List(items) = &expr.kind else {
            self.lit_error(field, expr, "a list of glob strings");
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let ExprKind::Str(s) = &item.kind else {
                self.lit_error(field, item, "a string");
                continue;
            };
            let templated = s.value.contains("{{") || s.value.contains("{%");
            if let (false, Err(e)) = (templated, globset::Glob::new(&s.value)) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0318,
                        self.file,
                        item.span,
                        format!("`{}` is not a valid glob: {}", s.value, e.kind()),
                    )
                    .label("invalid glob"),
                );
                continue;
            }
            let what = format!("`{}`", field.key.name);
            let (value, _) =
                self.data_value(item, sk, Some(id), Mode::Plain, Some(&Ty::String), &what);
            out.push(Glob {
                source: s.value.clone(),
                value,
            });
        }
        out
    }

    /// E0324: `cache: true` on a step whose effect is `write`.
    fn write_cached(&mut self, def: &ast::StepDef, cache: &Field, effect: Option<&Field>) {
        let mut diag = Diagnostic::new(
            Code::E0324,
            self.file,
            cache.span,
            format!(
                "step `{}` has `effect: \"write\"` and cannot be cached",
                def.name.name
            ),
        )
        .label("a reused result would skip the write")
        .help(
            "remove `cache: true`, or declare `effect: \"idempotent\"` if running the step \
             again with the same inputs changes nothing more",
        );
        if let Some(e) = effect {
            diag = diag.with(e.span, "declared here");
        }
        self.diags.push(diag);
    }
}
