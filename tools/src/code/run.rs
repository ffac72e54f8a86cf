//! One execution: a fresh instance with its own WASI context, scratch directory, output
//! pipes and limits. Nothing of the host is visible but the scratch directory.

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::{p1::WasiP1Ctx, p2::pipe::MemoryInputPipe, FsPerms, I32Exit, WasiCtxBuilder};

use super::{engine::PythonEngine, pipe::TruncatingPipe};

const DRIVER: &str = include_str!("driver.py");

/// A fresh random 128-bit token (hex): the one-shot value marker's, and the code
/// verifier's proof that its tests ran to the end.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: still unpredictable enough to tell a marker from echoed text.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        b[..8].copy_from_slice(&h.finish().to_le_bytes());
    }
    hex::encode(b)
}

/// Store data: the WASI context and the memory limiter.
pub(crate) struct State {
    pub(crate) wasi: WasiP1Ctx,
    limiter: MemoryCap,
    pub(crate) quota: super::quota::DiskQuota,
}

/// Caps linear memory and remembers whether the cap was what stopped a growth.
struct MemoryCap {
    max_bytes: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Limits of one run (already the tightest of tool, policy and request).
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Wall-clock time.
    pub wall: Duration,
    /// Linear memory of the interpreter.
    pub memory_bytes: usize,
    /// Bytes kept per output stream.
    pub output_bytes: usize,
    /// Total bytes the scratch directory may hold.
    pub scratch_bytes: u64,
}

/// Which limit stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    /// The wall-clock limit.
    Time,
    /// The memory limit (Python usually raised `MemoryError`).
    Memory,
    /// Output beyond the per-stream limit was dropped.
    Output,
    /// The scratch directory grew past its quota; the run was stopped.
    Disk,
}

/// A file the code left in its scratch directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileEntry {
    /// Path relative to `/scratch`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Contents, when small (≤ 4 KiB) UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Everything one run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunOutput {
    /// Standard output (UTF-8, lossy), at most the output limit.
    pub stdout: String,
    /// Standard error, including Python tracebacks.
    pub stderr: String,
    /// `repr()` of the final expression's value, when the code ends in one (like a
    /// notebook cell) and it is not `None`.
    pub value: Option<String>,
    /// Process exit status; `null` when the run was stopped (time, disk, cancellation).
    pub exit_code: Option<i32>,
    /// The limit that stopped or truncated the run, if any.
    pub limit_hit: Option<LimitHit>,
    /// Whether stdout was cut at the output limit.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the output limit.
    pub stderr_truncated: bool,
    /// Whether the caller cancelled the run.
    pub cancelled: bool,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Files in the scratch directory after the call (deleted when the call or session
    /// ends).
    pub files: Vec<FileEntry>,
    /// The session this call ran in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Whether the session ended with this call (exit, limit, crash); its state is gone.
    #[serde(default)]
    pub session_ended: bool,
}

fn seeded_bytes(seed: u64, n: usize) -> Vec<u8> {
    // SplitMix64: a fixed stream per seed, so `random` and `os.urandom` replay exactly.
    let mut x = seed ^ 0x5EED_5EED_5EED_5EED;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

enum Ended {
    Exited(i32),
    Trapped(String),
    TimedOut,
    Cancelled,
    DiskFull,
}

/// A store with a fresh WASI context: the driver as the program, `stdin`, the two output
/// pipes, a fixed environment, seeded randomness, the scratch dir at `/scratch`, the
/// memory cap, and an epoch deadline that yields to the executor every tick (so wall-clock
/// limits and cancellation can stop a guest spinning in pure computation).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_store(
    engine: &PythonEngine,
    limits: &RunLimits,
    seed: u64,
    scratch: &Path,
    stdin: impl wasmtime_wasi::cli::StdinStream + 'static,
    stdout: &TruncatingPipe,
    stderr: &TruncatingPipe,
    extra_env: &[(&str, &str)],
    disk_hit: Arc<AtomicBool>,
) -> Result<Store<State>, super::CodeError> {
    let mut builder = WasiCtxBuilder::new();
    let mut env = vec![
        ("PYTHONHASHSEED", "0"),
        ("PYTHONUTF8", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("HOME", "/scratch"),
    ];
    env.extend_from_slice(extra_env);
    builder
        .stdin(stdin)
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        // -S: no `site` (nothing to add to sys.path here; saves start-up time).
        .args(&["python", "-S", "-c", DRIVER])
        .envs(&env)
        .secure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(
            seed,
            1 << 16,
        )))
        .insecure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(
            seed ^ 1,
            1 << 12,
        )))
        .insecure_random_seed(u128::from(seed));
    builder
        .preopened_dir(scratch, "/scratch", FsPerms::ReadWrite)
        .map_err(|e| super::CodeError::Engine(format!("cannot open the scratch directory: {e}")))?;
    let state = State {
        wasi: builder.build_p1(),
        limiter: MemoryCap {
            max_bytes: limits.memory_bytes,
            hit: false,
        },
        quota: super::quota::DiskQuota::new(scratch.to_owned(), limits.scratch_bytes, disk_hit),
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    Ok(store)
}

impl State {
    /// Whether the memory cap refused a growth.
    pub(crate) fn memory_hit(&self) -> bool {
        self.limiter.hit
    }
}

