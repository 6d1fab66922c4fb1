//! Soundness of resizing a mapping (`remap`, `remap_anon`, issue 10 item 2): no safe call, and
//! no `unsafe` call whose contract was kept, may hand out bytes nothing backs. The oracle is the
//! kernel: a byte past the end of a file raises `SIGBUS` (each test touches every byte a face
//! exposes, so a hole kills the test), `/proc/self/maps` shows the region the kernel holds.

use std::fs::File;
use std::io::Write;

use mmkit::{ErrorKind, MapOptions, Mmap, MmapMut, MmapRaw, Placement, RemapOptions};

fn page() -> usize {
    mmkit::page_size()
}

fn moving() -> RemapOptions {
    RemapOptions::new().may_move(true)
}

/// A read-write temporary file of `len` bytes, byte `i` being `i % 251`.
fn file_of(len: usize) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&(0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
    f
}

/// Reads every byte (a page past the end of the file would raise SIGBUS here).
fn touch_all(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| std::hint::black_box(b) as u64).sum()
}

/// The `/proc/self/maps` area holding `addr`: `(start, end)`.
fn area_of(addr: usize) -> (u64, u64) {
    let maps = mmkit::inspect::maps(std::process::id()).unwrap();
    let e = maps.iter().find(|e| e.start <= addr as u64 && (addr as u64) < e.end).expect("address is mapped");
    (e.start, e.end)
}

#[test]
fn growing_a_file_map_past_the_end_of_the_file_is_refused_not_sigbus() {
    // Issue 10 item 2: a one-page file, its map grown to three pages, then byte 2 * page
    // touched raised SIGBUS through a safe call.
    let p = page();
    let file = file_of(p);
    // SAFETY: the temporary file is ours alone and is not truncated while mapped.
    let mut map = unsafe { MmapMut::map_mut(&file) }.unwrap();
    for opts in [RemapOptions::new(), moving()] {
        // SAFETY: as above; the contract now covers three pages, which the call must refuse.
        let err = unsafe { map.remap(3 * p, opts) }.unwrap_err();
        if err.errno() == Some(libc::ENOMEM) && opts == RemapOptions::new() {
            // In place, the next pages were taken: the kernel refused before any check.
        } else {
            assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
            assert!(err.to_string().contains("not backed"), "{err}");
        }
        assert_eq!(map.len(), p, "the map keeps its old length");
        assert_eq!(map.mapping().kernel_region().1, p, "and the kernel region shrank back");
        let (start, end) = area_of(map.as_ptr() as usize);
        assert_eq!((end - start) as usize, p, "/proc/self/maps shows one page");
        map[p - 1] = 7;
        touch_all(&map);
    }
    // Once the file has grown, the same call succeeds and every byte is backed.
    file.set_len(3 * p as u64).unwrap();
    // SAFETY: the file is three pages long and stays so.
    unsafe { map.remap(3 * p, moving()) }.unwrap();
    assert_eq!(map.len(), 3 * p);
    assert_eq!(map[p - 1], 7);
    assert_eq!(map[2 * p], 0);
    map[3 * p - 1] = 9;
    touch_all(&map);
}

#[test]
fn a_read_only_map_follows_a_growing_file() {
    // memmap2's use: a reader maps a log, the writer appends, the reader remaps.
    let p = page();
    let mut file = file_of(p + 10);
    // SAFETY: the file only grows (appends) while mapped.
    let mut map = unsafe { Mmap::map(&file) }.unwrap();
    assert_eq!(map.len(), p + 10);
    file.write_all(&[0xEE; 3000]).unwrap();
    let new_len = p + 10 + 3000;
    // SAFETY: as above.
    unsafe { map.remap(new_len, moving()) }.unwrap();
    assert_eq!(map.len(), new_len);
    assert_eq!(map[new_len - 1], 0xEE);
    assert_eq!(map[p + 9], ((p + 9) % 251) as u8);
    touch_all(&map);
    // Shrinking always works and keeps the first bytes.
    // SAFETY: as above.
    unsafe { map.remap(100, RemapOptions::new()) }.unwrap();
    assert_eq!(map.len(), 100);
    assert_eq!(map[99], 99);
}

