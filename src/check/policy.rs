//! `policy` items: caps, `forbid`/`require_approval` rules over `step`, and `sandbox` blocks.

use super::expr::{ExprChecker, Lookup, Scope};
use super::literals::map_field;
use super::module::ItemKind;
use super::module_cx::ModuleCx;
use super::resolve::Found;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::ir::{self, CompiledExpr, Policy, Sandbox, Ty};
use crate::span::Span;
use crate::syntax::ast::{self, ExprKind, Field};
use std::sync::Arc;

impl ModuleCx<'_> {
    pub(super) fn policy_item(&mut self, item: &ast::ConfigItem) -> Policy {
        const FIELDS: &[&str] = &[
            "max_attempts",
            "max_parallel",
            "max_steps",
            "max_depth",
            "max_cost_usd",
            "max_tokens",
            "max_turns",
            "step_timeout",
            "run_timeout",
            "require_approval",
            "forbid",
            "sandbox",
            "notify",
            "cache",
            "description",
        ];
        self.known_fields(&item.fields, FIELDS, "a policy", |_| None);
        let base = match &item.base {
            Some(q) => {
                self.policy_stack.push(item.name.name.clone());
                let base = self.base_policy(q);
                self.policy_stack.pop();
                base.unwrap_or_else(Policy::builtin)
            }
            None => Policy::builtin(),
        };
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
                "max_turns" => {
                    policy.max_turns = self
                        .lit_int(field, 1, c)
                        .map(|n| n.min(i64::from(u32::MAX)) as u32)
                        .or(policy.max_turns)
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
                // A base's rules still apply: an extension can add to them,
                // never drop one (a forbid lost on the way would fail open).
                "require_approval" => {
                    policy.require_approval = self
                        .policy_rule(field)
                        .map(|own| self.either(base.require_approval.as_ref(), own))
                }
                "forbid" => {
                    policy.forbid = self
                        .policy_rule(field)
                        .map(|own| self.either(base.forbid.as_ref(), own))
                }
                "sandbox" => policy.sandbox = self.sandbox(field, &base.sandbox),
                "notify" => policy.notify = self.policy_notify(field, &base.notify),
                "cache" => policy.cache = self.lit_bool(field).or(policy.cache),
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

    /// The policy a `policy NAME: BASE { ... }` extends; a local one is checked
    /// first if it was not yet, and a chain that leads back is E0606.
    fn base_policy(&mut self, q: &ast::QualifiedName) -> Option<Arc<Policy>> {
        let Found::Local(name) = self.find(q, ItemKind::Policy)? else {
            return self.policy(q);
        };
        if let Some(p) = self.own.policies.get(&name) {
            return Some(p.clone());
        }
        if let Some(at) = self.policy_stack.iter().position(|n| *n == name) {
            let mut chain: Vec<String> = self.policy_stack[at..]
                .iter()
                .map(|n| n.to_string())
                .collect();
            chain.push(name.clone());
            let extending = self.policy_stack.last().cloned().unwrap_or_default();
            self.diags.push(
                Diagnostic::new(
                    Code::E0606,
                    self.file,
                    q.span,
                    format!("policy `{name}` extends itself: `{}`", chain.join(" -> ")),
                )
                .label(format!("`{extending}` extends `{name}` here"))
                .help("a policy cannot be its own base: remove one of the bases"),
            );
            return None;
        }
        let ix = self.m.items.get(&name)?.index;
        let ast::Item::Config(item) = &self.m.ast.items[ix] else {
            return None;
        };
        let policy = Arc::new(self.policy_item(item));
        self.own.policies.insert(name, policy.clone());
        Some(policy)
    }

    /// `base || own`, so the extended policy's rule keeps holding.
    fn either(&mut self, base: Option<&CompiledExpr>, own: CompiledExpr) -> CompiledExpr {
        let Some(base) = base else {
            return own;
        };
        let code = format!("({}) || ({})", base.code, own.code);
        let source = format!("({}) || ({})", base.source, own.source);
        self.compile_code(code, source, own.span, Ty::Bool)
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
    /// `notify { approvals: […], escalations: […], failures: […] }`: an
    /// extension adds to its base's targets, never drops one.
    fn policy_notify(&mut self, field: &Field, base: &ir::PolicyNotify) -> ir::PolicyNotify {
        let mut out = base.clone();
        let Some(expr) = self.value(field) else {
            return out;
        };
        let ExprKind::Map(entries) = &expr.kind else {
            self.lit_error(
                field,
                expr,
                "a block `{ approvals: [...], failures: [...] }`",
            );
            return out;
        };
        let sub: Vec<Field> = entries.iter().map(|(k, v)| map_field(k, v)).collect();
        self.known_fields(
            &sub,
            &["approvals", "escalations", "failures"],
            "`notify`",
            |_| None,
        );
        for f in &sub {
            let targets = self.notify_targets(f);
            let list = match f.key.name.as_str() {
                "approvals" => &mut out.approvals,
                "escalations" => &mut out.escalations,
                "failures" => &mut out.failures,
                _ => continue,
            };
            for t in targets {
                if !list.contains(&t) {
                    list.push(t);
                }
            }
        }
        out
    }

    pub fn sandbox(&mut self, field: &Field, base: &Sandbox) -> Sandbox {
        let mut sandbox = base.clone();
        let Some(expr) = self.value(field) else {
            return sandbox;
        };
        let ExprKind::Map(entries) = &expr.kind else {
            self.lit_error(field, expr, "a block `{ network: false, ... }`");
            return sandbox;
        };
        let sub: Vec<Field> = entries.iter().map(|(k, v)| map_field(k, v)).collect();
        self.known_fields(&sub, SANDBOX_FIELDS, "`sandbox`", |_| None);
        for f in &sub {
            if let Some(name) = LIMITS.iter().find(|n| **n == f.key.name)
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
        // Last, so it also covers limits this block writes: they are applied as
        // far as the machine can and journaled as missing, never refused.
        if let Some(f) = sub.iter().find(|f| f.key.name == "best_effort") {
            for name in self.limit_names(f) {
                sandbox.written.retain(|w| *w != name);
            }
        }
        sandbox
    }

    /// The limit names listed in `best_effort`.
    fn limit_names(&mut self, field: &Field) -> Vec<&'static str> {
        let Some(expr) = self.value(field) else {
            return Vec::new();
        };
        let ExprKind::List(items) = &expr.kind else {
            self.lit_error(
                field,
                expr,
                "a list of limit names such as `[\"processes\"]`",
            );
            return Vec::new();
        };
        let mut names = Vec::new();
        for item in items {
            let text = match &item.kind {
                ExprKind::Str(s) => s.value.clone(),
                _ => {
                    self.lit_error(field, item, "a limit name such as `\"processes\"`");
                    continue;
                }
            };
            match LIMITS.iter().find(|l| **l == text) {
                Some(name) => names.push(*name),
                None => {
                    let list = LIMITS.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E0309,
                            self.file,
                            item.span,
                            format!("`{text}` is not a sandbox limit"),
                        )
                        .label("`best_effort` lists limits of this block")
                        .maybe_help(
                            did_you_mean(&text, LIMITS.iter().copied())
                                .or_else(|| Some(format!("the limits are {}", list.join(", ")))),
                        ),
                    );
                }
            }
        }
        names
    }
}

