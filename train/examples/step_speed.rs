//! Training-step benchmark: one SFT step (forward + backward) on real rows, with the shared
//! prompt prefix computed once versus every row computed in full, side by side.
//!
//!     cargo run --release -p verity-train --example step_speed -- MODEL_DIR SFT.jsonl [BATCH] [STEPS]

use std::{path::Path, time::Instant};

use verity_train::{
    batch::{Batch, Example},
    data::read_sft,
    model::Qwen3,
    sft::sft_loss,
    Result, TrainError,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        || TrainError::Invalid("usage: step_speed MODEL_DIR SFT.jsonl [BATCH] [STEPS]".into());
    let model = Qwen3::load(Path::new(args.get(1).ok_or_else(usage)?))?;
    let data = read_sft(Path::new(args.get(2).ok_or_else(usage)?))?;
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let steps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(5);
    let mut results = Vec::new();
    for (name, shared) in [("shared prefix", true), ("full rows", false)] {
        let (mut secs, mut trained, mut computed) = (0f64, 0usize, 0usize);
        for s in 0..=steps {
            let picked: Vec<&Example> = data.iter().cycle().skip(s * batch).take(batch).collect();
            let b = if shared {
                Batch::new(&picked)?
            } else {
                Batch::unshared(&picked)?
            };
            let started = Instant::now();
            let grads = sft_loss(&model, &b)?.backward()?;
            drop(grads);
            // The first step warms allocations up and is not counted.
            if s > 0 {
                secs += started.elapsed().as_secs_f64();
                trained += b.trained_tokens;
                computed += b.computed_tokens;
            }
        }
        println!(
            "{name:>13}: {:.3} s/step, {:.0} trained tokens/s, {:.0} computed tokens/s",
            secs / steps as f64,
            trained as f64 / secs,
            computed as f64 / secs
        );
        results.push(secs);
    }
    println!("shared prefix is {:.2}x faster", results[1] / results[0]);
    Ok(())
}
