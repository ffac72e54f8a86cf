//! `verity train grpo TASKS --model DIR --out DIR`: iterations of
//! rollout (the current checkpoint samples G runs per task through the real agent loop,
//! tools and policy) → verify (the file's hash chain; the verifiers already scored every
//! run) → GRPO steps on those runs' recorded tokens → the next checkpoint.
//!
//! With `--guide teacher`, a task none of whose samples passed gets the runtime's teacher
//! demonstration (`verity rollout --teacher`: the current checkpoint forced to write the
//! task's plan, through the same tools and policy) as an off-policy member of its group
//! (LUFFY): without it such a group is all zeros and teaches nothing.
//!
//! Every iteration's records go to one trajectory file (`OUT/runs.jsonl`), every
//! iteration's checkpoint is kept (`OUT/iter-N`), and `OUT/summary.json` has one line of
//! numbers per iteration.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Instant,
};

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use verity_runtime::{
    model::ModelBackend,
    rollout::{self, LoadedTask, Rollout, RolloutSettings, Totals},
    trajectory::{
        chain::{self, ChainWriter},
        group::{self, GrpoNorm},
    },
    Approver, AutoApprove, Caller, CallerKind, DenyAsk,
};
use verity_train::{
    batch::{Batch, Example},
    checkpoint::{self, TrainState},
    grpo::{
        branch_credit, grpo_loss, recompute_old_logprobs, weigh_negatives, GrpoSettings, GuideLoss,
        Normalise,
    },
    model::Qwen3,
};

use super::{model_dir, token_rows_appended, OptimOpts};
use crate::commands::{
    agent_opts::{AgentOpts, Resolved},
    rollout::Bar,
};

#[derive(Debug, Args)]
pub struct GrpoArgs {
    /// Tasks (one JSON object per line, as `verity rollout` reads them).
    tasks: PathBuf,
    /// Output folder: `runs.jsonl`, `iter-N/` checkpoints, `summary.json`.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Rollout → train iterations.
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// Tasks sampled per iteration (taken in file order, wrapping around).
    #[arg(long, default_value_t = 32)]
    tasks_per_iteration: usize,
    /// Samples per task (the group size).
    #[arg(long, short = 'g', default_value_t = 8)]
    samples: usize,
    /// DAPO-style dynamic sampling: a group whose runs all scored alike (no signal) is
    /// drawn again, up to this many extra rounds (0: off). The discarded rounds stay in
    /// `runs.jsonl` as runs outside any group.
    #[arg(long, default_value_t = 0)]
    dynamic_sampling: usize,
    /// Groups per optimizer step (verl's mini-batch). More groups average more runs into
    /// each step: fewer, less noisy updates.
    #[arg(long, default_value_t = 4)]
    groups_per_step: usize,
    /// Groups per forward/backward pass (verl's micro-batch): a step is computed in passes
    /// over its runs grouped by length, each about the padded size of this many groups of
    /// median-length runs (a batch is padded to its longest run: long runs get small batches
    /// of their own), and its gradients are summed over them, so this bounds memory and does
    /// not change the update.
    #[arg(long, default_value_t = 4)]
    micro_groups: usize,
    /// Passes over each iteration's runs (1: every step but the first is slightly off
    /// policy, which the clipped ratio bounds).
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Advantages: grpo ((r − mean) / std of the group) or dr-grpo (r − mean; use with
    /// `--normalise constant`).
    #[arg(long, default_value = "grpo")]
    advantage: String,
    /// Loss averaging: token (over all tokens of a step), sequence (per run, then over
    /// runs: the original GRPO) or constant (÷ rows × --max-tokens-per-call × --max-turns:
    /// Dr. GRPO).
    #[arg(long, default_value = "token")]
    normalise: String,
    /// The ratio clip below 1.
    #[arg(long, default_value_t = 0.2)]
    clip_low: f64,
    /// The ratio clip above 1 (DAPO's clip-higher: 0.28).
    #[arg(long, default_value_t = 0.2)]
    clip_high: f64,
    /// Weight of the runs with a negative advantage (1: GRPO as published; 0: learn from
    /// the group's better runs only). A failed run's low-confidence tokens include the
    /// layout it shares with the runs that passed, and pushing those down is what makes
    /// calls malformed (BENCHMARKS.md).
    #[arg(long, default_value_t = 1.0)]
    negative_weight: f64,
    /// Which tokens a run's advantage is credited to: run (every trained token gets it:
    /// GRPO as published) or branch (a token gets the change in the mean advantage of the
    /// group's runs that share the prefix up to it: only where runs part ways; the tokens
    /// all runs wrote alike, and a run's tokens after it is alone, get 0).
    #[arg(long, value_enum, default_value_t = Credit::Run)]
    credit: Credit,
    /// KL coefficient to the starting model (k3 estimator; 0: none, no reference pass).
    #[arg(long, default_value_t = 0.0)]
    kl_beta: f64,
    /// Guidance for tasks none of whose samples passed: teacher (the task's plan,
    /// demonstrated through the runtime by the current checkpoint, joins the group as an
    /// off-policy run; tasks need `meta.solution`) or none.
    #[arg(long, value_enum, default_value_t = Guide::None)]
    guide: Guide,
    /// How the guide's tokens are trained: shaped (LUFFY: −A·π/(π+γ), unclipped) or clip
    /// (the clipped ratio against the current policy's own logprobs).
    #[arg(long, value_enum, default_value_t = GuideLossArg::Shaped)]
    guide_loss: GuideLossArg,
    /// γ of the shaped guide loss.
    #[arg(long, default_value_t = 0.1)]
    guide_gamma: f64,
    /// Continue the run in --out where it stopped, up to --iterations in all: from the
    /// checkpoint of its last finished iteration (weights, Adam moments, step count), the KL
    /// still to the model it started from, with the same --model, tasks and settings; the
    /// records an interrupted iteration left in runs.jsonl are used and only the rest drawn.
    /// A resumed run writes what the uninterrupted one would have.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    optim: OptimOpts,
    #[command(flatten)]
    opts: AgentOpts,
}

/// Which tokens a run's advantage goes to (`--credit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Credit {
    /// Every trained token of the run.
    Run,
    /// The tokens where the group's runs part ways ([`branch_credit`]).
    Branch,
}

