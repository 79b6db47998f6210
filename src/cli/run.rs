//! `flowc run`: compile, type the inputs, execute with live progress, print the result.

use super::compile::Compiled;
use super::progress::{JsonLines, Lines, Live};
use super::{CliError, CliResult, EXIT_FAILED, EXIT_OK, EXIT_USAGE, JournalArgs, write_stdout};
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
    /// Run no step: say, per step, whether it would reuse a cached result or run, and why (as `flowc plan`).
    #[arg(long, conflicts_with_all = ["resume", "replay_llm"])]
    pub dry_run: bool,
    /// Neither reuse nor store results in the step cache.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// The step cache's directory beside the journal, unless `--no-cache`; a
/// cache that cannot be opened is reported and left off.
pub fn cache_dir(
    args: &RunArgs,
    journal: &std::path::Path,
    program: &crate::ir::Program,
) -> Option<PathBuf> {
    if args.no_cache || !uses_cache(program) {
        return None;
    }
    let dir = crate::cache::dir_for(journal);
    match crate::cache::Store::open(&dir) {
        Ok(_) => Some(dir),
        Err(e) => {
            eprintln!("warning: {e}; the step cache is off for this run");
            None
        }
    }
}

/// Whether any step of `program` may be cached (so a flow without one leaves no store behind).
pub fn uses_cache(program: &crate::ir::Program) -> bool {
    program.any_step(|st| st.cache.enabled)
}

/// Runs or resumes a skill; returns the exit code.
pub fn run(args: &RunArgs, color: bool) -> CliResult {
    if args.dry_run {
        return super::plan::plan(args, color);
    }
    let journal_path = args.journal.path();
    let durability = match args.durability {
        DurabilityArg::Normal => Durability::Normal,
        DurabilityArg::Full => Durability::Full,
    };
    let shown = crate::journal::redact_url(&journal_path.display().to_string());
    if args.resume.is_some()
        && crate::journal::postgres_url(&journal_path).is_none()
        && !journal_path.exists()
    {
        // Resuming must not leave an empty journal behind.
        return Err(CliError::usage(format!(
            "no journal at `{shown}`: there is no run to resume (start one with `flowc run FILE`, or pass `--journal PATH`)",
        )));
    }
    args.journal.ensure_dir().map_err(CliError::usage)?;
    let journal = Journal::open(&journal_path, durability).map_err(CliError::usage)?;
    let Target {
        file,
        skill: skill_name,
        resume,
        inputs: stored_inputs,
    } = target(args, &journal, &shown)?;
    let (program, skill, sources) = compile_target(
        &journal,
        &file,
        skill_name.as_deref(),
        resume.as_ref(),
        color,
    )?;
    let typed = match stored_inputs {
        Some(serde_json::Value::Object(map)) => map,
        Some(_) => serde_json::Map::new(),
        None => typed_inputs(&skill, &args.inputs, args.inputs_file.as_deref())?,
    };
    let replay_llm = match &args.replay_llm {
        None => None,
        Some(id) => match journal.resolve_run(id) {
            Ok(id) => Some(id),
            Err(e) => return Err(CliError::usage(format!("--replay-llm: {e}"))),
        },
    };
    let interactive = !args.no_input
        && !args.json
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    let (resume, queued) = match resume {
        Some((id, true)) => (None, Some(id)),
        Some((id, false)) => (Some(id), None),
        None => (None, None),
    };
    let opts = RunOptions {
        resume,
        queued,
        inputs: typed,
        interactive,
        file: file.display().to_string(),
        replay_llm,
        cache_dir: cache_dir(args, &journal_path, &program),
        cache_max_bytes: crate::cache::max_bytes_from_env().map_err(CliError::usage)?,
        plan: false,
        sources,
    };
    if !args.json {
        note_unenforced(&program, &skill);
    }
    crate::secrets::guard_run(&program);
    let report = drive(args, interactive, program, skill, journal, opts)?;
    report_end(args, &journal_path, report)
}

