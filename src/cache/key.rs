//! The cache key: what a step's result depends on, hashed; and why two keys differ, for the dry run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped when the meaning of a key changes, so old entries stop matching.
const VERSION: u32 = 1;

/// Everything a cached result depends on. The key is the hash of all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyParts {
    /// [`VERSION`] when it was made.
    pub version: u32,
    /// The step's normalised definition (`check::canonical`): one line per field.
    pub definition: String,
    /// The step's result type, as the checker resolved it.
    pub result_type: String,
    /// blake3 of the rendered inputs other than `env` (command, prompt, script values).
    pub inputs: String,
    /// Each `env` variable's rendered value, hashed.
    pub env: BTreeMap<String, String>,
    /// Each upstream step's output hash.
    pub upstream: BTreeMap<String, String>,
    /// Each declared input file's content hash, by path relative to the step's directory.
    pub files: BTreeMap<String, String>,
    /// `provider/name` of an `llm` step's model.
    pub model: Option<String>,
    /// blake3 of the rendered `cache_key`.
    pub cache_key: Option<String>,
}

/// blake3 of `text`, hex.
pub fn hash_text(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

impl KeyParts {
    /// Parts of the current version.
    pub fn new() -> KeyParts {
        KeyParts {
            version: VERSION,
            ..KeyParts::default()
        }
    }

    /// The cache key.
    pub fn key(&self) -> String {
        hash_text(&serde_json::to_string(self).unwrap_or_default())
    }

    /// Why an entry made with `old` does not match these parts (every difference found).
    pub fn differences(&self, old: &KeyParts) -> Vec<Reason> {
        let mut out = Vec::new();
        if old.version != self.version {
            out.push(Reason::Version);
            return out;
        }
        let definition = old.definition != self.definition || old.result_type != self.result_type;
        if definition {
            out.push(Reason::Definition(changed_fields(
                &old.definition,
                &self.definition,
            )));
        }
        let files = changed_keys(&old.files, &self.files);
        if !files.is_empty() {
            out.push(Reason::Files(files));
        }
        let upstream = changed_keys(&old.upstream, &self.upstream);
        if !upstream.is_empty() {
            out.push(Reason::Upstream(upstream));
        }
        let env = changed_keys(&old.env, &self.env);
        if !env.is_empty() {
            out.push(Reason::Env(env));
        }
        // An edited field renders differently: saying so again adds nothing.
        if old.inputs != self.inputs && !definition {
            out.push(Reason::Inputs);
        }
        if old.model != self.model {
            out.push(Reason::Model);
        }
        if old.cache_key != self.cache_key {
            out.push(Reason::CacheKey);
        }
        out
    }
}

/// Field names whose lines differ between two normalised definitions.
fn changed_fields(old: &str, new: &str) -> Vec<String> {
    let split = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .skip(1)
            .map(|l| match l.split_once(": ") {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect()
    };
    let mut fields = changed_keys(&split(old), &split(new));
    if old.lines().next() != new.lines().next() {
        fields.insert(0, "kind".into());
    }
    fields
}

/// Keys added, removed or with another value.
fn changed_keys(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Why a step runs rather than reusing a cached result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "names", rename_all = "snake_case")]
pub enum Reason {
    /// The step has `cache: false` (or its kind is never cached).
    CacheOff,
    /// No entry was ever stored for the step.
    NoEntry,
    /// An entry was stored by another flowc whose keys mean something else.
    Version,
    /// These fields of the definition changed.
    Definition(Vec<String>),
    /// These declared input files changed, appeared or went.
    Files(Vec<String>),
    /// These upstream steps' results changed.
    Upstream(Vec<String>),
    /// These `env` variables changed.
    Env(Vec<String>),
    /// The rendered command, prompt or values changed.
    Inputs,
    /// The model or provider changed.
    Model,
    /// The rendered `cache_key` changed.
    CacheKey,
    /// The entry was found but is damaged (a corrupt object, say).
    Corrupt(Vec<String>),
    /// It reads steps that have not run (dry run only).
    DependsOn(Vec<String>),
}

fn names(list: &[String]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::CacheOff => f.write_str("cache off"),
            Reason::NoEntry => f.write_str("no cache entry"),
            Reason::Version => f.write_str("the cache entry is from another flowc version"),
            Reason::Definition(fields) if fields.is_empty() => {
                f.write_str("definition changed (its result type)")
            }
            Reason::Definition(fields) => write!(f, "definition changed: {}", names(fields)),
            Reason::Files(files) => write!(f, "input file changed: {}", names(files)),
            Reason::Upstream(steps) => write!(f, "upstream changed: {}", names(steps)),
            Reason::Env(vars) => write!(f, "env changed: {}", names(vars)),
            Reason::Inputs => f.write_str("rendered inputs changed"),
            Reason::Model => f.write_str("model changed"),
            Reason::CacheKey => f.write_str("`cache_key` changed"),
            Reason::Corrupt(why) => write!(f, "cache entry unusable: {}", why.join("; ")),
            Reason::DependsOn(steps) => write!(f, "depends on unrun steps: {}", names(steps)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_what_changed() {
        let mut a = KeyParts::new();
        a.definition = "step s: run\ncommand: \"a\"\ntimeout: 5000ms".into();
        a.files.insert("x.txt".into(), "1".into());
        let mut b = a.clone();
        b.definition = "step s: run\ncommand: \"b\"\ntimeout: 5000ms".into();
        b.files.insert("x.txt".into(), "2".into());
        b.env.insert("LEVEL".into(), "h".into());
        assert_eq!(
            b.differences(&a),
            vec![
                Reason::Definition(vec!["command".into()]),
                Reason::Files(vec!["x.txt".into()]),
                Reason::Env(vec!["LEVEL".into()]),
            ]
        );
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), a.clone().key());
    }
}
