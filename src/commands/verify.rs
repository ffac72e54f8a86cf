//! `verity verify FILE...`: check trajectory files' hash chains.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use verity_runtime::trajectory::chain;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Trajectory files (JSONL, `verity.traj/1`); each is its own chain (shards included).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut reports = Vec::new();
    for f in &args.files {
        let report = chain::verify(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        match &report.first_error {
            None => {
                if !args.json {
                    let kinds: Vec<String> = report
                        .kinds
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect();
                    println!(
                        "{}: ok — {} records, hash chain intact ({})",
                        f.display(),
                        report.valid,
                        kinds.join(", ")
                    );
                }
            }
            Some((line, why)) => {
                ok = false;
                if !args.json {
                    println!(
                        "{}: FAILED at line {line}: {why} ({} valid records before it)",
                        f.display(),
                        report.valid
                    );
                }
            }
        }
        reports.push(serde_json::json!({"file": f, "report": report}));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
