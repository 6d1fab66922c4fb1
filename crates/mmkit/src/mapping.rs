//! [`Mapping`]: an owned region of the address space and its range operations.
//!
//! A `Mapping` is what one successful `mmap` returns: it unmaps on drop. It remembers the
//! page-aligned region the kernel gave (`base`, `map_len`) and the bytes the caller asked for
//! (`delta` bytes in, `len` long), so an unaligned file offset exposes exactly the requested
//! bytes. Range operations take byte ranges relative to the requested bytes, check them with
//! overflow-safe arithmetic, and widen them to whole pages for the kernel.
//!
//! The typed faces ([`Mmap`](crate::Mmap), [`MmapMut`](crate::MmapMut),
//! [`MmapRaw`](crate::MmapRaw)) wrap a `Mapping` and decide what is safe to hand out.

// One of the modules with `unsafe`: turns an owned region into slices (DESIGN.md).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ops::{Bound, RangeBounds};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use rustix::mm::MapFlags;

use crate::error::{Error, ErrorKind, Result};
use crate::options::{
    Advice, HugePages, Lock, MapOptions, Placement, Populate, Protection, RemapOptions, Sharing, UncheckedAdvice,
};
use crate::page::{align_up, check_len, check_page_len, page_span};
use crate::residency::{PageBitmap, Residency, MINCORE_WINDOW_PAGES};
use crate::sys;

/// What page size a mapping really got, and why it fell back when it did not get what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageOutcome {
    /// What was asked for.
    pub requested: HugePages,
    /// The page size backing the mapping, in bytes: the base page, the THP (PMD) size when
    /// `MADV_HUGEPAGE` was accepted on an aligned region, or the hugetlb size.
    pub page_size: usize,
    /// Why the request fell back to base pages (`None` when it did not).
    pub fallback: Option<String>,
}

/// An owned mapping; unmaps on drop. See the [module docs](self).
///
/// `Mapping` hands out raw pointers only; the faces build safe slices on top. It is `Send` and
/// `Sync`: it owns its region like a `Box<[u8]>` owns its heap block, and every operation on
/// `&self` is one the kernel performs atomically.
///
/// # Invariant
/// A `Mapping` exclusively owns the kernel region `[base, base + map_len)` (nothing when
/// `map_len` is 0) until it is dropped: nothing else in this process unmaps or replaces it
/// (`MAP_FIXED` is only used inside an owned [`Reservation`](crate::Reservation), and
/// `MADV_DONTFORK`, which takes it away from a child, is `unsafe`). The requested bytes lie
/// inside it (`delta + len <= map_len`), and `map_len <= isize::MAX`
/// ([`check_len`](crate::page) is applied before `mmap`). Its protection changes only
/// through the `unsafe` [`protect`](Self::protect) or faces that hand out no references, and
/// its contents only through `&mut self` or `unsafe` calls. The faces' `// SAFETY:` comments
/// add what each needs on top (readable, writable, stable).
pub struct Mapping {
    /// Page-aligned start of the kernel's mapping (dangling when `map_len == 0`).
    base: NonNull<u8>,
    /// Length of the kernel's mapping (a multiple of the page size; 0 for an empty map).
    map_len: usize,
    /// Offset of the first requested byte from `base`.
    delta: usize,
    /// Requested length.
    len: usize,
    prot: Protection,
    sharing: Sharing,
    file_offset: Option<u64>,
    path: Option<PathBuf>,
    pages: PageOutcome,
    name_applied: bool,
    /// Maps a file on hugetlbfs: `map_len` and range operations count in its huge pages.
    hugetlbfs: bool,
    /// `MADV_HUGEPAGE` was applied (a [`HugePages::Transparent`] request): `pages` is worked out
    /// from the region's place and length, so again after a resize.
    thp_advised: bool,
}

// SAFETY: a Mapping exclusively owns its address range (like Box<[u8]>); the raw pointer is not
// shared with any other owner, and the kernel calls made through `&self` are thread-safe.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only exposes raw pointers and kernel range operations that do not change
// contents (content-changing ones take `&mut self` or are `unsafe`).
unsafe impl Sync for Mapping {}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("addr", &self.as_ptr())
            .field("len", &self.len)
            .field("prot", &self.prot)
            .field("sharing", &self.sharing)
            .field("file_offset", &self.file_offset)
            .field("path", &self.path)
            .finish()
    }
}

/// The alignment of the dangling pointer an empty mapping reports.
#[repr(align(4096))]
struct PageAligned;

/// The backing handed to [`Mapping::new`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Backing<'a> {
    Anonymous,
    File(BorrowedFd<'a>),
    /// A device file that the kernel maps in whole pages while its `st_size` is the device's
    /// size (PCI `resourceN` in sysfs of a BAR smaller than a page): a regular one may be
    /// mapped to the end of its last page instead of its last byte.
    Device(BorrowedFd<'a>),
}

/// THP mode from sysfs: `Some("always" | "madvise" | "never")`.
pub(crate) fn thp_mode() -> Option<String> {
    let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_owned())
}

/// Whether the calling thread has `CAP_IPC_LOCK` in effect, which exempts it from
/// `RLIMIT_MEMLOCK` (`capget(2)`; a failure to ask counts as no). For error messages only.
fn has_cap_ipc_lock() -> bool {
    use rustix::thread::{capabilities, CapabilitySet};
    capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::IPC_LOCK))
}

/// A counter of the hugetlb pool of `size`-byte pages (`free_hugepages`, `resv_hugepages`).
fn hugetlb_pool_count(size: usize, counter: &str) -> Option<u64> {
    let p = format!("/sys/kernel/mm/hugepages/hugepages-{}kB/{counter}", size / 1024);
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The huge page size of a file on hugetlbfs (its `st_blksize`, `block`), `None` for any other
/// file; see [`sys::hugetlbfs_page_size`].
fn hugetlbfs_page_size(fd: BorrowedFd<'_>, block: u64) -> Option<usize> {
    sys::hugetlbfs_page_size(fd, block)
}

/// The huge page size of the file behind `fd` when it lies on hugetlbfs (an `MFD_HUGETLB`
/// memfd, a file under a hugetlbfs mount), `None` for any other file.
pub(crate) fn hugetlbfs_page_size_of(fd: BorrowedFd<'_>) -> Option<usize> {
    sys::hugetlbfs_page_size_of(fd)
}

fn default_hugetlb_size() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What [`Mapping::new`] resolved before calling the kernel: the backing, the requested bytes
/// and the whole pages the kernel maps for them.
struct Request<'a> {
    fd: Option<BorrowedFd<'a>>,
    path: Option<PathBuf>,
    prot: Protection,
    /// Requested file offset (0 for anonymous memory).
    offset: u64,
    /// `offset` modulo the page size: where the requested bytes start in the first page.
    delta: usize,
    /// Requested length.
    len: usize,
    /// Page-rounded length of `delta + len`, at most `isize::MAX`.
    map_len: usize,
    /// The file's `st_blksize` (0 without a file): the huge page size on hugetlbfs.
    block: u64,
}

