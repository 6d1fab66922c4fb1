//! File-backed faces: [`Mmap`] (read-only), [`MmapMut`] (writable: shared or private
//! copy-on-write) and [`MmapRaw`] (pointer access). Append-style files with a base address that
//! never moves are [`GrowableMmap`](crate::GrowableMmap), a composite built on a reservation.
//!
//! # Safety: the file-mapping contract
//! A slice of a file map is only as stable as the file. Creating [`Mmap`] or [`MmapMut`] from a
//! file is `unsafe` because mmkit cannot stop another process (or this one, through another
//! handle) from:
//! - **truncating** the file: touching a page past the new end raises `SIGBUS` and kills the
//!   process;
//! - **modifying** it: the bytes behind a `&[u8]` change, which Rust's aliasing rules forbid.
//!
//! The caller promises neither happens while the map lives (e.g. the file is private to the
//! program, or locked by convention). Appending is not modifying: a reader of a log that another
//! process only appends to (never truncates, never rewrites) keeps the promise if its map covers
//! only bytes the writer has finished with, up to a length the writer publishes after writing
//! them, not up to the file's current length (an appender such as
//! [`GrowableMmap::append`](crate::GrowableMmap::append) extends the file before it copies the
//! record in). To see later records, map again (or [`remap`](Mmap::remap)) up to the new length.
//! The safe routes are:
//! - [`MmapRaw`], which hands out raw pointers only, with
//!   [`copy_from_mapping`](MmapRaw::copy_from_mapping), which turns a would-be `SIGBUS` into an
//!   [`ErrorKind::Truncated`] error;
//! - a sealed memfd (`F_SEAL_SHRINK` and `F_SEAL_WRITE`), which the kernel guarantees cannot
//!   shrink or change: see [`SharedMemory`](crate::SharedMemory).
//!
//! # Typed views: a file of fixed-size records
//! [`Mmap::as_slice_of`] and [`Mmap::as_ref_of`] (and their `MmapMut` forms) take
//! [zerocopy](https://docs.rs/zerocopy/0.8) **0.8** types: derive `FromBytes`, `Immutable` and
//! `KnownLayout` with `zerocopy = { version = "0.8", features = ["derive"] }` in your
//! `Cargo.toml` (mmkit does not re-export it; another major version's traits do not match).
//! `as_slice_of` views the whole map, so records after a header are mapped on their own, at
//! the header's offset (any offset works; the records' address is then the offset's):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
//!
//! #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
//! #[repr(C)]
//! struct Header { magic: [u8; 8], count: u64 }
//!
//! #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
//! #[repr(C)]
//! struct Record { key: u64, value: [u8; 24] }
//!
//! # let dir = tempfile::tempdir()?; let path = dir.path().join("table.bin");
//! # let mut bytes = Header { magic: *b"RECORDS1", count: 1000 }.as_bytes().to_vec();
//! # for key in 0..1000u64 { bytes.extend_from_slice(Record { key, value: [key as u8; 24] }.as_bytes()); }
//! # std::fs::write(&path, &bytes)?;
//! let file = std::fs::File::open(&path)?;
//! // SAFETY: nobody truncates or rewrites table.bin while it is mapped.
//! let map = unsafe { mmkit::Mmap::map(&file) }?;
//! let header: &Header = map.as_ref_of(0)?;
//! let len = usize::try_from(header.count)? * size_of::<Record>();
//! // SAFETY: as above.
//! let records = unsafe { mmkit::MapOptions::new().offset(size_of::<Header>() as u64).len(len).map(&file) }?;
//! let records: &[Record] = records.as_slice_of()?;
//! assert_eq!((records.len(), records[999].key, records[999].value[0]), (1000, 999, 999u64 as u8));
//! // A record at an offset that is not a multiple of its alignment, or a length that is not a
//! // multiple of its size, is an `ErrorKind::Layout` error, not a panic.
//! assert!(matches!(map.as_ref_of::<Record>(1), Err(e) if e.kind() == mmkit::ErrorKind::Layout));
//! # Ok(()) }
//! ```

// One of the modules with `unsafe`: owns raw address space (DESIGN.md: the faces and composites).
#![allow(unsafe_code)]

use std::ops::{Deref, DerefMut, RangeBounds};
use std::os::fd::{AsFd, BorrowedFd};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, ErrorKind, Result};
use crate::mapping::{Backing, Mapping, PageOutcome};
use crate::options::{Advice, MapOptions, Protection, RemapOptions, Sharing};
use crate::residency::Residency;
use crate::sys;

