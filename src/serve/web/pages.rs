//! The runs list, the approval queue with its forms, and signing in with a token.

use super::html::{Viewer, badge, csrf_field, esc, page, seg, took, when};
use super::{Service, blocking, html, problem, see_other, signed_in};
use crate::approvals::decide::asked_with;
use crate::approvals::form::{Input, fields, ty_of};
use crate::journal::{ApprovalRow, Journal, RunRow};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

/// How many runs the list shows.
const RUNS_SHOWN: usize = 200;

/// `/?status=…&skill=…&part=live`.
#[derive(Debug, Deserialize, Default)]
pub struct RunsQuery {
    status: Option<String>,
    skill: Option<String>,
    part: Option<String>,
}

/// `GET /`: runs, newest first, filtered; live through `/live`.
pub async fn runs(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    let auth = match signed_in(&svc, &headers, "/") {
        Ok(a) => a,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| {
        let rows = match svc.journal().runs() {
            Ok(r) => r,
            Err(e) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&auth),
                    "Runs",
                    &e.to_string(),
                );
            }
        };
        let keep = |r: &&RunRow| {
            q.status
                .as_deref()
                .is_none_or(|s| s.is_empty() || r.status == s)
                && q.skill
                    .as_deref()
                    .is_none_or(|s| s.is_empty() || r.skill == s)
        };
        let shown: Vec<&RunRow> = rows.iter().filter(keep).take(RUNS_SHOWN).collect();
        let table = runs_table(&shown);
        if q.part.as_deref() == Some("live") {
            return html::ok(table);
        }
        let mut skills: Vec<&str> = rows.iter().map(|r| r.skill.as_str()).collect();
        skills.sort_unstable();
        skills.dedup();
        let body = format!(
            "<h1>Runs</h1>{}<div id=\"live\" data-live=\"/?{}\">{table}</div>",
            filters(&q, &skills),
            live_query(&q)
        );
        html::ok(page("Runs", Some(&auth.viewer()), &body))
    })
    .await
}

fn live_query(q: &RunsQuery) -> String {
    format!(
        "status={}&skill={}&part=live",
        seg(q.status.as_deref().unwrap_or("")),
        seg(q.skill.as_deref().unwrap_or(""))
    )
}

fn filters(q: &RunsQuery, skills: &[&str]) -> String {
    let option = |value: &str, chosen: Option<&str>| {
        let sel = if chosen == Some(value) {
            " selected"
        } else {
            ""
        };
        format!("<option value=\"{0}\"{sel}>{0}</option>", esc(value))
    };
    let statuses = [
        "queued",
        "running",
        "paused",
        "succeeded",
        "failed",
        "interrupted",
        "cancelled",
    ];
    let mut out = String::from(
        "<form method=\"get\" action=\"/\" class=\"filters\"><label>Status <select name=\"status\"><option value=\"\">any</option>",
    );
    for s in statuses {
        out.push_str(&option(s, q.status.as_deref()));
    }
    out.push_str(
        "</select></label> <label>Skill <select name=\"skill\"><option value=\"\">any</option>",
    );
    for s in skills {
        out.push_str(&option(s, q.skill.as_deref()));
    }
    out.push_str("</select></label> <button>Filter</button></form>");
    out
}

fn runs_table(rows: &[&RunRow]) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">No runs yet.</p>".into();
    }
    let mut out = String::from(
        "<table class=\"runs\"><thead><tr><th>Run</th><th>Skill</th><th>Status</th><th>Started (UTC)</th><th>Took</th></tr></thead><tbody>",
    );
    for r in rows {
        let end = r.finished_at.unwrap_or(r.updated_at);
        let _ = write!(
            out,
            "<tr data-run=\"{id}\"><td><a href=\"/runs/{link}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.skill),
            badge(&r.status),
            when(r.started_at),
            took(end - r.started_at),
            id = esc(&r.id),
            link = seg(&r.id),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `GET /approvals`: every item waiting for a person, with its form.
pub async fn approvals(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<RunsQuery>,
) -> Response {
    let auth = match signed_in(&svc, &headers, "/approvals") {
        Ok(a) => a,
        Err(r) => return r,
    };
    blocking(&svc, move |svc| {
        let journal = svc.journal();
        let cards = match cards(&journal, None, &auth.viewer()) {
            Ok(c) => c,
            Err(e) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(&auth),
                    "Approvals",
                    &e,
                );
            }
        };
        let inner = if cards.is_empty() {
            "<p class=\"empty\">Nothing is waiting for a person.</p>".to_string()
        } else {
            cards
        };
        if q.part.as_deref() == Some("live") {
            return html::ok(inner);
        }
        let body = format!(
            "<h1>Approvals</h1><div id=\"live\" data-live=\"/approvals?part=live\">{inner}</div>"
        );
        html::ok(page("Approvals", Some(&auth.viewer()), &body))
    })
    .await
}