/// Runs the program on a single-threaded runtime, its progress shown as
/// `--json` lines, live on a terminal, or as plain lines.
fn drive(
    args: &RunArgs,
    interactive: bool,
    program: std::sync::Arc<crate::ir::Program>,
    skill: std::sync::Arc<crate::ir::Skill>,
    journal: Journal,
    opts: RunOptions,
) -> Result<crate::exec::RunReport, CliError> {
    let mut observer: Box<dyn Observer> = if args.json {
        Box::new(JsonLines::default())
    } else if std::io::stderr().is_terminal() {
        Box::new(Live::new(args.explain, interactive))
    } else {
        Box::new(Lines::new(args.explain))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    let report = runtime.block_on(execute(program, skill, journal, opts, observer.as_mut()));
    drop(observer);
    // Attempts may still hold process handles; do not wait for them.
    runtime.shutdown_background();
    report.map_err(CliError::failed)
}

/// What a `flowc run` is to run: a new run of `FILE`, or the run named by
/// `--resume` (its file, skill, id and whether it was only queued, and the
/// inputs it keeps).
struct Target {
    file: PathBuf,
    skill: Option<String>,
    resume: Option<(String, bool)>,
    inputs: Option<serde_json::Value>,
}

fn target(args: &RunArgs, journal: &Journal, shown: &str) -> Result<Target, CliError> {
    let (file, skill, resume, inputs) = match &args.resume {
        None => {
            let Some(file) = args.file.clone() else {
                return Err(CliError::usage(
                    "name a .flow file to run, or pass --resume to continue a run",
                ));
            };
            (file, args.skill.clone(), None, None)
        }
        Some(which) => {
            let row = if which.is_empty() {
                match journal.latest_unfinished() {
                    Ok(Some(row)) => row,
                    Ok(None) => {
                        return Err(CliError::usage(format!(
                            "no unfinished run in `{shown}` to resume (see `flowc runs`)",
                        )));
                    }
                    Err(e) => return Err(CliError::usage(e)),
                }
            } else {
                match journal.resolve_run(which).and_then(|id| journal.run(&id)) {
                    Ok(row) => row,
                    Err(e) => return Err(CliError::usage(e)),
                }
            };
            if row.status == "cancelled" {
                return Err(CliError::usage(format!(
                    "run `{}` was cancelled ({}); start a new run with `flowc run {}`",
                    row.id,
                    row.error.as_deref().unwrap_or("no reason given"),
                    row.file
                )));
            }
            if !args.inputs.is_empty() || args.inputs_file.is_some() {
                return Err(CliError::usage(
                    "a resumed run keeps its inputs; start a new run to change them",
                ));
            }
            let file = args
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from(&row.file));
            (
                file,
                Some(row.skill.clone()),
                Some((row.id.clone(), row.status == "queued")),
                Some(row.inputs),
            )
        }
    };
    Ok(Target {
        file,
        skill,
        resume,
        inputs,
    })
}

/// The program to run: compiled from `file`, or, for a resumed run whose
/// files are gone, from the sources it journaled when it started.
fn compile_target(
    journal: &Journal,
    file: &std::path::Path,
    skill_name: Option<&str>,
    resume: Option<&(String, bool)>,
    color: bool,
) -> Result<Compiled, CliError> {
    let stored = match resume {
        Some((id, _)) if !file.exists() => journal.sources_of(id).unwrap_or_default(),
        _ => Vec::new(),
    };
    let compiled = if stored.is_empty() {
        super::compile::compile_from(&crate::check::FsLoader, file, skill_name, color)
    } else {
        eprintln!(
            "note: `{}` is not here; resuming from the {} file(s) the run journaled when it started",
            file.display(),
            stored.len()
        );
        let mut loader = crate::check::MemLoader::new();
        for (path, text) in &stored {
            loader.add(path, text.as_bytes().to_vec());
        }
        super::compile::compile_from(&loader, file, skill_name, color)
    };
    compiled.map_err(|e| CliError {
        code: EXIT_USAGE,
        ..e
    })
}

