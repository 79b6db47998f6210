//! The dry run (`flowc run --dry-run`, `flowc plan`): every step is visited
//! as in a run, but none runs; each says whether it would reuse a cached
//! result or run, and why.
//!
//! A step that would run is bound as absent, so what reads it is reported
//! as depending on unrun steps instead of being evaluated.

use super::frame::{Owner, Settle};
use super::reuse::Lookup;
use super::scheduler::{Runner, inner_step_names, step_kind_word};
use crate::cache::Reason;
use crate::ir::{NodeId, NodeKind};
use serde::Serialize;
use serde_json::Value as Json;

/// What the dry run says of one node instance.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    /// The node instance key (`lint`, `for_f[3]/check`).
    pub key: String,
    /// The step or block kind.
    pub kind: String,
    /// Whether it would be reused.
    pub reuse: bool,
    /// For a reuse: the run, node instance and attempt the result came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Json>,
    /// For a run: why.
    pub reasons: Vec<Reason>,
}

impl PlanRow {
    /// One line for people: `would reuse KEY (from run R)` or `would run KEY: why`.
    pub fn line(&self) -> String {
        if self.reuse {
            let run = self
                .from
                .as_ref()
                .and_then(|f| f["run"].as_str())
                .unwrap_or_default();
            return format!("would reuse {} (from run {run})", self.key);
        }
        let why: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        format!("would run   {}: {}", self.key, why.join("; "))
    }
}

impl Runner<'_> {
    /// Before a node starts in a dry run: true (and the node settled) when it
    /// reads a node that would run, which cannot be evaluated.
    pub fn plan_blocked(&mut self, frame: usize, node: NodeId, inst: usize) -> bool {
        let Some(plan) = &self.plan else { return false };
        let f = &self.frames[frame];
        let mut unrun: Vec<String> = f
            .deps
            .get(&node)
            .into_iter()
            .flatten()
            .filter(|d| plan.unrun.contains(&(frame, **d)))
            .map(|d| f.skill.nodes[*d].name.clone())
            .collect();
        if unrun.is_empty() {
            return false;
        }
        unrun.sort();
        self.plan_row(inst, None, vec![Reason::DependsOn(unrun)]);
        self.plan_unrun(inst);
        true
    }

    /// A step is ready in a dry run: say what would happen, and settle it.
    pub fn plan_step(&mut self, inst: usize, inputs: Result<&Json, String>) {
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let inputs = match inputs {
            Ok(i) => i,
            Err(e) => {
                self.plan_row(
                    inst,
                    None,
                    vec![Reason::Corrupt(vec![format!(
                        "its inputs cannot be rendered: {e}"
                    )])],
                );
                self.plan_unrun(inst);
                return;
            }
        };
        if !step.cache.enabled || self.cache.is_none() {
            self.plan_row(inst, None, vec![Reason::CacheOff]);
            self.plan_unrun(inst);
            return;
        }
        let lookup = self
            .cache_key(inst, inputs)
            .map(|key| self.cache_lookup(inst, &key));
        match lookup {
            Ok(Lookup::Hit(entry)) => {
                let from = serde_json::json!({ "run": entry.run_id, "node": entry.node, "attempt": entry.attempt });
                self.plan_row(inst, Some(from), Vec::new());
                self.frames[self.insts[inst].frame]
                    .vars
                    .set(&skill.nodes[node].name, entry.result);
                self.settle(inst, Settle::Done);
            }
            Ok(Lookup::Miss(why)) => {
                self.plan_row(inst, None, why);
                self.plan_unrun(inst);
            }
            Err(e) => {
                self.plan_row(inst, None, vec![Reason::Corrupt(vec![e])]);
                self.plan_unrun(inst);
            }
        }
    }

    fn plan_row(&mut self, inst: usize, from: Option<Json>, reasons: Vec<Reason>) {
        let (skill, node) = self.step(inst);
        let kind = match &skill.nodes[node].kind {
            NodeKind::Step(s) => step_kind_word(&s.kind),
            NodeKind::Loop { .. } => "loop",
            NodeKind::For { .. } => "for",
        };
        let row = PlanRow {
            key: self.insts[inst].key.clone(),
            kind: kind.to_string(),
            reuse: from.is_some(),
            from,
            reasons,
        };
        if let Some(plan) = &mut self.plan {
            plan.rows.push(row);
        }
    }

    /// Binds a node that would run (and what is inside it) as absent, and settles it.
    fn plan_unrun(&mut self, inst: usize) {
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = self.frames[frame].skill.clone();
        let vars = self.frames[frame].vars.clone();
        let name = &skill.nodes[node].name;
        let why = format!("`{name}` has not run (dry run)");
        vars.set_failed(name, why.clone());
        for inner in inner_step_names(&skill, node) {
            vars.set_failed(&inner, why.clone());
        }
        self.mark_unrun(frame, node);
        self.settle(inst, Settle::Done);
    }

    /// Marks a node as one that would run, and every block instance it runs
    /// inside: what reads the block reads something that has not run.
    fn mark_unrun(&mut self, frame: usize, node: NodeId) {
        let Some(plan) = &mut self.plan else { return };
        plan.unrun.insert((frame, node));
        let mut owner = self.frames[frame].owner;
        while let Owner::Loop(inst) | Owner::ForElem(inst, _) | Owner::Call(inst) = owner {
            let (f, n) = (self.insts[inst].frame, self.insts[inst].node);
            if !plan.unrun.insert((f, n)) {
                break;
            }
            owner = self.frames[f].owner;
        }
    }
}

/// The dry run's state: the rows so far, and the nodes that would run.
#[derive(Debug, Default)]
pub struct Plan {
    /// One row per node instance visited, in the order they became ready.
    pub rows: Vec<PlanRow>,
    /// (frame, node) of every node that would run.
    pub unrun: std::collections::HashSet<(usize, NodeId)>,
}
