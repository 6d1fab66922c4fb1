//! Pager benchmarks: fault service latency and throughput, lazy snapshot restore, compressed
//! files, dirty tracking — each against the peer a user would otherwise use.
//!
//! Run: `cargo bench -p mmkit-pager --bench pager`. First comes the interleaved report (the
//! numbers BENCHMARKS.md quotes): peers alternate round by round in this one process and the
//! medians of per-round figures and of per-round ratios are printed. `MMKIT_BENCH_ROUNDS` sets
//! the rounds (default 7), `MMKIT_BENCH_MIB` the data size of the restore, compressed and dirty
//! benches (default 256), `MMKIT_BENCH_ONLY` one part (`fault`, `restore`, `zstd`, `dirty`).
//! Then small criterion groups give criterion's own statistics for the per-fault cost.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use mmkit::{page_size, Advice, MapOptions};
use mmkit_pager::seekable::{self, PackOptions};
use mmkit_pager::{
    snapshot, Backing, DirtyMechanism, Filled, FnSource, PageSource, PagedRegion, PagedRegionBuilder, SeekableSource,
    ShmemFill,
};

const MIB: usize = 1 << 20;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Text-like data that compresses about 3-4x.
fn realistic(len: usize) -> Vec<u8> {
    let words: &[&[u8]] = &[b"page ", b"fault ", b"kernel ", b"mapping ", b"0x7f3a ", b"snapshot ", b"\n"];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng(&mut x);
        out.extend_from_slice(words[(r % words.len() as u64) as usize]);
        if r.is_multiple_of(5) {
            out.extend_from_slice(&r.to_le_bytes()[..4]);
        }
    }
    out.truncate(len);
    out
}

/// A memory source: pages copied from a Vec (the cheapest source there is).
fn memory_source(data: Arc<Vec<u8>>) -> impl PageSource {
    FnSource(move |off, buf: &mut [u8]| {
        let o = off as usize;
        buf.copy_from_slice(&data[o..o + buf.len()]);
        Ok(Filled::Data)
    })
}

/// Per-page first-touch times (ns) of `len` bytes at `p`, reading (or writing) one byte a page.
fn touch_each(p: *mut u8, len: usize, write: bool) -> Vec<f64> {
    let page = page_size();
    let mut out = Vec::with_capacity(len / page);
    for i in (0..len).step_by(page) {
        let t = Instant::now();
        // SAFETY: `p` is a live mapping of `len` bytes, readable (and writable when `write`).
        unsafe {
            if write {
                p.add(i).write_volatile(1);
            } else {
                black_box(p.add(i).read_volatile());
            }
        }
        out.push(t.elapsed().as_nanos() as f64);
    }
    out
}

/// CPU time of this process so far (user + system, all threads), from `getrusage`.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value (plain integers).
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Bytes this process caused to be fetched from storage (`read_bytes` of `/proc/self/io`).
fn device_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One pager configuration of the fault report: its builder and whether pages are staged
/// (`PagedRegion::stage`) before they are touched.
struct Case {
    label: &'static str,
    build: fn(usize) -> PagedRegionBuilder,
    stage: bool,
}

fn pager_cases() -> Vec<Case> {
    vec![
        Case { label: "anonymous, UFFDIO_COPY", build: PagedRegion::builder, stage: false },
        Case {
            label: "anonymous, fault_around(16)",
            build: |len| {
                let mut b = PagedRegion::builder(len);
                b.fault_around(16);
                b
            },
            stage: false,
        },
        Case {
            label: "anonymous, spin(200us)",
            build: |len| {
                let mut b = PagedRegion::builder(len);
                b.spin(Duration::from_micros(200));
                b
            },
            stage: false,
        },
        Case {
            label: "memfd, UFFDIO_COPY",
            build: |len| {
                let mut b = PagedRegion::builder(len);
                b.backing(Backing::SharedMemory(ShmemFill::Copy));
                b
            },
            stage: false,
        },
        Case {
            label: "memfd, UFFDIO_CONTINUE",
            build: |len| {
                let mut b = PagedRegion::builder(len);
                b.backing(Backing::SharedMemory(ShmemFill::Continue));
                b
            },
            stage: false,
        },
        Case {
            label: "memfd, CONTINUE, fault_around(16)",
            build: |len| {
                let mut b = PagedRegion::builder(len);
                b.backing(Backing::SharedMemory(ShmemFill::Continue)).fault_around(16);
                b
            },
            stage: false,
        },
        Case {
            label: "memfd, CONTINUE, staged",
            build: |len| {
                let mut b = PagedRegion::builder(len);
                b.backing(Backing::SharedMemory(ShmemFill::Continue));
                b
            },
            stage: true,
        },
    ]
}

