//! Where source text comes from: the file system, memory, or the standard library.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Reads files for the checker, which does no IO of its own.
pub trait Loader {
    /// The bytes of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// Reads from the file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// Reads from a map, for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct MemLoader {
    files: HashMap<PathBuf, Vec<u8>>,
}

impl MemLoader {
    /// An empty set of files.
    pub fn new() -> MemLoader {
        MemLoader::default()
    }

    /// Adds a file.
    pub fn add(&mut self, path: impl AsRef<Path>, text: impl Into<Vec<u8>>) -> &mut MemLoader {
        self.files.insert(normalize(path.as_ref()), text.into());
        self
    }
}

impl Loader for MemLoader {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
}

/// The standard library, compiled into the binary.
pub const STDLIB: &[(&str, &str)] = &[
    (
        "std/policy.flow",
        include_str!("../../stdlib/std/policy.flow"),
    ),
    (
        "std/verify.flow",
        include_str!("../../stdlib/std/verify.flow"),
    ),
    (
        "std/tools.flow",
        include_str!("../../stdlib/std/tools.flow"),
    ),
];

/// The text of a standard library module, by its import path.
pub fn stdlib(path: &str) -> Option<&'static str> {
    STDLIB.iter().find(|(p, _)| *p == path).map(|(_, t)| *t)
}

/// Removes `.` and folds `..` without touching the file system.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for comp in path.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(comp),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}
