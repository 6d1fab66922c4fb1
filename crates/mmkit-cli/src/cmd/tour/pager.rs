//! The tour's pager section, "pages the kernel cannot map": a compressed file mapped lazily
//! (bytes touched vs bytes decompressed), a snapshot restored lazily (time to first access vs
//! an eager read), and the dirty pages found after writes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use mmkit::page_size;
use mmkit_pager::seekable::{self, PackOptions};
use mmkit_pager::{snapshot, PagedRegion, SeekableSource};

use super::Args;
use crate::cli::report::{duration, Section};
use crate::cli::size::bytes;

/// Text-like bytes that compress about as well as real data (not one repeated byte).
/// Fails rather than aborting when the memory cannot be had (a low `ulimit -v`).
fn realistic(len: usize) -> anyhow::Result<Vec<u8>> {
    let words: &[&[u8]] = &[b"page ", b"fault ", b"kernel ", b"mapping ", b"0x7f3a ", b"snapshot ", b"\n"];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::new();
    out.try_reserve_exact(len + 16).map_err(|e| {
        anyhow::anyhow!("cannot allocate the {len}-byte sample image ({e}): lower --size, or raise `ulimit -v`")
    })?;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize]);
        if x.is_multiple_of(5) {
            out.extend_from_slice(&x.to_le_bytes()[..4]);
        }
    }
    out.truncate(len);
    Ok(out)
}

/// The length of the section's image and snapshot: `--size`, at most 64 MiB, at least 64 pages.
fn image_len(size: u64) -> usize {
    let page = page_size();
    (size.min(64 << 20) as usize).max(64 * page) / page * page
}

/// Bytes the section writes in the temporary directory: the image, its compressed copy (about
/// as large at worst) and the snapshot.
pub fn disk_needed(size: u64) -> u64 {
    3 * image_len(size) as u64
}

/// The section's title (also shown when it fails).
pub const TITLE: &str = "Pages the kernel cannot map: userfaultfd regions whose pages code supplies";

/// Builds the `pager` section.
pub fn section(args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("pager", TITLE);
    let caps = match mmkit_pager::capabilities() {
        Ok(c) => c,
        Err(e) => {
            s.fact("available", "userfaultfd available", false, "no");
            s.note(format!("{e}"));
            return Ok(s);
        }
    };
    let page = page_size();
    s.fact("fault_mode", "fault mode", format!("{:?}", caps.mode), format!("{:?} (via {:?})", caps.mode, caps.via));
    s.detail("fault_via", format!("{:?}", caps.via));
    s.fact(
        "poison",
        "UFFDIO_POISON for failed pages",
        caps.poison(),
        if caps.poison() { "yes" } else { "no: PROT_NONE fence" },
    );
    let best = mmkit_pager::DirtyMechanism::best(&caps);
    s.fact("dirty_mechanism", "dirty tracking mechanism", best.name(), best.name());

    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .map_err(|e| crate::cli::io::io_error_no_path("mkdir", e))
    .context("creating the pager section's temporary directory")?;
    let len = image_len(args.size);

    // 1. A compressed file mapped lazily.
    let raw = dir.path().join("image.bin");
    let packed = dir.path().join("image.zst");
    // The error names where a refused write started (`ulimit -f`, a full disk), as the file
    // section's does.
    let image = realistic(len)?;
    std::fs::File::create(&raw)
        .map_err(|e| crate::cli::io::io_error("open", &raw, e))
        .and_then(|mut f| crate::cli::io::write_all_at(&mut f, &raw, &image, 0))
        .context("writing the pager section's image")?;
    drop(image);
    let info = seekable::pack(&raw, &packed, &PackOptions::default())?;
    let source = Arc::new(SeekableSource::open(&packed)?);
    let region = PagedRegion::new(len, source.clone())?;
    let touches = 16;
    let mut x: u64 = 12345;
    let mut sum = 0u64;
    for _ in 0..touches {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        sum += region.as_slice()[(x >> 11) as usize % len] as u64;
    }
    std::hint::black_box(sum);
    s.fact(
        "compressed_file",
        "compressed file (zstd seekable)",
        info.output_bytes,
        format!("{} -> {} in {} frames", bytes(info.input_bytes), bytes(info.output_bytes), info.frames),
    );
    s.detail("uncompressed_file", info.input_bytes);
    s.detail("compressed_frames", info.frames);
    s.fact(
        "bytes_touched",
        "  pages touched at random",
        (touches * page) as u64,
        format!("{touches} pages = {}", bytes((touches * page) as u64)),
    );
    s.detail("pages_touched", touches as u64);
    s.fact(
        "bytes_decompressed",
        "  bytes decompressed for them",
        source.bytes_decompressed(),
        format!("{} ({} frames of {})", bytes(source.bytes_decompressed()), source.frames_decompressed(), info.frames),
    );
    s.detail("frames_decompressed", source.frames_decompressed());
    drop(region);

    // 2. A snapshot restored lazily vs eagerly.
    let mut mem = mmkit::MapOptions::new().len(len).map_anon()?;
    for i in (0..len).step_by(page) {
        mem[i..i + 8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    let snap = dir.path().join("mem.snap");
    snapshot::write(&mem, &snap)?;
    drop(mem);
    let _ = mmkit::inspect::evict(&snap);
    let t = Instant::now();
    let lazy = snapshot::restore_lazy(&snap, 1)?;
    let first = lazy.as_slice()[len / 2];
    let lazy_first = t.elapsed();
    std::hint::black_box(first);
    let _ = mmkit::inspect::evict(&snap);
    let t = Instant::now();
    let eager = snapshot::restore_eager(&snap)?;
    let eager_first = t.elapsed();
    std::hint::black_box(eager[len / 2]);
    s.fact("snapshot_bytes", "snapshot", len as u64, bytes(len as u64));
    s.fact(
        "lazy_first_access_ns",
        "  lazy restore: first access after",
        lazy_first.as_nanos() as u64,
        duration(lazy_first),
    );
    s.fact(
        "eager_first_access_ns",
        "  eager restore: first access after",
        eager_first.as_nanos() as u64,
        duration(eager_first),
    );
    s.fact(
        "lazy_pages_read",
        "  pages the lazy restore read",
        lazy.stats().data_pages,
        format!("{} of {}", lazy.stats().data_pages, len / page),
    );
    drop((lazy, eager));

    // 3. Dirty pages after writes.
    let mut region = PagedRegion::builder(len).track_dirty().build(mmkit_pager::ZeroSource)?;
    let written: Vec<usize> = (0..10).map(|k| (k * 37 + 5) % (len / page)).collect();
    for &p in &written {
        region.as_mut_slice()[p * page] = 1;
    }
    let _ = region.as_slice()[page * 3 + 1]; // a read: not dirty
    let dirty = region.collect_dirty()?;
    s.fact("pages_written", "pages written after the start", written.len() as u64, written.len().to_string());
    s.fact(
        "dirty_pages_found",
        "  dirty pages found",
        dirty.pages.len() as u64,
        format!("{} by {}", dirty.pages.len(), dirty.mechanism.name()),
    );
    s.detail("dirty_pages_found_by", dirty.mechanism.name());
    s.note("A fault on a missing page stops only the faulting thread while a handler thread supplies the page (UFFDIO_COPY).");
    s.note(
        "Time to first access of a lazy restore is one page's read; an eager restore reads the whole snapshot first.",
    );
    Ok(s)
}
