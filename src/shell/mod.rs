//! The parsed view of a `run` step's command that policy rules read
//! (`step.commands`, `step.parsed`, `step.opaque`): every simple command the
//! shell would run, found by a small POSIX shell parser.
//!
//! Pure (no IO), so the checker could use it too; the executor builds the view
//! in `exec::step::step_info` before a step starts. The parser covers the
//! subset of sh (and the common bash forms) that decides which programs run;
//! anything it does not understand makes the view `opaque`, never an error:
//! a policy treats an opaque command as one a person must look at.

mod parse;
mod resolve;
#[cfg(test)]
mod tests;

/// One simple command: its program and arguments, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The basename of argv0 (`/usr/bin/git` → `git`).
    pub name: String,
    /// The first operand after the tool's global options (`git -C . push` →
    /// `push`); empty when there is none.
    pub subcommand: String,
    /// Every argument after the name, unquoted; an expansion stays as written
    /// (`$X`, `$(…)`).
    pub args: Vec<String>,
    /// How many leading `args` are global options before `subcommand`.
    pub(crate) globals: usize,
}

impl SimpleCommand {
    /// One line: the name, then the subcommand and the arguments after it
    /// (the global options before a known tool's subcommand left out). An
    /// argument with blanks, quotes, backslashes or line breaks is quoted
    /// with `'…'`, and a line break is written `\n`, so every line starts with
    /// a command's name.
    pub fn line(&self) -> String {
        let mut line = self.name.clone();
        for arg in &self.args[self.globals.min(self.args.len())..] {
            line.push(' ');
            line.push_str(&render(arg));
        }
        line
    }
}

fn render(arg: &str) -> String {
    let plain = !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'));
    if plain {
        return arg.to_string();
    }
    let mut out = String::from("'");
    for c in arg.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// What a command runs, as far as flowc can tell without running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Every simple command, in the order they appear.
    pub commands: Vec<SimpleCommand>,
    /// Why the commands cannot be known statically; `None` when they can.
    pub opaque: Option<String>,
}

impl View {
    /// `commands` rendered one [`SimpleCommand::line`] per line.
    pub fn parsed(&self) -> String {
        let lines: Vec<String> = self.commands.iter().map(SimpleCommand::line).collect();
        lines.join("\n")
    }
}

/// The view of a shell script (a `run` step's `command`).
pub fn of_script(script: &str) -> View {
    let mut view = View::default();
    parse::script(script, 0, &mut view);
    view
}

/// The view of an argv (a `run` step's `argv`): the one command, and what a
/// shell or wrapper at argv0 runs.
pub fn of_argv(argv: &[String]) -> View {
    let mut view = View::default();
    let words: Vec<parse::Word> = argv.iter().map(|a| parse::Word::literal(a)).collect();
    resolve::command(&words, 0, &mut view, false);
    view
}

impl View {
    pub(crate) fn set_opaque(&mut self, why: impl Into<String>) {
        if self.opaque.is_none() {
            self.opaque = Some(why.into());
        }
    }
}
