//! `flowc serve` end to end: the real binary with a fake clock, real signals
//! and real HTTP. Cron slots fire once each across restarts, outages, DST and
//! two services; webhooks are verified, deduplicated and typed; runs survive
//! the death of the service or of their own process; a driver that lost its
//! lease cannot write; SIGTERM drains; cancel stops what runs.
#![allow(clippy::unwrap_used)]

mod common;
use common::service::{
    FakeClock, PATIENCE, Reaped, Serve, ServeOpts, fires, fixture, http, journal, lines, poll,
    queued_fires, run_log, runs, status, ts, wait_status,
};
use common::{BIN, flowc, stderr};
use flowc::serve::rfc3339;
use jiff::{SignedDuration, Timestamp};
use nix::sys::signal::Signal;
use serde_json::{Value as Json, json};
use std::path::Path;
use std::process::{Command, Stdio};

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// The cron cursor of `trigger`: set once the service has looked at its clock.
fn cursor(dir: &Path, trigger: &str) -> Option<i64> {
    journal(dir)?
        .connection()
        .query_row(
            "SELECT slot FROM trigger_cursors WHERE trigger = ?1",
            flowc::journal::params![trigger],
            |r| r.get(0),
        )
        .ok()
}

/// Waits until the service has started every cron trigger's cursor, so that
/// the clock may move: a trigger's first look at the clock is where it starts.
fn wait_cursors(serve: &Serve, triggers: &[&str]) {
    poll(
        "the cron cursors",
        PATIENCE,
        || serve.log(),
        || {
            triggers
                .iter()
                .all(|t| cursor(&serve.dir, t).is_some())
                .then_some(())
        },
    );
}

/// Waits until a fire of `trigger` keyed `key` is recorded.
fn wait_fire(serve: &Serve, trigger: &str, key: &str) -> flowc::journal::FireRow {
    poll(
        &format!("trigger `{trigger}` to fire `{key}`"),
        PATIENCE,
        || serve.log(),
        || {
            fires(&serve.dir, trigger)
                .into_iter()
                .find(|f| f.key == key)
        },
    )
}

/// Waits until `dir`'s journal holds `count` runs, all ended.
fn wait_all_ended(dir: &Path, count: usize, context: impl Fn() -> String) {
    poll(&format!("{count} runs to end"), PATIENCE, &context, || {
        let all = runs(dir);
        (all.len() == count
            && all
                .iter()
                .all(|r| ["succeeded", "failed", "cancelled"].contains(&r.status.as_str())))
        .then_some(())
    });
}

