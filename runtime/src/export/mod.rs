//! Trajectory files → the row formats trainers read: plain OpenAI chat, TRL conversational
//! and token-level, verl's Parquet, verifiers' rollouts. Every file's chain is verified
//! before anything is written: a tampered file is not exported. Records that cannot make a
//! row in a format (a token-level format and a run whose turns do not join) are skipped
//! and reported with why.

mod rows;
mod verl;

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use serde_json::Value;

pub use rows::{
    openai, split_messages, trl, trl_sft, trl_tokens, verifiers, verl as verl_row, Membership, Row,
    Skip,
};
pub use verl::schema as verl_schema;

use std::collections::HashMap;

use crate::trajectory::{chain, Record, TrajRecord};

/// A trainer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `{messages, tools, reward}` per run: plain OpenAI chat format (JSONL).
    Openai,
    /// TRL conversational: `{prompt, completion, tools, reward}` (JSONL).
    Trl,
    /// TRL token level: `{prompt_ids, completion_ids, logprobs, env_mask, reward}` from the
    /// exact recorded ids (JSONL).
    TrlTokens,
    /// Pre-tokenised SFT for TRL's SFTTrainer: `{input_ids, assistant_masks,
    /// completion_mask}` (JSONL).
    TrlSft,
    /// verl: a Parquet prompt set, one row per task, scored by `verity_reward.py`.
    Verl,
    /// verifiers' `RolloutOutput` rows, one trajectory step per model call (JSONL).
    Verifiers,
}

/// What an export keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    /// Also export samples that are not members of their group: dynamic-sampling rounds
    /// the group discarded, and samples of groups never closed.
    pub include_discarded: bool,
    /// Only runs whose reward is at least this (rejection-sampling fine-tuning); runs
    /// without a reward are left out too when it is set.
    pub min_reward: Option<f64>,
}

/// Why an export failed (nothing is exported from a damaged file).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file's hash chain is broken.
    #[error("{path}: line {line}: {why}; not exporting a damaged file")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// verl's Parquet needs a file to write to.
    #[error("--format verl writes Parquet: give the file with --out FILE.parquet")]
    ParquetNeedsFile,
    /// The Parquet writer failed.
    #[error("Parquet: {0}")]
    Parquet(String),
}

/// What an export wrote.
#[derive(Debug, Default, Clone)]
pub struct ExportReport {
    /// Rows written.
    pub written: usize,
    /// Records skipped: `id: why`.
    pub skipped: Vec<String>,
}

/// Where rows go.
enum Sink {
    Jsonl(Box<dyn Write>, PathBuf),
    Parquet(Box<verl::VerlWriter>),
}

impl Sink {
    fn push(&mut self, row: &Value) -> Result<(), ExportError> {
        match self {
            Sink::Jsonl(w, path) => {
                let io = |source| ExportError::Io {
                    path: path.clone(),
                    source,
                };
                serde_json::to_writer(&mut *w, row).map_err(|e| io(e.into()))?;
                w.write_all(b"\n").map_err(io)
            }
            Sink::Parquet(p) => p.push(row),
        }
    }

    fn finish(self) -> Result<(), ExportError> {
        match self {
            Sink::Jsonl(mut w, path) => {
                w.flush().map_err(|source| ExportError::Io { path, source })
            }
            Sink::Parquet(p) => p.finish(),
        }
    }
}

/// One record's row in `format`.
pub fn row(format: ExportFormat, row: &Row<'_>) -> Result<Value, Skip> {
    match format {
        ExportFormat::Openai => openai(row),
        ExportFormat::Trl => trl(row),
        ExportFormat::TrlTokens => trl_tokens(row),
        ExportFormat::TrlSft => trl_sft(row),
        ExportFormat::Verl => verl_row(row),
        ExportFormat::Verifiers => verifiers(row),
    }
}

/// Every non-blank line of `files` (merged, in order) with its file and 1-based number.
fn each_line(
    files: &[PathBuf],
    mut f: impl FnMut(&str, (&Path, usize)) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    for file in files {
        let io = |source| ExportError::Io {
            path: file.clone(),
            source,
        };
        let handle = std::fs::File::open(file).map_err(io)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, handle);
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(io)? == 0 {
                break;
            }
            number += 1;
            if !line.trim().is_empty() {
                f(&line, (file, number))?;
            }
        }
    }
    Ok(())
}

/// Group members by record digest, and the tasks in order of first appearance.
#[derive(Debug, Default)]
struct Groups {
    members: HashMap<String, Membership>,
    task_index: HashMap<String, usize>,
}

/// The fields of a line the group pass needs; everything else is skipped unparsed (a
/// trajectory record is ~25 KB of token ids; building it twice doubled the export time).
#[derive(serde::Deserialize)]
struct Peek {
    kind: String,
    #[serde(default)]
    task: Option<PeekTask>,
}

#[derive(serde::Deserialize)]
struct PeekTask {
    #[serde(default)]
    id: Option<String>,
}

