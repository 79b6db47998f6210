//! An agent's tool calls: caps, argument checks, policy rules, skills as child
//! frames, MCP servers over stdio, and journaling each result.

use super::{Current, McpConn, Route, signature};
use crate::exec::attempt::AttemptEnd;
use crate::exec::frame::Owner;
use crate::exec::scheduler::{Decision, Msg, Runner};
use crate::ir::{Effect, Ty};
use crate::journal::NewEvent;
use crate::llm::agent::{ToolCall, ToolResult, cut};
use crate::llm::mcp;
use serde_json::{Value as Json, json};
use std::sync::Arc;

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
    /// Starts the next call of the turn: caps, then the journal, then checks and rules.
    pub fn start_tool_call(&mut self, inst: usize, call: ToolCall) {
        if !self.call_within_caps(inst, &call) {
            return;
        }
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        *run.seen.entry(signature(&call)).or_default() += 1;
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

    /// `max_tool_calls` and `max_repeats` before a call; `false`: a cap ended the attempt.
    fn call_within_caps(&mut self, inst: usize, call: &ToolCall) -> bool {
        let Some((_, agent, _)) = self.agent_step(inst) else {
            return false;
        };
        let (max_calls, max_repeats) = (agent.max_tool_calls, agent.max_repeats);
        let Some(run) = self.agents.get(&inst) else {
            return false;
        };
        if run.calls >= max_calls {
            let why = format!(
                "cap `max_tool_calls` ({max_calls}) reached: the model asked for more tool calls"
            );
            self.agent_cap(inst, "max_tool_calls", max_calls, why);
            return false;
        }
        if run.seen.get(&signature(call)).copied().unwrap_or(0) >= max_repeats {
            let why = format!(
                "cap `max_repeats` ({max_repeats}) reached: the model called `{}` with the same arguments again",
                call.name
            );
            self.agent_cap(inst, "max_repeats", max_repeats, why);
            return false;
        }
        true
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
                        Some(v) => crate::exec::eval::validate(v, &p.ty)
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
        let policies = self.step_policies(&skill);
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
            // What the failed step printed on stderr helps the model most.
            let stderr = self
                .insts
                .iter()
                .rev()
                .find(|i| i.key == key)
                .and_then(|i| i.result.as_ref())
                .and_then(|r| r["stderr"].as_str())
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    let cut = s.len().saturating_sub(2000);
                    let cut = (cut..s.len())
                        .find(|&c| s.is_char_boundary(c))
                        .unwrap_or(s.len());
                    format!("\nits stderr:\n{}", &s[cut..])
                })
                .unwrap_or_default();
            let text = format!("step `{key}` failed: {why}{stderr}");
            self.tool_finished(inst, text, true, json!({}));
        } else {
            // Stopped from outside: the attempt is cancelled.
            self.end_agent(inst, AttemptEnd::Cancelled);
        }
    }

    /// A call ended: its whole result (redacted) in the journal, a cut one in the conversation.
    pub fn tool_finished(&mut self, inst: usize, text: String, is_error: bool, extra: Json) {
        let Some((_, agent, _)) = self.agent_step(inst) else {
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