/// Per-page cost (ns) of a cached-file peer: every page of `path` read once through a fresh
/// read-only mapping, fault-around off (`MADV_RANDOM`); returns (per-page times, faults taken).
fn file_peer(path: &std::path::Path, len: usize) -> (Vec<f64>, f64) {
    let file = std::fs::File::open(path).unwrap();
    mmkit::inspect::touch(path).ok();
    let m = MapOptions::new().advice(Advice::Random).map_raw_read_only(&file).unwrap();
    let (f0, _) = mmkit::page_faults();
    let f = touch_each(m.as_mut_ptr(), len, false);
    let faults = (mmkit::page_faults().0 - f0) as f64;
    (f, faults)
}

/// Times (ns) of reading one byte of every `stride`-th page of `len` bytes at `p`.
fn touch_strided(p: *mut u8, len: usize, stride: usize, write: bool) -> Vec<f64> {
    let step = stride * page_size();
    let mut out = Vec::with_capacity(len / step);
    for i in (0..len).step_by(step) {
        let t = Instant::now();
        // SAFETY: `p` is a live mapping of `len` bytes, readable (and writable when `write`).
        unsafe {
            if write {
                p.add(i).write_volatile(1);
            } else {
                black_box(p.add(i).read_volatile());
            }
        }
        out.push(t.elapsed().as_nanos() as f64);
    }
    out
}

/// One fault per touch, like for like: every 16th page is read, so each touch is a fault for
/// the kernel's tmpfs minor fault (whose fault-around maps the 16 pages around it), for
/// first-touch anonymous memory (one page) and for each pager configuration (one page, or 16
/// with `fault_around(16)`). The medians are robust to the machine's load, unlike the means.
fn report_fault_strided(rounds: usize, len: usize, data: &Arc<Vec<u8>>, shm_path: &std::path::Path) {
    let stride = 16;
    let cases = pager_cases();
    let peers = 2;
    let mut med = vec![vec![]; peers + cases.len()];
    let mut mapped = vec![0.0; peers + cases.len()];
    for _ in 0..rounds {
        let file = std::fs::File::open(shm_path).unwrap();
        let m = MapOptions::new().map_raw_read_only(&file).unwrap();
        let (f0, _) = mmkit::page_faults();
        med[0].push(median(&mut touch_strided(m.as_mut_ptr(), len, stride, false)));
        // Every page of the file gets mapped by the faults of the strided touches.
        mapped[0] = (len / page_size()) as f64 / (mmkit::page_faults().0 - f0).max(1) as f64;
        drop(m);
        let a = MapOptions::new().len(len).advice(Advice::NoHugePage).map_anon().unwrap();
        med[1].push(median(&mut touch_strided(a.as_ptr() as *mut u8, len, stride, true)));
        mapped[1] = 1.0;
        drop(a);
        for (c, case) in cases.iter().enumerate() {
            if case.stage {
                continue;
            }
            let region = (case.build)(len).build(memory_source(data.clone())).unwrap();
            med[peers + c].push(median(&mut touch_strided(region.as_ptr() as *mut u8, len, stride, false)));
            let st = region.stats();
            mapped[peers + c] = (st.data_pages + st.zero_pages) as f64 / st.faults.max(1) as f64;
        }
    }
    println!("-- one fault per touch: every {stride}th page read; median per touch (= per fault) --");
    let tmpfs = median(&mut med[0].clone());
    let labels = ["kernel: tmpfs file minor fault", "kernel: anon first touch (write)"];
    for k in 0..peers + cases.len() {
        if med[k].is_empty() {
            continue;
        }
        let label = if k < peers { labels[k] } else { cases[k - peers].label };
        let m = median(&mut med[k]);
        println!(
            "  {label:<36} {m:>6.0} ns/fault, {:>4.1} pages mapped per fault: {:.2}x the tmpfs minor fault",
            mapped[k],
            m / tmpfs
        );
    }
}

