//! The text of every file a check touched, addressed by [`FileId`].

use crate::diag::FileId;
use std::sync::Arc;

/// One source file: a display path and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as shown to users.
    pub path: String,
    /// The file's text.
    pub text: Arc<str>,
}

/// All files of one check, so diagnostics can be rendered with their source.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// Adds a file and returns its id.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<Arc<str>>) -> FileId {
        self.files.push(SourceFile {
            path: path.into(),
            text: text.into(),
        });
        self.files.len() - 1
    }

    /// The file with this id.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id]
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when no file was added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}
