//! The README's tour, "Device registers": its lines as written, on QEMU's edu device bound to
//! `uio_pci_generic`, with what its comments claim checked (the liveness register answers the
//! bitwise NOT of what was written; the interrupt arrives).
//!
//! ```text
//! cargo run -p mmkit-mmio --example tour_mmio
//! ```
//!
//! Without the device (any machine but the VM of `vmtest/run`) it says so and exits 0, so the
//! example is compiled and run everywhere: `cargo test -p mmkit-mmio --example tour_mmio` runs
//! it (its test calls `main`), and `vmtest/run` runs it on the device.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without the device, say so (and pass): the README's lines need it.
    match mmkit_mmio::Uio::find_pci("1234:11e8".parse()?) {
        Err(e) if e.kind() == mmkit_mmio::ErrorKind::NotFound => {
            println!("tour_mmio: skipped: no edu device bound to a UIO driver here ({e})");
            return Ok(());
        }
        found => drop(found?),
    }

    // --- the README's lines -------------------------------------------------------------
    let mut uio = mmkit_mmio::Uio::find_pci("1234:11e8".parse()?)?; // QEMU's edu device
    let regs = uio.map(0)?; // BAR0, unmapped on drop
    assert_eq!(regs.read_u32(0x00)?, 0x010000ed); // volatile, bounds/width-checked
    regs.write_u32(0x04, 0x1234_5678)?;
    uio.enable_irq()?; // irqcontrol, or the PCI INTx bit
    regs.write_u32(0x60, 1)?; // ask edu to raise an interrupt
    let irq = uio.wait_irq(Some(std::time::Duration::from_secs(1)))?; // count and missed

    // --- end of the README's lines -----------------------------------------------------

    assert_eq!(regs.read_u32(0x04)?, !0x1234_5678, "edu's liveness register answers the NOT");
    assert!(irq.count >= 1, "{irq:?}");
    regs.write_u32(0x64, 1)?; // acknowledge
    let err = regs.read_u32(regs.len()).unwrap_err();
    assert_eq!(err.kind(), mmkit_mmio::ErrorKind::OutOfBounds, "{err}");
    println!("tour_mmio: ok (interrupt #{}, {} missed)", irq.count, irq.missed);
    Ok(())
}

/// `cargo test` runs the example: the README's lines must compile and do what its comments say.
#[cfg(test)]
#[test]
fn runs_as_the_readme_says() {
    main().unwrap();
}
