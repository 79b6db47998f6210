//! Driving `flowc serve` from tests: a guard that kills the service (and the
//! run processes it started) when dropped, its JSON log read line by line,
//! bounded polls that fail showing that log, a fake clock file, the journal
//! read from outside, and a tiny HTTP/1.1 client.

use super::BIN;
use flowc::journal::{FireRow, Journal, RunRow};
use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails: generous, since
/// tests run in parallel on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// How often a poll looks again.
const POLL: Duration = Duration::from_millis(50);

/// A fixture under `tests/fixtures/serve/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/serve")
        .join(name)
}

/// Calls `f` every 50 ms until it returns `Some`, for at most `limit`; then
/// fails with `what` and whatever `context` says (usually the service log).
pub fn poll<T>(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!(
                "timed out after {:.1}s waiting for {what}\n{}",
                limit.as_secs_f64(),
                context()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The file `FLOWC_TEST_CLOCK` names: the service reads it on every tick.
#[derive(Debug, Clone)]
pub struct FakeClock {
    /// Its path.
    pub path: PathBuf,
}

impl FakeClock {
    /// A clock file in `dir` reading `at` (RFC 3339).
    pub fn new(dir: &Path, at: &str) -> FakeClock {
        let clock = FakeClock {
            path: dir.join("clock"),
        };
        clock.set(at);
        clock
    }

    /// Moves the clock to `at` (RFC 3339); written whole and renamed, so a
    /// tick never reads half of it.
    pub fn set(&self, at: &str) {
        let ts: jiff::Timestamp = at.parse().unwrap();
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{ts}\n")).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    /// Moves the clock to `at`.
    pub fn set_ts(&self, at: jiff::Timestamp) {
        self.set(&at.to_string());
    }
}

/// Parses an RFC 3339 instant.
pub fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// `flowc serve` under test: killed, with the run processes it started, on drop.
pub struct Serve {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The directory it runs in (its journal is `.flowc/journal.db` there).
    pub dir: PathBuf,
    exit: Option<ExitStatus>,
}

/// How to start a service.
#[derive(Debug, Default)]
pub struct ServeOpts<'a> {
    /// Its flow files.
    pub flows: Vec<PathBuf>,
    /// Extra arguments (`--workers 1`, `--drain-timeout 1s`); `--listen
    /// 127.0.0.1:0` and `--log-format json` are always given.
    pub args: Vec<&'a str>,
    /// Extra environment.
    pub env: Vec<(&'a str, String)>,
    /// The fake clock, if any.
    pub clock: Option<&'a FakeClock>,
}

impl Serve {
    /// Starts `flowc serve` in `dir` and waits until it logged `serve.started`.
    pub fn start(dir: &Path, opts: ServeOpts<'_>) -> Serve {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(&opts.flows)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(&opts.args)
            .current_dir(dir)
            .env_remove("FLOWC_JOURNAL")
            .env_remove("FLOWC_TEST_CLOCK")
            .env_remove("FLOWC_LEASE_STALE_MS")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(clock) = opts.clock {
            cmd.env("FLOWC_TEST_CLOCK", &clock.path);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let mut serve = Serve {
            child,
            lines,
            dir: dir.to_path_buf(),
            exit: None,
        };
        serve.wait_event("serve.started", |_| true);
        serve
    }

    /// Its process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Its journal.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(".flowc/journal.db")
    }

    /// Everything it logged so far, for failure messages.
    pub fn log(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let mut text = format!("--- service log ({} lines) ---\n", lines.len());
        for line in lines.iter() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The logged events named `event`, oldest first.
    pub fn events(&self, event: &str) -> Vec<Json> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Waits for a logged event named `event` that `pred` accepts.
    pub fn wait_event(&mut self, event: &str, pred: impl Fn(&Json) -> bool) -> Json {
        let what = format!("the service to log `{event}`");
        let lines = self.lines.clone();
        let context = || {
            let lines = lines.lock().unwrap();
            format!("--- service log ---\n{}", lines.join("\n"))
        };
        let mut exited = None;
        let found = {
            let child = &mut self.child;
            poll(&what, PATIENCE, context, || {
                if let Some(v) = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .filter_map(|l| serde_json::from_str::<Json>(l).ok())
                    .find(|v| v["event"] == event && pred(v))
                {
                    return Some(Some(v));
                }
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return Some(None);
                }
                None
            })
        };
        match found {
            Some(v) => v,
            None => {
                // Its last lines may still be in the pipe.
                std::thread::sleep(Duration::from_millis(200));
                self.exit = exited;
                panic!(
                    "the service exited ({exited:?}) before logging `{event}`\n{}",
                    self.log()
                )
            }
        }
    }

    /// The port its listener is bound to.
    pub fn port(&self) -> u16 {
        let started = &self.events("serve.started")[0];
        let addr: std::net::SocketAddr = started["listen"].as_str().unwrap().parse().unwrap();
        addr.port()
    }

    /// Sends `signal` to the service.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).unwrap();
    }

    /// Waits until the service exited.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let lines = self.lines.clone();
        let child = &mut self.child;
        let status = poll(
            "the service to exit",
            PATIENCE,
            || format!("--- service log ---\n{}", lines.lock().unwrap().join("\n")),
            || child.try_wait().unwrap(),
        );
        self.exit = Some(status);
        status
    }

    /// SIGTERM, then waits until it exited; fails unless it exits 0.
    pub fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait_exit();
        assert_eq!(status.code(), Some(0), "{}", self.log());
    }

    /// SIGKILL, then waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        self.exit = Some(self.child.wait().unwrap());
    }

    /// The run processes it claimed runs in (pid, run).
    pub fn claimed(&self) -> Vec<(i32, String)> {
        self.events("run.claimed")
            .iter()
            .filter_map(|e| Some((e["pid"].as_i64()? as i32, e["run"].as_str()?.to_string())))
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Its run processes are in their own process groups; they stop by
        // themselves once their service is gone, but a failing test should
        // leave nothing behind even for that moment. Only processes that
        // still run `flowc run --resume RUN` for one of its runs are touched.
        for (pid, run) in self.claimed() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&run) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }
}

