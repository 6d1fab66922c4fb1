//! MapAlloc: as the global allocator of this test binary (so the harness's threads use it),
//! and as an arena under a randomized workload that checks every block's bytes.

#[path = "support/fork.rs"]
mod fork;

use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

use mmkit::alloc::MapAlloc;
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: MapAlloc = MapAlloc::new().with_thp(4 << 20);

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// The THP (PMD) size: 2 MiB with 4 KiB pages, 32 MiB with 16 KiB pages.
fn pmd() -> usize {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .map_or(2 * MIB, |s| s.trim().parse().unwrap())
}

fn is_mapped(addr: usize) -> bool {
    mmkit::inspect::maps(std::process::id()).unwrap().iter().any(|e| e.start <= addr as u64 && (addr as u64) < e.end)
}

#[test]
fn global_allocator_serves_large_vectors_from_mappings() {
    let before = GLOBAL.stats();
    let mut v = vec![7u8; 3 * MIB];
    assert_eq!(v.as_ptr() as usize % mmkit::page_size(), 0, "a mapped block is page-aligned");
    let mid = GLOBAL.stats();
    assert!(mid.maps + mid.cache_hits > before.maps + before.cache_hits);
    v.resize(64 * MIB, 9); // realloc → mremap
    assert!(v[..3 * MIB].iter().all(|&b| b == 7));
    assert!(v[3 * MIB..].iter().all(|&b| b == 9));
    assert!(GLOBAL.stats().remaps > before.remaps);
    let z = vec![0u8; 5 * MIB]; // alloc_zeroed
    assert!(z.iter().all(|&b| b == 0));
    let mut small = Vec::with_capacity(100); // system allocator
    small.resize(100, 1u8);
    assert_eq!(small.iter().map(|&b| b as usize).sum::<usize>(), 100);
}

