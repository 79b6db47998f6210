//! Static worst-case bounds of a skill, every `when` taken as true: step
//! attempts, model calls, output tokens and their cost, and wall time.

use super::{Graph, NodeKind, Program, Skill, Step, StepKind};
use std::collections::HashMap;

/// A count that may have no bound (`None`).
pub type Bound = Option<u64>;

/// What one skill may do at most.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Bounds {
    /// Step attempts started (what `max_steps` counts).
    pub attempts: Bound,
    /// Model calls (`llm` attempts).
    pub llm_calls: Bound,
    /// Output tokens over those calls (from `max_tokens`).
    pub output_tokens: Bound,
    /// The cost of those output tokens, in USD; `None` when a price or a token limit is missing.
    pub output_cost_usd: Option<f64>,
    /// Wall time in milliseconds (timeouts, backoffs and waits along the
    /// longest path), not counting time waiting for a person.
    pub wall_ms: Bound,
    /// Time waiting for people, in milliseconds: approval timeouts added up
    /// (`None`: an approval has no `timeout`). `run_timeout` does not count it.
    pub person_ms: Bound,
}

fn add(a: Bound, b: Bound) -> Bound {
    a?.checked_add(b?)
}

fn mul(n: Bound, b: Bound) -> Bound {
    // Nothing, however often, is nothing.
    if b == Some(0) || n == Some(0) {
        return Some(0);
    }
    n?.checked_mul(b?)
}

fn cost_add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

impl Bounds {
    const ZERO: Bounds = Bounds {
        attempts: Some(0),
        llm_calls: Some(0),
        output_tokens: Some(0),
        output_cost_usd: Some(0.0),
        wall_ms: Some(0),
        person_ms: Some(0),
    };

    /// Work done `n` times one after the other.
    fn times(self, n: Bound) -> Bounds {
        Bounds {
            attempts: mul(n, self.attempts),
            llm_calls: mul(n, self.llm_calls),
            output_tokens: mul(n, self.output_tokens),
            output_cost_usd: match n {
                _ if self.output_cost_usd == Some(0.0) => Some(0.0),
                Some(n) => self.output_cost_usd.map(|c| c * n as f64),
                None => None,
            },
            wall_ms: mul(n, self.wall_ms),
            person_ms: mul(n, self.person_ms),
        }
    }

    /// Both, counted together (wall time not included: the caller decides it).
    fn plus_counts(self, o: Bounds) -> Bounds {
        Bounds {
            attempts: add(self.attempts, o.attempts),
            llm_calls: add(self.llm_calls, o.llm_calls),
            output_tokens: add(self.output_tokens, o.output_tokens),
            output_cost_usd: cost_add(self.output_cost_usd, o.output_cost_usd),
            wall_ms: self.wall_ms,
            person_ms: add(self.person_ms, o.person_ms),
        }
    }
}

/// The bounds of every skill of `program`, by key.
pub fn bounds(program: &Program) -> HashMap<String, Bounds> {
    let mut memo = HashMap::new();
    for key in program.skills.keys() {
        skill_bounds(program, key, &mut memo, 0);
    }
    memo
}

fn skill_bounds(
    program: &Program,
    key: &str,
    memo: &mut HashMap<String, Bounds>,
    depth: u32,
) -> Bounds {
    if let Some(b) = memo.get(key) {
        return *b;
    }
    let Some(skill) = program.skills.get(key) else {
        return Bounds::default();
    };
    // Recursion is refused by the checker (E0504); a depth guard keeps this total anyway.
    if depth > 64 {
        return Bounds::default();
    }
    let b = graph_bounds(program, skill, &skill.graph, memo, depth);
    memo.insert(key.to_string(), b);
    b
}

