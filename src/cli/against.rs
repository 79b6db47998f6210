//! `flowc check --against JOURNAL|RUN`: what resuming each unfinished run of a checked file would reuse and redo.

use super::error::CliError;
use super::{DEFAULT_JOURNAL, JournalArgs};
use crate::check::CheckOutput;
use crate::exec::against::{Fate, Journaled, Prediction, predict};
use crate::ir::Program;
use crate::journal::{Journal, RunRow};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};

/// Run statuses a `flowc run --resume` can continue.
const UNFINISHED: &[&str] = &["running", "paused", "interrupted", "failed"];

/// What `--against` names: a journal file, or a run in the default journal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Journal(PathBuf),
    Run(String),
}

/// A path that exists, or that looks like one, is a journal; anything else a run id.
fn target(value: &str) -> Target {
    let path = Path::new(value);
    if path.exists() || value.contains(std::path::MAIN_SEPARATOR) || value.ends_with(".db") {
        Target::Journal(path.to_path_buf())
    } else {
        Target::Run(value.to_string())
    }
}

/// The predictions for every unfinished run of the checked files' skills, the journal's path, and what was left out.
pub struct Against {
    /// The journal read.
    pub journal: PathBuf,
    /// One per run, in the journal's order (newest first).
    pub runs: Vec<Prediction>,
    /// The checked files that compiled.
    pub files: Vec<String>,
}

impl Against {
    /// Whether any run cannot survive the edit.
    pub fn breaking(&self) -> usize {
        self.runs.iter().map(|r| r.breaking.len()).sum()
    }
}

/// Reads the journal `value` names and predicts each unfinished run of a skill the checked files define.
pub fn predict_all(out: &CheckOutput, value: &str) -> Result<Against, CliError> {
    let programs: Vec<&Program> = out
        .files
        .iter()
        .filter_map(|f| f.program.as_ref())
        .collect();
    let (path, run) = match target(value) {
        Target::Journal(p) => (p, None),
        Target::Run(id) => (JournalArgs { journal: None }.path(), Some(id)),
    };
    if !path.exists() {
        let mut err = CliError::usage(format!("no journal at `{}`", path.display()));
        if run.is_some() && path == Path::new(DEFAULT_JOURNAL) {
            err = err.help(format!(
                "`{value}` was read as a run id in the default journal; pass a journal's path, or set `FLOWC_JOURNAL`"
            ));
        }
        return Err(err);
    }
    let journal = Journal::open_read_only(&path).map_err(CliError::from)?;
    let rows = match &run {
        Some(id) => vec![one_run(&journal, id, &programs)?],
        None => journal
            .runs()?
            .into_iter()
            .filter(|r| UNFINISHED.contains(&r.status.as_str()))
            .filter(|r| {
                programs
                    .iter()
                    .any(|p| p.entry_skill(Some(&r.skill)).is_some())
            })
            .collect(),
    };
    let mut runs = Vec::new();
    for row in &rows {
        let nodes = journal.nodes(&row.id)?;
        let definitions = journal.definition_hashes(&row.id)?;
        let approvals = journal.approvals(Some(&row.id))?;
        let j = Journaled {
            run: row,
            nodes: &nodes,
            definitions: &definitions,
            approvals: &approvals,
        };
        runs.extend(programs.iter().find_map(|p| predict(p, &j)));
    }
    Ok(Against {
        journal: path,
        runs,
        files: programs.iter().map(|p| p.file.clone()).collect(),
    })
}

/// The run `id` names, if it is unfinished and of a skill the checked files define.
fn one_run(journal: &Journal, id: &str, programs: &[&Program]) -> Result<RunRow, CliError> {
    let row = journal.run(&journal.resolve_run(id)?)?;
    if !UNFINISHED.contains(&row.status.as_str()) {
        return Err(CliError::usage(format!(
            "run `{}` has {} status `{}`: there is nothing to resume",
            row.id,
            if row.status == "queued" {
                "the"
            } else {
                "ended with"
            },
            row.status
        )));
    }
    if !programs
        .iter()
        .any(|p| p.entry_skill(Some(&row.skill)).is_some())
    {
        return Err(CliError::usage(format!(
            "run `{}` is of skill `{}`, which the checked files do not define",
            row.id, row.skill
        ))
        .help(format!("check the file it ran from: `{}`", row.file)));
    }
    Ok(row)
}

/// Where a run stands, for its heading: `paused at gate`, `interrupted`,
/// and the file it ran from when that is not the file checked.
fn standing(p: &Prediction, checked: &[String]) -> String {
    let mut out = if p.waiting_at.is_empty() {
        p.status.clone()
    } else {
        format!("{} at {}", p.status, p.waiting_at.join(", "))
    };
    if !checked.iter().any(|c| same_file(c, &p.file)) {
        out.push_str(&format!(", started from `{}`", p.file));
    }
    out
}

fn same_file(a: &str, b: &str) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The counts of a run's heading, in a fixed order, leaving out zeros but for `reused` and `redo`.
fn counts(p: &Prediction) -> String {
    let fates = [
        Fate::Reused,
        Fate::Redo,
        Fate::Waiting,
        Fate::New,
        Fate::Removed,
        Fate::Unknown,
    ];
    fates
        .iter()
        .map(|&f| (f, p.count(f)))
        .filter(|&(f, n)| n > 0 || matches!(f, Fate::Reused | Fate::Redo))
        .map(|(f, n)| format!("{n} {}", f.word()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as text: one block per run.
pub fn text(a: &Against) -> String {
    if a.runs.is_empty() {
        return format!(
            "no unfinished run of these skills in `{}`\n",
            a.journal.display()
        );
    }
    let mut out = String::new();
    for p in &a.runs {
        out.push_str(&format!(
            "run {} ({}): {}\n",
            p.run,
            standing(p, &a.files),
            counts(p)
        ));
        let width = p.steps.iter().map(|s| s.key.len()).max().unwrap_or(0);
        for s in &p.steps {
            out.push_str(&format!(
                "  {:<8} {:<width$}  {}\n",
                s.fate.word(),
                s.key,
                s.reason
            ));
        }
        for b in &p.breaking {
            out.push_str(&format!("  breaking: {b}\n"));
        }
    }
    out
}

/// The report as JSON: the journal, the runs, and how many problems break a run.
pub fn json(a: &Against) -> Json {
    json!({
        "journal": a.journal.display().to_string(),
        "runs": a.runs,
        "breaking": a.breaking(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(target("01JABC"), Target::Run("01JABC".into()));
        assert_eq!(
            target("state/journal.db"),
            Target::Journal(PathBuf::from("state/journal.db"))
        );
        assert_eq!(
            target("journal.db"),
            Target::Journal(PathBuf::from("journal.db"))
        );
    }
}