/// Where guidance for all-fail groups comes from (`--guide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Guide {
    /// No guidance: an all-fail group has no signal and is skipped.
    None,
    /// The runtime's scripted teacher ([`TeacherModel`]).
    Teacher,
}

/// `--guide-loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GuideLossArg {
    Shaped,
    Clip,
}

/// The id a task's guide run is recorded under.
const GUIDE_SUFFIX: &str = "~guide";

pub fn run(args: GrpoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.iterations >= 1, "--iterations must be at least 1");
    anyhow::ensure!(
        args.samples >= 2,
        "--samples must be at least 2: GRPO compares the samples of a task"
    );
    anyhow::ensure!(
        args.tasks_per_iteration >= 1
            && args.groups_per_step >= 1
            && args.micro_groups >= 1
            && args.epochs >= 1,
        "--tasks-per-iteration, --groups-per-step, --micro-groups and --epochs must be at least 1"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.negative_weight),
        "--negative-weight must be between 0 and 1, got {}",
        args.negative_weight
    );
    let advantage = match args.advantage.as_str() {
        "grpo" => "grpo",
        "dr-grpo" | "dr_grpo" => "dr_grpo",
        other => anyhow::bail!("--advantage {other:?}: expected grpo or dr-grpo"),
    };
    anyhow::ensure!(
        args.guide_gamma > 0.0 && args.guide_gamma.is_finite(),
        "--guide-gamma must be positive, got {}",
        args.guide_gamma
    );
    let tasks = rollout::read_tasks(&args.tasks)?;
    anyhow::ensure!(!tasks.is_empty(), "{}: no tasks", args.tasks.display());
    if args.guide == Guide::Teacher {
        // Refused before anything runs, not at the first all-fail group.
        for t in &tasks {
            t.task
                .teacher_plan()
                .map_err(|e| anyhow::anyhow!("--guide teacher: {e}"))?;
        }
    }
    let model_spec = args
        .opts
        .model
        .clone()
        .context("--model: the model to start from (a checkpoint folder, or tiny)")?;
    let start = model_dir(&model_spec)?;
    // --seed seeds the rollouts' sampling and the order of the optimizer steps.
    let seed = args.opts.seed.unwrap_or(0);
    let mut resolved = args
        .opts
        .resolve(Caller::new(CallerKind::Rollout, "train grpo"))?;
    anyhow::ensure!(
        resolved.base_url.is_none(),
        "verity train grpo samples with the embedded engine (it trains the weights it loads)"
    );
    let sampling = &mut resolved.agent.sampling;
    if sampling.temperature.is_none() {
        sampling.temperature = Some(1.0);
        sampling.greedy = false;
    }
    anyhow::ensure!(
        !sampling.greedy,
        "--temperature 0 samples every group identically: GRPO needs a temperature > 0"
    );
    let temperature = sampling.temperature.unwrap_or(1.0);
    let normalise = match args.normalise.as_str() {
        "token" => Normalise::Token,
        "sequence" => Normalise::Sequence,
        // Dr. GRPO divides by the longest response there can be: every turn at its limit.
        "constant" => Normalise::Constant(
            resolved.agent.sampling.max_tokens * resolved.agent.max_turns.max(1),
        ),
        other => anyhow::bail!("--normalise {other:?}: expected token, sequence or constant"),
    };
    let settings = GrpoSettings {
        clip_low: args.clip_low,
        clip_high: args.clip_high,
        kl_beta: args.kl_beta,
        normalise,
        temperature,
        guide: match args.guide_loss {
            GuideLossArg::Shaped => GuideLoss::Shaped {
                gamma: args.guide_gamma,
            },
            GuideLossArg::Clip => GuideLoss::Clip,
        },
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let runs = args.out.join("runs.jsonl");
    let steps_per_iteration = args.tasks_per_iteration.div_ceil(args.groups_per_step) * args.epochs;
    let schedule = verity_train::schedule::Schedule {
        // Constant after warm-up: the number of steps depends on how many groups carry a
        // signal, which is known only after each rollout.
        min_ratio: 1.0,
        ..args
            .optim
            .schedule(args.iterations * steps_per_iteration, super::GRPO_LR)?
    };
    let mut settings_json = json!({
        "tasks": args.tasks.display().to_string(),
        "samples": args.samples,
        "dynamic_sampling": args.dynamic_sampling,
        "tasks_per_iteration": args.tasks_per_iteration,
        "groups_per_step": args.groups_per_step,
        "micro_groups": args.micro_groups,
        "epochs": args.epochs,
        "advantage": advantage,
        "negative_weight": args.negative_weight,
        "credit": args.credit,
        "guide": args.guide,
        "grpo": settings,
        "schedule": schedule,
        "adamw": args.optim.adamw(),
        "seed": seed,
    });
    let resumed = if args.resume {
        let r = resume_point(&args.out, &start, &mut settings_json, args.optim.warmup)?;
        anyhow::ensure!(
            r.summary.len() < args.iterations,
            "--resume: {} already has {} iterations; ask for more with --iterations",
            args.out.display(),
            r.summary.len()
        );
        Some(r)
    } else {
        refuse_existing(&args.out)?;
        None
    };
    // The schedule as the run has it (a resumed run keeps the warm-up it started with).
    let schedule: verity_train::schedule::Schedule =
        serde_json::from_value(settings_json["schedule"].clone())?;
    // The model the run started from: the KL's reference and the drift's origin.
    let start_model = Qwen3::load(&start)?;
    let reference = if args.kl_beta > 0.0 {
        Some(start_model.frozen_copy()?)
    } else {
        None
    };
    let start_weights = start_model.snapshot()?;
    drop(start_model);
    let (model, mut opt, mut state, mut current, mut summary, done_iterations) = match resumed {
        Some(Resumed {
            summary,
            checkpoint: Some((dir, state)),
        }) => {
            let (model, opt) = checkpoint::trainable(&dir, args.optim.adamw(), Some(state.step))?;
            let done = summary.len();
            eprintln!(
                "verity: resuming {} after iteration {done} (step {})",
                args.out.display(),
                state.step
            );
            (model, opt, state, dir, summary, done)
        }
        other => {
            let (model, opt) = checkpoint::trainable(&start, args.optim.adamw(), None)?;
            let state = TrainState::start("grpo", &start, settings_json);
            if other.is_some() {
                eprintln!(
                    "verity: resuming {} in its first iteration",
                    args.out.display()
                );
            }
            (model, opt, state, start.clone(), Vec::new(), 0)
        }
    };
    let rt = super::super::runtime()?;
    // The end of what has been checked of runs.jsonl: each iteration checks and reads only
    // the records it appended. A resumed run's first iteration checks and reads the whole
    // file (the records an interrupted iteration left are in it; a damaged file is refused
    // before anything is drawn).
    let mut checked = chain::ChainMark::default();
    let mut resuming = runs.exists();
    for it in done_iterations + 1..=args.iterations {
        let began = Instant::now();
        let batch_tasks = iteration_tasks(&tasks, it, args.tasks_per_iteration);
        let ids: std::collections::HashSet<String> =
            batch_tasks.iter().map(|t| t.task.id.clone()).collect();
        resolved.model = current.display().to_string();
        // What the file already holds of this iteration: nothing, as its task ids are its
        // own (a task seen again is `~pass-K`) — unless an interrupted run left some. Only
        // then is the file scanned; scanning it every iteration cost more as it grew.
        let done = if resuming {
            rollout::scan(&runs)?
        } else {
            rollout::Done::default()
        };
        let mut totals = rt.block_on(sample(
            &resolved,
            &batch_tasks,
            &runs,
            &done,
            args.samples,
            args.dynamic_sampling,
        ))?;
        // Samples an interrupted run drew count in this iteration's figures.
        let drawn_before: Vec<f64> = ids
            .iter()
            .filter_map(|id| done.samples.get(id))
            .flat_map(|s| s.values().map(|m| m.reward))
            .collect();
        totals.samples += drawn_before.len();
        totals.reward_sum += drawn_before.iter().sum::<f64>();
        let rollout_secs = began.elapsed().as_secs_f64();
        // This iteration's runs, by group (dynamic sampling's discarded rounds have none);
        // the records are checked on the way.
        let iteration_start = checked.clone();
        let (mut by_group, _, sampled_end) = iteration_groups(&runs, &checked, advantage, &ids)?;
        checked = sampled_end;
        let unsolved: Vec<String> = by_group
            .iter()
            .filter(|(_, g)| g.iter().all(|(_, reward)| *reward < 1.0))
            .map(|(id, _)| id.clone())
            .collect();
        let mut guide = GuideTotals {
            unsolved_groups: unsolved.len(),
            ..GuideTotals::default()
        };
        if args.guide == Guide::Teacher && !unsolved.is_empty() {
            let teach_began = Instant::now();
            let guide_tasks: Vec<LoadedTask> = batch_tasks
                .iter()
                .filter(|t| unsolved.contains(&t.task.id))
                .map(|t| with_id(t, format!("{}{GUIDE_SUFFIX}", t.task.id)))
                .collect();
            let demos = rt.block_on(teach(&resolved, &guide_tasks, &runs, &done))?;
            // A demonstration an interrupted run left is read with the group record written
            // now: from the start of the file, once, when resuming.
            let from = if resuming { &iteration_start } else { &checked };
            let (_, demo_groups, demos_end) = iteration_groups(&runs, from, advantage, &ids)?;
            checked = demos_end;
            for (id, mut demo_rows) in demo_groups {
                // One demonstration per task; one that failed (it should not) guides nothing.
                let Some((mut demo, reward)) = demo_rows.pop() else {
                    continue;
                };
                let Some(group) = by_group.get_mut(&id) else {
                    continue;
                };
                if reward < 1.0 {
                    continue;
                }
                demo.off_policy = true;
                group.push((demo, reward));
                // The group's advantages, the demonstration among its members.
                let rewards: Vec<f64> = group.iter().map(|(_, r)| *r).collect();
                let a = group::stats(&rewards, GrpoNorm::default()).advantages;
                let adv = if advantage == "dr_grpo" {
                    a.dr_grpo
                } else {
                    a.grpo
                };
                for ((e, _), a) in group.iter_mut().zip(adv) {
                    e.advantage = a as f32;
                }
                guide.guided_groups += 1;
            }
            guide.demo_seconds = teach_began.elapsed().as_secs_f64();
            let demos_before: usize = guide_tasks
                .iter()
                .filter_map(|t| done.samples.get(&t.task.id))
                .map(|s| s.len())
                .sum();
            guide.demo_runs = demos.samples + demos_before;
            // A demonstration that failed (e.g. cut off by --max-tokens-per-call), or whose
            // turns have no flat token view (`verity export` says why), guides nothing.
            guide.unusable_demos = guide_tasks.len() - guide.guided_groups;
            if guide.unusable_demos > 0 {
                tracing::warn!(
                    "iteration {it}: {} of {} teacher demonstrations failed or have no flat \
                     token view; their groups stay without signal",
                    guide.unusable_demos,
                    guide_tasks.len()
                );
            }
        }
        // Groups whose runs all scored alike carry no signal (advantage 0 everywhere).
        let mut groups: Vec<Vec<Example>> = by_group
            .into_values()
            .map(|g| g.into_iter().map(|(e, _)| e).collect::<Vec<_>>())
            .filter(|g| g.iter().any(|r| r.advantage.abs() > 1e-9))
            .collect();
        for g in &mut groups {
            // The guide's tokens were the teacher's; its ratios are taken against the
            // policy that is about to be trained, as it stands now.
            recompute_old_logprobs(&model, g, temperature)?;
        }
        for g in &mut groups {
            if args.credit == Credit::Branch {
                branch_credit(g);
            }
            weigh_negatives(g, args.negative_weight as f32);
        }
        let train_began = Instant::now();
        let (mut losses, mut ratios, mut clipped, mut kls, mut tokens) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0usize);
        for epoch in 0..args.epochs {
            let mut order: Vec<usize> = (0..groups.len()).collect();
            verity_train::SplitMix(seed ^ ((it * 1000 + epoch) as u64)).shuffle(&mut order);
            for chunk in order.chunks(args.groups_per_step) {
                let step_rows: usize = chunk.iter().map(|&g| groups[g].len()).sum();
                let step_tokens: usize = chunk
                    .iter()
                    .flat_map(|&g| groups[g].iter().map(Example::trained))
                    .sum();
                let mut sum = opt.grad_sum();
                let mut step = StepStats::default();
                // Micro-batches the size --micro-groups makes of the step's groups, over its
                // runs by length: a long run pads only a small batch of long runs.
                let step_runs: Vec<&Example> =
                    chunk.iter().flat_map(|&g| groups[g].iter()).collect();
                let passes = chunk.len().div_ceil(args.micro_groups);
                for picked in verity_train::batch::micro_batches(&step_runs, passes) {
                    let batch = Batch::new(&picked)?;
                    let (loss, stats) = grpo_loss(&model, reference.as_ref(), &batch, &settings)?;
                    let share = settings.normalise.share(&batch, step_rows, step_tokens);
                    let loss = (loss * share)?;
                    opt.accumulate(&mut sum, &loss.backward()?)?;
                    step.add(
                        f64::from(loss.to_scalar::<f32>()?),
                        &stats,
                        batch.trained_tokens,
                    );
                }
                let lr = schedule.at(opt.step);
                let grad_norm = opt.step_sum(sum, lr)?;
                let (ratio, clip, kl) = step.means();
                state.step = opt.step;
                state.history.push(json!({
                    "iteration": it, "step": opt.step, "loss": step.loss, "lr": lr,
                    "grad_norm": grad_norm, "ratio": ratio, "clipped": clip,
                    "kl": kl, "tokens": step.tokens, "rows": step_rows,
                    "guide_tokens": step.guide_tokens,
                }));
                guide.tokens += step.guide_tokens;
                guide.prob_sum += step.guide_prob;
                losses.push(step.loss);
                ratios.push(ratio);
                clipped.push(clip);
                kls.push(kl);
                tokens += step.tokens;
            }
        }
        let train_secs = train_began.elapsed().as_secs_f64();
        let next = args.out.join(format!("iter-{it}"));
        checkpoint::save(&next, &start, &model, &opt, &state)?;
        let mean = |xs: &[f64]| {
            if xs.is_empty() {
                Value::Null
            } else {
                json!(xs.iter().sum::<f64>() / xs.len() as f64)
            }
        };
        let line = json!({
            "iteration": it,
            "sampled_with": current.display().to_string(),
            "checkpoint": next.display().to_string(),
            "tasks": batch_tasks.len(),
            "samples": totals.samples,
            "mean_reward": totals.mean_reward(),
            // Malformed calls per run: the first sign of a policy drifting out of its layout.
            "parse_failures_per_run": totals.parse_failures as f64
                / (totals.samples - drawn_before.len()).max(1) as f64,
            // Of `samples`, those an interrupted run had drawn (--resume); parse failures and
            // zero-variance groups count the others only.
            "samples_before_resume": drawn_before.len(),
            "groups_with_signal": groups.len(),
            "zero_variance_groups": totals.zero_variance_groups,
            // Groups none of whose samples passed, and how many a demonstration joined.
            "unsolved_groups": guide.unsolved_groups,
            "guided_groups": guide.guided_groups,
            "guide": if args.guide == Guide::None { Value::Null } else { json!({
                "demo_runs": guide.demo_runs,
                "unusable_demos": guide.unusable_demos,
                "demo_seconds": guide.demo_seconds,
                // The teacher's share of what was trained, and how likely the policy found
                // its tokens while training on them.
                "tokens": guide.tokens,
                "token_share": guide.tokens as f64 / tokens.max(1) as f64,
                "mean_prob": if guide.tokens == 0 {
                    Value::Null
                } else {
                    json!(guide.prob_sum / guide.tokens as f64)
                },
            })},
            "steps": losses.len(),
            "trained_tokens": tokens,
            "loss": mean(&losses),
            "ratio": mean(&ratios),
            "clipped": mean(&clipped),
            "kl": mean(&kls),
            // RMS distance of the weights from the starting checkpoint.
            "drift_rms": model.drift(&start_weights)?,
            "rollout_seconds": rollout_secs,
            "train_seconds": train_secs,
            "iteration_seconds": began.elapsed().as_secs_f64(),
        });
        eprintln!("verity: iteration {it}: {line}");
        summary.push(line);
        std::fs::write(
            args.out.join("summary.json"),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        current = next;
        resuming = false;
    }
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&json!({
            "runs": runs.display().to_string(),
            "final": current.display().to_string(),
            "iterations": summary,
        }))?
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What guidance added in one iteration.
#[derive(Default)]
struct GuideTotals {
    unsolved_groups: usize,
    guided_groups: usize,
    demo_runs: usize,
    /// Demonstrations that failed or have no flat token view.
    unusable_demos: usize,
    demo_seconds: f64,
    /// Guide tokens trained (over all epochs) and the sum of their probabilities.
    tokens: usize,
    prob_sum: f64,
}

