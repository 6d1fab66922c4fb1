//! PagedRegion against the kernel: residency (mincore), source call counts, concurrent faults,
//! failing sources, fork, files.

mod support;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mmkit_pager::{FileSource, Filled, FnSource, PagedRegion, ZeroSource};
use support::{child_role, pattern, run_child, with_timeout};

fn page() -> usize {
    mmkit::page_size()
}

/// A source writing `pattern`, recording every offset it is asked for.
fn pattern_source(calls: Arc<Mutex<Vec<u64>>>) -> impl mmkit_pager::PageSource {
    FnSource(move |offset, buf: &mut [u8]| {
        calls.lock().unwrap().push(offset);
        let p = offset / mmkit::page_size() as u64;
        for (j, b) in buf.iter_mut().enumerate() {
            *b = pattern(p, j);
        }
        Ok(Filled::Data)
    })
}

#[test]
fn touched_pages_are_filled_once_and_untouched_pages_stay_missing() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let pages = 64;
        let region = PagedRegion::new(pages * page(), pattern_source(calls.clone())).unwrap();
        assert_eq!(region.residency(..).unwrap().resident_pages(), 0);
        let s = region.as_slice();
        assert_eq!(s[3 * page() + 5], pattern(3, 5));
        assert_eq!(s[40 * page() + page() - 1], pattern(40, page() - 1));
        assert_eq!(s[3 * page() + 7], pattern(3, 7)); // present now: no second call
        let res = region.residency(..).unwrap();
        let resident: Vec<u64> = (0..pages as u64).filter(|&p| res.is_resident(p)).collect();
        assert_eq!(resident, vec![3, 40], "mincore sees exactly the touched pages");
        let mut asked = calls.lock().unwrap().clone();
        asked.sort();
        assert_eq!(asked, vec![3 * page() as u64, 40 * page() as u64]);
        let st = region.stats();
        assert_eq!((st.source_calls, st.data_pages, st.zero_pages, st.failed_pages), (2, 2, 0, 0));
        assert!(region.handler_error().is_none());
    });
}

#[test]
fn every_page_equals_the_source() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let pages = 32;
        let region =
            PagedRegion::builder(pages * page()).handler_threads(2).build(pattern_source(calls.clone())).unwrap();
        for (i, b) in region.as_slice().iter().enumerate() {
            assert_eq!(*b, pattern((i / page()) as u64, i % page()), "byte {i:#x}");
        }
        assert_eq!(calls.lock().unwrap().len(), pages);
        assert_eq!(region.residency(..).unwrap().resident_pages(), pages as u64);
    });
}

#[test]
fn concurrent_faults_on_one_page_are_served_once() {
    with_timeout(60, || {
        for round in 0..5 {
            let calls = Arc::new(AtomicU64::new(0));
            let c = calls.clone();
            let region = PagedRegion::builder(4 * page())
                .handler_threads(2)
                .build(FnSource(move |_off, buf: &mut [u8]| {
                    c.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30)); // every thread faults meanwhile
                    buf.fill(0xA5);
                    Ok(Filled::Data)
                }))
                .unwrap();
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (region, barrier) = (&region, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let v = if t % 2 == 0 {
                            region.as_slice()[page() + t]
                        } else {
                            let mut b = [0u8; 1];
                            region.read(page() + t, &mut b).unwrap(); // the checked face races too
                            b[0]
                        };
                        assert_eq!(v, 0xA5);
                    });
                }
            });
            assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}: one fill for eight faults");
            assert_eq!(region.stats().data_pages, 1);
        }
    });
}

/// Threads faulting on every page of a range while others `prefetch` and `read` it (which
/// wake a run of present pages with one `UFFDIO_WAKE`): every waiter is woken with its page's
/// bytes, and each page is asked of the source once.
#[test]
fn faults_racing_with_prefetch_and_read_of_whole_runs_all_complete() {
    with_timeout(60, || {
        let pages = 48;
        for round in 0..3 {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let c = calls.clone();
            let region = PagedRegion::builder(pages * page())
                .handler_threads(2)
                .build(FnSource(move |offset, buf: &mut [u8]| {
                    c.lock().unwrap().push(offset);
                    std::thread::sleep(Duration::from_micros(300)); // faults queue up meanwhile
                    let p = offset / mmkit::page_size() as u64;
                    for (j, b) in buf.iter_mut().enumerate() {
                        *b = pattern(p, j);
                    }
                    Ok(Filled::Data)
                }))
                .unwrap();
            let barrier = std::sync::Barrier::new(8);
            std::thread::scope(|s| {
                for t in 0..6 {
                    let (region, barrier) = (&region, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        // Every page, from a different start per thread.
                        for k in 0..pages {
                            let p = (k * 7 + t * 5) % pages;
                            assert_eq!(region.as_slice()[p * page() + t], pattern(p as u64, t), "page {p}");
                        }
                    });
                }
                let (region, barrier) = (&region, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for start in (0..pages).step_by(5) {
                        region.prefetch(start * page(), (pages - start) * page()).unwrap();
                    }
                });
                s.spawn(move || {
                    barrier.wait();
                    let mut buf = vec![0u8; pages * page()];
                    for _ in 0..4 {
                        region.read(0, &mut buf).unwrap();
                        assert!((0..pages).all(|p| buf[p * page() + 3] == pattern(p as u64, 3)));
                    }
                });
            });
            let mut asked = calls.lock().unwrap().clone();
            asked.sort();
            asked.dedup();
            assert_eq!(asked.len(), calls.lock().unwrap().len(), "round {round}: a page asked twice");
            assert_eq!(asked.len(), pages);
        }
    });
}

