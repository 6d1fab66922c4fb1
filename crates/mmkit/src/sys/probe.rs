//! Kernel feature probes: which `madvise` advice the kernel knows, and whether a file is
//! protected by fs-verity (so its contents can never change).

use std::os::fd::{AsRawFd, BorrowedFd};

use super::SysResult;

/// Whether the kernel accepts `madvise` advice `advice`: `madvise(NULL, 0, advice)` checks the
/// advice value before the (empty) range, so it fails with `EINVAL` only for unknown advice.
#[doc(alias = "madvise")]
pub(crate) fn madvise_supported(advice: i32) -> bool {
    // SAFETY: an empty range at address 0 touches no memory; the kernel only validates `advice`.
    unsafe { libc::madvise(std::ptr::null_mut(), 0, advice) == 0 }
}

/// The file systems whose fs-verity the kernel itself enforces (`fstatfs` magic numbers: ext4,
/// f2fs, btrfs): on them a verity file's data and size can no longer change. Any other file
/// system may answer `FS_IOC_MEASURE_VERITY` as it likes: FUSE forwards it to its daemon, which
/// can say "verity" and then change or shrink the file.
const KERNEL_VERITY_FS_MAGIC: [u32; 3] = [0xEF53, 0xF2F5_2010, 0x9123_683E];

/// `ioctl(FS_IOC_MEASURE_VERITY)` with room for no digest: succeeds or fails with `EOVERFLOW`
/// exactly when fs-verity is enabled on the file (`ENODATA` when not, `ENOTTY`/`EOPNOTSUPP`
/// where the file system lacks it). Returns whether verity is enabled, and `false` without
/// asking on a file system that does not enforce verity in the kernel
/// ([`KERNEL_VERITY_FS_MAGIC`]).
#[doc(alias = "FS_IOC_MEASURE_VERITY")]
pub(crate) fn has_fs_verity(fd: BorrowedFd<'_>) -> SysResult<bool> {
    // The magic numbers are 32-bit; `f_type` is signed on some targets (see hugetlbfs_page_size).
    // A file system that cannot say what it is proves nothing either.
    let Ok(fs) = rustix::fs::fstatfs(fd) else { return Ok(false) };
    #[allow(clippy::unnecessary_cast)] // already `u32` on some targets (armv7 Android)
    let magic = fs.f_type as u32;
    if !KERNEL_VERITY_FS_MAGIC.contains(&magic) {
        return Ok(false);
    }
    /// `struct fsverity_digest` without its flexible digest array.
    #[repr(C)]
    struct FsVerityDigest {
        digest_algorithm: u16,
        digest_size: u16,
    }
    /// `_IOWR('f', 134, struct fsverity_digest)`.
    const FS_IOC_MEASURE_VERITY: libc::c_ulong = 0xC004_6686;
    let mut digest = FsVerityDigest { digest_algorithm: 0, digest_size: 0 };
    // SAFETY: the kernel writes at most `digest_size` (0) digest bytes after the header, which
    // `digest` holds; the descriptor is borrowed for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_MEASURE_VERITY as _, &mut digest as *mut FsVerityDigest) };
    if rc == 0 {
        return Ok(true);
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    match errno {
        libc::EOVERFLOW => Ok(true),
        libc::ENODATA | libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL => Ok(false),
        e => Err(rustix::io::Errno::from_raw_os_error(e)),
    }
}
