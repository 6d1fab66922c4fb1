//! Anonymous memory: zero-filled maps, private or shared across `fork`, named, guarded, purged,
//! and backed by huge pages.
//!
//! | want | call | kernel |
//! |---|---|---|
//! | zeroed private memory | [`MapOptions::map_anon`] | `mmap(MAP_PRIVATE \| MAP_ANONYMOUS)` |
//! | memory a forked child shares | [`MapOptions::map_anon_shared`] | `MAP_SHARED \| MAP_ANONYMOUS` |
//! | a name in `/proc/self/maps` | [`MapOptions::name`], [`Mapping::set_name`], [`inspect::region_name`](crate::inspect::region_name) | `PR_SET_VMA_ANON_NAME` (5.17+) |
//! | guard pages around it | [`MapOptions::map_anon_guarded`] | `MADV_GUARD_INSTALL` (6.13+) or `PROT_NONE` |
//! | a child sees zeros / nothing | `unsafe` [`MmapMut::wipe_on_fork`], `unsafe` [`MmapMut::dont_fork`] | `MADV_WIPEONFORK`, `MADV_DONTFORK` |
//! | give the memory back | [`MmapMut::purge`], [`MmapMut::purge_lazy`] | `MADV_DONTNEED`/`MADV_REMOVE`, `MADV_FREE` |
//! | huge pages, and proof | [`HugePages`](crate::HugePages), [`MmapMut::collapse`], [`inspect::huge_page_bytes`](crate::inspect::huge_page_bytes) | `MADV_HUGEPAGE`, `MADV_COLLAPSE`, `smaps` |
//!
//! ```
//! # fn main() -> Result<(), mmkit::Error> {
//! use mmkit::{MapOptions, HugePages};
//! let mut mem = MapOptions::new().len(4 << 20).name("demo-heap").huge_pages(HugePages::Transparent).map_anon()?;
//! assert!(mem.iter().all(|&b| b == 0));
//! mem.fill(1);
//! println!("page size {} ({:?})", mem.page_outcome().page_size, mem.page_outcome().fallback);
//! println!("named: {:?}", mmkit::inspect::region_name(mem.mapping())?);
//! mem.purge(..)?; // the memory goes back to the kernel; the bytes read back as zeros
//! assert_eq!(mem[0], 0);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]

use std::ops::{Deref, DerefMut, RangeBounds};

use crate::error::{Error, ErrorKind, Result};
use crate::file::{MmapMut, MmapRaw};
use crate::mapping::{Backing, Mapping};
use crate::options::{Advice, MapOptions, Protection, Sharing, UncheckedAdvice};
use crate::page::{check_len, check_page_len};
use crate::sys;

impl MapOptions {
    /// Maps zero-filled anonymous memory of [`len`](MapOptions::len) bytes: private by default
    /// ([`Sharing::Private`] is implied unless `Shared` was set
    /// explicitly, in which case a forked child shares it).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut mem = mmkit::MapOptions::new().len(1 << 20).name("demo").map_anon()?;
    /// assert!(mem.iter().all(|&b| b == 0));
    /// mem[4096] = 1;
    /// # Ok(()) }
    /// ```
    ///
    /// An [`MmapMut`] only ever exists over readable and writable memory: a
    /// [`protection`](MapOptions::protection) without both `READ` and `WRITE` is refused with
    /// [`ErrorKind::InvalidArgument`] (use [`map_anon_raw`](Self::map_anon_raw) for those).
    pub fn map_anon(&self) -> Result<MmapMut> {
        self.require_read_write("an MmapMut")?;
        let mut opts = self.clone();
        opts.sharing.get_or_insert(Sharing::Private);
        let map = Mapping::new_anon(&opts, Protection::READ_WRITE)?;
        map.refuse_unreserved_hugetlb(&opts, "an MmapMut")?;
        Ok(MmapMut::from_mapping(map))
    }

    /// Refuses a protection without both `READ` and `WRITE` for `face`, which hands out
    /// `&mut [u8]` (the faces' invariant).
    fn require_read_write(&self, face: &str) -> Result<()> {
        let prot = self.protection.unwrap_or(Protection::READ_WRITE);
        if prot.contains(Protection::READ_WRITE) {
            return Ok(());
        }
        Err(Error::new("mmap", ErrorKind::InvalidArgument).with_range(0, self.len.unwrap_or(0) as u64).with_detail(
            format!(
                "{face} needs a readable and writable protection, not {} (map_anon_raw maps any protection \
                 and hands out raw pointers)",
                prot.rwx()
            ),
        ))
    }

