//! Verity's token sampler at a real vocabulary (issue 15 §8): microseconds per token for
//! argmax and for a temperature / top-k / top-p draw, over logits the size of Qwen's
//! embedding table (151,936), to set beside the engine's per-token decode time. Each call
//! gets fresh logits (a new position), as in decoding; the logits are made up front so only
//! the sampler is timed.
//!
//! Usage: sampler [VOCAB] [TOKENS]      (defaults: 151936, 2000)

use std::time::Instant;

use verity_runtime::model::{
    sampler::{Rule, TokenSampler},
    Sampling,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let vocab: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(151_936);
    let tokens: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    // Two shapes of logits, a few distinct vectors of each, cycled. Flat: what random
    // weights give (uniform in ±6, so nearly every token is within a factor 1e6 of the
    // best and the draw touches all of them). Peaked: a trained model's shape — a N(0, 2)
    // bulk and 20 tokens 15 to 20 above it.
    let flat: Vec<Vec<f32>> = (0..8)
        .map(|_| (0..vocab).map(|_| (unit() * 12.0 - 6.0) as f32).collect())
        .collect();
    let peaked: Vec<Vec<f32>> = (0..8)
        .map(|_| {
            let mut v: Vec<f32> = (0..vocab)
                .map(|_| {
                    let (a, b) = (unit(), unit());
                    (2.0 * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
                })
                .collect();
            for _ in 0..20 {
                let i = (unit() * vocab as f64) as usize % vocab;
                v[i] = (15.0 + unit() * 5.0) as f32;
            }
            v
        })
        .collect();
    println!("vocabulary {vocab}, {tokens} tokens per rule; µs per token");
    println!("{:28} {:>10} {:>10}", "rule", "flat", "peaked");
    for (name, sampling) in [
        (
            "argmax",
            Sampling {
                greedy: true,
                ..Sampling::default()
            },
        ),
        (
            "T=1",
            Sampling {
                greedy: false,
                temperature: Some(1.0),
                ..Sampling::default()
            },
        ),
        (
            "T=0.7 top-k 50 top-p 0.95",
            Sampling {
                greedy: false,
                temperature: Some(0.7),
                top_k: Some(50),
                top_p: Some(0.95),
                ..Sampling::default()
            },
        ),
        (
            "T=1 top-p 0.9",
            Sampling {
                greedy: false,
                temperature: Some(1.0),
                top_p: Some(0.9),
                ..Sampling::default()
            },
        ),
    ] {
        let mut per_token = Vec::new();
        for logits in [&flat, &peaked] {
            let mut sampler = TokenSampler::new(Rule::from_sampling(&sampling), 7);
            let started = Instant::now();
            for position in 0..tokens {
                if let Err(e) = sampler.sample(&logits[position % logits.len()], position) {
                    eprintln!("{name}: {e}");
                    std::process::exit(1);
                }
            }
            per_token.push(started.elapsed().as_secs_f64() * 1e6 / tokens as f64);
        }
        println!("{name:28} {:10.1} {:10.1}", per_token[0], per_token[1]);
    }
}
