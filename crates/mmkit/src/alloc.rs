//! [`MapAlloc`]: a large-block allocator on anonymous mappings.
//!
//! Every block of at least [`threshold`](MapAlloc::with_threshold) bytes is its own anonymous
//! mapping; smaller ones go to [`std::alloc::System`]. Freed mappings are kept in a cache of
//! address space and handed out again (best fit, split), so a busy program does not pay for
//! `mmap`/`munmap` and re-alignment on every allocation. By default a freed block's pages are
//! dropped (`MADV_DONTNEED`) as it enters the cache: the cache holds address space, not memory,
//! so the allocator's RSS is that of its live blocks, and a block from the cache reads back as
//! zeros (so `alloc_zeroed` costs nothing extra). [`with_resident_cache`](MapAlloc::with_resident_cache)
//! lets up to a budget of cached blocks keep their pages instead: reuse then skips the page
//! faults and zeroing, at the price of that much extra RSS. A cached mapping unused for the
//! [decay time](MapAlloc::with_decay) is unmapped.
//!
//! `realloc` grows and shrinks with `mremap` (pages move, bytes are not copied; a shrink frees
//! the tail's pages at once). Blocks of at least [`with_thp`](MapAlloc::with_thp) bytes are
//! aligned to the huge page size and advised `MADV_HUGEPAGE`, so touching them costs one fault
//! (and one 2 MiB clear) per 2 MiB instead of 512 faults. Blocks are never rounded up beyond
//! whole base pages, so THP adds no RSS slack: the partial 2 MiB at a block's end uses base pages.
//!
//! It works as the global allocator and as a standalone arena:
//!
//! ```
//! use mmkit::alloc::MapAlloc;
//! // #[global_allocator]
//! static ALLOC: MapAlloc = MapAlloc::new().with_thp(4 << 20);
//!
//! let arena = MapAlloc::new().with_decay(std::time::Duration::from_millis(10));
//! let mut block = arena.alloc_block(1 << 20).expect("mapped");
//! block.fill(1);
//! block.grow(8 << 20).expect("grown with mremap");
//! assert_eq!(block[0], 1);
//! drop(block);
//! let s = arena.stats();
//! assert_eq!(s.cached_bytes, 8 << 20); // the address space is kept for reuse...
//! assert_eq!(s.cached_resident_bytes, 0); // ...without its memory
//! std::thread::sleep(std::time::Duration::from_millis(30));
//! arena.purge_expired();
//! assert_eq!(arena.stats().cached_bytes, 0); // unmapped once the decay time passed
//! ```
//!
//! # Inside the allocator
//! The cache is a fixed-size array and the table of live blocks a growable array allocated
//! from [`System`] (never from this allocator), both behind a spin lock held for table updates
//! (and for `mincore` in [`stats`](MapAlloc::stats)), never across `mmap`, `munmap`, `mremap`
//! or `madvise`; the counters are atomics. The
//! live table serves [`stats`](MapAlloc::stats), so every block is counted there; only if
//! `System` cannot grow the table is a block left out (see
//! [`MapAllocStats::untracked_blocks`]).

// One of the modules with `unsafe`: owns raw address space (DESIGN.md: the faces and composites).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rustix::mm::{MapFlags, ProtFlags};

use crate::sys;

const CACHE_SLOTS: usize = 64;

#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    len: usize,
    /// When it was freed (cache) — unused for live blocks.
    at: u64,
    /// Cache only: its pages were kept (not purged).
    resident: bool,
    /// Cache only: the range is advised `MADV_HUGEPAGE`.
    thp: bool,
}

const EMPTY: Block = Block { ptr: 0, len: 0, at: 0, resident: false, thp: false };

/// Live blocks, in an array from `System` that grows by doubling.
struct Live {
    ptr: *mut Block,
    cap: usize,
    len: usize,
}

impl Live {
    fn as_slice(&self) -> &[Block] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: `ptr` holds `cap >= len` blocks from `System`, the first `len` initialized.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [Block] {
        if self.ptr.is_null() {
            return &mut [];
        }
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Appends `b`; false when `System` cannot grow the array.
    fn push(&mut self, b: Block) -> bool {
        if self.len == self.cap {
            let cap = (self.cap * 2).max(64);
            let Ok(layout) = Layout::array::<Block>(cap) else { return false };
            // SAFETY: a non-zero layout; `System` never calls back into this allocator.
            let p = unsafe { System.alloc(layout) }.cast::<Block>();
            if p.is_null() {
                return false;
            }
            if !self.ptr.is_null() {
                // SAFETY: the old array holds `len` initialized blocks and the new one has room
                // for `cap > len`; the old one came from `System` with `Layout::array(self.cap)`.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.ptr, p, self.len);
                    System.dealloc(self.ptr.cast(), Layout::array::<Block>(self.cap).expect("allocated before"));
                }
            }
            self.ptr = p;
            self.cap = cap;
        }
        // SAFETY: `len < cap` after growing.
        unsafe { self.ptr.add(self.len).write(b) };
        self.len += 1;
        true
    }

