//! `MapOptions`: mmap's parameters as a builder, and the types that name them.
//!
//! | mmap parameter | here |
//! |---|---|
//! | `length`, `offset` | [`MapOptions::len`], [`MapOptions::offset`] (any offset: unaligned ones are mapped from the page below and only the requested bytes are exposed) |
//! | `prot` | [`Protection`] |
//! | `flags`: `MAP_SHARED`/`MAP_PRIVATE` | [`Sharing`] |
//! | `addr`, `MAP_FIXED_NOREPLACE` | [`Placement`] |
//! | `MAP_POPULATE` / `MADV_POPULATE_*` | [`Populate`] |
//! | `MAP_NORESERVE` | [`MapOptions::no_reserve`] |
//! | `mlock2` | [`Lock`] |
//! | `MAP_HUGETLB`, `MADV_HUGEPAGE` | [`HugePages`] |
//! | `madvise` after mapping | [`Advice`] |
//! | `MAP_STACK` | [`MapOptions::stack`] |
//! | `mremap` | [`RemapOptions`] |

#![deny(unsafe_code)]

use std::ops::{BitOr, BitOrAssign};

/// Memory protection (`PROT_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Protection(u8);

impl Protection {
    /// `PROT_NONE`: no access (address space only).
    pub const NONE: Protection = Protection(0);
    /// `PROT_READ`.
    pub const READ: Protection = Protection(1);
    /// `PROT_WRITE`.
    pub const WRITE: Protection = Protection(2);
    /// `PROT_EXEC`.
    pub const EXEC: Protection = Protection(4);
    /// `PROT_READ | PROT_WRITE`.
    pub const READ_WRITE: Protection = Protection(3);

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Protection) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether reads are allowed.
    pub const fn readable(self) -> bool {
        self.contains(Self::READ)
    }

    /// Whether writes are allowed.
    pub const fn writable(self) -> bool {
        self.contains(Self::WRITE)
    }

    /// Whether execution is allowed.
    pub const fn executable(self) -> bool {
        self.contains(Self::EXEC)
    }

    /// The kernel's `PROT_*` bits.
    pub const fn bits(self) -> i32 {
        let mut b = 0;
        if self.readable() {
            b |= libc::PROT_READ;
        }
        if self.writable() {
            b |= libc::PROT_WRITE;
        }
        if self.executable() {
            b |= libc::PROT_EXEC;
        }
        b
    }

    /// The kernel's `PROT_*` bits as typed flags, for [`sys::mmap`](crate::sys) and
    /// `mprotect`.
    pub(crate) const fn prot_flags(self) -> rustix::mm::ProtFlags {
        rustix::mm::ProtFlags::from_bits_retain(self.bits() as u32)
    }

    /// The `rwx` string as `/proc/self/maps` shows it (`r-x`).
    pub fn rwx(self) -> String {
        let mut s = String::with_capacity(3);
        s.push(if self.readable() { 'r' } else { '-' });
        s.push(if self.writable() { 'w' } else { '-' });
        s.push(if self.executable() { 'x' } else { '-' });
        s
    }
}

impl BitOr for Protection {
    type Output = Protection;
    fn bitor(self, rhs: Protection) -> Protection {
        Protection(self.0 | rhs.0)
    }
}

impl BitOrAssign for Protection {
    fn bitor_assign(&mut self, rhs: Protection) {
        self.0 |= rhs.0;
    }
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protection({})", self.rwx())
    }
}

/// Serialized as `{"read": bool, "write": bool, "exec": bool}` (the shape mmkit-elf's plans and
/// mapping reports have always had).
#[cfg(feature = "serde")]
impl serde::Serialize for Protection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Protection", 3)?;
        s.serialize_field("read", &self.readable())?;
        s.serialize_field("write", &self.writable())?;
        s.serialize_field("exec", &self.executable())?;
        s.end()
    }
}

