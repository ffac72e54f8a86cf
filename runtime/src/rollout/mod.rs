//! Rollouts: G samples per task, each run by the agent, scored by the task's verifier and
//! recorded as a `traj` record; each task closed by a `group` record with its statistics.
//! Resumable (a file's finished samples and groups are kept), shardable (`shard`), with
//! DAPO-style dynamic sampling of zero-variance groups. `verity rollout` only parses flags
//! and prints; everything here is usable from Rust.
//!
//! Scheduling: with the embedded engine, several *tasks* run side by side and each
//! group's samples one after another, so a batch never holds two samples of one prompt
//! (mistral.rs computes different logits for those; different prompts batch exactly almost
//! always — once, under load, not — see docs/engine-notes.md). HTTP backends run one task at a time, its samples in parallel.

mod report;
mod resume;
mod tasks;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use futures::StreamExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub use report::{histogram_svg, Totals};
pub use resume::{scan, Done, Member};
pub use tasks::{load_task, read_tasks, LoadedTask, Task, TaskError};

use crate::{
    agent::{Agent, AgentConfig, StopReason},
    approver::Approver,
    gate::ToolGate,
    model::{ModelBackend, ModelError},
    reward::{self, Attempt},
    trajectory::{
        chain::{ChainError, ChainWriter},
        group,
        record::{GroupRecord, GroupTask, Reward},
        record_run, Record, TrajectoryBuilder, SCHEMA,
    },
};

/// Why a rollout stopped short.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// The task file is unusable.
    #[error(transparent)]
    Tasks(#[from] TaskError),
    /// The output file cannot be appended to.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The output file is damaged (resuming on top of it would bury the damage).
    #[error("{path}: line {line}: {why}; fix or move the file before resuming")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// Reading the output file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The model failed (not: the model said something wrong).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Bad settings.
    #[error("{0}")]
    Settings(String),
}

/// Only tasks i, i+N, i+2N, … of a file: N workers share one task file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This worker (0-based).
    pub index: usize,
    /// Workers.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = RolloutError;
    /// `0/4`.
    fn from_str(s: &str) -> Result<Self, RolloutError> {
        let bad = || RolloutError::Settings(format!("--shard {s}: expected I/N with 0 <= I < N"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// This shard's tasks, in file order.
    pub fn select<T>(self, tasks: Vec<T>) -> Vec<T> {
        tasks
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % self.count == self.index)
            .map(|(_, t)| t)
            .collect()
    }
}

/// How many samples, and how many at once.
#[derive(Debug, Clone, Copy)]
pub struct RolloutSettings {
    /// Samples per task (the GRPO group size).
    pub samples: usize,
    /// Extra rounds for a group whose rewards are all equal (0: off).
    pub dynamic_sampling: usize,
    /// Tasks run side by side.
    pub tasks_at_once: usize,
    /// Samples of one task run side by side.
    pub samples_at_once: usize,
    /// How the group records' GRPO advantages normalise.
    pub grpo_norm: group::GrpoNorm,
}

impl RolloutSettings {
    /// `concurrency` samples in flight, scheduled for the backend: the embedded engine
    /// batches tasks (a group's samples in turn), HTTP backends a group's samples.
    pub fn for_backend(samples: usize, concurrency: usize, embedded: bool) -> Self {
        let concurrency = concurrency.max(1);
        let (tasks_at_once, samples_at_once) = if embedded {
            (concurrency, 1)
        } else {
            (1, concurrency)
        };
        Self {
            samples,
            dynamic_sampling: 0,
            tasks_at_once,
            samples_at_once,
            grpo_norm: group::GrpoNorm::default(),
        }
    }
}

/// The seed of sample `index` of task `task_id` under the rollout's base seed: the first 8
/// bytes of SHA-256(base ‖ task id ‖ index). Every (task, sample) has its own stream — sample
/// i of two tasks no longer share one — and the record keeps it, so `verity run --seed`
/// draws the sample again alone.
pub fn sample_seed(base: u64, task_id: &str, index: usize) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(base.to_le_bytes());
    h.update((task_id.len() as u64).to_le_bytes());
    h.update(task_id.as_bytes());
    h.update((index as u64).to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Hears how far a rollout is (a progress bar).
pub trait RolloutProgress: Send + Sync {
    /// More samples are planned (dynamic sampling added a round).
    fn planned(&self, more: u64);
    /// A sample was recorded; `totals` are this run's so far.
    fn sample_done(&self, totals: &Totals);
}

/// A progress listener that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl RolloutProgress for Quiet {
    fn planned(&self, _more: u64) {}
    fn sample_done(&self, _totals: &Totals) {}
}

/// Samples still to draw for `tasks`, given what the file holds (the first round of each
/// unfinished group).
pub fn samples_to_draw(tasks: &[LoadedTask], done: &Done, samples: usize) -> usize {
    tasks
        .iter()
        .filter(|t| !done.groups.contains(&t.task.id))
        .map(|t| {
            samples
                - done
                    .samples
                    .get(&t.task.id)
                    .map_or(0, |s| s.len().min(samples))
        })
        .sum()
}

/// What a rollout run did.
#[derive(Debug)]
pub struct RolloutOutcome {
    /// This run's totals (resumed samples not included).
    pub totals: Totals,
    /// Whether it was cancelled before every group was written.
    pub cancelled: bool,
}

/// A model, tools behind a policy and an approver, ready to roll tasks out.
pub struct Rollout {
    model: Arc<dyn ModelBackend>,
    gate: ToolGate,
    approver: Arc<dyn Approver>,
    base: AgentConfig,
    system: Option<String>,
}

impl std::fmt::Debug for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollout")
            .field("model", &self.model)
            .field("base", &self.base)
            .finish()
    }
}