    /// Removes the block at `ptr`; false when it is not in the table.
    fn remove(&mut self, ptr: usize) -> bool {
        let s = self.as_mut_slice();
        // Recent blocks are freed first more often: search from the end.
        let Some(i) = s.iter().rposition(|b| b.ptr == ptr) else { return false };
        let last = s.len() - 1;
        s.swap(i, last);
        self.len -= 1;
        true
    }

    fn release(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: allocated from `System` with this layout in `push`.
            unsafe { System.dealloc(self.ptr.cast(), Layout::array::<Block>(self.cap).expect("allocated before")) };
        }
        *self = Live { ptr: std::ptr::null_mut(), cap: 0, len: 0 };
    }
}

struct Tables {
    cache: [Block; CACHE_SLOTS],
    live: Live,
}

/// What [`MapAlloc::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapAllocStats {
    /// Bytes of mappings handed out and not yet freed (whole pages).
    pub live_bytes: usize,
    /// Bytes of address space of freed mappings kept for reuse.
    pub cached_bytes: usize,
    /// `live_bytes + cached_bytes`: address space this allocator holds.
    pub mapped_bytes: usize,
    /// Resident bytes (`mincore`) of every live and cached block: the RAM this allocator's
    /// mappings use. Blocks smaller than the threshold live in the system allocator and are
    /// not counted. A snapshot: other threads may allocate and free while it is taken.
    pub resident_bytes: usize,
    /// Resident bytes of the cached blocks alone (0 unless
    /// [`with_resident_cache`](MapAlloc::with_resident_cache) lets cached blocks keep pages).
    pub cached_resident_bytes: usize,
    /// Live blocks left out of `resident_bytes` because the system allocator could not grow
    /// the live table (0 unless memory ran out).
    pub untracked_blocks: usize,
    /// `mmap` calls made.
    pub maps: u64,
    /// `munmap` calls made.
    pub unmaps: u64,
    /// `mremap` calls made (realloc growth and shrink, cache reuse).
    pub remaps: u64,
    /// `madvise(MADV_DONTNEED)` calls that dropped a freed block's pages.
    pub purges: u64,
    /// Allocations served from the cache.
    pub cache_hits: u64,
}

/// A large-block allocator on anonymous mappings; see the [module docs](self).
///
/// # Invariant
/// Every mapped block is a private read-write anonymous mapping of `len_for(size)` bytes
/// (whole pages, at most `isize::MAX`; a longer request gets null or `None`), owned by
/// exactly one holder: a caller (a [`MapBlock`] or a `GlobalAlloc` user) while live, the cache
/// while freed. A block leaves the cache before it is handed out, and each mapping is
/// unmapped exactly once. The table of live blocks and the cache change only under the lock.
pub struct MapAlloc {
    threshold: usize,
    thp_min: usize,
    decay_ns: u64,
    max_cached: usize,
    max_cached_resident: usize,
    lock: AtomicBool,
    tables: UnsafeCell<Tables>,
    live_bytes: AtomicUsize,
    cached_bytes: AtomicUsize,
    /// Bytes of cached blocks that kept their pages (changed only with the lock held).
    cached_resident: AtomicUsize,
    untracked: AtomicUsize,
    maps: AtomicU64,
    unmaps: AtomicU64,
    remaps: AtomicU64,
    purges: AtomicU64,
    hits: AtomicU64,
}

// SAFETY: `tables` is only accessed with `lock` held (see `Guard`); everything else is atomic.
unsafe impl Sync for MapAlloc {}
// SAFETY: the allocator owns its cached mappings and its live table; moving it between threads
// is fine.
unsafe impl Send for MapAlloc {}

impl std::fmt::Debug for MapAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapAlloc")
            .field("threshold", &self.threshold)
            .field("thp_min", &self.thp_min)
            .field("decay_ns", &self.decay_ns)
            .field("max_cached", &self.max_cached)
            .field("max_cached_resident", &self.max_cached_resident)
            .field("stats", &self.counters())
            .finish()
    }
}

impl Default for MapAlloc {
    fn default() -> Self {
        MapAlloc::new()
    }
}

struct Guard<'a>(&'a MapAlloc);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