/// Whether writes are shared with the file and other processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sharing {
    /// `MAP_SHARED`: writes reach the file (or the shared memory) and every other mapping of it.
    #[default]
    Shared,
    /// `MAP_SHARED_VALIDATE`: like `Shared`, but the kernel rejects unknown flags (`EOPNOTSUPP`).
    SharedValidate,
    /// `MAP_PRIVATE`: copy-on-write; writes stay in this process (and are not inherited back).
    Private,
}

impl Sharing {
    /// The `mmap` flag.
    pub(crate) fn map_flags(self) -> rustix::mm::MapFlags {
        match self {
            Sharing::Shared => rustix::mm::MapFlags::SHARED,
            Sharing::SharedValidate => {
                rustix::mm::MapFlags::from_bits_retain(crate::sys::kconst::MAP_SHARED_VALIDATE as u32)
            }
            Sharing::Private => rustix::mm::MapFlags::PRIVATE,
        }
    }
}

/// Where the mapping goes in the address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// The kernel chooses (`addr = NULL`).
    #[default]
    Anywhere,
    /// A hint the kernel may ignore.
    Hint(usize),
    /// Exactly this address or an error (`MAP_FIXED_NOREPLACE`, `EEXIST` when occupied);
    /// never replaces an existing mapping. `MAP_FIXED` itself is only used inside a
    /// [`Reservation`](crate::Reservation), whose range mmkit owns.
    FixedNoReplace(usize),
}

/// How (and whether) to fault pages in up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Populate {
    /// Demand paging: pages come in when touched.
    #[default]
    No,
    /// `MAP_POPULATE`: the kernel faults everything in during `mmap` (read-ahead for files).
    MapPopulate,
    /// `MADV_POPULATE_READ` after mapping (Linux 5.14+): page tables filled for reading; errors
    /// are reported (unlike `MAP_POPULATE`). Falls back to `MADV_WILLNEED` on older kernels.
    Read,
    /// `MADV_POPULATE_WRITE` after mapping (Linux 5.14+): pages faulted in writable (breaks COW,
    /// allocates anonymous memory). Needs a writable mapping.
    Write,
}

/// Whether to lock the pages in RAM (`mlock2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lock {
    /// No locking.
    #[default]
    No,
    /// `mlock2(MLOCK_ONFAULT)`: pages are locked as they are faulted in.
    OnFault,
    /// `mlock2(0)`: every page is faulted in and locked now.
    Full,
}

/// Huge page policy for the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HugePages {
    /// Base pages only.
    #[default]
    No,
    /// Transparent huge pages: the region is aligned to the PMD size and `MADV_HUGEPAGE` is
    /// applied. Falls back (and says why) when THP is disabled.
    Transparent,
    /// hugetlbfs pages (`MAP_HUGETLB`) of the given size in bytes (`None`: the default size).
    /// Falls back to base pages, with the reason, when the pool has no free pages or the size
    /// is not a huge page size (a power of two of at least the base page). Private
    /// hugetlb pages are reserved for this process only: a forked child touching them may be
    /// killed with `SIGBUS` (see [`MmapMut`](crate::MmapMut)).
    Hugetlb(Option<usize>),
}

