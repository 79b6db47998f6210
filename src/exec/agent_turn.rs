//! One model turn of an agent: caps, the request to the provider (fake, command,
//! HTTP or a recording), and what the reply asks for next.

use super::agent::AgentRun;
use super::attempt::{self, AttemptEnd};
use super::scheduler::{Msg, Runner};
use crate::ir::{AgentStep, NodeKind, Provider, StepKind};
use crate::journal::NewEvent;
use crate::llm::agent::{self as wire, Message, ToolSpec, TurnReply};
use crate::llm::limits::cost;
use crate::llm::{CallError, Request, estimate_tokens, schema};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

type TurnFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Result<TurnReply, CallError>,
                    &'static str,
                    Option<(usize, bool)>,
                ),
            > + Send,
    >,
>;

impl Runner<'_> {
    fn agent_step(&self, inst: usize) -> Option<(Arc<crate::ir::Skill>, Box<AgentStep>, u64)> {
        let (skill, node) = self.agent_of(inst)?;
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return None;
        };
        let StepKind::Agent(agent) = &step.kind else {
            return None;
        };
        let (agent, timeout) = (agent.clone(), step.timeout_ms);
        Some((skill, agent, timeout))
    }

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
        let attempt = run.attempt;
        let turn = run.turns + 1;
        let model = agent.model.clone();
        let resolved = match super::llm::resolve(&model) {
            Ok(r) => r,
            Err(e) => return self.end_agent(inst, AttemptEnd::Fatal(e)),
        };
        let schema = agent.output.as_ref().map(schema::schema);
        let max_tokens = agent.max_tokens.or(model.max_tokens);
        let request = Request {
            model: model.name.clone(),
            provider: resolved.provider,
            name: model.model.clone().unwrap_or_default(),
            base_url: resolved.base_url.clone(),
            api_key: None,
            system: run.system.clone(),
            prompt: String::new(),
            schema,
            structured: model.structured_output,
            temperature: agent.temperature.or(model.temperature),
            max_tokens,
            timeout: model
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(super::llm::DEFAULT_TIMEOUT)
                .min(Duration::from_millis(timeout_ms.max(1))),
        };
        let messages = run.messages.clone();
        let specs = run.specs.clone();
        let (url, body) = wire::build(&request, &messages, &specs);
        let est_in = estimate_tokens(&body.to_string());
        let est_out = max_tokens.unwrap_or(0);
        // The journal keeps what is new since the last turn it holds (the
        // conversation before it is in the earlier events), and the tools once.
        let sent = run.sent;
        let mut body = body;
        let total = body["messages"].as_array().map_or(0, Vec::len);
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
        let mut journaled = json!({
            "provider": resolved.provider.word(),
            "url": matches!(resolved.provider, Provider::OpenAi | Provider::Anthropic).then_some(url),
            "body": super::llm::journaled_body(body),
        });
        if let Some(r) = self.agents.get_mut(&inst) {
            r.sent = total;
        }
        if let Some((rule, value, why)) = self.over_cap(&model, est_in, est_out) {
            self.agents.remove(&inst);
            self.refuse_call(inst, attempt, rule, value, why);
            return;
        }
        let cancel = Arc::new(tokio::sync::Notify::new());
        let call: TurnFuture = if let Some((rec, calls)) = &self.llm.replay {
            let recorded = calls.get(&(key.clone(), attempt, turn)).cloned();
            let rec = rec.clone();
            let key = key.clone();
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
        } else {
            match self.turn_call(
                inst,
                attempt,
                turn,
                &model,
                request,
                &messages,
                &specs,
                est_in,
                &mut journaled,
            ) {
                Ok(f) => f,
                Err(e) => return self.end_agent(inst, AttemptEnd::Fatal(e)),
            }
        };
        let wait = if self.llm.replay.is_some() {
            0
        } else {
            self.rate_wait(&model, &key, attempt, est_in + est_out)
        };
        self.insts[inst].cancel = Some(cancel.clone());
        self.running += 1;
        self.spawn.push(Box::pin(async move {
            if wait > 0 {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    () = cancel.notified() => {
                        return Msg::Attempt { inst, attempt, end: AttemptEnd::Cancelled };
                    }
                }
            }
            let started = Instant::now();
            let (outcome, source, fake_answer) = tokio::select! {
                r = call => r,
                () = cancel.notified() => {
                    return Msg::Attempt { inst, attempt, end: AttemptEnd::Cancelled };
                }
            };
            Msg::AgentTurn {
                inst,
                attempt,
                turn: Box::new(Turn {
                    request: journaled,
                    outcome,
                    duration_ms: started.elapsed().as_millis() as u64,
                    source,
                    fake_answer,
                }),
            }
        }));
    }

    /// The future that asks the model for one turn through its provider.
    #[allow(clippy::too_many_arguments)]
    fn turn_call(
        &mut self,
        inst: usize,
        attempt: u32,
        turn: u32,
        model: &Arc<crate::ir::Model>,
        mut request: Request,
        messages: &[Message],
        specs: &[ToolSpec],
        est_in: u64,
        journaled: &mut Json,
    ) -> Result<TurnFuture, String> {
        let key = self.insts[inst].key.clone();
        Ok(match request.provider {
            Provider::Fake => {
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
                Box::pin(async move {
                    (
                        script.turn_answer(i, est_in, turn),
                        "fake",
                        Some((i, in_order)),
                    )
                })
            }
            Provider::Command => {
                let input = wire::command_input(request.system.as_deref(), messages, specs);
                let mut env = vec![("FLOWC_LLM_AGENT".to_string(), "1".to_string())];
                if let Some(s) = &request.schema {
                    env.push(("FLOWC_LLM_SCHEMA".to_string(), s.to_string()));
                }
                let spec = self.command_process(
                    inst,
                    attempt,
                    model,
                    input.to_string(),
                    env,
                    request.timeout,
                )?;
                if let Some(plan) = &spec.sandbox {
                    journaled["sandbox"] = plan.record();
                }
                let who = model.name.clone();
                let est = estimate_tokens(&input.to_string());
                let cancel = Arc::new(tokio::sync::Notify::new());
                Box::pin(async move {
                    let outcome = match attempt::run_process(spec, cancel, None).await {
                        AttemptEnd::Result(r) if r["exit_code"] == 0 => {
                            wire::command_reply(r["stdout"].as_str().unwrap_or_default(), est)
                                .map_err(|e| {
                                    CallError::transient(format!(
                                        "the command of model `{who}`: {e}"
                                    ))
                                })
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
            Provider::OpenAi | Provider::Anthropic => {
                request.api_key = super::llm::api_key(model)?;
                let messages = messages.to_vec();
                let specs = specs.to_vec();
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
        let model = &agent.model;
        let key = self.insts[inst].key.clone();
        let (tokens_in, tokens_out) = match &turn.outcome {
            Ok(r) => (r.tokens_in, r.tokens_out),
            Err(_) => (0, 0),
        };
        let cost_usd = cost(tokens_in, tokens_out, model.input_price, model.output_price);
        let mut data = json!({
            "model": model.name,
            "model_key": model.key,
            "prompt_version": agent_prompt_version(&agent),
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
                data["reply"] = json!(super::llm::cap(&r.text));
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
        if let Some(rec) = &self.llm.replay {
            data["replayed_from"] = json!(rec.0);
        }
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
        let Some(run) = self.agents.get_mut(&inst) else {
            return;
        };
        run.turns = number;
        run.retries = 0;
        run.tokens_in += tokens_in;
        run.tokens_out += tokens_out;
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
        self.push(NewEvent::node(
            &self.run_id,
            "note",
            &key,
            Some(attempt),
            json!({ "text": text }),
        ));
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
    super::frame::hash(&[&base, &tools.join(",")])[..12].to_string()
}
