//! `mmkit::inspect` against the kernel: residency, cachestat, touch/evict/lock on files of a
//! real file system, and the typed smaps of mappings this test creates.

#[path = "support/limits.rs"]
mod limits;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use mmkit::inspect::{self, Backing, MapKind};

/// A directory on a disk-backed file system (`CARGO_TARGET_TMPDIR` is under `target/`):
/// eviction means nothing on tmpfs, whose pages are always "resident".
fn disk_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fs = rustix::fs::statfs(d.path()).unwrap();
    assert_ne!(fs.f_type as i64, 0x0102_1994, "{} is on tmpfs; residency tests need a disk", d.path().display());
    d
}

fn write_file(path: &Path, len: usize) {
    let mut f = File::create(path).unwrap();
    let chunk: Vec<u8> = (0..1 << 16).map(|i| (i % 251) as u8).collect();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.sync_all().unwrap();
}

fn page() -> u64 {
    mmkit::page_size() as u64
}

#[test]
fn evict_touch_and_partial_reads_are_seen_page_by_page() {
    let d = disk_dir();
    let path = d.path().join("data with spaces.bin");
    let pages = 300u64;
    write_file(&path, (pages * page()) as usize - 17);

    inspect::evict(&path).unwrap();
    let r = inspect::residency(&path).unwrap();
    assert_eq!((r.pages(), r.resident_pages()), (pages, 0));
    assert_eq!(inspect::cachestat(&path).unwrap().cached, 0);

    // Read three single pages with readahead off; exactly those (or their folios) come in.
    let f = File::open(&path).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).unwrap();
    let mut buf = vec![0u8; page() as usize];
    for p in [5u64, 100, 299] {
        f.read_at(&mut buf[..1], p * page()).unwrap();
    }
    let r = inspect::residency(&path).unwrap();
    for p in [5u64, 100, 299] {
        assert!(r.is_resident(p), "page {p} was read");
    }
    assert!(r.resident_pages() >= 3 && r.resident_pages() < pages, "{}", r.resident_pages());
    assert!(!r.is_resident(200), "page 200 was never read");
    let ranges: Vec<_> = r.bitmap().resident_ranges().collect();
    assert_eq!(ranges.iter().map(|r| r.end - r.start).sum::<u64>(), r.resident_pages());
    // cachestat counts the same pages another way.
    let cs = inspect::cachestat(&path).unwrap();
    assert_eq!(cs.cached, r.resident_pages());
    assert_eq!(cs.pages, pages);

    assert_eq!(inspect::touch(&path).unwrap(), pages);
    let r = inspect::residency(&path).unwrap();
    assert_eq!(r.resident_pages(), pages);
    assert_eq!(inspect::cachestat(&path).unwrap().cached, pages);
}

#[test]
fn sparse_file_larger_than_a_window() {
    // 2.5 windows of holes: reading a hole caches a zero page, so residency is exact at the
    // window edges without writing gigabytes.
    let d = disk_dir();
    let path = d.path().join("sparse");
    let len = inspect::WINDOW * 5 / 2 + 123;
    let f = File::create(&path).unwrap();
    f.set_len(len).unwrap();
    let f = File::open(&path).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).unwrap();
    let w = inspect::WINDOW / page();
    let last = len.div_ceil(page()) - 1;
    let probes = [0, w - 1, w, 2 * w - 1, 2 * w, last];
    for p in probes {
        f.read_at(&mut [0u8; 1], p * page()).unwrap();
    }
    let r = inspect::residency(&path).unwrap();
    assert_eq!(r.pages(), last + 1);
    for p in probes {
        assert!(r.is_resident(p), "page {p}");
    }
    assert!(!r.is_resident(w / 2) && !r.is_resident(w + 1000));
    assert_eq!(inspect::cachestat(&path).unwrap().cached, r.resident_pages());
    inspect::evict(&path).unwrap();
    assert_eq!(inspect::residency(&path).unwrap().resident_pages(), 0);
}

