//! One open document checked: its syntax tree, its program when it compiles, and its diagnostics in LSP form.

use super::position::LineIndex;
use super::uri;
use crate::check::{FsLoader, Loader, check_files, normalize};
use crate::diag::{Diagnostic, Severity};
use crate::ir::Program;
use crate::syntax::{ast, parse_file};
use lsp_types as lsp;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The open documents by path, read before the file system (imports of an
/// unsaved file see its unsaved text).
pub struct Overlay<'a> {
    /// The open documents' texts.
    pub open: &'a HashMap<PathBuf, String>,
}

impl Loader for Overlay<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        match self.open.get(&normalize(path)) {
            Some(text) => Ok(text.clone().into_bytes()),
            None => FsLoader.read(path),
        }
    }
}

/// What the server knows about one version of a document.
pub struct Analysis {
    /// The document's path.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Line starts of `text`.
    pub index: LineIndex,
    /// Its syntax tree (the items that parsed).
    pub file: ast::File,
    /// The compiled program, when the file and its imports have no errors.
    pub program: Option<Program>,
    /// Its diagnostics, ready to publish.
    pub diagnostics: Vec<lsp::Diagnostic>,
}

/// Parses and checks `text` as the file `path`.
pub fn analyze(path: &Path, text: &str, open: &HashMap<PathBuf, String>) -> Analysis {
    let index = LineIndex::new(text);
    let (file, _) = parse_file(text, 0);
    let mut docs = open.clone();
    docs.insert(normalize(path), text.to_string());
    let out = check_files(&Overlay { open: &docs }, &[path.to_path_buf()]);
    let root = out.files.first().and_then(|f| f.file);
    let uri = uri::from_path(path);
    let diagnostics = out
        .diagnostics
        .iter()
        .filter(|d| Some(d.file) == root)
        .map(|d| convert(d, text, &index, uri.as_ref()))
        .collect();
    let program = out.files.into_iter().next().and_then(|f| f.program);
    Analysis {
        path: path.to_path_buf(),
        text: text.to_string(),
        index,
        file,
        program,
        diagnostics,
    }
}

/// A flowc diagnostic as LSP shows it: code, related spans, and the help line
/// after the message (LSP has no field of its own for it).
fn convert(
    d: &Diagnostic,
    text: &str,
    index: &LineIndex,
    uri: Option<&lsp::Uri>,
) -> lsp::Diagnostic {
    let mut message = d.message.clone();
    if !d.label.is_empty() && d.label != d.message {
        message.push_str(&format!("\n{}", d.label));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related = uri.map(|uri| {
        d.labels
            .iter()
            .map(|l| lsp::DiagnosticRelatedInformation {
                location: lsp::Location::new(uri.clone(), index.range(text, l.span)),
                message: l.text.clone(),
            })
            .collect::<Vec<_>>()
    });
    lsp::Diagnostic {
        range: index.range(text, d.span),
        severity: Some(match d.severity() {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        }),
        code: Some(lsp::NumberOrString::String(d.code.as_str().to_string())),
        source: Some("flowc".to_string()),
        message,
        related_information: related.filter(|r| !r.is_empty()),
        ..lsp::Diagnostic::default()
    }
}
