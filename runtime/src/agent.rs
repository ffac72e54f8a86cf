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
    approver::{Approval, Approver},
    gate::{CallEvent, CallObserver, CallRequest, GatedCall, ToolGate},
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
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
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

impl StopReason {
    /// Why the run ended, in words for a person: the one text of each stop reason (the
    /// CLI and the TUI both print it).
    pub fn explain(self) -> &'static str {
        match self {
            StopReason::Answer => "the model answered",
            StopReason::Truncated => {
                "the answer was cut at the per-call token limit (--max-tokens-per-call)"
            }
            StopReason::MaxTurns => "the turn budget ran out (--max-turns)",
            StopReason::MaxTokens => "the token budget ran out (--max-tokens)",
            StopReason::WallTime => "the time budget ran out (--max-time)",
            StopReason::Cancelled => "the turn was cancelled",
            StopReason::Calls => {
                "the model answered with calls to call-only functions (they are not run)"
            }
        }
    }
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
    /// A person (or the headless approver) is asked; comes after the `ask` decision.
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
    /// The tool starts running (after the decision, and the approval if one was needed).
    ToolStarted {
        /// Call id.
        call_id: String,
        /// Limits it runs under (its own, tightened by the policy).
        limits: Limits,
    },
    /// A running tool reported progress.
    ToolProgress {
        /// Call id.
        call_id: String,
        /// Work done so far.
        progress: f64,
        /// Total work, when known.
        total: Option<f64>,
        /// A short status.
        message: Option<String>,
    },
    /// A tool call finished (ran, failed, or was refused): always the call's last event.
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
    /// How many of `messages` the run was given (system prompt, the task's messages,
    /// earlier exchanges): the rest is what the run added.
    pub prompt_messages: usize,
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
        let prompt_messages = messages.len();
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
        let mut previous: Option<Arc<crate::model::PreviousTurn>> = None;
        // Every way out of the loop says why and, for an answer, what it was.
        let ended: (StopReason, Option<String>) = loop {
            let (remaining, deadline) = match self.budget_left(turn, usage, started, &cancel) {
                Ok(left) => left,
                Err(stop) => break (stop, None),
            };
            turn += 1;
            emit(AgentEvent::TurnStarted { turn });
            let asked_messages = messages.len();
            let request = ModelRequest {
                messages: Arc::clone(&messages),
                tools: Arc::clone(&tools),
                tool_choice: self.tool_choice(turn),
                strict: self.config.strict,
                calls_per_turn: self.config.calls_per_turn,
                sampling: self.sampling(turn, seed, remaining),
                grammar: self.config.grammar.clone(),
                previous: previous.take(),
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
                        break (StopReason::WallTime, None);
                    }
                },
                None => generate.await,
            };
            // Release the request's share of the conversation so appending below does not
            // copy it.
            drop(request);
            let output = match output {
                Ok(o) => o,
                Err(ModelError::Cancelled) => break (StopReason::Cancelled, None),
                Err(e) => {
                    emit(AgentEvent::Error {
                        message: e.to_string(),
                    });
                    return Err(e);
                }
            };
            usage.prompt_tokens += output.usage.prompt_tokens;
            usage.completion_tokens += output.usage.completion_tokens;
            previous = match (&output.prompt_ids, &output.token_ids) {
                (Some(p), Some(t)) => Some(Arc::new(crate::model::PreviousTurn {
                    messages: asked_messages,
                    prompt_ids: p.clone(),
                    token_ids: t.clone(),
                })),
                _ => None,
            };
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
                Arc::make_mut(&mut messages).extend(parse_failure_feedback(&output));
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
                break (stop, Some(output.text));
            }

            let mut assistant = Message::new(Role::Assistant, output.text.clone());
            assistant.tool_calls = output.tool_calls.clone();
            Arc::make_mut(&mut messages).push(assistant);
            if output.tool_calls.iter().any(|c| self.is_call_only(&c.name)) {
                // The calls are the result; none of them is run.
                emit(AgentEvent::TurnFinished { turn, usage });
                break (StopReason::Calls, None);
            }
            for call in &output.tool_calls {
                emit(AgentEvent::ToolCallProposed {
                    turn,
                    call: call.clone(),
                });
            }
            // Each call's life (decision … result) is reported as it happens.
            let results = self
                .run_calls(&output.tool_calls, &events, cancel.child_token())
                .await;
            for (call, text) in output.tool_calls.iter().zip(results) {
                Arc::make_mut(&mut messages).push(Message::tool_result(call, text));
            }
            emit(AgentEvent::TurnFinished { turn, usage });
        };
        let (stop, answer) = ended;
        emit(AgentEvent::Finished {
            stop,
            answer: answer.clone(),
            turns: turn,
            usage,
        });
        Ok(RunOutcome {
            stop,
            answer,
            messages: Arc::unwrap_or_clone(messages),
            turns: turn,
            prompt_messages,
            usage,
            seed,
        })
    }

    /// What is left of the run's budgets before model call `turn + 1`: the tokens, and the
    /// time (`None`: no time limit) — or why the run must stop.
    fn budget_left(
        &self,
        turn: usize,
        usage: Usage,
        started: Instant,
        cancel: &CancellationToken,
    ) -> Result<(u64, Option<Duration>), StopReason> {
        if cancel.is_cancelled() {
            return Err(StopReason::Cancelled);
        }
        if turn >= self.config.max_turns {
            return Err(StopReason::MaxTurns);
        }
        let remaining = self
            .config
            .max_tokens
            .saturating_sub(usage.completion_tokens);
        if remaining == 0 {
            return Err(StopReason::MaxTokens);
        }
        let deadline = self
            .config
            .wall_time
            .map(|w| w.saturating_sub(started.elapsed()));
        if deadline == Some(Duration::ZERO) {
            return Err(StopReason::WallTime);
        }
        Ok((remaining, deadline))
    }

    /// The configured choice for the first call; `auto` after it (`none` stays `none`).
    fn tool_choice(&self, turn: usize) -> ToolChoice {
        match (&self.config.tool_choice, turn) {
            (ToolChoice::None, _) => ToolChoice::None,
            (c, 1) => c.clone(),
            _ => ToolChoice::Auto,
        }
    }

    /// Sampling of model call `turn`: its own seed, at most the tokens left in the run.
    fn sampling(&self, turn: usize, seed: Option<u64>, remaining: u64) -> Sampling {
        let mut sampling = self.config.sampling.clone();
        sampling.seed = seed.map(|s| crate::model::sampler::call_seed(s, turn - 1));
        sampling.max_tokens = sampling
            .max_tokens
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        sampling
    }

    /// Runs a turn's calls concurrently (bounded). Each call's events go out as they
    /// happen — its life from the gate's observer, its `ToolResult` the moment it returns
    /// — and the texts the model reads come back in call order.
    async fn run_calls(
        &self,
        calls: &[ToolCall],
        events: &UnboundedSender<AgentEvent>,
        cancel: CancellationToken,
    ) -> Vec<String> {
        // Collected (and boxed) first: a lazy `map` adaptor inside the returned future
        // makes it not `Send` for every lifetime, so it could not be spawned.
        // One observer for the turn's calls: each step names its call.
        let observer: Arc<dyn CallObserver> = Arc::new(CallEvents {
            events: events.clone(),
        });
        let observer = &observer;
        let futures: Vec<futures::future::BoxFuture<'_, String>> = calls
            .iter()
            .map(|call| {
                let ctx = CallContext {
                    limits: Limits::default(),
                    cancel: cancel.child_token(),
                    ..CallContext::default()
                };
                async move {
                    let request = CallRequest {
                        id: &call.id,
                        caller: &self.config.caller,
                        name: &call.name,
                        args: call.arguments.clone(),
                    };
                    let result = self
                        .gate
                        .call(request, self.approver.as_ref(), ctx, observer)
                        .await;
                    let text = render_result(&result);
                    // The gate's `Finished` step, sent from here so the result moves into
                    // the event instead of being copied.
                    let _ = events.send(AgentEvent::ToolResult {
                        call_id: call.id.clone(),
                        tool: call.name.clone(),
                        result: Box::new(result),
                    });
                    text
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

/// What goes back to the model when its calls could not be used: its reply as written
/// (no calls), then a user message listing what was wrong.
fn parse_failure_feedback(output: &ModelOutput) -> [Message; 2] {
    let errors: Vec<String> = output
        .parse_failures
        .iter()
        .map(|f| format!("- {}", f.error))
        .collect();
    [
        Message::new(Role::Assistant, raw_reply(output)),
        Message::new(
            Role::User,
            format!(
                "Your tool call could not be used:\n{}\nNo tool was run. Try again or answer directly.",
                errors.join("\n")
            ),
        ),
    ]
}

/// What the model wrote, calls included, for the transcript when its calls failed: the
/// reply as generated when the backend has it, else its text with the failed calls after.
fn raw_reply(output: &ModelOutput) -> String {
    if let Some(raw) = &output.raw {
        return raw.clone();
    }
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
        Some(kind) => format!("error ({kind}): {}", result.outcome.text),
    }
}

/// The calls' lives as agent events, on the run's channel.
struct CallEvents {
    events: UnboundedSender<AgentEvent>,
}

impl CallObserver for CallEvents {
    fn observe(&self, call_id: &str, event: CallEvent<'_>) {
        // Sent by `run_calls` with the returned call (moved, not copied): nothing to do,
        // and nothing to allocate, on the hot path.
        if let CallEvent::Finished(_) = event {
            return;
        }
        let call_id = call_id.to_owned();
        let event = match event {
            CallEvent::Decided(d) => AgentEvent::PolicyDecision {
                call_id,
                verdict: d.verdict,
                rule_id: d.rule_id.clone(),
                reason: d.reason.clone(),
            },
            CallEvent::ApprovalRequested(r) => AgentEvent::ApprovalRequested {
                call_id,
                tool: r.tool.clone(),
                arguments: r.args.clone(),
            },
            CallEvent::ApprovalResolved(a) => AgentEvent::ApprovalResolved {
                call_id,
                approval: a.clone(),
            },
            CallEvent::Started(limits) => AgentEvent::ToolStarted {
                call_id,
                limits: *limits,
            },
            CallEvent::Progress(p) => AgentEvent::ToolProgress {
                call_id,
                progress: p.progress,
                total: p.total,
                message: p.message.clone(),
            },
            CallEvent::Finished(_) => return,
        };
        // A closed receiver is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
