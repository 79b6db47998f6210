//! `flowc run`: compile, type the inputs, execute with live progress, print the result.

use super::progress::{JsonLines, Lines, Live};
use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, JournalArgs, write_stdout};
use crate::exec::{Observer, RunEnd, RunOptions, execute, inputs};
use crate::journal::{Durability, Journal};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Exit code of a run waiting for a person.
pub const EXIT_PAUSED: u8 = 75;
/// Exit code of an interrupted run.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How durable journal commits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// Survives a crash of flowc (SQLite `synchronous=NORMAL`).
    Normal,
    /// Survives power loss too (`synchronous=FULL`); slower.
    Full,
}

/// Arguments of `flowc run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The .flow file (optional with --resume: the run remembers it).
    pub file: Option<PathBuf>,
    /// The skill (default: `main`, or the file's only skill).
    pub skill: Option<String>,
    /// An input, typed by the skill's parameters (ints, bools, durations; lists and records as JSON).
    #[arg(short = 'i', long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Inputs from a YAML or JSON file (a map of names to values).
    #[arg(long = "inputs", value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Continue a run (default: the latest unfinished run in this journal).
    #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<String>,
    /// With --resume: say, per step, why it is reused or run again.
    #[arg(long)]
    pub explain: bool,
    /// Stream journal events as NDJSON on stdout (the result is the last line).
    #[arg(long)]
    pub json: bool,
    /// Never ask on the terminal: pause (exit 75) when a person must decide.
    #[arg(long)]
    pub no_input: bool,
    /// How durable journal commits are.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Normal)]
    pub durability: DurabilityArg,
    /// Answer `llm` steps from the calls recorded in run RUN (by step
    /// instance and attempt) instead of asking the models.
    #[arg(long, value_name = "RUN")]
    pub replay_llm: Option<String>,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Runs or resumes a skill; returns the exit code.
