//! `flowc doctor`: which sandbox layers work on this machine, and why not.

use super::{CliResult, write_stdout};
use crate::sandbox::Support;

/// The secret store as `secret()` would find it here: path, names, key source.
fn secrets() -> serde_json::Value {
    use crate::secrets::{KEY_ENV, KEY_FILE_ENV, Store, default_path};
    let path = default_path();
    let (exists, names, error) = if path.exists() {
        match Store::open(&path) {
            Ok(s) => (true, s.names().len(), None),
            Err(e) => (true, 0, Some(e)),
        }
    } else {
        (false, 0, None)
    };
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    let key = if set(KEY_ENV) {
        Some(KEY_ENV)
    } else if set(KEY_FILE_ENV) {
        Some(KEY_FILE_ENV)
    } else {
        None
    };
    serde_json::json!({
        "store": path.display().to_string(),
        "exists": exists,
        "names": names,
        "key_from": key,
        "error": error,
    })
}

/// Prints the sandbox support of this machine, and where secrets come from.
pub fn run(json: bool) -> CliResult {
    let support = Support::get();
    let secrets = secrets();
    if json {
        let mut doc = support.to_json();
        doc["secrets"] = secrets;
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
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
         unless its sandbox lists it in `best_effort` or says `fallback: \"weaker\"`;\n\
         the limits of the built-in policy are always applied as far as they can be.\n",
    );
    if !support.has("rlimit_nproc") {
        out.push_str(
            "Here `processes` is not enforced: `std/policy` `strict` and `careful` run\n\
             with every other limit (`best_effort: [\"processes\"]`), and the PID namespace\n\
             still ends whatever a step started. A policy of yours that writes\n\
             `processes` is refused unless it says so too.\n",
        );
    }
    out.push_str("See docs/security.md.\n");
    let store = secrets["store"].as_str().unwrap_or_default();
    let state = match (&secrets["error"], secrets["exists"].as_bool()) {
        (serde_json::Value::String(e), _) => format!("unreadable: {e}"),
        (_, Some(true)) => format!("{} name(s)", secrets["names"]),
        _ => "none yet (`flowc secret set NAME`)".into(),
    };
    let key = match secrets["key_from"].as_str() {
        Some(v) => format!("from ${v}"),
        None => "not set (FLOWC_SECRETS_KEY or FLOWC_SECRETS_KEY_FILE)".into(),
    };
    out.push_str(&format!(
        "\nSecrets: `secret(\"NAME\")` reads the environment, then the store {store}: {state}; key {key}.\n"
    ));
    write_stdout(out.as_bytes())
}