    /// Maps zero-filled anonymous memory with any [`protection`](MapOptions::protection)
    /// (read-write when none is set) as an [`MmapRaw`], which hands out raw pointers only: for
    /// `PROT_NONE` address space, read-only or execute-only memory, and memory whose
    /// protection changes later ([`MmapRaw::protect`]).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// use mmkit::{MapOptions, Protection};
    /// let ro = MapOptions::new().len(mmkit::page_size()).protection(Protection::READ).map_anon_raw()?;
    /// // SAFETY: the page is mapped readable (zero-filled) for as long as `ro` lives.
    /// assert_eq!(unsafe { ro.as_ptr().read() }, 0);
    /// # Ok(()) }
    /// ```
    pub fn map_anon_raw(&self) -> Result<MmapRaw> {
        let mut opts = self.clone();
        opts.sharing.get_or_insert(Sharing::Private);
        Ok(MmapRaw::from_mapping(Mapping::new_anon(&opts, Protection::READ_WRITE)?))
    }

    /// Maps zero-filled anonymous memory shared with forked children (`MAP_SHARED |
    /// MAP_ANONYMOUS`): a write in the parent or a child is seen by the other.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mem = mmkit::MapOptions::new().len(4096).map_anon_shared()?;
    /// assert_eq!(mem.mapping().sharing(), mmkit::Sharing::Shared);
    /// # Ok(()) }
    /// ```
    pub fn map_anon_shared(&self) -> Result<MmapMut> {
        let mut opts = self.clone();
        opts.sharing(Sharing::Shared);
        opts.map_anon()
    }

    /// Maps anonymous memory of [`len`](MapOptions::len) bytes between two guard regions of
    /// `guard_len` bytes each (rounded up to whole pages, at least one page): touching a guard
    /// raises `SIGSEGV` instead of silently reading or corrupting a neighbour. Guards are
    /// `MADV_GUARD_INSTALL` markers where the kernel has them (Linux 6.13+; one VMA, no extra
    /// kernel objects), else `PROT_NONE` pages; [`GuardedMmap::guard_kind`] says which.
    ///
    /// The usable bytes start right after the head guard, so an overflow past the end of a
    /// page-multiple `len` hits the tail guard at once.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut stack = mmkit::MapOptions::new().len(64 << 10).map_anon_guarded(1)?;
    /// stack[0] = 1;
    /// let (start, len) = stack.mapping().kernel_region();
    /// assert_eq!(len, (64 << 10) + 2 * mmkit::page_size());
    /// assert_eq!(stack.as_ptr() as usize, start + mmkit::page_size());
    /// # Ok(()) }
    /// ```
    pub fn map_anon_guarded(&self, guard_len: usize) -> Result<GuardedMmap> {
        let page = sys::page_size();
        let len = self.len.ok_or_else(|| {
            Error::new("mmap", ErrorKind::InvalidArgument)
                .with_detail("an anonymous mapping needs a length (MapOptions::len)")
        })?;
        self.require_read_write("a GuardedMmap")?;
        let page = page as u64;
        let guard = check_page_len("mmap", guard_len.max(1) as u64, page)?;
        let body = check_page_len("mmap", len as u64, page)?;
        // Each is at most isize::MAX, so the sum fits in a u64.
        let total = check_len("mmap", body as u64 + 2 * guard as u64)
            .map_err(|e| e.with_detail("length plus guard pages is longer than isize::MAX"))?;
        let mut opts = self.clone();
        opts.sharing.get_or_insert(Sharing::Private);
        opts.len = Some(total);
        let mut map = Mapping::new_anon(&opts, Protection::READ_WRITE)?;
        map.refuse_unreserved_hugetlb(&opts, "a GuardedMmap")?;
        if map.is_hugetlb() {
            return Err(Error::new("map_anon_guarded", ErrorKind::Unsupported).with_detail(
                "guard pages are base pages, and a hugetlb mapping is changed only in whole huge pages: map the \
                 guarded region without Hugetlb",
            ));
        }
        let guard_err = |e, off: usize| {
            Error::os("madvise(MADV_GUARD_INSTALL) / mprotect(PROT_NONE)", e).with_range(off as u64, guard as u64)
        };
        // Guard markers need a private mapping before Linux 6.15; shared ones use PROT_NONE.
        let allow_madvise = opts.sharing == Some(Sharing::Private);
        let kind = install_guard(&mut map, 0, guard, allow_madvise).map_err(|e| guard_err(e, 0))?;
        install_guard(&mut map, guard + body, guard, kind == GuardKind::Madvise)
            .map_err(|e| guard_err(e, guard + body))?;
        map.set_window(guard, len);
        Ok(GuardedMmap { map: MmapMut::from_mapping(map), guard_len: guard, kind })
    }
}

