//! PCI devices through sysfs: `/sys/bus/pci/devices/<address>/{resourceN,config,enable}`.
//!
//! Mapping `resourceN` gives a BAR's registers without any driver bound (the kernel maps it
//! uncached); `config` reads and writes configuration space (the command register, IDs).
#![deny(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::access::{AccessRules, Width};
use crate::error::{Error, ErrorKind, Result};
use crate::region::{map_shared, MapRequest, MmioRegion};
use crate::sysfs::{parse_hex, parse_pci_resources, PciAddress, PciId, PciResource, PciSelector};
use crate::uio::read_attr;

/// Where PCI devices are listed.
pub const SYS_BUS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Offset of the command register in configuration space.
pub const PCI_COMMAND: u64 = 0x04;
/// Command register: respond to memory-space accesses.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering (DMA).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Command register: INTx emulation disabled (bit 10).
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// A PCI device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    address: PciAddress,
    id: PciId,
    class: u32,
    sys_path: PathBuf,
}

impl PciDevice {
    /// The device at `address`.
    pub fn open(address: PciAddress) -> Result<Self> {
        Self::open_in(Path::new(SYS_BUS_PCI_DEVICES), address)
    }

    /// The device at `address`, listed under `devices` (normally [`SYS_BUS_PCI_DEVICES`]).
    pub fn open_in(devices: &Path, address: PciAddress) -> Result<Self> {
        let sys_path = devices.join(address.to_string());
        if let Err(e) = std::fs::metadata(&sys_path) {
            return Err(crate::uio::missing_sysfs_entry("open PCI device", &sys_path, &e, "no such PCI device"));
        }
        let hex = |name: &str| -> Result<u64> {
            let path = sys_path.join(name);
            let text = read_attr(&path)?;
            parse_hex(&text)
                .ok_or_else(|| Error::new("parse", ErrorKind::Parse).with_path(&path).with_detail(format!("{text:?}")))
        };
        let id = PciId { vendor: hex("vendor")? as u16, device: hex("device")? as u16 };
        let class = hex("class").unwrap_or(0) as u32;
        Ok(PciDevice { address, id, class, sys_path })
    }

    /// The first device (in address order) with ID `id`.
    pub fn find(id: PciId) -> Result<Self> {
        Self::find_in(Path::new(SYS_BUS_PCI_DEVICES), id)
    }

    /// The first device with ID `id` under `devices`.
    pub fn find_in(devices: &Path, id: PciId) -> Result<Self> {
        list_in(devices)?.into_iter().find(|d| d.id == id).ok_or_else(|| {
            Error::new("find PCI device", ErrorKind::NotFound)
                .with_target(id.to_string())
                .with_detail(format!("no PCI device {id}"))
        })
    }

    /// The device a user named by address or ID.
    pub fn select(selector: PciSelector) -> Result<Self> {
        match selector {
            PciSelector::Address(a) => Self::open(a),
            PciSelector::Id(id) => Self::find(id),
        }
    }

    /// The device's address.
    pub fn address(&self) -> PciAddress {
        self.address
    }

    /// The device's vendor and device ID.
    pub fn id(&self) -> PciId {
        self.id
    }

    /// The class code (`0xCCSSPP`).
    pub fn class(&self) -> u32 {
        self.class
    }

    /// Its sysfs directory.
    pub fn sys_path(&self) -> &Path {
        &self.sys_path
    }

    /// The bound driver's name, if any.
    pub fn driver(&self) -> Option<String> {
        let link = std::fs::read_link(self.sys_path.join("driver")).ok()?;
        Some(link.file_name()?.to_string_lossy().into_owned())
    }

    /// The resources (BARs 0-5, then the ROM and bridge windows).
    pub fn resources(&self) -> Result<Vec<PciResource>> {
        let path = self.sys_path.join("resource");
        parse_pci_resources(&read_attr(&path)?).map_err(|e| e.with_path(&path))
    }

