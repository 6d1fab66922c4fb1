//! Parsers for the sysfs attributes the sources read, and the PCI names users type.
//!
//! Pure functions over strings, property-tested against the formats the kernel prints
//! (`0x%016llx` for UIO map and PCI resource attributes, `0x%04x` for IDs).
#![deny(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};

/// Parses an unsigned number in hex (`0x1f`, `0X1F`) or decimal (`31`), ignoring surrounding
/// whitespace (sysfs attributes end in a newline) and `_` separators.
pub fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok()
}

/// Parses a hex number with or without `0x` (PCI IDs in `vendor`, `device`, `uevent`).
pub fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

fn parse_error(what: &str, text: &str) -> Error {
    Error::new("parse", ErrorKind::Parse).with_detail(format!("{what}: {text:?}"))
}

/// A PCI device address: `domain:bus:device.function`, e.g. `0000:00:04.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number, below 32.
    pub device: u8,
    /// Function number, below 8.
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

impl FromStr for PciAddress {
    type Err = Error;

    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0), all hex.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || parse_error("not a PCI address (expected [DDDD:]BB:DD.F)", s);
        let t = s.trim();
        let (rest, function) = t.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [bus, dev] => ("0", *bus, *dev),
            [dom, bus, dev] => (*dom, *bus, *dev),
            _ => return Err(bad()),
        };
        let field = |text: &str, max_digits: usize, limit: u64| {
            if text.is_empty() || text.len() > max_digits || text.starts_with("0x") {
                return None;
            }
            parse_hex(text).filter(|v| *v < limit)
        };
        Ok(PciAddress {
            domain: field(domain, 8, 1 << 32).ok_or_else(bad)? as u32,
            bus: field(bus, 2, 256).ok_or_else(bad)? as u8,
            device: field(device, 2, 32).ok_or_else(bad)? as u8,
            function: field(function, 1, 8).ok_or_else(bad)? as u8,
        })
    }
}

/// A PCI vendor and device ID pair, written `vvvv:dddd` (as `lspci -d` takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciId {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
}

impl PciId {
    /// QEMU's edu device, `1234:11e8`.
    pub const EDU: PciId = PciId { vendor: 0x1234, device: 0x11e8 };
    /// QEMU's inter-VM shared memory device (`ivshmem-plain`), `1af4:1110`: a 256-byte
    /// register BAR0 and a prefetchable 64-bit shared-memory BAR2.
    pub const IVSHMEM: PciId = PciId { vendor: 0x1af4, device: 0x1110 };
}

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

impl FromStr for PciId {
    type Err = Error;

    /// Parses `vvvv:dddd` (hex, `0x` optional).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || parse_error("not a PCI ID (expected VENDOR:DEVICE in hex)", s);
        let (v, d) = s.trim().split_once(':').ok_or_else(bad)?;
        let id = |t: &str| parse_hex(t).filter(|n| *n <= 0xffff).map(|n| n as u16);
        Ok(PciId { vendor: id(v).ok_or_else(bad)?, device: id(d).ok_or_else(bad)? })
    }
}

/// Which PCI device a user means: an address or an ID (the first match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciSelector {
    /// A device address (`0000:00:04.0`).
    Address(PciAddress),
    /// A vendor:device ID (`1234:11e8`).
    Id(PciId),
}

impl FromStr for PciSelector {
    type Err = Error;

    /// An address when the text has a `.` (`00:04.0`), otherwise an ID (`1234:11e8`).
    fn from_str(s: &str) -> Result<Self> {
        if s.contains('.') {
            s.parse().map(PciSelector::Address)
        } else {
            s.parse().map(PciSelector::Id)
        }
    }
}

impl fmt::Display for PciSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciSelector::Address(a) => a.fmt(f),
            PciSelector::Id(id) => id.fmt(f),
        }
    }
}

/// `IORESOURCE_IO`: the BAR is in I/O port space.
pub const IORESOURCE_IO: u64 = 0x0000_0100;
/// `IORESOURCE_MEM`: the BAR is in memory space.
pub const IORESOURCE_MEM: u64 = 0x0000_0200;
/// `IORESOURCE_PREFETCH`: the memory BAR is prefetchable.
pub const IORESOURCE_PREFETCH: u64 = 0x0000_2000;
/// `IORESOURCE_MEM_64`: the memory BAR is 64-bit.
pub const IORESOURCE_MEM_64: u64 = 0x0010_0000;

/// One line of a PCI device's `resource` file: a BAR (lines 0-5), the expansion ROM (6) or a
/// bridge window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciResource {
    /// First physical address (0 when unused).
    pub start: u64,
    /// Last physical address, inclusive.
    pub end: u64,
    /// `IORESOURCE_*` flags.
    pub flags: u64,
}

