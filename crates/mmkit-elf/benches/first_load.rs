//! The first load of a library in a fresh process (what an app's start-up pays): mmkit-elf's
//! `Library::open` + one lookup, against glibc's `dlopen(RTLD_NOW)` + `dlsym` in the same kind
//! of process (this binary re-run as a child) and in a C program (`dlopen` from a process that
//! is not a Rust program). Each sample is one child process that loads once and reports the
//! nanoseconds of that load; the peers alternate sample by sample.
//!
//! Libraries: the system `libz.so.1` and a fixture that needs libstdc++ (compiled here with
//! g++), each copied to a private file so that the evicted state can be made with
//! `posix_fadvise(DONTNEED)` (nothing else maps the copy). States: `warm` (page cache full, the
//! file read once before) and `evicted` (dropped before every sample).
//!
//! Prints, per library and state, the median and the spread (min..max) of each peer and the
//! ratio of medians mmkit/glibc. Figures taken on a loaded machine are provisional.
//!
//! Run: `cargo bench -p mmkit-elf --bench first_load` (`-- --samples N`, default 31). Each
//! peer's samples are also printed as a `BENCH {...}` JSON line, which `scripts/bench` reads.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const C_PEER: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    void *s = h ? dlsym(h, argv[2]) : 0;
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (!s) return 1;
    printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
"#;

fn workdir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mmkit-elf-first-load");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn compile(compiler: &str, src: &str, ext: &str, out: &Path, flags: &[&str]) {
    let file = workdir().join(format!("{}.{ext}", out.file_name().unwrap().to_string_lossy()));
    std::fs::write(&file, src).unwrap();
    let ok = Command::new(compiler).args(flags).arg("-o").arg(out).arg(&file).status().expect("run the compiler");
    assert!(ok.success(), "{compiler} failed");
}

/// Child: one load, prints its nanoseconds.
fn child(peer: &str, path: &str, symbol: &str) {
    let start = Instant::now();
    match peer {
        "mmkit" => {
            // SAFETY: the bench's own fixture or the system's libz.
            let lib = unsafe { mmkit_elf::Library::open(path) }.expect("mmkit load");
            // SAFETY: only the address is read.
            let f = unsafe { lib.symbol::<extern "C" fn()>(symbol) }.expect("lookup");
            let ns = start.elapsed().as_nanos();
            assert_ne!(f.address(), 0);
            println!("{ns}");
            std::mem::forget(lib); // as a process that keeps its library
        }
        _ => {
            let (p, s) = (CString::new(path).unwrap(), CString::new(symbol).unwrap());
            // SAFETY: as above.
            let h = unsafe { libc::dlopen(p.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            // SAFETY: a live handle.
            let f = unsafe { libc::dlsym(h, s.as_ptr()) };
            let ns = start.elapsed().as_nanos();
            assert!(!f.is_null());
            println!("{ns}");
        }
    }
}

fn evict(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: advice on an open file descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

fn warm(path: &Path) {
    let _ = std::fs::read(path).unwrap();
}

fn sample(cmd: &mut Command) -> u64 {
    let out = cmd.output().expect("run a sample");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap().parse().unwrap()
}

fn stats(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // cargo bench/test discovery
    }
    let samples: usize =
        args.iter().position(|a| a == "--samples").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(31);
    let dir = workdir();
    let c_peer = dir.join("dlopen-once");
    compile("gcc", C_PEER, "c", &c_peer, &["-O2"]);
    let cxx = dir.join("libfirstcxx.so");
    let cxx_src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cxxuse.cpp")).unwrap();
    compile("g++", &cxx_src, "cpp", &cxx, &["-shared", "-fPIC", "-O2"]);
    let libz = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libz.so.1");
    let zcopy = dir.join("libz-copy.so.1");
    std::fs::copy(libz, &zcopy).unwrap();
    let me = std::env::current_exe().unwrap();
    println!("first load in a fresh process, {samples} samples per peer (ns: median [min..max])");
    for (label, path, symbol) in [("libz", &zcopy, "deflate"), ("libstdc++ user", &cxx, "fx_cxx_catch")] {
        for state in ["warm", "evicted"] {
            let mut times: [Vec<u64>; 3] = Default::default();
            for s in 0..samples {
                // Alternate which peer goes first.
                let order: [usize; 3] = if s % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
                for peer in order {
                    if state == "evicted" {
                        evict(path);
                    } else {
                        warm(path);
                    }
                    let p = path.to_str().unwrap();
                    let t = match peer {
                        0 => sample(Command::new(&me).args(["--child", "mmkit", p, symbol])),
                        1 => sample(Command::new(&me).args(["--child", "glibc", p, symbol])),
                        _ => sample(Command::new(&c_peer).args([p, symbol])),
                    };
                    times[peer].push(t);
                }
            }
            // One record per peer, sample by sample, for scripts/bench (ratios per sample).
            for (peer, t) in ["mmkit", "glibc", "c_program"].iter().zip(&times) {
                println!("BENCH {{\"case\":\"{label}\",\"state\":\"{state}\",\"peer\":\"{peer}\",\"ns\":{t:?}}}");
            }
            let [m, g, c] = times.map(stats);
            println!(
                "{label:>15} {state:>8}: mmkit {} [{}..{}]  glibc dlopen {} [{}..{}]  C program dlopen {} [{}..{}]  mmkit/glibc {:.2}  mmkit/C {:.2}",
                m.0, m.1, m.2, g.0, g.1, g.2, c.0, c.1, c.2,
                m.0 as f64 / g.0 as f64,
                m.0 as f64 / c.0 as f64
            );
        }
    }
}
