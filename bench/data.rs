//! Trainer-data benchmarks (issue 16), side by side in one run:
//!
//! 1. `verity export` rows/s for every format, on one trajectory file of real records: a
//!    rollout of the tiny model (2 tasks × 4 samples, the README's tasks), replicated with
//!    fresh ids and task ids and re-chained (group records re-made with their members'
//!    new digests) until it holds `REPLICAS` × 8 runs;
//! 2. `verity score --stdio` scores/s against `math-verify` (the Python reference, run by
//!    `tests/clients/math_verify_oracle.py` in `.venv`) on the same requests: the 226
//!    pairs of `tests/data/math_pairs.jsonl`, repeated `REPEAT` times.
//!
//! A root-package example so it builds with the test build's features (the bench crate's
//! own feature set recompiles mistral.rs): `cargo build --example data-bench`, then
//! `$CARGO_TARGET_DIR/debug/examples/data-bench [REPLICAS] [REPEAT]` (defaults 250, 10)
//! from the repository root, with `target/debug/verity` built.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use serde_json::Value;
use verity_runtime::trajectory::{chain::ChainWriter, group, sign::Signer, Record, TaskInfo};

const TASKS: &str = concat!(
    r#"{"id": "add", "prompt": "What is 2+2?", "ground_truth": "4", "verifier": {"type": "math"}, "tools": ["calculator"]}"#,
    "\n",
    r#"{"id": "call", "prompt": "Compute 17/3*3.", "ground_truth": [{"name": "calculator", "arguments": {"expression": ["17/3*3"], "precision": ["", 15]}}], "verifier": {"type": "tool_call"}, "tools": ["calculator"]}"#,
    "\n",
);

