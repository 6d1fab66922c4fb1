//! Page-cache residency of a file or a mapping, page by page (`mincore(2)`).

#![deny(unsafe_code)]

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::residency::{PageBitmap, Residency};
use crate::sys::inspect::Window;

/// Residency of the file at `path`, page by page.
///
/// Maps the file read-only in windows of at most [`WINDOW`](super::WINDOW) bytes and asks
/// `mincore(2)`. An empty file has 0 pages. Looking does not change residency. A sparse file
/// larger than a window has the windows `cachestat(2)` finds empty skipped (Linux 6.5+, a
/// file the caller may write), so a terabyte file with a few pages cached costs one system
/// call per window; the bitmap still costs a bit per page (32 MiB per terabyte at 4 KiB
/// pages, left as untouched zero pages where no bit is set).
pub fn residency(path: impl AsRef<Path>) -> Result<Residency> {
    let path = path.as_ref();
    let (file, len) = open(path)?;
    residency_of_len(&file, len).map_err(|e| e.with_path(path))
}

/// Residency of an open file (see [`residency`]).
pub fn residency_of_file(file: &File) -> Result<Residency> {
    residency_of_len(file, regular_file_len(file)?)
}

/// The smallest window [`residency_of_len`] falls back to when the address space left
/// (`RLIMIT_AS`) has no room for a whole [`WINDOW`](super::WINDOW).
const MIN_WINDOW: u64 = 1 << 20;

/// Residency of an open regular file of `len` bytes.
pub(crate) fn residency_of_len(file: &File, len: u64) -> Result<Residency> {
    residency_mapping_with(file, len, |file, offset, len| Window::map(file, offset, len))
}

/// [`residency_of_len`] with `map` for [`Window::map`] (a test counts its calls and fails them).
fn residency_mapping_with(
    file: &File,
    len: u64,
    mut map: impl FnMut(&File, u64, usize) -> std::result::Result<Window, rustix::io::Errno>,
) -> Result<Residency> {
    let page = crate::page::page_size() as u64;
    let pages = len.div_ceil(page);
    let mut bitmap = PageBitmap::try_new(pages).ok_or_else(|| {
        Error::from_raw_errno("residency", libc::ENOMEM)
            .with_range(0, len)
            .with_detail(format!("no memory for a bitmap of {pages} pages"))
    })?;
    let mut window = super::WINDOW - super::WINDOW % page;
    let mut vec = vec![0u8; (window.min(pages * page) / page) as usize];
    // A sparse file of more than one window (a petabyte file on tmpfs with a few pages
    // written) would cost a mapping and a `mincore` of every window, holes included: ask
    // `cachestat(2)` first and skip the windows with nothing cached. Only for sparse files (a
    // dense one's windows are mostly worth mapping) and until the kernel refuses (`ENOSYS`;
    // `EPERM` for a file the caller cannot write).
    let mut skip_empty = len > window && is_sparse(file, len);
    let mut offset = 0;
    while offset < len {
        let this = (len - offset).min(window);
        let this_pages = this.div_ceil(page) as usize;
        if skip_empty {
            match crate::sys::inspect::cachestat(file, offset, this_pages as u64 * page) {
                Ok(raw) if raw.nr_cache == 0 => {
                    offset += this;
                    continue;
                }
                Ok(_) => {}
                Err(_) => skip_empty = false,
            }
        }
        let w = match map(file, offset, this as usize) {
            Ok(w) => w,
            // Address space short of a window (`ulimit -v`): smaller windows, down to 1 MiB,
            // halved from what this one mapped (a file smaller than the window would map the
            // same length again), and only while they can be smaller than it.
            Err(rustix::io::Errno::NOMEM) if this > MIN_WINDOW.max(page) => {
                window = (this / 2).max(MIN_WINDOW.max(page)) / page * page;
                continue;
            }
            Err(e) => {
                let err = Error::os("mmap", e).with_range(offset, this);
                return Err(crate::mapping::with_memory_limits(err, e, this as usize, false));
            }
        };
        w.mincore(&mut vec[..this_pages]).map_err(|e| Error::os("mincore", e).with_range(offset, this))?;
        bitmap.fill_from_mincore(offset / page, &vec[..this_pages]);
        offset += this;
    }
    Ok(Residency::from_bitmap(page, len, bitmap))
}

/// Whether the file has fewer blocks allocated than its length needs (holes).
fn is_sparse(file: &File, len: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.blocks().saturating_mul(512) < len)
}

/// Residency of all the pages spanned by a mapping of this process.
///
/// The same answer as [`Mapping::residency(..)`](crate::Mapping::residency), kept here beside
/// [`residency`] of a file; both return the one [`Residency`] type. An empty mapping has 0
/// pages.
pub fn residency_of_mapping(map: &crate::Mapping) -> Result<Residency> {
    map.residency(..)
}

/// Opens the regular file at `path` read-only, never blocking, and returns it with its length
/// (see [`crate::open`]). The descriptor keeps `O_NONBLOCK`, which a regular file ignores
/// (`open(2)`); these functions only map it, ask the kernel about it and read it, and a tree of
/// 10,000 small files is mostly such per-file calls: two `fcntl(2)` and one `fstat(2)` fewer
/// each.
pub(crate) fn open(path: &Path) -> Result<(File, u64)> {
    crate::open::open_regular_nonblocking_with_metadata(path).map(|(file, meta)| (file, meta.len()))
}

