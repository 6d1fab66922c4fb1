//! open + two symbol lookups + close: mmkit-elf vs glibc `dlopen(RTLD_NOW)`/`dlsym`/`dlclose`,
//! interleaved in one criterion group, for a small fixture and a copy of the system `libz.so.1`. Both
//! loaders are warmed up (untimed) before the group, and which peer runs first alternates from
//! library to library (glibc first for the fixture, mmkit first for libz). The group opens with
//! a throwaway `warmup_both` case (both loaders alike) that absorbs the first-position penalty.
//!
//! Before the timed group it prints, for each library, the pages of its `PT_LOAD` ranges right
//! after loading (open + the two lookups): `resident` = in memory per `mincore` (page cache
//! included) and `present` = mapped in this process's page tables per `/proc/self/pagemap`,
//! for mmkit's copy ([`mmkit_elf::Library::segments`]) and glibc's copy (ranges from
//! `dl_iterate_phdr`, counted the same way).
//!
//! Then, for each library, an interleaved measurement (robust to a noisy machine): 31 rounds
//! of 500 cycles of each loader, alternating, and the median of the per-round ratios, with the
//! page faults per cycle counted by the kernel (`getrusage`).
//!
//! Run: `cargo bench -p mmkit-elf --bench load`. Needs gcc (the fixture is compiled here).

use criterion::{criterion_group, criterion_main, Criterion};
use std::ffi::CString;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmkit-elf-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("libfxbasic.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/basic.c");
    let ok = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .expect("the benchmark compiles a C fixture: install gcc")
        .success();
    assert!(ok, "gcc failed");
    out
}

fn mmkit_cycle(path: &Path, a: &str, b: &str) -> usize {
    // SAFETY: trusted fixture / system library.
    let lib = unsafe { mmkit_elf::Library::open(path) }.unwrap();
    let x = lib.address_of(a).unwrap();
    let y = lib.address_of(b).unwrap();
    (x ^ y) as usize
}

fn glibc_cycle(path: &CString, a: &CString, b: &CString) -> usize {
    // SAFETY: trusted fixture / system library; handle closed below.
    unsafe {
        let h = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null());
        let x = libc::dlsym(h, a.as_ptr()) as usize;
        let y = libc::dlsym(h, b.as_ptr()) as usize;
        libc::dlclose(h);
        x ^ y
    }
}

/// `(resident, present, total)` pages of run-time ranges `[start, end)`.
fn count_pages(ranges: &[(u64, u64)]) -> (u64, u64, u64) {
    use std::os::unix::fs::FileExt;
    let page = mmkit_elf::page_size();
    let pagemap = std::fs::File::open("/proc/self/pagemap").ok();
    let (mut resident, mut present, mut total) = (0, 0, 0);
    for &(s, e) in ranges {
        let (s, e) = (s & !(page - 1), e.div_ceil(page) * page);
        let n = ((e - s) / page) as usize;
        total += n as u64;
        let mut vec = vec![0u8; n];
        // SAFETY: the range is mapped (a loaded library's PT_LOAD pages); mincore writes `vec`.
        if unsafe { libc::mincore(s as *mut libc::c_void, (e - s) as usize, vec.as_mut_ptr()) } == 0 {
            resident += vec.iter().filter(|&&b| b & 1 != 0).count() as u64;
        }
        if let Some(f) = &pagemap {
            let mut buf = vec![0u8; n * 8];
            if f.read_exact_at(&mut buf, s / page * 8).is_ok() {
                present += buf.chunks_exact(8).filter(|c| c[7] & 0x80 != 0).count() as u64;
            }
        }
    }
    (resident, present, total)
}

