//! The kernel's userfaultfd interface: the raw structures of `<linux/userfaultfd.h>` and thin
//! wrappers around the `userfaultfd(2)` syscall, `/dev/userfaultfd` and the `UFFDIO_*` ioctls.
//!
//! This is the only module of the crate that talks to userfaultfd; it knows kernel constants,
//! never the pager's own types. Every wrapper returns the raw [`Errno`] so that callers can
//! name the operation and range in their error.
//!
//! The structures are the kernel's ABI (stable since Linux 4.3, extended by new feature bits and
//! ioctls only). They are written out here because `libc` lacks them and the `userfaultfd`
//! crate lacks `UFFDIO_POISON`, `UFFD_USER_MODE_ONLY` through `/dev/userfaultfd` and the
//! write-protect features the pager needs; one small ABI module serves them all.

// One of the modules with `unsafe`: fault handling: the userfaultfd system calls (DESIGN.md).
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;
use rustix::ioctl::opcode;

/// `UFFD_API`: the API version asked for in `UFFDIO_API`.
pub const UFFD_API: u64 = 0xAA;
const UFFDIO: u8 = 0xAA;

/// `UFFD_USER_MODE_ONLY`: only faults from user mode reach the handler (Linux ≥ 5.11); allowed
/// to unprivileged users even when `vm.unprivileged_userfaultfd` is 0.
pub const UFFD_USER_MODE_ONLY: i32 = 1;

/// `UFFD_EVENT_PAGEFAULT`.
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

/// `UFFD_PAGEFAULT_FLAG_WP`: a write hit a write-protected page.
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// `UFFDIO_REGISTER_MODE_WP`.
pub const REGISTER_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_REGISTER_MODE_MISSING`.
pub const REGISTER_MODE_MISSING: u64 = 1 << 0;
/// `UFFDIO_REGISTER_MODE_MINOR` (Linux ≥ 5.13): faults on pages present in the page cache but
/// not mapped here.
pub const REGISTER_MODE_MINOR: u64 = 1 << 2;

/// `UFFD_FEATURE_PAGEFAULT_FLAG_WP`.
pub const FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
/// `UFFD_FEATURE_MISSING_HUGETLBFS`: missing faults of hugetlbfs mappings (Linux ≥ 4.11).
pub const FEATURE_MISSING_HUGETLBFS: u64 = 1 << 4;
/// `UFFD_FEATURE_MISSING_SHMEM`: missing faults of shmem mappings (Linux ≥ 4.11).
pub const FEATURE_MISSING_SHMEM: u64 = 1 << 5;
/// `UFFD_FEATURE_MINOR_HUGETLBFS`: minor faults of hugetlbfs mappings (Linux ≥ 5.13).
pub const FEATURE_MINOR_HUGETLBFS: u64 = 1 << 9;
/// `UFFD_FEATURE_MINOR_SHMEM`: minor faults of shmem mappings (Linux ≥ 5.14).
pub const FEATURE_MINOR_SHMEM: u64 = 1 << 10;
/// `UFFD_FEATURE_POISON` (Linux ≥ 6.6): `UFFDIO_POISON` is available.
pub const FEATURE_POISON: u64 = 1 << 14;
/// `UFFD_FEATURE_WP_ASYNC` (Linux ≥ 6.7): write-protect faults resolved by the kernel.
pub const FEATURE_WP_ASYNC: u64 = 1 << 15;

/// `UFFDIO_COPY_MODE_WP`: install the page write-protected.
pub const COPY_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_WRITEPROTECT_MODE_WP`.
const WRITEPROTECT_MODE_WP: u64 = 1 << 0;

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioApi {
    /// API version.
    pub api: u64,
    /// Features asked for, then supported.
    pub features: u64,
    /// Bitmask of the ioctls available on the fd.
    pub ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRange {
    /// Start address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRegister {
    /// The range to register.
    pub range: UffdioRange,
    /// `UFFDIO_REGISTER_MODE_*`.
    pub mode: u64,
    /// Out: the ioctls available on the range.
    pub ioctls: u64,
}

/// `struct uffdio_copy`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// `struct uffdio_zeropage`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct UffdioZeropage {
    range: UffdioRange,
    mode: u64,
    zeropage: i64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `struct uffdio_continue`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct UffdioContinue {
    range: UffdioRange,
    mode: u64,
    mapped: i64,
}

/// `struct uffdio_poison`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct UffdioPoison {
    range: UffdioRange,
    mode: u64,
    updated: i64,
}

