//! `mmkit mmio`: read and write device registers in the manner of busybox `devmem`, list UIO
//! devices and PCI memory BARs, wait for UIO interrupts.
//!
//! Sources: `--uio N[:MAP]` (`/dev/uioN`, map `MAP`, default 0), `--pci BDF|VENDOR:DEVICE
//! [--bar N]` (sysfs `resourceN`), `--phys ADDR` (`/dev/mem`). Offsets and values are hex
//! (`0x..`) or decimal. Accesses are checked: outside the region, misaligned, or of a width the
//! device does not accept (QEMU's edu: 32-bit only below 0x80) is an error, never an access.
//! A region is bounded at the device's size (a 256-byte BAR is 256 bytes, whatever the page
//! size); `--phys` inside a PCI BAR is bounded at that BAR. `--wc` maps a prefetchable BAR
//! write-combining (`resourceN_wc`). Widths come from the built-in devices (edu, ivshmem) or a
//! `--profile FILE`; when none is known, `read`/`write` warn that the width may not be valid.

use std::time::Duration;

use anyhow::{bail, Context};
use mmkit_mmio::sysfs::{parse_number, PciSelector};
use mmkit_mmio::{AccessRules, MmioRegion, PciDevice, PhysicalMemory, Uio, Width};
use serde::Serialize;

/// Subcommands of `mmkit mmio`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Read a register: `mmkit mmio read --uio 0 0x0`.
    Read(ReadArgs),
    /// Write a register: `mmkit mmio write --uio 0 0x4 0x12345678`.
    Write(WriteArgs),
    /// List UIO devices with their maps, and PCI devices with their memory BARs.
    #[command(after_help = "A device whose sysfs files cannot be read is listed with its error (text: \
                            `unreadable: <error>`; JSON: an `error` field naming the operation, path and errno) \
                            and the others as usual. Exit status: 0 when every device was read, 1 when one or \
                            more could not be (after the listing, with `mmkit: N devices could not be read`), \
                            2 usage error.")]
    List(ListArgs),
    /// Wait for interrupts of a UIO device: `mmkit mmio irq --uio 0 --count 3 --timeout 5`.
    #[command(after_help = "The interrupt is unmasked before each wait, but nothing is acknowledged at the \
                            device (that is device-specific): a level-triggered (PCI INTx) interrupt the device \
                            still asserts fires again at once, so one event can count several times. Acknowledge \
                            it between waits (e.g. edu: `mmkit mmio write --uio 0 0x64 VALUE`), or wait for one \
                            interrupt per call.")]
    Irq(IrqArgs),
}

/// Where the registers are.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct SourceArgs {
    /// A UIO device and map: `N` or `N:MAP` (`/dev/uioN`, map MAP, default 0).
    #[arg(long, value_name = "N[:MAP]", value_parser = parse_uio)]
    pub uio: Option<(u32, usize)>,
    /// A PCI device by address (`0000:00:04.0`, `00:04.0`) or ID (`1234:11e8`); see `--bar`.
    #[arg(long, value_name = "BDF|VENDOR:DEVICE", value_parser = parse_pci)]
    pub pci: Option<PciSelector>,
    /// A physical address, mapped through `/dev/mem`; OFFSET is relative to it.
    #[arg(long, value_name = "ADDR", value_parser = parse_u64)]
    pub phys: Option<u64>,
}

/// Arguments shared by `read` and `write`.
#[derive(Debug, clap::Args)]
pub struct AccessArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The BAR to map with `--pci` (0 to 5).
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = parse_bar)]
    pub bar: usize,
    /// With `--pci`: map the BAR write-combining (`resourceN_wc`; prefetchable BARs only).
    #[arg(long, conflicts_with_all = ["uio", "phys"])]
    pub wc: bool,
    /// The device's width rules, one `START..END WIDTHS` per line (e.g. `0x0..0x100 32`),
    /// optionally `name NAME`; replaces the built-in rules.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<std::path::PathBuf>,
    /// Access width in bits.
    #[arg(long, short = 'w', default_value_t = 32, value_parser = parse_width_bits)]
    pub width: u32,
    /// Print JSON: `{"source": ..., "offset": N, "width": 32, "value": N}`.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mmkit mmio read`.
