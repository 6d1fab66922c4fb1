//! Shared memory between processes: [`SharedMemory`] (a memfd), its seals, passing it over a
//! Unix socket, a safe view for cross-process data, and a double-mapped ring buffer.
//!
//! A memfd is an anonymous file in RAM. Any process that holds its descriptor can map it, so
//! two unrelated processes share memory by sending the descriptor over a Unix socket
//! ([`SharedMemory::send`], [`SharedMemory::recv`]: `SCM_RIGHTS`).
//!
//! # Which map is safe
//! Another process may write or shrink a memfd at any time, so a plain `&[u8]` into it is
//! unsound unless the kernel forbids that. mmkit offers:
//! - [`SharedMemory::map_read_only`]: a safe [`Mmap`] once `F_SEAL_WRITE` and
//!   `F_SEAL_SHRINK` are set (nobody can change or shrink the bytes any more); for a part,
//!   [`MapOptions::map_if_safe`] with an offset and a length. `F_SEAL_FUTURE_WRITE` is not
//!   enough: writable maps made before it keep writing;
//! - [`SharedMemory::view`]: a safe [`SharedView`] of atomics and atomic byte copies, which
//!   tolerate concurrent writers (it sets `F_SEAL_SHRINK` so no access can hit `SIGBUS`, and
//!   refuses a memfd on hugetlbfs, whose pages a hole punched by any holder takes away);
//! - [`SharedMemory::map_raw`]: raw pointers; and the `unsafe` [`SharedMemory::map_mut`];
//! - [`RingBuffer`]: a byte queue whose ends copy in and out and treat everything the other
//!   end writes (its index, the bytes) as untrusted input.
//!
//! One limit no seal lifts: a memfd's pages are charged to the commit limit when they are first
//! allocated (`memfd_create` makes it `VM_NORESERVE`), at the page fault. Under strict
//! overcommit (`vm.overcommit_memory=2`) with `Committed_AS` at `CommitLimit`, the first touch of
//! a page never written (or of a hole a holder punched) raises `SIGBUS` through every map above.
//!
//! ```
//! # fn main() -> Result<(), mmkit::Error> {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use mmkit::shm::{Seals, SharedMemory};
//! let shm = SharedMemory::create("counters", 4096)?;
//! let view = shm.view()?;
//! view.atomic::<AtomicU64>(0)?.fetch_add(1, Ordering::SeqCst);
//! // (send `shm` to another process with `shm.send(&socket)`; it maps the same bytes)
//! assert_eq!(shm.set_len(0).unwrap_err().errno(), Some(libc::EPERM)); // the view sealed SHRINK
//! assert!(shm.seals()?.contains(Seals::SHRINK));
//! # Ok(()) }
//! ```

// One of the modules with `unsafe`: owns raw address space (DESIGN.md: the faces and composites).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{self, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{Error, ErrorKind, Result};
use crate::file::{Mmap, MmapMut, MmapRaw};
use crate::options::{MapOptions, Protection, Sharing};
use crate::page::align_up;
use crate::reserve::Reservation;
use crate::sys;

/// File seals (`F_SEAL_*`): restrictions on a memfd that, once added, cannot be removed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seals(u32);

impl Seals {
    /// No seals.
    pub const NONE: Seals = Seals(0);
    /// `F_SEAL_SEAL`: no more seals may be added.
    pub const SEAL: Seals = Seals(libc::F_SEAL_SEAL as u32);
    /// `F_SEAL_SHRINK`: the size may not shrink (so no mapping can hit `SIGBUS`).
    pub const SHRINK: Seals = Seals(libc::F_SEAL_SHRINK as u32);
    /// `F_SEAL_GROW`: the size may not grow.
    pub const GROW: Seals = Seals(libc::F_SEAL_GROW as u32);
    /// `F_SEAL_WRITE`: the contents may not change (fails with `EBUSY` while writable shared
    /// mappings exist).
    pub const WRITE: Seals = Seals(libc::F_SEAL_WRITE as u32);
    /// `F_SEAL_FUTURE_WRITE` (Linux 5.1): no new writes or writable maps; existing writable
    /// maps keep writing.
    pub const FUTURE_WRITE: Seals = Seals(0x0010);

    /// The kernel's bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Seals from the kernel's bits.
    pub const fn from_bits(bits: u32) -> Seals {
        Seals(bits)
    }

