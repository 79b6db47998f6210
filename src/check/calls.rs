//! The call graph between skills: recursion (E0504) and static call depth (E0603).
//!
//! Linear in skills and calls: the recursive calls are those inside one
//! strongly connected component, found once; depths are computed bottom-up,
//! each skill once, without recursion (a chain of 10,000 skills must not
//! overflow the stack).

use super::module::{CallEdge, SkillSig};
use crate::diag::{Code, Diagnostic};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet, VecDeque};

/// Recursive calls reported per cycle of skills; the rest are counted.
const REPORTED_PER_CYCLE: usize = 16;
/// Skills named in one message.
const NAMES_SHOWN: usize = 12;

/// The skills and the calls between them, by index.
struct CallGraph<'a> {
    keys: Vec<&'a str>,
    graph: DiGraph<usize, usize>,
}

impl<'a> CallGraph<'a> {
    fn new(calls: &'a [CallEdge]) -> CallGraph<'a> {
        let mut keys: Vec<&str> = Vec::new();
        let mut index: HashMap<&str, NodeIndex> = HashMap::new();
        let mut graph = DiGraph::new();
        let mut node = |key: &'a str, graph: &mut DiGraph<usize, usize>| {
            *index.entry(key).or_insert_with(|| {
                keys.push(key);
                graph.add_node(keys.len() - 1)
            })
        };
        for (i, edge) in calls.iter().enumerate() {
            let a = node(&edge.caller, &mut graph);
            let b = node(&edge.callee, &mut graph);
            graph.add_edge(a, b, i);
        }
        CallGraph { keys, graph }
    }
}

/// Reports recursive calls and calls nested deeper than a skill's policy allows.
pub fn check_calls<'s>(
    calls: &[CallEdge],
    sigs: impl Iterator<Item = &'s SkillSig>,
    diags: &mut Vec<Diagnostic>,
) {
    let g = CallGraph::new(calls);
    let recursive = recursion(&g, calls, diags);
    let depths = depths(&g);
    let index: HashMap<&str, usize> = g.keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let first_call: HashMap<&str, &CallEdge> =
        calls.iter().rev().map(|e| (e.caller.as_str(), e)).collect();
    for sig in sigs {
        let Some(&i) = index.get(sig.key.as_str()) else {
            continue;
        };
        if recursive.contains(&i) || depths[i] <= sig.policy.max_depth {
            continue;
        }
        let depth = depths[i];
        let mut diag = Diagnostic::new(
            Code::E0603,
            sig.file,
            sig.span,
            format!(
                "skill `{}` nests calls {depth} deep, over `max_depth` {} of policy `{}`",
                sig.name, sig.policy.max_depth, sig.policy.name
            ),
        )
        .label(format!("calls nest {depth} levels deep from here"))
        .help("flatten the chain of calls, or raise `max_depth` in the policy");
        if let Some(edge) = first_call
            .get(sig.key.as_str())
            .filter(|e| e.file == sig.file)
        {
            diag = diag.with(edge.span, "first call of the chain");
        }
        diags.push(diag);
    }
}

/// Reports each call that leads back to its own skill; returns the skills in a cycle.
fn recursion(g: &CallGraph<'_>, calls: &[CallEdge], diags: &mut Vec<Diagnostic>) -> HashSet<usize> {
    let mut recursive = HashSet::new();
    let mut component = vec![usize::MAX; g.keys.len()];
    for (c, scc) in petgraph::algo::kosaraju_scc(&g.graph)
        .into_iter()
        .enumerate()
    {
        for n in scc {
            component[n.index()] = c;
        }
    }
    let mut reported: HashMap<usize, usize> = HashMap::new();
    let mut seen_spans = HashSet::new();
    let mut last_of_cycle: HashMap<usize, usize> = HashMap::new();
    for edge in g.graph.edge_indices() {
        let Some((a, b)) = g.graph.edge_endpoints(edge) else {
            continue;
        };
        let c = component[a.index()];
        if c != component[b.index()] {
            continue;
        }
        recursive.insert(a.index());
        let call = &calls[g.graph[edge]];
        if !seen_spans.insert((call.file, call.span)) {
            continue;
        }
        let count = reported.entry(c).or_insert(0);
        *count += 1;
        if *count > REPORTED_PER_CYCLE {
            continue;
        }
        let mut names = vec![short(&call.caller)];
        names.extend(
            path(g, &component, b, a)
                .into_iter()
                .map(|n| short(g.keys[n.index()])),
        );
        let shown = names.len().min(NAMES_SHOWN);
        let mut text = names[..shown].join(" → ");
        if names.len() > shown {
            text.push_str(&format!(
                " → … ({} more) → {}",
                names.len() - shown - 1,
                names[names.len() - 1]
            ));
        }
        last_of_cycle.insert(c, diags.len());
        diags.push(
            Diagnostic::new(
                Code::E0504,
                call.file,
                call.span,
                format!("recursive skill call: {text}"),
            )
            .label("this call leads back to its own skill")
            .help("skills cannot call themselves, directly or through others; use a `loop` block to repeat work"),
        );
    }
    for (c, at) in last_of_cycle {
        let more = reported[&c].saturating_sub(REPORTED_PER_CYCLE);
        if more > 0 {
            let d = &mut diags[at];
            d.help = Some(format!(
                "{}; {more} more calls in this cycle are not reported",
                d.help.take().unwrap_or_default()
            ));
        }
    }
    recursive
}

/// The shortest path of calls `from` →* `to` inside their component (breadth first).
fn path(g: &CallGraph<'_>, component: &[usize], from: NodeIndex, to: NodeIndex) -> Vec<NodeIndex> {
    let c = component[from.index()];
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut found = from == to;
    while let Some(n) = queue.pop_front() {
        if found {
            break;
        }
        for m in g.graph.neighbors(n) {
            if component[m.index()] != c || m == from || parent.contains_key(&m) {
                continue;
            }
            parent.insert(m, n);
            if m == to {
                found = true;
                break;
            }
            queue.push_back(m);
        }
    }
    let mut out = vec![to];
    let mut cur = to;
    while cur != from {
        let Some(&p) = parent.get(&cur) else { break };
        out.push(p);
        cur = p;
    }
    out.reverse();
    out
}

/// The longest chain of calls below each skill (0 for a skill that calls
/// none), bottom-up in one iterative depth-first pass; a call back into a
/// skill still on the walk (recursion, reported apart) counts as 0.
fn depths(g: &CallGraph<'_>) -> Vec<u32> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let n = g.keys.len();
    let mut state = vec![NEW; n];
    let mut depth = vec![0u32; n];
    for root in 0..n {
        if state[root] != NEW {
            continue;
        }
        let mut stack = vec![(NodeIndex::new(root), false)];
        while let Some((node, children_done)) = stack.pop() {
            let i = node.index();
            if children_done {
                depth[i] = g
                    .graph
                    .neighbors(node)
                    .map(|m| match state[m.index()] {
                        DONE => depth[m.index()] + 1,
                        _ => 1,
                    })
                    .max()
                    .unwrap_or(0);
                state[i] = DONE;
                continue;
            }
            if state[i] != NEW {
                continue;
            }
            state[i] = OPEN;
            stack.push((node, true));
            for m in g.graph.neighbors(node) {
                if state[m.index()] == NEW {
                    stack.push((m, false));
                }
            }
        }
    }
    depth
}

fn short(key: &str) -> String {
    key.rsplit('#').next().unwrap_or(key).to_string()
}
