//! `loop` and `for` blocks: iterations and elements as child frames.

use super::frame::{Frame, Owner, Settle, Vars, hash};
use super::scheduler::{IKind, Runner, inner_step_names};
use crate::ir::NodeKind;
use serde_json::{Value as Json, json};
use std::sync::Arc;

impl Runner<'_> {
    /// Sets a block's status; a quiet block (succeeded before) only leaves
    /// `succeeded` when it must: then it goes through `stale` and `ready` first.
    fn block_status(&mut self, inst: usize, status: &str, attempt: Option<u32>, extra: Json) {
        let key = self.insts[inst].key.clone();
        if self.insts[inst].quiet {
            if status == "running" || status == "succeeded" {
                return;
            }
            self.insts[inst].quiet = false;
            self.set_status(&key, "stale", None, json!({}));
            self.set_status(&key, "ready", None, json!({}));
            self.set_status(&key, "running", None, json!({}));
        }
        self.set_status(&key, status, attempt, extra);
    }

    /// Brings a block instance to `ready`, or marks it quiet when it had succeeded.
    fn block_ready(&mut self, inst: usize, kind: &str) {
        let key = self.insts[inst].key.clone();
        if self.status.get(&key).is_some_and(|s| s == "succeeded") {
            self.insts[inst].quiet = true;
        } else {
            self.ensure_ready(inst, kind);
        }
    }

    /// Starts a loop instance at its first (or journaled) iteration.
    pub fn begin_loop(&mut self, inst: usize) {
        let key = self.insts[inst].key.clone();
        if let Some(prior) = self.prior.get(&key).and_then(|p| p.data.clone())
            && let IKind::Loop {
                iteration,
                feedback,
                ..
            } = &mut self.insts[inst].kind
        {
            if let Some(it) = prior["iteration"].as_u64() {
                *iteration = it.max(1) as u32;
            }
            *feedback = prior["feedback"].as_str().unwrap_or_default().to_string();
        }
        self.block_ready(inst, "loop");
        self.next_iteration(inst);
    }

    /// Runs the instance's current iteration as a child frame.
    pub fn next_iteration(&mut self, inst: usize) {
        let IKind::Loop {
            iteration,
            feedback,
            ..
        } = &self.insts[inst].kind
        else {
            return;
        };
        let (iteration, feedback) = (*iteration, feedback.clone());
        let key = self.insts[inst].key.clone();
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = self.frames[frame].skill.clone();
        let name = skill.nodes[node].name.clone();
        self.block_status(
            inst,
            "running",
            Some(iteration),
            json!({ "data": { "iteration": iteration, "feedback": feedback } }),
        );
        let vars = Vars::child(Some(self.frames[frame].vars.clone()));
        vars.set(
            &name,
            json!({ "iteration": iteration, "feedback": feedback }),
        );
        let ctx = self.frames[frame].context_hash.clone();
        let depth = self.frames[frame].depth;
        let child = Frame::new(
            skill,
            Some(node),
            format!("{key}#{iteration}/"),
            vars,
            ctx,
            Owner::Loop(inst),
            depth,
        );
        let id = self.new_frame(child);
        self.insts[inst].child = Some(id);
    }

    /// Copies the names of a block's inner steps from a child frame to the block's frame.
    fn lift(&mut self, inst: usize, from: &Arc<Vars>) {
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = self.frames[frame].skill.clone();
        for name in inner_step_names(&skill, node) {
            let v = from.get_local(&name).unwrap_or(Json::Null);
            self.frames[frame].vars.set(&name, v);
        }
    }

    pub fn loop_frame_ended(
        &mut self,
        inst: usize,
        child: usize,
        complete: bool,
        failure: Option<(String, String)>,
    ) {
        if self.insts[inst].done {
            return;
        }
        let vars = self.frames[child].vars.clone();
        if complete {
            self.lift(inst, &vars);
            self.block_status(inst, "succeeded", None, json!({}));
            self.settle(inst, Settle::Done);
            return;
        }
        let Some((failed_key, feedback)) = failure else {
            // Stopped from outside (the run failed or was interrupted).
            self.mark_stopped(inst);
            return;
        };
        if self.stop.is_some() {
            self.mark_stopped(inst);
            return;
        }
        let IKind::Loop {
            iteration,
            max,
            feedback: fb,
        } = &mut self.insts[inst].kind
        else {
            return;
        };
        if *iteration < *max {
            *iteration += 1;
            *fb = feedback;
            self.next_iteration(inst);
            return;
        }
        let why = format!(
            "did not converge in {} iteration(s); last failure in `{failed_key}`: {}",
            *iteration,
            feedback.lines().next().unwrap_or_default()
        );
        self.lift(inst, &vars);
        self.insts[inst].feedback = feedback.clone();
        self.block_status(
            inst,
            "failed",
            None,
            json!({ "error": why, "feedback": feedback }),
        );
        self.exhausted(inst, why);
    }

    /// Starts a for instance: evaluates (or reads back) its elements.
    pub fn begin_for(&mut self, inst: usize) {
        let key = self.insts[inst].key.clone();
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = self.frames[frame].skill.clone();
        let n = &skill.nodes[node];
        let NodeKind::For { iter, .. } = &n.kind else {
            return;
        };
        let recorded = self
            .prior
            .get(&key)
            .and_then(|p| p.data.as_ref())
            .and_then(|d| d["elements"].as_array().cloned());
        self.block_ready(inst, "for");
        let elements = match recorded {
            Some(e) => e,
            None => {
                let names = |name: &str| self.lookup(frame, name);
                match self.eval.expr(iter, &names) {
                    Ok(Json::Array(items)) => items,
                    Ok(other) => {
                        self.fail_now(
                            inst,
                            format!("`for` needs a list, `{}` gave {other}", iter.source),
                        );
                        return;
                    }
                    Err(e) => {
                        self.fail_now(inst, e);
                        return;
                    }
                }
            }
        };
        self.block_status(
            inst,
            "running",
            None,
            json!({ "data": { "elements": elements } }),
        );
        self.start_elements(inst, Some(elements));
    }

    /// Starts element frames up to the block's `parallel`.
    fn fill_for(&mut self, inst: usize) {
        loop {
            let IKind::For {
                elements,
                next,
                live,
                parallel,
                failed,
                ..
            } = &mut self.insts[inst].kind
            else {
                return;
            };
            if failed.is_some()
                || *next >= elements.len()
                || *live >= *parallel
                || self.stop.is_some()
            {
                break;
            }
            let index = *next;
            let element = elements[index].clone();
            *next += 1;
            *live += 1;
            let key = self.insts[inst].key.clone();
            let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
            let skill = self.frames[frame].skill.clone();
            let NodeKind::For { var, .. } = &skill.nodes[node].kind else {
                return;
            };
            let vars = Vars::child(Some(self.frames[frame].vars.clone()));
            vars.set(var, element.clone());
            let ctx = hash(&[&self.frames[frame].context_hash, &element.to_string()]);
            let depth = self.frames[frame].depth;
            let child = Frame::new(
                skill.clone(),
                Some(node),
                format!("{key}[{index}]/"),
                vars,
                ctx,
                Owner::ForElem(inst, index),
                depth,
            );
            self.new_frame(child);
        }
        self.for_maybe_done(inst);
    }

    pub fn for_frame_ended(
        &mut self,
        inst: usize,
        index: usize,
        child: usize,
        complete: bool,
        failure: Option<(String, String)>,
    ) {
        if self.insts[inst].done {
            return;
        }
        let vars = self.frames[child].vars.clone();
        if let IKind::For {
            live,
            results,
            failed,
            ..
        } = &mut self.insts[inst].kind
        {
            *live = live.saturating_sub(1);
            if complete {
                results[index] = Some(vars);
            } else if failed.is_none() {
                *failed = Some(failure.unwrap_or_else(|| (String::new(), "stopped".into())));
            }
        }
        self.fill_for(inst);
    }

    fn for_maybe_done(&mut self, inst: usize) {
        let IKind::For {
            elements,
            next,
            live,
            failed,
            results,
            ..
        } = &self.insts[inst].kind
        else {
            return;
        };
        if *live > 0 || (failed.is_none() && *next < elements.len() && self.stop.is_none()) {
            return;
        }
        if self.stop.is_some() && failed.is_none() && *next < elements.len() {
            self.mark_stopped(inst);
            return;
        }
        let failed = failed.clone();
        let results = results.clone();
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = self.frames[frame].skill.clone();
        for name in inner_step_names(&skill, node) {
            let list: Vec<Json> = results
                .iter()
                .map(|r| {
                    r.as_ref()
                        .and_then(|v| v.get_local(&name))
                        .unwrap_or(Json::Null)
                })
                .collect();
            self.frames[frame].vars.set(&name, Json::Array(list));
        }
        match failed {
            None => {
                self.block_status(inst, "succeeded", None, json!({}));
                self.settle(inst, Settle::Done);
            }
            Some(_) if self.stop.is_some() => self.mark_stopped(inst),
            Some((failed_key, why)) => {
                let why = format!(
                    "element `{failed_key}` failed: {}",
                    why.lines().next().unwrap_or_default()
                );
                self.insts[inst].feedback = why.clone();
                self.block_status(inst, "failed", None, json!({ "error": why }));
                self.exhausted(inst, why);
            }
        }
    }

    /// `flowc retry` of an escalated for block: run every element again.
    pub fn restart_for(&mut self, inst: usize) {
        self.block_status(inst, "running", None, json!({}));
        self.start_elements(inst, None);
    }

    /// (Re)starts every element of a for instance: with new elements, or the same ones again.
    fn start_elements(&mut self, inst: usize, new: Option<Vec<Json>>) {
        if let IKind::For {
            elements,
            results,
            next,
            live,
            failed,
            ..
        } = &mut self.insts[inst].kind
        {
            if let Some(new) = new {
                *elements = new;
            }
            *results = vec![None; elements.len()];
            *next = 0;
            *live = 0;
            *failed = None;
        }
        self.fill_for(inst);
    }
}