    /// Whether every seal of `other` is set.
    pub const fn contains(self, other: Seals) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Seals {
    type Output = Seals;
    fn bitor(self, rhs: Seals) -> Seals {
        Seals(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for Seals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [
            (Seals::SEAL, "SEAL"),
            (Seals::SHRINK, "SHRINK"),
            (Seals::GROW, "GROW"),
            (Seals::WRITE, "WRITE"),
            (Seals::FUTURE_WRITE, "FUTURE_WRITE"),
        ];
        let set: Vec<&str> = names.iter().filter(|(s, _)| self.contains(*s)).map(|(_, n)| *n).collect();
        write!(f, "Seals({})", if set.is_empty() { "NONE".to_owned() } else { set.join(" | ") })
    }
}

/// The longest memfd name the kernel takes: `NAME_MAX` (255) less the `memfd:` prefix.
const MEMFD_NAME_MAX: usize = 249;

/// A memfd: shared memory with a name and a size, sealable, passable to other processes.
/// See the [module docs](self).
#[derive(Debug)]
pub struct SharedMemory {
    fd: OwnedFd,
    name: String,
}

impl SharedMemory {
    /// Creates a memfd named `name` (`/memfd:NAME` in `/proc/<pid>/maps`, at most 249 bytes)
    /// of `len` zero bytes, close-on-exec and sealable (`memfd_create(MFD_CLOEXEC |
    /// MFD_ALLOW_SEALING)` + `ftruncate`).
    #[doc(alias = "memfd_create")]
    pub fn create(name: &str, len: u64) -> Result<SharedMemory> {
        let c = CString::new(name)
            .map_err(|_| Error::new("memfd_create", ErrorKind::InvalidArgument).with_detail("name contains NUL"))?;
        let fd = sys::shm::memfd_create(&c).map_err(|e| {
            let err = Error::os("memfd_create", e);
            // The kernel takes at most 249 bytes (NAME_MAX less the "memfd:" prefix).
            if e == rustix::io::Errno::INVAL && name.len() > MEMFD_NAME_MAX {
                let start: String = name.chars().take(32).collect();
                err.with_detail(format!(
                    "the name is {} bytes, more than the {MEMFD_NAME_MAX} a memfd name may have (it starts {start:?})",
                    name.len()
                ))
            } else {
                err.with_detail(format!("name {name:?}"))
            }
        })?;
        let shm = SharedMemory { fd, name: name.to_owned() };
        shm.set_len(len)?;
        Ok(shm)
    }

    /// Wraps a descriptor received from elsewhere. It must be a memfd (or another shmem file
    /// that supports seals); its name is read from `/proc/self/fd`.
    pub fn from_fd(fd: OwnedFd) -> Result<SharedMemory> {
        sys::shm::get_seals(fd.as_fd())
            .map_err(|e| Error::os("fcntl(F_GET_SEALS)", e).with_detail("the descriptor is not a memfd"))?;
        let link = sys::fd_path(fd.as_fd()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let name =
            link.strip_prefix("/memfd:").map(|n| n.strip_suffix(" (deleted)").unwrap_or(n).to_owned()).unwrap_or(link);
        Ok(SharedMemory { fd, name })
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current size in bytes (`fstat`); another process may change it unless sealed.
    pub fn len(&self) -> Result<u64> {
        sys::file_len(self.fd.as_fd()).map_err(|e| Error::os("fstat", e).with_detail(format!("memfd {:?}", self.name)))
    }

    /// Whether the size is 0.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Grows or shrinks to `len` bytes (`ftruncate`); fails with `EPERM` when a seal forbids it.
    /// Growing past the process's file-size limit (`RLIMIT_FSIZE`, `ulimit -f`) sends `SIGXFSZ`,
    /// which ends the process unless it ignores that signal; ignored, the error is `EFBIG`.
    pub fn set_len(&self, len: u64) -> Result<()> {
        sys::set_file_len(self.fd.as_fd(), len)
            .map_err(|e| Error::os("ftruncate", e).with_range(0, len).with_detail(format!("memfd {:?}", self.name)))
    }

    /// The seals set now.
    pub fn seals(&self) -> Result<Seals> {
        sys::shm::get_seals(self.fd.as_fd()).map(Seals).map_err(|e| Error::os("fcntl(F_GET_SEALS)", e))
    }

    /// Adds `seals` (`fcntl(F_ADD_SEALS)`). `EPERM` once [`Seals::SEAL`] is set; `EBUSY` for
    /// [`Seals::WRITE`] while a writable shared mapping of the memfd exists.
    pub fn add_seals(&self, seals: Seals) -> Result<()> {
        sys::shm::add_seals(self.fd.as_fd(), seals.0)
            .map_err(|e| Error::os("fcntl(F_ADD_SEALS)", e).with_detail(format!("{seals:?} on memfd {:?}", self.name)))
    }

    /// A second handle to the same memory (`dup`).
    pub fn try_clone(&self) -> Result<SharedMemory> {
        let fd = sys::shm::dup(&self.fd).map_err(|e| Error::os("fcntl(F_DUPFD_CLOEXEC)", e))?;
        Ok(SharedMemory { fd, name: self.name.clone() })
    }

    /// Maps the whole memfd read-only as a safe [`Mmap`]. Needs [`Seals::WRITE`] and
    /// [`Seals::SHRINK`] (add them with [`seal_read_only`](Self::seal_read_only)): then no
    /// process can change or shrink the bytes, so a `&[u8]` is sound. Otherwise the error is
    /// [`ErrorKind::NotSafe`]. For a part, use [`MapOptions::map_if_safe`] with an offset and
    /// a length.
    pub fn map_read_only(&self) -> Result<Mmap> {
        MapOptions::new().map_if_safe(&self.fd)
    }

    /// Seals the memfd as immutable (`SHRINK | GROW | WRITE`), for
    /// [`map_read_only`](Self::map_read_only). Fails with `EBUSY` while writable shared mappings
    /// exist.
    pub fn seal_read_only(&self) -> Result<()> {
        self.add_seals(Seals::SHRINK | Seals::GROW | Seals::WRITE)
    }

    /// Maps the whole memfd shared and writable, handing out raw pointers only (safe).
    pub fn map_raw(&self) -> Result<MmapRaw> {
        MapOptions::new().map_raw(&self.fd)
    }

    /// Maps the whole memfd shared and writable as a byte slice.
    ///
    /// # Safety
    /// While the map is alive nobody else (another process, or another map of the memfd) may
    /// write or shrink it; see the [file-mapping contract](crate::file#safety-the-file-mapping-contract).
    pub unsafe fn map_mut(&self) -> Result<MmapMut> {
        // SAFETY: forwarded contract.
        unsafe { MapOptions::new().map_mut(&self.fd) }
    }

    /// A safe view of the memfd for data shared with other processes: atomics and atomic
    /// copies. Adds [`Seals::SHRINK`] first (so no access can raise `SIGBUS` for a page past
    /// the end; strict overcommit is another matter, see the [module docs](self)).
    ///
    /// A memfd on hugetlbfs (`MFD_HUGETLB`, received from another process) is refused with
    /// [`ErrorKind::NotSafe`]: the seal does not make its pages last. Anyone holding it can
    /// punch a hole (`fallocate`), which frees the huge page *and* its reservation in the pool,
    /// so the view's next access to it raises `SIGBUS` when the pool is empty. Map it with
    /// [`map_raw`](Self::map_raw) and read it with
    /// [`copy_from_mapping`](MmapRaw::copy_from_mapping), which reports that as an error.
    pub fn view(&self) -> Result<SharedView> {
        if let Some(huge) = crate::mapping::hugetlbfs_page_size_of(self.fd.as_fd()) {
            return Err(Error::new("SharedMemory::view", ErrorKind::NotSafe).with_detail(format!(
                "memfd {:?} is on hugetlbfs ({} KiB pages): any holder can punch a hole in it, which gives \
                 the huge page's pool reservation back, and touching the page again raises SIGBUS when \
                 the pool is empty; use map_raw and copy_from_mapping",
                self.name,
                huge / 1024
            )));
        }
        if !self.seals()?.contains(Seals::SHRINK) {
            self.add_seals(Seals::SHRINK)?;
        }
        let raw = self.map_raw().map_err(|e| {
            // A shared writable map of a memfd sealed against writes is refused with EPERM.
            match self.seals() {
                Ok(seals)
                    if e.errno() == Some(libc::EPERM) && seals.0 & (Seals::WRITE | Seals::FUTURE_WRITE).0 != 0 =>
                {
                    e.with_detail(format!(
                        "memfd {:?} is sealed against writes ({seals:?}): a view maps it writable; map it \
                         read-only instead (map_read_only)",
                        self.name
                    ))
                }
                _ => e,
            }
        })?;
        Ok(SharedView { raw })
    }

    /// Sends the descriptor over the Unix socket `sock` (`SCM_RIGHTS`), with the name as payload.
    pub fn send(&self, sock: impl AsFd) -> Result<()> {
        send_fd(sock, &self.fd, self.name.as_bytes())
    }

    /// Receives a memfd sent with [`send`](Self::send) from the Unix socket `sock`.
    pub fn recv(sock: impl AsFd) -> Result<SharedMemory> {
        let mut buf = [0u8; 256];
        let (n, fd) = recv_fd(sock, &mut buf)?;
        let mut shm = SharedMemory::from_fd(fd)?;
        if let Ok(name) = std::str::from_utf8(&buf[..n]) {
            shm.name = name.to_owned();
        }
        Ok(shm)
    }
}

impl AsFd for SharedMemory {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<SharedMemory> for OwnedFd {
    fn from(shm: SharedMemory) -> OwnedFd {
        shm.fd
    }
}

/// Sends `fd` over the Unix socket `sock` with `payload` (at least one byte is sent; an empty
/// payload sends one zero byte), as `SCM_RIGHTS` ancillary data.
#[doc(alias = "sendmsg")]
#[doc(alias = "SCM_RIGHTS")]
pub fn send_fd(sock: impl AsFd, fd: impl AsFd, payload: &[u8]) -> Result<()> {
    let payload = if payload.is_empty() { &[0u8][..] } else { payload };
    sys::shm::send_fds(sock.as_fd(), &[fd.as_fd()], payload).map_err(|e| Error::os("sendmsg(SCM_RIGHTS)", e))?;
    Ok(())
}

/// Receives one descriptor sent with [`send_fd`] from `sock`, and the payload into `buf`.
/// Returns the payload length and the descriptor (close-on-exec).
#[doc(alias = "recvmsg")]
pub fn recv_fd(sock: impl AsFd, buf: &mut [u8]) -> Result<(usize, OwnedFd)> {
    let (n, mut fds) = sys::shm::recv_fds(sock.as_fd(), buf).map_err(|e| Error::os("recvmsg(SCM_RIGHTS)", e))?;
    if fds.is_empty() {
        return Err(Error::new("recvmsg(SCM_RIGHTS)", ErrorKind::InvalidArgument).with_detail(if n == 0 {
            "the peer closed the socket without sending a descriptor"
        } else {
            "the message carried no descriptor"
        }));
    }
    Ok((n, fds.swap_remove(0)))
}

mod sealed {
    pub trait Sealed {}
}

/// Atomic types a [`SharedView`] can hand out references to: integers only, valid for every
/// bit pattern another process may write. `AtomicBool` is not one (a peer writing `2` into its
/// byte would make a `bool` that is neither `true` nor `false`):
///
/// ```compile_fail
/// # fn main() -> Result<(), mmkit::Error> {
/// let view = mmkit::shm::SharedMemory::create("flags", 64)?.view()?;
/// let flag = view.atomic::<std::sync::atomic::AtomicBool>(0)?; // not a SharedAtomic
/// # Ok(()) }
/// ```
///
/// The safe [`SharedView::atomic`] hands out the 8-byte ones ([`SharedWord`]); the others
/// come from the `unsafe` [`SharedView::atomic_sized`].
pub trait SharedAtomic: sealed::Sealed + Sync {}

/// The [`SharedAtomic`] types of 8 bytes: the size the view's copies access memory in, so
/// [`SharedView::atomic`] can hand them out safely. A 4-byte one would not be:
///
/// ```compile_fail
/// # fn main() -> Result<(), mmkit::Error> {
/// let view = mmkit::shm::SharedMemory::create("futex", 64)?.view()?;
/// let word = view.atomic::<std::sync::atomic::AtomicU32>(0)?; // use `atomic_sized`
/// # Ok(()) }
/// ```
pub trait SharedWord: SharedAtomic {}

macro_rules! shared_atomics {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl SharedAtomic for $t {}
    )*};
}
shared_atomics!(
    atomic::AtomicU8,
    atomic::AtomicU16,
    atomic::AtomicU32,
    atomic::AtomicU64,
    atomic::AtomicUsize,
    atomic::AtomicI32,
    atomic::AtomicI64
);
impl SharedWord for atomic::AtomicU64 {}
impl SharedWord for atomic::AtomicI64 {}

/// A safe view of shared memory that other processes write concurrently: references to
/// atomics, and atomic byte copies in and out (defined under races, unlike plain or volatile
/// copies). It never hands out `&[u8]`. See
/// [`SharedMemory::view`].
#[derive(Debug)]
pub struct SharedView {
    raw: MmapRaw,
}

impl SharedView {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// First byte, for raw access. While another thread of this process may use the view, access
    /// its bytes only in the view's own way: atomic loads and stores of whole aligned 8-byte
    /// words (the view's copies access the whole aligned word holding any byte they touch),
    /// never volatile or narrower atomic accesses, which would race them in another size
    /// (undefined behaviour in Rust's memory model).
    pub fn as_ptr(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    fn at(&self, op: &'static str, offset: usize, size: usize, align: usize) -> Result<*mut u8> {
        if !offset.checked_add(size).is_some_and(|end| end <= self.len()) {
            return Err(Error::new(op, ErrorKind::OutOfBounds)
                .with_range(offset as u64, size as u64)
                .with_detail(format!("past the end of the view (len {:#x})", self.len())));
        }
        let addr = self.raw.as_mut_ptr() as usize + offset;
        if addr % align != 0 {
            return Err(Error::new(op, ErrorKind::Layout)
                .with_range(offset as u64, size as u64)
                .with_detail(format!("offset is not aligned to {align} bytes")));
        }
        Ok(addr as *mut u8)
    }

    /// A reference to the 8-byte atomic `A` at byte `offset` (bounds and alignment checked).
    /// Every process must access these bytes atomically; in this process every access of the
    /// view is one of 8 bytes (its copies load and store whole aligned words), so none races
    /// with another of a different size, which Rust's memory model forbids.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// let view = mmkit::shm::SharedMemory::create("flag", 64)?.view()?;
    /// view.atomic::<AtomicU64>(8)?.store(1, Ordering::Release);
    /// assert!(view.atomic::<AtomicU64>(4).is_err()); // misaligned
    /// # Ok(()) }
    /// ```
    pub fn atomic<A: SharedWord>(&self, offset: usize) -> Result<&A> {
        // SAFETY: an 8-byte atomic at an aligned offset is a whole word of the grid the view's
        // copies use: no access of this process to its bytes has another size.
        unsafe { self.atomic_sized(offset) }
    }

    /// A reference to the atomic `A` of any size at byte `offset` (bounds and alignment
    /// checked): a 4-byte futex word, a 1-byte flag.
    ///
    /// # Safety
    /// While the reference is used, no other access of this process to any of its bytes that
    /// may race with it writes with another size, nor reads with another size while it writes:
    /// no overlapping [`atomic`](Self::atomic) or `atomic_sized` of another type size, and no
    /// [`read`](Self::read), [`write`](Self::write), [`read_bytes`](Self::read_bytes) or
    /// [`write_bytes`](Self::write_bytes) over its 8-byte word (those access whole aligned
    /// words) from another thread. Rust's memory model makes racing atomic accesses of
    /// different sizes undefined behaviour when one writes. Other processes are outside it:
    /// what they do can tear values, never cause undefined behaviour here.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let view = mmkit::shm::SharedMemory::create("futex", 64)?.view()?;
    /// // SAFETY: bytes 8..12 are accessed as this `AtomicU32` only, in this process.
    /// let word = unsafe { view.atomic_sized::<AtomicU32>(8) }?;
    /// word.store(1, Ordering::Release);
    /// // SAFETY: as above.
    /// assert!(unsafe { view.atomic_sized::<AtomicU32>(2) }.is_err()); // misaligned
    /// # Ok(()) }
    /// ```
    pub unsafe fn atomic_sized<A: SharedAtomic>(&self, offset: usize) -> Result<&A> {
        let p = self.at("atomic", offset, size_of::<A>(), std::mem::align_of::<A>())?.cast::<A>();
        // SAFETY: `p` is in bounds and aligned for `A` (checked) and lives as long as `self`
        // (SHRINK is sealed); any bit pattern is a valid `A`; no racing access of this process
        // has another size (caller); other processes' accesses are outside Rust's model.
        let atomic = unsafe { &*p };
        Ok(atomic)
    }

    /// Reads a `T` at byte `offset` with an atomic copy (no alignment needed: it loads the
    /// aligned 8-byte words holding the bytes). Another process or thread writing at the same
    /// time may leave the value torn, never invalid.
    pub fn read<T: FromBytes>(&self, offset: usize) -> Result<T> {
        let p = self.at("read", offset, size_of::<T>(), 1)?;
        // SAFETY: in bounds (checked); `T: FromBytes` accepts any bytes; unaligned read.
        Ok(unsafe { shared_copy_in::<T>(p) })
    }

    /// Writes `value` at byte `offset` with an atomic copy (whole aligned words: a partial one
    /// by compare-and-swap, keeping its other bytes).
    pub fn write<T: IntoBytes + Immutable>(&self, offset: usize, value: &T) -> Result<()> {
        self.write_bytes(offset, value.as_bytes())
    }

    /// Copies `buf.len()` bytes from `offset` into `buf` (atomic reads).
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let p = self.at("read_bytes", offset, buf.len(), 1)?;
        // SAFETY: `p..p + buf.len()` is in bounds (checked) and mapped readable.
        unsafe { shared_copy_from(p, buf) };
        Ok(())
    }

    /// Copies `data` to `offset` (atomic writes).
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<()> {
        let p = self.at("write_bytes", offset, data.len(), 1)?;
        // SAFETY: `p..p + data.len()` is in bounds (checked) and the map is writable.
        unsafe { shared_copy_to(p, data) };
        Ok(())
    }
}

/// The 8-byte words every shared copy goes through: the aligned word holding each byte.
///
/// Rust's memory model makes racing atomic accesses of different sizes undefined behaviour
/// when one of them writes. Copies that chose their width by their own offset and length (8
/// bytes where aligned, single bytes elsewhere) could race with each other in different sizes
/// over the same bytes (two threads of one process sharing a [`SharedView`]). Every copy
/// accesses whole aligned words instead: a partial word at either end is loaded whole, or
/// written by a compare-and-swap loop that changes only the copy's bytes. An aligned word never
/// crosses a page, so it is mapped when one of its bytes is.
const WORD: usize = size_of::<u64>();

/// `(word address, first byte of the copy in the word, end in the word, position in the copy)`
/// for each aligned word holding `start..start + len`.
fn shared_words(start: usize, len: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let end = start + len;
    let first = start & !(WORD - 1);
    (first..if len == 0 { first } else { end }).step_by(WORD).map(move |word| {
        let lo = start.max(word);
        let hi = end.min(word + WORD);
        (word, lo - word, hi - word, lo - start)
    })
}

/// Copies `len` bytes from `src` to `dst` with relaxed atomic 8-byte loads of the aligned
/// words holding them (see [`WORD`]), then an acquire fence: the way to read memory another
/// process or thread may write at the same time. Atomic accesses are defined under races, so a
/// concurrent writer can tear the copy, never cause undefined behaviour; no reference to the
/// shared bytes is formed.
///
/// # Safety
/// The pages holding `src..src + len` must be mapped readable and live for the call, and
/// `dst..dst + len` writable and disjoint from them.
unsafe fn shared_read(src: *const u8, len: usize, dst: *mut u8) {
    for (word, lo, hi, at) in shared_words(src as usize, len) {
        // SAFETY: `word` is 8-aligned and on a page holding one of the bytes (caller: mapped
        // readable); this process accesses shared bytes only by whole aligned atomic words.
        let bytes = unsafe { atomic::AtomicU64::from_ptr(word as *mut u64) }.load(Ordering::Relaxed).to_ne_bytes();
        // SAFETY: `at + (hi - lo) <= len`: inside `dst` (caller).
        unsafe { std::ptr::copy_nonoverlapping(bytes[lo..hi].as_ptr(), dst.add(at), hi - lo) };
    }
    atomic::fence(Ordering::Acquire);
}

/// [`shared_read`] into a slice.
///
/// # Safety
/// The pages holding `src..src + dst.len()` must be mapped readable and live for the call.
unsafe fn shared_copy_from(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the caller's promise; `dst` is a distinct, writable buffer of its length.
    unsafe { shared_read(src, dst.len(), dst.as_mut_ptr()) }
}

/// Copies `src` to `dst` after a release fence, with relaxed atomic 8-byte stores of the
/// aligned words holding `dst..dst + src.len()`: a word the copy fills whole is stored, a
/// partial one (at either end) changed by a compare-and-swap loop that keeps its other bytes;
/// see [`WORD`] and [`shared_read`].
///
/// # Safety
/// The pages holding `dst..dst + src.len()` must be mapped writable and live for the call.
unsafe fn shared_copy_to(dst: *mut u8, src: &[u8]) {
    atomic::fence(Ordering::Release);
    for (word, lo, hi, at) in shared_words(dst as usize, src.len()) {
        let part = &src[at..at + (hi - lo)];
        // SAFETY: as in `shared_read`, and the page is mapped writable.
        let cell = unsafe { atomic::AtomicU64::from_ptr(word as *mut u64) };
        if hi - lo == WORD {
            cell.store(u64::from_ne_bytes(part.try_into().expect("a whole word")), Ordering::Relaxed);
        } else {
            let merge = |old: u64| {
                let mut bytes = old.to_ne_bytes();
                bytes[lo..hi].copy_from_slice(part);
                Some(u64::from_ne_bytes(bytes))
            };
            // Always `Ok`: the closure never gives up.
            let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, merge);
        }
    }
}

/// A `T` read by [`shared_read`].
///
/// # Safety
/// The pages holding `p..p + size_of::<T>()` must be mapped readable.
unsafe fn shared_copy_in<T: FromBytes>(p: *const u8) -> T {
    let mut out = T::new_zeroed();
    // SAFETY: the caller's promise; `out` is a distinct local of `size_of::<T>()` bytes, and
    // `T: FromBytes` accepts any bytes written into it.
    unsafe { shared_read(p, size_of::<T>(), (&mut out as *mut T).cast::<u8>()) };
    out
}

/// The same memfd mapped twice, back to back, inside one [`Reservation`]: byte `i` and byte
/// `i + capacity` are the same memory, so any `capacity`-byte window starting in the first
/// copy is contiguous. This makes a ring buffer without wrap-around copies.
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// let ring = mmkit::shm::MirroredBuffer::new("ring", 1)?; // one page
/// let cap = ring.capacity();
/// // SAFETY: raw access to bytes this process owns alone.
/// unsafe {
///     ring.as_ptr().add(cap - 1).write(1);
///     ring.as_ptr().add(cap).write(2); // wraps to byte 0
///     assert_eq!(ring.as_ptr().read(), 2);
///     assert_eq!(ring.as_ptr().add(2 * cap - 1).read(), 1);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MirroredBuffer {
    shm: SharedMemory,
    offset: u64,
    cap: usize,
    // Declared last: unmapped after the fields above are dropped (order is irrelevant to
    // soundness, but keeps the memfd open while mapped).
    res: Reservation,
}

impl MirroredBuffer {
    /// A new memfd of `capacity` bytes (rounded up to whole pages), mapped twice.
    pub fn new(name: &str, capacity: usize) -> Result<MirroredBuffer> {
        let page = sys::page_size();
        let cap = align_up(capacity.max(1) as u64, page as u64).ok_or_else(|| {
            Error::new("MirroredBuffer::new", ErrorKind::OutOfBounds).with_detail("capacity overflows")
        })?;
        let shm = SharedMemory::create(name, cap)?;
        shm.add_seals(Seals::SHRINK | Seals::GROW)?;
        MirroredBuffer::from_shared(shm, 0, cap as usize)
    }

