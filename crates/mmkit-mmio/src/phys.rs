//! Physical memory through `/dev/mem`: a page-aligned window around any physical address.
//!
//! Needs root (`CAP_SYS_RAWIO`), and kernels built with `CONFIG_STRICT_DEVMEM` only allow
//! device memory, not RAM; with `CONFIG_IO_STRICT_DEVMEM` not even memory a driver claimed.
//! Opened with `O_SYNC`, so the kernel maps it uncached.
#![deny(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::access::AccessRules;
use crate::error::{Error, ErrorKind, Result};
use crate::pci::PciDevice;
use crate::region::{map_shared, MapRequest, MmioRegion};

/// An open `/dev/mem` (or another file of physical memory).
#[derive(Debug)]
pub struct PhysicalMemory {
    file: File,
    path: PathBuf,
}

impl PhysicalMemory {
    /// Opens `/dev/mem` for reading and writing, uncached (`O_SYNC`); see
    /// [mem(4)](https://man7.org/linux/man-pages/man4/mem.4.html).
    pub fn open() -> Result<Self> {
        Self::open_path(Path::new("/dev/mem"))
    }

    /// Opens `path` as physical memory. Regions map only from `/dev/mem` (or a node of the
    /// same device, 1:1) or from a memfd sealed against shrinking (`/proc/self/fd/N`), the
    /// stand-in for tests: a plain file could be truncated under the region, and another
    /// device (`/dev/zero`, a block device) may leave pages of the range unbacked; an access
    /// there would raise `SIGBUS`, so [`map`](Self::map) refuses them.
    pub fn open_path(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open(path)
            .map_err(|e| Error::io("open", &e).with_path(path))?;
        Ok(PhysicalMemory { file, path: path.to_owned() })
    }

    /// Maps the `len` bytes at physical address `addr` (through the page-aligned window that
    /// contains them), accepting any width. Offset 0 of the region is `addr`.
    #[doc(alias = "mmap")]
    pub fn map(&self, addr: u64, len: usize) -> Result<MmioRegion> {
        self.map_with_rules(addr, len, AccessRules::any())
    }

    /// Maps memory BAR `bar` of `device` through `/dev/mem`: the region is exactly the BAR
    /// (bounded at its size from the device's `resource` file, even when smaller than a page)
    /// with the device's width rules for that BAR.
    pub fn map_pci_bar(&self, device: &PciDevice, bar: usize) -> Result<MmioRegion> {
        let res = device.memory_bar(bar)?;
        let len = usize::try_from(res.size()).map_err(|_| {
            Error::new("mmap", ErrorKind::InvalidArgument)
                .with_path(&self.path)
                .with_target(format!("(BAR{bar} of {})", device.address()))
                .with_range(res.start, res.size())
                .with_detail("the BAR is larger than the address space")
        })?;
        let id = device.id();
        // `/dev/mem`'s errors name the file and the physical range: add the device and BAR.
        let target = format!("(BAR{bar} of {})", device.address());
        self.map_with_rules(res.start, len, AccessRules::for_pci_bar(id.vendor, id.device, bar))
            .map_err(|e| e.with_source_name(None, Some(&target)))
    }

    /// Like [`PhysicalMemory::map`], with the device's width `rules`.
    pub fn map_with_rules(&self, addr: u64, len: usize, rules: AccessRules) -> Result<MmioRegion> {
        let page = crate::page_size() as u64;
        let bad = || {
            Error::new("mmap", ErrorKind::InvalidArgument)
                .with_path(&self.path)
                .with_range(addr, len as u64)
                .with_detail("empty or overflowing range")
        };
        let base = addr - addr % page;
        let start = addr - base;
        addr.checked_add(len as u64).filter(|_| len > 0).ok_or_else(bad)?;
        let end = start + len as u64;
        let map_len = end.checked_add(page - 1).ok_or_else(bad)? / page * page;
        map_shared(
            std::os::fd::AsFd::as_fd(&self.file),
            MapRequest {
                path: &self.path,
                target: None,
                mmap_offset: base,
                map_len: usize::try_from(map_len).map_err(|_| bad())?,
                start: start as usize,
                len,
                rules,
                phys: Some(addr),
            },
        )
    }
}
