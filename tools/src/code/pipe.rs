//! A guest output stream that keeps the first `capacity` bytes and drops the rest,
//! remembering that it did — the guest never sees an I/O error for printing too much.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::{
    poll::Pollable,
    streams::{OutputStream, StreamResult},
};

#[derive(Default)]
struct Inner {
    buf: Vec<u8>,
    dropped: u64,
}

/// Shared handle: the store holds one clone, the host reads another afterwards.
#[derive(Clone)]
pub(crate) struct TruncatingPipe {
    capacity: usize,
    inner: Arc<Mutex<Inner>>,
}

impl TruncatingPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Arc::default(),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut inner = match self.inner.lock() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        let room = self.capacity.saturating_sub(inner.buf.len());
        let take = room.min(bytes.len());
        inner.buf.extend_from_slice(&bytes[..take]);
        inner.dropped += (bytes.len() - take) as u64;
    }

    /// The kept bytes and how many were dropped.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut inner = match self.inner.lock() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        (std::mem::take(&mut inner.buf), inner.dropped)
    }
}

#[async_trait::async_trait]
impl Pollable for TruncatingPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for TruncatingPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for TruncatingPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for TruncatingPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TruncatingPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}
