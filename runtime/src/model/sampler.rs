//! Verity's own token sampler for the embedded engine.
//!
//! mistral.rs 0.8 samples every request from one engine-wide generator seeded with a
//! constant, so a sample cannot be drawn again from its seed, and the logprobs it reports
//! are base-10 logs (of the probability when sampling, of the raw logit under argmax).
//! RL needs both right: a recorded sample must be reproducible from its seed, and
//! `rollout_logprobs` must be natural-log probabilities the trainer can compare with its
//! own. So the engine is asked for argmax decoding and this sampler, run as a logits
//! processor, picks each token itself: it draws with a ChaCha8 generator keyed by the
//! request's seed, returns logits that leave the engine no other choice, and keeps the
//! chosen token's logprob.
//!
//! Two logprobs are recorded per token. `logprob` is `log softmax(logits / T)` of the
//! chosen token over the whole vocabulary (T = 1 under argmax): what verl, TRL and
//! OpenRLHF recompute in the trainer, so the ratio of the two measures engine/trainer
//! mismatch only. `sampling_logprob` is the token's log-probability under the distribution
//! it was actually drawn from — temperature, then the grammar mask, top-k and top-p,
//! renormalised (vLLM's "processed" logprobs); 0 under argmax, which is a point mass. A
//! token the grammar forced has `sampling_logprob` 0 whatever the model thought of it.
//!
//! The engine may call a processor twice for one position: under a grammar it samples
//! first, and if the token is not allowed it masks the logits (`-inf`) and samples again.
//! The second call draws from the masked logits; the logprob still uses the normaliser of
//! the first, unmasked call (the mask adds 0 to allowed tokens, so their logits agree).

use rand_chacha::{
    rand_core::{RngCore, SeedableRng},
    ChaCha8Rng,
};

use super::Sampling;

/// What the logprobs this sampler records are (written into trajectory records).
pub const LOGPROBS_MODE: &str = "gen_logprobs/rollout_logprobs: natural log of \
     softmax(logits / temperature) over the whole vocabulary (temperature 1 when greedy), \
     before top-k, top-p and grammar masks; sampling_logprobs: natural log of the probability \
     under the distribution actually sampled from (after temperature, grammar mask, top-k and \
     top-p, renormalised; 0 when greedy)";

/// What the sampler could not do with a step's logits.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// The model produced NaN logits.
    #[error("the model produced a NaN logit (token {0})")]
    NaN(usize),
    /// Nothing left to sample from.
    #[error("every token is masked out (all logits are -inf)")]
    Empty,
}

/// The decoding rule: argmax, or a draw after temperature, top-k and top-p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// `None`: argmax.
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
}

impl Rule {
    /// The rule a request's sampling parameters describe. Greedy, or a temperature of 0,
    /// is argmax; an unset temperature samples at 1; `top_k` 0 and `top_p` outside (0, 1)
    /// are off.
    pub fn from_sampling(s: &Sampling) -> Self {
        let temperature = match (s.greedy, s.temperature) {
            (true, _) => None,
            (false, Some(t)) if t <= 0.0 || !t.is_finite() => None,
            (false, t) => Some(t.unwrap_or(1.0)),
        };
        Self {
            temperature,
            top_k: s.top_k.filter(|&k| k > 0),
            top_p: s.top_p.filter(|&p| p > 0.0 && p < 1.0),
        }
    }
}

/// One position of the reply: the token finally chosen and its logprob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The token.
    pub token: u32,
    /// `log softmax(logits / T)[token]`, natural log.
    pub logprob: f32,
    /// The token's natural-log probability under the distribution it was drawn from
    /// (after temperature, mask, top-k and top-p; 0 under argmax).
    pub sampling_logprob: f32,
    /// The log-normaliser of the position's first (unmasked) call.
    lse: f64,
}

