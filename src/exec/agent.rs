//! `agent` steps: the loop of model turns and tool calls, journaled so a resumed run continues it.

use super::eval::{Evaluator, Names};
use crate::ir::{AgentStep, Skill, ToolKind};
use serde_json::{Value as Json, json};

/// The rendered inputs of an `agent` step (what its input hash covers).
pub fn inputs(
    agent: &AgentStep,
    skill: &Skill,
    ev: &Evaluator,
    names: &dyn Names,
) -> Result<Json, String> {
    let prompt = ev.text(skill, &agent.prompt, names)?;
    let system = agent
        .system
        .as_ref()
        .map(|v| ev.text(skill, v, names))
        .transpose()?;
    let m = &agent.model;
    let r = super::llm::resolve(m)?;
    let mut servers = serde_json::Map::new();
    for tool in &agent.tools {
        let ToolKind::Mcp { server, .. } = &tool.kind else {
            continue;
        };
        if servers.contains_key(&server.name) {
            continue;
        }
        let argv = server
            .argv
            .iter()
            .map(|v| ev.text(skill, v, names))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = serde_json::Map::new();
        for (k, v) in &server.env {
            env.insert(k.clone(), json!(ev.text(skill, v, names)?));
        }
        let cwd = server
            .cwd
            .as_ref()
            .map(|v| ev.text(skill, v, names))
            .transpose()?;
        servers.insert(
            server.name.clone(),
            json!({ "argv": argv, "env": env, "cwd": cwd }),
        );
    }
    Ok(json!({
        "model": m.name,
        "model_key": m.key,
        "provider": r.provider.word(),
        "name": m.model,
        "base_url": r.base_url,
        "prompt": prompt,
        "system": system,
        "tools": agent.tools.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "servers": servers,
    }))
}
