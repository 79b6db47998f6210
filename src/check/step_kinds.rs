//! The fields of each step kind but the common ones: `run` (command or argv,
//! the sandbox a step may only narrow), `llm`, `call`, `script`, `wait`, and `backoff`.

use super::module_cx::ModuleCx;
use super::scope::{Mode, NodeScope};
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, Backoff, Command, StepKind, Ty, Value};
use crate::syntax::ast::{self, ExprKind, Field};
use std::sync::Arc;

impl<'a> ModuleCx<'a> {
    pub(super) fn run_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
        policy: &ir::Policy,
    ) -> StepKind {
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let command = match (get("command"), get("argv")) {
            (Some(c), Some(a)) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0317,
                        self.file,
                        a.key.span,
                        "a `run` step takes `command` or `argv`, not both",
                    )
                    .label("second way to name the program")
                    .with(c.key.span, "`command` is also given")
                    .help(
                        "use `command` for a shell line, `argv` to run a program without a shell",
                    ),
                );
                Command::Shell(
                    self.text(Some(c), id, sk)
                        .unwrap_or(Value::Const(serde_json::Value::Null)),
                )
            }
            (Some(c), None) => Command::Shell(
                self.text(Some(c), id, sk)
                    .unwrap_or(Value::Const(serde_json::Value::Null)),
            ),
            (None, Some(a)) => {
                let want = Ty::String.list_of();
                match self.value(a) {
                    Some(expr) => match self.data_value(
                        expr,
                        sk,
                        Some(id),
                        Mode::Plain,
                        Some(&want),
                        "`argv`",
                    ) {
                        (Value::List(items), _) => Command::Argv(items),
                        (other, _) => Command::Argv(vec![other]),
                    },
                    None => Command::Argv(Vec::new()),
                }
            }
            (None, None) => {
                self.missing(
                    def.name.span,
                    &format!("`run` step `{}`", def.name.name),
                    "command",
                    "command: \"cargo test\"",
                );
                Command::Argv(Vec::new())
            }
        };
        let stdin = self.text(get("stdin"), id, sk);
        let cwd = self.text(get("cwd"), id, sk);
        let snapshot = get("snapshot")
            .and_then(|f| self.lit_strings(f))
            .unwrap_or_default();
        let rollback = match get("rollback") {
            Some(f) => {
                let on = self.lit_bool(f).unwrap_or(false);
                if on && get("snapshot").is_none() {
                    self.missing(
                        f.key.span,
                        &format!("`run` step `{}` with `rollback: true`", def.name.name),
                        "snapshot",
                        "snapshot: [\"src/**\"]",
                    );
                }
                on
            }
            None => false,
        };
        let sandbox = match get("sandbox") {
            Some(f) => {
                let narrowed = self.sandbox(f, &policy.sandbox);
                self.check_narrowing(f, &narrowed, policy);
                narrowed
            }
            None => policy.sandbox.clone(),
        };
        StepKind::Run(ir::RunStep {
            command,
            stdin,
            cwd,
            output: self.output_type(def, sk, id),
            snapshot,
            rollback,
            sandbox,
        })
    }

    fn check_narrowing(&mut self, field: &Field, step: &ir::Sandbox, policy: &ir::Policy) {
        let base = &policy.sandbox;
        let mut widened: Vec<String> = Vec::new();
        if step.network == Some(true) && base.network == Some(false) {
            widened.push("`network: true` where the policy denies the network".into());
        }
        let weaker = |f: Option<ir::Fallback>| f == Some(ir::Fallback::Weaker);
        // Only limits the policy wrote are refused, so only they can be weakened.
        if weaker(step.fallback) && !weaker(base.fallback) && !base.written.is_empty() {
            widened.push("`fallback: \"weaker\"` where the policy refuses".into());
        }
        for name in base.written.iter().filter(|w| !step.written.contains(w)) {
            widened.push(format!(
                "`best_effort` for `{name}`, which the policy enforces or refuses"
            ));
        }
        let more = |s: Option<u64>, b: Option<u64>| matches!((s, b), (Some(s), Some(b)) if s > b);
        for (name, s, b) in [
            ("memory", step.memory, base.memory),
            ("cpu", step.cpu_ms, base.cpu_ms),
            ("processes", step.processes, base.processes),
            ("open_files", step.open_files, base.open_files),
            ("file_size", step.file_size, base.file_size),
        ] {
            if more(s, b) {
                widened.push(format!("a larger `{name}` than the policy's"));
            }
        }
        if let (Some(s), Some(b)) = (&step.writable, &base.writable) {
            for path in s {
                if !b.iter().any(|allowed| path_within(path, allowed)) {
                    widened.push(format!("writable path `{path}` outside the policy's {b:?}"));
                }
            }
        }
        if let (Some(s), Some(b)) = (&step.readable, &base.readable) {
            for path in s {
                if !b.iter().any(|allowed| path_within(path, allowed)) {
                    widened.push(format!("readable path `{path}` outside the policy's {b:?}"));
                }
            }
        }
        if let Some(first) = widened.first() {
            self.diags.push(
                Diagnostic::new(
                    Code::E0604,
                    self.file,
                    field.span,
                    format!("step sandbox widens policy `{}`: {first}", policy.name),
                )
                .label("a step may narrow the policy's sandbox, never widen it")
                .help("remove the setting, or change the policy"),
            );
        }
    }

    /// The fields an `llm` and an `agent` step share: the model, the prompts and sampling.
    pub(super) fn model_fields(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> ModelFields {
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let model = match get("model") {
            Some(f) => self
                .value(f)
                .and_then(|e| self.qualified_of(e, "`model`"))
                .and_then(|q| self.model(&q)),
            None => {
                self.missing(
                    def.name.span,
                    &format!("`{}` step `{}`", def.kind.name, def.name.name),
                    "model",
                    "model: planner",
                );
                None
            }
        };
        let prompt = self.required_text(def, "prompt", "prompt: \"...\"", id, sk);
        let system = self.text(get("system"), id, sk);
        let temperature = get("temperature").and_then(|f| self.lit_float(f, 0.0, 2.0, Code::E0318));
        let max_tokens = get("max_tokens")
            .and_then(|f| self.lit_int(f, 1, Code::E0318))
            .map(|n| n as u64);
        ModelFields {
            model: model.unwrap_or_else(placeholder_model),
            system,
            prompt,
            temperature,
            max_tokens,
        }
    }

    pub(super) fn llm_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> StepKind {
        let m = self.model_fields(id, def, sk);
        StepKind::Llm(ir::LlmStep {
            model: m.model,
            system: m.system,
            prompt: m.prompt,
            output: self.output_type(def, sk, id),
            temperature: m.temperature,
            max_tokens: m.max_tokens,
        })
    }

    pub(super) fn call_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> StepKind {
        let Some(callee) = &def.callee else {
            self.diags.push(
                Diagnostic::new(
                    Code::E0308,
                    self.file,
                    def.kind.span,
                    format!("`call` step `{}` does not name a skill", def.name.name),
                )
                .label("which skill?")
                .help(format!(
                    "write `step {}: call other_skill {{ with {{ ... }} }}`",
                    def.name.name
                )),
            );
            return StepKind::Call {
                skill: String::new(),
                args: Vec::new(),
            };
        };
        let Some(sig) = self.sig(callee) else {
            return StepKind::Call {
                skill: String::new(),
                args: Vec::new(),
            };
        };
        self.calls.push(super::module::CallEdge {
            caller: sk.sig.key.clone(),
            callee: sig.key.clone(),
            file: self.file,
            span: callee.span,
        });
        let mut args = Vec::new();
        let with = def.fields.iter().find(|f| f.key.name == "with");
        let entries: Vec<(ast::MapKey, ast::Expr)> = match with.and_then(|f| self.value(f)) {
            Some(ast::Expr {
                kind: ExprKind::Map(entries),
                ..
            }) => entries.clone(),
            Some(other) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        other.span,
                        "`with` expects the arguments as a map",
                    )
                    .label("not a map")
                    .help("write `with { name: value }`"),
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        for (key, value) in &entries {
            match sig.params.iter().find(|(n, _, _)| *n == key.name) {
                Some((name, ty, _)) => {
                    let (v, _) = self.data_value(
                        value,
                        sk,
                        Some(id),
                        Mode::Plain,
                        Some(ty),
                        &format!("parameter `{name}`"),
                    );
                    args.push((name.clone(), v));
                }
                None => {
                    let names: Vec<&str> = sig.params.iter().map(|(n, _, _)| n.as_str()).collect();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E0312,
                            self.file,
                            key.span,
                            format!("skill `{}` has no parameter `{}`", sig.name, key.name),
                        )
                        .label("unknown argument")
                        .maybe_help(
                            crate::diag::did_you_mean(&key.name, names.iter().copied()).or_else(
                                || {
                                    Some(if names.is_empty() {
                                        format!("`{}` takes no parameters", sig.name)
                                    } else {
                                        format!(
                                            "its parameters are {}",
                                            names
                                                .iter()
                                                .map(|n| format!("`{n}`"))
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        )
                                    })
                                },
                            ),
                        ),
                    );
                }
            }
        }
        for (name, ty, has_default) in &sig.params {
            if !has_default && !entries.iter().any(|(k, _)| k.name == *name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0311,
                        self.file,
                        callee.span,
                        format!("missing argument `{name}` for skill `{}`", sig.name),
                    )
                    .label(format!("`{name}: {ty}` has no default"))
                    .help(format!("add it: `with {{ {name}: ... }}`")),
                );
            }
        }
        StepKind::Call {
            skill: sig.key.clone(),
            args,
        }
    }

    pub(super) fn script_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> StepKind {
        let field = def.fields.iter().find(|f| f.key.name == "code");
        let output = self.output_type(def, sk, id);
        let Some(field) = field else {
            self.missing(
                def.name.span,
                &format!("`script` step `{}`", def.name.name),
                "code",
                "code: \"\"\"\\n  40 + 2\\n\"\"\"",
            );
            return StepKind::Script {
                code: String::new(),
                ast: Arc::new(rhai::AST::empty()),
                output,
            };
        };
        let Some(ast::Expr {
            kind: ExprKind::Str(lit),
            ..
        }) = self.value(field)
        else {
            if let Some(e) = self.value(field) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        e.span,
                        "`code` expects the script as a string",
                    )
                    .label("not a string")
                    .help("write the script in a `\"\"\"` block"),
                );
            }
            return StepKind::Script {
                code: String::new(),
                ast: Arc::new(rhai::AST::empty()),
                output,
            };
        };
        let ast = super::script::compile_script(self, lit, id, sk);
        StepKind::Script {
            code: lit.value.clone(),
            ast: Arc::new(ast),
            output,
        }
    }

    pub(super) fn wait_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> StepKind {
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let duration_ms = get("duration").and_then(|f| self.lit_duration(f, Code::E0318));
        let until = match get("until") {
            Some(f) => self.value(f).map(|expr| {
                let mut scope = NodeScope {
                    state: &mut sk.state,
                    at: Some(id),
                    mode: Mode::Plain,
                };
                let mut checker = super::expr::ExprChecker {
                    file: self.file,
                    diags: &mut self.diags,
                };
                checker.condition(expr, &mut scope, "`until`");
                self.compile(expr, Ty::Bool)
            }),
            None => None,
        };
        match (get("duration"), get("until")) {
            (Some(d), Some(u)) => self.diags.push(
                Diagnostic::new(
                    Code::E0317,
                    self.file,
                    u.key.span,
                    "a `wait` step takes `duration` or `until`, not both",
                )
                .label("second condition")
                .with(d.key.span, "`duration` is also given"),
            ),
            (None, None) => self.diags.push(
                Diagnostic::new(
                    Code::E0308,
                    self.file,
                    def.name.span,
                    format!(
                        "`wait` step `{}` needs `duration` or `until`",
                        def.name.name
                    ),
                )
                .label("waits for nothing")
                .help("add one, for example `duration: 5m` or `until: exists(\"ready.txt\")`"),
            ),
            _ => {}
        }
        let interval_ms = get("interval")
            .and_then(|f| self.lit_duration(f, Code::E0318))
            .unwrap_or(5_000);
        StepKind::Wait {
            duration_ms,
            until,
            interval_ms,
        }
    }

    pub(super) fn backoff(&mut self, field: &Field) -> Option<Backoff> {
        let expr = self.value(field)?;
        match &expr.kind {
            ExprKind::Duration(ms) => Some(Backoff {
                initial_ms: *ms,
                factor: 2.0,
                max_ms: ms.saturating_mul(32),
            }),
            ExprKind::Map(entries) => {
                let sub: Vec<Field> = entries
                    .iter()
                    .map(|(k, v)| super::literals::map_field(k, v))
                    .collect();
                self.known_fields(&sub, &["initial", "factor", "max"], "`backoff`", |_| None);
                let mut b = Backoff {
                    initial_ms: 1_000,
                    factor: 2.0,
                    max_ms: 60_000,
                };
                for f in &sub {
                    match f.key.name.as_str() {
                        "initial" => {
                            b.initial_ms = self.lit_duration(f, Code::E0318).unwrap_or(b.initial_ms)
                        }
                        "factor" => {
                            b.factor = self
                                .lit_float(f, 1.0, 100.0, Code::E0318)
                                .unwrap_or(b.factor)
                        }
                        "max" => b.max_ms = self.lit_duration(f, Code::E0318).unwrap_or(b.max_ms),
                        _ => {}
                    }
                }
                Some(b)
            }
            _ => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        expr.span,
                        "`backoff` expects a duration or `{ initial, factor, max }`",
                    )
                    .label("not a duration")
                    .help("write `backoff: 10s` or `backoff { initial: 1s, factor: 2, max: 1m }`"),
                );
                None
            }
        }
    }
}

/// Whether `path` lies inside `allowed` (lexically).
/// What [`ModuleCx::model_fields`] reads.
pub(super) struct ModelFields {
    pub model: Arc<ir::Model>,
    pub system: Option<ir::Value>,
    pub prompt: ir::Value,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u64>,
}

/// The model of a step whose `model` is missing or unknown (already reported).
pub(super) fn placeholder_model() -> Arc<ir::Model> {
    Arc::new(ir::Model {
        key: String::new(),
        name: "{unknown}".into(),
        provider: ir::Provider::Fake,
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
    })
}

fn path_within(path: &str, allowed: &str) -> bool {
    let p = super::normalize(std::path::Path::new(path));
    let a = super::normalize(std::path::Path::new(allowed));
    a == std::path::Path::new(".") && !p.starts_with("..") && !p.is_absolute() || p.starts_with(&a)
}
