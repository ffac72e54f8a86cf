//! Examples → tensors: the shared prefix split off, rows shifted into (input, target)
//! pairs, and per-position weights.

use candle_core::{Device, Tensor};

use crate::{Result, TrainError};

/// One training sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Prompt and response ids.
    pub ids: Vec<u32>,
    /// 1 where `ids[i]` is trained (the model generated it), else 0.
    pub mask: Vec<u8>,
    /// GRPO: the logprob each trained token was sampled with (aligned with `ids`; 0 where
    /// not trained).
    pub old_logprobs: Option<Vec<f32>>,
    /// GRPO: the sequence's advantage.
    pub advantage: f32,
    /// GRPO: an advantage per position (aligned with `ids`), which replaces `advantage`
    /// where set ([`crate::grpo::branch_credit`]).
    pub token_advantages: Option<Vec<f32>>,
    /// GRPO: written by another policy (a teacher's demonstration added to a group whose
    /// own samples all failed), so its ratio to the sampling policy means nothing
    /// ([`crate::grpo::GuideLoss`] says how it is trained).
    pub off_policy: bool,
}

impl Example {
    /// An SFT example; `mask` must be as long as `ids`.
    pub fn new(ids: Vec<u32>, mask: Vec<u8>) -> Result<Self> {
        if ids.len() != mask.len() {
            return Err(TrainError::Invalid(format!(
                "{} ids but {} mask entries",
                ids.len(),
                mask.len()
            )));
        }
        Ok(Self {
            ids,
            mask,
            old_logprobs: None,
            advantage: 0.0,
            token_advantages: None,
            off_policy: false,
        })
    }

    /// The advantage of position `i`: its own where the example has per-token advantages,
    /// else the sequence's.
    pub fn advantage_at(&self, i: usize) -> f32 {
        match &self.token_advantages {
            Some(a) => a.get(i).copied().unwrap_or(0.0),
            None => self.advantage,
        }
    }

    /// Trained positions.
    pub fn trained(&self) -> usize {
        self.mask.iter().filter(|&&m| m != 0).count()
    }
}

/// A batch as the model takes it.
#[derive(Debug)]
pub struct Batch {
    /// Ids every row starts with (computed once).
    pub prefix: Vec<u32>,
    /// Each row's ids after the prefix, without its last id (nothing follows it).
    pub rows: Vec<Vec<u32>>,
    /// `[b, s]` u32: the id each position predicts (0 past a row's end).
    pub targets: Tensor,
    /// `[b, s]` f32: 1 where that target is trained.
    pub weights: Tensor,
    /// `[b, s]` f32: the recorded sampling logprob of each target (GRPO).
    pub old_logprobs: Option<Tensor>,
    /// `[b, s]` f32: the advantage of each target (GRPO; a sequence's advantage repeated
    /// unless the example has per-token ones).
    pub advantages: Tensor,
    /// `[b, s]` f32: 1 where the target is trained and its row is off-policy; `None` when
    /// no row is.
    pub off_policy: Option<Tensor>,
    /// Trained tokens in the batch.
    pub trained_tokens: usize,
    /// All positions the forward pass computes (prefix once, rows padded).
    pub computed_tokens: usize,
}

impl Batch {
    /// Builds the batch of `examples` (at least one, each with a trained token).
    pub fn new(examples: &[&Example]) -> Result<Self> {
        Self::build(examples, true)
    }

    /// The same batch with every row computed in full (no shared prefix): the benchmark's
    /// baseline.
    pub fn unshared(examples: &[&Example]) -> Result<Self> {
        Self::build(examples, false)
    }

    fn build(examples: &[&Example], share: bool) -> Result<Self> {
        let first = examples
            .first()
            .ok_or_else(|| TrainError::Invalid("an empty batch".into()))?;
        let mut common = first.ids.len();
        let mut first_trained = usize::MAX;
        for e in examples {
            common = common.min(
                e.ids
                    .iter()
                    .zip(&first.ids)
                    .take_while(|(a, b)| a == b)
                    .count(),
            );
            let t =
                e.mask.iter().position(|&m| m != 0).ok_or_else(|| {
                    TrainError::Invalid("an example with no trained token".into())
                })?;
            if t == 0 {
                return Err(TrainError::Invalid(
                    "an example whose first id is trained (nothing predicts it)".into(),
                ));
            }
            first_trained = first_trained.min(t);
        }
        // The last prefix position predicts a token no example trains.
        let split = if share {
            common.min(first_trained).saturating_sub(1)
        } else {
            0
        };
        let width = examples
            .iter()
            .map(|e| e.ids.len() - 1 - split)
            .max()
            .unwrap_or(0);
        let b = examples.len();
        let mut targets = vec![0u32; b * width];
        let mut weights = vec![0f32; b * width];
        let mut old = vec![0f32; b * width];
        let mut advantages = vec![0f32; b * width];
        let mut off = vec![0f32; b * width];
        let any_off = examples.iter().any(|e| e.off_policy);
        let has_old = examples.iter().all(|e| e.old_logprobs.is_some());
        let mut rows = Vec::with_capacity(b);
        let mut trained = 0;
        for (r, e) in examples.iter().enumerate() {
            let n = e.ids.len();
            rows.push(e.ids[split..n - 1].to_vec());
            for (j, i) in (split + 1..n).enumerate() {
                targets[r * width + j] = e.ids[i];
                if e.mask[i] != 0 {
                    weights[r * width + j] = 1.0;
                    trained += 1;
                    if e.off_policy {
                        off[r * width + j] = 1.0;
                    }
                }
                if let Some(lp) = &e.old_logprobs {
                    old[r * width + j] = lp.get(i).copied().unwrap_or(0.0);
                }
                advantages[r * width + j] = e.advantage_at(i);
            }
        }
        let dev = Device::Cpu;
        Ok(Self {
            prefix: first.ids[..split].to_vec(),
            computed_tokens: split + b * width,
            rows,
            targets: Tensor::from_vec(targets, (b, width), &dev)?,
            weights: Tensor::from_vec(weights, (b, width), &dev)?,
            old_logprobs: if has_old {
                Some(Tensor::from_vec(old, (b, width), &dev)?)
            } else {
                None
            },
            advantages: Tensor::from_vec(advantages, (b, width), &dev)?,
            off_policy: if any_off {
                Some(Tensor::from_vec(off, (b, width), &dev)?)
            } else {
                None
            },
            trained_tokens: trained,
        })
    }
}

