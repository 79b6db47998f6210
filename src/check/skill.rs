//! Checking a skill: its nodes, their dataflow, its `return`, and its IR.

use super::expr::ExprChecker;
use super::module::SkillSig;
use super::module_cx::ModuleCx;
use super::scope::{Absent, Mode, NodeDefRef, NodeInfo, NodeScope, SkillState, when_key};
use super::template::Templates;
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, OnFailure, Ty, Value};
use crate::syntax::ast::{self, Expr, ExprKind, NodeDef};
use std::collections::HashMap;
use std::sync::Arc;

/// Everything needed while checking one skill's nodes.
pub struct SkillCx<'a> {
    /// Names, nodes and edges.
    pub state: SkillState<'a>,
    /// The skill's templates.
    pub templates: Templates,
    /// The skill's signature.
    pub sig: Arc<SkillSig>,
}

impl<'a> ModuleCx<'a> {
    /// Checks a skill and compiles it.
    pub fn check_skill(&mut self, def: &'a ast::SkillDef, sig: &Arc<SkillSig>) -> ir::Skill {
        let mut sk = SkillCx {
            state: SkillState {
                file: self.file,
                nodes: Vec::new(),
                by_name: HashMap::new(),
                params: sig
                    .params
                    .iter()
                    .map(|(n, t, _)| (n.clone(), t.clone(), false))
                    .collect(),
                edges: Vec::new(),
                narrowed: HashMap::new(),
                recalls: HashMap::new(),
                in_defaults: false,
            },
            templates: Templates::new(),
            sig: sig.clone(),
        };
        self.known_fields(
            &def.body.fields,
            &["policy", "description", "effect"],
            "a skill",
            |k| {
                matches!(k, "max" | "parallel" | "attempts" | "after")
                    .then(|| format!("`{k}` belongs on a step or block, not on the skill"))
            },
        );
        let mut description = None;
        for field in &def.body.fields {
            if field.key.name == "description" {
                description = self.lit_string(field);
            }
        }
        let params = self.params(def, &mut sk);
        self.collect(&def.body, None, def, &mut sk);
        self.node_types(&mut sk);
        let mut nodes = Vec::with_capacity(sk.state.nodes.len());
        for id in 0..sk.state.nodes.len() {
            nodes.push(self.check_node(id, &mut sk));
        }
        let output = self.returns(def, &mut sk);
        self.unused(def, &sk);
        let (graph, bodies) = super::graph::build(self, &sk.state);
        for (id, body) in bodies {
            match &mut nodes[id].kind {
                ir::NodeKind::Loop { body: b, .. } | ir::NodeKind::For { body: b, .. } => *b = body,
                ir::NodeKind::Step(_) => {}
            }
        }
        ir::Skill {
            key: sig.key.clone(),
            name: def.name.name.clone(),
            description,
            params,
            returns: sig.ret.clone(),
            output,
            policy: sig.policy.clone(),
            nodes,
            graph,
            templates: Arc::new(sk.templates.into_env()),
        }
    }

    fn params(&mut self, def: &ast::SkillDef, sk: &mut SkillCx<'a>) -> Vec<ir::Param> {
        let mut out = Vec::new();
        sk.state.in_defaults = true;
        for p in &def.params {
            let Some(ty) = sk
                .sig
                .params
                .iter()
                .find(|(n, _, _)| *n == p.name.name)
                .map(|(_, t, _)| t.clone())
            else {
                continue;
            };
            let default = p.default.as_ref().map(|d| {
                let (value, _) = self.data_value(
                    d,
                    sk,
                    None,
                    Mode::Plain,
                    Some(&ty),
                    &format!("the default of `{}`", p.name.name),
                );
                value
            });
            if out.iter().all(|o: &ir::Param| o.name != p.name.name) {
                out.push(ir::Param {
                    name: p.name.name.clone(),
                    ty,
                    default,
                });
            }
        }
        sk.state.in_defaults = false;
        out
    }