fn verity() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/debug/examples/data-bench → target/debug/verity
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("verity"))
        .ok_or_else(|| anyhow::anyhow!("no target dir above {}", exe.display()))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let replicas: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(250);
    let repeat: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let dir = tempfile::tempdir()?;
    let verity = verity()?;
    anyhow::ensure!(
        verity.exists(),
        "build the binary first: {}",
        verity.display()
    );

    // 1. A real rollout, then replicas of it.
    let tasks = dir.path().join("tasks.jsonl");
    std::fs::write(&tasks, TASKS)?;
    let seed_file = dir.path().join("seed.jsonl");
    let o = Command::new(&verity)
        .arg("rollout")
        .arg(&tasks)
        .args(["--samples", "4", "--out"])
        .arg(&seed_file)
        .args(["--model", "tiny", "--strict", "--tool-choice", "required"])
        .args(["--max-turns", "1", "--max-tokens-per-call", "96"])
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records: Vec<Record> = std::fs::read_to_string(&seed_file)?
        .lines()
        .map(Record::from_json_line)
        .collect::<Result<_, _>>()?;
    let big = dir.path().join("big.jsonl");
    let mut w = ChainWriter::open(&big)?;
    // The same records, signed (`--sign`), for `verify --key`.
    let key = dir.path().join("bench.key");
    let signer = std::sync::Arc::new(Signer::generate(&key)?);
    let signed = dir.path().join("signed.jsonl");
    let mut ws = ChainWriter::open(&signed)?.with_signer(signer);
    let mut runs = 0usize;
    for k in 0..replicas {
        let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &records {
            let mut r = r.clone();
            match &mut r {
                Record::Traj(t) => {
                    t.id = format!("{}-r{k}", t.id);
                    if let TaskInfo::Task(task) = &mut t.task {
                        task.id = format!("{}-{k}", task.id);
                        t.group_id = Some(task.id.clone());
                    }
                    t.integrity = None;
                    ws.append_record(&mut r.clone())?;
                    let d = w.append_record(&mut r)?;
                    if let Record::Traj(t) = &r {
                        digests
                            .entry(t.group_id.clone().unwrap_or_default())
                            .or_default()
                            .push(d);
                    }
                    runs += 1;
                }
                Record::Group(g) => {
                    let id = format!("{}-{k}", g.group_id);
                    g.group_id = id.clone();
                    g.task.id = id.clone();
                    let members = digests.remove(&id).unwrap_or_default();
                    g.stats.merkle_root = Some(group::merkle_root(&members));
                    g.stats.members = members;
                    g.integrity = None;
                    w.append_record(&mut r)?;
                    if let Record::Group(g) = &mut r {
                        g.integrity = None;
                    }
                    ws.append_record(&mut r)?;
                }
            }
        }
    }
    drop(w);
    drop(ws);
    let mb = std::fs::metadata(&big)?.len() as f64 / 1e6;
    println!(
        "export: {runs} runs ({mb:.1} MB, {} tasks), verify + every format:",
        replicas * 2
    );
    let time = |args: &[&str]| -> anyhow::Result<f64> {
        let t = Instant::now();
        let o = Command::new(&verity)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(t.elapsed().as_secs_f64())
    };
    let big_s = big.to_string_lossy().into_owned();
    let secs = time(&["verify", &big_s])?;
    println!(
        "  {:<12} {:>8.0} records/s  ({:.2} s, {:.0} MB/s)",
        "verify",
        runs as f64 / secs,
        secs,
        mb / secs
    );
    let signed_s = signed.to_string_lossy().into_owned();
    let public = verity_runtime::trajectory::sign::public_path(&key);
    let public_s = public.to_string_lossy().into_owned();
    let smb = std::fs::metadata(&signed)?.len() as f64 / 1e6;
    let secs = time(&["verify", "--key", &public_s, &signed_s])?;
    println!(
        "  {:<12} {:>8.0} records/s  ({:.2} s, {:.0} MB/s, every signature checked)",
        "verify --key",
        runs as f64 / secs,
        secs,
        smb / secs
    );
    for (format, ext, rows) in [
        ("openai", "jsonl", runs),
        ("trl", "jsonl", runs),
        ("trl-tokens", "jsonl", runs),
        ("trl-sft", "jsonl", runs),
        ("verifiers", "jsonl", runs),
        ("verl", "parquet", replicas * 2),
    ] {
        let out = dir.path().join(format!("out.{ext}"));
        let out_s = out.to_string_lossy().into_owned();
        let secs = time(&["export", &big_s, "--format", format, "--out", &out_s])?;
        println!(
            "  {format:<12} {:>8.0} rows/s     ({rows} rows, {:.2} s, verify included)",
            rows as f64 / secs,
            secs
        );
    }

    // 2. Scoring, Verity against math-verify on the same requests.
    let pairs: Vec<Value> = std::fs::read_to_string("tests/data/math_pairs.jsonl")?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let n = pairs.len() * repeat;
    let ours: String = (0..repeat)
        .flat_map(|_| &pairs)
        .map(|p| {
            serde_json::json!({"verifier": "math", "ground_truth": p["gold"], "answer": p["reply"]})
                .to_string()
                + "\n"
        })
        .collect();
    let theirs: String = (0..repeat)
        .flat_map(|_| &pairs)
        .map(|p| serde_json::json!({"gold": p["gold"], "reply": p["reply"]}).to_string() + "\n")
        .collect();
    let pipe = |cmd: &mut Command, input: String| -> anyhow::Result<f64> {
        let t = Instant::now();
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output()?;
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))??;
        anyhow::ensure!(out.status.success(), "scorer failed");
        anyhow::ensure!(
            out.stdout.iter().filter(|b| **b == b'\n').count() == n,
            "short output"
        );
        Ok(t.elapsed().as_secs_f64())
    };
    let v = pipe(Command::new(&verity).args(["score", "--stdio"]), ours)?;
    let m = pipe(
        Command::new(".venv/bin/python").arg("tests/clients/math_verify_oracle.py"),
        theirs,
    )?;
    println!("score ({n} math requests, process start included):");
    println!(
        "  verity score --stdio  {:>8.0} scores/s ({v:.2} s)",
        n as f64 / v
    );
    println!(
        "  math-verify (Python)  {:>8.0} scores/s ({m:.2} s)",
        n as f64 / m
    );
    println!("  ratio verity / math-verify: {:.1}×", m / v);
    Ok(())
}
