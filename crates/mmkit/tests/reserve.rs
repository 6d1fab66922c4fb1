//! Reservations against the kernel: address space without memory, commit/decommit and RSS
//! (smaps), alignment, low-4 GiB placement, names, sub-reservations, guards, maps inside.

#[path = "support/fork.rs"]
mod fork;
#[path = "support/limits.rs"]
mod limits;

use std::io::Write;

use fork::{in_child, rss_in};
use limits::{in_limited_child, lower_soft_limit, restore_limit, vm_bytes};
use mmkit::reserve::ReserveOptions;
use mmkit::shm::SharedMemory;
use mmkit::{page_size, ErrorKind, Populate, Protection, Reservation, Sharing};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

fn areas_in(start: usize, len: usize) -> Vec<mmkit::inspect::MapsEntry> {
    mmkit::inspect::maps(std::process::id())
        .unwrap()
        .into_iter()
        .filter(|e| e.start < (start + len) as u64 && e.end > start as u64)
        .collect()
}

fn touch(r: &Reservation, off: usize, len: usize, v: u8) {
    for i in (off..off + len).step_by(page_size()) {
        // SAFETY: the caller committed `[off, off + len)` read-write.
        unsafe { r.as_mut_ptr().add(i).write_volatile(v) };
    }
}

/// ART's heap reservation: 64 GiB of address space (1 GiB where a process has only 4 GiB).
#[cfg(target_pointer_width = "64")]
const HEAP: usize = 64 * GIB;
#[cfg(not(target_pointer_width = "64"))]
const HEAP: usize = GIB;

