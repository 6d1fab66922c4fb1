//! Opening a userfaultfd: privilege detection and the feature handshake.
//!
//! The kernel hands out a userfaultfd in three ways, tried in this order:
//! 1. `userfaultfd(2)` with full fault handling: allowed to root (`CAP_SYS_PTRACE`) or to
//!    everyone when the sysctl `vm.unprivileged_userfaultfd` is 1;
//! 2. `/dev/userfaultfd` (Linux ≥ 6.1) for a user with read-write access to the device;
//! 3. `userfaultfd(2)` with `UFFD_USER_MODE_ONLY` (Linux ≥ 5.11), allowed to everyone: only
//!    faults from user mode are handled. That suffices for code that touches the region itself;
//!    a system call given a missing page of the region (`write(fd, region, ..)`) then fails with
//!    `EFAULT` instead of waiting for the page, and so does one writing into a supplied page
//!    that [`DirtyMechanism::WriteProtect`](crate::DirtyMechanism::WriteProtect) keeps
//!    protected (see [`dirty`](crate::dirty#system-calls-writing-into-the-region-of-an-unprivileged-user)).
//!
//! When none works the error names the sysctl and the device.

#![deny(unsafe_code)]

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use mmkit::{Error, ErrorKind, Result};
use rustix::io::Errno;

use crate::sys;

/// Which faults a region's userfaultfd handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Faults from user mode and from the kernel (system calls reading the region wait for
    /// the page like a thread does).
    Full,
    /// `UFFD_USER_MODE_ONLY`: faults from user mode only; the kernel touching a missing page
    /// (a system call given the region) gets `EFAULT`, as does a system call writing into a
    /// supplied page under [`DirtyMechanism::WriteProtect`](crate::DirtyMechanism::WriteProtect)
    /// tracking (see [`dirty`](crate::dirty#system-calls-writing-into-the-region-of-an-unprivileged-user)).
    UserModeOnly,
}

/// How the userfaultfd was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedVia {
    /// The `userfaultfd(2)` system call.
    Syscall,
    /// `/dev/userfaultfd` and `USERFAULTFD_IOC_NEW`.
    Device,
}

/// What the kernel offers this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The fault mode a new region gets.
    pub mode: FaultMode,
    /// How the fd is obtained.
    pub via: OpenedVia,
    /// `UFFD_FEATURE_*` bits the kernel supports.
    pub features: u64,
}

impl Capabilities {
    /// `UFFDIO_POISON` is available (Linux ≥ 6.6).
    pub fn poison(&self) -> bool {
        self.features & sys::FEATURE_POISON != 0
    }

    /// Asynchronous write protection (`UFFD_FEATURE_WP_ASYNC`, Linux ≥ 6.7), which
    /// `PAGEMAP_SCAN` needs.
    pub fn wp_async(&self) -> bool {
        self.features & sys::FEATURE_WP_ASYNC != 0
    }

    /// Missing faults of shmem (memfd) mappings, served with `UFFDIO_COPY`
    /// (`UFFD_FEATURE_MISSING_SHMEM`, Linux ≥ 4.11).
    pub fn missing_shmem(&self) -> bool {
        self.features & sys::FEATURE_MISSING_SHMEM != 0
    }

    /// Minor faults of shmem mappings, served with `UFFDIO_CONTINUE`
    /// (`UFFD_FEATURE_MINOR_SHMEM`, Linux ≥ 5.14).
    pub fn minor_shmem(&self) -> bool {
        self.features & sys::FEATURE_MINOR_SHMEM != 0
    }

    /// Missing faults of hugetlbfs mappings (`UFFD_FEATURE_MISSING_HUGETLBFS`, Linux ≥ 4.11).
    pub fn missing_hugetlbfs(&self) -> bool {
        self.features & sys::FEATURE_MISSING_HUGETLBFS != 0
    }

    /// Minor faults of hugetlbfs mappings (`UFFD_FEATURE_MINOR_HUGETLBFS`, Linux ≥ 5.13).
    pub fn minor_hugetlbfs(&self) -> bool {
        self.features & sys::FEATURE_MINOR_HUGETLBFS != 0
    }

    /// Synchronous write protection of anonymous memory (`UFFDIO_WRITEPROTECT`, Linux ≥ 5.7).
    pub fn write_protect(&self) -> bool {
        self.features & sys::FEATURE_PAGEFAULT_FLAG_WP != 0
    }
}

/// Opens a userfaultfd the way this process may (see the [module docs](self)).
pub(crate) fn open() -> Result<(OwnedFd, FaultMode, OpenedVia)> {
    let first = match sys::userfaultfd(0) {
        Ok(fd) => return Ok((fd, FaultMode::Full, OpenedVia::Syscall)),
        Err(e) => e,
    };
    if first == Errno::NOSYS {
        return Err(Error::os("userfaultfd", first)
            .with_kind(ErrorKind::Unsupported)
            .with_detail("the kernel has no userfaultfd (CONFIG_USERFAULTFD), or a seccomp filter blocks it"));
    }
    if matches!(first, Errno::MFILE | Errno::NFILE | Errno::NOMEM) {
        // Not a refusal (EPERM; EACCES from an LSM), which the routes below may get around:
        // out of descriptors or memory, said as it is (and so below).
        return Err(Error::os("userfaultfd", first));
    }
    let device = match sys::userfaultfd_from_device(0) {
        Ok(fd) => return Ok((fd, FaultMode::Full, OpenedVia::Device)),
        Err(e) => e,
    };
    match sys::userfaultfd(sys::UFFD_USER_MODE_ONLY) {
        Ok(fd) => Ok((fd, FaultMode::UserModeOnly, OpenedVia::Syscall)),
        // The route open to everyone failed for want of a resource, not of privilege.
        Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOMEM)) => Err(Error::os("userfaultfd", e)),
        Err(e) => Err(Error::os("userfaultfd", first).with_detail(format!(
            "set the sysctl vm.unprivileged_userfaultfd=1, or give this user read-write access to \
             /dev/userfaultfd (opening it failed with {}), or run with CAP_SYS_PTRACE; \
             UFFD_USER_MODE_ONLY was refused too ({})",
            errno_name(device),
            errno_name(e)
        ))),
    }
}

fn errno_name(e: Errno) -> String {
    std::io::Error::from_raw_os_error(e.raw_os_error()).to_string()
}

/// Opens a userfaultfd and does the `UFFDIO_API` handshake asking for `features` (those the
/// kernel lacks are left out).
pub(crate) fn open_with(features: u64) -> Result<(OwnedFd, FaultMode, u64)> {
    let caps = capabilities()?;
    let (fd, mode, _) = open()?;
    let want = features & caps.features;
    sys::api(fd.as_fd(), want)
        .map_err(|e| Error::os("ioctl(UFFDIO_API)", e).with_detail(format!("features {want:#x}")))?;
    Ok((fd, mode, want))
}

/// What the kernel offers this process: the fault mode and the supported features (asked once
/// with a probe fd, then cached).
pub fn capabilities() -> Result<Capabilities> {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    if let Some(c) = CAPS.get() {
        return Ok(*c);
    }
    let (fd, mode, via) = open()?;
    let api = sys::api(fd.as_fd(), 0).map_err(|e| Error::os("ioctl(UFFDIO_API)", e))?;
    Ok(*CAPS.get_or_init(|| Capabilities { mode, via, features: api.features }))
}
