//! `Mmap::scan` and `Mmap::scan_ahead`, checked against what the kernel shows: the file's bytes
//! through `std::fs::read`, `mincore` residency, the pages this process
//! has mapped (`Rss` in /proc/self/smaps), and a file truncated under the map mid-scan.

#[path = "support/cold.rs"]
mod cold;
use cold::make_cold;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use mmkit::{ErrorKind, Mmap};

/// A temporary directory on the build disk (the system temp dir may be a tmpfs, whose pages
/// cannot be dropped from the page cache).
fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Bytes with no short period, so a chunk yielded from the wrong offset shows.
fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn file_with(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.canonicalize().unwrap().join(name);
    let mut f = File::create(&path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    path
}

fn map(file: &File) -> Mmap {
    // SAFETY: the test's own temporary file; only the truncation tests shrink it, which is what
    // they check the scan reports.
    unsafe { Mmap::map(file) }.unwrap()
}

/// Concatenates every chunk of a scan, checking each is `chunk` long but the last.
fn collect(scan: mmkit::Scan<'_>, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last_short = false;
    for c in scan {
        let c = c.unwrap();
        assert!(!last_short, "a short chunk that was not the last");
        assert!(!c.is_empty() && c.len() <= chunk);
        last_short = c.len() < chunk;
        out.extend_from_slice(c);
    }
    out
}

/// The PMD size the scan batches by (it rounds up to whole chunks).
fn pmd() -> usize {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(mmkit::page_size() * (mmkit::page_size() / 8))
}

#[test]
fn a_scan_yields_the_bytes_read_returns_in_chunks() {
    let dir = tmpdir();
    // Not a whole number of pages or batches.
    let data = pattern(2 * pmd() + 3 * mmkit::page_size() + 1234);
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    let m = map(&file);
    let on_disk = std::fs::read(&path).unwrap();
    for chunk in [1 << 20, 100_000, 4099, data.len(), data.len() + 1] {
        let scan = m.scan(.., chunk).unwrap();
        assert_eq!(scan.remaining(), data.len());
        assert_eq!(scan.size_hint().1, Some(data.len().div_ceil(chunk)));
        assert!(scan.batch_len() >= pmd() && scan.batch_len() % chunk == 0, "chunk {chunk}");
        assert!(collect(scan, chunk) == on_disk, "chunk {chunk}: the scan's bytes differ from read()'s");
    }
    let sum = |b: &[u8]| b.iter().map(|&x| u64::from(x)).sum::<u64>();
    let scanned: u64 = m.scan(.., 65536).unwrap().map(|c| sum(c.unwrap())).sum();
    assert_eq!(scanned, sum(&on_disk));
}

#[test]
fn scan_ahead_yields_the_same_bytes_and_stops_its_helper_on_early_exit() {
    let dir = tmpdir();
    let data = pattern(9 * pmd() + 777);
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    let m = map(&file);
    let chunk = 256 << 10;
    let got = m.scan_ahead(.., chunk, |scan| collect(scan, chunk)).unwrap();
    assert!(got == std::fs::read(&path).unwrap(), "scan_ahead's bytes differ from read()'s");
    // Stopping after one chunk of ten batches returns (the helper is told to stop and joined).
    let first = m.scan_ahead(.., chunk, |mut scan| scan.next().unwrap().unwrap().len()).unwrap();
    assert_eq!(first, chunk);
    // Even when the consumer keeps the scan alive by leaking it.
    m.scan_ahead(.., chunk, |scan| std::mem::forget(scan)).unwrap();
    // Or panics: the panic reaches the caller, the helper having been stopped and joined.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.scan_ahead(.., chunk, |mut scan| {
            scan.next();
            panic!("the consumer fails");
        })
    }));
    assert!(panicked.is_err());
    // A sub-range.
    let (a, b) = (pmd() + 5, 7 * pmd() - 3);
    let got = m.scan_ahead(a..b, 10_000, |scan| collect(scan, 10_000)).unwrap();
    assert!(got[..] == data[a..b]);
}

