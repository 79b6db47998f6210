//! `flowc gc`: prune runs that ended long ago, the one way anything leaves the journal.

use super::{CliError, CliResult, EXIT_OK, JournalArgs, write_stdout};

/// Arguments of `flowc gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Prune runs that ended (succeeded, failed, cancelled) longer ago than this: `30d`, `12h`.
    #[arg(long, value_name = "DURATION")]
    pub older_than: String,
    /// Only say which runs would go.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Runs `flowc gc`.
pub fn run(args: &GcArgs) -> CliResult {
    let ms = crate::syntax::parse_duration(&args.older_than).ok_or_else(|| {
        CliError::usage(format!(
            "`{}` is not a duration; write one such as `30d`, `12h` or `90m`",
            args.older_than
        ))
    })?;
    let before = crate::journal::now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
    let mut journal = args.journal.open_existing()?;
    let rule = format!("--older-than {}", args.older_than);
    let pruned = journal.gc(before, args.dry_run, &crate::exec::user(), &rule)?;
    if args.json {
        let out = serde_json::json!({
            "dry_run": args.dry_run,
            "runs": pruned.runs,
            "events": pruned.events,
        });
        return write_stdout(format!("{out}\n").as_bytes());
    }
    let verb = if args.dry_run {
        "would prune"
    } else {
        "pruned"
    };
    let mut out = format!(
        "{verb} {} run(s) that ended more than {} ago ({} events)\n",
        pruned.runs.len(),
        args.older_than,
        pruned.events
    );
    for run in &pruned.runs {
        out.push_str(&format!("  {run}\n"));
    }
    write_stdout(out.as_bytes())?;
    Ok(EXIT_OK)
}
