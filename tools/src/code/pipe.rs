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
    /// Marker lines seen (without the marker), oldest first.
    marks: std::collections::VecDeque<String>,
    /// A marker line still arriving.
    collecting: Option<Vec<u8>>,
}

/// Longest marker line kept (the driver's status line: a status, an exit code and the
/// cell's value, itself cut to the output limit by the driver). Beyond it the line is
/// dropped and reported as garbage, so a guest cannot grow host memory by never ending one.
const MARK_LINE_MAX: usize = 128 * 1024;

/// Most complete marker lines queued (the driver writes one per cell).
const MARKS_MAX: usize = 8;

/// Shared handle: the store holds one clone, the host reads another afterwards.
///
/// With a marker, lines starting with it are taken out of the stream (never truncated)
/// and queued: the session driver's "cell finished" signal.
#[derive(Clone)]
pub(crate) struct TruncatingPipe {
    capacity: usize,
    marker: Option<&'static [u8]>,
    inner: Arc<Mutex<Inner>>,
    notify: Arc<tokio::sync::Notify>,
}

impl TruncatingPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            marker: None,
            inner: Arc::default(),
            notify: Arc::default(),
        }
    }

    pub(crate) fn with_marker(capacity: usize, marker: &'static str) -> Self {
        Self {
            marker: Some(marker.as_bytes()),
            ..Self::new(capacity)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        }
    }

    fn keep(&self, inner: &mut Inner, bytes: &[u8]) {
        let room = self.capacity.saturating_sub(inner.buf.len());
        let take = room.min(bytes.len());
        inner.buf.extend_from_slice(&bytes[..take]);
        inner.dropped += (bytes.len() - take) as u64;
    }

    fn push(&self, mut bytes: &[u8]) {
        let mut inner = self.lock();
        while !bytes.is_empty() {
            if let Some(mut line) = inner.collecting.take() {
                let end = bytes.iter().position(|b| *b == b'\n');
                let part = &bytes[..end.unwrap_or(bytes.len())];
                // Past the cap the rest of the line is counted, not kept.
                let room = MARK_LINE_MAX.saturating_sub(line.len());
                line.extend_from_slice(&part[..room.min(part.len())]);
                inner.dropped += part.len().saturating_sub(room) as u64;
                match end {
                    Some(i) => {
                        let text = if line.len() >= MARK_LINE_MAX {
                            // Not a status line the driver wrote: the session is ended.
                            String::from("oversized marker line")
                        } else {
                            String::from_utf8_lossy(&line).into_owned()
                        };
                        if inner.marks.len() < MARKS_MAX {
                            inner.marks.push_back(text);
                        }
                        bytes = &bytes[i + 1..];
                    }
                    None => {
                        inner.collecting = Some(line);
                        bytes = &[];
                    }
                }
                continue;
            }
            let found = self.marker.and_then(|m| {
                bytes
                    .windows(m.len())
                    .position(|w| w == m)
                    .map(|i| (i, m.len()))
            });
            match found {
                Some((i, len)) => {
                    self.keep(&mut inner, &bytes[..i]);
                    inner.collecting = Some(Vec::new());
                    bytes = &bytes[i + len..];
                }
                None => {
                    self.keep(&mut inner, bytes);
                    bytes = &[];
                }
            }
        }
        drop(inner);
        self.notify.notify_waiters();
    }

    /// The kept bytes and how many were dropped since the last take; resets both.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut inner = self.lock();
        let dropped = std::mem::take(&mut inner.dropped);
        (std::mem::take(&mut inner.buf), dropped)
    }

    /// The oldest complete marker line, if any.
    pub(crate) fn next_mark(&self) -> Option<String> {
        self.lock().marks.pop_front()
    }

    /// Resolves after the next write.
    pub(crate) fn written(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_line_that_never_ends_is_capped() {
        let p = TruncatingPipe::with_marker(64, "\0end\0");
        p.push(b"before\0end\0{\"status\": ");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            p.push(&chunk); // 8 MiB after the marker, no newline
        }
        {
            let inner = p.lock();
            let held = inner.collecting.as_ref().map_or(0, Vec::len);
            assert!(held <= MARK_LINE_MAX, "{held} bytes held");
            assert!(inner.dropped >= 7 << 20);
        }
        p.push(b"\n");
        assert_eq!(p.next_mark().as_deref(), Some("oversized marker line"));
        let (kept, _) = p.take();
        assert_eq!(kept, b"before");
    }

    #[test]
    fn marker_lines_queue_at_most_a_few() {
        let p = TruncatingPipe::with_marker(64, "\0end\0");
        for i in 0..100 {
            p.push(format!("\0end\0{i}\n").as_bytes());
        }
        let mut n = 0;
        while p.next_mark().is_some() {
            n += 1;
        }
        assert_eq!(n, MARKS_MAX);
    }
}
