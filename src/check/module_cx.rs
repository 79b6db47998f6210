//! `ModuleCx`: the state of checking one module, and the order its items are checked in.

use super::module::{CallEdge, ItemKind, Module, ModuleId, Tables};
use crate::diag::{Code, Diagnostic, FileId};
use crate::ir::{CompiledExpr, Ty};
use crate::span::Span;
use crate::syntax::ast::{self, ConfigKind, Expr, QualifiedName};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

/// An AST with no statements and an empty function library, cloned (sharing
/// the library) to hold each compiled expression.
static EMPTY_AST: LazyLock<rhai::AST> = LazyLock::new(rhai::AST::empty);

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
    /// Policies being checked, each extending the next (cycle guard).
    pub policy_stack: Vec<String>,
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
            policy_stack: Vec::new(),
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
                        // A base is checked when what extends it needs it,
                        // which may be before its own turn.
                        let first = self.m.items.get(&c.name.name).is_some_and(|ix| {
                            matches!(&items[ix.index], ast::Item::Config(f) if std::ptr::eq(f, c))
                        });
                        if !(first && self.own.policies.contains_key(&c.name.name)) {
                            let policy = self.policy_item(c);
                            self.own
                                .policies
                                .insert(c.name.name.clone(), Arc::new(policy));
                        }
                        self.own.order.push((ItemKind::Policy, c.name.name.clone()));
                    }
                    ConfigKind::Mcp => self.mcp_item(c),
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
        let source = self.source(expr.span);
        self.compile_code(code, source, expr.span, ty)
    }

    /// Compiles generated rhai `code` (checked already) for the expression `source` at `span`.
    pub fn compile_code(
        &mut self,
        code: String,
        source: String,
        span: Span,
        ty: Ty,
    ) -> CompiledExpr {
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
                        span,
                        "expression is too complex to compile",
                    )
                    .label(err.to_string())
                    .help("split it into smaller expressions"),
                );
                rhai::AST::empty()
            }
        };
        CompiledExpr {
            source,
            code,
            ast: Arc::new(ast),
            ty,
            span,
        }
    }
}
