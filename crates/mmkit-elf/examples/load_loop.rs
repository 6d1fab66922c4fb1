//! Profiling aid: open + two lookups + close in a loop, for callgrind or perf.
//!
//! `cargo run --release -p mmkit-elf --example load_loop -- [mmkit|glibc] PATH SYM1 SYM2 [N]`

use std::ffi::CString;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("mmkit", String::as_str);
    let path = args.get(2).map_or("/lib/x86_64-linux-gnu/libz.so.1", String::as_str);
    let a = args.get(3).map_or("crc32", String::as_str);
    let b = args.get(4).map_or("zlibVersion", String::as_str);
    let n: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let t = std::time::Instant::now();
    let mut acc = 0u64;
    for _ in 0..n {
        if which == "glibc" {
            let (cp, ca, cb) = (CString::new(path).unwrap(), CString::new(a).unwrap(), CString::new(b).unwrap());
            // SAFETY: a trusted library, closed below.
            unsafe {
                let h = libc::dlopen(cp.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                assert!(!h.is_null());
                acc ^= libc::dlsym(h, ca.as_ptr()) as u64 ^ libc::dlsym(h, cb.as_ptr()) as u64;
                libc::dlclose(h);
            }
        } else {
            // SAFETY: a trusted library.
            let lib = unsafe { mmkit_elf::Library::open(path) }.unwrap();
            acc ^= lib.address_of(a).unwrap() ^ lib.address_of(b).unwrap();
        }
    }
    let per = t.elapsed() / n as u32;
    println!("{which} {path}: {per:?} per cycle ({acc:x})");
}