/// `flowc ARGS` in `dir` with extra environment.
fn flowc_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_TEST_CLOCK")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `flowc submit FILE` in `dir`; the run id.
fn submit(dir: &Path, flow: &str) -> String {
    let out = flowc(dir, &["submit", fixture(flow).to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// How many times each line occurs in `marks`.
fn counts(dir: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for line in lines(dir, "marks") {
        *out.entry(line).or_default() += 1;
    }
    out
}

/// The service's log and the run's, for failure messages.
fn context(serve: &Serve, run: &str) -> String {
    format!("{}{}", serve.log(), run_log(&serve.dir, run))
}

/// `flowc replay RUN` verifies the run's journal.
fn replay_ok(dir: &Path, run: &str) {
    let out = flowc(dir, &["replay", run]);
    assert!(out.status.success(), "replay of {run}: {}", stderr(&out));
}

// ---------------------------------------------------------------- cron

#[test]
fn cron_fires_every_slot_of_a_day_once_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let day = ts("2026-06-01T00:00:00Z");
    let clock = FakeClock::new(d, "2026-05-31T23:59:00Z");
    let start = || {
        Serve::start(
            d,
            ServeOpts {
                flows: vec![fixture("hourly.flow")],
                clock: Some(&clock),
                ..Default::default()
            },
        )
    };
    let mut serve = start();
    wait_cursors(&serve, &["hourly"]);
    for h in 0..24 {
        if h == 12 {
            // A restart in the middle of the day, the clock unchanged.
            serve.stop();
            serve = start();
        }
        let slot = day + hours(h);
        clock.set_ts(slot + secs(5));
        wait_fire(&serve, "hourly", &rfc3339(slot.as_millisecond()));
    }
    wait_all_ended(d, 24, || serve.log());
    // The second service went on from where the first stopped: it tried no
    // slot of the morning again, not even as a duplicate.
    let tried: Vec<String> = serve
        .events("trigger.fired")
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    let afternoon: Vec<String> = (12..24)
        .map(|h| rfc3339((day + hours(h)).as_millisecond()))
        .collect();
    assert_eq!(tried, afternoon, "{}", serve.log());
    let fired = fires(d, "hourly");
    let keys: Vec<String> = fired.iter().map(|f| f.key.clone()).collect();
    let want: Vec<String> = (0..24)
        .map(|h| rfc3339((day + hours(h)).as_millisecond()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted, want,
        "every hour fires once, nothing else is recorded"
    );
    assert!(fired.iter().all(|f| f.outcome == "queued"), "{fired:?}");
    let all = runs(d);
    assert_eq!(all.len(), 24);
    for run in &all {
        assert_eq!(run.status, "succeeded", "{}", run_log(d, &run.id));
    }
    let mut run_ids: Vec<_> = fired.iter().filter_map(|f| f.run_id.clone()).collect();
    run_ids.sort();
    run_ids.dedup();
    assert_eq!(run_ids.len(), 24, "one run per slot");
    // Each slot's run did its work exactly once.
    let marks = counts(d);
    assert_eq!(marks.len(), 24, "{marks:?}");
    assert!(marks.values().all(|n| *n == 1), "{marks:?}");
    assert!(marks.contains_key("2026-06-01T12:00:00+00:00"), "{marks:?}");
    serve.stop();
}

#[test]
fn catchup_after_a_three_day_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clock = FakeClock::new(d, "2026-06-01T00:10:00Z");
    let opts = || ServeOpts {
        flows: vec![fixture("catchup.flow")],
        clock: Some(&clock),
        args: vec!["--workers", "1"],
        ..Default::default()
    };
    let mut serve = Serve::start(d, opts());
    wait_cursors(&serve, &["latest", "all_in_window", "capped"]);
    serve.stop();
    assert!(runs(d).is_empty(), "nothing is due at the first start");

    // Three days and half an hour later: every slot since is late.
    clock.set("2026-06-04T00:42:30Z");
    let serve = Serve::start(d, opts());
    let missed_hours = 72;
    let done = || {
        queued_fires(d, "latest").len() == 1
            && queued_fires(d, "all_in_window").len() == 48
            && queued_fires(d, "capped").len() == 100
    };
    poll(
        "the catch-up fires",
        PATIENCE,
        || serve.log(),
        || done().then_some(()),
    );

    // latest: one run, for the newest missed slot, and the rest counted.
    let latest = queued_fires(d, "latest");
    assert_eq!(latest[0].key, "2026-06-04T00:00:00Z");
    let missed: Vec<_> = fires(d, "latest")
        .into_iter()
        .filter(|f| f.outcome != "queued")
        .collect();
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].outcome, "missed");
    assert_eq!(
        missed[0].key,
        "missed:2026-06-01T01:00:00Z..2026-06-04T00:00:00Z"
    );
    assert_eq!(missed[0].data["missed"], missed_hours);
    assert_eq!(missed[0].data["ran"], 1);
    assert_eq!(missed[0].data["not_run"], missed_hours - 1);
    // (Its run is queued among 148 others behind one worker: what it will
    // run with is known now; other tests see runs like it succeed.)
    let run = latest[0].run_id.clone().unwrap();
    let row = journal(d).unwrap().run(&run).unwrap();
    assert_eq!(row.inputs["at"], "2026-06-04T00:00:00+00:00");

    // all, 2d window: every slot of the last two days, oldest first.
    let window: Vec<String> = queued_fires(d, "all_in_window")
        .iter()
        .map(|f| f.key.clone())
        .collect();
    let want: Vec<String> = (0..48)
        .map(|h| rfc3339((ts("2026-06-02T01:00:00Z") + hours(h)).as_millisecond()))
        .collect();
    assert_eq!(window, want);
    let rest: Vec<_> = fires(d, "all_in_window")
        .into_iter()
        .filter(|f| f.outcome != "queued")
        .collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].outcome, "missed");
    assert_eq!(rest[0].data["ran"], 48);
    assert_eq!(rest[0].data["not_run"], missed_hours - 48);

    // all, more missed than the cap: the newest 100 run, the cap is journaled.
    let capped = queued_fires(d, "capped");
    assert_eq!(capped.first().unwrap().key, "2026-06-03T16:25:00Z");
    assert_eq!(capped.last().unwrap().key, "2026-06-04T00:40:00Z");
    let rows: Vec<_> = fires(d, "capped")
        .into_iter()
        .filter(|f| f.outcome != "queued")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].outcome, "capped");
    assert_eq!(rows[0].data["more_than_cap"], true);
    assert_eq!(rows[0].data["cap"], 100);
    assert_eq!(rows[0].data["ran"], 100);

    // One run per fire that queued one, and nothing else.
    assert_eq!(runs(d).len(), 1 + 48 + 100);
}