    fn collect(
        &mut self,
        body: &'a ast::Body,
        parent: Option<usize>,
        def: &ast::SkillDef,
        sk: &mut SkillCx<'a>,
    ) {
        if parent.is_some() {
            for ret in &body.returns {
                self.diags.push(
                    Diagnostic::new(Code::E0313, self.file, ret.span, "`return` must be at the top level of the skill")
                        .label("inside a block")
                        .help("move it after the block; inner step names refer to the last iteration there"),
                );
            }
        }
        for node in &body.nodes {
            let (absent, when_key) = match node {
                NodeDef::Step(s) => (
                    Absent::of(&s.fields, s.kind.name == "approval", false),
                    when_key(&s.fields, self.text),
                ),
                NodeDef::Loop(l) => (
                    Absent::of(&l.body.fields, false, false),
                    when_key(&l.body.fields, self.text),
                ),
                NodeDef::For(f) => (
                    Absent::of(&f.body.fields, false, true),
                    when_key(&f.body.fields, self.text),
                ),
            };
            let (name, span, def_ref, inner) = match node {
                NodeDef::Step(s) => (s.name.name.clone(), s.name.span, NodeDefRef::Step(s), None),
                NodeDef::Loop(l) => (
                    l.name.name.clone(),
                    l.name.span,
                    NodeDefRef::Loop(l),
                    Some(&l.body),
                ),
                NodeDef::For(f) => (
                    format!("for_{}", f.var.name),
                    f.var.span,
                    NodeDefRef::For(f),
                    Some(&f.body),
                ),
            };
            let name =
                if matches!(def_ref, NodeDefRef::For(_)) && sk.state.by_name.contains_key(&name) {
                    format!("{name}_{}", sk.state.nodes.len())
                } else {
                    name
                };
            if !matches!(def_ref, NodeDefRef::For(_)) {
                if let Some(&prev) = sk.state.by_name.get(&name) {
                    self.diags.push(
                        Diagnostic::new(Code::E0203, self.file, span, format!("`{name}` is defined more than once in skill `{}`", def.name.name))
                            .label("second definition")
                            .with(sk.state.nodes[prev].name_span, "first definition")
                            .help("step and block names are unique within a skill, loops and for blocks included"),
                    );
                    continue;
                }
                if let Some(p) = def.params.iter().find(|p| p.name.name == name) {
                    self.diags.push(
                        Diagnostic::new(
                            Code::E0203,
                            self.file,
                            span,
                            format!("`{name}` is both a parameter and a step"),
                        )
                        .label("step")
                        .with(p.name.span, "parameter")
                        .help("rename the step"),
                    );
                    // The step shadows the parameter from here on; do not also call it unused.
                    if let Some(param) = sk.state.params.iter_mut().find(|q| q.0 == name) {
                        param.2 = true;
                    }
                }
            }
            let id = sk.state.nodes.len();
            sk.state.by_name.insert(name.clone(), id);
            sk.state.nodes.push(NodeInfo {
                name,
                name_span: span,
                parent,
                def: def_ref,
                ty: Ty::Error,
                reads: 0,
                absent,
                when_key,
            });
            if let Some(inner) = inner {
                self.known_block_fields(node, inner);
                self.collect(inner, Some(id), def, sk);
            }
        }
    }

    fn known_block_fields(&mut self, node: &NodeDef, body: &ast::Body) {
        let (allowed, what): (&[&str], &str) = match node {
            NodeDef::Loop(_) => (
                &["max", "after", "when", "on_failure", "description"],
                "a `loop` block",
            ),
            _ => (
                &["parallel", "after", "when", "on_failure", "description"],
                "a `for` block",
            ),
        };
        self.known_fields(&body.fields, allowed, what, |k| {
            matches!(k, "attempts" | "timeout" | "accept")
                .then(|| format!("`{k}` belongs on the steps inside the block"))
        });
    }

    /// Result types of steps, loop scopes, and element types of `for` blocks.
    fn node_types(&mut self, sk: &mut SkillCx<'a>) {
        for id in 0..sk.state.nodes.len() {
            let ty = match sk.state.nodes[id].def {
                NodeDefRef::Step(step) => self.result_type(step),
                NodeDefRef::Loop(_) => {
                    Ty::record(vec![("feedback", Ty::String), ("iteration", Ty::Int)])
                }
                NodeDefRef::For(f) => {
                    let mut scope = NodeScope {
                        state: &mut sk.state,
                        at: Some(id),
                        mode: Mode::Header,
                    };
                    let mut checker = ExprChecker {
                        file: self.file,
                        diags: &mut self.diags,
                    };
                    match checker.check(&f.iter, &mut scope) {
                        Ty::List(elem) => *elem,
                        Ty::Json | Ty::Error => Ty::Json,
                        Ty::Optional(inner) if matches!(*inner, Ty::List(_)) => match *inner {
                            Ty::List(elem) => *elem,
                            _ => Ty::Json,
                        },
                        other => {
                            let help = other.is_stringy().then(|| {
                                format!(
                                    "split the text into lines: `for {} in {}.lines()`",
                                    f.var.name,
                                    super::expr::base_text(&f.iter)
                                )
                            });
                            self.diags.push(
                                Diagnostic::new(
                                    Code::E0314,
                                    self.file,
                                    f.iter.span,
                                    format!("`for` needs a list, found `{other}`"),
                                )
                                .label(format!("this is `{other}`"))
                                .maybe_help(help),
                            );
                            Ty::Error
                        }
                    }
                }
            };
            sk.state.nodes[id].ty = ty;
        }
    }

