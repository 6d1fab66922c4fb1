//! The planner: ELF header + program headers + a page size → where every byte goes.
//!
//! Pure: no system calls, the page size is a parameter, so a plan for 16 KiB or 64 KiB pages can
//! be made (and tested) on a 4 KiB machine. The phases follow bionic's `ElfReader`: read headers
//! ([`Plan::new`] validates them), plan (this module), then the executor reserves the span, loads
//! the segments, relocates, protects RELRO and runs the initializers.
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::machine::Machine;
use object::elf;
use object::pod;
use object::LittleEndian as LE;

/// Size of the 64-bit ELF header.
pub const EHDR_SIZE: u64 = 64;
/// Size of one 64-bit program header.
pub const PHDR_SIZE: u64 = 56;
/// The most program headers the planner accepts (bionic uses the same bound: 64 KiB of headers).
pub const MAX_PHNUM: u64 = 65536 / PHDR_SIZE;

/// Access rights of a mapping: mmkit's own [`Protection`] (one type for
/// the idea in every crate), here read from a segment's `p_flags`.
pub use mmkit::Protection;

/// The protection a segment's `p_flags` ask for (`PF_R`, `PF_W`, `PF_X`).
pub fn protection_of(p_flags: u32) -> Protection {
    let mut prot = Protection::NONE;
    if p_flags & elf::PF_R != 0 {
        prot |= Protection::READ;
    }
    if p_flags & elf::PF_W != 0 {
        prot |= Protection::WRITE;
    }
    if p_flags & elf::PF_X != 0 {
        prot |= Protection::EXEC;
    }
    prot
}

