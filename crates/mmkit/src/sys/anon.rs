//! Kernel calls for anonymous memory: guard regions, moving remaps, a cheap clock.

use rustix::io::Errno;

use super::kconst::MADV_GUARD_INSTALL;
use super::SysResult;

// Defined here, beside the calls that choose it, because it names a kernel mechanism (sys
// names no type of a higher layer); re-exported as `mmkit::anon::GuardKind`.
/// How guard pages were made inaccessible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardKind {
    /// `madvise(MADV_GUARD_INSTALL)` (Linux 6.13+): page-table markers, no extra VMA.
    Madvise,
    /// `mprotect(PROT_NONE)`: the portable way, at the cost of splitting the VMA.
    ProtNone,
}

/// Makes `ptr..ptr+len` a guard region: `madvise(MADV_GUARD_INSTALL)` where the kernel has it
/// (and `allow_madvise`), else `mprotect(PROT_NONE)`. Returns which one was used.
///
/// # Safety
/// The range must be whole pages of address space the caller owns, with no live reference into
/// it: the guard markers zap the pages and later touches fault.
#[doc(alias = "madvise")]
#[doc(alias = "MADV_GUARD_INSTALL")]
pub(crate) unsafe fn install_guard(ptr: *mut u8, len: usize, allow_madvise: bool) -> SysResult<GuardKind> {
    if len == 0 {
        return Ok(GuardKind::Madvise);
    }
    if allow_madvise {
        // SAFETY: forwarded contract.
        match unsafe { super::madvise(ptr, len, MADV_GUARD_INSTALL) } {
            Ok(()) => return Ok(GuardKind::Madvise),
            // EINVAL: an older kernel that does not know the advice.
            Err(Errno::INVAL) => {}
            Err(e) => return Err(e),
        }
    }
    // SAFETY: forwarded contract; removing access breaks no live reference.
    unsafe { super::mprotect(ptr, len, rustix::mm::ProtFlags::empty()) }?;
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
