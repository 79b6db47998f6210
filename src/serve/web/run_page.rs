//! `/runs/ID`: the run's graph, its steps, its approvals, each attempt's output tail, its model calls and its timeline.

use super::html::{Viewer, badge, csrf_field, esc, page, seg, took, when};
use super::{Service, blocking, html, problem, signed_in};
use crate::journal::{Event, Journal, NodeRow, RunRow};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::fmt::Write;
use std::sync::Arc;

/// How many of the latest events the timeline shows (the API pages through all of them).
const TIMELINE: usize = 300;
/// How many characters of an event's data the timeline shows.
const DATA_CHARS: usize = 240;

/// `?part=live&note=…`.
#[derive(Debug, Deserialize, Default)]
pub struct RunQuery {
    part: Option<String>,
    note: Option<String>,
}

/// `GET /runs/ID`.
pub async fn show(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(run): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    let here = format!("/runs/{}", seg(&run));
    let auth = match signed_in(&svc, &headers, &here) {
        Ok(a) => a,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| {
        let journal = svc.journal();
        let viewer = auth.viewer();
        let id = match journal.resolve_run(&run) {
            Ok(id) => id,
            Err(e) => {
                return problem(
                    StatusCode::NOT_FOUND,
                    Some(&auth),
                    "No such run",
                    &e.to_string(),
                );
            }
        };
        let live = match live_part(&journal, &id) {
            Ok(l) => l,
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, Some(&auth), "Run", &e),
        };
        if q.part.as_deref() == Some("live") {
            return html::ok(live);
        }
        let cards = super::pages::cards(&journal, Some(&id), &viewer).unwrap_or_default();
        let row = journal.run(&id).ok();
        let mut body = format!("<h1>Run {}</h1>", esc(&id));
        if let Some(note) = &q.note {
            let _ = write!(body, "<p class=\"note\">{}</p>", esc(note));
        }
        if let Some(r) = &row
            && !matches!(r.status.as_str(), "succeeded" | "failed" | "cancelled")
        {
            body.push_str(&cancel_form(&id, &viewer));
        }
        if !cards.is_empty() {
            let _ = write!(body, "<h2>Waiting for a person</h2>{cards}");
        }
        let _ = write!(
            body,
            "<div id=\"live\" data-live=\"/runs/{}?part=live\">{live}</div>",
            seg(&id)
        );
        html::ok(page(&format!("Run {id}"), Some(&viewer), &body))
    })
    .await
}

fn cancel_form(id: &str, viewer: &Viewer) -> String {
    format!(
        "<form method=\"post\" action=\"/runs/{}/cancel\" class=\"cancel\">{}<button class=\"b-cancel\">Cancel run</button></form>",
        seg(id),
        csrf_field(viewer)
    )
}

/// Everything that changes while the run goes on.
fn live_part(journal: &Journal, id: &str) -> Result<String, String> {
    let err = |e: crate::journal::JournalError| e.to_string();
    let run = journal.run(id).map_err(err)?;
    let nodes = journal.nodes(id).map_err(err)?;
    let events = journal.events(id).map_err(err)?;
    let mut out = summary(&run, &events);
    let skill = compiled(&run);
    let _ = write!(
        out,
        "<h2>Graph</h2><div class=\"graph-box\">{}</div>",
        super::svg::draw(skill.as_deref(), &nodes)
    );
    out.push_str(&steps(&nodes));
    out.push_str(&outputs(&events));
    out.push_str(&llm_calls(journal, id, &events)?);
    out.push_str(&tool_calls(&events));
    out.push_str(&decisions(&events));
    out.push_str(&notices(journal, id)?);
    out.push_str(&timeline(&events));
    Ok(out)
}

