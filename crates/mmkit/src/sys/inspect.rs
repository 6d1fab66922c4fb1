//! Kernel calls behind [`crate::inspect`]: `mincore`, `cachestat`, `posix_fadvise`, `madvise`,
//! `mlock` over read-only window maps of files, and waiting for a termination signal.
//!
//! Everything here returns the raw [`Errno`]; the callers in `inspect/` turn it into an
//! [`Error`](crate::Error) with the path and range.
//!
//! # Safety contract of [`Window`]
//! A `Window` is a `PROT_READ`, `MAP_SHARED` map of a byte range of a file, owned by the value
//! and unmapped on drop. Its memory is never turned into a Rust reference: it is only handed to
//! the kernel (`mincore`, `madvise`, `mlock`), which validates addresses itself and never raises
//! `SIGBUS` for pages past the end of a truncated file (it returns an error instead). So no
//! function here can fault on the window's memory, whatever other processes do to the file.

use std::ffi::c_void;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;

use rustix::io::Errno;
use rustix::mm::{MapFlags, ProtFlags};

use super::mincore;

/// A read-only shared map of `[offset, offset + len)` of a file. See the
/// [module docs](self#safety-contract-of-window).
#[derive(Debug)]
pub(crate) struct Window {
    ptr: NonNull<c_void>,
    len: usize,
    /// The length the kernel mapped: `len`, or for a file on hugetlbfs `len` rounded up to its
    /// huge page size (the kernel maps whole huge pages and refuses to unmap part of one).
    map_len: usize,
}

impl Window {
    /// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, offset)`: maps a range of a file read-only.
    ///
    /// `len` must be non-zero and `offset` a multiple of the page size.
    /// See [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html).
    #[doc(alias = "mmap")]
    pub(crate) fn map(fd: impl AsFd, offset: u64, len: usize) -> Result<Window, Errno> {
        if len == 0 {
            return Err(Errno::INVAL);
        }
        let anywhere = std::ptr::null_mut();
        // A file on hugetlbfs is mapped in whole huge pages: the unmap on drop must cover them
        // all, or it fails (EINVAL) and the mapping leaks.
        let map_len = match super::hugetlbfs_page_size_of(fd.as_fd()) {
            Some(huge) => len.checked_next_multiple_of(huge).ok_or(Errno::NOMEM)?,
            None => len,
        };
        // SAFETY: a new read-only mapping at an address the kernel chooses cannot alias any
        // Rust object; the window owns it and unmaps it on drop, and its memory is only ever
        // passed to the kernel (module contract).
        let ptr = unsafe { rustix::mm::mmap(anywhere, len, ProtFlags::READ, MapFlags::SHARED, &fd, offset)? };
        let ptr = NonNull::new(ptr).ok_or(Errno::NOMEM)?;
        Ok(Window { ptr, len, map_len })
    }

    /// Length of the window in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `mincore(addr, len, vec)` over the whole window: one byte per page into `out`, whose low
    /// bit is set when the page is in the page cache.
    pub(crate) fn mincore(&self, out: &mut [u8]) -> Result<(), Errno> {
        mincore(self.ptr.as_ptr() as usize, self.len, out)
    }

    /// `madvise(addr + offset, len, advice)` on a sub-range of the window (bounds-checked).
    /// Only non-destructive advice is accepted ([`ReadAdvice`]);
    /// see [madvise(2)](https://man7.org/linux/man-pages/man2/madvise.2.html).
    #[doc(alias = "madvise")]
    pub(crate) fn advise(&self, offset: usize, len: usize, advice: ReadAdvice) -> Result<(), Errno> {
        let end = offset.checked_add(len).ok_or(Errno::INVAL)?;
        if end > self.len {
            return Err(Errno::INVAL);
        }
        let advice = match advice {
            ReadAdvice::PopulateRead => rustix::mm::Advice::LinuxPopulateRead,
        };
        // SAFETY: the range lies inside this window (checked above); the advice kinds allowed
        // by `ReadAdvice` only read the file into the page cache and page tables, they never
        // change what the memory holds.
        unsafe { rustix::mm::madvise(self.ptr.as_ptr().cast::<u8>().add(offset).cast(), len, advice) }
    }