impl Guard<'_> {
    fn tables(&mut self) -> &mut Tables {
        // SAFETY: the lock is held for the guard's lifetime, so this is the only access, and
        // `&mut self` keeps the borrow unique within this thread.
        unsafe { &mut *self.0.tables.get() }
    }
}

/// Blocks to unmap after the lock is released.
struct Evicted {
    blocks: [Block; CACHE_SLOTS + 1],
    n: usize,
}

impl Evicted {
    fn new() -> Self {
        Evicted { blocks: [EMPTY; CACHE_SLOTS + 1], n: 0 }
    }
    fn push(&mut self, b: Block) {
        self.blocks[self.n] = b;
        self.n += 1;
    }
}

impl MapAlloc {
    /// An allocator with the defaults: blocks of 128 KiB and up are mapped, no THP, freed
    /// mappings cached (pages dropped) for up to 1 s and 256 MiB of address space.
    pub const fn new() -> MapAlloc {
        MapAlloc {
            threshold: 128 << 10,
            thp_min: 0,
            decay_ns: 1_000_000_000,
            max_cached: 256 << 20,
            max_cached_resident: 0,
            lock: AtomicBool::new(false),
            tables: UnsafeCell::new(Tables {
                cache: [EMPTY; CACHE_SLOTS],
                live: Live { ptr: std::ptr::null_mut(), cap: 0, len: 0 },
            }),
            live_bytes: AtomicUsize::new(0),
            cached_bytes: AtomicUsize::new(0),
            cached_resident: AtomicUsize::new(0),
            untracked: AtomicUsize::new(0),
            maps: AtomicU64::new(0),
            unmaps: AtomicU64::new(0),
            remaps: AtomicU64::new(0),
            purges: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// Map blocks of at least `bytes` (smaller ones go to the system allocator).
    pub const fn with_threshold(mut self, bytes: usize) -> Self {
        self.threshold = if bytes == 0 { 1 } else { bytes };
        self
    }

    /// Back blocks of at least `bytes` with transparent huge pages (aligned to the kernel's huge
    /// page size, `hpage_pmd_size` in sysfs: 2 MiB on x86_64 with 4 KiB pages; and
    /// advised `MADV_HUGEPAGE`); 0 turns it off.
    pub const fn with_thp(mut self, bytes: usize) -> Self {
        self.thp_min = bytes;
        self
    }

    /// Unmap cached mappings unused for `decay` (anything past `u64::MAX` nanoseconds, some
    /// 584 years, means never).
    pub const fn with_decay(mut self, decay: Duration) -> Self {
        let ns = decay.as_nanos();
        self.decay_ns = if ns > u64::MAX as u128 { u64::MAX } else { ns as u64 };
        self
    }

    /// Cache at most `bytes` of freed mappings' address space (0 disables the cache).
    pub const fn with_max_cached(mut self, bytes: usize) -> Self {
        self.max_cached = bytes;
        self
    }

    /// Let up to `bytes` of cached blocks keep their pages (default 0: every freed block's
    /// pages are dropped with `MADV_DONTNEED`). Reusing a resident block skips page faults and
    /// zeroing; the price is up to `bytes` of RSS held by memory nobody uses. Also capped by
    /// [`with_max_cached`](Self::with_max_cached).
    pub const fn with_resident_cache(mut self, bytes: usize) -> Self {
        self.max_cached_resident = bytes;
        self
    }

    fn lock(&self) -> Guard<'_> {
        let mut spins = 0u32;
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Guard(self)
    }

    fn is_mapped(&self, layout: &Layout) -> bool {
        layout.size() >= self.threshold && layout.align() <= sys::page_size()
    }

    /// The mapping length for a block of `size` bytes: whole pages, at most `isize::MAX`
    /// bytes (`None` when rounding overflows or the result would be too long to exist).
    fn len_for(size: usize) -> Option<usize> {
        crate::page::check_page_len("MapAlloc", size as u64, sys::page_size() as u64).ok()
    }

    /// [`len_for`](Self::len_for) of a size that was allocated, so it fitted then.
    fn live_len(size: usize) -> usize {
        Self::len_for(size).expect("the block was allocated with this size")
    }

    fn wants_thp(&self, len: usize) -> bool {
        self.thp_min != 0 && len >= self.thp_min && len >= sys::thp_size()
    }

    /// A fresh mapping of `len` bytes (THP-aligned when wanted); null on failure.
    fn map_fresh(&self, len: usize) -> *mut u8 {
        let thp = self.wants_thp(len);
        let flags = MapFlags::PRIVATE;
        let prot = ProtFlags::READ | ProtFlags::WRITE;
        let Ok(p) = sys::mmap_anon_aligned(len, if thp { sys::thp_size() } else { 0 }, prot, flags) else {
            return std::ptr::null_mut();
        };
        self.maps.fetch_add(1, Ordering::Relaxed);
        if thp {
            // SAFETY: the fresh mapping nobody refers to yet; the advice changes no contents.
            let _ = unsafe { sys::madvise(p, len, libc::MADV_HUGEPAGE) };
        }
        p
    }

    /// Frees the destination `dest..+len` of a failed `MREMAP_FIXED`. The kernel unmaps the
    /// destination before the checks that can still fail the move (the commit charge under
    /// `vm.overcommit_memory=2`, `RLIMIT_MEMLOCK`), so by now the range may be free and another
    /// thread's `mmap` may have been placed in it: unmapping it blindly would unmap that owner's
    /// memory. The range is claimed back first (`MAP_FIXED_NOREPLACE`, which never replaces) and
    /// unmapped only then; when anything is there it is left alone: our own destination, if the
    /// move failed before the kernel unmapped it (address space only: its pages were never
    /// touched), or another owner's mapping.
    fn give_back_after_failed_move(&self, dest: *mut u8, len: usize) {
        let flags = MapFlags::PRIVATE | MapFlags::from_bits_retain(sys::kconst::MAP_FIXED_NOREPLACE as u32);
        // SAFETY: no MAP_FIXED: MAP_FIXED_NOREPLACE fails rather than replace anything (a
        // kernel before 4.17 takes it as a hint and may place the mapping elsewhere: wherever
        // it is, what it returns is ours alone).
        if let Ok(p) = unsafe { sys::mmap(dest.cast(), len, ProtFlags::empty(), flags, None, 0) } {
            self.unmap(Block { ptr: p as usize, len, ..EMPTY });
        }
    }

    fn unmap(&self, b: Block) {
        // SAFETY: `b` is a mapping this allocator owns (cached or being freed); nobody refers to it.
        let _ = unsafe { sys::munmap(b.ptr as *mut u8, b.len) };
        self.unmaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a cache entry out of the accounting (the caller empties or replaces its slot).
    fn uncount(&self, b: &Block) {
        self.cached_bytes.fetch_sub(b.len, Ordering::Relaxed);
        if b.resident {
            self.cached_resident.fetch_sub(b.len, Ordering::Relaxed);
        }
    }

    /// Moves expired cache entries (and, with `all`, every entry) into `out`.
    fn evict_locked(&self, t: &mut Tables, now: u64, all: bool, out: &mut Evicted) {
        for slot in t.cache.iter_mut() {
            if slot.ptr != 0 && (all || now.saturating_sub(slot.at) >= self.decay_ns) {
                self.uncount(slot);
                out.push(*slot);
                *slot = EMPTY;
            }
        }
    }

    fn track(&self, t: &mut Tables, ptr: usize, len: usize) {
        if !t.live.push(Block { ptr, len, ..EMPTY }) {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn untrack(&self, t: &mut Tables, ptr: usize) {
        if !t.live.remove(ptr) {
            let _ = self.untracked.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| u.checked_sub(1));
        }
    }

    /// A mapped block of exactly `len` bytes: from the cache (best fit, split; a resident
    /// block may be grown) or fresh. Returns the pointer and whether its bytes are known to be
    /// zero.
    fn take(&self, len: usize) -> (*mut u8, bool) {
        let now = sys::anon::coarse_now_ns();
        let thp = self.wants_thp(len);
        let mut evicted = Evicted::new();
        let mut found = EMPTY;
        let mut grow = EMPTY;
        {
            let mut g = self.lock();
            let t = g.tables();
            self.evict_locked(t, now, false, &mut evicted);
            // Best fit: the smallest cached block that is big enough (for a THP block, one
            // that starts on a huge page boundary), resident ones first on a tie.
            let fit = t
                .cache
                .iter()
                .enumerate()
                .filter(|(_, b)| b.ptr != 0 && b.len >= len && (!thp || b.ptr % sys::thp_size() == 0))
                .min_by_key(|(_, b)| (b.len, !b.resident))
                .map(|(i, _)| i);
            if let Some(i) = fit {
                found = t.cache[i];
                self.uncount(&found);
                t.cache[i] = EMPTY;
                if found.len > len {
                    let tail = Block { ptr: found.ptr + len, len: found.len - len, ..found };
                    if found.thp || found.len >= sys::thp_size() {
                        // Unmapped, not cached: while the tail shared the block's VMA, a touch
                        // of the block's last partial 2 MiB could fault in a whole huge page
                        // (advised, or any VMA in THP `always` mode), part of it in the unused
                        // tail. Tails are kept only from blocks smaller than a huge page.
                        evicted.push(tail);
                    } else {
                        // The tail stays cached in the same slot: whole pages of a mapping we own.
                        self.cached_bytes.fetch_add(tail.len, Ordering::Relaxed);
                        if tail.resident {
                            self.cached_resident.fetch_add(tail.len, Ordering::Relaxed);
                        }
                        t.cache[i] = tail;
                    }
                    found.len = len;
                }
            } else if let Some((i, _)) = t
                .cache
                .iter()
                .enumerate()
                .filter(|(_, b)| b.ptr != 0 && b.resident && b.len >= len / 2)
                .max_by_key(|(_, b)| b.len)
            {
                // Too small, but its resident pages are worth keeping: grow it with mremap.
                grow = t.cache[i];
                self.uncount(&grow);
                t.cache[i] = EMPTY;
            }
        }
        for b in &evicted.blocks[..evicted.n] {
            self.unmap(*b);
        }
        if found.ptr != 0 {
            self.hits.fetch_add(1, Ordering::Relaxed);
            if thp && !found.thp {
                // SAFETY: our block; advice changes no contents.
                let _ = unsafe { sys::madvise(found.ptr as *mut u8, len, libc::MADV_HUGEPAGE) };
            }
            return (found.ptr as *mut u8, !found.resident);
        }
        if grow.ptr != 0 {
            let q = self.remap(grow.ptr as *mut u8, grow.len, len);
            if !q.is_null() {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return (q, false);
            }
            self.unmap(grow);
        }
        (self.map_fresh(len), true)
    }

    /// Puts `b` in the cache (evicting the oldest entries if needed); false if it does not fit.
    /// A resident block must fit the resident budget too.
    fn cache_insert(&self, b: Block) -> bool {
        if b.len > self.max_cached || (b.resident && b.len > self.max_cached_resident) {
            return false;
        }
        let mut evicted = Evicted::new();
        let ok = {
            let mut g = self.lock();
            let t = g.tables();
            loop {
                let over_bytes = self.cached_bytes.load(Ordering::Relaxed) + b.len > self.max_cached;
                let over_resident =
                    b.resident && self.cached_resident.load(Ordering::Relaxed) + b.len > self.max_cached_resident;
                let full = t.cache.iter().all(|s| s.ptr != 0);
                if !(over_bytes || over_resident || full) {
                    break;
                }
                // Evict the oldest entry (a resident one when over the resident budget).
                let Some((i, _)) = t
                    .cache
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.ptr != 0 && (over_bytes || full || s.resident))
                    .min_by_key(|(_, s)| s.at)
                else {
                    break;
                };
                self.uncount(&t.cache[i]);
                evicted.push(t.cache[i]);
                t.cache[i] = EMPTY;
            }
            let fits = self.cached_bytes.load(Ordering::Relaxed) + b.len <= self.max_cached
                && (!b.resident || self.cached_resident.load(Ordering::Relaxed) + b.len <= self.max_cached_resident);
            match t.cache.iter_mut().find(|s| s.ptr == 0) {
                Some(slot) if fits => {
                    *slot = b;
                    self.cached_bytes.fetch_add(b.len, Ordering::Relaxed);
                    if b.resident {
                        self.cached_resident.fetch_add(b.len, Ordering::Relaxed);
                    }
                    true
                }
                _ => false,
            }
        };
        for e in &evicted.blocks[..evicted.n] {
            self.unmap(*e);
        }
        ok
    }

    fn alloc_mapped(&self, size: usize, zeroed: bool) -> *mut u8 {
        let Some(len) = Self::len_for(size) else { return std::ptr::null_mut() };
        let (p, is_zero) = self.take(len);
        if p.is_null() {
            return p;
        }
        if zeroed && !is_zero {
            // SAFETY: `p..p+len` is a read-write block we own; MADV_DONTNEED on private
            // anonymous memory makes it read back as zeros, cheaper than writing them for
            // large blocks.
            if unsafe { sys::madvise(p, len, libc::MADV_DONTNEED) }.is_err() {
                // SAFETY: as above; writing zeros to our own block.
                unsafe { p.write_bytes(0, len) };
            }
        }
        self.live_bytes.fetch_add(len, Ordering::Relaxed);
        let mut g = self.lock();
        self.track(g.tables(), p as usize, len);
        p
    }

    fn free_mapped(&self, p: *mut u8, size: usize) {
        let len = Self::live_len(size);
        self.live_bytes.fetch_sub(len, Ordering::Relaxed);
        let now = sys::anon::coarse_now_ns();
        let thp = self.wants_thp(len);
        let keep = {
            let mut g = self.lock();
            self.untrack(g.tables(), p as usize);
            len <= self.max_cached && self.cached_resident.load(Ordering::Relaxed) + len <= self.max_cached_resident
        };
        let b = Block { ptr: p as usize, len, at: now, resident: keep, thp };
        let cached = if len > self.max_cached {
            false
        } else if keep && self.cache_insert(b) {
            true
        } else {
            // Keep the address space, drop the memory.
            // SAFETY: the block was freed by its owner, so nothing refers to it; zeros are fine.
            let purged = unsafe { sys::madvise(p, len, libc::MADV_DONTNEED) }.is_ok();
            self.purges.fetch_add(1, Ordering::Relaxed);
            purged && self.cache_insert(Block { resident: false, ..b })
        };
        if !cached {
            self.unmap(b);
        }
        // Expired entries go now, so an idle program returns its address space after `decay`.
        self.purge_older_than(now);
    }

    fn purge_older_than(&self, now: u64) {
        let mut evicted = Evicted::new();
        {
            let mut g = self.lock();
            self.evict_locked(g.tables(), now, false, &mut evicted);
        }
        for b in &evicted.blocks[..evicted.n] {
            self.unmap(*b);
        }
    }

    /// Unmaps cached mappings older than the decay time. The allocator also does this on every
    /// large allocation and free; call it from an idle loop to return memory sooner.
    pub fn purge_expired(&self) {
        self.purge_older_than(sys::anon::coarse_now_ns());
    }

    /// Unmaps every cached mapping now.
    pub fn purge_all(&self) {
        let mut evicted = Evicted::new();
        {
            let mut g = self.lock();
            self.evict_locked(g.tables(), 0, true, &mut evicted);
        }
        for b in &evicted.blocks[..evicted.n] {
            self.unmap(*b);
        }
    }

    fn counters(&self) -> MapAllocStats {
        let live = self.live_bytes.load(Ordering::Relaxed);
        let cached = self.cached_bytes.load(Ordering::Relaxed);
        MapAllocStats {
            live_bytes: live,
            cached_bytes: cached,
            mapped_bytes: live + cached,
            resident_bytes: 0,
            cached_resident_bytes: 0,
            untracked_blocks: self.untracked.load(Ordering::Relaxed),
            maps: self.maps.load(Ordering::Relaxed),
            unmaps: self.unmaps.load(Ordering::Relaxed),
            remaps: self.remaps.load(Ordering::Relaxed),
            purges: self.purges.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
        }
    }

    /// Counters, and the resident bytes of every live and cached block (`mincore` over each;
    /// this holds the allocator's lock meanwhile, so call it from outside hot paths).
    pub fn stats(&self) -> MapAllocStats {
        let mut s = self.counters();
        let mut g = self.lock();
        let t = g.tables();
        let cached_res: usize = t.cache.iter().filter(|b| b.ptr != 0).map(|b| resident(*b)).sum();
        let live_res: usize = t.live.as_slice().iter().map(|b| resident(*b)).sum();
        s.cached_resident_bytes = cached_res;
        s.resident_bytes = cached_res + live_res;
        s
    }

    /// A block of at least `size` bytes (rounded up to pages) from this allocator, always
    /// mapped whatever the threshold; freed (cached) on drop. `None` when mapping fails or
    /// `size` rounded up to pages is longer than `isize::MAX`.
    pub fn alloc_block(&self, size: usize) -> Option<MapBlock<'_>> {
        let size = size.max(1);
        let p = self.alloc_mapped(size, false);
        NonNull::new(p).map(|ptr| MapBlock { alloc: self, ptr, len: size })
    }
}

/// Resident bytes of a block (mincore in chunks, no allocation).
fn resident(b: Block) -> usize {
    let page = sys::page_size();
    let mut vec = [0u8; 1024];
    let mut n = 0;
    // On an error the pages counted so far stand (statistics are best effort).
    let _ = sys::mincore_windows(b.ptr, b.len, &mut vec, |_, bytes| {
        n += bytes.iter().filter(|&&v| v & 1 == 1).count();
    });
    n * page
}

impl Drop for MapAlloc {
    fn drop(&mut self) {
        self.purge_all();
        self.tables.get_mut().live.release();
    }
}

// SAFETY: every method either forwards to `System` (small or over-aligned layouts, decided
// from the layout alone, so alloc and dealloc agree) or hands out whole private anonymous
// mappings of `len_for(size)` bytes, page-aligned (hence aligned for any `align <= page`),
// which are returned to the cache or unmapped exactly once on dealloc.
unsafe impl GlobalAlloc for MapAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.is_mapped(&layout) {
            // SAFETY: forwarded contract.
            return unsafe { System.alloc(layout) };
        }
        self.alloc_mapped(layout.size(), false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.is_mapped(&layout) {
            // SAFETY: forwarded contract.
            return unsafe { System.alloc_zeroed(layout) };
        }
        self.alloc_mapped(layout.size(), true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.is_mapped(&layout) {
            // SAFETY: forwarded contract: `ptr` came from `System` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        self.free_mapped(ptr, layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old_mapped, new_mapped) = (self.is_mapped(&layout), self.is_mapped(&new_layout));
        if !old_mapped && !new_mapped {
            // SAFETY: forwarded contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if old_mapped && new_mapped {
            let old_len = Self::live_len(layout.size());
            let Some(new_len) = Self::len_for(new_size) else { return std::ptr::null_mut() };
            if old_len == new_len {
                return ptr;
            }
            let q = self.remap(ptr, old_len, new_len);
            if !q.is_null() {
                self.live_bytes.fetch_add(new_len, Ordering::Relaxed);
                self.live_bytes.fetch_sub(old_len, Ordering::Relaxed);
                let mut g = self.lock();
                let t = g.tables();
                self.untrack(t, ptr as usize);
                self.track(t, q as usize, new_len);
            }
            return q;
        }
        // Crossing the threshold: allocate, copy, free.
        // SAFETY: `new_layout` is valid (caller) and non-zero (it is at least one side's size).
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: both blocks are live and distinct; copy the smaller size.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        q
    }
}

impl MapAlloc {
    /// Resizes a live mapped block with `mremap`. Growing into THP sizes moves the block to a
    /// huge-page-aligned address so the new pages fault in as huge pages.
    fn remap(&self, ptr: *mut u8, old_len: usize, new_len: usize) -> *mut u8 {
        self.remaps.fetch_add(1, Ordering::Relaxed);
        if new_len > old_len && self.wants_thp(new_len) {
            // Try in place first when the block is already aligned.
            if ptr as usize % sys::thp_size() == 0 {
                // SAFETY: our live block; the caller (realloc) gives up `ptr` only on success.
                if let Ok(q) = unsafe { sys::mremap(ptr, old_len, new_len, false) } {
                    // SAFETY: our block; advice changes no contents.
                    let _ = unsafe { sys::madvise(q, new_len, libc::MADV_HUGEPAGE) };
                    return q;
                }
            }
            // Reserve an aligned destination, then move the pages there with MREMAP_FIXED.
            let dest = self.map_fresh(new_len);
            if !dest.is_null() {
                // SAFETY: `ptr..+old_len` is our live block; `dest..+new_len` is a fresh
                // mapping we own and give up to the move.
                match unsafe { sys::anon::mremap_fixed(ptr, old_len, new_len, dest) } {
                    Ok(q) => {
                        // The VMA came with the old block's flags: advise the new one.
                        // SAFETY: our block; advice changes no contents.
                        let _ = unsafe { sys::madvise(q, new_len, libc::MADV_HUGEPAGE) };
                        return q;
                    }
                    Err(_) => self.give_back_after_failed_move(dest, new_len),
                }
            }
        }
        // SAFETY: our live block; it may move (realloc's contract allows it).
        match unsafe { sys::mremap(ptr, old_len, new_len, true) } {
            Ok(q) => q,
            Err(_) => std::ptr::null_mut(),
        }
    }
}

/// A block from [`MapAlloc::alloc_block`]: `Deref<Target = [u8]>`, freed into the
/// allocator's cache on drop.
pub struct MapBlock<'a> {
    alloc: &'a MapAlloc,
    ptr: NonNull<u8>,
    len: usize,
}

impl std::fmt::Debug for MapBlock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapBlock").field("ptr", &self.ptr).field("len", &self.len).finish()
    }
}

