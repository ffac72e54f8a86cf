//! The agent loop: messages → model → tool calls → policy → tools → tool messages → … until
//! a final answer or a budget runs out. Everything that happens is an [`AgentEvent`] on one
//! channel; the CLI prints them, the TUI renders them, the recorder stores them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use verity_policies::{Caller, Verdict};
use verity_tools::{CallContext, Limits};

use crate::{
    approver::{Approval, ApprovalRequest, Approver},
    gate::{GatedCall, ToolGate},
    model::{
        Finish, Message, ModelBackend, ModelError, ModelOutput, ModelRequest, ParseFailure, Role,
        Sampling, ToolCall, ToolChoice, ToolDef, Usage,
    },
};

/// Budgets and behaviour of one run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Most model calls.
    pub max_turns: usize,
    /// Most generated tokens over the whole run.
    pub max_tokens: u64,
    /// Wall-clock budget of the whole run.
    pub wall_time: Option<Duration>,
    /// Constrain tool calls to valid calls of offered tools.
    pub strict: bool,
    /// Tool choice of the *first* model call; later calls use `auto` (so a run that must
    /// start with a tool call can still end with an answer). `none` applies to all calls.
    pub tool_choice: ToolChoice,
    /// In strict mode with a required/named first call: exactly this many calls.
    pub calls_per_turn: usize,
    /// Most tool calls of one turn running at once.
    pub parallel_tools: usize,
    /// Sampling of every model call (`max_tokens` is per call, capped by the run budget).
    pub sampling: Sampling,
    /// Who the policy sees.
    pub caller: Caller,
    /// Tools offered (names as the gate knows them); `None` = all the gate has.
    pub tool_allow_list: Option<Vec<String>>,
    /// A Lark grammar every reply must follow (see [`ModelRequest::grammar`]).
    pub grammar: Option<String>,
    /// Functions offered to the model that are never run: a reply calling any of them
    /// ends the run ([`StopReason::Calls`]) with the calls as its result. This is how
    /// function-calling benchmarks (BFCL) are posed: the calls *are* the answer.
    pub call_only: Vec<ToolDef>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            max_turns: 8,
            max_tokens: 8192,
            wall_time: None,
            strict: false,
            tool_choice: ToolChoice::Auto,
            calls_per_turn: 1,
            parallel_tools: 4,
            sampling: Sampling::default(),
            caller: Caller::cli(),
            tool_allow_list: None,
            grammar: None,
            call_only: Vec::new(),
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model answered without calling tools.
    Answer,
    /// The last reply (no tool calls) was cut by the per-call token limit.
    Truncated,
    /// `max_turns` model calls were made.
    MaxTurns,
    /// The token budget ran out.
    MaxTokens,
    /// The wall-clock budget ran out.
    WallTime,
    /// The caller cancelled.
    Cancelled,
    /// The model called call-only functions (see [`AgentConfig::call_only`]); the calls
    /// are the last assistant message.
    Calls,
}

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A model call starts.
    TurnStarted {
        /// 1-based turn number.
        turn: usize,
    },
    /// Streamed text.
    Token {
        /// Turn.
        turn: usize,
        /// The piece.
        text: String,
    },
    /// The model call finished.
    ModelOutput {
        /// Turn.
        turn: usize,
        /// Everything the backend returned.
        output: Box<ModelOutput>,
        /// Model time.
        duration_ms: u64,
    },
    /// The model attempted a call that could not be used; the error goes back to it.
    ParseFailure {
        /// Turn.
        turn: usize,
        /// What it wrote and what is wrong.
        failure: ParseFailure,
    },
    /// The model asked for a tool.
    ToolCallProposed {
        /// Turn.
        turn: usize,
        /// The call.
        call: ToolCall,
    },
    /// The policy decided (for `ask`, before the approver answers).
    PolicyDecision {
        /// Call id.
        call_id: String,
        /// allow / ask / deny.
        verdict: Verdict,
        /// Rule that decided.
        rule_id: String,
        /// Why.
        reason: String,
    },
    /// A person (or the headless approver) is asked.
    ApprovalRequested {
        /// Call id.
        call_id: String,
        /// Tool.
        tool: String,
        /// Full arguments.
        arguments: Value,
    },
    /// The approver answered.
    ApprovalResolved {
        /// Call id.
        call_id: String,
        /// The answer.
        approval: Approval,
    },
    /// A tool call finished (ran, failed, or was refused).
    ToolResult {
        /// Call id.
        call_id: String,
        /// Tool.
        tool: String,
        /// Everything the gate knows.
        result: Box<GatedCall>,
    },
    /// A turn ended.
    TurnFinished {
        /// Turn.
        turn: usize,
        /// Tokens so far in the run.
        usage: Usage,
    },
    /// The run ended.
    Finished {
        /// Why.
        stop: StopReason,
        /// The final answer, if any.
        answer: Option<String>,
        /// Turns used.
        turns: usize,
        /// Tokens used.
        usage: Usage,
    },
    /// The run failed.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Why it ended.
    pub stop: StopReason,
    /// The final answer, if the model gave one.
    pub answer: Option<String>,
    /// The whole conversation, tool messages included.
    pub messages: Vec<Message>,
    /// Model calls made.
    pub turns: usize,
    /// Tokens used.
    pub usage: Usage,
    /// The run's sampling seed: the configured one, or for a sampled run given none a
    /// fresh one, so the record can say how to draw the run again. Model call `t` samples
    /// with [`crate::model::sampler::call_seed`]`(seed, t)`.
    pub seed: Option<u64>,
}

