//! A memfd on hugetlbfs, as a peer may send one, and the huge page size, for the tests that
//! check what mmkit refuses of such files (with or without a pool).
#![allow(dead_code)]

use std::os::fd::{FromRawFd, OwnedFd};

/// The default huge page size in bytes (`Hugepagesize` in `/proc/meminfo`).
pub fn huge_page_size() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
        .expect("Hugepagesize in /proc/meminfo")
        * 1024
}

/// A fresh `MFD_HUGETLB` memfd (sealable) named `name`, `len` bytes long.
pub fn hugetlb_memfd(name: &std::ffi::CStr, len: usize) -> mmkit::SharedMemory {
    let flags = libc::MFD_HUGETLB | libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC;
    // SAFETY: a NUL-terminated name; the descriptor returned is owned by the OwnedFd below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    assert!(fd >= 0, "memfd_create(MFD_HUGETLB): {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let shm = mmkit::SharedMemory::from_fd(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    shm.set_len(len as u64).unwrap();
    shm
}
