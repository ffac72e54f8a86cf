//! `verity rollout TASKS.jsonl --samples G --out FILE`: flags, a progress bar and the
//! summary. The rollout itself (scheduling, resume, dynamic sampling, group records) is
//! `verity_runtime::rollout`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use clap::Args;
use tokio_util::sync::CancellationToken;
use verity_runtime::{
    model::ModelBackend,
    rollout::{self, Rollout, RolloutProgress, RolloutSettings, Shard, Totals},
    trajectory::chain::ChainWriter,
    Approver, AutoApprove, Caller, CallerKind, DenyAsk,
};

use super::agent_opts::AgentOpts;

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Tasks, one JSON object per line: {id, prompt | messages, ground_truth, verifier,
    /// tools?, meta?}.
    tasks: PathBuf,
    /// Samples per task (the GRPO group size). Rollouts sample at temperature 1 unless
    /// --temperature (or the config) says otherwise; `--temperature 0` decodes greedily.
    #[arg(long, short = 'g', default_value_t = 4)]
    samples: usize,
    /// Output trajectory file (appended to; resumes where it stopped).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Only tasks i, i+N, i+2N, … (`--shard 0/4`): run N workers on one task file.
    #[arg(long)]
    shard: Option<Shard>,
    /// Samples in flight at once. HTTP backends: parallel requests of one task's group
    /// (default 4). Embedded engine: groups of that many tasks batched together, each
    /// group's samples one after another (default 1) — mistral.rs computes different
    /// logits for samples of one prompt batched together, and sometimes for different
    /// prompts too (1 sampled run in 10, measured): keep 1 for GRPO data.
    #[arg(long)]
    concurrency: Option<usize>,
    /// DAPO-style dynamic sampling: when a group's rewards are all equal (no learning
    /// signal), draw a fresh group, up to this many extra rounds (0: off).
    #[arg(long, default_value_t = 0)]
    dynamic_sampling: usize,
    /// GRPO advantages in the group records: verl (unbiased std, ε 1e-6; a group of one
    /// gets r), trl (unbiased std, ε 1e-4) or population (population std, ε 1e-6).
    /// Dr. GRPO and RLOO advantages are written too, whatever this says.
    #[arg(long, default_value = "verl")]
    grpo_norm: verity_runtime::trajectory::group::GrpoNorm,
    /// Demonstrations: the embedded model is forced to write each task's solution plan
    /// (`meta.solution`, as `scripts/tasks.py arithmetic` writes it) — the calls really run,
    /// the policy really decides, the records carry the model's own token ids. For
    /// `verity export --format trl-sft` and `verity train sft`.
    #[arg(long)]
    teacher: bool,
    /// Sign every record with this key (`verity key new`): `verify --key KEY.pub` then
    /// proves who recorded the file.
    #[arg(long)]
    sign: Option<PathBuf>,
    #[command(flatten)]
    opts: AgentOpts,
}

/// The progress bar (also `verity train grpo`'s rollouts).
pub(crate) struct Bar(pub(crate) indicatif::ProgressBar);

impl RolloutProgress for Bar {
    fn planned(&self, more: u64) {
        self.0.inc_length(more);
    }
    fn sample_done(&self, totals: &Totals) {
        self.0
            .set_message(format!("mean reward {:.3}", totals.mean_reward()));
        self.0.inc(1);
    }
}

pub fn run(args: RolloutArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.samples >= 1, "--samples must be at least 1");
    let mut tasks = rollout::read_tasks(&args.tasks)?;
    if let Some(shard) = args.shard {
        tasks = shard.select(tasks);
    }
    let done = rollout::scan(&args.out)?;
    let mut resolved = args
        .opts
        .resolve(Caller::new(CallerKind::Rollout, "rollout"))?;
    // A group of greedy samples is one sample G times: rollouts sample unless told not to.
    let sampling = &mut resolved.agent.sampling;
    if sampling.temperature.is_none() {
        sampling.temperature = Some(1.0);
        sampling.greedy = false;
    }
    if sampling.greedy && args.samples > 1 {
        eprintln!(
            "verity: warning: --temperature {} decodes greedily, so the {} samples of each \
             task will be identical (zero-variance groups, no GRPO signal); give a \
             temperature > 0 to sample",
            sampling.temperature.unwrap_or(0.0),
            args.samples
        );
    }
    let embedded = resolved.base_url.is_none();
    let concurrency = args
        .concurrency
        .unwrap_or(if embedded { 1 } else { 4 })
        .max(1);
    if embedded && concurrency > 1 && !resolved.agent.sampling.greedy {
        eprintln!(
            "verity: warning: --concurrency {concurrency} batches tasks in mistral.rs, whose \
             batched runs were measured to drift from the same runs drawn alone (logprobs off \
             by up to 17 nats in 1 run of 10): fine for solve rates, not for GRPO ratios \
             (docs/engine-notes.md)"
        );
    }
    let settings = RolloutSettings {
        dynamic_sampling: args.dynamic_sampling,
        grpo_norm: args.grpo_norm,
        ..RolloutSettings::for_backend(args.samples, concurrency, embedded)
    };
    let rt = super::runtime()?;
    rt.block_on(async move {
        let writer = super::key::signed(
            ChainWriter::open(&args.out)?,
            args.sign.as_deref().or(resolved.sign.as_deref()),
        )?;
        let model: Arc<dyn ModelBackend> = if args.teacher {
            resolved.teacher(&tasks, "--teacher", true).await?
        } else {
            // No prefix cache for sampled rollouts: with mistral.rs 0.8.1's, a later turn's
            // logprobs differ from the model's own forward pass by up to ~1e-2 (the tiny
            // model; without it 2e-6, `verity train check`), and GRPO's importance ratios
            // are taken against them.
            resolved.backend(true).await?
        };
        let (gate, _hub) = resolved.gate().await?;
        let approver: Arc<dyn Approver> = if resolved.yes {
            Arc::new(AutoApprove)
        } else {
            Arc::new(DenyAsk)
        };
        let todo = rollout::samples_to_draw(&tasks, &done, args.samples);
        let bar = indicatif::ProgressBar::new(todo as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} samples ({per_sec}) {wide_bar} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_signal.cancel();
            }
        });
        let skipped = tasks
            .iter()
            .filter(|t| done.groups.contains(&t.task.id))
            .count();
        if skipped > 0 || !done.samples.is_empty() {
            eprintln!(
                "verity: resuming {}: {skipped} tasks complete, {todo} samples to go",
                args.out.display(),
            );
        }
        let runner = Rollout::new(
            model,
            gate,
            approver,
            resolved.agent.clone(),
            resolved.system.clone(),
        );
        let bar = Bar(bar);
        let outcome = runner
            .run(&tasks, &done, writer, settings, &bar, cancel)
            .await?;
        bar.0.finish_and_clear();
        let summary = outcome.totals.summary(args.samples);
        let summary_path = with_suffix(&args.out, "summary.json");
        std::fs::write(&summary_path, serde_json::to_vec_pretty(&summary)?)?;
        let svg_path = with_suffix(&args.out, "rewards.svg");
        std::fs::write(&svg_path, rollout::histogram_svg(&outcome.totals.rewards))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
        eprintln!(
            "verity: wrote {} (summary: {}, histogram: {})",
            args.out.display(),
            summary_path.display(),
            svg_path.display()
        );
        Ok(if outcome.cancelled {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// `runs.jsonl` → `runs.SUFFIX`, beside it.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rollout".into());
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    path.with_file_name(format!("{stem}.{suffix}"))
}
