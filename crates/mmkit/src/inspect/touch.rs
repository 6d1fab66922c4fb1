//! Changing residency: read files into the page cache (touch), drop them (evict), pin them (lock).

#![deny(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::io::Errno;

use super::file_residency::open;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::inspect::{fadvise, pread_full, FileAdvice, ReadAdvice, Window};

/// How [`touch_files`] splits and spreads its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchOptions {
    /// Worker threads (0: one per CPU this process may use).
    pub threads: usize,
    /// Bytes per work item: large files are split into chunks of this size (rounded to pages)
    /// that the threads read concurrently.
    pub chunk: u64,
}

impl Default for TouchOptions {
    fn default() -> Self {
        TouchOptions { threads: 0, chunk: 32 << 20 }
    }
}

/// Reads the whole file at `path` into the page cache and returns its page count.
///
/// Equivalent to `touch_files(&[path], &TouchOptions::default(), &|_| ())`.
pub fn touch(path: impl AsRef<Path>) -> Result<u64> {
    let path = path.as_ref();
    touch_files(&[path], &TouchOptions::default(), &|_| ())
        .pop()
        .unwrap_or_else(|| Err(Error::new("touch", ErrorKind::InvalidArgument).with_path(path)))
}

/// Reads each file into the page cache, in parallel across files and across chunks of large
/// files; returns each file's page count (or its error) in the order given. `progress` is
/// called with the number of bytes of each finished chunk, from the worker threads.
///
/// Files are opened one at a time as the workers reach them and closed when their last chunk
/// is done, so at most one descriptor per thread (plus one) is open at once, however many
/// paths there are: a tree of 100,000 files touches under `ulimit -n 64`. With more threads
/// than the system will start, fewer do the work.
///
/// Each chunk is mapped read-only and populated with `MADV_POPULATE_READ` (Linux 5.14+), which
/// reads the pages in and waits for them without a page fault per page. Older kernels get
/// `POSIX_FADV_WILLNEED` followed by `pread` of the chunk.
///
/// A file's first failed chunk is its result: the error names that chunk's range and errno, and
/// the file's chunks not yet started are skipped (chunks other threads are already reading
/// finish). The other files are touched as usual. `EFAULT` from `MADV_POPULATE_READ` (a page
/// that would raise `SIGBUS`) is [`ErrorKind::Truncated`] only when the file now ends before the
/// chunk does; otherwise the chunk is read with `pread`, whose errno (`EIO`, ...) and range are
/// the error, and when that read succeeds, so has the touch.
pub fn touch_files<P: AsRef<Path> + Sync>(
    paths: &[P],
    options: &TouchOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<Result<u64>> {
    let threads = if options.threads == 0 { super::default_threads() } else { options.threads };
    let page = crate::page::page_size() as u64;
    let chunk = options.chunk.max(page) / page * page;
    let results: Vec<Mutex<Option<Result<u64>>>> = paths.iter().map(|_| Mutex::new(None)).collect();
    let queue = Mutex::new(ChunkQueue { next_path: 0, current: None });
    // Files with a failed chunk: their chunks not yet taken are skipped.
    let failed: Vec<AtomicBool> = paths.iter().map(|_| AtomicBool::new(false)).collect();
    let record = |i: usize, r: Result<u64>| {
        let mut slot = results[i].lock().unwrap_or_else(PoisonError::into_inner);
        // The first error of a file wins over its page count.
        if !matches!(*slot, Some(Err(_))) {
            *slot = Some(r);
        }
    };
    let work = || loop {
        let Some((i, file, off, len)) = next_chunk(&queue, paths, chunk, &record, &failed) else { break };
        let r = touch_range(&file, off, len).map_err(|e| e.with_path(paths[i].as_ref()));
        if let Err(e) = r {
            failed[i].store(true, Ordering::Relaxed);
            record(i, Err(e));
        }
        progress(len);
    };
    std::thread::scope(|s| {
        let handles = super::spawn_workers(s, threads.clamp(1, paths.len().max(1)) - 1, &work);
        work();
        for h in handles {
            h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
    });
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.into_inner().unwrap_or_else(PoisonError::into_inner);
            r.unwrap_or_else(|| Err(Error::new("touch", ErrorKind::InvalidArgument).with_path(paths[i].as_ref())))
        })
        .collect()
}

