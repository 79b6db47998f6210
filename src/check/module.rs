//! Loading files and their imports, and the per-file tables of checked items.

use super::loader::{Loader, STDLIB, stdlib};
use super::module_cx::ModuleCx;
use super::{decode_utf8, join_import};
use crate::diag::{Code, Diagnostic, FileId, Severity, did_you_mean};
use crate::ir::{self, Ty};
use crate::source::SourceMap;
use crate::span::Span;
use crate::syntax::{self, ast};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many distinct strings the rhai engine keeps for reuse across compiles.
/// Small on purpose: once full, each new string scans the whole cache to
/// evict one, and the strings worth sharing are few and kept (the most
/// shared are evicted last).
pub const STRINGS_INTERNED: usize = 64;

/// Index into [`Modules::mods`].
pub type ModuleId = usize;

/// What kind of item a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// `type`
    Type,
    /// `model`
    Model,
    /// `policy`
    Policy,
    /// `trigger`
    Trigger,
    /// `mcp`
    Mcp,
    /// `skill`
    Skill,
}

impl ItemKind {
    /// The keyword, for messages.
    pub fn word(self) -> &'static str {
        match self {
            ItemKind::Type => "type",
            ItemKind::Model => "model",
            ItemKind::Policy => "policy",
            ItemKind::Trigger => "trigger",
            ItemKind::Mcp => "mcp",
            ItemKind::Skill => "skill",
        }
    }
}

/// A named item of a module.
#[derive(Debug, Clone, Copy)]
pub struct ItemIx {
    /// Its kind.
    pub kind: ItemKind,
    /// Its index in the module's AST items.
    pub index: usize,
    /// The span of its name.
    pub span: Span,
}

/// One `import` of a module.
#[derive(Debug, Clone)]
pub struct ImportRef {
    /// The name its items are reached by.
    pub namespace: String,
    /// The span of the path or the `as` name.
    pub name_span: Span,
    /// The loaded module, unless it failed to load.
    pub target: Option<ModuleId>,
}

/// A parsed file.
#[derive(Debug)]
pub struct Module {
    /// Normalized path (`<std>/std/x.flow` for the standard library).
    pub key: PathBuf,
    /// Its file id.
    pub file: FileId,
    /// Its syntax tree.
    pub ast: ast::File,
    /// Its imports.
    pub imports: Vec<ImportRef>,
    /// Its items by name.
    pub items: HashMap<String, ItemIx>,
}

/// The signature of a skill, known before any body is checked.
#[derive(Debug, Clone)]
pub struct SkillSig {
    /// The skill's key (`FILE#name`).
    pub key: String,
    /// Its name.
    pub name: String,
    /// (name, type, has a default).
    pub params: Vec<(String, Ty, bool)>,
    /// Declared result type.
    pub ret: Option<Ty>,
    /// Its `description` (what a model reads when the skill is a tool).
    pub description: Option<String>,
    /// Its declared `effect`, if any.
    pub effect: Option<ir::Effect>,
    /// Its effective policy.
    pub policy: Arc<ir::Policy>,
    /// The file it is in.
    pub file: FileId,
    /// Its name's span.
    pub span: Span,
}

/// The checked items of one module.
#[derive(Debug, Default)]
pub struct Tables {
    /// Resolved `type` items.
    pub types: HashMap<String, Ty>,
    /// Compiled `model` items.
    pub models: HashMap<String, Arc<ir::Model>>,
    /// Compiled `policy` items.
    pub policies: HashMap<String, Arc<ir::Policy>>,
    /// Skill signatures.
    pub sigs: HashMap<String, Arc<SkillSig>>,
    /// Compiled skills.
    pub skills: HashMap<String, Arc<ir::Skill>>,
    /// Compiled triggers.
    pub triggers: Vec<ir::Trigger>,
    /// Model, policy and skill names in source order (for programs).
    pub order: Vec<(ItemKind, String)>,
}

/// A `call` step's edge in the call graph.
#[derive(Debug, Clone)]
pub struct CallEdge {
    /// Caller skill key.
    pub caller: String,
    /// Callee skill key.
    pub callee: String,
    /// The file of the call step.
    pub file: FileId,
    /// The callee name in the call step.
    pub span: Span,
}