fn report_fault(rounds: usize) {
    let len = 64 * MIB;
    let page = page_size();
    let data = Arc::new(realistic(len));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cached");
    std::fs::write(&path, &data[..]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    // The same bytes in tmpfs: its page cache is in 4 KiB pages (no large folios), so the
    // kernel's minor fault there maps what fault-around gives it, not a 2 MiB folio.
    let shm_dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let shm_path = shm_dir.path().join("cached");
    std::fs::write(&shm_path, &data[..]).unwrap();
    drop(file);
    let cases = pager_cases();
    println!("-- fault service, {} pages per round (64 MiB), every page touched once --", len / page);
    // Per round medians (ns/page) and fault counts: [disk file, tmpfs file, anon, cases...].
    let peers = 3;
    let mut med = vec![vec![]; peers + cases.len()];
    let mut p99 = vec![vec![]; peers + cases.len()];
    let mut total = vec![vec![]; peers + cases.len()];
    let mut faults = vec![vec![]; peers + cases.len()];
    let mut record = |k: usize, mut t: Vec<f64>, n_faults: f64| {
        total[k].push(t.iter().sum::<f64>() / t.len() as f64);
        med[k].push(median(&mut t));
        p99[k].push(pct(&mut t, 0.99));
        faults[k].push(n_faults);
    };
    for _ in 0..rounds {
        let (f, n) = file_peer(&path, len);
        record(0, f, n);
        let (f, n) = file_peer(&shm_path, len);
        record(1, f, n);
        // First-touch anonymous fault (write: allocate and zero a page), no THP.
        let a_map = MapOptions::new().len(len).advice(Advice::NoHugePage).map_anon().unwrap();
        let (f0, _) = mmkit::page_faults();
        let a = touch_each(a_map.as_ptr() as *mut u8, len, true);
        let n = (mmkit::page_faults().0 - f0) as f64;
        drop(a_map);
        record(2, a, n);
        for (c, case) in cases.iter().enumerate() {
            let region = (case.build)(len).build(memory_source(data.clone())).unwrap();
            let mut t = if case.stage {
                // Staging cost per page (the source's bytes copied into the page cache and
                // mapped with UFFDIO_CONTINUE), then the touch (no fault left).
                let mut out = Vec::with_capacity(len / page);
                for i in (0..len).step_by(page) {
                    let t = Instant::now();
                    region.stage(i, &data[i..i + page]).unwrap();
                    out.push(t.elapsed().as_nanos() as f64);
                }
                out
            } else {
                vec![0.0; len / page]
            };
            let touched = touch_each(region.as_ptr() as *mut u8, len, false);
            for (a, b) in t.iter_mut().zip(touched) {
                *a += b;
            }
            let n = region.stats().faults as f64;
            drop(region);
            record(peers + c, t, n);
        }
    }
    let (file_med, shm_med, anon_med) =
        (median(&mut med[0].clone()), median(&mut med[1].clone()), median(&mut med[2].clone()));
    let (file_mean, shm_mean, anon_mean) =
        (median(&mut total[0].clone()), median(&mut total[1].clone()), median(&mut total[2].clone()));
    let labels = ["kernel: disk file in page cache", "kernel: tmpfs file (4 KiB pages)", "kernel: anon first touch"];
    let pages = (len / page) as f64;
    for k in 0..peers + cases.len() {
        let label = if k < peers { labels[k] } else { cases[k - peers].label };
        let (m, p, mean, n) = (median(&mut med[k]), median(&mut p99[k]), median(&mut total[k]), median(&mut faults[k]));
        println!(
            "  {label:<36} median {m:>6.0} ns/page p99 {p:>6.0} mean {mean:>6.0} ns/page; {n:>6.0} faults ({:>6.0} ns/fault); mean/page vs disk file {:.2}x, tmpfs {:.2}x, anon {:.2}x",
            mean * pages / n.max(1.0),
            mean / file_mean,
            mean / shm_mean,
            mean / anon_mean,
        );
    }
    println!("  (medians per page: disk file {file_med:.0}, tmpfs {shm_med:.0}, anon {anon_med:.0} ns)");
    report_fault_strided(rounds, len, &data, &shm_path);
    // Throughput: 2 faulting threads, 1 or 2 handler threads.
    let mut tput = [vec![], vec![]];
    for _ in 0..rounds {
        for (k, handlers) in [1usize, 2].into_iter().enumerate() {
            let region =
                PagedRegion::builder(len).handler_threads(handlers).build(memory_source(data.clone())).unwrap();
            let base = region.as_ptr() as usize;
            let t = Instant::now();
            std::thread::scope(|s| {
                for half in 0..2 {
                    s.spawn(move || touch_each((base + half * len / 2) as *mut u8, len / 2, false));
                }
            });
            tput[k].push((len / page) as f64 / t.elapsed().as_secs_f64());
        }
    }
    println!(
        "  throughput, 2 faulting threads: 1 handler {:.0} pages/s, 2 handlers {:.0} pages/s",
        median(&mut tput[0]),
        median(&mut tput[1])
    );
}

fn report_restore(rounds: usize, mib: usize) {
    let len = mib * MIB;
    let page = page_size();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mem.snap");
    {
        let data = realistic(len);
        snapshot::write(&data, &path).unwrap();
    }
    let touches = len / page / 100;
    println!("-- lazy restore of a {mib} MiB snapshot, {touches} random pages (1 %) touched --");
    for evicted in [false, true] {
        let (mut lf, mut lt, mut ef, mut rf, mut rt) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut lio, mut eio, mut lcpu, mut ecpu) = (vec![], vec![], vec![], vec![]);
        for r in 0..rounds {
            let mut seed = 0x1234_5678 + r as u64;
            let pages: Vec<usize> = (0..touches).map(|_| rng(&mut seed) as usize % (len / page)).collect();
            let prep = || {
                if evicted {
                    mmkit::inspect::evict(&path).unwrap();
                } else {
                    mmkit::inspect::touch(&path).unwrap();
                }
            };
            prep();
            let (io0, cpu0) = (device_read_bytes(), cpu_time());
            let t = Instant::now();
            let region = snapshot::restore_lazy(&path, 1).unwrap();
            black_box(region.as_slice()[pages[0] * page]);
            let first = t.elapsed();
            for &p in &pages[1..] {
                black_box(region.as_slice()[p * page]);
            }
            let total = t.elapsed();
            drop(region); // joins the handler thread: its CPU time is in the count below
            lio.push((device_read_bytes() - io0) as f64);
            lcpu.push((cpu_time() - cpu0).as_secs_f64() * 1e3);
            prep();
            let (io0, cpu0) = (device_read_bytes(), cpu_time());
            let t = Instant::now();
            let mem = snapshot::restore_eager(&path).unwrap();
            black_box(mem[pages[0] * page]);
            let efirst = t.elapsed();
            for &p in &pages[1..] {
                black_box(mem[p * page]);
            }
            let etotal = t.elapsed();
            drop(mem);
            eio.push((device_read_bytes() - io0) as f64);
            ecpu.push((cpu_time() - cpu0).as_secs_f64() * 1e3);
            lf.push(first.as_secs_f64() * 1e3);
            lt.push(total.as_secs_f64() * 1e3);
            ef.push(etotal.as_secs_f64() * 1e3);
            rf.push(efirst.as_secs_f64() / first.as_secs_f64());
            rt.push(etotal.as_secs_f64() / total.as_secs_f64());
        }
        println!(
            "  file {}: lazy first access {:.3} ms, lazy total {:.1} ms; eager {:.1} ms; first access {:.0}x sooner (rounds {:.0}-{:.0}), total {:.1}x less",
            if evicted { "evicted" } else { "cached " },
            median(&mut lf),
            median(&mut lt),
            median(&mut ef),
            median(&mut rf.clone()),
            rf.iter().cloned().fold(f64::MAX, f64::min),
            rf.iter().cloned().fold(0.0, f64::max),
            median(&mut rt)
        );
        let (li, ei, lc, ec) = (median(&mut lio), median(&mut eio), median(&mut lcpu), median(&mut ecpu));
        println!(
            "    work: device reads lazy {:.1} MiB vs eager {:.1} MiB ({}); CPU time lazy {lc:.1} ms vs eager {ec:.1} ms ({:.1}x less)",
            li / MIB as f64,
            ei / MIB as f64,
            if ei > 0.0 { format!("{:.1}x less", ei / li.max(1.0)) } else { "nothing read: cached".to_owned() },
            ec / lc.max(1e-3),
        );
    }
}

