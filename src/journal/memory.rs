//! Memory that outlives runs: keys and their JSON values, written by runs (`memory_set` events) and by `flowc memory`, with every change kept.

use super::db::params;
use super::{Journal, JournalError, now_ms};
use serde_json::Value as Json;
use std::collections::HashMap;

/// The largest value one key holds, as JSON text.
pub const MEMORY_VALUE_MAX: usize = 64 * 1024;
/// The most keys one namespace holds.
pub const MEMORY_KEYS_MAX: i64 = 1000;
/// The longest key.
pub const MEMORY_KEY_MAX: usize = 200;

/// A key's namespace: its part before the first `/` ("" without one).
pub fn memory_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

/// Why a key cannot be used, if it cannot.
pub fn memory_key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("a memory key is not empty".into());
    }
    if key.len() > MEMORY_KEY_MAX {
        return Some(format!("a memory key has at most {MEMORY_KEY_MAX} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Some("a memory key has no control characters".into());
    }
    None
}

/// One key as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryRow {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Json,
    /// How many times it was written.
    pub version: i64,
    /// When it was last written (Unix ms).
    pub updated_at: i64,
    /// Who wrote it last (`run ID`, or a person).
    pub updated_by: String,
}

/// One change of a key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryChange {
    /// The value it got (`null` for a removal is `removed: true`).
    pub value: Option<Json>,
    /// Whether it was removed.
    pub removed: bool,
    /// When (Unix ms).
    pub at: i64,
    /// Who.
    pub by: String,
    /// The run that wrote it, if a run did.
    pub run_id: Option<String>,
}

fn parse(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or(Json::Null)
}

impl Journal {
    /// Every key (of one namespace, when given), in key order.
    pub fn memory_list(&self, namespace: Option<&str>) -> Result<Vec<MemoryRow>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT key, value, version, updated_at, updated_by FROM memory
              WHERE ?1 IS NULL OR namespace = ?1 ORDER BY key",
            params![namespace],
            |r| {
                Ok(MemoryRow {
                    key: r.get(0)?,
                    value: parse(&r.get::<String>(1)?),
                    version: r.get(2)?,
                    updated_at: r.get(3)?,
                    updated_by: r.get(4)?,
                })
            },
        )?;
        Ok(rows)
    }

    /// Every key's value, for a run to read.
    pub fn memory_snapshot(&self) -> Result<HashMap<String, Json>, JournalError> {
        Ok(self
            .memory_list(None)?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect())
    }

    /// One key's value, if it has one.
    pub fn memory_get(&self, key: &str) -> Result<Option<MemoryRow>, JournalError> {
        Ok(self
            .memory_list(Some(memory_namespace(key)))?
            .into_iter()
            .find(|r| r.key == key))
    }

    /// How many keys a namespace holds.
    pub fn memory_keys(&self, namespace: &str) -> Result<i64, JournalError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM memory WHERE namespace = ?1",
            params![namespace],
            |r| r.get(0),
        )?)
    }

    /// Sets a key by hand (`flowc memory set`), kept in the log with who did it.
    pub fn memory_set(&mut self, key: &str, value: &Json, by: &str) -> Result<(), JournalError> {
        let text = value.to_string();
        let at = now_ms();
        let tx = self.conn.transaction(super::db::Lock::Write)?;
        tx.execute(
            "INSERT INTO memory (key, namespace, value, version, updated_at, updated_by)
             VALUES (?1, ?2, ?3, 1, ?4, ?5)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = memory.version + 1,
               updated_at = excluded.updated_at, updated_by = excluded.updated_by, run_id = NULL",
            params![key, memory_namespace(key), text, at, by],
        )?;
        tx.execute(
            "INSERT INTO memory_log (key, value, at, by) VALUES (?1, ?2, ?3, ?4)",
            params![key, text, at, by],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a key by hand; false when it had no value.
    pub fn memory_remove(&mut self, key: &str, by: &str) -> Result<bool, JournalError> {
        let tx = self.conn.transaction(super::db::Lock::Write)?;
        let gone = tx.execute("DELETE FROM memory WHERE key = ?1", params![key])?;
        if gone > 0 {
            tx.execute(
                "INSERT INTO memory_log (key, value, at, by) VALUES (?1, NULL, ?2, ?3)",
                params![key, now_ms(), by],
            )?;
        }
        tx.commit()?;
        Ok(gone > 0)
    }

    /// Every change of a key, oldest first.
    pub fn memory_history(&self, key: &str) -> Result<Vec<MemoryChange>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT value, at, by, run_id FROM memory_log WHERE key = ?1 ORDER BY id",
            params![key],
            |r| {
                let value: Option<String> = r.get(0)?;
                Ok(MemoryChange {
                    removed: value.is_none(),
                    value: value.as_deref().map(parse),
                    at: r.get(1)?,
                    by: r.get(2)?,
                    run_id: r.get(3)?,
                })
            },
        )?;
        Ok(rows)
    }

    /// The last change of `key` made by anyone but run `run` (a person, or
    /// another run): its value as JSON text (`None`: removed) and when.
    pub fn memory_external(
        &self,
        key: &str,
        run: &str,
    ) -> Result<Option<(Option<String>, i64)>, JournalError> {
        Ok(self.conn.query_opt(
            "SELECT value, at FROM memory_log
                  WHERE key = ?1 AND (run_id IS NULL OR run_id != ?2) ORDER BY id DESC LIMIT 1",
            params![key, run],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// The keys whose current value run `run` wrote.
    pub fn memory_written_by(&self, run: &str) -> Result<Vec<String>, JournalError> {
        let rows = self.conn.query_map(
            "SELECT key FROM memory WHERE run_id = ?1 ORDER BY key",
            params![run],
            |r| r.get(0),
        )?;
        Ok(rows)
    }

    /// The run that last wrote `key`, if a run did.
    pub fn memory_writer(&self, key: &str) -> Result<Option<String>, JournalError> {
        Ok(self
            .conn
            .query_opt(
                "SELECT run_id FROM memory WHERE key = ?1",
                params![key],
                |r| r.get::<Option<String>>(0),
            )?
            .flatten())
    }
}
