//! [`Reservation`]: reserve address space, then commit, decommit and map into parts of it.
//!
//! This is ART's Java-heap pattern: one large contiguous range is reserved up front
//! (`PROT_NONE`, `MAP_NORESERVE`, so it costs no memory and no commit charge), and parts of it
//! are made usable later. Because mmkit owns the whole range, it is the one place `MAP_FIXED`
//! is used: replacing pages inside our own reservation cannot clobber anyone else's mapping.
//! Dropping the reservation unmaps everything inside it (but sealed pages, and what a failed
//! `MAP_FIXED` let another mapping take: see [`Reservation`]'s invariant).
//!
//! | want | call |
//! |---|---|
//! | reserve, aligned, low 4 GiB, named | [`ReserveOptions`], [`Reservation::new`] |
//! | make a range usable / give it back | [`Reservation::commit`], [`Reservation::decommit`] |
//! | map a file or a memfd into it | [`Reservation::map_file_at`], [`Reservation::map_shared_memory_at`] (in [`shm`](crate::shm)) |
//! | hand part of it to another owner | [`Reservation::carve`] |
//! | lend part of it, getting it back decommitted | [`Reservation::lend`] |
//! | seal part of it for good (`mseal`) | [`Reservation::seal`] |
//! | guard pages inside it | [`Reservation::guard`], [`Reservation::unguard`] |
//!
//! # Sub-reservations
//! [`carve`](Reservation::carve) moves ownership of a page-aligned sub-range to a new
//! `Reservation`. The parent keeps a list of carved ranges: its operations refuse them and its
//! drop unmaps only what it still owns, so each byte is unmapped exactly once, whichever is
//! dropped first.

// One of the modules with `unsafe`: owns raw address space (DESIGN.md: the faces and composites).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::mm::{MapFlags, ProtFlags};

use crate::anon::GuardKind;
use crate::error::{Error, ErrorKind, Result};
use crate::options::{Populate, Protection, Sharing};
use crate::page::{align_up, check_len, check_page_len, is_aligned, range_within};
use crate::residency::MINCORE_WINDOW_PAGES;
use crate::sys;

/// How to reserve address space: length, alignment, placement, name.
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// use mmkit::reserve::ReserveOptions;
/// let heap = ReserveOptions::new(1 << 30).align(2 << 20).name("java-heap").reserve()?;
/// assert_eq!(heap.as_ptr() as usize % (2 << 20), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReserveOptions {
    len: usize,
    align: usize,
    low_4gib: bool,
    name: Option<String>,
}

impl ReserveOptions {
    /// Reserve `len` bytes (rounded up to whole pages).
    pub fn new(len: usize) -> ReserveOptions {
        ReserveOptions { len, align: 0, low_4gib: false, name: None }
    }

    /// Start address aligned to `align` bytes (a power of two; at most the page size means
    /// page-aligned, which every reservation is). The kernel is asked for `len + align` bytes
    /// and the unaligned head and tail are unmapped.
    pub fn align(&mut self, align: usize) -> &mut Self {
        self.align = align;
        self
    }

    /// Place the reservation in the low 4 GiB of the address space (`MAP_32BIT`, x86_64 only,
    /// where the kernel actually uses the low 2 GiB): for 32-bit compressed pointers, as ART
    /// does for its heap. Elsewhere [`reserve`](Self::reserve) fails with
    /// [`ErrorKind::Unsupported`].
    pub fn low_4gib(&mut self, yes: bool) -> &mut Self {
        self.low_4gib = yes;
        self
    }

    /// Name the reserved range (`[anon:NAME]` in `/proc/self/maps`, Linux 5.17+; a no-op
    /// elsewhere, see [`Reservation::name_applied`]). A name no kernel accepts makes
    /// [`reserve`](Self::reserve) fail (see [`Mapping::set_name`](crate::Mapping::set_name)).
    pub fn name(&mut self, name: &str) -> &mut Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Reserves the address space.
    pub fn reserve(&self) -> Result<Reservation> {
        let page = sys::page_size();
        let bad = |detail: &str| {
            Error::new("reserve", ErrorKind::InvalidArgument)
                .with_range(0, self.len as u64)
                .with_detail(detail.to_owned())
        };
        if self.len == 0 {
            return Err(bad("length must be non-zero"));
        }
        let len = check_page_len("reserve", self.len as u64, page as u64)?;
        if self.align != 0 && !self.align.is_power_of_two() {
            return Err(bad("alignment must be a power of two"));
        }
        let align = self.align.max(page);
        let extra = align - page;
        // `len + extra` fits in u64: both are at most usize::MAX.
        let want = check_len("reserve", len as u64 + extra as u64)
            .map_err(|e| e.with_detail(format!("length plus alignment ({align:#x}) is longer than isize::MAX")))?;
        let mut flags = MapFlags::PRIVATE | MapFlags::NORESERVE;
        if self.low_4gib {
            match sys::kconst::MAP_32BIT {
                Some(f) => flags |= MapFlags::from_bits_retain(f as u32),
                None => {
                    return Err(Error::new("reserve", ErrorKind::Unsupported)
                        .with_detail("low-4 GiB placement needs MAP_32BIT, which only x86_64 has"))
                }
            }
        }
        let op =
            if self.low_4gib { "mmap(PROT_NONE, MAP_NORESERVE | MAP_32BIT)" } else { "mmap(PROT_NONE, MAP_NORESERVE)" };
        let aligned = sys::mmap_anon_aligned(len, align, ProtFlags::empty(), flags).map_err(|e| {
            crate::mapping::with_memory_limits(Error::os(op, e).with_range(0, want as u64), e, want, false)
        })? as usize;
        let mut r = Reservation {
            base: NonNull::new(aligned as *mut u8).expect("mmap returned NULL"),
            len,
            carved: Vec::new(),
            name: None,
            name_applied: false,
            lent: None,
            book: Mutex::new(None),
            sealed: Default::default(),
            huge_maps: Default::default(),
            lost: Default::default(),
        };
        if let Some(name) = &self.name {
            r.set_name(name)?;
        }
        Ok(r)
    }

