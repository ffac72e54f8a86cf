//! The session interpreter's stdin, watched: whether the guest is blocked waiting for input.
//!
//! The driver marks the end of a cell with a line on stderr — a line the cell's own code can
//! print too. So a marker alone does not end a cell: the host also waits until the guest is
//! blocked reading stdin, which the driver does right after a real marker and which code
//! still running (a forged marker followed by `while True: pass`) is not. Until then the
//! call's wall limit keeps running, and a cell that never gets there is stopped at it.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use bytes::Bytes;
use tokio::io::AsyncRead;
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream};
use wasmtime_wasi_io::{
    poll::Pollable,
    streams::{InputStream, StreamResult},
};

/// Stdin that records whether the guest is waiting on it.
pub(crate) struct WatchedStdin {
    inner: AsyncStdinStream,
    waiting: Arc<AtomicBool>,
    on_wait: Arc<tokio::sync::Notify>,
}

impl WatchedStdin {
    /// Wraps `inner`; `waiting` is set while the guest blocks for input (and `on_wait`
    /// notified), cleared when it reads data.
    pub(crate) fn new(
        inner: AsyncStdinStream,
        waiting: Arc<AtomicBool>,
        on_wait: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            inner,
            waiting,
            on_wait,
        }
    }
}

impl IsTerminal for WatchedStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for WatchedStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(Watched {
            inner: self.inner.p2_stream(),
            waiting: Arc::clone(&self.waiting),
            on_wait: Arc::clone(&self.on_wait),
        })
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        // The preview-3 path (not used by the Python driver, a preview-1 program).
        self.inner.async_stream()
    }
}

struct Watched {
    inner: Box<dyn InputStream>,
    waiting: Arc<AtomicBool>,
    on_wait: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl InputStream for Watched {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let r = self.inner.read(size);
        if matches!(&r, Ok(b) if !b.is_empty()) {
            self.waiting.store(false, Ordering::SeqCst);
        }
        r
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

#[async_trait::async_trait]
impl Pollable for Watched {
    async fn ready(&mut self) {
        self.waiting.store(true, Ordering::SeqCst);
        self.on_wait.notify_waiters();
        self.inner.ready().await;
    }
}
