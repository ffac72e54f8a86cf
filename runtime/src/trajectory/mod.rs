//! Trajectory records (`verity.traj/1`): what one agent run did, with the engine's exact
//! token ids and logprobs per model call, every tool call with its policy decision and an
//! `io_digest`, the model's identity, and a hash chain over the file.
//!
//! The principle: record each model call's ids as the engine produced them, never
//! re-tokenise. Whether the calls join into one token sequence is *checked* per turn
//! (`prefix_consistent`: does the next prompt start with this prompt + this reply?); the
//! flat trainer view (`tokens`) is only written when every turn joins, and otherwise says
//! why not — a trainer must then use the per-turn data instead of a silently drifted
//! sequence. The schema is documented in `docs/trajectory.schema.json`.

pub mod canonical;
pub mod chain;
pub mod group;

use std::{
    collections::BTreeMap,
    io::Read,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::{
    agent::{AgentConfig, AgentEvent, RunOutcome},
    model::{sampler::call_seed, Message, ModelBackend, ModelInfo, ModelOutput, Role, ToolDef},
};

/// Schema id written in every record.
pub const SCHEMA: &str = "verity.traj/1";

/// Collects one run's events into a record.
#[derive(Debug, Default)]
pub struct TrajectoryBuilder {
    /// Token ids of each tool result as the model read it (see [`tool_tokens`]).
    tool_tokens: Option<Vec<Vec<u32>>>,
    turns: Vec<(ModelOutput, u64)>,
    tool_calls: Vec<Value>,
    pending: BTreeMap<String, Value>,
    parse_failures: Vec<Value>,
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
                self.pending.insert(
                    call.id.clone(),
                    json!({"id": call.id, "turn": turn, "name": call.name, "arguments": call.arguments}),
                );
            }
            AgentEvent::ParseFailure { turn, failure } => self
                .parse_failures
                .push(json!({"turn": turn, "raw": failure.raw, "error": failure.error})),
            AgentEvent::ToolResult {
                call_id, result, ..
            } => {
                let mut entry = self
                    .pending
                    .remove(call_id)
                    .unwrap_or_else(|| json!({"id": call_id}));
                let status = match result.outcome.failure {
                    None => "ok".to_owned(),
                    Some(k) => serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "error".into()),
                };
                let io = json!({
                    "tool": result.decision.tool,
                    "arguments": entry.get("arguments").cloned().unwrap_or(Value::Null),
                    "text": result.outcome.text,
                    "structured": result.outcome.structured,
                    "failure": result.outcome.failure,
                });
                if let Value::Object(m) = &mut entry {
                    m.insert("status".into(), json!(status));
                    m.insert(
                        "decision".into(),
                        json!({
                            "verdict": result.decision.verdict,
                            "rule_id": result.decision.rule_id,
                            "reason": result.decision.reason,
                        }),
                    );
                    m.insert("approval".into(), json!(result.approval));
                    m.insert("limits".into(), json!(result.limits));
                    m.insert("output".into(), json!(result.outcome.text));
                    m.insert("structured".into(), json!(result.outcome.structured));
                    m.insert("wall_ms".into(), json!(micros_as_ms(result.duration)));
                    m.insert("io_digest".into(), json!(canonical::digest(&io)));
                }
                self.tool_calls.push(entry);
            }
            _ => {}
        }
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
        let this_run = &results[results.len().saturating_sub(self.tool_calls.len())..];
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

    /// The record of the run (not yet sealed: [`chain::ChainWriter::append`] adds
    /// `integrity`).
    pub fn finish(
        self,
        model: &ModelInfo,
        config: &AgentConfig,
        tools: &[ToolDef],
        outcome: &RunOutcome,
        task: Value,
    ) -> Value {
        let turns: Vec<Value> = self
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
        json!({
            "schema": SCHEMA,
            "kind": "traj",
            "id": run_id(),
            "created_unix_ms": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "task": task,
            "policy": model_identity(model),
            "sampling": {
                "greedy": config.sampling.greedy,
                "temperature": config.sampling.temperature,
                "top_p": config.sampling.top_p,
                "top_k": config.sampling.top_k,
                "seed": outcome.seed,
                "max_tokens_per_turn": config.sampling.max_tokens,
                "max_tokens_total": config.max_tokens,
                "max_turns": config.max_turns,
                "strict": config.strict,
                "tool_choice": config.tool_choice,
            },
            "tools": tools.iter().map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters})).collect::<Vec<_>>(),
            "messages": outcome.messages.iter().map(message_json).collect::<Vec<_>>(),
            "turns": turns,
            "tokens": tokens,
            "tool_calls": self.tool_calls,
            "parse_failures": self.parse_failures,
            "reward": Value::Null,
            "outcome": {
                "stop": outcome.stop,
                "answer": outcome.answer,
                "truncated": truncated,
                "turns": outcome.turns,
                "prompt_tokens": outcome.usage.prompt_tokens,
                "completion_tokens": outcome.usage.completion_tokens,
            },
        })
    }
}

