//! File-backed mappings, checked against what the kernel shows: a forked child's view of shared
//! and private writes, `mincore` residency, `/proc/self/maps`, the file's bytes through `std::fs`.

#[path = "support/cold.rs"]
mod cold;
use cold::make_cold;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use mmkit::{ErrorKind, GrowableMmap, MapOptions, Mmap, MmapMut, MmapRaw, Protection, Sharing};

fn page() -> usize {
    mmkit::page_size()
}

/// A byte pattern with no period that is a multiple of the page size.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 4096) as u8).collect()
}

fn file_with(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    // Canonical, as /proc/self/maps and error messages name it.
    let path = dir.canonicalize().unwrap().join(name);
    let mut f = File::create(&path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
    path
}

fn rw(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).unwrap()
}

/// A temporary directory under Cargo's per-target tmp dir, which lives on the build disk: the
/// system temp dir may be a tmpfs, whose pages cannot be dropped from the page cache.
fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// fork: a child process is the oracle for MAP_SHARED vs MAP_PRIVATE

/// Runs `child` in a forked child, which reports one byte through a pipe and `_exit`s. The
/// child waits for the parent's go-ahead (after `parent_before_go` ran) before running.
fn fork_report(parent_before_go: impl FnOnce(), child: impl FnOnce() -> u8) -> u8 {
    let mut go = [0i32; 2];
    let mut back = [0i32; 2];
    // SAFETY: valid out-arrays of two fds each.
    unsafe {
        assert_eq!(libc::pipe(go.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(back.as_mut_ptr()), 0);
    }
    // SAFETY: the child only reads/writes memory and pipes, then `_exit`s: no allocation, no
    // locks, nothing that is unsafe after fork in a multi-threaded process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: valid fds and buffers; `_exit` never returns.
        unsafe {
            libc::read(go[0], b.as_mut_ptr().cast(), 1);
            let v = child();
            libc::write(back[1], (&v as *const u8).cast(), 1);
            libc::_exit(0);
        }
    }
    parent_before_go();
    let mut b = [0u8; 1];
    // SAFETY: valid fds and buffers.
    unsafe {
        assert_eq!(libc::write(go[1], b.as_ptr().cast(), 1), 1);
        assert_eq!(libc::read(back[0], b.as_mut_ptr().cast(), 1), 1, "child did not report");
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child failed: {status:#x}");
        for fd in [go[0], go[1], back[0], back[1]] {
            libc::close(fd);
        }
    }
    b[0]
}

fn map_for(path: &Path, sharing: Sharing) -> MmapMut {
    let opts = MapOptions::new().sharing(sharing).clone();
    // SAFETY: the temp file is only changed through this test's maps.
    unsafe { opts.map_mut(&rw(path)) }.unwrap()
}

#[test]
fn shared_write_after_fork_is_seen_by_child_private_is_not() {
    let dir = tmpdir();
    for (sharing, expect) in [(Sharing::Shared, 0xAB), (Sharing::SharedValidate, 0xAB), (Sharing::Private, 0x11)] {
        let path = file_with(dir.path(), "f", &vec![0x11u8; 3 * page()]);
        let mut map = map_for(&path, sharing);
        let at = page() + 7;
        let ptr = map.as_mut_ptr();
        let seen = fork_report(
            // The parent writes after the fork; only a shared page is the same page in the child.
            // SAFETY: `at` is inside the map; the child reads it only after the go-ahead.
            || unsafe { ptr.add(at).write_volatile(0xAB) },
            // SAFETY: `at` is inside the map, which the child inherited.
            || unsafe { ptr.add(at).read_volatile() },
        );
        assert_eq!(seen, expect, "{sharing:?}: child saw {seen:#x}");
        assert_eq!(map[at], 0xAB);
        let on_disk = std::fs::read(&path).unwrap()[at];
        assert_eq!(on_disk, expect, "{sharing:?}: file holds {on_disk:#x}");
    }
}

#[test]
fn shared_write_by_child_reaches_parent_and_file_private_does_not() {
    let dir = tmpdir();
    for (sharing, expect) in [(Sharing::Shared, 0xCD), (Sharing::Private, 0x22)] {
        let path = file_with(dir.path(), "g", &vec![0x22u8; 2 * page()]);
        let map = map_for(&path, sharing);
        let at = 2 * page() - 1; // last byte
        let ptr = map.as_ptr() as *mut u8;
        let echoed = fork_report(
            || {},
            || {
                // SAFETY: `at` is inside the inherited map.
                unsafe { ptr.add(at).write_volatile(0xCD) };
                // SAFETY: as above.
                unsafe { ptr.add(at).read_volatile() }
            },
        );
        assert_eq!(echoed, 0xCD, "the child's own view has its write");
        assert_eq!(map[at], expect, "{sharing:?}: parent sees {:#x}", map[at]);
        assert_eq!(std::fs::read(&path).unwrap()[at], expect, "{sharing:?}: file");
    }
}

#[test]
fn private_copy_of_a_read_only_file_never_reaches_the_file() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "ro", &vec![5u8; page()]);
    let file = File::open(&path).unwrap();
    // SAFETY: the temp file is not changed by anyone else.
    let mut map = unsafe { MapOptions::new().map_copy(&file) }.unwrap();
    map[..4].copy_from_slice(b"copy");
    map.flush(..).unwrap(); // a no-op on a private map
    assert_eq!(&map[..4], b"copy");
    assert_eq!(std::fs::read(&path).unwrap(), vec![5u8; page()]);
    assert_eq!(map.mapping().sharing(), Sharing::Private);
}