/// Forwards the range operations every face shares to its [`Mapping`].
macro_rules! forward_mapping_ops {
    ($face:ty) => {
        impl $face {
            /// The underlying [`Mapping`].
            pub fn mapping(&self) -> &Mapping {
                &self.map
            }

            /// `madvise(2)` with advice that keeps contents; see [`Mapping::advise`].
            pub fn advise(&self, range: impl RangeBounds<usize>, advice: Advice) -> Result<()> {
                self.map.advise(range, advice)
            }

            /// Locks the pages of `range` in RAM; see [`Mapping::lock`].
            pub fn lock(&self, range: impl RangeBounds<usize>) -> Result<()> {
                self.map.lock(range)
            }

            /// Locks pages as they fault in; see [`Mapping::lock_on_fault`].
            pub fn lock_on_fault(&self, range: impl RangeBounds<usize>) -> Result<()> {
                self.map.lock_on_fault(range)
            }

            /// Unlocks the pages of `range`; see [`Mapping::unlock`].
            pub fn unlock(&self, range: impl RangeBounds<usize>) -> Result<()> {
                self.map.unlock(range)
            }

            /// Which pages of `range` are resident (`mincore`); see [`Mapping::residency`].
            pub fn residency(&self, range: impl RangeBounds<usize>) -> Result<Residency> {
                self.map.residency(range)
            }

            /// Faults in the pages of `range` for reading; see [`Mapping::populate`].
            pub fn populate(&self, range: impl RangeBounds<usize>) -> Result<()> {
                self.map.populate(range)
            }

            /// The page size the mapping got; see [`Mapping::page_outcome`].
            pub fn page_outcome(&self) -> &PageOutcome {
                self.map.page_outcome()
            }

            /// Truncation-safe copy; see [`Mapping::copy_from_mapping`].
            pub fn copy_from_mapping(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
                self.map.copy_from_mapping(offset, dst)
            }
        }
    };
}

/// Forwards write-back to the mapping (shared file maps).
macro_rules! forward_flush {
    ($face:ty) => {
        impl $face {
            /// Writes the dirty pages of `range` to the file and waits (`msync(MS_SYNC)`); the
            /// range widens to whole pages. A no-op for private and anonymous maps.
            pub fn flush(&self, range: impl RangeBounds<usize>) -> Result<()> {
                self.map.flush(range)
            }

            /// `msync(MS_ASYNC)` over `range`: on Linux it starts no write-back (see
            /// [`Mapping::flush_async`]); [`flush`](Self::flush) writes and waits.
            pub fn flush_async(&self, range: impl RangeBounds<usize>) -> Result<()> {
                self.map.flush_async(range)
            }
        }
    };
}

/// memmap2's `remap`: resizes a face's mapping with `mremap(2)`; see [`Mapping::resize`].
macro_rules! remap_face {
    ($face:ty) => {
        impl $face {
            /// Grows or shrinks the map to `new_len` bytes (`mremap(2)`), in place unless
            /// [`RemapOptions::may_move`] allows a move (then the address changes; `&mut self`
            /// guarantees no reference into the map is alive, raw pointers dangle).
            ///
            /// Growth never exposes bytes that would raise `SIGBUS`: past the last page of the
            /// file (or of a shared memory object) it is refused with [`ErrorKind::OutOfBounds`]
            /// and the map keeps its old size. The check is per page, unlike the map's
            /// constructors, which refuse any byte past the end of the file (the map keeps no
            /// descriptor to ask the file's length): growth into the rest of the file's last
            /// page succeeds, and those bytes are not the file's. They read as zeros at first,
            /// but what is written there is the page cache's, not the file's: a disk file
            /// system (ext4) zeroes them again when it writes the page back (`flush`, or its
            /// flusher threads at any time) or when the file is extended, and on tmpfs (and a
            /// memfd) a later `set_len` makes them the file's bytes. Extend the file with
            /// `set_len` first. Anonymous private memory grows with zeros; for it
            /// [`MmapMut::remap_anon`] is the safe call.
            ///
            /// # Safety
            /// For a file-backed map, the
            /// [file-mapping contract](crate::file#safety-the-file-mapping-contract) now covers
            /// the new length: nobody may truncate the file below it or modify it while the map
            /// lives, and the new length must not pass the file's end (the bytes after it, up
            /// to the end of its last page, change under the map as said above: nothing here
            /// checks them).
            pub unsafe fn remap(&mut self, new_len: usize, options: RemapOptions) -> Result<()> {
                // SAFETY: forwarded contract.
                unsafe { self.map.resize(new_len, options) }
            }
        }
    };
}