/// A source that writes part of its page leaves the rest zero: the fill buffer is reused from
/// page to page, and its unwritten bytes were the previous page's (another page's data as this
/// one's).
#[test]
fn a_source_that_writes_part_of_a_page_leaves_the_rest_zero() {
    with_timeout(60, || {
        let g = page();
        for around in [1, 4] {
            let region = PagedRegion::builder(16 * g)
                .fault_around(around)
                .build(FnSource(move |offset, buf: &mut [u8]| {
                    if offset % (4 * mmkit::page_size() as u64) == 0 {
                        buf.fill(0xff);
                    } else {
                        buf[..10].fill(1);
                    }
                    Ok(Filled::Data)
                }))
                .unwrap();
            let s = region.as_slice();
            assert_eq!(s[g - 1], 0xff);
            assert_eq!(&s[g..g + 11], &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], "around {around}");
            assert!(s[g + 10..2 * g].iter().all(|&b| b == 0), "around {around}: page 1 holds stale bytes");
            // The checked read fills with a buffer of its own, after a page of 0xff.
            let mut b = vec![0u8; 2 * g];
            region.read(8 * g, &mut b).unwrap();
            assert_eq!(b[g - 1], 0xff);
            assert!(b[g + 10..].iter().all(|&b| b == 0), "around {around}: read page 9 holds stale bytes");
        }
    });
}

/// A source call that blocks holds its handler thread only: the other handler thread serves
/// other faults, and the checked read fills other pages from its own thread meanwhile.
/// Regression: a handler thread read up to 16 fault messages at once and served them one after
/// the other, so a fault queued beside one whose source blocks waited for that call although
/// the other handler threads were idle (7 of 20 runs of two simultaneous faults, 1.5 s each).
/// Here both handler threads are held in source calls while two faults queue, one on a page
/// whose source then takes 3 s: the other must not wait for it.
#[test]
fn a_fault_queued_beside_a_blocked_source_call_is_served_by_another_handler_thread() {
    with_timeout(60, || {
        let (gate, slow) = (3u64, 4u64);
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let o = open.clone();
        let region = PagedRegion::builder(16 * page())
            .handler_threads(2)
            .build(FnSource(move |offset, buf: &mut [u8]| {
                let p = offset / mmkit::page_size() as u64;
                let start = std::time::Instant::now();
                while p < 2 && !o.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if p == slow {
                    std::thread::sleep(Duration::from_secs(gate));
                }
                buf.fill(p as u8 | 1);
                Ok(Filled::Data)
            }))
            .unwrap();
        std::thread::scope(|s| {
            // Both handler threads held (pages 0 and 1), then two faults queued behind them.
            let held: Vec<_> = (0..2)
                .map(|p| {
                    s.spawn({
                        let r = &region;
                        move || r.as_slice()[p * page()]
                    })
                })
                .collect();
            let start = std::time::Instant::now();
            while region.stats().source_calls < 2 {
                // Before the fix one thread read both faults and held the second behind the first.
                assert!(start.elapsed() < Duration::from_secs(5), "page 1 waited behind page 0's source call");
                std::thread::sleep(Duration::from_millis(1));
            }
            let slow_fault = s.spawn(|| region.as_slice()[slow as usize * page()]);
            let other = s.spawn(|| {
                let v = region.as_slice()[9 * page()];
                (v, std::time::Instant::now())
            });
            // Their fault messages wait in the userfaultfd (nobody reads while both handler
            // threads are held: `stats().faults` counts messages read), queued by now.
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(region.stats().faults, 2);
            let released = std::time::Instant::now();
            open.store(true, Ordering::SeqCst);
            let (v, served) = other.join().unwrap();
            assert_eq!(v, 9 | 1);
            let waited = served.duration_since(released);
            assert!(waited < Duration::from_secs(gate) / 2, "page 9 waited {waited:?} for page {slow}'s source call");
            assert_eq!(slow_fault.join().unwrap(), slow as u8 | 1);
            for h in held {
                h.join().unwrap();
            }
        });
    });
}

#[test]
fn a_blocked_source_call_holds_one_handler_thread_not_the_region() {
    with_timeout(60, || {
        let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = release.clone();
        let region = PagedRegion::builder(4 * page())
            .handler_threads(2)
            .build(FnSource(move |offset, buf: &mut [u8]| {
                let start = std::time::Instant::now();
                while offset == 0 && !r.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(20) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                buf.fill(offset as u8 | 1);
                Ok(Filled::Data)
            }))
            .unwrap();
        std::thread::scope(|s| {
            let blocked = s.spawn(|| region.as_slice()[7]);
            while region.stats().source_calls == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let start = std::time::Instant::now();
            assert_eq!(region.as_slice()[page()], page() as u8 | 1);
            let mut b = [0u8; 1];
            region.read(2 * page(), &mut b).unwrap();
            assert_eq!(b[0], (2 * page()) as u8 | 1);
            assert!(start.elapsed() < Duration::from_secs(10), "other pages waited for the blocked call");
            assert!(!blocked.is_finished());
            release.store(true, Ordering::SeqCst);
            assert_eq!(blocked.join().unwrap(), 1);
        });
    });
}

