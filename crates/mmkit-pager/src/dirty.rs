//! Dirty tracking: which pages of a [`PagedRegion`](crate::PagedRegion) were written since a
//! point in time, to write incremental snapshots.
//!
//! Three mechanisms, best first; [`DirtyMechanism::best`] picks the first the kernel offers and
//! the region reports which one runs ([`PagedRegion::dirty_mechanism`](crate::PagedRegion::dirty_mechanism)):
//! 1. [`PagemapScan`](DirtyMechanism::PagemapScan) (Linux ≥ 6.7): the region is registered for
//!    *asynchronous* userfaultfd write protection (`UFFD_FEATURE_WP_ASYNC`): a write to a
//!    protected page is resolved by the kernel, which marks the page written; collecting is one
//!    `PAGEMAP_SCAN` ioctl with `PM_SCAN_WP_MATCHING` that returns the written pages and
//!    protects them again, atomically. No fault reaches user space.
//! 2. [`WriteProtect`](DirtyMechanism::WriteProtect) (Linux ≥ 5.7): synchronous
//!    `UFFDIO_WRITEPROTECT`: the first write to a protected page stops the writer until a handler
//!    thread records the page and lifts the protection; collecting protects the range again.
//! 3. [`SoftDirty`](DirtyMechanism::SoftDirty): `/proc/self/clear_refs` (`4`) and the soft-dirty
//!    bit of `/proc/self/pagemap`. Coarse: clearing works on the **whole process** (other users
//!    of soft-dirty bits in this process are reset too), so only one region at a time may use it
//!    (a second is refused: each would lose the other's writes), and a page supplied by the pager
//!    after the start counts as written (the kernel marks new pages dirty). A write made by
//!    another thread (through a raw pointer) between a collection's read of the bits and its
//!    clear is lost: collect while writers are stopped, as CRIU freezes its target.
//!
//! With the write-protect mechanisms the pager installs every page it supplies write-protected,
//! so a page that is only read is never reported.
//!
//! ## What tracking a huge sparse region costs
//!
//! [`PagemapScan`](DirtyMechanism::PagemapScan) write-protects the whole range when the region
//! is built, and with `UFFD_FEATURE_WP_ASYNC` the kernel also protects the pages never populated
//! (it turns on `UFFD_FEATURE_WP_UNPOPULATED`: without a marker in their page-table entries, a
//! scan would report every page never touched as written). So the region's page tables are
//! allocated for its **whole length** at build: 2 MiB per GiB with 4 KiB pages (kernel memory,
//! never swapped, held for the region's life): 32 MiB and some 75 ms for a 16 GiB region on
//! Linux 6.18, 128 MiB for 64 GiB, 2 GiB per TiB, however few pages are touched.
//! [`WriteProtect`](DirtyMechanism::WriteProtect) protects only pages present (the pager installs
//! each one protected): no such cost (2.5 ms and no page tables for 16 GiB), at the price of a
//! handler round trip at each page's first write after a collection. For a sparse region of
//! hundreds of gigabytes, ask for it with
//! [`track_dirty_with`](crate::PagedRegionBuilder::track_dirty_with).
//!
//! ## System calls writing into the region of an unprivileged user
//!
//! Under [`FaultMode::UserModeOnly`](crate::FaultMode::UserModeOnly) (an unprivileged user with
//! `vm.unprivileged_userfaultfd` = 0 and no access to `/dev/userfaultfd`) the userfaultfd gets
//! only the faults raised in user mode. A fault the kernel takes on the region's behalf is
//! refused at once: the kernel's `handle_userfault` fails it (`UFFD_USER_MODE_ONLY` and no
//! `FAULT_FLAG_USER`), and the system call returns `EFAULT`. That is so of a *missing* page
//! with or without tracking. With [`WriteProtect`](DirtyMechanism::WriteProtect) it is also so
//! of pages **already supplied**: each is installed write-protected, and protected again by
//! every [`collect_dirty`](crate::PagedRegion::collect_dirty); only a fault delivered to a
//! handler thread lifts the protection (and records the page). So a system call *writing* into
//! such a page fails with `EFAULT`, having written nothing there: `read(2)`, `pread(2)`,
//! `readv(2)`, `recv(2)`/`recvmsg(2)`, `getrandom(2)` into the region, an `O_DIRECT` or
//! `io_uring` read into it, `process_vm_writev(2)` from another process. Reading the region
//! in a system call (`write(2)` from it) works on supplied pages.
//!
//! [`PagemapScan`](DirtyMechanism::PagemapScan) does not have this (the kernel resolves the
//! protection itself, `UFFD_FEATURE_WP_ASYNC`, and records the page), nor does
//! [`SoftDirty`](DirtyMechanism::SoftDirty). Hence the ways out, best first:
//! - [`track_dirty`](crate::PagedRegionBuilder::track_dirty) on Linux ≥ 6.7, which picks
//!   `PagemapScan` (check [`dirty_mechanism`](crate::PagedRegion::dirty_mechanism));
//! - the system call writes into a buffer of your own, copied into the region from user mode
//!   (`as_mut_slice()[range].copy_from_slice(..)`: its faults reach the handler, the pages are
//!   recorded);
//! - each page of the range is written from user mode first (say, one byte rewritten with its
//!   own value: the page is written anyway, so recording it costs nothing), with no
//!   `collect_dirty` between that and the call;
//! - full fault handling for the process: root (`CAP_SYS_PTRACE`), `vm.unprivileged_userfaultfd`
//!   = 1, or read-write access to `/dev/userfaultfd` (Linux ≥ 6.1).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mmkit::{Error, ErrorKind, Result};