#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub access: AccessArgs,
    /// Byte offset of the register in the region (hex or decimal).
    #[arg(default_value = "0", value_parser = parse_usize)]
    pub offset: usize,
}

/// Arguments of `mmkit mmio write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub access: AccessArgs,
    /// Byte offset of the register in the region (hex or decimal).
    #[arg(value_parser = parse_usize)]
    pub offset: usize,
    /// The value to write (hex or decimal); must fit in the width.
    #[arg(value_parser = parse_u64)]
    pub value: u64,
}

/// Arguments of `mmkit mmio list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mmkit mmio irq`.
#[derive(Debug, clap::Args)]
pub struct IrqArgs {
    /// The UIO device number (`/dev/uioN`).
    #[arg(long, value_name = "N")]
    pub uio: u32,
    /// How many interrupts to wait for (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Seconds to wait for each interrupt (fractions allowed, at most a day).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_u64(s: &str) -> Result<u64, String> {
    parse_number(s).ok_or_else(|| format!("not a 64-bit number: {s:?} (use hex 0x.. or decimal)"))
}

/// Longest `--timeout`: a day (an absurd wait is a mistyped argument, not a plan).
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.trim().parse().map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if !(0.0..=MAX_TIMEOUT_SECS).contains(&secs) {
        return Err(format!("{s} is not between 0 and {MAX_TIMEOUT_SECS} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_bar(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(bar) if bar < 6 => Ok(bar),
        _ => Err(format!("not a BAR number: {s:?} (0 to 5)")),
    }
}

fn parse_usize(s: &str) -> Result<usize, String> {
    parse_u64(s).and_then(|n| usize::try_from(n).map_err(|_| format!("{s:?} is too large")))
}

fn parse_width_bits(s: &str) -> Result<u32, String> {
    let bits: u32 = s.parse().map_err(|_| format!("not a width: {s:?}"))?;
    Width::from_bits(bits).map(|_| bits).ok_or_else(|| format!("width must be 8, 16, 32 or 64, not {bits}"))
}

fn parse_uio(s: &str) -> Result<(u32, usize), String> {
    let s = s.trim().trim_start_matches("/dev/").trim_start_matches("uio");
    let (n, map) = s.split_once(':').unwrap_or((s, "0"));
    let n = n.parse().map_err(|_| format!("not a UIO device number: {n:?}"))?;
    let map = map.parse().map_err(|_| format!("not a map index: {map:?}"))?;
    Ok((n, map))
}

fn parse_pci(s: &str) -> Result<PciSelector, String> {
    s.parse().map_err(|e: mmkit_mmio::Error| e.to_string())
}

/// Longest `--profile` file read (1 MiB): thousands of rules.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// Maps the region the source arguments name and the offset to access in it, with the rules
/// of `--profile` when given; warns when no width rules are known for the device.
fn open_region(args: &AccessArgs, offset: usize, width: Width) -> anyhow::Result<(MmioRegion, usize)> {
    let profile = match &args.profile {
        Some(path) => {
            // Not `fs::read_to_string`: a FIFO would block its open forever. At most
            // MAX_PROFILE_BYTES are read: a profile is a few lines, and a huge or sparse file
            // named by mistake was read whole into memory (3 GiB: a minute and 3 GiB).
            let text = mmkit::open::open_regular(path)
                .map_err(anyhow::Error::new)
                .and_then(|f| {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_PROFILE_BYTES + 1), &mut text)
                        .map_err(|e| crate::cli::io::io_error("read", path, e))?;
                    if text.len() as u64 > MAX_PROFILE_BYTES {
                        return Err(mmkit::Error::new("read", mmkit::ErrorKind::InvalidArgument)
                            .with_path(path)
                            .with_detail(format!(
                                "longer than {} bytes: a profile is a few lines of width rules",
                                MAX_PROFILE_BYTES
                            ))
                            .into());
                    }
                    Ok(text)
                })
                .with_context(|| format!("cannot read device profile {}", path.display()))?;
            let rules = AccessRules::parse_profile(&text)
                .with_context(|| format!("cannot load device profile {}", path.display()))?;
            Some(rules)
        }
        None => None,
    };
    let (mut region, at) = map_source(args, offset, width)?;
    if let Some(rules) = profile {
        match args.source.phys {
            // `--phys` outside a BAR maps the one register at ADDR + OFFSET (a window over
            // the device could cross RAM `/dev/mem` refuses): the profile speaks of offsets
            // from ADDR, so it is checked at OFFSET, and the region checks bounds only.
            Some(_) if at != offset => {
                mmkit_mmio::check_access("mmio", usize::MAX, &rules, offset, width)
                    .context("refused by the device profile")?;
                let name = rules.name().unwrap_or("profile").to_owned();
                region.set_rules(mmkit_mmio::AccessRules::any().named(name));
            }
            _ => region.set_rules(rules),
        }
    }
    if !region.rules().is_known() {
        warn_line!(
            "no width rules are known for {}: a {width} access may not be one the device \
             answers (it may read 0 or be dropped); state its widths with --profile FILE",
            source_name(&region, args, offset)
        );
    }
    Ok((region, at))
}

