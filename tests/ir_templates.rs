//! The IR's template environment renders every template of a skill by name.
#![allow(clippy::unwrap_used)]

use flowc::check::check_text;
use flowc::ir::{Command, NodeKind, StepKind, Value};

#[test]
fn templates_render_from_the_ir_environment() {
    let out = check_text(
        "t.flow",
        "skill main(who: string) {\n  step a: run { command: \"echo {{ who }}\" }\n  step b: run { command: \"echo {{ a.stdout }}!\", accept: exit_code == 0 }\n}\n",
    );
    assert_eq!(out.diagnostics.len(), 0, "{:?}", out.diagnostics);
    let program = out.files[0].program.clone().unwrap();
    let skill = program.entry_skill(None).unwrap();
    let mut rendered = Vec::new();
    for node in &skill.nodes {
        let NodeKind::Step(step) = &node.kind else {
            panic!("not a step")
        };
        let StepKind::Run(run) = &step.kind else {
            panic!("not a run step")
        };
        let Command::Shell(Value::Template(t)) = &run.command else {
            panic!("not a template")
        };
        let template = skill.templates.get_template(&t.name).unwrap();
        let ctx = minijinja::context! { who => "me", a => minijinja::context! { stdout => "out" } };
        rendered.push(template.render(ctx).unwrap());
        // Looked up twice: compiled once and kept.
        assert!(skill.templates.get_template(&t.name).is_ok());
    }
    assert_eq!(rendered, ["echo me", "echo out!"]);
    assert!(skill.templates.get_template("no-such-template").is_err());
}
