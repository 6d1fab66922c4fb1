//! The README's tour, "Pages your code supplies": its lines as written, on an `image.bin` made
//! here (1 MiB: data, then zeros), with what its comments claim checked: `zstd -d` reads the
//! packed file, a fault decompresses one frame, the snapshot has holes for the zero pages and
//! reads back, the one page written is the one page collected as dirty, and the update lands
//! in the file.
//!
//! ```text
//! cargo run -p mmkit-pager --example tour_pager
//! ```
//!
//! Without userfaultfd at all (a kernel without it, or a seccomp filter) it says so and exits
//! 0; unprivileged users get `UFFD_USER_MODE_ONLY`, which is all this needs.
//! `cargo test -p mmkit-pager --example tour_pager` runs it too (its test calls `main`).

use std::os::unix::fs::FileExt;
use std::sync::Arc;

// The README's first line.
use mmkit_pager::{seekable, snapshot, PagedRegion, SeekableSource};

const LEN: usize = 1 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::env::set_current_dir(dir.path())?;
    // The first half varies byte by byte (compressible, not all zeros); the second half is zeros.
    let image_bytes: Vec<u8> = (0..LEN).map(|i| if i < LEN / 2 { (i * 7 / 3) as u8 } else { 0 }).collect();
    std::fs::write("image.bin", &image_bytes)?;
    if let Err(e) = mmkit_pager::capabilities() {
        println!("tour_pager: skipped: this process cannot open a userfaultfd: {e}");
        return Ok(());
    }

    // --- the README's lines -------------------------------------------------------------
    // A zstd seekable file (standard framing, any `zstd -d` reads it) mapped lazily: a fault
    // decompresses only the 64 KiB frame holding the page.
    seekable::pack("image.bin", "image.zst", &Default::default())?;
    let src = SeekableSource::open("image.zst")?;
    let len = usize::try_from(src.len()).map_err(|_| "image.zst is larger than the address space")?;
    let image = PagedRegion::new(len, src)?;
    let byte = image.as_slice()[123_456]; // blocks only this thread, once per page

    // Snapshots: raw sparse files (holes for zero pages), restored lazily (Firecracker-style).
    let memory = std::fs::read("image.bin")?; // any &[u8]: a Vec, a map, a region's as_slice()
    snapshot::write(&memory, "mem.snap")?;
    let vm = snapshot::restore_lazy("mem.snap", 2)?; // returns at once; 2 handler threads
    let mut buf = [0u8; 64];
    vm.read(0, &mut buf)?; // checked: a failed page is an error

    // Dirty tracking for incremental snapshots: PAGEMAP_SCAN (6.7+), UFFDIO_WRITEPROTECT, soft-dirty.
    let page = mmkit::page_size();
    let mut r = PagedRegion::builder(memory.len()).track_dirty().build(snapshot::SnapshotSource::open("mem.snap")?)?;
    r.as_mut_slice()[page] = 1;
    let dirty = r.collect_dirty()?; // pages [1], and which mechanism ran
    snapshot::update(&r, &dirty, "mem.snap")?;

    // --- end of the README's lines -----------------------------------------------------

    // Seekable: the byte is the image's, one page was supplied, and zstd's own tool agrees.
    assert_eq!(byte, image_bytes[123_456]);
    assert_eq!(image.stats().data_pages, 1, "{:?}", image.stats());
    match std::process::Command::new("zstd").args(["-d", "-q", "-c", "image.zst"]).output() {
        Ok(out) => {
            assert!(out.status.success(), "zstd -d image.zst: {}", String::from_utf8_lossy(&out.stderr));
            assert!(out.stdout == image_bytes, "zstd -d gives back image.bin");
            println!("zstd -d image.zst: the same {} bytes", out.stdout.len());
        }
        Err(e) => println!("(zstd not run: {e})"),
    }
    // One fault decompresses one 64 KiB frame: counted on a source the example keeps a handle to.
    let counted = Arc::new(SeekableSource::open("image.zst")?);
    let len = usize::try_from(counted.len()).map_err(|_| "image.zst is larger than the address space")?;
    let region = PagedRegion::new(len, Arc::clone(&counted))?;
    assert_eq!(region.as_slice()[123_456], image_bytes[123_456]);
    assert_eq!((counted.frames_decompressed(), counted.bytes_decompressed()), (1, 64 << 10));
    println!("one fault: {} frame, {} bytes decompressed", counted.frames_decompressed(), counted.bytes_decompressed());

    // Snapshot: holes where the memory is zero; the lazy restore reads back what was written.
    let info = snapshot::info("mem.snap")?;
    let zero_pages = memory.chunks(page).filter(|p| p.iter().all(|&b| b == 0)).count() as u64;
    assert_eq!(info.hole_pages, zero_pages, "{info:?}");
    assert_eq!(buf[..], memory[..64]);
    assert_eq!(vm.len(), memory.len());

    // Dirty tracking: exactly the page written, and the update wrote it to the file.
    println!("dirty: pages {:?} found by {:?}", dirty.pages, dirty.mechanism);
    assert_eq!(dirty.pages, [1]);
    let mut on_disk = vec![0u8; page];
    std::fs::File::open("mem.snap")?.read_exact_at(&mut on_disk, page as u64)?;
    let mut want = memory[page..2 * page].to_vec();
    want[0] = 1;
    assert!(on_disk == want, "the snapshot's page 1 is the region's");
    println!("tour_pager: ok ({:?})", r.fault_mode());
    Ok(())
}

/// `cargo test` runs the example: the README's lines must compile and do what its comments say.
#[cfg(test)]
#[test]
fn runs_as_the_readme_says() {
    main().unwrap();
}
