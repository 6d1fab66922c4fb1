//! Page-cache counts of a whole file: `cachestat(2)` (Linux 6.5+), or `mincore(2)` before that.

#![deny(unsafe_code)]

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

use super::file_residency::{open, regular_file_len, residency_of_len};
use crate::error::{Error, Result};

/// Where a [`CacheStat`]'s numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CacheStatSource {
    /// `cachestat(2)`: every count is known.
    Cachestat,
    /// `mincore(2)` (the kernel lacks `cachestat`, the file system does not support it, or the
    /// caller may not ask it about this file): only `cached` is known.
    ///
    /// For a file the caller could not open for writing, the kernel's `mincore` reports every
    /// page resident (it does not reveal the page cache of such files since Linux 5.0); `vmtouch`
    /// and `fincore` print the same count.
    Mincore,
}

/// Page-cache counts of a file, in pages of [`page_size`](crate::page_size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CacheStat {
    /// Size of the file in bytes.
    pub len: u64,
    /// Pages of the file (`len` rounded up).
    pub pages: u64,
    /// Pages in the page cache (what `vmtouch` calls resident).
    pub cached: u64,
    /// Dirty pages (not yet written back).
    pub dirty: Option<u64>,
    /// Pages being written back.
    pub writeback: Option<u64>,
    /// Pages evicted from the cache whose shadow entries remain.
    pub evicted: Option<u64>,
    /// Evicted pages that would have stayed with a slightly bigger cache (refaults to come).
    pub recently_evicted: Option<u64>,
    /// Which call produced the numbers.
    pub source: CacheStatSource,
}

/// Set once `cachestat` said `ENOSYS`, so later calls go straight to `mincore`.
static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);

/// Page-cache counts of the file at `path`.
///
/// Uses `cachestat(2)`, which needs no mapping and reports dirty, writeback and eviction counts
/// too; falls back to counting `mincore(2)` bits when the kernel lacks it (`ENOSYS`), the file
/// system does not support it (`EOPNOTSUPP`, e.g. hugetlbfs), or the kernel refuses it for this
/// file (`EPERM`: current kernels answer only for files the caller opened for writing, owns, or
/// could write). An empty file has 0 pages.
pub fn cachestat(path: impl AsRef<Path>) -> Result<CacheStat> {
    let path = path.as_ref();
    let (file, len) = open(path)?;
    cachestat_of_len(&file, len).map_err(|e| e.with_path(path))
}

