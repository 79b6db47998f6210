//! `flowc link`: a one-time link for one approver of one waiting approval, printed once.

use super::{CliError, CliResult, EXIT_OK, JournalArgs, write_stdout};
use crate::approvals::decide::{asked_with, eligible};
use crate::approvals::{People, links};
use std::path::PathBuf;

/// Arguments of `flowc link`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The run id (or a unique prefix).
    pub run: String,
    /// The approval step's instance key, as `flowc approvals` shows it.
    pub step: String,
    /// The approver the link decides as (must be eligible: an approver, and not the initiator unless `self_approval`).
    #[arg(long = "for", value_name = "NAME")]
    pub approver: String,
    /// The people file.
    #[arg(long, value_name = "FILE")]
    pub people: PathBuf,
    /// The page's address (`flowc serve --public-url`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8737")]
    pub base: String,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// Mints the link; prints its URL (the token is stored only as its hash).
pub fn link(args: &LinkArgs) -> CliResult {
    let people = People::load(&args.people).map_err(CliError::usage)?;
    let mut journal = args.journal.open_existing()?;
    let run = journal.resolve_run(&args.run)?;
    let item = journal
        .approvals(Some(&run))?
        .into_iter()
        .find(|a| a.node == args.step && a.status == "pending" && a.kind == "approval")
        .ok_or_else(|| {
            CliError::usage(format!(
                "run `{run}` has no approval `{}` waiting (see `flowc approvals`)",
                args.step
            ))
        })?;
    let asked = asked_with(&journal, &run, &args.step)?;
    if !eligible(&people, &asked)
        .iter()
        .any(|p| p.name == args.approver)
    {
        return Err(CliError::usage(format!(
            "`{}` may not decide `{}`: not a listed approver in `{}`, or the run's initiator",
            args.approver,
            args.step,
            args.people.display()
        )));
    }
    let minted = links::mint(
        &mut journal,
        &run,
        &args.step,
        &asked,
        &item.input_hash,
        &args.approver,
        crate::journal::now_ms(),
    )
    .map_err(CliError::failed)?;
    eprintln!(
        "a one-time link for `{}`: it decides once and expires at {} UTC",
        args.approver,
        crate::journal::timestamp(links::expires_at(&asked))
    );
    let base = args.base.trim_end_matches('/');
    write_stdout(format!("{base}/a/{}\n", minted.token).as_bytes())?;
    Ok(EXIT_OK)
}