impl<'a> Request<'a> {
    /// Resolves the length (from the options, or the file's size) and checks the range
    /// against the file and `isize::MAX`, before anything reaches the kernel.
    fn resolve(opts: &MapOptions, backing: Backing<'a>, default_prot: Protection) -> Result<Request<'a>> {
        let page = sys::page_size();
        let (fd, path) = match backing {
            Backing::Anonymous => (None, None),
            Backing::File(fd) | Backing::Device(fd) => (Some(fd), sys::fd_path(fd)),
        };
        let offset = if fd.is_some() { opts.offset } else { 0 };
        let (len, block) = Self::requested_len(opts, backing, fd, path.as_deref(), offset)?;
        // No slice longer than isize::MAX may exist: neither the requested bytes nor the whole
        // pages the kernel maps for them.
        let at_offset = |e: Error| e.with_opt_path(path.as_deref()).with_range(offset, len);
        let delta = (offset % page as u64) as usize;
        let len = check_len("mmap", len).map_err(at_offset)?;
        let map_len = check_page_len("mmap", delta as u64 + len as u64, page as u64).map_err(at_offset)?;
        let prot = opts.protection.unwrap_or(default_prot);
        Ok(Request { fd, path, prot, offset, delta, len, map_len, block })
    }

    /// The bytes to map: `MapOptions::len`, or the rest of a regular file from `offset`;
    /// refuses ranges past a regular file's end (touching them would raise `SIGBUS`).
    fn requested_len(
        opts: &MapOptions,
        backing: Backing<'_>,
        fd: Option<BorrowedFd<'_>>,
        path: Option<&Path>,
        offset: u64,
    ) -> Result<(u64, u64)> {
        let (file_len, block) = match fd {
            Some(fd) => sys::regular_file_len_and_block(fd).map_err(|e| Error::os("fstat", e).with_opt_path(path))?,
            None => (None, 0),
        };
        // A device file may be mapped to the end of its last page (never a SIGBUS there).
        let file_len = match backing {
            Backing::Device(_) => file_len.map(|l| align_up(l, sys::page_size() as u64).unwrap_or(l)),
            _ => file_len,
        };
        let len = match (fd, file_len, opts.len) {
            // Devices (`/dev/uioN`, `/dev/mem`; PCI `resourceN` is regular) and other special
            // files have no meaningful size: the driver checks the range, so the caller must say
            // how much to map.
            (Some(_), None, Some(len)) => Ok(len as u64),
            (Some(fd), None, None) => Err(Error::new("mmap", ErrorKind::InvalidArgument)
                .with_opt_path(path)
                .with_range(offset, 0)
                .with_detail(if sys::is_directory(fd) {
                    "a directory cannot be mapped"
                } else {
                    "not a regular file: give the length to map (MapOptions::len)"
                })),
            (Some(_), Some(file_len), None) => file_len.checked_sub(offset).ok_or_else(|| {
                Error::new("mmap", ErrorKind::OutOfBounds)
                    .with_opt_path(path)
                    .with_range(offset, 0)
                    .with_detail(format!("offset is past the end of the file (len {file_len:#x})"))
            }),
            (Some(_), Some(file_len), Some(len)) => match offset.checked_add(len as u64) {
                Some(end) if end <= file_len => Ok(len as u64),
                _ => Err(Error::new("mmap", ErrorKind::OutOfBounds)
                    .with_opt_path(path)
                    .with_range(offset, len as u64)
                    .with_detail(format!(
                        "range ends past the end of the file (len {file_len:#x}); touching it would raise SIGBUS"
                    ))),
            },
            (None, _, Some(len)) => Ok(len as u64),
            (None, _, None) => Err(Error::new("mmap", ErrorKind::InvalidArgument)
                .with_detail("an anonymous mapping needs a length (MapOptions::len)")),
        }?;
        Ok((len, block))
    }

    /// The file offset of the first mapped page.
    fn aligned_offset(&self) -> u64 {
        self.offset - self.delta as u64
    }

    /// The error for a range that overflows when rounded to huge pages.
    fn too_big(&self) -> Error {
        Error::new("mmap", ErrorKind::OutOfBounds)
            .with_opt_path(self.path.as_deref())
            .with_range(self.offset, self.len as u64)
            .with_detail("length overflows when rounded to whole pages")
    }
}

/// The `mmap` flags and address hint for `opts`: sharing, `MAP_NORESERVE`, `MAP_STACK`,
/// `MAP_POPULATE` and placement (`MAP_FIXED_NOREPLACE`, never `MAP_FIXED`).
fn map_flags(opts: &MapOptions, file: bool) -> Result<(*mut libc::c_void, MapFlags)> {
    let page = sys::page_size();
    let mut flags = opts.sharing.unwrap_or_default().map_flags();
    if opts.no_reserve {
        flags |= MapFlags::NORESERVE;
    }
    if opts.stack && !file {
        flags |= MapFlags::STACK;
    }
    if opts.populate == Populate::MapPopulate {
        flags |= MapFlags::POPULATE;
    }
    let addr = match opts.placement {
        Placement::Anywhere => std::ptr::null_mut(),
        Placement::Hint(a) => a as *mut libc::c_void,
        Placement::FixedNoReplace(a) => {
            if a == 0 {
                // A process with CAP_SYS_RAWIO may map page 0, but no owner can hold a mapping
                // at NULL (its slices would be null pointers).
                return Err(Error::new("mmap", ErrorKind::InvalidArgument)
                    .with_addr(a)
                    .with_detail("a mapping cannot be placed at address 0"));
            }
            if a % page != 0 {
                return Err(Error::new("mmap", ErrorKind::Unaligned)
                    .with_addr(a)
                    .with_detail(format!("fixed address is not page-aligned (page size {page:#x})")));
            }
            flags |= MapFlags::from_bits_retain(sys::kconst::MAP_FIXED_NOREPLACE as u32);
            a as *mut libc::c_void
        }
    };
    Ok((addr, flags))
}

/// The alignment the plain path must give a THP request (the PMD size), or 0; records in
/// `pages.fallback` why THP cannot apply (disabled, no support, a region smaller than one
/// huge page).
fn thp_alignment(req: &Request<'_>, opts: &MapOptions, pages: &mut PageOutcome) -> usize {
    if opts.huge != HugePages::Transparent {
        return 0;
    }
    match thp_mode().as_deref() {
        Some("never") => {
            pages.fallback = Some(
                "transparent huge pages are disabled (/sys/kernel/mm/transparent_hugepage/enabled = never)".into(),
            );
            0
        }
        None => {
            pages.fallback = Some("this kernel has no transparent huge page support".into());
            0
        }
        Some(_) => {
            let pmd = sys::thp_size();
            if req.map_len < pmd {
                pages.fallback =
                    Some(format!("region ({:#x} bytes) is smaller than one huge page ({pmd:#x})", req.map_len));
                0
            } else if req.fd.is_none() && opts.placement == Placement::Anywhere {
                pmd
            } else {
                0
            }
        }
    }
}

impl Mapping {
    /// Maps `backing` as `opts` say. `default_prot` applies when the options name none.
    ///
    /// The phases: [resolve the range](Request::resolve), [build the flags](map_flags), map
    /// ([hugetlb](Self::map_hugetlb), else plain or [THP-aligned](thp_alignment)), then
    /// [apply the post-map options](Self::apply_options).
    ///
    /// # Safety
    /// For a file backing, the caller accepts the file-mapping contract of [`crate::file`]:
    /// the file may not be truncated or modified by others while slices of the map are alive.
    pub(crate) unsafe fn new(opts: &MapOptions, backing: Backing<'_>, default_prot: Protection) -> Result<Mapping> {
        let req = Request::resolve(opts, backing, default_prot)?;
        let mut pages = PageOutcome { requested: opts.huge, page_size: sys::page_size(), fallback: None };
        if req.map_len == 0 {
            return Ok(Mapping::from_kernel(NonNull::dangling(), 0, req, opts.sharing.unwrap_or_default(), pages));
        }
        let (addr, flags) = map_flags(opts, req.fd.is_some())?;
        // A hugetlbfs file (or `MFD_HUGETLB` memfd) is mapped in whole huge pages whatever the
        // length asked for, and unmapped only so: record the kernel's length, or the unmap on
        // drop fails (`EINVAL`) and leaks the mapping.
        let mut req = req;
        let hugetlbfs = req.fd.and_then(|fd| hugetlbfs_page_size(fd, req.block));
        if let Some(hsize) = hugetlbfs {
            if req.aligned_offset() % hsize as u64 != 0 {
                return Err(Error::new("mmap", ErrorKind::Unaligned)
                    .with_opt_path(req.path.as_deref())
                    .with_range(req.aligned_offset(), req.map_len as u64)
                    .with_detail(format!(
                        "a file on hugetlbfs maps from multiples of its {} KiB pages",
                        hsize / 1024
                    )));
            }
            req.map_len = align_up(req.map_len as u64, hsize as u64).ok_or_else(|| req.too_big())? as usize;
            pages.page_size = hsize;
        }
        let (base, map_len) = match Self::map_hugetlb(&req, opts, addr, flags, hugetlbfs, &mut pages)? {
            Some(mapped) => mapped,
            None => {
                let align = thp_alignment(&req, opts, &mut pages);
                (Self::map_plain(&req, opts, addr, flags, align)?, req.map_len)
            }
        };
        let base = NonNull::new(base).expect("mmap returned NULL");
        // From here the mapping is owned: on any failure it is dropped (unmapped) before the
        // error returns.
        let mut m = Mapping::from_kernel(base, map_len, req, opts.sharing.unwrap_or_default(), pages);
        m.hugetlbfs = hugetlbfs.is_some();
        m.apply_options(opts)?;
        Ok(m)
    }