/// [`cachestat`] of many files, spread over `threads` threads (0: one per CPU); results in the
/// order given. `progress` is called once per file done, from the worker threads.
pub fn cachestat_files<P: AsRef<Path> + Sync>(
    paths: &[P],
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Vec<Result<CacheStat>> {
    let threads = if threads == 0 { super::default_threads() } else { threads };
    // Fewer files than threads: the spare threads split each file's range.
    let parts = (threads / paths.len().max(1)).max(1);
    super::parallel_map(paths, threads, |p| {
        let p = p.as_ref();
        let r = open(p).and_then(|(file, len)| cachestat_split(&file, len, parts).map_err(|e| e.with_path(p)));
        progress();
        r
    })
}

/// Files of at least this many pages are split (128 MiB of 4 KiB pages: a thread costs tens of
/// µs, the kernel's walk of 128 MiB of 4 KiB folios 0.5–3 ms).
const SPLIT_MIN_PAGES: u64 = 32 * 1024;

/// [`cachestat_of_len`] with the file's range split over up to `parts` threads, each asking
/// `cachestat(2)` about its share and the counts summed. The kernel's walk of a large file
/// cached in 4 KiB folios is bound by memory latency (one `struct folio` per page): on a
/// 2-vCPU AMD EPYC guest, 1 GiB took 26 ms on one thread and 13 ms on two (BENCHMARKS.md).
/// Any error, or a kernel without `cachestat`, falls back to the one-call path.
fn cachestat_split(file: &File, len: u64, parts: usize) -> Result<CacheStat> {
    cachestat_split_from(file, len, parts, SPLIT_MIN_PAGES)
}

/// [`cachestat_split`], splitting files of at least `min_pages` pages.
fn cachestat_split_from(file: &File, len: u64, parts: usize, min_pages: u64) -> Result<CacheStat> {
    let page = crate::page::page_size() as u64;
    let pages = len.div_ceil(page);
    let parts = (parts as u64).min(pages / min_pages.max(1)).max(1);
    if parts == 1 || NO_CACHESTAT.load(Ordering::Relaxed) {
        return cachestat_of_len(file, len);
    }
    let per = pages.div_ceil(parts);
    // Part `i`'s byte range. Rounding up `per` can leave the last parts empty (5 pages in 4
    // parts: 2, 2, 1, 0); those are skipped, as a length of 0 means "to the end" to cachestat.
    let range = |i: u64| (i * per * page, per.min(pages.saturating_sub(i * per)) * page);
    let parts = (0..parts).take_while(|&i| range(i).1 > 0).count() as u64;
    let results: Vec<std::result::Result<crate::sys::inspect::CacheStatRaw, Errno>> = std::thread::scope(|s| {
        let spawned: Vec<_> = (1..parts)
            .map(|i| {
                let (off, l) = range(i);
                std::thread::Builder::new()
                    .spawn_scoped(s, move || crate::sys::inspect::cachestat(file, off, l))
                    .map_err(|_| (off, l))
            })
            .collect();
        let (off, l) = range(0);
        let mut out = vec![crate::sys::inspect::cachestat(file, off, l)];
        for h in spawned {
            out.push(match h {
                Ok(h) => h.join().unwrap_or(Err(Errno::IO)),
                // A thread the system refused (ulimit -u): its share here.
                Err((off, l)) => crate::sys::inspect::cachestat(file, off, l),
            });
        }
        out
    });
    let mut sum = crate::sys::inspect::CacheStatRaw::default();
    for r in results {
        let Ok(r) = r else { return cachestat_of_len(file, len) };
        sum.nr_cache += r.nr_cache;
        sum.nr_dirty += r.nr_dirty;
        sum.nr_writeback += r.nr_writeback;
        sum.nr_evicted += r.nr_evicted;
        sum.nr_recently_evicted += r.nr_recently_evicted;
    }
    Ok(CacheStat::from_raw(len, pages, sum))
}

impl CacheStat {
    /// The counts `cachestat(2)` gave for the `pages` pages of a file of `len` bytes.
    fn from_raw(len: u64, pages: u64, raw: crate::sys::inspect::CacheStatRaw) -> CacheStat {
        CacheStat {
            len,
            pages,
            cached: raw.nr_cache.min(pages),
            dirty: Some(raw.nr_dirty),
            writeback: Some(raw.nr_writeback),
            evicted: Some(raw.nr_evicted),
            recently_evicted: Some(raw.nr_recently_evicted),
            source: CacheStatSource::Cachestat,
        }
    }
}

/// Page-cache counts of an open file (see [`cachestat`]).
pub fn cachestat_of(file: &File) -> Result<CacheStat> {
    cachestat_of_len(file, regular_file_len(file)?)
}

/// [`cachestat_of`] an open regular file of `len` bytes.
fn cachestat_of_len(file: &File, len: u64) -> Result<CacheStat> {
    let page = crate::page::page_size() as u64;
    let pages = len.div_ceil(page);
    if pages == 0 {
        return Ok(CacheStat::from_raw(len, 0, Default::default()));
    }
    if !NO_CACHESTAT.load(Ordering::Relaxed) {
        // The range is the file's pages exactly, as mincore and vmtouch count them.
        match crate::sys::inspect::cachestat(file, 0, pages * page) {
            Ok(raw) => return Ok(CacheStat::from_raw(len, pages, raw)),
            Err(Errno::NOSYS) => NO_CACHESTAT.store(true, Ordering::Relaxed),
            // Per file (ownership and permissions), so no global switch as for ENOSYS.
            Err(Errno::OPNOTSUPP | Errno::PERM) => {}
            Err(e) => return Err(Error::os("cachestat", e).with_range(0, pages * page)),
        }
    }
    let r = residency_of_len(file, len)?;
    Ok(CacheStat {
        len,
        pages,
        cached: r.resident_pages(),
        dirty: None,
        writeback: None,
        evicted: None,
        recently_evicted: None,
        source: CacheStatSource::Mincore,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn agrees_with_mincore_after_write_and_evict() {
        let page = crate::page::page_size();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![1u8; page * 5 + 10]).unwrap();
        f.as_file().sync_all().unwrap();
        let cs = cachestat(f.path()).unwrap();
        let r = super::super::residency(f.path()).unwrap();
        assert_eq!(cs.pages, 6);
        assert_eq!(cs.len, (page * 5 + 10) as u64);
        assert_eq!(cs.cached, r.resident_pages());
        assert_eq!(cs.dirty.unwrap_or(0), 0, "synced");
        super::super::evict(f.path()).unwrap();
        let cs = cachestat(f.path()).unwrap();
        assert_eq!(cs.cached, 0);
        assert_eq!(super::super::residency(f.path()).unwrap().resident_pages(), 0);
    }

    /// Run as an unprivileged user by `scripts/test`: current kernels answer `cachestat` with
    /// EPERM for a file the caller cannot write, and the count falls back to mincore's.
    #[test]
    fn files_the_caller_cannot_write_are_counted_too() {
        let path = std::path::Path::new("/etc/passwd");
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0, "/etc/passwd is root's");
        let cs = cachestat(path).expect("cachestat of a file the caller may not write");
        let r = super::super::residency(path).unwrap();
        assert_eq!((cs.len, cs.pages), (meta.len(), r.pages()));
        assert!(cs.cached <= cs.pages);
        if !rustix::process::geteuid().is_root() && cs.source == CacheStatSource::Mincore {
            // The kernel hides the page cache of such files from mincore: all pages "resident".
            assert_eq!((cs.cached, r.resident_pages()), (cs.pages, cs.pages));
        }
    }

    #[test]
    fn a_split_count_is_the_sum_of_its_parts() {
        let page = crate::page::page_size();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; page * 40 + 100]).unwrap();
        f.as_file().sync_all().unwrap();
        super::super::evict(f.path()).unwrap();
        // Pages 3..10 and 25..31 cached again (and one dirty page: written, not synced).
        let file = f.as_file();
        let mut buf = vec![0u8; page];
        for p in (3..10).chain(25..31) {
            std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, (p * page) as u64).unwrap();
        }
        std::os::unix::fs::FileExt::write_all_at(file, b"x", (38 * page) as u64).unwrap();
        let len = (page * 40 + 100) as u64;
        let first = cachestat_of_len(file, len).unwrap();
        if first.source != CacheStatSource::Cachestat {
            return; // a kernel without cachestat: nothing is split
        }
        assert!(first.cached >= 13 && first.dirty >= Some(1), "{first:?}");
        // The counts may move between two calls (a `sync` elsewhere writes the dirty page back,
        // reclaim evicts one): every split must equal the whole taken just before it, in one
        // of a few tries; a wrong sum fails every try.
        let mut last = Vec::new();
        for _ in 0..5 {
            let whole = cachestat_of_len(file, len).unwrap();
            // Parts of at least 4 pages, then parts of one page and more parts than rounding up
            // leaves pages for (41 pages in 40 parts of 2: the last 19 empty; they underflowed
            // before).
            let splits: Vec<_> = [(2, 4), (3, 4), (7, 4), (40, 1), (41, 1), (64, 1)]
                .iter()
                .map(|&(parts, min)| (parts, min, cachestat_split_from(file, len, parts, min).unwrap()))
                .collect();
            if splits.iter().all(|(_, _, split)| *split == whole) {
                return;
            }
            last = splits.into_iter().filter(|(_, _, split)| *split != whole).map(|s| (s, whole)).collect();
        }
        panic!("split counts differ from the whole in 5 tries: {last:?}");
    }

    #[test]
    fn empty_file_is_zero_pages() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let cs = cachestat(f.path()).unwrap();
        assert_eq!((cs.pages, cs.cached), (0, 0));
        let missing = f.path().with_extension("missing");
        let count = std::sync::atomic::AtomicUsize::new(0);
        let all = cachestat_files(&[f.path(), &missing], 2, &|| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(all[0].as_ref().unwrap(), &cs);
        assert_eq!(all[1].as_ref().unwrap_err().path(), Some(missing.as_path()));
        assert_eq!(count.into_inner(), 2);
    }
}
