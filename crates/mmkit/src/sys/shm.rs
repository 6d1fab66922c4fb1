//! Kernel calls for shared memory: `memfd_create`, seals, and descriptor passing over Unix
//! sockets (`SCM_RIGHTS`).

use std::ffi::CStr;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use super::SysResult;

/// `memfd_create(2)` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`: an anonymous file in RAM, named
/// `name` (shown as `/memfd:NAME` in `/proc/<pid>/maps`).
pub(crate) fn memfd_create(name: &CStr) -> SysResult<OwnedFd> {
    rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
}

/// `fcntl(F_ADD_SEALS)`: adds `F_SEAL_*` bits (`EPERM` once `F_SEAL_SEAL` is set, `EBUSY` for
/// `F_SEAL_WRITE` while writable shared mappings exist).
#[doc(alias = "fcntl")]
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: u32) -> SysResult<()> {
    rustix::fs::fcntl_add_seals(fd, SealFlags::from_bits_retain(seals))
}

/// `fcntl(F_GET_SEALS)`: the `F_SEAL_*` bits set on `fd` (`EINVAL` for a file that is not a
/// memfd or shmem file).
#[doc(alias = "fcntl")]
pub(crate) fn get_seals(fd: BorrowedFd<'_>) -> SysResult<u32> {
    Ok(rustix::fs::fcntl_get_seals(fd)?.bits())
}

/// `sendmsg(2)` of `payload` with `fds` attached as `SCM_RIGHTS`. Returns the bytes sent.
#[doc(alias = "sendmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub(crate) fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], payload: &[u8]) -> SysResult<usize> {
    // Room for up to 8 descriptors; the kernel also needs at least one byte of payload.
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > 8 || !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(rustix::io::Errno::INVAL);
    }
    let iov = [IoSlice::new(payload)];
    loop {
        match rustix::net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// `recvmsg(2)` into `buf`, taking descriptors from `SCM_RIGHTS` (marked close-on-exec).
/// Returns the payload length and the received descriptors (at most 8).
#[doc(alias = "recvmsg")]
pub(crate) fn recv_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    Ok((msg.bytes, fds))
}

/// Duplicates `fd` (`fcntl(F_DUPFD_CLOEXEC)`).
pub(crate) fn dup(fd: impl AsFd) -> SysResult<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0)
}