/// Access-pattern and residency advice that never changes the contents (`madvise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Advice {
    /// `MADV_NORMAL`.
    Normal,
    /// `MADV_SEQUENTIAL`: aggressive read-ahead, pages freed soon after use.
    Sequential,
    /// `MADV_RANDOM`: no read-ahead.
    Random,
    /// `MADV_WILLNEED`: start reading the range in now.
    WillNeed,
    /// `MADV_HUGEPAGE`: allow transparent huge pages here.
    HugePage,
    /// `MADV_NOHUGEPAGE`.
    NoHugePage,
    /// `MADV_DOFORK`: a forked child inherits the range again (undoes
    /// [`UncheckedAdvice::DontFork`]).
    DoFork,
    /// `MADV_DONTDUMP`: exclude from core dumps.
    DontDump,
    /// `MADV_DODUMP`.
    DoDump,
    /// `MADV_COLD` (5.4+): deactivate the pages; contents kept.
    Cold,
    /// `MADV_PAGEOUT` (5.4+): reclaim the pages now; contents kept (written back or swapped).
    /// Only pages this process has mapped (faulted in, or populated) are reclaimed, and the
    /// kernel skips pages that other mappings share: a file's page cache brought in by
    /// [`WillNeed`](Advice::WillNeed) or by another process stays resident (drop that with
    /// [`inspect::evict`](crate::inspect::evict), `posix_fadvise(POSIX_FADV_DONTNEED)`).
    PageOut,
    /// `MADV_POPULATE_READ` (5.14+).
    PopulateRead,
    /// `MADV_POPULATE_WRITE` (5.14+): for writable mappings.
    PopulateWrite,
    /// `MADV_COLLAPSE` (6.1+): collapse the range into transparent huge pages now.
    Collapse,
}

/// Advice that may change what the range reads back (here or in a forked child), so it needs
/// `&mut` or `unsafe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UncheckedAdvice {
    /// `MADV_DONTNEED`: drop the pages; private and anonymous pages read back as zeros (or
    /// the file's contents), shared file pages read back from the page cache (this process's
    /// page-table entries go, the file's cached pages stay: it evicts nothing, and
    /// [`residency`](crate::Mapping::residency) still counts them).
    DontNeed,
    /// `MADV_FREE` (4.5+, private anonymous): the kernel may free the pages lazily; until it does,
    /// they keep their old contents.
    Free,
    /// `MADV_REMOVE`: free the range and its backing store (punches a hole in shared memory).
    Remove,
    /// `MADV_WIPEONFORK` (4.14+): a child sees zeros here, also behind the references it
    /// inherits from the parent (which is why [`MmapMut::wipe_on_fork`](crate::MmapMut::wipe_on_fork)
    /// is `unsafe` too).
    WipeOnFork,
    /// `MADV_DONTFORK`: a forked child does not inherit the range; it is unmapped there,
    /// while the child's copy of the owning face still points at it. Unchecked because safe
    /// code in the child (a [fork probe](crate::process)) could then read unmapped memory, or
    /// map something else at the same address and own it twice.
    DontFork,
    /// `MADV_KEEPONFORK`: undo `WipeOnFork`.
    KeepOnFork,
}

