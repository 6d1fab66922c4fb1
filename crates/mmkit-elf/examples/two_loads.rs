//! The one-time part of a first load: one process loads two different copies of a library, one
//! after the other, and prints the nanoseconds of each open + lookup, then the page faults each
//! took (`getrusage`) (BENCHMARKS.md, "first load in a fresh process"). Run it once per process, alternating the loaders:
//!
//! `cargo run --release -p mmkit-elf --example two_loads -- [mmkit|glibc] COPY_A COPY_B [SYMBOL]`
//!
//! The two paths must be different files (copies of one library: different inodes), else the
//! second open returns the first copy.

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