/// Every module of one check.
pub struct Modules<'l> {
    loader: &'l dyn Loader,
    pub(super) sources: SourceMap,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) mods: Vec<Module>,
    by_key: HashMap<PathBuf, ModuleId>,
    loading: Vec<ModuleId>,
    pub(super) tables: Vec<Tables>,
    calls: Vec<CallEdge>,
    engine: rhai::Engine,
}

impl<'l> Modules<'l> {
    /// No modules yet.
    pub fn new(loader: &'l dyn Loader) -> Modules<'l> {
        let mut engine = rhai::Engine::new_raw();
        engine.set_max_expr_depths(256, 256);
        // Share names, properties and operators (`v_exit_code`, `stdout`,
        // `==`) between the compiled expressions instead of one copy each.
        engine.set_max_strings_interned(STRINGS_INTERNED);
        Modules {
            loader,
            sources: SourceMap::default(),
            diags: Vec::new(),
            mods: Vec::new(),
            by_key: HashMap::new(),
            loading: Vec::new(),
            tables: Vec::new(),
            calls: Vec::new(),
            engine,
        }
    }

    /// Loads a root file; an unreadable root is a usage error (the reason is returned).
    pub fn load_root(&mut self, path: &Path) -> Result<ModuleId, String> {
        let key = super::normalize(path);
        if let Some(&id) = self.by_key.get(&key) {
            return Ok(id);
        }
        let bytes = self.loader.read(path).map_err(|e| e.to_string())?;
        Ok(self.add(key, path.display().to_string(), bytes))
    }

    /// The file of a module.
    pub fn file_of(&self, id: ModuleId) -> FileId {
        self.mods[id].file
    }

    /// Parses a file and loads its imports, depth first.
    fn add(&mut self, key: PathBuf, display: String, bytes: Vec<u8>) -> ModuleId {
        let file_id = self.sources.len();
        let text = match decode_utf8(bytes, file_id) {
            Ok(text) => text,
            Err((lossy, diag)) => {
                self.diags.push(diag);
                self.sources.add(display, lossy);
                return self.push(key, file_id, ast::File::default());
            }
        };
        let (ast, diags) = syntax::parse_file(&text, file_id);
        self.sources.add(display, text);
        self.diags.extend(diags);
        let id = self.push(key, file_id, ast);
        self.loading.push(id);
        self.load_imports(id);
        self.loading.pop();
        id
    }

    fn push(&mut self, key: PathBuf, file: FileId, ast: ast::File) -> ModuleId {
        let id = self.mods.len();
        self.by_key.insert(key.clone(), id);
        self.mods.push(Module {
            key,
            file,
            ast,
            imports: Vec::new(),
            items: HashMap::new(),
        });
        self.tables.push(Tables::default());
        id
    }

    fn load_imports(&mut self, id: ModuleId) {
        let file = self.mods[id].file;
        let imports: Vec<ast::Import> = self.mods[id]
            .ast
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Import(imp) => Some(imp.clone()),
                _ => None,
            })
            .collect();
        let mut seen: HashMap<String, Span> = HashMap::new();
        for imp in imports {
            let path = imp.path.value.as_str();
            let stem = Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (namespace, ns_span) = match &imp.alias {
                Some(alias) => (alias.name.clone(), alias.span),
                None => (stem, imp.path.span),
            };
            if !is_identifier(&namespace) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0211,
                        file,
                        imp.path.span,
                        format!("`{namespace}` cannot be a namespace"),
                    )
                    .label("the file name is not an identifier")
                    .help(format!(
                        "name it: `import \"{path}\" as {}`",
                        sanitize(&namespace)
                    )),
                );
                continue;
            }
            if let Some(prev) = seen.get(&namespace) {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0211,
                        file,
                        ns_span,
                        format!("namespace `{namespace}` is imported twice"),
                    )
                    .label("second import")
                    .with(*prev, "first import")
                    .help(format!(
                        "give one of them another name with `as`, e.g. `as {namespace}2`"
                    )),
                );
                continue;
            }
            seen.insert(namespace.clone(), ns_span);
            let target = self.load_import(id, path, imp.path.span);
            self.mods[id].imports.push(ImportRef {
                namespace,
                name_span: ns_span,
                target,
            });
        }
    }

    fn load_import(&mut self, from: ModuleId, path: &str, span: Span) -> Option<ModuleId> {
        let file = self.mods[from].file;
        let (key, display, bytes) = if let Some(rest) = path.strip_prefix("std/") {
            let Some(text) = stdlib(path) else {
                let names: Vec<&str> = STDLIB.iter().map(|(p, _)| *p).collect();
                self.diags.push(
                    Diagnostic::new(
                        Code::E0212,
                        file,
                        span,
                        format!("there is no standard module `{path}`"),
                    )
                    .label("not in the standard library")
                    .maybe_help(did_you_mean(path, names.iter().copied()))
                    .maybe_help(
                        Some(format!("the standard library has {}", names.join(", "))).filter(
                            |_| crate::diag::suggest(path, names.iter().copied()).is_none(),
                        ),
                    ),
                );
                return None;
            };
            let _ = rest;
            (
                PathBuf::from(format!("<std>/{path}")),
                format!("<std>/{path}"),
                text.as_bytes().to_vec(),
            )
        } else {
            let base = &self.mods[from].key;
            if base.starts_with("<std>") {
                self.diags.push(
                    Diagnostic::new(
                        Code::E0204,
                        file,
                        span,
                        "standard modules may import only `std/` paths",
                    )
                    .label("relative import in the standard library"),
                );
                return None;
            }
            let joined = join_import(base, path);
            match self.by_key.get(&joined) {
                Some(&existing) => return self.check_cycle(from, existing, span),
                None => match self.loader.read(&joined) {
                    Ok(bytes) => (joined.clone(), joined.display().to_string(), bytes),
                    Err(err) => {
                        let reason = if err.kind() == std::io::ErrorKind::NotFound {
                            format!("no file at `{}`", joined.display())
                        } else {
                            format!("`{}` could not be read: {err}", joined.display())
                        };
                        self.diags.push(
                            Diagnostic::new(Code::E0204, file, span, format!("cannot find imported file `{path}`"))
                                .label(reason)
                                .help("import paths are relative to the importing file; `std/...` paths name the standard library"),
                        );
                        return None;
                    }
                },
            }
        };
        if let Some(&existing) = self.by_key.get(&key) {
            return self.check_cycle(from, existing, span);
        }
        Some(self.add(key, display, bytes))
    }

    fn check_cycle(&mut self, from: ModuleId, target: ModuleId, span: Span) -> Option<ModuleId> {
        let Some(pos) = self.loading.iter().position(|&m| m == target) else {
            return Some(target);
        };
        let mut chain: Vec<String> = self.loading[pos..]
            .iter()
            .map(|&m| self.sources.get(self.mods[m].file).path.clone())
            .collect();
        chain.push(self.sources.get(self.mods[target].file).path.clone());
        let file = self.mods[from].file;
        self.diags.push(
            Diagnostic::new(
                Code::E0205,
                file,
                span,
                format!("import cycle: {}", chain.join(" → ")),
            )
            .label("this import closes the cycle")
            .help("move the shared items into a third file that both import"),
        );
        None
    }

    /// Checks every module, imports before importers, then the call graph.
    pub fn check_all(&mut self) {
        for id in 0..self.mods.len() {
            index_items(&mut self.mods[id], &mut self.diags);
        }
        let mut done = vec![false; self.mods.len()];
        let mut order = Vec::new();
        for id in 0..self.mods.len() {
            self.post_order(id, &mut done, &mut order);
        }
        for id in order {
            let (tables, diags, calls) = {
                let file = self.mods[id].file;
                let source = self.sources.get(file);
                let display = source.path.clone();
                let mut cx = ModuleCx::new(
                    id,
                    &self.mods,
                    &self.tables,
                    &self.engine,
                    &source.text,
                    &display,
                );
                cx.check();
                cx.finish()
            };
            self.tables[id] = tables;
            self.diags.extend(diags);
            self.calls.extend(calls);
            // Only a module's own check reads its syntax tree; its items,
            // imports and tables are what importers and programs use.
            self.mods[id].ast = ast::File::default();
        }
        self.check_calls();
    }

    fn post_order(&self, id: ModuleId, done: &mut [bool], order: &mut Vec<ModuleId>) {
        if done[id] {
            return;
        }
        done[id] = true;
        for imp in &self.mods[id].imports {
            if let Some(t) = imp.target {
                self.post_order(t, done, order);
            }
        }
        order.push(id);
    }

    /// Recursion (E0504) and static call depth (E0603).
    fn check_calls(&mut self) {
        let sigs = self
            .tables
            .iter()
            .flat_map(|t| t.sigs.values().map(|s| &**s));
        super::calls::check_calls(&self.calls, sigs, &mut self.diags);
    }

    /// The files with at least one error.
    pub fn files_with_errors(&self) -> HashSet<FileId> {
        self.diags
            .iter()
            .filter(|d| d.severity() == Severity::Error)
            .map(|d| d.file)
            .collect()
    }

    /// Builds the program of a root module, if it and its imports are
    /// error-free (`with_errors`: [`Modules::files_with_errors`]).
    pub fn program(&self, id: ModuleId, with_errors: &HashSet<FileId>) -> Option<ir::Program> {
        let mut closure = Vec::new();
        self.closure(id, &mut closure);
        if closure
            .iter()
            .any(|&m| with_errors.contains(&self.mods[m].file))
        {
            return None;
        }
        let tables = &self.tables[id];
        let mut program = ir::Program {
            file: self.sources.get(self.mods[id].file).path.clone(),
            ..ir::Program::default()
        };
        for &m in &closure {
            for skill in self.tables[m].skills.values() {
                program.skills.insert(skill.key.clone(), skill.clone());
            }
        }
        for (kind, name) in &tables.order {
            match kind {
                ItemKind::Skill => {
                    if let Some(s) = tables.skills.get(name) {
                        program.entry.push(s.key.clone());
                    }
                }
                ItemKind::Model => program.models.extend(tables.models.get(name).cloned()),
                ItemKind::Policy => program.policies.extend(tables.policies.get(name).cloned()),
                _ => {}
            }
        }
        program.triggers = tables.triggers.clone();
        Some(program)
    }

    fn closure(&self, id: ModuleId, out: &mut Vec<ModuleId>) {
        if out.contains(&id) {
            return;
        }
        out.push(id);
        for imp in &self.mods[id].imports {
            if let Some(t) = imp.target {
                self.closure(t, out);
            }
        }
    }

    /// The sources and diagnostics, when everything is done.
    pub fn finish(self) -> (SourceMap, Vec<Diagnostic>) {
        (self.sources, self.diags)
    }
}