/// `PT_LOAD` ranges of the object glibc loaded from `path`.
fn glibc_ranges(path: &CString) -> Vec<(u64, u64)> {
    struct Find<'a>(&'a CString, Vec<(u64, u64)>);
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: glibc passes a valid info; `data` is the `Find` below.
        unsafe {
            let find = &mut *data.cast::<Find>();
            let info = &*info;
            if info.dlpi_name.is_null() || std::ffi::CStr::from_ptr(info.dlpi_name) != find.0.as_c_str() {
                return 0;
            }
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type == libc::PT_LOAD {
                    let s = info.dlpi_addr + ph.p_vaddr;
                    find.1.push((s, s + ph.p_memsz));
                }
            }
        }
        0
    }
    let mut find = Find(path, Vec::new());
    // SAFETY: the callback only reads glibc's info and writes `find`.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut find as *mut Find).cast()) };
    find.1
}

/// Prints resident/present pages after load for mmkit's and glibc's copies.
fn residency(path: &Path, a: &str, b: &str) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    // SAFETY: trusted fixture / system library.
    let lib = unsafe { mmkit_elf::Library::open(path) }.unwrap();
    let _ = (lib.address_of(a).unwrap(), lib.address_of(b).unwrap());
    let segs = lib.segments().unwrap();
    let ranges: Vec<(u64, u64)> = segs
        .iter()
        .filter(|m| !matches!(m.kind, mmkit_elf::MappingKind::Gap))
        .map(|m| (m.start, m.start + m.len))
        .collect();
    let (mr, mp, mt) = count_pages(&ranges);
    drop(lib);
    let cp = CString::new(path.to_str().unwrap()).unwrap();
    let (ca, cb) = (CString::new(a).unwrap(), CString::new(b).unwrap());
    // SAFETY: as in glibc_cycle; closed below.
    let (gr, gp, gt) = unsafe {
        let h = libc::dlopen(cp.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!h.is_null());
        let _ = (libc::dlsym(h, ca.as_ptr()), libc::dlsym(h, cb.as_ptr()));
        let counted = count_pages(&glibc_ranges(&cp));
        libc::dlclose(h);
        counted
    };
    println!("BENCH {{\"case\":\"{name}\",\"present_mmkit\":{mp},\"present_glibc\":{gp}}}");
    println!(
        "resident after load, {name}: mmkit {mr}/{mt} resident (mincore), {mp} present (pagemap); \
         glibc {gr}/{gt} resident, {gp} present; present ratio {:.2}",
        mp as f64 / gp.max(1) as f64
    );
}

/// Minor page faults of this thread so far.
fn minflt() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut u);
        u.ru_minflt as u64
    }
}

