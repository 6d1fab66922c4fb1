//! Soundness, one module per safe face: each test tries a route by which safe code could reach
//! a dead, unwritable, aliased or out-of-bounds byte, and asserts the route is closed. The
//! kernel is the oracle (`/proc/self/maps`, `mincore`, forks); routes the type system closes
//! are compile-fail tests in `tests/ui/` (run by `soundness_compile_fail.rs`), and the fork
//! probe has its own single-threaded binary (`soundness_fork.rs`).
//!
//! Shared by every module: no object longer than `isize::MAX` bytes is ever created; such a
//! request is an `OutOfBounds` error that never reaches the kernel (no errno).

#[path = "support/fork.rs"]
mod fork;
#[path = "support/hugetlb.rs"]
mod hugetlb_support;

use mmkit::inspect::MapsEntry;
use mmkit::{page_size, Error, ErrorKind, MapOptions, Protection};

const MIB: usize = 1 << 20;

/// The `/proc/self/maps` area holding `addr`.
fn area_of(addr: usize) -> Option<MapsEntry> {
    let a = addr as u64;
    mmkit::inspect::maps(std::process::id()).unwrap().into_iter().find(|e| e.start <= a && a < e.end)
}

/// An error for a length longer than `isize::MAX`: refused by mmkit, not by the kernel.
fn assert_too_long(e: &Error) {
    assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{e}");
    assert_eq!(e.errno(), None, "reached the kernel: {e}");
    assert!(e.to_string().contains("isize::MAX"), "{e}");
}

/// Lengths just above `isize::MAX` (and the ones whose page rounding goes above it).
fn too_long() -> [usize; 4] {
    let max = isize::MAX as usize;
    [max, max + 1, max - 5, usize::MAX]
}

mod mmap {
    use super::*;
    use std::io::Write;

    fn file(pages: usize) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![5u8; pages * page_size()]).unwrap();
        f
    }

    /// `map_if_safe` of something that is neither a memfd nor a regular file (a device, a
    /// pipe) is refused before the fs-verity probe: that ioctl number must not reach an
    /// arbitrary driver, one of which could answer 0 and pass for verity.
    #[test]
    fn map_if_safe_refuses_what_is_not_a_regular_file_before_probing_it() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        for fd in [std::os::fd::AsFd::as_fd(&zero), std::os::fd::AsFd::as_fd(&r)] {
            let e = MapOptions::new().len(page_size()).map_if_safe(&fd).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotSafe, "{e}");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }

    /// An `Mmap` only exists over readable memory.
    #[test]
    fn an_unreadable_protection_is_refused() {
        let f = file(1);
        for prot in [Protection::NONE, Protection::WRITE, Protection::EXEC] {
            // SAFETY: the temporary file is ours alone.
            let e = unsafe { MapOptions::new().protection(prot).map(&f) }.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{prot:?}: {e}");
        }
        // SAFETY: as above.
        let m = unsafe { MapOptions::new().protection(Protection::READ | Protection::EXEC).map(&f) }.unwrap();
        assert!(area_of(m.as_ptr() as usize).unwrap().perms.read);
        assert_eq!(m[0], 5);
    }

    /// `make_mut` on a file opened read-only fails (EACCES) instead of handing out a writable
    /// face over pages the kernel keeps read-only.
    #[test]
    fn make_mut_of_a_read_only_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, vec![1u8; page_size()]).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: the file is ours alone.
        let m = unsafe { mmkit::Mmap::map(&f) }.unwrap();
        let e = m.make_mut().unwrap_err();
        assert_eq!(e.errno(), Some(libc::EACCES), "{e}");
    }

    /// A safe `Mmap` of a write-sealed memfd cannot be turned writable with `make_mut`: other
    /// holders rely on the bytes never changing (the kernel drops `VM_MAYWRITE` on such maps).
    #[test]
    fn make_mut_of_a_sealed_memfd_is_refused() {
        let shm = mmkit::SharedMemory::create("sealed", page_size() as u64).unwrap();
        shm.seal_read_only().unwrap();
        let ro = shm.map_read_only().unwrap();
        let held = shm.map_read_only().unwrap();
        assert!(ro.make_mut().is_err());
        assert_eq!(held[0], 0);
    }

    /// An offset plus a length past `isize::MAX` is refused before the kernel sees it.
    #[test]
    fn lengths_past_isize_max_are_refused() {
        let f = file(1);
        for len in too_long() {
            // SAFETY: as above (nothing is mapped).
            let e = unsafe { MapOptions::new().len(len).map(&f) }.unwrap_err();
            // A file map is first checked against the file's length.
            assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{e}");
            assert_eq!(e.errno(), None, "{e}");
        }
    }
}

