//! Agent-loop benchmark, side by side in one run:
//!
//! 1. per-step overhead of the loop itself (model time excluded): a scripted zero-latency
//!    backend proposes one calculator call per turn; we time whole turns and subtract the
//!    calculator's own run time;
//! 2. decode throughput through the agent's embedded backend (streaming, token-id
//!    recording, Verity's own sampler) vs raw mistral.rs on the same generated tiny
//!    model, greedy and sampled;
//! 3. Verity's token sampler alone on a Qwen-sized vocabulary (151,936 logits), next to
//!    one pass that only copies the logits out — the least any sampler does per token.
//!
//! Usage: agent-loop [STEPS] [ROUNDS]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use mistralrs::{RequestBuilder, TextMessageRole};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use verity_bench::fmt;
use verity_policies::{Policy, PolicyEngine};
use verity_runtime::{
    agent::{Agent, AgentConfig, AgentEvent},
    model::{
        tiny, EmbeddedModel, Finish, LoadOptions, Message, ModelBackend, ModelOutput, ModelRequest,
        ModelSource, Role, Sampling, ScriptedModel, ToolCall, ToolChoice, Usage,
    },
    AutoApprove, ToolGate,
};
use verity_tools::ToolRegistry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let steps: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    loop_overhead(steps).await?;
    throughput(rounds).await?;
    sampler_cost();
    Ok(())
}

/// One run of `steps` scripted turns: (wall, time inside the tool, turns).
async fn scripted_run(steps: usize) -> anyhow::Result<(Duration, Duration, usize)> {
    let reply = ModelOutput {
        tool_calls: vec![ToolCall {
            id: "c".into(),
            name: "calculator".into(),
            arguments: json!({"expression": "17/3*3"}),
        }],
        finish: Some(Finish::ToolCalls),
        usage: Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        },
        ..ModelOutput::default()
    };
    let model = Arc::new(ScriptedModel::new(vec![reply], true).without_recording());
    // A policy with a rule to match but no budget: the default preset's 600 calls/minute
    // would start denying calls partway through the long run.
    let policy = Policy::from_toml_str(
        "default = \"ask\"\n[[rule]]\nid = \"calc\"\ntool = \"calculator\"\ndecision = \"allow\"\n",
        "bench.toml",
    )?;
    let gate = ToolGate::new(
        ToolRegistry::with_builtins(),
        Arc::new(PolicyEngine::new(policy, None)),
    );
    let config = AgentConfig {
        max_turns: steps,
        max_tokens: u64::MAX,
        ..AgentConfig::default()
    };
    let agent = Agent::new(model, gate, Arc::new(AutoApprove), config);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let out = agent
        .run(
            vec![Message::new(Role::User, "go")],
            tx,
            CancellationToken::new(),
        )
        .await?;
    let wall = started.elapsed();
    let mut tool_time = Duration::ZERO;
    while let Ok(e) = rx.try_recv() {
        if let AgentEvent::ToolResult { result, .. } = e {
            tool_time += result.duration;
        }
    }
    Ok((wall, tool_time, out.turns))
}

async fn loop_overhead(steps: usize) -> anyhow::Result<()> {
    println!("## agent loop, zero-latency backend (one calculator call per step)");
    println!("| run shape | whole step | calculator itself | loop overhead (step − tool) |");
    println!("|---|---|---|---|");
    for (runs, len) in [(200, 10), (1, steps)] {
        let (mut wall, mut tool, mut turns) = (Duration::ZERO, Duration::ZERO, 0);
        for _ in 0..runs {
            let (w, t, n) = scripted_run(len).await?;
            wall += w;
            tool += t;
            turns += n;
        }
        let n = turns as u32;
        println!(
            "| {runs} run(s) × {len} steps | {} | {} | {} |",
            fmt(wall / n),
            fmt(tool / n),
            fmt(wall.saturating_sub(tool) / n)
        );
    }
    println!();
    Ok(())
}

async fn throughput(rounds: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    tiny::generate(dir.path(), &tiny::TinySpec::default())?;
    let ours = EmbeddedModel::load(
        ModelSource::Dir(dir.path().to_path_buf()),
        LoadOptions::default(),
    )
    .await?;
    let max_tokens = 256;
    println!("## decode throughput, tiny model, CPU, {rounds} rounds × ≤{max_tokens} tokens");
    println!("| path | median tokens/s | tokens total |");
    println!("|---|---|---|");
    for temperature in [None, Some(1.0)] {
        let (o, r) = decode_round(&ours, rounds, max_tokens, temperature).await?;
        let mode = match temperature {
            None => "greedy".to_owned(),
            Some(t) => format!("temperature {t}"),
        };
        println!(
            "| raw mistral.rs, {mode} (RequestBuilder, streaming) | {:.0} | {} |",
            r.0, r.1
        );
        println!(
            "| verity embedded backend, {mode} (own sampler, ids + logprobs) | {:.0} | {} |",
            o.0, o.1
        );
        println!("| ratio verity / raw, {mode} | {:.3} | |", o.0 / r.0);
    }
    println!();
    Ok(())
}

