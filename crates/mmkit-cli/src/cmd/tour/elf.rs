//! The tour's `elf` section: build a small library with gcc, store it page-aligned in an APK,
//! load it from the APK without extracting it, call it, and count the pages that became
//! resident; then shared RELRO between processes (see [`relro`]).

// One of the modules with `unsafe`: the tour shows mmkit's `unsafe` calls as a user writes them.
#![allow(unsafe_code)]

use super::{check_interrupted, Args};
use crate::cli::io::IoResultExt;
use crate::cli::report::{duration, Section};
use crate::cli::size::bytes;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod relro;

/// The library: two functions, one table lookup, and 1 MiB of read-only data that the calls
/// never touch (so most of the library should stay out of memory).
const SOURCE: &str = r#"
#include <stdint.h>
#define N (1 << 17)
static const int64_t table[N] = { [0] = 1, [1] = 2, [N - 1] = 3 };
#define SCRATCH (1 << 12) /* words of .bss: 32 KiB, several pages at any page size */
static int64_t scratch[SCRATCH];
int64_t tour_add(int64_t a, int64_t b) { return a + b; }
int64_t tour_fib(int64_t n) { int64_t a = 0, b = 1; while (n-- > 0) { int64_t t = a + b; a = b; b = t; } return a; }
int64_t tour_lookup(int64_t i) { scratch[i & (SCRATCH - 1)] += 1; return table[i & (N - 1)] + scratch[i & (SCRATCH - 1)]; }
"#;

const ENTRY: &str = "lib/x86_64/libtour.so";

fn build_library(dir: &Path, page: u64) -> anyhow::Result<PathBuf> {
    let src = dir.join("tour.c");
    std::fs::write(&src, SOURCE).on("write", &src)?;
    let out = dir.join("libtour.so");
    // Linked for Android's 16 KiB pages at least (the tour plans it for 16 KiB too).
    let max_page = page.max(16 << 10);
    let output = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-O2", &format!("-Wl,-z,max-page-size={max_page}"), "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "which is not installed (install gcc)",
                _ => "which could not be run",
            };
            crate::cli::io::io_error("exec", Path::new("gcc"), e)
                .context(format!("the elf section builds a small library with gcc, {why}"))
        })?;
    if !output.status.success() {
        // Ctrl-C at a terminal reaches gcc too: say that, not how gcc died.
        check_interrupted()?;
        // One line, as every mmkit error: gcc's messages joined.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        anyhow::bail!("gcc failed to build the tour library ({}): {}", output.status, said.join("; "));
    }
    Ok(out)
}

/// Writes an APK-shaped zip: the library stored (not deflated) and aligned to the page size
/// with extra-field padding, as `zipalign -p` does.
fn build_apk(path: &Path, so: &[u8], page: u64) -> anyhow::Result<()> {
    let align = u16::try_from(page).context("page size too large for zip alignment padding")?;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).on("create", path)?);
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let zip_error = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(e) => crate::cli::io::io_error("write", path, e),
        e => anyhow::Error::new(e).context(format!("writing {}", path.display())),
    };
    zip.start_file("AndroidManifest.xml", stored).map_err(zip_error)?;
    zip.write_all(b"<manifest package=\"dev.mmkit.tour\"/>").on("write", path)?;
    zip.start_file("classes.dex", stored).map_err(zip_error)?;
    zip.write_all(&[0u8; 1000]).on("write", path)?;
    zip.start_file(ENTRY, stored.with_alignment(align)).map_err(zip_error)?;
    zip.write_all(so).on("write", path)?;
    zip.finish().map_err(zip_error)?.sync_all().on("fsync", path)?;
    Ok(())
}

/// The block device read-ahead of the temp dir's disk, if it can be found (for the note).
fn read_ahead() -> String {
    let sizes: Vec<u64> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("queue/read_ahead_kb")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    match sizes.iter().max() {
        Some(kb) => format!("read_ahead_kb is up to {kb} here"),
        None => "see /sys/block/*/queue/read_ahead_kb".to_owned(),
    }
}

/// The section's title (also shown when it fails).
pub const TITLE: &str = "ELF from an APK: mapped in place, paged on demand";