#[test]
fn sixty_four_gib_costs_nothing_until_committed_and_touched() {
    let heap = Reservation::new(HEAP).unwrap();
    let base = heap.as_ptr() as usize;
    let smaps: Vec<_> = mmkit::inspect::smaps(std::process::id())
        .unwrap()
        .into_iter()
        .filter(|a| a.area.start < (base + heap.len()) as u64 && a.area.end > base as u64)
        .collect();
    // Each area's extent inside the reservation: a neighbouring PROT_NONE area (another test
    // thread's reservation) may have merged with ours, so the areas are clipped to our range.
    let (lo, hi) = (base as u64, (base + heap.len()) as u64);
    let size: u64 = smaps.iter().map(|a| a.area.end.min(hi) - a.area.start.max(lo)).sum();
    assert_eq!(size, HEAP as u64);
    assert_eq!(rss_in(base, heap.len()), 0);
    assert!(smaps.iter().all(|a| !a.area.perms.read && !a.area.perms.write), "PROT_NONE");

    heap.commit(0, 8 * MIB, Protection::READ_WRITE).unwrap();
    assert_eq!(rss_in(base, heap.len()), 0, "committed but untouched: no memory yet");
    touch(&heap, 0, 8 * MIB, 1);
    assert_eq!(rss_in(base, heap.len()), 8 * MIB as u64);
    assert_eq!(heap.resident_pages(0, 8 * MIB).unwrap(), 8 * MIB / page_size());

    heap.decommit(0, 4 * MIB).unwrap();
    assert_eq!(rss_in(base, heap.len()), 4 * MIB as u64, "decommit frees memory");
    heap.decommit(0, 8 * MIB).unwrap();
    assert_eq!(rss_in(base, heap.len()), 0);
    // Decommitted pages are inaccessible again, and come back zeroed when recommitted.
    let p = heap.as_ptr();
    // SAFETY: the child touches a decommitted (PROT_NONE) page and dies of SIGSEGV.
    assert_eq!(in_child(|| unsafe { p.read_volatile() }), Err(libc::SIGSEGV));
    heap.commit(0, MIB, Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write just above.
    assert_eq!(unsafe { p.read_volatile() }, 0);
}

#[test]
fn alignment_is_honoured() {
    for align in [2 * MIB, GIB] {
        let r = ReserveOptions::new(3 * MIB).align(align).reserve().unwrap();
        assert_eq!(r.as_ptr() as usize % align, 0, "aligned to {align:#x}");
        assert_eq!(r.len(), 3 * MIB);
        // Only the reservation itself stays mapped: head and tail were trimmed.
        let areas = areas_in(r.as_ptr() as usize - page_size(), r.len() + 2 * page_size());
        let total: u64 = areas
            .iter()
            .filter(|a| !a.perms.read)
            .map(|a| a.end.min((r.as_ptr() as usize + r.len()) as u64) - a.start.max(r.as_ptr() as u64))
            .sum();
        assert_eq!(total, r.len() as u64);
    }
    let e = ReserveOptions::new(MIB).align(3 * MIB).reserve().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn low_4gib_placement() {
    let res = ReserveOptions::new(16 * MIB).low_4gib(true).reserve();
    if cfg!(target_arch = "x86_64") {
        let r = res.unwrap();
        assert!(r.as_ptr() as u64 + r.len() as u64 <= 4 << 30, "{:p}", r.as_ptr());
        let a = ReserveOptions::new(4 * MIB).low_4gib(true).align(2 * MIB).reserve().unwrap();
        assert!((a.as_ptr() as u64) < 4 << 30 && a.as_ptr() as usize % (2 * MIB) == 0);
    } else {
        assert_eq!(res.unwrap_err().kind(), ErrorKind::Unsupported);
    }
}

#[test]
fn names_apply_or_report_a_no_op() {
    let mut r = ReserveOptions::new(4 * MIB).name("mmkit-heap").reserve().unwrap();
    let named = r.name_applied();
    r.commit(0, MIB, Protection::READ_WRITE).unwrap();
    r.decommit(0, MIB).unwrap();
    for a in areas_in(r.as_ptr() as usize, r.len()) {
        assert_eq!(a.backing.anon_name(), if named { Some("mmkit-heap") } else { None }, "{a:?}");
    }
    assert_eq!(r.set_name("x").unwrap(), named);
    // A name the kernel would never accept is an error either way, as for a mapping's.
    assert!(r.set_name("no$pe").is_err());
    assert!(ReserveOptions::new(4 * MIB).name("bad[name]").reserve().is_err());
}

#[test]
fn carved_sub_reservations_own_their_range() {
    // Other test threads map memory too, and may be given the address space the parent frees
    // between its drop and our look at /proc/self/maps: such a foreign area only adds to what is
    // covered. Too little covered is a failure at once; too much is retried with a fresh layout.
    for attempt in 1..=5 {
        match carve_and_drop() {
            Ok(()) => return,
            Err(areas) if attempt < 5 => eprintln!("attempt {attempt}: foreign areas in the range? {areas}"),
            Err(areas) => panic!("more than the carved ranges stayed mapped, or they outlived their drop: {areas}"),
        }
    }
}

/// Carves two sub-reservations and drops the parent: `Err` with the areas when more than the
/// carved 8 pages are still mapped in the range (a foreign mapping, or the parent's pages).
fn carve_and_drop() -> Result<(), String> {
    let page = page_size();
    let mut heap = Reservation::new(16 * page).unwrap();
    let base = heap.as_ptr() as usize;
    heap.commit(4 * page, 4 * page, Protection::READ_WRITE).unwrap();
    touch(&heap, 4 * page, 4 * page, 9);
    let sub = heap.carve(4 * page, 4 * page).unwrap();
    assert_eq!(sub.as_ptr() as usize, base + 4 * page);
    assert_eq!(heap.carved(), &[(4 * page, 4 * page)]);
    // The sub-reservation keeps the state: committed and holding the bytes.
    // SAFETY: committed read-write before the carve; `sub` owns it now.
    assert_eq!(unsafe { sub.as_ptr().read() }, 9);
    // The parent refuses the carved range, and overlapping carves.
    assert_eq!(heap.commit(4 * page, page, Protection::READ).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(heap.decommit(0, 8 * page).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert!(heap.carve(7 * page, 2 * page).is_err());
    heap.commit(0, 4 * page, Protection::READ_WRITE).unwrap();
    let tail = heap.carve(12 * page, 4 * page).unwrap();

    // Dropping the parent unmaps only what it still owns.
    drop(heap);
    let areas = areas_in(base, 16 * page);
    let covered: u64 = areas.iter().map(|a| a.end.min((base + 16 * page) as u64) - a.start.max(base as u64)).sum();
    assert!(covered >= 8 * page as u64, "the carved ranges were unmapped too: {areas:?}");
    // SAFETY: still mapped and committed: `sub` owns it.
    assert_eq!(unsafe { sub.as_ptr().add(page).read() }, 9);
    let (sub_start, tail_start) = (sub.as_ptr() as usize, tail.as_ptr() as usize);
    drop(sub);
    drop(tail);
    // The carved ranges are gone on drop. Another thread may be given the freed range at once,
    // so something mapped there is retried (a sub-reservation that never unmaps fails every try).
    let left = [areas_in(sub_start, 4 * page), areas_in(tail_start, 4 * page)];
    if covered > 8 * page as u64 || left.iter().any(|a| !a.is_empty()) {
        return Err(format!("{areas:?}; after dropping the carved ranges: {left:?}"));
    }
    Ok(())
}

#[test]
fn guard_inside_a_reservation_faults() {
    let page = page_size();
    let r = Reservation::new(4 * page).unwrap();
    r.commit(0, 4 * page, Protection::READ_WRITE).unwrap();
    touch(&r, 0, 4 * page, 1);
    r.guard(page, page).unwrap();
    let p = r.as_ptr();
    // SAFETY: a child touches the guard page and dies.
    assert_eq!(in_child(|| unsafe { p.add(page).read_volatile() }), Err(libc::SIGSEGV));
    // SAFETY: its neighbours stay usable.
    assert_eq!(in_child(|| unsafe { p.add(2 * page).read_volatile() }), Ok(1));
    match r.guard(page, page).unwrap() {
        mmkit::anon::GuardKind::Madvise => r.unguard(page, page).unwrap(),
        mmkit::anon::GuardKind::ProtNone => r.commit(page, page, Protection::READ_WRITE).unwrap(),
    }
    // SAFETY: the guard was removed; the page reads back zero.
    assert_eq!(unsafe { p.add(page).read_volatile() }, 0);
}

#[test]
fn files_and_memfds_map_inside() {
    let page = page_size();
    let mut file = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..2 * page).map(|i| (i % 253) as u8).collect();
    file.write_all(&data).unwrap();
    let r = Reservation::new(8 * page).unwrap();
    // SAFETY: the temp file is ours alone and read through raw pointers only.
    unsafe { r.map_file_at(2 * page, page, Protection::READ, Sharing::Private, &file, page as u64) }.unwrap();
    // SAFETY: mapped read-only just above.
    let got = unsafe { std::slice::from_raw_parts(r.as_ptr().add(2 * page), page) }.to_vec();
    assert_eq!(got, &data[page..]);

    let shm = SharedMemory::create("inside", 2 * page as u64).unwrap();
    r.map_shared_memory_at(4 * page, 2 * page, Protection::READ_WRITE, &shm, 0).unwrap();
    let other = shm.map_raw().unwrap();
    // SAFETY: both maps of the memfd are read-write; raw accesses.
    unsafe {
        r.as_mut_ptr().add(5 * page).write(77);
        assert_eq!(other.as_ptr().add(page).read_volatile(), 77);
    }
    let e = r.map_shared_memory_at(6 * page, 2 * page, Protection::READ, &shm, page as u64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfBounds);
    // Decommit replaces the file map with inaccessible anonymous pages.
    r.decommit(2 * page, page).unwrap();
    let a = areas_in(r.as_ptr() as usize + 2 * page, page);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].inode, 0);
}

#[test]
fn a_reservation_made_by_mapping_a_file_is_one_mapping_then_owned_like_any() {
    let page = page_size();
    let mut file = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..3 * page).map(|i| (i % 251) as u8).collect();
    file.write_all(&data).unwrap();
    // SAFETY: the temp file is ours alone and read through raw pointers only.
    let r = unsafe {
        ReserveOptions::new(6 * page).reserve_mapping_file(Protection::READ, Sharing::Private, &file, page as u64)
    }
    .unwrap();
    let start = r.as_ptr() as usize;
    // One file mapping over the whole range, from the file's second page.
    let a = areas_in(start, 6 * page);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].start as usize, a[0].end as usize, a[0].offset), (start, start + 6 * page, page as u64));
    assert!(a[0].inode != 0 && !a[0].perms.write, "{a:?}");
    // SAFETY: mapped read-only, inside the file.
    let got = unsafe { std::slice::from_raw_parts(r.as_ptr(), 2 * page) }.to_vec();
    assert_eq!(got, &data[page..]);
    // The rest is the reservation's: committed, decommitted, mapped over.
    // Past the file's end: zero pages only once committed afresh.
    r.commit_zeroed(3 * page, page, Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write just above.
    assert_eq!(unsafe { r.as_ptr().add(3 * page + 5).read_volatile() }, 0);
    touch(&r, 3 * page, page, 9);
    // Over data too.
    r.commit_zeroed(3 * page, page, Protection::READ).unwrap();
    // SAFETY: committed read-only just above.
    assert_eq!(unsafe { r.as_ptr().add(3 * page).read_volatile() }, 0);
    // Inside the file: committed afresh, the file's bytes are gone.
    r.commit_zeroed(0, page, Protection::READ).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { r.as_ptr().add(1).read_volatile() }, 0);
    r.decommit(4 * page, 2 * page).unwrap();
    let a = areas_in(start, 6 * page);
    assert_eq!(a.len(), 4, "{a:?}");
    assert!(a[0].inode == 0 && a[2].inode == 0 && a[1].inode != 0, "{a:?}");
    assert!(!a[3].perms.read && a[3].inode == 0, "{a:?}");
    // Dropping unmaps all of it. Checked in a forked child, the one thread there: in this
    // multi-threaded harness another test may map the freed range at once (seen in CI).
    let unmapped = in_child(move || {
        drop(r);
        let mut vec = 0u8;
        (0..6).all(|i| {
            // SAFETY: mincore only reports on the range (ENOMEM where nothing is mapped);
            // one page, one byte of output.
            let rc = unsafe { libc::mincore((start + i * page) as *mut libc::c_void, page, &mut vec) };
            rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM)
        }) as u8
    });
    assert_eq!(unmapped, Ok(1), "dropping unmaps all of it");
    // What it cannot do is refused with a reason; nothing is mapped.
    for opts in [ReserveOptions::new(4 * page).align(4 * page).clone(), ReserveOptions::new(4 * page).name("x").clone()]
    {
        // SAFETY: as above.
        let e = unsafe { opts.reserve_mapping_file(Protection::READ, Sharing::Private, &file, 0) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    // SAFETY: as above.
    let e = unsafe { ReserveOptions::new(page).reserve_mapping_file(Protection::READ, Sharing::Private, &file, 1) }
        .unwrap_err();
    assert!(e.to_string().contains("mmap") && e.errno() == Some(libc::EINVAL), "{e}");
    // The same for a map inside a reservation, on every target (32-bit `mmap2` takes the
    // offset in pages and would round it down).
    let r = Reservation::new(2 * page).unwrap();
    // SAFETY: as above.
    let e = unsafe { r.map_file_at(0, page, Protection::READ, Sharing::Private, &file, 512) }.unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
}

/// Minor faults of this thread (other tests fault concurrently).
fn thread_minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
    u.ru_minflt as u64
}