use crate::sys;
use crate::uffd::Capabilities;

/// How dirty pages are found (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirtyMechanism {
    /// `PAGEMAP_SCAN` over asynchronous userfaultfd write protection (Linux ≥ 6.7).
    PagemapScan,
    /// Synchronous `UFFDIO_WRITEPROTECT` faults served by the handler threads. Under
    /// [`FaultMode::UserModeOnly`](crate::FaultMode::UserModeOnly) a system call writing into
    /// a supplied page still protected fails with `EFAULT` (see
    /// [the module docs](self#system-calls-writing-into-the-region-of-an-unprivileged-user)).
    WriteProtect,
    /// Soft-dirty bits (`/proc/self/clear_refs`, `/proc/self/pagemap`).
    SoftDirty,
}

impl DirtyMechanism {
    /// The best mechanism the kernel offers.
    pub fn best(caps: &Capabilities) -> DirtyMechanism {
        if caps.wp_async() {
            DirtyMechanism::PagemapScan
        } else if caps.write_protect() {
            DirtyMechanism::WriteProtect
        } else {
            DirtyMechanism::SoftDirty
        }
    }

    /// Every mechanism, best first.
    pub const ALL: [DirtyMechanism; 3] =
        [DirtyMechanism::PagemapScan, DirtyMechanism::WriteProtect, DirtyMechanism::SoftDirty];

    /// Whether this kernel offers the mechanism.
    pub fn is_available(self) -> Result<bool> {
        Ok(self.available(&crate::uffd::capabilities()?))
    }

    /// A short name (`pagemap-scan`, `write-protect`, `soft-dirty`).
    pub fn name(self) -> &'static str {
        match self {
            DirtyMechanism::PagemapScan => "pagemap-scan",
            DirtyMechanism::WriteProtect => "write-protect",
            DirtyMechanism::SoftDirty => "soft-dirty",
        }
    }

    /// The `UFFD_FEATURE_*` bits this mechanism needs.
    pub(crate) fn features(self) -> u64 {
        match self {
            DirtyMechanism::PagemapScan => sys::FEATURE_WP_ASYNC,
            DirtyMechanism::WriteProtect => sys::FEATURE_PAGEFAULT_FLAG_WP,
            DirtyMechanism::SoftDirty => 0,
        }
    }

    /// Whether pages are installed write-protected and the range registered in WP mode.
    pub(crate) fn uses_write_protect(self) -> bool {
        self != DirtyMechanism::SoftDirty
    }

    pub(crate) fn available(self, caps: &Capabilities) -> bool {
        match self {
            DirtyMechanism::PagemapScan => caps.wp_async(),
            DirtyMechanism::WriteProtect => caps.write_protect(),
            DirtyMechanism::SoftDirty => soft_dirty_available(),
        }
    }
}

