//! Frames: one running instance of a graph (a skill, a loop iteration, a for element).

use crate::ir::{NodeId, Skill};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Names bound in a frame, chained to the enclosing frame's.
#[derive(Debug, Default)]
pub struct Vars {
    parent: Option<Arc<Vars>>,
    map: Mutex<HashMap<String, Json>>,
    /// Why a name is bound to null: its step failed without a result and
    /// `on_failure: continue` went on.
    failures: Mutex<HashMap<String, String>>,
}

/// The name under which [`Vars::get`] answers why `name` has no result
/// ([`Vars::set_failed`]); a flow name never holds a NUL, so it cannot clash.
pub fn failure_key(name: &str) -> String {
    format!("\0{name}")
}

impl Vars {
    /// An empty scope inside `parent`.
    pub fn child(parent: Option<Arc<Vars>>) -> Arc<Vars> {
        Arc::new(Vars {
            parent,
            map: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The nearest binding of `name` (for a [`failure_key`], why it has no result).
    pub fn get(&self, name: &str) -> Option<Json> {
        if let Some(name) = name.strip_prefix('\0') {
            return self.failure(name).map(Json::String);
        }
        let mut cur = Some(self);
        while let Some(vars) = cur {
            if let Some(v) = vars.map.lock().ok().and_then(|m| m.get(name).cloned()) {
                return Some(v);
            }
            cur = vars.parent.as_deref();
        }
        None
    }

    /// Why the nearest binding of `name` is a null left by a failed step, if it is.
    pub fn failure(&self, name: &str) -> Option<String> {
        let mut cur = Some(self);
        while let Some(vars) = cur {
            if vars.map.lock().ok().is_some_and(|m| m.contains_key(name)) {
                return vars.failures.lock().ok().and_then(|m| m.get(name).cloned());
            }
            cur = vars.parent.as_deref();
        }
        None
    }

    /// Binds `name` to null for a step that failed without a result, keeping `why`
    /// so that whatever reads it fails with the real cause.
    pub fn set_failed(&self, name: &str, why: String) {
        self.set(name, Json::Null);
        if let Ok(mut m) = self.failures.lock() {
            m.insert(name.to_string(), why);
        }
    }

    /// The binding of `name` in this frame only.
    pub fn get_local(&self, name: &str) -> Option<Json> {
        self.map.lock().ok().and_then(|m| m.get(name).cloned())
    }

    /// Binds `name` in this frame.
    pub fn set(&self, name: &str, value: Json) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(name.to_string(), value);
        }
        if let Ok(mut m) = self.failures.lock() {
            m.remove(name);
        }
    }
}

/// Who started a frame, and is told when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The run itself.
    Root,
    /// One iteration of a loop instance.
    Loop(usize),
    /// One element of a for instance.
    ForElem(usize, usize),
    /// A `call` step instance.
    Call(usize),
    /// A skill an `agent` step instance called as a tool.
    Tool(usize),
}

/// How a node of a frame ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Succeeded (or reused, or skipped by a person with a result).
    Done,
    /// Its `when` was false.
    Skipped,
    /// Failed with `on_failure: continue`.
    FailedContinue,
}

/// A node's place in its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Waiting for dependencies.
    Blocked,
    /// An instance is active.
    Active(usize),
    /// Finished.
    Settled(Settle),
}

/// One running instance of a graph.
#[derive(Debug)]
pub struct Frame {
    /// The skill whose nodes run.
    pub skill: Arc<Skill>,
    /// Key prefix of the frame's node instances (`""`, `repair#2/`, `files[3]/`, `build/`).
    pub prefix: String,
    /// Names bound in the frame.
    pub vars: Arc<Vars>,
    /// Hash of what makes this frame distinct (call arguments, the for element).
    pub context_hash: String,
    /// Who started it.
    pub owner: Owner,
    /// `call` nesting depth.
    pub depth: u32,
    /// Nodes of the graph, in a dependency order.
    pub order: Vec<NodeId>,
    /// Direct dependencies of each node.
    pub deps: HashMap<NodeId, Vec<NodeId>>,
    /// Direct dependents of each node.
    pub dependents: HashMap<NodeId, Vec<NodeId>>,
    /// Unsettled dependencies of each node.
    pub deps_left: HashMap<NodeId, usize>,
    /// Where each node is.
    pub state: HashMap<NodeId, NodeState>,
    /// Output hash of each settled node.
    pub out_hash: HashMap<NodeId, String>,
    /// Nodes not settled yet.
    pub remaining: usize,
    /// Active instances.
    pub active: usize,
    /// The first failure: the failing instance key and its feedback.
    pub failure: Option<(String, String)>,
    /// No new nodes start (failed, cancelled or interrupted).
    pub stopping: bool,
    /// The frame has ended and its owner was told.
    pub ended: bool,
    /// The directory relative `cwd`s are taken from (an agent's, for the
    /// skills it calls as tools, and everything they run).
    pub dir: Option<String>,
}

impl Frame {
    /// A frame for `body` (`None`: the skill's top-level graph) of `skill`.
    pub fn new(
        skill: Arc<Skill>,
        body: Option<NodeId>,
        prefix: String,
        vars: Arc<Vars>,
        context_hash: String,
        owner: Owner,
        depth: u32,
    ) -> Frame {
        let graph = match body {
            None => &skill.graph,
            Some(id) => match &skill.nodes[id].kind {
                crate::ir::NodeKind::Loop { body, .. } | crate::ir::NodeKind::For { body, .. } => {
                    body
                }
                crate::ir::NodeKind::Step(_) => &skill.graph,
            },
        };
        let order = graph.topo_order();
        let mut deps: HashMap<NodeId, Vec<NodeId>> =
            order.iter().map(|&n| (n, Vec::new())).collect();
        let mut dependents: HashMap<NodeId, Vec<NodeId>> =
            order.iter().map(|&n| (n, Vec::new())).collect();
        for edge in graph.dag.raw_edges() {
            let (from, to) = (graph.dag[edge.source()], graph.dag[edge.target()]);
            if let Some(d) = deps.get_mut(&to)
                && !d.contains(&from)
            {
                d.push(from);
                dependents.entry(from).or_default().push(to);
            }
        }
        let deps_left = deps.iter().map(|(&n, d)| (n, d.len())).collect();
        let state = order.iter().map(|&n| (n, NodeState::Blocked)).collect();
        let remaining = order.len();
        Frame {
            skill,
            prefix,
            vars,
            context_hash,
            owner,
            depth,
            order,
            deps,
            dependents,
            deps_left,
            state,
            out_hash: HashMap::new(),
            remaining,
            active: 0,
            failure: None,
            stopping: false,
            ended: false,
            dir: None,
        }
    }
}

/// A short stable hash of some text.
pub fn hash(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}
