//! Name resolution across namespaces: `name` or `ns.name` to a model, policy, type or skill.

use super::literals::describe;
use super::module::{ItemKind, ModuleId, SkillSig};
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::ir::{self, Policy};
use crate::syntax::ast::{self, Expr, ExprKind, QualifiedName};
use std::sync::Arc;

/// Where a resolved name lives.
pub enum Found {
    /// In this module, by name.
    Local(String),
    /// In an imported module, by name.
    Remote(ModuleId, String),
}

impl ModuleCx<'_> {
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
}
