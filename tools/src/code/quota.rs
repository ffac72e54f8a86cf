//! The scratch-directory quota, enforced on every write.
//!
//! The WASI calls that can make the scratch directory bigger — `fd_write`, `fd_pwrite`,
//! `fd_filestat_set_size` (a sparse extension counts its whole length), `path_open` with
//! `O_CREAT`, `path_create_directory`, `path_symlink`, `path_link` — are wrapped: before the
//! real call runs, the growth it can cause is added to an upper bound of the directory's
//! size. A write's growth is bounded without a system call in the common case: each file
//! descriptor keeps a lower bound of its file's size (one `fstat` the first time it is
//! written; sizes only grow by writes, and every call that can shrink a file or reuse a
//! descriptor number — set_size, open, close, renumber — forgets them all), so a write of
//! n bytes at position p grows the file by at most max(n, p + n − bound). While the
//! directory's bound stays under the quota nothing else happens; when it would pass it,
//! the directory is measured exactly
//! ([`super::run::dir_size`]: any depth, sparse files by length, entries capped) and the
//! bound reset, so deleted files free their space. A call that would still pass the quota
//! stops the run with [`QuotaExceeded`] before a byte is written — no watcher interval in
//! which a write can overshoot.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::{
    types::Filetype,
    wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1},
};
use wiggle::GuestMemory;

use super::run::{dir_size_and_entries, State, MAX_SCRATCH_ENTRIES};

/// Bytes a directory is counted as (what `dir_size` counts).
const DIR_BYTES: u64 = 4096;

/// The trap that stops a run whose write would pass the quota.
#[derive(Debug, thiserror::Error)]
#[error("the scratch directory would grow past its quota of {limit} bytes")]
pub struct QuotaExceeded {
    /// The quota.
    pub limit: u64,
}

/// A run's quota state (in the store's data).
pub(crate) struct DiskQuota {
    root: PathBuf,
    limit: u64,
    /// Upper bound of the directory's size in bytes (exact right after a measurement).
    bytes: u64,
    /// Upper bound of its number of entries.
    entries: u64,
    /// Set when a write was refused (shared with whoever reports the run's end).
    hit: Arc<AtomicBool>,
    /// Per descriptor: a lower bound of its regular file's size, or `None` when it is not
    /// a regular file (stdout, a directory). Cleared by anything that could invalidate it.
    sizes: HashMap<i32, Option<u64>>,
}

impl DiskQuota {
    /// A quota of `limit` bytes on `root`, measured now (a session's directory may already
    /// hold files).
    pub(crate) fn new(root: PathBuf, limit: u64, hit: Arc<AtomicBool>) -> Self {
        let (bytes, entries) = dir_size_and_entries(&root);
        Self {
            root,
            limit,
            bytes,
            entries,
            hit,
            sizes: HashMap::new(),
        }
    }

    /// Admits growth of `bytes` and `entries`, or refuses it (and remembers the refusal).
    fn admit(&mut self, bytes: u64, entries: u64) -> Result<(), QuotaExceeded> {
        let fits = |b: u64, e: u64, s: &Self| {
            b.saturating_add(bytes) <= s.limit && e.saturating_add(entries) <= MAX_SCRATCH_ENTRIES
        };
        if !fits(self.bytes, self.entries, self) {
            let (b, e) = dir_size_and_entries(&self.root);
            self.bytes = b;
            self.entries = e;
            if !fits(b, e, self) {
                self.hit.store(true, Ordering::SeqCst);
                return Err(QuotaExceeded { limit: self.limit });
            }
        }
        self.bytes = self.bytes.saturating_add(bytes);
        self.entries = self.entries.saturating_add(entries);
        Ok(())
    }
}

/// The guest's memory and the store's state, as the generated WASI functions take them.
fn split<'a>(
    caller: &'a mut Caller<'_, State>,
) -> wasmtime::Result<(GuestMemory<'a>, &'a mut State)> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => {
            let (mem, state) = m.data_and_store_mut(caller);
            Ok((GuestMemory::Unshared(mem), state))
        }
        _ => wasmtime::bail!("the guest exports no memory"),
    }
}

/// Bytes described by the `ciovec` array at `ptr` (length `len`), or `None` if it does
/// not lie in memory (the real call then reports the fault).
fn iovec_bytes(mem: &GuestMemory<'_>, ptr: i32, len: i32) -> Option<u64> {
    let data = match mem {
        GuestMemory::Unshared(d) => &**d,
        GuestMemory::Shared(_) => return None,
    };
    let start = usize::try_from(ptr as u32).ok()?;
    let count = usize::try_from(len as u32).ok()?;
    let table = data.get(start..start.checked_add(count.checked_mul(8)?)?)?;
    let mut total = 0u64;
    for iov in table.chunks_exact(8) {
        let n = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        total = total.saturating_add(u64::from(n));
    }
    Some(total)
}

/// An upper bound of the growth caused by writing `n` bytes to `fd` (at `at`, or at its
/// position) and the file's size after it, or `None` when `fd` is not a regular file
/// (stdout, a directory, a bad descriptor: nothing to count).
async fn write_growth(
    state: &mut State,
    mem: &mut GuestMemory<'_>,
    fd: i32,
    n: u64,
    at: Option<u64>,
) -> Option<(u64, u64)> {
    let known = match state.quota.sizes.get(&fd) {
        Some(k) => *k,
        None => {
            // (An error — stdio, a bad descriptor — is remembered as "not a file" too, so
            // stdout writes do not ask again; `path_open` forgets it before a number is
            // reused.)
            let k = match state.wasi.fd_filestat_get(mem, fd.into()).await {
                Ok(stat) if stat.filetype == Filetype::RegularFile => Some(stat.size),
                _ => None,
            };
            state.quota.sizes.insert(fd, k);
            k
        }
    }?;
    // An append-mode descriptor writes at the end whatever its position says: it grows by
    // exactly n, which `max(n, …)` covers.
    let start = match at {
        Some(offset) => offset,
        None => state.wasi.fd_tell(mem, fd.into()).ok()?,
    };
    let end = start.saturating_add(n);
    Some((n.max(end.saturating_sub(known)), end))
}

