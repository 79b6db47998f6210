//! `flowc graph`: a skill's compiled graph as Graphviz dot or Mermaid.

use super::{CliResult, write_stdout};
use crate::ir::{Graph, NodeId, NodeKind, Program, Skill, StepKind};
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
    /// Draw each `call` step as a cluster holding the called skill's graph
    /// (recursively), instead of one box.
    #[arg(long)]
    pub expand: bool,
}

/// Compiles the file and prints the graph.
pub fn run(args: &GraphArgs, color: bool) -> CliResult {
    let (program, skill) = super::compile::compile_entry(&args.file, args.skill.as_deref(), color)?;
    let view = View {
        program: &program,
        expand: args.expand,
    };
    let text = match args.format {
        GraphFormat::Dot => view.dot(&skill),
        GraphFormat::Mermaid => view.mermaid(&skill),
    };
    write_stdout(text.as_bytes())
}

/// One skill's graph drawn inside another: node ids are prefixed by the path
/// of `call` steps that lead to it, so expanded skills never clash.
#[derive(Clone, Copy)]
struct Scope<'a> {
    skill: &'a Skill,
    prefix: &'a str,
}

struct View<'a> {
    program: &'a Program,
    expand: bool,
}

fn label(skill: &Skill, id: NodeId) -> String {
    let node = &skill.nodes[id];
    let head = head(skill, id);
    // The description under the name; a template is shown as written (the
    // graph is drawn before anything runs).
    match &node.description {
        Some(crate::ir::Value::Const(serde_json::Value::String(d))) => format!("{head}\n{d}"),
        Some(crate::ir::Value::Template(t)) => format!("{head}\n{}", t.source),
        _ => head,
    }
}

fn head(skill: &Skill, id: NodeId) -> String {
    let node = &skill.nodes[id];
    match &node.kind {
        NodeKind::Step(step) => {
            let kind = match &step.kind {
                StepKind::Run(_) => "run".to_string(),
                StepKind::Llm(l) => format!("llm {}", l.model.name),
                StepKind::Agent(a) => format!("agent {}", a.model.name),
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
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// A node that contains others, when drawn.
enum Inner<'a> {
    /// A `loop` or `for` body.
    Block(&'a Graph),
    /// An expanded `call`: the callee's graph.
    Call(&'a Skill),
}

impl<'a> View<'a> {
    /// What `id` contains when drawn as a cluster, or `None` for a box.
    fn inner(&self, skill: &'a Skill, id: NodeId) -> Option<Inner<'a>> {
        match &skill.nodes[id].kind {
            NodeKind::Loop { body, .. } | NodeKind::For { body, .. } => Some(Inner::Block(body)),
            NodeKind::Step(step) => match &step.kind {
                StepKind::Call { skill, .. } if self.expand => {
                    self.program.skills.get(skill).map(|s| Inner::Call(s))
                }
                _ => None,
            },
        }
    }

    /// The id of `id` in the output.
    fn id(&self, at: Scope<'_>, id: NodeId) -> String {
        format!("{}{}", at.prefix, at.skill.nodes[id].name)
    }

    /// A step that stands for `id` when an edge touches a cluster.
    fn anchor(&self, at: Scope<'_>, id: NodeId) -> String {
        let name = self.id(at, id);
        match self.inner(at.skill, id) {
            None => format!("n_{name}"),
            Some(Inner::Block(body)) => match body.topo_order().first() {
                Some(&first) => self.anchor(at, first),
                None => format!("empty_{name}"),
            },
            Some(Inner::Call(callee)) => {
                let prefix = format!("{name}__");
                match callee.graph.topo_order().first() {
                    Some(&first) => self.anchor(
                        Scope {
                            skill: callee,
                            prefix: &prefix,
                        },
                        first,
                    ),
                    None => format!("empty_{name}"),
                }
            }
        }
    }

    fn dot(&self, skill: &Skill) -> String {
        let mut out = format!(
            "digraph {} {{\n  compound=true;\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
            quote(&skill.name)
        );
        let at = Scope { skill, prefix: "" };
        self.dot_graph(at, &skill.graph, 1, &mut out);
        out.push_str("}\n");
        out
    }

    fn dot_graph(&self, at: Scope<'_>, graph: &Graph, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        for id in graph.topo_order() {
            let name = self.id(at, id);
            let text = quote(&label(at.skill, id));
            let Some(inner) = self.inner(at.skill, id) else {
                let _ = writeln!(out, "{pad}n_{name} [label={text}];");
                continue;
            };
            let _ = writeln!(out, "{pad}subgraph cluster_{name} {{\n{pad}  label={text};");
            let (skill, body, prefix) = match inner {
                Inner::Block(body) => (at.skill, body, at.prefix.to_string()),
                Inner::Call(callee) => (callee, &callee.graph, format!("{name}__")),
            };
            if body.dag.node_count() == 0 {
                let _ = writeln!(out, "{pad}  empty_{name} [shape=point];");
            }
            let inner_at = Scope {
                skill,
                prefix: &prefix,
            };
            self.dot_graph(inner_at, body, depth + 1, out);
            let _ = writeln!(out, "{pad}}}");
        }
        for (a, b) in edges(graph) {
            let mut attrs = Vec::new();
            if self.inner(at.skill, a).is_some() {
                attrs.push(format!("ltail=cluster_{}", self.id(at, a)));
            }
            if self.inner(at.skill, b).is_some() {
                attrs.push(format!("lhead=cluster_{}", self.id(at, b)));
            }
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!(" [{}]", attrs.join(", "))
            };
            let _ = writeln!(
                out,
                "{pad}{} -> {}{attrs};",
                self.anchor(at, a),
                self.anchor(at, b)
            );
        }
    }

    fn mermaid(&self, skill: &Skill) -> String {
        let mut out = String::from("flowchart LR\n");
        self.mermaid_graph(Scope { skill, prefix: "" }, &skill.graph, 1, &mut out);
        out
    }

    fn mermaid_graph(&self, at: Scope<'_>, graph: &Graph, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        for id in graph.topo_order() {
            let name = self.id(at, id);
            let text = label(at.skill, id)
                .replace('"', "#quot;")
                .replace('\n', "<br/>");
            match self.inner(at.skill, id) {
                None => {
                    let _ = writeln!(out, "{pad}n_{name}[\"{text}\"]");
                }
                Some(inner) => {
                    let _ = writeln!(out, "{pad}subgraph n_{name}[\"{text}\"]");
                    match inner {
                        Inner::Block(body) => self.mermaid_graph(at, body, depth + 1, out),
                        Inner::Call(callee) => {
                            let prefix = format!("{name}__");
                            let inner_at = Scope {
                                skill: callee,
                                prefix: &prefix,
                            };
                            self.mermaid_graph(inner_at, &callee.graph, depth + 1, out);
                        }
                    }
                    let _ = writeln!(out, "{pad}end");
                }
            }
        }
        for (a, b) in edges(graph) {
            let _ = writeln!(out, "{pad}n_{} --> n_{}", self.id(at, a), self.id(at, b));
        }
    }
}

/// The edges of one graph, as node ids.
fn edges(graph: &Graph) -> Vec<(NodeId, NodeId)> {
    graph
        .dag
        .edge_indices()
        .filter_map(|e| graph.dag.edge_endpoints(e))
        .map(|(a, b)| (graph.dag[a], graph.dag[b]))
        .collect()
}
