//! `Mapping`'s range operations and map-time options, checked against the kernel: bounds and
//! overflow, `mprotect` alignment, placement, populate, lock, huge pages, fault counts.

use std::ops::Bound;

use mmkit::{
    Advice, ErrorKind, HugePages, Lock, MapOptions, MmapMut, Placement, Populate, Protection, RemapOptions,
    UncheckedAdvice,
};
use proptest::prelude::*;

fn page() -> usize {
    mmkit::page_size()
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The `/proc/self/smaps` block (header line and fields) of the VMA that contains `addr`.
///
/// Containing, not starting at: the kernel merges an anonymous mapping with a neighbour that
/// has the same flags (another test's map, made concurrently), so a map need not start a VMA.
fn smaps_block(addr: usize) -> Option<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut out: Option<String> = None;
    for line in smaps.lines() {
        // Headers start with a lower-case hex address range, fields with a capitalised name.
        let is_header = line.starts_with(|c: char| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if is_header {
            if out.is_some() {
                break;
            }
            let (start, end) = vma_range(line);
            if (start..end).contains(&addr) {
                out = Some(String::new());
            }
        }
        if let Some(o) = out.as_mut() {
            o.push_str(line);
            o.push('\n');
        }
    }
    out
}

fn vma_range(header: &str) -> (usize, usize) {
    let r = header.split_whitespace().next().unwrap();
    let (a, b) = r.split_once('-').unwrap();
    (usize::from_str_radix(a, 16).unwrap(), usize::from_str_radix(b, 16).unwrap())
}

fn smaps_field_kb(block: &str, field: &str) -> u64 {
    block
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {block}"))
}

// ---------------------------------------------------------------------------------------------
// bounds and overflow

type Ranges = Vec<(Bound<usize>, Bound<usize>)>;

fn bad_ranges(len: usize) -> Ranges {
    use Bound::*;
    vec![
        (Included(0), Excluded(len + 1)),
        (Included(len + 1), Unbounded),
        (Included(usize::MAX), Unbounded),
        (Excluded(usize::MAX), Unbounded),
        (Unbounded, Included(usize::MAX)),
        (Unbounded, Excluded(usize::MAX)),
        (Included(usize::MAX - 1), Excluded(usize::MAX)),
        (Included(1), Included(len)),
        (Included(5), Excluded(4)),
    ]
}

#[test]
fn every_range_operation_rejects_out_of_bounds_and_overflow() {
    let len = 3 * page() + 5;
    let mut map = MapOptions::new().len(len).map_anon().unwrap();
    for r in bad_ranges(len) {
        let check = |what: &str, res: mmkit::Result<()>| {
            let e = res.expect_err(&format!("{what} {r:?} must fail"));
            assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{what} {r:?}: {e}");
            assert!(!e.to_string().is_empty());
        };
        check("advise", map.advise(r, Advice::Normal));
        check("residency", map.residency(r).map(|_| ()));
        check("populate", map.populate(r));
        check("populate_write", map.populate_write(r));
        check("lock", map.lock(r));
        check("lock_on_fault", map.lock_on_fault(r));
        check("unlock", map.unlock(r));
        check("flush", map.flush(r));
        check("flush_async", map.flush_async(r));
        check("discard", map.discard(r));
        // SAFETY: the call fails before touching anything.
        check("advise_unchecked", unsafe { map.mapping().advise_unchecked(r, UncheckedAdvice::DontNeed) });
        // SAFETY: as above.
        check("protect", unsafe { map.mapping_mut().protect(r, Protection::READ) });
    }
    let mut b = [0u8; 8];
    for off in [len - 7, len + 1, usize::MAX, usize::MAX - 7] {
        let e = map.copy_from_mapping(off, &mut b).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfBounds, "{off:#x}: {e}");
        // The range named is the one asked for (an overflowing end made it `len 0x0`).
        assert_eq!(e.range(), Some((off as u64, b.len() as u64)), "{off:#x}: {e}");
    }
    // The message says what was wrong.
    let e = map.advise(0..len + 1, Advice::Normal).unwrap_err();
    assert!(e.to_string().contains("ends past the mapping"), "{e}");
    assert_eq!(e.range(), Some((0, len as u64 + 1)));
    // And the edges that are in bounds work.
    map.advise(len..len, Advice::Normal).unwrap();
    map.advise(len - 1.., Advice::Normal).unwrap();
    map.residency(..=len - 1).unwrap();
    map.copy_from_mapping(len - 8, &mut b).unwrap();
}

