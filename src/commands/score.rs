//! `verity score`: score one answer against a ground truth with any verifier, the same code
//! `verity rollout` scores with — to test verifiers and task files, and (with `--stdio`) to
//! serve trainers' reward functions (`python/verity_reward.py`).

use std::{
    io::{BufRead, Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize;
use serde_json::Value;
use verity_runtime::{
    model::ToolCall,
    reward::{self, Attempt, RewardResult, VerifierSpec},
    rollout,
};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The answer to score (`-` or absent: read it from stdin).
    answer: Option<String>,
    /// The verifier: a name (math, exact, normalized, tool_call, code) or its JSON
    /// (`{"type": "regex", "pattern": "^4$"}`). Default: the task's (--task), else math.
    #[arg(long)]
    verifier: Option<String>,
    /// The ground truth (JSON if it parses as JSON, else text). Default: the task's.
    #[arg(long)]
    truth: Option<String>,
    /// Take the verifier and ground truth from a task file (with --id to pick the task).
    #[arg(long)]
    task: Option<PathBuf>,
    /// The task's id in --task (default: the first).
    #[arg(long, requires = "task")]
    id: Option<String>,
    /// The reply's tool calls, as JSON: `[{"name": "calculator", "arguments": {...}}]`
    /// (for the tool_call verifier).
    #[arg(long)]
    calls: Option<String>,
    /// The run was cut by the token limit (the math verifier then scores 0 unless its
    /// spec says `allow_truncated`).
    #[arg(long)]
    truncated: bool,
    /// Print the verdict as JSON (score, extracted answer, reason).
    #[arg(long)]
    json: bool,
    /// Serve many requests: one JSON object per stdin line,
    /// `{"verifier": …, "ground_truth": …, "answer": …, "calls": […]}`, one verdict per
    /// stdout line, in order. A bad line gets `{"error": "…"}` and the next is read.
    #[arg(long, conflicts_with_all = ["answer", "task", "json"])]
    stdio: bool,
}

/// One `--stdio` request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// A verifier name or spec object (default math).
    #[serde(default)]
    verifier: Option<Value>,
    #[serde(default)]
    ground_truth: Value,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    calls: Vec<CallJson>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Debug, Deserialize)]
struct CallJson {
    name: String,
    #[serde(default)]
    arguments: Value,
}

fn calls_of(calls: Vec<CallJson>) -> Vec<ToolCall> {
    calls
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: format!("call_{i}"),
            name: c.name,
            // OpenAI writes arguments as a JSON string: accept both.
            arguments: match c.arguments {
                Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                v => v,
            },
        })
        .collect()
}

/// A verifier from a name or its JSON.
fn parse_verifier(v: &Value) -> anyhow::Result<VerifierSpec> {
    let spec = match v {
        Value::String(name) if !name.trim_start().starts_with('{') => {
            serde_json::json!({ "type": name })
        }
        Value::String(json) => {
            serde_json::from_str(json).context("--verifier is not valid JSON")?
        }
        other => other.clone(),
    };
    serde_json::from_value(spec.clone()).map_err(|e| {
        anyhow::anyhow!(
            "verifier {spec}: {e} (names: math, exact, normalized, tool_call, code; with \
             settings as JSON: {{\"type\": \"regex\", \"pattern\": \"…\"}}, {{\"type\": \
             \"json_field\", \"field\": \"a.b\"}}, {{\"type\": \"format\", \"pattern\": \"…\"}})"
        )
    })
}

fn parse_truth(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let rt = super::runtime()?;
    if args.stdio {
        return rt.block_on(serve());
    }
    let (mut spec, mut gold) = (None, None);
    if let Some(path) = &args.task {
        let t = rollout::load_task(path, args.id.as_deref())?;
        spec = Some(t.task.verifier.clone());
        gold = Some(t.task.ground_truth.clone());
    }
    if let Some(v) = &args.verifier {
        spec = Some(parse_verifier(&Value::String(v.clone()))?);
    }
    if let Some(t) = &args.truth {
        gold = Some(parse_truth(t));
    }
    let spec = spec.unwrap_or(VerifierSpec::MATH);
    let gold = gold.with_context(|| "no ground truth: pass --truth (or --task)")?;
    let answer = match args.answer.as_deref() {
        Some("-") | None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the answer from stdin")?;
            s
        }
        Some(a) => a.to_owned(),
    };
    let calls = match &args.calls {
        Some(c) => calls_of(
            serde_json::from_str(c)
                .context("--calls: expected a JSON list of {\"name\", \"arguments\"}")?,
        ),
        None => Vec::new(),
    };
    let attempt = Attempt {
        answer: Some(answer),
        calls,
        truncated: args.truncated,
    };
    let result = rt.block_on(reward::score(&spec, &gold, &attempt));
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        print_human(&mut out, &result)?;
    }
    Ok(if result.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_human(out: &mut impl Write, r: &RewardResult) -> std::io::Result<()> {
    writeln!(
        out,
        "{} {} (verifier {} v{})",
        if r.passed { "PASS" } else { "FAIL" },
        r.score,
        r.name,
        r.version
    )?;
    writeln!(
        out,
        "  extracted: {}",
        r.extracted.as_deref().unwrap_or("(nothing)")
    )?;
    writeln!(out, "  gold:      {}", r.gold)?;
    writeln!(out, "  reason:    {}", r.detail)
}

/// `--stdio`: one verdict per request line, in order, flushed as each is done.
async fn serve() -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match score_line(&line).await {
            Ok(r) => serde_json::to_value(r)?,
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        serde_json::to_writer(&mut out, &reply)?;
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn score_line(line: &str) -> anyhow::Result<RewardResult> {
    let req: Request = serde_json::from_str(line).context("not a score request")?;
    let spec = match &req.verifier {
        Some(v) => parse_verifier(v)?,
        None => VerifierSpec::MATH,
    };
    let attempt = Attempt {
        answer: req.answer,
        calls: calls_of(req.calls),
        truncated: req.truncated,
    };
    Ok(reward::score(&spec, &req.ground_truth, &attempt).await)
}