impl Groups {
    fn read(files: &[PathBuf]) -> Result<Self, ExportError> {
        let mut g = Groups::default();
        each_line(files, |line, at| {
            let damaged = |e: serde_json::Error| ExportError::Damaged {
                path: at.0.to_path_buf(),
                line: at.1,
                why: format!("not a verity.traj/1 record: {e}"),
            };
            let peek: Peek = serde_json::from_str(line).map_err(damaged)?;
            if peek.kind != "group" {
                if let Some(id) = peek.task.and_then(|t| t.id) {
                    let next = g.task_index.len();
                    g.task_index.entry(id).or_insert(next);
                }
                return Ok(());
            }
            match Record::from_json_line(line).map_err(damaged)? {
                Record::Group(group) => {
                    let s = &group.stats;
                    let a = &s.advantages;
                    for (k, digest) in s.members.iter().enumerate() {
                        g.members.insert(
                            digest.clone(),
                            Membership {
                                group_id: group.group_id.clone(),
                                round: s.round.unwrap_or(0),
                                member: k,
                                group_size: s.members.len(),
                                grpo: a.grpo.get(k).copied().unwrap_or(0.0),
                                dr_grpo: a.dr_grpo.get(k).copied().unwrap_or(0.0),
                                rloo: a.rloo.get(k).copied().unwrap_or(0.0),
                                grpo_norm: a.grpo_norm,
                            },
                        );
                    }
                }
                Record::Traj(_) => {}
            }
            Ok(())
        })?;
        Ok(g)
    }
}

/// Whether `r` is exported, or why not.
fn keep(r: &TrajRecord, membership: Option<&Membership>, opts: ExportOptions) -> Result<(), Skip> {
    if r.group_id.is_some() && membership.is_none() && !opts.include_discarded {
        return Err(
            "not a member of its group (a discarded dynamic-sampling round, or a \
                    group never closed); --include-discarded exports it"
                .into(),
        );
    }
    if let Some(min) = opts.min_reward {
        match r.reward.as_ref().map(|r| r.total) {
            Some(x) if x >= min => {}
            Some(x) => return Err(format!("reward {x} below --min-reward {min}")),
            None => return Err(format!("no reward (--min-reward {min})")),
        }
    }
    Ok(())
}

/// Exports the `traj` records of `files` (merged, in order) to `out` (stdout when `None`;
/// verl needs a file).
pub fn export(
    files: &[PathBuf],
    format: ExportFormat,
    out: Option<&Path>,
    opts: ExportOptions,
) -> Result<ExportReport, ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    // Check every file before writing anything.
    for f in files {
        let report = chain::verify(f).map_err(io(f))?;
        if let Some((line, why)) = report.first_error {
            return Err(ExportError::Damaged {
                path: f.clone(),
                line,
                why,
            });
        }
    }
    let groups = Groups::read(files)?;
    let mut sink = match (format, out) {
        (ExportFormat::Verl, Some(p)) => Sink::Parquet(Box::new(verl::VerlWriter::create(p)?)),
        (ExportFormat::Verl, None) => return Err(ExportError::ParquetNeedsFile),
        (_, Some(p)) => Sink::Jsonl(
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).map_err(io(p))?,
            )),
            p.to_path_buf(),
        ),
        (_, None) => Sink::Jsonl(
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            PathBuf::from("<stdout>"),
        ),
    };
    let mut report = ExportReport::default();
    // verl: one prompt row per task.
    let mut tasks_written = std::collections::HashSet::new();
    each_line(files, |line, (path, number)| {
        let damaged = |e: serde_json::Error| ExportError::Damaged {
            path: path.to_path_buf(),
            line: number,
            why: format!("not a verity.traj/1 record: {e}"),
        };
        // verl keeps one row per task: later samples of a written task are not parsed.
        if format == ExportFormat::Verl {
            let peek: Peek = serde_json::from_str(line).map_err(damaged)?;
            if peek.kind != "traj"
                || peek
                    .task
                    .and_then(|t| t.id)
                    .is_some_and(|id| tasks_written.contains(&id))
            {
                return Ok(());
            }
        }
        let Record::Traj(r) = Record::from_json_line(line).map_err(damaged)? else {
            return Ok(());
        };
        let membership = r
            .integrity
            .as_ref()
            .and_then(|i| groups.members.get(&i.digest));
        if let Err(why) = keep(&r, membership, opts) {
            report.skipped.push(format!("{}: {why}", r.id));
            return Ok(());
        }
        let task_index = r
            .task
            .id()
            .and_then(|id| groups.task_index.get(id).copied());
        if format == ExportFormat::Verl {
            if let Some(id) = r.task.id() {
                if !tasks_written.insert(id.to_owned()) {
                    return Ok(());
                }
            }
        }
        let args = Row {
            record: &r,
            membership,
            task_index,
        };
        match row(format, &args) {
            Ok(v) => {
                sink.push(&v)?;
                report.written += 1;
            }
            Err(why) => report.skipped.push(format!("{}: {why}", r.id)),
        }
        Ok(())
    })?;
    sink.finish()?;
    Ok(report)
}
