//! Anonymous-memory benchmarks: THP vs 4 KiB first touch, MapAlloc vs glibc malloc on a mixed
//! large-allocation workload (time, and peak RSS measured in forked children), and realloc
//! growth by doubling. Run: `cargo bench -p mmkit --bench anon`.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mmkit::alloc::MapAlloc;
use mmkit::{page_size, Advice, HugePages, MapOptions};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

fn touch(p: *mut u8, from: usize, to: usize) {
    let page = page_size();
    for i in (from..to).step_by(page) {
        // SAFETY: callers pass a live writable block of at least `to` bytes.
        unsafe { p.add(i).write_volatile(1) };
    }
}

fn first_touch(huge: bool) -> Duration {
    let mut o = MapOptions::new();
    o.len(GIB);
    if huge {
        o.huge_pages(HugePages::Transparent);
    } else {
        o.advice(Advice::NoHugePage);
    }
    let mut m = o.map_anon().unwrap();
    let t = Instant::now();
    touch(m.as_mut_ptr(), 0, GIB);
    let d = t.elapsed();
    drop(black_box(m));
    d
}

/// Which allocator a workload uses.
trait Alloc {
    fn alloc(&self, size: usize) -> *mut u8;
    fn free(&self, p: *mut u8, size: usize);
    fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8;
}

struct Glibc;
impl Alloc for Glibc {
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain malloc.
        unsafe { libc::malloc(size).cast() }
    }
    fn free(&self, p: *mut u8, _: usize) {
        // SAFETY: `p` came from malloc/realloc.
        unsafe { libc::free(p.cast()) }
    }
    fn realloc(&self, p: *mut u8, _: usize, new: usize) -> *mut u8 {
        // SAFETY: `p` came from malloc/realloc.
        unsafe { libc::realloc(p.cast(), new).cast() }
    }
}

impl Alloc for MapAlloc {
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: non-zero size, align 16.
        unsafe { GlobalAlloc::alloc(self, Layout::from_size_align_unchecked(size, 16)) }
    }
    fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: `p` came from this allocator with this size.
        unsafe { GlobalAlloc::dealloc(self, p, Layout::from_size_align_unchecked(size, 16)) }
    }
    fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { GlobalAlloc::realloc(self, p, Layout::from_size_align_unchecked(old, 16), new) }
    }
}

/// Sizes 128 KiB–64 MiB (log-uniform), random lifetimes (a random one of 8 slots is replaced
/// each step), every page touched.
fn mixed(a: &dyn Alloc, steps: usize) {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut slots: [(usize, usize); 8] = [(0, 0); 8];
    for _ in 0..steps {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let bits = 17 + (rng % 9) as u32; // 2^17 .. 2^25
        let size = (1usize << bits) + ((rng >> 16) as usize % (1usize << bits));
        let size = size.min(64 * MIB);
        let slot = (rng >> 8) as usize % slots.len();
        let (p, n) = slots[slot];
        if p != 0 {
            a.free(p as *mut u8, n);
        }
        let q = a.alloc(size);
        assert!(!q.is_null());
        touch(q, 0, size);
        slots[slot] = (q as usize, size);
    }
    for (p, n) in slots {
        if p != 0 {
            a.free(p as *mut u8, n);
        }
    }
}

fn growth(a: &dyn Alloc) {
    let mut len = 4 << 10;
    let mut p = a.alloc(len);
    touch(p, 0, len);
    while len < GIB {
        p = a.realloc(p, len, len * 2);
        assert!(!p.is_null());
        touch(p, len, len * 2);
        len *= 2;
    }
    a.free(p, len);
}

fn mapalloc() -> MapAlloc {
    MapAlloc::new().with_thp(2 * MIB).with_max_cached(8 * MIB)
}

/// Peak RSS (KiB) of a forked child that runs `f` (`wait4` → `ru_maxrss`).
fn peak_rss_kib(f: impl FnOnce()) -> i64 {
    // SAFETY: the bench process is single-threaded here; the child runs the workload (which
    // may allocate) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        f();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child with valid out-pointers.
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    ru.ru_maxrss
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("first_touch_1GiB");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.bench_function("base_4KiB", |b| b.iter_custom(|n| (0..n).map(|_| first_touch(false)).sum()));
    g.bench_function("mmkit_thp", |b| b.iter_custom(|n| (0..n).map(|_| first_touch(true)).sum()));
    g.finish();

    let steps = 120;
    let mut g = c.benchmark_group("mixed_large_allocs");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    g.bench_function("glibc_malloc", |b| b.iter(|| mixed(&Glibc, steps)));
    let a = mapalloc();
    g.bench_function("mapalloc", |b| b.iter(|| mixed(&a, steps)));
    g.finish();

    let mut g = c.benchmark_group("realloc_growth_4KiB_to_1GiB");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    g.bench_function("glibc_realloc", |b| b.iter(|| growth(&Glibc)));
    g.bench_function("mapalloc", |b| b.iter(|| growth(&a)));
    g.finish();

    // Peak RSS of the mixed workload, each in a fresh forked child (3 runs, medians).
    let base = peak_rss_kib(|| {});
    let mut glibc: Vec<i64> = (0..3).map(|_| peak_rss_kib(|| mixed(&Glibc, steps)) - base).collect();
    let mut mapa: Vec<i64> = (0..3).map(|_| peak_rss_kib(|| mixed(&mapalloc(), steps)) - base).collect();
    glibc.sort();
    mapa.sort();
    println!(
        "peak RSS above the process baseline, mixed workload (median of 3): glibc {} KiB, MapAlloc {} KiB, ratio {:.3}",
        glibc[1],
        mapa[1],
        mapa[1] as f64 / glibc[1] as f64
    );
}

criterion_group!(anon, benches);
criterion_main!(anon);