/// What the run's end says on stderr (and its result on stdout), and the
/// exit code it gives.
fn report_end(
    args: &RunArgs,
    journal_path: &std::path::Path,
    report: crate::exec::RunReport,
) -> CliResult {
    let usage = &report.usage;
    for u in usage {
        eprintln!("  {}", usage_line(u));
    }
    let journal_shown = crate::journal::redact_url(&journal_path.display().to_string());
    let resume_cmd = format!("flowc run --resume {}", report.run_id);
    let journal_flag = if args.journal.is_default() {
        String::new()
    } else {
        format!(" --journal {journal_shown}")
    };
    match report.end {
        RunEnd::Succeeded => {
            let cached = match report.cache_hits {
                0 => String::new(),
                n => format!(", {n} from the cache"),
            };
            eprintln!(
                "run {} succeeded ({} step attempts, {} reused{cached}) · journal {journal_shown}",
                report.run_id, report.attempts, report.reused
            );
            let out = report.output.unwrap_or(serde_json::Value::Null);
            let text = if args.json {
                format!(
                    "{}\n",
                    serde_json::json!({ "kind": "result", "run_id": report.run_id, "output": out, "llm_usage": usage })
                )
            } else if out.is_null() {
                // A skill without `return` has no result to print.
                String::new()
            } else {
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&out).unwrap_or_default()
                )
            };
            if let Err(e) = write_stdout(text.as_bytes()) {
                e.report();
            }
            Ok(EXIT_OK)
        }
        RunEnd::Failed => {
            let next = after_failure(journal_path, &report.run_id, &resume_cmd, &journal_flag);
            eprintln!(
                "run {} failed: {}\n  journal {journal_shown}; {next}",
                report.run_id,
                report.error.unwrap_or_default()
            );
            Ok(EXIT_FAILED)
        }
        RunEnd::Paused => {
            eprintln!(
                "run {} paused: {}\n  see `flowc approvals{journal_flag}`, decide with `flowc approve|reject|retry|skip {} STEP{journal_flag}`, then `{resume_cmd}{journal_flag}`",
                report.run_id,
                report.error.unwrap_or_default(),
                report.run_id
            );
            Ok(EXIT_PAUSED)
        }
        RunEnd::Cancelled => {
            eprintln!(
                "run {} {}",
                report.run_id,
                report.error.unwrap_or_else(|| "cancelled".into())
            );
            Ok(EXIT_FAILED)
        }
        RunEnd::Interrupted => {
            eprintln!(
                "run {} interrupted · continue with `{resume_cmd}{journal_flag}`",
                report.run_id
            );
            Ok(EXIT_INTERRUPTED)
        }
    }
}

/// What to do after a failed run: ask a rejected gate again, or fix the
/// cause, then resume (a rejected gate is not fixed by resuming).
fn after_failure(
    journal_path: &std::path::Path,
    run_id: &str,
    resume_cmd: &str,
    journal_flag: &str,
) -> String {
    let rejected: Vec<String> = Journal::open_existing(journal_path)
        .and_then(|j| j.approvals(Some(run_id)))
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.kind == "approval" && a.status == "rejected")
        .map(|a| a.node)
        .collect();
    match rejected.first() {
        Some(gate) => format!(
            "`{gate}` was rejected: `flowc retry {run_id} {gate}{journal_flag}` asks again, then `{resume_cmd}{journal_flag}`"
        ),
        None => format!("fix the cause, then `{resume_cmd}{journal_flag}`"),
    }
}

/// One model's calls, tokens and cost, for summaries.
/// One line on stderr when a limit the run's steps ask for cannot be enforced
/// here (root and `processes`, no Landlock, …): the steps run with the rest,
/// and each `running` event lists what is missing.
fn note_unenforced(program: &crate::ir::Program, skill: &crate::ir::Skill) {
    // Under the built-in policy nobody wrote the limits: the journal and
    // `flowc doctor` say what is enforced, without a note on every run.
    if skill.policy.name == "builtin" {
        return;
    }
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

/// The inputs given with `-i NAME=VALUE` and `--inputs FILE`, typed by the skill's parameters.
pub fn typed_inputs(
    skill: &crate::ir::Skill,
    given: &[String],
    file: Option<&std::path::Path>,
) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let text = match file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some((p.display().to_string(), t)),
            Err(e) => {
                return Err(CliError::usage(format!(
                    "cannot read `{}`: {e}",
                    p.display()
                )));
            }
        },
        None => None,
    };
    inputs::collect(
        skill,
        given,
        text.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
    )
    .map_err(|errors| CliError::all(EXIT_USAGE, errors))
}
