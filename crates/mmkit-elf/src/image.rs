//! The loaded image and its checked tables: the bottom of the loader, on which parsing
//! (`dynamic`, `symbols`), relocation and execution stack, in that order.
//!
//! [`Image::load`] carries out a [`Plan`] through mmkit's core, as bionic's linker names the
//! phases: reserve the whole span (an [`mmkit::Reservation`]: `PROT_NONE`, a range lent by
//! the caller's, or, as glibc does, the first segment's file map over the whole span, which
//! saves an `mmap`), map each `PT_LOAD` privately from the source's fd into it, zero the tail of
//! the last file page of writable segments, commit the rest of `.bss` as anonymous pages of the
//! reservation (named `mmkit .bss <lib>` in `/proc/self/maps` where the kernel supports
//! `PR_SET_VMA_ANON_NAME`); after relocation, [`Image::protect_relro`] (sharing and sealing
//! RELRO on request) and [`Image::call_initializer`]. Dropping the image drops the reservation,
//! which unmaps it (or returns a lent range decommitted). No `mmap`/`mprotect`/`munmap` call is
//! made here: mmkit's core is the one owner of address space.
//!
//! Everything that touches the loaded image's memory goes through [`Image`], whose accessors
//! are bounds-checked against the mapped segments; [`Table`]s are checked once, when made.
//! [`Name`] is a symbol or version name read from those tables, with its hash.
//!
//! With the executor and the relocation modules, one of the modules of the crate that contain
//! `unsafe`.

// One of the modules with `unsafe`: the loaded image's bounds-checked accessors, under the executor.
#![allow(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::options::{LoadOptions, Place, RelroMode};
use crate::plan::{Plan, Protection};
use crate::source::OpenSource;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A loaded image: the reservation holding all segments of one library.
///
/// # Safety (the shared contract of the raw accesses below)
/// `base..base+len` lies in `space`, a reservation this value owns until drop, and every
/// mapping in it was made by this value through the reservation; every access
/// is bounds-checked against the `PT_LOAD` ranges of the plan, which lie inside it. The loader
/// only writes while the library is being relocated, before any of its code runs.
#[derive(Debug)]
pub(crate) struct Image {
    /// Unique among the images of the process (ties a [`Table`] to the image it was made in).
    id: u64,
    /// The address space of the image: every segment is mapped, committed and protected
    /// through it (mmkit's core is the one owner of the pages), and dropping it unmaps them.
    space: mmkit::Reservation,
    /// For a range lent by the caller's reservation: its entry in [`LENT`], removed once
    /// `space` (declared above: dropped first) has returned the range.
    lent: Option<LentRange>,
    /// Offset of the span in `space` (the head keeps segments aligned to their `p_align`).
    offset: usize,
    /// Run-time address of the span.
    base: usize,
    /// Bytes of the span.
    len: usize,
    /// Load bias: run-time address = link-time address + bias.
    bias: u64,
    /// Link-time `[start, end)` of mapped pages with their protection (after RELRO, the RELRO
    /// pages are read-only; `writes_done` forbids further writes).
    ranges: Vec<(u64, u64, Protection)>,
    /// Index in `ranges` of the last range an access fell in.
    last_range: AtomicUsize,
    writes_done: std::sync::atomic::AtomicBool,
    /// Seal the code and RELRO once relocated ([`LoadOptions::seal`]).
    seal: bool,
    /// The RELRO file to write or use once relocated ([`LoadOptions::write_relro`]), taken
    /// by [`Image::protect_relro`].
    relro_file: std::sync::Mutex<Option<(RelroMode, rustix::fd::OwnedFd)>>,
    /// RELRO pages `(mapped from the RELRO file, private)`, once shared.
    relro_sharing: std::sync::OnceLock<(u64, u64)>,
    /// The code and RELRO are sealed ([`Image::seal_now`] done, at load or on a later open).
    sealed: std::sync::atomic::AtomicBool,
}

/// Source of [`Image`] ids (0 is never used: an empty [`Table`] belongs to no image).
static NEXT_IMAGE_ID: AtomicU64 = AtomicU64::new(1);

/// The ranges `[start, end)` of callers' reservations that images hold now
/// ([`LoadOptions::reserved`]), with the library's name: a second library asked into a range
/// still holding one (another handle keeps it, or it is pinned) is refused instead of being
/// mapped over it.
static LENT: std::sync::Mutex<Vec<(usize, usize, String)>> = std::sync::Mutex::new(Vec::new());

fn lent_ranges() -> std::sync::MutexGuard<'static, Vec<(usize, usize, String)>> {
    LENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// An image's entry in [`LENT`] (by its start), removed on drop.
#[derive(Debug)]
struct LentRange(usize);

impl Drop for LentRange {
    fn drop(&mut self) {
        lent_ranges().retain(|&(start, _, _)| start != self.0);
    }
}

/// `len` consecutive plain-data values (ELF structures) at a place in one [`Image`], checked
/// once, when made by [`Image::table`], to lie in its readable pages; read in place with
/// [`Image::get`] (and [`Image::bytes`] for strings), which check that the image is the same.
#[derive(Debug)]
pub(crate) struct Table<T> {
    /// Id of the image the table lies in.
    image: u64,
    /// Run-time address of the first value.
    at: usize,
    len: usize,
    /// Checked to lie in pages the loader never writes.
    immutable: bool,
    _values: PhantomData<fn() -> T>,
}

impl<T> Table<T> {
    /// A table of no values.
    pub(crate) const fn empty() -> Table<T> {
        Table { image: 0, at: 0, len: 0, immutable: true, _values: PhantomData }
    }

    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Run-time address of value `i` (`dladdr1`'s `RTLD_DL_SYMENT` answer: the symbol's entry).
    pub(crate) fn address_of(&self, i: usize) -> Option<usize> {
        (i < self.len).then(|| self.at + i * std::mem::size_of::<T>())
    }
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table::empty()
    }
}