fn summary(run: &RunRow, events: &[Event]) -> String {
    let initiator = events
        .iter()
        .find(|e| e.kind == "run_started")
        .and_then(|e| e.data["initiator"].as_str().map(str::to_string))
        .unwrap_or_default();
    let end = run.finished_at.unwrap_or(run.updated_at);
    let mut out = format!(
        "<dl class=\"summary\"><dt>Status</dt><dd id=\"run-status\" data-status=\"{st}\">{}</dd><dt>Skill</dt><dd>{}</dd>\
         <dt>File</dt><dd><code>{}</code></dd><dt>Started</dt><dd>{} UTC by {}</dd><dt>Took</dt><dd>{}</dd>",
        badge(&run.status),
        esc(&run.skill),
        esc(&run.file),
        when(run.started_at),
        esc(if initiator.is_empty() {
            "unknown"
        } else {
            &initiator
        }),
        took(end - run.started_at),
        st = esc(&run.status),
    );
    if let Some(o) = run.output.as_ref().filter(|o| !o.is_null()) {
        let _ = write!(
            out,
            "<dt>Output</dt><dd><pre>{}</pre></dd>",
            esc(&pretty(o))
        );
    }
    if let Some(e) = &run.error {
        let _ = write!(
            out,
            "<dt>Error</dt><dd><pre class=\"error\">{}</pre></dd>",
            esc(e)
        );
    }
    out.push_str("</dl>");
    out
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// The run's skill, compiled from its file as it is now (`None` when it no longer compiles).
fn compiled(run: &RunRow) -> Option<Arc<crate::ir::Skill>> {
    let out = crate::check::check_files(
        &crate::check::FsLoader,
        &[std::path::PathBuf::from(&run.file)],
    );
    let program = out.files.into_iter().next()?.program?;
    program.entry_skill(Some(&run.skill)).cloned()
}

fn steps(nodes: &[NodeRow]) -> String {
    let mut out = String::from(
        "<h2>Steps</h2><table class=\"steps\"><thead><tr><th>Step</th><th>Kind</th><th>Status</th><th>Attempts</th><th>Took</th><th>Last error</th></tr></thead><tbody>",
    );
    for n in nodes {
        let took_ms = match (n.started_at, n.finished_at) {
            (Some(a), Some(b)) => took(b - a),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr data-node=\"{key}\" data-status=\"{st}\"><td>{key}</td><td>{}</td><td>{}</td><td>{}</td><td>{took_ms}</td><td>{}</td></tr>",
            esc(&n.kind),
            badge(&n.status),
            n.attempt,
            esc(n.error.as_deref().unwrap_or("")),
            key = esc(&n.key),
            st = esc(&n.status),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Each attempt's output tail (what the journal kept of stdout and stderr).
fn outputs(events: &[Event]) -> String {
    let mut out = String::from("<h2>Output</h2>");
    let mut any = false;
    for (e, log) in events.iter().filter_map(|e| Some((e, e.output()?))) {
        any = true;
        let _ = write!(
            out,
            "<details class=\"output\"><summary>{} · attempt {} · exit {}</summary>",
            esc(e.node.as_deref().unwrap_or("-")),
            e.attempt.unwrap_or(0),
            esc(&log["exit_code"].to_string())
        );
        for key in ["stdout", "stderr"] {
            let text = log[key].as_str().unwrap_or_default();
            if !text.is_empty() {
                let _ = write!(
                    out,
                    "<h3>{key}</h3><pre class=\"{key}\">{}</pre>",
                    esc(text)
                );
            }
        }
        out.push_str("</details>");
    }
    if !any {
        out.push_str("<p class=\"empty\">No step has written output yet.</p>");
    }
    out
}

fn llm_calls(journal: &Journal, id: &str, events: &[Event]) -> Result<String, String> {
    let calls: Vec<&Event> = events.iter().filter(|e| e.kind == "llm_call").collect();
    if calls.is_empty() {
        return Ok(String::new());
    }
    let usage = journal.llm_usage(id).map_err(|e| e.to_string())?;
    let mut out = String::from("<h2>Model calls</h2><p>");
    for u in &usage {
        let _ = write!(
            out,
            "{}: {} calls, {} tokens in, {} out, ${:.4}. ",
            esc(&u.model),
            u.calls,
            u.tokens_in,
            u.tokens_out,
            u.cost_usd
        );
    }
    out.push_str("</p>");
    for e in calls {
        let d = &e.data;
        let _ = write!(
            out,
            "<details class=\"llm\"><summary>{} · attempt {} · {} · {} in / {} out</summary>",
            esc(e.node.as_deref().unwrap_or("-")),
            e.attempt.unwrap_or(0),
            esc(d["model"].as_str().unwrap_or_default()),
            esc(&d["tokens_in"].to_string()),
            esc(&d["tokens_out"].to_string()),
        );
        if let Some(reply) = d["reply"].as_str() {
            let _ = write!(
                out,
                "<h3>reply</h3><pre class=\"reply\">{}</pre>",
                esc(reply)
            );
        }
        if let Some(error) = d["error"].as_str() {
            let _ = write!(
                out,
                "<h3>error</h3><pre class=\"error\">{}</pre>",
                esc(error)
            );
        }
        out.push_str("</details>");
    }
    Ok(out)
}

/// An agent's tool calls: what was called with what, and what came back.
fn tool_calls(events: &[Event]) -> String {
    let started: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "tool_call_started")
        .collect();
    if started.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Tool calls</h2>");
    for s in started {
        let d = &s.data;
        let finished = events.iter().find(|e| {
            e.kind == "tool_call_finished"
                && e.node == s.node
                && e.attempt == s.attempt
                && e.data["call_id"] == d["call_id"]
        });
        let mark = match finished {
            None => "running or interrupted",
            Some(f) if f.data["is_error"] == true => "error",
            Some(_) => "ok",
        };
        let _ = write!(
            out,
            "<details class=\"tool\"><summary>{} · attempt {} · call {} · <code>{}</code> ({}) · {}</summary><h3>arguments</h3><pre>{}</pre>",
            esc(s.node.as_deref().unwrap_or("-")),
            s.attempt.unwrap_or(0),
            esc(&d["number"].to_string()),
            esc(d["tool"].as_str().unwrap_or_default()),
            esc(d["effect"].as_str().unwrap_or_default()),
            mark,
            esc(&serde_json::to_string_pretty(&d["args"]).unwrap_or_default()),
        );
        if let Some(f) = finished {
            let text = f.data["result"].as_str().unwrap_or_default();
            // The page shows the head of a long result; the journal has it whole.
            let head: String = text.chars().take(4000).collect();
            let more = if head.len() < text.len() { "\n…" } else { "" };
            let _ = write!(
                out,
                "<h3>result</h3><pre class=\"reply\">{}{more}</pre>",
                esc(&head)
            );
        }
        out.push_str("</details>");
    }
    out
}

/// Decisions, votes and refusals: who decided what, by which path.
fn decisions(events: &[Event]) -> String {
    let kinds = [
        "approval_requested",
        "approval_vote",
        "approval_decided",
        "approval_refused",
    ];
    let rows: Vec<&Event> = events
        .iter()
        .filter(|e| kinds.contains(&e.kind.as_str()))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Approvals</h2><table class=\"decisions\"><thead><tr><th>When (UTC)</th><th>Item</th><th>What</th><th>Who</th><th>Via</th><th>Comment or reason</th></tr></thead><tbody>",
    );
    for e in rows {
        let d = &e.data;
        let what = match e.kind.as_str() {
            "approval_requested" => "asked".to_string(),
            "approval_vote" => "approved (a vote)".to_string(),
            "approval_refused" => format!("refused: {}", d["code"].as_str().unwrap_or_default()),
            _ => d["decision"].as_str().unwrap_or_default().to_string(),
        };
        let why = d["comment"]
            .as_str()
            .or(d["reason"].as_str())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"ev-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.kind),
            when(e.at),
            esc(e.node.as_deref().unwrap_or("")),
            esc(&what),
            esc(d["by"].as_str().unwrap_or_default()),
            esc(d["via"].as_str().unwrap_or_default()),
            esc(why),
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn notices(journal: &Journal, id: &str) -> Result<String, String> {
    let rows = journal.notices_of(id).map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from(
        "<h2>Notifications</h2><table class=\"notices\"><thead><tr><th>About</th><th>To</th><th>Status</th><th>Attempts</th><th>Last error</th></tr></thead><tbody>",
    );
    for n in rows {
        let _ = write!(
            out,
            "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.event),
            esc(n.node.as_deref().unwrap_or("")),
            esc(&target_name(&n.target)),
            badge(&n.status),
            n.attempts,
            esc(n.last_error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table>");
    Ok(out)
}

/// A target as shown: its kind and where its URL comes from (never a secret URL).
pub fn target_name(t: &serde_json::Value) -> String {
    let kind = t["kind"].as_str().unwrap_or("?");
    let url = &t["url"];
    match (
        url["url"].as_str(),
        url["env"].as_str(),
        url["secret"].as_str(),
    ) {
        (Some(u), _, _) => format!("{kind}({u})"),
        (_, Some(n), _) => format!("{kind}(env(\"{n}\"))"),
        (_, _, Some(n)) => format!("{kind}(secret(\"{n}\"))"),
        _ => kind.to_string(),
    }
}

fn timeline(events: &[Event]) -> String {
    let skip = events.len().saturating_sub(TIMELINE);
    let mut out = format!(
        "<h2>Timeline</h2><p class=\"meta\">{} events{}</p><table class=\"timeline\"><thead><tr><th>#</th><th>When (UTC)</th><th>Event</th><th>Step</th><th>Data</th></tr></thead><tbody>",
        events.len(),
        if skip > 0 {
            format!("; the first {skip} are in the API (/api/runs/ID/events)")
        } else {
            String::new()
        }
    );
    for e in &events[skip..] {
        let mut data = e.data.to_string();
        if data.len() > DATA_CHARS {
            let cut = (0..=DATA_CHARS)
                .rev()
                .find(|&i| data.is_char_boundary(i))
                .unwrap_or(0);
            data.truncate(cut);
            data.push('…');
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.seq,
            when(e.at),
            esc(&e.kind),
            esc(e.node.as_deref().unwrap_or("")),
            esc(&data)
        );
    }
    out.push_str("</tbody></table>");
    out
}
