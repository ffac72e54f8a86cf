//! Trajectory benchmarks (issue 6), in one run on the generated tiny model:
//!
//! 1. rollout samples/s through the agent with the embedded engine (strict, forced
//!    calculator call, one turn), and the recorder's share of a sample's wall time: the
//!    events of every sample are fed to a `TrajectoryBuilder`, the record is built and
//!    appended with the hash chain and fsync — timed separately from the agent;
//! 2. chain verification throughput (MB/s) over a file of real records from (1), repeated
//!    with fresh ids until it is `MB` megabytes;
//! 3. `verity verify` and `verity verify --replay` end to end (the built binary next to
//!    this one, e.g. `target/debug/verity`; skipped when it is missing) on that file.
//!
//! Usage: trajectory [SAMPLES] [MB]      (defaults: 24 samples, 64 MB)

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use verity_policies::PolicyEngine;
use verity_runtime::{
    agent::{Agent, AgentConfig, AgentEvent},
    model::{
        tiny, EmbeddedModel, LoadOptions, Message, ModelBackend, ModelSource, Role, Sampling,
        ToolChoice,
    },
    trajectory::{chain, chain::ChainWriter, record_run, Record, TaskInfo, TrajectoryBuilder},
    AutoApprove, ToolGate,
};
use verity_tools::ToolRegistry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let samples: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(24);
    let megabytes: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let dir = tempfile::tempdir()?;
    let records = rollout_and_recorder(dir.path(), samples).await?;
    let file = dir.path().join("chain.jsonl");
    chain_throughput(&file, &records, megabytes)?;
    binary_verify(&file)?;
    Ok(())
}

/// (1): returns the records written.
async fn rollout_and_recorder(dir: &Path, samples: usize) -> anyhow::Result<Vec<Value>> {
    let model_dir = dir.join("tiny");
    tiny::generate(&model_dir, &tiny::TinySpec::default())?;
    let model: Arc<dyn ModelBackend> =
        Arc::new(EmbeddedModel::load(ModelSource::Dir(model_dir), LoadOptions::default()).await?);
    let engine = Arc::new(PolicyEngine::load("default")?);
    let gate = ToolGate::new(ToolRegistry::with_builtins(), engine);
    let config = AgentConfig {
        max_turns: 1,
        strict: true,
        tool_choice: ToolChoice::Named("calculator".into()),
        tool_allow_list: Some(vec!["calculator".into()]),
        sampling: Sampling {
            max_tokens: 96,
            ..Sampling::default()
        },
        ..AgentConfig::default()
    };
    let agent = Agent::new(model.clone(), gate, Arc::new(AutoApprove), config);
    let tools = agent.tool_defs();
    let mut writer = ChainWriter::open(&dir.join("rollout.jsonl"))?;
    let (mut agent_time, mut record_time) = (Duration::ZERO, Duration::ZERO);
    let mut records = Vec::new();
    for i in 0..=samples {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let t = Instant::now();
        let outcome = agent
            .run(
                vec![Message::new(Role::User, format!("What is {i} + {i}?"))],
                tx,
                CancellationToken::new(),
            )
            .await?;
        let ran = t.elapsed();
        let mut events: Vec<AgentEvent> = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        // The recorder's whole job for one sample: observe every event, build the record
        // (digests, flat view), append it to the chain with fsync.
        let t = Instant::now();
        let mut builder = TrajectoryBuilder::new();
        for e in &events {
            builder.observe(e);
        }
        let task = TaskInfo::Prompt {
            prompt: format!("t{i}"),
        };
        let record = record_run(builder, &*model, agent.config(), &tools, &outcome, task).await;
        let mut record = Record::Traj(record);
        writer.append_record(&mut record)?;
        let recorded = t.elapsed();
        let record = serde_json::to_value(&record)?;
        if i == 0 {
            continue; // warm-up
        }
        agent_time += ran;
        record_time += recorded;
        records.push(record);
    }
    let per_sample = agent_time.as_secs_f64() / samples as f64;
    let rec = record_time.as_secs_f64() / samples as f64;
    println!("## rollout with the tiny model ({samples} samples, one forced calculator call each)");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| agent wall per sample | {:.1} ms |", per_sample * 1000.0);
    println!("| samples/s (one at a time) | {:.2} |", 1.0 / per_sample);
    println!(
        "| recorder per sample (observe + build + append + fsync) | {:.2} ms |",
        rec * 1000.0
    );
    println!(
        "| recorder share of a sample's wall time | {:.2} % |",
        100.0 * rec / (per_sample + rec)
    );
    Ok(records)
}

/// (2): builds a file of about `megabytes` from `records` (fresh ids), then verifies it.
fn chain_throughput(file: &Path, records: &[Value], megabytes: usize) -> anyhow::Result<()> {
    anyhow::ensure!(!records.is_empty(), "no records to replicate");
    let mut writer = ChainWriter::open(file)?;
    let t = Instant::now();
    let mut n = 0usize;
    while std::fs::metadata(file)?.len() < (megabytes as u64) << 20 {
        for r in records {
            let mut r = r.clone();
            if let Value::Object(o) = &mut r {
                o.remove("integrity");
                o.insert("id".into(), json!(format!("bench-{n}")));
            }
            writer.append(&mut r)?;
            n += 1;
        }
    }
    let write = t.elapsed();
    let bytes = std::fs::metadata(file)?.len() as f64;
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let report = chain::verify(file)?;
        runs.push(t.elapsed());
        anyhow::ensure!(report.first_error.is_none(), "the chain does not verify");
    }
    runs.sort();
    let mbps = |d: Duration| bytes / (1 << 20) as f64 / d.as_secs_f64();
    println!();
    println!(
        "## chain ({n} records, {:.1} MB, in-process)",
        bytes / (1 << 20) as f64
    );
    println!("| operation | MB/s |");
    println!("|---|---|");
    println!(
        "| append (canonical JSON + SHA-256 + fsync per record) | {:.1} |",
        mbps(write)
    );
    println!("| verify, median of 3 | {:.1} |", mbps(runs[1]));
    Ok(())
}

/// (3): `verity verify [--replay]` on the file, when the binary is built.
fn binary_verify(file: &Path) -> anyhow::Result<()> {
    let bin: PathBuf = std::env::current_exe()?
        .parent()
        .map(|d| d.join("verity"))
        .unwrap_or_default();
    println!();
    if !bin.exists() {
        println!("(skipped `verity verify`: build the binary first, e.g. `cargo build -p verity`)");
        return Ok(());
    }
    let bytes = std::fs::metadata(file)?.len() as f64 / (1 << 20) as f64;
    println!("## `verity verify` end to end ({bytes:.1} MB)");
    println!("| command | wall | MB/s |");
    println!("|---|---|---|");
    for extra in [&[][..], &["--replay"][..]] {
        let t = Instant::now();
        let out = Command::new(&bin)
            .arg("verify")
            .args(extra)
            .arg(file)
            .output()?;
        let wall = t.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "verity verify {extra:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "| verity verify {} | {:.2} s | {:.1} |",
            extra.join(" "),
            wall.as_secs_f64(),
            bytes / wall.as_secs_f64()
        );
    }
    Ok(())
}
