//! Compiling one file and picking its skill, for `graph` and `run`.

use super::{CliError, EXIT_FAILED, EXIT_USAGE, term_width};
use crate::check::{FsLoader, check_files};
use crate::diag::{Format, RenderOptions, Severity, render};
use crate::ir::{Program, Skill};
use std::path::Path;
use std::sync::Arc;

/// A compiled program, its chosen skill, and the files read (display path, text).
pub type Compiled = (Arc<Program>, Arc<Skill>, Vec<(String, String)>);

/// Compiles `file` and returns its program and the chosen skill; diagnostics
/// are printed here, the error says what is left to say.
pub fn compile_entry(
    file: &Path,
    skill: Option<&str>,
    color: bool,
) -> Result<(Arc<Program>, Arc<Skill>), CliError> {
    compile_from(&FsLoader, file, skill, color).map(|(p, s, _)| (p, s))
}

/// [`compile_entry`] through `loader`, with every file it read (display path, text).
pub fn compile_from(
    loader: &dyn crate::check::Loader,
    file: &Path,
    skill: Option<&str>,
    color: bool,
) -> Result<Compiled, CliError> {
    let out = check_files(loader, &[file.to_path_buf()]);
    if let Some((path, reason)) = out.unreadable.first() {
        return Err(CliError::usage(format!("cannot read `{path}`: {reason}")));
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
        return Err(CliError::new(
            EXIT_FAILED,
            format!("`{}` does not compile", file.display()),
        ));
    };
    let Some(chosen) = program.entry_skill(skill).cloned() else {
        let names: Vec<String> = program
            .entry
            .iter()
            .filter_map(|k| program.skills.get(k))
            .map(|s| format!("`{}`", s.name))
            .collect();
        let message = match skill {
            Some(name) => format!(
                "no skill `{name}` in `{}`; it has {}",
                file.display(),
                names.join(", ")
            ),
            None if names.is_empty() => format!("`{}` defines no skill", file.display()),
            None => format!(
                "`{}` has several skills ({}); name one",
                file.display(),
                names.join(", ")
            ),
        };
        return Err(CliError::new(EXIT_USAGE, message));
    };
    let sources = out
        .sources
        .iter()
        .map(|f| (f.path.clone(), f.text.to_string()))
        .collect();
    Ok((Arc::new(program), chosen, sources))
}
