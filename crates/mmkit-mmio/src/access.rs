//! Access widths and the per-device rules that say which widths a device accepts where.
//!
//! Every read and write, on a real region or on a [`FakeRegisters`](crate::FakeRegisters), goes
//! through [`check_access`] first: the access must lie inside the region, be naturally aligned,
//! and have a width the device accepts at that offset. A violation is an [`Error`], never an
//! access.
#![deny(unsafe_code)]

use std::fmt;
use std::ops::Range;

use crate::error::{Error, ErrorKind, Result};

/// The width of one register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    /// 8 bits (`u8`).
    W8,
    /// 16 bits (`u16`).
    W16,
    /// 32 bits (`u32`).
    W32,
    /// 64 bits (`u64`).
    W64,
}

impl Width {
    /// All widths, narrowest first.
    pub const ALL: [Width; 4] = [Width::W8, Width::W16, Width::W32, Width::W64];

    /// The width in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Width::W8 => 1,
            Width::W16 => 2,
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }

    /// The width in bits.
    pub const fn bits(self) -> u32 {
        (self.bytes() * 8) as u32
    }

    /// The width with this many bits (8, 16, 32 or 64).
    pub fn from_bits(bits: u32) -> Option<Width> {
        match bits {
            8 => Some(Width::W8),
            16 => Some(Width::W16),
            32 => Some(Width::W32),
            64 => Some(Width::W64),
            _ => None,
        }
    }

    /// The largest value of this width.
    pub const fn max_value(self) -> u64 {
        match self {
            Width::W64 => u64::MAX,
            w => (1u64 << w.bits()) - 1,
        }
    }

    const fn mask_bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Width {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

/// A set of access widths.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Widths(u8);

impl Widths {
    /// Every width.
    pub const ANY: Widths = Widths(0b1111);
    /// No width.
    pub const NONE: Widths = Widths(0);

    /// Just `width`.
    pub const fn only(width: Width) -> Widths {
        Widths(width.mask_bit())
    }

    /// This set plus `width`.
    pub const fn and(self, width: Width) -> Widths {
        Widths(self.0 | width.mask_bit())
    }

    /// Whether `width` is in the set.
    pub const fn contains(self, width: Width) -> bool {
        self.0 & width.mask_bit() != 0
    }
}

impl fmt::Debug for Widths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for Widths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> =
            Width::ALL.iter().filter(|w| self.contains(**w)).map(|w| w.bits().to_string()).collect();
        match names.len() {
            0 => f.write_str("no"),
            1 => write!(f, "{}-bit", names[0]),
            _ => write!(f, "{}-bit", names.join("/")),
        }
    }
}

/// Which access widths a device accepts at which offsets.
///
/// Rules are a list of offset ranges with the widths allowed there; offsets no rule covers
/// accept every width. The first matching rule wins. Devices often ignore (or mis-handle)
/// accesses of the wrong width: QEMU's edu device silently drops anything but 32-bit accesses
/// below `0x80`, so a driver that reads one byte of its ident register gets garbage, not an
/// error. Describing that as [`AccessRules::edu`] turns such bugs into errors.
///
/// ```
/// use mmkit_mmio::{AccessRules, Width};
/// let rules = AccessRules::edu();
/// assert!(rules.allows(0x00, Width::W32));
/// assert!(!rules.allows(0x00, Width::W8));
/// assert!(rules.allows(0x80, Width::W64));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessRules {
    name: Option<String>,
    rules: Vec<(Range<u64>, Widths)>,
}

impl AccessRules {
    /// No restrictions beyond bounds and natural alignment.
    pub fn any() -> Self {
        Self::default()
    }

    /// Adds a rule: in `range`, only `widths` are allowed.
    pub fn allow(mut self, range: Range<u64>, widths: Widths) -> Self {
        self.rules.push((range, widths));
        self
    }

    /// Names the device the rules belong to (used in error messages).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The device name given by [`AccessRules::named`].
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// QEMU's `edu` device (PCI `1234:11e8`): only 32-bit accesses below `0x80`, 32- or 64-bit
    /// from `0x80` on (the DMA registers).
    pub fn edu() -> Self {
        AccessRules::any()
            .named("edu")
            .allow(0..0x80, Widths::only(Width::W32))
            .allow(0x80..u64::MAX, Widths::only(Width::W32).and(Width::W64))
    }

    /// QEMU's `ivshmem` register BAR0 (PCI `1af4:1110`, 256 bytes): 32-bit registers only
    /// (interrupt mask and status, IV position, doorbell).
    pub fn ivshmem_registers() -> Self {
        AccessRules::any().named("ivshmem registers").allow(0..0x100, Widths::only(Width::W32))
    }

    /// QEMU's `ivshmem` BAR2: plain shared memory, every width.
    pub fn ivshmem_memory() -> Self {
        AccessRules::any().named("ivshmem shared memory")
    }

