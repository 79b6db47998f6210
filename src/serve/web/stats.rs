//! `/stats` and `/api/stats`, `/api/failures`: what keeps failing, success over time, spend per model, prompt versions.

use super::charts::{Series, bars, lines};
use super::html::{esc, page, when};
use super::{Service, api_auth, blocking, html, json, problem, signed_in};
use crate::journal::{Journal, JournalError};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// How far back the page looks by default.
const DEFAULT_SINCE: &str = "30d";
/// Failure groups shown.
const TOP_FAILURES: usize = 10;

/// `?since=30d&skill=S`.
#[derive(Debug, Deserialize, Default)]
pub struct StatsQuery {
    since: Option<String>,
    skill: Option<String>,
}

impl StatsQuery {
    fn since_ms(&self) -> Result<i64, String> {
        let text = self
            .since
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SINCE);
        crate::analytics::since_ms(text).map_err(|why| format!("`since`: {why}"))
    }

    fn skill(&self) -> Option<&str> {
        self.skill.as_deref().filter(|s| !s.is_empty())
    }
}

/// Everything the page shows, as JSON; the failure groups only `with_groups`
/// (`/api/stats` leaves them to `/api/failures`).
fn figures(
    journal: &Journal,
    since: i64,
    skill: Option<&str>,
    with_groups: bool,
) -> Result<Json, JournalError> {
    let failures = journal.failures(since, skill)?;
    let stats = crate::analytics::stats(
        &journal.run_rows(since, skill)?,
        &journal.step_rows(since, skill)?,
        &journal.step_llm(since, skill)?,
        &failures,
    );
    let days: Vec<_> = journal
        .day_runs(since)?
        .into_iter()
        .filter(|d| skill.is_none_or(|s| d.skill == s))
        .collect();
    let mut out = json!({
        "since": since,
        "skills": stats,
        "prompts": crate::analytics::prompts(&journal.prompt_calls(since, skill)?),
        "runs_per_day": days,
        "cost_per_day": journal.day_costs(since)?,
    });
    if with_groups {
        out["failures"] = json!(crate::analytics::group(&failures));
    }
    Ok(out)
}

/// `GET /api/stats`.
pub async fn api_stats(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<StatsQuery>,
) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    blocking(&svc, move |svc| {
        let since = match q.since_ms() {
            Ok(s) => s,
            Err(why) => return json(StatusCode::BAD_REQUEST, json!({ "error": why })),
        };
        match figures(&svc.journal(), since, q.skill(), false) {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": e.to_string() }),
            ),
        }
    })
    .await
}

/// `GET /api/failures`: the groups of `flowc failures --json`.
pub async fn api_failures(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<StatsQuery>,
) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    blocking(&svc, move |svc| {
        let since = match q.since_ms() {
            Ok(s) => s,
            Err(why) => return json(StatusCode::BAD_REQUEST, json!({ "error": why })),
        };
        match svc.journal().failures(since, q.skill()) {
            Ok(rows) => json(StatusCode::OK, json!(crate::analytics::group(&rows))),
            Err(e) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": e.to_string() }),
            ),
        }
    })
    .await
}

/// `GET /stats`.
pub async fn show(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<StatsQuery>,
) -> Response {
    let auth = match signed_in(&svc, &headers, "/stats") {
        Ok(a) => a,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| {
        let viewer = auth.viewer();
        let since = match q.since_ms() {
            Ok(s) => s,
            Err(why) => return problem(StatusCode::BAD_REQUEST, Some(&auth), "Stats", &why),
        };
        let f = match figures(&svc.journal(), since, q.skill(), true) {
            Ok(f) => f,
            Err(e) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&auth),
                    "Stats",
                    &e.to_string(),
                );
            }
        };
        let body = format!(
            "<h1>Stats</h1>{}{}{}{}{}",
            form(&q),
            success_chart(&f),
            cost_chart(&f),
            failures_table(&f),
            prompts_table(&f)
        );
        html::ok(page("Stats", Some(&viewer), &body))
    })
    .await
}

