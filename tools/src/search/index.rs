//! Building and opening BM25 indexes (tantivy). An index lives in its own directory under
//! the user data dir, with a manifest of the files it holds so a rebuild re-reads only
//! files that changed (and drops the ones that disappeared).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use serde::{Deserialize, Serialize};
use tantivy::{
    doc,
    schema::{Field, Schema, TextFieldIndexing, TextOptions, STORED, STRING},
    Index, IndexWriter, Term,
};

use super::extract::{is_indexable, passages, Passage};

/// Errors of building or opening an index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// No such index.
    #[error(
        "no search index '{name}' at {path}; build it with `verity index build PATH --name {name}`"
    )]
    Missing {
        /// Index name.
        name: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The index exists but cannot be read.
    #[error("search index '{name}' is unreadable ({detail}); rebuild it with `verity index rm {name}` and `verity index build PATH --name {name}`")]
    Corrupt {
        /// Index name.
        name: String,
        /// What went wrong.
        detail: String,
    },
    /// The source cannot be read or indexed.
    #[error("{0}")]
    Source(String),
    /// tantivy failed while writing.
    #[error("index write failed: {0}")]
    Write(String),
}

/// Where indexes live: `$VERITY_DATA_DIR/indexes`, else the XDG data dir.
pub fn indexes_dir() -> PathBuf {
    let base = std::env::var_os("VERITY_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("verity")
        });
    base.join("indexes")
}

/// Valid index names: letters, digits, `_`, `-`, `.` (no path tricks).
pub fn check_name(name: &str) -> Result<(), IndexError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IndexError::Source(format!(
            "index name {name:?} must be 1-64 characters of A-Z a-z 0-9 _ - . (not starting with .)"
        )))
    }
}

pub(crate) struct Fields {
    pub id: Field,
    pub source: Field,
    pub title: Field,
    pub heading: Field,
    pub text: Field,
    pub url: Field,
}

pub(crate) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(tantivy::schema::IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        source: b.add_text_field("source", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        heading: b.add_text_field("heading", text.clone()),
        text: b.add_text_field("text", text),
        url: b.add_text_field("url", STORED),
    };
    (b.build(), fields)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    root: String,
    files: BTreeMap<String, FileStamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    size: u64,
    mtime_ns: u128,
}

/// What a build did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildReport {
    /// Index name.
    pub name: String,
    /// Files (re)indexed.
    pub indexed_files: usize,
    /// Files unchanged since the last build.
    pub unchanged_files: usize,
    /// Files removed from the index.
    pub removed_files: usize,
    /// Passages added.
    pub passages: usize,
    /// Files skipped with the reason (unreadable, bad JSONL).
    pub skipped: Vec<String>,
    /// Index directory.
    pub path: PathBuf,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let m = fs::metadata(path).ok()?;
    let mtime_ns = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(FileStamp {
        size: m.len(),
        mtime_ns,
    })
}

