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
//!
//! Guidance ([`GuideLoss`]): a group whose samples all failed has no signal; a teacher's
//! demonstration of the task can join it as an off-policy member (LUFFY, Yan et al. 2025).
//! Its old logprobs are not the sampling policy's, so they are recomputed by the trainer
//! ([`recompute_old_logprobs`]) and, by default, its tokens are trained with LUFFY's
//! shaped, unclipped objective instead of the ratio.

use candle_core::{Tensor, D};

use crate::{
    batch::{Batch, Example},
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

impl Normalise {
    /// The weight of a micro-batch's loss in the loss of its whole step, so that the
    /// micro-batches' gradients sum to the step's: its share of the step's trained tokens
    /// (token) or of its rows (sequence, constant).
    pub fn share(self, micro: &Batch, step_rows: usize, step_tokens: usize) -> f64 {
        match self {
            Normalise::Token => micro.trained_tokens as f64 / step_tokens.max(1) as f64,
            Normalise::Sequence | Normalise::Constant(_) => {
                micro.rows.len() as f64 / step_rows.max(1) as f64
            }
        }
    }
}

/// How the tokens of off-policy rows ([`Example::off_policy`]) are trained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuideLoss {
    /// Like sampled tokens: the clipped ratio, against old logprobs the trainer recomputed
    /// before the iteration's first step (so the ratio starts at 1 and the clip bounds how
    /// far one iteration moves them: a token at p = 0.01 may only reach ~0.012).
    Clip,
    /// LUFFY's policy shaping: `−A · π/(π + γ)`, no ratio and no clip. Its gradient,
    /// `A · γπ/(π + γ)² · ∇log π`, peaks at π = γ: the teacher's tokens the policy finds
    /// unlikely but not absurd are pushed hardest, and the ones it already writes hardly
    /// at all.
    Shaped {
        /// γ (LUFFY: 0.1).
        gamma: f64,
    },
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
    /// How off-policy rows are trained (ignored when a batch has none).
    pub guide: GuideLoss,
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
    /// Off-policy (guide) tokens in the batch; `ratio` and `clipped` are over the others
    /// when these are shaped.
    pub guide_tokens: usize,
    /// The policy's mean probability of the guide tokens (0 without any).
    pub guide_prob: f64,
}

/// Sets the `old_logprobs` of every off-policy example to the policy's own (`model`, at
/// `temperature`), position by position (0 where not trained): the recorded ones are the
/// other policy's, or — for a teacher forced through a grammar — 0 wherever the grammar
/// left one token, and a ratio against them would be meaningless.
pub fn recompute_old_logprobs(
    model: &Qwen3,
    examples: &mut [Example],
    temperature: f64,
) -> Result<()> {
    for e in examples.iter_mut().filter(|e| e.off_policy) {
        let batch = Batch::new(&[&*e])?;
        let logits = model.forward(&batch.prefix, &batch.rows)?.detach();
        let lp = token_logprobs(&logits, &batch.targets, temperature)?
            .squeeze(0)?
            .to_vec1::<f32>()?;
        // Target j of the row predicts ids[prefix + 1 + j].
        let start = batch.prefix.len() + 1;
        let mut old = vec![0f32; e.ids.len()];
        for (j, l) in lp.iter().enumerate() {
            if e.mask.get(start + j).copied().unwrap_or(0) != 0 {
                old[start + j] = *l;
            }
        }
        e.old_logprobs = Some(old);
    }
    Ok(())
}

/// Scales every negative advantage by `weight` (1: GRPO as published; 0: only what did
/// better than its group is learned from): an example's, or each negative per-token one.
pub fn weigh_negatives(examples: &mut [Example], weight: f32) {
    for e in examples.iter_mut() {
        if e.advantage < 0.0 {
            e.advantage *= weight;
        }
        for a in e.token_advantages.iter_mut().flatten() {
            if *a < 0.0 {
                *a *= weight;
            }
        }
    }
}

