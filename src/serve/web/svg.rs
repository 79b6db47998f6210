//! A run's graph drawn on the server as SVG: the skill's top-level nodes in dependency layers, coloured by their state.

use super::html::esc;
use crate::ir::{NodeKind, Skill, StepKind};
use crate::journal::NodeRow;
use std::collections::HashMap;
use std::fmt::Write;

const W: i64 = 180;
const H: i64 = 44;
const GAP_X: i64 = 60;
const GAP_Y: i64 = 18;
const PAD: i64 = 16;
/// Labels longer than this are cut (the full name is in the tooltip).
const LABEL_CHARS: usize = 22;

struct Placed {
    name: String,
    kind: String,
    status: String,
    x: i64,
    y: i64,
}

/// The graph of `skill` (when the run's file still compiles) with each node
/// in the state `nodes` gives it; without the skill, the journaled nodes in a row.
pub fn draw(skill: Option<&Skill>, nodes: &[NodeRow]) -> String {
    let status: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.key.as_str(), n.status.as_str()))
        .collect();
    let (placed, edges) = match skill {
        Some(s) => layered(s, &status),
        None => (in_a_row(nodes), Vec::new()),
    };
    let width = placed.iter().map(|p| p.x + W).max().unwrap_or(0) + PAD;
    let height = placed.iter().map(|p| p.y + H).max().unwrap_or(0) + PAD;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"graph\" role=\"img\" aria-label=\"the run's graph\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\" class=\"edge-head\"/></marker></defs>"
    );
    for (a, b) in edges {
        let (Some(pa), Some(pb)) = (placed.get(a), placed.get(b)) else {
            continue;
        };
        let (x1, y1, x2, y2) = (pa.x + W, pa.y + H / 2, pb.x, pb.y + H / 2);
        let _ = write!(
            out,
            "<path class=\"edge\" d=\"M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}\" marker-end=\"url(#arrow)\"/>",
            x1 + GAP_X / 2,
            x2 - GAP_X / 2
        );
    }
    for p in &placed {
        let label: String = p.name.chars().take(LABEL_CHARS).collect();
        let _ = write!(
            out,
            "<g class=\"node n-{st}\" data-node=\"{name}\" data-status=\"{st}\"><title>{name}: {kind} ({st})</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"8\"/>\
             <text x=\"{tx}\" y=\"{ty1}\" class=\"name\">{label}</text>\
             <text x=\"{tx}\" y=\"{ty2}\" class=\"kind\">{kind} · {st}</text></g>",
            st = esc(&p.status),
            name = esc(&p.name),
            kind = esc(&p.kind),
            label = esc(&label),
            x = p.x,
            y = p.y,
            tx = p.x + 10,
            ty1 = p.y + 18,
            ty2 = p.y + 35,
        );
    }
    out.push_str("</svg>");
    out
}

/// Nodes placed in layers by the longest path to them; edges as indices into the placed list.
fn layered(skill: &Skill, status: &HashMap<&str, &str>) -> (Vec<Placed>, Vec<(usize, usize)>) {
    let order = skill.graph.topo_order();
    let index: HashMap<usize, usize> = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let edges: Vec<(usize, usize)> = skill
        .graph
        .dag
        .edge_indices()
        .filter_map(|e| skill.graph.dag.edge_endpoints(e))
        .filter_map(|(a, b)| {
            Some((
                *index.get(&skill.graph.dag[a])?,
                *index.get(&skill.graph.dag[b])?,
            ))
        })
        .collect();
    // In order of their targets, each edge's source has its final layer
    // already (sources come first in a topological order).
    let mut by_target = edges.clone();
    by_target.sort_by_key(|&(_, b)| b);
    let mut layer = vec![0i64; order.len()];
    for (a, b) in by_target {
        layer[b] = layer[b].max(layer[a] + 1);
    }
    let mut rows: HashMap<i64, i64> = HashMap::new();
    let placed = order
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let node = &skill.nodes[id];
            let row = rows.entry(layer[i]).or_insert(0);
            let y = PAD + *row * (H + GAP_Y);
            *row += 1;
            Placed {
                name: node.name.clone(),
                kind: kind(&node.kind),
                status: status
                    .get(node.name.as_str())
                    .copied()
                    .unwrap_or("not started")
                    .to_string(),
                x: PAD + layer[i] * (W + GAP_X),
                y,
            }
        })
        .collect();
    (placed, edges)
}

fn in_a_row(nodes: &[NodeRow]) -> Vec<Placed> {
    nodes
        .iter()
        .filter(|n| !n.key.contains(['/', '#', '[']))
        .enumerate()
        .map(|(i, n)| Placed {
            name: n.key.clone(),
            kind: n.kind.clone(),
            status: n.status.clone(),
            x: PAD + i as i64 * (W + GAP_X),
            y: PAD,
        })
        .collect()
}

fn kind(kind: &NodeKind) -> String {
    match kind {
        NodeKind::Step(step) => match &step.kind {
            StepKind::Run(_) => "run".into(),
            StepKind::Llm(l) => format!("llm {}", l.model.name),
            StepKind::Agent(a) => format!("agent {}", a.model.name),
            StepKind::Approval { .. } => "approval".into(),
            StepKind::Call { skill, .. } => {
                format!("call {}", skill.rsplit('#').next().unwrap_or(skill))
            }
            StepKind::Script { .. } => "script".into(),
            StepKind::Wait { .. } => "wait".into(),
        },
        NodeKind::Loop { .. } => "loop".into(),
        NodeKind::For { .. } => "for".into(),
    }
}