/// A process killed (even when stopped) and reaped on drop, so a failing
/// test leaves nothing behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The journal in `dir`, read from outside (None while it does not exist yet).
pub fn journal(dir: &Path) -> Option<Journal> {
    Journal::open_read_only(&dir.join(".flowc/journal.db")).ok()
}

/// Every run in `dir`'s journal.
pub fn runs(dir: &Path) -> Vec<RunRow> {
    journal(dir).and_then(|j| j.runs().ok()).unwrap_or_default()
}

/// Every recorded fire of `trigger` in `dir`'s journal, oldest first.
pub fn fires(dir: &Path, trigger: &str) -> Vec<FireRow> {
    let mut rows = journal(dir)
        .and_then(|j| j.fires(Some(trigger), 100_000).ok())
        .unwrap_or_default();
    rows.reverse();
    rows
}

/// The fires of `trigger` that queued a run, by key, oldest key first.
pub fn queued_fires(dir: &Path, trigger: &str) -> Vec<FireRow> {
    let mut rows: Vec<FireRow> = fires(dir, trigger)
        .into_iter()
        .filter(|f| f.outcome == "queued")
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    rows
}

/// The run `id`'s status (empty while it does not exist).
pub fn status(dir: &Path, id: &str) -> String {
    journal(dir)
        .and_then(|j| j.run(id).ok())
        .map(|r| r.status)
        .unwrap_or_default()
}

/// Waits until run `id` has `want` status; fails at once when it ended otherwise.
pub fn wait_status(dir: &Path, id: &str, want: &str, context: impl Fn() -> String) {
    let ended = ["succeeded", "failed", "cancelled"];
    poll(
        &format!("run {id} to be {want}"),
        PATIENCE,
        &context,
        || {
            let now = status(dir, id);
            if now == want {
                return Some(());
            }
            assert!(
                !ended.contains(&now.as_str()),
                "run {id} ended {now}, not {want}\n{}",
                context()
            );
            None
        },
    );
}

/// Lines of the file `name` in `dir` (a step's marks).
pub fn lines(dir: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a run process wrote to `.flowc/logs/RUN.log`, for failure messages.
pub fn run_log(dir: &Path, run: &str) -> String {
    let path = dir.join(format!(".flowc/logs/{run}.log"));
    format!(
        "--- {} ---\n{}",
        path.display(),
        std::fs::read_to_string(&path).unwrap_or_default()
    )
}

/// A reply to an HTTP request.
#[derive(Debug)]
pub struct Reply {
    /// Its status code.
    pub status: u16,
    /// Its header lines (`Name: value`), as sent.
    pub head: String,
    /// Its body.
    pub body: String,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or(Json::Null)
    }
}

/// Sends one HTTP/1.1 request to `127.0.0.1:port` and reads the reply.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    // A server may answer (413) before it read the whole body and close:
    // the reply is read even when the rest of the write failed.
    let _ = stream.write_all(&bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => panic!("no reply to {method} {path}: {e}"),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a reply without a header end: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a reply without a status: {text:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        head: head.to_string(),
        body,
    }
}

/// A chunked body's data.
fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
