//! Device registers from user space: map a device's register window through UIO, PCI sysfs or
//! `/dev/mem`, and access it safely — volatile, bounds-, alignment- and width-checked — raw or
//! through typed register blocks; wait for its interrupts.
//!
//! A user-space driver maps the physical addresses of a device's control registers into its
//! address space; each load and store then becomes a bus transaction. This crate does the
//! mapping right (runtime page size, the UIO map `offset`, unmapping on drop, interrupts on
//! `uio_pci_generic`) and makes the accesses unable to cause undefined behaviour: device
//! memory is never behind a Rust reference, and every access is checked first.
//!
//! # Contents
//!
//! | theme | items |
//! |---|---|
//! | sources | [`Uio`] (`/dev/uioN` + `/sys/class/uio`), [`PciDevice`] (`/sys/bus/pci/devices/*/resourceN`, [`PciDevice::map_bar_wc`] for `resourceN_wc`, config space), [`PhysicalMemory`] (`/dev/mem`, [`PhysicalMemory::map_pci_bar`]) |
//! | bounds | every region is exactly the device's memory: a BAR smaller than a page is mapped as its page but bounded at the BAR's size, whichever the source |
//! | the region | [`MmioRegion`]: owned mapping, `read_u8..u64` / `write_u8..u64`, unmapped on drop |
//! | checks | [`Width`], [`AccessRules`] (built in: [`AccessRules::edu`], [`AccessRules::ivshmem_registers`]; from a profile: [`AccessRules::parse_profile`]; from a register block: `Block::access_rules()`; [`AccessRules::is_known`]), [`ErrorKind::OutOfBounds`], [`ErrorKind::Misaligned`], [`ErrorKind::WidthNotAllowed`] |
//! | typed registers | [`register_block!`], [`bitfields!`], [`Reg`], [`ReadOnly`], [`WriteOnly`], [`ReadWrite`], [`SideEffects`] |
//! | interrupts | [`Uio::enable_irq`], [`Uio::wait_irq`] → [`IrqEvent`] |
//! | ordering | [`fence`]: `to_device`, `from_device`, `full` for DMA hand-off |
//! | testing drivers | [`FakeRegisters`] with a [`DeviceModel`]: the same checks, no device |
//! | parsing | [`sysfs`]: numbers, PCI addresses and IDs, `resource` files, UIO map attributes |
//! | errors | [`Error`] with [`Error::kind`], [`Error::errno`], [`Error::path`], [`Error::range`] |
//!
//! # Example: QEMU's edu device through UIO
//!
//! ```no_run
//! use mmkit_mmio::{sysfs::PciId, Uio};
//! # fn main() -> Result<(), mmkit_mmio::Error> {
//! let uio = Uio::find_pci(PciId::EDU)?;   // bound to uio_pci_generic
//! let regs = uio.map(0)?;                 // BAR0, 1 MiB
//! assert_eq!(regs.read_u32(0x00)?, 0x010000ed);
//! regs.write_u32(0x04, 0xff)?;
//! assert_eq!(regs.read_u32(0x04)?, !0xff);
//! // edu only accepts 32-bit accesses below 0x80: a byte read is an error, not garbage.
//! assert!(regs.read_u8(0x00).is_err());
//! # Ok(()) }
//! ```
//!
//! `examples/edu.rs` is a complete typed driver for the same device; `vmtest/run` boots a VM
//! with it and runs this crate's device tests there.
//!
//! # Example: a driver tested against a fake
//!
//! ```
//! use mmkit_mmio::{register_block, FakeRegisters, ReadOnly, ReadWrite};
//!
//! register_block! {
//!     /// Two registers.
//!     pub struct Counter {
//!         /// Current value.
//!         0x0 => value: ReadOnly<u32>,
//!         /// Reload value.
//!         0x4 => reload: ReadWrite<u32>,
//!     }
//! }
//!
//! let fake = FakeRegisters::new(8);
//! let counter = Counter::new(&fake)?;
//! counter.reload().write(100)?;
//! assert_eq!(fake.peek(4), 100);
//! # Ok::<(), mmkit_mmio::Error>(())
//! ```
#![deny(missing_docs)]
// `unsafe` only in the modules that say `#![allow(unsafe_code)]` (DESIGN.md, "Where `unsafe` lives").
#![deny(unsafe_code)]

mod access;
mod error;
mod fake;
mod pci;
mod phys;
mod region;
pub mod registers;
pub mod sysfs;
mod uio;

pub use access::{check_access, AccessRules, Width, Widths};
pub use error::{Error, ErrorKind, Result};
pub use fake::{Access, AccessKind, DeviceModel, FakeRegisters, PlainMemory, Store};
pub use pci::{
    list as list_pci_devices, scan as scan_pci_devices, scan_in as scan_pci_devices_in, PciDevice, PCI_COMMAND,
    PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, SYS_BUS_PCI_DEVICES,
};
pub use phys::PhysicalMemory;
pub use region::{fence, MmioRegion};
pub use registers::{
    Field, Primitive, Pure, PureRead, ReadOnly, ReadWrite, Readable, Reg, RegisterInfo, RegisterSpec, RegisterValue,
    Registers, SideEffects, Writable, WriteOnly,
};
pub use uio::{
    list as list_uio_devices, scan as scan_uio_devices, scan_in as scan_uio_devices_in, IrqEnable, IrqEvent, Uio,
    UioInfo, SYS_CLASS_UIO,
};

/// The size of a page on this machine, in bytes (never assumed to be 4096); the same as
/// [`mmkit::page_size`].
pub fn page_size() -> usize {
    mmkit::page_size()
}

/// Stand-ins for device files in unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    /// A memfd holding `bytes`, sealed against shrinking (a plain file could be truncated under
    /// a region, so regions refuse one), and a symlink at `link` to it (`/proc/self/fd/N`), so
    /// that opening `link` opens the memfd. Keep the returned descriptor for the test's life.
    pub(crate) fn sealed_stand_in(link: &Path, bytes: &[u8]) -> OwnedFd {
        let shm = mmkit::shm::SharedMemory::create("mmio-stand-in", bytes.len() as u64).unwrap();
        shm.add_seals(mmkit::shm::Seals::SHRINK).unwrap();
        let file = std::fs::File::from(OwnedFd::from(shm));
        file.write_all_at(bytes, 0).unwrap();
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        std::os::unix::fs::symlink(fd_path, link).unwrap();
        file.into()
    }
}
