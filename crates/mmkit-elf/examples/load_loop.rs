//! Profiling aid: open + two lookups + close in a loop, for perf, with user and system time
//! per cycle from `getrusage`.
//!
//! `cargo run --release -p mmkit-elf --example load_loop -- [mmkit|glibc|both] PATH SYM1 SYM2 [N] [ROUNDS]`
//!
//! `both` alternates rounds of N cycles of each loader in one process and prints each round,
//! then the median per loader and the ratio.

use std::ffi::CString;
use std::time::{Duration, Instant};

fn cycle(which: &str, path: &str, a: &str, b: &str) -> u64 {
    if which == "glibc" {
        let (cp, ca, cb) = (CString::new(path).unwrap(), CString::new(a).unwrap(), CString::new(b).unwrap());
        // SAFETY: a trusted library, closed below.
        unsafe {
            let h = libc::dlopen(cp.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            assert!(!h.is_null());
            let x = libc::dlsym(h, ca.as_ptr()) as u64 ^ libc::dlsym(h, cb.as_ptr()) as u64;
            libc::dlclose(h);
            x
        }
    } else {
        // SAFETY: a trusted library.
        let lib = unsafe { mmkit_elf::Library::open(path) }.unwrap();
        lib.address_of(a).unwrap() ^ lib.address_of(b).unwrap()
    }
}

fn cpu_times() -> (Duration, Duration, u64) {
    // SAFETY: getrusage only writes the zeroed struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime), tv(u.ru_stime), u.ru_minflt as u64)
}

/// `(wall, user, system, page faults)` per cycle over `n` cycles.
fn round(which: &str, path: &str, a: &str, b: &str, n: u32) -> [f64; 4] {
    let (u0, s0, f0) = cpu_times();
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..n {
        acc ^= cycle(which, path, a, b);
    }
    std::hint::black_box(acc);
    let wall = t.elapsed();
    let (u1, s1, f1) = cpu_times();
    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    [us(wall), us(u1 - u0), us(s1 - s0), (f1 - f0) as f64 / f64::from(n)]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("mmkit", String::as_str);
    let path = args.get(2).map_or("/lib/x86_64-linux-gnu/libz.so.1", String::as_str);
    let a = args.get(3).map_or("crc32", String::as_str);
    let b = args.get(4).map_or("zlibVersion", String::as_str);
    let n: u32 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(1);
    let loaders: &[&str] = if which == "both" { &["mmkit", "glibc"] } else { &[which] };
    for l in loaders {
        round(l, path, a, b, n / 10 + 1); // warm-up
    }
    let mut results: Vec<Vec<[f64; 4]>> = vec![Vec::new(); loaders.len()];
    for r in 0..rounds {
        // Alternate which loader goes first.
        for k in 0..loaders.len() {
            let i = (k + r) % loaders.len();
            let t = round(loaders[i], path, a, b, n);
            println!(
                "{} {path}: {:.2} µs per cycle (user {:.2}, system {:.2}; {:.2} page faults)",
                loaders[i], t[0], t[1], t[2], t[3]
            );
            results[i].push(t);
        }
    }
    let mut medians = Vec::new();
    for (l, res) in loaders.iter().zip(&results) {
        let m: Vec<f64> = (0..4).map(|k| median(&mut res.iter().map(|t| t[k]).collect::<Vec<_>>())).collect();
        println!("median {l}: {:.2} µs (user {:.2}, system {:.2}; {:.2} page faults)", m[0], m[1], m[2], m[3]);
        medians.push(m);
    }
    if medians.len() == 2 {
        let r = |k: usize| medians[0][k] / medians[1][k];
        println!("ratio mmkit/glibc: wall {:.3}, user {:.3}, system {:.3}", r(0), r(1), r(2));
    }
}
