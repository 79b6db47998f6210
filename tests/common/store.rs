//! A throw-away journal on either store, for tests that must hold on both:
//! an SQLite file in a temp dir, or a fresh database on the Postgres server
//! `FLOWC_TEST_POSTGRES` names (started by `.ci/postgres`; see docs/journal.md).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An SQLite file.
    Sqlite,
    /// A Postgres database.
    Postgres,
}

/// A journal location that cleans up after itself.
pub struct TestStore {
    /// Where the journal is: a file path or a `postgres://` URL.
    pub path: PathBuf,
    /// A temp dir for the test's other files (and the SQLite file).
    pub dir: tempfile::TempDir,
    /// Which store.
    pub kind: Kind,
    /// The Postgres database created for this test, dropped at the end.
    database: Option<String>,
}

/// The server URL the Postgres tests use. Never skipped: without it, the
/// test fails saying how to start one.
pub fn server_url() -> String {
    std::env::var("FLOWC_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "FLOWC_TEST_POSTGRES is not set: the Postgres tests need a server. \
             Start a throw-away one with `eval \"$(bash .ci/postgres start)\"` \
             (or run the whole suite with `bash .ci/test`)"
        )
    })
}

/// `url` naming database `db` instead of its own.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs one admin statement on the test server's own database.
pub fn admin(sql: &str) {
    let mut client = postgres::Client::connect(&server_url(), postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the test Postgres server: {e}"));
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
}

impl TestStore {
    /// A new, empty journal location on `kind`.
    pub fn new(kind: Kind) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Sqlite => TestStore {
                path: dir.path().join("journal.db"),
                dir,
                kind,
                database: None,
            },
            Kind::Postgres => {
                static N: AtomicU32 = AtomicU32::new(0);
                let db = format!(
                    "flowc_t{}_{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                );
                admin(&format!("CREATE DATABASE {db}"));
                TestStore {
                    path: PathBuf::from(with_database(&server_url(), &db)),
                    dir,
                    kind,
                    database: Some(db),
                }
            }
        }
    }

    /// The journal location as a string (for `--journal` and `FLOWC_JOURNAL`).
    pub fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// Ends every connection to this test's database (a server restart, as
    /// far as its clients can tell).
    pub fn drop_connections(&self) {
        if let Some(db) = &self.database {
            admin(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ));
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(db) = &self.database
            && let Ok(url) = std::env::var("FLOWC_TEST_POSTGRES")
            && let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

/// Declares a test once and runs it on both stores: `name::sqlite` and
/// `name::postgres`, each given a fresh [`TestStore`].
#[macro_export]
macro_rules! on_both_stores {
    ($(#[$m:meta])* fn $name:ident($s:ident) $body:block) => {
        $(#[$m])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($s: &$crate::common::store::TestStore) $body
            #[test]
            fn sqlite() {
                body(&$crate::common::store::TestStore::new($crate::common::store::Kind::Sqlite));
            }
            #[test]
            fn postgres() {
                body(&$crate::common::store::TestStore::new($crate::common::store::Kind::Postgres));
            }
        }
    };
}
