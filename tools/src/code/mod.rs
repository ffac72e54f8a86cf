//! The `code` tool: Python 3.12 (CPython for WASI) in a wasmtime sandbox — no network, no
//! host files but a per-call scratch directory, and hard limits on wall time, memory,
//! output and disk. Warm calls cost milliseconds: the interpreter is compiled once to a
//! cached `.cwasm` and each call only instantiates it.

mod engine;
pub mod install;
mod pipe;
mod quota;
mod run;
mod session;
mod stdin;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::OnceCell;

pub use engine::PythonEngine;
pub use run::{nonce, run, FileEntry, LimitHit, RunLimits, RunOutput};
pub use session::{SessionPolicy, Sessions};

use crate::{
    error::{FailureKind, ToolFailure},
    tool::{Annotations, CallContext, Limits, Progress, Tool},
};

/// Largest program accepted, in bytes.
pub const MAX_CODE_BYTES: usize = 256 * 1024;
/// Defaults (and ceilings a request cannot exceed) of one call.
pub const DEFAULT_WALL_MS: u64 = 10_000;
/// Default memory cap.
pub const DEFAULT_MEMORY_MB: u64 = 256;
/// Default bytes kept per output stream.
pub const DEFAULT_OUTPUT_KB: u64 = 64;
/// Scratch directory quota.
pub const SCRATCH_QUOTA_BYTES: u64 = 32 << 20;