/// A typed view that does not fit: names the mapping's file and the byte range asked for (`len`
/// bytes at `off`), with zerocopy's explanation on one line (it spans several).
fn layout_error(op: &'static str, path: Option<&std::path::Path>, off: usize, len: usize, detail: String) -> Error {
    let detail = detail.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    Error::new(op, ErrorKind::Layout).with_opt_path(path).with_range(off as u64, len as u64).with_detail(detail)
}

/// Typed zero-copy views over a face's bytes (`zerocopy` types: checked size and alignment).
macro_rules! typed_views {
    ($face:ty) => {
        impl $face {
            /// The whole mapping as a slice of `T`: its length must be a multiple of
            /// `size_of::<T>()` and its address aligned for `T`. `T` derives zerocopy 0.8's
            /// traits: see [records after a header](crate::file#typed-views-a-file-of-fixed-size-records).
            pub fn as_slice_of<T: FromBytes + Immutable + KnownLayout>(&self) -> Result<&[T]> {
                <[T]>::ref_from_bytes(&self[..]).map_err(|e| {
                    layout_error(
                        "as_slice_of",
                        self.map.path(),
                        0,
                        self.len(),
                        format!("{} bytes as [{}]: {e}", self.len(), std::any::type_name::<T>()),
                    )
                })
            }

            /// A `&T` at byte `offset`, checked for bounds and alignment.
            pub fn as_ref_of<T: FromBytes + Immutable + KnownLayout>(&self, offset: usize) -> Result<&T> {
                let bytes = self.get(offset..).ok_or_else(|| {
                    Error::new("as_ref_of", ErrorKind::OutOfBounds)
                        .with_opt_path(self.map.path())
                        .with_range(offset as u64, std::mem::size_of::<T>() as u64)
                        .with_detail(format!("offset is past the mapping (len {:#x})", self.len()))
                })?;
                T::ref_from_prefix(bytes).map(|(t, _)| t).map_err(|e| {
                    layout_error(
                        "as_ref_of",
                        self.map.path(),
                        offset,
                        std::mem::size_of::<T>(),
                        format!("{} at offset {offset:#x}: {e}", std::any::type_name::<T>()),
                    )
                })
            }
        }
    };
}

/// A read-only memory map (`Deref<Target = [u8]>`).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # std::env::set_current_dir(dir.path())?;
/// # let page = mmkit::page_size();
/// # std::fs::write("large_data.bin", vec![7u8; 3 * page + 5])?;
/// let file = std::fs::File::open("large_data.bin")?;
/// // SAFETY: nobody truncates or rewrites large_data.bin while we read it.
/// let map = unsafe { mmkit::Mmap::map(&file) }?;
/// println!("{} bytes, first {:?}, {} pages resident", map.len(), map.first(), map.residency(..)?.resident_pages());
/// # assert_eq!((map.len(), map.first()), (3 * page + 5, Some(&7)));
/// # assert_eq!(map.residency(..)?.pages(), 4);
/// # Ok(()) }
/// ```
///
/// # Invariant
/// The whole [`Mapping`] is readable for the life of the value (constructors refuse an
/// unreadable protection; protection only changes through `unsafe` calls or by consuming it
/// in [`make_mut`](Mmap::make_mut)), and its bytes do not change while it lives: for a file,
/// by the creation contract; for a sealed memfd, by the kernel. `Deref` relies on both.
#[derive(Debug)]
pub struct Mmap {
    map: Mapping,
}

impl Mmap {
    /// Maps the whole file read-only.
    ///
    /// # Safety
    /// See the [file-mapping contract](self#safety-the-file-mapping-contract).
    pub unsafe fn map(file: &impl AsFd) -> Result<Mmap> {
        // SAFETY: forwarded contract.
        unsafe { MapOptions::new().map(file) }
    }