#[test]
fn dirty_pages_are_counted_and_survive_eviction() {
    let d = disk_dir();
    let path = d.path().join("dirty");
    write_file(&path, (8 * page()) as usize);
    inspect::evict(&path).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_at(&[1u8; 10], 2 * page()).unwrap();
    let cs = inspect::cachestat(&path).unwrap();
    if cs.source == inspect::CacheStatSource::Cachestat {
        // Writeback may already have started: the page is dirty or under writeback.
        assert_eq!(cs.dirty.unwrap() + cs.writeback.unwrap(), 1, "{cs:?}");
    }
    f.sync_all().unwrap();
    inspect::evict(&path).unwrap();
    assert_eq!(inspect::cachestat(&path).unwrap().cached, 0);
}

#[test]
fn parallel_touch_over_many_files_and_lock() {
    let d = disk_dir();
    let paths: Vec<PathBuf> = (0..40).map(|i| d.path().join(format!("f{i}"))).collect();
    for (i, p) in paths.iter().enumerate() {
        write_file(p, i * 5000 + 1);
        inspect::evict(p).unwrap();
    }
    let opts = inspect::TouchOptions { threads: 4, chunk: 8 * page() };
    let done = inspect::touch_files(&paths, &opts, &|_| ());
    for (p, r) in paths.iter().zip(done) {
        let r = r.unwrap();
        let res = inspect::residency(p).unwrap();
        assert_eq!((r, res.resident_pages()), (res.pages(), res.pages()), "{}", p.display());
    }
    let locked = inspect::lock(&paths[39]).unwrap();
    inspect::evict(&paths[39]).unwrap();
    let res = inspect::residency(&paths[39]).unwrap();
    assert_eq!(res.resident_pages(), locked.pages(), "locked pages stay");
    let smaps = inspect::smaps(std::process::id()).unwrap();
    let mine = smaps.iter().find(|e| e.area.backing.path() == Some(paths[39].as_path())).unwrap();
    assert!(mine.has_vm_flag("lo"), "VmFlags of an mlocked area hold `lo`");
    assert_eq!(mine.stats.locked, mine.stats.rss);
    drop(locked);
    inspect::evict(&paths[39]).unwrap();
    assert_eq!(inspect::residency(&paths[39]).unwrap().resident_pages(), 0);
}

#[test]
fn residency_of_a_mapping_follows_its_writes() {
    let pages = 16;
    let mut m = mmkit::MmapMut::map_anon(pages * mmkit::page_size()).unwrap();
    assert_eq!(inspect::residency_of_mapping(m.mapping()).unwrap().resident_pages(), 0);
    for p in [0, 3, 15] {
        m[p * mmkit::page_size()] = 1;
    }
    let r = inspect::residency_of_mapping(m.mapping()).unwrap();
    assert_eq!(r.pages(), pages as u64);
    assert_eq!(r.bitmap().resident_ranges().collect::<Vec<_>>(), vec![0..1, 3..4, 15..16]);
    // The core's per-range view is the same answer.
    let core = m.mapping().residency(..).unwrap();
    assert_eq!(core.resident_pages(), r.resident_pages());
    assert_eq!(core, r);
}

#[test]
fn shared_anonymous_memory_is_anonymous_whatever_its_pathname() {
    // The kernel backs MAP_SHARED|MAP_ANONYMOUS with an unlinked /dev/zero shmem file, and
    // says so in the pathname column; it is still anonymous memory, not a device.
    let mem = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon_shared().unwrap();
    let start = mem.mapping().kernel_region().0 as u64;
    let maps = inspect::maps(std::process::id()).unwrap();
    let area = maps.iter().find(|e| e.start <= start && start < e.end).unwrap();
    assert_eq!(area.backing, Backing::File { path: "/dev/zero".into(), deleted: true }, "{area:?}");
    assert!(area.perms.shared);
    assert_eq!(area.kind(), MapKind::Anonymous);
}

