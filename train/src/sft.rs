//! Supervised fine-tuning: next-token cross-entropy on the trained positions (the tokens
//! the model generated in the demonstrations), averaged over those tokens.

use std::time::Instant;

use candle_core::Tensor;

use crate::{
    batch::{Batch, Example},
    model::{token_logprobs, Qwen3},
    optim::{AdamW, AdamWConfig},
    schedule::Schedule,
    Result, SplitMix, TrainError,
};

/// SFT settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SftSettings {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Learning rate schedule.
    pub schedule: Schedule,
    /// AdamW.
    pub adamw: AdamWConfig,
    /// Shuffling seed.
    pub seed: u64,
    /// Train on short windows first (see [`ShortContext`]); `None`: whole rows throughout.
    pub short_context: Option<ShortContext>,
}

/// A short-context warm-up: the first `steps` steps train every assistant turn of every
/// row with only the `tokens` tokens before its end as context, a window instead of the
/// whole conversation.
///
/// Why: a model trained from random weights copies numbers into its calls (and results
/// into its answers) only once an induction circuit has formed, and until then the loss
/// sits on a plateau where the digits are guessed from their frequencies. The signal that
/// forms the circuit is spread over every position attention looks at, so it is weaker
/// the longer the row. Measured on the tiny model (BENCHMARKS.md, `verity train`): whole
/// rows of ~300 tokens still plateaued after 1,200 steps; windows of 160 tokens left the
/// plateau after ~1,000, and 400 steps of whole rows after that solved 25 of 40
/// new-number problems. Sequence-length warm-up (short sequences first) is the same idea
/// in pre-training.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShortContext {
    /// Steps trained on windows (from step 0).
    pub steps: usize,
    /// Window length in tokens, the turn included.
    pub tokens: usize,
}

/// Every trained turn of `data` as its own example: the turn (a maximal run of trained
/// tokens) and at most `tokens` tokens before its end, at least one of them untrained
/// context. A turn longer than the window keeps one token of context.
pub fn windows(data: &[Example], tokens: usize) -> Vec<Example> {
    let mut out = Vec::new();
    for e in data {
        let mut i = 0;
        while i < e.mask.len() {
            if e.mask[i] == 0 {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < e.mask.len() && e.mask[j] != 0 {
                j += 1;
            }
            // `i ≥ 1` here: rows never train their first token (`read_sft` checks).
            let start = j.saturating_sub(tokens).min(i.saturating_sub(1));
            // Earlier turns inside the window are context here: each turn is trained once.
            let mut mask = vec![0; i - start];
            mask.resize(j - start, 1);
            out.push(Example {
                ids: e.ids[start..j].to_vec(),
                mask,
                old_logprobs: None,
                advantage: 0.0,
                token_advantages: None,
                off_policy: false,
            });
            i = j;
        }
    }
    out
}

/// What one step did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepStats {
    /// 1-based step.
    pub step: usize,
    /// Mean loss per trained token.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Trained tokens.
    pub tokens: usize,
    /// Positions computed (prefix once, padded rows).
    pub computed: usize,
    /// Wall time of the step.
    pub secs: f64,
}

/// Mean negative log-likelihood of the batch's trained tokens (a scalar with gradients).
pub fn sft_loss(model: &Qwen3, batch: &Batch) -> Result<Tensor> {
    let logits = model.forward(&batch.prefix, &batch.rows)?;
    let lp = token_logprobs(&logits, &batch.targets, 1.0)?;
    let n = batch.trained_tokens.max(1) as f64;
    Ok(((lp * &batch.weights)?.sum_all()? / -n)?)
}

/// The examples of step `t` (0-based). Epoch `e = t·b / n` is a permutation drawn from
/// `seed + e`, cut into windows of [`BUCKET`] batches, each window sorted by length and
/// cut into batches (rows of like length pad little), the batches then shuffled. Step `t`
/// is the same batch whether training started at 0 or resumed at `t`.
pub fn batch_of(lengths: &[usize], batch: usize, seed: u64, t: usize) -> Vec<usize> {
    let n = lengths.len();
    let batch = batch.min(n).max(1);
    let per_epoch = (n / batch).max(1);
    let (epoch, k) = (t / per_epoch, t % per_epoch);
    let mut rng = SplitMix(seed.wrapping_add(epoch as u64));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order.truncate(per_epoch * batch);
    for window in order.chunks_mut(BUCKET * batch) {
        window.sort_by_key(|&i| lengths[i]);
    }
    let mut batches: Vec<&[usize]> = order.chunks(batch).collect();
    rng.shuffle(&mut batches);
    batches[k].to_vec()
}

