//! [`Reservation`]: reserve address space, then commit, decommit and map into parts of it.
//!
//! This is ART's Java-heap pattern: one large contiguous range is reserved up front
//! (`PROT_NONE`, `MAP_NORESERVE`, so it costs no memory and no commit charge), and parts of it
//! are made usable later. Because mmkit owns the whole range, it is the one place `MAP_FIXED`
//! is used: replacing pages inside our own reservation cannot clobber anyone else's mapping.
//! Dropping the reservation unmaps everything inside it.

use std::os::fd::AsFd;
use std::ptr::NonNull;

use crate::error::{Error, ErrorKind, Result};
use crate::options::{Protection, Sharing};
use crate::page::{align_up, is_aligned, range_within};
use crate::sys;

/// Reserved address space; see the [module docs](self).
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// use mmkit::{Protection, Reservation};
/// let heap = Reservation::new(64 << 30)?; // 64 GiB of address space, no memory
/// heap.commit(0, 8 << 20, Protection::READ_WRITE)?; // the first 8 MiB become usable
/// // SAFETY: the first 8 MiB are committed read-write and nothing else refers to them.
/// unsafe { heap.as_mut_ptr().write(42) };
/// heap.decommit(0, 8 << 20)?; // and give their memory back
/// # Ok(()) }
/// ```
pub struct Reservation {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a Reservation exclusively owns its address range; operations through `&self` are
// kernel calls on that range, which are thread-safe.
unsafe impl Send for Reservation {}
// SAFETY: as above; no references into the range are handed out.
unsafe impl Sync for Reservation {}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("base", &self.base).field("len", &self.len).finish()
    }
}

impl Reservation {
    /// Reserves `len` bytes (rounded up to whole pages) of inaccessible address space.
    pub fn new(len: usize) -> Result<Reservation> {
        let page = sys::page_size() as u64;
        let len = align_up(len as u64, page)
            .filter(|&l| l > 0 && l <= isize::MAX as u64)
            .ok_or_else(|| {
                Error::new("reserve", ErrorKind::InvalidArgument)
                    .with_range(0, len as u64)
                    .with_detail("length must be non-zero and fit in the address space")
            })? as usize;
        let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE;
        // SAFETY: no MAP_FIXED: fresh address space chosen by the kernel.
        let base = unsafe { sys::mmap(std::ptr::null_mut(), len, libc::PROT_NONE, flags, None, 0) }
            .map_err(|e| Error::os("mmap(PROT_NONE, MAP_NORESERVE)", e).with_range(0, len as u64))?;
        Ok(Reservation { base: NonNull::new(base).expect("mmap returned NULL"), len })
    }

    /// First byte of the reservation.
    pub fn as_ptr(&self) -> *const u8 {
        self.base.as_ptr()
    }

    /// First byte of the reservation, for writing (only committed ranges may be written).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Reserved length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a reservation has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn check(&self, op: &'static str, offset: usize, len: usize) -> Result<*mut u8> {
        let page = sys::page_size() as u64;
        if !range_within(offset as u64, len as u64, self.len as u64) {
            return Err(Error::new(op, ErrorKind::OutOfBounds)
                .with_addr(self.base.as_ptr() as usize)
                .with_range(offset as u64, len as u64)
                .with_detail(format!("range is outside the reservation (len {:#x})", self.len)));
        }
        if !is_aligned(offset as u64, page) || !(is_aligned(len as u64, page) || offset + len == self.len) {
            return Err(Error::new(op, ErrorKind::Unaligned)
                .with_addr(self.base.as_ptr() as usize)
                .with_range(offset as u64, len as u64)
                .with_detail(format!("offset and length must be page multiples (page size {page:#x})")));
        }
        // SAFETY: `offset <= len` of our reservation (checked above).
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// Makes `[offset, offset + len)` accessible with `prot` (page multiples). Committed pages
    /// are zero-filled on first touch and count toward RSS only once touched.
    pub fn commit(&self, offset: usize, len: usize, prot: Protection) -> Result<()> {
        let ptr = self.check("commit", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation; no references into it exist (we hand
        // out raw pointers only).
        unsafe { sys::mprotect(ptr, len, prot.bits()) }.map_err(|e| {
            Error::os("mprotect", e).with_addr(ptr as usize).with_range(offset as u64, len as u64)
        })
    }

    /// Returns `[offset, offset + len)` to the reserved state: its memory is freed (RSS drops),
    /// its contents are lost, and touching it faults.
    pub fn decommit(&self, offset: usize, len: usize) -> Result<()> {
        let ptr = self.check("decommit", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let flags = libc::MAP_PRIVATE | libc::MAP_NORESERVE | libc::MAP_FIXED;
        // SAFETY: MAP_FIXED replaces pages inside our own reservation only; no references into
        // it exist.
        unsafe { sys::mmap(ptr.cast(), len, libc::PROT_NONE, flags, None, 0) }.map_err(|e| {
            Error::os("mmap(MAP_FIXED, PROT_NONE)", e).with_addr(ptr as usize).with_range(offset as u64, len as u64)
        })?;
        Ok(())
    }

    /// Maps `len` bytes of `fd` from `file_offset` at `offset` inside the reservation
    /// (`MAP_FIXED`, replacing whatever was there).
    ///
    /// # Safety
    /// The [file-mapping contract](crate::file#safety-the-file-mapping-contract) applies to
    /// whoever reads the range, and no reference into the replaced range may be alive.
    pub unsafe fn map_file_at(
        &self,
        offset: usize,
        len: usize,
        prot: Protection,
        sharing: Sharing,
        fd: impl AsFd,
        file_offset: u64,
    ) -> Result<()> {
        let ptr = self.check("map_file_at", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut flags = libc::MAP_FIXED;
        flags |= match sharing {
            Sharing::Shared => libc::MAP_SHARED,
            Sharing::SharedValidate => libc::MAP_SHARED_VALIDATE,
            Sharing::Private => libc::MAP_PRIVATE,
        };
        let fd = fd.as_fd();
        // SAFETY: MAP_FIXED inside our own reservation; the reference contract is the caller's.
        unsafe { sys::mmap(ptr.cast(), len, prot.bits(), flags, Some(fd), file_offset) }.map_err(|e| {
            Error::os("mmap(MAP_FIXED)", e)
                .with_opt_path(sys::fd_path(fd).as_deref())
                .with_addr(ptr as usize)
                .with_range(file_offset, len as u64)
        })?;
        Ok(())
    }

    /// Writes back dirty shared file pages in `[offset, offset + len)` (widened to pages).
    pub fn flush(&self, offset: usize, len: usize) -> Result<()> {
        let page = sys::page_size() as u64;
        let (start, span) = crate::page::page_span(offset as u64, len as u64, page).ok_or_else(|| {
            Error::new("msync", ErrorKind::OutOfBounds).with_range(offset as u64, len as u64)
        })?;
        let ptr = self.check("msync", start as usize, span as usize)?;
        if span == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation; msync changes no contents.
        unsafe { sys::msync(ptr, span as usize, true) }
            .map_err(|e| Error::os("msync(MS_SYNC)", e).with_addr(ptr as usize).with_range(offset as u64, len as u64))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: we own the whole range and everything mapped inside it.
        let _ = unsafe { sys::munmap(self.base.as_ptr(), self.len) };
    }
}
