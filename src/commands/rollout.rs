//! `verity rollout TASKS.jsonl --samples G --out FILE`: G samples per task, each verified,
//! recorded as `traj` records, each task closed by a `group` record; resumable; shardable.

use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use verity_policies::CallerKind;
use verity_runtime::{
    agent::{Agent, AgentConfig},
    model::{Message, ModelBackend, Role, ToolDef},
    reward::{self, Attempt, VerifierSpec},
    trajectory::{
        chain::{self, ChainWriter},
        group, TrajectoryBuilder,
    },
    Approver, AutoApprove, Caller, DenyAsk, ToolGate,
};

use super::agent_opts::AgentOpts;

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Tasks, one JSON object per line: {id, prompt | messages, ground_truth, verifier,
    /// tools?, meta?}.
    tasks: PathBuf,
    /// Samples per task (the GRPO group size).
    #[arg(long, short = 'g', default_value_t = 4)]
    samples: usize,
    /// Output trajectory file (appended to; resumes where it stopped).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Only tasks i, i+N, i+2N, … (`--shard 0/4`): run N workers on one task file.
    #[arg(long)]
    shard: Option<String>,
    /// Samples in flight at once. HTTP backends: parallel requests of one task's group
    /// (default 4). Embedded engine: groups of that many tasks batched together, each
    /// group's samples one after another (default 1) — mistral.rs computes different
    /// logits for samples of one prompt batched together, different prompts batch exactly.
    #[arg(long)]
    concurrency: Option<usize>,
    /// DAPO-style dynamic sampling: when a group's rewards are all equal (no learning
    /// signal), draw a fresh group, up to this many extra rounds (0: off).
    #[arg(long, default_value_t = 0)]
    dynamic_sampling: usize,
    #[command(flatten)]
    opts: AgentOpts,
}

/// One task line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Task {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) prompt: Option<String>,
    #[serde(default)]
    pub(crate) messages: Option<Vec<Message>>,
    #[serde(default)]
    pub(crate) ground_truth: Value,
    pub(crate) verifier: VerifierSpec,
    #[serde(default)]
    tools: Option<Vec<String>>,
    /// Call-only functions offered to the model (OpenAI `{name, description, parameters}`,
    /// optionally wrapped as `{type: function, function: …}`): a reply calling one ends the
    /// run with the calls as the answer (BFCL-style tasks).
    #[serde(default)]
    functions: Vec<FunctionDef>,
    #[serde(default)]
    meta: Value,
    #[serde(default)]
    data_source: Option<String>,
}

/// A call-only function as a task file gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FunctionDef {
    Wrapped { function: PlainFunction },
    Plain(PlainFunction),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainFunction {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object_schema")]
    parameters: Value,
    /// Accepted because OpenAI function definitions carry it; strictness is the run's.
    #[serde(default, rename = "strict")]
    _strict: Option<bool>,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

impl FunctionDef {
    fn to_tool_def(&self) -> ToolDef {
        let f = match self {
            FunctionDef::Wrapped { function } => function,
            FunctionDef::Plain(f) => f,
        };
        ToolDef {
            name: f.name.clone(),
            description: f.description.clone(),
            parameters: f.parameters.clone(),
        }
    }
}

impl Task {
    pub(crate) fn messages(&self, system: Option<&str>) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(s) = system {
            out.push(Message::new(Role::System, s));
        }
        match (&self.messages, &self.prompt) {
            (Some(m), _) => out.extend(m.iter().cloned()),
            (None, Some(p)) => out.push(Message::new(Role::User, p.clone())),
            (None, None) => {}
        }
        out
    }
}