/// The pending items (of one run, or all) as cards with their decision forms.
pub fn cards(journal: &Journal, run: Option<&str>, viewer: &Viewer) -> Result<String, String> {
    let items = journal.approvals(run).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for item in items.iter().filter(|a| a.status == "pending") {
        out.push_str(&card(
            journal,
            item,
            viewer,
            &format!("/approvals/{}/{}", seg(&item.run_id), seg(&item.node)),
        )?);
    }
    Ok(out)
}

/// One item: the question, who may decide and who has, and the form (posting to `action`).
pub fn card(
    journal: &Journal,
    item: &ApprovalRow,
    viewer: &Viewer,
    action: &str,
) -> Result<String, String> {
    let asked = asked_with(journal, &item.run_id, &item.node).map_err(|e| e.to_string())?;
    let mut out = format!(
        "<section class=\"card\" data-item=\"{run}/{node}\"><h2><a href=\"/runs/{rl}\">{run}</a> · {node} <small>{kind}</small></h2>\
         <pre class=\"prompt\">{prompt}</pre><p class=\"meta\">asked {asked} UTC · input hash <code>{hash}</code>",
        run = esc(&item.run_id),
        rl = seg(&item.run_id),
        node = esc(&item.node),
        kind = esc(&item.kind),
        prompt = esc(&item.prompt),
        asked = when(item.requested_at),
        hash = esc(item.input_hash.get(..12).unwrap_or(&item.input_hash)),
    );
    if !asked.spec.approvers.is_empty() {
        let _ = write!(
            out,
            " · approvers: {}",
            esc(&asked.spec.approvers.join(", "))
        );
    }
    if asked.spec.required > 1 {
        let by: Vec<&str> = asked
            .votes
            .iter()
            .filter_map(|v| v["by"].as_str())
            .collect();
        let _ = write!(
            out,
            " · {} of {} approvals{}",
            by.len(),
            asked.spec.required,
            if by.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&by.join(", ")))
            }
        );
    }
    if let Some(t) = asked.data.get("timeout_ms").and_then(|t| t.as_i64()) {
        let default = asked.data["default"].as_str().unwrap_or("reject");
        let _ = write!(
            out,
            " · {default}s by itself at {} UTC",
            when(item.requested_at + t)
        );
    }
    out.push_str("</p>");
    let _ = write!(
        out,
        "<form method=\"post\" action=\"{}\" class=\"decide\">{}<input type=\"hidden\" name=\"input_hash\" value=\"{}\">",
        esc(action),
        csrf_field(viewer),
        esc(&item.input_hash)
    );
    if item.kind != "escalation"
        && let Some(schema) = asked.data.get("form_schema")
    {
        out.push_str(&form_fields(&ty_of(schema)));
    }
    out.push_str("<label class=\"comment\">Comment <input type=\"text\" name=\"comment\" maxlength=\"2000\"></label><div class=\"buttons\">");
    let buttons: &[(&str, &str)] = if item.kind == "escalation" {
        &[("retry", "Retry"), ("skip", "Skip"), ("reject", "Reject")]
    } else {
        &[("approve", "Approve"), ("reject", "Reject")]
    };
    for (value, label) in buttons {
        let _ = write!(
            out,
            "<button name=\"decision\" value=\"{value}\" class=\"b-{value}\">{label}</button>"
        );
    }
    out.push_str("</div></form></section>");
    Ok(out)
}

