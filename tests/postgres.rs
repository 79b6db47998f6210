#![allow(clippy::unwrap_used)]
//! The journal on a real PostgreSQL server (`FLOWC_TEST_POSTGRES`, started
//! by `.ci/postgres`): the CLI's main job, errors a server can give, a
//! connection dropped mid-run, and two services sharing one database with
//! one of them killed.

#[macro_use]
mod common;

use common::service::{PATIENCE, Serve, ServeOpts, fixture, lines, poll};
use common::store::{Kind, TestStore};
use common::{BIN, stderr};
use flowc::journal::Journal;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `flowc ARGS` in `dir` on the journal at `store`.
fn flowc(dir: &Path, store: &TestStore, args: &[&str], env: &[(&str, &str)]) -> Output {
    let location = store.location();
    let mut all = vec![("FLOWC_JOURNAL", location.as_str())];
    all.extend_from_slice(env);
    common::flowc_env(dir, args, &all)
}

/// `flowc runs --journal JOURNAL` in `dir`, with `env`.
fn runs_on(dir: &Path, journal: &str, env: &[(&str, &str)]) -> Output {
    common::flowc_env(dir, &["runs", "--journal", journal], env)
}

/// Whether the journal's own session with the server is encrypted.
fn encrypted(j: &Journal) -> bool {
    j.connection()
        .query_row(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            flowc::journal::params![],
            |r| r.get(0),
        )
        .unwrap()
}

fn open(store: &TestStore) -> Journal {
    Journal::open_read_only(&store.path).unwrap()
}

fn status(store: &TestStore, run: &str) -> String {
    Journal::open_read_only(&store.path)
        .ok()
        .and_then(|j| j.run(run).ok())
        .map(|r| r.status)
        .unwrap_or_default()
}

