//! `flowc doctor`: which sandbox layers work on this machine, and why not.

use super::write_stdout;
use crate::sandbox::Support;

/// Prints the sandbox support of this machine.
pub fn run(json: bool) -> u8 {
    let support = Support::get();
    if json {
        let mut text = serde_json::to_string_pretty(&support.to_json()).unwrap_or_default();
        text.push('\n');
        return write_stdout(text.as_bytes());
    }
    let width = support
        .layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("Sandbox layers for `run` steps on this machine:\n\n");
    for layer in &support.layers {
        let mark = if layer.available { "yes" } else { "no " };
        out.push_str(&format!(
            "  {:<width$}  {mark}  {}\n",
            layer.name, layer.detail
        ));
    }
    out.push_str(
        "\nA policy that asks for a limit whose layer is missing is refused at run time,\n\
         unless its sandbox says `fallback: \"weaker\"`. See docs/security.md.\n",
    );
    write_stdout(out.as_bytes())
}