    /// Re-protects the whole map read-write (`PROT_READ | PROT_WRITE`, as memmap2), turning it
    /// into an [`MmapMut`]. An executable map loses `PROT_EXEC` (W^X). Needs a file opened for
    /// writing when shared.
    pub fn make_mut(mut self) -> Result<MmapMut> {
        // SAFETY: we give up the read-only face; the bytes stay readable, and no reference
        // relies on execute permission.
        unsafe { self.map.protect(.., Protection::READ_WRITE) }.map_err(|e| {
            if e.errno() == Some(libc::EACCES) && self.map.sharing() != Sharing::Private {
                e.with_detail(
                    "a shared map becomes writable only if its file was open read-write when it was mapped (or, for a \
                     memfd, no seal forbids writes); map_copy_read_only maps a private copy that can",
                )
            } else {
                e
            }
        })?;
        Ok(MmapMut { map: self.map })
    }

    /// Re-protects the whole map readable and executable (`PROT_READ | PROT_EXEC`), as
    /// memmap2's `Mmap::make_exec`. A file map needs a file on a mount without `noexec`.
    pub fn make_exec(mut self) -> Result<Mmap> {
        // SAFETY: the map stays readable, so no `&[u8]` into it is broken.
        unsafe { self.map.protect(.., Protection::READ | Protection::EXEC) }?;
        Ok(self)
    }
}

impl Deref for Mmap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the face is readable by construction; stability is the creation contract.
        unsafe { self.map.as_slice() }
    }
}

impl AsRef<[u8]> for Mmap {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

forward_mapping_ops!(Mmap);
typed_views!(Mmap);

/// A writable memory map: shared (writes reach the file and every other mapping of it) or
/// private copy-on-write (writes stay in this process), or anonymous memory.
///
/// # Invariant
/// The whole [`Mapping`] is readable and writable for the life of the value, in this process
/// and in any forked child that holds a copy of it: every constructor asks for (or refuses
/// anything but) `PROT_READ | PROT_WRITE`, removing a permission needs the `unsafe`
/// [`Mapping::protect`], and taking the memory away from a child needs the `unsafe`
/// [`dont_fork`](MmapMut::dont_fork). Nobody else writes its bytes while a slice lives (the
/// file-mapping contract for files; anonymous private memory has no other writer). `Deref`
/// and `DerefMut` rely on this.
///
/// One exception the kernel makes: private hugetlb pages ([`HugePages::Hugetlb`](crate::HugePages::Hugetlb)
/// with [`Sharing::Private`]) are reserved for the process that mapped them only. A forked
/// child (a [fork probe](crate::process)) that touches one the parent has not faulted in, or
/// writes one it has, needs a free page of the pool outside every reservation, and is killed
/// with `SIGBUS` when there is none; the parent is not affected.
#[derive(Debug)]
pub struct MmapMut {
    map: Mapping,
}

impl MmapMut {
    /// Maps the whole file shared and writable (the file must be open read-write).
    ///
    /// # Safety
    /// See the [file-mapping contract](self#safety-the-file-mapping-contract).
    pub unsafe fn map_mut(file: &impl AsFd) -> Result<MmapMut> {
        // SAFETY: forwarded contract.
        unsafe { MapOptions::new().map_mut(file) }
    }

    /// Anonymous zero-filled private memory of `len` bytes.
    pub fn map_anon(len: usize) -> Result<MmapMut> {
        MapOptions::new().len(len).map_anon()
    }

    /// Wraps a mapping the caller made read-write (the type's invariant).
    pub(crate) fn from_mapping(map: Mapping) -> MmapMut {
        debug_assert!(map.is_empty() || map.protection().contains(Protection::READ_WRITE), "MmapMut over {map:?}");
        MmapMut { map }
    }

    /// The underlying mapping, mutably (for [`Mapping::discard`], and the `unsafe`
    /// [`Mapping::protect`] and [`Mapping::resize`]; [`remap_anon`](Self::remap_anon) and
    /// [`remap`](Self::remap) are the face's own resizes).
    pub fn mapping_mut(&mut self) -> &mut Mapping {
        &mut self.map
    }

    /// Drops the pages of `range` (`MADV_DONTNEED`): see [`Mapping::discard`].
    pub fn discard(&mut self, range: impl RangeBounds<usize>) -> Result<()> {
        self.map.discard(range)
    }

    /// Faults in the pages of `range` writable (`MADV_POPULATE_WRITE`).
    pub fn populate_write(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.map.populate_write(range)
    }

    /// Makes the whole map read-only, turning it into an [`Mmap`].
    pub fn make_read_only(mut self) -> Result<Mmap> {
        // SAFETY: `self` is consumed, so no `&mut [u8]` into it is alive; removing write
        // permission breaks no shared reference.
        unsafe { self.map.protect(.., Protection::READ) }?;
        Ok(Mmap { map: self.map })
    }

