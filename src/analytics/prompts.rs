//! `flowc stats --prompts`: per step, prompt version and model, how often its attempts succeed and what they cost.

use crate::journal::PromptCall;
use std::collections::{BTreeMap, HashSet};

/// One (skill, step, prompt version, model).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PromptStats {
    /// The skill.
    pub skill: String,
    /// The step.
    pub step: String,
    /// The prompt version (a hash of the prompt and system text as written).
    pub version: String,
    /// The model.
    pub model: String,
    /// Model calls.
    pub calls: u64,
    /// Attempts that made a call.
    pub attempts: u64,
    /// Of those, the ones that succeeded.
    pub succeeded: u64,
    /// `succeeded / attempts`.
    pub success_rate: Option<f64>,
    /// Tokens in.
    pub tokens_in: u64,
    /// Tokens out.
    pub tokens_out: u64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// The first and the last call (Unix ms): when the version was in use.
    pub first_at: i64,
    /// The last call.
    pub last_at: i64,
}

/// (skill, step, prompt version, model).
type Key = (String, String, String, String);

/// The figures, by skill, step, then the version first used first.
pub fn prompts(calls: &[PromptCall]) -> Vec<PromptStats> {
    let mut by: BTreeMap<Key, (PromptStats, HashSet<&str>)> = BTreeMap::new();
    for c in calls {
        let key = (
            c.skill.clone(),
            c.step.clone(),
            c.version.clone(),
            c.model.clone(),
        );
        let (s, attempts) = by.entry(key).or_insert_with(|| {
            (
                PromptStats {
                    skill: c.skill.clone(),
                    step: c.step.clone(),
                    version: c.version.clone(),
                    model: c.model.clone(),
                    first_at: c.at,
                    ..PromptStats::default()
                },
                HashSet::new(),
            )
        });
        s.calls += 1;
        s.tokens_in += u64::try_from(c.tokens_in).unwrap_or(0);
        s.tokens_out += u64::try_from(c.tokens_out).unwrap_or(0);
        s.cost_usd += c.cost_usd;
        s.first_at = s.first_at.min(c.at);
        s.last_at = s.last_at.max(c.at);
        if attempts.insert(c.attempt.as_str()) {
            s.attempts += 1;
            s.succeeded += u64::from(c.succeeded);
        }
    }
    let mut out: Vec<PromptStats> = by
        .into_values()
        .map(|(mut s, _)| {
            s.success_rate = (s.attempts > 0).then(|| s.succeeded as f64 / s.attempts as f64);
            s
        })
        .collect();
    out.sort_by(|a, b| (&a.skill, &a.step, a.first_at).cmp(&(&b.skill, &b.step, b.first_at)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(version: &str, attempt: &str, succeeded: bool, at: i64) -> PromptCall {
        PromptCall {
            skill: "s".into(),
            step: "plan".into(),
            version: version.into(),
            model: "m".into(),
            attempt: attempt.into(),
            succeeded,
            tokens_in: 10,
            tokens_out: 5,
            cost_usd: 0.5,
            at,
        }
    }

    #[test]
    fn versions_side_by_side_attempts_counted_once() {
        let rows = prompts(&[
            call("aaa", "r1/plan/1", false, 1),
            call("aaa", "r1/plan/1", false, 2),
            call("aaa", "r1/plan/2", true, 3),
            call("bbb", "r2/plan/1", true, 10),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].version.as_str(),
                rows[0].calls,
                rows[0].attempts,
                rows[0].succeeded
            ),
            ("aaa", 3, 2, 1)
        );
        assert_eq!(rows[0].success_rate, Some(0.5));
        assert_eq!(
            (
                rows[1].version.as_str(),
                rows[1].attempts,
                rows[1].succeeded
            ),
            ("bbb", 1, 1)
        );
        assert!((rows[0].cost_usd - 1.5).abs() < 1e-9);
    }
}
