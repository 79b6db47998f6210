//! The executor: runs a compiled skill under its policy, journaling every step.
//!
//! Architecture invariant: one scheduler task owns the journal connection;
//! attempts run as separate tasks that report back over a channel, and every
//! event is committed before the side effects it announces start.

mod attempt;
mod blocks;
pub mod eval;
mod frame;
pub mod inputs;
mod llm;
mod observer;
mod scheduler;
mod step;

pub use observer::{Observer, Silent};
pub use scheduler::{Decision, RunEnd, RunOptions, RunReport, execute};
