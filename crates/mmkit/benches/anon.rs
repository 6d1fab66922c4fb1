//! Anonymous-memory benchmarks: THP vs 4 KiB first touch, MapAlloc vs glibc malloc on a mixed
//! large-allocation workload (time and peak RSS), and realloc growth by doubling.
//!
//! Run: `cargo bench -p mmkit --bench anon`. First comes the interleaved report (the numbers
//! BENCHMARKS-anon.md quotes): peers alternate round by round in this one process, each round
//! gives a time (and for the mixed workload a peak RSS), and the medians and the median of the
//! per-round ratios are printed. `MMKIT_BENCH_ROUNDS` sets the rounds (default 15). Then the
//! criterion groups run the mixed workload and realloc growth (sample_size 10) for criterion's own statistics
//! (`MMKIT_BENCH_QUICK=1` skips them). The mixed workload's peers are glibc (run the bench with
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` for its huge-page mode), MapAlloc, jemalloc and mimalloc.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mmkit::alloc::MapAlloc;
use mmkit::{page_size, Advice, HugePages, MapOptions, Populate};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

fn touch(p: *mut u8, from: usize, to: usize) {
    let page = page_size();
    for i in (from..to).step_by(page) {
        // SAFETY: callers pass a live writable block of at least `to` bytes.
        unsafe { p.add(i).write_volatile(1) };
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Touch {
    /// 4 KiB pages (`MADV_NOHUGEPAGE`, so a THP `always` machine does not blur it), one byte
    /// written per page.
    Base,
    /// `HugePages::Transparent` (2 MiB-aligned, `MADV_HUGEPAGE`), one byte written per 4 KiB.
    Thp,
    /// `HugePages::Transparent` plus `Populate::Write` (`MADV_POPULATE_WRITE`): the map call
    /// faults the huge pages in; timed from the map call, then the same touch loop.
    ThpPopulate,
}

/// Time to first-touch 1 GiB (a fresh map each call; the map call is timed only when it does
/// the populating). With `check`, also returns the huge page bytes and alignment seen in smaps.
fn first_touch(kind: Touch, check: bool) -> (Duration, Option<(u64, bool)>) {
    let mut o = MapOptions::new();
    o.len(GIB);
    match kind {
        Touch::Base => {
            o.advice(Advice::NoHugePage);
        }
        Touch::Thp => {
            o.huge_pages(HugePages::Transparent);
        }
        Touch::ThpPopulate => {
            o.huge_pages(HugePages::Transparent).populate(Populate::Write);
        }
    }
    let t = Instant::now();
    let mut m = o.map_anon().unwrap();
    let t = if kind == Touch::ThpPopulate { t } else { Instant::now() };
    touch(m.as_mut_ptr(), 0, GIB);
    let d = t.elapsed();
    let seen = check.then(|| {
        let huge = mmkit::inspect::huge_page_bytes(m.mapping()).unwrap_or(0);
        (huge, m.as_ptr() as usize % (2 * MIB) == 0)
    });
    drop(black_box(m));
    (d, seen)
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

/// jemalloc and mimalloc through their crates' `GlobalAlloc` types, called directly (not as
/// the global allocator), so every peer runs in this one process with the same layout.
struct Global<A>(A);
impl<A: GlobalAlloc> Alloc for Global<A> {
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: non-zero size, align 16.
        unsafe { self.0.alloc(Layout::from_size_align_unchecked(size, 16)) }
    }
    fn free(&self, p: *mut u8, size: usize) {
        // SAFETY: `p` came from this allocator with this size.
        unsafe { self.0.dealloc(p, Layout::from_size_align_unchecked(size, 16)) }
    }
    fn realloc(&self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { self.0.realloc(p, Layout::from_size_align_unchecked(old, 16), new) }
    }
}

/// The glibc peer's name: `glibc_malloc_hugetlb` when run with
/// `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc reads tunables at start-up, so scripts/bench
/// runs this bench a second time with them).
fn glibc_name() -> &'static str {
    match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if t.contains("glibc.malloc.hugetlb=1") => "glibc_malloc_hugetlb",
        _ => "glibc_malloc",
    }
}

