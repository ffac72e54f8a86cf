//! Stateful sessions: one live interpreter per `session_id` whose namespace (variables,
//! imports, functions) persists across calls. The driver reads length-prefixed cells from
//! stdin; after each it writes a marker line on stderr. A limit hit, a crash or
//! `sys.exit` ends that session cleanly (and says so); other sessions are unaffected.
//!
//! Sessions belong to their caller: the key is (caller, `session_id`), so another caller
//! naming the same id gets a session of its own, never this one's variables or its next
//! cell. Each caller may hold `max_per_caller` live sessions (all callers together
//! `max_live`), and idle or old sessions are ended by a reaper task, not only when another
//! session starts.

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
    /// Most live sessions at once, all callers together.
    pub max_live: usize,
    /// Most live sessions one caller may hold.
    pub max_per_caller: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(600),
            lifetime: Duration::from_secs(3600),
            max_live: 16,
            max_per_caller: 4,
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
    /// Set when the quota refused a write (which stopped the interpreter).
    disk_hit: Arc<std::sync::atomic::AtomicBool>,
    /// Set while the guest is blocked reading stdin (see `stdin.rs`).
    waiting: Arc<std::sync::atomic::AtomicBool>,
    /// Notified when the guest starts waiting on stdin.
    on_wait: Arc<tokio::sync::Notify>,
    /// The limits it was started with (its store's memory cap and pipes are fixed then).
    limits: RunLimits,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A session's key: its caller and its id.
type Key = (String, String);

type LiveMap = Arc<Mutex<HashMap<Key, Arc<Session>>>>;

/// All live sessions of one tool instance.
#[derive(Default)]
pub struct Sessions {
    live: LiveMap,
    policy: SessionPolicy,
    /// Ends idle and old sessions on a timer (started with the first session).
    reaper: std::sync::OnceLock<JoinHandle<()>>,
}

impl Drop for Sessions {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.get() {
            r.abort();
        }
    }
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

fn lock(live: &LiveMap) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Session>>> {
    match live.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    }
}

/// Ends sessions idle or alive for too long, or whose interpreter stopped.
fn sweep(live: &LiveMap, policy: &SessionPolicy) {
    let now = Instant::now();
    lock(live).retain(|_, s| {
        let idle = match s.last_used.lock() {
            Ok(t) => now.duration_since(*t),
            Err(_) => Duration::MAX,
        };
        idle < policy.idle
            && now.duration_since(s.created) < policy.lifetime
            && !s.task.is_finished()
    });
}

impl Sessions {
    /// Sessions with the given lifetimes.
    pub fn new(policy: SessionPolicy) -> Self {
        Self {
            live: LiveMap::default(),
            policy,
            reaper: std::sync::OnceLock::new(),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Session>>> {
        lock(&self.live)
    }

    /// Starts the reaper (once, from inside the runtime): every few seconds it ends
    /// sessions past their idle time or lifetime. It holds only a weak reference.
    fn start_reaper(&self) {
        self.reaper.get_or_init(|| {
            let live = Arc::downgrade(&self.live);
            let policy = self.policy;
            let every = (policy.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(live) = live.upgrade() else { return };
                    sweep(&live, &policy);
                }
            })
        });
    }

    /// Number of live sessions.
    pub fn live_count(&self) -> usize {
        self.map().len()
    }