#[test]
fn global_allocator_is_correct_under_threads() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = 0x9E37_79B9u64 ^ t;
                let mut live: Vec<Vec<u8>> = Vec::new();
                for i in 0..150 {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let size = 128 * KIB + (rng >> 40) as usize % (3 * MIB);
                    let tag = (t as u8).wrapping_mul(31).wrapping_add(i as u8);
                    live.push(vec![tag; size]);
                    if rng & 3 == 0 && !live.is_empty() {
                        let idx = (rng >> 20) as usize % live.len();
                        let v = live.swap_remove(idx);
                        assert!(v.iter().all(|&b| b == v[0]), "a block kept its bytes");
                    }
                    if live.len() > 12 {
                        let v = live.remove(0);
                        assert!(v.iter().all(|&b| b == v[0]));
                    }
                }
                for v in live {
                    assert!(v.iter().all(|&b| b == v[0]));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn freed_memory_is_returned_after_decay() {
    let arena = MapAlloc::new().with_decay(Duration::from_millis(50));
    let layout = Layout::from_size_align(8 * MIB, 8).unwrap();
    // SAFETY: a valid non-zero layout; the block is written within bounds and freed once.
    let p = unsafe { arena.alloc(layout) };
    assert!(!p.is_null());
    // SAFETY: as above.
    unsafe { p.write_bytes(1, 8 * MIB) };
    let s = arena.stats();
    assert_eq!(s.live_bytes, 8 * MIB);
    assert_eq!(s.resident_bytes, 8 * MIB);
    assert_eq!(fork::rss_in(p as usize, 8 * MIB), 8 * MIB as u64, "smaps agrees");
    // SAFETY: freed once with its layout.
    unsafe { arena.dealloc(p, layout) };
    let s = arena.stats();
    assert_eq!((s.live_bytes, s.cached_bytes), (0, 8 * MIB));
    assert_eq!((s.resident_bytes, s.cached_resident_bytes), (0, 0), "the cache keeps address space, not memory");
    assert_eq!(s.purges, 1);
    assert!(is_mapped(p as usize));
    assert_eq!(fork::rss_in(p as usize, 8 * MIB), 0, "the kernel took the pages back at once");
    // Reuse within the decay time is a cache hit at the same address, with no new mmap, and
    // the purged block reads back as zeros.
    let maps = s.maps;
    // SAFETY: as above.
    let q = unsafe { arena.alloc(layout) };
    assert_eq!(q, p);
    assert_eq!(arena.stats().maps, maps);
    assert_eq!(arena.stats().cache_hits, 1);
    // SAFETY: a live block of 8 MiB.
    assert!(unsafe { std::slice::from_raw_parts(q, 8 * MIB) }.iter().all(|&b| b == 0));
    // SAFETY: freed once.
    unsafe { arena.dealloc(q, layout) };

    std::thread::sleep(Duration::from_millis(120));
    arena.purge_expired();
    let s = arena.stats();
    assert_eq!((s.cached_bytes, s.resident_bytes), (0, 0));
    assert!(!is_mapped(p as usize), "the mapping is gone: its address space went back to the kernel");
}

/// A decay past `u64::MAX` nanoseconds was cut to its low 64 bits: 2^64 ns (584 years) became
/// 0, and every freed block was unmapped at once instead of cached.
#[test]
fn a_decay_of_centuries_is_not_cut_to_nothing() {
    let arena = MapAlloc::new().with_decay(Duration::new(18_446_744_073, 709_551_616));
    drop(arena.alloc_block(1 << 20).unwrap());
    arena.purge_expired();
    assert_eq!(arena.stats().cached_bytes, 1 << 20);
}

#[test]
fn resident_cache_keeps_pages_within_its_budget() {
    let arena = MapAlloc::new().with_resident_cache(8 * MIB);
    let mut a = arena.alloc_block(8 * MIB).unwrap();
    a.fill(5);
    let pa = a.as_ptr() as usize;
    let mut b = arena.alloc_block(8 * MIB).unwrap();
    b.fill(6);
    drop(a); // fits the resident budget: keeps its pages
    drop(b); // the budget is full: its pages are dropped
    let s = arena.stats();
    assert_eq!((s.cached_bytes, s.cached_resident_bytes, s.resident_bytes), (16 * MIB, 8 * MIB, 8 * MIB));
    assert_eq!(s.purges, 1);
    assert_eq!(fork::rss_in(pa, 8 * MIB), 8 * MIB as u64);
    // The resident block is preferred, and alloc_zeroed still gets zeros from it.
    let layout = Layout::from_size_align(8 * MIB, 8).unwrap();
    // SAFETY: a valid layout; the block is read within bounds and freed once.
    unsafe {
        let z = arena.alloc_zeroed(layout);
        assert_eq!(z as usize, pa);
        assert!(std::slice::from_raw_parts(z, 8 * MIB).iter().all(|&b| b == 0));
        arena.dealloc(z, layout);
    }
}

#[test]
fn stats_count_every_live_block() {
    // More live blocks than the old fixed-size table held (1024).
    let arena = MapAlloc::new().with_max_cached(0);
    let page = mmkit::page_size();
    let mut blocks: Vec<_> = (0..1500).map(|_| arena.alloc_block(128 * KIB).unwrap()).collect();
    for b in blocks.iter_mut() {
        b[0] = 1; // one resident page each
    }
    // With THP `always`, neighbouring blocks merge into one VMA and a touched page may bring
    // in a whole huge page: resident then lies between one page and the block per block.
    let always =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").is_ok_and(|s| s.contains("[always]"));
    let resident_ok = |resident: usize, n: usize| {
        if always {
            (n * page..=n * 128 * KIB).contains(&resident)
        } else {
            resident == n * page
        }
    };
    let s = arena.stats();
    assert_eq!(s.untracked_blocks, 0);
    assert_eq!(s.live_bytes, 1500 * 128 * KIB);
    assert!(resident_ok(s.resident_bytes, 1500), "{s:?}");
    blocks.truncate(500);
    let s = arena.stats();
    assert_eq!((s.live_bytes, s.cached_bytes), (500 * 128 * KIB, 0));
    assert!(resident_ok(s.resident_bytes, 500), "{s:?}");
    drop(blocks);
    assert_eq!(arena.stats().resident_bytes, 0);
}

#[test]
fn thp_block_split_from_the_cache_ends_its_mapping() {
    // Sizes in units of 1 MiB with 2 MiB huge pages, scaled with the huge page size.
    let unit = pmd() / 2;
    let arena = MapAlloc::new().with_thp(2 * MIB);
    let big = arena.alloc_block(8 * unit).unwrap();
    let p = big.as_ptr() as u64;
    drop(big);
    let mut b = arena.alloc_block(3 * unit).unwrap();
    assert_eq!(b.as_ptr() as u64, p, "best fit from the cache");
    b.fill(1);
    // The rest of the old mapping is gone, so no huge page can straddle the block's end and
    // put bytes nobody uses in RSS.
    let maps = mmkit::inspect::maps(std::process::id()).unwrap();
    let area = maps.iter().find(|e| e.start <= p && p < e.end).unwrap();
    assert_eq!(area.end, p + 3 * unit as u64);
    assert_eq!(arena.stats().resident_bytes, 3 * unit);
}

#[test]
fn zeroed_allocations_from_the_cache_are_zero() {
    for arena in [MapAlloc::new(), MapAlloc::new().with_resident_cache(MIB)] {
        let layout = Layout::from_size_align(MIB, 8).unwrap();
        // SAFETY: valid layouts, in-bounds writes, each block freed once.
        unsafe {
            let p = arena.alloc(layout);
            p.write_bytes(0xFF, MIB);
            arena.dealloc(p, layout);
            let q = arena.alloc_zeroed(layout);
            assert_eq!(q, p, "served from the cache");
            assert!(std::slice::from_raw_parts(q, MIB).iter().all(|&b| b == 0));
            arena.dealloc(q, layout);
        }
    }
}

#[test]
fn cache_respects_its_limit_and_thp_blocks_are_aligned() {
    // Sizes in units of 1 MiB with 2 MiB huge pages, scaled with the huge page size.
    let (unit, pmd) = (pmd() / 2, pmd());
    let arena = MapAlloc::new().with_max_cached(4 * unit).with_thp(2 * MIB);
    let big = arena.alloc_block(6 * unit).unwrap();
    assert_eq!(big.as_ptr() as usize % pmd, 0);
    drop(big); // larger than the cache: unmapped at once
    assert_eq!(arena.stats().cached_bytes, 0);
    let a = arena.alloc_block(3 * unit).unwrap();
    let b = arena.alloc_block(3 * unit).unwrap();
    drop(a);
    drop(b); // evicts `a` to stay under 4 units
    assert_eq!(arena.stats().cached_bytes, 3 * unit);
    arena.purge_all();
    assert_eq!(arena.stats().mapped_bytes, 0);
}

#[test]
fn huge_blocks_get_huge_pages() {
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let arena = MapAlloc::new().with_thp(2 * MIB);
    // Four huge pages' worth, whatever the huge page size.
    let mut block = arena.alloc_block(4 * pmd()).unwrap();
    block.fill(1);
    let addr = block.as_ptr() as u64;
    let huge: u64 = mmkit::inspect::smaps(std::process::id())
        .unwrap()
        .iter()
        .filter(|a| a.area.start <= addr && addr < a.area.end)
        .map(|a| a.stats.anon_huge_pages)
        .sum();
    if thp.contains("[madvise]") || thp.contains("[always]") {
        assert!(huge >= pmd() as u64 / 1024, "AnonHugePages {huge} KiB");
    } else {
        eprintln!(
            "skipped: transparent huge pages are off here ({:?}): the block is checked only for its contents",
            thp.trim()
        );
    }
}

#[test]
fn block_growth_keeps_contents() {
    let arena = MapAlloc::new().with_thp(2 * MIB);
    let mut b = arena.alloc_block(4 * KIB).unwrap();
    b.fill(3);
    let mut len = 4 * KIB;
    while len < 64 * MIB {
        len *= 2;
        b.grow(len).unwrap();
        assert_eq!(b.len(), len);
        assert!(b[..len / 2].iter().all(|&x| x == 3));
        b[len / 2..].fill(3);
    }
    b.grow(MIB).unwrap();
    assert!(b.iter().all(|&x| x == 3));
}

#[test]
fn shrinking_a_block_returns_its_tail_pages() {
    let arena = MapAlloc::new().with_thp(2 * MIB);
    let mut b = arena.alloc_block(8 * MIB).unwrap();
    b.fill(2);
    assert_eq!(arena.stats().resident_bytes, 8 * MIB);
    let page = mmkit::page_size();
    b.grow(MIB + page).unwrap(); // mremap shrink: the tail is unmapped, a huge page split
    assert!(b.iter().all(|&x| x == 2));
    let s = arena.stats();
    assert_eq!((s.live_bytes, s.resident_bytes, s.cached_bytes), (MIB + page, MIB + page, 0));
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    Free(usize),
    Realloc(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..MIB + MIB / 2).prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), 1usize..2 * MIB).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

