//! The README's tour, "Anonymous memory, shared memory, reservations": its lines as written,
//! with what its comments claim checked against the kernel (`/proc/self/maps`, `mincore`).
//!
//! ```text
//! cargo run -p mmkit --example tour_anon
//! ```
//!
//! `cargo test -p mmkit --example tour_anon` runs it too (its test calls `main`), as root and,
//! in `scripts/test`, as uid 65534. On 32-bit targets it says it cannot reserve 64 GiB.

#[cfg(target_pointer_width = "64")]
use std::os::unix::net::UnixStream;

// The README's first line.
#[cfg(target_pointer_width = "64")]
use mmkit::{HugePages, MapOptions, Protection, Reservation, SharedMemory};

/// The README reserves 64 GiB: a 64-bit address space.
#[cfg(not(target_pointer_width = "64"))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("tour_anon: skipped: the README's 64 GiB reservation needs a 64-bit address space");
    Ok(())
}

/// The `/proc/self/maps` line of the mapping that starts at `addr`.
#[cfg(target_pointer_width = "64")]
fn maps_line(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let line = maps.lines().find(|l| l.split('-').next().and_then(|a| usize::from_str_radix(a, 16).ok()) == Some(addr));
    line.unwrap_or("(not found)").to_owned()
}

#[cfg(target_pointer_width = "64")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let page = mmkit::page_size();

    // --- the README's lines -------------------------------------------------------------
    let mut mem = MapOptions::new().len(1 << 20).name("scratch").map_anon()?; // zeroed
    let thp = MapOptions::new().len(64 << 20).huge_pages(HugePages::Transparent).map_anon()?;
    println!("{:?}", thp.page_outcome()); // the page size it got, or why not

    let heap = Reservation::new(64 << 30)?; // ART's heap: 64 GiB of address space
    heap.commit(0, 8 << 20, Protection::READ_WRITE)?; // 8 MiB of it usable
                                                      // (the example touches it here, to see the decommit return it)
                                                      // SAFETY: [0, 8 MiB) of the reservation was just committed read-write; nothing else refers
                                                      // to it.
    unsafe { heap.as_mut_ptr().write_bytes(0xa5, 8 << 20) };
    let touched = heap.resident_pages(0, 8 << 20)?;
    heap.decommit(0, 8 << 20)?; // and its memory returned

    let shm = SharedMemory::create("frames", 1 << 20)?; // memfd; pass with shm.send(&socket)

    // --- end of the README's lines -----------------------------------------------------

    // What the comments claim.
    assert_eq!(mem.len(), 1 << 20);
    assert!(mem.iter().all(|&b| b == 0), "anonymous memory is zeroed");
    mem[12345] = 7; // and writable
    let line = maps_line(mem.as_ptr() as usize);
    println!("{line}");
    if mem.mapping().name_applied() {
        assert!(line.ends_with("[anon:scratch]"), "the name shows in /proc/self/maps: {line}");
    } else {
        println!("(this kernel does not name anonymous maps: no CONFIG_ANON_VMA_NAME)");
    }
    let outcome = thp.page_outcome();
    assert_eq!(outcome.requested, HugePages::Transparent);
    assert!(outcome.page_size > page || outcome.fallback.is_some(), "a huge page size, or why not: {outcome:?}");

    assert_eq!(heap.len(), 64 << 30);
    assert_eq!(touched, (8 << 20) / page, "the committed 8 MiB were usable and resident once touched");
    assert_eq!(heap.resident_pages(0, 8 << 20)?, 0, "decommit returned the memory");
    println!("reservation: {touched} pages resident after the writes, 0 after decommit");

    let (socket, peer) = UnixStream::pair()?;
    shm.send(&socket)?;
    let got = SharedMemory::recv(&peer)?;
    assert_eq!((got.name(), got.len()?), ("frames", 1 << 20), "the peer received the memfd");
    println!("tour_anon: ok");
    Ok(())
}

/// `cargo test` runs the example: the README's lines must compile and do what its comments say.
#[cfg(test)]
#[test]
fn runs_as_the_readme_says() {
    main().unwrap();
}
