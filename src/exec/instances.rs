//! Node instances: their keys, bringing one to `ready` in the journal, how
//! progress describes it, and starting a node (a step, a loop, a `for`) in a frame.

use super::frame::{NodeState, Settle};
use super::scheduler::*;
use crate::ir::{NodeId, NodeKind};
use crate::journal::NewEvent;
use serde_json::{Value as Json, json};

impl Runner<'_> {
    /// The instance key of `node` in `frame`.
    pub fn key_of(&self, frame: usize, node: NodeId) -> String {
        let f = &self.frames[frame];
        format!("{}{}", f.prefix, f.skill.nodes[node].name)
    }

    /// Makes instance `inst` known to the journal and brings it to `ready`.
    pub fn ensure_ready(&mut self, inst: usize, kind: &str) {
        let key = self.insts[inst].key.clone();
        let key = key.as_str();
        let current = self.status.get(key).cloned();
        let ready = self.ready_data(inst);
        match current.as_deref() {
            None => {
                let event = NewEvent::node(
                    &self.run_id,
                    "node_added",
                    key,
                    None,
                    self.node_added_data(inst, kind),
                );
                self.push(event);
                self.status.insert(key.to_string(), "pending".into());
                self.set_status(key, "ready", None, ready);
            }
            Some("ready") => {}
            Some("pending" | "interrupted" | "stale") => self.set_status(key, "ready", None, ready),
            Some("running" | "retrying" | "waiting" | "rejected") => {
                self.set_status(key, "interrupted", None, json!({}));
                self.set_status(key, "ready", None, ready);
            }
            Some(_) => {
                self.set_status(key, "stale", None, json!({}));
                self.set_status(key, "ready", None, ready);
            }
        }
    }

    /// The data of a step's `ready` event: the hash of the definition it is
    /// about to run with, so `flowc check --against` can tell an edit later.
    fn ready_data(&self, inst: usize) -> Json {
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        match &self.frames[frame].skill.nodes[node].kind {
            NodeKind::Step(step) => {
                json!({ "definition_hash": super::against::definition_hash(step) })
            }
            _ => json!({}),
        }
    }

    /// An instance's node name and its description, rendered with the names
    /// its frame has now (the source text when it cannot be rendered).
    pub fn describe(&self, inst: usize) -> (String, Option<String>) {
        let (frame, node) = (self.insts[inst].frame, self.insts[inst].node);
        let skill = &self.frames[frame].skill;
        let n = &skill.nodes[node];
        let description = n.description.as_ref().map(|d| {
            let names = |name: &str| self.lookup(frame, name);
            self.eval
                .text(skill, d, &names)
                .unwrap_or_else(|_| match d {
                    crate::ir::Value::Template(t) => t.source.clone(),
                    other => format!("{other:?}"),
                })
        });
        (n.name.clone(), description)
    }

    /// The data of an instance's `node_added`: name, kind, and its description if it has one.
    pub(super) fn node_added_data(&self, inst: usize, kind: &str) -> Json {
        let (name, description) = self.describe(inst);
        let mut data = json!({ "name": name, "kind": kind });
        if let Some(d) = description {
            data["description"] = json!(crate::secrets::redact(d));
        }
        data
    }

    pub(super) fn start_node(&mut self, frame: usize, node: NodeId) {
        if self.frames[frame].stopping || self.stop.is_some() {
            return;
        }
        let skill = self.frames[frame].skill.clone();
        let n = &skill.nodes[node];
        let key = self.key_of(frame, node);
        let (kind_word, ikind) = match &n.kind {
            NodeKind::Step(s) => (step_kind_word(&s.kind), IKind::Step),
            NodeKind::Loop { max, .. } => (
                "loop",
                IKind::Loop {
                    iteration: 1,
                    max: *max,
                    feedback: String::new(),
                },
            ),
            NodeKind::For { parallel, .. } => (
                "for",
                IKind::For {
                    elements: Vec::new(),
                    next: 0,
                    live: 0,
                    parallel: (*parallel).max(1) as usize,
                    results: Vec::new(),
                    failed: None,
                },
            ),
        };
        let budget = match &n.kind {
            NodeKind::Step(s) => s.attempts.max(1),
            _ => 1,
        };
        let id = self.insts.len();
        self.insts.push(Inst {
            key: key.clone(),
            frame,
            node,
            attempt: 0,
            budget,
            feedback: String::new(),
            input_hash: String::new(),
            result: None,
            cancel: None,
            child: None,
            done: false,
            kind: ikind,
            asking: None,
            deadline: None,
            quiet: false,
            first_inputs: None,
            retry_after_ms: None,
            snapshot: None,
            cache_key: None,
        });
        self.frames[frame].state.insert(node, NodeState::Active(id));
        self.frames[frame].active += 1;
        if self.plan_blocked(frame, node, id) {
            return;
        }
        if let Some(when) = &n.when {
            let names = |name: &str| self.lookup(frame, name);
            match self.eval.condition(when, &names) {
                Ok(true) => {}
                Ok(false) => {
                    let prior_skipped = self.status.get(&key).is_some_and(|s| s == "skipped");
                    if !prior_skipped {
                        if self.status.contains_key(&key) {
                            self.ensure_ready(id, kind_word);
                        } else {
                            let event = NewEvent::node(
                                &self.run_id,
                                "node_added",
                                &key,
                                None,
                                self.node_added_data(id, kind_word),
                            );
                            self.push(event);
                            self.status.insert(key.clone(), "pending".into());
                        }
                        self.set_status(
                            &key,
                            "skipped",
                            None,
                            json!({ "error": format!("`when: {}` is false", when.source) }),
                        );
                    }
                    self.bind_skipped(id, None);
                    self.settle(id, Settle::Skipped);
                    return;
                }
                Err(e) => {
                    self.ensure_ready(id, kind_word);
                    self.fail_now(id, format!("`when` could not be evaluated: {e}"));
                    return;
                }
            }
        }
        match &n.kind {
            NodeKind::Step(_) => self.begin_step(id),
            NodeKind::Loop { .. } => self.begin_loop(id),
            NodeKind::For { .. } => self.begin_for(id),
        }
    }
}
