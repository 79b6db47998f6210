//! Journal events: what is appended, and what is read back.

use serde_json::Value;

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The run it belongs to.
    pub run_id: String,
    /// Its kind (`run_started`, `node_status`, …; see docs/journal.md).
    pub kind: &'static str,
    /// The node instance key, for node events.
    pub node: Option<String>,
    /// The attempt number, for attempt events.
    pub attempt: Option<u32>,
    /// Kind-specific data.
    pub data: Value,
}

impl NewEvent {
    /// A run-level event.
    pub fn run(run_id: &str, kind: &'static str, data: Value) -> NewEvent {
        NewEvent {
            run_id: run_id.to_string(),
            kind,
            node: None,
            attempt: None,
            data,
        }
    }

    /// A node-level event.
    pub fn node(
        run_id: &str,
        kind: &'static str,
        node: &str,
        attempt: Option<u32>,
        data: Value,
    ) -> NewEvent {
        NewEvent {
            run_id: run_id.to_string(),
            kind,
            node: Some(node.to_string()),
            attempt,
            data,
        }
    }
}

/// An event read back from the journal.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its run.
    pub run_id: String,
    /// Its position in the run, from 1.
    pub seq: i64,
    /// When it was appended, in Unix milliseconds.
    pub at: i64,
    /// Its kind.
    pub kind: String,
    /// Its node instance key.
    pub node: Option<String>,
    /// Its attempt number.
    pub attempt: Option<u32>,
    /// Its data.
    pub data: Value,
}

impl Event {
    /// The output of the attempt this event ends: an `output` event's data,
    /// or the `log` folded into a status (schema version 6).
    pub fn output(&self) -> Option<&Value> {
        match self.kind.as_str() {
            "output" => Some(&self.data),
            "node_status" => self.data.get("log"),
            _ => None,
        }
    }
}
