//! `trigger` items: `cron`, `watch`, `webhook` and the skill call they `run`.

use super::expr::ExprChecker;
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic};
use crate::ir;
use crate::syntax::ast::{self, ExprKind, Field, QualifiedName};

impl ModuleCx<'_> {
    pub(super) fn trigger_item(&mut self, item: &ast::ConfigItem) -> ir::Trigger {
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
}
