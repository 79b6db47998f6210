//! Settling node instances and ending frames: dependents started, failures and cancellations carried to the frame and its owner, the skill's `return`.

use super::attempt::AttemptEnd;
use super::frame::{NodeState, Owner, Settle, hash};
use super::scheduler::*;
use serde_json::{Value as Json, json};

impl Runner<'_> {
    /// Binds a skipped node's names: null, or the result a person gave.
    pub fn bind_skipped(&mut self, inst: usize, output: Option<Json>) {
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = self.frames[frame].skill.clone();
        let vars = self.frames[frame].vars.clone();
        vars.set(&skill.nodes[node].name, output.unwrap_or(Json::Null));
        for name in inner_step_names(&skill, node) {
            vars.set(&name, Json::Null);
        }
    }

    /// A node finished one way or another: update its frame and start dependents.
    pub fn settle(&mut self, inst: usize, how: Settle) {
        if self.insts[inst].done {
            return;
        }
        self.insts[inst].done = true;
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let name = self.frames[frame].skill.nodes[node].name.clone();
        let out = self.frames[frame]
            .vars
            .get_local(&name)
            .unwrap_or(Json::Null)
            .to_string();
        let out_hash = hash(&[&out]);
        let f = &mut self.frames[frame];
        f.state.insert(node, NodeState::Settled(how));
        f.out_hash.insert(node, out_hash);
        f.remaining = f.remaining.saturating_sub(1);
        f.active = f.active.saturating_sub(1);
        let dependents = f.dependents.get(&node).cloned().unwrap_or_default();
        for d in dependents {
            let f = &mut self.frames[frame];
            if let Some(left) = f.deps_left.get_mut(&d) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    self.work.push_back(Work::Start(frame, d));
                }
            }
        }
        self.check_frame_end(frame);
    }

    /// A node failed for good (`on_failure: fail`, or an abort): its frame stops.
    pub fn fail_frame(&mut self, inst: usize, why: String) {
        self.insts[inst].done = true;
        let frame = self.insts[inst].frame;
        let key = self.insts[inst].key.clone();
        {
            let f = &mut self.frames[frame];
            f.active = f.active.saturating_sub(1);
            if f.failure.is_none() {
                f.failure = Some((key, why));
            }
        }
        self.cancel_frame(frame);
        self.check_frame_end(frame);
    }

    /// Stops a frame: nothing new starts, running instances are cancelled.
    pub fn cancel_frame(&mut self, frame: usize) {
        self.frames[frame].stopping = true;
        let active: Vec<usize> = self.frames[frame]
            .state
            .values()
            .filter_map(|s| match s {
                NodeState::Active(i) => Some(*i),
                _ => None,
            })
            .collect();
        for inst in active {
            if !self.insts[inst].done {
                self.cancel_inst(inst);
            }
        }
        self.check_frame_end(frame);
    }

    /// Cancels one instance: kills its attempt, or stops its child frames.
    pub fn cancel_inst(&mut self, inst: usize) {
        if let Some(c) = &self.insts[inst].cancel {
            // The attempt task reports `Cancelled`; the status is written then.
            c.notify_one();
            return;
        }
        let children: Vec<usize> = self
            .frames
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.ended && matches!(f.owner, Owner::Loop(i) | Owner::ForElem(i, _) | Owner::Call(i) | Owner::Tool(i) if i == inst))
            .map(|(i, _)| i)
            .collect();
        if !children.is_empty() {
            for c in children {
                self.cancel_frame(c);
            }
            return;
        }
        // Waiting for a person, a timer, or the launch queue: settle as cancelled now.
        if self.insts[inst].asking.is_some()
            && self
                .stop
                .as_ref()
                .is_some_and(|s| s.0 == RunEnd::Interrupted)
        {
            // Left waiting: the item stays in the queue for `--resume`.
            self.insts[inst].done = true;
            let frame = self.insts[inst].frame;
            self.frames[frame].active = self.frames[frame].active.saturating_sub(1);
            self.check_frame_end(frame);
            return;
        }
        self.mark_stopped(inst);
    }

    /// Writes `cancelled` (or `interrupted`) for an instance that stopped and updates its frame.
    pub fn mark_stopped(&mut self, inst: usize) {
        let key = self.insts[inst].key.clone();
        let status = if self
            .stop
            .as_ref()
            .is_some_and(|s| s.0 == RunEnd::Interrupted)
        {
            "interrupted"
        } else {
            "cancelled"
        };
        let terminal = self.status.get(&key).is_some_and(|s| {
            matches!(
                s.as_str(),
                "succeeded" | "skipped" | "failed" | "cancelled" | "interrupted"
            )
        });
        if !terminal && self.status.contains_key(&key) {
            if self.status.get(&key).is_some_and(|s| s == "rejected") {
                self.set_status(
                    &key,
                    "failed",
                    None,
                    json!({ "error": "stopped before a retry" }),
                );
            } else {
                self.set_status(&key, status, None, json!({}));
            }
        }
        if self.insts[inst].asking.take().is_some() {
            self.waiting = self.waiting.saturating_sub(1);
        }
        self.insts[inst].done = true;
        let frame = self.insts[inst].frame;
        self.frames[frame].active = self.frames[frame].active.saturating_sub(1);
        self.check_frame_end(frame);
    }

    pub fn check_frame_end(&mut self, frame: usize) {
        let f = &self.frames[frame];
        if !f.ended && f.active == 0 && (f.stopping || f.remaining == 0) {
            self.frames[frame].ended = true;
            self.work.push_back(Work::FrameEnd(frame));
        }
    }

    pub fn frame_ended(&mut self, frame: usize) {
        let f = &self.frames[frame];
        let failure = f.failure.clone();
        let complete = f.remaining == 0 && failure.is_none();
        match f.owner {
            Owner::Root => {
                if self.stop.is_some() {
                    self.root_done = Some(Err(self
                        .stop
                        .as_ref()
                        .map(|s| s.1.clone())
                        .unwrap_or_default()));
                    return;
                }
                if !complete {
                    let why = match failure {
                        Some((key, why)) => format!("step `{key}` failed: {why}"),
                        None if self.waiting > 0 => return,
                        None => "stopped".into(),
                    };
                    self.root_done = Some(Err(why));
                    return;
                }
                self.root_done = Some(self.skill_output(frame));
            }
            Owner::Loop(inst) => self.loop_frame_ended(inst, frame, complete, failure),
            Owner::ForElem(inst, index) => {
                self.for_frame_ended(inst, index, frame, complete, failure)
            }
            Owner::Call(inst) => {
                let end = if complete {
                    match self.skill_output(frame) {
                        Ok(v) => AttemptEnd::Result(v),
                        Err(e) => AttemptEnd::Error(e, None),
                    }
                } else if let Some((key, why)) = failure {
                    AttemptEnd::Error(format!("step `{key}` failed: {why}"), None)
                } else {
                    // Stopped from outside: the run stopped, or a sibling failed
                    // and the calling frame cancelled this call.
                    AttemptEnd::Cancelled
                };
                let attempt = self.insts[inst].attempt;
                self.attempt_ended(inst, attempt, end);
            }
            Owner::Tool(inst) => self.tool_frame_ended(inst, frame, complete, failure),
        }
    }

    /// Evaluates a skill's `return` in the frame that ran it, checked against its type.
    pub fn skill_output(&self, frame: usize) -> Result<Json, String> {
        let skill = self.frames[frame].skill.clone();
        let Some(out) = &skill.output else {
            return Ok(Json::Null);
        };
        let names = |name: &str| self.lookup(frame, name);
        let value = self
            .eval
            .value(&skill, out, &names)
            .map_err(|e| format!("`return` failed: {e}"))?;
        if let Some(ty) = &skill.returns {
            super::eval::validate(&value, ty)
                .map_err(|e| format!("`return` does not match `{ty}`: {e}"))?;
        }
        Ok(value)
    }
}