/// Median tokens/s and total tokens of (verity, raw mistral.rs), alternating which runs
/// first so neither always finds a warmer cache.
async fn decode_round(
    ours: &EmbeddedModel,
    rounds: usize,
    max_tokens: usize,
    temperature: Option<f64>,
) -> anyhow::Result<((f64, usize), (f64, usize))> {
    let prompt = "Write a long story about a lighthouse keeper.";
    let raw = ours.engine();
    let mut ours_tps = Vec::new();
    let mut raw_tps = Vec::new();
    let mut ours_tokens = 0;
    let mut raw_tokens = 0;
    // Round 0 warms both paths.
    for round in 0..=rounds {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let t = Instant::now();
            let n = if side == 0 {
                let request = ModelRequest {
                    messages: Arc::new(vec![Message::new(Role::User, prompt)]),
                    tools: Arc::new(Vec::new()),
                    tool_choice: ToolChoice::Auto,
                    strict: false,
                    calls_per_turn: 1,
                    sampling: Sampling {
                        max_tokens,
                        temperature,
                        greedy: temperature.is_none(),
                        seed: Some(round as u64),
                        ..Sampling::default()
                    },
                    grammar: None,
                    previous: None,
                };
                let out = ours
                    .generate(&request, Arc::new(|_: &str| {}), CancellationToken::new())
                    .await?;
                out.usage.completion_tokens as usize
            } else {
                let req = RequestBuilder::new().add_message(TextMessageRole::User, prompt);
                // The deterministic sampler resets every knob: limits go after it.
                let req = match temperature {
                    None => req.set_deterministic_sampler(),
                    Some(t) => req.set_sampler_temperature(t),
                }
                .set_sampler_max_len(max_tokens);
                let mut stream = raw.stream_chat_request(req).await?;
                let mut n = 0;
                while let Some(r) = stream.next().await {
                    if let mistralrs::Response::Chunk(c) = r {
                        if let Some(u) = c.usage {
                            n = u.completion_tokens;
                        }
                        if c.choices.iter().any(|ch| ch.finish_reason.is_some()) && n > 0 {
                            break;
                        }
                    }
                }
                n
            };
            let secs = t.elapsed().as_secs_f64();
            if round == 0 {
                continue;
            }
            if side == 0 {
                ours_tps.push(n as f64 / secs);
                ours_tokens += n;
            } else {
                raw_tps.push(n as f64 / secs);
                raw_tokens += n;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((
        (median(&mut ours_tps), ours_tokens),
        (median(&mut raw_tps), raw_tokens),
    ))
}

/// Per-token cost of Verity's sampler on 151,936 logits shaped like a language model's
/// (a few likely tokens, a long tail), next to copying the logits once.
fn sampler_cost() {
    use verity_runtime::model::sampler::{Rule, TokenSampler};
    const VOCAB: usize = 151_936;
    const STEPS: usize = 200;
    // Deterministic pseudo-logits: a Zipf-like head and a noisy tail.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let logits: Vec<f32> = (0..VOCAB)
        .map(|i| (8.0 - 2.5 * ((i % 9973) as f64 + 1.0).ln() + 2.0 * next()) as f32)
        .collect();
    let time = |f: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        for pos in 0..STEPS {
            f(pos);
        }
        t.elapsed() / STEPS as u32
    };
    let copy = time(&mut |_| {
        std::hint::black_box(logits.to_vec());
    });
    println!("## Verity's sampler alone, {VOCAB} logits, {STEPS} positions");
    println!("| rule | per token | × one copy of the logits |");
    println!("|---|---|---|");
    println!("| copy the logits once (floor) | {} | 1.0 |", fmt(copy));
    for (name, sampling) in [
        ("greedy", Sampling::default()),
        (
            "temperature 1",
            Sampling {
                greedy: false,
                temperature: Some(1.0),
                ..Sampling::default()
            },
        ),
        (
            "temperature 0.7, top-p 0.95",
            Sampling {
                greedy: false,
                temperature: Some(0.7),
                top_p: Some(0.95),
                ..Sampling::default()
            },
        ),
        (
            "temperature 0.7, top-k 50",
            Sampling {
                greedy: false,
                temperature: Some(0.7),
                top_k: Some(50),
                ..Sampling::default()
            },
        ),
    ] {
        let mut s = TokenSampler::new(Rule::from_sampling(&sampling), 7);
        let per = time(&mut |pos| {
            std::hint::black_box(s.sample(&logits, pos).ok());
        });
        println!(
            "| {name} | {} | {:.1} |",
            fmt(per),
            per.as_secs_f64() / copy.as_secs_f64()
        );
    }
    println!();
}
