//! hugetlb pages against the kernel: the success path, which needs a pool of reserved huge
//! pages. This machine's pool is empty and tests do not change sysctls on the host, so these
//! tests are `#[ignore]`d here and run by `vmtest/run`, whose VM reserves a pool
//! (`vm.nr_hugepages`) before running every test binary with `--include-ignored`. The fallback
//! path (empty pool) is tested on the host in `anon.rs` and `mapping_ops.rs`.

#[path = "support/fork.rs"]
mod fork;
#[path = "support/hugetlb.rs"]
mod hugetlb_support;

use fork::in_child;
use hugetlb_support::hugetlb_memfd;
use mmkit::{page_size, Advice, ErrorKind, HugePages, MapOptions, Protection};

/// A counter of `/proc/meminfo` (`HugePages_Free`, `Hugepagesize` in KiB, ...).
fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"))
}

/// The default huge page size in bytes, and the free pages of the pool, which must hold at
/// least `need` pages for the test to mean anything.
fn pool(need: u64) -> (usize, u64) {
    let size = meminfo("Hugepagesize") as usize * 1024;
    let free = meminfo("HugePages_Free");
    assert!(
        free >= need,
        "the hugetlb pool has {free} free pages, the test needs {need}: reserve some (vm.nr_hugepages)"
    );
    (size, free)
}

/// The smaps entry of the area starting at `start`.
fn smaps_at(start: usize) -> mmkit::inspect::SmapsEntry {
    mmkit::inspect::smaps(std::process::id())
        .unwrap()
        .into_iter()
        .find(|a| a.area.start == start as u64)
        .unwrap_or_else(|| panic!("no smaps area at {start:#x}"))
}

#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn huge_pages_back_the_mapping_and_return_to_the_pool() {
    let (huge, free) = pool(2);
    // 1.5 huge pages asked for: the kernel maps two, the mapping still reports what was asked.
    let len = huge + huge / 2;
    let mut map = MapOptions::new().len(len).huge_pages(HugePages::Hugetlb(None)).map_anon().unwrap();
    let out = map.page_outcome().clone();
    assert_eq!(out.fallback, None, "{out:?}");
    assert_eq!(out.page_size, huge);
    assert_eq!(map.len(), len);
    let (start, kernel_len) = map.mapping().kernel_region();
    assert_eq!((start % huge, kernel_len), (0, 2 * huge));
    // Reserved at mmap, allocated at first touch.
    assert_eq!(map.residency(..).unwrap().resident_pages(), 0);
    map[0] = 1;
    map[len - 1] = 2;
    assert_eq!(meminfo("HugePages_Free"), free - 2);
    let area = smaps_at(start);
    // The pathname column names an unlinked hugetlbfs file; mmkit still calls it anonymous.
    assert_eq!(area.area.backing.display(), "/anon_hugepage (deleted)", "{area:?}");
    assert_eq!(area.area.kind(), mmkit::inspect::MapKind::Anonymous);
    assert_eq!(area.stats.kernel_page_size, huge as u64 / 1024, "{area:?}");
    assert_eq!(area.stats.private_hugetlb, 2 * huge as u64 / 1024, "{area:?}");
    assert_eq!(area.stats.anonymous, 0, "hugetlb pages are not counted as anonymous base pages");
    let r = map.residency(..).unwrap();
    assert_eq!(r.resident_pages(), r.pages(), "every base page of both huge pages is resident");
    assert_eq!((map[0], map[len - 1]), (1, 2));
    drop(map);
    assert_eq!(meminfo("HugePages_Free"), free, "unmapping returned both pages to the pool");
}

#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn shared_huge_pages_are_visible_across_fork() {
    let (huge, _) = pool(1);
    let mut map = MapOptions::new().len(huge).huge_pages(HugePages::Hugetlb(None)).map_anon_shared().unwrap();
    assert_eq!(map.page_outcome().page_size, huge);
    map[huge - 1] = 5;
    let p = map.as_mut_ptr();
    // SAFETY: the shared huge page is inherited by the child; plain byte accesses.
    let seen = in_child(|| unsafe {
        let seen = p.add(huge - 1).read();
        p.write(9);
        seen
    });
    assert_eq!(seen, Ok(5), "the child sees the parent's write");
    assert_eq!(map[0], 9, "the child's write reaches the parent through the shared huge page");
    let area = smaps_at(map.mapping().kernel_region().0);
    assert_eq!(area.stats.shared_hugetlb + area.stats.private_hugetlb, huge as u64 / 1024, "{area:?}");
}

