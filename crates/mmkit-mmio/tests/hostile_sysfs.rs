//! Sources read from a sysfs-like tree whose attributes are absurd (a fake or corrupt
//! `/sys`), and absurd arguments: every one is an error or works, never an arithmetic overflow
//! (a panic in debug builds, a wrapped offset or address in release builds).

use std::fs;
use std::path::Path;

use mmkit_mmio::sysfs::PciAddress;
use mmkit_mmio::{ErrorKind, PciDevice, Uio, Width};

/// A UIO device `uio0` under `root/class` whose only map is `map{index}` with these
/// attributes, and a regular file standing in for `/dev/uio0` under `root/dev`.
fn fake_uio(root: &Path, index: &str, addr: &str, size: &str, offset: &str) -> Uio {
    let uio = root.join("class/uio0");
    let map = uio.join(format!("maps/map{index}"));
    fs::create_dir_all(&map).unwrap();
    fs::write(uio.join("name"), "fake\n").unwrap();
    fs::write(map.join("addr"), addr).unwrap();
    fs::write(map.join("size"), size).unwrap();
    fs::write(map.join("offset"), offset).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::write(root.join("dev/uio0"), vec![0u8; mmkit_mmio::page_size()]).unwrap();
    Uio::open_at(&root.join("class"), &root.join("dev"), 0).unwrap()
}

#[test]
fn a_uio_map_at_the_top_of_the_address_space_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let uio = fake_uio(root.path(), "0", "0xffffffffffffffff\n", "0x1\n", "0x1\n");
    let err = uio.map(0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    // Said in the attributes' own hex, not as a Rust struct's Debug form.
    let want = "map attributes do not describe a mappable window: addr 0xffffffffffffffff, size 0x1, offset 0x1";
    assert!(err.to_string().contains(want), "{err}");
}

/// Map N is at mmap offset N pages. On 64-bit targets `usize::MAX` pages is past any offset
/// (it overflowed); on 32-bit ones it is a valid offset (2^32 - 1 pages, as `mmap2` counts
/// them) past the end of the one-page device file, which is refused as such.
#[test]
fn a_uio_map_index_past_any_mmap_offset_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let index = usize::MAX;
    let uio = fake_uio(root.path(), &index.to_string(), "0x1000\n", "0x10\n", "0x0\n");
    let err = uio.map(index).unwrap_err();
    let expected = if cfg!(target_pointer_width = "64") { ErrorKind::InvalidArgument } else { ErrorKind::OutOfBounds };
    assert_eq!(err.kind(), expected, "{err}");
}

#[test]
fn a_bar_larger_than_the_address_space_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dev = root.path().join("0000:00:04.0");
    fs::create_dir_all(&dev).unwrap();
    fs::write(dev.join("vendor"), "0x1234\n").unwrap();
    fs::write(dev.join("device"), "0x11e8\n").unwrap();
    // BAR0: [0, 2^64 - 2], a memory BAR (IORESOURCE_MEM) of 2^64 - 1 bytes.
    fs::write(dev.join("resource"), "0x0000000000000000 0xfffffffffffffffe 0x0000000000040200\n").unwrap();
    fs::write(dev.join("resource0"), vec![0u8; mmkit_mmio::page_size()]).unwrap();
    let address: PciAddress = "0000:00:04.0".parse().unwrap();
    let pci = PciDevice::open_in(root.path(), address).unwrap();
    let err = pci.map_bar(0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("larger than the address space"), "{err}");
}

/// Regression: a configuration-space read past its end (or past the 64 bytes an unprivileged
/// reader gets) said only "failed to fill whole buffer". Against this machine's first PCI
/// device, where it has one: OutOfBounds, with the size and the range.
#[test]
fn a_config_read_past_the_end_names_the_size() {
    let Some(first) = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()
        .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).min())
    else {
        eprintln!("skipped: no PCI devices on this machine");
        return;
    };
    let pci = PciDevice::open(first.parse().unwrap()).unwrap();
    let vendor = std::fs::read_to_string(pci.sys_path().join("vendor")).unwrap();
    assert_eq!(format!("{:#06x}", pci.config_read_u16(0).unwrap()), vendor.trim());
    let size = std::fs::metadata(pci.sys_path().join("config")).unwrap().len();
    let err = pci.config_read(size - 2, Width::W32).unwrap_err();
    assert_eq!((err.kind(), err.range()), (ErrorKind::OutOfBounds, Some((size - 2, 4))), "{err}");
    assert!(err.to_string().contains(&format!("configuration space is {size:#x} bytes")), "{err}");
}

/// Runs `f` on another thread and fails the test when it takes longer than 10 s (a hang).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what} hung"))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{}", std::io::Error::last_os_error());
}