impl Image {
    /// Reserves the span and maps every segment of `plan` from `src`, all through an
    /// [`mmkit::Reservation`]: segments are file maps placed in it, `.bss` is committed
    /// anonymous pages of it (zero on first touch), holes stay reserved `PROT_NONE`.
    ///
    /// With `place` (the caller's reservation, [`crate::LoadOptions::reserved`]), the span is a
    /// range lent by that reservation instead: dropping the image returns it decommitted.
    pub(crate) fn load(plan: &Plan, src: &OpenSource, name: &str, options: &LoadOptions<'_>) -> Result<Image> {
        let mut image = Image::load_placed(plan, src, name, options.place.as_ref())?;
        image.seal = options.seal;
        if let Some((mode, fd)) = options.relro {
            let fd = rustix::io::fcntl_dupfd_cloexec(fd, 0)
                .map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC) of the RELRO file", e))?;
            check_relro_file(&fd, mode)?;
            image.relro_file = std::sync::Mutex::new(Some((mode, fd)));
        }
        Ok(image)
    }

    /// [`Image::load`] at `place`, or in a fresh reservation.
    fn load_placed(plan: &Plan, src: &OpenSource, name: &str, place: Option<&Place<'_>>) -> Result<Image> {
        if let Some(place) = place {
            let lent = place.check(plan).and_then(|()| {
                let (r, offset) = place.range();
                let op = "load into the reserved address space";
                // In the reservation (checked above): no overflow.
                let (start, end) =
                    (r.as_ptr() as usize + offset, r.as_ptr() as usize + offset + plan.span_len as usize);
                if let Some((s, e, held)) = lent_ranges().iter().find(|&&(s, e, _)| s < end && start < e) {
                    return Err(Error::new(
                        op,
                        ErrorKind::ReservationInUse,
                        format!(
                            "[{start:#x}, {end:#x}) overlaps [{s:#x}, {e:#x}), where {held} is still loaded \
                             (another handle keeps it, or it is pinned)"
                        ),
                    )
                    .with_range(offset as u64, plan.span_len));
                }
                // The range stays mapped for the library if the caller drops the reservation
                // first, and the reservation refuses to change it while the library holds it.
                let lent = r.lend(offset, plan.span_len as usize).map_err(|e| Error::from_core(op, &e))?;
                // No pages of an earlier use stay: `.bss` must be fresh zero pages.
                lent.decommit(0, plan.span_len as usize).map_err(|e| Error::from_core(op, &e))?;
                Ok(lent)
            });
            match lent {
                Ok(lent) => {
                    let (start, end) = (lent.as_ptr() as usize, lent.as_ptr() as usize + lent.len());
                    let mut image = Image::load_into(plan, src, name, lent, 0, false)?;
                    lent_ranges().push((start, end, name.to_owned()));
                    image.lent = Some(LentRange(start));
                    return Ok(image);
                }
                Err(_) if place.is_hint() => {}
                Err(e) => return Err(e),
            }
        }
        let page = plan.page_size;
        let align = plan.max_align.max(page);
        let too_large = || Error::new("reserve", ErrorKind::Io, "span too large").with_range(0, plan.span_len);
        let span = usize::try_from(plan.span_len).map_err(|_| too_large())?;
        // The bias must keep every segment aligned to its p_align: start ≡ span_vaddr (mod
        // align). An `align`-aligned reservation with this head gives that.
        let head = (plan.span_vaddr & (align - 1)) as usize;
        let total = span.checked_add(head).ok_or_else(too_large)?;
        // As glibc does: the first segment mapped over the whole span is the reservation (one
        // `mmap` fewer); the other segments replace the rest, holes are decommitted. Only with
        // page alignment (larger alignment needs an over-reserve and trim) and a first segment
        // that starts the span and is not prefaulted.
        if let Some(first) = plan.segments.first().filter(|f| {
            align as usize == mmkit::page_size()
                && head == 0
                && f.map_vaddr == plan.span_vaddr
                && f.map_file_len > 0
                && !f.prefault
        }) {
            let offset = src.offset() + first.map_offset;
            // SAFETY: fresh address space the kernel picks; the source's file contract is the
            // one `Library::open`'s caller accepted.
            let space = unsafe {
                mmkit::reserve::ReserveOptions::new(total).reserve_mapping_file(
                    first.prot,
                    mmkit::Sharing::Private,
                    src.fd(),
                    offset,
                )
            }
            .map_err(|e| {
                let op = format!("mmap of segment {} over the whole {total:#x}-byte span", first.phdr_index);
                noexec_hint(Error::from_core(op, &e), first.prot)
                    .with_range(offset, total as u64)
                    .with_path(src.label())
            })?;
            return Image::load_into(plan, src, name, space, 0, true);
        }
        let space = mmkit::reserve::ReserveOptions::new(total)
            .align(align as usize)
            .reserve()
            .map_err(|e| Error::from_core("reserve", &e).with_range(0, total as u64))?;
        Image::load_into(plan, src, name, space, head, false)
    }

    /// Maps every segment of `plan` from `src` into `space` at `offset` (the span's start),
    /// which must be reserved `PROT_NONE` and at least the span long; or, with
    /// `first_mapped`, hold the first segment's file map over the whole span (then whatever
    /// no segment covers is decommitted).
    fn load_into(
        plan: &Plan,
        src: &OpenSource,
        name: &str,
        space: mmkit::Reservation,
        offset: usize,
        first_mapped: bool,
    ) -> Result<Image> {
        let base = space.as_ptr() as usize + offset;
        let mut image = Image {
            id: NEXT_IMAGE_ID.fetch_add(1, Ordering::Relaxed),
            offset,
            base,
            len: plan.span_len as usize,
            bias: (base as u64).wrapping_sub(plan.span_vaddr),
            space,
            lent: None,
            // A file range and a `.bss` range per segment at most.
            ranges: Vec::with_capacity(2 * plan.segments.len()),
            last_range: AtomicUsize::new(0),
            writes_done: std::sync::atomic::AtomicBool::new(false),
            seal: false,
            relro_file: std::sync::Mutex::new(None),
            relro_sharing: std::sync::OnceLock::new(),
            sealed: std::sync::atomic::AtomicBool::new(false),
        };
        // End of what the segments so far cover (with `first_mapped`, the file holds the rest).
        let mut covered = plan.span_vaddr;
        for (i, seg) in plan.segments.iter().enumerate() {
            if first_mapped && seg.map_vaddr > covered {
                image.decommit_hole(covered, seg.map_vaddr)?;
            }
            covered = covered.max(seg.map_end());
            if first_mapped && i == 0 {
                image.ranges.push((seg.map_vaddr, seg.map_vaddr + seg.map_file_len, seg.prot));
            } else if seg.map_file_len > 0 {
                let at = image.space_offset(seg.map_vaddr);
                let offset = src.offset() + seg.map_offset;
                // SAFETY: the pages replaced lie in our own reservation (the planner keeps
                // segments inside the span) and nothing refers to them yet; the source's file
                // contract is the one `Library::open`'s caller accepted.
                unsafe {
                    image.space.map_file_at_with(
                        at,
                        seg.map_file_len as usize,
                        seg.prot,
                        mmkit::Sharing::Private,
                        src.fd(),
                        offset,
                        if seg.prefault { mmkit::Populate::MapPopulate } else { mmkit::Populate::No },
                    )
                }
                .map_err(|e| {
                    noexec_hint(Error::from_core(format!("mmap of segment {}", seg.phdr_index), &e), seg.prot)
                        .with_range(offset, seg.map_file_len)
                        .with_path(src.label())
                })?;
                image.ranges.push((seg.map_vaddr, seg.map_vaddr + seg.map_file_len, seg.prot));
            }
            if seg.zero_len > 0 {
                let at = image.addr(seg.vaddr + seg.file_size);
                // SAFETY: the planner only asks for zeroing in writable segments, within the
                // last file page just mapped read-write and private.
                unsafe { std::ptr::write_bytes(at as *mut u8, 0, seg.zero_len as usize) };
            }
            if seg.bss_len > 0 {
                // Reserved pages never touched: committing them gives zero pages; pages the
                // first segment's map covered need fresh ones.
                let at = image.space_offset(seg.bss_vaddr);
                let commit = if first_mapped { mmkit::Reservation::commit_zeroed } else { mmkit::Reservation::commit };
                commit(&image.space, at, seg.bss_len as usize, seg.prot).map_err(|e| {
                    Error::from_core(format!("commit of .bss of segment {}", seg.phdr_index), &e)
                        .with_addr_range(image.addr(seg.bss_vaddr), seg.bss_len)
                })?;
                name_bss(image.addr(seg.bss_vaddr), seg.bss_len, name);
                image.ranges.push((seg.bss_vaddr, seg.bss_vaddr + seg.bss_len, seg.prot));
            }
        }
        Ok(image)
    }

    /// Returns link-time `[start, end)` (page-aligned, inside the span: a hole between
    /// segments) to the reserved state.
    fn decommit_hole(&self, start: u64, end: u64) -> Result<()> {
        self.space.decommit(self.space_offset(start), (end - start) as usize).map_err(|e| {
            Error::from_core("decommit of a hole between segments", &e).with_addr_range(self.addr(start), end - start)
        })
    }

    /// Offset in `space` of link-time address `vaddr` (inside the span).
    fn space_offset(&self, vaddr: u64) -> usize {
        self.offset + (self.addr(vaddr) as usize - self.base)
    }

    /// Run-time address of link-time address `vaddr`.
    pub(crate) fn addr(&self, vaddr: u64) -> u64 {
        vaddr.wrapping_add(self.bias)
    }

    /// The load bias (`l_addr` in glibc).
    pub(crate) fn bias(&self) -> u64 {
        self.bias
    }

    /// Run-time start and length of the reservation.
    pub(crate) fn span(&self) -> (u64, u64) {
        (self.base as u64, self.len as u64)
    }

    /// Whether link-time `[vaddr, vaddr+len)` lies in mapped pages with the wanted access.
    #[inline]
    fn fits(&self, vaddr: u64, len: u64, write: bool) -> bool {
        let Some(end) = vaddr.checked_add(len) else { return false };
        let fits = |&(s, e, p): &(u64, u64, Protection)| {
            vaddr >= s
                && end <= e
                && p.readable()
                && (!write || (p.writable() && !self.writes_done.load(Ordering::Acquire)))
        };
        // Accesses come in runs within one segment (a relocation table, then its targets):
        // the range that answered last is tried first.
        let last = self.last_range.load(Ordering::Relaxed);
        self.ranges.get(last).is_some_and(fits) || {
            let found = self.ranges.iter().position(fits);
            if let Some(i) = found {
                self.last_range.store(i, Ordering::Relaxed);
            }
            found.is_some()
        }
    }

    /// Whether `len` bytes at link-time address `vaddr` lie in a writable segment of this image
    /// (while relocation may still write it).
    pub(crate) fn writable(&self, vaddr: u64, len: u64) -> bool {
        self.fits(vaddr, len, true)
    }

    /// Whether link-time address `vaddr` lies in an executable segment of this image (a lazy
    /// PLT slot's first value must: the call jumps there).
    pub(crate) fn is_code(&self, vaddr: u64) -> bool {
        self.ranges.iter().any(|&(s, e, p)| vaddr >= s && vaddr < e && p.executable())
    }

    /// [`Image::fits`], or an error naming `op` and the range.
    fn check(&self, op: &str, vaddr: u64, len: u64, write: bool) -> Result<()> {
        if self.fits(vaddr, len, write) {
            Ok(())
        } else {
            Err(Error::new(op.to_owned(), ErrorKind::BadDynamic, outside(vaddr, len, write))
                .with_vaddr_range(vaddr, len))
        }
    }

    /// Copies `len` bytes at link-time address `vaddr`.
    pub(crate) fn read(&self, vaddr: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.check("read", vaddr, len, false)?;
        // SAFETY: checked above to lie in readable pages of this image (type contract).
        Ok(unsafe { std::slice::from_raw_parts(self.addr(vaddr) as *const u8, len as usize) }.to_vec())
    }

    /// Copies a plain-data value (an ELF structure) from link-time address `vaddr`.
    pub(crate) fn read_pod<T: object::pod::Pod>(&self, vaddr: u64) -> Result<T> {
        self.check("read", vaddr, std::mem::size_of::<T>() as u64, false)?;
        // SAFETY: checked above to lie in readable pages of this image (type contract); `T` is
        // plain data (any bit pattern is valid) and the read is unaligned.
        Ok(unsafe { std::ptr::read_unaligned(self.addr(vaddr) as *const T) })
    }

    /// The table of `count` plain-data values at link-time address `vaddr`, checked to lie in
    /// readable pages, and with `immutable`, in pages the loader never writes (required of the
    /// tables [`Image::bytes`] lends out).
    pub(crate) fn table<T: object::pod::Pod>(&self, vaddr: u64, count: u64, immutable: bool) -> Result<Table<T>> {
        let size = std::mem::size_of::<T>() as u64;
        let len = count.checked_mul(size).ok_or_else(|| {
            Error::new("read", ErrorKind::BadDynamic, "table too large").with_vaddr_range(vaddr, count)
        })?;
        if len == 0 {
            return Ok(Table::empty());
        }
        self.check("read", vaddr, len, false)?;
        if immutable && self.fits(vaddr, len, true) {
            return Err(Error::new(
                "read",
                ErrorKind::BadDynamic,
                format!("the table at {vaddr:#x} lies in a writable segment"),
            )
            .with_vaddr_range(vaddr, len));
        }
        Ok(Table {
            image: self.id,
            at: self.addr(vaddr) as usize,
            len: count as usize,
            immutable,
            _values: PhantomData,
        })
    }

    /// Value `i` of `table`; `None` past its end or if the table is not this image's.
    #[inline]
    pub(crate) fn get<T: object::pod::Pod>(&self, table: &Table<T>, i: usize) -> Option<T> {
        if table.image != self.id || i >= table.len {
            return None;
        }
        // SAFETY: `Image::table` checked that `len` values at `at` lie in readable pages of this
        // image (same id), which stay mapped while `self` lives (type contract); `T` is plain
        // data and the read is unaligned.
        Some(unsafe { std::ptr::read_unaligned((table.at as *const T).wrapping_add(i)) })
    }

    /// The bytes of `table` (empty if it is not this image's), borrowed from the mapping.
    pub(crate) fn bytes<'a>(&'a self, table: &Table<u8>) -> &'a [u8] {
        if table.image != self.id || !table.immutable {
            return &[];
        }
        // SAFETY: `Image::table` checked the range lies in readable pages of this image that the
        // loader never writes (`immutable`); they stay mapped while `self` lives.
        unsafe { std::slice::from_raw_parts(table.at as *const u8, table.len) }
    }

    /// Reads a little-endian u64 at link-time address `vaddr`.
    pub(crate) fn read_u64(&self, vaddr: u64) -> Result<u64> {
        self.check("read", vaddr, 8, false)?;
        // SAFETY: checked above (type contract); unaligned reads are allowed.
        Ok(unsafe { std::ptr::read_unaligned(self.addr(vaddr) as *const u64) })
    }

    /// Writes a u64 at link-time address `vaddr` (relocation); only before [`Self::protect_relro`].
    #[inline]
    pub(crate) fn write_u64(&self, vaddr: u64, value: u64) -> Result<()> {
        if !self.fits(vaddr, 8, true) {
            return Err(self.write_error(vaddr));
        }
        // SAFETY: checked above to lie in writable pages of this image; no code of the library
        // runs yet (type contract).
        unsafe { std::ptr::write_unaligned(self.addr(vaddr) as *mut u64, value) };
        Ok(())
    }

    #[cold]
    fn write_error(&self, vaddr: u64) -> Error {
        let why = format!("{} (text relocations are not supported)", outside(vaddr, 8, true));
        Error::new("relocate", ErrorKind::UnsupportedRelocation, why).with_vaddr_range(vaddr, 8)
    }

    /// Makes the RELRO pages read-only and forbids further writes.
    pub(crate) fn protect_relro(&self, plan: &Plan) -> Result<()> {
        self.writes_done.store(true, Ordering::Release);
        let Some((start, len)) = plan.relro else {
            return self.seal_code_and_relro(plan);
        };
        let addr = self.addr(start);
        if start < plan.span_vaddr || start + len > plan.span_vaddr + plan.span_len {
            return Err(
                Error::new("mprotect (RELRO)", ErrorKind::BadDynamic, "outside the span").with_vaddr_range(start, len)
            );
        }
        let relro_file = self.relro_file.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((mode, fd)) = relro_file {
            let shared = self.share_relro(mode, &fd, start, len, plan.page_size)?;
            let _ = self.relro_sharing.set(shared);
        }
        // Making pages read-only cannot break Rust aliasing: the loader holds no references
        // into them.
        self.space
            .commit(self.space_offset(start), len as usize, mmkit::Protection::READ)
            .map_err(|e| Error::from_core("mprotect (RELRO)", &e).with_addr_range(addr, len))?;
        self.seal_code_and_relro(plan)
    }

    /// Writes the relocated RELRO pages `[start, start+len)` (link-time) to `fd`, or compares
    /// them with `fd`'s; then maps from `fd`, read-only and private, every page that is the
    /// same in both. Returns `(pages mapped from the file, pages left private)`.
    fn share_relro(
        &self,
        mode: RelroMode,
        fd: &rustix::fd::OwnedFd,
        start: u64,
        len: u64,
        page: u64,
    ) -> Result<(u64, u64)> {
        let at = self.addr(start);
        // SAFETY: the RELRO range lies in readable, relocated pages of this image (checked by
        // the caller against the span); the slice is dropped before any page is replaced.
        let mine = unsafe { std::slice::from_raw_parts(at as *const u8, len as usize) };
        let theirs = match mode {
            RelroMode::Write => {
                write_relro_file(fd, mine)?;
                None
            }
            RelroMode::Use => Some(read_relro_file(fd, len)?),
        };
        let pages = len / page;
        let runs = identical_page_runs(mine, theirs.as_deref(), page);
        let shared: u64 = runs.iter().map(|r| r.1).sum();
        for (first, n) in runs {
            let off = first * page;
            // The file holds these pages byte for byte (written above, or compared), and its
            // contract (not modified while mapped) is the one the caller of the open accepted.
            // SAFETY: RELRO pages of our own reservation; no reference into them is held (`mine`
            // is not used past this point), and the file's bytes are the pages' bytes.
            unsafe {
                self.space.map_file_at(
                    self.space_offset(start + off),
                    (n * page) as usize,
                    mmkit::Protection::READ,
                    mmkit::Sharing::Private,
                    fd,
                    off,
                )
            }
            .map_err(|e| Error::from_core("mmap of the RELRO file", &e).with_range(off, n * page))?;
        }
        Ok((shared, pages - shared))
    }

    /// RELRO pages `(mapped from the RELRO file, private)`, when one was written or used.
    pub(crate) fn relro_sharing(&self) -> Option<(u64, u64)> {
        self.relro_sharing.get().copied()
    }

    /// With [`LoadOptions::seal`]: `mseal`s the executable segments and the RELRO range.
    fn seal_code_and_relro(&self, plan: &Plan) -> Result<()> {
        if !self.seal {
            return Ok(());
        }
        self.seal_now(plan)
    }

    /// `mseal`s the executable segments and the RELRO range of the relocated image, whatever
    /// it was loaded with (a library loaded unsealed and opened again with
    /// [`LoadOptions::seal`]). Once done, it is not done again: every open with `seal` of a
    /// library loaded made `mseal` calls, and the reservation recorded the ranges again each
    /// time (a list growing with the opens).
    pub(crate) fn seal_now(&self, plan: &Plan) -> Result<()> {
        if self.sealed.load(Ordering::Acquire) {
            return Ok(());
        }
        let code = self.ranges.iter().filter(|r| r.2.executable()).map(|&(s, e, _)| (s, e - s));
        for (start, len) in code.chain(plan.relro) {
            self.space.seal(self.space_offset(start), len as usize).map_err(|e| {
                let mut err = Error::from_core("mseal (code and RELRO)", &e).with_addr_range(self.addr(start), len);
                if e.kind() == mmkit::ErrorKind::Unsupported {
                    err =
                        Error::new("mseal (code and RELRO)", ErrorKind::Io, "the kernel has no mseal(2) (Linux 6.10+)")
                            .with_addr_range(self.addr(start), len);
                }
                err
            })?;
        }
        self.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Registers the library's `.eh_frame` (link-time `eh_frame`) with the process's unwinder,
    /// which `_Unwind_*` consult before `dl_iterate_phdr`, where an mmkit-loaded library does
    /// not appear: C++ exceptions and backtraces then unwind through its frames.
    ///
    /// With glibc the unwinder is libgcc, and the section is registered as a one-entry table
    /// (`__register_frame_info_table_bases`) with libgcc's bookkeeping in memory of ours:
    /// unlike `__register_frame`, libgcc 12 reads nothing of the library then (it reads
    /// `.eh_frame` when it first unwinds; libgcc 13 and later read it at registration by
    /// either route) and allocates nothing, so a load takes no page fault for it. Elsewhere
    /// (Android, musl) the unwinder may be LLVM's libunwind, whose table routes are no-ops:
    /// there the section is registered whole with `__register_frame`, which both implement.
    /// Returns the registration, for [`Image::deregister_unwind_info`]; `None` when
    /// `.eh_frame` does not lie in the image.
    pub(crate) fn register_unwind_info(&self, eh_frame: u64) -> Option<u64> {
        // The terminating zero-length entry at least must be readable.
        if !self.fits(eh_frame, 4, false) {
            return None;
        }
        // SAFETY: the run-time `.eh_frame` lies in readable pages of this image, which stays
        // mapped until `deregister_unwind_info` runs (Library's drop order).
        Some(unsafe { unwind::register(self.addr(eh_frame) as usize) })
    }

    /// Undoes [`Image::register_unwind_info`] (before the image is unmapped).
    pub(crate) fn deregister_unwind_info(&self, registration: u64) {
        // SAFETY: `registration` is what `register_unwind_info` returned, undone once, while
        // the image is still mapped.
        unsafe { unwind::deregister(registration) }
    }

    /// Resident pages of run-time `[addr, addr+len)` (inside the image), via `mincore`.
    pub(crate) fn resident_pages(&self, addr: u64, len: u64, _page: u64) -> Result<u64> {
        let base = self.base as u64;
        if addr < base || addr.saturating_add(len) > base + self.len as u64 || len == 0 {
            return Ok(0);
        }
        let at = self.offset + (addr - base) as usize;
        self.space
            .resident_pages(at, len as usize)
            .map(|n| n as u64)
            .map_err(|e| Error::from_core("mincore", &e).with_addr_range(addr, len))
    }

    /// Checks that run-time `addr`, which the loader is about to call (`op`), is code: in an
    /// executable segment of this image, or, when it lies outside the image and `elsewhere`
    /// allows it, in an executable mapping of the process (`/proc/self/maps`).
    pub(crate) fn check_code(&self, addr: u64, op: &str, elsewhere: bool) -> Result<()> {
        let link = addr.wrapping_sub(self.bias);
        let inside = self.ranges.iter().any(|&(s, e, _)| link >= s && link < e);
        if inside && !self.is_code(link) {
            return Err(Error::new(
                op.to_owned(),
                ErrorKind::BadDynamic,
                format!("{link:#x} is not in an executable segment"),
            )
            .with_vaddr_range(link, 1));
        }
        if !inside {
            if !elsewhere {
                return Err(Error::new(
                    op.to_owned(),
                    ErrorKind::BadDynamic,
                    format!("{link:#x} is outside the library"),
                )
                .with_vaddr_range(link, 1));
            }
            check_executable(addr, op)?;
        }
        Ok(())
    }

    /// Whether run-time `addr` lies in this image's span.
    pub(crate) fn contains(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.base as u64) < self.len as u64
    }

    /// Calls an initializer or finalizer at link-time address `vaddr`, as glibc calls an
    /// initializer: `f(argc, argv, envp)`, the process's arguments and environment.
    ///
    /// # Safety
    /// `vaddr` must be the address of a function of the loaded library that is safe to call now
    /// (the library is relocated and its dependencies are initialized).
    pub(crate) unsafe fn call_initializer(&self, vaddr: u64, absolute: bool) -> Result<()> {
        let addr = if absolute { vaddr } else { self.addr(vaddr) };
        if addr == 0 || addr == u64::MAX {
            return Ok(());
        }
        // An entry bound to a definition elsewhere (an `R_X86_64_64` against an exported
        // function that an earlier library defines too, as a second libgcc_s's
        // `__cpu_indicator_init`): glibc calls it; so does this, if the process maps that
        // address executable.
        self.check_code(addr, "run initializer", true)?;
        type Init = unsafe extern "C" fn(i32, *const *const u8, *const *const u8);
        let (argc, argv) = process_args();
        // SAFETY: an executable address of the library (checked above) called with the
        // initializer signature glibc uses; the caller vouches it may run now.
        unsafe {
            let f: Init = std::mem::transmute::<usize, Init>(addr as usize);
            f(argc, argv, environ_ptr());
        }
        Ok(())
    }
}