#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn an_exhausted_pool_falls_back_to_base_pages_with_the_reason() {
    let (huge, free) = pool(1);
    let len = (free as usize + 1) * huge;
    let mut map = MapOptions::new().len(len).huge_pages(HugePages::Hugetlb(None)).map_anon().unwrap();
    let out = map.page_outcome().clone();
    assert_eq!(out.page_size, page_size(), "{out:?}");
    let why = out.fallback.expect("a fallback reason");
    assert!(why.contains("ENOMEM") && why.contains(&format!("pool: {free} free")), "{why}");
    map[len - 1] = 1;
    assert_eq!(meminfo("HugePages_Free"), free, "the fallback took nothing from the pool");
}

#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn operations_on_part_of_a_huge_page_are_refused_naming_the_range() {
    let (huge, _) = pool(1);
    let mut map = MapOptions::new().len(huge).huge_pages(HugePages::Hugetlb(None)).map_anon().unwrap();
    assert_eq!(map.page_outcome().page_size, huge);
    map[0] = 1;
    // The kernel works in whole huge pages (and would quietly skip a partial one for
    // MADV_DONTNEED): a base-page range is refused before the call, naming range and page size.
    // SAFETY: no reference into the map is alive across the (refused) advice.
    let err = unsafe { map.mapping().advise_unchecked(0..page_size(), mmkit::UncheckedAdvice::DontNeed) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
    assert_eq!(err.range(), Some((0, page_size() as u64)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("MADV_DONTNEED") && msg.contains(&format!("{huge:#x}")), "{msg}");
    assert_eq!(map[0], 1, "the refused advice changed nothing");
    // SAFETY: no reference into the map is alive across the (refused) protection change.
    let err = unsafe { map.mapping_mut().protect(0..page_size(), Protection::READ) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
    // Harmless advice widens to whole huge pages, as it widens to whole base pages elsewhere.
    map.advise(0..page_size(), Advice::WillNeed).unwrap();
    // Whole huge pages pass the range check; dropping private huge pages is refused (see
    // `dropping_private_huge_pages_is_refused_because_the_reservation_is_not_restored`).
    assert_eq!(map.purge(..).unwrap_err().kind(), ErrorKind::Unsupported);
    assert_eq!(map[0], 1, "the refused purge changed nothing");
    // Huge mappings cannot move or grow with mremap here.
    let err = map.remap_anon(2 * huge, mmkit::RemapOptions::new().may_move(true)).unwrap_err();
    assert!(err.to_string().contains("hugetlb"), "{err}");
}

/// Regression (outside review, in a VM on Linux 6.1): `MADV_DONTNEED` frees a faulted private
/// huge page without giving the mapping its pool reservation back, so another mapping could take
/// the pool's page and the next touch through a safe slice raised `SIGBUS` (`discard`, or `purge`,
/// then a second hugetlb map, then `mem[0]`). Both refuse private hugetlb memory now. The kernel
/// fact is shown on a raw map, where it is an error instead of a signal.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn dropping_private_huge_pages_is_refused_because_the_reservation_is_not_restored() {
    let (huge, _) = pool(1);
    let mut mem = MapOptions::new().len(huge).huge_pages(HugePages::Hugetlb(None)).map_anon().unwrap();
    assert_eq!(mem.page_outcome().fallback, None);
    mem[0] = 3;
    for err in [mem.discard(..).unwrap_err(), mem.purge(..).unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("reservation"), "{err}");
    }
    assert_eq!(mem[0], 3, "the refused drops changed nothing");
    drop(mem);
    let raw = MapOptions::new().len(huge).huge_pages(HugePages::Hugetlb(None)).map_anon_raw().unwrap();
    assert_eq!(raw.page_outcome().fallback, None);
    // SAFETY: the page is mapped read-write and reserved; a raw write.
    unsafe { raw.as_mut_ptr().write(1) };
    // SAFETY: nothing refers to the raw map's bytes.
    unsafe { raw.mapping().advise_unchecked(.., mmkit::UncheckedAdvice::DontNeed) }.unwrap();
    let free = (meminfo("HugePages_Free") - meminfo("HugePages_Rsvd")) as usize;
    let hog = (free > 0).then(|| MapOptions::new().len(free * huge).huge_pages(HugePages::Hugetlb(None)).map_anon());
    if let Some(hog) = &hog {
        assert_eq!(hog.as_ref().unwrap().page_outcome().fallback, None, "the hog must hold the pool");
    }
    let mut b = [0u8];
    // What the kernel does is its version's (the refusal above is mmkit's, on every kernel):
    // Linux 6.1 loses the reservation (the touch fails once the hog holds the pool); 6.12 on
    // arm64 gave the page back although a hog held the pool's free pages.
    match raw.copy_from_mapping(0, &mut b) {
        Ok(()) => println!("this kernel gave the dropped private huge page back (hog: {})", hog.is_some()),
        Err(err) => assert_eq!((err.kind(), err.errno()), (ErrorKind::Os, Some(libc::EFAULT)), "{err}"),
    }
    drop(hog);
}

