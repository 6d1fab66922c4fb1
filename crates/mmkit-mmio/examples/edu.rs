//! A typed user-space driver for QEMU's `edu` device (PCI `1234:11e8`), and a model of the
//! device for testing the driver without it.
//!
//! The edu device (QEMU's `docs/specs/edu.rst`) is a teaching device with one 1 MiB memory
//! BAR. Its registers, all 32-bit below 0x80:
//!
//! | offset | access | meaning |
//! |---|---|---|
//! | 0x00 | RO | identification `0xRRrr00ed` (major `RR`, minor `rr`) |
//! | 0x04 | RW | liveness: reads return the bitwise NOT of the last value written |
//! | 0x08 | RW | factorial: write `n` to start computing `n!`, read the result |
//! | 0x20 | RW | status: bit 0 computing (RO), bit 7 raise an interrupt when the factorial is done |
//! | 0x24 | RO | interrupt status: the OR of all raised, unacknowledged values |
//! | 0x60 | WO | raise an interrupt with this value |
//! | 0x64 | WO | acknowledge (clear) these interrupt status bits |
//!
//! Run it in the VM (`vmtest/run` packs it) with the device bound to `uio_pci_generic`:
//! `edu` uses the device; `edu --fake` runs the same driver on [`EduModel`].

use std::time::{Duration, Instant};

use mmkit_mmio::{
    bitfields, register_block, sysfs::PciId, AccessRules, DeviceModel, FakeRegisters, ReadOnly, ReadWrite, Registers,
    Store, Uio, Width, WriteOnly,
};

bitfields! {
    /// The status register (0x20).
    pub struct Status(u32) {
        /// The device is computing a factorial (read-only).
        COMPUTING: 0;
        /// Raise interrupt 0x1 when the factorial is done.
        IRQ_ON_FACTORIAL: 7;
    }
}

bitfields! {
    /// The interrupt status register (0x24).
    pub struct IrqStatus(u32) {
        /// Raised by a finished factorial (value 0x1).
        FACTORIAL: 0;
        /// Raised by a finished DMA transfer (value 0x100).
        DMA: 8;
    }
}

register_block! {
    /// The edu device's registers.
    pub struct EduRegisters {
        /// Identification, `0x010000ed` for version 1.0.
        0x00 => ident: ReadOnly<u32>,
        /// Liveness check: reads return `!written`.
        0x04 => liveness: ReadWrite<u32>,
        /// Factorial: write `n`, read `n!` when not computing.
        0x08 => factorial: ReadWrite<u32>,
        /// Status.
        0x20 => status: ReadWrite<Status>,
        /// Interrupt status.
        0x24 => irq_status: ReadOnly<IrqStatus>,
        /// Raise an interrupt with the written value.
        0x60 => irq_raise: WriteOnly<u32>,
        /// Acknowledge the written interrupt bits.
        0x64 => irq_ack: WriteOnly<u32>,
        /// DMA source address.
        0x80 => dma_source: ReadWrite<u64>,
        /// DMA destination address.
        0x88 => dma_destination: ReadWrite<u64>,
        /// DMA transfer count.
        0x90 => dma_count: ReadWrite<u64>,
        /// DMA command.
        0x98 => dma_command: ReadWrite<u64>,
    }
}

/// The identification value's low byte.
pub const EDU_MAGIC: u32 = 0xed;

/// A driver for the edu device over any register space: the real BAR or a fake.
#[derive(Debug)]
pub struct Edu<R: Registers> {
    regs: EduRegisters<R>,
}

impl<R: Registers> Edu<R> {
    /// Checks the register block against `regs` and the identification register.
    pub fn new(regs: R) -> Result<Self, mmkit_mmio::Error> {
        let edu = Edu { regs: EduRegisters::new(regs)? };
        Ok(edu)
    }

    /// The register block.
    pub fn registers(&self) -> &EduRegisters<R> {
        &self.regs
    }

    /// The raw identification register.
    pub fn ident(&self) -> Result<u32, mmkit_mmio::Error> {
        self.regs.ident().read()
    }

    /// `(major, minor)` version when the identification register carries edu's magic byte.
    pub fn version(&self) -> Result<Option<(u8, u8)>, mmkit_mmio::Error> {
        let id = self.ident()?;
        Ok((id & 0xff == EDU_MAGIC).then_some(((id >> 24) as u8, (id >> 16) as u8)))
    }

    /// Writes `value` to the liveness register and returns what it reads back (`!value` on a
    /// live device).
    pub fn liveness(&self, value: u32) -> Result<u32, mmkit_mmio::Error> {
        self.regs.liveness().write(value)?;
        self.regs.liveness().read()
    }

    /// Whether the device answers the liveness check for `value`.
    pub fn is_alive(&self, value: u32) -> Result<bool, mmkit_mmio::Error> {
        Ok(self.liveness(value)? == !value)
    }

    /// Starts computing `n!` (the device computes in the background).
    pub fn start_factorial(&self, n: u32, interrupt: bool) -> Result<(), mmkit_mmio::Error> {
        self.regs.status().set(Status::IRQ_ON_FACTORIAL, u64::from(interrupt))?;
        self.regs.factorial().write(n)
    }

    /// Whether a factorial is being computed.
    pub fn computing(&self) -> Result<bool, mmkit_mmio::Error> {
        Ok(self.regs.status().read()?.is_set(Status::COMPUTING))
    }

    /// The factorial register (the result once `computing` is false).
    pub fn factorial_result(&self) -> Result<u32, mmkit_mmio::Error> {
        self.regs.factorial().read()
    }

