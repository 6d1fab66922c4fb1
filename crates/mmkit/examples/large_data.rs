//! Map `large_data.bin` read-only and read it like an array, printing what the kernel shows.
//!
//! ```text
//! cargo run -p mmkit --example large_data [PATH]     # default: large_data.bin (created if missing)
//! ```
//!
//! The file is dropped from the page cache first (`POSIX_FADV_DONTNEED`), so the numbers show
//! demand paging: a fresh map has no resident pages, one read brings in a few (the kernel reads
//! ahead and maps neighbours, "fault-around"), and a full scan brings in all of them.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;

use mmkit::{Mmap, Residency};

const WORDS: u64 = 8 << 20; // 64 MiB of u64 words when the file is created here

fn show(what: &str, r: &Residency, faults: (u64, u64)) {
    println!(
        "{what:<34} {:>6} of {} pages resident ({:>5.1}%), page faults so far: {} minor, {} major",
        r.resident_pages(),
        r.pages(),
        r.fraction() * 100.0,
        faults.0,
        faults.1
    );
}

fn maps_line(addr: usize) -> String {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .find(|l| l.split('-').next().and_then(|a| usize::from_str_radix(a, 16).ok()) == Some(addr))
        .unwrap_or("(not found)")
        .to_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "large_data.bin".to_owned());
    if std::fs::metadata(&path).is_err() {
        println!("creating {path}: {WORDS} u64 words (element i holds i * 3)");
        let mut f = std::io::BufWriter::new(File::create(&path)?);
        for i in 0..WORDS {
            f.write_all(&(i * 3).to_ne_bytes())?;
        }
        f.into_inner()?.sync_all()?;
    }
    let file = File::open(&path)?;
    // Drop the file's clean pages from the page cache so the map starts cold.
    // SAFETY: plain syscall on a valid descriptor.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };

    // SAFETY: nobody truncates or rewrites the file while it is mapped.
    let map = unsafe { Mmap::map(&file) }?;
    println!("mapped {path}: {} bytes at {:p}, page size {}", map.len(), map.as_ptr(), mmkit::page_size());
    println!("/proc/self/maps: {}", maps_line(map.mapping().kernel_region().0));
    show("before touching:", &map.residency(..)?, mmkit::page_faults());

    // Read it like an array: a typed view (size and alignment checked), indexed directly.
    let words: &[u64] = match map.as_slice_of::<u64>() {
        Ok(w) => w,
        Err(e) => {
            println!("not a whole number of u64 words ({e}); reading bytes instead");
            let middle = map.len() / 2;
            println!("byte[{middle}] = {}", map[middle]);
            show("after reading one byte:", &map.residency(..)?, mmkit::page_faults());
            return Ok(());
        }
    };
    let middle = words.len() / 2;
    println!("words[{middle}] = {}", words[middle]);
    show("after reading one element:", &map.residency(..)?, mmkit::page_faults());

    let sum = words.iter().fold(0u64, |s, &w| s.wrapping_add(w));
    println!("sum of all {} elements = {sum}", words.len());
    show("after reading every element:", &map.residency(..)?, mmkit::page_faults());
    Ok(())
}
