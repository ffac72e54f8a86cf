//! AdamW (decoupled weight decay, bias-corrected moments) with gradient clipping by global
//! norm, and its state saved beside a checkpoint so training resumes exactly.

use std::{collections::HashMap, path::Path};

use candle_core::{backprop::GradStore, Device, Tensor, Var};

use crate::{Result, TrainError};

/// AdamW settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (not applied to norm weights).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0: off).
    pub clip: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
            clip: 1.0,
        }
    }
}

/// Gradients summed over the micro-batches of one step, in the optimizer's parameter order.
#[derive(Debug)]
pub struct GradSum(Vec<Option<Tensor>>);

#[cfg(test)]
impl GradSum {
    /// Every gradient, flattened and concatenated (absent ones skipped).
    pub(crate) fn flat(&self) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for g in self.0.iter().flatten() {
            out.extend(g.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// The optimizer and its moments.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub step: usize,
}

impl AdamW {
    /// Fresh moments for `params`.
    pub fn new(params: &[(String, Var)], cfg: AdamWConfig) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        Ok(Self {
            cfg,
            m: params
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            v: params
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            params: params.to_vec(),
            step: 0,
        })
    }

    /// One update at learning rate `lr`. Returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let mut sum = self.grad_sum();
        self.accumulate(&mut sum, grads)?;
        self.step_sum(sum, lr)
    }

    /// An empty sum of gradients for [`Self::accumulate`].
    pub fn grad_sum(&self) -> GradSum {
        GradSum(vec![None; self.params.len()])
    }

    /// Adds one micro-batch's gradients (of a loss already scaled to its share of the
    /// step) to `sum`: one optimizer step over more rows than fit in memory at once.
    pub fn accumulate(&self, sum: &mut GradSum, grads: &GradStore) -> Result<()> {
        for (slot, (_, v)) in sum.0.iter_mut().zip(&self.params) {
            let Some(g) = grads.get(v) else { continue };
            // Detached: the sum must not keep the micro-batch's graph alive.
            let g = g.detach();
            *slot = Some(match slot.take() {
                Some(acc) => (acc + g)?,
                None => g,
            });
        }
        Ok(())
    }

    /// One update with the summed gradients. Returns the gradient norm before clipping.
    pub fn step_sum(&mut self, sum: GradSum, lr: f64) -> Result<f64> {
        let grads = sum.0;
        let mut sq = 0f64;
        for g in grads.iter().flatten() {
            sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(TrainError::Invalid(format!(
                "the gradient norm is {norm} at step {}; lower --lr",
                self.step
            )));
        }
        let scale = if self.cfg.clip > 0.0 && norm > self.cfg.clip {
            self.cfg.clip / norm
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for (i, g) in grads.into_iter().enumerate() {
            let Some(g) = g else { continue };
            let g = (g * scale)?;
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let (name, var) = &self.params[i];
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.cfg.eps)?)?;
            let decay = if name.ends_with("norm.weight") {
                0.0
            } else {
                self.cfg.weight_decay
            };
            let w = var.as_tensor();
            let next = ((w * (1.0 - lr * decay))? - (update * lr)?)?;
            var.set(&next)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(norm)
    }

    /// Writes the moments (`m.NAME`, `v.NAME`) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&map, path)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Reads moments written by [`Self::save`] after `step` steps.
    pub fn load(&mut self, path: &Path, step: usize) -> Result<()> {
        let mut map = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        for (i, (name, var)) in self.params.iter().enumerate() {
            for (slot, key) in [(&mut self.m[i], "m"), (&mut self.v[i], "v")] {
                let t = map.remove(&format!("{key}.{name}")).ok_or_else(|| {
                    TrainError::Invalid(format!("{}: no {key}.{name}", path.display()))
                })?;
                if t.dims() != var.dims() {
                    return Err(TrainError::Invalid(format!(
                        "{}: {key}.{name} has shape {:?}, the weight {:?}",
                        path.display(),
                        t.dims(),
                        var.dims()
                    )));
                }
                *slot = t;
            }
        }
        self.step = step;
        Ok(())
    }
}
