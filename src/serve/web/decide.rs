//! Deciding from the page, from a one-time link, and cancelling a run: every decision goes through `approvals::decide`.

use super::auth::Auth;
use super::html::{esc, page, seg};
use super::{Service, blocking, html, problem, see_other, who};
use crate::approvals::decide::asked_with;
use crate::approvals::form::{from_posted, ty_of};
use crate::approvals::{DecideError, Decided, Decision, Person, Verb, decide, links};
use crate::journal::Journal;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

/// What a posted decision form says.
pub struct Posted {
    /// The decision.
    pub verb: Verb,
    /// The comment or reason.
    pub comment: Option<String>,
    /// The form's answers, typed by the item's form (when it has one).
    pub form: Option<serde_json::Value>,
    /// The input hash the page showed.
    pub input_hash: Option<String>,
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads a decision form against the item it is for.
fn posted(
    journal: &Journal,
    run: &str,
    node: &str,
    pairs: &[(String, String)],
) -> Result<Posted, String> {
    let verb = match field(pairs, "decision") {
        Some("approve") => Verb::Approve,
        Some("reject") => Verb::Reject,
        Some("retry") => Verb::Retry,
        Some("skip") => Verb::Skip,
        other => return Err(format!("unknown decision `{}`", other.unwrap_or(""))),
    };
    let comment = field(pairs, "comment")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    if verb == Verb::Reject && comment.is_none() {
        return Err("a rejection needs a reason: write it in the comment".into());
    }
    let asked = asked_with(journal, run, node).map_err(|e| e.to_string())?;
    let form = match (verb, asked.data.get("form_schema")) {
        (Verb::Approve, Some(schema)) => Some(from_posted(&ty_of(schema), pairs)?),
        _ => None,
    };
    Ok(Posted {
        verb,
        comment,
        form,
        input_hash: field(pairs, "input_hash").map(str::to_string),
    })
}

/// The outcome as a sentence.
fn said(outcome: &Decided, verb: Verb) -> String {
    match outcome {
        Decided::Recorded => format!("Recorded: {}. The run goes on.", verb.word()),
        Decided::Vote { have, required } => {
            format!(
                "Recorded approval {have} of {required}; it waits for {} more.",
                required - have
            )
        }
        Decided::AskedAgain => "It will be asked again.".into(),
    }
}

/// A decision's failure as a status and a sentence.
fn failed(e: &DecideError) -> (StatusCode, String) {
    match e {
        DecideError::Usage(why) => (StatusCode::BAD_REQUEST, why.clone()),
        DecideError::Refused(r) => (StatusCode::FORBIDDEN, format!("Refused: {r}")),
        DecideError::Journal(j) => (StatusCode::INTERNAL_SERVER_ERROR, j.to_string()),
    }
}

/// `POST /approvals/RUN/NODE` from the page (a session and its CSRF token).
pub async fn from_page(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path((run, node)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some(auth) = who(&svc, &headers) else {
        return see_other("/login?next=%2Fapprovals");
    };
    if let Err(why) = super::auth::check_post(&headers, Some(&auth), field(&pairs, "csrf")) {
        return problem(StatusCode::FORBIDDEN, Some(&auth), "Not decided", &why);
    }
    blocking(&svc, move |svc| {
        let mut journal = svc.journal();
        let p = match posted(&journal, &run, &node, &pairs) {
            Ok(p) => p,
            Err(why) => return problem(StatusCode::BAD_REQUEST, Some(&auth), "Not decided", &why),
        };
        let verb = p.verb;
        let d = decision(p, auth.person.clone(), "web");
        match decide(&mut journal, &run, &node, d) {
            Ok(outcome) => {
                svc.log.event(
                    "approval.decided",
                    &[
                        ("run", serde_json::json!(run)),
                        ("node", serde_json::json!(node)),
                        ("by", serde_json::json!(auth.person.name)),
                        ("via", serde_json::json!("web")),
                    ],
                );
                drop(journal);
                svc.wake.notify_one();
                see_other(&format!(
                    "/runs/{}?note={}",
                    seg(&run),
                    seg(&said(&outcome, verb))
                ))
            }
            Err(e) => {
                let (status, why) = failed(&e);
                problem(status, Some(&auth), "Not decided", &why)
            }
        }
    })
    .await
}

/// A decision from what was posted.
pub fn decision(p: Posted, by: Person, via: &'static str) -> Decision {
    let mut d = Decision::new(p.verb, by, via);
    d.comment = p.comment;
    d.form = p.form;
    d.expected_hash = p.input_hash;
    d
}

/// `POST /runs/RUN/cancel` from the page.
pub async fn cancel_from_page(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(run): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let Some(auth) = who(&svc, &headers) else {
        return see_other("/login");
    };
    if let Err(why) = super::auth::check_post(&headers, Some(&auth), field(&pairs, "csrf")) {
        return problem(StatusCode::FORBIDDEN, Some(&auth), "Not cancelled", &why);
    }
    blocking(&svc, move |svc| match cancel(svc, &run, &auth) {
        Ok(note) => see_other(&format!("/runs/{}?note={}", seg(&run), seg(&note))),
        Err((status, why)) => problem(status, Some(&auth), "Not cancelled", &why),
    })
    .await
}

/// Cancels a run for a signed-in person; says what happened.
pub fn cancel(svc: &Service, run: &str, auth: &Auth) -> Result<String, (StatusCode, String)> {
    let mut journal = svc.journal();
    let id = journal
        .resolve_run(run)
        .map_err(|e| (StatusCode::NOT_FOUND, e.to_string()))?;
    let row = journal
        .run(&id)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if matches!(row.status.as_str(), "succeeded" | "cancelled") {
        return Err((
            StatusCode::CONFLICT,
            format!("run `{id}` has already ended ({})", row.status),
        ));
    }
    let done = journal
        .cancel(&id, &auth.person.name)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    svc.log.event(
        "run.cancel",
        &[
            ("run", serde_json::json!(id)),
            ("by", serde_json::json!(auth.person.name)),
        ],
    );
    Ok(if done {
        format!("Run cancelled by {}.", auth.person.name)
    } else {
        "Its process was asked to cancel it; running steps are being stopped.".into()
    })
}

/// `GET /a/TOKEN`: the question and the form; a GET never decides (link unfurlers open links too).
pub async fn link_page(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    blocking(&svc, move |svc| {
        let journal = svc.journal();
        let presenter = who(svc, &headers);
        let row = match links::open(&journal, &token) {
            Ok(Some(row)) => row,
            Ok(None) => return problem(StatusCode::NOT_FOUND, presenter.as_ref(), "No such link", "This link is not one this service made."),
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, None, "Link", &e.to_string()),
        };
        let items = journal.approvals(Some(&row.link.run)).unwrap_or_default();
        let Some(item) = items.iter().find(|a| a.node == row.link.node) else {
            return problem(StatusCode::NOT_FOUND, None, "No such item", "The item this link was for is gone.");
        };
        if item.status != "pending" || row.link.used_at.is_some() {
            let why = format!("`{}` is {} (by {}).", item.node, item.status, item.decided_by.as_deref().unwrap_or("nobody yet"));
            return problem(StatusCode::GONE, None, "Already decided", &why);
        }
        // The link is its own credential: its form carries no session token.
        let viewer = super::html::Viewer { name: row.link.approver.clone(), csrf: String::new() };
        let card = match super::pages::card(&journal, item, &viewer, &format!("/a/{}", seg(&token))) {
            Ok(c) => c,
            Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, None, "Link", &e),
        };
        let body = format!(
            "<h1>Your decision, {}</h1><p>This link decides once, as {}, and expires at {} UTC.</p>{card}",
            esc(&row.link.approver),
            esc(&row.link.approver),
            super::html::when(row.link.expires_at)
        );
        html::ok(page("Decide", None, &body))
    })
    .await
}

