//! Soundness of shared memory (issue 10 item 3): the ring's header and data, and every safe map
//! of a memfd, are input another process can write at any moment. A hostile peer (a forked
//! child, a thread with a safe `SharedMemory::view()`) writes absurd indexes and bytes; the ring
//! must stay inside its mapping (checked against `/proc/self/maps`), never panic, and only hand
//! out copies or raw windows; a safe `&[u8]` map needs seals the kernel enforces.

#[path = "support/hugetlb.rs"]
mod hugetlb_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use mmkit::shm::{RingBuffer, RingConsumer, RingProducer, Seals, SharedMemory, SharedView};
use mmkit::{page_size, ErrorKind, MapOptions};

/// Byte offsets of the ring header's fields in the first page of its memfd.
const HEAD: usize = 0;
const TAIL: usize = 8;
const CAPACITY: usize = 16;

/// Values a hostile peer writes into an index.
fn absurd(cap: u64) -> [u64; 9] {
    [0, 1, cap - 1, cap, cap + 1, 5 * cap + 3, u64::MAX, u64::MAX - cap, 1 << 63]
}

/// The address ranges `/proc/self/maps` shows for the memfd named `name`, adjacent areas merged.
fn memfd_ranges(name: &str) -> Vec<(u64, u64)> {
    let needle = format!("/memfd:{name}");
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in mmkit::inspect::maps(std::process::id()).unwrap() {
        if !e.backing.display().starts_with(&needle) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.1 == e.start => last.1 = e.end,
            _ => out.push((e.start, e.end)),
        }
    }
    out
}

/// Asserts `[ptr, ptr + len)` lies inside one mapping of the memfd.
fn assert_inside(name: &str, ptr: usize, len: usize, what: &str) {
    let (start, end) = (ptr as u64, ptr as u64 + len as u64);
    let ranges = memfd_ranges(name);
    assert!(ranges.iter().any(|&(a, b)| a <= start && end <= b), "{what} {start:#x}..{end:#x} is outside {ranges:x?}");
}

/// Checks every bound the ring promises, whatever the header says now.
fn check_ring(name: &str, tx: &mut RingProducer, rx: &mut RingConsumer, what: &str) {
    let cap = tx.capacity();
    assert!(tx.free() <= cap && rx.available() <= cap, "{what}");
    let (dst, free) = tx.write_window();
    assert!(free <= cap, "{what}");
    assert_inside(name, dst as usize, free, what);
    let (src, queued) = rx.read_window();
    assert!(queued <= cap, "{what}");
    assert_inside(name, src as usize, queued, what);
    let mut buf = vec![0u8; 2 * cap];
    assert!(rx.pop(&mut buf) <= cap, "{what}");
    assert!(tx.push(&vec![7u8; 2 * cap]) <= cap, "{what}");
    assert!(rx.pop(&mut buf[..3]) <= 3, "{what}");
    // Committing or consuming more than there is must be an error, not a panic or a wrap.
    assert!(tx.commit(cap + 1).is_err(), "{what}");
    assert!(rx.consume(cap + 1).is_err(), "{what}");
}

fn ring(name: &str) -> (RingProducer, RingConsumer, SharedView) {
    let (tx, rx) = RingBuffer::create(name, page_size()).unwrap();
    // The issue's route: the memfd the producer hands out gives a safe, writable view.
    let view = tx.shared_memory().view().unwrap();
    (tx, rx, view)
}

#[test]
fn a_view_writing_absurd_indexes_keeps_the_ring_in_bounds() {
    let name = "mmkit-hostile-view";
    let (mut tx, mut rx, view) = ring(name);
    let cap = tx.capacity() as u64;
    for head in absurd(cap) {
        for tail in absurd(cap) {
            view.atomic::<AtomicU64>(HEAD).unwrap().store(head, Ordering::SeqCst);
            view.atomic::<AtomicU64>(TAIL).unwrap().store(tail, Ordering::SeqCst);
            check_ring(name, &mut tx, &mut rx, &format!("head={head:#x} tail={tail:#x}"));
        }
    }
}