pub use crate::sys::anon::GuardKind;

/// Anonymous memory between two guard regions; see [`MapOptions::map_anon_guarded`].
///
/// Dereferences to the usable bytes only. It does not hand out the inner [`MmapMut`] mutably,
/// because resizing it would move the tail guard into the usable bytes.
///
/// # Invariant
/// The usable bytes are readable and writable (the inner [`MmapMut`]'s invariant: a
/// protection without both is refused) and the `guard_len` bytes on each side stay
/// inaccessible for its life, since nothing hands out the mapping mutably. Its window lies
/// inside the kernel region and the whole is at most `isize::MAX` bytes.
#[derive(Debug)]
pub struct GuardedMmap {
    map: MmapMut,
    guard_len: usize,
    kind: GuardKind,
}

impl GuardedMmap {
    /// How the guards were installed.
    pub fn guard_kind(&self) -> GuardKind {
        self.kind
    }

    /// Length of each guard region in bytes (whole pages).
    pub fn guard_len(&self) -> usize {
        self.guard_len
    }

    /// The mapping: range operations apply to the usable bytes; [`Mapping::kernel_region`]
    /// includes the guards.
    pub fn mapping(&self) -> &Mapping {
        self.map.mapping()
    }

    /// Drops the pages of `range` (zeros read back); see [`MmapMut::purge`].
    pub fn purge(&mut self, range: impl RangeBounds<usize>) -> Result<Purged> {
        self.map.purge(range)
    }
}

impl Deref for GuardedMmap {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl DerefMut for GuardedMmap {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// Which advice a purge used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purged {
    /// `MADV_DONTNEED` (private memory): freed now; reads back zeros.
    DontNeed,
    /// `MADV_REMOVE` (shared memory): the backing pages are freed; reads back zeros.
    Remove,
    /// `MADV_FREE` (private memory): freed lazily under memory pressure.
    Free,
}

/// What [`MmapMut::collapse`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collapse {
    /// `MADV_COLLAPSE` succeeded: the range is backed by huge pages now.
    Collapsed,
    /// The kernel could not or would not collapse; the reason says why.
    NotCollapsed(String),
}

