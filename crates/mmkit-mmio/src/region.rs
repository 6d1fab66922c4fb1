//! The register access module: the [`Registers`] access trait, the owned [`MmioRegion`], and
//! every volatile access to device memory (raw, and for typed registers).
//!
//! This is the only module of the crate with `unsafe` code. The mapping itself is mmkit's
//! [`MmapRaw`](mmkit::MmapRaw) (`MAP_SHARED`, raw pointers only, unmapped on drop). Its contract:
//! - A region is created only by [`map_shared`], which maps a device file with `MAP_SHARED`
//!   and keeps the mapping until the region is dropped.
//! - Device memory is only ever touched through raw pointers with `read_volatile` and
//!   `write_volatile`, after [`check_access`](crate::check_access) (bounds, alignment, width rules) passed. No Rust
//!   reference to device memory is ever created, so the compiler may not invent, merge or
//!   elide accesses.

// One of the modules with `unsafe`: device memory: volatile register access (DESIGN.md).
#![allow(unsafe_code)]

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use mmkit::{MapOptions, MmapRaw, Protection, Sharing};

use crate::access::{check_access_at, AccessRules, Width};
use crate::error::{Error, ErrorKind, Result};
use crate::registers::{Primitive, Reg, RegisterSpec, RegisterValue};

/// An owned, mapped window of device registers; unmapped on drop.
///
/// Obtained from [`Uio::map`](crate::Uio::map), [`PciDevice::map_bar`](crate::PciDevice::map_bar)
/// or [`PhysicalMemory::map`](crate::PhysicalMemory::map). Offsets are relative to the start
/// of the device memory (the UIO map's `offset` attribute and the sub-page offset of a
/// physical address are already applied).
///
/// Every access is volatile, goes through a raw pointer (never a Rust reference), and is
/// checked first: outside the region, misaligned, or of a width the device does not accept
/// (see [`AccessRules`]) is an [`Error`], not undefined behaviour. The device must stay present
/// while the region lives: a PCI device removed under it (hot-unplug, `remove` in sysfs) takes
/// its `resourceN` mappings with it, and the next access raises `SIGBUS`.
///
/// ```no_run
/// # fn main() -> Result<(), mmkit_mmio::Error> {
/// let uio = mmkit_mmio::Uio::open(0)?;
/// let regs = uio.map(0)?;
/// let ident = regs.read_u32(0x00)?;
/// regs.write_u32(0x04, 0x1234_5678)?;
/// assert_eq!(regs.read_u32(0x04)?, !0x1234_5678);
/// # Ok(()) }
/// ```
pub struct MmioRegion {
    /// Start of the device memory inside the mapping.
    ptr: NonNull<u8>,
    /// Usable bytes from `ptr`.
    len: usize,
    /// The whole mapping (page-aligned); held only so that it is unmapped when the region drops.
    _map: MmapRaw,
    rules: AccessRules,
    path: PathBuf,
    target: Option<String>,
    phys: Option<u64>,
}

// SAFETY: the region owns its mapping exclusively (no other owner unmaps it), and all accesses
// are volatile reads and writes through raw pointers, which are sound from any thread; what
// concurrent register accesses mean is the device's business, exactly as for a kernel driver.
unsafe impl Send for MmioRegion {}
// SAFETY: as for `Send`: `&MmioRegion` only allows checked volatile accesses through raw
// pointers, never references, so sharing it creates no aliasing `&`/`&mut` to device memory.
unsafe impl Sync for MmioRegion {}

/// Whether a `u64` volatile access is one 64-bit load or store on this target. On 32-bit
/// targets it is two 32-bit accesses (i686: two `mov`s, the high half first for a store;
/// armv7: `ldrd`/`strd`, two single-copy-atomic 32-bit accesses), so [`MmioRegion::check`]
/// refuses 64-bit accesses there.
const SINGLE_64_BIT_ACCESS: bool = cfg!(target_pointer_width = "64");

/// Where in a device file to map, and which part of the mapping is the device's memory.
#[derive(Debug, Clone)]
pub(crate) struct MapRequest<'a> {
    /// The device file (for error messages).
    pub path: &'a Path,
    /// A qualifier such as `map0` or `BAR0` (for error messages).
    pub target: Option<String>,
    /// The `mmap` offset (page-aligned).
    pub mmap_offset: u64,
    /// Bytes to map (a multiple of the page size).
    pub map_len: usize,
    /// Where the device memory starts inside the mapping.
    pub start: usize,
    /// Usable bytes from `start`.
    pub len: usize,
    /// The width rules of the device.
    pub rules: AccessRules,
    /// The physical address of the device memory, if known.
    pub phys: Option<u64>,
}

