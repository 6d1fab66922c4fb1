//! The shmem and hugetlb backings against the kernel: page-cache residency (`mincore`),
//! page-table presence (`/proc/self/pagemap`), source call counts, staging, sharing with a
//! forked child through a read-only memfd descriptor, fault-around, spinning handlers, the
//! hugetlb granule, and the refusals (dirty tracking, sharing, staging, an empty pool).

mod support;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mmkit::ErrorKind;
use mmkit_pager::{Backing, Filled, FnSource, PageSource, PagedRegion, ShmemFill, ZeroSource};
use support::{pattern, with_timeout};

fn page() -> usize {
    mmkit::page_size()
}

const SHMEM: [Backing; 2] = [Backing::SharedMemory(ShmemFill::Copy), Backing::SharedMemory(ShmemFill::Continue)];
const CONTINUE: Backing = Backing::SharedMemory(ShmemFill::Continue);

/// A source writing `pattern` (per `granule`), recording every offset it is asked for.
fn pattern_source(calls: Arc<Mutex<Vec<u64>>>, granule: usize) -> impl PageSource {
    FnSource(move |offset, buf: &mut [u8]| {
        calls.lock().unwrap().push(offset);
        let p = offset / granule as u64;
        for (j, b) in buf.iter_mut().enumerate() {
            *b = pattern(p, j);
        }
        Ok(Filled::Data)
    })
}

fn resident(region: &PagedRegion) -> Vec<u64> {
    let res = region.residency(..).unwrap();
    (0..res.pages()).filter(|&p| res.is_resident(p)).collect()
}

/// Whether `/proc/self/pagemap` shows the base page at `addr` present in this process's page
/// table (bit 63).
fn pte_present(addr: usize) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/pagemap").unwrap();
    let mut e = [0u8; 8];
    f.read_exact_at(&mut e, (addr / page() * 8) as u64).unwrap();
    u64::from_ne_bytes(e) >> 63 == 1
}

#[test]
fn shmem_pages_are_filled_once_and_untouched_pages_are_not_resident() {
    with_timeout(60, || {
        for backing in SHMEM {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let pages = 32;
            let region = PagedRegion::builder(pages * page())
                .backing(backing)
                .build(pattern_source(calls.clone(), page()))
                .unwrap();
            assert_eq!(region.backing(), backing);
            assert_eq!(region.granule(), page());
            assert_eq!(resident(&region), Vec::<u64>::new(), "{backing:?}: nothing in the memfd's page cache yet");
            let s = region.as_slice();
            assert_eq!(s[3 * page() + 5], pattern(3, 5));
            assert_eq!(s[17 * page() + page() - 1], pattern(17, page() - 1));
            assert_eq!(s[3 * page() + 9], pattern(3, 9));
            assert_eq!(resident(&region), vec![3, 17], "{backing:?}");
            assert!(pte_present(region.as_ptr() as usize + 3 * page()));
            assert!(!pte_present(region.as_ptr() as usize + 4 * page()));
            let mut asked = calls.lock().unwrap().clone();
            asked.sort();
            assert_eq!(asked, vec![3 * page() as u64, 17 * page() as u64], "{backing:?}");
            let st = region.stats();
            assert_eq!((st.source_calls, st.data_pages, st.zero_pages, st.failed_pages), (2, 2, 0, 0));
            assert!(region.handler_error().is_none());
        }
    });
}