    /// `mlock(addr, len)` over the whole window: faults every page in and keeps it resident
    /// until the window is dropped (`munmap` unlocks).
    /// See [mlock(2)](https://man7.org/linux/man-pages/man2/mlock.2.html).
    #[doc(alias = "mlock")]
    pub(crate) fn lock(&self) -> Result<(), Errno> {
        // SAFETY: locking pages of a mapping this window owns does not change their contents;
        // the kernel reports truncated ranges as errors (module contract).
        unsafe { rustix::mm::mlock(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Window {
    #[doc(alias = "munmap")]
    fn drop(&mut self) {
        // SAFETY: the window owns exactly this mapping (`map_len` bytes, as the kernel mapped
        // them) and nothing borrows its memory.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr(), self.map_len) };
    }
}

/// Read-side advice accepted by [`Window::advise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAdvice {
    /// `MADV_POPULATE_READ` (Linux 5.14+): read the range in and map it, waiting for the I/O.
    PopulateRead,
}

/// `struct cachestat` of `<linux/mman.h>`: page counts of a file range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct CacheStatRaw {
    /// Pages in the page cache.
    pub nr_cache: u64,
    /// Dirty pages.
    pub nr_dirty: u64,
    /// Pages under writeback.
    pub nr_writeback: u64,
    /// Pages evicted from the cache (shadow entries).
    pub nr_evicted: u64,
    /// Evicted pages that would still be resident with a slightly larger cache.
    pub nr_recently_evicted: u64,
}

/// `struct cachestat_range` of `<linux/mman.h>`.
#[repr(C)]
struct CacheStatRange {
    off: u64,
    len: u64,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64", target_arch = "loongarch64"))]
const SYS_CACHESTAT: Option<libc::c_long> = Some(451);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "loongarch64"
)))]
const SYS_CACHESTAT: Option<libc::c_long> = None;

/// `cachestat(fd, &{off, len}, &cstat, 0)` (Linux 6.5+): page-cache counts of a file range;
/// `len == 0` means to the end of the file. `ENOSYS` on older kernels (and architectures where
/// mmkit does not know the syscall number).
/// See [cachestat(2)](https://man7.org/linux/man-pages/man2/cachestat.2.html).
pub(crate) fn cachestat(fd: impl AsFd, off: u64, len: u64) -> Result<CacheStatRaw, Errno> {
    let Some(nr) = SYS_CACHESTAT else { return Err(Errno::NOSYS) };
    let range = CacheStatRange { off, len };
    let mut out = CacheStatRaw::default();
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: both pointers are to live, properly laid out `#[repr(C)]` values matching the
    // kernel's structs; the kernel reads `range` and writes `out` only for the call's duration.
    let rc = unsafe {
        libc::syscall(
            nr,
            fd as libc::c_uint,
            &range as *const CacheStatRange,
            &mut out as *mut CacheStatRaw,
            0 as libc::c_uint,
        )
    };
    if rc == 0 {
        Ok(out)
    } else {
        Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)))
    }
}

/// Whole-file advice for [`fadvise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileAdvice {
    /// `POSIX_FADV_DONTNEED`: drop clean cached pages (dirty ones are written back first, not
    /// dropped).
    DontNeed,
    /// `POSIX_FADV_WILLNEED`: start reading into the page cache.
    WillNeed,
}

/// `posix_fadvise(fd, offset, len, advice)`; `len == 0` means to the end of the file.
/// See [posix_fadvise(2)](https://man7.org/linux/man-pages/man2/posix_fadvise.2.html).
#[doc(alias = "posix_fadvise")]
pub(crate) fn fadvise(fd: impl AsFd, offset: u64, len: u64, advice: FileAdvice) -> Result<(), Errno> {
    let advice = match advice {
        FileAdvice::DontNeed => rustix::fs::Advice::DontNeed,
        FileAdvice::WillNeed => rustix::fs::Advice::WillNeed,
    };
    rustix::fs::fadvise(fd, offset, NonZeroU64::new(len), advice)
}

