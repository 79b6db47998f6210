//! `flowc failures`: what keeps failing, grouped by (skill, step, failure
//! class, signature), where the signature is the error with its numbers,
//! paths, ids and hex stripped, so the same failure on another day groups.

use crate::journal::FailureRow;
use std::collections::BTreeMap;

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The process exited with a non-zero code.
    ExitCode,
    /// The step's timeout passed.
    Timeout,
    /// A resource limit stopped it (memory, CPU, processes, file size).
    ResourceLimit,
    /// The sandbox refused an operation.
    Denied,
    /// Killed by a signal.
    Signal,
    /// It ran, but an `accept` clause did not hold.
    NotAccepted,
    /// A model's reply did not parse or fit the output type.
    InvalidModelOutput,
    /// The model or its API failed.
    ModelError,
    /// A person rejected an approval.
    RejectedApproval,
    /// A policy rule or cap stopped the run.
    PolicyViolation,
    /// Anything else.
    Other,
}

impl Class {
    /// The class as written in tables.
    pub fn word(self) -> &'static str {
        match self {
            Class::ExitCode => "exit code",
            Class::Timeout => "timeout",
            Class::ResourceLimit => "resource limit",
            Class::Denied => "denied by the sandbox",
            Class::Signal => "signal",
            Class::NotAccepted => "not accepted",
            Class::InvalidModelOutput => "invalid model output",
            Class::ModelError => "model or API error",
            Class::RejectedApproval => "rejected approval",
            Class::PolicyViolation => "policy violation",
            Class::Other => "other",
        }
    }
}

/// The class of one journaled failure.
pub fn classify(row: &FailureRow) -> Class {
    match row.what {
        "approval" => return Class::RejectedApproval,
        "policy" => return Class::PolicyViolation,
        _ => {}
    }
    if let Some(out) = &row.output {
        match out["outcome"].as_str() {
            Some("timeout") => return Class::Timeout,
            Some("memory_limit" | "cpu_limit" | "process_limit" | "file_size_limit") => {
                return Class::ResourceLimit;
            }
            Some("denied") => return Class::Denied,
            Some("signal") => return Class::Signal,
            _ => {}
        }
        return match out["exit_code"].as_i64() {
            Some(0) => Class::NotAccepted,
            Some(_) => Class::ExitCode,
            None => Class::Other,
        };
    }
    let text = message(row, Class::Other).to_lowercase();
    if row.model_error {
        Class::ModelError
    } else if text.contains("timed out") {
        Class::Timeout
    } else if text.contains("json") || text.contains("does not fit") || text.contains("schema") {
        Class::InvalidModelOutput
    } else if row.data["error"].as_str() == Some("not accepted") {
        Class::NotAccepted
    } else {
        Class::Other
    }
}

/// The text that says what went wrong. A process that failed says it on
/// stderr (its last line); otherwise the feedback, the error, the message.
fn message(row: &FailureRow, class: Class) -> String {
    let d = &row.data;
    if matches!(
        class,
        Class::ExitCode | Class::Signal | Class::Denied | Class::ResourceLimit
    ) && let Some(line) = row
        .output
        .as_ref()
        .and_then(|o| o["stderr"].as_str())
        .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
    {
        return line.trim().to_string();
    }
    for key in ["feedback", "error", "message", "comment"] {
        if let Some(s) = d[key]
            .as_str()
            .filter(|s| !s.trim().is_empty() && *s != "not accepted")
        {
            return s.to_string();
        }
    }
    d["error"].as_str().unwrap_or_default().to_string()
}

/// The error's first line with what changes between occurrences taken out:
/// paths become `<path>`, hex of 6+ digits and ids `<id>`, numbers `<n>`.
pub fn signature(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for word in line.split_whitespace() {
        let core = word.trim_matches(|c: char| {
            matches!(c, ',' | ';' | ':' | '(' | ')' | '\'' | '"' | '`' | '.')
        });
        let replaced = if core.contains('/') && core.len() > 1 {
            Some("<path>")
        } else if core.len() >= 6
            && core.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
            && core.chars().any(|c| c.is_ascii_digit())
        {
            Some("<id>")
        } else {
            None
        };
        let w = match replaced {
            Some(r) => word.replace(core, r),
            None => numbers(word),
        };
        out.push(w);
    }
    out.join(" ")
}

/// Every run of digits (with a decimal point or unit suffix) as `<n>`.
fn numbers(word: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in word.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push_str("<n>");
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Failures that share a skill, step, class and signature.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Group {
    /// The skill.
    pub skill: String,
    /// The step.
    pub step: String,
    /// The class.
    pub class: Class,
    /// The normalised error.
    pub signature: String,
    /// How many times.
    pub count: usize,
    /// First and last seen (Unix ms).
    pub first: i64,
    /// Last seen (Unix ms).
    pub last: i64,
    /// The runs it happened in, oldest first.
    pub runs: Vec<String>,
    /// The latest full text (feedback or error), as journaled.
    pub latest: String,
}

/// Groups `rows`, most frequent first (then the most recent).
pub fn group(rows: &[FailureRow]) -> Vec<Group> {
    let mut groups: BTreeMap<(String, String, Class, String), Group> = BTreeMap::new();
    for row in rows {
        let class = classify(row);
        let text = message(row, class);
        let sig = signature(&text);
        let g = groups
            .entry((row.skill.clone(), row.step.clone(), class, sig.clone()))
            .or_insert_with(|| Group {
                skill: row.skill.clone(),
                step: row.step.clone(),
                class,
                signature: sig,
                count: 0,
                first: row.at,
                last: row.at,
                runs: Vec::new(),
                latest: String::new(),
            });
        g.count += 1;
        g.first = g.first.min(row.at);
        if row.at >= g.last {
            g.last = row.at;
            g.latest = text;
        }
        if !g.runs.contains(&row.run_id) {
            g.runs.push(row.run_id.clone());
        }
    }
    let mut out: Vec<Group> = groups.into_values().collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(b.last.cmp(&a.last)));
    out
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_group_what_changes_and_keep_different_errors_apart() {
        let a = signature("timeout after 31s in /tmp/abc123");
        let b = signature("timeout after 29s in /tmp/def456");
        assert_eq!(a, b);
        assert_eq!(a, "timeout after <n>s in <path>");
        assert_ne!(a, signature("permission denied in /tmp/abc123"));
        assert_eq!(
            signature("run 20261202-071630-2abe1a failed: exit code 3"),
            signature("run 20261201-000000-ffffff failed: exit code 4")
        );
        assert_eq!(
            signature("commit 9f3c2ab7e1 not found"),
            signature("commit 1234abcd99 not found")
        );
        assert_ne!(signature("disk full"), signature("disk quota exceeded"));
        // Only the first line counts: the rest is output that varies.
        assert_eq!(signature("\nboom\nline 2"), "boom");
    }
}
