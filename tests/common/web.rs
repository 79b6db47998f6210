//! A service with a people file and the web fixtures, for the page, API and browser tests.
#![allow(dead_code, clippy::unwrap_used)]

use super::flowc;
use super::service::{Reply, Serve, ServeOpts, http, run_log, wait_status};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The people every site has: `dora` (release, the usual submitter), `alice`
/// and `bob` (release), `carol` (ops, no approver).
pub const PEOPLE: &[(&str, &str)] = &[
    ("dora", "release"),
    ("alice", "release"),
    ("bob", "release"),
    ("carol", "ops"),
];

/// A running service in a temporary directory holding `tests/fixtures/web/`.
pub struct Site {
    /// The service.
    pub serve: Serve,
    /// Each person's token.
    pub tokens: HashMap<String, String>,
    /// The directory (the service's root).
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Site {
    /// Starts a service with the people file and `env`.
    pub fn start(env: Vec<(&str, String)>) -> Site {
        Site::start_with(env, None)
    }

    /// Starts a service whose people file also names `notify_secret`.
    pub fn start_with(env: Vec<(&str, String)>, notify_secret: Option<&str>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web");
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        let mut tokens = HashMap::new();
        for (name, group) in PEOPLE {
            let o = flowc(
                &dir,
                &[
                    "people",
                    "add",
                    name,
                    "--group",
                    group,
                    "--people",
                    "people.yaml",
                ],
            );
            assert!(o.status.success(), "{}", super::stderr(&o));
            tokens.insert(
                name.to_string(),
                String::from_utf8(o.stdout).unwrap().trim().to_string(),
            );
        }
        if let Some(source) = notify_secret {
            let path = dir.join("people.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("notify_secret: \"{source}\"\n{text}")).unwrap();
        }
        let serve = Serve::start(
            &dir,
            ServeOpts {
                args: vec!["--people", "people.yaml", "--workers", "2"],
                env,
                ..ServeOpts::default()
            },
        );
        Site {
            serve,
            tokens,
            dir,
            _tmp: tmp,
        }
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.serve.port()
    }

    /// `Authorization: Bearer` for `who`.
    pub fn bearer(&self, who: &str) -> String {
        format!("Bearer {}", self.tokens[who])
    }

    /// A GET as `who` (by bearer token), or as nobody.
    pub fn get(&self, who: Option<&str>, path: &str) -> Reply {
        let auth = who.map(|w| self.bearer(w));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        http(self.port(), "GET", path, &headers, b"")
    }

    /// A JSON POST as `who` (by bearer token), or as nobody.
    pub fn post_json(&self, who: Option<&str>, path: &str, body: &Json) -> Reply {
        let auth = who.map(|w| self.bearer(w));
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http(
            self.port(),
            "POST",
            path,
            &headers,
            body.to_string().as_bytes(),
        )
    }

    /// A form POST with these extra headers (cookie, Origin).
    pub fn post_form(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> Reply {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        http(self.port(), "POST", path, &all, body.join("&").as_bytes())
    }

    /// This page's own origin.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// Signs `who` in with their token; returns the `Cookie` header value.
    pub fn login(&self, who: &str) -> String {
        let origin = self.origin();
        let r = self.post_form(
            "/login",
            &[("Origin", origin.as_str())],
            &[("token", self.tokens[who].as_str()), ("next", "/approvals")],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        let cookie = r.header("set-cookie").expect("a session cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        cookie.split(';').next().unwrap().to_string()
    }

    /// Submits `file` as `who` through the API; returns the run id.
    pub fn submit(&self, who: &str, file: &str) -> String {
        let r = self.post_json(Some(who), "/api/runs", &serde_json::json!({ "file": file }));
        assert_eq!(r.status, 202, "{}", r.body);
        r.json()["run_id"].as_str().unwrap().to_string()
    }

    /// Waits for `run` to reach `status`.
    pub fn wait(&self, run: &str, status: &str) {
        wait_status(&self.dir, run, status, || {
            format!("{}{}", self.serve.log(), run_log(&self.dir, run))
        });
    }

    /// A decision through the API as `who`.
    pub fn decide(&self, who: &str, run: &str, step: &str, body: Json) -> Reply {
        self.post_json(Some(who), &format!("/api/approvals/{run}/{step}"), &body)
    }

    /// The events of `kind` in `run`.
    pub fn events(&self, run: &str, kind: &str) -> Vec<Json> {
        let j =
            flowc::journal::Journal::open_existing(&self.dir.join(".flowc/journal.db")).unwrap();
        j.events_of(run, Some(kind))
            .unwrap()
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    /// The output of each attempt of `run` (`output` events, or a status's folded `log`).
    pub fn outputs(&self, run: &str) -> Vec<Json> {
        let j =
            flowc::journal::Journal::open_existing(&self.dir.join(".flowc/journal.db")).unwrap();
        j.events(run)
            .unwrap()
            .iter()
            .filter_map(|e| e.output().cloned())
            .collect()
    }

    /// A one-time link for `who`, minted by `flowc link`.
    pub fn link(&self, run: &str, step: &str, who: &str) -> String {
        let base = self.origin();
        let o = flowc(
            &self.dir,
            &[
                "link",
                run,
                step,
                "--for",
                who,
                "--people",
                "people.yaml",
                "--base",
                &base,
            ],
        );
        assert!(o.status.success(), "{}", super::stderr(&o));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    }
}

/// Percent-encodes a form value.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden `csrf` field in a page.
pub fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}
