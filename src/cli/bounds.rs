//! `flowc check --bounds`: each skill's worst case, and where it passes its policy's caps.

use crate::check::CheckOutput;
use crate::ir::bounds::{Bound, Bounds, bounds};
use crate::ir::{Skill, format_ms};
use serde_json::{Value as Json, json};

/// One skill's bounds and the caps they pass.
struct Row<'a> {
    file: &'a str,
    skill: &'a Skill,
    b: Bounds,
    warnings: Vec<String>,
}

fn show(b: Bound) -> String {
    b.map_or_else(|| "unbounded".to_string(), |n| n.to_string())
}

/// What passes the skill's policy caps (or has no bound, so a cap decides).
fn warnings(skill: &Skill, b: &Bounds) -> Vec<String> {
    let p = &skill.policy;
    let mut out = Vec::new();
    match b.attempts {
        Some(n) if n > p.max_steps => out.push(format!(
            "up to {n} step attempts, more than `max_steps` ({}) of policy `{}`: the cap would stop the run",
            p.max_steps, p.name
        )),
        None => out.push(format!(
            "step attempts are unbounded (a `for` over a list only the run knows): `max_steps` ({}) of policy `{}` is the bound",
            p.max_steps, p.name
        )),
        _ => {}
    }
    match b.wall_ms {
        Some(ms) if ms > p.run_timeout_ms => out.push(format!(
            "may take up to {}, longer than `run_timeout` ({}) of policy `{}`",
            format_ms(ms),
            format_ms(p.run_timeout_ms),
            p.name
        )),
        None => out.push(format!(
            "wall time is unbounded (a `for` of unknown length): `run_timeout` ({}) is the bound",
            format_ms(p.run_timeout_ms)
        )),
        _ => {}
    }
    if let (Some(cap), Some(t)) = (p.max_tokens, b.output_tokens)
        && t > cap
    {
        out.push(format!(
            "up to {t} output tokens, more than `max_tokens` ({cap}) of policy `{}`",
            p.name
        ));
    }
    if let (Some(cap), Some(c)) = (p.max_cost_usd, b.output_cost_usd)
        && c > cap
    {
        out.push(format!(
            "output alone may cost ${c:.4}, more than `max_cost_usd` (${cap}) of policy `{}`",
            p.name
        ));
    }
    if b.llm_calls.is_some_and(|n| n > 0) && b.output_tokens.is_none() {
        out.push("a model call has no `max_tokens`: its output is unbounded".into());
    }
    out
}

fn rows(out: &CheckOutput) -> Vec<Row<'_>> {
    let mut rows = Vec::new();
    for file in &out.files {
        let Some(program) = &file.program else {
            continue;
        };
        let all = bounds(program);
        for key in &program.entry {
            let (Some(skill), Some(b)) = (program.skills.get(key), all.get(key)) else {
                continue;
            };
            let warnings = warnings(skill, b);
            rows.push(Row {
                file: &file.path,
                skill,
                b: *b,
                warnings,
            });
        }
    }
    rows
}

/// The bounds as text, one block per skill.
pub fn text(out: &CheckOutput) -> String {
    let mut s = String::from("worst case per skill (every `when` true, every attempt used):\n");
    for r in rows(out) {
        let cost = match r.b.output_cost_usd {
            Some(c) if r.b.llm_calls.is_some_and(|n| n > 0) => format!(", output ≤ ${c:.4}"),
            _ => String::new(),
        };
        let people = match r.b.person_ms {
            Some(0) => String::new(),
            Some(ms) => format!(" + up to {} waiting for people", format_ms(ms)),
            None => " + waiting for people without a timeout".into(),
        };
        s.push_str(&format!(
            "  {} ({}): {} step attempts, {} model calls, {} output tokens{cost}, wall {}{people}\n",
            r.skill.name,
            r.file,
            show(r.b.attempts),
            show(r.b.llm_calls),
            show(r.b.output_tokens),
            r.b.wall_ms.map_or_else(|| "unbounded".into(), format_ms),
        ));
        for w in &r.warnings {
            s.push_str(&format!("    warning: {w}\n"));
        }
    }
    s
}

/// The bounds as JSON, one object per skill.
pub fn json(out: &CheckOutput) -> Json {
    Json::Array(
        rows(out)
            .into_iter()
            .map(|r| {
                json!({
                    "file": r.file,
                    "skill": r.skill.name,
                    "bounds": r.b,
                    "warnings": r.warnings,
                })
            })
            .collect(),
    )
}
