//! `verity train`: fine-tunes the tiny Qwen3-architecture models Verity generates (and
//! other small Qwen3 checkpoints) on Verity's own data, with candle on the CPU.
//!
//! - [`model`]: the Qwen3 forward pass, written from candle ops that have gradients, equal
//!   to the embedded engine's forward on the same weights (a test compares them), batched
//!   with a shared prompt prefix computed once;
//! - [`sft`]: supervised fine-tuning on `verity export --format trl-sft` rows;
//! - [`grpo`]: GRPO / Dr. GRPO policy-gradient steps on rollout rows (the recorded
//!   sampling logprobs are the old policy);
//! - [`optim`], [`schedule`]: AdamW with saved state, warm-up + cosine;
//! - [`checkpoint`]: safetensors folders `verity --model` loads as they are, resumable.
//!
//! It exists for tiny models, tests and teaching. Real models train with verl or TRL on
//! Verity's exports; the same task files and verifiers grade both.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod grpo;
pub mod model;
pub mod ops;
pub mod optim;
pub mod schedule;
pub mod sft;

/// What went wrong while training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A tensor operation failed (shapes, memory).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// A data row, config or checkpoint that is not what was expected.
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Result of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// A small deterministic generator (SplitMix64) for shuffling: the same seed gives the
/// same order on every machine.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
