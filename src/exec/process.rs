//! A `run` attempt's process: started through the spawner (or by forking
//! flowc when the spawner cannot take it), its output captured within the
//! cap while it runs, its end and outcome classified, its group killed on
//! timeout or cancel.

use super::attempt::{AttemptEnd, CAPTURE_CAP};
use super::eval::validate;
use crate::ir::Ty;
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// A `run` step attempt, fully rendered.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// `sh -c` text, or program and arguments.
    pub argv: Vec<String>,
    /// Standard input.
    pub stdin: Option<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Type of the JSON expected on stdout.
    pub output: Option<Ty>,
    /// How the process is confined (`None`: only its own process group).
    pub sandbox: Option<crate::sandbox::Plan>,
}

impl ProcessSpec {
    /// Settles how the process will start, before its plan's record is
    /// journaled: a process the spawner will not take (too large for it, or
    /// no spawner) gets no /proc of its own, and its record says so.
    pub fn settle_start(&mut self) {
        let Some(plan) = &mut self.sandbox else {
            return;
        };
        let stdin = self.stdin.is_some();
        let cwd = self.cwd.as_deref();
        if !crate::sandbox::spawner_takes(&self.argv, &self.env, cwd, stdin, Some(plan)) {
            plan.forked();
        }
    }
}

/// Captured output: the tail within the cap, and whether anything was dropped.
#[derive(Debug, Default)]
struct Capture {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capture {
    /// Keeps the tail once well over the cap (trimming in bulk, not per read).
    fn trim(&mut self) {
        if self.bytes.len() > CAPTURE_CAP * 2 {
            self.cut();
        }
    }

    /// Cuts to the tail, redacting first: a cut inside a secret would leave
    /// the rest of it, which the redactor no longer recognises. (A secret
    /// still arriving at the end is whole in the tail by the next cut.)
    fn cut(&mut self) {
        if let Some(redacted) = crate::secrets::redact_bytes(&self.bytes) {
            self.bytes = redacted;
        }
        if self.bytes.len() > CAPTURE_CAP {
            let cut = self.bytes.len() - CAPTURE_CAP;
            self.dropped += cut;
            self.bytes.drain(..cut);
        }
    }

    fn finish(mut self) -> (String, bool) {
        if self.bytes.len() > CAPTURE_CAP {
            self.cut();
        }
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            text.insert_str(
                0,
                &format!("[flowc: {} earlier bytes dropped]\n", self.dropped),
            );
        }
        (text, self.dropped > 0)
    }
}

/// Sends a line of a running step's output to whoever shows it.
pub type TailFn = dyn Fn(String) + Send + Sync;

async fn pump<R: AsyncRead + Unpin>(mut r: R, tail: Option<&TailFn>) -> Capture {
    let mut cap = Capture::default();
    let mut last_sent = Instant::now() - Duration::from_secs(1);
    loop {
        // Read straight into the capture, without a zeroed buffer of its own:
        // most steps write little or nothing.
        cap.bytes.reserve(4096);
        let start = cap.bytes.len();
        match r.read_buf(&mut cap.bytes).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(send) = tail
                    && last_sent.elapsed() > Duration::from_millis(100)
                {
                    let text = String::from_utf8_lossy(&cap.bytes[start..start + n]);
                    if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                        send(line.trim_end().to_string());
                        last_sent = Instant::now();
                    }
                }
                cap.trim();
            }
        }
    }
    cap
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

type Stream = Box<dyn AsyncRead + Unpin + Send>;

/// Why a start failed when the spawner died between the `running` event (which
/// says the step runs with its own /proc) and the start: the step never ran, so
/// the attempt is not spent (`Runner::attempt_ended` adds it back).
const SPAWNER_GONE: &str =
    "the process spawner exited before the step started; the next attempt starts without it";

/// Why a process did not start.
enum StartFailure {
    /// The spawner died after the `running` event said the step has it.
    SpawnerGone,
    /// Anything else, as the message to show.
    Other(String),
}

impl From<String> for StartFailure {
    fn from(why: String) -> StartFailure {
        StartFailure::Other(why)
    }
}

impl From<StartFailure> for String {
    fn from(f: StartFailure) -> String {
        match f {
            StartFailure::SpawnerGone => SPAWNER_GONE.into(),
            StartFailure::Other(why) => why,
        }
    }
}

/// A started process, however it was started.
struct Proc {
    stdin: Option<Box<dyn AsyncWrite + Unpin + Send>>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    handle: Handle,
}

enum Handle {
    /// Forked from flowc (`tokio::process`).
    Forked(tokio::process::Child),
    /// Started by the spawner process.
    Spawned(crate::sandbox::SpawnedChild),
}

impl Proc {
    /// Its process group, when flowc kills it itself.
    fn id(&self) -> Option<u32> {
        match &self.handle {
            Handle::Forked(c) => c.id(),
            Handle::Spawned(c) => c.group(),
        }
    }

