//! The tour's file-backed section: demand paging, residency, mmap vs `read()`, and what
//! `MAP_SHARED` and `MAP_PRIVATE` writes do across `fork` and in the file.

// One of the modules with `unsafe`: the tour shows mmkit's `unsafe` calls as a user writes them.
#![allow(unsafe_code)]

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use mmkit::{MapOptions, Mmap, Populate};

use super::{check_interrupted, Args};
use crate::cli::io::IoResultExt;
use crate::cli::report::{duration, speed_against, Section};
use crate::cli::size::{bytes, throughput};

const CHUNK: usize = 1 << 20;

/// Sums a byte slice as native-endian `u64` words (the same loop for every peer).
fn sum_words(bytes: &[u8]) -> u64 {
    let mut sum = 0u64;
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        sum = sum.wrapping_add(u64::from_ne_bytes(c.try_into().expect("8 bytes")));
    }
    for &b in tail {
        sum = sum.wrapping_add(b as u64);
    }
    sum
}

/// The write and read buffer: `CHUNK` bytes, fewer for a smaller file, allocated fallibly so that
/// a low `RLIMIT_DATA`/`RLIMIT_AS` is an error (the temporary file removed), not an abort that
/// leaves it behind.
fn io_buffer(size: u64) -> anyhow::Result<Vec<u8>> {
    let n = size.min(CHUNK as u64) as usize;
    let mut buf = Vec::new();
    buf.try_reserve_exact(n).map_err(|_| {
        anyhow::anyhow!("no memory for the file section's {}-byte I/O buffer (is `ulimit -d` or `-v` low?)", n)
    })?;
    buf.resize(n, 0);
    Ok(buf)
}

