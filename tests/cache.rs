//! The step cache across runs (issue 19): reuse of unchanged shards, reruns of
//! exactly what changed, outputs restored bit for bit, corrupt objects caught,
//! and the dry run's reasons, with nothing run.
#![allow(clippy::unwrap_used)]

mod common;
use common::{BIN, flowc, latest_run, stderr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn fixture(dir: &Path, name: &str) {
    let src = std::fs::read_to_string(format!("tests/fixtures/cache/{name}")).unwrap();
    std::fs::write(dir.join(name), src).unwrap();
}

/// `flowc ARGS` in `dir` with extra environment variables.
fn flowc_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .env_remove("LINT_LEVEL")
        .env_remove("LEVEL")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        stderr(out)
    );
}

/// Lines of `ran.log` since the last call (the steps that ran), sorted.
fn ran_since(dir: &Path, seen: &mut usize) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("ran.log")).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut new = lines[*seen..].to_vec();
    *seen = lines.len();
    new.sort();
    new
}

/// Node instance keys of the latest run that were reused from the cache.
fn reused_in_latest(dir: &Path) -> Vec<String> {
    let run = latest_run(dir);
    let journal = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    let mut keys: Vec<String> = journal
        .events_of(&run, Some("node_status"))
        .unwrap()
        .into_iter()
        .filter(|e| e.data["status"] == "succeeded" && e.data["reused"].is_object())
        .filter_map(|e| e.node)
        .collect();
    keys.sort();
    keys
}

fn shard_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d, "shards.flow");
    std::fs::create_dir(d.join("src")).unwrap();
    for i in 0..50 {
        std::fs::write(
            d.join(format!("src/s{i}.txt")),
            format!("shard {i}\nTODO\n"),
        )
        .unwrap();
    }
    dir
}

#[test]
fn fifty_shards_run_once_then_only_what_changed_runs_again() {
    let dir = shard_dir();
    let d = dir.path();
    let mut seen = 0;
    ok(&flowc(d, &["run", "shards.flow", "--no-input"]));
    let first = ran_since(d, &mut seen);
    assert_eq!(first.len(), 51, "50 shards and the summary ran: {first:?}");
    assert!(reused_in_latest(d).is_empty());

    let again = flowc(d, &["run", "shards.flow", "--no-input"]);
    ok(&again);
    assert_eq!(
        ran_since(d, &mut seen),
        Vec::<String>::new(),
        "nothing runs twice"
    );
    // 50 shards, the file list and the summary.
    assert_eq!(reused_in_latest(d).len(), 52);
    assert!(
        stderr(&again).contains("52 from the cache"),
        "{}",
        stderr(&again)
    );

    // One shard's file changes: that shard and the summary below it run.
    std::fs::write(d.join("src/s7.txt"), "shard 7\nTODO\nTODO\n").unwrap();
    ok(&flowc(d, &["run", "shards.flow", "--no-input"]));
    assert_eq!(ran_since(d, &mut seen), ["src/s7.txt", "summary"]);
    assert!(!reused_in_latest(d).contains(&"for_f[7]/lint".to_string()));
    assert_eq!(reused_in_latest(d).len(), 50);

    // A comment and layout: nothing runs.
    let src = std::fs::read_to_string(d.join("shards.flow")).unwrap();
    let edited = src
        .replace(
            "  for f in files {",
            "  # lint every shard\n\n  for f in files   {",
        )
        .replace(
            "      cache: true\n    }\n  }",
            "      cache:   true   # cached\n    }\n  }",
        );
    assert_ne!(edited, src);
    std::fs::write(d.join("shards.flow"), edited).unwrap();
    ok(&flowc(d, &["run", "shards.flow", "--no-input"]));
    assert_eq!(
        ran_since(d, &mut seen),
        Vec::<String>::new(),
        "a cosmetic edit reruns nothing"
    );

    // Only the summary gets `LEVEL`: only it runs when the value changes.
    let out = flowc_env(
        d,
        &["run", "shards.flow", "--no-input"],
        &[("LINT_LEVEL", "error")],
    );
    ok(&out);
    assert_eq!(ran_since(d, &mut seen), ["summary"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("error 50"));
}

#[test]
fn a_declared_output_is_restored_bit_for_bit_and_a_corrupt_object_reruns_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d, "outputs.flow");
    let mut seen = 0;
    ok(&flowc(d, &["run", "outputs.flow", "--no-input"]));
    assert_eq!(ran_since(d, &mut seen), ["make"]);
    let made = std::fs::read(d.join("out.bin")).unwrap();
    assert_eq!(made.len(), 65536);

    std::fs::remove_file(d.join("out.bin")).unwrap();
    ok(&flowc(d, &["run", "outputs.flow", "--no-input"]));
    assert_eq!(ran_since(d, &mut seen), Vec::<String>::new());
    assert_eq!(
        std::fs::read(d.join("out.bin")).unwrap(),
        made,
        "restored bit for bit"
    );
    assert_eq!(reused_in_latest(d), ["make"]);

    // Flip one byte of the stored object: the hash check catches it.
    let hash = blake3::hash(&made).to_hex().to_string();
    let object = d.join(".flowc/cache/objects").join(&hash[..2]).join(&hash);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    std::fs::write(d.join("out.bin"), b"left alone until the step runs").unwrap();
    let out = flowc(d, &["run", "outputs.flow", "--no-input", "--explain"]);
    ok(&out);
    assert_eq!(ran_since(d, &mut seen), ["make"], "the step ran again");
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    assert!(reused_in_latest(d).is_empty());
    let remade = std::fs::read(d.join("out.bin")).unwrap();
    assert_eq!(remade.len(), 65536);
    assert_ne!(remade, made);

    // The rerun stored a good entry again.
    std::fs::remove_file(d.join("out.bin")).unwrap();
    ok(&flowc(d, &["run", "outputs.flow", "--no-input"]));
    assert_eq!(ran_since(d, &mut seen), Vec::<String>::new());
    assert_eq!(std::fs::read(d.join("out.bin")).unwrap(), remade);
}