#[test]
fn protect_requires_page_alignment_and_changes_the_kernel_view() {
    let p = page();
    let len = 3 * p + 100;
    let mut map = MapOptions::new().len(len).map_anon().unwrap();
    map[p] = 1;
    let m = map.mapping_mut();
    for r in [(1, p), (0, p - 1), (p / 2, 2 * p), (p, p + 1)] {
        // SAFETY: the call fails before changing anything.
        let e = unsafe { m.protect(r.0..r.1, Protection::READ) }.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unaligned, "{r:?}: {e}");
        assert!(e.to_string().contains("page boundary"), "{e}");
    }
    // Whole pages, and the partial last page at the end of the mapping.
    // SAFETY: no reference into the map is alive (we hold `&mut`).
    unsafe { m.protect(p..2 * p, Protection::READ) }.unwrap();
    // SAFETY: as above.
    unsafe { m.protect(3 * p.., Protection::NONE) }.unwrap();
    let base = m.kernel_region().0;
    let perms = |addr: usize| {
        smaps_block(addr).map(|b| b.lines().next().unwrap().split_whitespace().nth(1).unwrap().to_owned())
    };
    assert_eq!(perms(base).as_deref(), Some("rw-p"));
    assert_eq!(perms(base + p).as_deref(), Some("r--p"));
    assert_eq!(perms(base + 2 * p).as_deref(), Some("rw-p"));
    assert_eq!(perms(base + 3 * p).as_deref(), Some("---p"));
    // Reading the PROT_NONE page through the safe copy is an error, not a SIGSEGV.
    let mut b = [0u8; 4];
    assert!(map.copy_from_mapping(3 * p, &mut b).is_err());
    map.copy_from_mapping(p, &mut b).unwrap();
    assert_eq!(b, [1, 0, 0, 0]);
    // Empty ranges are fine anywhere on a page boundary.
    // SAFETY: no-op.
    unsafe { map.mapping_mut().protect(p..p, Protection::NONE) }.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Random (offset, len) pairs on a small real mapping: Ok exactly when in bounds.
    #[test]
    fn range_ops_ok_iff_in_bounds(
        off in prop_oneof![0usize..20_000, any::<usize>(), (usize::MAX - 20_000)..=usize::MAX],
        len in prop_oneof![0usize..20_000, any::<usize>(), (usize::MAX - 20_000)..=usize::MAX],
        total in 1usize..5 * 4096,
    ) {
        let map = MapOptions::new().len(total).map_anon().unwrap();
        let in_bounds = off.checked_add(len).is_some_and(|e| e <= total);
        let end = off.saturating_add(len);
        let r = map.residency(off..end);
        prop_assert_eq!(r.is_ok(), in_bounds && end == off + len, "residency {}..{} of {}", off, end, total);
        if let Ok(r) = r {
            let p = page();
            let want = if len == 0 { 0 } else { (off + len).div_ceil(p) - off / p };
            prop_assert_eq!(r.pages(), want as u64);
        } else {
            prop_assert_eq!(r.unwrap_err().kind(), ErrorKind::OutOfBounds);
        }
        let a = map.advise(off..end, Advice::WillNeed);
        prop_assert_eq!(a.is_ok(), in_bounds);
        let f = map.flush(off..end);
        prop_assert_eq!(f.is_ok(), in_bounds);
        let mut buf = vec![0u8; len.min(64)];
        let c = map.copy_from_mapping(off, &mut buf);
        prop_assert_eq!(c.is_ok(), off.checked_add(buf.len()).is_some_and(|e| e <= total));
    }

    /// Unaligned file-style windows on anonymous memory: the exposed pointer sits at the right
    /// page offset and ranges count the right pages.
    #[test]
    fn inclusive_ranges_match_exclusive(s in 0usize..10_000, e in 0usize..10_000) {
        let map = MapOptions::new().len(8192).map_anon().unwrap();
        let a = map.residency(s..=e).map(|r| r.pages());
        let b = map.residency(s..e + 1).map(|r| r.pages());
        prop_assert_eq!(a.is_ok(), b.is_ok());
        if let (Ok(a), Ok(b)) = (a, b) { prop_assert_eq!(a, b); }
    }
}