/// Fills `[from, to)` of the block with the tag, and stamps each 4093-byte stride with its
/// index, so a block that lost, moved or mixed pages is caught.
///
/// # Safety
/// `p..p + to` must be a live block.
unsafe fn fill(p: *mut u8, from: usize, to: usize, tag: u8) {
    // SAFETY: in bounds (caller).
    unsafe { p.add(from).write_bytes(tag, to - from) };
    for i in (from.div_ceil(4093) * 4093..to).step_by(4093) {
        // SAFETY: `i < to`.
        unsafe { p.add(i).write(tag ^ (i / 4093) as u8) };
    }
}

/// Whether the first `len` bytes are what [`fill`] wrote.
///
/// # Safety
/// `p..p + len` must be a live block.
unsafe fn check(p: *const u8, len: usize, tag: u8) -> bool {
    // SAFETY: in bounds (caller).
    let got = unsafe { std::slice::from_raw_parts(p, len) };
    got.chunks(4093).enumerate().all(|(k, c)| c[0] == tag ^ k as u8 && c[1..].iter().all(|&b| b == tag))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random allocations, frees and reallocs (crossing the mapping threshold both ways):
    /// every live block keeps its bytes, and after the decay everything cached is returned.
    #[test]
    fn arena_keeps_every_block(ops in proptest::collection::vec(op(), 1..60), keep in any::<bool>()) {
        let arena = MapAlloc::new()
            .with_threshold(64 * KIB)
            .with_thp(MIB)
            .with_decay(Duration::from_millis(5))
            .with_max_cached(16 * MIB)
            .with_resident_cache(if keep { 4 * MIB } else { 0 });
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut tag = 0u8;
        for op in ops {
            match op {
                Op::Alloc(size) => {
                    tag = tag.wrapping_add(1);
                    let layout = Layout::from_size_align(size, 16).unwrap();
                    // SAFETY: valid non-zero layout; written within bounds.
                    let p = unsafe { arena.alloc(layout) };
                    prop_assert!(!p.is_null());
                    // SAFETY: in bounds of the block.
                    unsafe { fill(p, 0, size, tag) };
                    live.push((p, layout, tag));
                }
                Op::Free(i) if !live.is_empty() => {
                    let (p, layout, t) = live.swap_remove(i % live.len());
                    // SAFETY: a live block of `layout.size()` bytes.
                    let ok = unsafe { check(p, layout.size(), t) };
            prop_assert!(ok);
                    // SAFETY: freed once with its layout.
                    unsafe { arena.dealloc(p, layout) };
                }
                Op::Realloc(i, new_size) if !live.is_empty() => {
                    let i = i % live.len();
                    let (p, layout, t) = live[i];
                    // SAFETY: a live block, valid new size with the same alignment.
                    let q = unsafe { arena.realloc(p, layout, new_size) };
                    prop_assert!(!q.is_null());
                    let keep = layout.size().min(new_size);
                    // SAFETY: the first `keep` bytes were preserved by realloc.
                    let ok = unsafe { check(q, keep, t) };
                    prop_assert!(ok);
                    // SAFETY: in bounds of the new block.
                    unsafe { fill(q, keep, new_size, t) };
                    live[i] = (q, Layout::from_size_align(new_size, 16).unwrap(), t);
                }
                _ => {}
            }
        }
        for (p, layout, t) in live.drain(..) {
            // SAFETY: live blocks, checked then freed once.
            let ok = unsafe { check(p, layout.size(), t) };
            prop_assert!(ok);
            // SAFETY: freed once.
            unsafe { arena.dealloc(p, layout) };
        }
        let s = arena.stats();
        prop_assert_eq!(s.live_bytes, 0);
        std::thread::sleep(Duration::from_millis(20));
        arena.purge_expired();
        let s = arena.stats();
        prop_assert_eq!((s.cached_bytes, s.resident_bytes, s.mapped_bytes), (0, 0, 0));
    }
}