/// Names the `.bss` pages at run-time `[addr, addr+len)` `mmkit .bss <name>` in
/// `/proc/self/maps` (where the kernel supports `PR_SET_VMA_ANON_NAME`; the name is optional).
fn name_bss(addr: u64, len: u64, name: &str) {
    // SAFETY: the slice covers committed anonymous pages of the image; the kernel only reads
    // its bounds.
    let region = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    let vma_name: String = format!("mmkit .bss {name}")
        .chars()
        .map(|c| if c.is_ascii_graphic() && !"[]\\`$".contains(c) { c } else { '_' })
        .take(79)
        .collect();
    if let Ok(cname) = std::ffi::CString::new(vma_name) {
        // Kernels without CONFIG_ANON_VMA_NAME answer EINVAL.
        let _ = rustix::process::set_virtual_memory_region_name(region, Some(&cname));
    }
}

/// Why an access of `len` bytes at link-time `vaddr` was refused.
#[cold]
fn outside(vaddr: u64, len: u64, write: bool) -> String {
    format!(
        "address {vaddr:#x} + {len:#x} is outside the library's {} segments",
        if write { "writable" } else { "readable" }
    )
}

/// Checks in `/proc/self/maps` that `addr`, outside the library, is in an executable mapping.
pub(crate) fn check_executable(addr: u64, op: &str) -> Result<()> {
    let maps = mmkit::inspect::maps(std::process::id())
        .map_err(|e| Error::from_core("read", &e).with_path("/proc/self/maps"))?;
    match maps.iter().find(|m| m.start <= addr && addr < m.end) {
        Some(m) if m.perms.exec => Ok(()),
        Some(m) => Err(Error::new(
            op.to_owned(),
            ErrorKind::BadDynamic,
            format!("{addr:#x}, outside the library, is in a mapping that is not executable ({})", m.perms),
        )),
        None => Err(Error::new(
            op.to_owned(),
            ErrorKind::BadDynamic,
            format!("{addr:#x}, outside the library, is not mapped"),
        )),
    }
}