/// One `PT_LOAD` segment and the page arithmetic that maps it.
///
/// Addresses are link-time virtual addresses (add the load bias to get run-time addresses);
/// offsets are relative to the start of the ELF image in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentPlan {
    /// Index of the program header.
    pub phdr_index: usize,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_memsz`.
    pub mem_size: u64,
    /// `p_offset`.
    pub file_offset: u64,
    /// `p_filesz`.
    pub file_size: u64,
    /// `p_align`.
    pub align: u64,
    /// From `p_flags`.
    pub prot: Protection,
    /// First page of the segment: `p_vaddr` rounded down to the page size.
    pub map_vaddr: u64,
    /// File offset mapped at `map_vaddr`: `p_offset` rounded down to the page size.
    pub map_offset: u64,
    /// Bytes mapped from the file: from `map_vaddr` to `p_vaddr + p_filesz` rounded up.
    pub map_file_len: u64,
    /// Bytes to zero after the file data in the last file page (writable segments only):
    /// `[p_vaddr + p_filesz, p_vaddr + p_filesz + zero_len)`.
    pub zero_len: u64,
    /// Anonymous pages after the file pages (the rest of `.bss`): start address.
    pub bss_vaddr: u64,
    /// Anonymous pages after the file pages: length (0 if none).
    pub bss_len: u64,
    /// Every file page of this writable segment is one the loader writes before the library
    /// runs: RELRO pages (the data the linker put there is what relocations write) and the
    /// page whose tail it zeroes. Such a segment is mapped prefaulted (`MAP_POPULATE`): each
    /// page is copied once in the `mmap` call rather than by a read fault (the loader reads
    /// `PT_DYNAMIC` there) and then a copy-on-write fault. The pages are the ones `dlopen`
    /// copies too, so no memory is spent that demand paging would save.
    pub prefault: bool,
}

impl SegmentPlan {
    /// End of the segment's pages: `p_vaddr + p_memsz` rounded up.
    pub fn map_end(&self) -> u64 {
        self.bss_vaddr + self.bss_len
    }
}

/// The `PT_TLS` template.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TlsPlan {
    /// `p_vaddr` of the initialization image (`.tdata`).
    pub vaddr: u64,
    /// Bytes of initialized data.
    pub file_size: u64,
    /// Size of the whole block (`.tdata` + `.tbss`).
    pub mem_size: u64,
    /// Alignment of the block.
    pub align: u64,
}

/// A mapping plan for one ELF shared object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Plan {
    /// The machine the image is built for (`e_machine`).
    pub machine: Machine,
    /// The page size the plan was made for.
    pub page_size: u64,
    /// First reserved link-time address (lowest `p_vaddr` rounded down).
    pub span_vaddr: u64,
    /// Bytes of address space to reserve (highest `p_vaddr + p_memsz` rounded up, minus start).
    pub span_len: u64,
    /// Largest `p_align` of the `PT_LOAD` segments (the reservation is aligned to it).
    pub max_align: u64,
    /// The `PT_LOAD` segments in address order.
    pub segments: Vec<SegmentPlan>,
    /// Page range made read-only after relocation (`PT_GNU_RELRO`, start rounded down, end
    /// rounded down as glibc does): `(vaddr, len)`.
    pub relro: Option<(u64, u64)>,
    /// `PT_DYNAMIC`: `(vaddr, size)`.
    pub dynamic: Option<(u64, u64)>,
    /// `PT_TLS`.
    pub tls: Option<TlsPlan>,
    /// The library asks for an executable stack: its `PT_GNU_STACK` has `PF_X`, or it has no
    /// `PT_GNU_STACK` and the machine's default stack is executable (x86_64; not aarch64), as
    /// glibc reads a missing header (`DEFAULT_STACK_PERMS`).
    pub exec_stack: bool,
    /// `PT_GNU_EH_FRAME` (`.eh_frame_hdr`): `(vaddr, size)`. The loader registers the unwind
    /// tables it points to, so unwinders find the library's frames.
    pub eh_frame_hdr: Option<(u64, u64)>,
    /// `e_entry`.
    pub entry: u64,
    /// `e_phoff` and `e_phnum`.
    pub phdrs: (u64, u64),
}

/// Page arithmetic with overflow checks.
fn down(x: u64, page: u64) -> u64 {
    x & !(page - 1)
}

fn up(x: u64, page: u64) -> Option<u64> {
    x.checked_add(page - 1).map(|v| v & !(page - 1))
}

/// Copies an ELF structure (at most 64 bytes, the ELF header) from the start of `bytes`,
/// whatever their alignment: `object`'s casts need an aligned buffer, and a caller's slice
/// (a prefix read into a `Vec<u8>`, bytes inside a larger buffer) need not be.
fn read_struct<T: pod::Pod>(bytes: &[u8]) -> Option<T> {
    let mut words = [0u64; (EHDR_SIZE / 8) as usize];
    let size = std::mem::size_of::<T>();
    let dst = pod::bytes_of_slice_mut(&mut words).get_mut(..size)?;
    dst.copy_from_slice(bytes.get(..size)?);
    pod::from_bytes::<T>(pod::bytes_of_slice(&words)).ok().map(|(t, _)| *t)
}

#[cold]
fn plan_err(kind: ErrorKind, detail: String) -> Error {
    Error::new("plan", kind, detail)
}

/// How many bytes of the source [`Plan::new`] needs: the ELF header and the program header
/// table. Returns `None` when `bytes` (at least the 64-byte header) says the table is absurd.
pub fn headers_len(ehdr: &[u8]) -> Option<u64> {
    let hdr: elf::FileHeader64<LE> = read_struct(ehdr)?;
    let phoff = hdr.e_phoff.get(LE);
    let phnum = u64::from(hdr.e_phnum.get(LE));
    let phentsize = u64::from(hdr.e_phentsize.get(LE));
    phoff.checked_add(phnum.checked_mul(phentsize)?).map(|end| end.max(EHDR_SIZE))
}

/// The smallest base page any Linux architecture uses. The planner plans for any page size at or
/// above it (it may be planning for another machine, so it cannot ask the kernel).
pub const MIN_PAGE_SIZE: u64 = 4 << 10;

impl Plan {
    /// Validates the ELF header and program headers in `bytes` (a prefix of the image holding at
    /// least the header and the program header table) for an image of `source_len` bytes, and
    /// plans its mappings for pages of `page_size` bytes. The image must be built for the
    /// machine the loader runs on ([`Machine::host`]); see [`Plan::for_machine`] to plan for
    /// another one.
    pub fn new(bytes: &[u8], source_len: u64, page_size: u64) -> Result<Plan> {
        Plan::for_machine(bytes, source_len, page_size, Machine::host()?)
    }

    /// [`Plan::new`] for an image built for `machine`, on any host: an aarch64 library can be
    /// checked on an x86_64 machine (the plan is the same arithmetic; only loading needs the
    /// machine itself).
    ///
    /// The phases, in order (the first failing check is the error): check the page size, read
    /// the ELF header, check its identification and type, check the machine, read the program
    /// headers, plan each one in table order (a `PT_LOAD` segment, or the dynamic section, TLS,
    /// RELRO, stack and unwind-table headers), then check the layout and the tables.
    ///
    /// ```
    /// # /// Builds a shared library from C in the current directory (`false`: no compiler here).
    /// # fn cc(out: &str, c: &str, flags: &[&str]) -> bool {
    /// #     std::fs::write("src.c", c).unwrap();
    /// #     std::fs::create_dir_all(std::path::Path::new(out).parent().unwrap()).unwrap();
    /// #     match std::process::Command::new("aarch64-linux-gnu-gcc").args(["-shared", "-fPIC", "-o", out, "src.c"]).args(flags).status() {
    /// #         Ok(s) => { assert!(s.success(), "aarch64-linux-gnu-gcc -o {out}: {s}"); true }
    /// #         Err(e) => { println!("skipped: no aarch64-linux-gnu-gcc ({e})"); false }
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # std::env::set_current_dir(dir.path())?;
    /// # if !cc("lib/arm64-v8a/libfoo.so", "int foo(void) { return 1; }", &["-Wl,-z,max-page-size=16384"]) {
    /// #     return Ok(());
    /// # }
    /// use mmkit_elf::{Machine, Plan};
    /// let bytes = std::fs::read("lib/arm64-v8a/libfoo.so")?;
    /// let plan = Plan::for_machine(&bytes, bytes.len() as u64, 16384, Machine::Aarch64)?;
    /// assert_eq!(plan.machine, Machine::Aarch64);
    /// # Ok(()) }
    /// ```
    pub fn for_machine(bytes: &[u8], source_len: u64, page_size: u64, machine: Machine) -> Result<Plan> {
        check_page_size(page_size)?;
        let hdr = read_header(bytes, source_len)?;
        check_ident(&hdr)?;
        check_machine(&hdr, machine)?;
        let phdrs = read_program_headers(bytes, source_len, &hdr)?;
        let mut plan = Plan::empty(machine, page_size, &hdr);
        for (i, ph) in phdrs.iter().enumerate() {
            let ph = Phdr::read(i, ph);
            if ph.p_type == elf::PT_LOAD {
                let segment = SegmentPlan::new(&ph, page_size, source_len)?;
                plan.push_segment(segment, &ph)?;
            } else {
                plan.plan_other_segment(&ph)?;
            }
        }
        plan.check_layout()?;
        plan.check_tables()?;
        Ok(plan)
    }

    /// The segment whose pages contain link-time address `vaddr`.
    pub fn segment_at(&self, vaddr: u64) -> Option<&SegmentPlan> {
        self.segments.iter().find(|s| vaddr >= s.map_vaddr && vaddr < s.map_end())
    }

    /// A plan with no segments yet, for the image `hdr` heads.
    fn empty(machine: Machine, page_size: u64, hdr: &elf::FileHeader64<LE>) -> Plan {
        Plan {
            machine,
            page_size,
            span_vaddr: 0,
            span_len: 0,
            max_align: page_size,
            segments: Vec::new(),
            relro: None,
            dynamic: None,
            tls: None,
            // Until a PT_GNU_STACK says otherwise: glibc's default stack permissions for the
            // machine, PF_X on x86_64, not on aarch64.
            exec_stack: machine == Machine::X86_64,
            eh_frame_hdr: None,
            entry: hdr.e_entry.get(LE),
            phdrs: (hdr.e_phoff.get(LE), u64::from(hdr.e_phnum.get(LE))),
        }
    }

    /// Records a header other than `PT_LOAD`: the dynamic section, RELRO, TLS, the stack's
    /// protection, the unwind-table header; other types are ignored.
    fn plan_other_segment(&mut self, ph: &Phdr) -> Result<()> {
        let (i, vaddr, memsz) = (ph.index, ph.vaddr, ph.memsz);
        match ph.p_type {
            elf::PT_DYNAMIC => self.dynamic = Some((vaddr, memsz)),
            elf::PT_GNU_RELRO => {
                let start = down(vaddr, self.page_size);
                let end = vaddr.checked_add(memsz).map(|e| down(e, self.page_size));
                match end {
                    Some(end) if end > start => self.relro = Some((start, end - start)),
                    Some(_) => {}
                    None => {
                        return Err(ph.range(plan_err(
                            ErrorKind::SegmentsOverlap,
                            format!("PT_GNU_RELRO (phdr {i}) end overflows"),
                        )))
                    }
                }
            }
            elf::PT_TLS => {
                let (filesz, align) = (ph.filesz, ph.align);
                if filesz > memsz || (align > 1 && !align.is_power_of_two()) {
                    return Err(ph.range(plan_err(
                        ErrorKind::BadProgramHeaders,
                        format!("PT_TLS (phdr {i}) has p_filesz > p_memsz or a bad p_align"),
                    )));
                }
                self.tls = Some(TlsPlan { vaddr, file_size: filesz, mem_size: memsz, align: align.max(1) });
            }
            elf::PT_GNU_STACK => self.exec_stack = ph.flags & elf::PF_X != 0,
            elf::PT_GNU_EH_FRAME => self.eh_frame_hdr = Some((vaddr, memsz)),
            _ => {}
        }
        Ok(())
    }

    /// Appends a planned `PT_LOAD` segment: its pages must start at or after the end of the
    /// previous segment's pages.
    fn push_segment(&mut self, segment: SegmentPlan, ph: &Phdr) -> Result<()> {
        if let Some(prev) = self.segments.last() {
            if segment.map_vaddr < prev.map_end() {
                return Err(ph.range(plan_err(
                    ErrorKind::SegmentsOverlap,
                    format!(
                        "segment {} at {:#x} overlaps or precedes the pages of segment {} (ending at {:#x})",
                        ph.index,
                        ph.vaddr,
                        prev.phdr_index,
                        prev.map_end()
                    ),
                )));
            }
        }
        self.max_align = self.max_align.max(segment.align);
        self.segments.push(segment);
        Ok(())
    }

    /// Once every segment is planned: there is at least one, the writable ones the loader
    /// writes all of are marked to prefault, and the span to reserve is not empty.
    fn check_layout(&mut self) -> Result<()> {
        if self.segments.is_empty() {
            return Err(plan_err(ErrorKind::NoLoadSegments, "no PT_LOAD segment".into()));
        }
        self.mark_prefault();
        let (first, last) = (&self.segments[0], &self.segments[self.segments.len() - 1]);
        self.span_vaddr = first.map_vaddr;
        self.span_len = last.map_end() - first.map_vaddr;
        if self.span_len == 0 {
            return Err(plan_err(ErrorKind::NoLoadSegments, "PT_LOAD segments are empty".into()));
        }
        Ok(())
    }

    /// Sets [`SegmentPlan::prefault`] on each writable segment whose file pages the loader
    /// writes all of: RELRO up to the page whose tail it zeroes.
    fn mark_prefault(&mut self) {
        let (page, relro) = (self.page_size, self.relro);
        for seg in self.segments.iter_mut().filter(|s| s.prot.writable() && s.map_file_len > 0) {
            let file_end = seg.map_vaddr + seg.map_file_len;
            // Pages before the zeroed one must all be RELRO.
            let relro_needed_to = if seg.zero_len > 0 { file_end - page } else { file_end };
            seg.prefault = relro_needed_to <= seg.map_vaddr
                || relro.is_some_and(|(rs, rl)| rs <= seg.map_vaddr && rs.saturating_add(rl) >= relro_needed_to);
        }
    }

    /// Tables the executor will touch (RELRO, the dynamic section, the unwind-table header, the
    /// TLS image) must lie inside loaded memory, and the reservation's alignment must be sane.
    fn check_tables(&self) -> Result<()> {
        let outside = |detail| Err(plan_err(ErrorKind::BadProgramHeaders, detail));
        if let Some((start, len)) = self.relro.filter(|&(start, len)| !self.inside(start, len)) {
            return outside(format!("PT_GNU_RELRO pages {start:#x}+{len:#x} lie outside the PT_LOAD segments"));
        }
        if let Some((start, len)) = self.dynamic.filter(|&(start, len)| !self.inside(start, len)) {
            return outside(format!("PT_DYNAMIC {start:#x}+{len:#x} lies outside the PT_LOAD segments"));
        }
        if let Some((start, len)) = self.eh_frame_hdr.filter(|&(start, len)| !self.inside(start, len)) {
            return outside(format!("PT_GNU_EH_FRAME {start:#x}+{len:#x} lies outside the PT_LOAD segments"));
        }
        if let Some(tls) = self.tls.as_ref().filter(|tls| !self.inside(tls.vaddr, tls.file_size)) {
            let (start, len) = (tls.vaddr, tls.file_size);
            return outside(format!("PT_TLS image {start:#x}+{len:#x} lies outside the PT_LOAD segments"));
        }
        if self.max_align > 1 << 30 {
            return Err(plan_err(
                ErrorKind::BadAlignment,
                format!("p_align {:#x} is larger than 1 GiB", self.max_align),
            ));
        }
        Ok(())
    }

    /// `[start, start + len)` lies inside the pages of one `PT_LOAD` segment.
    fn inside(&self, start: u64, len: u64) -> bool {
        start
            .checked_add(len)
            .is_some_and(|end| self.segments.iter().any(|s| start >= s.map_vaddr && end <= s.map_end()))
    }
}

