//! A softmax over the last dimension with a fused forward *and* backward pass. candle's
//! fused `softmax_last_dim` has no gradient, and the softmax built from basic ops makes
//! five passes forward and about ten backward over the attention scores — the largest
//! tensors of a training step (measured: most of a step's time on these models).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `softmax(x)` over the last dimension (f32), with its gradient.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

struct Softmax;

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: f32 only")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: the input must be contiguous"),
    }
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "verity-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous(storage, layout, "softmax")?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_mut(n)
            .zip(src.par_chunks(n))
            .for_each(|(d, s)| {
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (d, &x) in d.iter_mut().zip(s) {
                    *d = (x - max).exp();
                    sum += *d;
                }
                let inv = 1.0 / sum;
                d.iter_mut().for_each(|d| *d *= inv);
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.contiguous()?.apply_op2_no_bwd(
            &grad_res.contiguous()?,
            &SoftmaxBackward,
        )?))
    }
}

/// `dx = y · (g − Σ g·y)` per row, in one pass.
struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "verity-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous(ys, yl, "softmax backward")?;
        let g = contiguous(gs, gl, "softmax backward")?;
        if y.len() != g.len() {
            candle_core::bail!(
                "softmax backward: {} values, {} gradients",
                y.len(),
                g.len()
            );
        }
        let n = yl.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut dst = vec![0f32; y.len()];
        dst.par_chunks_mut(n)
            .zip(y.par_chunks(n).zip(g.par_chunks(n)))
            .for_each(|(d, (y, g))| {
                let dot: f32 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                for ((d, &y), &g) in d.iter_mut().zip(y).zip(g) {
                    *d = y * (g - dot);
                }
            });
        Ok((CpuStorage::F32(dst), yl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var, D};

    use super::*;

    /// Forward and gradient equal the softmax built from basic ops.
    #[test]
    fn fused_softmax_matches_the_composed_one() {
        let x = Var::from_tensor(
            &Tensor::arange(0f32, 24., &Device::Cpu)
                .unwrap()
                .reshape((2, 3, 4))
                .unwrap()
                .sin()
                .unwrap(),
        )
        .unwrap();
        let w = Tensor::arange(0f32, 24., &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap()
            .cos()
            .unwrap();
        let ours = softmax_last_dim(x.as_tensor()).unwrap();
        let theirs = candle_nn::ops::softmax(x.as_tensor(), D::Minus1).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(diff(&ours, &theirs) < 1e-6);
        let g1 = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-6);
    }
}
