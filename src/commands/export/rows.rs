//! One trajectory record → one row of a trainer's format. Rows are JSON values; the verl
//! writer turns them into Parquet (`verl.rs`), the others are written as JSONL.

use serde_json::{json, Value};

/// The tools as OpenAI function definitions.
fn tools(r: &Value) -> Value {
    let list = r["tools"].as_array().cloned().unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|t| json!({"type": "function", "function": t}))
            .collect(),
    )
}

/// Messages before the first model turn, and from it on.
fn split_messages(r: &Value) -> Result<(Vec<Value>, Vec<Value>), String> {
    let messages = r["messages"].as_array().cloned().unwrap_or_default();
    let split = messages
        .iter()
        .position(|m| m["role"] == "assistant")
        .ok_or("no model turn")?;
    let (a, b) = messages.split_at(split);
    Ok((a.to_vec(), b.to_vec()))
}

fn reward(r: &Value) -> Value {
    r["reward"]["total"].clone()
}

/// The exact token view, or why there is none.
fn tokens(r: &Value) -> Result<&Value, String> {
    let t = &r["tokens"];
    if t["available"] == true {
        Ok(t)
    } else {
        Err(t["why"].as_str().unwrap_or("no flat token view").to_owned())
    }
}

/// `{messages, tools, reward}`: plain OpenAI chat format.
pub fn openai(r: &Value) -> Result<Value, String> {
    Ok(json!({"messages": r["messages"], "tools": tools(r), "reward": reward(r)}))
}

/// TRL conversational: `{prompt, completion, tools, reward}`.
pub fn trl(r: &Value) -> Result<Value, String> {
    let (prompt, completion) = split_messages(r)?;
    Ok(json!({
        "prompt": prompt,
        "completion": completion,
        "tools": tools(r),
        "reward": reward(r),
    }))
}

/// TRL token level: `{prompt_ids, completion_ids, logprobs, env_mask, reward}`.
pub fn trl_tokens(r: &Value) -> Result<Value, String> {
    let t = tokens(r)?;
    Ok(json!({
        "prompt_ids": t["prompt_ids"],
        "completion_ids": t["response_ids"],
        "logprobs": t["rollout_logprobs"],
        // TRL's env_mask: 1 where the model generated, 0 where the environment did.
        "env_mask": t["loss_mask"],
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
pub fn verl(r: &Value, index: usize) -> Result<Value, String> {
    let (prompt, completion) = split_messages(r)?;
    let task = &r["task"];
    let verifier = task["verifier"]["type"].as_str().unwrap_or("none");
    let prompt: Vec<Value> = prompt
        .iter()
        .map(|m| json!({"role": m["role"], "content": m["content"].as_str().unwrap_or("")}))
        .collect();
    let t = tokens(r).ok();
    let pick = |k: &str| t.map(|t| t[k].clone()).unwrap_or(Value::Null);
    Ok(json!({
        "data_source": task["data_source"].as_str().unwrap_or("verity"),
        "prompt": prompt,
        "ability": task["meta"]["ability"].as_str().unwrap_or(verifier),
        "reward_model": {"style": "rule", "ground_truth": as_text(&task["ground_truth"])},
        "extra_info": {
            "split": "train",
            "index": index,
            "task_id": task["id"].as_str().unwrap_or(""),
            "trajectory_id": r["id"].as_str().unwrap_or(""),
            "digest": r["integrity"]["digest"].as_str().unwrap_or(""),
            "verifier": verifier,
            "stop": r["outcome"]["stop"].as_str().unwrap_or(""),
            "truncated": r["outcome"]["truncated"].as_bool().unwrap_or(false),
            "turns": r["outcome"]["turns"].as_i64().unwrap_or(0),
        },
        "response": completion.last().and_then(|m| m["content"].as_str()).unwrap_or(""),
        "reward": reward(r).as_f64(),
        "prompt_ids": pick("prompt_ids"),
        "response_ids": pick("response_ids"),
        "response_mask": pick("loss_mask"),
        "rollout_log_probs": pick("rollout_logprobs"),
    }))
}

/// verifiers-style rollout (`prompt`, `completion`, `answer`, `task`, `info`, `reward`,
/// `metrics`, `state` with one step per model call: ids, logprobs, finish reason).
pub fn verifiers(r: &Value) -> Result<Value, String> {
    let (prompt, completion) = split_messages(r)?;
    let task = &r["task"];
    let turns = r["turns"].as_array().cloned().unwrap_or_default();
    let steps: Vec<Value> = turns
        .iter()
        .map(|t| {
            json!({
                "prompt_ids": t["prompt_ids"],
                "completion_ids": t["gen_ids"],
                "completion_logprobs": t["gen_logprobs"],
                "finish_reason": t["finish_reason"],
                "prefix_consistent": t["next"]["prefix_consistent"],
            })
        })
        .collect();
    let components = r["reward"]["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let metrics: serde_json::Map<String, Value> = components
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["score"].clone())))
        .collect();
    Ok(json!({
        "prompt": prompt,
        "completion": completion,
        "answer": as_text(&task["ground_truth"]),
        "task": task["data_source"].as_str().unwrap_or("verity"),
        "info": {"task_id": task["id"], "trajectory_id": r["id"], "meta": task["meta"], "tools": tools(r)},
        "reward": reward(r),
        "metrics": metrics,
        "state": {
            "turn": turns.len(),
            "stop": r["outcome"]["stop"],
            "truncated": r["outcome"]["truncated"],
            "responses": steps,
        },
    }))
}
