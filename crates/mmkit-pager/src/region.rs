//! [`PagedRegion`]: memory registered with userfaultfd, whose missing pages a [`PageSource`]
//! supplies from handler threads.
//!
//! A thread touching a missing page blocks (only that thread) while a handler thread asks the
//! source for the page and installs it atomically with `UFFDIO_COPY` (or `UFFDIO_ZEROPAGE` for
//! a zero page, or `UFFDIO_CONTINUE` for a memfd region filled through its page cache; see
//! [`backing`](crate::backing)). Each page is asked of the source at most once: concurrent
//! faults on one page are served by one fill, the other faulting threads are woken by it. With
//! [`fault_around`](PagedRegionBuilder::fault_around) a fault is served with the missing pages
//! after it too. "Page" here is the region's [granule](PagedRegion::granule): the huge page
//! size of a hugetlb region.
//!
//! # Failure semantics
//! A source error never hangs the faulting thread and never hands it garbage as data (a source
//! that panics counts as an error; the handler thread lives on):
//! 1. the source is asked again as the [retry policy](PagedRegionBuilder::retry) says (default:
//!    no retry);
//! 2. then the page is **fenced**: with `UFFDIO_POISON` (Linux ≥ 6.6, [`Fence::Poison`]) an
//!    access to it raises `SIGBUS`; on older kernels ([`Fence::ProtNone`]) the page is made
//!    `PROT_NONE` and an access raises `SIGSEGV`. The waiting threads are woken into that signal.
//!    The error is recorded ([`PagedRegion::failures`]).
//!
//! A handler thread that stops serving on an unexpected error (its `poll` or `read` of the
//! userfaultfd fails, it panics) records the error ([`PagedRegion::handler_error`]) and, before
//! it exits, makes sure no fault waits for it: every page not supplied yet is fenced
//! (`PROT_NONE`, or poisoned where that fails: an access raises `SIGSEGV`/`SIGBUS`, and
//! [`read`](PagedRegion::read)/[`prefetch`](PagedRegion::prefetch) return an error naming the
//! handler's), the fills in progress are finished, and the range is unregistered, which wakes
//! every waiting thread: into the signal on a fenced page, on into the page on a supplied one.
//! The supplied pages stay readable and writable as plain memory; dirty tracking ends
//! ([`collect_dirty`](PagedRegion::collect_dirty) is an error from then on).
//!
//! A source that never returns keeps its faulting threads (and the region's drop, which waits for
//! fills in progress) waiting: sources that do I/O bound it with their own timeouts. While a
//! source call blocks, the handler thread making it serves no other fault: the other
//! [handler threads](PagedRegionBuilder::handler_threads) do, and the checked
//! [`read`](PagedRegion::read) fills from the calling thread, so it waits only for the page
//! being filled.
//!
//! Under this choice the faces are:
//! - [`PagedRegion::read`]: the **checked** face. It fills missing pages itself (no signal can
//!   happen) and returns the source's error for a failed page. Use it when the source can fail
//!   (files, networks, decompression).
//! - [`PagedRegion::as_slice`] / [`as_mut_slice`](PagedRegion::as_mut_slice): plain `&[u8]`.
//!   They are memory-safe whatever the source does — the bytes of a present page never change
//!   behind a shared borrow, and a failed page is never readable — but touching a failed page
//!   ends the process with `SIGBUS`/`SIGSEGV` (like a stack overflow). Hand them out when the
//!   source cannot fail (memory, zeros, a verified snapshot) or a crash is the wanted outcome.
//!
//! # Fork
//! The region is `MADV_DONTFORK`: a forked child does not inherit it, because the child would
//! otherwise read missing pages as zeros — garbage — with nobody serving its faults. Its range is
//! reserved inaccessible there (`PROT_NONE`, mapped by a `pthread_atfork` handler as the child
//! starts), so an access raises `SIGSEGV` and no other mapping of the child is placed there for
//! the child's copy of the region to hand out (a child made with a raw `clone` system call, which
//! runs no fork handlers, finds a hole: only `exec` is safe there).
//! A child that drops its copy of the `PagedRegion` (one that goes on running the parent's code)
//! only closes its copies of the descriptors: the parent's handler threads, registration and
//! mapping are left alone. In a child, [`read`](PagedRegion::read),
//! [`prefetch`](PagedRegion::prefetch), [`stage`](PagedRegion::stage) and
//! [`collect_dirty`](PagedRegion::collect_dirty) are [`ErrorKind::InvalidArgument`] errors: the
//! region's userfaultfd and pagemap descriptors act on the parent's address space.
//!
//! A child (or any process) that should see the pages uses a memfd region and its
//! [`share`](PagedRegion::share) descriptor instead: it maps the memfd read-only and sees every
//! page the region was supplied (pages not supplied yet read as zeros there; with
//! [`ShmemFill::Continue`] the source writes into the memfd itself, so a page being filled may
//! be seen part-written, and a fill that fails is seen until it is dropped, as zeros again).
//!
//! # Drop
//! Dropping the region stops the handler threads (a fill in progress is finished), unregisters
//! the range (waking any waiter), joins the threads and unmaps. No thread is left blocked.

// One of the modules with `unsafe`: fault handling: fills the registered range (DESIGN.md).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mmkit::shm::Seals;
use mmkit::{Error, ErrorKind, HugePages, MapOptions, MmapMut, MmapRaw, Result, SharedMemory, UncheckedAdvice};
use rustix::io::Errno;

use crate::backing::{Backing, ShmemFill};
use crate::dirty::{DirtyMechanism, DirtyPages, Tracker};
use crate::source::{Filled, PageSource};
use crate::sys;
use crate::uffd::{self, Capabilities, FaultMode};

const MISSING: u8 = 0;
const FILLING: u8 = 1;
const PRESENT: u8 = 2;
const FAILED: u8 = 3;

/// How a page whose source failed is made unreadable (see [failure semantics](self#failure-semantics)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// `UFFDIO_POISON`: an access raises `SIGBUS` (Linux ≥ 6.6).
    Poison,
    /// `mprotect(PROT_NONE)` of the page: an access raises `SIGSEGV` (older kernels).
    ///
    /// Each fenced run of pages becomes a mapping of its own (`PROT_NONE` splits the region's),
    /// and the process's mappings are limited by `vm.max_map_count` (65530 by default): a source
    /// failing some 33,000 scattered pages reaches it, and from then on **every** new mapping of
    /// the process fails with `ENOMEM`: a thread's stack (`std::thread::spawn` panics), a file
    /// map, another region. Where `UFFDIO_POISON` exists the pager poisons such pages instead;
    /// on older kernels a page neither fence took stays unfenced
    /// ([`handler_error`](PagedRegion::handler_error) names it): [`read`](PagedRegion::read)
    /// returns its error, but a thread touching it faults again and again, never past it. A
    /// source that may fail that many pages is better read through [`read`](PagedRegion::read)
    /// only, with [`retry`](PagedRegionBuilder::retry) for errors that pass.
    ProtNone,
}

/// A page the source failed to supply.
#[derive(Debug, Clone)]
pub struct PageFailure {
    /// Byte offset of the page in the region.
    pub offset: u64,
    /// The source's error kind.
    pub kind: io::ErrorKind,
    /// The source's errno, when its error carried one.
    pub errno: Option<i32>,
    /// The source's error message.
    pub message: String,
}

/// Counters of a region's fault service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Fault messages read from the kernel (several per page when threads fault together).
    pub faults: u64,
    /// Calls of [`PageSource::fill`] (retries included).
    pub source_calls: u64,
    /// Pages installed with `UFFDIO_COPY`.
    pub data_pages: u64,
    /// Pages installed with `UFFDIO_ZEROPAGE`.
    pub zero_pages: u64,
    /// Pages fenced after a source error.
    pub failed_pages: u64,
    /// Pages supplied by [`PagedRegion::stage`] (no fault, no source call).
    pub staged_pages: u64,
}

#[derive(Default)]
struct Counters {
    faults: AtomicU64,
    source_calls: AtomicU64,
    data_pages: AtomicU64,
    zero_pages: AtomicU64,
    failed_pages: AtomicU64,
    staged_pages: AtomicU64,
}

/// How a filled page gets into the registered range.
pub(crate) enum Install {
    /// `UFFDIO_COPY` from a scratch buffer; `zeropage`: `UFFDIO_ZEROPAGE` may install zeros.
    Copy { zeropage: bool },
    /// The source writes the memfd's page cache through `staging` (a second, unregistered
    /// mapping of the memfd), then `UFFDIO_CONTINUE` maps the page.
    Continue { staging: Staging, memfd: SharedMemory },
}

/// The staging mapping of a `UFFDIO_CONTINUE` region: `MADV_DONTFORK`, so unmapped only by the
/// process that made it. In a forked child its range is a hole, where the child may have mapped
/// memory of its own since; a child drops its copy of the region's `Shared` when no handler
/// thread held one at the fork (they had stopped serving), and unmapping there took the child's
/// memory away from under its references.
pub(crate) struct Staging {
    map: std::mem::ManuallyDrop<MmapRaw>,
    owner: rustix::process::Pid,
}

impl std::ops::Deref for Staging {
    type Target = MmapRaw;

    fn deref(&self) -> &MmapRaw {
        &self.map
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if rustix::process::getpid() == self.owner {
            // SAFETY: dropped once, here, in the process whose mapping it is.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.map) };
        }
    }
}

