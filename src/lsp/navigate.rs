//! What a name under the cursor refers to: go to definition, hover and document symbols.
//!
//! Names are resolved by the rules of the language on the syntax tree (a
//! step or parameter of the enclosing skill first, then the file's items and
//! import namespaces), so this works while the file has errors too; types
//! come from the compiled program when there is one.

use super::analysis::Analysis;
use super::uri;
use crate::ir;
use crate::span::Span;
use crate::syntax::ast::{self, Item, NodeDef};
use lsp_types as lsp;
use std::path::{Path, PathBuf};

/// An identifier in the text, and the one before a `.` in front of it.
#[derive(Debug, Clone)]
pub struct Word {
    /// The identifier.
    pub text: String,
    /// Where it is.
    pub span: Span,
    /// `ns` in `ns.word` (or `a` in `a?.word`).
    pub qualifier: Option<String>,
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The identifier at or just before `offset`.
pub fn word_at(text: &str, offset: usize) -> Option<Word> {
    let bytes = text.as_bytes();
    let mut start = offset.min(bytes.len());
    while start > 0 && is_ident(bytes[start - 1]) {
        start -= 1;
    }
    let mut end = offset.min(bytes.len());
    while end < bytes.len() && is_ident(bytes[end]) {
        end += 1;
    }
    if start == end {
        return None;
    }
    let qualifier = qualifier_before(text, start);
    Some(Word {
        text: text.get(start..end)?.to_string(),
        span: Span::new(start, end),
        qualifier,
    })
}

/// `a` when `a.` or `a?.` ends just before `at`.
pub fn qualifier_before(text: &str, at: usize) -> Option<String> {
    let span = qualifier_span(text, at)?;
    text.get(span.start..span.end).map(str::to_string)
}

/// Where `a` is when `a.` or `a?.` ends just before `at`.
pub fn qualifier_span(text: &str, at: usize) -> Option<Span> {
    let bytes = text.as_bytes();
    let mut i = at.checked_sub(1).filter(|&i| bytes.get(i) == Some(&b'.'))?;
    if i > 0 && bytes[i - 1] == b'?' {
        i -= 1;
    }
    let end = i;
    let mut start = end;
    while start > 0 && is_ident(bytes[start - 1]) {
        start -= 1;
    }
    (start < end).then_some(Span::new(start, end))
}

/// What a name refers to.
pub enum Target<'a> {
    /// A step, loop or for block of the enclosing skill.
    Node(&'a NodeDef),
    /// A parameter of the enclosing skill.
    Param(&'a ast::Param),
    /// An item of this file.
    Item(&'a Item),
    /// An item of an imported file (its path and the item's name span there).
    Imported(PathBuf, Span, String),
    /// A tool of a local `mcp` item: the item, and the tool's entry in `allow`.
    McpTool(&'a ast::ConfigItem, Option<Span>, String),
}

/// The skill whose text holds `offset`.
pub fn skill_at(file: &ast::File, offset: usize) -> Option<&ast::SkillDef> {
    file.items.iter().find_map(|i| match i {
        Item::Skill(s) if s.span.start <= offset && offset <= s.span.end => Some(s),
        _ => None,
    })
}

/// Every step and block of a body, nested ones included.
pub fn nodes(body: &ast::Body) -> Vec<&NodeDef> {
    let mut out = Vec::new();
    for n in &body.nodes {
        out.push(n);
        match n {
            NodeDef::Loop(l) => out.extend(nodes(&l.body)),
            NodeDef::For(f) => out.extend(nodes(&f.body)),
            NodeDef::Step(_) => {}
        }
    }
    out
}

/// The name a node declares.
pub fn node_name(n: &NodeDef) -> &ast::Ident {
    match n {
        NodeDef::Step(s) => &s.name,
        NodeDef::Loop(l) => &l.name,
        NodeDef::For(f) => &f.var,
    }
}

/// The name an item declares (an import: its namespace).
pub fn item_name(item: &Item) -> Option<(String, Span)> {
    match item {
        Item::Import(i) => Some(match &i.alias {
            Some(a) => (a.name.clone(), a.span),
            None => (import_stem(&i.path.value), i.path.span),
        }),
        Item::Type(t) => Some((t.name.name.clone(), t.name.span)),
        Item::Config(c) => Some((c.name.name.clone(), c.name.span)),
        Item::Skill(s) => Some((s.name.name.clone(), s.name.span)),
    }
}

fn import_stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What `word` refers to in `a`.
pub fn resolve<'a>(a: &'a Analysis, word: &Word) -> Option<Target<'a>> {
    if let Some(q) = &word.qualifier {
        if let Some(server) = mcp_item(&a.file, q) {
            return Some(Target::McpTool(
                server,
                allow_entry(server, &word.text),
                word.text.clone(),
            ));
        }
        return imported(a, q, &word.text).map(|(p, s)| Target::Imported(p, s, word.text.clone()));
    }
    if let Some(skill) = skill_at(&a.file, word.span.start) {
        if let Some(n) = nodes(&skill.body)
            .into_iter()
            .find(|n| node_name(n).name == word.text)
        {
            return Some(Target::Node(n));
        }
        if let Some(p) = skill.params.iter().find(|p| p.name.name == word.text) {
            return Some(Target::Param(p));
        }
    }
    a.file
        .items
        .iter()
        .find(|i| item_name(i).is_some_and(|(n, _)| n == word.text))
        .map(Target::Item)
}

/// The `mcp` item of this file named `name`.
fn mcp_item<'a>(file: &'a ast::File, name: &str) -> Option<&'a ast::ConfigItem> {
    file.items.iter().find_map(|i| match i {
        Item::Config(c) if c.kind == ast::ConfigKind::Mcp && c.name.name == name => Some(c),
        _ => None,
    })
}

