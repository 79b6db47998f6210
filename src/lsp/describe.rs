//! Hover text for models (the provider and settings) and policies (the effective caps, a base's included).

use crate::ir::{self, format_ms as duration};

/// A model as the program resolved it.
pub fn model(m: &ir::Model) -> String {
    let mut lines = vec![format!("model `{}`", m.name), String::new()];
    let provider = match &m.provider_env {
        Some(var) => format!("`${var}`, else `{}`", m.provider.word()),
        None => format!("`{}`", m.provider.word()),
    };
    lines.push(format!("- provider: {provider}"));
    if let Some(name) = &m.model {
        lines.push(format!("- name: `{name}`"));
    }
    if let Some(t) = m.max_tokens {
        lines.push(format!("- max_tokens: {t}"));
    }
    if let (Some(i), Some(o)) = (m.input_price, m.output_price) {
        lines.push(format!("- price: ${i} in, ${o} out per million tokens"));
    }
    if let Some(ms) = m.timeout_ms {
        lines.push(format!("- timeout: {}", duration(ms)));
    }
    lines.join("\n")
}

/// A policy's effective caps (after extension and defaults).
pub fn policy(p: &ir::Policy) -> String {
    let mut lines = vec![
        format!("policy `{}`: effective caps", p.name),
        String::new(),
    ];
    lines.push(format!("- max_attempts: {}", p.max_attempts));
    lines.push(format!("- max_parallel: {}", p.max_parallel));
    lines.push(format!("- max_steps: {}", p.max_steps));
    lines.push(format!("- max_depth: {}", p.max_depth));
    if let Some(c) = p.max_cost_usd {
        lines.push(format!("- max_cost_usd: {c}"));
    }
    if let Some(t) = p.max_tokens {
        lines.push(format!("- max_tokens: {t}"));
    }
    lines.push(format!("- step_timeout: {}", duration(p.step_timeout_ms)));
    lines.push(format!("- run_timeout: {}", duration(p.run_timeout_ms)));
    if p.require_approval.is_some() {
        lines.push("- require_approval: a rule (see the source)".to_string());
    }
    if p.forbid.is_some() {
        lines.push("- forbid: a rule (see the source)".to_string());
    }
    lines.join("\n")
}
