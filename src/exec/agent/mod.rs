//! `agent` steps: the loop of model turns and tool calls, journaled so a resumed run continues it.
//!
//! One attempt is one conversation. Its state lives in [`AgentRun`] while the
//! session runs and in the journal always: an `llm_call` event per turn (with
//! the calls it asked for), `tool_call_started` before a call runs and
//! `tool_call_finished` after. [`Runner::rebuild_agent`] reads them back.

mod resume;
pub mod servers;
pub mod tools;
pub mod turn;

use super::attempt::AttemptEnd;
use super::eval::{Evaluator, Names};
use super::scheduler::Runner;
use crate::ir::{AgentStep, Effect, NodeKind, OnInterrupt, Skill, StepKind, ToolKind};
use crate::llm::agent::{Message, ToolCall, ToolResult, ToolSpec};
use serde_json::{Value as Json, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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
    let mut out = super::llm::model_inputs(&agent.model, prompt, system)?;
    out["tools"] = json!(
        agent
            .tools
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
    );
    out["cwd"] = json!(dir);
    out["servers"] = Json::Object(servers);
    Ok(out)
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
    /// The agent step of instance `inst`: its skill, the step (shared), its timeout.
    pub fn agent_step(&self, inst: usize) -> Option<(Arc<Skill>, Arc<AgentStep>, u64)> {
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return None;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return None;
        };
        let (agent, timeout) = (agent.clone(), step.timeout_ms);
        Some((skill, agent, timeout))
    }

    /// Starts an `agent` attempt: its tools, its conversation (rebuilt from the
    /// journal when the attempt was begun before), its servers, then the loop.
    pub fn launch_agent(&mut self, inst: usize, attempt: u32, inputs: &Json, data: Json) {
        let key = self.insts[inst].key.clone();
        let Some((skill, agent, timeout_ms)) = self.agent_step(inst) else {
            return;
        };
        self.set_status(&key, "running", Some(attempt), data);
        let mut run = self.new_agent_run(inst, attempt, &agent, &skill, inputs);
        let started = std::time::Instant::now();
        if let Err(e) = self.rebuild_agent(&key, &agent, &mut run) {
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
            let data = json!({ "text": text, "rebuilt_us": started.elapsed().as_micros() as u64 });
            self.note(&key, attempt, data);
        }
        self.agents.insert(inst, run);
        let mut servers: Vec<String> = Vec::new();
        for t in &agent.tools {
            if let ToolKind::Mcp { server, .. } = &t.kind
                && !servers.contains(&server.name)
            {
                servers.push(server.name.clone());
            }
        }
        if servers.is_empty() {
            self.agent_next(inst);
        } else {
            self.start_servers(inst, attempt, &servers, inputs, timeout_ms);
        }
    }

    /// A fresh attempt's state: the prompt (with the last rejection's feedback),
    /// `step` for the policy rules, and the skill tools' specs and routes.
    fn new_agent_run(
        &self,
        inst: usize,
        attempt: u32,
        agent: &AgentStep,
        skill: &Skill,
        inputs: &Json,
    ) -> AgentRun {
        let feedback = &self.insts[inst].feedback;
        let mut prompt = inputs["prompt"].as_str().unwrap_or_default().to_string();
        let reads_feedback = matches!(&agent.prompt, crate::ir::Value::Template(t) if t.source.contains("attempt.feedback"));
        if attempt > 1 && !feedback.is_empty() && !reads_feedback {
            prompt.push_str(&format!(
                "\n\n---\nYour previous answer was not accepted:\n{feedback}\nTry again, fixing this."
            ));
        }
        let has_rules = [&self.root_policy, &skill.policy]
            .iter()
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
            let ToolKind::Skill {
                key,
                description,
                schema,
                effect,
            } = &tool.kind
            else {
                continue;
            };
            run.specs.push(ToolSpec {
                name: tool.name.clone(),
                description: description.clone(),
                schema: schema.clone(),
            });
            let route = Route::Skill {
                key: key.clone(),
                effect: effect.unwrap_or_else(|| skill_effect(&self.program, key, 0)),
                on_interrupt: skill_on_interrupt(&self.program, key),
            };
            run.routes.insert(tool.name.clone(), route);
        }
        run
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

    /// The model answered without calls: the attempt's result.
    pub fn agent_answered(&mut self, inst: usize, text: String) {
        let Some(run) = self.agents.remove(&inst) else {
            return;
        };
        let Some((_, agent, _)) = self.agent_step(inst) else {
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
}
