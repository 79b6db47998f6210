//! `flowc check --against`: the resume-reuse rule of `step.rs` applied to a journaled run, without running anything.
//!
//! On resume a step is reused when its input hash equals the journaled one;
//! the hash covers its normalised definition, its rendered inputs, its frame's
//! context and its upstream results. Statically, the definition is compared
//! through the `definition_hash` of the step's last `ready` event, and the
//! rest through its upstream steps: a step whose upstream runs again will see
//! other values. What flowc cannot see (the files a command reads, `env()`)
//! is not predicted.

use super::eval::validate;
use super::frame::hash;
use crate::ir::{Graph, NodeId, NodeKind, Program, Skill, Step, StepKind};
use crate::journal::{ApprovalRow, NodeRow, RunRow};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The hash of a step's normalised definition, as journaled in its `ready` events.
pub fn definition_hash(step: &Step) -> String {
    hash(&[&step.definition])
}

/// What resuming the run on the edited flow does with one step instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    /// Finished before and kept: it does not run again.
    Reused,
    /// The run waits here for a person, and keeps waiting.
    Waiting,
    /// It runs (again).
    Redo,
    /// Cannot be told: the run was journaled before definitions were recorded.
    Unknown,
    /// Never ran in this run: it runs when reached.
    New,
    /// Journaled, but no longer in the flow.
    Removed,
}

impl Fate {
    /// The word shown in the report.
    pub fn word(self) -> &'static str {
        match self {
            Fate::Reused => "reused",
            Fate::Waiting => "waiting",
            Fate::Redo => "redo",
            Fate::Unknown => "unknown",
            Fate::New => "new",
            Fate::Removed => "removed",
        }
    }
}

/// One step instance's fate and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepFate {
    /// The instance key (`build`, `rounds#2/fix`, `files[0]/lint`).
    pub key: String,
    /// The step or block name.
    pub name: String,
    /// What happens to it.
    pub fate: Fate,
    /// Why.
    pub reason: String,
}

/// What resuming one run on the edited flow would do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// The run id.
    pub run: String,
    /// Its skill.
    pub skill: String,
    /// The file it was started from.
    pub file: String,
    /// Its status (`paused`, `interrupted`, `failed`, `running`).
    pub status: String,
    /// The instances it waits at for a person.
    pub waiting_at: Vec<String>,
    /// Every journaled instance in journal order, then the steps it has not reached.
    pub steps: Vec<StepFate>,
    /// Edits the run cannot survive.
    pub breaking: Vec<String>,
}

impl Prediction {
    /// How many instances have `fate`.
    pub fn count(&self, fate: Fate) -> usize {
        self.steps.iter().filter(|s| s.fate == fate).count()
    }
}

/// A journaled run: its row, node instances, recorded definitions and human queue.
pub struct Journaled<'a> {
    /// The `runs` row.
    pub run: &'a RunRow,
    /// Its node instances, in the order they were added.
    pub nodes: &'a [NodeRow],
    /// Instance key → the definition hash it last became `ready` with.
    pub definitions: &'a HashMap<String, String>,
    /// Its approval items.
    pub approvals: &'a [ApprovalRow],
}

/// Predicts what resuming `j` on `program` does; `None` when the program has no skill of the run's name.
pub fn predict<'a>(program: &'a Program, j: &Journaled<'a>) -> Option<Prediction> {
    let root = program.entry_skill(Some(&j.run.skill))?;
    let waiting: HashSet<&str> = j
        .approvals
        .iter()
        .filter(|a| a.status == "pending")
        .map(|a| a.node.as_str())
        .collect();
    // Every item asked, decided or not: a decision not yet taken by a resume still waits at its step.
    let asked = j
        .approvals
        .iter()
        .map(|a| (a.node.as_str(), (a.status.as_str(), a.kind.as_str())))
        .collect();
    let mut cx = Cx {
        program,
        root,
        rows: j.nodes.iter().map(|n| (n.key.as_str(), n)).collect(),
        order: j.nodes.iter().map(|n| n.key.as_str()).collect(),
        definitions: j.definitions,
        asked,
        memo: HashMap::new(),
        busy: HashSet::new(),
    };
    let mut steps: Vec<StepFate> = j
        .nodes
        .iter()
        .map(|n| {
            let v = cx.fate(&n.key);
            let mut reason = v.reason;
            if v.fate == Fate::Redo && n.status == "succeeded" && cx.writes(&n.key) {
                reason.push_str("; it has `effect: \"write\"` and wrote once already");
            }
            StepFate {
                key: n.key.clone(),
                name: n.name.clone(),
                fate: v.fate,
                reason,
            }
        })
        .collect();
    let seen: HashSet<&str> = j.nodes.iter().map(|n| n.name.as_str()).collect();
    for node in root
        .nodes
        .iter()
        .filter(|n| !seen.contains(n.name.as_str()))
    {
        steps.push(StepFate {
            key: node.name.clone(),
            name: node.name.clone(),
            fate: Fate::New,
            reason: "it has not run in this run yet".into(),
        });
    }
    let mut breaking = cx.gates_lost(j.approvals);
    breaking.extend(cx.results_misfit(j.nodes));
    let mut waiting_at: Vec<String> = waiting.into_iter().map(str::to_string).collect();
    waiting_at.sort();
    Some(Prediction {
        run: j.run.id.clone(),
        skill: j.run.skill.clone(),
        file: j.run.file.clone(),
        status: j.run.status.clone(),
        waiting_at,
        steps,
        breaking,
    })
}

