//! Checking one module: name resolution and the non-skill items.

use super::expr::{ExprChecker, Lookup, Scope};
use super::module::{CallEdge, ItemKind, Module, ModuleId, SkillSig, Tables};
use crate::diag::{Code, Diagnostic, FileId, did_you_mean};
use crate::ir::{self, CompiledExpr, Policy, Provider, Sandbox, SecretSource, Ty};
use crate::span::Span;
use crate::syntax::ast::{self, ConfigKind, Expr, ExprKind, Field, FieldValue, QualifiedName};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

/// An AST with no statements and an empty function library, cloned (sharing
/// the library) to hold each compiled expression.
static EMPTY_AST: LazyLock<rhai::AST> = LazyLock::new(rhai::AST::empty);

/// Where a resolved name lives.
pub enum Found {
    /// In this module, by name.
    Local(String),
    /// In an imported module, by name.
    Remote(ModuleId, String),
}

/// The state of checking one module.
pub struct ModuleCx<'a> {
    /// The module.
    pub m: &'a Module,
    /// All modules.
    pub mods: &'a [Module],
    /// Tables of modules checked before this one.
    pub others: &'a [Tables],
    /// This module's tables, being built.
    pub own: Tables,
    /// Findings.
    pub diags: Vec<Diagnostic>,
    /// This module's file.
    pub file: FileId,
    /// The file's text, for expression sources.
    pub text: &'a str,
    /// Namespaces used so far.
    pub used_ns: HashSet<String>,
    /// The shared rhai engine (compile only).
    pub engine: &'a rhai::Engine,
    /// `call` edges found.
    pub calls: Vec<CallEdge>,
    /// Types being resolved (recursion guard).
    pub resolving: Vec<String>,
    /// The prefix of item keys (`FILE#`).
    pub key_prefix: String,
}