/// What the handler threads share with the region.
pub(crate) struct Shared {
    pub(crate) uffd: OwnedFd,
    pub(crate) base: usize,
    pub(crate) len: usize,
    pub(crate) page: usize,
    source: Box<dyn PageSource>,
    states: Box<[AtomicU8]>,
    failures: Mutex<Vec<PageFailure>>,
    fence: Fence,
    retry: (u32, Duration),
    counters: Counters,
    stopping: AtomicBool,
    scratch: Mutex<Vec<MmapMut>>,
    handler_error: Mutex<Option<Error>>,
    /// A handler thread stopped serving (see `abandon`).
    abandoned: AtomicBool,
    /// A failed page could not be fenced: the range must stay registered.
    unfenced: AtomicBool,
    /// `UFFDIO_WAKE` calls made.
    #[cfg(test)]
    wakes: AtomicU64,
    tracker: Option<Tracker>,
    install: Install,
    /// Granules served per fault (fault-around), at least 1, at most 64.
    around: usize,
    spin: Duration,
    /// Fault messages a handler thread reads at once: 16 when it is the only one, else 1 (a
    /// thread serves what it read one after the other, so messages it took along would wait
    /// behind a blocking source call while the other handler threads sat idle).
    batch: usize,
}

impl Shared {
    fn state(&self, page: usize) -> &AtomicU8 {
        &self.states[page]
    }

