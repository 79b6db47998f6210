//! Folding one commit's events into fewer (schema version 6): a step's start and its end.
//!
//! The executor queues the events of a commit one change at a time
//! (`node_added`, `ready`, `running`, …). Before they are appended, two
//! patterns are folded, so a common step costs two events rather than five:
//!
//! - **start**: `node_added` K, then K's `ready`, then K's `running` become
//!   one `node_status` with `added` (the `node_added` data) and the later
//!   events' fields; `added` with `ready` alone when the step waits for a slot;
//! - **end**: `output` K#a, then K's `node_status` for attempt a become that
//!   `node_status` with `log` (the `output` data).
//!
//! Only events of one node with nothing of that node and no run-level event
//! between them fold, and only when no field would be overwritten by a
//! different value; anything else is left as it was queued. A folded event
//! means exactly what the events it replaces meant (docs/journal.md), and
//! [`apply`](super::apply) applies it in one statement.

use super::NewEvent;
use serde_json::Value;
use std::collections::HashMap;

/// Where a node's foldable start is in the output, and how far it got.
#[derive(Clone, Copy)]
enum Start {
    /// A lone `node_added`.
    Added(usize),
    /// Folded through `ready`.
    Ready(usize),
}

/// Folds `events` (one commit's, in order) into fewer that mean the same.
/// Events are moved, never copied: this runs on every commit of a run.
pub fn fold(events: Vec<NewEvent>) -> Vec<NewEvent> {
    let mut out: Vec<Option<NewEvent>> = Vec::with_capacity(events.len());
    let mut starts: HashMap<String, Start> = HashMap::new();
    // The last `output` of a node, by its index in `out`.
    let mut outputs: HashMap<String, usize> = HashMap::new();
    for event in events {
        let Some(node) = event.node.as_deref() else {
            // A run-level event: nothing folds across it.
            starts.clear();
            outputs.clear();
            out.push(Some(event));
            continue;
        };
        let start = starts.remove(node);
        let output = outputs.remove(node);
        let unfolded = match (event.kind, status_of(&event)) {
            ("node_added", _) => {
                starts.insert(node.to_string(), Start::Added(out.len()));
                Some(event)
            }
            ("node_status", Some("ready")) if event.attempt.is_none() => match start {
                Some(Start::Added(i)) => {
                    let node = node.to_string();
                    let left = fold_start(&mut out[i], event);
                    if left.is_none() {
                        starts.insert(node, Start::Ready(i));
                    }
                    left
                }
                _ => Some(event),
            },
            ("node_status", Some("running")) => match start {
                Some(Start::Ready(i)) => fold_into(&mut out[i], event),
                _ => Some(event),
            },
            ("output", _) => {
                outputs.insert(node.to_string(), out.len());
                Some(event)
            }
            ("node_status", Some(_)) => {
                let mut event = event;
                if let Some(i) = output
                    && out[i].as_ref().is_some_and(|o| o.attempt == event.attempt)
                    && event.data.get("log").is_none()
                    && let Value::Object(m) = &mut event.data
                    && let Some(log) = out[i].take()
                {
                    m.insert("log".into(), log.data);
                }
                Some(event)
            }
            _ => Some(event),
        };
        if unfolded.is_some() {
            out.push(unfolded);
        }
    }
    out.into_iter().flatten().collect()
}

fn status_of(event: &NewEvent) -> Option<&str> {
    event.data.get("status").and_then(Value::as_str)
}

/// Turns the `node_added` in `slot` into a `node_status` `ready` with
/// `added`; gives `ready` back when it cannot.
fn fold_start(slot: &mut Option<NewEvent>, ready: NewEvent) -> Option<NewEvent> {
    let Some(added) = slot.as_mut() else {
        return Some(ready);
    };
    let Value::Object(mut fields) = ready.data else {
        return Some(ready);
    };
    if fields.contains_key("added") {
        return Some(NewEvent {
            data: Value::Object(fields),
            ..ready
        });
    }
    fields.insert("added".into(), std::mem::take(&mut added.data));
    added.kind = "node_status";
    added.data = Value::Object(fields);
    None
}

