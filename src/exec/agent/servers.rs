//! An agent's MCP servers: started inside the step's sandbox, their tools listed
//! and added to the step's (only those `allow` names).

use super::McpConn;
use super::Route;
use crate::exec::attempt::{self, AttemptEnd, ProcessSpec};
use crate::exec::scheduler::{Msg, Runner};
use crate::ir::{AgentStep, ToolKind};
use crate::llm::agent::ToolSpec;
use crate::llm::mcp::{self, McpTool};
use serde_json::{Value as Json, json};
use std::sync::Arc;
use std::time::Duration;

/// What a server start reports: per server, its session and tools, or why not.
pub type Started = Vec<(String, Result<(Box<McpConn>, Vec<McpTool>), String>)>;

impl Runner<'_> {
    /// The timeout for one MCP request: the step's.
    pub fn mcp_timeout(timeout_ms: u64) -> Duration {
        Duration::from_millis(timeout_ms.clamp(1_000, 600_000))
    }

    /// The tools a started server offers this step: those it lists and `allow` names.
    pub fn add_server_tools(
        &mut self,
        inst: usize,
        agent: &AgentStep,
        server: &str,
        listed: &[McpTool],
    ) -> Result<(), String> {
        let Some(run) = self.agents.get_mut(&inst) else {
            return Ok(());
        };
        for tool in &agent.tools {
            let ToolKind::Mcp { server: s, tool: t } = &tool.kind else {
                continue;
            };
            if s.name != server {
                continue;
            }
            let wanted: Vec<&McpTool> = match t {
                Some(name) => match listed.iter().find(|l| &l.name == name) {
                    Some(l) => vec![l],
                    None => {
                        return Err(format!(
                            "`mcp` server `{server}` does not offer the tool `{name}` (it lists {})",
                            listed
                                .iter()
                                .map(|l| format!("`{}`", l.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                },
                None => listed.iter().filter(|l| s.allows(&l.name)).collect(),
            };
            for l in wanted {
                if run.routes.contains_key(&l.name) {
                    continue;
                }
                run.specs.push(ToolSpec {
                    name: l.name.clone(),
                    description: l.description.clone(),
                    schema: l.schema.clone(),
                });
                run.routes.insert(
                    l.name.clone(),
                    Route::Mcp {
                        server: server.to_string(),
                        tool: l.name.clone(),
                        effect: s.effect(&l.name),
                        schema: l.schema.clone(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Starts the step's MCP servers inside its sandbox and lists their tools.
    pub fn start_servers(
        &mut self,
        inst: usize,
        attempt: u32,
        servers: &[String],
        inputs: &Json,
        timeout_ms: u64,
    ) {
        let (skill, _) = self.step(inst);
        let plan = match self.sandbox_plan(&skill.policy.sandbox) {
            Ok(p) => p,
            Err(e) => return self.end_agent(inst, AttemptEnd::Error(e, None)),
        };
        let timeout = Self::mcp_timeout(timeout_ms);
        let mut specs = Vec::new();
        for name in servers {
            let s = &inputs["servers"][name];
            let env = attempt::string_pairs(&s["env"]);
            let mut spec = ProcessSpec {
                argv: attempt::strings(&s["argv"]),
                stdin: None,
                cwd: s["cwd"].as_str().map(str::to_string),
                env,
                timeout,
                output: None,
                sandbox: Some(plan.clone()),
            };
            spec.settle_start();
            specs.push((name.clone(), spec));
        }
        let cancel = Arc::new(tokio::sync::Notify::new());
        self.insts[inst].cancel = Some(cancel.clone());
        self.running += 1;
        self.spawn.push(Box::pin(async move {
            let work = async move {
                let mut out: Started = Vec::new();
                for (name, spec) in specs {
                    out.push((name, connect(spec, timeout).await));
                }
                out
            };
            tokio::select! {
                started = work => Msg::AgentServers { inst, attempt, started },
                () = cancel.notified() => Msg::Attempt { inst, attempt, end: AttemptEnd::Cancelled },
            }
        }));
    }

    /// The servers are up (or not): their tools join the step's, then the loop starts.
    pub fn servers_started(&mut self, inst: usize, attempt: u32, started: Started) {
        self.insts[inst].cancel = None;
        if self.agents.get(&inst).is_none_or(|r| r.attempt != attempt) {
            return;
        }
        let Some((_, agent, _)) = self.agent_step(inst) else {
            return;
        };
        for (name, result) in started {
            let (conn, tools) = match result {
                Ok(ok) => ok,
                Err(e) => {
                    let why = format!("`mcp` server `{name}` could not be started: {e}");
                    return self.end_agent(inst, AttemptEnd::Error(why, None));
                }
            };
            let key = self.insts[inst].key.clone();
            self.note(&key, attempt, json!({ "text": format!("`mcp` server `{name}` ({}) lists {} tools", conn.client.server, tools.len()) }));
            if let Err(e) = self.add_server_tools(inst, &agent, &name, &tools) {
                return self.end_agent(inst, AttemptEnd::Error(e, None));
            }
            if let Some(run) = self.agents.get_mut(&inst) {
                run.servers.insert(name, Some(conn));
            }
        }
        self.agent_next(inst);
    }
}

/// Starts one server and lists its tools.
async fn connect(
    spec: ProcessSpec,
    timeout: std::time::Duration,
) -> Result<(Box<McpConn>, Vec<McpTool>), String> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    let mut process = attempt::start_piped(spec).await?;
    if let Some(mut err) = process.stderr.take() {
        // Drained so the server never blocks on a full pipe; its log is not kept.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
        });
    }
    let stdin = std::mem::replace(&mut process.stdin, Box::new(tokio::io::sink()));
    let stdout = std::mem::replace(&mut process.stdout, Box::new(tokio::io::empty()));
    let mut client = mcp::Client::connect(stdin, stdout, timeout)
        .await
        .map_err(|e| format!("`{program}`: {e}"))?;
    let tools = client.list_tools().await?;
    Ok((
        Box::new(McpConn {
            client,
            _process: process,
        }),
        tools,
    ))
}
