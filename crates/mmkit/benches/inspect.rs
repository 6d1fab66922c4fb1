//! `mmkit residency` / `mmkit maps` side by side with `vmtouch` and `pmap`, in one criterion run.
//!
//! Every peer runs as a subprocess, and so does mmkit (the release `mmkit` binary, found next to
//! this bench's `deps/` directory or at `$MMKIT_BIN`), so both sides pay for exec and output.
//! The library calls are measured too, in-process, for reference.
//!
//! ```text
//! cargo build --release -p mmkit-cli
//! cargo bench -p mmkit --bench inspect -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Data lives in `target/inspect-bench/` (a disk, not tmpfs): a 1 GiB file and a tree of
//! 10,000 files of 1–16 KiB. The page cache is set explicitly before each group: warmed for
//! the residency groups, evicted before every iteration of the touch group.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use mmkit::inspect;

fn mmkit_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MMKIT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("mmkit");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --release -p mmkit-cli` first (or set MMKIT_BIN)",
        bin.display()
    );
    bin
}

fn data_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/inspect-xxxx → target/inspect-bench
    let dir = exe.ancestors().nth(3).unwrap().join("inspect-bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn big_file(dir: &Path) -> PathBuf {
    let path = dir.join("big.bin");
    if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(1 << 30) {
        let mut f = File::create(&path).unwrap();
        let mut block = vec![0u8; 1 << 20];
        for i in 0..1024u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(2_654_435_761).wrapping_add(i) as u8;
            }
            f.write_all(&block).unwrap();
        }
        f.sync_all().unwrap();
    }
    path
}

fn small_tree(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    for d in 0..100 {
        let sub = root.join(format!("d{d:03}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            let p = sub.join(format!("f{f:03}"));
            if !p.exists() {
                let len = 1024 * (1 + (d * 100 + f) % 16);
                std::fs::write(&p, vec![(d + f) as u8; len]).unwrap();
            }
        }
    }
    root
}

fn run(cmd: &mut Command) {
    let st = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(st.success(), "{cmd:?} failed");
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn warm(paths: &[PathBuf]) {
    for r in inspect::touch_files(paths, &inspect::TouchOptions::default(), &|_| ()) {
        r.unwrap();
    }
}

fn residency(c: &mut Criterion) {
    let mm = mmkit_bin();
    let dir = data_dir();
    let big = big_file(&dir);
    let tree = small_tree(&dir);
    let (files, _) = inspect::collect_files(&[&tree]);
    let tree_files: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
    assert_eq!(tree_files.len(), 10_000);
    let vmtouch = have("vmtouch");

    warm(std::slice::from_ref(&big));
    let mut g = c.benchmark_group("residency_1gib_file");
    if vmtouch {
        g.bench_function("vmtouch -q", |b| b.iter(|| run(Command::new("vmtouch").args(["-q", "-m", "2G"]).arg(&big))));
    }
    g.bench_function("mmkit residency -q", |b| b.iter(|| run(Command::new(&mm).args(["residency", "-q"]).arg(&big))));
    g.bench_function("lib cachestat", |b| b.iter(|| inspect::cachestat(&big).unwrap()));
    g.bench_function("lib residency (mincore bitmap)", |b| b.iter(|| inspect::residency(&big).unwrap()));
    g.finish();

    warm(&tree_files);
    let mut g = c.benchmark_group("residency_10k_files");
    if vmtouch {
        g.bench_function("vmtouch -q", |b| b.iter(|| run(Command::new("vmtouch").arg("-q").arg(&tree))));
    }
    g.bench_function("mmkit residency -q", |b| b.iter(|| run(Command::new(&mm).args(["residency", "-q"]).arg(&tree))));
    g.bench_function("mmkit residency -q --threads 1", |b| {
        b.iter(|| run(Command::new(&mm).args(["residency", "-q", "--threads", "1"]).arg(&tree)))
    });
    g.bench_function("lib collect_files + cachestat_files", |b| {
        b.iter(|| {
            let (files, _) = inspect::collect_files(&[&tree]);
            let paths: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
            inspect::cachestat_files(&paths, 0, &|| ())
        })
    });
    g.finish();
}

fn touch(c: &mut Criterion) {
    let mm = mmkit_bin();
    let big = big_file(&data_dir());
    let evict = || inspect::evict(&big).unwrap();
    let mut g = c.benchmark_group("touch_evicted_1gib_file");
    g.sample_size(10);
    if have("vmtouch") {
        g.bench_function("vmtouch -t", |b| {
            b.iter_batched(
                evict,
                |()| run(Command::new("vmtouch").args(["-q", "-t", "-m", "2G"]).arg(&big)),
                BatchSize::PerIteration,
            )
        });
    }
    g.bench_function("mmkit residency --touch", |b| {
        b.iter_batched(
            evict,
            |()| run(Command::new(&mm).args(["residency", "-q", "--touch"]).arg(&big)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("lib touch", |b| {
        b.iter_batched(evict, |()| inspect::touch(&big).unwrap(), BatchSize::PerIteration)
    });
    g.finish();
}

fn maps(c: &mut Criterion) {
    let mm = mmkit_bin();
    // 10,000 one-page mappings in this process, alternately read-only and read-write (so the
    // kernel cannot merge neighbours), the writable ones touched so smaps has pages to count.
    let page = mmkit::page_size();
    let mut held = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let prot = if i % 2 == 0 { mmkit::Protection::READ } else { mmkit::Protection::READ_WRITE };
        let m = mmkit::MapOptions::new().len(page).protection(prot).map_anon_raw().unwrap();
        if i % 2 == 1 {
            // SAFETY: the odd pages are mapped read-write and only touched here.
            unsafe { m.as_mut_ptr().write(1) };
        }
        held.push(m);
    }
    let pid = std::process::id().to_string();
    let n = inspect::maps(std::process::id()).unwrap().len();
    assert!(n >= 10_000, "only {n} mappings");

    let mut g = c.benchmark_group("maps_10k_mappings");
    g.sample_size(20);
    if have("pmap") {
        g.bench_function("pmap -X", |b| b.iter(|| run(Command::new("pmap").args(["-X", &pid]))));
    }
    g.bench_function("mmkit maps", |b| b.iter(|| run(Command::new(&mm).args(["maps", &pid]))));
    g.bench_function("mmkit maps --json", |b| b.iter(|| run(Command::new(&mm).args(["maps", "--json", &pid]))));
    g.bench_function("lib smaps", |b| b.iter(|| inspect::smaps(std::process::id()).unwrap()));
    g.finish();
    drop(held);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = residency, touch, maps
}
criterion_main!(benches);
