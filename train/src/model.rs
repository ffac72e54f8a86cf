//! The Qwen3 forward pass with gradients: embeddings, pre-norm decoder layers (RMSNorm,
//! grouped-query attention with per-head q/k RMSNorm and rotate-half RoPE, SwiGLU MLP),
//! final norm, lm_head (tied or not) — the computation mistral.rs's `qwen3` model does,
//! written from candle ops that all have backward passes, in f32.
//!
//! Rows that share a prompt prefix (every demonstration starts with the same system
//! prompt and tool list; every sample of a GRPO group with the same task) are batched with
//! that prefix computed once: its keys and values are broadcast to every row. The result
//! is exactly the per-row forward pass — attention over the prefix is ordinary attention —
//! at a fraction of the cost when the prefix dominates (2,000 tokens of tool schema before
//! a 60-token reply).

use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor, Var, D};

use crate::{config::Qwen3Config, Result, TrainError};

/// A Qwen3 model whose weights are trainable variables.
#[derive(Debug)]
pub struct Qwen3 {
    /// Its configuration.
    pub cfg: Qwen3Config,
    /// Every weight by its Hugging Face name, in a fixed (sorted) order.
    params: Vec<(String, Var)>,
    index: HashMap<String, usize>,
}

/// Names of the weights a Qwen3 checkpoint has.
fn weight_names(cfg: &Qwen3Config) -> Vec<String> {
    let mut names = vec![
        "model.embed_tokens.weight".to_owned(),
        "model.norm.weight".into(),
    ];
    for l in 0..cfg.num_hidden_layers {
        for w in [
            "input_layernorm",
            "post_attention_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "self_attn.q_norm",
            "self_attn.k_norm",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            names.push(format!("model.layers.{l}.{w}.weight"));
        }
    }
    if !cfg.tie_word_embeddings {
        names.push("lm_head.weight".into());
    }
    names.sort();
    names
}