    fn take_scratch(&self) -> Result<MmapMut> {
        if let Some(m) = self.scratch.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(m);
        }
        MapOptions::new().len(self.page * self.around).map_anon()
    }

    /// The buffer page `k` of a fill window starting at `index` is written into: the scratch
    /// buffer, or (with `UFFDIO_CONTINUE`) the memfd's page cache through the staging mapping.
    fn buffer<'a>(&'a self, scratch: &'a mut MmapMut, index: usize, k: usize) -> &'a mut [u8] {
        let g = self.page;
        match &self.install {
            Install::Copy { .. } => &mut scratch[k * g..(k + 1) * g],
            Install::Continue { staging, .. } => {
                // The staging mapping covers the region's `len` bytes and page `index + k` is
                // in it. The calling thread holds that page in FILLING state, which no other
                // thread of the pager writes, and the page is not mapped in the registered
                // range (nobody in this process reads it there until CONTINUE); other
                // processes only get read-only descriptors (`share`).
                // SAFETY: in bounds and exclusive (above) for as long as the fill runs.
                unsafe { std::slice::from_raw_parts_mut(staging.as_mut_ptr().add((index + k) * g), g) }
            }
        }
    }

    /// Asks the source for page `index` once (a panic is an error).
    fn call_source(&self, index: usize, buf: &mut [u8]) -> io::Result<Filled> {
        self.counters.source_calls.fetch_add(1, Ordering::Relaxed);
        let offset = (index * self.page) as u64;
        // The source starts from zeros: bytes it does not write read as zeros, never as the
        // bytes of the page the buffer held before (another page of the region, or a failed
        // attempt at this one).
        buf.fill(0);
        // A panicking source must not leave the page FILLING (its waiters would hang):
        // the panic is the page's error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.source.fill(offset, buf))).unwrap_or_else(
            |payload| {
                let message = match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
                    (Some(m), _) => format!("the page source panicked: {m}"),
                    (_, Some(m)) => format!("the page source panicked: {m}"),
                    _ => "the page source panicked".to_owned(),
                };
                drop_panic_payload(payload);
                Err(io::Error::other(message))
            },
        )
    }

    /// Gives pages claimed for fault-around back (MISSING) and wakes anyone who faulted on them
    /// meanwhile (their fault was dropped as "being filled"; woken, they fault again).
    fn release(&self, first: usize, end: usize) {
        if first >= end {
            return;
        }
        for i in first..end {
            self.state(i).store(MISSING, Ordering::Release);
        }
        let _ = self.wake(first, end);
    }

    fn give_scratch(&self, m: MmapMut) {
        self.scratch.lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }

    /// Serves page `index`: fills it if it is missing and nobody else is filling it, else makes
    /// sure the waiters are woken. Returns the page's state afterwards (`FILLING` when another
    /// thread is at it).
    ///
    /// Phases: claim the page and the fault-around window, fill the faulting page (with
    /// retries), fill the rest of the window, install what was filled.
    fn serve(&self, index: usize, scratch: &mut MmapMut) -> u8 {
        let end = match self.claim(index) {
            Ok(end) => end,
            Err(state) => return state,
        };
        let first = match self.fill_first(index, scratch) {
            Ok(f) => f,
            Err(e) => {
                self.release(index + 1, end);
                self.fail(index, e);
                return FAILED;
            }
        };
        let (n, zeros) = self.fill_around(index, end, first, scratch);
        self.install_window(scratch, index, n, zeros)
    }

    /// Claims page `index` (MISSING to FILLING) and the missing pages that follow it, up to the
    /// fault-around window; returns the end of the claimed window. When the page is not
    /// missing, returns its state instead (`FILLING`: another thread is at it; filled or
    /// fenced: its waiters are woken).
    fn claim(&self, index: usize) -> std::result::Result<usize, u8> {
        let state = self.state(index);
        // SeqCst with `abandoned` (see `abandon`).
        match state.compare_exchange(MISSING, FILLING, Ordering::SeqCst, Ordering::Acquire) {
            Ok(_) => {}
            Err(FILLING) => return Err(FILLING),
            Err(done) => {
                let addr = self.base + index * self.page;
                // A filled page of a CONTINUE region faults again (a minor fault) when its
                // page-table entry was dropped since (reclaim to swap, `MADV_PAGEOUT`,
                // `MADV_DONTNEED`): its bytes are still in the memfd's page cache, and only
                // CONTINUE maps them back (a wake alone had the thread fault forever). EEXIST:
                // it is mapped (a fault queued before the fill), so the wake below.
                if done == PRESENT
                    && matches!(self.install, Install::Continue { .. })
                    && sys::continue_(self.uffd.as_fd(), addr, self.page).is_ok()
                {
                    return Err(done);
                }
                // Filled or fenced already: this fault was queued before the fill woke the range,
                // or it raced with it; a wake is harmless either way.
                let _ = self.wake(index, index + 1);
                return Err(done);
            }
        }
        // Fault-around: claim the missing pages that follow, up to the window.
        let mut end = index + 1;
        let limit = (index + self.around).min(self.states.len());
        while end < limit
            && self.state(end).compare_exchange(MISSING, FILLING, Ordering::SeqCst, Ordering::Acquire).is_ok()
        {
            end += 1;
        }
        if self.backs_off(index, end) {
            return Err(FAILED);
        }
        if let Install::Continue { staging, .. } = &self.install {
            if end - index > 1 {
                // One system call allocates the window's page-cache pages and maps them in the
                // staging mapping, instead of a write fault per page while the source fills
                // them (best effort: the fill faults them in otherwise).
                let _ = staging.mapping().populate_write(index * self.page..end * self.page);
            }
        }
        Ok(end)
    }

    /// After claiming pages `first..end` (MISSING to FILLING, SeqCst): when the region was
    /// abandoned meanwhile, gives them back and returns `true` (they are fenced, or about to be:
    /// nobody fills them any more).
    fn backs_off(&self, first: usize, end: usize) -> bool {
        if !self.abandoned.load(Ordering::SeqCst) {
            return false;
        }
        for i in first..end {
            self.state(i).store(MISSING, Ordering::SeqCst);
        }
        true
    }

    /// Asks the source for the faulting page `index`, as often as the retry policy says.
    fn fill_first(&self, index: usize, scratch: &mut MmapMut) -> io::Result<Filled> {
        let mut attempt = 0;
        loop {
            let result = self.call_source(index, self.buffer(scratch, index, 0));
            match result {
                Ok(f) => break Ok(f),
                Err(_) if attempt + 1 < self.retry.0 && !self.stopping.load(Ordering::Relaxed) => {
                    attempt += 1;
                    std::thread::sleep(self.retry.1);
                }
                Err(e) => break Err(e),
            }
        }
    }

    /// Fills the pages of the window after the faulting one (`index + 1..end`); the faulting
    /// page was filled as `first`. Returns how many pages of the window are filled and the
    /// bit set of those that are zeros.
    fn fill_around(&self, index: usize, end: usize, first: Filled, scratch: &mut MmapMut) -> (usize, u64) {
        // The pages around are asked once each; the first error ends the window there (those
        // pages are asked again when someone touches them).
        let mut zeros: u64 = u64::from(first == Filled::Zero);
        let mut n = 1;
        while index + n < end {
            match self.call_source(index + n, self.buffer(scratch, index, n)) {
                Ok(f) => {
                    zeros |= u64::from(f == Filled::Zero) << n;
                    n += 1;
                }
                Err(_) => {
                    self.drop_partial(index + n);
                    self.release(index + n, end);
                    break;
                }
            }
        }
        (n, zeros)
    }

    /// Counts and installs the `n` filled pages of the window at `index` (`zeros`: which of
    /// them are zeros), marking them PRESENT, or failing the faulting page (and giving back
    /// the others) when an install is refused. Returns the faulting page's state.
    fn install_window(&self, scratch: &mut MmapMut, index: usize, n: usize, zeros: u64) -> u8 {
        // Counted before the install wakes the faulting threads, so that what they see in
        // `stats()` afterwards includes their pages.
        let zero_count = u64::from(zeros.count_ones());
        self.counters.zero_pages.fetch_add(zero_count, Ordering::Relaxed);
        self.counters.data_pages.fetch_add(n as u64 - zero_count, Ordering::Relaxed);
        // Runs of data pages and of zero pages, each installed with one ioctl.
        let mut k = 0;
        let mut result = PRESENT;
        while k < n {
            let zero = zeros >> k & 1 == 1;
            let mut j = k + 1;
            while j < n && (zeros >> j & 1 == 1) == zero {
                j += 1;
            }
            // The pages installed: all of the run, or those before the one that failed (they
            // are mapped, and may be read already: never given back or failed).
            let failed = self.install_run(scratch, index, k, j, zero).err();
            let installed = failed.as_ref().map_or(j, |(p, _)| *p);
            for i in index + k..index + installed {
                self.state(i).store(PRESENT, Ordering::Release);
            }
            if let Some((p, e)) = failed {
                let c = if zero { &self.counters.zero_pages } else { &self.counters.data_pages };
                c.fetch_sub((j - p) as u64, Ordering::Relaxed);
                if p == 0 {
                    self.fail(index, e);
                    self.release(index + 1, index + j);
                    result = FAILED;
                } else {
                    self.release(index + p, index + j);
                }
            }
            k = j;
        }
        result
    }

    /// Installs pages `k..j` of the window at `index` (all zero, or all data), with one ioctl,
    /// or page by page when the range one is refused part way. `Err((p, e))`: page `p` failed
    /// with `e`, the pages `k..p` before it are installed (mapped, their waiters woken).
    fn install_run(
        &self,
        scratch: &mut MmapMut,
        index: usize,
        k: usize,
        j: usize,
        zero: bool,
    ) -> std::result::Result<(), (usize, io::Error)> {
        let g = self.page;
        // With write-protect dirty tracking every page goes in protected (zeros too, as a
        // copy: a shared zero page cannot carry the protection), so a read is never a write.
        let wp = self.tracker.as_ref().is_some_and(|t| t.mechanism.uses_write_protect());
        let mode = if wp { sys::COPY_MODE_WP } else { 0 };
        if zero {
            match &self.install {
                Install::Copy { zeropage: true } if !wp => {}
                Install::Copy { .. } => scratch[k * g..j * g].fill(0),
                Install::Continue { .. } => {
                    for p in k..j {
                        self.buffer(scratch, index, p).fill(0);
                    }
                }
            }
        }
        let one = |from: usize, to: usize| -> std::result::Result<(), Errno> {
            let addr = self.base + (index + from) * g;
            let len = (to - from) * g;
            match &self.install {
                Install::Copy { zeropage: true } if zero && !wp => sys::zeropage(self.uffd.as_fd(), addr, len),
                Install::Copy { .. } => {
                    // SAFETY: `scratch` holds `around` readable granules and `to <= around`;
                    // `addr..addr + len` are pages of our registered range.
                    unsafe { sys::copy(self.uffd.as_fd(), addr, scratch.as_ptr().add(from * g), len, mode) }.map(drop)
                }
                Install::Continue { .. } => sys::continue_(self.uffd.as_fd(), addr, len),
            }
        };
        if j - k > 1 && one(k, j).is_ok() {
            return Ok(());
        }
        // One granule at a time: `EEXIST` is a granule a partial range call installed already.
        for p in k..j {
            self.install(|| one(p, p + 1)).map_err(|e| (p, e))?;
        }
        Ok(())
    }

    /// Runs an install ioctl, retrying `EAGAIN` (the address space is changing); `EEXIST`
    /// means the page is there already.
    fn install(&self, mut op: impl FnMut() -> std::result::Result<(), Errno>) -> io::Result<()> {
        for _ in 0..1000 {
            match op() {
                Ok(()) | Err(Errno::EXIST) => return Ok(()),
                Err(Errno::AGAIN) => std::thread::yield_now(),
                Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
            }
        }
        Err(io::Error::new(io::ErrorKind::WouldBlock, "the userfaultfd install kept failing with EAGAIN"))
    }

    /// With `UFFDIO_CONTINUE` a failed fill may have written part of page `index` into the
    /// memfd's page cache: drop it, so that a process the memfd is shared with sees the page
    /// missing (zeros) again, not the failed fill's bytes (it may have seen them meanwhile). Once
    /// [shared](PagedRegion::share) the memfd is sealed `FUTURE_WRITE`, which refuses a hole:
    /// the page is then zeroed through the staging mapping (made before the seal).
    fn drop_partial(&self, index: usize) {
        if let Install::Continue { memfd, staging } = &self.install {
            if sys::punch_hole(memfd.as_fd(), (index * self.page) as u64, self.page as u64).is_err() {
                // SAFETY: page `index` of the staging mapping (which covers the region) is held
                // by this thread (FILLING, or FAILED by it) and not mapped in the registered
                // range; see `buffer`.
                unsafe { staging.as_mut_ptr().add(index * self.page).write_bytes(0, self.page) };
            }
        }
    }

    /// Page `index` (held FILLING by this thread) failed with `e`: records the failure, fences
    /// the page (which wakes its waiters into the fence's signal) and marks it FAILED.
    fn fail(&self, index: usize, e: io::Error) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(PageFailure {
            offset: (index * self.page) as u64,
            kind: e.kind(),
            errno: e.raw_os_error(),
            message: e.to_string(),
        });
        self.counters.failed_pages.fetch_add(1, Ordering::Relaxed);
        self.drop_partial(index);
        // Fenced before it is marked FAILED: a handler that stops serving unregisters the range
        // once no page is FILLING (`abandon`), and an unfenced page of an
        // unregistered range would read zeros.
        self.fence_pages(index, index + 1, self.fence);
        self.state(index).store(FAILED, Ordering::Release);
    }

    /// Makes pages `first..end` (missing in the kernel, held by the caller) unreadable with
    /// `primary`, else with the other fence; wakes their waiters. A range neither fence took is
    /// recorded (the handler error, and `unfenced`: the range then stays registered).
    fn fence_pages(&self, first: usize, end: usize, primary: Fence) {
        let (addr, len) = (self.base + first * self.page, (end - first) * self.page);
        let with = |fence: Fence| match fence {
            // EEXIST: a page is mapped already (nothing waits on it).
            Fence::Poison => match sys::poison(self.uffd.as_fd(), addr, len) {
                Err(Errno::EXIST) if end - first == 1 => Ok(()),
                r => r,
            },
            // SAFETY: the pages are ours and missing; PROT_NONE makes every later access fault
            // instead of reading a zero page the kernel would otherwise put there.
            Fence::ProtNone => unsafe { sys::fence(addr, len) },
        };
        let other = if primary == Fence::Poison { Fence::ProtNone } else { Fence::Poison };
        let result = with(primary).or_else(|e| {
            // A range poison stops at a mapped page, and PROT_NONE may exceed
            // vm.max_map_count: the other fence, then page by page.
            if with(other).is_ok() {
                return Ok(());
            }
            if end - first > 1 {
                for i in first..end {
                    self.fence_pages(i, i + 1, primary);
                }
                return Ok(());
            }
            Err(e)
        });
        if let Err(e) = result {
            self.unfenced.store(true, Ordering::Release);
            self.record_handler_error(
                Error::os("fence of a failed page", e)
                    .with_addr(addr)
                    .with_range((first * self.page) as u64, len as u64),
            );
        }
        let _ = self.wake(first, end);
    }

    /// `UFFDIO_WAKE` of pages `first..end`: wakes every thread waiting on a fault in them.
    fn wake(&self, first: usize, end: usize) -> std::result::Result<(), Errno> {
        #[cfg(test)]
        self.wakes.fetch_add(1, Ordering::Relaxed);
        sys::wake(self.uffd.as_fd(), self.base + first * self.page, (end - first) * self.page)
    }

    /// A handler thread stopped serving on an unexpected error: no fault may wait for it.
    /// Every page not supplied yet is fenced (`PROT_NONE`, else poisoned: an access raises
    /// the signal, a checked read returns the handler's error), the fills in progress are
    /// waited for, and then the whole range is unregistered, which wakes every waiter:
    /// threads on a fenced page get the signal, a write-protect fault (dirty tracking) or a
    /// minor fault (`UFFDIO_CONTINUE` region) on a supplied page goes on without the handler.
    ///
    /// The states of the fenced pages stay MISSING (writing them would commit the whole state
    /// array of a huge sparse region): from the moment `abandoned` is set nobody fills a page.
    /// A claim sets FILLING, then reads `abandoned`, and gives the page back if it is set
    /// (`backs_off`); this sets `abandoned`, then reads the states, all SeqCst: a claim that
    /// missed the flag is seen here as FILLING (or done), and waited for.
    ///
    /// After a panic (`panicked`) the pages the thread held may stay FILLING for good: their
    /// waiters cannot be helped, and the range must stay registered (unregistered, those pages
    /// would read zeros); the pages not supplied are fenced and woken all the same.
    fn abandon(&self, panicked: bool) {
        if self.abandoned.swap(true, Ordering::SeqCst) {
            return;
        }
        let n = self.states.len();
        let mut busy = Vec::new();
        let mut i = 0;
        while i < n {
            let start = i;
            while i < n && self.state(i).load(Ordering::SeqCst) == MISSING {
                i += 1;
            }
            if i > start {
                // Whole runs: PROT_NONE of a run is one vma, where poison writes a page table
                // entry per page (gigabytes of them for a huge region).
                self.fence_pages(start, i, Fence::ProtNone);
                continue;
            }
            if self.state(i).load(Ordering::SeqCst) == FILLING {
                busy.push(i);
            }
            i += 1;
        }
        // A page being filled ends PRESENT or FAILED, or MISSING (a fault-around page given
        // back, a claim backing off): fenced then.
        while !busy.is_empty() && !panicked {
            std::thread::sleep(Duration::from_millis(1));
            busy.retain(|&i| match self.state(i).load(Ordering::SeqCst) {
                FILLING => true,
                MISSING => {
                    self.fence_pages(i, i + 1, Fence::ProtNone);
                    false
                }
                _ => false,
            });
        }
        if !panicked && !self.unfenced.load(Ordering::Acquire) {
            let _ = sys::unregister(self.uffd.as_fd(), self.base, self.len);
        }
        let _ = self.wake(0, n);
    }

    fn record_handler_error(&self, e: Error) {
        let mut slot = self.handler_error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }

    /// Serves the fault messages queued now; returns how many there were.
    fn handle_messages(&self, scratch: &mut MmapMut, msgs: &mut [sys::UffdMsg]) -> std::result::Result<usize, Errno> {
        let mut total = 0;
        loop {
            let n = match sys::read_msgs(self.uffd.as_fd(), msgs) {
                Ok(n) => n,
                Err(Errno::AGAIN) | Err(Errno::INTR) => return Ok(total),
                Err(e) => return Err(e),
            };
            total += n;
            for m in &msgs[..n] {
                if m.event != sys::UFFD_EVENT_PAGEFAULT {
                    continue;
                }
                self.counters.faults.fetch_add(1, Ordering::Relaxed);
                let addr = m.address as usize;
                if addr < self.base || addr >= self.base + self.len {
                    continue;
                }
                let index = (addr - self.base) / self.page;
                if m.flags & sys::UFFD_PAGEFAULT_FLAG_WP != 0 {
                    if let Some(t) = &self.tracker {
                        t.on_write_fault(self.uffd.as_fd(), self.base + index * self.page, self.page, index as u64);
                    }
                    continue;
                }
                self.serve(index, scratch);
            }
        }
    }

    /// Serves what is queued, then (with a [`spin`](PagedRegionBuilder::spin) time) keeps
    /// polling the fd without sleeping until it has been quiet that long.
    fn spin_and_handle(&self, scratch: &mut MmapMut, msgs: &mut [sys::UffdMsg]) -> std::result::Result<(), Errno> {
        self.handle_messages(scratch, msgs)?;
        if self.spin.is_zero() {
            return Ok(());
        }
        let mut quiet_since = std::time::Instant::now();
        while !self.stopping.load(Ordering::Relaxed) {
            if self.handle_messages(scratch, msgs)? > 0 {
                quiet_since = std::time::Instant::now();
            } else if quiet_since.elapsed() >= self.spin {
                break;
            } else {
                std::hint::spin_loop();
            }
        }
        Ok(())
    }

    /// Serves faults with the buffer `scratch` until `stop` is readable (the buffer is taken
    /// before the thread starts: a thread that cannot get one would serve nothing, and every
    /// fault of the region would wait forever).
    ///
    /// On an unexpected error (a failed `poll` or `read` of the userfaultfd, a panic) the thread
    /// records it and [abandons](Self::abandon) the region before it exits: a fault that nobody
    /// serves would wait forever.
    fn run_handler(&self, stop: &OwnedFd, mut scratch: MmapMut) {
        let mut msgs = [sys::UffdMsg::default(); 16];
        let msgs = &mut msgs[..self.batch];
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
            match sys::wait(self.uffd.as_fd(), stop.as_fd()) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(Error::os("poll of the userfaultfd", e)),
            }
            self.spin_and_handle(&mut scratch, msgs).map_err(|e| Error::os("read of the userfaultfd", e))?;
        }));
        let (error, panicked) = match served {
            Ok(Ok(())) => (None, false),
            Ok(Err(e)) => (Some(e), false),
            Err(payload) => {
                drop_panic_payload(payload);
                (Some(Error::new("fault handler thread", ErrorKind::Os).with_detail("it panicked")), true)
            }
        };
        if let Some(e) = error {
            self.record_handler_error(e.with_addr(self.base).with_range(0, self.len as u64));
            self.abandon(panicked);
        }
        self.give_scratch(scratch);
    }
}

