//! Dropping a region: handler threads stop, no thread is left blocked. (Its own test binary:
//! it counts this process's threads.)

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mmkit_pager::{Filled, FnSource, PagedRegion};
use support::with_timeout;

/// Held by each test: they count the process's handler threads, so they run one at a time.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn handler_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("mmkit-pager-"))
        .count()
}

/// Waits (up to 20 s) until `n` handler threads are listed: a thread names itself once it runs,
/// and a joined thread leaves /proc/self/task a moment after the join returns.
fn wait_for_handler_threads(n: usize) -> usize {
    let start = std::time::Instant::now();
    while handler_threads() != n && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    handler_threads()
}

#[test]
fn drop_after_concurrent_faults_stops_every_handler_thread() {
    let _one_at_a_time = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    with_timeout(120, || {
        let page = mmkit::page_size();
        for round in 0..20 {
            let calls = Arc::new(AtomicU64::new(0));
            let c = calls.clone();
            let region = PagedRegion::builder(64 * page)
                .handler_threads(3)
                .build(FnSource(move |off, buf: &mut [u8]| {
                    c.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                    buf.fill(off as u8 ^ 0x5a);
                    Ok(Filled::Data)
                }))
                .unwrap();
            assert_eq!(wait_for_handler_threads(3), 3);
            std::thread::scope(|s| {
                for t in 0..4 {
                    let region = &region;
                    s.spawn(move || {
                        for p in (t..64).step_by(3) {
                            assert_eq!(region.as_slice()[p * page], (p * page) as u8 ^ 0x5a);
                        }
                    });
                }
            });
            // Dropped on another thread than the one that built it, half the time.
            if round % 2 == 0 {
                drop(region);
            } else {
                std::thread::spawn(move || drop(region)).join().unwrap();
            }
            assert_eq!(wait_for_handler_threads(0), 0, "round {round}: handler threads left after drop");
            assert!(calls.load(Ordering::SeqCst) <= 64);
        }
        // Idle handlers, untouched pages.
        let region = PagedRegion::builder(1 << 20).handler_threads(2).build(mmkit_pager::ZeroSource).unwrap();
        drop(region);
        assert_eq!(wait_for_handler_threads(0), 0);
    });
}

/// `handler_threads(usize::MAX)` started threads until the system refused one (thousands, a
/// kernel stack and a fill buffer each) before `build` failed, or the machine ran out of memory:
/// past [`PagedRegionBuilder::MAX_HANDLER_THREADS`] it is an error at `build`, no thread started.
#[test]
fn handler_threads_past_the_maximum_are_an_error_at_build() {
    let _one_at_a_time = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    with_timeout(60, || {
        let page = mmkit::page_size();
        for n in [mmkit_pager::PagedRegionBuilder::MAX_HANDLER_THREADS + 1, usize::MAX] {
            let err = PagedRegion::builder(4 * page).handler_threads(n).build(mmkit_pager::ZeroSource).unwrap_err();
            assert_eq!(err.kind(), mmkit_pager::ErrorKind::InvalidArgument, "{err}");
            let want = format!("{n} handler threads: at most {}", mmkit_pager::PagedRegionBuilder::MAX_HANDLER_THREADS);
            assert!(err.to_string().contains(&want), "{err}");
            assert_eq!(wait_for_handler_threads(0), 0);
        }
        let region = PagedRegion::builder(4 * page).handler_threads(4).build(mmkit_pager::ZeroSource).unwrap();
        assert_eq!(wait_for_handler_threads(4), 4);
        assert_eq!(region.as_slice()[page], 0);
    });
}
