//! MCP calculator benchmark: `verity serve` vs an equivalent server written with the
//! official Python SDK (`bench/reference/calc_server.py`), same client, same machine,
//! side by side in one run.
//!
//! The client is this program: a minimal JSON-RPC client (newline-delimited over stdio;
//! POST + session header over streamable HTTP) so the client's own cost is negligible and
//! the numbers compare servers.
//!
//! Run (after `cargo build` and `scripts/install-test-deps.sh`):
//!
//!     cargo run --release -p verity-bench --bin mcp-calc -- \
//!         --verity target/release/verity --python .venv/bin/python [--calls 2000]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use verity_bench::{fmt, summarize, Summary};

const SMALL: &str = "2+2";
/// About 50 tokens.
const LARGE: &str = "(17/3 + 2^10 - 3*(4.5 - 1/7)) * (12345 / 67 + 0.125) - (99 - 1/3)^2 / (7 + 11*13) + 1e3 - 42 % 5";

struct Args {
    verity: String,
    python: String,
    calls: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        verity: "target/release/verity".into(),
        python: ".venv/bin/python".into(),
        calls: 2000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().context("flag without a value")?;
        match k.as_str() {
            "--verity" => a.verity = v,
            "--python" => a.python = v,
            "--calls" => a.calls = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "verity-bench", "version": "1"}}})
}

fn call(id: u64, expr: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "calculator", "arguments": {"expression": expr}}})
}

struct Stdio_ {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Stdio_ {
    fn start(cmd: &[&str]) -> Result<Self> {
        let mut child = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut s = Self {
            child,
            stdin,
            stdout,
        };
        s.send(&initialize())?;
        s.recv()?;
        s.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(s)
    }

    fn send(&mut self, v: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        self.stdin.write_all(&line)?;
        self.stdin.flush()?;
        Ok(())
    }

    fn recv(&mut self) -> Result<Value> {
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("server closed stdout");
            }
            let v: Value = serde_json::from_str(&line)?;
            if v.get("id").is_some() {
                return Ok(v);
            }
        }
    }

    /// Sequential calls: one in flight. Returns per-call latencies.
    fn sequential(&mut self, expr: &str, n: usize) -> Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            self.send(&call(i as u64 + 1, expr))?;
            let r = self.recv()?;
            out.push(t.elapsed());
            check(&r)?;
        }
        Ok(out)
    }

    /// Pipelined calls, `window` in flight; returns calls per second.
    fn pipelined(&mut self, expr: &str, n: usize, window: usize) -> Result<f64> {
        let t = Instant::now();
        let (mut sent, mut got) = (0, 0);
        while got < n {
            while sent < n && sent - got < window {
                self.send(&call(100_000 + sent as u64, expr))?;
                sent += 1;
            }
            check(&self.recv()?)?;
            got += 1;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }
}

impl Drop for Stdio_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check(r: &Value) -> Result<()> {
    if r["result"]["isError"] == true || r.get("error").is_some() {
        bail!("call failed: {r}");
    }
    Ok(())
}