// ---------------------------------------------------------------------------------------------
// residency

#[test]
fn cold_file_map_has_no_resident_pages_until_touched() {
    let dir = tmpdir();
    let n = 64;
    let path = file_with(dir.path(), "cold", &pattern(n * page()));
    let file = File::open(&path).unwrap();
    make_cold(&file);
    // SAFETY: the temp file is not changed while mapped.
    let map = unsafe { MapOptions::new().advice(mmkit::Advice::Random).map(&file) }.unwrap();
    let before = map.residency(..).unwrap();
    assert_eq!((before.pages(), before.resident_pages()), (n as u64, 0), "{before:?}");
    let target = 40;
    let b = map[target * page() + 3];
    assert_eq!(b, pattern(n * page())[target * page() + 3]);
    let after = map.residency(..).unwrap();
    assert!(after.is_resident(target as u64), "the touched page is resident: {after:?}");
    assert!(after.resident_pages() >= 1);
    // With MADV_RANDOM there is no read-ahead: far pages stay out.
    assert!(!after.is_resident(0) && !after.is_resident(n as u64 - 1), "{:?}", after.bitmap());
    // Sub-ranges count in whole pages.
    let one = map.residency(target * page() + 1..target * page() + 2).unwrap();
    assert_eq!((one.pages(), one.resident_pages()), (1, 1));
}

#[test]
fn populate_strategies_make_a_cold_file_map_fully_resident() {
    let dir = tmpdir();
    let n = 32;
    let path = file_with(dir.path(), "pop", &pattern(n * page()));
    for populate in [mmkit::Populate::MapPopulate, mmkit::Populate::Read] {
        let file = File::open(&path).unwrap();
        make_cold(&file);
        // SAFETY: the temp file is not changed while mapped.
        let map = unsafe { MapOptions::new().populate(populate).map(&file) }.unwrap();
        let r = map.residency(..).unwrap();
        assert_eq!(r.resident_pages(), n as u64, "{populate:?}: {r:?}");
        map.populate(..).unwrap(); // idempotent
    }
    // Write population needs a writable map; on a read-only one it is a clear error.
    let file = File::open(&path).unwrap();
    // SAFETY: as above.
    let err = unsafe { MapOptions::new().populate(mmkit::Populate::Write).map(&file) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let file = rw(&path);
    make_cold(&file);
    // SAFETY: as above.
    let map = unsafe { MapOptions::new().populate(mmkit::Populate::Write).map_mut(&file) }.unwrap();
    assert_eq!(map.residency(..).unwrap().resident_pages(), n as u64);
}

// ---------------------------------------------------------------------------------------------
// offsets and lengths

#[test]
fn unaligned_offsets_return_the_right_bytes() {
    let dir = tmpdir();
    let p = page();
    let len = 3 * p + 100;
    let data = pattern(len);
    let path = file_with(dir.path(), "u", &data);
    let file = File::open(&path).unwrap();
    for off in [0, 1, p - 1, p, p + 1, 2 * p + 4095.min(p - 1), len - 1, len] {
        // To the end of the file.
        // SAFETY: the temp file is not changed while mapped.
        let map = unsafe { MapOptions::new().offset(off as u64).map(&file) }.unwrap();
        assert_eq!(&map[..], &data[off..], "offset {off}");
        assert_eq!(map.mapping().file_offset(), Some(off as u64));
        if off < len {
            assert_eq!(map.as_ptr() as usize % p, off % p, "offset {off} lands at its page offset");
            let (kbase, klen) = map.mapping().kernel_region();
            assert_eq!(kbase % p, 0);
            assert!(klen % p == 0 && klen >= map.len() + off % p);
        }
        // A short window.
        for n in [1usize, 2, p] {
            if off + n <= len {
                // SAFETY: as above.
                let map = unsafe { MapOptions::new().offset(off as u64).len(n).map(&file) }.unwrap();
                assert_eq!(&map[..], &data[off..off + n], "offset {off} len {n}");
                let r = map.residency(..).unwrap();
                assert_eq!(r.pages(), (off % p + n).div_ceil(p) as u64);
            }
        }
    }
    // The last byte, alone, through every face.
    // SAFETY: as above.
    let last = unsafe { MapOptions::new().offset(len as u64 - 1).map_copy(&file) }.unwrap();
    assert_eq!(&last[..], &data[len - 1..]);
    let raw = MapOptions::new().offset(len as u64 - 1).map_raw_read_only(&file).unwrap();
    let mut b = [0u8; 1];
    raw.copy_from_mapping(0, &mut b).unwrap();
    assert_eq!(b[0], data[len - 1]);
}

#[test]
fn unaligned_shared_write_lands_at_the_right_file_offset() {
    let dir = tmpdir();
    let p = page();
    let path = file_with(dir.path(), "w", &vec![0u8; 2 * p]);
    // SAFETY: the temp file is only changed through this map.
    let mut map = unsafe { MapOptions::new().offset(p as u64 - 2).len(4).map_mut(&rw(&path)) }.unwrap();
    map.copy_from_slice(b"ABCD"); // straddles the page boundary
    map.flush(1..3).unwrap(); // widened to both pages
    drop(map);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[p - 2..p + 2], b"ABCD");
    assert_eq!(bytes.iter().filter(|&&b| b != 0).count(), 4);
}