/// Batches per length-sorting window.
pub const BUCKET: usize = 8;

/// Trains from `opt.step` up to `settings.steps`, calling `after` after every step (for
/// progress and checkpoints).
pub fn train(
    model: &Qwen3,
    opt: &mut AdamW,
    data: &[Example],
    settings: &SftSettings,
    mut after: impl FnMut(&StepStats, &Qwen3, &AdamW) -> Result<()>,
) -> Result<()> {
    if data.is_empty() {
        return Err(TrainError::Invalid("no training examples".into()));
    }
    let lengths = |d: &[Example]| d.iter().map(|e| e.ids.len()).collect::<Vec<usize>>();
    let whole_lengths = lengths(data);
    // (steps, windows, their lengths), built once.
    let short = settings.short_context.map(|sc| {
        let w = windows(data, sc.tokens);
        let l = lengths(&w);
        (sc.steps, w, l)
    });
    while opt.step < settings.steps {
        let started = Instant::now();
        let t = opt.step;
        // A function of the step alone, so a resumed run draws the same batches.
        let (rows, lens) = match &short {
            Some((steps, w, l)) if t < *steps => (w.as_slice(), l.as_slice()),
            _ => (data, whole_lengths.as_slice()),
        };
        let picked: Vec<&Example> = batch_of(lens, settings.batch_size, settings.seed, t)
            .into_iter()
            .map(|i| &rows[i])
            .collect();
        let batch = Batch::new(&picked)?;
        let loss = sft_loss(model, &batch)?;
        let grads = loss.backward()?;
        let lr = settings.schedule.at(t);
        let grad_norm = opt.step(&grads, lr)?;
        let stats = StepStats {
            step: opt.step,
            loss: f64::from(loss.to_scalar::<f32>()?),
            lr,
            grad_norm,
            tokens: batch.trained_tokens,
            computed: batch.computed_tokens,
            secs: started.elapsed().as_secs_f64(),
        };
        after(&stats, model, opt)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cut_each_turn_with_the_context_before_it() {
        // Context 0..3, a turn 3..5, context 5..8, a turn 8..10.
        let e = Example::new((0..10).collect(), vec![0, 0, 0, 1, 1, 0, 0, 0, 1, 1]).unwrap();
        let w = windows(std::slice::from_ref(&e), 4);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].ids, vec![1, 2, 3, 4]);
        assert_eq!(w[0].mask, vec![0, 0, 1, 1]);
        assert_eq!(w[1].ids, vec![6, 7, 8, 9]);
        assert_eq!(w[1].mask, vec![0, 0, 1, 1]);
        // A window shorter than a turn keeps the turn and one token of context.
        let w = windows(std::slice::from_ref(&e), 1);
        assert_eq!(w[0].ids, vec![2, 3, 4]);
        assert_eq!(w[0].mask, vec![0, 1, 1]);
        // A window longer than the row keeps the row's start; an earlier turn inside a
        // window is context, not trained twice.
        let w = windows(&[e], 100);
        assert_eq!(w[0].ids, vec![0, 1, 2, 3, 4]);
        assert_eq!(w[1].ids, (0..10).collect::<Vec<u32>>());
        assert_eq!(w[1].mask, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn batches_are_a_function_of_seed_and_step() {
        let lengths: Vec<usize> = (0..100).map(|i| (i * 37) % 101).collect();
        let a: Vec<Vec<usize>> = (0..20).map(|t| batch_of(&lengths, 4, 5, t)).collect();
        let b: Vec<Vec<usize>> = (0..20).map(|t| batch_of(&lengths, 4, 5, t)).collect();
        assert_eq!(a, b);
        let mut first_epoch: Vec<usize> = a[..25.min(a.len())].concat();
        first_epoch.sort();
        first_epoch.dedup();
        assert_eq!(first_epoch.len(), 80, "an epoch draws without repeats");
        assert_ne!(batch_of(&lengths, 4, 6, 0), a[0]);
        // Rows of a batch come from one sorted window: their lengths are close.
        let spread = |b: &[usize]| {
            let l: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
            l.iter().max().unwrap() - l.iter().min().unwrap()
        };
        let mean: f64 = a.iter().map(|b| spread(b) as f64).sum::<f64>() / a.len() as f64;
        assert!(mean < 30.0, "mean spread {mean}");
    }
}
