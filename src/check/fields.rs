//! The fields of each step kind, their types, and the step's result type.

use super::module_cx::ModuleCx;
use super::scope::{Mode, NodeScope};
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, Record, StepKind, Ty, Value};
use crate::syntax::ast::{self, ExprKind, Field, FieldValue};
use std::sync::{Arc, LazyLock};

const COMMON: &[&str] = &[
    "after",
    "when",
    "accept",
    "feedback",
    "attempts",
    "backoff",
    "timeout",
    "on_failure",
    "env",
    "description",
    "expose_secrets",
    "effect",
    "remember",
    "on_interrupt",
];

/// Step fields a `secret()` may flow into: the process environment and
/// standard input (never journaled), and conditions (only a bool comes out).
/// (`notify` names a secret for the service to read when it sends: only the name is journaled.)
const SECRET_OK: &[&str] = &[
    "env",
    "stdin",
    "when",
    "accept",
    "until",
    "expose_secrets",
    "notify",
];

/// Where `secret(...)` is called inside an expression.
pub fn secret_calls(expr: &ast::Expr, out: &mut Vec<crate::span::Span>) {
    match &expr.kind {
        ExprKind::Call(f, args) => {
            if f.name == "secret" {
                out.push(expr.span);
            }
            args.iter().for_each(|a| secret_calls(a, out));
        }
        ExprKind::Member(base, _) | ExprKind::OptMember(base, _) | ExprKind::Unary(_, base) => {
            secret_calls(base, out)
        }
        ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
            secret_calls(a, out);
            secret_calls(b, out);
        }
        ExprKind::Method(base, _, args) | ExprKind::OptMethod(base, _, args) => {
            secret_calls(base, out);
            args.iter().for_each(|a| secret_calls(a, out));
        }
        ExprKind::List(items) => items.iter().for_each(|a| secret_calls(a, out)),
        ExprKind::Map(entries) => entries.iter().for_each(|(_, v)| secret_calls(v, out)),
        _ => {}
    }
}

/// The fields a step kind takes besides the common ones.
fn kind_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "run" => &[
            "command",
            "argv",
            "stdin",
            "cwd",
            "output",
            "snapshot",
            "rollback",
            "sandbox",
            "inputs",
            "outputs",
            "cache",
            "cache_key",
        ],
        "llm" => &[
            "model",
            "system",
            "prompt",
            "output",
            "temperature",
            "max_tokens",
            "inputs",
            "cache",
            "cache_key",
        ],
        "approval" => &[
            "prompt",
            "default",
            "approvers",
            "required",
            "self_approval",
            "form",
            "notify",
        ],
        "agent" => &[
            "model",
            "system",
            "prompt",
            "tools",
            "cwd",
            "max_turns",
            "max_tool_calls",
            "max_repeats",
            "tool_result_max",
            "output",
            "temperature",
            "max_tokens",
        ],
        "call" => &["with"],
        "script" => &["code", "output", "inputs", "cache", "cache_key"],
        "wait" => &["duration", "until", "interval"],
        _ => return None,
    })
}

const KINDS: &[&str] = &["run", "llm", "agent", "approval", "call", "script", "wait"];

/// The fields a step of `kind` takes, the common ones first (for editor
/// completion); `None` for an unknown kind.
pub fn step_field_names(kind: &str) -> Option<Vec<&'static str>> {
    kind_fields(kind).map(|own| COMMON.iter().chain(own).copied().collect())
}

fn result_record(name: &str, fields: Vec<(&str, Ty)>) -> Ty {
    Ty::Record(Arc::new(Record {
        name: Some(name.to_string()),
        fields: fields
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
    }))
}

fn run_result(output: Option<Ty>) -> Ty {
    let mut fields = vec![
        ("exit_code", Ty::Int),
        ("stdout", Ty::String),
        ("stderr", Ty::String),
        ("duration", Ty::Duration),
    ];
    if let Some(o) = output {
        fields.push(("output", o));
    }
    result_record("run result", fields)
}

