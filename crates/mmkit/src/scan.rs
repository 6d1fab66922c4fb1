//! Sequential scans of a read-only file map: [`Mmap::scan`] and [`Mmap::scan_ahead`].
//!
//! Reading a mapped file front to back with plain slice access takes one page fault per
//! fault-around window (16 pages when the page cache holds 4 KiB folios), and a file truncated
//! under the map kills the process with `SIGBUS` at the first page past its new end. A scan
//! walks the range in **batches** (the PMD size, 2 MiB on x86-64 and 4 KiB-page arm64) and, on
//! entering each batch:
//! 1. **populates** the batch (`MADV_POPULATE_READ`): the kernel fills the batch's page-table
//!    entries in one call, without a fault per window, front to back (so read-ahead sees a
//!    sequential reader when the file is not cached). [`Mmap::scan_ahead`] moves this to a
//!    helper thread that runs a few batches ahead of the consumer;
//! 2. **probes** that the batch is still backed by the file: the batch's last byte is read
//!    with `process_vm_readv(2)` from this process, which reports a page past the end of the
//!    file as an error instead of raising `SIGBUS` (file truncation only removes a tail, so
//!    when the last byte is backed, so is the rest of the batch). A truncated file ends the scan
//!    with an [`ErrorKind::Truncated`] error (so does a populate that meets such a page).
//!    Where `process_vm_readv` is denied (a container's seccomp profile: `EPERM`; gVisor:
//!    `ENOSYS`), the probe, and so the scan, fails at its first batch with that errno: read
//!    the map as a slice there (the contract alone then guards against truncation).
//!
//! The probe narrows the `SIGBUS` window to a truncation that lands, between the probe and the
//! read, inside the batch being read; it does not lift the
//! [file-mapping contract](crate::file#safety-the-file-mapping-contract) the map was created
//! under (the slices a scan yields rely on it, as the map's `Deref` does). It turns the common
//! failure, a file shrunk while a long scan runs, into an error.
//!
//! Measured against `read()` with a 1 MiB buffer in each page-cache state: see BENCHMARKS.md,
//! "File-backed reads".
//!
//! # Random reads
//! For small reads at random offsets of a file that stays mapped, map it once with its page
//! tables filled and read-ahead off: [`Populate::Read`](crate::Populate::Read) (no fault on a
//! first touch, and errors reported, unlike `MAP_POPULATE`),
//! [`HugePages::Transparent`](crate::HugePages::Transparent) (one TLB entry per 2 MiB wherever
//! the page cache holds PMD-sized folios, and PMD-sized read-ahead for what it does not hold
//! yet) and [`Advice::Random`](crate::Advice::Random) (no read-ahead around later misses).
//! Each read is then a load: about 20-40x cheaper than a `pread` of 8 bytes (BENCHMARKS.md).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?; let path = dir.path().join("table.bin");
//! # std::fs::write(&path, vec![3u8; 4 << 20])?;
//! use mmkit::{Advice, HugePages, MapOptions, Populate};
//! let file = std::fs::File::open(&path)?;
//! let opts = MapOptions::new().populate(Populate::Read).huge_pages(HugePages::Transparent).advice(Advice::Random).clone();
//! // SAFETY: nobody truncates or rewrites table.bin while it is mapped.
//! let table = unsafe { opts.map(&file) }?;
//! let word = u64::from_ne_bytes(table[123_456..123_464].try_into()?);
//! assert_eq!(word, u64::from_ne_bytes([3; 8]));
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;

use crate::error::{Error, ErrorKind, Result};
use crate::file::Mmap;
use crate::sys;

/// How many batches the helper thread of [`Mmap::scan_ahead`] populates ahead of the consumer.
const AHEAD_BATCHES: usize = 4;

