//! Answers from past runs: recurring failures grouped by class and a normalised signature.

mod failures;

pub use failures::{Class, Group, classify, group, signature};