    /// Reserves the address space by mapping `fd` from `file_offset` over all of it: one
    /// `mmap(2)` where [`reserve`](Self::reserve) followed by
    /// [`Reservation::map_file_at`] at offset 0 makes two. This is how a dynamic linker maps a
    /// library (glibc maps the first `PT_LOAD` segment over the whole span, then the other
    /// segments `MAP_FIXED` over the rest): the range past what the caller wants from the file
    /// holds the file's next pages (or, past its end, pages that raise `SIGBUS` when touched)
    /// until the caller maps over it, [decommits](Reservation::decommit) it or commits it with
    /// [`Reservation::commit_zeroed`] ([`Reservation::commit`] would only change the
    /// protection of the file pages).
    ///
    /// Needs an alignment of at most the page size (the file offset fixes the placement
    /// modulo the page only) and no name or low-4 GiB placement; otherwise it answers
    /// [`ErrorKind::InvalidArgument`], and the caller reserves and maps in two steps.
    ///
    /// # Safety
    /// As for [`Reservation::map_file_at`]: the
    /// [file-mapping contract](crate::file#safety-the-file-mapping-contract) applies to
    /// whoever reads the range.
    pub unsafe fn reserve_mapping_file(
        &self,
        prot: Protection,
        sharing: Sharing,
        fd: impl AsFd,
        file_offset: u64,
    ) -> Result<Reservation> {
        let page = sys::page_size();
        let bad = |detail: &str| {
            Error::new("reserve mapping a file", ErrorKind::InvalidArgument)
                .with_range(file_offset, self.len as u64)
                .with_detail(detail.to_owned())
        };
        if self.len == 0 {
            return Err(bad("length must be non-zero"));
        }
        if self.align > page || self.low_4gib || self.name.is_some() {
            return Err(bad("an alignment above the page size, a name or low-4 GiB placement needs reserve()"));
        }
        let len = check_page_len("reserve", self.len as u64, page as u64)?;
        let flags = sharing.map_flags();
        let fd = fd.as_fd();
        // SAFETY: no MAP_FIXED: fresh address space the kernel picks; the reference contract
        // of the file is the caller's.
        let ptr = unsafe { sys::mmap(std::ptr::null_mut(), len, prot.prot_flags(), flags, Some(fd), file_offset) }
            .map_err(|e| {
                Error::os("mmap", e).with_opt_path(sys::fd_path(fd).as_deref()).with_range(file_offset, len as u64)
            })?;
        // A file on hugetlbfs is mapped (and must be unmapped) in whole huge pages: own them all,
        // or the unmap on drop fails and the mapping leaks. The kernel placed such a mapping at
        // a huge page boundary and rounded its length up (so the rounded length fits).
        let huge = sys::hugetlbfs_page_size_at(fd, ptr as usize);
        let len = match huge {
            Some(huge) => len.next_multiple_of(huge),
            None => len,
        };
        Ok(Reservation {
            base: NonNull::new(ptr).expect("mmap returned NULL"),
            len,
            carved: Vec::new(),
            name: None,
            name_applied: false,
            lent: None,
            book: Mutex::new(None),
            sealed: Default::default(),
            huge_maps: std::sync::Mutex::new(huge.map(|_| vec![(0, len)]).unwrap_or_default()),
            lost: Default::default(),
        })
    }
}

/// Reserved address space; see the [module docs](self).
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// # if cfg!(target_pointer_width = "32") { return Ok(()) } // 4 GiB of address space in all
/// use mmkit::{Protection, Reservation};
/// let heap = Reservation::new(64 << 30)?; // 64 GiB of address space, no memory
/// heap.commit(0, 8 << 20, Protection::READ_WRITE)?; // the first 8 MiB become usable
/// // SAFETY: the first 8 MiB are committed read-write and nothing else refers to them.
/// unsafe { heap.as_mut_ptr().write(42) };
/// heap.decommit(0, 8 << 20)?; // and give their memory back
/// # Ok(()) }
/// ```
///
/// # Invariant
/// A reservation exclusively owns `[base, base + len)` minus its carved ranges (each owned by
/// exactly one sub-reservation) and minus the ranges it gave up after a failed `MAP_FIXED` left
/// them unmapped and another mapping took them (never touched again; see `refill`); `len` is
/// a non-zero page multiple of at most `isize::MAX`.
/// It hands out raw pointers only, never a reference, so the operations that change what is
/// mapped there (commit, decommit, guard, mapping a memfd) are safe: they are the only place
/// mmkit uses `MAP_FIXED`, and only on address space this value owns.
pub struct Reservation {
    base: NonNull<u8>,
    len: usize,
    /// Sub-ranges `(offset, len)` owned by carved sub-reservations, sorted by offset.
    carved: Vec<(usize, usize)>,
    name: Option<CString>,
    name_applied: bool,
    /// Made by [`lend`](Reservation::lend): the lender's book and where in the lender the range
    /// lies. Dropped while the lender lives, it decommits instead of unmapping.
    lent: Option<(Arc<Mutex<LendBook>>, usize)>,
    /// The ranges this reservation lent out (made at the first [`lend`](Reservation::lend):
    /// a reservation that never lends allocates nothing). Held across every operation that
    /// changes what is mapped ([`check_mut`](Reservation::check_mut)), so that no range is lent
    /// between its check and the kernel call.
    book: Mutex<Option<Arc<Mutex<LendBook>>>>,
    /// Ranges `(offset, len)` sealed by [`seal`](Reservation::seal): dropping the reservation
    /// unmaps around them (an unmap that touches a sealed page fails as a whole).
    sealed: std::sync::Mutex<Vec<(usize, usize)>>,
    /// Ranges `(offset, len)` mapped from a file on hugetlbfs: the kernel unmaps such a mapping
    /// only in whole huge pages, so no carve or lend may cut one (the drop of either side would
    /// fail to unmap its part, and the mapping would leak).
    huge_maps: std::sync::Mutex<Vec<(usize, usize)>>,
    /// Ranges `(offset, len)` given up after a failed `MAP_FIXED` left them unmapped and another
    /// owner's mapping took their place (see [`refill`](Reservation::refill)): every operation
    /// refuses them and the drop leaves them alone.
    lost: std::sync::Mutex<Vec<(usize, usize)>>,
}

/// The lender's lock on its book (see [`Reservation::check_mut`]).
type LendLock<'a> = MutexGuard<'a, Option<Arc<Mutex<LendBook>>>>;

/// What a lender and the reservations it lent share: the ranges lent out (offsets in the
/// lender), and whether the lender is still alive. A range lent out stays mapped when its
/// lender is dropped first (the lender unmaps around it); the lent reservation then unmaps it
/// when it goes, instead of decommitting it back.
#[derive(Debug, Default)]
struct LendBook {
    lender_dropped: bool,
    out: Vec<(usize, usize)>,
    /// Ranges a lent reservation gave up after a failed `MAP_FIXED` (another owner's now):
    /// never the lender's again.
    given_up: Vec<(usize, usize)>,
    /// Ranges a lent reservation could not decommit when it gave them back (`ENOMEM` at
    /// `vm.max_map_count`): they still hold its pages, bytes and protections, so the lender's
    /// operations refuse them; the lender's drop unmaps them (they are its address space).
    stale: Vec<(usize, usize)>,
}

// SAFETY: a Reservation exclusively owns its address range (minus carved ranges and ranges
// given up after a failed MAP_FIXED, which it never touches); operations through `&self` are
// kernel calls on that range, which are thread-safe.
unsafe impl Send for Reservation {}
// SAFETY: as above; no references into the range are handed out.
unsafe impl Sync for Reservation {}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("carved", &self.carved)
            .field("name", &self.name)
            .finish()
    }
}

impl Reservation {
    /// Reserves `len` bytes (rounded up to whole pages) of inaccessible address space
    /// (`PROT_NONE`, `MAP_NORESERVE`: no memory, no commit charge). See [`ReserveOptions`] for
    /// alignment, low-4 GiB placement and names.
    pub fn new(len: usize) -> Result<Reservation> {
        ReserveOptions::new(len).reserve()
    }

    /// First byte of the reservation.
    pub fn as_ptr(&self) -> *const u8 {
        self.base.as_ptr()
    }

    /// First byte of the reservation, for writing (only committed ranges may be written).
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Reserved length in bytes (including carved ranges).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: a reservation has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The ranges `(offset, len)` handed to sub-reservations by [`carve`](Self::carve).
    pub fn carved(&self) -> &[(usize, usize)] {
        &self.carved
    }