    /// Enables the device (`echo 1 > enable`): memory decoding on, so BARs answer. Nothing to
    /// do when it is already enabled (the kernel answers `EBUSY` when a driver is bound).
    pub fn enable(&self) -> Result<()> {
        if self.is_enabled()? {
            return Ok(());
        }
        let path = self.sys_path.join("enable");
        std::fs::write(&path, "1").map_err(|e| Error::io("enable PCI device", &e).with_path(&path))
    }

    /// Whether the device is enabled.
    pub fn is_enabled(&self) -> Result<bool> {
        let path = self.sys_path.join("enable");
        Ok(read_attr(&path)?.trim() != "0")
    }

    /// Memory BAR `bar` as the `resource` file lists it; an I/O port BAR, an unassigned one
    /// or a number past 5 is an error naming `path`.
    pub fn memory_bar(&self, bar: usize) -> Result<PciResource> {
        let path = self.sys_path.join(format!("resource{bar}"));
        let resources = self.resources()?;
        let res = resources.get(bar).filter(|_| bar < 6).copied().unwrap_or_default();
        if !res.is_memory() {
            let what = if res.is_io() { "an I/O port BAR (not mappable)" } else { "not an assigned memory BAR" };
            let kind = if res.is_io() { ErrorKind::Unsupported } else { ErrorKind::NotFound };
            return Err(Error::new("mmap", kind)
                .with_path(&path)
                .with_target(format!("(BAR{bar})"))
                .with_detail(format!("BAR{bar} of {} is {what}", self.address)));
        }
        Ok(res)
    }

    /// The device and memory BAR that contain physical address `phys` (e.g. an address given
    /// to `/dev/mem`), searched among the devices under `devices`; `None` when no BAR does.
    pub fn with_bar_containing_in(devices: &Path, phys: u64) -> Result<Option<(PciDevice, usize, PciResource)>> {
        for dev in list_in(devices)? {
            let Ok(resources) = dev.resources() else { continue };
            let found = resources.iter().take(6).position(|r| r.is_memory() && r.start <= phys && phys <= r.end);
            if let Some(bar) = found {
                let res = resources[bar];
                return Ok(Some((dev, bar, res)));
            }
        }
        Ok(None)
    }

    /// [`PciDevice::with_bar_containing_in`] on this machine's devices.
    pub fn with_bar_containing(phys: u64) -> Result<Option<(PciDevice, usize, PciResource)>> {
        Self::with_bar_containing_in(Path::new(SYS_BUS_PCI_DEVICES), phys)
    }

    /// Maps memory BAR `bar` through `resourceN` (uncached), with the device's width rules.
    ///
    /// The region is exactly the BAR: a BAR smaller than a page (16 or 256 bytes of
    /// registers) is mapped as the whole page the kernel maps, and every access past the
    /// BAR's size is an [`ErrorKind::OutOfBounds`] error (on real hardware the rest of that
    /// page may be another device's registers).
    #[doc(alias = "mmap")]
    pub fn map_bar(&self, bar: usize) -> Result<MmioRegion> {
        self.map_bar_file(bar, false)
    }

    /// Maps prefetchable memory BAR `bar` write-combining, through `resourceN_wc`: stores may
    /// be merged and reordered into bursts until a [`fence`](crate::fence) (frame buffers,
    /// descriptor rings, apertures). A BAR that is not prefetchable is an
    /// [`ErrorKind::Unsupported`] error (the kernel only offers `_wc` for prefetchable BARs);
    /// a kernel or architecture without write-combining mappings (no `resourceN_wc`) is an
    /// [`ErrorKind::NotFound`] error that says so.
    #[doc(alias = "resource_wc")]
    pub fn map_bar_wc(&self, bar: usize) -> Result<MmioRegion> {
        self.map_bar_file(bar, true)
    }

