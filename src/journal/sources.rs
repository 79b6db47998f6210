//! The sources of runs: every file a run compiled, stored once by content hash.

use super::db::params;
use super::{Journal, JournalError};
use serde_json::{Value as Json, json};

impl Journal {
    /// Stores `files` (path, text) and returns the `[{path, hash}]` list a
    /// `run_started` event carries.
    pub fn store_sources(&self, files: &[(String, String)]) -> Result<Json, JournalError> {
        let mut out = Vec::new();
        for (path, text) in files {
            let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
            self.conn.execute(
                "INSERT INTO sources (hash, text) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![hash, text],
            )?;
            out.push(json!({ "path": path, "hash": hash }));
        }
        Ok(Json::Array(out))
    }

    /// The files run `run` compiled when it started (path, text); empty for
    /// a run journaled before sources were kept.
    pub fn sources_of(&self, run: &str) -> Result<Vec<(String, String)>, JournalError> {
        let Some(started) = self.events_of(run, Some("run_started"))?.into_iter().next() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in started.data["sources"].as_array().into_iter().flatten() {
            let (Some(path), Some(hash)) = (s["path"].as_str(), s["hash"].as_str()) else {
                continue;
            };
            let text: Option<String> = self
                .conn
                .query_row(
                    "SELECT text FROM sources WHERE hash = ?1",
                    params![hash],
                    |r| r.get(0),
                )
                .ok();
            // A text that does not hash to its name is not the run's source.
            if let Some(t) = text.filter(|t| blake3::hash(t.as_bytes()).to_hex().as_str() == hash) {
                out.push((path.to_string(), t));
            }
        }
        Ok(out)
    }
}