/// What every sample of one run shares.
struct Shared<'a> {
    rollout: &'a Rollout,
    writer: Mutex<ChainWriter>,
    progress: &'a dyn RolloutProgress,
    totals: std::sync::Mutex<Totals>,
    settings: RolloutSettings,
}

impl Rollout {
    /// A rollout with the agent settings every sample starts from (each sample gets its
    /// own seed and the task's tools).
    pub fn new(
        model: Arc<dyn ModelBackend>,
        gate: ToolGate,
        approver: Arc<dyn Approver>,
        base: AgentConfig,
        system: Option<String>,
    ) -> Self {
        Self {
            model,
            gate,
            approver,
            base,
            system,
        }
    }

    /// Rolls `tasks` out into `writer`'s file, skipping what `done` says it holds. Stops
    /// early (without error) when `cancel` fires: what was finished is written, and a later
    /// run resumes.
    pub async fn run(
        &self,
        tasks: &[LoadedTask],
        done: &Done,
        writer: ChainWriter,
        settings: RolloutSettings,
        progress: &dyn RolloutProgress,
        cancel: CancellationToken,
    ) -> Result<RolloutOutcome, RolloutError> {
        if settings.samples == 0 {
            return Err(RolloutError::Settings(
                "--samples must be at least 1".into(),
            ));
        }
        let shared = Shared {
            rollout: self,
            writer: Mutex::new(writer),
            progress,
            totals: std::sync::Mutex::new(Totals::default()),
            settings,
        };
        let pending = tasks
            .iter()
            .filter(|t| !done.groups.contains(&t.task.id))
            .map(|task| {
                let members = done.samples.get(&task.task.id).cloned().unwrap_or_default();
                let cancel = cancel.clone();
                let shared = &shared;
                async move {
                    if cancel.is_cancelled() {
                        return Ok(false);
                    }
                    shared.group(task, members, cancel).await
                }
            });
        let mut groups =
            futures::stream::iter(pending).buffer_unordered(settings.tasks_at_once.max(1));
        while let Some(r) = groups.next().await {
            r?;
        }
        drop(groups);
        let totals = shared.totals.lock().map(|t| t.clone()).unwrap_or_default();
        Ok(RolloutOutcome {
            totals,
            cancelled: cancel.is_cancelled(),
        })
    }
}

