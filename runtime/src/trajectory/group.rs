//! Group statistics for GRPO-style training, written after each task's samples: raw
//! rewards stay the source of truth; advantages are advisory, and the record names the
//! convention (which standard deviation, which ε) they were computed under.

use sha2::{Digest, Sha256};

pub use super::record::GrpoNorm;
use super::record::{Advantages, GroupStats};

impl GrpoNorm {
    /// ε in `(r − μ)/(σ + ε)`.
    pub fn eps(self) -> f64 {
        match self {
            GrpoNorm::Verl | GrpoNorm::Population => 1e-6,
            GrpoNorm::Trl => 1e-4,
        }
    }

    /// The name `--grpo-norm` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpoNorm::Verl => "verl",
            GrpoNorm::Trl => "trl",
            GrpoNorm::Population => "population",
        }
    }

    /// GRPO advantages of `rewards` (mean μ, sum of squared deviations `ss`).
    fn advantages(self, rewards: &[f64], mean: f64, ss: f64) -> Vec<f64> {
        let n = rewards.len() as f64;
        match (self, rewards.len()) {
            // verl (`compute_grpo_outcome_advantage`): a group of one has μ = 0, σ = 1.
            (GrpoNorm::Verl, 1) => vec![rewards[0] / (1.0 + self.eps())],
            // TRL needs two generations per prompt; with one, r − μ = 0.
            (_, 0 | 1) => vec![0.0; rewards.len()],
            _ => {
                let std = match self {
                    GrpoNorm::Verl | GrpoNorm::Trl => (ss / (n - 1.0)).sqrt(),
                    GrpoNorm::Population => (ss / n).sqrt(),
                };
                rewards
                    .iter()
                    .map(|r| (r - mean) / (std + self.eps()))
                    .collect()
            }
        }
    }
}

impl std::str::FromStr for GrpoNorm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "verl" => Ok(GrpoNorm::Verl),
            "trl" => Ok(GrpoNorm::Trl),
            "population" => Ok(GrpoNorm::Population),
            other => Err(format!(
                "unknown GRPO normalisation {other:?}: expected verl (unbiased std, ε 1e-6), \
                 trl (unbiased std, ε 1e-4) or population (population std, ε 1e-6)"
            )),
        }
    }
}

/// The `group` record's statistics for rewards `r` (in sample order), GRPO advantages under
/// `norm`; the fields about members (tokens, digests, rounds) are left for the caller,
/// which knows them.
pub fn stats(rewards: &[f64], norm: GrpoNorm) -> GroupStats {
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
    let grpo = norm.advantages(rewards, mean, ss);
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
            grpo_eps: norm.eps(),
            grpo_norm: norm,
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

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn grpo_advantages_match_each_trainers_formula() {
        // verl `compute_grpo_outcome_advantage`: torch.std (unbiased), ε 1e-6.
        // [1,0,0,0]: μ 0.25, σ = sqrt(0.75/3) = 0.5 → 1.5, −0.5.
        let r = [1.0, 0.0, 0.0, 0.0];
        let verl = stats(&r, GrpoNorm::Verl).advantages;
        assert!(
            close(&verl.grpo, &[1.5, -0.5, -0.5, -0.5], 1e-5),
            "{verl:?}"
        );
        assert_eq!(verl.grpo_eps, 1e-6);
        // Exactly verl's arithmetic: (r − μ) / (σ + ε).
        assert_eq!(verl.grpo[0], 0.75 / (0.5 + 1e-6));
        // TRL: Bessel-corrected std, ε 1e-4.
        let trl = stats(&r, GrpoNorm::Trl).advantages;
        assert_eq!(trl.grpo[0], 0.75 / (0.5 + 1e-4));
        assert_eq!(trl.grpo_eps, 1e-4);
        // The population form (what Verity wrote before): σ = sqrt(0.75/4).
        let pop = stats(&r, GrpoNorm::Population).advantages;
        assert!(close(
            &pop.grpo,
            &[1.732_05, -0.577_35, -0.577_35, -0.577_35],
            1e-4
        ));
        // A group of one: verl uses μ 0, σ 1 → r/(1+ε); the others have r − μ = 0.
        assert_eq!(
            stats(&[1.0], GrpoNorm::Verl).advantages.grpo,
            [1.0 / (1.0 + 1e-6)]
        );
        assert_eq!(stats(&[1.0], GrpoNorm::Trl).advantages.grpo, [0.0]);
        // Dr. GRPO and RLOO do not depend on the convention.
        assert_eq!(verl.dr_grpo, pop.dr_grpo);
        assert_eq!(verl.rloo, trl.rloo);
        assert!("bessel".parse::<GrpoNorm>().unwrap_err().contains("verl"));
    }

    #[test]
    fn grpo_rloo_and_zero_variance() {
        let s = stats(&[1.0, 0.0, 1.0, 0.0], GrpoNorm::Population);
        assert_eq!(s.mean, 0.5);
        assert_eq!(s.std_population, 0.5);
        assert!(!s.zero_variance);
        assert!((s.advantages.grpo[0] - 1.0).abs() < 1e-5);
        // RLOO: 1 − mean(0, 1, 0) = 2/3.
        assert!((s.advantages.rloo[0] - 2.0 / 3.0).abs() < 1e-12);
        let z = stats(&[1.0, 1.0, 1.0], GrpoNorm::Verl);
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
