//! The append-only, hash-chained JSONL file: each record carries `integrity.prev` (the
//! previous record's digest, or `null` first) and `integrity.digest` (the canonical-JSON
//! SHA-256 of the record with `integrity.digest` left out). Appends are one `write` of one
//! line followed by `fsync`; a crash can only tear the last line, which [`verify`] reports
//! while every earlier record stays valid.
//!
//! Beside the file, `FILE.head` names the digest of its last record, rewritten (write and
//! rename) after each append. A chain alone cannot show that records were cut off its end:
//! the shorter file is a valid chain. With the head file, [`verify`] can: the file must
//! contain the record the head names, as its last one (or the one before: a crash between
//! the append and the head's update). Anyone who can write both files can still rewrite
//! both; `verity verify --expect-head DIGEST` checks against a head kept elsewhere.

use std::{
    fs::OpenOptions,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

use super::{
    canonical::digest_without_keys,
    record::{Integrity, Record},
};

/// `FILE.head`: the digest of `FILE`'s last record.
pub fn head_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// The head file's content.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct HeadFile {
    /// Always `verity.head/1`.
    schema: String,
    /// The last record's digest.
    head: String,
}

/// Digest of a record: everything but `integrity.digest` and `integrity.signature`.
pub fn record_digest(record: &Value) -> String {
    digest_without_keys(record, "integrity", &["digest", "signature"])
}

