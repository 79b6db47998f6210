//! The service's own log: one line per event on stderr, human or JSON.

use serde_json::{Map, Value as Json};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-12-02T06:00:00Z run.started run=… skill=…`
    Human,
    /// One JSON object per line: `{"at": …, "event": …, …}`.
    Json,
}

/// Writes the service's log lines.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    /// The line format.
    pub format: LogFormat,
}

impl Log {
    /// Logs `event` with `fields`; secrets are redacted.
    pub fn event(&self, event: &str, fields: &[(&str, Json)]) {
        let at = super::clock::rfc3339(crate::journal::now_ms());
        let line = match self.format {
            LogFormat::Json => {
                let mut map = Map::new();
                map.insert("at".into(), Json::String(at));
                map.insert("event".into(), Json::String(event.into()));
                for (k, v) in fields {
                    map.insert((*k).to_string(), v.clone());
                }
                Json::Object(map).to_string()
            }
            LogFormat::Human => {
                let mut line = format!("{at} {event}");
                for (k, v) in fields {
                    match v {
                        Json::String(s) if !s.contains([' ', '"']) && !s.is_empty() => {
                            line.push_str(&format!(" {k}={s}"));
                        }
                        other => line.push_str(&format!(" {k}={other}")),
                    }
                }
                line
            }
        };
        eprintln!("{}", crate::secrets::redact(line));
    }
}
