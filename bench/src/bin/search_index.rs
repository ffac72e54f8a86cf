//! Search benchmark: `verity index build` + query latency on the Python 3.11 docs
//! (Debian python3.11-doc), against a plain `rg -l` scan of the same corpus for the same
//! terms — the brute-force floor — side by side in one run.
//!
//!     apt-get install python3.11-doc ripgrep
//!     cargo run --release -p verity-bench --bin search-index [-- --corpus DIR --queries 1000]

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context, Result};
use verity_bench::{fmt, summarize};
use verity_tools::search::{index, Search, SearchParams};

const TERMS: &[&str] = &[
    "itertools groupby",
    "json dumps indent",
    "regular expression group",
    "pathlib glob",
    "dataclass frozen",
    "asyncio gather",
    "subprocess run",
    "collections counter",
    "functools lru_cache",
    "argparse nargs",
    "datetime strftime",
    "sqlite3 executemany",
    "threading lock",
    "socket bind",
    "unittest mock patch",
    "logging handler",
    "csv reader",
    "typing protocol",
    "contextlib contextmanager",
    "os walk",
    "shutil copytree",
    "tempfile named",
    "random choice",
    "decimal context",
    "fractions fraction",
    "heapq nlargest",
    "bisect insort",
    "struct pack",
    "zipfile extract",
    "hashlib sha256",
];

fn main() -> Result<()> {
    let mut corpus = PathBuf::from("/usr/share/doc/python3.11/html");
    let mut n = 1000usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().context("flag without value")?;
        match k.as_str() {
            "--corpus" => corpus = v.into(),
            "--queries" => n = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let data = tempfile::tempdir()?;
    // Indexes go to a throwaway data dir (set before any thread starts).
    std::env::set_var("VERITY_DATA_DIR", data.path());
    let t = Instant::now();
    let report = index::build(&corpus, "bench", &mut |_, _| {})?;
    let build = t.elapsed();
    let size: u64 = std::fs::read_dir(&report.path)?
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();

    let search = Search::default();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let p = SearchParams {
            query: TERMS[i % TERMS.len()].to_owned(),
            k: Some(5),
            index: Some("bench".into()),
        };
        let t = Instant::now();
        let out = search.search(&p).map_err(|e| anyhow::anyhow!(e.message))?;
        if i >= 50 {
            lat.push(t.elapsed());
        }
        std::hint::black_box(out);
    }
    let q = summarize(&mut lat);

    let mut rg = Vec::new();
    let rg_runs = 60.min(n);
    for i in 0..rg_runs {
        let mut cmd = Command::new("rg");
        cmd.args(["-l", "-i", "--no-messages"]);
        for w in TERMS[i % TERMS.len()].split_whitespace() {
            cmd.args(["-e", w]);
        }
        cmd.arg(&corpus);
        let t = Instant::now();
        let out = cmd
            .output()
            .context("rg not found: apt-get install ripgrep")?;
        rg.push(t.elapsed());
        std::hint::black_box(out);
    }
    let r = summarize(&mut rg);

    println!(
        "corpus: {} ({} files, {} passages)",
        corpus.display(),
        report.indexed_files,
        report.passages
    );
    println!("\n| measure | verity (tantivy BM25) | rg -l (scan) |\n|---|---:|---:|");
    println!("| index build | {:.1} s | — |", build.as_secs_f64());
    println!("| index size | {:.1} MiB | — |", size as f64 / 1048576.0);
    println!("| query p50 | {} | {} |", fmt(q.p50), fmt(r.p50));
    println!("| query p95 | {} | {} |", fmt(q.p95), fmt(r.p95));
    println!(
        "\nqueries: {} (verity), {} (rg); rg/verity p50 ratio {:.0}×",
        q.n,
        r.n,
        r.p50.as_secs_f64() / q.p50.as_secs_f64().max(1e-9)
    );
    Ok(())
}
