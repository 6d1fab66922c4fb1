//! The executor: carries out a [`Plan`] with `mmap`/`mprotect`/`munmap`, and owns the result.
//!
//! Phases, as in bionic's linker: reserve the whole span `PROT_NONE` ([`Image::load`]), map
//! each `PT_LOAD` with `MAP_FIXED | MAP_PRIVATE` from the source's fd, zero the tail of the last
//! file page of writable segments, map the rest of `.bss` anonymous (named `mmkit .bss <lib>`
//! in `/proc/self/maps` where the kernel supports `PR_SET_VMA_ANON_NAME`); after relocation,
//! [`Image::protect_relro`] and [`Image::call_initializer`]. Dropping the image unmaps it.
//!
//! This is one of the two modules of the crate that contain `unsafe` (with the relocation
//! module): everything that touches the loaded image's memory goes through [`Image`], whose
//! accessors are bounds-checked against the mapped segments.

pub(crate) mod debugger;

use crate::dynamic::Dynamic;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Plan, Protection};
use crate::relocate::Target;
use crate::source::{OpenSource, Source};
use crate::Library;
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Maps `len` bytes of the source at file `offset` `MAP_PRIVATE` (plus `flags`), for segment
/// `phdr_index`; errors name the segment, the file range and the source.
///
/// # Safety
/// With `MAP_FIXED` in `flags`, `addr..addr + len` must lie inside the image's own reservation.
unsafe fn map_segment(
    addr: *mut c_void,
    len: usize,
    prot: Protection,
    flags: MapFlags,
    src: &OpenSource,
    offset: u64,
    phdr_index: usize,
) -> Result<*mut c_void> {
    // SAFETY: forwarded contract.
    unsafe { rustix::mm::mmap(addr, len, prot_flags(prot), MapFlags::PRIVATE | flags, src.fd(), offset) }.map_err(|e| {
        Error::io(format!("mmap of segment {phdr_index}"), e).with_range(offset, len as u64).with_path(src.label())
    })
}

fn prot_flags(p: Protection) -> ProtFlags {
    let mut f = ProtFlags::empty();
    if p.read {
        f |= ProtFlags::READ;
    }
    if p.write {
        f |= ProtFlags::WRITE;
    }
    if p.exec {
        f |= ProtFlags::EXEC;
    }
    f
}

/// A loaded image: the reservation holding all segments of one library.
///
/// # Safety (the shared contract of the raw accesses below)
/// `base..base+len` is a private mapping this value created and owns until drop; every access
/// is bounds-checked against the `PT_LOAD` ranges of the plan, which lie inside it. The loader
/// only writes while the library is being relocated, before any of its code runs.
#[derive(Debug)]
pub(crate) struct Image {
    /// Unique among the images of the process (ties a [`Table`] to the image it was made in).
    id: u64,
    /// Run-time address of the reservation.
    base: usize,
    /// Bytes reserved.
    len: usize,
    /// Load bias: run-time address = link-time address + bias.
    bias: u64,
    /// Link-time `[start, end)` of mapped pages with their protection (after RELRO, the RELRO
    /// pages are read-only; `writes_done` forbids further writes).
    ranges: Vec<(u64, u64, Protection)>,
    /// Index in `ranges` of the last range an access fell in.
    last_range: AtomicUsize,
    writes_done: std::sync::atomic::AtomicBool,
}

/// Source of [`Image`] ids (0 is never used: an empty [`Table`] belongs to no image).
static NEXT_IMAGE_ID: AtomicU64 = AtomicU64::new(1);

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
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table::empty()
    }
}

