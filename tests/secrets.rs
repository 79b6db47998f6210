//! The secret store (`flowc secret`) and redaction: after runs that print
//! secrets in plain, base64, URL-encoded and line-by-line forms, neither the
//! journal's bytes nor anything flowc printed holds any of those forms.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");
const TOKEN: &str = "p@ss w0rd/s3cret&more";
const MULTI: &str = "line-one-AAAA\nline-two-BBBB";

fn flowc(dir: &Path, args: &[&str], key: Option<&str>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_SECRETS")
        .env_remove("FLOWC_SECRETS_KEY")
        .env_remove("FLOWC_SECRETS_KEY_FILE")
        .env_remove("TOKEN")
        .env_remove("MULTI")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        cmd.env("FLOWC_SECRETS_KEY", k);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_store_sets_lists_and_removes_without_showing_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = flowc(d, &["secret", "set", "TOKEN"], Some("pw"), Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out));
    let store = std::fs::read(d.join(".flowc/secrets.json")).unwrap();
    assert!(!store.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join(".flowc/secrets.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let out = flowc(d, &["secret", "list"], Some("pw"), None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "TOKEN\n");
    // `flowc doctor` tells where secrets come from, never what they are.
    let out = flowc(d, &["doctor", "--json"], Some("pw"), None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["secrets"]["names"], 1);
    assert_eq!(doc["secrets"]["key_from"], "FLOWC_SECRETS_KEY");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(TOKEN));
    // Another key cannot add to (or read) this store.
    let out = flowc(
        d,
        &["secret", "set", "OTHER"],
        Some("nope"),
        Some("value-x"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("wrong key"), "{}", text(&out));
    // No key at all: a clear error.
    let out = flowc(d, &["secret", "set", "OTHER"], None, Some("value-x"));
    assert!(text(&out).contains("FLOWC_SECRETS_KEY"), "{}", text(&out));
    // Bad names and empty values are usage errors.
    let out = flowc(d, &["secret", "set", "1BAD"], Some("pw"), Some("v"));
    assert_eq!(out.status.code(), Some(2));
    let out = flowc(d, &["secret", "set", "EMPTY"], Some("pw"), Some(""));
    assert_eq!(out.status.code(), Some(2));

    let out = flowc(d, &["secret", "rm", "TOKEN"], Some("pw"), None);
    assert!(out.status.success());
    let out = flowc(d, &["secret", "rm", "TOKEN"], Some("pw"), None);
    assert_eq!(out.status.code(), Some(2));
    let out = flowc(d, &["secret", "list", "--json"], Some("pw"), None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

const FLOW: &str = r#"
skill main() -> string {
  step leak: run {
    env: { TOKEN: secret("TOKEN"), MULTI: secret("MULTI") }
    command: """
      echo "plain $TOKEN"
      printf %s "$TOKEN" | base64
      echo "user:$TOKEN" | base64
      python3 -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ["TOKEN"], safe=""))'
      python3 -c 'import os, urllib.parse; print(urllib.parse.quote_plus(os.environ["TOKEN"]))'
      printf '%s\n' "$MULTI" | tail -n 1
      printf '%s\n' "$MULTI" | head -n 1 >&2
    """
  }
  step fail: run {
    env: { TOKEN: secret("TOKEN") }
    command: "echo \"boom $TOKEN\" >&2; exit 3"
    on_failure: continue
  }
  step relay: run {
    stdin: "{{ leak.stdout }}"
    command: "cat > relay.txt"
  }
  return leak.stdout
}
"#;

#[test]
fn secrets_never_reach_the_journal_or_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, value) in [("TOKEN", TOKEN), ("MULTI", MULTI)] {
        let out = flowc(d, &["secret", "set", name], Some("pw"), Some(value));
        assert!(out.status.success(), "{}", text(&out));
    }
    std::fs::write(d.join("leak.flow"), FLOW).unwrap();
    let run = flowc(d, &["run", "leak.flow"], Some("pw"), None);
    assert!(run.status.success(), "{}", text(&run));
    let journal = flowc::journal::Journal::open_existing(&d.join(".flowc/journal.db")).unwrap();
    let id = journal.runs().unwrap()[0].id.clone();
    drop(journal);
    let log = flowc(d, &["log", &id], None, None);
    let status = flowc(d, &["status", &id, "--json"], None, None);
    assert!(text(&log).contains("[redacted]"), "{}", text(&log));

    let mut forbidden: Vec<String> = vec![
        TOKEN.into(),
        MULTI.into(),
        "line-one-AAAA".into(),
        "line-two-BBBB".into(),
        STANDARD.encode(TOKEN),
        STANDARD.encode(format!("{TOKEN}\n"))[..20].to_string(),
        "p%40ss%20w0rd%2Fs3cret%26more".into(),
        "p%40ss+w0rd%2Fs3cret%26more".into(),
    ];
    // The middle of `user:TOKEN\n` in base64: whole groups of the token's bytes.
    let shifted = STANDARD.encode(format!("user:{TOKEN}\n"));
    forbidden.push(shifted[8..24].to_string());
    let mut places: Vec<(String, Vec<u8>)> = vec![
        (
            "run output".into(),
            [run.stdout.clone(), run.stderr.clone()].concat(),
        ),
        ("log".into(), log.stdout.clone()),
        ("status".into(), status.stdout.clone()),
    ];
    for f in ["journal.db", "journal.db-wal"] {
        if let Ok(bytes) = std::fs::read(d.join(".flowc").join(f)) {
            places.push((f.into(), bytes));
        }
    }
    for (place, bytes) in &places {
        for f in &forbidden {
            assert!(
                !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
                "{place} holds {f:?}"
            );
        }
    }
    // A downstream step sees the redacted result, as a resumed run would.
    let relay = std::fs::read_to_string(d.join("relay.txt")).unwrap();
    assert!(relay.starts_with("plain [redacted]"), "{relay}");
    assert!(!relay.contains(TOKEN));
    // The step really printed them: the redacted output keeps its shape.
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("plain [redacted]"), "{out}");
}