/// A file on hugetlbfs (here an `MFD_HUGETLB` memfd) mapped with a length shorter than a huge
/// page: the kernel maps the whole huge page, and the mapping records that length, so dropping
/// it unmaps it (an unmap of the short length fails with `EINVAL`: the mapping leaked).
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_hugetlbfs_file_mapped_short_is_unmapped_on_drop() {
    use std::os::fd::FromRawFd;
    let (huge, _) = pool(1);
    // SAFETY: a NUL-terminated name; the descriptor returned is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"mmkit-hugetlbfs".as_ptr(), libc::MFD_HUGETLB | libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create(MFD_HUGETLB): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(huge as u64).unwrap();
    // SAFETY: the memfd is ours alone; nothing truncates it while mapped.
    let mut map = unsafe { MapOptions::new().len(page_size()).map_mut(&file) }.unwrap();
    assert_eq!(map.len(), page_size());
    assert_eq!(map.page_outcome().page_size, huge);
    let (start, len) = map.mapping().kernel_region();
    assert_eq!(len, huge, "the kernel maps the whole huge page");
    map[0] = 7;
    // A range operation counts in huge pages.
    assert!(map.advise(.., Advice::WillNeed).is_ok());
    // Dropped in a forked child, the one thread there: nothing maps the range meanwhile.
    let unmapped = in_child(move || {
        drop(map);
        let mut vec = [0u8; 1];
        // SAFETY: mincore only reports on the range (ENOMEM where nothing is mapped).
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, page_size(), vec.as_mut_ptr()) };
        u8::from(rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM))
    });
    assert_eq!(unmapped, Ok(1), "dropping unmaps the whole huge page");
    let _ = len;
}

/// Why `SharedMemory::view` refuses a memfd on hugetlbfs (`soundness_shm.rs` checks the
/// refusal): a hole punched by any holder of the memfd frees the huge page and gives its pool
/// reservation back, so a map made (and reserved) before it cannot touch the page again once
/// the pool is empty. A plain access there raises `SIGBUS`; `copy_from_mapping` reports it.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_hole_punched_in_a_hugetlb_memfd_takes_its_reservation_away() {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    let (huge, _) = pool(1);
    let flags = libc::MFD_HUGETLB | libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC;
    // SAFETY: a NUL-terminated name; the descriptor returned is owned by the OwnedFd below.
    let fd = unsafe { libc::memfd_create(c"peer-hugetlb".as_ptr(), flags) };
    assert!(fd >= 0, "memfd_create(MFD_HUGETLB): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let shm = mmkit::SharedMemory::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    shm.set_len(huge as u64).unwrap();
    shm.add_seals(mmkit::shm::Seals::SHRINK).unwrap();
    let raw = shm.map_raw().unwrap(); // reserves the huge page
                                      // SAFETY: the page is mapped read-write and reserved; a raw write.
    unsafe { raw.as_mut_ptr().write(7) };
    let mut b = [0u8];
    raw.copy_from_mapping(0, &mut b).unwrap();
    assert_eq!(b[0], 7);
    // The peer punches a hole (SHRINK does not forbid it; only WRITE would).
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate on a descriptor we own; it changes the file, not our memory layout.
    assert_eq!(unsafe { libc::fallocate(shm.as_fd().as_raw_fd(), mode, 0, huge as libc::off_t) }, 0);
    // ...and someone takes every free huge page nobody has reserved (a reservation is enough).
    let free = (meminfo("HugePages_Free") - meminfo("HugePages_Rsvd")) as usize;
    let hog = (free > 0).then(|| MapOptions::new().len(free * huge).huge_pages(HugePages::Hugetlb(None)).map_anon());
    if let Some(hog) = &hog {
        let hog = hog.as_ref().unwrap();
        assert_eq!(hog.page_outcome().fallback, None, "the hog must hold the pool");
    }
    let err = raw.copy_from_mapping(0, &mut b).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Truncated, "the page is gone for good: {err}");
    let p = raw.as_ptr();
    // SAFETY: a raw read the child dies of (SIGBUS), as a SharedView's atomic read would.
    let seen = in_child(|| unsafe { p.read_volatile() });
    assert_eq!(seen, Err(libc::SIGBUS));
    drop(hog);
}

