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

/// Every `place` (name, bytes) is free of every `forbidden` text.
fn assert_absent(places: &[(String, Vec<u8>)], forbidden: &[String]) {
    for (place, bytes) in places {
        for f in forbidden {
            assert!(
                !bytes.windows(f.len()).any(|w| w == f.as_bytes()),
                "{place} holds {f:?}"
            );
        }
    }
}

/// The journal's bytes (database and WAL) of `d`.
fn journal_bytes(d: &Path) -> Vec<(String, Vec<u8>)> {
    ["journal.db", "journal.db-wal"]
        .iter()
        .filter_map(|f| Some((f.to_string(), std::fs::read(d.join(".flowc").join(f)).ok()?)))
        .collect()
}

const PASS: &str = "pass-PHRASE-7731-zz";
const FROM_ENV: &str = "env-secret-VALUE-4411";

const NOSY: &str = r#"
skill main() {
  step nosy: run { command: "sh nosy.sh" }
  step named: run {
    env: { TOKEN: secret("TOKEN"), ENVSECRET: secret("ENVSECRET") }
    command: "echo \"named $TOKEN $ENVSECRET\"; cat keyfile"
  }
}
"#;

/// A step that names no secret prints its environment, reads the key file
/// and runs an inner `flowc run` that asks for `secret("TOKEN")`.
const NOSY_SH: &str = r#"
env > env.txt
env
cat "$FLOWC_SECRETS_KEY_FILE" 2>&1
echo "$FLOWC_SECRETS_KEY"
# Its own journal: the outer one is read-only inside the step.
flowc run inner.flow --no-input --journal inner.db > inner.txt 2>&1
cat inner.txt
"#;

const INNER: &str = r#"
skill main() -> string {
  step i: run { env: { T: secret("TOKEN") }, command: "echo \"inner $T\"" }
  return i.stdout
}
"#;

#[test]
fn a_step_sees_only_the_secrets_it_names() {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (key_from_file, spawner) in [(false, true), (false, false), (true, true), (true, false)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = flowc(d, &["secret", "set", "TOKEN"], Some(PASS), Some(TOKEN));
        assert!(out.status.success(), "{}", text(&out));
        std::fs::write(d.join("keyfile"), format!("{PASS}\n")).unwrap();
        std::fs::write(d.join("s.flow"), NOSY).unwrap();
        std::fs::write(d.join("nosy.sh"), NOSY_SH).unwrap();
        std::fs::write(d.join("inner.flow"), INNER).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "s.flow", "--no-input"])
            .current_dir(d)
            .env_remove("FLOWC_JOURNAL")
            .env_remove("FLOWC_SECRETS")
            .env_remove("FLOWC_SECRETS_KEY")
            .env_remove("FLOWC_SECRETS_KEY_FILE")
            .env("PATH", &path)
            .env("ENVSECRET", FROM_ENV)
            .env("OPENAI_API_KEY", "sk-provider-key-5566")
            .stdin(Stdio::null());
        if key_from_file {
            cmd.env("FLOWC_SECRETS_KEY_FILE", d.join("keyfile"));
        } else {
            cmd.env("FLOWC_SECRETS_KEY", PASS);
        }
        if spawner {
            cmd.env_remove("FLOWC_NO_SPAWNER");
        } else {
            cmd.env("FLOWC_NO_SPAWNER", "1");
        }
        let run = cmd.output().unwrap();
        let case = format!("key file {key_from_file}, spawner {spawner}");
        assert!(run.status.success(), "{case}: {}", text(&run));
        // What the step saw, outside the journal.
        let env = std::fs::read_to_string(d.join("env.txt")).unwrap();
        for hidden in [
            "FLOWC_SECRETS_KEY",
            "FLOWC_NO_SPAWNER",
            "ENVSECRET",
            "OPENAI_API_KEY",
            PASS,
            FROM_ENV,
        ] {
            assert!(
                !env.contains(hidden),
                "{case}: the step saw {hidden}: {env}"
            );
        }
        assert!(env.contains("FLOWC_STEP=nosy"), "{case}: {env}");
        let inner = std::fs::read_to_string(d.join("inner.txt")).unwrap();
        // Without the key, or (inside the step's mount namespace) with the
        // store reading as empty, the inner run cannot decrypt anything.
        assert!(
            inner.contains("needs a key") || inner.contains("secret store"),
            "{case}: {inner}"
        );
        assert!(inner.contains("failed"), "{case}: {inner}");
        assert!(!inner.contains(TOKEN), "{case}: {inner}");

        let id = {
            let j = flowc::journal::Journal::open_existing(&d.join(".flowc/journal.db")).unwrap();
            let runs = j.runs().unwrap();
            runs.iter().find(|r| r.file == "s.flow").unwrap().id.clone()
        };
        let log = flowc(d, &["log", &id], None, None);
        // The named step got its secrets; the key file it printed is empty
        // inside its mount namespace (or, where it cannot be hidden, redacted).
        assert!(
            text(&log).contains("named [redacted] [redacted]"),
            "{case}: {}",
            text(&log)
        );
        let mut places = journal_bytes(d);
        places.push(("run output".into(), [run.stdout, run.stderr].concat()));
        places.push(("log".into(), log.stdout));
        assert_absent(&places, &[TOKEN.into(), PASS.into(), FROM_ENV.into()]);
    }
}

