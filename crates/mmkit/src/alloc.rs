//! [`MapAlloc`]: a large-block allocator on anonymous mappings.
//!
//! Every block of at least [`threshold`](MapAlloc::with_threshold) bytes is its own anonymous
//! mapping; smaller ones go to [`std::alloc::System`]. Freed mappings are kept in a small cache
//! and handed out again (split or grown with `mremap`) so a busy program does not pay for
//! `mmap`, page faults and zeroing on every allocation; a cached mapping unused for the
//! [decay time](MapAlloc::with_decay) is unmapped, returning its memory to the kernel.
//! `realloc` grows with `mremap` (pages move, bytes are not copied). Blocks of at least
//! [`with_thp`](MapAlloc::with_thp) bytes are aligned to the huge page size and advised
//! `MADV_HUGEPAGE`, so touching them costs one fault per 2 MiB instead of 512.
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
//! assert_eq!(arena.stats().cached_bytes, 8 << 20); // kept for reuse...
//! std::thread::sleep(std::time::Duration::from_millis(30));
//! arena.purge_expired();
//! assert_eq!(arena.stats().cached_bytes, 0); // ...until the decay time passed
//! ```
//!
//! # Inside the allocator
//! The alloc paths never allocate: the cache and the table of live blocks are fixed-size
//! arrays behind a spin lock (held only for table updates, never across a system call that
//! unmaps), and the counters are atomics. The table of live blocks only serves
//! [`stats`](MapAlloc::stats); when it is full, further blocks still work but are not counted
//! as resident.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::sys;

const CACHE_SLOTS: usize = 64;
const LIVE_SLOTS: usize = 1024;
const THP_SIZE: usize = 2 << 20;

#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    len: usize,
    /// When it was freed (cache) — unused for live blocks.
    at: u64,
}

const EMPTY: Block = Block { ptr: 0, len: 0, at: 0 };

struct Tables {
    cache: [Block; CACHE_SLOTS],
    live: [Block; LIVE_SLOTS],
    live_count: usize,
}

/// What [`MapAlloc::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MapAllocStats {
    /// Bytes of mappings handed out and not yet freed.
    pub live_bytes: usize,
    /// Bytes of freed mappings kept for reuse.
    pub cached_bytes: usize,
    /// `live_bytes + cached_bytes`: address space this allocator holds.
    pub mapped_bytes: usize,
    /// Resident bytes of the tracked live blocks and the cached blocks (`mincore`).
    pub resident_bytes: usize,
    /// Resident bytes of the cached blocks alone.
    pub cached_resident_bytes: usize,
    /// Live blocks not in the tracking table (their residency is not counted).
    pub untracked_blocks: usize,
    /// `mmap` calls made.
    pub maps: u64,
    /// `munmap` calls made.
    pub unmaps: u64,
    /// `mremap` calls made (realloc growth and cache reuse).
    pub remaps: u64,
    /// Allocations served from the cache.
    pub cache_hits: u64,
}

/// A large-block allocator on anonymous mappings; see the [module docs](self).
pub struct MapAlloc {
    threshold: usize,
    thp_min: usize,
    decay_ns: u64,
    max_cached: usize,
    lock: AtomicBool,
    tables: UnsafeCell<Tables>,
    live_bytes: AtomicUsize,
    cached_bytes: AtomicUsize,
    untracked: AtomicUsize,
    maps: AtomicU64,
    unmaps: AtomicU64,
    remaps: AtomicU64,
    hits: AtomicU64,
}

// SAFETY: `tables` is only accessed with `lock` held (see `Guard`); everything else is atomic.
unsafe impl Sync for MapAlloc {}
// SAFETY: the allocator owns its cached mappings; moving it between threads is fine.
unsafe impl Send for MapAlloc {}