/// A fate with its reason; `shifted` when the instance may see other values
/// than before (its definition or an upstream changed), not merely unfinished.
#[derive(Debug, Clone)]
struct Verdict {
    fate: Fate,
    reason: String,
    shifted: bool,
}

impl Verdict {
    fn new(fate: Fate, reason: impl Into<String>, shifted: bool) -> Verdict {
        Verdict {
            fate,
            reason: reason.into(),
            shifted,
        }
    }
}

/// Where an instance key points in the edited program.
struct Place<'p> {
    skill: &'p Arc<Skill>,
    node: NodeId,
    graph: &'p Graph,
}

/// A key segment's node name: `rounds#2` → `rounds`, `files[3]` → `files`, `build@2` → `build`.
fn segment_name(segment: &str) -> &str {
    segment.split(['#', '[', '@']).next().unwrap_or(segment)
}

/// The key of the instance whose frame holds `key` (`rounds#2/fix` → `rounds`).
fn owner_key(key: &str) -> Option<String> {
    let (frame, _) = key.rsplit_once('/')?;
    Some(match frame.rsplit_once('/') {
        Some((outer, last)) => format!("{outer}/{}", segment_name(last)),
        None => segment_name(frame).to_string(),
    })
}

struct Cx<'a> {
    program: &'a Program,
    root: &'a Arc<Skill>,
    rows: HashMap<&'a str, &'a NodeRow>,
    /// Instance keys in journal order.
    order: Vec<&'a str>,
    definitions: &'a HashMap<String, String>,
    /// Instance key → the status and kind of the item a person was asked about there.
    asked: HashMap<&'a str, (&'a str, &'a str)>,
    memo: HashMap<String, Verdict>,
    busy: HashSet<String>,
}