#[test]
fn zero_length_maps() {
    let dir = tmpdir();
    let empty = file_with(dir.path(), "empty", b"");
    let file = rw(&empty);
    // SAFETY: the temp file is not changed while mapped.
    let map = unsafe { Mmap::map(&file) }.unwrap();
    assert!(map.is_empty() && map[..].is_empty());
    assert_eq!(map.len(), 0);
    assert_eq!(map.residency(..).unwrap().pages(), 0);
    map.advise(.., mmkit::Advice::Sequential).unwrap();
    map.lock(..).unwrap();
    map.populate(..).unwrap();
    let mut nothing = [0u8; 0];
    map.copy_from_mapping(0, &mut nothing).unwrap();
    assert_eq!(map.as_slice_of::<u64>().unwrap().len(), 0, "an empty map is an empty slice of any type");
    assert_eq!(map.residency(1..).unwrap_err().kind(), ErrorKind::OutOfBounds);
    // SAFETY: as above.
    let mut m = unsafe { MmapMut::map_mut(&file) }.unwrap();
    assert!(m.is_empty());
    m.flush(..).unwrap();
    m.flush_async(..).unwrap();
    m.discard(..).unwrap();
    assert_eq!(m.as_mut_slice_of::<u32>().unwrap().len(), 0);
    let m = m.make_read_only().unwrap();
    assert!(m.is_empty());
    let raw = MapOptions::new().map_raw(&file).unwrap();
    assert!(raw.is_empty());
    // An explicit len 0 on a non-empty file, and at its end.
    let full = file_with(dir.path(), "full", &pattern(100));
    let full = File::open(&full).unwrap();
    // SAFETY: as above.
    let z = unsafe { MapOptions::new().len(0).map(&full) }.unwrap();
    assert!(z.is_empty());
    // SAFETY: as above.
    let z = unsafe { MapOptions::new().offset(100).map(&full) }.unwrap();
    assert!(z.is_empty());
    // Anonymous len 0.
    let a = MapOptions::new().len(0).map_anon().unwrap();
    assert!(a.is_empty());
}

#[test]
fn offset_past_eof_is_a_clear_error() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "short.bin", &pattern(5000));
    let file = File::open(&path).unwrap();
    // SAFETY: mapping fails; nothing is mapped.
    let err = unsafe { MapOptions::new().offset(8192).map(&file) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert_eq!(err.path(), Some(path.as_path()));
    assert_eq!(err.range().map(|r| r.0), Some(8192));
    let msg = err.to_string();
    assert!(msg.starts_with("mmap of "), "{msg}");
    assert!(msg.contains(path.to_str().unwrap()) && msg.contains("offset 0x2000") && msg.contains("0x1388"), "{msg}");
    // A window that runs past the end.
    // SAFETY: as above.
    let err = unsafe { MapOptions::new().offset(4096).len(1000).map(&file) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert!(err.to_string().contains("[offset 0x1000, len 0x3e8]"), "{err}");
    // Overflowing offset + len.
    // SAFETY: as above.
    let err = unsafe { MapOptions::new().offset(u64::MAX).len(2).map(&file) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    let err = MapOptions::new().offset(u64::MAX - 1).map_raw_read_only(&file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
}

#[test]
fn writable_shared_map_of_a_read_only_fd_is_eacces() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "readonly.bin", &pattern(3 * page()));
    let file = File::open(&path).unwrap();
    // SAFETY: mapping fails; nothing is mapped.
    let err = unsafe { MapOptions::new().offset(page() as u64).len(2 * page()).map_mut(&file) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Os, "{err}");
    assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
    assert_eq!(err.path(), Some(path.as_path()));
    let want = format!(
        "mmap of {} [offset {:#x}, len {:#x}] failed: Permission denied (EACCES)",
        path.display(),
        page(),
        2 * page()
    );
    // And why (how the file is open: see writable_map_of_a_read_only_file_says_why).
    assert!(err.to_string().starts_with(&format!("{want}: the file is open read-only")), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    // map_raw defaults to read-write: the same error; read-only raw works.
    assert_eq!(MapOptions::new().map_raw(&file).unwrap_err().errno(), Some(libc::EACCES));
    MapOptions::new().map_raw_read_only(&file).unwrap();
    // Making a read-only shared map writable is refused by mprotect.
    // SAFETY: the temp file is not changed while mapped.
    let ro = unsafe { Mmap::map(&file) }.unwrap();
    let err = ro.make_mut().unwrap_err();
    assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
    // A private copy is fine.
    // SAFETY: as above.
    unsafe { MapOptions::new().map_copy(&file) }.unwrap();
}

// ---------------------------------------------------------------------------------------------
// flush, drop

#[test]
fn flush_persists_across_unmap_and_remap() {
    let dir = tmpdir();
    let p = page();
    let path = file_with(dir.path(), "persist", &vec![0u8; 4 * p]);
    {
        // SAFETY: the temp file is only changed through this map.
        let mut map = unsafe { MmapMut::map_mut(&rw(&path)) }.unwrap();
        map[10..15].copy_from_slice(b"hello");
        map[3 * p + 1..3 * p + 6].copy_from_slice(b"world");
        map.flush(10..15).unwrap();
        map.flush_async(3 * p + 1..3 * p + 6).unwrap();
        map.flush(..).unwrap();
    }
    // The file, read with std::fs (no map alive).
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[10..15], b"hello");
    assert_eq!(&bytes[3 * p + 1..3 * p + 6], b"world");
    // Dropped from the page cache and read back from disk.
    let file = File::open(&path).unwrap();
    make_cold(&file);
    // SAFETY: as above.
    let map = unsafe { Mmap::map(&file) }.unwrap();
    assert_eq!(&map[10..15], b"hello");
    assert_eq!(&map[3 * p + 1..3 * p + 6], b"world");
}

fn maps_lines_mentioning(path: &Path) -> Vec<String> {
    let name = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(name))
        .map(str::to_owned)
        .collect()
}