#[test]
fn file_maps_inside_are_populated_as_asked() {
    let page = page_size();
    let n = 32;
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&vec![7u8; n * page]).unwrap();
    // Faults taken by reading, then by writing, every page of a private read-write file map.
    let faults = |populate: Populate| {
        let r = Reservation::new(n * page).unwrap();
        // SAFETY: the temp file is ours alone and accessed through raw pointers only.
        unsafe { r.map_file_at_with(0, n * page, Protection::READ_WRITE, Sharing::Private, &file, 0, populate) }
            .unwrap();
        let f0 = thread_minor_faults();
        for i in 0..n {
            // SAFETY: mapped read-write just above.
            assert_eq!(unsafe { r.as_ptr().add(i * page).read_volatile() }, 7);
        }
        let f1 = thread_minor_faults();
        for i in 0..n {
            // SAFETY: as above; a private map, the file is unchanged.
            unsafe { r.as_mut_ptr().add(i * page).write_volatile(1) };
        }
        (f1 - f0, thread_minor_faults() - f1)
    };
    let (read, write) = faults(Populate::No);
    assert!(read > 0 && write > 0, "demand paging: {read} read and {write} write faults");
    // A fork by another test thread write-protects every private page for copy on write: a
    // write after it faults however the map was populated. Such a race fails one try, not five.
    let settled = |populate: Populate| {
        (0..5).map(|_| faults(populate)).find(|&f| f == (0, 0)).unwrap_or_else(|| faults(populate))
    };
    // MAP_POPULATE on a private writable map copies the pages in the call.
    assert_eq!(settled(Populate::MapPopulate), (0, 0));
    // Populated for reading: reads take no faults, writes still copy on write.
    let (read, write) = faults(Populate::Read);
    assert_eq!(read, 0);
    assert!(write > 0, "no copy-on-write fault after MADV_POPULATE_READ");
    assert_eq!(settled(Populate::Write), (0, 0));
    // Population for writing of a read-only map is an error naming the call.
    let r = Reservation::new(page).unwrap();
    // SAFETY: as above.
    let e = unsafe { r.map_file_at_with(0, page, Protection::READ, Sharing::Private, &file, 0, Populate::Write) }
        .unwrap_err();
    assert!(e.operation().contains("MADV_POPULATE_WRITE"), "{e}");
}