/// A line scripts/bench reads: one peer's per-round figures as JSON.
fn bench_line(group: &str, peer: &str, time_ms: &[f64], peak_kib: &[i64]) {
    println!("BENCH {{\"group\":\"{group}\",\"peer\":\"{peer}\",\"time_ms\":{time_ms:?},\"peak_kib\":{peak_kib:?}}}");
}

const MIXED_STEPS: usize = 120;

/// Sizes 128 KiB–64 MiB (log-uniform), random lifetimes (a random one of 8 slots is replaced
/// each step), every page touched. The same seed for every allocator.
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

/// The workload's floor: the most page-rounded bytes live at once.
fn live_set_kib(steps: usize) -> usize {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut slots = [0usize; 8];
    let mut max = 0;
    for _ in 0..steps {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let bits = 17 + (rng % 9) as u32;
        let size = ((1usize << bits) + ((rng >> 16) as usize % (1usize << bits))).min(64 * MIB);
        slots[(rng >> 8) as usize % slots.len()] = size.next_multiple_of(page_size());
        max = max.max(slots.iter().sum());
    }
    max >> 10
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

/// The bench's MapAlloc: THP for blocks of 2 MiB and up, a 64 MiB cache of address space whose
/// pages are dropped on free (the default: no RSS held by the cache).
fn mapalloc() -> MapAlloc {
    MapAlloc::new().with_thp(2 * MIB).with_max_cached(64 * MIB)
}

/// The same with a 64 MiB resident cache: faster reuse, more RSS (shown for the trade-off).
fn mapalloc_resident() -> MapAlloc {
    mapalloc().with_resident_cache(64 * MIB)
}

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> i64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Runs `f` in this process and returns its time and peak RSS above the RSS at its start:
/// `echo 5 > /proc/self/clear_refs` resets VmHWM to the current RSS, then VmHWM after the run
/// minus VmRSS before it. Also returns the RSS the run left behind (after minus before).
fn measured(f: impl FnOnce()) -> (Duration, i64, i64) {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let rss0 = status_kib("VmRSS:");
    let t = Instant::now();
    f();
    let d = t.elapsed();
    let hwm = status_kib("VmHWM:");
    let rss1 = status_kib("VmRSS:");
    (d, hwm - rss0, rss1 - rss0)
}

fn median<T: PartialOrd + Copy>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn vmstat(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0)
}

/// The interleaved report: medians of per-round times and ratios. `MMKIT_BENCH_ONLY` = `touch`,
/// `mixed` or `growth` runs one part.
fn paired_report() {
    let rounds: usize = std::env::var("MMKIT_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    if let Ok(name) = std::env::var("MMKIT_BENCH_ALLOC") {
        report_one_alloc(&name);
        return;
    }
    let only = std::env::var("MMKIT_BENCH_ONLY").unwrap_or_default();
    println!("== interleaved report ({rounds} rounds; medians) ==");
    if only.is_empty() || only == "touch" {
        report_touch(rounds);
    }
    if only.is_empty() || only == "mixed" {
        report_mixed(rounds);
    }
    if only.is_empty() || only == "growth" {
        report_growth(rounds);
    }
}

fn round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 100.0).round() / 100.0).collect()
}