/// One program header's fields, read once (native integers, with its index in the table).
struct Phdr {
    index: usize,
    p_type: u32,
    vaddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
    flags: u32,
}

impl Phdr {
    fn read(index: usize, ph: &elf::ProgramHeader64<LE>) -> Phdr {
        Phdr {
            index,
            p_type: ph.p_type.get(LE),
            vaddr: ph.p_vaddr.get(LE),
            offset: ph.p_offset.get(LE),
            filesz: ph.p_filesz.get(LE),
            memsz: ph.p_memsz.get(LE),
            align: ph.p_align.get(LE),
            flags: ph.p_flags.get(LE),
        }
    }

    /// `e` with the header's file range (`p_offset`, `p_filesz`).
    fn range(&self, e: Error) -> Error {
        e.with_range(self.offset, self.filesz)
    }
}

impl SegmentPlan {
    /// Checks one `PT_LOAD` header and works out its page arithmetic (not yet its `prefault`,
    /// which needs the RELRO range).
    fn new(ph: &Phdr, page: u64, source_len: u64) -> Result<SegmentPlan> {
        let prot = check_load_segment(ph, page, source_len)?;
        let Phdr { index: i, vaddr, offset, filesz, memsz, .. } = *ph;
        let overflow = || {
            ph.range(plan_err(
                ErrorKind::SegmentsOverlap,
                format!("segment {i}: address {vaddr:#x} + {memsz:#x} overflows"),
            ))
        };
        // Keep every address below 2^47 - so bias arithmetic never overflows.
        let mem_end = vaddr.checked_add(memsz).filter(|&e| e < 1 << 47).ok_or_else(overflow)?;
        let map_vaddr = down(vaddr, page);
        let file_end = vaddr + filesz;
        let file_page_end = up(file_end, page).ok_or_else(overflow)?;
        let mem_page_end = up(mem_end, page).ok_or_else(overflow)?;
        // Where anonymous pages begin: after the file pages, or at the first page when the
        // segment has no file data.
        let bss_vaddr = if filesz == 0 { map_vaddr } else { file_page_end };
        Ok(SegmentPlan {
            phdr_index: i,
            vaddr,
            mem_size: memsz,
            file_offset: offset,
            file_size: filesz,
            align: ph.align,
            prot,
            map_vaddr,
            map_offset: down(offset, page),
            map_file_len: if filesz == 0 { 0 } else { file_page_end - map_vaddr },
            // Like glibc and bionic: when a writable segment has .bss, the file page holding the
            // end of its data is zeroed from there to the end of the page.
            zero_len: if prot.writable() && filesz > 0 && memsz > filesz { file_page_end - file_end } else { 0 },
            bss_vaddr,
            bss_len: mem_page_end.saturating_sub(bss_vaddr),
            prefault: false,
        })
    }
}

