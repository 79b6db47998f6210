//! Resolving written types (`[Plan]?`) to [`Ty`].

use super::module::ItemKind;
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{Record, Ty};
use crate::syntax::ast::{self, TypeExpr, TypeExprKind};
use std::collections::HashSet;
use std::sync::Arc;

/// The built-in type names.
pub const BUILTIN_TYPES: &[&str] = &[
    "string", "int", "float", "bool", "path", "duration", "size", "json",
];

fn builtin(name: &str) -> Option<Ty> {
    Some(match name {
        "string" => Ty::String,
        "int" => Ty::Int,
        "float" => Ty::Float,
        "bool" => Ty::Bool,
        "path" => Ty::Path,
        "duration" => Ty::Duration,
        "size" => Ty::Size,
        "json" => Ty::Json,
        _ => return None,
    })
}

impl ModuleCx<'_> {
    /// Resolves a written type; unknown names are reported and become [`Ty::Error`].
    pub fn resolve_type(&mut self, te: &TypeExpr) -> Ty {
        match &te.kind {
            TypeExprKind::Named(q) => {
                if q.namespace.is_none()
                    && let Some(ty) = builtin(&q.name.name)
                {
                    return ty;
                }
                self.named_type(q)
            }
            TypeExprKind::List(inner) => self.resolve_type(inner).list_of(),
            TypeExprKind::Optional(inner) => Ty::Optional(Box::new(self.resolve_type(inner))),
            TypeExprKind::Union(options) => {
                let mut values: Vec<String> = Vec::new();
                let mut seen: HashSet<&str> = HashSet::with_capacity(options.len());
                for lit in options {
                    if !seen.insert(&lit.value) {
                        self.diags.push(
                            Diagnostic::new(
                                Code::E0213,
                                self.file,
                                lit.span,
                                format!("`\"{}\"` appears twice in this union", lit.value),
                            )
                            .label("duplicate"),
                        );
                        continue;
                    }
                    values.push(lit.value.clone());
                }
                Ty::Union(values.into())
            }
            TypeExprKind::Record(fields) => Ty::Record(Arc::new(self.record(None, fields))),
        }
    }

    /// The fields of a record type, with duplicates reported.
    pub fn record(&mut self, name: Option<String>, fields: &[ast::RecordField]) -> Record {
        let mut out: Vec<(String, Ty)> = Vec::new();
        for field in fields {
            if let Some(prev) = fields
                .iter()
                .take_while(|f| !std::ptr::eq(*f, field))
                .find(|f| f.name.name == field.name.name)
            {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0213,
                        self.file,
                        field.name.span,
                        format!("field `{}` is declared twice", field.name.name),
                    )
                    .label("second declaration")
                    .with(prev.name.span, "first declaration"),
                );
                continue;
            }
            let ty = self.resolve_type(&field.ty);
            out.push((field.name.name.clone(), ty));
        }
        Record { name, fields: out }
    }

    fn named_type(&mut self, q: &ast::QualifiedName) -> Ty {
        let Some(found) = self.find(q, ItemKind::Type) else {
            return Ty::Error;
        };
        match found {
            super::resolve::Found::Remote(m, name) => self.others[m]
                .types
                .get(&name)
                .cloned()
                .unwrap_or(Ty::Error),
            super::resolve::Found::Local(name) => self.local_type(&name, q),
        }
    }

    /// Resolves a `type` item of this module (memoized; recursion is an error).
    pub fn local_type(&mut self, name: &str, at: &ast::QualifiedName) -> Ty {
        if let Some(ty) = self.own.types.get(name) {
            return ty.clone();
        }
        if self.resolving.iter().any(|n| n == name) {
            self.diags.push(
                Diagnostic::new(
                    Code::E0207,
                    self.file,
                    at.span,
                    format!("type `{name}` refers to itself"),
                )
                .label("recursive reference")
                .help("recursive types are not supported; use `json` for tree-shaped data"),
            );
            return Ty::Error;
        }
        let Some(def) = self
            .m
            .items
            .get(name)
            .and_then(|ix| match &self.m.ast.items[ix.index] {
                ast::Item::Type(t) => Some(t),
                _ => None,
            })
        else {
            return Ty::Error;
        };
        self.resolving.push(name.to_string());
        let record = self.record(Some(name.to_string()), &def.fields);
        self.resolving.pop();
        let ty = Ty::Record(Arc::new(record));
        self.own.types.insert(name.to_string(), ty.clone());
        ty
    }

    /// Type names in scope, for suggestions.
    pub fn type_names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN_TYPES.iter().map(|s| s.to_string()).collect();
        names.extend(self.item_names(ItemKind::Type));
        names
    }
}