impl Image {
    /// Reserves the span and maps every segment of `plan` from `src`.
    pub(crate) fn load(plan: &Plan, src: &OpenSource, name: &str) -> Result<Image> {
        let page = plan.page_size;
        let align = plan.max_align.max(page);
        let span =
            usize::try_from(plan.span_len).map_err(|_| Error::new(ErrorKind::Io, "reserve", "span too large"))?;
        let extra = (align - page) as usize;
        let total = span
            .checked_add(extra)
            .ok_or_else(|| Error::new(ErrorKind::Io, "reserve", "span too large").with_range(0, plan.span_len))?;
        // When no alignment beyond the page is needed and the first segment starts the span and
        // is not writable, the reservation is the first segment itself, mapped over the whole
        // span (as glibc does): one mmap fewer. The rest of the span is mapped over below and
        // any holes between segments are turned back into anonymous PROT_NONE pages.
        let first = plan.segments.first().filter(|f| {
            extra == 0 && f.map_vaddr == plan.span_vaddr && f.map_file_len > 0 && !f.prot.write && f.bss_len == 0
        });
        let (base, first_mapped) = match first {
            Some(f) => {
                let offset = src.offset() + f.map_offset;
                // SAFETY: no MAP_FIXED: a fresh private mapping at an address the kernel chooses
                // cannot alias anything; pages past the segment are replaced before the image is
                // used.
                let raw = unsafe {
                    map_segment(std::ptr::null_mut(), span, f.prot, MapFlags::empty(), src, offset, f.phdr_index)
                }? as usize;
                (raw, true)
            }
            None => (Image::reserve(plan, total, align)?, false),
        };
        let mut image = Image {
            id: NEXT_IMAGE_ID.fetch_add(1, Ordering::Relaxed),
            base,
            len: span,
            bias: (base as u64).wrapping_sub(plan.span_vaddr),
            ranges: Vec::new(),
            last_range: AtomicUsize::new(0),
            writes_done: std::sync::atomic::AtomicBool::new(false),
        };
        for (i, seg) in plan.segments.iter().enumerate() {
            if i == 0 && first_mapped {
                image.ranges.push((seg.map_vaddr, seg.map_vaddr + seg.map_file_len, seg.prot));
                continue;
            }
            if seg.map_file_len > 0 {
                let addr = image.addr(seg.map_vaddr);
                let offset = src.offset() + seg.map_offset;
                // SAFETY: the target lies inside our reservation (the planner keeps segments
                // inside the span), so MAP_FIXED replaces only pages we own.
                unsafe {
                    map_segment(
                        addr as *mut c_void,
                        seg.map_file_len as usize,
                        seg.prot,
                        if seg.prefault { MapFlags::FIXED | MapFlags::POPULATE } else { MapFlags::FIXED },
                        src,
                        offset,
                        seg.phdr_index,
                    )
                }?;
                image.ranges.push((seg.map_vaddr, seg.map_vaddr + seg.map_file_len, seg.prot));
            }
            if seg.zero_len > 0 {
                let at = image.addr(seg.vaddr + seg.file_size);
                // SAFETY: the planner only asks for zeroing in writable segments, within the
                // last file page just mapped read-write and private.
                unsafe { std::ptr::write_bytes(at as *mut u8, 0, seg.zero_len as usize) };
            }
            if seg.bss_len > 0 {
                let addr = image.addr(seg.bss_vaddr);
                // SAFETY: inside our reservation, as above.
                unsafe {
                    rustix::mm::mmap_anonymous(
                        addr as *mut c_void,
                        seg.bss_len as usize,
                        prot_flags(seg.prot),
                        MapFlags::PRIVATE | MapFlags::FIXED,
                    )
                }
                .map_err(|e| {
                    Error::io(format!("mmap of .bss of segment {}", seg.phdr_index), e).with_range(addr, seg.bss_len)
                })?;
                // SAFETY: the slice covers exactly the anonymous pages just mapped; the kernel
                // only reads its bounds.
                let region = unsafe { std::slice::from_raw_parts(addr as *const u8, seg.bss_len as usize) };
                let vma_name = format!("mmkit .bss {name}");
                let vma_name: String = vma_name
                    .chars()
                    .map(|c| if c.is_ascii_graphic() && !"[]\\`$".contains(c) { c } else { '_' })
                    .take(79)
                    .collect();
                if let Ok(cname) = std::ffi::CString::new(vma_name) {
                    // Kernels without CONFIG_ANON_VMA_NAME answer EINVAL: the name is optional.
                    let _ = rustix::process::set_virtual_memory_region_name(region, Some(&cname));
                }
                image.ranges.push((seg.bss_vaddr, seg.bss_vaddr + seg.bss_len, seg.prot));
            }
        }
        if first_mapped {
            image.unmap_holes(plan)?;
        }
        Ok(image)
    }