/// Steps the clock through a night in ten-minute steps; each step is seen by
/// the service before the next (the `beat` trigger fires on it). Returns, per
/// step, the `berlin` fires recorded by then.
fn walk_night(serve: &Serve, clock: &FakeClock, from: Timestamp, to: Timestamp) -> Vec<usize> {
    let mut seen = Vec::new();
    let mut t = from;
    while t <= to {
        clock.set_ts(t + secs(5));
        wait_fire(serve, "beat", &rfc3339(t.as_millisecond()));
        seen.push(fires(&serve.dir, "berlin").len());
        t += SignedDuration::from_mins(10);
    }
    seen
}

fn dst_night(start: &str, from: &str, to: &str, key: &str, scheduled_at: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clock = FakeClock::new(d, start);
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("dst.flow")],
            clock: Some(&clock),
            args: vec!["--workers", "2"],
            ..Default::default()
        },
    );
    wait_cursors(&serve, &["berlin", "beat"]);
    let (from, to) = (ts(from), ts(to));
    let seen = walk_night(&serve, &clock, from, to);
    let fired = fires(d, "berlin");
    assert_eq!(
        fired.len(),
        1,
        "one fire in the night: {fired:?}\n{}",
        serve.log()
    );
    assert_eq!(fired[0].key, key);
    assert_eq!(fired[0].outcome, "queued");
    assert_eq!(fired[0].data["event"]["scheduled_at"], scheduled_at);
    // It fired at the step that passed its instant, not before.
    let step = usize::try_from(ts(key).duration_since(from).as_mins() / 10).unwrap();
    assert_eq!(seen[step - 1], 0, "{seen:?}");
    assert_eq!(seen[step], 1, "{seen:?}");
    let run = fired[0].run_id.clone().unwrap();
    wait_status(d, &run, "succeeded", || context(&serve, &run));
    let row = journal(d).unwrap().run(&run).unwrap();
    assert_eq!(row.output, Some(json!(scheduled_at)));
    // `overlap: skip`: the beat's first run still holds, so every later beat
    // is journaled as skipped, with the reason.
    let beats = fires(d, "beat");
    assert_eq!(beats.len(), seen.len());
    assert_eq!(beats[0].outcome, "queued");
    for beat in &beats[1..] {
        assert_eq!(beat.outcome, "skipped", "{beat:?}");
        assert!(beat.run_id.is_none(), "{beat:?}");
        let reason = beat.data["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("of this trigger is"), "{beat:?}");
    }
    serve.kill();
}

#[test]
fn dst_spring_forward_fires_once_right_after_the_gap() {
    // 02:30 does not exist in Berlin on 2026-03-29: it fires at 03:00 CEST.
    dst_night(
        "2026-03-28T22:55:00Z",
        "2026-03-28T23:00:00Z",
        "2026-03-29T03:00:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-29T03:00:00+02:00",
    );
}

#[test]
fn dst_fall_back_fires_once_at_the_first_occurrence() {
    // 02:30 happens twice in Berlin on 2026-10-25: it fires at the first (CEST).
    dst_night(
        "2026-10-24T21:55:00Z",
        "2026-10-24T22:00:00Z",
        "2026-10-25T02:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-25T02:30:00+02:00",
    );
}