fn map_source(args: &AccessArgs, offset: usize, width: Width) -> anyhow::Result<(MmioRegion, usize)> {
    let s = &args.source;
    if let Some((n, map)) = s.uio {
        let uio = Uio::open(n).with_context(|| format!("cannot open UIO device {n}"))?;
        let region = uio.map(map).with_context(|| format!("cannot map map{map} of /dev/uio{n}"))?;
        return Ok((region, offset));
    }
    if let Some(sel) = s.pci {
        let dev = PciDevice::select(sel).with_context(|| format!("cannot find PCI device {sel}"))?;
        let (region, how) =
            if args.wc { (dev.map_bar_wc(args.bar), " write-combining") } else { (dev.map_bar(args.bar), "") };
        let region = region.with_context(|| format!("cannot map BAR{} of {}{how}", args.bar, dev.address()))?;
        return Ok((region, offset));
    }
    if let Some(addr) = s.phys {
        let at = addr
            .checked_add(offset as u64)
            .with_context(|| format!("--phys {addr:#x} + offset {offset:#x} overflows 64 bits"))?;
        let mem = PhysicalMemory::open().context("cannot open /dev/mem")?;
        // Inside a PCI BAR: the region is that BAR (its size, its device's width rules).
        if let Ok(Some((dev, bar, res))) = PciDevice::with_bar_containing(addr) {
            let region = mem
                .map_pci_bar(&dev, bar)
                .with_context(|| format!("cannot map BAR{bar} of {} through /dev/mem", dev.address()))?;
            let at = usize::try_from(at - res.start).context("offset overflows")?;
            return Ok((region, at));
        }
        let region = mem.map(at, width.bytes()).with_context(|| format!("cannot map physical address {at:#x}"))?;
        return Ok((region, 0));
    }
    bail!("name a source: --uio, --pci or --phys")
}

#[derive(Serialize)]
struct AccessReport {
    source: String,
    offset: u64,
    width: u32,
    value: u64,
}

fn source_name(region: &MmioRegion, args: &AccessArgs, offset: usize) -> String {
    match args.source.phys {
        Some(addr) => format!("/dev/mem {:#x}", addr + offset as u64),
        None => region.source(),
    }
}