/// The files still to touch: the next path to open and the open file being split into chunks.
struct ChunkQueue {
    next_path: usize,
    /// (path index, the file, its length, offset of its next chunk)
    current: Option<(usize, Arc<File>, u64, u64)>,
}

/// Takes the next chunk to touch: `(path index, file, offset, length)`. Opens files in order
/// as needed (recording the page count of each, or its error, through `record`); `None` when
/// every path is done. A file marked in `failed` gives no more chunks. The queue holds at most
/// one open file; each worker one more.
fn next_chunk<P: AsRef<Path>>(
    queue: &Mutex<ChunkQueue>,
    paths: &[P],
    chunk: u64,
    record: &dyn Fn(usize, Result<u64>),
    failed: &[AtomicBool],
) -> Option<(usize, Arc<File>, u64, u64)> {
    let page = crate::page::page_size() as u64;
    let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        if let Some((i, file, len, off)) = &mut q.current {
            if *off < *len && !failed[*i].load(Ordering::Relaxed) {
                let this = (*len - *off).min(chunk);
                let taken = (*i, Arc::clone(file), *off, this);
                *off += this;
                return Some(taken);
            }
            q.current = None;
        }
        let i = q.next_path;
        let p = paths.get(i)?.as_ref();
        q.next_path += 1;
        match open(p) {
            Ok((f, len)) => {
                record(i, Ok(len.div_ceil(page)));
                q.current = Some((i, Arc::new(f), len, 0));
            }
            Err(e) => record(i, Err(e)),
        }
    }
}

/// Reads `[off, off + len)` of `file` into the page cache and waits for it.
fn touch_range(file: &File, off: u64, len: u64) -> Result<()> {
    let w = Window::map(file, off, len as usize).map_err(|e| Error::os("mmap", e).with_range(off, len))?;
    match w.advise(0, w.len(), ReadAdvice::PopulateRead) {
        Ok(()) => Ok(()),
        // EINVAL: a kernel before 5.14 that does not know MADV_POPULATE_READ.
        Err(Errno::INVAL) => {
            drop(w);
            touch_range_by_reading(file, off, len)
        }
        Err(Errno::FAULT) => {
            drop(w);
            populate_faulted(file, off, len)
        }
        Err(e) => Err(Error::os("madvise(MADV_POPULATE_READ)", e).with_range(off, len)),
    }
}

/// `MADV_POPULATE_READ` of `[off, off + len)` answered `EFAULT`: a page would have raised
/// `SIGBUS`. That is a truncation only when the file now ends before the range does; else (a
/// read error of the device, a file system's refusal) `pread` of the range finds the errno and
/// the range it failed at, and when it reads the whole range the touch is done.
fn populate_faulted(file: &File, off: u64, len: u64) -> Result<()> {
    let now = file.metadata().map_err(|e| Error::from_io("fstat", &e))?.len();
    if now < off.saturating_add(len) {
        return Err(Error::os("madvise(MADV_POPULATE_READ)", Errno::FAULT)
            .with_kind(ErrorKind::Truncated)
            .with_range(off, len)
            .with_detail(format!("the file is now {now} bytes: it was truncated while being touched")));
    }
    touch_range_by_reading(file, off, len).map_err(|e| {
        let detail = match e.detail() {
            Some(d) => format!("{d}; madvise(MADV_POPULATE_READ) of the chunk had answered EFAULT"),
            None => "madvise(MADV_POPULATE_READ) of the chunk had answered EFAULT".to_owned(),
        };
        e.with_detail(detail)
    })
}

fn touch_range_by_reading(file: &File, off: u64, len: u64) -> Result<()> {
    fadvise(file, off, len, FileAdvice::WillNeed)
        .map_err(|e| Error::os("posix_fadvise(POSIX_FADV_WILLNEED)", e).with_range(off, len))?;
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut pos = off;
    while pos < off + len {
        let want = ((off + len - pos) as usize).min(buf.len());
        let n =
            pread_full(file, &mut buf[..want], pos).map_err(|e| Error::os("pread", e).with_range(pos, want as u64))?;
        if n == 0 {
            break;
        }
        pos += n as u64;
    }
    Ok(())
}

/// Drops the file's clean pages from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`),
/// as `vmtouch -e` does.
///
/// Dirty pages are scheduled for writeback but stay (sync the file first to drop them too);
/// pages mapped by some process stay as well.
pub fn evict(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let (file, _) = open(path)?;
    fadvise(&file, 0, 0, FileAdvice::DontNeed)
        .map_err(|e| Error::os("posix_fadvise(POSIX_FADV_DONTNEED)", e).with_path(path))
}

