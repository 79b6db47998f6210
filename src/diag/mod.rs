//! Diagnostics: one shape for every error and warning of every phase.

mod clip;
mod code;
mod explain;
mod render;

pub use code::Code;
pub use explain::explanation;
pub use render::{Format, RenderOptions, github_file_error, render, render_json_value};

use crate::span::Span;

/// Identifies a source file in a [`crate::source::SourceMap`].
pub type FileId = usize;

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Blocks the file from compiling.
    Error,
    /// Worth fixing; fatal only with `--deny-warnings`.
    Warning,
}

/// A secondary location with a short note.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What to say there.
    pub text: String,
}

/// One finding, with its code, spans and an optional fix hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Stable code; also decides the severity.
    pub code: Code,
    /// The file the spans point into.
    pub file: FileId,
    /// One line, lowercase, names in backticks, no trailing period.
    pub message: String,
    /// The primary location.
    pub span: Span,
    /// What to say at the primary location.
    pub label: String,
    /// Related locations in the same file.
    pub labels: Vec<Label>,
    /// How to fix it, where that is likely.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with a primary span; the label defaults to empty.
    pub fn new(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            file,
            message: message.into(),
            span,
            label: String::new(),
            labels: Vec::new(),
            help: None,
        }
    }

    /// Sets the primary label.
    pub fn label(mut self, text: impl Into<String>) -> Diagnostic {
        self.label = text.into();
        self
    }

    /// Adds a secondary label.
    pub fn with(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            text: text.into(),
        });
        self
    }

    /// Sets the help line.
    pub fn help(mut self, text: impl Into<String>) -> Diagnostic {
        self.help = Some(text.into());
        self
    }

    /// Sets the help line if there is one.
    pub fn maybe_help(mut self, text: Option<String>) -> Diagnostic {
        if text.is_some() {
            self.help = text;
        }
        self
    }

    /// Error or warning, from the code.
    pub fn severity(&self) -> Severity {
        if self.code.is_warning() {
            Severity::Warning
        } else {
            Severity::Error
        }
    }
}

/// The closest candidate to `name`, if it is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Words from other tools that mean one of ours.
    const SYNONYMS: &[(&str, &str)] = &[
        ("includes", "contains"),
        ("has", "contains"),
        ("length", "len"),
        ("size", "len"),
        ("startswith", "starts_with"),
        ("endswith", "ends_with"),
        ("strip", "trim"),
        ("split_lines", "lines"),
        ("max_retries", "max_attempts"),
        ("retries", "attempts"),
        ("retry", "attempts"),
        ("depends_on", "after"),
        ("needs", "after"),
        ("if", "when"),
        ("cmd", "command"),
        ("run", "command"),
        ("args", "argv"),
        ("workdir", "cwd"),
        ("dir", "cwd"),
        ("input", "stdin"),
    ];
    let candidates: Vec<&'a str> = candidates.into_iter().collect();
    if let Some((_, ours)) = SYNONYMS.iter().find(|(theirs, _)| *theirs == name)
        && let Some(c) = candidates.iter().find(|c| *c == ours)
    {
        return Some(c);
    }
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let score = strsim::jaro_winkler(name, candidate);
        let close = score > 0.8
            || strsim::levenshtein(name, candidate) <= name.len().min(3) / 2 + 1 && name.len() > 2;
        if close && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// "did you mean `x`?" for the closest candidate.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    suggest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}