/// Where `tool` is written in an `mcp` item's `allow` list.
fn allow_entry(server: &ast::ConfigItem, tool: &str) -> Option<Span> {
    let field = server.fields.iter().find(|f| f.key.name == "allow")?;
    let ast::FieldValue::Expr(ast::Expr {
        kind: ast::ExprKind::List(items),
        ..
    }) = &field.value
    else {
        return None;
    };
    items.iter().find_map(|e| match &e.kind {
        ast::ExprKind::Str(s) if s.value == tool || s.value == "*" => Some(e.span),
        _ => None,
    })
}

/// The item `name` of the file imported as `namespace`, read from disk.
fn imported(a: &Analysis, namespace: &str, name: &str) -> Option<(PathBuf, Span)> {
    let import = a.file.items.iter().find_map(|i| match i {
        Item::Import(imp) if item_name(i).is_some_and(|(n, _)| n == namespace) => Some(imp),
        _ => None,
    })?;
    // `std/…` lives inside the binary: there is no file to open.
    if import.path.value.starts_with("std/") {
        return None;
    }
    let path = crate::check::normalize(&a.path.parent()?.join(&import.path.value));
    let text = std::fs::read_to_string(&path).ok()?;
    let (file, _) = crate::syntax::parse_file(&text, 0);
    let span = file
        .items
        .iter()
        .filter_map(item_name)
        .find(|(n, _)| n == name)?
        .1;
    Some((path, span))
}

/// Go to definition.
pub fn definition(a: &Analysis, offset: usize) -> Option<lsp::Location> {
    let word = word_at(&a.text, offset)?;
    let (path, span) = match resolve(a, &word)? {
        Target::Node(n) => (a.path.clone(), node_name(n).span),
        Target::Param(p) => (a.path.clone(), p.name.span),
        Target::Item(i) => (a.path.clone(), item_name(i)?.1),
        Target::McpTool(server, entry, _) => (a.path.clone(), entry.unwrap_or(server.name.span)),
        Target::Imported(path, span, _) => {
            let text = std::fs::read_to_string(&path).ok()?;
            let index = super::position::LineIndex::new(&text);
            return Some(lsp::Location::new(
                uri::from_path(&path)?,
                index.range(&text, span),
            ));
        }
    };
    Some(lsp::Location::new(
        uri::from_path(&path)?,
        a.index.range(&a.text, span),
    ))
}

/// The compiled step or block named `name` in the skill `skill`.
pub fn ir_node<'p>(program: &'p ir::Program, skill: &str, name: &str) -> Option<&'p ir::Node> {
    let skill = program
        .entry
        .iter()
        .filter_map(|k| program.skills.get(k))
        .find(|s| s.name == skill)?;
    skill.nodes.iter().find(|n| n.name == name)
}

/// Hover text, in Markdown.
pub fn hover(a: &Analysis, offset: usize) -> Option<lsp::Hover> {
    let word = word_at(&a.text, offset)?;
    let text = match resolve(a, &word) {
        Some(target) => describe(a, &word, &target)?,
        None => member_hover(a, &word)?,
    };
    Some(lsp::Hover {
        contents: lsp::HoverContents::Markup(lsp::MarkupContent {
            kind: lsp::MarkupKind::Markdown,
            value: text,
        }),
        range: Some(a.index.range(&a.text, word.span)),
    })
}

