//! The service's notion of now: the system clock, or a file a test writes.
//!
//! `FLOWC_TEST_CLOCK=PATH` (a test aid, documented in docs/service.md) makes
//! the service read the time from PATH on every tick: an RFC 3339 instant
//! (`2026-03-29T00:30:00Z`) or Unix milliseconds. Tests move the file forward
//! to simulate a day, an outage, or a DST transition in seconds.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the service reads the time.
#[derive(Debug)]
pub struct Clock {
    file: Option<PathBuf>,
    last: AtomicI64,
}

impl Clock {
    /// The system clock, unless `FLOWC_TEST_CLOCK` names a file.
    pub fn from_env() -> Clock {
        Clock {
            file: std::env::var_os("FLOWC_TEST_CLOCK")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            last: AtomicI64::new(0),
        }
    }

    /// Whether the time comes from a test's file.
    pub fn is_fake(&self) -> bool {
        self.file.is_some()
    }

    /// Now, in Unix milliseconds. A fake clock never goes back, and keeps
    /// its last value while its file is unreadable (a test rewriting it).
    pub fn now_ms(&self) -> i64 {
        let Some(path) = &self.file else {
            return crate::journal::now_ms();
        };
        let read = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| parse_instant(text.trim()));
        match read {
            Some(ms) => self.last.fetch_max(ms, Ordering::SeqCst).max(ms),
            None => self.last.load(Ordering::SeqCst),
        }
    }
}

/// Reads `2026-03-29T00:30:00Z` (any RFC 3339 offset) or Unix milliseconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Unix milliseconds as RFC 3339 in UTC, to the second (`2026-03-29T01:00:00Z`).
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| ms.to_string())
}