#[test]
fn zero_source_maps_zero_pages() {
    with_timeout(60, || {
        let mut region = PagedRegion::new(8 * page(), ZeroSource).unwrap();
        assert!(region.as_slice()[..2 * page()].iter().all(|&b| b == 0));
        region.as_mut_slice()[5 * page()] = 9; // a write fault on a missing page: zero, then the write
        assert_eq!(region.as_slice()[5 * page()], 9);
        let st = region.stats();
        assert_eq!((st.zero_pages, st.data_pages), (3, 0));
    });
}

#[test]
fn failing_source_gives_an_error_through_the_checked_read() {
    with_timeout(60, || {
        let region = PagedRegion::new(
            4 * page(),
            FnSource(|off, buf: &mut [u8]| {
                if off == 2 * mmkit::page_size() as u64 {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                buf.fill(1);
                Ok(Filled::Data)
            }),
        )
        .unwrap();
        let mut buf = vec![0u8; page()];
        region.read(page(), &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 1));
        let err = region.read(2 * page() + 8, &mut buf[..16]).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EIO), "{err}");
        assert!(err.to_string().contains("page source fill"), "{err}");
        // The errno is said once (it was: "Input/output error (EIO): Input/output error (os error 5)").
        assert_eq!(err.to_string().matches("Input/output error").count(), 1, "{err}");
        // Asked again, the page stays failed and the source is not asked twice.
        assert!(region.read(2 * page(), &mut buf[..1]).is_err());
        assert_eq!(region.stats().source_calls, 2);
        let f = region.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].offset, 2 * page() as u64);
        // The other pages are unaffected, and mincore never shows the failed page resident.
        region.read(3 * page(), &mut buf).unwrap();
        assert!(!region.residency(..).unwrap().is_resident(2));
    });
}

#[test]
fn retry_policy_recovers_a_transient_error() {
    with_timeout(60, || {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let region = PagedRegion::builder(page())
            .retry(3, Duration::from_millis(1))
            .build(FnSource(move |_, buf: &mut [u8]| {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "flaky store"));
                }
                buf.fill(7);
                Ok(Filled::Data)
            }))
            .unwrap();
        assert_eq!(region.as_slice()[10], 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(region.failures().is_empty());
    });
}

/// Touching a failed page through the plain slice ends the process with the fence's signal:
/// never a hang, never garbage. Run in a re-executed child, which the parent times out.
#[test]
fn touching_a_failed_page_raises_the_fence_signal() {
    let role = child_role();
    if role.as_deref() == Some("touch-failed") || role.as_deref() == Some("touch-panicked") {
        let panics = role.as_deref() == Some("touch-panicked");
        let region = PagedRegion::builder(2 * page())
            .handler_threads(2)
            .build(FnSource(move |off, buf: &mut [u8]| {
                if off > 0 && panics {
                    panic!("source bug");
                }
                if off > 0 {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
                buf.fill(3);
                Ok(Filled::Data)
            }))
            .unwrap();
        println!("fence {:?}", region.fence());
        assert_eq!(region.as_slice()[0], 3);
        let v = std::hint::black_box(region.as_slice()[page()]);
        println!("GARBAGE read {v}");
        std::process::exit(0);
    }
    if child_role().is_some() {
        return;
    }
    let expected = if mmkit_pager::capabilities().unwrap().poison() { libc::SIGBUS } else { libc::SIGSEGV };
    // A source error, and a source that panics in the handler thread: the same outcome.
    for role in ["touch-failed", "touch-panicked"] {
        let (status, out) = run_child(&[], "touching_a_failed_page_raises_the_fence_signal", role, 60);
        assert_eq!(status.signal(), Some(expected), "{role}: status {status:?}, output:\n{out}");
        assert!(!out.contains("GARBAGE"), "{out}");
    }
}

#[test]
fn the_prot_none_fence_works_where_poison_is_missing() {
    // The fallback of kernels before 6.6 (the CI VM's 6.1), chosen explicitly here.
    with_timeout(60, || {
        let region = PagedRegion::builder(2 * page())
            .fence(mmkit_pager::Fence::ProtNone)
            .build(FnSource(|_, _: &mut [u8]| Err(io::Error::from_raw_os_error(libc::ENODATA))))
            .unwrap();
        let mut b = [0u8; 4];
        assert_eq!(region.read(page(), &mut b).unwrap_err().errno(), Some(libc::ENODATA));
        // The kernel now refuses the page to everyone: a copy through process_vm_readv faults.
        let err = region.copy_from_mapping(page(), &mut b).unwrap_err();
        assert_eq!((err.kind(), err.errno()), (mmkit::ErrorKind::Os, Some(libc::EFAULT)), "{err}");
        assert!(err.to_string().contains("fenced"), "{err}");
        assert_eq!(err.addr(), Some(region.as_ptr() as usize + page()));
    });
}

#[test]
fn a_forked_child_does_not_inherit_the_region() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let region = PagedRegion::new(4 * page(), pattern_source(calls.clone())).unwrap();
        assert_eq!(region.as_slice()[0], pattern(0, 0));
        let p = region.as_ptr();
        let addr = p as usize;
        // SAFETY: the child only does a volatile read (async-signal-safe).
        let r = unsafe { mmkit::process::in_forked_child(|| (addr as *const u8).read_volatile() as u64) };
        let err = r.unwrap_err();
        assert_eq!(err.signal(), Some(libc::SIGSEGV), "{err}");
        // The parent keeps being served.
        assert_eq!(region.as_slice()[2 * page() + 1], pattern(2, 1));
        assert_eq!(calls.lock().unwrap().len(), 2);
    });
}