/// An approval's result; `form` is the record of answers when the step declares one.
pub(super) fn approval_result(form: Option<Ty>) -> Ty {
    let mut fields = vec![
        ("approved", Ty::Bool),
        ("by", Ty::List(Box::new(Ty::String))),
        ("comment", Ty::String),
    ];
    if let Some(f) = form {
        fields.push(("form", f));
    }
    result_record("approval result", fields)
}

fn llm_result(output: Option<Ty>) -> Ty {
    let mut fields = vec![("text", Ty::String)];
    if let Some(o) = output {
        fields.push(("output", o));
    }
    fields.extend([
        ("tokens_in", Ty::Int),
        ("tokens_out", Ty::Int),
        ("cost_usd", Ty::Float),
    ]);
    result_record("llm result", fields)
}

// Result types without a declared `output` are the same for every step of a
// kind: built once and shared, rather than one record per step.
static RUN_RESULT: LazyLock<Ty> = LazyLock::new(|| run_result(None));
static LLM_RESULT: LazyLock<Ty> = LazyLock::new(|| llm_result(None));
static APPROVAL_RESULT: LazyLock<Ty> = LazyLock::new(|| approval_result(None));
static WAIT_RESULT: LazyLock<Ty> =
    LazyLock::new(|| result_record("wait result", vec![("waited", Ty::Duration)]));

impl<'a> ModuleCx<'a> {
    /// The result type of a step (E0310 for an unknown kind).
    pub fn result_type(&mut self, step: &ast::StepDef) -> Ty {
        let output = step.fields.iter().find_map(|f| match &f.value {
            FieldValue::Type(t) if f.key.name == "output" => Some(t),
            _ => None,
        });
        let output = output.map(|t| self.resolve_type(t));
        match step.kind.name.as_str() {
            "run" => match output {
                Some(o) => run_result(Some(o)),
                None => RUN_RESULT.clone(),
            },
            "llm" => match output {
                Some(o) => llm_result(Some(o)),
                None => LLM_RESULT.clone(),
            },
            "agent" => super::agent::agent_result(output),
            "approval" => match self.form_type(step) {
                Some(form) => approval_result(Some(form)),
                None => APPROVAL_RESULT.clone(),
            },
            "wait" => WAIT_RESULT.clone(),
            "script" => output.unwrap_or(Ty::Json),
            "call" => match &step.callee {
                Some(q) => match self.sig(q) {
                    Some(sig) => sig.ret.clone().unwrap_or(Ty::Json),
                    None => Ty::Error,
                },
                None => Ty::Error,
            },
            other => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0310,
                        self.file,
                        step.kind.span,
                        format!("unknown step kind `{other}`"),
                    )
                    .label("not a step kind")
                    .maybe_help(
                        crate::diag::did_you_mean(other, KINDS.iter().copied()).or_else(|| {
                            Some(format!(
                                "the kinds are {}",
                                KINDS
                                    .iter()
                                    .map(|k| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        }),
                    ),
                );
                Ty::Error
            }
        }
    }