    /// The rules for BAR0 of a known PCI device, by vendor and device ID, or
    /// [`AccessRules::any`] (see [`AccessRules::for_pci_bar`]).
    pub fn for_pci_id(vendor: u16, device: u16) -> Self {
        Self::for_pci_bar(vendor, device, 0)
    }

    /// The rules for BAR `bar` of a known PCI device (edu, ivshmem), or [`AccessRules::any`]
    /// (unknown: see [`AccessRules::is_known`]).
    pub fn for_pci_bar(vendor: u16, device: u16, bar: usize) -> Self {
        match (vendor, device, bar) {
            (0x1234, 0x11e8, 0) => Self::edu(),
            (0x1af4, 0x1110, 0) => Self::ivshmem_registers(),
            (0x1af4, 0x1110, 2) => Self::ivshmem_memory(),
            _ => Self::any(),
        }
    }

    /// Whether these rules describe a device (they were [`named`](AccessRules::named): a
    /// built-in device, a register block's layout or a loaded profile), so that the widths
    /// they allow are known to be valid. [`AccessRules::any`] alone is not known: it allows
    /// every width because nothing says otherwise.
    pub fn is_known(&self) -> bool {
        self.name.is_some()
    }

    /// The widths allowed at `offset`.
    pub fn widths_at(&self, offset: u64) -> Widths {
        self.rules.iter().find(|(range, _)| range.contains(&offset)).map_or(Widths::ANY, |(_, widths)| *widths)
    }

    /// Whether an access of `width` at `offset` is allowed (ignoring bounds and alignment).
    pub fn allows(&self, offset: u64, width: Width) -> bool {
        self.widths_at(offset).contains(width)
    }
}

impl AccessRules {
    /// Parses a device profile: the width rules of one register region, as a user writes them
    /// for a device this crate does not know (`mmkit mmio --profile FILE`).
    ///
    /// One item per line; `#` starts a comment. `name NAME` names the device (default
    /// `profile`); `START..END WIDTHS` (or `START..` to the end) allows `WIDTHS` in the byte
    /// range, where `WIDTHS` is `any` or bit counts joined by `/` (`32`, `32/64`). Offsets are
    /// hex (`0x..`) or decimal. The first matching range wins; offsets no range covers accept
    /// every width. Parsed rules are [known](AccessRules::is_known).
    ///
    /// ```
    /// use mmkit_mmio::{AccessRules, Width};
    /// let rules = AccessRules::parse_profile("name ivshmem\n0x0..0x100 32  # registers\n")?;
    /// assert!(rules.allows(0xc, Width::W32) && !rules.allows(0xc, Width::W8));
    /// assert_eq!(rules.name(), Some("ivshmem"));
    /// # Ok::<(), mmkit_mmio::Error>(())
    /// ```
    pub fn parse_profile(text: &str) -> Result<Self> {
        let mut rules = AccessRules::any().named("profile");
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |what: &str| {
                Error::new("parse device profile", ErrorKind::Parse)
                    .with_detail(format!("line {}: {what}: {raw:?}", n + 1))
            };
            let (first, rest) = line.split_once(char::is_whitespace).ok_or_else(|| bad("expected two fields"))?;
            let rest = rest.trim();
            if first == "name" {
                rules.name = Some(rest.to_owned());
                continue;
            }
            let (start, end) = first.split_once("..").ok_or_else(|| bad("expected a range START..END"))?;
            let start = crate::sysfs::parse_number(start).ok_or_else(|| bad("bad range start"))?;
            let end = match end {
                "" => u64::MAX,
                e => crate::sysfs::parse_number(e).ok_or_else(|| bad("bad range end"))?,
            };
            if end <= start {
                return Err(bad("empty range"));
            }
            let widths = match rest {
                "any" => Widths::ANY,
                list => list.split('/').try_fold(Widths::NONE, |acc, bits| {
                    let w = bits.trim().parse().ok().and_then(Width::from_bits);
                    w.map(|w| acc.and(w)).ok_or_else(|| bad("widths are `any` or 8/16/32/64 joined by `/`"))
                })?,
            };
            rules.rules.push((start..end, widths));
        }
        Ok(rules)
    }
}

/// Checks an access of `width` at `offset` into a region of `len` bytes under `rules`.
///
/// The returned error names the operation (`op`) and the byte range; the caller adds the
/// region's path.
pub fn check_access(op: &'static str, len: usize, rules: &AccessRules, offset: usize, width: Width) -> Result<()> {
    check_access_at(op, len, rules, offset, width, 0)
}