/// Credit where a group's runs part ways, instead of every token of a run getting the
/// run's advantage.
///
/// The runs of a group share their prompt and often much more: under a trained layout
/// they write the same tokens until one samples a different digit. Every prefix the group
/// shares is a state several runs passed through, and the mean advantage of those runs is
/// a Monte-Carlo estimate of that state's value — with no extra rollouts. A trained token
/// at position `t` then gets `V(ids[..=t]) − V(ids[..t])`: 0 while the runs still agree
/// (a choice all of them made explains none of their differences), the difference of the
/// two branches' means where they part, and 0 again once the run is alone on its branch
/// (its later tokens are not compared with anything). Over a run the credits sum to its
/// advantage minus the group's mean (0), except where runs part at a token they did not
/// write (a tool result that differs after identical calls): that credit goes to nobody.
///
/// `group` must be the runs of one group (one prompt). Each gets `token_advantages`.
pub fn branch_credit(group: &mut [Example]) {
    let n = group.len();
    // Shared prefix length of every pair (a run with itself: its whole length).
    let mut lcp = vec![0usize; n * n];
    for i in 0..n {
        lcp[i * n + i] = group[i].ids.len();
        for j in i + 1..n {
            let l = group[i]
                .ids
                .iter()
                .zip(&group[j].ids)
                .take_while(|(a, b)| a == b)
                .count();
            lcp[i * n + j] = l;
            lcp[j * n + i] = l;
        }
    }
    let adv: Vec<f64> = group.iter().map(|e| f64::from(e.advantage)).collect();
    // The mean advantage of the runs that share the first `len` ids of run `i`.
    let value = |i: usize, len: usize| -> f64 {
        let (sum, count) = (0..n)
            .filter(|&j| lcp[i * n + j] >= len)
            .fold((0.0, 0usize), |(s, c), j| (s + adv[j], c + 1));
        sum / count.max(1) as f64
    };
    let credits: Vec<Vec<f32>> = group
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (0..e.ids.len())
                .map(|t| {
                    if e.mask[t] == 0 {
                        0.0
                    } else {
                        (value(i, t + 1) - value(i, t)) as f32
                    }
                })
                .collect()
        })
        .collect();
    for (e, credit) in group.iter_mut().zip(credits) {
        e.token_advantages = Some(credit);
    }
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
    let adv = &batch.advantages;
    let surr1 = (&ratio * adv)?;
    let clipped_ratio = ratio.clamp(1.0 - s.clip_low, 1.0 + s.clip_high)?;
    let surr2 = (&clipped_ratio * adv)?;
    let mut per_token = surr1.minimum(&surr2)?.neg()?;
    // The tokens the ratio statistics are over: all trained ones, or the on-policy ones
    // when the guide's are shaped (they have no ratio).
    let mut ratio_w = w.clone();
    let (mut guide_tokens, mut guide_prob) = (0usize, 0.0);
    if let Some(off) = &batch.off_policy {
        guide_tokens = off.sum_all()?.to_scalar::<f32>()? as usize;
        let p = lp.exp()?;
        guide_prob = mean_over(&p.detach(), off)?;
        if let GuideLoss::Shaped { gamma } = s.guide {
            let shaped = (&p / (&p + gamma)?)?;
            let guide_loss = (shaped * adv)?.neg()?;
            let on = off.affine(-1.0, 1.0)?;
            per_token = ((per_token * &on)? + (guide_loss * off)?)?;
            ratio_w = (w * &on)?;
        }
    }
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
    let rows = w.dims2()?.0;
    let loss = match s.normalise {
        Normalise::Token => {
            (weighted.sum_all()? / f64::from(w.sum_all()?.to_scalar::<f32>()?).max(1.0))?
        }
        Normalise::Sequence => {
            let per_row = weighted.sum(D::Minus1)?;
            let counts = w.sum(D::Minus1)?.clamp(1.0, f64::INFINITY)?;
            (per_row / counts)?.mean_all()?
        }
        Normalise::Constant(len) => (weighted.sum_all()? / (rows * len.max(1)) as f64)?,
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
            ratio: mean_over(&ratio_d, &ratio_w)?,
            clipped: mean_over(&outside, &ratio_w)?,
            kl: kl_mean,
            guide_tokens,
            guide_prob,
        },
    ))
}