fn message_json(m: &Message) -> Value {
    let mut v = json!({"role": m.role.as_str(), "content": m.content});
    if let Value::Object(o) = &mut v {
        if !m.tool_calls.is_empty() {
            o.insert(
                "tool_calls".into(),
                m.tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments.to_string()}}))
                    .collect(),
            );
        }
        if let Some(id) = &m.tool_call_id {
            o.insert("tool_call_id".into(), json!(id));
        }
        if let Some(name) = &m.name {
            o.insert("name".into(), json!(name));
        }
    }
    v
}

/// An f32 as the f64 nearest its shortest decimal form (what a reader of the JSON gets
/// back exactly, and what it meant: `-0.1`, not `-0.10000000149011612`).
fn short(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    format!("{x}").parse().unwrap_or(f64::from(x))
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
) -> Value {
    // Does the next prompt continue this prompt + this reply token for token?
    let joined: Option<Vec<u32>> = match (&out.prompt_ids, &out.token_ids) {
        (Some(p), Some(g)) => Some(p.iter().chain(g).copied().collect()),
        _ => None,
    };
    let (prefix_len, consistent, new_ids) =
        match (next.and_then(|n| n.prompt_ids.as_ref()), &joined) {
            (Some(np), Some(j)) => {
                let k = common_prefix(np, j);
                (Some(k), Some(k == j.len()), Some(np[k..].to_vec()))
            }
            _ => (None, None, None),
        };
    json!({
        "index": i,
        "seed": seed,
        "prompt_len": out.prompt_ids.as_ref().map(Vec::len),
        "prompt_ids": out.prompt_ids,
        "gen_ids": out.token_ids,
        "gen_logprobs": out.logprobs.as_ref().map(|l| l.iter().map(|x| short(*x)).collect::<Vec<_>>()),
        "finish_reason": out.finish,
        "text": out.text,
        "reasoning": out.reasoning,
        "usage": out.usage,
        "model_ms": ms,
        "missing": out.missing,
        "next": {
            "prefix_len": prefix_len,
            "prefix_consistent": consistent,
            "new_prompt_ids": new_ids,
        },
    })
}

/// The flat view: one prompt, one response sequence with a loss mask (1 only on sampled
/// tokens, the EOS/stop token included) and rollout logprobs (0 where the mask is 0).
/// Relabels `inserted` tokens that are a tool result's ids as `tool`; when every result
/// was found, the other inserted tokens are template scaffold (`template`). A result not
/// found (a template that rewrites tool text) leaves the labels `inserted`: unknown, not
/// guessed.
fn label_inserted(response: &[u32], source: &mut [&str], tools: &[Vec<u32>]) {
    let mut all_found = true;
    let mut from = 0;
    for seq in tools.iter().filter(|t| !t.is_empty()) {
        let found = (from..response.len().saturating_sub(seq.len() - 1)).find(|&i| {
            response[i..i + seq.len()] == seq[..]
                && source[i..i + seq.len()].iter().all(|s| *s == "inserted")
        });
        match found {
            Some(i) => {
                source[i..i + seq.len()]
                    .iter_mut()
                    .for_each(|s| *s = "tool");
                from = i + seq.len();
            }
            None => all_found = false,
        }
    }
    if all_found {
        source
            .iter_mut()
            .filter(|s| **s == "inserted")
            .for_each(|s| *s = "template");
    }
}