/// Registration of a loaded library's `.eh_frame` with the process's unwinder (see
/// [`Image::register_unwind_info`]).
mod unwind {
    use std::ffi::c_void;

    /// Words given to libgcc for its `struct object` (6 in libgcc 7 to 14).
    #[cfg(target_env = "gnu")]
    const OBJECT_WORDS: usize = 16;

    /// A registration of `.eh_frame` with libgcc: the null-terminated table of `.eh_frame`
    /// starts it reads when it first unwinds, and its bookkeeping.
    #[cfg(target_env = "gnu")]
    #[repr(C)]
    struct Registration {
        table: [usize; 2],
        object: [usize; OBJECT_WORDS],
    }

    /// Registers the `.eh_frame` section at `eh_frame`; returns what [`deregister`] takes.
    ///
    /// # Safety
    /// `eh_frame` is the start of a well-formed `.eh_frame` section (ended by a zero-length
    /// entry) in readable memory that stays mapped until [`deregister`] of the result.
    #[cfg(target_env = "gnu")]
    pub(super) unsafe fn register(eh_frame: usize) -> u64 {
        extern "C" {
            /// libgcc's (`libgcc_s`, linked by Rust's standard library on glibc targets).
            fn __register_frame_info_table_bases(
                begin: *mut c_void,
                object: *mut c_void,
                tbase: *mut c_void,
                dbase: *mut c_void,
            );
        }
        let reg = Box::into_raw(Box::new(Registration { table: [eh_frame, 0], object: [0; OBJECT_WORDS] }));
        // `object` is memory for libgcc's `struct object` (6 words in libgcc 7-14; 16 given).
        // SAFETY: `table` is a null-terminated array holding the section's start (the caller's
        // promise); both live in `reg`, freed only by `deregister` after libgcc forgets them.
        unsafe {
            __register_frame_info_table_bases(
                std::ptr::addr_of_mut!((*reg).table).cast(),
                std::ptr::addr_of_mut!((*reg).object).cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        reg as usize as u64
    }

    /// Undoes [`register`].
    ///
    /// # Safety
    /// `registration` is what [`register`] returned, not yet deregistered, and its section is
    /// still mapped.
    #[cfg(target_env = "gnu")]
    pub(super) unsafe fn deregister(registration: u64) {
        extern "C" {
            fn __deregister_frame_info(begin: *const c_void) -> *mut c_void;
        }
        let reg = registration as usize as *mut Registration;
        // SAFETY: `reg` is a live registration (the caller's promise): libgcc finds the object
        // by the table's address and unlinks it; then nothing refers to the allocation, which
        // is freed.
        unsafe {
            __deregister_frame_info(std::ptr::addr_of_mut!((*reg).table).cast());
            drop(Box::from_raw(reg));
        }
    }

    /// Registers the `.eh_frame` section at `eh_frame`; returns what [`deregister`] takes.
    ///
    /// # Safety
    /// As the glibc version: a well-formed section, mapped until [`deregister`].
    #[cfg(not(target_env = "gnu"))]
    pub(super) unsafe fn register(eh_frame: usize) -> u64 {
        extern "C" {
            /// libgcc's and LLVM libunwind's: given a whole `.eh_frame`, both walk it.
            fn __register_frame(begin: *const c_void);
        }
        // SAFETY: the caller's promise: a whole section, mapped until `deregister`.
        unsafe { __register_frame(eh_frame as *const c_void) };
        eh_frame as u64
    }

    /// Undoes [`register`].
    ///
    /// # Safety
    /// As the glibc version: a live registration whose section is still mapped.
    #[cfg(not(target_env = "gnu"))]
    pub(super) unsafe fn deregister(registration: u64) {
        extern "C" {
            fn __deregister_frame(begin: *const c_void);
        }
        // SAFETY: exactly what `register` registered, once.
        unsafe { __deregister_frame(registration as usize as *const c_void) };
    }
}

/// The link-time address of `.eh_frame`, from the first 12 bytes of `.eh_frame_hdr` (at
/// link-time `hdr`, `len` bytes): its version and the encoded `eh_frame_ptr`. `None` when the
/// header is not one this reads (then unwinding stops at the library).
pub(crate) fn eh_frame_from_header(hdr: u64, len: u64, head: &[u8; 12]) -> Option<u64> {
    let (version, enc) = (head[0], head[1]);
    if version != 1 || len < 8 {
        return None;
    }
    let field = hdr + 4;
    let word = |n: usize| head.get(4..4 + n);
    let value = match enc & 0x0f {
        0x00 | 0x04 | 0x0c if len >= 12 => u64::from_le_bytes(word(8)?.try_into().ok()?), // 8 bytes
        0x03 => u64::from(u32::from_le_bytes(word(4)?.try_into().ok()?)),
        0x0b => i64::from(i32::from_le_bytes(word(4)?.try_into().ok()?)) as u64, // sign-extended
        _ => return None,
    };
    match enc & 0x70 {
        0x00 => Some(value),                     // absolute (link-time)
        0x10 => Some(field.wrapping_add(value)), // pc-relative
        0x30 => Some(hdr.wrapping_add(value)),   // relative to .eh_frame_hdr
        _ => None,
    }
}

/// The process's `argc` and `argv`, as glibc passes them to every initializer: the ones on
/// the process's initial stack, which `envp` and the auxiliary vector follow (Go's runtime in
/// a `-buildmode=c-shared` library walks from `argv` past `envp` to the auxiliary vector for
/// `AT_PAGESZ`, and stops with "failed to get system page size" without it; a Rust `cdylib`'s
/// std reads `std::env::args` from them). glibc and bionic pass them to mmkit-elf's own
/// initializer ([`CAPTURE_ARGS`]) as to every other; where that did not happen (another C
/// library), NUL-terminated copies of the arguments std captured, made once and never freed.
fn process_args() -> (i32, *const *const u8) {
    let argv = STACK_ARGV.load(Ordering::Acquire);
    if !argv.is_null() {
        return (STACK_ARGC.load(Ordering::Acquire), argv.cast_const().cast());
    }
    static ARGS: std::sync::OnceLock<(Vec<std::ffi::CString>, Vec<usize>)> = std::sync::OnceLock::new();
    let (_, pointers) = ARGS.get_or_init(|| {
        use std::os::unix::ffi::OsStringExt;
        let strings: Vec<std::ffi::CString> =
            std::env::args_os().filter_map(|a| std::ffi::CString::new(a.into_vec()).ok()).collect();
        let pointers = strings.iter().map(|s| s.as_ptr() as usize).chain([0]).collect();
        (strings, pointers)
    });
    (i32::try_from(pointers.len() - 1).unwrap_or(i32::MAX), pointers.as_ptr().cast())
}

/// `argc` and `argv` as the C library passed them to [`capture_args`] (null: not passed).
static STACK_ARGC: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static STACK_ARGV: std::sync::atomic::AtomicPtr<*const u8> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// mmkit-elf's own initializer: glibc and bionic call every `.init_array` entry of the program
/// and of the libraries they load with `(argc, argv, envp)`, as Rust's std relies on for its
/// own arguments on glibc.
#[cfg(any(all(target_os = "linux", target_env = "gnu"), target_os = "android"))]
#[used]
#[link_section = ".init_array"]
static CAPTURE_ARGS: extern "C" fn(i32, *const *const u8, *const *const u8) = capture_args;

/// Keeps the `argc` and `argv` the C library passes (see [`CAPTURE_ARGS`]), and
/// `LD_LIBRARY_PATH` as the process started (see [`ld_library_path_at_start`]).
#[cfg_attr(not(any(all(target_os = "linux", target_env = "gnu"), target_os = "android")), allow(dead_code))]
extern "C" fn capture_args(argc: i32, argv: *const *const u8, envp: *const *const u8) {
    if argc >= 0 && !argv.is_null() {
        STACK_ARGC.store(argc, Ordering::Release);
        STACK_ARGV.store(argv.cast_mut(), Ordering::Release);
    }
    if !envp.is_null() {
        // SAFETY: `envp` is the NULL-terminated array of NUL-terminated strings the C library
        // passes to initializers, read before `main` runs (nothing changes it meanwhile).
        let _ = START_LD_LIBRARY_PATH.set(unsafe { env_value(envp, b"LD_LIBRARY_PATH=") });
    }
}

/// `LD_LIBRARY_PATH` in the environment [`capture_args`] was given (`None`: unset).
static START_LD_LIBRARY_PATH: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();

/// `LD_LIBRARY_PATH` as the process started, the value glibc's `ld.so` reads once (its last
/// occurrence, as `process_envvars` takes it; a secure program's was removed before):
/// `None` when mmkit-elf's initializer did not run (another C library), `Some(None)` when unset.
pub(crate) fn ld_library_path_at_start() -> Option<Option<&'static std::ffi::OsStr>> {
    START_LD_LIBRARY_PATH.get().map(Option::as_deref)
}

/// The value of the last `key` (`NAME=`) in `envp`.
///
/// # Safety
/// `envp` is a NULL-terminated array of NUL-terminated strings.
unsafe fn env_value(envp: *const *const u8, key: &[u8]) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let mut found = None;
    let mut at = envp;
    loop {
        // SAFETY: `at` is within the array, at or before its NULL (the caller's contract).
        let entry = unsafe { *at };
        if entry.is_null() {
            return found;
        }
        // SAFETY: a NUL-terminated string of the array (the caller's contract).
        let bytes = unsafe { std::ffi::CStr::from_ptr(entry.cast()) }.to_bytes();
        if let Some(value) = bytes.strip_prefix(key) {
            found = Some(std::ffi::OsStr::from_bytes(value).to_owned());
        }
        // SAFETY: `entry` was not the NULL, so the array goes on.
        at = unsafe { at.add(1) };
    }
}