fn markers(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("marker-"))
        .collect();
    found.sort();
    found
}

fn clear_markers(dir: &Path) {
    for m in markers(dir) {
        std::fs::remove_file(dir.join(m)).unwrap();
    }
}

#[test]
fn the_dry_run_says_why_each_step_would_run_and_runs_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixture(d, "reasons.flow");
    std::fs::write(d.join("in.txt"), "x\n").unwrap();
    // Run 1: `h` fails (no `allow-h`), so nothing of it is stored.
    ok(&flowc(d, &["run", "reasons.flow", "--no-input"]));
    let run1 = latest_run(d);
    // Run 2, another input: `u` is stored with it, `h` succeeds after that `u`.
    std::fs::write(d.join("allow-h"), "").unwrap();
    ok(&flowc(
        d,
        &["run", "reasons.flow", "-i", "v=2", "--no-input"],
    ));
    let run2 = latest_run(d);
    assert_ne!(run1, run2);

    std::fs::write(d.join("in.txt"), "y\n").unwrap();
    let src = std::fs::read_to_string(d.join("reasons.flow")).unwrap();
    let src = src.replace("echo one", "echo two").replace(
        "  step g: run {",
        "  step e: run {\n    command: \"touch marker-e\"\n    cache: true\n  }\n  step g: run {",
    );
    std::fs::write(d.join("reasons.flow"), src).unwrap();
    clear_markers(d);

    let args = ["plan", "reasons.flow", "-i", "v=1", "--json"];
    let out = flowc_env(d, &args, &[("LEVEL", "high")]);
    ok(&out);
    assert_eq!(markers(d), Vec::<String>::new(), "the dry run ran no step");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |key: &str| -> serde_json::Value {
        plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no row for `{key}` in {plan}"))
    };
    let reasons = |key: &str| row(key)["reasons"].clone();
    assert_eq!(row("u")["reuse"], true);
    assert_eq!(row("u")["from"]["run"], run1.as_str());
    assert_eq!(row("g")["from"]["run"], run1.as_str());
    assert_eq!(
        reasons("a"),
        serde_json::json!([{ "reason": "files", "names": ["in.txt"] }])
    );
    assert_eq!(
        reasons("b"),
        serde_json::json!([{ "reason": "depends_on", "names": ["a"] }])
    );
    assert_eq!(reasons("c"), serde_json::json!([{ "reason": "cache_off" }]));
    assert_eq!(
        reasons("d"),
        serde_json::json!([{ "reason": "definition", "names": ["command"] }])
    );
    assert_eq!(reasons("e"), serde_json::json!([{ "reason": "no_entry" }]));
    assert_eq!(
        reasons("f"),
        serde_json::json!([{ "reason": "env", "names": ["LEVEL"] }])
    );
    assert_eq!(
        reasons("h"),
        serde_json::json!([{ "reason": "upstream", "names": ["u"] }])
    );
    assert_eq!(plan["reuse"], 2);

    // `run --dry-run` is the same, in words; the journal did not change.
    let words = flowc_env(
        d,
        &["run", "--dry-run", "reasons.flow", "-i", "v=1"],
        &[("LEVEL", "high")],
    );
    ok(&words);
    let text = String::from_utf8_lossy(&words.stdout);
    assert!(
        text.contains("would run   a: input file changed: `in.txt`"),
        "{text}"
    );
    assert!(
        text.contains("would run   d: definition changed: `command`"),
        "{text}"
    );
    assert!(
        text.contains(&format!("would reuse g (from run {run1})")),
        "{text}"
    );
    assert_eq!(markers(d), Vec::<String>::new());
    assert_eq!(latest_run(d), run2, "a dry run journals no run");
}

#[test]
fn cache_commands_report_remove_and_collect() {
    let dir = shard_dir();
    let d = dir.path();
    ok(&flowc(d, &["run", "shards.flow", "--no-input"]));
    let stats = flowc(d, &["cache", "stats", "--json"]);
    ok(&stats);
    let s: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(s["entries"], 52);
    let ls = flowc(d, &["cache", "ls", "--json"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), 52);

    let rm = flowc(d, &["cache", "rm", "summary"]);
    ok(&rm);
    assert!(stderr(&rm).contains("removed 1 entries"), "{}", stderr(&rm));
    let again = flowc(d, &["cache", "rm", "summary"]);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    let none = flowc(d, &["cache", "rm"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));

    // A cap of 0 evicts everything; the next run runs every step again.
    ok(&flowc(d, &["cache", "gc", "--max-size", "0"]));
    let s: serde_json::Value =
        serde_json::from_slice(&flowc(d, &["cache", "stats", "--json"]).stdout).unwrap();
    assert_eq!(s["entries"], 0);
    assert_eq!(s["objects"], 0);
    let mut seen = 0;
    ran_since(d, &mut seen);
    ok(&flowc(d, &["run", "shards.flow", "--no-input"]));
    assert_eq!(ran_since(d, &mut seen).len(), 51);

    let bad = flowc(d, &["cache", "gc", "--older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("not a duration"), "{}", stderr(&bad));
}
