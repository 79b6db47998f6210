//! `llm` steps: resolving the model, caps, rate limits, launching the call
//! (`llm_call.rs`) and journaling every request and reply (what a reply
//! means and what of it is kept: `llm_reply.rs`).

use super::attempt::{AttemptEnd, ProcessSpec};
use super::llm_call::after_rate_limit;
pub use super::llm_reply::typed_end;
use super::llm_reply::{cap, journaled_body, reply_end};
use super::scheduler::{Msg, RunEnd, Runner, Task};
use crate::ir::{LlmStep, Model, Provider, SecretSource, Setting, Value};
use crate::journal::{Journal, JournalError, NewEvent, now_ms};
use crate::llm::fake::Script;
use crate::llm::limits::{RateWindow, cost};
use crate::llm::{self, CallError, Reply, Request, estimate_tokens, schema};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Default request timeout when neither the model nor the step sets one.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Model-call state of one session: totals for the caps, rate windows,
/// loaded answer scripts, and the recording being replayed.
#[derive(Debug, Default)]
pub struct LlmState {
    /// Tokens (in + out) used by the run so far, earlier sessions included.
    pub tokens: u64,
    /// Cost in USD of the run so far.
    pub cost: f64,
    pub(super) windows: HashMap<String, RateWindow>,
    scripts: HashMap<String, Result<Arc<Script>, String>>,
    /// In-order fake answers already given in this run, per model key.
    pub(super) fake_used: HashMap<String, Vec<usize>>,
    /// `--replay-llm`: the recorded run, and its calls by (instance key, attempt, agent turn).
    pub(super) replay: Option<(String, Recorded)>,
}

/// Recorded `llm_call` event data by (instance key, attempt, turn); the turn
/// of an `llm` step's call is 0, an agent's turns count from 1.
type Recorded = HashMap<(String, u32, u32), Json>;

impl LlmState {
    /// Totals of the run so far (when resuming) and the recording to replay.
    pub fn load(
        journal: &Journal,
        run: Option<&str>,
        replay: Option<&str>,
    ) -> Result<LlmState, JournalError> {
        let mut state = LlmState::default();
        if let Some(run) = run {
            for e in journal.events_of(run, Some("llm_call"))? {
                state.count(&e.data);
            }
        }
        if let Some(rec) = replay {
            let calls = journal
                .events_of(rec, Some("llm_call"))?
                .into_iter()
                .filter_map(|e| {
                    let turn = e.data["turn"].as_u64().unwrap_or(0) as u32;
                    Some(((e.node?, e.attempt?, turn), e.data))
                })
                .collect();
            state.replay = Some((rec.to_string(), calls));
        }
        Ok(state)
    }

    fn count(&mut self, data: &Json) {
        self.tokens +=
            data["tokens_in"].as_u64().unwrap_or(0) + data["tokens_out"].as_u64().unwrap_or(0);
        self.cost += data["cost_usd"].as_f64().unwrap_or(0.0);
        if let (Some(key), Some(i)) = (data["model_key"].as_str(), data["fake_answer"].as_u64())
            && data["fake_in_order"] == true
        {
            self.fake_used
                .entry(key.to_string())
                .or_default()
                .push(i as usize);
        }
    }

    pub(super) fn script(&mut self, path: &str) -> Result<Arc<Script>, String> {
        self.scripts
            .entry(path.to_string())
            .or_insert_with(|| Script::load(path).map(Arc::new))
            .clone()
    }
}

/// A model's settings as they are for this run (environment read now).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The provider in effect.
    pub provider: Provider,
    /// The base URL in effect.
    pub base_url: Option<String>,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Reads a model's `env(...)` settings and checks what its provider needs.
pub fn resolve(model: &Model) -> Result<Resolved, String> {
    let provider = match &model.provider_env {
        Some(var) => match env_nonempty(var) {
            Some(v) => Provider::parse(&v).ok_or_else(|| {
                format!(
                    "model `{}`: the environment variable `{var}` is `{v}`, which is not a provider \
                     (openai, anthropic, command or fake)",
                    model.name
                )
            })?,
            None => model.provider,
        },
        None => model.provider,
    };
    let base_url = match &model.base_url {
        Some(Setting::Text(t)) => Some(t.clone()),
        Some(Setting::Env { name, default }) => env_nonempty(name).or_else(|| default.clone()),
        None => None,
    };
    let needs = match provider {
        Provider::OpenAi | Provider::Anthropic if model.model.is_none() => Some("name"),
        Provider::Command if model.command.is_none() => Some("command"),
        Provider::Fake if model.script.is_none() => Some("script"),
        _ => None,
    };
    if let Some(field) = needs {
        return Err(format!(
            "model `{}` uses provider `{}` but has no `{field}`",
            model.name,
            provider.word()
        ));
    }
    Ok(Resolved { provider, base_url })
}