fn environ_ptr() -> *const *const u8 {
    extern "C" {
        static environ: *const *const u8;
    }
    // SAFETY: glibc's `environ` is always defined; reading the pointer value is a plain load.
    unsafe { environ }
}

/// A symbol or version name as lookups take it: its bytes with the terminating NUL (and no
/// other), and a hash of it (the GNU hash for symbol names, the ELF hash for versions, as
/// `DT_VERNEED`/`DT_VERDEF` record them). Equal names must come with equal hashes for the
/// cache to find them; the bytes decide.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name<'a> {
    /// The bytes, with the terminating NUL.
    pub(crate) bytes: &'a [u8],
    /// See the type's docs.
    pub(crate) hash: u32,
}

impl<'a> Name<'a> {
    /// `bytes` ends with its only NUL.
    pub(crate) fn new(bytes: &'a [u8], hash: u32) -> Name<'a> {
        Name { bytes, hash }
    }

    /// The hash it came with.
    pub(crate) fn hash(&self) -> u32 {
        self.hash
    }

    /// The name without its NUL.
    pub(crate) fn text(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len().saturating_sub(1)]
    }

    /// As a C string, for `dlsym`.
    pub(crate) fn cstr(&self) -> Option<&'a CStr> {
        CStr::from_bytes_with_nul(self.bytes).ok()
    }
}

