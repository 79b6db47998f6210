//! Helpers shared by the integration tests that drive the built binary.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flowc");

/// Runs `flowc ARGS` in `dir` with the default journal there and no stdin.
pub fn flowc(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `flowc ARGS` in `dir` with `env` set and nothing from the caller's
/// environment that would pick a journal, a provider, a model server or a crash point.
pub fn flowc_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_LLM_PROVIDER")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("FLOWC_DEBUG_CRASH_AFTER_COMMITS")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The id of the newest run in `dir`'s default journal.
pub fn latest_run(dir: &Path) -> String {
    let journal = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    journal.runs().unwrap()[0].id.clone()
}

/// A process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub mod model_server;
pub mod service;
pub mod store;
pub mod web;

/// Whether this machine has sandbox layer `name`, from `flowc doctor --json`.
pub fn has_layer(name: &str) -> bool {
    let out = Command::new(BIN)
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == name && l["available"] == true)
}
