//! The one-time part of a first load: one process loads two different copies of a library, one
//! after the other, and prints the nanoseconds of each open + lookup, then the page faults each
//! took (`getrusage`) (BENCHMARKS.md, "first load in a fresh process"). Run it once per process, alternating the loaders:
//!
//! `cargo run --release -p mmkit-elf --example two_loads -- [mmkit|glibc] COPY_A COPY_B [SYMBOL]`
//!
//! The two paths must be different files (copies of one library: different inodes), else the
//! second open returns the first copy.
//!
//! To see what the first load pays for code and memory the process touches for the first
//! time, `MMKIT_PREFAULT_TEXT=1` maps the program's whole text into its page tables before the
//! first load (`MADV_POPULATE_READ`: no page fault on the loader's code, as ld.so's code has
//! none after start-up) and `MMKIT_PRETOUCH_HEAP=1` allocates and frees 30 KiB first (fresh
//! heap pages touched once, as in a process that has run for a while).

use std::ffi::CString;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, peer, a, b, ..] = args.as_slice() else {
        eprintln!("usage: two_loads mmkit|glibc COPY_A COPY_B [SYMBOL]");
        std::process::exit(2);
    };
    let symbol = args.get(4).map_or("deflate", String::as_str);
    let csym = CString::new(symbol).unwrap();
    let mut times = Vec::new();
    let mut keep = Vec::new();
    // The process's page faults so far (`getrusage`: minor + major).
    let flt = || {
        // SAFETY: an all-zero rusage is a valid value to fill.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes `r`, which lives across the call.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
        r.ru_minflt + r.ru_majflt
    };
    let mut faults = Vec::new();
    if std::env::var_os("MMKIT_PREFAULT_TEXT").is_some() {
        prefault_text();
    }
    if std::env::var_os("MMKIT_PRETOUCH_HEAP").is_some() {
        let blocks: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 480]).collect();
        std::hint::black_box(&blocks);
    }
    for path in [a, b] {
        let f0 = flt();
        let start = Instant::now();
        if peer == "mmkit" {
            // SAFETY: a trusted library (the caller's copies), kept loaded until the end.
            let lib = unsafe { mmkit_elf::Library::open(path.as_str()) }.expect("load");
            let addr = lib.address_of(symbol).expect("lookup");
            times.push(start.elapsed().as_nanos());
            faults.push(flt() - f0);
            assert_ne!(addr, 0);
            keep.push(lib);
        } else {
            let cpath = CString::new(path.as_str()).unwrap();
            // SAFETY: as above; never closed (as the process keeps its library).
            let handle = unsafe { libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            assert!(!handle.is_null(), "dlopen {path}");
            // SAFETY: a live handle; a NUL-terminated name.
            let addr = unsafe { libc::dlsym(handle, csym.as_ptr()) };
            times.push(start.elapsed().as_nanos());
            faults.push(flt() - f0);
            assert!(!addr.is_null());
        }
    }
    println!("{} {} faults {} {}", times[0], times[1], faults[0], faults[1]);
    std::mem::forget(keep); // as a process that keeps its libraries
}

/// `MADV_POPULATE_READ` over the program's executable mappings (Linux 5.14+; ignored if the
/// kernel lacks it).
fn prefault_text() {
    let exe = std::fs::read_link("/proc/self/exe").expect("/proc/self/exe");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    for line in maps.lines().filter(|l| l.contains(" r-xp ") && l.ends_with(&*exe.to_string_lossy())) {
        let range = line.split(' ').next().unwrap_or_default();
        let Some((lo, hi)) = range.split_once('-') else { continue };
        let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) else { continue };
        // SAFETY: advice on this process's own text mapping; populating reads only.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_POPULATE_READ) };
    }
}