/// The read-only windows `inspect` maps over a file (`touch_files`, `residency`, `lock`) on
/// hugetlbfs: the kernel maps whole huge pages whatever length a window asks for, so a window
/// shorter than a huge page (a touch chunk of one base page here; the default 32 MiB chunk
/// with 1 GiB huge pages) must unmap the whole huge page on drop, or the unmap fails (`EINVAL`)
/// and the mapping leaks.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_touch_window_on_hugetlbfs_is_unmapped_whole() {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (huge, _) = pool(1);
    // SAFETY: a NUL-terminated name; the descriptor returned is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"mmkit-touch-huge".as_ptr(), libc::MFD_HUGETLB | libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create(MFD_HUGETLB): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(huge as u64).unwrap();
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let memfd_areas = || {
        mmkit::inspect::maps(std::process::id())
            .unwrap()
            .into_iter()
            .filter(|e| e.backing.path().is_some_and(|p| p.to_string_lossy().contains("mmkit-touch-huge")))
            .count()
    };
    assert_eq!(memfd_areas(), 0);
    let opts = mmkit::inspect::TouchOptions { threads: 1, chunk: page_size() as u64 };
    // The chunks after the first start inside a huge page, which hugetlbfs cannot map (an
    // error); the first maps and populates a whole huge page.
    let _ = mmkit::inspect::touch_files(&[&path], &opts, &|_| ());
    assert_eq!(memfd_areas(), 0, "a window over the hugetlbfs file is still mapped: it leaked");
}