#[test]
fn unaligned_and_empty_ranges() {
    let dir = tmpdir();
    let data = pattern(3 * pmd() + 100);
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    let m = map(&file);
    for (a, b, chunk) in
        [(12345, data.len() - 777, 4099), (1, 2, 1), (pmd() - 1, pmd() + 1, 1), (7, data.len(), 3 << 20)]
    {
        let got = collect(m.scan(a..b, chunk).unwrap(), chunk);
        assert!(got[..] == data[a..b], "range {a}..{b}, chunk {chunk}");
    }
    // A chunk as large as the address space: one slice, no overflow in the batch arithmetic.
    assert!(collect(m.scan(3.., usize::MAX).unwrap(), usize::MAX)[..] == data[3..]);
    assert!(m.scan_ahead(3.., usize::MAX, |s| collect(s, usize::MAX)).unwrap()[..] == data[3..]);
    let mut empty = m.scan(10..10, 1).unwrap();
    assert_eq!((empty.remaining(), empty.size_hint()), (0, (0, Some(0))));
    assert!(empty.next().is_none());
    assert!(m.scan(data.len().., 4096).unwrap().next().is_none());

    // An empty file maps as an empty map, and scans as nothing.
    let path = file_with(dir.path(), "empty", &[]);
    let empty_file = File::open(&path).unwrap();
    let m = map(&empty_file);
    assert!(m.scan(.., 4096).unwrap().next().is_none());
    assert!(m.scan_ahead(.., 4096, |mut s| s.next().is_none()).unwrap());
}

#[test]
fn a_chunk_of_zero_and_ranges_past_the_end_are_refused() {
    let dir = tmpdir();
    let data = pattern(3 * mmkit::page_size());
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    let m = map(&file);
    let e = m.scan(.., 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("scan") && e.to_string().contains("chunk length is 0"), "{e}");
    assert!(e.path().is_some_and(|p| p == path), "{e}");
    assert_eq!(m.scan_ahead(.., 0, |_| ()).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let len = data.len();
    #[allow(clippy::reversed_empty_ranges)]
    for e in [
        m.scan(0..len + 1, 4096).unwrap_err(),
        m.scan(len + 1.., 4096).unwrap_err(),
        m.scan(usize::MAX - 1..usize::MAX, 4096).unwrap_err(),
        m.scan(5..4, 4096).unwrap_err(),
        m.scan_ahead(0..=len, 4096, |_| ()).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{e}");
        assert!(e.to_string().contains("scan"), "{e}");
    }
}

#[test]
fn a_scan_of_a_cold_file_leaves_the_range_resident() {
    let dir = tmpdir();
    let page = mmkit::page_size();
    let data = pattern(4 * pmd());
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    make_cold(&file);
    let m = map(&file);
    assert_eq!(m.residency(..).unwrap().resident_pages(), 0);
    let (a, b) = (pmd() / 2 + 5, 3 * pmd() - 7);
    let n: usize = m.scan(a..b, 64 << 10).unwrap().map(|c| c.unwrap().len()).sum();
    assert_eq!(n, b - a);
    let r = m.residency(..).unwrap();
    for p in a / page..b.div_ceil(page) {
        assert!(r.is_resident(p as u64), "page {p} of the scanned range is not resident");
    }
}

/// Caches the file in base-page folios: evicted, then read a page at a time with read-ahead
/// off (`POSIX_FADV_RANDOM`), as after small random reads. Maps of it cannot use huge entries.
fn cache_in_small_folios(file: &File) {
    make_cold(file);
    let fd = file.as_raw_fd();
    // SAFETY: plain syscall on a valid fd.
    assert_eq!(unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_RANDOM) }, 0);
    let mut buf = vec![0u8; mmkit::page_size()];
    let mut off = 0u64;
    while std::os::unix::fs::FileExt::read_at(file, &mut buf, off).unwrap() > 0 {
        off += buf.len() as u64;
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_NORMAL) }, 0);
}

