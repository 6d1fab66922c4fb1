//! The README's tour, "Loading a library from an APK without extracting it": its lines as
//! written, on an `app.apk` made here: `libfoo.so` (compiled with `gcc` now) stored
//! uncompressed and page-aligned under `lib/x86_64/`, as Android's packager stores native
//! libraries. Checked: `add` answers, and the library's pages are mapped from the APK itself
//! (`/proc/self/maps`), not from an extracted copy.
//!
//! ```text
//! cargo run -p mmkit-elf --example tour_apk
//! ```
//!
//! Without `gcc` it says so and exits 0. `cargo test -p mmkit-elf --example tour_apk` runs it
//! too (its test calls `main`).

use std::io::Write;
use std::process::Command;

const LIBFOO_C: &str = "#include <stdint.h>\nint64_t add(int64_t a, int64_t b) { return a + b; }\n";

/// The `/proc/self/maps` line of the mapping that starts at `addr`.
fn maps_line(addr: u64) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let line = maps.lines().find(|l| l.split('-').next().and_then(|a| u64::from_str_radix(a, 16).ok()) == Some(addr));
    line.unwrap_or("(not found)").to_owned()
}

/// Builds `app.apk` in the current directory: a manifest first (so the library's offset is not
/// aligned by accident), then `lib/x86_64/libfoo.so`, stored and aligned to the page size.
/// `Ok(false)` when there is no C compiler.
fn build_apk() -> Result<bool, Box<dyn std::error::Error>> {
    std::fs::write("libfoo.c", LIBFOO_C)?;
    match Command::new("gcc").args(["-shared", "-fPIC", "-O2", "-o", "libfoo.so", "libfoo.c"]).status() {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("gcc failed to build libfoo.so: {status}").into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("running gcc: {e}").into()),
    }
    let so = std::fs::read("libfoo.so")?;
    let page = u16::try_from(mmkit_elf::page_size())?;
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut apk = zip::ZipWriter::new(std::fs::File::create("app.apk")?);
    apk.start_file("AndroidManifest.xml", stored)?;
    apk.write_all(b"<manifest/>")?;
    apk.start_file("lib/x86_64/libfoo.so", stored.with_alignment(page))?;
    apk.write_all(&so)?;
    apk.finish()?;
    // Only the APK is left: the library cannot come from anywhere else.
    std::fs::remove_file("libfoo.so")?;
    Ok(true)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::env::set_current_dir(dir.path())?;
    if !build_apk()? {
        println!("tour_apk: skipped: no gcc to build libfoo.so");
        return Ok(());
    }

    // --- the README's lines -------------------------------------------------------------
    // SAFETY: loading runs the library's constructors; it must be a trusted library.
    let lib = unsafe { mmkit_elf::Library::open("app.apk!/lib/x86_64/libfoo.so") }?;
    // SAFETY: `add` is `int64_t add(int64_t, int64_t)` (LIBFOO_C).
    let add = unsafe { lib.symbol::<extern "C" fn(i64, i64) -> i64>("add") }?;
    println!("{}", add(2, 40));
    lib.verify()?; // mappings match /proc/self/maps

    // --- end of the README's lines -----------------------------------------------------

    assert_eq!(add(2, 40), 42);
    let apk = std::fs::canonicalize("app.apk")?;
    let segments = lib.segments()?;
    let from_file: Vec<_> = segments.iter().filter(|m| m.file_offset.is_some()).collect();
    assert!(!from_file.is_empty(), "no segment is mapped from a file: {segments:?}");
    for m in from_file {
        let line = maps_line(m.start);
        println!("{line}");
        assert!(
            line.ends_with(&apk.display().to_string()),
            "segment at {:#x} is not mapped from the APK: {line}",
            m.start
        );
    }
    println!("tour_apk: ok");
    Ok(())
}

/// `cargo test` runs the example: the README's lines must compile and do what its comments say.
#[cfg(test)]
#[test]
fn runs_as_the_readme_says() {
    main().unwrap();
}