/// Whether the kernel keeps soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`): a page just written in a
/// new mapping shows bit 55 in `/proc/self/pagemap` where it does. Asked once, without clearing
/// anything.
pub fn soft_dirty_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let page = mmkit::page_size();
        let Ok(mut probe) = mmkit::MapOptions::new().len(page).map_anon() else { return false };
        probe[0] = 1;
        let Ok(mut f) = File::open("/proc/self/pagemap") else { return false };
        let mut e = [0u8; 8];
        let at = (probe.as_ptr() as usize / page * 8) as u64;
        f.seek(SeekFrom::Start(at)).and_then(|_| f.read_exact(&mut e)).is_ok() && u64::from_ne_bytes(e) & (1 << 55) != 0
    })
}

/// The pages written between two collections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyPages {
    /// The mechanism that found them.
    pub mechanism: DirtyMechanism,
    /// The page size the indexes count in.
    pub page_size: usize,
    /// Indexes of the written pages, ascending.
    pub pages: Vec<u64>,
}

/// A region's tracker.
pub(crate) struct Tracker {
    pub(crate) mechanism: DirtyMechanism,
    pagemap: Option<File>,
    /// Pages recorded by the synchronous write-protect handler (`WriteProtect`), as a sorted set.
    recorded: Mutex<std::collections::BTreeSet<u64>>,
}

fn proc_err(op: &'static str, path: &str, e: std::io::Error) -> Error {
    Error::from_raw_errno(op, e.raw_os_error().unwrap_or(libc::EIO)).with_path(path)
}

fn clear_soft_dirty() -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
        .and_then(|mut f| f.write_all(b"4"))
        .map_err(|e| proc_err("write of 4 (soft-dirty) to clear_refs", "/proc/self/clear_refs", e))
}

/// Whether a region of this process is tracked with soft-dirty bits: clearing them is the whole
/// process's, so a second such region would lose the first one's writes at its every collection
/// (and the first the second's). One at a time.
static SOFT_DIRTY_IN_USE: AtomicBool = AtomicBool::new(false);

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.mechanism == DirtyMechanism::SoftDirty {
            SOFT_DIRTY_IN_USE.store(false, Ordering::Release);
        }
    }
}