    async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        match &mut self.handle {
            Handle::Forked(c) => c.wait().await,
            Handle::Spawned(c) => c.wait().await,
        }
    }

    async fn kill(&mut self) {
        match &mut self.handle {
            Handle::Forked(c) => {
                let _ = c.kill().await;
            }
            Handle::Spawned(c) => {
                c.start_kill();
                let _ = c.wait().await;
            }
        }
    }
}

/// Starts the process of `spec`: through the spawner when there is one,
/// otherwise by forking flowc with the sandbox applied before exec.
async fn start(spec: &ProcessSpec, program: &str) -> Result<Proc, StartFailure> {
    use crate::sandbox::NotSpawned;
    match crate::sandbox::spawn_process(
        &spec.argv,
        &spec.env,
        spec.cwd.as_deref(),
        spec.stdin.is_some(),
        spec.sandbox.as_ref(),
    )
    .await
    {
        Ok(s) => {
            return Ok(Proc {
                stdin: s.stdin.map(|w| Box::new(w) as _),
                stdout: Some(Box::new(s.stdout)),
                stderr: Some(Box::new(s.stderr)),
                handle: Handle::Spawned(s.child),
            });
        }
        Err(NotSpawned::Failed(e)) => return Err(spawn_error(spec, program, &e).into()),
        Err(NotSpawned::Unavailable) => {
            if spec.sandbox.as_ref().is_some_and(|p| p.has("own_proc")) {
                // It died after `settle_start`: the fork could not give what
                // the journal already says this attempt has.
                return Err(StartFailure::SpawnerGone);
            }
        }
    }
    let prepared = match &spec.sandbox {
        Some(plan) => {
            let path = spec.env.iter().rev().find(|(k, _)| k == "PATH");
            Some(crate::sandbox::prepare(
                &spec.argv,
                spec.cwd.as_deref(),
                path.map(|(_, v)| v.as_str()),
                plan,
            )?)
        }
        None => None,
    };
    let (argv, setup) = match prepared {
        Some(p) => (p.argv, Some(p.setup)),
        None => (spec.argv.clone(), None),
    };
    let Some((first, args)) = argv.split_first() else {
        return Err(StartFailure::Other("`argv` is empty".into()));
    };
    let mut cmd = tokio::process::Command::new(first);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if spec.stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    crate::sandbox::install(&mut cmd, setup);
    let mut child = cmd.spawn().map_err(|e| spawn_error(spec, program, &e))?;
    Ok(Proc {
        stdin: child.stdin.take().map(|w| Box::new(w) as _),
        stdout: child.stdout.take().map(|r| Box::new(r) as _),
        stderr: child.stderr.take().map(|r| Box::new(r) as _),
        handle: Handle::Forked(child),
    })
}

/// A long-lived process with its pipes open (an MCP server): started like a
/// step's process, inside the same sandbox, in its own process group; the
/// group is killed when this is dropped.
pub struct Piped {
    /// Its standard input.
    pub stdin: Box<dyn AsyncWrite + Unpin + Send>,
    /// Its standard output.
    pub stdout: Box<dyn AsyncRead + Unpin + Send>,
    /// Its standard error (drain it, or the process may block).
    pub stderr: Option<Box<dyn AsyncRead + Unpin + Send>>,
    proc: Proc,
}

impl Drop for Piped {
    fn drop(&mut self) {
        kill_group(self.proc.id());
        if let Handle::Spawned(c) = &self.proc.handle {
            c.start_kill();
        }
    }
}

/// Starts `spec` with its standard input kept open (`spec.stdin` is ignored).
pub async fn start_piped(mut spec: ProcessSpec) -> Result<Piped, String> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    spec.stdin = Some(String::new());
    let mut proc = start(&spec, &program).await.map_err(String::from)?;
    let (Some(stdin), Some(stdout)) = (proc.stdin.take(), proc.stdout.take()) else {
        return Err(format!("`{program}` started without its pipes"));
    };
    let stderr = proc.stderr.take();
    Ok(Piped {
        stdin,
        stdout,
        stderr,
        proc,
    })
}

fn spawn_error(spec: &ProcessSpec, program: &str, e: &std::io::Error) -> String {
    if let Some(why) = crate::sandbox::setup_error(e) {
        why
    } else if spec
        .cwd
        .as_deref()
        .is_some_and(|c| !std::path::Path::new(c).is_dir())
    {
        format!(
            "working directory `{}` does not exist",
            spec.cwd.as_deref().unwrap_or_default()
        )
    } else {
        format!("cannot start `{program}`: {e}")
    }
}

