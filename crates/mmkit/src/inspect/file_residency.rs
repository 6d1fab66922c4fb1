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
/// `mincore(2)`. An empty file has 0 pages. Looking does not change residency.
pub fn residency(path: impl AsRef<Path>) -> Result<Residency> {
    let path = path.as_ref();
    let (file, len) = open(path)?;
    residency_of_len(&file, len).map_err(|e| e.with_path(path))
}

/// Residency of an open file (see [`residency`]).
pub fn residency_of_file(file: &File) -> Result<Residency> {
    residency_of_len(file, regular_file_len(file)?)
}

/// Residency of an open regular file of `len` bytes.
pub(crate) fn residency_of_len(file: &File, len: u64) -> Result<Residency> {
    let page = crate::page::page_size() as u64;
    let pages = len.div_ceil(page);
    let mut bitmap = PageBitmap::try_new(pages).ok_or_else(|| {
        Error::from_raw_errno("residency", libc::ENOMEM)
            .with_range(0, len)
            .with_detail(format!("no memory for a bitmap of {pages} pages"))
    })?;
    let window = super::WINDOW - super::WINDOW % page;
    let mut vec = vec![0u8; (window.min(pages * page) / page) as usize];
    let mut offset = 0;
    while offset < len {
        let this = (len - offset).min(window);
        let this_pages = this.div_ceil(page) as usize;
        let w = Window::map(file, offset, this as usize).map_err(|e| Error::os("mmap", e).with_range(offset, this))?;
        w.mincore(&mut vec[..this_pages]).map_err(|e| Error::os("mincore", e).with_range(offset, this))?;
        bitmap.fill_from_mincore(offset / page, &vec[..this_pages]);
        offset += this;
    }
    Ok(Residency::from_bitmap(page, len, bitmap))
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
}