fn flat_view(turns: &[&ModelOutput], tool_tokens: Option<&[Vec<u32>]>) -> Value {
    let Some(first) = turns.first() else {
        return json!({"available": false, "why": "no model call"});
    };
    let Some(prompt) = &first.prompt_ids else {
        return json!({"available": false, "why": "the first prompt's ids are missing"});
    };
    let mut response: Vec<u32> = Vec::new();
    let mut mask: Vec<u8> = Vec::new();
    let mut logprobs: Vec<f64> = Vec::new();
    let mut source: Vec<&str> = Vec::new();
    let mut so_far: Vec<u32> = prompt.clone();
    for (i, t) in turns.iter().enumerate() {
        let (Some(p), Some(g), Some(lp)) = (&t.prompt_ids, &t.token_ids, &t.logprobs) else {
            return json!({"available": false, "why": format!("turn {i}: token ids or logprobs are missing")});
        };
        if i > 0 {
            if common_prefix(p, &so_far) != so_far.len() {
                return json!({
                    "available": false,
                    "why": format!("turn {i}: the prompt does not continue the previous turn token for token (the chat template re-renders history differently from what was generated); use the per-turn ids"),
                });
            }
            let inserted = &p[so_far.len()..];
            response.extend_from_slice(inserted);
            mask.extend(std::iter::repeat_n(0, inserted.len()));
            logprobs.extend(std::iter::repeat_n(0.0, inserted.len()));
            source.extend(std::iter::repeat_n("inserted", inserted.len()));
            so_far.extend_from_slice(inserted);
        }
        if lp.len() != g.len() {
            return json!({"available": false, "why": format!("turn {i}: {} logprobs for {} tokens", lp.len(), g.len())});
        }
        response.extend_from_slice(g);
        mask.extend(std::iter::repeat_n(1, g.len()));
        logprobs.extend(lp.iter().map(|x| short(*x)));
        source.extend(std::iter::repeat_n("sampled", g.len()));
        so_far.extend_from_slice(g);
    }
    if let Some(tools) = tool_tokens {
        label_inserted(&response, &mut source, tools);
    }
    json!({
        "available": true,
        "prompt_ids": prompt,
        "response_ids": response,
        "loss_mask": mask,
        "rollout_logprobs": logprobs,
        "source": source,
    })
}

/// Who generated: engine, model, and digests of its local files.
fn model_identity(m: &ModelInfo) -> Value {
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
    json!({
        "engine": m.engine,
        "engine_version": m.engine_version,
        "model": m.model,
        "device": m.device,
        "dtype": m.dtype,
        "context_window": m.context_window,
        "digests": files,
        "logprobs_mode": m.logprobs_mode,
    })
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
            usage: Usage::default(),
            seed: None,
        };
        let mut b = TrajectoryBuilder::new();
        b.observe(&AgentEvent::ToolCallProposed {
            turn: 1,
            call: call.clone(),
        });
        b.tool_calls.push(json!({"id": "c2"}));
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
        let v = flat_view(&[&a, &b], None);
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
        let v = flat_view(&[&a, &c], Some(&[vec![8, 9]]));
        assert_eq!(
            v["source"],
            json!(["sampled", "sampled", "template", "tool", "tool", "template", "sampled"])
        );
        assert_eq!(v["loss_mask"], json!([1, 1, 0, 0, 0, 0, 1]));
        // A result that cannot be found leaves the labels unknown.
        let v = flat_view(&[&a, &c], Some(&[vec![8, 9], vec![42]]));
        assert_eq!(v["source"][2], "inserted");
        let t = turn_record(0, &a, 1, None, Some(&b));
        assert_eq!(t["next"]["prefix_consistent"], true);
        assert_eq!(t["next"]["new_prompt_ids"], json!([9, 9]));
    }

    #[test]
    fn drift_at_the_template_boundary_is_reported_not_papered_over() {
        let a = out(vec![1, 2], vec![3, 4]);
        let b = out(vec![1, 2, 3, 7, 9], vec![5]);
        let v = flat_view(&[&a, &b], None);
        assert_eq!(v["available"], false);
        assert!(v["why"].as_str().unwrap().contains("turn 1"));
        let t = turn_record(0, &a, 1, None, Some(&b));
        assert_eq!(t["next"]["prefix_consistent"], false);
        assert_eq!(t["next"]["prefix_len"], 3);
    }
}
