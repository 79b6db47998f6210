//! `/live`: server-sent events that say "the journal changed", so open pages refresh their live part.

use super::{Service, api_auth};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often the journal is looked at for a change.
const POLL: Duration = Duration::from_millis(700);

/// The stream: one event with the journal's newest event id now, and one each time it changes.
pub async fn stream(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    let events = futures_util::stream::unfold((svc, None::<i64>), |(svc, last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(POLL).await;
            }
            let look = svc.clone();
            let now = tokio::task::spawn_blocking(move || look.journal().last_event_rowid())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            if last != Some(now) {
                let event = Event::default().event("journal").data(now.to_string());
                return Some((Ok::<_, Infallible>(event), (svc, Some(now))));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
