//! `verity model tiny`: write the generated test model.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use verity_runtime::model::tiny;

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Generate the tiny Qwen3-architecture test model (deterministic; a few hundred KB).
    /// `--model tiny` uses it (and generates it on first use).
    Tiny {
        /// Where to write it (default: the data dir's models/verity-tiny).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: ModelArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelCommand::Tiny { out } => {
            let dir = out.unwrap_or_else(verity_runtime::model::tiny_model_dir);
            let files = tiny::generate(&dir, &tiny::TinySpec::default())?;
            let bytes: u64 = files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            eprintln!(
                "verity: wrote the tiny test model to {} ({} files, {} KB)",
                dir.display(),
                files.len(),
                bytes / 1024
            );
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