impl Advice {
    /// The `MADV_*` value and its name.
    pub fn raw(self) -> (i32, &'static str) {
        match self {
            Advice::Normal => (libc::MADV_NORMAL, "MADV_NORMAL"),
            Advice::Sequential => (libc::MADV_SEQUENTIAL, "MADV_SEQUENTIAL"),
            Advice::Random => (libc::MADV_RANDOM, "MADV_RANDOM"),
            Advice::WillNeed => (libc::MADV_WILLNEED, "MADV_WILLNEED"),
            Advice::HugePage => (libc::MADV_HUGEPAGE, "MADV_HUGEPAGE"),
            Advice::NoHugePage => (libc::MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE"),
            Advice::DoFork => (libc::MADV_DOFORK, "MADV_DOFORK"),
            Advice::DontDump => (libc::MADV_DONTDUMP, "MADV_DONTDUMP"),
            Advice::DoDump => (libc::MADV_DODUMP, "MADV_DODUMP"),
            Advice::Cold => (libc::MADV_COLD, "MADV_COLD"),
            Advice::PageOut => (libc::MADV_PAGEOUT, "MADV_PAGEOUT"),
            Advice::PopulateRead => (libc::MADV_POPULATE_READ, "MADV_POPULATE_READ"),
            Advice::PopulateWrite => (libc::MADV_POPULATE_WRITE, "MADV_POPULATE_WRITE"),
            Advice::Collapse => (crate::sys::kconst::MADV_COLLAPSE, "MADV_COLLAPSE"),
        }
    }
}

impl UncheckedAdvice {
    /// The `MADV_*` value and its name.
    pub fn raw(self) -> (i32, &'static str) {
        match self {
            UncheckedAdvice::DontNeed => (libc::MADV_DONTNEED, "MADV_DONTNEED"),
            UncheckedAdvice::Free => (libc::MADV_FREE, "MADV_FREE"),
            UncheckedAdvice::Remove => (libc::MADV_REMOVE, "MADV_REMOVE"),
            UncheckedAdvice::WipeOnFork => (libc::MADV_WIPEONFORK, "MADV_WIPEONFORK"),
            UncheckedAdvice::KeepOnFork => (libc::MADV_KEEPONFORK, "MADV_KEEPONFORK"),
            UncheckedAdvice::DontFork => (libc::MADV_DONTFORK, "MADV_DONTFORK"),
        }
    }
}

/// Whether the running kernel knows `madvise` advice `value`: probed once per value
/// (`madvise(NULL, 0, value)`) and cached for the life of the process.
fn advice_supported(value: i32) -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0 = not probed yet, 1 = supported, 2 = not supported; indexed by the MADV_* value.
    static CACHE: [AtomicU8; 64] = [const { AtomicU8::new(0) }; 64];
    let Some(slot) = usize::try_from(value).ok().and_then(|i| CACHE.get(i)) else {
        return crate::sys::probe::madvise_supported(value);
    };
    match slot.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = crate::sys::probe::madvise_supported(value);
            slot.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

impl Advice {
    /// Whether the running kernel supports this advice (memmap2's `Advice::is_supported`). The
    /// kernel is asked once per advice (`madvise(NULL, 0, advice)`, which rejects unknown
    /// advice with `EINVAL`) and the answer is cached.
    ///
    /// ```
    /// assert!(mmkit::Advice::Random.is_supported());
    /// ```
    pub fn is_supported(self) -> bool {
        advice_supported(self.raw().0)
    }
}

impl UncheckedAdvice {
    /// Whether the running kernel supports this advice; see [`Advice::is_supported`].
    pub fn is_supported(self) -> bool {
        advice_supported(self.raw().0)
    }
}

/// How [`remap`](crate::MmapMut::remap) and [`Mapping::resize`](crate::Mapping::resize) may
/// resize a mapping (memmap2's `RemapOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RemapOptions {
    pub(crate) may_move: bool,
}

impl RemapOptions {
    /// Resize in place only (the default): growing fails with `ENOMEM` when the pages after
    /// the mapping are taken.
    pub fn new() -> Self {
        Self::default()
    }

    /// Let the kernel move the mapping when it cannot grow in place (`MREMAP_MAYMOVE`); the
    /// address changes, which `&mut self` makes safe for references (raw pointers dangle).
    pub fn may_move(mut self, may_move: bool) -> Self {
        self.may_move = may_move;
        self
    }
}

/// mmap's parameters as a builder. Build once, map many times.
///
/// ```
/// use mmkit::{MapOptions, Populate};
/// # fn main() -> Result<(), mmkit::Error> {
/// // 1 MiB of zeroed private memory, faulted in up front.
/// let mut mem = MapOptions::new().len(1 << 20).populate(Populate::Write).map_anon()?;
/// mem[0] = 7;
/// assert_eq!(mem.residency(..)?.resident_pages(), (mem.len() / mmkit::page_size()) as u64);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MapOptions {
    pub(crate) len: Option<usize>,
    pub(crate) offset: u64,
    pub(crate) protection: Option<Protection>,
    /// `None`: the face's default (shared for files, private for anonymous memory).
    pub(crate) sharing: Option<Sharing>,
    pub(crate) placement: Placement,
    pub(crate) populate: Populate,
    pub(crate) no_reserve: bool,
    pub(crate) lock: Lock,
    pub(crate) huge: HugePages,
    pub(crate) advice: Option<Advice>,
    pub(crate) name: Option<String>,
    pub(crate) stack: bool,
}

