//! `agent` steps end to end: the README's demo offline, an agent against a local
//! OpenAI-compatible server killed after every journal commit and resumed,
//! caps, policy rules on tool calls, large results, and both HTTP providers.
#![allow(clippy::unwrap_used)]

mod common;

use common::flowc_env as flowc;

use common::model_server::{Answer, Seen, serve};
use flowc::journal::Journal;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/agent").join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn journal(dir: &Path) -> Journal {
    Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap()
}

fn events(dir: &Path, kind: &str) -> Vec<Json> {
    let j = journal(dir);
    let run = j.runs().unwrap()[0].id.clone();
    j.events_of(&run, Some(kind))
        .unwrap()
        .into_iter()
        .map(|e| e.data)
        .collect()
}

/// An OpenAI chat completion that asks for tool calls.
fn calls(turn: u32, calls: &[(&str, Json)], tokens_in: u64) -> Answer {
    let tool_calls: Vec<Json> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({ "id": format!("call_{turn}_{i}"), "type": "function",
                    "function": { "name": name, "arguments": args.to_string() } })
        })
        .collect();
    let body = json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": null, "tool_calls": tool_calls }, "finish_reason": "tool_calls" }],
        "usage": { "prompt_tokens": tokens_in, "completion_tokens": 10 },
    });
    Answer(200, vec![], body.to_string())
}

fn answer(content: &str, tokens_in: u64) -> Answer {
    let body = json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": tokens_in, "completion_tokens": 5 },
    });
    Answer(200, vec![], body.to_string())
}

/// The counter agent's model: four turns, five tool calls (two in parallel twice).
fn counter_script() -> Vec<Answer> {
    vec![
        calls(
            1,
            &[
                ("note", json!({ "text": "a" })),
                ("look", json!({ "path": "input.txt" })),
            ],
            100,
        ),
        calls(2, &[("note", json!({ "text": "b" }))], 200),
        calls(
            3,
            &[
                ("note", json!({ "text": "c" })),
                ("note", json!({ "text": "d" })),
            ],
            300,
        ),
        answer(r#"{"done": true}"#, 400),
    ]
}

/// Every tool call the server was shown has its result right after it.
fn no_orphans(seen: &[Seen]) {
    for s in seen {
        let msgs = s.body["messages"].as_array().cloned().unwrap_or_default();
        for (i, m) in msgs.iter().enumerate() {
            for c in m["tool_calls"].as_array().into_iter().flatten() {
                let id = &c["id"];
                assert!(
                    msgs[i + 1..]
                        .iter()
                        .any(|r| r["role"] == "tool" && &r["tool_call_id"] == id),
                    "tool call {id} has no result in {msgs:#?}"
                );
            }
        }
    }
}

/// Runs the counter agent against a server answering `script`, with API key `key`.
fn counter_run(script: Vec<Answer>, key: &str) -> (tempfile::TempDir, Output, Vec<Seen>) {
    let (url, seen) = serve(script);
    let dir = counter_dir();
    let flow = fixture("counter.flow");
    let env = [("OPENAI_BASE_URL", url.as_str()), ("OPENAI_API_KEY", key)];
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &env);
    let seen = seen.lock().unwrap().clone();
    (dir, out, seen)
}

fn counter_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.txt"), "hello from input\n").unwrap();
    dir
}