/// Samples one request's tokens; one instance per request.
#[derive(Debug)]
pub struct TokenSampler {
    rule: Rule,
    seed: u64,
    /// The position of the latest call and how many calls it has had.
    last_position: Option<usize>,
    attempts: u64,
    /// By position in the reply; `None` where the engine added a token without asking.
    steps: Vec<Option<Step>>,
    /// The logits of the latest call, to tell a grammar retry (same logits, some masked)
    /// from a fresh call for the same position.
    last_logits: Vec<f32>,
    /// `exp((logit − max) / T)` of the current call (reused: no allocation per token).
    weights: Vec<f32>,
    /// Their sum.
    total: f64,
}

impl TokenSampler {
    /// A sampler drawing from the ChaCha8 generator of `seed`.
    pub fn new(rule: Rule, seed: u64) -> Self {
        Self {
            rule,
            seed,
            last_position: None,
            attempts: 0,
            steps: Vec::new(),
            last_logits: Vec::new(),
            weights: Vec::new(),
            total: 0.0,
        }
    }

    /// Chooses the token at `position` (0 = the reply's first token).
    pub fn sample(&mut self, logits: &[f32], position: usize) -> Result<u32, SampleError> {
        self.sample_masked(logits, None, position)
    }

    /// Chooses the token at `position` from `masked` (the logits with disallowed tokens at
    /// `-inf`, e.g. by a grammar) when given, else from `logits`; `logprob` is still over
    /// the whole vocabulary of `logits`.
    pub fn sample_masked(
        &mut self,
        logits: &[f32],
        masked: Option<&[f32]>,
        position: usize,
    ) -> Result<u32, SampleError> {
        let t = self.rule.temperature.unwrap_or(1.0);
        let (total, max) = fill_weights(logits, t, &mut self.weights)?;
        let lse = f64::from(max) / t + total.ln();
        // The draw's weights: of the masked logits, relative to their own maximum (so a
        // forced token far below the best one does not underflow to 0).
        let (draw_total, draw_max, draw_logits) = match masked {
            Some(m) => {
                let (total, max) = fill_weights(m, t, &mut self.weights)?;
                (total, max, m)
            }
            None => (total, max, logits),
        };
        self.total = draw_total;
        let attempt = match self.last_position {
            Some(p) if p == position => self.attempts,
            _ => 0,
        };
        self.last_position = Some(position);
        self.attempts = attempt + 1;
        let (token, sampling_logprob) = match self.rule.temperature {
            // The first maximum (found by value: a vectorised scan, no branchy fold).
            None => (
                draw_logits
                    .iter()
                    .position(|&l| l == draw_max)
                    .ok_or(SampleError::Empty)? as u32,
                0.0,
            ),
            Some(_) => {
                let (token, kept) = self.draw(position, attempt)?;
                let w = (f64::from(draw_logits[token as usize]) - f64::from(draw_max)) / t;
                (token, (w - kept.ln()).min(0.0) as f32)
            }
        };
        // A retry keeps the normaliser of the unmasked call before it.
        let lse = match self.steps.get(position) {
            Some(Some(prev)) if self.is_retry(logits) => prev.lse,
            _ => lse,
        };
        let step = Step {
            token,
            logprob: (f64::from(logits[token as usize]) / t - lse) as f32,
            sampling_logprob,
            lse,
        };
        if self.steps.len() <= position {
            self.steps.resize(position + 1, None);
        }
        self.steps[position] = Some(step);
        self.last_logits.clear();
        self.last_logits.extend_from_slice(logits);
        Ok(token)
    }

    /// Every position seen so far; `None` for one no call was made for.
    pub fn steps(&self) -> &[Option<Step>] {
        &self.steps
    }

    /// Do these logits equal the last call's wherever they are not masked?
    fn is_retry(&self, logits: &[f32]) -> bool {
        self.last_logits.len() == logits.len()
            && logits
                .iter()
                .zip(&self.last_logits)
                .all(|(&new, &old)| new == f32::NEG_INFINITY || new == old)
    }

