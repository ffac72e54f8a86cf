//! The model's `config.json`, as far as the Qwen3 forward pass needs it.

use std::path::Path;

use serde::Deserialize;

use crate::{Result, TrainError};

/// A Qwen3 (`Qwen3ForCausalLM`) configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Width of one head (default hidden / heads).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// lm_head shares the embedding table.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (Qwen3 has none).
    #[serde(default)]
    pub attention_bias: bool,
    /// `["Qwen3ForCausalLM"]`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Context window.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

impl Qwen3Config {
    /// Reads and checks `dir/config.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let cfg: Qwen3Config = serde_json::from_str(&text)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
        if !cfg.architectures.iter().any(|a| a == "Qwen3ForCausalLM") {
            return Err(TrainError::Invalid(format!(
                "{}: architectures {:?}; verity train handles Qwen3ForCausalLM models (the tiny \
                 models `verity model tiny` writes, the qwen3 family's)",
                path.display(),
                cfg.architectures
            )));
        }
        if cfg.attention_bias {
            return Err(TrainError::Invalid(format!(
                "{}: attention_bias is true; Qwen3 checkpoints have none and verity train \
                 does not train biases",
                path.display()
            )));
        }
        if !cfg
            .num_attention_heads
            .is_multiple_of(cfg.num_key_value_heads.max(1))
        {
            return Err(TrainError::Invalid(format!(
                "{}: {} attention heads are not a multiple of {} key/value heads",
                path.display(),
                cfg.num_attention_heads,
                cfg.num_key_value_heads
            )));
        }
        Ok(cfg)
    }

    /// Width of one head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}