// SAFETY: the block is exclusively owned memory, like a Box<[u8]>; the allocator is Sync.
unsafe impl Send for MapBlock<'_> {}
// SAFETY: as above.
unsafe impl Sync for MapBlock<'_> {}

impl MapBlock<'_> {
    /// Grows or shrinks the block to `new_len` bytes with `mremap` (the contents up to the
    /// smaller length are kept; new bytes are unspecified but initialized). `None` (and the
    /// block unchanged) when the kernel refuses or `new_len` is longer than `isize::MAX`.
    pub fn grow(&mut self, new_len: usize) -> Option<()> {
        let new_len = new_len.max(1);
        let (old, new) = (MapAlloc::live_len(self.len), MapAlloc::len_for(new_len)?);
        if old != new {
            let q = NonNull::new(self.alloc.remap(self.ptr.as_ptr(), old, new))?;
            self.alloc.live_bytes.fetch_add(new, Ordering::Relaxed);
            self.alloc.live_bytes.fetch_sub(old, Ordering::Relaxed);
            let mut g = self.alloc.lock();
            let t = g.tables();
            self.alloc.untrack(t, self.ptr.as_ptr() as usize);
            self.alloc.track(t, q.as_ptr() as usize, new);
            self.ptr = q;
        }
        self.len = new_len;
        Some(())
    }
}

