//! `flowc secret set|list|rm`: the encrypted local secret store.

use super::{CliError, CliResult, EXIT_OK, write_stdout};
use crate::secrets::{self, Store};
use std::io::Read;
use std::path::PathBuf;

/// Arguments of `flowc secret`.
#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub action: Action,
    /// The store file (default: $FLOWC_SECRETS, else .flowc/secrets.json).
    #[arg(long, value_name = "PATH", global = true)]
    pub store: Option<PathBuf>,
}

/// What to do with the store.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Store a secret; the value is read from standard input, never from the command line.
    Set {
        /// The secret's name, as flows read it: `secret("NAME")`.
        name: String,
    },
    /// List the names in the store (never the values).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
}

/// Runs `flowc secret`.
pub fn run(args: &SecretArgs) -> CliResult {
    let path = args.store.clone().unwrap_or_else(secrets::default_path);
    let mut store = Store::open(&path).map_err(CliError::failed)?;
    match &args.action {
        Action::Set { name } => {
            secrets::check_name(name).map_err(CliError::usage)?;
            let value = read_value(name)?;
            store.set(name, &value).map_err(CliError::failed)?;
            eprintln!("secret `{name}` stored in {}", path.display());
            Ok(EXIT_OK)
        }
        Action::List { json } => {
            let names = store.names();
            let text = if *json {
                format!("{}\n", serde_json::json!(names))
            } else {
                names.iter().map(|n| format!("{n}\n")).collect()
            };
            write_stdout(text.as_bytes())
        }
        Action::Rm { name } => {
            if !store.remove(name).map_err(CliError::failed)? {
                return Err(CliError::usage(format!(
                    "the store {} has no secret `{name}`",
                    path.display()
                )));
            }
            eprintln!("secret `{name}` removed from {}", path.display());
            Ok(EXIT_OK)
        }
    }
}

/// The value of `name` from standard input, without the newline `echo` adds.
fn read_value(name: &str) -> Result<zeroize::Zeroizing<String>, CliError> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("value of `{name}` (it is echoed; end with Enter, then Ctrl-D):");
    }
    let mut value = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut value)
        .map_err(|e| CliError::usage(format!("cannot read the value from standard input: {e}")))?;
    // One trailing newline is what `echo` and a terminal add.
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(CliError::usage(format!(
            "the value is empty (pipe it on standard input: `printf %s \"$VALUE\" | flowc secret set {name}`)"
        )));
    }
    Ok(value)
}
