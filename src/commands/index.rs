//! `verity index build|list|rm`: local BM25 indexes for the `search` tool.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use verity_tools::search::index;

#[derive(Debug, Args)]
pub struct IndexArgs {
    #[command(subcommand)]
    command: IndexCommand,
}

#[derive(Debug, Subcommand)]
enum IndexCommand {
    /// Build or update an index from a folder (.html .md .txt .jsonl) or a JSONL file of
    /// {id, title, text, url}. Only changed files are re-read.
    Build {
        /// Folder or file to index.
        path: PathBuf,
        /// Index name (what `search`'s `index` argument selects).
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// List the indexes.
    List,
    /// Delete an index.
    Rm {
        /// Index name.
        name: String,
    },
}

pub fn run(args: IndexArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        IndexCommand::Build { path, name } => {
            let started = Instant::now();
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} indexing {pos}/{len} files {wide_bar} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let report = index::build(&path, &name, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            eprintln!(
                "verity: index '{}': {} files indexed ({} passages), {} unchanged, {} removed, in {:.1} s → {}",
                report.name,
                report.indexed_files,
                report.passages,
                report.unchanged_files,
                report.removed_files,
                started.elapsed().as_secs_f64(),
                report.path.display()
            );
            for s in &report.skipped {
                eprintln!("verity: skipped {s}");
            }
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::List => {
            let all = index::list();
            if all.is_empty() {
                println!("no indexes yet; build one with `verity index build PATH`");
            }
            for i in all {
                println!(
                    "{:<16} {:>6} files {:>8.1} MiB  {}",
                    i.name,
                    i.files,
                    i.bytes as f64 / 1048576.0,
                    i.source
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        IndexCommand::Rm { name } => {
            index::remove(&name)?;
            println!("removed index '{name}'");
            Ok(ExitCode::SUCCESS)
        }
    }
}