/// Fills `items` and reports duplicates (E0202).
fn index_items(module: &mut Module, diags: &mut Vec<Diagnostic>) {
    for (index, item) in module.ast.items.iter().enumerate() {
        let (kind, name) = match item {
            ast::Item::Import(_) => continue,
            ast::Item::Type(t) => (ItemKind::Type, &t.name),
            ast::Item::Skill(s) => (ItemKind::Skill, &s.name),
            ast::Item::Config(c) => (
                match c.kind {
                    ast::ConfigKind::Model => ItemKind::Model,
                    ast::ConfigKind::Policy => ItemKind::Policy,
                    ast::ConfigKind::Trigger => ItemKind::Trigger,
                    ast::ConfigKind::Mcp => ItemKind::Mcp,
                },
                &c.name,
            ),
        };
        if let Some(prev) = module.items.get(&name.name) {
            diags.push(
                Diagnostic::new(
                    Code::E0202,
                    module.file,
                    name.span,
                    format!("`{}` is defined more than once", name.name),
                )
                .label(format!("second definition, as a {}", kind.word()))
                .with(
                    prev.span,
                    format!("first defined here, as a {}", prev.kind.word()),
                )
                .help("items of a file share one name space: rename one of them"),
            );
            continue;
        }
        module.items.insert(
            name.name.clone(),
            ItemIx {
                kind,
                index,
                span: name.span,
            },
        );
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty()
        || out.starts_with(|c: char| c.is_ascii_digit())
        || syntax::KEYWORDS.contains(&out.as_str())
    {
        out.insert(0, '_');
    }
    out
}
