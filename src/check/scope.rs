//! What names mean inside a skill, and the dataflow edges their use creates.

use super::expr::{Lookup, Scope, optional};
use crate::diag::{Code, Diagnostic, FileId};
use crate::ir::Ty;
use crate::span::Span;
use crate::syntax::ast;
use std::collections::HashMap;

/// A step or block of the skill being checked.
pub struct NodeInfo<'a> {
    /// Its name (`for x` blocks get `for_x`).
    pub name: String,
    /// The span of its name.
    pub name_span: Span,
    /// The enclosing block.
    pub parent: Option<usize>,
    /// Its definition.
    pub def: NodeDefRef<'a>,
    /// Steps: the result type. Loops: `{ feedback, iteration }`. For: the element type.
    pub ty: Ty,
    /// How many expressions or templates read it.
    pub reads: usize,
    /// Whether its names may be `null` after it settled, and why.
    pub absent: Option<Absent>,
    /// The text of its `when`, when that condition reads no files or
    /// variables: a step with the same `when` runs only where this one did.
    pub when_key: Option<String>,
}

/// Why a node's result may be `null` where later steps read it.
#[derive(Debug, Clone)]
pub struct Absent {
    /// The reason, for diagnostics ("skipped when its `when` is false").
    pub why: &'static str,
    /// The whole result may be `null` (skipped).
    pub whole: bool,
    /// A `for` block's list may hold `null` elements (`on_failure: continue`).
    pub partial: bool,
    /// Absent only when its `when` is false (no `on_failure` may drop it).
    pub only_when: bool,
}

impl Absent {
    /// From a node's fields: `when`, and `on_failure: continue | escalate`.
    /// A rejected `approval` still has a result, so `continue` keeps it present.
    pub fn of(fields: &[ast::Field], is_approval: bool, is_for: bool) -> Option<Absent> {
        let on_failure = fields
            .iter()
            .find(|f| f.key.name == "on_failure")
            .and_then(|f| match &f.value {
                ast::FieldValue::Expr(ast::Expr {
                    kind: ast::ExprKind::Str(s),
                    ..
                }) => Some(s.value.as_str()),
                ast::FieldValue::Expr(ast::Expr {
                    kind: ast::ExprKind::Name(n),
                    ..
                }) => Some(n.as_str()),
                _ => None,
            });
        let has_when = fields.iter().any(|f| f.key.name == "when");
        let (why, whole, partial) = match on_failure {
            Some("escalate") => ("a person may skip it (`on_failure: escalate`)", true, false),
            Some("continue") if is_for => (
                "elements may not have finished (`on_failure: continue`)",
                false,
                true,
            ),
            Some("continue") if !is_approval => (
                "it may have failed without a result (`on_failure: continue`)",
                true,
                false,
            ),
            _ if has_when => ("it is skipped when its `when` is false", true, false),
            _ => return None,
        };
        let fails = matches!(on_failure, Some("escalate" | "continue")) && (is_for || !is_approval);
        Some(Absent {
            why: if has_when && fails {
                "it is skipped when its `when` is false, or may fail (`on_failure`)"
            } else {
                why
            },
            whole: whole || has_when,
            partial,
            only_when: has_when && !fails,
        })
    }
}

/// The text of a `when` that depends only on step results and parameters
/// (no `env()`, `exists()`, `read()`, `secret()`), with spaces removed.
pub fn when_key(fields: &[ast::Field], text: &str) -> Option<String> {
    let field = fields.iter().find(|f| f.key.name == "when")?;
    let ast::FieldValue::Expr(expr) = &field.value else {
        return None;
    };
    let source = text.get(expr.span.start..expr.span.end)?;
    let impure = ["env(", "exists(", "read(", "secret("];
    let key: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    (!impure.iter().any(|f| key.contains(f))).then_some(key)
}

/// A node's definition.
#[derive(Clone, Copy)]
pub enum NodeDefRef<'a> {
    /// A step.
    Step(&'a ast::StepDef),
    /// A loop block.
    Loop(&'a ast::LoopDef),
    /// A for block.
    For(&'a ast::ForDef),
}

/// A dependency found in an expression, template or `after`.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The block whose graph holds the edge (`None`: the skill).
    pub container: Option<usize>,
    /// The node depended on.
    pub from: usize,
    /// The dependent node.
    pub to: usize,
    /// Where the dependency is written.
    pub span: Span,
}

/// The mutable state of one skill's check.
pub struct SkillState<'a> {
    /// The file of the skill.
    pub file: FileId,
    /// All nodes, parents first.
    pub nodes: Vec<NodeInfo<'a>>,
    /// Node index by name.
    pub by_name: HashMap<String, usize>,
    /// Parameters: name, type, used.
    pub params: Vec<(String, Ty, bool)>,
    /// Dependencies found.
    pub edges: Vec<Edge>,
    /// Names a node's `when` proves present inside it (`when: a != null`).
    pub narrowed: HashMap<usize, Vec<String>>,
    /// The memory keys each node reads (`recall`), in order of first use.
    pub recalls: HashMap<usize, Vec<String>>,
    /// Parameter defaults are being checked: they are evaluated before a
    /// run has loaded its memory, so `recall` is refused there.
    pub in_defaults: bool,
}

