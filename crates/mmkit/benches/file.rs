//! File-backed reads: mmkit against `read()`/`pread()` and memmap2, in one criterion group.
//!
//! - `seq/*`: sum a cached file as `u64` words. Every peer opens nothing new per iteration but
//!   does include its own setup: `read()` loops with a 1 MiB buffer; the map peers map, sum and
//!   unmap in each iteration.
//!   `seq/mmkit_scan` and `seq/mmkit_scan_ahead` read the map through [`Mmap::scan`] and
//!   [`Mmap::scan_ahead`] in 1 MiB chunks (the documented strategy for a sequential read).
//! - `rand/*`: random 8-byte reads: `pread` against a map created in the iteration (cold: its
//!   page tables are empty) and one set up as the docs recommend for random reads, before
//!   measuring: [`random_read_options`]. Times are per `RANDOM_READS` reads: `pread` makes that
//!   many, the map peers `MAP_READ_FACTOR` times as many (other offsets) and their time is
//!   divided by it, so each run lasts tens of milliseconds and one preemption on a loaded
//!   machine does not double it (criterion's group shows their undivided times).
//!
//! The file (default 1 GiB, `MMKIT_BENCH_SIZE` bytes, or suffixes `k`/`m`/`g`) lives in Cargo's
//! target tmp dir (kept between runs) and is evicted and re-read into the page cache before the
//! group, as `MMKIT_BENCH_WARM` says (see [`Warm`]). After criterion, the
//! same peers run again interleaved (round-robin) and the medians and ratios against the
//! targets are printed: that table is the one quoted in BENCHMARKS-file.md.
//!
//! ```text
//! cargo bench -p mmkit --bench file
//! MMKIT_BENCH_SIZE=256m cargo bench -p mmkit --bench file
//! MMKIT_BENCH_WARM=small cargo bench -p mmkit --bench file   # or read, evicted, thp (default)
//! ```
//!
//! `MMKIT_BENCH_WARM=evicted` drops the file from the page cache before every run of every
//! sequential peer (the interleaved rounds only; no criterion group, no random peers).

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use mmkit::{Advice, HugePages, MapOptions, Mmap, Populate};

const RANDOM_READS: usize = 1 << 16;
/// How many more random reads the map peers make than `pread` (their times are divided by it).
const MAP_READ_FACTOR: usize = 16;
const BUF: usize = 1 << 20;

/// The one summing loop every peer uses: native-endian `u64` words, wrapping.
#[inline(never)]
fn sum_words(bytes: &[u8]) -> u64 {
    let mut acc = [0u64; 4];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
            *a = a.wrapping_add(u64::from_ne_bytes(w.try_into().unwrap()));
        }
    }
    let mut s = acc.iter().fold(0u64, |s, &a| s.wrapping_add(a));
    for w in chunks.remainder().chunks(8) {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        s = s.wrapping_add(u64::from_ne_bytes(b));
    }
    s
}

fn bench_size(bench_mode: bool) -> usize {
    let Ok(v) = std::env::var("MMKIT_BENCH_SIZE") else {
        // `cargo test --benches` runs each benchmark once: keep that quick.
        return if bench_mode { 1 << 30 } else { 16 << 20 };
    };
    let v = v.trim().to_ascii_lowercase();
    let (num, shift) = match v.as_bytes().last() {
        Some(b'k') => (&v[..v.len() - 1], 10),
        Some(b'm') => (&v[..v.len() - 1], 20),
        Some(b'g') => (&v[..v.len() - 1], 30),
        _ => (&v[..], 0),
    };
    let n: usize = num.parse().expect("MMKIT_BENCH_SIZE: a number of bytes, optionally with k/m/g");
    (n << shift).max(1 << 20)
}