/// Where an earlier run in `--out` stopped: its finished iterations (`summary.json`) and
/// the last one's checkpoint with its training state (none if it stopped in iteration 1).
struct Resumed {
    summary: Vec<Value>,
    checkpoint: Option<(PathBuf, TrainState)>,
}

/// The run in `out` that `--resume` continues. Its settings must be `settings` but for the
/// schedule's length; without `--warmup` it keeps the warm-up it started with (written into
/// `settings`).
fn resume_point(
    out: &Path,
    start: &Path,
    settings: &mut Value,
    warmup_given: Option<usize>,
) -> anyhow::Result<Resumed> {
    anyhow::ensure!(
        out.join("runs.jsonl").is_file(),
        "--resume: {} holds no run to continue (no runs.jsonl); leave out --resume to start one",
        out.display()
    );
    let path = out.join("summary.json");
    let summary: Vec<Value> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "--resume: {} is not the summary train grpo writes",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for (i, line) in summary.iter().enumerate() {
        anyhow::ensure!(
            line["iteration"].as_u64() == Some(i as u64 + 1),
            "--resume: {} entry {} is iteration {}, expected {}",
            path.display(),
            i + 1,
            line["iteration"],
            i + 1
        );
    }
    if summary.is_empty() {
        return Ok(Resumed {
            summary,
            checkpoint: None,
        });
    }
    let last = summary.len();
    let dir = out.join(format!("iter-{last}"));
    let state = checkpoint::read_state(&dir)?.with_context(|| {
        format!(
            "--resume: {} (the last finished iteration's checkpoint) has no train_state/",
            dir.display()
        )
    })?;
    anyhow::ensure!(
        state.kind == "grpo",
        "--resume: {} is a {} checkpoint",
        dir.display(),
        state.kind
    );
    let same_place = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    anyhow::ensure!(
        same_place(Path::new(&state.base), start),
        "--resume: the run in {} started from {}, not from --model {}",
        out.display(),
        state.base,
        start.display()
    );
    if warmup_given.is_none() {
        settings["schedule"]["warmup"] = state.settings["schedule"]["warmup"].clone();
    }
    let differ = differing_settings(&state.settings, settings);
    anyhow::ensure!(
        differ.is_empty(),
        "--resume: the run in {} was started with other settings:\n  {}",
        out.display(),
        differ.join("\n  ")
    );
    Ok(Resumed {
        summary,
        checkpoint: Some((dir, state)),
    })
}