    /// Reserves `total` bytes `PROT_NONE` and trims them to the span, aligned to `align`;
    /// returns the span's run-time start.
    fn reserve(plan: &Plan, total: usize, align: u64) -> Result<usize> {
        let page = plan.page_size;
        let span = plan.span_len as usize;
        let extra = (align - page) as usize;
        // SAFETY: a fresh anonymous PROT_NONE mapping at an address the kernel chooses cannot
        // alias anything.
        let raw = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                total,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| Error::io("mmap (reserve)", e).with_range(0, total as u64))? as usize;
        // The bias must keep every segment aligned to its p_align: start ≡ span_vaddr (mod align).
        let skew = (plan.span_vaddr as usize).wrapping_sub(raw) & (align as usize - 1);
        let base = raw + skew;
        if skew > 0 {
            // SAFETY: [raw, raw+skew) is the unused head of the reservation made above.
            let _ = unsafe { rustix::mm::munmap(raw as *mut c_void, skew) };
        }
        let tail = extra - skew;
        if tail > 0 {
            // SAFETY: [base+span, raw+total) is the unused tail of the reservation made above.
            let _ = unsafe { rustix::mm::munmap((base + span) as *mut c_void, tail) };
        }
        Ok(base)
    }

    /// After the first segment was mapped over the whole span: turns every page of the span
    /// that no segment covers back into an anonymous `PROT_NONE` hole.
    fn unmap_holes(&self, plan: &Plan) -> Result<()> {
        let mut covered: Vec<(u64, u64)> = self.ranges.iter().map(|&(s, e, _)| (s, e)).collect();
        covered.sort_unstable();
        let mut at = plan.span_vaddr;
        let end = plan.span_vaddr + plan.span_len;
        for (s, e) in covered.into_iter().chain(std::iter::once((end, end))) {
            if s > at {
                let addr = self.addr(at);
                // SAFETY: a hole inside our span (between mapped segments); nothing refers to it.
                unsafe {
                    rustix::mm::mmap_anonymous(
                        addr as *mut c_void,
                        (s - at) as usize,
                        ProtFlags::empty(),
                        MapFlags::PRIVATE | MapFlags::FIXED | MapFlags::NORESERVE,
                    )
                }
                .map_err(|e| Error::io("mmap (hole)", e).with_range(addr, s - at))?;
            }
            at = at.max(e);
        }
        Ok(())
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
            vaddr >= s && end <= e && p.read && (!write || (p.write && !self.writes_done.load(Ordering::Acquire)))
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

    /// [`Image::fits`], or an error naming `op` and the range.
    fn check(&self, op: &str, vaddr: u64, len: u64, write: bool) -> Result<()> {
        if self.fits(vaddr, len, write) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::BadDynamic, op.to_owned(), outside(vaddr, len, write)).with_range(vaddr, len))
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
        let len = count
            .checked_mul(size)
            .ok_or_else(|| Error::new(ErrorKind::BadDynamic, "read", "table too large").with_range(vaddr, count))?;
        if len == 0 {
            return Ok(Table::empty());
        }
        self.check("read", vaddr, len, false)?;
        if immutable && self.fits(vaddr, len, true) {
            return Err(Error::new(
                ErrorKind::BadDynamic,
                "read",
                format!("the table at {vaddr:#x} lies in a writable segment"),
            )
            .with_range(vaddr, len));
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
        Error::new(ErrorKind::UnsupportedRelocation, "relocate", why).with_range(vaddr, 8)
    }

    /// Makes the RELRO pages read-only and forbids further writes.
    pub(crate) fn protect_relro(&self, plan: &Plan) -> Result<()> {
        self.writes_done.store(true, Ordering::Release);
        let Some((start, len)) = plan.relro else {
            return Ok(());
        };
        let addr = self.addr(start);
        if start < plan.span_vaddr || start + len > plan.span_vaddr + plan.span_len {
            return Err(
                Error::new(ErrorKind::BadDynamic, "mprotect (RELRO)", "outside the span").with_range(start, len)
            );
        }
        // SAFETY: the RELRO range lies inside our reservation; making pages read-only cannot
        // break Rust aliasing, and the loader holds no references into them.
        unsafe { rustix::mm::mprotect(addr as *mut c_void, len as usize, MprotectFlags::READ) }
            .map_err(|e| Error::io("mprotect (RELRO)", e).with_range(addr, len))?;
        Ok(())
    }

    /// Registers the library's unwind tables with the process's unwinder (libgcc's
    /// `__register_frame`, which `_Unwind_*` consult before `dl_iterate_phdr`, where an
    /// mmkit-loaded library does not appear): C++ exceptions and backtraces then unwind through
    /// its frames. `hdr` is the link-time `.eh_frame_hdr` (`PT_GNU_EH_FRAME`), whose
    /// `eh_frame_ptr` gives `.eh_frame`. Returns the run-time `.eh_frame` address registered,
    /// for [`Image::deregister_unwind_info`]; `None` when the header is not one this reads
    /// (then unwinding stops at the library, as before).
    pub(crate) fn register_unwind_info(&self, hdr: u64, len: u64) -> Option<u64> {
        let version = self.read_pod::<u8>(hdr).ok()?;
        let enc = self.read_pod::<u8>(hdr + 1).ok()?;
        if version != 1 || len < 8 {
            return None;
        }
        let field = hdr + 4;
        let value = match enc & 0x0f {
            0x00 | 0x04 | 0x0c => self.read_pod::<u64>(field).ok()?, // 8 bytes
            0x03 => u64::from(self.read_pod::<u32>(field).ok()?),
            0x0b => self.read_pod::<u32>(field).ok()? as i32 as i64 as u64, // sign-extended
            _ => return None,
        };
        let eh_frame = match enc & 0x70 {
            0x00 => value,                     // absolute (link-time)
            0x10 => field.wrapping_add(value), // pc-relative
            0x30 => hdr.wrapping_add(value),   // relative to .eh_frame_hdr
            _ => return None,
        };
        // The terminating zero-length entry at least must be readable.
        if !self.fits(eh_frame, 4, false) {
            return None;
        }
        let at = self.addr(eh_frame);
        // SAFETY: `at` is the start of the library's `.eh_frame` in readable pages of this image,
        // which stays mapped until `deregister_unwind_info` runs (Library's drop order); libgcc
        // reads the entries up to the zero terminator the linker puts at the end.
        unsafe { __register_frame(at as *const c_void) };
        Some(at)
    }

    /// Undoes [`Image::register_unwind_info`] (before the image is unmapped).
    pub(crate) fn deregister_unwind_info(&self, eh_frame: u64) {
        // SAFETY: `eh_frame` is exactly what `register_unwind_info` registered, once.
        unsafe { __deregister_frame(eh_frame as *const c_void) };
    }

    /// Resident pages of run-time `[addr, addr+len)` (inside the image), via `mincore`.
    pub(crate) fn resident_pages(&self, addr: u64, len: u64, page: u64) -> Result<u64> {
        let base = self.base as u64;
        if addr < base || addr.saturating_add(len) > base + self.len as u64 || len == 0 {
            return Ok(0);
        }
        let mut vec = vec![0u8; len.div_ceil(page) as usize];
        // SAFETY: the range lies in our reservation (checked above) and `vec` has one byte per
        // page; mincore only writes `vec`.
        let rc = unsafe { libc::mincore(addr as *mut c_void, len as usize, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(Error::io("mincore", rustix::io::Errno::from_raw_os_error(errno())).with_range(addr, len));
        }
        Ok(vec.iter().filter(|&&b| b & 1 != 0).count() as u64)
    }

    /// Calls an initializer or finalizer at link-time address `vaddr`, as glibc does:
    /// `f(argc, argv, envp)`.
    ///
    /// # Safety
    /// `vaddr` must be the address of a function of the loaded library that is safe to call now
    /// (the library is relocated and its dependencies are initialized).
    pub(crate) unsafe fn call_initializer(&self, vaddr: u64, absolute: bool) -> Result<()> {
        let addr = if absolute { vaddr } else { self.addr(vaddr) };
        if addr == 0 || addr == u64::MAX {
            return Ok(());
        }
        let link = addr.wrapping_sub(self.bias);
        if !self.ranges.iter().any(|&(s, e, p)| link >= s && link < e && p.exec) {
            return Err(Error::new(
                ErrorKind::BadDynamic,
                "run initializer",
                format!("{link:#x} is not in an executable segment"),
            ));
        }
        type Init = unsafe extern "C" fn(i32, *const *const u8, *const *const u8);
        static NO_ARGS: [usize; 1] = [0];
        // SAFETY: an executable address of the library (checked above) called with the
        // initializer signature glibc uses; the caller vouches it may run now.
        unsafe {
            let f: Init = std::mem::transmute::<usize, Init>(addr as usize);
            f(0, NO_ARGS.as_ptr().cast(), environ_ptr());
        }
        Ok(())
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: the reservation is ours; Library drops its Image only after running the
        // finalizers, and Symbols borrow the Library so none outlive it.
        let _ = unsafe { rustix::mm::munmap(self.base as *mut c_void, self.len) };
    }
}

