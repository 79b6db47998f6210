//! Names, imports, types, templates, dataflow and policies: AST → IR.
//!
//! The checker is pure: files arrive through a [`Loader`], results leave as
//! diagnostics and [`ir::Program`]s.

pub mod agent;
mod approval;
mod builtins;
mod cache_fields;
mod calls;
pub mod canonical;
mod effects;
mod expr;
mod fields;
mod graph;
mod literals;
mod loader;
mod memory;
mod model;
mod module;
mod module_cx;
mod policy;
mod resolve;
mod rhai_gen;
mod scope;
pub mod script;
mod signature;
mod skill;
mod step_kinds;
mod template;
mod template_types;
mod trigger;
mod types;

pub use fields::step_field_names;
pub use loader::{FsLoader, Loader, MemLoader, STDLIB, normalize, stdlib};

use crate::diag::{Code, Diagnostic, FileId, Severity};
use crate::ir;
use crate::source::SourceMap;
use module::Modules;
use std::path::{Path, PathBuf};

/// The outcome of checking one root file.
#[derive(Debug, Clone)]
pub struct CheckedFile {
    /// The path as given.
    pub path: String,
    /// Its id in [`CheckOutput::sources`], if it could be read.
    pub file: Option<FileId>,
    /// The compiled program, when the file and its imports have no errors.
    pub program: Option<ir::Program>,
}

/// Everything one check produced.
#[derive(Debug, Default)]
pub struct CheckOutput {
    /// Every file read, for rendering diagnostics.
    pub sources: SourceMap,
    /// Every diagnostic, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// One entry per root file, in the order given.
    pub files: Vec<CheckedFile>,
    /// Files that could not be read (path, reason): usage errors, not diagnostics.
    pub unreadable: Vec<(String, String)>,
}

impl CheckOutput {
    /// How many diagnostics of this severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == severity)
            .count()
    }
}

/// Checks `roots` (files, not directories) and everything they import.
pub fn check_files(loader: &dyn Loader, roots: &[PathBuf]) -> CheckOutput {
    let mut modules = Modules::new(loader);
    let mut root_ids = Vec::new();
    for root in roots {
        root_ids.push(modules.load_root(root));
    }
    modules.check_all();
    let mut out = CheckOutput::default();
    let mut files = Vec::new();
    let with_errors = modules.files_with_errors();
    for (root, id) in roots.iter().zip(&root_ids) {
        let path = root.display().to_string();
        match id {
            Ok(id) => files.push(CheckedFile {
                path,
                file: Some(modules.file_of(*id)),
                program: modules.program(*id, &with_errors),
            }),
            Err(reason) => {
                out.unreadable.push((path.clone(), reason.clone()));
                files.push(CheckedFile {
                    path,
                    file: None,
                    program: None,
                });
            }
        }
    }
    let (sources, mut diagnostics) = modules.finish();
    diagnostics.sort_by_key(|d| (d.file, d.span.start, d.code));
    diagnostics.dedup();
    out.sources = sources;
    out.diagnostics = diagnostics;
    out.files = files;
    out
}

/// Checks one in-memory text as if it were the file `path` (imports are not found).
pub fn check_text(path: &str, text: &str) -> CheckOutput {
    let mut loader = MemLoader::new();
    loader.add(path, text.as_bytes().to_vec());
    check_files(&loader, &[PathBuf::from(path)])
}

/// Converts bytes to text, reporting invalid UTF-8 as E0101 at the first bad byte.
/// A UTF-8 byte-order mark is dropped: editors hide it, so spans and columns
/// count from after it.
pub(crate) fn decode_utf8(
    mut bytes: Vec<u8>,
    file: FileId,
) -> Result<String, (String, Diagnostic)> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let at = err.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(err.as_bytes()).into_owned();
            // Offsets in the lossy text match up to the first bad byte.
            let diag = Diagnostic::new(
                Code::E0101,
                file,
                crate::span::Span::new(at, at + 1),
                "file is not valid UTF-8",
            )
            .label("invalid byte here")
            .help("save the file as UTF-8");
            Err((lossy, diag))
        }
    }
}

/// The display form of a path relative to the importing file.
pub(crate) fn join_import(from: &Path, import: &str) -> PathBuf {
    let dir = from.parent().unwrap_or(Path::new(""));
    normalize(&dir.join(import))
}
