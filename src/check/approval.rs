//! The fields of an `approval` step: who may decide, how many must, and the form they fill in.

use super::module_cx::ModuleCx;
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{NotifyKind, NotifyTarget, StepKind, Ty, UrlSource};
use crate::span::Span;
use crate::syntax::ast::{self, ExprKind, Field, FieldValue};

/// The prefix of an approver entry that names a group rather than a person.
const GROUP: &str = "group:";

impl<'a> ModuleCx<'a> {
    /// The record type of an approval's `form` (E0301 when it is not a record).
    pub(super) fn form_type(&mut self, step: &ast::StepDef) -> Option<Ty> {
        let field = step.fields.iter().find(|f| f.key.name == "form")?;
        let (ty, span) = match &field.value {
            FieldValue::Type(t) => (self.resolve_type(t), t.span),
            FieldValue::Expr(e) => (Ty::Error, e.span),
        };
        match ty {
            Ty::Record(_) => Some(ty),
            Ty::Error if matches!(field.value, FieldValue::Type(_)) => Some(Ty::Error),
            other => {
                let found = match &field.value {
                    FieldValue::Type(_) => format!("`{other}`"),
                    FieldValue::Expr(_) => "a value".to_string(),
                };
                self.diags.push(
                    Diagnostic::new(
                        Code::E0301,
                        self.file,
                        span,
                        format!("`form` expects a record type, found {found}"),
                    )
                    .label("not a record type")
                    .help("write `form: { reason: string, window: string? }` or name a `type`"),
                );
                None
            }
        }
    }

    pub(super) fn approval_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> StepKind {
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let prompt = self.required_text(def, "prompt", "prompt: \"Deploy?\"", id, sk);
        let timeout_ms = get("timeout").and_then(|f| match &f.value {
            FieldValue::Expr(ast::Expr {
                kind: ExprKind::Duration(ms),
                ..
            }) => Some(*ms),
            _ => None,
        });
        let default_approve = get("default")
            .and_then(|f| self.word(f, &["reject", "approve"]))
            .as_deref()
            == Some("approve");
        let approvers = get("approvers")
            .map(|f| self.approvers(f))
            .unwrap_or_default();
        let required = get("required")
            .and_then(|f| self.lit_int(f, 1, Code::E0318))
            .map_or(1, |n| n.min(u32::MAX as i64) as u32);
        if let Some(f) = get("required") {
            self.required_fits(f, required, &approvers);
        }
        let self_approval = get("self_approval")
            .and_then(|f| self.lit_bool(f))
            .unwrap_or(approvers.is_empty());
        let form = match &sk.state.nodes[id].ty {
            Ty::Record(rec) => rec.field("form").cloned(),
            _ => None,
        };
        let notify = get("notify")
            .map(|f| self.notify_targets(f))
            .unwrap_or_default();
        StepKind::Approval {
            prompt,
            timeout_ms,
            default_approve,
            approvers,
            required,
            self_approval,
            form,
            notify,
        }
    }

    /// `notify: [webhook(URL), slack(URL)]`, each URL a string, `env("NAME")` or `secret("NAME")`.
    pub(super) fn notify_targets(&mut self, field: &Field) -> Vec<NotifyTarget> {
        let Some(expr) = self.value(field) else {
            return Vec::new();
        };
        let items: Vec<&ast::Expr> = match &expr.kind {
            ExprKind::List(items) => items.iter().collect(),
            _ => vec![expr],
        };
        let mut out = Vec::new();
        for item in items {
            match notify_target(item) {
                Ok(t) => out.push(t),
                Err((span, why)) => self.diags.push(
                    Diagnostic::new(Code::E0301, self.file, span, why)
                        .label("not a notification target")
                        .help("write `notify: [webhook(env(\"DEPLOY_HOOK\")), slack(secret(\"SLACK_URL\"))]`"),
                ),
            }
        }
        out
    }

