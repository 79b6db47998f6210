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

/// The journal's newest event id, from the one poller every stream shares
/// (started by the first page that asks): the journal is read once per
/// interval however many pages are open.
fn watch(svc: &Arc<Service>) -> tokio::sync::watch::Receiver<i64> {
    svc.live
        .get_or_init(|| {
            let first = svc.journal().last_event_rowid().unwrap_or(0);
            let (tx, rx) = tokio::sync::watch::channel(first);
            let svc = svc.clone();
            tokio::spawn(async move {
                loop {
                    let look = svc.clone();
                    let now =
                        tokio::task::spawn_blocking(move || look.journal().last_event_rowid())
                            .await
                            .ok()
                            .and_then(Result::ok)
                            .unwrap_or(0);
                    tx.send_if_modified(|v| std::mem::replace(v, now) != now);
                    tokio::time::sleep(POLL).await;
                }
            });
            rx
        })
        .clone()
}

/// The stream: one event with the journal's newest event id now, and one each time it changes.
pub async fn stream(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    if let Err(r) = api_auth(&svc, &headers) {
        return r;
    }
    let rx = watch(&svc);
    let events = futures_util::stream::unfold((rx, None::<i64>), |(mut rx, last)| async move {
        if last.is_some() && rx.changed().await.is_err() {
            return None;
        }
        let now = *rx.borrow_and_update();
        let event = Event::default().event("journal").data(now.to_string());
        Some((Ok::<_, Infallible>(event), (rx, Some(now))))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
