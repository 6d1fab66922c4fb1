//! Snapshots against the kernel and the filesystem: sparse files (SEEK_HOLE, st_blocks), lazy
//! restore (mincore, read counts), eager restore, every page equal.

mod support;

use std::sync::Arc;

use mmkit_pager::snapshot::{self, SnapshotSource};
use mmkit_pager::PagedRegion;
use support::{pattern, with_timeout};

fn page() -> usize {
    mmkit::page_size()
}

/// 256 pages; every 8th holds a pattern, the rest are zero.
fn memory() -> mmkit::MmapMut {
    let mut mem = mmkit::MapOptions::new().len(256 * page()).map_anon().unwrap();
    for p in (0..256).step_by(8) {
        for j in 0..page() {
            mem[p * page() + j] = pattern(p as u64, j) | 1;
        }
    }
    mem
}

#[test]
fn snapshot_files_are_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mem.snap");
    let mem = memory();
    let info = snapshot::write(&mem, &path).unwrap();
    assert_eq!(info.len, 256 * page() as u64);
    assert_eq!((info.pages, info.data_pages, info.hole_pages), (256, 32, 224), "{info:?}");
    assert!(info.disk_bytes <= 40 * page() as u64, "holes cost no blocks: {info:?}");
    assert_eq!(std::fs::read(&path).unwrap(), &mem[..]);
    assert_eq!(snapshot::info(&path).unwrap(), info);
}

#[test]
fn lazy_restore_reads_only_touched_pages_and_equals_the_snapshot() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem.snap");
        let mem = memory();
        snapshot::write(&mem, &path).unwrap();
        let source = Arc::new(SnapshotSource::open(&path).unwrap());
        let region = PagedRegion::builder(mem.len()).handler_threads(2).build(source.clone()).unwrap();
        assert_eq!(region.residency(..).unwrap().resident_pages(), 0);
        // Touch two data pages and one hole.
        assert_eq!(region.as_slice()[16 * page() + 3], mem[16 * page() + 3]);
        assert_eq!(region.as_slice()[200 * page() + 9], mem[200 * page() + 9]);
        assert_eq!(region.as_slice()[17 * page()], 0);
        assert_eq!(source.reads(), 2, "the hole is a zero page, not a read");
        let res = region.residency(..).unwrap();
        for p in 0..256u64 {
            if ![16, 17, 200].contains(&p) {
                assert!(!res.is_resident(p), "untouched page {p} is resident");
            }
        }
        // Every page equals the snapshot.
        assert_eq!(region.as_slice(), &mem[..]);
        assert_eq!(source.reads(), 32);
        let st = region.stats();
        assert_eq!((st.data_pages, st.zero_pages), (32, 224));
    });
}

#[test]
fn eager_restore_equals_lazy_restore() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem.snap");
        let mem = memory();
        snapshot::write(&mem, &path).unwrap();
        let eager = snapshot::restore_eager(&path).unwrap();
        let lazy = snapshot::restore_lazy(&path, 1).unwrap();
        assert_eq!(&eager[..], &mem[..]);
        assert_eq!(lazy.as_slice(), &eager[..]);
    });
}

#[test]
fn a_region_snapshots_through_its_checked_read() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.snap"), dir.path().join("b.snap"));
        let mem = memory();
        snapshot::write(&mem, &a).unwrap();
        let mut region = snapshot::restore_lazy(&a, 1).unwrap();
        region.as_mut_slice()[3 * page()] = 0xEE; // a hole page becomes data
        let info = snapshot::write_region(&region, &b).unwrap();
        assert_eq!(info.data_pages, 33);
        let back = std::fs::read(&b).unwrap();
        assert_eq!(back[3 * page()], 0xEE);
        assert_eq!(&back[8 * page()..], &mem[8 * page()..]);
    });
}

#[test]
fn a_truncated_snapshot_fails_the_page_not_the_process() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem.snap");
        let mem = memory();
        snapshot::write(&mem, &path).unwrap();
        let region = snapshot::restore_lazy(&path, 1).unwrap();
        // Another process shrinks the file after the restore looked at it.
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(100 * page() as u64).unwrap();
        let mut b = [0u8; 8];
        region.read(8 * page(), &mut b).unwrap();
        let err = region.read(200 * page(), &mut b).unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
        assert_eq!(region.failures().len(), 1);
    });
}

