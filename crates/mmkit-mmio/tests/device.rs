//! Real-device tests against QEMU's edu device (PCI `1234:11e8`) bound to `uio_pci_generic`.
//!
//! They need the device, so they are `#[ignore]`d on ordinary machines (shown as ignored, never
//! passed) and run inside the VM by `vmtest/run`, with `--include-ignored --test-threads=1`.
//! Every test fails, not skips, when the device is missing.

#[allow(dead_code)]
#[path = "../examples/edu.rs"]
mod edu;

use std::time::{Duration, Instant};

use edu::{factorial_u32, Edu, EduRegisters, IrqStatus};
use mmkit_mmio::sysfs::PciId;
use mmkit_mmio::{
    AccessRules, ErrorKind, IrqEnable, MmioRegion, PciDevice, PhysicalMemory, Uio, Width, PCI_COMMAND_INTX_DISABLE,
};

const VM: &str = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run";
const IDENT: u32 = 0x0100_00ed;
const TIMEOUT: Duration = Duration::from_secs(5);

fn uio() -> Uio {
    Uio::find_pci(PciId::EDU).expect("the edu device must be bound to uio_pci_generic")
}

fn pci() -> PciDevice {
    PciDevice::find(PciId::EDU).expect("the edu device must be on the PCI bus")
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn uio_lists_bar0_as_map0() {
    let _ = VM;
    let uio = uio();
    assert_eq!(uio.info().name, "uio_pci_generic");
    let map0 = &uio.maps()[0];
    assert_eq!(map0.size, 0x10_0000, "{map0:?}");
    let bar0 = pci().resources().unwrap()[0];
    assert_eq!(map0.addr, bar0.start, "map0 is BAR0");
    let regs = uio.map(0).unwrap();
    assert_eq!(regs.len(), 0x10_0000);
    assert_eq!(regs.physical_address(), Some(bar0.start));
    assert_eq!(regs.rules(), &AccessRules::edu());
    assert_eq!(uio.map(5).unwrap_err().kind(), ErrorKind::NotFound);
}

fn check_edu_functions(regs: &MmioRegion) {
    assert_eq!(regs.read_u32(0x00).unwrap(), IDENT);
    for v in [0u32, 1, 0x1234_5678, 0xffff_ffff, 0x8000_0001] {
        regs.write_u32(0x04, v).unwrap();
        assert_eq!(regs.read_u32(0x04).unwrap(), !v, "liveness of {v:#x}");
    }
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn uio_ident_and_liveness() {
    check_edu_functions(&uio().map(0).unwrap());
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn sysfs_resource0_ident_and_liveness() {
    let pci = pci();
    pci.enable().unwrap();
    let regs = pci.map_bar(0).unwrap();
    assert_eq!(regs.len(), 0x10_0000);
    assert!(regs.source().ends_with("resource0 (BAR0)"), "{}", regs.source());
    check_edu_functions(&regs);
    // The same device through two sources: a write through one is seen through the other.
    let via_uio = uio().map(0).unwrap();
    regs.write_u32(0x04, 0x0f0f_0f0f).unwrap();
    assert_eq!(via_uio.read_u32(0x04).unwrap(), 0xf0f0_f0f0);
    assert_eq!(pci.map_bar(1).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn dev_mem_at_the_bar_address() {
    let bar0 = pci().resources().unwrap()[0];
    let mem = PhysicalMemory::open().unwrap();
    let regs = mem.map_with_rules(bar0.start, 0x1000, AccessRules::edu()).unwrap();
    assert_eq!(regs.physical_address(), Some(bar0.start));
    check_edu_functions(&regs);
    // A window that starts inside the page: offset 0 is the liveness register.
    let window = mem.map_with_rules(bar0.start + 4, 4, AccessRules::any()).unwrap();
    window.write_u32(0, 0x5555_aaaa).unwrap();
    assert_eq!(regs.read_u32(0x04).unwrap(), 0xaaaa_5555);
    // A window too small for the register block is refused when the block is created.
    let small = mem.map_with_rules(bar0.start, 0x40, AccessRules::edu()).unwrap();
    let err = EduRegisters::new(small).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds);
    assert!(err.to_string().contains("EduRegisters::irq_raise"), "{err}");
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn factorial_by_polling() {
    let edu = Edu::new(uio().map(0).unwrap()).unwrap();
    assert_eq!(edu.version().unwrap(), Some((1, 0)));
    for n in [0, 1, 2, 5, 10, 12] {
        let got = edu.factorial_polled(n, TIMEOUT).unwrap();
        assert_eq!(got, Some(factorial_u32(n)), "{n}!");
    }
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn factorial_with_interrupt() {
    let mut uio = uio();
    let edu = Edu::new(uio.map(0).unwrap()).unwrap();
    let before = uio.irq_count().unwrap();
    assert_eq!(uio.enable_irq().unwrap(), IrqEnable::PciCommand);
    edu.start_factorial(11, true).unwrap();
    let irq = uio.wait_irq(Some(TIMEOUT)).unwrap();
    assert_eq!(irq.count, before + 1);
    assert!(!edu.computing().unwrap());
    assert_eq!(edu.factorial_result().unwrap(), factorial_u32(11));
    assert!(edu.irq_status().unwrap().is_set(IrqStatus::FACTORIAL));
    edu.ack_irq(0x1).unwrap();
    edu.start_factorial(0, false).unwrap();
    assert_eq!(edu.irq_status().unwrap(), IrqStatus(0));
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn interrupts_count_1_2_3_with_acks() {
    let mut uio = uio();
    let pci = uio.pci_device().unwrap();
    let edu = Edu::new(uio.map(0).unwrap()).unwrap();
    let start = uio.irq_count().unwrap();
    for k in 1..=3u32 {
        assert_eq!(uio.enable_irq().unwrap(), IrqEnable::PciCommand);
        assert_eq!(pci.command().unwrap() & PCI_COMMAND_INTX_DISABLE, 0, "enable clears INTx-disable");
        edu.raise_irq(1 << k).unwrap();
        let irq = uio.wait_irq(Some(TIMEOUT)).unwrap();
        assert_eq!(irq.count, start + k, "interrupt {k}");
        assert_eq!(irq.missed, 0);
        assert_eq!(uio.irq_count().unwrap(), start + k);
        assert_eq!(edu.irq_status().unwrap().0, 1 << k);
        // uio_pci_generic masks INTx when the interrupt fires.
        assert_ne!(pci.command().unwrap() & PCI_COMMAND_INTX_DISABLE, 0, "masked after the interrupt");
        edu.ack_irq(1 << k).unwrap();
        assert_eq!(edu.irq_status().unwrap().0, 0);
    }
    println!("interrupt counts {}..={}", start + 1, start + 3);
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn missed_interrupts_are_counted() {
    let mut uio = uio();
    let pci = uio.pci_device().unwrap();
    let edu = Edu::new(uio.map(0).unwrap()).unwrap();
    let start = uio.irq_count().unwrap();
    // Two interrupts before the wait: the wait reports the second, and the first as missed.
    for _ in 0..2 {
        uio.enable_irq().unwrap();
        edu.raise_irq(0x2).unwrap();
        // The kernel's handler masks INTx once it has counted the interrupt.
        let deadline = Instant::now() + TIMEOUT;
        while pci.command().unwrap() & PCI_COMMAND_INTX_DISABLE == 0 {
            assert!(Instant::now() < deadline, "interrupt not delivered");
            std::thread::sleep(Duration::from_millis(1));
        }
        edu.ack_irq(0x2).unwrap();
    }
    let irq = uio.wait_irq(Some(TIMEOUT)).unwrap();
    assert_eq!(irq.count, start + 2);
    assert_eq!(irq.missed, 1);
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn no_interrupt_times_out() {
    let mut uio = uio();
    uio.enable_irq().unwrap();
    let t = Instant::now();
    let err = uio.wait_irq(Some(Duration::from_millis(200))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(190));
    assert!(err.to_string().starts_with("wait for interrupt on /dev/uio"), "{err}");
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn bounds_and_width_errors_on_the_device() {
    let regs = uio().map(0).unwrap();
    let e = regs.read_u8(0x00).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WidthNotAllowed);
    assert!(e.to_string().contains("edu accepts only 32-bit accesses at 0x0"), "{e}");
    assert_eq!(regs.read_u16(0x04).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
    assert_eq!(regs.write_u64(0x08, 1).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
    assert_eq!(regs.read_u32(0x02).unwrap_err().kind(), ErrorKind::Misaligned);
    let e = regs.read_u32(0x10_0000).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfBounds);
    assert_eq!(e.range(), Some((0x10_0000, 4)));
    assert!(e.to_string().starts_with("read of /dev/uio0 map0 [offset 0x100000, len 0x4] failed"), "{e}");
    assert_eq!(regs.read_u64(0x10_0000 - 4).unwrap_err().kind(), ErrorKind::OutOfBounds);
    // 64-bit accesses are fine on the DMA registers.
    regs.write_u64(0x80, 0x1_2345_6780).unwrap();
    assert_eq!(regs.read_u64(0x80).unwrap(), 0x1_2345_6780);
    assert_eq!(regs.read(0x88, Width::W32).unwrap(), regs.read_u64(0x88).unwrap() & 0xffff_ffff);
    // The refused accesses did not disturb the device.
    assert_eq!(regs.read_u32(0x00).unwrap(), IDENT);
}

#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn config_space_identifies_the_device() {
    let pci = pci();
    assert_eq!(pci.config_read_u16(0x00).unwrap(), 0x1234);
    assert_eq!(pci.config_read_u16(0x02).unwrap(), 0x11e8);
    assert_eq!(pci.config_read_u32(0x00).unwrap(), 0x11e8_1234);
    assert_eq!(pci.driver().as_deref(), Some("uio_pci_generic"));
    let bar0 = pci.config_read_u32(0x10).unwrap() & !0xf;
    assert_eq!(u64::from(bar0), pci.resources().unwrap()[0].start & 0xffff_fff0);
}

/// 1M register reads through the typed API vs a raw volatile loop, interleaved in rounds
/// (alternating which goes first); the ratio of the medians must stay within 1.05. The emulator
/// shares the host with other work, so a measurement over the limit is repeated (up to three
/// in all) before the test fails: a real regression is over the limit every time.
#[test]
#[ignore = "needs QEMU's edu device bound to uio_pci_generic: run vmtest/run"]
fn bench_typed_reads_cost_what_raw_reads_cost() {
    let region = uio().map(0).unwrap();
    let raw = region.as_ptr();
    let edu = EduRegisters::new(region).unwrap();
    const ROUNDS: usize = 20;
    const READS: usize = 50_000;
    let typed_round = || {
        let t = Instant::now();
        let mut acc = 0u32;
        for _ in 0..READS {
            acc ^= edu.ident().read().unwrap();
        }
        assert_eq!(acc, 0);
        t.elapsed().as_nanos() as f64 / READS as f64
    };
    let raw_round = || {
        let t = Instant::now();
        let mut acc = 0u32;
        for _ in 0..READS {
            // SAFETY: offset 0 of the live 1 MiB mapping, 4-byte aligned, volatile, raw pointer.
            acc ^= unsafe { raw.cast::<u32>().read_volatile() };
        }
        assert_eq!(acc, 0);
        t.elapsed().as_nanos() as f64 / READS as f64
    };
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut ratios = Vec::new();
    for attempt in 1..=3 {
        let (mut typed_ns, mut raw_ns) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                typed_ns.push(typed_round());
                raw_ns.push(raw_round());
            } else {
                raw_ns.push(raw_round());
                typed_ns.push(typed_round());
            }
        }
        let (typed, raw) = (median(&mut typed_ns), median(&mut raw_ns));
        let ratio = typed / raw;
        println!(
            "bench: typed {typed:.1} ns/read, raw {raw:.1} ns/read, ratio {ratio:.3} \
             (medians of {ROUNDS} rounds, {} reads each; attempt {attempt})",
            ROUNDS * READS
        );
        ratios.push(ratio);
        if ratio <= 1.05 {
            return;
        }
    }
    panic!("typed reads cost more than 1.05x raw reads in every attempt: {ratios:.3?}");
}