    fn map_bar_file(&self, bar: usize, wc: bool) -> Result<MmioRegion> {
        let res = self.memory_bar(bar)?;
        let suffix = if wc { "_wc" } else { "" };
        let path = self.sys_path.join(format!("resource{bar}{suffix}"));
        let target = format!("(BAR{bar}{})", if wc { ", write-combining" } else { "" });
        if wc && !res.is_prefetchable() {
            return Err(Error::new("mmap", ErrorKind::Unsupported).with_path(&path).with_detail(format!(
                "BAR{bar} of {} is not prefetchable: write-combining is only offered for prefetchable BARs \
                 (map it uncached instead)",
                self.address
            )));
        }
        let page = crate::page_size();
        let too_big = || {
            Error::new("mmap", ErrorKind::InvalidArgument)
                .with_path(&path)
                .with_range(res.start, res.size())
                .with_detail(format!("BAR{bar} of {} is larger than the address space", self.address))
        };
        let len = usize::try_from(res.size()).map_err(|_| too_big())?;
        let map_len = len.checked_next_multiple_of(page).ok_or_else(too_big)?;
        // The devices directory is the caller's (`open_in`): `resourceN` may be a device node
        // (whose open alone can act: a watchdog) or a FIFO. sysfs's are regular files: mmkit's
        // checked open looks before it opens, and opens only those.
        let file = mmkit::open::open_regular_read_write(&path).map_err(|e| {
            let err = crate::uio::checked_open_error("open", &path, &e).with_target(target.clone());
            if e.errno() != Some(rustix::io::Errno::NOENT.raw_os_error()) {
                err
            } else if wc {
                err.with_detail("this kernel offers no write-combining mapping of the BAR (PAT off?)")
            } else {
                // The `resource` file lists the BAR, but sysfs has no file to map it by (as for
                // the virtio devices of some VMs): say so, not only "no such file".
                err.with_detail(format!(
                    "no resource{bar} file: {} lists BAR{bar} at {:#x} ({:#x} bytes), but the kernel \
                     offers no sysfs mapping of it",
                    self.sys_path.join("resource").display(),
                    res.start,
                    res.size()
                ))
            }
        })?;
        map_shared(
            std::os::fd::AsFd::as_fd(&file),
            MapRequest {
                path: &path,
                target: Some(target),
                mmap_offset: 0,
                map_len,
                start: 0,
                len,
                rules: AccessRules::for_pci_bar(self.id.vendor, self.id.device, bar),
                phys: Some(res.start),
            },
        )
    }

    fn config_file(&self, write: bool) -> Result<(File, PathBuf)> {
        let path = self.sys_path.join("config");
        // The devices directory is the caller's (`open_in`): `config` may be a FIFO (a read-only
        // open would block forever) or a device node (whose open alone can act: a watchdog, a
        // tape). mmkit's checked open looks before it opens, and opens only a regular file.
        let opened = if write { mmkit::open::open_regular_read_write(&path) } else { mmkit::open::open_regular(&path) };
        let file = opened.map_err(|e| crate::uio::checked_open_error("open", &path, &e))?;
        Ok((file, path))
    }

    /// Reads `width` bits of configuration space at `offset` (little-endian).
    pub fn config_read(&self, offset: u64, width: Width) -> Result<u64> {
        let (file, path) = self.config_file(false)?;
        let mut buf = [0u8; 8];
        file.read_exact_at(&mut buf[..width.bytes()], offset).map_err(|e| {
            let err = Error::io("read config space of", &e).with_path(&path).with_range(offset, width.bytes() as u64);
            if e.kind() != std::io::ErrorKind::UnexpectedEof {
                return err;
            }
            // A short read: past the end of configuration space, or past the 64 bytes of the
            // standard header that the kernel gives a reader without CAP_SYS_ADMIN.
            let size = file.metadata().map_or(0, |m| m.len());
            Error::new("read config space of", ErrorKind::OutOfBounds)
                .with_path(&path)
                .with_range(offset, width.bytes() as u64)
                .with_detail(format!(
                    "configuration space is {size:#x} bytes; without CAP_SYS_ADMIN the kernel reads only its first \
                     0x40"
                ))
        })?;
        Ok(u64::from_le_bytes(buf))
    }