fn mean_over(x: &Tensor, w: &Tensor) -> Result<f64> {
    let n = f64::from(w.sum_all()?.to_scalar::<f32>()?).max(1.0);
    Ok(f64::from((x * w)?.sum_all()?.to_scalar::<f32>()?) / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model::Qwen3, optim::AdamW};

    fn example(ids: Vec<u32>, trained_from: usize, advantage: f32, seed: u32) -> Example {
        let mask = (0..ids.len())
            .map(|i| u8::from(i >= trained_from))
            .collect();
        let lp = (0..ids.len())
            .map(|i| -0.5 - ((i as u32 * 7 + seed) % 5) as f32 * 0.3)
            .collect();
        Example {
            old_logprobs: Some(lp),
            advantage,
            ..Example::new(ids, mask).expect("ids and mask agree")
        }
    }

    /// Four runs: A and B pass and part at the last token, C fails after sharing two
    /// tokens with them, D fails at once.
    #[test]
    fn branch_credit_goes_where_runs_part() {
        let run = |ids: Vec<u32>, advantage: f32| Example {
            advantage,
            ..Example::new(ids, vec![0, 0, 1, 1, 1]).expect("ids and mask agree")
        };
        let mut group = vec![
            run(vec![1, 2, 3, 4, 5], 1.0),
            run(vec![1, 2, 3, 4, 6], 1.0),
            run(vec![1, 2, 3, 7, 8], -1.0),
            run(vec![1, 2, 9, 9, 9], -1.0),
        ];
        branch_credit(&mut group);
        let credit: Vec<Vec<f32>> = group
            .iter()
            .map(|e| e.token_advantages.clone().expect("credited"))
            .collect();
        let third = 1.0 / 3.0;
        let want = [
            vec![0.0, 0.0, third, 2.0 * third, 0.0],
            vec![0.0, 0.0, third, 2.0 * third, 0.0],
            vec![0.0, 0.0, third, -4.0 * third, 0.0],
            vec![0.0, 0.0, -1.0, 0.0, 0.0],
        ];
        for (got, want) in credit.iter().zip(&want) {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?} != {want:?}");
            }
        }
        // Parted at written tokens only, so each run's credits sum to its advantage.
        for (e, c) in group.iter().zip(&credit) {
            assert!((c.iter().sum::<f32>() - e.advantage).abs() < 1e-6);
        }
        // Runs that never part get nothing, whatever they scored.
        let mut same = vec![
            run(vec![1, 2, 3, 4, 5], 1.0),
            run(vec![1, 2, 3, 4, 5], -1.0),
        ];
        branch_credit(&mut same);
        assert!(same
            .iter()
            .all(|e| e.token_advantages.iter().flatten().all(|&a| a == 0.0)));
        // The batch carries each position's own credit.
        let refs: Vec<&Example> = group.iter().collect();
        let batch = Batch::new(&refs).expect("batch");
        let rows = batch.advantages.to_vec2::<f32>().expect("advantages");
        assert!((rows[2][1] - (-4.0 * third)).abs() < 1e-6, "{rows:?}");
    }

    #[test]
    fn negatives_are_weighed_and_positives_kept() {
        let mut rows = vec![
            example(vec![1, 2, 3], 1, 1.5, 0),
            example(vec![1, 2, 3], 1, -0.5, 0),
            example(vec![1, 2, 3], 1, 0.0, 0),
        ];
        weigh_negatives(&mut rows, 0.25);
        let adv: Vec<f32> = rows.iter().map(|r| r.advantage).collect();
        assert_eq!(adv, vec![1.5, -0.125, 0.0]);
    }

    fn settings(guide: GuideLoss) -> GrpoSettings {
        GrpoSettings {
            clip_low: 0.2,
            clip_high: 0.2,
            kl_beta: 0.0,
            normalise: Normalise::Token,
            temperature: 1.0,
            guide,
        }
    }

    /// A teacher's row with recomputed old logprobs has ratio 1 under the clipped loss,
    /// whatever it recorded; under the shaped loss its tokens cost exactly
    /// `−A·p/(p + γ)`, the sampled row's keep the clipped ratio, and one step raises the
    /// policy's probability of the teacher's tokens.
    #[test]
    fn guide_rows_get_their_own_old_logprobs_and_the_shaped_loss() {
        let model = Qwen3::random_for_tests(11).expect("model");
        let sampled = example(vec![1, 2, 3, 4, 5, 6], 3, -0.4, 0);
        let mut rows = vec![
            sampled.clone(),
            Example {
                off_policy: true,
                // What a grammar-forced teacher records: 0 for every forced token.
                old_logprobs: Some(vec![0.0; 7]),
                ..example(vec![1, 2, 3, 9, 8, 7, 6], 3, 1.2, 1)
            },
        ];
        recompute_old_logprobs(&model, &mut rows, 1.0).expect("recompute");
        assert_eq!(rows[0], sampled, "an on-policy row was touched");
        let old = rows[1].old_logprobs.clone().expect("old logprobs");
        assert!(old[..3].iter().all(|&l| l == 0.0), "{old:?}");
        assert!(old[3..].iter().all(|&l| l < 0.0), "{old:?}");
        let teacher = Batch::new(&[&rows[1]]).expect("batch");
        let (_, stats) =
            grpo_loss(&model, None, &teacher, &settings(GuideLoss::Clip)).expect("loss");
        assert!((stats.ratio - 1.0).abs() < 1e-5, "ratio {}", stats.ratio);
        assert_eq!(stats.guide_tokens, 4);

        let gamma = 0.1;
        let shaped = settings(GuideLoss::Shaped { gamma });
        let refs: Vec<&Example> = rows.iter().collect();
        let batch = Batch::new(&refs).expect("batch");
        let (loss, stats) = grpo_loss(&model, None, &batch, &shaped).expect("loss");
        // By hand: the sampled row's clipped surrogate plus the teacher's shaped term,
        // over all 7 trained tokens.
        let (only_sampled, _) = grpo_loss(
            &model,
            None,
            &Batch::new(&[&rows[0]]).expect("batch"),
            &settings(GuideLoss::Clip),
        )
        .expect("loss");
        let sampled_sum = f64::from(only_sampled.to_scalar::<f32>().expect("scalar")) * 3.0;
        let guide_sum: f64 = old[3..]
            .iter()
            .map(|&l| {
                let p = f64::from(l).exp();
                -1.2 * p / (p + gamma)
            })
            .sum();
        let want = (sampled_sum + guide_sum) / 7.0;
        let got = f64::from(loss.to_scalar::<f32>().expect("scalar"));
        assert!((got - want).abs() < 1e-5, "loss {got}, by hand {want}");
        let p_before = stats.guide_prob;
        let mean_p = old[3..].iter().map(|&l| f64::from(l).exp()).sum::<f64>() / 4.0;
        assert!((p_before - mean_p).abs() < 1e-5, "{p_before} vs {mean_p}");

        let mut opt = AdamW::new(model.params(), Default::default()).expect("optimizer");
        let grads = loss.backward().expect("backward");
        let mut sum = opt.grad_sum();
        opt.accumulate(&mut sum, &grads).expect("accumulate");
        opt.step_sum(sum, 1e-2).expect("step");
        let (_, after) = grpo_loss(&model, None, &batch, &shaped).expect("loss");
        assert!(
            after.guide_prob > p_before,
            "the teacher's tokens got less likely: {p_before} -> {}",
            after.guide_prob
        );
    }

    /// Four rows of different lengths and advantages: two micro-batches of two must give
    /// the one-batch gradient, under every normalisation.
    #[test]
    fn micro_batches_sum_to_the_whole_step() {
        let model = Qwen3::random_for_tests(7).expect("model");
        let rows = [
            example(vec![1, 2, 3, 4, 5, 6, 7], 3, 1.5, 0),
            example(vec![1, 2, 3, 9, 8], 3, -0.5, 1),
            example(vec![1, 2, 3, 4, 4, 4, 4, 4, 4, 4], 3, -1.0, 2),
            example(vec![1, 2, 3, 10, 11, 12], 3, 0.75, 3),
        ];
        let all: Vec<&Example> = rows.iter().collect();
        for normalise in [
            Normalise::Token,
            Normalise::Sequence,
            Normalise::Constant(6),
        ] {
            let s = GrpoSettings {
                clip_low: 0.2,
                clip_high: 0.2,
                kl_beta: 0.0,
                normalise,
                temperature: 1.0,
                guide: GuideLoss::Clip,
            };
            let opt = AdamW::new(model.params(), Default::default()).expect("optimizer");
            let whole = Batch::new(&all).expect("batch");
            let (loss, _) = grpo_loss(&model, None, &whole, &s).expect("loss");
            let mut one = opt.grad_sum();
            opt.accumulate(&mut one, &loss.backward().expect("backward"))
                .expect("accumulate");
            let mut two = opt.grad_sum();
            // The rows split by length, across the examples' order (as `train grpo` does).
            for half in crate::batch::micro_batches(&all, 2) {
                let micro = Batch::new(&half).expect("batch");
                let (loss, _) = grpo_loss(&model, None, &micro, &s).expect("loss");
                let share = normalise.share(&micro, all.len(), whole.trained_tokens);
                let grads = (loss * share).expect("scale").backward().expect("backward");
                opt.accumulate(&mut two, &grads).expect("accumulate");
            }
            let (a, b) = (one.flat().expect("flat"), two.flat().expect("flat"));
            let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
            assert!(scale > 0.0, "{normalise:?}: no gradient at all");
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale,
                "{normalise:?}: {worst} apart (scale {scale})"
            );
        }
    }
}