mod mmap_mut {
    use super::*;

    /// Issue 10, item 1: `map_anon` with a protection lacking read or write handed out an
    /// `MmapMut` whose first write (or read) was a SIGSEGV.
    #[test]
    fn map_anon_refuses_protections_without_read_and_write() {
        let page = page_size();
        for prot in [Protection::NONE, Protection::READ, Protection::WRITE, Protection::READ | Protection::EXEC] {
            let e = MapOptions::new().len(page).protection(prot).map_anon().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{prot:?}: {e}");
            assert_eq!(e.errno(), None, "{e}");
            assert!(e.to_string().contains("map_anon_raw"), "{e}");
            let e = MapOptions::new().len(page).protection(prot).map_anon_shared().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{prot:?}: {e}");
        }
        let mut m =
            MapOptions::new().len(page).protection(Protection::READ_WRITE | Protection::EXEC).map_anon().unwrap();
        m[0] = 1;
        let perms = area_of(m.as_ptr() as usize).unwrap().perms;
        assert!(perms.read && perms.write, "{perms}");
    }

    /// The other protections are still available, as raw pointers.
    #[test]
    fn map_anon_raw_maps_any_protection() {
        for (prot, rwx) in [(Protection::NONE, "---p"), (Protection::READ, "r--p"), (Protection::READ_WRITE, "rw-p")] {
            let raw = MapOptions::new().len(page_size()).protection(prot).map_anon_raw().unwrap();
            assert_eq!(area_of(raw.as_ptr() as usize).unwrap().perms.to_string(), rwx);
            assert_eq!(raw.mapping().protection(), prot);
        }
    }

    /// Issue 18: a length above `isize::MAX` (which a 32-bit kernel would map) is refused.
    #[test]
    fn lengths_past_isize_max_are_refused() {
        for len in too_long() {
            assert_too_long(&MapOptions::new().len(len).map_anon().unwrap_err());
            assert_too_long(&MapOptions::new().len(len).map_anon_raw().unwrap_err());
        }
        // Just inside the limit the request reaches the kernel: a 64-bit one says no by itself
        // (ENOMEM); a 32-bit process may get the 2 GiB.
        match MapOptions::new().len(isize::MAX as usize + 1 - page_size()).no_reserve(true).map_anon_raw() {
            Ok(m) => assert_eq!(m.len(), isize::MAX as usize + 1 - page_size()),
            Err(e) => assert_eq!(e.errno(), Some(libc::ENOMEM), "{e}"),
        }
    }

    /// The child of a `dont_fork` map loses the memory, and a `wipe_on_fork` child reads zeros
    /// (also behind references it inherits, hence `unsafe` too); through a raw pointer (or a
    /// borrow the child makes) they are valid bytes.
    #[test]
    fn wipe_on_fork_leaves_the_child_valid_zeros() {
        let mut m = MapOptions::new().len(page_size()).map_anon().unwrap();
        m[0] = 9;
        // SAFETY: the child below reads through a raw pointer only, no inherited reference.
        unsafe { m.wipe_on_fork(..) }.unwrap();
        let p = m.as_ptr();
        // SAFETY: the child only reads one byte of a mapping it inherits (zeroed).
        assert_eq!(fork::in_child(|| unsafe { p.read_volatile() }), Ok(0));
        assert_eq!(m[0], 9);
    }

