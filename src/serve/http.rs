//! The service's listener: webhooks, `/healthz`, `/readyz`, `/metrics`, and the page and API of `web`.

use super::Service;
use super::fire::{Outcome, fire};
use super::load::Loaded;
use super::webhook::{Refused, standard_key, verify_github, verify_standard};
use crate::ir::{TriggerSource, Verify};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The scheduler counts as stuck when it has not ticked for this long.
const TICK_STALE_MS: i64 = 10_000;

/// The router.
pub fn router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(super::web::router())
        .fallback(hook)
        .with_state(svc)
}

fn reply(status: StatusCode, body: Json) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// With a people file, `/readyz` and `/metrics` need a person too (only
/// webhooks and `/healthz` are open); without one nobody could sign in, and
/// they stay open as before.
fn closed(svc: &Service, headers: &HeaderMap) -> Option<Response> {
    if svc.people().people.is_empty() || super::web::who(svc, headers).is_some() {
        return None;
    }
    Some(reply(
        StatusCode::UNAUTHORIZED,
        json!({ "error": "send `Authorization: Bearer TOKEN` (a token from `flowc people add`)" }),
    ))
}

async fn readyz(
    axum::extract::State(svc): axum::extract::State<Arc<Service>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = closed(&svc, &headers) {
        return r;
    }
    let check = svc.clone();
    let writable = tokio::task::spawn_blocking(move || check.journal().writable())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let since_tick = crate::journal::now_ms() - svc.last_tick.load(Ordering::SeqCst);
    let mut problems = Vec::new();
    if let Err(e) = writable {
        problems.push(format!("the journal does not take writes: {e}"));
    }
    if since_tick > TICK_STALE_MS {
        problems.push(format!(
            "the scheduler last ticked {}s ago",
            since_tick / 1000
        ));
    }
    if svc.draining.load(Ordering::SeqCst) {
        problems.push("the service is shutting down".into());
    }
    if problems.is_empty() {
        reply(StatusCode::OK, json!({ "ready": true }))
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "ready": false, "problems": problems }),
        )
    }
}

async fn metrics(
    axum::extract::State(svc): axum::extract::State<Arc<Service>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = closed(&svc, &headers) {
        return r;
    }
    match tokio::task::spawn_blocking(move || super::metrics::render(&svc)).await {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e })),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}

/// Any other request: a POST to a webhook trigger's path, or 404.
async fn hook(
    axum::extract::State(svc): axum::extract::State<Arc<Service>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(loaded) = svc
        .triggers
        .iter()
        .find(|l| matches!(&l.trigger.source, TriggerSource::Webhook { path, .. } if path == uri.path()))
        .cloned()
    else {
        return reply(StatusCode::NOT_FOUND, json!({ "error": format!("no route `{}`", uri.path()) }));
    };
    if method != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "error": "webhooks take POST" }),
        );
    }
    let TriggerSource::Webhook { max_body, .. } = &loaded.trigger.source else {
        return reply(StatusCode::NOT_FOUND, json!({ "error": "not a webhook" }));
    };
    let limit = usize::try_from(*max_body).unwrap_or(usize::MAX);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({ "error": format!("the body is larger than the trigger's limit of {max_body} bytes") }),
        )
    };
    if declared.is_some_and(|n| n > *max_body) {
        return too_large();
    }
    let Ok(bytes) = to_bytes(body, limit).await else {
        return too_large();
    };
    let received = svc.clock.now_ms();
    let task = svc.clone();
    match tokio::task::spawn_blocking(move || deliver(&task, &loaded, &headers, &bytes, received))
        .await
    {
        Ok(r) => r,
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": e.to_string() }),
        ),
    }
}

/// Verifies, builds `event`, fires, and answers.
fn deliver(svc: &Service, loaded: &Loaded, headers: &HeaderMap, body: &[u8], now: i64) -> Response {
    let TriggerSource::Webhook {
        verify,
        dedup,
        tolerance_ms,
        ..
    } = &loaded.trigger.source
    else {
        return reply(StatusCode::NOT_FOUND, json!({ "error": "not a webhook" }));
    };
    let name = &loaded.trigger.name;
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let secret = svc
        .secrets
        .get(name)
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default();
    let verified: Result<Option<String>, Refused> = match verify {
        Verify::Github => verify_github(&secret, &get, body).map(|()| None),
        Verify::Standard => {
            let key = standard_key(&String::from_utf8_lossy(&secret));
            verify_standard(&key, &get, body, now, *tolerance_ms).map(Some)
        }
        Verify::None => Ok(None),
    };
    let standard_id = match verified {
        Ok(id) => id,
        Err(Refused(why)) => {
            svc.log.event(
                "webhook.refused",
                &[("trigger", json!(name)), ("reason", json!(why))],
            );
            return reply(StatusCode::UNAUTHORIZED, json!({ "error": why }));
        }
    };
    let key = match dedup
        .as_deref()
        .and_then(|h| get(&h.to_ascii_lowercase()))
        .or(standard_id)
    {
        Some(id) => format!("delivery:{id}"),
        // Without a delivery id every call is its own fire.
        None => format!("call:{}", crate::journal::new_run_id()),
    };
    let body_json: Json = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => Json::Null,
        Err(_) => Json::String(String::from_utf8_lossy(body).into_owned()),
    };
    let header_map: serde_json::Map<String, Json> = headers
        .iter()
        // Credentials a proxy may add are not kept in the journal.
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            )
        })
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_string(),
                Json::String(v.to_str().ok()?.to_string()),
            ))
        })
        .collect();
    let event = json!({
        "headers": header_map,
        "body": body_json,
        "received_at": super::clock::rfc3339(now),
    });
    let outcome = match fire(svc, loaded, &key, event) {
        Ok(o) => o,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": e })),
    };
    svc.report_fire(loaded, &key, &outcome);
    match outcome {
        Outcome::Queued(run) => reply(StatusCode::ACCEPTED, json!({ "run_id": run })),
        Outcome::Duplicate(run) => {
            reply(StatusCode::OK, json!({ "run_id": run, "duplicate": true }))
        }
        Outcome::Skipped(why) => reply(StatusCode::OK, json!({ "skipped": why })),
        Outcome::Rejected(why) => reply(StatusCode::UNPROCESSABLE_ENTITY, json!({ "error": why })),
    }
}