// ---------------------------------------------------------------------------------------------
// residency, populate and faults on anonymous memory

#[test]
fn anon_residency_follows_touches() {
    let p = page();
    let mut map = MapOptions::new().len(8 * p).map_anon().unwrap();
    map.advise(.., Advice::NoHugePage).unwrap();
    assert_eq!(map.residency(..).unwrap().resident_pages(), 0);
    map[3 * p + 9] = 1;
    map[7 * p] = 1;
    let r = map.residency(..).unwrap();
    assert_eq!(r.bitmap().iter().collect::<Vec<_>>(), [false, false, false, true, false, false, false, true]);
    assert_eq!((r.resident_pages(), r.pages(), r.page_size()), (2, 8, p as u64));
    assert!((r.fraction() - 0.25).abs() < 1e-9);
    // Discarding drops them (and they read back as zeros).
    map.discard(3 * p..4 * p).unwrap();
    assert_eq!(map.residency(..).unwrap().resident_pages(), 1);
    assert_eq!(map[3 * p + 9], 0);
}

#[test]
fn residency_of_a_mapping_spanning_several_mincore_windows() {
    // Mapping::residency asks the kernel 65,536 pages at a time: the pages touched here sit in
    // the first, second and last window, and at the window boundary.
    let p = page();
    let pages = 2 * 65_536 + 10;
    let mut map = MapOptions::new().len(pages * p).no_reserve(true).map_anon().unwrap();
    map.advise(.., Advice::NoHugePage).unwrap();
    let touched = [0, 65_535, 65_536, 70_000, pages - 1];
    for &t in &touched {
        map[t * p] = 1;
    }
    let r = map.residency(..).unwrap();
    assert_eq!((r.pages(), r.resident_pages()), (pages as u64, touched.len() as u64));
    for &t in &touched {
        assert!(r.is_resident(t as u64), "page {t}");
    }
    assert!(!r.is_resident(65_537) && !r.is_resident(pages as u64 - 2));
    // A sub-range starting inside the second window counts from its own first page.
    let r = map.residency(65_536 * p..).unwrap();
    assert_eq!(r.resident_pages(), 3);
    assert!(r.is_resident(0) && r.is_resident(70_000 - 65_536));
}