/// `struct uffd_msg` (32 bytes), with the `pagefault` member of its union spelled out.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdMsg {
    /// `UFFD_EVENT_*`.
    pub event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    /// `arg.pagefault.flags`.
    pub flags: u64,
    /// `arg.pagefault.address`.
    pub address: u64,
    /// `arg.pagefault.feat.ptid` (and padding).
    pub ptid: u64,
}

const _: () = assert!(std::mem::size_of::<UffdMsg>() == 32);

const UFFDIO_API: u32 = opcode::read_write::<UffdioApi>(UFFDIO, 0x3F) as u32;
const UFFDIO_REGISTER: u32 = opcode::read_write::<UffdioRegister>(UFFDIO, 0x00) as u32;
const UFFDIO_UNREGISTER: u32 = opcode::read::<UffdioRange>(UFFDIO, 0x01) as u32;
const UFFDIO_WAKE: u32 = opcode::read::<UffdioRange>(UFFDIO, 0x02) as u32;
const UFFDIO_COPY: u32 = opcode::read_write::<UffdioCopy>(UFFDIO, 0x03) as u32;
const UFFDIO_ZEROPAGE: u32 = opcode::read_write::<UffdioZeropage>(UFFDIO, 0x04) as u32;
const UFFDIO_WRITEPROTECT: u32 = opcode::read_write::<UffdioWriteprotect>(UFFDIO, 0x06) as u32;
const UFFDIO_CONTINUE: u32 = opcode::read_write::<UffdioContinue>(UFFDIO, 0x07) as u32;
const UFFDIO_POISON: u32 = opcode::read_write::<UffdioPoison>(UFFDIO, 0x08) as u32;
const USERFAULTFD_IOC_NEW: u32 = opcode::none(UFFDIO, 0x00) as u32;

/// Runs `ioctl(fd, request, arg)`.
///
/// # Safety
/// `arg` must be the structure `request` expects, and the request must be one whose effect on
/// memory the caller has checked (the `UFFDIO_*` ioctls only fill or protect pages of ranges
/// registered with this fd, which the caller owns).
unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: u32, arg: *mut T) -> Result<libc::c_int, Errno> {
    // SAFETY: forwarded contract; `fd` is open for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)))
    } else {
        Ok(r)
    }
}

