//! `agent` steps and `mcp` items: tools (skills and MCP servers), caps, and the result type.

use super::module::{CallEdge, ItemKind};
use super::module_cx::ModuleCx;
use super::scope::Mode;
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic, did_you_mean};
use crate::ir::{self, Effect, McpServer, StepKind, Tool, ToolKind, Ty};
use crate::syntax::ast::{self, ConfigItem, ExprKind, Field};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// The fields of an `mcp` item.
const MCP_FIELDS: &[&str] = &[
    "command",
    "argv",
    "env",
    "cwd",
    "allow",
    "effects",
    "description",
];

/// The effect words.
const EFFECTS: &[&str] = &["read", "idempotent", "write"];

/// The effect a word names.
pub fn effect_of(word: &str) -> Option<Effect> {
    Some(match word {
        "read" => Effect::Read,
        "idempotent" => Effect::Idempotent,
        "write" => Effect::Write,
        _ => return None,
    })
}

impl<'a> ModuleCx<'a> {
    /// Checks an `mcp` item on its own (its templates are checked where a step uses it).
    pub(super) fn mcp_item(&mut self, item: &ConfigItem) {
        self.known_fields(&item.fields, MCP_FIELDS, "an `mcp` server", |_| None);
        let get = |k: &str| item.fields.iter().find(|f| f.key.name == k);
        match (get("command"), get("argv")) {
            (None, None) => self.missing(
                item.name.span,
                &format!("`mcp` server `{}`", item.name.name),
                "command",
                "command: \"python3 -m mcp_server_git\"",
            ),
            (Some(a), Some(b)) => self.diags.push(
                Diagnostic::new(
                    Code::E0317,
                    self.file,
                    b.key.span,
                    "an `mcp` server has `command` or `argv`, not both",
                )
                .label("second way to name the program")
                .with(a.key.span, "first here")
                .help("keep one: `argv` when an argument may hold spaces"),
            ),
            _ => {}
        }
        let allow = get("allow").and_then(|f| self.lit_strings(f));
        match (&allow, get("allow")) {
            (None, None) => self.missing(
                item.name.span,
                &format!("`mcp` server `{}`", item.name.name),
                "allow",
                "allow: [\"git_status\", \"git_diff\"]",
            ),
            (Some(list), Some(f)) if list.iter().any(|t| t == "*") => self.diags.push(
                Diagnostic::new(
                    Code::W0009,
                    self.file,
                    f.span,
                    format!(
                        "`mcp` server `{}` allows every tool it lists",
                        item.name.name
                    ),
                )
                .label("`\"*\"` lets the model call tools nobody here has read")
                .help("list the tools the agent needs by name"),
            ),
            _ => {}
        }
        if let Some(f) = get("effects") {
            self.mcp_effects(f, allow.as_deref().unwrap_or_default());
        }
    }

    /// `effects: { tool: "read", ... }`: each key allowed, each value an effect.
    fn mcp_effects(&mut self, field: &Field, allow: &[String]) -> Vec<(String, Effect)> {
        let Some(expr) = self.value(field) else {
            return Vec::new();
        };
        let ExprKind::Map(entries) = &expr.kind else {
            self.diags.push(
                Diagnostic::new(Code::E0301, self.file, expr.span, "`effects` expects a map")
                    .label("not a map")
                    .help("write `effects: { git_status: \"read\" }`"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            let f = super::literals::map_field(key, value);
            let Some(word) = self.word(&f, EFFECTS) else {
                continue;
            };
            if !allow.iter().any(|a| a == "*" || *a == key.name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0330,
                        self.file,
                        key.span,
                        format!(
                            "`effects` names `{}`, which `allow` does not list",
                            key.name
                        ),
                    )
                    .label("not allowed")
                    .maybe_help(did_you_mean(&key.name, allow.iter().map(String::as_str))),
                );
            }
            if let Some(e) = effect_of(&word) {
                out.push((key.name.clone(), e));
            }
        }
        out
    }

