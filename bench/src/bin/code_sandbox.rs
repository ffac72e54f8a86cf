//! Code sandbox benchmark: Verity's `code` tool vs llm-wasm-sandbox 0.4.4 (PyPI), the same
//! snippets on the same machine, side by side in one run.
//!
//! Measures: warm fresh-instance `print(2+2)` p50/p95; first call in a new process (cached
//! `.cwasm`); session call p50; N concurrent executions; how long after its deadline a
//! time limit actually stops `while True: pass` and `time.sleep(60)`.
//!
//!     verity setup
//!     python3 -m venv .venv-bench && .venv-bench/bin/pip install llm-wasm-sandbox==0.4.4
//!     cargo run --release -p verity-bench --bin code-sandbox -- \
//!         --verity target/release/verity --reference-python .venv-bench/bin/python

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use verity_bench::{fmt, summarize};
use verity_tools::code::{install, run, PythonEngine, RunLimits, Sessions};

fn limits(wall_ms: u64) -> RunLimits {
    RunLimits {
        wall: Duration::from_millis(wall_ms),
        memory_bytes: 256 << 20,
        output_bytes: 64 << 10,
        scratch_bytes: 32 << 20,
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut verity = "target/release/verity".to_owned();
    let mut reference: Option<String> = None;
    let mut runs = 200usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().context("flag without value")?;
        match k.as_str() {
            "--verity" => verity = v,
            "--reference-python" => reference = Some(v),
            "--runs" => runs = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let engine: Arc<PythonEngine> =
        tokio::task::spawn_blocking(|| PythonEngine::load(&install::wasm_path())).await??;
    let cancel = CancellationToken::new();

    // Warm fresh instance.
    for _ in 0..5 {
        run(&engine, "print(2+2)", limits(10_000), 0, cancel.clone()).await?;
    }
    let mut lat = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = run(&engine, "print(2+2)", limits(10_000), 0, cancel.clone()).await?;
        lat.push(t.elapsed());
        anyhow::ensure!(o.stdout == "4\n", "bad output {o:?}");
    }
    let warm = summarize(&mut lat);

    // Session calls.
    let sessions = Sessions::default();
    sessions
        .run(
            &engine,
            "cli",
            "bench",
            "x = 0",
            limits(10_000),
            0,
            cancel.clone(),
        )
        .await?;
    let mut lat = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        sessions
            .run(
                &engine,
                "cli",
                "bench",
                "x = x + 1",
                limits(10_000),
                0,
                cancel.clone(),
            )
            .await?;
        lat.push(t.elapsed());
    }
    let session = summarize(&mut lat);

    // First call in a new process (cached module).
    let mut firsts = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = Command::new(&verity)
            .args(["tools", "call", "code", r#"{"code": "print(2+2)"}"#])
            .output()?;
        firsts.push(t.elapsed());
        anyhow::ensure!(
            String::from_utf8_lossy(&out.stdout) == "4\n",
            "verity printed {out:?}"
        );
    }
    let first = summarize(&mut firsts);

    // N concurrent executions.
    let n = 16;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let engine = Arc::clone(&engine);
        let cancel = cancel.clone();
        set.spawn(async move {
            run(
                &engine,
                "print(sum(range(10**5)))",
                limits(30_000),
                0,
                cancel,
            )
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let concurrent = t.elapsed();

    // Time limits: how late after the deadline is the guest stopped?
    let deadline = 500;
    let t = Instant::now();
    let o = run(
        &engine,
        "while True: pass",
        limits(deadline),
        0,
        cancel.clone(),
    )
    .await?;
    let busy_over = t.elapsed().saturating_sub(Duration::from_millis(deadline));
    anyhow::ensure!(o.limit_hit.is_some(), "busy loop not stopped");
    let t = Instant::now();
    let o = run(
        &engine,
        "import time\ntime.sleep(60)",
        limits(deadline),
        0,
        cancel.clone(),
    )
    .await?;
    let sleep_over = t.elapsed().saturating_sub(Duration::from_millis(deadline));
    anyhow::ensure!(o.limit_hit.is_some(), "sleep not stopped");

    println!("## Verity (wasmtime 48, CPython 3.12 WASI)\n");
    println!("| measure | value |\n|---|---:|");
    println!("| warm fresh-instance print(2+2) p50 | {} |", fmt(warm.p50));
    println!("| warm fresh-instance print(2+2) p95 | {} |", fmt(warm.p95));
    println!(
        "| first call in a new process (cached .cwasm), median | {} |",
        fmt(first.p50)
    );
    println!("| session call p50 | {} |", fmt(session.p50));
    println!("| {n} concurrent executions, wall | {} |", fmt(concurrent));
    println!(
        "| `while True: pass`, 500 ms limit: stopped after deadline + | {} |",
        fmt(busy_over)
    );
    println!(
        "| `time.sleep(60)`, 500 ms limit: stopped after deadline + | {} |",
        fmt(sleep_over)
    );

    if let Some(py) = reference {
        let out = Command::new(py)
            .args([
                "bench/reference/llm_wasm_sandbox_bench.py",
                "--runs",
                "10",
                "--concurrency",
                "4",
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let r: Value =
            serde_json::from_str(text.lines().last().unwrap_or_default()).with_context(|| {
                format!(
                    "reference printed: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let ms = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        let v_ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("\n## llm-wasm-sandbox 0.4.4 (wasmtime-py 38)\n");
        println!("| measure | value |\n|---|---:|");
        println!("| warm print(2+2) p50 | {:.0} ms |", ms("warm_p50_ms"));
        println!("| warm print(2+2) p95 | {:.0} ms |", ms("warm_p95_ms"));
        println!(
            "| first call in a new process, median | {:.0} ms |",
            ms("first_call_new_process_ms")
        );
        println!("| session call p50 | {:.0} ms |", ms("session_p50_ms"));
        println!(
            "| {} concurrent executions, wall | {:.0} ms |",
            r["concurrency"],
            ms("concurrent_wall_ms")
        );
        match r["sleep_under_1s_limit_stopped_after_ms"].as_f64() {
            Some(v) => println!("| `time.sleep(60)`, 1 s limit: returned after | {v:.0} ms |"),
            None => println!("| `time.sleep(60)`, 1 s limit: returned after | not within 10 s |"),
        }
        println!("\n## Ratios (llm-wasm-sandbox / Verity)\n");
        println!("- warm p50: {:.0}×", ms("warm_p50_ms") / v_ms(warm.p50));
        println!(
            "- first call in a new process: {:.0}×",
            ms("first_call_new_process_ms") / v_ms(first.p50)
        );
        println!(
            "- session call p50: {:.0}×",
            ms("session_p50_ms") / v_ms(session.p50)
        );
        let per_v = v_ms(concurrent) / f64::from(n);
        let per_r = ms("concurrent_wall_ms") / r["concurrency"].as_f64().unwrap_or(1.0);
        println!(
            "- concurrent throughput (wall per execution): {:.0}×",
            per_r / per_v
        );
    }
    Ok(())
}