/// A model, tools behind a policy, an approver.
#[derive(Clone)]
pub struct Agent {
    model: Arc<dyn ModelBackend>,
    gate: ToolGate,
    approver: Arc<dyn Approver>,
    config: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("model", &self.model)
            .field("config", &self.config)
            .finish()
    }
}

impl Agent {
    /// An agent.
    pub fn new(
        model: Arc<dyn ModelBackend>,
        gate: ToolGate,
        approver: Arc<dyn Approver>,
        config: AgentConfig,
    ) -> Self {
        Self {
            model,
            gate,
            approver,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Tools offered to the model: the gate's (filtered by the allow-list), then the
    /// call-only functions (which shadow a gate tool of the same name).
    pub fn tool_defs(&self) -> Vec<ToolDef> {
        let mut defs: Vec<ToolDef> = self
            .gate
            .specs()
            .into_iter()
            .filter(|s| {
                self.config
                    .tool_allow_list
                    .as_ref()
                    .is_none_or(|allow| allow.iter().any(|a| a == &s.name))
                    && !self.is_call_only(&s.name)
            })
            .map(|s| ToolDef {
                name: s.name,
                description: s.description,
                parameters: s.input_schema,
            })
            .collect();
        defs.extend(self.config.call_only.iter().cloned());
        defs
    }

    fn is_call_only(&self, name: &str) -> bool {
        self.config.call_only.iter().any(|t| t.name == name)
    }

    /// Runs until an answer or a budget. Events go to `events` (a closed receiver is fine).
    pub async fn run(
        &self,
        messages: Vec<Message>,
        events: UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Result<RunOutcome, ModelError> {
        let started = Instant::now();
        let sampling = &self.config.sampling;
        let seed = sampling
            .seed
            .or_else(|| (!sampling.greedy).then(crate::model::sampler::fresh_seed));
        let tools = Arc::new(self.tool_defs());
        // Shared with each model request, appended to in place once the request is done:
        // no per-turn copy of a growing conversation.
        let mut messages = Arc::new(messages);
        let mut usage = Usage::default();
        let emit = |e: AgentEvent| {
            let _ = events.send(e);
        };
        let mut turn = 0;
        let stop = loop {
            if cancel.is_cancelled() {
                break StopReason::Cancelled;
            }
            if turn >= self.config.max_turns {
                break StopReason::MaxTurns;
            }
            let remaining = self
                .config
                .max_tokens
                .saturating_sub(usage.completion_tokens);
            if remaining == 0 {
                break StopReason::MaxTokens;
            }
            let deadline = self
                .config
                .wall_time
                .map(|w| w.saturating_sub(started.elapsed()));
            if deadline == Some(Duration::ZERO) {
                break StopReason::WallTime;
            }
            turn += 1;
            emit(AgentEvent::TurnStarted { turn });

            let choice = match (&self.config.tool_choice, turn) {
                (ToolChoice::None, _) => ToolChoice::None,
                (c, 1) => c.clone(),
                _ => ToolChoice::Auto,
            };
            let mut sampling = self.config.sampling.clone();
            sampling.seed = seed.map(|s| crate::model::sampler::call_seed(s, turn - 1));
            sampling.max_tokens = sampling
                .max_tokens
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let request = ModelRequest {
                messages: Arc::clone(&messages),
                tools: Arc::clone(&tools),
                tool_choice: choice,
                strict: self.config.strict,
                calls_per_turn: self.config.calls_per_turn,
                sampling,
                grammar: self.config.grammar.clone(),
            };
            let token_events = events.clone();
            let on_token: crate::model::TokenSink = Arc::new(move |t: &str| {
                let _ = token_events.send(AgentEvent::Token {
                    turn,
                    text: t.to_owned(),
                });
            });
            let t0 = Instant::now();
            let model_cancel = cancel.child_token();
            let generate = self
                .model
                .generate(&request, on_token, model_cancel.clone());
            let output = match deadline {
                Some(d) => match tokio::time::timeout(d, generate).await {
                    Ok(r) => r,
                    Err(_) => {
                        model_cancel.cancel();
                        break StopReason::WallTime;
                    }
                },
                None => generate.await,
            };
            // Release the request's share of the conversation so appending below does not
            // copy it.
            drop(request);
            let output = match output {
                Ok(o) => o,
                Err(ModelError::Cancelled) => break StopReason::Cancelled,
                Err(e) => {
                    emit(AgentEvent::Error {
                        message: e.to_string(),
                    });
                    return Err(e);
                }
            };
            usage.prompt_tokens += output.usage.prompt_tokens;
            usage.completion_tokens += output.usage.completion_tokens;
            emit(AgentEvent::ModelOutput {
                turn,
                output: Box::new(output.clone()),
                duration_ms: t0.elapsed().as_millis() as u64,
            });

            if !output.parse_failures.is_empty() {
                for f in &output.parse_failures {
                    emit(AgentEvent::ParseFailure {
                        turn,
                        failure: f.clone(),
                    });
                }
                let mut assistant = Message::new(Role::Assistant, raw_reply(&output));
                assistant.tool_calls = Vec::new();
                Arc::make_mut(&mut messages).push(assistant);
                let errors: Vec<String> = output
                    .parse_failures
                    .iter()
                    .map(|f| format!("- {}", f.error))
                    .collect();
                Arc::make_mut(&mut messages).push(Message::new(
                    Role::User,
                    format!(
                        "Your tool call could not be used:\n{}\nNo tool was run. Try again or answer directly.",
                        errors.join("\n")
                    ),
                ));
                emit(AgentEvent::TurnFinished { turn, usage });
                continue;
            }

            if output.tool_calls.is_empty() {
                emit(AgentEvent::TurnFinished { turn, usage });
                // A reply cut by the per-call token limit still ends the run (there is no
                // call to act on), but says so: RL must not mistake it for a finished answer.
                let stop = if output.finish == Some(Finish::Length) {
                    StopReason::Truncated
                } else {
                    StopReason::Answer
                };
                Arc::make_mut(&mut messages)
                    .push(Message::new(Role::Assistant, output.text.clone()));
                emit(AgentEvent::Finished {
                    stop,
                    answer: Some(output.text.clone()),
                    turns: turn,
                    usage,
                });
                return Ok(RunOutcome {
                    stop,
                    answer: Some(output.text),
                    messages: Arc::unwrap_or_clone(messages),
                    turns: turn,
                    usage,
                    seed,
                });
            }

            let mut assistant = Message::new(Role::Assistant, output.text.clone());
            assistant.tool_calls = output.tool_calls.clone();
            Arc::make_mut(&mut messages).push(assistant);
            if output.tool_calls.iter().any(|c| self.is_call_only(&c.name)) {
                // The calls are the result; none of them is run.
                emit(AgentEvent::TurnFinished { turn, usage });
                emit(AgentEvent::Finished {
                    stop: StopReason::Calls,
                    answer: None,
                    turns: turn,
                    usage,
                });
                return Ok(RunOutcome {
                    stop: StopReason::Calls,
                    answer: None,
                    messages: Arc::unwrap_or_clone(messages),
                    turns: turn,
                    usage,
                    seed,
                });
            }
            for call in &output.tool_calls {
                emit(AgentEvent::ToolCallProposed {
                    turn,
                    call: call.clone(),
                });
            }
            let results = self
                .run_calls(&output.tool_calls, &events, cancel.child_token())
                .await;
            for (call, result) in output.tool_calls.iter().zip(results) {
                Arc::make_mut(&mut messages)
                    .push(Message::tool_result(call, render_result(&result)));
                emit(AgentEvent::ToolResult {
                    call_id: call.id.clone(),
                    tool: call.name.clone(),
                    result: Box::new(result),
                });
            }
            emit(AgentEvent::TurnFinished { turn, usage });
        };
        emit(AgentEvent::Finished {
            stop,
            answer: None,
            turns: turn,
            usage,
        });
        Ok(RunOutcome {
            stop,
            answer: None,
            messages: Arc::unwrap_or_clone(messages),
            turns: turn,
            usage,
            seed,
        })
    }

    /// Runs a turn's calls concurrently (bounded); results come back in call order.
    async fn run_calls(
        &self,
        calls: &[ToolCall],
        events: &UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Vec<GatedCall> {
        // Collected (and boxed) first: a lazy `map` adaptor inside the returned future
        // makes it not `Send` for every lifetime, so it could not be spawned.
        let futures: Vec<futures::future::BoxFuture<'_, GatedCall>> = calls
            .iter()
            .map(|call| {
                let approver = EventingApprover {
                    inner: self.approver.clone(),
                    events: events.clone(),
                    call_id: call.id.clone(),
                };
                let ctx = CallContext {
                    limits: Limits::default(),
                    cancel: cancel.child_token(),
                    ..CallContext::default()
                };
                let caller = self.config.caller.clone();
                async move {
                    let result = self
                        .gate
                        .call(&caller, &call.name, call.arguments.clone(), &approver, ctx)
                        .await;
                    if result.decision.verdict != Verdict::Ask {
                        let _ = events.send(AgentEvent::PolicyDecision {
                            call_id: call.id.clone(),
                            verdict: result.decision.verdict,
                            rule_id: result.decision.rule_id.clone(),
                            reason: result.decision.reason.clone(),
                        });
                    }
                    result
                }
                .boxed()
            })
            .collect();
        futures::stream::iter(futures)
            .buffered(self.config.parallel_tools.max(1))
            .collect()
            .await
    }
}

/// What the model wrote, calls included, for the transcript when its calls failed.
fn raw_reply(output: &ModelOutput) -> String {
    let mut s = output.text.clone();
    for f in &output.parse_failures {
        if !s.contains(&f.raw) {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(&f.raw);
        }
    }
    s
}

/// The tool message the model reads: the text, prefixed by the failure kind on error.
fn render_result(result: &GatedCall) -> String {
    match result.outcome.failure {
        None => result.outcome.text.clone(),
        Some(kind) => {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "error".into());
            format!("error ({kind}): {}", result.outcome.text)
        }
    }
}

/// Reports the `ask` decision and the answer as events around the real approver.
struct EventingApprover {
    inner: Arc<dyn Approver>,
    events: UnboundedSender<AgentEvent>,
    call_id: String,
}

impl Approver for EventingApprover {
    fn approve<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> futures::future::BoxFuture<'a, Approval> {
        Box::pin(async move {
            let _ = self.events.send(AgentEvent::PolicyDecision {
                call_id: self.call_id.clone(),
                verdict: request.decision.verdict,
                rule_id: request.decision.rule_id.clone(),
                reason: request.decision.reason.clone(),
            });
            let _ = self.events.send(AgentEvent::ApprovalRequested {
                call_id: self.call_id.clone(),
                tool: request.tool.clone(),
                arguments: request.args.clone(),
            });
            let approval = self.inner.approve(request).await;
            let _ = self.events.send(AgentEvent::ApprovalResolved {
                call_id: self.call_id.clone(),
                approval: approval.clone(),
            });
            approval
        })
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
