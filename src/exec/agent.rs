//! `agent` steps: the loop of model turns and tool calls, journaled so a resumed run continues it.
//!
//! One attempt is one conversation. Its state lives in [`AgentRun`] while the
//! session runs and in the journal always: an `llm_call` event per turn (with
//! the calls it asked for), `tool_call_started` before a call runs and
//! `tool_call_finished` after. [`Runner::rebuild_agent`] reads them back.

use super::attempt::AttemptEnd;
use super::eval::{Evaluator, Names};
use super::scheduler::Runner;
use crate::ir::{AgentStep, Effect, NodeKind, OnInterrupt, Skill, StepKind, ToolKind};
use crate::journal::NewEvent;
use crate::llm::agent::{Message, ToolCall, ToolResult, ToolSpec, cut};
use crate::llm::mcp::McpTool;
use serde_json::{Value as Json, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How a tool the model sees is run.
#[derive(Debug, Clone)]
pub enum Route {
    /// A skill, as a child frame.
    Skill {
        /// Its key.
        key: String,
        /// Its effect.
        effect: Effect,
        /// What its steps say to do when a call was interrupted.
        on_interrupt: Option<OnInterrupt>,
    },
    /// A tool of a started MCP server.
    Mcp {
        /// The server's name.
        server: String,
        /// The tool's name there.
        tool: String,
        /// Its effect.
        effect: Effect,
        /// The schema its arguments are checked against.
        schema: Json,
    },
}

impl Route {
    /// What to do with a call that an interruption cut off, when its skill's steps say.
    pub fn on_interrupt(&self) -> Option<OnInterrupt> {
        match self {
            Route::Skill { on_interrupt, .. } => *on_interrupt,
            Route::Mcp { .. } => None,
        }
    }

    /// What calling it does.
    pub fn effect(&self) -> Effect {
        match self {
            Route::Skill { effect, .. } | Route::Mcp { effect, .. } => *effect,
        }
    }
}

/// A started MCP server: its session and its process.
pub struct McpConn {
    /// The protocol session.
    pub client: crate::llm::mcp::Client,
    /// The process (its group is killed when this is dropped).
    pub _process: super::attempt::Piped,
}

/// The call being run, or waiting for a person.
#[derive(Debug, Clone)]
pub struct Current {
    /// The call.
    pub call: ToolCall,
    /// Its number in the attempt (1 is the first), for child frame keys.
    pub number: u32,
    /// The turn that asked for it.
    pub turn: u32,
    /// Waiting for an approval.
    pub asking: bool,
}

/// One agent attempt in progress.
pub struct AgentRun {
    /// The attempt.
    pub attempt: u32,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// What the model is told it may call.
    pub specs: Vec<ToolSpec>,
    /// How each tool name runs.
    pub routes: HashMap<String, Route>,
    /// Model turns taken (from the journal on resume).
    pub turns: u32,
    /// Tool calls started.
    pub calls: u32,
    /// How often each (tool, arguments) was called.
    pub seen: HashMap<String, u32>,
    /// Calls of the last turn not started yet.
    pub pending: VecDeque<ToolCall>,
    /// Results of the last turn's calls so far.
    pub results: Vec<ToolResult>,
    /// The call running.
    pub current: Option<Current>,
    /// MCP servers by name (`None` while a call holds the session).
    pub servers: HashMap<String, Option<Box<McpConn>>>,
    /// Tokens and cost over the attempt's turns.
    pub tokens_in: u64,
    /// Output tokens over the attempt's turns.
    pub tokens_out: u64,
    /// Cost over the attempt's turns.
    pub cost_usd: f64,
    /// `step` as policy rules see it (null when no rule reads it).
    pub info: Json,
    /// The rendered system prompt.
    pub system: Option<String>,
    /// The directory the tools work in.
    pub cwd: Option<String>,
    /// Times the current turn was asked again after a passing trouble.
    pub retries: u32,
    /// Wire messages of the conversation already in the journal (in earlier turns' requests).
    pub sent: usize,
    /// A journaled final answer found on resume (the attempt ended before its status was written).
    pub answered: Option<String>,
    /// Calls interrupted by the end of an earlier session, to settle before anything else.
    pub interrupted: Vec<(ToolCall, u32, bool)>,
}

/// The signature of a call, for `max_repeats`.
pub fn signature(call: &ToolCall) -> String {
    format!("{}\u{0}{}", call.name, call.args)
}

/// The rendered inputs of an `agent` step (what its input hash covers).
pub fn inputs(
    agent: &AgentStep,
    skill: &Skill,
    ev: &Evaluator,
    names: &dyn Names,
) -> Result<Json, String> {
    let prompt = ev.text(skill, &agent.prompt, names)?;
    let system = agent
        .system
        .as_ref()
        .map(|v| ev.text(skill, v, names))
        .transpose()?;
    let m = &agent.model;
    let r = super::llm::resolve(m)?;
    let dir = agent
        .cwd
        .as_ref()
        .map(|v| ev.text(skill, v, names))
        .transpose()?;
    let mut servers = serde_json::Map::new();
    for tool in &agent.tools {
        let ToolKind::Mcp { server, .. } = &tool.kind else {
            continue;
        };
        if servers.contains_key(&server.name) {
            continue;
        }
        let argv = server
            .argv
            .iter()
            .map(|v| ev.text(skill, v, names))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = serde_json::Map::new();
        for (k, v) in &server.env {
            env.insert(k.clone(), json!(ev.text(skill, v, names)?));
        }
        let cwd = server
            .cwd
            .as_ref()
            .map(|v| ev.text(skill, v, names))
            .transpose()?
            .map(|c| within(dir.as_deref(), &c))
            .or_else(|| dir.clone());
        servers.insert(
            server.name.clone(),
            json!({ "argv": argv, "env": env, "cwd": cwd }),
        );
    }
    Ok(json!({
        "model": m.name,
        "model_key": m.key,
        "provider": r.provider.word(),
        "name": m.model,
        "base_url": r.base_url,
        "prompt": prompt,
        "system": system,
        "tools": agent.tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "cwd": dir,
        "servers": servers,
    }))
}

/// `path` taken relative to `dir` (unless it is absolute, or there is no `dir`).
pub fn within(dir: Option<&str>, path: &str) -> String {
    match dir {
        Some(d) if !std::path::Path::new(path).is_absolute() => {
            std::path::Path::new(d).join(path).display().to_string()
        }
        _ => path.to_string(),
    }
}

/// What a skill's steps say about an interrupted call: `ask` if one says it,
/// else `fail`, else `retry`; `None` when none says.
pub fn skill_on_interrupt(program: &crate::ir::Program, key: &str) -> Option<OnInterrupt> {
    let skill = program.skills.get(key)?;
    let said: Vec<OnInterrupt> = skill
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Step(s) => s.on_interrupt,
            _ => None,
        })
        .collect();
    [OnInterrupt::Ask, OnInterrupt::Fail, OnInterrupt::Retry]
        .into_iter()
        .find(|w| said.contains(w))
}