/// Which names a position sees.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fields of a step, and `when`.
    Plain,
    /// A template (adds `attempt.number`, `attempt.feedback`).
    Template,
    /// `accept` and `feedback` of step `0` (its result fields by bare name, and `attempt`).
    Accept(usize),
    /// A block's own header (`for x in EXPR`, the block's `when`): the block's inner names are not in scope.
    Header,
}

impl<'a> SkillState<'a> {
    /// Ancestors of `node`, nearest first (not including `node`).
    pub fn ancestors(&self, node: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = self.nodes[node].parent;
        while let Some(p) = cur {
            out.push(p);
            cur = self.nodes[p].parent;
        }
        out
    }

    fn containers(&self, node: usize) -> Vec<Option<usize>> {
        let mut out: Vec<Option<usize>> = self.ancestors(node).into_iter().map(Some).collect();
        out.push(None);
        out
    }

    /// The top of `node`'s chain directly inside `container`.
    fn top_in(&self, node: usize, container: Option<usize>) -> usize {
        let mut cur = node;
        while self.nodes[cur].parent != container {
            match self.nodes[cur].parent {
                Some(p) => cur = p,
                None => break,
            }
        }
        cur
    }

    /// Records that `at` (a node, or the skill's return when `None`) depends on `target`.
    pub fn depend(
        &mut self,
        target: usize,
        at: Option<usize>,
        span: Span,
        counts_as_read: bool,
        diags: &mut Vec<Diagnostic>,
    ) {
        let Some(at) = at else {
            if counts_as_read {
                self.nodes[target].reads += 1;
            }
            return;
        };
        if target == at || self.ancestors(target).contains(&at) {
            let what = if target == at {
                format!("step `{}` refers to itself", self.nodes[at].name)
            } else {
                format!(
                    "block `{}` refers to its own inner step `{}`",
                    self.nodes[at].name, self.nodes[target].name
                )
            };
            diags.push(
                Diagnostic::new(Code::E0502, self.file, span, what)
                    .label("self-reference")
                    .help("inside `accept` and `feedback`, read the step's own result by bare name, such as `exit_code` or `output`"),
            );
            return;
        }
        if counts_as_read {
            self.nodes[target].reads += 1;
        }
        let (container, from, to) =
            if self.nodes[target].parent.is_none() && self.nodes[at].parent.is_none() {
                // Both at the top level, the common case: no ancestor lists.
                (None, target, at)
            } else {
                let mine = self.containers(at);
                let container = self
                    .containers(target)
                    .into_iter()
                    .find(|c| mine.contains(c))
                    .unwrap_or(None);
                (
                    container,
                    self.top_in(target, container),
                    self.top_in(at, container),
                )
            };
        // A repeat of the previous edge (a step reading the same step twice)
        // adds nothing: the graph keeps the first span of each edge.
        let repeat = self
            .edges
            .last()
            .is_some_and(|e| e.container == container && e.from == from && e.to == to);
        if from != to && !repeat {
            self.edges.push(Edge {
                container,
                from,
                to,
                span,
            });
        }
    }
}

/// The scope at one position of a skill.
pub struct NodeScope<'s, 'a> {
    /// The skill's state.
    pub state: &'s mut SkillState<'a>,
    /// The node being checked (`None`: the skill's `return`).
    pub at: Option<usize>,
    /// Which names are visible.
    pub mode: Mode,
}

impl NodeScope<'_, '_> {
    /// The blocks enclosing the position.
    fn enclosing(&self) -> Vec<usize> {
        let Some(at) = self.at else { return Vec::new() };
        match self.mode {
            Mode::Header => self.state.ancestors(at),
            _ => {
                let mut v = self.state.ancestors(at);
                if !matches!(self.state.nodes[at].def, NodeDefRef::Step(_)) {
                    v.insert(0, at);
                }
                v
            }
        }
    }

