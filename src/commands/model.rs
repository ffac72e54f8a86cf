//! `verity model tiny`: write the generated test model.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Subcommand};
use verity_runtime::model::{family, tiny};

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Generate the tiny Qwen3-architecture test model (deterministic; a few hundred KB).
    /// `--model tiny` uses it (and generates it on first use).
    ///
    /// With `--family`, a tiny checkpoint of a real model family instead: the same tiny
    /// random weights with the family's real tokenizer (rebuilt from a llama.cpp vocab
    /// GGUF, `--vocab`) and a real chat template (`--template`), e.g.
    /// `verity model tiny --family qwen3 --vocab ggml-vocab-qwen2.gguf --template
    /// Qwen-Qwen3-0.6B.jinja --out qwen3-tiny`.
    Tiny {
        /// Where to write it (default: the data dir's models/verity-tiny, or
        /// models/verity-tiny-FAMILY).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A model family: qwen3 (vocab ggml-vocab-qwen2.gguf), llama3 or hermes
        /// (ggml-vocab-llama-bpe.gguf), mistral (ggml-vocab-llama-spm.gguf).
        #[arg(long, requires_all = ["vocab", "template"])]
        family: Option<String>,
        /// The family's vocab-only GGUF file (llama.cpp's `models/ggml-vocab-*.gguf`).
        #[arg(long, requires = "family")]
        vocab: Option<PathBuf>,
        /// The chat template (a `.jinja` file, e.g. from llama.cpp's `models/templates/`).
        #[arg(long, requires = "family")]
        template: Option<PathBuf>,
        /// With --family: the weights' dimensions — tiny (default) or qwen3-0.6b
        /// (Qwen3-0.6B's real shape, random weights, ~2.4 GB: for benchmarks).
        #[arg(long, requires = "family", default_value = "tiny")]
        shape: String,
        /// The project's tiny model with tools listed one line each in the system prompt
        /// (`calculator(expression, precision)`) instead of as JSON schemas: the base for
        /// `verity train` (prompts of ~100 tokens instead of ~2,000).
        #[arg(long, conflicts_with = "family")]
        compact_tools: bool,
        /// Decoder layers (the project's tiny model; default 2).
        #[arg(long, conflicts_with = "family")]
        layers: Option<usize>,
        /// Model width (the project's tiny model; default 64, a multiple of 16).
        #[arg(long, conflicts_with = "family")]
        hidden: Option<usize>,
        /// Seed of the random weights (the project's tiny model).
        #[arg(long, conflicts_with = "family")]
        seed: Option<u64>,
    },
}

pub fn run(args: ModelArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelCommand::Tiny {
            out,
            family,
            vocab,
            template,
            shape,
            compact_tools,
            layers,
            hidden,
            seed,
        } => {
            let (dir, files) = match (family, vocab, template) {
                (Some(f), Some(v), Some(t)) => {
                    let f: family::Family = f.parse()?;
                    let dir = out.unwrap_or_else(|| {
                        verity_runtime::model::data_dir()
                            .join("models")
                            .join(format!("verity-tiny-{f}"))
                    });
                    let shape: family::Shape = shape.parse().map_err(anyhow::Error::msg)?;
                    let files = family::generate(&dir, f, &v, &t, shape)?;
                    (dir, files)
                }
                _ => {
                    let dir = out
                        .clone()
                        .unwrap_or_else(verity_runtime::model::tiny_model_dir);
                    let mut spec = tiny::TinySpec {
                        compact_tools,
                        ..tiny::TinySpec::default()
                    };
                    if let Some(h) = hidden {
                        anyhow::ensure!(
                            h >= 16 && h.is_multiple_of(16),
                            "--hidden must be a positive multiple of 16, got {h}"
                        );
                        // Heads of 16 wide: 4 per 64.
                        spec.hidden = h;
                        spec.intermediate = 2 * h;
                        spec.heads = h / 16;
                        spec.kv_heads = (h / 32).max(1);
                    }
                    if let Some(l) = layers {
                        anyhow::ensure!((1..=64).contains(&l), "--layers must be 1 to 64, got {l}");
                        spec.layers = l;
                    }
                    if let Some(s) = seed {
                        spec.seed = s;
                    }
                    let custom =
                        compact_tools || layers.is_some() || hidden.is_some() || seed.is_some();
                    anyhow::ensure!(
                        !custom || out.is_some(),
                        "--compact-tools, --layers, --hidden and --seed write a model of their own: \
                         give --out DIR (the default folder is `--model tiny`'s)"
                    );
                    let files = tiny::generate(&dir, &spec)?;
                    (dir, files)
                }
            };
            let bytes: u64 = files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            eprintln!(
                "verity: wrote the model to {} ({} files, {} KB)",
                dir.display(),
                files.len(),
                bytes / 1024
            );
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