impl<'a> ModuleCx<'a> {
    /// A context for module `id`.
    pub fn new(
        id: ModuleId,
        mods: &'a [Module],
        others: &'a [Tables],
        engine: &'a rhai::Engine,
        text: &'a str,
        display: &str,
    ) -> ModuleCx<'a> {
        ModuleCx {
            m: &mods[id],
            mods,
            others,
            own: Tables::default(),
            diags: Vec::new(),
            file: mods[id].file,
            text,
            used_ns: HashSet::new(),
            engine,
            calls: Vec::new(),
            resolving: Vec::new(),
            key_prefix: format!("{display}#"),
        }
    }

    /// The results.
    pub fn finish(self) -> (Tables, Vec<Diagnostic>, Vec<CallEdge>) {
        (self.own, self.diags, self.calls)
    }

    /// Checks every item of the module.
    pub fn check(&mut self) {
        let items = &self.m.ast.items;
        for item in items {
            if let ast::Item::Type(t) = item {
                let q = QualifiedName {
                    namespace: None,
                    name: t.name.clone(),
                    span: t.name.span,
                };
                self.local_type(&t.name.name, &q);
            }
        }
        for item in items {
            if let ast::Item::Config(c) = item {
                match c.kind {
                    ConfigKind::Model => {
                        let model = self.model_item(c);
                        self.own.models.insert(c.name.name.clone(), Arc::new(model));
                        self.own.order.push((ItemKind::Model, c.name.name.clone()));
                    }
                    ConfigKind::Policy => {
                        let policy = self.policy_item(c);
                        self.own
                            .policies
                            .insert(c.name.name.clone(), Arc::new(policy));
                        self.own.order.push((ItemKind::Policy, c.name.name.clone()));
                    }
                    ConfigKind::Trigger => {}
                }
            }
        }
        // A duplicate definition (E0202) is not checked: its name means the first one.
        let first =
            |name: &str, index: usize| self.m.items.get(name).is_some_and(|ix| ix.index == index);
        let skills: Vec<&ast::SkillDef> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                ast::Item::Skill(s) if first(&s.name.name, i) => Some(s),
                _ => None,
            })
            .collect();
        for s in &skills {
            {
                let sig = self.skill_sig(s);
                self.own.sigs.insert(s.name.name.clone(), Arc::new(sig));
            }
        }
        for s in skills {
            if let Some(sig) = self.own.sigs.get(&s.name.name).cloned() {
                let skill = self.check_skill(s, &sig);
                self.own.skills.insert(s.name.name.clone(), Arc::new(skill));
                self.own.order.push((ItemKind::Skill, s.name.name.clone()));
            }
        }
        for item in items {
            if let ast::Item::Config(c) = item
                && c.kind == ConfigKind::Trigger
            {
                let trigger = self.trigger_item(c);
                self.own.triggers.push(trigger);
            }
        }
        for imp in &self.m.imports {
            if imp.target.is_some() && !self.used_ns.contains(&imp.namespace) {
                self.diags.push(
                    Diagnostic::new(
                        Code::W0002,
                        self.file,
                        imp.name_span,
                        format!("unused import `{}`", imp.namespace),
                    )
                    .label("nothing from this file is used")
                    .help("remove the import"),
                );
            }
        }
    }

    /// Names of this module's items of one kind.
    pub fn item_names(&self, kind: ItemKind) -> Vec<String> {
        let mut names: Vec<String> = self
            .m
            .items
            .iter()
            .filter(|(_, ix)| ix.kind == kind)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Resolves `name` or `ns.name` to an item of kind `want`, reporting failures.
    pub fn find(&mut self, q: &QualifiedName, want: ItemKind) -> Option<Found> {
        let name = &q.name.name;
        let (module, found) = match &q.namespace {
            Some(ns) => {
                let Some(imp) = self.m.imports.iter().find(|i| i.namespace == ns.name) else {
                    let names: Vec<&str> = self
                        .m
                        .imports
                        .iter()
                        .map(|i| i.namespace.as_str())
                        .collect();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E0201,
                            self.file,
                            ns.span,
                            format!("cannot find namespace `{}`", ns.name),
                        )
                        .label("no import gives this name")
                        .maybe_help(did_you_mean(&ns.name, names).or_else(|| {
                            Some(format!("import it: `import \"./{}.flow\"`", ns.name))
                        })),
                    );
                    return None;
                };
                self.used_ns.insert(ns.name.clone());
                let target = imp.target?;
                let found = self.mods[target].items.get(name).copied();
                if found.is_none() {
                    let names: Vec<&str> = self.mods[target]
                        .items
                        .iter()
                        .filter(|(_, ix)| ix.kind == want)
                        .map(|(n, _)| n.as_str())
                        .collect();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E0206,
                            self.file,
                            q.name.span,
                            format!("`{}` has no item `{name}`", ns.name),
                        )
                        .label(format!("no {} of this name in `{}`", want.word(), ns.name))
                        .maybe_help(did_you_mean(name, names)),
                    );
                    return None;
                }
                (Some(target), found)
            }
            None => (None, self.m.items.get(name).copied()),
        };
        let Some(ix) = found else {
            let code = match want {
                ItemKind::Type => Code::E0207,
                ItemKind::Model => Code::E0208,
                ItemKind::Policy => Code::E0209,
                _ => Code::E0210,
            };
            let mut names = if want == ItemKind::Type {
                self.type_names()
            } else {
                self.item_names(want)
            };
            if want == ItemKind::Policy {
                names.retain(|n| n != "default");
            }
            let help = did_you_mean(name, names.iter().map(String::as_str)).or_else(|| {
                (want != ItemKind::Type && !names.is_empty()).then(|| {
                    format!(
                        "known {}s: {}",
                        want.word(),
                        names
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            });
            self.diags.push(
                Diagnostic::new(
                    code,
                    self.file,
                    q.span,
                    format!("cannot find {} `{}`", want.word(), q.text()),
                )
                .label(format!("no {} of this name", want.word()))
                .maybe_help(help),
            );
            return None;
        };
        if ix.kind != want {
            self.diags.push(
                Diagnostic::new(
                    Code::E0214,
                    self.file,
                    q.span,
                    format!(
                        "`{}` is a {}, not a {}",
                        q.text(),
                        ix.kind.word(),
                        want.word()
                    ),
                )
                .label(format!("expected a {}", want.word())),
            );
            return None;
        }
        Some(match module {
            Some(m) => Found::Remote(m, name.clone()),
            None => Found::Local(name.clone()),
        })
    }

    /// The qualified name written as a field value (`planner`, `ns.planner`).
    pub fn qualified_of(&mut self, expr: &Expr, what: &str) -> Option<QualifiedName> {
        match &expr.kind {
            ExprKind::Name(n) => Some(QualifiedName {
                namespace: None,
                name: ast::Ident {
                    name: n.clone(),
                    span: expr.span,
                },
                span: expr.span,
            }),
            ExprKind::Member(base, name) => match &base.kind {
                ExprKind::Name(ns) => Some(QualifiedName {
                    namespace: Some(ast::Ident {
                        name: ns.clone(),
                        span: base.span,
                    }),
                    name: name.clone(),
                    span: expr.span,
                }),
                _ => self.not_a_name(expr, what),
            },
            _ => self.not_a_name(expr, what),
        }
    }

    fn not_a_name(&mut self, expr: &Expr, what: &str) -> Option<QualifiedName> {
        let help = match &expr.kind {
            ExprKind::Str(s) => Some(format!("write the name without quotes: `{}`", s.value)),
            _ => None,
        };
        self.diags.push(
            Diagnostic::new(
                Code::E0301,
                self.file,
                expr.span,
                format!("{what} expects the name of a {}", what.trim_matches('`')),
            )
            .label(format!("this is {}", describe(expr)))
            .maybe_help(help),
        );
        None
    }

    /// The model named by `q`.
    pub fn model(&mut self, q: &QualifiedName) -> Option<Arc<ir::Model>> {
        match self.find(q, ItemKind::Model)? {
            Found::Local(n) => self.own.models.get(&n).cloned(),
            Found::Remote(m, n) => self.others[m].models.get(&n).cloned(),
        }
    }

    /// The policy named by `q`.
    pub fn policy(&mut self, q: &QualifiedName) -> Option<Arc<Policy>> {
        match self.find(q, ItemKind::Policy)? {
            Found::Local(n) => self.own.policies.get(&n).cloned(),
            Found::Remote(m, n) => self.others[m].policies.get(&n).cloned(),
        }
    }

    /// The signature of the skill named by `q`.
    pub fn sig(&mut self, q: &QualifiedName) -> Option<Arc<SkillSig>> {
        match self.find(q, ItemKind::Skill)? {
            Found::Local(n) => self.own.sigs.get(&n).cloned(),
            Found::Remote(m, n) => self.others[m].sigs.get(&n).cloned(),
        }
    }

    /// The source text of a span.
    pub fn source(&self, span: Span) -> String {
        self.text
            .get(span.start..span.end)
            .unwrap_or_default()
            .to_string()
    }

    /// Type-checks and compiles an expression against `scope`.
    pub fn compile(&mut self, expr: &Expr, ty: Ty) -> CompiledExpr {
        let code = super::rhai_gen::to_rhai(expr);
        let ast = match self.engine.compile_expression(&code) {
            // The same statements, but with one shared empty function library
            // instead of a fresh one per expression (~270 bytes each).
            Ok(ast) => {
                let mut shared = EMPTY_AST.clone();
                shared.combine(ast);
                shared
            }
            Err(err) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0105,
                        self.file,
                        expr.span,
                        "expression is too complex to compile",
                    )
                    .label(err.to_string())
                    .help("split it into smaller expressions"),
                );
                rhai::AST::empty()
            }
        };
        CompiledExpr {
            source: self.source(expr.span),
            code,
            ast: Arc::new(ast),
            ty,
            span: expr.span,
        }
    }

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

    fn lit_error(&mut self, field: &Field, expr: &Expr, want: &str) {
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

    fn model_item(&mut self, item: &ast::ConfigItem) -> ir::Model {
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

    fn secret_ref(&mut self, field: &Field) -> Option<SecretSource> {
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
                "`api_key` must come from `secret(\"NAME\")` or `env(\"NAME\")`",
            )
            .label("keys are never written in flow files")
            .help("write `api_key: secret(\"OPENAI_API_KEY\")`"),
        );
        None
    }

    fn policy_item(&mut self, item: &ast::ConfigItem) -> Policy {
        const FIELDS: &[&str] = &[
            "max_attempts",
            "max_parallel",
            "max_steps",
            "max_depth",
            "max_cost_usd",
            "max_tokens",
            "step_timeout",
            "run_timeout",
            "require_approval",
            "forbid",
            "sandbox",
            "description",
        ];
        self.known_fields(&item.fields, FIELDS, "a policy", |_| None);
        let base = Policy::builtin();
        let mut policy = Policy {
            name: item.name.name.clone(),
            ..(*base).clone()
        };
        let c = Code::E0605;
        for field in &item.fields {
            match field.key.name.as_str() {
                "max_attempts" => {
                    policy.max_attempts = self
                        .lit_int(field, 1, c)
                        .map_or(policy.max_attempts, |n| n.min(u32::MAX as i64) as u32)
                }
                "max_parallel" => {
                    policy.max_parallel = self
                        .lit_int(field, 1, c)
                        .map_or(policy.max_parallel, |n| n.min(u32::MAX as i64) as u32)
                }
                "max_steps" => {
                    policy.max_steps = self
                        .lit_int(field, 1, c)
                        .map_or(policy.max_steps, |n| n as u64)
                }
                "max_depth" => {
                    policy.max_depth = self
                        .lit_int(field, 0, c)
                        .map_or(policy.max_depth, |n| n.min(u32::MAX as i64) as u32)
                }
                "max_cost_usd" => {
                    policy.max_cost_usd = self
                        .lit_float(field, 0.0, f64::MAX, c)
                        .or(policy.max_cost_usd)
                }
                "max_tokens" => {
                    policy.max_tokens = self
                        .lit_int(field, 0, c)
                        .map(|n| n as u64)
                        .or(policy.max_tokens)
                }
                "step_timeout" => {
                    policy.step_timeout_ms = self
                        .lit_duration(field, c)
                        .unwrap_or(policy.step_timeout_ms)
                }
                "run_timeout" => {
                    policy.run_timeout_ms =
                        self.lit_duration(field, c).unwrap_or(policy.run_timeout_ms)
                }
                "require_approval" => policy.require_approval = self.policy_rule(field),
                "forbid" => policy.forbid = self.policy_rule(field),
                "sandbox" => policy.sandbox = self.sandbox(field, &base.sandbox),
                "description" => {
                    self.lit_string(field);
                }
                _ => {}
            }
        }
        if policy.step_timeout_ms > policy.run_timeout_ms {
            let span = |k: &str| item.fields.iter().find(|f| f.key.name == k).map(|f| f.span);
            let primary = span("step_timeout")
                .or(span("run_timeout"))
                .unwrap_or(item.name.span);
            let mut diag = Diagnostic::new(
                Code::E0605,
                self.file,
                primary,
                format!(
                    "`step_timeout` ({}) is longer than `run_timeout` ({})",
                    crate::ir::format_ms(policy.step_timeout_ms),
                    crate::ir::format_ms(policy.run_timeout_ms)
                ),
            )
            .label("a single step may not outlast the whole run")
            .help("lower `step_timeout` or raise `run_timeout`");
            if let Some(run) = span("run_timeout").filter(|s| *s != primary) {
                diag = diag.with(run, "the run's ceiling");
            }
            self.diags.push(diag);
        }
        policy
    }

    fn policy_rule(&mut self, field: &Field) -> Option<CompiledExpr> {
        let expr = self.value(field)?;
        let mut scope = StepInfoScope { used: false };
        let mut checker = ExprChecker {
            file: self.file,
            diags: &mut self.diags,
        };
        checker.condition(expr, &mut scope, &format!("`{}`", field.key.name));
        Some(self.compile(expr, Ty::Bool))
    }

    /// Reads a `sandbox { ... }` block over `base`.
    pub fn sandbox(&mut self, field: &Field, base: &Sandbox) -> Sandbox {
        let mut sandbox = base.clone();
        let Some(expr) = self.value(field) else {
            return sandbox;
        };
        let ExprKind::Map(entries) = &expr.kind else {
            self.lit_error(field, expr, "a block `{ network: false, ... }`");
            return sandbox;
        };
        const FIELDS: &[&str] = &[
            "network",
            "memory",
            "cpu",
            "processes",
            "open_files",
            "file_size",
            "writable",
            "readable",
            "fallback",
        ];
        let sub: Vec<Field> = entries.iter().map(|(k, v)| map_field(k, v)).collect();
        self.known_fields(&sub, FIELDS, "`sandbox`", |_| None);
        for f in &sub {
            if let Some(name) = FIELDS.iter().find(|n| **n == f.key.name)
                && *name != "fallback"
                && !sandbox.written.contains(name)
            {
                sandbox.written.push(name);
            }
            match f.key.name.as_str() {
                "network" => sandbox.network = self.lit_bool(f).or(sandbox.network),
                "memory" => sandbox.memory = self.lit_size(f, Code::E0318).or(sandbox.memory),
                "cpu" => sandbox.cpu_ms = self.lit_duration(f, Code::E0318).or(sandbox.cpu_ms),
                "processes" => {
                    sandbox.processes = self
                        .lit_int(f, 1, Code::E0318)
                        .map(|n| n as u64)
                        .or(sandbox.processes)
                }
                "open_files" => {
                    sandbox.open_files = self
                        .lit_int(f, 1, Code::E0318)
                        .map(|n| n as u64)
                        .or(sandbox.open_files)
                }
                "file_size" => {
                    sandbox.file_size = self.lit_size(f, Code::E0318).or(sandbox.file_size)
                }
                "writable" => sandbox.writable = self.lit_strings(f).or(sandbox.writable.clone()),
                "readable" => sandbox.readable = self.lit_strings(f).or(sandbox.readable.clone()),
                "fallback" => {
                    sandbox.fallback = match self.word(f, &["refuse", "weaker"]).as_deref() {
                        Some("refuse") => Some(ir::Fallback::Refuse),
                        Some("weaker") => Some(ir::Fallback::Weaker),
                        _ => sandbox.fallback,
                    }
                }
                _ => {}
            }
        }
        sandbox
    }

    fn trigger_item(&mut self, item: &ast::ConfigItem) -> ir::Trigger {
        self.known_fields(
            &item.fields,
            &["cron", "watch", "webhook", "run", "description"],
            "a trigger",
            |_| None,
        );
        let mut trigger = ir::Trigger {
            name: item.name.name.clone(),
            skill: None,
            cron: None,
            watch: Vec::new(),
            webhook: None,
        };
        for field in &item.fields {
            match field.key.name.as_str() {
                "cron" => trigger.cron = self.lit_string(field),
                "watch" => trigger.watch = self.lit_strings(field).unwrap_or_default(),
                "webhook" => trigger.webhook = self.lit_string(field),
                "description" => {
                    self.lit_string(field);
                }
                "run" => trigger.skill = self.trigger_run(field),
                _ => {}
            }
        }
        if !item.fields.iter().any(|f| f.key.name == "run") {
            self.missing(
                item.name.span,
                &format!("trigger `{}`", item.name.name),
                "run",
                "run: main()",
            );
        }
        trigger
    }

    fn trigger_run(&mut self, field: &Field) -> Option<String> {
        let expr = self.value(field)?;
        let ExprKind::Call(name, args) = &expr.kind else {
            self.lit_error(field, expr, "a skill call such as `main()`");
            return None;
        };
        let q = QualifiedName {
            namespace: None,
            name: name.clone(),
            span: name.span,
        };
        let sig = self.sig(&q)?;
        if args.len() > sig.params.len() {
            self.diags.push(
                Diagnostic::new(
                    Code::E0304,
                    self.file,
                    expr.span,
                    format!(
                        "skill `{}` takes {} arguments, but {} were given",
                        sig.name,
                        sig.params.len(),
                        args.len()
                    ),
                )
                .label("too many arguments"),
            );
        }
        let mut scope = super::skill::EmptyScope;
        for (arg, (pname, pty, _)) in args.iter().zip(&sig.params) {
            let mut checker = ExprChecker {
                file: self.file,
                diags: &mut self.diags,
            };
            checker.expect(arg, &mut scope, pty, &format!("parameter `{pname}`"));
        }
        for (pname, _, has_default) in sig.params.iter().skip(args.len()) {
            if !has_default {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0311,
                        self.file,
                        expr.span,
                        format!("missing argument `{pname}` for skill `{}`", sig.name),
                    )
                    .label("argument missing"),
                );
            }
        }
        Some(sig.key.clone())
    }

    fn skill_sig(&mut self, def: &ast::SkillDef) -> SkillSig {
        let mut params: Vec<(String, Ty, bool)> = Vec::new();
        for (i, p) in def.params.iter().enumerate() {
            if let Some(prev) = def.params[..i].iter().find(|q| q.name.name == p.name.name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0213,
                        self.file,
                        p.name.span,
                        format!("parameter `{}` is declared twice", p.name.name),
                    )
                    .label("second declaration")
                    .with(prev.name.span, "first declaration"),
                );
                continue;
            }
            let ty = self.resolve_type(&p.ty);
            params.push((p.name.name.clone(), ty, p.default.is_some()));
        }
        let ret = def.ret.as_ref().map(|t| self.resolve_type(t));
        let policy = match def.body.fields.iter().find(|f| f.key.name == "policy") {
            Some(field) => self
                .value(field)
                .and_then(|e| self.qualified_of(e, "`policy`"))
                .and_then(|q| self.policy(&q))
                .unwrap_or_else(Policy::builtin),
            None => match self.m.items.get("default") {
                Some(ix) if ix.kind == ItemKind::Policy => self
                    .own
                    .policies
                    .get("default")
                    .cloned()
                    .unwrap_or_else(Policy::builtin),
                _ => Policy::builtin(),
            },
        };
        SkillSig {
            key: format!("{}{}", self.key_prefix, def.name.name),
            name: def.name.name.clone(),
            params,
            ret,
            policy,
            file: self.file,
            span: def.name.span,
        }
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

/// The scope of policy rules: `step` and its fields.
struct StepInfoScope {
    used: bool,
}

impl Scope for StepInfoScope {
    fn lookup(&mut self, name: &str, _span: Span, _diags: &mut Vec<Diagnostic>) -> Lookup {
        if name != "step" {
            return Lookup::Missing;
        }
        self.used = true;
        Lookup::Found(Ty::Record(Arc::new(ir::Record {
            name: Some("StepInfo".into()),
            fields: vec![
                ("kind".into(), Ty::String),
                ("name".into(), Ty::String),
                ("skill".into(), Ty::String),
                ("command".into(), Ty::String),
                ("argv".into(), Ty::String.list_of()),
                ("cwd".into(), Ty::String),
                ("model".into(), Ty::String),
                ("prompt".into(), Ty::String),
                ("attempt".into(), Ty::Int),
            ],
        })))
    }

    fn names(&self) -> Vec<String> {
        vec!["step".into()]
    }
}
