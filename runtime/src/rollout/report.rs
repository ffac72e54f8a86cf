//! What a rollout reports when it is done: a summary (mean reward, solve rate, pass@k,
//! tool use, parse failures) and a reward histogram as a small standalone SVG.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::trajectory::group;

/// Running totals over the samples drawn in this run (resumed samples are not counted).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Samples drawn.
    pub samples: usize,
    /// Sum of their rewards.
    pub reward_sum: f64,
    /// Calls per tool name.
    pub tool_calls: BTreeMap<String, usize>,
    /// Unusable calls the model made.
    pub parse_failures: usize,
    /// task id → (samples, passed)
    pub per_task: BTreeMap<String, (usize, usize)>,
    /// Every reward, in the order drawn.
    pub rewards: Vec<f64>,
    /// task id → digests of the distinct generated token sequences (or texts) drawn.
    pub distinct: BTreeMap<String, BTreeSet<String>>,
    /// Groups written in this run.
    pub groups: usize,
    /// Of those, groups whose rewards were all equal (no GRPO learning signal).
    pub zero_variance_groups: usize,
}

impl Totals {
    /// Mean reward so far.
    pub fn mean_reward(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.reward_sum / self.samples as f64
        }
    }

    /// The summary printed and written beside the output: pass@1 and pass@k are unbiased
    /// estimates (Chen et al., 2021) averaged over tasks.
    pub fn summary(&self, k: usize) -> Value {
        let tasks = self.per_task.len().max(1) as f64;
        let solve = self.per_task.values().filter(|(_, c)| *c > 0).count() as f64 / tasks;
        let mean_pass = |k_of: &dyn Fn(usize) -> usize| {
            self.per_task
                .values()
                .map(|(n, c)| group::pass_at_k(*n, *c, k_of(*n)))
                .filter(|x| x.is_finite())
                .sum::<f64>()
                / tasks
        };
        let pass1 = mean_pass(&|_| 1);
        let distinct: Vec<usize> = self.distinct.values().map(BTreeSet::len).collect();
        let mean_distinct = if distinct.is_empty() {
            0.0
        } else {
            distinct.iter().sum::<usize>() as f64 / distinct.len() as f64
        };
        let passk = mean_pass(&|n| k.min(n));
        json!({
            "samples_this_run": self.samples,
            "tasks_this_run": self.per_task.len(),
            "mean_reward": self.mean_reward(),
            "solve_rate": solve,
            "pass@1": pass1,
            format!("pass@{k}"): passk,
            "tool_calls": self.tool_calls,
            "parse_failure_rate": if self.samples == 0 { 0.0 } else { self.parse_failures as f64 / self.samples as f64 },
            // Samples of one task that differ (by generated tokens): 1 everywhere means the
            // groups carry no signal whatever the rewards.
            "distinct_samples_per_task": {
                "mean": mean_distinct,
                "min": distinct.iter().copied().min().unwrap_or(0),
            },
            "groups_this_run": self.groups,
            "zero_variance_groups": self.zero_variance_groups,
        })
    }
}

/// A 10-bin histogram of rewards in [0, 1] as a small standalone SVG.
pub fn histogram_svg(rewards: &[f64]) -> String {
    let mut bins = [0usize; 10];
    for r in rewards {
        let i = ((r.clamp(0.0, 1.0)) * 10.0).floor() as usize;
        bins[i.min(9)] += 1;
    }
    let max = bins.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, pad) = (400.0, 200.0, 30.0);
    let bw = (w - 2.0 * pad) / 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"10\">\n<text x=\"{pad}\" y=\"14\">reward histogram ({} samples)</text>\n",
        rewards.len()
    );
    for (i, c) in bins.iter().enumerate() {
        let bh = (h - 2.0 * pad) * (*c as f64) / (max as f64);
        let x = pad + i as f64 * bw;
        let y = h - pad - bh;
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a7\"><title>[{:.1}, {:.1}): {c}</title></rect>\n",
            bw - 2.0,
            i as f64 / 10.0,
            (i + 1) as f64 / 10.0
        ));
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\">{:.1}</text>\n",
            x,
            h - pad + 12.0,
            i as f64 / 10.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_solves_and_pass_at_k() {
        let mut t = Totals::default();
        for (task, r) in [("a", 1.0), ("a", 0.0), ("b", 0.0), ("b", 0.0)] {
            t.samples += 1;
            t.reward_sum += r;
            t.rewards.push(r);
            let e = t.per_task.entry(task.into()).or_default();
            e.0 += 1;
            e.1 += usize::from(r >= 1.0);
        }
        t.distinct
            .entry("a".into())
            .or_default()
            .extend(["x".into(), "y".into()]);
        t.distinct.entry("b".into()).or_default().insert("x".into());
        t.groups = 2;
        t.zero_variance_groups = 1;
        let s = t.summary(2);
        assert_eq!(s["distinct_samples_per_task"]["mean"], 1.5);
        assert_eq!(s["distinct_samples_per_task"]["min"], 1);
        assert_eq!(s["zero_variance_groups"], 1);
        assert_eq!(s["mean_reward"], 0.25);
        assert_eq!(s["solve_rate"], 0.5);
        assert_eq!(s["pass@1"], 0.25);
        assert_eq!(s["pass@2"], 0.5);
    }

    #[test]
    fn histogram_bins_rewards() {
        let svg = histogram_svg(&[0.0, 0.05, 1.0]);
        assert!(svg.contains("(3 samples)"));
        assert!(svg.contains("[0.0, 0.1): 2") && svg.contains("[0.9, 1.0): 1"));
    }
}
