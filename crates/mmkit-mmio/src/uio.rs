//! UIO devices: `/dev/uioN` with its maps described under `/sys/class/uio/uioN/`.
//!
//! A UIO driver (`uio_pci_generic`, `uio_pdrv_genirq`, or one of the many board drivers)
//! exports a device's register regions as *maps* and its interrupt as a counter read from
//! `/dev/uioN`. Map `N` is mapped at `mmap` offset `N * page_size`; the device memory starts
//! `offset` bytes into the mapping (the map's `offset` attribute), which this module applies.
#![deny(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::access::AccessRules;
use crate::error::{Error, ErrorKind, Result};
use crate::pci::PciDevice;
use crate::region::{map_shared, MapRequest, MmioRegion};
use crate::sysfs::{parse_hex, parse_number, parse_pci_resources, PciAddress, PciId, PciResource, UioMapInfo};

/// Where UIO devices are described.
pub const SYS_CLASS_UIO: &str = "/sys/class/uio";

/// The most bytes an attribute may hold: a sysfs text attribute is at most a page, and the
/// largest read here (a PCI device's `resource` file) is about a kilobyte.
const MAX_ATTR_BYTES: u64 = 64 * 1024;

/// Reads a sysfs attribute as text.
///
/// Sources take the sysfs root from the caller (`open_in`, `open_at`, `list_in`), so an
/// attribute may be anything: only a regular file is read (a FIFO would block the `open`
/// forever, a device such as `/dev/zero` would never end), and at most [`MAX_ATTR_BYTES`].
pub(crate) fn read_attr(path: &Path) -> Result<String> {
    let file = mmkit::open::open_regular(path).map_err(|e| checked_open_error("read", path, &e))?;
    let mut text = String::new();
    file.take(MAX_ATTR_BYTES + 1).read_to_string(&mut text).map_err(|e| Error::io("read", &e).with_path(path))?;
    if text.len() as u64 > MAX_ATTR_BYTES {
        return Err(Error::new("read", ErrorKind::InvalidArgument)
            .with_path(path)
            .with_detail(format!("more than {MAX_ATTR_BYTES} bytes: not a sysfs attribute")));
    }
    Ok(text)
}

/// The error for a sysfs entry `path` that `stat` refused with `e`, as operation `op`: its errno,
/// and `missing` (what its absence means) when it does not exist (`ENOENT`, `ENOTDIR`), always
/// [`ErrorKind::NotFound`] then.
pub(crate) fn missing_sysfs_entry(op: &'static str, path: &Path, e: &std::io::Error, missing: &str) -> Error {
    match e.raw_os_error() {
        Some(n @ (libc::ENOENT | libc::ENOTDIR)) => {
            let mut err = Error::from_raw_errno(op, n).with_path(path).with_detail(missing);
            err.set_kind(ErrorKind::NotFound);
            err
        }
        _ => Error::io(op, e).with_path(path),
    }
}

/// This crate's error for a refused [`mmkit::open`] of `path` (a FIFO, device or socket in place
/// of a sysfs file, or the `open`'s errno), as operation `op`.
pub(crate) fn checked_open_error(op: &'static str, path: &Path, e: &mmkit::Error) -> Error {
    match e.errno() {
        Some(n) => Error::from_raw_errno(op, n),
        None => {
            Error::new(op, ErrorKind::InvalidArgument).with_detail(e.detail().unwrap_or("not a sysfs file").to_owned())
        }
    }
    .with_path(path)
}

/// What sysfs says about one UIO device, read without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioInfo {
    /// The `N` of `uioN`.
    pub number: u32,
    /// The driver-given name (`uio_pci_generic` for PCI devices bound to it).
    pub name: String,
    /// The driver version string.
    pub version: String,
    /// Interrupts counted so far.
    pub event_count: u32,
    /// The memory maps, by index.
    pub maps: Vec<UioMapInfo>,
    /// The PCI device behind it, when it is one: its address and ID.
    pub pci: Option<(PciAddress, PciId)>,
}