    /// Flips the whole map from writable to executable (`PROT_READ | PROT_EXEC`, never both
    /// writable and executable: W^X), turning it into an [`Mmap`]: how a JIT publishes the
    /// code it wrote. On CPUs with separate instruction caches (arm64) the caller still has
    /// to synchronise them before running the code.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut code = mmkit::MmapMut::map_anon(mmkit::page_size())?;
    /// code[0] = 0xc3; // x86 `ret`
    /// let code = code.make_exec()?;
    /// assert!(code.mapping().protection().executable());
    /// # Ok(()) }
    /// ```
    pub fn make_exec(mut self) -> Result<Mmap> {
        // SAFETY: `self` is consumed, so no `&mut [u8]` into it is alive; the map stays readable.
        unsafe { self.map.protect(.., Protection::READ | Protection::EXEC) }?;
        Ok(Mmap { map: self.map })
    }

    /// Grows or shrinks anonymous memory (`mremap(2)`); the new bytes of private memory are
    /// zero. Safe, unlike [`remap`](Self::remap): a map of a file is refused with
    /// [`ErrorKind::InvalidArgument`]. Shared anonymous memory cannot grow past the size it was
    /// created with (its memory object keeps that size): such growth is refused with
    /// [`ErrorKind::OutOfBounds`]; growing back after a shrink shows the object's bytes (those a
    /// forked child may still be using), not zeros.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// use mmkit::RemapOptions;
    /// let page = mmkit::page_size();
    /// let mut mem = mmkit::MmapMut::map_anon(page)?;
    /// mem[0] = 1;
    /// mem.remap_anon(4 * page, RemapOptions::new().may_move(true))?;
    /// assert_eq!((mem.len(), mem[0], mem[3 * page]), (4 * page, 1, 0));
    /// # Ok(()) }
    /// ```
    pub fn remap_anon(&mut self, new_len: usize, options: RemapOptions) -> Result<()> {
        if self.map.file_offset().is_some() {
            return Err(Error::new("mremap", ErrorKind::InvalidArgument)
                .with_opt_path(self.map.path())
                .with_range(0, new_len as u64)
                .with_detail("remap_anon resizes anonymous memory only; a file map needs the unsafe remap"));
        }
        let old_len = self.len();
        // SAFETY: anonymous memory has no file whose contract could be extended; growth past
        // a shared memory object's size is refused by `resize`.
        unsafe { self.map.resize(new_len, options) }?;
        // A shrink to a length inside a page left the rest of that page mapped with its old
        // bytes (the kernel unmaps whole pages): the new bytes there must read as zeros too.
        if self.map.sharing() == Sharing::Private && new_len > old_len {
            let page = sys::page_size();
            let stale_end = old_len.next_multiple_of(page).min(new_len);
            self[old_len..stale_end].fill(0);
        }
        Ok(())
    }

    /// A typed mutable view of the whole map; see [`Mmap::as_slice_of`].
    pub fn as_mut_slice_of<T: FromBytes + IntoBytes + KnownLayout>(&mut self) -> Result<&mut [T]> {
        let len = self.len();
        // Checked apart from the view returned: zerocopy's error holds the `&mut` borrow, and
        // the error names the file, which needs `self` again.
        if let Err(why) = <[T]>::mut_from_bytes(&mut self[..]).map(drop).map_err(|e| e.to_string()) {
            let detail = format!("{len} bytes as [{}]: {why}", std::any::type_name::<T>());
            return Err(layout_error("as_mut_slice_of", self.map.path(), 0, len, detail));
        }
        <[T]>::mut_from_bytes(&mut self[..]).map_err(|e| layout_error("as_mut_slice_of", None, 0, len, e.to_string()))
    }

