//! Memory at run time: the values `recall` reads, the part of a step's input
//! hash they make, and a step's `remember` after it is accepted.
//!
//! A session loads the journal's memory once, when it starts; the run then
//! sees its own writes as it makes them, and other runs' writes in its next
//! session. A step's input hash takes the value of each key it recalls.
//!
//! A resumed run must see what it saw before, so its own writes do not make
//! its finished steps stale: a key whose current value this run wrote starts
//! the session at the value it had before (the last one someone else gave
//! it), and each finished step that is reused applies its writes again, in
//! order. A key a person (`flowc memory set`) or another run changed since
//! keeps that value: the steps that read it run again.

use super::eval::{err, to_dynamic, type_word, with_str};
use super::scheduler::Runner;
use crate::ir::{NodeKind, Program, Step};
use crate::journal::{
    Journal, JournalError, MEMORY_KEYS_MAX, MEMORY_VALUE_MAX, NewEvent, memory_namespace,
};
use rhai::Dynamic;
use serde_json::{Map, Value as Json, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

type RhaiResult = Result<Dynamic, Box<rhai::EvalAltResult>>;

/// The run's memory in one session.
#[derive(Debug, Default)]
pub struct Memory {
    /// What `recall` reads: the journal's memory when the session started,
    /// with this run's writes since.
    values: RwLock<HashMap<String, Json>>,
    /// Per key a step recalls: when someone other than this run last changed it.
    external: HashMap<String, i64>,
    /// A resumed run's earlier writes of the keys it wrote last, by instance
    /// key, applied again when that instance is reused.
    earlier: HashMap<String, Vec<(String, Json)>>,
}

impl Memory {
    /// The journal's memory for run `run` of `program` (`resuming`: a run
    /// that may have written memory in an earlier session).
    pub fn load(
        journal: &Journal,
        program: &Program,
        run: &str,
        resuming: bool,
    ) -> Result<Memory, JournalError> {
        let keys: BTreeSet<&str> = program
            .skills
            .values()
            .flat_map(|s| s.nodes.iter())
            .filter_map(|n| match &n.kind {
                NodeKind::Step(step) => Some(step.recalls.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect();
        let mut external = HashMap::new();
        for key in keys {
            let at = journal.memory_external(key, run)?.map_or(0, |(_, at)| at);
            external.insert(key.to_string(), at);
        }
        let mut values = journal.memory_snapshot()?;
        let mut earlier: HashMap<String, Vec<(String, Json)>> = HashMap::new();
        if resuming {
            let own = journal.memory_written_by(run)?;
            for key in &own {
                match journal.memory_external(key, run)? {
                    Some((Some(text), _)) => {
                        values.insert(key.clone(), serde_json::from_str(&text).unwrap_or_default())
                    }
                    _ => values.remove(key),
                };
            }
            for e in journal.events_of(run, Some("memory_set"))? {
                let key = e.data["key"].as_str().unwrap_or_default();
                if let (Some(node), true) = (e.node, own.iter().any(|k| k == key)) {
                    let value = e.data["value"].clone();
                    earlier
                        .entry(node)
                        .or_default()
                        .push((key.to_string(), value));
                }
            }
        }
        Ok(Memory {
            values: RwLock::new(values),
            external,
            earlier,
        })
    }

    /// Instance `node` of a resumed run is reused: its earlier writes apply again.
    pub fn reuse(&self, node: &str) {
        for (key, value) in self.earlier.get(node).into_iter().flatten() {
            self.set(key, value.clone());
        }
    }

    /// The value of `key`, if something is remembered.
    pub fn get(&self, key: &str) -> Option<Json> {
        self.values.read().ok()?.get(key).cloned()
    }

    fn set(&self, key: &str, value: Json) {
        if let Ok(mut values) = self.values.write() {
            values.insert(key.to_string(), value);
        }
    }

    /// The values a template may recall: the keys its source names.
    pub fn for_template(&self, source: &str) -> Json {
        let Ok(values) = self.values.read() else {
            return Json::Null;
        };
        let picked: Map<String, Json> = values
            .iter()
            .filter(|(k, _)| source.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Json::Object(picked)
    }

    /// What the keys a step recalls add to its input hash: their values now.
    pub fn hash_parts(&self, keys: &[String]) -> Vec<String> {
        keys.iter()
            .map(|k| match self.get(k) {
                Some(v) => format!("recall {k} = {v}"),
                None => format!("recall {k} (nothing)"),
            })
            .collect()
    }

    /// A key of `keys` that someone other than this run changed after `since` (Unix ms).
    pub fn changed_after<'k>(&self, keys: &'k [String], since: i64) -> Option<&'k str> {
        keys.iter()
            .find(|k| self.external.get(k.as_str()).is_some_and(|at| *at > since))
            .map(String::as_str)
    }
}

/// `recall(key)` and `recall(key, default)` of expressions, reading `memory`:
/// the default (else `()`) when nothing is remembered, and an error when
/// the value is of another kind than the default.
pub fn register_recall(engine: &mut rhai::Engine, memory: &Arc<Memory>) {
    let mem = memory.clone();
    engine.register_fn("f_recall", move |key: Dynamic| -> RhaiResult {
        let key = with_str(&key, "recall")?;
        Ok(mem.get(&key).map_or(Dynamic::UNIT, |v| to_dynamic(&v)))
    });
    let mem = memory.clone();
    engine.register_fn(
        "f_recall",
        move |key: Dynamic, default: Dynamic| -> RhaiResult {
            let key = with_str(&key, "recall")?;
            let Some(v) = mem.get(&key) else {
                return Ok(default);
            };
            let v = to_dynamic(&v);
            let numbers = |d: &Dynamic| d.is_int() || d.is_float();
            let same = default.is_unit()
                || v.type_id() == default.type_id()
                || (numbers(&v) && numbers(&default));
            if same {
                Ok(v)
            } else {
                Err(err(format!(
                    "recall(): memory `{key}` holds {}, not {} like its default",
                    type_word(&v),
                    type_word(&default)
                )))
            }
        },
    );
}

impl Runner<'_> {
    /// Writes a step's `remember` over its accepted `result`: every value is
    /// evaluated, redacted and checked against the limits before any is
    /// journaled, so a step writes all of its keys or none.
    pub fn remember(&mut self, inst: usize, step: &Step, result: &Json) -> Result<(), String> {
        if step.remember.is_empty() {
            return Ok(());
        }
        let frame = self.insts[inst].frame;
        let skill = self.frames[frame].skill.clone();
        let mut writes = Vec::new();
        {
            let names = self.result_names(inst, result);
            for (key, value) in &step.remember {
                let mut v = self
                    .eval
                    .value(&skill, value, &names)
                    .map_err(|e| format!("`remember.{key}` could not be evaluated: {e}"))?;
                crate::secrets::redact_json(&mut v);
                writes.push((key.clone(), v));
            }
        }
        for (key, value) in &writes {
            self.memory_fits(key, value)?;
        }
        let node = self.insts[inst].key.clone();
        let attempt = Some(self.insts[inst].attempt).filter(|a| *a > 0);
        for (key, value) in writes {
            let data = json!({ "key": key, "value": value });
            let event = NewEvent::node(&self.run_id, "memory_set", &node, attempt, data);
            self.push(event);
            self.eval.memory().set(&key, value);
        }
        Ok(())
    }

    /// Why `value` cannot be remembered as `key`: over the size of a value, or
    /// a new key in a namespace that holds its most keys already.
    fn memory_fits(&self, key: &str, value: &Json) -> Result<(), String> {
        let size = value.to_string().len();
        if size > MEMORY_VALUE_MAX {
            return Err(format!(
                "`remember.{key}`: the value is {size} bytes of JSON, over the {MEMORY_VALUE_MAX} bytes a memory value may hold"
            ));
        }
        if self.eval.memory().get(key).is_some() {
            return Ok(());
        }
        let ns = memory_namespace(key);
        let count = self.journal.memory_keys(ns).map_err(|e| e.to_string())?;
        if count >= MEMORY_KEYS_MAX {
            let shown = if ns.is_empty() { "(none)" } else { ns };
            return Err(format!(
                "`remember.{key}`: the namespace `{shown}` holds {MEMORY_KEYS_MAX} keys already, the most it may; remove some with `flowc memory rm`"
            ));
        }
        Ok(())
    }
}