/// Drops the payload of a caught panic. A payload whose own drop panics (`panic_any` of a
/// value with a panicking `Drop`) is leaked instead: that second panic would unwind out of the
/// fill with its page held FILLING, and every access to the page would wait forever.
fn drop_panic_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Builds a [`PagedRegion`]: `PagedRegion::builder(len).handler_threads(2).build(source)`.
#[derive(Debug, Clone)]
pub struct PagedRegionBuilder {
    len: usize,
    threads: usize,
    retry: (u32, Duration),
    fence: Option<Fence>,
    dirty: Option<Option<DirtyMechanism>>,
    backing: Backing,
    around: usize,
    spin: Duration,
}

impl PagedRegionBuilder {
    /// The most handler threads a region may have: 1024. More would only wait on the same
    /// userfaultfd (a source that blocks, on a network say, is what more than a thread per
    /// core is for), and each costs a stack, a kernel stack and a fill buffer; an unbounded
    /// count started threads until the system refused one, or exhausted its memory.
    pub const MAX_HANDLER_THREADS: usize = 1024;

    /// Number of handler threads (default 1; at least 1, at most
    /// [`MAX_HANDLER_THREADS`](Self::MAX_HANDLER_THREADS): more is an
    /// [`ErrorKind::InvalidArgument`] error at [`build`](Self::build), before any thread starts).
    ///
    /// One thread reads up to 16 fault messages at a time and serves them in turn; with more
    /// than one, each thread reads one at a time, so a fault never waits behind another
    /// fault's slow source call while a handler is free. More threads than cores help when the
    /// source blocks (a disk or a network), or where waking a sleeping thread is dear (a VM
    /// whose idle vCPUs halt: a second thread roughly doubled throughput there, see
    /// BENCHMARKS.md).
    ///
    /// ```
    /// use mmkit_pager::{PagedRegion, PagedRegionBuilder, ZeroSource};
    /// let len = 4 * mmkit::page_size();
    /// let region = PagedRegion::builder(len).handler_threads(4).build(ZeroSource)?;
    /// # drop(region);
    /// let e = PagedRegion::builder(len).handler_threads(usize::MAX).build(ZeroSource).unwrap_err();
    /// assert_eq!(e.kind(), mmkit_pager::ErrorKind::InvalidArgument);
    /// assert!(e.to_string().contains("handler threads: at most 1024"), "{e}");
    /// # Ok::<(), mmkit_pager::Error>(())
    /// ```
    pub fn handler_threads(&mut self, n: usize) -> &mut Self {
        self.threads = n.max(1);
        self
    }

    /// Asks the source up to `attempts` times for a page (sleeping `delay` between attempts)
    /// before the page is fenced. Default: 1 attempt.
    pub fn retry(&mut self, attempts: u32, delay: Duration) -> &mut Self {
        self.retry = (attempts.max(1), delay);
        self
    }

    /// Chooses the fence for failed pages instead of the best the kernel offers
    /// ([`Fence::Poison`] where `UFFDIO_POISON` exists, else [`Fence::ProtNone`]).
    /// Asking for `Poison` on a kernel without it is an [`ErrorKind::Unsupported`] error.
    pub fn fence(&mut self, fence: Fence) -> &mut Self {
        self.fence = Some(fence);
        self
    }

    /// Tracks the pages written, with the best mechanism the kernel offers
    /// (see [`dirty`](crate::dirty)); collect them with [`PagedRegion::collect_dirty`].
    ///
    /// With [`DirtyMechanism::PagemapScan`] (what this picks from Linux 6.7) the kernel
    /// allocates page tables for the region's whole length at build, 2 MiB per GiB, however
    /// sparse it stays: see [the cost](crate::dirty#what-tracking-a-huge-sparse-region-costs).
    ///
    /// Under [`FaultMode::UserModeOnly`] with [`DirtyMechanism::WriteProtect`] (what this picks
    /// before Linux 6.7), a system call writing into the region (`read(2)` into it) fails with
    /// `EFAULT` even on supplied pages: see
    /// [`dirty`](crate::dirty#system-calls-writing-into-the-region-of-an-unprivileged-user) for
    /// why and the workarounds.
    pub fn track_dirty(&mut self) -> &mut Self {
        self.dirty = Some(None);
        self
    }

    /// Tracks the pages written with `mechanism`; an [`ErrorKind::Unsupported`] error at
    /// [`build`](Self::build) when the kernel lacks it.
    pub fn track_dirty_with(&mut self, mechanism: DirtyMechanism) -> &mut Self {
        self.dirty = Some(Some(mechanism));
        self
    }

    /// What memory the region is made of (default [`Backing::Anonymous`]); a backing the kernel
    /// lacks is an [`ErrorKind::Unsupported`] error at [`build`](Self::build) naming the
    /// missing `UFFD_FEATURE_*`. See [`backing`](crate::backing).
    pub fn backing(&mut self, backing: Backing) -> &mut Self {
        self.backing = backing;
        self
    }

    /// Fault-around: a fault is served with up to `n` granules (the faulting one and the
    /// missing ones after it, each asked of the source once), installed with one ioctl per run,
    /// so a sequential reader faults once per `n` pages. Default 1; at most 64. A source error
    /// on a page other than the faulting one only ends the window (that page is asked again
    /// when touched).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit_pager::Error> {
    /// use mmkit_pager::{PagedRegion, ZeroSource};
    /// let page = mmkit::page_size();
    /// let region = PagedRegion::builder(64 * page).fault_around(16).build(ZeroSource)?;
    /// assert_eq!(region.as_slice()[0], 0);
    /// assert_eq!(region.stats().zero_pages, 16); // one fault, sixteen pages
    /// # Ok(()) }
    /// ```
    pub fn fault_around(&mut self, n: usize) -> &mut Self {
        self.around = n.clamp(1, 64);
        self
    }

    /// Handler threads poll the userfaultfd without sleeping for `spin` after their last fault
    /// before they block in `poll(2)` again: lower latency for bursts of faults, at the price
    /// of a busy core while spinning. Default: zero (block at once). It pays where waking a
    /// blocked thread is dear: in a VM whose idle vCPUs halt, a fault's round trip measured
    /// 70–80 µs blocking and 18–20 µs with `spin(200µs)`; on two busy cores it did not help
    /// (BENCHMARKS.md, mmkit-pager).
    pub fn spin(&mut self, spin: Duration) -> &mut Self {
        self.spin = spin;
        self
    }

    /// Maps the region, registers it and starts the handler threads.
    pub fn build(&self, source: impl PageSource + 'static) -> Result<PagedRegion> {
        PagedRegion::create(self, Box::new(source))
    }
}

