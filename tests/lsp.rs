//! `flowc lsp` driven over stdio with JSON-RPC, as an editor would.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    /// Notifications read while waiting for something else.
    seen: Vec<Value>,
}

fn read_message(r: &mut impl BufRead) -> Option<Value> {
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("Content-Length: ") {
            len = n.parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            while let Some(msg) = read_message(&mut r) {
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        let mut c = Client {
            child,
            stdin,
            rx,
            next_id: 1,
            seen: Vec::new(),
        };
        let caps = c.request(
            "initialize",
            json!({ "capabilities": {}, "processId": null, "rootUri": null }),
        );
        assert!(caps["capabilities"]["hoverProvider"].as_bool().unwrap());
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let msg = self.request_raw(method, params);
        assert!(msg.get("error").is_none(), "{msg}");
        msg["result"].clone()
    }

    /// The whole response, error included.
    fn request_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let msg = self
                .rx
                .recv_timeout(Duration::from_secs(30))
                .expect("no answer");
            if msg["id"] == json!(id) {
                return msg;
            }
            self.seen.push(msg);
        }
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Value {
        if let Some(i) = self.seen.iter().position(|m| is_publish(m, uri)) {
            return self.seen.remove(i)["params"].clone();
        }
        loop {
            let msg = self
                .rx
                .recv_timeout(Duration::from_secs(30))
                .expect("no diagnostics");
            if is_publish(&msg, uri) {
                return msg["params"].clone();
            }
            self.seen.push(msg);
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        let doc = json!({ "uri": uri, "languageId": "flow", "version": 1, "text": text });
        self.notify("textDocument/didOpen", json!({ "textDocument": doc }));
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) {
        let params = json!({
            "textDocument": { "uri": uri, "version": version },
            "contentChanges": [{ "text": text }],
        });
        self.notify("textDocument/didChange", params);
    }

    fn at(&mut self, method: &str, uri: &str, line: u32, character: u32) -> Value {
        let params = json!({ "textDocument": { "uri": uri }, "position": { "line": line, "character": character } });
        self.request(method, params)
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                return;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn is_publish(msg: &Value, uri: &str) -> bool {
    msg["method"] == "textDocument/publishDiagnostics" && msg["params"]["uri"] == uri
}

fn uri_of(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

const FLOW: &str = r#"skill main(name: string = "x") {
  step plan: run { command: "echo {{ name }}" }
  step use: run {
    # é😀 multi-byte text before the span
    command: "é😀 {{ plam.stdout }}"
  }
}
"#;

#[test]
fn a_misspelled_step_is_reported_with_its_help_and_utf16_columns() {
    let dir = tempfile::tempdir().unwrap();
    let uri = uri_of(&dir.path().join("a.flow"));
    let mut c = Client::start();
    c.open(&uri, FLOW);
    let params = c.diagnostics(&uri);
    let diags = params["diagnostics"].as_array().unwrap();
    let d = diags
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("plam"))
        .unwrap();
    assert!(d["code"].as_str().unwrap().starts_with("E0"), "{d}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `plan`"),
        "{d}"
    );
    assert_eq!(d["source"], "flowc");
    // Line 4 is `    command: "é😀 {{ plam.stdout }}"`: `é` is one UTF-16 unit, `😀` two.
    let line = FLOW.lines().nth(4).unwrap();
    let byte = line.find("plam").unwrap();
    let units = line[..byte].encode_utf16().count() as u64;
    assert_eq!(
        d["range"]["start"],
        json!({ "line": 4, "character": units })
    );
    assert_ne!(units as usize, byte);
    assert_eq!(params["version"], 1);
    c.stop();
}

#[test]
fn definition_hover_completion_symbols_and_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let text = "skill main(name: string = \"x\") {\n  step plan: run { command: \"echo {{ name }}\" }\n  step use: run {\n    command: \"{{ plan.stdout }}\"\n    \n  }\n  return plan.exit_code\n}\n";
    let uri = uri_of(&dir.path().join("b.flow"));
    let mut c = Client::start();
    c.open(&uri, text);
    let diags = c.diagnostics(&uri);
    assert_eq!(diags["diagnostics"], json!([]), "{diags}");

    // `plan` in `return plan.exit_code` goes to the step's name.
    let def = c.at("textDocument/definition", &uri, 6, 10);
    assert_eq!(def["uri"], uri);
    assert_eq!(def["range"]["start"], json!({ "line": 1, "character": 7 }));

    let hover = c.at("textDocument/hover", &uri, 6, 10);
    let value = hover["contents"]["value"].as_str().unwrap();
    assert!(
        value.contains("step `plan`: `run`") && value.contains("exit_code: int"),
        "{value}"
    );
    let hover = c.at("textDocument/hover", &uri, 6, 16);
    assert_eq!(hover["contents"]["value"], "`exit_code`: `int`");

    // In the body of `use`, on the empty line: the fields of a `run` step it lacks.
    let items = c.at("textDocument/completion", &uri, 4, 4);
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"stdin") && labels.contains(&"accept"),
        "{labels:?}"
    );
    assert!(!labels.contains(&"command"), "{labels:?}");
    // Not in a field's value: the line inside a multi-line string.
    let text2 = "skill main() {\n  step s: llm {\n    prompt: \"\"\"\n      \n    \"\"\"\n  }\n}\n";
    let uri2 = uri.replace("b.flow", "b2.flow");
    c.open(&uri2, text2);
    let items = c.at("textDocument/completion", &uri2, 3, 6);
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert!(!labels.contains(&"model"), "{labels:?}");
    // After `plan.`: the members of its result.
    let items = c.at("textDocument/completion", &uri, 6, 14);
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"stdout") && labels.contains(&"exit_code"),
        "{labels:?}"
    );

    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert_eq!(symbols[0]["name"], "main");
    assert_eq!(symbols[0]["children"][0]["name"], "plan: run");

    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    let formatted = edits[0]["newText"].as_str().unwrap();
    assert!(
        formatted.contains("    command: \"{{ plan.stdout }}\"\n  }\n"),
        "{formatted}"
    );
    c.stop();
}

