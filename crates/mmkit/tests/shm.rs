//! Shared memory against the kernel: an unrelated process sees the memfd, seals are enforced,
//! the double mapping aliases, the ring buffer keeps bytes in order.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use mmkit::shm::{MirroredBuffer, RingBuffer, Seals, SharedMemory};
use mmkit::{page_size, ErrorKind};

/// Spawns `shm_peer` (a separate binary: no inherited descriptors or mappings), sends it `shm`
/// over a Unix socket and returns what it printed.
fn run_peer(shm: &SharedMemory, mode: &str) -> String {
    run_peer_with(shm, &[mode], || {})
}

/// [`run_peer`] with more arguments, running `meanwhile` after the memfd is sent and before
/// the peer's output is read (the two processes work at the same time).
fn run_peer_with(shm: &SharedMemory, args: &[&str], meanwhile: impl FnOnce()) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shm_peer"))
        .arg(&path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (sock, _) = listener.accept().unwrap();
    shm.send(&sock).unwrap();
    meanwhile();
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "shm_peer failed: {status} {err}");
    out.trim().to_owned()
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

#[test]
fn unrelated_process_sees_and_writes_the_memfd() {
    let shm = SharedMemory::create("mmkit-test-peer", 8192).unwrap();
    let view = shm.view().unwrap();
    let msg = b"hello from the parent";
    view.write(60, &(msg.len() as u32)).unwrap();
    view.write_bytes(64, msg).unwrap();
    view.atomic::<AtomicU64>(0).unwrap().store(41, Ordering::SeqCst);

    let out = run_peer(&shm, "view");
    assert_eq!(field(&out, "name"), "mmkit-test-peer");
    assert_eq!(field(&out, "len"), "8192");
    assert_eq!(field(&out, "msg"), "hello"); // split on whitespace: first word
    assert!(out.contains("msg=hello from the parent"), "{out}");
    // The view sealed SHRINK, so the peer's ftruncate(0) failed with EPERM.
    assert_eq!(field(&out, "shrink_errno"), libc::EPERM.to_string());

    // The peer's writes are in our memory.
    assert_eq!(view.atomic::<AtomicU64>(0).unwrap().load(Ordering::SeqCst), 42);
    let mut back = vec![0u8; msg.len()];
    view.read_bytes(1024, &mut back).unwrap();
    let rev: Vec<u8> = msg.iter().rev().copied().collect();
    assert_eq!(back, rev);
}

#[test]
fn write_seal_is_enforced_in_another_process() {
    let shm = SharedMemory::create("sealed", 4096).unwrap();
    shm.seal_read_only().unwrap();
    let out = run_peer(&shm, "write");
    assert_eq!(field(&out, "write_errno"), libc::EPERM.to_string());
    assert_eq!(field(&out, "map_errno"), libc::EPERM.to_string());
}

#[test]
fn seals_are_enforced() {
    let page = page_size() as u64;
    let shm = SharedMemory::create("seals", 2 * page).unwrap();
    assert_eq!(shm.seals().unwrap(), Seals::NONE);
    shm.set_len(3 * page).unwrap();
    shm.add_seals(Seals::GROW).unwrap();
    assert_eq!(shm.set_len(4 * page).unwrap_err().errno(), Some(libc::EPERM));
    shm.set_len(page).unwrap(); // shrinking is still allowed
    shm.add_seals(Seals::SHRINK).unwrap();
    assert_eq!(shm.set_len(0).unwrap_err().errno(), Some(libc::EPERM));
    assert_eq!(shm.len().unwrap(), page);

    // Without the WRITE seal a read-only map would not be safe: refused.
    assert_eq!(shm.map_read_only().unwrap_err().kind(), ErrorKind::NotSafe);

    // F_SEAL_WRITE fails with EBUSY while a writable shared mapping exists.
    let raw = shm.map_raw().unwrap();
    // SAFETY: the map is ours and in bounds.
    unsafe { raw.as_mut_ptr().write(9) };
    assert_eq!(shm.add_seals(Seals::WRITE).unwrap_err().errno(), Some(libc::EBUSY));
    drop(raw);
    shm.add_seals(Seals::WRITE | Seals::SEAL).unwrap();
    let ro = shm.map_read_only().unwrap();
    assert_eq!(ro[0], 9);
    assert_eq!(ro.len() as u64, page);
    // Now writes fail, and no more seals can be added.
    assert_eq!(shm.map_raw().unwrap_err().errno(), Some(libc::EPERM));
    assert_eq!(shm.add_seals(Seals::GROW).unwrap_err().errno(), Some(libc::EPERM));
    assert_eq!(shm.seals().unwrap(), Seals::GROW | Seals::SHRINK | Seals::WRITE | Seals::SEAL);
}