impl Mmap {
    /// Iterates over `range` of the map in slices of `chunk` bytes (the last one may be
    /// shorter), populating each batch and probing it for truncation before it is read: see
    /// the [module docs](crate::scan). On one thread it reads a map front to back about as
    /// fast as plain slice access when the page cache holds large folios, faster when it holds
    /// 4 KiB ones, and faster than `read()` in both (BENCHMARKS.md); and a truncation becomes
    /// an error.
    ///
    /// A chunk of 0 and a range outside the map are refused up front
    /// ([`ErrorKind::InvalidArgument`], [`ErrorKind::OutOfBounds`]). An error during the scan
    /// (the file was truncated: [`ErrorKind::Truncated`]) is yielded once and ends it.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?; let path = dir.path().join("data.bin");
    /// # std::fs::write(&path, vec![1u8; 3 << 20])?;
    /// let file = std::fs::File::open(&path)?;
    /// // SAFETY: nobody truncates or rewrites data.bin while it is mapped.
    /// let map = unsafe { mmkit::Mmap::map(&file) }?;
    /// let mut sum = 0u64;
    /// for chunk in map.scan(.., 256 << 10)? {
    ///     sum += chunk?.iter().map(|&b| u64::from(b)).sum::<u64>();
    /// }
    /// assert_eq!(sum, 3 << 20);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "MADV_POPULATE_READ")]
    pub fn scan(&self, range: impl RangeBounds<usize>, chunk: usize) -> Result<Scan<'_>> {
        Scan::new(self, range, chunk)
    }

    /// [`scan`](Self::scan) with a helper thread that populates (`MADV_POPULATE_READ`) up to
    /// four batches ahead of the consumer, so the kernel's page-table work overlaps the
    /// consumer's reading. `f` gets the scan and its result is returned; the helper stops when
    /// `f` returns (early or not) and is joined before this call returns.
    ///
    /// This only pays off with a **free CPU** for the helper: on a machine whose CPUs are
    /// all busy the helper competes with the consumer and [`scan`](Self::scan) is as fast or
    /// faster. When the thread cannot be spawned, the scan populates by itself, as `scan`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?; let path = dir.path().join("data.bin");
    /// # std::fs::write(&path, vec![1u8; 3 << 20])?;
    /// let file = std::fs::File::open(&path)?;
    /// // SAFETY: nobody rewrites data.bin while it is mapped.
    /// let map = unsafe { mmkit::Mmap::map(&file) }?;
    /// let sum = map.scan_ahead(.., 256 << 10, |scan| {
    ///     scan.map(|chunk| Ok(chunk?.iter().map(|&b| u64::from(b)).sum::<u64>())).sum::<mmkit::Result<u64>>()
    /// })??;
    /// assert_eq!(sum, 3 << 20);
    /// # Ok(()) }
    /// ```
    pub fn scan_ahead<R>(
        &self,
        range: impl RangeBounds<usize>,
        chunk: usize,
        f: impl FnOnce(Scan<'_>) -> R,
    ) -> Result<R> {
        let (start, end, chunk, batch) = Scan::check(self, range, chunk)?;
        let ahead = Ahead { consumer: AtomicUsize::new(0), stop: AtomicBool::new(false) };
        std::thread::scope(|s| {
            let helper = std::thread::Builder::new()
                .name("mmkit-scan-ahead".into())
                .spawn_scoped(s, || ahead.run(self, start, end, batch))
                .ok();
            let helper = helper.map(|h| h.thread().clone());
            // Stops the helper when `f` returns or unwinds (a parked helper would otherwise
            // wait for a consumer that never comes, and the scope would never join it).
            let _stop = StopOnDrop(&ahead, helper.clone());
            Ok(f(Scan::with(self, start, end, chunk, batch, helper.map(|h| (&ahead, h)))))
        })
    }
}

/// The shared state of [`Mmap::scan_ahead`]: where the consumer is, and whether to stop.
#[derive(Debug)]
struct Ahead {
    /// Index of the batch the consumer is reading.
    consumer: AtomicUsize,
    stop: AtomicBool,
}

/// Tells the helper to stop, and wakes it, when dropped.
struct StopOnDrop<'a>(&'a Ahead, Option<Thread>);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
        if let Some(t) = &self.1 {
            t.unpark();
        }
    }
}

impl Ahead {
    /// The helper thread: populates batch after batch, at most [`AHEAD_BATCHES`] ahead of the
    /// consumer, parking when it is that far ahead. Errors end the help only: the consumer's
    /// own probe reports a truncated file.
    fn run(&self, map: &Mmap, start: usize, end: usize, batch: usize) {
        let mut next = 0usize;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let Some(from) = next.checked_mul(batch).and_then(|o| o.checked_add(start)).filter(|&f| f < end) else {
                return;
            };
            if next > self.consumer.load(Ordering::Acquire) + AHEAD_BATCHES {
                std::thread::park();
                continue;
            }
            if map.populate(from..end.min(from.saturating_add(batch))).is_err() {
                return;
            }
            next += 1;
        }
    }
}

