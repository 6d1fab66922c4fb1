//! The tour's `mmio` section: device registers mapped into user space.
//!
//! With QEMU's edu device bound to a UIO driver (as in `vmtest/run`'s VM) it identifies the
//! device, checks liveness, computes a factorial by polling and by interrupt, and measures a
//! register read and an interrupt round trip. Without one it lists what UIO devices there are
//! and says how to run the section in the VM.

use std::time::{Duration, Instant};

use anyhow::Context;
use mmkit_mmio::sysfs::PciId;
use mmkit_mmio::{ErrorKind, MmioRegion, Uio};

use super::Args;
use crate::cli::report::{duration, Section};

const IDENT: usize = 0x00;
const LIVENESS: usize = 0x04;
const FACTORIAL: usize = 0x08;
const STATUS: usize = 0x20;
const IRQ_STATUS: usize = 0x24;
const IRQ_RAISE: usize = 0x60;
const IRQ_ACK: usize = 0x64;
const STATUS_COMPUTING: u32 = 0x01;
const STATUS_IRQ_ON_FACTORIAL: u32 = 0x80;
const TIMEOUT: Duration = Duration::from_secs(5);

/// The section's title (also shown when it fails).
pub const TITLE: &str = "Device registers (MMIO)";

/// Builds the `mmio` section.
pub fn section(_args: &Args) -> anyhow::Result<Section> {
    let mut s = Section::new("mmio", TITLE);
    match Uio::find_pci(PciId::EDU) {
        Ok(uio) => edu(&mut s, uio)?,
        Err(e) if e.kind() == ErrorKind::NotFound => absent(&mut s)?,
        Err(e) => return Err(e).context("cannot open the edu device's UIO node"),
    }
    Ok(s)
}

fn absent(s: &mut Section) -> anyhow::Result<()> {
    let devices = mmkit_mmio::list_uio_devices().context("cannot list UIO devices")?;
    s.fact("edu_present", "QEMU edu device", false, "not present");
    s.fact("uio_devices", "UIO devices", devices.len(), devices.len().to_string());
    for d in &devices {
        let maps: Vec<String> =
            d.maps.iter().map(|m| format!("map{} {}", m.index, crate::cli::size::bytes(m.size))).collect();
        s.fact(
            &format!("uio{}", d.number),
            &format!("/dev/uio{}", d.number),
            d.name.clone(),
            format!("{} ({})", d.name, if maps.is_empty() { "no maps".to_owned() } else { maps.join(", ") }),
        );
    }
    s.note(
        "This section drives QEMU's edu device through UIO. Run it in the VM: `vmtest/run` boots \
         qemu-system-x86_64 with `-device edu`, binds it to uio_pci_generic and runs \
         `mmkit tour --only mmio` there.",
    );
    s.note(
        "On a machine with QEMU: start a guest with `-device edu`, then inside it `modprobe \
         uio_pci_generic; echo \"1234 11e8\" > /sys/bus/pci/drivers/uio_pci_generic/new_id` \
         and run `mmkit tour --only mmio`.",
    );
    Ok(())
}

fn edu(s: &mut Section, mut uio: Uio) -> anyhow::Result<()> {
    let regs = uio.map(0).context("cannot map the edu device's BAR0")?;
    s.fact("edu_present", "QEMU edu device", true, regs.source());
    if let Some(pa) = regs.physical_address() {
        s.fact(
            "bar0_phys",
            "BAR0 physical address",
            pa,
            format!("{pa:#x}, {}", crate::cli::size::bytes(regs.len() as u64)),
        );
    }

    let ident = regs.read_u32(IDENT)?;
    s.fact(
        "ident",
        "identification (0x00)",
        ident,
        format!("{ident:#010x} (edu v{}.{})", ident >> 24, (ident >> 16) & 0xff),
    );

    let probe = 0x1234_5678u32;
    regs.write_u32(LIVENESS, probe)?;
    let back = regs.read_u32(LIVENESS)?;
    s.fact(
        "liveness_ok",
        "liveness (0x04)",
        back == !probe,
        format!("wrote {probe:#010x}, read {back:#010x} ({})", if back == !probe { "= !written" } else { "WRONG" }),
    );

    // Factorial by polling the status register.
    regs.write_u32(STATUS, 0)?;
    let t = Instant::now();
    regs.write_u32(FACTORIAL, 12)?;
    while regs.read_u32(STATUS)? & STATUS_COMPUTING != 0 {
        anyhow::ensure!(t.elapsed() < TIMEOUT, "the factorial did not finish within {TIMEOUT:?}");
    }
    let polled = t.elapsed();
    let f = regs.read_u32(FACTORIAL)?;
    s.fact("factorial_12", "factorial (0x08), polled", f, format!("12! = {f} in {}", duration(polled)));

    // Register read cost.
    const READS: u32 = 100_000;
    let t = Instant::now();
    let mut acc = 0;
    for _ in 0..READS {
        acc ^= regs.read_u32(IDENT)?;
    }
    let per_read = t.elapsed() / READS;
    anyhow::ensure!(acc == 0, "ident changed while reading it");
    s.fact("read_ns", "one 32-bit register read", per_read.as_nanos() as u64, duration(per_read));

    // Interrupt round trips: raise, wait on /dev/uioN, acknowledge.
    let mut trips = Vec::new();
    let mut count = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let event = irq_round_trip(&mut uio, &regs)?;
        trips.push(t.elapsed());
        count = event;
    }
    trips.sort();
    let median = trips[trips.len() / 2];
    s.fact("irq_round_trip_ns", "interrupt round trip (median of 20)", median.as_nanos() as u64, duration(median));
    s.fact("irq_count", "interrupts counted by the driver", count, count.to_string());

    // Factorial with an interrupt instead of polling.
    uio.enable_irq()?;
    let t = Instant::now();
    regs.write_u32(STATUS, STATUS_IRQ_ON_FACTORIAL)?;
    regs.write_u32(FACTORIAL, 10)?;
    uio.wait_irq(Some(TIMEOUT)).context("the factorial interrupt did not arrive")?;
    let by_irq = t.elapsed();
    let status = regs.read_u32(IRQ_STATUS)?;
    regs.write_u32(IRQ_ACK, status)?;
    regs.write_u32(STATUS, 0)?;
    let f = regs.read_u32(FACTORIAL)?;
    s.fact("factorial_10_irq", "factorial, by interrupt", f, format!("10! = {f} in {}", duration(by_irq)));

    s.note(
        "Every access above is a volatile load or store through the mapping of /dev/uio0 (BAR0), \
         checked first: edu accepts only 32-bit accesses below 0x80, so `read_u8(0)` is an error \
         rather than a bus access that returns garbage.",
    );
    s.note(
        "uio_pci_generic has no irqcontrol: interrupts are unmasked by clearing the INTx-disable \
         bit (bit 10) of the PCI command register through config space, and the kernel masks it \
         again each time one fires.",
    );
    Ok(())
}

/// Raises interrupt bit 0x2, waits for it, acknowledges it; returns the driver's count.
fn irq_round_trip(uio: &mut Uio, regs: &MmioRegion) -> anyhow::Result<u32> {
    uio.enable_irq()?;
    regs.write_u32(IRQ_RAISE, 0x2)?;
    let event = uio.wait_irq(Some(TIMEOUT)).context("the raised interrupt did not arrive")?;
    regs.write_u32(IRQ_ACK, 0x2)?;
    Ok(event.count)
}