    /// A typed `&mut T` at byte `offset`, checked for bounds and alignment.
    pub fn as_mut_of<T: FromBytes + IntoBytes + KnownLayout>(&mut self, offset: usize) -> Result<&mut T> {
        let (len, size) = (self.len(), std::mem::size_of::<T>());
        if offset > len {
            return Err(Error::new("as_mut_of", ErrorKind::OutOfBounds)
                .with_opt_path(self.map.path())
                .with_range(offset as u64, size as u64)
                .with_detail(format!("offset is past the mapping (len {len:#x})")));
        }
        // Checked apart from the view returned, as in `as_mut_slice_of`.
        if let Err(why) = T::mut_from_prefix(&mut self[offset..]).map(drop).map_err(|e| e.to_string()) {
            let detail = format!("{} at offset {offset:#x}: {why}", std::any::type_name::<T>());
            return Err(layout_error("as_mut_of", self.map.path(), offset, size, detail));
        }
        T::mut_from_prefix(&mut self[offset..])
            .map(|(t, _)| t)
            .map_err(|e| layout_error("as_mut_of", None, offset, size, e.to_string()))
    }
}

impl Deref for MmapMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: readable and writable by construction; stability is the creation contract.
        unsafe { self.map.as_slice() }
    }
}

impl DerefMut for MmapMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; `&mut self` excludes other borrows.
        unsafe { self.map.as_mut_slice() }
    }
}

impl AsRef<[u8]> for MmapMut {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl AsMut<[u8]> for MmapMut {
    fn as_mut(&mut self) -> &mut [u8] {
        self
    }
}

forward_mapping_ops!(MmapMut);
forward_flush!(MmapMut);
typed_views!(MmapMut);

/// A map that hands out raw pointers only: for atomics and volatile access over shared memory,
/// and for files that others may truncate (read them with
/// [`copy_from_mapping`](MmapRaw::copy_from_mapping)). Creating it is safe.
///
/// # Invariant
/// Only the [`Mapping`]'s: the region is owned and at most `isize::MAX` bytes. Its protection
/// may be anything and its bytes may change or be truncated away, which is why it never hands
/// out a reference and why changing its protection is safe; whoever dereferences its pointers
/// checks access themselves.
#[derive(Debug)]
pub struct MmapRaw {
    map: Mapping,
}

impl MmapRaw {
    pub(crate) fn from_mapping(map: Mapping) -> MmapRaw {
        MmapRaw { map }
    }

    /// Address of the first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Address of the first byte, for writing.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Changes the protection of `range` (whole pages). Safe: no reference into the map exists.
    pub fn protect(&mut self, range: impl RangeBounds<usize>, prot: Protection) -> Result<()> {
        // SAFETY: MmapRaw never hands out references, so no reference relies on the old
        // permissions; raw-pointer users check protection themselves.
        unsafe { self.map.protect(range, prot) }
    }
}

forward_mapping_ops!(MmapRaw);
forward_flush!(MmapRaw);
remap_face!(Mmap);
remap_face!(MmapMut);
remap_face!(MmapRaw);

impl From<Mmap> for MmapRaw {
    /// Hands a typed map to pointer-based code (memmap2's `From<Mmap> for MmapRaw`).
    fn from(map: Mmap) -> MmapRaw {
        MmapRaw { map: map.map }
    }
}

impl From<MmapMut> for MmapRaw {
    /// Hands a typed map to pointer-based code (memmap2's `From<MmapMut> for MmapRaw`).
    fn from(map: MmapMut) -> MmapRaw {
        MmapRaw { map: map.map }
    }
}

// SAFETY: the slice a map dereferences to lives as long as the map and does not move when the
// map value moves (the kernel region is fixed); only `&mut self` methods (`remap` with
// `may_move`) can move it, which `StableDeref` allows, as for `Vec`.
#[cfg(feature = "stable_deref_trait")]
unsafe impl stable_deref_trait::StableDeref for Mmap {}
// SAFETY: as for `Mmap`.
#[cfg(feature = "stable_deref_trait")]
unsafe impl stable_deref_trait::StableDeref for MmapMut {}

/// Whether the kernel guarantees that the bytes behind `fd` can never change or shrink: a memfd
/// with the `WRITE` and `SHRINK` seals, or a file with fs-verity. Seals and verity can only be
/// added, never removed, so the answer cannot turn false later.
fn check_immutable(fd: BorrowedFd<'_>) -> Result<()> {
    let not_safe = |detail: String| {
        Error::new("mmap", ErrorKind::NotSafe).with_opt_path(sys::fd_path(fd).as_deref()).with_detail(detail)
    };
    if let Ok(seals) = sys::shm::get_seals(fd) {
        let need = (libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK) as u32;
        let missing: Vec<&str> = [(libc::F_SEAL_WRITE as u32, "WRITE"), (libc::F_SEAL_SHRINK as u32, "SHRINK")]
            .into_iter()
            .filter(|(bit, _)| seals & bit == 0)
            .map(|(_, name)| name)
            .collect();
        if seals & need == need {
            return Ok(());
        }
        return Err(not_safe(format!(
            "a safe map of a memfd needs the WRITE and SHRINK seals; it lacks {} (FUTURE_WRITE is not \
             enough: writable maps made before it keep writing)",
            missing.join(" and ")
        )));
    }
    // fs-verity protects regular files only; the probe's ioctl number must not reach whatever
    // driver is behind another kind of file (one answering 0 would read as verity).
    match sys::regular_file_len_and_block(fd) {
        Ok((Some(_), _)) => {}
        Ok((None, _)) => {
            return Err(not_safe(
                "not a regular file or a memfd: only a memfd sealed against WRITE and SHRINK or a regular \
                 file with fs-verity is safe to map"
                    .into(),
            ))
        }
        Err(e) => return Err(Error::os("fstat", e).with_opt_path(sys::fd_path(fd).as_deref())),
    }
    match sys::probe::has_fs_verity(fd) {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_safe(
            "the file is neither a memfd sealed against WRITE and SHRINK nor protected by fs-verity on a file \
             system that enforces it in the kernel (ext4, f2fs, btrfs; FUSE forwards the question to its daemon), so \
             another process may change or truncate it"
                .into(),
        )),
        Err(e) => Err(Error::os("ioctl(FS_IOC_MEASURE_VERITY)", e).with_opt_path(sys::fd_path(fd).as_deref())),
    }
}