    /// Hugetlb pages mapped with `no_reserve` take no huge pages from the pool up front, so a
    /// fault the pool cannot serve (an empty pool, or a copy-on-write after `fork`) raises
    /// `SIGBUS`: `map_anon` handed out an `MmapMut` whose first write killed the process. The
    /// faces that hand out references refuse the combination; the raw one keeps it.
    #[test]
    fn unreserved_hugetlb_pages_are_refused_where_references_are_handed_out() {
        use mmkit::HugePages;
        let huge = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find(|l| l.starts_with("Hugepagesize:"))?.split_whitespace().nth(1)?.parse().ok())
            .map_or(2 << 20, |kib: usize| kib * 1024);
        let mut opts = MapOptions::new();
        opts.len(huge).huge_pages(HugePages::Hugetlb(None)).no_reserve(true);
        let raw = opts.map_anon_raw().unwrap();
        if raw.page_outcome().fallback.is_some() {
            return; // no hugetlb pages here: every face falls back to base pages
        }
        drop(raw);
        let errs = [
            opts.map_anon().map(drop).unwrap_err(),
            opts.map_anon_shared().map(drop).unwrap_err(),
            opts.map_anon_guarded(1).map(drop).unwrap_err(),
        ];
        for e in errs {
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains("SIGBUS"), "{e}");
        }
        // The safe file route: a sealed hugetlb memfd (unpopulated, so every page is a fault).
        // SAFETY: a NUL-terminated name and valid flags.
        let fd = unsafe { libc::memfd_create(c"huge".as_ptr(), libc::MFD_HUGETLB | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return;
        }
        // SAFETY: `fd` was just created and is owned here alone.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let shm = mmkit::shm::SharedMemory::from_fd(fd).unwrap();
        shm.set_len(huge as u64).unwrap();
        shm.seal_read_only().unwrap();
        let e = opts.map_if_safe(&shm).map(drop).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("SIGBUS"), "{e}");
    }
}

mod mmap_raw {
    use super::*;

    /// Reading an inaccessible raw map through the safe copy is an error, never a fault.
    #[test]
    fn copy_from_an_inaccessible_raw_map_is_an_error() {
        let mut raw = MapOptions::new().len(2 * page_size()).map_anon_raw().unwrap();
        raw.protect(page_size().., Protection::NONE).unwrap();
        let mut buf = [1u8; 8];
        raw.copy_from_mapping(0, &mut buf).unwrap();
        assert_eq!(buf, [0; 8]);
        assert!(raw.copy_from_mapping(page_size(), &mut buf).is_err());
        assert_eq!(area_of(raw.as_ptr() as usize + page_size()).unwrap().perms.to_string(), "---p");
        assert_eq!(raw.copy_from_mapping(usize::MAX, &mut buf).unwrap_err().kind(), ErrorKind::OutOfBounds);
    }

    /// `populate(.., write)` over a range with a page made inaccessible (safe on an `MmapRaw`)
    /// is an error: the kernel refuses `MADV_POPULATE_WRITE` with `EINVAL`, and the old
    /// fallback then wrote to every page itself, a `SIGSEGV` from safe code (and a write under
    /// live `&[u8]`s of other faces, through `&self`).
    #[test]
    fn populate_never_writes_pages_itself() {
        let page = page_size();
        let mut raw = MapOptions::new().len(2 * page).map_anon_raw().unwrap();
        raw.protect(page.., Protection::NONE).unwrap();
        let e = raw.mapping().populate_write(..).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        // The writable page alone populates (and becomes resident), the other stays untouched.
        raw.mapping().populate_write(..page).unwrap();
        assert_eq!(raw.residency(..).unwrap().resident_pages(), 1);
        assert_eq!(area_of(raw.as_ptr() as usize + page).unwrap().perms.to_string(), "---p");
    }
}

