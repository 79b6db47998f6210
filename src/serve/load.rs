//! Loading the triggers under the service's paths: every `.flow` file is
//! compiled, and each trigger is paired with the skill it starts.

use crate::check::{FsLoader, check_files};
use crate::diag::{Format, RenderOptions, Severity, render};
use crate::ir::{Program, Skill, Trigger, TriggerSource};
use crate::schedule::Schedule;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A trigger ready to fire.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The compiled trigger.
    pub trigger: Trigger,
    /// The skill it starts.
    pub skill: Arc<Skill>,
    /// The file that defines the skill, as run processes open it.
    pub skill_file: PathBuf,
    /// The file that defines the trigger (display path).
    pub file: String,
    /// A cron trigger's schedule and zone.
    pub cron: Option<(Schedule, jiff::tz::TimeZone)>,
}

/// Compiles every `.flow` file under `paths` and returns their triggers;
/// diagnostics are printed, and any error (or two triggers of one name) is refused.
pub fn load(paths: &[PathBuf], color: bool) -> Result<Vec<Loaded>, String> {
    let collected = crate::cli::collect_files(paths);
    if let Some((path, why)) = collected.unreadable.first() {
        return Err(format!("cannot read `{path}`: {why}"));
    }
    let out = check_files(&FsLoader, &collected.files);
    if let Some((path, why)) = out.unreadable.first() {
        return Err(format!("cannot read `{path}`: {why}"));
    }
    let opts = RenderOptions {
        color,
        width: crate::cli::term_width(),
    };
    let errors: Vec<_> = out
        .diagnostics
        .iter()
        .filter(|d| d.severity() == Severity::Error)
        .collect();
    for diag in &errors {
        eprint!("{}", render(diag, &out.sources, Format::Human, opts));
    }
    if !errors.is_empty() {
        return Err(format!(
            "{} error(s) in the flow files; `flowc check` shows them too",
            errors.len()
        ));
    }
    let mut loaded: Vec<Loaded> = Vec::new();
    for file in out.files {
        let Some(program) = file.program else {
            continue;
        };
        for trigger in &program.triggers {
            if let Some(other) = loaded.iter().find(|l| l.trigger.name == trigger.name) {
                return Err(format!(
                    "two triggers are named `{}` (in `{}` and `{}`); trigger names identify their fires in the journal, so they must be unique",
                    trigger.name, other.file, file.path
                ));
            }
            loaded.push(pair(&program, trigger, &file.path)?);
        }
    }
    Ok(loaded)
}

fn pair(program: &Program, trigger: &Trigger, file: &str) -> Result<Loaded, String> {
    let key = trigger.skill.clone().unwrap_or_default();
    let skill = program
        .skills
        .get(&key)
        .cloned()
        .ok_or_else(|| format!("trigger `{}` runs no known skill", trigger.name))?;
    let defined_in = key.rsplit_once('#').map_or(file, |(f, _)| f);
    let skill_file = std::fs::canonicalize(defined_in)
        .or_else(|_| std::fs::canonicalize(file))
        .map_err(|e| format!("cannot find `{defined_in}`: {e}"))?;
    let cron = match &trigger.source {
        TriggerSource::Cron { expr, timezone, .. } => {
            let schedule = Schedule::parse(expr).map_err(|e| e.message)?;
            let zone = crate::schedule::zone(timezone)?;
            Some((schedule, zone))
        }
        _ => None,
    };
    Ok(Loaded {
        trigger: trigger.clone(),
        skill,
        skill_file,
        file: file.to_string(),
        cron,
    })
}

/// The kind of a trigger, for tables.
pub fn kind(source: &TriggerSource) -> &'static str {
    match source {
        TriggerSource::Cron { .. } => "cron",
        TriggerSource::Watch { .. } => "watch",
        TriggerSource::Webhook { .. } => "webhook",
        TriggerSource::Missing => "none",
    }
}

/// What a trigger listens to, for tables: the schedule, the globs, the path.
pub fn what(source: &TriggerSource) -> String {
    match source {
        TriggerSource::Cron { expr, timezone, .. } => format!("{expr} ({timezone})"),
        TriggerSource::Watch { globs, .. } => globs.join(", "),
        TriggerSource::Webhook { path, .. } => format!("POST {path}"),
        TriggerSource::Missing => String::new(),
    }
}

/// Whether `path` is inside the directory the service runs in (for messages).
pub fn relative(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