/// Regression: the region is `MADV_DONTFORK`, so in a forked child its range was a hole, and
/// the child's next large allocation landed there: the child's copy of the region then handed
/// out the child's own memory as the region's bytes (`as_mut_slice` aliasing a live `Vec`).
/// A fork handler reserves the range in the child now: its mappings go elsewhere, and an
/// access to the region still raises SIGSEGV.
#[test]
fn a_forked_childs_own_mappings_never_land_in_the_region() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        // Regions made and dropped around it (the guard's list grows, and an entry of a dropped
        // region must not take a live one's with it).
        let others: Vec<_> = (0..9).map(|_| PagedRegion::new(page(), ZeroSource).unwrap()).collect();
        let region = PagedRegion::new(64 * page(), pattern_source(calls)).unwrap();
        drop(others);
        assert_eq!(region.as_slice()[0], pattern(0, 0));
        let (base, len) = (region.as_ptr() as usize, region.len());
        // SAFETY: the child only makes system calls (mmap) and a volatile read (async-signal-safe).
        let overlap = unsafe {
            mmkit::process::in_forked_child(|| {
                // What a large Vec's allocation does: the kernel's choice of a free range.
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0);
                let p = p as usize;
                u64::from(p < base + len && p + len > base)
            })
        };
        assert_eq!(overlap.unwrap(), 0, "a mapping of the child was placed in the region's range");
        // SAFETY: as above.
        let r = unsafe { mmkit::process::in_forked_child(|| (base as *const u8).read_volatile() as u64) };
        assert_eq!(r.unwrap_err().signal(), Some(libc::SIGSEGV));
        // The child's reservation is its own: the parent is served as before.
        assert_eq!(region.as_slice()[5 * page()], pattern(5, 0));
    });
}

/// A forked child that drops its copy of the region (a child that goes on running the
/// parent's code and returns normally does) must leave the parent's region alone: the stop pipe
/// and the userfaultfd are shared with the parent (and `UFFDIO_UNREGISTER` acts on the
/// parent's address space, the one the userfaultfd was created in), and the handler threads do
/// not exist in the child.
#[test]
fn a_forked_child_dropping_its_copy_leaves_the_parent_served() {
    with_timeout(60, || {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let region = PagedRegion::new(4 * page(), pattern_source(calls.clone())).unwrap();
        assert_eq!(region.as_slice()[0], pattern(0, 0));
        // SAFETY: the child only drops its bitwise copy of the region (the parent's is never
        // read through it) and ends with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: in the child the original is never used or dropped again (`_exit`).
            drop(unsafe { std::ptr::read(&region) });
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        let start = std::time::Instant::now();
        let mut status = 0;
        let exited = loop {
            // SAFETY: waits for our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The parent's pages are still served by the source (zeros would be garbage).
        assert_eq!(region.as_slice()[2 * page() + 1], pattern(2, 1));
        assert_eq!(region.as_slice()[3 * page() + 5], pattern(3, 5));
        assert_eq!(calls.lock().unwrap().len(), 3);
        assert!(region.handler_error().is_none(), "{:?}", region.handler_error());
        assert!(exited, "the child hung dropping its copy of the region");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    });
}

/// A forked child calling the region's filling faces on its copy must get an error, not act on
/// the parent: the userfaultfd and the pagemap descriptor are the parent's, so a fill from the
/// child installed the child's bytes in the parent's pages (and a failed one poisoned them),
/// and a dirty collection there reset the parent's written bits.
#[test]
fn a_forked_child_cannot_fill_or_collect_the_parents_region() {
    with_timeout(60, || {
        let parent = std::process::id();
        let g = page();
        let mut region = PagedRegion::builder(4 * g)
            .track_dirty()
            .build(FnSource(move |offset, buf: &mut [u8]| {
                // The child's copy of the source answers other bytes: whatever it installs is
                // garbage to the parent.
                let p = offset / mmkit::page_size() as u64;
                for (j, b) in buf.iter_mut().enumerate() {
                    *b = if std::process::id() == parent { pattern(p, j) } else { 0xee };
                }
                Ok(Filled::Data)
            }))
            .unwrap();
        region.as_mut_slice()[0] = 1;
        // SAFETY: the child only calls the region's methods and ends with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let refused = [
                region.prefetch(g, g).is_err(),
                region.read(2 * g, &mut [0u8; 8]).is_err(),
                region.collect_dirty().is_err(),
            ];
            let code = refused.iter().enumerate().map(|(i, r)| if *r { 0 } else { 1 << i }).sum::<i32>();
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        // The parent's pages hold its source's bytes, and its write is still reported.
        assert_eq!(region.as_slice()[g + 3], pattern(1, 3));
        let mut b = [0u8; 8];
        region.read(2 * g, &mut b).unwrap();
        assert_eq!(b[5], pattern(2, 5));
        let dirty = region.collect_dirty().unwrap();
        assert!(dirty.pages.contains(&0), "{dirty:?}");
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "the child's prefetch/read/collect_dirty (bits 1/2/4) succeeded");
    });
}

/// Fails `mmap(2)` of exactly `len` bytes with `ENOMEM`, on this thread and the threads it
/// starts afterwards, as an exhausted `RLIMIT_AS` or `vm.max_map_count` would fail it.
fn deny_mmap_of_len(len: usize) {
    support::deny_syscall(libc::SYS_mmap, Some(len as u32), libc::ENOMEM);
}

