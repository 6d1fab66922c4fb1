//! What memory a [`PagedRegion`](crate::PagedRegion) is made of: [`Backing`].
//!
//! | backing | mapping | fault served with | granule | kernel feature (`UFFDIO_API`) |
//! |---|---|---|---|---|
//! | [`Backing::Anonymous`] (default) | private anonymous | `UFFDIO_COPY` / `UFFDIO_ZEROPAGE` | base page | — |
//! | [`Backing::SharedMemory`]`(`[`ShmemFill::Copy`]`)` | a memfd, `MAP_SHARED` | `UFFDIO_COPY` / `UFFDIO_ZEROPAGE` | base page | `UFFD_FEATURE_MISSING_SHMEM` |
//! | [`Backing::SharedMemory`]`(`[`ShmemFill::Continue`]`)` | a memfd, `MAP_SHARED`, plus a second unregistered mapping | the source writes the memfd's page cache through the second mapping, then `UFFDIO_CONTINUE` | base page | `UFFD_FEATURE_MINOR_SHMEM` |
//! | [`Backing::HugeTlb`] | private `MAP_HUGETLB` | `UFFDIO_COPY` (zeros as a copy) | the hugetlb page size | `UFFD_FEATURE_MISSING_HUGETLBFS` |
//!
//! A backing the kernel lacks is refused at [`build`](crate::PagedRegionBuilder::build) with an
//! [`ErrorKind::Unsupported`](mmkit::ErrorKind::Unsupported) error naming the feature; a
//! hugetlb region with an empty pool (`vm.nr_hugepages`) is refused the same way, with the
//! pool's size in the message.
//!
//! With `Continue`, [`PagedRegion::stage`](crate::PagedRegion::stage) supplies pages ahead of any
//! fault, and [`PagedRegion::share`](crate::PagedRegion::share) hands another process a
//! read-only descriptor of the memfd: it sees the pages the region was supplied.
//!
//! **Dirty tracking** ([`track_dirty`](crate::PagedRegionBuilder::track_dirty)) is refused with
//! `Unsupported` on the shmem and hugetlb backings: the pager's write-protect path installs
//! anonymous pages write-protected (`UFFDIO_COPY_MODE_WP`), which `UFFDIO_CONTINUE` and hugetlb
//! copies do not do here, and soft-dirty bits of shared pages are not reset per mapping.

/// What memory a region is made of; see the [module docs](self).
///
/// ```
/// # fn main() -> Result<(), mmkit_pager::Error> {
/// use mmkit_pager::{Backing, PagedRegion, ShmemFill, ZeroSource};
/// let region = PagedRegion::builder(1 << 20)
///     .backing(Backing::SharedMemory(ShmemFill::Continue))
///     .build(ZeroSource)?;
/// let fd = region.share()?; // another process maps this read-only and sees the pages
/// # drop(fd); Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backing {
    /// Private anonymous memory (the default).
    #[default]
    Anonymous,
    /// A memfd mapped shared: the pages live in its page cache, which
    /// [`share`](crate::PagedRegion::share) lets other processes map.
    SharedMemory(ShmemFill),
    /// Private hugetlb memory (`MAP_HUGETLB`, the default huge page size): the source is asked
    /// for one huge page at a time and the region's [granule](crate::PagedRegion::granule) is the
    /// huge page size the kernel reports for the mapping.
    HugeTlb,
}

/// How the pages of a [`Backing::SharedMemory`] region are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmemFill {
    /// Missing faults (`UFFDIO_REGISTER_MODE_MISSING`) served by copying the source's page in
    /// with `UFFDIO_COPY`.
    Copy,
    /// Missing and minor faults (`UFFDIO_REGISTER_MODE_MISSING | MINOR`): the source writes
    /// straight into the memfd's page cache through a second, unregistered mapping, and
    /// `UFFDIO_CONTINUE` maps the page (no copy). Pages can be
    /// [staged](crate::PagedRegion::stage) before any fault.
    Continue,
}

impl Backing {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backing::Anonymous => "anonymous",
            Backing::SharedMemory(ShmemFill::Copy) => "shared memory (UFFDIO_COPY)",
            Backing::SharedMemory(ShmemFill::Continue) => "shared memory (UFFDIO_CONTINUE)",
            Backing::HugeTlb => "hugetlb",
        }
    }
}
