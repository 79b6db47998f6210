//! The step cache in a run: a cacheable step's key, reusing a stored result
//! (its outputs restored and checked), and storing an accepted result.

use super::scheduler::{Runner, inner_step_names};
use crate::cache::{Entry, FileHashes, KeyParts, Reason, hash_text};
use crate::ir::{NodeKind, StepKind};
use crate::journal::now_ms;
use serde_json::{Value as Json, json};
use std::path::PathBuf;

/// A cacheable step instance's key, kept until its result is stored.
#[derive(Debug, Clone)]
pub struct CacheKey {
    /// The key.
    pub key: String,
    /// What it was made of.
    pub parts: KeyParts,
    /// The directory its globs are relative to.
    pub root: PathBuf,
}

/// What a lookup found.
pub enum Lookup {
    /// A usable entry.
    Hit(Box<Entry>),
    /// Nothing usable: why.
    Miss(Vec<Reason>),
}

impl Runner<'_> {
    /// The identity entries of this step instance are compared under.
    pub fn cache_identity(&self, inst: usize) -> String {
        format!("{}::{}", self.frames[0].skill.key, self.insts[inst].key)
    }

    /// The key of a cacheable step instance from its rendered `inputs`.
    pub fn cache_key(&self, inst: usize, inputs: &Json) -> Result<CacheKey, String> {
        let store = self.cache.as_ref().ok_or("the cache is off")?;
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return Err("not a step".into());
        };
        let mut parts = KeyParts::new();
        parts.definition = step.definition.clone();
        parts.result_type = step.result.to_string();
        // Secret values are redacted first: no key (nor its stored parts) is
        // derived from a secret, so the index reveals nothing of one.
        let mut rendered = inputs.clone();
        crate::secrets::redact_json(&mut rendered);
        if let Some(env) = rendered.as_object_mut().and_then(|m| m.remove("env"))
            && let Some(env) = env.as_object()
        {
            for (k, v) in env {
                parts.env.insert(k.clone(), hash_text(&v.to_string()));
            }
        }
        parts.inputs = hash_text(&rendered.to_string());
        let f = &self.frames[self.insts[inst].frame];
        for d in f.deps.get(&node).into_iter().flatten() {
            let out = match &skill.nodes[*d].kind {
                NodeKind::Step(_) => f.out_hash.get(d).cloned().unwrap_or_default(),
                // A block's own binding is empty: what it gives are its inner
                // steps' values lifted into this frame.
                _ => {
                    let lifted: Vec<String> = inner_step_names(&skill, *d)
                        .iter()
                        .map(|n| f.vars.get_local(n).unwrap_or(Json::Null).to_string())
                        .collect();
                    hash_text(&lifted.join("\n"))
                }
            };
            parts.upstream.insert(skill.nodes[*d].name.clone(), out);
        }
        if let StepKind::Llm(llm) = &step.kind {
            let m = &llm.model;
            parts.model = Some(format!(
                "{:?}/{}/{:?}",
                m.provider,
                m.model.as_deref().unwrap_or(&m.name),
                m.provider_env
            ));
        }
        if let Some(v) = &step.cache.key {
            let names = self.names(inst, 1, "");
            let value = self.eval.value(&skill, v, &names)?;
            parts.cache_key = Some(hash_text(&value.to_string()));
        }
        let root = PathBuf::from(inputs["cwd"].as_str().unwrap_or("."));
        if !step.cache.inputs.is_empty() {
            let globs = self.render_globs(inst, &step.cache.inputs)?;
            let files = crate::cache::expand(&root, &globs)?;
            let mut hashes = FileHashes::new(store);
            parts.files = hashes.hash_all(&root, &files)?;
            hashes.save()?;
        }
        Ok(CacheKey {
            key: parts.key(),
            parts,
            root,
        })
    }

    /// The globs of `inputs` or `outputs`, rendered for this instance.
    fn render_globs(&self, inst: usize, globs: &[crate::ir::Glob]) -> Result<Vec<String>, String> {
        let (skill, _) = self.step(inst);
        let names = self.names(inst, 1, "");
        globs
            .iter()
            .map(|g| self.eval.text(&skill, &g.value, &names))
            .collect()
    }

    /// Looks `key` up; a miss says why (compared with the newest entry of this step).
    pub fn cache_lookup(&self, inst: usize, key: &CacheKey) -> Lookup {
        let Some(store) = &self.cache else {
            return Lookup::Miss(vec![Reason::CacheOff]);
        };
        match store.get(&key.key) {
            Ok(Some(e)) => return Lookup::Hit(Box::new(e)),
            Ok(None) => {}
            Err(why) => {
                let _ = store.remove(&key.key);
                return Lookup::Miss(vec![Reason::Corrupt(vec![why])]);
            }
        }
        let latest = store.latest_for(&self.cache_identity(inst)).ok().flatten();
        let old: Option<KeyParts> = latest.and_then(|e| serde_json::from_value(e.parts).ok());
        match old.map(|old| key.parts.differences(&old)) {
            Some(why) if !why.is_empty() => Lookup::Miss(why),
            _ => Lookup::Miss(vec![Reason::NoEntry]),
        }
    }

    /// A cacheable step is ready: reuse a stored result if its key matches.
    /// True when it was reused (the instance is settled); false when it must run.
    pub fn try_reuse(&mut self, inst: usize, inputs: &Json) -> bool {
        let item = self.insts[inst].key.clone();
        let key = match self.cache_key(inst, inputs) {
            Ok(k) => k,
            Err(e) => {
                self.observer
                    .explain(&item, false, &format!("not cached: {e}"));
                return false;
            }
        };
        let entry = match self.cache_lookup(inst, &key) {
            Lookup::Hit(e) => e,
            Lookup::Miss(why) => {
                let why: Vec<String> = why.iter().map(ToString::to_string).collect();
                self.observer
                    .explain(&item, false, &format!("cache miss: {}", why.join("; ")));
                self.insts[inst].cache_key = Some(key);
                return false;
            }
        };
        if let Some(store) = &self.cache {
            for out in &entry.outputs {
                if let Err(why) = store.restore_object(&key.root, out) {
                    let _ = store.remove(&entry.key);
                    self.observer
                        .explain(&item, false, &format!("cache entry unusable: {why}"));
                    self.insts[inst].cache_key = Some(key);
                    return false;
                }
            }
            let _ = store.touch(&entry.key, now_ms());
        }
        // A reused result remembers what the step would have.
        let (skill, node) = self.step(inst);
        if let crate::ir::NodeKind::Step(step) = &skill.nodes[node].kind
            && let Err(why) = self.remember(inst, step, &entry.result)
        {
            self.observer
                .explain(&item, false, &format!("cache entry unusable: {why}"));
            return false;
        }
        let reused = json!({ "run": entry.run_id, "node": entry.node, "attempt": entry.attempt, "cache_key": entry.key });
        let ih = self.insts[inst].input_hash.clone();
        self.set_status(
            &item,
            "running",
            None,
            json!({ "input_hash": ih, "reused": reused }),
        );
        self.set_status(
            &item,
            "succeeded",
            None,
            json!({ "result": entry.result, "reused": reused }),
        );
        self.observer.explain(
            &item,
            true,
            &format!(
                "reused from run {} (attempt {})",
                entry.run_id, entry.attempt
            ),
        );
        self.cache_hits += 1;
        self.frames[self.insts[inst].frame]
            .vars
            .set(&skill.nodes[node].name, entry.result);
        self.settle(inst, super::frame::Settle::Done);
        true
    }

    /// After a real run: least recently used entries past the cap go, then their objects.
    pub fn evict_cache(&self) {
        if let Some(store) = &self.cache
            && self.plan.is_none()
            && store.evict_to(store.max_bytes).unwrap_or(0) > 0
        {
            let _ = store.remove_unreferenced();
        }
    }

    /// An attempt of a cacheable step was accepted: store its result and declared outputs.
    pub fn store_result(&mut self, inst: usize, attempt: u32, result: &Json) {
        let Some(key) = self.insts[inst].cache_key.take() else {
            return;
        };
        let Some(store) = &self.cache else { return };
        let (skill, node) = self.step(inst);
        let NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let globs = self.render_globs(inst, &step.cache.outputs);
        let stored = globs
            .and_then(|g| crate::cache::expand(&key.root, &g))
            .and_then(|files| {
                let outputs = files
                    .iter()
                    .map(|rel| store.put_object(&key.root, rel))
                    .collect::<Result<Vec<_>, _>>()?;
                let size =
                    result.to_string().len() as u64 + outputs.iter().map(|o| o.size).sum::<u64>();
                let now = now_ms();
                store.put(&Entry {
                    key: key.key.clone(),
                    step: self.cache_identity(inst),
                    run_id: self.run_id.clone(),
                    node: self.insts[inst].key.clone(),
                    attempt,
                    result: result.clone(),
                    outputs,
                    parts: serde_json::to_value(&key.parts).unwrap_or(Json::Null),
                    size,
                    created_at: now,
                    used_at: now,
                })
            });
        if let Err(why) = stored {
            let item = self.insts[inst].key.clone();
            self.observer
                .explain(&item, false, &format!("result not cached: {why}"));
        }
    }
}