fn parse_range(line: &str) -> (usize, usize) {
    let r = line.split_whitespace().next().unwrap();
    let (a, b) = r.split_once('-').unwrap();
    (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap())
}

#[test]
fn drop_really_unmaps() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "drop-check.bin", &pattern(5 * page() + 1));
    let file = File::open(&path).unwrap();
    // SAFETY: the temp file is not changed while mapped.
    let map = unsafe { MapOptions::new().offset(page() as u64 + 5).map(&file) }.unwrap();
    let (base, len) = map.mapping().kernel_region();
    let lines = maps_lines_mentioning(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(parse_range(&lines[0]), (base, base + len), "{}", lines[0]);
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(fields[1], "r--s");
    assert_eq!(u64::from_str_radix(fields[2], 16).unwrap(), page() as u64, "file offset of the page below");
    drop(map);
    assert_eq!(maps_lines_mentioning(&path), Vec::<String>::new());

    // Every face unmaps.
    let file = rw(&path);
    // SAFETY: as above (for the three unsafe constructors below).
    let (a, b, d) = unsafe {
        (
            MmapMut::map_mut(&file).unwrap(),
            MapOptions::new().map_copy(&file).unwrap(),
            GrowableMmap::new(rw(&path), 1 << 24).unwrap(),
        )
    };
    let c = MapOptions::new().map_raw(&file).unwrap();
    let faces: Vec<Box<dyn std::any::Any>> = vec![Box::new(a), Box::new(b), Box::new(c), Box::new(d)];
    assert_eq!(maps_lines_mentioning(&path).len(), 4);
    drop(faces);
    assert_eq!(maps_lines_mentioning(&path), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// growable

#[test]
fn growable_map_keeps_its_base_and_data_reaches_the_file() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "log.bin", b"head:");
    // SAFETY: the temp file is only changed through this map.
    let mut log = unsafe { GrowableMmap::new(rw(&path), 64 << 20) }.unwrap();
    let base = log.as_ptr();
    assert_eq!(log.capacity(), 64 << 20);
    assert_eq!(&log[..], b"head:");
    let mut expect = b"head:".to_vec();
    let mut rng = 0x1234_5678u32;
    for i in 0..200 {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = (rng >> 8) as usize % (3 * page());
        let chunk: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
        let at = log.append(&chunk).unwrap();
        assert_eq!(at, expect.len());
        expect.extend_from_slice(&chunk);
        assert_eq!(log.as_ptr(), base, "the base moved at append {i}");
    }
    assert_eq!(&log[..], &expect[..]);
    log.grow(expect.len() + 10).unwrap(); // zero-filled
    expect.extend_from_slice(&[0; 10]);
    log.grow(5).unwrap(); // never shrinks
    assert_eq!(log.len(), expect.len());
    assert_eq!(log.file().metadata().unwrap().len(), expect.len() as u64);
    log.flush(..).unwrap();
    log.flush(3..page() + 9).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), expect);
    // One contiguous range in /proc/self/maps starts at the base.
    let lines = maps_lines_mentioning(&path);
    assert!(lines.iter().any(|l| parse_range(l).0 == base as usize), "{lines:?}");
    // Past the capacity: an error, and nothing changes.
    let err = log.grow((64 << 20) + 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    let err = log.append(&vec![0u8; 64 << 20]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert_eq!(log.len(), expect.len());
    let err = log.flush(..usize::MAX).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds);
    // Regression: flush's errors named no file.
    assert_eq!(err.path().map(|p| p.canonicalize().unwrap()), Some(path.canonicalize().unwrap()), "{err}");
    // Up to exactly the capacity.
    log.grow(64 << 20).unwrap();
    log[(64 << 20) - 1] = 9;
    assert_eq!(log.as_ptr(), base);
    drop(log);
    let f = std::fs::read(&path).unwrap();
    assert_eq!(f.len(), 64 << 20);
    assert_eq!(f[(64 << 20) - 1], 9);
    // A file larger than the capacity is refused.
    // SAFETY: as above.
    let err = unsafe { GrowableMmap::new(rw(&path), 1 << 20) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
}

/// Regression: a writable shared map of a file open read-only (the commonest storage-engine
/// slip) failed with a bare `Permission denied (EACCES)`, and `make_mut` of a read-only shared
/// map the same from `mprotect`; both now say how the file is open and what would work.
#[test]
fn writable_map_of_a_read_only_file_says_why() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "ro.bin", &pattern(page()));
    let file = std::fs::File::open(&path).unwrap();
    // SAFETY: the temp file is not changed while mapped (here and below).
    let shared = unsafe { MmapMut::map_mut(&file) }.unwrap_err();
    // SAFETY: as above.
    let read_only = unsafe { Mmap::map(&file) }.unwrap();
    for err in [shared, MapOptions::new().map_raw(&file).unwrap_err(), read_only.make_mut().unwrap_err()] {
        assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
        let detail = err.detail().unwrap_or_default();
        assert!(detail.contains("read-write"), "{err}");
        assert!(detail.contains("open read-only") || err.operation() == "mprotect", "{err}");
    }
    // The private routes still work on it.
    // SAFETY: as above.
    let mut copy = unsafe { MapOptions::new().map_copy(&file) }.unwrap();
    copy[0] = 1;
    let write_only = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // SAFETY: as above.
    let err = unsafe { Mmap::map(&write_only) }.unwrap_err();
    assert!(err.detail().unwrap_or_default().contains("open write-only"), "{err}");
}