    /// Maps `capacity` bytes of `shm` from `offset` (page multiples) twice back to back.
    pub fn from_shared(shm: SharedMemory, offset: u64, capacity: usize) -> Result<MirroredBuffer> {
        let page = sys::page_size();
        if capacity == 0 || capacity % page != 0 || offset % page as u64 != 0 {
            return Err(Error::new("MirroredBuffer", ErrorKind::Unaligned)
                .with_range(offset, capacity as u64)
                .with_detail("offset and capacity must be non-zero page multiples"));
        }
        let total = capacity
            .checked_mul(2)
            .ok_or_else(|| Error::new("MirroredBuffer", ErrorKind::OutOfBounds).with_detail("capacity overflows"))?;
        let len = shm.len()?;
        if !crate::page::range_within(offset, capacity as u64, len) {
            return Err(Error::new("MirroredBuffer", ErrorKind::OutOfBounds)
                .with_range(offset, capacity as u64)
                .with_detail(format!("past the end of memfd {:?} (len {len:#x})", shm.name())));
        }
        let res = Reservation::new(total)?;
        res.map_shared_memory_at(0, capacity, Protection::READ_WRITE, &shm, offset)?;
        res.map_shared_memory_at(capacity, capacity, Protection::READ_WRITE, &shm, offset)?;
        Ok(MirroredBuffer { shm, offset, cap: capacity, res })
    }