#[test]
fn two_services_on_one_journal_run_each_slot_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let day = ts("2026-06-01T00:00:00Z");
    let clock = FakeClock::new(d, "2026-05-31T23:59:00Z");
    let start = || {
        Serve::start(
            d,
            ServeOpts {
                flows: vec![fixture("hourly.flow")],
                clock: Some(&clock),
                ..Default::default()
            },
        )
    };
    let mut a = start();
    let mut b = start();
    wait_cursors(&a, &["hourly"]);
    let both = || format!("{}{}", a.log(), b.log());
    let slots = 12;
    for h in 0..slots {
        let slot = day + hours(h);
        clock.set_ts(slot + secs(5));
        let key = rfc3339(slot.as_millisecond());
        poll(&format!("slot {key}"), PATIENCE, both, || {
            fires(d, "hourly")
                .iter()
                .any(|f| f.key == key)
                .then_some(())
        });
    }
    wait_all_ended(d, slots as usize, both);
    let fired = queued_fires(d, "hourly");
    assert_eq!(fired.len(), slots as usize, "{fired:?}");
    for run in runs(d) {
        assert_eq!(run.status, "succeeded", "{}", run_log(d, &run.id));
        let started = journal(d)
            .unwrap()
            .events_of(&run.id, Some("run_started"))
            .unwrap();
        assert_eq!(started.len(), 1, "run {} was started twice", run.id);
    }
    let marks = counts(d);
    assert_eq!(marks.len(), slots as usize, "{marks:?}");
    assert!(
        marks.values().all(|n| *n == 1),
        "a slot ran twice: {marks:?}"
    );
    // A service that ticked late saw slots the other had fired: it neither
    // fired them again nor journaled them as missed.
    let all = fires(d, "hourly");
    assert!(
        all.iter().all(|f| f.outcome == "queued"),
        "{all:#?}\n{}",
        both()
    );
    a.stop();
    b.stop();
}

// ---------------------------------------------------------------- webhooks

fn standard_sign(key: &[u8], id: &str, stamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(format!("{id}.{stamp}.").as_bytes());
    m.update(body);
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    format!("v1,{sig}")
}

