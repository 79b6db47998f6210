//! The prediction on small programs: loops, calls, journals without definitions, instance keys.

use super::*;

const FLOW: &str = r#"
skill helper(x: string) -> string {
  step inner: run { command: "echo {{ x }}" }
  return inner.stdout
}
skill main() {
  step a: run { command: "echo a" }
  loop rounds {
    max: 2
    step fix: run { command: "echo {{ a.stdout }}" }
  }
  step sub: call helper { with { x: a.stdout } }
  step tail: run {
    command: "echo done"
    after: [rounds]
  }
}
"#;

fn program(text: &str) -> Program {
    let out = crate::check::check_text("t.flow", text);
    out.files[0].program.clone().unwrap_or_default()
}

fn row(key: &str, status: &str) -> NodeRow {
    NodeRow {
        key: key.into(),
        name: key.rsplit('/').next().unwrap_or(key).into(),
        kind: "run".into(),
        status: status.into(),
        attempt: 1,
        input_hash: None,
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        feedback: None,
        data: None,
    }
}

/// The definition hashes `program` gives each instance of `rows`, as a run of it would journal.
fn journaled_with(program: &Program, rows: &[NodeRow]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for r in rows {
        for skill in program.skills.values() {
            if let Some(NodeKind::Step(step)) = skill
                .nodes
                .iter()
                .find(|n| n.name == r.name)
                .map(|n| &n.kind)
            {
                out.insert(r.key.clone(), definition_hash(step));
            }
        }
    }
    out
}

fn fates_of(
    program: &Program,
    rows: &[NodeRow],
    defs: &HashMap<String, String>,
) -> Vec<(String, Fate, String)> {
    fates_asked(program, rows, defs, &[])
}

fn fates_asked(
    program: &Program,
    rows: &[NodeRow],
    defs: &HashMap<String, String>,
    approvals: &[ApprovalRow],
) -> Vec<(String, Fate, String)> {
    let run = RunRow {
        id: "r1".into(),
        skill: "main".into(),
        file: "t.flow".into(),
        inputs: serde_json::Value::Null,
        status: "interrupted".into(),
        started_at: 0,
        updated_at: 0,
        finished_at: None,
        output: None,
        error: None,
    };
    let j = Journaled {
        run: &run,
        nodes: rows,
        definitions: defs,
        approvals,
    };
    let p = predict(program, &j).unwrap_or_else(|| panic!("no skill `main`"));
    p.steps
        .into_iter()
        .map(|s| (s.key, s.fate, s.reason))
        .collect()
}

fn rows() -> Vec<NodeRow> {
    vec![
        row("a", "succeeded"),
        row("rounds", "succeeded"),
        row("rounds#1/fix", "succeeded"),
        row("sub", "succeeded"),
        row("sub/inner", "succeeded"),
        row("tail", "running"),
    ]
}

#[test]
fn an_edit_upstream_of_a_loop_redoes_the_loop_and_its_steps() {
    let before = program(FLOW);
    let rows = rows();
    let defs = journaled_with(&before, &rows);
    let after = program(&FLOW.replace("echo a\"", "echo b\""));
    let fates = fates_of(&after, &rows, &defs);
    let want = [
        ("a", Fate::Redo, "its definition changed"),
        ("rounds", Fate::Redo, "upstream `a` runs again"),
        (
            "rounds#1/fix",
            Fate::Redo,
            "block `rounds` runs again after upstream `a`",
        ),
        ("sub", Fate::Redo, "upstream `a` runs again"),
        (
            "sub/inner",
            Fate::Redo,
            "`sub` runs again with arguments that may differ",
        ),
        ("tail", Fate::Redo, "it had not finished (it was running)"),
    ];
    let want: Vec<(String, Fate, String)> = want
        .iter()
        .map(|(k, f, r)| (k.to_string(), *f, r.to_string()))
        .collect();
    assert_eq!(fates, want);
}

#[test]
fn inside_a_reused_call_nothing_runs() {
    let p = program(FLOW);
    let rows = rows();
    let defs = journaled_with(&p, &rows);
    let fates = fates_of(&p, &rows, &defs);
    assert!(
        fates[..5].iter().all(|(_, f, _)| *f == Fate::Reused),
        "{fates:?}"
    );
    assert_eq!(fates[4].2, "`sub` is reused, so nothing inside it runs");
}

#[test]
fn a_journal_without_definitions_cannot_tell() {
    let p = program(FLOW);
    let fates = fates_of(&p, &rows(), &HashMap::new());
    assert_eq!(
        (fates[0].1, fates[0].2.as_str()),
        (
            Fate::Unknown,
            "unknown: journaled before definitions were recorded"
        )
    );
    assert_eq!(fates[1].2, "upstream `a` may run again");
}

#[test]
fn owner_keys() {
    assert_eq!(owner_key("build"), None);
    assert_eq!(owner_key("rounds#2/fix").as_deref(), Some("rounds"));
    assert_eq!(owner_key("files[3]/lint").as_deref(), Some("files"));
    assert_eq!(owner_key("deploy@2/push").as_deref(), Some("deploy"));
    assert_eq!(
        owner_key("rounds#2/deploy/push").as_deref(),
        Some("rounds#2/deploy")
    );
}

fn asked(node: &str, kind: &str) -> ApprovalRow {
    ApprovalRow {
        run_id: "r1".into(),
        node: node.into(),
        kind: kind.into(),
        prompt: String::new(),
        input_hash: String::new(),
        status: "pending".into(),
        requested_at: 0,
        decided_by: None,
        comment: None,
        output: None,
    }
}

#[test]
fn an_edited_question_is_asked_again_and_an_edited_escalation_runs_again() {
    let flow = r#"
skill main() {
  step a: run { command: "exit 1", on_failure: escalate }
  step gate: approval { prompt: "Ship?" }
}
"#;
    let rows = vec![row("a", "waiting"), row("gate", "waiting")];
    let approvals = [asked("a", "escalation"), asked("gate", "approval")];
    let defs = journaled_with(&program(flow), &rows);
    let same = fates_asked(&program(flow), &rows, &defs, &approvals);
    assert!(same.iter().all(|(_, f, _)| *f == Fate::Waiting), "{same:?}");
    let edited = flow
        .replace("exit 1", "exit 0")
        .replace("Ship?", "Ship now?");
    let fates = fates_asked(&program(&edited), &rows, &defs, &approvals);
    assert_eq!(
        fates[0].2,
        "its definition changed, so it runs again instead of asking"
    );
    assert_eq!(
        fates[1].2,
        "its definition changed, so the person is asked again"
    );
}

#[test]
fn a_write_that_runs_again_says_it_wrote_once_already() {
    let flow = r#"
skill main() {
  step push: run { command: "./push.sh v1", effect: "write" }
}
"#;
    let rows = vec![row("push", "succeeded")];
    let defs = journaled_with(&program(flow), &rows);
    let fates = fates_of(&program(&flow.replace("v1", "v2")), &rows, &defs);
    assert_eq!(
        fates[0].2,
        "its definition changed; it has `effect: \"write\"` and wrote once already"
    );
}