    /// Bytes of distinct memory (half of the mapped length).
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// First byte; `2 * capacity` bytes are mapped from here.
    pub fn as_ptr(&self) -> *mut u8 {
        self.res.as_mut_ptr()
    }

    /// The memfd behind the buffer (send it to another process to share the ring).
    pub fn shared_memory(&self) -> &SharedMemory {
        &self.shm
    }

    /// Offset of the ring's bytes inside the memfd.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Header of a [`RingBuffer`] in the first page of its memfd: total bytes written and read.
///
/// The other end (or anyone holding the memfd) can write these fields at any time: each end
/// keeps its own index locally, publishes it here, and treats the other end's index as
/// untrusted input (see [`RingBuffer`]).
#[repr(C)]
struct RingHeader {
    head: atomic::AtomicU64,
    tail: atomic::AtomicU64,
    capacity: atomic::AtomicU64,
}

/// A single-producer single-consumer byte queue in shared memory. The memfd holds a header page
/// and then the data, mapped twice back to back ([`MirroredBuffer`]) so every read and write is
/// one contiguous copy, also across the wrap. Either end can live in another process
/// ([`RingProducer::attach`], [`RingConsumer::attach`]).
///
/// # Safety: the other end is untrusted
/// Another process (or a [`SharedMemory::view`] of the memfd) can write the header and the data
/// at any time, so the ring never hands out a `&[u8]` or `&mut [u8]` over its memory:
/// [`push`](RingProducer::push) and [`pop`](RingConsumer::pop) copy with atomic accesses (defined under races), and
/// the zero-copy windows ([`write_window`](RingProducer::write_window),
/// [`read_window`](RingConsumer::read_window)) are raw pointers. Each end keeps its own index
/// and only reads the other's: an index that is behind its own, or more than the capacity
/// ahead, is nonsense and reads as a full ring (producer) or an empty one (consumer), so a
/// hostile peer can stall the ring or feed it garbage bytes, never move an access out of bounds.
///
/// ```
/// # fn main() -> Result<(), mmkit::Error> {
/// let (mut tx, mut rx) = mmkit::shm::RingBuffer::create("queue", 1)?;
/// let cap = tx.capacity();
/// assert_eq!(tx.push(&vec![1u8; cap - 10]), cap - 10);
/// let mut buf = vec![0u8; cap - 20];
/// assert_eq!(rx.pop(&mut buf), cap - 20);
/// assert_eq!(tx.push(&[2u8; 30]), 30); // wraps around the end, still one contiguous write
/// let mut out = [0u8; 64];
/// assert_eq!(rx.pop(&mut out), 40);
/// assert_eq!(&out[..40], &[&[1u8; 10][..], &[2u8; 30][..]].concat()[..]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RingBuffer;

/// Which header index an end owns.
#[derive(Clone, Copy)]
enum RingField {
    Head,
    Tail,
}

impl RingField {
    /// What the limit on advancing this index counts.
    fn allows(self) -> &'static str {
        match self {
            RingField::Head => "free",
            RingField::Tail => "queued",
        }
    }
}

struct RingEnd {
    header: MmapRaw,
    data: MirroredBuffer,
}

impl std::fmt::Debug for RingEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingEnd").field("capacity", &self.data.capacity()).finish()
    }
}

