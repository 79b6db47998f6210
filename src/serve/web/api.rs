//! `/api/…`: the page's data as JSON (runs, a run, its events paged, approvals) and its actions (submit, cancel, decide), under the same authorization.

use super::auth::Auth;
use super::decide::{Posted, cancel, decide_by_link, decision};
use super::{Service, api_auth, blocking, json, who};
use crate::approvals::{DecideError, Decided, Verb, decide};
use crate::journal::Submission;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// The largest page of events one call returns.
const EVENTS_MAX: usize = 1000;
/// The largest JSON body an action takes.
const BODY_MAX: usize = 1 << 20;

/// The API's routes.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/api/runs", get(runs).post(submit))
        .route("/api/runs/{run}", get(run))
        .route("/api/runs/{run}/events", get(events))
        .route("/api/runs/{run}/cancel", post(cancel_run))
        .route("/api/approvals", get(approvals))
        .route("/api/approvals/{run}/{node}", post(decide_item))
}

fn err(status: StatusCode, why: impl std::fmt::Display) -> Response {
    json(status, json!({ "error": why.to_string() }))
}

/// `?status=&skill=&limit=`.
#[derive(Debug, Deserialize, Default)]
pub struct RunsQuery {
    status: Option<String>,
    skill: Option<String>,
    limit: Option<usize>,
}

async fn runs(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    blocking(&svc, move |svc| match svc.journal().runs() {
        Ok(rows) => {
            let shown: Vec<_> = rows
                .into_iter()
                .filter(|r| q.status.as_deref().is_none_or(|s| r.status == s))
                .filter(|r| q.skill.as_deref().is_none_or(|s| r.skill == s))
                .take(q.limit.unwrap_or(200))
                .collect();
            json(StatusCode::OK, json!(shown))
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    })
    .await
}

async fn run(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(run): Path<String>,
) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    blocking(&svc, move |svc| {
        let journal = svc.journal();
        let id = match journal.resolve_run(&run) {
            Ok(id) => id,
            Err(e) => return err(StatusCode::NOT_FOUND, e),
        };
        let view = (|| -> Result<Json, crate::journal::JournalError> {
            Ok(json!({
                "run": journal.run(&id)?,
                "nodes": journal.nodes(&id)?,
                "approvals": journal.approvals(Some(&id))?,
                "llm": journal.llm_usage(&id)?.iter().map(|u| json!({
                    "model": u.model, "calls": u.calls, "tokens_in": u.tokens_in,
                    "tokens_out": u.tokens_out, "cost_usd": u.cost_usd,
                })).collect::<Vec<_>>(),
                "notifications": journal.notices_of(&id)?.iter().map(|n| json!({
                    "event": n.event, "node": n.node, "target": super::run_page::target_name(&n.target),
                    "status": n.status, "attempts": n.attempts, "last_error": n.last_error,
                })).collect::<Vec<_>>(),
            }))
        })();
        match view {
            Ok(v) => json(StatusCode::OK, v),
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    })
    .await
}

/// `?after=SEQ&limit=N`.
#[derive(Debug, Deserialize, Default)]
pub struct Page {
    after: Option<i64>,
    limit: Option<usize>,
}

async fn events(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(run): Path<String>,
    Query(p): Query<Page>,
) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    blocking(&svc, move |svc| {
        let journal = svc.journal();
        let id = match journal.resolve_run(&run) {
            Ok(id) => id,
            Err(e) => return err(StatusCode::NOT_FOUND, e),
        };
        let after = p.after.unwrap_or(0);
        let limit = p.limit.unwrap_or(200).clamp(1, EVENTS_MAX);
        match journal.events(&id) {
            Ok(all) => {
                let page: Vec<_> = all.into_iter().filter(|e| e.seq > after).take(limit).collect();
                let next = (page.len() == limit).then(|| page.last().map(|e| e.seq)).flatten();
                let page: Vec<Json> = page
                    .iter()
                    .map(|e| json!({ "seq": e.seq, "at": e.at, "kind": e.kind, "node": e.node, "attempt": e.attempt, "data": e.data }))
                    .collect();
                json(StatusCode::OK, json!({ "events": page, "next_after": next }))
            }
            Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    })
    .await
}

async fn approvals(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    blocking(&svc, move |svc| {
        let journal = svc.journal();
        let items = match journal.approvals(None) {
            Ok(i) => i,
            Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let mut out = Vec::new();
        for item in items.into_iter().filter(|a| a.status == "pending") {
            let asked =
                crate::approvals::decide::asked_with(&journal, &item.run_id, &item.node).ok();
            let mut v = json!(item);
            if let Some(a) = asked {
                v["approvers"] = json!(a.spec.approvers);
                v["required"] = json!(a.spec.required);
                v["votes"] = json!(a.votes.iter().map(|v| v["by"].clone()).collect::<Vec<_>>());
                v["form_schema"] = a.data.get("form_schema").cloned().unwrap_or(Json::Null);
                v["timeout_ms"] = a.data.get("timeout_ms").cloned().unwrap_or(Json::Null);
            }
            out.push(v);
        }
        json(StatusCode::OK, json!(out))
    })
    .await
}

/// A POST with a session needs the page's CSRF token in `X-CSRF-Token` (a bearer token needs none).
fn post_auth(svc: &Service, headers: &HeaderMap) -> Result<Auth, Response> {
    let auth = api_auth(svc, headers)?;
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    super::auth::check_post(headers, Some(&auth), csrf)
        .map_err(|why| err(StatusCode::FORBIDDEN, why))?;
    Ok(auth)
}

fn body_json(body: &Bytes) -> Result<Json, Response> {
    if body.len() > BODY_MAX {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB",
        ));
    }
    match serde_json::from_slice::<Json>(body) {
        Ok(v @ Json::Object(_)) => Ok(v),
        Ok(_) => Err(err(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        )),
        Err(e) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// `POST /api/runs` `{"file": …, "skill": …, "inputs": {…}}`: queues a run whose initiator is the caller.
async fn submit(State(svc): State<Arc<Service>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = match post_auth(&svc, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let req = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| match queue_run(svc, &req, &auth) {
        Ok(run) => json(StatusCode::ACCEPTED, json!({ "run_id": run })),
        Err((status, why)) => err(status, why),
    })
    .await
}

/// Compiles and types a submission (only a file under the service's directory), then queues it.
fn queue_run(svc: &Service, req: &Json, auth: &Auth) -> Result<String, (StatusCode, String)> {
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let file = req["file"].as_str().ok_or_else(|| {
        bad("`file` (a .flow file under the service's directory) is required".into())
    })?;
    let path = std::fs::canonicalize(svc.root.join(file))
        .map_err(|e| bad(format!("cannot read `{file}`: {e}")))?;
    if !path.starts_with(&svc.root) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("`{file}` is outside the service's directory"),
        ));
    }
    let out = crate::check::check_files(&crate::check::FsLoader, std::slice::from_ref(&path));
    let program = out
        .files
        .into_iter()
        .next()
        .and_then(|f| f.program)
        .ok_or_else(|| {
            bad(format!(
                "`{file}` does not compile; `flowc check {file}` says why"
            ))
        })?;
    let skill = program
        .entry_skill(req["skill"].as_str())
        .cloned()
        .ok_or_else(|| {
            bad(format!(
                "`{file}` has no such skill (name one with `skill`)"
            ))
        })?;
    let given: Vec<String> = req["inputs"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v {
            Json::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    let inputs = crate::cli::typed_inputs(&skill, &given).map_err(bad)?;
    let sub = Submission {
        skill: skill.name.clone(),
        file: path.display().to_string(),
        inputs,
        by: auth.person.name.clone(),
        reason: "submitted on the web".into(),
        wait_previous: false,
    };
    let run = svc
        .journal()
        .enqueue(&sub, None)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the run was not queued".to_string(),
            )
        })?;
    svc.log.event(
        "run.submitted",
        &[("run", json!(run)), ("by", json!(auth.person.name))],
    );
    svc.wake.notify_one();
    Ok(run)
}

