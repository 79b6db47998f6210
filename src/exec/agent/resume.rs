//! Continuing an agent attempt an earlier session began: the attempt number,
//! the conversation read back from the journal, and each call it left unfinished.

use super::{AgentRun, Current, Route, signature};
use crate::exec::scheduler::Runner;
use crate::ir::{AgentStep, Effect, OnInterrupt};
use crate::llm::agent::{Message, ToolCall, ToolResult, cut};
use serde_json::json;

impl Runner<'_> {
    /// On the first attempt of a session, an agent step whose earlier session
    /// stopped mid-attempt continues that attempt (its conversation is in the
    /// journal) instead of starting over.
    pub fn continue_agent_attempt(&mut self, inst: usize) {
        if self.insts[inst].attempt != 0 || self.agent_step(inst).is_none() {
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

    /// Reads an attempt's turns and calls back from the journal.
    pub(super) fn rebuild_agent(
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

    /// A call that an earlier session started and did not finish: run again
    /// when that is safe (`read`, `idempotent`, or it never ran because it was
    /// waiting for a person), otherwise tell the model it may have happened.
    pub(super) fn resume_call(&mut self, inst: usize, call: ToolCall, number: u32, asking: bool) {
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
                self.note(&key, attempt, json!({ "text": format!("tool call `{}` ({}) was interrupted; it is safe to repeat, so it runs again", call.id, call.name) }));
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
}