#[test]
fn bad_ranges_are_errors() {
    let page = page_size();
    let r = Reservation::new(4 * page).unwrap();
    assert_eq!(r.commit(0, 5 * page, Protection::READ).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(r.commit(1, page, Protection::READ).unwrap_err().kind(), ErrorKind::Unaligned);
    assert_eq!(r.commit(usize::MAX - page, 2 * page, Protection::READ).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert!(Reservation::new(0).is_err());
    assert!(Reservation::new(usize::MAX).is_err());
}

#[test]
fn a_lent_range_comes_back_decommitted_and_still_reserved() {
    let page = page_size();
    let heap = Reservation::new(8 * page).unwrap();
    let base = heap.as_ptr() as usize;
    let lent = heap.lend(2 * page, 4 * page).unwrap();
    assert_eq!(lent.as_ptr() as usize, base + 2 * page);
    lent.commit(0, 4 * page, Protection::READ_WRITE).unwrap();
    touch(&lent, 0, 4 * page, 7);
    let mut lent = lent;
    assert_eq!(lent.carve(0, page).unwrap_err().kind(), ErrorKind::InvalidArgument);
    drop(lent);
    // Still mapped (reserved, PROT_NONE) in the lender's range: one area covers all 8 pages.
    let areas = areas_in(base, 8 * page);
    let covered: u64 = areas.iter().map(|a| a.end.min((base + 8 * page) as u64) - a.start.max(base as u64)).sum();
    assert_eq!(covered, 8 * page as u64, "the lent range was unmapped: {areas:?}");
    assert!(
        areas.iter().all(|a| !a.perms.read && !a.perms.write && !a.perms.exec),
        "the lent range is not back to PROT_NONE: {areas:?}"
    );
    // The lender uses it again: fresh zero pages.
    heap.commit(2 * page, 4 * page, Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write just above.
    assert_eq!(unsafe { heap.as_ptr().add(3 * page).read() }, 0);
}

/// Regression: `lend` was `unsafe` with the contract "the lender outlives the lent one",
/// which safe code could break behind its caller's back (mmkit-elf: a library loaded in a
/// caller's reservation and then pinned, or kept as another load's dependency, had its pages
/// unmapped by the reservation's drop: SIGSEGV). Now the lender refuses to change a lent
/// range, and its drop leaves the range mapped for the borrower, whose drop unmaps it.
#[test]
fn a_lent_range_outlives_its_lender_and_the_lender_keeps_off_it() {
    let page = page_size();
    let heap = Reservation::new(8 * page).unwrap();
    let base = heap.as_ptr() as usize;
    let lent = heap.lend(2 * page, 2 * page).unwrap();
    lent.commit(0, 2 * page, Protection::READ_WRITE).unwrap();
    touch(&lent, 0, 2 * page, 7);
    for err in [
        heap.decommit(2 * page, page).unwrap_err(),
        heap.commit(page, 2 * page, Protection::READ).unwrap_err(),
        heap.guard(3 * page, page).unwrap_err(),
        heap.lend(3 * page, 4 * page).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("lent out"), "{err}");
    }
    // Beside it: fine.
    heap.commit(4 * page, page, Protection::READ_WRITE).unwrap();
    // A lent reservation goes back whole: it lends nothing on (the first lender would not know
    // the second borrower when the middle one goes).
    assert_eq!(lent.lend(0, page).unwrap_err().kind(), ErrorKind::InvalidArgument);
    // The drops in a forked child: one thread, so no other test maps into the freed range
    // while the areas are read (seen in CI). 0: as expected; else the check that failed.
    let outcome = in_child(move || {
        drop(heap);
        // Only the lent pages are left, still read-write and holding their bytes.
        let areas = areas_in(base, 8 * page);
        let covered: u64 = areas.iter().map(|a| a.end.min((base + 8 * page) as u64) - a.start.max(base as u64)).sum();
        if covered != 2 * page as u64 {
            return 1;
        }
        if !areas.iter().all(|a| a.start >= (base + 2 * page) as u64 && a.end <= (base + 4 * page) as u64) {
            return 2;
        }
        // SAFETY: committed read-write above and still mapped (the lent reservation owns it).
        if unsafe { lent.as_ptr().add(page).read() } != 7 {
            return 3;
        }
        drop(lent);
        // The borrower of a dropped lender unmaps its range.
        if !areas_in(base, 8 * page).is_empty() {
            return 4;
        }
        0
    });
    assert_eq!(
        outcome,
        Ok(0),
        "1-2: the lender's drop left other than the lent pages, 3: their bytes, 4: the borrower's drop left them"
    );
    // Given back while the lender lives, the range is the lender's again.
    let heap = Reservation::new(4 * page).unwrap();
    drop(heap.lend(0, 2 * page).unwrap());
    heap.commit(0, 2 * page, Protection::READ_WRITE).unwrap();
}

#[test]
fn sealed_ranges_refuse_changes() {
    let page = page_size();
    let r = Reservation::new(4 * page).unwrap();
    r.commit(page, page, Protection::READ).unwrap();
    match r.seal(page, page) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            return eprintln!("skipped: the kernel has no mseal(2) (before Linux 6.10): {e}");
        }
        Err(e) => panic!("{e}"),
    }
    let err = r.commit(page, page, Protection::READ_WRITE).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EPERM), "{err}");
    let err = r.decommit(page, page).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EPERM), "{err}");
    // The pages next to it are not sealed.
    r.commit(2 * page, page, Protection::READ_WRITE).unwrap();
    assert!(r.seal(0, 5 * page).is_err(), "outside the reservation");
    // Dropping leaves the sealed page mapped and unmaps the others (one munmap of the whole
    // range fails as a whole: it leaked all four). In a forked child, the one thread there.
    let start = r.as_ptr() as usize;
    let mapped = in_child(move || {
        drop(r);
        let mut vec = 0u8;
        (0..4).fold(0u8, |bits, i| {
            // SAFETY: mincore only reports on the range (ENOMEM where nothing is mapped).
            let rc = unsafe { libc::mincore((start + i * page) as *mut libc::c_void, page, &mut vec) };
            bits | (u8::from(rc == 0) << i)
        })
    });
    assert_eq!(mapped, Ok(0b0010), "only the sealed page stays mapped");
}