    /// Hugetlb pages, when asked for: `Some((base, len))` when the kernel gave them, `None`
    /// (with the reason in `pages.fallback`) when the plain path must map instead.
    ///
    /// A file backing gets its pages from its file system, never from `MAP_HUGETLB`: a file on
    /// hugetlbfs (`hugetlbfs`: its page size) is mapped by the plain path in its own huge
    /// pages, and a different size asked for is an error (the kernel would map, and grow the
    /// file, in whole pages of the size asked, past an `F_SEAL_GROW` seal); another file falls
    /// back and says why.
    fn map_hugetlb(
        req: &Request<'_>,
        opts: &MapOptions,
        addr: *mut libc::c_void,
        flags: MapFlags,
        hugetlbfs: Option<usize>,
        pages: &mut PageOutcome,
    ) -> Result<Option<(*mut u8, usize)>> {
        let HugePages::Hugetlb(size) = opts.huge else { return Ok(None) };
        match (req.fd.is_some(), hugetlbfs) {
            (false, _) => {}
            (true, Some(file_page)) if !matches!(size, Some(s) if s != file_page) => return Ok(None),
            (true, Some(file_page)) => {
                return Err(Error::new("mmap", ErrorKind::InvalidArgument)
                    .with_opt_path(req.path.as_deref())
                    .with_detail(format!(
                        "the file is on hugetlbfs with {} KiB pages; Hugetlb(Some({:#x})) asks for other pages",
                        file_page / 1024,
                        size.unwrap_or_default()
                    )))
            }
            (true, None) => {
                pages.fallback = Some(
                    "hugetlb pages back anonymous memory and files on hugetlbfs (an MFD_HUGETLB memfd); this file \
                     is on another file system"
                        .to_owned(),
                );
                return Ok(None);
            }
        }
        let page = sys::page_size();
        let Some(hsize) = size.or_else(default_hugetlb_size).filter(|h| h.is_power_of_two() && *h >= page) else {
            pages.fallback = Some(match size {
                Some(s) => {
                    format!("{s:#x} bytes is not a huge page size (a power of two of at least the {page:#x}-byte page)")
                }
                None => "no hugetlb page size is configured on this system".to_owned(),
            });
            return Ok(None);
        };
        let hlen = align_up(req.map_len as u64, hsize as u64).ok_or_else(|| req.too_big())? as usize;
        let huge_shift = (hsize.trailing_zeros() as i32) << libc::MAP_HUGE_SHIFT;
        let hflags = flags | MapFlags::from_bits_retain((libc::MAP_HUGETLB | huge_shift) as u32);
        // SAFETY: no MAP_FIXED: the kernel picks fresh address space (or honours
        // MAP_FIXED_NOREPLACE, which never replaces).
        match unsafe { sys::mmap(addr, hlen, req.prot.prot_flags(), hflags, req.fd, req.aligned_offset()) } {
            Ok(base) => {
                pages.page_size = hsize;
                Ok(Some((base, hlen)))
            }
            Err(e) => {
                let free =
                    match (hugetlb_pool_count(hsize, "free_hugepages"), hugetlb_pool_count(hsize, "resv_hugepages")) {
                        (None, _) => "no pool of that size".to_owned(),
                        // Free pages may all be promised to other mappings already.
                        (Some(n), Some(r)) if r > 0 => format!("{n} free, {r} of them reserved by other mappings"),
                        (Some(n), _) => format!("{n} free"),
                    };
                pages.fallback = Some(format!(
                    "hugetlb mmap of {} KiB pages failed: {} ({}); pool: {free}",
                    hsize / 1024,
                    crate::error::strerror(e.raw_os_error()),
                    crate::error::errno_name(e.raw_os_error())
                ));
                Ok(None)
            }
        }
    }

    /// Base pages: `mmap` of the page-rounded range, over-mapped and trimmed to `align` when
    /// it is non-zero (THP, anonymous and placed anywhere only); refuses a
    /// `MAP_FIXED_NOREPLACE` the kernel took as a hint.
    fn map_plain(
        req: &Request<'_>,
        opts: &MapOptions,
        addr: *mut libc::c_void,
        flags: MapFlags,
        align: usize,
    ) -> Result<*mut u8> {
        let map_err = |e| {
            let err = Error::os("mmap", e).with_opt_path(req.path.as_deref()).with_range(req.offset, req.len as u64);
            let private_writable = !flags.contains(MapFlags::SHARED) && req.prot.writable();
            let err = with_memory_limits(err, e, req.map_len, private_writable);
            let err = with_open_mode(err, e, req.fd, req.prot, flags.contains(MapFlags::SHARED));
            // The address asked for is what a fixed placement's error is about (EEXIST: taken;
            // ENOMEM: past the address space).
            match opts.placement {
                Placement::FixedNoReplace(a) => err.with_addr(a),
                _ => err,
            }
        };
        let base = if align != 0 {
            sys::mmap_anon_aligned(req.map_len, align, req.prot.prot_flags(), flags).map_err(map_err)?
        } else {
            // SAFETY: no MAP_FIXED in `flags`: the kernel picks fresh address space or honours
            // MAP_FIXED_NOREPLACE, which fails instead of replacing anything.
            unsafe { sys::mmap(addr, req.map_len, req.prot.prot_flags(), flags, req.fd, req.aligned_offset()) }
                .map_err(map_err)?
        };
        if let Placement::FixedNoReplace(a) = opts.placement {
            if base as usize != a {
                // Kernels before 4.17 treat MAP_FIXED_NOREPLACE as a hint.
                // SAFETY: we just mapped `base..base+map_len`; nothing else refers to it.
                let _ = unsafe { sys::munmap(base, req.map_len) };
                return Err(Error::from_raw_errno("mmap", libc::EEXIST)
                    .with_addr(a)
                    .with_detail("the kernel placed the mapping elsewhere (MAP_FIXED_NOREPLACE unsupported)"));
            }
        }
        Ok(base)
    }

    /// Wraps a fresh kernel mapping of `map_len` bytes at `base` (dangling when 0).
    fn from_kernel(
        base: NonNull<u8>,
        map_len: usize,
        req: Request<'_>,
        sharing: Sharing,
        pages: PageOutcome,
    ) -> Mapping {
        Mapping {
            base,
            map_len,
            delta: req.delta,
            len: req.len,
            prot: req.prot,
            sharing,
            file_offset: req.fd.map(|_| req.offset),
            path: req.path,
            pages,
            name_applied: false,
            hugetlbfs: false,
            thp_advised: false,
        }
    }

    /// The options applied after `mmap`: THP advice (and whether it can take), the name,
    /// access advice, populate and lock.
    fn apply_options(&mut self, opts: &MapOptions) -> Result<()> {
        if opts.huge == HugePages::Transparent && self.pages.fallback.is_none() {
            self.advise_thp();
        }
        if let (Some(name), None) = (&opts.name, self.file_offset) {
            self.name_applied = self.set_name(name)?;
        }
        if let Some(advice) = opts.advice {
            self.advise(.., advice)?;
        }
        match opts.populate {
            Populate::Read => self.populate(..)?,
            Populate::Write => self.populate_write(..)?,
            Populate::No | Populate::MapPopulate => {}
        }
        match opts.lock {
            Lock::No => {}
            Lock::OnFault => self.lock_range(.., true)?,
            Lock::Full => self.lock_range(.., false)?,
        }
        Ok(())
    }

    /// `MADV_HUGEPAGE` on the whole region, and the page outcome it earns (see
    /// [`thp_outcome`](Self::thp_outcome)).
    fn advise_thp(&mut self) {
        if let Err(e) = self.advise(.., Advice::HugePage) {
            self.pages.fallback = Some(format!("MADV_HUGEPAGE refused: {e}"));
            return;
        }
        self.thp_advised = true;
        self.thp_outcome();
    }

    /// The page outcome of a region advised `MADV_HUGEPAGE`: the kernel maps a huge page only
    /// where a PMD-aligned, PMD-sized piece of the region lies (for a file, at a PMD-aligned
    /// file offset too); say so when there is none rather than claim huge pages. Asked again
    /// after [`resize`](Self::resize), which may move or shrink the region (the advice goes
    /// with it).
    fn thp_outcome(&mut self) {
        let pmd = sys::thp_size() as u64;
        let base = self.base.as_ptr() as u64;
        let end = base + self.map_len as u64;
        let fits = align_up(base, pmd).is_some_and(|first| first.checked_add(pmd).is_some_and(|e| e <= end));
        let file_base = self.file_offset.map(|o| o - self.delta as u64);
        let congruent = file_base.map_or(true, |fb| base.wrapping_sub(fb) % pmd == 0);
        if fits && congruent {
            self.pages.page_size = pmd as usize;
            self.pages.fallback = None;
        } else {
            self.pages.page_size = sys::page_size();
            self.pages.fallback = Some(if fits {
                format!(
                    "MADV_HUGEPAGE applied, but the address {base:#x} and the file offset differ modulo the huge \
                     page size ({pmd:#x}), so no huge page can map the file"
                )
            } else {
                format!("MADV_HUGEPAGE applied, but the region {base:#x}..{end:#x} holds no {pmd:#x}-aligned huge page")
            });
        }
    }

