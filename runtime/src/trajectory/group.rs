//! Group statistics for GRPO-style training, written after each task's samples: raw
//! rewards stay the source of truth; advantages are advisory and their ε is recorded.

use sha2::{Digest, Sha256};

use super::record::{Advantages, GroupStats};

/// ε in GRPO's `(r − μ)/(σ + ε)`.
pub const GRPO_EPS: f64 = 1e-6;

/// The `group` record's statistics for rewards `r` (in sample order); the fields about
/// members (tokens, digests, rounds) are left for the caller, which knows them.
pub fn stats(rewards: &[f64]) -> GroupStats {
    let n = rewards.len();
    let nf = n as f64;
    let mean = if n == 0 {
        0.0
    } else {
        rewards.iter().sum::<f64>() / nf
    };
    let ss: f64 = rewards.iter().map(|r| (r - mean).powi(2)).sum();
    let std_pop = if n == 0 { 0.0 } else { (ss / nf).sqrt() };
    let std_unbiased = if n < 2 { 0.0 } else { (ss / (nf - 1.0)).sqrt() };
    let zero_variance = rewards.windows(2).all(|w| w[0] == w[1]);
    let grpo: Vec<f64> = rewards
        .iter()
        .map(|r| (r - mean) / (std_pop + GRPO_EPS))
        .collect();
    let dr_grpo: Vec<f64> = rewards.iter().map(|r| r - mean).collect();
    // RLOO: each sample's reward minus the mean of the *other* samples.
    let sum: f64 = rewards.iter().sum();
    let rloo: Vec<f64> = rewards
        .iter()
        .map(|r| {
            if n < 2 {
                0.0
            } else {
                r - (sum - r) / (nf - 1.0)
            }
        })
        .collect();
    let solved = rewards.iter().filter(|r| **r >= 1.0).count();
    GroupStats {
        n,
        rewards: rewards.to_vec(),
        mean,
        std_population: std_pop,
        std_unbiased,
        zero_variance,
        solve_rate: if n == 0 { 0.0 } else { solved as f64 / nf },
        advantages: Advantages {
            grpo,
            grpo_eps: GRPO_EPS,
            dr_grpo,
            rloo,
        },
        generated_tokens: None,
        max_length: None,
        truncated: None,
        members: Vec::new(),
        merkle_root: None,
        round: None,
        discarded_zero_variance_rounds: None,
    }
}

/// Merkle root (SHA-256, pairwise, odd node carried up) of member digests in order.
pub fn merkle_root(digests: &[String]) -> String {
    if digests.is_empty() {
        return format!("sha256:{}", hex::encode(Sha256::digest(b"")));
    }
    let mut level: Vec<Vec<u8>> = digests
        .iter()
        .map(|d| Sha256::digest(d.as_bytes()).to_vec())
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [a, b] => {
                    let mut h = Sha256::new();
                    h.update(a);
                    h.update(b);
                    h.finalize().to_vec()
                }
                [a] => a.clone(),
                _ => Vec::new(),
            })
            .collect();
    }
    format!("sha256:{}", hex::encode(&level[0]))
}

/// Unbiased pass@k from n samples with c correct (Chen et al., 2021).
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if n < k || k == 0 {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpo_rloo_and_zero_variance() {
        let s = stats(&[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(s.mean, 0.5);
        assert_eq!(s.std_population, 0.5);
        assert!(!s.zero_variance);
        assert!((s.advantages.grpo[0] - 1.0).abs() < 1e-5);
        // RLOO: 1 − mean(0, 1, 0) = 2/3.
        assert!((s.advantages.rloo[0] - 2.0 / 3.0).abs() < 1e-12);
        let z = stats(&[1.0, 1.0, 1.0]);
        assert!(z.zero_variance);
        assert_eq!(z.advantages.grpo[0], 0.0);
        assert_eq!(z.solve_rate, 1.0);
    }

    #[test]
    fn pass_at_k_and_merkle() {
        assert!((pass_at_k(4, 2, 1) - 0.5).abs() < 1e-12);
        assert_eq!(pass_at_k(4, 3, 2), 1.0);
        assert_eq!(pass_at_k(4, 0, 2), 0.0);
        let a = merkle_root(&["x".into(), "y".into(), "z".into()]);
        assert_ne!(a, merkle_root(&["y".into(), "x".into(), "z".into()]));
        assert_eq!(a, merkle_root(&["x".into(), "y".into(), "z".into()]));
    }
}