    /// Whether `name` is one of [`Scope::names`], without building that list
    /// (which lists every step of the skill).
    pub fn knows(&self, name: &str) -> bool {
        if self.state.params.iter().any(|p| p.0 == name) {
            return true;
        }
        // Every step is in `by_name` under its own name (duplicates are not
        // added as nodes, and `for` blocks never take a taken name).
        if let Some(&node) = self.state.by_name.get(name)
            && matches!(self.state.nodes[node].def, NodeDefRef::Step(_))
        {
            return true;
        }
        for block in self.enclosing() {
            let found = match self.state.nodes[block].def {
                NodeDefRef::For(f) => f.var.name == name,
                NodeDefRef::Loop(_) => self.state.nodes[block].name == name,
                NodeDefRef::Step(_) => false,
            };
            if found {
                return true;
            }
        }
        if self
            .own_fields()
            .is_some_and(|rec| rec.fields.iter().any(|(n, _)| n == name))
        {
            return true;
        }
        matches!(self.mode, Mode::Template | Mode::Accept(_)) && name == "attempt"
    }

    /// The type of step `node`'s name as seen from outside the blocks it is
    /// in but not in `enclosing`: a list per `for`, `?` where it may be absent.
    fn seen_type(&self, node: usize, enclosing: &[usize]) -> Ty {
        let info = &self.state.nodes[node];
        let mut ty = info.ty.clone();
        if self.may_be_absent(node) {
            ty = optional(ty);
        }
        for anc in self.state.ancestors(node) {
            if enclosing.contains(&anc) {
                break;
            }
            let absent = self.state.nodes[anc]
                .absent
                .as_ref()
                .filter(|_| self.may_be_absent(anc));
            match self.state.nodes[anc].def {
                NodeDefRef::For(_) => {
                    if absent.is_some_and(|a| a.partial) {
                        ty = optional(ty);
                    }
                    ty = ty.list_of();
                    if absent.is_some_and(|a| a.whole) {
                        ty = optional(ty);
                    }
                }
                _ if absent.is_some() => ty = optional(ty),
                _ => {}
            }
        }
        ty
    }

    /// Whether `node` may be absent here: it has an [`Absent`], unless that is
    /// only its `when` and the position runs under the same `when`.
    fn may_be_absent(&self, node: usize) -> bool {
        let info = &self.state.nodes[node];
        let Some(absent) = &info.absent else {
            return false;
        };
        if !absent.only_when {
            return true;
        }
        let (Some(key), Some(at)) = (&info.when_key, self.at) else {
            return true;
        };
        !std::iter::once(at)
            .chain(self.state.ancestors(at))
            .any(|n| n != node && self.state.nodes[n].when_key.as_ref() == Some(key))
    }

    /// Whether the `when` of the position (or of a block around it) proves `name` present.
    fn is_narrowed(&self, name: &str) -> bool {
        let Some(at) = self.at else { return false };
        std::iter::once(at)
            .chain(self.state.ancestors(at))
            .any(|n| {
                self.state
                    .narrowed
                    .get(&n)
                    .is_some_and(|v| v.iter().any(|x| x == name))
            })
    }

    /// Why `node`'s value may be absent as seen from here, naming the node.
    fn absence_of(&self, node: usize, enclosing: &[usize]) -> Option<String> {
        let info = &self.state.nodes[node];
        if let Some(a) = info.absent.as_ref().filter(|_| self.may_be_absent(node)) {
            return Some(format!("`{}` may be absent: {}", info.name, a.why));
        }
        for anc in self.state.ancestors(node) {
            if enclosing.contains(&anc) {
                break;
            }
            if let Some(a) = self.state.nodes[anc]
                .absent
                .as_ref()
                .filter(|_| self.may_be_absent(anc))
            {
                let block = &self.state.nodes[anc].name;
                return Some(format!(
                    "`{}` may be absent: it is inside `{block}`, and {}",
                    info.name,
                    a.why
                        .replacen("it is", "that is", 1)
                        .replacen("it may", "that may", 1)
                ));
            }
        }
        None
    }

    fn own_fields(&self) -> Option<&crate::ir::Record> {
        let Mode::Accept(own) = self.mode else {
            return None;
        };
        match &self.state.nodes[own].ty {
            Ty::Record(rec) => Some(rec),
            _ => None,
        }
    }
}

