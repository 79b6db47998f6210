//! `flowc serve`, `flowc triggers` and `flowc trigger fire`.

use super::{CliError, CliResult, EXIT_OK, EXIT_USAGE, JournalArgs, write_stdout};
use crate::ir::TriggerSource;
use crate::serve::{Loaded, load, log, rfc3339};
use std::path::PathBuf;

/// Arguments of `flowc serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Files and directories whose triggers to run (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// Address of the listener for webhooks, `/healthz`, `/readyz` and `/metrics`; `none` for no listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8737")]
    pub listen: String,
    /// Run processes at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// After SIGTERM, how long running steps may finish before they are interrupted.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: u64,
    /// The service log's format on stderr.
    #[arg(long, value_enum, default_value_t = log::LogFormat::Human)]
    pub log_format: log::LogFormat,
    /// The people file: who may sign in to the page and decide (tokens from `flowc people add`).
    #[arg(long, value_name = "FILE")]
    pub people: Option<PathBuf>,
    /// The page's address as people reach it (for links in notifications; default: the listener's).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Arguments of `flowc triggers`.
#[derive(Debug, clap::Args)]
pub struct TriggersArgs {
    /// Files and directories to look in (default: the current directory).
    pub paths: Vec<PathBuf>,
    /// How many next fire times to show for cron triggers.
    #[arg(long, default_value_t = 3)]
    pub next: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `flowc trigger …`.
#[derive(Debug, clap::Subcommand)]
pub enum TriggerCommand {
    /// Fire a trigger now, through the same path as its schedule or webhook (the service runs it).
    Fire {
        /// The trigger's name.
        name: String,
        /// Files and directories to look in (default: the current directory).
        paths: Vec<PathBuf>,
        /// The event's `body` for a webhook trigger (JSON).
        #[arg(long, value_name = "JSON")]
        body: Option<String>,
        /// The event's `paths` for a watch trigger.
        #[arg(long = "path", value_name = "PATH")]
        changed: Vec<String>,
        #[command(flatten)]
        journal: JournalArgs,
    },
}

/// Reads `30s`, `2m`, `1h`, `500ms` into milliseconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    crate::syntax::parse_duration(text).ok_or_else(|| {
        format!("`{text}` is not a duration; write a number and a unit: `500ms`, `30s`, `2m`, `1h`")
    })
}

fn paths_or_here(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    }
}

/// `flowc serve`.
pub fn serve(args: &ServeArgs, color: bool) -> CliResult {
    let triggers = load(&paths_or_here(&args.paths), color).map_err(CliError::usage)?;
    args.journal.ensure_dir().map_err(CliError::usage)?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    if workers == 0 {
        return Err(CliError::usage("`--workers` must be at least 1"));
    }
    let config = crate::serve::Config {
        journal: args.journal.path(),
        listen: (args.listen != "none").then(|| args.listen.clone()),
        workers,
        drain_ms: args.drain_timeout,
        log: log::Log {
            format: args.log_format,
        },
        people: (
            args.people.clone(),
            match &args.people {
                Some(path) if !path.exists() => {
                    return Err(CliError::usage(format!(
                        "the people file `{}` does not exist; create it with `flowc people add NAME --people {}`",
                        path.display(),
                        path.display()
                    )));
                }
                Some(path) => crate::approvals::People::load(path).map_err(CliError::usage)?,
                None => Default::default(),
            },
        ),
        public_url: args
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string()),
    };
    crate::serve::serve(config, triggers).map_err(CliError::failed)
}