/// Regression: mapping a directory (a path mix-up) said "not a regular file: give the length to
/// map", advice that only leads to `ENODEV`.
#[test]
fn mapping_a_directory_says_so() {
    let dir = tmpdir();
    let d = File::open(dir.path()).unwrap();
    // SAFETY: nothing is mapped.
    let err = unsafe { Mmap::map(&d) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert_eq!(err.detail(), Some("a directory cannot be mapped"), "{err}");
}

/// Regression: a file not open read-write was accepted when empty and failed only at the first
/// append (`fallocate ... EBADF`), and when not empty failed as `mmap(MAP_FIXED) at 0x...
/// (EACCES)`; both now fail in `new` with `InvalidArgument`, naming the file and the open mode.
#[test]
fn growable_map_refuses_a_file_not_open_read_write() {
    let dir = tmpdir();
    for content in [&b""[..], b"data"] {
        let path = file_with(dir.path(), "ro.bin", content);
        let read_only = std::fs::File::open(&path).unwrap();
        let write_only = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (what, file) in [("read-only", read_only), ("write-only", write_only)] {
            // SAFETY: the temp file is only changed through this map.
            let err = unsafe { GrowableMmap::new(file, 1 << 20) }.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}, {} bytes: {err}", content.len());
            assert_eq!(err.path().map(|p| p.canonicalize().unwrap()), Some(path.canonicalize().unwrap()), "{err}");
            assert!(err.to_string().contains(what) && err.to_string().contains("read-write"), "{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// truncation

/// Regression: `populate` of a map whose file was truncated under it failed with a bare
/// `madvise(MADV_POPULATE_READ) ... Bad address (EFAULT)`, which says nothing of the cause.
#[test]
fn populate_of_a_truncated_file_names_the_cause() {
    if !mmkit::Advice::PopulateRead.is_supported() {
        return; // before 5.14 populate falls back to MADV_WILLNEED, which reports nothing
    }
    let dir = tmpdir();
    let path = file_with(dir.path(), "trunc-populate.bin", &pattern(4 * page()));
    let file = rw(&path);
    let raw = MapOptions::new().map_raw(&file).unwrap();
    file.set_len(page() as u64).unwrap(); // another process shrinks the file
    raw.populate(..page()).unwrap(); // still inside the file
    for err in [raw.populate(..).unwrap_err(), raw.mapping().populate_write(..).unwrap_err()] {
        assert_eq!(err.errno(), Some(libc::EFAULT), "{err}");
        assert_eq!(err.range(), Some((0, 4 * page() as u64)), "{err}");
        assert!(err.detail().unwrap_or_default().contains("truncated"), "{err}");
    }
}

#[test]
fn copy_from_a_truncated_file_is_an_error_not_sigbus() {
    let dir = tmpdir();
    let p = page();
    let data = pattern(4 * p);
    let path = file_with(dir.path(), "trunc.bin", &data);
    let file = rw(&path);
    let raw = MapOptions::new().map_raw(&file).unwrap();
    let mut buf = vec![0u8; 4 * p];
    raw.copy_from_mapping(0, &mut buf).unwrap();
    assert_eq!(buf, data);
    // Another handle shrinks the file to 1.5 pages.
    rw(&path).set_len((p + p / 2) as u64).unwrap();
    let mut b = vec![0u8; 16];
    raw.copy_from_mapping(p, &mut b).unwrap();
    assert_eq!(b, data[p..p + 16]);
    // The tail of a page that still exists reads as zeros.
    raw.copy_from_mapping(2 * p - 16, &mut b).unwrap();
    assert_eq!(b, vec![0u8; 16]);
    // Whole pages past the end: Truncated, with the range.
    let err = raw.copy_from_mapping(2 * p, &mut b).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert_eq!(err.range(), Some((2 * p as u64, 16)));
    assert_eq!(err.path(), Some(path.as_path()));
    // A copy that starts inside and runs past: Truncated at the first missing byte.
    let mut big = vec![0u8; 2 * p];
    let err = raw.copy_from_mapping(p, &mut big).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    assert_eq!(err.range(), Some((2 * p as u64, p as u64)));
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
    // Truncated to nothing.
    rw(&path).set_len(0).unwrap();
    assert_eq!(raw.copy_from_mapping(0, &mut b).unwrap_err().kind(), ErrorKind::Truncated);
    // The same through the safe-to-read faces of a map created under the contract.
    rw(&path).set_len(4 * p as u64).unwrap();
    // SAFETY: we only read through copy_from_mapping after the truncation below.
    let map = unsafe { Mmap::map(&file) }.unwrap();
    rw(&path).set_len(p as u64).unwrap();
    assert_eq!(map.copy_from_mapping(3 * p, &mut b).unwrap_err().kind(), ErrorKind::Truncated);
    // Out of bounds and overflow are OutOfBounds, not Truncated.
    assert_eq!(raw.copy_from_mapping(4 * p, &mut b).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(raw.copy_from_mapping(usize::MAX, &mut b).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(raw.copy_from_mapping(usize::MAX - 3, &mut b).unwrap_err().kind(), ErrorKind::OutOfBounds);
    // And the process is still alive.
}

/// Regression: `Hugetlb` asked for a map of a regular file fell back with the kernel's EINVAL
/// and the pool's count, as if the pool were the reason; it says the file system is now.
#[test]
fn hugetlb_pages_for_a_regular_file_fall_back_saying_why() {
    let dir = tmpdir();
    let path = file_with(dir.path(), "plain.bin", &pattern(2 * page()));
    let file = File::open(&path).unwrap();
    let raw = MapOptions::new().huge_pages(mmkit::HugePages::Hugetlb(None)).map_raw_read_only(&file).unwrap();
    let out = raw.page_outcome();
    assert_eq!(out.page_size, page());
    assert!(out.fallback.as_deref().is_some_and(|w| w.contains("another file system")), "{out:?}");
}

/// Regression: every page `copy_from_mapping` could not read was reported as a file truncated
/// under the map, also for an anonymous map (no file) and a page without read access.
#[test]
fn an_unreadable_page_is_named_for_its_cause_not_called_truncated() {
    let p = page();
    let mut b = [0u8; 8];
    let anon = MapOptions::new().protection(Protection::NONE).len(p).map_anon_raw().unwrap();
    let err = anon.copy_from_mapping(0, &mut b).unwrap_err();
    assert_eq!((err.kind(), err.errno()), (ErrorKind::Os, Some(libc::EFAULT)), "{err}");
    assert!(err.detail().is_some_and(|d| d.contains("not readable")), "{err}");
    assert_eq!(err.addr(), Some(anon.as_ptr() as usize));
    assert!(!err.to_string().contains("truncated"), "{err}");
    // A file map without read access: not readable, although the file is whole.
    let dir = tmpdir();
    let path = file_with(dir.path(), "noread.bin", &pattern(2 * p));
    let file = rw(&path);
    let raw = MapOptions::new().protection(Protection::NONE).map_raw(&file).unwrap();
    let err = raw.copy_from_mapping(p, &mut b).unwrap_err();
    assert_eq!((err.kind(), err.errno()), (ErrorKind::Os, Some(libc::EFAULT)), "{err}");
    assert_eq!((err.path(), err.addr()), (Some(path.as_path()), Some(raw.as_ptr() as usize + p)));
    // The same file readable and shrunk: truncated, as before.
    let raw = MapOptions::new().map_raw(&file).unwrap();
    rw(&path).set_len(p as u64).unwrap();
    assert_eq!(raw.copy_from_mapping(p, &mut b).unwrap_err().kind(), ErrorKind::Truncated);
}

// ---------------------------------------------------------------------------------------------
// typed views

#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout, Debug, PartialEq)]
#[repr(C)]
struct Header {
    magic: u32,
    count: u32,
    total: u64,
}

#[test]
fn typed_views_check_size_and_alignment() {
    let dir = tmpdir();
    let words: Vec<u64> = (0..1024u64).map(|i| i * 0x0101_0101 + 7).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let path = file_with(dir.path(), "typed", &bytes);
    let file = rw(&path);
    // SAFETY: the temp file is only changed through these maps.
    let map = unsafe { Mmap::map(&file) }.unwrap();
    assert_eq!(map.as_slice_of::<u64>().unwrap(), &words[..]);
    assert_eq!(map.as_slice_of::<u32>().unwrap().len(), 2048);
    assert_eq!(*map.as_ref_of::<u64>(8 * 5).unwrap(), words[5]);
    let h = map.as_ref_of::<Header>(16).unwrap();
    assert_eq!((h.magic as u64, h.count, h.total), (words[2] & 0xffff_ffff, (words[2] >> 32) as u32, words[3]));
    // Misaligned, too short, past the end.
    let e = map.as_ref_of::<u64>(std::mem::align_of::<u64>() / 2).unwrap_err(); // u64 is 4-aligned on i686
    assert_eq!(e.kind(), ErrorKind::Layout, "{e}");
    let e = map.as_ref_of::<u64>(bytes.len() - 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Layout, "{e}");
    let e = map.as_ref_of::<u8>(bytes.len() + 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{e}");
    let e = map.as_ref_of::<u8>(usize::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{e}");
    map.as_ref_of::<u8>(bytes.len() - 1).unwrap();
    // A length that is not a multiple of the element size.
    // SAFETY: as above.
    let short = unsafe { MapOptions::new().len(bytes.len() - 1).map(&file) }.unwrap();
    let e = short.as_slice_of::<u64>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Layout, "{e}");
    assert!(e.to_string().contains("as_slice_of"), "{e}");
    // An unaligned file offset gives an unaligned address.
    // SAFETY: as above.
    let odd = unsafe { MapOptions::new().offset(4).len(16).map(&file) }.unwrap();
    if 4 % std::mem::align_of::<u64>() != 0 {
        assert_eq!(odd.as_slice_of::<u64>().unwrap_err().kind(), ErrorKind::Layout);
    } else {
        assert_eq!(odd.as_slice_of::<u64>().unwrap().len(), 2); // i686: u64 is 4-aligned
    }
    assert_eq!(
        odd.as_slice_of::<u32>().unwrap(),
        &[(words[0] >> 32) as u32, words[1] as u32, (words[1] >> 32) as u32, words[2] as u32]
    );
    // Regression: a layout error named neither the file nor the range, and carried zerocopy's
    // multi-line text (a log line split in five).
    let canon = |e: &mmkit::Error| e.path().map(|p| p.canonicalize().unwrap());
    let e = map.as_ref_of::<u64>(bytes.len() - 4).unwrap_err();
    assert_eq!(canon(&e), Some(path.canonicalize().unwrap()), "{e}");
    assert_eq!(e.range(), Some(((bytes.len() - 4) as u64, 8)), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    let e = short.as_slice_of::<u64>().unwrap_err();
    assert_eq!((canon(&e), e.range()), (Some(path.canonicalize().unwrap()), Some((0, bytes.len() as u64 - 1))), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    // Mutable views write through to the file.
    // SAFETY: as above.
    let mut m = unsafe { MmapMut::map_mut(&file) }.unwrap();
    m.as_mut_slice_of::<u64>().unwrap()[1] = 0xdead_beef;
    *m.as_mut_of::<Header>(32).unwrap() = Header { magic: 1, count: 2, total: 3 };
    assert_eq!(m.as_mut_of::<u64>(1).unwrap_err().kind(), ErrorKind::Layout);
    assert_eq!(m.as_mut_of::<u64>(bytes.len()).unwrap_err().kind(), ErrorKind::Layout);
    assert_eq!(m.as_mut_of::<u64>(bytes.len() + 8).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(*m.as_ref_of::<Header>(32).unwrap(), Header { magic: 1, count: 2, total: 3 });
    let e = m.as_mut_of::<u64>(1).unwrap_err();
    assert_eq!((canon(&e), e.range()), (Some(path.canonicalize().unwrap()), Some((1, 8))), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    m.flush(..).unwrap();
    drop(m);
    let f = std::fs::read(&path).unwrap();
    assert_eq!(u64::from_ne_bytes(f[8..16].try_into().unwrap()), 0xdead_beef);
    assert_eq!(u32::from_ne_bytes(f[36..40].try_into().unwrap()), 2);
    // The read-only map sees it too (the same page cache pages).
    assert_eq!(map.as_slice_of::<u64>().unwrap()[1], 0xdead_beef);
}

// ---------------------------------------------------------------------------------------------
// face conversions

#[test]
fn make_mut_and_make_read_only_work_on_unaligned_maps() {
    let dir = tmpdir();
    let p = page();
    let path = file_with(dir.path(), "conv", &pattern(3 * p));
    let file = rw(&path);
    for off in [0u64, 1, p as u64 + 17] {
        // SAFETY: the temp file is only changed through this map.
        let ro = unsafe { MapOptions::new().offset(off).len(p).map(&file) }.unwrap();
        let mut m = ro.make_mut().unwrap_or_else(|e| panic!("offset {off}: {e}"));
        m[0] = 0xEE;
        assert_eq!(m.mapping().protection(), Protection::READ_WRITE);
        let ro = m.make_read_only().unwrap_or_else(|e| panic!("offset {off}: {e}"));
        assert_eq!(ro[0], 0xEE);
        assert_eq!(ro.mapping().protection(), Protection::READ);
        let line = maps_lines_mentioning(&path)
            .into_iter()
            .find(|l| parse_range(l).0 == ro.mapping().kernel_region().0)
            .unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("r--s"), "{line}");
        drop(ro);
        assert_eq!(std::fs::read(&path).unwrap()[off as usize], 0xEE);
    }
}

#[test]
fn protect_on_an_unaligned_window_covers_its_pages() {
    let dir = tmpdir();
    let p = page();
    let path = file_with(dir.path(), "prot", &pattern(4 * p));
    let file = rw(&path);
    let mut raw = MapOptions::new().offset(p as u64 - 10).len(2 * p).map_raw(&file).unwrap();
    // From the first byte to the first page boundary: the page below goes along.
    raw.protect(..10, Protection::NONE).unwrap();
    let mut b = [0u8; 4];
    assert!(raw.copy_from_mapping(0, &mut b).is_err());
    raw.copy_from_mapping(10, &mut b).unwrap();
    assert_eq!(b, pattern(4 * p)[p..p + 4]);
    // From a page boundary to the last byte.
    raw.protect(p + 10.., Protection::READ).unwrap();
    raw.protect(.., Protection::READ).unwrap();
    raw.copy_from_mapping(0, &mut b).unwrap();
    assert_eq!(b, pattern(4 * p)[p - 10..p - 6]);
    // Not on a boundary and not at an end.
    assert_eq!(raw.protect(1..10, Protection::NONE).unwrap_err().kind(), ErrorKind::Unaligned);
    assert_eq!(raw.protect(..11, Protection::NONE).unwrap_err().kind(), ErrorKind::Unaligned);
}

#[test]
fn raw_maps_share_atomics_with_a_forked_child() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tmpdir();
    let path = file_with(dir.path(), "atomics", &vec![0u8; page()]);
    let raw: MmapRaw = MapOptions::new().map_raw(&rw(&path)).unwrap();
    // SAFETY: the map is page-aligned, writable, shared and lives for the whole test; all access
    // to these bytes is atomic.
    let counter = unsafe { AtomicU64::from_ptr(raw.as_mut_ptr().cast()) };
    counter.store(41, Ordering::SeqCst);
    let v = fork_report(
        || {},
        || {
            counter.fetch_add(1, Ordering::SeqCst);
            0
        },
    );
    assert_eq!(v, 0);
    assert_eq!(counter.load(Ordering::SeqCst), 42);
    raw.flush(..).unwrap();
    assert_eq!(u64::from_ne_bytes(std::fs::read(&path).unwrap()[..8].try_into().unwrap()), 42);
}

// ---------------------------------------------------------------------------------------------
// compile-time Send/Sync

#[allow(dead_code)]
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn faces_are_send_and_sync() {
    assert_send_sync::<Mmap>();
    assert_send_sync::<MmapMut>();
    assert_send_sync::<MmapRaw>();
    assert_send_sync::<mmkit::Mapping>();
    assert_send_sync::<mmkit::Reservation>();
    assert_send_sync::<GrowableMmap>();
    assert_send_sync::<mmkit::Error>();
    // And they really move across threads.
    let map = MapOptions::new().len(page()).map_anon().unwrap();
    let map = std::thread::spawn(move || {
        let mut map = map;
        map[0] = 3;
        map
    })
    .join()
    .unwrap();
    assert_eq!(map[0], 3);
}

#[test]
fn transparent_huge_pages_on_a_file_map_report_honestly() {
    let pmd: usize = match std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size") {
        Ok(s) => s.trim().parse().unwrap(),
        Err(e) => {
            // No THP in this kernel (or /sys hidden): Transparent falls back, tested elsewhere.
            eprintln!("skipped: no hpage_pmd_size ({e}): this kernel has no transparent huge pages");
            return;
        }
    };
    let dir = tmpdir();
    let path = file_with(dir.path(), "thp.bin", &pattern(2 * pmd + 3 * page()));
    let file = File::open(&path).unwrap();
    for off in [0u64, page() as u64, pmd as u64] {
        // SAFETY: the temp file is not changed while mapped.
        let map =
            unsafe { MapOptions::new().offset(off).huge_pages(mmkit::HugePages::Transparent).map(&file) }.unwrap();
        assert_eq!(&map[..], &pattern(2 * pmd + 3 * page())[off as usize..]);
        let out = map.page_outcome();
        let (base, len) = map.mapping().kernel_region();
        let file_base = off as usize; // page-aligned offsets: the kernel region starts at `off`
        let aligned_piece = base.div_ceil(pmd) * pmd + pmd <= base + len;
        let congruent = (base.wrapping_sub(file_base)) % pmd == 0;
        if out.fallback.is_none() {
            assert_eq!(out.page_size, pmd, "{out:?}");
            assert!(aligned_piece && congruent, "offset {off:#x} at {base:#x}: {out:?}");
        } else {
            assert_eq!(out.page_size, page(), "{out:?}");
            // THP switched off system-wide (`never`) is the one reason that holds for a
            // region that could take a huge page.
            let disabled = out.fallback.as_deref().is_some_and(|w| w.contains("disabled"));
            assert_eq!(disabled, thp_mode().as_deref() == Some("never"), "{out:?}");
            assert!(disabled || !(aligned_piece && congruent), "offset {off:#x} at {base:#x}: {out:?}");
        }
    }
}

fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    Some(s[s.find('[')? + 1..s.find(']')?].to_owned())
}

/// Regression: device files have size 0, so a map of `/dev/zero` (or `/dev/uio0`) was refused as
/// "past the end of the file". Special files map with an explicit length and are not size-checked.
#[test]
fn character_devices_map_with_an_explicit_length() {
    let page = mmkit::page_size();
    let zero = std::fs::OpenOptions::new().read(true).write(true).open("/dev/zero").unwrap();
    let raw = mmkit::MapOptions::new().len(3 * page).sharing(mmkit::Sharing::Private).map_raw(&zero).unwrap();
    assert_eq!(raw.len(), 3 * page);
    let mut buf = vec![1u8; 3 * page];
    raw.copy_from_mapping(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    let err = mmkit::MapOptions::new().map_raw(&zero).unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("/dev/zero") && err.to_string().contains("not a regular file"), "{err}");
}

/// `map_device` is the route for device files whose `st_size` is smaller than what the kernel
/// maps (sysfs `resourceN` of a sub-page BAR): a regular file maps to the end of its last page,
/// not just its last byte (which `map_raw` requires), and no further (that would `SIGBUS`).
#[test]
fn map_device_maps_the_whole_last_page_of_a_short_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(page())[..0x100].to_vec();
    let path = file_with(dir.path(), "bar0", &data);
    let file = rw(&path);
    let err = MapOptions::new().len(page()).map_raw(&file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");

    let map = MapOptions::new().len(page()).map_device(&file).unwrap();
    assert_eq!(map.len(), page());
    let mut got = vec![0xaa; page()];
    map.copy_from_mapping(0, &mut got).unwrap();
    assert_eq!(&got[..0x100], &data[..]);
    // The kernel zero-fills the rest of the file's last page.
    assert!(got[0x100..].iter().all(|&b| b == 0));

    // A page with no file behind it is refused, as by map_raw.
    let err = MapOptions::new().len(2 * page()).map_device(&file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert!(err.to_string().contains("SIGBUS"), "{err}");
    let err = MapOptions::new().map_device(&file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("MapOptions::len"), "{err}");
}