impl RingEnd {
    /// Attaches one end (`op`: `RingProducer::attach` or `RingConsumer::attach`) to `shm`.
    fn open(op: &'static str, shm: SharedMemory) -> Result<RingEnd> {
        let page = sys::page_size();
        // The kernel's refusals, said as what they mean for a ring.
        let why = |e: Error, what: &str| match e.errno() {
            Some(errno @ (libc::EPERM | libc::EACCES)) => Error::from_raw_errno(op, errno).with_detail(what.to_owned()),
            _ => e,
        };
        // Seal first, then read the size: a peer cannot shrink it between the two.
        if !shm.seals()?.contains(Seals::SHRINK) {
            shm.add_seals(Seals::SHRINK).map_err(|e| {
                why(
                    e,
                    "the memfd cannot be sealed against shrinking (made without MFD_ALLOW_SEALING, or F_SEAL_SEAL set)",
                )
            })?;
        }
        let len = shm.len()?;
        if len < 2 * page as u64 {
            return Err(Error::new(op, ErrorKind::InvalidArgument)
                .with_detail("the memfd is too small for a ring (header page + data)"));
        }
        let header = MapOptions::new().len(page).map_raw(&shm).map_err(|e| {
            why(e, "the memfd cannot be mapped writable (sealed with F_SEAL_WRITE or F_SEAL_FUTURE_WRITE): both ends write")
        })?;
        let cap = usize::try_from((len - page as u64) / page as u64 * page as u64).map_err(|_| {
            Error::new(op, ErrorKind::OutOfBounds).with_detail("the memfd is larger than the address space")
        })?;
        let end = RingEnd { header, data: MirroredBuffer::from_shared(shm, page as u64, cap)? };
        let stored = end.header().capacity.load(Ordering::Acquire);
        if stored != cap as u64 {
            return Err(Error::new(op, ErrorKind::InvalidArgument)
                .with_detail(format!("header says capacity {stored:#x}, the memfd holds {cap:#x}")));
        }
        Ok(end)
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: the header page is mapped read-write for as long as `self`, page-aligned, and
        // holds only atomics (valid for any bytes, shared with the other end atomically).
        unsafe { &*self.header.as_ptr().cast::<RingHeader>() }
    }