impl<'a> Cx<'a> {
    /// The node `key` names in the edited program, if it is still there in the same frame.
    fn resolve(&self, key: &str) -> Option<Place<'a>> {
        let mut skill = self.root;
        let mut graph = &skill.graph;
        let mut segments = key.split('/').peekable();
        while let Some(segment) = segments.next() {
            let name = segment_name(segment);
            let node = skill.nodes.iter().find(|n| n.name == name)?;
            graph.index_of(node.id)?;
            if segments.peek().is_none() {
                return Some(Place {
                    skill,
                    node: node.id,
                    graph,
                });
            }
            match &node.kind {
                NodeKind::Step(step) => match &step.kind {
                    StepKind::Call { skill: callee, .. } => {
                        skill = self.program.skills.get(callee)?;
                        graph = &skill.graph;
                    }
                    _ => return None,
                },
                NodeKind::Loop { body, .. } | NodeKind::For { body, .. } => graph = body,
            }
        }
        None
    }

    /// Whether `key` is a step whose effect is `write` in the edited program.
    fn writes(&self, key: &str) -> bool {
        self.resolve(key).is_some_and(|p| {
            matches!(&p.skill.nodes[p.node].kind, NodeKind::Step(s) if s.effect == crate::ir::Effect::Write)
        })
    }

    /// The fate of instance `key` (memoised; journal order is a dependency order, but edits add edges).
    fn fate(&mut self, key: &str) -> Verdict {
        if let Some(v) = self.memo.get(key) {
            return v.clone();
        }
        if !self.busy.insert(key.to_string()) {
            return Verdict::new(Fate::Unknown, "its dependencies form a cycle", true);
        }
        let v = self.compute(key);
        self.busy.remove(key);
        self.memo.insert(key.to_string(), v.clone());
        v
    }

    fn compute(&mut self, key: &str) -> Verdict {
        let Some(place) = self.resolve(key) else {
            return Verdict::new(Fate::Removed, "it is no longer in the flow", true);
        };
        if let Some(v) = self.owner_shift(key) {
            return v;
        }
        let Some(row) = self.rows.get(key).copied() else {
            return Verdict::new(Fate::New, "it has not run in this run yet", true);
        };
        match &place.skill.nodes[place.node].kind {
            NodeKind::Step(step) => self.step_fate(key, row, &place, step),
            NodeKind::Loop { .. } | NodeKind::For { .. } => self.block_fate(key, row, &place),
        }
    }

    /// A verdict forced by the instance's frame: inside a reused `call` nothing
    /// runs; inside a `call` or block that sees other values, everything may.
    fn owner_shift(&mut self, key: &str) -> Option<Verdict> {
        let owner = owner_key(key)?;
        let place = self.resolve(&owner)?;
        let is_block = !matches!(place.skill.nodes[place.node].kind, NodeKind::Step(_));
        if is_block {
            let (fate, name) = self.upstream(&owner, &place)?;
            return Some(match fate {
                Fate::Unknown => Verdict::new(
                    Fate::Unknown,
                    format!("block `{owner}` may run again after upstream `{name}`"),
                    true,
                ),
                _ => Verdict::new(
                    Fate::Redo,
                    format!("block `{owner}` runs again after upstream `{name}`"),
                    true,
                ),
            });
        }
        let v = self.fate(&owner);
        match v.fate {
            Fate::Reused => Some(Verdict::new(
                Fate::Reused,
                format!("`{owner}` is reused, so nothing inside it runs"),
                false,
            )),
            Fate::Unknown => Some(Verdict::new(
                Fate::Unknown,
                format!("`{owner}` may run again"),
                true,
            )),
            _ if v.shifted => Some(Verdict::new(
                Fate::Redo,
                format!("`{owner}` runs again with arguments that may differ"),
                true,
            )),
            _ => None,
        }
    }

    /// The first upstream of `key` (in the edited graph) that is not reused, and its fate.
    fn upstream(&mut self, key: &str, place: &Place<'a>) -> Option<(Fate, String)> {
        let name = &place.skill.nodes[place.node].name;
        let prefix = key
            .strip_suffix(name.as_str())
            .unwrap_or_default()
            .to_string();
        for dep in place.graph.dependencies(place.node) {
            let dep_name = place.skill.nodes[dep].name.clone();
            let v = self.fate(&format!("{prefix}{dep_name}"));
            if v.fate != Fate::Reused {
                return Some((v.fate, dep_name));
            }
        }
        None
    }

    /// An instance that had not finished: it runs, but a person's question that still stands keeps waiting.
    fn unfinished_fate(
        &self,
        key: &str,
        row: &NodeRow,
        recorded: bool,
        changed: bool,
        upstream: Option<(Fate, String)>,
    ) -> Verdict {
        let asked = self
            .asked
            .get(key)
            .copied()
            .filter(|_| row.status == "waiting");
        let Some((asked, kind)) = asked else {
            return Verdict::new(
                Fate::Redo,
                format!("it had not finished (it was {})", row.status),
                changed || upstream.is_some(),
            );
        };
        match (upstream, changed) {
            _ if !recorded => Verdict::new(
                Fate::Unknown,
                "unknown: journaled before definitions were recorded",
                true,
            ),
            (None, false) if asked == "pending" => Verdict::new(
                Fate::Waiting,
                "the run waits here for a person, and its question is unchanged",
                false,
            ),
            (None, false) => Verdict::new(
                Fate::Waiting,
                format!("a person decided (`{asked}`), and the resume takes it"),
                false,
            ),
            // An escalation is bound to the failed inputs: new ones run the step again.
            (_, true) if kind == "escalation" => Verdict::new(
                Fate::Redo,
                "its definition changed, so it runs again instead of asking",
                true,
            ),
            (_, true) => Verdict::new(
                Fate::Redo,
                "its definition changed, so the person is asked again",
                true,
            ),
            (Some((_, up)), false) if kind == "escalation" => Verdict::new(
                Fate::Redo,
                format!("upstream `{up}` runs again, so it runs again instead of asking"),
                true,
            ),
            (Some((_, up)), false) => Verdict::new(
                Fate::Redo,
                format!("upstream `{up}` runs again, so the person is asked again"),
                true,
            ),
        }
    }

    fn step_fate(&mut self, key: &str, row: &NodeRow, place: &Place<'a>, step: &Step) -> Verdict {
        let recorded = self.definitions.get(key).cloned();
        let changed = recorded
            .as_ref()
            .is_some_and(|h| *h != definition_hash(step));
        let upstream = self.upstream(key, place);
        if !matches!(row.status.as_str(), "succeeded" | "skipped") {
            return self.unfinished_fate(key, row, recorded.is_some(), changed, upstream);
        }
        if recorded.is_none() {
            return Verdict::new(
                Fate::Unknown,
                "unknown: journaled before definitions were recorded",
                true,
            );
        }
        if changed {
            return Verdict::new(Fate::Redo, "its definition changed", true);
        }
        match upstream {
            Some((Fate::Unknown, up)) => Verdict::new(
                Fate::Unknown,
                format!("upstream `{up}` may run again"),
                true,
            ),
            Some((Fate::Waiting, up)) => Verdict::new(
                Fate::Redo,
                format!("upstream `{up}` waits for a person first"),
                true,
            ),
            Some((_, up)) => Verdict::new(Fate::Redo, format!("upstream `{up}` runs again"), true),
            None if row.status == "skipped" => Verdict::new(
                Fate::Reused,
                "it was skipped, and its `when` reads the same values",
                false,
            ),
            None => Verdict::new(
                Fate::Reused,
                "finished, and its definition and upstream steps are unchanged",
                false,
            ),
        }
    }

    fn block_fate(&mut self, key: &str, row: &NodeRow, place: &Place<'a>) -> Verdict {
        if let Some((fate, up)) = self.upstream(key, place) {
            return match fate {
                Fate::Unknown => Verdict::new(
                    Fate::Unknown,
                    format!("upstream `{up}` may run again"),
                    true,
                ),
                _ => Verdict::new(Fate::Redo, format!("upstream `{up}` runs again"), true),
            };
        }
        if !matches!(row.status.as_str(), "succeeded" | "skipped") {
            return Verdict::new(
                Fate::Redo,
                format!("it had not finished (it was {})", row.status),
                false,
            );
        }
        let inner: Vec<&'a str> = self
            .order
            .iter()
            .copied()
            .filter(|k| owner_key(k).as_deref() == Some(key))
            .collect();
        for k in inner {
            let v = self.fate(k);
            match v.fate {
                Fate::Reused => {}
                Fate::Unknown => {
                    return Verdict::new(
                        Fate::Unknown,
                        format!("`{k}` inside may run again"),
                        true,
                    );
                }
                _ => return Verdict::new(Fate::Redo, format!("`{k}` inside runs again"), true),
            }
        }
        Verdict::new(
            Fate::Reused,
            "finished, and every step inside is reused",
            false,
        )
    }

    /// Breaking: the run waits for a person at a step the edit removed, or that is no longer an approval.
    fn gates_lost(&mut self, approvals: &[ApprovalRow]) -> Vec<String> {
        let mut out = Vec::new();
        let waiting = |a: &&ApprovalRow| {
            a.status == "pending"
                || self
                    .rows
                    .get(a.node.as_str())
                    .is_some_and(|r| r.status == "waiting")
        };
        let items: Vec<&ApprovalRow> = approvals.iter().filter(waiting).collect();
        for item in items {
            let Some(place) = self.resolve(&item.node) else {
                out.push(format!(
                    "the run waits at {} `{}`, which the edit removes or renames: the decision it waits for has no step to go to",
                    item.kind, item.node
                ));
                continue;
            };
            let node = &place.skill.nodes[place.node];
            let kind = match &node.kind {
                NodeKind::Step(step) => super::scheduler::step_kind_word(&step.kind),
                NodeKind::Loop { .. } => "loop",
                NodeKind::For { .. } => "for",
            };
            if item.kind == "approval" && kind != "approval" {
                out.push(format!(
                    "the run waits at approval `{}`, which the edit makes a `{kind}` step",
                    item.node
                ));
            }
        }
        out
    }

    /// Breaking: a reused step's journaled result no longer fits its (new) result type.
    fn results_misfit(&mut self, nodes: &[NodeRow]) -> Vec<String> {
        let mut out = Vec::new();
        for row in nodes.iter().filter(|n| n.status == "succeeded") {
            let (Some(result), Some(place)) = (&row.result, self.resolve(&row.key)) else {
                continue;
            };
            let NodeKind::Step(step) = &place.skill.nodes[place.node].kind else {
                continue;
            };
            if self.fate(&row.key).fate != Fate::Reused {
                continue;
            }
            if let Err(why) = validate(result, &step.result) {
                let readers = readers(&place);
                let read = if readers.is_empty() {
                    String::new()
                } else {
                    format!(" (read by {})", readers.join(", "))
                };
                out.push(format!(
                    "`{}` is reused, but the result it has no longer fits its type `{}`: {why}{read}",
                    row.key, step.result
                ));
            }
        }
        out
    }
}

/// The steps and blocks of the node's graph that depend on it, as `` `name` ``.
fn readers(place: &Place<'_>) -> Vec<String> {
    let Some(ix) = place.graph.index_of(place.node) else {
        return Vec::new();
    };
    let mut names: Vec<String> = place
        .graph
        .dag
        .neighbors_directed(ix, petgraph::Direction::Outgoing)
        .map(|i| format!("`{}`", place.skill.nodes[place.graph.dag[i]].name))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests;
