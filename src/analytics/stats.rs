//! `flowc stats`: per skill and per step, how often it succeeds, what it costs, how long it takes.

use super::failures::{Class, classify};
use crate::journal::{FailureRow, StepLlm, StepRow};
use std::collections::BTreeMap;

/// One skill's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SkillStats {
    /// The skill.
    pub skill: String,
    /// Runs started.
    pub runs: u64,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed.
    pub failed: u64,
    /// `succeeded / (succeeded + failed)`, when any ended.
    pub success_rate: Option<f64>,
    /// Run time (start to end, pauses included), ms: median and 95th percentile of ended runs.
    pub p50_ms: Option<i64>,
    /// 95th percentile.
    pub p95_ms: Option<i64>,
    /// Its steps, by name.
    pub steps: Vec<StepStats>,
}

/// One step's figures, over its instances in every run of the skill.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StepStats {
    /// The step.
    pub step: String,
    /// Its kind.
    pub kind: String,
    /// Instances (a step in a loop or `for` has several per run).
    pub instances: u64,
    /// Instances that succeeded.
    pub succeeded: u64,
    /// Instances that failed for good.
    pub failed: u64,
    /// Attempts started.
    pub attempts: u64,
    /// `attempts / succeeded`, when any succeeded.
    pub attempts_per_success: Option<f64>,
    /// Attempts after the first of an instance.
    pub retries: u64,
    /// Instance time, ms: median and 95th percentile of finished ones.
    pub p50_ms: Option<i64>,
    /// 95th percentile.
    pub p95_ms: Option<i64>,
    /// Failed attempts by class.
    pub failures: BTreeMap<String, u64>,
    /// Model use: (model, calls, tokens in, tokens out, cost).
    pub models: Vec<ModelUse>,
}

/// A step's use of one model.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ModelUse {
    /// The model.
    pub model: String,
    /// Calls.
    pub calls: u64,
    /// Tokens in.
    pub tokens_in: u64,
    /// Tokens out.
    pub tokens_out: u64,
    /// Cost in USD.
    pub cost_usd: f64,
}

/// The value at percentile `p` (0–100) of sorted `v`, nearest rank.
pub fn percentile(v: &[i64], p: u32) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * v.len() as u64).div_ceil(100).max(1) as usize;
    v.get(rank - 1).copied()
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The figures, skills in name order, steps in name order.
pub fn stats(
    runs: &[(String, String, Option<i64>)],
    steps: &[StepRow],
    llm: &[StepLlm],
    failures: &[FailureRow],
) -> Vec<SkillStats> {
    let mut skills: BTreeMap<String, (SkillStats, Vec<i64>)> = BTreeMap::new();
    for (skill, status, ms) in runs {
        let (s, times) = skills.entry(skill.clone()).or_default();
        s.skill.clone_from(skill);
        s.runs += 1;
        match status.as_str() {
            "succeeded" => s.succeeded += 1,
            "failed" => s.failed += 1,
            _ => {}
        }
        if let (Some(ms), "succeeded" | "failed" | "cancelled") = (ms, status.as_str()) {
            times.push(*ms);
        }
    }
    let mut by_step: BTreeMap<(String, String), (StepStats, Vec<i64>)> = BTreeMap::new();
    for row in steps {
        let (s, times) = by_step
            .entry((row.skill.clone(), row.step.clone()))
            .or_default();
        s.step.clone_from(&row.step);
        s.kind.clone_from(&row.kind);
        s.instances += 1;
        let attempts = u64::try_from(row.attempts).unwrap_or(0);
        s.attempts += attempts;
        s.retries += attempts.saturating_sub(1);
        match row.status.as_str() {
            "succeeded" => s.succeeded += 1,
            "failed" => s.failed += 1,
            _ => {}
        }
        if let Some(ms) = row
            .ms
            .filter(|_| row.status == "succeeded" || row.status == "failed")
        {
            times.push(ms);
        }
    }
    for f in failures.iter().filter(|f| f.what == "attempt") {
        if let Some((s, _)) = by_step.get_mut(&(f.skill.clone(), f.step.clone())) {
            let class: Class = classify(f);
            *s.failures.entry(class.word().to_string()).or_default() += 1;
        }
    }
    for l in llm {
        if let Some((s, _)) = by_step.get_mut(&(l.skill.clone(), l.step.clone())) {
            s.models.push(ModelUse {
                model: l.model.clone(),
                calls: u64::try_from(l.calls).unwrap_or(0),
                tokens_in: u64::try_from(l.tokens_in).unwrap_or(0),
                tokens_out: u64::try_from(l.tokens_out).unwrap_or(0),
                cost_usd: l.cost_usd,
            });
        }
    }
    for ((skill, _), (mut s, mut times)) in by_step {
        times.sort_unstable();
        s.p50_ms = percentile(&times, 50);
        s.p95_ms = percentile(&times, 95);
        s.attempts_per_success = (s.succeeded > 0).then(|| s.attempts as f64 / s.succeeded as f64);
        if let Some((k, _)) = skills.get_mut(&skill) {
            k.steps.push(s);
        }
    }
    skills
        .into_values()
        .map(|(mut s, mut times)| {
            times.sort_unstable();
            s.p50_ms = percentile(&times, 50);
            s.p95_ms = percentile(&times, 95);
            s.success_rate = rate(s.succeeded, s.succeeded + s.failed);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=20).collect();
        assert_eq!(percentile(&v, 50), Some(10));
        assert_eq!(percentile(&v, 95), Some(19));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