/// A handler thread that cannot get its fill buffer (an `mmap` refused for lack of memory)
/// must fail the build: a region whose only handler thread quit serves no fault, and the
/// first touch would wait forever.
#[test]
fn a_handler_thread_without_memory_fails_the_build_instead_of_hanging_the_first_fault() {
    const NAME: &str = "a_handler_thread_without_memory_fails_the_build_instead_of_hanging_the_first_fault";
    if child_role().as_deref() == Some("no-scratch") {
        let g = page();
        // A fault-around window of 37 granules: the handler's buffer is the only mmap of that
        // length. (Not 3: a thread's alternate signal stack, which std maps at every thread
        // start, is a page + max(SIGSTKSZ, AT_MINSIGSTKSZ), 3 pages on some CPUs: the filter
        // refused it too, and std aborted the test's own timeout thread.)
        deny_mmap_of_len(37 * g);
        let built = with_timeout(20, move || {
            let region = PagedRegion::builder(64 * g).fault_around(37).build(ZeroSource).map_err(|e| e.to_string())?;
            Ok::<u8, String>(region.as_slice()[0])
        });
        let msg = built.expect_err("the build succeeded although its handler thread had no buffer");
        assert!(msg.contains("Cannot allocate memory") || msg.contains("ENOMEM"), "{msg}");
        println!("NO-SCRATCH OK: {msg}");
        return;
    }
    if child_role().is_some() {
        return;
    }
    let (status, out) = run_child(&[], NAME, "no-scratch", 60);
    assert!(status.success() && out.contains("NO-SCRATCH OK"), "{status:?}\n{out}");
}

/// A region too large for the pager's own bookkeeping (one state byte per page) is an error,
/// not an abort: a shared memory region of 8 TiB maps (its pages are only reserved), and its
/// 2 GiB of page states are refused here by `RLIMIT_DATA` (as a small machine refuses them).
#[test]
fn a_region_whose_page_states_cannot_be_allocated_is_an_error_not_an_abort() {
    const NAME: &str = "a_region_whose_page_states_cannot_be_allocated_is_an_error_not_an_abort";
    if usize::BITS < 64 {
        return; // 8 TiB is past a 32-bit address space
    }
    if child_role().as_deref() == Some("no-states") {
        let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
        // SAFETY: setrlimit with a valid struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) }, 0);
        let len = (1u64 << 43) as usize;
        let err = PagedRegion::builder(len)
            .backing(mmkit_pager::Backing::SharedMemory(mmkit_pager::ShmemFill::Copy))
            .build(ZeroSource)
            .unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOMEM), "{err}");
        assert_eq!(err.range(), Some((0, len as u64)), "{err}");
        println!("NO-STATES OK: {err}");
        return;
    }
    if child_role().is_some() || usize::BITS < 64 {
        return;
    }
    let (status, out) = run_child(&[], NAME, "no-states", 60);
    assert!(status.success() && out.contains("NO-STATES OK"), "{status:?}\n{out}");
}

#[test]
fn file_source_reads_with_pread_and_zero_fills_past_the_end() {
    with_timeout(60, || {
        let mut data = vec![0u8; 2 * page() + 100];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        let region = PagedRegion::new(4 * page(), FileSource::open(file.path()).unwrap()).unwrap();
        let s = region.as_slice();
        assert_eq!(&s[..data.len()], &data[..]);
        assert!(s[data.len()..3 * page()].iter().all(|&b| b == 0));
        assert!(s[3 * page()..].iter().all(|&b| b == 0));
        let st = region.stats();
        assert_eq!((st.data_pages, st.zero_pages), (3, 1));
    });
}

/// An empty read or prefetch asks the source for nothing: it asked for the page its offset
/// fell in (and failed with that page's error).
#[test]
fn empty_reads_and_prefetches_supply_no_page() {
    with_timeout(60, || {
        let region =
            PagedRegion::new(2 * page() + 1, FnSource(|_, _: &mut [u8]| Err(io::Error::from_raw_os_error(libc::EIO))))
                .unwrap();
        for offset in [0, 5, page() + 1, 2 * page(), 2 * page() + 1] {
            region.read(offset, &mut []).unwrap();
            region.prefetch(offset, 0).unwrap();
        }
        assert_eq!(region.stats().source_calls, 0);
        assert!(region.read(2 * page() + 1, &mut [0u8; 1]).is_err(), "past the end");
    });
}

/// An anonymous region larger than the commit limit allows is refused with what to do: the
/// bare ENOMEM of mmap did not say that a memfd region of that size is fine.
#[test]
fn an_anonymous_region_beyond_the_commit_limit_names_the_backing_that_fits() {
    if usize::BITS < 64 {
        return;
    }
    let len = (1u64 << 46) as usize;
    match PagedRegion::new(len, ZeroSource) {
        Ok(_) => println!("skipped: a {len:#x}-byte anonymous region was allowed here"),
        Err(e) => {
            assert_eq!(e.errno(), Some(libc::ENOMEM), "{e}");
            assert!(e.to_string().contains("Backing::SharedMemory") && !e.to_string().contains("  "), "{e}");
        }
    }
}

#[test]
fn out_of_range_reads_are_errors_not_panics() {
    let region = PagedRegion::new(page(), ZeroSource).unwrap();
    let mut b = [0u8; 8];
    let err = region.read(page() - 4, &mut b).unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::OutOfBounds);
    assert!(region.read(usize::MAX, &mut b).is_err());
    assert_eq!(PagedRegion::new(0, ZeroSource).unwrap_err().kind(), mmkit::ErrorKind::InvalidArgument);
}