/// The page size is a power of two at or above [`MIN_PAGE_SIZE`].
pub(crate) fn check_page_size(page_size: u64) -> Result<()> {
    if page_size < MIN_PAGE_SIZE || !page_size.is_power_of_two() {
        return Err(plan_err(
            ErrorKind::BadPageSize,
            format!("page size {page_size:#x} is not a power of two ≥ 4 KiB"),
        ));
    }
    Ok(())
}

/// Reads the ELF header: the source holds the magic number and all 64 bytes.
fn read_header(bytes: &[u8], source_len: u64) -> Result<elf::FileHeader64<LE>> {
    let avail = (bytes.len() as u64).min(source_len);
    if avail < 4 {
        return Err(plan_err(ErrorKind::Truncated, format!("{avail} bytes is too short for an ELF header"))
            .with_range(0, EHDR_SIZE));
    }
    if bytes[..4] != elf::ELFMAG {
        return Err(plan_err(
            ErrorKind::BadMagic,
            format!("bad magic {:02x?}, expected 7f 45 4c 46 (\\x7fELF)", &bytes[..4]),
        )
        .with_range(0, 4));
    }
    if avail < EHDR_SIZE {
        return Err(plan_err(ErrorKind::Truncated, format!("{avail} bytes is too short for a 64-byte ELF header"))
            .with_range(0, EHDR_SIZE));
    }
    read_struct::<elf::FileHeader64<LE>>(&bytes[..EHDR_SIZE as usize])
        .ok_or_else(|| plan_err(ErrorKind::Truncated, "unreadable ELF header".into()))
}

