//! `flowc graph`: a skill's compiled graph as Graphviz dot or Mermaid.

use super::write_stdout;
use crate::ir::{Graph, NodeId, NodeKind, Skill, StepKind};
use std::fmt::Write;
use std::path::PathBuf;

/// Output formats of `flowc graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz dot (`dot -Tsvg`).
    Dot,
    /// Mermaid flowchart (renders in GitHub Markdown).
    Mermaid,
}

/// Arguments of `flowc graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The .flow file.
    pub file: PathBuf,
    /// The skill (default: `main`, or the file's only skill).
    pub skill: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// Compiles the file and prints the graph.
pub fn run(args: &GraphArgs, color: bool) -> u8 {
    let skill = match super::compile::compile_entry(&args.file, args.skill.as_deref(), color) {
        Ok((_, skill)) => skill,
        Err(code) => return code,
    };
    let text = match args.format {
        GraphFormat::Dot => dot(&skill),
        GraphFormat::Mermaid => mermaid(&skill),
    };
    write_stdout(text.as_bytes())
}

fn label(skill: &Skill, id: NodeId) -> String {
    let node = &skill.nodes[id];
    match &node.kind {
        NodeKind::Step(step) => {
            let kind = match &step.kind {
                StepKind::Run(_) => "run".to_string(),
                StepKind::Llm(l) => format!("llm {}", l.model.name),
                StepKind::Approval { .. } => "approval".to_string(),
                StepKind::Call { skill, .. } => {
                    format!("call {}", skill.rsplit('#').next().unwrap_or(skill))
                }
                StepKind::Script { .. } => "script".to_string(),
                StepKind::Wait { .. } => "wait".to_string(),
            };
            format!("{}: {kind}", node.name)
        }
        NodeKind::Loop { max, .. } => format!("loop {} (max {max})", node.name),
        NodeKind::For {
            var,
            iter,
            parallel,
            ..
        } => format!("for {var} in {} (parallel {parallel})", iter.source),
    }
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A step that stands for `id` when an edge touches a block.
fn anchor(skill: &Skill, id: NodeId) -> String {
    match &skill.nodes[id].kind {
        NodeKind::Step(_) => format!("n_{}", skill.nodes[id].name),
        NodeKind::Loop { body, .. } | NodeKind::For { body, .. } => match body.topo_order().first()
        {
            Some(&first) => anchor(skill, first),
            None => format!("empty_{}", skill.nodes[id].name),
        },
    }
}

fn dot(skill: &Skill) -> String {
    let mut out = format!(
        "digraph {} {{\n  compound=true;\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        quote(&skill.name)
    );
    dot_graph(skill, &skill.graph, 1, &mut out);
    out.push_str("}\n");
    out
}

fn dot_graph(skill: &Skill, graph: &Graph, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for id in graph.topo_order() {
        let node = &skill.nodes[id];
        match &node.kind {
            NodeKind::Step(_) => {
                let _ = writeln!(
                    out,
                    "{pad}n_{} [label={}];",
                    node.name,
                    quote(&label(skill, id))
                );
            }
            NodeKind::Loop { body, .. } | NodeKind::For { body, .. } => {
                let _ = writeln!(
                    out,
                    "{pad}subgraph cluster_{} {{\n{pad}  label={};",
                    node.name,
                    quote(&label(skill, id))
                );
                if body.dag.node_count() == 0 {
                    let _ = writeln!(out, "{pad}  empty_{} [shape=point];", node.name);
                }
                dot_graph(skill, body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
    for edge in graph.dag.edge_indices() {
        let Some((a, b)) = graph.dag.edge_endpoints(edge) else {
            continue;
        };
        let (a, b) = (graph.dag[a], graph.dag[b]);
        let mut attrs = Vec::new();
        if !matches!(skill.nodes[a].kind, NodeKind::Step(_)) {
            attrs.push(format!("ltail=cluster_{}", skill.nodes[a].name));
        }
        if !matches!(skill.nodes[b].kind, NodeKind::Step(_)) {
            attrs.push(format!("lhead=cluster_{}", skill.nodes[b].name));
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(
            out,
            "{pad}{} -> {}{attrs};",
            anchor(skill, a),
            anchor(skill, b)
        );
    }
}

fn mermaid(skill: &Skill) -> String {
    let mut out = String::from("flowchart LR\n");
    mermaid_graph(skill, &skill.graph, 1, &mut out);
    out
}

fn mermaid_graph(skill: &Skill, graph: &Graph, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for id in graph.topo_order() {
        let node = &skill.nodes[id];
        let text = label(skill, id).replace('"', "#quot;");
        match &node.kind {
            NodeKind::Step(_) => {
                let _ = writeln!(out, "{pad}n_{}[\"{text}\"]", node.name);
            }
            NodeKind::Loop { body, .. } | NodeKind::For { body, .. } => {
                let _ = writeln!(out, "{pad}subgraph n_{}[\"{text}\"]", node.name);
                mermaid_graph(skill, body, depth + 1, out);
                let _ = writeln!(out, "{pad}end");
            }
        }
    }
    for edge in graph.dag.edge_indices() {
        let Some((a, b)) = graph.dag.edge_endpoints(edge) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{pad}n_{} --> n_{}",
            skill.nodes[graph.dag[a]].name, skill.nodes[graph.dag[b]].name
        );
    }
}
