//! Snapshots: a region's bytes in a file, restored lazily into a [`PagedRegion`]
//! (Firecracker-style) or eagerly.
//!
//! The snapshot file is the plain bytes of the memory, byte for byte — the same layout as a
//! Firecracker guest-memory file, readable by any tool — and **sparse**: an all-zero page is a
//! hole (no disk blocks). Restoring asks the filesystem where the data is (`SEEK_DATA` /
//! `SEEK_HOLE`) so a hole becomes a zero page without a read.
//!
//! Every path here must name a regular file: a FIFO, socket, directory or device is refused
//! without blocking or writing to it ([`mmkit::open`]).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?; let path = dir.path().join("mem.snap");
//! let page = mmkit::page_size();
//! let mut mem = mmkit::MapOptions::new().len(64 * page).map_anon()?;
//! mem[5 * page] = 42;
//! let info = mmkit_pager::snapshot::write(&mem, &path)?;
//! assert_eq!((info.pages, info.data_pages), (64, 1));
//! let region = mmkit_pager::snapshot::restore_lazy(&path, 1)?;
//! assert_eq!(region.as_slice()[5 * page], 42); // one page read from the file
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mmkit::{Error, ErrorKind, MapOptions, MmapMut, Result};
use rustix::fs::SeekFrom;

use crate::region::PagedRegion;
use crate::source::{Filled, PageSource};

/// What a snapshot file holds, page by page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The file's length in bytes (the memory's length).
    pub len: u64,
    /// The page size the pages are counted in (this machine's).
    pub page_size: u64,
    /// Pages in the file (the last may be partial).
    pub pages: u64,
    /// Pages that hold data (at least one block of the page is allocated).
    pub data_pages: u64,
    /// Pages that are holes (read as zeros, no disk blocks).
    pub hole_pages: u64,
    /// Bytes the file occupies on disk (`st_blocks * 512`).
    pub disk_bytes: u64,
    /// The data extents as byte ranges `[start, end)`, page-aligned.
    pub data_extents: Vec<(u64, u64)>,
}

fn snap_err(op: &'static str, path: &Path, e: impl Into<io::Error>) -> Error {
    let e: io::Error = e.into();
    Error::from_raw_errno(op, e.raw_os_error().unwrap_or(libc::EIO)).with_path(path)
}

/// Writes `memory` (any mapping's bytes, a region's [`as_slice`](PagedRegion::as_slice)...) to
/// a new snapshot file at `path`, leaving a hole for every all-zero page.
pub fn write(memory: &[u8], path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    write_with(path.as_ref(), memory.len(), |off, buf| {
        buf.copy_from_slice(&memory[off..off + buf.len()]);
        Ok(())
    })
}

/// Writes a [`PagedRegion`] to a snapshot through its checked [`read`](PagedRegion::read): a
/// page its source failed to supply is an error, not a signal.
///
/// `path` may be the snapshot the region was [restored](restore_lazy) from: the file is not
/// emptied first but rewritten page by page in order, each page after the region read it, so
/// every page the region has still to read from it is the one it was restored with.
pub fn write_region(region: &PagedRegion, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    write_with(path.as_ref(), region.len(), |off, buf| region.read(off, buf))
}