impl MmapMut {
    /// Gives the memory of `range` back to the kernel now; it reads back as zeros. Private
    /// memory uses `MADV_DONTNEED`; shared anonymous memory `MADV_REMOVE` (which frees the
    /// shared pages for every process that maps them). Needs `&mut self`: no slice is alive.
    ///
    /// Shared hugetlb memory is refused with [`ErrorKind::Unsupported`]: `MADV_REMOVE` frees
    /// its huge pages together with their reservation in the pool, so the map could no longer
    /// count on getting them back (a touch would raise `SIGBUS` once the pool is empty).
    /// Private hugetlb memory is refused too: `MADV_DONTNEED` frees its pages without restoring
    /// their reservation (see [`Mapping::discard`]).
    ///
    /// Anonymous memory only: a map of a file (a memfd included) is refused with
    /// [`ErrorKind::InvalidArgument`], since neither advice does what this promises there
    /// (private pages would read back the file's bytes, not zeros, and `MADV_REMOVE` would
    /// punch a hole in the file, destroying its data). [`MmapMut::discard`] drops a file map's
    /// pages (they read back from the file).
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut mem = mmkit::MapOptions::new().len(1 << 20).map_anon()?;
    /// mem.fill(7);
    /// mem.purge(..)?;
    /// assert_eq!(mem.residency(..)?.resident_pages(), 0);
    /// assert!(mem.iter().all(|&b| b == 0));
    /// # Ok(()) }
    /// ```
    pub fn purge(&mut self, range: impl RangeBounds<usize>) -> Result<Purged> {
        if self.mapping().file_offset().is_some() {
            return Err(Error::new("purge", ErrorKind::InvalidArgument)
                .with_opt_path(self.mapping().path())
                .with_detail(
                    "purge gives anonymous memory back; on a file map a private page would read back the \
                     file's bytes and a shared one would punch a hole in the file (use discard to drop the \
                     pages)",
                ));
        }
        self.mapping().refuse_private_hugetlb_drop("purge")?;
        let shared = self.mapping().sharing() != Sharing::Private;
        if shared && self.mapping().is_hugetlb() {
            return Err(Error::new("purge", ErrorKind::Unsupported).with_detail(
                "purge of shared huge pages (MADV_REMOVE) frees them and gives their pool reservation back: \
                 touching them again would raise SIGBUS once the pool is empty (use discard: the pages stay, \
                 with their bytes, or drop the map)",
            ));
        }
        let (advice, purged) = if shared {
            (UncheckedAdvice::Remove, Purged::Remove)
        } else {
            (UncheckedAdvice::DontNeed, Purged::DontNeed)
        };
        #[allow(unsafe_code)]
        // SAFETY: `&mut self` proves no slice of the mapping is alive; zeros are valid bytes.
        unsafe {
            self.mapping().advise_unchecked(range, advice)?;
        }
        Ok(purged)
    }

    /// Lets the kernel free the memory of `range` lazily (`MADV_FREE`, private memory): cheap,
    /// and the pages stay resident until memory is short. Until a page is written again, it
    /// reads back as either its old bytes or zeros. Shared memory falls back to
    /// [`purge`](Self::purge); a map of a file is refused as there.
    ///
    /// # Safety
    /// The bytes of a purged page may change from their old value to zero at any moment until
    /// the page is written: do not read `range` through a reference before writing it.
    #[allow(unsafe_code)]
    pub unsafe fn purge_lazy(&mut self, range: impl RangeBounds<usize> + Clone) -> Result<Purged> {
        if self.mapping().sharing() != Sharing::Private || self.mapping().file_offset().is_some() {
            return self.purge(range);
        }
        // SAFETY: forwarded contract.
        match unsafe { self.mapping().advise_unchecked(range.clone(), UncheckedAdvice::Free) } {
            Ok(()) => Ok(Purged::Free),
            Err(e) if e.errno() == Some(libc::EINVAL) => self.purge(range),
            Err(e) => Err(e),
        }
    }

    /// A forked child sees zeros in `range` (`MADV_WIPEONFORK`, Linux 4.14+, private memory):
    /// for secrets and per-process state such as random-number-generator seeds.
    ///
    /// # Safety
    /// The child of a `fork` continues the parent's code with the parent's references, and in
    /// the child the bytes behind them are now zeros: a `&[u8]` (or a `&NonZeroU8`, `&str`, ...
    /// validated from it) that was alive across the fork would see its bytes change under it
    /// (and a `&NonZeroU8` would read 0). Until [`keep_on_fork`](Self::keep_on_fork) undoes it,
    /// no reference into `range` made before a fork may be used in the forked child (for
    /// example in the closure of a [fork probe](crate::process)). The child may use the face
    /// itself: references it makes after the fork see the zeros from the start. A child that
    /// only calls `exec` or `_exit` is fine.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut secret = mmkit::MapOptions::new().len(4096).map_anon()?;
    /// // SAFETY: no reference into `secret` is used by a forked child.
    /// unsafe { secret.wipe_on_fork(..) }?;
    /// secret[0] = 42; // the parent keeps it; a child would read 0
    /// # Ok(()) }
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn wipe_on_fork(&mut self, range: impl RangeBounds<usize>) -> Result<()> {
        // SAFETY: this process's contents do not change; in a child, the references made
        // before the fork are the caller's (forwarded contract).
        unsafe { self.mapping().advise_unchecked(range, UncheckedAdvice::WipeOnFork) }
    }

