//! From a simple command's words to the commands it runs: leading
//! assignments dropped, argv0's basename, wrappers (`env`, `timeout`, `sudo`,
//! …) resolved to the command they start, shell strings (`sh -c`, `eval`,
//! `trap`, `su -c`) parsed, and the subcommand of tools with global options.

use super::parse::{self, Word};
use super::{SimpleCommand, View};

/// Shells whose `-c` script flowc parses as sh.
const POSIX_SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "rbash",
];
/// Shells whose language flowc does not parse.
const OTHER_SHELLS: &[&str] = &["fish", "csh", "tcsh", "nu", "elvish", "pwsh", "xonsh"];

/// Adds the commands `words` runs to `view`. `open`: more arguments are
/// added at run time (`xargs`, `find -exec`).
pub(crate) fn command(words: &[Word], depth: usize, view: &mut View, open: bool) {
    let start = words.iter().take_while(|w| w.assignment).count();
    let Some((argv0, rest)) = words[start..].split_first() else {
        return;
    };
    let args: Vec<String> = rest.iter().map(|w| w.text.clone()).collect();
    if !argv0.is_static() {
        view.set_opaque(format!(
            "the command name `{}` is not a static word",
            argv0.text
        ));
        view.commands.push(SimpleCommand {
            name: argv0.text.clone(),
            subcommand: String::new(),
            args,
            globals: 0,
        });
        return;
    }
    let name = basename(&argv0.text).to_string();
    let (globals, sub) = subcommand(&name, rest);
    if let Some(sub) = sub {
        if global_options(&name).is_some() && !sub.is_static() {
            view.set_opaque(format!(
                "the subcommand of `{name}` is not a static word (`{}`)",
                sub.text
            ));
        }
    } else if open && global_options(&name).is_some() {
        view.set_opaque(format!(
            "the subcommand of `{name}` comes from its input at run time"
        ));
    }
    let subcommand = sub.map(|w| w.text.clone()).unwrap_or_default();
    if open && subcommand.contains("{}") {
        view.set_opaque(format!(
            "the subcommand of `{name}` comes from its input at run time"
        ));
    }
    let known = global_options(&name).is_some();
    view.commands.push(SimpleCommand {
        name: name.clone(),
        subcommand: subcommand.clone(),
        args,
        globals: if known && !subcommand.is_empty() {
            globals
        } else {
            0
        },
    });
    let transparent = |view: &mut View, at: usize| {
        // The wrapper is replaced by the command it starts.
        if at < rest.len() {
            view.commands.pop();
            command(&rest[at..], depth, view, open);
        }
    };
    match name.as_str() {
        "env" => {
            if rest
                .iter()
                .any(|w| w.text.starts_with("-S") || w.text.starts_with("--split-string"))
            {
                view.set_opaque("`env -S` splits a string into a command");
                return;
            }
            let mut at = options(rest, &["-u", "--unset", "-C", "--chdir"]);
            while rest.get(at).is_some_and(|w| w.text.contains('=')) {
                at += 1;
            }
            transparent(view, at);
        }
        "command" => {
            if rest.iter().any(|w| w.text == "-v" || w.text == "-V") {
                return;
            }
            transparent(view, options(rest, &[]));
        }
        "builtin" | "nohup" | "busybox" => transparent(view, 0),
        "exec" => transparent(view, options(rest, &["-a"])),
        "nice" => transparent(view, options(rest, &["-n", "--adjustment"])),
        "setsid" => transparent(view, options(rest, &[])),
        "time" => transparent(view, options(rest, &["-f", "--format", "-o", "--output"])),
        "stdbuf" => transparent(view, options(rest, &["-i", "-o", "-e"])),
        "ionice" => transparent(
            view,
            options(
                rest,
                &["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"],
            ),
        ),
        "timeout" => {
            let at = options(rest, &["-s", "--signal", "-k", "--kill-after"]);
            transparent(view, at + 1);
        }
        "chrt" | "taskset" => transparent(view, options(rest, &[]) + 1),
        "sudo" | "doas" | "pkexec" => {
            let mut at = options(rest, SUDO_VALUES);
            while rest.get(at).is_some_and(|w| w.assignment) {
                at += 1;
            }
            if at < rest.len() {
                command(&rest[at..], depth, view, open);
            }
        }
        "su" | "runuser" => match option_value(rest, &["-c", "--command"]) {
            Some(Some(script)) => shell_string(script, "su -c", depth, view),
            Some(None) => view.set_opaque("`su -c` without a command"),
            None => view.set_opaque(format!("`{name}` starts a shell that reads standard input")),
        },
        "flock" => match option_value(rest, &["-c", "--command"]) {
            Some(Some(script)) => shell_string(script, "flock -c", depth, view),
            Some(None) => view.set_opaque("`flock -c` without a command"),
            None => {
                let at = options(rest, &["-w", "--timeout", "-E", "--conflict-exit-code"]);
                if at + 1 < rest.len() {
                    command(&rest[at + 1..], depth, view, open);
                }
            }
        },
        "xargs" => {
            let at = options(rest, XARGS_VALUES);
            if at < rest.len() {
                command(&rest[at..], depth, view, true);
            }
        }
        "find" => {
            let mut i = 0;
            while i < rest.len() {
                if matches!(
                    rest[i].text.as_str(),
                    "-exec" | "-execdir" | "-ok" | "-okdir"
                ) {
                    let end = rest[i + 1..]
                        .iter()
                        .position(|w| w.text == ";" || w.text == "+")
                        .map_or(rest.len(), |n| i + 1 + n);
                    command(&rest[i + 1..end], depth, view, true);
                    i = end;
                }
                i += 1;
            }
        }
        "watch" => {
            let at = options(rest, &["-n", "--interval", "-q", "--equexit"]);
            if rest[..at]
                .iter()
                .any(|w| w.text == "-x" || w.text == "--exec")
            {
                command(&rest[at..], depth, view, open);
            } else {
                joined(&rest[at..], "watch", depth, view);
            }
        }
        "eval" => joined(rest, "eval", depth, view),
        "source" | "." if rest.first().is_some_and(|w| !w.is_static()) => {
            view.set_opaque(format!("`{name}` of a file named at run time"));
        }
        "alias" if rest.iter().any(|w| w.text.contains('=')) => {
            view.set_opaque("`alias` gives a command name another meaning");
        }
        "trap" => {
            let at = usize::from(rest.first().is_some_and(|w| w.text == "--"));
            if rest.len() > at + 1 && !rest[at].text.starts_with('-') {
                shell_string(&rest[at], "trap", depth, view);
            }
        }
        "git" => {
            let alias = rest
                .windows(2)
                .any(|p| p[0].text == "-c" && p[1].text.starts_with("alias."))
                || (subcommand == "config" && rest.iter().any(|w| w.text.starts_with("alias.")));
            if alias {
                view.set_opaque("a git alias runs what its definition says");
            }
        }
        n if POSIX_SHELLS.contains(&n) => shell(&name, rest, depth, view),
        n if OTHER_SHELLS.contains(&n) => {
            let positional = rest.iter().find(|w| !w.text.starts_with('-'));
            if positional.is_none() || rest.iter().any(|w| w.text == "-c") {
                view.set_opaque(format!("`{name}` is not a shell flowc can read"));
            }
        }
        _ => {}
    }
}

