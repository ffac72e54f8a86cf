//! `verity export FILE… --format openai|trl|trl-tokens|verl|verifiers [--out FILE]`:
//! trajectory records to the row formats trainers read (`verity_runtime::export`).

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, ValueEnum};
use verity_runtime::export::{self, ExportFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `{messages, tools, reward}` per run: plain OpenAI chat format (JSONL).
    Openai,
    /// TRL conversational: `{prompt, completion, tools, reward}` (prompt = messages up to
    /// the first model turn) (JSONL).
    Trl,
    /// TRL token level: `{prompt_ids, completion_ids, logprobs, env_mask, reward}` from the
    /// exact recorded ids (runs whose turns do not join token for token are skipped and
    /// counted) (JSONL).
    TrlTokens,
    /// verl: Parquet with `data_source`, `prompt`, `ability`, `reward_model.ground_truth`,
    /// `extra_info`, and AgentLoop's `prompt_ids`/`response_ids`/`response_mask`/
    /// `rollout_log_probs` (null where a run has no exact token view). Needs --out.
    Verl,
    /// verifiers-style rollouts: `{prompt, completion, answer, task, info, reward, metrics,
    /// state.responses[]}` with one step per model call (JSONL).
    Verifiers,
}

impl From<Format> for ExportFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Openai => ExportFormat::Openai,
            Format::Trl => ExportFormat::Trl,
            Format::TrlTokens => ExportFormat::TrlTokens,
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
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let report = export::export(&args.files, args.format.into(), args.out.as_deref())?;
    eprintln!(
        "verity: exported {} rows, skipped {}",
        report.written,
        report.skipped.len()
    );
    for s in report.skipped.iter().take(5) {
        eprintln!("  skipped {s}");
    }
    Ok(ExitCode::SUCCESS)
}