impl Deref for MapBlock<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes of a read-write mapping we own exclusively; anonymous memory is
        // zero-filled or holds bytes written earlier, so it is initialized.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for MapBlock<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MapBlock<'_> {
    fn drop(&mut self) {
        self.alloc.free_mapped(self.ptr.as_ptr(), self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Block lengths are whole pages covering the size, never longer than `isize::MAX`,
        /// and `None` exactly when the rounded length would be.
        #[test]
        fn len_for_is_checked(size in prop_oneof![any::<usize>(), (isize::MAX as usize - (1 << 20))..=usize::MAX]) {
            let page = sys::page_size();
            match MapAlloc::len_for(size) {
                Some(len) => {
                    prop_assert!(len >= size && len - size < page && len % page == 0);
                    prop_assert!(len <= isize::MAX as usize);
                }
                None => prop_assert!(size as u128 + page as u128 - 1 > isize::MAX as u128),
            }
        }
    }

    /// Regression (review G6): after a failed `MREMAP_FIXED` the destination was unmapped
    /// blindly, although the kernel may have unmapped it already and another thread's `mmap`
    /// taken its place. Now a free range is claimed back and unmapped; an occupied one is left.
    #[test]
    fn a_failed_moves_destination_is_unmapped_only_when_claimed_back() {
        let arena = MapAlloc::new();
        let len = 4 * sys::page_size();
        let prot = ProtFlags::READ | ProtFlags::WRITE;
        // The kernel unmapped it and nobody took it: claimed back, then unmapped. Another test
        // thread's mapping may land in the range between two of these steps (then the call
        // rightly leaves it alone): tried again elsewhere, a few times.
        let noreplace = MapFlags::PRIVATE | MapFlags::from_bits_retain(sys::kconst::MAP_FIXED_NOREPLACE as u32);
        let mut attempts = 0;
        let free = loop {
            attempts += 1;
            assert!(attempts <= 20, "the freed range was left mapped (or taken by other threads) {attempts} times");
            let free = sys::mmap_anon_aligned(len, 0, prot, MapFlags::PRIVATE).unwrap();
            // SAFETY: our fresh mapping, nobody refers to it.
            unsafe { sys::munmap(free, len) }.unwrap();
            let before = arena.stats().unmaps;
            arena.give_back_after_failed_move(free, len);
            if arena.stats().unmaps != before + 1 {
                continue; // another thread's mapping was there: left alone, as it must be
            }
            // SAFETY: NOREPLACE never replaces: it maps the range only if it is free (claimed
            // back and unmapped by the call).
            match unsafe { sys::mmap(free.cast(), len, prot, noreplace, None, 0) } {
                Ok(p) if p == free => break free,
                // SAFETY: a mapping this call just made elsewhere (a kernel taking NOREPLACE
                // as a hint), nobody refers to it.
                Ok(p) => unsafe { sys::munmap(p, len) }.unwrap(),
                // Left mapped by the call (the bug: every attempt fails, the assert above
                // says so), or taken by another thread after the call unmapped it.
                Err(_) => {}
            }
        };
        let before = arena.stats().unmaps;
        // Another owner's mapping in its place: left alone, its bytes intact.
        let other = free;
        // SAFETY: the mapping just made, ours to write.
        unsafe { other.write(0x5a) };
        arena.give_back_after_failed_move(other, len);
        assert_eq!(arena.stats().unmaps, before, "another owner's mapping was unmapped");
        // SAFETY: still mapped (the call left it): reading it cannot fault.
        assert_eq!(unsafe { other.read() }, 0x5a);
        // SAFETY: our mapping, done with.
        unsafe { sys::munmap(other, len) }.unwrap();
    }

    #[test]
    fn huge_sizes_give_no_block() {
        let arena = MapAlloc::new();
        for size in [usize::MAX, usize::MAX - 1, isize::MAX as usize + 1, isize::MAX as usize] {
            assert!(arena.alloc_block(size).is_none(), "{size:#x}");
        }
    }
}