const SUDO_VALUES: &[&str] = &[
    "-u",
    "-g",
    "-C",
    "-D",
    "-h",
    "-p",
    "-r",
    "-t",
    "-T",
    "-U",
    "--user",
    "--group",
    "--chdir",
    "--prompt",
    "--host",
    "--role",
    "--type",
    "--command-timeout",
    "--other-user",
    "--close-from",
];

const XARGS_VALUES: &[&str] = &[
    "-a",
    "-d",
    "-E",
    "-I",
    "-L",
    "-n",
    "-P",
    "-s",
    "--arg-file",
    "--delimiter",
    "--max-args",
    "--max-procs",
    "--max-chars",
    "--max-lines",
    "--eof",
];

/// `sh [options] [-c script | file] …`
fn shell(name: &str, rest: &[Word], depth: usize, view: &mut View) {
    let mut dash_c = false;
    let mut stdin = false;
    let mut i = 0;
    while i < rest.len() {
        let t = rest[i].text.as_str();
        if t == "--" || t == "-" {
            i += 1;
            break;
        }
        if t.starts_with("--") {
            i += if matches!(t, "--rcfile" | "--init-file") {
                2
            } else {
                1
            };
            continue;
        }
        if (t.starts_with('-') || t.starts_with('+')) && t.len() > 1 {
            for c in t.chars().skip(1) {
                match c {
                    'c' => dash_c = true,
                    's' => stdin = true,
                    'o' | 'O' => i += 1,
                    _ => {}
                }
            }
            i += 1;
            continue;
        }
        break;
    }
    match rest.get(i) {
        Some(script) if dash_c => shell_string(script, &format!("{name} -c"), depth, view),
        None if dash_c => view.set_opaque(format!("`{name} -c` without a script")),
        Some(_) if !stdin => {}
        _ => view.set_opaque(format!("`{name}` reads its script from standard input")),
    }
}