    /// Checks a step's fields and compiles it.
    pub fn step(&mut self, id: usize, def: &'a ast::StepDef, sk: &mut SkillCx<'a>) -> ir::Step {
        let kind = def.kind.name.as_str();
        let policy = sk.sig.policy.clone();
        if let Some(own) = kind_fields(kind) {
            let allowed: Vec<&str> = COMMON.iter().chain(own).copied().collect();
            let what = format!("a `{kind}` step");
            self.known_fields(&def.fields, &allowed, &what, |k| {
                KINDS
                    .iter()
                    .find(|other| kind_fields(other).is_some_and(|f| f.contains(&k)))
                    .map(|other| format!("`{k}` belongs to `{other}` steps"))
            });
        }
        if def.callee.is_some() && kind != "call" {
            let span = def.callee.as_ref().map_or(def.kind.span, |c| c.span);
            self.diags.push(
                Diagnostic::new(
                    Code::E0102,
                    self.file,
                    span,
                    format!("only `call` steps name a skill after the kind, not `{kind}` steps"),
                )
                .label("unexpected name")
                .help(format!("write `step {}: {kind} {{ ... }}`", def.name.name)),
            );
        }
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let exposed = get("expose_secrets").and_then(|f| self.lit_bool(f)) == Some(true);
        if !exposed {
            for f in &def.fields {
                if SECRET_OK.contains(&f.key.name.as_str()) {
                    continue;
                }
                if let FieldValue::Expr(e) = &f.value {
                    let mut calls = Vec::new();
                    secret_calls(e, &mut calls);
                    for span in calls {
                        self.secret_flow(span, &format!("`{}`", f.key.name), true);
                    }
                }
            }
        }
        let mut step = ir::Step {
            kind: StepKind::Wait {
                duration_ms: None,
                until: None,
                interval_ms: 0,
            },
            attempts: 1,
            backoff: None,
            timeout_ms: policy.step_timeout_ms,
            accept: Vec::new(),
            feedback: None,
            env: Vec::new(),
            result: sk.state.nodes[id].ty.clone(),
            fingerprint: self.source(def.span),
            definition: super::canonical::definition(def),
            effect: ir::Effect::Idempotent,
            cache: ir::CacheSpec::default(),
            remember: Vec::new(),
            recalls: Vec::new(),
            on_interrupt: None,
        };
        (step.effect, step.cache) = self.cache_fields(id, def, sk, &policy);
        step.on_interrupt = get("on_interrupt").and_then(|f| self.on_interrupt(f));
        if let Some(f) = get("attempts")
            && let Some(n) = self.lit_int(f, 1, Code::E0318)
        {
            step.attempts = n.min(u32::MAX as i64) as u32;
            self.attempt_cap(
                f,
                step.attempts,
                &format!("step `{}`", def.name.name),
                &policy,
            );
        }
        if let Some(f) = get("backoff") {
            step.backoff = self.backoff(f);
        }
        if let Some(f) = get("timeout")
            && let Some(ms) = self.lit_duration(f, Code::E0318)
        {
            if kind == "approval" {
                // Approvals wait on a person; their timeout is not a step timeout.
            } else if ms > policy.step_timeout_ms {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0602,
                        self.file,
                        f.span,
                        format!(
                            "timeout {} of step `{}` is longer than `step_timeout` {} of policy `{}`",
                            ir::format_ms(ms),
                            def.name.name,
                            ir::format_ms(policy.step_timeout_ms),
                            policy.name
                        ),
                    )
                    .label("exceeds the policy cap")
                    .help(format!("lower it to at most {}", ir::format_ms(policy.step_timeout_ms))),
                );
            } else {
                step.timeout_ms = ms;
            }
        }
        if let Some(f) = get("accept")
            && let Some(expr) = self.value(f)
        {
            let conditions: Vec<&ast::Expr> = match &expr.kind {
                ExprKind::List(items) => items.iter().collect(),
                _ => vec![expr],
            };
            for cond in conditions {
                let mut scope = NodeScope {
                    state: &mut sk.state,
                    at: Some(id),
                    mode: Mode::Accept(id),
                };
                let mut checker = super::expr::ExprChecker {
                    file: self.file,
                    diags: &mut self.diags,
                };
                checker.condition(cond, &mut scope, "`accept`");
                step.accept.push(self.compile(cond, Ty::Bool));
            }
            step.accept.shrink_to_fit();
        }
        if let Some(f) = get("feedback")
            && let Some(expr) = self.value(f)
        {
            // A string is a template, as in every other text field.
            let (value, _) = self.data_value(
                expr,
                sk,
                Some(id),
                Mode::Accept(id),
                Some(&Ty::String),
                "`feedback`",
            );
            step.feedback = Some(value);
        }
        if let Some(f) = get("env")
            && let Some(expr) = self.value(f)
        {
            match &expr.kind {
                ExprKind::Map(entries) => {
                    for (key, value) in entries {
                        let (v, _) = self.data_value(
                            value,
                            sk,
                            Some(id),
                            Mode::Plain,
                            None,
                            &format!("`env.{}`", key.name),
                        );
                        step.env.push((key.name.clone(), v));
                    }
                }
                _ => self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        expr.span,
                        "`env` expects a map of variables",
                    )
                    .label("not a map")
                    .help("write `env { RUST_LOG: \"debug\" }`"),
                ),
            }
        }
        step.kind = match kind {
            "run" => self.run_step(id, def, sk, &policy),
            "llm" => self.llm_step(id, def, sk),
            "agent" => self.agent_step(id, def, sk),
            "approval" => self.approval_step(id, def, sk),
            "call" => self.call_step(id, def, sk),
            "script" => self.script_step(id, def, sk),
            "wait" => self.wait_step(id, def, sk),
            // An unknown kind was reported (E0310); its fields are not checked further.
            _ => step.kind,
        };
        step.remember = self.remember(id, def, sk);
        step.recalls = sk.state.recalls.get(&id).cloned().unwrap_or_default();
        self.repeated_write(id, def, sk, &step);
        step
    }

    /// Reports a `secret()` flowing into `what`, which is journaled or shown.
    pub fn secret_flow(&mut self, span: crate::span::Span, what: &str, in_step: bool) {
        let help = if in_step {
            "pass it through `env { TOKEN: secret(\"TOKEN\") }` and read `$TOKEN` in the command, \
             or `stdin`; if this is intended, write `expose_secrets: true` on the step \
             (the value is still redacted from the journal)"
        } else {
            "return something derived from it instead, or read the secret where it is used"
        };
        self.diags.push(
            Diagnostic::new(
                Code::E0319,
                self.file,
                span,
                format!("a secret flows into {what}, which is journaled or shown"),
            )
            .label("`secret()` here")
            .help(help),
        );
    }

    pub(super) fn text(
        &mut self,
        field: Option<&Field>,
        id: usize,
        sk: &mut SkillCx<'a>,
    ) -> Option<Value> {
        let field = field?;
        let expr = self.value(field)?;
        Some(
            self.data_value(
                expr,
                sk,
                Some(id),
                Mode::Plain,
                Some(&Ty::String),
                &format!("`{}`", field.key.name),
            )
            .0,
        )
    }

    /// The declared `output` type, read off the result type computed in `result_type`.
    pub(super) fn output_type(
        &self,
        def: &ast::StepDef,
        sk: &SkillCx<'a>,
        id: usize,
    ) -> Option<Ty> {
        if !def
            .fields
            .iter()
            .any(|f| matches!(f.value, FieldValue::Type(_)) && f.key.name == "output")
        {
            return None;
        }
        Some(match &sk.state.nodes[id].ty {
            Ty::Record(rec) if def.kind.name != "script" => {
                rec.field("output").cloned().unwrap_or(Ty::Error)
            }
            other => other.clone(),
        })
    }

    /// A required template field; reports E0308 when it is absent.
    pub(super) fn required_text(
        &mut self,
        def: &ast::StepDef,
        key: &str,
        example: &str,
        id: usize,
        sk: &mut SkillCx<'a>,
    ) -> Value {
        let field = def.fields.iter().find(|f| f.key.name == key);
        if field.is_none() {
            let what = format!("`{}` step `{}`", def.kind.name, def.name.name);
            self.missing(def.name.span, &what, key, example);
        }
        self.text(field, id, sk)
            .unwrap_or(Value::Const(serde_json::Value::Null))
    }
}