/// Creates the snapshot file: `page_at(offset, buf)` gives each page's bytes; all-zero pages
/// stay holes.
fn write_with(
    path: &Path,
    len: usize,
    mut page_at: impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> Result<SnapshotInfo> {
    let page = mmkit::page_size();
    let mut buf = vec![0u8; page];
    // An existing file is not emptied first: it may be the one a region being written reads
    // its missing pages from (`write_region` onto the snapshot it was restored from), which
    // would then fail them. Each page is read before its bytes in the file are replaced, and
    // a page of the old file that is zero now becomes a hole (or zeros where punching fails).
    let (file, old_len) = match mmkit::open::open_regular_read_write(path) {
        Ok(file) => {
            let old_len = file.metadata().map_err(|e| snap_err("fstat of a snapshot", path, e))?.len();
            (file, old_len)
        }
        Err(e) if e.errno() == Some(libc::ENOENT) => (mmkit::open::create_regular(path)?, 0),
        Err(e) => return Err(e),
    };
    // Zero pages inside the old file are punched a run at a time (one system call per run, not
    // per page: a mostly-zero snapshot of gigabytes is millions of pages). A run is punched
    // after its pages were read, so nothing reads its old bytes afterwards.
    let punch = |from: usize, to: usize| -> Result<()> {
        let to = to.min(usize::try_from(old_len).unwrap_or(usize::MAX));
        if from >= to {
            return Ok(());
        }
        let flags = rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
        if rustix::fs::fallocate(&file, flags, from as u64, (to - from) as u64).is_ok() {
            return Ok(());
        }
        // No holes on this file system: zeros, a page at a time.
        let zeros = vec![0u8; page];
        let mut at = from;
        while at < to {
            let n = page.min(to - at);
            file.write_all_at(&zeros[..n], at as u64)
                .map_err(|e| snap_err("write of a snapshot", path, e).with_range(at as u64, n as u64))?;
            at += n;
        }
        Ok(())
    };
    let mut zero_run = None;
    let mut off = 0;
    while off < len {
        let n = page.min(len - off);
        page_at(off, &mut buf[..n])?;
        if buf[..n].iter().all(|&b| b == 0) {
            zero_run.get_or_insert(off);
        } else {
            if let Some(from) = zero_run.take() {
                punch(from, off)?;
            }
            file.write_all_at(&buf[..n], off as u64)
                .map_err(|e| snap_err("write of a snapshot", path, e).with_range(off as u64, n as u64))?;
        }
        off += n;
    }
    if let Some(from) = zero_run {
        punch(from, len)?;
    }
    file.set_len(len as u64).map_err(|e| snap_err("ftruncate of a snapshot", path, e))?;
    file.sync_data().map_err(|e| snap_err("fdatasync of a snapshot", path, e))?;
    info_of(&file, path)
}

/// Writes an **incremental** snapshot: updates the snapshot at `path` (taken earlier of the same
/// memory) with the pages `dirty` lists, read from `region` through its checked read. A page
/// that became all zeros is punched out as a hole (`FALLOC_FL_PUNCH_HOLE`; written as zeros on a
/// filesystem without it).
pub fn update(region: &PagedRegion, dirty: &crate::DirtyPages, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    let path = path.as_ref();
    let page = dirty.page_size;
    // `DirtyPages` has public fields: pages counted in another size than the region's would
    // write the wrong bytes at the wrong offsets (or allocate an absurd buffer).
    if page != region.granule() {
        return Err(Error::new("update of a snapshot", ErrorKind::InvalidArgument)
            .with_path(path)
            .with_detail(format!("the dirty pages count in {page}-byte pages, the region in {}", region.granule())));
    }
    let file = mmkit::open::open_regular_read_write(path)?;
    // A snapshot of other memory (another length) would silently become a mix of both, and
    // grow or keep its own length.
    let file_len = file.metadata().map_err(|e| snap_err("fstat of a snapshot", path, e))?.len();
    if file_len != region.len() as u64 {
        return Err(Error::new("update of a snapshot", ErrorKind::InvalidArgument).with_path(path).with_detail(
            format!(
                "the snapshot is {file_len:#x} bytes, the region {:#x}: not a snapshot of this memory",
                region.len()
            ),
        ));
    }
    let mut buf = vec![0u8; page];
    for &p in &dirty.pages {
        // A page index past the region (or past the address space) has nothing to write.
        let Some(off) = usize::try_from(p).ok().and_then(|p| p.checked_mul(page)) else { continue };
        let n = page.min(region.len().saturating_sub(off));
        if n == 0 {
            continue;
        }
        region.read(off, &mut buf[..n])?;
        let zero = buf[..n].iter().all(|&b| b == 0);
        let punched = zero
            && rustix::fs::fallocate(
                &file,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                off as u64,
                n as u64,
            )
            .is_ok();
        if !punched {
            file.write_all_at(&buf[..n], off as u64)
                .map_err(|e| snap_err("write of a snapshot", path, e).with_range(off as u64, n as u64))?;
        }
    }
    file.sync_data().map_err(|e| snap_err("fdatasync of a snapshot", path, e))?;
    info_of(&file, path)
}

/// The data extents of `file` (`SEEK_DATA`/`SEEK_HOLE`), widened to whole pages. A filesystem
/// without hole support reports one extent: the whole file.
fn data_extents(file: &File, path: &Path, len: u64, page: u64) -> Result<Vec<(u64, u64)>> {
    let mut extents: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(snap_err("lseek(SEEK_DATA) of a snapshot", path, e).with_range(pos, len - pos)),
        };
        // Data at or past the length `fstat` gave is not the snapshot's: the file grew since
        // (a writer still at it). Its extent would start past its (clamped) end: a negative
        // length, which panicked in debug builds and made garbage counts otherwise.
        if start >= len {
            break;
        }
        let end = rustix::fs::seek(file, SeekFrom::Hole(start))
            .map_err(|e| snap_err("lseek(SEEK_HOLE) of a snapshot", path, e).with_range(start, len - start))?;
        let (s, e) = (start / page * page, end.div_ceil(page).saturating_mul(page).min(len.div_ceil(page) * page));
        match extents.last_mut() {
            Some(last) if last.1 >= s => last.1 = last.1.max(e),
            // Empty when the data went meanwhile (the hole starts where the data did).
            _ if e <= s => {}
            _ => extents.push((s, e)),
        }
        pos = end.max(start + 1);
    }
    Ok(extents)
}

