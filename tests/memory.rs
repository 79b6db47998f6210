//! Memory that outlives runs: `recall`, `remember` and `flowc memory`, with the built binary.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BIN, flowc, latest_run, stderr};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn returned(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

fn journal(dir: &Path) -> flowc::journal::Journal {
    flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap()
}

fn memory_get(dir: &Path, key: &str) -> Option<Value> {
    let out = flowc(dir, &["memory", "get", key]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// `read` runs before `write`, so each run sees what the previous one wrote.
const NOTES: &str = r#"skill main(note: string) -> { seen: string } {
  step read: run {
    command: "echo {{ recall('notes/last', 'none') }}"
  }
  step write: run {
    after: [read]
    command: "echo {{ note }}"
    remember: { "notes/last": stdout.trim(), "notes/runs": recall("notes/runs", 0) + 1 }
  }
  return { seen: read.stdout.trim() }
}
"#;

#[test]
fn one_run_remembers_and_the_next_recalls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("notes.flow"), NOTES).unwrap();
    let first = flowc(d, &["run", "notes.flow", "-i", "note=alpha", "--no-input"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(returned(&first), serde_json::json!({ "seen": "none" }));
    assert_eq!(memory_get(d, "notes/last"), Some(Value::from("alpha")));
    let second = flowc(d, &["run", "notes.flow", "-i", "note=beta", "--no-input"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(returned(&second), serde_json::json!({ "seen": "alpha" }));
    assert_eq!(memory_get(d, "notes/last"), Some(Value::from("beta")));
    assert_eq!(memory_get(d, "notes/runs"), Some(Value::from(2)));
    // Every write is a journaled event of the run that made it, and replays.
    let run = latest_run(d);
    let events = journal(d).events_of(&run, Some("memory_set")).unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].data["key"], "notes/last");
    assert_eq!(events[0].node.as_deref(), Some("write"));
    let replay = flowc(d, &["replay", &run]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let list = flowc(d, &["memory", "list", "notes"]);
    assert!(
        stdout(&list).contains(&format!("run {run}")),
        "{}",
        stdout(&list)
    );
}

/// `read` recalls `cfg/mode`; `count` recalls and rewrites `cfg/count`; the
/// approval beside them pauses the run.
const GATED: &str = r#"skill main() -> { mode: string } {
  step read: run { command: "echo {{ recall('cfg/mode', 'fast') }}" }
  step count: run {
    command: "echo {{ recall('cfg/count', 0) + 1 }}"
    remember: { "cfg/count": stdout.trim().parse_int() }
  }
  step gate: approval { prompt: "go?", remember: { "cfg/approved_by": by[0] } }
  step done: run { command: "echo done", after: [gate, read, count] }
  return { mode: read.stdout.trim() }
}
"#;

#[test]
fn a_resumed_run_reruns_a_step_whose_recalled_value_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("gated.flow"), GATED).unwrap();
    let first = flowc(d, &["run", "gated.flow", "--no-input"]);
    assert_eq!(first.status.code(), Some(75), "{}", stderr(&first));
    let run = latest_run(d);
    let set = flowc(d, &["memory", "set", "cfg/mode", "slow"]);
    assert!(set.status.success(), "{}", stderr(&set));
    let approve = flowc(d, &["approve", &run, "gate"]);
    assert!(approve.status.success(), "{}", stderr(&approve));
    let resumed = flowc(d, &["run", "--resume", &run, "--explain", "--no-input"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let err = stderr(&resumed);
    assert!(
        err.contains("a recalled memory value changed (`cfg/mode`)"),
        "{err}"
    );
    assert_eq!(returned(&resumed), serde_json::json!({ "mode": "slow" }));
    // `count` changed its own key only: it is reused, not run again.
    assert!(
        err.lines()
            .any(|l| l.contains("count") && l.contains("inputs are unchanged")),
        "{err}"
    );
    assert_eq!(memory_get(d, "cfg/count"), Some(Value::from(1)));
    // An approval remembers when it is approved.
    assert!(memory_get(d, "cfg/approved_by").is_some_and(|v| v.is_string()));
    let history = flowc(d, &["memory", "history", "cfg/mode", "--json"]);
    let history: Vec<Value> = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        history[0]["run_id"].is_null(),
        "a person set it: {history:?}"
    );
}

const SHARED: &str = r#"skill main(n: int) {
  step w: run {
    command: "echo {{ n }}"
    remember: { "shared/last": stdout.trim() }
  }
}
"#;

