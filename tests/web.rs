//! The web page and the API of `flowc serve`, over real HTTP: sign-in, CSRF and
//! `Origin`, escaping of what steps and models wrote, every way around an
//! approval's rules (each refused and journaled), one-time links, and
//! notifications to a local sink that fails, hangs and recovers.
#![allow(clippy::unwrap_used)]

mod common;
use common::service::{PATIENCE, poll};
use common::web::{Site, csrf_of};
use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Asserts a refusal by the API: 403 with this code, journaled with who tried.
fn refused(site: &Site, run: &str, r: &common::service::Reply, code: &str, who: &str) {
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["code"], code, "{}", r.body);
    let journaled = site.events(run, "approval_refused");
    assert!(
        journaled
            .iter()
            .any(|e| e["code"] == code && e["by"] == who),
        "no approval_refused {code} by {who}: {journaled:?}"
    );
}

#[test]
fn pages_need_a_sign_in_and_show_markup_from_steps_and_models_as_text() {
    let site = Site::start(vec![]);
    assert_eq!(site.get(None, "/healthz").status, 200);
    let r = site.get(None, "/approvals");
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location").as_deref(),
        Some("/login?next=%2Fapprovals")
    );
    assert_eq!(site.get(None, "/api/runs").status, 401);
    let bad = http_with(
        &site,
        "GET",
        "/api/runs",
        &[("Authorization", "Bearer not-a-token")],
    );
    assert_eq!(bad.status, 401);

    let run = site.submit("dora", "gate.flow");
    site.wait(&run, "paused");
    let page = site.get(Some("alice"), &format!("/runs/{run}"));
    assert_eq!(page.status, 200);
    for raw in ["<script>alert(1)", "<script>document.title"] {
        assert!(
            !page.body.contains(raw),
            "unescaped `{raw}` on the run page"
        );
    }
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the step's output"
    );
    assert!(
        page.body.contains("&lt;script&gt;document.title="),
        "the model's reply"
    );
    assert!(page.body.contains("<svg"), "the graph");
    assert!(
        page.body
            .contains("data-node=\"gate\" data-status=\"waiting\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-node=\"build\" data-status=\"succeeded\"")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let queue = site.get(Some("alice"), "/approvals");
    assert!(
        queue.body.contains("name=\"form.reason\" required"),
        "{}",
        queue.body
    );
    assert!(
        queue.body.contains("name=\"form.window\">"),
        "optional fields are not required"
    );
    let api = site.get(Some("alice"), "/api/approvals").json();
    assert!(
        api[0]["prompt"].as_str().unwrap().contains("<script>"),
        "JSON keeps the text as it was"
    );
    assert_eq!(api[0]["required"], 2);
    assert_eq!(site.get(None, "/stats").status, 303);
    assert_eq!(site.get(None, "/api/stats").status, 401);
    let stats = site.get(Some("alice"), "/api/stats").json();
    assert_eq!(stats["skills"][0]["skill"], "main", "{stats}");
    assert_eq!(stats["prompts"][0]["step"], "notes", "{stats}");
    assert_eq!(stats["prompts"][0]["calls"], 1);
    let failing = site.submit("dora", "fails.flow");
    site.wait(&failing, "failed");
    let failures = site.get(Some("alice"), "/api/failures?since=1d").json();
    assert_eq!(failures[0]["step"], "broken", "{failures}");
    assert_eq!(failures[0]["count"], 1);
    assert_eq!(site.get(Some("alice"), "/api/stats?since=soon").status, 400);
    let events = site
        .get(Some("alice"), &format!("/api/runs/{run}/events?limit=2"))
        .json();
    assert_eq!(events["events"].as_array().unwrap().len(), 2);
    let next = events["next_after"].as_i64().unwrap();
    let more = site
        .get(
            Some("alice"),
            &format!("/api/runs/{run}/events?after={next}"),
        )
        .json();
    assert!(more["events"][0]["seq"].as_i64().unwrap() > next);
}