/// An `MFD_HUGETLB` memfd, as `tests/soundness.rs` makes one: owned, `len` bytes long.
/// `Reservation::map_shared_memory_at` (safe) of one base page of a hugetlb memfd: the kernel
/// would map the whole huge page with `MAP_FIXED`, replacing the rest of it, here a range a
/// carved sub-reservation owns (in general whatever follows a short reservation). Refused.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_hugetlb_memfd_mapped_into_a_reservation_never_replaces_a_neighbour() {
    let (huge, _) = pool(1);
    let page = page_size();
    let shm = hugetlb_memfd(c"peer-hugetlb", huge);
    let mut r = mmkit::reserve::ReserveOptions::new(huge).align(huge).reserve().unwrap();
    let neighbour = r.carve(page, huge - page).unwrap();
    neighbour.commit(0, page, Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write above, owned by `neighbour`; raw access only.
    unsafe { neighbour.as_mut_ptr().write_volatile(42) };
    let err = r.map_shared_memory_at(0, page, Protection::READ_WRITE, &shm, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
    // SAFETY: as above: the neighbour's page is still its own committed page.
    assert_eq!(unsafe { neighbour.as_ptr().read_volatile() }, 42, "the neighbour's page was replaced");
    // At an address no huge page starts at, mmkit skips its hugetlbfs probe and the kernel
    // refuses the mapping before it replaces anything: the same error, and the pages around
    // are untouched.
    let off = mmkit::reserve::ReserveOptions::new(2 * huge).align(huge).reserve().unwrap();
    off.commit(0, huge, Protection::READ_WRITE).unwrap();
    // SAFETY: committed read-write above, owned by `off`; raw access only.
    unsafe { off.as_mut_ptr().add(2 * page).write_volatile(7) };
    let err = off.map_shared_memory_at(page, page, Protection::READ_WRITE, &shm, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
    assert!(err.to_string().contains("hugetlbfs"), "{err}");
    // SAFETY: as above.
    let beside = unsafe { off.as_ptr().add(2 * page).read_volatile() };
    assert_eq!(beside, 7, "a page beside the refused range was replaced");
    // Whole huge pages inside the range are fine.
    let whole = mmkit::reserve::ReserveOptions::new(huge).align(huge).reserve().unwrap();
    whole.map_shared_memory_at(0, huge, Protection::READ_WRITE, &shm, 0).unwrap();
}

/// `ReserveOptions::reserve_mapping_file` of a hugetlbfs file shorter than a huge page: the
/// kernel maps the whole huge page, which the reservation must own and unmap on drop.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_reservation_mapping_a_hugetlbfs_file_owns_the_whole_huge_page() {
    let (huge, _) = pool(1);
    let shm = hugetlb_memfd(c"mmkit-reserve-huge", huge);
    // SAFETY: the memfd is ours alone; nothing truncates it while mapped.
    let r = unsafe {
        mmkit::reserve::ReserveOptions::new(page_size()).reserve_mapping_file(
            Protection::READ,
            mmkit::Sharing::Shared,
            &shm,
            0,
        )
    }
    .unwrap();
    assert_eq!(r.len(), huge, "the reservation owns what the kernel mapped");
    let start = r.as_ptr() as usize;
    // Dropped in a forked child, the one thread there: nothing maps the range meanwhile.
    let unmapped = in_child(move || {
        drop(r);
        let mut vec = [0u8; 1];
        // SAFETY: mincore only reports on the range (ENOMEM where nothing is mapped).
        let rc = unsafe { libc::mincore(start as *mut libc::c_void, page_size(), vec.as_mut_ptr()) };
        u8::from(rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM))
    });
    assert_eq!(unmapped, Ok(1), "dropping unmaps the whole huge page");
}

/// A reservation holding a mapping of a hugetlbfs file (whole huge pages) cannot carve (or
/// lend) a range that cuts it: the kernel unmaps such a mapping only whole, so the parent's and
/// the sub-reservation's drops would each fail to unmap their part and the mapping would leak.
/// Ranges around it, or all of it, carve as before.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_carve_never_cuts_a_hugetlbfs_mapping() {
    let (huge, _) = pool(1);
    let page = page_size();
    let shm = hugetlb_memfd(c"mmkit-carve-huge", huge);
    let named = || {
        mmkit::inspect::maps(std::process::id())
            .unwrap()
            .into_iter()
            .filter(|e| e.backing.path().is_some_and(|p| p.to_string_lossy().contains("mmkit-carve-huge")))
            .count()
    };
    let mut r = mmkit::reserve::ReserveOptions::new(3 * huge).align(huge).reserve().unwrap();
    r.map_shared_memory_at(huge, huge, Protection::READ_WRITE, &shm, 0).unwrap();
    assert_eq!(named(), 1);
    let cut = r.carve(huge + page, page);
    let cut_kind = cut.as_ref().map(|_| ()).map_err(|e| e.kind());
    let around = r.carve(0, huge).unwrap();
    let whole = r.carve(huge, huge).unwrap();
    drop((cut, around, r));
    assert_eq!(named(), 1, "the huge page is owned by `whole` now");
    drop(whole);
    assert_eq!(named(), 0, "a mapping of the hugetlbfs file leaked");
    assert_eq!(cut_kind, Err(ErrorKind::Unaligned));
}