/// The fence of a new region: the one asked for, else the best the kernel offers.
fn choose_fence(asked: Option<Fence>, caps: &Capabilities) -> Result<Fence> {
    match (asked, caps.poison()) {
        (Some(Fence::Poison), false) => Err(Error::new("PagedRegion::new", ErrorKind::Unsupported)
            .with_detail("the kernel lacks UFFDIO_POISON (Linux 6.6)")),
        (Some(f), _) => Ok(f),
        (None, true) => Ok(Fence::Poison),
        (None, false) => Ok(Fence::ProtNone),
    }
}

/// The dirty-tracking mechanism of a new region, if it tracks: the one asked for, else the
/// best the kernel offers; an error when the kernel lacks it or the backing is not anonymous.
fn choose_dirty(b: &PagedRegionBuilder, caps: &Capabilities) -> Result<Option<DirtyMechanism>> {
    let dirty = match b.dirty {
        None => None,
        Some(None) => Some(DirtyMechanism::best(caps)),
        Some(Some(m)) if m.available(caps) => Some(m),
        Some(Some(m)) => {
            return Err(Error::new("PagedRegion::new", ErrorKind::Unsupported)
                .with_detail(format!("the kernel lacks dirty tracking by {}", m.name())))
        }
    };
    if dirty.is_some() && b.backing != Backing::Anonymous {
        return Err(Error::new("PagedRegion::new", ErrorKind::Unsupported).with_detail(format!(
            "dirty tracking works on anonymous regions only, not on a {} backing (see mmkit_pager::backing)",
            b.backing.name()
        )));
    }
    Ok(dirty)
}

/// The `UFFD_FEATURE_*` bits `backing` needs; an error naming the missing one when the kernel
/// lacks them.
fn backing_features(backing: Backing, caps: &Capabilities) -> Result<u64> {
    let (needed, feature) = match backing {
        Backing::Anonymous => (0, ""),
        Backing::SharedMemory(ShmemFill::Copy) => {
            (sys::FEATURE_MISSING_SHMEM, "UFFD_FEATURE_MISSING_SHMEM (Linux 4.11)")
        }
        Backing::SharedMemory(ShmemFill::Continue) => (
            sys::FEATURE_MISSING_SHMEM | sys::FEATURE_MINOR_SHMEM,
            "UFFD_FEATURE_MINOR_SHMEM (Linux 5.14) and UFFD_FEATURE_MISSING_SHMEM",
        ),
        Backing::HugeTlb => (sys::FEATURE_MISSING_HUGETLBFS, "UFFD_FEATURE_MISSING_HUGETLBFS (Linux 4.11)"),
    };
    if caps.features & needed != needed {
        return Err(Error::new("PagedRegion::new", ErrorKind::Unsupported).with_detail(format!(
            "the kernel lacks {feature}, which a {} backing needs (UFFDIO_API offered {:#x})",
            backing.name(),
            caps.features
        )));
    }
    Ok(needed)
}

/// Maps the memory of a new region as its backing says: returns the mapping, how pages are
/// installed in it, its fault granule and (for a memfd backing) the memfd. Adds the register
/// mode the backing needs to `reg_mode`.
fn map_backing(b: &PagedRegionBuilder, reg_mode: &mut u64) -> Result<(MmapMut, Install, usize, Option<SharedMemory>)> {
    let page = mmkit::page_size();
    Ok(match b.backing {
        Backing::Anonymous => {
            let map = MapOptions::new().len(b.len).map_anon().map_err(|e| {
                if e.errno() != Some(libc::ENOMEM) {
                    return e;
                }
                // The likely cause for a large region: what to do about it.
                let hint = "a private anonymous region takes its whole length of address space (RLIMIT_AS, \
                            `ulimit -v`) and is charged in full against the commit limit (vm.overcommit_memory); \
                            a Backing::SharedMemory region reserves no commit charge (or the process has \
                            reached vm.max_map_count mappings)";
                let detail = e.detail().map_or_else(|| hint.to_owned(), |d| format!("{d}; {hint}"));
                e.with_detail(detail)
            })?;
            (map, Install::Copy { zeropage: true }, page, None)
        }
        Backing::HugeTlb => {
            let map = MapOptions::new().len(b.len).huge_pages(HugePages::Hugetlb(None)).map_anon()?;
            let outcome = map.mapping().page_outcome();
            if let Some(why) = &outcome.fallback {
                return Err(Error::new("PagedRegion::new", ErrorKind::Unsupported)
                    .with_range(0, b.len as u64)
                    .with_detail(format!(
                        "a hugetlb backing needs free huge pages (reserve them with the sysctl vm.nr_hugepages): {why}"
                    )));
            }
            // UFFDIO_ZEROPAGE does not exist for hugetlb: zeros go in as a copy.
            let huge = outcome.page_size;
            (map, Install::Copy { zeropage: false }, huge, None)
        }
        Backing::SharedMemory(fill) => {
            // Whole pages, and no longer than any mapping may be (`isize::MAX`): checked before
            // the memfd is created, as `map_anon` checks the other backings.
            let size = mmkit::page::align_up(b.len as u64, page as u64)
                .filter(|&s| s <= isize::MAX as u64)
                .ok_or_else(|| {
                    Error::new("PagedRegion::new", ErrorKind::OutOfBounds).with_range(0, b.len as u64).with_detail(
                        "the length rounded up to whole pages is longer than isize::MAX, the largest object Rust \
                         allows",
                    )
                })?;
            let memfd = SharedMemory::create("mmkit-pager", size)?;
            memfd.add_seals(Seals::SHRINK | Seals::GROW)?;
            // The memfd is this region's own: nobody else has a writable descriptor of it
            // (`share` hands out read-only ones) and its size is sealed. The only other writer
            // is the staging mapping below, which the handlers write only for pages not yet
            // mapped here (state FILLING), before UFFDIO_CONTINUE maps them.
            // SAFETY: a page present in the region never changes behind a borrow (above).
            let map = unsafe { MapOptions::new().len(b.len).map_mut(&memfd) }?;
            let install = match fill {
                ShmemFill::Copy => Install::Copy { zeropage: true },
                ShmemFill::Continue => {
                    *reg_mode |= sys::REGISTER_MODE_MINOR;
                    let staging = memfd.map_raw()?;
                    // The staging mapping is the pager's private writer: a forked child must
                    // not inherit a writable view of the region's pages, and never uses it (the
                    // faces that fill are refused there) nor unmaps it (`Staging`'s drop).
                    // SAFETY: DONTFORK changes no byte, and no child refers to the mapping.
                    unsafe { staging.mapping().advise_unchecked(.., UncheckedAdvice::DontFork) }?;
                    let staging =
                        Staging { map: std::mem::ManuallyDrop::new(staging), owner: rustix::process::getpid() };
                    Install::Continue { staging, memfd: memfd.try_clone()? }
                }
            };
            (map, install, page, Some(memfd))
        }
    })
}

/// `n` page states, all MISSING, or `None` when the memory is not there. The memory comes
/// zeroed from the allocator, which takes a large array straight from `mmap`: its pages are
/// committed as states are written, not at build (a 1 TiB memfd region has 256 MiB of states,
/// which filling them one by one made resident, taking seconds).
fn missing_states(n: usize) -> Option<Box<[AtomicU8]>> {
    const _: () = assert!(MISSING == 0);
    if n == 0 {
        return Some(Box::new([]));
    }
    let layout = std::alloc::Layout::array::<AtomicU8>(n).ok()?;
    // SAFETY: the layout is not zero-sized (`n > 0`).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<AtomicU8>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` is a fresh allocation of `n` zeroed `AtomicU8`s (zero is a valid one:
    // MISSING) from the global allocator with the layout of `[AtomicU8; n]`, the layout `Box`
    // frees it with.
    Some(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n)) })
}

/// Keeps `map` out of forked children and registers it with the userfaultfd `fd` in
/// `reg_mode`; returns the registered range (base and length, as the kernel sees the mapping)
/// and its entry in the fork guard (kept while the region lives).
fn register_range(map: &MmapMut, fd: &OwnedFd, reg_mode: u64) -> Result<(usize, usize, fork_guard::Entry)> {
    let (base, span) = map.mapping().kernel_region();
    // Before the range leaves children's address spaces: from here a child gets it as an
    // inaccessible placeholder, never as a hole.
    let entry = fork_guard::Entry::new(base, span);
    // The region's fork contract (module docs): a child has none of its pages, and an access
    // there raises SIGSEGV (the fork guard reserves the range): never zeros, never others' bytes.
    // SAFETY: `map` stays private to this region for its whole life; see the contract above.
    unsafe { map.dont_fork(..) }?;
    // SAFETY: the range is the mapping we just created and own; its pages are missing.
    unsafe { sys::register(fd.as_fd(), base, span, reg_mode) }
        .map_err(|e| Error::os("ioctl(UFFDIO_REGISTER)", e).with_addr(base).with_range(0, span as u64))?;
    Ok((base, span, entry))
}

/// What a forked child finds where a region was. The region is `MADV_DONTFORK`, so in a child
/// its range is a hole, and the child's next mapping (a large `Vec`) could land there: the
/// child's copy of the `PagedRegion` would then hand out that memory as the region's bytes
/// (`as_mut_slice` aliasing a live `Vec`). A `pthread_atfork` child handler maps every live
/// region's range there `PROT_NONE` (reserved, no memory) before the child runs on, so an
/// access raises `SIGSEGV` and nothing else is placed there.
mod fork_guard {
    use std::cell::UnsafeCell;
    use std::sync::Once;

    /// The ranges `(base, len)` of the live regions, under a `pthread_mutex_t`: the fork
    /// handlers lock it before `fork` and unlock it after, in parent and child (a Rust mutex
    /// cannot be held across the two callbacks).
    struct Registry {
        lock: UnsafeCell<libc::pthread_mutex_t>,
        /// `(entry id, base, len)`: by id, since a new region may get the base of one being
        /// dropped before its entry goes.
        ranges: UnsafeCell<Vec<(u64, usize, usize)>>,
    }