    /// Draws a token in proportion to `exp(logit / t)` among the candidates, with the
    /// Gumbel-max trick: each token gets its own noise and the largest `logit / t +
    /// gumbel` wins. Each noise value is a function of (seed, position, attempt, token)
    /// alone, so what one position draws never depends on how many calls came before it
    /// (a batch, a prefix-cache hit, a grammar retry elsewhere), and a grammar retry
    /// (attempt + 1) draws afresh — rejected-then-redrawn is then exactly the masked
    /// distribution. Gumbel-max rather than inverse-CDF because the engine's logits are
    /// not bit-stable across runs and batch shapes (about 1e-4 here): an inverse-CDF draw
    /// flips whenever noise moves any of the V cumulative boundaries past it; Gumbel-max
    /// only when the two best perturbed scores are that close.
    ///
    /// Only the head of the distribution (weight ≥ 1e-6 of the top token) gets noise;
    /// the negligible tail is chosen as a whole with probability = its mass, then drawn
    /// by inverse CDF — an exact mixture that keeps the per-token cost on the head.
    ///
    /// Returns the token and the total weight of the tokens it was drawn among (the
    /// normaliser of the distribution actually sampled from).
    fn draw(&self, position: usize, attempt: u64) -> Result<(u32, f64), SampleError> {
        let w = &self.weights;
        let filtered = self.rule.top_k.is_some_and(|k| k < w.len()) || self.rule.top_p.is_some();
        let lanes = w.len() as u128 + 2;
        let mut noise = Noise::new(self.seed, position, u128::from(attempt) * lanes);
        let (head, tail): (Vec<Weighted>, Vec<Weighted>) = if filtered {
            let (mut cands, total) = self.candidates();
            if let Some(p) = self.rule.top_p {
                let mut acc = 0.0;
                let keep = cands
                    .iter()
                    .position(|c| {
                        acc += c.1;
                        acc >= p * total
                    })
                    .map_or(cands.len(), |i| i + 1);
                cands.truncate(keep);
            }
            cands.sort_unstable_by_key(|c| c.0);
            cands.into_iter().partition(|c| c.1 >= f64::from(HEAD))
        } else {
            // One pass: the head by id, the tail only as a mass (walked again if drawn).
            let head = w
                .iter()
                .enumerate()
                .filter(|(_, &x)| x >= HEAD)
                .map(|(i, &x)| (i as u32, f64::from(x)))
                .collect();
            (head, Vec::new())
        };
        let head_mass: f64 = head.iter().map(|c| c.1).sum();
        let tail_mass: f64 = if filtered {
            tail.iter().map(|c| c.1).sum()
        } else {
            sum_below(w, HEAD)
        };
        let kept = head_mass + tail_mass;
        if tail_mass > 0.0 && noise.unit(0) * kept >= head_mass {
            let target = noise.unit(1) * tail_mass;
            let mut acc = 0.0;
            let mut last = None;
            let mut walk = |id: u32, x: f64| {
                acc += x;
                last = Some(id);
                acc > target
            };
            if filtered {
                for &(id, x) in &tail {
                    if walk(id, x) {
                        return Ok((id, kept));
                    }
                }
            } else {
                for (i, &x) in w.iter().enumerate() {
                    if x > 0.0 && x < HEAD && walk(i as u32, f64::from(x)) {
                        return Ok((i as u32, kept));
                    }
                }
            }
            return last.map(|id| (id, kept)).ok_or(SampleError::Empty);
        }
        let mut best: Option<(u32, f64)> = None;
        for &(id, x) in &head {
            // ln w + Gumbel noise; u in (0, 1) so both logs are finite.
            let u = noise.unit(2 + u128::from(id));
            let score = x.ln() - (-u.ln()).ln();
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((id, score));
            }
        }
        best.map(|(id, _)| (id, kept)).ok_or(SampleError::Empty)
    }

    /// Tokens that top-k and top-p could keep, most likely first (ties: lower id first),
    /// with their relative weights, and the total weight top-p measures against (after
    /// top-k: the k kept, as in Hugging Face and vLLM). Under top-p alone only the head of
    /// the distribution is sorted: a set of tokens above a threshold whose mass reaches
    /// `p` contains the nucleus, and on a real vocabulary that set is small.
    fn candidates(&self) -> (Vec<Weighted>, f64) {
        let w = &self.weights;
        let above = |tau: f64| {
            w.iter()
                .enumerate()
                .filter(move |(_, &x)| x > 0.0 && f64::from(x) >= tau)
                .map(|(i, &x)| (i as u32, f64::from(x)))
        };
        let by_weight = |a: &Weighted, b: &Weighted| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let (mut cands, total): (Vec<Weighted>, f64) = match (self.rule.top_k, self.rule.top_p) {
            (Some(k), _) if k < w.len() => {
                // The k best are among the head when it has k members.
                let mut v: Vec<_> = above(f64::from(HEAD)).collect();
                if v.len() < k {
                    v = above(0.0).collect();
                }
                if k < v.len() {
                    v.select_nth_unstable_by(k - 1, by_weight);
                    v.truncate(k);
                }
                let total = v.iter().map(|c| c.1).sum();
                (v, total)
            }
            (_, Some(p)) => {
                let total = self.total;
                let mut tau = 1e-3;
                let head = loop {
                    let head: Vec<_> = above(tau).collect();
                    let mass: f64 = head.iter().map(|c| c.1).sum();
                    if mass >= p * total || tau == 0.0 {
                        break head;
                    }
                    tau = if tau < 1e-30 { 0.0 } else { tau * 1e-3 };
                };
                (head, total)
            }
            _ => {
                let v: Vec<_> = above(0.0).collect();
                let total = v.iter().map(|c| c.1).sum();
                (v, total)
            }
        };
        cands.sort_unstable_by(by_weight);
        (cands, total)
    }
}

