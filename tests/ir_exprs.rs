//! Compiled expressions in the IR evaluate with a plain rhai engine.
#![allow(clippy::unwrap_used)]

use flowc::check::check_text;
use flowc::ir::NodeKind;

#[test]
fn accept_expressions_evaluate() {
    let out = check_text(
        "t.flow",
        "skill main() {\n  step a: run { command: \"echo\" }\n  step b: run { command: \"echo\", accept: exit_code == 0 && a.stdout != \"\" }\n}\n",
    );
    assert_eq!(out.diagnostics.len(), 0, "{:?}", out.diagnostics);
    let program = out.files[0].program.clone().unwrap();
    let skill = program.entry_skill(None).unwrap();
    let NodeKind::Step(step) = &skill.nodes[1].kind else {
        panic!("not a step")
    };
    let accept = &step.accept[0];
    assert_eq!(accept.source, "exit_code == 0 && a.stdout != \"\"");
    let engine = rhai::Engine::new_raw();
    for (code, stdout, want) in [(0, "x", true), (1, "x", false), (0, "", false)] {
        let mut a = rhai::Map::new();
        a.insert("stdout".into(), stdout.into());
        let mut scope = rhai::Scope::new();
        scope.push("v_exit_code", code as i64);
        scope.push("v_a", a);
        let got: bool = engine.eval_ast_with_scope(&mut scope, &accept.ast).unwrap();
        assert_eq!(got, want, "exit_code {code}, stdout {stdout:?}");
    }
}