impl MapOptions {
    /// Defaults: the whole file from offset 0, protection chosen by the face (`map` reads,
    /// `map_mut` reads and writes), shared for files and private for anonymous memory,
    /// anywhere, demand-paged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes to map. For files the default is from `offset` to the end of the file; anonymous
    /// maps need a length.
    pub fn len(&mut self, len: usize) -> &mut Self {
        self.len = Some(len);
        self
    }

    /// File offset of the first byte. Any value: an unaligned offset maps from the page below
    /// and exposes only the requested bytes. Anonymous maps (`map_anon*`) have no file and
    /// ignore it, as memmap2's `MmapOptions::offset` is ignored by `map_anon`.
    pub fn offset(&mut self, offset: u64) -> &mut Self {
        self.offset = offset;
        self
    }

    /// Protection, overriding the face's default.
    pub fn protection(&mut self, prot: Protection) -> &mut Self {
        self.protection = Some(prot);
        self
    }

    /// Shared or private (copy-on-write).
    pub fn sharing(&mut self, sharing: Sharing) -> &mut Self {
        self.sharing = Some(sharing);
        self
    }

    /// Where the mapping goes.
    pub fn placement(&mut self, placement: Placement) -> &mut Self {
        self.placement = placement;
        self
    }

    /// Fault pages in up front.
    pub fn populate(&mut self, populate: Populate) -> &mut Self {
        self.populate = populate;
        self
    }

    /// `MAP_NORESERVE`: do not reserve swap/commit charge for the mapping. For hugetlb pages
    /// it means no huge pages are reserved from the pool, and a fault the pool cannot serve
    /// raises `SIGBUS`: faces that hand out references (`map_anon`, `map`, `map_if_safe`, ...)
    /// refuse that combination; the raw ones (`map_anon_raw`, `map_raw`) allow it.
    pub fn no_reserve(&mut self, yes: bool) -> &mut Self {
        self.no_reserve = yes;
        self
    }

    /// Lock the pages in RAM.
    pub fn lock(&mut self, lock: Lock) -> &mut Self {
        self.lock = lock;
        self
    }

    /// Huge pages policy.
    pub fn huge_pages(&mut self, huge: HugePages) -> &mut Self {
        self.huge = huge;
        self
    }

    /// Access-pattern advice applied right after mapping.
    pub fn advice(&mut self, advice: Advice) -> &mut Self {
        self.advice = Some(advice);
        self
    }

    /// `MAP_STACK`: the anonymous memory is a thread, coroutine or fiber stack (memmap2's
    /// `stack()`). Since Linux 6.7 the kernel then never backs it with transparent huge pages
    /// (`nh` in `/proc/self/smaps`); older kernels accept and ignore the flag. Ignored for files.
    pub fn stack(&mut self) -> &mut Self {
        self.stack = true;
        self
    }

    /// Names an anonymous mapping (`[anon:NAME]` in `/proc/self/maps`); ignored for files. A
    /// no-op where the kernel cannot name areas ([`Mapping::name_applied`](crate::Mapping::name_applied));
    /// a name no kernel accepts makes the map fail (see [`Mapping::set_name`](crate::Mapping::set_name)).
    pub fn name(&mut self, name: &str) -> &mut Self {
        self.name = Some(name.to_owned());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protection_bits_and_text() {
        let p = Protection::READ | Protection::EXEC;
        assert_eq!(p.rwx(), "r-x");
        assert_eq!(p.bits(), libc::PROT_READ | libc::PROT_EXEC);
        assert!(Protection::READ_WRITE.writable());
        assert_eq!(Protection::NONE.bits(), libc::PROT_NONE);
    }
}