    /// Writes `value` as `width` bits to configuration space at `offset` (little-endian). A
    /// `value` wider than `width` is an [`ErrorKind::InvalidArgument`] error, not a truncation.
    pub fn config_write(&self, offset: u64, width: Width, value: u64) -> Result<()> {
        let (file, path) = self.config_file(true)?;
        let err = |e: &std::io::Error| {
            Error::io("write config space of", e).with_path(&path).with_range(offset, width.bytes() as u64)
        };
        if value > width.max_value() {
            return Err(Error::new("write config space of", ErrorKind::InvalidArgument)
                .with_path(&path)
                .with_detail(format!("value {value:#x} does not fit in {width}")));
        }
        file.write_all_at(&value.to_le_bytes()[..width.bytes()], offset).map_err(|e| err(&e))
    }

    /// Reads a byte of configuration space.
    pub fn config_read_u8(&self, offset: u64) -> Result<u8> {
        self.config_read(offset, Width::W8).map(|v| v as u8)
    }

    /// Reads 16 bits of configuration space.
    pub fn config_read_u16(&self, offset: u64) -> Result<u16> {
        self.config_read(offset, Width::W16).map(|v| v as u16)
    }

    /// Reads 32 bits of configuration space.
    pub fn config_read_u32(&self, offset: u64) -> Result<u32> {
        self.config_read(offset, Width::W32).map(|v| v as u32)
    }

    /// Writes a byte of configuration space.
    pub fn config_write_u8(&self, offset: u64, value: u8) -> Result<()> {
        self.config_write(offset, Width::W8, value.into())
    }

    /// Writes 16 bits of configuration space.
    pub fn config_write_u16(&self, offset: u64, value: u16) -> Result<()> {
        self.config_write(offset, Width::W16, value.into())
    }

    /// Writes 32 bits of configuration space.
    pub fn config_write_u32(&self, offset: u64, value: u32) -> Result<()> {
        self.config_write(offset, Width::W32, value.into())
    }

    /// The command register.
    pub fn command(&self) -> Result<u16> {
        self.config_read_u16(PCI_COMMAND)
    }

    /// Sets or clears the INTx-disable bit of the command register (read-modify-write).
    pub fn set_intx_disabled(&self, disabled: bool) -> Result<()> {
        let cmd = self.command()?;
        let new = if disabled { cmd | PCI_COMMAND_INTX_DISABLE } else { cmd & !PCI_COMMAND_INTX_DISABLE };
        if new != cmd {
            self.config_write_u16(PCI_COMMAND, new)?;
        }
        Ok(())
    }
}

/// Lists the PCI devices under `devices` (normally [`SYS_BUS_PCI_DEVICES`]) in address order;
/// one device that cannot be read fails the listing (see [`scan_in`] to list the others).
pub fn list_in(devices: &Path) -> Result<Vec<PciDevice>> {
    scan_in(devices)?.into_iter().map(|(_, device)| device).collect()
}

/// Lists the PCI devices under `devices` (normally [`SYS_BUS_PCI_DEVICES`]) in address order,
/// each with what reading its sysfs directory answered: a device whose `vendor` or `device`
/// cannot be read (unreadable, not a file, garbled) is its own error, not the listing's. Only
/// an unreadable `devices` directory fails the whole scan.
pub fn scan_in(devices: &Path) -> Result<Vec<(PciAddress, Result<PciDevice>)>> {
    let mut found = Vec::new();
    for name in crate::uio::entry_names(devices)? {
        let Some(address) = name.to_str().and_then(|n| n.parse::<PciAddress>().ok()) else {
            continue;
        };
        match PciDevice::open_in(devices, address) {
            Ok(device) => found.push((address, Ok(device))),
            // Removed since the directory was read (hot-unplug, a VF torn down): not listed, and
            // no reason to fail the listing of the others.
            Err(_) if !devices.join(&name).exists() => {}
            Err(e) => found.push((address, Err(e))),
        }
    }
    found.sort_by_key(|(address, _)| *address);
    Ok(found)
}

