//! Real-device tests against a second, different PCI device: QEMU's `ivshmem-plain`
//! (`1af4:1110`), a 256-byte register BAR0 (smaller than a page) and a 1 MiB prefetchable,
//! 64-bit BAR2 backed by a file on the host. `vmtest/run` creates that file with a marker the
//! guest must read, boots the VM with `-device ivshmem-plain`, binds BAR0 to `uio_pci_generic`
//! (which skips 64-bit prefetchable BARs) and, after the VM, checks on the host the bytes
//! [`bar2_write_combining_reaches_the_host_file`] wrote.
//!
//! `#[ignore]`d on ordinary machines; every test fails, not skips, when the device is missing.

use mmkit_mmio::sysfs::PciId;
use mmkit_mmio::{fence, ErrorKind, MmioRegion, PciDevice, PhysicalMemory, Uio};

/// What `vmtest/run` writes into the host file at [`HOST_MARKER_AT`] before the VM boots.
const HOST_MARKER: &[u8] = b"mmkit host->guest marker\n";
const HOST_MARKER_AT: usize = 0x1000;
/// What the guest writes at offset 0 of BAR2 through `resource2_wc`; `vmtest/run` checks it.
const GUEST_MARKER: &[u8] = b"mmkit guest wrote this through resource2_wc\n";
/// What the guest writes, uncached, in the last 8 bytes of BAR2 (little-endian).
const GUEST_TAIL: u64 = 0x0123_4567_89ab_cdef;

fn pci() -> PciDevice {
    let dev = PciDevice::find(PciId::IVSHMEM).expect("the ivshmem-plain device must be on the PCI bus");
    dev.enable().unwrap();
    dev
}

/// IntrMask (offset 0) is a plain read-write 32-bit register: a write through one source is
/// read back through another.
fn check_intr_mask(write: &MmioRegion, read: &MmioRegion, value: u32) {
    write.write_u32(0x0, value).unwrap();
    assert_eq!(read.read_u32(0x0).unwrap(), value, "{} -> {}", write.source(), read.source());
    write.write_u32(0x0, 0).unwrap();
}

/// Bounds at the BAR's size (not the page), and ivshmem's 32-bit-only register widths.
fn check_bar0_bounds(regs: &MmioRegion) {
    assert_eq!(regs.len(), 0x100, "{}", regs.source());
    regs.read_u32(0xfc).unwrap();
    let err = regs.read_u32(0x100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds, "{err}");
    assert!(err.to_string().contains("past the end of the 0x100-byte region"), "{err}");
    assert_eq!(regs.read_u8(0x0).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
    assert!(regs.rules().is_known());
}

#[test]
#[ignore = "needs QEMU's ivshmem-plain device: run vmtest/run"]
fn sysfs_maps_the_256_byte_bar0() {
    let pci = pci();
    let bar0 = pci.resources().unwrap()[0];
    assert_eq!(bar0.size(), 0x100, "{bar0:?}");
    assert!(bar0.size() < mmkit_mmio::page_size() as u64);
    let regs = pci.map_bar(0).unwrap();
    assert!(regs.source().ends_with("resource0 (BAR0)"), "{}", regs.source());
    assert_eq!(regs.physical_address(), Some(bar0.start));
    check_bar0_bounds(&regs);
    check_intr_mask(&regs, &regs, 0x00ff_00ff);
}

#[test]
#[ignore = "needs QEMU's ivshmem-plain device: run vmtest/run"]
fn uio_map_of_bar0_is_bounded_at_the_bar_not_the_page() {
    let pci = pci();
    let uio = Uio::find_pci(PciId::IVSHMEM).expect("ivshmem must be bound to uio_pci_generic");
    let map0 = &uio.maps()[0];
    // The kernel's map is whole pages; the region is the BAR.
    assert!(map0.size >= 0x100, "{map0:?}");
    let regs = uio.map(0).unwrap();
    assert_eq!(regs.physical_address(), Some(pci.resources().unwrap()[0].start));
    check_bar0_bounds(&regs);
    check_intr_mask(&pci.map_bar(0).unwrap(), &regs, 0x1234_5678);
    // BAR2 (64-bit, prefetchable) is not a UIO map of uio_pci_generic.
    assert!(uio.maps().iter().all(|m| m.addr != pci.resources().unwrap()[2].start), "{:?}", uio.maps());
}

#[test]
#[ignore = "needs QEMU's ivshmem-plain device: run vmtest/run"]
fn dev_mem_maps_each_bar_bounded_at_its_size() {
    let pci = pci();
    let mem = PhysicalMemory::open().unwrap();
    let regs = mem.map_pci_bar(&pci, 0).unwrap();
    check_bar0_bounds(&regs);
    check_intr_mask(&regs, &pci.map_bar(0).unwrap(), 0x0f0f_0f0f);
    let shm = mem.map_pci_bar(&pci, 2).unwrap();
    assert_eq!(shm.len(), 0x10_0000);
    let mut got = vec![0u8; HOST_MARKER.len()];
    for (i, b) in got.iter_mut().enumerate() {
        *b = shm.read_u8(HOST_MARKER_AT + i).unwrap();
    }
    assert_eq!(got, HOST_MARKER, "the host's marker, read through /dev/mem");
    assert_eq!(shm.read_u8(0x10_0000).unwrap_err().kind(), ErrorKind::OutOfBounds);
}

#[test]
#[ignore = "needs QEMU's ivshmem-plain device: run vmtest/run"]
fn bar2_write_combining_reaches_the_host_file() {
    let pci = pci();
    let bar2 = pci.resources().unwrap()[2];
    assert!(bar2.is_prefetchable() && bar2.is_64bit(), "{bar2:?}");
    let wc = pci.map_bar_wc(2).unwrap();
    assert!(wc.path().ends_with("resource2_wc"), "{}", wc.path().display());
    assert_eq!(wc.len(), 0x10_0000);
    for (i, b) in GUEST_MARKER.iter().enumerate() {
        wc.write_u8(i, *b).unwrap();
    }
    fence::to_device();
    let uc = pci.map_bar(2).unwrap();
    let read_back: Vec<u8> = (0..GUEST_MARKER.len()).map(|i| uc.read_u8(i).unwrap()).collect();
    assert_eq!(read_back, GUEST_MARKER);
    uc.write_u64(0x10_0000 - 8, GUEST_TAIL).unwrap();
    assert_eq!(wc.read_u64(0x10_0000 - 8).unwrap(), GUEST_TAIL);
    let host: Vec<u8> = (0..HOST_MARKER.len()).map(|i| wc.read_u8(HOST_MARKER_AT + i).unwrap()).collect();
    assert_eq!(host, HOST_MARKER, "the host's marker, read through resource2_wc");
    assert_eq!(wc.write_u8(0x10_0000, 1).unwrap_err().kind(), ErrorKind::OutOfBounds);

    // BAR0 is not prefetchable: no write-combining, and the error says why.
    let err = pci.map_bar_wc(0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("not prefetchable"), "{err}");
}
