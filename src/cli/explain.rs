//! `flowc explain`: a diagnostic code's explanation, rendered for a terminal.

use super::{CliError, CliResult, write_stdout};
use crate::diag::{Code, did_you_mean, explanation};

/// Arguments of `flowc explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A code such as `E0301` or `W0002`.
    pub code: Option<String>,
    /// Print the explanation's Markdown source instead of rendering it.
    #[arg(long)]
    pub markdown: bool,
}

/// Prints the explanation of a code, or the list of codes.
pub fn run(args: &ExplainArgs) -> CliResult {
    let Some(text) = args.code.as_deref() else {
        let mut out = String::new();
        for c in Code::ALL {
            out.push_str(&format!("{}  {}\n", c.as_str(), c.title()));
        }
        out.push_str("\nRun `flowc explain CODE` for details.\n");
        return write_stdout(out.as_bytes());
    };
    let Some(code) = Code::parse(text) else {
        let names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        let mut err = CliError::usage(format!("unknown diagnostic code `{text}`"));
        if let Some(hint) = did_you_mean(&text.to_uppercase(), names) {
            err = err.help(hint);
        }
        return Err(err.help("`flowc explain` lists every code"));
    };
    let body = explanation(code).unwrap_or("No explanation is written for this code yet.");
    let out = if args.markdown {
        format!("## {}\n\n{body}\n", code.as_str())
    } else {
        let title = format!("**{}**", code.title());
        let body = body.strip_prefix(&title).unwrap_or(body).trim_start();
        format!("{}: {}\n\n{}", code.as_str(), code.title(), terminal(body))
    };
    write_stdout(out.as_bytes())
}

/// Markdown → plain text for a terminal: code blocks indented by four spaces
/// without their fences, headings without `#`, emphasis markers and link
/// targets folded into the text; inline code keeps its backticks, which read
/// well as quotes.
fn terminal(markdown: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str("    ");
            out.push_str(line);
        } else if let Some(heading) = heading(line) {
            out.push_str(&inline(heading));
            out.push('\n');
            out.push_str(&"-".repeat(heading.chars().count()));
        } else {
            out.push_str(&inline(line));
        }
        out.push('\n');
    }
    out
}

fn heading(line: &str) -> Option<&str> {
    let text = line.trim_start_matches('#');
    (text.len() < line.len() && text.starts_with(' ')).then(|| text.trim())
}

/// Drops `**` and `__` outside inline code, and writes `[text](url)` as `text (url)`.
fn inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for (n, part) in line.split('`').enumerate() {
        if n > 0 {
            out.push('`');
        }
        if n % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str(&links(&part.replace("**", "").replace("__", "")));
        }
    }
    out
}

fn links(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(close) = rest[mid..].find(')').map(|i| mid + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..mid]);
        out.push_str(" (");
        out.push_str(&rest[mid + 2..close]);
        out.push(')');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::terminal;

    #[test]
    fn renders_markdown_for_a_terminal() {
        let md =
            "### Why\n\nUse **`x`** and [the docs](docs/a.md).\n\n```flow\nstep a: run {}\n```\n";
        assert_eq!(
            terminal(md),
            "Why\n---\n\nUse `x` and the docs (docs/a.md).\n\n    step a: run {}\n"
        );
    }
}
