//! [`CliError`]: why a command stopped, and with which exit code; printed in one place.

use super::{EXIT_FAILED, EXIT_USAGE};
use crate::journal::JournalError;
use std::fmt::Display;

/// A command that could not do its job: the message, help lines and exit code.
#[derive(Debug)]
pub struct CliError {
    /// The process exit code (`EXIT_USAGE`, `EXIT_FAILED`, …).
    pub code: u8,
    /// What went wrong, one `error:` line each.
    pub messages: Vec<String>,
    /// What to do about it, one `help:` line each.
    pub help: Vec<String>,
}

/// What a command returns: the exit code it chose, or why it stopped.
pub type CliResult = Result<u8, CliError>;

impl CliError {
    /// An error with this exit code.
    pub fn new(code: u8, message: impl Display) -> CliError {
        CliError {
            code,
            messages: vec![message.to_string()],
            help: Vec::new(),
        }
    }

    /// A usage error (exit 2): bad arguments, a missing file, run or journal.
    pub fn usage(message: impl Display) -> CliError {
        CliError::new(EXIT_USAGE, message)
    }

    /// A failure while doing the work (exit 1).
    pub fn failed(message: impl Display) -> CliError {
        CliError::new(EXIT_FAILED, message)
    }

    /// Several errors reported together, with one exit code.
    pub fn all(code: u8, messages: impl IntoIterator<Item = impl Display>) -> CliError {
        CliError {
            code,
            messages: messages.into_iter().map(|m| m.to_string()).collect(),
            help: Vec::new(),
        }
    }

    /// Adds a `help:` line.
    pub fn help(mut self, help: impl Display) -> CliError {
        self.help.push(help.to_string());
        self
    }

    /// Prints the error on stderr and returns its exit code.
    pub fn report(&self) -> u8 {
        let mut text = String::new();
        for m in &self.messages {
            text.push_str(&format!("error: {m}\n"));
        }
        for h in &self.help {
            text.push_str(&format!("help: {h}\n"));
        }
        eprint!("{text}");
        self.code
    }
}

/// A journal error met while reading or writing: the user's mistake (a missing
/// journal, an unknown or ambiguous run) is a usage error, anything else a failure.
impl From<JournalError> for CliError {
    fn from(e: JournalError) -> CliError {
        match e {
            JournalError::Missing { .. }
            | JournalError::NoRun { .. }
            | JournalError::Ambiguous { .. } => CliError::usage(e),
            _ => CliError::failed(e),
        }
    }
}
