//! The append-only, hash-chained JSONL file: each record carries `integrity.prev` (the
//! previous record's digest, or `null` first) and `integrity.digest` (the canonical-JSON
//! SHA-256 of the record with `integrity.digest` left out). Appends are one `write` of one
//! line followed by `fsync`; a crash can only tear the last line, which [`verify`] reports
//! while every earlier record stays valid.

use std::{
    fs::OpenOptions,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

use super::{
    canonical::digest_without,
    record::{Integrity, Record},
};

/// Digest of a record: everything but `integrity.digest`.
pub fn record_digest(record: &Value) -> String {
    digest_without(record, "integrity", "digest")
}

/// Appends records to one file, continuing its chain.
#[derive(Debug)]
pub struct ChainWriter {
    path: PathBuf,
    file: std::fs::File,
    prev: Option<String>,
}

/// Why a file cannot be appended to.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The file's last line is not a complete record (a crash mid-write, or an edit).
    #[error("{path}: line {line} is not a complete record ({why}); run `verity verify {path}` — appending would hide the damage")]
    Torn {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A record could not be encoded as JSON (a bug: records are plain data).
    #[error("{path}: the record could not be encoded: {source}")]
    Encode {
        /// The file.
        path: String,
        /// The error.
        source: serde_json::Error,
    },
}

impl ChainWriter {
    /// Opens (creating) `path` and finds the digest its next record must chain to.
    pub fn open(path: &Path) -> Result<Self, ChainError> {
        let io_err = |source| ChainError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
        let (prev, lines) = last_record(&mut file).map_err(io_err)?;
        let prev = match prev {
            None => None,
            Some(Ok(v)) => v
                .get("integrity")
                .and_then(|i| i.get("digest"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            Some(Err(why)) => {
                return Err(ChainError::Torn {
                    path: path.display().to_string(),
                    line: lines,
                    why,
                })
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            prev,
        })
    }

    /// Seals `record` (sets `integrity.prev` and `integrity.digest`) and appends it.
    /// Returns its digest.
    pub fn append(&mut self, record: &mut Value) -> Result<String, ChainError> {
        if let Value::Object(m) = record {
            m.insert("integrity".into(), serde_json::json!({ "prev": self.prev }));
        }
        let d = record_digest(record);
        if let Some(Value::Object(i)) = record.get_mut("integrity") {
            i.insert("digest".into(), Value::String(d.clone()));
        }
        let mut line = serde_json::to_vec(record).map_err(|source| ChainError::Encode {
            path: self.path.display().to_string(),
            source,
        })?;
        line.push(b'\n');
        let io_err = |source| ChainError::Io {
            path: self.path.display().to_string(),
            source,
        };
        self.file.write_all(&line).map_err(io_err)?;
        self.file.sync_data().map_err(io_err)?;
        self.prev = Some(d.clone());
        Ok(d)
    }
}

impl ChainWriter {
    /// Seals a typed record (its `integrity` is set to the link written) and appends it.
    /// Returns its digest.
    pub fn append_record(&mut self, record: &mut Record) -> Result<String, ChainError> {
        let prev = self.prev.clone();
        let mut value = serde_json::to_value(&*record).map_err(|source| ChainError::Encode {
            path: self.path.display().to_string(),
            source,
        })?;
        let digest = self.append(&mut value)?;
        let integrity = Some(Integrity {
            prev,
            digest: digest.clone(),
        });
        match record {
            Record::Traj(t) => t.integrity = integrity,
            Record::Group(g) => g.integrity = integrity,
        }
        Ok(digest)
    }
}

/// The file's last non-empty line parsed (or why not), and the number of lines.
fn last_record(file: &mut std::fs::File) -> io::Result<(Option<Result<Value, String>>, usize)> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let ends_clean = text.is_empty() || text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let Some(last) = lines.iter().rev().find(|l| !l.trim().is_empty()) else {
        return Ok((None, lines.len()));
    };
    let parsed = serde_json::from_str::<Value>(last).map_err(|e| e.to_string());
    let parsed = match parsed {
        Ok(_) if !ends_clean => Err("no newline at the end: the write was cut short".into()),
        other => other,
    };
    Ok((Some(parsed), lines.len()))
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// Records whose digest and link check out.
    pub valid: usize,
    /// The first problem: 1-based line and what is wrong.
    pub first_error: Option<(usize, String)>,
    /// Records by kind (`traj`, `group`, ...).
    pub kinds: std::collections::BTreeMap<String, usize>,
}

/// A batch is hashed in parallel once it holds this many bytes (or lines).
const BATCH_BYTES: usize = 8 << 20;
const BATCH_LINES: usize = 4096;

/// One record, checked on its own (the link to the previous one is checked in order).
struct Checked {
    stated: String,
    link: Option<Option<String>>,
    kind: String,
}

fn check_record(line: &[u8]) -> Result<Checked, String> {
    let record: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON ({e})"))?;
    let integrity = record.get("integrity");
    let stated = integrity
        .and_then(|i| i.get("digest"))
        .and_then(Value::as_str)
        .ok_or("no integrity.digest")?;
    if record_digest(&record) != stated {
        return Err("its content does not match its digest (edited)".into());
    }
    Ok(Checked {
        stated: stated.to_owned(),
        link: integrity
            .and_then(|i| i.get("prev"))
            .map(|p| p.as_str().map(str::to_owned)),
        kind: record
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
    })
}

/// Checks a batch of lines on every core; results in line order.
fn check_batch(batch: &[(usize, Vec<u8>)], threads: usize) -> Vec<Result<Checked, String>> {
    if threads <= 1 || batch.len() < 2 {
        return batch.iter().map(|(_, l)| check_record(l)).collect();
    }
    let chunk = batch.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = batch
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, l)| check_record(l))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("the checker thread failed".to_owned())])
            })
            .collect()
    })
}

