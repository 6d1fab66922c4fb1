//! Seeing mapped memory: page-cache residency of files and the mappings of processes.
//!
//! The questions it answers:
//!
//! | question | functions | kernel source |
//! |---|---|---|
//! | which pages of a file are in the page cache? | [`residency`], [`residency_of_mapping`], [`cachestat`] | `mincore(2)` on a read-only window map, `cachestat(2)` |
//! | bring a file in, push it out, keep it in | [`touch`], [`touch_files`], [`evict`], [`lock`] | `MADV_POPULATE_READ`, `POSIX_FADV_DONTNEED`, `mlock(2)` |
//! | which mappings does a process hold, and what do they cost? | [`maps()`], [`smaps`], [`smaps_for_each`], [`smaps_rollup`] | `/proc/<pid>/maps`, `smaps`, `smaps_rollup` |
//! | did this mapping get huge pages, how much is resident, what is its name? | [`huge_page_bytes`], [`resident_bytes`], [`region_name`] | `/proc/self/smaps`, `/proc/self/maps` |
//!
//! Files are looked at through windows of at most [`WINDOW`] bytes, so a terabyte file needs
//! little address space. An empty file has 0 pages; that is not an error.
//!
//! [`collect_files`] expands directories the way `vmtouch` does (recursively, not following
//! symbolic links inside directories, counting each inode once), so that counts compare.
//!
//! ```
//! # fn main() -> mmkit::Result<()> {
//! let r = mmkit::inspect::residency("/usr/bin/ls")?;
//! println!("{}/{} pages resident", r.resident_pages(), r.pages());
//! let stat = mmkit::inspect::cachestat("/usr/bin/ls")?;
//! println!("{} cached, {:?} dirty", stat.cached, stat.dirty);
//! let rollup = mmkit::inspect::smaps_rollup(std::process::id())?;
//! println!("Rss {} KiB, Pss {} KiB", rollup.stats.rss, rollup.stats.pss);
//! # let len = std::fs::metadata("/usr/bin/ls").unwrap().len();
//! # assert_eq!(r.pages(), len.div_ceil(mmkit::page_size() as u64));
//! # assert!(rollup.stats.rss > 0 && rollup.stats.pss > 0);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

mod cachestat;
mod file_residency;
mod files;
mod mapping;
pub mod maps;
mod procfs;
mod touch;

pub use crate::residency::{PageBitmap, Residency};
pub use cachestat::{cachestat, cachestat_files, cachestat_of, CacheStat, CacheStatSource};
pub use file_residency::{residency, residency_of_file, residency_of_mapping};
pub use files::{collect_files, walk_files, FileEntry};
pub use mapping::{huge_page_bytes, region_name, resident_bytes};
pub use maps::{Backing, DeviceId, MapKind, MapsEntry, MemStats, ParseError, Perms, SmapsEntry, SmapsRollup};
pub use procfs::{maps, smaps, smaps_for_each, smaps_rollup};
pub use touch::{
    block_termination_signals, evict, lock, touch, touch_files, wait_for_termination_signal, LockedFile, TouchOptions,
};

/// Largest window mapped at once to look at a file (1 GiB).
pub const WINDOW: u64 = 1 << 30;

/// Runs `f` on every item with up to `threads` scoped threads taking items in order; returns the
/// results in item order.
///
/// The calling thread is one of the workers. A thread the system refuses to start
/// (`EAGAIN` under `RLIMIT_NPROC`, `ENOMEM` for its stack under `RLIMIT_AS`) means fewer
/// workers, never a panic: with none started, the caller does all the work.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            out.push((i, f(item)));
        }
        out
    };
    let mut parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles = spawn_workers(s, threads - 1, &work);
        let mut parts = vec![work()];
        parts.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))));
        parts
    });
    let mut all: Vec<(usize, R)> = parts.iter_mut().flat_map(std::mem::take).collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Starts up to `n` scoped threads running `work`; stops at the first the system refuses, and
/// before they would use more than half the address space left under `RLIMIT_AS`.
pub(crate) fn spawn_workers<'scope, 'env, R: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    n: usize,
    work: &'scope (impl Fn() -> R + Sync),
) -> Vec<std::thread::ScopedJoinHandle<'scope, R>> {
    let n = n.min(workers_that_fit(crate::sys::inspect::address_space_left()));
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        match std::thread::Builder::new().stack_size(WORKER_STACK).spawn_scoped(s, work) {
            Ok(h) => handles.push(h),
            Err(_) => break,
        }
    }
    handles
}

/// Stack of a worker thread: they make system calls and keep nothing large on the stack, so
/// 256 KiB instead of std's 2 MiB.
const WORKER_STACK: usize = 256 << 10;

/// Address space a worker's first allocation may reserve: glibc gives each new thread its own
/// malloc arena, a 64 MiB reservation (up to 8 arenas per CPU).
const WORKER_ARENA: u64 = 64 << 20;

/// How many workers fit in half of `left` bytes of address space (`None`: no limit). A thread
/// that cannot start is an error we handle, but an allocation that fails after threads took the
/// address space aborts the process, so the workers leave the other half to the allocator.
fn workers_that_fit(left: Option<u64>) -> usize {
    let Some(left) = left else { return usize::MAX };
    let half = left / 2;
    let stack = WORKER_STACK as u64 + crate::page::page_size() as u64; // and its guard page
    let arenas = 8 * default_threads() as u64;
    // Each of the first `arenas` workers costs a stack and an arena, each later one a stack.
    let n = match half / (stack + WORKER_ARENA) {
        n if n < arenas => n,
        _ => (half - arenas * (stack + WORKER_ARENA)) / stack + arenas,
    };
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The default number of worker threads: the CPUs this process may run on.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order() {
        let items: Vec<u32> = (0..1000).collect();
        for threads in [0, 1, 2, 7] {
            let out = parallel_map(&items, threads, |x| x * 2);
            assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        }

        assert!(parallel_map(&[] as &[u32], 4, |x| *x).is_empty());
        // Under RLIMIT_AS workers leave half the address space left to the allocator.
        assert_eq!(workers_that_fit(None), usize::MAX);
        assert_eq!(workers_that_fit(Some(100 << 20)), 0);
        assert_eq!(workers_that_fit(Some(150 << 20)), 1);
        assert!(workers_that_fit(Some(1 << 40)) > 1000);
        assert!(workers_that_fit(Some(u64::MAX)) > 1 << 30);
    }
}
