//! One model turn of an agent: caps, the request to the provider (fake, command,
//! HTTP or a recording), and what the reply asks for next.

use super::AgentRun;
use crate::exec::attempt::{self, AttemptEnd};
use crate::exec::scheduler::{Msg, Runner};
use crate::ir::{AgentStep, Provider};
use crate::journal::NewEvent;
use crate::llm::agent::{self as wire, Message, ToolSpec, TurnReply};
use crate::llm::limits::cost;
use crate::llm::{CallError, Request, estimate_tokens, schema};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::Duration;

/// How often one turn is asked again after a passing trouble before the attempt ends.
pub const TURN_RETRIES: u32 = 3;

/// A finished model turn, on its way back to the scheduler.
#[derive(Debug)]
pub struct Turn {
    request: Json,
    outcome: Result<TurnReply, CallError>,
    duration_ms: u64,
    source: &'static str,
    fake_answer: Option<(usize, bool)>,
}

type TurnFuture = crate::exec::llm_call::CallFuture<TurnReply>;

impl Runner<'_> {
    /// Asks the model for the next turn, unless a cap says no.
    pub fn request_turn(&mut self, inst: usize) {
        let Some((_, agent, timeout_ms)) = self.agent_step(inst) else {
            return;
        };
        let Some(run) = self.agents.get(&inst) else {
            return;
        };
        if run.turns >= agent.max_turns {
            let why = format!(
                "cap `max_turns` ({}) reached: the model did not answer within {} turns",
                agent.max_turns, agent.max_turns
            );
            self.agent_cap(inst, "max_turns", agent.max_turns, why);
            return;
        }
        let key = self.insts[inst].key.clone();
        let (attempt, turn) = (run.attempt, run.turns + 1);
        let (messages, specs) = (run.messages.clone(), run.specs.clone());
        let model = agent.model.clone();
        let request = match turn_request(&agent, run.system.clone(), timeout_ms) {
            Ok(r) => r,
            Err(e) => return self.end_agent(inst, AttemptEnd::Fatal(e)),
        };
        let (mut journaled, est_in) = self.journaled_turn(inst, &request, &messages, &specs);
        let est_out = request.max_tokens.unwrap_or(0);
        if let Some((rule, value, why)) = self.over_cap(&model, est_in, est_out) {
            self.agents.remove(&inst);
            self.refuse_call(inst, attempt, rule, value, why);
            return;
        }
        let call: TurnFuture = if let Some((rec, calls)) = &self.llm.replay {
            replayed_turn(
                calls.get(&(key.clone(), attempt, turn)).cloned(),
                rec,
                &key,
                attempt,
                turn,
            )
        } else {
            let asked = TurnAsk {
                attempt,
                turn,
                model: &model,
                messages: &messages,
                specs: &specs,
                est_in,
            };
            match self.turn_call(inst, asked, request, &mut journaled) {
                Ok(f) => f,
                Err(e) => return self.end_agent(inst, AttemptEnd::Fatal(e)),
            }
        };
        let wait = if self.llm.replay.is_some() {
            0
        } else {
            self.rate_wait(&model, &key, attempt, est_in + est_out)
        };
        self.spawn_turn(inst, attempt, call, journaled, wait);
    }

    /// The request as journaled (what is new since the last turn the journal
    /// holds, the tools once), and the token estimate of the whole request.
    fn journaled_turn(
        &mut self,
        inst: usize,
        request: &Request,
        messages: &[Message],
        specs: &[ToolSpec],
    ) -> (Json, u64) {
        let (url, mut body) = wire::build(request, messages, specs);
        let est_in = estimate_tokens(&body.to_string());
        let total = body["messages"].as_array().map_or(0, Vec::len);
        let sent = self.agents.get(&inst).map_or(0, |r| r.sent);
        if sent > 0 {
            if let Some(m) = body["messages"].as_array_mut() {
                m.drain(..sent.min(m.len()));
            }
            if let Some(b) = body.as_object_mut() {
                b.remove("tools");
                b.remove("system");
            }
            body["messages_before"] = json!(sent);
        }
        if let Some(r) = self.agents.get_mut(&inst) {
            r.sent = total;
        }
        let http = matches!(request.provider, Provider::OpenAi | Provider::Anthropic);
        let journaled = json!({
            "provider": request.provider.word(),
            "url": http.then_some(url),
            "body": crate::exec::llm_reply::journaled_body(body),
        });
        (journaled, est_in)
    }

    /// The task that waits for the rate limit, asks, and reports the turn.
    fn spawn_turn(
        &mut self,
        inst: usize,
        attempt: u32,
        call: TurnFuture,
        journaled: Json,
        wait: u64,
    ) {
        let cancel = Arc::new(tokio::sync::Notify::new());
        self.insts[inst].cancel = Some(cancel.clone());
        self.running += 1;
        self.spawn.push(Box::pin(async move {
            let Some(((outcome, source, fake_answer), duration_ms)) =
                crate::exec::llm_call::after_rate_limit(wait, &cancel, call).await
            else {
                return Msg::Attempt {
                    inst,
                    attempt,
                    end: AttemptEnd::Cancelled,
                };
            };
            Msg::AgentTurn {
                inst,
                attempt,
                turn: Box::new(Turn {
                    request: journaled,
                    outcome,
                    duration_ms,
                    source,
                    fake_answer,
                }),
            }
        }));
    }

    /// The future that asks the model for one turn through its provider.
    fn turn_call(
        &mut self,
        inst: usize,
        ask: TurnAsk<'_>,
        mut request: Request,
        journaled: &mut Json,
    ) -> Result<TurnFuture, String> {
        Ok(match request.provider {
            Provider::Fake => self.fake_turn(inst, &ask)?,
            Provider::Command => {
                let input = wire::command_input(request.system.as_deref(), ask.messages, ask.specs);
                let mut env = vec![("FLOWC_LLM_AGENT".to_string(), "1".to_string())];
                if let Some(s) = &request.schema {
                    env.push(("FLOWC_LLM_SCHEMA".to_string(), s.to_string()));
                }
                let text = input.to_string();
                let est = estimate_tokens(&text);
                let spec =
                    self.command_process(inst, ask.attempt, ask.model, text, env, request.timeout)?;
                if let Some(plan) = &spec.sandbox {
                    journaled["sandbox"] = plan.record();
                }
                command_turn(spec, ask.model.name.clone(), est)
            }
            Provider::OpenAi | Provider::Anthropic => {
                request.api_key = crate::exec::llm::api_key(ask.model)?;
                let (messages, specs) = (ask.messages.to_vec(), ask.specs.to_vec());
                Box::pin(async move {
                    let outcome = tokio::task::spawn_blocking(move || {
                        wire::call(&request, &messages, &specs)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        Err(CallError::transient(format!("the request crashed: {e}")))
                    });
                    (outcome, "http", None)
                })
            }
        })
    }

    /// A turn of the `fake` provider: the next answer of its script for this step.
    fn fake_turn(&mut self, inst: usize, ask: &TurnAsk<'_>) -> Result<TurnFuture, String> {
        let (attempt, turn, model) = (ask.attempt, ask.turn, ask.model);
        let key = self.insts[inst].key.clone();
        let path = model.script.clone().unwrap_or_default();
        let name = self.frames[self.insts[inst].frame].skill.nodes[self.insts[inst].node]
            .name
            .clone();
        let script = self.llm.script(&path)?;
        let used = self.llm.fake_used.entry(model.key.clone()).or_default();
        let Some(i) = script.pick_turn(&key, &name, attempt, turn, used) else {
            return Err(format!(
                "the fake model `{}` has no answer left for step `{key}`, attempt {attempt}, \
                 turn {turn} (answers file `{path}`)",
                model.name
            ));
        };
        let in_order = script.answers[i].turn.is_none();
        if in_order {
            used.push(i);
        }
        let est_in = ask.est_in;
        Ok(Box::pin(async move {
            (
                script.turn_answer(i, est_in, turn),
                "fake",
                Some((i, in_order)),
            )
        }))
    }

    /// A model turn came back: journal it, count it, and go on.
    pub fn turn_returned(&mut self, inst: usize, attempt: u32, turn: Turn) {
        self.insts[inst].cancel = None;
        let Some((_, agent, _)) = self.agent_step(inst) else {
            return;
        };
        let Some(run) = self.agents.get(&inst).filter(|r| r.attempt == attempt) else {
            return;
        };
        let number = run.turns + 1;
        let key = self.insts[inst].key.clone();
        let replayed = self.llm.replay.as_ref().map(|r| r.0.clone());
        let (data, tokens_in, tokens_out, cost_usd) = turn_event(&agent, &turn, number, replayed);
        self.llm.tokens += tokens_in + tokens_out;
        self.llm.cost += cost_usd;
        self.push(NewEvent::node(
            &self.run_id,
            "llm_call",
            &key,
            Some(attempt),
            data,
        ));
        let reply = match turn.outcome {
            Ok(r) => r,
            Err(e) if e.transient => return self.turn_failed(inst, attempt, e),
            Err(e) => return self.end_agent(inst, AttemptEnd::Fatal(e.message)),
        };
        self.turn_reply(inst, number, reply, cost_usd);
    }

    /// A turn's reply, counted: the answer, or its calls to run.
    fn turn_reply(&mut self, inst: usize, number: u32, reply: TurnReply, cost_usd: f64) {
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        run.turns = number;
        run.retries = 0;
        run.tokens_in += reply.tokens_in;
        run.tokens_out += reply.tokens_out;
        run.cost_usd += cost_usd;
        if reply.calls.is_empty() {
            run.messages.push(Message::Assistant {
                text: reply.text.clone(),
                calls: Vec::new(),
            });
            self.agent_answered(inst, reply.text);
            return;
        }
        run.pending = reply.calls.iter().cloned().collect();
        run.messages.push(Message::Assistant {
            text: reply.text,
            calls: reply.calls,
        });
        self.agent_next(inst);
    }

    /// A passing trouble (429, 5xx, a dropped connection): the same turn is
    /// asked again after a wait, up to [`TURN_RETRIES`] times, so the turns
    /// and calls already done are kept; then the attempt ends.
    fn turn_failed(&mut self, inst: usize, attempt: u32, e: CallError) {
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        if run.retries >= TURN_RETRIES {
            return self.end_agent(inst, AttemptEnd::Transient(e.message, e.retry_after_ms));
        }
        run.retries += 1;
        let wait = e
            .retry_after_ms
            .unwrap_or(1000 << (run.retries - 1))
            .min(60_000);
        let text = format!(
            "the model call failed ({}); turn {} is asked again in {}",
            e.message,
            run.turns + 1,
            crate::ir::format_ms(wait)
        );
        let key = self.insts[inst].key.clone();
        self.note(&key, attempt, json!({ "text": text }));
        self.timers += 1;
        self.spawn.push(Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(wait)).await;
            Msg::AgentRetry { inst, attempt }
        }));
    }

    /// The wait after a passing trouble is over.
    pub fn retry_turn(&mut self, inst: usize, attempt: u32) {
        self.timers = self.timers.saturating_sub(1);
        let live = self.agents.get(&inst).is_some_and(|r| r.attempt == attempt)
            && !self.insts[inst].done
            && self.stop.is_none();
        if live {
            self.request_turn(inst);
        }
    }

    /// Ends the attempt (the agent's servers stop with it).
    pub fn end_agent(&mut self, inst: usize, end: AttemptEnd) {
        let attempt = self
            .agents
            .remove(&inst)
            .map_or(self.insts[inst].attempt, |r: AgentRun| r.attempt);
        self.attempt_ended(inst, attempt, end);
    }
}

