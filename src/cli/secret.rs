//! `flowc secret set|list|rm`: the encrypted local secret store.

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, write_stdout};
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

/// Runs `flowc secret`; returns the exit code.
pub fn run(args: &SecretArgs) -> u8 {
    let path = args.store.clone().unwrap_or_else(secrets::default_path);
    let mut store = match Store::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    match &args.action {
        Action::Set { name } => {
            if let Err(e) = secrets::check_name(name) {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!("value of `{name}` (it is echoed; end with Enter, then Ctrl-D):");
            }
            let mut value = zeroize::Zeroizing::new(String::new());
            if let Err(e) = std::io::stdin().read_to_string(&mut value) {
                eprintln!("error: cannot read the value from standard input: {e}");
                return EXIT_USAGE;
            }
            // One trailing newline is what `echo` and a terminal add.
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                eprintln!(
                    "error: the value is empty (pipe it on standard input: `printf %s \"$VALUE\" | flowc secret set {name}`)"
                );
                return EXIT_USAGE;
            }
            match store.set(name, &value) {
                Ok(()) => {
                    eprintln!("secret `{name}` stored in {}", path.display());
                    EXIT_OK
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
            }
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
        Action::Rm { name } => match store.remove(name) {
            Ok(true) => {
                eprintln!("secret `{name}` removed from {}", path.display());
                EXIT_OK
            }
            Ok(false) => {
                eprintln!("error: the store {} has no secret `{name}`", path.display());
                EXIT_USAGE
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_FAILED
            }
        },
    }
}