/// Bit `i` set when page `i` from `start` is mapped (`mincore` answers `ENOMEM` where nothing
/// is), for `n <= 8` pages. Async-signal-safe: for forked children.
fn mapped_pages(start: usize, n: usize) -> u8 {
    let page = page_size();
    let mut vec = 0u8;
    (0..n).fold(0u8, |bits, i| {
        // SAFETY: mincore only reports on the range.
        let rc = unsafe { libc::mincore((start + i * page) as *mut libc::c_void, page, &mut vec) };
        bits | (u8::from(rc == 0) << i)
    })
}

/// Bit `i` set when the first byte of page `i` from `start` can be read (`process_vm_readv`
/// answers `EFAULT` for a page that is `PROT_NONE` or not mapped), for `n <= 8` pages.
/// Async-signal-safe: for forked children.
fn readable_pages(start: usize, n: usize) -> u8 {
    let page = page_size();
    (0..n).fold(0u8, |bits, i| {
        let mut byte = 0u8;
        let local = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
        let remote = libc::iovec { iov_base: (start + i * page) as *mut libc::c_void, iov_len: 1 };
        // SAFETY: reads one byte of our own address space into a live local; the kernel
        // reports an unreadable source as an error instead of faulting.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        bits | (u8::from(n == 1) << i)
    })
}

/// What a forked child answers when the kernel has no `mseal` (before Linux 6.10).
const NO_MSEAL: u8 = 0xff;

#[test]
fn a_carved_range_holding_a_sealed_page_unmaps_around_it() {
    let page = page_size();
    let mut r = Reservation::new(4 * page).unwrap();
    let start = r.as_ptr() as usize;
    r.commit(page, page, Protection::READ).unwrap();
    // Sealing is for good: in a forked child.
    let got = in_child(move || {
        match r.seal(page, page) {
            Ok(()) => {}
            Err(_) => return NO_MSEAL,
        }
        let sub = r.carve(0, 2 * page).unwrap();
        drop(sub);
        let after_sub = mapped_pages(start, 4);
        drop(r);
        after_sub | mapped_pages(start, 4) << 4
    });
    if got == Ok(NO_MSEAL) {
        return;
    }
    // The sub-reservation unmapped its page 0 and left the sealed page 1 (its munmap of both
    // failed as a whole: it leaked them); the parent then unmapped pages 2 and 3.
    assert_eq!(got, Ok(0b0010_1110), "bits 0-3: after the sub-reservation's drop, 4-7: after the parent's");
}

#[test]
fn a_lent_range_holding_a_sealed_page_comes_back_decommitted_around_it() {
    let page = page_size();
    let r = Reservation::new(4 * page).unwrap();
    let start = r.as_ptr() as usize;
    r.commit(page, page, Protection::READ).unwrap();
    let got = in_child(move || {
        if r.seal(page, page).is_err() {
            return NO_MSEAL;
        }
        let lent = r.lend(0, 2 * page).unwrap();
        lent.commit(0, page, Protection::READ_WRITE).unwrap();
        touch(&lent, 0, page, 7);
        drop(lent);
        let readable = readable_pages(start, 2);
        drop(r);
        readable | mapped_pages(start, 4) << 2
    });
    if got == Ok(NO_MSEAL) {
        return;
    }
    // Page 0 came back reserved (PROT_NONE; its decommit together with the sealed page failed
    // as a whole, leaving it read-write and full), the sealed page 1 stays readable; the
    // lender's drop then leaves only the sealed page mapped.
    assert_eq!(got, Ok(0b00_1010), "bits 0-1: readable after the lent drop, 2-5: mapped after the lender's");
}