    /// The `approvers` list: person names and `group:NAME`, none empty.
    fn approvers(&mut self, field: &Field) -> Vec<String> {
        let Some(names) = self.lit_strings(field) else {
            return Vec::new();
        };
        let items: Vec<&ast::Expr> = match self.value(field).map(|e| &e.kind) {
            Some(ExprKind::List(items)) => items
                .iter()
                .filter(|e| matches!(e.kind, ExprKind::Str(_)))
                .collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(names.len());
        for (name, expr) in names.into_iter().zip(items) {
            let person = name.strip_prefix(GROUP).unwrap_or(&name);
            if person.trim().is_empty() || person.trim() != person {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0318,
                        self.file,
                        expr.span,
                        format!("approver `{name}` names nobody"),
                    )
                    .label("not a person or a group")
                    .help("write a person's name, such as `\"alice\"`, or `\"group:release\"`"),
                );
            } else if out.contains(&name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0318,
                        self.file,
                        expr.span,
                        format!("approver `{name}` is listed twice"),
                    )
                    .label("duplicate")
                    .help("list each approver once"),
                );
            } else {
                out.push(name);
            }
        }
        out
    }

    /// `required` cannot exceed the named people when no group can supply more.
    fn required_fits(&mut self, field: &Field, required: u32, approvers: &[String]) {
        if approvers.is_empty() || approvers.iter().any(|a| a.starts_with(GROUP)) {
            return;
        }
        let people = approvers.len();
        if required as usize <= people {
            return;
        }
        let Some(expr) = self.value(field) else {
            return;
        };
        self.diags.push(
            Diagnostic::new(
                Code::E0318,
                self.file,
                expr.span,
                format!(
                    "`required: {required}` needs more approvers than the {people} listed in `approvers`"
                ),
            )
            .label("can never be met")
            .help(format!(
                "lower it to at most {people}, or add people or a `group:NAME` to `approvers`"
            )),
        );
    }
}

/// One `webhook(…)` or `slack(…)`.
fn notify_target(e: &ast::Expr) -> Result<NotifyTarget, (Span, String)> {
    let ExprKind::Call(f, args) = &e.kind else {
        return Err((
            e.span,
            "a notification target is `webhook(URL)` or `slack(URL)`".into(),
        ));
    };
    let kind = match f.name.as_str() {
        "webhook" => NotifyKind::Webhook,
        "slack" => NotifyKind::Slack,
        other => {
            return Err((
                e.span,
                format!("`{other}(…)` is not a notification target; use `webhook` or `slack`"),
            ));
        }
    };
    let [arg] = args.as_slice() else {
        return Err((e.span, format!("`{}` takes one URL", f.name)));
    };
    let url = match &arg.kind {
        ExprKind::Str(s) if s.value.starts_with("https://") || s.value.starts_with("http://") => {
            UrlSource::Url(s.value.clone())
        }
        ExprKind::Str(_) => {
            return Err((
                arg.span,
                "a notification URL starts with `https://` or `http://`".into(),
            ));
        }
        ExprKind::Call(g, inner) => match (g.name.as_str(), inner.as_slice()) {
            (
                "env",
                [
                    ast::Expr {
                        kind: ExprKind::Str(n),
                        ..
                    },
                ],
            ) => UrlSource::Env(n.value.clone()),
            (
                "secret",
                [
                    ast::Expr {
                        kind: ExprKind::Str(n),
                        ..
                    },
                ],
            ) => UrlSource::Secret(n.value.clone()),
            _ => {
                return Err((
                    arg.span,
                    "the URL is a string, `env(\"NAME\")` or `secret(\"NAME\")`".into(),
                ));
            }
        },
        _ => {
            return Err((
                arg.span,
                "the URL is a string, `env(\"NAME\")` or `secret(\"NAME\")`".into(),
            ));
        }
    };
    Ok(NotifyTarget { kind, url })
}
