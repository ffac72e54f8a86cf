//! One trajectory record → one row of a trainer's format. Rows are JSON values; the verl
//! writer turns them into Parquet (`verl.rs`), the others are written as JSONL.
//!
//! Every row splits the conversation where the run began: the prompt is exactly the
//! messages the run was given (system prompt and the task's messages, few-shot turns
//! included), the completion is what the run added. Rows of rollout samples carry their
//! group: id, sample index, round, and the three advantages from the group record.

use serde_json::{json, Value};

use crate::trajectory::{
    record::{ChatMessage, FlatTokens, GrpoNorm},
    TrajRecord,
};

/// Why a record has no row in a format (the run is skipped and counted, not an error).
pub type Skip = String;

/// What the group record says about one of its members.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The group (task) id.
    pub group_id: String,
    /// The round of samples the group kept (dynamic sampling).
    pub round: usize,
    /// The member's position in the group.
    pub member: usize,
    /// Members in the group.
    pub group_size: usize,
    /// GRPO advantage, under `grpo_norm`.
    pub grpo: f64,
    /// Dr. GRPO advantage (r − μ).
    pub dr_grpo: f64,
    /// RLOO advantage.
    pub rloo: f64,
    /// The GRPO convention.
    pub grpo_norm: GrpoNorm,
}

/// A record with what the export knows about it beyond the record itself.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The record.
    pub record: &'a TrajRecord,
    /// Its group, when it is a member of one.
    pub membership: Option<&'a Membership>,
    /// The task's position among the export's tasks (first appearance), when it has one.
    pub task_index: Option<usize>,
}

/// The tools as OpenAI function definitions.
fn tools(r: &TrajRecord) -> Value {
    Value::Array(
        r.tools
            .iter()
            .map(|t| json!({"type": "function", "function": t}))
            .collect(),
    )
}

/// The messages the run was given, and those it added. Older records without
/// `prompt_messages` split before the first assistant message.
pub fn split_messages(r: &TrajRecord) -> Result<(&[ChatMessage], &[ChatMessage]), Skip> {
    let split = match r.prompt_messages {
        Some(n) if n <= r.messages.len() => n,
        Some(n) => {
            return Err(format!(
                "prompt_messages is {n} but the record has {} messages",
                r.messages.len()
            ))
        }
        None => r
            .messages
            .iter()
            .position(|m| m.role == "assistant")
            .ok_or("no model turn")?,
    };
    let (prompt, completion) = r.messages.split_at(split);
    if completion.is_empty() {
        return Err("no model turn".into());
    }
    Ok((prompt, completion))
}

fn reward(r: &TrajRecord) -> Option<f64> {
    r.reward.as_ref().map(|r| r.total)
}

/// The exact token view, or why there is none.
fn tokens(r: &TrajRecord) -> Result<&FlatTokens, Skip> {
    r.tokens.get().map_err(str::to_owned)
}

/// The group columns every row format carries (null outside a group).
fn group_columns(row: &Row<'_>) -> serde_json::Map<String, Value> {
    let r = row.record;
    let m = row.membership;
    let mut out = serde_json::Map::new();
    out.insert("trajectory_id".into(), json!(r.id));
    out.insert("task_id".into(), json!(r.task.id()));
    out.insert(
        "group_id".into(),
        json!(m.map(|m| &m.group_id).or(r.group_id.as_ref())),
    );
    out.insert("sample_index".into(), json!(r.sample_index));
    out.insert("round".into(), json!(m.map(|m| m.round)));
    out.insert("reward".into(), json!(reward(r)));
    out.insert(
        "advantages".into(),
        match m {
            Some(m) => json!({
                "grpo": m.grpo,
                "dr_grpo": m.dr_grpo,
                "rloo": m.rloo,
                "grpo_norm": m.grpo_norm,
            }),
            None => Value::Null,
        },
    );
    out
}

/// What the logprob columns are: the engine's description and the temperature.
fn logprob_info(r: &TrajRecord) -> Value {
    json!({
        "mode": r.policy.logprobs_mode,
        "temperature": if r.sampling.greedy { None } else { Some(r.sampling.temperature.unwrap_or(1.0)) },
        "greedy": r.sampling.greedy,
    })
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(e) = extra {
        base.extend(e);
    }
    Value::Object(base)
}

/// `{messages, tools, reward, …group}`: plain OpenAI chat format.
pub fn openai(row: &Row<'_>) -> Result<Value, Skip> {
    let r = row.record;
    Ok(with(
        group_columns(row),
        json!({"messages": r.messages, "tools": tools(r)}),
    ))
}

/// TRL conversational: `{prompt, completion, tools, …group}`.
pub fn trl(row: &Row<'_>) -> Result<Value, Skip> {
    let (prompt, completion) = split_messages(row.record)?;
    Ok(with(
        group_columns(row),
        json!({"prompt": prompt, "completion": completion, "tools": tools(row.record)}),
    ))
}