#[test]
fn future_write_seal_keeps_existing_maps_writable() {
    let shm = SharedMemory::create("future", 4096).unwrap();
    let raw = shm.map_raw().unwrap();
    shm.add_seals(Seals::FUTURE_WRITE).unwrap();
    // SAFETY: mapped read-write before the seal; the existing map may keep writing.
    unsafe { raw.as_mut_ptr().write(5) };
    assert_eq!(shm.map_raw().unwrap_err().errno(), Some(libc::EPERM));
    let view = SharedMemory::from_fd(shm.try_clone().unwrap().into()).unwrap();
    assert_eq!(view.name(), "future");
}

#[test]
fn memfd_is_named_in_proc_maps() {
    let shm = SharedMemory::create("mmkit-named-memfd", 4096).unwrap();
    let raw = shm.map_raw().unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line =
        maps.lines().find(|l| l.starts_with(&format!("{:x}-", raw.as_ptr() as usize))).expect("the map is listed");
    assert!(line.contains("/memfd:mmkit-named-memfd"), "{line}");
}

#[test]
fn view_checks_bounds_and_alignment() {
    let view = SharedMemory::create("v", 64).unwrap().view().unwrap();
    assert_eq!(view.len(), 64);
    assert_eq!(view.atomic::<AtomicU64>(60).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(view.atomic::<AtomicU64>(4).unwrap_err().kind(), ErrorKind::Layout);
    assert_eq!(view.read::<u64>(usize::MAX).unwrap_err().kind(), ErrorKind::OutOfBounds);
    view.write(3, &0x1122_3344u32).unwrap(); // unaligned volatile copies are fine
    assert_eq!(view.read::<u32>(3).unwrap(), 0x1122_3344);
}

#[test]
fn mirrored_buffer_aliases_its_halves() {
    let ring = MirroredBuffer::new("mirror", 3 * page_size()).unwrap();
    let cap = ring.capacity();
    assert_eq!(cap, 3 * page_size());
    let p = ring.as_ptr();
    // SAFETY: `2 * cap` bytes are mapped read-write from `p`; raw access only.
    unsafe {
        for i in 0..cap {
            p.add(i).write((i % 251) as u8);
        }
        for i in 0..cap {
            assert_eq!(p.add(cap + i).read(), (i % 251) as u8);
        }
        // A write through the second copy shows in the first.
        p.add(cap + 5).write(0xAA);
        assert_eq!(p.add(5).read(), 0xAA);
    }
    // The memfd is mapped twice, at consecutive addresses.
    let maps = mmkit::inspect::maps(std::process::id()).unwrap();
    let areas: Vec<_> = maps.iter().filter(|e| e.start >= p as u64 && e.end <= (p as usize + 2 * cap) as u64).collect();
    assert_eq!(areas.len(), 2, "{areas:?}");
    assert_eq!(areas[0].offset, areas[1].offset);
}

#[test]
fn ring_buffer_keeps_bytes_in_order_across_wraps() {
    let (mut tx, mut rx) = RingBuffer::create("ring", page_size()).unwrap();
    let cap = tx.capacity();
    let mut next_in = 0u32;
    let mut next_out = 0u32;
    let mut rng = 12345u64;
    let mut out = vec![0u8; cap];
    for _ in 0..2000 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let n = ((rng >> 33) as usize % (cap / 2)).min(tx.free());
        let data: Vec<u8> = (0..n).map(|k| ((next_in as usize + k) % 256) as u8).collect();
        assert_eq!(tx.push(&data), n);
        next_in += n as u32;
        let take = (rng >> 13) as usize % (cap / 2);
        let got = rx.pop(&mut out[..take]);
        assert_eq!(got, take.min(rx.available() + got));
        for &b in &out[..got] {
            assert_eq!(b, (next_out % 256) as u8);
            next_out += 1;
        }
    }
    assert!(next_out as usize > 4 * cap, "the test wrapped around several times");
    let queued = rx.available();
    assert_eq!(tx.push(&vec![0u8; 2 * cap]), cap - queued); // fills up to capacity, no more
    assert_eq!(rx.available(), cap);
    assert_eq!(tx.free(), 0);
    assert_eq!(tx.commit(1).unwrap_err().kind(), ErrorKind::OutOfBounds);
}