    // SAFETY: `ranges` is only touched with `lock` held (`with`, and the fork handlers between
    // `prepare` and `parent`/`child`).
    unsafe impl Sync for Registry {}

    static REGISTRY: Registry =
        Registry { lock: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER), ranges: UnsafeCell::new(Vec::new()) };
    static HANDLERS: Once = Once::new();

    fn with<R>(f: impl FnOnce(&mut Vec<(u64, usize, usize)>) -> R) -> R {
        // SAFETY: a statically initialized mutex, locked and unlocked by this thread.
        unsafe { libc::pthread_mutex_lock(REGISTRY.lock.get()) };
        // SAFETY: the lock is held, so nothing else touches `ranges`.
        let r = f(unsafe { &mut *REGISTRY.ranges.get() });
        // SAFETY: locked above by this thread.
        unsafe { libc::pthread_mutex_unlock(REGISTRY.lock.get()) };
        r
    }

    extern "C" fn prepare() {
        // SAFETY: as in `with`; released by `parent` or `child`.
        unsafe { libc::pthread_mutex_lock(REGISTRY.lock.get()) };
    }

    extern "C" fn parent() {
        // SAFETY: locked by `prepare` in this thread.
        unsafe { libc::pthread_mutex_unlock(REGISTRY.lock.get()) };
    }

    extern "C" fn child() {
        // Only async-signal-safe calls (mmap, munmap): the child of a threaded process.
        // SAFETY: `prepare` holds the lock (copied into the child locked by this thread).
        let ranges = unsafe { &*REGISTRY.ranges.get() };
        for &(_, base, len) in ranges {
            let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
            // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping: it fills the hole the
            // region left (or fails, when something is there already).
            let p = unsafe { libc::mmap(base as *mut libc::c_void, len, libc::PROT_NONE, flags, -1, 0) };
            if p != libc::MAP_FAILED && p as usize != base {
                // A kernel before 4.17 took the address as a hint and mapped elsewhere.
                // SAFETY: the mapping just made, at `p`, which nothing refers to.
                unsafe { libc::munmap(p, len) };
            }
        }
        // SAFETY: locked by `prepare` in the parent's thread, which is this thread here.
        unsafe { libc::pthread_mutex_unlock(REGISTRY.lock.get()) };
    }

    /// A region's range in the registry, removed when dropped.
    #[derive(Debug)]
    pub(super) struct Entry(u64);

    impl Entry {
        pub(super) fn new(base: usize, len: usize) -> Entry {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            HANDLERS.call_once(|| {
                // SAFETY: three `extern "C" fn()` handlers that live for the program.
                unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
            });
            let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Room made before the lock is taken: no allocation under it (another allocator's
            // fork handler could be waiting for it).
            let mut room = Vec::new();
            loop {
                let pushed = with(|ranges| {
                    if ranges.len() == ranges.capacity() {
                        if room.capacity() <= ranges.len() {
                            return false;
                        }
                        room.append(ranges);
                        std::mem::swap(ranges, &mut room);
                    }
                    ranges.push((id, base, len));
                    true
                });
                if pushed {
                    return Entry(id);
                }
                room = Vec::with_capacity(with(|ranges| ranges.len()) * 2 + 4);
            }
        }
    }

    impl Drop for Entry {
        fn drop(&mut self) {
            with(|ranges| ranges.retain(|&(id, _, _)| id != self.0));
        }
    }
}

/// Anonymous memory whose missing pages a [`PageSource`] supplies. See the
/// [module docs](self) for the failure semantics, fork and drop.
pub struct PagedRegion {
    /// Unmapped by `drop`, in the process that created the region only.
    map: std::mem::ManuallyDrop<MmapMut>,
    /// The process that created the region: a forked child holding a copy must not stop the
    /// handler threads, unregister the range or unmap (see `drop`).
    owner: rustix::process::Pid,
    shared: Arc<Shared>,
    mode: FaultMode,
    stop: OwnedFd,
    threads: Vec<JoinHandle<()>>,
    backing: Backing,
    memfd: Option<SharedMemory>,
    /// The range's entry in the fork guard: a child finds it reserved, not a hole.
    _fork_entry: fork_guard::Entry,
}