/// The size of a regular file; an error for directories, devices, pipes...
pub(crate) fn regular_file_len(file: &File) -> Result<u64> {
    let meta = file.metadata().map_err(|e| Error::from_io("fstat", &e))?;
    if !meta.is_file() {
        return Err(crate::open::not_regular("residency", &meta));
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    /// A 64 TiB file on tmpfs with three pages written: 65,536 windows, of which three hold a
    /// page. Mapping and asking `mincore` about every hole took minutes (about 1 ms a window);
    /// the windows `cachestat` says are empty are skipped. Run in a thread and given up on
    /// (failing) after 60 s rather than hanging the test binary.
    #[test]
    #[cfg(target_pointer_width = "64")] // the 2 GiB bitmap
    fn a_huge_sparse_file_skips_its_empty_windows() {
        use std::os::unix::fs::FileExt;
        let Ok(f) = tempfile::NamedTempFile::new_in("/dev/shm") else { return };
        let page = crate::page::page_size() as u64;
        if crate::sys::inspect::cachestat(f.as_file(), 0, page).is_err() {
            return; // no cachestat (kernels before 6.5, qemu-user): every window is mapped
        }
        let len = 64u64 << 40;
        if f.as_file().set_len(len).is_err() {
            return; // a file system that cannot hold a file this large
        }
        let at = [0, 40u64 << 40, len - page];
        for &o in &at {
            f.as_file().write_all_at(b"x", o).unwrap();
        }
        let path = f.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(residency(&path).map_err(|e| e.to_string())));
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("residency of a 64 TiB sparse file did not finish in 60 s")
            .unwrap();
        assert_eq!(r.pages(), len / page);
        assert_eq!(r.resident_pages(), 3);
        for &o in &at {
            assert!(r.bitmap().get(o / page), "page at {o:#x} resident");
        }
        assert!(!r.bitmap().get(1));
    }

    #[test]
    fn empty_file_has_no_pages() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let r = residency(f.path()).unwrap();
        assert_eq!((r.pages(), r.resident_pages(), r.len()), (0, 0, 0));
        assert!(r.is_empty());
    }

    #[test]
    fn directory_is_an_error_with_its_path() {
        let d = tempfile::tempdir().unwrap();
        let e = residency(d.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.path(), Some(d.path()));
        let e = residency(d.path().join("missing")).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn fifos_sockets_and_devices_are_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let sock = d.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        // Before the fix the FIFO's open(2) waited for a writer forever: run in a thread and
        // give up (failing) after a while instead of hanging the test binary.
        let (tx, rx) = std::sync::mpsc::channel();
        let paths = [fifo.clone(), sock.clone(), "/dev/null".into(), d.path().into()];
        std::thread::spawn(move || {
            for p in paths {
                let r = residency(&p).map(|_| ()).map_err(|e| e.to_string());
                let c = super::super::cachestat(&p).map(|_| ()).map_err(|e| e.to_string());
                tx.send((p, r, c)).unwrap();
            }
        });
        for what in ["a FIFO", "a socket", "a character device", "a directory"] {
            let (p, r, c) = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("open blocked on a FIFO");
            for e in [r.unwrap_err(), c.unwrap_err()] {
                assert!(e.contains(&format!("not a regular file: {what}")), "{}: {e}", p.display());
                assert!(e.contains(&p.display().to_string()), "{e}");
            }
        }
    }

    /// Regression: a window's `mmap` refused for address space (`ENOMEM`, `ulimit -v`) halved
    /// the window and tried again down to 1 MiB, also when the file was smaller than the
    /// window: the same mapping, refused ten times over. A file (or what is left of it) that
    /// smaller windows cannot split is refused at once.
    #[test]
    fn a_small_file_is_not_mapped_again_after_enomem() {
        let page = crate::page::page_size() as u64;
        let f = tempfile::tempfile().unwrap();
        f.set_len(3 * page).unwrap();
        let mut calls = 0;
        let err = residency_mapping_with(&f, 3 * page, |_, _, _| {
            calls += 1;
            Err(rustix::io::Errno::NOMEM)
        })
        .unwrap_err();
        assert_eq!(calls, 1, "mapped {calls} times");
        assert_eq!(err.errno(), Some(libc::ENOMEM), "{err}");
        assert_eq!(err.operation(), "mmap", "{err}");
    }

    /// Windows still halve where that helps: a 4 MiB file whose windows of more than 1 MiB are
    /// refused is read in 1 MiB windows, halved from the file's length (not from 1 GiB).
    #[test]
    fn enomem_halves_the_window_from_what_is_left() {
        let page = crate::page::page_size() as u64;
        let len = 4 << 20;
        let f = tempfile::tempfile().unwrap();
        f.set_len(len).unwrap();
        let mut tried = Vec::new();
        let r = residency_mapping_with(&f, len, |file, offset, l| {
            tried.push(l as u64);
            if l as u64 > MIN_WINDOW.max(page) {
                return Err(rustix::io::Errno::NOMEM);
            }
            Window::map(file, offset, l)
        })
        .unwrap();
        assert_eq!(r.pages(), len / page);
        let m = MIN_WINDOW.max(page);
        assert_eq!(tried, [len, len / 2, m, m, m, m], "window lengths tried");
    }
}
