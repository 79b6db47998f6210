//! The cap on a `script` step's value before it becomes a result.
//!
//! A result is journaled (in the attempt's `output` event), kept in memory for
//! every step that reads it, and hashed into their inputs. `run` output is
//! capped by keeping its tail, but a script's value is structured data: a cut
//! would be invalid JSON or a silently different value, so a value over the
//! cap fails the attempt instead.

use rhai::{Dynamic, ImmutableString};
use serde_json::Value as Json;

/// Largest `script` result, as compact JSON text: 1 MiB. Sixteen times a `run`
/// step's 64 KiB stream cap, room for thousands of records, while a run of many
/// such steps keeps its journal and memory in megabytes, not gigabytes.
pub const SCRIPT_RESULT_CAP: usize = 1 << 20;

/// Deepest nesting of lists and maps in a result: the journal's JSON reader
/// refuses documents nested past 128, and the rest of flowc recurses on values.
pub const SCRIPT_RESULT_DEPTH: usize = 64;

/// The script's value as JSON, or why it is refused (too large, too deep).
pub fn script_result(value: &Dynamic) -> Result<Json, String> {
    let mut floor = 0;
    if let Err(over) = size_floor(value, 0, &mut floor) {
        return Err(over.message(floor));
    }
    let json = super::eval::to_json(value);
    let mut counter = Counter(0);
    if serde_json::to_writer(&mut counter, &json).is_err() {
        return Err(Over::Size.message(counter.0));
    }
    Ok(json)
}

#[derive(Debug, Clone, Copy)]
enum Over {
    Size,
    Depth,
}

impl Over {
    fn message(self, size: usize) -> String {
        match self {
            Over::Size => format!(
                "the script's value is over the 1 MiB cap of a script result (at least {size} bytes as JSON); return a smaller value, such as a summary or the path of a file a `run` step writes"
            ),
            Over::Depth => format!(
                "the script's value is nested more than {SCRIPT_RESULT_DEPTH} levels deep; results are limited to {SCRIPT_RESULT_DEPTH} levels of lists and maps"
            ),
        }
    }
}

/// Adds to `size` a lower bound of `value`'s JSON length, stopping as soon as
/// it passes the cap or the depth limit, before any copy is made. The depth
/// check comes first, so the recursion is at most 65 frames deep.
fn size_floor(value: &Dynamic, depth: usize, size: &mut usize) -> Result<(), Over> {
    if depth > SCRIPT_RESULT_DEPTH {
        return Err(Over::Depth);
    }
    if let Some(s) = value.read_lock::<ImmutableString>() {
        *size += s.len() + 2;
    } else if let Some(items) = value.read_lock::<rhai::Array>() {
        *size += 1 + items.len().max(1);
        for item in items.iter() {
            size_floor(item, depth + 1, size)?;
        }
    } else if let Some(map) = value.read_lock::<rhai::Map>() {
        *size += 1 + map.len().max(1);
        for (key, item) in map.iter() {
            *size += key.len() + 3;
            size_floor(item, depth + 1, size)?;
        }
    } else {
        *size += 1;
    }
    if *size > SCRIPT_RESULT_CAP {
        return Err(Over::Size);
    }
    Ok(())
}

/// Counts bytes written, failing past the cap so a huge value is not serialized whole.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        if self.0 > SCRIPT_RESULT_CAP {
            return Err(std::io::Error::other("over the script result cap"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