#[test]
fn populate_options_make_anon_residency_full() {
    let n = 16;
    for populate in [Populate::MapPopulate, Populate::Read, Populate::Write] {
        let map = MapOptions::new().len(n * page()).populate(populate).map_anon().unwrap();
        let r = map.residency(..).unwrap();
        assert_eq!(r.resident_pages(), n as u64, "{populate:?}: {r:?}");
    }
    // After mapping, too. Base pages: with multi-size THP on (`hugepages-64kB/enabled` set to
    // `always`, as on some arm64 and Android kernels) populating one page faults in its whole
    // folio, and 2 pages would count as up to 16.
    let map = MapOptions::new().len(n * page()).map_anon().unwrap();
    map.advise(.., Advice::NoHugePage).unwrap();
    map.populate_write(page()..3 * page()).unwrap();
    assert_eq!(map.residency(..).unwrap().resident_pages(), 2);
    // Writing population on a read-only mapping is refused.
    let ro = MapOptions::new().len(page()).protection(Protection::READ).map_anon_raw().unwrap();
    assert_eq!(ro.mapping().populate_write(..).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn touching_a_cold_mapping_takes_minor_faults() {
    let n = 256;
    let mut map = MapOptions::new().len(n * page()).map_anon().unwrap();
    // Base pages only, so one fault per page.
    map.advise(.., Advice::NoHugePage).unwrap();
    let (minor0, _) = mmkit::page_faults();
    for i in 0..n {
        map[i * page()] = 1;
    }
    let (minor1, _) = mmkit::page_faults();
    assert!(minor1 - minor0 >= n as u64, "{} minor faults for {n} pages", minor1 - minor0);
    // A populated mapping takes none: the populate faults happen in madvise, before. Counted
    // for this thread only, as other tests fault concurrently.
    let thread_minor = || {
        // SAFETY: an all-zero rusage is valid; getrusage fills it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) }, 0);
        u.ru_minflt as u64
    };
    let mut hot = MapOptions::new().len(n * page()).populate(Populate::Write).map_anon().unwrap();
    let minor0 = thread_minor();
    for i in 0..n {
        hot[i * page()] = 1;
    }
    let minor1 = thread_minor();
    assert!(minor1 - minor0 < 8, "{} minor faults on a populated map", minor1 - minor0);
}

// ---------------------------------------------------------------------------------------------
// placement

#[test]
fn fixed_no_replace_onto_an_occupied_address_is_eexist() {
    let occupied = MapOptions::new().len(4 * page()).map_anon().unwrap();
    let addr = occupied.as_ptr() as usize + page();
    let err = MapOptions::new().len(page()).placement(Placement::FixedNoReplace(addr)).map_anon().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Os, "{err}");
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    assert!(err.to_string().contains("EEXIST"), "{err}");
    // The error says where: the address asked for (the kernel's EEXIST named none).
    assert_eq!(err.addr(), Some(addr), "{err}");
    assert!(err.to_string().contains(&format!("at {addr:#x}")), "{err}");
    // Unaligned fixed addresses are refused before the kernel is asked.
    let err = MapOptions::new().len(page()).placement(Placement::FixedNoReplace(addr + 1)).map_anon().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unaligned, "{err}");
    assert_eq!(err.addr(), Some(addr + 1));
}

/// A process with `CAP_SYS_RAWIO` (root) may map page 0: `map_anon` then panicked ("mmap
/// returned NULL"), leaking the page, since no owner can hold a mapping at NULL. Refused before
/// the kernel is asked, whoever runs it.
#[test]
fn a_fixed_placement_at_address_0_is_refused() {
    let err = MapOptions::new().len(page()).placement(Placement::FixedNoReplace(0)).map_anon().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(!maps.lines().any(|l| l.starts_with("00000000-")), "page 0 is mapped:\n{maps}");
}

/// A page-aligned address that is free right now: the middle of a hole we punch ourselves.
/// Another thread could take it before we use it, so callers retry.
fn free_address(pages: usize) -> usize {
    let len = (pages + 2) * page();
    // SAFETY: fresh anonymous mapping chosen by the kernel, unmapped right away.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert_ne!(p, libc::MAP_FAILED);
        libc::munmap(p, len);
        p as usize + page()
    }
}

#[test]
fn fixed_no_replace_and_hint_on_a_free_address_are_honoured() {
    for placement in 0..2 {
        let mut last = None;
        for _ in 0..20 {
            let addr = free_address(4);
            let pl = if placement == 0 { Placement::FixedNoReplace(addr) } else { Placement::Hint(addr) };
            match MapOptions::new().len(4 * page()).placement(pl).map_anon() {
                Ok(m) if m.as_ptr() as usize == addr => {
                    last = Some(Ok(()));
                    break;
                }
                Ok(m) => last = Some(Err(format!("{pl:?} placed at {:p}", m.as_ptr()))),
                Err(e) if e.errno() == Some(libc::EEXIST) => last = Some(Err(e.to_string())), // raced
                Err(e) => panic!("{pl:?}: {e}"),
            }
        }
        assert_eq!(last, Some(Ok(())), "case {placement}");
    }
    // A hint onto an occupied range is not an error: the kernel puts the map elsewhere.
    let occupied = MapOptions::new().len(2 * page()).map_anon().unwrap();
    let m = MapOptions::new().len(page()).placement(Placement::Hint(occupied.as_ptr() as usize)).map_anon().unwrap();
    assert_ne!(m.as_ptr(), occupied.as_ptr());
}

