//! Notifications: an approval asked (or a run failed) is queued from the journal's events and delivered to `webhook(…)` and `slack(…)` with retries, never blocking a run.

use super::Service;
use super::web::html::seg;
use crate::approvals::decide::asked_with;
use crate::approvals::links;
use crate::journal::{Event, Notice, NoticeRow, now_ms};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// How often the outbox is looked at.
const TICK: Duration = Duration::from_millis(500);
/// Attempts before a notification is given up (journaled `failed`).
const MAX_ATTEMPTS: i64 = 8;
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// Events looked at per tick.
const SCAN: i64 = 200;

/// The key that signs `webhook(…)` messages: the people file's `notify_secret`
/// (`env:NAME` or `secret:NAME`), registered with the redactor.
pub fn signing_secret(
    people: &crate::approvals::People,
) -> Result<Option<Zeroizing<String>>, String> {
    let Some(source) = &people.notify_secret else {
        return Ok(None);
    };
    let value = match source.split_once(':') {
        Some(("env", name)) => std::env::var(name).map_err(|_| {
            format!("`notify_secret`: the environment variable `{name}` is not set")
        })?,
        Some(("secret", name)) => {
            crate::secrets::resolve(name).map_err(|e| format!("`notify_secret`: {e}"))?
        }
        _ => {
            return Err(format!(
                "`notify_secret` is `env:NAME` or `secret:NAME`, not `{source}` (the key itself is never written in the file)"
            ));
        }
    };
    crate::secrets::register(&value);
    Ok(Some(Zeroizing::new(value)))
}

/// Starts the notifier beside the scheduler.
pub fn start(svc: &Arc<Service>) {
    let svc = svc.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            let work = svc.clone();
            let r = tokio::task::spawn_blocking(move || {
                scan(&work)?;
                deliver_due(&work)
            })
            .await;
            if let Ok(Err(e)) = r {
                svc.log.event("notify.error", &[("error", json!(e))]);
            }
        }
    });
}

/// Queues a notification for each target of each new event that names targets.
fn scan(svc: &Service) -> Result<(), String> {
    let mut journal = svc.journal();
    let err = |e: crate::journal::JournalError| e.to_string();
    let cursor = journal.notify_cursor().map_err(err)?.unwrap_or(0);
    let sources = journal.notify_sources(cursor, SCAN).map_err(err)?;
    let Some(last) = sources.last().map(|(rowid, _)| *rowid) else {
        return Ok(());
    };
    let mut notices = Vec::new();
    for (_, e) in &sources {
        notices.extend(notices_for(&journal, svc, e));
    }
    journal.queue_notices(&notices, last, now_ms()).map_err(err)
}

/// The notifications one event causes (none for an ask that is no longer pending).
fn notices_for(journal: &crate::journal::Journal, svc: &Service, e: &Event) -> Vec<Notice> {
    let targets: Vec<Json> = e.data["notify"].as_array().cloned().unwrap_or_default();
    let (event, message) = match e.kind.as_str() {
        "approval_requested" => {
            let node = e.node.as_deref().unwrap_or_default();
            let pending = journal
                .approvals(Some(&e.run_id))
                .unwrap_or_default()
                .into_iter()
                .any(|a| a.node == node && a.status == "pending" && a.requested_at == e.at);
            if !pending {
                return Vec::new();
            }
            let kind = if e.data["kind"] == "escalation" {
                "escalation"
            } else {
                "approval"
            };
            (kind, approval_message(journal, svc, e))
        }
        _ => ("failure", failure_message(journal, svc, e)),
    };
    let mut message = message;
    crate::secrets::redact_json(&mut message);
    targets
        .into_iter()
        .map(|target| Notice {
            run: e.run_id.clone(),
            node: e.node.clone(),
            event: event.to_string(),
            source_seq: e.seq,
            target,
            message: message.clone(),
        })
        .collect()
}

