//! Kernel calls for anonymous memory: guard regions, `MAP_32BIT` placement.
//!
//! The guard wrappers take the owning [`Mapping`] by `&mut`, which proves that no reference
//! into it is alive, so they can be safe.

use rustix::io::Errno;

use super::SysResult;
use crate::anon::GuardKind;
use crate::mapping::Mapping;

/// `MADV_GUARD_INSTALL` (Linux 6.13): installs guard markers in the page tables; touching them
/// raises `SIGSEGV`, without splitting the VMA the way `mprotect(PROT_NONE)` does.
pub(crate) const MADV_GUARD_INSTALL: i32 = 102;
/// `MADV_GUARD_REMOVE` (Linux 6.13): removes guard markers (the pages read back as zeros).
pub(crate) const MADV_GUARD_REMOVE: i32 = 103;

/// `MAP_32BIT` where the architecture has it (x86_64 only): the kernel places the mapping in
/// the low 2 GiB of the address space.
pub(crate) const MAP_32BIT: Option<i32> = {
    #[cfg(target_arch = "x86_64")]
    {
        Some(libc::MAP_32BIT)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
};

/// Makes `[off, off + len)` of `map`'s kernel region a guard region: `madvise(MADV_GUARD_INSTALL)`
/// where the kernel has it, else `mprotect(PROT_NONE)`. The range must be whole pages inside
/// the kernel region of an anonymous mapping.
#[doc(alias = "madvise")]
#[doc(alias = "MADV_GUARD_INSTALL")]
pub(crate) fn install_guard(map: &mut Mapping, off: usize, len: usize, allow_madvise: bool) -> SysResult<GuardKind> {
    let (base, map_len) = map.kernel_region();
    let page = super::page_size();
    if off % page != 0 || len % page != 0 || !off.checked_add(len).is_some_and(|end| end <= map_len) {
        return Err(Errno::INVAL);
    }
    if len == 0 {
        return Ok(GuardKind::Madvise);
    }
    let ptr = (base + off) as *mut u8;
    if allow_madvise {
        // SAFETY: the range is inside the kernel region `map` owns (checked above), and `&mut`
        // means no reference into it is alive; the guard markers zap the pages (which nobody
        // can observe) and make later touches fault.
        match unsafe { super::madvise(ptr, len, MADV_GUARD_INSTALL) } {
            Ok(()) => return Ok(GuardKind::Madvise),
            // EINVAL: an older kernel that does not know the advice.
            Err(Errno::INVAL) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: as above; removing access breaks no live reference.
    unsafe { super::mprotect(ptr, len, libc::PROT_NONE) }?;
    Ok(GuardKind::ProtNone)
}

/// `mremap(2)` with `MREMAP_MAYMOVE | MREMAP_FIXED`: moves (and resizes) the mapping at
/// `old..old+old_len` to exactly `new_addr..new_addr+new_len`, replacing whatever was there.
///
/// # Safety
/// The old range must be a mapping the caller owns (every pointer into it dangles after), and
/// the new range must be address space the caller owns (a reservation it is giving up).
#[doc(alias = "mremap")]
pub(crate) unsafe fn mremap_fixed(
    old: *mut u8,
    old_len: usize,
    new_len: usize,
    new_addr: *mut u8,
) -> SysResult<*mut u8> {
    #[cfg(target_os = "android")]
    {
        use super::kconst::{MREMAP_FIXED, MREMAP_MAYMOVE};
        // SAFETY: forwarded contract.
        unsafe { super::android_mremap(old, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, new_addr) }
    }
    #[cfg(not(target_os = "android"))]
    {
        // SAFETY: forwarded contract.
        unsafe {
            rustix::mm::mremap_fixed(old.cast(), old_len, new_len, rustix::mm::MremapFlags::MAYMOVE, new_addr.cast())
                .map(|p| p.cast())
        }
    }
}

/// `clock_gettime(CLOCK_MONOTONIC_COARSE)` in nanoseconds: cheap (vDSO), never allocates.
#[doc(alias = "clock_gettime")]
pub(crate) fn coarse_now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
