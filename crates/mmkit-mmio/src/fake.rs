//! A per-instance fake register block, for unit tests of drivers.
//!
//! [`FakeRegisters`] implements [`Registers`] with the same bounds, alignment and width checks
//! as a real [`MmioRegion`](crate::MmioRegion), over plain memory or a [`DeviceModel`] that
//! behaves like the device. Each fake is its own instance (no global state), so tests run in
//! parallel, and it records the last accesses for assertions (the last
//! [`FakeRegisters::LOG_CAPACITY`], counting those it forgot: a driver polling a status
//! register in a loop does not grow the log without bound).
#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::access::{check_access, AccessRules, Width};
use crate::error::{Error, ErrorKind, Result};
use crate::registers::Registers;

/// The backing bytes of a fake register block (little-endian, like x86 and PCI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    bytes: Vec<u8>,
}

impl Store {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        Store { bytes: vec![0; len] }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `width` bits at `offset`, zero-extended. Panics when out of bounds.
    pub fn get(&self, offset: usize, width: Width) -> u64 {
        let mut buf = [0u8; 8];
        buf[..width.bytes()].copy_from_slice(&self.bytes[offset..offset + width.bytes()]);
        u64::from_le_bytes(buf)
    }

    /// Stores the low `width` bits of `value` at `offset`. Panics when out of bounds.
    pub fn set(&mut self, offset: usize, width: Width, value: u64) {
        let n = width.bytes();
        self.bytes[offset..offset + n].copy_from_slice(&value.to_le_bytes()[..n]);
    }
}

/// How a fake device answers accesses. The defaults behave like plain memory.
///
/// ```
/// use mmkit_mmio::{DeviceModel, FakeRegisters, Registers, Store, Width};
///
/// /// Reads of 0x04 return the complement of what was written, like QEMU's edu device.
/// struct Inverter;
/// impl DeviceModel for Inverter {
///     fn read(&mut self, store: &mut Store, offset: usize, width: Width) -> u64 {
///         let v = store.get(offset, width);
///         if offset == 0x04 { !v & width.max_value() } else { v }
///     }
/// }
///
/// let fake = FakeRegisters::with_model(0x10, Inverter);
/// fake.write_u32(0x04, 0x0f0f_0000)?;
/// assert_eq!(fake.read_u32(0x04)?, 0xf0f0_ffff);
/// # Ok::<(), mmkit_mmio::Error>(())
/// ```
pub trait DeviceModel: Send {
    /// Answers a checked read of `width` at `offset`.
    fn read(&mut self, store: &mut Store, offset: usize, width: Width) -> u64 {
        store.get(offset, width)
    }

    /// Handles a checked write of `value` (`width` bits) at `offset`.
    fn write(&mut self, store: &mut Store, offset: usize, width: Width, value: u64) {
        store.set(offset, width, value);
    }
}

/// Plain memory: reads return what was last written.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainMemory;

impl DeviceModel for PlainMemory {}

/// Whether a recorded access was a read or a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// A read.
    Read,
    /// A write.
    Write,
}

/// One access made to a [`FakeRegisters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Read or write.
    pub kind: AccessKind,
    /// Byte offset.
    pub offset: usize,
    /// Width.
    pub width: Width,
    /// The value read or written.
    pub value: u64,
}

struct State {
    store: Store,
    model: Box<dyn DeviceModel>,
    log: AccessLog,
}

/// The last `capacity` accesses, and how many older ones were forgotten.
struct AccessLog {
    entries: VecDeque<Access>,
    capacity: usize,
    dropped: u64,
}

impl AccessLog {
    fn push(&mut self, access: Access) {
        if self.entries.len() >= self.capacity {
            self.dropped += 1;
            if self.entries.pop_front().is_none() {
                return; // capacity 0: nothing is kept
            }
        }
        self.entries.push_back(access);
    }
}

/// A fake register block: checked like a real region, backed by memory or a [`DeviceModel`].
///
/// One difference: on a 32-bit target a real [`MmioRegion`](crate::MmioRegion) refuses 64-bit
/// accesses (they would be two bus accesses there, see
/// [`MmioRegion::check`](crate::MmioRegion::check)); a fake accepts them on every target, so a
/// driver with 64-bit registers that passes its fake tests on such a target fails at its block's
/// `new` on the device.
pub struct FakeRegisters {
    len: usize,
    rules: AccessRules,
    state: Mutex<State>,
}

impl FakeRegisters {
    /// `len` bytes of plain memory, all zero, accepting every width.
    pub fn new(len: usize) -> Self {
        Self::with_model(len, PlainMemory)
    }

