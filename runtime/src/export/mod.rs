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

pub use rows::{openai, trl, trl_tokens, verifiers, verl as verl_row};
pub use verl::schema as verl_schema;

use crate::trajectory::{chain, Record};

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
    /// verl: Parquet with the RLHF dataset columns and AgentLoop's token fields.
    Verl,
    /// verifiers-style rollouts with one step per model call (JSONL).
    Verifiers,
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

/// One record's row in `format` (`index`: the row's position, verl's `extra_info.index`).
pub fn row(
    format: ExportFormat,
    record: &crate::trajectory::TrajRecord,
    index: usize,
) -> Result<Value, rows::Skip> {
    match format {
        ExportFormat::Openai => openai(record),
        ExportFormat::Trl => trl(record),
        ExportFormat::TrlTokens => trl_tokens(record),
        ExportFormat::Verl => verl_row(record, index),
        ExportFormat::Verifiers => verifiers(record),
    }
}

/// Exports the `traj` records of `files` (merged, in order) to `out` (stdout when `None`;
/// verl needs a file).
pub fn export(
    files: &[PathBuf],
    format: ExportFormat,
    out: Option<&Path>,
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
    for f in files {
        let file = std::fs::File::open(f).map_err(io(f))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io(f))?;
            if line.trim().is_empty() {
                continue;
            }
            let damaged = |why: String| ExportError::Damaged {
                path: f.clone(),
                line: i + 1,
                why,
            };
            let record = Record::from_json_line(&line)
                .map_err(|e| damaged(format!("not a verity.traj/1 record: {e}")))?;
            let Record::Traj(r) = record else {
                continue;
            };
            match row(format, &r, report.written) {
                Ok(v) => {
                    sink.push(&v)?;
                    report.written += 1;
                }
                Err(why) => report.skipped.push(format!("{}: {why}", r.id)),
            }
        }
    }
    sink.finish()?;
    Ok(report)
}