/// Checks every record's digest (in parallel: records are independent) and its link to
/// the one before (in order). The first bad line is reported, as a sequential check would.
pub fn verify(path: &Path) -> io::Result<ChainReport> {
    let file = std::fs::File::open(path)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    let mut report = ChainReport {
        valid: 0,
        first_error: None,
        kinds: Default::default(),
    };
    let mut prev: Option<String> = None;
    let mut line_no = 0;
    let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let mut buf = Vec::new();
        let n = reader.read_until(b'\n', &mut buf)?;
        let eof = n == 0;
        let mut torn = None;
        if !eof {
            line_no += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if buf.ends_with(b"\n") {
                batch_bytes += n;
                batch.push((line_no, buf));
            } else {
                torn = Some(line_no);
            }
        }
        if eof || torn.is_some() || batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_LINES {
            let results = check_batch(&batch, threads);
            for ((line, _), result) in batch.iter().zip(results) {
                let checked = match result {
                    Ok(c) => c,
                    Err(why) => {
                        report.first_error = Some((*line, why));
                        return Ok(report);
                    }
                };
                match checked.link {
                    Some(link) if link == prev => {}
                    Some(_) => {
                        report.first_error = Some((
                            *line,
                            "its integrity.prev is not the previous record's digest (a record \
                             was dropped, reordered or inserted before it)"
                                .into(),
                        ));
                        return Ok(report);
                    }
                    None => {
                        report.first_error = Some((*line, "no integrity.prev".into()));
                        return Ok(report);
                    }
                }
                *report.kinds.entry(checked.kind).or_default() += 1;
                report.valid += 1;
                prev = Some(checked.stated);
            }
            batch.clear();
            batch_bytes = 0;
            if let Some(line) = torn {
                report.first_error = Some((
                    line,
                    "the last line is torn (no newline: a write was cut short)".into(),
                ));
                return Ok(report);
            }
            if eof {
                return Ok(report);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn write_three(path: &Path) {
        let mut w = ChainWriter::open(path).unwrap();
        for i in 0..3 {
            w.append(&mut json!({"kind": "traj", "n": i})).unwrap();
        }
    }

    #[test]
    fn a_clean_chain_verifies_and_continues_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        write_three(&p);
        write_three(&p);
        let r = verify(&p).unwrap();
        assert_eq!((r.valid, r.first_error), (6, None));
    }

    #[test]
    fn edits_drops_reorders_and_torn_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        write_three(&p);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let check = |content: String, line: usize, needle: &str| {
            std::fs::write(&p, content).unwrap();
            let r = verify(&p).unwrap();
            let (l, why) = r.first_error.clone().unwrap();
            assert_eq!(l, line, "{why}");
            assert!(why.contains(needle), "{why}");
        };
        check(text.replace("\"n\":1", "\"n\":7"), 2, "edited");
        check(format!("{}\n{}\n", lines[0], lines[2]), 2, "dropped");
        check(
            format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
            1,
            "dropped, reordered",
        );
        check(
            format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..20]),
            3,
            "torn",
        );
        // Appending to a torn file is refused.
        let e = ChainWriter::open(&p).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
