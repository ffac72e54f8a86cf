//! `verity train sft|grpo|check`: fine-tunes tiny Qwen3-architecture models on Verity's
//! own data (`verity_train`), and checks that the trainer's forward pass is the engine's.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use verity_runtime::{
    export::{self, ExportFormat, ExportOptions},
    model::tiny,
    trajectory::chain::ChainMark,
};
use verity_train::{
    batch::{Batch, Example},
    checkpoint::{self, TrainState},
    model::{token_logprobs, Qwen3},
    optim::AdamWConfig,
    schedule::Schedule,
    sft::{self, SftSettings, ShortContext},
};

#[path = "train_grpo.rs"]
mod grpo;

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Supervised fine-tuning on `verity export --format trl-sft` rows (e.g. teacher
    /// demonstrations from `verity rollout --teacher`, or --min-reward 1 samples).
    Sft(SftArgs),
    /// Iterations of rollout → verify → GRPO steps, every iteration's records appended to
    /// one trajectory file and every iteration's checkpoint kept.
    Grpo(Box<grpo::GrpoArgs>),
    /// Recompute a trajectory file's recorded logprobs with the trainer's forward pass and
    /// report the largest difference (the engine and the trainer must agree, or GRPO's
    /// importance ratios are meaningless).
    Check(CheckArgs),
    /// Mean loss per trained token of SFT rows under a model, without training (e.g. a
    /// held-out split's teacher demonstrations, before and after training).
    Loss(LossArgs),
}

pub fn run(cmd: TrainCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TrainCommand::Sft(a) => sft_cmd(a),
        TrainCommand::Grpo(a) => grpo::run(*a),
        TrainCommand::Check(a) => check(a),
        TrainCommand::Loss(a) => loss(a),
    }
}

/// `train sft`'s default peak learning rate.
pub const SFT_LR: f64 = 3e-3;
/// `train grpo`'s default learning rate.
pub const GRPO_LR: f64 = 1e-4;

/// The optimizer flags every training command shares.
#[derive(Debug, Clone, Args)]
pub struct OptimOpts {
    /// Peak learning rate (default: 3e-3 for `sft`, which trains the tiny models from
    /// random weights; 1e-4 for `grpo`, which refines them: at 1e-3 the GRPO iterations'
    /// sampled reward fell from 0.45 to 0.18; at 1e-4 the solve rate held — BENCHMARKS.md).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Linear warm-up steps (default: 5% of the steps).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// The cosine schedule's floor, as a fraction of --lr.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the gradient's global norm to this (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// AdamW's ε. Near a weight's typical gradient size it damps the update of weights
    /// whose gradients are smaller still (Adam otherwise moves every weight by about
    /// --lr, whatever its gradient).
    #[arg(long, default_value_t = 1e-8)]
    pub adam_eps: f64,
}

impl OptimOpts {
    /// The schedule over `total` steps; `default_lr` is the command's own when `--lr` is
    /// not given.
    pub fn schedule(&self, total: usize, default_lr: f64) -> anyhow::Result<Schedule> {
        let lr = self.lr.unwrap_or(default_lr);
        anyhow::ensure!(
            lr > 0.0 && lr.is_finite(),
            "--lr must be positive, got {lr}"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.min_lr_ratio),
            "--min-lr-ratio must be between 0 and 1, got {}",
            self.min_lr_ratio
        );
        Ok(Schedule {
            lr,
            warmup: self.warmup.unwrap_or(total / 20).max(1),
            total,
            min_ratio: self.min_lr_ratio,
        })
    }

    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            weight_decay: self.weight_decay,
            clip: self.clip,
            eps: self.adam_eps,
            ..AdamWConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct SftArgs {
    /// Rows with `input_ids` and `completion_mask` (or `assistant_masks`), one JSON object
    /// per line: `verity export RUNS --format trl-sft --min-reward 1`.
    data: PathBuf,
    /// The model to start from: `tiny` or a local Qwen3 model folder (a previous
    /// checkpoint, `verity model tiny --family qwen3 --out DIR`).
    #[arg(long, short = 'm', default_value = "tiny")]
    model: String,
    /// Checkpoint folder to write (a model folder `--model` loads as it is).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Optimizer steps (the tiny model learns to copy numbers into its calls after ~1,000
    /// steps on short context, --short-context-steps; on whole rows, 2,000–3,000 and
    /// seed-dependently. Its solve rate on new numbers keeps rising well past that: 0.42 at
    /// 2,000 steps, 0.82 at 4,000 over three seeds — BENCHMARKS.md, `verity train`).
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Also write the checkpoint every this many steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    save_every: usize,
    /// Seed of the data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop (and write the checkpoint) after this many steps of this invocation, as if
    /// interrupted; `--resume` continues the same schedule.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Continue the run whose checkpoint is --out (same data and settings; --steps may
    /// grow).
    #[arg(long)]
    resume: bool,
    /// Train the first N steps on short windows — each assistant turn with only the
    /// --short-context-tokens tokens before its end — then on whole rows. A model learning
    /// from random weights forms the circuit that copies numbers far sooner on short
    /// context (the tiny model: ~1,000 steps instead of 2,000–3,000; BENCHMARKS.md).
    /// 0: whole rows from the start.
    #[arg(long, default_value_t = 0)]
    short_context_steps: usize,
    /// Window length of --short-context-steps, in tokens (the turn included).
    #[arg(long, default_value_t = 160)]
    short_context_tokens: usize,
    #[command(flatten)]
    optim: OptimOpts,
}