fn base_url(svc: &Service) -> String {
    svc.public_url
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn approval_message(journal: &crate::journal::Journal, svc: &Service, e: &Event) -> Json {
    let node = e.node.as_deref().unwrap_or_default();
    let skill = journal.run(&e.run_id).map(|r| r.skill).unwrap_or_default();
    let timeout_at = e.data["timeout_ms"]
        .as_i64()
        .map(|t| super::rfc3339(e.at + t));
    json!({
        "type": if e.data["kind"] == "escalation" { "step.escalated" } else { "approval.requested" },
        "run_id": e.run_id,
        "skill": skill,
        "step": node,
        "prompt": e.data["prompt"],
        "input_hash": e.data["input_hash"],
        "approvers": e.data["approvers"],
        "required": e.data["required"],
        "asked_at": super::rfc3339(e.at),
        "timeout_at": timeout_at,
        "default": e.data["default"],
        "url": format!("{}/runs/{}", base_url(svc), seg(&e.run_id)),
    })
}

fn failure_message(journal: &crate::journal::Journal, svc: &Service, e: &Event) -> Json {
    let run = journal.run(&e.run_id).ok();
    json!({
        "type": "run.failed",
        "run_id": e.run_id,
        "skill": run.as_ref().map(|r| r.skill.clone()),
        "error": run.and_then(|r| r.error),
        "url": format!("{}/runs/{}", base_url(svc), seg(&e.run_id)),
    })
}

/// Delivers what is due; each attempt is journaled in the outbox row.
fn deliver_due(svc: &Service) -> Result<(), String> {
    let due = svc
        .journal()
        .due_notices(now_ms(), 20)
        .map_err(|e| e.to_string())?;
    for n in due {
        let result = attempt(svc, &n);
        let now = now_ms();
        let recorded = match &result {
            Ok(()) => Ok(()),
            Err(why) if n.attempts + 1 >= MAX_ATTEMPTS => Err((why.as_str(), None)),
            Err(why) => Err((why.as_str(), Some(now + backoff_ms(n.attempts)))),
        };
        svc.journal()
            .notice_attempted(n.id, now, recorded)
            .map_err(|e| e.to_string())?;
        let outcome = if result.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        let mut fields = vec![
            ("run", json!(n.run_id)),
            ("id", json!(n.id)),
            ("outcome", json!(outcome)),
            ("attempt", json!(n.attempts + 1)),
        ];
        if let Err(why) = &result {
            fields.push(("error", json!(why)));
        }
        svc.log.event("notify.attempt", &fields);
    }
    Ok(())
}

/// The wait before attempt `made + 1`: 1 s doubling, at most 5 min (`FLOWC_NOTIFY_BACKOFF_MS` sets the first).
fn backoff_ms(made: i64) -> i64 {
    let base = std::env::var("FLOWC_NOTIFY_BACKOFF_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(1000)
        .max(1);
    base.saturating_mul(1 << made.clamp(0, 20))
        .min(MAX_BACKOFF_MS)
}

/// One attempt: the URL resolved now, the body built (with fresh one-time links
/// for a webhook), signed, and posted with a timeout.
fn attempt(svc: &Service, n: &NoticeRow) -> Result<(), String> {
    let url = resolve_url(&n.target["url"])?;
    let kind = n.target["kind"].as_str().unwrap_or("webhook");
    let body = match kind {
        "slack" => slack_body(&n.message),
        _ => {
            let mut m = n.message.clone();
            if n.event == "approval" {
                m["links"] = json!(fresh_links(svc, n)?);
            }
            m
        }
    };
    let text = body.to_string();
    let timeout = std::env::var("FLOWC_NOTIFY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(10_000);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(timeout)))
        .http_status_as_error(false)
        .user_agent(concat!("flowc/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent.post(&url).header("content-type", "application/json");
    if kind == "webhook" {
        let id = format!("msg_{}_{}", n.run_id, n.id);
        let stamp = (now_ms() / 1000).to_string();
        request = request
            .header("webhook-id", &id)
            .header("webhook-timestamp", &stamp);
        if let Some(secret) = &svc.notify_secret {
            let key = super::webhook::standard_key(secret);
            let sig = super::webhook::sign_standard(&key, &id, &stamp, text.as_bytes());
            request = request.header("webhook-signature", &sig);
        }
    }
    let where_to = super::web::run_page_target(&n.target);
    match request.send(text) {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{where_to} answered HTTP {}", r.status().as_u16())),
        Err(e) => Err(crate::secrets::redact(format!("{where_to}: {e}"))),
    }
}

/// The target's URL: written in the flow, or read now from the environment or the secret store.
fn resolve_url(url: &Json) -> Result<String, String> {
    if let Some(u) = url["url"].as_str() {
        return Ok(u.to_string());
    }
    if let Some(name) = url["env"].as_str() {
        return std::env::var(name)
            .map_err(|_| format!("the environment variable `{name}` is not set"));
    }
    if let Some(name) = url["secret"].as_str() {
        let value = crate::secrets::resolve(name)?;
        crate::secrets::register(&value);
        return Ok(value);
    }
    Err("the target has no URL".into())
}

/// One-time links for every eligible approver, minted for this attempt (tokens are never stored).
fn fresh_links(svc: &Service, n: &NoticeRow) -> Result<Vec<Json>, String> {
    let node = n.node.as_deref().unwrap_or_default();
    let mut journal = svc.journal();
    let asked = asked_with(&journal, &n.run_id, node).map_err(|e| e.to_string())?;
    let Some(item) = journal
        .approvals(Some(&n.run_id))
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|a| a.node == node && a.status == "pending")
    else {
        return Ok(Vec::new());
    };
    let base = base_url(svc);
    let mut out = Vec::new();
    for person in crate::approvals::decide::eligible(&svc.people(), &asked) {
        let minted = links::mint(
            &mut journal,
            &n.run_id,
            node,
            &asked,
            &item.input_hash,
            &person.name,
            now_ms(),
        )?;
        out.push(
            json!({ "approver": minted.approver, "url": format!("{base}/a/{}", minted.token) }),
        );
    }
    Ok(out)
}

/// Slack's incoming-webhook shape: a text with the page's link (one-time links
/// go only to `webhook(…)` targets, since a channel is read by many people).
fn slack_body(m: &Json) -> Json {
    let text = match m["type"].as_str() {
        Some("run.failed") => format!(
            "Run {} ({}) failed: {}\n<{}|Open the run>",
            m["run_id"].as_str().unwrap_or_default(),
            m["skill"].as_str().unwrap_or_default(),
            m["error"].as_str().unwrap_or_default(),
            m["url"].as_str().unwrap_or_default()
        ),
        _ => format!(
            "*{}* in run {} ({}), step `{}`:\n{}\n<{}|Open it to decide>",
            if m["type"] == "step.escalated" {
                "A step escalated"
            } else {
                "Approval needed"
            },
            m["run_id"].as_str().unwrap_or_default(),
            m["skill"].as_str().unwrap_or_default(),
            m["step"].as_str().unwrap_or_default(),
            m["prompt"].as_str().unwrap_or_default(),
            m["url"].as_str().unwrap_or_default()
        ),
    };
    json!({ "text": text })
}