/// A file mapped and `mlock`ed into memory; unlocked and unmapped on drop.
#[derive(Debug)]
pub struct LockedFile {
    path: PathBuf,
    pages: u64,
    _windows: Vec<Window>,
}

impl LockedFile {
    /// The locked file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pages held resident.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}

/// Maps the file at `path` read-only and locks all its pages in memory (`mlock(2)`), reading
/// them in first; they stay resident until the returned guard is dropped. Needs
/// `CAP_IPC_LOCK` or a large enough `RLIMIT_MEMLOCK`.
///
/// To hold files until the user presses Ctrl-C, as `vmtouch -l` does, lock them and then call
/// [`wait_for_termination_signal`].
pub fn lock(path: impl AsRef<Path>) -> Result<LockedFile> {
    let path = path.as_ref();
    let (file, len) = open(path)?;
    let page = crate::page::page_size() as u64;
    let window = super::WINDOW - super::WINDOW % page;
    let mut windows = Vec::new();
    let mut off = 0;
    while off < len {
        let this = (len - off).min(window);
        let w = Window::map(&file, off, this as usize).map_err(|e| {
            let err = Error::os("mmap", e).with_path(path).with_range(off, this);
            // Every window stays mapped: a large file can take the address space left.
            crate::mapping::with_memory_limits(err, e, this as usize, false)
        })?;
        w.lock().map_err(|e| Error::os("mlock", e).with_path(path).with_range(off, this))?;
        windows.push(w);
        off += this;
    }
    Ok(LockedFile { path: path.to_owned(), pages: len.div_ceil(page), _windows: windows })
}

/// Holds `SIGINT` and `SIGTERM` pending in the calling thread (and threads it starts later)
/// instead of letting them terminate the process, so that [`wait_for_termination_signal`]
/// receives one sent at any time after this call. Call it before starting threads.
pub fn block_termination_signals() -> Result<()> {
    crate::sys::inspect::block_termination_signals().map_err(|e| Error::os("pthread_sigmask", e))
}

/// Blocks `SIGINT` and `SIGTERM` in the calling thread (if not already) and waits until one
/// arrives; returns its number. Every thread of the process should have them blocked (call
/// [`block_termination_signals`] before starting threads), or a signal may be delivered to
/// another thread and terminate the process.
pub fn wait_for_termination_signal() -> Result<i32> {
    crate::sys::inspect::wait_for_termination_signal().map_err(|e| Error::os("sigwait", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::residency;
    use std::io::Write;

    fn file_of(pages: usize) -> tempfile::NamedTempFile {
        let page = crate::page::page_size();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![3u8; pages * page - 100]).unwrap();
        f.as_file().sync_all().unwrap();
        f
    }

    #[test]
    fn evict_then_touch_in_small_chunks_then_lock() {
        let f = file_of(37);
        evict(f.path()).unwrap();
        assert_eq!(residency(f.path()).unwrap().resident_pages(), 0);
        let page = crate::page::page_size() as u64;
        let seen = std::sync::atomic::AtomicU64::new(0);
        let opts = TouchOptions { threads: 3, chunk: 4 * page };
        let r = touch_files(&[f.path()], &opts, &|n| {
            seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(r.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![37]);
        assert_eq!(seen.into_inner(), 37 * page - 100);
        assert_eq!(residency(f.path()).unwrap().resident_pages(), 37);

        evict(f.path()).unwrap();
        let locked = lock(f.path()).unwrap();
        assert_eq!(locked.pages(), 37);
        assert_eq!(residency(f.path()).unwrap().resident_pages(), 37);
        // Locked (mapped) pages survive eviction.
        evict(f.path()).unwrap();
        assert_eq!(residency(f.path()).unwrap().resident_pages(), 37);
        drop(locked);
        evict(f.path()).unwrap();
        assert_eq!(residency(f.path()).unwrap().resident_pages(), 0);
    }

    #[test]
    fn reading_fallback_touches_everything() {
        let f = file_of(9);
        evict(f.path()).unwrap();
        let file = File::open(f.path()).unwrap();
        let len = file.metadata().unwrap().len();
        touch_range_by_reading(&file, 0, len).unwrap();
        assert_eq!(residency(f.path()).unwrap().resident_pages(), 9);
    }

    #[test]
    fn a_range_truncated_away_says_the_file_shrank() {
        // The file shrank between the size check and the touch: the kernel answers EFAULT,
        // and the message says why (it gave the errno alone).
        let f = file_of(4);
        let file = File::open(f.path()).unwrap();
        let len = file.metadata().unwrap().len();
        f.as_file().set_len(0).unwrap();
        let Err(e) = touch_range(&file, 0, len) else {
            return; // a kernel before 5.14 (no MADV_POPULATE_READ): the reading fallback ran
        };
        assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
        assert!(e.to_string().contains("truncated while being touched"), "{e}");
    }

    /// Regression: once a chunk of a file failed (here the file was truncated to nothing after
    /// its first chunk), each later chunk of it was still tried and failed again; now the file
    /// stops at its first failed chunk, whose range the error names, and the next file is
    /// touched in full.
    #[test]
    fn a_file_stops_at_its_first_failed_chunk_and_the_others_go_on() {
        let page = crate::page::page_size() as u64;
        let (a, b) = (file_of(8), file_of(3));
        evict(b.path()).unwrap();
        let chunks = std::sync::atomic::AtomicUsize::new(0);
        let opts = TouchOptions { threads: 1, chunk: page };
        let r = touch_files(&[a.path(), b.path()], &opts, &|_| {
            if chunks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                a.as_file().set_len(0).unwrap();
            }
        });
        let Err(e) = &r[0] else {
            return; // a kernel before 5.14 (no MADV_POPULATE_READ): the reading fallback ran
        };
        assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
        assert_eq!(e.range(), Some((page, page)), "{e}");
        assert_eq!(e.errno(), Some(libc::EFAULT), "{e}");
        assert!(e.to_string().contains("the file is now 0 bytes"), "{e}");
        // a: its first chunk and the failed second; b: its 3 chunks.
        assert_eq!(chunks.into_inner(), 2 + 3);
        assert_eq!(r[1].as_ref().ok(), Some(&3));
        assert_eq!(residency(b.path()).unwrap().resident_pages(), 3);
    }

    /// `EFAULT` from `MADV_POPULATE_READ` is a truncation only when the file now ends before
    /// the chunk: where it still covers it, the chunk is read (and an error would be `pread`'s).
    #[test]
    fn an_efault_where_the_file_still_covers_the_chunk_is_not_a_truncation() {
        let page = crate::page::page_size() as u64;
        let f = file_of(4);
        evict(f.path()).unwrap();
        let file = File::open(f.path()).unwrap();
        populate_faulted(&file, page, 2 * page).unwrap();
        assert!(residency(f.path()).unwrap().resident_pages() >= 2);
        f.as_file().set_len(page + 1).unwrap();
        let e = populate_faulted(&file, page, 2 * page).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
        assert!(e.to_string().contains(&format!("the file is now {} bytes", page + 1)), "{e}");
    }

    /// Descriptors this process has open now.
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn open_descriptors_stay_bounded_by_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..400)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, [1u8; 100]).unwrap();
                p
            })
            .collect();
        let before = open_fds();
        let most = std::sync::atomic::AtomicUsize::new(0);
        let opts = TouchOptions { threads: 3, ..TouchOptions::default() };
        let r = touch_files(&paths, &opts, &|_| {
            most.fetch_max(open_fds(), std::sync::atomic::Ordering::Relaxed);
        });
        assert!(r.iter().all(|r| r.as_ref().is_ok_and(|&p| p == 1)), "{r:?}");
        // 3 workers and the queue hold at most 4 files; other tests in this binary open a few.
        let most = most.into_inner();
        assert!(most > 0 && most < before + 40, "{most} descriptors open during the touch, {before} before");
    }

    #[test]
    fn errors_are_per_file() {
        let f = file_of(2);
        let empty = tempfile::NamedTempFile::new().unwrap();
        let missing = f.path().with_extension("missing");
        let r = touch_files(&[f.path(), &missing, empty.path()], &TouchOptions::default(), &|_| ());
        assert_eq!(r[0].as_ref().unwrap(), &2);
        assert_eq!(r[1].as_ref().unwrap_err().errno(), Some(libc::ENOENT));
        assert_eq!(r[2].as_ref().unwrap(), &0);
        assert!(lock(empty.path()).unwrap().pages() == 0);
        assert!(evict(&missing).is_err());
    }
}