/// An error of `op` on the RELRO file, over its `len` bytes.
fn relro_file_err(op: &str, fd: &rustix::fd::OwnedFd, e: rustix::io::Errno, len: u64) -> Error {
    Error::os(format!("{op} of {}", relro_file_name(fd)), e).with_range(0, len)
}

/// "the RELRO file PATH" (the path `/proc/self/fd` gives), for errors that would otherwise
/// name only the library.
fn relro_file_name(fd: &rustix::fd::OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(path) => format!("the RELRO file {}", path.display()),
        Err(_) => "the RELRO file".to_owned(),
    }
}

/// The RELRO file must be a regular file open for what `mode` does with it (written then
/// mapped: read-write; compared then mapped: readable), checked before relocating so the error
/// says so (was `ftruncate ... EINVAL` for a FIFO or a read-only file, a size mismatch for a
/// FIFO, `mmap ... EACCES` for a write-only file).
fn check_relro_file(fd: &rustix::fd::OwnedFd, mode: RelroMode) -> Result<()> {
    use rustix::fs::OFlags;
    let bad = |detail: String| Error::new(format!("check {}", relro_file_name(fd)), ErrorKind::Io, detail);
    let meta = crate::source::fd_metadata(fd).map_err(|e| bad(format!("fstat: {e}")))?;
    if !meta.is_file() {
        return Err(bad(format!("not a regular file: {}", mmkit::open::file_type_name(meta.file_type()))));
    }
    let access =
        rustix::fs::fcntl_getfl(fd).map_err(|e| Error::os("fcntl(F_GETFL) of the RELRO file", e))? & OFlags::RWMODE;
    match mode {
        RelroMode::Write if access != OFlags::RDWR => {
            Err(bad("write_relro needs it open for reading and writing (it is written, then mapped)".into()))
        }
        RelroMode::Use if access == OFlags::WRONLY => {
            Err(bad("use_relro needs it open for reading (it is compared, then mapped)".into()))
        }
        _ => Ok(()),
    }
}

