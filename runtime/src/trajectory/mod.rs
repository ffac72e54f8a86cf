//! Trajectory records (`verity.traj/1`): what one agent run did, with the engine's exact
//! token ids and logprobs per model call, every tool call with its policy decision and an
//! `io_digest`, the model's identity, and a hash chain over the file.
//!
//! The principle: record each model call's ids as the engine produced them, never
//! re-tokenise. Whether the calls join into one token sequence is *checked* per turn
//! (`prefix_consistent`: does the next prompt start with this prompt + this reply?); the
//! flat trainer view (`tokens`) is only written when every turn joins, and otherwise says
//! why not — a trainer must then use the per-turn data instead of a silently drifted
//! sequence. The record types are in [`record`]; `docs/trajectory.schema.json` is generated
//! from them.
//!
//! Every front end records a run the same way: feed the run's events to a
//! [`TrajectoryBuilder`], then [`record_run`] turns it and the run's outcome into a
//! [`TrajRecord`] that a [`chain::ChainWriter`] seals and appends.

pub mod canonical;
pub mod chain;
pub mod group;
pub mod record;
pub mod replay;
pub mod sign;

use std::{
    collections::BTreeMap,
    io::Read,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use record::{
    CallStatus, ChatFunction, ChatMessage, ChatToolCall, DecisionRecord, FlatTokens, Logprob,
    ModelIdentity, NextPrompt, OfferedTool, Outcome, ParseFailureRecord, SamplingRecord,
    TokenSource, TokenView, ToolCallRecord, TurnRecord,
};
pub use record::{Record, TaskInfo, TrajRecord, SCHEMA};

use crate::{
    agent::{AgentConfig, AgentEvent, RunOutcome},
    gate::GatedCall,
    model::{
        sampler::call_seed, Message, ModelBackend, ModelInfo, ModelOutput, Role, ToolCall, ToolDef,
    },
};

/// Collects one run's events into a record.
#[derive(Debug, Default)]
pub struct TrajectoryBuilder {
    /// Token ids of each tool result as the model read it (see [`Self::with_tool_tokens`]).
    tool_tokens: Option<Vec<Vec<u32>>>,
    turns: Vec<(ModelOutput, u64)>,
    /// Calls in the order the model proposed them (parallel calls finish in any order),
    /// with their result once it arrives.
    tool_calls: Vec<(u32, ToolCall, Option<Box<GatedCall>>)>,
    parse_failures: Vec<ParseFailureRecord>,
}

impl TrajectoryBuilder {
    /// A builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one event (call for every event of the run, in order).
    pub fn observe(&mut self, event: &AgentEvent) {
        match event {
            AgentEvent::ModelOutput {
                output,
                duration_ms,
                ..
            } => self.turns.push(((**output).clone(), *duration_ms)),
            AgentEvent::ToolCallProposed { turn, call } => {
                let turn = u32::try_from(*turn).unwrap_or(u32::MAX);
                self.tool_calls.push((turn, call.clone(), None));
            }
            AgentEvent::ParseFailure { turn, failure } => {
                self.parse_failures.push(ParseFailureRecord {
                    turn: *turn,
                    raw: failure.raw.clone(),
                    error: failure.error.clone(),
                })
            }
            AgentEvent::ToolResult {
                call_id,
                tool,
                result,
            } => {
                let slot = self
                    .tool_calls
                    .iter_mut()
                    .find(|(_, c, done)| c.id == *call_id && done.is_none());
                match slot {
                    Some((_, _, done)) => *done = Some(result.clone()),
                    // A result for a call never proposed (not from the agent loop): kept
                    // with what is known of it.
                    None => self.tool_calls.push((
                        0,
                        ToolCall {
                            id: call_id.clone(),
                            name: tool.clone(),
                            arguments: Value::Null,
                        },
                        Some(result.clone()),
                    )),
                }
            }
            _ => {}
        }
    }

    /// Calls whose result was observed.
    fn finished_calls(&self) -> usize {
        self.tool_calls.iter().filter(|c| c.2.is_some()).count()
    }

    /// Tokenizes this run's tool results with the model's own tokenizer so the flat view
    /// can label inserted tokens as tool output or template. They are the last tool
    /// messages of the conversation, one per call observed (earlier exchanges' results are
    /// part of the first prompt, not inserted). Backends that cannot tokenize leave the
    /// labels `inserted`.
    pub async fn with_tool_tokens(
        mut self,
        model: &dyn ModelBackend,
        outcome: &RunOutcome,
    ) -> Self {
        let results: Vec<&Message> = outcome
            .messages
            .iter()
            .filter(|m| m.role == Role::Tool)
            .collect();
        let this_run = &results[results.len().saturating_sub(self.finished_calls())..];
        let mut tokens = Vec::with_capacity(this_run.len());
        for m in this_run {
            match model.tokenize_text(&m.content).await {
                Some(t) => tokens.push(t),
                None => return self,
            }
        }
        self.tool_tokens = Some(tokens);
        self
    }

    /// The record of the run (not yet sealed: [`chain::ChainWriter::append_record`] adds
    /// `integrity`).
    pub fn finish(
        self,
        model: &ModelInfo,
        config: &AgentConfig,
        tools: &[ToolDef],
        outcome: &RunOutcome,
        task: TaskInfo,
    ) -> TrajRecord {
        let turns: Vec<TurnRecord> = self
            .turns
            .iter()
            .enumerate()
            .map(|(i, (out, ms))| {
                let seed = outcome.seed.map(|s| call_seed(s, i));
                turn_record(i, out, *ms, seed, self.turns.get(i + 1).map(|t| &t.0))
            })
            .collect();
        let tokens = flat_view(
            &self.turns.iter().map(|t| &t.0).collect::<Vec<_>>(),
            self.tool_tokens.as_deref(),
        );
        let truncated = self
            .turns
            .last()
            .is_some_and(|(o, _)| o.finish == Some(crate::model::Finish::Length));
        TrajRecord {
            schema: SCHEMA.to_owned(),
            id: run_id(),
            created_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            task,
            group_id: None,
            sample_index: None,
            prompt_messages: Some(outcome.prompt_messages),
            policy: model_identity(model),
            sampling: SamplingRecord {
                greedy: config.sampling.greedy,
                temperature: config.sampling.temperature,
                top_p: config.sampling.top_p,
                top_k: config.sampling.top_k,
                seed: outcome.seed,
                max_tokens_per_turn: config.sampling.max_tokens,
                max_tokens_total: config.max_tokens,
                max_turns: config.max_turns,
                strict: config.strict,
                tool_choice: config.tool_choice.clone(),
            },
            tools: tools
                .iter()
                .map(|t| OfferedTool {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.parameters.clone(),
                })
                .collect(),
            messages: outcome.messages.iter().map(chat_message).collect(),
            turns,
            tokens,
            tool_calls: self
                .tool_calls
                .into_iter()
                .filter_map(|(turn, call, result)| Some(call_record(turn, call, &*result?)))
                .collect(),
            parse_failures: self.parse_failures,
            reward: None,
            outcome: Outcome {
                stop: outcome.stop,
                answer: outcome.answer.clone(),
                truncated,
                turns: outcome.turns,
                prompt_tokens: outcome.usage.prompt_tokens,
                completion_tokens: outcome.usage.completion_tokens,
            },
            integrity: None,
        }
    }
}

/// The one way a run becomes a record: this run's tool results tokenized with the model's
/// own tokenizer (so the flat view can tell tool output from template), then the record
/// built from the observed events and the outcome. `verity run --record`, `verity rollout`
/// and `verity chat --record` all go through here.
pub async fn record_run(
    events: TrajectoryBuilder,
    model: &dyn ModelBackend,
    config: &AgentConfig,
    tools: &[ToolDef],
    outcome: &RunOutcome,
    task: TaskInfo,
) -> TrajRecord {
    events
        .with_tool_tokens(model, outcome)
        .await
        .finish(model.info(), config, tools, outcome, task)
}

/// What a tool call recorded: the request, the decision, the result and its `io_digest`.
fn call_record(turn: u32, call: ToolCall, result: &GatedCall) -> ToolCallRecord {
    let io = json!({
        "tool": result.decision.tool,
        "arguments": call.arguments,
        "text": result.outcome.text,
        "structured": result.outcome.structured,
        "failure": result.outcome.failure,
    });
    ToolCallRecord {
        id: call.id,
        turn: turn as usize,
        name: call.name,
        io_digest: canonical::digest(&io),
        arguments: call.arguments,
        status: CallStatus::of(result.outcome.failure),
        decision: DecisionRecord {
            verdict: result.decision.verdict,
            rule_id: result.decision.rule_id.clone(),
            reason: result.decision.reason.clone(),
            tool: Some(result.decision.tool.clone()),
        },
        approval: result.approval.clone(),
        limits: result.limits,
        output: result.outcome.text.clone(),
        structured: result.outcome.structured.clone(),
        wall_ms: micros_as_ms(result.duration),
    }
}

fn chat_message(m: &Message) -> ChatMessage {
    ChatMessage {
        role: m.role.as_str().to_owned(),
        content: m.content.clone(),
        tool_calls: m
            .tool_calls
            .iter()
            .map(|c| ChatToolCall {
                id: c.id.clone(),
                kind: "function".into(),
                function: ChatFunction {
                    name: c.name.clone(),
                    arguments: c.arguments.to_string(),
                },
            })
            .collect(),
        tool_call_id: m.tool_call_id.clone(),
        name: m.name.clone(),
    }
}

/// An f32 as the f64 nearest its shortest decimal form (what a reader of the JSON gets
/// back exactly, and what it meant: `-0.1`, not `-0.10000000149011612`).
fn short(x: f32) -> Logprob {
    if !x.is_finite() {
        return Logprob(f64::from(x));
    }
    Logprob(format!("{x}").parse().unwrap_or(f64::from(x)))
}

/// A duration in milliseconds, to the microsecond.
fn micros_as_ms(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Length of the common prefix.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn turn_record(
    i: usize,
    out: &ModelOutput,
    ms: u64,
    seed: Option<u64>,
    next: Option<&ModelOutput>,
) -> TurnRecord {
    // Does the next prompt continue this prompt + this reply token for token?
    let joined: Option<Vec<u32>> = match (&out.prompt_ids, &out.token_ids) {
        (Some(p), Some(g)) => Some(p.iter().chain(g).copied().collect()),
        _ => None,
    };
    let next = match (next.and_then(|n| n.prompt_ids.as_ref()), &joined) {
        (Some(np), Some(j)) => {
            let k = common_prefix(np, j);
            NextPrompt {
                prefix_len: Some(k),
                prefix_consistent: Some(k == j.len()),
                new_prompt_ids: Some(np[k..].to_vec()),
            }
        }
        _ => NextPrompt::default(),
    };
    TurnRecord {
        index: i,
        seed,
        prompt_len: out.prompt_ids.as_ref().map(Vec::len),
        prompt_ids: out.prompt_ids.clone(),
        gen_ids: out.token_ids.clone(),
        gen_logprobs: out
            .logprobs
            .as_ref()
            .map(|l| l.iter().map(|x| short(*x)).collect()),
        sampling_logprobs: out
            .sampling_logprobs
            .as_ref()
            .map(|l| l.iter().map(|x| short(*x)).collect()),
        finish_reason: out.finish.clone(),
        text: out.text.clone(),
        reasoning: out.reasoning.clone(),
        usage: out.usage,
        model_ms: ms,
        prompt_view: out.prompt_view,
        missing: out.missing.clone(),
        next,
    }
}

/// Relabels `inserted` tokens that are a tool result's ids as `tool`; when every result
/// was found, the other inserted tokens are template scaffold (`template`). A result not
/// found (a template that rewrites tool text) leaves the labels `inserted`: unknown, not
/// guessed.
fn label_inserted(response: &[u32], source: &mut [TokenSource], tools: &[Vec<u32>]) {
    let mut all_found = true;
    let mut from = 0;
    for seq in tools.iter().filter(|t| !t.is_empty()) {
        let found = (from..response.len().saturating_sub(seq.len() - 1)).find(|&i| {
            response[i..i + seq.len()] == seq[..]
                && source[i..i + seq.len()]
                    .iter()
                    .all(|s| *s == TokenSource::Inserted)
        });
        match found {
            Some(i) => {
                source[i..i + seq.len()]
                    .iter_mut()
                    .for_each(|s| *s = TokenSource::Tool);
                from = i + seq.len();
            }
            None => all_found = false,
        }
    }
    if all_found {
        source
            .iter_mut()
            .filter(|s| **s == TokenSource::Inserted)
            .for_each(|s| *s = TokenSource::Template);
    }
}

/// The flat view: one prompt, one response sequence with a loss mask (1 only on sampled
/// tokens, the EOS/stop token included) and rollout logprobs (0 where the mask is 0).
fn flat_view(turns: &[&ModelOutput], tool_tokens: Option<&[Vec<u32>]>) -> TokenView {
    let Some(first) = turns.first() else {
        return TokenView::unavailable("no model call");
    };
    let Some(prompt) = &first.prompt_ids else {
        return TokenView::unavailable("the first prompt's ids are missing");
    };
    let mut response: Vec<u32> = Vec::new();
    let mut mask: Vec<u8> = Vec::new();
    let mut logprobs: Vec<Logprob> = Vec::new();
    // The sampling-distribution logprobs, while every turn has them.
    let mut sampling: Option<Vec<Logprob>> = Some(Vec::new());
    let mut source: Vec<TokenSource> = Vec::new();
    let mut so_far: Vec<u32> = prompt.clone();
    for (i, t) in turns.iter().enumerate() {
        let (Some(p), Some(g), Some(lp)) = (&t.prompt_ids, &t.token_ids, &t.logprobs) else {
            return TokenView::unavailable(format!("turn {i}: token ids or logprobs are missing"));
        };
        if i > 0 {
            if common_prefix(p, &so_far) != so_far.len() {
                return TokenView::unavailable(format!(
                    "turn {i}: the prompt does not continue the previous turn token for token (the chat template re-renders history differently from what was generated); use the per-turn ids"
                ));
            }
            let inserted = &p[so_far.len()..];
            response.extend_from_slice(inserted);
            mask.extend(std::iter::repeat_n(0, inserted.len()));
            logprobs.extend(std::iter::repeat_n(Logprob(0.0), inserted.len()));
            if let Some(s) = &mut sampling {
                s.extend(std::iter::repeat_n(Logprob(0.0), inserted.len()));
            }
            source.extend(std::iter::repeat_n(TokenSource::Inserted, inserted.len()));
            so_far.extend_from_slice(inserted);
        }
        if lp.len() != g.len() {
            return TokenView::unavailable(format!(
                "turn {i}: {} logprobs for {} tokens",
                lp.len(),
                g.len()
            ));
        }
        response.extend_from_slice(g);
        mask.extend(std::iter::repeat_n(1, g.len()));
        logprobs.extend(lp.iter().map(|x| short(*x)));
        sampling = match (sampling, &t.sampling_logprobs) {
            (Some(mut s), Some(slp)) if slp.len() == g.len() => {
                s.extend(slp.iter().map(|x| short(*x)));
                Some(s)
            }
            _ => None,
        };
        source.extend(std::iter::repeat_n(TokenSource::Sampled, g.len()));
        so_far.extend_from_slice(g);
    }
    if let Some(tools) = tool_tokens {
        label_inserted(&response, &mut source, tools);
    }
    TokenView {
        available: true,
        why: None,
        view: Some(FlatTokens {
            prompt_ids: prompt.clone(),
            response_ids: response,
            loss_mask: mask,
            rollout_logprobs: logprobs,
            sampling_logprobs: sampling,
            source,
        }),
    }
}

/// Who generated: engine, model, and digests of its local files.
fn model_identity(m: &ModelInfo) -> ModelIdentity {
    let mut files = BTreeMap::new();
    if let Some(root) = &m.files {
        for (key, name) in [
            ("config", "config.json"),
            ("tokenizer", "tokenizer.json"),
            ("tokenizer_config", "tokenizer_config.json"),
            ("generation_config", "generation_config.json"),
        ] {
            if let Some(d) = file_digest(&root.join(name)) {
                files.insert(key.to_owned(), d);
            }
        }
        let weights = weight_files(root);
        if !weights.is_empty() {
            let mut h = Sha256::new();
            for w in &weights {
                if let Some(d) = file_digest(w) {
                    h.update(d.as_bytes());
                }
            }
            files.insert(
                "weights".to_owned(),
                format!("sha256:{}", hex::encode(h.finalize())),
            );
        }
    }
    ModelIdentity {
        engine: m.engine.clone(),
        engine_version: m.engine_version.clone(),
        model: m.model.clone(),
        device: m.device.clone(),
        dtype: m.dtype.clone(),
        context_window: m.context_window,
        digests: files,
        logprobs_mode: m.logprobs_mode.clone(),
        request_extra: m.request_extra.clone(),
    }
}

fn weight_files(root: &Path) -> Vec<std::path::PathBuf> {
    if root.is_file() {
        return vec![root.to_path_buf()];
    }
    let mut out: Vec<_> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "safetensors" || e == "gguf" || e == "bin")
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn file_digest(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A sortable unique id: milliseconds since the epoch + process-local counter + pid.
fn run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{ms:013}-{:05}-{:04}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_value<T: serde::Serialize>(t: T) -> Value {
        serde_json::to_value(t).unwrap()
    }
    use crate::model::{Finish, Usage};

    fn out(prompt: Vec<u32>, gen: Vec<u32>) -> ModelOutput {
        ModelOutput {
            logprobs: Some(vec![-0.5; gen.len()]),
            prompt_ids: Some(prompt),
            token_ids: Some(gen),
            finish: Some(Finish::Stop),
            usage: Usage::default(),
            ..ModelOutput::default()
        }
    }

    /// A backend whose tokenizer maps each byte to its value (like the tiny model's).
    #[derive(Debug)]
    struct ByteTokenizer(ModelInfo);

    impl ModelBackend for ByteTokenizer {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn generate<'a>(
            &'a self,
            _request: &'a crate::model::ModelRequest,
            _on_token: crate::model::TokenSink,
            _cancel: tokio_util::sync::CancellationToken,
        ) -> futures::future::BoxFuture<'a, Result<ModelOutput, crate::model::ModelError>> {
            Box::pin(async { Err(crate::model::ModelError::Cancelled) })
        }
        fn tokenize_text<'a>(
            &'a self,
            text: &'a str,
        ) -> futures::future::BoxFuture<'a, Option<Vec<u32>>> {
            Box::pin(async move { Some(text.bytes().map(u32::from).collect()) })
        }
    }

    /// Only this run's tool results are looked for: an earlier exchange's result is part
    /// of the first prompt, so it must not be searched among the inserted tokens.
    #[tokio::test]
    async fn tool_tokens_cover_only_this_runs_results() {
        let model = ByteTokenizer(ModelInfo::default());
        let call = crate::model::ToolCall {
            id: "c2".into(),
            name: "calculator".into(),
            arguments: json!({}),
        };
        let earlier = crate::model::ToolCall {
            id: "c1".into(),
            ..call.clone()
        };
        let outcome = RunOutcome {
            stop: crate::agent::StopReason::Answer,
            answer: Some("ok".into()),
            messages: vec![
                Message::tool_result(&earlier, "old"),
                Message::tool_result(&call, "new"),
            ],
            turns: 2,
            prompt_messages: 0,
            usage: Usage::default(),
            seed: None,
        };
        let mut b = TrajectoryBuilder::new();
        b.observe(&AgentEvent::ToolCallProposed {
            turn: 1,
            call: call.clone(),
        });
        b.observe(&AgentEvent::ToolResult {
            call_id: "c2".into(),
            tool: "calculator".into(),
            result: Box::new(crate::gate::GatedCall {
                decision: verity_policies::Decision {
                    verdict: verity_policies::Verdict::Allow,
                    rule_id: "default".into(),
                    reason: String::new(),
                    limits: Default::default(),
                    tool: "calculator".into(),
                    matched: Vec::new(),
                },
                approval: None,
                outcome: verity_tools::ToolOutcome {
                    text: "new".into(),
                    structured: None,
                    failure: None,
                },
                limits: Default::default(),
                duration: std::time::Duration::ZERO,
            }),
        });
        let b = b.with_tool_tokens(&model, &outcome).await;
        assert_eq!(
            b.tool_tokens,
            Some(vec![b"new".iter().map(|&x| u32::from(x)).collect()])
        );
    }

    #[test]
    fn flat_view_masks_only_sampled_tokens() {
        let a = out(vec![1, 2], vec![3, 4]);
        let b = out(vec![1, 2, 3, 4, 9, 9], vec![5]);
        let v = to_value(flat_view(&[&a, &b], None));
        assert_eq!(v["available"], true);
        assert_eq!(v["response_ids"], json!([3, 4, 9, 9, 5]));
        assert_eq!(v["loss_mask"], json!([1, 1, 0, 0, 1]));
        assert_eq!(v["rollout_logprobs"], json!([-0.5, -0.5, 0.0, 0.0, -0.5]));
        assert_eq!(
            v["source"],
            json!(["sampled", "sampled", "inserted", "inserted", "sampled"])
        );
        // With the tool result's ids: tool output vs template scaffold.
        let c = out(vec![1, 2, 3, 4, 7, 8, 9, 6], vec![5]);
        let v = to_value(flat_view(&[&a, &c], Some(&[vec![8, 9]])));
        assert_eq!(
            v["source"],
            json!(["sampled", "sampled", "template", "tool", "tool", "template", "sampled"])
        );
        assert_eq!(v["loss_mask"], json!([1, 1, 0, 0, 0, 0, 1]));
        // A result that cannot be found leaves the labels unknown.
        let v = to_value(flat_view(&[&a, &c], Some(&[vec![8, 9], vec![42]])));
        assert_eq!(v["source"][2], "inserted");
        let t = to_value(turn_record(0, &a, 1, None, Some(&b)));
        assert_eq!(t["next"]["prefix_consistent"], true);
        assert_eq!(t["next"]["new_prompt_ids"], json!([9, 9]));
    }

    #[test]
    fn drift_at_the_template_boundary_is_reported_not_papered_over() {
        let a = out(vec![1, 2], vec![3, 4]);
        let b = out(vec![1, 2, 3, 7, 9], vec![5]);
        let v = to_value(flat_view(&[&a, &b], None));
        assert_eq!(v["available"], false);
        assert!(v["why"].as_str().unwrap().contains("turn 1"));
        let t = to_value(turn_record(0, &a, 1, None, Some(&b)));
        assert_eq!(t["next"]["prefix_consistent"], false);
        assert_eq!(t["next"]["prefix_len"], 3);
    }
}