/// After a successful write: the file is at least `end` bytes long.
fn wrote(state: &mut State, fd: i32, end: u64) {
    if let Some(Some(k)) = state.quota.sizes.get_mut(&fd) {
        *k = (*k).max(end);
    }
}

fn check(state: &mut State, bytes: u64, entries: u64) -> wasmtime::Result<()> {
    state
        .quota
        .admit(bytes, entries)
        .map_err(wasmtime::Error::new)
}

/// Replaces the growing WASI calls in `linker` (which already has WASI) with checked ones.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        M,
        "fd_write",
        |mut caller: Caller<'_, State>, (fd, iovs, len, nwritten): (i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let mut end = None;
                if let Some(n) = iovec_bytes(&mem, iovs, len) {
                    if let Some((g, e)) = write_growth(state, &mut mem, fd, n, None).await {
                        check(state, g, 0)?;
                        end = Some(e);
                    }
                }
                let errno =
                    p1::fd_write(&mut state.wasi, &mut mem, fd, iovs, len, nwritten).await?;
                if let (0, Some(e)) = (errno, end) {
                    wrote(state, fd, e);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "fd_pwrite",
        |mut caller: Caller<'_, State>,
         (fd, iovs, len, offset, nwritten): (i32, i32, i32, i64, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                let mut end = None;
                if let Some(n) = iovec_bytes(&mem, iovs, len) {
                    let at = Some(offset as u64);
                    if let Some((g, e)) = write_growth(state, &mut mem, fd, n, at).await {
                        check(state, g, 0)?;
                        end = Some(e);
                    }
                }
                let errno =
                    p1::fd_pwrite(&mut state.wasi, &mut mem, fd, iovs, len, offset, nwritten)
                        .await?;
                if let (0, Some(e)) = (errno, end) {
                    wrote(state, fd, e);
                }
                Ok(errno)
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "fd_filestat_set_size",
        |mut caller: Caller<'_, State>, (fd, size): (i32, i64)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                state.quota.sizes.clear();
                if let Ok(stat) = state.wasi.fd_filestat_get(&mut mem, fd.into()).await {
                    check(state, (size as u64).saturating_sub(stat.size), 0)?;
                }
                p1::fd_filestat_set_size(&mut state.wasi, &mut mem, fd, size).await
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_open",
        |mut caller: Caller<'_, State>,
         (fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i64,
            i64,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                // O_TRUNC shrinks a file other descriptors may have open; the new
                // descriptor may reuse a number.
                state.quota.sizes.clear();
                // O_CREAT may add an entry (an existing file is counted twice: harmless,
                // the bound is re-measured before it can refuse anything).
                if oflags & 1 != 0 {
                    check(state, 0, 1)?;
                }
                p1::path_open(
                    &mut state.wasi,
                    &mut mem,
                    fd,
                    dirflags,
                    path,
                    path_len,
                    oflags,
                    base,
                    inheriting,
                    fdflags,
                    opened,
                )
                .await
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_create_directory",
        |mut caller: Caller<'_, State>, (fd, path, len): (i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                check(state, DIR_BYTES, 1)?;
                p1::path_create_directory(&mut state.wasi, &mut mem, fd, path, len).await
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_symlink",
        |mut caller: Caller<'_, State>,
         (old, old_len, fd, new, new_len): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                check(state, 0, 1)?;
                p1::path_symlink(&mut state.wasi, &mut mem, old, old_len, fd, new, new_len).await
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "path_link",
        |mut caller: Caller<'_, State>,
         (old_fd, flags, old, old_len, new_fd, new, new_len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                check(state, 0, 1)?;
                p1::path_link(
                    &mut state.wasi,
                    &mut mem,
                    old_fd,
                    flags,
                    old,
                    old_len,
                    new_fd,
                    new,
                    new_len,
                )
                .await
            })
        },
    )?;
    // A closed or renumbered descriptor's number can name another file next.
    linker.func_wrap_async(
        M,
        "fd_close",
        |mut caller: Caller<'_, State>, (fd,): (i32,)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                state.quota.sizes.clear();
                p1::fd_close(&mut state.wasi, &mut mem, fd).await
            })
        },
    )?;
    linker.func_wrap_async(
        M,
        "fd_renumber",
        |mut caller: Caller<'_, State>, (from, to): (i32, i32)| {
            Box::new(async move {
                let (mut mem, state) = split(&mut caller)?;
                state.quota.sizes.clear();
                p1::fd_renumber(&mut state.wasi, &mut mem, from, to).await
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_until_the_measured_size_would_pass_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let hit = Arc::new(AtomicBool::new(false));
        let mut q = DiskQuota::new(dir.path().to_owned(), 10_000, Arc::clone(&hit));
        q.admit(6_000, 1).unwrap();
        // The bound says 6 000 + 6 000 > 10 000, but nothing was written: a re-measure
        // finds the directory empty and admits it.
        q.admit(6_000, 1).unwrap();
        q.admit(9_000, 1).unwrap();
        std::fs::write(dir.path().join("f"), vec![0u8; 9_000]).unwrap();
        assert!(!hit.load(Ordering::SeqCst));
        assert!(q.admit(2_000, 0).is_err());
        assert!(hit.load(Ordering::SeqCst));
    }
}
