//! `trigger` items: `cron`, `watch`, `webhook`, their options, and the skill call they `run`.

use super::expr::{ExprChecker, Lookup, Scope};
use super::module_cx::ModuleCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, Catchup, Overlap, TriggerSource, Ty, Verify};
use crate::span::Span;
use crate::syntax::ast::{self, ExprKind, Field, QualifiedName};

/// Fields every trigger takes.
const COMMON: &[&str] = &["run", "description", "overlap"];
/// Fields of each source, by the field that names it.
const SOURCES: &[(&str, &[&str])] = &[
    (
        "cron",
        &["cron", "timezone", "catchup", "catchup_window", "jitter"],
    ),
    ("watch", &["watch", "debounce"]),
    (
        "webhook",
        &[
            "webhook",
            "verify",
            "secret",
            "dedup",
            "max_body",
            "tolerance",
        ],
    ),
];

/// Default `catchup_window`: a day.
pub const CATCHUP_WINDOW_MS: u64 = 24 * 3_600_000;
/// Default `debounce` of a watch trigger.
pub const DEBOUNCE_MS: u64 = 1_000;
/// Default largest webhook body: 1 MiB.
pub const MAX_BODY: u64 = 1 << 20;
/// Default Standard Webhooks timestamp tolerance: 5 minutes.
pub const TOLERANCE_MS: u64 = 5 * 60_000;

/// The type of `event` for a trigger source (language §10).
pub fn event_type(source: &TriggerSource) -> Ty {
    match source {
        TriggerSource::Cron { .. } => Ty::record(vec![("scheduled_at", Ty::String)]),
        TriggerSource::Watch { .. } => Ty::record(vec![("paths", Ty::Path.list_of())]),
        TriggerSource::Webhook { .. } => Ty::record(vec![
            ("headers", Ty::Json),
            ("body", Ty::Json),
            ("received_at", Ty::String),
        ]),
        TriggerSource::Missing => Ty::Error,
    }
}

/// `event`, and nothing else, is in scope in `run` arguments.
struct EventScope {
    ty: Ty,
}

impl Scope for EventScope {
    fn lookup(&mut self, name: &str, _span: Span, _diags: &mut Vec<Diagnostic>) -> Lookup {
        if name == "event" {
            Lookup::Found(self.ty.clone())
        } else {
            Lookup::Missing
        }
    }

    fn names(&self) -> Vec<String> {
        vec!["event".into()]
    }
}