    /// Whether the name is shown in `/proc/self/maps` (false when the kernel lacks
    /// `CONFIG_ANON_VMA_NAME`, or no name was given).
    pub fn name_applied(&self) -> bool {
        self.name_applied
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
        if let Some(&(o, l)) = self.carved.iter().find(|&&(o, l)| len > 0 && offset < o + l && o < offset + len) {
            return Err(Error::new(op, ErrorKind::OutOfBounds)
                .with_addr(self.base.as_ptr() as usize)
                .with_range(offset as u64, len as u64)
                .with_detail(format!("range overlaps [{o:#x}, {:#x}), carved out to a sub-reservation", o + l)));
        }
        let lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(o, l)) = lost.iter().find(|&&(o, l)| len > 0 && offset < o + l && o < offset + len) {
            return Err(Error::new(op, ErrorKind::OutOfBounds)
                .with_addr(self.base.as_ptr() as usize)
                .with_range(offset as u64, len as u64)
                .with_detail(format!(
                    "range overlaps [{o:#x}, {:#x}), given up after a failed mmap(MAP_FIXED) left it unmapped and \
                     another mapping took its place",
                    o + l
                )));
        }
        // SAFETY: `offset <= len` of our reservation (checked above).
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// [`check`](Self::check) for an operation that changes what is mapped: also refuses a
    /// range lent out (its borrower owns it until it is dropped). The guard returned keeps any
    /// range from being lent until the operation is done.
    fn check_mut(&self, op: &'static str, offset: usize, len: usize) -> Result<(*mut u8, LendLock<'_>)> {
        // The lock first: a failed MAP_FIXED gives ranges up (`lost`) under it, so a range
        // checked before it was taken could be given up before this operation's kernel call.
        let lock = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let ptr = self.check(op, offset, len)?;
        if let Some(book) = lock.as_ref() {
            let book = book.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&(o, l)) = book.out.iter().find(|&&(o, l)| len > 0 && offset < o + l && o < offset + len) {
                return Err(Error::new(op, ErrorKind::InvalidArgument)
                    .with_addr(self.base.as_ptr() as usize)
                    .with_range(offset as u64, len as u64)
                    .with_detail(format!(
                        "range overlaps [{o:#x}, {:#x}), lent out (Reservation::lend) and not given back yet",
                        o + l
                    )));
            }
            let overlaps = |&&(o, l): &&(usize, usize)| len > 0 && offset < o + l && o < offset + len;
            if let Some(&(o, l)) = book.given_up.iter().find(overlaps) {
                return Err(Error::new(op, ErrorKind::OutOfBounds)
                    .with_addr(self.base.as_ptr() as usize)
                    .with_range(offset as u64, len as u64)
                    .with_detail(format!(
                        "range overlaps [{o:#x}, {:#x}), given up while lent (a failed mmap(MAP_FIXED) left it \
                         unmapped and another mapping took its place)",
                        o + l
                    )));
            }
            if let Some(&(o, l)) = book.stale.iter().find(overlaps) {
                return Err(Error::new(op, ErrorKind::InvalidArgument)
                    .with_addr(self.base.as_ptr() as usize)
                    .with_range(offset as u64, len as u64)
                    .with_detail(format!(
                        "range overlaps [{o:#x}, {:#x}), which its borrower could not decommit when it gave it                          back (ENOMEM: the process is at vm.max_map_count): it still holds the borrower's pages                          until this reservation is dropped",
                        o + l
                    )));
            }
        }
        Ok((ptr, lock))
    }

    /// Makes `[offset, offset + len)` accessible with `prot` (page multiples). Committed pages
    /// are zero-filled on first touch and count toward RSS only once touched.
    /// (That is what reserved pages give; a range that holds something else, such as the file
    /// pages of [`ReserveOptions::reserve_mapping_file`], keeps it: see
    /// [`commit_zeroed`](Self::commit_zeroed).)
    pub fn commit(&self, offset: usize, len: usize, prot: Protection) -> Result<()> {
        let (ptr, _lend) = self.check_mut("commit", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation; no references into it exist (we hand
        // out raw pointers only).
        unsafe { sys::mprotect(ptr, len, prot.prot_flags()) }.map_err(|e| {
            let err = Error::os("mprotect (Reservation::commit)", e)
                .with_addr(ptr as usize)
                .with_range(offset as u64, len as u64);
            crate::mapping::with_memory_limits(err, e, len, prot.writable())
        })
    }

    /// Makes `[offset, offset + len)` accessible with `prot` as fresh zero pages, whatever it
    /// held before (file pages of [`ReserveOptions::reserve_mapping_file`], committed data):
    /// one `mmap(MAP_FIXED | MAP_ANONYMOUS)` where [`decommit`](Self::decommit) then
    /// [`commit`](Self::commit) make two. [`commit`](Self::commit) only changes the protection
    /// of what is there.
    pub fn commit_zeroed(&self, offset: usize, len: usize, prot: Protection) -> Result<()> {
        let (ptr, _lend) = self.check_mut("commit_zeroed", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let flags = MapFlags::PRIVATE | MapFlags::FIXED;
        // SAFETY: MAP_FIXED replaces pages inside our own reservation only; no references into
        // it exist (we hand out raw pointers only).
        unsafe { sys::mmap(ptr.cast(), len, prot.prot_flags(), flags, None, 0) }.map_err(|e| {
            self.refill_after_failed_fixed(ptr, len);
            let err = Error::os("mmap(MAP_FIXED | MAP_ANONYMOUS)", e)
                .with_addr(ptr as usize)
                .with_range(offset as u64, len as u64);
            crate::mapping::with_memory_limits(err, e, len, prot.writable())
        })?;
        self.replaced(offset, len, false);
        if let Some(name) = &self.name {
            // SAFETY: an anonymous range inside our reservation; naming changes no contents.
            let _ = unsafe { sys::set_anon_name(ptr, len, Some(name)) };
        }
        Ok(())
    }

    /// Returns `[offset, offset + len)` to the reserved state: its memory is freed (RSS drops),
    /// its contents are lost, guard markers and file mappings in it are removed, and touching
    /// it faults.
    pub fn decommit(&self, offset: usize, len: usize) -> Result<()> {
        let (ptr, _lend) = self.check_mut("decommit", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation (checked) and no references into it exist.
        unsafe { self.decommit_raw(ptr, len) }.map_err(|e| {
            let err = Error::os("mmap(MAP_FIXED, PROT_NONE)", e)
                .with_addr(ptr as usize)
                .with_range(offset as u64, len as u64);
            crate::mapping::with_memory_limits(err, e, len, false)
        })?;
        self.replaced(offset, len, false);
        Ok(())
    }

    /// Replaces `[ptr, ptr + len)` with fresh reserved pages (`PROT_NONE`, `MAP_NORESERVE`)
    /// and names them like the rest.
    ///
    /// # Safety
    /// The range must be whole pages this reservation owns, with no reference into it.
    unsafe fn decommit_raw(&self, ptr: *mut u8, len: usize) -> sys::SysResult<()> {
        // SAFETY: forwarded contract.
        unsafe { self.decommit_or_refill(ptr, len) }.map_err(|(e, _)| e)
    }

    /// [`decommit_raw`](Self::decommit_raw), whose error also says whether the failed
    /// `MAP_FIXED` had left a hole (then refilled or given up, see
    /// [`refill_after_failed_fixed`](Self::refill_after_failed_fixed)): without one, the range
    /// still holds what it held.
    ///
    /// # Safety
    /// As [`decommit_raw`](Self::decommit_raw).
    unsafe fn decommit_or_refill(
        &self,
        ptr: *mut u8,
        len: usize,
    ) -> std::result::Result<(), (rustix::io::Errno, bool)> {
        let flags = MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED;
        // SAFETY: MAP_FIXED replaces pages inside our own reservation only (the caller's
        // contract); no references into it exist.
        unsafe { sys::mmap(ptr.cast(), len, ProtFlags::empty(), flags, None, 0) }
            .map_err(|e| (e, self.refill_after_failed_fixed(ptr, len)))?;
        if let Some(name) = &self.name {
            // The fresh pages are a new area: name them like the rest.
            // SAFETY: an anonymous range inside our reservation; naming changes no contents.
            let _ = unsafe { sys::set_anon_name(ptr, len, Some(name)) };
        }
        Ok(())
    }

    /// After an `mmap(MAP_FIXED)` over `[ptr, ptr + len)` (whole pages this value owns) failed.
    /// The kernel may have unmapped the range before failing: a file's mmap hook refusing after
    /// the old pages were cleared (hugetlbfs with no free pool page for the reservation; before
    /// Linux 6.12 also the commit charge of a private writable map under strict overcommit),
    /// which leaves a hole that another `mmap` (any thread's: the allocator's, a `Mapping`) can
    /// be placed in, and this reservation's next `MAP_FIXED` or its drop would then destroy that
    /// owner's memory. The kernel leaves either the whole range mapped (put back) or the whole
    /// range unmapped, so when any page is unmapped, every part of it that is mapped now is
    /// another owner's: the free parts are taken back as reserved pages (`MAP_FIXED_NOREPLACE`,
    /// which never replaces) and the rest is given up (`lost`). On the error path only.
    /// Returns whether there was a hole.
    fn refill_after_failed_fixed(&self, ptr: *mut u8, len: usize) -> bool {
        let hole = len > 0 && any_unmapped(ptr, len);
        if hole {
            self.refill(ptr, len);
        }
        hole
    }

    /// Takes back the free parts of `[ptr, ptr + len)` as reserved pages and gives up the
    /// mapped ones (see [`refill_after_failed_fixed`](Self::refill_after_failed_fixed)), halving
    /// the range around what is mapped: O(k log n) calls for k foreign mappings.
    fn refill(&self, ptr: *mut u8, len: usize) {
        let page = sys::page_size();
        let flags = MapFlags::PRIVATE
            | MapFlags::NORESERVE
            | MapFlags::from_bits_retain(sys::kconst::MAP_FIXED_NOREPLACE as u32);
        // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping: it maps the range only if it is
        // free (a kernel before 4.17 takes it as a hint; a mapping placed elsewhere is ours alone
        // and unmapped at once).
        match unsafe { sys::mmap(ptr.cast(), len, ProtFlags::empty(), flags, None, 0) } {
            Ok(p) if p == ptr => {
                if let Some(name) = &self.name {
                    // SAFETY: the anonymous range just mapped inside our reservation.
                    let _ = unsafe { sys::set_anon_name(ptr, len, Some(name)) };
                }
                return;
            }
            Ok(p) => {
                // SAFETY: the mapping just made elsewhere, nobody refers to it.
                let _ = unsafe { sys::munmap(p, len) };
            }
            Err(_) => {}
        }
        if len > page && any_unmapped(ptr, len) {
            let half = len / page / 2 * page;
            self.refill(ptr, half);
            // SAFETY: `half < len`: still inside the range.
            self.refill(unsafe { ptr.add(half) }, len - half);
        } else {
            // Mapped by another owner now (or free but not mappable back): never touch it again.
            let off = ptr as usize - self.base.as_ptr() as usize;
            self.lost.lock().unwrap_or_else(|e| e.into_inner()).push((off, len));
        }
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
        // SAFETY: forwarded contract.
        unsafe { self.map_file_at_with(offset, len, prot, sharing, fd, file_offset, Populate::No) }
    }

    /// [`map_file_at`](Self::map_file_at), faulted in as `populate` says:
    /// [`Populate::MapPopulate`] (`MAP_POPULATE`: the pages are read, and private writable ones
    /// copied, in the call instead of by faults), [`Populate::Read`] / [`Populate::Write`]
    /// (`MADV_POPULATE_READ` / `_WRITE` after the map, `MADV_WILLNEED` on kernels before 5.14).
    ///
    /// # Safety
    /// As for [`map_file_at`](Self::map_file_at).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn map_file_at_with(
        &self,
        offset: usize,
        len: usize,
        prot: Protection,
        sharing: Sharing,
        fd: impl AsFd,
        file_offset: u64,
        populate: Populate,
    ) -> Result<()> {
        let (ptr, _lend) = self.check_mut("map_file_at", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let fd = fd.as_fd();
        // A file on hugetlbfs (an `MFD_HUGETLB` memfd another process may send) is mapped in
        // whole huge pages whatever length is asked for: MAP_FIXED would replace the rest of the
        // last huge page, past `len` and possibly past the reservation (someone else's memory).
        // At an address no huge page can start at, the kernel refuses such a file itself.
        let unaligned = |huge: usize| {
            Error::new("map_file_at", ErrorKind::Unaligned)
                .with_opt_path(sys::fd_path(fd).as_deref())
                .with_addr(ptr as usize)
                .with_range(file_offset, len as u64)
                .with_detail(format!(
                    "the file is on hugetlbfs, which maps whole huge pages ({huge:#x} bytes): the address, \
                     length and file offset must be multiples of that, so the huge pages stay inside the \
                     range given"
                ))
        };
        let huge = sys::hugetlbfs_page_size_at(fd, ptr as usize);
        if let Some(huge) = huge {
            if ptr as usize % huge != 0 || len % huge != 0 || file_offset % huge as u64 != 0 {
                return Err(unaligned(huge));
            }
        }
        let flags = MapFlags::FIXED
            | if populate == Populate::MapPopulate { MapFlags::POPULATE } else { MapFlags::empty() }
            | sharing.map_flags();
        // SAFETY: MAP_FIXED inside our own reservation; the reference contract is the caller's.
        unsafe { sys::mmap(ptr.cast(), len, prot.prot_flags(), flags, Some(fd), file_offset) }.map_err(|e| {
            self.refill_after_failed_fixed(ptr, len);
            if let (rustix::io::Errno::INVAL, None) = (e, huge) {
                if let Some(huge) = sys::hugetlbfs_page_size_of(fd) {
                    return unaligned(huge);
                }
            }
            let err = Error::os("mmap(MAP_FIXED)", e)
                .with_opt_path(sys::fd_path(fd).as_deref())
                .with_addr(ptr as usize)
                .with_range(file_offset, len as u64);
            crate::mapping::with_memory_limits(err, e, len, prot.writable() && sharing == Sharing::Private)
        })?;
        self.replaced(offset, len, huge.is_some());
        if let Populate::Read | Populate::Write = populate {
            // SAFETY: the range was just mapped inside our reservation; populating does not
            // change contents.
            unsafe { sys::populate(ptr, len, populate == Populate::Write) }.map_err(|(name, e)| {
                Error::os(name, e)
                    .with_opt_path(sys::fd_path(fd).as_deref())
                    .with_addr(ptr as usize)
                    .with_range(file_offset, len as u64)
            })?;
        }
        Ok(())
    }

    /// Seals `[offset, offset + len)` (page multiples, all mapped or committed): `mseal(2)`,
    /// Linux 6.10+. Its pages can then no longer be unmapped, remapped, mapped over or have
    /// their protection changed (those calls fail with `EPERM`), until the process exits, and
    /// dropping the reservation leaves them mapped (and unmaps the rest). A kernel without `mseal` answers
    /// [`ErrorKind::Unsupported`] (`ENOSYS`).
    #[doc(alias = "mseal")]
    pub fn seal(&self, offset: usize, len: usize) -> Result<()> {
        let (ptr, _lend) = self.check_mut("mseal", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation; sealing changes no contents, and the
        // sealed pages are left mapped on drop (only their address space leaks).
        unsafe { sys::mseal(ptr, len) }.map_err(|e| {
            let err = if e == rustix::io::Errno::NOSYS {
                Error::new("mseal", ErrorKind::Unsupported).with_detail("mseal(2) needs Linux 6.10 or later")
            } else {
                Error::os("mseal", e)
            };
            err.with_addr(ptr as usize).with_range(offset as u64, len as u64)
        })?;
        self.sealed.lock().unwrap_or_else(|e| e.into_inner()).push((offset, len));
        Ok(())
    }

    /// Makes `[offset, offset + len)` a guard region: touching it raises `SIGSEGV`.
    /// `MADV_GUARD_INSTALL` markers where the kernel has them (Linux 6.13+; committed pages
    /// keep their protection and no VMA is split), else `mprotect(PROT_NONE)`. The contents
    /// are lost. [`unguard`](Self::unguard) or [`decommit`](Self::decommit) remove it.
    ///
    /// A range [sealed](Self::seal) is not kept from a guard either. Where the kernel has
    /// markers it takes them on sealed read-write pages and on sealed file or shared-memory
    /// pages whatever their protection (kernels that put markers on file pages: 6.18 does):
    /// touching them faults, and the private bytes are lost (a written private file page reads
    /// the file's bytes again after [`unguard`](Self::unguard); a shared page's bytes stay in
    /// its file). It refuses them (`EPERM`) only on sealed read-only anonymous pages. Without
    /// markers (`mprotect`) every sealed page refuses (`EPERM`).
    pub fn guard(&self, offset: usize, len: usize) -> Result<GuardKind> {
        let (ptr, _lend) = self.check_mut("guard", offset, len)?;
        // SAFETY: whole pages inside our reservation (checked), and only raw pointers into it
        // exist; the guard zaps its pages.
        let kind = unsafe { sys::anon::install_guard(ptr, len, true) }.map_err(|e| {
            Error::os("madvise(MADV_GUARD_INSTALL) / mprotect(PROT_NONE)", e).with_range(offset as u64, len as u64)
        })?;
        if kind == GuardKind::ProtNone && len > 0 {
            // Without markers (before 6.13) mprotect keeps the contents, but a guard loses them
            // as the markers' zap does: fresh PROT_NONE pages (found by the arm64 VM's 6.12).
            // (Not `self.decommit`: this call holds the lend lock it takes.)
            // SAFETY: as above: whole pages inside our reservation, only raw pointers into it.
            unsafe { self.decommit_raw(ptr, len) }.map_err(|e| {
                let err = Error::os("mmap(MAP_FIXED, PROT_NONE)", e)
                    .with_addr(ptr as usize)
                    .with_range(offset as u64, len as u64);
                crate::mapping::with_memory_limits(err, e, len, false)
            })?;
            self.replaced(offset, len, false);
        }
        Ok(kind)
    }

    /// Removes guard markers from `[offset, offset + len)` (`MADV_GUARD_REMOVE`); the pages
    /// then read back as zeros with the range's protection. For a
    /// [`GuardKind::ProtNone`] guard, [`commit`](Self::commit) the range instead.
    pub fn unguard(&self, offset: usize, len: usize) -> Result<()> {
        let (ptr, _lend) = self.check_mut("unguard", offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation; removing markers changes no contents.
        unsafe { sys::madvise(ptr, len, sys::kconst::MADV_GUARD_REMOVE) }
            .map_err(|e| Error::os("madvise(MADV_GUARD_REMOVE)", e).with_range(offset as u64, len as u64))
    }

    /// Resident pages of `[offset, offset + len)` (`mincore`).
    pub fn resident_pages(&self, offset: usize, len: usize) -> Result<usize> {
        let ptr = self.check("mincore", offset, len)?;
        let page = sys::page_size();
        let span = align_up(len as u64, page as u64).expect("inside reservation") as usize;
        let mut resident = 0;
        let mut vec = vec![0u8; (span / page).clamp(1, MINCORE_WINDOW_PAGES)];
        sys::mincore_windows(ptr as usize, span, &mut vec, |_, bytes| {
            resident += bytes.iter().filter(|&&b| b & 1 == 1).count();
        })
        .map_err(|(e, at, chunk)| Error::os("mincore", e).with_range((offset + at) as u64, chunk as u64))?;
        Ok(resident)
    }

    /// Names the ranges this reservation owns (`[anon:NAME]` in `/proc/self/maps`). Returns
    /// `false` (a no-op) when the kernel lacks `CONFIG_ANON_VMA_NAME`. File maps inside keep
    /// their file's name. A name no kernel accepts is an error, as for [`Mapping::set_name`](crate::Mapping::set_name).
    pub fn set_name(&mut self, name: &str) -> Result<bool> {
        let c = CString::new(name).map_err(|_| {
            Error::new("prctl(PR_SET_VMA_ANON_NAME)", ErrorKind::InvalidArgument).with_detail("name contains NUL")
        })?;
        if !crate::mapping::anon_name_is_acceptable(name) {
            return Err(crate::mapping::bad_anon_name(name));
        }
        let mut applied = true;
        // Around the ranges given up after a failed MAP_FIXED: another owner's mappings.
        let mut lost = self.lost.get_mut().unwrap_or_else(|e| e.into_inner()).clone();
        lost.sort_unstable();
        let pieces = self.owned_segments().flat_map(|(off, len)| {
            let mut at = off;
            let mut out = Vec::new();
            for &(s, l) in lost.iter().filter(|&&(s, l)| s < off + len && s + l > off) {
                if s > at {
                    out.push((at, s - at));
                }
                at = at.max(s + l);
            }
            if at < off + len {
                out.push((at, off + len - at));
            }
            out
        });
        for (off, len) in pieces.collect::<Vec<_>>() {
            // SAFETY: the piece is ours (no carved or given-up range); naming changes no
            // contents.
            match unsafe { sys::set_anon_name(self.base.as_ptr().add(off), len, Some(&c)) } {
                Ok(()) => {}
                // EBADF: a file map inside; names only apply to anonymous areas.
                Err(rustix::io::Errno::BADF) => {}
                // EINVAL for a name the kernel would accept: it cannot name areas (a no-op).
                Err(rustix::io::Errno::INVAL) => applied = false,
                Err(e) => {
                    return Err(Error::os("prctl(PR_SET_VMA_ANON_NAME)", e)
                        .with_range(off as u64, len as u64)
                        .with_detail(format!("name {name:?}")))
                }
            }
        }
        self.name = Some(c);
        self.name_applied = applied;
        Ok(applied)
    }

    /// Moves ownership of `[offset, offset + len)` (page multiples) to a new sub-reservation,
    /// which keeps the range's current state (committed pages, contents, maps). This
    /// reservation then refuses operations on the range and does not unmap it on drop; the
    /// sub-reservation unmaps it when it is dropped, before or after its parent.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// use mmkit::{Protection, Reservation};
    /// let mut heap = Reservation::new(64 << 20)?;
    /// let young = heap.carve(0, 16 << 20)?; // the young generation, owned separately
    /// young.commit(0, 1 << 20, Protection::READ_WRITE)?;
    /// assert!(heap.commit(0, mmkit::page_size(), Protection::READ_WRITE).is_err());
    /// drop(heap); // unmaps the remaining 48 MiB only
    /// // SAFETY: committed read-write above; still mapped because `young` owns it.
    /// unsafe { young.as_mut_ptr().write(1) };
    /// # Ok(()) }
    /// ```
    pub fn carve(&mut self, offset: usize, len: usize) -> Result<Reservation> {
        let page = sys::page_size();
        // `&mut self`: nothing lends meanwhile, the guard can go at once.
        drop(self.check_mut("carve", offset, len)?);
        self.refuse_cutting_huge_maps("carve", offset, len)?;
        if self.lent.is_some() {
            return Err(Error::new("carve", ErrorKind::InvalidArgument)
                .with_range(offset as u64, len as u64)
                .with_detail("a lent reservation goes back whole to its lender; it cannot be carved"));
        }
        if len == 0 || len % page != 0 {
            return Err(Error::new("carve", ErrorKind::InvalidArgument)
                .with_range(offset as u64, len as u64)
                .with_detail("a sub-reservation needs a non-zero page-multiple length"));
        }
        let pos = self.carved.partition_point(|&(o, _)| o < offset);
        self.carved.insert(pos, (offset, len));
        Ok(Reservation {
            // SAFETY: `offset < self.len` (checked), so the pointer stays in our range.
            base: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) },
            len,
            carved: Vec::new(),
            name: self.name.clone(),
            name_applied: self.name_applied,
            lent: None,
            book: Mutex::new(None),
            sealed: std::sync::Mutex::new(self.sealed_within(offset, len)),
            huge_maps: std::sync::Mutex::new(self.huge_maps_within(offset, len)),
            lost: Default::default(),
        })
    }

    /// Lends `[offset, offset + len)` (page multiples) to a new reservation for a while: it
    /// maps, commits and protects in the range like any reservation, and when it is dropped the
    /// range is returned decommitted (reserved `PROT_NONE`, no memory) instead of unmapped, so
    /// this reservation can use it again. This is how a loader places a library in address
    /// space its caller reserved (`ANDROID_DLEXT_RESERVED_ADDRESS`).
    ///
    /// While the lent reservation lives, this one refuses to change the range (commit,
    /// decommit, map, guard, seal, carve, lend it again: [`ErrorKind::InvalidArgument`]). If
    /// this one is dropped first, the lent range stays mapped (the drop unmaps around it) until
    /// the lent reservation is dropped, which then unmaps it: nothing in it disappears under
    /// its borrower. Where the range cannot be decommitted when it is given back (`ENOMEM`: the
    /// process is at `vm.max_map_count` and the range lies inside one of its areas), it still
    /// holds the borrower's pages: this one then refuses it the same way until it is dropped,
    /// which unmaps it.
    ///
    /// The range is lent as it is: pages the lender committed, mapped or guarded there stay so,
    /// and the borrower's [`commit`](Reservation::commit) only changes protections (a guard
    /// page, `MADV_GUARD_INSTALL`, still faults after it: [`unguard`](Reservation::unguard)
    /// removes it). A borrower that wants fresh pages starts with
    /// [`decommit`](Reservation::decommit) or [`commit_zeroed`](Reservation::commit_zeroed) of
    /// the range, as mmkit-elf does.
    ///
    /// ```
    /// # fn main() -> mmkit::Result<()> {
    /// use mmkit::{Protection, Reservation};
    /// let page = mmkit::page_size();
    /// let space = Reservation::new(16 * page)?;
    /// let lent = space.lend(4 * page, 2 * page)?;
    /// lent.commit(0, page, Protection::READ_WRITE)?;
    /// assert!(space.decommit(4 * page, page).is_err()); // not the lender's to change now
    /// drop(space); // unmaps all but the lent pages
    /// // SAFETY: committed read-write above; still mapped because `lent` owns it.
    /// unsafe { lent.as_mut_ptr().write(1) };
    /// # Ok(()) }
    /// ```
    pub fn lend(&self, offset: usize, len: usize) -> Result<Reservation> {
        // A lent reservation goes back whole to its lender: lending part of it on would leave
        // that part's owner unknown to the first lender when the middle one is dropped.
        if self.lent.is_some() {
            return Err(Error::new("lend", ErrorKind::InvalidArgument)
                .with_range(offset as u64, len as u64)
                .with_detail("a lent reservation goes back whole to its lender; it cannot lend in turn"));
        }
        let (_, mut lend) = self.check_mut("lend", offset, len)?;
        self.refuse_cutting_huge_maps("lend", offset, len)?;
        if len == 0 || len % sys::page_size() != 0 {
            return Err(Error::new("lend", ErrorKind::InvalidArgument)
                .with_range(offset as u64, len as u64)
                .with_detail("a lent range needs a non-zero page-multiple length"));
        }
        let book = Arc::clone(lend.get_or_insert_with(Default::default));
        book.lock().unwrap_or_else(|e| e.into_inner()).out.push((offset, len));
        Ok(Reservation {
            // SAFETY: `offset < self.len` (checked), so the pointer stays in our range.
            base: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(offset)) },
            len,
            carved: Vec::new(),
            name: self.name.clone(),
            name_applied: self.name_applied,
            lent: Some((book, offset)),
            book: Mutex::new(None),
            sealed: std::sync::Mutex::new(self.sealed_within(offset, len)),
            huge_maps: std::sync::Mutex::new(self.huge_maps_within(offset, len)),
            lost: Default::default(),
        })
    }

    /// The ranges sealed with [`seal`](Self::seal) that overlap `[offset, offset + len)`,
    /// clipped to it and relative to `offset`: what a carved or lent reservation inherits.
    fn sealed_within(&self, offset: usize, len: usize) -> Vec<(usize, usize)> {
        let sealed = self.sealed.lock().unwrap_or_else(|e| e.into_inner());
        sealed
            .iter()
            .filter(|&&(s, l)| s < offset + len && s + l > offset)
            .map(|&(s, l)| {
                let (start, end) = (s.max(offset), (s + l).min(offset + len));
                (start - offset, end - start)
            })
            .collect()
    }

    /// Refuses a sub-range whose start or end falls inside a mapping of a hugetlbfs file.
    fn refuse_cutting_huge_maps(&self, op: &'static str, offset: usize, len: usize) -> Result<()> {
        let huge = self.huge_maps.lock().unwrap_or_else(|e| e.into_inner());
        let inside = |at: usize| huge.iter().find(|&&(o, l)| o < at && at < o + l);
        if let Some(&(o, l)) = inside(offset).or_else(|| inside(offset + len)) {
            return Err(Error::new(op, ErrorKind::Unaligned)
                .with_addr(self.base.as_ptr() as usize)
                .with_range(offset as u64, len as u64)
                .with_detail(format!(
                    "the range cuts [{o:#x}, {:#x}), a mapping of a hugetlbfs file, which the kernel unmaps \
                     only whole",
                    o + l
                )));
        }
        Ok(())
    }

    /// The hugetlbfs mappings inside `[offset, offset + len)`, relative to `offset`: what a
    /// carved or lent reservation inherits (none is cut: see `refuse_cutting_huge_maps`).
    fn huge_maps_within(&self, offset: usize, len: usize) -> Vec<(usize, usize)> {
        let huge = self.huge_maps.lock().unwrap_or_else(|e| e.into_inner());
        huge.iter().filter(|&&(o, l)| o >= offset && o + l <= offset + len).map(|&(o, l)| (o - offset, l)).collect()
    }

    /// Forgets the hugetlbfs mappings that `[offset, offset + len)` replaced, and records the
    /// range when it now holds one (`huge`).
    fn replaced(&self, offset: usize, len: usize, huge: bool) {
        let mut maps = self.huge_maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.retain(|&(o, l)| !(o >= offset && o + l <= offset + len));
        if huge {
            maps.push((offset, len));
        }
    }

    /// Gives `[off, off + len)` (whole pages this value owns) back: unmaps it, or with
    /// `give_back` (lent, and the lender still alive) returns it to the lender decommitted.
    /// The kernel refuses a call that touches a sealed page as a whole (`EPERM`), and pages may
    /// be sealed that this value has not recorded (sealed by a reservation it lent them to, or
    /// with `mseal` directly): then the range is split in halves and each retried, so
    /// everything but the sealed pages is given back, in O(k log n) calls for k such sealed
    /// ranges. At `vm.max_map_count` a range inside one area answers `ENOMEM` instead, sealed
    /// or not: its memory is then dropped unless it is sealed (`discard_after_failed_unmap`).
    ///
    /// # Safety
    /// Only from `drop`: `[off, off + len)` is whole pages this value owns (no carved range),
    /// and nothing uses them afterwards.
    unsafe fn release(&self, off: usize, len: usize, give_back: bool, stale: &mut Vec<(usize, usize)>) {
        let page = sys::page_size();
        // SAFETY: `off + len <= self.len`, so the pointer stays in our range.
        let ptr = unsafe { self.base.as_ptr().add(off) };
        let done = if give_back {
            // SAFETY: whole pages we own (the caller's contract); no reference into them exists
            // (we hand out raw pointers only, and the reservation is being dropped).
            match unsafe { self.decommit_or_refill(ptr, len) } {
                Ok(()) => Ok(()),
                Err((e, hole)) => {
                    if e != rustix::io::Errno::PERM && !hole {
                        // Not decommitted (`ENOMEM` at `vm.max_map_count`: the lender's area
                        // cannot be split) and no hole: the range still holds this value's
                        // pages, bytes and protections. Handed back as reserved, the lender's
                        // next `commit` (an `mprotect`) would show them instead of zeros, or
                        // write through to a file mapped here: the lender refuses it instead,
                        // and unmaps it when dropped. `EPERM` (a sealed page) is halved
                        // around below.
                        stale.push((off, len));
                    }
                    Err(e)
                }
            }
        } else {
            // SAFETY: as above; carved ranges are never passed here (their sub-reservations
            // unmap them).
            unsafe { sys::munmap(ptr, len) }
        };
        if done == Err(rustix::io::Errno::PERM) && len > page {
            let half = len / page / 2 * page;
            // SAFETY: the two halves of our range, whole pages (the caller's contract).
            unsafe {
                self.release(off, half, give_back, stale);
                self.release(off + half, len - half, give_back, stale);
            }
        } else if done == Err(rustix::io::Errno::NOMEM) && !give_back {
            // At `vm.max_map_count` the kernel cannot cut the middle out of an area: the address
            // space leaks, but its memory need not (MADV_DONTNEED splits nothing). Only after a
            // failed `munmap`, which changes nothing when it fails: a failed `MAP_FIXED` (giving
            // back) may have left a hole that another owner's mapping now holds. Pages sealed
            // here that this value has not recorded (by a reservation it lent them to, which
            // gave them back) keep their contents: `discard_after_failed_unmap` leaves them.
            // SAFETY: whole pages we own, all still mapped (munmap failed as a whole); nothing
            // reads them again.
            unsafe { sys::discard_after_failed_unmap(ptr, len) };
        }
    }

    /// The ranges `(offset, len)` this reservation still owns: everything minus carved ranges.
    fn owned_segments(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        // The gaps between carved ranges (sorted by offset), then the tail: no allocation (a
        // dropped reservation is on every library unload's path).
        let bounds = self.carved.iter().map(|&(o, l)| (o, o + l)).chain(std::iter::once((self.len, self.len)));
        bounds
            .scan(0usize, |at, (o, end)| {
                let gap = (o > *at).then(|| (*at, o - *at));
                *at = end;
                Some(gap)
            })
            .flatten()
    }

    /// Writes back dirty shared file pages in `[offset, offset + len)` (widened to pages).
    pub fn flush(&self, offset: usize, len: usize) -> Result<()> {
        let page = sys::page_size() as u64;
        let (start, span) = crate::page::page_span(offset as u64, len as u64, page)
            .ok_or_else(|| Error::new("msync", ErrorKind::OutOfBounds).with_range(offset as u64, len as u64))?;
        let ptr = self.check("msync", start as usize, span as usize)?;
        if span == 0 {
            return Ok(());
        }
        // SAFETY: the range is inside our reservation; msync changes no contents.
        unsafe { sys::msync(ptr, span as usize, true) }
            .map_err(|e| Error::os("msync(MS_SYNC)", e).with_addr(ptr as usize).with_range(offset as u64, len as u64))
    }
}

/// Whether any page of `[ptr, ptr + len)` is unmapped (`mincore` answers `ENOMEM`); an error
/// of another kind counts as unmapped too (the caller then gives up what it cannot take back:
/// the safe side).
fn any_unmapped(ptr: *mut u8, len: usize) -> bool {
    let mut vec = [0u8; 64];
    sys::mincore_windows(ptr as usize, len, &mut vec, |_, _| {}).is_err()
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut sealed = std::mem::take(self.sealed.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Given up after a failed MAP_FIXED: another owner's now.
        sealed.extend_from_slice(self.lost.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Ranges lent out and not given back stay mapped for their borrowers, who unmap them.
        if let Some(book) = self.book.get_mut().unwrap_or_else(|e| e.into_inner()) {
            let mut book = book.lock().unwrap_or_else(|e| e.into_inner());
            book.lender_dropped = true;
            sealed.extend_from_slice(&book.out);
            sealed.extend_from_slice(&book.given_up);
        }
        sealed.sort_unstable();
        // Lent: decommitted back to a living lender, whose book says so (held until the range is
        // given back, so that the lender cannot be dropped in between and skip it), or unmapped.
        let lender = self.lent.as_ref().map(|(book, at)| (book.lock().unwrap_or_else(|e| e.into_inner()), *at));
        let give_back = lender.as_ref().is_some_and(|(book, _)| !book.lender_dropped);
        // Ranges not decommitted back to the lender (see `release`); stays empty otherwise
        // (no allocation: a dropped reservation is on every library unload's path).
        let mut stale = Vec::new();
        // Every segment we own (a lent reservation has no carved ranges, so it is one), around
        // the sealed ranges: the kernel refuses a call touching one as a whole. Unmapped, or
        // decommitted back to the lender when lent.
        for (off, len) in self.owned_segments() {
            let mut at = off;
            for &(s, l) in sealed.iter().filter(|&&(s, l)| s < off + len && s + l > off) {
                if s > at {
                    // SAFETY: whole pages of a segment we own, before a sealed range; the
                    // reservation is being dropped.
                    unsafe { self.release(at, s - at, give_back, &mut stale) };
                }
                at = at.max(s + l);
            }
            if at < off + len {
                // SAFETY: as above, the rest of the segment.
                unsafe { self.release(at, off + len - at, give_back, &mut stale) };
            }
        }
        if let Some((mut book, at)) = lender {
            book.out.retain(|&(o, _)| o != at);
            // What was given up (here or while giving the range back) stays out of the lender's
            // hands for good: it is another owner's.
            let lost = self.lost.get_mut().unwrap_or_else(|e| e.into_inner());
            book.given_up.extend(lost.iter().map(|&(o, l)| (at + o, l)));
            book.stale.extend(stale.iter().map(|&(o, l)| (at + o, l)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hole a failed `MAP_FIXED` leaves (made here by hand), with another owner's page
    /// placed in it meanwhile: the free pages are taken back, the other owner's page is given
    /// up, refused by every operation and left mapped by the drop.
    #[test]
    fn a_hole_is_taken_back_and_another_owners_page_given_up() {
        let page = sys::page_size();
        // Another test thread's mapping may land in the hole before it is taken back (then it
        // is given up too, rightly): tried again with a new reservation, a few times.
        for attempt in 1..=20 {
            let r = Reservation::new(8 * page).unwrap();
            r.commit(0, 8 * page, Protection::READ_WRITE).unwrap();
            let base = r.as_mut_ptr();
            // SAFETY: pages 2 and 4 of our 8-page reservation.
            let (hole, fourth) = unsafe { (base.add(2 * page), base.add(4 * page)) };
            let prot = ProtFlags::READ | ProtFlags::WRITE;
            // SAFETY: page 4 of our own reservation, nothing refers to it: replaced at once by
            // "another owner's" page, which this test unmaps itself at the end.
            let other = unsafe { sys::mmap(fourth.cast(), page, prot, MapFlags::PRIVATE | MapFlags::FIXED, None, 0) };
            assert_eq!(other, Ok(fourth));
            // SAFETY: pages 2, 3 and 5 of our own reservation, nothing refers to them (the
            // kernel's gap around the other owner's page).
            unsafe { sys::munmap(hole, 2 * page) }.unwrap();
            // SAFETY: as above.
            unsafe { sys::munmap(fourth.add(page), page) }.unwrap();
            // SAFETY: the other owner's fresh page.
            unsafe { fourth.write(9) };
            r.refill_after_failed_fixed(hole, 4 * page);
            if *r.lost.lock().unwrap() != vec![(4 * page, page)] {
                // A mapping of another thread took part of the hole: given up as well.
                drop(r);
                // SAFETY: this test's page, done with (the drop left it).
                unsafe { sys::munmap(fourth, page) }.unwrap();
                assert!(attempt < 20, "other mappings took the hole {attempt} times");
                continue;
            }
            assert!(!any_unmapped(base, 8 * page), "the free pages were taken back");
            assert!(r.decommit(4 * page, page).is_err() && r.commit(0, 8 * page, Protection::READ).is_err());
            r.decommit(2 * page, 2 * page).unwrap();
            r.decommit(5 * page, 3 * page).unwrap();
            drop(r);
            // SAFETY: the other owner's page, which the drop must have left mapped.
            assert_eq!(unsafe { fourth.read() }, 9);
            // SAFETY: the other owner's page, done with.
            unsafe { sys::munmap(fourth, page) }.unwrap();
            return;
        }
    }

    /// Regression (review diff3): `check_mut` looked at the given-up ranges before it took the
    /// lock that orders the operations, so an operation whose check passed just before another
    /// thread's failed `MAP_FIXED` gave a range up (under that lock) then mapped over it, over
    /// another owner's mapping. The failed call is played here by hand, under the lock.
    #[test]
    fn an_operation_waiting_for_the_lock_sees_a_range_given_up_meanwhile() {
        let page = sys::page_size();
        let r = Reservation::new(4 * page).unwrap();
        let base = r.as_mut_ptr();
        std::thread::scope(|s| {
            let held = r.book.lock().unwrap();
            // Checks the range, then waits for the lock the failing call below holds.
            let waiting = s.spawn(|| r.decommit(0, 4 * page));
            std::thread::sleep(std::time::Duration::from_millis(200));
            // SAFETY: pages 1 and 2 of our own reservation, nothing refers to them: the hole a
            // failed MAP_FIXED leaves.
            unsafe { sys::munmap(base.add(page), 2 * page) }.unwrap();
            let flags = MapFlags::PRIVATE | MapFlags::from_bits_retain(sys::kconst::MAP_FIXED_NOREPLACE as u32);
            // SAFETY: page 1, unmapped just above: "another owner's" mapping placed in the hole
            // (NOREPLACE: another test thread's may be there already).
            let other = unsafe { sys::mmap(base.add(page).cast(), page, ProtFlags::READ, flags, None, 0) };
            // SAFETY: page 1 of our 4-page reservation.
            r.refill_after_failed_fixed(unsafe { base.add(page) }, 2 * page);
            drop(held);
            let res = waiting.join().unwrap();
            assert!(res.is_err(), "mapped over a range given up while it waited for the lock");
            if let Ok(p) = other {
                // SAFETY: the page this test mapped as another owner's, which the drop leaves.
                unsafe { sys::munmap(p, page) }.unwrap();
            }
        });
    }

    /// Regression (review diff3): a range a lent reservation gave up came back to its lender
    /// refused as "lent out ... and not given back yet", which it had been.
    #[test]
    fn a_range_given_up_while_lent_is_refused_as_such() {
        let page = sys::page_size();
        let lender = Reservation::new(4 * page).unwrap();
        let lent = lender.lend(page, 2 * page).unwrap();
        // As after a failed MAP_FIXED whose hole another mapping took (here the page stays a
        // reserved page of ours, unmapped by hand below).
        lent.lost.lock().unwrap().push((0, page));
        drop(lent);
        let err = lender.commit(page, page, Protection::READ).unwrap_err();
        assert!(err.to_string().contains("given up"), "{err}");
        lender.commit(2 * page, page, Protection::READ).unwrap();
        let at = lender.as_mut_ptr();
        drop(lender);
        // SAFETY: the page the drops left mapped (given up), ours: nothing refers to it.
        unsafe { sys::munmap(at.add(page), page) }.unwrap();
    }

    /// Regression (review diff3): `set_name` named every segment the reservation owns, the
    /// ranges given up after a failed `MAP_FIXED` included: another owner's anonymous mapping
    /// there took the reservation's name (`prctl(PR_SET_VMA_ANON_NAME)` over it).
    #[test]
    fn set_name_leaves_a_range_given_up_alone() {
        let page = sys::page_size();
        let mut r = Reservation::new(4 * page).unwrap();
        // SAFETY: page 1 of our own reservation, nothing refers to it: replaced by "another
        // owner's" page (as after a failed MAP_FIXED and another mmap in the hole), which this
        // test unmaps itself at the end.
        let other = unsafe {
            let at = r.as_mut_ptr().add(page);
            let prot = ProtFlags::READ | ProtFlags::WRITE;
            sys::mmap(at.cast(), page, prot, MapFlags::PRIVATE | MapFlags::FIXED, None, 0).unwrap()
        };
        r.lost.lock().unwrap().push((page, page));
        let other_name = c"other-owner";
        // SAFETY: the other owner's anonymous page; naming changes no contents.
        if unsafe { sys::set_anon_name(other, page, Some(other_name)) }.is_err() {
            eprintln!("skipped: the kernel cannot name anonymous areas");
        } else {
            assert!(r.set_name("mmkit-mine").unwrap());
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let line = maps
                .lines()
                .find(|l| l.starts_with(&format!("{:x}-", other as usize)))
                .expect("the other owner's page is mapped");
            assert!(line.ends_with("[anon:other-owner]"), "another owner's mapping was renamed: {line}");
        }
        drop(r);
        // SAFETY: the other owner's page, which the drop left mapped; done with.
        unsafe { sys::munmap(other, page) }.unwrap();
    }
}