/// The fields of a `sandbox` block: its limits, then `fallback` and `best_effort`.
const SANDBOX_FIELDS: &[&str] = &[
    "network",
    "memory",
    "cpu",
    "processes",
    "open_files",
    "file_size",
    "writable",
    "readable",
    "fallback",
    "best_effort",
];

/// The limits of a `sandbox` block (every field but `fallback` and `best_effort`).
const LIMITS: &[&str] = SANDBOX_FIELDS.split_at(SANDBOX_FIELDS.len() - 2).0;

/// One element of `step.commands`: a simple command of the parsed view.
fn command_ty() -> Ty {
    Ty::Record(Arc::new(ir::Record {
        name: Some("Command".into()),
        fields: vec![
            ("name".into(), Ty::String),
            ("subcommand".into(), Ty::String),
            ("args".into(), Ty::String.list_of()),
        ],
    }))
}

/// The scope of policy rules: `step` and its fields.
struct StepInfoScope {
    used: bool,
}

impl Scope for StepInfoScope {
    fn lookup(&mut self, name: &str, _span: Span, _diags: &mut Vec<Diagnostic>) -> Lookup {
        if name == "tool" {
            self.used = true;
            return Lookup::Found(Ty::Record(Arc::new(ir::Record {
                name: Some("ToolCall".into()),
                fields: vec![
                    ("name".into(), Ty::String),
                    ("args".into(), Ty::Json),
                    ("effect".into(), Ty::String),
                ],
            })));
        }
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
                ("commands".into(), command_ty().list_of()),
                ("parsed".into(), Ty::String),
                ("opaque".into(), Ty::Bool),
                ("cwd".into(), Ty::String),
                ("model".into(), Ty::String),
                ("prompt".into(), Ty::String),
                ("attempt".into(), Ty::Int),
            ],
        })))
    }

    fn names(&self) -> Vec<String> {
        vec!["step".into(), "tool".into()]
    }
}
