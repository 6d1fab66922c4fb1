//! The one home of the kernel constants mmkit uses that the `libc` crate lacks (newer than its
//! release, or defined for Linux but not for Android). Values are the kernel's, the same on
//! every architecture unless noted.

/// `MAP_SHARED_VALIDATE` (Linux 4.15).
#[cfg(target_os = "android")]
pub(crate) const MAP_SHARED_VALIDATE: libc::c_int = 0x03;
/// `MAP_FIXED_NOREPLACE` (Linux 4.17).
#[cfg(target_os = "android")]
pub(crate) const MAP_FIXED_NOREPLACE: libc::c_int = 0x10_0000;
/// `EHWPOISON`: memory page has hardware error.
#[cfg(target_os = "android")]
pub(crate) const EHWPOISON: libc::c_int = 133;
/// `MREMAP_MAYMOVE`.
#[cfg(target_os = "android")]
pub(crate) const MREMAP_MAYMOVE: libc::c_int = 1;
/// `MREMAP_FIXED`.
#[cfg(target_os = "android")]
pub(crate) const MREMAP_FIXED: libc::c_int = 2;
#[cfg(not(target_os = "android"))]
pub(crate) use libc::{EHWPOISON, MAP_FIXED_NOREPLACE, MAP_SHARED_VALIDATE};

/// `MADV_COLLAPSE` (Linux 6.1), not in every libc release.
pub(crate) const MADV_COLLAPSE: i32 = 25;
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

/// `PR_SET_VMA` (Linux 5.17), the `prctl` option that labels anonymous memory.
pub(crate) const PR_SET_VMA: libc::c_int = 0x53564d41;
/// `PR_SET_VMA_ANON_NAME`, its sub-option that sets the name.
pub(crate) const PR_SET_VMA_ANON_NAME: libc::c_ulong = 0;
