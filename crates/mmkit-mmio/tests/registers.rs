//! Typed registers: access markers, bit fields, side effects, layout checks (host).

use mmkit_mmio::{
    bitfields, register_block, DeviceModel, ErrorKind, FakeRegisters, ReadOnly, ReadWrite, Registers, SideEffects,
    Store, Width, WriteOnly,
};

bitfields! {
    /// Control.
    pub struct Control(u16) {
        /// Enable.
        ENABLE: 0;
        /// Mode, bits 4-6.
        MODE: 4..=6;
        /// Top bit.
        TOP: 15;
    }
}

register_block! {
    /// A block with every kind of register.
    pub struct Block {
        /// Pure read-only.
        0x0 => id: ReadOnly<u32>,
        /// A FIFO whose reads pop.
        0x4 => fifo: ReadOnly<u32, SideEffects>,
        /// 16-bit control with fields.
        0x8 => control: ReadWrite<Control>,
        /// Byte-wide write-only doorbell.
        0xa => doorbell: WriteOnly<u8>,
        /// 64-bit counter.
        0x10 => counter: ReadWrite<u64>,
        /// Read-write with read side effects (read-to-clear status).
        0x18 => events: ReadWrite<u32, SideEffects>,
    }
}

/// Counts reads of the FIFO and the events register; each FIFO read returns the next number.
#[derive(Default)]
struct Fifo {
    next: u32,
}

impl DeviceModel for Fifo {
    fn read(&mut self, store: &mut Store, offset: usize, width: Width) -> u64 {
        match offset {
            0x4 => {
                self.next += 1;
                u64::from(self.next)
            }
            0x18 => {
                let v = store.get(0x18, width);
                store.set(0x18, width, 0);
                v
            }
            _ => store.get(offset, width),
        }
    }
}

#[test]
fn fields_get_set_modify() {
    let block = Block::new(FakeRegisters::new(0x20)).unwrap();
    block.control().set(Control::MODE, 5).unwrap();
    block.control().set(Control::ENABLE, 1).unwrap();
    assert_eq!(block.registers().read_u16(0x8).unwrap(), 0x51);
    assert_eq!(block.control().get(Control::MODE).unwrap(), 5);
    block.control().modify(|c| c.with(Control::MODE, 2).with(Control::TOP, 1)).unwrap();
    let c = block.control().read().unwrap();
    assert_eq!((c.get(Control::ENABLE), c.get(Control::MODE), c.get(Control::TOP)), (1, 2, 1));
    assert_eq!(c.0, 0x8021);
    // A value wider than the field is refused, not truncated into neighbours.
    let err = block.control().set(Control::MODE, 8).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert_eq!(block.control().read().unwrap().0, 0x8021);
    // Writes are exactly the register's width.
    block.doorbell().write(0xff).unwrap();
    assert_eq!(block.registers().read_u8(0xa).unwrap(), 0xff);
    assert_eq!(block.registers().read_u16(0x8).unwrap(), 0x8021);
    block.counter().write(u64::MAX - 1).unwrap();
    assert_eq!(block.counter().read().unwrap(), u64::MAX - 1);
}

#[test]
fn side_effect_reads_happen_only_when_asked() {
    let fake = FakeRegisters::with_model(0x20, Fifo::default());
    let block = Block::new(&fake).unwrap();
    assert_eq!(block.fifo().read().unwrap(), 1);
    assert_eq!(block.fifo().read().unwrap(), 2);
    // dump skips the FIFO, the events register and the write-only doorbell.
    let dumped: Vec<_> = block.dump().unwrap().iter().map(|d| (d.info.name, d.info.width)).collect();
    assert_eq!(dumped, [("id", Width::W32), ("control", Width::W16), ("counter", Width::W64)]);
    assert_eq!(block.fifo().read().unwrap(), 3, "dump must not have popped the FIFO");
    fake.write_u32(0x18, 0x5).unwrap();
    block.dump().unwrap();
    assert_eq!(block.events().read().unwrap(), 0x5, "dump must not have cleared the events");
    assert_eq!(block.events().read().unwrap(), 0);
}