#[test]
fn ring_windows_are_raw_and_commit_checks_the_count() {
    let (mut tx, mut rx) = RingBuffer::create("ring-window", 1).unwrap();
    let cap = tx.capacity();
    let (dst, free) = tx.write_window();
    assert_eq!(free, cap);
    // SAFETY: `free` bytes from `dst` are mapped and not read by the consumer until committed;
    // nobody else holds the memfd.
    unsafe { std::ptr::copy_nonoverlapping(b"hello".as_ptr(), dst, 5) };
    tx.commit(5).unwrap();
    let (src, queued) = rx.read_window();
    assert_eq!(queued, 5);
    let mut got = [0u8; 5];
    // SAFETY: `queued` bytes from `src` are mapped; the producer does not write them until
    // they are consumed.
    unsafe { std::ptr::copy_nonoverlapping(src, got.as_mut_ptr(), 5) };
    assert_eq!(&got, b"hello");
    assert_eq!(rx.consume(6).unwrap_err().kind(), ErrorKind::OutOfBounds);
    rx.consume(5).unwrap();
    assert_eq!(rx.available(), 0);
    assert_eq!(tx.free(), cap);
}

/// Stream byte `i` of the cross-process ring test (the peer checks the same function).
fn ring_byte(i: u64) -> u8 {
    (i.wrapping_mul(7) % 251) as u8
}

#[test]
fn ring_buffer_carries_a_stream_to_another_process() {
    let (mut tx, rx) = RingBuffer::create("mmkit-test-ring", page_size()).unwrap();
    drop(rx); // the consumer lives in the peer
    let cap = tx.capacity();
    let total = 64 * cap as u64;
    let shm = tx.shared_memory().try_clone().unwrap();
    let out = run_peer_with(&shm, &["ring", &total.to_string()], || {
        let (mut at, mut rng) = (0u64, 99u64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while at < total {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let want = 1 + (rng >> 33) as usize % cap;
            let n = tx.free().min(want).min((total - at) as usize);
            if n == 0 {
                assert!(std::time::Instant::now() < deadline, "the peer stopped reading at {at} bytes");
                std::thread::yield_now();
                continue;
            }
            let data: Vec<u8> = (0..n).map(|k| ring_byte(at + k as u64)).collect();
            assert_eq!(tx.push(&data), n);
            at += n as u64;
        }
    });
    assert_eq!(field(&out, "bytes"), total.to_string(), "{out}");
    assert_eq!(field(&out, "first_bad"), "none", "{out}");
    // The consumer's progress came back through the shared header: the ring is empty again.
    assert_eq!(tx.free(), cap, "{out}");
}

#[test]
fn recv_without_descriptor_is_an_error() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(a);
    let e = SharedMemory::recv(&b).unwrap_err();
    assert!(e.to_string().contains("closed"), "{e}");
}

#[test]
fn errors_say_what_limit_or_seal_refused() {
    // A name past the kernel's 249 bytes: the error says the limit, not the whole name.
    let long = "n".repeat(300);
    let e = SharedMemory::create(&long, 4096).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL));
    let text = e.to_string();
    assert!(text.contains("300 bytes") && text.contains("249"), "{text}");
    assert!(!text.contains(&long), "the whole name is not repeated: {text}");
    assert!(SharedMemory::create(&"n".repeat(249), 4096).is_ok(), "249 bytes is allowed");
    // A view (shared, writable) of a memfd sealed against writes: EPERM, and why.
    let shm = SharedMemory::create("sealed-view", 4096).unwrap();
    shm.seal_read_only().unwrap();
    let e = shm.view().unwrap_err();
    assert_eq!(e.errno(), Some(libc::EPERM));
    assert!(e.to_string().contains("sealed against writes") && e.to_string().contains("map_read_only"), "{e}");
    assert_eq!(&shm.map_read_only().unwrap()[..4], &[0; 4]);
}

