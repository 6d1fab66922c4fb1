//! The only module that calls the kernel.
//!
//! Thin wrappers over the system calls mmkit uses, through `rustix` where it has them and
//! `libc` where it does not (`mincore`, `prctl(PR_SET_VMA_ANON_NAME)`, `process_vm_readv`,
//! raw `madvise` values). Each wrapper returns the raw errno; callers add the context (path,
//! range) to build an [`Error`](crate::Error). Submodules hold the calls of one theme.

// One of the modules with `unsafe`: the system calls (DESIGN.md: `sys/`).
#![allow(unsafe_code)]

pub(crate) mod anon;
pub(crate) mod inspect;
pub(crate) mod kconst;
pub(crate) mod probe;
pub(crate) mod shm;

use std::ffi::{c_void, CStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

use rustix::io::Errno;
use rustix::mm::{MapFlags, MprotectFlags, MsyncFlags, ProtFlags};

/// Result of a raw kernel call.
pub(crate) type SysResult<T> = Result<T, Errno>;

fn last_errno() -> Errno {
    Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// `mremap(2)` as a raw `syscall(SYS_mremap, ...)`: neither rustix (whose Android build uses its
/// libc backend) nor the `libc` crate bind `mremap` for Android, though bionic and the kernel
/// have it. `new_addr` is used only with `MREMAP_FIXED`.
///
/// # Safety
/// As [`mremap`]; with `MREMAP_FIXED`, as [`anon::mremap_fixed`].
#[cfg(target_os = "android")]
#[doc(alias = "mremap")]
pub(crate) unsafe fn android_mremap(
    addr: *mut u8,
    old_len: usize,
    new_len: usize,
    flags: libc::c_int,
    new_addr: *mut u8,
) -> SysResult<*mut u8> {
    // SAFETY: forwarded contract; the kernel validates the arguments and returns an address or
    // an error (the libc wrapper turns the latter into -1 and errno).
    let rc = unsafe { libc::syscall(libc::SYS_mremap, addr, old_len, new_len, flags, new_addr) };
    if rc == -1 {
        Err(last_errno())
    } else {
        Ok(rc as usize as *mut u8)
    }
}

/// The soft limits on a process's mappings: `RLIMIT_AS` (all address space) and `RLIMIT_DATA`
/// (private writable memory), `None` where unlimited.
/// See [getrlimit(2)](https://man7.org/linux/man-pages/man2/getrlimit.2.html).
#[doc(alias = "getrlimit")]
pub(crate) fn memory_limits() -> (Option<u64>, Option<u64>) {
    use rustix::process::{getrlimit, Resource};
    (getrlimit(Resource::As).current, getrlimit(Resource::Data).current)
}

/// `sysconf(_SC_PAGESIZE)` (the C library's copy of the auxiliary vector's `AT_PAGESZ`), read
/// once. Not rustix's `param::page_size`: on its raw-Linux backend its first call asks the
/// kernel (`prctl(PR_GET_AUXV)`), a system call in a process's first library load.
#[doc(alias = "getpagesize")]
pub(crate) fn page_size() -> usize {
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cached = PAGE.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf takes no pointer; _SC_PAGESIZE is always answered.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page).ok().filter(|p| p.is_power_of_two()).unwrap_or_else(rustix::param::page_size);
    PAGE.store(page, std::sync::atomic::Ordering::Relaxed);
    page
}

/// The transparent huge page (PMD) size, from
/// `/sys/kernel/mm/transparent_hugepage/hpage_pmd_size`, read once (it is fixed for the life of
/// the kernel); where the file is missing, what one page-table page of 8-byte entries maps.
/// Never allocates: the allocator asks it from inside `GlobalAlloc::alloc`.
pub(crate) fn thp_size() -> usize {
    static SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let cached = SIZE.load(std::sync::atomic::Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let page = page_size();
    let size = read_number(c"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .filter(|s| s.is_power_of_two() && *s >= page)
        .unwrap_or(page * (page / 8));
    SIZE.store(size, std::sync::atomic::Ordering::Relaxed);
    size
}

/// The lines of `/proc/self/maps` (about the areas this process maps: one line per area, and
/// `[vsyscall]` where there is one) and `vm.max_map_count`, when both can be read. Read through
/// a stack buffer, no allocation: asked on an `ENOMEM` path, where the allocator itself may be
/// unable to map more.
#[doc(alias = "max_map_count")]
pub(crate) fn map_count_and_limit() -> Option<(usize, usize)> {
    use rustix::fs::{Mode, OFlags};
    let max = read_number(c"/proc/sys/vm/max_map_count")?;
    let fd = rustix::fs::open(c"/proc/self/maps", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    /// Bytes per `read` of `/proc/self/maps` (any size works: lines are only counted).
    const CHUNK: usize = 4 << 10;
    let mut buf = [0u8; CHUNK];
    let mut lines = 0;
    loop {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => return Some((lines, max)),
            Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            Err(Errno::INTR) => {}
            Err(_) => return None,
        }
    }
}

/// A decimal number from a small sysfs file, read into a stack buffer (no allocation).
fn read_number(path: &CStr) -> Option<usize> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// `mmap(2)`: maps `len` bytes of `fd` at `offset` (or anonymous memory when `fd` is `None`).
///
/// # Safety
/// With `MAP_FIXED` in `flags`, `addr..addr+len` must be address space the caller owns
/// (a reservation); it is replaced.
pub(crate) unsafe fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: ProtFlags,
    flags: MapFlags,
    fd: Option<BorrowedFd<'_>>,
    offset: u64,
) -> SysResult<*mut u8> {
    // The kernel answers EINVAL for an offset that is not a page multiple, except through
    // 32-bit `mmap2`, which takes the offset in 4 KiB units: rustix divides it, so an
    // unaligned offset would silently map from the page below.
    if fd.is_some() && !crate::page::is_aligned(offset, page_size() as u64) {
        return Err(Errno::INVAL);
    }
    // SAFETY: forwarded contract: the caller owns `addr..addr+len` when MAP_FIXED is set;
    // otherwise the kernel picks fresh address space and nothing existing is touched.
    let ptr = unsafe {
        match fd {
            Some(fd) => rustix::mm::mmap(addr, len, prot, flags, fd, offset)?,
            None => rustix::mm::mmap_anonymous(addr, len, prot, flags)?,
        }
    };
    Ok(ptr.cast())
}

/// A fresh anonymous mapping of `len` bytes whose start is a multiple of `align` (a power of
/// two; at most the page size means no extra alignment): `mmap(2)` of `len + align - page`
/// bytes, then `munmap(2)` of the unaligned head and tail. The kernel has no flag for it.
/// `MAP_FIXED` in `flags` is ignored: the kernel picks the place.
///
/// The one over-map-and-trim in mmkit (THP regions, aligned reservations, the allocator's
/// huge blocks). Other crates get it through `ReserveOptions::align`, which owns the result;
/// mmkit-elf's executor still has its own copy, to be replaced by that route.
#[doc(alias = "mmap")]
pub(crate) fn mmap_anon_aligned(len: usize, align: usize, prot: ProtFlags, flags: MapFlags) -> SysResult<*mut u8> {
    let page = page_size();
    let extra = align.max(page) - page;
    let want = len.checked_add(extra).filter(|&w| w <= isize::MAX as usize).ok_or(Errno::NOMEM)?;
    // SAFETY: no MAP_FIXED (removed above): fresh address space the kernel picks.
    let raw =
        unsafe { rustix::mm::mmap_anonymous(std::ptr::null_mut(), want, prot, flags - MapFlags::FIXED) }?.cast::<u8>();
    let start = raw as usize;
    let aligned = start.next_multiple_of(align.max(page));
    let head = aligned - start;
    let tail = want - head - len;
    // SAFETY: both pieces lie inside the range just mapped, which nothing refers to yet.
    unsafe {
        if head > 0 {
            let _ = munmap(raw, head);
        }
        if tail > 0 {
            let _ = munmap((aligned + len) as *mut u8, tail);
        }
    }
    Ok(aligned as *mut u8)
}

/// `munmap(2)`.
///
/// # Safety
/// `addr..addr+len` must be a mapping the caller owns, with no live references into it.
pub(crate) unsafe fn munmap(addr: *mut u8, len: usize) -> SysResult<()> {
    // SAFETY: forwarded contract.
    unsafe { rustix::mm::munmap(addr.cast(), len) }
}

/// After a `munmap` of `[addr, addr + len)` failed (at `vm.max_map_count` the kernel cannot cut
/// the middle out of an area), frees its memory with `MADV_DONTNEED`, which splits nothing:
/// the address space leaks, the memory does not. Not when a page of the range is sealed
/// (`mseal`): the kernel lets `MADV_DONTNEED` zero sealed writable anonymous pages and (seen on
/// 6.18) drop the private copies of sealed file pages (a relocated RELRO reverts to the file's
/// bytes), and (seen on 6.18) a `munmap` inside a sealed area at the limit fails with `ENOMEM`,
/// the map count being checked before the seal. A same-size `mremap` without `MREMAP_MAYMOVE` moves and splits
/// nothing and answers `EPERM` on a sealed page (Linux 6.10+): only when it succeeds are the
/// pages dropped (with `MADV_DONTNEED_LOCKED` where the area is locked). The probe looks at
/// the area at `addr` only (a same-size `mremap` over an unsealed area then a sealed one
/// succeeds): call this only after the `ENOMEM` of the map-count limit, which `munmap` raises
/// for a range inside one area. Error path only.
///
/// # Safety
/// `addr..addr+len` is whole pages the caller owns, all still mapped (the failed `munmap`
/// changed nothing), and nothing reads them again; the `munmap` failed with `ENOMEM`.
pub(crate) unsafe fn discard_after_failed_unmap(addr: *mut u8, len: usize) {
    // SAFETY: forwarded contract; a same-size mremap in place changes nothing.
    if unsafe { mremap(addr, len, len, false) }.is_ok() {
        // SAFETY: forwarded contract: the caller's pages, read by no one again.
        if unsafe { madvise(addr, len, libc::MADV_DONTNEED) } == Err(Errno::INVAL) {
            // A locked area refuses MADV_DONTNEED (a locked map, or every area of a process
            // under mlockall(MCL_FUTURE), where they all merge): MADV_DONTNEED_LOCKED (Linux
            // 5.18+) drops those pages too.
            // SAFETY: as above.
            let _ = unsafe { madvise(addr, len, libc::MADV_DONTNEED_LOCKED) };
        }
    }
}

/// `mprotect(2)`.
///
/// # Safety
/// The range must be owned by the caller, and no reference into it may rely on a permission
/// that is removed.
pub(crate) unsafe fn mprotect(addr: *mut u8, len: usize, prot: ProtFlags) -> SysResult<()> {
    // SAFETY: forwarded contract (PROT_* bits are the same for mmap and mprotect).
    unsafe { rustix::mm::mprotect(addr.cast(), len, MprotectFlags::from_bits_retain(prot.bits())) }
}

/// `mseal(2)` (Linux 6.10+; `ENOSYS` before): the range can no longer be unmapped, remapped,
/// mapped over or have its protection changed, until the process exits.
///
/// # Safety
/// The range must be owned by the caller, who must never need to unmap it.
pub(crate) unsafe fn mseal(addr: *mut u8, len: usize) -> SysResult<()> {
    /// `__NR_mseal`: the same number on every architecture (the unified 4xx range).
    const SYS_MSEAL: libc::c_long = 462;
    // SAFETY: forwarded contract; mseal reads no memory through the pointer.
    let rc = unsafe { libc::syscall(SYS_MSEAL, addr, len, 0usize) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// `madvise(2)` with a raw `MADV_*` value (rustix lacks some, e.g. `MADV_COLLAPSE`).
///
/// # Safety
/// The range must be owned by the caller; advice that changes contents (`DONTNEED`, `FREE`,
/// `REMOVE`, `WIPEONFORK`) must not invalidate data a live reference relies on.
pub(crate) unsafe fn madvise(addr: *mut u8, len: usize, advice: i32) -> SysResult<()> {
    // SAFETY: forwarded contract; madvise reads no memory through the pointer.
    let rc = unsafe { libc::madvise(addr.cast(), len, advice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Faults in `[addr, addr + len)` for reading or writing: `madvise(MADV_POPULATE_READ)` or
/// `madvise(MADV_POPULATE_WRITE)` (Linux 5.14+), and on kernels that do not know the advice
/// `MADV_WILLNEED` (which reads ahead but does not break copy-on-write). The error names the
/// call that failed.
///
/// # Safety
/// The range must be owned by the caller (populating does not change contents).
pub(crate) unsafe fn populate(addr: *mut u8, len: usize, write: bool) -> Result<(), (&'static str, Errno)> {
    let (advice, name) = if write {
        (libc::MADV_POPULATE_WRITE, "madvise(MADV_POPULATE_WRITE)")
    } else {
        (libc::MADV_POPULATE_READ, "madvise(MADV_POPULATE_READ)")
    };
    // SAFETY: forwarded contract; populating does not change contents.
    match unsafe { madvise(addr, len, advice) } {
        Ok(()) => Ok(()),
        // An empty range tells a kernel that knows the advice (0) from one that does not.
        // SAFETY: a zero-length madvise touches nothing.
        Err(Errno::INVAL) if unsafe { madvise(addr, 0, advice) }.is_err() => {
            // SAFETY: forwarded contract; WILLNEED does not change contents.
            unsafe { madvise(addr, len, libc::MADV_WILLNEED) }.map_err(|e| ("madvise(MADV_WILLNEED)", e))
        }
        Err(e) => Err((name, e)),
    }
}

/// `msync(2)`: `MS_SYNC` (waits for the write-back) or `MS_ASYNC`.
///
/// # Safety
/// The range must be a mapping the caller owns.
pub(crate) unsafe fn msync(addr: *mut u8, len: usize, sync: bool) -> SysResult<()> {
    let flags = if sync { MsyncFlags::SYNC } else { MsyncFlags::ASYNC };
    // SAFETY: forwarded contract; msync does not change contents.
    unsafe { rustix::mm::msync(addr.cast(), len, flags) }
}

/// `mlock2(2)` (`MLOCK_ONFAULT` when `on_fault`) or `mlock(2)`.
///
/// # Safety
/// The range must be a mapping the caller owns.
#[doc(alias = "mlock2")]
pub(crate) unsafe fn mlock(addr: *mut u8, len: usize, on_fault: bool) -> SysResult<()> {
    // SAFETY: forwarded contract; locking does not change contents.
    unsafe {
        if on_fault {
            rustix::mm::mlock_with(addr.cast(), len, rustix::mm::MlockFlags::ONFAULT)
        } else {
            rustix::mm::mlock(addr.cast(), len)
        }
    }
}

/// `munlock(2)`.
///
/// # Safety
/// The range must be a mapping the caller owns.
pub(crate) unsafe fn munlock(addr: *mut u8, len: usize) -> SysResult<()> {
    // SAFETY: forwarded contract.
    unsafe { rustix::mm::munlock(addr.cast(), len) }
}

/// `mincore(addr, len, vec)`: page-cache residency of `[addr, addr + len)` of this process's
/// address space, one byte per page into `out`.
///
/// Safe: `mincore` reads no user memory, the kernel validates the range (`ENOMEM` when any of it
/// is unmapped), and `out` is checked to hold one byte per page.
/// See [mincore(2)](https://man7.org/linux/man-pages/man2/mincore.2.html).
pub(crate) fn mincore(addr: usize, len: usize, out: &mut [u8]) -> Result<(), Errno> {
    let page = super::page_size();
    if addr % page != 0 {
        return Err(Errno::INVAL);
    }
    let pages = len.div_ceil(page);
    if out.len() < pages {
        return Err(Errno::INVAL);
    }
    if len == 0 {
        return Ok(());
    }
    // SAFETY: `out` has room for one byte per page of the range (checked above); mincore does
    // not access the range's memory, only its page tables and page cache.
    let rc = unsafe { libc::mincore(addr as *mut c_void, len, out.as_mut_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// The one `mincore` loop: asks about `addr..addr+len` (page-aligned `addr`) a window of at most
/// `vec.len()` pages at a time, and hands each window's bytes to `each(first_page, bytes)`
/// (bit 0 of a byte set when its page is resident). `vec` is the caller's scratch, so this
/// never allocates (the allocator counts residency with it). On failure returns the errno and
/// the failing window as `(offset from addr, len)`; windows before it were handed out.
pub(crate) fn mincore_windows(
    addr: usize,
    len: usize,
    vec: &mut [u8],
    mut each: impl FnMut(usize, &[u8]),
) -> Result<(), (Errno, usize, usize)> {
    let page = page_size();
    let pages = len.div_ceil(page);
    if pages > 0 && vec.is_empty() {
        return Err((Errno::INVAL, 0, len));
    }
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(vec.len());
        let (at, chunk) = (done * page, (len - done * page).min(n * page));
        mincore(addr + at, chunk, &mut vec[..n]).map_err(|e| (e, at, chunk))?;
        each(done, &vec[..n]);
        done += n;
    }
    Ok(())
}

/// `mremap(2)` without `MREMAP_FIXED`; may move the mapping when `may_move`.
///
/// # Safety
/// The old range must be a mapping the caller owns; when it moves, every pointer into it dangles.
pub(crate) unsafe fn mremap(addr: *mut u8, old_len: usize, new_len: usize, may_move: bool) -> SysResult<*mut u8> {
    #[cfg(target_os = "android")]
    {
        let flags = if may_move { kconst::MREMAP_MAYMOVE } else { 0 };
        // SAFETY: forwarded contract.
        unsafe { android_mremap(addr, old_len, new_len, flags, std::ptr::null_mut()) }
    }
    #[cfg(not(target_os = "android"))]
    {
        let flags = if may_move { rustix::mm::MremapFlags::MAYMOVE } else { rustix::mm::MremapFlags::empty() };
        // SAFETY: forwarded contract.
        unsafe { rustix::mm::mremap(addr.cast(), old_len, new_len, flags).map(|p| p.cast()) }
    }
}

/// `prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, name)` (Linux 5.17+ with
/// `CONFIG_ANON_VMA_NAME`). `None` clears the name.
///
/// # Safety
/// The range must be an anonymous mapping the caller owns.
#[doc(alias = "prctl")]
pub(crate) unsafe fn set_anon_name(addr: *mut u8, len: usize, name: Option<&CStr>) -> SysResult<()> {
    use kconst::{PR_SET_VMA, PR_SET_VMA_ANON_NAME};
    let name_ptr = name.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: the name is a valid NUL-terminated string (or null) that outlives the call; the
    // kernel copies it. The range only gets a label.
    let rc = unsafe { libc::prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr as libc::c_ulong, len, name_ptr) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Copies `dst.len()` bytes from `src` in this process with `process_vm_readv(2)`, which reports
/// an unreadable page (a file truncated under its mapping, `PROT_NONE`) as a short count or
/// `EFAULT` instead of raising `SIGBUS`/`SIGSEGV`. Returns the bytes copied.
///
/// # Safety
/// `src..src+dst.len()` must be address space the caller owns (it may be unreadable).
#[doc(alias = "process_vm_readv")]
pub(crate) unsafe fn read_self(src: *const u8, dst: &mut [u8]) -> SysResult<usize> {
    let local = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
    let remote = libc::iovec { iov_base: src as *mut c_void, iov_len: dst.len() };
    // SAFETY: `local` describes `dst`, which we borrow mutably; `remote` is read by the kernel
    // with fault handling, so an unreadable page yields an error, never a signal.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(last_errno())
    } else {
        Ok(n as usize)
    }
}

/// Whether the area of `/proc/self/maps` holding `addr` is readable: `Some(true/false)`, or
/// `None` when no area holds it; an error when the file cannot be read. For error paths only
/// (it reads the whole file).
pub(crate) fn area_readable(addr: usize) -> std::io::Result<Option<bool>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    Ok(maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let (start, end) = (usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?);
        (start <= addr && addr < end).then(|| rest.starts_with('r'))
    }))
}

/// Page faults of this process so far, from `getrusage(RUSAGE_SELF)`: `(minor, major)`.
/// See [getrusage(2)](https://man7.org/linux/man-pages/man2/getrusage.2.html).
pub(crate) fn page_faults() -> (u64, u64) {
    // SAFETY: an all-zero rusage is a valid value (plain integers).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (usage.ru_minflt as u64, usage.ru_majflt as u64)
}

/// The length of the file behind `fd` (`fstat`).
#[doc(alias = "fstat")]
pub(crate) fn file_len(fd: BorrowedFd<'_>) -> SysResult<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// The size of a regular file behind `fd`, or `None` for devices and other special files,
/// whose `st_size` means nothing, and the file's preferred I/O block size (`st_blksize`: the
/// huge page size on hugetlbfs), from one `fstat`.
#[doc(alias = "fstat")]
pub(crate) fn regular_file_len_and_block(fd: BorrowedFd<'_>) -> SysResult<(Option<u64>, u64)> {
    let st = rustix::fs::fstat(fd)?;
    let regular = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile;
    Ok((regular.then_some(st.st_size as u64), st.st_blksize as u64))
}

/// Whether `fd` is a directory (`fstat`; false when that fails). For error messages.
pub(crate) fn is_directory(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstat(fd)
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

/// The huge page size of a file on hugetlbfs, from its block size `block` (`st_blksize`, which
/// hugetlbfs sets to the huge page size), `None` for any other file. Only a block size above the
/// base page costs the `fstatfs` that tells. The kernel maps and unmaps such a file in whole
/// huge pages, whatever length is asked for.
pub(crate) fn hugetlbfs_page_size(fd: BorrowedFd<'_>, block: u64) -> Option<usize> {
    const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;
    let size = usize::try_from(block).ok().filter(|s| s.is_power_of_two() && *s > page_size())?;
    let fs = rustix::fs::fstatfs(fd).ok()?;
    // The magic numbers are 32-bit; `f_type` is a signed 32-bit field on 32-bit targets, where
    // this one is negative (widening it sign-extends: no match, and on i686 a hugetlbfs file
    // was taken for an ordinary one).
    (fs.f_type as u32 == HUGETLBFS_MAGIC).then_some(size)
}

/// Whether a file mapping placed at `addr` could be of a file on hugetlbfs. The kernel places
/// such a mapping only at a multiple of its huge page size, and refuses `MAP_FIXED` elsewhere
/// (`EINVAL`, before it unmaps anything). No huge page size is below 16 base pages on the
/// architectures listed (the smallest is arm64's contiguous-PTE size: 16 pages of 4 KiB), so an
/// address off that alignment is certainly not one, and the probe (`fstat`, perhaps `fstatfs`)
/// is skipped: the ELF loader maps four segments per library, almost never at such an address.
/// Elsewhere every address may be one.
fn may_be_hugetlbfs_address(addr: usize) -> bool {
    const MIN_HUGE_PAGES: usize = if cfg!(any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "arm",
        target_arch = "aarch64",
        target_arch = "riscv64"
    )) {
        16
    } else {
        1
    };
    addr % (MIN_HUGE_PAGES * page_size()) == 0
}

/// [`hugetlbfs_page_size_of`] for a mapping of `fd` placed at `addr`, skipping the probe where
/// [`may_be_hugetlbfs_address`] says no huge page can start.
pub(crate) fn hugetlbfs_page_size_at(fd: BorrowedFd<'_>, addr: usize) -> Option<usize> {
    if may_be_hugetlbfs_address(addr) {
        hugetlbfs_page_size_of(fd)
    } else {
        None
    }
}

/// [`hugetlbfs_page_size`] of the file behind `fd`, asking `fstat` for its block size.
pub(crate) fn hugetlbfs_page_size_of(fd: BorrowedFd<'_>) -> Option<usize> {
    let (_, block) = regular_file_len_and_block(fd).ok()?;
    hugetlbfs_page_size(fd, block)
}

/// Sets the length of the file behind `fd` (`ftruncate`).
#[doc(alias = "ftruncate")]
pub(crate) fn set_file_len(fd: BorrowedFd<'_>, len: u64) -> SysResult<()> {
    rustix::fs::ftruncate(fd, len)
}

/// Grows the file behind `fd` to `len` bytes with storage allocated for `[from, len)`
/// (`fallocate(2)`, mode 0), so that a shared map's first write to those pages cannot meet a
/// full file system, which the kernel reports as `SIGBUS` (`ftruncate` alone leaves a hole).
/// Where the file system has no `fallocate` (`EOPNOTSUPP`) it writes zeros there instead, as
/// glibc's `posix_fallocate` does. `[from, len)` must lie at or past the file's end: the
/// fallback overwrites it.
#[doc(alias = "fallocate")]
pub(crate) fn allocate_file_range(fd: BorrowedFd<'_>, from: u64, len: u64) -> SysResult<()> {
    let Some(count) = len.checked_sub(from).filter(|&n| n > 0) else { return Ok(()) };
    match fallocate_retrying(fd, from, count) {
        Err(Errno::OPNOTSUPP) => {}
        other => return other,
    }
    let zeros = [0u8; 64 << 10];
    let mut at = from;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        match rustix::io::pwrite(fd, &zeros[..n], at) {
            Ok(0) => return Err(Errno::NOSPC),
            Ok(w) => at += w as u64,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `fallocate(2)` mode 0 of `[offset, offset + len)`, again when a signal interrupted it
/// (`EINTR`: allocating a large range takes long enough to meet one, and `grow` should not fail
/// for a signal the caller handles).
fn fallocate_retrying(fd: BorrowedFd<'_>, offset: u64, len: u64) -> SysResult<()> {
    loop {
        match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), offset, len) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Gives the holes of the first `len` bytes of the file behind `fd` storage (`fallocate(2)`,
/// mode 0: data already there is kept), so that a shared map's first write into a hole cannot
/// meet a full file system (`SIGBUS`). `Ok(false)` where the file system has no `fallocate`
/// (nothing is written then: zeros would overwrite the data).
pub(crate) fn allocate_holes(fd: BorrowedFd<'_>, len: u64) -> SysResult<bool> {
    if len == 0 {
        return Ok(true);
    }
    match fallocate_retrying(fd, 0, len) {
        Ok(()) => Ok(true),
        Err(Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The path of an open descriptor, as `/proc/self/fd` shows it (used for error messages).
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
}

/// Number of threads in this process, from `/proc/self/status` (`None` if unreadable).
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// How a child made by [`fork_with`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// It returned this value.
    Value(u64),
    /// A signal killed it.
    Signal(i32),
    /// `f` panicked; the child caught the panic and `_exit`ed.
    Panicked,
    /// It exited with this status without sending a value.
    Exited(i32),
}

/// The exit status of a child whose `f` panicked (Rust's own panic status).
const CHILD_PANICKED: i32 = 101;

/// Runs `f` in a child made by `fork(2)` and returns how it ended: the `u64` it produced (sent
/// back over a pipe), the signal that killed it, or a panic. The child never returns into the
/// caller's code: a panic in `f` is caught there and the child `_exit`s, so no second copy of
/// the program runs on; the parent always reaps it.
///
/// # Safety
/// In a multi-threaded process the child may only do async-signal-safe work: `f` must not
/// allocate, lock, panic (a panic message allocates), or touch state another thread may hold
/// a lock on.
#[doc(alias = "fork")]
pub(crate) unsafe fn fork_with<F: FnOnce() -> u64>(f: F) -> SysResult<ChildEnd> {
    // Close-on-exec: a process started meanwhile (by `f` in the child, or by another thread)
    // must not hold the write end, or a child that dies before writing is seen only when that
    // process exits.
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: fork has no memory-safety preconditions of its own; the child's obligations are
    // forwarded to the caller.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_errno());
    }
    if pid == 0 {
        drop(rd);
        // The child must end here whatever `f` does: an unwinding panic would run the caller's
        // code (and destructors of the parent's state) a second time in this process.
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(value) => match rustix::io::write(&wr, &value.to_ne_bytes()) {
                Ok(8) => 0,
                _ => 1,
            },
            Err(payload) => {
                // Dropping the payload could panic again: leak it (the process ends now).
                std::mem::forget(payload);
                CHILD_PANICKED
            }
        };
        // SAFETY: `_exit` ends the child without running atexit handlers or destructors that
        // belong to the parent's state.
        unsafe { libc::_exit(code) };
    }
    drop(wr);
    let mut buf = [0u8; 8];
    let mut got = 0;
    let mut read_err = None;
    while got < 8 {
        match rustix::io::read(&rd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => continue,
            Err(e) => {
                read_err = Some(e);
                break;
            }
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 {
            break;
        }
        let e = last_errno();
        if e != Errno::INTR {
            return Err(e);
        }
    }
    if libc::WIFSIGNALED(status) {
        return Ok(ChildEnd::Signal(libc::WTERMSIG(status)));
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    if let Some(e) = read_err {
        return Err(e);
    }
    Ok(match (code, got) {
        (0, 8) => ChildEnd::Value(u64::from_ne_bytes(buf)),
        (CHILD_PANICKED, _) => ChildEnd::Panicked,
        (code, _) => ChildEnd::Exited(code),
    })
}

/// How `fd` was opened (`fcntl(F_GETFL)`'s access mode, or `O_PATH`), as a phrase for errors:
/// `"read-only"`, `"write-only"`, `"read-write"` or `"path-only (O_PATH)"`.
#[doc(alias = "fcntl")]
pub(crate) fn access_mode(fd: BorrowedFd<'_>) -> SysResult<&'static str> {
    use rustix::fs::OFlags;
    let flags = rustix::fs::fcntl_getfl(fd)?;
    Ok(if flags.contains(OFlags::PATH) {
        "path-only (O_PATH)"
    } else if flags & OFlags::ACCMODE == OFlags::RDWR {
        "read-write"
    } else if flags & OFlags::ACCMODE == OFlags::WRONLY {
        "write-only"
    } else {
        "read-only"
    })
}

/// `fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)`: makes reads through `fd` wait again (used after
/// an `O_NONBLOCK` open that only guarded against FIFOs and devices).
#[doc(alias = "fcntl")]
pub(crate) fn clear_nonblock(fd: BorrowedFd<'_>) -> SysResult<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thp_size_is_the_kernels() {
        let page = page_size();
        let sysfs = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
        let expected = sysfs.map_or(page * (page / 8), |s| s.trim().parse().unwrap());
        assert_eq!(thp_size(), expected);
        assert_eq!(thp_size(), expected, "the cached value");
    }

    #[test]
    fn mincore_windows_walks_every_page_in_windows_and_reports_the_failing_one() {
        let page = page_size();
        let prot = ProtFlags::READ | ProtFlags::WRITE;
        let base = mmap_anon_aligned(5 * page, 0, prot, MapFlags::PRIVATE).unwrap();
        // SAFETY: pages 0 and 3 of the fresh read-write mapping above.
        unsafe {
            base.write(1);
            base.add(3 * page).write(1);
        }
        let (mut firsts, mut resident) = (Vec::new(), Vec::new());
        let mut vec = [0u8; 2];
        // The last page is asked about partly: mincore still answers for it.
        mincore_windows(base as usize, 4 * page + 1, &mut vec, |first, bytes| {
            firsts.push(first);
            resident.extend(bytes.iter().enumerate().filter(|(_, &b)| b & 1 == 1).map(|(i, _)| first + i));
        })
        .unwrap();
        assert_eq!(firsts, [0, 2, 4]);
        assert_eq!(resident, [0, 3]);
        // SAFETY: the last two pages of our own mapping; nothing refers to them.
        unsafe { munmap(base.add(3 * page), 2 * page) }.unwrap();
        let err = mincore_windows(base as usize, 5 * page, &mut vec, |_, _| {}).unwrap_err();
        assert_eq!(err, (Errno::NOMEM, 2 * page, 2 * page));
        // SAFETY: the rest of our mapping.
        unsafe { munmap(base, 3 * page) }.unwrap();
    }
}