/// The inputs of a typed form.
pub fn form_fields(ty: &crate::ir::Ty) -> String {
    let mut out = String::from("<fieldset class=\"form\"><legend>Form</legend>");
    for f in fields(ty) {
        let name = format!("form.{}", f.name);
        let req = if f.optional { "" } else { " required" };
        let input = match &f.input {
            Input::Text => format!("<input type=\"text\" name=\"{}\"{req}>", esc(&name)),
            Input::Integer => format!(
                "<input type=\"number\" step=\"1\" name=\"{}\"{req}>",
                esc(&name)
            ),
            Input::Number => format!(
                "<input type=\"number\" step=\"any\" name=\"{}\"{req}>",
                esc(&name)
            ),
            Input::Check => format!("<input type=\"checkbox\" name=\"{}\">", esc(&name)),
            Input::Choice(words) => {
                let mut s = format!("<select name=\"{}\"{req}>", esc(&name));
                if f.optional {
                    s.push_str("<option value=\"\"></option>");
                }
                for w in words {
                    let _ = write!(s, "<option>{}</option>", esc(w));
                }
                s.push_str("</select>");
                s
            }
            Input::JsonText => format!(
                "<textarea name=\"{}\" placeholder=\"JSON\"{req}></textarea>",
                esc(&name)
            ),
        };
        let _ = write!(
            out,
            "<label>{} <small>{}</small> {input}</label>",
            esc(&f.name),
            esc(&f.ty)
        );
    }
    out.push_str("</fieldset>");
    out
}

/// `/login?next=…`.
#[derive(Debug, Deserialize, Default)]
pub struct Next {
    next: Option<String>,
}

/// A local path to go to after signing in (never another site).
fn local(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

/// `GET /login`.
pub async fn login_form(State(svc): State<Arc<Service>>, Query(q): Query<Next>) -> Response {
    let note = if svc.people().people.is_empty() {
        "<p class=\"problem\">This service has no people file: start it with <code>flowc serve --people FILE</code> (tokens come from <code>flowc people add</code>).</p>"
    } else {
        ""
    };
    let body = format!(
        "<h1>Sign in</h1>{note}<form method=\"post\" action=\"/login\" class=\"login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <button>Sign in</button></form>",
        esc(&local(q.next.as_deref()))
    );
    html::ok(page("Sign in", None, &body))
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /login`: a person's token starts a session (cookie: HttpOnly, SameSite=Strict).
pub async fn login(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(why) = super::auth::same_origin(&headers) {
        return problem(StatusCode::FORBIDDEN, None, "Sign in", &why);
    }
    let people = svc.people();
    let Some(person) = people.by_token_hash(&crate::approvals::token_hash(f.token.trim())) else {
        svc.log.event("web.login_refused", &[]);
        return problem(
            StatusCode::UNAUTHORIZED,
            None,
            "Sign in",
            "That token names nobody in the people file.",
        );
    };
    let sid = match svc.sessions.start(&person.name, crate::journal::now_ms()) {
        Ok(s) => s,
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, None, "Sign in", &e),
    };
    svc.log
        .event("web.login", &[("person", serde_json::json!(person.name))]);
    let cookie = format!(
        "{}={sid}; Path=/; HttpOnly; SameSite=Strict",
        super::auth::COOKIE
    );
    let mut r = see_other(&local(f.next.as_deref()));
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /logout`.
pub async fn logout(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let auth = super::who(&svc, &headers);
    if let Err(why) =
        super::auth::check_post(&headers, auth.as_ref(), f.get("csrf").map(String::as_str))
    {
        return problem(StatusCode::FORBIDDEN, auth.as_ref(), "Sign out", &why);
    }
    if let Some(sid) = super::auth::cookie(&headers, super::auth::COOKIE) {
        svc.sessions.end(sid);
    }
    let mut r = see_other("/login");
    let gone = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        super::auth::COOKIE
    );
    if let Ok(v) = gone.parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.into_response()
}
