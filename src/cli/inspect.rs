//! `flowc runs`, `status`, `log` and `replay`: reading the journal.

use super::{CliError, CliResult, EXIT_FAILED, JournalArgs, write_stdout};
use crate::ir::format_ms;
use crate::journal::{Journal, RunRow, timestamp};
use std::fmt::Write;

/// Arguments of `flowc runs`.
#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of `flowc status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The run id (or a unique prefix); default: the latest run.
    pub run: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of `flowc log`.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The run id (or a unique prefix); default: the latest run.
    pub run: Option<String>,
    /// Only this step instance (e.g. `build`, `repair#2/verify`, `for_f[0]/wc`).
    pub step: Option<String>,
    /// Only this attempt.
    #[arg(long)]
    pub attempt: Option<u32>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of `flowc replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The run id (or a unique prefix).
    pub run: String,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// The run `run` names (an id or a unique prefix), else the newest run.
fn pick_run(journal: &Journal, run: Option<&str>) -> Result<String, CliError> {
    match run {
        Some(run) => Ok(journal.resolve_run(run)?),
        None => journal.latest_run()?.ok_or_else(|| {
            CliError::usage(format!(
                "no runs yet in `{}` (start one with `flowc run FILE`)",
                journal.name()
            ))
        }),
    }
}

/// The time a run was driven, in ms: not the downtime after a crash, not
/// the time it waited for a person, and a stopped run's does not grow.
fn driven_ms(journal: &Journal, row: &RunRow) -> i64 {
    let live = row.status == "running" && shown_status(journal, row) == "running";
    journal
        .driven_ms(&row.id, live)
        .unwrap_or_else(|_| row.updated_at.saturating_sub(row.started_at))
}

fn duration(journal: &Journal, row: &RunRow) -> String {
    format_ms(driven_ms(journal, row).max(0) as u64)
}

/// A `running` run whose process is gone shows as `stopped`: it needs `--resume`.
fn shown_status(journal: &Journal, r: &RunRow) -> String {
    if r.status == "running" && journal.lease_holder(&r.id).ok().flatten().is_none() {
        "stopped".to_string()
    } else {
        r.status.clone()
    }
}

/// `flowc runs`.
pub fn runs(args: &RunsArgs) -> CliResult {
    let journal = args.journal.open_read_only()?;
    let rows = journal.runs()?;
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id, "skill": r.skill, "file": r.file, "status": r.status,
                    "started_at": r.started_at, "finished_at": r.finished_at,
                    "shown_status": shown_status(&journal, r),
                    "duration_ms": driven_ms(&journal, r),
                })
            })
            .collect();
        return write_stdout(format!("{}\n", serde_json::Value::Array(list)).as_bytes());
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<20} {:<12} {:<20} {:>9}  FILE",
        "RUN", "SKILL", "STATUS", "STARTED (UTC)", "DURATION"
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<24} {:<20} {:<12} {:<20} {:>9}  {}",
            r.id,
            r.skill,
            shown_status(&journal, r),
            timestamp(r.started_at),
            duration(&journal, r),
            r.file
        );
    }
    if rows.is_empty() {
        out = "no runs yet\n".into();
    }
    write_stdout(out.as_bytes())
}

/// `flowc status [RUN]`.
pub fn status(args: &StatusArgs) -> CliResult {
    let journal = args.journal.open_read_only()?;
    let id = pick_run(&journal, args.run.as_deref())?;
    let run = journal.run(&id)?;
    let nodes = journal.nodes(&id)?;
    let restarts = journal.restarts(&id)?;
    let usage = journal.llm_usage(&id)?;
    let violations = journal.events_of(&id, Some("policy_violation"))?;
    let violations: Vec<serde_json::Value> = violations
        .into_iter()
        .map(|e| {
            let mut v = e.data;
            v["node"] = serde_json::json!(e.node);
            v["at"] = serde_json::json!(e.at);
            v
        })
        .collect();
    if args.json {
        let v = serde_json::json!({ "run": run, "nodes": nodes, "llm_usage": usage, "violations": violations });
        return write_stdout(format!("{v}\n").as_bytes());
    }
    let mut out = String::new();
    let shown = shown_status(&journal, &run);
    let _ = writeln!(
        out,
        "run {} · skill {} · {} · {shown} · {}",
        run.id,
        run.skill,
        run.file,
        duration(&journal, &run)
    );
    if shown == "stopped" {
        let _ = writeln!(
            out,
            "its process is gone (killed or crashed): continue with `flowc run --resume {}`",
            run.id
        );
    }
    if let Some(e) = &run.error {
        let _ = writeln!(out, "error: {e}");
    }
    for v in &violations {
        let _ = writeln!(
            out,
            "policy violation: `{}` ({}) of policy `{}`{}",
            v["rule"].as_str().unwrap_or_default(),
            match &v["value"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            v["policy"].as_str().unwrap_or_default(),
            v["node"]
                .as_str()
                .map(|n| format!(" at step `{n}`"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "{:<36} {:<9} {:<12} {:>8} {:>9}  LAST ERROR",
        "STEP", "KIND", "STATUS", "ATTEMPTS", "DURATION"
    );
    for n in &nodes {
        // After an interruption a node ran again: its time counts from then.
        let started = n
            .started_at
            .map(|s| restarts.get(&n.key).copied().unwrap_or(s).max(s));
        let took = match (started, n.finished_at) {
            (Some(s), Some(f)) => format_ms(f.saturating_sub(s).max(0) as u64),
            _ => "-".into(),
        };
        let err = n
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:<36} {:<9} {:<12} {:>8} {:>9}  {}",
            n.key, n.kind, n.status, n.attempt, took, err
        );
    }
    for u in &usage {
        let _ = writeln!(out, "{}", super::run::usage_line(u));
    }
    if let Some(o) = run.output.as_ref().filter(|o| !o.is_null()) {
        let _ = writeln!(out, "output: {o}");
    }
    write_stdout(out.as_bytes())
}

/// `flowc log STEP` reads STEP as a run: when the latest run has such a step,
/// say how to ask for it.
fn step_hint(journal: &Journal, args: &LogArgs, err: CliError) -> CliError {
    let (Some(step), None) = (args.run.as_deref(), args.step.as_deref()) else {
        return err;
    };
    let Ok(Some(latest)) = journal.latest_run() else {
        return err;
    };
    let has_step = journal
        .nodes(&latest)
        .is_ok_and(|nodes| nodes.iter().any(|n| n.key == step));
    if has_step {
        err.help(format!(
            "`{step}` is a step of the latest run; name the run first: `flowc log {latest} {step}`"
        ))
    } else {
        err
    }
}

/// `flowc log [RUN [STEP]]`.
pub fn log(args: &LogArgs) -> CliResult {
    let journal = args.journal.open_read_only()?;
    let id = pick_run(&journal, args.run.as_deref()).map_err(|e| step_hint(&journal, args, e))?;
    let events = journal.events(&id)?;
    if let Some(step) = &args.step
        && !events
            .iter()
            .any(|e| e.node.as_deref() == Some(step.as_str()))
    {
        return Err(CliError::usage(format!(
            "run `{id}` has no step instance `{step}` (see `flowc status {id}`)"
        )));
    }
    let mut out = String::new();
    // Nodes interrupted (a crash, Ctrl-C) and not yet running again.
    let mut interrupted: std::collections::HashSet<String> = Default::default();
    for e in &events {
        if args
            .step
            .as_deref()
            .is_some_and(|s| e.node.as_deref() != Some(s))
        {
            continue;
        }
        if args.attempt.is_some() && e.attempt != args.attempt {
            continue;
        }
        let node = e.node.as_deref().unwrap_or("-");
        let at = timestamp(e.at);
        match e.kind.as_str() {
            "output" => write_output(&mut out, &at, node, e.attempt, &e.data),
            "llm_call" if e.data.get("turn").is_some() => agent_turn(&mut out, &at, node, e),
            "tool_call_started" => {
                let d = &e.data;
                let _ = writeln!(
                    out,
                    "{at} {node} attempt {} call {} `{}` ({}) {}{}",
                    e.attempt.unwrap_or(0),
                    d["number"],
                    d["tool"].as_str().unwrap_or_default(),
                    d["effect"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .unwrap_or("unknown"),
                    d["args"],
                    if d["awaiting_approval"] == true {
                        " — waiting for approval"
                    } else {
                        ""
                    }
                );
            }
            "tool_call_finished" => {
                let d = &e.data;
                let mark = if d["is_error"] == true { "✗" } else { "→" };
                let cut = if d["truncated"] == true {
                    ", cut for the model"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "{at} {node} {mark} `{}`: {} bytes{cut}",
                    d["tool"].as_str().unwrap_or_default(),
                    d["bytes"]
                );
                let text = d["result"].as_str().unwrap_or_default();
                for line in text.lines().take(20) {
                    let _ = writeln!(out, "  {line}");
                }
                if text.lines().count() > 20 {
                    let _ = writeln!(out, "  … ({} lines in all)", text.lines().count());
                }
            }
            "llm_call" => {
                let d = &e.data;
                let _ = writeln!(
                    out,
                    "{at} {node} attempt {} model {} ({}): {} tokens in, {} out, ${:.4}",
                    e.attempt.unwrap_or(0),
                    d["model"].as_str().unwrap_or_default(),
                    d["source"].as_str().unwrap_or_default(),
                    d["tokens_in"],
                    d["tokens_out"],
                    d["cost_usd"].as_f64().unwrap_or(0.0)
                );
                for m in d["request"]["body"]["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let _ = writeln!(out, "  --- {}", m["role"].as_str().unwrap_or("message"));
                    for line in m["content"].as_str().unwrap_or_default().lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                if let Some(s) = d["request"]["body"]["system"].as_str() {
                    let _ = writeln!(out, "  --- system");
                    for line in s.lines() {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                match (d["reply"].as_str(), d["error"].as_str()) {
                    (Some(reply), _) => {
                        let _ = writeln!(out, "  --- reply");
                        for line in reply.lines() {
                            let _ = writeln!(out, "  {line}");
                        }
                    }
                    (None, Some(err)) => {
                        let _ = writeln!(out, "  --- error: {err}");
                    }
                    _ => {}
                }
            }
            "node_status" => {
                // A start or an end folded into one status (schema version 6)
                // reads as the events it replaced.
                if let Some(added) = e.data.get("added") {
                    let _ = writeln!(out, "{at} {node} node_added {added}");
                }
                if let Some(log) = e.data.get("log") {
                    write_output(&mut out, &at, node, e.attempt, log);
                }
                let status = e.data["status"].as_str().unwrap_or_default();
                let mut line = format!("{at} {node} {status}");
                let again = match status {
                    "interrupted" => {
                        interrupted.insert(node.to_string());
                        false
                    }
                    "running" => interrupted.remove(node),
                    _ => false,
                };
                match (e.attempt, again) {
                    (Some(a), true) => {
                        let _ = write!(line, " (attempt {a} again, after an interruption)");
                    }
                    (Some(a), false) => {
                        let _ = write!(line, " (attempt {a})");
                    }
                    _ => {}
                }
                for k in ["error", "feedback"] {
                    if let Some(t) = e.data[k].as_str() {
                        let _ = write!(line, " {k}: {}", t.lines().next().unwrap_or_default());
                        break;
                    }
                }
                let _ = writeln!(out, "{line}");
            }
            kind => {
                let _ = writeln!(out, "{at} {node} {kind} {}", e.data);
            }
        }
    }
    write_stdout(out.as_bytes())
}

/// One attempt's output (an `output` event's data, or a status's `log`).
fn write_output(
    out: &mut String,
    at: &str,
    node: &str,
    attempt: Option<u32>,
    data: &serde_json::Value,
) {
    let outcome = match (data["outcome"].as_str(), data["outcome_detail"].as_str()) {
        (Some(kind), Some(detail)) if kind != "exit" => format!(", {kind}: {detail}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "{at} {node} attempt {} output (exit {}{outcome}):",
        attempt.unwrap_or(0),
        data["exit_code"]
    );
    for name in ["stdout", "stderr"] {
        let text = data[name].as_str().unwrap_or_default();
        if !text.is_empty() {
            let _ = writeln!(out, "  --- {name}");
            for line in text.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
}

/// `flowc replay RUN`: exit 1 listing every difference.
pub fn replay(args: &ReplayArgs) -> CliResult {
    let journal = args.journal.open_read_only()?;
    let id = journal.resolve_run(&args.run)?;
    journal.integrity_check()?;
    // The history first (the hash chain, order, well-formed rows), then
    // whether the stored state is what the events say.
    let problems = journal.verify(&id)?;
    let (diffs, unapplied) = match journal.replay(&id) {
        Ok(d) => (d, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if problems.is_empty() && diffs.is_empty() && unapplied.is_none() {
        let events = journal.events(&id).map(|e| e.len()).unwrap_or(0);
        let _ = write_stdout(
            format!(
                "run {id} verifies: {events} events, their hash chain intact, rebuild the stored state exactly\n"
            )
            .as_bytes(),
        );
        return Ok(super::EXIT_OK);
    }
    let mut text = format!(
        "run {id} does not verify: {} problem(s) in its history, {} difference(s) in its state\n",
        problems.len() + usize::from(unapplied.is_some()),
        diffs.len()
    );
    for p in &problems {
        text.push_str(&format!("  event {}: {}\n", p.seq, p.what));
    }
    if let Some(e) = unapplied {
        text.push_str(&format!("  the events do not rebuild a state: {e}\n"));
    }
    for d in diffs {
        text.push_str(&format!(
            "  {} · {}: stored {} · replayed {}\n",
            d.row, d.column, d.stored, d.replayed
        ));
    }
    eprint!("{text}");
    Ok(EXIT_FAILED)
}

/// One turn of an agent: the model's text and the calls it asked for (the
/// conversation it was shown is in the earlier lines).
fn agent_turn(out: &mut String, at: &str, node: &str, e: &crate::journal::Event) {
    use std::fmt::Write as _;
    let d = &e.data;
    let _ = writeln!(
        out,
        "{at} {node} attempt {} turn {} model {} ({}): {} tokens in, {} out, ${:.4}",
        e.attempt.unwrap_or(0),
        d["turn"],
        d["model"].as_str().unwrap_or_default(),
        d["source"].as_str().unwrap_or_default(),
        d["tokens_in"],
        d["tokens_out"],
        d["cost_usd"].as_f64().unwrap_or(0.0)
    );
    if let Some(err) = d["error"].as_str() {
        let _ = writeln!(out, "  --- error: {err}");
        return;
    }
    let reply = &d["agent_reply"];
    for line in reply["text"].as_str().unwrap_or_default().lines() {
        let _ = writeln!(out, "  {line}");
    }
    for c in reply["tool_calls"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  asks `{}` {}",
            c["name"].as_str().unwrap_or_default(),
            c["args"]
        );
    }
}
