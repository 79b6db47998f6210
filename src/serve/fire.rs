//! Firing a trigger: its `run:` arguments evaluated with `event`, typed,
//! `overlap` applied, and the run queued together with its `(trigger, key)` row.

use super::Service;
use super::load::Loaded;
use crate::exec::eval::{Evaluator, Names};
use crate::ir::Overlap;
use crate::journal::{Fire, Submission};
use serde_json::{Map, Value as Json, json};

/// What a fire did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A run was queued.
    Queued(String),
    /// This `(trigger, key)` fired before; the run it queued then, if any.
    Duplicate(Option<String>),
    /// `overlap` said to start nothing.
    Skipped(String),
    /// The arguments do not fit the skill (journaled; no run).
    Rejected(String),
}

impl Outcome {
    /// The word recorded and counted for it.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Queued(_) => "queued",
            Outcome::Duplicate(_) => "duplicate",
            Outcome::Skipped(_) => "skipped",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

struct EventNames<'a>(&'a Json);

impl Names for EventNames<'_> {
    fn get(&self, name: &str) -> Option<Json> {
        (name == "event").then(|| self.0.clone())
    }
}

/// Evaluates the trigger's arguments with `event` and types them by the skill's parameters.
pub fn inputs(loaded: &Loaded, event: &Json) -> Result<Map<String, Json>, String> {
    let eval = Evaluator::new();
    let names = EventNames(event);
    let mut given = Map::new();
    for (param, expr) in &loaded.trigger.args {
        let value = eval
            .expr(expr, &names)
            .map_err(|e| format!("argument `{param}` ({}): {e}", expr.source))?;
        given.insert(param.clone(), value);
    }
    crate::exec::inputs::from_values(&loaded.skill, &given).map_err(|errors| errors.join("; "))
}

/// Fires `loaded` for the occurrence `key` with `event`, and wakes the supervisor.
pub fn fire(svc: &Service, loaded: &Loaded, key: &str, event: Json) -> Result<Outcome, String> {
    let outcome = fire_in(&mut svc.journal(), loaded, key, event);
    svc.wake.notify_one();
    outcome
}

/// `flowc trigger fire`: the same path, from outside the service; the key is unique.
pub fn fire_by_hand(
    journal: &std::path::Path,
    loaded: &Loaded,
    event: Json,
) -> Result<Outcome, String> {
    let mut journal =
        crate::journal::Journal::open(journal, Default::default()).map_err(|e| e.to_string())?;
    let key = format!("manual:{}", crate::journal::new_run_id());
    fire_in(&mut journal, loaded, &key, event)
}

fn fire_in(
    journal: &mut crate::journal::Journal,
    loaded: &Loaded,
    key: &str,
    event: Json,
) -> Result<Outcome, String> {
    let name = &loaded.trigger.name;
    let record = Fire {
        trigger: name.clone(),
        key: key.to_string(),
        data: json!({ "event": redacted(&event) }),
    };
    if let Some(row) = journal.fire_row(name, key).map_err(|e| e.to_string())? {
        // A redelivery gets the answer the delivery got.
        if row.outcome == "rejected" {
            let why = row.data["error"].as_str().unwrap_or("rejected before");
            return Ok(Outcome::Rejected(why.to_string()));
        }
        return Ok(Outcome::Duplicate(row.run_id));
    }
    let inputs = match inputs(loaded, &event) {
        Ok(i) => i,
        Err(why) => {
            let mut rejected = record.clone();
            rejected.data["error"] = Json::String(why.clone());
            journal
                .record_fire(&rejected, "rejected")
                .map_err(|e| e.to_string())?;
            return Ok(Outcome::Rejected(why));
        }
    };
    let active = journal
        .trigger_active_runs(name)
        .map_err(|e| e.to_string())?;
    let skip = |journal: &mut crate::journal::Journal, why: String| -> Result<Outcome, String> {
        let mut skipped = record.clone();
        skipped.data["reason"] = Json::String(why.clone());
        journal
            .record_fire(&skipped, "skipped")
            .map_err(|e| e.to_string())?;
        Ok(Outcome::Skipped(why))
    };
    if let Some((run, status)) = active.last() {
        match loaded.trigger.overlap {
            Overlap::Skip => {
                return skip(journal, format!("run {run} of this trigger is {status}"));
            }
            Overlap::Queue if active.iter().any(|(_, s)| s == "queued") => {
                return skip(
                    journal,
                    format!("run {run} of this trigger is {status} and one is queued already"),
                );
            }
            Overlap::CancelPrevious => {
                for (run, _) in &active {
                    journal
                        .cancel(run, &format!("trigger {name} (cancel_previous)"))
                        .map_err(|e| e.to_string())?;
                }
            }
            Overlap::Queue | Overlap::Allow => {}
        }
    }
    let sub = Submission {
        skill: loaded.skill.name.clone(),
        file: loaded.skill_file.display().to_string(),
        inputs,
        by: format!("trigger {name}"),
        reason: "trigger".into(),
        wait_previous: !active.is_empty()
            && matches!(
                loaded.trigger.overlap,
                Overlap::Queue | Overlap::CancelPrevious
            ),
    };
    let queued = journal
        .enqueue(&sub, Some(&record))
        .map_err(|e| e.to_string())?;
    Ok(match queued {
        Some(run) => Outcome::Queued(run),
        // Another service recorded this fire between the check and the insert.
        None => Outcome::Duplicate(None),
    })
}

/// The event as kept in the journal: known secrets removed.
fn redacted(event: &Json) -> Json {
    let mut event = event.clone();
    crate::secrets::redact_json(&mut event);
    event
}