/// Folds `later` (a status of the same node) into the event in `slot`, when
/// no field of the two disagrees; gives `later` back when it cannot.
fn fold_into(slot: &mut Option<NewEvent>, later: NewEvent) -> Option<NewEvent> {
    let Some(first) = slot.as_mut() else {
        return Some(later);
    };
    let (Value::Object(into), Value::Object(from)) = (&mut first.data, &later.data) else {
        return Some(later);
    };
    let clash = |k: &String, v: &Value| k != "status" && into.get(k).is_some_and(|old| old != v);
    if from.iter().any(|(k, v)| clash(k, v)) || first.attempt.is_some() {
        return Some(later);
    }
    first.attempt = later.attempt;
    if let Value::Object(from) = later.data {
        into.extend(from);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &'static str, node: Option<&str>, attempt: Option<u32>, data: Value) -> NewEvent {
        NewEvent {
            run_id: "r".into(),
            kind,
            node: node.map(str::to_string),
            attempt,
            data,
        }
    }

    fn shape(events: &[NewEvent]) -> Vec<(String, Option<String>, Option<u32>, Value)> {
        events
            .iter()
            .map(|e| {
                (
                    e.kind.to_string(),
                    e.node.clone(),
                    e.attempt,
                    e.data.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn a_step_start_and_end_are_one_event_each() {
        let start = fold(vec![
            ev(
                "node_added",
                Some("a"),
                None,
                json!({"name": "a", "kind": "run"}),
            ),
            ev(
                "node_added",
                Some("b"),
                None,
                json!({"name": "b", "kind": "run"}),
            ),
            ev(
                "node_status",
                Some("a"),
                None,
                json!({"status": "ready", "definition_hash": "h"}),
            ),
            ev(
                "node_status",
                Some("a"),
                Some(1),
                json!({"status": "running", "input_hash": "i"}),
            ),
        ]);
        assert_eq!(
            shape(&start),
            vec![
                (
                    "node_status".into(),
                    Some("a".into()),
                    Some(1),
                    json!({"status": "running", "definition_hash": "h", "input_hash": "i",
                           "added": {"name": "a", "kind": "run"}})
                ),
                (
                    "node_added".into(),
                    Some("b".into()),
                    None,
                    json!({"name": "b", "kind": "run"})
                ),
            ]
        );
        let end = fold(vec![
            ev(
                "output",
                Some("a"),
                Some(1),
                json!({"stdout": "x", "exit_code": 0}),
            ),
            ev(
                "node_status",
                Some("a"),
                Some(1),
                json!({"status": "succeeded", "result": 1}),
            ),
        ]);
        assert_eq!(
            shape(&end),
            vec![(
                "node_status".into(),
                Some("a".into()),
                Some(1),
                json!({"status": "succeeded", "result": 1, "log": {"stdout": "x", "exit_code": 0}})
            )]
        );
    }

    #[test]
    fn nothing_folds_across_a_run_event_another_attempt_or_a_clash() {
        let across_run = vec![
            ev("node_added", Some("a"), None, json!({"name": "a"})),
            ev("run_status", None, None, json!({"status": "failed"})),
            ev("node_status", Some("a"), None, json!({"status": "ready"})),
        ];
        assert_eq!(shape(&fold(across_run.clone())), shape(&across_run));
        let other_attempt = vec![
            ev("output", Some("a"), Some(1), json!({"stdout": ""})),
            ev(
                "node_status",
                Some("a"),
                Some(2),
                json!({"status": "failed"}),
            ),
        ];
        assert_eq!(shape(&fold(other_attempt.clone())), shape(&other_attempt));
        let clash = vec![
            ev("node_added", Some("a"), None, json!({"name": "a"})),
            ev(
                "node_status",
                Some("a"),
                None,
                json!({"status": "ready", "data": 1}),
            ),
            ev(
                "node_status",
                Some("a"),
                Some(1),
                json!({"status": "running", "data": 2}),
            ),
        ];
        let folded = fold(clash);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[1].data, json!({"status": "running", "data": 2}));
        // A status between the start and `running` (skipped, say) ends the fold.
        let between = vec![
            ev("node_added", Some("a"), None, json!({"name": "a"})),
            ev("node_status", Some("a"), None, json!({"status": "ready"})),
            ev("note", Some("a"), Some(1), json!({"text": "t"})),
            ev(
                "node_status",
                Some("a"),
                Some(1),
                json!({"status": "running"}),
            ),
        ];
        assert_eq!(fold(between).len(), 3);
    }
}
