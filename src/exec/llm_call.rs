//! The call an `llm` step makes: the future that asks the model through its
//! provider (the scripted `fake` provider, a recorded call for
//! `--replay-llm`, or an HTTP provider), after the rate limit's wait.

use super::attempt::{self, AttemptEnd};
use super::llm::api_key;
use super::scheduler::Runner;
use crate::ir::{Model, Provider};
use crate::llm::{self, CallError, Reply, Request, estimate_tokens};
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

impl Runner<'_> {
    /// The future that asks the model through its provider.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn provider_call(
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

/// A call in flight: its reply (a model's, or an agent turn's), where the
/// answer came from, and the `fake` answer it used.
pub(super) type CallFuture<R = Reply> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (Result<R, CallError>, &'static str, Option<(usize, bool)>),
            > + Send,
    >,
>;
