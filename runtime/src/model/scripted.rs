//! A backend that replays scripted replies: no model time at all. It exists to measure the
//! agent loop's own overhead (the benchmark's zero-latency backend) and to drive the loop
//! through exact situations in unit tests. It is not a model and never pretends to be one:
//! its [`ModelInfo::engine`] is `scripted`.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use futures::{future::BoxFuture, FutureExt};
use tokio_util::sync::CancellationToken;

use super::{ModelBackend, ModelError, ModelInfo, ModelOutput, ModelRequest, TokenSink};

/// Replays `replies` in order, cycling when `cycle` is set (else errors when exhausted).
#[derive(Debug)]
pub struct ScriptedModel {
    replies: Vec<ModelOutput>,
    next: AtomicUsize,
    cycle: bool,
    info: ModelInfo,
    /// Every request seen (for tests that check what the loop sent).
    seen: Arc<std::sync::Mutex<Vec<ModelRequest>>>,
    record: bool,
}

impl ScriptedModel {
    /// A backend that answers with `replies`, one per call.
    pub fn new(replies: Vec<ModelOutput>, cycle: bool) -> Self {
        Self {
            replies,
            next: AtomicUsize::new(0),
            cycle,
            info: ModelInfo {
                engine: "scripted".into(),
                engine_version: env!("CARGO_PKG_VERSION").into(),
                model: "scripted".into(),
                device: "none".into(),
                context_window: None,
                dtype: None,
                files: None,
                logprobs_mode: "as scripted".into(),
                request_extra: serde_json::Map::new(),
            },
            seen: Arc::default(),
            record: true,
        }
    }

    /// Do not keep requests (benchmarks).
    pub fn without_recording(mut self) -> Self {
        self.record = false;
        self
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl ModelBackend for ScriptedModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate<'a>(
        &'a self,
        request: &'a ModelRequest,
        on_token: TokenSink,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<ModelOutput, ModelError>> {
        async move {
            if cancel.is_cancelled() {
                return Err(ModelError::Cancelled);
            }
            if self.record {
                if let Ok(mut s) = self.seen.lock() {
                    s.push(request.clone());
                }
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let i = if self.cycle && !self.replies.is_empty() {
                i % self.replies.len()
            } else {
                i
            };
            let reply = self
                .replies
                .get(i)
                .cloned()
                .ok_or_else(|| ModelError::Engine("the script has no more replies".into()))?;
            if !reply.text.is_empty() {
                on_token(&reply.text);
            }
            Ok(reply)
        }
        .boxed()
    }
}