/// Regression: sysfs attributes were read with `read_to_string`: an attribute that is a FIFO
/// blocked its `open` forever, one that is `/dev/zero` was read until memory ran out. Now
/// anything but a regular file is refused without blocking, naming the path.
#[test]
fn attributes_and_config_spaces_that_are_fifos_or_devices_are_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("fifo/0000:00:04.0");
    let zero = root.path().join("zero/0000:00:04.0");
    for dev in [&fifo, &zero] {
        fs::create_dir_all(dev).unwrap();
        fs::write(dev.join("device"), "0x11e8\n").unwrap();
    }
    mkfifo(&fifo.join("vendor"));
    std::os::unix::fs::symlink("/dev/zero", zero.join("vendor")).unwrap();
    for dev in [fifo, zero] {
        let vendor = dev.join("vendor");
        let err = within("PciDevice::open_in", move || {
            PciDevice::open_in(dev.parent().unwrap(), "0000:00:04.0".parse::<PciAddress>().unwrap()).unwrap_err()
        });
        assert_eq!(err.path(), Some(vendor.as_path()), "{err}");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    // A device whose configuration space is a FIFO (a read-only open waited for a writer).
    let dev = root.path().join("config/0000:00:04.0");
    fs::create_dir_all(&dev).unwrap();
    fs::write(dev.join("vendor"), "0x1234\n").unwrap();
    fs::write(dev.join("device"), "0x11e8\n").unwrap();
    mkfifo(&dev.join("config"));
    let pci = PciDevice::open_in(dev.parent().unwrap(), "0000:00:04.0".parse::<PciAddress>().unwrap()).unwrap();
    let err = within("PciDevice::config_read", move || pci.config_read_u16(0).unwrap_err());
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let uio = root.path().join("class/uio0");
    fs::create_dir_all(&uio).unwrap();
    mkfifo(&uio.join("name"));
    let class = root.path().join("class");
    let err = within("Uio::open_at", move || Uio::open_at(&class, Path::new("/dev"), 0).unwrap_err());
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// Regression: `map_bar` opened `resourceN` of the caller's devices directory read-write
/// whatever it was: a device node there was opened (an open alone can act: a watchdog arms),
/// a FIFO too (then `mmap` said only ENODEV). Anything but a regular file is refused before it
/// is opened, naming the path.
#[test]
fn a_bar_resource_that_is_a_fifo_or_a_device_is_refused_without_blocking() {
    let root = tempfile::tempdir().unwrap();
    for (name, make) in [("fifo", 0), ("null", 1)] {
        let dev = root.path().join(name).join("0000:00:05.0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
        fs::write(dev.join("device"), "0x1110\n").unwrap();
        fs::write(dev.join("resource"), "0x00000000feb00000 0x00000000feb000ff 0x0000000000040200\n").unwrap();
        let resource0 = dev.join("resource0");
        if make == 0 {
            mkfifo(&resource0);
        } else {
            std::os::unix::fs::symlink("/dev/null", &resource0).unwrap();
        }
        let pci = PciDevice::open_in(dev.parent().unwrap(), "0000:00:05.0".parse::<PciAddress>().unwrap()).unwrap();
        let err = within("PciDevice::map_bar", move || pci.map_bar(0).map(|_| ()).unwrap_err());
        assert_eq!(err.path(), Some(resource0.as_path()), "{name}: {err}");
        assert!(err.to_string().contains("not a regular file"), "{name}: {err}");
    }
}

/// Regression: `wait_irq` read the count with `read_exact`: on a node that answered fewer than
/// 4 bytes (a FIFO holding one) it waited for the rest forever, whatever the timeout. A FIFO
/// is no UIO device: refused at open now, without blocking.
#[test]
fn a_fifo_as_the_node_is_refused_at_open_not_waited_on() {
    let root = tempfile::tempdir().unwrap();
    drop(fake_uio(root.path(), "0", "0x1000\n", "0x10\n", "0x0\n"));
    let node = root.path().join("dev/uio0");
    fs::remove_file(&node).unwrap();
    mkfifo(&node);
    let (class, dev) = (root.path().join("class"), root.path().join("dev"));
    let err = within("Uio::open_at", move || Uio::open_at(&class, &dev, 0).unwrap_err());
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("uio0") && err.to_string().contains("not a UIO device: a FIFO"), "{err}");
}

/// Regression: a node that is not the UIO device (`/dev/zero`, a regular file) was opened, and
/// `wait_irq` returned what it read as an interrupt count (`Ok(count 0)` at once; `/proc/self/status`
/// gave 1701667150, the ASCII of "Name"). A character device must be of class `uio` and the one
/// sysfs numbers (`uioN/dev`), else it is refused at open; a regular file (a fake tree's stand-in for the
/// device's memory) maps, but has no interrupt: the interrupt calls refuse it, and never write
/// into it.
#[test]
fn a_node_that_is_not_the_uio_device_is_refused() {
    let root = tempfile::tempdir().unwrap();
    drop(fake_uio(root.path(), "0", "0x1000\n", "0x10\n", "0x0\n"));
    let (class, dev) = (root.path().join("class"), root.path().join("dev"));
    let node = dev.join("uio0");
    // A regular file: opens (a sealed memfd stands in for device memory; `map` has its own
    // rules), but has no interrupt.
    let mut uio = Uio::open_at(&class, &dev, 0).unwrap();
    for err in [uio.wait_irq(Some(std::time::Duration::from_millis(50))).unwrap_err(), uio.enable_irq().unwrap_err()] {
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains(&node.display().to_string()), "{err}");
        assert!(err.to_string().contains("not a UIO device: a regular file stands in for its memory"), "{err}");
    }
    assert_eq!(fs::read(&node).unwrap(), vec![0u8; mmkit_mmio::page_size()]);
    // /dev/zero: a character device, but not the one sysfs numbers (or sysfs numbers none).
    fs::remove_file(&node).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &node).unwrap();
    // Refused whatever the given tree says of uio0: this machine's sysfs says what 1:5 is.
    for said in [None, Some("240:0\n"), Some("1:5\n"), Some("garbage\n")] {
        if let Some(said) = said {
            fs::write(class.join("uio0/dev"), said).unwrap();
        }
        let err = Uio::open_at(&class, &dev, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("not a UIO device: character device 1:5 (class mem)"), "{said:?}: {err}");
    }
    // A directory or a socket: refused, saying what it is.
    fs::remove_file(&node).unwrap();
    fs::create_dir(&node).unwrap();
    let err = Uio::open_at(&class, &dev, 0).unwrap_err();
    assert!(err.to_string().contains("not a UIO device: a directory"), "{err}");
}

