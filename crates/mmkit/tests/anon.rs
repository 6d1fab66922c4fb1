//! Anonymous memory against the kernel: zero fill and RSS, fork visibility, fork advice, guard
//! pages, names, purging, huge pages.

#[path = "support/fork.rs"]
mod fork;

use fork::{in_child, rss_in};
use mmkit::anon::{Collapse, GuardKind, Purged};
use mmkit::{inspect, page_size, Advice, HugePages, MapOptions, Sharing};

const MIB: usize = 1 << 20;

/// The THP (PMD) size: 2 MiB with 4 KiB pages, 32 MiB with 16 KiB pages.
fn pmd() -> usize {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .map_or(2 * MIB, |s| s.trim().parse().unwrap())
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    Some(s[s.find('[')? + 1..s.find(']')?].to_owned())
}

#[test]
fn zero_filled_and_rss_grows_only_on_touch() {
    let mut mem = MapOptions::new().len(MIB).map_anon().unwrap();
    // smaps counts whole areas: keep ours from merging with a neighbouring anonymous area that
    // another test thread touches (a distinct VM flag prevents the merge).
    mem.advise(.., Advice::DontDump).unwrap();
    let (start, len) = mem.mapping().kernel_region();
    assert_eq!(rss_in(start, len), 0);
    assert_eq!(mem.residency(..).unwrap().resident_pages(), 0);
    // Reading zero pages maps the shared zero page: still all zeros.
    assert!(mem.iter().all(|&b| b == 0));
    for i in (0..MIB).step_by(page_size()) {
        mem[i] = 1;
    }
    assert_eq!(rss_in(start, len), MIB as u64);
    assert_eq!(inspect::resident_bytes(mem.mapping()).unwrap(), MIB as u64);
    assert_eq!(mem.purge(..).unwrap(), Purged::DontNeed);
    assert_eq!(rss_in(start, len), 0);
    assert!(mem.iter().all(|&b| b == 0));
}

#[test]
fn shared_is_visible_across_fork_and_private_is_not() {
    let mut shared = MapOptions::new().len(page_size()).map_anon_shared().unwrap();
    let mut private = MapOptions::new().len(page_size()).map_anon().unwrap();
    assert_eq!(shared.mapping().sharing(), Sharing::Shared);
    assert_eq!(private.mapping().sharing(), Sharing::Private);
    shared[0] = 1;
    private[0] = 1;
    let (sp, pp) = (shared.as_mut_ptr(), private.as_mut_ptr());
    let seen = in_child(|| {
        // SAFETY: both maps are inherited by the child; plain byte accesses.
        unsafe {
            let seen = sp.read() + pp.read();
            sp.write(7);
            pp.write(7);
            seen
        }
    });
    assert_eq!(seen, Ok(2), "the child sees what the parent wrote before fork");
    assert_eq!(shared[0], 7, "the child's write reaches the parent through the shared map");
    assert_eq!(private[0], 1, "the child's write stays in its private copy");
}

#[test]
fn wipe_on_fork_gives_the_child_zeros() {
    let mut secret = MapOptions::new().len(page_size()).map_anon().unwrap();
    secret[0] = 42;
    // SAFETY: the child reads through a raw pointer only, no inherited reference.
    unsafe { secret.wipe_on_fork(..) }.unwrap();
    let p = secret.as_ptr();
    // SAFETY: the child reads one byte of an inherited (wiped) map.
    assert_eq!(in_child(|| unsafe { p.read() }), Ok(0));
    assert_eq!(secret[0], 42);
    secret.keep_on_fork(..).unwrap();
    // SAFETY: as above.
    assert_eq!(in_child(|| unsafe { p.read() }), Ok(42));
}

#[test]
fn dont_fork_unmaps_the_range_in_the_child() {
    let mut mem = MapOptions::new().len(page_size()).map_anon().unwrap();
    mem[0] = 3;
    // SAFETY: the child below only reads the address through a raw pointer (and dies); it
    // never uses `mem`.
    unsafe { mem.dont_fork(..) }.unwrap();
    let p = mem.as_ptr();
    // SAFETY: the child touches an address that is not mapped there: it dies of SIGSEGV.
    assert_eq!(in_child(|| unsafe { p.read_volatile() }), Err(libc::SIGSEGV));
    assert_eq!(mem[0], 3);
}