/// The header's identification (64-bit, little-endian, version 1) and type (a shared object).
fn check_ident(hdr: &elf::FileHeader64<LE>) -> Result<()> {
    let ident = &hdr.e_ident;
    if ident.class != elf::ELFCLASS64 {
        return Err(plan_err(ErrorKind::BadClass, format!("EI_CLASS is {}, expected ELFCLASS64 (2)", ident.class))
            .with_range(4, 1));
    }
    if ident.data != elf::ELFDATA2LSB {
        return Err(plan_err(ErrorKind::BadEndianness, format!("EI_DATA is {}, expected ELFDATA2LSB (1)", ident.data))
            .with_range(5, 1));
    }
    if ident.version != elf::EV_CURRENT || hdr.e_version.get(LE) != u32::from(elf::EV_CURRENT) {
        return Err(plan_err(
            ErrorKind::BadVersion,
            format!("ELF version is {}, expected EV_CURRENT (1)", ident.version),
        )
        .with_range(6, 1));
    }
    let e_type = hdr.e_type.get(LE);
    if e_type != elf::ET_DYN {
        let what = match e_type {
            elf::ET_REL => "a relocatable object (ET_REL)",
            elf::ET_EXEC => "a position-dependent executable (ET_EXEC)",
            elf::ET_CORE => "a core file (ET_CORE)",
            _ => "not ET_DYN",
        };
        return Err(plan_err(
            ErrorKind::NotSharedObject,
            format!("e_type {e_type} is {what}; only shared objects (ET_DYN) load"),
        )
        .with_range(16, 2));
    }
    Ok(())
}