/// TRL token level: `{prompt_ids, completion_ids, logprobs, env_mask, …group}`.
pub fn trl_tokens(row: &Row<'_>) -> Result<Value, Skip> {
    let t = tokens(row.record)?;
    Ok(with(
        group_columns(row),
        json!({
            "prompt_ids": t.prompt_ids,
            "completion_ids": t.response_ids,
            "logprobs": t.rollout_logprobs,
            "sampling_logprobs": t.sampling_logprobs,
            "logprobs_info": logprob_info(row.record),
            // TRL's env_mask: 1 where the model generated, 0 where the environment did.
            "env_mask": t.loss_mask,
        }),
    ))
}

/// Pre-tokenised SFT (rejection-sampling fine-tuning): `input_ids` = prompt + response,
/// `assistant_masks` 1 exactly on sampled tokens — the column TRL's SFT collator turns into
/// `labels = -100` elsewhere, whatever `completion_only_loss` says — and `completion_mask`
/// (the same mask, for `completion_only_loss`).
pub fn trl_sft(row: &Row<'_>) -> Result<Value, Skip> {
    let t = tokens(row.record)?;
    let n = t.prompt_ids.len() + t.response_ids.len();
    let mut input_ids = Vec::with_capacity(n);
    input_ids.extend_from_slice(&t.prompt_ids);
    input_ids.extend_from_slice(&t.response_ids);
    let mut mask = vec![0u8; t.prompt_ids.len()];
    mask.extend_from_slice(&t.loss_mask);
    Ok(with(
        group_columns(row),
        json!({
            "input_ids": input_ids,
            "assistant_masks": mask,
            "completion_mask": mask,
        }),
    ))
}

/// A string as is; anything else as compact JSON (verl's `ground_truth` is a string).
fn as_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

/// verl's prompt set: one row per task (`data_source`, `prompt`, `ability`,
/// `reward_model`, `extra_info` with `index` = the task's index and the verifier as JSON,
/// which `verity_reward.py` scores with). verl's `main_ppo` samples its own responses from
/// these prompts, so the rollout's samples are not rows.
pub fn verl(row: &Row<'_>) -> Result<Value, Skip> {
    let r = row.record;
    let task = r
        .task
        .task()
        .ok_or("not a task-file run (verl needs a ground truth and verifier)")?;
    let (prompt, _) = split_messages(r)?;
    let prompt: Vec<Value> = prompt
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let verifier = task.verifier.id().0;
    let ability = task
        .meta
        .get("ability")
        .and_then(Value::as_str)
        .unwrap_or(verifier);
    Ok(json!({
        "data_source": task.data_source.as_deref().unwrap_or("verity"),
        "prompt": prompt,
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": as_text(&task.ground_truth)},
        "extra_info": {
            "split": "train",
            "index": row.task_index.unwrap_or(0),
            "task_id": task.id,
            "task_hash": task.hash,
            "verifier": serde_json::to_string(&task.verifier).unwrap_or_default(),
            "tools": r.tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        },
    }))
}