/// Checked register access: implemented by [`MmioRegion`](crate::MmioRegion) (real device
/// memory) and [`FakeRegisters`](crate::FakeRegisters) (a model for unit tests), so drivers
/// written against it run on both.
pub trait Registers {
    /// Bytes of register space.
    fn len(&self) -> usize;

    /// Whether the register space is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that an access of `width` at `offset` is in bounds, aligned and allowed,
    /// without performing it. `op` names the operation in the error.
    fn check(&self, op: &'static str, offset: usize, width: Width) -> Result<()>;

    /// Reads `width` bits at `offset`, zero-extended.
    fn read(&self, offset: usize, width: Width) -> Result<u64>;

    /// Writes `value` as a `width`-bit access at `offset`; a wider `value` is an error (not cut
    /// to its low bits).
    fn write(&self, offset: usize, width: Width, value: u64) -> Result<()>;

    /// Reads without checking; used by typed registers, whose layout was checked once when
    /// their block was created. Defaults to the checked [`Registers::read`]; real regions skip
    /// the checks, so a typed read costs what a raw volatile load costs.
    ///
    /// # Safety
    /// [`Registers::check`] of this `offset` and `width` must have succeeded on this same
    /// object (implementations may rely on their length and alignment never changing).
    unsafe fn read_unchecked(&self, offset: usize, width: Width) -> Result<u64> {
        self.read(offset, width)
    }

    /// Writes the low `width` bits of `value` without checking; see
    /// [`Registers::read_unchecked`].
    ///
    /// # Safety
    /// As for [`Registers::read_unchecked`].
    unsafe fn write_unchecked(&self, offset: usize, width: Width, value: u64) -> Result<()> {
        self.write(offset, width, value)
    }

    /// Reads the byte at `offset`.
    fn read_u8(&self, offset: usize) -> Result<u8> {
        self.read(offset, Width::W8).map(|v| v as u8)
    }
    /// Reads the 16-bit register at `offset`.
    fn read_u16(&self, offset: usize) -> Result<u16> {
        self.read(offset, Width::W16).map(|v| v as u16)
    }
    /// Reads the 32-bit register at `offset`.
    fn read_u32(&self, offset: usize) -> Result<u32> {
        self.read(offset, Width::W32).map(|v| v as u32)
    }
    /// Reads the 64-bit register at `offset`.
    fn read_u64(&self, offset: usize) -> Result<u64> {
        self.read(offset, Width::W64)
    }
    /// Writes the byte at `offset`.
    fn write_u8(&self, offset: usize, value: u8) -> Result<()> {
        self.write(offset, Width::W8, value.into())
    }
    /// Writes the 16-bit register at `offset`.
    fn write_u16(&self, offset: usize, value: u16) -> Result<()> {
        self.write(offset, Width::W16, value.into())
    }
    /// Writes the 32-bit register at `offset`.
    fn write_u32(&self, offset: usize, value: u32) -> Result<()> {
        self.write(offset, Width::W32, value.into())
    }
    /// Writes the 64-bit register at `offset`.
    fn write_u64(&self, offset: usize, value: u64) -> Result<()> {
        self.write(offset, Width::W64, value)
    }
}

/// `Registers` through a pointer to registers: `&R`, `Box<R>`, `Arc<R>`.
macro_rules! forward_registers {
    ($($ptr:ty),*) => {$(
        impl<R: Registers + ?Sized> Registers for $ptr {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn check(&self, op: &'static str, offset: usize, width: Width) -> Result<()> {
                (**self).check(op, offset, width)
            }
            fn read(&self, offset: usize, width: Width) -> Result<u64> {
                (**self).read(offset, width)
            }
            fn write(&self, offset: usize, width: Width, value: u64) -> Result<()> {
                (**self).write(offset, width, value)
            }
            unsafe fn read_unchecked(&self, offset: usize, width: Width) -> Result<u64> {
                // SAFETY: forwarded contract: the check succeeded on the same object.
                unsafe { (**self).read_unchecked(offset, width) }
            }
            unsafe fn write_unchecked(&self, offset: usize, width: Width, value: u64) -> Result<()> {
                // SAFETY: forwarded contract: the check succeeded on the same object.
                unsafe { (**self).write_unchecked(offset, width, value) }
            }
        }
    )*};
}

forward_registers!(&R, Box<R>, std::sync::Arc<R>);

/// The sysfs class of character device `major:minor` on this machine (`uio`, `mem`, ...): the
/// last component of `/sys/dev/char/MAJOR:MINOR/subsystem`.
pub(crate) fn char_device_class(major: u32, minor: u32) -> Option<String> {
    std::fs::read_link(format!("/sys/dev/char/{major}:{minor}/subsystem"))
        .ok()
        .and_then(|link| link.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Refuses a backing whose mapped pages could be missing or vanish under the region, so that
/// no checked access can raise `SIGBUS`. Accepted: the device nodes whose drivers map every
/// page of the range at `mmap` time and keep it (`/dev/mem`, character device 1:1, and UIO's
/// `/dev/uioN`, told by their sysfs class), a sysfs attribute (a PCI `resourceN`, which has no
/// pages to lose) and a memfd sealed against shrinking (a stand-in for a device, as in tests).
/// Refused: a file on hugetlbfs (a hole punched by any holder frees the huge page and its pool
/// reservation, sealed or not), a plain regular file (anyone holding it could truncate it), any other character
/// device (a shared map of `/dev/zero` at an offset lies past the object the kernel backs it
/// with; another driver may fault pages in, or refuse them, on its own terms) and block devices
/// (a map past a block device's end, as an unattached loop device's, is never backed).
/// No check here closes one route: the device going away under a live region (see
/// [`MmioRegion`]).
fn check_backing(fd: BorrowedFd<'_>) -> std::result::Result<(), String> {
    // linux/magic.h; `f_type` is i64, u64 or u32 by target (and libc's constant may not match it).
    const SYSFS_MAGIC: i128 = 0x6265_6572;
    let stat = rustix::fs::fstat(fd).map_err(|e| format!("fstat failed: {e}"))?;
    match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
        rustix::fs::FileType::CharacterDevice => {
            let (major, minor) = (rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev));
            let class = char_device_class(major, minor);
            if (major, minor) == (1, 1) || class.as_deref() == Some("uio") {
                return Ok(());
            }
            Err(format!(
                "character device {major}:{minor} ({}) is neither /dev/mem nor a UIO device: its driver may leave \
                 pages of the range unbacked (a shared map of /dev/zero at an offset does), and an access there \
                 would raise SIGBUS",
                class.map_or_else(|| "no sysfs class".to_owned(), |c| format!("class {c}"))
            ))
        }
        rustix::fs::FileType::RegularFile => {
            // linux/magic.h: HUGETLBFS_MAGIC, compared as the 32-bit value it is.
            #[allow(clippy::unnecessary_cast)] // already `u32` on some targets
            if rustix::fs::fstatfs(fd).is_ok_and(|fs| fs.f_type as u32 == 0x9584_58f6) {
                return Err("a file on hugetlbfs (an MFD_HUGETLB memfd) is not device memory: anyone holding it can \
                     punch a hole, which frees the huge page with its pool reservation, and the next access \
                     would raise SIGBUS when the pool is empty"
                    .to_owned());
            }
            if rustix::fs::fstatfs(fd).is_ok_and(|fs| i128::from(fs.f_type) == SYSFS_MAGIC)
                || rustix::fs::fcntl_get_seals(fd).is_ok_and(|seals| seals.contains(rustix::fs::SealFlags::SHRINK))
            {
                return Ok(());
            }
            Err("a regular file outside sysfs is not device memory: it could be truncated under the region, and \
                 every access would then raise SIGBUS (a stand-in for a device must be a memfd sealed with \
                 F_SEAL_SHRINK)"
                .to_owned())
        }
        other => Err(format!(
            "a {} is not device memory (only /dev/mem, /dev/uioN, a PCI resource file or a sealed memfd): pages of \
             the range may be unbacked, and an access there would raise SIGBUS",
            match other {
                rustix::fs::FileType::BlockDevice => "block device",
                rustix::fs::FileType::Directory => "directory",
                rustix::fs::FileType::Fifo => "FIFO",
                rustix::fs::FileType::Socket => "socket",
                _ => "special file",
            }
        )),
    }
}

/// Maps `req` from `fd` readable, writable and shared, and wraps it in a [`MmioRegion`].
///
/// Wraps `mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, mmap_offset)`; see
/// [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html).
#[doc(alias = "mmap")]
pub(crate) fn map_shared(fd: BorrowedFd<'_>, req: MapRequest<'_>) -> Result<MmioRegion> {
    let page = crate::page_size();
    let err = |kind| {
        Error::new("mmap", kind)
            .with_path(req.path)
            .with_range(req.mmap_offset, req.map_len as u64)
            .with_source_name(None, req.target.as_deref())
    };
    if req.map_len == 0 || req.len == 0 {
        return Err(err(ErrorKind::InvalidArgument).with_detail("the device region is empty"));
    }
    if req.mmap_offset % page as u64 != 0 || req.map_len % page != 0 {
        return Err(err(ErrorKind::Misaligned).with_detail(format!("not aligned to the {page:#x}-byte page size")));
    }
    if req.start.checked_add(req.len).map_or(true, |end| end > req.map_len) {
        return Err(err(ErrorKind::OutOfBounds)
            .with_detail(format!("device memory [{:#x}, +{:#x}) does not fit in the mapping", req.start, req.len)));
    }
    let map = MapOptions::new()
        .len(req.map_len)
        .offset(req.mmap_offset)
        .protection(Protection::READ_WRITE)
        .sharing(Sharing::Shared)
        // The device route: sysfs `resourceN` of a sub-page BAR reports the BAR's size, not
        // the whole page the kernel maps; the region's own bounds are the device's size.
        .map_device(&fd)
        .map_err(|e| {
            let base = match e.errno() {
                Some(n) => Error::os("mmap", rustix::io::Errno::from_raw_os_error(n)),
                None => err(ErrorKind::OutOfBounds).with_detail(e.detail().unwrap_or("refused by mmkit").to_owned()),
            };
            base.with_path(req.path)
                .with_range(req.mmap_offset, req.map_len as u64)
                .with_source_name(None, req.target.as_deref())
        })?;
    // After mmkit's own checks (a range past the end of the file is refused there first).
    check_backing(fd).map_err(|detail| err(ErrorKind::InvalidArgument).with_detail(detail))?;
    // SAFETY: `start < map_len` (checked above) and the offset is page-aligned, so mmkit mapped
    // exactly `map_len` bytes from `as_mut_ptr()`; the pointer stays inside the mapping.
    let ptr = unsafe { NonNull::new_unchecked(map.as_mut_ptr().add(req.start)) };
    Ok(MmioRegion {
        ptr,
        len: req.len,
        _map: map,
        rules: req.rules,
        path: req.path.to_owned(),
        target: req.target,
        phys: req.phys,
    })
}

impl MmioRegion {
    /// Usable bytes of device memory.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never true for a mapped region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device file this region was mapped from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A description of the source, e.g. `/dev/uio0 map0` or
    /// `/sys/bus/pci/devices/0000:00:04.0/resource0`.
    pub fn source(&self) -> String {
        match &self.target {
            Some(t) => format!("{} {t}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// The physical address of offset 0, when the source knows it.
    pub fn physical_address(&self) -> Option<u64> {
        self.phys
    }

    /// The width rules applied to every access.
    pub fn rules(&self) -> &AccessRules {
        &self.rules
    }

    /// Replaces the width rules (e.g. to describe a device this crate does not know).
    pub fn set_rules(&mut self, rules: AccessRules) {
        self.rules = rules;
    }

    /// The start of the device memory, for code that must do its own raw accesses.
    ///
    /// Getting the pointer is safe; using it is not: access it only with
    /// `read_volatile`/`write_volatile`, inside `len()` bytes, while the region is alive.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Checks an access of `width` at `offset` without performing it.
    ///
    /// On a target without 64-bit loads and stores (`target_pointer_width = "32"`: i686,
    /// armv7), a [`Width::W64`] access is an [`ErrorKind::Unsupported`] error: the compiler
    /// would split it into two 32-bit bus accesses, in an order of its choosing, so it would not
    /// be the one 64-bit access the register needs (Linux has no `readq`/`writeq` there either).
    /// Access such a register as two 32-bit halves, in the order the device asks for.
    pub fn check(&self, op: &'static str, offset: usize, width: Width) -> Result<()> {
        let named = |e: Error| e.with_source_name(Some(&self.path), self.target.as_deref());
        // Alignment is the address's: the region start may itself be unaligned (a UIO map
        // with an odd `offset`), and a misaligned volatile access through a typed pointer
        // would be undefined behaviour.
        check_access_at(op, self.len, &self.rules, offset, width, self.ptr.as_ptr() as usize).map_err(named)?;
        if width == Width::W64 && !SINGLE_64_BIT_ACCESS {
            return Err(named(Error::new(op, ErrorKind::Unsupported).with_range(offset as u64, 8).with_detail(
                "a 64-bit access is two 32-bit bus accesses on this 32-bit target (in an order the compiler \
                 chooses): access the register as two 32-bit halves, in the order the device needs",
            )));
        }
        Ok(())
    }

    /// Whether an access of `width` at `offset` is inside the region and aligned: the part of
    /// [`MmioRegion::check`] that memory safety rests on, in a few instructions.
    #[inline(always)]
    fn in_bounds_and_aligned(&self, offset: usize, width: Width) -> bool {
        let size = width.bytes();
        offset <= self.len.wrapping_sub(size)
            && size <= self.len
            && (self.ptr.as_ptr() as usize).wrapping_add(offset) & (size - 1) == 0
    }

    /// Reads `width` bits at `offset` (volatile), zero-extended to `u64`.
    pub fn read(&self, offset: usize, width: Width) -> Result<u64> {
        self.check("read", offset, width)?;
        // SAFETY: `check` passed: in bounds and aligned.
        Ok(unsafe { self.read_volatile(offset, width) })
    }

    /// The volatile read itself.
    ///
    /// # Safety
    /// `offset..offset + width.bytes()` must lie inside the region and the address must be
    /// aligned to the width ([`MmioRegion::in_bounds_and_aligned`]).
    #[inline(always)]
    unsafe fn read_volatile(&self, offset: usize, width: Width) -> u64 {
        debug_assert!(self.in_bounds_and_aligned(offset, width));
        // SAFETY: the caller guarantees the access lies inside the live mapping (owned by
        // `self`) and is aligned for the access type; it is volatile and via raw pointer (the
        // region's contract, see the module docs).
        unsafe {
            let p = self.ptr.as_ptr().add(offset);
            match width {
                Width::W8 => u64::from(p.read_volatile()),
                Width::W16 => u64::from(p.cast::<u16>().read_volatile()),
                Width::W32 => u64::from(p.cast::<u32>().read_volatile()),
                Width::W64 => p.cast::<u64>().read_volatile(),
            }
        }
    }

    /// Writes `value` as a `width`-bit access at `offset` (volatile).
    ///
    /// A `value` wider than `width` is an [`ErrorKind::InvalidArgument`] error, not a
    /// truncation to its low bits.
    pub fn write(&self, offset: usize, width: Width, value: u64) -> Result<()> {
        self.check("write", offset, width)?;
        if value > width.max_value() {
            return Err(Error::new("write", ErrorKind::InvalidArgument)
                .with_source_name(Some(&self.path), self.target.as_deref())
                .with_range(offset as u64, width.bytes() as u64)
                .with_detail(format!("value {value:#x} does not fit in a {width} access")));
        }
        // SAFETY: `check` passed: in bounds and aligned.
        unsafe { self.write_volatile(offset, width, value) };
        Ok(())
    }

    /// The volatile write itself.
    ///
    /// # Safety
    /// As for [`MmioRegion::read_volatile`]: in bounds and aligned.
    #[inline(always)]
    unsafe fn write_volatile(&self, offset: usize, width: Width, value: u64) {
        debug_assert!(self.in_bounds_and_aligned(offset, width));
        // SAFETY: as in `read_volatile`: the caller guarantees bounds and alignment; volatile,
        // raw pointer only.
        unsafe {
            let p = self.ptr.as_ptr().add(offset);
            match width {
                Width::W8 => p.write_volatile(value as u8),
                Width::W16 => p.cast::<u16>().write_volatile(value as u16),
                Width::W32 => p.cast::<u32>().write_volatile(value as u32),
                Width::W64 => p.cast::<u64>().write_volatile(value),
            }
        }
    }

    /// Reads the byte at `offset`.
    pub fn read_u8(&self, offset: usize) -> Result<u8> {
        self.read(offset, Width::W8).map(|v| v as u8)
    }

    /// Reads the 16-bit register at `offset`.
    pub fn read_u16(&self, offset: usize) -> Result<u16> {
        self.read(offset, Width::W16).map(|v| v as u16)
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read_u32(&self, offset: usize) -> Result<u32> {
        self.read(offset, Width::W32).map(|v| v as u32)
    }

    /// Reads the 64-bit register at `offset`. On a 32-bit target: an [`ErrorKind::Unsupported`]
    /// error, never two 32-bit accesses (see [`MmioRegion::check`]).
    pub fn read_u64(&self, offset: usize) -> Result<u64> {
        self.read(offset, Width::W64)
    }

    /// Writes the byte at `offset`.
    pub fn write_u8(&self, offset: usize, value: u8) -> Result<()> {
        self.write(offset, Width::W8, value.into())
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write_u16(&self, offset: usize, value: u16) -> Result<()> {
        self.write(offset, Width::W16, value.into())
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<()> {
        self.write(offset, Width::W32, value.into())
    }

    /// Writes the 64-bit register at `offset`. On a 32-bit target: an [`ErrorKind::Unsupported`]
    /// error, never two 32-bit accesses (see [`MmioRegion::check`]).
    pub fn write_u64(&self, offset: usize, value: u64) -> Result<()> {
        self.write(offset, Width::W64, value)
    }
}

impl Registers for MmioRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn check(&self, op: &'static str, offset: usize, width: Width) -> Result<()> {
        MmioRegion::check(self, op, offset, width)
    }

    fn read(&self, offset: usize, width: Width) -> Result<u64> {
        MmioRegion::read(self, offset, width)
    }

    fn write(&self, offset: usize, width: Width, value: u64) -> Result<()> {
        MmioRegion::write(self, offset, width, value)
    }

    #[inline]
    unsafe fn read_unchecked(&self, offset: usize, width: Width) -> Result<u64> {
        // SAFETY: the caller guarantees `check` of this access succeeded on this region, whose
        // pointer and length never change: in bounds and aligned.
        Ok(unsafe { self.read_volatile(offset, width) })
    }

    #[inline]
    unsafe fn write_unchecked(&self, offset: usize, width: Width, value: u64) -> Result<()> {
        // SAFETY: as in `read_unchecked`.
        unsafe { self.write_volatile(offset, width, value) };
        Ok(())
    }
}

// Typed register accesses: a `Reg` exists only for a register of a `Checked` layout, i.e. one
// whose offset and width `check` accepted on this very register space.
impl<R: Registers + ?Sized, S: RegisterSpec> Reg<'_, R, S> {
    #[inline]
    pub(crate) fn read_raw(&self) -> Result<<S::Value as RegisterValue>::Raw> {
        // SAFETY: `Checked::reg` hands out `Reg`s only for registers of its layout, all of which
        // passed `check` on `self.regs` in `Checked::new` (and the width is `S`'s, checked at
        // compile time there).
        let v = unsafe { self.regs.read_unchecked(self.offset, Self::width()) }?;
        Ok(Primitive::from_u64(v))
    }

    #[inline]
    pub(crate) fn write_raw(&self, raw: <S::Value as RegisterValue>::Raw) -> Result<()> {
        // SAFETY: as in `read_raw`; the value is a primitive of exactly the register's width.
        unsafe { self.regs.write_unchecked(self.offset, Self::width(), raw.to_u64()) }
    }
}

impl fmt::Debug for MmioRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MmioRegion")
            .field("source", &self.source())
            .field("ptr", &self.ptr)
            .field("len", &format_args!("{:#x}", self.len))
            .field("phys", &self.phys.map(|p| format!("{p:#x}")))
            .field("rules", &self.rules)
            .finish()
    }
}

/// Ordering helpers for handing buffers to and from a device doing DMA.
///
/// Volatile accesses are not reordered against each other by the compiler, but ordinary
/// memory accesses (the DMA buffer) may be reordered around them, by the compiler and by the
/// CPU. These are the user-space counterparts of Linux's `wmb()`, `rmb()` and `mb()`.
pub mod fence {
    use std::sync::atomic::{fence, Ordering};

    /// Call after filling a buffer the device will read, before the register write that
    /// tells the device to start (the doorbell). Linux: `wmb()`.
    pub fn to_device() {
        fence(Ordering::SeqCst);
    }

    /// Call after a register read that says the device finished writing a buffer, before
    /// reading the buffer. Linux: `rmb()`.
    pub fn from_device() {
        fence(Ordering::SeqCst);
    }

    /// A full barrier: no memory access moves across it in either direction. Linux: `mb()`.
    pub fn full() {
        fence(Ordering::SeqCst);
    }
}