    fn check_node(&mut self, id: usize, sk: &mut SkillCx<'a>) -> ir::Node {
        let info = &sk.state.nodes[id];
        let (name, parent, span) = (info.name.clone(), info.parent, info.name_span);
        let def = info.def;
        let (fields, header_mode) = match def {
            NodeDefRef::Step(s) => (&s.fields, Mode::Plain),
            NodeDefRef::Loop(l) => (&l.body.fields, Mode::Header),
            NodeDefRef::For(f) => (&f.body.fields, Mode::Header),
        };
        let mut when = None;
        let mut on_failure = OnFailure::Fail;
        let mut description = None;
        for field in fields {
            match field.key.name.as_str() {
                "when" => when = self.when(field, id, header_mode, sk),
                "on_failure" => {
                    on_failure = match self
                        .word(field, &["fail", "continue", "escalate"])
                        .as_deref()
                    {
                        Some("continue") => OnFailure::Continue,
                        Some("escalate") => OnFailure::Escalate,
                        _ => OnFailure::Fail,
                    }
                }
                "description" => {
                    if let Some(expr) = self.value(field) {
                        let mode = if header_mode == Mode::Plain {
                            Mode::Template
                        } else {
                            header_mode
                        };
                        let (v, _) = self.data_value(
                            expr,
                            sk,
                            Some(id),
                            mode,
                            Some(&Ty::String),
                            "`description`",
                        );
                        description = Some(v);
                    }
                }
                "after" => self.after(field, id, sk),
                _ => {}
            }
        }
        let kind = match def {
            NodeDefRef::Step(step) => ir::NodeKind::Step(Box::new(self.step(id, step, sk))),
            NodeDefRef::Loop(l) => {
                let mut max = 1;
                match l.body.fields.iter().find(|f| f.key.name == "max") {
                    Some(field) => {
                        if let Some(n) = self.lit_int(field, 1, Code::E0318) {
                            max = n.min(u32::MAX as i64) as u32;
                            self.attempt_cap(field, max, "loop", &sk.sig.policy);
                        }
                    }
                    None => self.missing(span, &format!("loop `{name}`"), "max", "max: 3"),
                }
                ir::NodeKind::Loop {
                    max,
                    body: ir::Graph::default(),
                }
            }
            NodeDefRef::For(f) => {
                let mut parallel = sk.sig.policy.max_parallel;
                if let Some(field) = f.body.fields.iter().find(|f| f.key.name == "parallel")
                    && let Some(n) = self.lit_int(field, 1, Code::E0318)
                {
                    parallel = n.min(u32::MAX as i64) as u32;
                }
                // Type-checked in `node_types`; only compiled here.
                let elem = sk.state.nodes[id].ty.clone();
                let iter = self.compile(&f.iter, elem.clone().list_of());
                ir::NodeKind::For {
                    var: f.var.name.clone(),
                    iter,
                    elem,
                    parallel,
                    body: ir::Graph::default(),
                }
            }
        };
        ir::Node {
            id,
            name,
            parent,
            when,
            on_failure,
            description,
            kind,
            span,
        }
    }

    fn when(
        &mut self,
        field: &ast::Field,
        id: usize,
        mode: Mode,
        sk: &mut SkillCx<'a>,
    ) -> Option<ir::CompiledExpr> {
        let expr = self.value(field)?;
        if matches!(expr.kind, ExprKind::Bool(false)) {
            self.diags.push(
                Diagnostic::new(
                    Code::W0004,
                    self.file,
                    expr.span,
                    format!("`{}` can never run", sk.state.nodes[id].name),
                )
                .label("`when: false` always skips it")
                .help("remove the node, or give a real condition"),
            );
        }
        let mut scope = NodeScope {
            state: &mut sk.state,
            at: Some(id),
            mode,
        };
        let mut checker = ExprChecker {
            file: self.file,
            diags: &mut self.diags,
        };
        checker.condition(expr, &mut scope, "`when`");
        let present = super::expr::proven_present(expr, true);
        if !present.is_empty() {
            sk.state.narrowed.insert(id, present);
        }
        Some(self.compile(expr, Ty::Bool))
    }