/// What one turn asks, for the provider call.
struct TurnAsk<'a> {
    attempt: u32,
    turn: u32,
    model: &'a Arc<crate::ir::Model>,
    messages: &'a [Message],
    specs: &'a [ToolSpec],
    est_in: u64,
}

/// The request of a turn: the model's settings, the system prompt, the output schema.
fn turn_request(
    agent: &AgentStep,
    system: Option<String>,
    timeout_ms: u64,
) -> Result<Request, String> {
    let model = &agent.model;
    let resolved = crate::exec::llm::resolve(model)?;
    Ok(Request {
        model: model.name.clone(),
        provider: resolved.provider,
        name: model.model.clone().unwrap_or_default(),
        base_url: resolved.base_url,
        api_key: None,
        system,
        prompt: String::new(),
        schema: agent.output.as_ref().map(schema::schema),
        structured: model.structured_output,
        temperature: agent.temperature.or(model.temperature),
        max_tokens: agent.max_tokens.or(model.max_tokens),
        timeout: model
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(crate::exec::llm::DEFAULT_TIMEOUT)
            .min(Duration::from_millis(timeout_ms.max(1))),
    })
}

/// A turn answered from the recording of run `rec` (`--replay-llm`).
fn replayed_turn(
    recorded: Option<Json>,
    rec: &str,
    key: &str,
    attempt: u32,
    turn: u32,
) -> TurnFuture {
    let (rec, key) = (rec.to_string(), key.to_string());
    Box::pin(async move {
        let outcome = match recorded.as_ref().and_then(|d| {
            TurnReply::from_json(
                &d["agent_reply"],
                d["tokens_in"].as_u64().unwrap_or(0),
                d["tokens_out"].as_u64().unwrap_or(0),
            )
        }) {
            Some(r) => Ok(r),
            None => Err(CallError::fatal(format!(
                "the recording of run {rec} has no turn {turn} for step `{key}`, attempt {attempt}"
            ))),
        };
        (outcome, "replay", None)
    })
}