/// Runs `code` in a fresh interpreter instance.
pub async fn run(
    engine: &PythonEngine,
    code: &str,
    limits: RunLimits,
    seed: u64,
    cancel: CancellationToken,
) -> Result<RunOutput, super::CodeError> {
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("verity-scratch-")
        .tempdir()
        .map_err(|e| super::CodeError::io(Path::new("scratch"), e))?;
    let stdout = TruncatingPipe::new(limits.output_bytes);
    // stderr also carries the final value after a marker; leave room for it.
    let stderr = TruncatingPipe::new(limits.output_bytes + 70_000);
    let token = nonce();
    let value_marker = format!("\0verity-value-{token}\0");
    let disk_hit = Arc::new(AtomicBool::new(false));
    let mut store = new_store(
        engine,
        &limits,
        seed,
        scratch.path(),
        MemoryInputPipe::new(format!("{token}\n{code}").into_bytes()),
        &stdout,
        &stderr,
        &[],
        Arc::clone(&disk_hit),
    )?;

    let ended = {
        let exec = async {
            let instance = engine.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        tokio::select! {
            r = tokio::time::timeout(limits.wall, exec) => match r {
                Err(_) => Ended::TimedOut,
                Ok(Ok(())) => Ended::Exited(0),
                Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
                    Some(exit) => Ended::Exited(exit.0),
                    None => Ended::Trapped(describe_trap(&e)),
                },
            },
            () = cancel.cancelled() => Ended::Cancelled,
        }
    };
    let memory_hit = store.data().memory_hit();
    drop(store);
    // Every growing write is checked before it runs (`quota.rs`); the final measure is a
    // second line of defence, not the mechanism.
    let ended = match ended {
        Ended::Exited(_) | Ended::Trapped(_)
            if disk_hit.load(Ordering::SeqCst)
                || dir_size(scratch.path()) > limits.scratch_bytes =>
        {
            Ended::DiskFull
        }
        other => other,
    };

    let (out, out_dropped) = stdout.take();
    let (err, err_dropped) = stderr.take();
    let mut stderr_text = String::from_utf8_lossy(&err).into_owned();
    let mut value = None;
    if let Some(i) = stderr_text.rfind(&value_marker) {
        let rest = stderr_text[i + value_marker.len()..]
            .trim_end_matches('\n')
            .to_owned();
        value = Some(rest);
        stderr_text.truncate(i);
    }
    let stderr_truncated = err_dropped > 0 || stderr_text.len() > limits.output_bytes;
    if stderr_text.len() > limits.output_bytes {
        let mut cut = limits.output_bytes;
        while !stderr_text.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr_text.truncate(cut);
    }
    let stdout_truncated = out_dropped > 0;
    let (exit_code, mut limit_hit, cancelled) = match &ended {
        Ended::Exited(c) => (Some(*c), None, false),
        Ended::Trapped(msg) => {
            if !stderr_text.is_empty() && !stderr_text.ends_with('\n') {
                stderr_text.push('\n');
            }
            stderr_text.push_str(msg);
            (None, None, false)
        }
        Ended::TimedOut => (None, Some(LimitHit::Time), false),
        Ended::Cancelled => (None, None, true),
        Ended::DiskFull => (None, Some(LimitHit::Disk), false),
    };
    if limit_hit.is_none() && memory_hit {
        limit_hit = Some(LimitHit::Memory);
    }
    if limit_hit.is_none() && (stdout_truncated || stderr_truncated) {
        limit_hit = Some(LimitHit::Output);
    }
    let files = list_files(scratch.path());
    Ok(RunOutput {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: stderr_text,
        value,
        exit_code,
        limit_hit,
        stdout_truncated,
        stderr_truncated,
        cancelled,
        duration_ms: started.elapsed().as_millis() as u64,
        files,
        session_id: None,
        session_ended: false,
    })
}

/// One plain sentence for a trap; never a host backtrace or path.
pub(crate) fn describe_trap(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => {
            "the program ran out of stack space (runaway recursion?) and was stopped".into()
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "the Python interpreter aborted (usually out of memory) and was stopped".into()
        }
        Some(wasmtime::Trap::Interrupt) => "the program was interrupted".into(),
        Some(t) => format!("the Python interpreter stopped with a fault ({t})"),
        None => "the Python interpreter could not run this code".into(),
    }
}

/// Most entries the scratch directory may hold (a measurement walks them all).
pub(crate) const MAX_SCRATCH_ENTRIES: u64 = 100_000;

/// What the scratch directory holds, counted the way the quota means it: every file by its
/// length (a sparse file counts its whole size), every directory as 4 KiB, at any depth
/// (walked with a stack, not recursion; symlinks not followed). A tree of more than
/// [`MAX_SCRATCH_ENTRIES`] entries counts as over any quota.
pub(crate) fn dir_size(root: &Path) -> u64 {
    dir_size_and_entries(root).0
}

/// [`dir_size`] and the number of entries counted (`(u64::MAX, u64::MAX)` past the cap).
pub(crate) fn dir_size_and_entries(root: &Path) -> (u64, u64) {
    let mut total = 0u64;
    let mut entries = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(list) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in list.filter_map(Result::ok) {
            entries += 1;
            if entries > MAX_SCRATCH_ENTRIES {
                return (u64::MAX, u64::MAX);
            }
            match std::fs::symlink_metadata(e.path()) {
                Ok(m) if m.is_dir() => {
                    total = total.saturating_add(4096);
                    stack.push(e.path());
                }
                Ok(m) => total = total.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    (total, entries)
}

pub(crate) fn list_files(root: &Path) -> Vec<FileEntry> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if out.len() >= 200 {
                return out;
            }
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = (meta.is_file() && meta.len() <= 4096)
                .then(|| std::fs::read(&path).ok())
                .flatten()
                .and_then(|b| String::from_utf8(b).ok());
            out.push(FileEntry {
                path: rel,
                size: meta.len(),
                text,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}
