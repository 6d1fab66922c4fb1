//! [`GrowableMmap`]: an append-style file map whose base address never moves.
//!
//! A composite of a file face and a [`Reservation`]: address space for the whole capacity is
//! reserved once and the file's pages are mapped into it in place as it grows. The
//! [file-mapping contract](crate::file#safety-the-file-mapping-contract) applies.

// One of the modules with `unsafe`: owns raw address space, a composite over a reservation like `reserve`.
#![allow(unsafe_code)]

use std::fs::File;
use std::ops::{Deref, DerefMut, RangeBounds};
use std::os::fd::AsFd;

use crate::error::{Error, ErrorKind, Result};
use crate::options::{Protection, Sharing};
use crate::page::align_up;
use crate::reserve::Reservation;
use crate::sys;

/// An append-style file map whose base address never moves: address space for `capacity`
/// bytes is reserved once (`PROT_NONE`), and [`grow`](GrowableMmap::grow) extends the file and
/// maps the new pages in place (`MAP_FIXED` inside the owned reservation).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let file = tempfile::tempfile()?;
/// // SAFETY: the temporary file is ours alone.
/// let mut log = unsafe { mmkit::GrowableMmap::new(file, 1 << 30) }?;
/// let base = log.as_ptr();
/// log.append(b"hello ")?;
/// log.append(&vec![b'x'; 3 * mmkit::page_size()])?;
/// assert_eq!(&log[..6], b"hello ");
/// assert_eq!(log.as_ptr(), base); // never moves
/// # Ok(()) }
/// ```
///
/// # Invariant
/// The first `mapped` bytes of the reservation (at most its capacity, at most `isize::MAX`)
/// are mapped shared and read-write from the file, `len <= mapped`, and the file is at least
/// `len` bytes long: [`grow`](GrowableMmap::grow) extends the file before it maps or exposes
/// new bytes, and takes `&mut self`, so no slice is alive across it. With the creation
/// contract (the file changes only through this map) every exposed byte is backed by the file.
#[derive(Debug)]
pub struct GrowableMmap {
    res: Reservation,
    file: File,
    /// Bytes of the reservation mapped from the file (a page multiple).
    mapped: usize,
    /// Logical length (the file's length).
    len: usize,
}

impl GrowableMmap {
    /// Reserves `capacity` bytes of address space and maps the file's current contents
    /// shared and writable at its start. The file must be open read-write (else
    /// [`ErrorKind::InvalidArgument`], whatever its size). Holes of a sparse
    /// file get storage (`fallocate`, data kept), so a full file system is an error here
    /// (`ENOSPC`), not a `SIGBUS` at the first write into one; where the file system has no
    /// `fallocate`, holes stay. A huge, deliberately sparse file is allocated whole. On a
    /// copy-on-write file system (btrfs; files sharing extents) every overwrite needs new space,
    /// so there a full file system can still fail a write through the map with `SIGBUS`: keep
    /// such files off full disks (or `chattr +C` them).
    ///
    /// # Safety
    /// See the [file-mapping contract](crate::file#safety-the-file-mapping-contract): the
    /// file must only change through this map.
    pub unsafe fn new(file: File, capacity: usize) -> Result<GrowableMmap> {
        // Checked first: an empty file maps nothing here, so a read-only one would otherwise
        // fail only at the first `grow` (`fallocate`: `EBADF`), and a non-empty one as an
        // `EACCES` of `mmap(MAP_FIXED)` at an address that says nothing of the cause.
        let path = || sys::fd_path(file.as_fd());
        match sys::access_mode(file.as_fd()) {
            Ok("read-write") => {}
            Ok(mode) => {
                return Err(Error::new("GrowableMmap::new", ErrorKind::InvalidArgument)
                    .with_opt_path(path().as_deref())
                    .with_detail(format!(
                        "the file is open {mode}; it must be open read-write (GrowableMmap maps it shared and \
                         writable, and extends it)"
                    )))
            }
            Err(e) => return Err(Error::os("fcntl(F_GETFL)", e).with_opt_path(path().as_deref())),
        }
        let res = Reservation::new(capacity)?;
        let len = sys::file_len(file.as_fd())
            .map_err(|e| Error::os("fstat", e).with_opt_path(sys::fd_path(file.as_fd()).as_deref()))?;
        let len = usize::try_from(len).ok().filter(|&l| l <= capacity).ok_or_else(|| {
            Error::new("GrowableMmap::new", ErrorKind::OutOfBounds)
                .with_opt_path(sys::fd_path(file.as_fd()).as_deref())
                .with_range(0, len)
                .with_detail(format!("the file is larger than the capacity ({capacity:#x})"))
        })?;
        let mut g = GrowableMmap { res, file, mapped: 0, len: 0 };
        g.map_to(len)?;
        // A sparse file's holes get storage now, as `grow` gives its new bytes: a write into
        // one through the safe `&mut [u8]` on a full file system would raise SIGBUS.
        sys::allocate_holes(g.file.as_fd(), len as u64).map_err(|e| {
            Error::os("fallocate", e).with_opt_path(sys::fd_path(g.file.as_fd()).as_deref()).with_range(0, len as u64)
        })?;
        g.len = len;
        Ok(g)
    }