    /// Bytes between `behind` and `ahead` (stream positions), or `None` when the distance is
    /// impossible (more than the capacity: `ahead` is behind `behind`, or corrupt).
    fn distance(&self, behind: u64, ahead: u64) -> Option<usize> {
        let d = ahead.wrapping_sub(behind);
        (d <= self.data.capacity() as u64).then_some(d as usize)
    }

    /// Moves this end's own index `pos` on by `n` bytes, at most `limit` (what the other end's
    /// index allows now), and publishes it in the header field `field` (`head` or `tail`).
    fn advance(&self, op: &'static str, pos: &mut u64, field: RingField, n: usize, limit: usize) -> Result<()> {
        if n > limit {
            return Err(Error::new(op, ErrorKind::OutOfBounds)
                .with_range(0, n as u64)
                .with_detail(format!("only {limit} bytes are {}", field.allows())));
        }
        *pos = pos.wrapping_add(n as u64);
        let h = self.header();
        match field {
            RingField::Head => h.head.store(*pos, Ordering::Release),
            RingField::Tail => h.tail.store(*pos, Ordering::Release),
        }
        Ok(())
    }

    /// Address of stream position `pos` in the double mapping: `n <= capacity` bytes from here
    /// are mapped.
    fn at(&self, pos: u64) -> *mut u8 {
        let start = (pos % self.data.capacity() as u64) as usize;
        // SAFETY: `start < capacity`, and `2 * capacity` bytes are mapped from `as_ptr()`.
        unsafe { self.data.as_ptr().add(start) }
    }
}