#[test]
fn missing_and_empty_snapshots_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = snapshot::restore_lazy(dir.path().join("nope"), 1).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOENT));
    assert!(err.to_string().contains("nope"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(snapshot::restore_eager(&empty).is_err());
    // Both restores name the file and say why (the lazy one said only "PagedRegion::new
    // failed: length is zero").
    for err in [snapshot::restore_eager(&empty).unwrap_err(), snapshot::restore_lazy(&empty, 1).unwrap_err()] {
        assert_eq!(err.path(), Some(empty.as_path()), "{err}");
        assert!(err.to_string().contains("the snapshot is empty"), "{err}");
    }
}

/// A /proc or /sys file's size is not its content: no snapshot (a /sys attribute was reported
/// and restored as one page of text and zeros), refused by every reader as `pack` refuses it.
#[test]
fn proc_and_sys_files_are_not_snapshots() {
    let paths = ["/proc/self/status", "/sys/devices/system/cpu/online", "/sys/kernel/mm/transparent_hugepage/enabled"];
    for p in paths.into_iter().filter(|p| std::fs::metadata(p).is_ok()) {
        let errs = [
            snapshot::info(p).map(drop).unwrap_err(),
            SnapshotSource::open(p).map(drop).unwrap_err(),
            snapshot::restore_eager(p).map(drop).unwrap_err(),
            snapshot::restore_lazy(p, 1).map(drop).unwrap_err(),
            mmkit_pager::SeekableSource::open(p).map(drop).unwrap_err(),
        ];
        for err in errs {
            assert_eq!(err.path(), Some(std::path::Path::new(p)), "{err}");
            assert!(err.to_string().contains("a /proc or /sys file: its size is not its content"), "{err}");
        }
    }
}

#[test]
fn incremental_snapshot_of_the_dirty_pages() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem.snap");
        let mem = memory();
        snapshot::write(&mem, &path).unwrap();
        let source = SnapshotSource::open(&path).unwrap();
        let mut region = PagedRegion::builder(mem.len()).track_dirty().build(source).unwrap();
        region.as_mut_slice()[page()] = 0x11; // a hole gets data
        region.as_mut_slice()[100 * page() + 5] = 0x22;
        region.as_mut_slice()[8 * page()..9 * page()].fill(0); // a data page becomes zeros
        let dirty = region.collect_dirty().unwrap();
        assert_eq!(dirty.pages, vec![1, 8, 100]);
        let info = snapshot::update(&region, &dirty, &path).unwrap();
        assert_eq!(info.data_pages, 32 + 2 - 1, "pages 1 and 100 gained data, page 8 became a hole: {info:?}");
        assert_eq!(std::fs::read(&path).unwrap(), region.as_slice());
        // `DirtyPages`' fields are public: a page size other than the region's is refused (it
        // wrote the wrong bytes at the wrong offsets, or allocated a buffer of that size), and
        // indexes past the region or the address space write nothing.
        for page_size in [0, 1, page() * 2, usize::MAX] {
            let odd = mmkit_pager::DirtyPages { page_size, ..dirty.clone() };
            let err = snapshot::update(&region, &odd, &path).unwrap_err();
            assert_eq!(err.kind(), mmkit::ErrorKind::InvalidArgument, "{page_size}: {err}");
            assert!(err.to_string().contains("dirty pages"), "{err}");
        }
        let far = mmkit_pager::DirtyPages { pages: vec![1 << 40, u64::MAX], ..dirty.clone() };
        snapshot::update(&region, &far, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), region.as_slice());
        // Regression: a snapshot of other memory (another length) was updated all the same,
        // into a mix of both that grew to the region's length. Refused, the file untouched.
        let other = dir.path().join("other.snap");
        snapshot::write(&mem[..page()], &other).unwrap();
        let err = snapshot::update(&region, &dirty, &other).unwrap_err();
        assert_eq!(err.kind(), mmkit::ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("not a snapshot of this memory"), "{err}");
        assert_eq!(std::fs::read(&other).unwrap(), &mem[..page()]);
    });
}

/// Regression: writing a lazily restored region back to the snapshot it was restored from
/// emptied the file first, so every page the region had not read yet failed (the write was an
/// error, the region's pages were fenced, and the snapshot was left truncated: data lost).
#[test]
fn a_region_writes_back_to_the_snapshot_it_was_restored_from() {
    with_timeout(60, || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem.snap");
        let mut mem = memory();
        snapshot::write(&mem, &path).unwrap();
        let mut region = snapshot::restore_lazy(&path, 1).unwrap();
        // One page touched (and changed: a data page becomes zero), the rest still in the file.
        region.as_mut_slice()[..page()].fill(0);
        mem[..page()].fill(0);
        let info = snapshot::write_region(&region, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &mem[..]);
        assert_eq!((info.pages, info.data_pages), (256, 31), "the zeroed page is a hole again: {info:?}");
        assert!(region.failures().is_empty(), "{:?}", region.failures());
        assert_eq!(region.as_slice(), &mem[..]);
        // A shorter snapshot over a longer file: cut to its length.
        let info = snapshot::write(&mem[..3 * page() + 1], &path).unwrap();
        assert_eq!(info.len, 3 * page() as u64 + 1);
        assert_eq!(std::fs::read(&path).unwrap(), &mem[..3 * page() + 1]);
    });
}