impl Qwen3 {
    /// Loads `dir` (config.json and its `*.safetensors` files) as f32 variables.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg = Qwen3Config::read(dir)?;
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(TrainError::Invalid(format!(
                "{}: no .safetensors weights",
                dir.display()
            )));
        }
        for f in &files {
            let t = candle_core::safetensors::load(f, &Device::Cpu)
                .map_err(|e| TrainError::Invalid(format!("{}: {e}", f.display())))?;
            tensors.extend(t);
        }
        Self::from_tensors(cfg, tensors)
    }

    /// A model from named tensors (converted to f32 variables).
    pub fn from_tensors(cfg: Qwen3Config, mut tensors: HashMap<String, Tensor>) -> Result<Self> {
        let mut params = Vec::new();
        for name in weight_names(&cfg) {
            let t = tensors.remove(&name).ok_or_else(|| {
                TrainError::Invalid(format!("the checkpoint has no tensor {name}"))
            })?;
            params.push((name, Var::from_tensor(&t.to_dtype(DType::F32)?)?));
        }
        let index = params
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        let model = Self { cfg, params, index };
        model.check_shapes()?;
        Ok(model)
    }

    /// The shape config.json gives the weight `name`.
    fn expected_shape(&self, name: &str) -> Vec<usize> {
        let c = &self.cfg;
        let (d, hd) = (c.hidden_size, c.head_dim());
        let base = name.rsplit('.').nth(1).unwrap_or_default();
        match base {
            "embed_tokens" | "lm_head" => vec![c.vocab_size, d],
            "q_proj" => vec![c.num_attention_heads * hd, d],
            "k_proj" | "v_proj" => vec![c.num_key_value_heads * hd, d],
            "o_proj" => vec![d, c.num_attention_heads * hd],
            "q_norm" | "k_norm" => vec![hd],
            "gate_proj" | "up_proj" => vec![c.intermediate_size, d],
            "down_proj" => vec![d, c.intermediate_size],
            _ => vec![d],
        }
    }

    fn check_shapes(&self) -> Result<()> {
        for (name, v) in &self.params {
            let w = self.expected_shape(name);
            if v.dims() != w.as_slice() {
                return Err(TrainError::Invalid(format!(
                    "{name} has shape {:?}; config.json says {w:?}",
                    v.dims()
                )));
            }
        }
        Ok(())
    }

    /// A small model with seeded random weights (vocabulary 16, width 8, one layer).
    #[cfg(test)]
    pub(crate) fn random_for_tests(seed: u64) -> Result<Self> {
        let cfg: Qwen3Config = serde_json::from_value(serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "vocab_size": 16, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "head_dim": 4, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "tie_word_embeddings": true, "attention_bias": false
        }))
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let probe = Self {
            cfg: cfg.clone(),
            params: Vec::new(),
            index: HashMap::new(),
        };
        let mut rng = crate::SplitMix(seed);
        let mut tensors = HashMap::new();
        for name in weight_names(&cfg) {
            let dims = probe.expected_shape(&name);
            let n: usize = dims.iter().product();
            let norm = name.ends_with("norm.weight");
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    let u = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                    if norm {
                        1.0
                    } else {
                        (u - 0.5) * 0.6
                    }
                })
                .collect();
            tensors.insert(name, Tensor::from_vec(data, dims, &Device::Cpu)?);
        }
        Self::from_tensors(cfg, tensors)
    }

    /// The trainable variables with their names.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.index
            .get(name)
            .map(|&i| self.params[i].1.as_tensor())
            .ok_or_else(|| TrainError::Invalid(format!("no weight {name}")))
    }

    /// A copy whose weights do not track this one (a frozen reference policy).
    pub fn frozen_copy(&self) -> Result<Self> {
        let tensors = self
            .params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_tensors(self.cfg.clone(), tensors)
    }

    /// Logits `[rows, width, vocab]` of `prefix ++ rows[i]` at the positions of `rows[i]`
    /// (rows right-padded to the longest; what padding produces is garbage to be masked).
    pub fn forward(&self, prefix: &[u32], rows: &[Vec<u32>]) -> Result<Tensor> {
        let c = &self.cfg;
        let dev = Device::Cpu;
        let b = rows.len();
        let s = rows.iter().map(Vec::len).max().unwrap_or(0);
        let p = prefix.len();
        if b == 0 || s == 0 {
            return Err(TrainError::Invalid("an empty batch".into()));
        }
        let d = c.hidden_size;
        let embed = self.w("model.embed_tokens.weight")?;
        let mut padded = Vec::with_capacity(b * s);
        for r in rows {
            padded.extend_from_slice(r);
            padded.extend(std::iter::repeat_n(0u32, s - r.len()));
        }
        if let Some(bad) = padded
            .iter()
            .chain(prefix)
            .find(|&&t| t as usize >= c.vocab_size)
        {
            return Err(TrainError::Invalid(format!(
                "token id {bad} is outside the model's vocabulary ({})",
                c.vocab_size
            )));
        }
        let ids = Tensor::from_vec(padded, b * s, &dev)?;
        let mut hs = embed.index_select(&ids, 0)?.reshape((b, s, d))?;
        let mut hp = if p > 0 {
            let ids = Tensor::from_slice(prefix, p, &dev)?;
            Some(embed.index_select(&ids, 0)?.reshape((1, p, d))?)
        } else {
            None
        };
        let (cos, sin) = rope_tables(c, p + s)?;
        let (cos_p, sin_p) = (cos.narrow(0, 0, p)?, sin.narrow(0, 0, p)?);
        let (cos_s, sin_s) = (cos.narrow(0, p, s)?, sin.narrow(0, p, s)?);
        let mask_p = causal_mask(p, 0)?;
        let mask_s = causal_mask(s, p)?;
        for l in 0..c.num_hidden_layers {
            let pre = format!("model.layers.{l}");
            let layer = |h: &Tensor, cos: &Tensor, sin: &Tensor| {
                self.qkv(
                    &pre,
                    &self.rms_norm(h, &format!("{pre}.input_layernorm"))?,
                    cos,
                    sin,
                )
            };
            let (qs, ks, vs) = layer(&hs, &cos_s, &sin_s)?;
            let (keys, values) = match &hp {
                Some(h) => {
                    let (qp, kp, vp) = layer(h, &cos_p, &sin_p)?;
                    let attn = self.attend(&qp, &kp, &vp, &mask_p)?;
                    let h = (h + self.linear(&attn, &format!("{pre}.self_attn.o_proj"))?)?;
                    hp = Some(self.mlp(&pre, &h)?);
                    let kv_shape = (b, kp.dim(1)?, p, kp.dim(3)?);
                    (
                        Tensor::cat(&[&kp.broadcast_as(kv_shape)?.contiguous()?, &ks], 2)?,
                        Tensor::cat(&[&vp.broadcast_as(kv_shape)?.contiguous()?, &vs], 2)?,
                    )
                }
                None => (ks, vs),
            };
            let attn = self.attend(&qs, &keys, &values, &mask_s)?;
            hs = (hs + self.linear(&attn, &format!("{pre}.self_attn.o_proj"))?)?;
            hs = self.mlp(&pre, &hs)?;
        }
        let hs = self.rms_norm(&hs, "model.norm")?;
        let head = if c.tie_word_embeddings {
            embed
        } else {
            self.w("lm_head.weight")?
        };
        Ok(hs
            .reshape((b * s, d))?
            .matmul(&head.t()?)?
            .reshape((b, s, c.vocab_size))?)
    }

    /// `x · Wᵀ` over the last dimension.
    fn linear(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let dims = x.dims().to_vec();
        let (last, lead) = dims
            .split_last()
            .ok_or_else(|| TrainError::Invalid(format!("{name}: a scalar input")))?;
        let rows: usize = lead.iter().product();
        let y = x.reshape((rows, *last))?.matmul(&w.t()?)?;
        let mut out = lead.to_vec();
        out.push(w.dim(0)?);
        Ok(y.reshape(out)?)
    }

    /// `x / sqrt(mean(x²) + ε) · w` over the last dimension.
    fn rms_norm(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (ms + self.cfg.rms_norm_eps)?.sqrt()?.recip()?;
        Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
    }

    /// Queries `[b, heads, s, hd]` and keys/values `[b, kv_heads, s, hd]`, normed and
    /// rotated.
    fn qkv(
        &self,
        pre: &str,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let c = &self.cfg;
        let (b, s, _) = x.dims3()?;
        let hd = c.head_dim();
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, s, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(
            self.linear(x, &format!("{pre}.self_attn.q_proj"))?,
            c.num_attention_heads,
        )?;
        let k = heads(
            self.linear(x, &format!("{pre}.self_attn.k_proj"))?,
            c.num_key_value_heads,
        )?;
        let v = heads(
            self.linear(x, &format!("{pre}.self_attn.v_proj"))?,
            c.num_key_value_heads,
        )?;
        let q = self.rms_norm(&q, &format!("{pre}.self_attn.q_norm"))?;
        let k = self.rms_norm(&k, &format!("{pre}.self_attn.k_norm"))?;
        Ok((rope(&q, cos, sin)?, rope(&k, cos, sin)?, v))
    }

    /// Grouped-query attention: `q [b, H, sq, hd]`, `k, v [b, KV, sk, hd]`, additive mask
    /// `[sq, sk]` → `[b, sq, H·hd]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, h, sq, hd) = q.dims4()?;
        let (_, kvh, sk, _) = k.dims4()?;
        let rep = h / kvh;
        // Query heads j·rep … (j+1)·rep − 1 share key/value head j (transformers'
        // `repeat_kv`): group them instead of copying the keys.
        let q = q.reshape((b, kvh, rep * sq, hd))?;
        // Scaling the queries, not the scores: the same product on a tensor ~40× smaller.
        let q = (q * (1.0 / (hd as f64).sqrt()))?;
        let scores = q.matmul(&k.t()?.contiguous()?)?;
        let scores = scores.reshape((b, kvh, rep, sq, sk))?.broadcast_add(mask)?;
        let probs = crate::ops::softmax_last_dim(&scores)?.reshape((b, kvh, rep * sq, sk))?;
        let out = probs.matmul(v)?.reshape((b, h, sq, hd))?;
        Ok(out
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, sq, h * hd))?)
    }

    /// The MLP block with its residual: `h + down(silu(gate(x)) · up(x))`, `x` = normed `h`.
    fn mlp(&self, pre: &str, h: &Tensor) -> Result<Tensor> {
        let x = self.rms_norm(h, &format!("{pre}.post_attention_layernorm"))?;
        let gate = self.linear(&x, &format!("{pre}.mlp.gate_proj"))?.silu()?;
        let up = self.linear(&x, &format!("{pre}.mlp.up_proj"))?;
        Ok((h + self.linear(&(gate * up)?, &format!("{pre}.mlp.down_proj"))?)?)
    }

    /// Weights as f32 tensors by name (for saving).
    /// A copy of every weight (not sharing storage with the variables) for [`Self::drift`].
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(self
            .params
            .iter()
            .map(|(_, v)| v.as_tensor().copy())
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The root-mean-square distance of the weights from `start` (a [`Self::snapshot`]),
    /// over every weight: how far training has moved the model.
    pub fn drift(&self, start: &[Tensor]) -> Result<f64> {
        let (mut sq, mut n) = (0f64, 0usize);
        for ((_, v), s) in self.params.iter().zip(start) {
            sq += f64::from((v.as_tensor() - s)?.sqr()?.sum_all()?.to_scalar::<f32>()?);
            n += s.elem_count();
        }
        Ok((sq / n.max(1) as f64).sqrt())
    }

    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }
}