struct Http {
    child: Child,
    client: reqwest::Client,
    url: String,
    session: Option<String>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Http {
    async fn start(cmd: &[String], port: u16) -> Result<Self> {
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let url = format!("http://127.0.0.1:{port}/mcp");
        let mut h = Self {
            child,
            client: reqwest::Client::new(),
            url,
            session: None,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let resp = h.post(&initialize()).await?;
        h.session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let _ = resp.text().await?;
        let _ = h
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(h)
    }

    async fn post(&self, v: &Value) -> Result<reqwest::Response> {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(serde_json::to_vec(v)?);
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        Ok(req.send().await?)
    }

    async fn call(&self, id: u64, expr: &str) -> Result<()> {
        let text = self.post(&call(id, expr)).await?.text().await?;
        // JSON body, or SSE with the response in a `data:` line.
        let body = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|l| l.contains("\"result\"") || l.contains("\"error\""))
            .unwrap_or(text.trim());
        check(&serde_json::from_str(body).with_context(|| format!("bad response: {text}"))?)
    }

    async fn sequential(&self, expr: &str, n: usize) -> Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            self.call(i as u64 + 1, expr).await?;
            out.push(t.elapsed());
        }
        Ok(out)
    }

    async fn concurrent(&self, expr: &str, n: usize, window: usize) -> Result<f64> {
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        let per = n / window;
        for w in 0..window {
            let this = Self {
                child: Command::new("true").spawn()?,
                client: self.client.clone(),
                url: self.url.clone(),
                session: self.session.clone(),
            };
            let expr = expr.to_owned();
            set.spawn(async move {
                for i in 0..per {
                    this.call((w * per + i) as u64 + 10_000, &expr).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok((per * window) as f64 / t.elapsed().as_secs_f64())
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Row {
    transport: &'static str,
    expr: &'static str,
    server: &'static str,
    seq: Summary,
    seq_rate: f64,
    piped_rate: f64,
}

fn print(rows: &[Row]) {
    println!("| transport | expression | server | calls/s (sequential) | calls/s (32 in flight) | p50 | p99 |");
    println!("|---|---|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} |",
            r.transport,
            r.expr,
            r.server,
            r.seq_rate,
            r.piped_rate,
            fmt(r.seq.p50),
            fmt(r.seq.p99)
        );
    }
    println!();
    for pair in rows.chunks(2) {
        if let [v, p] = pair {
            println!(
                "{} {}: verity/python throughput ratio sequential {:.1}×, 32 in flight {:.1}×; p50 latency ratio {:.1}×",
                v.transport,
                v.expr,
                v.seq_rate / p.seq_rate,
                v.piped_rate / p.piped_rate,
                p.seq.p50.as_secs_f64() / v.seq.p50.as_secs_f64()
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let script = "bench/reference/calc_server.py";
    let mut rows = Vec::new();
    let exprs = [("2+2", SMALL), ("~50 tokens", LARGE)];
    for (label, expr) in exprs {
        for (server, cmd) in [
            (
                "verity",
                vec![
                    a.verity.as_str(),
                    "serve",
                    "--policy",
                    "bench/reference/bench-policy.toml",
                ],
            ),
            ("python MCPServer", vec![a.python.as_str(), script, "stdio"]),
        ] {
            let mut s = Stdio_::start(&cmd)?;
            s.sequential(expr, 50)?; // warm-up
            let t = Instant::now();
            let mut lat = s.sequential(expr, a.calls)?;
            let seq_rate = a.calls as f64 / t.elapsed().as_secs_f64();
            let piped_rate = s.pipelined(expr, a.calls, 32)?;
            rows.push(Row {
                transport: "stdio",
                expr: label,
                server,
                seq: summarize(&mut lat),
                seq_rate,
                piped_rate,
            });
        }
    }
    for (label, expr) in exprs {
        for server in ["verity", "python MCPServer"] {
            let port = free_port()?;
            let cmd: Vec<String> = if server == "verity" {
                vec![
                    a.verity.clone(),
                    "serve".into(),
                    "--policy".into(),
                    "bench/reference/bench-policy.toml".into(),
                    "--http".into(),
                    format!("127.0.0.1:{port}"),
                ]
            } else {
                vec![
                    a.python.clone(),
                    script.into(),
                    "http".into(),
                    port.to_string(),
                ]
            };
            let h = Http::start(&cmd, port).await?;
            h.sequential(expr, 50).await?;
            let n = a.calls / 2;
            let t = Instant::now();
            let mut lat = h.sequential(expr, n).await?;
            let seq_rate = n as f64 / t.elapsed().as_secs_f64();
            let piped_rate = h.concurrent(expr, n, 32).await?;
            rows.push(Row {
                transport: "http",
                expr: label,
                server,
                seq: summarize(&mut lat),
                seq_rate,
                piped_rate,
            });
        }
    }
    print(&rows);
    Ok(())
}
