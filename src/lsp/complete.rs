//! Completion: the fields of the step kind, members of typed results, and the names in scope.

use super::analysis::Analysis;
use super::navigate::{
    ir_node, item_name, node_name, nodes, qualifier_before, qualifier_span, skill_at,
};
use crate::ir::{self, Ty};
use crate::syntax::ast::{self, Item, NodeDef};
use lsp_types as lsp;

/// The built-in functions an expression may call.
const FUNCTIONS: &[&str] = &["env", "secret", "exists", "read", "json"];

/// The start of the identifier that ends at `offset` (`offset` when none).
fn word_start(text: &str, offset: usize) -> usize {
    let bytes = text.as_bytes();
    let mut start = offset.min(bytes.len());
    while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
        start -= 1;
    }
    start
}

/// What may be written at `offset`.
pub fn completion(a: &Analysis, offset: usize) -> Vec<lsp::CompletionItem> {
    let start = word_start(&a.text, offset);
    if qualifier_before(&a.text, start).is_some() {
        let Some(ty) = type_of_chain(a, start) else {
            return Vec::new();
        };
        return fields_of(&ty)
            .into_iter()
            .map(|(name, ty)| item(name, lsp::CompletionItemKind::FIELD, Some(ty)))
            .collect();
    }
    if let Some(step) = step_at_key(a, start) {
        let have: Vec<&str> = step.fields.iter().map(|f| f.key.name.as_str()).collect();
        let fields = crate::check::step_field_names(&step.kind.name).unwrap_or_default();
        return fields
            .into_iter()
            .filter(|f| !have.contains(f))
            .map(|f| item(f.to_string(), lsp::CompletionItemKind::PROPERTY, None))
            .collect();
    }
    names_in_scope(a, start)
}

fn item(
    label: String,
    kind: lsp::CompletionItemKind,
    detail: Option<String>,
) -> lsp::CompletionItem {
    lsp::CompletionItem {
        label,
        kind: Some(kind),
        detail,
        ..lsp::CompletionItem::default()
    }
}

/// The step whose body holds `at` where a field's key goes (the line holds
/// nothing before it, or it follows `{` or `,`).
fn step_at_key(a: &Analysis, at: usize) -> Option<&ast::StepDef> {
    let before = a.text.get(..at)?;
    let line = before.rsplit('\n').next().unwrap_or("");
    let trimmed = line.trim_end();
    if !(trimmed.trim().is_empty() || trimmed.ends_with('{') || trimmed.ends_with(',')) {
        return None;
    }
    let skill = skill_at(&a.file, at)?;
    nodes(&skill.body).into_iter().find_map(|n| match n {
        // Not inside a field's value (a multi-line prompt, a map).
        NodeDef::Step(s)
            if s.fields
                .iter()
                .any(|f| f.key.span.end < at && at <= f.span.end) =>
        {
            None
        }
        NodeDef::Step(s) if s.span.start < at && at < s.span.end => {
            // Inside the body, not in the head.
            let body_open = a.text.get(s.span.start..at)?.contains('{');
            body_open.then_some(s)
        }
        _ => None,
    })
}

fn names_in_scope(a: &Analysis, at: usize) -> Vec<lsp::CompletionItem> {
    let mut out = Vec::new();
    if let Some(skill) = skill_at(&a.file, at) {
        for p in &skill.params {
            let ty = a
                .text
                .get(p.ty.span.start..p.ty.span.end)
                .map(str::to_string);
            out.push(item(
                p.name.name.clone(),
                lsp::CompletionItemKind::VARIABLE,
                ty,
            ));
        }
        for n in nodes(&skill.body) {
            let detail = match n {
                NodeDef::Step(s) => Some(format!("{} step", s.kind.name)),
                NodeDef::Loop(_) => Some("loop".to_string()),
                NodeDef::For(_) => Some("for variable".to_string()),
            };
            out.push(item(
                node_name(n).name.clone(),
                lsp::CompletionItemKind::VARIABLE,
                detail,
            ));
        }
    }
    for i in &a.file.items {
        let Some((name, _)) = item_name(i) else {
            continue;
        };
        let kind = match i {
            Item::Import(_) => lsp::CompletionItemKind::MODULE,
            Item::Type(_) => lsp::CompletionItemKind::STRUCT,
            Item::Config(_) => lsp::CompletionItemKind::CONSTANT,
            Item::Skill(_) => lsp::CompletionItemKind::FUNCTION,
        };
        out.push(item(name, kind, None));
    }
    for f in FUNCTIONS {
        out.push(item(
            f.to_string(),
            lsp::CompletionItemKind::FUNCTION,
            Some("built-in".into()),
        ));
    }
    out
}

/// The type of `a.b.c` where the `.` before `at` ends it: the first name is
/// a step or parameter of the enclosing skill, the rest are record fields.
pub fn type_of_chain(a: &Analysis, at: usize) -> Option<Ty> {
    let mut names = Vec::new();
    let mut cur = at;
    while let Some(span) = qualifier_span(&a.text, cur) {
        names.push(a.text.get(span.start..span.end)?.to_string());
        cur = span.start;
    }
    names.reverse();
    let (first, rest) = names.split_first()?;
    let program = a.program.as_ref()?;
    let skill = skill_at(&a.file, at)?;
    let mut ty = root_type(program, &skill.name.name, first)?;
    for name in rest {
        let Ty::Record(r) = ty.strip_optional() else {
            return None;
        };
        ty = r.field(name)?.clone();
    }
    Some(ty)
}

fn root_type(program: &ir::Program, skill: &str, name: &str) -> Option<Ty> {
    if let Some(node) = ir_node(program, skill, name) {
        return match &node.kind {
            ir::NodeKind::Step(s) => Some(s.result.clone()),
            _ => None,
        };
    }
    let skill = program
        .entry
        .iter()
        .filter_map(|k| program.skills.get(k))
        .find(|s| s.name == skill)?;
    skill
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.ty.clone())
}

/// The fields of a record type (through `?`), with their types as text.
pub fn fields_of(ty: &Ty) -> Vec<(String, String)> {
    match ty.strip_optional() {
        Ty::Record(r) => r
            .fields
            .iter()
            .map(|(n, t)| (n.clone(), t.to_string()))
            .collect(),
        _ => Vec::new(),
    }
}
