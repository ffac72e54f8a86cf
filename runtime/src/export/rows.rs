//! One trajectory record → one row of a trainer's format. Rows are JSON values; the verl
//! writer turns them into Parquet (`verl.rs`), the others are written as JSONL.

use serde_json::{json, Value};

use crate::trajectory::{
    record::{ChatMessage, FlatTokens},
    TrajRecord,
};

/// Why a record has no row in a format (the run is skipped and counted, not an error).
pub type Skip = String;

/// The tools as OpenAI function definitions.
fn tools(r: &TrajRecord) -> Value {
    Value::Array(
        r.tools
            .iter()
            .map(|t| json!({"type": "function", "function": t}))
            .collect(),
    )
}

/// Messages before the first model turn, and from it on.
fn split_messages(r: &TrajRecord) -> Result<(&[ChatMessage], &[ChatMessage]), Skip> {
    let split = r
        .messages
        .iter()
        .position(|m| m.role == "assistant")
        .ok_or("no model turn")?;
    Ok(r.messages.split_at(split))
}

fn reward(r: &TrajRecord) -> Option<f64> {
    r.reward.as_ref().map(|r| r.total)
}

/// The exact token view, or why there is none.
fn tokens(r: &TrajRecord) -> Result<&FlatTokens, Skip> {
    r.tokens.get().map_err(str::to_owned)
}

/// `{messages, tools, reward}`: plain OpenAI chat format.
pub fn openai(r: &TrajRecord) -> Result<Value, Skip> {
    Ok(json!({"messages": r.messages, "tools": tools(r), "reward": reward(r)}))
}

/// TRL conversational: `{prompt, completion, tools, reward}`.
pub fn trl(r: &TrajRecord) -> Result<Value, Skip> {
    let (prompt, completion) = split_messages(r)?;
    Ok(json!({
        "prompt": prompt,
        "completion": completion,
        "tools": tools(r),
        "reward": reward(r),
    }))
}

/// TRL token level: `{prompt_ids, completion_ids, logprobs, env_mask, reward}`.
pub fn trl_tokens(r: &TrajRecord) -> Result<Value, Skip> {
    let t = tokens(r)?;
    Ok(json!({
        "prompt_ids": t.prompt_ids,
        "completion_ids": t.response_ids,
        "logprobs": t.rollout_logprobs,
        // TRL's env_mask: 1 where the model generated, 0 where the environment did.
        "env_mask": t.loss_mask,
        "reward": reward(r),
    }))
}

/// A string as is; anything else as compact JSON (verl's `ground_truth` is a string).
fn as_text(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    }
}

/// verl: the RLHF dataset columns (`data_source`, `prompt`, `ability`, `reward_model`,
/// `extra_info`) plus the AgentLoop token fields (`prompt_ids`, `response_ids`,
/// `response_mask`, `rollout_log_probs`, null when the run has no exact token view).
pub fn verl(r: &TrajRecord, index: usize) -> Result<Value, Skip> {
    let (prompt, completion) = split_messages(r)?;
    let task = r.task.task();
    let verifier = task.map_or("none", |t| t.verifier.id().0);
    let prompt: Vec<Value> = prompt
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let t = tokens(r).ok();
    let ability = task
        .and_then(|t| t.meta.get("ability"))
        .and_then(Value::as_str)
        .unwrap_or(verifier);
    Ok(json!({
        "data_source": task.and_then(|t| t.data_source.as_deref()).unwrap_or("verity"),
        "prompt": prompt,
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": as_text(task.map_or(&Value::Null, |t| &t.ground_truth))},
        "extra_info": {
            "split": "train",
            "index": index,
            "task_id": task.map_or("", |t| t.id.as_str()),
            "trajectory_id": r.id,
            "digest": r.integrity.as_ref().map_or("", |i| i.digest.as_str()),
            "verifier": verifier,
            "stop": r.outcome.stop,
            "truncated": r.outcome.truncated,
            "turns": r.outcome.turns,
        },
        "response": completion.last().map_or("", |m| m.content.as_str()),
        "reward": reward(r),
        "prompt_ids": t.map(|t| &t.prompt_ids),
        "response_ids": t.map(|t| &t.response_ids),
        "response_mask": t.map(|t| &t.loss_mask),
        "rollout_log_probs": t.map(|t| &t.rollout_logprobs),
    }))
}

