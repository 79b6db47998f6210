//! `flowc failures` (what keeps failing, most frequent first) and `flowc stats`.

use super::{CliError, CliResult, JournalArgs, write_stdout};
use crate::analytics::group;
use crate::journal::timestamp;

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

/// Arguments of `flowc stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only runs started this recently (`7d`, `24h`, `30m`); default: all.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only runs of this skill.
    #[arg(long, value_name = "SKILL")]
    pub skill: Option<String>,
    /// Per step, prompt version and model instead: calls, attempts, success rate, tokens and cost.
    #[arg(long)]
    pub prompts: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// `--since DURATION` as a Unix ms lower bound (0: all).
fn since(text: Option<&str>) -> Result<i64, CliError> {
    text.map_or(Ok(0), |t| {
        crate::analytics::since_ms(t).map_err(|why| CliError::usage(format!("`--since`: {why}")))
    })
}

/// Prints the groups of recurring failures.
pub fn failures(args: &FailuresArgs) -> CliResult {
    let since = since(args.since.as_deref())?;
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

fn ms(v: Option<i64>) -> String {
    v.map_or_else(
        || "-".into(),
        |ms| crate::ir::format_ms(u64::try_from(ms).unwrap_or(0)),
    )
}

/// Prints per-skill and per-step figures.
pub fn stats(args: &StatsArgs) -> CliResult {
    let since = since(args.since.as_deref())?;
    let journal = args.journal.open_read_only()?;
    let skill = args.skill.as_deref();
    if args.prompts {
        return prompt_stats(&journal.prompt_calls(since, skill)?, args.json, since);
    }
    let all = crate::analytics::stats(
        &journal.run_rows(since, skill)?,
        &journal.step_rows(since, skill)?,
        &journal.step_llm(since, skill)?,
        &journal.failures(since, skill)?,
    );
    if args.json {
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        return write_stdout(format!("{text}\n").as_bytes());
    }
    if all.is_empty() {
        eprintln!(
            "no runs recorded{}",
            if since > 0 { " in that time" } else { "" }
        );
        return write_stdout(b"");
    }
    let mut out = String::new();
    for s in &all {
        out.push_str(&format!(
            "skill {}: {} runs, {} succeeded, {} failed{}; time p50 {}, p95 {}\n",
            s.skill,
            s.runs,
            s.succeeded,
            s.failed,
            s.success_rate
                .map(|r| format!(" ({:.0}% success)", r * 100.0))
                .unwrap_or_default(),
            ms(s.p50_ms),
            ms(s.p95_ms)
        ));
        out.push_str(&format!(
            "  {:<24} {:<8} {:>6} {:>5} {:>5} {:>9} {:>8} {:>8}  {}\n",
            "STEP", "KIND", "INST", "OK", "FAIL", "ATT/OK", "P50", "P95", "FAILURES · MODELS"
        ));
        for st in &s.steps {
            let mut notes: Vec<String> = st
                .failures
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect();
            notes.extend(st.models.iter().map(|m| {
                format!(
                    "{}: {} calls, {}/{} tokens, ${:.4}",
                    m.model, m.calls, m.tokens_in, m.tokens_out, m.cost_usd
                )
            }));
            out.push_str(&format!(
                "  {:<24} {:<8} {:>6} {:>5} {:>5} {:>9} {:>8} {:>8}  {}\n",
                st.step,
                st.kind,
                st.instances,
                st.succeeded,
                st.failed,
                st.attempts_per_success
                    .map_or_else(|| "-".into(), |a| format!("{a:.2}")),
                ms(st.p50_ms),
                ms(st.p95_ms),
                notes.join("; ")
            ));
        }
    }
    write_stdout(out.as_bytes())
}

/// `flowc stats --prompts`: each prompt version of each step beside the others.
fn prompt_stats(calls: &[crate::journal::PromptCall], json: bool, since: i64) -> CliResult {
    let rows = crate::analytics::prompts(calls);
    if json {
        let text = serde_json::to_string_pretty(&rows).unwrap_or_default();
        return write_stdout(format!("{text}\n").as_bytes());
    }
    if rows.is_empty() {
        eprintln!(
            "no model calls recorded{}",
            if since > 0 { " in that time" } else { "" }
        );
        return write_stdout(b"");
    }
    let mut out = format!(
        "{:<28} {:<13} {:<14} {:>6} {:>8} {:>8} {:>11} {:>9}  {}\n",
        "SKILL/STEP",
        "PROMPT",
        "MODEL",
        "CALLS",
        "ATTEMPTS",
        "SUCCESS",
        "TOKENS",
        "COST",
        "IN USE (UTC)"
    );
    for r in &rows {
        let version = if r.version.is_empty() {
            "(unrecorded)"
        } else {
            &r.version
        };
        out.push_str(&format!(
            "{:<28} {:<13} {:<14} {:>6} {:>8} {:>8} {:>11} {:>9}  {} – {}\n",
            format!("{}/{}", r.skill, r.step),
            version,
            r.model,
            r.calls,
            r.attempts,
            r.success_rate
                .map_or_else(|| "-".into(), |x| format!("{:.0}%", x * 100.0)),
            format!("{}/{}", r.tokens_in, r.tokens_out),
            format!("${:.4}", r.cost_usd),
            timestamp(r.first_at),
            timestamp(r.last_at),
        ));
    }
    write_stdout(out.as_bytes())
}