/// Why an access of `len` bytes at link-time `vaddr` was refused.
fn outside(vaddr: u64, len: u64, write: bool) -> String {
    format!(
        "address {vaddr:#x} + {len:#x} is outside the library's {} segments",
        if write { "writable" } else { "readable" }
    )
}

extern "C" {
    /// libgcc's unwinder (`libgcc_s`, linked by Rust's standard library on glibc targets).
    fn __register_frame(begin: *const c_void);
    fn __deregister_frame(begin: *const c_void);
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn environ_ptr() -> *const *const u8 {
    extern "C" {
        static environ: *const *const u8;
    }
    // SAFETY: glibc's `environ` is always defined; reading the pointer value is a plain load.
    unsafe { environ }
}

/// A typed symbol of a [`Library`], valid while the library is loaded.
///
/// It derefs to `T` (usually an `extern "C" fn` pointer type) and borrows the library, so it
/// cannot outlive the mapping it points into.
#[derive(Debug, Clone, Copy)]
pub struct Symbol<'lib, T> {
    value: T,
    address: u64,
    _lib: PhantomData<&'lib Library>,
}

impl<T> Symbol<'_, T> {
    /// The symbol's run-time address.
    pub fn address(&self) -> u64 {
        self.address
    }
}

impl<T> std::ops::Deref for Symbol<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl Library {
    /// Loads a shared object from a file, a stored APK entry or memory, like `dlopen(RTLD_NOW |
    /// RTLD_LOCAL)`: reads the headers, plans, reserves the span, maps the segments, loads
    /// missing `DT_NEEDED` libraries, relocates eagerly, protects RELRO and runs the
    /// initializers. It loads in the process's default [`crate::Namespace`]: system
    /// libraries go to the system linker, and a file already loaded there is not loaded again
    /// (the result is another handle to the same copy, as with `dlopen`). A bare soname
    /// (`libz.so.1`) that is not a file in the current directory is searched for.
    ///
    /// # Safety
    /// Loading runs the library's initializers and IFUNC resolvers, and later calls run its
    /// code: the library must be trustworthy, as with `dlopen`. Its file must not be truncated
    /// or modified while loaded (the pages are mapped from it; memory sources are sealed).
    #[doc(alias = "dlopen")]
    pub unsafe fn open(source: impl Into<Source>) -> Result<Library> {
        // SAFETY: the caller's contract is this function's.
        unsafe { crate::Namespace::global_default().open(source) }
    }