/// The API key of a model: `secret()` reads the environment, then the secret
/// store; `env()` the environment only. Either way the key is redacted.
pub(super) fn api_key(model: &Model) -> Result<Option<String>, String> {
    let Some(source) = &model.api_key else {
        return Ok(None);
    };
    match source {
        SecretSource::Secret(name) => crate::secrets::resolve(name)
            .map(Some)
            .map_err(|e| format!("model `{}` needs an API key: {e}", model.name)),
        SecretSource::Env(var) => {
            let key = env_nonempty(var).ok_or_else(|| {
                format!(
                    "model `{}` needs an API key, but the environment variable `{var}` is not set",
                    model.name
                )
            })?;
            crate::secrets::register(&key);
            Ok(Some(key))
        }
    }
}

/// One finished call, on its way back to the scheduler.
#[derive(Debug)]
pub struct Exchange {
    request: Json,
    outcome: Result<Reply, CallError>,
    duration_ms: u64,
    source: &'static str,
    fake_answer: Option<(usize, bool)>,
}

/// The rendered inputs of an `llm` step (what its input hash covers).
pub fn inputs(llm: &LlmStep, prompt: String, system: Option<String>) -> Result<Json, String> {
    model_inputs(&llm.model, prompt, system)
}

/// The model as it is for this run and the rendered prompts: the inputs every
/// model step's input hash covers (an `agent` adds its tools).
pub fn model_inputs(m: &Model, prompt: String, system: Option<String>) -> Result<Json, String> {
    let r = resolve(m)?;
    Ok(json!({
        "model": m.name,
        "model_key": m.key,
        "provider": r.provider.word(),
        "name": m.model,
        "base_url": r.base_url,
        "prompt": prompt,
        "system": system,
    }))
}