/// `e_machine` is the machine being planned for.
fn check_machine(hdr: &elf::FileHeader64<LE>, machine: Machine) -> Result<()> {
    let e_machine = hdr.e_machine.get(LE);
    if e_machine != machine.e_machine() {
        let what = match Machine::from_e_machine(e_machine) {
            Some(m) => format!("{e_machine} ({})", m.em_name()),
            None => e_machine.to_string(),
        };
        let verb = if Machine::HOST == Some(machine) { "this loader runs" } else { "planning for" };
        return Err(
            plan_err(ErrorKind::WrongMachine, format!("e_machine is {what}, {verb} {machine}")).with_range(18, 2)
        );
    }
    Ok(())
}

/// Reads the program header table `hdr` points to: 1 to [`MAX_PHNUM`] entries of
/// [`PHDR_SIZE`] bytes, 8-byte aligned, inside the source and inside the bytes read.
fn read_program_headers(
    bytes: &[u8],
    source_len: u64,
    hdr: &elf::FileHeader64<LE>,
) -> Result<Vec<elf::ProgramHeader64<LE>>> {
    let phoff = hdr.e_phoff.get(LE);
    let phnum = u64::from(hdr.e_phnum.get(LE));
    let phentsize = u64::from(hdr.e_phentsize.get(LE));
    if phentsize != PHDR_SIZE {
        return Err(plan_err(
            ErrorKind::BadProgramHeaders,
            format!("e_phentsize is {phentsize}, expected {PHDR_SIZE}"),
        )
        .with_range(54, 2));
    }
    if phnum == 0 || phnum > MAX_PHNUM {
        return Err(plan_err(ErrorKind::BadProgramHeaders, format!("e_phnum is {phnum}, expected 1..={MAX_PHNUM}"))
            .with_range(56, 2));
    }
    let table_len = phnum * PHDR_SIZE;
    let table_end = phoff.checked_add(table_len).filter(|&end| end <= source_len);
    let Some(table_end) = table_end else {
        return Err(plan_err(
            ErrorKind::BadProgramHeaders,
            format!("program header table lies outside the {source_len}-byte source"),
        )
        .with_range(phoff, table_len));
    };
    if !phoff.is_multiple_of(8) {
        return Err(plan_err(ErrorKind::BadProgramHeaders, format!("e_phoff {phoff:#x} is not 8-byte aligned"))
            .with_range(phoff, table_len));
    }
    if table_end > bytes.len() as u64 {
        return Err(plan_err(ErrorKind::Truncated, format!("only {} header bytes were read", bytes.len()))
            .with_range(phoff, table_len));
    }
    bytes[phoff as usize..table_end as usize]
        .chunks_exact(PHDR_SIZE as usize)
        .map(read_struct::<elf::ProgramHeader64<LE>>)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| plan_err(ErrorKind::BadProgramHeaders, "unreadable table".into()))
}