    /// Whether the mapping is backed by hugetlb pages (an anonymous hugetlb request the kernel
    /// granted, or a file on hugetlbfs).
    pub(crate) fn is_hugetlb(&self) -> bool {
        self.hugetlbfs || (matches!(self.pages.requested, HugePages::Hugetlb(_)) && self.pages.fallback.is_none())
    }

    /// Refuses a hugetlb mapping made with [`MapOptions::no_reserve`] for a face that hands out
    /// references (`face`): without a reservation the pool may have no page for a fault (now,
    /// or for a copy-on-write after `fork`), and the kernel answers that fault with `SIGBUS`, a
    /// plain slice access killing the process. Raw faces may keep it.
    pub(crate) fn refuse_unreserved_hugetlb(&self, opts: &MapOptions, face: &str) -> Result<()> {
        if !(opts.no_reserve && self.is_hugetlb()) {
            return Ok(());
        }
        Err(Error::new("mmap", ErrorKind::InvalidArgument)
            .with_opt_path(self.path.as_deref())
            .with_range(self.file_offset.unwrap_or(0), self.len as u64)
            .with_detail(format!(
                "no_reserve on hugetlb pages: a page the pool cannot supply raises SIGBUS when touched, so {face} \
                 (which hands out references) refuses it; drop no_reserve, or map it raw (map_anon_raw, map_raw)"
            )))
    }

    /// Narrows the exposed bytes to `[delta, delta + len)` of the kernel region; the rest stays
    /// mapped and owned (unmapped on drop) but outside every slice (guard pages).
    pub(crate) fn set_window(&mut self, delta: usize, len: usize) {
        assert!(delta.checked_add(len).is_some_and(|end| end <= self.map_len), "window inside the mapping");
        self.delta = delta;
        self.len = len;
    }

    /// Address of the first requested byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.as_mut_ptr()
    }