#[test]
fn pages_a_borrower_sealed_stay_and_the_lender_unmaps_the_rest() {
    let page = page_size();
    let r = Reservation::new(4 * page).unwrap();
    let start = r.as_ptr() as usize;
    let got = in_child(move || {
        let lent = r.lend(0, 2 * page).unwrap();
        lent.commit(0, 2 * page, Protection::READ).unwrap();
        if lent.seal(page, page).is_err() {
            return NO_MSEAL;
        }
        drop(lent);
        let readable = readable_pages(start, 2);
        drop(r);
        readable | mapped_pages(start, 4) << 2
    });
    if got == Ok(NO_MSEAL) {
        return;
    }
    // The lender never heard of the seal: its one munmap of all four pages failed as a whole
    // and leaked them.
    assert_eq!(got, Ok(0b00_1010), "bits 0-1: readable after the lent drop, 2-5: mapped after the lender's");
}

/// Regression: a name no kernel accepts was refused only by the kernel's answer, so a
/// reservation that owns no range (all of it carved out) took it: `Ok(true)`, "applied", and
/// kept it for the ranges it gets back. It is refused before any range is named.
#[test]
fn a_name_no_kernel_accepts_is_refused_with_nothing_to_name() {
    let mut r = Reservation::new(4 * MIB).unwrap();
    let _all = r.carve(0, 4 * MIB).unwrap();
    let e = r.set_name("bad[name]").unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    assert!(e.to_string().contains("at most 79 printable characters"), "{e}");
}

/// Regression: under a low `RLIMIT_DATA` or `RLIMIT_AS` (in a re-executed child of this test
/// binary, the limits being per process) an anonymous map, a reservation or a commit failed
/// with a bare `mprotect at ADDR [offset 0x0, len 0x2000000] failed: Cannot allocate memory
/// (ENOMEM)`: neither that it was a reservation's commit nor the limit that refused it.
#[test]
fn enomem_under_a_memory_limit_names_the_limit() {
    if !in_limited_child("enomem_under_a_memory_limit_names_the_limit") {
        return;
    }
    let mib = 1usize << 20;
    // Private writable memory past RLIMIT_DATA: the commit of a reservation, an anonymous map.
    let res = Reservation::new(64 * mib).unwrap();
    let old = lower_soft_limit(libc::RLIMIT_DATA, vm_bytes("VmData") + (8 << 20));
    let commit = res.commit(0, 32 * mib, Protection::READ_WRITE);
    let anon = mmkit::MapOptions::new().len(32 * mib).map_anon().map(drop);
    restore_limit(libc::RLIMIT_DATA, &old);
    let err = commit.unwrap_err().to_string();
    assert!(err.contains("Reservation::commit") && err.contains("ENOMEM"), "{err}");
    assert!(err.contains("RLIMIT_DATA (`ulimit -d`"), "{err}");
    let err = anon.unwrap_err().to_string();
    assert!(err.contains("ENOMEM") && err.contains("RLIMIT_DATA (`ulimit -d`"), "{err}");
    // Address space past RLIMIT_AS: a reservation.
    let old = lower_soft_limit(libc::RLIMIT_AS, vm_bytes("VmSize") + (64 << 20));
    let reserve = Reservation::new(1 << 30).map(drop);
    restore_limit(libc::RLIMIT_AS, &old);
    let err = reserve.unwrap_err().to_string();
    assert!(err.contains("ENOMEM") && err.contains("RLIMIT_AS (`ulimit -v`)"), "{err}");
    assert!(!err.contains("RLIMIT_DATA"), "a PROT_NONE reservation is no data: {err}");
    println!("LIMITED OK");
}

/// Regression (review core3): a `MAP_FIXED` that the kernel fails after clearing the old pages
/// (here hugetlbfs, whose mmap hook cannot reserve a huge page from an empty pool) left a hole
/// in the reservation. Another owner's mapping could be placed there, and the reservation's
/// next safe `decommit` (or its drop) then replaced (unmapped) that owner's memory: a safe
/// `MmapMut` read `SIGSEGV`ed. Now the hole is taken back at once, the reservation stays whole.
#[test]
fn a_failed_map_inside_leaves_no_hole_for_another_owner() {
    use rustix::fs::MemfdFlags;
    let Ok(fd) =
        rustix::fs::memfd_create("no-pool", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB)
    else {
        eprintln!("skipped: no hugetlbfs");
        return;
    };
    let shm = SharedMemory::from_fd(fd).unwrap();
    // A file on hugetlbfs reports its huge page size as its block size.
    let huge = rustix::fs::fstat(&shm).unwrap().st_blksize as usize;
    shm.set_len(huge as u64).unwrap();
    let page = page_size();
    // Another test thread's mapping may land in the hole before the reservation takes it back
    // (then that part is given up, rightly, and refused below): tried again, a few times.
    for attempt in 1..=10 {
        let r = ReserveOptions::new(2 * huge).align(huge).reserve().unwrap();
        r.commit(0, 2 * huge, Protection::READ_WRITE).unwrap();
        match r.map_shared_memory_at(0, huge, Protection::READ, &shm, 0) {
            Ok(()) => {
                eprintln!("skipped: the hugetlb pool had a page (the map worked)");
                return;
            }
            Err(e) => eprintln!("the failure: {e}"),
        }
        let at = r.as_ptr() as usize;
        assert!(!areas_in(at, huge).is_empty(), "the failed map left [{at:#x}, +{huge:#x}) unmapped");
        // No other owner can be placed there now, and the reservation's own operations work.
        let other = mmkit::MapOptions::new().len(page).placement(mmkit::Placement::FixedNoReplace(at)).map_anon();
        assert!(other.is_err(), "another owner was placed inside the reservation");
        if let Err(e) = r.commit(0, huge, Protection::READ_WRITE) {
            assert!(e.to_string().contains("given up") && attempt < 10, "{e}");
            continue;
        }
        touch(&r, 0, huge, 3);
        r.decommit(0, 2 * huge).unwrap();
        return;
    }
}