/// A filled page of a `UFFDIO_CONTINUE` region whose page-table entry is dropped (reclaim to
/// swap, `MADV_PAGEOUT`; here `MADV_DONTNEED` on the shared mapping) keeps its bytes in the
/// memfd's page cache, so the next access is a minor fault for a page the handler filled
/// already: it maps it back with `UFFDIO_CONTINUE`, without asking the source again (the
/// handler only woke the thread, which faulted again forever).
#[test]
fn a_filled_page_whose_mapping_was_dropped_is_mapped_again_not_refilled() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let region =
            PagedRegion::builder(8 * page()).backing(CONTINUE).build(pattern_source(calls.clone(), page())).unwrap();
        let s = region.as_slice();
        assert_eq!(s[3 * page() + 5], pattern(3, 5));
        let addr = region.as_ptr() as usize + 3 * page();
        assert!(pte_present(addr));
        // SAFETY: drops this process's page-table entry of one page of the shared mapping; the
        // memfd keeps the page (nothing reads it meanwhile).
        assert_eq!(unsafe { libc::madvise(addr as *mut libc::c_void, page(), libc::MADV_DONTNEED) }, 0);
        assert!(!pte_present(addr), "MADV_DONTNEED dropped the entry");
        assert_eq!(resident(&region), vec![3], "the page stays in the memfd's page cache");
        assert_eq!(s[3 * page() + 9], pattern(3, 9));
        assert!(pte_present(addr), "mapped again");
        assert_eq!(calls.lock().unwrap().len(), 1, "the source is not asked again");
        assert_eq!(region.stats().source_calls, 1);
        assert!(region.handler_error().is_none());
    });
}

#[test]
fn zero_pages_of_a_shmem_region_read_zero() {
    with_timeout(60, || {
        for backing in SHMEM {
            let region = PagedRegion::builder(4 * page()).backing(backing).build(ZeroSource).unwrap();
            assert!(region.as_slice().iter().all(|&b| b == 0));
            let st = region.stats();
            assert_eq!((st.zero_pages, st.data_pages), (4, 0), "{backing:?}");
        }
    });
}

#[test]
fn staged_pages_are_mapped_without_a_fault_or_a_source_call() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let region =
            PagedRegion::builder(8 * page()).backing(CONTINUE).build(pattern_source(calls.clone(), page())).unwrap();
        let base = region.as_ptr() as usize;
        let bytes: Vec<u8> = (0..2 * page()).map(|i| (i % 253) as u8).collect();
        region.stage(4 * page(), &bytes).unwrap();
        // In the memfd's page cache (mincore) and in this process's page table (pagemap) at once.
        assert_eq!(resident(&region), vec![4, 5]);
        assert!(pte_present(base + 4 * page()) && pte_present(base + 5 * page()));
        assert!(!pte_present(base + 6 * page()) && !pte_present(base + 3 * page()));
        let st = region.stats();
        assert_eq!((st.faults, st.source_calls, st.staged_pages), (0, 0, 2));
        assert_eq!(&region.as_slice()[4 * page()..6 * page()], &bytes[..]);
        assert!(region.is_supplied(4) && region.is_supplied(5) && !region.is_supplied(6));
        // Reading them took no fault and asked nothing.
        assert_eq!((region.stats().faults, region.stats().source_calls), (0, 0));
        assert!(calls.lock().unwrap().is_empty());
        // A page next to them is still served by the source.
        assert_eq!(region.as_slice()[6 * page()], pattern(6, 0));
        assert_eq!(region.stats().source_calls, 1);

        // Refusals: a supplied page, an unaligned range, a range past the end.
        let e = region.stage(5 * page(), &bytes[..page()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains("supplied already"), "{e}");
        assert_eq!(region.stage(1, &bytes[..page()]).unwrap_err().kind(), ErrorKind::Unaligned);
        assert_eq!(region.stage(0, &bytes[..page() - 1]).unwrap_err().kind(), ErrorKind::Unaligned);
        assert_eq!(region.stage(7 * page(), &bytes).unwrap_err().kind(), ErrorKind::OutOfBounds);
    });
}

