//! The executor: runs a compiled skill under its policy, journaling every step.
//!
//! Architecture invariant: one scheduler task owns the journal connection;
//! attempts run as separate tasks that report back over a channel, and every
//! event is committed before the side effects it announces start.

mod accept;
pub mod against;
mod agent;
mod attempt;
mod blocks;
mod confine;
mod dispatch;
pub mod eval;
mod frame;
mod human;
pub mod inputs;
mod instances;
mod launch;
mod llm;
mod llm_call;
mod llm_reply;
mod memory;
mod observer;
mod plan;
mod process;
mod reuse;
mod rules;
mod scheduler;
pub mod script_result;
mod session;
mod settle;
mod step;

pub use human::user;
pub use observer::{Observer, Silent};
pub use plan::PlanRow;
pub use scheduler::{Decision, RunEnd, RunOptions, RunReport};
pub use session::execute;
