//! `verity verify FILE...`: check trajectory files' hash chains, and with `--replay` redo
//! what they claim (`verity_runtime::trajectory::replay`).

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use verity_runtime::trajectory::{chain, replay};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Trajectory files (JSONL, `verity.traj/1`); each is its own chain (shards included).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also re-execute every deterministic tool call (calculator, code, local search) and
    /// compare its io_digest, recompute every reward with the recorded verifier, and
    /// recompute group statistics.
    #[arg(long)]
    replay: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
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
        let mut replay_report = serde_json::Value::Null;
        if args.replay && report.first_error.is_none() {
            let r = rt
                .block_on(replay::replay(f))
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            if !r.problems.is_empty() {
                ok = false;
            }
            if !args.json {
                println!(
                    "{}: replay — {} tool calls re-executed ({} identical), {} rewards recomputed ({} identical), {} groups recomputed ({} identical)",
                    f.display(),
                    r.calls,
                    r.calls_ok,
                    r.rewards,
                    r.rewards_ok,
                    r.groups,
                    r.groups_ok
                );
                for p in r.problems.iter().take(20) {
                    println!("  MISMATCH {p}");
                }
            }
            replay_report = serde_json::to_value(&r)?;
        }
        reports.push(serde_json::json!({"file": f, "report": report, "replay": replay_report}));
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
