//! A real third-party server: llama.cpp's `llama-server`, built from the same
//! llama-cpp-python sdist the template and tokenizer fixtures come from
//! (`scripts/build-llama-server.sh`), serves each family's tiny `.gguf` — tokenizer and chat
//! template read from its header — with llama.cpp's own tool-call support (`--jinja`: its
//! template analysis, its grammar for `tool_choice: required`, its call parser). `verity run`
//! and `verity rollout --base-url` against it: the calls llama.cpp parsed arrive as streamed
//! `tool_calls`, run, and their results go back through llama.cpp's rendering of the
//! template; logprobs are recorded and the records verify.
//!
//! The weights are random, so on its own the model would write free text forever before
//! the call llama.cpp's grammar requires. The test steers it with the server's standard
//! sampling options, passed with `--extra-body` (and recorded): large logit biases on the
//! call's opening token (`<tool_call>` / `{"`), on `"}}` (which can end the argument string
//! and both objects) and on the end-of-turn token, with a presence penalty on the last token
//! only, so no token wins twice in a row — opening, one token inside the string, closing.
//! llama.cpp's grammar decides what is allowed at each step; the biases only pick among it.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use super::common::{llama_cpp_models, records, stderr, verity, write_file};

/// A `llama-server` child, killed on drop.
struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    fn start(gguf: &Path, log: PathBuf) -> Self {
        let bin = llama_cpp_models().join("bin/llama-server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/install-test-deps.sh (it builds llama.cpp once)",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let child = Command::new(bin)
            .arg("-m")
            .arg(gguf)
            .args(["--jinja", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["-t", "2", "-c", "4096", "--parallel", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Self { child, port, log };
        let started = Instant::now();
        loop {
            if let Some((200, _)) = server.http("GET", "/health", None) {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "llama-server did not become healthy: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A minimal HTTP/1.1 exchange (the server's own endpoints, outside Verity's client).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let status = raw.split(' ').nth(1)?.parse().ok()?;
        let json = raw
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        Some((status, json))
    }

    /// The one id `text` tokenizes to, special tokens parsed.
    fn token(&self, text: &str) -> u64 {
        let (_, r) = self
            .http(
                "POST",
                "/tokenize",
                Some(&json!({"content": text, "parse_special": true})),
            )
            .unwrap();
        let ids: Vec<u64> = r["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(ids.len(), 1, "{text:?} is not one token: {ids:?}");
        ids[0]
    }
}

/// A family: its `verity model tiny --family` arguments, the token its template opens a call
/// with, whether the call opening needs a newline after it, and its end-of-turn token.
struct Family {
    name: &'static str,
    vocab: &'static str,
    template: &'static str,
    open: &'static str,
    /// What can end the argument string (and the objects).
    close: &'static str,
    newline: bool,
    end: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "qwen3",
        vocab: "ggml-vocab-qwen2.gguf",
        template: "Qwen-Qwen3-0.6B.jinja",
        open: "<tool_call>",
        close: "\"}}",
        newline: true,
        end: "<|im_end|>",
    },
    Family {
        name: "llama3",
        vocab: "ggml-vocab-llama-bpe.gguf",
        template: "meta-llama-Llama-3.1-8B-Instruct.jinja",
        open: "{\"",
        close: "\"}}",
        newline: false,
        end: "<|eot_id|>",
    },
    Family {
        name: "mistral",
        vocab: "ggml-vocab-llama-spm.gguf",
        template: "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        open: "[TOOL_CALLS]",
        // SentencePiece writes `"` after a space as one token, `▁"`.
        close: "\"",
        newline: false,
        end: "</s>",
    },
    Family {
        name: "hermes",
        vocab: "ggml-vocab-llama-bpe.gguf",
        template: "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
        open: "<tool_call>",
        close: "\"}}",
        newline: true,
        end: "<|im_end|>",
    },
];

fn family_gguf(dir: &Path, f: &Family) -> PathBuf {
    let models = llama_cpp_models();
    let out = dir.join(f.name);
    let o = Command::new(verity())
        .args(["model", "tiny", "--family", f.name, "--vocab"])
        .arg(models.join(f.vocab))
        .arg("--template")
        .arg(models.join("templates").join(f.template))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out.join(format!("verity-tiny-{}.gguf", f.name))
}

/// The sampling options that steer the random model through llama.cpp's call grammar.
fn steering(server: &LlamaServer, f: &Family) -> Value {
    let mut bias = serde_json::Map::new();
    bias.insert(server.token(f.open).to_string(), json!(100));
    bias.insert(server.token(f.close).to_string(), json!(90));
    bias.insert(server.token(f.end).to_string(), json!(150));
    if f.newline {
        bias.insert(server.token("\n").to_string(), json!(95));
    }
    json!({"logit_bias": bias, "repeat_last_n": 1, "presence_penalty": 200})
}

/// Checks one recorded run: llama.cpp's parsed call, run by Verity, its result rendered
/// back by llama.cpp (a second model call), logprobs for every generated token.
fn assert_called(r: &Value, family: &str, server: &LlamaServer) {
    let messages = r["messages"].as_array().unwrap();
    let call = messages
        .iter()
        .find_map(|m| m["tool_calls"].as_array().and_then(|c| c.first()))
        .unwrap_or_else(|| panic!("{family}: no call read: {messages:?}"));
    assert_eq!(call["function"]["name"], "calculator", "{family}: {call}");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or_default()).unwrap();
    assert!(args["expression"].is_string(), "{family}: {call}");
    assert!(
        messages.iter().any(|m| m["role"] == "tool"),
        "{family}: the call did not run: {messages:?}"
    );
    let turns = r["turns"].as_array().unwrap();
    assert_eq!(
        turns.len(),
        2,
        "{family}: the result went back to the server"
    );
    for t in turns {
        let lps = t["gen_logprobs"].as_array().cloned().unwrap_or_default();
        assert!(
            !lps.is_empty() && lps.iter().all(|l| l.as_f64().is_some_and(|l| l <= 0.0)),
            "{family}: logprobs {t}; server log: {}",
            server.log_text()
        );
    }
    assert_eq!(r["policy"]["engine"], "openai-http");
    assert_eq!(r["policy"]["request_extra"]["repeat_last_n"], 1, "{family}");
}

#[test]
fn llama_server_serves_each_family_with_its_own_tool_calling() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(dir.path(), "config.toml", "");
    let tasks = write_file(
        dir.path(),
        "tasks.jsonl",
        concat!(
            r#"{"id": "mul", "prompt": "What is 17 * 23?", "ground_truth": "391", "verifier": {"type": "math"}, "tools": ["calculator"]}"#,
            "\n",
            r#"{"id": "add", "prompt": "What is 2 + 2?", "ground_truth": "4", "verifier": {"type": "math"}, "tools": ["calculator"]}"#,
            "\n",
        ),
    );
    for f in FAMILIES {
        let gguf = family_gguf(dir.path(), f);
        let server = LlamaServer::start(&gguf, dir.path().join(format!("{}.log", f.name)));
        let extra = steering(&server, f).to_string();
        let common = |cmd: &mut Command| {
            cmd.arg("--config")
                .arg(&config)
                .args(["--base-url", &server.url(), "--model", f.name])
                .args(["--extra-body", &extra, "--policy", "trusted"])
                .args(["--tools", "calculator", "--tool-choice", "required"])
                .args(["--max-turns", "2", "--max-tokens-per-call", "160"])
                .stdin(Stdio::null());
        };

        // verity run
        let file = dir.path().join(format!("{}-run.jsonl", f.name));
        let mut cmd = Command::new(verity());
        cmd.arg("run");
        common(&mut cmd);
        let o = cmd
            .arg("--record")
            .arg(&file)
            .arg("What is 17 * 23?")
            .output()
            .unwrap();
        assert!(
            stderr(&o).contains("recorded to"),
            "{}: {}\nserver: {}",
            f.name,
            stderr(&o),
            server.log_text()
        );
        let run = records(&file);
        let traj = run.iter().find(|r| r["kind"] == "traj").unwrap();
        assert_called(traj, f.name, &server);

        // verity rollout: two tasks × two samples, grouped and verified. (Greedy: at T = 1
        // llama.cpp's sampler sometimes opens a second call after the first and the reply
        // runs out of tokens in it; the steering, not Verity, is what is fragile there.)
        let out = dir.path().join(format!("{}-rollout.jsonl", f.name));
        let mut cmd = Command::new(verity());
        cmd.arg("rollout").arg(&tasks);
        common(&mut cmd);
        let o = cmd
            .args([
                "--samples",
                "2",
                "--temperature",
                "0",
                "--concurrency",
                "2",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: {}", f.name, stderr(&o));
        let rs = records(&out);
        let trajs: Vec<&Value> = rs.iter().filter(|r| r["kind"] == "traj").collect();
        assert_eq!(trajs.len(), 4, "{}: {}", f.name, stderr(&o));
        for t in &trajs {
            assert_called(t, f.name, &server);
        }
        assert_eq!(rs.iter().filter(|r| r["kind"] == "group").count(), 2);
        for file in [&file, &out] {
            let o = Command::new(verity())
                .arg("verify")
                .arg(file)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}: {}", f.name, stderr(&o));
        }
    }
}
