//! Run-queue claim latency on Postgres (issue 16): `cargo bench --bench claims`.
//!
//! Needs a server: `FLOWC_TEST_POSTGRES` (start a throw-away one with
//! `eval "$(bash .ci/postgres start)"`). Each round queues `FLOWC_BENCH_CLAIMS`
//! runs (default 500) in a fresh database, then times every `claim_next`
//! until the queue is empty, in one of three conditions, rounds in turn
//! (A B C A B C …, `FLOWC_BENCH_ROUNDS`, default 5):
//!
//! - **quiet**: nothing else on the database;
//! - **reader**: another session holds a transaction open across the round,
//!   having read every queued row and every event (a long report, a `psql`
//!   left in `BEGIN`);
//! - **locker**: another session holds a transaction open across the round
//!   with 10 queued rows locked `FOR UPDATE` (a claimer stuck mid-claim);
//!   claims skip them (`SKIP LOCKED`) rather than wait.
//!
//! Prints the median and p99 of each condition, all rounds pooled.
#![allow(clippy::unwrap_used)]

// The tests' throw-away database on the test server (created, then dropped).
#[allow(dead_code)]
#[path = "../tests/common/store.rs"]
mod store;

use flowc::journal::{Durability, Journal, Submission};
use std::time::Instant;
use store::{Kind, TestStore};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[derive(Clone, Copy, Debug)]
enum Condition {
    Quiet,
    Reader,
    Locker,
}

fn main() {
    if std::env::var_os("FLOWC_TEST_POSTGRES").is_none() {
        eprintln!(
            "claims bench: FLOWC_TEST_POSTGRES is not set; start a server with \
             `eval \"$(bash .ci/postgres start)\"`"
        );
        std::process::exit(2);
    }
    let n = env_usize("FLOWC_BENCH_CLAIMS", 500);
    let rounds = env_usize("FLOWC_BENCH_ROUNDS", 5);
    let conditions = [Condition::Quiet, Condition::Reader, Condition::Locker];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); conditions.len()];
    let sub = Submission {
        skill: "main".into(),
        file: "f.flow".into(),
        inputs: Default::default(),
        by: "bench".into(),
        reason: "submitted".into(),
        wait_previous: false,
    };
    for _ in 0..rounds {
        for (c, cond) in conditions.iter().enumerate() {
            let db = TestStore::new(Kind::Postgres);
            let url = db.location();
            let mut j = Journal::open(&db.path, Durability::Normal).unwrap();
            for _ in 0..n {
                j.enqueue(&sub, None).unwrap();
            }
            let mut other = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let tx = match cond {
                Condition::Quiet => None,
                Condition::Reader => {
                    let mut tx = other.transaction().unwrap();
                    tx.batch_execute(
                        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
                         SELECT count(*) FROM run_queue; SELECT count(*) FROM events",
                    )
                    .unwrap();
                    Some(tx)
                }
                Condition::Locker => {
                    let mut tx = other.transaction().unwrap();
                    tx.batch_execute(
                        "SELECT run_id FROM run_queue ORDER BY priority DESC, ready_at, run_id \
                         LIMIT 10 FOR UPDATE",
                    )
                    .unwrap();
                    Some(tx)
                }
            };
            let expect = match cond {
                Condition::Locker => n - 10,
                _ => n,
            };
            let mut got = 0;
            loop {
                let t = Instant::now();
                let claimed = j.claim_next("bench@here", i64::MAX).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                if claimed.is_none() {
                    break;
                }
                times[c].push(ms);
                got += 1;
            }
            assert_eq!(got, expect, "{cond:?}: claimed {got} of {expect}");
            drop(tx);
            drop((other, j, db));
        }
    }
    println!("claim_next on Postgres: {rounds} rounds of {n} queued runs, every claim timed");
    for (c, cond) in conditions.iter().enumerate() {
        let t = &mut times[c];
        t.sort_by(f64::total_cmp);
        println!(
            "  {:<7} claims {:>5}  median {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms",
            format!("{cond:?}").to_lowercase(),
            t.len(),
            pct(t, 0.5),
            pct(t, 0.99),
            t.last().copied().unwrap_or(0.0)
        );
    }
}