#[test]
fn models_policies_and_imported_items() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("lib.flow"),
        "# the library\nskill helper() -> int {\n  return 1\n}\n",
    )
    .unwrap();
    let text = "import \"./lib.flow\"\n\nmodel coder { provider: \"fake\", name: \"m1\", max_tokens: 100, script: \"a.yaml\" }\n\npolicy base { max_attempts: 2, step_timeout: 5m }\npolicy mine: base { max_parallel: 3 }\n\nskill main() {\n  policy: mine\n  step a: llm { model: coder, prompt: \"hi\" }\n  step b: call lib.helper {}\n  return { t: a.text, h: b }\n}\n";
    let uri = uri_of(&dir.path().join("main.flow"));
    let mut c = Client::start();
    c.open(&uri, text);
    let diags = c.diagnostics(&uri);
    assert_eq!(diags["diagnostics"], json!([]), "{diags}");
    // `coder` in `model: coder`.
    let hover = c.at("textDocument/hover", &uri, 9, 25);
    let value = hover["contents"]["value"].as_str().unwrap();
    assert!(
        value.contains("provider: `fake`") && value.contains("name: `m1`"),
        "{value}"
    );
    // `mine` in `policy: mine`: the caps it inherits from `base`.
    let hover = c.at("textDocument/hover", &uri, 8, 12);
    let value = hover["contents"]["value"].as_str().unwrap();
    assert!(
        value.contains("max_attempts: 2") && value.contains("max_parallel: 3"),
        "{value}"
    );
    assert!(value.contains("step_timeout: 5m"), "{value}");
    // `helper` in `lib.helper`: into the imported file.
    let def = c.at("textDocument/definition", &uri, 10, 25);
    assert!(def["uri"].as_str().unwrap().ends_with("/lib.flow"), "{def}");
    assert_eq!(def["range"]["start"], json!({ "line": 1, "character": 6 }));
    // `lib` itself: the import.
    let def = c.at("textDocument/definition", &uri, 10, 16);
    assert_eq!(def["range"]["start"], json!({ "line": 0, "character": 7 }));
    c.stop();
}