/// Creates (or reuses) the bench file of `size` bytes with non-trivial contents.
fn bench_file(size: usize) -> PathBuf {
    // Cargo's per-target tmp dir lives on the build disk (the system temp dir may be a tmpfs,
    // whose pages cannot be evicted, which the warm modes need).
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("mmkit-bench-file-{size}.bin"));
    if std::fs::metadata(&path).map(|m| m.len() == size as u64).unwrap_or(false) {
        return path;
    }
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).unwrap();
    let mut chunk = vec![0u8; BUF];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut written = 0;
    while written < size {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_ne_bytes());
        }
        let n = BUF.min(size - written);
        f.write_all(&chunk[..n]).unwrap();
        written += n;
    }
    f.sync_all().unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// How the page cache is re-warmed before the group (`MMKIT_BENCH_WARM`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Warm {
    /// Evict, then read the file with `read()`: the cache holds small folios (as big as the
    /// read-ahead window), which maps can only map with 4 KiB page-table entries.
    Read,
    /// Evict, then read it with `POSIX_FADV_RANDOM` set: no read-ahead, so the cache holds
    /// 4 KiB folios, as after small random reads. The worst case for maps.
    Small,
    /// Evict, then read it through an mmkit map with `HugePages::Transparent`: the kernel's
    /// fault read-ahead fills the cache with 2 MiB folios, which every later map (mmkit's or
    /// memmap2's) maps with PMD entries. This is the default.
    Thp,
    /// Evicted before every run of every peer: each reads the file from the disk.
    Evicted,
}

fn warm_mode() -> Warm {
    match std::env::var("MMKIT_BENCH_WARM").as_deref() {
        Ok("read") => Warm::Read,
        Ok("small") => Warm::Small,
        Ok("thp") | Err(_) => Warm::Thp,
        Ok("evicted") => Warm::Evicted,
        Ok(other) => panic!("MMKIT_BENCH_WARM={other}: use read, small, evicted or thp"),
    }
}