mod typed_views {
    use super::*;

    /// Out-of-bounds and misaligned typed views are errors.
    #[test]
    fn views_are_checked_for_bounds_and_alignment() {
        let mut m = MapOptions::new().len(page_size()).map_anon().unwrap();
        let len = m.len();
        assert!(m.as_ref_of::<u64>(len - 4).is_err());
        assert!(m.as_ref_of::<u64>(len).is_err());
        assert!(m.as_ref_of::<u64>(usize::MAX).is_err());
        assert_eq!(m.as_ref_of::<u64>(1).unwrap_err().kind(), ErrorKind::Layout);
        assert!(m.as_mut_of::<u32>(len - 2).is_err());
        assert!(m.as_mut_of::<u32>(usize::MAX - 1).is_err());
        assert_eq!(m.as_slice_of::<[u8; 3]>().unwrap_err().kind(), ErrorKind::Layout);
        assert_eq!(m.as_mut_slice_of::<u64>().unwrap().len(), len / 8);
        // An empty map is an empty slice of any type (its dangling pointer is aligned).
        let empty = MapOptions::new().len(0).map_anon().unwrap();
        assert_eq!(empty.as_slice_of::<u64>().unwrap().len(), 0);
    }
}

mod reservation {
    use super::*;
    use mmkit::reserve::ReserveOptions;
    use mmkit::Reservation;

    #[test]
    fn lengths_past_isize_max_are_refused() {
        for len in too_long() {
            assert_too_long(&Reservation::new(len).unwrap_err());
        }
        // Length plus alignment slack past the limit is refused too.
        let e = ReserveOptions::new(isize::MAX as usize - 4 * MIB)
            .align(isize::MAX as usize / 2 + 1)
            .reserve()
            .unwrap_err();
        assert_too_long(&e);
    }