/// `tiny` (generated when missing) or a local folder.
pub fn model_dir(spec: &str) -> anyhow::Result<PathBuf> {
    if spec == "tiny" {
        let dir = verity_runtime::model::tiny_model_dir();
        if !tiny::is_current(&dir) {
            tiny::generate(&dir, &tiny::TinySpec::default())
                .with_context(|| format!("generating the tiny model in {}", dir.display()))?;
        }
        return Ok(dir);
    }
    let dir = PathBuf::from(spec);
    anyhow::ensure!(
        dir.join("config.json").is_file(),
        "--model {spec}: verity train needs a local model folder with config.json and \
         safetensors weights (or `tiny`)"
    );
    Ok(dir)
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{pos}}/{{len}} {{wide_bar}} {{msg}} [{{elapsed}}<{{eta}}]"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

fn sft_cmd(args: SftArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.steps >= 1, "--steps must be at least 1");
    anyhow::ensure!(args.batch_size >= 1, "--batch-size must be at least 1");
    anyhow::ensure!(
        args.short_context_tokens >= 2,
        "--short-context-tokens must be at least 2 (a token of context and one trained)"
    );
    let data = verity_train::data::read_sft(&args.data)?;
    let base = model_dir(&args.model)?;
    let settings = SftSettings {
        steps: args.steps,
        batch_size: args.batch_size,
        schedule: args.optim.schedule(args.steps, SFT_LR)?,
        adamw: args.optim.adamw(),
        seed: args.seed,
        short_context: (args.short_context_steps > 0).then_some(ShortContext {
            steps: args.short_context_steps,
            tokens: args.short_context_tokens,
        }),
    };
    let data_digest = digest_file(&args.data)?;
    let mut settings_json = json!({
        "data": args.data.display().to_string(),
        "data_sha256": data_digest,
        "rows": data.len(),
        "batch_size": settings.batch_size,
        "schedule": settings.schedule,
        "adamw": settings.adamw,
        "seed": settings.seed,
    });
    if let (Some(sc), Some(o)) = (settings.short_context, settings_json.as_object_mut()) {
        // Only when on, so checkpoints from before the option still resume.
        o.insert("short_context".into(), json!(sc));
    }
    let resumed = if args.resume {
        checkpoint::read_state(&args.out)?
    } else {
        None
    };
    let (model, mut opt, mut state) = match resumed {
        Some(state) => {
            anyhow::ensure!(
                state.kind == "sft",
                "--resume: {} is a {} checkpoint",
                args.out.display(),
                state.kind
            );
            let mut was = state.settings.clone();
            let mut now = settings_json.clone();
            // The schedule's length may grow, and the data may be named by another path;
            // everything else (the data's digest included) must match.
            for v in [&mut was, &mut now] {
                if let Some(o) = v.as_object_mut() {
                    o.remove("data");
                }
                if let Some(s) = v.get_mut("schedule").and_then(Value::as_object_mut) {
                    s.remove("total");
                    s.remove("warmup");
                }
            }
            anyhow::ensure!(
                was == now,
                "--resume: {} was trained with other data or settings:\n  then: {was}\n  now:  {now}",
                args.out.display()
            );
            let (model, opt) = checkpoint::trainable(&args.out, settings.adamw, Some(state.step))?;
            eprintln!(
                "verity: resuming {} at step {}",
                args.out.display(),
                state.step
            );
            (model, opt, state)
        }
        None => {
            let (model, opt) = checkpoint::trainable(&base, settings.adamw, None)?;
            let state = TrainState::start("sft", &base, settings_json);
            (model, opt, state)
        }
    };
    let base = PathBuf::from(&state.base);
    let bar = progress(settings.steps as u64, "sft");
    bar.set_position(opt.step as u64);
    let started = Instant::now();
    let first_step = opt.step;
    let (mut tokens, mut computed) = (0usize, 0usize);
    let mut run_settings = settings.clone();
    if let Some(n) = args.stop_after {
        run_settings.steps = settings.steps.min(first_step + n);
    }
    sft::train(&model, &mut opt, &data, &run_settings, |s, model, opt| {
        tokens += s.tokens;
        computed += s.computed;
        state.step = s.step;
        state.history.push(json!({
            "step": s.step, "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm,
            "tokens": s.tokens, "secs": s.secs,
        }));
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "loss {:.4} · {:.0} trained tok/s · {:.0} tok/s computed",
            s.loss,
            tokens as f64 / secs,
            computed as f64 / secs
        ));
        bar.inc(1);
        if args.save_every > 0 && s.step % args.save_every == 0 && s.step < run_settings.steps {
            checkpoint::save(&args.out, &base, model, opt, &state)?;
        }
        Ok(())
    })?;
    checkpoint::save(&args.out, &base, &model, &opt, &state)?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let losses: Vec<f64> = state
        .history
        .iter()
        .filter_map(|h| h.get("loss").and_then(Value::as_f64))
        .collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let k = losses.len().min(10);
    let summary = json!({
        "out": args.out.display().to_string(),
        "steps": opt.step,
        "steps_this_run": opt.step - first_step,
        "rows": data.len(),
        "first_loss": mean(&losses[..k]),
        "final_loss": mean(&losses[losses.len() - k..]),
        "seconds": secs,
        "trained_tokens_per_second": tokens as f64 / secs.max(1e-9),
        "computed_tokens_per_second": computed as f64 / secs.max(1e-9),
    });
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&summary)?
    )?;
    eprintln!(
        "verity: wrote {} (try: verity run --model {} --tools calculator \"…\")",
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn digest_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// One run's tokens as the trainer takes them, from a `trl-tokens` export row.
pub struct TokenRow {
    pub example: Example,
    /// The engine's logprobs of the generated tokens (aligned with the ids; 0 elsewhere).
    pub logprobs: Vec<f32>,
    pub temperature: f64,
    pub group: String,
    /// The run's reward (0 where it has none).
    pub reward: f64,
}

/// The runs of `files` with their token views (`verity export --format trl-tokens`),
/// advantages taken from the `advantage` column (`grpo` or `dr_grpo`).
pub fn token_rows(files: &[PathBuf], advantage: &str) -> anyhow::Result<Vec<TokenRow>> {
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let report = export::export(
        files,
        ExportFormat::TrlTokens,
        Some(tmp.path()),
        ExportOptions::default(),
    )?;
    read_token_rows(tmp.path(), &report, advantage)
}

/// [`token_rows`] of the runs `file` gained after `mark` (checked and read from there on
/// only), and the file's new end.
pub fn token_rows_appended(
    file: &Path,
    mark: &ChainMark,
    advantage: &str,
) -> anyhow::Result<(Vec<TokenRow>, ChainMark)> {
    let tmp = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let (report, end) = export::export_appended(
        file,
        mark,
        ExportFormat::TrlTokens,
        Some(tmp.path()),
        ExportOptions::default(),
    )?;
    Ok((read_token_rows(tmp.path(), &report, advantage)?, end))
}

fn read_token_rows(
    rows_file: &Path,
    report: &export::ExportReport,
    advantage: &str,
) -> anyhow::Result<Vec<TokenRow>> {
    if !report.skipped.is_empty() {
        tracing::info!("{} runs have no flat token view", report.skipped.len());
    }
    let text = std::fs::read_to_string(rows_file)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)?;
        let ids = |k: &str| -> anyhow::Result<Vec<u32>> {
            v.get(k)
                .and_then(Value::as_array)
                .with_context(|| format!("export row {}: no {k}", i + 1))?
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .with_context(|| format!("export row {}: {k} holds {x}", i + 1))
                })
                .collect()
        };
        let floats = |k: &str| -> anyhow::Result<Vec<f32>> {
            v.get(k)
                .and_then(Value::as_array)
                .with_context(|| format!("export row {}: no {k}", i + 1))?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .with_context(|| format!("export row {}: {k} holds {x}", i + 1))
                })
                .collect()
        };
        let prompt = ids("prompt_ids")?;
        let completion = ids("completion_ids")?;
        let env_mask = ids("env_mask")?;
        let lps = floats("logprobs")?;
        anyhow::ensure!(
            completion.len() == env_mask.len() && completion.len() == lps.len(),
            "export row {}: completion_ids, env_mask and logprobs differ in length",
            i + 1
        );
        let n = prompt.len();
        let mut all = prompt;
        all.extend_from_slice(&completion);
        let mut mask = vec![0u8; n];
        mask.extend(env_mask.iter().map(|&m| u8::from(m != 0)));
        let mut logprobs = vec![0f32; n];
        logprobs.extend(
            lps.iter()
                .zip(&env_mask)
                .map(|(l, m)| if *m != 0 { *l } else { 0.0 }),
        );
        let mut example = Example::new(all, mask)?;
        example.old_logprobs = Some(logprobs.clone());
        example.advantage = v
            .pointer(&format!("/advantages/{advantage}"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as f32;
        rows.push(TokenRow {
            reward: v.get("reward").and_then(Value::as_f64).unwrap_or(0.0),
            example,
            logprobs,
            // Recorded logprobs are of logits / T, at T = 1 for greedy runs.
            temperature: match (
                v.pointer("/logprobs_info/greedy").and_then(Value::as_bool),
                v.pointer("/logprobs_info/temperature")
                    .and_then(Value::as_f64),
            ) {
                (Some(false), Some(t)) if t > 0.0 => t,
                _ => 1.0,
            },
            group: v
                .get("group_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok(rows)
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Trajectory file(s) recorded by the embedded engine.
    files: Vec<PathBuf>,
    /// The model that recorded them (`tiny` or its folder).
    #[arg(long, short = 'm', default_value = "tiny")]
    model: String,
    /// Largest tolerated |trainer − engine| logprob difference.
    #[arg(long, default_value_t = 1e-3)]
    tolerance: f64,
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!args.files.is_empty(), "name at least one trajectory file");
    let model = Qwen3::load(&model_dir(&args.model)?)?;
    let rows = token_rows(&args.files, "grpo")?;
    anyhow::ensure!(
        !rows.is_empty(),
        "no run in {:?} has a flat token view",
        args.files
    );
    let (mut worst, mut sum, mut n) = (0f64, 0f64, 0usize);
    for r in &rows {
        if r.example.trained() == 0 {
            continue;
        }
        let batch = Batch::new(&[&r.example])?;
        let logits = model.forward(&batch.prefix, &batch.rows)?;
        let lp = token_logprobs(&logits, &batch.targets, r.temperature)?;
        let lp = lp.squeeze(0)?.to_vec1::<f32>()?;
        let w = batch.weights.squeeze(0)?.to_vec1::<f32>()?;
        let start = batch.prefix.len() + 1;
        for (j, (l, w)) in lp.iter().zip(&w).enumerate() {
            if *w == 0.0 {
                continue;
            }
            let recorded = r.logprobs[start + j];
            let d = f64::from((l - recorded).abs());
            worst = worst.max(d);
            sum += d;
            n += 1;
        }
    }
    let report = json!({
        "runs": rows.len(),
        "tokens": n,
        "max_abs_diff": worst,
        "mean_abs_diff": sum / n.max(1) as f64,
        "tolerance": args.tolerance,
    });
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&report)?
    )?;
    Ok(if worst <= args.tolerance {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "verity: the trainer's logprobs differ from the engine's by up to {worst:.2e} \
             (> {:.0e})",
            args.tolerance
        );
        ExitCode::FAILURE
    })
}

#[derive(Debug, Args)]
pub struct LossArgs {
    /// Rows as `verity train sft` reads them (`verity export --format trl-sft`).
    data: PathBuf,
    /// The model (`tiny` or a folder).
    #[arg(long, short = 'm', default_value = "tiny")]
    model: String,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

fn loss(args: LossArgs) -> anyhow::Result<ExitCode> {
    let data = verity_train::data::read_sft(&args.data)?;
    let model = Qwen3::load(&model_dir(&args.model)?)?;
    let (mut total, mut tokens) = (0f64, 0usize);
    for chunk in data.chunks(args.batch_size.max(1)) {
        let picked: Vec<&Example> = chunk.iter().collect();
        let batch = Batch::new(&picked)?;
        let l = sft::sft_loss(&model, &batch)?.to_scalar::<f32>()?;
        total += f64::from(l) * batch.trained_tokens as f64;
        tokens += batch.trained_tokens;
    }
    let report = json!({
        "rows": data.len(),
        "tokens": tokens,
        "loss": total / tokens.max(1) as f64,
    });
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&report)?
    )?;
    Ok(ExitCode::SUCCESS)
}