/// The settings that differ between a run's and a resumption's (`key: then X, now Y`),
/// the schedule's length aside (--iterations may grow).
fn differing_settings(then: &Value, now: &Value) -> Vec<String> {
    let (mut then, mut now) = (then.clone(), now.clone());
    for v in [&mut then, &mut now] {
        if let Some(s) = v.get_mut("schedule").and_then(Value::as_object_mut) {
            s.remove("total");
        }
    }
    let (Some(a), Some(b)) = (then.as_object(), now.as_object()) else {
        return vec![format!("then {then}, now {now}")];
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or("(none)".to_owned(), Value::to_string);
            format!("{k}: then {}, now {}", show(a.get(k)), show(b.get(k)))
        })
        .collect()
}

/// Refuses to start a run in a folder that holds one: appending to its records and
/// numbering iterations from 1 again would mix two runs.
fn refuse_existing(out: &Path) -> anyhow::Result<()> {
    for name in ["runs.jsonl", "summary.json"] {
        anyhow::ensure!(
            !out.join(name).exists(),
            "{} already holds a run ({name}); --resume continues it, or choose another --out",
            out.display()
        );
    }
    Ok(())
}

/// Rows by group id, each with its run's reward.
type Groups = std::collections::BTreeMap<String, Vec<(Example, f64)>>;