/// Regression: attaching to a memfd that cannot be sealed, or one sealed against writing, gave
/// the kernel's bare EPERM under the operation "RingBuffer": now the end's own operation and
/// what the memfd lacks.
#[test]
fn a_ring_end_refused_by_the_memfds_seals_says_why() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let page = mmkit::page_size();
    // SAFETY: a NUL-terminated name; the descriptor returned is owned below.
    let fd = unsafe { libc::memfd_create(c"no-sealing".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor nothing else owns.
    let shm = SharedMemory::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    shm.set_len(4 * page as u64).unwrap();
    let err = mmkit::shm::RingProducer::attach(shm).unwrap_err();
    assert_eq!((err.operation(), err.errno()), ("RingProducer::attach", Some(libc::EPERM)), "{err}");
    assert!(err.to_string().contains("MFD_ALLOW_SEALING"), "{err}");
    let shm = SharedMemory::create("write-sealed", 4 * page as u64).unwrap();
    shm.add_seals(mmkit::shm::Seals::WRITE).unwrap();
    let err = mmkit::shm::RingConsumer::attach(shm).unwrap_err();
    assert_eq!(err.operation(), "RingConsumer::attach", "{err}");
    assert!(err.to_string().contains("F_SEAL_WRITE"), "{err}");
}

/// Copies access shared memory in whole aligned 8-byte words (so no two accesses of this
/// process race with different sizes); a partial word is changed by compare-and-swap. Two
/// threads writing neighbouring bytes of one word never undo each other's bytes (a plain
/// load-merge-store of the word would put back a stale copy of the other thread's bytes).
#[test]
fn copies_into_one_word_from_two_threads_keep_each_others_bytes() {
    let shm = SharedMemory::create("mmkit-test-words", 64).unwrap();
    let view = std::sync::Arc::new(shm.view().unwrap());
    let writer = |at: usize, len: usize| {
        let view = view.clone();
        std::thread::spawn(move || {
            for i in 0..200_000u32 {
                let mine = vec![(i % 251) as u8 + 1; len];
                view.write_bytes(at, &mine).unwrap();
                let mut back = vec![0; len];
                view.read_bytes(at, &mut back).unwrap();
                assert_eq!(back, mine, "bytes {at}..{} lost a write at round {i}", at + len);
            }
        })
    };
    let (a, b) = (writer(1, 3), writer(4, 9)); // bytes 1..4, and 4..13 across two words
    a.join().unwrap();
    b.join().unwrap();
    let mut all = [0u8; 16];
    view.read_bytes(0, &mut all).unwrap();
    assert_eq!(all[0], 0, "a byte no copy named changed");
    assert_eq!(&all[13..], &[0, 0, 0]);
}

/// A copy's partial last word reaches past the view's length (the memfd's end): it reads and
/// rewrites those bytes unchanged, and the file keeps its length.
#[test]
fn copies_at_the_end_of_an_odd_length_view() {
    let shm = SharedMemory::create("mmkit-test-tail", 61).unwrap();
    let view = shm.view().unwrap();
    view.write_bytes(57, &[1, 2, 3, 4]).unwrap();
    view.write(60, &9u8).unwrap();
    let mut back = [0u8; 4];
    view.read_bytes(57, &mut back).unwrap();
    assert_eq!(back, [1, 2, 3, 9]);
    assert_eq!(view.read::<u8>(60).unwrap(), 9);
    assert_eq!(shm.len().unwrap(), 61);
    assert_eq!(view.write_bytes(58, &[0; 4]).unwrap_err().kind(), ErrorKind::OutOfBounds);
    let mut file = [0u8; 5];
    rustix::io::pread(&shm, &mut file, 56).unwrap();
    assert_eq!(file, [0, 1, 2, 3, 9]);
}

/// The 4-byte atomics the safe `atomic` no longer hands out (they would race the view's
/// 8-byte copies in another size) come from the `unsafe` `atomic_sized`.
#[test]
fn atomics_of_other_sizes_come_from_atomic_sized() {
    use std::sync::atomic::AtomicU32;
    let shm = SharedMemory::create("mmkit-test-sized", 64).unwrap();
    let view = shm.view().unwrap();
    // SAFETY: bytes 12..16 are accessed as this AtomicU32 only, in this process, one thread.
    let word = unsafe { view.atomic_sized::<AtomicU32>(12) }.unwrap();
    word.store(0xdead_beef, Ordering::SeqCst);
    assert_eq!(view.read::<u32>(12).unwrap(), 0xdead_beef);
    // SAFETY: a failed call hands out nothing.
    assert_eq!(unsafe { view.atomic_sized::<AtomicU32>(62) }.unwrap_err().kind(), ErrorKind::OutOfBounds);
}
