//! What an existing rollout file already holds, so a rollout resumes where it stopped:
//! finished groups are skipped, a group's finished samples are kept.

use std::{
    collections::{BTreeMap, HashSet},
    io::BufRead,
    path::Path,
};

use super::RolloutError;
use crate::trajectory::{chain, Record};

/// A finished sample, as its group record needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Its reward.
    pub reward: f64,
    /// Its record's digest.
    pub digest: String,
    /// Tokens it generated.
    pub tokens: u64,
    /// Whether its last reply was cut at the token limit.
    pub truncated: bool,
}

/// The samples and groups already in a file.
#[derive(Debug, Default)]
pub struct Done {
    /// task id → sample index → member
    pub samples: BTreeMap<String, BTreeMap<usize, Member>>,
    /// Tasks whose group record is written.
    pub groups: HashSet<String>,
}

/// Reads `path` (a missing file is empty). A damaged chain is refused: resuming on top of
/// it would bury the damage.
pub fn scan(path: &Path) -> Result<Done, RolloutError> {
    let mut done = Done::default();
    if !path.exists() {
        return Ok(done);
    }
    let io = |source| RolloutError::Io {
        path: path.to_path_buf(),
        source,
    };
    let report = chain::verify(path).map_err(io)?;
    if let Some((line, why)) = report.first_error {
        return Err(RolloutError::Damaged {
            path: path.to_path_buf(),
            line,
            why,
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = Record::from_json_line(&line).map_err(|e| RolloutError::Damaged {
            path: path.to_path_buf(),
            line: i + 1,
            why: format!("not a verity.traj/1 record: {e}"),
        })?;
        match record {
            Record::Traj(t) => {
                // Records of `verity run` in the same file belong to no task: not samples.
                let (Some(task), Some(index)) = (t.task.id(), t.sample_index) else {
                    continue;
                };
                done.samples.entry(task.to_owned()).or_default().insert(
                    index,
                    Member {
                        reward: t.reward.as_ref().map_or(0.0, |r| r.total),
                        digest: t
                            .integrity
                            .as_ref()
                            .map(|i| i.digest.clone())
                            .unwrap_or_default(),
                        tokens: t.outcome.completion_tokens,
                        truncated: t.outcome.truncated,
                    },
                );
            }
            Record::Group(g) => {
                done.groups.insert(g.task.id);
            }
        }
    }
    Ok(done)
}
