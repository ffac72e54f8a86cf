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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        reward::VerifierSpec,
        trajectory::{
            chain::ChainWriter,
            group,
            record::{example_record, GroupRecord, GroupTask, Reward, TaskRef},
            TaskInfo, SCHEMA,
        },
    };

    fn sample(task: &str, index: usize, reward: f64) -> Record {
        let mut r = example_record();
        r.integrity = None;
        r.task = TaskInfo::Task(Box::new(TaskRef {
            id: task.into(),
            hash: "sha256:0".into(),
            data_source: None,
            ground_truth: serde_json::json!(4),
            verifier: VerifierSpec::MATH,
            meta: serde_json::Value::Null,
        }));
        r.group_id = Some(task.into());
        r.sample_index = Some(index);
        r.reward = Some(Reward {
            total: reward,
            components: Vec::new(),
        });
        Record::Traj(r)
    }

    #[test]
    fn a_file_tells_which_samples_and_groups_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.jsonl");
        let mut w = ChainWriter::open(&path).unwrap();
        let mut digests = Vec::new();
        for (task, i, r) in [("a", 0, 1.0), ("a", 1, 0.0), ("b", 0, 1.0)] {
            digests.push(w.append_record(&mut sample(task, i, r)).unwrap());
        }
        let mut stats = group::stats(&[1.0], group::GrpoNorm::Verl);
        stats.members = vec![digests[2].clone()];
        w.append_record(&mut Record::Group(GroupRecord {
            schema: SCHEMA.into(),
            task: GroupTask { id: "b".into() },
            group_id: "b".into(),
            verifier: VerifierSpec::MATH,
            stats,
            integrity: None,
        }))
        .unwrap();
        // A record of `verity run` in the same file is no sample.
        let mut run = example_record();
        run.integrity = None;
        w.append_record(&mut Record::Traj(run)).unwrap();

        let done = scan(&path).unwrap();
        assert_eq!(done.samples["a"].len(), 2);
        assert_eq!(done.samples["a"][&1].reward, 0.0);
        assert_eq!(done.samples["a"][&0].digest, digests[0]);
        assert!(done.samples["a"][&0].truncated);
        assert!(done.groups.contains("b") && !done.groups.contains("a"));
        assert_eq!(done.samples.len(), 2);

        // A damaged file is refused, naming the line.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"a\"", "\"z\"", 1)).unwrap();
        let e = scan(&path).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("before resuming"), "{e}");
        // A missing file is an empty one.
        assert!(scan(&dir.path().join("none.jsonl"))
            .unwrap()
            .samples
            .is_empty());
    }
}