#[test]
fn raw_maps_remap_and_refuse_unbacked_growth() {
    let p = page();
    let file = file_of(2 * p);
    let mut raw = MapOptions::new().len(p).map_raw(&file).unwrap();
    // SAFETY: the file is two pages long and stays so.
    unsafe { raw.remap(2 * p, moving()) }.unwrap();
    assert_eq!(raw.len(), 2 * p);
    let mut last = [0u8; 1];
    raw.copy_from_mapping(2 * p - 1, &mut last).unwrap();
    assert_eq!(last[0], ((2 * p - 1) % 251) as u8);
    // SAFETY: as above; growth past the end is refused.
    let err = unsafe { raw.remap(2 * p + 1 + p, moving()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert_eq!(raw.len(), 2 * p);
}

#[test]
fn an_unaligned_window_cannot_grow_past_the_end_of_the_file() {
    // The window starts 10 bytes into page 1 of a two-page file: growing it to a page reaches
    // into page 3 of the kernel region, past the file.
    let p = page();
    let file = file_of(2 * p);
    // SAFETY: the file is ours and stays two pages long.
    let mut map = unsafe { MapOptions::new().offset(p as u64 + 10).len(100).map(&file) }.unwrap();
    // Up to the end of the file is fine.
    // SAFETY: as above.
    unsafe { map.remap(p - 10, RemapOptions::new().may_move(true)) }.unwrap();
    assert_eq!(map[p - 11], ((2 * p - 1) % 251) as u8);
    touch_all(&map);
    // SAFETY: as above.
    let err = unsafe { map.remap(p, moving()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert_eq!(map.len(), p - 10);
    touch_all(&map);
}

#[test]
fn private_anonymous_memory_grows_with_zeros_safely() {
    let p = page();
    let mut mem = MmapMut::map_anon(p).unwrap();
    mem.fill(3);
    mem.remap_anon(5 * p, moving()).unwrap();
    assert_eq!(mem.len(), 5 * p);
    assert!(mem[..p].iter().all(|&b| b == 3));
    assert!(mem[p..].iter().all(|&b| b == 0));
    mem[5 * p - 1] = 1;
}

/// A shrink to a length inside a page keeps the rest of that page mapped (the kernel unmaps
/// whole pages): growing again must show zeros there, as `remap_anon` promises, not the bytes
/// written before the shrink.
#[test]
fn a_shrunk_private_map_grows_back_with_zeros() {
    let p = page();
    for grow in [RemapOptions::new(), moving()] {
        let mut mem = MmapMut::map_anon(3 * p).unwrap();
        mem.fill(7);
        mem.remap_anon(p + 1, RemapOptions::new()).unwrap();
        mem.remap_anon(3 * p, grow).unwrap();
        assert_eq!(mem[p], 7);
        assert!(mem[p + 1..].iter().all(|&b| b == 0), "stale bytes at {:?}", mem[p + 1..].iter().position(|&b| b != 0));
    }
}

#[test]
fn shared_anonymous_memory_cannot_grow_past_its_memory_object() {
    // MAP_SHARED | MAP_ANONYMOUS is backed by a shmem object of the original size: pages past
    // it raise SIGBUS, so the growth must be refused.
    let p = page();
    let mut mem = MapOptions::new().len(p).map_anon_shared().unwrap();
    mem[0] = 1;
    let err = mem.remap_anon(3 * p, moving()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert!(err.to_string().contains("shared memory object"), "{err}");
    assert_eq!(mem.len(), p);
    assert_eq!(mem[0], 1);
    // Shrinking is fine.
    mem.remap_anon(10, RemapOptions::new()).unwrap();
    assert_eq!(mem.len(), 10);
}

#[test]
fn remap_anon_refuses_file_maps() {
    let file = file_of(page());
    // SAFETY: the temporary file is ours alone.
    let mut map = unsafe { MmapMut::map_mut(&file) }.unwrap();
    let err = map.remap_anon(page(), RemapOptions::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("unsafe remap"), "{err}");
}

#[test]
fn lengths_past_isize_max_never_reach_the_kernel() {
    let mut mem = MmapMut::map_anon(page()).unwrap();
    for len in [isize::MAX as usize + 1, usize::MAX - 2 * page()] {
        let err = mem.remap_anon(len, moving()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
        assert!(err.errno().is_none(), "refused before mremap: {err}");
    }
    let err = mem.remap_anon(usize::MAX, moving()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert_eq!(mem.len(), page());
}

#[test]
fn in_place_growth_fails_when_the_next_pages_are_taken_and_moving_keeps_the_bytes() {
    let p = page();
    let mut mem = MmapMut::map_anon(p).unwrap();
    mem[p - 1] = 42;
    let end = mem.as_ptr() as usize + p;
    // Occupy the page right after the map (or find it occupied already).
    let _blocker = MapOptions::new().len(p).placement(Placement::FixedNoReplace(end)).map_anon();
    let start = mem.as_ptr() as usize;
    let err = mem.remap_anon(2 * p, RemapOptions::new()).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENOMEM), "{err}");
    assert_eq!(mem.as_ptr() as usize, start);
    mem.remap_anon(2 * p, moving()).unwrap();
    assert_ne!(mem.as_ptr() as usize, start, "the map moved");
    assert_eq!(mem[p - 1], 42);
    let (a, b) = area_of(mem.as_ptr() as usize);
    assert!(a <= mem.as_ptr() as u64 && b >= mem.as_ptr() as u64 + 2 * p as u64);
}

#[test]
fn typed_faces_become_raw() {
    let mut mem = MmapMut::map_anon(page()).unwrap();
    mem[0] = 5;
    let addr = mem.as_ptr();
    let raw: MmapRaw = mem.into();
    assert_eq!(raw.as_ptr(), addr);
    // SAFETY: raw access to memory this process owns alone.
    assert_eq!(unsafe { raw.as_ptr().read() }, 5);
    let ro = MmapMut::map_anon(page()).unwrap().make_read_only().unwrap();
    let raw = MmapRaw::from(ro);
    assert_eq!(raw.len(), page());
}

#[test]
fn bytes_grown_into_past_the_end_of_the_file_are_not_the_files() {
    // Why `remap`'s contract forbids growing past the file's end even inside its last page
    // (the docs said those bytes "read as zeros and never reach the file"): on shmem (a memfd,
    // tmpfs) a write there becomes the file's when the file is extended later; on a disk file
    // system the write-back zeroes it again under the map.
    let p = page();
    let shm = mmkit::SharedMemory::create("remap-tail", 100).unwrap();
    // SAFETY: the memfd is this test's alone; only the map writes it (the growth past its end
    // breaks `remap`'s contract on purpose, to show what that contract guards against).
    let mut map = unsafe { shm.map_mut() }.unwrap();
    // SAFETY: as above.
    unsafe { map.remap(p, RemapOptions::new()) }.unwrap();
    assert_eq!(map[200], 0, "the bytes past the end read as zeros at first");
    map[200] = b'X';
    shm.set_len(p as u64).unwrap();
    let mut byte = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&File::from(std::os::fd::OwnedFd::from(shm)), &mut byte, 200).unwrap();
    assert_eq!(byte[0], b'X', "on shmem the write past the old end became the file's byte");
}

/// Fails `process_vm_readv` with `errno` on this thread (a test's own thread, and the threads it
/// starts), as a container's seccomp profile that denies it does (gVisor: `ENOSYS`).
fn deny_process_vm_readv(errno: i32) {
    let f = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let filter = [
        f(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0), // seccomp_data.nr
        f(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, libc::SYS_process_vm_readv as u32, 0, 1),
        f(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno as u32, 0, 0),
        f(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with valid arguments; the kernel copies the filter.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog), 0);
    }
}

#[test]
fn growth_that_cannot_be_checked_says_why_not_that_the_file_is_short() {
    // Regression: where `process_vm_readv` is denied (a seccomp sandbox), growing a map of a
    // file long enough was refused as "the file ends before byte …" (OutOfBounds): the probe's
    // refusal was taken for a page past the end.
    let p = page();
    let file = file_of(4 * p);
    // SAFETY: the file is ours and stays four pages long.
    let mut map = unsafe { MapOptions::new().len(p).map(&file) }.unwrap();
    deny_process_vm_readv(libc::EPERM);
    // SAFETY: as above.
    let err = unsafe { map.remap(2 * p, moving()) }.unwrap_err();
    assert_eq!(err.errno(), Some(libc::EPERM), "{err}");
    assert_ne!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert!(err.to_string().contains("process_vm_readv"), "{err}");
    // The errno is process_vm_readv's, and the operation named says so (not a bare `mremap`,
    // whose own EPERM would mean a sealed page).
    let text = err.to_string();
    assert!(text.split(" failed").next().is_some_and(|op| op.contains("process_vm_readv")), "{err}");
    assert_eq!(map.len(), p, "the map keeps its old size");
    touch_all(&map);
}
