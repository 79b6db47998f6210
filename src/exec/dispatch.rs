//! What the scheduler does with each message its tasks send.

use super::scheduler::{Msg, RunEnd, Runner};
use crate::journal::JournalError;
use serde_json::json;

impl Runner<'_> {
    pub(super) fn handle(&mut self, msg: Msg) -> Result<(), JournalError> {
        match msg {
            Msg::Attempt { inst, attempt, end } => {
                self.running = self.running.saturating_sub(1);
                self.attempt_ended(inst, attempt, end);
            }
            Msg::Llm {
                inst,
                attempt,
                call,
            } => {
                self.running = self.running.saturating_sub(1);
                self.llm_returned(inst, attempt, *call);
            }
            Msg::AgentTurn {
                inst,
                attempt,
                turn,
            } => {
                self.running = self.running.saturating_sub(1);
                self.turn_returned(inst, attempt, *turn);
            }
            Msg::AgentServers {
                inst,
                attempt,
                started,
            } => {
                self.running = self.running.saturating_sub(1);
                self.servers_started(inst, attempt, started);
            }
            Msg::AgentMcp {
                inst,
                attempt,
                done,
            } => {
                self.running = self.running.saturating_sub(1);
                self.mcp_returned(inst, attempt, *done);
            }
            Msg::AgentRetry { inst, attempt } => self.retry_turn(inst, attempt),
            Msg::Retry { inst } => {
                self.timers = self.timers.saturating_sub(1);
                if !self.insts[inst].done && !self.frames[self.insts[inst].frame].stopping {
                    self.launch.push_back(inst);
                } else if !self.insts[inst].done {
                    self.cancel_inst(inst);
                }
            }
            Msg::Decision { inst, decision } => {
                self.prompting = false;
                self.decide(inst, decision);
            }
            Msg::Tail { inst, line } => {
                let key = self.insts[inst].key.clone();
                self.observer.tail(&key, &crate::secrets::redact(line));
            }
            Msg::Interrupt => {
                eprintln!(
                    "flowc: interrupted; stopping running steps (press Ctrl-C again to exit at once)"
                );
                self.stop_run(RunEnd::Interrupted, "interrupted by a signal".into());
            }
            Msg::Heartbeat => self.journal.heartbeat(&self.run_id)?,
            Msg::Cancel(by) => {
                if self.stop.is_none() {
                    self.stop_run(RunEnd::Cancelled, format!("cancelled by {by}"));
                }
            }
            Msg::RunTimeout => {
                let cap = crate::ir::format_ms(self.root_policy.run_timeout_ms);
                let why = format!(
                    "cap `run_timeout` ({cap}) of policy `{}` reached",
                    self.root_policy.name
                );
                self.violation(None, "run_timeout", json!(cap), &why);
                self.stop_run(RunEnd::Failed, why);
            }
        }
        Ok(())
    }
}