/// A snapshot's pages; a `/proc` or `/sys` file is refused (its size is not its content).
fn info_of(file: &File, path: &Path) -> Result<SnapshotInfo> {
    crate::source::refuse_proc_and_sys(file, path, "read of a snapshot")?;
    let st = rustix::fs::fstat(file).map_err(|e| snap_err("fstat of a snapshot", path, e))?;
    let len = st.st_size as u64;
    let page = mmkit::page_size() as u64;
    let data_extents = data_extents(file, path, len, page)?;
    let pages = len.div_ceil(page);
    let data_pages = data_extents.iter().map(|(s, e)| (e - s) / page).sum::<u64>().min(pages);
    Ok(SnapshotInfo {
        len,
        page_size: page,
        pages,
        data_pages,
        hole_pages: pages - data_pages,
        disk_bytes: st.st_blocks as u64 * 512,
        data_extents,
    })
}

/// Reports a snapshot file's pages: data, holes, disk use. A `/proc` or `/sys` file is
/// refused ([`refuse_proc_and_sys`](crate::source::refuse_proc_and_sys)).
pub fn info(path: impl AsRef<Path>) -> Result<SnapshotInfo> {
    let path = path.as_ref();
    let file = mmkit::open::open_regular(path)?;
    info_of(&file, path)
}

/// A snapshot file as a [`PageSource`]: holes are zero pages (no read), data pages are read with
/// `pread`. [`reads`](Self::reads) counts the reads, to show what a lazy restore cost.
#[derive(Debug)]
pub struct SnapshotSource {
    file: File,
    path: PathBuf,
    info: SnapshotInfo,
    reads: AtomicU64,
}

impl SnapshotSource {
    /// Opens a snapshot and finds its data extents.
    pub fn open(path: impl AsRef<Path>) -> Result<SnapshotSource> {
        let path = path.as_ref();
        let file = mmkit::open::open_regular(path)?;
        let info = info_of(&file, path)?;
        Ok(SnapshotSource { file, path: path.to_owned(), info, reads: AtomicU64::new(0) })
    }

    /// What the snapshot holds.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    /// `pread` calls made so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn is_hole(&self, offset: u64) -> bool {
        let i = self.info.data_extents.partition_point(|&(_, e)| e <= offset);
        self.info.data_extents.get(i).is_none_or(|&(s, _)| s > offset)
    }
}

impl PageSource for SnapshotSource {
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        if offset >= self.info.len || self.is_hole(offset) {
            return Ok(Filled::Zero);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let want = (buf.len() as u64).min(self.info.len - offset) as usize;
        self.file.read_exact_at(&mut buf[..want], offset).map_err(|e| {
            io::Error::new(e.kind(), format!("pread of snapshot {} at {offset:#x}: {e}", self.path.display()))
        })?;
        buf[want..].fill(0);
        Ok(Filled::Data)
    }
}