/// verifiers' `RolloutOutput` (its `load_outputs` keeps only rows with `example_id`): the
/// run as a whole plus `trajectory`, one step per model call with its exact tokens.
pub fn verifiers(row: &Row<'_>) -> Result<Value, Skip> {
    let r = row.record;
    let (prompt, completion) = split_messages(r)?;
    let task = r.task.task();
    let base = prompt.len();
    // The assistant message of each model call, in order.
    let assistant_at: Vec<usize> = r
        .messages
        .iter()
        .enumerate()
        .skip(base)
        .filter(|(_, m)| m.role == "assistant")
        .map(|(i, _)| i)
        .collect();
    let advantage = row.membership.map(|m| m.grpo);
    let start = r.created_unix_ms as f64 / 1000.0;
    let steps: Vec<Value> = r
        .turns
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let at = assistant_at.get(k).copied();
            let step_prompt = &r.messages[..at.unwrap_or(r.messages.len())];
            let step_completion = at.map_or(&[][..], |i| &r.messages[i..=i]);
            let truncated = t.finish_reason == Some(crate::model::Finish::Length);
            let tokens = match (&t.prompt_ids, &t.gen_ids, &t.gen_logprobs) {
                (Some(p), Some(g), Some(lp)) => json!({
                    "prompt_ids": p,
                    "prompt_mask": vec![0u8; p.len()],
                    "completion_ids": g,
                    "completion_mask": vec![1u8; g.len()],
                    "completion_logprobs": lp,
                    "overlong_prompt": false,
                    "is_truncated": truncated,
                    "routed_experts": null,
                }),
                _ => Value::Null,
            };
            json!({
                "prompt": step_prompt,
                "completion": step_completion,
                "response": {"finish_reason": t.finish_reason, "text": t.text},
                "tokens": tokens,
                "reward": reward(r),
                "advantage": advantage,
                "is_truncated": truncated,
                "trajectory_id": r.id,
                "extras": {
                    "seed": t.seed,
                    "sampling_logprobs": t.sampling_logprobs,
                    "prefix_consistent": t.next.prefix_consistent,
                },
            })
        })
        .collect();
    let metrics: serde_json::Map<String, Value> = r
        .reward
        .iter()
        .flat_map(|r| &r.components)
        .map(|c| (c.name.clone(), json!(c.score)))
        .collect();
    let gen_ms: u64 = r.turns.iter().map(|t| t.model_ms).sum();
    Ok(json!({
        "example_id": row.task_index.unwrap_or(0),
        "prompt": prompt,
        "completion": completion,
        "answer": as_text(task.map_or(&Value::Null, |t| &t.ground_truth)),
        "task": task.and_then(|t| t.data_source.as_deref()).unwrap_or("verity"),
        "info": with(group_columns(row), json!({
            "meta": task.map(|t| &t.meta),
            "logprobs_info": logprob_info(r),
        })),
        "reward": reward(r).unwrap_or(0.0),
        "advantage": advantage,
        "metrics": metrics,
        "timing": {
            "start_time": start,
            "generation": {"start": start, "end": start + gen_ms as f64 / 1000.0},
        },
        "is_completed": !r.outcome.truncated,
        "is_truncated": r.outcome.truncated,
        "stop_condition": r.outcome.stop,
        "error": null,
        "trajectory": steps,
        "tool_defs": tools(r),
        "token_usage": {
            "input_tokens": r.outcome.prompt_tokens,
            "output_tokens": r.outcome.completion_tokens,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::record::{example_record, TokenView};

    fn row(r: &TrajRecord) -> Row<'_> {
        Row {
            record: r,
            membership: None,
            task_index: Some(3),
        }
    }

    #[test]
    fn rows_carry_what_each_trainer_reads() {
        let r = example_record();
        let t = r.tokens.get().unwrap().clone();

        let v = openai(&row(&r)).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), r.messages.len());
        assert_eq!(v["tools"][0]["type"], "function");
        assert_eq!(v["reward"], Value::Null);
        assert_eq!(v["advantages"], Value::Null);

        // The prompt is what the run was given.
        let v = trl(&row(&r)).unwrap();
        assert_eq!(v["prompt"].as_array().unwrap().len(), 1);
        assert_eq!(v["completion"][0]["role"], "assistant");

        let v = trl_tokens(&row(&r)).unwrap();
        assert_eq!(
            v["completion_ids"].as_array().unwrap().len(),
            t.response_ids.len()
        );
        assert_eq!(v["env_mask"], json!(t.loss_mask));

        let v = trl_sft(&row(&r)).unwrap();
        let ids = v["input_ids"].as_array().unwrap();
        assert_eq!(ids.len(), t.prompt_ids.len() + t.response_ids.len());
        assert_eq!(v["assistant_masks"].as_array().unwrap().len(), ids.len());

        let v = verifiers(&row(&r)).unwrap();
        assert_eq!(v["example_id"], 3);
        assert_eq!(v["trajectory"].as_array().unwrap().len(), r.turns.len());
        assert_eq!(v["is_truncated"], true);
    }

    #[test]
    fn few_shot_messages_stay_in_the_prompt() {
        let mut r = example_record();
        let user = r.messages[0].clone();
        let shot = ChatMessage {
            role: "assistant".into(),
            content: "an example answer".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        };
        r.messages.splice(0..0, [user, shot]);
        r.prompt_messages = Some(3);
        let v = trl(&row(&r)).unwrap();
        assert_eq!(v["prompt"].as_array().unwrap().len(), 3);
        assert_eq!(v["prompt"][1]["content"], "an example answer");
        assert_ne!(v["completion"][0]["content"], "an example answer");
    }

    #[test]
    fn token_formats_skip_a_run_without_a_token_view_and_say_why() {
        let mut r = example_record();
        r.tokens = TokenView::unavailable("turn 1: drift");
        assert_eq!(trl_tokens(&row(&r)).unwrap_err(), "turn 1: drift");
        assert_eq!(trl_sft(&row(&r)).unwrap_err(), "turn 1: drift");
        r.messages.retain(|m| m.role != "assistant");
        r.prompt_messages = None;
        assert_eq!(trl(&row(&r)).unwrap_err(), "no model turn");
        // verl needs a task (ground truth, verifier).
        assert!(verl(&row(&r)).unwrap_err().contains("task"));
    }
}
