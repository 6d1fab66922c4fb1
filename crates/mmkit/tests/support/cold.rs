//! Page-cache eviction for the file tests (shared by `file.rs` and `scan.rs`).

use std::fs::File;
use std::os::fd::AsRawFd;

use mmkit::MapOptions;

/// Drops the file's clean pages from the page cache (`fsync` then `POSIX_FADV_DONTNEED`) until
/// `mincore` shows none, so the file is cold. A fresh temp file is mapped by nobody else, so
/// this converges; it is retried because write-back may still hold a page for a moment.
pub fn make_cold(file: &File) {
    file.sync_all().unwrap();
    for _ in 0..50 {
        // SAFETY: plain syscall on a valid fd.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let probe = MapOptions::new().map_raw_read_only(file).unwrap();
        if probe.residency(..).unwrap().resident_pages() == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!(
        "could not evict a test file under {} from the page cache (is the target dir on tmpfs?)",
        env!("CARGO_TARGET_TMPDIR")
    );
}