/// `userfaultfd(O_CLOEXEC | O_NONBLOCK | extra)`; see `userfaultfd(2)`.
pub fn userfaultfd(extra: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: the syscall takes one int of flags and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK | extra) };
    if r < 0 {
        return Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Opens `/dev/userfaultfd` and asks it for a userfaultfd with `USERFAULTFD_IOC_NEW`
/// (Linux ≥ 6.1): access to the device replaces the `vm.unprivileged_userfaultfd` check.
pub fn userfaultfd_from_device(extra: i32) -> Result<OwnedFd, Errno> {
    let dev = rustix::fs::open(
        "/dev/userfaultfd",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    // SAFETY: USERFAULTFD_IOC_NEW takes the flags as its argument value (not a pointer) and
    // returns a new fd.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            USERFAULTFD_IOC_NEW as _,
            (libc::O_CLOEXEC | libc::O_NONBLOCK | extra) as libc::c_long,
        )
    };
    if r < 0 {
        return Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `UFFDIO_API`: the handshake, asking for `features`; returns what the kernel supports.
pub fn api(fd: BorrowedFd<'_>, features: u64) -> Result<UffdioApi, Errno> {
    let mut arg = UffdioApi { api: UFFD_API, features, ioctls: 0 };
    // SAFETY: UFFDIO_API reads and writes a `uffdio_api`; it touches no memory of ours besides.
    unsafe { ioctl(fd, UFFDIO_API, &mut arg) }?;
    Ok(arg)
}

/// `UFFDIO_REGISTER` of `[start, start + len)` with `mode`; returns the available ioctls.
///
/// # Safety
/// The range must be memory the caller owns; from now on its missing pages block the faulting
/// thread until this fd supplies them (or is closed).
pub unsafe fn register(fd: BorrowedFd<'_>, start: usize, len: usize, mode: u64) -> Result<u64, Errno> {
    let mut arg = UffdioRegister { range: UffdioRange { start: start as u64, len: len as u64 }, mode, ioctls: 0 };
    // SAFETY: a `uffdio_register`; the range is the caller's (forwarded contract).
    unsafe { ioctl(fd, UFFDIO_REGISTER, &mut arg) }?;
    Ok(arg.ioctls)
}

/// `UFFDIO_UNREGISTER` of `[start, start + len)`; threads waiting on it are woken.
pub fn unregister(fd: BorrowedFd<'_>, start: usize, len: usize) -> Result<(), Errno> {
    let mut arg = UffdioRange { start: start as u64, len: len as u64 };
    // SAFETY: a `uffdio_range`; unregistering changes no page contents.
    unsafe { ioctl(fd, UFFDIO_UNREGISTER, &mut arg) }.map(drop)
}

/// `UFFDIO_WAKE`: wakes the threads waiting on faults in `[start, start + len)`.
pub fn wake(fd: BorrowedFd<'_>, start: usize, len: usize) -> Result<(), Errno> {
    let mut arg = UffdioRange { start: start as u64, len: len as u64 };
    // SAFETY: a `uffdio_range`; waking changes no page contents.
    unsafe { ioctl(fd, UFFDIO_WAKE, &mut arg) }.map(drop)
}

/// `UFFDIO_COPY`: atomically installs a copy of `src` (page-aligned, `len` bytes) as the missing
/// pages at `dst`, and wakes the waiters unless `mode` has `DONTWAKE`. Returns the bytes copied.
///
/// # Safety
/// `src` must be readable for `len` bytes; `dst` must lie in a range registered with this fd.
pub unsafe fn copy(fd: BorrowedFd<'_>, dst: usize, src: *const u8, len: usize, mode: u64) -> Result<usize, Errno> {
    let mut arg = UffdioCopy { dst: dst as u64, src: src as u64, len: len as u64, mode, copy: 0 };
    // SAFETY: a `uffdio_copy`; the kernel only fills pages that are missing (never overwrites).
    unsafe { ioctl(fd, UFFDIO_COPY, &mut arg) }?;
    Ok(arg.copy as usize)
}

/// `UFFDIO_ZEROPAGE`: installs zero pages at the missing pages of `[start, start + len)`.
pub fn zeropage(fd: BorrowedFd<'_>, start: usize, len: usize) -> Result<(), Errno> {
    let mut arg = UffdioZeropage { range: UffdioRange { start: start as u64, len: len as u64 }, mode: 0, zeropage: 0 };
    // SAFETY: a `uffdio_zeropage`; only missing pages of a registered range are filled (zeros).
    unsafe { ioctl(fd, UFFDIO_ZEROPAGE, &mut arg) }.map(drop)
}

/// `UFFDIO_CONTINUE` (Linux ≥ 5.13): maps the pages of `[start, start + len)` that are in the
/// page cache of the registered (shmem or hugetlbfs) mapping's file, and wakes the waiters.
/// `EFAULT` when a page is not in the page cache.
pub fn continue_(fd: BorrowedFd<'_>, start: usize, len: usize) -> Result<(), Errno> {
    let mut arg = UffdioContinue { range: UffdioRange { start: start as u64, len: len as u64 }, mode: 0, mapped: 0 };
    // SAFETY: a `uffdio_continue`; it maps pages that already hold the file's bytes into a
    // registered range, where they were missing (never replaces a mapped page).
    unsafe { ioctl(fd, UFFDIO_CONTINUE, &mut arg) }.map(drop)
}

/// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`: drops `[offset, offset + len)` of a
/// memfd's page cache (a page a failed fill left half written).
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), Errno> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(fd, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
}

/// Opens `/proc/self/fd/<fd>` again with `O_RDONLY | O_CLOEXEC`: a read-only descriptor of
/// the same file (a memfd), whose holder cannot write, resize or seal it.
pub fn reopen_read_only(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

/// `UFFDIO_POISON` (Linux ≥ 6.6): marks the missing pages of the range poisoned; an access
/// raises `SIGBUS`.
pub fn poison(fd: BorrowedFd<'_>, start: usize, len: usize) -> Result<(), Errno> {
    let mut arg = UffdioPoison { range: UffdioRange { start: start as u64, len: len as u64 }, mode: 0, updated: 0 };
    // SAFETY: a `uffdio_poison`; only missing pages of a registered range are marked.
    unsafe { ioctl(fd, UFFDIO_POISON, &mut arg) }.map(drop)
}

/// `UFFDIO_WRITEPROTECT`: sets (`protect`) or clears write protection on the range; clearing
/// wakes the threads waiting on it.
pub fn writeprotect(fd: BorrowedFd<'_>, start: usize, len: usize, protect: bool) -> Result<(), Errno> {
    let mut arg = UffdioWriteprotect {
        range: UffdioRange { start: start as u64, len: len as u64 },
        mode: if protect { WRITEPROTECT_MODE_WP } else { 0 },
    };
    // SAFETY: a `uffdio_writeprotect`; protection changes no page contents.
    unsafe { ioctl(fd, UFFDIO_WRITEPROTECT, &mut arg) }.map(drop)
}

/// `struct pm_scan_arg` of `PAGEMAP_SCAN` (`<linux/fs.h>`, Linux ≥ 6.7).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`: a run of pages with the same categories.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PageRegion {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// `PAGE_IS_*` bits.
    pub categories: u64,
}

const PAGEMAP_SCAN: u32 = opcode::read_write::<PmScanArg>(b'f', 16) as u32;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
/// `PAGE_IS_WRITTEN`: written since write protection was last set.
pub const PAGE_IS_WRITTEN: u64 = 1 << 1;

/// `ioctl(pagemap, PAGEMAP_SCAN)` over `[start, end)` with `PM_SCAN_WP_MATCHING`: returns the
/// written runs (into `out`) and write-protects them again, atomically. Returns the runs found
/// and the address where the walk stopped (before `end` when `out` was full).
pub fn pagemap_scan_written(
    pagemap: BorrowedFd<'_>,
    start: usize,
    end: usize,
    out: &mut [PageRegion],
) -> Result<(usize, u64), Errno> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
        start: start as u64,
        end: end as u64,
        vec: out.as_mut_ptr() as u64,
        vec_len: out.len() as u64,
        category_mask: PAGE_IS_WRITTEN,
        return_mask: PAGE_IS_WRITTEN,
        ..PmScanArg::default()
    };
    // SAFETY: a `pm_scan_arg` whose `vec` points at `out.len()` writable `page_region`s; the
    // scan only write-protects pages of a range registered with async write protection.
    let n = unsafe { ioctl(pagemap, PAGEMAP_SCAN, &mut arg) }?;
    Ok((n as usize, arg.walk_end))
}