#[test]
fn guard_pages_kill_a_child_that_touches_them() {
    let mut mem = MapOptions::new().len(3 * page_size()).map_anon_guarded(page_size()).unwrap();
    assert_eq!(mem.len(), 3 * page_size());
    assert_eq!(mem.guard_len(), page_size());
    if kernel_at_least(6, 13) {
        assert_eq!(mem.guard_kind(), GuardKind::Madvise);
    }
    mem.fill(5);
    let first = mem.as_ptr();
    // SAFETY: pointers one byte before and one byte past the usable range: the guards.
    let (before, after) = unsafe { (first.sub(1), first.add(mem.len())) };
    // SAFETY: the usable bytes are mapped in the child too.
    assert_eq!(in_child(|| unsafe { first.add(mem.len() - 1).read_volatile() }), Ok(5));
    // SAFETY: deliberate touches of the guards in a child, which dies of SIGSEGV.
    assert_eq!(in_child(|| unsafe { before.read_volatile() }), Err(libc::SIGSEGV));
    // SAFETY: as above.
    assert_eq!(in_child(|| unsafe { after.read_volatile() }), Err(libc::SIGSEGV));

    // Guard markers do not split the VMA; PROT_NONE guards make three areas.
    let (start, len) = mem.mapping().kernel_region();
    let areas = inspect::maps(std::process::id())
        .unwrap()
        .into_iter()
        .filter(|e| e.start < (start + len) as u64 && e.end > start as u64)
        .count();
    let expected = if mem.guard_kind() == GuardKind::Madvise { 1 } else { 3 };
    assert_eq!(areas, expected);
}

#[test]
fn shared_guarded_map_uses_prot_none_guards() {
    let mem = MapOptions::new().len(page_size()).sharing(Sharing::Shared).map_anon_guarded(1).unwrap();
    assert_eq!(mem.guard_kind(), GuardKind::ProtNone);
    let p = mem.as_ptr();
    // SAFETY: the tail guard, touched in a child.
    assert_eq!(in_child(|| unsafe { p.add(page_size()).read_volatile() }), Err(libc::SIGSEGV));
}

/// Whether this kernel names anonymous areas (`CONFIG_ANON_VMA_NAME`), asked of the kernel
/// directly with a raw prctl on a scratch map.
fn kernel_names_anon_areas() -> bool {
    let len = page_size();
    // SAFETY: a fresh private anonymous map of our own, named, then unmapped.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert_ne!(p, libc::MAP_FAILED);
        let rc = libc::prctl(0x53564d41, 0, p as libc::c_ulong, len, c"probe".as_ptr());
        libc::munmap(p, len);
        rc == 0
    }
}

#[test]
fn names_show_in_proc_self_maps_or_are_a_reported_no_op() {
    let mem = MapOptions::new().len(2 * page_size()).name("mmkit-test-name").map_anon().unwrap();
    let addr = format!("{:x}-", mem.as_ptr() as usize);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.starts_with(&addr)).unwrap().to_owned();
    if kernel_names_anon_areas() {
        assert!(mem.mapping().name_applied());
        assert!(line.ends_with("[anon:mmkit-test-name]"), "{line}");
        assert_eq!(inspect::region_name(mem.mapping()).unwrap().as_deref(), Some("mmkit-test-name"));
        assert!(mem.mapping().set_name("renamed").unwrap());
        assert_eq!(inspect::region_name(mem.mapping()).unwrap().as_deref(), Some("renamed"));
    } else {
        // CONFIG_ANON_VMA_NAME is off: naming is a no-op that says so, not an error.
        assert!(!mem.mapping().name_applied());
        assert!(!line.contains("[anon:"), "{line}");
        assert_eq!(inspect::region_name(mem.mapping()).unwrap(), None);
        assert!(!mem.mapping().set_name("renamed").unwrap());
    }
    // A name the kernel would never accept is an error either way.
    assert!(mem.mapping().set_name("bad[name]").is_err());
}

