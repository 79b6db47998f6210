//! Effects checked: `on_interrupt`, and W0006 for a `write` step that may run more than once.

use super::module_cx::ModuleCx;
use super::scope::NodeDefRef;
use super::skill::SkillCx;
use crate::diag::{Code, Diagnostic};
use crate::ir::{self, Effect, OnInterrupt};
use crate::syntax::ast::{self, Field};

/// The variable a step reads to make a repeated write safe (`exec/launch.rs` sets it).
const IDEMPOTENCY_KEY: &str = "FLOWC_IDEMPOTENCY_KEY";

/// The fields whose text reaches the step's process or script.
const PROCESS_FIELDS: &[&str] = &["command", "argv", "env", "stdin", "code"];

impl<'a> ModuleCx<'a> {
    /// Reads `on_interrupt` (E0309 with a suggestion for another word).
    pub(super) fn on_interrupt(&mut self, field: &Field) -> Option<OnInterrupt> {
        self.word(field, OnInterrupt::WORDS)
            .and_then(|w| OnInterrupt::parse(&w))
    }

    /// W0006: a `write` step that may run more than once (`attempts > 1`, or
    /// inside a `loop`) without reading `FLOWC_IDEMPOTENCY_KEY` or saying what
    /// an interruption means (`on_interrupt`).
    pub(super) fn repeated_write(
        &mut self,
        id: usize,
        def: &ast::StepDef,
        sk: &SkillCx<'a>,
        step: &ir::Step,
    ) {
        if step.effect != Effect::Write || step.on_interrupt.is_some() {
            return;
        }
        let in_loop = enclosing_loop(sk, id);
        if step.attempts <= 1 && in_loop.is_none() {
            return;
        }
        let reads_key = def
            .fields
            .iter()
            .filter(|f| PROCESS_FIELDS.contains(&f.key.name.as_str()))
            .any(|f| self.source(f.span).contains(IDEMPOTENCY_KEY));
        if reads_key {
            return;
        }
        let why = match &in_loop {
            Some(name) if step.attempts > 1 => {
                format!("it has {} attempts inside loop `{name}`", step.attempts)
            }
            Some(name) => format!("it is inside loop `{name}`"),
            None => format!("it has {} attempts", step.attempts),
        };
        let mut diag = Diagnostic::new(
            Code::W0006,
            self.file,
            def.name.span,
            format!(
                "step `{}` writes and may run more than once: {why}",
                def.name.name
            ),
        )
        .label("each run of it writes again")
        .help(format!(
            "read `${IDEMPOTENCY_KEY}` in the command to make the write safe to repeat \
             (it is the same for every attempt and resume of this step), or declare \
             `on_interrupt: \"fail\"` (or `\"ask\"`, `\"retry\"`) to say what happens \
             when it was cut off"
        ));
        if let Some(f) = def.fields.iter().find(|f| f.key.name == "effect") {
            diag = diag.with(f.span, "declared here");
        }
        self.diags.push(diag);
    }
}

/// The name of the innermost `loop` around node `id`, if any.
fn enclosing_loop(sk: &SkillCx<'_>, id: usize) -> Option<String> {
    let mut at = sk.state.nodes.get(id)?.parent;
    // Parents come before children, so the walk ends; the bound guards a malformed table.
    for _ in 0..sk.state.nodes.len() {
        let node = sk.state.nodes.get(at?)?;
        if matches!(node.def, NodeDefRef::Loop(_)) {
            return Some(node.name.clone());
        }
        at = node.parent;
    }
    None
}