/// The ratio measured the robust way on a noisy machine: many short rounds of each loader,
/// alternating (and alternating which goes first), the median of the per-round ratios; plus
/// the page faults per cycle, as the kernel counts them.
fn interleaved(path: &Path, a: &str, b: &str) {
    // scripts/bench sets MMKIT_BENCH_ROUNDS (a short run); 31 by default.
    let rounds = std::env::var("MMKIT_BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(31usize);
    const CYCLES: u32 = 500;
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (cp, ca, cb) =
        (CString::new(path.to_str().unwrap()).unwrap(), CString::new(a).unwrap(), CString::new(b).unwrap());
    let time = |mmkit: bool| {
        let (f0, t) = (minflt(), std::time::Instant::now());
        for _ in 0..CYCLES {
            std::hint::black_box(if mmkit { mmkit_cycle(path, a, b) } else { glibc_cycle(&cp, &ca, &cb) });
        }
        (t.elapsed().as_secs_f64() * 1e6 / f64::from(CYCLES), (minflt() - f0) as f64 / f64::from(CYCLES))
    };
    let (mut ours, mut theirs, mut ratios, mut faults) = (Vec::new(), Vec::new(), Vec::new(), (0.0, 0.0));
    for round in 0..rounds {
        let (m, g) = if round % 2 == 0 {
            let m = time(true);
            (m, time(false))
        } else {
            let g = time(false);
            (time(true), g)
        };
        ours.push(m.0);
        theirs.push(g.0);
        ratios.push(m.0 / g.0);
        faults = (faults.0 + m.1 / rounds as f64, faults.1 + g.1 / rounds as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() / 4], v[v.len() * 3 / 4])
    };
    println!(
        "BENCH {{\"case\":\"{name}\",\"ratios\":{ratios:?},\"faults_mmkit\":{},\"faults_glibc\":{}}}",
        faults.0, faults.1
    );
    let (r, r_lo, r_hi) = median(&mut ratios);
    println!(
        "interleaved, {name}: mmkit {:.2} µs, glibc {:.2} µs per cycle (medians of {rounds} alternating rounds \
         of {CYCLES}); ratio {r:.3} (quartiles {r_lo:.3}-{r_hi:.3}); page faults per cycle (getrusage: includes the ones \
         MAP_POPULATE takes inside mmap): mmkit {:.1}, glibc {:.1}",
        median(&mut ours).0,
        median(&mut theirs).0,
        faults.0,
        faults.1
    );
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let mut cases = vec![(fx.clone(), "fx_add", "fx_counter")];
    for p in ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"] {
        if Path::new(p).exists() {
            // A copy: the system's own file is loaded by the system linker under mmkit's
            // default namespace (both loaders then map the same copy).
            let copy = fx.with_file_name("libz-copy.so.1");
            std::fs::copy(p, &copy).unwrap();
            cases.push((copy, "crc32", "zlibVersion"));
            break;
        }
    }
    for (path, a, b) in &cases {
        let _warm = std::fs::read(path).unwrap();
        residency(path, a, b);
    }
    // Untimed warm-up of both loaders (caches, lazy binding of dlopen & co., the allocator's
    // arenas), so that whichever benchmark comes first in the group does not pay for it.
    for (path, a, b) in &cases {
        let (cp, ca, cb) =
            (CString::new(path.to_str().unwrap()).unwrap(), CString::new(*a).unwrap(), CString::new(*b).unwrap());
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(500) {
            for _ in 0..100 {
                std::hint::black_box(mmkit_cycle(path, a, b));
                std::hint::black_box(glibc_cycle(&cp, &ca, &cb));
            }
        }
    }
    for (path, a, b) in &cases {
        interleaved(path, a, b);
    }
    if std::env::var_os("MMKIT_BENCH_QUICK").is_some() {
        // scripts/bench: the interleaved report only.
        return;
    }
    let mut group = c.benchmark_group("open_lookup2_close");
    // The first benchmark of a group measured slow whichever loader it ran (criterion's own
    // start-up, not the loaders'), so a throwaway case that runs both peers alike goes first.
    // Its figure is not a result.
    if let Some((path, a, b)) = cases.first() {
        let (cp, ca, cb) =
            (CString::new(path.to_str().unwrap()).unwrap(), CString::new(*a).unwrap(), CString::new(*b).unwrap());
        group.bench_function("warmup_both", |bn| bn.iter(|| mmkit_cycle(path, a, b) ^ glibc_cycle(&cp, &ca, &cb)));
    }
    for (i, (path, a, b)) in cases.iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (cp, ca, cb) =
            (CString::new(path.to_str().unwrap()).unwrap(), CString::new(*a).unwrap(), CString::new(*b).unwrap());
        // Keep the file in the page cache for both.
        let _warm = std::fs::read(path).unwrap();
        // Peers stay interleaved; which one runs first alternates from library to library.
        let mmkit_first = i % 2 == 1;
        if mmkit_first {
            group.bench_function(format!("mmkit/{name}"), |bn| bn.iter(|| mmkit_cycle(path, a, b)));
        }
        group.bench_function(format!("glibc/{name}"), |bn| bn.iter(|| glibc_cycle(&cp, &ca, &cb)));
        if !mmkit_first {
            group.bench_function(format!("mmkit/{name}"), |bn| bn.iter(|| mmkit_cycle(path, a, b)));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