/// Builds the `elf` section.
pub fn section(args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("elf", TITLE);
    let page = mmkit_elf::page_size();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    // The library is mapped with PROT_EXEC from a file in `base`, which a noexec mount refuses
    // (mmap: EPERM, naming neither the mount nor --dir).
    if rustix::fs::statvfs(&base).is_ok_and(|v| v.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC)) {
        anyhow::bail!(
            "{} is on a file system mounted noexec, where the library the elf section builds cannot be mapped executable; use another --dir",
            base.display()
        );
    }
    // A fresh directory inside an existing one (removed with everything in it on drop): never
    // a predictable name, never parents created that would stay behind.
    let dir = tempfile::Builder::new()
        .prefix("mmkit-tour-elf-")
        .tempdir_in(&base)
        .map_err(|e| crate::cli::io::io_error_no_path("mkdir", e))
        .with_context(|| format!("creating a temporary directory in {}", base.display()))?;
    let so_path = build_library(dir.path(), page)?;
    check_interrupted()?;
    let so = std::fs::read(&so_path).on("read", &so_path)?;
    let apk = dir.path().join("tour.apk");
    build_apk(&apk, &so, page)?;
    let apk_len = std::fs::metadata(&apk).on("stat", &apk)?.len();
    // Drop the APK from the page cache so residency shows what loading and calling bring in.
    let file = std::fs::File::open(&apk).on("open", &apk)?;
    let evicted = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).is_ok();
    drop(file);

    let spec = format!("{}!/{ENTRY}", apk.display());
    let source = mmkit_elf::Source::parse(&spec);
    let opened = source.open(page)?;
    let plan = mmkit_elf::plan_source(&opened, page)?;
    s.fact("page_size", "page size (from the kernel)", page, bytes(page));
    s.fact(
        "library",
        "library built with gcc",
        so.len() as u64,
        format!(
            "{} ({} pages), {} PT_LOAD segments",
            bytes(so.len() as u64),
            (so.len() as u64).div_ceil(page),
            plan.segments.len()
        ),
    );
    s.detail("load_segments", plan.segments.len() as u64);
    s.fact(
        "entry_offset",
        "stored in the APK at",
        opened.offset(),
        format!("offset {:#x} of the {} APK (page-aligned, not compressed)", opened.offset(), bytes(apk_len)),
    );
    s.detail("apk_size", apk_len);
    drop(opened);

    let t0 = Instant::now();
    // SAFETY: we just built this library from the source above; its code is trusted.
    let lib = unsafe { mmkit_elf::Library::open(source) }.context("loading the tour library from the APK")?;
    let load_time = t0.elapsed();
    s.fact("load_time_ns", "loaded from the APK in", load_time.as_nanos() as u64, duration(load_time));

    // SAFETY: the three functions are `int64_t f(int64_t[, int64_t])`, as in SOURCE.
    let (add, fib, lookup) = unsafe {
        (
            lib.symbol::<extern "C" fn(i64, i64) -> i64>("tour_add")?,
            lib.symbol::<extern "C" fn(i64) -> i64>("tour_fib")?,
            lib.symbol::<extern "C" fn(i64) -> i64>("tour_lookup")?,
        )
    };
    let results = (add(2, 40), fib(50), lookup(1));
    anyhow::ensure!(results == (42, 12_586_269_025, 3), "the tour library computed {results:?}");
    s.fact(
        "calls",
        "calls",
        serde_json::json!({"tour_add(2,40)": results.0, "tour_fib(50)": results.1, "tour_lookup(1)": results.2}),
        format!("tour_add(2, 40) = {}, tour_fib(50) = {}, tour_lookup(1) = {}", results.0, results.1, results.2),
    );

    let maps = lib.segments()?;
    let mapped: u64 = maps.iter().filter(|m| m.kind != mmkit_elf::MappingKind::Gap).map(|m| m.pages).sum();
    let resident: u64 = maps.iter().map(|m| m.resident_pages).sum();
    let present: u64 = maps.iter().map(|m| m.present_pages).sum();
    s.fact(
        "resident_pages",
        "in this process after load + calls",
        serde_json::json!({"present": present, "cached": resident, "mapped": mapped}),
        format!(
            "{present} of {mapped} pages mapped in ({}; /proc/self/pagemap); {resident} in the page cache (mincore)",
            bytes(present * page)
        ),
    );
    for m in &maps {
        if m.kind == mmkit_elf::MappingKind::Gap {
            continue;
        }
        let what = match m.kind {
            mmkit_elf::MappingKind::Segment { .. } => "file",
            mmkit_elf::MappingKind::Relro { .. } => "file, RELRO",
            mmkit_elf::MappingKind::Bss { .. } => ".bss, anonymous",
            mmkit_elf::MappingKind::Gap => "",
        };
        s.fact(
            &format!("mapping_{:x}", m.start - lib.span().0),
            &format!("  {}p +{:#x}", m.prot.rwx(), m.start - lib.span().0),
            serde_json::json!({"prot": format!("{}p", m.prot.rwx()), "kind": what, "pages": m.pages,
                "present": m.present_pages, "cached": m.resident_pages, "offset": m.file_offset}),
            format!(
                "{:>4} pages, {:>4} mapped in, {:>4} cached  ({what}{})",
                m.pages,
                m.present_pages,
                m.resident_pages,
                m.file_offset.map(|o| format!(" at APK offset {o:#x}")).unwrap_or_default()
            ),
        );
    }
    let verified = lib.verify();
    s.fact(
        "verified",
        "checked against /proc/self/maps",
        verified.is_ok(),
        match &verified {
            Ok(()) => "every page mapped as planned, from the APK's inode at the planned offsets".to_owned(),
            Err(e) => format!("MISMATCH: {e}"),
        },
    );
    drop(lib);
    check_interrupted()?;
    relro::step(&mut s, dir.path(), page)?;
    s.note("Like Android's linker, mmkit-elf reads only the ELF headers, then maps each PT_LOAD segment MAP_PRIVATE straight from the APK at (entry offset + p_offset): nothing is extracted or copied.");
    s.note("That only works because the entry is stored (not deflated) and its data starts on a page boundary; the loader refuses anything else with an explicit error.");
    if evicted {
        s.note(format!("The APK was evicted from the page cache first. Pages mapped in are what loading, relocating and three calls faulted into this process (plus fault-around); the 1 MiB table is never read. The page-cache count also holds what the kernel read ahead around those faults ({}).", read_ahead()));
    } else {
        s.note("The APK could not be evicted from the page cache, so resident counts include pages cached when it was written.");
    }
    s.note(format!(
        "Try: mmkit elf plan 'APK!/{ENTRY}' --page-size 16k  (the plan for 16 KiB pages, as on recent Android devices)"
    ));
    Ok(s)
}