/// The iterator of [`Mmap::scan`] and [`Mmap::scan_ahead`]: slices of the map, `chunk` bytes
/// each (the last may be shorter), or one error that ends the scan.
#[derive(Debug)]
pub struct Scan<'a> {
    map: &'a Mmap,
    /// Next byte to yield, and the end of the range.
    pos: usize,
    end: usize,
    chunk: usize,
    /// Batch length: a multiple of `chunk`; batches start at `start + k * batch`.
    batch: usize,
    start: usize,
    /// End of the batch already probed (and populated): chunks below it are yielded directly.
    ready: usize,
    /// The helper of `scan_ahead`, if it runs.
    ahead: Option<(&'a Ahead, Thread)>,
    done: bool,
}

impl<'a> Scan<'a> {
    /// Checks the arguments: `(start, end, chunk, batch)`.
    fn check(map: &Mmap, range: impl RangeBounds<usize>, chunk: usize) -> Result<(usize, usize, usize, usize)> {
        let (start, len) = map.mapping().check_range("scan", range)?;
        if chunk == 0 {
            return Err(Error::new("scan", ErrorKind::InvalidArgument)
                .with_opt_path(map.mapping().path())
                .with_range(start as u64, len as u64)
                .with_detail("the chunk length is 0; give the number of bytes each slice should hold"));
        }
        // Batches of the PMD size (rounded up to whole chunks): one huge entry, or one
        // `MADV_POPULATE_READ` call over 512 base pages, per probe.
        let batch = sys::thp_size().div_ceil(chunk).saturating_mul(chunk);
        Ok((start, start + len, chunk, batch))
    }

    fn new(map: &'a Mmap, range: impl RangeBounds<usize>, chunk: usize) -> Result<Self> {
        let (start, end, chunk, batch) = Self::check(map, range, chunk)?;
        Ok(Self::with(map, start, end, chunk, batch, None))
    }

    fn with(
        map: &'a Mmap,
        start: usize,
        end: usize,
        chunk: usize,
        batch: usize,
        ahead: Option<(&'a Ahead, Thread)>,
    ) -> Self {
        Scan { map, pos: start, end, chunk, batch, start, ready: start, ahead, done: false }
    }

    /// The batch length: how many bytes each probe (and populate) covers. The PMD size rounded
    /// up to a multiple of the chunk.
    pub fn batch_len(&self) -> usize {
        self.batch
    }

    /// The bytes of the range not yielded yet.
    pub fn remaining(&self) -> usize {
        if self.done {
            0
        } else {
            self.end - self.pos
        }
    }

    /// Populates the batch `[from, to)` (or tells the helper where we are) and probes it.
    fn enter_batch(&self, from: usize, to: usize) -> Result<()> {
        let truncated = |e: Error| {
            if e.kind() == ErrorKind::Truncated {
                Error::new("scan", ErrorKind::Truncated)
                    .with_opt_path(self.map.mapping().path())
                    .with_range(from as u64, (to - from) as u64)
                    .with_detail(
                        "the batch is no longer backed by the file: it was truncated under the map (reading it \
                         would have raised SIGBUS)",
                    )
            } else {
                e
            }
        };
        match &self.ahead {
            Some((ahead, helper)) => {
                ahead.consumer.store((from - self.start) / self.batch, Ordering::Release);
                helper.unpark();
            }
            // Populated front to back first, so that the kernel's read-ahead sees a sequential
            // reader when the file is not cached (a probe of the batch's end first would start
            // the reading there). Any page it cannot read fails it with EFAULT: named for its
            // cause here, as the probe's errors already are (past the end of the file, or not
            // readable).
            None => self.map.populate(from..to).map_err(|e| match e.errno() {
                Some(libc::EFAULT) if e.kind() != ErrorKind::Truncated => {
                    truncated(self.map.mapping().unreadable_error("scan", from, to - from))
                }
                _ => truncated(e),
            })?,
        }
        // The probe: also when populating fell back to MADV_WILLNEED (kernels before 5.14),
        // which reports nothing, and when the helper has not reached this batch yet.
        self.map.copy_from_mapping(to - 1, &mut [0u8]).map_err(truncated)
    }
}

impl<'a> Iterator for Scan<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.end {
            return None;
        }
        if self.pos >= self.ready {
            // `pos` is at a batch boundary: batches are whole chunks.
            let to = self.end.min(self.pos.saturating_add(self.batch));
            if let Err(e) = self.enter_batch(self.pos, to) {
                self.done = true;
                return Some(Err(e));
            }
            self.ready = to;
        }
        let to = self.ready.min(self.pos.saturating_add(self.chunk));
        let map: &'a Mmap = self.map;
        let bytes = &map[self.pos..to];
        self.pos = to;
        Some(Ok(bytes))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining().div_ceil(self.chunk);
        // An error ends the scan early.
        (n.min(1), Some(n))
    }
}

impl std::iter::FusedIterator for Scan<'_> {}