    /// Undoes [`wipe_on_fork`](Self::wipe_on_fork) (`MADV_KEEPONFORK`).
    pub fn keep_on_fork(&mut self, range: impl RangeBounds<usize>) -> Result<()> {
        #[allow(unsafe_code)]
        // SAFETY: keeping contents across fork changes nothing in this process.
        unsafe {
            self.mapping().advise_unchecked(range, UncheckedAdvice::KeepOnFork)
        }
    }

    /// A forked child does not inherit `range` at all (`MADV_DONTFORK`): it is unmapped there.
    /// For memory a child must never see (DMA buffers, secrets when the child `exec`s at once).
    /// [`DoFork`](crate::Advice::DoFork) undoes it.
    ///
    /// # Safety
    /// The child still holds its copy of this `MmapMut`, over memory that is gone there. Until
    /// the range is inherited again, no forked child (in particular a
    /// [fork probe](crate::process::in_forked_child_single_threaded)) may read or write the
    /// range, call any method of this map, drop it, or map anything at its address (a
    /// [`Placement::FixedNoReplace`](crate::Placement::FixedNoReplace) map there would give two
    /// owners of one page). A child that only calls `exec` or `_exit` is fine.
    ///
    /// ```
    /// # fn main() -> Result<(), mmkit::Error> {
    /// let mut dma = mmkit::MapOptions::new().len(mmkit::page_size()).map_anon()?;
    /// // SAFETY: this program's children only `exec` (std::process::Command).
    /// unsafe { dma.dont_fork(..) }?;
    /// dma[0] = 1;
    /// # Ok(()) }
    /// ```
    #[allow(unsafe_code)]
    pub unsafe fn dont_fork(&self, range: impl RangeBounds<usize>) -> Result<()> {
        // SAFETY: forwarded contract (nothing changes in this process; the child side is the
        // caller's).
        unsafe { self.mapping().advise_unchecked(range, UncheckedAdvice::DontFork) }
    }

    /// Asks the kernel to back `range` with transparent huge pages now (`MADV_COLLAPSE`,
    /// Linux 6.1+), synchronously. Returns why not when it cannot (an old kernel, THP
    /// disabled, no free huge page, a range smaller than a huge page).
    pub fn collapse(&self, range: impl RangeBounds<usize>) -> Result<Collapse> {
        match self.mapping().advise(range, Advice::Collapse) {
            Ok(()) => Ok(Collapse::Collapsed),
            Err(e) => match e.errno() {
                Some(libc::EINVAL) => Ok(Collapse::NotCollapsed(format!(
                    "MADV_COLLAPSE refused with EINVAL: the kernel lacks it (Linux 6.1+) or THP is disabled ({})",
                    crate::mapping::thp_mode().unwrap_or_else(|| "no THP support".into())
                ))),
                Some(libc::EAGAIN) | Some(libc::ENOMEM) => {
                    Ok(Collapse::NotCollapsed(format!("no huge page could be allocated now: {e}")))
                }
                _ => Err(e),
            },
        }
    }
}

impl Mapping {
    pub(crate) fn new_anon(opts: &MapOptions, default_prot: Protection) -> Result<Mapping> {
        #[allow(unsafe_code)]
        // SAFETY: anonymous memory has no file to be truncated or modified by others.
        unsafe {
            Mapping::new(opts, Backing::Anonymous, default_prot)
        }
    }
}

/// Makes `[off, off + len)` of `map`'s kernel region a guard region (see
/// [`sys::anon::install_guard`]). `&mut` proves that no reference into the mapping is alive.
fn install_guard(map: &mut Mapping, off: usize, len: usize, allow_madvise: bool) -> sys::SysResult<GuardKind> {
    let (base, map_len) = map.kernel_region();
    let page = sys::page_size();
    if off % page != 0 || len % page != 0 || !off.checked_add(len).is_some_and(|end| end <= map_len) {
        return Err(rustix::io::Errno::INVAL);
    }
    #[allow(unsafe_code)]
    // SAFETY: whole pages inside the anonymous kernel region `map` owns (checked above), and
    // `&mut` means no reference into it is alive.
    unsafe {
        sys::anon::install_guard((base + off) as *mut u8, len, allow_madvise)
    }
}
