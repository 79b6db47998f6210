//! An agent drives a real MCP server nobody here wrote: `mcp-server-git` from
//! PyPI (installed by `.ci/deps` into target/mcp-venv), over a throw-away git
//! repository. The model is the fake provider's script, so the calls are known;
//! the server, its tool list, schemas and answers are real.
#![allow(clippy::unwrap_used)]

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");

fn server() -> PathBuf {
    let path = std::env::var_os("FLOWC_TEST_MCP_GIT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-venv/bin/mcp-server-git"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `.ci/deps` (it installs mcp-server-git from PyPI)",
        path.display()
    );
    path
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=Test"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flow(dir: &Path, repo: &Path) -> PathBuf {
    let answers = format!(
        r#"
- step: look
  tool_calls: [{{ name: git_status, args: {{ repo_path: "{repo}" }} }}]
- step: look
  tool_calls:
    - {{ name: git_diff_unstaged, args: {{ repo_path: "{repo}" }} }}
    - {{ name: git_log, args: {{ repo_path: "{repo}", max_count: 5 }} }}
- step: look
  tool_calls:
    - {{ name: git_add, args: {{ repo_path: "{repo}", files: ["a.txt"] }} }}
    - {{ name: git_log, args: {{ repo_path: 7 }} }}
- step: look
  text: "a.txt has one unstaged line"
"#,
        repo = repo.display()
    );
    std::fs::write(dir.join("answers.yaml"), answers).unwrap();
    let text = format!(
        r#"
model m {{ provider: "fake", script: "answers.yaml" }}

mcp git {{
  argv: ["{server}", "--repository", "{{{{ repo }}}}"]
  allow: ["git_status", "git_diff_unstaged", "git_log"]
  effects: {{ git_status: "read", git_diff_unstaged: "read", git_log: "read" }}
}}

skill main(repo: path) -> string {{
  step look: agent {{
    model: m
    prompt: "What changed in {{{{ repo }}}}?"
    tools: [git]
  }}
  return look.text
}}
"#,
        server = server().display()
    );
    let path = dir.join("git.flow");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_agent_lists_diffs_and_logs_a_repository_through_mcp_server_git() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "hello\n").unwrap();
    git(&repo, &["add", "a.txt"]);
    git(&repo, &["commit", "-qm", "the first commit"]);
    std::fs::write(repo.join("a.txt"), "hello\nan unstaged line\n").unwrap();

    let flow = flow(dir.path(), &repo);
    let out = Command::new(BIN)
        .args(["run", flow.to_str().unwrap(), "-i"])
        .arg(format!("repo={}", repo.display()))
        .current_dir(dir.path())
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        serde_json::from_slice::<Json>(&out.stdout).unwrap(),
        "a.txt has one unstaged line"
    );

    let journal =
        flowc::journal::Journal::open_existing(&dir.path().join(".flowc/journal.db")).unwrap();
    let run = journal.runs().unwrap()[0].id.clone();
    let finished: Vec<Json> = journal
        .events_of(&run, Some("tool_call_finished"))
        .unwrap()
        .into_iter()
        .map(|e| e.data)
        .collect();
    let result = |i: usize| {
        finished[i]["result"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(finished.len(), 5);
    assert!(result(0).contains("a.txt"), "status: {}", result(0));
    assert!(
        result(1).contains("+an unstaged line"),
        "diff: {}",
        result(1)
    );
    assert!(result(2).contains("the first commit"), "log: {}", result(2));
    // A tool the server has but `allow` does not name is not offered, and its call is refused.
    assert_eq!(finished[3]["is_error"], true);
    assert!(
        result(3).contains("there is no tool `git_add`"),
        "{}",
        result(3)
    );
    // Arguments are checked against the server's schema before anything is sent.
    assert_eq!(finished[4]["invalid"], true);
    assert!(
        result(4).contains("repo_path must be string"),
        "{}",
        result(4)
    );
    // Nothing was staged.
    assert_eq!(git(&repo, &["diff", "--cached", "--name-only"]), "");
    // The model was told the server's tools, with the server's schemas, and only those allowed.
    let first = &journal.events_of(&run, Some("llm_call")).unwrap()[0].data;
    let tools: Vec<&str> = first["request"]["body"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(tools, ["git_status", "git_diff_unstaged", "git_log"]);
    assert_eq!(
        first["request"]["body"]["tools"][0]["function"]["parameters"]["required"][0],
        "repo_path"
    );
}