fn report_touch(rounds: usize) {
    // First touch of 1 GiB. A memset of 1 GiB already resident is the floor for THP (the
    // kernel clears each 2 MiB page, then the loop writes one byte per 4 KiB).
    let mut resident = MapOptions::new().len(GIB).huge_pages(HugePages::Transparent).map_anon().unwrap();
    resident.fill(1);
    let memset: Vec<f64> = (0..5)
        .map(|i| {
            let t = Instant::now();
            black_box(&mut resident[..]).fill(i as u8);
            ms(t.elapsed())
        })
        .collect();
    drop(resident);
    let (alloc0, fallback0, stall0) =
        (vmstat("thp_fault_alloc"), vmstat("thp_fault_fallback"), vmstat("compact_stall"));
    let mut seen = None;
    // "as-is": each measured map is the next thing the process does. "warm": each is preceded
    // by an untimed run of the same kind, so it gets memory just freed by that run. On this
    // Firecracker VM (free page reporting, order 11), free memory left alone for ~2 s is handed
    // back to the host and the next touch of it pays host faults too. A THP run right after a
    // THP run reuses the 2 MiB blocks just freed; right after a 4 KiB run (whose freed pages
    // are not yet merged back into 2 MiB blocks) it gets older, reported memory. "warm"
    // measures the guest kernel's cost alone.
    for warm in [false, true] {
        let (mut base, mut thp, mut pop, mut r_thp, mut r_pop) = (vec![], vec![], vec![], vec![], vec![]);
        // THP runs (either kind) by what ran just before: a 4 KiB run, or a THP run.
        let (mut after_base, mut after_thp) = (vec![], vec![]);
        let mut prev = None;
        for r in 0..rounds {
            // Every order in turn, so each kind follows each other kind equally often.
            use Touch::*;
            let orders = [
                [Base, Thp, ThpPopulate],
                [ThpPopulate, Thp, Base],
                [Thp, Base, ThpPopulate],
                [ThpPopulate, Base, Thp],
                [Base, ThpPopulate, Thp],
                [Thp, ThpPopulate, Base],
            ];
            let (mut b, mut h, mut p) = (0.0, 0.0, 0.0);
            for k in orders[r % orders.len()] {
                if warm {
                    first_touch(k, false);
                    prev = Some(k);
                }
                let (d, s) = first_touch(k, r == 0 && k == Thp);
                if s.is_some() {
                    seen = s;
                }
                if k != Base {
                    if prev == Some(Base) { &mut after_base } else { &mut after_thp }.push(ms(d));
                }
                prev = Some(k);
                match k {
                    Base => b = ms(d),
                    Thp => h = ms(d),
                    ThpPopulate => p = ms(d),
                }
            }
            base.push(b);
            thp.push(h);
            pop.push(p);
            r_thp.push(b / h);
            r_pop.push(b / p);
        }
        let mode = if warm { "warm" } else { "as-is" };
        let med = |v: &[f64]| if v.is_empty() { f64::NAN } else { median(v) };
        println!(
            "first_touch_1GiB [{mode}]: base_4KiB {:.1} ms | mmkit_thp {:.1} ms, ratio {:.2}x | mmkit_thp_populate \
             {:.1} ms, ratio {:.2}x",
            median(&base),
            median(&thp),
            median(&r_thp),
            median(&pop),
            median(&r_pop)
        );
        println!(
            "  THP runs right after a 4 KiB run: median {:.1} ms (n={}); right after a THP run: median {:.1} ms (n={})",
            med(&after_base),
            after_base.len(),
            med(&after_thp),
            after_thp.len()
        );
        println!("  per round: base ms {:?}", round(&base));
        println!("  per round: thp ms {:?}", round(&thp));
        println!("  per round: thp_populate ms {:?}", round(&pop));
        println!("  per round: base/thp {:?}", round(&r_thp));
        bench_line(&format!("first_touch_{mode}"), "base_4KiB", &base, &[]);
        bench_line(&format!("first_touch_{mode}"), "mmkit_thp", &thp, &[]);
    }
    let (huge, aligned) = seen.unwrap_or((0, false));
    println!(
        "  THP region: 2 MiB-aligned {aligned}, AnonHugePages after touch {} MiB of 1024; thp_fault_alloc +{}, \
         thp_fault_fallback +{}, compact_stall +{}; memset of 1 GiB resident: {:.1} ms",
        huge >> 20,
        vmstat("thp_fault_alloc") - alloc0,
        vmstat("thp_fault_fallback") - fallback0,
        vmstat("compact_stall") - stall0,
        median(&memset)
    );
}