#[test]
fn the_issue_route_head_set_to_capacity_gives_copies_not_aliases() {
    // Issue 10 item 3: a view sets `head` to the capacity. Before the fix the producer's
    // `&mut [u8]` and the consumer's `&[u8]` then covered the same bytes.
    let name = "mmkit-hostile-alias";
    let (mut tx, mut rx, view) = ring(name);
    let cap = tx.capacity();
    view.atomic::<AtomicU64>(HEAD).unwrap().store(cap as u64, Ordering::SeqCst);
    let mut out = vec![0u8; cap];
    assert_eq!(rx.pop(&mut out), cap, "the consumer believes the header: a full ring of garbage");
    // The popped bytes are a copy: writing the ring's memory afterwards does not change them.
    let snapshot = out.clone();
    view.write_bytes(page_size(), &vec![0xAB; cap]).unwrap();
    assert_eq!(out, snapshot);
    // The producer kept its own head (0), so the consumer's tail (cap) is ahead of it:
    // nonsense, which stalls the producer instead of letting it write under a reader.
    assert_eq!(tx.free(), 0);
    assert_eq!(tx.push(b"abc"), 0);
    // Once the header is sane again, the ring moves on.
    view.atomic::<AtomicU64>(TAIL).unwrap().store(0, Ordering::SeqCst);
    let mut rx2 = RingConsumer::attach(tx.shared_memory().try_clone().unwrap()).unwrap();
    assert_eq!(tx.push(b"abc"), 3);
    let mut got = [0u8; 8];
    assert_eq!(rx2.pop(&mut got), 3);
    assert_eq!(&got[..3], b"abc");
}

