//! Compiling one file and picking its skill, for `graph` and `run`.

use super::{EXIT_USAGE, term_width};
use crate::check::{FsLoader, check_files};
use crate::diag::{Format, RenderOptions, Severity, render};
use crate::ir::{Program, Skill};
use std::path::Path;
use std::sync::Arc;

/// Compiles `file` and returns its program and the chosen skill, or the exit code
/// after printing every error.
pub fn compile_entry(
    file: &Path,
    skill: Option<&str>,
    color: bool,
) -> Result<(Arc<Program>, Arc<Skill>), u8> {
    let out = check_files(&FsLoader, &[file.to_path_buf()]);
    if let Some((path, reason)) = out.unreadable.first() {
        eprintln!("error: cannot read `{path}`: {reason}");
        return Err(EXIT_USAGE);
    }
    let opts = RenderOptions {
        color,
        width: term_width(),
    };
    for diag in out
        .diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
    {
        eprint!("{}", render(diag, &out.sources, Format::Human, opts));
    }
    let Some(program) = out.files.into_iter().next().and_then(|f| f.program) else {
        eprintln!("error: `{}` does not compile", file.display());
        return Err(super::EXIT_FAILED);
    };
    let Some(chosen) = program.entry_skill(skill).cloned() else {
        let names: Vec<String> = program
            .entry
            .iter()
            .filter_map(|k| program.skills.get(k))
            .map(|s| format!("`{}`", s.name))
            .collect();
        match skill {
            Some(name) => eprintln!(
                "error: no skill `{name}` in `{}`; it has {}",
                file.display(),
                names.join(", ")
            ),
            None if names.is_empty() => eprintln!("error: `{}` defines no skill", file.display()),
            None => eprintln!(
                "error: `{}` has several skills ({}); name one",
                file.display(),
                names.join(", ")
            ),
        }
        return Err(EXIT_USAGE);
    };
    Ok((Arc::new(program), chosen))
}
