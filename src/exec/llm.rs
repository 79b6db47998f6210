//! `llm` steps: resolving the model, caps, rate limits, the call itself,
//! journaling every request and reply, and what a reply means for the attempt.

use super::attempt::{self, AttemptEnd, ProcessSpec};
use super::eval::validate;
use super::scheduler::{Msg, RunEnd, Runner, Task};
use crate::ir::{LlmStep, Model, Provider, SecretSource, Setting, Value};
use crate::journal::{Journal, JournalError, NewEvent, OUTPUT_CAP, now_ms};
use crate::llm::fake::Script;
use crate::llm::limits::{RateWindow, cost};
use crate::llm::{self, CallError, Reply, Request, estimate_tokens, schema};
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

    /// The future that asks the model through its provider.
    #[allow(clippy::too_many_arguments)]
    fn provider_call(
        &mut self,
        inst: usize,
        attempt: u32,
        model: &Arc<Model>,
        provider: Provider,
        request: Request,
        est_in: u64,
        cancel: &Arc<Notify>,
        journaled: &mut Json,
    ) -> Result<CallFuture, Option<AttemptEnd>> {
        let key = self.insts[inst].key.clone();
        let model = model.clone();
        Ok(match provider {
            Provider::Fake => {
                let path = model.script.clone().unwrap_or_default();
                let name = self.frames[self.insts[inst].frame].skill.nodes[self.insts[inst].node]
                    .name
                    .clone();
                let picked = self.llm.script(&path).and_then(|script| {
                    let used = self.llm.fake_used.entry(model.key.clone()).or_default();
                    match script.pick(&key, &name, attempt, used) {
                        Some(i) => {
                            let in_order = script.answers[i].step.is_none()
                                && script.answers[i].attempt.is_none();
                            if in_order {
                                used.push(i);
                            }
                            Ok((script, i, in_order))
                        }
                        None => Err(format!(
                            "the fake model `{}` has no answer left for step `{key}`, attempt {attempt} \
                             (answers file `{path}`)",
                            model.name
                        )),
                    }
                });
                match picked {
                    Err(e) => Box::pin(async move { (Err(CallError::fatal(e)), "fake", None) }),
                    Ok((script, i, in_order)) => {
                        let text = format!(
                            "{}\n{}",
                            request.system.as_deref().unwrap_or_default(),
                            request.prompt
                        );
                        Box::pin(
                            async move { (script.answer(i, &text), "fake", Some((i, in_order))) },
                        )
                    }
                }
            }
            Provider::Command => {
                let mut env = Vec::new();
                if let Some(s) =
                    llm::system_prompt(request.system.as_deref(), request.schema.as_ref())
                {
                    env.push(("FLOWC_LLM_SYSTEM".to_string(), s));
                }
                if let Some(s) = &request.schema {
                    env.push(("FLOWC_LLM_SCHEMA".to_string(), s.to_string()));
                }
                let spec = match self.command_process(
                    inst,
                    attempt,
                    &model,
                    request.prompt.clone(),
                    env,
                    request.timeout,
                ) {
                    Ok(spec) => spec,
                    Err(refused) => return Err(Some(AttemptEnd::Fatal(refused))),
                };
                if let Some(plan) = &spec.sandbox {
                    journaled["sandbox"] = plan.record();
                }
                let c = cancel.clone();
                let who = model.name.clone();
                let prompt_tokens = est_in;
                Box::pin(async move {
                    let outcome = match attempt::run_process(spec, c, None).await {
                        AttemptEnd::Result(r) if r["exit_code"] == 0 => {
                            let text = r["stdout"].as_str().unwrap_or_default().to_string();
                            Ok(Reply {
                                tokens_in: prompt_tokens,
                                tokens_out: estimate_tokens(&text),
                                text,
                            })
                        }
                        AttemptEnd::Result(r) => Err(CallError::transient(format!(
                            "the command of model `{who}` exited with code {}: {}",
                            r["exit_code"],
                            r["stderr"].as_str().unwrap_or_default().trim()
                        ))),
                        AttemptEnd::Error(e, _) => Err(CallError::transient(format!(
                            "the command of model `{who}`: {e}"
                        ))),
                        other => Err(CallError::transient(format!(
                            "the command of model `{who}` did not finish: {other:?}"
                        ))),
                    };
                    (outcome, "command", None)
                })
            }
            Provider::OpenAi | Provider::Anthropic => {
                let mut request = request;
                match api_key(&model) {
                    Err(e) => Box::pin(async move { (Err(CallError::fatal(e)), "http", None) }),
                    Ok(k) => {
                        request.api_key = k;
                        Box::pin(async move {
                            let outcome =
                                tokio::task::spawn_blocking(move || llm::http::call(&request))
                                    .await
                                    .unwrap_or_else(|e| {
                                        Err(CallError::transient(format!(
                                            "the request crashed: {e}"
                                        )))
                                    });
                            (outcome, "http", None)
                        })
                    }
                }
            }
        })
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

/// Waits `wait` ms for the rate limit, then awaits `call`: its output and how
/// long it took (ms), or `None` when the attempt was cancelled first.
pub(super) async fn after_rate_limit<T>(
    wait: u64,
    cancel: &Notify,
    call: impl std::future::Future<Output = T>,
) -> Option<(T, u64)> {
    if wait > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
            () = cancel.notified() => return None,
        }
    }
    let started = Instant::now();
    tokio::select! {
        r = call => Some((r, started.elapsed().as_millis() as u64)),
        () = cancel.notified() => None,
    }
}

type CallFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    Result<Reply, CallError>,
                    &'static str,
                    Option<(usize, bool)>,
                ),
            > + Send,
    >,
>;

/// Longest prompt text kept in the journal per message (the tail is kept).
const PROMPT_CAP: usize = 4 * OUTPUT_CAP;

/// The request body as journaled: each message's text within `PROMPT_CAP`.
pub(super) fn journaled_body(mut body: Json) -> Json {
    let clip = |v: &mut Json| {
        if let Some(text) = v.as_str()
            && text.len() > PROMPT_CAP
        {
            // Redacted before the cut, which could fall inside a secret.
            let text = &crate::secrets::redact(text.to_string());
            let cut = super::accept::tail_cut(text, PROMPT_CAP);
            *v = json!(format!("[flowc: {cut} bytes dropped]{}", &text[cut..]));
        }
    };
    if let Some(messages) = body["messages"].as_array_mut() {
        for m in messages {
            clip(&mut m["content"]);
        }
    }
    if body.get("system").is_some() {
        clip(&mut body["system"]);
    }
    body
}

/// Keeps journaled reply text within the output cap (the tail is kept).
pub(super) fn cap(text: &str) -> String {
    if text.len() <= OUTPUT_CAP {
        return text.to_string();
    }
    // Redacted before the cut, which could fall inside a secret.
    let text = &crate::secrets::redact(text.to_string());
    match super::accept::tail_cut(text, OUTPUT_CAP) {
        0 => text.to_string(),
        cut => format!("[flowc: {cut} bytes dropped]{}", &text[cut..]),
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

/// What a reply means: a result, or a rejection whose feedback re-prompts.
fn reply_end(llm: &LlmStep, reply: Reply, cost_usd: f64) -> AttemptEnd {
    let result = json!({
        "text": reply.text,
        "tokens_in": reply.tokens_in,
        "tokens_out": reply.tokens_out,
        "cost_usd": cost_usd,
    });
    typed_end(llm.output.as_ref(), result, &reply.text)
}

/// A model's final text against the step's declared `output` type: the result
/// with `output` parsed, or a rejection whose feedback says what is wrong.
pub fn typed_end(output: Option<&crate::ir::Ty>, mut result: Json, text: &str) -> AttemptEnd {
    let Some(ty) = output else {
        return AttemptEnd::Result(result);
    };
    let parsed: Json = match serde_json::from_str(schema::strip_fence(text)) {
        Ok(v) => v,
        Err(e) => {
            result["output"] = Json::Null;
            return AttemptEnd::Rejected(
                result,
                format!(
                    "the reply is not valid JSON ({e}); reply with only a JSON value of type `{ty}`"
                ),
            );
        }
    };
    if let Err(e) = validate(&parsed, ty) {
        result["output"] = parsed;
        return AttemptEnd::Rejected(
            result,
            format!("the reply does not match `output: {ty}`: {e}"),
        );
    }
    result["output"] = parsed;
    AttemptEnd::Result(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_prompts_are_clipped_in_the_journal_only() {
        let long = "x".repeat(PROMPT_CAP + 10);
        let body = json!({
            "messages": [{ "role": "user", "content": long }, { "role": "user", "content": "short" }],
            "system": "brief",
        });
        let j = journaled_body(body);
        let first = j["messages"][0]["content"].as_str().unwrap_or_default();
        assert!(
            first.starts_with("[flowc: 10 bytes dropped]"),
            "{}",
            &first[..40]
        );
        assert_eq!(first.len(), PROMPT_CAP + "[flowc: 10 bytes dropped]".len());
        assert_eq!(j["messages"][1]["content"], "short");
        assert_eq!(j["system"], "brief");
    }
}