#[test]
fn lazy_purge_marks_pages_lazy_free() {
    let mut mem = MapOptions::new().len(MIB).map_anon().unwrap();
    mem.fill(1);
    // SAFETY: nothing reads the range before writing it again.
    assert_eq!(unsafe { mem.purge_lazy(..) }.unwrap(), Purged::Free);
    let (start, len) = mem.mapping().kernel_region();
    let lazy: u64 = inspect::smaps(std::process::id())
        .unwrap()
        .iter()
        .filter(|a| a.area.start < (start + len) as u64 && a.area.end > start as u64)
        .map(|a| a.stats.lazy_free)
        .sum();
    // Pages still sitting in a per-CPU LRU batch are not counted yet; most pages are.
    assert!(lazy * 1024 >= MIB as u64 / 2, "LazyFree {lazy} KiB after MADV_FREE of 1 MiB");
    mem.fill(2); // writing cancels the lazy free
    assert!(mem.iter().all(|&b| b == 2));
}

#[test]
fn shared_purge_frees_the_shared_pages() {
    let mut mem = MapOptions::new().len(MIB).map_anon_shared().unwrap();
    mem.fill(1);
    let (start, len) = mem.mapping().kernel_region();
    assert_eq!(rss_in(start, len), MIB as u64);
    assert_eq!(mem.purge(..).unwrap(), Purged::Remove);
    assert_eq!(rss_in(start, len), 0);
    assert!(mem.iter().all(|&b| b == 0));
}

/// `purge` promises zeros and memory given back; on a map of a file neither advice does that:
/// private pages read back the file's bytes (it answered `DontNeed`, "reads back zeros"), and
/// `MADV_REMOVE` on a shared map punched a hole in the file, destroying its data. Refused.
#[test]
fn purge_refuses_file_maps_and_leaves_the_file_alone() {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let page = page_size();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&vec![7u8; 2 * page]).unwrap();
    // SAFETY: the temporary file is ours alone.
    let mut private = unsafe { MapOptions::new().map_copy(&file) }.unwrap();
    private[0] = 9;
    let err = private.purge(..).unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("discard"), "{err}");
    // SAFETY: as above; a private file page is never freed lazily.
    let err = unsafe { private.purge_lazy(..) }.unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::InvalidArgument, "{err}");
    assert_eq!(private[0], 9, "the refused purge changed nothing");
    // SAFETY: as above.
    let mut shared = unsafe { MapOptions::new().map_mut(&file) }.unwrap();
    shared[page] = 8;
    let err = shared.purge(..).unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::InvalidArgument, "{err}");
    drop(shared);
    let mut bytes = vec![0u8; 2 * page];
    file.read_exact_at(&mut bytes, 0).unwrap();
    assert_eq!((bytes[0], bytes[page]), (7, 8), "the file keeps its data");
}

#[test]
fn transparent_huge_pages_are_observed() {
    let mode = thp_mode();
    let pmd = pmd();
    let mut mem = MapOptions::new().len(4 * pmd).huge_pages(HugePages::Transparent).map_anon().unwrap();
    let outcome = mem.page_outcome().clone();
    match mode.as_deref() {
        Some("always") | Some("madvise") => {
            assert_eq!(outcome.fallback, None);
            assert_eq!(outcome.page_size, pmd);
            assert_eq!(mem.as_ptr() as usize % pmd, 0, "aligned to the huge page size");
            for i in (0..mem.len()).step_by(page_size()) {
                mem[i] = 1;
            }
            let huge = inspect::huge_page_bytes(mem.mapping()).unwrap();
            assert!(huge >= pmd as u64, "AnonHugePages {huge} after MADV_HUGEPAGE + touch");
        }
        _ => assert!(outcome.fallback.is_some(), "a fallback reason when THP is off: {outcome:?}"),
    }
}

#[test]
fn collapse_turns_base_pages_into_huge_pages() {
    let mode = thp_mode();
    // Base pages first: no MADV_HUGEPAGE, so in `madvise` mode the faults get 4 KiB pages.
    let pmd = pmd();
    let mut mem = MapOptions::new().len(4 * pmd).map_anon().unwrap();
    mem.advise(.., Advice::NoHugePage).unwrap();
    mem.fill(3);
    assert_eq!(inspect::huge_page_bytes(mem.mapping()).unwrap(), 0);
    mem.advise(.., Advice::Normal).unwrap(); // NoHugePage would forbid the collapse
    let mem2 = mem;
    // Advice::Normal does not clear VM_NOHUGEPAGE; MADV_HUGEPAGE does.
    mem2.advise(.., Advice::HugePage).unwrap();
    // MADV_COLLAPSE may fail transiently (EAGAIN) when no free 2 MiB block is at hand; retry.
    let mut outcome = mem2.collapse(..).unwrap();
    for _ in 0..10 {
        match &outcome {
            Collapse::NotCollapsed(why) if why.contains("could be allocated now") => {
                std::thread::sleep(std::time::Duration::from_millis(50));
                outcome = mem2.collapse(..).unwrap();
            }
            _ => break,
        }
    }
    match outcome {
        Collapse::Collapsed => {
            let huge = inspect::huge_page_bytes(mem2.mapping()).unwrap();
            assert!(huge >= pmd as u64, "AnonHugePages {huge} after MADV_COLLAPSE");
            assert!(mem2.iter().all(|&b| b == 3), "collapse keeps the contents");
        }
        Collapse::NotCollapsed(why) => {
            assert!(!kernel_at_least(6, 1) || mode.as_deref() == Some("never"), "collapse failed: {why}");
            eprintln!("skipped: MADV_COLLAPSE needs Linux 6.1 and THP not `never` (mode {mode:?}): {why}");
        }
    }
}