    fn get_or_start(
        &self,
        engine: &Arc<PythonEngine>,
        key: &Key,
        limits: &RunLimits,
        seed: u64,
    ) -> Result<(Arc<Session>, bool), CodeError> {
        self.start_reaper();
        sweep(&self.live, &self.policy);
        if let Some(s) = self.map().get(key) {
            // A session keeps the memory cap and output pipes it was started with: a call
            // asking for less cannot have it here (it would silently get more).
            let was = &s.limits;
            if limits.memory_bytes < was.memory_bytes || limits.output_bytes < was.output_bytes {
                return Err(CodeError::Engine(format!(
                    "session {:?} was started with {} MiB of memory and {} KiB of output per \
                     stream; this call asks for less ({} MiB, {} KiB), which a running session \
                     cannot take — use a new session_id",
                    key.1,
                    was.memory_bytes >> 20,
                    was.output_bytes >> 10,
                    limits.memory_bytes >> 20,
                    limits.output_bytes >> 10
                )));
            }
            return Ok((Arc::clone(s), false));
        }
        let (total, mine) = {
            let map = self.map();
            (map.len(), map.keys().filter(|k| k.0 == key.0).count())
        };
        if mine >= self.policy.max_per_caller {
            return Err(CodeError::Engine(format!(
                "this caller has {mine} live sessions, the most one caller may hold; reuse \
                 one, end one (sys.exit()), or wait for idle ones to expire"
            )));
        }
        if total >= self.policy.max_live {
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
        let disk_hit = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on_wait = Arc::new(tokio::sync::Notify::new());
        let stdout = TruncatingPipe::new(limits.output_bytes);
        let stderr = TruncatingPipe::with_marker(limits.output_bytes, MARK_END);
        let mut store = new_store(
            engine,
            limits,
            seed,
            scratch.path(),
            super::stdin::WatchedStdin::new(
                AsyncStdinStream::new(guest_end),
                Arc::clone(&waiting),
                Arc::clone(&on_wait),
            ),
            &stdout,
            &stderr,
            &[("VERITY_MODE", "session")],
            Arc::clone(&disk_hit),
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
            disk_hit,
            waiting,
            on_wait,
            limits: *limits,
        });
        self.map().insert(key.clone(), Arc::clone(&session));
        Ok((session, true))
    }

    fn end(&self, key: &Key) {
        self.map().remove(key);
    }

    /// Runs one cell in `owner`'s session `id` (started on first use with `limits` and
    /// `seed`). `owner` is the caller's identity: sessions of other callers are invisible.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        engine: &Arc<PythonEngine>,
        owner: &str,
        id: &str,
        code: &str,
        limits: RunLimits,
        seed: u64,
        cancel: CancellationToken,
    ) -> Result<RunOutput, CodeError> {
        let started = Instant::now();
        let key: Key = (owner.to_owned(), id.to_owned());
        let (session, _new) = self.get_or_start(engine, &key, &limits, seed)?;
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
                self.end(&key);
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
        }
        let deadline = tokio::time::Instant::now() + limits.wall;
        // A marker ends the cell only once the guest also waits for the next one on stdin
        // (the cell's code can print a marker itself; see `stdin.rs`).
        let mut marked: Option<CellEnd> = None;
        let outcome = loop {
            let written = session.stderr.written();
            tokio::pin!(written);
            written.as_mut().enable();
            let waited = session.on_wait.notified();
            tokio::pin!(waited);
            waited.as_mut().enable();
            if marked.is_none() {
                if let Some(line) = session.stderr.next_mark() {
                    match serde_json::from_str::<CellEnd>(&line) {
                        Ok(end) => marked = Some(end),
                        Err(_) => break Outcome::Ended,
                    }
                }
            }
            // (An interpreter that exited after its marker — `sys.exit` — is done too.)
            let idle = session.waiting.load(std::sync::atomic::Ordering::SeqCst)
                || session.task.is_finished();
            if marked.is_some() && idle {
                if let Some(end) = marked.take() {
                    break Outcome::Cell(end);
                }
            }
            if session.task.is_finished() {
                break Outcome::Ended;
            }
            tokio::select! {
                () = &mut written => {}
                () = &mut waited => {}
                () = tokio::time::sleep_until(deadline) => break Outcome::TimedOut,
                () = cancel.cancelled() => break Outcome::Cancelled,
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
        }
        if session
            .memory_hit
            .load(std::sync::atomic::Ordering::Relaxed)
            || stderr.contains("MemoryError")
        {
            output.limit_hit.get_or_insert(LimitHit::Memory);
        }
        // A write refused by the quota stopped the interpreter (`quota.rs`); the final
        // measure is a second line of defence. The session ends, its scratch directory with it.
        if session.disk_hit.load(std::sync::atomic::Ordering::SeqCst)
            || super::run::dir_size(session.scratch.path()) > limits.scratch_bytes
        {
            output.limit_hit = Some(LimitHit::Disk);
            output.session_ended = true;
        }
        if output.limit_hit.is_none() && (output.stdout_truncated || output.stderr_truncated) {
            output.limit_hit = Some(LimitHit::Output);
        }
        output.stderr = stderr;
        output.files = list_files(session.scratch.path());
        output.duration_ms = started.elapsed().as_millis() as u64;
        if output.session_ended {
            self.end(&key);
        }
        Ok(output)
    }
}