pub fn run(args: &RunArgs, color: bool) -> u8 {
    let journal_path = args.journal.path();
    let durability = match args.durability {
        DurabilityArg::Normal => Durability::Normal,
        DurabilityArg::Full => Durability::Full,
    };
    if let Err(e) = args.journal.ensure_dir() {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
    let journal = match Journal::open(&journal_path, durability) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (file, skill_name, resume, stored_inputs) = match &args.resume {
        None => {
            let Some(file) = args.file.clone() else {
                eprintln!("error: name a .flow file to run, or pass --resume to continue a run");
                return EXIT_USAGE;
            };
            (file, args.skill.clone(), None, None)
        }
        Some(which) => {
            let row = if which.is_empty() {
                match journal.latest_unfinished() {
                    Ok(Some(row)) => row,
                    Ok(None) => {
                        eprintln!(
                            "error: no unfinished run in `{}` to resume (see `flowc runs`)",
                            journal_path.display()
                        );
                        return EXIT_USAGE;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_USAGE;
                    }
                }
            } else {
                match journal.resolve_run(which).and_then(|id| journal.run(&id)) {
                    Ok(row) => row,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_USAGE;
                    }
                }
            };
            if !args.inputs.is_empty() || args.inputs_file.is_some() {
                eprintln!("error: a resumed run keeps its inputs; start a new run to change them");
                return EXIT_USAGE;
            }
            let file = args
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from(&row.file));
            (
                file,
                Some(row.skill.clone()),
                Some(row.id.clone()),
                Some(row.inputs),
            )
        }
    };
    let (program, skill) = match super::compile::compile_entry(&file, skill_name.as_deref(), color)
    {
        Ok(p) => p,
        Err(_) => return EXIT_USAGE,
    };
    let typed = match stored_inputs {
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => serde_json::Map::new(),
        None => {
            let text = match &args.inputs_file {
                Some(p) => match std::fs::read_to_string(p) {
                    Ok(t) => Some((p.display().to_string(), t)),
                    Err(e) => {
                        eprintln!("error: cannot read `{}`: {e}", p.display());
                        return EXIT_USAGE;
                    }
                },
                None => None,
            };
            match inputs::collect(
                &skill,
                &args.inputs,
                text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            ) {
                Ok(m) => m,
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    return EXIT_USAGE;
                }
            }
        }
    };
    let replay_llm = match &args.replay_llm {
        None => None,
        Some(id) => match journal.resolve_run(id) {
            Ok(id) => Some(id),
            Err(e) => {
                eprintln!("error: --replay-llm: {e}");
                return EXIT_USAGE;
            }
        },
    };
    let interactive = !args.no_input
        && !args.json
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    let opts = RunOptions {
        resume: resume.clone(),
        inputs: typed,
        interactive,
        file: file.display().to_string(),
        replay_llm,
    };
    let mut observer: Box<dyn Observer> = if args.json {
        Box::new(JsonLines::default())
    } else if std::io::stderr().is_terminal() {
        Box::new(Live::new(args.explain, interactive))
    } else {
        Box::new(Lines::new(args.explain))
    };
    if !args.json {
        note_unenforced(&program, &skill);
    }
    crate::secrets::guard_run(&program);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let report = runtime.block_on(execute(
        program,
        skill.clone(),
        journal,
        opts,
        observer.as_mut(),
    ));
    drop(observer);
    // Attempts may still hold process handles; do not wait for them.
    runtime.shutdown_background();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let usage = Journal::open_existing(&journal_path)
        .and_then(|j| j.llm_usage(&report.run_id))
        .unwrap_or_default();
    for u in &usage {
        eprintln!("  {}", usage_line(u));
    }
    let journal_shown = journal_path.display();
    let resume_cmd = format!("flowc run --resume {}", report.run_id);
    let journal_flag = if args.journal.is_default() {
        String::new()
    } else {
        format!(" --journal {journal_shown}")
    };
    match report.end {
        RunEnd::Succeeded => {
            eprintln!(
                "run {} succeeded ({} step attempts, {} reused) · journal {journal_shown}",
                report.run_id, report.attempts, report.reused
            );
            let out = report.output.unwrap_or(serde_json::Value::Null);
            let text = if args.json {
                format!(
                    "{}\n",
                    serde_json::json!({ "kind": "result", "run_id": report.run_id, "output": out, "llm_usage": usage })
                )
            } else {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&out).unwrap_or_default()
                )
            };
            write_stdout(text.as_bytes());
            EXIT_OK
        }
        RunEnd::Failed => {
            eprintln!(
                "run {} failed: {}\n  journal {journal_shown}; fix the cause, then `{resume_cmd}{journal_flag}`",
                report.run_id,
                report.error.unwrap_or_default()
            );
            EXIT_FAILED
        }
        RunEnd::Paused => {
            eprintln!(
                "run {} paused: {}\n  see `flowc approvals{journal_flag}`, decide with `flowc approve|reject|retry|skip {} STEP{journal_flag}`, then `{resume_cmd}{journal_flag}`",
                report.run_id,
                report.error.unwrap_or_default(),
                report.run_id
            );
            EXIT_PAUSED
        }
        RunEnd::Interrupted => {
            eprintln!(
                "run {} interrupted · continue with `{resume_cmd}{journal_flag}`",
                report.run_id
            );
            EXIT_INTERRUPTED
        }
    }
}

/// One model's calls, tokens and cost, for summaries.
/// One line on stderr when a limit the run's steps ask for cannot be enforced
/// here (root and `processes`, no Landlock, …): the steps run with the rest,
/// and each `running` event lists what is missing.
fn note_unenforced(program: &crate::ir::Program, skill: &crate::ir::Skill) {
    let steps = program.skills.values().flat_map(|s| {
        s.nodes.iter().filter_map(|n| match &n.kind {
            crate::ir::NodeKind::Step(step) => match &step.kind {
                crate::ir::StepKind::Run(run) => Some(&run.sandbox),
                _ => None,
            },
            _ => None,
        })
    });
    let missing = crate::sandbox::unenforced(steps, &skill.policy.sandbox);
    if !missing.is_empty() {
        eprintln!(
            "note: not enforced on this machine: {}; steps run with every other limit (see `flowc doctor`)",
            missing.join("; ")
        );
    }
}

pub fn usage_line(u: &crate::journal::LlmUsage) -> String {
    format!(
        "model {}: {} call{}, {} tokens in, {} out, ${:.4}",
        u.model,
        u.calls,
        if u.calls == 1 { "" } else { "s" },
        u.tokens_in,
        u.tokens_out,
        u.cost_usd
    )
}