/// The runs `runs` gained after `from` whose group is in `ids`, and the teacher's
/// demonstrations of those groups (`ID~guide`, by `ID`), with their rewards; and the file's
/// new end (what was read is checked first).
fn iteration_groups(
    runs: &Path,
    from: &chain::ChainMark,
    advantage: &str,
    ids: &std::collections::HashSet<String>,
) -> anyhow::Result<(Groups, Groups, chain::ChainMark)> {
    let (mut sampled, mut demos) = (Groups::new(), Groups::new());
    let (rows, end) = token_rows_appended(runs, from, advantage)?;
    for r in rows.into_iter().filter(|r| r.example.trained() > 0) {
        if ids.contains(&r.group) {
            sampled
                .entry(r.group)
                .or_default()
                .push((r.example, r.reward));
        } else if let Some(id) = r.group.strip_suffix(GUIDE_SUFFIX) {
            if ids.contains(id) {
                demos
                    .entry(id.to_owned())
                    .or_default()
                    .push((r.example, r.reward));
            }
        }
    }
    Ok((sampled, demos, end))
}

/// One optimizer step's figures, gathered over its micro-batches.
#[derive(Default)]
struct StepStats {
    /// The step's loss (the micro-batches' scaled losses summed).
    loss: f64,
    tokens: usize,
    /// Token-weighted sums of the ratio, the clipped share and the KL.
    ratio: f64,
    clipped: f64,
    kl: f64,
    guide_tokens: usize,
    /// Sum of the guide tokens' probabilities.
    guide_prob: f64,
}