/// The strongest effect of a skill's steps, through the skills it calls.
pub fn skill_effect(program: &crate::ir::Program, key: &str, depth: u32) -> Effect {
    let Some(skill) = program.skills.get(key) else {
        return Effect::Write;
    };
    if depth > 16 {
        return Effect::Write;
    }
    let rank = |e: Effect| match e {
        Effect::Read => 0,
        Effect::Idempotent => 1,
        Effect::Write => 2,
    };
    let mut strongest = Effect::Read;
    for n in &skill.nodes {
        let NodeKind::Step(step) = &n.kind else {
            continue;
        };
        let e = match &step.kind {
            StepKind::Call { skill, .. } => skill_effect(program, skill, depth + 1),
            _ => step.effect,
        };
        if rank(e) > rank(strongest) {
            strongest = e;
        }
    }
    strongest
}

impl Runner<'_> {
    /// The agent step of instance `inst`.
    pub fn agent_of(&self, inst: usize) -> Option<(Arc<Skill>, usize)> {
        let (skill, node) = self.step(inst);
        match &skill.nodes[node].kind {
            NodeKind::Step(s) if matches!(s.kind, StepKind::Agent(_)) => Some((skill, node)),
            _ => None,
        }
    }

    /// On the first attempt of a session, an agent step whose earlier session
    /// stopped mid-attempt continues that attempt (its conversation is in the
    /// journal) instead of starting over.
    pub fn continue_agent_attempt(&mut self, inst: usize) {
        if self.insts[inst].attempt != 0 || self.agent_of(inst).is_none() {
            return;
        }
        let key = &self.insts[inst].key;
        let Some(prior) = self.prior.get(key) else {
            return;
        };
        let same = prior.input_hash.as_deref() == Some(self.insts[inst].input_hash.as_str());
        let unfinished = matches!(
            prior.status.as_str(),
            "running" | "interrupted" | "waiting" | "ready"
        );
        if same && unfinished && prior.attempt >= 1 {
            let earlier = prior.attempt - 1;
            self.insts[inst].attempt = earlier;
            self.insts[inst].budget = self.insts[inst].budget.saturating_add(earlier);
        }
    }

    /// Starts an `agent` attempt: its tools, its conversation (rebuilt from the
    /// journal when the attempt was begun before), its servers, then the loop.
    pub fn launch_agent(&mut self, inst: usize, attempt: u32, inputs: &Json, data: Json) {
        let key = self.insts[inst].key.clone();
        let Some((skill, node)) = self.agent_of(inst) else {
            return;
        };
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return;
        };
        self.set_status(&key, "running", Some(attempt), data);
        let feedback = self.insts[inst].feedback.clone();
        let mut prompt = inputs["prompt"].as_str().unwrap_or_default().to_string();
        let reads_feedback = matches!(&agent.prompt, crate::ir::Value::Template(t) if t.source.contains("attempt.feedback"));
        if attempt > 1 && !feedback.is_empty() && !reads_feedback {
            prompt.push_str(&format!(
                "\n\n---\nYour previous answer was not accepted:\n{feedback}\nTry again, fixing this."
            ));
        }
        let has_rules = [Some(&self.root_policy), Some(&skill.policy)]
            .into_iter()
            .flatten()
            .any(|p| p.forbid.is_some() || p.require_approval.is_some());
        let info = if has_rules {
            self.step_info(inst, inputs)
        } else {
            Json::Null
        };
        let mut run = AgentRun {
            attempt,
            messages: vec![Message::User(prompt)],
            specs: Vec::new(),
            routes: HashMap::new(),
            turns: 0,
            calls: 0,
            seen: HashMap::new(),
            pending: VecDeque::new(),
            results: Vec::new(),
            current: None,
            servers: HashMap::new(),
            tokens_in: 0,
            tokens_out: 0,
            cost_usd: 0.0,
            info,
            system: inputs["system"].as_str().map(str::to_string),
            answered: None,
            interrupted: Vec::new(),
            cwd: inputs["cwd"].as_str().map(str::to_string),
            retries: 0,
            sent: 0,
        };
        for tool in &agent.tools {
            if let ToolKind::Skill {
                key: skill_key,
                description,
                schema,
                effect,
            } = &tool.kind
            {
                let effect = effect.unwrap_or_else(|| skill_effect(&self.program, skill_key, 0));
                run.specs.push(ToolSpec {
                    name: tool.name.clone(),
                    description: description.clone(),
                    schema: schema.clone(),
                });
                run.routes.insert(
                    tool.name.clone(),
                    Route::Skill {
                        key: skill_key.clone(),
                        effect,
                        on_interrupt: skill_on_interrupt(&self.program, skill_key),
                    },
                );
            }
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.rebuild_agent(&key, agent, &mut run) {
            self.attempt_ended(inst, attempt, AttemptEnd::Error(e, None));
            return;
        }
        if run.turns > 0 {
            let text = format!(
                "attempt {attempt} goes on: {} turns and {} tool calls read back from the journal in {}",
                run.turns,
                run.calls,
                crate::ir::format_ms(started.elapsed().as_millis() as u64)
            );
            self.push(NewEvent::node(
                &self.run_id,
                "note",
                &key,
                Some(attempt),
                json!({ "text": text, "rebuilt_us": started.elapsed().as_micros() as u64 }),
            ));
        }
        self.agents.insert(inst, run);
        let servers: Vec<String> = agent
            .tools
            .iter()
            .filter_map(|t| match &t.kind {
                ToolKind::Mcp { server, .. } => Some(server.name.clone()),
                _ => None,
            })
            .fold(Vec::new(), |mut acc, s| {
                if !acc.contains(&s) {
                    acc.push(s);
                }
                acc
            });
        if servers.is_empty() {
            self.agent_next(inst);
        } else {
            self.start_servers(inst, attempt, &servers, inputs, step.timeout_ms);
        }
    }

    /// Reads an attempt's turns and calls back from the journal.
    fn rebuild_agent(
        &mut self,
        key: &str,
        agent: &AgentStep,
        run: &mut AgentRun,
    ) -> Result<(), String> {
        let events = self
            .journal
            .agent_events(&self.run_id, key, run.attempt)
            .map_err(|e| format!("cannot read the agent's journal: {e}"))?;
        let mut started: Vec<(ToolCall, u32, bool)> = Vec::new();
        for e in events {
            let d = &e.data;
            match e.kind.as_str() {
                "llm_call" => {
                    let Some(reply) = d.get("agent_reply").and_then(|r| {
                        crate::llm::agent::TurnReply::from_json(
                            r,
                            d["tokens_in"].as_u64().unwrap_or(0),
                            d["tokens_out"].as_u64().unwrap_or(0),
                        )
                    }) else {
                        continue;
                    };
                    run.turns += 1;
                    run.tokens_in += reply.tokens_in;
                    run.tokens_out += reply.tokens_out;
                    run.cost_usd += d["cost_usd"].as_f64().unwrap_or(0.0);
                    self.close_turn(run);
                    if reply.calls.is_empty() {
                        run.answered = Some(reply.text.clone());
                    }
                    run.pending = reply.calls.iter().cloned().collect();
                    run.messages.push(Message::Assistant {
                        text: reply.text,
                        calls: reply.calls,
                    });
                }
                "tool_call_started" => {
                    let id = d["call_id"].as_str().unwrap_or_default();
                    let Some(pos) = run.pending.iter().position(|c| c.id == id) else {
                        continue;
                    };
                    let Some(call) = run.pending.remove(pos) else {
                        continue;
                    };
                    run.calls += 1;
                    *run.seen.entry(signature(&call)).or_default() += 1;
                    let number = d["number"].as_u64().unwrap_or(u64::from(run.calls)) as u32;
                    started.push((call, number, d["awaiting_approval"] == true));
                }
                "tool_call_finished" => {
                    let id = d["call_id"].as_str().unwrap_or_default();
                    if let Some(pos) = started.iter().position(|(c, _, _)| c.id == id) {
                        let (call, _, _) = started.remove(pos);
                        let whole = d["result"].as_str().unwrap_or_default();
                        let (content, _) = cut(whole, agent.tool_result_max as usize);
                        run.results.push(ToolResult {
                            id: call.id,
                            name: call.name,
                            content,
                            is_error: d["is_error"] == true,
                        });
                    }
                }
                _ => {}
            }
        }
        run.interrupted = started;
        Ok(())
    }

    /// Moves the results gathered for the last turn into the conversation.
    pub fn close_turn(&self, run: &mut AgentRun) {
        if !run.results.is_empty() {
            run.messages
                .push(Message::Results(std::mem::take(&mut run.results)));
        }
    }

    /// The next thing the loop does: settle an interrupted call, run the next
    /// call of the turn, or ask the model again.
    pub fn agent_next(&mut self, inst: usize) {
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        if run.current.is_some() {
            return;
        }
        if let Some(text) = run.answered.take() {
            self.agent_answered(inst, text);
            return;
        }
        if let Some((call, number, asking)) =
            (!run.interrupted.is_empty()).then(|| run.interrupted.remove(0))
        {
            self.resume_call(inst, call, number, asking);
            return;
        }
        if let Some(call) = run.pending.pop_front() {
            self.start_tool_call(inst, call);
            return;
        }
        if let Some(mut run) = self.agents.remove(&inst) {
            self.close_turn(&mut run);
            self.agents.insert(inst, run);
        }
        self.request_turn(inst);
    }

    /// A call that an earlier session started and did not finish: run again
    /// when that is safe (`read`, `idempotent`, or it never ran because it was
    /// waiting for a person), otherwise tell the model it may have happened.
    fn resume_call(&mut self, inst: usize, call: ToolCall, number: u32, asking: bool) {
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        let effect = run.routes.get(&call.name).map(Route::effect);
        let turn = run.turns;
        if asking {
            run.current = Some(Current {
                call: call.clone(),
                number,
                turn,
                asking: true,
            });
            let prompt = self.tool_prompt(inst, &call);
            self.ask_tool(inst, prompt);
            return;
        }
        let on_interrupt = run.routes.get(&call.name).and_then(Route::on_interrupt);
        if on_interrupt == Some(OnInterrupt::Ask) {
            run.current = Some(Current {
                call: call.clone(),
                number,
                turn,
                asking: true,
            });
            let prompt = format!(
                "tool call `{}` with {} was interrupted and may or may not have taken effect: \
                 approve to run it again, reject to tell the model it failed (call {})",
                call.name, call.args, call.id
            );
            self.ask_tool(inst, prompt);
            return;
        }
        let again = match on_interrupt {
            Some(OnInterrupt::Retry) => true,
            Some(OnInterrupt::Fail) => false,
            _ => matches!(effect, Some(Effect::Read | Effect::Idempotent)),
        };
        match again {
            true => {
                run.current = Some(Current {
                    call: call.clone(),
                    number,
                    turn,
                    asking: false,
                });
                let key = self.insts[inst].key.clone();
                let attempt = run.attempt;
                self.push(NewEvent::node(
                    &self.run_id,
                    "note",
                    &key,
                    Some(attempt),
                    json!({ "text": format!("tool call `{}` ({}) was interrupted; it is safe to repeat, so it runs again", call.id, call.name) }),
                ));
                self.run_tool(inst, call, number);
            }
            false => {
                run.current = Some(Current {
                    call: call.clone(),
                    number,
                    turn,
                    asking: false,
                });
                let text = format!(
                    "flowc: this call of `{}` was interrupted (the run stopped while it ran). \
                     It may or may not have taken effect; check before calling it again.",
                    call.name
                );
                self.tool_finished(inst, text, true, json!({ "interrupted": true }));
            }
        }
    }

    /// The model answered without calls: the attempt's result.
    pub fn agent_answered(&mut self, inst: usize, text: String) {
        let Some(run) = self.agents.remove(&inst) else {
            return;
        };
        let Some((skill, node)) = self.agent_of(inst) else {
            return;
        };
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return;
        };
        let result = json!({
            "text": text,
            "turns": run.turns,
            "tool_calls": run.calls,
            "tokens_in": run.tokens_in,
            "tokens_out": run.tokens_out,
            "cost_usd": run.cost_usd,
        });
        let end = super::llm::typed_end(agent.output.as_ref(), result, &text);
        self.attempt_ended(inst, run.attempt, end);
    }

    /// Ends the attempt on a cap: journaled as a violation, the attempt fails.
    pub fn agent_cap(&mut self, inst: usize, rule: &str, value: u32, why: String) {
        let key = self.insts[inst].key.clone();
        self.violation(Some(&key), rule, json!(value), &why);
        let attempt = self
            .agents
            .remove(&inst)
            .map_or(self.insts[inst].attempt, |r| r.attempt);
        self.attempt_ended(inst, attempt, AttemptEnd::Error(why, None));
    }

    /// The timeout for one MCP request: the step's.
    pub fn mcp_timeout(timeout_ms: u64) -> Duration {
        Duration::from_millis(timeout_ms.clamp(1_000, 600_000))
    }

    /// The tools a started server offers this step: those it lists and `allow` names.
    pub fn add_server_tools(
        &mut self,
        inst: usize,
        agent: &AgentStep,
        server: &str,
        listed: &[McpTool],
    ) -> Result<(), String> {
        let Some(run) = self.agents.get_mut(&inst) else {
            return Ok(());
        };
        for tool in &agent.tools {
            let ToolKind::Mcp { server: s, tool: t } = &tool.kind else {
                continue;
            };
            if s.name != server {
                continue;
            }
            let wanted: Vec<&McpTool> = match t {
                Some(name) => match listed.iter().find(|l| &l.name == name) {
                    Some(l) => vec![l],
                    None => {
                        return Err(format!(
                            "`mcp` server `{server}` does not offer the tool `{name}` (it lists {})",
                            listed
                                .iter()
                                .map(|l| format!("`{}`", l.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                },
                None => listed.iter().filter(|l| s.allows(&l.name)).collect(),
            };
            for l in wanted {
                if run.routes.contains_key(&l.name) {
                    continue;
                }
                run.specs.push(ToolSpec {
                    name: l.name.clone(),
                    description: l.description.clone(),
                    schema: l.schema.clone(),
                });
                run.routes.insert(
                    l.name.clone(),
                    Route::Mcp {
                        server: server.to_string(),
                        tool: l.name.clone(),
                        effect: s.effect(&l.name),
                        schema: l.schema.clone(),
                    },
                );
            }
        }
        Ok(())
    }
}
