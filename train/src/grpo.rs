//! GRPO and Dr. GRPO: the PPO-clipped policy-gradient objective with group-relative
//! advantages, the importance ratio taken against the logprobs recorded at sampling time
//! (Verity's `logprobs`: full-vocabulary `log_softmax(z / T)`, what the trainer
//! recomputes), optionally a k3 KL penalty to a frozen reference.
//!
//! Loss per token: `−min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·KL`, ρ = exp(logπ − logπ_old).
//! Normalisation: `token` (sum over all trained tokens ÷ their count: DAPO, verl's
//! `token-mean`), `sequence` (each sequence's mean, then the mean over sequences: the
//! original GRPO) or `constant` (sum ÷ (rows × a fixed length): Dr. GRPO, whose advantages
//! are also not divided by the group's std).

use candle_core::{Tensor, D};

use crate::{
    batch::Batch,
    model::{token_logprobs, Qwen3},
    Result, TrainError,
};

/// How per-token losses are averaged.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalise {
    /// Over all trained tokens of the batch.
    Token,
    /// Per sequence, then over sequences.
    Sequence,
    /// Sum ÷ (rows × this many tokens) (Dr. GRPO).
    Constant(usize),
}

/// GRPO settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GrpoSettings {
    /// ε below 1 of the ratio clip.
    pub clip_low: f64,
    /// ε above 1 (DAPO's clip-higher uses 0.28).
    pub clip_high: f64,
    /// KL coefficient β (0: no reference model).
    pub kl_beta: f64,
    /// Loss normalisation.
    pub normalise: Normalise,
    /// The sampling temperature the rollout used (logprobs are of logits / T).
    pub temperature: f64,
}

/// What a GRPO loss saw (means over trained tokens).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GrpoStats {
    /// Mean importance ratio.
    pub ratio: f64,
    /// Share of tokens whose ratio was clipped.
    pub clipped: f64,
    /// Mean k3 KL to the reference (0 without one).
    pub kl: f64,
}

/// The loss of `batch` (which must carry old logprobs and advantages).
pub fn grpo_loss(
    model: &Qwen3,
    reference: Option<&Qwen3>,
    batch: &Batch,
    s: &GrpoSettings,
) -> Result<(Tensor, GrpoStats)> {
    let old = batch.old_logprobs.as_ref().ok_or_else(|| {
        TrainError::Invalid("GRPO needs the recorded logprobs of every trained token".into())
    })?;
    let w = &batch.weights;
    let logits = model.forward(&batch.prefix, &batch.rows)?;
    let lp = token_logprobs(&logits, &batch.targets, s.temperature)?;
    let ratio = (&lp - old)?.exp()?;
    let adv = batch.advantages.unsqueeze(D::Minus1)?;
    let surr1 = ratio.broadcast_mul(&adv)?;
    let clipped_ratio = ratio.clamp(1.0 - s.clip_low, 1.0 + s.clip_high)?;
    let surr2 = clipped_ratio.broadcast_mul(&adv)?;
    let mut per_token = surr1.minimum(&surr2)?.neg()?;
    let mut kl_mean = 0.0;
    if let (Some(r), true) = (reference, s.kl_beta > 0.0) {
        let ref_logits = r.forward(&batch.prefix, &batch.rows)?.detach();
        let ref_lp = token_logprobs(&ref_logits, &batch.targets, s.temperature)?;
        // k3 = exp(ref − lp) − (ref − lp) − 1 ≥ 0, unbiased for KL(π‖π_ref).
        let diff = (ref_lp - &lp)?;
        let k3 = ((diff.exp()? - &diff)? - 1.0)?;
        kl_mean = mean_over(&k3.detach(), w)?;
        per_token = (per_token + (k3 * s.kl_beta)?)?;
    }
    let weighted = (per_token * w)?;
    let (rows, width) = w.dims2()?;
    let loss = match s.normalise {
        Normalise::Token => {
            (weighted.sum_all()? / f64::from(w.sum_all()?.to_scalar::<f32>()?).max(1.0))?
        }
        Normalise::Sequence => {
            let per_row = weighted.sum(D::Minus1)?;
            let counts = w.sum(D::Minus1)?.clamp(1.0, f64::INFINITY)?;
            (per_row / counts)?.mean_all()?
        }
        Normalise::Constant(len) => (weighted.sum_all()? / (rows * len.max(width).max(1)) as f64)?,
    };
    let ratio_d = ratio.detach();
    let outside = ratio_d
        .lt(1.0 - s.clip_low)?
        .to_dtype(candle_core::DType::F32)?
        .add(
            &ratio_d
                .gt(1.0 + s.clip_high)?
                .to_dtype(candle_core::DType::F32)?,
        )?;
    Ok((
        loss,
        GrpoStats {
            ratio: mean_over(&ratio_d, w)?,
            clipped: mean_over(&outside, w)?,
            kl: kl_mean,
        },
    ))
}

fn mean_over(x: &Tensor, w: &Tensor) -> Result<f64> {
    let n = f64::from(w.sum_all()?.to_scalar::<f32>()?).max(1.0);
    Ok(f64::from((x * w)?.sum_all()?.to_scalar::<f32>()?) / n)
}