#[test]
fn webhooks_verify_dedup_and_type_their_body() {
    use base64::Engine;
    use flowc::serve::webhook::sign_github;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let secret = "gh-s3cret";
    let key = b"standard key, 32 bytes long!!!!!";
    let whsec = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("webhooks.flow")],
            env: vec![("HOOK_SECRET", secret.into()), ("STANDARD_SECRET", whsec)],
            ..Default::default()
        },
    );
    let port = serve.port();
    let github = |delivery: &str, body: &[u8], signature: &str| {
        http(
            port,
            "POST",
            "/hooks/github",
            &[
                ("Content-Type", "application/json"),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", signature),
            ],
            body,
        )
    };
    // GitHub sends much more than the record names: the rest is let through.
    let body = br#"{"action":"opened","number":7,"sender":{"login":"octocat"}}"#;

    // Valid: 202 with the run, which gets the body as its typed record.
    let reply = github("d-1", body, &sign_github(secret.as_bytes(), body));
    assert_eq!(reply.status, 202, "{reply:?}\n{}", serve.log());
    let run = reply.json()["run_id"].as_str().unwrap().to_string();
    wait_status(d, &run, "succeeded", || context(&serve, &run));
    let row = journal(d).unwrap().run(&run).unwrap();
    assert_eq!(row.inputs["issue"]["action"], "opened");
    assert_eq!(row.inputs["issue"]["number"], 7);
    assert_eq!(row.output, Some(json!("opened#7")));

    // The same delivery again: 200, the same run, no new one.
    let again = github("d-1", body, &sign_github(secret.as_bytes(), body));
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(again.json()["run_id"], run.as_str());

    // A body changed after signing, or signed with another secret: 401.
    let tampered = br#"{"action":"opened","number":8}"#;
    let reply = github("d-2", tampered, &sign_github(secret.as_bytes(), body));
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = github("d-3", body, &sign_github(b"not the secret", body));
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = github("d-3", body, "sha256=00");
    assert_eq!(reply.status, 401, "{reply:?}");

    // A body that does not fit `Issue`: 422, journaled as rejected, no run.
    let wrong = br#"{"action":"opened","number":"seven"}"#;
    let reply = github("d-4", wrong, &sign_github(secret.as_bytes(), wrong));
    assert_eq!(reply.status, 422, "{reply:?}");
    // Its redelivery gets the same answer, and still no run.
    let reply = github("d-4", wrong, &sign_github(secret.as_bytes(), wrong));
    assert_eq!(reply.status, 422, "{reply:?}");
    // Over `max_body` (1 KiB): 413.
    let big = format!(r#"{{"action":"{}","number":1}}"#, "x".repeat(2048));
    let reply = github(
        "d-5",
        big.as_bytes(),
        &sign_github(secret.as_bytes(), big.as_bytes()),
    );
    assert_eq!(reply.status, 413, "{reply:?}");

    let rows = fires(d, "github");
    let by_key: Vec<(&str, &str)> = rows
        .iter()
        .map(|f| (f.key.as_str(), f.outcome.as_str()))
        .collect();
    assert_eq!(
        by_key,
        [("delivery:d-1", "queued"), ("delivery:d-4", "rejected")],
        "only the valid delivery and the ill-typed one are journaled"
    );
    assert!(
        rows[1].data["error"]
            .as_str()
            .is_some_and(|e| e.contains("number")),
        "{:?}",
        rows[1].data
    );

    // Standard Webhooks: valid, stale, redelivered.
    let standard = |id: &str, stamp: i64, body: &[u8]| {
        http(
            port,
            "POST",
            "/hooks/standard",
            &[
                ("Content-Type", "application/json"),
                ("webhook-id", id),
                ("webhook-timestamp", &stamp.to_string()),
                ("webhook-signature", &standard_sign(key, id, stamp, body)),
            ],
            body,
        )
    };
    let now = Timestamp::now().as_second();
    let body = br#"{"action":"closed","number":9}"#;
    let reply = standard("msg_1", now, body);
    assert_eq!(reply.status, 202, "{reply:?}\n{}", serve.log());
    let second = reply.json()["run_id"].as_str().unwrap().to_string();
    let stale = standard("msg_2", now - 600, body);
    assert_eq!(stale.status, 401, "{stale:?}");
    assert!(stale.body.contains("tolerance"), "{stale:?}");
    let again = standard("msg_1", now, body);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json()["run_id"], second.as_str());
    wait_status(d, &second, "succeeded", || context(&serve, &second));
    let row = journal(d).unwrap().run(&second).unwrap();
    assert_eq!(row.output, Some(json!("closed#9")));

    // Two runs in all: one per accepted delivery.
    assert_eq!(runs(d).len(), 2);
    let metrics = http(port, "GET", "/metrics", &[], b"");
    assert_eq!(metrics.status, 200);
    for line in [
        r#"flowc_trigger_fires_total{trigger="github",outcome="queued"} 1"#,
        r#"flowc_trigger_fires_total{trigger="github",outcome="rejected"} 1"#,
        r#"flowc_trigger_fires_total{trigger="standard",outcome="queued"} 1"#,
        r#"flowc_runs_total{skill="triage",status="succeeded"} 2"#,
    ] {
        assert!(
            metrics.body.contains(line),
            "no `{line}` in\n{}",
            metrics.body
        );
    }
    assert_eq!(http(port, "GET", "/readyz", &[], b"").status, 200);
    assert_eq!(http(port, "GET", "/healthz", &[], b"").status, 200);
    assert_eq!(http(port, "GET", "/hooks/nowhere", &[], b"").status, 404);
    serve.stop();
}

// ---------------------------------------------------------------- recovery

