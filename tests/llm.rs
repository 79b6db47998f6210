//! `llm` steps end to end: a local OpenAI-compatible server started by the
//! test on 127.0.0.1 answers from a script, and a plan-and-patch flow of
//! `llm` steps (tests/fixtures/llm/plan_patch.flow) runs against it. Also: error classes, spend caps, the command and fake
//! providers, and `--replay-llm`.
#![allow(clippy::unwrap_used)]

mod common;

use common::flowc_env as flowc;

use common::model_server::{Answer, chat, serve};
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

const KEY: &str = "sk-test-key-5f1c9a";

fn workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")
}

/// A fresh copy of the agent_fix sample project.
fn sample(dir: &Path) -> PathBuf {
    let repo = dir.join("calc");
    std::fs::create_dir_all(&repo).unwrap();
    for f in ["calc.sh", "test.sh"] {
        std::fs::copy(workflows().join("agent_fix").join(f), repo.join(f)).unwrap();
    }
    repo
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn latest_run(dir: &Path) -> String {
    let journal = flowc::journal::Journal::open_existing(&dir.join(".flowc/journal.db")).unwrap();
    journal.runs().unwrap()[0].id.clone()
}

fn status_json(dir: &Path, run: &str) -> Json {
    let out = flowc(dir, &["status", run, "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

const GOOD_PLAN: &str = r#"{"summary": "make add add", "files": ["calc.sh"], "risk": "low"}"#;
const WRONG_CALC: &str =
    "#!/bin/sh\ncase \"$1\" in\n  add) echo $(($2 + $3)) ;;\n  mul) echo $(($2 + $3)) ;;\nesac\n";
const RIGHT_CALC: &str =
    "#!/bin/sh\ncase \"$1\" in\n  add) echo $(($2 + $3)) ;;\n  mul) echo $(($2 * $3)) ;;\nesac\n";

fn edit(content: &str) -> String {
    json!({ "path": "calc.sh", "content": content }).to_string()
}

#[test]
fn plan_and_patch_runs_end_to_end_against_a_local_openai_server() {
    let (url, seen) = serve(vec![
        // The plan: not JSON at first, then a valid Plan.
        chat("Sure! The plan is to fix add.", 100, 10),
        chat(GOOD_PLAN, 120, 20),
        // The patch: one that fails the test, then the right one.
        chat(&edit(WRONG_CALC), 300, 50),
        chat(&edit(RIGHT_CALC), 320, 60),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let repo = sample(dir.path());
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm/plan_patch.flow");
    let env = [
        ("FLOWC_LLM_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", url.as_str()),
        ("OPENAI_API_KEY", KEY),
    ];
    let out = flowc(
        dir.path(),
        &[
            "run",
            flow.to_str().unwrap(),
            "-i",
            &format!("repo={}", repo.display()),
        ],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let output: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["passed"], true);
    assert_eq!(
        std::fs::read_to_string(repo.join("calc.sh")).unwrap(),
        RIGHT_CALC
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for s in &seen {
        assert!(
            s.head.starts_with("post /v1/chat/completions "),
            "{}",
            s.head
        );
        assert!(s.head.contains(&format!(
            "authorization: bearer {}",
            KEY.to_ascii_lowercase()
        )));
        assert_eq!(s.body["model"], "gpt-4o-mini");
        // structured_output: the schema travels with the request.
        assert_eq!(s.body["response_format"]["type"], "json_schema");
    }
    assert_eq!(
        seen[0].body["response_format"]["json_schema"]["schema"]["properties"]["risk"]["enum"],
        json!(["low", "medium", "high"])
    );
    // The first prompt carries no feedback; the re-prompt carries the parse error.
    assert!(!seen[0].user().contains("not accepted"));
    assert!(
        seen[1]
            .user()
            .contains("Your previous reply was not accepted"),
        "{}",
        seen[1].user()
    );
    assert!(
        seen[1].user().contains("not valid JSON"),
        "{}",
        seen[1].user()
    );
    // The second patch is asked with the failing test's output (the loop's feedback).
    assert!(!seen[2].user().contains("did not make the test pass"));
    assert!(
        seen[3]
            .user()
            .contains("FAIL: calc.sh mul 2 3 printed 5, expected 6"),
        "{}",
        seen[3].user()
    );

    // Tokens and cost are summed per model: prices 0.15 / 0.60 per million.
    let run = latest_run(dir.path());
    let status = status_json(dir.path(), &run);
    let usage = &status["llm_usage"][0];
    assert_eq!(usage["model"], "coder");
    assert_eq!(usage["calls"], 4);
    assert_eq!(usage["tokens_in"], 840);
    assert_eq!(usage["tokens_out"], 140);
    let cost = usage["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (840.0 * 0.15 + 140.0 * 0.60) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert!(stderr(&out).contains("model coder: 4 calls, 840 tokens in, 140 out"));

    // The key never reaches the journal; every exchange does.
    let db = std::fs::read(dir.path().join(".flowc/journal.db")).unwrap();
    let wal = std::fs::read(dir.path().join(".flowc/journal.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
    }
    let replay = flowc(dir.path(), &["replay", &run], &[]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let log = flowc(dir.path(), &["log", &run, "plan"], &[]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("Sure! The plan is to fix add."), "{log}");

    // Replaying the recording needs no server: the same answers, by step and attempt.
    let again = tempfile::tempdir().unwrap();
    let repo2 = sample(again.path());
    std::fs::create_dir_all(again.path().join(".flowc")).unwrap();
    let journal = dir.path().join(".flowc/journal.db");
    // Run from the second checkout: the built-in sandbox lets steps write only
    // beneath the directory flowc starts in and /tmp (`writable: [".", "/tmp"]`).
    let out = flowc(
        again.path(),
        &[
            "run",
            flow.to_str().unwrap(),
            "-i",
            &format!("repo={}", repo2.display()),
            "--replay-llm",
            &run,
        ],
        &[
            ("FLOWC_LLM_PROVIDER", "openai"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
            ("OPENAI_API_KEY", KEY),
            ("FLOWC_JOURNAL", journal.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<Json>(&out.stdout).unwrap()["passed"],
        true
    );
    assert_eq!(
        std::fs::read_to_string(repo2.join("calc.sh")).unwrap(),
        RIGHT_CALC
    );
}

fn one_step_flow(dir: &Path, model: &str, step: &str, policy: &str) -> PathBuf {
    let text = format!(
        "type Answer {{ n: int }}\n\
         model m {{\n{model}\n}}\n\
         policy p {{\n{policy}\n}}\n\
         skill main() {{\n  policy: p\n{step}\n}}\n"
    );
    let path = dir.join("one.flow");
    std::fs::write(&path, text).unwrap();
    path
}

const OPENAI_MODEL: &str = "provider: \"openai\"\nname: \"m-1\"\nbase_url: env(\"OPENAI_BASE_URL\")\napi_key: secret(\"OPENAI_API_KEY\")";

#[test]
fn a_429_is_retried_after_its_retry_after_and_a_401_fails_at_once() {
    let (url, seen) = serve(vec![
        Answer(
            429,
            vec![("retry-after", "1".into())],
            r#"{"error":{"message":"slow down"}}"#.into(),
        ),
        chat(r#"{"n": 7}"#, 5, 5),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let flow = one_step_flow(
        dir.path(),
        OPENAI_MODEL,
        "step s: llm { model: m, prompt: \"n?\", output: Answer, attempts: 3 }\n  return s.output.n",
        "max_attempts: 3",
    );
    let env = [("OPENAI_BASE_URL", url.as_str()), ("OPENAI_API_KEY", KEY)];
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at.duration_since(seen[0].at);
    assert!(waited.as_millis() >= 950, "retried after {waited:?}");
    // A transient error is not feedback: the second prompt is the first one.
    assert_eq!(seen[0].user(), seen[1].user());

    let (url, seen) = serve(vec![Answer(
        401,
        vec![],
        format!(r#"{{"error":{{"message":"Incorrect API key provided: {KEY}"}}}}"#),
    )]);
    let env = [("OPENAI_BASE_URL", url.as_str()), ("OPENAI_API_KEY", KEY)];
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(seen.lock().unwrap().len(), 1, "a 401 must not be retried");
    let err = stderr(&out);
    assert!(err.contains("model `m` (openai `m-1`"), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(!err.contains(KEY), "{err}");

    // No key in the environment: a clear error, and nothing is sent.
    let (url, seen) = serve(vec![]);
    let out = flowc(
        dir.path(),
        &["run", flow.to_str().unwrap()],
        &[("OPENAI_BASE_URL", url.as_str())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`OPENAI_API_KEY` is not set"),
        "{}",
        stderr(&out)
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn spend_caps_refuse_a_call_before_it_is_made() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "- json: { n: 1 }\n  tokens_in: 600\n  tokens_out: 300\n- json: { n: 2 }\n",
    )
    .unwrap();
    let model = "provider: \"fake\"\nscript: \"a.yaml\"\nmax_tokens: 200\ninput_price: 1000.0\noutput_price: 1000.0";
    let steps = "step a: llm { model: m, prompt: \"first\", output: Answer }\n  \
                 step b: llm { model: m, prompt: \"second {{ a.output.n }}\", output: Answer }";
    // Cost: the first call costs $0.90; the second, with its prompt and a
    // reply of up to 200 tokens, would pass $1.
    let flow = one_step_flow(dir.path(), model, steps, "max_cost_usd: 1.0");
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cap `max_cost_usd` (1) of policy `p` would be exceeded"),
        "{err}"
    );
    let run = latest_run(dir.path());
    let status = status_json(dir.path(), &run);
    assert_eq!(
        status["llm_usage"][0]["calls"], 1,
        "the refused call was not made"
    );
    assert_eq!(status["violations"][0]["rule"], "max_cost_usd");
    assert_eq!(status["violations"][0]["node"], "b");
    let b = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["key"] == "b")
        .unwrap();
    assert_eq!(b["status"], "failed");
    assert!(b["error"].as_str().unwrap().contains("max_cost_usd"));

    // Tokens: 900 used, the next call's prompt and reply limit would pass 1,000.
    let model = "provider: \"fake\"\nscript: \"a.yaml\"\nmax_tokens: 200";
    let flow = one_step_flow(dir.path(), model, steps, "max_tokens: 1_000");
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cap `max_tokens` (1000) of policy `p` would be exceeded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn command_provider_takes_the_prompt_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // The "agent" reads the prompt and answers with its length as JSON.
    let model = "provider: \"command\"\ncommand: \"printf '{\\\"n\\\": %s}' $(wc -c | tr -d ' ')\"";
    let flow = one_step_flow(
        dir.path(),
        model,
        "step s: llm { model: m, prompt: \"12345\", output: Answer }\n  return s.output.n",
        "max_attempts: 2",
    );
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");
    // It ran in the sandbox of a `run` step, recorded with the call.
    let journal =
        flowc::journal::Journal::open_existing(&dir.path().join(".flowc/journal.db")).unwrap();
    let run = journal.runs().unwrap()[0].id.clone();
    let calls = journal.events_of(&run, Some("llm_call")).unwrap();
    let layers = calls[0].data["request"]["sandbox"]["layers"]
        .as_array()
        .unwrap();
    assert!(layers.iter().any(|l| l == "process_group"), "{layers:?}");
    assert_eq!(calls[0].data["source"], "command");
}

#[test]
fn fake_provider_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "- txt: oops\n").unwrap();
    let flow = one_step_flow(
        dir.path(),
        "provider: \"fake\"\nscript: \"a.yaml\"",
        "step s: llm { model: m, prompt: \"x\", attempts: 3 }",
        "max_attempts: 3",
    );
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("answers file"), "{}", stderr(&out));
    // Bad provider name in the environment: refused before anything runs.
    let flow = dir.path().join("env.flow");
    std::fs::write(
        &flow,
        "model m { provider: env(\"PICK\", \"fake\"), script: \"a.yaml\" }\n\
         skill main() { step s: llm { model: m, prompt: \"x\" } }\n",
    )
    .unwrap();
    let out = flowc(
        dir.path(),
        &["run", flow.to_str().unwrap()],
        &[("PICK", "gpt")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`PICK` is `gpt`, which is not a provider"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn anthropic_provider_speaks_the_messages_api() {
    let body = json!({
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{ "type": "text", "text": "{\"n\": 42}" }],
        "usage": { "input_tokens": 11, "output_tokens": 4 },
    });
    let (url, seen) = serve(vec![Answer(200, vec![], body.to_string())]);
    let dir = tempfile::tempdir().unwrap();
    let model = "provider: \"anthropic\"\nname: \"claude-x\"\nbase_url: env(\"ANTHROPIC_URL\")\napi_key: secret(\"ANTHROPIC_API_KEY\")";
    let flow = one_step_flow(
        dir.path(),
        model,
        "step s: llm { model: m, system: \"terse\", prompt: \"n?\", output: Answer }\n  return s.output.n + s.tokens_in",
        "max_attempts: 2",
    );
    // The server's URL without the /v1 the OpenAI helper adds: Anthropic's base has none.
    let base = url.trim_end_matches("/v1").to_string();
    let out = flowc(
        dir.path(),
        &["run", flow.to_str().unwrap()],
        &[("ANTHROPIC_URL", base.as_str()), ("ANTHROPIC_API_KEY", KEY)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "53");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen[0].head.starts_with("post /v1/messages "),
        "{}",
        seen[0].head
    );
    assert!(
        seen[0]
            .head
            .contains(&format!("x-api-key: {}", KEY.to_ascii_lowercase()))
    );
    assert!(seen[0].head.contains("anthropic-version: 2023-06-01"));
    assert!(
        seen[0].body["system"]
            .as_str()
            .unwrap()
            .starts_with("terse")
    );
    assert_eq!(seen[0].body["model"], "claude-x");
    assert!(seen[0].body["max_tokens"].as_u64().is_some());
}

#[test]
fn rate_limit_delays_the_next_call_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "- json: { n: 1 }\n- json: { n: 2 }\n",
    )
    .unwrap();
    let model = "provider: \"fake\"\nscript: \"a.yaml\"\nrate_limit { requests_per_minute: 1 }";
    let steps = "step a: llm { model: m, prompt: \"first\", output: Answer }\n  \
                 step b: llm { model: m, prompt: \"second\", output: Answer }";
    // The second call may start a minute after the first: the run's 2 s cap stops it first.
    let flow = one_step_flow(
        dir.path(),
        model,
        steps,
        "run_timeout: 2s\nstep_timeout: 2s",
    );
    let started = Instant::now();
    let out = flowc(dir.path(), &["run", flow.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed().as_millis() >= 1900);
    let err = stderr(&out);
    assert!(err.contains("for the rate limit of model `m`"), "{err}");
    assert!(err.contains("run_timeout"), "{err}");
    let run = latest_run(dir.path());
    assert_eq!(status_json(dir.path(), &run)["llm_usage"][0]["calls"], 1);
}