#[test]
fn a_panicking_source_fails_the_page_instead_of_hanging_it() {
    with_timeout(60, || {
        let region = PagedRegion::builder(2 * page())
            .handler_threads(1)
            .build(FnSource(|off, buf: &mut [u8]| {
                if off > 0 {
                    panic!("source bug");
                }
                buf.fill(5);
                Ok(Filled::Data)
            }))
            .unwrap();
        let mut b = [0u8; 4];
        let err = region.read(page(), &mut b).unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        // The reading thread survived the panic, and the handler thread serves faults.
        assert_eq!(region.as_slice()[0], 5);
    });
}

/// A panic payload whose own drop panics.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("the payload's drop panicked too");
    }
}

/// Regression: the pager dropped a panicking source's payload where it caught it; a payload
/// whose drop panics unwound out of the fill with the page held FILLING: `read` panicked, and
/// every later access to the page (a touch, another `read`) waited forever; in a handler
/// thread it stopped serving the region. The page fails like any panicking source's, with the
/// panic's message when it has one.
#[test]
fn a_source_panic_whose_payload_panics_when_dropped_fails_the_page() {
    with_timeout(60, || {
        let source = FnSource(|off, buf: &mut [u8]| {
            if off == 0 {
                std::panic::panic_any(PanicsWhenDropped);
            }
            if off == page() as u64 {
                panic!("plain bug");
            }
            buf.fill(5);
            Ok(Filled::Data)
        });
        // From the reading thread.
        let region = PagedRegion::builder(3 * page()).handler_threads(1).build(source).unwrap();
        let mut b = [0u8; 4];
        for _ in 0..2 {
            let err = region.read(0, &mut b).unwrap_err();
            assert!(err.to_string().contains("the page source panicked"), "{err}");
        }
        let err = region.read(page(), &mut b).unwrap_err();
        assert!(err.to_string().contains("the page source panicked: plain bug"), "{err}");
        assert_eq!(region.as_slice()[2 * page()], 5);
        assert!(region.handler_error().is_none());
    });
    with_timeout(60, || {
        // From the handler thread: a touch of the next page is still served.
        let region = PagedRegion::builder(2 * page())
            .handler_threads(1)
            .fault_around(2)
            .build(FnSource(|off, buf: &mut [u8]| {
                if off == page() as u64 {
                    std::panic::panic_any(PanicsWhenDropped);
                }
                buf.fill(5);
                Ok(Filled::Data)
            }))
            .unwrap();
        assert_eq!(region.as_slice()[0], 5);
        let mut b = [0u8; 4];
        assert!(region.read(page(), &mut b).is_err());
        assert!(region.handler_error().is_none(), "{:?}", region.handler_error());
    });
}