// ---------------------------------------------------------------------------------------------
// locking

fn skip_lock(e: &mmkit::Error) -> bool {
    if matches!(e.errno(), Some(libc::EPERM) | Some(libc::ENOMEM) | Some(libc::EAGAIN)) && !is_ci() {
        eprintln!("skipping: locking memory is not allowed here ({e}); raise RLIMIT_MEMLOCK or run as root");
        return true;
    }
    false
}

#[test]
fn lock_full_makes_everything_resident_and_locked() {
    let n = 16;
    let map = match MapOptions::new().len(n * page()).lock(Lock::Full).map_anon() {
        Ok(m) => m,
        Err(e) if skip_lock(&e) => return,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(map.residency(..).unwrap().resident_pages(), n as u64);
    let block = smaps_block(map.as_ptr() as usize).unwrap();
    assert_eq!(smaps_field_kb(&block, "Locked"), (n * page() / 1024) as u64, "{block}");
    assert!(
        block.contains("VmFlags:")
            && block.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "lo")),
        "{block}"
    );
    map.unlock(..).unwrap();
    let block = smaps_block(map.as_ptr() as usize).unwrap();
    assert_eq!(smaps_field_kb(&block, "Locked"), 0, "{block}");
}

#[test]
fn lock_on_fault_locks_pages_as_they_are_touched() {
    let n = 16;
    let mut map = match MapOptions::new().len(n * page()).lock(Lock::OnFault).map_anon() {
        Ok(m) => m,
        Err(e) if skip_lock(&e) => return,
        Err(e) => panic!("{e}"),
    };
    map.advise(.., Advice::NoHugePage).unwrap();
    assert_eq!(map.residency(..).unwrap().resident_pages(), 0, "on-fault locking faults nothing in");
    let block = smaps_block(map.as_ptr() as usize).unwrap();
    let flags = block.lines().find(|l| l.starts_with("VmFlags:")).unwrap().to_owned();
    assert!(flags.split_whitespace().any(|f| f == "lf"), "{flags}");
    map[0] = 1;
    map[5 * page()] = 1;
    assert_eq!(map.residency(..).unwrap().resident_pages(), 2);
    let block = smaps_block(map.as_ptr() as usize).unwrap();
    assert_eq!(smaps_field_kb(&block, "Locked"), (2 * page() / 1024) as u64, "{block}");
}

// ---------------------------------------------------------------------------------------------
// huge pages