fn report_mixed(rounds: usize) {
    // Mixed workload: time and peak RSS of the same runs. A first run of each (printed as
    // "cold": glibc starts with its initial mmap threshold), then two interleaved passes:
    // "steady" runs back to back, as criterion does; "trimmed" first lets each allocator drop
    // the free memory it retained (`malloc_trim(0)` / `purge_all()`, untimed), so the RSS at
    // the start of the run holds no reusable memory of either and the peak above it is the
    // run's whole footprint. In the steady pass glibc reuses heap pages that were already
    // resident (and so already in the baseline), which can put its figure below the
    // workload's live-set floor.
    let (a, ar) = (mapalloc(), mapalloc_resident());
    let (je, mi) = (Global(tikv_jemallocator::Jemalloc), Global(mimalloc::MiMalloc));
    let peers: [(&str, &dyn Alloc); 5] =
        [(glibc_name(), &Glibc), ("mapalloc", &a), ("mapalloc_resident64M", &ar), ("jemalloc", &je), ("mimalloc", &mi)];
    // jemalloc and mimalloc have no purge call through their crates: they start each trimmed
    // run with whatever their own decay policy has kept.
    let trim = |k: usize| match k {
        // SAFETY: malloc_trim only returns free memory.
        0 => unsafe {
            libc::malloc_trim(0);
        },
        1 => a.purge_all(),
        2 => ar.purge_all(),
        _ => {}
    };
    println!("  mixed workload: max live set {} KiB (sum of the live blocks' pages)", live_set_kib(MIXED_STEPS));
    for (name, p) in peers {
        let (d, peak, left) = measured(|| mixed(p, MIXED_STEPS));
        println!("  cold {name}: {:.1} ms, peak RSS +{peak} KiB, left resident +{left} KiB", ms(d));
    }
    for pass in ["steady", "trimmed"] {
        let mut res: Vec<Vec<(f64, i64, i64)>> = vec![vec![]; peers.len()];
        for r in 0..rounds {
            for k in 0..peers.len() {
                let k = if r % 2 == 0 { k } else { peers.len() - 1 - k };
                if pass == "trimmed" {
                    trim(k);
                }
                let (d, peak, left) = measured(|| mixed(peers[k].1, MIXED_STEPS));
                res[k].push((ms(d), peak, left));
            }
        }
        let g = &res[0];
        for (k, (name, _)) in peers.iter().enumerate() {
            let v = &res[k];
            let t_ratio: Vec<f64> = v.iter().zip(g).map(|(m, g)| m.0 / g.0).collect();
            let rss_ratio: Vec<f64> = v.iter().zip(g).map(|(m, g)| m.1 as f64 / g.1 as f64).collect();
            println!(
                "mixed_large_allocs [{pass}] {name}: {:.1} ms (time ratio vs glibc {:.3}), peak RSS +{} KiB \
                 (ratio {:.3}), left resident +{} KiB",
                median(&v.iter().map(|x| x.0).collect::<Vec<_>>()),
                median(&t_ratio),
                median(&v.iter().map(|x| x.1).collect::<Vec<_>>()),
                median(&rss_ratio),
                median(&v.iter().map(|x| x.2).collect::<Vec<_>>()),
            );
            bench_line(
                &format!("mixed_{pass}"),
                name,
                &v.iter().map(|x| x.0).collect::<Vec<_>>(),
                &v.iter().map(|x| x.1).collect::<Vec<_>>(),
            );
        }
    }
    let s = a.stats();
    println!(
        "  mapalloc stats after the runs: maps {}, unmaps {}, remaps {}, purges {}, cache hits {}, cached {} KiB \
         (resident {} KiB)",
        s.maps,
        s.unmaps,
        s.remaps,
        s.purges,
        s.cache_hits,
        s.cached_bytes >> 10,
        s.cached_resident_bytes >> 10
    );
}