    /// Checks an `agent` step and compiles it.
    pub(super) fn agent_step(
        &mut self,
        id: usize,
        def: &'a ast::StepDef,
        sk: &mut SkillCx<'a>,
    ) -> StepKind {
        let m = self.model_fields(id, def, sk);
        let get = |key: &str| def.fields.iter().find(|f| f.key.name == key);
        let count = |cx: &mut Self, key: &str, default: u32| {
            get(key)
                .and_then(|f| cx.lit_int(f, 1, Code::E0318))
                .map_or(default, |n| n.min(i64::from(u32::MAX)) as u32)
        };
        let max_turns = count(self, "max_turns", ir::agent::MAX_TURNS);
        if let (Some(cap), Some(f)) = (sk.sig.policy.max_turns, get("max_turns"))
            && max_turns > cap
        {
            self.diags.push(
                Diagnostic::new(
                    Code::E0601,
                    self.file,
                    f.span,
                    format!(
                        "`max_turns` {max_turns} of step `{}` is more than the cap {cap} of policy `{}`",
                        def.name.name, sk.sig.policy.name
                    ),
                )
                .label("exceeds the policy cap")
                .help(format!("lower it to at most {cap}")),
            );
        }
        let max_turns = sk
            .sig
            .policy
            .max_turns
            .map_or(max_turns, |c| max_turns.min(c));
        let max_tool_calls = count(self, "max_tool_calls", ir::agent::MAX_TOOL_CALLS);
        let max_repeats = count(self, "max_repeats", ir::agent::MAX_REPEATS);
        let tool_result_max = get("tool_result_max")
            .and_then(|f| self.lit_size(f, Code::E0318))
            .unwrap_or(ir::agent::TOOL_RESULT_MAX);
        let tools = match get("tools") {
            Some(f) => self.tools(f, id, sk),
            None => Vec::new(),
        };
        StepKind::Agent(Arc::new(ir::AgentStep {
            model: m.model,
            system: m.system,
            prompt: m.prompt,
            tools,
            cwd: self.text(get("cwd"), id, sk),
            max_turns,
            max_tool_calls,
            max_repeats,
            tool_result_max,
            output: self.output_type(def, sk, id),
            temperature: m.temperature,
            max_tokens: m.max_tokens,
        }))
    }

