//! The README's tour, "File-backed maps": its lines as written, run on a file made here, with
//! what its comments claim checked against the kernel.
//!
//! ```text
//! cargo run -p mmkit --example tour_file
//! ```
//!
//! `cargo test -p mmkit --example tour_file` runs it too (its test calls `main`), as root and,
//! in `scripts/test`, as uid 65534.

use std::io::Write;

// The README's first line.
use mmkit::{Advice, MapOptions, Mmap, Populate};

const WORDS: usize = 1 << 20; // 8 MiB of u64 words: several scan batches (2 MiB each on x86-64)

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The input: large_data.bin in a fresh directory, word i holding i.
    let dir = tempfile::tempdir()?;
    std::env::set_current_dir(dir.path())?;
    let expected: Vec<u8> = (0..WORDS as u64).flat_map(|w| w.to_ne_bytes()).collect();
    std::fs::File::create("large_data.bin")?.write_all(&expected)?;
    let page = mmkit::page_size();

    // --- the README's lines -------------------------------------------------------------
    let file = std::fs::File::open("large_data.bin")?;
    // SAFETY: nobody truncates or rewrites the file while it is mapped (see `mmkit::file`).
    let map = unsafe { Mmap::map(&file) }?;
    println!("{} of {} pages resident", map.residency(..)?.resident_pages(), map.residency(..)?.pages());
    map.advise(.., Advice::Sequential)?; // range operations are bounds-checked
    let words: &[u64] = map.as_slice_of::<u64>()?; // zero-copy typed view (zerocopy)

    // Sequential reads: chunks of a batch-populated map, each batch probed before it is read:
    // a file shrunk between batches ends the scan with ErrorKind::Truncated (a shrink inside the
    // batch being read still raises SIGBUS). `scan_ahead` populates on a helper thread.
    let sum: u64 =
        map.scan(.., 1 << 20)?.map(|c| Ok(c?.iter().map(|&b| b as u64).sum::<u64>())).sum::<mmkit::Result<u64>>()?;

    // Any offset works: an unaligned one maps the page below and exposes only your bytes.
    // SAFETY: as for `map`: the file stays as it is while `tail` lives.
    let tail = unsafe { MapOptions::new().offset(12345).len(100).populate(Populate::Read).map(&file) }?;

    // Safe routes when others may shrink the file: raw maps and truncation-safe copies...
    let raw = MapOptions::new().map_raw_read_only(&file)?;
    let mut buf = [0u8; 64];
    raw.copy_from_mapping(0, &mut buf)?; // SIGBUS becomes ErrorKind::Truncated

    // ...and sealed memfds (below).

    // --- end of the README's lines -----------------------------------------------------

    // What the comments claim.
    let pages = expected.len().div_ceil(page) as u64;
    assert_eq!(map.residency(..)?.pages(), pages, "residency counts the map's pages");
    // Bounds-checked: a range past the end is an error, not a wild madvise.
    let err = map.advise(..expected.len() + 1, Advice::Sequential).unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::OutOfBounds, "{err}");
    // The typed view is the file's bytes, without a copy.
    assert_eq!(words.len(), WORDS);
    assert_eq!(words.as_ptr() as *const u8, map.as_ptr());
    assert!(words.iter().enumerate().all(|(i, &w)| w == i as u64), "word i holds i");
    let want: u64 = expected.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(sum, want, "the scan saw every byte once");
    assert_eq!(map.residency(..)?.resident_pages(), pages, "the scan populated every page");
    // The unaligned map exposes exactly bytes 12345..12445, populated up front.
    assert_eq!(tail.len(), 100);
    assert_eq!(&tail[..], &expected[12345..12445]);
    assert_eq!(tail.residency(..)?.resident_pages(), tail.residency(..)?.pages(), "Populate::Read");
    assert_eq!(buf[..], expected[..64]);

    // The raw map's promise: once the file shrinks, the copy is an error, not SIGBUS. (The
    // references into `map` and `tail` are dropped first: their contract forbids shrinking.)
    drop((tail, map));
    std::fs::OpenOptions::new().write(true).open("large_data.bin")?.set_len(0)?;
    let err = raw.copy_from_mapping(0, &mut buf).unwrap_err();
    assert_eq!(err.kind(), mmkit::ErrorKind::Truncated, "{err}");
    println!("after the file shrank: {err}");
    println!("tour_file: ok");
    Ok(())
}

/// `cargo test` runs the example: the README's lines must compile and do what its comments say.
#[cfg(test)]
#[test]
fn runs_as_the_readme_says() {
    main().unwrap();
}
