//! Page sources: where the bytes of a [`PagedRegion`](crate::PagedRegion)'s missing pages come
//! from.
//!
//! A source is asked for one page at a time, at a byte offset that is a multiple of the page
//! size, and writes the page into the buffer it is given (always exactly one page). It may be
//! called from several handler threads at once (hence `Send + Sync`), and once it has supplied
//! a page of a region it is never asked for that page again (the region records which pages it
//! filled). A page it failed may be asked again: by the
//! [retry policy](crate::PagedRegionBuilder::retry), and when a page after the faulting one in a
//! [fault-around](crate::PagedRegionBuilder::fault_around) window failed, when it is touched.
//!
//! A source must not read its own region (through the slice or [`read`](crate::PagedRegion::read)):
//! it runs on a handler thread, which would wait for a page that only it can supply.

#![deny(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Whether `file` lives on procfs or sysfs, whose files' sizes are not their content (a
/// `/proc` file says 0 bytes, a `/sys` attribute one page, `/proc/kcore` terabytes).
pub(crate) fn on_proc_or_sys(file: &File, path: &Path) -> mmkit::Result<bool> {
    let fs = rustix::fs::fstatfs(file).map_err(|e| mmkit::Error::os("fstatfs", e).with_path(path))?;
    Ok([libc::PROC_SUPER_MAGIC, libc::SYSFS_MAGIC].contains(&fs.f_type))
}

/// Refuses a `/proc` or `/sys` file as the content of pages: its size is not its content, so a
/// snapshot of it, or a file packed from it, would be a fiction (a `/sys` attribute reads as one
/// page of text and zeros, `/proc/self/status` as nothing, `/proc/kcore` as terabytes).
/// [`seekable::pack`](crate::seekable::pack), [`SeekableSource::open`](crate::SeekableSource::open),
/// [`snapshot::info`](crate::snapshot::info), [`SnapshotSource::open`](crate::SnapshotSource::open)
/// and the restores call it; a tool that opens such a file itself can call it to refuse the
/// same files with the same error. `op` names the operation in the error.
///
/// ```
/// use mmkit_pager::source::refuse_proc_and_sys;
/// let f = std::fs::File::open("/proc/self/status")?;
/// let e = refuse_proc_and_sys(&f, "/proc/self/status".as_ref(), "info").unwrap_err();
/// assert_eq!(e.kind(), mmkit::ErrorKind::InvalidArgument);
/// assert!(e.to_string().contains("/proc/self/status") && e.to_string().contains("a /proc or /sys file"), "{e}");
/// # let dir = tempfile::tempdir()?;
/// # let p = dir.path().join("snapshot");
/// # std::fs::write(&p, [1u8; 10])?;
/// assert!(refuse_proc_and_sys(&std::fs::File::open(&p)?, &p, "info").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn refuse_proc_and_sys(file: &File, path: &Path, op: &'static str) -> mmkit::Result<()> {
    if on_proc_or_sys(file, path)? {
        return Err(mmkit::Error::new(op, mmkit::ErrorKind::InvalidArgument)
            .with_path(path)
            .with_detail("a /proc or /sys file: its size is not its content"));
    }
    Ok(())
}

/// What a [`PageSource::fill`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// The buffer holds the page's bytes.
    Data,
    /// The page is all zeros; the buffer was not written (the region maps the shared zero page
    /// with `UFFDIO_ZEROPAGE`, which costs no memory until written).
    Zero,
}

/// Supplies the bytes of missing pages.
pub trait PageSource: Send + Sync {
    /// Fills `buf` (one page, zeroed before the call: bytes left unwritten read as zeros) with
    /// the bytes at `offset` (page-aligned) of the region, or reports that the page is all
    /// zeros. An error becomes the region's
    /// [failure outcome](crate::region#failure-semantics) for that page.
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled>;
}

impl<S: PageSource + ?Sized> PageSource for std::sync::Arc<S> {
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        (**self).fill(offset, buf)
    }
}

impl<S: PageSource + ?Sized> PageSource for Box<S> {
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        (**self).fill(offset, buf)
    }
}

/// Every page is zero (the kernel's anonymous memory, but through the pager: useful as a
/// baseline and for regions that are written before they are read).
#[derive(Debug, Default, Clone, Copy)]
pub struct ZeroSource;

impl PageSource for ZeroSource {
    fn fill(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<Filled> {
        Ok(Filled::Zero)
    }
}

/// A closure as a source: `FnSource(|offset, page| { ...; Ok(Filled::Data) })`.
pub struct FnSource<F>(pub F);

impl<F> std::fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FnSource(..)")
    }
}

impl<F> PageSource for FnSource<F>
where
    F: Fn(u64, &mut [u8]) -> io::Result<Filled> + Send + Sync,
{
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        (self.0)(offset, buf)
    }
}

/// Pages read from a file with `pread(2)` at `base + offset`. Bytes past the end of the file
/// read as zeros (a page wholly past the end is a zero page), as in a file mapping; a read error
/// is the page's error. Unlike a file mapping, a file truncated later never raises `SIGBUS`:
/// pages already filled keep their bytes.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: Option<PathBuf>,
    base: u64,
}

impl FileSource {
    /// Opens the regular file at `path` read-only (a FIFO, socket, directory or device is
    /// refused without blocking: see [`mmkit::open`]).
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileSource> {
        let path = path.as_ref();
        let file = mmkit::open::open_regular(path)?;
        Ok(FileSource { file, path: Some(path.to_owned()), base: 0 })
    }

    /// Reads from `file`, region offset 0 being file offset `base`.
    pub fn new(file: File, base: u64) -> FileSource {
        FileSource { file, path: None, base }
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl PageSource for FileSource {
    fn fill(&self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        let at = self.base.checked_add(offset).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], at + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let what = self.path.as_ref().map_or_else(|| "file".to_owned(), |p| p.display().to_string());
                    return Err(io::Error::new(
                        e.kind(),
                        format!("pread of {what} at offset {:#x}: {e}", at + done as u64),
                    ));
                }
            }
        }
        if done == 0 {
            return Ok(Filled::Zero);
        }
        buf[done..].fill(0);
        Ok(Filled::Data)
    }
}