/// Writes `size` bytes whose `u64` words count up from 0, so every reader can check its sum.
fn fill(file: &mut File, path: &Path, size: u64, json: bool) -> anyhow::Result<u64> {
    let mut buf = io_buffer(size)?;
    let bar = crate::cli::progress::bar(size, "writing the tour's file", crate::cli::progress::Unit::Bytes, !json);
    let mut word = 0u64;
    let mut expected = 0u64;
    let mut left = size;
    while left > 0 {
        check_interrupted()?;
        let n = left.min(buf.len() as u64) as usize;
        for w in buf[..n].chunks_exact_mut(8) {
            w.copy_from_slice(&word.to_ne_bytes());
            expected = expected.wrapping_add(word);
            word += 1;
        }
        for &b in buf[..n].chunks_exact(8).remainder() {
            expected = expected.wrapping_add(b as u64);
        }
        // The error names where the refused write started (`ulimit -f`, a full disk), as
        // `pager pack` does.
        crate::cli::io::write_all_at(file, path, &buf[..n], size - left)?;
        left -= n as u64;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    file.sync_all().on("fsync", path)?;
    Ok(expected)
}

fn read_sum(file: &mut File, path: &Path) -> anyhow::Result<u64> {
    file.seek(SeekFrom::Start(0)).on("lseek", path)?;
    let len = file.metadata().on("fstat", path)?.len();
    let mut buf = io_buffer(len.max(1))?;
    let mut sum = 0u64;
    loop {
        check_interrupted()?;
        let n = file.read(&mut buf).on("read", path)?;
        if n == 0 {
            break;
        }
        sum = sum.wrapping_add(sum_words(&buf[..n]));
    }
    Ok(sum)
}

fn map_sum(file: &File, populate: Populate) -> anyhow::Result<u64> {
    // SAFETY: the tour's temporary file is private to this process and never truncated or
    // written while mapped.
    let map = unsafe { MapOptions::new().populate(populate).map(file) }?;
    let mut sum = 0u64;
    for chunk in map.chunks(CHUNK) {
        check_interrupted()?;
        sum = sum.wrapping_add(sum_words(chunk));
    }
    Ok(sum)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The section's title (also shown when it fails).
pub const TITLE: &str = "File-backed mappings: demand paging, mmap vs read(), shared vs private";

/// Builds the file-backed section.
pub fn section(args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("file", TITLE);
    let page = mmkit::page_size();
    let size = args.size;
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("mmkit-tour-")
        .tempfile_in(&dir)
        .map_err(|e| crate::cli::io::io_error_no_path("open(O_CREAT | O_EXCL)", e))
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let path = tmp.path().to_owned();
    let mut file = tmp.reopen().on("open", &path)?;
    let t0 = Instant::now();
    let expected = fill(&mut file, &path, size, args.json)?;
    let written = t0.elapsed();
    s.fact("page_size", "page size (from the kernel)", page, bytes(page as u64));
    s.fact(
        "file_size",
        "file size",
        size,
        format!("{} ({} pages), written in {}", bytes(size), size / page as u64, duration(written)),
    );
    s.detail("file_pages", size / page as u64);
    s.detail("file_write_ns", written.as_nanos() as u64);

    // 1. A fresh map of a cold file: nothing is resident until touched.
    mmkit::inspect::evict(&path)?;
    // SAFETY: the tour's temporary file is private to this process and never truncated or
    // written while mapped.
    let map = unsafe { Mmap::map(&file) }?;
    let before = map.residency(..)?;
    s.fact(
        "fresh_map_resident_pages",
        "fresh read-only map, resident",
        before.resident_pages(),
        format!("{} of {} pages", before.resident_pages(), before.pages()),
    );
    let (min0, maj0) = mmkit::page_faults();
    let middle = map.len() / 2;
    black_box(map[middle]);
    let (min1, maj1) = mmkit::page_faults();
    let after = map.residency(..)?;
    let around = map.residency(middle.saturating_sub(64 * page)..(middle + 64 * page).min(map.len()))?;
    s.fact(
        "touch_one_page_resident_pages",
        "after touching 1 byte, resident",
        after.resident_pages(),
        format!(
            "{} pages ({}): read-ahead and fault-around bring neighbours in",
            after.resident_pages(),
            bytes(after.resident_pages() * page as u64)
        ),
    );
    s.fact(
        "touch_one_page_faults",
        "  page faults for that touch",
        serde_json::json!({"minor": min1 - min0, "major": maj1 - maj0}),
        format!("{} minor, {} major", min1 - min0, maj1 - maj0),
    );
    s.fact(
        "touch_one_page_window_resident",
        "  resident within +-64 pages of it",
        around.resident_pages(),
        format!("{} of {}", around.resident_pages(), around.pages()),
    );
    drop(map);

    check_interrupted()?;

    // 2. Sequential scan of a cached file: read() into a 1 MiB buffer vs mapping it.
    read_sum(&mut file, &path)?; // warm the page cache
    let mut t_read = Vec::new();
    let mut t_map = Vec::new();
    let mut t_pop = Vec::new();
    let mut faults = [(0u64, 0u64); 3];
    for _ in 0..3 {
        let f0 = mmkit::page_faults();
        let t = Instant::now();
        let a = read_sum(&mut file, &path)?;
        t_read.push(t.elapsed());
        let f1 = mmkit::page_faults();
        let t = Instant::now();
        let b = map_sum(&file, Populate::No)?;
        t_map.push(t.elapsed());
        let f2 = mmkit::page_faults();
        let t = Instant::now();
        let c = map_sum(&file, Populate::MapPopulate)?;
        t_pop.push(t.elapsed());
        let f3 = mmkit::page_faults();
        anyhow::ensure!(
            a == expected && b == expected && c == expected,
            "checksums differ: read {a}, mmap {b}, populated {c}, expected {expected}"
        );
        faults[0] = (f1.0 - f0.0, f1.1 - f0.1);
        faults[1] = (f2.0 - f1.0, f2.1 - f1.1);
        faults[2] = (f3.0 - f2.0, f3.1 - f2.1);
    }
    let (r, m, p) = (median(t_read), median(t_map), median(t_pop));
    s.fact(
        "scan_read_ns",
        "sequential sum via read() (1 MiB buffer)",
        r.as_nanos() as u64,
        format!("{:>10}  {:>12}  {} minor faults", duration(r), throughput(size, r), faults[0].0),
    );
    s.fact(
        "scan_mmap_ns",
        "  via mmap, demand-paged",
        m.as_nanos() as u64,
        format!(
            "{:>10}  {:>12}  {} minor faults  ({} than read)",
            duration(m),
            throughput(size, m),
            faults[1].0,
            speed_against(r, m)
        ),
    );
    s.fact(
        "scan_mmap_populate_ns",
        "  via mmap, MAP_POPULATE",
        p.as_nanos() as u64,
        format!(
            "{:>10}  {:>12}  {} minor faults  ({} than read)",
            duration(p),
            throughput(size, p),
            faults[2].0,
            speed_against(r, p)
        ),
    );
    s.fact(
        "scan_minor_faults",
        "  minor faults (read, mmap, populate)",
        serde_json::json!([faults[0].0, faults[1].0, faults[2].0]),
        format!("{}, {}, {}", faults[0].0, faults[1].0, faults[2].0),
    );
    s.note("medians of 3 interleaved runs; map and unmap are inside the timed region; the page cache was warm");

    check_interrupted()?;

    // 3. MAP_SHARED vs MAP_PRIVATE across fork and in the file.
    let rw = std::fs::OpenOptions::new().read(true).write(true).open(&path).on("open", &path)?;
    // SAFETY: as above: the file is ours alone, and it is not truncated while mapped.
    let mut shared = unsafe { MapOptions::new().len(page).map_mut(&rw) }?;
    // SAFETY: as above.
    let mut private = unsafe { MapOptions::new().len(page).map_copy(&rw) }?;
    let marker = 0x6d6d_6b69_745f_7477u64; // "mmkit_tw"
    let before_shared = u64::from_ne_bytes(shared[..8].try_into()?);
    mmkit::process::in_forked_child_single_threaded(|| {
        shared[..8].copy_from_slice(&marker.to_ne_bytes());
        private[8..16].copy_from_slice(&marker.to_ne_bytes());
        0
    })
    .context("the file section forks a child to write through both maps")?;
    let shared_seen = u64::from_ne_bytes(shared[..8].try_into()?) == marker;
    let private_seen = u64::from_ne_bytes(private[8..16].try_into()?) == marker;
    shared.flush(..8)?;
    let mut word = [0u8; 8];
    rw.read_exact_at(&mut word, 0).on("pread", &path)?;
    let in_file = u64::from_ne_bytes(word) == marker;
    private[16..24].copy_from_slice(&marker.to_ne_bytes());
    rw.read_exact_at(&mut word, 16).on("pread", &path)?;
    let private_in_file = u64::from_ne_bytes(word) == marker;
    let yes = |b: bool| if b { "yes" } else { "no" };
    s.fact("shared_write_seen_across_fork", "MAP_SHARED: child's write seen by parent", shared_seen, yes(shared_seen));
    s.fact("shared_write_in_file_after_flush", "MAP_SHARED: write in the file after flush", in_file, yes(in_file));
    s.fact(
        "private_write_seen_across_fork",
        "MAP_PRIVATE: child's write seen by parent",
        private_seen,
        yes(private_seen),
    );
    s.fact(
        "private_write_in_file",
        "MAP_PRIVATE: parent's write reached the file",
        private_in_file,
        yes(private_in_file),
    );
    anyhow::ensure!(
        shared_seen && in_file && !private_seen && !private_in_file,
        "the kernel did not behave as MAP_SHARED/MAP_PRIVATE promise (word was {before_shared:#x})"
    );
    s.note("a forked child inherits both maps; its MAP_SHARED store lands in the page cache the parent maps, its MAP_PRIVATE store in its own copy-on-write page");
    Ok(s)
}