/// `flowc triggers`: each trigger, what it listens to, its next fire times.
pub fn triggers(args: &TriggersArgs, color: bool) -> CliResult {
    let loaded = load(&paths_or_here(&args.paths), color).map_err(CliError::usage)?;
    // The service's clock: a test's `FLOWC_TEST_CLOCK` moves this listing too.
    let now = jiff::Timestamp::from_millisecond(crate::serve::Clock::from_env().now_ms())
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let rows: Vec<serde_json::Value> = loaded.iter().map(|l| row(l, now, args.next)).collect();
    if args.json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        return write_stdout(format!("{text}\n").as_bytes());
    }
    if rows.is_empty() {
        eprintln!(
            "no triggers under {}",
            paths_or_here(&args.paths)
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(EXIT_OK);
    }
    let mut out = format!(
        "{:<20} {:<8} {:<28} {:<18} {}\n",
        "TRIGGER", "KIND", "ON", "RUNS", "NEXT (UTC)"
    );
    for r in &rows {
        let next: Vec<&str> = r["next"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<20} {:<8} {:<28} {:<18} {}\n",
            r["name"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["on"].as_str().unwrap_or_default(),
            r["skill"].as_str().unwrap_or_default(),
            if next.is_empty() {
                "-".to_string()
            } else {
                next.join(", ")
            }
        ));
    }
    write_stdout(out.as_bytes())
}

fn row(l: &Loaded, now: jiff::Timestamp, count: usize) -> serde_json::Value {
    let mut next = Vec::new();
    if let Some((schedule, zone)) = &l.cron {
        let mut after = now;
        for _ in 0..count {
            match schedule.next_after(after, zone) {
                Some(t) => {
                    next.push(rfc3339(t.as_millisecond()));
                    after = t;
                }
                None => break,
            }
        }
    }
    serde_json::json!({
        "name": l.trigger.name,
        "kind": crate::serve::load::kind(&l.trigger.source),
        "on": crate::serve::load::what(&l.trigger.source),
        "skill": l.skill.name,
        "skill_file": crate::serve::load::relative(&l.skill_file),
        "file": l.file,
        "description": l.trigger.description,
        "next": next,
    })
}

/// `flowc trigger fire NAME`.
pub fn trigger(cmd: &TriggerCommand, color: bool) -> CliResult {
    let TriggerCommand::Fire {
        name,
        paths,
        body,
        changed,
        journal,
    } = cmd;
    let loaded = load(&paths_or_here(paths), color).map_err(CliError::usage)?;
    let Some(l) = loaded.iter().find(|l| &l.trigger.name == name) else {
        let names: Vec<&str> = loaded.iter().map(|l| l.trigger.name.as_str()).collect();
        let hint = crate::diag::did_you_mean(name, names.iter().copied()).unwrap_or_else(|| {
            format!(
                "the triggers are: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            )
        });
        return Err(CliError::new(EXIT_USAGE, format!("no trigger `{name}`")).help(hint));
    };
    let body = match body {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| CliError::usage(format!("`--body` is not JSON: {e}")))?,
        None => serde_json::Value::Null,
    };
    // The service's clock, as `flowc triggers` reads it.
    let now = crate::serve::Clock::from_env().now_ms();
    let event = match &l.trigger.source {
        TriggerSource::Cron { .. } => serde_json::json!({ "scheduled_at": rfc3339(now) }),
        TriggerSource::Watch { .. } => serde_json::json!({ "paths": changed }),
        _ => serde_json::json!({ "headers": {}, "body": body, "received_at": rfc3339(now) }),
    };
    journal.ensure_dir().map_err(CliError::usage)?;
    let outcome =
        crate::serve::fire::fire_by_hand(&journal.path(), l, event).map_err(CliError::failed)?;
    use crate::serve::fire::Outcome;
    match outcome {
        Outcome::Queued(run) => {
            eprintln!("trigger `{name}` fired: run {run} is queued; `flowc serve` starts it");
            write_stdout(format!("{run}\n").as_bytes())
        }
        Outcome::Duplicate(_) => Err(CliError::failed("this fire was recorded before")),
        Outcome::Skipped(why) => {
            eprintln!("trigger `{name}` fired and started nothing: {why} (overlap)");
            Ok(EXIT_OK)
        }
        Outcome::Rejected(why) => Err(CliError::failed(format!(
            "trigger `{name}` fired, but its arguments do not fit `{}`: {why}",
            l.skill.name
        ))),
    }
}
