//! `verity verify --replay`: what a record claims, done again. Deterministic tools are
//! re-executed with the recorded arguments and limits and must give the same `io_digest`;
//! rewards are recomputed with the recorded verifier; group statistics are recomputed
//! from their members' rewards.

use std::{collections::HashMap, io::BufRead, path::Path};

use serde::Serialize;
use serde_json::{json, Value};
use verity_runtime::{
    model::ToolCall,
    reward::{self, Attempt, VerifierSpec},
    trajectory::{canonical, group},
};
use verity_tools::{CallContext, Limits, ToolRegistry};

/// Tools whose output is a function of their input (and recorded seed/limits).
const DETERMINISTIC: &[&str] = &["calculator", "code", "search"];

#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub calls: usize,
    pub calls_ok: usize,
    pub rewards: usize,
    pub rewards_ok: usize,
    pub groups: usize,
    pub groups_ok: usize,
    pub problems: Vec<String>,
}

pub fn run(path: &Path) -> anyhow::Result<ReplayReport> {
    let rt = super::super::runtime()?;
    rt.block_on(replay(path))
}

async fn replay(path: &Path) -> anyhow::Result<ReplayReport> {
    let registry = ToolRegistry::with_builtins();
    let mut report = ReplayReport::default();
    let mut rewards_by_digest: HashMap<String, f64> = HashMap::new();
    let file = std::fs::File::open(path)?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let r: Value = serde_json::from_str(&line?)?;
        let at = format!("line {}", n + 1);
        match r["kind"].as_str() {
            Some("traj") => {
                for call in r["tool_calls"].as_array().cloned().unwrap_or_default() {
                    let name = call["decision"]["tool"]
                        .as_str()
                        .or(call["name"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    let ran = call["status"] != "denied" && call["status"] != "unknown_tool";
                    if !ran || !DETERMINISTIC.contains(&name.as_str()) {
                        continue;
                    }
                    report.calls += 1;
                    let limits: Limits =
                        serde_json::from_value(call["limits"].clone()).unwrap_or_default();
                    let ctx = CallContext {
                        limits,
                        ..CallContext::default()
                    };
                    let outcome = registry.call(&name, call["arguments"].clone(), ctx).await;
                    let io = json!({
                        "tool": name,
                        "arguments": call["arguments"],
                        "text": outcome.text,
                        "structured": outcome.structured,
                        "failure": outcome.failure,
                    });
                    if canonical::digest(&io) == call["io_digest"].as_str().unwrap_or_default() {
                        report.calls_ok += 1;
                    } else {
                        report.problems.push(format!(
                            "{at}: tool call {} ({name}) gave a different result on replay: {}",
                            call["id"],
                            outcome.text.chars().take(120).collect::<String>()
                        ));
                    }
                }
                let total = r["reward"]["total"].as_f64();
                if let (Some(total), Ok(spec)) = (
                    total,
                    serde_json::from_value::<VerifierSpec>(r["task"]["verifier"].clone()),
                ) {
                    report.rewards += 1;
                    // Every call the model made, as the rollout scored them: from the
                    // conversation (call-only functions are never run, so they are not
                    // among the executed `tool_calls`).
                    let calls: Vec<ToolCall> = r["messages"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
                        .map(|c| message_call(&c))
                        .collect();
                    let attempt = Attempt {
                        answer: r["outcome"]["answer"].as_str().map(str::to_owned),
                        calls,
                    };
                    let again = reward::score(&spec, &r["task"]["ground_truth"], &attempt).await;
                    let recorded_version = r["reward"]["components"][0]["version"].as_u64();
                    if recorded_version.is_some_and(|v| v != u64::from(again.version)) {
                        report.problems.push(format!(
                            "{at}: recorded with {} verifier v{}, this build has v{}",
                            again.name,
                            recorded_version.unwrap_or_default(),
                            again.version
                        ));
                    } else if (again.score - total).abs() < 1e-12 {
                        report.rewards_ok += 1;
                    } else {
                        report.problems.push(format!(
                            "{at}: reward recomputes to {} (recorded {total})",
                            again.score
                        ));
                    }
                    if let Some(d) = r["integrity"]["digest"].as_str() {
                        rewards_by_digest.insert(d.to_owned(), total);
                    }
                }
            }
            Some("group") => {
                report.groups += 1;
                let stats = &r["stats"];
                let members: Vec<String> = stats["members"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect();
                let rewards: Option<Vec<f64>> = members
                    .iter()
                    .map(|d| rewards_by_digest.get(d).copied())
                    .collect();
                let Some(rewards) = rewards else {
                    report.problems.push(format!(
                        "{at}: a member of the group is not in the file (merge the shards first)"
                    ));
                    continue;
                };
                let again = group::stats(&rewards);
                let same = |k: &str| again[k] == stats[k];
                let merkle = group::merkle_root(&members)
                    == stats["merkle_root"].as_str().unwrap_or_default();
                if same("rewards")
                    && same("mean")
                    && same("std_population")
                    && same("zero_variance")
                    && again["advantages"] == stats["advantages"]
                    && merkle
                {
                    report.groups_ok += 1;
                } else {
                    report.problems.push(format!(
                        "{at}: group statistics do not recompute (task {})",
                        r["task"]["id"]
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(report)
}

/// A call as messages store it (OpenAI: `{id, function: {name, arguments: "JSON"}}`).
fn message_call(c: &Value) -> ToolCall {
    let f = &c["function"];
    let arguments = match &f["arguments"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    };
    ToolCall {
        id: c["id"].as_str().unwrap_or_default().into(),
        name: f["name"].as_str().unwrap_or_default().into(),
        arguments,
    }
}