impl MapOptions {
    /// Maps `file` read-only as an [`Mmap`].
    ///
    /// # Safety
    /// See the [file-mapping contract](crate::file#safety-the-file-mapping-contract).
    pub unsafe fn map(&self, file: &impl AsFd) -> Result<Mmap> {
        // SAFETY: forwarded contract.
        let map = unsafe { Mapping::new(self, Backing::File(file.as_fd()), Protection::READ) }?;
        map.refuse_unreserved_hugetlb(self, "an Mmap")?;
        if !map.protection().readable() && !map.is_empty() {
            return Err(Error::new("mmap", ErrorKind::InvalidArgument).with_detail("Mmap needs a readable protection"));
        }
        Ok(Mmap { map })
    }

    /// Maps `file` writable as an [`MmapMut`]: shared by default, or private copy-on-write
    /// with [`Sharing::Private`] (see [`map_copy`](Self::map_copy)).
    ///
    /// # Safety
    /// See the [file-mapping contract](crate::file#safety-the-file-mapping-contract).
    pub unsafe fn map_mut(&self, file: &impl AsFd) -> Result<MmapMut> {
        let mut opts = self.clone();
        opts.protection = Some(self.protection.unwrap_or(Protection::READ_WRITE) | Protection::READ_WRITE);
        // SAFETY: forwarded contract.
        let map = unsafe { Mapping::new(&opts, Backing::File(file.as_fd()), Protection::READ_WRITE) }?;
        map.refuse_unreserved_hugetlb(&opts, "an MmapMut")?;
        Ok(MmapMut { map })
    }

    /// Maps `file` private and writable (copy-on-write): writes stay in this process and never
    /// reach the file; the file may be open read-only.
    ///
    /// # Safety
    /// See the [file-mapping contract](crate::file#safety-the-file-mapping-contract): pages not
    /// yet written still show the file's current bytes.
    pub unsafe fn map_copy(&self, file: &impl AsFd) -> Result<MmapMut> {
        let mut opts = self.clone();
        opts.sharing = Some(Sharing::Private);
        // SAFETY: forwarded contract.
        unsafe { opts.map_mut(file) }
    }

    /// Maps `file` read-only and private (`MAP_PRIVATE`, `PROT_READ`) as an [`Mmap`]: memmap2's
    /// `map_copy_read_only`. It can later become a copy-on-write [`MmapMut`] with
    /// [`Mmap::make_mut`] whose writes never reach the file.
    ///
    /// # Safety
    /// See the [file-mapping contract](crate::file#safety-the-file-mapping-contract): pages not
    /// yet written still show the file's current bytes.
    pub unsafe fn map_copy_read_only(&self, file: &impl AsFd) -> Result<Mmap> {
        let mut opts = self.clone();
        opts.sharing = Some(Sharing::Private);
        opts.protection = Some(Protection::READ);
        // SAFETY: forwarded contract.
        unsafe { opts.map(file) }
    }