impl std::fmt::Debug for MapAlloc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapAlloc")
            .field("threshold", &self.threshold)
            .field("thp_min", &self.thp_min)
            .field("decay_ns", &self.decay_ns)
            .field("max_cached", &self.max_cached)
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
    /// mappings cached for up to 1 s and 256 MiB.
    pub const fn new() -> MapAlloc {
        MapAlloc {
            threshold: 128 << 10,
            thp_min: 0,
            decay_ns: 1_000_000_000,
            max_cached: 256 << 20,
            lock: AtomicBool::new(false),
            tables: UnsafeCell::new(Tables { cache: [EMPTY; CACHE_SLOTS], live: [EMPTY; LIVE_SLOTS], live_count: 0 }),
            live_bytes: AtomicUsize::new(0),
            cached_bytes: AtomicUsize::new(0),
            untracked: AtomicUsize::new(0),
            maps: AtomicU64::new(0),
            unmaps: AtomicU64::new(0),
            remaps: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// Map blocks of at least `bytes` (smaller ones go to the system allocator).
    pub const fn with_threshold(mut self, bytes: usize) -> Self {
        self.threshold = if bytes == 0 { 1 } else { bytes };
        self
    }

    /// Back blocks of at least `bytes` with transparent huge pages (aligned to 2 MiB and
    /// advised `MADV_HUGEPAGE`); 0 turns it off.
    pub const fn with_thp(mut self, bytes: usize) -> Self {
        self.thp_min = bytes;
        self
    }

    /// Unmap cached mappings unused for `decay`.
    pub const fn with_decay(mut self, decay: Duration) -> Self {
        self.decay_ns = decay.as_nanos() as u64;
        self
    }

    /// Cache at most `bytes` of freed mappings (0 disables the cache).
    pub const fn with_max_cached(mut self, bytes: usize) -> Self {
        self.max_cached = bytes;
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

    fn len_for(size: usize) -> usize {
        let page = sys::page_size();
        (size + page - 1) & !(page - 1)
    }

    fn wants_thp(&self, len: usize) -> bool {
        self.thp_min != 0 && len >= self.thp_min && len >= THP_SIZE
    }

    /// A fresh mapping of `len` bytes (THP-aligned when wanted); null on failure.
    fn map_fresh(&self, len: usize) -> *mut u8 {
        let thp = self.wants_thp(len);
        let want = if thp { len + THP_SIZE } else { len };
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // SAFETY: no MAP_FIXED: fresh address space.
        let Ok(p) = (unsafe { sys::mmap(std::ptr::null_mut(), want, libc::PROT_READ | libc::PROT_WRITE, flags, None, 0) })
        else {
            return std::ptr::null_mut();
        };
        self.maps.fetch_add(1, Ordering::Relaxed);
        if !thp {
            return p;
        }
        let start = p as usize;
        let aligned = (start + THP_SIZE - 1) & !(THP_SIZE - 1);
        let (head, tail) = (aligned - start, want - (aligned - start) - len);
        // SAFETY: the trimmed pieces are parts of the fresh mapping nobody refers to; the advice
        // changes no contents.
        unsafe {
            if head > 0 {
                let _ = sys::munmap(p, head);
            }
            if tail > 0 {
                let _ = sys::munmap((aligned + len) as *mut u8, tail);
            }
            let _ = sys::madvise(aligned as *mut u8, len, libc::MADV_HUGEPAGE);
        }
        aligned as *mut u8
    }

    fn unmap(&self, b: Block) {
        // SAFETY: `b` is a mapping this allocator owns (cached or being freed); nobody refers to it.
        let _ = unsafe { sys::munmap(b.ptr as *mut u8, b.len) };
        self.unmaps.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves expired cache entries (and, with `all`, every entry) into `out`.
    fn evict_locked(&self, t: &mut Tables, now: u64, all: bool, out: &mut Evicted) {
        for slot in t.cache.iter_mut() {
            if slot.ptr != 0 && (all || now.saturating_sub(slot.at) >= self.decay_ns) {
                self.cached_bytes.fetch_sub(slot.len, Ordering::Relaxed);
                out.push(*slot);
                *slot = EMPTY;
            }
        }
    }

    fn track(&self, t: &mut Tables, ptr: usize, len: usize) {
        if t.live_count < LIVE_SLOTS {
            t.live[t.live_count] = Block { ptr, len, at: 0 };
            t.live_count += 1;
        } else {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn untrack(&self, t: &mut Tables, ptr: usize) {
        let n = t.live_count;
        if let Some(i) = t.live[..n].iter().position(|b| b.ptr == ptr) {
            t.live[i] = t.live[n - 1];
            t.live[n - 1] = EMPTY;
            t.live_count -= 1;
        } else {
            let _ = self.untracked.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| u.checked_sub(1));
        }
    }

    /// A mapped block of exactly `len` bytes: from the cache (split or grown) or fresh.
    /// Returns the pointer and whether its bytes are known to be zero.
    fn take(&self, len: usize) -> (*mut u8, bool) {
        let now = sys::anon::coarse_now_ns();
        let mut evicted = Evicted::new();
        let mut found = EMPTY;
        {
            let mut g = self.lock();
            let t = g.tables();
            self.evict_locked(t, now, false, &mut evicted);
            // Best fit: the smallest cached block that is big enough; else the largest one
            // at least half the size (grown with mremap, keeping its resident pages).
            let mut best: Option<usize> = None;
            for (i, b) in t.cache.iter().enumerate() {
                if b.ptr == 0 {
                    continue;
                }
                best = match best {
                    None if b.len >= len / 2 => Some(i),
                    None => None,
                    Some(j) => {
                        let c = t.cache[j];
                        let better = match (b.len >= len, c.len >= len) {
                            (true, true) => b.len < c.len,
                            (true, false) => true,
                            (false, true) => false,
                            (false, false) => b.len > c.len,
                        };
                        Some(if better { i } else { j })
                    }
                };
            }
            if let Some(i) = best {
                found = t.cache[i];
                t.cache[i] = EMPTY;
                self.cached_bytes.fetch_sub(found.len, Ordering::Relaxed);
            }
        }
        for b in &evicted.blocks[..evicted.n] {
            self.unmap(*b);
        }
        if found.ptr == 0 {
            return (self.map_fresh(len), true);
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        let p = found.ptr as *mut u8;
        if found.len == len {
            return (p, false);
        }
        if found.len > len {
            // Keep the tail cached: it is whole pages of a mapping we own.
            let tail = Block { ptr: found.ptr + len, len: found.len - len, at: found.at };
            if !self.cache_insert(tail, now) {
                self.unmap(tail);
            }
            return (p, false);
        }
        // SAFETY: the cached block is ours and unreferenced; it may move.
        match unsafe { sys::mremap(p, found.len, len, true) } {
            Ok(q) => {
                self.remaps.fetch_add(1, Ordering::Relaxed);
                if self.wants_thp(len) {
                    // SAFETY: our block; advice changes no contents.
                    let _ = unsafe { sys::madvise(q, len, libc::MADV_HUGEPAGE) };
                }
                (q, false)
            }
            Err(_) => {
                self.unmap(found);
                (self.map_fresh(len), true)
            }
        }
    }

    /// Puts `b` in the cache (evicting the oldest entries if needed); false if it does not fit.
    fn cache_insert(&self, b: Block, _now: u64) -> bool {
        if b.len > self.max_cached {
            return false;
        }
        let mut evicted = Evicted::new();
        let ok = {
            let mut g = self.lock();
            let t = g.tables();
            while self.cached_bytes.load(Ordering::Relaxed) + b.len > self.max_cached || t.cache.iter().all(|s| s.ptr != 0)
            {
                let Some((i, _)) = t.cache.iter().enumerate().filter(|(_, s)| s.ptr != 0).min_by_key(|(_, s)| s.at)
                else {
                    break;
                };
                self.cached_bytes.fetch_sub(t.cache[i].len, Ordering::Relaxed);
                evicted.push(t.cache[i]);
                t.cache[i] = EMPTY;
            }
            match t.cache.iter_mut().find(|s| s.ptr == 0) {
                Some(slot) if self.cached_bytes.load(Ordering::Relaxed) + b.len <= self.max_cached => {
                    *slot = b;
                    self.cached_bytes.fetch_add(b.len, Ordering::Relaxed);
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
        let len = Self::len_for(size);
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
        let len = Self::len_for(size);
        self.live_bytes.fetch_sub(len, Ordering::Relaxed);
        {
            let mut g = self.lock();
            self.untrack(g.tables(), p as usize);
        }
        let now = sys::anon::coarse_now_ns();
        let b = Block { ptr: p as usize, len, at: now };
        if !self.cache_insert(b, now) {
            self.unmap(b);
        }
        // Expired entries go now, so an idle program returns its memory after `decay`.
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
            cache_hits: self.hits.load(Ordering::Relaxed),
        }
    }

    /// Counters, and the resident bytes of the tracked blocks (`mincore`; this holds the lock
    /// for a moment per block, so call it from outside hot paths).
    pub fn stats(&self) -> MapAllocStats {
        let mut s = self.counters();
        let mut g = self.lock();
        let t = g.tables();
        let cached_res: usize = t.cache.iter().filter(|b| b.ptr != 0).map(|b| resident(*b)).sum();
        let live_res: usize = t.live[..t.live_count].iter().map(|b| resident(*b)).sum();
        s.cached_resident_bytes = cached_res;
        s.resident_bytes = cached_res + live_res;
        s
    }

    /// A block of at least `size` bytes (rounded up to pages) from this allocator, always
    /// mapped whatever the threshold; freed (cached) on drop. `None` when mapping fails.
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
    let mut done = 0;
    let mut n = 0;
    while done < b.len {
        let chunk = (b.len - done).min(vec.len() * page);
        // SAFETY: page-aligned range of a mapping this allocator tracks (live or cached);
        // mincore only reads page-table state; `vec` has a byte per page of the chunk.
        if unsafe { sys::mincore((b.ptr + done) as *mut u8, chunk, &mut vec) }.is_err() {
            break;
        }
        n += vec[..chunk / page].iter().filter(|&&v| v & 1 == 1).count();
        done += chunk;
    }
    n * page
}

impl Drop for MapAlloc {
    fn drop(&mut self) {
        self.purge_all();
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
            let (old_len, new_len) = (Self::len_for(layout.size()), Self::len_for(new_size));
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
    /// 2 MiB-aligned address so the new pages fault in as huge pages.
    fn remap(&self, ptr: *mut u8, old_len: usize, new_len: usize) -> *mut u8 {
        self.remaps.fetch_add(1, Ordering::Relaxed);
        if new_len > old_len && self.wants_thp(new_len) {
            // Try in place first when the block is already aligned.
            if ptr as usize % THP_SIZE == 0 {
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
                    Err(_) => self.unmap(Block { ptr: dest as usize, len: new_len, at: 0 }),
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
    /// block unchanged) when the kernel refuses.
    pub fn grow(&mut self, new_len: usize) -> Option<()> {
        let new_len = new_len.max(1);
        let (old, new) = (MapAlloc::len_for(self.len), MapAlloc::len_for(new_len));
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
