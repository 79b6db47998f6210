//! Answers from past runs: recurring failures grouped by class and a normalised signature, and per-skill, per-step statistics.

mod failures;
mod prompts;
mod stats;

pub use failures::{Class, Group, classify, group, signature};
pub use prompts::{PromptStats, prompts};
pub use stats::{ModelUse, SkillStats, StepStats, percentile, stats};

/// A `since` window (`7d`, `24h`, `30m`; `all`) as a Unix ms lower bound (0: all).
pub fn since_ms(text: &str) -> Result<i64, String> {
    if text == "all" {
        return Ok(0);
    }
    let ms = crate::syntax::parse_duration(text).ok_or_else(|| {
        format!("`{text}` is not a duration; write one such as `7d`, `24h` or `30m`")
    })?;
    Ok(crate::journal::now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)))
}