#[test]
fn smaps_types_named_anonymous_deleted_files_and_counts_rss() {
    let pages = 64;
    let len = pages * mmkit::page_size();
    let mut named = mmkit::MapOptions::new().len(len).name("mmkit test pool").map_anon().unwrap();
    // An area of its own: without a name (kernels lacking CONFIG_ANON_VMA_NAME) it could merge
    // with another test thread's anonymous memory; MADV_DONTDUMP sets a flag the others lack.
    named.advise(.., mmkit::Advice::DontDump).unwrap();
    named.fill(7);
    let d = disk_dir();
    let path = d.path().join("gone soon (x).bin");
    write_file(&path, len);
    let file = File::open(&path).unwrap();
    // SAFETY: nobody else has the file; it is only read.
    let map = unsafe { mmkit::Mmap::map(&file) }.unwrap();
    std::fs::remove_file(&path).unwrap();
    let sum: u64 = map.iter().step_by(mmkit::page_size()).map(|b| u64::from(*b)).sum();
    assert!(sum < u64::MAX);

    let smaps = inspect::smaps(std::process::id()).unwrap();
    let at = |addr: usize| smaps.iter().find(|e| e.area.start == addr as u64).unwrap();
    let n = at(named.as_ptr() as usize);
    if named.mapping().name_applied() {
        assert_eq!(n.area.kind(), MapKind::NamedAnonymous);
        assert_eq!(n.area.backing.anon_name(), Some("mmkit test pool"));
    }
    assert_eq!(n.stats.rss, (len / 1024) as u64);
    assert_eq!(n.stats.anonymous, (len / 1024) as u64);
    assert_eq!(n.stats.size, (len / 1024) as u64);

    let f = at(map.as_ptr() as usize);
    assert_eq!(f.area.backing, Backing::File { path: path.clone(), deleted: true });
    assert_eq!(f.area.kind(), MapKind::File);
    assert_eq!(f.stats.rss, (len / 1024) as u64);
    assert!(!f.area.perms.write && f.area.perms.read && !f.area.perms.exec);

    // The plain maps view holds the same areas.
    let maps = inspect::maps(std::process::id()).unwrap();
    assert!(maps.contains(&f.area));
    drop((named, map));
}

#[test]
fn smaps_sum_equals_the_kernels_rollup() {
    // Our own process changes between the two reads only by what the reads allocate; a child
    // that sleeps does not change at all.
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = child.id();
    let smaps = inspect::smaps(pid).unwrap();
    let rollup = inspect::smaps_rollup(pid).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut sum = inspect::MemStats::default();
    for e in &smaps {
        sum.add(&e.stats);
    }
    let r = &rollup.stats;
    assert_eq!(
        (sum.rss, sum.anonymous, sum.private_dirty, sum.private_clean, sum.shared_clean, sum.shared_dirty),
        (r.rss, r.anonymous, r.private_dirty, r.private_clean, r.shared_clean, r.shared_dirty)
    );
    assert_eq!((sum.swap, sum.locked, sum.referenced), (r.swap, r.locked, r.referenced));
    // Pss is summed in fixed point by the kernel and rounded once; per area it is rounded down.
    assert!(sum.pss <= r.pss && r.pss - sum.pss <= smaps.len() as u64, "{} vs {}", sum.pss, r.pss);
    assert_eq!(rollup.start, smaps[0].area.start);
}

/// A sparse file of exabytes (anyone can make one on tmpfs: here a memfd) needs a bitmap of
/// hundreds of terabytes: residency is an error, not an abort of the process ("memory
/// allocation failed").
#[test]
fn residency_of_a_sparse_exabyte_file_is_an_error_not_an_abort() {
    let fd = rustix::fs::memfd_create("exabytes", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let file = File::from(fd);
    file.set_len(1 << 62).unwrap();
    let e = inspect::residency_of_file(&file).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOMEM), "{e}");
}

/// Regression: `residency` of a file maps it in windows of up to 1 GiB; with less address
/// space left (`RLIMIT_AS`, here 16 MiB above what the process maps, in a re-executed child of
/// this test binary) the window's `mmap` failed (ENOMEM) and so did the count (`mmkit
/// residency` of a 1.5 GB file under `ulimit -v 262144`). Windows shrink to what fits.
#[test]
fn residency_under_a_low_address_space_limit_uses_smaller_windows() {
    if !limits::in_limited_child("residency_under_a_low_address_space_limit_uses_smaller_windows") {
        return;
    }
    let page = mmkit::page_size();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let chunk = vec![5u8; 1 << 20];
    for _ in 0..64 {
        file.write_all(&chunk).unwrap();
    }
    file.as_file().sync_all().unwrap();
    let old = limits::lower_soft_limit(libc::RLIMIT_AS, limits::vm_bytes("VmSize") + (16 << 20));
    let counted = mmkit::inspect::residency(file.path());
    limits::restore_limit(libc::RLIMIT_AS, &old);
    let r = counted.unwrap();
    assert_eq!(r.pages(), ((64usize << 20) / page) as u64);
    println!("LIMITED OK");
}