impl StepStats {
    fn add(&mut self, loss: f64, s: &verity_train::grpo::GrpoStats, tokens: usize) {
        self.loss += loss;
        self.tokens += tokens;
        self.guide_tokens += s.guide_tokens;
        self.guide_prob += s.guide_prob * s.guide_tokens as f64;
        let w = tokens as f64;
        self.ratio += s.ratio * w;
        self.clipped += s.clipped * w;
        self.kl += s.kl * w;
    }

    /// Mean ratio, clipped share and KL over the step's trained tokens.
    fn means(&self) -> (f64, f64, f64) {
        let n = (self.tokens as f64).max(1.0);
        (self.ratio / n, self.clipped / n, self.kl / n)
    }
}

/// The tasks of iteration `it` (1-based): the next `n` in file order, wrapping around; a
/// task seen again gets `~pass-K` on its id so its group is a new one.
fn iteration_tasks(tasks: &[LoadedTask], it: usize, n: usize) -> Vec<LoadedTask> {
    (0..n)
        .map(|j| {
            let k = (it - 1) * n + j;
            let t = &tasks[k % tasks.len()];
            match k / tasks.len() {
                0 => t.clone(),
                pass => with_id(t, format!("{}~pass-{}", t.task.id, pass + 1)),
            }
        })
        .collect()
}