    /// Address of the first requested byte, for writing through raw pointers.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        if self.map_len == 0 {
            // Dangling, but aligned for any type a typed view may ask for, so an empty map is
            // an empty slice of every `T`.
            return NonNull::<PageAligned>::dangling().as_ptr().cast();
        }
        // SAFETY: `delta < page size <= map_len`, so the result stays inside the mapping.
        unsafe { self.base.as_ptr().add(self.delta) }
    }

    /// Requested length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (nothing was mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The page-aligned region the kernel mapped: `(address, length)`.
    pub fn kernel_region(&self) -> (usize, usize) {
        (self.base.as_ptr() as usize, self.map_len)
    }

    /// Protection the mapping was created with (or last set for the whole of it).
    pub fn protection(&self) -> Protection {
        self.prot
    }

    /// Shared or private.
    pub fn sharing(&self) -> Sharing {
        self.sharing
    }

    /// File offset of the first byte, for file-backed mappings.
    pub fn file_offset(&self) -> Option<u64> {
        self.file_offset
    }

    /// Path of the mapped file as `/proc/self/fd` named it when it was mapped.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The page size the mapping really got, and why it fell back if it did.
    pub fn page_outcome(&self) -> &PageOutcome {
        &self.pages
    }

    /// Whether a name given with [`MapOptions::name`] was applied (the kernel needs
    /// `CONFIG_ANON_VMA_NAME`, Linux 5.17+; elsewhere naming is a reported no-op).
    pub fn name_applied(&self) -> bool {
        self.name_applied
    }

    /// Resolves a byte range relative to the requested bytes into `(offset, len)`, checking it.
    pub(crate) fn check_range(&self, op: &'static str, range: impl RangeBounds<usize>) -> Result<(usize, usize)> {
        resolve_range(op, range, self.len).map_err(|e| e.with_opt_path(self.path.as_deref()))
    }

    /// The whole pages holding `range`: `(address, length)`; length 0 for an empty range.
    /// The unit the kernel applies range operations in: the huge page size of a hugetlb-backed
    /// mapping (its areas cannot be split inside a huge page, and `MADV_DONTNEED` would quietly
    /// skip a partial one), the base page otherwise (a transparent huge page is split as needed).
    fn op_page_size(&self) -> usize {
        match (self.pages.requested, &self.pages.fallback) {
            _ if self.hugetlbfs => self.pages.page_size,
            (HugePages::Hugetlb(_), None) => self.pages.page_size,
            _ => sys::page_size(),
        }
    }

    /// `range` widened to whole [`op_page_size`](Self::op_page_size) pages: `(offset, len, start
    /// pointer, span)`.
    fn pages_of(&self, op: &'static str, range: impl RangeBounds<usize>) -> Result<(usize, usize, *mut u8, usize)> {
        self.pages_of_in(op, range, self.op_page_size())
    }

    /// `range` widened to whole pages of `page` bytes.
    fn pages_of_in(
        &self,
        op: &'static str,
        range: impl RangeBounds<usize>,
        page: usize,
    ) -> Result<(usize, usize, *mut u8, usize)> {
        let (off, len) = self.check_range(op, range)?;
        let page = page as u64;
        // Cannot overflow: `delta + off + len <= map_len`, which fits in usize.
        let (start, span) = page_span((self.delta + off) as u64, len as u64, page).expect("range inside mapping");
        // SAFETY: `start + span <= map_len` because the range is inside the mapping and the
        // mapping is a whole number of pages.
        let ptr = unsafe { self.base.as_ptr().add(start as usize) };
        Ok((off, len, ptr, span as usize))
    }

    fn range_error(
        &self,
        op: impl Into<std::borrow::Cow<'static, str>>,
        e: rustix::io::Errno,
        off: usize,
        len: usize,
    ) -> Error {
        Error::os(op, e)
            .with_opt_path(self.path.as_deref())
            .with_addr(self.as_ptr() as usize + off)
            .with_range(off as u64, len as u64)
    }

    /// `madvise(2)` with advice that never changes contents. The range widens to whole pages
    /// (huge pages on a hugetlb mapping).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let map = mmkit::MapOptions::new().len(1 << 20).map_anon()?;
    /// map.advise(.., mmkit::Advice::Random)?;
    /// # Ok(()) }
    /// ```
    pub fn advise(&self, range: impl RangeBounds<usize>, advice: Advice) -> Result<()> {
        let (value, name) = advice.raw();
        // SAFETY: this advice does not change contents.
        unsafe { self.madvise(range, value, name, false) }
    }

    /// `madvise(value)` on the whole pages of `range`, with errors naming `name`. Advice that
    /// `changes` contents must cover whole huge pages on a hugetlb mapping.
    ///
    /// # Safety
    /// If the advice changes contents, no live reference may rely on them.
    unsafe fn madvise(&self, range: impl RangeBounds<usize>, value: i32, name: &str, changes: bool) -> Result<()> {
        let (off, len, ptr, span) = self.pages_of("madvise", range)?;
        if changes && self.op_page_size() != sys::page_size() {
            self.require_whole_pages(
                format!("madvise({name})"),
                "on a hugetlb mapping this advice applies to whole huge pages",
                off,
                len,
            )?;
        }
        if span == 0 {
            return Ok(());
        }
        // SAFETY: the pages are inside our mapping; the content contract is the caller's.
        unsafe { sys::madvise(ptr, span, value) }.map_err(|e| self.range_error(format!("madvise({name})"), e, off, len))
    }

    /// `madvise(2)` with advice that may change what the range reads back.
    ///
    /// # Safety
    /// No live reference (`&[u8]` from a face) may rely on the range's current contents, and
    /// for `WipeOnFork`/`Free` the caller accepts zeros appearing later (for `WipeOnFork`: in a
    /// forked child, behind the references it inherits; see
    /// [`MmapMut::wipe_on_fork`](crate::MmapMut::wipe_on_fork)). For `DontFork`, no
    /// forked child may touch the range or use (or drop) the face that owns it, and no child
    /// may map something else at its address while the face's copy exists there; see
    /// [`MmapMut::dont_fork`](crate::MmapMut::dont_fork).
    ///
    /// On a hugetlb mapping the range must cover whole huge pages (or run to an end of the
    /// mapping): widening it would change a whole huge page for a few bytes asked for, and the
    /// kernel would quietly skip a partial one.
    pub unsafe fn advise_unchecked(&self, range: impl RangeBounds<usize>, advice: UncheckedAdvice) -> Result<()> {
        let (value, name) = advice.raw();
        // SAFETY: forwarded contract.
        unsafe { self.madvise(range, value, name, true) }
    }

    /// Checks that `[off, off + len)` starts and ends on an [`op_page_size`](Self::op_page_size)
    /// boundary of the kernel region, or at the first or last byte of the mapping.
    fn require_whole_pages(
        &self,
        op: impl Into<std::borrow::Cow<'static, str>>,
        why: &str,
        off: usize,
        len: usize,
    ) -> Result<()> {
        let page = self.op_page_size();
        let (start, end) = (self.delta + off, self.delta + off + len);
        if (start % page != 0 && off != 0) || (end % page != 0 && off + len != self.len) {
            return Err(Error::new(op, ErrorKind::Unaligned)
                .with_opt_path(self.path.as_deref())
                .with_range(off as u64, len as u64)
                .with_detail(format!("{why}: the range must start and end on a page boundary (page size {page:#x})")));
        }
        Ok(())
    }

    /// Drops the pages of `range` (`MADV_DONTNEED`): anonymous and private pages read back as
    /// zeros (or the file's bytes), shared file pages re-read from the file. Needs `&mut self`,
    /// so no slice of the mapping is alive.
    ///
    /// Private hugetlb memory is refused with [`ErrorKind::Unsupported`]: the kernel frees such
    /// a page without giving the mapping its pool reservation back (seen on Linux 6.1), so
    /// another mapping may take the pool's last page and the next touch raises `SIGBUS`.
    pub fn discard(&mut self, range: impl RangeBounds<usize>) -> Result<()> {
        self.refuse_private_hugetlb_drop("discard")?;
        // SAFETY: `&mut self` guarantees no reference into the mapping is alive.
        unsafe { self.advise_unchecked(range, UncheckedAdvice::DontNeed) }
    }

    /// Refuses dropping (`MADV_DONTNEED`) pages of a private hugetlb mapping for `op`: the
    /// kernel frees a faulted private huge page without restoring the mapping's reservation,
    /// so a touch after another mapping took the pool's page raises `SIGBUS`.
    pub(crate) fn refuse_private_hugetlb_drop(&self, op: &'static str) -> Result<()> {
        if self.sharing != Sharing::Private || !self.is_hugetlb() {
            return Ok(());
        }
        Err(Error::new(op, ErrorKind::Unsupported)
            .with_opt_path(self.path.as_deref())
            .with_addr(self.as_ptr() as usize)
            .with_range(0, self.len as u64)
            .with_detail(
                "MADV_DONTNEED frees a private huge page without giving its pool reservation back: another \
                 mapping may then take the pool's page, and touching this one again raises SIGBUS (drop the map \
                 to give its pages back)",
            ))
    }

    /// `mprotect(2)` on `range`. Protection changes whole pages (huge pages on a hugetlb
    /// mapping), so the range must start on a page boundary (relative to the kernel region) or
    /// at the first byte of the mapping, and end on one or at the last byte: the bytes of a page
    /// that lie outside the requested window (an unaligned file offset) go along.
    /// `protect(.., prot)` always works.
    ///
    /// # Safety
    /// No live reference into the range may rely on a permission that is removed (a `&[u8]`
    /// into a range made `PROT_NONE` would fault on use).
    pub unsafe fn protect(&mut self, range: impl RangeBounds<usize>, prot: Protection) -> Result<()> {
        let (off, len) = self.check_range("mprotect", range)?;
        let page = self.op_page_size();
        self.require_whole_pages("mprotect", "protection changes whole pages", off, len)?;
        let start = self.delta + off;
        if len == 0 {
            return Ok(());
        }
        // Cannot overflow: the range is inside the mapping, a whole number of pages.
        let (start, span) = page_span(start as u64, len as u64, page as u64).expect("inside mapping");
        let (start, span) = (start as usize, span as usize);
        // SAFETY: `start` is page-aligned and `start + span <= map_len`.
        let ptr = unsafe { self.base.as_ptr().add(start) };
        // SAFETY: the pages are ours; the reference contract is the caller's.
        unsafe { sys::mprotect(ptr, span, prot.prot_flags()) }
            .map_err(|e| self.range_error("mprotect", e, off, len))?;
        if off == 0 && len == self.len {
            self.prot = prot;
        }
        Ok(())
    }

    fn lock_range(&self, range: impl RangeBounds<usize>, on_fault: bool) -> Result<()> {
        let (off, len, ptr, span) = self.pages_of("mlock", range)?;
        if span == 0 {
            return Ok(());
        }
        // SAFETY: the pages are inside our mapping; locking does not change contents.
        unsafe { sys::mlock(ptr, span, on_fault) }.map_err(|e| {
            let err = self.range_error(if on_fault { "mlock2(MLOCK_ONFAULT)" } else { "mlock" }, e, off, len);
            match e {
                // Locking faults the pages in: a hugetlb mapping without a reservation may find
                // no huge page in the pool.
                rustix::io::Errno::NOMEM if self.is_hugetlb() => err.with_detail(format!(
                    "{span:#x} bytes to lock in {} KiB huge pages; the pool may have none free for them \
                     (HugePages_Free in /proc/meminfo), or the locked-memory limit (RLIMIT_MEMLOCK) is reached",
                    self.pages.page_size / 1024
                )),
                // What a process without CAP_IPC_LOCK meets first: a few MiB of locked memory at
                // most. The capability, not the uid: root in a container without it (Docker's
                // default set) is bound, a process with it is not; asked here, on the error
                // path only. An unlimited limit is no cause.
                rustix::io::Errno::NOMEM | rustix::io::Errno::PERM if !has_cap_ipc_lock() => {
                    match rustix::process::getrlimit(rustix::process::Resource::Memlock).current {
                        Some(limit) => err.with_detail(format!(
                            "{span:#x} bytes to lock; the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`) is \
                             {limit:#x} bytes without CAP_IPC_LOCK"
                        )),
                        None => err,
                    }
                }
                _ => err,
            }
        })
    }

    /// Locks the pages of `range` in RAM, faulting them in now (`mlock`).
    pub fn lock(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.lock_range(range, false)
    }

    /// Locks the pages of `range` as they are faulted in (`mlock2(MLOCK_ONFAULT)`).
    pub fn lock_on_fault(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.lock_range(range, true)
    }

    /// Unlocks the pages of `range` (`munlock`).
    pub fn unlock(&self, range: impl RangeBounds<usize>) -> Result<()> {
        let (off, len, ptr, span) = self.pages_of("munlock", range)?;
        if span == 0 {
            return Ok(());
        }
        // SAFETY: the pages are inside our mapping.
        unsafe { sys::munlock(ptr, span) }.map_err(|e| self.range_error("munlock", e, off, len))
    }

    /// Which pages of `range` are resident in memory (`mincore`): one bit per page spanned by
    /// the range, page 0 being the page of its first byte. For a file map this is the
    /// file's page cache, whether or not this process has touched the page (a page read ahead by
    /// [`Advice::WillNeed`] or cached by another process counts; one dropped with `DontNeed`
    /// still counts).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut map = mmkit::MapOptions::new().len(4 * mmkit::page_size()).map_anon()?;
    /// assert_eq!(map.residency(..)?.resident_pages(), 0);
    /// map[0] = 1;
    /// let r = map.residency(..)?;
    /// assert!(r.is_resident(0) && !r.is_resident(1));
    /// # Ok(()) }
    /// ```
    pub fn residency(&self, range: impl RangeBounds<usize>) -> Result<Residency> {
        let page = sys::page_size();
        // mincore reports base pages, hugetlb ones included.
        let (off, len, ptr, span) = self.pages_of_in("mincore", range, page)?;
        // The kernel's answer (a byte per page) is taken a window at a time into the packed
        // bitmap: a 64 GiB reservation costs a 2 MiB bitmap, not a 16 MiB vector.
        let pages = span / page;
        let mut bitmap = PageBitmap::try_new(pages as u64).ok_or_else(|| {
            Error::from_raw_errno("mincore", libc::ENOMEM)
                .with_opt_path(self.path.as_deref())
                .with_range(off as u64, len as u64)
                .with_detail(format!("no memory for a bitmap of {pages} pages"))
        })?;
        let mut vec = vec![0u8; pages.min(MINCORE_WINDOW_PAGES)];
        sys::mincore_windows(ptr as usize, span, &mut vec, |first, bytes| {
            bitmap.fill_from_mincore(first as u64, bytes);
        })
        .map_err(|(e, _, _)| self.range_error("mincore", e, off, len))?;
        Ok(Residency::from_bitmap(page as u64, len as u64, bitmap))
    }

    /// Faults in the pages of `range` for reading (`MADV_POPULATE_READ`), so later reads take
    /// no page faults. On kernels before 5.14 it falls back to `MADV_WILLNEED` (read-ahead).
    /// It never touches the pages itself: where the kernel refuses (`EINVAL`: a page without
    /// the permission, or an incompatible mapping such as device memory; `EFAULT`: a page that
    /// would raise `SIGBUS`, as past the end of a file truncated under the map) that is the error.
    pub fn populate(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.populate_for(range, false)
    }

    /// Faults in the pages of `range` for writing (`MADV_POPULATE_WRITE`: private pages are
    /// copied now), so later writes take no page faults. On kernels before 5.14 it falls back
    /// to `MADV_WILLNEED`, which does not break copy-on-write. Errors as
    /// [`populate`](Self::populate), and for a mapping that is not writable.
    pub fn populate_write(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.populate_for(range, true)
    }

    fn populate_for(&self, range: impl RangeBounds<usize>, write: bool) -> Result<()> {
        let (off, len, ptr, span) = self.pages_of("madvise", range)?;
        if span == 0 {
            return Ok(());
        }
        if write && !self.prot.writable() {
            return Err(Error::new("madvise(MADV_POPULATE_WRITE)", ErrorKind::InvalidArgument)
                .with_opt_path(self.path.as_deref())
                .with_range(off as u64, len as u64)
                .with_detail("the mapping is not writable"));
        }
        // SAFETY: the pages are inside our mapping; populating does not change contents.
        match unsafe { sys::populate(ptr, span, write) } {
            Ok(()) => Ok(()),
            Err((name, rustix::io::Errno::INVAL)) if name != "madvise(MADV_WILLNEED)" => {
                let why = "the range holds pages without that permission, or memory that cannot be populated";
                Err(self.range_error(name, rustix::io::Errno::INVAL, off, len).with_detail(why))
            }
            // The kernel's answer where touching a page would raise SIGBUS.
            Err((name, rustix::io::Errno::FAULT)) => {
                let why = if self.is_hugetlb() {
                    "a page of the range would raise SIGBUS: no free huge page for it in the pool, or its hugetlbfs \
                     file was truncated under the map"
                } else if self.file_offset.is_some() {
                    "a page of the range would raise SIGBUS: the file ends before it (truncated under the map), or \
                     reading it failed (an I/O error; for a write, no space for it)"
                } else {
                    "a page of the range would raise SIGBUS: the kernel could not supply it (no memory for it)"
                };
                Err(self.range_error(name, rustix::io::Errno::FAULT, off, len).with_detail(why))
            }
            Err((name, e)) => Err(self.range_error(name, e, off, len)),
        }
    }

    /// Writes the dirty pages of `range` back to the file and waits (`msync(MS_SYNC)`). The
    /// range widens to whole pages; on anonymous or private maps this is a no-op.
    pub fn flush(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.sync_range(range, true)
    }

    /// `msync(MS_ASYNC)` over `range` (memmap2's `flush_async`): checks the range and returns
    /// without waiting. On Linux it starts no write-back: the kernel ignores `MS_ASYNC` (see
    /// mm/msync.c: the dirty pages are already tracked, and its flusher threads write them back
    /// after `vm.dirty_expire_centisecs`, 30 s by default). To start write-back early, call
    /// `sync_file_range(SYNC_FILE_RANGE_WRITE)` on the file; to make the pages durable,
    /// [`flush`](Self::flush).
    pub fn flush_async(&self, range: impl RangeBounds<usize>) -> Result<()> {
        self.sync_range(range, false)
    }

    fn sync_range(&self, range: impl RangeBounds<usize>, sync: bool) -> Result<()> {
        let (off, len, ptr, span) = self.pages_of("msync", range)?;
        if span == 0 {
            return Ok(());
        }
        // SAFETY: the pages are inside our mapping; msync does not change contents.
        unsafe { sys::msync(ptr, span, sync) }
            .map_err(|e| self.range_error(if sync { "msync(MS_SYNC)" } else { "msync(MS_ASYNC)" }, e, off, len))
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`, turning what would be a
    /// `SIGBUS` (the file was truncated under the map) into an [`ErrorKind::Truncated`] error.
    /// This is the safe way to read a file map when another process may shrink the file.
    ///
    /// It reads with `process_vm_readv(2)` on this process: where a seccomp sandbox denies that
    /// call, every copy fails with its errno (`EPERM`, or `ENOSYS` under gVisor).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::io::Write;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(&vec![7u8; 3 * mmkit::page_size()])?;
    /// let raw = mmkit::MapOptions::new().map_raw(&file)?;
    /// file.set_len(mmkit::page_size() as u64)?; // another process shrinks the file
    /// let mut buf = [0u8; 16];
    /// raw.copy_from_mapping(0, &mut buf)?; // still inside the file
    /// let err = raw.copy_from_mapping(2 * mmkit::page_size(), &mut buf).unwrap_err();
    /// assert_eq!(err.kind(), mmkit::ErrorKind::Truncated);
    /// # Ok(()) }
    /// ```
    pub fn copy_from_mapping(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let Some(end) = offset.checked_add(dst.len()) else {
            return Err(Error::new("copy_from_mapping", ErrorKind::OutOfBounds)
                .with_opt_path(self.path.as_deref())
                .with_range(offset as u64, dst.len() as u64)
                .with_detail(format!("offset + len overflows (the mapping's len is {:#x})", self.len)));
        };
        let (off, len) = self.check_range("copy_from_mapping", offset..end)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: `off + len <= self.len`, so the source lies inside our mapping.
        let src = unsafe { self.as_ptr().add(off) };
        let mut done = 0;
        while done < len {
            // SAFETY: source inside our mapping (it may be unreadable, which the kernel reports).
            let n = match unsafe { sys::read_self(src.add(done), &mut dst[done..len]) } {
                Ok(0) | Err(rustix::io::Errno::FAULT) => 0,
                Ok(n) => n,
                Err(e) => return Err(self.range_error("process_vm_readv", e, off + done, len - done)),
            };
            if n == 0 {
                return Err(self.unreadable_error("copy_from_mapping", off + done, len - done));
            }
            done += n;
        }
        Ok(())
    }

    /// The error for a page at `off` the kernel would not read (`process_vm_readv` answered
    /// `EFAULT` or nothing), named for its cause: a page without read access now (a protection
    /// change; asked of `/proc/self/maps`, on this error path only), else a page of a file map
    /// past the end of its file ([`ErrorKind::Truncated`]: what would have been `SIGBUS`), else
    /// the kernel's `EFAULT` as it is (an anonymous page it cannot supply).
    pub(crate) fn unreadable_error(&self, op: &'static str, off: usize, len: usize) -> Error {
        let addr = self.as_ptr() as usize + off;
        // When /proc cannot be read, the page is taken as readable: the cause is then the
        // file's (or the kernel's), as before the question could be asked.
        let error = match sys::area_readable(addr) {
            Ok(Some(false)) => Error::os(op, rustix::io::Errno::FAULT)
                .with_detail("the page is not readable (its protection has no read access)"),
            Ok(None) => Error::os(op, rustix::io::Errno::FAULT).with_detail("the page is not mapped"),
            Ok(Some(true)) | Err(_) if self.hugetlbfs => Error::new(op, ErrorKind::Truncated).with_detail(
                "the page cannot be read: the file on hugetlbfs was truncated, or a hole punched there finds no free \
                 huge page in the pool (this would have been SIGBUS)",
            ),
            Ok(Some(true)) | Err(_) if self.file_offset.is_some() => Error::new(op, ErrorKind::Truncated).with_detail(
                "the page cannot be read: the file was truncated under the mapping (this would have been SIGBUS)",
            ),
            Ok(Some(true)) | Err(_) => Error::os(op, rustix::io::Errno::FAULT).with_detail(
                "the kernel could not supply the page (no memory or huge page for it: an access would raise SIGBUS)",
            ),
        };
        error.with_opt_path(self.path.as_deref()).with_addr(addr).with_range(off as u64, len as u64)
    }

    /// Grows or shrinks the mapping with `mremap(2)`. With [`RemapOptions::may_move`] the
    /// kernel may move it (every pointer into it then dangles, hence `&mut self`); without,
    /// growing fails with `ENOMEM` when the next pages are taken.
    ///
    /// Growth never hands out bytes nothing backs. Private anonymous memory grows with zero
    /// pages. Any other mapping (a file, or shared anonymous memory, whose memory object keeps
    /// its size) is probed after the kernel grows it: the last new page is read with
    /// `process_vm_readv`, which reports a page that would raise `SIGBUS` as an error. When the
    /// file does not reach that page, the mapping is shrunk back and the call fails with
    /// [`ErrorKind::OutOfBounds`]. (Like `mmap`, the check is per page: bytes between the end of
    /// the file and the end of its last page are not the file's; they read as zeros at first,
    /// a write there is zeroed again by a disk file system's write-back or by extending the
    /// file, and on tmpfs a later `ftruncate` makes it the file's: see the faces' `remap`.)
    /// Hugetlb mappings and mappings with guard pages after the window cannot be resized.
    ///
    /// # Safety
    /// For a file-backed mapping the caller extends the
    /// [file-mapping contract](crate::file#safety-the-file-mapping-contract) to the new length:
    /// nobody truncates the file below it (or modifies it) while slices of the mapping are alive,
    /// and the new length does not pass the file's end (see above: only whole pages are checked).
    pub unsafe fn resize(&mut self, new_len: usize, options: RemapOptions) -> Result<()> {
        let page = sys::page_size() as u64;
        let (path, addr) = (self.path.clone(), self.base.as_ptr() as usize);
        let fail = |kind: ErrorKind, detail: String| {
            Error::new("mremap", kind)
                .with_opt_path(path.as_deref())
                .with_addr(addr)
                .with_range(0, new_len as u64)
                .with_detail(detail)
        };
        let new_map_len = (self.delta as u64)
            .checked_add(new_len as u64)
            .and_then(|end| align_up(end, page))
            .ok_or_else(|| fail(ErrorKind::OutOfBounds, "length overflows when rounded to whole pages".into()))?;
        let new_map_len =
            check_len("mremap", new_map_len).map_err(|e| e.with_opt_path(path.as_deref()).with_addr(addr))?;
        if self.map_len == 0 || new_len == 0 {
            return Err(fail(ErrorKind::InvalidArgument, "cannot resize from or to an empty mapping".into()));
        }
        // Any hugetlb backing, however it was asked for (a hugetlbfs file mapped with
        // `Transparent` or after a fallback too): the kernel resizes such a mapping only in
        // whole huge pages, and a shrink it ignores would leave the tail to leak at drop.
        if self.is_hugetlb() {
            return Err(fail(ErrorKind::Unsupported, "hugetlb mappings cannot be resized".into()));
        }
        if align_up((self.delta + self.len) as u64, page) != Some(self.map_len as u64) {
            return Err(fail(
                ErrorKind::Unsupported,
                "the mapping has pages after its window (guard pages): resizing would expose them".into(),
            ));
        }
        let old = (self.base.as_ptr(), self.map_len);
        // SAFETY: the region is ours; `&mut self` means no reference into it is alive.
        let base = unsafe { sys::mremap(old.0, old.1, new_map_len, options.may_move) }.map_err(|e| {
            Error::os("mremap", e)
                .with_opt_path(self.path.as_deref())
                .with_addr(old.0 as usize)
                .with_range(0, new_len as u64)
        })?;
        let base = NonNull::new(base).ok_or_else(|| fail(ErrorKind::Os, "mremap returned NULL".into()))?;
        self.base = base;
        self.map_len = new_map_len;
        let private_anon = self.file_offset.is_none() && self.sharing == Sharing::Private;
        let probe = if new_map_len > old.1 && !private_anon { self.last_page_backed() } else { Ok(true) };
        if probe != Ok(true) {
            // Shrinking in place always succeeds; the old bytes stay where they are now.
            // SAFETY: the region is ours and no reference into it is alive.
            let back = unsafe { sys::mremap(base.as_ptr(), new_map_len, old.1, false) };
            if let Ok(b) = back {
                self.map_len = old.1;
                self.base = NonNull::new(b).unwrap_or(base);
            } else {
                // Keep owning the whole region, but expose only the old bytes.
                self.len = self.len.min(new_len);
            }
            if self.thp_advised {
                self.thp_outcome();
            }
            if let Err(e) = probe {
                // The probe itself was refused (a seccomp filter: EPERM; gVisor: ENOSYS): the
                // growth cannot be checked, which says nothing about the file's length.
                // Named for the call that failed: an EPERM of mremap itself would mean a seal.
                return Err(Error::os("mremap (growth check: process_vm_readv)", e)
                    .with_opt_path(path.as_deref())
                    .with_addr(addr)
                    .with_range(0, new_len as u64)
                    .with_detail(format!(
                        "the new bytes cannot be checked: process_vm_readv, which reads the last new page \
                         without risking SIGBUS, was refused ({e}; a seccomp sandbox denies it), so the growth \
                         was undone"
                    )));
            }
            return Err(fail(
                ErrorKind::OutOfBounds,
                format!(
                    "the new bytes are not backed: the {} ends before byte {:#x} (touching it would raise SIGBUS), \
                     or the mapping is not readable so it cannot be checked",
                    if self.file_offset.is_some() { "file" } else { "shared memory object" },
                    new_len - 1
                ),
            ));
        }
        self.len = new_len;
        // The region may have moved or shrunk: whether it still holds a huge page is asked
        // again (no system call: the advice goes with the area).
        if self.thp_advised {
            self.thp_outcome();
        }
        Ok(())
    }

    /// Whether the last page of the kernel region can be read without a fault (`SIGBUS` past
    /// the end of a file, `PROT_NONE`): `process_vm_readv` reports such a page as `EFAULT`.
    /// Another error (`EPERM` from a seccomp filter, `ENOSYS`) means it could not be asked.
    fn last_page_backed(&self) -> std::result::Result<bool, rustix::io::Errno> {
        let mut byte = [0u8; 1];
        // SAFETY: the byte lies inside our mapping; `read_self` tolerates unreadable pages.
        let src = unsafe { self.base.as_ptr().add(self.map_len - 1) };
        // SAFETY: as above.
        match unsafe { sys::read_self(src, &mut byte) } {
            Ok(n) => Ok(n == 1),
            Err(rustix::io::Errno::FAULT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names an anonymous mapping (`[anon:NAME]` in `/proc/self/maps`). Returns `false`
    /// (a no-op) when the kernel lacks `CONFIG_ANON_VMA_NAME`. A file mapping, or a name no
    /// kernel accepts (more than 79 bytes, a byte outside printable ASCII, or one of
    /// `[ ] \ $` and a backquote), is an error on every kernel.
    pub fn set_name(&self, name: &str) -> Result<bool> {
        if self.file_offset.is_some() {
            return Err(Error::new("prctl(PR_SET_VMA_ANON_NAME)", ErrorKind::InvalidArgument)
                .with_opt_path(self.path.as_deref())
                .with_detail("only anonymous mappings can be named"));
        }
        let c = CString::new(name).map_err(|_| {
            Error::new("prctl(PR_SET_VMA_ANON_NAME)", ErrorKind::InvalidArgument).with_detail("name contains NUL")
        })?;
        if !anon_name_is_acceptable(name) {
            return Err(bad_anon_name(name).with_addr(self.base.as_ptr() as usize));
        }
        if self.map_len == 0 {
            return Ok(false);
        }
        // SAFETY: the region is an anonymous mapping we own; naming changes no contents.
        match unsafe { sys::set_anon_name(self.base.as_ptr(), self.map_len, Some(&c)) } {
            Ok(()) => Ok(true),
            // EINVAL for a name the kernel would accept: it cannot name areas (a no-op).
            Err(rustix::io::Errno::INVAL) => Ok(false),
            Err(e) => Err(Error::os("prctl(PR_SET_VMA_ANON_NAME)", e)
                .with_addr(self.base.as_ptr() as usize)
                .with_detail(format!("name {name:?}"))),
        }
    }

    /// The requested bytes as a slice.
    ///
    /// # Safety
    /// The mapping must be readable, and for as long as the slice lives nobody (this process
    /// through raw pointers, or another process through a shared mapping or the file) may
    /// modify or truncate the bytes.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the pointer is valid for `len` bytes of our mapping (or dangling with len 0);
        // the aliasing contract is the caller's.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The requested bytes as a mutable slice.
    ///
    /// # Safety
    /// The mapping must be readable and writable, and nobody else may access the bytes while
    /// the slice lives.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` excludes other borrows of this owner.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.map_len > 0 {
            // SAFETY: we own `base..base+map_len` and no borrow of it outlives `self`.
            if unsafe { sys::munmap(self.base.as_ptr(), self.map_len) } == Err(rustix::io::Errno::NOMEM) {
                // At `vm.max_map_count` the kernel cannot unmap the middle of an area (the
                // region merged with equal neighbours): the address space leaks, but its memory
                // need not (unless a page is sealed: see `discard_after_failed_unmap`). Only
                // then: that ENOMEM comes for a range inside one area, which the seal probe
                // answers for; another failure (EPERM: part of the region sealed with `mseal`)
                // may span areas it does not look at.
                // SAFETY: as above, all still mapped (a failed munmap changes nothing); nothing
                // reads the region again.
                unsafe { sys::discard_after_failed_unmap(self.base.as_ptr(), self.map_len) };
            }
        }
    }
}

/// Resolves `range` against a length, overflow-safe: `(offset, len)`.
pub(crate) fn resolve_range(op: &'static str, range: impl RangeBounds<usize>, total: usize) -> Result<(usize, usize)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => Some(total),
    };
    let err = |detail: String, s: u64, e: u64| {
        Error::new(op, ErrorKind::OutOfBounds).with_range(s, e.saturating_sub(s)).with_detail(detail)
    };
    match (start, end) {
        (Some(s), Some(e)) if s <= e && e <= total => Ok((s, e - s)),
        (Some(s), Some(e)) if s > e => {
            Err(err(format!("range starts after it ends ({s:#x} > {e:#x})"), s as u64, s as u64))
        }
        (Some(s), Some(e)) => Err(err(format!("range ends past the mapping (len {total:#x})"), s as u64, e as u64)),
        // A bound one past usize::MAX: the range ends (or starts) past any mapping.
        (Some(s), None) => {
            Err(err(format!("range ends past usize::MAX, past the mapping (len {total:#x})"), s as u64, u64::MAX))
        }
        (None, _) => {
            Err(err(format!("range starts past usize::MAX, past the mapping (len {total:#x})"), u64::MAX, u64::MAX))
        }
    }
}