#[test]
fn hugetlb_reports_its_fallback() {
    let mut mem = MapOptions::new().len(2 * MIB).huge_pages(HugePages::Hugetlb(None)).map_anon().unwrap();
    let outcome = mem.page_outcome().clone();
    let free: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    if outcome.page_size == page_size() {
        let why = outcome.fallback.expect("a reason for the fallback");
        assert!(why.contains("pool") || why.contains("hugetlb"), "{why}");
    } else {
        assert!(free > 0 || outcome.fallback.is_none());
    }
    mem.fill(1);
}

#[test]
fn guarded_map_rejects_missing_length() {
    assert!(MapOptions::new().map_anon_guarded(1).is_err());
    assert!(MapOptions::new().len(usize::MAX - 4096).map_anon_guarded(1).is_err());
}

/// Regression (review B): `page_outcome` kept claiming huge pages after `remap_anon` moved the
/// map to an address no huge page fits at, or shrank it below one huge page.
#[test]
fn the_page_outcome_follows_a_remap() {
    if !matches!(thp_mode().as_deref(), Some("always") | Some("madvise")) {
        eprintln!("skipped: THP is off");
        return;
    }
    let pmd = pmd();
    let mut mem = MapOptions::new().len(2 * pmd).huge_pages(HugePages::Transparent).map_anon().unwrap();
    assert_eq!(mem.page_outcome().page_size, pmd);
    mem.remap_anon(2 * page_size(), mmkit::RemapOptions::new()).unwrap();
    let outcome = mem.page_outcome().clone();
    assert_eq!(outcome.page_size, page_size(), "a two-page map holds no huge page: {outcome:?}");
    assert!(outcome.fallback.as_deref().is_some_and(|f| f.contains("holds no")), "{outcome:?}");
    // Grown back in place (or moved) to where a huge page fits again: claimed again.
    mem.remap_anon(4 * pmd, mmkit::RemapOptions::new().may_move(true)).unwrap();
    let (base, len) = mem.mapping().kernel_region();
    let fits = base.next_multiple_of(pmd) + pmd <= base + len;
    assert_eq!(mem.page_outcome().page_size == pmd, fits, "{:?} at {base:#x}", mem.page_outcome());
}

/// Regression (review G): a map part of which was sealed with `mseal` (directly: mmkit has no
/// safe call for it) cannot be unmapped on drop (`EPERM`); the drop's `MADV_DONTNEED` fallback
/// then zeroed the sealed read-write pages, which stay mapped for good. The fallback is for
/// the `ENOMEM` of `vm.max_map_count` only.
#[test]
fn a_drop_refused_by_a_seal_keeps_the_sealed_bytes() {
    let page = page_size();
    let mut map = MapOptions::new().len(8 * page).map_anon().unwrap();
    map.fill(7);
    let sealed = map.as_ptr() as usize + 4 * page;
    // SAFETY: mseal(2) of the map's last four pages (raw syscall: no libc wrapper everywhere);
    // it changes no contents and the map is not used afterwards but through its drop.
    let rc = unsafe { libc::syscall(462, sealed, 4 * page, 0) };
    if rc != 0 {
        eprintln!("skipped: mseal: {}", std::io::Error::last_os_error());
        return;
    }
    drop(map);
    // SAFETY: the sealed pages, which the drop could not unmap; read-write, read here only.
    let byte = unsafe { *((sealed + 1) as *const u8) };
    assert_eq!(byte, 7, "the drop zeroed sealed pages");
}
