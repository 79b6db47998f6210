//! The sandbox of `run` steps: what this machine supports, the plan for one
//! process, starting it inside that plan, and classifying how it ended.
//!
//! Architecture invariant: `unsafe` in flowc is confined to this module: the
//! `pre_exec` hook in `spawn.rs` (everything the child does there is prepared
//! in the parent), the spawner's fork, clone and descriptor handling in
//! `spawner.rs`, `zygote.rs` (a single-threaded process) and `child.rs` (the
//! process it clones), the mount syscalls without a wrapper in `mounts.rs`,
//! and the forked probe child in `support.rs` (`in_child`).

mod child;
pub mod env;
mod init;
mod job;
mod mounts;
mod outcome;
mod plan;
mod pool;
mod spawn;
mod spawner;
mod support;
mod zygote;

pub use outcome::{Ended, Outcome};
pub use plan::{FsRules, Plan, narrow, resolve};
pub use spawn::{ChildSetup, Prepared, install, prepare, setup_error};
pub use spawner::{NotSpawned, Spawned, SpawnedChild, spawn_process, spawner_takes, start_spawner};
pub use support::{Layer, Support};

use crate::ir::Sandbox;

/// The plan for a step whose own limits are `step`, run under a policy whose limits are `run`.
pub fn plan_for(step: &Sandbox, run: &Sandbox) -> Result<Plan, String> {
    Plan::new(&narrow(step, run), Support::get())
}

/// What the `run` steps with sandboxes `steps` ask for that this machine cannot
/// enforce under the run's limits `run` (each text once): limits that run with
/// the layers available. Refusals are left to the steps that meet them.
pub fn unenforced<'a>(steps: impl IntoIterator<Item = &'a Sandbox>, run: &Sandbox) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Most steps share a sandbox: each distinct one is planned once.
    let mut seen: Vec<&Sandbox> = Vec::new();
    for step in steps {
        if seen.contains(&step) {
            continue;
        }
        seen.push(step);
        if let Ok(plan) = plan_for(step, run) {
            for m in plan.missing {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    out
}