    /// `tools: [skill, ns.skill, server.tool, server]`.
    fn tools(&mut self, field: &Field, id: usize, sk: &mut SkillCx<'a>) -> Vec<Tool> {
        let Some(expr) = self.value(field) else {
            return Vec::new();
        };
        let ExprKind::List(items) = &expr.kind else {
            self.diags.push(
                Diagnostic::new(
                    Code::E0301,
                    self.file,
                    expr.span,
                    "`tools` expects a list of skills and MCP tools",
                )
                .label("not a list")
                .help("write `tools: [tools.read_file, run_tests, git.git_status]`"),
            );
            return Vec::new();
        };
        let mut out: Vec<(Tool, crate::span::Span)> = Vec::new();
        // One server per step, however many of its tools are listed.
        let mut servers: Vec<Arc<McpServer>> = Vec::new();
        for item in items {
            let Some(tool) = self.tool(item, id, sk, &mut servers) else {
                continue;
            };
            if let Some((_, prev)) = out.iter().find(|(t, _)| t.name == tool.name) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0331,
                        self.file,
                        item.span,
                        format!("two tools of this step are called `{}`", tool.name),
                    )
                    .label("second tool of this name")
                    .with(*prev, "first here")
                    .help("the model calls tools by name: keep one of them"),
                );
                continue;
            }
            out.push((tool, item.span));
        }
        out.into_iter().map(|(t, _)| t).collect()
    }

    /// One entry of `tools`.
    fn tool(
        &mut self,
        item: &ast::Expr,
        id: usize,
        sk: &mut SkillCx<'a>,
        servers: &mut Vec<Arc<McpServer>>,
    ) -> Option<Tool> {
        let q = self.qualified_of(item, "a tool")?;
        // `server.tool` or `server`, when `server` is an `mcp` item of this file.
        let server_name = q.namespace.as_ref().map_or(&q.name.name, |ns| &ns.name);
        if let Some(ix) = self.m.items.get(server_name).copied()
            && ix.kind == ItemKind::Mcp
            && let ast::Item::Config(c) = &self.m.ast.items[ix.index]
        {
            let server = match servers.iter().find(|s| s.name == c.name.name) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(self.mcp_server(c, id, sk));
                    servers.push(s.clone());
                    s
                }
            };
            let tool = q.namespace.as_ref().map(|_| q.name.name.clone());
            if let Some(t) = &tool
                && !server.allows(t)
            {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0330,
                        self.file,
                        q.name.span,
                        format!("`mcp` server `{}` does not allow `{t}`", server.name),
                    )
                    .label("not in its `allow` list")
                    .with(ix.span, "the server")
                    .maybe_help(
                        did_you_mean(t, server.allow.iter().map(String::as_str)).or_else(|| {
                            Some(format!(
                                "add `\"{t}\"` to its `allow` if the agent needs it"
                            ))
                        }),
                    ),
                );
                return None;
            }
            let name = tool.clone().unwrap_or_else(|| format!("{}.*", server.name));
            return Some(Tool {
                name,
                kind: ToolKind::Mcp { server, tool },
            });
        }
        self.skill_tool(&q, sk)
    }

    /// A skill named in `tools`: it needs a description, and its parameters become the schema.
    fn skill_tool(&mut self, q: &ast::QualifiedName, sk: &mut SkillCx<'a>) -> Option<Tool> {
        let sig = self.sig(q)?;
        let (description, effect) = (sig.description.clone(), sig.effect);
        let Some(description) = description.filter(|d| !d.trim().is_empty()) else {
            self.diags.push(
                Diagnostic::new(
                    Code::E0330,
                    self.file,
                    q.span,
                    format!(
                        "skill `{}` has no `description`, so it cannot be a tool",
                        sig.name
                    ),
                )
                .label("the model would not know what it does")
                .with(sig.span, "the skill")
                .help("give the skill `description: \"what it does, and what it returns\"`"),
            );
            return None;
        };
        self.calls.push(CallEdge {
            caller: sk.sig.key.clone(),
            callee: sig.key.clone(),
            file: self.file,
            span: q.span,
        });
        Some(Tool {
            name: sig.name.clone(),
            kind: ToolKind::Skill {
                key: sig.key.clone(),
                description,
                schema: params_schema(&sig.params),
                effect,
            },
        })
    }

    /// The program of an `mcp` item: `command` through `sh -c`, or `argv`.
    fn mcp_argv(
        &mut self,
        c: &'a ConfigItem,
        id: usize,
        sk: &mut SkillCx<'a>,
        what: &str,
    ) -> Vec<ir::Value> {
        let get = |k: &str| c.fields.iter().find(|f| f.key.name == k);
        let mut argv = Vec::new();
        if let Some(f) = get("command") {
            argv = vec![
                ir::Value::Const(json!("sh")),
                ir::Value::Const(json!("-c")),
                self.text(Some(f), id, sk)
                    .unwrap_or(ir::Value::Const(Json::Null)),
            ];
        } else if let Some(f) = get("argv")
            && let Some(expr) = self.value(f)
        {
            match &expr.kind {
                ExprKind::List(items) => {
                    for a in items {
                        let (v, _) = self.data_value(
                            a,
                            sk,
                            Some(id),
                            Mode::Plain,
                            Some(&Ty::String),
                            &format!("`argv` of {what}"),
                        );
                        argv.push(v);
                    }
                }
                _ => self.diags.push(
                    Diagnostic::new(Code::E0301, self.file, expr.span, "`argv` expects a list")
                        .label("not a list")
                        .help("write `argv: [\"python3\", \"-m\", \"mcp_server_git\"]`"),
                ),
            }
        }
        argv
    }

    /// An `mcp` item as step `id` uses it: its templates rendered in the step's scope.
    fn mcp_server(&mut self, c: &'a ConfigItem, id: usize, sk: &mut SkillCx<'a>) -> McpServer {
        let get = |k: &str| c.fields.iter().find(|f| f.key.name == k);
        let what = format!("`mcp` server `{}`", c.name.name);
        let argv = self.mcp_argv(c, id, sk, &what);
        let mut env = Vec::new();
        if let Some(f) = get("env")
            && let Some(ast::Expr {
                kind: ExprKind::Map(entries),
                ..
            }) = self.value(f)
        {
            for (k, v) in entries {
                let (value, _) = self.data_value(
                    v,
                    sk,
                    Some(id),
                    Mode::Plain,
                    None,
                    &format!("`env.{}` of {what}", k.name),
                );
                env.push((k.name.clone(), value));
            }
        }
        let allow = get("allow")
            .and_then(|f| match &f.value {
                ast::FieldValue::Expr(ast::Expr {
                    kind: ExprKind::List(items),
                    ..
                }) => Some(
                    items
                        .iter()
                        .filter_map(|i| match &i.kind {
                            ExprKind::Str(s) => Some(s.value.clone()),
                            _ => None,
                        })
                        .collect::<Vec<String>>(),
                ),
                _ => None,
            })
            .unwrap_or_default();
        let effects = match get("effects") {
            // Reported once, when the item itself was checked.
            Some(f) => {
                let before = self.diags.len();
                let out = self.mcp_effects(f, &allow);
                self.diags.truncate(before);
                out
            }
            None => Vec::new(),
        };
        McpServer {
            name: c.name.name.clone(),
            argv,
            env,
            cwd: self.text(get("cwd"), id, sk),
            allow,
            effects,
        }
    }
}

/// The JSON Schema of a skill's parameters: an object, the ones without a default required.
pub fn params_schema(params: &[(String, Ty, bool)]) -> Json {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, ty, has_default) in params {
        props.insert(name.clone(), crate::llm::schema::schema(ty));
        if !has_default {
            required.push(json!(name));
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The result of an `agent` step.
pub fn agent_result(output: Option<Ty>) -> Ty {
    let mut fields = vec![("text".to_string(), Ty::String)];
    if let Some(o) = output {
        fields.push(("output".into(), o));
    }
    for (n, t) in [
        ("turns", Ty::Int),
        ("tool_calls", Ty::Int),
        ("tokens_in", Ty::Int),
        ("tokens_out", Ty::Int),
        ("cost_usd", Ty::Float),
    ] {
        fields.push((n.into(), t));
    }
    Ty::Record(Arc::new(ir::Record {
        name: Some("agent result".into()),
        fields,
    }))
}