/// Regression: a snapshot that grows while it is examined (another process still writing it)
/// made `info` (and so `SnapshotSource::open`, the restores, `mmkit pager info`) find data past
/// the length it had read: an extent ending before it starts, "attempt to subtract with
/// overflow" in a debug build, garbage page counts in a release one. Data past that length is
/// left out now; every answer is a consistent picture of the first `len` bytes.
#[test]
fn a_snapshot_growing_while_it_is_examined_gives_consistent_extents() {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let g = mmkit::page_size() as u64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.snap");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(64 * g).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), file.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                // Holes only up to 64 pages, then data written past them, then cut back.
                file.set_len(64 * g).unwrap();
                file.write_all_at(&[1u8; 8], (100 + i % 7) * g).unwrap();
                i += 1;
            }
        })
    };
    let checked = std::panic::catch_unwind(|| {
        for _ in 0..20_000 {
            let Ok(info) = snapshot::info(&path) else { continue };
            let end = info.pages * g;
            let mut last = 0;
            for &(s, e) in &info.data_extents {
                assert!(last <= s && s < e && e <= end, "{info:?}");
                last = e;
            }
            assert_eq!(info.data_pages + info.hole_pages, info.pages, "{info:?}");
        }
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    checked.unwrap();
}

/// A snapshot longer than a 32-bit process can address is refused by both restores with its
/// length and why (the error said only "OutOfBounds").
#[cfg(target_pointer_width = "32")]
#[test]
fn a_snapshot_longer_than_the_address_space_is_refused_with_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("5gib.snap");
    std::fs::File::create(&path).unwrap().set_len(5 << 30).unwrap();
    for err in
        [snapshot::restore_lazy(&path, 1).map(drop).unwrap_err(), snapshot::restore_eager(&path).map(drop).unwrap_err()]
    {
        assert_eq!(err.kind(), mmkit::ErrorKind::OutOfBounds, "{err}");
        assert_eq!(err.range(), Some((0, 5 << 30)), "{err}");
        assert!(err.to_string().contains("the snapshot is 0x140000000 bytes, more than"), "{err}");
    }
}

/// Regression: a lazy restore of a snapshot larger than the commit limit (a sparse guest memory
/// file larger than RAM and swap, what lazy restores are for) failed with the region's own
/// `mmap` error, whose hint named `Backing::SharedMemory`, which `restore_lazy` offers no way to
/// ask for, and which did not name the snapshot. The error names the file and the way that
/// works; that way restores the same file.
#[test]
fn a_snapshot_larger_than_the_commit_limit_is_refused_with_the_way_that_fits() {
    if usize::BITS < 64 {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guest.mem");
    // Sparse (a few data pages), twice RAM and swap (the most one private writable map may ask
    // for under the kernel's heuristic overcommit), a power of two: the shared-memory region
    // below keeps one byte of state per page of it, small on any machine (a fixed 1 TiB needed
    // 256 MiB of states, more than a small VM could allocate).
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib = |key: &str| -> u64 {
        let line = meminfo.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in /proc/meminfo"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let len: u64 = (2 * 1024 * (kib("MemTotal:") + kib("SwapTotal:"))).next_power_of_two();
    let page = mmkit::page_size() as u64;
    let file = std::fs::File::create(&path).unwrap();
    if file.set_len(len).is_err() {
        println!("skipped: this file system has no sparse files of {len:#x} bytes");
        return;
    }
    use std::os::unix::fs::FileExt;
    file.write_all_at(&[7u8; 16], len / 2).unwrap();
    match snapshot::restore_lazy(&path, 1) {
        Ok(_) => println!("skipped: an anonymous region of {len:#x} bytes was allowed here (vm.overcommit_memory=1)"),
        Err(e) => {
            let text = e.to_string();
            assert_eq!(e.errno(), Some(libc::ENOMEM), "{e}");
            assert_eq!(e.path(), Some(path.as_path()), "{e}");
            assert!(text.contains("SnapshotSource::open") && text.contains("ShmemFill::Copy"), "{e}");
        }
    }
    let source = SnapshotSource::open(&path).unwrap();
    let region = PagedRegion::builder(len as usize)
        .backing(mmkit_pager::Backing::SharedMemory(mmkit_pager::ShmemFill::Copy))
        .build(source)
        .unwrap();
    let mut b = [0u8; 17];
    region.read((len / 2) as usize, &mut b).unwrap();
    assert_eq!(&b, &[7u8; 16].iter().copied().chain([0]).collect::<Vec<_>>()[..]);
    assert_eq!(region.as_slice()[(len - page) as usize], 0);
}