/// Whether a kernel with `CONFIG_ANON_VMA_NAME` accepts `name` for `PR_SET_VMA_ANON_NAME`: at
/// most 79 bytes of printable ASCII (80 with the NUL: the kernel's `strndup_user(name, 80)`),
/// none of `[ ] \ $` and a backquote. `EINVAL` for such a name means the kernel cannot name
/// areas at all (a no-op to report, not an error).
pub(crate) fn anon_name_is_acceptable(name: &str) -> bool {
    name.len() < 80 && name.bytes().all(|b| (0x20..0x7f).contains(&b) && !b"[]\\$`".contains(&b))
}

/// The error for a name no kernel accepts ([`anon_name_is_acceptable`]): `EINVAL`, as the
/// kernel answers it, checked before any area is named (also where there is none to name).
pub(crate) fn bad_anon_name(name: &str) -> Error {
    Error::os("prctl(PR_SET_VMA_ANON_NAME)", rustix::io::Errno::INVAL)
        .with_detail(format!("name {name:?} (at most 79 printable characters, none of [ ] \\ $ `)"))
}

/// `err` for an `EACCES` of `mmap`/`mprotect` on a file opened without the access the map
/// asks for, with how it is open and what would work (asked of the descriptor on this error
/// path only). Any other error, or a descriptor whose mode fits (then the cause is elsewhere: a
/// `noexec` mount, an append-only or sealed file), is returned as it is.
pub(crate) fn with_open_mode(
    err: Error,
    e: rustix::io::Errno,
    fd: Option<BorrowedFd<'_>>,
    prot: Protection,
    shared: bool,
) -> Error {
    let (rustix::io::Errno::ACCESS, Some(fd)) = (e, fd) else { return err };
    let Ok(mode) = sys::access_mode(fd) else { return err };
    if shared && prot.writable() && mode != "read-write" {
        err.with_detail(format!(
            "the file is open {mode}; a shared writable map needs it open read-write (a private copy-on-write \
             map, map_copy, needs it open for reading only)"
        ))
    } else if mode == "write-only" {
        err.with_detail("the file is open write-only; a map needs it open for reading (read-write to write through it)")
    } else {
        err
    }
}

