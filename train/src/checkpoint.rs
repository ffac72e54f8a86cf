//! Checkpoints: a model folder `--model` loads as it is (the base model's config,
//! tokenizer and chat template, the trained `model.safetensors`), plus `train_state/` —
//! the optimizer's moments and what training did so far — to resume from.

use std::{collections::HashMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    model::Qwen3,
    optim::{AdamW, AdamWConfig},
    Result, TrainError,
};

/// Where training stands (`train_state/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// `sft` or `grpo`.
    pub kind: String,
    /// Optimizer steps taken.
    pub step: usize,
    /// The folder training started from.
    pub base: String,
    /// Settings, as given (a resumed run must use the same).
    pub settings: serde_json::Value,
    /// One entry per step: loss, learning rate, gradient norm, tokens.
    pub history: Vec<serde_json::Value>,
}

impl TrainState {
    /// A run of `kind` starting from `base` with `settings`, before its first step.
    pub fn start(kind: &str, base: &Path, settings: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            step: 0,
            base: base.display().to_string(),
            settings,
            history: Vec::new(),
        }
    }
}

/// The model in `dir` and an optimizer over its weights — with the moments `dir` saved
/// after `resume_step` steps, when resuming; fresh otherwise.
pub fn trainable(
    dir: &Path,
    adamw: AdamWConfig,
    resume_step: Option<usize>,
) -> Result<(Qwen3, AdamW)> {
    let model = Qwen3::load(dir)?;
    let mut opt = AdamW::new(model.params(), adamw)?;
    if let Some(step) = resume_step {
        opt.load(&optimizer_path(dir), step)?;
    }
    Ok((model, opt))
}

const STATE_DIR: &str = "train_state";

/// Writes `model` (and the optimizer and `state`) as the folder `out`, replacing what was
/// there only once everything is written.
pub fn save(out: &Path, base: &Path, model: &Qwen3, opt: &AdamW, state: &TrainState) -> Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = out.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    let state_dir = tmp.join(STATE_DIR);
    std::fs::create_dir_all(&state_dir).map_err(|e| TrainError::io(&state_dir, e))?;
    // Everything of the base model but its weights: config, tokenizer, template, and the
    // tiny generator's marker (so Verity keeps rendering prompts the tiny model's way).
    let entries = std::fs::read_dir(base).map_err(|e| TrainError::io(base, e))?;
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let skip = !p.is_file()
            || p.extension().is_some_and(|x| x == "safetensors")
            || p.file_name()
                .is_some_and(|n| n == "model.safetensors.index.json");
        if skip {
            continue;
        }
        let to = tmp.join(e.file_name());
        std::fs::copy(&p, &to).map_err(|err| TrainError::io(&p, err))?;
    }
    let weights: HashMap<String, candle_core::Tensor> = model.tensors().into_iter().collect();
    let path = tmp.join("model.safetensors");
    candle_core::safetensors::save(&weights, &path)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    opt.save(&state_dir.join("optimizer.safetensors"))?;
    let path = state_dir.join("state.json");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, json).map_err(|e| TrainError::io(&path, e))?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| TrainError::io(out, e))?;
    Ok(())
}

/// The training state of a checkpoint folder, if it has one.
pub fn read_state(dir: &Path) -> Result<Option<TrainState>> {
    let path = dir.join(STATE_DIR).join("state.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
}

/// The optimizer state file of a checkpoint folder.
pub fn optimizer_path(dir: &Path) -> std::path::PathBuf {
    dir.join(STATE_DIR).join("optimizer.safetensors")
}