fn free_hugetlb_pages() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let size_kb: u64 =
        meminfo.lines().find(|l| l.starts_with("Hugepagesize:"))?.split_whitespace().nth(1)?.parse().ok()?;
    std::fs::read_to_string(format!("/sys/kernel/mm/hugepages/hugepages-{size_kb}kB/free_hugepages"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn hugetlb_reports_the_page_size_it_got_or_why_it_fell_back() {
    let len = 4 << 20;
    let mut map = MapOptions::new().len(len).huge_pages(HugePages::Hugetlb(None)).map_anon().unwrap();
    let out = map.page_outcome().clone();
    assert_eq!(out.requested, HugePages::Hugetlb(None));
    match free_hugetlb_pages() {
        Some(free) if free >= 2 && out.fallback.is_none() => {
            assert!(out.page_size > page(), "{out:?}");
            assert_eq!(map.as_ptr() as usize % out.page_size, 0);
        }
        Some(free) if free < 2 => {
            assert_eq!(out.page_size, page(), "{out:?}");
            let why = out.fallback.as_deref().expect("a fallback reason");
            assert!(why.contains("hugetlb") && why.contains(&format!("pool: {free} free")), "{why}");
            assert!(why.contains("ENOMEM"), "{why}");
        }
        Some(_) => {} // pages were free when we looked but taken when we mapped: a race, not a bug
        None => assert!(out.fallback.is_some(), "{out:?}"),
    }
    // Either way the memory works.
    map[len - 1] = 1;
    assert_eq!(map.len(), len);
    // A size the machine does not have (1 TiB; 2 GiB where usize is 32 bits).
    #[cfg(target_pointer_width = "64")]
    const ABSENT: usize = 1 << 40;
    #[cfg(not(target_pointer_width = "64"))]
    const ABSENT: usize = 1 << 31;
    let map = MapOptions::new().len(1 << 20).huge_pages(HugePages::Hugetlb(Some(ABSENT))).map_anon().unwrap();
    assert!(map.page_outcome().fallback.is_some());
    assert_eq!(map.page_outcome().page_size, page());
    // A size no huge page has: the reason names it (it said "no hugetlb page size is configured
    // on this system", also where one is).
    let map = MapOptions::new().len(1 << 20).huge_pages(HugePages::Hugetlb(Some(3 * page()))).map_anon().unwrap();
    let why = map.page_outcome().fallback.clone().unwrap();
    assert!(why.contains("is not a huge page size"), "{why}");
    assert_eq!(map.page_outcome().page_size, page());
}

fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    Some(s[s.find('[')? + 1..s.find(']')?].to_owned())
}

#[test]
fn transparent_huge_pages_give_an_aligned_region() {
    let pmd: usize = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(2 << 20);
    let len = 2 * pmd;
    let mut map = MapOptions::new().len(len).huge_pages(HugePages::Transparent).map_anon().unwrap();
    let out = map.page_outcome().clone();
    match thp_mode().as_deref() {
        Some("always") | Some("madvise") => {
            assert_eq!(out.fallback, None);
            assert_eq!(out.page_size, pmd, "{out:?}");
            assert_eq!(map.as_ptr() as usize % pmd, 0, "{:p}", map.as_ptr());
            assert_eq!(map.mapping().kernel_region(), (map.as_ptr() as usize, len));
            let block = smaps_block(map.as_ptr() as usize).unwrap();
            assert!(
                block.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "hg")),
                "{block}"
            );
            // The over-mapped head and tail were given back: the VMA is exactly the region,
            // unless the kernel merged it with a neighbouring map of the same flags.
            let (start, end) = vma_range(block.lines().next().unwrap());
            let base = map.as_ptr() as usize;
            assert!(start <= base && end >= base + len, "{block}");
            if (start, end) != (base, base + len) {
                eprintln!("THP map merged with a neighbour: {start:#x}-{end:#x} holds {base:#x}+{len:#x}");
            }
            map.fill(1);
            let huge = smaps_field_kb(&smaps_block(map.as_ptr() as usize).unwrap(), "AnonHugePages");
            eprintln!("AnonHugePages after touching 4 MiB: {huge} kB");
        }
        _ => {
            assert!(out.fallback.is_some(), "{out:?}");
            assert_eq!(out.page_size, page());
        }
    }
    // Too small for one huge page: falls back and says why (THP switched off is said first).
    let small = MapOptions::new().len(pmd / 2).huge_pages(HugePages::Transparent).map_anon().unwrap();
    let why = if thp_mode().as_deref() == Some("never") { "disabled" } else { "smaller" };
    assert!(small.page_outcome().fallback.as_deref().is_some_and(|w| w.contains(why)), "{:?}", small.page_outcome());
    assert_eq!(small.page_outcome().page_size, page());
}

#[test]
fn names_show_in_proc_maps() {
    let map = MapOptions::new().len(page()).name("mmkit-test-name").map_anon().unwrap();
    let block = smaps_block(map.as_ptr() as usize).unwrap();
    let line = block.lines().next().unwrap();
    if map.mapping().name_applied() {
        assert!(line.ends_with("[anon:mmkit-test-name]"), "{line}");
    } else {
        assert!(!line.contains("anon:mmkit-test-name"), "{line}");
    }
}

