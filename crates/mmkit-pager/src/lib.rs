//! # mmkit-pager: memory whose pages your code supplies
//!
//! The kernel pages a mapping in from a file's page cache or from zeros. Everything else — a
//! compressed file, a snapshot of a process, a remote store — is read eagerly, or paged by user
//! space with `userfaultfd(2)`, as Firecracker restores microVM snapshots and QEMU migrates
//! post-copy. This crate is that pager, built on [mmkit]'s core: it owns the region, runs the
//! handler threads, asks a source for each missing page once, and turns source errors into a
//! documented outcome (never a hang, never garbage as data).
//!
//! ## Contents
//! - [`PagedRegion`]: the region, its handler threads, its
//!   [failure semantics](region#failure-semantics), fork and drop.
//! - [`backing`]: what the region is made of: anonymous memory, a memfd served with
//!   `UFFDIO_COPY` or `UFFDIO_CONTINUE` (shareable with other processes, pages
//!   [staged](PagedRegion::stage) ahead of faults), or hugetlb pages; fault-around and
//!   spinning handlers are [builder](PagedRegionBuilder) options.
//! - [`source`]: [`PageSource`] and the sources shipped: zeros, a closure,
//!   a file read with `pread`.
//! - [`seekable`]: zstd seekable-format files: [`pack`](seekable::pack) one, and map it lazily
//!   with [`SeekableSource`] (only the frames touched are decompressed).
//! - [`snapshot`]: write a region or any mapping to a sparse snapshot file; restore it lazily
//!   into a region (Firecracker-style) or eagerly.
//! - [`dirty`]: which pages were written since a point in time: `PAGEMAP_SCAN`,
//!   `UFFDIO_WRITEPROTECT` or soft-dirty bits, and which one ran.
//! - [`uffd`]: privilege detection ([`capabilities`]): the full mode, the
//!   `/dev/userfaultfd` device, `UFFD_USER_MODE_ONLY`.
//! - [`Error`]: mmkit's error (operation, address, range, errno).
//!
//! ## Example
//! ```
//! # fn main() -> Result<(), mmkit_pager::Error> {
//! use mmkit_pager::{FnSource, Filled, PagedRegion};
//! let page = mmkit::page_size();
//! let region = PagedRegion::new(16 * page, FnSource(|offset, buf: &mut [u8]| {
//!     buf.fill((offset / mmkit::page_size() as u64) as u8);
//!     Ok(Filled::Data)
//! }))?;
//! assert_eq!(region.as_slice()[3 * page], 3); // the page is supplied on first touch
//! assert_eq!(region.stats().data_pages, 1);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
// `unsafe` only in the modules that say `#![allow(unsafe_code)]` (DESIGN.md, "Where `unsafe` lives").
#![deny(unsafe_code)]

pub mod backing;
pub mod dirty;
pub mod region;
pub mod seekable;
pub mod snapshot;
pub mod source;
mod sys;
pub mod uffd;

pub use backing::{Backing, ShmemFill};
pub use dirty::{DirtyMechanism, DirtyPages};
pub use mmkit::{Error, ErrorKind, Result};
pub use region::{Fence, PageFailure, PagedRegion, PagedRegionBuilder, Stats};
pub use seekable::{PackInfo, PackOptions, SeekableSource};
pub use snapshot::{SnapshotInfo, SnapshotSource};
pub use source::{FileSource, Filled, FnSource, PageSource, ZeroSource};
pub use uffd::{capabilities, Capabilities, FaultMode, OpenedVia};