/// A snapshot of `len` bytes, more than this process can address (a 32-bit one): it said only
/// "OutOfBounds".
fn too_long(path: &Path, len: u64) -> Error {
    Error::new("restore of a snapshot", ErrorKind::OutOfBounds).with_path(path).with_range(0, len).with_detail(format!(
        "the snapshot is {len:#x} bytes, more than this process's address space holds ({:#x})",
        usize::MAX
    ))
}

/// Restores a snapshot **lazily**: a [`PagedRegion`] of the snapshot's length whose pages are
/// read from the file when first touched (holes become zero pages without a read), served by
/// `handler_threads` threads. Returns at once: time to first access is one page's read.
///
/// The region is private anonymous memory ([`Backing::Anonymous`](crate::Backing::Anonymous),
/// which dirty tracking needs), charged in full against the commit limit however sparse the
/// snapshot: under the default `vm.overcommit_memory` a snapshot larger than RAM and swap is an
/// `ENOMEM` error. Such a snapshot restores into shared memory, which reserves nothing:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?; let path = dir.path().join("guest.mem");
/// # std::fs::File::create(&path)?.set_len(1 << 30)?;
/// use mmkit_pager::{Backing, PagedRegion, ShmemFill, SnapshotSource};
/// let source = SnapshotSource::open(&path)?;
/// let len = usize::try_from(source.info().len)?;
/// let region = PagedRegion::builder(len).backing(Backing::SharedMemory(ShmemFill::Copy)).build(source)?;
/// # assert_eq!(region.as_slice()[len - 1], 0);
/// # Ok(()) }
/// ```
pub fn restore_lazy(path: impl AsRef<Path>, handler_threads: usize) -> Result<PagedRegion> {
    let source = SnapshotSource::open(path.as_ref())?;
    let len = usize::try_from(source.info.len).map_err(|_| too_long(path.as_ref(), source.info.len))?;
    // As `restore_eager` says it: the region's own "length is zero" would not name the file.
    if len == 0 {
        return Err(Error::new("restore of a snapshot", ErrorKind::InvalidArgument)
            .with_path(path.as_ref())
            .with_detail("the snapshot is empty"));
    }
    PagedRegion::builder(len).handler_threads(handler_threads).build(source).map_err(|e| {
        if e.errno() != Some(libc::ENOMEM) {
            return e;
        }
        // A snapshot larger than RAM and swap (a guest's memory) is what lazy restores are for,
        // and the region's own hint named a backing this function offers no way to ask for.
        Error::from_raw_errno("restore of a snapshot", libc::ENOMEM).with_path(path.as_ref()).with_range(0, len as u64).with_detail(
            format!(
                "{e}; restore_lazy makes a private anonymous region, charged in full against the commit limit: a \
                 larger snapshot restores into shared memory, which reserves nothing: \
                 PagedRegion::builder(len).backing(Backing::SharedMemory(ShmemFill::Copy)).build(SnapshotSource::open(path)?)"
            ),
        )
    })
}

/// Restores a snapshot **eagerly**: reads every data extent into a new anonymous mapping
/// (holes stay untouched zero memory).
pub fn restore_eager(path: impl AsRef<Path>) -> Result<MmapMut> {
    let path = path.as_ref();
    let file = mmkit::open::open_regular(path)?;
    let info = info_of(&file, path)?;
    let len = usize::try_from(info.len).map_err(|_| too_long(path, info.len))?;
    if len == 0 {
        return Err(Error::new("restore of a snapshot", ErrorKind::InvalidArgument)
            .with_path(path)
            .with_detail("the snapshot is empty"));
    }
    let mut mem = MapOptions::new().len(len).map_anon()?;
    for &(s, e) in &info.data_extents {
        let e = e.min(info.len);
        file.read_exact_at(&mut mem[s as usize..e as usize], s)
            .map_err(|err| snap_err("read of a snapshot", path, err).with_range(s, e - s))?;
    }
    Ok(mem)
}