impl Shared<'_> {
    /// Draws one task's group (resuming from `members`), with DAPO-style extra rounds, and
    /// appends its `group` record. `Ok(false)`: cancelled before the group was complete.
    async fn group(
        &self,
        task: &LoadedTask,
        mut members: BTreeMap<usize, Member>,
        cancel: CancellationToken,
    ) -> Result<bool, RolloutError> {
        let g = self.settings.samples;
        // Round r holds sample indices r·G … r·G+G−1; with dynamic sampling a
        // zero-variance round is followed by a fresh one, up to the cap.
        let mut round = 0usize;
        let batch = loop {
            let range = round * g..(round + 1) * g;
            let missing: Vec<usize> = range.clone().filter(|i| !members.contains_key(i)).collect();
            let results = futures::stream::iter(missing.into_iter().map(|i| {
                let cancel = cancel.clone();
                async move { (i, self.sample(task, i, cancel).await) }
            }))
            .buffer_unordered(self.settings.samples_at_once.max(1))
            .collect::<Vec<_>>()
            .await;
            for (i, r) in results {
                if let Some(m) = r? {
                    members.insert(i, m);
                }
            }
            let batch: Vec<Member> = range.filter_map(|i| members.get(&i).cloned()).collect();
            if batch.len() < g {
                break None; // cancelled mid-task: the group is written on resume
            }
            let zero_variance = batch.windows(2).all(|w| w[0].reward == w[1].reward);
            if zero_variance && g > 1 && round < self.settings.dynamic_sampling {
                round += 1;
                if !members.contains_key(&(round * g)) {
                    self.progress.planned(g as u64);
                }
                continue;
            }
            break Some(batch);
        };
        let Some(batch) = batch else {
            return Ok(false);
        };
        if let Ok(mut t) = self.totals.lock() {
            t.groups += 1;
            t.zero_variance_groups +=
                usize::from(batch.windows(2).all(|w| w[0].reward == w[1].reward));
        }
        let mut record = Record::Group(group_record(task, &batch, round, self.settings.grpo_norm));
        self.writer.lock().await.append_record(&mut record)?;
        Ok(true)
    }

    /// Runs, verifies and records one sample. `Ok(None)`: cancelled (nothing written).
    async fn sample(
        &self,
        task: &LoadedTask,
        index: usize,
        cancel: CancellationToken,
    ) -> Result<Option<Member>, RolloutError> {
        let rollout = self.rollout;
        let mut config = rollout.base.clone();
        // Each (task, sample) has its own seed, derived from `--seed` (default 0): any sample
        // can be drawn again alone (`verity run --seed`), whatever else ran beside it.
        let base_seed = rollout.base.sampling.seed.unwrap_or(0);
        config.sampling.seed = Some(sample_seed(base_seed, &task.task.id, index));
        if let Some(t) = &task.task.tools {
            config.tool_allow_list = Some(t.clone());
        }
        config.call_only = task.task.call_only();
        let agent = Agent::new(
            rollout.model.clone(),
            rollout.gate.clone(),
            rollout.approver.clone(),
            config,
        );
        let tools = agent.tool_defs();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The recorder consumes events on its own task, beside the run.
        let collector = tokio::spawn(async move {
            let mut b = TrajectoryBuilder::new();
            while let Some(e) = rx.recv().await {
                b.observe(&e);
            }
            b
        });
        let outcome = agent
            .run(task.task.messages(rollout.system.as_deref()), tx, cancel)
            .await;
        let events = collector.await.unwrap_or_default();
        let outcome = outcome?;
        if outcome.stop == StopReason::Cancelled {
            return Ok(None);
        }
        // The run's own calls: a task's earlier exchanges (given history) are not graded
        // or counted as this run's.
        let calls: Vec<_> = outcome
            .messages
            .iter()
            .skip(outcome.prompt_messages)
            .flat_map(|m| m.tool_calls.iter().cloned())
            .collect();
        let mut record = record_run(
            events,
            &*rollout.model,
            agent.config(),
            &tools,
            &outcome,
            task.task_info(),
        )
        .await;
        let attempt = Attempt {
            answer: outcome.answer.clone(),
            calls,
            truncated: record.outcome.truncated,
        };
        let result = reward::score(&task.task.verifier, &task.task.ground_truth, &attempt).await;
        record.group_id = Some(task.task.id.clone());
        record.sample_index = Some(index);
        record.reward = Some(Reward::of(&result));
        let parse_failures = record.parse_failures.len();
        let drawn = generated_digest(&record);
        let truncated = record.outcome.truncated;
        let digest = self
            .writer
            .lock()
            .await
            .append_record(&mut Record::Traj(record))?;
        if let Ok(mut t) = self.totals.lock() {
            t.samples += 1;
            t.reward_sum += result.score;
            t.rewards.push(result.score);
            t.parse_failures += parse_failures;
            for c in &attempt.calls {
                *t.tool_calls.entry(c.name.clone()).or_default() += 1;
            }
            t.distinct
                .entry(task.task.id.clone())
                .or_default()
                .insert(drawn);
            let e = t.per_task.entry(task.task.id.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(result.passed);
            self.progress.sample_done(&t);
        }
        Ok(Some(Member {
            reward: result.score,
            digest,
            tokens: outcome.usage.completion_tokens,
            truncated,
        }))
    }
}