/// Staging a page with bytes of the region itself (its own bytes included) must not wait
/// forever on a page the call holds: the bytes are read before any page is claimed.
#[test]
fn staging_bytes_of_the_region_itself_does_not_hang() {
    with_timeout(60, || {
        let region = PagedRegion::builder(4 * page())
            .backing(CONTINUE)
            .build(FnSource(|offset, buf: &mut [u8]| {
                buf.fill((offset / page() as u64) as u8 + 1);
                Ok(Filled::Data)
            }))
            .unwrap();
        let bytes = region.as_slice();
        // Its own bytes: reading them supplies the page, so it is then supplied already.
        let e = region.stage(2 * page(), &bytes[2 * page()..3 * page()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(bytes[2 * page()], 3);
        // Overlapping windows: page 0's bytes become page 1.
        region.stage(page(), &bytes[..page()]).unwrap();
        assert_eq!((bytes[0], bytes[page()]), (1, 1));
    });
}

#[test]
fn stage_and_share_are_refused_on_other_backings() {
    with_timeout(60, || {
        for backing in [Backing::Anonymous, Backing::SharedMemory(ShmemFill::Copy)] {
            let region = PagedRegion::builder(2 * page()).backing(backing).build(ZeroSource).unwrap();
            let e = region.stage(0, &vec![1; page()]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            let e = region.share().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
            assert!(e.to_string().contains(backing.name()), "{e}");
        }
    });
}

#[test]
fn dirty_tracking_is_refused_on_shmem_and_hugetlb_backings() {
    with_timeout(60, || {
        for backing in [SHMEM[0], SHMEM[1], Backing::HugeTlb] {
            let e = PagedRegion::builder(2 * page()).backing(backing).track_dirty().build(ZeroSource).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains("anonymous regions only"), "{e}");
        }
    });
}

/// Maps one page of `fd` shared and writable, and unmaps it: `Err(errno)` when refused.
fn map_shared_writable(fd: std::os::fd::RawFd) -> Result<(), i32> {
    // SAFETY: a fresh mapping the kernel places, unmapped at once when it succeeds.
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), page(), libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(p, page()) };
    Ok(())
}

#[test]
fn the_shared_descriptor_is_read_only() {
    with_timeout(60, || {
        let region = PagedRegion::builder(2 * page()).backing(CONTINUE).build(ZeroSource).unwrap();
        let fd = region.share().unwrap();
        let flags = rustix::fs::fcntl_getfl(&fd).unwrap();
        assert_eq!(flags & rustix::fs::OFlags::RWMODE, rustix::fs::OFlags::RDONLY);
        assert_eq!(
            map_shared_writable(fd.as_raw_fd()),
            Err(libc::EACCES),
            "a writable shared mapping of the shared fd must be refused"
        );
        assert!(rustix::io::pwrite(&fd, &[1], 0).is_err());
        assert!(rustix::fs::ftruncate(&fd, 0).is_err());
    });
}

/// A read-only descriptor alone does not stop its holder from writing: `/proc/self/fd/N` of it
/// opens again read-write (a memfd's inode is mode 0777), and a write there would change the
/// bytes behind the region's `&[u8]`. Once shared, the memfd refuses every new write.
#[test]
fn the_shared_descriptor_cannot_be_reopened_for_writing() {
    with_timeout(60, || {
        let region = PagedRegion::builder(4 * page())
            .backing(CONTINUE)
            .fault_around(2)
            .build(FnSource(|offset, buf: &mut [u8]| {
                buf.fill(0xAA); // half-written, then the source fails for page 1
                if offset == page() as u64 {
                    Err(io::Error::from_raw_os_error(libc::EIO))
                } else {
                    Ok(Filled::Data)
                }
            }))
            .unwrap();
        let fd = region.share().unwrap();
        let bytes: &[u8] = region.as_slice();
        assert_eq!(bytes[2 * page()], 0xAA);
        let reopened =
            std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        if let Ok(rw) = reopened {
            assert!(
                rustix::io::pwrite(&rw, &[0x55], (2 * page()) as u64).is_err(),
                "a write through a reopened descriptor"
            );
            assert!(
                map_shared_writable(rw.as_raw_fd()).is_err(),
                "a writable shared mapping through a reopened descriptor"
            );
        }
        assert_eq!(bytes[2 * page()], 0xAA, "the bytes behind the region's &[u8] changed");
        // Pages are still supplied after the seal (fault-around populates through the staging
        // mapping), and a page that fails after sharing leaves no garbage for the peer.
        let mut b = [0u8; 4];
        region.read(0, &mut b).unwrap();
        assert_eq!(b, [0xAA; 4]);
        assert_eq!(region.read(page(), &mut b).unwrap_err().errno(), Some(libc::EIO));
        rustix::io::pread(&fd, &mut b, page() as u64).unwrap();
        assert_eq!(b, [0; 4], "the failed page's partial bytes reached the peer");
    });
}