    /// Looks up `name` (its default version) in the library, then its dependencies, and
    /// returns it typed as `T`: an `extern "C" fn` pointer, or a raw pointer to data.
    ///
    /// # Safety
    /// `T` must be the symbol's true type (as with `dlsym` + a cast): calling a function
    /// through a wrong signature, or reading data as the wrong type, is undefined behavior.
    /// `T` must be pointer-sized.
    #[doc(alias = "dlsym")]
    pub unsafe fn symbol<T: Copy>(&self, name: &str) -> Result<Symbol<'_, T>> {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.typed_symbol(name, false) }
    }

    /// Looks up the function `name` like [`Library::symbol`], and refuses a symbol that is
    /// not code (`STT_FUNC` or `STT_GNU_IFUNC`; see [`Library::symbol_kind`]): data objects,
    /// thread-locals, absolute symbols such as version names (libz's `ZLIB_1.2.2`), untyped
    /// symbols. Calling one of those would jump into data or to a small number.
    ///
    /// # Safety
    /// `T` must be the function's true signature, an `extern "C" fn` pointer type.
    pub unsafe fn function<T: Copy>(&self, name: &str) -> Result<Symbol<'_, T>> {
        // SAFETY: the caller's contract is this function's.
        unsafe { self.typed_symbol(name, true) }
    }

    /// [`Library::symbol`], or [`Library::function`] when `function` is set.
    ///
    /// # Safety
    /// As for [`Library::symbol`].
    unsafe fn typed_symbol<T: Copy>(&self, name: &str, function: bool) -> Result<Symbol<'_, T>> {
        if function {
            let kind = self.symbol_kind(name)?;
            if !kind.is_function() {
                return Err(Error::new(
                    ErrorKind::NotAFunction,
                    format!("function lookup of `{name}`"),
                    format!("it is {}, not a function (STT_FUNC or STT_GNU_IFUNC)", kind.describe()),
                )
                .with_path(self.source()));
            }
        }
        if std::mem::size_of::<T>() != std::mem::size_of::<usize>() {
            return Err(Error::new(
                ErrorKind::SymbolNotFound,
                format!("symbol {name}"),
                format!("the requested type is {} bytes; symbols are pointer-sized", std::mem::size_of::<T>()),
            ));
        }
        let address = match self.find(name) {
            Some(Target::Addr(a)) => a,
            // SAFETY: an STT_GNU_IFUNC definition of this loaded, relocated library.
            Some(Target::Ifunc(resolver)) => unsafe { crate::relocate::call_ifunc_resolver(resolver) },
            Some(Target::Tls { .. }) => return Err(self.not_found(name, "it is a thread-local variable")),
            None => return Err(self.not_found(name, "no such exported symbol")),
        };
        let raw = address as usize;
        // SAFETY: T is pointer-sized (checked above); the caller vouches T is the symbol's type.
        let value = unsafe { std::mem::transmute_copy::<usize, T>(&raw) };
        Ok(Symbol { value, address, _lib: PhantomData })
    }
}

