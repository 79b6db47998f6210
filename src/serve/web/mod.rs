//! The web page and the JSON API served by `flowc serve`: runs, a run's graph and timeline, the approval queue, one-time links.

mod api;
pub mod auth;
mod charts;
mod decide;
pub mod html;
mod live;
mod pages;
mod run_page;
mod stats;
mod svg;

use super::Service;
use auth::Auth;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// A notification target as people read it (never a secret URL).
pub fn run_page_target(t: &serde_json::Value) -> String {
    run_page::target_name(t)
}

/// The page's routes and the API's; merged into the service's router.
pub fn router() -> Router<Arc<Service>> {
    Router::new()
        .route("/", get(pages::runs))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/approvals", get(pages::approvals))
        .route("/approvals/{run}/{node}", post(decide::from_page))
        .route("/runs/{run}", get(run_page::show))
        .route("/runs/{run}/cancel", post(decide::cancel_from_page))
        .route("/a/{token}", get(decide::link_page).post(decide::from_link))
        .route("/live", get(live::stream))
        .route("/stats", get(stats::show))
        .route("/api/stats", get(stats::api_stats))
        .route("/api/failures", get(stats::api_failures))
        .route("/assets/page.css", get(css))
        .route("/assets/page.js", get(js))
        .merge(api::router())
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/page.css"))
}

async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("assets/page.js"),
    )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Headers every page gets: no framing by other sites, no sniffing, scripts only from here.
fn page_headers() -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
        ),
    ]
}

/// An HTML response (redacted once more as a whole).
pub fn html(status: StatusCode, body: String) -> Response {
    (status, page_headers(), crate::secrets::redact(body)).into_response()
}

/// A JSON response with every string redacted.
pub fn json(status: StatusCode, mut body: serde_json::Value) -> Response {
    crate::secrets::redact_json(&mut body);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// A redirect after a POST.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// A page that says what went wrong.
pub fn problem(status: StatusCode, viewer: Option<&Auth>, title: &str, why: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"problem\">{}</p><p><a href=\"/\">Runs</a> · <a href=\"/approvals\">Approvals</a></p>",
        html::esc(title),
        html::esc(why)
    );
    let viewer = viewer.map(Auth::viewer);
    html(status, html::page(title, viewer.as_ref(), &body))
}

/// Who is asking, from the request's credentials.
pub fn who(svc: &Service, headers: &HeaderMap) -> Option<Auth> {
    auth::authenticate(
        &svc.people(),
        &svc.sessions,
        headers,
        crate::journal::now_ms(),
    )
}

/// A page for signed-in people only: the sign-in page otherwise.
pub fn signed_in(svc: &Service, headers: &HeaderMap, here: &str) -> Result<Auth, Response> {
    who(svc, headers).ok_or_else(|| see_other(&format!("/login?next={}", html::seg(here))))
}

/// An API call for signed-in people only: 401 otherwise.
pub fn api_auth(svc: &Service, headers: &HeaderMap) -> Result<Auth, Response> {
    who(svc, headers).ok_or_else(|| {
        json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({ "error": "sign in: send `Authorization: Bearer TOKEN` (a token from `flowc people add`)" }),
        )
    })
}

/// Runs `work` on a blocking thread (the journal is SQLite); a panic there is a 500.
pub async fn blocking<F>(svc: &Arc<Service>, work: F) -> Response
where
    F: FnOnce(&Service) -> Response + Send + 'static,
{
    let svc = svc.clone();
    match tokio::task::spawn_blocking(move || work(&svc)).await {
        Ok(r) => r,
        Err(e) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": e.to_string() }),
        ),
    }
}
