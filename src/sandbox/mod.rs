//! The sandbox of `run` steps: what this machine supports, the plan for one
//! process, starting it inside that plan, and classifying how it ended.
//!
//! Architecture invariant: `unsafe` in flowc is confined to this module: the
//! `pre_exec` hook in `spawn.rs` (everything the child does there is prepared
//! in the parent), and the spawner's fork, clone and descriptor handling in
//! `spawner.rs` and `zygote.rs` (a single-threaded process).

mod outcome;
mod plan;
mod spawn;
mod spawner;
mod support;
mod zygote;

pub use outcome::{Ended, Outcome};
pub use plan::{FsRules, Plan, narrow, resolve};
pub use spawn::{ChildSetup, Prepared, install, prepare, setup_error};
pub use spawner::{NotSpawned, Spawned, SpawnedChild, spawn_process, start_spawner};
pub use support::{Layer, Support};

use crate::ir::Sandbox;

/// The plan for a step whose own limits are `step`, run under a policy whose limits are `run`.
pub fn plan_for(step: &Sandbox, run: &Sandbox) -> Result<Plan, String> {
    Plan::new(&narrow(step, run), Support::get())
}
