//! `model` items: provider, settings from `env(...)`, keys from `secret(...)`, rate limits.

use super::literals::map_field;
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, Provider, SecretSource};
use crate::syntax::ast::{self, Expr, ExprKind, Field, FieldValue};

impl ModuleCx<'_> {
    pub(super) fn model_item(&mut self, item: &ast::ConfigItem) -> ir::Model {
        const FIELDS: &[&str] = &[
            "provider",
            "name",
            "base_url",
            "api_key",
            "temperature",
            "max_tokens",
            "input_price",
            "output_price",
            "structured_output",
            "timeout",
            "command",
            "script",
            "rate_limit",
            "description",
        ];
        self.known_fields(&item.fields, FIELDS, "a model", |_| None);
        let mut model = ir::Model {
            key: format!("{}{}", self.key_prefix, item.name.name),
            name: item.name.name.clone(),
            provider: Provider::Fake,
            provider_env: None,
            model: None,
            base_url: None,
            api_key: None,
            temperature: None,
            max_tokens: None,
            input_price: None,
            output_price: None,
            structured_output: false,
            timeout_ms: None,
            command: None,
            script: None,
            requests_per_minute: None,
            tokens_per_minute: None,
        };
        let mut provider = None;
        for field in &item.fields {
            match field.key.name.as_str() {
                "provider" => {
                    provider = self.provider(field, &mut model.provider_env);
                }
                "name" => model.model = self.lit_string(field),
                "base_url" => model.base_url = self.setting(field),
                "api_key" => model.api_key = self.secret_ref(field),
                "temperature" => model.temperature = self.lit_float(field, 0.0, 2.0, Code::E0318),
                "max_tokens" => {
                    model.max_tokens = self.lit_int(field, 1, Code::E0318).map(|n| n as u64)
                }
                "input_price" => {
                    model.input_price = self.lit_float(field, 0.0, f64::MAX, Code::E0318)
                }
                "output_price" => {
                    model.output_price = self.lit_float(field, 0.0, f64::MAX, Code::E0318)
                }
                "structured_output" => {
                    model.structured_output = self.lit_bool(field).unwrap_or(false)
                }
                "timeout" => model.timeout_ms = self.lit_duration(field, Code::E0318),
                "command" => model.command = self.lit_string(field),
                "script" => {
                    // Relative to the file that defines the model, like imports.
                    model.script = self.lit_string(field).map(|s| match self.m.key.parent() {
                        Some(dir) if !self.m.key.starts_with("<std>") => {
                            dir.join(&s).display().to_string()
                        }
                        _ => s,
                    })
                }
                "description" => {
                    self.lit_string(field);
                }
                "rate_limit" => {
                    let Some(FieldValue::Expr(Expr {
                        kind: ExprKind::Map(entries),
                        ..
                    })) = Some(&field.value)
                    else {
                        if let Some(e) = self.value(field) {
                            self.lit_error(
                                field,
                                e,
                                "a block `{ requests_per_minute: N, tokens_per_minute: N }`",
                            );
                        }
                        continue;
                    };
                    let sub: Vec<Field> = entries.iter().map(|(k, v)| map_field(k, v)).collect();
                    self.known_fields(
                        &sub,
                        &["requests_per_minute", "tokens_per_minute"],
                        "`rate_limit`",
                        |_| None,
                    );
                    for f in &sub {
                        let n = self.lit_int(f, 1, Code::E0318).map(|n| n as u64);
                        match f.key.name.as_str() {
                            "requests_per_minute" => model.requests_per_minute = n,
                            "tokens_per_minute" => model.tokens_per_minute = n,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let has = |k: &str| item.fields.iter().any(|f| f.key.name == k);
        match provider {
            None if !has("provider") => self.missing(
                item.name.span,
                &format!("model `{}`", item.name.name),
                "provider",
                "provider: \"openai\"",
            ),
            Some(p) => {
                model.provider = p;
                match p {
                    Provider::OpenAi | Provider::Anthropic if !has("name") => self.missing(
                        item.name.span,
                        &format!("model `{}`", item.name.name),
                        "name",
                        "name: \"gpt-4o-mini\"",
                    ),
                    Provider::Command if !has("command") => self.missing(
                        item.name.span,
                        &format!("model `{}`", item.name.name),
                        "command",
                        "command: \"my-agent --json\"",
                    ),
                    Provider::Fake if !has("script") => self.missing(
                        item.name.span,
                        &format!("model `{}`", item.name.name),
                        "script",
                        "script: \"answers.yaml\"",
                    ),
                    _ => {}
                }
            }
            None => {}
        }
        model
    }

    /// `provider`: a word, or `env("NAME", "default")` chosen when a run starts.
    fn provider(&mut self, field: &Field, env: &mut Option<String>) -> Option<Provider> {
        const CHOICES: &[&str] = &["openai", "anthropic", "command", "fake"];
        if let Some(Expr {
            kind: ExprKind::Call(f, _),
            ..
        }) = self.value(field)
            && f.name == "env"
        {
            let Some(ir::Setting::Env { name, default }) = self.setting(field) else {
                return None;
            };
            let Some(default) = default else {
                let expr = self.value(field)?;
                self.lit_error(
                    field,
                    expr,
                    "`env(\"NAME\", \"default\")` with a default provider",
                );
                return None;
            };
            if !CHOICES.contains(&default.as_str()) {
                let expr = self.value(field)?;
                self.lit_error(
                    field,
                    expr,
                    &format!("a default among {}", CHOICES.join(", ")),
                );
                return None;
            }
            *env = Some(name);
            return Some(Provider::parse(&default).unwrap_or(Provider::Fake));
        }
        self.word(field, CHOICES)
            .map(|p| Provider::parse(&p).unwrap_or(Provider::Fake))
    }

    /// A string literal, or `env("NAME"[, "default"])`.
    fn setting(&mut self, field: &Field) -> Option<ir::Setting> {
        let expr = self.value(field)?;
        if let ExprKind::Call(f, args) = &expr.kind
            && f.name == "env"
        {
            let strings: Vec<Option<&str>> = args
                .iter()
                .map(|a| match &a.kind {
                    ExprKind::Str(s) => Some(s.value.as_str()),
                    _ => None,
                })
                .collect();
            match strings.as_slice() {
                [Some(name)] => {
                    return Some(ir::Setting::Env {
                        name: name.to_string(),
                        default: None,
                    });
                }
                [Some(name), Some(default)] => {
                    return Some(ir::Setting::Env {
                        name: name.to_string(),
                        default: Some(default.to_string()),
                    });
                }
                _ => {}
            }
        }
        match &expr.kind {
            ExprKind::Str(s) => Some(ir::Setting::Text(s.value.clone())),
            _ => {
                self.lit_error(field, expr, "a string or `env(\"NAME\", \"default\")`");
                None
            }
        }
    }

    /// `secret("NAME")` or `env("NAME")`: where a key or signing secret comes from.
    pub(super) fn secret_ref(&mut self, field: &Field) -> Option<SecretSource> {
        let expr = self.value(field)?;
        if let ExprKind::Call(f, args) = &expr.kind
            && let [
                Expr {
                    kind: ExprKind::Str(name),
                    ..
                },
            ] = args.as_slice()
        {
            match f.name.as_str() {
                "secret" => return Some(SecretSource::Secret(name.value.clone())),
                "env" => return Some(SecretSource::Env(name.value.clone())),
                _ => {}
            }
        }
        self.diags.push(
            Diagnostic::new(
                Code::E0301,
                self.file,
                expr.span,
                format!(
                    "`{}` must come from `secret(\"NAME\")` or `env(\"NAME\")`",
                    field.key.name
                ),
            )
            .label("secrets are never written in flow files")
            .help(format!(
                "write `{}: secret(\"{}\")`",
                field.key.name,
                if field.key.name == "api_key" {
                    "OPENAI_API_KEY"
                } else {
                    "HOOK_SECRET"
                }
            )),
        );
        None
    }
}