impl Tracker {
    pub(crate) fn new(mechanism: DirtyMechanism) -> Result<Tracker> {
        // Opened first: a failure here must not leave the soft-dirty flag taken.
        let pagemap = match mechanism {
            DirtyMechanism::WriteProtect => None,
            _ => Some(File::open("/proc/self/pagemap").map_err(|e| proc_err("open", "/proc/self/pagemap", e))?),
        };
        if mechanism == DirtyMechanism::SoftDirty
            && SOFT_DIRTY_IN_USE.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return Err(Error::new("PagedRegion::new", ErrorKind::Unsupported).with_detail(
                "another region of this process is tracked with SoftDirty, whose bits are cleared for the whole \
                 process: each would lose the other's writes at every collection (drop it first, or track with \
                 PagemapScan or WriteProtect)",
            ));
        }
        Ok(Tracker { mechanism, pagemap, recorded: Mutex::new(Default::default()) })
    }

    /// Starts tracking: protects the range (write-protect mechanisms) or clears soft-dirty bits.
    pub(crate) fn start(&self, uffd: std::os::fd::BorrowedFd<'_>, base: usize, len: usize) -> Result<()> {
        if self.mechanism.uses_write_protect() {
            sys::writeprotect(uffd, base, len, true)
                .map_err(|e| Error::os("ioctl(UFFDIO_WRITEPROTECT)", e).with_addr(base).with_range(0, len as u64))
        } else {
            clear_soft_dirty()
        }
    }

    /// A synchronous write-protect fault on page `index`: record it and let the writer go on.
    pub(crate) fn on_write_fault(&self, uffd: std::os::fd::BorrowedFd<'_>, addr: usize, page: usize, index: u64) {
        let mut set = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(index);
        // Lifting the protection wakes the writer; under the lock, so that a collection in
        // progress sees either the write's record or its protection, never neither.
        if let Err(e) = sys::writeprotect(uffd, addr, page, false) {
            // Cannot happen for a page of a registered range; wake the writer into a retry.
            let _ = sys::wake(uffd, addr, page);
            let _ = e;
        }
    }

    /// The pages written since the last call (or the start), and the start of a new interval.
    pub(crate) fn collect(
        &self,
        uffd: std::os::fd::BorrowedFd<'_>,
        base: usize,
        len: usize,
        page: usize,
    ) -> Result<DirtyPages> {
        let pages = match self.mechanism {
            DirtyMechanism::WriteProtect => {
                let mut set = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
                self.start(uffd, base, len)?;
                std::mem::take(&mut *set).into_iter().collect()
            }
            DirtyMechanism::PagemapScan => self.scan(base, len, page)?,
            DirtyMechanism::SoftDirty => {
                // One collection at a time: another one's clearing between this one's reading
                // and clearing would lose the pages written in between from both answers.
                let _one_at_a_time = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
                let pages = self.soft_dirty(base, len, page)?;
                clear_soft_dirty()?;
                pages
            }
        };
        Ok(DirtyPages { mechanism: self.mechanism, page_size: page, pages })
    }

    fn scan(&self, base: usize, len: usize, page: usize) -> Result<Vec<u64>> {
        let pagemap = self.pagemap.as_ref().expect("pagemap is open for PAGEMAP_SCAN");
        let mut out = vec![sys::PageRegion::default(); 512];
        let mut pages = Vec::new();
        let (mut start, end) = (base, base + len);
        while start < end {
            let (n, walk_end) = sys::pagemap_scan_written(pagemap.as_fd(), start, end, &mut out).map_err(|e| {
                Error::os("ioctl(PAGEMAP_SCAN)", e)
                    .with_path("/proc/self/pagemap")
                    .with_addr(start)
                    .with_range((start - base) as u64, (end - start) as u64)
            })?;
            for r in &out[..n] {
                pages.extend(
                    (r.start as usize - base) as u64 / page as u64..(r.end as usize - base) as u64 / page as u64,
                );
            }
            if walk_end as usize <= start {
                return Err(Error::new("ioctl(PAGEMAP_SCAN)", ErrorKind::Os)
                    .with_addr(start)
                    .with_detail("the scan made no progress"));
            }
            start = walk_end as usize;
        }
        Ok(pages)
    }

    fn soft_dirty(&self, base: usize, len: usize, page: usize) -> Result<Vec<u64>> {
        use std::os::unix::fs::FileExt;
        let f = self.pagemap.as_ref().expect("pagemap is open for soft-dirty");
        let n = len / page;
        let mut raw = vec![0u8; n * 8];
        // A positioned read: a seek then a read of the shared descriptor let two collections
        // read each other's offsets.
        f.read_exact_at(&mut raw, (base / page * 8) as u64)
            .map_err(|e| proc_err("read", "/proc/self/pagemap", e).with_addr(base).with_range(0, len as u64))?;
        Ok(raw
            .chunks_exact(8)
            .enumerate()
            .filter(|(_, e)| u64::from_ne_bytes((*e).try_into().unwrap()) & (1 << 55) != 0)
            .map(|(i, _)| i as u64)
            .collect())
    }
}
