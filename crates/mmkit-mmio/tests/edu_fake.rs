//! The edu example driver against the edu model on a fake register block (runs on any host).

#[allow(dead_code)]
#[path = "../examples/edu.rs"]
mod edu;

use std::time::Duration;

use edu::{factorial_u32, Edu, EduModel, EduRegisters, IrqStatus, Status};
use mmkit_mmio::{AccessKind, ErrorKind, FakeRegisters, Registers, Width};

#[test]
fn identifies_and_checks_liveness() {
    let edu = Edu::new(EduModel::fake(0)).unwrap();
    assert_eq!(edu.ident().unwrap(), 0x0100_00ed);
    assert_eq!(edu.version().unwrap(), Some((1, 0)));
    for v in [0, 1, 0x1234_5678, u32::MAX] {
        assert_eq!(edu.liveness(v).unwrap(), !v);
        assert!(edu.is_alive(v).unwrap());
    }
}

#[test]
fn factorial_by_polling_polls_until_done() {
    let edu = Edu::new(EduModel::fake(5)).unwrap();
    for n in [0, 1, 5, 10, 12, 13] {
        assert_eq!(edu.factorial_polled(n, Duration::from_secs(1)).unwrap(), Some(factorial_u32(n)));
    }
    // The driver polled the status register (0x20) with 32-bit reads, and never wrote a
    // register it should not touch.
    let log = edu.registers().registers().accesses();
    let polls = log.iter().filter(|a| a.kind == AccessKind::Read && a.offset == 0x20).count();
    assert!(polls >= 6 * 6, "{polls} status polls");
    assert!(log.iter().all(|a| a.width == Width::W32));
    assert!(log.iter().filter(|a| a.kind == AccessKind::Write).all(|a| [0x08, 0x20].contains(&a.offset)));
}

#[test]
fn factorial_with_interrupt_sets_irq_status() {
    let edu = Edu::new(EduModel::fake(0)).unwrap();
    edu.start_factorial(6, true).unwrap();
    assert!(!edu.computing().unwrap());
    assert_eq!(edu.factorial_result().unwrap(), 720);
    assert!(edu.irq_status().unwrap().is_set(IrqStatus::FACTORIAL));
    edu.ack_irq(0x1).unwrap();
    assert_eq!(edu.irq_status().unwrap(), IrqStatus(0));
    assert!(edu.registers().status().read().unwrap().is_set(Status::IRQ_ON_FACTORIAL));
}

#[test]
fn raise_and_ack() {
    let edu = Edu::new(EduModel::fake(0)).unwrap();
    edu.raise_irq(0x4).unwrap();
    edu.raise_irq(0x100).unwrap();
    assert_eq!(edu.irq_status().unwrap().0, 0x104);
    assert!(edu.irq_status().unwrap().is_set(IrqStatus::DMA));
    edu.ack_irq(0x4).unwrap();
    assert_eq!(edu.irq_status().unwrap().0, 0x100);
}

#[test]
fn the_register_block_is_checked_against_the_region() {
    // Too small: the DMA registers do not fit.
    let err = EduRegisters::new(FakeRegisters::new(0x80)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds);
    assert!(err.to_string().contains("register EduRegisters::dma_source"), "{err}");
    // Rules that forbid 32-bit accesses at the ident register.
    let rules = mmkit_mmio::AccessRules::any().allow(0..4, mmkit_mmio::Widths::only(Width::W8));
    let err = EduRegisters::new(FakeRegisters::new(0x100).rules(rules)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WidthNotAllowed);
    assert!(err.to_string().contains("EduRegisters::ident"), "{err}");
}

#[test]
fn dump_reads_only_pure_readable_registers() {
    let edu = Edu::new(EduModel::fake(0)).unwrap();
    let names: Vec<_> = edu.registers().dump().unwrap().iter().map(|d| d.info.name).collect();
    assert_eq!(
        names,
        [
            "ident",
            "liveness",
            "factorial",
            "status",
            "irq_status",
            "dma_source",
            "dma_destination",
            "dma_count",
            "dma_command"
        ]
    );
    assert!(!EduRegisters::<FakeRegisters>::LAYOUT.iter().any(|r| r.name == "irq_ack" && r.readable));
}

#[test]
fn the_edu_rules_refuse_narrow_accesses_on_the_fake() {
    let fake = EduModel::fake(0);
    assert_eq!(fake.read_u8(0).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
    assert_eq!(fake.read_u64(0).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
    assert_eq!(fake.read_u64(0x80).unwrap(), 0);
    assert_eq!(fake.read_u32(0x10_0000).unwrap_err().kind(), ErrorKind::OutOfBounds);
}