/// Checks one `PT_LOAD` header on its own (its place among the others is checked when it is
/// pushed) and returns its protection.
fn check_load_segment(ph: &Phdr, page: u64, source_len: u64) -> Result<Protection> {
    let Phdr { index: i, vaddr, offset, filesz, memsz, align, .. } = *ph;
    let prot = protection_of(ph.flags);
    let fail = |kind, detail| Err(ph.range(plan_err(kind, detail)));
    if align > 1 && !align.is_power_of_two() {
        return fail(ErrorKind::BadAlignment, format!("segment {i}: p_align {align:#x} is not a power of two"));
    }
    if align < page {
        return fail(
            ErrorKind::BadAlignment,
            format!(
                "segment {i}: p_align {align:#x} is smaller than the {page:#x}-byte page \
                 (relink with -z max-page-size={page})"
            ),
        );
    }
    if vaddr % page != offset % page {
        return fail(
            ErrorKind::OffsetNotCongruent,
            format!(
                "segment {i}: p_vaddr {vaddr:#x} and p_offset {offset:#x} differ modulo \
                 the page size {page:#x}"
            ),
        );
    }
    if offset.checked_add(filesz).is_none_or(|end| end > source_len) {
        return fail(
            ErrorKind::SegmentOutsideSource,
            format!("segment {i}: file range lies outside the {source_len:#x}-byte source"),
        );
    }
    if filesz > memsz {
        return fail(
            ErrorKind::FileSizeExceedsMemSize,
            format!("segment {i}: p_filesz {filesz:#x} > p_memsz {memsz:#x}"),
        );
    }
    if prot.writable() && prot.executable() {
        return fail(ErrorKind::WritableAndExecutable, format!("segment {i} is writable and executable (W+X)"));
    }
    Ok(prot)
}