    /// Maps `file` readable and executable (`PROT_READ | PROT_EXEC`) as an [`Mmap`]: memmap2's
    /// `map_exec`. The file must be on a mount without `noexec`.
    ///
    /// # Safety
    /// See the [file-mapping contract](crate::file#safety-the-file-mapping-contract).
    pub unsafe fn map_exec(&self, file: &impl AsFd) -> Result<Mmap> {
        let mut opts = self.clone();
        opts.protection = Some(Protection::READ | Protection::EXEC);
        // SAFETY: forwarded contract.
        unsafe { opts.map(file) }
    }

    /// Maps `file` read-only as an [`Mmap`] without `unsafe`, after proving that nobody can
    /// change or shrink it: a memfd sealed with `F_SEAL_WRITE` and `F_SEAL_SHRINK`, or a file
    /// with fs-verity enabled on a file system whose kernel driver enforces it (ext4, f2fs, btrfs;
    /// not FUSE, whose daemon answers for itself) (memmap2's `map_if_safe`). [`offset`](Self::offset) and
    /// [`len`](Self::len) select a part; the range must lie inside the file. Anything else is
    /// refused with [`ErrorKind::NotSafe`].
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let page = mmkit::page_size();
    /// let shm = mmkit::SharedMemory::create("table", 4 * page as u64)?;
    /// shm.seal_read_only()?;
    /// let part = mmkit::MapOptions::new().offset(page as u64).len(2 * page).map_if_safe(&shm)?;
    /// assert_eq!(part.len(), 2 * page);
    /// # Ok(()) }
    /// ```
    pub fn map_if_safe(&self, file: &impl AsFd) -> Result<Mmap> {
        // One descriptor for the check and the map: `AsFd` is a safe trait, and an
        // implementation may answer another descriptor (an unsealed file) on its next call.
        let fd = file.as_fd();
        check_immutable(fd)?;
        // SAFETY: the kernel forbids every change to the bytes and size of the file behind
        // `fd` (seals or fs-verity, which cannot be removed), which is the whole file-mapping
        // contract; `fd` is the descriptor just checked.
        unsafe { self.map(&fd) }
    }

    /// Maps `file` as an [`MmapRaw`] (read-write unless a protection is set). Safe: no
    /// references are handed out.
    pub fn map_raw(&self, file: &impl AsFd) -> Result<MmapRaw> {
        // SAFETY: MmapRaw hands out raw pointers only, so a truncated or modified file cannot
        // break a Rust reference; reads go through volatile/atomic access or
        // `copy_from_mapping`, which reports truncation as an error.
        let map = unsafe { Mapping::new(self, Backing::File(file.as_fd()), Protection::READ_WRITE) }?;
        Ok(MmapRaw { map })
    }

    /// Maps a device file as an [`MmapRaw`] (read-write unless a protection is set): the route
    /// for device memory such as a PCI BAR's sysfs `resourceN` / `resourceN_wc`, `/dev/uioN`
    /// or `/dev/mem`. The length must be given ([`MapOptions::len`]). For a regular file the
    /// range may run to the end of the file's last page, not just its last byte: sysfs reports
    /// a BAR's true size (e.g. 0x100 bytes) as `st_size` while the kernel maps it as a whole
    /// page, and the rest of a file's last page never raises `SIGBUS`; past that page it is
    /// refused as in [`map_raw`](Self::map_raw). Character devices are not checked (their
    /// driver checks the range). Bounding accesses to the device's size is the caller's job
    /// (`mmkit-mmio`'s regions do it). Safe for the same reason as `map_raw`.
    #[doc(alias = "mmap")]
    pub fn map_device(&self, file: &impl AsFd) -> Result<MmapRaw> {
        if self.len.is_none() {
            return Err(Error::new("mmap", ErrorKind::InvalidArgument)
                .with_detail("a device mapping needs a length (MapOptions::len)"));
        }
        // SAFETY: as in `map_raw`: MmapRaw hands out raw pointers only, so nothing relies on
        // the range being backed; a regular file is mapped no further than its last page.
        let map = unsafe { Mapping::new(self, Backing::Device(file.as_fd()), Protection::READ_WRITE) }?;
        Ok(MmapRaw { map })
    }

    /// Maps `file` read-only as an [`MmapRaw`] (for files opened read-only).
    pub fn map_raw_read_only(&self, file: &impl AsFd) -> Result<MmapRaw> {
        let mut opts = self.clone();
        opts.protection = Some(Protection::READ);
        opts.map_raw(file)
    }
}