fn report_zstd(rounds: usize, mib: usize) {
    let len = mib * MIB;
    let page = page_size();
    let dir = tempfile::tempdir().unwrap();
    let (raw, packed) = (dir.path().join("raw"), dir.path().join("raw.zst"));
    std::fs::write(&raw, realistic(len)).unwrap();
    let info = seekable::pack(&raw, &packed, &PackOptions::default()).unwrap();
    std::fs::remove_file(&raw).unwrap();
    let reads = 1000;
    println!(
        "-- zstd seekable, {mib} MiB -> {:.1} MiB, {} frames of 64 KiB; {reads} random 4 KiB reads; sequential scan --",
        info.output_bytes as f64 / MIB as f64,
        info.frames
    );
    let (mut rr, mut rw, mut ratio_r, mut sr, mut sw, mut ratio_s) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        mmkit::inspect::touch(&packed).unwrap();
        let mut seed = 99 + r as u64;
        let offs: Vec<usize> = (0..reads).map(|_| rng(&mut seed) as usize % (len - page)).collect();
        let t = Instant::now();
        let src = SeekableSource::open(&packed).unwrap();
        let region = PagedRegion::new(len, src).unwrap();
        let mut buf = vec![0u8; page];
        for &o in &offs {
            buf.copy_from_slice(&region.as_slice()[o..o + page]);
            black_box(&buf);
        }
        let t_region = t.elapsed().as_secs_f64();
        drop(region);
        let t = Instant::now();
        let whole = zstd::stream::decode_all(std::fs::File::open(&packed).unwrap()).unwrap();
        for &o in &offs {
            buf.copy_from_slice(&whole[o..o + page]);
            black_box(&buf);
        }
        let t_whole = t.elapsed().as_secs_f64();
        drop(whole);
        rr.push(t_region * 1e3);
        rw.push(t_whole * 1e3);
        ratio_r.push(t_whole / t_region);
        // Sequential scan: sum every 8th byte through the region vs decode_all then the same sum.
        let t = Instant::now();
        let region = PagedRegion::new(len, SeekableSource::open(&packed).unwrap()).unwrap();
        black_box(region.as_slice().iter().step_by(8).map(|&b| b as u64).sum::<u64>());
        let t_scan = t.elapsed().as_secs_f64();
        drop(region);
        let t = Instant::now();
        let whole = zstd::stream::decode_all(std::fs::File::open(&packed).unwrap()).unwrap();
        black_box(whole.iter().step_by(8).map(|&b| b as u64).sum::<u64>());
        let t_dec = t.elapsed().as_secs_f64();
        sr.push(len as f64 / MIB as f64 / t_scan);
        sw.push(len as f64 / MIB as f64 / t_dec);
        ratio_s.push(t_dec / t_scan);
    }
    println!(
        "  random reads: region {:.1} ms vs decompress-all-first {:.1} ms: {:.1}x faster",
        median(&mut rr),
        median(&mut rw),
        median(&mut ratio_r)
    );
    println!(
        "  sequential scan: region {:.0} MiB/s vs zstd decode_all to memory {:.0} MiB/s: {:.2}x",
        median(&mut sr),
        median(&mut sw),
        median(&mut ratio_s)
    );
}