/// `pread(fd, buf, offset)` in a loop until `buf` is full or the file ends; returns the bytes
/// read. See [pread(2)](https://man7.org/linux/man-pages/man2/pread.2.html).
#[doc(alias = "pread")]
pub(crate) fn pread_full(fd: impl AsFd, buf: &mut [u8], mut offset: u64) -> Result<usize, Errno> {
    let fd = fd.as_fd();
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset) {
            Ok(0) => break,
            Ok(n) => {
                done += n;
                offset += n as u64;
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The set `{SIGINT, SIGTERM}`.
fn termination_set() -> libc::sigset_t {
    // SAFETY: `sigset_t` is plain data; an all-zero value is a valid (if unspecified) set that
    // sigemptyset then initialises.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    set
}

/// `pthread_sigmask(SIG_BLOCK, {SIGINT, SIGTERM})`: holds these signals pending for the calling
/// thread (and threads it starts later) instead of letting them terminate the process.
/// See [pthread_sigmask(3)](https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html).
#[doc(alias = "pthread_sigmask")]
pub(crate) fn block_termination_signals() -> Result<(), Errno> {
    let set = termination_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed; changing
    // this thread's signal mask has no effect on memory safety.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(rc))
    }
}

/// Blocks `SIGINT` and `SIGTERM` (see [`block_termination_signals`]) and waits for one of them
/// (`sigwait`); returns the signal number. The signals stay blocked afterwards.
///
/// Every thread of the process should have them blocked (block before starting threads): a
/// thread that does not may be chosen to take the default action, termination.
/// See [sigwait(3)](https://man7.org/linux/man-pages/man3/sigwait.3.html).
#[doc(alias = "sigwait")]
pub(crate) fn wait_for_termination_signal() -> Result<i32, Errno> {
    block_termination_signals()?;
    let set = termination_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialised sigset_t and `sig` a valid out-pointer for the call.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc == 0 {
        Ok(sig)
    } else {
        Err(Errno::from_raw_os_error(rc))
    }
}

/// Address space this process may still map under its `RLIMIT_AS` soft limit (the limit minus
/// `VmSize` from `/proc/self/statm`), or `None` when there is no limit (or it cannot be read).
/// See [getrlimit(2)](https://man7.org/linux/man-pages/man2/getrlimit.2.html).
#[doc(alias = "getrlimit")]
pub(crate) fn address_space_left() -> Option<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::As).current?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    Some(limit.saturating_sub(pages.saturating_mul(rustix::param::page_size() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn window_mincore_and_cachestat_agree_on_a_written_file() {
        let page = crate::sys::page_size();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; page * 3]).unwrap();
        let w = Window::map(&f, 0, page * 3).unwrap();
        let mut v = vec![0u8; 3];
        w.mincore(&mut v).unwrap();
        let resident = v.iter().filter(|b| *b & 1 == 1).count() as u64;
        assert_eq!(resident, 3, "just-written pages are in the page cache");
        match cachestat(&f, 0, 0) {
            Ok(cs) => assert_eq!(cs.nr_cache, resident),
            Err(e) => assert_eq!(e, Errno::NOSYS),
        }
        assert_eq!(mincore(page + 1, page, &mut v), Err(Errno::INVAL));
        assert_eq!(w.mincore(&mut [0u8; 2]), Err(Errno::INVAL));
        assert_eq!(w.advise(page, page * 3, ReadAdvice::PopulateRead), Err(Errno::INVAL));
        w.advise(0, page * 3, ReadAdvice::PopulateRead).unwrap();
    }

    #[test]
    fn empty_window_is_rejected() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(Window::map(&f, 0, 0).unwrap_err(), Errno::INVAL);
    }
}