#[test]
fn a_thread_scribbling_on_the_header_and_data_never_breaks_the_bounds() {
    let name = "mmkit-hostile-thread";
    let (mut tx, mut rx, view) = ring(name);
    let cap = tx.capacity() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let hostile = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut rng = 7u64;
            let mut scribbles = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let field = if rng & 1 == 0 { HEAD } else { TAIL };
                view.atomic::<AtomicU64>(field)
                    .unwrap()
                    .store(absurd(cap)[(rng >> 40) as usize % 9], Ordering::Relaxed);
                view.write_bytes(page_size() + (rng >> 20) as usize % cap as usize, &[0xEE; 1]).unwrap();
                scribbles += 1;
            }
            scribbles
        })
    };
    let mut buf = vec![0u8; 2 * cap as usize];
    for i in 0..20_000usize {
        assert!(tx.push(&buf[..i % (2 * cap as usize)]) <= cap as usize);
        assert!(rx.pop(&mut buf[..(i * 7) % (2 * cap as usize)]) <= cap as usize);
        if i % 1000 == 0 {
            check_ring(name, &mut tx, &mut rx, &format!("round {i}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert!(hostile.join().unwrap() > 0);
}

#[test]
fn a_forked_peer_writing_absurd_indexes_cannot_crash_the_parent() {
    let name = "mmkit-hostile-fork";
    let (mut tx, mut rx, view) = ring(name);
    let cap = tx.capacity() as u64;
    let head = view.atomic::<AtomicU64>(HEAD).unwrap();
    let tail = view.atomic::<AtomicU64>(TAIL).unwrap();
    let values = absurd(cap);
    // SAFETY: the child only does atomic stores through references made before the fork and
    // ends with `_exit`: nothing that needs a lock another thread may hold.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        for i in 0..2_000_000usize {
            head.store(values[i % 9], Ordering::Relaxed);
            tail.store(values[(i / 9) % 9], Ordering::Relaxed);
        }
        // SAFETY: ends the child at once, running no destructors or atexit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut buf = vec![0u8; 2 * cap as usize];
    let mut status = 0;
    let mut rounds = 0u64;
    loop {
        assert!(tx.push(&buf[..(rounds as usize * 13) % buf.len()]) <= cap as usize);
        assert!(rx.pop(&mut buf) <= cap as usize);
        rounds += 1;
        // SAFETY: polls our own child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "waitpid failed");
    }
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    check_ring(name, &mut tx, &mut rx, "after the peer");
    assert!(rounds > 0);
}

#[test]
fn attach_refuses_a_header_that_lies_about_the_capacity() {
    let (tx, _rx, view) = ring("mmkit-hostile-capacity");
    let cap = tx.capacity() as u64;
    for lie in [0, cap + page_size() as u64, u64::MAX] {
        view.atomic::<AtomicU64>(CAPACITY).unwrap().store(lie, Ordering::SeqCst);
        let err = RingConsumer::attach(tx.shared_memory().try_clone().unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("header says capacity"), "{err}");
    }
    // A memfd too small for a ring is refused too.
    let tiny = SharedMemory::create("mmkit-tiny-ring", page_size() as u64).unwrap();
    assert_eq!(RingProducer::attach(tiny).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn the_ring_memfd_cannot_be_sealed_for_a_safe_slice() {
    // A safe `&[u8]` map of the ring's memory would alias the producer's writes: it needs the
    // WRITE seal, which the kernel refuses while the ring's writable maps exist.
    let (tx, _rx) = RingBuffer::create("mmkit-ring-seal", page_size()).unwrap();
    let shm = tx.shared_memory();
    assert_eq!(shm.add_seals(Seals::WRITE).unwrap_err().errno(), Some(libc::EBUSY));
    assert_eq!(shm.map_read_only().unwrap_err().kind(), ErrorKind::NotSafe);
    // FUTURE_WRITE is accepted by the kernel, but existing writable maps keep writing, so it
    // does not make a safe slice either.
    shm.add_seals(Seals::FUTURE_WRITE).unwrap();
    let err = MapOptions::new().map_if_safe(shm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSafe, "{err}");
    assert!(err.to_string().contains("FUTURE_WRITE"), "{err}");
}

#[test]
fn future_write_leaves_old_writers_so_it_is_not_safe() {
    // The kernel fact behind refusing FUTURE_WRITE: a writable map made before the seal keeps
    // changing the bytes a read-only map would show.
    let page = page_size();
    let shm = SharedMemory::create("mmkit-future-write", page as u64).unwrap();
    let writer = shm.map_raw().unwrap();
    shm.add_seals(Seals::FUTURE_WRITE | Seals::SHRINK | Seals::GROW).unwrap();
    // SAFETY: raw write into our own writable map of the memfd.
    unsafe { writer.as_mut_ptr().write_volatile(9) };
    let mut b = [0u8; 1];
    MapOptions::new().map_raw_read_only(&shm).unwrap().copy_from_mapping(0, &mut b).unwrap();
    assert_eq!(b[0], 9, "the old writer still writes");
    assert_eq!(shm.map_read_only().unwrap_err().kind(), ErrorKind::NotSafe);
}

#[test]
fn parts_of_a_sealed_memfd_map_safely_with_offset_and_length() {
    let page = page_size();
    let shm = SharedMemory::create("mmkit-sealed-parts", 4 * page as u64).unwrap();
    let data: Vec<u8> = (0..4 * page).map(|i| (i % 253) as u8).collect();
    shm.view().unwrap().write_bytes(0, &data).unwrap();
    // Not sealed yet: refused, and the error says what is missing.
    let err = MapOptions::new().map_if_safe(&shm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSafe);
    assert!(err.to_string().contains("WRITE"), "{err}");
    shm.seal_read_only().unwrap();
    let part = MapOptions::new().offset(page as u64 + 3).len(2 * page).map_if_safe(&shm).unwrap();
    assert_eq!(&part[..], &data[page + 3..3 * page + 3]);
    let tail = MapOptions::new().offset(3 * page as u64).map_if_safe(&shm).unwrap();
    assert_eq!(&tail[..], &data[3 * page..]);
    // Past the end of the memfd: a clear error, not a map that would raise SIGBUS.
    let err = MapOptions::new().offset(3 * page as u64).len(2 * page).map_if_safe(&shm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    let err = MapOptions::new().offset(5 * page as u64).map_if_safe(&shm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    // The sealed map cannot be turned writable in place.
    assert!(part.make_mut().is_err());
}

#[test]
fn a_plain_file_is_not_proven_immutable() {
    let file = tempfile::tempfile().unwrap();
    file.set_len(page_size() as u64).unwrap();
    let err = MapOptions::new().map_if_safe(&file).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSafe, "{err}");
    // On most file systems the refusal names fs-verity; on tmpfs (which answers the seals query
    // as a memfd does) it names the missing seals.
    let msg = err.to_string();
    assert!(msg.contains("fs-verity") || msg.contains("SHRINK"), "{err}");
}

/// `AsFd` is a safe trait: an implementation may answer a sealed memfd when `map_if_safe` checks
/// it and a plain file when it maps. The check and the map must use one descriptor, or the safe
/// `Mmap` lies over a file anyone can truncate (its next touch past the new end raised `SIGBUS`).
#[test]
fn map_if_safe_maps_the_descriptor_it_checked() {
    use std::cell::Cell;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::fs::FileExt;

    /// The sealed memfd on the first call, the plain file on every later one.
    struct Flip {
        sealed: SharedMemory,
        plain: std::fs::File,
        calls: Cell<u32>,
    }
    impl AsFd for Flip {
        fn as_fd(&self) -> BorrowedFd<'_> {
            let n = self.calls.get();
            self.calls.set(n + 1);
            if n == 0 {
                self.sealed.as_fd()
            } else {
                self.plain.as_fd()
            }
        }
    }

    let page = page_size();
    let sealed = SharedMemory::create("mmkit-flip", page as u64).unwrap();
    std::fs::File::from(std::os::fd::OwnedFd::from(sealed.try_clone().unwrap())).write_all_at(&[0xaa], 0).unwrap();
    sealed.seal_read_only().unwrap();
    let plain = tempfile::tempfile().unwrap();
    plain.write_all_at(&vec![0x55; 3 * page], 0).unwrap();
    let flip = Flip { sealed, plain, calls: Cell::new(0) };
    match MapOptions::new().map_if_safe(&flip) {
        Ok(map) => assert_eq!((map.len(), map[0]), (page, 0xaa), "the safe map is not of the memfd it checked"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::NotSafe, "{e}"),
    }
}

/// A memfd on hugetlbfs (`MFD_HUGETLB`), as a peer may send one: its `SHRINK` seal does not make
/// its pages last, since any holder can punch a hole, which frees the huge page and its pool
/// reservation, and the view's next touch of it then raises `SIGBUS` when the pool is empty
/// (shown against the kernel in `hugetlb.rs`, which needs a pool). A safe `SharedView` of it is
/// refused before anything is mapped or sealed, whatever the pool holds.
#[test]
fn a_hugetlb_memfd_gets_no_safe_view() {
    let shm = hugetlb_support::hugetlb_memfd(c"peer-hugetlb", hugetlb_support::huge_page_size());
    let err = shm.view().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSafe, "{err}");
    assert!(err.to_string().contains("hugetlbfs"), "{err}");
    assert!(!shm.seals().unwrap().contains(Seals::SHRINK), "a refused view seals nothing");
}

/// `MmapRaw::protect` is safe, so a read-only shared raw map of a memfd made before it was sealed
/// could be made writable later and write under a safe `&[u8]` of `map_read_only`. The kernel
/// closes the route at both ends: the WRITE seal is refused while a shared map that may become
/// writable exists (read-only or not), and a shared map made after the seal cannot gain write
/// permission.
#[test]
fn a_read_only_raw_map_cannot_become_a_writer_under_a_sealed_slice() {
    let page = page_size();
    let shm = SharedMemory::create("mmkit-ro-raw", page as u64).unwrap();
    let early = MapOptions::new().protection(mmkit::Protection::READ).map_raw(&shm).unwrap();
    let err = shm.seal_read_only().unwrap_err();
    assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");
    assert_eq!(shm.map_read_only().unwrap_err().kind(), ErrorKind::NotSafe);
    drop(early);
    // A child another test forks meanwhile holds a copy of `early` until it exits (seen flaky):
    // the kernel answers EBUSY until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = shm.seal_read_only() {
        assert!(e.errno() == Some(libc::EBUSY) && std::time::Instant::now() < deadline, "{e}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let slice = shm.map_read_only().unwrap();
    let mut late = MapOptions::new().protection(mmkit::Protection::READ).map_raw(&shm).unwrap();
    let err = late.protect(.., mmkit::Protection::READ_WRITE).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EACCES), "{err}");
    // A private raw map may become writable: its writes are copies the slice never sees.
    let mut private =
        MapOptions::new().protection(mmkit::Protection::READ).sharing(mmkit::Sharing::Private).map_raw(&shm).unwrap();
    private.protect(.., mmkit::Protection::READ_WRITE).unwrap();
    // SAFETY: a raw write into our own private, now writable, copy-on-write map.
    unsafe { private.as_mut_ptr().write_volatile(5) };
    assert_eq!(slice[0], 0, "a private write reached the sealed memfd");
}