fn print_access(report: &AccessReport, json: bool, read: bool) -> anyhow::Result<()> {
    if json {
        crate::cli::json::print_line(report)?;
    } else if read {
        let digits = (report.width / 4) as usize;
        outln!("0x{:0digits$x}", report.value, digits = digits)?;
    }
    Ok(())
}

/// A bad command line found only once several arguments are known: exits 2 with clap's
/// message form and `mmio SUBCOMMAND`'s usage line, as clap's own refusals, before any device is
/// opened.
fn usage_error(subcommand: &str, msg: String) -> ! {
    use clap::CommandFactory;
    let mut cli = crate::Cli::command();
    cli.build();
    let mut cmd = cli.find_subcommand_mut("mmio").and_then(|m| m.find_subcommand_mut(subcommand)).cloned();
    let err = match cmd.as_mut() {
        Some(sub) => sub.error(clap::error::ErrorKind::ValueValidation, msg),
        None => cli.error(clap::error::ErrorKind::ValueValidation, msg),
    };
    crate::cli::output::usage_error(err)
}

/// `--phys ADDR` plus OFFSET past 2^64 is a usage error (exit 2), not a device error.
fn check_phys_offset(args: &AccessArgs, offset: usize, subcommand: &str) {
    if let Some(addr) = args.source.phys {
        if addr.checked_add(offset as u64).is_none() {
            usage_error(
                subcommand,
                format!("invalid value {offset:#x} for OFFSET: --phys {addr:#x} + OFFSET passes 2^64"),
            );
        }
    }
}

fn read(args: ReadArgs) -> anyhow::Result<()> {
    let width = Width::from_bits(args.access.width).context("bad width")?;
    check_phys_offset(&args.access, args.offset, "read");
    let (region, at) = open_region(&args.access, args.offset, width)?;
    let value =
        region.read(at, width).with_context(|| format!("cannot read {width} register at {:#x}", args.offset))?;
    let report = AccessReport {
        source: source_name(&region, &args.access, args.offset),
        offset: args.offset as u64,
        width: args.access.width,
        value,
    };
    print_access(&report, args.access.json, true)
}

fn write(args: WriteArgs) -> anyhow::Result<()> {
    let width = Width::from_bits(args.access.width).context("bad width")?;
    if args.value > width.max_value() {
        usage_error(
            "write",
            format!("invalid value {:#x} for VALUE: does not fit in a {width} register (--width)", args.value),
        );
    }
    check_phys_offset(&args.access, args.offset, "write");
    let (region, at) = open_region(&args.access, args.offset, width)?;
    region
        .write(at, width, args.value)
        .with_context(|| format!("cannot write {width} register at {:#x}", args.offset))?;
    let report = AccessReport {
        source: source_name(&region, &args.access, args.offset),
        offset: args.offset as u64,
        width: args.access.width,
        value: args.value,
    };
    print_access(&report, args.access.json, false)
}

#[derive(Serialize)]
struct UioMapReport {
    index: usize,
    name: String,
    addr: u64,
    size: u64,
    offset: u64,
}

#[derive(Serialize)]
struct UioReport {
    number: u32,
    device: String,
    name: String,
    version: String,
    event_count: u32,
    pci: Option<String>,
    id: Option<String>,
    maps: Vec<UioMapReport>,
}

/// A listed entry, or the entry (its number or address) with why it could not be read.
#[derive(Serialize)]
#[serde(untagged)]
enum Entry<T, K> {
    Read(T),
    Unreadable {
        #[serde(flatten)]
        key: K,
        /// The error, naming the operation, the path and the errno.
        error: String,
    },
}

#[derive(Serialize)]
struct UioKey {
    number: u32,
    device: String,
}

#[derive(Serialize)]
struct PciKey {
    address: String,
}

#[derive(Serialize)]
struct BarReport {
    index: usize,
    start: u64,
    size: u64,
    prefetchable: bool,
    #[serde(rename = "64bit")]
    is_64bit: bool,
}