impl Scope for NodeScope<'_, '_> {
    fn lookup(&mut self, name: &str, span: Span, diags: &mut Vec<Diagnostic>) -> Lookup {
        if let Mode::Accept(own) = self.mode {
            if name == "attempt" {
                return Lookup::Found(Ty::Int);
            }
            // A step's own result read by its `accept` or `feedback` is a use
            // of it (W0001 does not fire for a step that only gates on it).
            if let Some(ty) = self.own_fields().and_then(|r| r.field(name)).cloned() {
                self.state.nodes[own].reads += 1;
                return Lookup::Found(ty);
            }
            if matches!(self.state.nodes[own].ty, Ty::Json | Ty::Error) && name == "output" {
                self.state.nodes[own].reads += 1;
                return Lookup::Found(self.state.nodes[own].ty.clone());
            }
        }
        if self.mode == Mode::Template && name == "attempt" {
            return Lookup::Found(Ty::record(vec![
                ("number", Ty::Int),
                ("feedback", Ty::String),
            ]));
        }
        let enclosing = self.enclosing();
        for &block in &enclosing {
            if let NodeDefRef::For(f) = self.state.nodes[block].def
                && f.var.name == name
            {
                return Lookup::Found(self.state.nodes[block].ty.clone());
            }
        }
        if let Some(&node) = self.state.by_name.get(name) {
            return match self.state.nodes[node].def {
                NodeDefRef::Loop(_) => {
                    if enclosing.contains(&node) {
                        Lookup::Found(self.state.nodes[node].ty.clone())
                    } else {
                        diags.push(
                            Diagnostic::new(Code::E0505, self.state.file, span, format!("`{name}` is a loop: its `feedback` and `iteration` exist only inside it"))
                                .label("outside the loop")
                                .help(format!("read an inner step of `{name}` instead; outside the loop it holds the last iteration's result")),
                        );
                        Lookup::Reported
                    }
                }
                _ => {
                    let ty = self.seen_type(node, &enclosing);
                    let ty = if self.is_narrowed(name) {
                        ty.strip_optional().clone()
                    } else {
                        ty
                    };
                    let at = self.at;
                    self.state.depend(node, at, span, true, diags);
                    Lookup::Found(ty)
                }
            };
        }
        let narrowed = self.is_narrowed(name);
        if let Some(p) = self.state.params.iter_mut().find(|p| p.0 == name) {
            p.2 = true;
            if narrowed {
                return Lookup::Found(p.1.strip_optional().clone());
            }
            return Lookup::Found(p.1.clone());
        }
        for node in &self.state.nodes {
            if let NodeDefRef::For(f) = node.def
                && f.var.name == name
            {
                diags.push(
                    Diagnostic::new(
                        Code::E0505,
                        self.state.file,
                        span,
                        format!("`{name}` exists only inside its `for` block"),
                    )
                    .label("used outside the block")
                    .with(f.var.span, "defined here"),
                );
                return Lookup::Reported;
            }
        }
        Lookup::Missing
    }

    fn recall(&mut self, key: &str) -> bool {
        if self.state.in_defaults {
            return false;
        }
        if let Some(at) = self.at {
            let keys = self.state.recalls.entry(at).or_default();
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_string());
            }
        }
        true
    }

    fn absence(&self, name: &str) -> Option<String> {
        if self.is_narrowed(name) {
            return None;
        }
        if let Mode::Accept(_) = self.mode
            && self.own_fields().is_some_and(|r| r.field(name).is_some())
        {
            return None;
        }
        match self.state.by_name.get(name) {
            Some(&node) if matches!(self.state.nodes[node].def, NodeDefRef::Step(_)) => {
                self.absence_of(node, &self.enclosing())
            }
            _ => self
                .state
                .params
                .iter()
                .find(|p| p.0 == name)
                .map(|p| format!("parameter `{name}` has the optional type `{}`", p.1)),
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.params.iter().map(|p| p.0.clone()).collect();
        names.extend(
            self.state
                .nodes
                .iter()
                .filter(|n| matches!(n.def, NodeDefRef::Step(_)))
                .map(|n| n.name.clone()),
        );
        for block in self.enclosing() {
            match self.state.nodes[block].def {
                NodeDefRef::For(f) => names.push(f.var.name.clone()),
                NodeDefRef::Loop(_) => names.push(self.state.nodes[block].name.clone()),
                NodeDefRef::Step(_) => {}
            }
        }
        if let Some(rec) = self.own_fields() {
            names.extend(rec.fields.iter().map(|(n, _)| n.clone()));
        }
        if matches!(self.mode, Mode::Template | Mode::Accept(_)) {
            names.push("attempt".into());
        }
        names
    }
}