impl RingBuffer {
    /// Creates a ring of `capacity` bytes (rounded up to pages) and returns both ends.
    pub fn create(name: &str, capacity: usize) -> Result<(RingProducer, RingConsumer)> {
        let page = sys::page_size() as u64;
        let cap = align_up(capacity.max(1) as u64, page).ok_or_else(|| {
            Error::new("RingBuffer::create", ErrorKind::OutOfBounds).with_detail("capacity overflows")
        })?;
        let total = cap.checked_add(page).ok_or_else(|| {
            Error::new("RingBuffer::create", ErrorKind::OutOfBounds).with_detail("capacity overflows")
        })?;
        let shm = SharedMemory::create(name, total)?;
        shm.add_seals(Seals::SHRINK | Seals::GROW)?;
        let view = shm.view()?;
        view.atomic::<atomic::AtomicU64>(16)?.store(cap, Ordering::Release);
        drop(view);
        let other = shm.try_clone()?;
        Ok((RingProducer::attach(shm)?, RingConsumer::attach(other)?))
    }
}

/// The writing end of a [`RingBuffer`].
#[derive(Debug)]
pub struct RingProducer {
    end: RingEnd,
    /// Total bytes written: ours, published to the header, never read back from it.
    head: u64,
}

impl RingProducer {
    /// Attaches to a ring made by [`RingBuffer::create`] in another process (send it
    /// [`shared_memory`](Self::shared_memory)). Safe: the ring trusts nothing the other end
    /// writes (see [`RingBuffer`]); with two producers the stream is garbage, never unsound.
    pub fn attach(shm: SharedMemory) -> Result<RingProducer> {
        let end = RingEnd::open("RingProducer::attach", shm)?;
        let head = end.header().head.load(Ordering::Acquire);
        Ok(RingProducer { end, head })
    }

    /// The memfd behind the ring. Every route to its memory is safe: views and raw maps never
    /// form references, and a safe `&[u8]` map needs the `WRITE` seal, which the kernel refuses
    /// while the ring's writable maps exist.
    pub fn shared_memory(&self) -> &SharedMemory {
        self.end.data.shared_memory()
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.end.data.capacity()
    }

    /// Bytes that can be written now: the capacity minus what the consumer has not released.
    /// A tail the consumer could not have written (ahead of our head, or more than the capacity
    /// behind it) reads as a full ring.
    pub fn free(&self) -> usize {
        let tail = self.end.header().tail.load(Ordering::Acquire);
        self.end.distance(tail, self.head).map_or(0, |used| self.capacity() - used)
    }

    /// The free space as a raw window: `(first byte, length)`, contiguous. Write into it (the
    /// consumer does not read it until [`commit`](Self::commit)), then commit what was written.
    /// It is raw because another process may write the same memory: never through a
    /// `&mut [u8]`. While the consumer may run in another thread of this process, write only
    /// with atomic accesses of whole aligned 8-byte words (a partial word by compare-and-swap,
    /// as [`push`](Self::push) does): its [`pop`](RingConsumer::pop) loads the whole aligned word
    /// holding the last byte it reads, which may hold the window's first bytes, and a volatile or
    /// narrower atomic write racing that load is undefined behaviour in Rust's memory model.
    pub fn write_window(&mut self) -> (*mut u8, usize) {
        (self.end.at(self.head), self.free())
    }