impl PciResource {
    /// Size in bytes (0 for an unused slot).
    pub fn size(&self) -> u64 {
        if self.end <= self.start && self.start == 0 {
            0
        } else {
            self.end.wrapping_sub(self.start).wrapping_add(1)
        }
    }

    /// Whether this is an assigned memory BAR (mappable through `resourceN`).
    pub fn is_memory(&self) -> bool {
        self.flags & IORESOURCE_MEM != 0 && self.size() > 0
    }

    /// Whether this is an I/O port BAR.
    pub fn is_io(&self) -> bool {
        self.flags & IORESOURCE_IO != 0 && self.size() > 0
    }

    /// Whether this is a prefetchable memory BAR.
    pub fn is_prefetchable(&self) -> bool {
        self.flags & IORESOURCE_PREFETCH != 0
    }

    /// Whether this is a 64-bit memory BAR.
    pub fn is_64bit(&self) -> bool {
        self.flags & IORESOURCE_MEM_64 != 0
    }
}

/// Parses a `resource` file: one `0x%016llx 0x%016llx 0x%016llx` line per resource.
pub fn parse_pci_resources(text: &str) -> Result<Vec<PciResource>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let nums: Vec<u64> = line
                .split_whitespace()
                .map(parse_number)
                .collect::<Option<_>>()
                .ok_or_else(|| parse_error("not a PCI resource line (expected START END FLAGS)", line))?;
            match nums.as_slice() {
                [start, end, flags] => Ok(PciResource { start: *start, end: *end, flags: *flags }),
                _ => Err(parse_error("not a PCI resource line (expected START END FLAGS)", line)),
            }
        })
        .collect()
}

/// The attributes of one UIO map (`/sys/class/uio/uioN/maps/mapM/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UioMapInfo {
    /// The map's index `M` (the region is mapped at `mmap` offset `M * page_size`).
    pub index: usize,
    /// The map's name (may be empty).
    pub name: String,
    /// Physical (or kernel logical) address, as the driver reported it.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Where the device memory starts inside the mapping (the `offset` attribute; 0 on
    /// kernels that lack it).
    pub offset: u64,
}

impl UioMapInfo {
    /// Builds the map from the texts of its `name`, `addr`, `size` and optional `offset`
    /// attributes.
    pub fn parse(index: usize, name: &str, addr: &str, size: &str, offset: Option<&str>) -> Result<Self> {
        let num = |what: &str, text: &str| {
            parse_number(text).ok_or_else(|| parse_error(&format!("UIO map{index} {what} is not a number"), text))
        };
        Ok(UioMapInfo {
            index,
            name: name.trim().to_owned(),
            addr: num("addr", addr)?,
            size: num("size", size)?,
            offset: offset.map(|o| num("offset", o)).transpose()?.unwrap_or(0),
        })
    }

    /// The `mmap` length the kernel allows for this map with pages of `page` bytes: the map's
    /// sub-page start plus its size, rounded up to whole pages (as `uio_mmap` computes it).
    pub fn mmap_len(&self, page: usize) -> Option<usize> {
        let page = page as u64;
        let start_in_page = self.addr % page;
        let bytes = start_in_page.checked_add(self.size)?;
        let len = bytes.checked_add(page - 1)? / page * page;
        usize::try_from(len).ok()
    }

    /// The usable device memory inside the mapping: `(start, len)` with `start` the `offset`
    /// attribute and `len` the map's size, cut to what the mapping holds.
    pub fn window(&self, page: usize) -> Option<(usize, usize)> {
        let map_len = self.mmap_len(page)? as u64;
        if self.offset >= map_len {
            return None;
        }
        let len = self.size.min(map_len - self.offset);
        Some((usize::try_from(self.offset).ok()?, usize::try_from(len).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x00000000fea00000\n"), Some(0xfea0_0000));
        assert_eq!(parse_number(" 42 "), Some(42));
        assert_eq!(parse_number("0X4_000"), Some(0x4000));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("0x1ffffffffffffffff"), None);
        assert_eq!(parse_hex("0x11e8\n"), Some(0x11e8));
        assert_eq!(parse_hex("11e8"), Some(0x11e8));
    }

    #[test]
    fn pci_names() {
        let a: PciAddress = "0000:00:04.0".parse().unwrap();
        assert_eq!(a, PciAddress { domain: 0, bus: 0, device: 4, function: 0 });
        assert_eq!("00:04.0".parse::<PciAddress>().unwrap(), a);
        assert_eq!(a.to_string(), "0000:00:04.0");
        assert!("00:20.0".parse::<PciAddress>().is_err(), "device numbers stop at 0x1f");
        assert!("00:04.8".parse::<PciAddress>().is_err());
        assert!("00:04".parse::<PciAddress>().is_err());
        let id: PciId = "1234:11e8".parse().unwrap();
        assert_eq!(id, PciId::EDU);
        assert!("1234:11e8a".parse::<PciId>().is_err());
        assert_eq!("1234:11e8".parse::<PciSelector>().unwrap(), PciSelector::Id(PciId::EDU));
        assert_eq!("00:04.0".parse::<PciSelector>().unwrap(), PciSelector::Address(a));
        let e = "xyz".parse::<PciSelector>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Parse);
    }