#[test]
fn a_readable_set_that_covers_the_key_file_refuses_the_step() {
    let doctor = flowc(Path::new("."), &["doctor", "--json"], None, None);
    let doc: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let landlock = doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["name"] == "landlock_fs" && l["available"] == true);
    if !landlock {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("keyfile"), PASS).unwrap();
    std::fs::write(
        d.join("s.flow"),
        "skill main() {\n  step r: run { command: \"cat keyfile\", sandbox { readable: [\".\"] } }\n}\n",
    )
    .unwrap();
    let run = Command::new(BIN)
        .args(["run", "s.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("FLOWC_SECRETS_KEY")
        .env("FLOWC_SECRETS_KEY_FILE", d.join("keyfile"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("the secrets key file"),
        "{}",
        text(&run)
    );
    assert_absent(&journal_bytes(d), &[PASS.into()]);
}

/// Prints the secret wrapped by GNU `base64`, as JSON `\u` escapes and
/// percent-encoded byte by byte.
const ENCODE_SH: &str = r#"
printf 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx%s' "$TOKEN" | base64
python3 -c 'import os; print("{\"t\": \"" + "".join("\\u%04x" % ord(c) for c in os.environ["TOKEN"]) + "\"}")'
python3 -c 'import os; print("".join("%%%02x" % b for b in os.environ["TOKEN"].encode()))'
python3 -c 'import os; print("".join("%%%02X" % b for b in os.environ["TOKEN"].encode()))' >&2
"#;

const ENCODED: &str = r#"
skill main() {
  step enc: run { env: { TOKEN: secret("TOKEN") }, command: "sh encode.sh" }
  step cut: run {
    env: { TOKEN: secret("TOKEN") }
    command: "printf '%s' \"$TOKEN\"; head -c 65517 /dev/zero | tr '\\0' y"
  }
  step write: run {
    env: { TOKEN: secret("TOKEN") }
    command: "printf 'token=%s' \"$TOKEN\" > token.txt"
  }
  step snap: run {
    command: "true"
    snapshot: ["token.txt"]
    after: [write]
    on_failure: continue
  }
}
"#;

#[test]
fn encoded_and_cut_secrets_never_reach_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = flowc(d, &["secret", "set", "TOKEN"], Some("pw"), Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(d.join("s.flow"), ENCODED).unwrap();
    std::fs::write(d.join("encode.sh"), ENCODE_SH).unwrap();
    let run = flowc(d, &["run", "s.flow"], Some("pw"), None);
    assert!(run.status.success(), "{}", text(&run));
    let id = common_latest(d);
    let log = flowc(d, &["log", &id], None, None);
    let status = flowc(d, &["status", &id, "--json"], None, None);
    // The snapshot of a file holding the secret is refused, naming the file.
    assert!(
        text(&log).contains("`token.txt` holds a secret value of this run"),
        "{}",
        text(&log)
    );

    let wrapped = STANDARD.encode(format!("{}{TOKEN}", "x".repeat(50)));
    let json: String = TOKEN
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let lower: String = TOKEN.bytes().map(|b| format!("%{b:02x}")).collect();
    let upper: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
    let forbidden: Vec<String> = vec![
        TOKEN.into(),
        // What a cut inside the secret used to leave: its last 19 characters.
        TOKEN[TOKEN.len() - 19..].into(),
        // The token's whole base64 groups, on either side of the 76-column break.
        wrapped[68..76].into(),
        wrapped[76..92].into(),
        json[..24].into(),
        json[json.len() - 24..].into(),
        lower,
        upper,
    ];
    let mut places = journal_bytes(d);
    places.push(("run output".into(), [run.stdout, run.stderr].concat()));
    places.push(("log".into(), log.stdout.clone()));
    places.push(("status".into(), status.stdout));
    for entry in walkdir(&d.join(".flowc/snapshots")) {
        places.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    assert_absent(&places, &forbidden);
    // Each step printed: the redacted output keeps the shape around the secret.
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("{\"t\": \"[redacted]\"}"), "{log}");
}

fn common_latest(d: &Path) -> String {
    let journal = flowc::journal::Journal::open_existing(&d.join(".flowc/journal.db")).unwrap();
    journal.runs().unwrap()[0].id.clone()
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
