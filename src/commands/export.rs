//! `verity export FILE… --format openai|trl|trl-tokens|trl-sft|verl|verifiers [--out FILE]`:
//! trajectory records to the row formats trainers read (`verity_runtime::export`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use verity_runtime::export::{self, ExportFormat, ExportOptions};

/// verl's reward function (`custom_reward_function.path`), written beside a verl export.
const VERL_REWARD: &str = include_str!("../../python/verity_reward.py");

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `{messages, tools, reward, group columns}` per run: OpenAI chat format (JSONL).
    Openai,
    /// TRL conversational: `{prompt, completion, tools, reward, …}`; prompt = the messages
    /// the run was given (system, task, few-shot), completion = what it added (JSONL).
    Trl,
    /// TRL token level: `{prompt_ids, completion_ids, logprobs, sampling_logprobs,
    /// env_mask, …}` from the exact recorded ids (JSONL).
    TrlTokens,
    /// Pre-tokenised SFT for TRL's SFTTrainer: `{input_ids, assistant_masks,
    /// completion_mask, …}`, mask 1 exactly on sampled tokens; with --min-reward for
    /// rejection-sampling fine-tuning (JSONL).
    TrlSft,
    /// verl prompt set: Parquet, one row per task (`extra_info.index` = task index), plus
    /// `verity_reward.py` beside it for `custom_reward_function.path`. Needs --out.
    Verl,
    /// verifiers' `RolloutOutput` rows (`example_id`, `trajectory[].tokens`, …) (JSONL).
    Verifiers,
}

impl From<Format> for ExportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Openai => ExportFormat::Openai,
            Format::Trl => ExportFormat::Trl,
            Format::TrlTokens => ExportFormat::TrlTokens,
            Format::TrlSft => ExportFormat::TrlSft,
            Format::Verl => ExportFormat::Verl,
            Format::Verifiers => ExportFormat::Verifiers,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Trajectory file(s) (e.g. the shards of a rollout: they are merged).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Target format.
    #[arg(long, value_enum)]
    format: Format,
    /// Output file (default: stdout; required for verl's Parquet).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Also export samples their group left out (dynamic-sampling rounds it discarded,
    /// groups never closed). Off: rows are exactly the groups' members.
    #[arg(long)]
    include_discarded: bool,
    /// Only runs with at least this reward (e.g. `--min-reward 1` for rejection-sampling
    /// fine-tuning with --format trl-sft).
    #[arg(long)]
    min_reward: Option<f64>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let opts = ExportOptions {
        include_discarded: args.include_discarded,
        min_reward: args.min_reward,
    };
    let report = export::export(&args.files, args.format.into(), args.out.as_deref(), opts)?;
    eprintln!(
        "verity: exported {} rows, skipped {}",
        report.written,
        report.skipped.len()
    );
    for s in report.skipped.iter().take(5) {
        eprintln!("  skipped {s}");
    }
    if let (Format::Verl, Some(out)) = (args.format, &args.out) {
        let reward = std::path::absolute(out.with_file_name("verity_reward.py"))
            .unwrap_or_else(|_| out.with_file_name("verity_reward.py"));
        std::fs::write(&reward, VERL_REWARD)
            .with_context(|| format!("writing {}", reward.display()))?;
        eprintln!(
            "verity: verl scores with {} — set custom_reward_function.path={} \
             custom_reward_function.name=compute_score (needs `verity` on PATH or VERITY_BIN)",
            reward.display(),
            reward.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
