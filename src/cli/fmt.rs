//! `flowc fmt`: formats files in place (atomically), checks them, or formats stdin.

use super::{CliError, CliResult, EXIT_FAILED, EXIT_OK, EXIT_USAGE, collect_files, term_width};
use crate::diag::{Format, RenderOptions, render};
use crate::fmt::{FormatError, format_source};
use crate::source::SourceMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Arguments of `flowc fmt`.
#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// Files or directories (default: every `.flow` file under the current directory).
    pub paths: Vec<PathBuf>,
    /// Change nothing; list the files that are not formatted and exit 1 if there are any.
    #[arg(long)]
    pub check: bool,
    /// Format standard input to standard output.
    #[arg(long, conflicts_with = "paths")]
    pub stdin: bool,
}

/// Runs `flowc fmt`.
pub fn run(args: &FmtArgs, color: bool) -> CliResult {
    if args.stdin {
        return stdin(args.check, color);
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let found = collect_files(&paths);
    let mut errors: Vec<String> = found
        .unreadable
        .iter()
        .map(|(path, reason)| format!("cannot read `{path}`: {reason}"))
        .collect();
    let mut unformatted = Vec::new();
    for file in &found.files {
        match one(file, args.check, color) {
            Ok(true) => unformatted.push(file.display().to_string()),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
    }
    if args.check {
        for file in &unformatted {
            println!("{file}");
        }
    }
    if !errors.is_empty() {
        return Err(CliError::all(EXIT_USAGE, errors));
    }
    if args.check && !unformatted.is_empty() {
        eprintln!(
            "{} file(s) are not formatted; run `flowc fmt` on them",
            unformatted.len()
        );
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

/// Formats one file; returns whether it was (or, with `check`, would be) changed.
fn one(file: &Path, check: bool, color: bool) -> Result<bool, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let formatted = formatted(&file.display().to_string(), &text, color)?;
    if formatted == text {
        return Ok(false);
    }
    if !check {
        write_atomically(file, &formatted)
            .map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
    }
    Ok(true)
}

/// The formatted text, or the reason (syntax errors printed on stderr first).
fn formatted(name: &str, text: &str, color: bool) -> Result<String, String> {
    match format_source(text) {
        Ok(out) => Ok(out),
        Err(FormatError::Syntax(diags)) => {
            let mut sources = SourceMap::default();
            sources.add(name, text);
            let opts = RenderOptions {
                color,
                width: term_width(),
            };
            for d in &diags {
                eprint!("{}", render(d, &sources, Format::Human, opts));
            }
            Err(format!(
                "`{name}` has syntax errors and was not formatted; fix them first"
            ))
        }
        Err(FormatError::Internal(why)) => Err(format!(
            "`{name}` was left unchanged: {why}; please report this with the file"
        )),
    }
}

/// Writes `text` to a temporary file beside `file` and renames it over
/// `file`, so a crash leaves the old file or the new one, never half of one;
/// the file keeps its permissions.
fn write_atomically(file: &Path, text: &str) -> std::io::Result<()> {
    // A symbolic link stays one: its target is what is replaced.
    let target = std::fs::canonicalize(file)?;
    let file = target.as_path();
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.fmt-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(file) {
            out.set_permissions(meta.permissions())?;
        }
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn stdin(check: bool, color: bool) -> CliResult {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read standard input: {e}")))?;
    let out = formatted("<stdin>", &text, color).map_err(CliError::usage)?;
    if check {
        return Ok(if out == text { EXIT_OK } else { EXIT_FAILED });
    }
    super::write_stdout(out.as_bytes())
}