/// Errors of the sandbox machinery (not of the user's code, which are results).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The interpreter is not installed.
    #[error("the Python sandbox is not installed ({0} is missing); run `verity setup`")]
    NotInstalled(PathBuf),
    /// Installation failed.
    #[error("setup failed: {0}")]
    Setup(String),
    /// wasmtime refused something.
    #[error("sandbox engine: {0}")]
    Engine(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl CodeError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Arguments of the `code` tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeParams {
    /// Python 3.12 source. Runs as `__main__`; if it ends in an expression, its `repr()`
    /// is returned as `value` (like a notebook cell). Standard library only (no numpy, no
    /// network, no subprocesses). The working directory `/scratch` is writable and
    /// discarded after the call.
    pub code: String,
    /// Wall-clock limit in milliseconds (at most the tool's/policy's limit, default 10000).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Memory limit in MiB (at most the tool's/policy's limit, default 256).
    #[serde(default)]
    #[schemars(range(min = 16))]
    pub memory_mb: Option<u64>,
    /// Seed for `random` and `os.urandom` inside the sandbox (default 0), so runs replay.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keep interpreter state (variables, imports, functions, files in /scratch) across
    /// calls with the same id, like notebook cells. Started on first use; ends after 10
    /// minutes idle, on `sys.exit()`, or when a limit is hit.
    #[serde(default)]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_.-]+$"))]
    pub session_id: Option<String>,
}

/// The `code` tool. Loads the interpreter on first use.
#[derive(Debug, Default)]
pub struct Code {
    engine: OnceCell<Arc<PythonEngine>>,
    wasm: Option<PathBuf>,
    sessions: Sessions,
}

impl Code {
    /// A tool using the interpreter at `wasm` (default: [`install::wasm_path`]).
    pub fn with_wasm(wasm: PathBuf) -> Self {
        Self {
            engine: OnceCell::new(),
            wasm: Some(wasm),
            sessions: Sessions::default(),
        }
    }

    /// The loaded engine (compiling or loading the cached module on first use).
    pub async fn engine(&self) -> Result<&Arc<PythonEngine>, CodeError> {
        self.engine
            .get_or_try_init(|| async {
                let wasm = self.wasm.clone().unwrap_or_else(install::wasm_path);
                tokio::task::spawn_blocking(move || PythonEngine::load(&wasm))
                    .await
                    .map_err(|e| CodeError::Engine(format!("loader task failed: {e}")))?
            })
            .await
    }
}

fn mb(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

impl Tool for Code {
    type Params = CodeParams;
    type Output = RunOutput;

    fn name(&self) -> &str {
        "code"
    }

    fn title(&self) -> Option<&str> {
        Some("Python sandbox")
    }

    fn description(&self) -> &str {
        "Runs Python 3.12 code in a sandbox and returns stdout, stderr (with tracebacks), the \
         exit code and the value of a final expression. Use it to compute, parse, simulate \
         or test code. Standard library only; no network, no subprocesses, no host files; \
         /scratch is a writable working directory discarded after the call. Limits: 10 s \
         wall time, 256 MiB memory, 64 KiB output per stream unless lower limits apply. \
         Each call starts a fresh interpreter: define what you need in the same call."
    }

    fn annotations(&self) -> Annotations {
        Annotations {
            read_only: false,
            destructive: false,
            idempotent: true,
            open_world: false,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            wall_ms: Some(DEFAULT_WALL_MS),
            memory_mb: Some(DEFAULT_MEMORY_MB),
            output_kb: Some(DEFAULT_OUTPUT_KB),
        }
    }

    fn reports_progress(&self) -> bool {
        true
    }

    fn enforces_wall_limit(&self) -> bool {
        // The limit applies to the guest's run, not to loading (or, once, compiling) the
        // interpreter before it.
        true
    }

    async fn call(&self, p: CodeParams, ctx: CallContext) -> Result<RunOutput, ToolFailure> {
        if p.code.len() > MAX_CODE_BYTES {
            return Err(ToolFailure::new(
                FailureKind::LimitExceeded,
                format!(
                    "code is {} bytes; the limit is {MAX_CODE_BYTES}",
                    p.code.len()
                ),
            ));
        }
        // The request may only tighten what the tool and the policy allow.
        let requested = Limits {
            wall_ms: p.timeout_ms,
            memory_mb: p.memory_mb,
            ..Limits::default()
        };
        let l = self.limits().tighten(ctx.limits).tighten(requested);
        let limits = RunLimits {
            wall: Duration::from_millis(l.wall_ms.unwrap_or(DEFAULT_WALL_MS)),
            memory_bytes: mb(l.memory_mb.unwrap_or(DEFAULT_MEMORY_MB)),
            output_bytes: usize::try_from(l.output_kb.unwrap_or(DEFAULT_OUTPUT_KB) * 1024)
                .unwrap_or(usize::MAX),
            scratch_bytes: SCRATCH_QUOTA_BYTES,
        };
        let engine = self
            .engine()
            .await
            .map_err(|e| ToolFailure::execution(e.to_string()))?;
        ctx.report(Progress {
            progress: 0.0,
            total: None,
            message: Some("running".into()),
        });
        let seed = p.seed.unwrap_or(0);
        let running = async {
            match &p.session_id {
                Some(id) => {
                    let valid = !id.is_empty()
                        && id.len() <= 64
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                    if !valid {
                        return Err(CodeError::Engine(format!(
                            "session_id {id:?} must be 1-64 characters of A-Z a-z 0-9 _ . -"
                        )));
                    }
                    // Sessions belong to their caller (`cli`, `mcp-client:alice`, …).
                    let owner = ctx
                        .caller
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    self.sessions
                        .run(
                            engine,
                            &owner,
                            id,
                            &p.code,
                            limits,
                            seed,
                            ctx.cancel.clone(),
                        )
                        .await
                }
                None => run(engine, &p.code, limits, seed, ctx.cancel.clone()).await,
            }
        };
        tokio::pin!(running);
        let started = std::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.tick().await;
        let out = loop {
            tokio::select! {
                r = &mut running => break r,
                _ = tick.tick() => ctx.report(Progress {
                    progress: started.elapsed().as_secs_f64(),
                    total: Some(limits.wall.as_secs_f64()),
                    message: Some(format!("running for {:.1} s", started.elapsed().as_secs_f64())),
                }),
            }
        };
        out.map_err(|e| ToolFailure::execution(e.to_string()))
    }

    fn render(&self, o: &RunOutput) -> String {
        let mut s = String::new();
        if !o.stdout.is_empty() {
            s.push_str(&o.stdout);
            if !o.stdout.ends_with('\n') {
                s.push('\n');
            }
            if o.stdout_truncated {
                s.push_str("[stdout truncated]\n");
            }
        }
        if !o.stderr.is_empty() {
            s.push_str("stderr:\n");
            s.push_str(&o.stderr);
            if !o.stderr.ends_with('\n') {
                s.push('\n');
            }
            if o.stderr_truncated {
                s.push_str("[stderr truncated]\n");
            }
        }
        if let Some(v) = &o.value {
            s.push_str(&format!("value: {v}\n"));
        }
        match (o.exit_code, o.limit_hit, o.cancelled) {
            (_, _, true) => s.push_str("cancelled\n"),
            (_, Some(LimitHit::Time), _) => s.push_str("stopped: wall-clock limit reached\n"),
            (_, Some(LimitHit::Disk), _) => {
                s.push_str("stopped: the scratch directory exceeded its quota\n")
            }
            (Some(0), _, _) => {}
            (Some(c), _, _) => s.push_str(&format!("exit code: {c}\n")),
            (None, _, _) => s.push_str("stopped\n"),
        }
        if o.limit_hit == Some(LimitHit::Memory) {
            s.push_str("note: the memory limit was reached\n");
        }
        if let (Some(id), true) = (&o.session_id, o.session_ended) {
            s.push_str(&format!("session '{id}' ended; its state is gone\n"));
        }
        if s.is_empty() {
            s.push_str("(no output)\n");
        }
        s.trim_end().to_owned()
    }
}