    fn after(&mut self, field: &ast::Field, id: usize, sk: &mut SkillCx<'a>) {
        let Some(expr) = self.value(field) else {
            return;
        };
        let items: Vec<&Expr> = match &expr.kind {
            ExprKind::List(items) => items.iter().collect(),
            ExprKind::Name(_) => vec![expr],
            _ => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        expr.span,
                        "`after` expects a list of step names",
                    )
                    .label("not a list of names")
                    .help("write `after: [build, test]`"),
                );
                return;
            }
        };
        for item in items {
            let ExprKind::Name(name) = &item.kind else {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        item.span,
                        "`after` expects step names",
                    )
                    .label("not a name")
                    .maybe_help(match &item.kind {
                        ExprKind::Str(s) => {
                            Some(format!("write the name without quotes: `{}`", s.value))
                        }
                        _ => None,
                    }),
                );
                continue;
            };
            match sk.state.by_name.get(name) {
                Some(&target) => {
                    sk.state
                        .depend(target, Some(id), item.span, false, &mut self.diags)
                }
                None => {
                    let names: Vec<&str> = sk
                        .state
                        .nodes
                        .iter()
                        .filter(|n| !matches!(n.def, NodeDefRef::For(_)))
                        .map(|n| n.name.as_str())
                        .collect();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E0503,
                            self.file,
                            item.span,
                            format!("`after` names unknown step `{name}`"),
                        )
                        .label("no step or block of this name in the skill")
                        .maybe_help(crate::diag::did_you_mean(name, names)),
                    );
                }
            }
        }
    }

    /// Checks an attempts or loop `max` against the policy (E0601).
    pub fn attempt_cap(&mut self, field: &ast::Field, n: u32, what: &str, policy: &ir::Policy) {
        if n > policy.max_attempts {
            self.diags.push(
                Diagnostic::new(
                    Code::E0601,
                    self.file,
                    field.span,
                    format!(
                        "{what} asks for {n} attempts, over `max_attempts` {} of policy `{}`",
                        policy.max_attempts, policy.name
                    ),
                )
                .label("exceeds the policy cap")
                .help(format!(
                    "lower it to at most {}, or use a policy that allows more",
                    policy.max_attempts
                )),
            );
        }
    }

    /// A value built at run time: strings are templates, lists and maps recurse, the rest are expressions.
    pub fn data_value(
        &mut self,
        expr: &Expr,
        sk: &mut SkillCx<'a>,
        at: Option<usize>,
        mode: Mode,
        want: Option<&Ty>,
        what: &str,
    ) -> (Value, Ty) {
        let (value, ty) = match &expr.kind {
            ExprKind::Str(lit) => {
                let mut scope = NodeScope {
                    state: &mut sk.state,
                    at,
                    mode: if mode == Mode::Plain {
                        Mode::Template
                    } else {
                        mode
                    },
                };
                (
                    self.template(&mut sk.templates, lit, &mut scope),
                    Ty::String,
                )
            }
            ExprKind::List(items) => {
                let elem_want = match want.map(Ty::strip_optional) {
                    Some(Ty::List(e)) => Some((**e).clone()),
                    _ => None,
                };
                let mut values = Vec::new();
                let mut elem = None;
                for item in items {
                    let (v, t) = self.data_value(item, sk, at, mode, elem_want.as_ref(), what);
                    values.push(v);
                    if elem.is_none() || matches!(elem, Some(Ty::Error | Ty::Json)) {
                        elem = Some(t);
                    }
                }
                (Value::List(values), elem.unwrap_or(Ty::Error).list_of())
            }
            ExprKind::Map(entries) => {
                let record = match want.map(Ty::strip_optional) {
                    Some(Ty::Record(r)) => Some(r.clone()),
                    _ => None,
                };
                let mut values = Vec::new();
                let mut fields = Vec::new();
                for (key, value) in entries {
                    let field_want = record.as_ref().and_then(|r| r.field(&key.name)).cloned();
                    let (v, t) = self.data_value(
                        value,
                        sk,
                        at,
                        mode,
                        field_want.as_ref(),
                        &format!("field `{}`", key.name),
                    );
                    values.push((key.name.clone(), v));
                    fields.push((key.name.clone(), t));
                }
                (
                    Value::Map(values),
                    Ty::Record(Arc::new(ir::Record { name: None, fields })),
                )
            }
            _ => {
                let mut scope = NodeScope {
                    state: &mut sk.state,
                    at,
                    mode,
                };
                let mut checker = ExprChecker {
                    file: self.file,
                    diags: &mut self.diags,
                };
                let ty = checker.check(expr, &mut scope);
                let value = match &expr.kind {
                    ExprKind::Int(n) => Value::Const((*n).into()),
                    ExprKind::Bool(b) => Value::Const((*b).into()),
                    ExprKind::Duration(n) | ExprKind::Size(n) => Value::Const((*n).into()),
                    ExprKind::Float(f) => Value::Const(
                        serde_json::Number::from_f64(*f)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                    ),
                    _ => Value::Expr(self.compile(expr, ty.clone())),
                };
                (value, ty)
            }
        };
        if let Some(want) = want
            && !matches!(expr.kind, ExprKind::List(_) | ExprKind::Map(_))
        {
            let mut checker = ExprChecker {
                file: self.file,
                diags: &mut self.diags,
            };
            checker.require(expr, &ty, want, what);
        }
        (value, ty)
    }

    fn returns(&mut self, def: &ast::SkillDef, sk: &mut SkillCx<'a>) -> Option<Value> {
        let returns = &def.body.returns;
        for extra in returns.iter().skip(1) {
            self.diags.push(
                Diagnostic::new(
                    Code::E0313,
                    self.file,
                    extra.span,
                    "a skill has at most one `return`",
                )
                .label("second `return`")
                .with(returns[0].span, "first `return`")
                .help("combine the values into one record: `return { a: ..., b: ... }`"),
            );
        }
        let Some(expr) = returns.first() else {
            if let Some(ret) = &sk.sig.ret {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0313,
                        self.file,
                        def.name.span,
                        format!(
                            "skill `{}` declares `-> {ret}` but has no `return`",
                            def.name.name
                        ),
                    )
                    .label("no `return` in this skill")
                    .help(
                        "add `return { ... }` at the end of the skill, or remove the result type",
                    ),
                );
            }
            return None;
        };
        let mut calls = Vec::new();
        super::fields::secret_calls(expr, &mut calls);
        for span in calls {
            self.secret_flow(span, "the `return`", false);
        }
        let errors_before = self.diags.len();
        let (value, ty) = self.data_value(expr, sk, None, Mode::Plain, None, "the `return`");
        if let Some(ret) = &sk.sig.ret
            && self.diags.len() == errors_before
            && !ty.fits(ret)
        {
            let detail = mismatch_detail(&ty, ret).unwrap_or_else(|| format!("found `{ty}`"));
            self.diags.push(
                Diagnostic::new(
                    Code::E0313,
                    self.file,
                    expr.span,
                    format!("`return` does not match the declared type `{ret}`: {detail}"),
                )
                .label(format!("this is `{ty}`"))
                .help(format!("the skill declares `-> {ret}`")),
            );
        }
        Some(value)
    }

    fn unused(&mut self, def: &ast::SkillDef, sk: &SkillCx<'a>) {
        for (p, (name, _, used)) in def.params.iter().zip(&sk.state.params) {
            if !used && !name.starts_with('_') {
                self.diags.push(
                    Diagnostic::new(
                        Code::W0003,
                        self.file,
                        p.name.span,
                        format!("unused parameter `{name}`"),
                    )
                    .label("never read")
                    .help(format!(
                        "remove it, or name it `_{name}` if it is kept on purpose"
                    )),
                );
            }
        }
        for node in &sk.state.nodes {
            let NodeDefRef::Step(step) = node.def else {
                continue;
            };
            let has_output = step.fields.iter().any(|f| f.key.name == "output");
            let pure = matches!(step.kind.name.as_str(), "llm" | "script");
            if node.reads == 0 && (pure || has_output) {
                self.diags.push(
                    Diagnostic::new(
                        Code::W0001,
                        self.file,
                        node.name_span,
                        format!("the result of step `{}` is never used", node.name),
                    )
                    .label(if has_output {
                        "its `output` is never read"
                    } else {
                        "nothing reads its result"
                    })
                    .help(
                        "read it in a later step, a template or the `return`, or remove the step",
                    ),
                );
            }
        }
    }
}

/// "field `passed` is `string`, expected `bool`" for records.
fn mismatch_detail(have: &Ty, want: &Ty) -> Option<String> {
    let (Ty::Record(h), Ty::Record(w)) = (have.strip_optional(), want.strip_optional()) else {
        return None;
    };
    for (name, wt) in &w.fields {
        match h.field(name) {
            None if !matches!(wt, Ty::Optional(_)) => {
                return Some(format!("field `{name}` is missing"));
            }
            Some(ht) if !ht.fits(wt) => {
                return Some(format!("field `{name}` is `{ht}`, expected `{wt}`"));
            }
            _ => {}
        }
    }
    None
}