/// Adds the limits that can cause an `ENOMEM` of mapping or committing `len` bytes to `err`:
/// `RLIMIT_AS` (`ulimit -v`) for any map, `RLIMIT_DATA` (`ulimit -d`) for private writable
/// memory, where they are set, and `vm.max_map_count` when the process is at it (a call that
/// adds or splits an area then fails, however little it asks). Without any, `err` as it is (the
/// commit limit of `vm.overcommit_memory=2` is the other cause).
pub(crate) fn with_memory_limits(err: Error, e: rustix::io::Errno, len: usize, private_writable: bool) -> Error {
    if e != rustix::io::Errno::NOMEM {
        return err;
    }
    let (address_space, data) = sys::memory_limits();
    let mut limits = Vec::new();
    if let Some(l) = address_space {
        limits.push(format!("RLIMIT_AS (`ulimit -v`) is {l:#x} bytes"));
    }
    if let Some(l) = data.filter(|_| private_writable) {
        limits.push(format!("RLIMIT_DATA (`ulimit -d`, private writable memory) is {l:#x} bytes"));
    }
    // A call in the middle of an area splits it in three: two more areas than there were.
    if let Some((areas, max)) = sys::map_count_and_limit().filter(|&(areas, max)| areas + 2 >= max) {
        limits.push(format!(
            "the process maps about {areas} areas and vm.max_map_count is {max} (a call that adds or splits an \
             area fails at that limit)"
        ));
    }
    if limits.is_empty() {
        return err;
    }
    err.with_detail(format!("{len:#x} bytes asked; {}", limits.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Regression: the kernel takes at most 80 bytes with the NUL (`strndup_user(name, 80)`), so
    /// an 80-character name is refused with `EINVAL` where areas can be named; it was taken for
    /// "this kernel cannot name areas" (`Ok(false)`) instead of an error.
    #[test]
    fn an_anon_name_of_80_characters_is_not_acceptable() {
        assert!(anon_name_is_acceptable(&"a".repeat(79)));
        assert!(!anon_name_is_acceptable(&"a".repeat(80)));
    }

    #[test]
    fn ranges_resolve() {
        assert_eq!(resolve_range("t", .., 10).unwrap(), (0, 10));
        assert_eq!(resolve_range("t", 2..=4, 10).unwrap(), (2, 3));
        assert_eq!(resolve_range("t", 10..10, 10).unwrap(), (10, 0));
        assert_eq!(resolve_range("t", 3.., 10).unwrap(), (3, 7));
        let e = resolve_range("advise", 5..11, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfBounds);
        assert!(e.to_string().contains("ends past the mapping"), "{e}");
        // Regression: a bound past usize::MAX said only "range bound overflows".
        let e = resolve_range("residency", ..=usize::MAX, 10).unwrap_err();
        assert_eq!((e.kind(), e.range()), (ErrorKind::OutOfBounds, Some((0, u64::MAX))));
        assert!(e.to_string().contains("past the mapping (len 0xa)"), "{e}");
        let e = resolve_range("t", (Bound::Excluded(usize::MAX), Bound::Unbounded), 10).unwrap_err();
        assert!(e.to_string().contains("starts past usize::MAX") && e.range().is_some(), "{e}");
        #[allow(clippy::reversed_empty_ranges)]
        let r = resolve_range("t", 6..5, 10);
        assert!(r.is_err());
    }

    proptest! {
        #[test]
        fn resolve_never_exceeds_total(s in any::<usize>(), e in any::<usize>(), total in any::<usize>()) {
            if let Ok((off, len)) = resolve_range("t", s..e, total) {
                prop_assert!(off.checked_add(len).is_some_and(|end| end <= total));
                prop_assert_eq!((off, len), (s, e - s));
            } else {
                prop_assert!(s > e || e > total);
            }
        }
    }
}