/// `task` under another id.
fn with_id(task: &LoadedTask, id: String) -> LoadedTask {
    let mut t = task.clone();
    t.task.id = id.clone();
    if let Some(o) = t.raw.as_object_mut() {
        o.insert("id".into(), Value::String(id));
    }
    t
}

/// Samples `samples` runs of each task with the model `resolved` names, appending to
/// `out` (drawing only what `done` lacks).
async fn sample(
    resolved: &Resolved,
    tasks: &[LoadedTask],
    out: &Path,
    done: &rollout::Done,
    samples: usize,
    dynamic_sampling: usize,
) -> anyhow::Result<Totals> {
    // No prefix cache: the ratios below are taken against these logprobs (see rollout.rs).
    let model = resolved.backend(true).await?;
    draw(
        resolved,
        model,
        tasks,
        out,
        done,
        samples,
        dynamic_sampling,
        "rollout",
    )
    .await
}

/// One teacher demonstration of each of `tasks` (each with a `meta.solution`) by the model
/// `resolved` names, appended to `out` (those `done` lacks).
async fn teach(
    resolved: &Resolved,
    tasks: &[LoadedTask],
    out: &Path,
    done: &rollout::Done,
) -> anyhow::Result<Totals> {
    let model = resolved.teacher(tasks, "--guide teacher", false).await?;
    draw(resolved, model, tasks, out, done, 1, 0, "guide").await
}

