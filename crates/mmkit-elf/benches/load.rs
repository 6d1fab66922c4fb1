//! open + two symbol lookups + close: mmkit-elf vs glibc `dlopen(RTLD_NOW)`/`dlsym`/`dlclose`,
//! interleaved in one criterion group, for a small fixture and the system `libz.so.1`.
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

fn bench(c: &mut Criterion) {
    let mut cases = vec![(fixture(), "fx_add", "fx_counter")];
    for p in ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"] {
        if Path::new(p).exists() {
            cases.push((PathBuf::from(p), "crc32", "zlibVersion"));
            break;
        }
    }
    let mut group = c.benchmark_group("open_lookup2_close");
    for (path, a, b) in &cases {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (cp, ca, cb) = (
            CString::new(path.to_str().unwrap()).unwrap(),
            CString::new(*a).unwrap(),
            CString::new(*b).unwrap(),
        );
        // Keep the file in the page cache for both.
        let _warm = std::fs::read(path).unwrap();
        group.bench_function(format!("mmkit/{name}"), |bn| {
            bn.iter(|| mmkit_cycle(path, a, b))
        });
        group.bench_function(format!("glibc/{name}"), |bn| {
            bn.iter(|| glibc_cycle(&cp, &ca, &cb))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