/// `vm.max_map_count` when a test can fill it (not raised past 2^20, as some distributions do);
/// otherwise says the test is skipped, to the parent of [`in_limited_child`].
fn reachable_map_count_limit() -> Option<usize> {
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count").unwrap().trim().parse().unwrap();
    if max > 1 << 20 {
        println!("skipped: vm.max_map_count is {max}\nLIMITED OK");
        return None;
    }
    Some(max)
}

/// Commits every other page of a new reservation (two areas per pair of pages) until the
/// kernel refuses: the process is then at `vm.max_map_count` (`max`) until the reservation,
/// returned with the index of the first refused commit, is dropped.
fn fill_to_map_count_limit(max: usize) -> (Reservation, Option<usize>) {
    let page = page_size();
    let areas = std::fs::read_to_string("/proc/self/maps").unwrap().lines().count();
    let n = (max - areas.min(max)) / 2 + 16;
    let heap = Reservation::new(2 * n * page).unwrap();
    let filled = (0..n).find(|i| heap.commit(2 * i * page, page, Protection::READ).is_err());
    (heap, filled)
}

/// Three anonymous maps of `n` pages each, back to back (the kernel merges them into one area).
fn three_adjacent_maps(n: usize) -> (mmkit::MmapMut, mmkit::MmapMut, mmkit::MmapMut) {
    let page = page_size();
    let probe = mmkit::MapOptions::new().len(3 * n * page).map_anon().unwrap();
    let at = probe.as_ptr() as usize;
    drop(probe);
    let place = |i: usize| {
        let mut o = mmkit::MapOptions::new();
        o.len(n * page).placement(mmkit::Placement::FixedNoReplace(at + i * n * page));
        o.map_anon().unwrap()
    };
    (place(0), place(1), place(2))
}

/// Regression (review B): at `vm.max_map_count` a commit in the middle of an area (which splits
/// it) failed with a bare "Cannot allocate memory (ENOMEM)", although memory and
/// every rlimit were plentiful; the error now names the map count and its limit. Run in a child
/// process of its own (it fills the process's areas).
#[test]
fn enomem_at_the_map_count_limit_names_it() {
    if !in_limited_child("enomem_at_the_map_count_limit_names_it") {
        return;
    }
    let page = page_size();
    let Some(max) = reachable_map_count_limit() else { return };
    let (heap, filled) = fill_to_map_count_limit(max);
    let filled = filled.expect("reached the limit");
    // A reserved page past the last commit, inside one reserved area: committing it splits
    // that area in three.
    let commit = heap.commit(2 * (filled + 2) * page + page, page, Protection::READ).unwrap_err();
    // The same for the calls that map over a range (review G: they said a bare ENOMEM).
    let zeroed = heap.commit_zeroed(2 * (filled + 2) * page + page, page, Protection::READ).unwrap_err();
    let file = tempfile::tempfile().unwrap();
    file.set_len(page as u64).unwrap();
    // SAFETY: nobody refers to the range; the file is this test's alone.
    let file_at =
        unsafe { heap.map_file_at(2 * (filled + 2) * page + page, page, Protection::READ, Sharing::Private, &file, 0) }
            .unwrap_err();
    drop(heap);
    for err in [commit, zeroed, file_at].map(|e| e.to_string()) {
        assert!(err.contains("ENOMEM") && err.contains("vm.max_map_count is"), "{err}");
    }
    println!("LIMITED OK");
}