    /// Publishes `n` bytes written into [`write_window`](Self::write_window). Fails with
    /// [`ErrorKind::OutOfBounds`] when `n` exceeds the free space.
    pub fn commit(&mut self, n: usize) -> Result<()> {
        let free = self.free();
        self.end.advance("RingProducer::commit", &mut self.head, RingField::Head, n, free)
    }

    /// Copies as much of `data` as fits and publishes it; returns the bytes queued.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let (dst, free) = self.write_window();
        let n = free.min(data.len());
        // SAFETY: `dst..dst + n` lies in the double mapping (`n <= capacity`), mapped writable.
        unsafe { shared_copy_to(dst, &data[..n]) };
        // Cannot fail: `n <= free`.
        self.end.advance("RingProducer::push", &mut self.head, RingField::Head, n, free).map_or(0, |()| n)
    }
}

/// The reading end of a [`RingBuffer`].
#[derive(Debug)]
pub struct RingConsumer {
    end: RingEnd,
    /// Total bytes read: ours, published to the header, never read back from it.
    tail: u64,
}

impl RingConsumer {
    /// Attaches to a ring made by [`RingBuffer::create`] in another process. Safe: the ring
    /// trusts nothing the other end writes (see [`RingBuffer`]).
    pub fn attach(shm: SharedMemory) -> Result<RingConsumer> {
        let end = RingEnd::open("RingConsumer::attach", shm)?;
        let tail = end.header().tail.load(Ordering::Acquire);
        Ok(RingConsumer { end, tail })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.end.data.capacity()
    }

    /// Bytes queued now. A head the producer could not have written (behind our tail, or more
    /// than the capacity ahead) reads as an empty ring.
    pub fn available(&self) -> usize {
        let head = self.end.header().head.load(Ordering::Acquire);
        self.end.distance(self.tail, head).unwrap_or(0)
    }

    /// The queued bytes as a raw window: `(first byte, length)`, contiguous. Read them (another
    /// process may write the same memory, so never through a `&[u8]`), then
    /// [`consume`](Self::consume). While the producer may run in another thread of this
    /// process, read only with atomic loads of whole aligned 8-byte words: its
    /// [`push`](RingProducer::push) rewrites the whole aligned word holding its first byte (by
    /// compare-and-swap), which may hold the window's last bytes, and a volatile or narrower
    /// read racing that write is undefined behaviour in Rust's memory model.
    pub fn read_window(&mut self) -> (*const u8, usize) {
        (self.end.at(self.tail), self.available())
    }

    /// Releases `n` bytes of [`read_window`](Self::read_window) to the producer. Fails with
    /// [`ErrorKind::OutOfBounds`] when `n` exceeds the queued bytes.
    pub fn consume(&mut self, n: usize) -> Result<()> {
        let queued = self.available();
        self.end.advance("RingConsumer::consume", &mut self.tail, RingField::Tail, n, queued)
    }

    /// Copies up to `buf.len()` queued bytes out and releases them; returns the count.
    pub fn pop(&mut self, buf: &mut [u8]) -> usize {
        let (src, queued) = self.read_window();
        let n = queued.min(buf.len());
        // SAFETY: `src..src + n` lies in the double mapping (`n <= capacity`), mapped readable.
        unsafe { shared_copy_from(src, &mut buf[..n]) };
        // Cannot fail: `n <= queued`.
        self.end.advance("RingConsumer::pop", &mut self.tail, RingField::Tail, n, queued).map_or(0, |()| n)
    }
}

/// Mapping shared memory into a reservation lives here, above both, so that `reserve` never
/// names `shm` (imports flow one way; see the crate root).
impl Reservation {
    /// Maps `len` bytes of `shm` from `shm_offset` at `offset` inside the reservation, shared
    /// (`MAP_SHARED | MAP_FIXED`). Safe: a reservation hands out raw pointers only, and the
    /// range must lie inside the memfd now. Mapping the same memfd twice back to back is how
    /// [`shm::MirroredBuffer`](crate::shm::MirroredBuffer) builds a ring without wrap-around.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// use mmkit::{Protection, Reservation, shm::SharedMemory};
    /// let page = mmkit::page_size();
    /// let shm = SharedMemory::create("twice", page as u64)?;
    /// let r = Reservation::new(2 * page)?;
    /// r.map_shared_memory_at(0, page, Protection::READ_WRITE, &shm, 0)?;
    /// r.map_shared_memory_at(page, page, Protection::READ_WRITE, &shm, 0)?;
    /// // SAFETY: both pages are mapped read-write; raw-pointer access only.
    /// unsafe {
    ///     r.as_mut_ptr().write(7);
    ///     assert_eq!(r.as_ptr().add(page).read(), 7); // the same byte, seen twice
    /// }
    /// # Ok(()) }
    /// ```
    pub fn map_shared_memory_at(
        &self,
        offset: usize,
        len: usize,
        prot: Protection,
        shm: &SharedMemory,
        shm_offset: u64,
    ) -> Result<()> {
        let size = shm.len()?;
        if !shm_offset.checked_add(len as u64).is_some_and(|end| end <= size) {
            return Err(Error::new("map_shared_memory_at", ErrorKind::OutOfBounds)
                .with_range(shm_offset, len as u64)
                .with_detail(format!(
                    "range ends past the shared memory (len {size:#x}); touching it would raise SIGBUS"
                )));
        }
        // SAFETY: the reservation only hands out raw pointers, whose users take on the access
        // contract; the replaced range is ours (checked inside map_file_at).
        unsafe { self.map_file_at(offset, len, prot, Sharing::Shared, shm, shm_offset) }
    }
}