pub(crate) fn read_tasks(path: &Path) -> anyhow::Result<Vec<(Task, Value)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut tasks = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let raw: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}: line {}: not JSON: {e}", path.display(), i + 1))?;
        let task: Task = serde_json::from_value(raw.clone()).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {}: {e} (expected {{id, prompt or messages, ground_truth, verifier: {{type: math|exact|normalized|regex|json_field|code|tool_call|format, ...}}, tools?, functions?, meta?}})",
                path.display(),
                i + 1
            )
        })?;
        anyhow::ensure!(
            task.prompt.is_some() || task.messages.is_some(),
            "{}: line {}: task '{}' has neither prompt nor messages",
            path.display(),
            i + 1,
            task.id
        );
        anyhow::ensure!(
            ids.insert(task.id.clone()),
            "{}: line {}: duplicate task id '{}'",
            path.display(),
            i + 1,
            task.id
        );
        tasks.push((task, raw));
    }
    Ok(tasks)
}

fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = s.split_once('/').context("--shard must look like 0/4")?;
    let (i, n): (usize, usize) = (i.trim().parse()?, n.trim().parse()?);
    anyhow::ensure!(n > 0 && i < n, "--shard {s}: need 0 <= i < N");
    Ok((i, n))
}

/// A finished sample, as its group record needs it.
#[derive(Debug, Clone)]
struct Member {
    reward: f64,
    digest: String,
    tokens: u64,
    truncated: bool,
}

/// What an existing output file already holds.
#[derive(Default)]
struct Done {
    /// task id → sample index → member
    samples: BTreeMap<String, BTreeMap<usize, Member>>,
    groups: HashSet<String>,
}

fn scan(path: &Path) -> anyhow::Result<Done> {
    let mut done = Done::default();
    if !path.exists() {
        return Ok(done);
    }
    let report = chain::verify(path)?;
    if let Some((line, why)) = report.first_error {
        anyhow::bail!(
            "{}: line {line}: {why}; fix or move the file before resuming",
            path.display()
        );
    }
    let file = std::fs::File::open(path)?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let task = v["task"]["id"].as_str().unwrap_or_default().to_owned();
        match v["kind"].as_str() {
            Some("traj") => {
                let i = v["sample_index"].as_u64().unwrap_or(0) as usize;
                done.samples.entry(task).or_default().insert(
                    i,
                    Member {
                        reward: v["reward"]["total"].as_f64().unwrap_or(0.0),
                        digest: v["integrity"]["digest"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        tokens: v["outcome"]["completion_tokens"].as_u64().unwrap_or(0),
                        truncated: v["outcome"]["truncated"].as_bool().unwrap_or(false),
                    },
                );
            }
            Some("group") => {
                done.groups.insert(task);
            }
            _ => {}
        }
    }
    Ok(done)
}

struct Shared {
    model: Arc<dyn ModelBackend>,
    gate: ToolGate,
    approver: Arc<dyn Approver>,
    base: AgentConfig,
    system: Option<String>,
    writer: Mutex<ChainWriter>,
    progress: indicatif::ProgressBar,
    stats: std::sync::Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    samples: usize,
    reward_sum: f64,
    tool_calls: BTreeMap<String, usize>,
    parse_failures: usize,
    per_task: BTreeMap<String, (usize, usize)>,
    rewards: Vec<f64>,
}

pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.samples >= 1, "--samples must be at least 1");
    let mut tasks = read_tasks(&args.tasks)?;
    if let Some(s) = &args.shard {
        let (i, n) = parse_shard(s)?;
        tasks = tasks
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, t)| t)
            .collect();
    }
    let done = scan(&args.out)?;
    let resolved = args
        .opts
        .resolve(Caller::new(CallerKind::Rollout, "rollout"))?;
    let embedded = resolved.base_url.is_none();
    let concurrency = args
        .concurrency
        .unwrap_or(if embedded { 1 } else { 4 })
        .max(1);
    let rt = super::runtime()?;
    rt.block_on(async move {
        let writer = ChainWriter::open(&args.out)?;
        let model = resolved.backend(concurrency > 1).await?;
        let (gate, _hub) = resolved.gate().await?;
        let approver: Arc<dyn Approver> = if resolved.yes {
            Arc::new(AutoApprove)
        } else {
            Arc::new(DenyAsk)
        };
        let todo: usize = tasks
            .iter()
            .filter(|(t, _)| !done.groups.contains(&t.id))
            .map(|(t, _)| {
                args.samples
                    - done
                        .samples
                        .get(&t.id)
                        .map_or(0, |s| s.len().min(args.samples))
            })
            .sum();
        let progress = indicatif::ProgressBar::new(todo as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} samples ({per_sec}) {wide_bar} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let shared = Arc::new(Shared {
            model,
            gate,
            approver,
            base: resolved.agent.clone(),
            system: resolved.system.clone(),
            writer: Mutex::new(writer),
            progress,
            stats: std::sync::Mutex::new(Totals::default()),
        });
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let skipped = tasks
            .iter()
            .filter(|(t, _)| done.groups.contains(&t.id))
            .count();
        if skipped > 0 || !done.samples.is_empty() {
            eprintln!(
                "verity: resuming {}: {skipped} tasks complete, {} samples to go",
                args.out.display(),
                todo
            );
        }
        // Embedded engine, batching: run several tasks at once, each group's samples one
        // after another, so a batch never holds two samples of one prompt (mistral.rs
        // computes different logits for those; different prompts batch exactly). HTTP
        // backends: one task at a time, its samples in parallel.
        let (tasks_at_once, within) = if embedded {
            (concurrency, 1)
        } else {
            (1, concurrency)
        };
        let pending = tasks
            .iter()
            .filter(|(t, _)| !done.groups.contains(&t.id))
            .map(|(task, raw)| {
                let shared = shared.clone();
                let cancel = cancel.clone();
                let members = done.samples.get(&task.id).cloned().unwrap_or_default();
                let g = args.samples;
                let dynamic_sampling = args.dynamic_sampling;
                async move {
                    if cancel.is_cancelled() {
                        return Ok(false);
                    }
                    run_group(
                        &shared,
                        task,
                        raw,
                        members,
                        g,
                        dynamic_sampling,
                        within,
                        cancel,
                    )
                    .await
                }
            });
        let mut groups = futures::stream::iter(pending).buffer_unordered(tasks_at_once);
        while let Some(r) = groups.next().await {
            r?;
        }
        drop(groups);
        shared.progress.finish_and_clear();
        let summary = summarize(&shared, args.samples);
        let summary_path = with_suffix(&args.out, "summary.json");
        std::fs::write(&summary_path, serde_json::to_vec_pretty(&summary)?)?;
        let svg_path = with_suffix(&args.out, "rewards.svg");
        let rewards = shared
            .stats
            .lock()
            .map(|s| s.rewards.clone())
            .unwrap_or_default();
        std::fs::write(&svg_path, histogram_svg(&rewards))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
        eprintln!(
            "verity: wrote {} (summary: {}, histogram: {})",
            args.out.display(),
            summary_path.display(),
            svg_path.display()
        );
        Ok(if cancel.is_cancelled() {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// Draws one task's group (resuming from `members`), with DAPO-style extra rounds, and
/// appends its `group` record. `Ok(false)`: cancelled before the group was complete.
#[allow(clippy::too_many_arguments)]
async fn run_group(
    shared: &Arc<Shared>,
    task: &Task,
    raw: &Value,
    mut members: BTreeMap<usize, Member>,
    g: usize,
    dynamic_sampling: usize,
    within: usize,
    cancel: CancellationToken,
) -> anyhow::Result<bool> {
    // Round r holds sample indices r·G … r·G+G−1; with --dynamic-sampling a
    // zero-variance round is followed by a fresh one, up to the cap.
    let mut round = 0usize;
    let batch = loop {
        let range = round * g..(round + 1) * g;
        let missing: Vec<usize> = range.clone().filter(|i| !members.contains_key(i)).collect();
        let results = futures::stream::iter(missing.into_iter().map(|i| {
            let shared = shared.clone();
            let cancel = cancel.clone();
            async move { (i, sample(&shared, task, raw, i, cancel).await) }
        }))
        .buffer_unordered(within)
        .collect::<Vec<_>>()
        .await;
        for (i, r) in results {
            if let Some(m) = r? {
                members.insert(i, m);
            }
        }
        let batch: Vec<Member> = range.filter_map(|i| members.get(&i).cloned()).collect();
        if batch.len() < g {
            break None; // cancelled mid-task: the group is written on resume
        }
        let zero_variance = batch.windows(2).all(|w| w[0].reward == w[1].reward);
        if zero_variance && g > 1 && round < dynamic_sampling {
            round += 1;
            if !members.contains_key(&(round * g)) {
                shared.progress.inc_length(g as u64);
            }
            continue;
        }
        break Some(batch);
    };
    let Some(batch) = batch else {
        return Ok(false);
    };
    let rewards: Vec<f64> = batch.iter().map(|m| m.reward).collect();
    let digests: Vec<String> = batch.iter().map(|m| m.digest.clone()).collect();
    let mut stats = group::stats(&rewards);
    if let Value::Object(o) = &mut stats {
        o.insert(
            "generated_tokens".into(),
            json!(batch.iter().map(|m| m.tokens).sum::<u64>()),
        );
        o.insert(
            "max_length".into(),
            json!(batch.iter().map(|m| m.tokens).max().unwrap_or(0)),
        );
        o.insert(
            "truncated".into(),
            json!(batch.iter().filter(|m| m.truncated).count()),
        );
        o.insert("members".into(), json!(digests));
        o.insert("merkle_root".into(), json!(group::merkle_root(&digests)));
        // DAPO-style dynamic sampling: earlier zero-variance rounds stay in the
        // file (as traj records) but are not members of the group.
        o.insert("round".into(), json!(round));
        o.insert("discarded_zero_variance_rounds".into(), json!(round));
    }
    let mut record = json!({
        "schema": verity_runtime::trajectory::SCHEMA,
        "kind": "group",
        "task": {"id": task.id},
        "group_id": task.id,
        "verifier": task.verifier,
        "stats": stats,
    });
    shared.writer.lock().await.append(&mut record)?;
    Ok(true)
}

/// Runs, verifies and records one sample. `Ok(None)`: cancelled (nothing written).
async fn sample(
    shared: &Shared,
    task: &Task,
    raw: &Value,
    index: usize,
    cancel: CancellationToken,
) -> anyhow::Result<Option<Member>> {
    let mut config = shared.base.clone();
    // Sample i uses seed + i (`--seed`, default 0): any sample can be drawn again alone
    // (`verity run --seed`), whatever else ran beside it.
    let base_seed = shared.base.sampling.seed.unwrap_or(0);
    config.sampling.seed = Some(base_seed.wrapping_add(index as u64));
    if let Some(t) = &task.tools {
        config.tool_allow_list = Some(t.clone());
    }
    config.call_only = task
        .functions
        .iter()
        .map(FunctionDef::to_tool_def)
        .collect();
    let agent = Agent::new(
        shared.model.clone(),
        shared.gate.clone(),
        shared.approver.clone(),
        config,
    );
    let tools = agent.tool_defs();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut b = TrajectoryBuilder::new();
        while let Some(e) = rx.recv().await {
            b.observe(&e);
        }
        b
    });
    let outcome = agent
        .run(task.messages(shared.system.as_deref()), tx, cancel.clone())
        .await;
    let builder = collector.await.unwrap_or_default();
    let outcome = outcome?;
    if outcome.stop == verity_runtime::agent::StopReason::Cancelled {
        return Ok(None);
    }
    let calls: Vec<_> = outcome
        .messages
        .iter()
        .flat_map(|m| m.tool_calls.iter().cloned())
        .collect();
    let attempt = Attempt {
        answer: outcome.answer.clone(),
        calls,
    };
    let result = reward::score(&task.verifier, &task.ground_truth, &attempt).await;
    let task_json = json!({
        "id": task.id,
        "hash": verity_runtime::trajectory::canonical::digest(raw),
        "data_source": task.data_source,
        "ground_truth": task.ground_truth,
        "verifier": task.verifier,
        "meta": task.meta,
    });
    let builder = builder.with_tool_tokens(&*shared.model, &outcome).await;
    let mut record = builder.finish(
        shared.model.info(),
        agent.config(),
        &tools,
        &outcome,
        task_json,
    );
    let parse_failures = record["parse_failures"].as_array().map_or(0, Vec::len);
    if let Value::Object(o) = &mut record {
        o.insert("group_id".into(), json!(task.id));
        o.insert("sample_index".into(), json!(index));
        o.insert("reward".into(), reward::reward_json(&result));
    }
    let digest = shared.writer.lock().await.append(&mut record)?;
    if let Ok(mut s) = shared.stats.lock() {
        s.samples += 1;
        s.reward_sum += result.score;
        s.rewards.push(result.score);
        s.parse_failures += parse_failures;
        for c in &attempt.calls {
            *s.tool_calls.entry(c.name.clone()).or_default() += 1;
        }
        let e = s.per_task.entry(task.id.clone()).or_default();
        e.0 += 1;
        e.1 += usize::from(result.passed);
        shared.progress.set_message(format!(
            "mean reward {:.3}",
            s.reward_sum / s.samples as f64
        ));
    }
    shared.progress.inc(1);
    Ok(Some(Member {
        reward: result.score,
        digest,
        tokens: outcome.usage.completion_tokens,
        truncated: record["outcome"]["truncated"].as_bool().unwrap_or(false),
    }))
}

fn summarize(shared: &Shared, k: usize) -> Value {
    let Ok(s) = shared.stats.lock() else {
        return json!({});
    };
    let tasks = s.per_task.len().max(1) as f64;
    let solve = s.per_task.values().filter(|(_, c)| *c > 0).count() as f64 / tasks;
    let pass1: f64 = s
        .per_task
        .values()
        .map(|(n, c)| group::pass_at_k(*n, *c, 1))
        .filter(|x| x.is_finite())
        .sum::<f64>()
        / tasks;
    let passk: f64 = s
        .per_task
        .values()
        .map(|(n, c)| group::pass_at_k(*n, *c, k.min(*n)))
        .filter(|x| x.is_finite())
        .sum::<f64>()
        / tasks;
    json!({
        "samples_this_run": s.samples,
        "tasks_this_run": s.per_task.len(),
        "mean_reward": if s.samples == 0 { 0.0 } else { s.reward_sum / s.samples as f64 },
        "solve_rate": solve,
        "pass@1": pass1,
        format!("pass@{k}"): passk,
        "tool_calls": s.tool_calls,
        "parse_failure_rate": if s.samples == 0 { 0.0 } else { s.parse_failures as f64 / s.samples as f64 },
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rollout".into());
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    path.with_file_name(format!("{stem}.{suffix}"))
}

/// A 10-bin histogram of rewards in [0, 1] as a small standalone SVG.
fn histogram_svg(rewards: &[f64]) -> String {
    let mut bins = [0usize; 10];
    for r in rewards {
        let i = ((r.clamp(0.0, 1.0)) * 10.0).floor() as usize;
        bins[i.min(9)] += 1;
    }
    let max = bins.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, pad) = (400.0, 200.0, 30.0);
    let bw = (w - 2.0 * pad) / 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"10\">\n<text x=\"{pad}\" y=\"14\">reward histogram ({} samples)</text>\n",
        rewards.len()
    );
    for (i, c) in bins.iter().enumerate() {
        let bh = (h - 2.0 * pad) * (*c as f64) / (max as f64);
        let x = pad + i as f64 * bw;
        let y = h - pad - bh;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a7\"><title>[{:.1}, {:.1}): {c}</title></rect>\n",
            bw - 2.0,
            i as f64 / 10.0,
            (i + 1) as f64 / 10.0
        ));
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\">{:.1}</text>\n",
            x,
            h - pad + 12.0,
            i as f64 / 10.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