/// `MMKIT_BENCH_ALLOC=glibc|mapalloc|mapalloc_resident|jemalloc|mimalloc` (scripts/bench): this process runs the
/// mixed workload twice with that allocator only (a first run and one reusing what the first
/// left), and prints the time of both and the process's whole footprint: peak RSS (`VmHWM`)
/// above the RSS before the first run, memory the allocator retains included. Every allocator
/// gets the same fresh process layout; scripts/bench alternates them round by round.
/// `mapalloc_resident` is MapAlloc with a resident cache of `MMKIT_BENCH_RESIDENT_MIB` MiB
/// (default 64): freed blocks keep their pages up to that budget, as mimalloc keeps its pages.
fn report_one_alloc(name: &str) {
    let a = mapalloc();
    let budget: usize = std::env::var("MMKIT_BENCH_RESIDENT_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let ar = mapalloc().with_resident_cache(budget * MIB).with_max_cached((budget * MIB).max(64 * MIB));
    let (je, mi) = (Global(tikv_jemallocator::Jemalloc), Global(mimalloc::MiMalloc));
    let alloc: &dyn Alloc = match name {
        "glibc" => &Glibc,
        "mapalloc" => &a,
        "mapalloc_resident" => &ar,
        "jemalloc" => &je,
        "mimalloc" => &mi,
        other => panic!("MMKIT_BENCH_ALLOC={other}: use glibc, mapalloc, mapalloc_resident, jemalloc or mimalloc"),
    };
    let peer = if name == "glibc" { glibc_name() } else { name };
    let rss0 = status_kib("VmRSS:");
    let t = Instant::now();
    mixed(alloc, MIXED_STEPS);
    mixed(alloc, MIXED_STEPS);
    let d = t.elapsed();
    let peak = status_kib("VmHWM:") - rss0;
    println!("mixed workload x2, {peer} in its own process: {:.1} ms, peak RSS +{peak} KiB", ms(d));
    bench_line("mixed_process", peer, &[ms(d)], &[peak]);
}

fn report_growth(rounds: usize) {
    let a = mapalloc();
    let (mut gl, mut ma, mut ratio) = (vec![], vec![], vec![]);
    for r in 0..rounds {
        let (x, y) = if r % 2 == 0 {
            let x = measured(|| growth(&Glibc)).0;
            (x, measured(|| growth(&a)).0)
        } else {
            let y = measured(|| growth(&a)).0;
            (measured(|| growth(&Glibc)).0, y)
        };
        gl.push(ms(x));
        ma.push(ms(y));
        ratio.push(ms(x) / ms(y));
    }
    println!(
        "realloc_growth_4KiB_to_1GiB: glibc {:.1} ms | mapalloc {:.1} ms, ratio (glibc/mapalloc) {:.2}x",
        median(&gl),
        median(&ma),
        median(&ratio)
    );
    println!("  per round: glibc ms {:?}", round(&gl));
    println!("  per round: mapalloc ms {:?}", round(&ma));
    bench_line("realloc_growth", "glibc", &gl, &[]);
    bench_line("realloc_growth", "mapalloc", &ma, &[]);
}

fn benches(c: &mut Criterion) {
    paired_report();
    if std::env::var_os("MMKIT_BENCH_QUICK").is_some() {
        // scripts/bench: the interleaved report only.
        return;
    }

    // First touch has no criterion group: the interleaved report above measures it (criterion
    // would run all of one side, then all of the other).
    let mut g = c.benchmark_group("mixed_large_allocs");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    g.bench_function("glibc_malloc", |b| b.iter(|| mixed(&Glibc, MIXED_STEPS)));
    let a = mapalloc();
    g.bench_function("mapalloc", |b| b.iter(|| mixed(&a, MIXED_STEPS)));
    g.finish();

    let mut g = c.benchmark_group("realloc_growth_4KiB_to_1GiB");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(4));
    g.bench_function("glibc_realloc", |b| b.iter(|| growth(&Glibc)));
    g.bench_function("mapalloc", |b| b.iter(|| growth(&a)));
    g.finish();
}

criterion_group!(anon, benches);
criterion_main!(anon);
