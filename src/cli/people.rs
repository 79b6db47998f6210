//! `flowc people add`: a person in the people file, with a fresh token shown once.

use super::{CliError, CliResult, EXIT_OK, write_stdout};
use crate::approvals::{People, Person, new_token, token_hash};
use std::path::PathBuf;

/// Arguments of `flowc people`.
#[derive(Debug, clap::Args)]
pub struct PeopleArgs {
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with the people file.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Add a person (or give a listed one a new token); prints the token once.
    Add {
        /// Their name, as `approvers` lists it.
        name: String,
        /// A group they belong to (`approvers` lists it as `group:NAME`); repeatable.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// The OS user who decides as this person on the command line.
        #[arg(long, value_name = "USER")]
        os_user: Option<String>,
        /// The people file (created when missing).
        #[arg(long, value_name = "FILE")]
        people: PathBuf,
    },
}

/// Runs `flowc people`.
pub fn run(args: &PeopleArgs) -> CliResult {
    let Action::Add {
        name,
        groups,
        os_user,
        people: path,
    } = &args.action;
    if name.trim().is_empty() || name.starts_with("group:") {
        return Err(CliError::usage(format!(
            "`{name}` cannot name a person: give a non-empty name without `group:`"
        )));
    }
    let mut people = People::load(path).map_err(CliError::usage)?;
    let token = new_token().map_err(CliError::failed)?;
    let person = match people.people.iter_mut().find(|p| p.name == *name) {
        Some(p) => p,
        None => {
            people.people.push(Person::unlisted(name));
            let last = people.people.len() - 1;
            &mut people.people[last]
        }
    };
    for g in groups {
        if !person.groups.contains(g) {
            person.groups.push(g.clone());
        }
    }
    if os_user.is_some() {
        person.os_user = os_user.clone();
    }
    person.token_hash = Some(token_hash(&token));
    write_private(path, &people.render())?;
    eprintln!(
        "`{name}` is in {}; their token is shown once, keep it",
        path.display()
    );
    write_stdout(format!("{token}\n").as_bytes())?;
    Ok(EXIT_OK)
}

/// Replaces the file atomically, readable by its owner only (it holds token hashes).
fn write_private(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| CliError::failed(format!("cannot write `{}`: {e}", path.display())))
}
