//! Progress views of `flowc run`: a live terminal view, plain lines, or NDJSON events.

use crate::exec::Observer;
use crate::journal::NewEvent;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

/// What a view remembers of each node instance.
#[derive(Debug, Default)]
struct Seen {
    /// When it first ran.
    started: HashMap<String, Instant>,
    /// Its rendered `description`, from `node_added`.
    descriptions: HashMap<String, String>,
}

/// One readable line for a node status change, or `None` for bookkeeping states.
fn describe(event: &NewEvent, seen: &mut Seen) -> Option<String> {
    let key = event.node.as_deref().unwrap_or("");
    // Added by `node_added`, or by its first status (`added`, schema version 6).
    let added = match event.kind {
        "node_added" => Some(&event.data),
        _ => event.data.get("added"),
    };
    if let Some(d) = added.and_then(|a| a["description"].as_str()) {
        seen.descriptions.insert(key.to_string(), d.to_string());
    }
    let started = &mut seen.started;
    let data = &event.data;
    let attempt = event
        .attempt
        .map(|a| format!(" (attempt {a})"))
        .unwrap_or_default();
    let first = |k: &str| {
        data[k]
            .as_str()
            .and_then(|s| s.lines().next())
            .unwrap_or_default()
            .to_string()
    };
    match event.kind {
        "node_status" => {
            let status = data["status"].as_str().unwrap_or_default();
            let elapsed = || {
                started
                    .get(key)
                    .map(|t| {
                        format!(
                            " in {}",
                            crate::ir::format_ms(t.elapsed().as_millis() as u64)
                        )
                    })
                    .unwrap_or_default()
            };
            let reused = &data["reused"];
            Some(match status {
                // A result from the step cache: nothing ran.
                "running" if reused.is_object() => return None,
                "succeeded" if reused.is_object() => format!(
                    "✓ {key} reused (from run {}, attempt {})",
                    reused["run"].as_str().unwrap_or_default(),
                    reused["attempt"]
                ),
                "running" => {
                    started.entry(key.to_string()).or_insert_with(Instant::now);
                    match seen.descriptions.get(key) {
                        Some(d) => format!("▶ {key} running{attempt}: {d}"),
                        None => format!("▶ {key} running{attempt}"),
                    }
                }
                "succeeded" => format!("✓ {key} succeeded{}", elapsed()),
                "rejected" => format!("✗ {key} not accepted{attempt}: {}", first("feedback")),
                "failed" => format!("✗ {key} failed{attempt}: {}", first("error")),
                "retrying" => format!("↻ {key} retrying"),
                "waiting" => format!("⏸ {key} waiting for a person"),
                "skipped" => format!("– {key} skipped"),
                "cancelled" => format!("■ {key} cancelled"),
                "interrupted" => format!("■ {key} interrupted"),
                _ => return None,
            })
        }
        "approval_requested" => Some(format!("? {key}: {}", first("prompt"))),
        "approval_decided" => Some(format!(
            "! {key}: {} by {}",
            data["decision"].as_str().unwrap_or_default(),
            data["by"].as_str().unwrap_or_default()
        )),
        "note" => Some(format!("… {key}: {}", first("text"))),
        "memory_set" => Some(format!(
            "✎ {key} remembered `{}`",
            data["key"].as_str().unwrap_or_default()
        )),
        _ => None,
    }
}

fn explain_line(key: &str, reused: bool, why: &str) -> String {
    if reused {
        format!("= {key} reused: {why}")
    } else {
        format!("↺ {key} runs again: {why}")
    }
}

/// One line per state change on stderr (not a terminal, or inline questions).
#[derive(Debug, Default)]
pub struct Lines {
    seen: Seen,
    explain: bool,
    /// The lines of the current commit, written at once (one `write` per commit).
    buf: String,
}

impl Lines {
    /// A line view; `explain` prints resume decisions.
    pub fn new(explain: bool) -> Lines {
        Lines {
            seen: Seen::default(),
            explain,
            buf: String::new(),
        }
    }
}

impl Observer for Lines {
    fn event(&mut self, event: &NewEvent) {
        if let Some(line) = describe(event, &mut self.seen) {
            self.buf.push_str(&line);
            self.buf.push('\n');
        }
    }

    fn committed(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stderr().write_all(self.buf.as_bytes());
            self.buf.clear();
        }
    }

    fn explain(&mut self, key: &str, reused: bool, why: &str) {
        if self.explain {
            eprintln!("{}", explain_line(key, reused, why));
        }
    }
}

