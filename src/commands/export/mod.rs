//! `verity export FILE… --format openai|trl|trl-tokens|verl|verifiers [--out FILE]`:
//! trajectory records to the row formats trainers read. Every file's chain is verified
//! first; tampered files are not exported.

mod rows;
mod verl;

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Args, ValueEnum};
use serde_json::Value;
use verity_runtime::trajectory::chain;

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

/// Where rows go.
enum Sink {
    Jsonl(Box<dyn Write>),
    Parquet(Box<verl::VerlWriter>),
}

impl Sink {
    fn push(&mut self, row: &Value) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, row)?;
                w.write_all(b"\n")?;
            }
            Sink::Parquet(p) => p.push(row)?,
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Jsonl(mut w) => w.flush()?,
            Sink::Parquet(p) => p.finish()?,
        }
        Ok(())
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    // Check every file before writing anything.
    for f in &args.files {
        let report = chain::verify(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        if let Some((line, why)) = report.first_error {
            anyhow::bail!(
                "{}: line {line}: {why}; not exporting a damaged file",
                f.display()
            );
        }
    }
    let mut sink = match (args.format, &args.out) {
        (Format::Verl, Some(p)) => Sink::Parquet(Box::new(verl::VerlWriter::create(p)?)),
        (Format::Verl, None) => {
            anyhow::bail!("--format verl writes Parquet: give the file with --out FILE.parquet")
        }
        (_, Some(p)) => Sink::Jsonl(Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", p.display()))?,
        ))),
        (_, None) => Sink::Jsonl(Box::new(std::io::BufWriter::new(std::io::stdout().lock()))),
    };
    let (mut written, mut skipped) = (0usize, Vec::<String>::new());
    for f in &args.files {
        let file = std::fs::File::open(f)?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let r: Value = serde_json::from_str(&line?)
                .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", f.display(), i + 1))?;
            if r["kind"] != "traj" {
                continue;
            }
            let row = match args.format {
                Format::Openai => rows::openai(&r),
                Format::Trl => rows::trl(&r),
                Format::TrlTokens => rows::trl_tokens(&r),
                Format::Verl => rows::verl(&r, written),
                Format::Verifiers => rows::verifiers(&r),
            };
            match row {
                Ok(v) => {
                    sink.push(&v)
                        .map_err(|e| anyhow::anyhow!("{}: line {}: {e:#}", f.display(), i + 1))?;
                    written += 1;
                }
                Err(why) => skipped.push(format!("{}: {why}", r["id"].as_str().unwrap_or("?"))),
            }
        }
    }
    sink.finish()?;
    eprintln!("verity: exported {written} rows, skipped {}", skipped.len());
    for s in skipped.iter().take(5) {
        eprintln!("  skipped {s}");
    }
    Ok(ExitCode::SUCCESS)
}