/// verifiers-style rollout (`prompt`, `completion`, `answer`, `task`, `info`, `reward`,
/// `metrics`, `state` with one step per model call: ids, logprobs, finish reason).
pub fn verifiers(r: &TrajRecord) -> Result<Value, Skip> {
    let (prompt, completion) = split_messages(r)?;
    let task = r.task.task();
    let steps: Vec<Value> = r
        .turns
        .iter()
        .map(|t| {
            json!({
                "prompt_ids": t.prompt_ids,
                "completion_ids": t.gen_ids,
                "completion_logprobs": t.gen_logprobs,
                "finish_reason": t.finish_reason,
                "prefix_consistent": t.next.prefix_consistent,
            })
        })
        .collect();
    let metrics: serde_json::Map<String, Value> = r
        .reward
        .iter()
        .flat_map(|r| &r.components)
        .map(|c| (c.name.clone(), json!(c.score)))
        .collect();
    Ok(json!({
        "prompt": prompt,
        "completion": completion,
        "answer": as_text(task.map_or(&Value::Null, |t| &t.ground_truth)),
        "task": task.and_then(|t| t.data_source.as_deref()).unwrap_or("verity"),
        "info": {
            "task_id": task.map(|t| &t.id),
            "trajectory_id": r.id,
            "meta": task.map(|t| &t.meta),
            "tools": tools(r),
        },
        "reward": reward(r),
        "metrics": metrics,
        "state": {
            "turn": r.turns.len(),
            "stop": r.outcome.stop,
            "truncated": r.outcome.truncated,
            "responses": steps,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::record::{example_record, TokenView};

    #[test]
    fn rows_carry_what_each_trainer_reads() {
        let r = example_record();
        let t = r.tokens.get().unwrap().clone();

        let row = openai(&r).unwrap();
        assert_eq!(row["messages"].as_array().unwrap().len(), r.messages.len());
        assert_eq!(row["tools"][0]["type"], "function");
        assert_eq!(row["reward"], Value::Null);

        // The prompt is everything before the first model turn.
        let row = trl(&r).unwrap();
        assert_eq!(row["prompt"].as_array().unwrap().len(), 1);
        assert_eq!(row["completion"][0]["role"], "assistant");

        let row = trl_tokens(&r).unwrap();
        assert_eq!(
            row["completion_ids"].as_array().unwrap().len(),
            t.response_ids.len()
        );
        assert_eq!(row["env_mask"], json!(t.loss_mask));

        let row = verl(&r, 7).unwrap();
        assert_eq!(row["extra_info"]["index"], 7);
        assert_eq!(row["extra_info"]["trajectory_id"], r.id);
        assert_eq!(row["extra_info"]["stop"], "truncated");
        assert_eq!(row["data_source"], "verity");
        assert_eq!(row["response_mask"], json!(t.loss_mask));
        assert_eq!(
            row["prompt"][0],
            json!({"role": "user", "content": "What is 2+2?"})
        );

        let row = verifiers(&r).unwrap();
        assert_eq!(
            row["state"]["responses"].as_array().unwrap().len(),
            r.turns.len()
        );
        assert_eq!(row["state"]["truncated"], true);
    }

    #[test]
    fn token_formats_skip_a_run_without_a_token_view_and_say_why() {
        let mut r = example_record();
        r.tokens = TokenView::unavailable("turn 1: drift");
        assert_eq!(trl_tokens(&r).unwrap_err(), "turn 1: drift");
        // verl keeps the row, with null token columns.
        assert_eq!(verl(&r, 0).unwrap()["response_ids"], Value::Null);
        r.messages.retain(|m| m.role != "assistant");
        assert_eq!(trl(&r).unwrap_err(), "no model turn");
    }
}