#[test]
fn the_main_job_pauses_is_approved_resumes_and_replays_on_postgres() {
    let store = TestStore::new(Kind::Postgres);
    let d = store.dir.path();
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/source_release.flow");
    let out_dir = d.join("dist");
    let out = flowc(
        d,
        &store,
        &[
            "run",
            flow.to_str().unwrap(),
            "-i",
            &format!("out={}", out_dir.display()),
            "--no-input",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    // The URL's password is never shown.
    assert!(
        !stderr(&out).contains(&password(&store)),
        "{}",
        stderr(&out)
    );
    let runs = open(&store).runs().unwrap();
    assert_eq!(runs.len(), 1);
    let run = runs[0].id.clone();
    assert_eq!(runs[0].status, "paused");
    let out = flowc(d, &store, &["approve", &run, "publish_gate"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flowc(d, &store, &["run", "--resume", &run, "--no-input"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_dir.join("published/SHA256SUMS").is_file());
    let out = flowc(d, &store, &["replay", &run], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verifies"));
    // Nothing of the journal is on this machine but the state directory.
    assert!(!d.join(".flowc/journal.db").exists());
    for cmd in [
        &["stats"][..],
        &["failures"],
        &["runs", "--json"],
        &["status", &run],
    ] {
        let out = flowc(d, &store, cmd, &[]);
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    }
}

/// The password in the test server's URL.
fn password(store: &TestStore) -> String {
    let url = store.location();
    let auth = url.split('@').next().unwrap();
    auth.rsplit(':').next().unwrap().to_string()
}

#[test]
fn a_wrong_password_or_a_server_that_is_not_there_is_a_clear_error() {
    let store = TestStore::new(Kind::Postgres);
    let d = store.dir.path();
    let url = store.location();
    let secret = password(&store);
    let wrong = url.replacen(&format!(":{secret}@"), ":not-the-password@", 1);
    let out = runs_on(d, &wrong, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("not-the-password") && !err.contains(&secret),
        "{err}"
    );

    // The password can stay out of the URL (and command lines): `PGPASSWORD`.
    drop(Journal::open(&store.path, flowc::journal::Durability::Normal).unwrap());
    let bare = url.replacen(&format!(":{secret}@"), "@", 1);
    let out = runs_on(d, &bare, &[("PGPASSWORD", &secret)]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("postgres://flowc:x@127.0.0.1:{port}/flowc_test");
    let out = runs_on(d, &gone, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot open the journal") && err.contains("refused"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// How many times each line occurs in the `marks` files of `dirs`.
fn counts(dirs: &[&Path]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in dirs {
        for line in lines(d, "marks") {
            *out.entry(line).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_connection_dropped_mid_run_stops_the_run_cleanly_and_it_resumes() {
    let store = TestStore::new(Kind::Postgres);
    let d = store.dir.path();
    let flow = fixture("steps.flow");
    let child = Command::new(BIN)
        .args(["run", flow.to_str().unwrap(), "--no-input"])
        .current_dir(d)
        .env("FLOWC_JOURNAL", store.location())
        .env("NAP", "2")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    poll("step b to start", PATIENCE, String::new, || {
        lines(d, "marks")
            .contains(&"b-start".to_string())
            .then_some(())
    });
    // The server drops every connection to this database (a restart, a
    // failover, a network cut, as the client sees it).
    store.drop_connections();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "the run went on without its journal: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("journal"), "{err}");
    let runs = open(&store).runs().unwrap();
    let run = runs[0].id.clone();
    // Nothing half-written: the journal verifies, and the run resumes.
    let out = flowc(d, &store, &["replay", &run], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flowc(
        d,
        &store,
        &["run", "--resume", &run, "--no-input"],
        &[("NAP", "0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status(&store, &run), "succeeded");
    let marks = counts(&[d]);
    assert_eq!(
        marks.get("a"),
        Some(&1),
        "a finished step ran again: {marks:?}"
    );
    assert_eq!(marks.get("c"), Some(&1), "{marks:?}");
}

#[test]
fn two_services_share_the_queue_and_one_killed_leaves_its_runs_to_the_other() {
    let store = TestStore::new(Kind::Postgres);
    // Two "machines": separate working directories, nothing shared but the database.
    let (ma, mb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flow = fixture("steps.flow");
    let n = 6;
    let mut ids = Vec::new();
    for _ in 0..n {
        let out = flowc(ma.path(), &store, &["submit", flow.to_str().unwrap()], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }
    let opts = || ServeOpts {
        flows: vec![flow.clone()],
        args: vec!["--workers", "2"],
        env: vec![
            ("FLOWC_JOURNAL", store.location()),
            ("NAP", "1".to_string()),
            ("FLOWC_LEASE_STALE_MS", "1500".to_string()),
        ],
        ..Default::default()
    };
    let mut a = Serve::start(ma.path(), opts());
    let b = Serve::start(mb.path(), opts());
    let both = || format!("{}{}", a.log(), b.log());
    // Both take work: each has a step of its own running.
    poll("both services to be running steps", PATIENCE, both, || {
        (lines(ma.path(), "marks").contains(&"b-start".to_string())
            && lines(mb.path(), "marks").contains(&"b-start".to_string()))
        .then_some(())
    });
    a.kill();
    poll(
        "every run to succeed on the service left",
        PATIENCE * 2,
        || b.log(),
        || {
            ids.iter()
                .all(|id| status(&store, id) == "succeeded")
                .then_some(())
        },
    );
    let marks = counts(&[ma.path(), mb.path()]);
    assert_eq!(
        marks.get("a"),
        Some(&n),
        "a finished step ran again: {marks:?}"
    );
    assert_eq!(marks.get("b"), Some(&n), "{marks:?}");
    assert_eq!(marks.get("c"), Some(&n), "{marks:?}");
    let j = open(&store);
    for id in &ids {
        assert!(j.verify(id).unwrap().is_empty(), "run {id}");
        assert!(j.replay(id).unwrap().is_empty(), "run {id}");
    }
}

#[test]
fn a_cron_trigger_fires_each_slot_once_across_two_services_on_postgres() {
    use common::service::{FakeClock, fixture as serve_fixture};
    let store = TestStore::new(Kind::Postgres);
    let (ma, mb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clock = FakeClock::new(store.dir.path(), "2026-05-31T23:59:00Z");
    let day: jiff::Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
    let opts = || ServeOpts {
        flows: vec![serve_fixture("hourly.flow")],
        clock: Some(&clock),
        env: vec![("FLOWC_JOURNAL", store.location())],
        ..Default::default()
    };
    let a = Serve::start(ma.path(), opts());
    let b = Serve::start(mb.path(), opts());
    let both = || format!("{}{}", a.log(), b.log());
    let fires = || {
        Journal::open_read_only(&store.path)
            .ok()
            .and_then(|j| j.fires(Some("hourly"), 1000).ok())
            .unwrap_or_default()
    };
    // Both services have looked at the clock (their cursor is set) before it moves.
    poll("both services to tick", PATIENCE, both, || {
        (a.events("serve.started").len() == 1 && b.events("serve.started").len() == 1).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let slots = 4;
    for h in 0..slots {
        let slot = day + jiff::SignedDuration::from_hours(h);
        clock.set_ts(slot + jiff::SignedDuration::from_secs(5));
        let key = flowc::serve::rfc3339(slot.as_millisecond());
        poll(&format!("slot {key}"), PATIENCE, both, || {
            fires().iter().any(|f| f.key == key).then_some(())
        });
    }
    poll("every run to end", PATIENCE, both, || {
        let runs = open(&store).runs().unwrap();
        (runs.len() == slots as usize && runs.iter().all(|r| r.status == "succeeded")).then_some(())
    });
    let all = fires();
    assert_eq!(all.len(), slots as usize, "{all:#?}");
    assert!(all.iter().all(|f| f.outcome == "queued"), "{all:#?}");
    let marks = counts(&[ma.path(), mb.path()]);
    assert_eq!(marks.len(), slots as usize, "{marks:?}");
    assert!(
        marks.values().all(|n| *n == 1),
        "a slot ran twice: {marks:?}"
    );
}

#[test]
fn a_service_outlives_a_dropped_connection_and_goes_on_claiming() {
    let store = TestStore::new(Kind::Postgres);
    let d = store.dir.path();
    let flow = fixture("steps.flow");
    let serve = Serve::start(
        d,
        ServeOpts {
            flows: vec![flow.clone()],
            env: vec![
                ("FLOWC_JOURNAL", store.location()),
                ("NAP", "0".to_string()),
            ],
            ..Default::default()
        },
    );
    let submit = || {
        let out = flowc(d, &store, &["submit", flow.to_str().unwrap()], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let first = submit();
    poll(
        "the first run to succeed",
        PATIENCE,
        || serve.log(),
        || (status(&store, &first) == "succeeded").then_some(()),
    );
    store.drop_connections();
    // The service's next calls connect again; a run submitted now is claimed and driven.
    let second = submit();
    poll(
        "the second run to succeed",
        PATIENCE,
        || serve.log(),
        || (status(&store, &second) == "succeeded").then_some(()),
    );
    assert!(serve.events("serve.stopped").is_empty(), "{}", serve.log());
}

#[test]
fn tls_is_used_and_verified_when_the_url_asks_for_it() {
    let store = TestStore::new(Kind::Postgres);
    let d = store.dir.path();
    drop(Journal::open(&store.path, flowc::journal::Durability::Normal).unwrap());
    let ca = std::env::var("FLOWC_TEST_POSTGRES_CA")
        .expect("FLOWC_TEST_POSTGRES_CA: the test cluster's CA (set by .ci/postgres start)");
    let encoded = ca.replace('/', "%2F");
    // Verified against the cluster's CA: the session is encrypted.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={encoded}",
        store.location()
    );
    let j = Journal::open_read_only(Path::new(&url)).unwrap();
    assert!(encrypted(&j), "the session is not encrypted");
    // Without that CA the certificate is not trusted: a clear error, not a fallback.
    let url = format!("{}?sslmode=require", store.location());
    let out = runs_on(d, &url, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // Without asking, the connection is plain (as the server also allows).
    assert!(!encrypted(&open(&store)));
}

/// The first column of every row `sql` returns from an SQLite database, as text.
fn texts(lite: &rusqlite::Connection, sql: &str) -> Vec<String> {
    lite.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A version-5 Postgres journal holding what flowc 5 wrote to the SQLite
/// fixture `v5.db` (a finished run, one paused at its gate): the first
/// Postgres schema, then every row copied as it is, with the insert rule
/// of version 5 (nodes start pending) switched off for the copy only, since
/// the nodes are copied at the status their events brought them to.
fn postgres_v5_copy_of_the_fixture(store: &TestStore) {
    let url = store.location();
    let mut pg = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    pg.batch_execute(include_str!("../src/journal/postgres.sql"))
        .unwrap();
    let lite = rusqlite::Connection::open("tests/fixtures/journal/v5.db").unwrap();
    let mut copy = String::from("ALTER TABLE nodes DISABLE TRIGGER nodes_insert_pending;\n");
    for table in ["runs", "nodes", "approvals", "leases", "sources", "events"] {
        let cols = texts(
            &lite,
            &format!("SELECT name FROM pragma_table_info('{table}')"),
        );
        let values = cols
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let order = if table == "events" {
            " ORDER BY rowid"
        } else {
            ""
        };
        let rows = texts(&lite, &format!("SELECT {values} FROM {table}{order}"));
        for row in rows {
            copy.push_str(&format!(
                "INSERT INTO {table} ({}) VALUES ({row});\n",
                cols.join(", ")
            ));
        }
    }
    copy.push_str("ALTER TABLE nodes ENABLE TRIGGER nodes_insert_pending;\n");
    pg.batch_execute(&copy).unwrap();
}

#[test]
fn a_version_5_journal_on_postgres_migrates_and_its_paused_run_finishes() {
    let store = TestStore::new(Kind::Postgres);
    postgres_v5_copy_of_the_fixture(&store);
    let d = store.dir.path();
    for f in ["paused.flow", "done.flow"] {
        std::fs::copy(Path::new("tests/fixtures/journal").join(f), d.join(f)).unwrap();
    }
    let version = || -> String {
        let mut pg = postgres::Client::connect(&store.location(), postgres::NoTls).unwrap();
        pg.query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(version(), "5");
    let runs = |status: &str| -> String {
        let mut pg = postgres::Client::connect(&store.location(), postgres::NoTls).unwrap();
        pg.query_one("SELECT id FROM runs WHERE status = $1", &[&status])
            .unwrap()
            .get(0)
    };
    let (done, paused) = (runs("succeeded"), runs("paused"));
    // Inspection does not migrate; resuming does, in one transaction.
    let out = flowc(d, &store, &["status", &done], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--resume"), "{}", stderr(&out));
    assert_eq!(version(), "5");
    let out = flowc(d, &store, &["run", "--resume", &paused, "--no-input"], &[]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(version(), flowc::journal::SCHEMA_VERSION.to_string());
    let out = flowc(d, &store, &["approve", &paused, "gate"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = flowc(d, &store, &["run", "--resume", &paused, "--no-input"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.join("shipped").exists());
    for run in [&done, &paused] {
        let out = flowc(d, &store, &["replay", run], &[]);
        assert!(out.status.success(), "{run}: {}", stderr(&out));
    }
    // The new step's start and end are one event each, through the new insert rule.
    let j = open(&store);
    let kinds: Vec<String> = j
        .events(&paused)
        .unwrap()
        .into_iter()
        .filter(|e| e.node.as_deref() == Some("ship"))
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["node_status", "node_status"]);
    assert_eq!(status(&store, &paused), "succeeded");
}