/// `purge` of shared huge pages would be `MADV_REMOVE`, a hole punched in the hugetlbfs file
/// behind the map: the page is freed with its pool reservation, so once someone else takes the
/// pool's free pages, touching it raises `SIGBUS` (shown on a raw map). An `MmapMut` hands out
/// slices, so its `purge` refuses; `discard` keeps the page and its bytes.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn purging_shared_huge_pages_is_refused_because_it_gives_the_reservation_back() {
    let (huge, _) = pool(1);
    let mut mem = MapOptions::new().len(huge).huge_pages(HugePages::Hugetlb(None)).map_anon_shared().unwrap();
    assert_eq!(mem.page_outcome().fallback, None);
    mem[0] = 3;
    let err = mem.purge(..).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(mem[0], 3, "the refused purge changed nothing");
    mem.discard(..).unwrap();
    assert_eq!(mem[0], 3, "discard of a shared page keeps its bytes");
    drop(mem);
    // The kernel fact, on a raw map (no references).
    let raw = MapOptions::new()
        .len(huge)
        .huge_pages(HugePages::Hugetlb(None))
        .sharing(mmkit::Sharing::Shared)
        .map_anon_raw()
        .unwrap();
    // SAFETY: the page is mapped read-write and reserved; a raw write.
    unsafe { raw.as_mut_ptr().write(1) };
    // SAFETY: nothing refers to the raw map's bytes.
    unsafe { raw.mapping().advise_unchecked(.., mmkit::UncheckedAdvice::Remove) }.unwrap();
    let free = (meminfo("HugePages_Free") - meminfo("HugePages_Rsvd")) as usize;
    let hog = (free > 0).then(|| MapOptions::new().len(free * huge).huge_pages(HugePages::Hugetlb(None)).map_anon());
    if let Some(hog) = &hog {
        assert_eq!(hog.as_ref().unwrap().page_outcome().fallback, None, "the hog must hold the pool");
    }
    let mut b = [0u8];
    let err = raw.copy_from_mapping(0, &mut b).unwrap_err();
    // No file to be truncated: the kernel's EFAULT, said as what it is.
    assert_eq!(
        (err.kind(), err.errno()),
        (ErrorKind::Os, Some(libc::EFAULT)),
        "the removed page has no reservation left: {err}"
    );
    assert!(err.to_string().contains("could not supply the page"), "{err}");
    drop(hog);
}

/// Regression (an outside review with a pool): a hugetlbfs file mapped with `Transparent` (or
/// after a fallback) was "resized" to a length the kernel does not shrink a hugetlb mapping to;
/// the drop's unmap of that length then failed and leaked the mapping and its pool pages. And
/// `Hugetlb(Some(other size))` on such a file mapped (and grew the file, past `F_SEAL_GROW`) in
/// pages of the size asked for, reporting them as the mapping's page size.
#[test]
#[ignore = "needs a hugetlb pool: vmtest/run reserves one in its VM"]
fn a_hugetlbfs_file_is_never_resized_nor_mapped_in_other_pages() {
    let (huge, free) = pool(2);
    let shm = hugetlb_memfd(c"resize-me", 2 * huge);
    shm.add_seals(mmkit::shm::Seals::GROW).unwrap();
    let mut raw = MapOptions::new().huge_pages(HugePages::Transparent).map_raw(&shm).unwrap();
    let start = raw.as_ptr() as u64;
    // SAFETY: the memfd is not truncated (and the resize is refused anyway).
    let err = unsafe { raw.remap(huge + page_size(), mmkit::RemapOptions::new()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    drop(raw);
    let left = mmkit::inspect::maps(std::process::id()).unwrap().into_iter().filter(|a| a.start == start).count();
    assert_eq!(left, 0, "the mapping leaked");
    assert_eq!(meminfo("HugePages_Free"), free, "its pool pages came back");
    // Another page size than the file's: refused, and the file keeps its size.
    let other = if huge == 2 << 20 { 1 << 30 } else { 2 << 20 };
    let err = MapOptions::new().huge_pages(HugePages::Hugetlb(Some(other))).map_raw(&shm).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("on hugetlbfs with"), "{err}");
    assert_eq!(shm.len().unwrap(), 2 * huge as u64);
    // Its own size, or none: mapped in its pages.
    let map = MapOptions::new().huge_pages(HugePages::Hugetlb(Some(huge))).map_raw(&shm).unwrap();
    assert_eq!((map.page_outcome().page_size, map.page_outcome().fallback.as_deref()), (huge, None));
    // Guard pages cannot be cut into a hugetlb mapping: refused, saying so.
    let err = MapOptions::new().len(huge).huge_pages(HugePages::Hugetlb(None)).map_anon_guarded(page_size());
    let err = err.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("guard pages"), "{err}");
}