/// Drops the file from the page cache (nothing may map it now).
fn evict(file: &File) {
    // SAFETY: plain syscall on a valid descriptor.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// Re-reads the file into the page cache (the VMs reclaim it after ~60 s idle); returns its
/// word sum, the answer every sequential peer must give.
fn rewarm(file: &File, how: Warm) -> u64 {
    match how {
        Warm::Read | Warm::Evicted => seq_read(file, &mut vec![0u8; BUF]),
        Warm::Small => {
            // SAFETY: plain syscalls on a valid descriptor.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
            let sum = seq_read(file, &mut vec![0u8; BUF]);
            // SAFETY: as above.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_NORMAL) };
            sum
        }
        Warm::Thp => {
            let opts = MapOptions::new().huge_pages(HugePages::Transparent).populate(Populate::Read).clone();
            seq_mmkit(file, &opts)
        }
    }
}

/// `FilePmdMapped` of the VMA at `addr` in `/proc/self/smaps` (kB): how much of a file map the
/// kernel maps with 2 MiB entries.
fn file_pmd_mapped_kb(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let head = format!("{addr:x}-");
    // Block headers start with a (lower-case hex) address, fields with a capitalised name.
    let is_header = |l: &str| l.starts_with(|c: char| c.is_ascii_digit() || ('a'..='f').contains(&c));
    smaps
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .skip(1)
        .take_while(|l| !is_header(l))
        .find(|l| l.starts_with("FilePmdMapped:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

// ---- the peers ------------------------------------------------------------------------------

fn seq_read(file: &File, buf: &mut [u8]) -> u64 {
    let mut s = 0u64;
    let mut off = 0u64;
    loop {
        // read() at an explicit offset (pread), so the peers share one fd without seeking.
        let n = file.read_at(buf, off).unwrap();
        if n == 0 {
            return s;
        }
        // Buffer sizes are multiples of 8 and so is the file: no word straddles two reads.
        s = s.wrapping_add(sum_words(&buf[..n]));
        off += n as u64;
    }
}

fn seq_memmap2(file: &File) -> u64 {
    // SAFETY: the bench file is not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(file) }.unwrap();
    sum_words(&map)
}

fn seq_mmkit(file: &File, opts: &MapOptions) -> u64 {
    // SAFETY: as above.
    let map = unsafe { opts.map(file) }.unwrap();
    sum_words(&map)
}

/// The chunk the scan peers read at a time (a multiple of 8: no word straddles two chunks).
const SCAN_CHUNK: usize = 1 << 20;

/// [`Mmap::scan`]: a default map read in chunks, each batch probed and populated first.
fn seq_scan(file: &File) -> u64 {
    // SAFETY: as above.
    let map = unsafe { Mmap::map(file) }.unwrap();
    map.scan(.., SCAN_CHUNK).unwrap().fold(0u64, |s, c| s.wrapping_add(sum_words(c.unwrap())))
}

/// [`Mmap::scan_ahead`]: as [`seq_scan`], with a helper thread populating batches ahead.
fn seq_scan_ahead(file: &File) -> u64 {
    // SAFETY: as above.
    let map = unsafe { Mmap::map(file) }.unwrap();
    map.scan_ahead(.., SCAN_CHUNK, |scan| scan.fold(0u64, |s, c| s.wrapping_add(sum_words(c.unwrap())))).unwrap()
}

/// The options the docs recommend for random reads of a file that stays mapped: populated up
/// front (no fault on a first touch; `MADV_POPULATE_READ` reports errors, unlike
/// `MAP_POPULATE`), `MADV_HUGEPAGE` (huge entries wherever the page cache holds PMD-sized
/// folios, and fault read-ahead in PMD-sized folios for what is not cached yet) and
/// `MADV_RANDOM` (no read-ahead around later misses).
fn random_read_options() -> MapOptions {
    MapOptions::new().populate(Populate::Read).huge_pages(HugePages::Transparent).advice(Advice::Random).clone()
}

/// `n` offsets of 8-byte words, from a fixed-seed generator.
fn random_offsets(size: usize, n: usize) -> Vec<usize> {
    let words = size / 8;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as usize % words) * 8
        })
        .collect()
}

fn rand_pread(file: &File, offs: &[usize]) -> u64 {
    let mut s = 0u64;
    let mut b = [0u8; 8];
    for &o in offs {
        file.read_exact_at(&mut b, o as u64).unwrap();
        s = s.wrapping_add(u64::from_ne_bytes(b));
    }
    s
}

fn rand_mapped(bytes: &[u8], offs: &[usize]) -> u64 {
    let mut s = 0u64;
    for &o in offs {
        s = s.wrapping_add(u64::from_ne_bytes(bytes[o..o + 8].try_into().unwrap()));
    }
    s
}

fn rand_mmkit_cold(file: &File, offs: &[usize]) -> u64 {
    // SAFETY: as above.
    let map = unsafe { MapOptions::new().map(file) }.unwrap();
    rand_mapped(&map, offs)
}

// ---- the run --------------------------------------------------------------------------------

struct Peer<'a> {
    name: &'static str,
    run: Box<dyn FnMut() -> u64 + 'a>,
    /// The run's time is divided by this (the map peers' extra random reads).
    scale: f64,
}

