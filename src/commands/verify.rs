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
    /// The digest the (single) file's last record must have — kept apart from the file
    /// (printed by `run --record`/`rollout`, or from `FILE.head` when it was written), so
    /// cutting records off the end and rewriting the head file is caught too.
    #[arg(long)]
    expect_head: Option<String>,
    /// Every record must be signed by this key (a `.pub` file from `verity key new`, or
    /// `ed25519:<hex>`): a file re-sealed by anyone without the private key fails.
    #[arg(long)]
    key: Option<String>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    anyhow::ensure!(
        args.expect_head.is_none() || args.files.len() == 1,
        "--expect-head names the end of one file: give exactly one"
    );
    let expect_key = match &args.key {
        Some(k) => Some(verity_runtime::trajectory::sign::read_public(k)?),
        None => None,
    };
    let mut ok = true;
    let mut reports = Vec::new();
    for f in &args.files {
        let mut report = chain::verify_signed(f, expect_key.as_deref())
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        if let (Some(want), None) = (&args.expect_head, &report.first_error) {
            if report.head.as_ref() != Some(want) {
                report.first_error = Some((
                    report.valid + 1,
                    format!(
                        "the file ends with {} but --expect-head is {want}: records were cut \
                         off the end, added, or the file was replaced",
                        report.head.as_deref().unwrap_or("no record")
                    ),
                ));
            }
        }
        match &report.first_error {
            None => {
                if !args.json {
                    let kinds: Vec<String> = report
                        .kinds
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect();
                    let end = match (&args.expect_head, &report.head_file) {
                        (Some(_), _) => "its last record is the expected head",
                        (None, chain::HeadCheck::Matches) => "ends where its head file says",
                        (None, chain::HeadCheck::OneBehind) => {
                            "its head file is one record behind (a crash before the head was \
                             updated)"
                        }
                        (None, chain::HeadCheck::Missing) => {
                            "no head file: records cut off the end would not show (use \
                             --expect-head)"
                        }
                    };
                    let signed = match (&expect_key, report.signed_by.len()) {
                        (Some(k), _) => format!("; every record signed by {k}"),
                        (None, 0) => String::new(),
                        (None, _) => format!(
                            "; signed by {} (give --key to require a key you trust)",
                            report
                                .signed_by
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    println!(
                        "{}: ok — {} records, hash chain intact ({}); {end}{signed}",
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
                    "{}: replay — {} tool calls re-executed ({} identical), {} rewards recomputed ({} identical), {} groups recomputed ({} identical), {} model calls' token ids decoded ({} match their text)",
                    f.display(),
                    r.calls,
                    r.calls_ok,
                    r.rewards,
                    r.rewards_ok,
                    r.groups,
                    r.groups_ok,
                    r.turns,
                    r.turns_ok
                );
                for m in &r.tokenizers_missing {
                    println!(
                        "  note: no local tokenizer.json with the recorded digest for {m}: its \
                         token ids were not checked against its text"
                    );
                }
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
