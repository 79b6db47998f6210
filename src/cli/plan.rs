//! `flowc plan` and `flowc run --dry-run`: per step, would it reuse a cached result or run, and why. No step runs and the journal is not touched.

use super::run::{RunArgs, typed_inputs, uses_cache};
use super::{CliError, CliResult, EXIT_OK, EXIT_USAGE, write_stdout};
use crate::exec::{RunOptions, Silent, execute};
use crate::journal::{Durability, Journal};
use std::path::PathBuf;

/// A journal of its own for the dry run, in the temporary directory: the
/// executor wants one, and the real one must not change.
fn scratch_journal() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("flowc-plan-{}-{nanos}.db", std::process::id()))
}

/// Runs the dry run; prints one line per step (or JSON) and exits 0.
pub fn plan(args: &RunArgs, color: bool) -> CliResult {
    let Some(file) = &args.file else {
        return Err(CliError::usage("name the .flow file to plan"));
    };
    let (program, skill) = super::compile::compile_entry(file, args.skill.as_deref(), color)
        .map_err(|e| CliError {
            code: EXIT_USAGE,
            ..e
        })?;
    let typed = typed_inputs(&skill, &args.inputs, args.inputs_file.as_deref())?;
    let cache_dir = (!args.no_cache && uses_cache(&program))
        .then(|| crate::cache::dir_for(&args.journal.path()));
    if let Some(dir) = &cache_dir {
        crate::cache::Store::open(dir).map_err(CliError::failed)?;
    }
    let opts = RunOptions {
        inputs: typed,
        file: file.display().to_string(),
        cache_dir,
        cache_max_bytes: crate::cache::DEFAULT_MAX_BYTES,
        plan: true,
        ..RunOptions::default()
    };
    crate::secrets::guard_run(&program);
    let scratch = scratch_journal();
    let mut journal = Journal::open(&scratch, Durability::Normal).map_err(CliError::failed)?;
    // The dry run recalls what a real run would: the project's memory.
    if let Ok(real) = args.journal.open_read_only() {
        for row in real.memory_list(None)? {
            journal.memory_set(&row.key, &row.value, &row.updated_by)?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    let report = runtime.block_on(execute(program, skill, journal, opts, &mut Silent));
    runtime.shutdown_background();
    for suffix in ["", "-wal", "-shm", "-head"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
    }
    let rows = report.map_err(CliError::failed)?.plan;
    let reuse = rows.iter().filter(|r| r.reuse).count();
    let text = if args.json {
        let json = serde_json::json!({ "steps": rows, "reuse": reuse, "run": rows.len() - reuse });
        format!("{json}\n")
    } else {
        rows.iter().map(|r| format!("{}\n", r.line())).collect()
    };
    write_stdout(text.as_bytes())?;
    if !args.json {
        eprintln!(
            "dry run: {reuse} would be reused, {} would run; nothing was run",
            rows.len() - reuse
        );
    }
    Ok(EXIT_OK)
}