/// A turn of the `command` provider: its process, and its reply read.
fn command_turn(spec: crate::exec::attempt::ProcessSpec, who: String, est: u64) -> TurnFuture {
    let cancel = Arc::new(tokio::sync::Notify::new());
    Box::pin(async move {
        let outcome = match attempt::run_process(spec, cancel, None).await {
            AttemptEnd::Result(r) if r["exit_code"] == 0 => {
                wire::command_reply(r["stdout"].as_str().unwrap_or_default(), est)
                    .map_err(|e| CallError::transient(format!("the command of model `{who}`: {e}")))
            }
            AttemptEnd::Result(r) => Err(CallError::transient(format!(
                "the command of model `{who}` exited with code {}: {}",
                r["exit_code"],
                r["stderr"].as_str().unwrap_or_default().trim()
            ))),
            other => Err(CallError::transient(format!(
                "the command of model `{who}` did not finish: {other:?}"
            ))),
        };
        (outcome, "command", None)
    })
}

/// The `llm_call` event of a turn, and its tokens in, out and cost.
fn turn_event(
    agent: &AgentStep,
    turn: &Turn,
    number: u32,
    replayed: Option<String>,
) -> (Json, u64, u64, f64) {
    let model = &agent.model;
    let (tokens_in, tokens_out) = match &turn.outcome {
        Ok(r) => (r.tokens_in, r.tokens_out),
        Err(_) => (0, 0),
    };
    let cost_usd = cost(tokens_in, tokens_out, model.input_price, model.output_price);
    let mut data = json!({
        "model": model.name,
        "model_key": model.key,
        "prompt_version": agent_prompt_version(agent),
        "source": turn.source,
        "request": turn.request,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": cost_usd,
        "duration": turn.duration_ms,
        "turn": number,
    });
    match &turn.outcome {
        Ok(r) => {
            data["reply"] = json!(crate::exec::llm_reply::cap(&r.text));
            data["agent_reply"] = r.to_json();
        }
        Err(e) => {
            data["error"] = json!(e.message);
            data["status"] = json!(e.status);
            data["transient"] = json!(e.transient);
            data["retry_after"] = json!(e.retry_after_ms);
        }
    }
    if let Some((i, in_order)) = turn.fake_answer {
        data["fake_answer"] = json!(i);
        data["fake_in_order"] = json!(in_order);
    }
    if let Some(rec) = replayed {
        data["replayed_from"] = json!(rec);
    }
    (data, tokens_in, tokens_out, cost_usd)
}

/// An agent's prompt version: its prompt and system text as written, and its tool names.
fn agent_prompt_version(agent: &AgentStep) -> String {
    let llm = crate::ir::LlmStep {
        model: agent.model.clone(),
        system: agent.system.clone(),
        prompt: agent.prompt.clone(),
        output: None,
        temperature: None,
        max_tokens: None,
    };
    let base = crate::llm::prompt_version(&llm);
    let tools: Vec<&str> = agent.tools.iter().map(|t| t.name.as_str()).collect();
    crate::exec::frame::hash(&[&base, &tools.join(",")])[..12].to_string()
}