#[test]
fn a_forked_child_reads_the_supplied_pages_through_the_shared_memfd() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let pages = 4;
        let region = PagedRegion::builder(pages * page())
            .backing(CONTINUE)
            .build(pattern_source(calls.clone(), page()))
            .unwrap();
        assert_eq!(region.as_slice()[2 * page()], pattern(2, 0)); // page 2 supplied
        let fd = region.share().unwrap();
        let raw = fd.as_raw_fd();
        let len = pages * page();
        let pg = page();
        // The child maps the shared memfd read-only and sums page 2 (what the source supplied)
        // and page 3 (never supplied: it reads zeros there, which puts a zero page in the
        // memfd's page cache).
        // SAFETY: the child only makes system calls and reads memory (async-signal-safe).
        let r = unsafe {
            mmkit::process::in_forked_child(move || {
                let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, raw, 0);
                if p == libc::MAP_FAILED {
                    return u64::MAX;
                }
                let p = p as *const u8;
                let mut sum2 = 0u64;
                let mut sum3 = 0u64;
                for j in 0..pg {
                    sum2 += p.add(2 * pg + j).read_volatile() as u64;
                    sum3 += p.add(3 * pg + j).read_volatile() as u64;
                }
                sum2 << 32 | sum3
            })
        }
        .unwrap();
        let expected2: u64 = (0..page()).map(|j| pattern(2, j) as u64).sum();
        assert_eq!(r >> 32, expected2, "the child sees the page the source supplied");
        assert_eq!(r & 0xffff_ffff, 0, "a page never supplied reads zeros in the child");
        // The child's touch put page 3 in the page cache (mincore) but not in our page table:
        // our first access is a minor fault the pager serves from the source, not that zero page.
        assert!(resident(&region).contains(&3));
        assert!(!region.is_supplied(3));
        assert!(!pte_present(region.as_ptr() as usize + 3 * page()));
        assert_eq!(region.as_slice()[3 * page() + 7], pattern(3, 7));
        let mut asked = calls.lock().unwrap().clone();
        asked.sort();
        assert_eq!(asked, vec![2 * page() as u64, 3 * page() as u64]);
        // And now the peer's view shows the source's bytes too.
        let mut b = [0u8; 1];
        rustix::io::pread(&fd, &mut b, (3 * page() + 7) as u64).unwrap();
        assert_eq!(b[0], pattern(3, 7));
    });
}

#[test]
fn a_failed_shmem_page_is_fenced_and_its_partial_bytes_dropped() {
    with_timeout(60, || {
        let region = PagedRegion::builder(2 * page())
            .backing(CONTINUE)
            .build(FnSource(|offset, buf: &mut [u8]| {
                buf.fill(0xAA); // half-written, then the source fails
                if offset == 0 {
                    Err(io::Error::from_raw_os_error(libc::EIO))
                } else {
                    Ok(Filled::Data)
                }
            }))
            .unwrap();
        let mut b = [0u8; 4];
        let e = region.read(0, &mut b).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EIO), "{e}");
        assert_eq!(region.stats().failed_pages, 1);
        // The peer never sees the garbage: the page was punched out of the page cache.
        let fd = region.share().unwrap();
        rustix::io::pread(&fd, &mut b, 0).unwrap();
        assert_eq!(b, [0; 4]);
        region.read(page(), &mut b).unwrap();
        assert_eq!(b, [0xAA; 4]);
    });
}