/// A token id and its weight relative to the most likely token.
type Weighted = (u32, f64);

/// Weight (relative to the most likely token) from which a token gets its own noise.
const HEAD: f32 = 1e-6;

/// Random access into the ChaCha8 stream of (seed, position): lane `k` of a call is the
/// 64-bit word at `offset + k`. Lanes are read in increasing order; short gaps are read
/// through, long ones seek.
struct Noise {
    rng: ChaCha8Rng,
    offset: u128,
    /// The next lane the generator would return without seeking.
    next: Option<u128>,
}

impl Noise {
    fn new(seed: u64, position: usize, offset: u128) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(position as u64);
        Self {
            rng,
            offset,
            next: None,
        }
    }

    /// A uniform number in (0, 1) for `lane`.
    fn unit(&mut self, lane: u128) -> f64 {
        match self.next {
            Some(n) if n <= lane && lane - n < 32 => {
                for _ in n..lane {
                    self.rng.next_u64();
                }
            }
            _ => self.rng.set_word_pos((self.offset + lane) * 2),
        }
        self.next = Some(lane + 1);
        ((self.rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }
}

/// Fills `weights` with `exp((logit − max) / t)` (0 for masked tokens) and returns their
/// sum and the largest logit. Every pass is written so the compiler vectorises it (lane
/// arrays, a branch-free exp): on a 152k vocabulary the libm-and-iterator version took
/// over 1 ms per token, this one about a tenth of that.
fn fill_weights(logits: &[f32], t: f64, weights: &mut Vec<f32>) -> Result<(f64, f32), SampleError> {
    let (max, nan) = max_and_nan(logits);
    if nan {
        let i = logits.iter().position(|l| l.is_nan()).unwrap_or(0);
        return Err(SampleError::NaN(i));
    }
    if max == f32::NEG_INFINITY {
        return Err(SampleError::Empty);
    }
    let inv_t = (1.0 / t) as f32;
    weights.resize(logits.len(), 0.0);
    for (w, &l) in weights.iter_mut().zip(logits) {
        *w = exp_nonpositive((l - max) * inv_t);
    }
    Ok((sum_below(weights, f32::INFINITY), max))
}

const LANES: usize = 8;

/// The largest value, and whether any is NaN.
fn max_and_nan(v: &[f32]) -> (f32, bool) {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            nan[j] |= c[j].is_nan();
            max[j] = if c[j] > max[j] { c[j] } else { max[j] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    let mut n = nan.iter().any(|&x| x);
    for &x in max.iter().chain(rest) {
        n |= x.is_nan();
        m = if x > m { x } else { m };
    }
    (m, n)
}

/// The sum of the values below `limit`, in f32 lanes flushed to f64 every 512 values.
fn sum_below(v: &[f32], limit: f32) -> f64 {
    let mut lanes = [0f32; LANES];
    let mut total = 0f64;
    for block in v.chunks(512) {
        let chunks = block.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..LANES {
                lanes[j] += if c[j] < limit { c[j] } else { 0.0 };
            }
        }
        total += lanes.iter().map(|&x| f64::from(x)).sum::<f64>();
        total += rest
            .iter()
            .filter(|&&x| x < limit)
            .map(|&x| f64::from(x))
            .sum::<f64>();
        lanes = [0.0; LANES];
    }
    total
}

/// `e^x` for `x ≤ 0` (−∞ gives 0), within 1e-7 relative: Cephes' `expf` range reduction
/// and polynomial, with no branches, libm calls or saturating casts, so loops over it
/// vectorise.
#[inline]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer n, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.0;
    let x = if underflow { -87.0 } else { x };
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from the exponent bits: n + 127, shifted into place.
    let scale = f32::from_bits(
        shifted
            .to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(127)
            << 23,
    );
    if underflow {
        0.0
    } else {
        e * scale
    }
}