#[test]
fn editing_an_open_import_rechecks_the_file_that_imports_it() {
    let dir = tempfile::tempdir().unwrap();
    let lib = "skill helper() -> int {\n  return 1\n}\n";
    std::fs::write(dir.path().join("lib.flow"), lib).unwrap();
    let main =
        "import \"./lib.flow\"\n\nskill main() {\n  step b: call lib.helper {}\n  return b\n}\n";
    let (lib_uri, main_uri) = (
        uri_of(&dir.path().join("lib.flow")),
        uri_of(&dir.path().join("main.flow")),
    );
    let mut c = Client::start();
    c.open(&lib_uri, lib);
    c.open(&main_uri, main);
    assert_eq!(c.diagnostics(&main_uri)["diagnostics"], json!([]));
    // The unsaved text of the open import is what the importer sees.
    c.change(&lib_uri, 2, &lib.replace("helper", "helped"));
    let params = c.diagnostics(&main_uri);
    let text = params["diagnostics"].to_string();
    assert!(
        text.contains("helper") && text.contains("helped"),
        "{params}"
    );
    c.stop();
}

#[test]
fn rapid_and_stale_changes_publish_the_newest_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let uri = uri_of(&dir.path().join("c.flow"));
    let mut c = Client::start();
    c.open(&uri, FLOW);
    assert_eq!(c.diagnostics(&uri)["version"], 1);
    let good = FLOW.replace("plam", "plan");
    for v in 2..40 {
        c.change(&uri, v, if v % 2 == 0 { FLOW } else { &good });
    }
    c.change(&uri, 40, &good);
    // Out of order: an older version arrives after the newest one.
    c.change(&uri, 39, FLOW);
    let params = c.diagnostics(&uri);
    assert_eq!(params["version"], 40, "{params}");
    assert_eq!(params["diagnostics"], json!([]), "{params}");
    // Nothing else was published for the burst.
    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert_eq!(symbols[0]["name"], "main");
    std::thread::sleep(Duration::from_millis(400));
    c.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    assert!(!c.seen.iter().any(|m| is_publish(m, &uri)), "{:?}", c.seen);
    c.stop();
}

#[test]
fn garbage_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let uri = uri_of(&dir.path().join("d.flow"));
    let mut c = Client::start();
    c.open(&uri, "skill { step ( \"\"\" é");
    let params = c.diagnostics(&uri);
    assert!(!params["diagnostics"].as_array().unwrap().is_empty());
    for (line, ch) in [(0, 0), (0, 3), (0, 999), (99, 0)] {
        c.at("textDocument/hover", &uri, line, ch);
        c.at("textDocument/completion", &uri, line, ch);
        c.at("textDocument/definition", &uri, line, ch);
    }
    let edits = c.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": uri }, "options": { "tabSize": 2, "insertSpaces": true } }),
    );
    assert_eq!(edits, Value::Null);
    let unknown = c.request_raw("textDocument/rename", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    c.stop();
}

#[test]
fn an_mcp_tool_in_an_agents_tools_jumps_to_its_allow_entry() {
    let dir = tempfile::tempdir().unwrap();
    let text = "mcp git {\n  command: \"mcp-server-git\"\n  allow: [\"git_status\", \"git_log\"]\n}\n\nmodel m { provider: \"fake\", script: \"a.yaml\" }\n\nskill main() -> string {\n  step s: agent { model: m, prompt: \"go\", tools: [git.git_log] }\n  return s.text\n}\n";
    std::fs::write(dir.path().join("main.flow"), text).unwrap();
    let uri = uri_of(&dir.path().join("main.flow"));
    let mut c = Client::start();
    c.open(&uri, text);
    let diags = c.diagnostics(&uri);
    assert_eq!(diags["diagnostics"], json!([]), "{diags}");
    // `git_log` in `tools: [git.git_log]` (line 8): its entry in `allow` (line 2).
    let col = text.lines().nth(8).unwrap().find("git_log").unwrap() as u32;
    let def = c.at("textDocument/definition", &uri, 8, col + 2);
    assert_eq!(
        def["range"]["start"],
        json!({ "line": 2, "character": 24 }),
        "{def}"
    );
    let hover = c.at("textDocument/hover", &uri, 8, col + 2);
    let value = hover["contents"]["value"].as_str().unwrap();
    assert!(
        value.contains("tool `git_log` of `mcp` server `git` (allowed)"),
        "{value}"
    );
    c.stop();
}