/// Runs a process in its own process group; kills the group on timeout or cancel.
pub async fn run_process(
    spec: ProcessSpec,
    cancel: Arc<Notify>,
    tail: Option<Box<TailFn>>,
) -> AttemptEnd {
    let Some(program) = spec.argv.first().cloned() else {
        return AttemptEnd::Error("`argv` is empty".into(), None);
    };
    let started = Instant::now();
    let mut child = match start(&spec, &program).await {
        Ok(c) => c,
        Err(StartFailure::SpawnerGone) => return AttemptEnd::NotStarted(SPAWNER_GONE.into()),
        Err(StartFailure::Other(what)) => return AttemptEnd::Error(what, None),
    };
    let (stop, out, err) = supervise(&mut child, &spec, &cancel, tail.as_deref()).await;
    let (stdout, out_trunc) = out.finish();
    let (stderr, _) = err.finish();
    let duration = started.elapsed().as_millis() as i64;
    let (exit_code, ended) = exit_of(&stop);
    let outcome =
        crate::sandbox::Outcome::classify(spec.sandbox.as_ref(), ended, &stderr, duration as u64);
    let result = json!({
        "exit_code": exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "duration": duration,
        "output": null,
        // Taken out again by the executor and journaled with the output.
        "outcome": outcome.record(),
    });
    match stop {
        Stop::Cancel => AttemptEnd::Cancelled,
        Stop::Timeout => AttemptEnd::Error(
            format!(
                "timed out after {}",
                crate::ir::format_ms(spec.timeout.as_millis() as u64)
            ),
            Some(result),
        ),
        Stop::Exited(Err(e)) => {
            AttemptEnd::Error(format!("waiting for the process failed: {e}"), Some(result))
        }
        Stop::Exited(Ok(_)) => match &spec.output {
            Some(ty) => typed_stdout(ty, out_trunc, result),
            None => AttemptEnd::Result(result),
        },
    }
}

/// How the wait for a process ended.
enum Stop {
    Exited(std::io::Result<std::process::ExitStatus>),
    Timeout,
    Cancel,
}

/// Feeds the process its stdin and reads both its streams (in this task,
/// while it waits) until it exits, times out or is cancelled; then kills
/// its group (stragglers it left behind, or the whole of it).
async fn supervise(
    child: &mut Proc,
    spec: &ProcessSpec,
    cancel: &Notify,
    tail: Option<&TailFn>,
) -> (Stop, Capture, Capture) {
    let pid = child.id();
    let stdin_task = match (child.stdin.take(), spec.stdin.clone()) {
        (Some(mut w), Some(text)) => Some(tokio::spawn(async move {
            let _ = w.write_all(text.as_bytes()).await;
            let _ = w.shutdown().await;
        })),
        _ => None,
    };
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let read = |r: Option<Stream>| async move {
        match r {
            Some(r) => pump(r, tail).await,
            None => Capture::default(),
        }
    };
    let mut streams = std::pin::pin!(async { tokio::join!(read(out), read(err)) });
    let mut captured = None;
    let mut timeout = std::pin::pin!(tokio::time::sleep(spec.timeout));
    let mut cancelled = std::pin::pin!(cancel.notified());
    let stop = loop {
        tokio::select! {
            status = child.wait() => break Stop::Exited(status),
            () = &mut timeout => break Stop::Timeout,
            () = &mut cancelled => break Stop::Cancel,
            c = &mut streams, if captured.is_none() => captured = Some(c),
        }
    };
    kill_group(pid);
    if !matches!(stop, Stop::Exited(_)) {
        let _ = child.kill().await;
    }
    if let Some(t) = stdin_task {
        t.abort();
    }
    let (out, err) = match captured {
        Some(c) => c,
        None => streams.await,
    };
    (stop, out, err)
}

/// The exit code a result records (128 + the signal, -1 without an exit)
/// and how the process ended, for the outcome.
fn exit_of(stop: &Stop) -> (i32, crate::sandbox::Ended) {
    use crate::sandbox::Ended;
    use std::os::unix::process::ExitStatusExt;
    match stop {
        Stop::Exited(Ok(status)) => match status.signal() {
            Some(sig) => (status.code().unwrap_or(128 + sig), Ended::Signal(sig)),
            None => {
                let code = status.code().unwrap_or(128);
                (code, Ended::Code(code))
            }
        },
        Stop::Timeout => (-1, Ended::Timeout),
        _ => (-1, Ended::Code(-1)),
    }
}

/// The result with stdout parsed as the declared `output` type, or the error
/// that says why it cannot be.
fn typed_stdout(ty: &Ty, truncated: bool, mut result: Json) -> AttemptEnd {
    if truncated {
        return AttemptEnd::Error(
            format!(
                "stdout is longer than {CAPTURE_CAP} bytes, so it cannot be parsed as the declared output"
            ),
            Some(result),
        );
    }
    let parsed: Json = match serde_json::from_str(result["stdout"].as_str().unwrap_or_default()) {
        Ok(v) => v,
        Err(e) => {
            return AttemptEnd::Error(
                format!("stdout is not valid JSON for `output: {ty}`: {e}"),
                Some(result),
            );
        }
    };
    if let Err(e) = validate(&parsed, ty) {
        return AttemptEnd::Error(
            format!("stdout does not match `output: {ty}`: {e}"),
            Some(result),
        );
    }
    result["output"] = parsed;
    AttemptEnd::Result(result)
}