impl crate::Namespace {
    /// Loads `source` in this namespace: its dependencies are found and loaded by this
    /// namespace's rules. A bare soname (`libz.so.1`, no `/`, not a file in the current
    /// directory) is searched for as a dependency would be, and mapped by mmkit-elf.
    ///
    /// # Safety
    /// As for [`Library::open`](crate::Library::open): the library must be trustworthy.
    pub unsafe fn open(&self, source: impl Into<Source>) -> Result<crate::Library> {
        let source = self.top_level(source.into())?;
        crate::group::open(self, &source)
    }
}

/// Relocates the image of a library being loaded (see [`crate::relocate::relocate`]).
pub(crate) fn relocate_image(
    dynamic: &Dynamic,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls_module: Option<u64>,
) -> Result<()> {
    // SAFETY: called by `Library::load` after every segment is mapped and every dependency is
    // loaded, relocated and initialized; `Library::open`'s caller vouched for the library.
    unsafe { crate::relocate::relocate(dynamic, resolve, tls_module) }
}

/// Runs `DT_INIT`, then `DT_INIT_ARRAY` in order.
pub(crate) fn run_initializers(lib: &crate::library::Object) -> Result<()> {
    let (image, dy) = (lib.image(), lib.dynamic());
    if let Some(init) = dy.init {
        // SAFETY: DT_INIT of a relocated library whose dependencies are initialized; the caller
        // of `Library::open` vouched for the library.
        unsafe { image.call_initializer(init, false)? };
    }
    for i in 0..dy.init_array.len() {
        let Some(f) = image.get(&dy.init_array, i) else { break };
        // SAFETY: as above; entries are relocated run-time addresses.
        unsafe { image.call_initializer(f, true)? };
    }
    Ok(())
}

/// Runs `DT_FINI_ARRAY` in reverse order, then `DT_FINI`. Errors are ignored (nothing left to
/// report them to during drop).
pub(crate) fn run_finalizers(lib: &crate::library::Object) {
    if !lib.is_initialized() {
        return;
    }
    let (image, dy) = (lib.image(), lib.dynamic());
    for i in (0..dy.fini_array.len()).rev() {
        if let Some(f) = image.get(&dy.fini_array, i) {
            // SAFETY: a finalizer of an initialized library, run once from Drop.
            let _ = unsafe { image.call_initializer(f, true) };
        }
    }
    if let Some(fini) = dy.fini {
        // SAFETY: as above.
        let _ = unsafe { image.call_initializer(fini, false) };
    }
}

/// Has the system linker load the system library at `path` (a dependency the namespace
/// routes to it; see [`crate::Namespace`]).
pub(crate) fn load_system_library(path: &str) -> std::result::Result<crate::relocate::external::SystemLibrary, String> {
    // SAFETY: called by `Library::load` for a dependency of a library whose loading the caller
    // of `Library::open`/`Namespace::open` vouched for (dlopen would load it as well).
    unsafe { crate::relocate::external::SystemLibrary::load(path) }
}