fn form(q: &StatsQuery) -> String {
    format!(
        "<form method=\"get\" action=\"/stats\" class=\"filters\"><label>Since <input type=\"text\" name=\"since\" value=\"{}\" size=\"6\"></label> \
         <label>Skill <input type=\"text\" name=\"skill\" value=\"{}\"></label> <button>Show</button></form>",
        esc(q.since.as_deref().unwrap_or(DEFAULT_SINCE)),
        esc(q.skill.as_deref().unwrap_or(""))
    )
}

fn success_chart(f: &Json) -> String {
    let mut by: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for d in f["runs_per_day"].as_array().into_iter().flatten() {
        let (ok, bad) = (
            d["succeeded"].as_f64().unwrap_or(0.0),
            d["failed"].as_f64().unwrap_or(0.0),
        );
        if ok + bad > 0.0 {
            let day = d["day"].as_i64().unwrap_or(0);
            by.entry(d["skill"].as_str().unwrap_or("").to_string())
                .or_default()
                .push((day, ok / (ok + bad)));
        }
    }
    let series: Vec<Series> = by
        .into_iter()
        .map(|(name, points)| Series { name, points })
        .collect();
    lines(
        "Success rate of ended runs per day, by skill",
        &series,
        Some(1.0),
        &|v| format!("{:.0}%", v * 100.0),
    )
}

fn cost_chart(f: &Json) -> String {
    let mut by: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for d in f["cost_per_day"].as_array().into_iter().flatten() {
        let day = d["day"].as_i64().unwrap_or(0);
        by.entry(d["model"].as_str().unwrap_or("").to_string())
            .or_default()
            .push((day, d["cost_usd"].as_f64().unwrap_or(0.0)));
    }
    let series: Vec<Series> = by
        .into_iter()
        .map(|(name, points)| Series { name, points })
        .collect();
    bars("Model spend per day, by model (USD)", &series, &|v| {
        format!("${v:.2}")
    })
}

fn failures_table(f: &Json) -> String {
    let groups = f["failures"].as_array().cloned().unwrap_or_default();
    if groups.is_empty() {
        return "<h2>What keeps failing</h2><p class=\"empty\">No failures in this time.</p>"
            .into();
    }
    let mut out = String::from(
        "<h2>What keeps failing</h2><table class=\"failures\"><thead><tr><th>Count</th><th>Step</th><th>Class</th><th>Last seen (UTC)</th><th>Signature</th></tr></thead><tbody>",
    );
    for g in groups.iter().take(TOP_FAILURES) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            g["count"],
            esc(g["skill"].as_str().unwrap_or("")),
            esc(g["step"].as_str().unwrap_or("")),
            esc(g["class"].as_str().unwrap_or("")),
            when(g["last"].as_i64().unwrap_or(0)),
            esc(g["signature"].as_str().unwrap_or(""))
        );
    }
    out.push_str("</tbody></table>");
    out
}

fn prompts_table(f: &Json) -> String {
    let rows = f["prompts"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Prompt versions</h2><table class=\"prompts\"><thead><tr><th>Step</th><th>Prompt</th><th>Model</th><th>Calls</th><th>Attempts</th><th>Success</th><th>Cost</th><th>In use (UTC)</th></tr></thead><tbody>",
    );
    for r in &rows {
        let rate = r["success_rate"]
            .as_f64()
            .map_or_else(|| "-".into(), |x| format!("{:.0}%", x * 100.0));
        let _ = write!(
            out,
            "<tr><td>{}/{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{rate}</td><td>${:.4}</td><td>{} – {}</td></tr>",
            esc(r["skill"].as_str().unwrap_or("")),
            esc(r["step"].as_str().unwrap_or("")),
            esc(r["version"].as_str().unwrap_or("")),
            esc(r["model"].as_str().unwrap_or("")),
            r["calls"],
            r["attempts"],
            r["cost_usd"].as_f64().unwrap_or(0.0),
            when(r["first_at"].as_i64().unwrap_or(0)),
            when(r["last_at"].as_i64().unwrap_or(0)),
        );
    }
    out.push_str("</tbody></table>");
    out
}