impl UioInfo {
    /// Reads `dir` (a `/sys/class/uio/uioN` directory) for device number `number`.
    pub fn read(dir: &Path, number: u32) -> Result<Self> {
        let attr = |name: &str| read_attr(&dir.join(name));
        let maps = read_maps(&dir.join("maps"))?;
        let event_count = attr("event").ok().and_then(|t| parse_number(&t)).unwrap_or(0) as u32;
        let pci = read_pci_link(&dir.join("device"));
        Ok(UioInfo {
            number,
            name: attr("name")?.trim().to_owned(),
            version: attr("version").map(|v| v.trim().to_owned()).unwrap_or_default(),
            event_count,
            maps,
            pci,
        })
    }

    /// The width rules of the device behind this UIO (known PCI devices), else any width.
    pub fn rules(&self) -> AccessRules {
        match self.pci {
            Some((_, id)) => AccessRules::for_pci_id(id.vendor, id.device),
            None => AccessRules::any(),
        }
    }
}

/// The names in sysfs directory `dir` (none when it does not exist), read before anything
/// else is opened: the directory is closed when this returns. Reading each entry takes
/// descriptors of its own, and under a low `RLIMIT_NOFILE` a directory held open (a `ReadDir`,
/// or a `DirEntry`) made every entry unreadable (EMFILE).
pub(crate) fn entry_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &e).with_path(dir)),
    };
    entries.map(|entry| entry.map(|e| e.file_name()).map_err(|e| Error::io("list", &e).with_path(dir))).collect()
}

fn read_maps(dir: &Path) -> Result<Vec<UioMapInfo>> {
    let mut maps = Vec::new();
    for file_name in entry_names(dir)? {
        let Some(index) = file_name.to_str().and_then(|n| n.strip_prefix("map")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        let map_dir = dir.join(&file_name);
        let attr = |name: &str| read_attr(&map_dir.join(name));
        let name = attr("name").unwrap_or_default();
        let offset = attr("offset").ok();
        let info = UioMapInfo::parse(index, &name, &attr("addr")?, &attr("size")?, offset.as_deref())
            .map_err(|e| e.with_path(&map_dir))?;
        maps.push(info);
    }
    maps.sort_by_key(|m| m.index);
    Ok(maps)
}

/// The PCI address and ID of the device behind a `device` link, if it is a PCI device.
fn read_pci_link(device: &Path) -> Option<(PciAddress, PciId)> {
    let target = std::fs::canonicalize(device).ok()?;
    let address: PciAddress = target.file_name()?.to_str()?.parse().ok()?;
    let id = |name: &str| read_attr(&target.join(name)).ok().and_then(|t| parse_hex(&t)).map(|v| v as u16);
    Some((address, PciId { vendor: id("vendor")?, device: id("device")? }))
}

/// Lists the UIO devices under `dir` (normally [`SYS_CLASS_UIO`]), by number; one device that
/// cannot be read fails the listing (see [`scan_in`] to list the others).
pub fn list_in(dir: &Path) -> Result<Vec<UioInfo>> {
    scan_in(dir)?.into_iter().map(|(_, info)| info).collect()
}

/// The UIO devices under `dir` (normally [`SYS_CLASS_UIO`]) in number order, each with what
/// reading its sysfs directory answered: a device whose attributes or maps cannot be read is
/// its own error, not the listing's. Only an unreadable `dir` fails the whole scan.
pub fn scan_in(dir: &Path) -> Result<Vec<(u32, Result<UioInfo>)>> {
    let mut devices = Vec::new();
    for name in entry_names(dir)? {
        let Some(number) = name.to_str().and_then(|n| n.strip_prefix("uio")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        let path = dir.join(&name);
        match UioInfo::read(&path, number) {
            Ok(info) => devices.push((number, Ok(info))),
            // Unregistered since the directory was read (its driver unbound): not listed.
            Err(_) if !path.exists() => {}
            Err(e) => devices.push((number, Err(e))),
        }
    }
    devices.sort_by_key(|(number, _)| *number);
    Ok(devices)
}

/// How [`Uio::enable_irq`] enabled the interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqEnable {
    /// The driver's `irqcontrol`: a 4-byte write of 1 to `/dev/uioN`.
    IrqControl,
    /// The driver has no `irqcontrol` (`ENOSYS`, as `uio_pci_generic`): the INTx-disable bit
    /// (bit 10) of the PCI command register was cleared through config space.
    PciCommand,
}

/// One interrupt (or more) observed by [`Uio::wait_irq`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqEvent {
    /// The driver's interrupt count after this wait.
    pub count: u32,
    /// Interrupts that happened since the previous wait beyond the one reported (0 when none
    /// were missed).
    pub missed: u32,
}