/// Every journaled event as one JSON object per line on stdout.
#[derive(Debug, Default)]
pub struct JsonLines {
    buf: String,
}

impl Observer for JsonLines {
    fn event(&mut self, event: &NewEvent) {
        let line = serde_json::json!({
            "kind": event.kind,
            "run_id": event.run_id,
            "node": event.node,
            "attempt": event.attempt,
            "data": event.data,
        });
        // Line-buffered stdout would write each line on its own; a commit's
        // lines go out together in `committed`.
        self.buf.push_str(&line.to_string());
        self.buf.push('\n');
    }

    fn committed(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stdout().lock().write_all(self.buf.as_bytes());
            self.buf.clear();
        }
    }

    fn explain(&mut self, key: &str, reused: bool, why: &str) {
        let line =
            serde_json::json!({ "kind": "explain", "node": key, "reused": reused, "why": why });
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// A live terminal view: finished steps scroll above a status line showing
/// what runs, the counts, elapsed time and the tail of the latest output.
pub struct Live {
    bar: indicatif::ProgressBar,
    seen: Seen,
    running: BTreeMap<String, u32>,
    done: usize,
    failed: usize,
    tail: String,
    explain: bool,
    /// Questions asked inline: the bar is hidden while any is open.
    asking: usize,
    interactive: bool,
}

impl Live {
    /// A live view on stderr; `interactive` hides it while a person is asked inline.
    pub fn new(explain: bool, interactive: bool) -> Live {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        Live {
            bar,
            seen: Seen::default(),
            running: BTreeMap::new(),
            done: 0,
            failed: 0,
            tail: String::new(),
            explain,
            asking: 0,
            interactive,
        }
    }

    fn redraw(&self) {
        let running: Vec<String> = self
            .running
            .iter()
            .take(4)
            .map(|(k, a)| {
                let mut s = k.clone();
                if *a > 1 {
                    s.push_str(&format!(" (attempt {a})"));
                }
                // With one or two running, there is room to say what they do.
                if self.running.len() <= 2
                    && let Some(d) = self.seen.descriptions.get(k)
                {
                    let short: String = d.chars().take(40).collect();
                    s.push_str(&format!(": {short}"));
                }
                s
            })
            .collect();
        let more = self.running.len().saturating_sub(4);
        let mut msg = format!(
            "{} done, {} failed · running: {}",
            self.done,
            self.failed,
            running.join(", ")
        );
        if more > 0 {
            msg.push_str(&format!(" +{more}"));
        }
        if !self.tail.is_empty() {
            msg.push_str(" · ");
            msg.push_str(&self.tail);
        }
        self.bar.set_message(msg);
    }
}

impl Observer for Live {
    fn event(&mut self, event: &NewEvent) {
        if self.interactive && event.kind == "approval_requested" {
            self.asking += 1;
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::hidden());
            // Hiding does not erase what was drawn: clear the status line so
            // a stale one does not sit above the question.
            let _ = std::io::stderr().write_all(b"\r\x1b[2K");
        }
        if self.interactive && event.kind == "approval_decided" {
            self.asking = self.asking.saturating_sub(1);
            if self.asking == 0 {
                self.bar
                    .set_draw_target(indicatif::ProgressDrawTarget::stderr());
            }
        }
        if event.kind == "node_status"
            && let Some(key) = &event.node
        {
            match event.data["status"].as_str().unwrap_or_default() {
                "running" => {
                    self.running.insert(key.clone(), event.attempt.unwrap_or(1));
                }
                "succeeded" | "skipped" => {
                    self.running.remove(key);
                    self.done += 1;
                }
                "failed" | "cancelled" | "interrupted" | "waiting" | "retrying" | "rejected" => {
                    self.running.remove(key);
                    if event.data["status"] == "failed" {
                        self.failed += 1;
                    }
                }
                _ => {}
            }
        }
        if let Some(line) = describe(event, &mut self.seen)
            && !line.starts_with('▶')
        {
            if self.asking > 0 {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
        }
        self.redraw();
    }

    fn tail(&mut self, _key: &str, line: &str) {
        self.tail = line.chars().take(80).collect();
        self.redraw();
    }

    fn explain(&mut self, key: &str, reused: bool, why: &str) {
        if self.explain {
            self.bar.println(explain_line(key, reused, why));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