fn http_with(
    site: &Site,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> common::service::Reply {
    common::service::http(site.port(), method, path, headers, b"")
}

#[test]
fn a_form_post_needs_the_session_its_csrf_token_and_this_origin() {
    let site = Site::start(vec![]);
    let run = site.submit("dora", "gate.flow");
    site.wait(&run, "paused");
    let cookie = site.login("bob");
    let queue = http_with(&site, "GET", "/approvals", &[("Cookie", cookie.as_str())]);
    assert_eq!(queue.status, 200, "{}", queue.body);
    let csrf = csrf_of(&queue.body);
    let origin = site.origin();
    let action = format!("/approvals/{run}/gate");
    let fields = |csrf: &'static str| {
        vec![
            ("decision", "approve"),
            ("form.reason", "tested"),
            ("csrf", csrf),
        ]
    };
    let leaked: &'static str = Box::leak(csrf.clone().into_boxed_str());

    let r = site.post_form(
        &action,
        &[("Cookie", &cookie), ("Origin", &origin)],
        &fields("wrong"),
    );
    assert_eq!(r.status, 403, "a wrong CSRF token: {}", r.body);
    let r = site.post_form(
        &action,
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        &fields(leaked),
    );
    assert_eq!(r.status, 403, "another origin: {}", r.body);
    let r = site.post_form(&action, &[("Cookie", &cookie)], &fields(leaked));
    assert_eq!(r.status, 403, "no Origin or Referer: {}", r.body);
    assert!(
        site.events(&run, "approval_vote").is_empty(),
        "nothing recorded so far"
    );

    let r = site.post_form(
        &action,
        &[("Cookie", &cookie), ("Origin", &origin)],
        &fields(leaked),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let votes = site.events(&run, "approval_vote");
    assert_eq!(votes.len(), 1, "{votes:?}");
    assert_eq!(votes[0]["by"], "bob");
    assert_eq!(votes[0]["via"], "web");
    assert_eq!(
        votes[0]["form"],
        json!({ "reason": "tested", "window": null })
    );

    // The initiator on the page is refused like everywhere else.
    let dora = site.login("dora");
    let page = http_with(&site, "GET", "/approvals", &[("Cookie", dora.as_str())]);
    let dora_csrf: &'static str = Box::leak(csrf_of(&page.body).into_boxed_str());
    let r = site.post_form(
        &action,
        &[("Cookie", &dora), ("Origin", &origin)],
        &fields(dora_csrf),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("started this run"), "{}", r.body);
    let refusals = site.events(&run, "approval_refused");
    assert!(
        refusals
            .iter()
            .any(|e| e["code"] == "self_approval" && e["by"] == "dora" && e["via"] == "web"),
        "{refusals:?}"
    );

    // Signed out, the cookie is no session any more.
    let r = site.post_form(
        "/logout",
        &[("Cookie", &cookie), ("Origin", &origin)],
        &[("csrf", leaked)],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        http_with(&site, "GET", "/approvals", &[("Cookie", cookie.as_str())]).status,
        303
    );
}

#[test]
fn every_way_around_the_rules_is_refused_and_two_people_approve() {
    let site = Site::start(vec![]);
    let run = site.submit("dora", "gate.flow");
    site.wait(&run, "paused");
    let form = json!({ "reason": "tested" });
    let approve = |who: &str| {
        site.decide(
            who,
            &run,
            "gate",
            json!({ "decision": "approve", "form": form }),
        )
    };

    refused(&site, &run, &approve("dora"), "self_approval", "dora");
    refused(&site, &run, &approve("carol"), "not_an_approver", "carol");
    let stale = site.decide(
        "bob",
        &run,
        "gate",
        json!({ "decision": "approve", "form": form, "input_hash": "0000" }),
    );
    refused(&site, &run, &stale, "stale_input", "bob");
    let bad_form = site.decide(
        "bob",
        &run,
        "gate",
        json!({ "decision": "approve", "form": { "reason": 5 } }),
    );
    assert_eq!(bad_form.status, 400, "{}", bad_form.body);

    let r = approve("bob");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["votes"], 1);
    refused(&site, &run, &approve("bob"), "twice", "bob");

    // Links: a GET never decides; another person's session, another step and
    // an expired link are refused; the right one decides once.
    let link = site.link(&run, "gate", "alice");
    let path = link.trim_start_matches(&site.origin()).to_string();
    let token = path.trim_start_matches("/a/").to_string();
    assert_eq!(site.get(None, &path).status, 200);
    assert_eq!(
        site.events(&run, "approval_decided").len(),
        0,
        "a GET decided"
    );
    let origin = site.origin();
    let bob = site.login("bob");
    let r = site.post_form(
        &path,
        &[("Origin", &origin), ("Cookie", &bob)],
        &[("decision", "approve"), ("form.reason", "x")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        site.events(&run, "approval_refused")
            .iter()
            .any(|e| e["code"] == "link_forwarded" && e["presenter"] == "bob")
    );
    let other = site.submit("dora", "other.flow");
    site.wait(&other, "paused");
    let r = site.post_json(
        None,
        &format!("/api/approvals/{other}/first"),
        &json!({ "decision": "approve", "link_token": token }),
    );
    assert_eq!(r.status, 403, "a link for another run's step: {}", r.body);
    assert!(
        site.events(&other, "approval_refused")
            .iter()
            .any(|e| e["code"] == "link_elsewhere")
    );
    let expired = expired_link(&site, &run);
    let r = site.post_form(
        &format!("/a/{expired}"),
        &[("Origin", &origin)],
        &[("decision", "approve"), ("form.reason", "x")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        site.events(&run, "approval_refused")
            .iter()
            .any(|e| e["code"] == "link_expired")
    );

    let r = site.post_form(
        &path,
        &[("Origin", &origin)],
        &[("decision", "approve"), ("form.reason", "by link")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Recorded: approved"), "{}", r.body);
    let decided = site.events(&run, "approval_decided");
    assert_eq!(decided[0]["output"]["by"], json!(["bob", "alice"]));
    assert_eq!(decided[0]["via"], "link");
    site.wait(&run, "succeeded");
    let r = site.post_form(
        &path,
        &[("Origin", &origin)],
        &[("decision", "approve"), ("form.reason", "again")],
    );
    assert_eq!(r.status, 403, "a replayed link: {}", r.body);

    // A cancelled run's items can no longer be decided.
    let c = site.post_json(
        Some("alice"),
        &format!("/api/runs/{other}/cancel"),
        &json!({}),
    );
    assert_eq!(c.status, 200, "{}", c.body);
    let r = site.decide("alice", &other, "first", json!({ "decision": "approve" }));
    assert!(r.status == 403 || r.status == 400, "{}", r.body);
    assert!(
        r.body.contains("cancelled") || r.body.contains("no longer"),
        "{}",
        r.body
    );
}

/// A link row for alice on `run`'s gate whose time has passed (written as the service would).
fn expired_link(site: &Site, run: &str) -> String {
    let mut j =
        flowc::journal::Journal::open_existing(&site.dir.join(".flowc/journal.db")).unwrap();
    let asked = flowc::approvals::decide::asked_with(&j, run, "gate").unwrap();
    let item = j
        .approvals(Some(run))
        .unwrap()
        .into_iter()
        .find(|a| a.node == "gate")
        .unwrap();
    let token = flowc::approvals::new_token().unwrap();
    let row = flowc::journal::LinkRow {
        token_hash: flowc::approvals::token_hash(&token),
        link: flowc::approvals::Link {
            run: run.to_string(),
            node: "gate".into(),
            asked_seq: asked.seq,
            input_hash: item.input_hash,
            approver: "alice".into(),
            expires_at: flowc::journal::now_ms() - 1,
            used_at: None,
        },
    };
    j.add_link(&row, flowc::journal::now_ms()).unwrap();
    token
}

/// A local HTTP sink: answers each request by `answer(path, n)` (status, or
/// `None` to hang), recording (path, headers, body).
struct Sink {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Sink {
    fn start(answer: fn(&str, usize) -> Option<u16>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut head = String::new();
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        head.push_str(&h);
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let n = {
                        let mut seen = log.lock().unwrap();
                        seen.push((
                            path.clone(),
                            head,
                            String::from_utf8_lossy(&body).into_owned(),
                        ));
                        seen.iter().filter(|(p, _, _)| *p == path).count()
                    };
                    match answer(&path, n) {
                        Some(status) => {
                            let _ = write!(
                                stream,
                                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                        }
                        None => std::thread::sleep(std::time::Duration::from_secs(30)),
                    }
                });
            }
        });
        Sink { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<(String, String)> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect()
    }
}

#[test]
fn notifications_are_signed_retried_and_never_hold_up_the_run() {
    // The webhook fails once (500) and then takes it; the slow one never answers.
    let sink = Sink::start(|path, n| match path {
        "/hook" if n == 1 => Some(500),
        "/slow" => None,
        _ => Some(200),
    });
    let secret = "whsec_dGVzdC1zaWduaW5nLWtleQ==";
    let site = site_with_secret(&sink, secret);
    let run = site.submit("dora", "notify.flow");
    site.wait(&run, "paused");
    let failing = site.submit("dora", "fails.flow");
    site.wait(&failing, "failed");
    let failed = poll(
        "the failure notice",
        PATIENCE,
        || site.serve.log(),
        || sink.requests("/fail").into_iter().next(),
    );
    let failed: Json = serde_json::from_str(&failed.1).unwrap();
    assert_eq!(failed["type"], "run.failed");
    assert_eq!(failed["run_id"], failing.as_str());
    assert!(
        failed["error"].as_str().unwrap().contains("broken"),
        "{failed}"
    );

    let hook = poll(
        "the webhook's second attempt",
        PATIENCE,
        || site.serve.log(),
        || {
            let r = sink.requests("/hook");
            (r.len() >= 2).then_some(r)
        },
    );
    let (head, body) = &hook[1];
    let message: Json = serde_json::from_str(body).unwrap();
    assert_eq!(message["type"], "approval.requested");
    assert_eq!(message["run_id"], run.as_str());
    assert_eq!(message["step"], "gate");
    let links: Vec<&str> = message["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["approver"].as_str().unwrap())
        .collect();
    assert_eq!(
        links,
        ["alice", "bob"],
        "eligible approvers, not the initiator or carol"
    );
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap()
    };
    let key = flowc::serve::webhook::standard_key(secret);
    let get = |n: &str| Some(header(n));
    let id = flowc::serve::webhook::verify_standard(
        &key,
        &get,
        body.as_bytes(),
        flowc::journal::now_ms(),
        60_000,
    );
    assert!(id.is_ok(), "the signature verifies: {id:?}");

    let slack = poll(
        "the Slack message",
        PATIENCE,
        || site.serve.log(),
        || sink.requests("/slack").into_iter().next(),
    );
    let slack: Json = serde_json::from_str(&slack.1).unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("Approval needed") && text.contains(&format!("/runs/{run}")),
        "{text}"
    );
    assert!(
        !text.contains("/a/"),
        "no one-time link in a channel: {text}"
    );

    // The slow target is retried after its timeouts; the run meanwhile is decided
    // with the link the webhook carried, and finishes.
    poll(
        "a second attempt at the slow target",
        PATIENCE,
        || site.serve.log(),
        || (sink.requests("/slow").len() >= 2).then_some(()),
    );
    let link = message["links"][0]["url"].as_str().unwrap();
    let path = link
        .split_once("127.0.0.1")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    let r = site.post_form(
        &path,
        &[("Origin", &site.origin())],
        &[("decision", "approve")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    site.wait(&run, "succeeded");
    let api = site.get(Some("alice"), &format!("/api/runs/{run}")).json();
    let notes = api["notifications"].as_array().unwrap();
    let hook_row = notes
        .iter()
        .find(|n| n["target"].as_str().unwrap().contains("HOOK_URL"))
        .unwrap();
    assert_eq!(hook_row["status"], "delivered");
    assert_eq!(hook_row["attempts"], 2);
    let slow_row = notes
        .iter()
        .find(|n| n["target"].as_str().unwrap().contains("SLOW_URL"))
        .unwrap();
    assert_eq!(slow_row["status"], "pending");
    assert_eq!(
        site.get(None, "/metrics").status,
        401,
        "with people, metrics need a token"
    );
    assert_eq!(site.get(None, "/readyz").status, 401);
    let metrics = site.get(Some("carol"), "/metrics").body;
    assert!(
        metrics.contains("flowc_notifications{status=\"delivered\"}"),
        "{metrics}"
    );
    assert!(slow_row["attempts"].as_i64().unwrap() >= 1);
}

/// A site whose people file names the webhook signing key (from `NOTIFY_KEY`).
fn site_with_secret(sink: &Sink, secret: &str) -> Site {
    Site::start_with(
        vec![
            ("HOOK_URL", sink.url("/hook")),
            ("SLACK_URL", sink.url("/slack")),
            ("SLOW_URL", sink.url("/slow")),
            ("FAIL_URL", sink.url("/fail")),
            ("NOTIFY_KEY", secret.to_string()),
            ("FLOWC_NOTIFY_BACKOFF_MS", "200".into()),
            ("FLOWC_NOTIFY_TIMEOUT_MS", "500".into()),
        ],
        Some("env:NOTIFY_KEY"),
    )
}

#[test]
fn a_secret_the_service_knows_is_never_shown_even_when_a_step_printed_it() {
    let sink = Sink::start(|_, _| Some(200));
    let secret = "whsec_bGVhay10ZXN0LWtleS0xMjM0";
    let site = site_with_secret(&sink, secret);
    let run = site.submit("dora", "leak.flow");
    site.wait(&run, "succeeded");
    let stored = site.outputs(&run);
    assert!(
        stored[0]["stdout"].as_str().unwrap().contains(secret),
        "the run did not know it was a secret, so the journal has it"
    );
    for path in [
        format!("/runs/{run}"),
        format!("/api/runs/{run}/events"),
        format!("/api/runs/{run}"),
    ] {
        let r = site.get(Some("alice"), &path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains(secret) && !r.body.contains("bGVhay10ZXN0LWtleS0xMjM0"),
            "{path} shows the key"
        );
    }
    let page = site.get(Some("alice"), &format!("/runs/{run}")).body;
    assert!(page.contains("key=[redacted]"), "{page}");
}

#[test]
fn bad_requests_get_a_clear_error_and_the_service_stays_up() {
    let site = Site::start(vec![]);
    for path in [
        "/runs/%00",
        "/api/runs/zzz",
        "/api/runs/x/events?after=-5&limit=999999999",
        "/a/%FF%FE",
    ] {
        let r = site.get(Some("alice"), path);
        assert!(
            matches!(r.status, 400 | 404),
            "{path}: {} {}",
            r.status,
            r.body
        );
    }
    let long = format!("/a/{}", "a".repeat(300));
    assert_eq!(site.get(None, &long).status, 404);
    let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    for (body, status) in [
        ("", 400),
        ("[]", 400),
        ("{\"file\":\"../../etc/passwd\"}", 403),
        ("{\"file\":\"/etc/passwd\"}", 403),
        ("{\"file\":\"gate.flow\",\"inputs\":{\"x\":1}}", 400),
        (deep.as_str(), 400),
    ] {
        let r = common::service::http(
            site.port(),
            "POST",
            "/api/runs",
            &[("Authorization", &site.bearer("alice"))],
            body.as_bytes(),
        );
        assert_eq!(r.status, status, "{body:.40}: {}", r.body);
        assert!(r.json()["error"].is_string(), "{}", r.body);
    }
    let huge = vec![b'x'; 2 << 20];
    let r = common::service::http(
        site.port(),
        "POST",
        "/api/runs",
        &[("Authorization", &site.bearer("alice"))],
        &huge,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(site.get(None, "/healthz").status, 200, "still up");
    assert!(!site.serve.log().contains("panicked"));
}

#[test]
fn the_run_page_shows_an_agents_tool_calls_as_text() {
    let site = Site::start(vec![]);
    let run = site.submit("dora", "agent.flow");
    site.wait(&run, "succeeded");
    let page = site.get(Some("alice"), &format!("/runs/{run}"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<h2>Tool calls</h2>"), "{}", page.body);
    assert!(
        page.body.contains("<code>shout</code> (read) · ok"),
        "{}",
        page.body
    );
    // The arguments and the result are the model's and the tool's text, escaped.
    assert!(!page.body.contains("<b>&lt;i&gt;") && !page.body.contains("<i>hi</i>"));
    assert!(
        page.body
            .contains("&lt;b&gt;&lt;i&gt;hi&lt;/i&gt;&lt;/b&gt;"),
        "{}",
        page.body
    );
}

/// Reads a server-sent event stream until `data: N` lines number `want`.
fn live_ids(stream: &mut std::net::TcpStream, buf: &mut String, want: usize) -> Vec<i64> {
    use std::io::Read;
    let mut chunk = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ids: Vec<i64> = buf
            .lines()
            .filter_map(|l| l.strip_prefix("data: ")?.trim().parse().ok())
            .collect();
        if ids.len() >= want {
            return ids;
        }
        assert!(std::time::Instant::now() < deadline, "no event: {buf}");
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the stream ended: {buf}"),
            Ok(n) => buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
            Err(_) => {}
        }
    }
}

#[test]
fn two_open_pages_hear_that_the_journal_moved_on() {
    use std::io::Write;
    let site = Site::start(vec![]);
    let auth = site.bearer("alice");
    let open = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", site.port())).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let req = format!(
            "GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nAccept: text/event-stream\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        s
    };
    let (mut a, mut b) = (open(), open());
    let (mut abuf, mut bbuf) = (String::new(), String::new());
    let first_a = live_ids(&mut a, &mut abuf, 1)[0];
    let first_b = live_ids(&mut b, &mut bbuf, 1)[0];
    assert_eq!(
        first_a, first_b,
        "both pages start from the same journal state"
    );
    let run = site.submit("dora", "agent.flow");
    site.wait(&run, "succeeded");
    // Both streams say the journal moved on.
    let later_a = *live_ids(&mut a, &mut abuf, 2).last().unwrap();
    let later_b = *live_ids(&mut b, &mut bbuf, 2).last().unwrap();
    assert!(later_a > first_a && later_b > first_b, "{abuf}\n{bbuf}");
}
