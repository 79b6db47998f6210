//! Rendering diagnostics: human (miette), JSON, and GitHub annotations.

use super::clip::Clipped;
use super::{Diagnostic, Severity};
use crate::source::{SourceFile, SourceMap};
use crate::span::floor_char_boundary;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan};
use std::fmt;

/// How `flowc check` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Source excerpts with labels, for people.
    Human,
    /// One JSON document, for tools.
    Json,
    /// `::error file=...` lines, for GitHub Actions annotations.
    Github,
}

/// Options of the human renderer.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// Use colours.
    pub color: bool,
    /// Wrap at this width.
    pub width: usize,
}

/// Renders one diagnostic in the given format (JSON: one object per line).
pub fn render(
    diag: &Diagnostic,
    sources: &SourceMap,
    format: Format,
    opts: RenderOptions,
) -> String {
    match format {
        Format::Human => render_human(diag, sources, opts),
        Format::Json => render_json_value(diag, sources).to_string(),
        Format::Github => render_github(diag, sources),
    }
}

struct MietteDiag<'a> {
    diag: &'a Diagnostic,
    source: Clipped<'a>,
}

impl fmt::Display for MietteDiag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl fmt::Debug for MietteDiag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for MietteDiag<'_> {}

impl miette::Diagnostic for MietteDiag<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diag.code.as_str()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity() {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary_text = (!self.diag.label.is_empty()).then(|| self.diag.label.clone());
        let primary =
            LabeledSpan::new_primary_with_span(primary_text, self.source.map(self.diag.span));
        let others = self.diag.labels.iter().map(|l| {
            let text = (!l.text.is_empty()).then(|| l.text.clone());
            LabeledSpan::new_with_span(text, self.source.map(l.span))
        });
        Some(Box::new(std::iter::once(primary).chain(others)))
    }
}

fn render_human(diag: &Diagnostic, sources: &SourceMap, opts: RenderOptions) -> String {
    let file = sources.get(diag.file);
    let spans: Vec<_> = std::iter::once(diag.span)
        .chain(diag.labels.iter().map(|l| l.span))
        .collect();
    let wrapper = MietteDiag {
        diag,
        source: Clipped::new(file, &spans),
    };
    let theme = if opts.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_links(false);
    let mut out = String::new();
    if handler.render_report(&mut out, &wrapper).is_err() {
        // The renderer only fails on a broken span; fall back to one plain line.
        let (line, col) = file.line_col(diag.span.start);
        out = format!(
            "{}[{}]: {}\n  at {}:{line}:{col}\n",
            severity_word(diag),
            diag.code,
            diag.message,
            file.path
        );
    }
    out
}

fn severity_word(diag: &Diagnostic) -> &'static str {
    match diag.severity() {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

fn position(file: &SourceFile, diag_span: crate::span::Span) -> ((usize, usize), (usize, usize)) {
    let start = floor_char_boundary(&file.text, diag_span.start);
    let end = floor_char_boundary(&file.text, diag_span.end.max(start));
    (file.line_col(start), file.line_col(end))
}

/// The JSON object for one diagnostic (1-based lines and columns).
pub fn render_json_value(diag: &Diagnostic, sources: &SourceMap) -> serde_json::Value {
    let file = sources.get(diag.file);
    let ((line, column), (end_line, end_column)) = position(file, diag.span);
    let labels: Vec<serde_json::Value> = diag
        .labels
        .iter()
        .map(|l| {
            let ((line, column), _) = position(file, l.span);
            serde_json::json!({ "line": line, "column": column, "start": l.span.start, "end": l.span.end, "text": l.text })
        })
        .collect();
    serde_json::json!({
        "code": diag.code.as_str(),
        "severity": severity_word(diag),
        "message": diag.message,
        "file": file.path,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "start": diag.span.start,
        "end": diag.span.end,
        "label": diag.label,
        "labels": labels,
        "help": diag.help,
    })
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// A GitHub `::error` annotation on a whole file, for what is not a diagnostic
/// (a file that cannot be read).
pub fn github_file_error(path: &str, title: &str, message: &str) -> String {
    format!(
        "::error file={},title={}::{}",
        escape_property(path),
        escape_property(title),
        escape_data(message)
    )
}

fn render_github(diag: &Diagnostic, sources: &SourceMap) -> String {
    let file = sources.get(diag.file);
    let ((line, col), (end_line, end_col)) = position(file, diag.span);
    let mut message = format!("{}: {}", diag.code, diag.message);
    if let Some(help) = &diag.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!(
        "::{} file={},line={line},col={col},endLine={end_line},endColumn={end_col},title={}::{}",
        severity_word(diag),
        escape_property(&file.path),
        escape_property(&format!("flowc {}", diag.code)),
        escape_data(&message)
    )
}