fn collect_files(root: &Path) -> Result<Vec<(String, PathBuf)>, IndexError> {
    if root.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, root.to_owned())]);
    }
    if !root.is_dir() {
        return Err(IndexError::Source(format!(
            "{} is neither a directory nor a file",
            root.display()
        )));
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir)
            .map_err(|e| IndexError::Source(format!("cannot read {}: {e}", dir.display())))?;
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            let hidden = e.file_name().to_string_lossy().starts_with(['.', '_']);
            if ft.is_dir() {
                // `.git`, and generator output such as Sphinx's `_sources` (duplicates of
                // the pages) and `_static`, are not documents.
                if !hidden {
                    stack.push(p);
                }
            } else if ft.is_file() && is_indexable(&p) {
                let rel = p
                    .strip_prefix(root)
                    .map(|r| r.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.push((rel, p));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Builds (or incrementally updates) index `name` from a folder or file. `progress` is
/// called with (files done, files to index).
pub fn build(
    source: &Path,
    name: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BuildReport, IndexError> {
    check_name(name)?;
    let dir = indexes_dir().join(name);
    fs::create_dir_all(&dir).map_err(|e| IndexError::Write(format!("{}: {e}", dir.display())))?;
    let root = source
        .canonicalize()
        .map_err(|e| IndexError::Source(format!("{}: {e}", source.display())))?;
    let manifest_path = dir.join("verity-manifest.json");
    let mut manifest: Manifest = fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (schema, f) = schema();
    let index = if dir.join("meta.json").exists() && manifest.root == root.to_string_lossy() {
        // Updating a damaged index would panic inside tantivy: the same checks as search.
        open(name)?
    } else {
        // New index, or the same name pointed at another source: start over.
        for e in fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let _ = if e.path().is_dir() {
                fs::remove_dir_all(e.path())
            } else {
                fs::remove_file(e.path())
            };
        }
        manifest = Manifest {
            root: root.to_string_lossy().into_owned(),
            files: BTreeMap::new(),
        };
        Index::create_in_dir(&dir, schema).map_err(|e| IndexError::Write(e.to_string()))?
    };
    let mut writer: IndexWriter = index
        .writer(64 << 20)
        .map_err(|e| IndexError::Write(e.to_string()))?;

    let files = collect_files(&root)?;
    let mut report = BuildReport {
        name: name.to_owned(),
        path: dir.clone(),
        ..BuildReport::default()
    };
    let present: std::collections::BTreeSet<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
    let gone: Vec<String> = manifest
        .files
        .keys()
        .filter(|k| !present.contains(k.as_str()))
        .cloned()
        .collect();
    for rel in gone {
        writer.delete_term(Term::from_field_text(f.source, &rel));
        manifest.files.remove(&rel);
        report.removed_files += 1;
    }
    let changed: Vec<&(String, PathBuf)> = files
        .iter()
        .filter(|(rel, p)| manifest.files.get(rel) != stamp(p).as_ref())
        .collect();
    report.unchanged_files = files.len() - changed.len();
    for (i, (rel, path)) in changed.iter().enumerate() {
        progress(i, changed.len());
        writer.delete_term(Term::from_field_text(f.source, rel));
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                report.skipped.push(format!("{rel}: {e}"));
                continue;
            }
        };
        let ps: Vec<Passage> = match passages(rel, &bytes) {
            Ok(p) => p,
            Err(e) => {
                report.skipped.push(e.to_string());
                continue;
            }
        };
        for p in ps {
            writer
                .add_document(doc!(
                    f.id => p.id, f.source => rel.clone(), f.title => p.title,
                    f.heading => p.heading, f.text => p.text, f.url => p.url,
                ))
                .map_err(|e| IndexError::Write(e.to_string()))?;
            report.passages += 1;
        }
        if let Some(s) = stamp(path) {
            manifest.files.insert(rel.clone(), s);
        }
        report.indexed_files += 1;
    }
    progress(changed.len(), changed.len());
    writer
        .commit()
        .map_err(|e| IndexError::Write(e.to_string()))?;
    writer
        .wait_merging_threads()
        .map_err(|e| IndexError::Write(e.to_string()))?;
    let tmp = manifest_path.with_extension("json.tmp");
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .and_then(|()| fs::rename(&tmp, &manifest_path))
    .map_err(|e| IndexError::Write(format!("{}: {e}", manifest_path.display())))?;
    Ok(report)
}

/// An index on disk, for `verity index list`.
#[derive(Debug, Clone, Serialize)]
pub struct IndexInfo {
    /// Name.
    pub name: String,
    /// What it was built from.
    pub source: String,
    /// Files indexed.
    pub files: usize,
    /// Bytes on disk.
    pub bytes: u64,
}

/// Indexes under [`indexes_dir`].
pub fn list() -> Vec<IndexInfo> {
    let mut out = Vec::new();
    for e in fs::read_dir(indexes_dir())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        let m: Manifest = fs::read(e.path().join("verity-manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let bytes = fs::read_dir(e.path())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum();
        out.push(IndexInfo {
            name: e.file_name().to_string_lossy().into_owned(),
            source: m.root,
            files: m.files.len(),
            bytes,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Deletes an index.
pub fn remove(name: &str) -> Result<(), IndexError> {
    check_name(name)?;
    let dir = indexes_dir().join(name);
    if !dir.exists() {
        return Err(IndexError::Missing {
            name: name.into(),
            path: dir,
        });
    }
    fs::remove_dir_all(&dir).map_err(|e| IndexError::Write(format!("{}: {e}", dir.display())))
}

/// Opens index `name` for searching.
pub(crate) fn open(name: &str) -> Result<Index, IndexError> {
    check_name(name)?;
    let dir = indexes_dir().join(name);
    if !dir.join("meta.json").exists() {
        return Err(IndexError::Missing {
            name: name.into(),
            path: dir,
        });
    }
    let corrupt = |detail: String| IndexError::Corrupt {
        name: name.into(),
        detail,
    };
    let index = Index::open_in_dir(&dir).map_err(|e| corrupt(e.to_string()))?;
    // Every file's checksum, once per open (readers are kept): tantivy trusts its files
    // and asserts (panics) on some damaged ones rather than returning an error.
    let damaged = index
        .validate_checksum()
        .map_err(|e| corrupt(e.to_string()))?;
    if !damaged.is_empty() {
        let mut files: Vec<String> = damaged.iter().map(|p| p.display().to_string()).collect();
        files.sort();
        return Err(corrupt(format!(
            "checksum mismatch in {}",
            files.join(", ")
        )));
    }
    Ok(index)
}