#[derive(Serialize)]
struct PciReport {
    address: String,
    id: String,
    class: u32,
    driver: Option<String>,
    bars: Vec<BarReport>,
    /// Why its BARs could not be read (its `resource` file); then `bars` is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct ListReport {
    uio: Vec<Entry<UioReport, UioKey>>,
    pci: Vec<Entry<PciReport, PciKey>>,
}

impl ListReport {
    /// How many entries could not be read (whole or in part).
    fn unreadable(&self) -> usize {
        let uio = self.uio.iter().filter(|e| matches!(e, Entry::Unreadable { .. })).count();
        let pci = self
            .pci
            .iter()
            .filter(|e| match e {
                Entry::Read(d) => d.error.is_some(),
                Entry::Unreadable { .. } => true,
            })
            .count();
        uio + pci
    }
}

/// The UIO devices under `uio_dir` and the PCI devices with memory BARs under `pci_dir`: a
/// device whose sysfs files cannot be read is listed with its error in place of what they say.
fn collect_list(uio_dir: &std::path::Path, pci_dir: &std::path::Path) -> anyhow::Result<ListReport> {
    let uio = mmkit_mmio::scan_uio_devices_in(uio_dir)
        .context("cannot list UIO devices")?
        .into_iter()
        .map(|(number, d)| match d {
            Err(e) => {
                Entry::Unreadable { key: UioKey { number, device: format!("/dev/uio{number}") }, error: e.to_string() }
            }
            Ok(d) => Entry::Read(UioReport {
                number: d.number,
                device: format!("/dev/uio{}", d.number),
                name: d.name,
                version: d.version,
                event_count: d.event_count,
                pci: d.pci.map(|(a, _)| a.to_string()),
                id: d.pci.map(|(_, id)| id.to_string()),
                maps: d
                    .maps
                    .into_iter()
                    .map(|m| UioMapReport {
                        index: m.index,
                        name: m.name,
                        addr: m.addr,
                        size: m.size,
                        offset: m.offset,
                    })
                    .collect(),
            }),
        })
        .collect();
    let mut pci = Vec::new();
    for (address, dev) in mmkit_mmio::scan_pci_devices_in(pci_dir).context("cannot list PCI devices")? {
        let dev = match dev {
            Ok(dev) => dev,
            Err(e) => {
                pci.push(Entry::Unreadable { key: PciKey { address: address.to_string() }, error: e.to_string() });
                continue;
            }
        };
        let (bars, error) = match dev.resources() {
            Ok(resources) => (
                resources
                    .iter()
                    .take(6)
                    .enumerate()
                    .filter(|(_, r)| r.is_memory())
                    .map(|(index, r)| BarReport {
                        index,
                        start: r.start,
                        size: r.size(),
                        prefetchable: r.is_prefetchable(),
                        is_64bit: r.is_64bit(),
                    })
                    .collect::<Vec<_>>(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        if bars.is_empty() && error.is_none() {
            continue;
        }
        pci.push(Entry::Read(PciReport {
            address: dev.address().to_string(),
            id: dev.id().to_string(),
            class: dev.class(),
            driver: dev.driver(),
            bars,
            error,
        }));
    }
    Ok(ListReport { uio, pci })
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let report = collect_list(
        std::path::Path::new(mmkit_mmio::SYS_CLASS_UIO),
        std::path::Path::new(mmkit_mmio::SYS_BUS_PCI_DEVICES),
    )?;
    if args.json {
        crate::cli::json::print(&report)?;
    } else {
        print_list(&report)?;
    }
    match report.unreadable() {
        0 => Ok(()),
        1 => bail!("1 device could not be read (listed with its error)"),
        n => bail!("{n} devices could not be read (listed with their errors)"),
    }
}

fn print_list(report: &ListReport) -> anyhow::Result<()> {
    outln!("UIO devices:")?;
    if report.uio.is_empty() {
        outln!("  none (bind a device to a UIO driver, e.g. uio_pci_generic)")?;
    }
    for d in &report.uio {
        let d = match d {
            Entry::Read(d) => d,
            Entry::Unreadable { key, error } => {
                outln!("  {}  unreadable: {error}", key.device)?;
                continue;
            }
        };
        let pci = match (&d.pci, &d.id) {
            (Some(a), Some(id)) => format!("  pci {a} [{id}]"),
            _ => String::new(),
        };
        outln!("  {}  {}{pci}  interrupts {}", d.device, d.name, d.event_count)?;
        for m in &d.maps {
            outln!(
                "    map{}  addr {:#x}  size {:#x} ({})  offset {:#x}{}",
                m.index,
                m.addr,
                m.size,
                crate::cli::size::bytes(m.size),
                m.offset,
                if m.name.is_empty() { String::new() } else { format!("  {}", m.name) }
            )?;
        }
    }
    outln!("PCI memory BARs:")?;
    if report.pci.is_empty() {
        outln!("  none")?;
    }
    for d in &report.pci {
        let d = match d {
            Entry::Read(d) => d,
            Entry::Unreadable { key, error } => {
                outln!("  {}  unreadable: {error}", key.address)?;
                continue;
            }
        };
        outln!("  {} [{}] class {:#08x} driver {}", d.address, d.id, d.class, d.driver.as_deref().unwrap_or("-"))?;
        if let Some(error) = &d.error {
            outln!("    BARs unreadable: {error}")?;
        }
        for b in &d.bars {
            outln!(
                "    BAR{}  {:#x}  size {:#x} ({})  {}{}",
                b.index,
                b.start,
                b.size,
                crate::cli::size::bytes(b.size),
                if b.is_64bit { "64-bit" } else { "32-bit" },
                if b.prefetchable { " prefetchable" } else { "" }
            )?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct IrqReport {
    device: String,
    enabled_by: &'static str,
    interrupts: Vec<IrqEventReport>,
}

#[derive(Serialize)]
struct IrqEventReport {
    count: u32,
    missed: u32,
}

fn irq(args: IrqArgs) -> anyhow::Result<()> {
    let timeout = args.timeout;
    let mut uio = Uio::open(args.uio).with_context(|| format!("cannot open UIO device {}", args.uio))?;
    let mut report = IrqReport { device: uio.path().display().to_string(), enabled_by: "", interrupts: Vec::new() };
    for i in 1..=args.count {
        let how = uio.enable_irq().context("cannot enable the interrupt")?;
        report.enabled_by = match how {
            mmkit_mmio::IrqEnable::IrqControl => "irqcontrol",
            mmkit_mmio::IrqEnable::PciCommand => "pci-command",
        };
        let event =
            uio.wait_irq(Some(timeout)).with_context(|| format!("interrupt {i} of {} did not arrive", args.count))?;
        if !args.json {
            outln!("interrupt {i}: count {} (missed {})", event.count, event.missed)?;
        }
        report.interrupts.push(IrqEventReport { count: event.count, missed: event.missed });
    }
    if args.json {
        crate::cli::json::print_line(&report)?;
    }
    Ok(())
}

/// Runs `mmkit mmio`.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Read(args) => read(args),
        Command::Write(args) => write(args),
        Command::List(args) => list(args),
        Command::Irq(args) => irq(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: PCI devices `00:04.0` (a memory BAR), `00:05.0` (its `resource` unreadable:
    /// a symlink to itself, ELOOP as root and unprivileged alike), `00:06.0` (its `vendor`
    /// unreadable); UIO devices `uio0` (readable) and `uio1` (its `name` unreadable).
    fn fake_sysfs() -> tempfile::TempDir {
        use std::fs;
        let root = tempfile::tempdir().unwrap();
        for addr in ["0000:00:04.0", "0000:00:05.0", "0000:00:06.0"] {
            let d = root.path().join("pci").join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), "0x1234\n").unwrap();
            fs::write(d.join("device"), "0x11e8\n").unwrap();
            fs::write(d.join("class"), "0x00ff00\n").unwrap();
            fs::write(d.join("resource"), "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n").unwrap();
        }
        let bad_resource = root.path().join("pci/0000:00:05.0/resource");
        fs::remove_file(&bad_resource).unwrap();
        std::os::unix::fs::symlink(&bad_resource, &bad_resource).unwrap();
        let bad_vendor = root.path().join("pci/0000:00:06.0/vendor");
        fs::remove_file(&bad_vendor).unwrap();
        std::os::unix::fs::symlink(&bad_vendor, &bad_vendor).unwrap();
        for n in [0, 1] {
            let d = root.path().join(format!("uio/uio{n}"));
            fs::create_dir_all(d.join("maps")).unwrap();
            fs::write(d.join("name"), "fake\n").unwrap();
        }
        let bad_name = root.path().join("uio/uio1/name");
        fs::remove_file(&bad_name).unwrap();
        std::os::unix::fs::symlink(&bad_name, &bad_name).unwrap();
        root
    }

    /// Regression: one unreadable PCI `resource` (or device directory) failed the whole
    /// `mmio list`; now every device is listed, the unreadable ones with their error.
    #[test]
    fn list_reports_unreadable_devices_in_place_and_lists_the_others() {
        let root = fake_sysfs();
        let report = collect_list(&root.path().join("uio"), &root.path().join("pci")).unwrap();
        assert_eq!(report.unreadable(), 3);
        let json = serde_json::to_value(&report).unwrap();
        let pci = json["pci"].as_array().unwrap();
        assert_eq!(pci.len(), 3, "{json:#}");
        assert_eq!(pci[0]["address"], "0000:00:04.0");
        assert_eq!(pci[0]["bars"][0]["start"], 0xfea0_0000u64);
        assert!(pci[0].get("error").is_none(), "{json:#}");
        assert_eq!(pci[1]["address"], "0000:00:05.0");
        assert_eq!(pci[1]["id"], "1234:11e8");
        assert_eq!(pci[1]["bars"].as_array().unwrap().len(), 0);
        let err = pci[1]["error"].as_str().unwrap();
        assert!(err.contains("0000:00:05.0/resource") && err.contains("ELOOP"), "{err}");
        assert_eq!(pci[2]["address"], "0000:00:06.0");
        let err = pci[2]["error"].as_str().unwrap();
        assert!(err.contains("0000:00:06.0/vendor") && err.contains("ELOOP"), "{err}");
        let uio = json["uio"].as_array().unwrap();
        assert_eq!(uio.len(), 2, "{json:#}");
        assert_eq!(uio[0]["name"], "fake");
        assert_eq!(uio[1]["device"], "/dev/uio1");
        let err = uio[1]["error"].as_str().unwrap();
        assert!(err.contains("uio1/name") && err.contains("ELOOP"), "{err}");
    }

    #[test]
    fn argument_parsers() {
        assert_eq!(parse_uio("0"), Ok((0, 0)));
        assert_eq!(parse_uio("3:1"), Ok((3, 1)));
        assert_eq!(parse_uio("/dev/uio2"), Ok((2, 0)));
        assert!(parse_uio("x").is_err());
        assert_eq!(parse_u64("0x10"), Ok(16));
        assert_eq!(parse_u64("16"), Ok(16));
        assert!(parse_u64("0xg").is_err());
        assert_eq!(parse_width_bits("64"), Ok(64));
        assert!(parse_width_bits("24").is_err());
        assert!(parse_pci("1234:11e8").is_ok());
        assert!(parse_pci("00:04.0").is_ok());
        assert!(parse_pci("nope").is_err());
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        for bad in ["nan", "NaN", "-1", "-0.5", "inf", "-inf", "1e300", "86401", "", "5s"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_bar("5"), Ok(5));
        assert!(parse_bar("6").is_err() && parse_bar("-1").is_err() && parse_bar("99999999999999999999").is_err());
    }
}