/// Appends records to one file, continuing its chain.
#[derive(Debug)]
pub struct ChainWriter {
    path: PathBuf,
    file: std::fs::File,
    prev: Option<String>,
    /// Signs each record's digest, when given.
    signer: Option<std::sync::Arc<super::sign::Signer>>,
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
    /// The file's head file names a record the file does not end with.
    #[error("{path}: {why}; run `verity verify {path}` — appending would hide the damage")]
    CutOff {
        /// The file.
        path: String,
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
        let link = |v: &Value, key: &str| {
            v.get("integrity")
                .and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (prev, before) = match prev {
            None => (None, None),
            Some(Ok(v)) => (link(&v, "digest"), link(&v, "prev")),
            Some(Err(why)) => {
                return Err(ChainError::Torn {
                    path: path.display().to_string(),
                    line: lines,
                    why,
                })
            }
        };
        // Appending to a file whose end was cut off would rewrite its head and bury that.
        let stated = read_head(path).map_err(|why| ChainError::CutOff {
            path: path.display().to_string(),
            why,
        })?;
        if let Some(stated) = stated {
            if Some(&stated) != prev.as_ref() && Some(&stated) != before.as_ref() {
                return Err(ChainError::CutOff {
                    path: path.display().to_string(),
                    why: format!(
                        "its head file names {stated}, which is not its last record: records \
                         were cut off the end"
                    ),
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            prev,
            signer: None,
        })
    }

    /// Signs every record appended from now on.
    pub fn with_signer(mut self, signer: std::sync::Arc<super::sign::Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Rewrites `FILE.head` to name the last record (a temporary file renamed over it, so
    /// a reader sees the old head or the new one, never half of one).
    fn write_head(&self, digest: &str) -> io::Result<()> {
        let head = head_path(&self.path);
        let mut tmp = head.as_os_str().to_owned();
        tmp.push(".tmp");
        let body = serde_json::to_vec(&HeadFile {
            schema: "verity.head/1".into(),
            head: digest.to_owned(),
        })
        .map_err(io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &head)
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
            if let Some(s) = &self.signer {
                i.insert(
                    "signature".into(),
                    serde_json::to_value(s.sign(&d)).unwrap_or(Value::Null),
                );
            }
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
        // After the record is durable: the head may lag the file by one record after a
        // crash (which `verify` allows), never run ahead of it.
        self.write_head(&d).map_err(io_err)?;
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
        let signature = value
            .get("integrity")
            .and_then(|i| i.get("signature"))
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let integrity = Some(Integrity {
            prev,
            digest: digest.clone(),
            signature,
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
    /// The last valid record's digest (the file's head).
    pub head: Option<String>,
    /// What `FILE.head` says of the file's end.
    pub head_file: HeadCheck,
    /// Records by signing key (`ed25519:…`; valid signatures only).
    pub signed_by: std::collections::BTreeMap<String, usize>,
    /// Records without a signature.
    pub unsigned: usize,
}

/// The file's end against its head file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadCheck {
    /// No head file (written by Verity before it kept one, or removed): a cut-off tail
    /// cannot be detected without `--expect-head`.
    #[default]
    Missing,
    /// The head file names the last record.
    Matches,
    /// The head names the record before the last (a crash between an append and the head's
    /// update).
    OneBehind,
}

/// The digest `FILE.head` names, if there is a readable head file.
fn read_head(path: &Path) -> Result<Option<String>, String> {
    let p = head_path(path);
    match std::fs::read(&p) {
        Ok(body) => serde_json::from_slice::<HeadFile>(&body)
            .map(|h| Some(h.head))
            .map_err(|e| format!("{} is not a head file ({e})", p.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// A batch is hashed in parallel once it holds this many bytes (or lines).
const BATCH_BYTES: usize = 8 << 20;
const BATCH_LINES: usize = 4096;

/// One record, checked on its own (the link to the previous one is checked in order).
struct Checked {
    stated: String,
    link: Option<Option<String>>,
    kind: String,
    /// The key that signed it (its signature checked), if signed.
    signer: Option<String>,
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
    let signer = match integrity.and_then(|i| i.get("signature")) {
        None => None,
        Some(s) => {
            let sig: super::record::Signature = serde_json::from_value(s.clone())
                .map_err(|e| format!("integrity.signature is not a signature ({e})"))?;
            if !super::sign::verify(stated, &sig) {
                return Err(format!(
                    "its signature by {} does not verify (signed content was changed)",
                    sig.key
                ));
            }
            Some(sig.key)
        }
    };
    Ok(Checked {
        signer,
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
    verify_signed(path, None)
}

/// [`verify`], and with `expect_key` (`ed25519:<hex>`) every record must carry a valid
/// signature by that key: the first that does not is the report's error.
pub fn verify_signed(path: &Path, expect_key: Option<&str>) -> io::Result<ChainReport> {
    verify_after(path, expect_key, &ChainMark::default()).map(|(report, _)| report)
}

/// Where a checked file ended: the byte offset and line after its last record, and the
/// digests the next record must chain to. A process that appends to a file it has checked
/// (`verity train grpo`, iteration after iteration) checks only what it appended since —
/// re-checking the whole growing file made every iteration slower than the one before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMark {
    /// Bytes of the file up to and including the last checked record's newline.
    pub offset: u64,
    /// Lines up to there (the next record is on line `line + 1`).
    pub line: usize,
    /// The last checked record's digest (None at the start of a file).
    pub head: Option<String>,
    /// The digest of the record before it (for a head file one record behind).
    pub before_head: Option<String>,
}

/// Checks the records after `mark` (from [`verify_appended`] or [`ChainMark::default`] for
/// the whole file) as [`verify`] does: the first one must chain to `mark.head`. The report
/// counts the new records only; on success the second value marks the file's new end (on a
/// failure it is `mark` unchanged). The bytes before the mark are trusted, not re-read: the
/// caller must have checked them and be the file's only writer since.
pub fn verify_appended(path: &Path, mark: &ChainMark) -> io::Result<(ChainReport, ChainMark)> {
    verify_after(path, None, mark)
}

fn verify_after(
    path: &Path,
    expect_key: Option<&str>,
    mark: &ChainMark,
) -> io::Result<(ChainReport, ChainMark)> {
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() < mark.offset {
        return Ok((
            ChainReport {
                valid: 0,
                first_error: Some((
                    mark.line,
                    format!(
                        "the file is shorter ({} bytes) than when it was last checked ({} \
                         bytes): records were cut off or the file was replaced",
                        file.metadata()?.len(),
                        mark.offset
                    ),
                )),
                kinds: Default::default(),
                head: None,
                head_file: HeadCheck::Missing,
                signed_by: Default::default(),
                unsigned: 0,
            },
            mark.clone(),
        ));
    }
    file.seek(SeekFrom::Start(mark.offset))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = mark.offset;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    let mut report = ChainReport {
        valid: 0,
        first_error: None,
        kinds: Default::default(),
        head: None,
        head_file: HeadCheck::Missing,
        signed_by: Default::default(),
        unsigned: 0,
    };
    let stated_head = match read_head(path) {
        Ok(h) => h,
        Err(why) => {
            report.first_error = Some((0, why));
            return Ok((report, mark.clone()));
        }
    };
    // The record before the last, for a head one behind.
    let mut before_last: Option<String> = mark.before_head.clone();
    let mut prev: Option<String> = mark.head.clone();
    let mut line_no = mark.line;
    let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let mut buf = Vec::new();
        let n = reader.read_until(b'\n', &mut buf)?;
        offset += n as u64;
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
                        return Ok((report, mark.clone()));
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
                        return Ok((report, mark.clone()));
                    }
                    None => {
                        report.first_error = Some((*line, "no integrity.prev".into()));
                        return Ok((report, mark.clone()));
                    }
                }
                if let Some(want) = expect_key {
                    if checked.signer.as_deref() != Some(want) {
                        report.first_error = Some((
                            *line,
                            match &checked.signer {
                                None => format!("it is not signed (--key {want})"),
                                Some(k) => format!("it is signed by {k}, not by --key {want}"),
                            },
                        ));
                        return Ok((report, mark.clone()));
                    }
                }
                match checked.signer {
                    Some(k) => *report.signed_by.entry(k).or_default() += 1,
                    None => report.unsigned += 1,
                }
                *report.kinds.entry(checked.kind).or_default() += 1;
                report.valid += 1;
                before_last = prev.take();
                prev = Some(checked.stated);
            }
            batch.clear();
            batch_bytes = 0;
            if let Some(line) = torn {
                report.first_error = Some((
                    line,
                    "the last line is torn (no newline: a write was cut short)".into(),
                ));
                return Ok((report, mark.clone()));
            }
            if eof {
                report.head = prev.clone();
                if let Some(stated) = stated_head {
                    if prev.as_deref() == Some(stated.as_str()) {
                        report.head_file = HeadCheck::Matches;
                    } else if before_last.as_deref() == Some(stated.as_str()) {
                        report.head_file = HeadCheck::OneBehind;
                    } else {
                        report.first_error = Some((
                            line_no + 1,
                            format!(
                                "the file ends at record {} but its head file names {stated}, \
                                 which is not its last record: records were cut off the end \
                                 (or the file was replaced)",
                                report.valid
                            ),
                        ));
                        return Ok((report, mark.clone()));
                    }
                }
                let end = ChainMark {
                    offset,
                    line: line_no,
                    head: prev,
                    before_head: before_last,
                };
                return Ok((report, end));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_head_file_catches_records_cut_off_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        write_three(&path);
        let r = verify(&path).unwrap();
        assert_eq!(
            (r.first_error.clone(), r.head_file.clone()),
            (None, HeadCheck::Matches)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The head one behind (a crash between the append and the head's update): fine.
        let second: Value = serde_json::from_str(lines[1]).unwrap();
        let head = head_path(&path);
        let saved = std::fs::read(&head).unwrap();
        std::fs::write(
            &head,
            json!({"schema": "verity.head/1", "head": second["integrity"]["digest"]}).to_string(),
        )
        .unwrap();
        assert_eq!(verify(&path).unwrap().head_file, HeadCheck::OneBehind);
        assert!(ChainWriter::open(&path).is_ok());
        std::fs::write(&head, saved).unwrap();
        // The last record cut off: caught, and not appended to.
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
        let r = verify(&path).unwrap();
        let (line, why) = r.first_error.unwrap();
        assert_eq!(line, 3);
        assert!(why.contains("cut off the end"), "{why}");
        let e = ChainWriter::open(&path).unwrap_err().to_string();
        assert!(e.contains("cut off the end"), "{e}");
        // A damaged head file is named.
        std::fs::write(&head, "{").unwrap();
        let why = verify(&path).unwrap().first_error.unwrap().1;
        assert!(why.contains("not a head file"), "{why}");
        // No head file: nothing to compare with.
        std::fs::remove_file(&head).unwrap();
        let r = verify(&path).unwrap();
        assert_eq!((r.first_error, r.head_file), (None, HeadCheck::Missing));
    }

    fn write_three(path: &Path) {
        let mut w = ChainWriter::open(path).unwrap();
        for i in 0..3 {
            w.append(&mut json!({"kind": "traj", "n": i})).unwrap();
        }
    }

    #[test]
    fn appended_records_are_checked_from_where_the_last_check_ended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        write_three(&p);
        let (first, mark) = verify_appended(&p, &ChainMark::default()).unwrap();
        assert_eq!((first.valid, first.first_error), (3, None));
        assert_eq!(mark.line, 3);
        assert_eq!(mark.offset, std::fs::metadata(&p).unwrap().len());
        write_three(&p);
        let (more, end) = verify_appended(&p, &mark).unwrap();
        assert_eq!((more.valid, more.first_error), (3, None));
        assert_eq!(more.head_file, HeadCheck::Matches);
        // The same end as a check of the whole file; nothing new leaves it where it is.
        assert_eq!(end, verify_appended(&p, &ChainMark::default()).unwrap().1);
        let (none, same) = verify_appended(&p, &end).unwrap();
        assert_eq!((none.valid, none.first_error, &same), (0, None, &end));

        // A record that does not chain to the mark's head is named by its line.
        let q = dir.path().join("other.jsonl");
        write_three(&q);
        let stranger = std::fs::read_to_string(&q).unwrap();
        let good = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_file(head_path(&p)).unwrap();
        std::fs::write(&p, format!("{good}{}\n", stranger.lines().nth(1).unwrap())).unwrap();
        let (bad, kept) = verify_appended(&p, &end).unwrap();
        let (line, why) = bad.first_error.unwrap();
        assert_eq!(line, 7, "{why}");
        assert!(why.contains("integrity.prev"), "{why}");
        assert_eq!(kept, end);
        // A file shorter than at its last check was cut or replaced.
        std::fs::write(&p, stranger).unwrap();
        let (cut, _) = verify_appended(&p, &end).unwrap();
        let (_, why) = cut.first_error.unwrap();
        assert!(why.contains("shorter"), "{why}");
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