#[test]
fn concurrent_runs_writing_one_key_keep_an_ordered_history() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("shared.flow"), SHARED).unwrap();
    // Create the journal first, so the runs do not race to create it.
    assert!(
        flowc(d, &["memory", "set", "shared/last", "start"])
            .status
            .success()
    );
    let children: Vec<_> = (0..4)
        .map(|n| {
            Command::new(BIN)
                .args(["run", "shared.flow", "-i", &format!("n={n}"), "--no-input"])
                .current_dir(d)
                .env_remove("FLOWC_JOURNAL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = flowc(d, &["memory", "history", "shared/last", "--json"]);
    let history: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history.len(), 5, "{history:#?}");
    assert_eq!(history[0]["value"], "start");
    let mut values: Vec<String> = history[1..]
        .iter()
        .map(|c| c["value"].as_str().unwrap().to_string())
        .collect();
    let runs: std::collections::HashSet<&str> = history[1..]
        .iter()
        .map(|c| c["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs.len(), 4, "one write per run: {history:#?}");
    let times: Vec<i64> = history.iter().map(|c| c["at"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // The current value is the last write of the history.
    assert_eq!(
        memory_get(d, "shared/last"),
        Some(Value::from(values.last().unwrap().as_str()))
    );
    values.sort();
    assert_eq!(values, ["0", "1", "2", "3"]);
}

#[test]
fn json_from_memory_is_read_as_a_declared_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flow = r#"skill main() -> { next: int } {
  step show: run { command: "echo {{ recall('cfg/n').as_int() + 1 }}" }
  return { next: recall("cfg/n").as_int() + 1 }
}
"#;
    std::fs::write(d.join("typed.flow"), flow).unwrap();
    assert!(flowc(d, &["memory", "set", "cfg/n", "41"]).status.success());
    let out = flowc(d, &["run", "typed.flow", "--no-input"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(returned(&out), serde_json::json!({ "next": 42 }));
    assert!(
        flowc(d, &["memory", "set", "cfg/n", "forty-one"])
            .status
            .success()
    );
    let out = flowc(d, &["run", "typed.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("as_int(): the value is a string, not an int"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_over_limit_value_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flow = r#"skill main() {
  step big: run {
    command: "head -c 40000 /dev/zero | tr '\\0' a"
    remember: { "big/value": [stdout, stdout] }
  }
}
"#;
    std::fs::write(d.join("big.flow"), flow).unwrap();
    let out = flowc(d, &["run", "big.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`remember.big/value`: the value is 80007 bytes of JSON, over the 65536 bytes a memory value may hold"),
        "{err}"
    );
    assert_eq!(memory_get(d, "big/value"), None);
}

#[test]
fn a_full_namespace_refuses_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join(".flowc")).unwrap();
    let path = d.join(".flowc/journal.db");
    let mut j = flowc::journal::Journal::open(&path, Default::default()).unwrap();
    for i in 0..flowc::journal::MEMORY_KEYS_MAX {
        j.memory_set(&format!("full/k{i}"), &Value::from(i), "test")
            .unwrap();
    }
    drop(j);
    let flow = r#"skill main() {
  step a: run { command: "true", remember: { "full/k0": 1 } }
  step b: run { command: "true", after: [a], remember: { "full/new": 1 } }
}
"#;
    std::fs::write(d.join("full.flow"), flow).unwrap();
    let out = flowc(d, &["run", "full.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the namespace `full` holds 1000 keys already"),
        "{}",
        stderr(&out)
    );
    // Rewriting a key it holds is fine.
    assert_eq!(memory_get(d, "full/k0"), Some(Value::from(1)));
}

#[test]
fn a_secret_is_redacted_before_it_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flow = r#"skill main() {
  step peek: run {
    env { TOKEN: secret("MEMORY_TEST_TOKEN") }
    command: "echo token=$TOKEN"
    remember: { "creds/seen": stdout.trim() }
  }
}
"#;
    std::fs::write(d.join("peek.flow"), flow).unwrap();
    let out = Command::new(BIN)
        .args(["run", "peek.flow", "--no-input"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env("MEMORY_TEST_TOKEN", "hunter2-very-secret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        memory_get(d, "creds/seen"),
        Some(Value::from("token=[redacted]"))
    );
    let db = std::fs::read(d.join(".flowc/journal.db")).unwrap();
    let wal = std::fs::read(d.join(".flowc/journal.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes
                .windows(b"hunter2-very-secret".len())
                .any(|w| w == b"hunter2-very-secret"),
            "the secret reached the journal"
        );
    }
}

#[test]
fn checker_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let flow = r#"skill main(k: string) {
  step a: run {
    command: "echo {{ recall(k) }}"
    remember: { "": stdout }
  }
  step b: run { command: "echo", when: recall(k) == "x" }
}
"#;
    std::fs::write(d.join("bad.flow"), flow).unwrap();
    let out = flowc(d, &["check", "bad.flow", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        text.matches("the key of `recall` must be a string literal")
            .count(),
        2,
        "{text}"
    );
    assert!(text.contains("invalid memory key ``"), "{text}");
}

#[test]
fn the_reflection_example_starts_from_the_last_lesson() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    for f in ["reflect.flow", "reflect.answers.yaml"] {
        std::fs::copy(root.join(f), d.join(f)).unwrap();
    }
    // Something to reflect on: a step that keeps failing.
    std::fs::write(
        d.join("fail.flow"),
        "skill main() {\n  step ex: run { command: \"echo disk quota exceeded >&2; exit 3\" }\n}\n",
    )
    .unwrap();
    for _ in 0..2 {
        let out = flowc(d, &["run", "fail.flow", "--no-input"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    }
    let cmd = format!("{BIN} failures --json --since 7d");
    let input = format!("failures={cmd}");
    let mut prompts = Vec::new();
    for _ in 0..2 {
        let out = Command::new(BIN)
            .args(["run", "reflect.flow", "-i", &input, "--no-input"])
            .current_dir(d)
            .env_remove("FLOWC_JOURNAL")
            .env_remove("FLOWC_LLM_PROVIDER")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let run = latest_run(d);
        let calls = journal(d).events_of(&run, Some("llm_call")).unwrap();
        assert_eq!(calls.len(), 1);
        prompts.push(calls[0].data["request"].to_string());
    }
    let lesson = memory_get(d, "reflect/lesson").unwrap();
    let lesson = lesson.as_str().unwrap();
    assert!(lesson.starts_with("Lesson:"), "{lesson}");
    assert!(
        prompts[0].contains("Last time you concluded: none yet"),
        "{}",
        prompts[0]
    );
    assert!(prompts[0].contains("disk quota exceeded"), "{}", prompts[0]);
    assert!(
        prompts[1].contains(&format!("Last time you concluded: {lesson}")),
        "{}",
        prompts[1]
    );
}