/// cos/sin `[n, hd]` (halves repeated, rotate-half layout), computed in f32 as mistral.rs
/// computes them, so positions far into a long prompt round the same way.
fn rope_tables(c: &Qwen3Config, n: usize) -> Result<(Tensor, Tensor)> {
    let hd = c.head_dim();
    let theta = c.rope_theta as f32;
    let inv: Vec<f32> = (0..hd)
        .step_by(2)
        .map(|i| 1f32 / theta.powf(i as f32 / hd as f32))
        .collect();
    let mut cos = Vec::with_capacity(n * hd);
    let mut sin = Vec::with_capacity(n * hd);
    for pos in 0..n {
        let angles: Vec<f32> = inv.iter().map(|f| pos as f32 * f).collect();
        for _ in 0..2 {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| a.sin()));
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, hd), &Device::Cpu)?,
        Tensor::from_vec(sin, (n, hd), &Device::Cpu)?,
    ))
}

/// `x·cos + rotate_half(x)·sin`, `rotate_half([a, b]) = [−b, a]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let a = x.narrow(D::Minus1, 0, hd / 2)?;
    let b = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rotated = Tensor::cat(&[&b.neg()?, &a], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// Additive mask `[s, past + s]`: query i (position past + i) sees every past key and the
/// row's keys up to itself.
fn causal_mask(s: usize, past: usize) -> Result<Tensor> {
    let width = past + s;
    let mut m = vec![0f32; s * width];
    for i in 0..s {
        for j in (past + i + 1)..width {
            m[i * width + j] = f32::NEG_INFINITY;
        }
    }
    Ok(Tensor::from_vec(m, (s, width), &Device::Cpu)?)
}

/// Log-probabilities `[b, s]` of `targets` under `logits / temperature` (`[b, s, vocab]`).
pub fn token_logprobs(logits: &Tensor, targets: &Tensor, temperature: f64) -> Result<Tensor> {
    let logits = if temperature != 1.0 {
        (logits / temperature)?
    } else {
        logits.clone()
    };
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    Ok(lp
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_the_rms_distance_from_the_snapshot() {
        let model = Qwen3::random_for_tests(3).expect("model");
        let start = model.snapshot().expect("snapshot");
        assert_eq!(model.drift(&start).expect("drift"), 0.0);
        // Move one tensor by 0.5 everywhere: the snapshot must not move with it.
        let (_, v) = &model.params()[0];
        let n0 = v.as_tensor().elem_count();
        v.set(&(v.as_tensor() + 0.5).expect("add")).expect("set");
        let total: usize = start.iter().map(Tensor::elem_count).sum();
        let want = (0.25 * n0 as f64 / total as f64).sqrt();
        let got = model.drift(&start).expect("drift");
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