/// This process's resident set in bytes (`VmRSS`). (Read 8 KiB at a time: `read_to_string`'s
/// reads may be 512 bytes long, which `handler_stops_child` refuses.)
fn rss() -> u64 {
    use std::io::Read;
    let mut f = std::fs::File::open("/proc/self/status").unwrap();
    let (mut bytes, mut chunk) = (Vec::new(), [0u8; 8192]);
    loop {
        match f.read(&mut chunk).unwrap() {
            0 => break,
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let status = String::from_utf8(bytes).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The child of `a_handler_that_stops_serving_fences_what_it_did_not_supply_and_wakes_every_waiter`:
/// every `read(2)` of 512 bytes fails with `EIO`, which is the handler threads' read of fault
/// messages (16 of 32 bytes): each region's handler stops at its first fault.
fn handler_stops_child() {
    let g = page();
    let caps = mmkit_pager::capabilities().unwrap();
    support::deny_syscall_arg(libc::SYS_read, Some((2, 512)), libc::EIO);
    with_timeout(30, move || {
        let source = || pattern_source(Arc::new(Mutex::new(Vec::new())));
        // A minor fault on a supplied page of a UFFDIO_CONTINUE region (its entry dropped, as
        // reclaim does) needs the handler: the thread blocked on it must go on once it stops.
        if caps.minor_shmem() && caps.missing_shmem() {
            // 64 GiB (a memfd reserves nothing): stopping must not make its 16 Mi page states
            // resident, which fencing them one by one did.
            let len = if usize::BITS == 64 { 1usize << 36 } else { 4 * g };
            let before = rss();
            let region = PagedRegion::builder(len)
                .backing(mmkit_pager::Backing::SharedMemory(mmkit_pager::ShmemFill::Continue))
                .build(source())
                .unwrap();
            region.prefetch(0, g).unwrap();
            let addr = region.as_ptr() as usize;
            // SAFETY: drops this process's page-table entry of one page of the shared mapping; the
            // memfd keeps the page.
            assert_eq!(unsafe { libc::madvise(addr as *mut libc::c_void, g, libc::MADV_DONTNEED) }, 0);
            // SAFETY: page 0 of the live region, read on another thread (which blocks in the fault).
            let v = std::thread::spawn(move || unsafe { (addr as *const u8).add(5).read_volatile() }).join().unwrap();
            assert_eq!(v, pattern(0, 5));
            let h = region.handler_error().expect("the handler recorded its error");
            assert_eq!(h.errno(), Some(libc::EIO), "{h}");
            // The pages it had not supplied are errors for the checked read, and refused to
            // the kernel too (a process_vm_readv of them faults).
            let mut b = [0u8; 4];
            let err = region.read(g, &mut b).unwrap_err();
            assert!(err.to_string().contains("handler stopped"), "{err}");
            assert!(region.copy_from_mapping(2 * g, &mut b).is_err());
            assert!(region.copy_from_mapping(len - 4, &mut b).is_err());
            assert_eq!(region.stats().source_calls, 1);
            let grown = rss().saturating_sub(before);
            assert!(grown < (len / g / 4) as u64, "the resident set grew by {grown:#x} bytes");
            println!("MINOR OK (resident set +{grown:#x}): {err}");
        }
        // A write-protect fault (dirty tracking) on a supplied page: the writer goes on, and
        // the tracking ends with an error instead of missing writes silently.
        if caps.write_protect() {
            let mut region = PagedRegion::builder(4 * g)
                .track_dirty_with(mmkit_pager::DirtyMechanism::WriteProtect)
                .build(FnSource(|offset, buf: &mut [u8]| {
                    if offset == 3 * mmkit::page_size() as u64 {
                        return Err(io::Error::from_raw_os_error(libc::EIO));
                    }
                    buf.iter_mut().enumerate().for_each(|(j, b)| *b = pattern(offset / mmkit::page_size() as u64, j));
                    Ok(Filled::Data)
                }))
                .unwrap();
            region.prefetch(0, g).unwrap();
            // Page 3 fails (and is fenced) while the handler serves: it stays fenced after the
            // range is unregistered, not zeros.
            assert_eq!(region.read(3 * g, &mut [0u8; 1]).unwrap_err().errno(), Some(libc::EIO));
            let addr = region.as_mut_slice().as_mut_ptr() as usize;
            // SAFETY: page 0 of the live region, written on another thread while nothing else
            // borrows it (the thread is joined before the region is used again).
            std::thread::spawn(move || unsafe { (addr as *mut u8).add(1).write_volatile(0xa5) }).join().unwrap();
            let mut b = [0u8; 2];
            region.read(0, &mut b).unwrap();
            assert_eq!(b, [pattern(0, 0), 0xa5]);
            let err = region.collect_dirty().unwrap_err();
            assert!(err.to_string().contains("handler stopped"), "{err}");
            let mut b = [0u8; 1];
            for p in [2, 3] {
                assert!(region.copy_from_mapping(p * g, &mut b).is_err(), "page {p} reads {b:?}");
            }
            println!("WP OK: {err}");
        }
    });
    // A thread blocked on a missing page when the handler stops is woken into the fence's
    // signal: never a hang, never zeros.
    let region = PagedRegion::new(4 * g, pattern_source(Arc::new(Mutex::new(Vec::new())))).unwrap();
    println!("TOUCHING");
    let v = std::hint::black_box(region.as_slice()[2 * g + 1]);
    println!("GARBAGE read {v}");
    std::process::exit(0);
}

/// A handler thread whose `read` of the userfaultfd fails stops serving; the faults it would
/// have served must not wait forever (a thread blocked in a page fault cannot be interrupted).
/// Before it exits it fences every page not supplied and unregisters the range, which wakes
/// every waiter: into the fence's signal on a missing page, on into the page on a supplied one.
#[test]
fn a_handler_that_stops_serving_fences_what_it_did_not_supply_and_wakes_every_waiter() {
    const NAME: &str = "a_handler_that_stops_serving_fences_what_it_did_not_supply_and_wakes_every_waiter";
    if child_role().as_deref() == Some("handler-stops") {
        handler_stops_child();
    }
    if child_role().is_some() {
        return;
    }
    let caps = mmkit_pager::capabilities().unwrap();
    let (status, out) = run_child(&[], NAME, "handler-stops", 60);
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status:?}, output:\n{out}");
    assert!(out.contains("TOUCHING") && !out.contains("GARBAGE"), "{out}");
    assert_eq!(out.contains("MINOR OK"), caps.minor_shmem() && caps.missing_shmem(), "{out}");
    assert_eq!(out.contains("WP OK"), caps.write_protect(), "{out}");
}

/// A `/proc/self` file's text, read 8 KiB at a time (see `rss`).
fn proc_text(path: &str) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let (mut bytes, mut chunk) = (Vec::new(), [0u8; 8192]);
    loop {
        match f.read(&mut chunk).unwrap() {
            0 => break,
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// The child of `a_forked_child_dropping_a_stopped_regions_copy_keeps_its_own_mappings`: the
/// handler threads' `read` of fault messages fails (as in `handler_stops_child`), so they stop
/// at the first fault and no thread holds the region's shared state any more.
fn stopped_region_fork_child() {
    let g = page();
    support::deny_syscall_arg(libc::SYS_read, Some((2, 512)), libc::EIO);
    let len = 64 * g;
    let region = PagedRegion::builder(len)
        .backing(mmkit_pager::Backing::SharedMemory(mmkit_pager::ShmemFill::Continue))
        .build(pattern_source(Arc::new(Mutex::new(Vec::new()))))
        .unwrap();
    region.prefetch(0, g).unwrap();
    let base = region.as_ptr() as usize;
    // SAFETY: drops this process's page-table entry of one page of the shared mapping; the memfd
    // keeps the page, and the minor fault below reaches the handler, whose read fails.
    assert_eq!(unsafe { libc::madvise(base as *mut libc::c_void, g, libc::MADV_DONTNEED) }, 0);
    // SAFETY: page 0 of the live region, read on another thread (which blocks in the fault).
    let v = std::thread::spawn(move || unsafe { (base as *const u8).add(5).read_volatile() }).join().unwrap();
    assert_eq!(v, pattern(0, 5));
    assert!(region.handler_error().is_some());
    // The handler thread has exited (and dropped its share of the region's state). A thread
    // listed that exits before its `comm` is read (this one, now) is gone: not a failure.
    let start = std::time::Instant::now();
    let handler_alive = |t: std::io::Result<std::fs::DirEntry>| {
        t.ok().and_then(|t| std::fs::read(t.path().join("comm")).ok()).is_some_and(|c| c.starts_with(b"mmkit-pager"))
    };
    while std::fs::read_dir("/proc/self/task").unwrap().any(handler_alive) {
        assert!(start.elapsed() < Duration::from_secs(10), "the handler thread did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The region's second mapping of its memfd: the staging mapping, `MADV_DONTFORK`.
    let staging = proc_text("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("memfd:mmkit-pager"))
        .map(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap())
        .find(|&a| a != base)
        .expect("the staging mapping");
    // SAFETY: the child makes system calls, writes its own mapping, drops its bitwise copy of
    // the region (the parent's is never used through it) and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // The child's next mapping where the staging mapping was (a hole here), as a large
        // allocation may be placed.
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new private mapping in a hole (FIXED_NOREPLACE replaces nothing).
        let p = unsafe { libc::mmap(staging as *mut libc::c_void, len, prot, flags, -1, 0) };
        if p as usize != staging {
            // SAFETY: ends the child.
            unsafe { libc::_exit(3) };
        }
        // SAFETY: the child's own mapping of `len` bytes, written and read by this thread only.
        unsafe { (p as *mut u8).write_volatile(1) };
        // SAFETY: in the child the original is never used or dropped again (`_exit`).
        drop(unsafe { std::ptr::read(&region) });
        // SAFETY: as above: the child's mapping, which dropping the region must leave alone.
        let ok = unsafe {
            (p as *mut u8).add(len - 1).write_volatile(2);
            (p as *const u8).read_volatile() == 1
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 4 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    println!("CHILD STATUS {status:#x}");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    println!("STAGING OK");
    std::process::exit(0);
}

/// Regression: a `UFFDIO_CONTINUE` region's staging mapping is `MADV_DONTFORK` (a hole in a
/// forked child), and a child that dropped its copy of a region whose handler threads had
/// stopped unmapped it there: the child's own memory mapped at that address since was taken
/// away (the child's next access raised SIGSEGV; a mapping placed there later would have had
/// two owners). Only the process that made the staging mapping unmaps it now.
#[test]
fn a_forked_child_dropping_a_stopped_regions_copy_keeps_its_own_mappings() {
    const NAME: &str = "a_forked_child_dropping_a_stopped_regions_copy_keeps_its_own_mappings";
    if child_role().as_deref() == Some("stopped-region-fork") {
        stopped_region_fork_child();
    }
    if child_role().is_some() {
        return;
    }
    let caps = mmkit_pager::capabilities().unwrap();
    if !(caps.minor_shmem() && caps.missing_shmem()) {
        println!("skipped: the kernel lacks UFFDIO_CONTINUE for shmem");
        return;
    }
    let (status, out) = run_child(&[], NAME, "stopped-region-fork", 60);
    assert!(status.success() && out.contains("STAGING OK"), "{status:?}, output:\n{out}");
}

/// Regression: the handler threads' stop pipe refused (`EMFILE`) said only `pipe failed: ...`,
/// and a handler thread the system refused to start said `spawn of a handler thread failed`
/// (with errno 0 when `std` had none): neither named the region. Each now names the operation,
/// what it was for, the region and the errno.
#[test]
fn a_refused_pipe_or_thread_names_the_operation_the_region_and_errno() {
    const NAME: &str = "a_refused_pipe_or_thread_names_the_operation_the_region_and_errno";
    match child_role().as_deref() {
        Some("no-pipe") => {
            let msg = with_timeout(20, || {
                support::deny_syscall(libc::SYS_pipe2, None, libc::EMFILE);
                let err = PagedRegion::new(4 * page(), ZeroSource).unwrap_err();
                assert_eq!(err.errno(), Some(libc::EMFILE), "{err}");
                assert!(err.addr().is_some() && err.range() == Some((0, 4 * page() as u64)), "{err}");
                err.to_string()
            });
            assert!(msg.starts_with("pipe2") && msg.contains("stop pipe") && msg.contains("(EMFILE)"), "{msg}");
            println!("NO-PIPE OK: {msg}");
        }
        Some("no-thread") => {
            let msg = with_timeout(20, || {
                support::deny_syscall(libc::SYS_clone3, None, libc::EAGAIN);
                support::deny_syscall(libc::SYS_clone, None, libc::EAGAIN);
                let err = PagedRegion::new(4 * page(), ZeroSource).unwrap_err();
                assert_eq!(err.errno(), Some(libc::EAGAIN), "{err}");
                assert!(err.addr().is_some() && err.range() == Some((0, 4 * page() as u64)), "{err}");
                err.to_string()
            });
            assert!(msg.contains("handler thread 0") && msg.contains("(EAGAIN)"), "{msg}");
            println!("NO-THREAD OK: {msg}");
        }
        Some(_) => {}
        None => {
            for (role, said) in [("no-pipe", "NO-PIPE OK"), ("no-thread", "NO-THREAD OK")] {
                let (status, out) = run_child(&[], NAME, role, 60);
                assert!(status.success() && out.contains(said), "{role}: {status:?}\n{out}");
            }
        }
    }
}