    /// `len` bytes answered by `model`.
    pub fn with_model(len: usize, model: impl DeviceModel + 'static) -> Self {
        FakeRegisters {
            len,
            rules: AccessRules::any(),
            state: Mutex::new(State {
                store: Store::new(len),
                model: Box::new(model),
                log: AccessLog { entries: VecDeque::new(), capacity: Self::LOG_CAPACITY, dropped: 0 },
            }),
        }
    }

    /// How many accesses a fake keeps by default: the last 65536 (about 2 MiB). Older ones are
    /// forgotten and counted ([`dropped_accesses`](Self::dropped_accesses)); a test of a long
    /// run sets its own bound with [`log_capacity`](Self::log_capacity).
    pub const LOG_CAPACITY: usize = 65_536;

    /// The same fake keeping the last `capacity` accesses (0: none, only counted) instead of
    /// [`LOG_CAPACITY`](Self::LOG_CAPACITY).
    ///
    /// ```
    /// use mmkit_mmio::{FakeRegisters, Registers};
    /// let fake = FakeRegisters::new(0x10).log_capacity(2);
    /// for v in 1..=5 {
    ///     fake.write_u32(0, v)?;
    /// }
    /// let kept: Vec<u64> = fake.accesses().iter().map(|a| a.value).collect();
    /// assert_eq!(kept, [4, 5]); // the last two, oldest first
    /// assert_eq!(fake.dropped_accesses(), 3);
    /// # Ok::<(), mmkit_mmio::Error>(())
    /// ```
    pub fn log_capacity(self, capacity: usize) -> Self {
        {
            let mut state = self.state();
            let log = &mut state.log;
            log.capacity = capacity;
            while log.entries.len() > capacity {
                log.entries.pop_front();
                log.dropped += 1;
            }
        }
        self
    }

