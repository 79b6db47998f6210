//! An agent's tool calls: caps, argument checks, policy rules, skills as child
//! frames, MCP servers over stdio, and journaling each result.

use super::agent::{Current, McpConn, Route, signature};
use super::attempt::{self, AttemptEnd, ProcessSpec};
use super::frame::Owner;
use super::scheduler::{Decision, Msg, Runner};
use crate::ir::{Effect, NodeKind, StepKind, Ty};
use crate::journal::NewEvent;
use crate::llm::agent::{ToolCall, ToolResult, cut};
use crate::llm::mcp::{self, McpTool};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// What a server start reports: per server, its session and tools, or why not.
pub type Started = Vec<(String, Result<(Box<McpConn>, Vec<McpTool>), String>)>;

/// What an MCP call reports: the session back, and the result text or an error.
pub struct McpDone {
    /// The server.
    pub server: String,
    /// Its session, to keep using.
    pub conn: Option<Box<McpConn>>,
    /// The text and whether it is an error.
    pub outcome: Result<(String, bool), String>,
}

impl Runner<'_> {
    /// Starts the step's MCP servers inside its sandbox and lists their tools.
    pub fn start_servers(
        &mut self,
        inst: usize,
        attempt: u32,
        servers: &[String],
        inputs: &Json,
        timeout_ms: u64,
    ) {
        let (skill, node) = self.step(inst);
        let plan = match self.sandbox_plan(&skill, Some(node), &skill.policy.sandbox) {
            Ok(p) => p,
            Err(e) => return self.end_agent(inst, AttemptEnd::Error(e, None)),
        };
        let timeout = Self::mcp_timeout(timeout_ms);
        let mut specs = Vec::new();
        for name in servers {
            let s = &inputs["servers"][name];
            let argv: Vec<String> = s["argv"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let env: Vec<(String, String)> = s["env"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let mut spec = ProcessSpec {
                argv,
                stdin: None,
                cwd: s["cwd"].as_str().map(str::to_string),
                env,
                timeout,
                output: None,
                sandbox: Some(plan.clone()),
            };
            spec.settle_start();
            specs.push((name.clone(), spec));
        }
        let cancel = Arc::new(tokio::sync::Notify::new());
        self.insts[inst].cancel = Some(cancel.clone());
        self.running += 1;
        self.spawn.push(Box::pin(async move {
            let work = async move {
                let mut out: Started = Vec::new();
                for (name, spec) in specs {
                    out.push((name, connect(spec, timeout).await));
                }
                out
            };
            tokio::select! {
                started = work => Msg::AgentServers { inst, attempt, started },
                () = cancel.notified() => Msg::Attempt { inst, attempt, end: AttemptEnd::Cancelled },
            }
        }));
    }

    /// The servers are up (or not): their tools join the step's, then the loop starts.
    pub fn servers_started(&mut self, inst: usize, attempt: u32, started: Started) {
        self.insts[inst].cancel = None;
        if self.agents.get(&inst).is_none_or(|r| r.attempt != attempt) {
            return;
        }
        let Some((skill, node)) = self.agent_of(inst) else {
            return;
        };
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return;
        };
        for (name, result) in started {
            let (conn, tools) = match result {
                Ok(ok) => ok,
                Err(e) => {
                    let why = format!("`mcp` server `{name}` could not be started: {e}");
                    return self.end_agent(inst, AttemptEnd::Error(why, None));
                }
            };
            let key = self.insts[inst].key.clone();
            self.push(NewEvent::node(
                &self.run_id,
                "note",
                &key,
                Some(attempt),
                json!({ "text": format!("`mcp` server `{name}` ({}) lists {} tools", conn.client.server, tools.len()) }),
            ));
            if let Err(e) = self.add_server_tools(inst, agent, &name, &tools) {
                return self.end_agent(inst, AttemptEnd::Error(e, None));
            }
            if let Some(run) = self.agents.get_mut(&inst) {
                run.servers.insert(name, Some(conn));
            }
        }
        self.agent_next(inst);
    }

    /// Starts the next call of the turn: caps, then the journal, then checks and rules.
    pub fn start_tool_call(&mut self, inst: usize, call: ToolCall) {
        let Some((_, node)) = self.agent_of(inst) else {
            return;
        };
        let (skill, _) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return;
        };
        let (max_calls, max_repeats) = (agent.max_tool_calls, agent.max_repeats);
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        if run.calls >= max_calls {
            let why = format!(
                "cap `max_tool_calls` ({max_calls}) reached: the model asked for more tool calls"
            );
            return self.agent_cap(inst, "max_tool_calls", max_calls, why);
        }
        let seen = run.seen.entry(signature(&call)).or_default();
        if *seen >= max_repeats {
            let why = format!(
                "cap `max_repeats` ({max_repeats}) reached: the model called `{}` with the same arguments again",
                call.name
            );
            return self.agent_cap(inst, "max_repeats", max_repeats, why);
        }
        *seen += 1;
        run.calls += 1;
        let (number, turn, attempt) = (run.calls, run.turns, run.attempt);
        let route = run.routes.get(&call.name).cloned();
        run.current = Some(Current {
            call: call.clone(),
            number,
            turn,
            asking: false,
        });
        let effect = route.as_ref().map_or("", |r| r.effect().word());
        let mut data = json!({
            "turn": turn, "call_id": call.id, "number": number,
            "tool": call.name, "args": call.args, "effect": effect,
        });
        let Some(route) = route else {
            let names: Vec<String> = run.specs.iter().map(|s| format!("`{}`", s.name)).collect();
            self.journal_started(inst, attempt, data);
            let text = format!(
                "there is no tool `{}`; the tools are {}",
                call.name,
                names.join(", ")
            );
            return self.tool_finished(inst, text, true, json!({ "invalid": true }));
        };
        if let Err(e) = self.check_args(&route, &call.args) {
            self.journal_started(inst, attempt, data);
            let text = format!("the arguments of `{}` are not valid: {e}", call.name);
            return self.tool_finished(inst, text, true, json!({ "invalid": true }));
        }
        match self.tool_rules(inst, &call, route.effect()) {
            Ok(Rule::Allowed) => {
                self.journal_started(inst, attempt, data);
                self.run_tool(inst, call, number);
            }
            Ok(Rule::Forbidden(policy, why)) => {
                self.journal_started(inst, attempt, data);
                let key = self.insts[inst].key.clone();
                self.violation_of(&policy, Some(&key), "forbid", json!(call.name), &why);
                let text = format!("flowc refused this call: {why}");
                self.tool_finished(inst, text, true, json!({ "refused": true }));
            }
            Ok(Rule::Ask(prompt)) => {
                data["awaiting_approval"] = json!(true);
                self.journal_started(inst, attempt, data);
                if let Some(c) = self.agents.get_mut(&inst).and_then(|r| r.current.as_mut()) {
                    c.asking = true;
                }
                self.ask_tool(inst, prompt);
            }
            Err(e) => {
                self.journal_started(inst, attempt, data);
                // Fail closed: a rule that cannot be read refuses the call.
                let text =
                    format!("flowc refused this call: a policy rule could not be evaluated: {e}");
                self.tool_finished(inst, text, true, json!({ "refused": true }));
            }
        }
    }

    fn journal_started(&mut self, inst: usize, attempt: u32, data: Json) {
        let key = self.insts[inst].key.clone();
        self.push(NewEvent::node(
            &self.run_id,
            "tool_call_started",
            &key,
            Some(attempt),
            data,
        ));
    }

    /// The arguments against the tool's parameters.
    fn check_args(&self, route: &Route, args: &Json) -> Result<(), String> {
        match route {
            Route::Mcp { schema, .. } => mcp::validate(args, schema),
            Route::Skill { key, .. } => {
                let Some(skill) = self.program.skills.get(key) else {
                    return Err("the skill is not in the program".into());
                };
                let Json::Object(m) = args else {
                    return Err("they must be an object of named parameters".into());
                };
                for k in m.keys() {
                    if !skill.params.iter().any(|p| &p.name == k) {
                        return Err(format!("`{}` has no parameter `{k}`", skill.name));
                    }
                }
                for p in &skill.params {
                    match m.get(&p.name) {
                        Some(v) => super::eval::validate(v, &p.ty)
                            .map_err(|e| format!("`{}` must be `{}`: {e}", p.name, p.ty))?,
                        None if p.default.is_none() && !matches!(p.ty, Ty::Optional(_)) => {
                            return Err(format!("`{}` is missing", p.name));
                        }
                        None => {}
                    }
                }
                Ok(())
            }
        }
    }

    /// The policy rules for a call, with `step` and `tool` in scope.
    fn tool_rules(&self, inst: usize, call: &ToolCall, effect: Effect) -> Result<Rule, String> {
        let (skill, _) = self.step(inst);
        let root = self.root_policy.clone();
        let own = (!Arc::ptr_eq(&skill.policy, &root)).then(|| skill.policy.clone());
        let policies: Vec<Arc<crate::ir::Policy>> =
            [Some(root), own].into_iter().flatten().collect();
        let info = self
            .agents
            .get(&inst)
            .map_or(Json::Null, |r| r.info.clone());
        let tool = json!({ "name": call.name, "args": call.args, "effect": effect.word() });
        let names = |n: &str| match n {
            "step" => Some(info.clone()),
            "tool" => Some(tool.clone()),
            _ => None,
        };
        for p in &policies {
            if let Some(rule) = &p.forbid
                && self.eval.condition(rule, &names)?
            {
                let why = format!("`forbid` of policy `{}`: `{}`", p.name, rule.source);
                return Ok(Rule::Forbidden(p.name.clone(), why));
            }
        }
        for p in &policies {
            if let Some(rule) = &p.require_approval
                && self.eval.condition(rule, &names)?
            {
                return Ok(Rule::Ask(format!(
                    "policy `{}` requires approval to call tool `{}` with {} (call {})",
                    p.name, call.name, call.args, call.id
                )));
            }
        }
        Ok(Rule::Allowed)
    }

    /// The approval question for a call (asked again on resume).
    pub fn tool_prompt(&self, inst: usize, call: &ToolCall) -> String {
        let effect = self
            .agents
            .get(&inst)
            .and_then(|r| r.routes.get(&call.name))
            .map_or(Effect::Write, Route::effect);
        match self.tool_rules(inst, call, effect) {
            Ok(Rule::Ask(p)) => p,
            _ => format!(
                "approve the call of tool `{}` with {} (call {})",
                call.name, call.args, call.id
            ),
        }
    }

    /// Puts a tool call in the human queue. A decision recorded for another
    /// call of the step (the queue holds one item per step) is not this call's.
    pub fn ask_tool(&mut self, inst: usize, prompt: String) {
        let key = self.insts[inst].key.clone();
        if self
            .prior_approvals
            .get(&key)
            .is_some_and(|row| row.prompt != prompt)
        {
            self.prior_approvals.remove(&key);
        }
        self.ask(inst, "policy", prompt);
    }

    /// A person decided on a call waiting for approval: run it, or refuse it.
    /// `false` when the instance is not an agent waiting on a call.
    pub fn tool_decided(&mut self, inst: usize, decision: &Decision) -> bool {
        let Some(current) = self
            .agents
            .get_mut(&inst)
            .and_then(|r| r.current.as_mut())
            .filter(|c| c.asking)
        else {
            return false;
        };
        current.asking = false;
        let (call, number) = (current.call.clone(), current.number);
        let attempt = self.agents.get(&inst).map_or(0, |r| r.attempt);
        let key = self.insts[inst].key.clone();
        self.set_status(
            &key,
            "running",
            Some(attempt),
            json!({ "input_hash": self.insts[inst].input_hash }),
        );
        match decision {
            Decision::Approve { .. } | Decision::Retry { .. } => self.run_tool(inst, call, number),
            Decision::Reject { by, reason } => {
                let text = format!("a person ({by}) refused this call: {reason}");
                self.tool_finished(inst, text, true, json!({ "refused": true, "by": by }));
            }
            Decision::Skip { by, output } => {
                let text = output
                    .as_ref()
                    .map_or_else(|| "skipped".to_string(), Json::to_string);
                self.tool_finished(inst, text, false, json!({ "skipped": true, "by": by }));
            }
        }
        true
    }

    /// Runs a call: a skill as a child frame, an MCP tool over its server.
    pub fn run_tool(&mut self, inst: usize, call: ToolCall, number: u32) {
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        let attempt = run.attempt;
        match run.routes.get(&call.name).cloned() {
            Some(Route::Skill { key: skill_key, .. }) => {
                let Some(callee) = self.program.skills.get(&skill_key).cloned() else {
                    return self.tool_finished(
                        inst,
                        "the skill is not in the program".into(),
                        true,
                        json!({}),
                    );
                };
                let key = self.insts[inst].key.clone();
                let at = if attempt > 1 {
                    format!("@{attempt}")
                } else {
                    String::new()
                };
                let prefix = format!("{key}{at}/{number}.{}/", call.name);
                let args = call.args.as_object().cloned().unwrap_or_default();
                match self.child_frame(inst, callee, args, prefix, Owner::Tool(inst)) {
                    Ok(child) => self.insts[inst].child = Some(child),
                    Err(e) => self.tool_finished(inst, e, true, json!({})),
                }
            }
            Some(Route::Mcp { server, tool, .. }) => {
                let Some(conn) = run.servers.get_mut(&server).and_then(Option::take) else {
                    let text = format!("`mcp` server `{server}` is not running");
                    return self.tool_finished(inst, text, true, json!({}));
                };
                let cancel = Arc::new(tokio::sync::Notify::new());
                self.insts[inst].cancel = Some(cancel.clone());
                self.running += 1;
                let args = call.args.clone();
                self.spawn.push(Box::pin(async move {
                    let mut conn = conn;
                    tokio::select! {
                        r = conn.client.call(&tool, &args) => Msg::AgentMcp {
                            inst,
                            attempt,
                            done: Box::new(McpDone {
                                server,
                                outcome: r.map(|r| (r.text, r.is_error)),
                                conn: Some(conn),
                            }),
                        },
                        () = cancel.notified() => Msg::Attempt { inst, attempt, end: AttemptEnd::Cancelled },
                    }
                }));
            }
            None => self.tool_finished(
                inst,
                format!("there is no tool `{}`", call.name),
                true,
                json!({}),
            ),
        }
    }

    /// An MCP call came back.
    pub fn mcp_returned(&mut self, inst: usize, attempt: u32, done: McpDone) {
        self.insts[inst].cancel = None;
        let Some(run) = self.agents.get_mut(&inst).filter(|r| r.attempt == attempt) else {
            return;
        };
        let failed = done.outcome.is_err();
        run.servers
            .insert(done.server.clone(), done.conn.filter(|_| !failed));
        match done.outcome {
            Ok((text, is_error)) => self.tool_finished(inst, text, is_error, json!({})),
            Err(e) => {
                let text = format!("`mcp` server `{}` failed: {e}", done.server);
                self.tool_finished(inst, text, true, json!({}))
            }
        }
    }

    /// A skill tool's frame ended.
    pub fn tool_frame_ended(
        &mut self,
        inst: usize,
        frame: usize,
        complete: bool,
        failure: Option<(String, String)>,
    ) {
        self.insts[inst].child = None;
        if complete {
            match self.skill_output(frame) {
                Ok(Json::String(text)) => self.tool_finished(inst, text, false, json!({})),
                Ok(v) => self.tool_finished(inst, v.to_string(), false, json!({})),
                Err(e) => self.tool_finished(inst, e, true, json!({})),
            }
        } else if let Some((key, why)) = failure {
            self.tool_finished(inst, format!("step `{key}` failed: {why}"), true, json!({}));
        } else {
            // Stopped from outside: the attempt is cancelled.
            self.end_agent(inst, AttemptEnd::Cancelled);
        }
    }

    /// A call ended: its whole result (redacted) in the journal, a cut one in the conversation.
    pub fn tool_finished(&mut self, inst: usize, text: String, is_error: bool, extra: Json) {
        let Some((skill, node)) = self.agent_of(inst) else {
            return;
        };
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return;
        };
        let max = agent.tool_result_max as usize;
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        let Some(current) = run.current.take() else {
            return;
        };
        let text = crate::secrets::redact(text);
        let (content, truncated) = cut(&text, max);
        run.results.push(ToolResult {
            id: current.call.id.clone(),
            name: current.call.name.clone(),
            content,
            is_error,
        });
        let attempt = run.attempt;
        let mut data = json!({
            "turn": current.turn, "call_id": current.call.id, "tool": current.call.name,
            "result": text, "bytes": text.len(), "truncated": truncated, "is_error": is_error,
        });
        if let (Some(d), Json::Object(x)) = (data.as_object_mut(), extra) {
            d.extend(x);
        }
        let key = self.insts[inst].key.clone();
        self.push(NewEvent::node(
            &self.run_id,
            "tool_call_finished",
            &key,
            Some(attempt),
            data,
        ));
        self.agent_next(inst);
    }
}

/// What the policy rules say about a call.
enum Rule {
    Allowed,
    Forbidden(String, String),
    Ask(String),
}

/// Starts one server and lists its tools.
async fn connect(
    spec: ProcessSpec,
    timeout: std::time::Duration,
) -> Result<(Box<McpConn>, Vec<McpTool>), String> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut process = attempt::start_piped(spec).await?;
    if let Some(mut err) = process.stderr.take() {
        // Drained so the server never blocks on a full pipe; its log is not kept.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
        });
    }
    let stdin = std::mem::replace(&mut process.stdin, Box::new(tokio::io::sink()));
    let stdout = std::mem::replace(&mut process.stdout, Box::new(tokio::io::empty()));
    let mut client = mcp::Client::connect(stdin, stdout, timeout)
        .await
        .map_err(|e| format!("`{program}`: {e}"))?;
    let tools = client.list_tools().await?;
    Ok((
        Box::new(McpConn {
            client,
            _process: process,
        }),
        tools,
    ))
}