/// Resident pages of `[addr, addr + len)` (`mincore`; 0 where unmapped).
fn resident_at(addr: usize, len: usize) -> usize {
    let mut vec = vec![0u8; len / page_size()];
    // SAFETY: mincore only reads page tables; an unmapped range is an error (counted as 0).
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// Regression (review B): at `vm.max_map_count` a drop in the middle of a merged area (three
/// adjacent anonymous maps, a carved range inside its parent) cannot unmap it; the failure was
/// ignored and the memory stayed resident for the life of the process. The address space still
/// leaks (the kernel refuses), the memory is now given back. Run in a child process of its own.
#[test]
fn a_drop_at_the_map_count_limit_gives_the_memory_back() {
    if !in_limited_child("a_drop_at_the_map_count_limit_gives_the_memory_back") {
        return;
    }
    let page = page_size();
    let Some(max) = reachable_map_count_limit() else { return };
    let n = 16;
    let (a, mut b, c) = three_adjacent_maps(n);
    b.fill(1);
    // A carved range committed like its parent's pages around it: one area with them.
    let mut parent = Reservation::new(3 * n * page).unwrap();
    parent.commit(0, 3 * n * page, Protection::READ_WRITE).unwrap();
    let carved = parent.carve(n * page, n * page).unwrap();
    // SAFETY: committed read-write above (before the carve); raw writes.
    unsafe { carved.as_mut_ptr().write_bytes(1, n * page) };
    let (b_at, c_at) = (b.as_ptr() as usize, carved.as_ptr() as usize);
    assert_eq!((resident_at(b_at, n * page), resident_at(c_at, n * page)), (n, n));
    // Fill the areas up to the limit.
    let (heap, _) = fill_to_map_count_limit(max);
    drop(b);
    drop(carved);
    let (b_left, c_left) = (resident_at(b_at, n * page), resident_at(c_at, n * page));
    drop(heap);
    drop((a, c, parent));
    assert_eq!((b_left, c_left), (0, 0), "memory left resident after the drops (map, carved range)");
    println!("LIMITED OK");
}

/// Regression (review G): pages a lent reservation sealed stay mapped in its lender when it is
/// given back, unrecorded there; at `vm.max_map_count` (6.18 here, whose `munmap` checks the
/// map count before the seal) the lender's drop met `ENOMEM` inside the sealed area and
/// dropped the sealed pages with `MADV_DONTNEED`, which the kernel allows on writable ones:
/// sealed memory lost its contents. Run in a child process of its own.
#[test]
fn a_drop_at_the_map_count_limit_keeps_pages_a_borrower_sealed() {
    if !in_limited_child("a_drop_at_the_map_count_limit_keeps_pages_a_borrower_sealed") {
        return;
    }
    let page = page_size();
    let Some(max) = reachable_map_count_limit() else { return };
    // Lent at offset 0: the lender's drop then frees no area of its own (which would bring the
    // process below the limit) before it meets the sealed pages.
    let lender = Reservation::new(16 * page).unwrap();
    let lent = lender.lend(0, 4 * page).unwrap();
    lent.commit(0, 4 * page, Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write above; raw writes.
    unsafe { lent.as_mut_ptr().write_bytes(7, 4 * page) };
    match lent.seal(0, 4 * page) {
        Err(e) if e.kind() == mmkit::ErrorKind::Unsupported => {
            println!("skipped: {e}\nLIMITED OK");
            return;
        }
        r => r.unwrap(),
    }
    let sealed = lent.as_ptr() as usize;
    drop(lent);
    let (heap, _) = fill_to_map_count_limit(max);
    drop(lender);
    // SAFETY: sealed pages, which no drop can unmap; read-write, read here only.
    let bytes: Vec<u8> = (0..4).map(|i| unsafe { *((sealed + i * page + 1) as *const u8) }).collect();
    drop(heap);
    assert_eq!(bytes, [7; 4], "sealed pages lost their contents in the lender's drop");
    println!("LIMITED OK");
}

/// Regression (review G): the drop's `MADV_DONTNEED` fallback at `vm.max_map_count` is refused
/// (`EINVAL`) on a locked area (`lock`, or every area under `mlockall(MCL_FUTURE)`, where they
/// all merge), so a locked map dropped there stayed resident and locked. Run in a child process
/// of its own.
#[test]
fn a_locked_drop_at_the_map_count_limit_gives_the_memory_back() {
    if !in_limited_child("a_locked_drop_at_the_map_count_limit_gives_the_memory_back") {
        return;
    }
    let page = page_size();
    let Some(max) = reachable_map_count_limit() else { return };
    let n = 16;
    let (a, mut b, c) = three_adjacent_maps(n);
    b.fill(1);
    // Locked alike, the three merge into one area.
    if let Err(e) = [&a, &b, &c].iter().try_for_each(|m| m.lock(..)) {
        println!("skipped: {e}\nLIMITED OK");
        return;
    }
    let b_at = b.as_ptr() as usize;
    assert_eq!(resident_at(b_at, n * page), n);
    let (heap, _) = fill_to_map_count_limit(max);
    drop(b);
    let left = resident_at(b_at, n * page);
    drop(heap);
    drop((a, c));
    assert_eq!(left, 0, "a locked map's memory left resident after its drop");
    println!("LIMITED OK");
}

/// Regression (review G): a lent range whose give-back fails at `vm.max_map_count` (the
/// lender's area cannot be split) went back to the lender as reserved while it still held the
/// borrower's committed pages: the lender's next `commit` showed the borrower's bytes instead
/// of the zero pages `commit` promises. The lender now refuses the range until it is dropped,
/// and its drop unmaps it. Run in a child process of its own.
#[test]
fn a_lent_range_not_decommitted_at_the_map_count_limit_is_refused_by_the_lender() {
    if !in_limited_child("a_lent_range_not_decommitted_at_the_map_count_limit_is_refused_by_the_lender") {
        return;
    }
    let page = page_size();
    let Some(max) = reachable_map_count_limit() else { return };
    let lender = Reservation::new(16 * page).unwrap();
    // Committed as a whole, then lent from the middle as it is (committed): decommitting it
    // back cuts the middle out of one area, which the kernel refuses at the limit.
    lender.commit(0, 16 * page, Protection::READ_WRITE).unwrap();
    let lent = lender.lend(4 * page, 4 * page).unwrap();
    // SAFETY: committed read-write (lent as it is); raw writes.
    unsafe { lent.as_mut_ptr().add(page).write_bytes(7, 2 * page) };
    let (heap, _) = fill_to_map_count_limit(max);
    drop(lent);
    drop(heap);
    // Below the limit again: a commit would succeed, and (before the fix) show the 7s.
    match lender.commit(4 * page, 4 * page, Protection::READ_WRITE) {
        Err(e) => assert!(e.to_string().contains("could not decommit"), "{e}"),
        Ok(()) => {
            // SAFETY: committed read-write just now; a raw read.
            let byte = unsafe { *lender.as_ptr().add(5 * page) };
            panic!("the lender committed the range back and reads {byte} at a page the borrower wrote 7 to");
        }
    }
    let lent_at = lender.as_ptr() as usize + 4 * page;
    drop(lender);
    let mut vec = [0u8; 4];
    // SAFETY: mincore only reads page tables: an unmapped range answers ENOMEM.
    let rc = unsafe { libc::mincore(lent_at as *mut libc::c_void, 4 * page, vec.as_mut_ptr()) };
    assert_eq!(rc, -1, "the range is still mapped after its lender's drop");
    println!("LIMITED OK");
}