impl std::fmt::Debug for PagedRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagedRegion")
            .field("base", &format_args!("{:#x}", self.shared.base))
            .field("len", &self.map.len())
            .field("mode", &self.mode)
            .field("fence", &self.shared.fence)
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl PagedRegion {
    /// A region of `len` bytes served by `source` with one handler thread.
    pub fn new(len: usize, source: impl PageSource + 'static) -> Result<PagedRegion> {
        Self::builder(len).build(source)
    }

    /// A builder for a region of `len` bytes.
    pub fn builder(len: usize) -> PagedRegionBuilder {
        PagedRegionBuilder {
            len,
            threads: 1,
            retry: (1, Duration::ZERO),
            fence: None,
            dirty: None,
            backing: Backing::Anonymous,
            around: 1,
            spin: Duration::ZERO,
        }
    }

    /// Phases: check the options against what the kernel offers, open the userfaultfd, map the
    /// backing, register the range, start the handler threads.
    fn create(b: &PagedRegionBuilder, source: Box<dyn PageSource>) -> Result<PagedRegion> {
        if b.len == 0 {
            return Err(Error::new("PagedRegion::new", ErrorKind::InvalidArgument).with_detail("length is zero"));
        }
        if b.threads > PagedRegionBuilder::MAX_HANDLER_THREADS {
            return Err(Error::new("PagedRegion::new", ErrorKind::InvalidArgument).with_detail(format!(
                "{} handler threads: at most {}",
                b.threads,
                PagedRegionBuilder::MAX_HANDLER_THREADS
            )));
        }
        let caps = uffd::capabilities()?;
        let fence = choose_fence(b.fence, &caps)?;
        let dirty = choose_dirty(b, &caps)?;
        let needed = backing_features(b.backing, &caps)?;
        let features =
            if fence == Fence::Poison { sys::FEATURE_POISON } else { 0 } | dirty.map_or(0, |m| m.features()) | needed;
        let (fd, mode, _features) = uffd::open_with(features)?;
        let tracker = dirty.map(Tracker::new).transpose()?;
        let mut reg_mode = if dirty.is_some_and(|m| m.uses_write_protect()) {
            sys::REGISTER_MODE_MISSING | sys::REGISTER_MODE_WP
        } else {
            sys::REGISTER_MODE_MISSING
        };
        let (map, install, page, memfd) = map_backing(b, &mut reg_mode)?;
        let (base, span, fork_entry) = register_range(&map, &fd, reg_mode)?;
        // One state byte per granule: for a huge region (a memfd's pages are only reserved) that
        // is gigabytes, which may not be there; an error then, not an abort.
        let states = missing_states(span / page).ok_or_else(|| {
            Error::from_raw_errno("PagedRegion::new", libc::ENOMEM)
                .with_range(0, b.len as u64)
                .with_detail(format!("no memory for the pager's state of {} granules (one byte each)", span / page))
        })?;
        let shared = Arc::new(Shared {
            uffd: fd,
            base,
            len: span,
            page,
            source,
            states,
            failures: Mutex::new(Vec::new()),
            fence,
            retry: b.retry,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            scratch: Mutex::new(Vec::new()),
            handler_error: Mutex::new(None),
            abandoned: AtomicBool::new(false),
            unfenced: AtomicBool::new(false),
            #[cfg(test)]
            wakes: AtomicU64::new(0),
            tracker,
            install,
            around: b.around,
            spin: b.spin,
            batch: if b.threads > 1 { 1 } else { 16 },
        });
        if let Some(t) = &shared.tracker {
            t.start(shared.uffd.as_fd(), base, span)?;
        }
        let (stop_r, stop_w) = sys::stop_pipe().map_err(|e| {
            Error::os("pipe2(O_CLOEXEC)", e)
                .with_addr(map.as_ptr() as usize)
                .with_range(0, b.len as u64)
                .with_detail("the stop pipe of the region's fault handler threads")
        })?;
        let stop_r = Arc::new(stop_r);
        // Built before the threads start: if one fails to start, dropping the region stops the
        // ones already running.
        let mut region = PagedRegion {
            map: std::mem::ManuallyDrop::new(map),
            owner: rustix::process::getpid(),
            shared,
            mode,
            stop: stop_w,
            threads: Vec::new(),
            backing: b.backing,
            memfd,
            _fork_entry: fork_entry,
        };
        for i in 0..b.threads {
            region.start_handler(i, &stop_r)?;
        }
        Ok(region)
    }

    /// Starts handler thread number `i`, which serves faults until `stop` is readable.
    fn start_handler(&mut self, i: usize, stop: &Arc<OwnedFd>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let stop = Arc::clone(stop);
        let scratch = shared.take_scratch().map_err(|e| {
            let detail = format!("the fill buffer of handler thread {i}");
            let detail = e.detail().map_or(detail.clone(), |d| format!("{detail}: {d}"));
            e.with_detail(detail)
        })?;
        let t = std::thread::Builder::new()
            .name(format!("mmkit-pager-{i}"))
            .spawn(move || shared.run_handler(&stop, scratch))
            .map_err(|e| {
                // `from_io`: `std` may fail without an errno (then its message, not "errno 0").
                Error::from_io(format!("spawn of handler thread {i} (mmkit-pager-{i})"), &e)
                    .with_addr(self.map.as_ptr() as usize)
                    .with_range(0, self.map.len() as u64)
            })?;
        self.threads.push(t);
        Ok(())
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the region is empty (never: a region has at least one page).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Which pages of `range` (bytes of the region) are in memory (`mincore`): the pages
    /// supplied so far, as the kernel sees them.
    ///
    /// The region does not lend its [`mmkit::Mapping`]: that type's safe
    /// [`advise`](mmkit::Mapping::advise) with [`Advice::DoFork`](mmkit::Advice::DoFork) would
    /// undo the region's `MADV_DONTFORK`, and a forked child would then read the missing pages
    /// as zeros that no source supplied.
    ///
    /// ```compile_fail
    /// # fn f(region: &mmkit_pager::PagedRegion) {
    /// region.mapping().advise(.., mmkit::Advice::DoFork).unwrap(); // not lent: no such method
    /// # }
    /// ```
    pub fn residency(&self, range: impl std::ops::RangeBounds<usize>) -> Result<mmkit::Residency> {
        self.map.mapping().residency(range)
    }

    /// Copies the region's bytes at `offset` into `dst` through the kernel
    /// ([`mmkit::Mapping::copy_from_mapping`], `process_vm_readv`), without risking a signal:
    /// a fenced page (its source failed) is an error. A missing page is supplied first under
    /// [`FaultMode::Full`]; under [`FaultMode::UserModeOnly`] the kernel's access is refused,
    /// so a page not supplied yet is an error too. [`read`](Self::read) supplies missing pages
    /// in every mode and returns a failed page's own error.
    ///
    /// Such a page is an [`ErrorKind::Os`] error with `EFAULT` that says which it is (mmkit's
    /// own answer would call a page of a shared-memory backing "truncated", as for a file).
    pub fn copy_from_mapping(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.map.mapping().copy_from_mapping(offset, dst).map_err(|e| {
            if e.kind() != ErrorKind::Truncated && e.errno() != Some(libc::EFAULT) {
                return e;
            }
            let why = match self.fault_mode() {
                FaultMode::UserModeOnly => {
                    "the page is fenced (its source failed), or not supplied yet (the kernel's own accesses are \
                     not served under FaultMode::UserModeOnly: read() supplies it)"
                }
                FaultMode::Full => "the page is fenced: its source failed (read() returns that error)",
            };
            let mut err = Error::os("PagedRegion::copy_from_mapping", Errno::FAULT).with_detail(why);
            if let Some(addr) = e.addr() {
                err = err.with_addr(addr);
            }
            match e.range() {
                Some((off, len)) => err.with_range(off, len),
                None => err,
            }
        })
    }

    /// Which faults the region's userfaultfd handles.
    pub fn fault_mode(&self) -> FaultMode {
        self.mode
    }

    /// What memory the region is made of.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The fault granule in bytes: the unit the source is asked for and the kernel installs —
    /// the base page size, or the huge page size of a [`Backing::HugeTlb`] region (as the
    /// kernel reports it for the mapping).
    pub fn granule(&self) -> usize {
        self.shared.page
    }

    /// A read-only descriptor of the region's memfd, for another process to map
    /// (`MAP_SHARED`, `PROT_READ`) or `pread`: it sees every page the region was supplied.
    /// Only [`Backing::SharedMemory`]`(`[`ShmemFill::Continue`]`)` regions share (any other is
    /// an [`ErrorKind::InvalidArgument`] error): there every first access by the region reaches
    /// the pager, minor faults included, so a peer touching a page not supplied yet (it reads
    /// zeros, and the kernel puts a zero page in the memfd's page cache) cannot make the region
    /// read that zero page; the pager overwrites it with the source's bytes before mapping it.
    /// The descriptor is opened again through `/proc/self/fd` with `O_RDONLY`, and the memfd is
    /// sealed `FUTURE_WRITE` first (the region's own mappings, made before, keep writing): its
    /// holder can neither write (not even through a descriptor it opens again read-write from
    /// `/proc/<pid>/fd`), resize nor seal it.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit_pager::Error> {
    /// use mmkit_pager::{Backing, FnSource, Filled, PagedRegion, ShmemFill};
    /// let region = PagedRegion::builder(mmkit::page_size())
    ///     .backing(Backing::SharedMemory(ShmemFill::Continue))
    ///     .build(FnSource(|_, buf: &mut [u8]| { buf.fill(7); Ok(Filled::Data) }))?;
    /// assert_eq!(region.as_slice()[0], 7);
    /// let fd = region.share()?;
    /// let mut byte = [0u8];
    /// rustix::io::pread(&fd, &mut byte, 0).unwrap();
    /// assert_eq!(byte[0], 7);
    /// # Ok(()) }
    /// ```
    pub fn share(&self) -> Result<OwnedFd> {
        let memfd = match (&self.memfd, self.backing) {
            (Some(m), Backing::SharedMemory(ShmemFill::Continue)) => m,
            _ => {
                return Err(Error::new("PagedRegion::share", ErrorKind::InvalidArgument).with_detail(format!(
                    "only a shared memory (UFFDIO_CONTINUE) region can be shared, not one with {} backing",
                    self.backing.name()
                )))
            }
        };
        // `O_RDONLY` alone would not do: `/proc/<pid>/fd/N` of the descriptor opens again
        // read-write (a memfd's inode is mode 0777), and a write there would change the bytes
        // behind `as_slice`. The seal refuses every write and writable mapping made after it.
        if !memfd.seals()?.contains(Seals::FUTURE_WRITE) {
            memfd.add_seals(Seals::FUTURE_WRITE)?;
        }
        sys::reopen_read_only(memfd.as_fd()).map_err(|e| {
            Error::os("open of /proc/self/fd/N (O_RDONLY)", e).with_detail(format!("memfd {:?}", memfd.name()))
        })
    }

    /// Supplies the granules of `[offset, offset + bytes.len())` with `bytes` now, without a
    /// fault and without asking the source: the bytes go into the memfd's page cache through
    /// the staging mapping and `UFFDIO_CONTINUE` maps them. `offset` and the length must be
    /// multiples of the [granule](Self::granule). Only for
    /// [`Backing::SharedMemory`]`(`[`ShmemFill::Continue`]`)` regions
    /// ([`ErrorKind::InvalidArgument`] otherwise); a granule supplied already (touched, staged,
    /// or failed) is an [`ErrorKind::InvalidArgument`] error naming it, and the granules before
    /// it stay staged.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit_pager::Error> {
    /// use mmkit_pager::{Backing, PagedRegion, ShmemFill, ZeroSource};
    /// let page = mmkit::page_size();
    /// let region = PagedRegion::builder(4 * page)
    ///     .backing(Backing::SharedMemory(ShmemFill::Continue))
    ///     .build(ZeroSource)?;
    /// region.stage(page, &vec![9u8; page])?;
    /// assert_eq!(region.as_slice()[page], 9);
    /// assert_eq!(region.stats().faults, 0);
    /// # Ok(()) }
    /// ```
    pub fn stage(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        const OP: &str = "PagedRegion::stage";
        self.check_owner(OP)?;
        let s = &self.shared;
        let Install::Continue { staging, .. } = &s.install else {
            return Err(Error::new(OP, ErrorKind::InvalidArgument).with_detail(format!(
                "only a shared memory (UFFDIO_CONTINUE) region can stage pages, not one with {} backing",
                self.backing.name()
            )));
        };
        let g = s.page;
        if !offset.is_multiple_of(g) || !bytes.len().is_multiple_of(g) {
            return Err(Error::new(OP, ErrorKind::Unaligned)
                .with_range(offset as u64, bytes.len() as u64)
                .with_detail(format!("offset and length must be multiples of the granule {g:#x}")));
        }
        let (first, last) = self.pages_of(OP, offset, bytes.len())?;
        // Bytes read from the region itself are copied out first: reading a page this call
        // holds FILLING would wait for a fill that only this thread can finish.
        let copy;
        let bytes = if (bytes.as_ptr() as usize) < s.base + s.len && s.base < bytes.as_ptr() as usize + bytes.len() {
            copy = bytes.to_vec();
            &copy[..]
        } else {
            bytes
        };
        for index in first..last {
            if s.state(index).compare_exchange(MISSING, FILLING, Ordering::SeqCst, Ordering::Acquire).is_err() {
                return Err(Error::new(OP, ErrorKind::InvalidArgument)
                    .with_addr(s.base + index * g)
                    .with_range((index * g) as u64, g as u64)
                    .with_detail("the page was supplied already (or its fill failed)"));
            }
            if s.backs_off(index, index + 1) {
                return Err(self.failure_error(index));
            }
            let src = &bytes[(index - first) * g..(index - first + 1) * g];
            // SAFETY: page `index` of the staging mapping (which covers the region) is held
            // FILLING by this thread and not mapped in the registered range; see `buffer`.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), staging.as_mut_ptr().add(index * g), g) };
            if let Err(e) = s.install(|| sys::continue_(s.uffd.as_fd(), s.base + index * g, g)) {
                s.fail(index, e);
                return Err(self.failure_error(index));
            }
            s.counters.staged_pages.fetch_add(1, Ordering::Relaxed);
            s.state(index).store(PRESENT, Ordering::Release);
        }
        Ok(())
    }

    /// How failed pages are fenced.
    pub fn fence(&self) -> Fence {
        self.shared.fence
    }

    /// Counters of the fault service so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            faults: c.faults.load(Ordering::Relaxed),
            source_calls: c.source_calls.load(Ordering::Relaxed),
            data_pages: c.data_pages.load(Ordering::Relaxed),
            zero_pages: c.zero_pages.load(Ordering::Relaxed),
            failed_pages: c.failed_pages.load(Ordering::Relaxed),
            staged_pages: c.staged_pages.load(Ordering::Relaxed),
        }
    }

    /// The pages the source failed to supply, in the order they failed.
    pub fn failures(&self) -> Vec<PageFailure> {
        self.shared.failures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// An error a handler thread met outside any page (reading the userfaultfd, fencing), if any.
    /// Once a handler thread stopped serving, the pages not supplied then are fenced (see the
    /// [failure semantics](self#failure-semantics)).
    pub fn handler_error(&self) -> Option<Error> {
        self.shared.handler_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether page `index` has been supplied (filled or zero) — the pager's own record, which
    /// matches `mincore` for pages the source supplied as data. A page a handler thread
    /// supplies is recorded a moment after the install wakes the faulting threads: right after
    /// a touch it may still read `false` (after [`read`](Self::read),
    /// [`prefetch`](Self::prefetch) or [`stage`](Self::stage) it is `true`).
    pub fn is_supplied(&self, index: usize) -> bool {
        self.shared.states.get(index).is_some_and(|s| s.load(Ordering::Acquire) == PRESENT)
    }

    /// Supplies every missing page of `range` now (from this thread), as a fault would; returns
    /// the first failure.
    pub fn prefetch(&self, offset: usize, len: usize) -> Result<()> {
        self.check_owner("PagedRegion::prefetch")?;
        let (first, last) = self.pages_of("PagedRegion::prefetch", offset, len)?;
        self.ensure_range(first, last, true)
    }

    /// Makes pages `first..last` present (filling the missing ones from this thread); returns
    /// the first failure, after the other pages (`all`) or at once. A run of pages present
    /// already gets one `UFFDIO_WAKE` (a fault queued before its fill is woken), not one each:
    /// a wake of a range wakes the waiters on every page in it.
    fn ensure_range(&self, first: usize, last: usize, all: bool) -> Result<()> {
        let s = &self.shared;
        let mut scratch = s.take_scratch()?;
        let mut result = Ok(());
        let mut run = first;
        for index in first..last {
            if s.state(index).load(Ordering::Acquire) == PRESENT {
                continue;
            }
            if run < index {
                let _ = s.wake(run, index);
            }
            run = index + 1;
            if let Err(e) = self.ensure(index, &mut scratch) {
                result = result.and(Err(e));
                if !all {
                    break;
                }
            }
        }
        if run < last && (all || result.is_ok()) {
            let _ = s.wake(run, last);
        }
        s.give_scratch(scratch);
        result
    }

    /// Refuses a call that fills pages or resets dirty bits in a forked child: the child has
    /// none of the region's pages, and its userfaultfd and pagemap descriptors act on the
    /// parent's address space (a fill would install the child's bytes in the parent's pages, or
    /// poison them; a collection would reset the parent's written bits).
    fn check_owner(&self, op: &'static str) -> Result<()> {
        if rustix::process::getpid() == self.owner {
            return Ok(());
        }
        Err(Error::new(op, ErrorKind::InvalidArgument)
            .with_addr(self.shared.base)
            .with_range(0, self.len() as u64)
            .with_detail(format!(
                "the region belongs to process {}; a forked child has none of its pages (MADV_DONTFORK)",
                self.owner.as_raw_nonzero()
            )))
    }

    fn pages_of(&self, op: &'static str, offset: usize, len: usize) -> Result<(usize, usize)> {
        let end = offset.checked_add(len).filter(|&e| e <= self.len()).ok_or_else(|| {
            Error::new(op, ErrorKind::OutOfBounds)
                .with_range(offset as u64, len as u64)
                .with_detail(format!("the region is {:#x} bytes", self.len()))
        })?;
        let page = self.shared.page;
        // An empty range holds no page (not the one its offset falls in).
        Ok((offset / page, if len == 0 { offset / page } else { end.div_ceil(page) }))
    }

    /// Makes page `index` present (filling it from this thread if needed) or returns its failure.
    fn ensure(&self, index: usize, scratch: &mut MmapMut) -> Result<()> {
        loop {
            match self.shared.serve(index, scratch) {
                PRESENT => return Ok(()),
                FAILED => return Err(self.failure_error(index)),
                _ => std::thread::sleep(Duration::from_micros(50)),
            }
        }
    }

    fn failure_error(&self, index: usize) -> Error {
        let offset = (index * self.shared.page) as u64;
        let failures = self.shared.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = failures.iter().find(|f| f.offset == offset);
        let addr = self.shared.base + index * self.shared.page;
        let Some(f) = f else {
            // Not the source's failure: the page was fenced when the handler stopped serving.
            return match self.handler_error() {
                Some(h) => Error::new("page fill", ErrorKind::Os).with_detail(format!(
                    "the region's fault handler stopped before supplying the page, which is now fenced: {h}"
                )),
                None => Error::new("page fill", ErrorKind::Os).with_detail("the page was fenced"),
            }
            .with_addr(addr)
            .with_range(offset, self.shared.page as u64);
        };
        let e = match f.errno {
            Some(errno) => Error::from_raw_errno("page source fill", errno),
            None => Error::new("page source fill", ErrorKind::Os),
        };
        let e = e.with_addr(addr).with_range(offset, self.shared.page as u64);
        // A bare OS error's text is its errno's, which the error already says (it was printed
        // twice: "Input/output error (EIO): Input/output error (os error 5)").
        if f.errno.is_some_and(|n| f.message == io::Error::from_raw_os_error(n).to_string()) {
            return e;
        }
        e.with_detail(f.message.clone())
    }

    /// The dirty-tracking mechanism running, if the region was built with
    /// [`track_dirty`](PagedRegionBuilder::track_dirty).
    pub fn dirty_mechanism(&self) -> Option<DirtyMechanism> {
        self.shared.tracker.as_ref().map(|t| t.mechanism)
    }

    /// The pages written since the region was built or since the last call, and the start of a
    /// new interval. An [`ErrorKind::InvalidArgument`] error when the region does not track.
    pub fn collect_dirty(&self) -> Result<DirtyPages> {
        self.check_owner("PagedRegion::collect_dirty")?;
        let s = &self.shared;
        let t = s.tracker.as_ref().ok_or_else(|| {
            Error::new("PagedRegion::collect_dirty", ErrorKind::InvalidArgument)
                .with_detail("the region was built without track_dirty()")
        })?;
        if s.abandoned.load(Ordering::Acquire) {
            let why = self.handler_error().map_or_else(String::new, |h| format!(": {h}"));
            return Err(Error::new("PagedRegion::collect_dirty", ErrorKind::Os)
                .with_addr(s.base)
                .with_range(0, s.len as u64)
                .with_detail(format!("dirty tracking ended when the region's fault handler stopped{why}")));
        }
        t.collect(s.uffd.as_fd(), s.base, s.len, s.page)
    }

    /// The checked read: copies `buf.len()` bytes at `offset` into `buf`, supplying missing
    /// pages from this thread; a page whose source failed is an error, never a signal.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_owner("PagedRegion::read")?;
        let (first, last) = self.pages_of("PagedRegion::read", offset, buf.len())?;
        self.ensure_range(first, last, false).map_err(|e| e.with_range(offset as u64, buf.len() as u64))?;
        buf.copy_from_slice(&self.map[offset..offset + buf.len()]);
        Ok(())
    }

    /// The region as bytes. Touching a page that is missing blocks this thread until the page
    /// is supplied; touching a page whose source failed raises `SIGBUS` (or `SIGSEGV`), see the
    /// [failure semantics](self#failure-semantics). Use [`read`](Self::read) to get an error
    /// instead.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// The region as mutable bytes (writes to missing pages fill them from the source first).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

impl Drop for PagedRegion {
    fn drop(&mut self) {
        if rustix::process::getpid() != self.owner {
            // A forked child's copy. The stop pipe and the userfaultfd are the parent's too
            // (`UFFDIO_UNREGISTER` acts on the address space the userfaultfd was created in:
            // the parent's, whose missing pages would then read as zeros), the handler threads
            // do not exist here (joining them would wait forever), and the range is not mapped
            // here (`MADV_DONTFORK`; the fork guard's reservation stays, so that nothing is
            // ever mapped where a copy of the region pointed). Only this copy's descriptors are
            // closed.
            std::mem::forget(std::mem::take(&mut self.threads));
            return;
        }
        self.shared.stopping.store(true, Ordering::Relaxed);
        for _ in 0..self.threads.len() {
            let _ = sys::signal_stop(&self.stop);
        }
        // Unregistering wakes any thread still waiting on a fault of the range.
        let _ = sys::unregister(self.shared.uffd.as_fd(), self.shared.base, self.shared.len);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // SAFETY: dropped once, here, and never used again (the region is being dropped).
        unsafe { std::mem::ManuallyDrop::drop(&mut self.map) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FnSource;

    /// A region of `pages` pages whose source fails page `bad`, or `None` (with the reason
    /// printed) when this process may not open a userfaultfd.
    fn region(pages: usize, bad: usize) -> Option<PagedRegion> {
        let g = mmkit::page_size();
        let source = FnSource(move |offset, buf: &mut [u8]| {
            if offset == (bad * mmkit::page_size()) as u64 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            buf.fill(offset as u8 | 1);
            Ok(Filled::Data)
        });
        match PagedRegion::new(pages * g, source) {
            Ok(r) => Some(r),
            Err(e) => {
                println!("skipped: {e}");
                None
            }
        }
    }

    #[test]
    fn read_and_prefetch_wake_each_run_of_present_pages_once() {
        let g = mmkit::page_size();
        let Some(region) = region(16, 8) else { return };
        let wakes = || region.shared.wakes.swap(0, Ordering::Relaxed);
        region.prefetch(0, 8 * g).unwrap();
        region.prefetch(9 * g, 7 * g).unwrap();
        wakes();
        // Present 0..8, failed 8, present 9..16: a wake per run, and the failed page's.
        assert_eq!(region.prefetch(0, 16 * g).unwrap_err().errno(), Some(libc::EIO));
        assert_eq!(wakes(), 3);
        let mut buf = vec![0u8; 8 * g];
        region.read(0, &mut buf).unwrap();
        assert_eq!(wakes(), 1);
        assert_eq!(buf[5 * g], (5 * g) as u8 | 1);
        // The read stops at the failed page: the run before it is woken, not the one after.
        assert!(region.read(0, &mut vec![0u8; 16 * g]).is_err());
        assert_eq!(wakes(), 2);
        region.read(9 * g + 1, &mut buf[..g]).unwrap();
        assert_eq!(wakes(), 1);
    }
}