fn report_dirty(rounds: usize, mib: usize) {
    let len = mib * MIB;
    let page = page_size();
    let pages = len / page;
    let writes = pages / 100;
    println!("-- dirty tracking of {mib} MiB, {writes} random pages (1 %) written: time to collect --");
    let mechs: Vec<DirtyMechanism> =
        DirtyMechanism::ALL.into_iter().filter(|m| m.is_available().unwrap_or(false)).collect();
    let mut times = vec![vec![]; mechs.len()];
    let mut scan = vec![];
    for r in 0..rounds {
        for (k, &m) in mechs.iter().enumerate() {
            let mut region = PagedRegion::builder(len).track_dirty_with(m).build(mmkit_pager::ZeroSource).unwrap();
            region.prefetch(0, len).unwrap();
            region.collect_dirty().unwrap();
            let mut seed = 7 + r as u64;
            for _ in 0..writes {
                let p = rng(&mut seed) as usize % pages;
                region.as_mut_slice()[p * page] = 1;
            }
            let t = Instant::now();
            let d = region.collect_dirty().unwrap();
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
            black_box(d);
            if k == 0 {
                // The peer: reading the range's /proc/self/pagemap entries (what a soft-dirty
                // scan costs, whether or not the kernel keeps the bits).
                use std::io::{Read, Seek, SeekFrom};
                let t = Instant::now();
                let mut f = std::fs::File::open("/proc/self/pagemap").unwrap();
                let mut raw = vec![0u8; pages * 8];
                f.seek(SeekFrom::Start((region.as_ptr() as usize / page * 8) as u64)).unwrap();
                f.read_exact(&mut raw).unwrap();
                let n = raw
                    .chunks_exact(8)
                    .filter(|e| u64::from_ne_bytes((*e).try_into().unwrap()) & (1 << 55) != 0)
                    .count();
                black_box(n);
                scan.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let scan_med = median(&mut scan);
    for (k, m) in mechs.iter().enumerate() {
        let t = median(&mut times[k]);
        println!("  {:<14} {:.3} ms ({:.2}x the pagemap scan)", m.name(), t, t / scan_med);
    }
    println!("  /proc/self/pagemap soft-dirty scan {:.3} ms", scan_med);
}

fn paired_report() {
    let rounds: usize = std::env::var("MMKIT_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let mib: usize = std::env::var("MMKIT_BENCH_MIB").ok().and_then(|s| s.parse().ok()).unwrap_or(256);
    let only = std::env::var("MMKIT_BENCH_ONLY").unwrap_or_default();
    println!("== interleaved report ({rounds} rounds; medians) ==");
    if only.is_empty() || only == "fault" {
        report_fault(rounds);
    }
    if only.is_empty() || only == "restore" {
        report_restore(rounds, mib);
    }
    if only.is_empty() || only == "zstd" {
        report_zstd(rounds, mib);
    }
    if only.is_empty() || only == "dirty" {
        report_dirty(rounds, mib);
    }
}

fn benches(c: &mut Criterion) {
    paired_report();
    if std::env::var("MMKIT_BENCH_ONLY").is_ok() {
        return;
    }
    let len = 16 * MIB;
    let data = Arc::new(realistic(len));
    let mut g = c.benchmark_group("fault_16MiB");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.bench_function("paged_region_memory_source", |b| {
        b.iter(|| {
            let region = PagedRegion::new(len, memory_source(data.clone())).unwrap();
            black_box(touch_each(region.as_ptr() as *mut u8, len, false).len())
        })
    });
    g.bench_function("anon_first_touch", |b| {
        b.iter(|| {
            let m = MapOptions::new().len(len).advice(Advice::NoHugePage).map_anon().unwrap();
            black_box(touch_each(m.as_ptr() as *mut u8, len, true).len())
        })
    });
    g.finish();
}

criterion_group!(pager, benches);
criterion_main!(pager);