#[test]
fn layout_is_listed_and_checked() {
    let layout = Block::<FakeRegisters>::LAYOUT;
    assert_eq!(layout.len(), 6);
    let fifo = layout.iter().find(|r| r.name == "fifo").unwrap();
    assert!(fifo.readable && !fifo.writable && fifo.read_side_effects);
    let doorbell = layout.iter().find(|r| r.name == "doorbell").unwrap();
    assert_eq!((doorbell.offset, doorbell.width, doorbell.readable), (0xa, Width::W8, false));
    // 0x18 + 4 = 0x1c bytes needed.
    assert!(Block::new(FakeRegisters::new(0x1c)).is_ok());
    let err = Block::new(FakeRegisters::new(0x1b)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfBounds);
    assert!(err.to_string().contains("Block::events"), "{err}");
}

register_block! {
    /// A misaligned layout: a 32-bit register at 0x2.
    pub struct Misaligned {
        /// Bad.
        0x2 => bad: ReadOnly<u32>,
    }
}

#[test]
fn misaligned_layouts_are_refused() {
    let err = Misaligned::new(FakeRegisters::new(0x10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misaligned);
}

/// A register block states the widths its device accepts: the rules from its layout refuse a
/// byte read inside a 32-bit register, allow each register's own width, and are known.
#[test]
fn a_block_layout_states_the_device_widths() {
    let rules = Block::<FakeRegisters>::access_rules();
    assert!(rules.is_known());
    assert_eq!(rules.name(), Some("Block"));
    assert!(rules.allows(0x0, Width::W32));
    assert!(!rules.allows(0x0, Width::W8));
    assert!(!rules.allows(0x2, Width::W16));
    assert!(rules.allows(0x8, Width::W16) && !rules.allows(0x8, Width::W32));
    assert!(rules.allows(0xa, Width::W8));
    assert!(rules.allows(0x10, Width::W64) && !rules.allows(0x14, Width::W32));
    // Between registers nothing is stated: any width.
    assert!(rules.allows(0xc, Width::W8));
    // Applied to a raw region, a wrong-width access is an error, not a silent 0.
    let fake = FakeRegisters::new(0x20).rules(rules);
    assert_eq!(fake.read_u8(0x1).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
    assert!(Block::new(&fake).is_ok());
}

register_block! {
    /// A 32-bit status register whose low byte is also a register of its own, and a register
    /// at the top of the address space.
    pub struct Overlapping {
        /// The whole register.
        0x0 => whole: ReadOnly<u32>,
        /// Its low byte.
        0x0 => low: ReadOnly<u8>,
        /// Its high half.
        0x2 => high: ReadOnly<u16>,
    }
}

#[cfg(target_pointer_width = "64")]
register_block! {
    /// A register no region reaches.
    pub struct AtTheTop {
        /// Far away.
        0xffff_ffff_ffff_fffc => far: ReadOnly<u32>,
    }
}

/// Regression: a block's own `access_rules()` refused the block (the first register's rule won
/// where two overlap: a byte-wide read of a 32-bit register's low byte), and a register at the
/// top of the address space overflowed computing its rule (a panic in debug builds).
#[test]
fn a_blocks_own_rules_accept_overlapping_registers() {
    let rules = Overlapping::<FakeRegisters>::access_rules();
    assert!(rules.allows(0, Width::W32) && rules.allows(0, Width::W8));
    assert!(rules.allows(2, Width::W16) && rules.allows(2, Width::W32) && !rules.allows(1, Width::W8));
    let fake = FakeRegisters::new(4).rules(rules);
    fake.poke(0, 0x1122_3344);
    let block = Overlapping::new(&fake).unwrap();
    assert_eq!((block.whole().read().unwrap(), block.low().read().unwrap()), (0x1122_3344, 0x44));
    assert_eq!(block.high().read().unwrap(), 0x1122);
    #[cfg(target_pointer_width = "64")]
    {
        let top = AtTheTop::<FakeRegisters>::access_rules();
        assert!(top.allows(0xffff_ffff_ffff_fffc, Width::W32) && !top.allows(0xffff_ffff_ffff_fffc, Width::W8));
        assert_eq!(AtTheTop::new(FakeRegisters::new(16)).unwrap_err().kind(), ErrorKind::OutOfBounds);
    }
}