/// An open UIO device: maps its memory regions and waits for its interrupts.
///
/// ```no_run
/// use std::time::Duration;
/// # fn main() -> Result<(), mmkit_mmio::Error> {
/// let mut uio = mmkit_mmio::Uio::find_pci("1234:11e8".parse()?)?;
/// let regs = uio.map(0)?;                       // BAR0 of the edu device
/// uio.enable_irq()?;
/// regs.write_u32(0x60, 1)?;                     // raise an interrupt
/// let irq = uio.wait_irq(Some(Duration::from_secs(1)))?;
/// regs.write_u32(0x64, 1)?;                     // acknowledge it
/// println!("interrupt #{} ({} missed)", irq.count, irq.missed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Uio {
    info: UioInfo,
    sys_path: PathBuf,
    dev_path: PathBuf,
    file: File,
    last_count: u32,
    /// The node is a regular file standing in for the device's memory (a test's fake tree):
    /// it has no interrupt, and interrupt calls refuse it.
    stand_in: bool,
}

impl Uio {
    /// Opens `/dev/uioN`.
    pub fn open(number: u32) -> Result<Self> {
        Self::open_at(Path::new(SYS_CLASS_UIO), Path::new("/dev"), number)
    }

    /// Opens device `number` described under `sys_class_uio` with its node in `dev`.
    ///
    /// The node must be the device sysfs describes: a character device of class `uio` (this
    /// machine's `/sys/dev/char/MAJOR:MINOR/subsystem`) whose number is the one in
    /// `sys_class_uio/uioN/dev` (checked before the `open`, which for some drivers has effects,
    /// and again on what was opened). Anything else is an
    /// [`ErrorKind::InvalidArgument`] error naming the node and what it is: `/dev/zero`, a
    /// FIFO, a socket, a directory (its interrupt count would be garbage, or a wait would
    /// block). A regular file is accepted as a stand-in for the device's memory, as a fake
    /// sysfs tree in tests has it: it maps, but it has no interrupt, and
    /// [`wait_irq`](Self::wait_irq), [`enable_irq`](Self::enable_irq) and
    /// [`disable_irq`](Self::disable_irq) refuse it.
    ///
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let uio0 = root.path().join("class/uio0");
    /// # std::fs::create_dir_all(&uio0).unwrap();
    /// # std::fs::write(uio0.join("name"), "fake\n").unwrap();
    /// # std::fs::write(uio0.join("dev"), "240:0\n").unwrap();
    /// # std::fs::create_dir(root.path().join("dev")).unwrap();
    /// // /dev/zero (1:5) given as the node of uio0 (240:0): refused, not read as a count.
    /// std::os::unix::fs::symlink("/dev/zero", root.path().join("dev/uio0")).unwrap();
    /// let e = mmkit_mmio::Uio::open_at(&root.path().join("class"), &root.path().join("dev"), 0).unwrap_err();
    /// assert_eq!(e.kind(), mmkit_mmio::ErrorKind::InvalidArgument);
    /// assert!(e.to_string().contains("not a UIO device: character device 1:5 (class mem)"), "{e}");
    /// ```
    pub fn open_at(sys_class_uio: &Path, dev: &Path, number: u32) -> Result<Self> {
        let sys_path = sys_class_uio.join(format!("uio{number}"));
        if let Err(e) = std::fs::metadata(&sys_path) {
            let why = format!("no UIO device uio{number} (is a UIO driver bound?)");
            return Err(missing_sysfs_entry("open", &sys_path, &e, &why));
        }
        // Read the count before opening: interrupts after this point are seen by the wait.
        let info = UioInfo::read(&sys_path, number)?;
        let dev_path = dev.join(format!("uio{number}"));
        // What the node is, before opening it (opening a device may act: a watchdog starts),
        // then again on the open file (the path may have been replaced meanwhile).
        let before = std::fs::metadata(&dev_path).map_err(|e| Error::io("open", &e).with_path(&dev_path))?;
        let stand_in = check_node(&sys_path, &dev_path, number, &before)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&dev_path)
            .map_err(|e| Error::io("open", &e).with_path(&dev_path))?;
        let after = file.metadata().map_err(|e| Error::io("fstat", &e).with_path(&dev_path))?;
        if (after.dev(), after.ino(), after.rdev()) != (before.dev(), before.ino(), before.rdev()) {
            return Err(Error::new("open", ErrorKind::InvalidArgument)
                .with_path(&dev_path)
                .with_detail("the node was replaced while it was opened"));
        }
        // Blocking again: `wait_irq` polls, then reads the count.
        let mut flags = rustix::fs::fcntl_getfl(&file).map_err(|e| Error::os("fcntl", e).with_path(&dev_path))?;
        flags.remove(rustix::fs::OFlags::NONBLOCK);
        rustix::fs::fcntl_setfl(&file, flags).map_err(|e| Error::os("fcntl", e).with_path(&dev_path))?;
        Ok(Uio { last_count: info.event_count, info, sys_path, dev_path, file, stand_in })
    }

    /// Refuses an interrupt call `op` on a regular file standing in for the device.
    fn has_interrupt(&self, op: &'static str) -> Result<()> {
        if self.stand_in {
            return Err(Error::new(op, ErrorKind::InvalidArgument)
                .with_path(&self.dev_path)
                .with_detail("not a UIO device: a regular file stands in for its memory, and has no interrupt"));
        }
        Ok(())
    }

    /// Opens the first UIO device whose driver-given name is `name`.
    pub fn find(name: &str) -> Result<Self> {
        let devices = list()?;
        let found = devices.iter().find(|d| d.name == name).ok_or_else(|| {
            Error::new("find UIO device", ErrorKind::NotFound)
                .with_target(name)
                .with_detail(format!("no UIO device named {name:?} (found: {})", names(&devices)))
        })?;
        Self::open(found.number)
    }

    /// Opens the first UIO device backed by the PCI device `id` (e.g. `1234:11e8`).
    pub fn find_pci(id: PciId) -> Result<Self> {
        let devices = list()?;
        let found = devices.iter().find(|d| d.pci.is_some_and(|(_, i)| i == id)).ok_or_else(|| {
            Error::new("find UIO device for", ErrorKind::NotFound)
                .with_target(format!("PCI {id}"))
                .with_detail(format!("no UIO device is bound to PCI {id} (found: {})", names(&devices)))
        })?;
        Self::open(found.number)
    }

    /// What sysfs said about the device when it was opened.
    pub fn info(&self) -> &UioInfo {
        &self.info
    }

    /// The device node, `/dev/uioN`.
    pub fn path(&self) -> &Path {
        &self.dev_path
    }

    /// The maps the device exports.
    pub fn maps(&self) -> &[UioMapInfo] {
        &self.info.maps
    }

    /// Maps region `index` with the device's width rules (known PCI devices such as edu get
    /// theirs; others accept any width).
    #[doc(alias = "mmap")]
    pub fn map(&self, index: usize) -> Result<MmioRegion> {
        let page = crate::page_size();
        let target = format!("map{index}");
        let info = self.info.maps.iter().find(|m| m.index == index).ok_or_else(|| {
            Error::new("mmap", ErrorKind::NotFound).with_path(&self.dev_path).with_target(&target).with_detail(format!(
                "uio{} has {} map(s)",
                self.info.number,
                self.info.maps.len()
            ))
        })?;
        let bad = || {
            Error::new("mmap", ErrorKind::InvalidArgument).with_path(&self.dev_path).with_target(&target).with_detail(
                format!(
                    "map attributes do not describe a mappable window: addr {:#x}, size {:#x}, offset {:#x}",
                    info.addr, info.size, info.offset
                ),
            )
        };
        let map_len = info.mmap_len(page).ok_or_else(bad)?;
        let (start, len) = info.window(page).ok_or_else(bad)?;
        // Absurd attributes (an address at the top of the address space, an index past what
        // an `mmap` offset can express) are refused, not wrapped.
        let phys = info.addr.checked_add(info.offset % page as u64).ok_or_else(bad)?;
        let mmap_offset = (index as u64).checked_mul(page as u64).ok_or_else(bad)?;
        // uio_pci_generic rounds a BAR's map up to whole pages; the device's true size is the
        // BAR's, from the PCI device's `resource` file.
        let (len, rules) = match self.pci_bar_at(phys) {
            Some((bar, res, id)) => (
                len.min(usize::try_from(res.size()).unwrap_or(usize::MAX)),
                AccessRules::for_pci_bar(id.vendor, id.device, bar),
            ),
            None => (len, self.info.rules()),
        };
        map_shared(
            std::os::fd::AsFd::as_fd(&self.file),
            MapRequest {
                path: &self.dev_path,
                target: Some(target.clone()),
                mmap_offset,
                map_len,
                start,
                len,
                rules,
                phys: Some(phys).filter(|_| self.info.pci.is_some()),
            },
        )
    }

    /// The memory BAR of the PCI device behind this UIO device that starts at physical
    /// address `phys`: its number, its resource line and the device's ID.
    fn pci_bar_at(&self, phys: u64) -> Option<(usize, PciResource, PciId)> {
        let (_, id) = self.info.pci?;
        let device = std::fs::canonicalize(self.sys_path.join("device")).ok()?;
        let text = read_attr(&device.join("resource")).ok()?;
        let resources = parse_pci_resources(&text).ok()?;
        let bar = resources.iter().take(6).position(|r| r.is_memory() && r.start == phys)?;
        Some((bar, resources[bar], id))
    }

    /// The PCI device behind this UIO device (for config space), if it is one.
    pub fn pci_device(&self) -> Result<PciDevice> {
        match self.info.pci {
            Some((address, _)) => PciDevice::open(address),
            None => Err(Error::new("find PCI device of", ErrorKind::NotFound)
                .with_path(&self.dev_path)
                .with_detail("not a PCI device")),
        }
    }

    /// The driver's interrupt count now (the `event` attribute).
    pub fn irq_count(&self) -> Result<u32> {
        let path = self.sys_path.join("event");
        let text = read_attr(&path)?;
        parse_number(&text)
            .map(|n| n as u32)
            .ok_or_else(|| Error::new("parse", ErrorKind::Parse).with_path(&path).with_detail(format!("{text:?}")))
    }

    /// Enables (unmasks) the interrupt: through the driver's `irqcontrol`, or, when the driver
    /// has none (`ENOSYS`, `uio_pci_generic`), by clearing the INTx-disable bit of the PCI
    /// command register. Call it before each wait: drivers mask the interrupt when it fires.
    /// Acknowledge the interrupt at the device first (edu: write its status to `0x64`): a PCI
    /// INTx line is level-triggered, so one the device still asserts fires again as soon as it
    /// is unmasked, and the next [`wait_irq`](Self::wait_irq) returns at once for the same event.
    ///
    /// Wraps a 4-byte [write(2)](https://man7.org/linux/man-pages/man2/write.2.html) of 1 to
    /// `/dev/uioN`, or a `pwrite` of the command register to the device's sysfs `config` file.
    #[doc(alias = "irqcontrol")]
    pub fn enable_irq(&self) -> Result<IrqEnable> {
        self.irq_control(true)
    }

    /// Disables (masks) the interrupt, the same two ways as [`Uio::enable_irq`].
    pub fn disable_irq(&self) -> Result<IrqEnable> {
        self.irq_control(false)
    }

    fn irq_control(&self, enable: bool) -> Result<IrqEnable> {
        let op = if enable { "enable interrupt of" } else { "disable interrupt of" };
        self.has_interrupt(op)?;
        let value = u32::from(enable).to_ne_bytes();
        match (&self.file).write(&value) {
            Ok(4) => Ok(IrqEnable::IrqControl),
            Ok(n) => Err(Error::new(op, ErrorKind::Io)
                .with_path(&self.dev_path)
                .with_detail(format!("short write ({n} bytes)"))),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                let pci = self.pci_device().map_err(|_| {
                    Error::io(op, &e)
                        .with_path(&self.dev_path)
                        .with_detail("the driver has no irqcontrol and the device is not PCI")
                })?;
                pci.set_intx_disabled(!enable)?;
                Ok(IrqEnable::PciCommand)
            }
            Err(e) => Err(Error::io(op, &e).with_path(&self.dev_path)),
        }
    }

    /// Waits for an interrupt, at most `timeout` (`None`: forever), and returns the new count
    /// and how many interrupts were missed since the last wait. Enable the interrupt first
    /// ([`Uio::enable_irq`]). No interrupt in time is an [`ErrorKind::TimedOut`] error.
    ///
    /// Wraps [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html) on `/dev/uioN`, then a
    /// 4-byte `read` of the count (the kernel's
    /// [UIO HOWTO](https://www.kernel.org/doc/html/latest/driver-api/uio-howto.html)).
    #[doc(alias = "poll")]
    pub fn wait_irq(&mut self, timeout: Option<Duration>) -> Result<IrqEvent> {
        self.has_interrupt("wait for interrupt on")?;
        // A timeout past what an `Instant` can hold (`Duration::MAX`) waits forever.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ts =
                remaining.map(|r| rustix::event::Timespec { tv_sec: r.as_secs() as _, tv_nsec: r.subsec_nanos() as _ });
            let mut fds = [rustix::event::PollFd::new(&self.file, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                Ok(0) => {
                    let ms = timeout.unwrap_or_default().as_millis();
                    return Err(Error::new("wait for interrupt on", ErrorKind::TimedOut)
                        .with_path(&self.dev_path)
                        .with_detail(format!("no interrupt within {ms} ms")));
                }
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::os("wait for interrupt on", e).with_path(&self.dev_path)),
            }
        }
        // One `read`: a UIO device answers all 4 bytes at once. Waiting for more of a short
        // answer (`read_exact`) could block past the timeout, forever on a node that is no
        // UIO device (a FIFO holding 1 byte).
        let mut buf = [0u8; 4];
        let n = loop {
            match (&self.file).read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        }
        .map_err(|e| Error::io("read interrupt count of", &e).with_path(&self.dev_path))?;
        if n != buf.len() {
            return Err(Error::new("read interrupt count of", ErrorKind::Io)
                .with_path(&self.dev_path)
                .with_detail(format!("short read ({n} of 4 bytes): not a UIO device?")));
        }
        let count = u32::from_ne_bytes(buf);
        let missed = count.wrapping_sub(self.last_count).saturating_sub(1);
        self.last_count = count;
        Ok(IrqEvent { count, missed })
    }
}