/// Regression: a device that vanished between the directory read and its attributes' (a PCI
/// device removed meanwhile; here a dangling link, as sysfs's links are) failed the whole
/// listing with NotFound, and with it `find` of any other device.
#[test]
fn a_device_that_vanished_meanwhile_does_not_fail_finding_another() {
    let root = tempfile::tempdir().unwrap();
    let good = root.path().join("0000:00:04.0");
    fs::create_dir_all(&good).unwrap();
    fs::write(good.join("vendor"), "0x1234\n").unwrap();
    fs::write(good.join("device"), "0x11e8\n").unwrap();
    std::os::unix::fs::symlink(root.path().join("gone"), root.path().join("0000:00:05.0")).unwrap();
    let found = PciDevice::find_in(root.path(), "1234:11e8".parse().unwrap()).unwrap();
    assert_eq!(found.address().to_string(), "0000:00:04.0");
}

/// Regression: a memory BAR the `resource` file lists but that has no `resourceN` file (as the
/// virtio devices of some VMs: the kernel made none), or a BAR that does not exist at all, was
/// an error saying only `open of .../resource0 failed: ENOENT`, without the BAR; and through
/// `/dev/mem` without the device or BAR. Each names the operation, the path, the BAR and errno.
#[test]
fn a_missing_bar_file_names_the_operation_path_bar_and_errno() {
    let root = tempfile::tempdir().unwrap();
    let dev = root.path().join("0000:00:01.0");
    fs::create_dir_all(&dev).unwrap();
    fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
    fs::write(dev.join("device"), "0x1045\n").unwrap();
    fs::write(dev.join("resource"), "0x0000004000000000 0x000000400007ffff 0x0000000000140204\n").unwrap();
    let pci = PciDevice::open_in(root.path(), "0000:00:01.0".parse().unwrap()).unwrap();
    let err = pci.map_bar(0).unwrap_err();
    let said = err.to_string();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{said}");
    assert_eq!(err.errno(), Some(libc::ENOENT), "{said}");
    assert!(said.starts_with("open of ") && said.contains("0000:00:01.0/resource0"), "{said}");
    assert!(said.contains("BAR0") && said.contains("(ENOENT)"), "{said}");
    assert!(said.contains("no resource0 file"), "{said}");
    // A BAR the device does not have: the path it would be and the BAR, as NotFound.
    let err = pci.map_bar(3).unwrap_err();
    let said = err.to_string();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{said}");
    assert!(said.contains("0000:00:01.0/resource3") && said.contains("BAR3"), "{said}");
}
