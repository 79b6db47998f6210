//! The cache index (`index.sqlite`): one row per reusable result, and the metadata of hashed files.

use super::Store;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
  key TEXT PRIMARY KEY,       -- blake3 of the key parts
  step TEXT NOT NULL,         -- skill key and node instance key: what the dry run compares with
  run_id TEXT NOT NULL,       -- the run and attempt that produced the result
  node TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  result TEXT NOT NULL,       -- the step's result, JSON
  result_hash TEXT NOT NULL,  -- blake3 of `result`, checked on every read
  outputs TEXT NOT NULL,      -- JSON list of OutputFile
  parts TEXT NOT NULL,        -- JSON KeyParts, for the reasons of a miss
  size INTEGER NOT NULL,      -- bytes of result and outputs, for the size cap
  created_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_step ON entries (step, created_at);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used_at);
CREATE TABLE IF NOT EXISTS files (
  path TEXT PRIMARY KEY,      -- absolute path
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  hashed_at_ns INTEGER NOT NULL,
  hash TEXT NOT NULL
);
";

/// Opens the index at `path`, creating its tables.
pub fn open(path: &Path) -> Result<Connection, String> {
    let fail = |e: rusqlite::Error| format!("cache index `{}`: {e}", path.display());
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(fail)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    conn.execute_batch(SCHEMA).map_err(fail)?;
    Ok(conn)
}

/// A declared output file of a cached result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the step's directory.
    pub path: String,
    /// blake3 of its content, the object's name.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its Unix permission bits.
    pub mode: u32,
}

/// A reusable result.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The cache key.
    pub key: String,
    /// What it is a result of (skill and node instance).
    pub step: String,
    /// The run that produced it.
    pub run_id: String,
    /// The node instance in that run.
    pub node: String,
    /// The attempt in that run.
    pub attempt: u32,
    /// The step's result.
    pub result: serde_json::Value,
    /// The declared output files.
    pub outputs: Vec<OutputFile>,
    /// The key parts, JSON.
    pub parts: serde_json::Value,
    /// Bytes it accounts for.
    pub size: u64,
    /// When it was stored and last used (Unix ms).
    pub created_at: i64,
    /// When it was last reused.
    pub used_at: i64,
}

/// Totals of a store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Entries in the index.
    pub entries: u64,
    /// Bytes they account for.
    pub bytes: u64,
    /// Object files on disk and their bytes.
    pub objects: u64,
    /// Bytes of the object files.
    pub object_bytes: u64,
    /// The size cap.
    pub max_bytes: u64,
}

const COLUMNS: &str = "key, step, run_id, node, attempt, result, result_hash, outputs, parts, size, created_at, used_at";

/// Reads one row; a row whose result does not match its hash is reported, not returned.
fn row(r: &rusqlite::Row) -> rusqlite::Result<Result<Entry, String>> {
    let key: String = r.get(0)?;
    let result: String = r.get(5)?;
    let result_hash: String = r.get(6)?;
    let outputs: String = r.get(7)?;
    let parts: String = r.get(8)?;
    if blake3::hash(result.as_bytes()).to_hex().as_str() != result_hash {
        return Ok(Err(format!(
            "cache entry `{key}`: its result does not match its hash"
        )));
    }
    let parsed = serde_json::from_str(&result).and_then(|res| {
        Ok((
            res,
            serde_json::from_str(&outputs)?,
            serde_json::from_str(&parts)?,
        ))
    });
    let Ok((result, outputs, parts)) = parsed else {
        return Ok(Err(format!("cache entry `{key}`: unreadable JSON")));
    };
    Ok(Ok(Entry {
        key,
        step: r.get(1)?,
        run_id: r.get(2)?,
        node: r.get(3)?,
        attempt: r.get(4)?,
        result,
        outputs,
        parts,
        size: r.get::<_, i64>(9)?.max(0) as u64,
        created_at: r.get(10)?,
        used_at: r.get(11)?,
    }))
}

fn sql_err(e: rusqlite::Error) -> String {
    format!("cache index: {e}")
}