    /// A carved range belongs to its sub-reservation: the parent refuses it and does not unmap
    /// it when dropped (no byte has two owners, none is unmapped under its owner).
    #[test]
    fn carved_ranges_have_one_owner() {
        let page = page_size();
        let mut parent = Reservation::new(4 * page).unwrap();
        let child = parent.carve(page, page).unwrap();
        assert_eq!(parent.commit(page, page, Protection::READ_WRITE).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert!(parent.carve(0, 2 * page).is_err());
        child.commit(0, page, Protection::READ_WRITE).unwrap();
        let at = child.as_ptr() as usize;
        drop(parent);
        // The child's page survives its parent, with its protection and contents.
        assert_eq!(area_of(at).unwrap().perms.to_string(), "rw-p");
        // SAFETY: committed read-write above and owned by `child`; raw access only.
        unsafe {
            child.as_mut_ptr().write(4);
            assert_eq!(child.as_ptr().read(), 4);
        }
    }

    /// A memfd on hugetlbfs (one a peer may send) is mapped in whole huge pages whatever length
    /// is asked for: a MAP_FIXED of one base page at a huge-page boundary replaces the whole
    /// huge page, past the range given and past a reservation shorter than it (memory another
    /// owner holds; `hugetlb.rs` shows it with a pool). The safe `map_shared_memory_at` refuses
    /// such a range before the kernel is asked, whatever the pool holds.
    #[test]
    fn a_hugetlb_memfd_is_never_mapped_past_the_range_given() {
        use crate::hugetlb_support::{huge_page_size, hugetlb_memfd};
        let page = page_size();
        let huge = huge_page_size();
        let shm = hugetlb_memfd(c"peer-hugetlb", huge);
        let r = ReserveOptions::new(page).align(huge).reserve().unwrap();
        let err = r.map_shared_memory_at(0, page, Protection::READ_WRITE, &shm, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
        assert!(err.to_string().contains("hugetlbfs"), "{err}");
        assert_eq!(area_of(r.as_ptr() as usize).unwrap().perms.to_string(), "---p", "the reservation is as it was");
    }

    /// Regression: a hugetlbfs memfd mapped at an offset that is not a whole number of its
    /// huge pages got the kernel's bare EINVAL, and one mapped with `Hugetlb(Some(size))` of
    /// another size was mapped (and grown, past `F_SEAL_GROW`) in pages of that size. Both are
    /// refused before the kernel is asked, whatever the pool holds.
    #[test]
    fn a_hugetlb_memfd_maps_only_at_its_page_multiples_and_in_its_pages() {
        use crate::hugetlb_support::{huge_page_size, hugetlb_memfd};
        let huge = huge_page_size();
        let shm = hugetlb_memfd(c"peer-hugetlb-offset", 2 * huge);
        shm.add_seals(mmkit::shm::Seals::GROW).unwrap();
        let err = MapOptions::new().offset(page_size() as u64).len(page_size()).map_raw(&shm).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
        assert!(err.to_string().contains(&format!("multiples of its {} KiB pages", huge / 1024)), "{err}");
        let other = if huge == 2 << 20 { 1 << 30 } else { 2 << 20 };
        let err = MapOptions::new().huge_pages(mmkit::HugePages::Hugetlb(Some(other))).map_raw(&shm).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert_eq!(shm.len().unwrap(), 2 * huge as u64, "the file was not grown");
    }

    #[test]
    fn ranges_outside_are_refused() {
        let page = page_size();
        let r = Reservation::new(2 * page).unwrap();
        for (off, len) in [(2 * page, page), (page, 2 * page), (usize::MAX - page + 1, page), (0, usize::MAX)] {
            assert_eq!(r.commit(off, len, Protection::READ_WRITE).unwrap_err().kind(), ErrorKind::OutOfBounds);
            assert!(r.decommit(off, len).is_err());
            assert!(r.guard(off, len).is_err());
        }
    }
}

mod map_alloc {
    use super::*;
    use mmkit::alloc::MapAlloc;
    use proptest::prelude::*;

    /// Issue 10, item 5: `len_for(usize::MAX)` wrapped to 0, so a cached block was handed out
    /// as a `usize::MAX`-byte slice, and the next block got the same address.
    #[test]
    fn huge_blocks_are_refused_even_with_a_cached_block() {
        let arena = MapAlloc::new();
        drop(arena.alloc_block(MIB).unwrap());
        assert_eq!(arena.stats().cached_bytes, MIB);
        for size in too_long() {
            assert!(arena.alloc_block(size).is_none(), "{size:#x}");
        }
        let a = arena.alloc_block(MIB).unwrap();
        let b = arena.alloc_block(MIB).unwrap();
        let (a0, b0) = (a.as_ptr() as usize, b.as_ptr() as usize);
        assert!(a0 + a.len() <= b0 || b0 + b.len() <= a0, "blocks overlap: {a0:#x} and {b0:#x}");
    }

    #[test]
    fn growing_past_isize_max_fails_and_keeps_the_block() {
        let arena = MapAlloc::new();
        let mut block = arena.alloc_block(MIB).unwrap();
        block[MIB - 1] = 7;
        for size in too_long() {
            assert!(block.grow(size).is_none());
        }
        assert_eq!((block.len(), block[MIB - 1]), (MIB, 7));
    }

    #[test]
    fn the_global_alloc_face_returns_null_for_huge_layouts() {
        use std::alloc::{GlobalAlloc, Layout};
        let arena = MapAlloc::new();
        let layout = Layout::from_size_align(isize::MAX as usize - 10, 1).unwrap();
        // SAFETY: a valid non-zero layout; a null answer is checked.
        assert!(unsafe { arena.alloc(layout) }.is_null());
        let small = Layout::from_size_align(MIB, 8).unwrap();
        // SAFETY: as above; the block is freed with its layout, realloc's size is valid for it.
        unsafe {
            let p = arena.alloc(small);
            assert!(!p.is_null());
            assert!(arena.realloc(p, small, isize::MAX as usize - 10).is_null());
            arena.dealloc(p, small);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any size: either a block exactly that long, fully mapped (mincore succeeds over it),
        /// or `None`, and never a block longer than `isize::MAX`.
        #[test]
        fn any_size_gives_a_mapped_block_or_none(size in prop_oneof![
            1usize..4 * MIB,
            (isize::MAX as usize - 4 * MIB)..=usize::MAX,
        ]) {
            let arena = MapAlloc::new();
            let block = arena.alloc_block(size);
            match &block {
                Some(block) => {
                    prop_assert_eq!(block.len(), size);
                    prop_assert!(size <= isize::MAX as usize);
                    let page = page_size();
                    let span = size.div_ceil(page) * page;
                    let mut vec = vec![0u8; span / page];
                    // SAFETY: mincore only reads page-table state of the block's pages.
                    let rc = unsafe { libc::mincore(block.as_ptr() as *mut _, span, vec.as_mut_ptr()) };
                    prop_assert_eq!(rc, 0, "block not mapped");
                }
                None => prop_assert!(size > 4 * MIB),
            }
            drop(block);
        }
    }
}

mod growable {
    use super::*;
    use mmkit::GrowableMmap;

    #[test]
    fn capacities_past_isize_max_are_refused() {
        for cap in too_long() {
            // SAFETY: the temporary file is ours alone.
            let e = unsafe { GrowableMmap::new(tempfile::tempfile().unwrap(), cap) }.unwrap_err();
            assert_too_long(&e);
        }
    }

    /// Every byte the map exposes is backed by the file (no SIGBUS past EOF): the file's
    /// length is the map's length after each grow, and growing past the capacity fails.
    #[test]
    fn exposed_bytes_are_backed_by_the_file() {
        let page = page_size();
        let file = tempfile::tempfile().unwrap();
        // SAFETY: the temporary file is ours alone.
        let mut g = unsafe { GrowableMmap::new(file, 4 * page) }.unwrap();
        for len in [1, page + 1, 3 * page] {
            g.grow(len).unwrap();
            assert_eq!(g.file().metadata().unwrap().len(), len as u64);
            assert_eq!(g.len(), len);
            assert_eq!(g[len - 1], 0);
            assert!(g.get(len).is_none());
        }
        assert_eq!(g.grow(4 * page + 1).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(g.grow(usize::MAX).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(g.len(), 3 * page);
    }
}

mod guarded {
    use super::*;

    #[test]
    fn a_protection_without_read_and_write_is_refused() {
        for prot in [Protection::NONE, Protection::READ] {
            let e = MapOptions::new().len(page_size()).protection(prot).map_anon_guarded(1).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        }
    }

    /// The guards' total length overflowed (`2 * guard`) and panicked in debug builds.
    #[test]
    fn lengths_past_isize_max_are_refused() {
        let page = page_size();
        for len in too_long() {
            assert_too_long(&MapOptions::new().len(len).map_anon_guarded(1).unwrap_err());
            assert_too_long(&MapOptions::new().len(page).map_anon_guarded(len).unwrap_err());
        }
        assert_too_long(&MapOptions::new().len(page).map_anon_guarded(isize::MAX as usize / 2 + 1).unwrap_err());
    }

    /// The bytes just outside the usable ones are guards: slices stop at the end, and a raw
    /// touch there kills a child.
    #[test]
    fn the_bytes_around_are_unreachable() {
        let page = page_size();
        let mut g = MapOptions::new().len(page).map_anon_guarded(page).unwrap();
        g[page - 1] = 1;
        assert!(g.get(page).is_none());
        let end = g.as_ptr() as usize + page;
        // SAFETY: a raw read of the tail guard in a child, which dies of SIGSEGV.
        assert_eq!(fork::in_child(|| unsafe { (end as *const u8).read_volatile() }), Err(libc::SIGSEGV));
    }
}