/// [`check_access`] for a region whose offset 0 lies at address `base`: alignment is the
/// address's (`base + offset`), as the bus sees it, not the offset's. A region may start off
/// alignment (a UIO map with an odd `offset`); its registers are still aligned.
pub(crate) fn check_access_at(
    op: &'static str,
    len: usize,
    rules: &AccessRules,
    offset: usize,
    width: Width,
    base: usize,
) -> Result<()> {
    let size = width.bytes();
    let err = |kind| Error::new(op, kind).with_range(offset as u64, size as u64);
    match offset.checked_add(size) {
        Some(end) if end <= len => {}
        _ => {
            return Err(err(ErrorKind::OutOfBounds).with_detail(format!("past the end of the {len:#x}-byte region")));
        }
    }
    let addr = base.wrapping_add(offset);
    if addr & (size - 1) != 0 {
        let detail = match base {
            0 => format!("offset {offset:#x} is not aligned to {size} bytes"),
            _ => format!("offset {offset:#x} (address {addr:#x}) is not aligned to {size} bytes"),
        };
        return Err(err(ErrorKind::Misaligned).with_detail(detail));
    }
    let allowed = rules.widths_at(offset as u64);
    if !allowed.contains(width) {
        let who = rules.name().unwrap_or("the device");
        return Err(err(ErrorKind::WidthNotAllowed)
            .with_detail(format!("{width} access not allowed: {who} accepts only {allowed} accesses at {offset:#x}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edu_rules() {
        let r = AccessRules::edu();
        for off in [0u64, 4, 8, 0x20, 0x24, 0x60, 0x64, 0x7c] {
            assert!(r.allows(off, Width::W32));
            assert!(!r.allows(off, Width::W8));
            assert!(!r.allows(off, Width::W16));
            assert!(!r.allows(off, Width::W64));
        }
        assert!(r.allows(0x80, Width::W64));
        assert!(r.allows(0x88, Width::W32));
        assert!(!r.allows(0x88, Width::W8));
        assert_eq!(AccessRules::for_pci_id(0x1234, 0x11e8), r);
        assert_eq!(AccessRules::for_pci_id(0x8086, 0x100e), AccessRules::any());
    }

    #[test]
    fn errors_name_the_problem() {
        let r = AccessRules::edu();
        let e = check_access("read", 0x100, &r, 0x100, Width::W32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfBounds);
        assert_eq!(e.range(), Some((0x100, 4)));
        let e = check_access("read", 0x100, &r, 0xfe, Width::W32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfBounds);
        let e = check_access("read", 0x100, &r, 0x82, Width::W32).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misaligned);
        let e = check_access("write", 0x100, &r, 0x0, Width::W8).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WidthNotAllowed);
        assert_eq!(
            e.to_string(),
            "write [offset 0x0, len 0x1] failed: 8-bit access not allowed: edu accepts only \
             32-bit accesses at 0x0"
        );
        let e = check_access("read", usize::MAX, &r, usize::MAX - 1, Width::W64).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfBounds);
        assert!(check_access("read", 0x100, &r, 0xf8, Width::W64).is_ok());
        assert!(check_access("read", 0x100, &AccessRules::any(), 0x3, Width::W8).is_ok());
    }

    #[test]
    fn profiles_parse_and_errors_name_the_line() {
        let r = AccessRules::parse_profile("# ivshmem\nname ivshmem regs\n0x0..0x10 32\n16.. 8/16/32/64\n").unwrap();
        assert_eq!(r.name(), Some("ivshmem regs"));
        assert!(r.is_known());
        assert!(r.allows(0x8, Width::W32) && !r.allows(0x8, Width::W16));
        assert!(r.allows(0x10, Width::W8) && r.allows(u64::MAX - 1, Width::W64));
        let unnamed = AccessRules::parse_profile("").unwrap();
        assert!(unnamed.is_known() && unnamed.allows(0, Width::W8));
        assert!(!AccessRules::any().is_known());
        for (text, what) in [
            ("0x0..0x10 24", "line 1: widths"),
            ("name x\n0x10..0x10 32", "line 2: empty range"),
            ("0x10 32", "expected a range"),
            ("0x0..zz 32", "bad range end"),
            ("lonely", "expected two fields"),
        ] {
            let e = AccessRules::parse_profile(text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse);
            assert!(e.to_string().contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn widths_display() {
        assert_eq!(Widths::only(Width::W32).and(Width::W64).to_string(), "32/64-bit");
        assert_eq!(Widths::ANY.to_string(), "8/16/32/64-bit");
        assert_eq!(Width::from_bits(16), Some(Width::W16));
        assert_eq!(Width::from_bits(12), None);
        assert_eq!(Width::W16.max_value(), 0xffff);
        assert_eq!(Width::W64.max_value(), u64::MAX);
    }

    proptest! {
        /// An access passes exactly when it is inside, aligned and of an allowed width.
        #[test]
        fn check_matches_the_definition(len in 0usize..0x400, offset in 0usize..0x500, w in 0usize..4) {
            let width = Width::ALL[w];
            let rules = AccessRules::edu();
            let inside = offset + width.bytes() <= len;
            let aligned = offset % width.bytes() == 0;
            let allowed = rules.allows(offset as u64, width);
            let result = check_access("read", len, &rules, offset, width);
            prop_assert_eq!(result.is_ok(), inside && aligned && allowed);
            if let Err(e) = result {
                let expected = if !inside { ErrorKind::OutOfBounds }
                    else if !aligned { ErrorKind::Misaligned }
                    else { ErrorKind::WidthNotAllowed };
                prop_assert_eq!(e.kind(), expected);
            }
        }
    }
}
