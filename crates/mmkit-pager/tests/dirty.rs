//! Dirty tracking against the kernel: for each mechanism, the dirty set equals the pages
//! actually written (property test over random read and write sets).

mod support;

use std::sync::Mutex;

use mmkit_pager::{DirtyMechanism, Filled, FnSource, PagedRegion};
use proptest::prelude::*;

/// Soft-dirty clearing is process-wide: the tests of this file take turns.
static TURN: Mutex<()> = Mutex::new(());

const PAGES: usize = 48;

fn page() -> usize {
    mmkit::page_size()
}

fn region(m: DirtyMechanism) -> PagedRegion {
    PagedRegion::builder(PAGES * page())
        .handler_threads(2)
        .track_dirty_with(m)
        .build(FnSource(|off: u64, buf: &mut [u8]| {
            if (off / mmkit::page_size() as u64).is_multiple_of(3) {
                return Ok(Filled::Zero);
            }
            buf.fill((off / mmkit::page_size() as u64) as u8);
            Ok(Filled::Data)
        }))
        .unwrap()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = rel.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

fn check(m: DirtyMechanism, reads: &[usize], w1: &[usize], w2: &[usize]) {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let mut r = region(m);
    assert_eq!(r.dirty_mechanism(), Some(m));
    if m == DirtyMechanism::SoftDirty {
        // Soft-dirty counts pages the pager supplies after the start: supply them all first.
        r.prefetch(0, r.len()).unwrap();
        r.collect_dirty().unwrap();
    }
    for &p in reads {
        assert_eq!(r.as_slice()[p * page() + 1], if p % 3 == 0 { 0 } else { p as u8 });
    }
    assert_eq!(r.collect_dirty().unwrap().pages, Vec::<u64>::new(), "{m:?}: reads are not writes");
    for (round, writes) in [w1, w2].into_iter().enumerate() {
        for &p in writes {
            r.as_mut_slice()[p * page() + 7] = 0xEE;
        }
        let mut want: Vec<u64> = writes.iter().map(|&p| p as u64).collect();
        want.sort();
        want.dedup();
        let got = r.collect_dirty().unwrap();
        assert_eq!(got.mechanism, m);
        assert_eq!(got.pages, want, "{m:?} round {round}");
    }
    for p in w1.iter().chain(w2) {
        assert_eq!(r.as_slice()[p * page() + 7], 0xEE);
    }
}

/// The mechanisms this kernel offers (soft-dirty needs CONFIG_MEM_SOFT_DIRTY, which some
/// kernels lack: then asking for it must be a clear error).
fn mechanisms() -> Vec<DirtyMechanism> {
    DirtyMechanism::ALL.into_iter().filter(|m| m.is_available().unwrap()).collect()
}

#[test]
fn an_unavailable_mechanism_is_a_clear_error() {
    for m in DirtyMechanism::ALL {
        if !m.is_available().unwrap() {
            let err = PagedRegion::builder(page()).track_dirty_with(m).build(mmkit_pager::ZeroSource).unwrap_err();
            assert_eq!(err.kind(), mmkit::ErrorKind::Unsupported);
            assert!(err.to_string().contains(m.name()), "{err}");
        }
    }
    assert!(DirtyMechanism::WriteProtect.is_available().unwrap(), "every kernel since 5.7");
}

#[test]
fn the_best_mechanism_matches_the_kernel() {
    let caps = mmkit_pager::capabilities().unwrap();
    let best = DirtyMechanism::best(&caps);
    println!("dirty tracking here: {}", best.name());
    if kernel_at_least(6, 7) {
        assert_eq!(best, DirtyMechanism::PagemapScan);
    } else if kernel_at_least(5, 7) {
        assert_eq!(best, DirtyMechanism::WriteProtect);
    }
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let r = PagedRegion::builder(page()).track_dirty().build(mmkit_pager::ZeroSource).unwrap();
    assert_eq!(r.dirty_mechanism(), Some(best));
    let plain = PagedRegion::new(page(), mmkit_pager::ZeroSource).unwrap();
    assert!(plain.collect_dirty().is_err());
}

#[test]
fn fixed_write_sets() {
    support::with_timeout(120, || {
        for m in mechanisms() {
            check(m, &[], &[0, 1, 2, 47], &[]);
            check(m, &[5, 6, 7], &[6, 9], &[9, 10, 6]);
            check(m, &(0..PAGES).collect::<Vec<_>>(), &(0..PAGES).collect::<Vec<_>>(), &[3]);
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn dirty_sets_equal_the_pages_written(
        reads in proptest::collection::vec(0..PAGES, 0..PAGES),
        w1 in proptest::collection::vec(0..PAGES, 0..PAGES),
        w2 in proptest::collection::vec(0..PAGES, 0..8),
    ) {
        support::with_timeout(60, move || {
            for m in mechanisms() {
                check(m, &reads, &w1, &w2);
            }
        });
    }
}

/// Soft-dirty bits are cleared for the whole process: a second region tracked with them would
/// lose the first one's writes at each of its collections (and the first the second's). A
/// second is refused while the first lives. Where the kernel has no soft-dirty bits, the
/// request is an error anyway (`an_unavailable_mechanism_is_a_clear_error`).
#[test]
fn only_one_region_at_a_time_tracks_with_soft_dirty_bits() {
    if !DirtyMechanism::SoftDirty.is_available().unwrap() {
        eprintln!("skipped: this kernel has no soft-dirty bits (CONFIG_MEM_SOFT_DIRTY)");
        return;
    }
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let first = region(DirtyMechanism::SoftDirty);
    let err = PagedRegion::builder(page())
        .track_dirty_with(DirtyMechanism::SoftDirty)
        .build(mmkit_pager::ZeroSource)
        .unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("another region"), "{err}");
    drop(first);
    drop(region(DirtyMechanism::SoftDirty));
}