    fn map_to(&mut self, len: usize) -> Result<()> {
        let page = sys::page_size() as u64;
        let want = align_up(len as u64, page).expect("len <= capacity") as usize;
        if want > self.mapped {
            // SAFETY: the range lies inside our reservation and nothing else refers to it; the
            // file contract was accepted in `new`.
            unsafe {
                self.res.map_file_at(
                    self.mapped,
                    want - self.mapped,
                    Protection::READ_WRITE,
                    Sharing::Shared,
                    self.file.as_fd(),
                    self.mapped as u64,
                )
            }?;
            self.mapped = want;
        }
        Ok(())
    }

    /// Extends the file to `new_len` bytes (zero-filled) and maps the new pages in place. The
    /// new bytes get storage now (`fallocate`), so a full file system is an error here
    /// (`ENOSPC`) rather than a `SIGBUS` at the first write into them (except on a
    /// copy-on-write file system: see [`new`](GrowableMmap::new)). Past the process's file-size
    /// limit (`RLIMIT_FSIZE`, `ulimit -f`) the kernel sends `SIGXFSZ`, which ends the process
    /// unless it ignores that signal; ignored, the error here is `EFBIG`.
    pub fn grow(&mut self, new_len: usize) -> Result<()> {
        if new_len > self.res.len() {
            return Err(Error::new("GrowableMmap::grow", ErrorKind::OutOfBounds)
                .with_opt_path(sys::fd_path(self.file.as_fd()).as_deref())
                .with_range(0, new_len as u64)
                .with_detail(format!("beyond the reserved capacity ({:#x})", self.res.len())));
        }
        if new_len <= self.len {
            return Ok(());
        }
        // Allocated, not just a longer size: a write into a hole of a full file system would
        // raise SIGBUS through the safe `&mut [u8]`; this way it is an error here.
        sys::allocate_file_range(self.file.as_fd(), self.len as u64, new_len as u64).map_err(|e| {
            // The range allocated: the new bytes, not the whole file.
            Error::os("fallocate", e)
                .with_opt_path(sys::fd_path(self.file.as_fd()).as_deref())
                .with_range(self.len as u64, (new_len - self.len) as u64)
        })?;
        self.map_to(new_len)?;
        self.len = new_len;
        Ok(())
    }

    /// Appends `data` at the end, growing the file; returns the offset it was written at.
    ///
    /// The file is extended first and `data` copied after, and nothing is written back until
    /// [`flush`](GrowableMmap::flush): after a crash the file may end in zeros or in part of
    /// `data` (a torn record), so a log read back after a crash checks its last records (a
    /// checksum) rather than trusting the file's length.
    pub fn append(&mut self, data: &[u8]) -> Result<usize> {
        let at = self.len;
        let end = at.checked_add(data.len()).ok_or_else(|| {
            Error::new("GrowableMmap::append", ErrorKind::OutOfBounds).with_detail("length overflows")
        })?;
        self.grow(end)?;
        self[at..end].copy_from_slice(data);
        Ok(at)
    }

    /// The reserved capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.res.len()
    }

    /// Address of the first byte (stable for the map's life).
    pub fn as_ptr(&self) -> *const u8 {
        self.res.as_ptr()
    }

    /// Writes dirty pages of `range` back to the file and waits (`msync(MS_SYNC)`; the range
    /// widens to whole pages). Linux syncs the range as `fdatasync` does, with the metadata
    /// needed to read it back: a length [`grow`](GrowableMmap::grow) or
    /// [`append`](GrowableMmap::append) extended the file to is durable with the data of the
    /// flushed range, other metadata (times) is not.
    pub fn flush(&self, range: impl RangeBounds<usize>) -> Result<()> {
        let path = || sys::fd_path(self.file.as_fd());
        let (off, len) =
            crate::mapping::resolve_range("msync", range, self.len).map_err(|e| e.with_opt_path(path().as_deref()))?;
        self.res.flush(off, len).map_err(|e| e.with_opt_path(path().as_deref()))
    }

    /// The file behind the map (to read its metadata, lock it or sync it). Resizing or writing
    /// it through this handle breaks the contract [`GrowableMmap::new`] was called under (the
    /// file changes only through the map): a shrink makes the map's next access to the lost
    /// pages raise `SIGBUS`. Grow with [`GrowableMmap::grow`].
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Deref for GrowableMmap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are mapped readable from the file (len <= mapped);
        // stability is the creation contract.
        unsafe { std::slice::from_raw_parts(self.res.as_ptr(), self.len) }
    }
}

impl DerefMut for GrowableMmap {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, mapped writable; `&mut self` excludes other borrows.
        unsafe { std::slice::from_raw_parts_mut(self.res.as_mut_ptr(), self.len) }
    }
}
