//! # mmkit: the whole of `mmap`, safely
//!
//! `mmap(addr, length, prot, flags, fd, offset)` answers three questions, and mmkit names them:
//!
//! | question | mmap's parameter | mmkit |
//! |---|---|---|
//! | **what** is mapped | `fd`, `offset`, `MAP_ANONYMOUS` | a file ([`Mmap`], [`MmapMut`], [`MmapRaw`], [`GrowableMmap`]), anonymous memory ([`MapOptions::map_anon`]) |
//! | **where** it goes | `addr`, `MAP_FIXED*` | [`Placement`], or a range inside an owned [`Reservation`] (the only place `MAP_FIXED` is used) |
//! | **how** it is accessed | `prot`, `MAP_SHARED`/`MAP_PRIVATE`, ... | [`Protection`], [`Sharing`], [`Populate`], [`Lock`], [`HugePages`], [`Advice`], names |
//!
//! A successful map returns an owner that unmaps on drop. Range operations (advise, protect,
//! lock, flush, residency, populate, resize) take byte ranges relative to the mapping and are
//! bounds-checked with overflow-safe arithmetic. Every error names the operation, the path,
//! the range and the errno ([`Error`]).
//!
//! ## Contents
//! - [`page`]: the kernel's page size (never a literal 4096) and alignment arithmetic.
//! - [`options`]: [`MapOptions`], mmap's parameters as a builder.
//! - [`mapping`]: [`Mapping`], the owned region and its range operations.
//! - [`file`](mod@file): file-backed faces and the [file-mapping safety contract](mod@file#safety-the-file-mapping-contract).
//! - [`anon`]: anonymous memory.
//! - [`growable`]: [`GrowableMmap`], a file map that grows in place inside a reservation.
//! - [`alloc`]: [`MapAlloc`](alloc::MapAlloc), a large-block allocator on anonymous mappings.
//! - [`reserve`]: [`Reservation`]: reserve address space, commit and decommit parts of it.
//! - [`shm`]: [`SharedMemory`] (memfd): seals, passing it to another process, a ring buffer.
//! - [`scan`]: [`Mmap::scan`], sequential reads that probe for truncation and populate ahead.
//! - [`residency`](mod@residency): [`Residency`], which pages were resident, one bit per page.
//! - [`inspect`]: page-cache residency of files and `/proc/<pid>/maps`/`smaps`.
//! - [`process`]: fork probes, to see a mapping from another process.
//! - [`open`]: opening a path as a regular file without blocking on FIFOs or acting on devices.
//! - [`error`]: the [`Error`] type.
//!
//! ## File-backed: read a file like an array
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?; let path = dir.path().join("large_data.bin");
//! # std::fs::write(&path, vec![1u8; 1 << 20])?;
//! let file = std::fs::File::open(&path)?;
//! // SAFETY: nobody truncates or rewrites the file while it is mapped.
//! let map = unsafe { mmkit::Mmap::map(&file) }?;
//! assert_eq!(map.residency(..)?.pages(), (1 << 20) / mmkit::page_size() as u64);
//! let sum: u64 = map.iter().map(|&b| b as u64).sum(); // pages fault in on demand
//! assert_eq!(sum, 1 << 20);
//! # Ok(()) }
//! ```
//!
//! ## Anonymous: zeroed memory, reserved address space
//! ```
//! # fn main() -> Result<(), mmkit::Error> {
//! let mut mem = mmkit::MapOptions::new().len(1 << 20).map_anon()?;
//! mem[0] = 1;
//! let heap = mmkit::Reservation::new(1 << 30)?;
//! heap.commit(0, 1 << 20, mmkit::Protection::READ_WRITE)?;
//! # Ok(()) }
//! ```
//!
//! ## Platform
//! Linux (and, by design, Android: the kernel interface is the same, and the page size is
//! always asked of the kernel). CI checks the library with `cargo clippy` for three Android
//! targets and runs its tests on an arm64 kernel with 16 KiB pages, on i686 and under armv7 user
//! emulation (see the README's platform table).

// Layering: imports flow one way, and a lower layer never names an item of a higher one (when
// it seems to need one, the item belongs lower):
//   1. `sys`                      the kernel calls and constants; names nothing else in mmkit
//   2. `page`, `error`, `options`, `residency`, `open`   values, arithmetic, opening files
//   3. `mapping`                  `Mapping`, the owned region
//   4. faces: `file`, `anon`, `process`          typed owners over one `Mapping`; `scan` (on `Mmap`)
//   5. composites: `reserve`, then `growable`, `shm`, `alloc`, `inspect`
// Within the composites `reserve` is the lowest (`growable` and `shm` build on it).

#![deny(missing_docs)]
// `unsafe` only in the modules that say `#![allow(unsafe_code)]` (DESIGN.md, "Where `unsafe` lives").
#![deny(unsafe_code)]
#![cfg(any(target_os = "linux", target_os = "android"))]

pub mod alloc;
pub mod anon;
pub mod error;
pub mod file;
pub mod growable;
pub mod inspect;
pub mod mapping;
pub mod open;
pub mod options;
pub mod page;
pub mod process;
pub mod reserve;
pub mod residency;
pub mod scan;
pub mod shm;
pub(crate) mod sys;

pub use error::{Error, ErrorKind, Result};
pub use file::{Mmap, MmapMut, MmapRaw};
pub use growable::GrowableMmap;
pub use mapping::{Mapping, PageOutcome};
pub use options::{
    Advice, HugePages, Lock, MapOptions, Placement, Populate, Protection, RemapOptions, Sharing, UncheckedAdvice,
};
pub use page::page_size;
pub use process::page_faults;
pub use reserve::{Reservation, ReserveOptions};
pub use residency::{PageBitmap, Residency};
pub use scan::Scan;
pub use shm::SharedMemory;
