//! Stateful sessions: one live interpreter per `session_id` whose namespace (variables,
//! imports, functions) persists across calls. The driver reads length-prefixed cells from
//! stdin; after each it writes a marker line on stderr. A limit hit, a crash or
//! `sys.exit` ends that session cleanly (and says so); other sessions are unaffected.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::{
    io::{AsyncWriteExt, DuplexStream},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use wasmtime_wasi::cli::AsyncStdinStream;

use super::{
    engine::PythonEngine,
    pipe::TruncatingPipe,
    run::{describe_trap, list_files, new_store, LimitHit, RunLimits, RunOutput},
    CodeError,
};

const MARK_END: &str = "\0verity-end\0";

/// Session lifetimes and the cap on live sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long is ended.
    pub idle: Duration,
    /// A session older than this is ended.
    pub lifetime: Duration,
    /// Most live sessions at once.
    pub max_live: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(600),
            lifetime: Duration::from_secs(3600),
            max_live: 16,
        }
    }
}

struct Session {
    input: tokio::sync::Mutex<DuplexStream>,
    stdout: TruncatingPipe,
    stderr: TruncatingPipe,
    task: JoinHandle<Result<i32, String>>,
    /// Held for the whole of a call: calls to one session run one at a time.
    busy: tokio::sync::Mutex<()>,
    scratch: tempfile::TempDir,
    created: Instant,
    last_used: Mutex<Instant>,
    memory_hit: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// All live sessions of one tool instance.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Arc<Session>>>,
    policy: SessionPolicy,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.live_count())
            .finish()
    }
}

#[derive(Deserialize)]
struct CellEnd {
    status: String,
    value: Option<String>,
    exit_code: Option<i32>,
}

