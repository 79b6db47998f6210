//! `flowc explain`.

use super::{EXIT_USAGE, write_stdout};
use crate::diag::{Code, did_you_mean, explanation};

/// Prints the explanation of `code`, or the list of codes.
pub fn run(code: Option<&str>) -> u8 {
    let Some(text) = code else {
        let mut out = String::new();
        for c in Code::ALL {
            out.push_str(&format!("{}  {}\n", c.as_str(), c.title()));
        }
        out.push_str("\nRun `flowc explain CODE` for details.\n");
        return write_stdout(out.as_bytes());
    };
    let Some(code) = Code::parse(text) else {
        let names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        let hint = did_you_mean(&text.to_uppercase(), names)
            .map(|h| format!("\nhelp: {h}"))
            .unwrap_or_default();
        eprintln!(
            "error: unknown diagnostic code `{text}`{hint}\nhelp: `flowc explain` lists every code"
        );
        return EXIT_USAGE;
    };
    let body = explanation(code).unwrap_or("No explanation is written for this code yet.");
    let out = format!("{}: {}\n\n{}\n", code.as_str(), code.title(), body);
    write_stdout(out.as_bytes())
}