fn peers<'a>(file: &'a File, offs: &'a [usize], offs_map: &'a [usize], hot: Option<&'a Mmap>) -> Vec<Peer<'a>> {
    let mut buf = vec![0u8; BUF];
    let populate = MapOptions::new().populate(Populate::MapPopulate).clone();
    let populate_read = MapOptions::new().populate(Populate::Read).clone();
    let sequential = MapOptions::new().advice(Advice::Sequential).clone();
    let thp = MapOptions::new().huge_pages(HugePages::Transparent).clone();
    let default = MapOptions::new();
    let mut peers = vec![
        Peer { name: "seq/read_1MiB", scale: 1.0, run: Box::new(move || seq_read(file, &mut buf)) },
        Peer { name: "seq/memmap2", scale: 1.0, run: Box::new(move || seq_memmap2(file)) },
        Peer { name: "seq/mmkit_default", scale: 1.0, run: Box::new(move || seq_mmkit(file, &default)) },
        Peer { name: "seq/mmkit_map_populate", scale: 1.0, run: Box::new(move || seq_mmkit(file, &populate)) },
        Peer { name: "seq/mmkit_populate_read", scale: 1.0, run: Box::new(move || seq_mmkit(file, &populate_read)) },
        Peer { name: "seq/mmkit_sequential", scale: 1.0, run: Box::new(move || seq_mmkit(file, &sequential)) },
        Peer { name: "seq/mmkit_thp", scale: 1.0, run: Box::new(move || seq_mmkit(file, &thp)) },
        Peer { name: "seq/mmkit_scan", scale: 1.0, run: Box::new(move || seq_scan(file)) },
        Peer { name: "seq/mmkit_scan_ahead", scale: 1.0, run: Box::new(move || seq_scan_ahead(file)) },
    ];
    if let Some(hot) = hot {
        let f = MAP_READ_FACTOR as f64;
        peers.extend([
            Peer { name: "rand/pread", scale: 1.0, run: Box::new(move || rand_pread(file, offs)) },
            Peer { name: "rand/mmkit_cold", scale: f, run: Box::new(move || rand_mmkit_cold(file, offs_map)) },
            Peer { name: "rand/mmkit_populated", scale: f, run: Box::new(move || rand_mapped(hot, offs_map)) },
        ]);
    }
    peers
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Round-robin: every round runs each peer once, so drift (page cache, frequency, neighbours)
/// hits all peers alike. Returns each peer's median seconds.
/// Also prints each peer's per-round times as a `BENCH` JSON line for scripts/bench.
/// With `evict`, the file is dropped from the page cache before every run (untimed).
fn interleaved(peers: &mut [Peer<'_>], rounds: usize, group: &str, evict_file: Option<&File>) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(rounds); peers.len()];
    for _ in 0..rounds {
        for (p, t) in peers.iter_mut().zip(&mut times) {
            if let Some(f) = evict_file {
                evict(f);
            }
            let start = Instant::now();
            black_box((p.run)());
            t.push(start.elapsed().as_secs_f64() / p.scale);
        }
    }
    for (p, t) in peers.iter().zip(&times) {
        let ms: Vec<f64> = t.iter().map(|s| s * 1e3).collect();
        println!("BENCH {{\"group\":\"{group}\",\"peer\":\"{}\",\"time_ms\":{ms:?}}}", p.name);
    }
    times.iter_mut().map(|t| median(t)).collect()
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let size = bench_size(bench_mode);
    let path = bench_file(size);
    let file = File::open(&path).unwrap();
    let warm = warm_mode();
    evict(&file);
    let expect = rewarm(&file, warm);
    let offs = random_offsets(size, RANDOM_READS);
    let offs_map = random_offsets(size, RANDOM_READS * MAP_READ_FACTOR);
    // The map of the random peers stays mapped (which would keep its pages cached): not made
    // when every run starts from an evicted file.
    let hot = (warm != Warm::Evicted).then(|| {
        // SAFETY: as above.
        unsafe { random_read_options().map(&file) }.unwrap()
    });
    let pmd_kb = hot.as_ref().map_or(0, |h| file_pmd_mapped_kb(h.mapping().kernel_region().0));
    println!(
        "bench file {} ({} MiB), page cache warmed by {warm:?}: the random peers' populated map has {} of {} MiB mapped with 2 MiB entries",
        path.display(),
        size >> 20,
        pmd_kb >> 10,
        size >> 20
    );

    let mut peers = peers(&file, &offs, &offs_map, hot.as_ref());
    // Every peer computes the same thing.
    let want_rand = rand_pread(&file, &offs);
    let want_rand_map = if hot.is_some() { rand_pread(&file, &offs_map) } else { 0 };
    for p in peers.iter_mut() {
        let got = (p.run)();
        let want = match p.name {
            "rand/pread" => want_rand,
            n if n.starts_with("rand/") => want_rand_map,
            _ => expect,
        };
        assert_eq!(got, want, "{} disagrees", p.name);
    }

    // scripts/bench (`MMKIT_BENCH_QUICK=1`): the interleaved rounds only.
    let quick = std::env::var_os("MMKIT_BENCH_QUICK").is_some();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    if !quick && warm != Warm::Evicted {
        rewarm(&file, warm);
        let mut g = c.benchmark_group(format!("file_{}MiB", size >> 20));
        g.sampling_mode(SamplingMode::Flat);
        for p in peers.iter_mut() {
            g.bench_function(p.name, |b| b.iter(|| black_box((p.run)())));
        }
        g.finish();
    }
    c.final_summary();

    if !bench_mode {
        return;
    }
    rewarm(&file, warm);
    let rounds: usize = std::env::var("MMKIT_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(15);
    let evict_file = (warm == Warm::Evicted).then_some(&file);
    let med = interleaved(&mut peers, rounds, &format!("file_{warm:?}").to_lowercase(), evict_file);
    let by = |n: &str| med[peers.iter().position(|p| p.name == n).unwrap()];
    let gib = size as f64 / (1u64 << 30) as f64;
    println!(
        "\ninterleaved medians over {rounds} rounds, {} MiB file warmed by {warm:?} ({} MiB PMD-mapped), times per {RANDOM_READS} random reads:",
        size >> 20,
        pmd_kb >> 10
    );
    println!("{:<26} {:>12} {:>12}", "peer", "median", "throughput");
    for (p, m) in peers.iter().zip(&med) {
        let tp = if p.name.starts_with("seq/") {
            format!("{:.2} GiB/s", gib / m)
        } else {
            format!("{:.1} ns/read", m * 1e9 / RANDOM_READS as f64)
        };
        println!("{:<26} {:>9.3} ms {:>12}", p.name, m * 1e3, tp);
    }
    let seq_mmkit = [
        "seq/mmkit_default",
        "seq/mmkit_map_populate",
        "seq/mmkit_populate_read",
        "seq/mmkit_sequential",
        "seq/mmkit_thp",
        "seq/mmkit_scan",
        "seq/mmkit_scan_ahead",
    ];
    let (best_name, best) =
        seq_mmkit.iter().map(|n| (*n, by(n))).min_by(|a, b| a.1.partial_cmp(&b.1).unwrap()).unwrap();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let r_read = by("seq/read_1MiB") / best;
    let r_mm2 = by("seq/memmap2") / best;
    println!("\nratios (peer time / mmkit time; higher is better for mmkit):");
    // Issue 14: 1.35x with a large-folio cache, 1.0x with small folios (and, unstated, evicted).
    let target = if warm == Warm::Thp { 1.35 } else { 1.0 };
    println!(
        "  best sequential mmkit ({best_name}) vs read():   {r_read:.2}x  (target >= {target}x: {})",
        verdict(r_read >= target)
    );
    println!(
        "  best sequential mmkit ({best_name}) vs memmap2:  {r_mm2:.2}x  (target >= 1.0x: {})",
        verdict(r_mm2 >= 1.0)
    );
    if hot.is_some() {
        let r_cold = by("rand/pread") / by("rand/mmkit_cold");
        let r_hot = by("rand/pread") / by("rand/mmkit_populated");
        println!(
            "  random 8-byte reads, populated map vs pread:  {r_hot:.1}x  (target >= 20x: {})",
            verdict(r_hot >= 20.0)
        );
        println!("  random 8-byte reads, cold map vs pread:       {r_cold:.1}x  (map + faults included)");
    }
}
