//! `flowc failures`: what keeps failing, most frequent first.

use super::{CliError, CliResult, JournalArgs, write_stdout};
use crate::analytics::group;
use crate::journal::{now_ms, timestamp};

/// Arguments of `flowc failures`.
#[derive(Debug, clap::Args)]
pub struct FailuresArgs {
    /// Only failures this recent (`7d`, `24h`, `30m`); default: all.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only runs of this skill.
    #[arg(long, value_name = "SKILL")]
    pub skill: Option<String>,
    /// At most this many groups.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Prints the groups of recurring failures.
pub fn failures(args: &FailuresArgs) -> CliResult {
    let since = match &args.since {
        None => 0,
        Some(text) => {
            let ms = crate::syntax::parse_duration(text).ok_or_else(|| {
                CliError::usage(format!(
                    "`--since {text}` is not a duration; write one such as `7d`, `24h` or `30m`"
                ))
            })?;
            now_ms() - i64::try_from(ms).unwrap_or(i64::MAX)
        }
    };
    let journal = args.journal.open_read_only()?;
    let rows = journal.failures(since, args.skill.as_deref())?;
    let mut groups = group(&rows);
    groups.truncate(args.limit);
    if args.json {
        let text = serde_json::to_string_pretty(&groups).unwrap_or_default();
        return write_stdout(format!("{text}\n").as_bytes());
    }
    if groups.is_empty() {
        eprintln!(
            "no failures recorded{}",
            if since > 0 { " in that time" } else { "" }
        );
        return write_stdout(b"");
    }
    let mut out = format!(
        "{:>5}  {:<28} {:<22} {:<20} {}\n",
        "COUNT", "SKILL/STEP", "CLASS", "LAST SEEN (UTC)", "SIGNATURE"
    );
    for g in &groups {
        out.push_str(&format!(
            "{:>5}  {:<28} {:<22} {:<20} {}\n",
            g.count,
            format!("{}/{}", g.skill, g.step),
            g.class.word(),
            timestamp(g.last),
            g.signature
        ));
        let shown: Vec<&str> = g.runs.iter().rev().take(3).map(String::as_str).collect();
        let more = g.runs.len().saturating_sub(shown.len());
        out.push_str(&format!(
            "       in {} run{}: {}{}; first seen {}\n",
            g.runs.len(),
            if g.runs.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
            timestamp(g.first)
        ));
        let latest = g.latest.lines().next().unwrap_or_default();
        if !latest.is_empty() && latest != g.signature {
            out.push_str(&format!(
                "       latest: {}\n",
                latest.chars().take(160).collect::<String>()
            ));
        }
    }
    write_stdout(out.as_bytes())
}