#[test]
fn fault_around_serves_a_window_per_fault() {
    with_timeout(60, || {
        for backing in [Backing::Anonymous, SHMEM[0], SHMEM[1]] {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let region = PagedRegion::builder(64 * page())
                .backing(backing)
                .fault_around(16)
                .build(pattern_source(calls.clone(), page()))
                .unwrap();
            let s = region.as_slice();
            assert_eq!(s[5], pattern(0, 5));
            assert_eq!(region.stats().faults, 1);
            assert_eq!(resident(&region), (0..16).collect::<Vec<u64>>(), "{backing:?}");
            for p in 1..16 {
                assert_eq!(s[p * page() + 1], pattern(p as u64, 1));
            }
            assert_eq!(region.stats().faults, 1, "{backing:?}: the window took no further fault");
            // A window stops at a page present already.
            assert_eq!(s[40 * page()], pattern(40, 0));
            assert_eq!(s[30 * page()], pattern(30, 0));
            let st = region.stats();
            assert_eq!((st.faults, st.source_calls, st.data_pages), (3, 16 + 16 + 10, 42), "{backing:?}");
            let got: Vec<u64> = resident(&region);
            let want: Vec<u64> = (0..16).chain(30..56).collect();
            assert_eq!(got, want, "{backing:?}");
            assert_eq!(calls.lock().unwrap().len(), 42);
        }
    });
}

#[test]
fn a_failing_neighbour_ends_the_window_without_being_fenced() {
    with_timeout(60, || {
        let region = PagedRegion::builder(16 * page())
            .fault_around(8)
            .build(FnSource(|offset, buf: &mut [u8]| {
                if offset == 5 * mmkit::page_size() as u64 {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                buf.fill(1);
                Ok(Filled::Data)
            }))
            .unwrap();
        assert_eq!(region.as_slice()[0], 1);
        assert_eq!(resident(&region), vec![0, 1, 2, 3, 4]);
        assert!(region.failures().is_empty(), "a speculative page is not fenced");
        assert!(!region.is_supplied(5));
        // Asked again when touched for real, and then it fails for good.
        let mut b = [0u8; 1];
        assert_eq!(region.read(5 * page(), &mut b).unwrap_err().errno(), Some(libc::EIO));
        assert_eq!(region.failures().len(), 1);
        assert_eq!(region.as_slice()[6 * page()], 1);
    });
}

#[test]
fn spinning_handlers_serve_faults_from_several_threads_and_stop_on_drop() {
    with_timeout(60, || {
        for backing in [Backing::Anonymous, CONTINUE] {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let pages = 64;
            let region = PagedRegion::builder(pages * page())
                .backing(backing)
                .handler_threads(2)
                .spin(Duration::from_millis(2))
                .build(pattern_source(calls.clone(), page()))
                .unwrap();
            std::thread::scope(|sc| {
                for t in 0..2 {
                    let region = &region;
                    sc.spawn(move || {
                        for p in (0..pages).rev() {
                            assert_eq!(region.as_slice()[p * page() + t], pattern(p as u64, t));
                        }
                    });
                }
            });
            assert_eq!(calls.lock().unwrap().len(), pages, "{backing:?}: each page asked once");
            drop(region); // must not hang with handlers spinning
        }
    });
}

/// The default hugetlb page size and the free pages of its pool.
fn hugetlb_pool() -> (usize, u64) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let field = |name: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("Hugepagesize") as usize * 1024, field("HugePages_Free"))
}

/// `vmtest/init` sets this after reserving a pool: there the test must run, not skip.
const REQUIRE_HUGETLB: &str = "MMKIT_REQUIRE_HUGETLB";

#[test]
fn a_hugetlb_region_is_served_one_huge_page_per_fault() {
    let (huge, free) = hugetlb_pool();
    if free < 2 {
        assert!(
            std::env::var(REQUIRE_HUGETLB).is_err(),
            "{REQUIRE_HUGETLB} is set but the hugetlb pool has {free} free pages"
        );
        println!("skipped: the hugetlb pool has {free} free pages, the test needs 2 (vm.nr_hugepages; vmtest/run reserves them)");
        return;
    }
    with_timeout(60, move || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let region = PagedRegion::builder(2 * huge)
            .backing(Backing::HugeTlb)
            .build(pattern_source(calls.clone(), huge))
            .unwrap();
        assert_eq!(region.granule(), huge, "the granule is the kernel's huge page size");
        assert_eq!(resident(&region), Vec::<u64>::new());
        let s = region.as_slice();
        assert_eq!(s[huge / 2 + 3], pattern(0, huge / 2 + 3));
        assert_eq!(s[huge - 1], pattern(0, huge - 1));
        assert_eq!(s[0], pattern(0, 0));
        assert_eq!(*calls.lock().unwrap(), vec![0], "one source call for the whole huge page");
        let base_pages = (huge / page()) as u64;
        assert_eq!(resident(&region), (0..base_pages).collect::<Vec<u64>>());
        let st = region.stats();
        assert_eq!((st.source_calls, st.data_pages), (1, 1));
        // A checked read of the second huge page.
        let mut b = [0u8; 8];
        region.read(huge + 100, &mut b).unwrap();
        assert_eq!(b[0], pattern(1, 100));
        assert_eq!(resident(&region).len() as u64, 2 * base_pages);
    });
}