    /// Computes `n!` by polling the status register; `None` after `timeout`.
    pub fn factorial_polled(&self, n: u32, timeout: Duration) -> Result<Option<u32>, mmkit_mmio::Error> {
        self.start_factorial(n, false)?;
        let deadline = Instant::now() + timeout;
        while self.computing()? {
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::hint::spin_loop();
        }
        self.factorial_result().map(Some)
    }

    /// Raises an interrupt with `value` (its bits appear in the interrupt status).
    pub fn raise_irq(&self, value: u32) -> Result<(), mmkit_mmio::Error> {
        self.regs.irq_raise().write(value)
    }

    /// The interrupt status.
    pub fn irq_status(&self) -> Result<IrqStatus, mmkit_mmio::Error> {
        self.regs.irq_status().read()
    }

    /// Acknowledges the interrupt bits in `value`.
    pub fn ack_irq(&self, value: u32) -> Result<(), mmkit_mmio::Error> {
        self.regs.irq_ack().write(value)
    }
}

/// `n!` as the device computes it: in 32 bits, wrapping.
pub fn factorial_u32(n: u32) -> u32 {
    (1..=n).fold(1u32, |acc, k| acc.wrapping_mul(k))
}

/// A model of the edu device's register behaviour, for [`FakeRegisters`].
///
/// The factorial completes after `compute_reads` reads of the status register, so drivers'
/// polling loops are exercised.
#[derive(Debug, Default)]
pub struct EduModel {
    /// Status reads before a started factorial completes.
    pub compute_reads: u32,
    pending_reads: u32,
    pending: Option<u32>,
    /// Interrupts raised (the number a UIO driver would count).
    pub interrupts_raised: u32,
}

impl EduModel {
    /// A fake edu device: 1 MiB, edu's width rules.
    pub fn fake(compute_reads: u32) -> FakeRegisters {
        let fake = FakeRegisters::with_model(0x10_0000, EduModel { compute_reads, ..EduModel::default() })
            .rules(AccessRules::edu());
        fake.poke(0x00, 0x0100_00ed);
        fake
    }

    fn finish(&mut self, store: &mut Store) {
        if let Some(n) = self.pending.take() {
            store.set(0x08, Width::W32, factorial_u32(n).into());
            let status = store.get(0x20, Width::W32) & !1;
            store.set(0x20, Width::W32, status);
            if status & 0x80 != 0 {
                self.raise(store, 0x1);
            }
        }
    }

    fn raise(&mut self, store: &mut Store, value: u64) {
        let irq = store.get(0x24, Width::W32) | value;
        store.set(0x24, Width::W32, irq);
        self.interrupts_raised += 1;
    }
}

impl DeviceModel for EduModel {
    fn read(&mut self, store: &mut Store, offset: usize, width: Width) -> u64 {
        match offset {
            0x04 => !store.get(0x04, width) & width.max_value(),
            0x20 if self.pending.is_some() => {
                if self.pending_reads == 0 {
                    self.finish(store);
                } else {
                    self.pending_reads -= 1;
                }
                store.get(0x20, width)
            }
            _ => store.get(offset, width),
        }
    }

    fn write(&mut self, store: &mut Store, offset: usize, width: Width, value: u64) {
        match offset {
            0x00 | 0x24 => {} // read-only
            0x08 => {
                store.set(0x20, width, store.get(0x20, width) | 1);
                self.pending = Some(value as u32);
                self.pending_reads = self.compute_reads;
            }
            0x20 => {
                let status = (store.get(0x20, width) & 1) | (value & 0x80);
                store.set(0x20, width, status);
            }
            0x60 => self.raise(store, value),
            0x64 => {
                let irq = store.get(0x24, width) & !value;
                store.set(0x24, width, irq);
            }
            _ => store.set(offset, width, value),
        }
    }
}

fn run<R: Registers>(edu: &Edu<R>, uio: Option<&mut Uio>) -> Result<(), Box<dyn std::error::Error>> {
    let (major, minor) = edu.version()?.ok_or("not an edu device")?;
    println!("ident      {:#010x} (edu v{major}.{minor})", edu.ident()?);
    println!("liveness   wrote 0x12345678, read {:#010x}", edu.liveness(0x1234_5678)?);
    let f = edu.factorial_polled(10, Duration::from_secs(5))?.ok_or("factorial timed out")?;
    println!("factorial  10! = {f} (polled)");
    if let Some(uio) = uio {
        uio.enable_irq()?;
        edu.start_factorial(12, true)?;
        let irq = uio.wait_irq(Some(Duration::from_secs(5)))?;
        let status = edu.irq_status()?;
        edu.ack_irq(status.0)?;
        println!("factorial  12! = {} (interrupt #{}, status {:#x})", edu.factorial_result()?, irq.count, status.0);
        uio.enable_irq()?;
        edu.raise_irq(0x4)?;
        let irq = uio.wait_irq(Some(Duration::from_secs(5)))?;
        println!("interrupt  raised 0x4: #{} (missed {}), status {:#x}", irq.count, irq.missed, edu.irq_status()?.0);
        edu.ack_irq(0x4)?;
    } else {
        edu.raise_irq(0x4)?;
        println!("interrupt  raised 0x4, status {:#x}", edu.irq_status()?.0);
        edu.ack_irq(0x4)?;
    }
    println!("irq status after ack {:#x}", edu.irq_status()?.0);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--fake") {
        let edu = Edu::new(EduModel::fake(3))?;
        return run(&edu, None);
    }
    let mut uio = Uio::find_pci(PciId::EDU)?;
    let edu = Edu::new(uio.map(0)?)?;
    run(&edu, Some(&mut uio))
}