fn effects(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("effects"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_readme_demo_patches_the_file_and_answers_with_a_typed_report() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("calc");
    std::fs::create_dir_all(&repo).unwrap();
    for f in ["calc.sh", "test.sh"] {
        std::fs::copy(root().join("workflows/agent_fix").join(f), repo.join(f)).unwrap();
    }
    let flow = root().join("workflows/agent_fix.flow");
    let repo_arg = format!("repo={}", repo.display());
    let out = flowc(
        dir.path(),
        &["run", flow.to_str().unwrap(), "-i", &repo_arg],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["changed"], json!(["calc.sh"]));
    assert_eq!(
        (report["turns"].as_u64(), report["tool_calls"].as_u64()),
        (Some(5), Some(5))
    );
    // The tool really patched the file, and the test really passes.
    let calc = std::fs::read_to_string(repo.join("calc.sh")).unwrap();
    assert!(calc.contains("add) echo $(($2 + $3))"), "{calc}");
    let test = Command::new("sh")
        .arg("./test.sh")
        .current_dir(&repo)
        .output()
        .unwrap();
    assert!(test.status.success());
    // Every turn and every call is journaled, calls in reply order.
    assert_eq!(events(dir.path(), "llm_call").len(), 5);
    let started = events(dir.path(), "tool_call_started");
    let tools: Vec<&str> = started.iter().filter_map(|d| d["tool"].as_str()).collect();
    assert_eq!(
        tools,
        [
            "list_dir",
            "read_file",
            "run_tests",
            "apply_patch",
            "run_tests"
        ]
    );
    let finished = events(dir.path(), "tool_call_finished");
    assert_eq!(finished.len(), 5);
    assert!(
        finished[1]["result"]
            .as_str()
            .unwrap()
            .contains("add) echo $(($2 - $3))")
    );
    assert!(
        finished[2]["result"]
            .as_str()
            .unwrap()
            .contains("FAIL: calc.sh add 2 3")
    );
    let run = journal(dir.path()).runs().unwrap()[0].id.clone();
    let replay = flowc(dir.path(), &["replay", &run], &[]);
    assert!(replay.status.success(), "{}", stderr(&replay));
}

#[test]
fn killed_after_every_commit_no_write_or_turn_is_repeated() {
    let flow = fixture("counter.flow");
    // The uninterrupted run, for the expected answer.
    let (url, seen) = serve(counter_script());
    let dir = counter_dir();
    let env = [
        ("OPENAI_BASE_URL", url.as_str()),
        ("OPENAI_API_KEY", "sk-counter-secret"),
    ];
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(expected["turns"], 4);
    assert_eq!(expected["calls"], 5);
    assert_eq!(effects(dir.path()), ["a", "b", "c", "d"]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4);
    no_orphans(&seen);
    // The second request carries the first turn's results, the read one included.
    let second = seen[1].body["messages"].to_string();
    assert!(
        second.contains("hello from input") && second.contains("noted a"),
        "{second}"
    );

    let mut n = 1;
    loop {
        let (url, seen) = serve(counter_script());
        let dir = counter_dir();
        let env = [
            ("OPENAI_BASE_URL", url.as_str()),
            ("OPENAI_API_KEY", "sk-counter-secret"),
        ];
        let crash = n.to_string();
        let mut crashing = env.to_vec();
        crashing.push(("FLOWC_DEBUG_CRASH_AFTER_COMMITS", crash.as_str()));
        let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &crashing);
        if out.status.success() {
            assert!(n > 8, "the run finished after only {n} commits");
            break;
        }
        assert_eq!(
            out.status.code(),
            None,
            "N={n}: not killed: {}",
            stderr(&out)
        );
        let run = journal(dir.path()).runs().unwrap()[0].id.clone();
        let resumed = flowc(dir.path(), &["run", "--resume", &run], &env);
        assert!(resumed.status.success(), "N={n}: {}", stderr(&resumed));
        let got: Json = serde_json::from_slice(&resumed.stdout).unwrap();
        assert_eq!(got, expected, "N={n}: the answer differs");
        // No write ran twice (an interrupted one may not have happened at all).
        let marks = effects(dir.path());
        for m in ["a", "b", "c", "d"] {
            let count = marks.iter().filter(|x| *x == m).count();
            assert!(count <= 1, "N={n}: note `{m}` ran {count} times: {marks:?}");
        }
        // No turn was asked twice, and no request had a call without its result.
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "N={n}: {} model requests", seen.len());
        no_orphans(&seen);
        let j = journal(dir.path());
        assert!(j.replay(&run).unwrap().is_empty(), "N={n}: replay differs");
        n += 1;
    }
}

/// A flow of one agent with the fake provider and the given answers and policy.
fn fake_agent(dir: &Path, answers: &str, step: &str, policy: &str) -> PathBuf {
    std::fs::write(dir.join("answers.yaml"), answers).unwrap();
    let flow = format!(
        r#"
model m {{ provider: "fake", script: "answers.yaml" }}
policy p {{ {policy} }}
skill note(text: string) -> string {{
  description: "Append a line to the effects file"
  effect: "write"
  step append: run {{ argv: ["sh", "-c", "printf '%s\\n' \"$1\" >> effects", "note", "{{{{ text }}}}"], effect: "write" }}
  return "noted {{{{ text }}}}"
}}
skill big() -> string {{
  description: "Read the big file"
  step key: run {{ command: "true", env: {{ T: secret("AGENT_TEST_TOKEN") }} }}
  return read("big.txt")
}}
skill main() -> string {{
  policy: p
  step work: agent {{
    model: m
    prompt: "go"
    tools: [note, big]
    {step}
  }}
  return work.text
}}
"#
    );
    let path = dir.join("agent.flow");
    std::fs::write(&path, flow).unwrap();
    path
}