/// Checks that `node` (its `stat`) is UIO device `number` described at `sys_path`: a
/// character device with the number of the `dev` attribute. Returns whether it is a regular
/// file standing in for the device's memory (accepted, without interrupts).
fn check_node(sys_path: &Path, node: &Path, number: u32, st: &std::fs::Metadata) -> Result<bool> {
    let ft = st.file_type();
    if ft.is_file() {
        return Ok(true);
    }
    let refuse = |what: String| Error::new("open", ErrorKind::InvalidArgument).with_path(node).with_detail(what);
    if !ft.is_char_device() {
        return Err(refuse(format!("not a UIO device: {}", mmkit::open::file_type_name(ft))));
    }
    let (major, minor) = (rustix::fs::major(st.rdev()), rustix::fs::minor(st.rdev()));
    // This machine's sysfs says what the device is (as `map` asks it): a UIO device is of class
    // `uio`, whatever tree the caller gave.
    let class = crate::region::char_device_class(major, minor);
    if class.as_deref() != Some("uio") {
        let class = class.map_or_else(|| "no sysfs class".to_owned(), |c| format!("class {c}"));
        return Err(refuse(format!("not a UIO device: character device {major}:{minor} ({class})")));
    }
    let attr = sys_path.join("dev");
    let text = read_attr(&attr).map_err(|e| {
        let why = e.to_string();
        refuse(format!(
            "cannot tell that character device {major}:{minor} is uio{number}: its sysfs number is unreadable ({why})"
        ))
    })?;
    let expected =
        text.trim().split_once(':').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match expected {
        Some(want) if want == (major, minor) => Ok(false),
        Some((a, b)) => {
            Err(refuse(format!("not a UIO device: character device {major}:{minor}, not uio{number} ({a}:{b})")))
        }
        None => Err(refuse(format!(
            "cannot tell that character device {major}:{minor} is uio{number}: {} holds {:?}, not MAJOR:MINOR",
            attr.display(),
            text.trim()
        ))),
    }
}