    #[test]
    fn edu_resource_file() {
        let text = "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    0x000000000000c000 0x000000000000c01f 0x0000000000040101\n";
        let r = parse_pci_resources(text).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_memory());
        assert_eq!(r[0].size(), 0x10_0000);
        assert!(!r[1].is_memory() && !r[1].is_io());
        assert_eq!(r[1].size(), 0);
        assert!(r[2].is_io());
        assert!(parse_pci_resources("0x1 0x2\n").is_err());
    }

    #[test]
    fn uio_map_window() {
        let bar = UioMapInfo::parse(0, "edu\n", "0x00000000fea00000\n", "0x0000000000100000\n", Some("0x0\n")).unwrap();
        // A register block that starts inside its page: the pointer must move by `offset`.
        let block = UioMapInfo::parse(1, "", "0xfe001100", "0x100", Some("0x100")).unwrap();
        // At the page sizes Linux runs with (4, 16 and 64 KiB).
        for page in [4 << 10, 16 << 10, 64 << 10] {
            assert_eq!(bar.mmap_len(page), Some(0x10_0000));
            assert_eq!(bar.window(page), Some((0, 0x10_0000)));
            assert_eq!(block.mmap_len(page), Some(page));
            assert_eq!(block.window(page), Some((0x100, 0x100)));
        }
        let old_kernel = UioMapInfo::parse(0, "x", "0x4000", "0x4000", None).unwrap();
        assert_eq!(old_kernel.offset, 0);
        assert!(UioMapInfo::parse(0, "x", "zz", "0x4000", None).is_err());
    }

    proptest! {
        #[test]
        fn numbers_round_trip(n: u64) {
            prop_assert_eq!(parse_number(&format!("0x{n:016x}\n")), Some(n));
            prop_assert_eq!(parse_number(&format!("{n:#x}")), Some(n));
            prop_assert_eq!(parse_number(&n.to_string()), Some(n));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_number(&s);
            let _ = parse_hex(&s);
            let _ = s.parse::<PciSelector>();
            let _ = parse_pci_resources(&s);
            let _ = UioMapInfo::parse(0, &s, &s, &s, Some(&s));
        }

        #[test]
        fn pci_address_round_trips(domain in 0u32..=0xffff, bus: u8, device in 0u8..32, function in 0u8..8) {
            let a = PciAddress { domain, bus, device, function };
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
            prop_assert_eq!(a.to_string().parse::<PciSelector>().unwrap(), PciSelector::Address(a));
        }

        #[test]
        fn pci_id_round_trips(vendor: u16, device: u16) {
            let id = PciId { vendor, device };
            prop_assert_eq!(id.to_string().parse::<PciSelector>().unwrap(), PciSelector::Id(id));
        }

        #[test]
        fn resource_lines_round_trip(rs in proptest::collection::vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..8)) {
            let text: String = rs.iter().map(|(s, e, f)| format!("0x{s:016x} 0x{e:016x} 0x{f:016x}\n")).collect();
            let parsed = parse_pci_resources(&text).unwrap();
            let expected: Vec<PciResource> = rs.iter().map(|&(start, end, flags)| PciResource { start, end, flags }).collect();
            prop_assert_eq!(parsed, expected);
        }

        /// The window always lies inside the mapping the kernel allows, and starts at `offset`.
        #[test]
        fn uio_window_fits_the_mapping(addr in 0u64..(1 << 40), size in 1u64..(1 << 24), offset in 0u64..(1 << 16), shift in 12u32..17) {
            let page = 1usize << shift;
            let m = UioMapInfo { index: 0, name: String::new(), addr, size, offset };
            let map_len = m.mmap_len(page).unwrap();
            prop_assert_eq!(map_len % page, 0);
            prop_assert!(map_len as u64 >= size + addr % page as u64);
            prop_assert!((map_len as u64) < size + addr % page as u64 + page as u64);
            if let Some((start, len)) = m.window(page) {
                prop_assert_eq!(start as u64, offset);
                prop_assert!(start + len <= map_len);
                prop_assert!(len as u64 <= size && len > 0);
            } else {
                prop_assert!(offset >= map_len as u64);
            }
        }
    }
}
