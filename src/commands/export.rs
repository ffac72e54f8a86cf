//! `verity export FILE --format openai|trl|trl-tokens [--out FILE]`: trajectory records
//! to the row formats trainers read. The chain is verified first; tampered files are not
//! exported.

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use verity_runtime::trajectory::chain;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// `{messages, tools, reward}` per run: plain OpenAI chat format.
    Openai,
    /// TRL conversational: `{prompt, completion, tools, reward}` (prompt = messages up to
    /// the first model turn).
    Trl,
    /// TRL token level: `{prompt_ids, completion_ids, logprobs, env_mask, reward}` from the
    /// exact recorded ids (runs whose turns do not join token for token are skipped and
    /// counted).
    TrlTokens,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Trajectory file(s).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Target format.
    #[arg(long, value_enum)]
    format: Format,
    /// Output JSONL (default: stdout).
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let mut sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let (mut written, mut skipped) = (0usize, Vec::<String>::new());
    for f in &args.files {
        let report = chain::verify(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        if let Some((line, why)) = report.first_error {
            anyhow::bail!(
                "{}: line {line}: {why}; not exporting a damaged file",
                f.display()
            );
        }
        let file = std::fs::File::open(f)?;
        for line in std::io::BufReader::new(file).lines() {
            let r: Value = serde_json::from_str(&line?)?;
            if r["kind"] != "traj" {
                continue;
            }
            match row(&r, args.format) {
                Ok(v) => {
                    serde_json::to_writer(&mut sink, &v)?;
                    sink.write_all(b"\n")?;
                    written += 1;
                }
                Err(why) => skipped.push(format!("{}: {why}", r["id"].as_str().unwrap_or("?"))),
            }
        }
    }
    sink.flush()?;
    eprintln!("verity: exported {written} rows, skipped {}", skipped.len());
    for s in skipped.iter().take(5) {
        eprintln!("  skipped {s}");
    }
    Ok(ExitCode::SUCCESS)
}

fn tools(r: &Value) -> Value {
    let list = r["tools"].as_array().cloned().unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|t| json!({"type": "function", "function": t}))
            .collect(),
    )
}

fn row(r: &Value, format: Format) -> Result<Value, String> {
    let reward = r["reward"]["total"].clone();
    match format {
        Format::Openai => {
            Ok(json!({"messages": r["messages"], "tools": tools(r), "reward": reward}))
        }
        Format::Trl => {
            let messages = r["messages"].as_array().cloned().unwrap_or_default();
            let split = messages
                .iter()
                .position(|m| m["role"] == "assistant")
                .ok_or("no model turn")?;
            Ok(json!({
                "prompt": messages[..split],
                "completion": messages[split..],
                "tools": tools(r),
                "reward": reward,
            }))
        }
        Format::TrlTokens => {
            let t = &r["tokens"];
            if t["available"] != true {
                return Err(t["why"].as_str().unwrap_or("no flat token view").to_owned());
            }
            Ok(json!({
                "prompt_ids": t["prompt_ids"],
                "completion_ids": t["response_ids"],
                "logprobs": t["rollout_logprobs"],
                // TRL's env_mask: 1 where the model generated, 0 where the environment did.
                "env_mask": t["loss_mask"],
                "reward": reward,
            }))
        }
    }
}
