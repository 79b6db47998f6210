//! A stable text rendering of a compiled program, for snapshots and `--verbose`.

use super::{Graph, Node, NodeKind, Program, Skill, StepKind, Value};
use std::fmt::Write;

/// Milliseconds as the shortest exact duration literal.
pub fn format_ms(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

impl Program {
    /// One block of text per skill of the file: signature, policy and nodes in order.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for model in &self.models {
            let _ = writeln!(
                out,
                "model {} ({:?} {})",
                model.name,
                model.provider,
                model.model.as_deref().unwrap_or("-")
            );
        }
        for policy in &self.policies {
            let _ = writeln!(
                out,
                "policy {}: max_attempts {}, max_parallel {}, step_timeout {}, run_timeout {}",
                policy.name,
                policy.max_attempts,
                policy.max_parallel,
                format_ms(policy.step_timeout_ms),
                format_ms(policy.run_timeout_ms)
            );
        }
        for trigger in &self.triggers {
            let _ = writeln!(
                out,
                "trigger {} -> {}",
                trigger.name,
                trigger.skill.as_deref().unwrap_or("-")
            );
        }
        for key in &self.entry {
            if let Some(skill) = self.skills.get(key) {
                skill.write_summary(&mut out);
            }
        }
        out
    }
}

impl Skill {
    fn write_summary(&self, out: &mut String) {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| match &p.default {
                Some(d) => format!("{}: {} = {}", p.name, p.ty, value_text(d)),
                None => format!("{}: {}", p.name, p.ty),
            })
            .collect();
        let _ = write!(out, "skill {}({})", self.name, params.join(", "));
        if let Some(ret) = &self.returns {
            let _ = write!(out, " -> {ret}");
        }
        let _ = writeln!(out, " [policy {}]", self.policy.name);
        self.write_graph(out, &self.graph, 1);
        if let Some(output) = &self.output {
            let _ = writeln!(out, "  return {}", value_text(output));
        }
    }

    fn write_graph(&self, out: &mut String, graph: &Graph, depth: usize) {
        for id in graph.topo_order() {
            let node = &self.nodes[id];
            let deps: Vec<&str> = graph
                .dependencies(id)
                .into_iter()
                .map(|d| self.nodes[d].name.as_str())
                .collect();
            let indent = "  ".repeat(depth);
            let _ = write!(out, "{indent}{}", node_head(node));
            if !deps.is_empty() {
                let _ = write!(out, " after [{}]", deps.join(", "));
            }
            if let Some(when) = &node.when {
                let _ = write!(out, " when `{}`", when.source);
            }
            let _ = writeln!(out);
            match &node.kind {
                NodeKind::Step(step) => {
                    let _ = writeln!(
                        out,
                        "{indent}  attempts {}, timeout {}, result {}",
                        step.attempts,
                        super::summary::format_ms(step.timeout_ms),
                        step.result
                    );
                    for accept in &step.accept {
                        let _ = writeln!(out, "{indent}  accept `{}`", accept.source);
                    }
                    if !step.recalls.is_empty() || !step.remember.is_empty() {
                        let written: Vec<&String> = step.remember.iter().map(|(k, _)| k).collect();
                        let _ = writeln!(
                            out,
                            "{indent}  recalls {:?}, remembers {written:?}",
                            step.recalls
                        );
                    }
                    if let Some(on) = step.on_interrupt {
                        let _ = writeln!(out, "{indent}  on_interrupt {}", on.word());
                    }
                    // Scripts are cached by default: only say so where a flow chose.
                    let c = &step.cache;
                    let script = matches!(step.kind, super::StepKind::Script { .. });
                    if (c.enabled && !script) || !c.inputs.is_empty() || !c.outputs.is_empty() {
                        let _ = writeln!(
                            out,
                            "{indent}  cache {}, effect {}, inputs {:?}, outputs {:?}{}",
                            if c.enabled { "on" } else { "off" },
                            step.effect.word(),
                            c.inputs.iter().map(|g| &g.source).collect::<Vec<_>>(),
                            c.outputs.iter().map(|g| &g.source).collect::<Vec<_>>(),
                            if c.key.is_some() { ", cache_key" } else { "" }
                        );
                    }
                }
                NodeKind::Loop { body, .. } | NodeKind::For { body, .. } => {
                    self.write_graph(out, body, depth + 1)
                }
            }
        }
    }
}

fn node_head(node: &Node) -> String {
    let on_failure = match node.on_failure {
        super::OnFailure::Fail => String::new(),
        other => format!(" on_failure {other:?}").to_lowercase(),
    };
    match &node.kind {
        NodeKind::Step(step) => {
            let kind = match &step.kind {
                StepKind::Run(_) => "run".to_string(),
                StepKind::Llm(llm) => format!("llm({})", llm.model.name),
                StepKind::Agent(a) => format!("agent({})", a.model.name),
                StepKind::Approval {
                    approvers,
                    required,
                    self_approval,
                    ..
                } if !approvers.is_empty() || *required > 1 => format!(
                    "approval(approvers [{}], required {required}, self_approval {self_approval})",
                    approvers.join(", ")
                ),
                StepKind::Approval { .. } => "approval".to_string(),
                StepKind::Call { skill, .. } => {
                    format!("call {}", skill.rsplit('#').next().unwrap_or(skill))
                }
                StepKind::Script { .. } => "script".to_string(),
                StepKind::Wait { .. } => "wait".to_string(),
            };
            format!("step {}: {kind}{on_failure}", node.name)
        }
        NodeKind::Loop { max, .. } => format!("loop {} (max {max}){on_failure}", node.name),
        NodeKind::For {
            var,
            iter,
            elem,
            parallel,
            ..
        } => {
            format!(
                "for {var} in `{}` ({var}: {elem}, parallel {parallel}){on_failure}",
                iter.source
            )
        }
    }
}

/// A short rendering of a value.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::Const(v) => v.to_string(),
        Value::Template(t) => format!("{:?}", t.source),
        Value::Expr(e) => format!("`{}`", e.source),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(entries) => format!(
            "{{ {} }}",
            entries
                .iter()
                .map(|(k, v)| format!("{k}: {}", value_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
