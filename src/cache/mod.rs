//! The step cache: results of cacheable steps, reused across runs by a content key.
//!
//! The store sits beside the journal (`.flowc/cache/` for the default
//! journal): an index in its own SQLite file (`index.sqlite`: entries, and the
//! metadata of hashed input files) and the declared output files as
//! content-addressed objects (`objects/ab/abcdef…`, named by their blake3
//! hash). It never touches the journal: a run records a reuse in its own
//! events, naming the run and attempt the result came from.

mod files;
mod index;
mod key;
mod objects;

pub use files::{FileHashes, expand};
pub use index::{Entry, OutputFile, Stats};
pub use key::{KeyParts, Reason, hash_text};

use rusqlite::Connection;
use std::path::{Path, PathBuf};

/// The default size cap of a store: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A cache store: its directory and its index.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    conn: Connection,
    /// Evict least recently used entries past this many bytes.
    pub max_bytes: u64,
}

/// The store's directory for a journal at `journal`.
pub fn dir_for(journal: &Path) -> PathBuf {
    crate::journal::state_dir(journal).join("cache")
}

/// The size cap from `FLOWC_CACHE_MAX` (`500MiB`, `2GiB`, bytes), else [`DEFAULT_MAX_BYTES`].
pub fn max_bytes_from_env() -> Result<u64, String> {
    match std::env::var("FLOWC_CACHE_MAX") {
        Ok(v) if !v.trim().is_empty() => parse_size(&v).ok_or_else(|| {
            format!("FLOWC_CACHE_MAX: `{v}` is not a size (write `500MiB`, `2GiB` or bytes)")
        }),
        _ => Ok(DEFAULT_MAX_BYTES),
    }
}

/// A size such as `512MiB`, `2GB` or `1000`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..at].parse().ok()?;
    let unit: u64 = match t[at..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

impl Store {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir.join("objects"))
            .map_err(|e| format!("cannot create the cache `{}`: {e}", dir.display()))?;
        let conn = index::open(&dir.join("index.sqlite"))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            conn,
            max_bytes: DEFAULT_MAX_BYTES,
        })
    }

    /// Opens the store in `dir` if it exists; `None` when there is none.
    pub fn open_existing(dir: &Path) -> Result<Option<Store>, String> {
        if !dir.join("index.sqlite").is_file() {
            return Ok(None);
        }
        Store::open(dir).map(Some)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