/// A word that a command runs as a shell script.
fn shell_string(script: &Word, what: &str, depth: usize, view: &mut View) {
    if !script.is_static() {
        view.set_opaque(format!("the script of `{what}` is not a static word"));
        return;
    }
    parse::script(&script.text, depth + 1, view);
}

/// Words joined with spaces and run as a script (`eval`, `watch`).
fn joined(words: &[Word], what: &str, depth: usize, view: &mut View) {
    if words.iter().any(|w| !w.is_static()) {
        view.set_opaque(format!("`{what}` of a string made at run time"));
        return;
    }
    let text: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    parse::script(&text.join(" "), depth + 1, view);
}

/// The index of the first operand after options (`-x`, `--long`, `--long=v`,
/// and `with_value` options followed by their value); `--` ends the options.
fn options(words: &[Word], with_value: &[&str]) -> usize {
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let t = w.text.as_str();
        if t == "--" {
            return i + 1;
        }
        if !t.starts_with('-') || t.len() == 1 {
            return i;
        }
        i += if with_value.contains(&t) { 2 } else { 1 };
    }
    words.len()
}

/// The value of the first of `names` among the options: `Some(None)` when it
/// is the last word, `None` when absent.
fn option_value<'w>(words: &'w [Word], names: &[&str]) -> Option<Option<&'w Word>> {
    let at = words
        .iter()
        .position(|w| names.contains(&w.text.as_str()))?;
    Some(words.get(at + 1))
}

fn basename(path: &str) -> &str {
    match path.rsplit('/').next() {
        Some(base) if !base.is_empty() => base,
        _ => path,
    }
}

/// Global options that take a separate value, of tools whose subcommand is
/// what policies ask about (`git -C dir push`). `None` for other programs.
fn global_options(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "git" => &[
            "-C",
            "-c",
            "--git-dir",
            "--work-tree",
            "--namespace",
            "--config-env",
            "--super-prefix",
        ],
        "cargo" => &["-C", "--config", "-Z", "--color"],
        "docker" | "podman" => &[
            "-H",
            "--host",
            "-c",
            "--context",
            "--config",
            "-l",
            "--log-level",
        ],
        "kubectl" => &[
            "-n",
            "--namespace",
            "--context",
            "--kubeconfig",
            "-s",
            "--server",
            "--cluster",
            "--user",
            "--token",
            "--as",
        ],
        "helm" => &["-n", "--namespace", "--kube-context", "--kubeconfig"],
        "npm" | "pnpm" | "yarn" => &[
            "--prefix",
            "-w",
            "--workspace",
            "-C",
            "--dir",
            "--filter",
            "--cwd",
        ],
        "gh" => &["-R", "--repo"],
        "terraform" | "twine" | "gem" | "poetry" | "pip" | "pip3" | "apt" | "apt-get" | "go" => &[],
        _ => return None,
    })
}

/// How many arguments precede the subcommand, and the subcommand: for known
/// tools the first operand after their global options (and `+toolchain` for
/// cargo), for others the first argument that is not an option.
fn subcommand<'w>(name: &str, args: &'w [Word]) -> (usize, Option<&'w Word>) {
    let values = global_options(name).unwrap_or(&[]);
    let mut i = 0;
    while let Some(w) = args.get(i) {
        let t = w.text.as_str();
        let option = (t.starts_with('-') && t.len() > 1) || (name == "cargo" && t.starts_with('+'));
        if t == "--" {
            return (i + 1, args.get(i + 1));
        }
        if !option {
            return (i, Some(w));
        }
        i += if values.contains(&t) { 2 } else { 1 };
    }
    (args.len(), None)
}