fn names(devices: &[UioInfo]) -> String {
    if devices.is_empty() {
        return "none".to_owned();
    }
    devices.iter().map(|d| format!("uio{} {:?}", d.number, d.name)).collect::<Vec<_>>().join(", ")
}

/// Lists the UIO devices of this machine (an empty list when there are none).
pub fn list() -> Result<Vec<UioInfo>> {
    list_in(Path::new(SYS_CLASS_UIO))
}

/// [`scan_in`] on this machine's UIO devices.
pub fn scan() -> Result<Vec<(u32, Result<UioInfo>)>> {
    scan_in(Path::new(SYS_CLASS_UIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Builds a sysfs-like tree: /class/uio/uio0 -> a PCI device directory.
    fn fake_sysfs() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let pci = root.path().join("devices/pci0000:00/0000:00:04.0");
        fs::create_dir_all(&pci).unwrap();
        fs::write(pci.join("vendor"), "0x1234\n").unwrap();
        fs::write(pci.join("device"), "0x11e8\n").unwrap();
        let uio = root.path().join("class/uio/uio0");
        let map0 = uio.join("maps/map0");
        fs::create_dir_all(&map0).unwrap();
        fs::write(uio.join("name"), "uio_pci_generic\n").unwrap();
        fs::write(uio.join("version"), "0.01.0\n").unwrap();
        fs::write(uio.join("event"), "3\n").unwrap();
        std::os::unix::fs::symlink(&pci, uio.join("device")).unwrap();
        fs::write(map0.join("name"), "edu\n").unwrap();
        fs::write(map0.join("addr"), "0x00000000fea00000\n").unwrap();
        fs::write(map0.join("size"), "0x0000000000100000\n").unwrap();
        fs::write(map0.join("offset"), "0x0\n").unwrap();
        let map1 = uio.join("maps/map1");
        fs::create_dir_all(&map1).unwrap();
        fs::write(map1.join("addr"), "0xfe001000\n").unwrap();
        fs::write(map1.join("size"), "0x100\n").unwrap();
        // a non-UIO entry is ignored
        fs::create_dir_all(root.path().join("class/uio/power")).unwrap();
        root
    }

    /// Regression: a device unregistered between the directory read and its attributes' (a
    /// dangling link here, as sysfs's are) failed the whole listing, and `Uio::find` with it.
    #[test]
    fn a_device_that_vanished_meanwhile_is_left_out() {
        let root = fake_sysfs();
        std::os::unix::fs::symlink(root.path().join("gone"), root.path().join("class/uio/uio1")).unwrap();
        let devices = list_in(&root.path().join("class/uio")).unwrap();
        assert_eq!(devices.iter().map(|d| d.number).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn reads_a_uio_tree() {
        let root = fake_sysfs();
        let devices = list_in(&root.path().join("class/uio")).unwrap();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(d.number, 0);
        assert_eq!(d.name, "uio_pci_generic");
        assert_eq!(d.version, "0.01.0");
        assert_eq!(d.event_count, 3);
        assert_eq!(d.maps.len(), 2);
        assert_eq!(d.maps[0].name, "edu");
        assert_eq!(d.maps[0].size, 0x10_0000);
        assert_eq!(d.maps[1].name, "");
        assert_eq!(d.maps[1].offset, 0);
        assert_eq!(d.pci, Some(("0000:00:04.0".parse().unwrap(), PciId::EDU)));
        assert_eq!(d.rules(), AccessRules::edu());
    }

    #[test]
    fn missing_device_is_not_found() {
        let root = fake_sysfs();
        let err = Uio::open_at(&root.path().join("class/uio"), root.path(), 7).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().contains("no UIO device uio7"), "{err}");
        // Regression: the errno was missing ("open of … failed: no UIO device uio7").
        assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
        // A class directory that is a file: ENOTDIR, still "not found".
        let err = Uio::open_at(&root.path().join("class/uio/uio0/name"), root.path(), 0).unwrap_err();
        assert_eq!((err.kind(), err.errno()), (ErrorKind::NotFound, Some(libc::ENOTDIR)), "{err}");
        // The sysfs entry exists but the device node does not.
        let err = Uio::open_at(&root.path().join("class/uio"), root.path(), 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.errno(), Some(libc::ENOENT));
    }

    /// `wait_irq(Some(Duration::MAX))` panicked adding the timeout to `Instant::now()`; a
    /// timeout no clock can reach waits like no timeout. (`/dev/zero`, always readable, a count
    /// of 0, stands in for `/dev/uio0`: `open_at` refuses it, so the `Uio` is built here.)
    #[test]
    fn a_timeout_past_the_end_of_time_waits_without_panicking() {
        let root = fake_sysfs();
        let sys_path = root.path().join("class/uio/uio0");
        let info = UioInfo::read(&sys_path, 0).unwrap();
        let file = OpenOptions::new().read(true).write(true).open("/dev/zero").unwrap();
        let mut uio = Uio { info, sys_path, dev_path: "/dev/zero".into(), file, last_count: 0, stand_in: false };
        let event = uio.wait_irq(Some(Duration::MAX)).unwrap();
        assert_eq!(event.count, 0);
    }

    #[test]
    fn no_uio_class_is_an_empty_list() {
        let root = tempfile::tempdir().unwrap();
        assert!(list_in(&root.path().join("class/uio")).unwrap().is_empty());
    }

    /// uio_pci_generic rounds a 256-byte BAR up to a page-sized map: the region is bounded at
    /// the BAR's size from the PCI device's `resource` file, not at the page.
    #[test]
    fn a_pci_map_is_bounded_at_the_bar_size() {
        let root = fake_sysfs();
        let pci = root.path().join("devices/pci0000:00/0000:00:04.0");
        fs::write(
            pci.join("resource"),
            "0x00000000fea00000 0x00000000fea000ff 0x0000000000040200\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
        )
        .unwrap();
        let page = crate::page_size();
        let map0 = root.path().join("class/uio/uio0/maps/map0");
        fs::write(map0.join("size"), format!("{page:#x}\n")).unwrap();
        // A sealed memfd stands in for /dev/uio0 (map 0 is at mmap offset 0).
        let _node = crate::test_support::sealed_stand_in(&root.path().join("uio0"), &vec![0u8; page]);
        let uio = Uio::open_at(&root.path().join("class/uio"), root.path(), 0).unwrap();
        let regs = uio.map(0).unwrap();
        assert_eq!(regs.len(), 0x100);
        assert_eq!(regs.physical_address(), Some(0xfea0_0000));
        crate::Registers::read_u32(&regs, 0xfc).unwrap();
        let err = crate::Registers::read_u32(&regs, 0x100).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
        assert!(err.to_string().contains("/uio0 map0"), "{err}");
    }
}