impl Store {
    /// The entry stored under `key`; `Err` when it exists but is damaged.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, String> {
        let sql = format!("SELECT {COLUMNS} FROM entries WHERE key = ?1");
        let found = self
            .conn
            .query_row(&sql, params![key], row)
            .optional()
            .map_err(sql_err)?;
        found.transpose()
    }

    /// The newest entry for `step`, whatever its key (to say why a key missed).
    pub fn latest_for(&self, step: &str) -> Result<Option<Entry>, String> {
        let sql = format!(
            "SELECT {COLUMNS} FROM entries WHERE step = ?1 ORDER BY created_at DESC, rowid DESC LIMIT 1"
        );
        let found = self
            .conn
            .query_row(&sql, params![step], row)
            .optional()
            .map_err(sql_err)?;
        Ok(found.and_then(Result::ok))
    }

    /// Stores `entry` (replacing one with the same key).
    pub fn put(&self, e: &Entry) -> Result<(), String> {
        let result = e.result.to_string();
        let hash = blake3::hash(result.as_bytes()).to_hex().to_string();
        let outputs = serde_json::to_string(&e.outputs).map_err(|e| e.to_string())?;
        self.conn
            .execute(
                &format!("INSERT OR REPLACE INTO entries ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                params![
                    e.key,
                    e.step,
                    e.run_id,
                    e.node,
                    e.attempt,
                    result,
                    hash,
                    outputs,
                    e.parts.to_string(),
                    e.size as i64,
                    e.created_at,
                    e.used_at
                ],
            )
            .map_err(sql_err)?;
        Ok(())
    }

    /// Marks `key` used now (for LRU eviction).
    pub fn touch(&self, key: &str, now: i64) -> Result<(), String> {
        self.conn
            .execute(
                "UPDATE entries SET used_at = ?2 WHERE key = ?1",
                params![key, now],
            )
            .map_err(sql_err)?;
        Ok(())
    }

    /// Removes the entries whose key or step starts with `prefix`, or whose
    /// node instance is `prefix` (`lint`, `for_f[3]/lint`); how many went.
    pub fn remove(&self, prefix: &str) -> Result<usize, String> {
        let like = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.conn
            .execute(
                "DELETE FROM entries WHERE key LIKE ?1 ESCAPE '\\' OR step LIKE ?1 ESCAPE '\\' OR node = ?2",
                params![like, prefix],
            )
            .map_err(sql_err)
    }

    /// Every entry, newest use first (damaged ones left out).
    pub fn list(&self) -> Result<Vec<Entry>, String> {
        let sql = format!("SELECT {COLUMNS} FROM entries ORDER BY used_at DESC, rowid DESC");
        let mut stmt = self.conn.prepare(&sql).map_err(sql_err)?;
        let rows = stmt.query_map([], row).map_err(sql_err)?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(e) = r.map_err(sql_err)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Entries and bytes in the index.
    pub fn totals(&self) -> Result<(u64, u64), String> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?.max(0) as u64,
                        r.get::<_, i64>(1)?.max(0) as u64,
                    ))
                },
            )
            .map_err(sql_err)
    }

    /// Removes entries last used before `before` (Unix ms); how many went.
    pub fn remove_unused_since(&self, before: i64) -> Result<usize, String> {
        self.conn
            .execute("DELETE FROM entries WHERE used_at < ?1", params![before])
            .map_err(sql_err)
    }

    /// Removes least recently used entries until the index accounts for at most `cap` bytes.
    pub fn evict_to(&self, cap: u64) -> Result<usize, String> {
        let (_, mut bytes) = self.totals()?;
        let mut gone = 0;
        while bytes > cap {
            let oldest: Option<(String, i64)> = self
                .conn
                .query_row(
                    "SELECT key, size FROM entries ORDER BY used_at ASC, rowid ASC LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_err)?;
            let Some((key, size)) = oldest else { break };
            self.conn
                .execute("DELETE FROM entries WHERE key = ?1", params![key])
                .map_err(sql_err)?;
            bytes = bytes.saturating_sub(size.max(0) as u64);
            gone += 1;
        }
        Ok(gone)
    }

    /// The stored metadata of a hashed file: (size, mtime_ns, inode, hashed_at_ns, hash).
    pub(super) fn file_meta(&self, path: &str) -> Option<(u64, i64, u64, i64, String)> {
        self.conn
            .prepare_cached(
                "SELECT size, mtime_ns, inode, hashed_at_ns, hash FROM files WHERE path = ?1",
            )
            .and_then(|mut s| {
                s.query_row(params![path], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get(1)?,
                        r.get::<_, i64>(2)? as u64,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })
            })
            .ok()
    }

    /// Records the metadata of files just hashed, in one transaction.
    pub(super) fn save_file_meta(
        &self,
        rows: &[(String, u64, i64, u64, i64, String)],
    ) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(sql_err)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR REPLACE INTO files (path, size, mtime_ns, inode, hashed_at_ns, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(sql_err)?;
            for (path, size, mtime, inode, at, hash) in rows {
                stmt.execute(params![path, *size as i64, mtime, *inode as i64, at, hash])
                    .map_err(sql_err)?;
            }
        }
        tx.commit().map_err(sql_err)
    }
}