#[test]
fn resize_grows_and_shrinks_with_mremap() {
    let p = page();
    let mut map: MmapMut = MapOptions::new().len(2 * p).map_anon().unwrap();
    map[p] = 5;
    let moving = RemapOptions::new().may_move(true);
    map.remap_anon(10 * p, moving).unwrap();
    assert_eq!(map.len(), 10 * p);
    assert_eq!(map[p], 5);
    map[10 * p - 1] = 6;
    map.remap_anon(p + 1, RemapOptions::new()).unwrap();
    assert_eq!(map.len(), p + 1);
    assert_eq!(map[p], 5);
    assert_eq!(map.mapping().kernel_region().1, 2 * p);
    assert_eq!(map.remap_anon(usize::MAX, moving).unwrap_err().kind(), ErrorKind::OutOfBounds);
    assert_eq!(map.remap_anon(0, moving).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn transparent_huge_pages_report_no_huge_page_for_an_unaligned_region() {
    let mode = thp_mode();
    if !matches!(mode.as_deref(), Some("always") | Some("madvise")) {
        eprintln!("skipped: transparent huge pages are {mode:?} here (this checks the outcome when they are on)");
        return;
    }
    let pmd: usize = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(2 << 20);
    // A hint one page past a huge page boundary: the 2 MiB region then holds no aligned huge page.
    let mut honoured = false;
    for _ in 0..20 {
        let hole = free_address(3 * pmd / page());
        let hint = hole.div_ceil(pmd) * pmd + page();
        let map = MapOptions::new()
            .len(pmd)
            .placement(Placement::Hint(hint))
            .huge_pages(HugePages::Transparent)
            .map_anon()
            .unwrap();
        let base = map.as_ptr() as usize;
        let out = map.page_outcome();
        // Whatever the kernel did, the report matches the address.
        if base % pmd == 0 {
            assert_eq!((out.page_size, out.fallback.as_deref()), (pmd, None), "{base:#x}: {out:?}");
        } else {
            assert_eq!(out.page_size, page(), "{base:#x}: {out:?}");
            assert!(out.fallback.as_deref().is_some_and(|w| w.contains("no") && w.contains("aligned")), "{out:?}");
        }
        if base == hint {
            honoured = true;
            break;
        }
    }
    assert!(honoured, "the kernel never honoured a hint into a free hole");
}

/// Regression: the `RLIMIT_MEMLOCK` detail of a refused `mlock` went to non-root processes
/// only, so root without `CAP_IPC_LOCK` (a container's default capability set), whom the limit
/// binds, got a bare ENOMEM. It follows the capability now. Capabilities are per thread: this
/// thread drops `CAP_IPC_LOCK` from its effective set, the rest of the test binary keeps it.
#[test]
fn a_lock_refused_without_cap_ipc_lock_names_the_limit_also_for_root() {
    use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
    let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Memlock).current else {
        eprintln!("skipped: RLIMIT_MEMLOCK is unlimited here");
        return;
    };
    std::thread::spawn(move || {
        let mut caps = capabilities(None).unwrap();
        caps.effective.remove(CapabilitySet::IPC_LOCK);
        set_capabilities(None, caps).unwrap();
        let len = usize::try_from(limit).unwrap_or(usize::MAX / 2).saturating_add(16 << 20);
        let map = MapOptions::new().len(len).map_anon().unwrap();
        let err = map.lock(..).expect_err("a lock past RLIMIT_MEMLOCK without CAP_IPC_LOCK");
        assert!(matches!(err.errno(), Some(libc::ENOMEM | libc::EPERM)), "{err}");
        let text = err.to_string();
        assert!(text.contains("RLIMIT_MEMLOCK") && text.contains("without CAP_IPC_LOCK"), "{err}");
    })
    .join()
    .unwrap();
}

/// Regression: an `mlock` refused for the locked-memory limit (what an unprivileged process
/// meets first) said only ENOMEM; it names `RLIMIT_MEMLOCK` and the limit now. Where the lock
/// succeeds (root, CAP_IPC_LOCK, a large limit) there is nothing to check.
#[test]
fn a_lock_refused_for_the_memlock_limit_says_so() {
    let len = 64 << 20;
    match MapOptions::new().len(len).lock(Lock::Full).map_anon() {
        Ok(_) => eprintln!("skipped: 64 MiB locked here (privileged or a large RLIMIT_MEMLOCK)"),
        Err(err) => {
            assert!(matches!(err.errno(), Some(libc::ENOMEM | libc::EPERM)), "{err}");
            let text = err.to_string();
            assert!(text.contains("RLIMIT_MEMLOCK") && text.contains("ulimit -l"), "{err}");
        }
    }
}