async fn cancel_run(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(run): Path<String>,
) -> Response {
    let auth = match post_auth(&svc, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| match cancel(svc, &run, &auth) {
        Ok(note) => json(StatusCode::OK, json!({ "ok": true, "note": note })),
        Err((status, why)) => err(status, why),
    })
    .await
}

/// `POST /api/approvals/RUN/NODE` `{"decision", "comment", "form", "input_hash", "link_token"}`.
async fn decide_item(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path((run, node)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let req = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    // A link is its own credential; anything else needs a signed-in caller.
    if let Some(token) = req["link_token"].as_str().map(str::to_string) {
        return blocking(&svc, move |svc| {
            let pairs = pairs_of(&req);
            let presenter = who(svc, &headers).map(|a| a.person.name);
            match decide_by_link(svc, &token, &pairs, Some((&run, &node)), presenter) {
                Ok((run, note)) => json(
                    StatusCode::OK,
                    json!({ "ok": true, "run_id": run, "note": note }),
                ),
                Err((status, why)) => err(status, why),
            }
        })
        .await;
    }
    let auth = match post_auth(&svc, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| {
        let verb = match req["decision"].as_str() {
            Some("approve") => Verb::Approve,
            Some("reject") => Verb::Reject,
            Some("retry") => Verb::Retry,
            Some("skip") => Verb::Skip,
            _ => return err(StatusCode::BAD_REQUEST, "`decision` is approve, reject, retry or skip"),
        };
        let p = Posted {
            verb,
            comment: req["comment"].as_str().map(str::to_string),
            form: req.get("form").filter(|f| !f.is_null()).cloned(),
            input_hash: req["input_hash"].as_str().map(str::to_string),
        };
        let mut d = decision(p, auth.person.clone(), "api");
        d.output = req.get("output").cloned();
        let mut journal = svc.journal();
        let id = match journal.resolve_run(&run) {
            Ok(id) => id,
            Err(e) => return err(StatusCode::NOT_FOUND, e),
        };
        match decide(&mut journal, &id, &node, d) {
            Ok(outcome) => {
                drop(journal);
                svc.wake.notify_one();
                let body = match outcome {
                    Decided::Vote { have, required } => {
                        json!({ "ok": true, "recorded": false, "votes": have, "required": required })
                    }
                    Decided::Recorded => json!({ "ok": true, "recorded": true }),
                    Decided::AskedAgain => json!({ "ok": true, "recorded": true, "asked_again": true }),
                };
                json(StatusCode::OK, body)
            }
            Err(DecideError::Usage(why)) => err(StatusCode::BAD_REQUEST, why),
            Err(DecideError::Refused(r)) => json(StatusCode::FORBIDDEN, json!({ "error": format!("refused: {r}"), "code": r.code() })),
            Err(DecideError::Journal(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    })
    .await
}

/// A JSON decision as the form fields a page would post (for the link path).
fn pairs_of(req: &Json) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for key in ["decision", "comment", "input_hash"] {
        if let Some(v) = req[key].as_str() {
            pairs.push((key.to_string(), v.to_string()));
        }
    }
    for (k, v) in req["form"].as_object().into_iter().flatten() {
        let text = match v {
            Json::String(s) => s.clone(),
            Json::Bool(true) => "on".into(),
            Json::Bool(false) | Json::Null => String::new(),
            other => other.to_string(),
        };
        pairs.push((format!("form.{k}"), text));
    }
    pairs
}
