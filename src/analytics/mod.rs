//! Answers from past runs: recurring failures grouped by class and a normalised signature, and per-skill, per-step statistics.

mod failures;
mod prompts;
mod stats;

pub use failures::{Class, Group, classify, group, signature};
pub use prompts::{PromptStats, prompts};
pub use stats::{ModelUse, SkillStats, StepStats, percentile, stats};