impl Runner<'_> {
    /// Starts an `llm` attempt: checks the caps, reserves the rate limit and
    /// returns the task that asks the model. `Err(Some(end))` ends the
    /// attempt at once; `Err(None)`: the call was refused and the run stops.
    #[allow(clippy::too_many_arguments)]
    pub fn launch_llm(
        &mut self,
        inst: usize,
        attempt: u32,
        llm: &LlmStep,
        inputs: &Json,
        feedback: &str,
        timeout: Duration,
        cancel: Arc<Notify>,
    ) -> Result<Task, Option<AttemptEnd>> {
        let model = llm.model.clone();
        let key = self.insts[inst].key.clone();
        let resolved = resolve(&model).map_err(|e| Some(AttemptEnd::Fatal(e)))?;
        let mut prompt = inputs["prompt"].as_str().unwrap_or_default().to_string();
        let reads_feedback =
            matches!(&llm.prompt, Value::Template(t) if t.source.contains("attempt.feedback"));
        if attempt > 1 && !feedback.is_empty() && !reads_feedback {
            prompt.push_str(&format!(
                "\n\n---\nYour previous reply was not accepted:\n{feedback}\nReply again, fixing this."
            ));
        }
        let schema = llm.output.as_ref().map(schema::schema);
        let max_tokens = llm.max_tokens.or(model.max_tokens);
        let request = Request {
            model: model.name.clone(),
            provider: resolved.provider,
            name: model.model.clone().unwrap_or_default(),
            base_url: resolved.base_url.clone(),
            api_key: None,
            system: inputs["system"].as_str().map(str::to_string),
            prompt,
            schema,
            structured: model.structured_output,
            temperature: llm.temperature.or(model.temperature),
            max_tokens,
            timeout: model
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_TIMEOUT)
                .min(timeout),
        };
        let (url, body) = llm::http::build(&request);
        let mut journaled = json!({
            "provider": resolved.provider.word(),
            "url": matches!(resolved.provider, Provider::OpenAi | Provider::Anthropic).then_some(url),
            "body": journaled_body(body),
        });
        // Spend caps, before the call: what this call may cost at most.
        let est_in = estimate_tokens(request.system.as_deref().unwrap_or_default())
            + estimate_tokens(&request.prompt);
        let est_out = max_tokens.unwrap_or(0);
        if let Some((rule, value, why)) = self.over_cap(&model, est_in, est_out) {
            self.refuse_call(inst, attempt, rule, value, why);
            return Err(None);
        }
        if let Some((run, calls)) = &self.llm.replay {
            let recorded = calls.get(&(key.clone(), attempt, 0)).cloned();
            let run = run.clone();
            return Ok(Box::pin(async move {
                let exchange = match recorded {
                    Some(data) => replayed(data),
                    None => Exchange {
                        request: journaled,
                        outcome: Err(CallError::fatal(format!(
                            "the recording of run {run} has no reply for step `{key}`, attempt {attempt}"
                        ))),
                        duration_ms: 0,
                        source: "replay",
                        fake_answer: None,
                    },
                };
                Msg::Llm {
                    inst,
                    attempt,
                    call: Box::new(exchange),
                }
            }));
        }
        let wait = self.rate_wait(&model, &key, attempt, est_in + est_out);
        let call = self.provider_call(
            inst,
            attempt,
            &model,
            resolved.provider,
            request,
            est_in,
            &cancel,
            &mut journaled,
        )?;
        Ok(Box::pin(async move {
            let Some(((outcome, source, fake_answer), duration_ms)) =
                after_rate_limit(wait, &cancel, call).await
            else {
                return Msg::Attempt {
                    inst,
                    attempt,
                    end: AttemptEnd::Cancelled,
                };
            };
            Msg::Llm {
                inst,
                attempt,
                call: Box::new(Exchange {
                    request: journaled,
                    outcome,
                    duration_ms,
                    source,
                    fake_answer,
                }),
            }
        }))
    }

    /// Reserves a model's rate limit for a call of about `tokens`: how long
    /// to wait first, in ms (a wait is journaled as a note).
    pub(super) fn rate_wait(&mut self, model: &Model, key: &str, attempt: u32, tokens: u64) -> u64 {
        let wait = match (model.requests_per_minute, model.tokens_per_minute) {
            (None, None) => 0,
            (rpm, tpm) => self
                .llm
                .windows
                .entry(model.key.clone())
                .or_insert_with(|| RateWindow::new(rpm, tpm))
                .reserve(now_ms(), tokens),
        };
        if wait > 0 {
            let text = format!(
                "waiting {} for the rate limit of model `{}`",
                crate::ir::format_ms(wait),
                model.name
            );
            self.note(key, attempt, json!({ "text": text }));
        }
        wait
    }

    /// The process of the `command` provider for one call: sandboxed like a
    /// `run` step of the same skill, under the run's policy.
    pub(super) fn command_process(
        &mut self,
        inst: usize,
        attempt: u32,
        model: &Model,
        stdin: String,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<ProcessSpec, String> {
        let key = self.insts[inst].key.clone();
        let mut env = [
            vec![
                ("FLOWC_LLM_MODEL".to_string(), model.name.clone()),
                ("FLOWC_RUN_ID".to_string(), self.run_id.clone()),
                ("FLOWC_STEP".to_string(), key),
                ("FLOWC_ATTEMPT".to_string(), attempt.to_string()),
            ],
            env,
        ]
        .concat();
        env.retain(|(_, v)| !v.is_empty());
        let skill = self.frames[self.insts[inst].frame].skill.clone();
        let plan = self.sandbox_plan(&skill.policy.sandbox)?;
        let mut spec = ProcessSpec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                model.command.clone().unwrap_or_default(),
            ],
            stdin: Some(stdin),
            cwd: None,
            env,
            timeout,
            output: None,
            sandbox: Some(plan),
        };
        spec.settle_start();
        Ok(spec)
    }

    /// The spend cap a call of about `est_in` + `est_out` tokens would pass:
    /// (rule, its value, the message).
    pub(super) fn over_cap(
        &self,
        model: &Model,
        est_in: u64,
        est_out: u64,
    ) -> Option<(&'static str, Json, String)> {
        let policy = &self.root_policy;
        if let Some(cap) = policy.max_tokens
            && self.llm.tokens + est_in + est_out > cap
        {
            return Some((
                "max_tokens",
                json!(cap),
                format!(
                    "cap `max_tokens` ({cap}) of policy `{}` would be exceeded: {} tokens used so far, \
                     and this call may use about {}",
                    policy.name,
                    self.llm.tokens,
                    est_in + est_out
                ),
            ));
        }
        let est_cost = cost(est_in, est_out, model.input_price, model.output_price);
        if let Some(cap) = policy.max_cost_usd
            && self.llm.cost + est_cost > cap
        {
            return Some((
                "max_cost_usd",
                json!(cap),
                format!(
                    "cap `max_cost_usd` ({cap}) of policy `{}` would be exceeded: ${:.4} spent so far, \
                     and this call may cost about ${est_cost:.4}",
                    policy.name, self.llm.cost
                ),
            ));
        }
        None
    }

    /// Fails closed: the step fails naming the cap, then the run stops (which
    /// settles the step like any other when a run is stopped).
    pub(super) fn refuse_call(
        &mut self,
        inst: usize,
        attempt: u32,
        rule: &str,
        value: Json,
        why: String,
    ) {
        let key = self.insts[inst].key.clone();
        let hash = self.insts[inst].input_hash.clone();
        self.set_status(
            &key,
            "running",
            Some(attempt),
            json!({ "input_hash": hash }),
        );
        self.set_status(
            &key,
            "failed",
            Some(attempt),
            json!({ "error": why, "cap": true }),
        );
        self.violation(Some(&key), rule, value, &why);
        self.stop_run(
            RunEnd::Failed,
            format!("step `{key}` was refused a model call: {why}"),
        );
    }

    /// A model call finished: journal it, count it, and end the attempt.
    pub fn llm_returned(&mut self, inst: usize, attempt: u32, call: Exchange) {
        let (skill, node) = {
            let i = &self.insts[inst];
            (self.frames[i.frame].skill.clone(), i.node)
        };
        let crate::ir::NodeKind::Step(step) = &skill.nodes[node].kind else {
            return;
        };
        let crate::ir::StepKind::Llm(llm) = &step.kind else {
            return;
        };
        let model = &llm.model;
        let key = self.insts[inst].key.clone();
        let (tokens_in, tokens_out) = match &call.outcome {
            Ok(r) => (r.tokens_in, r.tokens_out),
            Err(_) => (0, 0),
        };
        let cost_usd = cost(tokens_in, tokens_out, model.input_price, model.output_price);
        let mut data = json!({
            "model": model.name,
            "model_key": model.key,
            "prompt_version": crate::llm::prompt_version(llm),
            "source": call.source,
            "request": call.request,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost_usd,
            "duration": call.duration_ms,
        });
        match &call.outcome {
            Ok(r) => data["reply"] = json!(cap(&r.text)),
            Err(e) => {
                data["error"] = json!(e.message);
                data["status"] = json!(e.status);
                data["transient"] = json!(e.transient);
                data["retry_after"] = json!(e.retry_after_ms);
            }
        }
        if let Some((i, in_order)) = call.fake_answer {
            data["fake_answer"] = json!(i);
            data["fake_in_order"] = json!(in_order);
        }
        if self.llm.replay.is_some() {
            data["replayed_from"] = json!(self.llm.replay.as_ref().map(|r| r.0.clone()));
        }
        self.llm.tokens += tokens_in + tokens_out;
        self.llm.cost += cost_usd;
        self.push(NewEvent::node(
            &self.run_id,
            "llm_call",
            &key,
            Some(attempt),
            data,
        ));
        let end = match call.outcome {
            Err(e) if e.transient => AttemptEnd::Transient(e.message, e.retry_after_ms),
            Err(e) => AttemptEnd::Fatal(e.message),
            Ok(reply) => reply_end(llm, reply, cost_usd),
        };
        self.attempt_ended(inst, attempt, end);
    }
}

/// A recorded call, answered again.
fn replayed(data: Json) -> Exchange {
    let outcome = match data["reply"].as_str() {
        Some(text) => Ok(Reply {
            text: text.to_string(),
            tokens_in: data["tokens_in"].as_u64().unwrap_or(0),
            tokens_out: data["tokens_out"].as_u64().unwrap_or(0),
        }),
        None => Err(CallError {
            transient: data["transient"] == true,
            retry_after_ms: None,
            status: data["status"].as_u64().map(|s| s as u16),
            message: data["error"]
                .as_str()
                .unwrap_or("recorded error")
                .to_string(),
        }),
    };
    Exchange {
        request: data["request"].clone(),
        outcome,
        duration_ms: 0,
        source: "replay",
        fake_answer: None,
    }
}