#[test]
fn service_killed_mid_run_then_a_new_one_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = submit(d, "steps.flow");
    let opts = || ServeOpts {
        flows: vec![fixture("steps.flow")],
        ..Default::default()
    };
    let mut serve = Serve::start(d, opts());
    poll(
        "step b to start",
        PATIENCE,
        || serve.log(),
        || {
            lines(d, "marks")
                .contains(&"b-start".to_string())
                .then_some(())
        },
    );
    serve.kill();
    // Its run process notices that its service is gone and stops.
    poll(
        "the orphaned run to stop",
        PATIENCE,
        || run_log(d, &run),
        || (status(d, &run) == "interrupted").then_some(()),
    );
    let serve = Serve::start(d, opts());
    wait_status(d, &run, "succeeded", || context(&serve, &run));
    let marks = counts(d);
    assert_eq!(
        marks.get("a"),
        Some(&1),
        "a finished step ran again: {marks:?}"
    );
    assert_eq!(marks.get("b"), Some(&1), "{marks:?}");
    assert_eq!(marks.get("c"), Some(&1), "{marks:?}");
    assert_eq!(marks.get("b-start"), Some(&2), "{marks:?}");
    replay_ok(d, &run);
}

#[test]
fn run_process_killed_then_its_service_resumes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("steps.flow")],
            env: vec![("FLOWC_LEASE_STALE_MS", "2000".into())],
            ..Default::default()
        },
    );
    let run = submit(d, "steps.flow");
    let claimed = serve.wait_event("run.claimed", |e| e["run"] == run.as_str());
    let pid = claimed["pid"].as_i64().unwrap() as i32;
    poll(
        "step b to start",
        PATIENCE,
        || serve.log(),
        || {
            lines(d, "marks")
                .contains(&"b-start".to_string())
                .then_some(())
        },
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    serve.wait_event("run.exited", |e| {
        e["run"] == run.as_str() && e["process"] == "killed by signal 9"
    });
    wait_status(d, &run, "succeeded", || context(&serve, &run));
    let claims = serve.claimed();
    assert!(
        claims.iter().filter(|(_, r)| *r == run).count() >= 2,
        "the same service drove it again: {}",
        serve.log()
    );
    let marks = counts(d);
    assert_eq!(
        marks.get("a"),
        Some(&1),
        "a finished step ran again: {marks:?}"
    );
    assert_eq!(marks.get("b"), Some(&1), "{marks:?}");
    // The killed step ran again; its first process did not finish it.
    assert_eq!(marks.get("b-start"), Some(&2), "{marks:?}");
    assert_eq!(marks.get("c"), Some(&1), "{marks:?}");
    replay_ok(d, &run);
    serve.stop();
}

#[test]
fn sigterm_lets_a_short_step_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = submit(d, "slow.flow");
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("slow.flow")],
            args: vec!["--drain-timeout", "10s"],
            env: vec![("NAP", "2".into())],
            ..Default::default()
        },
    );
    poll(
        "the step to start",
        PATIENCE,
        || serve.log(),
        || {
            lines(d, "marks")
                .contains(&"start".to_string())
                .then_some(())
        },
    );
    serve.signal(Signal::SIGTERM);
    let code = serve.wait_exit();
    assert_eq!(code.code(), Some(0), "{}", serve.log());
    assert_eq!(status(d, &run), "succeeded", "{}", run_log(d, &run));
    assert_eq!(lines(d, "marks"), ["start", "end"]);
}

#[test]
fn sigterm_interrupts_a_long_step_after_the_drain_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = submit(d, "slow.flow");
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("slow.flow")],
            args: vec!["--drain-timeout", "1s"],
            env: vec![("NAP", "30".into())],
            ..Default::default()
        },
    );
    poll(
        "the step to start",
        PATIENCE,
        || serve.log(),
        || {
            lines(d, "marks")
                .contains(&"start".to_string())
                .then_some(())
        },
    );
    let asked = std::time::Instant::now();
    serve.signal(Signal::SIGTERM);
    let code = serve.wait_exit();
    assert_eq!(code.code(), Some(0), "{}", serve.log());
    assert!(asked.elapsed().as_secs() < 20, "it waited for the step");
    assert_eq!(status(d, &run), "interrupted", "{}", run_log(d, &run));
    let nodes = journal(d).unwrap().nodes(&run).unwrap();
    assert_eq!(nodes[0].status, "interrupted");

    let serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("slow.flow")],
            env: vec![("NAP", "0".into())],
            ..Default::default()
        },
    );
    wait_status(d, &run, "succeeded", || context(&serve, &run));
    assert_eq!(lines(d, "marks"), ["start", "start", "end"]);
    replay_ok(d, &run);
}