/// What a sample generated, as a digest: its sampled token ids where the backend gave
/// them, else its assistant texts and calls (to count distinct samples per group).
fn generated_digest(record: &crate::trajectory::TrajRecord) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for t in &record.turns {
        match &t.gen_ids {
            Some(ids) => ids.iter().for_each(|id| h.update(id.to_le_bytes())),
            None => h.update(t.text.as_bytes()),
        }
        h.update([0xff]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The `group` record of a task's members (the `round`-th round of its samples).
fn group_record(
    task: &LoadedTask,
    batch: &[Member],
    round: usize,
    norm: group::GrpoNorm,
) -> GroupRecord {
    let rewards: Vec<f64> = batch.iter().map(|m| m.reward).collect();
    let digests: Vec<String> = batch.iter().map(|m| m.digest.clone()).collect();
    let mut stats = group::stats(&rewards, norm);
    stats.generated_tokens = Some(batch.iter().map(|m| m.tokens).sum());
    stats.max_length = Some(batch.iter().map(|m| m.tokens).max().unwrap_or(0));
    stats.truncated = Some(batch.iter().filter(|m| m.truncated).count());
    stats.merkle_root = Some(group::merkle_root(&digests));
    stats.members = digests;
    // DAPO-style dynamic sampling: earlier zero-variance rounds stay in the file (as traj
    // records) but are not members of the group.
    stats.round = Some(round);
    stats.discarded_zero_variance_rounds = Some(round);
    GroupRecord {
        schema: SCHEMA.to_owned(),
        task: GroupTask {
            id: task.task.id.clone(),
        },
        group_id: task.task.id.clone(),
        verifier: task.task.verifier.clone(),
        stats,
        integrity: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_a_file_round_robin_and_bad_ones_say_the_form() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s.select((0..7).collect()), [1, 4]);
        for bad in ["3/3", "1", "a/2", "0/0"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains("expected I/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_task_and_sample_has_its_own_seed() {
        let mut seen = std::collections::HashSet::new();
        for task in ["a", "b", "ab"] {
            for i in 0..50 {
                assert!(seen.insert(sample_seed(0, task, i)), "{task} {i}");
            }
        }
        // Stable (records name it; the README's examples rely on it) and keyed by the base.
        assert_eq!(sample_seed(7, "a", 3), sample_seed(7, "a", 3));
        assert_ne!(sample_seed(7, "a", 3), sample_seed(8, "a", 3));
        // The task id is length-prefixed: ("a", "b…") and ("ab", …) cannot collide by
        // concatenation.
        assert_ne!(sample_seed(0, "a", 0), sample_seed(0, "", 0));
    }

    #[test]
    fn the_engine_batches_tasks_http_batches_samples() {
        let e = RolloutSettings::for_backend(4, 3, true);
        assert_eq!((e.tasks_at_once, e.samples_at_once), (3, 1));
        let h = RolloutSettings::for_backend(4, 3, false);
        assert_eq!((h.tasks_at_once, h.samples_at_once), (1, 3));
    }
}