/// `samples` runs of each task by `model` through the agent loop, appended to `out`;
/// the samples and groups `done` has are not drawn again.
#[allow(clippy::too_many_arguments)]
async fn draw(
    resolved: &Resolved,
    model: Arc<dyn ModelBackend>,
    tasks: &[LoadedTask],
    out: &Path,
    done: &rollout::Done,
    samples: usize,
    dynamic_sampling: usize,
    label: &str,
) -> anyhow::Result<Totals> {
    let writer = crate::commands::key::signed(ChainWriter::open(out)?, resolved.sign.as_deref())?;
    let (gate, _hub) = resolved.gate().await?;
    let approver: Arc<dyn Approver> = if resolved.yes {
        Arc::new(AutoApprove)
    } else {
        Arc::new(DenyAsk)
    };
    let todo = rollout::samples_to_draw(tasks, done, samples);
    let bar = Bar(indicatif::ProgressBar::new(todo as u64).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {label} {{pos}}/{{len}} samples ({{per_sec}}) {{wide_bar}} {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    ));
    let runner = Rollout::new(
        model,
        gate,
        approver,
        resolved.agent.clone(),
        resolved.system.clone(),
    );
    let outcome = runner
        .run(
            tasks,
            done,
            writer,
            RolloutSettings {
                dynamic_sampling,
                // One sample at a time: batched runs' logprobs are not the trainer's
                // (docs/engine-notes.md, measured 2026-12-02).
                ..RolloutSettings::for_backend(samples, 1, true)
            },
            &bar,
            CancellationToken::new(),
        )
        .await?;
    bar.0.finish_and_clear();
    anyhow::ensure!(!outcome.cancelled, "the rollout was cancelled");
    Ok(outcome.totals)
}