/// Reads up to `msgs.len()` fault messages (non-blocking: `EAGAIN` when there are none).
pub fn read_msgs(fd: BorrowedFd<'_>, msgs: &mut [UffdMsg]) -> Result<usize, Errno> {
    // SAFETY: `UffdMsg` is plain old data with no invalid bit patterns; we read into its bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(msgs.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(msgs)) };
    let n = rustix::io::read(fd, bytes)?;
    Ok(n / std::mem::size_of::<UffdMsg>())
}

/// `mprotect(PROT_NONE)` of pages inside a registered range: the fallback fence for a failed
/// page on kernels without `UFFDIO_POISON` (an access then raises `SIGSEGV`).
///
/// # Safety
/// The range must be pages of a mapping the caller owns; no reference into them may be used
/// afterwards without the caller checking the fence.
pub unsafe fn fence(start: usize, len: usize) -> Result<(), Errno> {
    // SAFETY: forwarded contract; PROT_NONE changes no contents.
    unsafe { rustix::mm::mprotect(start as *mut _, len, rustix::mm::MprotectFlags::empty()) }
}

/// Waits until `uffd` has messages or `stop` is readable; returns `true` when asked to stop.
pub fn wait(uffd: BorrowedFd<'_>, stop: BorrowedFd<'_>) -> Result<bool, Errno> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&uffd, PollFlags::IN), PollFd::new(&stop, PollFlags::IN)];
    match poll(&mut fds, None) {
        Ok(_) => Ok(!fds[1].revents().is_empty()),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A pipe whose read end wakes handler threads for shutdown.
pub fn stop_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
}

/// Writes one byte to the stop pipe.
pub fn signal_stop(fd: impl AsFd) -> Result<(), Errno> {
    rustix::io::write(fd, &[1]).map(drop)
}
