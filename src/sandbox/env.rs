//! The environment a step inherits: flowc's own, minus what is flowc's
//! business alone. Both ways of starting a process (the spawner and the
//! fallback fork) ask this module which inherited variables to drop, so the
//! two cannot disagree.
//!
//! Dropped unless the step's `env` sets them itself: every `FLOWC_*`
//! variable except the four flowc sets for steps (the secret store's key and
//! key file, the store and journal paths, debug switches), the API keys of
//! the built-in providers, and every variable a `secret()` or a model key of
//! the run reads (see [`crate::secrets::hidden_vars`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Variables flowc sets for every step on purpose (they are never dropped).
pub const STEP_VARS: &[&str] = &[
    "FLOWC_RUN_ID",
    "FLOWC_STEP",
    "FLOWC_ATTEMPT",
    "FLOWC_IDEMPOTENCY_KEY",
];

/// Credentials flowc itself reads: the API keys the built-in providers
/// conventionally use, and the Postgres journal's password (`PGPASSWORD`,
/// read when the URL has none). Never inherited: a step that needs one names
/// it (`env: { PGPASSWORD: secret(…) }`).
pub const PROVIDER_KEYS: &[&str] = &["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PGPASSWORD"];

/// Whether an inherited variable named `name` is kept from steps.
pub fn is_hidden(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    if bytes.starts_with(b"FLOWC_") {
        return !STEP_VARS.iter().any(|v| v.as_bytes() == bytes);
    }
    if PROVIDER_KEYS.iter().any(|v| v.as_bytes() == bytes) {
        return true;
    }
    name.to_str()
        .is_some_and(|n| crate::secrets::hidden_vars().iter().any(|h| h == n))
}

/// The variables of flowc's environment a step with `explicit` variables
/// must not inherit (a variable the step sets itself is the step's choice).
pub fn hidden(explicit: &[(String, String)]) -> Vec<String> {
    std::env::vars_os()
        .filter(|(k, _)| is_hidden(k))
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !explicit.iter().any(|(e, _)| e == k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flowc_variables_are_hidden_but_the_step_ones() {
        assert!(is_hidden(OsStr::new("FLOWC_SECRETS_KEY")));
        assert!(is_hidden(OsStr::new("FLOWC_SECRETS_KEY_FILE")));
        assert!(is_hidden(OsStr::new("FLOWC_JOURNAL")));
        assert!(is_hidden(OsStr::new("OPENAI_API_KEY")));
        assert!(is_hidden(OsStr::new("PGPASSWORD")));
        assert!(!is_hidden(OsStr::new("FLOWC_STEP")));
        assert!(!is_hidden(OsStr::new("PATH")));
    }
}
