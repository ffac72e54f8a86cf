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

/// A file to read from a checked position on (the start, or where an earlier export ended).
struct Source<'a> {
    path: &'a Path,
    from: &'a chain::ChainMark,
}

/// Every non-blank line of the sources (merged, in order) with its file and 1-based number.
fn each_line(
    sources: &[Source<'_>],
    mut f: impl FnMut(&str, (&Path, usize)) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    for Source { path: file, from } in sources {
        let io = |source| ExportError::Io {
            path: file.to_path_buf(),
            source,
        };
        let mut handle = std::fs::File::open(file).map_err(io)?;
        std::io::Seek::seek(&mut handle, std::io::SeekFrom::Start(from.offset)).map_err(io)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, handle);
        let mut line = String::new();
        let mut number = from.line;
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
    fn read(sources: &[Source<'_>]) -> Result<Self, ExportError> {
        let mut g = Groups::default();
        each_line(sources, |line, at| {
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
    let start = chain::ChainMark::default();
    let sources: Vec<Source<'_>> = files
        .iter()
        .map(|path| Source { path, from: &start })
        .collect();
    export_sources(&sources, format, out, opts).map(|(report, _)| report)
}

/// [`export`] of the records one file gained after `mark` (the file's start, or the end of
/// an earlier `export_appended` of it): only those are checked and read, so a process that
/// appends to a file and exports each batch it added reads every record once. Groups must
/// lie wholly after the mark (a batch closes the groups it opens), and rows number tasks
/// from the mark on (`index`, `example_id`). Returns the file's new end.
pub fn export_appended(
    file: &Path,
    mark: &chain::ChainMark,
    format: ExportFormat,
    out: Option<&Path>,
    opts: ExportOptions,
) -> Result<(ExportReport, chain::ChainMark), ExportError> {
    let (report, mut ends) = export_sources(
        &[Source {
            path: file,
            from: mark,
        }],
        format,
        out,
        opts,
    )?;
    Ok((report, ends.pop().unwrap_or_else(|| mark.clone())))
}

fn export_sources(
    sources: &[Source<'_>],
    format: ExportFormat,
    out: Option<&Path>,
    opts: ExportOptions,
) -> Result<(ExportReport, Vec<chain::ChainMark>), ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    // Check every file before writing anything.
    let mut ends = Vec::with_capacity(sources.len());
    for s in sources {
        let (report, end) = chain::verify_appended(s.path, s.from).map_err(io(s.path))?;
        if let Some((line, why)) = report.first_error {
            return Err(ExportError::Damaged {
                path: s.path.to_path_buf(),
                line,
                why,
            });
        }
        ends.push(end);
    }
    let groups = Groups::read(sources)?;
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
    each_line(sources, |line, (path, number)| {
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
    Ok((report, ends))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trajectory::{chain::ChainWriter, record::example_record};

    fn append(path: &Path, n: usize) {
        let mut w = ChainWriter::open(path).unwrap();
        for _ in 0..n {
            let mut r = example_record();
            r.integrity = None;
            r.group_id = None;
            w.append_record(&mut Record::Traj(r)).unwrap();
        }
    }

    #[test]
    fn an_appended_export_reads_only_what_was_added_since() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs.jsonl");
        let rows = dir.path().join("rows.jsonl");
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        append(&runs, 2);
        let opts = ExportOptions::default();
        let start = chain::ChainMark::default();
        let (first, mark) =
            export_appended(&runs, &start, ExportFormat::Openai, Some(&rows), opts).unwrap();
        assert_eq!((first.written, lines(&rows)), (2, 2));
        append(&runs, 1);
        let (next, end) =
            export_appended(&runs, &mark, ExportFormat::Openai, Some(&rows), opts).unwrap();
        assert_eq!((next.written, lines(&rows)), (1, 1));
        assert_eq!(end.line, 3);
        // The whole file still exports whole.
        let all = export(
            std::slice::from_ref(&runs),
            ExportFormat::Openai,
            Some(&rows),
            opts,
        )
        .unwrap();
        assert_eq!(all.written, 3);
        // What was added is checked before anything is written.
        let text = std::fs::read_to_string(&runs).unwrap();
        let last = text.lines().last().unwrap().replace("\"role\"", "\"rôle\"");
        std::fs::remove_file(chain::head_path(&runs)).unwrap();
        std::fs::write(&runs, format!("{text}{last}\n")).unwrap();
        match export_appended(&runs, &end, ExportFormat::Openai, Some(&rows), opts) {
            Err(ExportError::Damaged { line, .. }) => assert_eq!(line, 4),
            other => panic!("a damaged append was exported: {other:?}"),
        }
    }
}