/// The seed of a run's `turn`-th model call (0-based): the run's seed itself for the
/// first, a SplitMix64 mix of it and the index for the others, so every call of every
/// sample has its own stream and one number reproduces the whole run.
pub fn call_seed(run_seed: u64, turn: usize) -> u64 {
    if turn == 0 {
        return run_seed;
    }
    let mut z = run_seed ^ (turn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fresh seed from the operating system (for sampled runs given none, so that the
/// record still says how to draw the run again).
pub fn fresh_seed() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness: time and process id still differ between runs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        call_seed(nanos ^ u64::from(std::process::id()), 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(temperature: Option<f64>, top_k: Option<usize>, top_p: Option<f64>) -> Rule {
        Rule {
            temperature,
            top_k,
            top_p,
        }
    }

    fn logprob(s: &TokenSampler, position: usize) -> f32 {
        s.steps()[position].expect("sampled").logprob
    }

    /// Reference log-softmax in f64 with the standard library's exp.
    fn log_softmax(logits: &[f32], t: f64) -> Vec<f64> {
        let max = logits
            .iter()
            .map(|&l| f64::from(l) / t)
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = max
            + logits
                .iter()
                .map(|&l| (f64::from(l) / t - max).exp())
                .sum::<f64>()
                .ln();
        logits.iter().map(|&l| f64::from(l) / t - lse).collect()
    }

    #[test]
    fn fast_exp_matches_the_standard_library() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let want = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            if want > 1e-37 {
                worst = worst.max((got - want).abs() / want);
            }
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    /// Draws `n` single-position samples, each from its own seed.
    fn histogram(r: Rule, logits: &[f32], n: u64) -> Vec<u64> {
        let mut h = vec![0; logits.len()];
        for seed in 0..n {
            let mut s = TokenSampler::new(r, seed);
            h[s.sample(logits, 0).unwrap() as usize] += 1;
        }
        h
    }

    #[test]
    fn greedy_takes_the_first_maximum_and_records_its_natural_logprob() {
        let logits = [0.5, 2.0, 2.0, -1.0];
        let mut s = TokenSampler::new(Rule::from_sampling(&Sampling::default()), 7);
        assert_eq!(s.sample(&logits, 0).unwrap(), 1);
        let want = log_softmax(&logits, 1.0)[1];
        assert!((f64::from(logprob(&s, 0)) - want).abs() < 1e-6);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens_and_another_seed_does_not() {
        let logits: Vec<f32> = (0..50).map(|i| (i % 7) as f32 * 0.3).collect();
        let r = rule(Some(1.0), None, None);
        let run = |seed| {
            let mut s = TokenSampler::new(r, seed);
            (0..40)
                .map(|i| s.sample(&logits, i).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn draws_follow_the_softmax_at_the_temperature() {
        let logits = [0.0f32, 1.0, 2.0];
        for t in [0.5, 1.0, 2.0] {
            let n = 20_000;
            let h = histogram(rule(Some(t), None, None), &logits, n);
            for (i, lp) in log_softmax(&logits, t).iter().enumerate() {
                let seen = h[i] as f64 / n as f64;
                assert!(
                    (seen - lp.exp()).abs() < 0.015,
                    "t={t} token {i}: {seen} vs {}",
                    lp.exp()
                );
            }
        }
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw_but_not_the_recorded_logprob() {
        let logits = [3.0f32, 2.9, 1.0, 0.5, 0.4, -2.0];
        let h = histogram(rule(Some(1.0), Some(2), None), &logits, 3000);
        assert!(
            h[2..].iter().all(|&c| c == 0) && h[0] > 0 && h[1] > 0,
            "{h:?}"
        );
        // p(0)+p(1) ≈ 0.79 here: top_p 0.5 keeps exactly the two most likely.
        let h = histogram(rule(Some(1.0), None, Some(0.5)), &logits, 3000);
        assert!(
            h[2..].iter().all(|&c| c == 0) && h[0] > 0 && h[1] > 0,
            "{h:?}"
        );
        // top_p 0.3 keeps only the most likely token.
        let h = histogram(rule(Some(1.0), None, Some(0.3)), &logits, 500);
        assert_eq!(h[0], 500);
        let mut s = TokenSampler::new(rule(Some(1.0), Some(1), None), 0);
        s.sample(&logits, 0).unwrap();
        let want = log_softmax(&logits, 1.0)[0];
        assert!((f64::from(logprob(&s, 0)) - want).abs() < 1e-6);
    }

    fn sampling_logprob(s: &TokenSampler, position: usize) -> f32 {
        s.steps()[position].expect("sampled").sampling_logprob
    }

    #[test]
    fn sampling_logprobs_are_of_the_distribution_actually_drawn_from() {
        let logits = [3.0f32, 2.9, 1.0, 0.5, 0.4, -2.0];
        let full = log_softmax(&logits, 1.0);
        // No filter: the two logprobs agree.
        let mut s = TokenSampler::new(rule(Some(1.0), None, None), 5);
        let tok = s.sample(&logits, 0).unwrap() as usize;
        assert!((f64::from(sampling_logprob(&s, 0)) - full[tok]).abs() < 1e-5);
        // Top-k 2: renormalised over the two kept tokens.
        for seed in 0..20 {
            let mut s = TokenSampler::new(rule(Some(1.0), Some(2), None), seed);
            let tok = s.sample(&logits, 0).unwrap() as usize;
            let kept = (full[0].exp() + full[1].exp()).ln();
            assert!((f64::from(sampling_logprob(&s, 0)) - (full[tok] - kept)).abs() < 1e-5);
            assert!((f64::from(logprob(&s, 0)) - full[tok]).abs() < 1e-5);
        }
        // At a temperature: renormalised softmax(z/T).
        let mut s = TokenSampler::new(rule(Some(0.5), None, None), 1);
        let tok = s.sample(&logits, 0).unwrap() as usize;
        let at_t = log_softmax(&logits, 0.5);
        assert!((f64::from(sampling_logprob(&s, 0)) - at_t[tok]).abs() < 1e-5);
        // Greedy: a point mass.
        let mut g = TokenSampler::new(rule(None, None, None), 0);
        g.sample(&logits, 0).unwrap();
        assert_eq!(sampling_logprob(&g, 0), 0.0);
    }

    #[test]
    fn a_token_the_mask_forces_has_sampling_logprob_zero() {
        // The grammar allows only token 5, which the model gives about e^-5.
        let logits = [3.0f32, 2.9, 1.0, 0.5, 0.4, -2.0];
        let mut masked = [f32::NEG_INFINITY; 6];
        masked[5] = -2.0;
        for r in [
            rule(Some(1.0), None, None),
            rule(None, None, None),
            rule(Some(0.7), Some(3), Some(0.9)),
        ] {
            let mut s = TokenSampler::new(r, 3);
            assert_eq!(s.sample_masked(&logits, Some(&masked), 0).unwrap(), 5);
            assert_eq!(sampling_logprob(&s, 0), 0.0);
            let t = r.temperature.unwrap_or(1.0);
            let want = log_softmax(&logits, t)[5];
            assert!((f64::from(logprob(&s, 0)) - want).abs() < 1e-5, "{r:?}");
        }
        // Two allowed tokens: renormalised over them.
        masked[4] = 0.4;
        let mut s = TokenSampler::new(rule(Some(1.0), None, None), 0);
        let tok = s.sample_masked(&logits, Some(&masked), 0).unwrap() as usize;
        let full = log_softmax(&logits, 1.0);
        let kept = (full[4].exp() + full[5].exp()).ln();
        assert!((f64::from(sampling_logprob(&s, 0)) - (full[tok] - kept)).abs() < 1e-5);
    }

    #[test]
    fn top_p_on_a_flat_tail_reaches_into_it() {
        // A long flat tail, each token below the first threshold (e^-10 < 1e-3 of the top
        // token) but together about half the mass: the nucleus must reach into it.
        let mut logits = vec![-10.0f32; 20_000];
        logits[0] = 0.0;
        let mut s = TokenSampler::new(rule(Some(1.0), None, Some(0.9)), 1);
        let picks: Vec<u32> = (0..200).map(|i| s.sample(&logits, i).unwrap()).collect();
        assert!(
            picks.iter().any(|&t| t != 0),
            "the tail holds most of the mass"
        );
    }

    #[test]
    fn a_grammar_retry_replaces_the_position_and_keeps_the_unmasked_normaliser() {
        let logits = [2.0f32, 1.0, 0.0];
        let mut s = TokenSampler::new(Rule::from_sampling(&Sampling::default()), 0);
        assert_eq!(s.sample(&logits, 0).unwrap(), 0);
        // The engine rejects token 0 and calls again with it masked out.
        let masked = [f32::NEG_INFINITY, 1.0, 0.0];
        assert_eq!(s.sample(&masked, 0).unwrap(), 1);
        assert_eq!(s.steps().len(), 1);
        let want = log_softmax(&logits, 1.0)[1];
        assert!((f64::from(logprob(&s, 0)) - want).abs() < 1e-6);
        // Different logits for the same position are a fresh call, with their own
        // normaliser (a prefix-cache hit's first step can come twice).
        let other = [0.0f32, 3.0, 0.0];
        assert_eq!(s.sample(&other, 0).unwrap(), 1);
        let want = log_softmax(&other, 1.0)[1];
        assert!((f64::from(logprob(&s, 0)) - want).abs() < 1e-6);
        // The next position is a new step; a skipped one stays empty.
        s.sample(&logits, 2).unwrap();
        assert_eq!(s.steps().len(), 3);
        assert!(s.steps()[1].is_none());
    }

    #[test]
    fn a_position_draws_the_same_whatever_came_before_it() {
        let logits: Vec<f32> = (0..64).map(|i| ((i * 37) % 11) as f32 * 0.2).collect();
        let mut masked = logits.clone();
        masked[..32].fill(f32::NEG_INFINITY);
        let r = rule(Some(1.0), None, None);
        let mut plain = TokenSampler::new(r, 9);
        let mut retried = TokenSampler::new(r, 9);
        for pos in 0..8 {
            plain.sample(&logits, pos).unwrap();
            retried.sample(&logits, pos).unwrap();
            if pos == 3 {
                // Two extra calls at one position (a grammar retry, a repeated step).
                retried.sample(&masked, pos).unwrap();
                retried.sample(&masked, pos).unwrap();
            }
        }
        let tokens = |s: &TokenSampler| {
            s.steps()
                .iter()
                .map(|x| x.unwrap().token)
                .collect::<Vec<_>>()
        };
        let (a, b) = (tokens(&plain), tokens(&retried));
        assert_eq!(a[..3], b[..3]);
        assert_eq!(a[4..], b[4..]);
        assert!(b[3] >= 32, "the retry drew from the masked logits");
    }

    #[test]
    fn the_tail_below_the_noise_threshold_is_drawn_at_its_mass() {
        // 1999 tokens at weight e^-14 ≈ 8e-7 (the tail): together 0.17 % of the mass.
        let mut logits = vec![-14.0f32; 2000];
        logits[0] = 0.0;
        let n = 20_000;
        let h = histogram(rule(Some(1.0), None, None), &logits, n);
        let tail: u64 = h[1..].iter().sum();
        let p = 1999.0 * (-14f64).exp() / (1.0 + 1999.0 * (-14f64).exp());
        let want = p * n as f64;
        assert!(
            (tail as f64 - want).abs() < 4.0 * want.sqrt(),
            "{tail} vs {want:.1}"
        );
    }

    #[test]
    fn masked_tokens_are_never_drawn() {
        let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.1];
        let h = histogram(rule(Some(5.0), None, None), &logits, 2000);
        assert_eq!(h[0] + h[2], 0);
        let h = histogram(rule(Some(5.0), Some(3), Some(0.9)), &logits, 2000);
        assert_eq!(h[0] + h[2], 0);
    }

    #[test]
    fn bad_logits_are_errors_not_panics() {
        let mut s = TokenSampler::new(rule(Some(1.0), None, None), 0);
        assert_eq!(s.sample(&[0.0, f32::NAN], 1), Err(SampleError::NaN(1)));
        assert_eq!(
            s.sample(&[f32::NEG_INFINITY; 3], 1),
            Err(SampleError::Empty)
        );
        assert_eq!(s.sample(&[], 1), Err(SampleError::Empty));
        let mut g = TokenSampler::new(rule(None, None, None), 0);
        assert_eq!(g.sample(&[f32::NEG_INFINITY], 1), Err(SampleError::Empty));
    }

    #[test]
    fn call_seeds_differ_per_turn_and_start_at_the_run_seed() {
        assert_eq!(call_seed(42, 0), 42);
        let seeds: std::collections::HashSet<u64> = (0..100).map(|t| call_seed(42, t)).collect();
        assert_eq!(seeds.len(), 100);
        assert_ne!(call_seed(42, 1), call_seed(43, 1));
    }

    #[test]
    fn rule_reads_sampling_parameters() {
        let mut s = Sampling {
            greedy: false,
            ..Sampling::default()
        };
        assert_eq!(Rule::from_sampling(&s), rule(Some(1.0), None, None));
        s.temperature = Some(0.0);
        s.top_k = Some(0);
        s.top_p = Some(1.0);
        assert_eq!(Rule::from_sampling(&s), rule(None, None, None));
        s.temperature = Some(0.7);
        s.top_k = Some(20);
        s.top_p = Some(0.95);
        assert_eq!(
            Rule::from_sampling(&s),
            rule(Some(0.7), Some(20), Some(0.95))
        );
    }
}