/// [`scan_in`] on this machine's devices.
pub fn scan() -> Result<Vec<(PciAddress, Result<PciDevice>)>> {
    scan_in(Path::new(SYS_BUS_PCI_DEVICES))
}

/// Lists the PCI devices of this machine.
pub fn list() -> Result<Vec<PciDevice>> {
    list_in(Path::new(SYS_BUS_PCI_DEVICES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_devices() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (addr, vendor, device) in [("0000:00:04.0", "0x1234", "0x11e8"), ("0000:00:01.0", "0x8086", "0x7000")] {
            let d = root.path().join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            fs::write(d.join("device"), format!("{device}\n")).unwrap();
            fs::write(d.join("class"), "0x00ff00\n").unwrap();
            fs::write(
                d.join("resource"),
                "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n\
                 0x000000000000c000 0x000000000000c01f 0x0000000000040101\n\
                 0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
            )
            .unwrap();
            let mut config = vec![0u8; 256];
            config[4] = 0x03;
            config[5] = 0x04; // INTx disabled
            fs::write(d.join("config"), config).unwrap();
        }
        root
    }

    #[test]
    fn lists_finds_and_reads_resources() {
        let root = fake_devices();
        let all = list_in(root.path()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].address().to_string(), "0000:00:01.0");
        let edu = PciDevice::find_in(root.path(), PciId::EDU).unwrap();
        assert_eq!(edu.address().to_string(), "0000:00:04.0");
        assert_eq!(edu.class(), 0xff00);
        let r = edu.resources().unwrap();
        assert!(r[0].is_memory() && r[1].is_io());
        let err = PciDevice::find_in(root.path(), PciId { vendor: 1, device: 2 }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        // Regression: a missing device's error had no errno ("… failed: no such PCI device").
        let err = PciDevice::open_in(root.path(), "0000:00:1f.7".parse().unwrap()).unwrap_err();
        assert_eq!((err.kind(), err.errno()), (ErrorKind::NotFound, Some(libc::ENOENT)), "{err}");
        assert!(err.to_string().ends_with("failed: No such file or directory (ENOENT); no such PCI device"), "{err}");
    }

    #[test]
    fn io_and_missing_bars_are_refused_before_mapping() {
        let root = fake_devices();
        let edu = PciDevice::find_in(root.path(), PciId::EDU).unwrap();
        assert_eq!(edu.map_bar(1).unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(edu.map_bar(2).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(edu.map_bar(9).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn config_space_and_intx_bit() {
        let root = fake_devices();
        let edu = PciDevice::find_in(root.path(), PciId::EDU).unwrap();
        assert_eq!(edu.command().unwrap(), 0x0403);
        edu.set_intx_disabled(false).unwrap();
        assert_eq!(edu.command().unwrap(), 0x0003);
        edu.set_intx_disabled(true).unwrap();
        assert_eq!(edu.command().unwrap(), 0x0403);
        edu.config_write_u32(0x40, 0xdead_beef).unwrap();
        assert_eq!(edu.config_read_u32(0x40).unwrap(), 0xdead_beef);
        assert_eq!(edu.config_read_u8(0x41).unwrap(), 0xbe);
        assert_eq!(edu.config_write(0x40, Width::W8, 0x100).unwrap_err().kind(), ErrorKind::InvalidArgument);
    }
}

#[cfg(test)]
mod bar_tests {
    use super::*;
    use std::fs;

    /// An ivshmem-like device: a 256-byte BAR0 and a 1 MiB prefetchable 64-bit BAR2, with
    /// sealed memfds standing in for sysfs `resourceN` (whose size is the BAR's, as sysfs
    /// reports it). The memfds stay open for the life of the test process.
    fn fake_ivshmem(with_wc: bool) -> (tempfile::TempDir, PciDevice) {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("0000:00:05.0");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), "0x1af4\n").unwrap();
        fs::write(d.join("device"), "0x1110\n").unwrap();
        fs::write(
            d.join("resource"),
            "0x00000000feb00000 0x00000000feb000ff 0x0000000000040200\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
             0x0000004000000000 0x00000040000fffff 0x000000000014220c\n",
        )
        .unwrap();
        let regs: Vec<u8> = (0..0x100u32).map(|i| i as u8).collect();
        let bar0 = crate::test_support::sealed_stand_in(&d.join("resource0"), &regs);
        let bar2 = crate::test_support::sealed_stand_in(&d.join("resource2"), &vec![0u8; 0x10_0000]);
        if with_wc {
            fs::hard_link(d.join("resource2"), d.join("resource2_wc")).unwrap();
        }
        std::mem::forget((bar0, bar2));
        let dev = PciDevice::find_in(root.path(), PciId::IVSHMEM).unwrap();
        (root, dev)
    }

    #[test]
    fn finds_the_bar_containing_a_physical_address() {
        let (root, _dev) = fake_ivshmem(false);
        let (dev, bar, res) = PciDevice::with_bar_containing_in(root.path(), 0xfeb0_00ff).unwrap().unwrap();
        assert_eq!((dev.id(), bar, res.size()), (PciId::IVSHMEM, 0, 0x100));
        let (_, bar, _) = PciDevice::with_bar_containing_in(root.path(), 0x40_0000_0000).unwrap().unwrap();
        assert_eq!(bar, 2);
        assert!(PciDevice::with_bar_containing_in(root.path(), 0xfeb0_0100).unwrap().is_none());
    }

    #[test]
    fn a_sub_page_bar_maps_and_is_bounded_at_its_size() {
        let (_root, dev) = fake_ivshmem(false);
        let bar0 = dev.map_bar(0).unwrap();
        assert_eq!(bar0.len(), 0x100);
        assert_eq!(bar0.read_u32(0xfc).unwrap(), u32::from_le_bytes([0xfc, 0xfd, 0xfe, 0xff]));
        let err = bar0.read_u32(0x100).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
        assert!(err.to_string().contains("0x100-byte region"), "{err}");
        // ivshmem's registers are 32-bit.
        assert_eq!(bar0.read_u8(0).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
        assert!(bar0.rules().is_known());
    }

    #[test]
    fn write_combining_needs_a_prefetchable_bar_and_resource_wc() {
        let (_root, dev) = fake_ivshmem(true);
        let err = dev.map_bar_wc(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("BAR0 of 0000:00:05.0 is not prefetchable"), "{err}");
        assert!(err.to_string().contains("resource0_wc"), "{err}");
        let wc = dev.map_bar_wc(2).unwrap();
        assert_eq!(wc.len(), 0x10_0000);
        assert!(wc.path().ends_with("resource2_wc"));
        assert!(wc.source().contains("write-combining"), "{}", wc.source());
        // (32-bit targets refuse 64-bit accesses: two 32-bit halves there.)
        let (lo, hi) = (0x89ab_cdef_u32, 0x0123_4567_u32);
        wc.write_u32(0xf_fff8, lo).unwrap();
        wc.write_u32(0xf_fffc, hi).unwrap();
        assert_eq!(wc.read_u8(0xf_fff8).unwrap(), 0xef);
        assert_eq!(wc.read_u8(0x10_0000).unwrap_err().kind(), ErrorKind::OutOfBounds);
        // Through the uncached file: the same bytes.
        let uc = dev.map_bar(2).unwrap();
        assert_eq!((uc.read_u32(0xf_fff8).unwrap(), uc.read_u32(0xf_fffc).unwrap()), (lo, hi));

        let (_root, dev) = fake_ivshmem(false);
        let err = dev.map_bar_wc(2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("no write-combining"), "{err}");
    }
}