fn describe(a: &Analysis, word: &Word, target: &Target) -> Option<String> {
    let src = |span: Span| a.text.get(span.start..span.end).unwrap_or("").to_string();
    let skill = skill_at(&a.file, word.span.start).map(|s| s.name.name.as_str());
    Some(match target {
        Target::Node(NodeDef::Step(s)) => {
            let mut out = format!("step `{}`: `{}`", s.name.name, s.kind.name);
            let step = a
                .program
                .as_ref()
                .zip(skill)
                .and_then(|(p, k)| ir_node(p, k, &s.name.name));
            if let Some(ir::NodeKind::Step(step)) = step.map(|n| &n.kind) {
                out.push_str(&format!("\n\nresult: `{}`", shape(&step.result)));
            }
            out
        }
        Target::Node(NodeDef::Loop(l)) => format!("loop `{}`", l.name.name),
        Target::Node(NodeDef::For(f)) => {
            format!("`{}`: an element of `{}`", f.var.name, src(f.iter.span))
        }
        Target::Param(p) => format!("parameter `{}`: `{}`", p.name.name, src(p.ty.span)),
        Target::Item(Item::Import(i)) => format!("import `{}`", i.path.value),
        Target::Item(Item::Skill(s)) => {
            let head_end = s.body.fields.first().map_or(s.span.end, |f| f.span.start);
            let head = src(Span::new(s.span.start, head_end));
            format!(
                "```flow\n{}\n```",
                head.trim_end().trim_end_matches('{').trim_end()
            )
        }
        Target::Item(Item::Config(c)) if c.kind != ast::ConfigKind::Trigger => {
            let program = a.program.as_ref();
            let resolved = match c.kind {
                ast::ConfigKind::Model => program
                    .and_then(|p| p.models.iter().find(|m| m.name == c.name.name))
                    .map(|m| super::describe::model(m)),
                _ => program
                    .and_then(|p| p.policies.iter().find(|m| m.name == c.name.name))
                    .map(|p| super::describe::policy(p)),
            };
            resolved.unwrap_or_else(|| format!("```flow\n{}\n```", first_lines(&src(c.span), 12)))
        }
        Target::Item(item) => format!("```flow\n{}\n```", first_lines(&src(item_span(item)), 12)),
        Target::Imported(path, _, name) => format!("`{name}` from `{}`", path.display()),
        Target::McpTool(server, entry, name) => {
            let allowed = if entry.is_some() {
                "allowed"
            } else {
                "not in `allow`"
            };
            format!(
                "tool `{name}` of `mcp` server `{}` ({allowed})",
                server.name.name
            )
        }
    })
}

/// A type with the fields of a record spelled out (`Display` shows a
/// record's name only).
fn shape(ty: &ir::Ty) -> String {
    let fields = super::complete::fields_of(ty);
    if fields.is_empty() {
        return ty.to_string();
    }
    let fields: Vec<String> = fields.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    format!("{{ {} }}", fields.join(", "))
}

fn item_span(item: &Item) -> Span {
    match item {
        Item::Import(i) => i.span,
        Item::Type(t) => t.span,
        Item::Config(c) => c.span,
        Item::Skill(s) => s.span,
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= n {
        return text.to_string();
    }
    format!("{}\n  …", lines[..n].join("\n"))
}

/// `exit_code` in `verify.exit_code`: the field's type, from the step's result.
fn member_hover(a: &Analysis, word: &Word) -> Option<String> {
    let ty = super::complete::type_of_chain(a, word.span.start)?;
    let field = super::complete::fields_of(&ty)
        .into_iter()
        .find(|(n, _)| *n == word.text)?;
    Some(format!("`{}`: `{}`", field.0, field.1))
}

/// The file's items and their steps, for the outline.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must be written to be built
pub fn symbols(a: &Analysis) -> Vec<lsp::DocumentSymbol> {
    let sym =
        |name: String, kind, span: Span, sel: Span, children: Option<Vec<_>>| lsp::DocumentSymbol {
            name,
            detail: None,
            kind,
            tags: None,
            deprecated: None,
            range: a.index.range(&a.text, span),
            selection_range: a.index.range(&a.text, sel),
            children,
        };
    let mut out = Vec::new();
    for item in &a.file.items {
        let Some((name, sel)) = item_name(item) else {
            continue;
        };
        let (kind, children) = match item {
            Item::Import(_) => (lsp::SymbolKind::MODULE, None),
            Item::Type(_) => (lsp::SymbolKind::STRUCT, None),
            Item::Config(c) => match c.kind {
                ast::ConfigKind::Model => (lsp::SymbolKind::OBJECT, None),
                ast::ConfigKind::Policy => (lsp::SymbolKind::INTERFACE, None),
                ast::ConfigKind::Trigger => (lsp::SymbolKind::EVENT, None),
                ast::ConfigKind::Mcp => (lsp::SymbolKind::MODULE, None),
            },
            Item::Skill(s) => {
                let kids = body_symbols(&s.body, &sym);
                (lsp::SymbolKind::FUNCTION, Some(kids))
            }
        };
        out.push(sym(name, kind, item_span(item), sel, children));
    }
    out
}

type Sym<'s> = dyn Fn(String, lsp::SymbolKind, Span, Span, Option<Vec<lsp::DocumentSymbol>>) -> lsp::DocumentSymbol
    + 's;

fn body_symbols(body: &ast::Body, sym: &Sym) -> Vec<lsp::DocumentSymbol> {
    body.nodes
        .iter()
        .map(|n| match n {
            NodeDef::Step(s) => sym(
                format!("{}: {}", s.name.name, s.kind.name),
                lsp::SymbolKind::METHOD,
                s.span,
                s.name.span,
                None,
            ),
            NodeDef::Loop(l) => sym(
                l.name.name.clone(),
                lsp::SymbolKind::NAMESPACE,
                l.span,
                l.name.span,
                Some(body_symbols(&l.body, sym)),
            ),
            NodeDef::For(f) => sym(
                format!("for {}", f.var.name),
                lsp::SymbolKind::NAMESPACE,
                f.span,
                f.var.span,
                Some(body_symbols(&f.body, sym)),
            ),
        })
        .collect()
}