fn violations(dir: &Path) -> Vec<String> {
    events(dir, "policy_violation")
        .iter()
        .filter_map(|d| d["rule"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_looping_model_stops_at_max_repeats_and_an_endless_one_at_max_turns() {
    let dir = tempfile::tempdir().unwrap();
    let same = "- step: work\n  tool_calls: [{ name: note, args: { text: same } }]\n";
    let flow = fake_agent(
        dir.path(),
        &same.repeat(10),
        "max_repeats: 2",
        "max_attempts: 1",
    );
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cap `max_repeats` (2) reached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(effects(dir.path()), ["same", "same"]);
    assert_eq!(violations(dir.path()), ["max_repeats"]);

    let dir = tempfile::tempdir().unwrap();
    let turn = |i: usize| {
        format!("- step: work\n  tool_calls: [{{ name: note, args: {{ text: t{i} }} }}]\n")
    };
    let answers: String = (0..10).map(turn).collect();
    let flow = fake_agent(dir.path(), &answers, "max_turns: 3", "max_attempts: 1");
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cap `max_turns` (3) reached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(effects(dir.path()).len(), 3);
    assert_eq!(violations(dir.path()), ["max_turns"]);
    assert_eq!(events(dir.path(), "llm_call").len(), 3);
}

#[test]
fn forbid_refuses_a_call_and_the_agent_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let answers = "- step: work\n  tool_calls: [{ name: note, args: { text: secret-plan } }]\n\
                   - step: work\n  tool_calls: [{ name: note, args: { text: fine } }]\n\
                   - step: work\n  text: done\n";
    let policy = r#"forbid: tool.name == "note" && tool.args.text.contains("secret")"#;
    let flow = fake_agent(dir.path(), answers, "", policy);
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(effects(dir.path()), ["fine"]);
    let finished = events(dir.path(), "tool_call_finished");
    assert_eq!(finished[0]["refused"], true);
    assert!(
        finished[0]["result"]
            .as_str()
            .unwrap()
            .contains("`forbid` of policy `p`")
    );
    assert_eq!(violations(dir.path()), ["forbid"]);
}

#[test]
fn require_approval_pauses_the_run_and_approve_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let answers = "- step: work\n  tool_calls: [{ name: note, args: { text: gated } }]\n\
                   - step: work\n  text: done\n";
    let policy = r#"require_approval: tool.effect == "write""#;
    let flow = fake_agent(dir.path(), answers, "", policy);
    let out = flowc(
        dir.path(),
        &["run", flow.to_str().unwrap(), "--no-input"],
        &[],
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        effects(dir.path()).is_empty(),
        "the call ran before it was approved"
    );
    let run = journal(dir.path()).runs().unwrap()[0].id.clone();
    let list = flowc(dir.path(), &["approvals"], &[]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("call tool `note`"), "{list}");
    let ok = flowc(dir.path(), &["approve", &run, "work"], &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let resumed = flowc(dir.path(), &["run", "--resume", &run, "--no-input"], &[]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(effects(dir.path()), ["gated"]);
    assert_eq!(
        events(dir.path(), "llm_call").len(),
        2,
        "a turn was asked twice"
    );
}

#[test]
fn a_5_mb_result_is_cut_for_the_model_and_kept_whole_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let answers = "- step: work\n  tool_calls: [{ name: big }]\n- step: work\n  text: done\n";
    let flow = fake_agent(
        dir.path(),
        answers,
        "tool_result_max: 1KiB",
        "max_attempts: 1",
    );
    let token = "tok-9f8e7d6c5b4a";
    let big = format!("{}TOKEN={token}", "x".repeat(5_000_000));
    std::fs::write(dir.path().join("big.txt"), big).unwrap();
    let out = flowc(
        dir.path(),
        &["run", flow.to_str().unwrap()],
        &[("AGENT_TEST_TOKEN", token)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let finished = events(dir.path(), "tool_call_finished");
    let whole = finished[0]["result"].as_str().unwrap();
    assert_eq!(finished[0]["truncated"], true);
    assert!(whole.len() > 5_000_000, "{}", whole.len());
    assert!(
        !whole.contains(token) && whole.ends_with("TOKEN=[redacted]"),
        "{}",
        &whole[whole.len() - 40..]
    );
    // The second turn's request shows the model a cut result.
    let turns = events(dir.path(), "llm_call");
    let fake_prompt = turns[1]["request"].to_string();
    assert!(fake_prompt.len() < 100_000, "{}", fake_prompt.len());
    assert!(
        fake_prompt.contains("bytes cut"),
        "{}",
        &fake_prompt[..500.min(fake_prompt.len())]
    );
}

#[test]
fn openai_requests_carry_the_tool_schemas_and_the_calls_of_each_turn() {
    let (dir, out, seen) = counter_run(counter_script(), "sk-schema-test");
    assert!(out.status.success(), "{}", stderr(&out));
    let flow = fixture("counter.flow");
    let tools = &seen[0].body["tools"];
    assert_eq!(tools[0]["type"], "function");
    assert_eq!(tools[0]["function"]["name"], "note");
    assert_eq!(
        tools[0]["function"]["description"],
        "Append a line to the effects file"
    );
    assert_eq!(
        tools[0]["function"]["parameters"],
        json!({ "type": "object", "properties": { "text": { "type": "string" } },
                "required": ["text"], "additionalProperties": false })
    );
    // Turn 2 is asked with turn 1's two parallel calls and their two results, in order.
    let msgs = seen[1].body["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "tool", "tool"]);
    // The output type is asked for the answer that ends the loop.
    assert!(
        msgs[0]["content"]
            .as_str()
            .unwrap()
            .contains("When you are done and call no more tools")
    );
    assert_eq!(
        msgs[2]["tool_calls"][1]["function"]["arguments"],
        r#"{"path":"input.txt"}"#
    );
    assert_eq!(msgs[3]["tool_call_id"], "call_1_0");
    assert_eq!(msgs[4]["tool_call_id"], "call_1_1");
    assert_eq!(msgs[4]["content"], "hello from input\n");
    // The key travels in the header only.
    assert!(
        seen[0]
            .head
            .contains("authorization: bearer sk-schema-test")
    );
    let db = std::fs::read(dir.path().join(".flowc/journal.db")).unwrap();
    assert!(!db.windows(14).any(|w| w == b"sk-schema-test"));

    // `--replay-llm` answers every turn from the recording: no server, same answer.
    let run = journal(dir.path()).runs().unwrap()[0].id.clone();
    let again = counter_dir();
    let journal_path = dir.path().join(".flowc/journal.db");
    let replay_env = [
        ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
        ("FLOWC_JOURNAL", journal_path.to_str().unwrap()),
    ];
    let replayed = flowc(
        again.path(),
        &["run", flow.to_str().unwrap(), "--replay-llm", &run],
        &replay_env,
    );
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert_eq!(replayed.stdout, out.stdout);
    assert_eq!(effects(again.path()), ["a", "b", "c", "d"]);
}

#[test]
fn anthropic_turns_use_tool_use_and_tool_result_blocks() {
    let turn1 = json!({
        "content": [
            { "type": "text", "text": "two notes" },
            { "type": "tool_use", "id": "toolu_1", "name": "note", "input": { "text": "x" } },
            { "type": "tool_use", "id": "toolu_2", "name": "note", "input": { "text": "y" } }
        ],
        "stop_reason": "tool_use",
        "usage": { "input_tokens": 30, "output_tokens": 12 },
    });
    let turn2 = json!({
        "content": [{ "type": "text", "text": "{\"done\": true}" }],
        "stop_reason": "end_turn",
        "usage": { "input_tokens": 50, "output_tokens": 4 },
    });
    let (url, seen) = serve(vec![
        Answer(200, vec![], turn1.to_string()),
        Answer(200, vec![], turn2.to_string()),
    ]);
    let dir = counter_dir();
    let text = std::fs::read_to_string(fixture("counter.flow"))
        .unwrap()
        .replace("provider: \"openai\"", "provider: \"anthropic\"");
    let flow = dir.path().join("anthropic.flow");
    std::fs::write(&flow, text).unwrap();
    let base = url.trim_end_matches("/v1").to_string();
    let env = [
        ("OPENAI_BASE_URL", base.as_str()),
        ("OPENAI_API_KEY", "sk-ant-test"),
    ];
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (got["turns"].as_u64(), got["calls"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(effects(dir.path()), ["x", "y"]);
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen[0].head.starts_with("post /v1/messages "),
        "{}",
        seen[0].head
    );
    assert_eq!(seen[0].body["tools"][0]["name"], "note");
    assert_eq!(
        seen[0].body["tools"][0]["input_schema"]["required"],
        json!(["text"])
    );
    let msgs = seen[1].body["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"][2]["type"], "tool_use");
    assert_eq!(msgs[2]["role"], "user");
    let results: Vec<&str> = msgs[2]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["tool_use_id"].as_str())
        .collect();
    assert_eq!(results, ["toolu_1", "toolu_2"]);
    assert_eq!(msgs[2]["content"][0]["content"], "noted x");
}

#[test]
fn the_command_provider_speaks_a_json_protocol() {
    let dir = counter_dir();
    // A model written in sh: calls `note` until a result is in the conversation, then answers.
    let model = r#"input=$(cat); case "$input" in *'"noted hi"'*) echo '{"text": "{\"done\": true}"}' ;; *) echo '{"tool_calls": [{"name": "note", "args": {"text": "hi"}}]}' ;; esac"#;
    std::fs::write(dir.path().join("model.sh"), model).unwrap();
    let text = std::fs::read_to_string(fixture("counter.flow"))
        .unwrap()
        .replace(
            "provider: \"openai\"",
            "provider: \"command\"\n  command: \"sh model.sh\"",
        );
    let flow = dir.path().join("command.flow");
    std::fs::write(&flow, text).unwrap();
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (got["done"].as_bool(), got["turns"].as_u64()),
        (Some(true), Some(2))
    );
    assert_eq!(effects(dir.path()), ["hi"]);
}

#[test]
fn a_passing_server_error_asks_the_same_turn_again_and_keeps_the_calls_done() {
    let busy = r#"{"error":{"message":"overloaded"}}"#.to_string();
    let script = vec![
        calls(1, &[("note", json!({ "text": "once" }))], 10),
        Answer(503, vec![("retry-after", "0".into())], busy),
        answer(r#"{"done": true}"#, 20),
    ];
    let (dir, out, seen) = counter_run(script, "sk-x");
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (got["turns"].as_u64(), got["calls"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(effects(dir.path()), ["once"]);

    assert_eq!(seen.len(), 3);
    // The retried request is the same conversation as the failed one.
    assert_eq!(seen[1].body["messages"], seen[2].body["messages"]);
    let notes = events(dir.path(), "note");
    assert!(notes.iter().any(|n| {
        n["text"]
            .as_str()
            .unwrap_or_default()
            .contains("turn 2 is asked again")
    }));
}

#[test]
fn an_interrupted_call_whose_step_says_ask_waits_for_a_person() {
    let answers = "- step: work\n  tool_calls: [{ name: note, args: { text: asked } }]\n\
                   - step: work\n  text: done\n";
    for n in 1..40 {
        let dir = tempfile::tempdir().unwrap();
        let flow = fake_agent(dir.path(), answers, "", "max_attempts: 1");
        let text = std::fs::read_to_string(&flow).unwrap().replace(
            r#""note", "{{ text }}"], effect: "write" }"#,
            r#""note", "{{ text }}"], effect: "write", on_interrupt: "ask" }"#,
        );
        assert!(text.contains("on_interrupt"), "{text}");
        std::fs::write(&flow, text).unwrap();
        let crash = n.to_string();
        let out = flowc(
            dir.path(),
            &["run", flow.to_str().unwrap()],
            &[("FLOWC_DEBUG_CRASH_AFTER_COMMITS", &crash)],
        );
        assert!(!out.status.success(), "finished before a call was cut off");
        let (started, finished) = (
            events(dir.path(), "tool_call_started").len(),
            events(dir.path(), "tool_call_finished").len(),
        );
        if started == 0 {
            continue;
        }
        assert_eq!((started, finished), (1, 0), "N={n}");
        let run = journal(dir.path()).runs().unwrap()[0].id.clone();
        let paused = flowc(dir.path(), &["run", "--resume", &run, "--no-input"], &[]);
        assert_eq!(paused.status.code(), Some(75), "{}", stderr(&paused));
        let list = flowc(dir.path(), &["approvals"], &[]);
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("was interrupted"), "{list}");
        let ok = flowc(dir.path(), &["approve", &run, "work"], &[]);
        assert!(ok.status.success(), "{}", stderr(&ok));
        let done = flowc(dir.path(), &["run", "--resume", &run, "--no-input"], &[]);
        assert!(done.status.success(), "{}", stderr(&done));
        let marks = effects(dir.path());
        assert!(
            !marks.is_empty() && marks.len() <= 2 && marks.iter().all(|m| m == "asked"),
            "{marks:?}"
        );
        assert_eq!(events(dir.path(), "llm_call").len(), 2);
        return;
    }
    panic!("no crash point fell inside the call");
}

#[test]
fn an_agent_remembers_a_lesson_and_the_next_runs_agent_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("answers.yaml"),
        "- step: work\n  tool_calls: [{ name: recall_notes }]\n\
         - step: work\n  tool_calls: [{ name: remember, args: { note: \"the flaky test is t1; rerun it once\" } }]\n\
         - step: work\n  text: done\n",
    )
    .unwrap();
    let flow = dir.path().join("notes.flow");
    std::fs::write(
        &flow,
        r#"import "std/tools.flow"
model m { provider: "fake", script: "answers.yaml" }
skill main() -> string {
  step work: agent { model: m, prompt: "go", tools: [tools.remember, tools.recall_notes] }
  return work.text
}
"#,
    )
    .unwrap();
    let results = |dir: &Path| -> Vec<String> {
        events(dir, "tool_call_finished")
            .iter()
            .map(|d| d["result"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let first = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(results(dir.path())[0], "", "nothing remembered yet");
    let second = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    let seen = results(dir.path());
    assert_eq!(seen[0], "- the flaky test is t1; rerun it once\n");
    assert_eq!(seen[1].matches("rerun it once").count(), 2, "{}", seen[1]);
}

#[test]
fn untrusted_replies_servers_and_tools_fail_clearly() {
    // A reply whose tool call has no id: asked again three times, then the step fails naming why.
    let bad = r#"{"choices":[{"message":{"content":null,"tool_calls":[{"type":"function","function":{"name":"note","arguments":"{}"}}]}}]}"#;
    let script = (0..4)
        .map(|_| Answer(200, vec![], bad.to_string()))
        .collect();
    let (dir, out, seen) = counter_run(script, "sk-x");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("a tool call has no `id`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(seen.len(), 4);
    assert!(effects(dir.path()).is_empty());

    // An MCP server that cannot start: the attempt fails saying which and why.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("answers.yaml"),
        "- step: work\n  text: never\n",
    )
    .unwrap();
    let flow = dir.path().join("mcp.flow");
    std::fs::write(
        &flow,
        r#"model m { provider: "fake", script: "answers.yaml" }
mcp broken { argv: ["/nonexistent/mcp-server"], allow: ["x"] }
skill main() -> string {
  step work: agent { model: m, prompt: "go", tools: [broken.x] }
  return work.text
}
"#,
    )
    .unwrap();
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`mcp` server `broken` could not be started"),
        "{}",
        stderr(&out)
    );

    // A skill tool whose step fails: the model gets the failure as the result and goes on.
    let dir = tempfile::tempdir().unwrap();
    let answers = "- step: work\n  tool_calls: [{ name: fails }]\n- step: work\n  text: coped\n";
    std::fs::write(dir.path().join("answers.yaml"), answers).unwrap();
    let flow = dir.path().join("fails.flow");
    std::fs::write(
        &flow,
        r#"model m { provider: "fake", script: "answers.yaml" }
skill fails() -> string {
  description: "Always fails"
  step boom: run { command: "echo broken >&2; exit 3" }
  return boom.stdout
}
skill main() -> string {
  step work: agent { model: m, prompt: "go", tools: [fails] }
  return work.text
}
"#,
    )
    .unwrap();
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let finished = events(dir.path(), "tool_call_finished");
    assert_eq!(finished[0]["is_error"], true);
    let text = finished[0]["result"].as_str().unwrap();
    assert!(
        text.contains("step `work/1.fails/boom` failed") && text.contains("broken"),
        "{text}"
    );
}
