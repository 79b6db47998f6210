//! The web page in a real browser (Debian's chromium, driven over WebDriver by
//! chromedriver): sign in with a token, approve a gate from the queue with its
//! form, approve it a second time through another person's one-time link, and
//! watch the run finish. Screenshots of the three pages go to
//! `target/web-screenshots/`.
//!
//! WebDriver is a handful of JSON calls over HTTP, made here with `ureq` (a
//! dependency already): no Selenium, no Python, nothing else to install but
//! the browser and its driver (`.ci/deps` installs both).
#![allow(clippy::unwrap_used)]

mod common;
use common::service::poll;
use common::web::Site;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver and one browser session; both stopped on drop.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

impl Browser {
    fn start() -> Browser {
        let driver = which("chromedriver").unwrap_or_else(|| {
            panic!("chromedriver is not installed: run `.ci/deps` (apt-get install chromium chromium-driver)")
        });
        let chromium = which("chromium")
            .unwrap_or_else(|| panic!("chromium is not installed: run `.ci/deps`"));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        poll(
            "chromedriver to listen",
            Duration::from_secs(30),
            String::new,
            || agent.get(&format!("{base}/status")).call().ok().map(|_| ()),
        );
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let mut b = Browser {
            driver: child,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let r = b.call("POST", "/session", Some(caps));
        b.session = r["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        // Finding an element waits for it (a page still loading after a click).
        b.call(
            "POST",
            &b.at("/timeouts"),
            Some(json!({ "implicit": 10_000, "pageLoad": 30_000 })),
        );
        b
    }

    /// One WebDriver call; returns its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// One WebDriver call: its `value`, or the error WebDriver answered.
    fn try_call(&self, method: &str, path: &str, body: Option<Json>) -> Result<Json, Json> {
        let url = format!("{}{path}", self.base);
        let reply = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b.unwrap_or(json!({})).to_string()),
        };
        let mut reply = reply.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let text = reply.body_mut().read_to_string().unwrap();
        let v: Json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("WebDriver {method} {path}: {text}"));
        if v["value"]["error"].is_string() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    /// `GET /element/E/{rest}` of the first element matching `css`, found
    /// again when a page that refreshes itself replaced it in between
    /// (WebDriver's `stale element reference`); `None` when none matches.
    fn read(&self, css: &str, rest: &str) -> Option<Json> {
        for _ in 0..5 {
            let e = self.find_all(css).into_iter().next()?;
            match self.try_call("GET", &self.at(&format!("/element/{e}/{rest}")), None) {
                Ok(v) => return Some(v),
                Err(err) if err["error"] == "stale element reference" => continue,
                Err(err) => panic!("WebDriver GET {rest} of `{css}`: {err}"),
            }
        }
        panic!("`{css}` went stale five times in a row")
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn open(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.at("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.call(
            "POST",
            &self.at("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{e}/click")),
            Some(json!({})),
        );
    }

    fn text(&self, css: &str) -> String {
        // `find` first: it waits (the implicit timeout) for the element to appear.
        self.find(css);
        self.read(css, "text")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("`{css}` has no text"))
    }

    fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.read(css, &format!("attribute/{name}"))?
            .as_str()
            .map(str::to_string)
    }

    /// Waits until the current URL contains `part` (a click's navigation may still be under way).
    fn wait_url(&self, part: &str) -> String {
        poll(
            &format!("the browser to reach a URL with `{part}`"),
            Duration::from_secs(30),
            || self.url(),
            || {
                let url = self.url();
                url.contains(part).then_some(url)
            },
        )
    }

    fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn title(&self) -> String {
        self.call("GET", &self.at("/title"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self.call("GET", &self.at("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_person_approves_in_the_browser_a_second_by_link_and_the_run_finishes() {
    let site = Site::start(vec![]);
    let run = site.submit("dora", "gate.flow");
    site.wait(&run, "paused");
    let origin = site.origin();
    let b = Browser::start();

    // Signing in leads to the queue.
    b.open(&format!("{origin}/approvals"));
    b.wait_url("/login?next=");
    b.type_into("input[name=token]", &site.tokens["bob"]);
    b.click("form.login button");
    assert!(b.wait_url("/approvals").ends_with("/approvals"));
    let card = format!("section[data-item=\"{run}/gate\"]");
    assert!(
        b.text(&card).contains("Ship <script>alert(1)</script>?"),
        "the prompt, as text"
    );
    assert_ne!(b.title(), "pwned", "a model's markup ran as a script");
    b.screenshot("approvals");

    // Approve with the form: one of two approvals.
    b.type_into(
        &format!("{card} input[name=\"form.reason\"]"),
        "tested in a browser",
    );
    b.click(&format!("{card} button.b-approve"));
    b.wait_url(&format!("/runs/{run}?note="));
    assert!(
        b.text("p.note").contains("approval 1 of 2"),
        "{}",
        b.text("p.note")
    );

    // The second person's one-time link, opened in the same browser, signed out first.
    b.click("nav form button");
    b.wait_url("/login");
    let link = site.link(&run, "gate", "alice");
    b.open(&link);
    assert!(b.text("h1").contains("alice"), "{}", b.text("h1"));
    b.type_into("input[name=\"form.reason\"]", "second look");
    b.click("button.b-approve");
    assert!(
        b.text("#decided").contains("Recorded: approved"),
        "{}",
        b.text("#decided")
    );

    // Signed in again, the run page shows it finish (the page refreshes itself).
    b.open(&format!("{origin}/login?next=%2Fruns%2F{run}"));
    b.type_into("input[name=token]", &site.tokens["bob"]);
    b.click("form.login button");
    poll(
        "the run page to show `succeeded`",
        Duration::from_secs(60),
        || site.serve.log(),
        || {
            (b.attribute("#run-status", "data-status").as_deref() == Some("succeeded"))
                .then_some(())
        },
    );
    assert_eq!(
        b.attribute("g[data-node=ship]", "data-status").as_deref(),
        Some("succeeded")
    );
    b.screenshot("run");
    b.open(&format!("{origin}/"));
    assert!(
        b.text(&format!("tr[data-run=\"{run}\"]"))
            .contains("succeeded")
    );
    b.screenshot("runs");
    // The stats view: its charts are drawn on the server.
    b.open(&format!("{origin}/stats"));
    assert_eq!(
        b.find_all("svg.chart").len(),
        2,
        "a success-rate chart and a spend chart"
    );
    assert!(
        !b.find_all("svg.chart circle").is_empty(),
        "a day's success rate"
    );
    assert!(
        b.text("table.prompts").contains("main/notes"),
        "{}",
        b.text("main")
    );
    b.screenshot("stats");
    let decided = site.events(&run, "approval_decided");
    assert_eq!(decided[0]["output"]["by"], json!(["bob", "alice"]));
    assert_eq!(
        decided[0]["output"]["form"]["reason"],
        "tested in a browser"
    );
}