impl Sessions {
    /// Sessions with the given lifetimes.
    pub fn new(policy: SessionPolicy) -> Self {
        Self {
            live: Mutex::default(),
            policy,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        match self.live.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Number of live sessions.
    pub fn live_count(&self) -> usize {
        self.map().len()
    }

    /// Ends sessions idle or alive for too long.
    fn sweep(&self) {
        let now = Instant::now();
        self.map().retain(|_, s| {
            let idle = match s.last_used.lock() {
                Ok(t) => now.duration_since(*t),
                Err(_) => Duration::MAX,
            };
            idle < self.policy.idle
                && now.duration_since(s.created) < self.policy.lifetime
                && !s.task.is_finished()
        });
    }

    fn get_or_start(
        &self,
        engine: &Arc<PythonEngine>,
        id: &str,
        limits: &RunLimits,
        seed: u64,
    ) -> Result<(Arc<Session>, bool), CodeError> {
        self.sweep();
        if let Some(s) = self.map().get(id) {
            return Ok((Arc::clone(s), false));
        }
        if self.live_count() >= self.policy.max_live {
            return Err(CodeError::Engine(format!(
                "too many live sessions ({}); reuse one, or wait for idle ones to expire",
                self.policy.max_live
            )));
        }
        let scratch = tempfile::Builder::new()
            .prefix("verity-session-")
            .tempdir()
            .map_err(|e| CodeError::io(std::path::Path::new("scratch"), e))?;
        let (host_end, guest_end) = tokio::io::duplex(1 << 20);
        let stdout = TruncatingPipe::new(limits.output_bytes);
        let stderr = TruncatingPipe::with_marker(limits.output_bytes, MARK_END);
        let mut store = new_store(
            engine,
            limits,
            seed,
            scratch.path(),
            AsyncStdinStream::new(guest_end),
            &stdout,
            &stderr,
            &[("VERITY_MODE", "session")],
        )?;
        let memory_hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&memory_hit);
        let pre = engine.pre.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let instance = pre.instantiate_async(&mut store).await?;
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            }
            .await;
            flag.store(
                store.data().memory_hit(),
                std::sync::atomic::Ordering::Relaxed,
            );
            match result {
                Ok(()) => Ok(0),
                Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    Some(x) => Ok(x.0),
                    None => Err(describe_trap(&e)),
                },
            }
        });
        let session = Arc::new(Session {
            input: tokio::sync::Mutex::new(host_end),
            stdout,
            stderr,
            task,
            busy: tokio::sync::Mutex::new(()),
            scratch,
            created: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            memory_hit,
        });
        self.map().insert(id.to_owned(), Arc::clone(&session));
        Ok((session, true))
    }

    fn end(&self, id: &str) {
        self.map().remove(id);
    }

    /// Runs one cell in session `id` (started on first use with `limits` and `seed`).
    pub async fn run(
        &self,
        engine: &Arc<PythonEngine>,
        id: &str,
        code: &str,
        limits: RunLimits,
        seed: u64,
        cancel: CancellationToken,
    ) -> Result<RunOutput, CodeError> {
        let started = Instant::now();
        let (session, _new) = self.get_or_start(engine, id, &limits, seed)?;
        let _busy = session.busy.lock().await;
        if let Ok(mut t) = session.last_used.lock() {
            *t = Instant::now();
        }
        // Output of earlier calls was taken; anything left belongs to no call.
        let _ = session.stdout.take();
        let _ = session.stderr.take();
        {
            let mut input = session.input.lock().await;
            let mut frame = (code.len() as u64).to_le_bytes().to_vec();
            frame.extend_from_slice(code.as_bytes());
            if input.write_all(&frame).await.is_err() {
                self.end(id);
                return Err(CodeError::Engine(
                    "the session's interpreter is gone".into(),
                ));
            }
        }
        enum Outcome {
            Cell(CellEnd),
            Ended,
            TimedOut,
            Cancelled,
            DiskFull,
        }
        let deadline = tokio::time::Instant::now() + limits.wall;
        let quota = super::run::watch_quota(session.scratch.path(), limits.scratch_bytes);
        tokio::pin!(quota);
        let outcome = loop {
            let written = session.stderr.written();
            tokio::pin!(written);
            written.as_mut().enable();
            if let Some(line) = session.stderr.next_mark() {
                match serde_json::from_str::<CellEnd>(&line) {
                    Ok(end) => break Outcome::Cell(end),
                    Err(_) => break Outcome::Ended,
                }
            }
            if session.task.is_finished() {
                break Outcome::Ended;
            }
            tokio::select! {
                () = &mut written => {}
                () = tokio::time::sleep_until(deadline) => break Outcome::TimedOut,
                () = cancel.cancelled() => break Outcome::Cancelled,
                () = &mut quota => break Outcome::DiskFull,
                // The instance may end without writing (a trap); poll for that.
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        };
        let (out, out_dropped) = session.stdout.take();
        let (err, err_dropped) = session.stderr.take();
        let mut stderr = String::from_utf8_lossy(&err).into_owned();
        let mut output = RunOutput {
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::new(),
            value: None,
            exit_code: None,
            limit_hit: None,
            stdout_truncated: out_dropped > 0,
            stderr_truncated: err_dropped > 0,
            cancelled: false,
            duration_ms: 0,
            files: Vec::new(),
            session_id: Some(id.to_owned()),
            session_ended: false,
        };
        match outcome {
            Outcome::Cell(end) => {
                output.value = end.value;
                output.exit_code = Some(match end.status.as_str() {
                    "ok" => 0,
                    "exit" => end.exit_code.unwrap_or(0),
                    _ => 1,
                });
                if end.status == "exit" {
                    output.session_ended = true;
                }
            }
            Outcome::Ended => {
                output.session_ended = true;
                let finished = tokio::time::timeout(Duration::from_millis(200), async {
                    while !session.task.is_finished() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
                let _ = finished;
                if !stderr.is_empty() && !stderr.ends_with('\n') {
                    stderr.push('\n');
                }
                stderr.push_str("the session's interpreter stopped; its state is gone");
            }
            Outcome::TimedOut => {
                output.limit_hit = Some(LimitHit::Time);
                output.session_ended = true;
            }
            Outcome::Cancelled => {
                output.cancelled = true;
                output.session_ended = true;
            }
            Outcome::DiskFull => {
                output.limit_hit = Some(LimitHit::Disk);
                output.session_ended = true;
            }
        }
        if session
            .memory_hit
            .load(std::sync::atomic::Ordering::Relaxed)
            || stderr.contains("MemoryError")
        {
            output.limit_hit.get_or_insert(LimitHit::Memory);
        }
        if output.limit_hit.is_none() && (output.stdout_truncated || output.stderr_truncated) {
            output.limit_hit = Some(LimitHit::Output);
        }
        output.stderr = stderr;
        output.files = list_files(session.scratch.path());
        output.duration_ms = started.elapsed().as_millis() as u64;
        if output.session_ended {
            self.end(id);
        }
        Ok(output)
    }
}