/// Counts add up over the graph's nodes; wall time is the longest path.
fn graph_bounds(
    program: &Program,
    skill: &Skill,
    graph: &Graph,
    memo: &mut HashMap<String, Bounds>,
    depth: u32,
) -> Bounds {
    let mut total = Bounds::ZERO;
    let mut finish: HashMap<usize, Bound> = HashMap::new();
    let mut longest: Bound = Some(0);
    for id in graph.topo_order() {
        let node = node_bounds(program, skill, id, memo, depth);
        total = total.plus_counts(node);
        let start = graph.index_of(id).map_or(Some(0), |ix| {
            graph
                .dag
                .neighbors_directed(ix, petgraph::Direction::Incoming)
                .map(|p| finish.get(&graph.dag[p]).copied().unwrap_or(Some(0)))
                .try_fold(0u64, |acc, f| f.map(|f| acc.max(f)))
        });
        let end = add(start, node.wall_ms);
        finish.insert(id, end);
        longest = match (longest, end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    total.wall_ms = longest;
    total
}

fn node_bounds(
    program: &Program,
    skill: &Skill,
    id: usize,
    memo: &mut HashMap<String, Bounds>,
    depth: u32,
) -> Bounds {
    match &skill.nodes[id].kind {
        NodeKind::Step(step) => step_bounds(program, step, memo, depth),
        NodeKind::Loop { max, body } => {
            graph_bounds(program, skill, body, memo, depth).times(Some(u64::from(*max)))
        }
        NodeKind::For {
            iter,
            parallel,
            body,
            ..
        } => {
            let inner = graph_bounds(program, skill, body, memo, depth);
            let n = literal_len(&iter.code);
            let mut b = inner.times(n);
            // `parallel` elements at a time: the rounds, not the elements, add up.
            let rounds = n.map(|n| n.div_ceil(u64::from((*parallel).max(1))));
            b.wall_ms = mul(rounds, inner.wall_ms);
            b
        }
    }
}

/// The length of a list the `for` iterates over, when it is a literal (no
/// name, method or function in it): otherwise only the run knows.
fn literal_len(code: &str) -> Bound {
    // Names, methods and functions are `v_…`, `m_…`, `f_…` in the generated
    // code; a string that merely contains one is taken as unknown, which is safe.
    if ["v_", "m_", "f_"].iter().any(|p| code.contains(p)) {
        return None;
    }
    rhai::Engine::new_raw()
        .eval_expression::<rhai::Array>(code)
        .ok()
        .map(|a| a.len() as u64)
}

fn step_bounds(
    program: &Program,
    step: &Step,
    memo: &mut HashMap<String, Bounds>,
    depth: u32,
) -> Bounds {
    let attempts = u64::from(step.attempts.max(1));
    let backoff = backoff_total(step, attempts);
    let timed = add(mul(Some(attempts), Some(step.timeout_ms)), backoff);
    let mut b = Bounds {
        attempts: Some(attempts),
        wall_ms: timed,
        ..Bounds::ZERO
    };
    match &step.kind {
        StepKind::Run(_) | StepKind::Script { .. } => {}
        StepKind::Llm(llm) => {
            let limit = llm.max_tokens.or(llm.model.max_tokens);
            b.llm_calls = Some(attempts);
            b.output_tokens = mul(Some(attempts), limit);
            b.output_cost_usd = match (b.output_tokens, llm.model.output_price) {
                (Some(t), Some(price)) => Some(t as f64 * price / 1e6),
                _ => None,
            };
        }
        StepKind::Agent(agent) => {
            // Every turn may be a model call; the tools' own steps are not bounded here.
            let calls = mul(Some(attempts), Some(u64::from(agent.max_turns)));
            let limit = agent.max_tokens.or(agent.model.max_tokens);
            b.llm_calls = calls;
            b.output_tokens = mul(calls, limit);
            b.output_cost_usd = match (b.output_tokens, agent.model.output_price) {
                (Some(t), Some(price)) => Some(t as f64 * price / 1e6),
                _ => None,
            };
        }
        StepKind::Approval { timeout_ms, .. } => {
            b.wall_ms = Some(0);
            b.person_ms = *timeout_ms;
        }
        StepKind::Wait {
            duration_ms, until, ..
        } => {
            b.wall_ms = match (duration_ms, until) {
                (Some(d), _) => Some(*d),
                (None, Some(_)) => Some(step.timeout_ms),
                (None, None) => Some(0),
            }
        }
        StepKind::Call { skill, .. } => {
            let callee = skill_bounds(program, skill, memo, depth + 1).times(Some(attempts));
            b = b.plus_counts(callee);
            b.wall_ms = match callee.wall_ms {
                Some(w) => add(Some(w.min(attempts * step.timeout_ms)), backoff),
                None => timed,
            };
        }
    }
    b
}

/// The waits between `attempts` attempts.
fn backoff_total(step: &Step, attempts: u64) -> Bound {
    let Some(b) = step.backoff else {
        return Some(0);
    };
    let mut wait = b.initial_ms as f64;
    let mut total = 0u64;
    for _ in 1..attempts {
        let this = (wait as u64).min(b.max_ms);
        total = total.checked_add(this)?;
        wait *= b.factor;
    }
    Some(total)
}