/// `Rss` of the area starting at `addr` in /proc/self/smaps, in bytes: the pages this process
/// has mapped (page-table entries present), not merely cached.
fn rss_of_area(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let head = format!("{addr:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    assert!(lines.next().is_some(), "no area at {addr:#x} in /proc/self/smaps");
    let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
    rss.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn a_scan_populates_each_batch_before_yielding_from_it() {
    if !mmkit::Advice::PopulateRead.is_supported() {
        eprintln!("skipped: MADV_POPULATE_READ is not supported (kernel before 5.14); scan falls back to WILLNEED");
        return;
    }
    let dir = tmpdir();
    let page = mmkit::page_size();
    let data = pattern(4 * pmd());
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    cache_in_small_folios(&file);
    // The oracle: reading one page of a fresh map maps its fault-around window only.
    let plain = map(&file);
    assert_eq!(plain[0], data[0]);
    let plain_rss = rss_of_area(plain.mapping().kernel_region().0);
    assert!(plain_rss > 0 && plain_rss < pmd() as u64, "{plain_rss} bytes mapped after reading a byte");
    drop(plain);
    // One page-long chunk of a scan: the whole first batch is mapped. (The kernel may map a
    // fault-around window past it, e.g. on i686 where the map is not batch-aligned: up to a
    // quarter batch of slack; without populating, only ~64 KiB would be mapped.)
    let m = map(&file);
    let mut scan = m.scan(.., page).unwrap();
    let batch = scan.batch_len() as u64;
    let mapped = |k: u64| {
        let rss = rss_of_area(m.mapping().kernel_region().0);
        assert!(
            rss >= k * batch && rss <= k * batch + batch / 4,
            "{rss} bytes mapped, expected {k} batches of {batch}"
        );
    };
    assert!(scan.next().unwrap().unwrap() == &data[..page]);
    mapped(1);
    // Reading to the end of the batch maps no further batch; the next chunk maps the next one.
    let batch_pages = scan.batch_len() / page;
    assert_eq!(scan.by_ref().take(batch_pages - 1).count(), batch_pages - 1);
    mapped(1);
    scan.next().unwrap().unwrap();
    mapped(2);
}

/// Truncates the file to `len` through another handle (as another process would).
fn truncate(path: &Path, len: usize) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len as u64).unwrap();
}

/// A file of four batches is truncated to 1.5 batches after the first chunk: the scan yields
/// the first batch and then a `Truncated` error naming the second, instead of `SIGBUS` (which
/// would kill this test binary).
fn truncated_mid_scan(ahead: bool) {
    let dir = tmpdir();
    let chunk = 128 << 10;
    let batch = pmd().div_ceil(chunk) * chunk;
    let data = pattern(4 * batch);
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    let m = map(&file);
    let check = |mut scan: mmkit::Scan<'_>| {
        assert_eq!(scan.batch_len(), batch);
        let first = scan.next().unwrap().unwrap();
        assert!(first == &data[..chunk]);
        truncate(&path, batch + batch / 2 + 3);
        let mut yielded = chunk;
        let err = loop {
            match scan.next().expect("the scan ended without reporting the truncation") {
                Ok(c) => {
                    assert!(c == &data[yielded..yielded + c.len()]);
                    yielded += c.len();
                }
                Err(e) => break e,
            }
        };
        assert_eq!(yielded, batch, "the chunks of the first batch, and no more");
        assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
        assert_eq!(err.range(), Some((batch as u64, batch as u64)), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(scan.next().is_none(), "the error ends the scan");
    };
    if ahead {
        m.scan_ahead(.., chunk, check).unwrap();
    } else {
        check(m.scan(.., chunk).unwrap());
    }
}

#[test]
fn a_file_truncated_mid_scan_gives_an_error_not_sigbus() {
    truncated_mid_scan(false);
}

#[test]
fn a_file_truncated_mid_scan_ahead_gives_an_error_not_sigbus() {
    truncated_mid_scan(true);
}

#[test]
fn a_file_truncated_before_the_scan_fails_on_the_first_batch() {
    let dir = tmpdir();
    let data = pattern(2 * pmd());
    let path = file_with(dir.path(), "f", &data);
    let file = File::open(&path).unwrap();
    let m = map(&file);
    truncate(&path, 0);
    let mut scan = m.scan(.., 4096).unwrap();
    let e = scan.next().unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated, "{e}");
    assert!(e.path().is_some_and(|p| p == path), "{e}");
    assert!(scan.next().is_none());
}
