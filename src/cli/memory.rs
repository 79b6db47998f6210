//! `flowc memory`: list, read, set and remove the memory runs share, and each key's history.

use super::{CliError, CliResult, EXIT_OK, JournalArgs, write_stdout};
use crate::journal::{
    MEMORY_KEYS_MAX, MEMORY_VALUE_MAX, memory_key_problem, memory_namespace, timestamp,
};

/// Arguments of `flowc memory`.
#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Every key and its value (of one namespace: the part of a key before its first `/`).
    List {
        /// Only this namespace.
        namespace: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One key's value, as JSON.
    Get {
        /// The key.
        key: String,
    },
    /// Set a key to a JSON value (a bare word is taken as a string); journaled with who did it.
    Set {
        /// The key.
        key: String,
        /// The value, as JSON.
        value: String,
    },
    /// Remove a key; journaled with who did it.
    Rm {
        /// The key.
        key: String,
    },
    /// Every change of a key, oldest first: the value, when, and who (a run or a person).
    History {
        /// The key.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn checked_key(key: &str) -> Result<(), CliError> {
    match memory_key_problem(key) {
        Some(why) => Err(CliError::usage(format!("`{key}`: {why}"))),
        None => Ok(()),
    }
}

/// Runs `flowc memory`.
pub fn run(args: &MemoryArgs) -> CliResult {
    match &args.action {
        Action::List { namespace, json } => {
            let journal = args.journal.open_read_only()?;
            let rows = journal.memory_list(namespace.as_deref())?;
            if *json {
                return write_stdout(format!("{}\n", serde_json::json!(rows)).as_bytes());
            }
            if rows.is_empty() {
                eprintln!(
                    "nothing is remembered{}",
                    namespace
                        .as_ref()
                        .map(|n| format!(" in `{n}`"))
                        .unwrap_or_default()
                );
                return write_stdout(b"");
            }
            let mut out = format!(
                "{:<32} {:<22} {:<28} {}\n",
                "KEY", "UPDATED (UTC)", "BY", "VALUE"
            );
            for r in rows {
                let mut value = r.value.to_string();
                if value.len() > 80 {
                    let cut = (0..=77)
                        .rev()
                        .find(|&i| value.is_char_boundary(i))
                        .unwrap_or(0);
                    value.truncate(cut);
                    value.push('…');
                }
                out.push_str(&format!(
                    "{:<32} {:<22} {:<28} {value}\n",
                    r.key,
                    timestamp(r.updated_at),
                    r.updated_by
                ));
            }
            write_stdout(out.as_bytes())
        }
        Action::Get { key } => {
            let journal = args.journal.open_read_only()?;
            match journal.memory_get(key)? {
                Some(r) => write_stdout(format!("{}\n", r.value).as_bytes()),
                None => Err(CliError::new(
                    super::EXIT_FAILED,
                    format!("nothing is remembered as `{key}`"),
                )),
            }
        }
        Action::Set { key, value } => {
            checked_key(key)?;
            let value: serde_json::Value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.clone()));
            let text = value.to_string();
            if text.len() > MEMORY_VALUE_MAX {
                return Err(CliError::usage(format!(
                    "the value is {} bytes of JSON; a memory value holds at most {MEMORY_VALUE_MAX}",
                    text.len()
                )));
            }
            args.journal.ensure_dir().map_err(CliError::usage)?;
            let mut journal =
                crate::journal::Journal::open(&args.journal.path(), Default::default())?;
            let ns = memory_namespace(key);
            if journal.memory_get(key)?.is_none() && journal.memory_keys(ns)? >= MEMORY_KEYS_MAX {
                return Err(CliError::usage(format!(
                    "the namespace `{ns}` holds {MEMORY_KEYS_MAX} keys already; remove some with `flowc memory rm`"
                )));
            }
            journal.memory_set(key, &value, &super::queue::decider())?;
            eprintln!("remembered `{key}`");
            Ok(EXIT_OK)
        }
        Action::Rm { key } => {
            let mut journal = args.journal.open_existing()?;
            if journal.memory_remove(key, &super::queue::decider())? {
                eprintln!("forgot `{key}`");
                Ok(EXIT_OK)
            } else {
                Err(CliError::usage(format!("nothing is remembered as `{key}`")))
            }
        }
        Action::History { key, json } => {
            let journal = args.journal.open_read_only()?;
            let changes = journal.memory_history(key)?;
            if *json {
                return write_stdout(format!("{}\n", serde_json::json!(changes)).as_bytes());
            }
            if changes.is_empty() {
                return Err(CliError::usage(format!("`{key}` was never remembered")));
            }
            let mut out = String::new();
            for c in changes {
                let what = match &c.value {
                    Some(v) => v.to_string(),
                    None => "(removed)".into(),
                };
                out.push_str(&format!("{} {:<28} {what}\n", timestamp(c.at), c.by));
            }
            write_stdout(out.as_bytes())
        }
    }
}