#[test]
fn a_hugetlb_region_with_an_empty_pool_is_refused_naming_the_sysctl() {
    let (_, free) = hugetlb_pool();
    if free != 0 {
        println!("skipped: the hugetlb pool has {free} free pages (this test checks the empty-pool refusal)");
        return;
    }
    with_timeout(60, || {
        let e = PagedRegion::builder(page()).backing(Backing::HugeTlb).build(ZeroSource).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("vm.nr_hugepages"), "{e}");
    });
}

#[test]
fn the_kernel_offers_the_shmem_features_this_file_relies_on() {
    // Linux ≥ 5.14 (the CI VM runs 6.1): every test above runs, none is skipped for features.
    let caps = mmkit_pager::capabilities().unwrap();
    assert!(caps.missing_shmem() && caps.minor_shmem() && caps.missing_hugetlbfs(), "{caps:?}");
}

/// Lengths whose rounding to whole pages overflows (`usize::MAX`) or that no object may have
/// (past `isize::MAX`) are errors on every backing, never a panic (the shmem backing sized its
/// memfd as `len.div_ceil(page) * page`, which overflowed) nor a mapping.
#[test]
fn absurd_lengths_are_errors_on_every_backing() {
    for backing in [Backing::Anonymous, SHMEM[0], SHMEM[1], Backing::HugeTlb] {
        for len in [usize::MAX, usize::MAX - page() + 2, isize::MAX as usize + 1] {
            let r = std::panic::catch_unwind(|| PagedRegion::builder(len).backing(backing).build(ZeroSource));
            let e = r.unwrap_or_else(|_| panic!("{backing:?} of {len:#x} bytes panicked")).unwrap_err();
            // (Without userfaultfd at all, creating any region fails before the length matters.)
            if mmkit_pager::capabilities().is_ok() {
                let kinds = [ErrorKind::OutOfBounds, ErrorKind::Unsupported];
                assert!(kinds.contains(&e.kind()), "{backing:?} of {len:#x} bytes: {e}");
            }
        }
    }
}

/// A huge memfd region costs no memory for its page states until pages are touched: they
/// were written one by one at build (256 MiB resident and seconds for a 1 TiB region).
#[test]
fn a_huge_shmem_region_builds_without_making_its_page_states_resident() {
    const NAME: &str = "a_huge_shmem_region_builds_without_making_its_page_states_resident";
    if support::child_role().as_deref() == Some("huge") {
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
        };
        let len = 1usize << 40;
        let before = rss();
        let region = match PagedRegion::builder(len).backing(CONTINUE).build(ZeroSource) {
            Ok(r) => r,
            Err(e) => {
                println!("HUGE SKIPPED: {e}");
                return;
            }
        };
        let states = (len / page()) as u64;
        let grown = rss().saturating_sub(before);
        assert!(grown < states / 8, "building grew the resident set by {grown:#x} bytes ({states:#x} states)");
        assert_eq!(region.as_slice()[len / 2], 0);
        assert_eq!(region.stats().zero_pages, 1);
        println!("HUGE OK: +{grown:#x} bytes");
        return;
    }
    if support::child_role().is_some() || usize::BITS < 64 {
        return;
    }
    let (status, out) = support::run_child(&[], NAME, "huge", 60);
    assert!(status.success() && (out.contains("HUGE OK") || out.contains("HUGE SKIPPED")), "{status:?}\n{out}");
}
