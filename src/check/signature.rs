//! Skill signatures: parameters, return type and policy, known before any skill body is checked.

use super::module::{ItemKind, SkillSig};
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{Policy, Ty};
use crate::syntax::ast;

impl ModuleCx<'_> {
    pub(super) fn skill_sig(&mut self, def: &ast::SkillDef) -> SkillSig {
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
        let text = |k: &str| {
            def.body
                .fields
                .iter()
                .find(|f| f.key.name == k)
                .and_then(|f| match &f.value {
                    ast::FieldValue::Expr(ast::Expr {
                        kind: ast::ExprKind::Str(s),
                        ..
                    }) => Some(s.value.clone()),
                    _ => None,
                })
        };
        let effect = match def.body.fields.iter().find(|f| f.key.name == "effect") {
            Some(f) => self
                .word(f, &["read", "idempotent", "write"])
                .and_then(|w| super::agent::effect_of(&w)),
            None => None,
        };
        SkillSig {
            key: format!("{}{}", self.key_prefix, def.name.name),
            name: def.name.name.clone(),
            params,
            ret,
            description: text("description"),
            effect,
            policy,
            file: self.file,
            span: def.name.span,
        }
    }
}