/// `POST /a/TOKEN`: decides as the link's approver, once.
pub async fn from_link(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(why) = super::auth::same_origin(&headers) {
        return problem(StatusCode::FORBIDDEN, None, "Not decided", &why);
    }
    blocking(&svc, move |svc| {
        let presenter = who(svc, &headers).map(|a| a.person.name);
        match decide_by_link(svc, &token, &pairs, None, presenter) {
            Ok((run, note)) => {
                let body = format!(
                    "<h1>Decided</h1><p class=\"note\" id=\"decided\">{}</p><p>Run {}.</p>",
                    esc(&note),
                    esc(&run)
                );
                html::ok(page("Decided", None, &body))
            }
            Err((status, why)) => problem(status, None, "Not decided", &why),
        }
    })
    .await
}

/// A decision through a link (from the page's form, or the API's `link_token`):
/// `expect` is the item the caller named, if it named one.
pub fn decide_by_link(
    svc: &Service,
    token: &str,
    pairs: &[(String, String)],
    expect: Option<(&str, &str)>,
    presenter: Option<String>,
) -> Result<(String, String), (StatusCode, String)> {
    let mut journal = svc.journal();
    let row = match links::open(&journal, token) {
        Ok(Some(row)) => row,
        Ok(None) => {
            return Err((
                StatusCode::NOT_FOUND,
                "this link is not one this service made".into(),
            ));
        }
        Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let (run, node) = expect.unwrap_or((&row.link.run, &row.link.node));
    let (run, node) = (run.to_string(), node.to_string());
    let p = posted(&journal, &run, &node, pairs).map_err(|why| (StatusCode::BAD_REQUEST, why))?;
    let verb = p.verb;
    let mut d = decision(p, svc.people().named(&row.link.approver), "link");
    d.link = Some(row.link.clone());
    d.presenter = presenter;
    let outcome = decide(&mut journal, &run, &node, d).map_err(|e| failed(&e))?;
    journal
        .claim_link(&row.token_hash, crate::journal::now_ms())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    drop(journal);
    svc.log.event(
        "approval.decided",
        &[
            ("run", serde_json::json!(run)),
            ("node", serde_json::json!(node)),
            ("by", serde_json::json!(row.link.approver)),
            ("via", serde_json::json!("link")),
        ],
    );
    svc.wake.notify_one();
    Ok((run, said(&outcome, verb)))
}