    /// The same fake with width `rules` (e.g. [`AccessRules::edu`]).
    pub fn rules(mut self, rules: AccessRules) -> Self {
        self.rules = rules;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in a model while locked leaves the state usable for assertions.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The 32 bits at `offset`, bypassing the model, the rules and the log (a test's look at
    /// the fake, like indexing a slice).
    ///
    /// # Panics
    /// When the 4 bytes at `offset` are not all inside the fake.
    pub fn peek(&self, offset: usize) -> u32 {
        self.assert_inside("peek", offset);
        self.state().store.get(offset, Width::W32) as u32
    }

    /// Stores 32 bits at `offset`, bypassing the model, the rules and the log.
    ///
    /// # Panics
    /// When the 4 bytes at `offset` are not all inside the fake.
    pub fn poke(&self, offset: usize, value: u32) {
        self.assert_inside("poke", offset);
        self.state().store.set(offset, Width::W32, value.into());
    }

    fn assert_inside(&self, op: &str, offset: usize) {
        assert!(
            offset.checked_add(4).is_some_and(|end| end <= self.len),
            "FakeRegisters::{op} at offset {offset:#x}: the 4 bytes are not inside the {:#x}-byte fake",
            self.len
        );
    }

    /// The accesses recorded, oldest first: every one since the fake was made (or
    /// [cleared](Self::clear_accesses)), or the last [`LOG_CAPACITY`](Self::LOG_CAPACITY)
    /// (see [`log_capacity`](Self::log_capacity)) when there were more.
    pub fn accesses(&self) -> Vec<Access> {
        self.state().log.entries.iter().copied().collect()
    }

    /// How many accesses were forgotten to keep the log at its capacity (0 while
    /// [`accesses`](Self::accesses) holds every one).
    pub fn dropped_accesses(&self) -> u64 {
        self.state().log.dropped
    }

    /// Forgets the recorded accesses, and the count of forgotten ones.
    pub fn clear_accesses(&self) {
        let log = &mut self.state().log;
        log.entries.clear();
        log.dropped = 0;
    }
}

impl Registers for FakeRegisters {
    fn len(&self) -> usize {
        self.len
    }

    fn check(&self, op: &'static str, offset: usize, width: Width) -> Result<()> {
        check_access(op, self.len, &self.rules, offset, width).map_err(|e| e.with_target("fake registers"))
    }

    fn read(&self, offset: usize, width: Width) -> Result<u64> {
        self.check("read", offset, width)?;
        let mut state = self.state();
        let State { store, model, log } = &mut *state;
        let value = model.read(store, offset, width) & width.max_value();
        log.push(Access { kind: AccessKind::Read, offset, width, value });
        Ok(value)
    }

    fn write(&self, offset: usize, width: Width, value: u64) -> Result<()> {
        self.check("write", offset, width)?;
        if value > width.max_value() {
            return Err(Error::new("write", ErrorKind::InvalidArgument)
                .with_target("fake registers")
                .with_range(offset as u64, width.bytes() as u64)
                .with_detail(format!("value {value:#x} does not fit in a {width} access")));
        }
        let mut state = self.state();
        let State { store, model, log } = &mut *state;
        model.write(store, offset, width, value);
        log.push(Access { kind: AccessKind::Write, offset, width, value });
        Ok(())
    }
}

impl fmt::Debug for FakeRegisters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRegisters")
            .field("len", &format_args!("{:#x}", self.len))
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_memory_round_trips_every_width() {
        let fake = FakeRegisters::new(0x20);
        fake.write_u8(1, 0xab).unwrap();
        fake.write_u16(2, 0xcdef).unwrap();
        fake.write_u32(4, 0x1234_5678).unwrap();
        fake.write_u64(8, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(fake.read_u8(1).unwrap(), 0xab);
        assert_eq!(fake.read_u16(2).unwrap(), 0xcdef);
        assert_eq!(fake.read_u32(0).unwrap(), 0xcdef_ab00);
        assert_eq!(fake.read_u32(4).unwrap(), 0x1234_5678);
        assert_eq!(fake.read_u64(8).unwrap(), 0x0102_0304_0506_0708);
        assert_eq!(fake.peek(8), 0x0506_0708);
    }

    #[test]
    fn fakes_are_independent_instances() {
        let a = FakeRegisters::new(8);
        let b = FakeRegisters::new(8);
        a.write_u32(0, 7).unwrap();
        assert_eq!(b.read_u32(0).unwrap(), 0);
        assert_eq!(a.accesses().len(), 1);
        assert_eq!(b.accesses().len(), 1);
    }

    #[test]
    fn checks_like_a_real_region() {
        let fake = FakeRegisters::new(0x100).rules(AccessRules::edu());
        assert_eq!(fake.read_u8(0).unwrap_err().kind(), ErrorKind::WidthNotAllowed);
        assert_eq!(fake.read_u32(0x100).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(fake.read_u32(0x102).unwrap_err().kind(), ErrorKind::OutOfBounds);
        assert_eq!(fake.read_u32(0x82).unwrap_err().kind(), ErrorKind::Misaligned);
        assert_eq!(fake.write(0x80, Width::W32, 1 << 32).unwrap_err().kind(), ErrorKind::InvalidArgument);
        let e = fake.read_u16(0x10).unwrap_err();
        assert_eq!(
            e.to_string(),
            "read of fake registers [offset 0x10, len 0x2] failed: 16-bit access not allowed: \
             edu accepts only 32-bit accesses at 0x10"
        );
        // Refused accesses never reach the model or the log.
        assert!(fake.accesses().is_empty());
    }

    #[test]
    fn log_records_reads_and_writes() {
        let fake = FakeRegisters::new(8);
        fake.write_u32(4, 9).unwrap();
        fake.read_u32(4).unwrap();
        assert_eq!(
            fake.accesses(),
            vec![
                Access { kind: AccessKind::Write, offset: 4, width: Width::W32, value: 9 },
                Access { kind: AccessKind::Read, offset: 4, width: Width::W32, value: 9 },
            ]
        );
        fake.clear_accesses();
        assert!(fake.accesses().is_empty());
    }

    /// Regression: the log kept every access: a driver polling a status register for a long
    /// test grew it without bound (32 bytes an access, gigabytes for a long poll). It keeps the
    /// last `LOG_CAPACITY` and counts the others.
    #[test]
    fn the_log_keeps_the_last_accesses_and_counts_the_others() {
        let fake = FakeRegisters::new(8);
        let extra = 10;
        for i in 0..FakeRegisters::LOG_CAPACITY + extra {
            fake.write_u32(0, i as u64 as u32).unwrap();
        }
        let log = fake.accesses();
        assert_eq!(log.len(), FakeRegisters::LOG_CAPACITY);
        assert_eq!(fake.dropped_accesses(), extra as u64);
        assert_eq!(log[0].value, extra as u64);
        assert_eq!(log.last().unwrap().value, (FakeRegisters::LOG_CAPACITY + extra - 1) as u64);
        fake.clear_accesses();
        assert_eq!((fake.accesses().len(), fake.dropped_accesses()), (0, 0));
        // A capacity of 0 keeps nothing and counts everything; shrinking forgets the oldest.
        let none = FakeRegisters::new(8).log_capacity(0);
        none.read_u32(0).unwrap();
        assert_eq!((none.accesses().len(), none.dropped_accesses()), (0, 1));
        let fake = FakeRegisters::new(8);
        (0..5).for_each(|v| fake.write_u32(0, v).unwrap());
        let fake = fake.log_capacity(3);
        assert_eq!(fake.accesses().iter().map(|a| a.value).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(fake.dropped_accesses(), 2);
    }
}