#[test]
fn a_second_sigterm_interrupts_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let run = submit(d, "slow.flow");
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("slow.flow")],
            args: vec!["--drain-timeout", "60s"],
            env: vec![("NAP", "30".into())],
            ..Default::default()
        },
    );
    poll(
        "the step to start",
        PATIENCE,
        || serve.log(),
        || {
            lines(d, "marks")
                .contains(&"start".to_string())
                .then_some(())
        },
    );
    serve.signal(Signal::SIGTERM);
    serve.wait_event("serve.draining", |_| true);
    // Draining, it is not ready: a load balancer stops sending webhooks.
    let ready = http(serve.port(), "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("shutting down"), "{ready:?}");
    let asked = std::time::Instant::now();
    serve.signal(Signal::SIGTERM);
    let code = serve.wait_exit();
    assert_eq!(code.code(), Some(0), "{}", serve.log());
    assert!(asked.elapsed().as_secs() < 20, "it waited for the step");
    assert_eq!(status(d, &run), "interrupted", "{}", run_log(d, &run));
    assert_eq!(lines(d, "marks"), ["start"]);
}

#[test]
fn a_stalled_driver_that_lost_its_lease_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let flow = fixture("slow.flow");
    let env = |nap: &'static str| [("NAP", nap), ("FLOWC_LEASE_STALE_MS", "1000")];
    let mut first = Reaped(
        Command::new(BIN)
            .args(["run", flow.to_str().unwrap(), "--no-input"])
            .current_dir(d)
            .env_remove("FLOWC_JOURNAL")
            .envs(env("4"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = nix::unistd::Pid::from_raw(first.0.id() as i32);
    let context = || String::new();
    poll("the step to start", PATIENCE, context, || {
        lines(d, "marks")
            .contains(&"start".to_string())
            .then_some(())
    });
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap();
    let run = common::latest_run(d);
    // Stopped, it no longer renews its lease: wait until it is stale (1 s) and then some.
    poll("the lease to go stale", PATIENCE, context, || {
        let beat: i64 = journal(d)?
            .connection()
            .query_row(
                "SELECT heartbeat FROM leases WHERE run_id = ?1",
                flowc::journal::params![run],
                |r| r.get(0),
            )
            .ok()?;
        (flowc::journal::now_ms() - beat > 1_500).then_some(())
    });
    let second = flowc_env(d, &["run", "--resume", &run, "--no-input"], &env("0"));
    assert!(
        second.status.success(),
        "the takeover failed: {}",
        stderr(&second)
    );
    assert_eq!(status(d, &run), "succeeded");

    nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
    let code = poll("the first driver to stop", PATIENCE, context, || {
        first.0.try_wait().unwrap()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(first.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!code.success(), "the fenced driver exited 0: {err}");
    assert!(err.contains("taken over"), "{err}");

    let j = journal(d).unwrap();
    let ends: Vec<Json> = j
        .events_of(&run, Some("run_status"))
        .unwrap()
        .into_iter()
        .map(|e| e.data["status"].clone())
        .collect();
    assert_eq!(
        ends.iter().filter(|s| *s == "succeeded").count(),
        1,
        "{ends:?}"
    );
    let finished = j
        .events_of(&run, Some("node_status"))
        .unwrap()
        .into_iter()
        .filter(|e| e.data["status"] == "succeeded")
        .count();
    assert_eq!(finished, 1, "the step is journaled as finished once");
    assert_eq!(j.run(&run).unwrap().status, "succeeded");
    replay_ok(d, &run);
}

// ---------------------------------------------------------------- submit, cancel, triggers

#[test]
fn submit_then_cancel_a_queued_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = flowc(
        d,
        &["submit", fixture("slow.flow").to_str().unwrap(), "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: Json = serde_json::from_slice(&out.stdout).unwrap();
    let run = reply["run_id"].as_str().unwrap().to_string();
    assert_eq!(status(d, &run), "queued");
    assert_eq!(journal(d).unwrap().queue().unwrap().len(), 1);

    let out = flowc(d, &["cancel", &run]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status(d, &run), "cancelled");
    assert!(journal(d).unwrap().queue().unwrap().is_empty());
    let again = flowc(d, &["cancel", &run]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    replay_ok(d, &run);
}

/// Processes working in `dir` whose command line is exactly `argv` (a step's `sleep N`).
fn processes(dir: &Path, argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .collect()
}

#[test]
fn cancel_kills_the_running_step_of_a_served_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![fixture("slow.flow")],
            // A length no other test sleeps, to find this step's process.
            env: vec![("NAP", "37".into())],
            ..Default::default()
        },
    );
    let run = submit(d, "slow.flow");
    wait_status(d, &run, "running", || serve.log());
    poll(
        "the step's process",
        PATIENCE,
        || serve.log(),
        || {
            (!processes(d, &["sleep", "37"]).is_empty()
                && lines(d, "marks").contains(&"start".to_string()))
            .then_some(())
        },
    );
    let out = flowc(d, &["cancel", &run]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), serve.log());
    assert_eq!(status(d, &run), "cancelled");
    let nodes = journal(d).unwrap().nodes(&run).unwrap();
    assert_eq!(nodes[0].status, "cancelled");
    poll(
        "the step's process to be gone",
        PATIENCE,
        || serve.log(),
        || processes(d, &["sleep", "37"]).is_empty().then_some(()),
    );
    serve.wait_event("run.exited", |e| {
        e["run"] == run.as_str() && e["status"] == "cancelled"
    });
    assert_eq!(lines(d, "marks"), ["start"]);
    assert!(journal(d).unwrap().queue().unwrap().is_empty());
    replay_ok(d, &run);
    serve.stop();
}

#[test]
fn triggers_lists_next_fires_by_the_fake_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clock = FakeClock::new(d, "2026-03-28T12:00:00Z");
    let flow = fixture("slow.flow");
    let clock_path = clock.path.to_str().unwrap();
    let env = [("FLOWC_TEST_CLOCK", clock_path)];
    let out = flowc_env(d, &["triggers", flow.to_str().unwrap(), "--json"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "nightly");
    assert_eq!(listed[0]["kind"], "cron");
    // 03:00 in Berlin: CET until the night of the 29th, then CEST.
    assert_eq!(
        listed[0]["next"],
        json!([
            "2026-03-29T01:00:00Z",
            "2026-03-30T01:00:00Z",
            "2026-03-31T01:00:00Z"
        ])
    );
    clock.set("2026-10-24T12:00:00Z");
    let args = ["triggers", flow.to_str().unwrap(), "--json", "--next", "2"];
    let out = flowc_env(d, &args, &env);
    let listed: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed[0]["next"],
        json!(["2026-10-25T02:00:00Z", "2026-10-26T02:00:00Z"])
    );
}

#[test]
fn trigger_fire_queues_a_run_that_the_service_drives() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let flow = fixture("slow.flow");
    let clock = FakeClock::new(d, "2026-03-28T12:00:00Z");
    let serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![flow.clone()],
            clock: Some(&clock),
            env: vec![("NAP", "0".into())],
            ..Default::default()
        },
    );
    let args = ["trigger", "fire", "nightly", flow.to_str().unwrap()];
    let out = flowc_env(
        d,
        &args,
        &[("FLOWC_TEST_CLOCK", clock.path.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let run = String::from_utf8(out.stdout).unwrap().trim().to_string();
    wait_status(d, &run, "succeeded", || context(&serve, &run));
    let fired = fires(d, "nightly");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(fired[0].key.starts_with("manual:"), "{:?}", fired[0]);
    assert_eq!(fired[0].run_id.as_deref(), Some(run.as_str()));
    // Fired by hand, "now" is the service's clock.
    assert_eq!(
        fired[0].data["event"]["scheduled_at"],
        "2026-03-28T12:00:00Z"
    );
    let unknown = flowc(d, &["trigger", "fire", "nightyl", flow.to_str().unwrap()]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("nightly"), "{}", stderr(&unknown));
}
