//! Dependency graphs per skill and block, and cycle detection.

use super::module_cx::ModuleCx;
use super::scope::{Edge, NodeDefRef, SkillState};
use crate::diag::{Code, Diagnostic};
use crate::ir::{Graph, NodeId};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

/// The skill's top-level graph and one graph per block; reports cycles (E0501).
pub fn build(cx: &mut ModuleCx<'_>, state: &SkillState<'_>) -> (Graph, Vec<(NodeId, Graph)>) {
    let mut containers: Vec<Option<usize>> = vec![None];
    containers.extend(
        state
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !matches!(n.def, NodeDefRef::Step(_)))
            .map(|(i, _)| Some(i)),
    );
    // Nodes and edges by container, in one pass (not one pass per container).
    let slot: HashMap<Option<usize>, usize> = containers
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i))
        .collect();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); containers.len()];
    for (id, node) in state.nodes.iter().enumerate() {
        if let Some(&s) = slot.get(&node.parent) {
            members[s].push(id);
        }
    }
    let mut edges: Vec<Vec<&Edge>> = vec![Vec::new(); containers.len()];
    for edge in &state.edges {
        if let Some(&s) = slot.get(&edge.container) {
            edges[s].push(edge);
        }
    }
    let mut root = Graph::default();
    let mut bodies = Vec::new();
    for (s, container) in containers.into_iter().enumerate() {
        let mut dag: DiGraph<NodeId, ()> = DiGraph::with_capacity(members[s].len(), 0);
        for &id in &members[s] {
            dag.add_node(id);
        }
        // Node `members[s][i]` is graph node `i`, and `members[s]` is sorted.
        let index = |id: usize| members[s].binary_search(&id).ok().map(NodeIndex::new);
        let mut spans: HashMap<(usize, usize), crate::span::Span> = HashMap::new();
        for edge in edges[s].iter().copied() {
            if let (Some(a), Some(b)) = (index(edge.from), index(edge.to))
                && !spans.contains_key(&(edge.from, edge.to))
            {
                spans.insert((edge.from, edge.to), edge.span);
                dag.add_edge(a, b, ());
            }
        }
        // Kept in the IR: no spare capacity.
        dag.shrink_to_fit();
        for scc in petgraph::algo::kosaraju_scc(&dag) {
            if scc.len() < 2 {
                continue;
            }
            report_cycle(cx, state, &dag, &scc, &spans);
        }
        match container {
            None => root = Graph { dag },
            Some(id) => bodies.push((id, Graph { dag })),
        }
    }
    (root, bodies)
}

/// Steps of a long cycle named in its message, and edges labelled: a cycle
/// through 10,000 steps is reported in a few lines, not 10,000 labels.
const CYCLE_SHOWN: usize = 12;

fn report_cycle(
    cx: &mut ModuleCx<'_>,
    state: &SkillState<'_>,
    dag: &DiGraph<NodeId, ()>,
    scc: &[NodeIndex],
    spans: &HashMap<(usize, usize), crate::span::Span>,
) {
    let path = one_cycle(dag, scc);
    let name = |i: NodeIndex| format!("`{}`", state.nodes[dag[i]].name);
    let mut chain: Vec<String> = path.iter().take(CYCLE_SHOWN).map(|&i| name(i)).collect();
    if path.len() > CYCLE_SHOWN {
        chain.push(format!("… ({} more)", path.len() - CYCLE_SHOWN));
    }
    chain.push(name(path[0]));
    let mut diag = Diagnostic::new(
        Code::E0501,
        cx.file,
        state.nodes[dag[path[0]]].name_span,
        format!("dependency cycle: {}", chain.join(" → ")),
    )
    .label("this step is part of the cycle");
    for w in 0..path.len().min(CYCLE_SHOWN) {
        let (a, b) = (dag[path[w]], dag[path[(w + 1) % path.len()]]);
        if let Some(span) = spans.get(&(a, b)) {
            diag = diag.with(
                *span,
                format!(
                    "`{}` reads `{}` here",
                    state.nodes[b].name, state.nodes[a].name
                ),
            );
        }
    }
    let on_path: HashSet<NodeIndex> = path.iter().copied().collect();
    let others: Vec<NodeIndex> = scc
        .iter()
        .filter(|i| !on_path.contains(i))
        .copied()
        .collect();
    let mut named: Vec<String> = others.iter().take(CYCLE_SHOWN).map(|&i| name(i)).collect();
    if others.len() > CYCLE_SHOWN {
        named.push(format!("{} more", others.len() - CYCLE_SHOWN));
    }
    let help = if others.is_empty() {
        "break the cycle: a step can only read steps that run before it".to_string()
    } else {
        format!(
            "break the cycle (it also involves {}): a step can only read steps that run before it",
            named.join(", ")
        )
    };
    cx.diags.push(diag.help(help));
}

/// One cycle of the component: walk from its first node in source order,
/// following edges that stay inside it (preferring nodes not yet visited),
/// until the walk returns. Linear in the component's edges.
fn one_cycle(dag: &DiGraph<NodeId, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let members: HashSet<NodeIndex> = scc.iter().copied().collect();
    let start = *scc.iter().min_by_key(|i| dag[**i]).unwrap_or(&scc[0]);
    let mut path = vec![start];
    let mut position: HashMap<NodeIndex, usize> = HashMap::from([(start, 0)]);
    let mut cur = start;
    loop {
        let next = dag
            .neighbors(cur)
            .filter(|n| members.contains(n))
            .min_by_key(|n| (position.contains_key(n) && *n != start, dag[*n]));
        let Some(next) = next else { break };
        if let Some(&pos) = position.get(&next) {
            path.drain(..pos);
            break;
        }
        position.insert(next, path.len());
        path.push(next);
        cur = next;
    }
    path
}