/// Writes the relocated RELRO bytes `mine` to `fd`, replacing what it held.
fn write_relro_file(fd: &rustix::fd::OwnedFd, mine: &[u8]) -> Result<()> {
    let len = mine.len() as u64;
    refuse_mapped_relro_file(fd, len)?;
    rustix::fs::ftruncate(fd, 0).map_err(|e| relro_file_err("ftruncate", fd, e, len))?;
    let mut done = 0;
    while done < mine.len() {
        done += rustix::io::pwrite(fd, &mine[done..], done as u64).map_err(|e| relro_file_err("pwrite", fd, e, len))?;
    }
    Ok(())
}

/// A file this process maps (a library loaded from it, by mmkit-elf or glibc, or the RELRO of
/// a library still loaded that was written to it before) would have those pages emptied, then
/// changed, by [`write_relro_file`]: the next access to them is a SIGBUS or other bytes. Refused
/// by what `/proc/self/maps` shows (nothing is refused where it cannot be read).
fn refuse_mapped_relro_file(fd: &rustix::fd::OwnedFd, len: u64) -> Result<()> {
    let st = rustix::fs::fstat(fd).map_err(|e| relro_file_err("fstat", fd, e, len))?;
    let device = mmkit::inspect::DeviceId { major: rustix::fs::major(st.st_dev), minor: rustix::fs::minor(st.st_dev) };
    let Ok(maps) = mmkit::inspect::maps(std::process::id()) else { return Ok(()) };
    let Some(m) = maps.iter().find(|m| m.device == device && m.inode == st.st_ino as u64) else { return Ok(()) };
    Err(Error::new(
        format!("write {}", relro_file_name(fd)),
        ErrorKind::Io,
        format!(
            "this process maps it at {:#x}-{:#x} ({}): writing it would change those pages under their \
             user; name another file",
            m.start,
            m.end,
            m.backing.display()
        ),
    ))
}