/// `examples` split into micro-batches of about the padded size `count` equal shares of
/// them would have at their median length, shortest rows first. A batch is padded to its
/// longest row, so one long run among short ones (a multi-turn run that kept writing broken
/// calls: 1,000–1,500 tokens among 400-token ones) would make every row of its batch that
/// long; here long rows share smaller batches of their own (so there may be more than
/// `count`), and no batch is much larger than an ordinary one (memory). Each example lands
/// in exactly one; rows of equal length keep their order. Under every GRPO normalisation the
/// step's gradient, summed over micro-batches with their share, is the whole step's,
/// however the rows are split.
pub fn micro_batches<'a>(examples: &[&'a Example], count: usize) -> Vec<Vec<&'a Example>> {
    let mut sorted = examples.to_vec();
    sorted.sort_by_key(|e| e.ids.len());
    let Some(median) = sorted.get(sorted.len() / 2).map(|e| e.ids.len()) else {
        return Vec::new();
    };
    let budget = sorted.len().div_ceil(count.max(1)) * median;
    let mut out: Vec<Vec<&Example>> = Vec::new();
    for e in sorted {
        match out.last_mut() {
            // Sorted ascending: this row sets the batch's width.
            Some(b) if (b.len() + 1) * e.ids.len() <= budget => b.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_keep_long_rows_apart() {
        let row = |len: usize, tag: u32| {
            let mut mask = vec![1u8; len];
            mask[0] = 0;
            Example::new(vec![tag; len], mask).unwrap()
        };
        // Eight ordinary rows and two long ones, in arrival order.
        let lens = [40, 41, 160, 40, 42, 40, 150, 43, 41, 40];
        let rows: Vec<Example> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| row(l, i as u32 + 1))
            .collect();
        let all: Vec<&Example> = rows.iter().collect();
        let split = micro_batches(&all, 2);
        let widths: Vec<Vec<usize>> = split
            .iter()
            .map(|b| b.iter().map(|e| e.ids.len()).collect())
            .collect();
        // Budget: 5 rows × median 41 = 205 positions; the long rows cannot share.
        assert_eq!(
            widths,
            vec![
                vec![40, 40, 40, 40, 41],
                vec![41, 42, 43],
                vec![150],
                vec![160]
            ]
        );
        // Each row once; equal lengths keep their order (tags 1, 4, 6, 10).
        let tags: Vec<u32> = split[0].iter().map(|e| e.ids[0]).collect();
        assert_eq!(tags, vec![1, 4, 6, 10, 2]);
        assert_eq!(split.iter().map(Vec::len).sum::<usize>(), lens.len());
        let computed = |batches: Vec<Vec<&Example>>| -> usize {
            batches
                .iter()
                .map(|b| Batch::new(b).unwrap().computed_tokens)
                .sum()
        };
        let in_order: Vec<Vec<&Example>> = all.chunks(5).map(<[_]>::to_vec).collect();
        assert!(computed(micro_batches(&all, 2)) * 2 < computed(in_order));
        assert!(micro_batches(&[], 3).is_empty());
        assert_eq!(micro_batches(&all, 0).len(), 2);
    }

    #[test]
    fn the_shared_prefix_stops_before_the_first_trained_token() {
        let a = Example::new(vec![1, 2, 3, 4, 5], vec![0, 0, 0, 1, 1]).unwrap();
        let b = Example::new(vec![1, 2, 3, 9], vec![0, 0, 0, 1]).unwrap();
        let batch = Batch::new(&[&a, &b]).unwrap();
        assert_eq!(batch.prefix, vec![1, 2]);
        assert_eq!(batch.rows, vec![vec![3, 4], vec![3]]);
        assert_eq!(
            batch.targets.to_vec2::<u32>().unwrap(),
            vec![vec![4, 5], vec![9, 0]]
        );
        assert_eq!(
            batch.weights.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 1.0], vec![1.0, 0.0]]
        );
        assert_eq!(batch.trained_tokens, 3);
        let c = Example::new(vec![7, 2, 3], vec![0, 0, 1]).unwrap();
        assert!(Batch::new(&[&a, &c]).unwrap().prefix.is_empty());
        assert!(Batch::new(&[&Example::new(vec![1], vec![1]).unwrap()]).is_err());
        assert!(Batch::new(&[&a, &b]).unwrap().off_policy.is_none());
        let guide = Example {
            off_policy: true,
            ..b.clone()
        };
        assert_eq!(
            Batch::new(&[&a, &guide])
                .unwrap()
                .off_policy
                .unwrap()
                .to_vec2::<f32>()
                .unwrap(),
            vec![vec![0.0, 0.0], vec![1.0, 0.0]]
        );
    }
}