impl ModuleCx<'_> {
    pub(super) fn trigger_item(&mut self, item: &ast::ConfigItem) -> ir::Trigger {
        let named: Vec<&(&str, &[&str])> = SOURCES
            .iter()
            .filter(|(k, _)| item.fields.iter().any(|f| f.key.name == *k))
            .collect();
        let mut allowed: Vec<&str> = COMMON.to_vec();
        match named.as_slice() {
            [(_, fields)] => allowed.extend(fields.iter()),
            _ => allowed.extend(SOURCES.iter().flat_map(|(_, f)| f.iter())),
        }
        self.known_fields(&item.fields, &allowed, "a trigger", |key| {
            SOURCES
                .iter()
                .find(|(_, fields)| fields.contains(&key))
                .map(|(source, _)| format!("`{key}` belongs to `{source}` triggers"))
        });
        if named.len() > 1 {
            self.two_sources(item, &named);
        }
        let source = match named.first().map(|(k, _)| *k) {
            Some("cron") => self.cron_source(item),
            Some("watch") => self.watch_source(item),
            Some("webhook") => self.webhook_source(item),
            _ => {
                self.missing(
                    item.name.span,
                    &format!("trigger `{}`", item.name.name),
                    "cron`, `watch` or `webhook",
                    "cron: \"0 3 * * *\"",
                );
                TriggerSource::Missing
            }
        };
        let mut trigger = ir::Trigger {
            name: item.name.name.clone(),
            description: None,
            skill: None,
            args: Vec::new(),
            overlap: Overlap::Skip,
            source,
        };
        for field in &item.fields {
            match field.key.name.as_str() {
                "description" => trigger.description = self.lit_string(field),
                "overlap" => {
                    trigger.overlap =
                        match self.word(field, &["skip", "queue", "allow", "cancel_previous"]) {
                            Some(w) if w == "queue" => Overlap::Queue,
                            Some(w) if w == "allow" => Overlap::Allow,
                            Some(w) if w == "cancel_previous" => Overlap::CancelPrevious,
                            _ => Overlap::Skip,
                        }
                }
                "run" => {
                    let ty = event_type(&trigger.source);
                    if let Some((skill, args)) = self.trigger_run(field, ty) {
                        trigger.skill = Some(skill);
                        trigger.args = args;
                    }
                }
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

    fn two_sources(&mut self, item: &ast::ConfigItem, named: &[&(&str, &[&str])]) {
        let field = |k: &str| item.fields.iter().find(|f| f.key.name == k);
        let (Some(first), Some(second)) = (field(named[0].0), field(named[1].0)) else {
            return;
        };
        self.diags.push(
            Diagnostic::new(
                Code::E0317,
                self.file,
                second.key.span,
                format!(
                    "trigger `{}` has both `{}` and `{}`; a trigger has exactly one of `cron`, `watch`, `webhook`",
                    item.name.name, named[0].0, named[1].0
                ),
            )
            .label("second source")
            .with(first.key.span, "first source")
            .help("split it into two triggers that run the same skill"),
        );
    }

    fn field<'f>(item: &'f ast::ConfigItem, key: &str) -> Option<&'f Field> {
        item.fields.iter().find(|f| f.key.name == key)
    }

    fn cron_source(&mut self, item: &ast::ConfigItem) -> TriggerSource {
        let mut expr = String::new();
        if let Some(f) = Self::field(item, "cron")
            && let Some(text) = self.lit_string(f)
        {
            if let Err(e) = crate::schedule::Schedule::parse(&text) {
                let span = self.inside_string(f, &text, e.start, e.end);
                self.diags.push(
                    Diagnostic::new(Code::E0322, self.file, span, e.message.clone())
                        .label("invalid cron expression")
                        .help("five fields: minute hour day-of-month month day-of-week, such as `\"0 3 * * *\"`, or `@hourly`, `@daily`, `@weekly`, `@monthly`"),
                );
            }
            expr = text;
        }
        let mut timezone = "UTC".to_string();
        if let Some(f) = Self::field(item, "timezone")
            && let Some(name) = self.lit_string(f)
        {
            if let Err(why) = crate::schedule::zone(&name) {
                let span = self.value(f).map_or(f.key.span, |e| e.span);
                self.diags.push(
                    Diagnostic::new(Code::E0323, self.file, span, why)
                        .label("not an IANA time zone")
                        .help("write a name from the tz database, such as `\"Europe/Berlin\"` or `\"UTC\"`"),
                );
            }
            timezone = name;
        }
        let catchup = match Self::field(item, "catchup")
            .and_then(|f| self.word(f, &["none", "latest", "all"]))
        {
            Some(w) if w == "none" => Catchup::None,
            Some(w) if w == "all" => Catchup::All,
            _ => Catchup::Latest,
        };
        let duration = |cx: &mut Self, key: &str, default: u64| {
            Self::field(item, key)
                .and_then(|f| cx.lit_duration(f, Code::E0318))
                .unwrap_or(default)
        };
        TriggerSource::Cron {
            expr,
            timezone,
            catchup,
            catchup_window_ms: duration(self, "catchup_window", CATCHUP_WINDOW_MS),
            jitter_ms: duration(self, "jitter", 0),
        }
    }

    /// The span of bytes `start..end` of a string literal's value, when the
    /// literal holds the value as written (no escapes); else the whole literal.
    fn inside_string(&mut self, field: &Field, value: &str, start: usize, end: usize) -> Span {
        let Some(expr) = self.value(field) else {
            return field.key.span;
        };
        let raw = self.source(expr.span);
        if raw.len() == value.len() + 2 && raw.get(1..raw.len() - 1) == Some(value) {
            let from = expr.span.start + 1 + start.min(value.len());
            let to = expr.span.start + 1 + end.clamp(start, value.len());
            Span::new(from, to.max(from + 1).min(expr.span.end))
        } else {
            expr.span
        }
    }

    fn watch_source(&mut self, item: &ast::ConfigItem) -> TriggerSource {
        let globs = Self::field(item, "watch")
            .and_then(|f| {
                let globs = self.lit_strings(f)?;
                if globs.is_empty() {
                    let span = self.value(f).map_or(f.key.span, |e| e.span);
                    self.diags.push(
                        Diagnostic::new(Code::E0318, self.file, span, "`watch` names no path")
                            .label("empty list")
                            .help("write the globs to watch, such as `[\"src/**\"]`"),
                    );
                }
                for g in &globs {
                    if let Err(e) = globset::Glob::new(g) {
                        let span = self.value(f).map_or(f.key.span, |e| e.span);
                        self.diags.push(
                            Diagnostic::new(
                                Code::E0318,
                                self.file,
                                span,
                                format!("`{g}` is not a valid glob: {}", e.kind()),
                            )
                            .label("invalid glob"),
                        );
                    }
                }
                Some(globs)
            })
            .unwrap_or_default();
        let debounce_ms = Self::field(item, "debounce")
            .and_then(|f| self.lit_duration(f, Code::E0318))
            .unwrap_or(DEBOUNCE_MS);
        TriggerSource::Watch { globs, debounce_ms }
    }

    fn webhook_source(&mut self, item: &ast::ConfigItem) -> TriggerSource {
        let what = format!("webhook trigger `{}`", item.name.name);
        let mut path = String::new();
        if let Some(f) = Self::field(item, "webhook")
            && let Some(p) = self.lit_string(f)
        {
            if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                let span = self.value(f).map_or(f.key.span, |e| e.span);
                self.diags.push(
                    Diagnostic::new(
                        Code::E0318,
                        self.file,
                        span,
                        format!("`{p}` is not a webhook path"),
                    )
                    .label("expected a path such as `/hooks/github`")
                    .help("start it with `/`; no query, fragment or spaces"),
                );
            }
            path = p;
        }
        let verify = match Self::field(item, "verify") {
            None => {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0308,
                        self.file,
                        item.name.span,
                        format!("{what} is missing the field `verify`"),
                    )
                    .label("needs `verify`")
                    .help("add `verify: \"github\"` or `verify: \"standard\"` with a `secret`, or write `verify: \"none\"` to accept unsigned calls"),
                );
                Verify::None
            }
            Some(f) => match self.word(f, &["github", "standard", "none"]) {
                Some(w) if w == "github" => Verify::Github,
                Some(w) if w == "standard" => Verify::Standard,
                _ => Verify::None,
            },
        };
        let secret = Self::field(item, "secret").and_then(|f| self.secret_ref(f));
        if verify != Verify::None && Self::field(item, "secret").is_none() {
            self.missing(
                item.name.span,
                &what,
                "secret",
                "secret: secret(\"HOOK_SECRET\")",
            );
        }
        let dedup = Self::field(item, "dedup").and_then(|f| self.lit_string(f));
        let max_body = Self::field(item, "max_body")
            .and_then(|f| self.lit_size(f, Code::E0318))
            .unwrap_or(MAX_BODY);
        let tolerance_ms = Self::field(item, "tolerance")
            .and_then(|f| self.lit_duration(f, Code::E0318))
            .unwrap_or(TOLERANCE_MS);
        TriggerSource::Webhook {
            path,
            verify,
            secret,
            dedup,
            max_body,
            tolerance_ms,
        }
    }

    /// The skill a trigger runs and its compiled arguments by parameter name.
    fn trigger_run(
        &mut self,
        field: &Field,
        event: Ty,
    ) -> Option<(String, Vec<(String, ir::CompiledExpr)>)> {
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
        let mut scope = EventScope { ty: event };
        let mut compiled = Vec::new();
        for (arg, (pname, pty, _)) in args.iter().zip(&sig.params) {
            let mut checker = ExprChecker {
                file: self.file,
                diags: &mut self.diags,
            };
            checker.expect(arg, &mut scope, pty, &format!("parameter `{pname}`"));
            compiled.push((pname.clone(), self.compile(arg, pty.clone())));
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
        Some((sig.key.clone(), compiled))
    }
}