/// Reads the RELRO file `fd`, which must hold exactly this library's `len` RELRO bytes.
fn read_relro_file(fd: &rustix::fd::OwnedFd, len: u64) -> Result<Vec<u8>> {
    let size = rustix::fs::fstat(fd).map_err(|e| relro_file_err("fstat", fd, e, len))?.st_size as u64;
    if size != len {
        return Err(Error::new(
            format!("use {}", relro_file_name(fd)),
            ErrorKind::BadDynamic,
            format!("it holds {size:#x} bytes; this library's RELRO is {len:#x} (another library or build?)"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], done as u64).map_err(|e| relro_file_err("pread", fd, e, len))? {
            0 => return Err(Error::new(format!("read of {}", relro_file_name(fd)), ErrorKind::Truncated, "it shrank")),
            n => done += n,
        }
    }
    Ok(buf)
}

/// Runs of pages of `mine` that are the same in `theirs` (every page when `theirs` is `None`:
/// the file was just written from `mine`): `(first page, pages)`.
fn identical_page_runs(mine: &[u8], theirs: Option<&[u8]>, page: u64) -> Vec<(u64, u64)> {
    let pages = mine.len() as u64 / page;
    let same = |i: u64| {
        let r = (i * page) as usize..((i + 1) * page) as usize;
        theirs.is_none_or(|t| t[r.clone()] == mine[r])
    };
    let mut runs = Vec::new();
    let mut i = 0;
    while i < pages {
        if same(i) {
            let first = i;
            while i < pages && same(i) {
                i += 1;
            }
            runs.push((first, i - first));
        } else {
            i += 1;
        }
    }
    runs
}

/// An executable segment the kernel refused to map with `EPERM`: the likely cause is a file on
/// a `noexec` mount (or a security policy), which the bare errno does not say.
fn noexec_hint(e: Error, prot: mmkit::Protection) -> Error {
    if prot.executable() && e.errno() == Some(libc::EPERM) {
        e.and_detail("an executable mapping was refused: is the file on a noexec mount?")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::identical_page_runs;

    #[test]
    fn runs_of_identical_pages() {
        let page = 4u64;
        let mine = b"aaaabbbbccccddddeeee";
        assert_eq!(identical_page_runs(mine, None, page), [(0, 5)]);
        let theirs = b"aaaaXbbbccccddddeeeY";
        assert_eq!(identical_page_runs(mine, Some(theirs), page), [(0, 1), (2, 2)]);
        assert_eq!(identical_page_runs(mine, Some(b"XXXXXXXXXXXXXXXXXXXX"), page), []);
    }
}
