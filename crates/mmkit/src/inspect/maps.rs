//! Parsers of `/proc/<pid>/maps`, `/proc/<pid>/smaps` and `/proc/<pid>/smaps_rollup`.
//!
//! The text formats are the kernel's (`fs/proc/task_mmu.c`, documented in
//! [proc_pid_maps(5)](https://man7.org/linux/man-pages/man5/proc_pid_maps.5.html) and
//! `Documentation/filesystems/proc.rst`). The parsers are pure: they take bytes and return typed
//! records or a [`ParseError`] naming the line; they never panic on any input.
//!
//! A maps line reads
//! `start-end perms offset major:minor inode   pathname`. The pathname column is padded with
//! spaces; a file path is absolute (it starts with `/`), so the padding never eats part of it,
//! and a path may itself contain spaces. The kernel appends ` (deleted)` to unlinked files and
//! escapes a newline in a path as `\012`.

#![deny(unsafe_code)]

use std::ffi::OsStr;
use std::fmt;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A line of `/proc` text that did not parse: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what} in {text:?}")]
pub struct ParseError {
    /// 1-based line number in the parsed text.
    pub line: usize,
    /// What was expected and not found.
    pub what: &'static str,
    /// The offending line, cut to at most 120 bytes (lossy UTF-8).
    pub text: String,
}

impl ParseError {
    fn new(line: usize, what: &'static str, text: &[u8]) -> Self {
        let cut = &text[..text.len().min(120)];
        ParseError { line, what, text: String::from_utf8_lossy(cut).into_owned() }
    }
}

/// Access bits of a mapping: the `rwxp` / `rwxs` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Perms {
    /// `r`: readable.
    pub read: bool,
    /// `w`: writable.
    pub write: bool,
    /// `x`: executable.
    pub exec: bool,
    /// `s`: shared (`MAP_SHARED`); `p` when private (copy-on-write).
    pub shared: bool,
}

impl Perms {
    fn parse(field: &[u8]) -> Option<Perms> {
        let [r, w, x, s] = field else { return None };
        let flag = |c: u8, yes: u8| match c {
            b'-' => Some(false),
            c if c == yes => Some(true),
            _ => None,
        };
        Some(Perms {
            read: flag(*r, b'r')?,
            write: flag(*w, b'w')?,
            exec: flag(*x, b'x')?,
            shared: match s {
                b's' => true,
                b'p' => false,
                _ => return None,
            },
        })
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |on: bool, ch: char| if on { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.exec, 'x'),
            if self.shared { 's' } else { 'p' }
        )
    }
}

/// The device holding the backing file, as `major:minor` (both `0` for anonymous memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DeviceId {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}", self.major, self.minor)
    }
}

/// What a mapping's pathname column says about its backing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Backing {
    /// No pathname: private or shared anonymous memory without a name.
    Anonymous,
    /// A file, named by an absolute path (a `\012` escape is kept as the kernel wrote it).
    File {
        /// The path with any ` (deleted)` suffix removed.
        path: PathBuf,
        /// The kernel marked the file ` (deleted)`: it was unlinked after being mapped.
        deleted: bool,
    },
    /// A pseudo-path: `[heap]`, `[stack]`, `[vdso]`, `[anon:name]`, `anon_inode:[...]`, ...,
    /// kept verbatim.
    Pseudo(String),
}

impl Backing {
    fn parse(text: &[u8]) -> Backing {
        if text.is_empty() {
            return Backing::Anonymous;
        }
        if text[0] == b'/' {
            const DELETED: &[u8] = b" (deleted)";
            let (path, deleted) = match text.strip_suffix(DELETED) {
                Some(rest) => (rest, true),
                None => (text, false),
            };
            return Backing::File { path: PathBuf::from(OsStr::from_bytes(path)), deleted };
        }
        Backing::Pseudo(String::from_utf8_lossy(text).into_owned())
    }

    /// Whether this is what [`parse`](Self::parse) makes of `text`.
    fn is(&self, text: &[u8]) -> bool {
        match self {
            Backing::Anonymous => text.is_empty(),
            Backing::File { path, deleted } => {
                let p = path.as_os_str().as_bytes();
                text.first() == Some(&b'/')
                    && text.starts_with(p)
                    && match &text[p.len()..] {
                        b"" => !deleted && !p.ends_with(b" (deleted)"),
                        b" (deleted)" => *deleted,
                        _ => false,
                    }
            }
            Backing::Pseudo(p) => text.first() != Some(&b'/') && !text.is_empty() && text == p.as_bytes(),
        }
    }

    /// The pathname column as the kernel prints it (empty for anonymous memory).
    pub fn display(&self) -> String {
        match self {
            Backing::Anonymous => String::new(),
            Backing::File { path, deleted } => {
                let mut s = path.to_string_lossy().into_owned();
                if *deleted {
                    s.push_str(" (deleted)");
                }
                s
            }
            Backing::Pseudo(p) => p.clone(),
        }
    }

    /// The file path, for file-backed mappings.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Backing::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The name given with `PR_SET_VMA_ANON_NAME`, for `[anon:name]` and `[anon_shmem:name]`.
    pub fn anon_name(&self) -> Option<&str> {
        let Backing::Pseudo(p) = self else { return None };
        p.strip_prefix("[anon:").or_else(|| p.strip_prefix("[anon_shmem:")).and_then(|rest| rest.strip_suffix(']'))
    }
}

/// The kind of a mapping, for grouping and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum MapKind {
    /// A regular file (including memfd, SysV shm and deleted files).
    File,
    /// Anonymous memory without a name: private, shared (`/dev/zero (deleted)` in the maps
    /// file) and hugetlb (`/anon_hugepage (deleted)`).
    Anonymous,
    /// Anonymous memory named with `PR_SET_VMA_ANON_NAME` (`[anon:name]`).
    NamedAnonymous,
    /// The brk heap (`[heap]`).
    Heap,
    /// The main thread's stack (`[stack]`, or `[stack:tid]` on old kernels).
    Stack,
    /// A device node mapped from `/dev` (not `/dev/shm`): `/dev/zero`, UIO, `/dev/mem`, DRM...
    Device,
    /// Kernel-provided special mappings: `[vdso]`, `[vvar]`, `[vsyscall]`, `anon_inode:...`.
    Special,
}

impl MapKind {
    /// All kinds, in display order.
    pub const ALL: [MapKind; 7] = [
        MapKind::File,
        MapKind::Anonymous,
        MapKind::NamedAnonymous,
        MapKind::Heap,
        MapKind::Stack,
        MapKind::Device,
        MapKind::Special,
    ];

    /// The snake_case name used in tables and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            MapKind::File => "file",
            MapKind::Anonymous => "anonymous",
            MapKind::NamedAnonymous => "named_anonymous",
            MapKind::Heap => "heap",
            MapKind::Stack => "stack",
            MapKind::Device => "device",
            MapKind::Special => "special",
        }
    }
}

impl fmt::Display for MapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of `/proc/<pid>/maps`: a virtual memory area.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapsEntry {
    /// First address of the area.
    pub start: u64,
    /// One past the last address of the area.
    pub end: u64,
    /// Access bits and sharing.
    pub perms: Perms,
    /// Offset into the backing file, in bytes.
    pub offset: u64,
    /// Device of the backing file.
    pub device: DeviceId,
    /// Inode of the backing file (0 for anonymous memory).
    pub inode: u64,
    /// The pathname column.
    pub backing: Backing,
}

impl MapsEntry {
    /// Length of the area in bytes (0 for an entry built with `end` before `start`, which the
    /// parser never returns).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the area is empty (never true for areas the kernel reports).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The area's kind, for grouping.
    pub fn kind(&self) -> MapKind {
        match &self.backing {
            Backing::Anonymous => MapKind::Anonymous,
            Backing::File { path, deleted } => {
                let p = path.as_os_str().as_bytes();
                // The kernel backs shared anonymous memory with an unlinked `/dev/zero` shmem
                // file and anonymous hugetlb memory with an unlinked `/anon_hugepage`: both are
                // anonymous memory, whatever the pathname column says.
                if *deleted && (p == b"/dev/zero" || p == b"/anon_hugepage") {
                    MapKind::Anonymous
                } else if p.starts_with(b"/dev/") && !p.starts_with(b"/dev/shm/") {
                    MapKind::Device
                } else {
                    MapKind::File
                }
            }
            Backing::Pseudo(p) => {
                if self.backing.anon_name().is_some() {
                    MapKind::NamedAnonymous
                } else if p == "[heap]" {
                    MapKind::Heap
                } else if p == "[stack]" || p.starts_with("[stack:") {
                    MapKind::Stack
                } else {
                    MapKind::Special
                }
            }
        }
    }

    /// Parses one maps line (without its newline). `line_no` is used in errors.
    pub fn parse_line(line: &[u8], line_no: usize) -> Result<MapsEntry, ParseError> {
        if let Some(h) = HeaderFields::parse(line) {
            return Ok(h.into_entry());
        }
        Self::parse_line_general(line, line_no)
    }

    /// [`parse_line`](Self::parse_line) for any spacing the kernel does not print, and the
    /// errors.
    fn parse_line_general(line: &[u8], line_no: usize) -> Result<MapsEntry, ParseError> {
        let err = |what| ParseError::new(line_no, what, line);
        if !line.first().is_some_and(u8::is_ascii_hexdigit) {
            return Err(err("address range"));
        }
        let mut rest = line;
        let mut field = |what| -> Result<&[u8], ParseError> {
            let (f, r) = next_field(rest).ok_or_else(|| err(what))?;
            rest = r;
            Ok(f)
        };
        let range = field("address range")?;
        let perms = field("permissions")?;
        let offset = field("offset")?;
        let device = field("device")?;
        let inode = field("inode")?;

        let (start, end) = split_once(range, b'-').ok_or_else(|| err("address range"))?;
        let start = parse_hex(start).ok_or_else(|| err("start address"))?;
        let end = parse_hex(end).ok_or_else(|| err("end address"))?;
        if start > end {
            return Err(err("start address after end address"));
        }
        let perms = Perms::parse(perms).ok_or_else(|| err("permissions"))?;
        let offset = parse_hex(offset).ok_or_else(|| err("offset"))?;
        let (major, minor) = split_once(device, b':').ok_or_else(|| err("device"))?;
        let device = DeviceId {
            major: parse_hex(major).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| err("device major"))?,
            minor: parse_hex(minor).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| err("device minor"))?,
        };
        let inode = parse_dec(inode).ok_or_else(|| err("inode"))?;
        // After the inode comes padding, then the pathname (which may contain spaces).
        let path = trim_start(rest);
        Ok(MapsEntry { start, end, perms, offset, device, inode, backing: Backing::parse(path) })
    }
}

/// A maps line exactly as the kernel prints it (one space between the fields, hex digits,
/// the device numbers at most 8 digits, the inode at most 19), read in one pass. `None` for
/// anything else, which [`MapsEntry::parse_line`]'s general path then reads (or refuses): what
/// this reads, that reads alike.
struct HeaderFields<'a> {
    start: u64,
    end: u64,
    perms: Perms,
    offset: u64,
    device: DeviceId,
    inode: u64,
    /// The pathname column, padding removed.
    path: &'a [u8],
}

/// Each byte's value as a hex digit, or 0xff.
const HEX_DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

impl<'a> HeaderFields<'a> {
    #[inline]
    fn parse(line: &'a [u8]) -> Option<HeaderFields<'a>> {
        let mut i = 0;
        let start = hex_run(line, &mut i, 16, b'-')?;
        let end = hex_run(line, &mut i, 16, b' ')?;
        let perms = Perms::parse(line.get(i..i + 4)?)?;
        if line.get(i + 4) != Some(&b' ') {
            return None;
        }
        i += 5;
        let offset = hex_run(line, &mut i, 16, b' ')?;
        let major = hex_run(line, &mut i, 8, b':')?;
        let minor = hex_run(line, &mut i, 8, b' ')?;
        let from = i;
        let mut inode = 0u64;
        while let Some(d) = line.get(i).filter(|b| b.is_ascii_digit()) {
            if i - from == 19 {
                // Nineteen digits always fit in a u64; more are the general path's to check.
                return None;
            }
            inode = inode * 10 + u64::from(d - b'0');
            i += 1;
        }
        let path = match line.get(i) {
            _ if i == from => return None,
            None => &[][..],
            Some(b' ') => trim_start(&line[i..]),
            Some(_) => return None,
        };
        if start > end {
            return None;
        }
        // Eight hex digits fit in a u32.
        let device = DeviceId { major: u32::try_from(major).ok()?, minor: u32::try_from(minor).ok()? };
        Some(HeaderFields { start, end, perms, offset, device, inode, path })
    }

    fn into_entry(self) -> MapsEntry {
        MapsEntry {
            start: self.start,
            end: self.end,
            perms: self.perms,
            offset: self.offset,
            device: self.device,
            inode: self.inode,
            backing: Backing::parse(self.path),
        }
    }

    /// Writes these fields into `e`, keeping `e`'s pathname (and its allocation) when it is
    /// the same: the areas of one file come in a row.
    fn store(self, e: &mut MapsEntry) {
        (e.start, e.end, e.perms, e.offset, e.device, e.inode) =
            (self.start, self.end, self.perms, self.offset, self.device, self.inode);
        if !e.backing.is(self.path) {
            e.backing = Backing::parse(self.path);
        }
    }
}

/// The hex number of 1 to `max` digits at `line[*i..]`, which `sep` must follow; `*i` is
/// left after `sep`.
#[inline]
fn hex_run(line: &[u8], i: &mut usize, max: usize, sep: u8) -> Option<u64> {
    let mut v = 0u64;
    for (n, &b) in line.get(*i..)?.iter().enumerate() {
        let d = HEX_DIGIT[usize::from(b)];
        if d == 0xff {
            if b != sep || n == 0 || n > max {
                return None;
            }
            *i += n + 1;
            return Some(v);
        }
        // More than 16 digits are refused above, before the shifted-out bits could matter.
        v = (v << 4) | u64::from(d);
    }
    None
}

/// Memory counters of one area (from `smaps`) or a whole process (from `smaps_rollup`), in KiB.
///
/// Counters a kernel does not print stay 0; counters this version does not know are kept in
/// [`other`](Self::other).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MemStats {
    /// `Size`: virtual size.
    pub size: u64,
    /// `KernelPageSize`.
    pub kernel_page_size: u64,
    /// `MMUPageSize`.
    pub mmu_page_size: u64,
    /// `Rss`: resident.
    pub rss: u64,
    /// `Pss`: proportional set size (resident, shared pages divided among their mappers).
    pub pss: u64,
    /// `Pss_Dirty`.
    pub pss_dirty: u64,
    /// `Pss_Anon` (rollup only).
    pub pss_anon: u64,
    /// `Pss_File` (rollup only).
    pub pss_file: u64,
    /// `Pss_Shmem` (rollup only).
    pub pss_shmem: u64,
    /// `Shared_Clean`.
    pub shared_clean: u64,
    /// `Shared_Dirty`.
    pub shared_dirty: u64,
    /// `Private_Clean`.
    pub private_clean: u64,
    /// `Private_Dirty`.
    pub private_dirty: u64,
    /// `Referenced`.
    pub referenced: u64,
    /// `Anonymous`.
    pub anonymous: u64,
    /// `KSM`.
    pub ksm: u64,
    /// `LazyFree`.
    pub lazy_free: u64,
    /// `AnonHugePages`: anonymous memory backed by transparent huge pages.
    pub anon_huge_pages: u64,
    /// `ShmemPmdMapped`.
    pub shmem_pmd_mapped: u64,
    /// `FilePmdMapped`: file memory mapped with PMD (huge) entries.
    pub file_pmd_mapped: u64,
    /// `Shared_Hugetlb`.
    pub shared_hugetlb: u64,
    /// `Private_Hugetlb`.
    pub private_hugetlb: u64,
    /// `Swap`.
    pub swap: u64,
    /// `SwapPss`.
    pub swap_pss: u64,
    /// `Locked`: mlocked.
    pub locked: u64,
    /// Other `Name: N kB` counters, in the order read.
    pub other: Vec<(String, u64)>,
}

/// The counters [`MemStats`] names, in the order the kernel prints them (`__show_smap` in
/// `fs/proc/task_mmu.c`; the `Pss_Anon`/`Pss_File`/`Pss_Shmem` trio only in `smaps_rollup`).
/// A parse looks for each line's name from the slot after the previous one, so a text in the
/// kernel's order costs one comparison per line.
const COUNTERS: [&[u8]; 25] = [
    b"Size",
    b"KernelPageSize",
    b"MMUPageSize",
    b"Rss",
    b"Pss",
    b"Pss_Dirty",
    b"Pss_Anon",
    b"Pss_File",
    b"Pss_Shmem",
    b"Shared_Clean",
    b"Shared_Dirty",
    b"Private_Clean",
    b"Private_Dirty",
    b"Referenced",
    b"Anonymous",
    b"KSM",
    b"LazyFree",
    b"AnonHugePages",
    b"ShmemPmdMapped",
    b"FilePmdMapped",
    b"Shared_Hugetlb",
    b"Private_Hugetlb",
    b"Swap",
    b"SwapPss",
    b"Locked",
];

impl MemStats {
    /// The counter at `COUNTERS[i]`.
    fn slot(&mut self, i: usize) -> Option<&mut u64> {
        Some(match i {
            0 => &mut self.size,
            1 => &mut self.kernel_page_size,
            2 => &mut self.mmu_page_size,
            3 => &mut self.rss,
            4 => &mut self.pss,
            5 => &mut self.pss_dirty,
            6 => &mut self.pss_anon,
            7 => &mut self.pss_file,
            8 => &mut self.pss_shmem,
            9 => &mut self.shared_clean,
            10 => &mut self.shared_dirty,
            11 => &mut self.private_clean,
            12 => &mut self.private_dirty,
            13 => &mut self.referenced,
            14 => &mut self.anonymous,
            15 => &mut self.ksm,
            16 => &mut self.lazy_free,
            17 => &mut self.anon_huge_pages,
            18 => &mut self.shmem_pmd_mapped,
            19 => &mut self.file_pmd_mapped,
            20 => &mut self.shared_hugetlb,
            21 => &mut self.private_hugetlb,
            22 => &mut self.swap,
            23 => &mut self.swap_pss,
            24 => &mut self.locked,
            _ => return None,
        })
    }

    /// Sets the counter named `key` (as the kernel spells it), looking from `*hint` on and
    /// leaving `*hint` at the slot after it: its index in [`COUNTERS`], or `None` if the name
    /// is unknown to this struct (the caller keeps it in `other`).
    fn set(&mut self, key: &[u8], kib: u64, hint: &mut usize) -> Option<usize> {
        let n = COUNTERS.len();
        let i = (0..n).map(|k| (*hint + k) % n).find(|&i| COUNTERS[i] == key)?;
        *hint = i + 1;
        *self.slot(i)? = kib;
        Some(i)
    }

    /// Adds `other`'s counters to these (saturating); page sizes and `other` are not summed.
    pub fn add(&mut self, o: &MemStats) {
        let pairs: [(&mut u64, u64); 22] = [
            (&mut self.size, o.size),
            (&mut self.rss, o.rss),
            (&mut self.pss, o.pss),
            (&mut self.pss_dirty, o.pss_dirty),
            (&mut self.pss_anon, o.pss_anon),
            (&mut self.pss_file, o.pss_file),
            (&mut self.pss_shmem, o.pss_shmem),
            (&mut self.shared_clean, o.shared_clean),
            (&mut self.shared_dirty, o.shared_dirty),
            (&mut self.private_clean, o.private_clean),
            (&mut self.private_dirty, o.private_dirty),
            (&mut self.referenced, o.referenced),
            (&mut self.anonymous, o.anonymous),
            (&mut self.ksm, o.ksm),
            (&mut self.lazy_free, o.lazy_free),
            (&mut self.anon_huge_pages, o.anon_huge_pages),
            (&mut self.shmem_pmd_mapped, o.shmem_pmd_mapped),
            (&mut self.file_pmd_mapped, o.file_pmd_mapped),
            (&mut self.shared_hugetlb, o.shared_hugetlb),
            (&mut self.private_hugetlb, o.private_hugetlb),
            (&mut self.swap, o.swap),
            (&mut self.swap_pss, o.swap_pss),
        ];
        for (a, b) in pairs {
            *a = a.saturating_add(b);
        }
        self.locked = self.locked.saturating_add(o.locked);
    }
}

/// One area of `/proc/<pid>/smaps`: its maps line and its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    /// The maps line.
    pub area: MapsEntry,
    /// The counters, in KiB.
    pub stats: MemStats,
    /// `THPeligible`: whether the area may be backed by transparent huge pages
    /// (`None` when the kernel does not print it).
    pub thp_eligible: Option<bool>,
    /// `ProtectionKey`, on kernels and CPUs with memory protection keys.
    pub protection_key: Option<u32>,
    /// `VmFlags`: two-letter flags such as `rd`, `wr`, `lo` (locked), `hg` (huge advised).
    pub vm_flags: Vec<String>,
}

impl SmapsEntry {
    /// Whether `VmFlags` holds `flag` (e.g. `"lo"`).
    pub fn has_vm_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// `/proc/<pid>/smaps_rollup`: the process's counters summed by the kernel over all areas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsRollup {
    /// Lowest start address of any area.
    pub start: u64,
    /// Highest end address of any area.
    pub end: u64,
    /// The summed counters, in KiB.
    pub stats: MemStats,
}

/// Parses the whole text of `/proc/<pid>/maps`.
pub fn parse_maps(text: &[u8]) -> Result<Vec<MapsEntry>, ParseError> {
    lines(text).map(|(no, line)| MapsEntry::parse_line(line, no)).collect()
}

/// Parses the whole text of `/proc/<pid>/smaps`.
pub fn parse_smaps(text: &[u8]) -> Result<Vec<SmapsEntry>, ParseError> {
    let mut out = Vec::new();
    let mut parser = SmapsParser::default();
    let mut keep = |e: &mut SmapsEntry| {
        out.push(std::mem::replace(e, SmapsEntry::empty()));
        ControlFlow::Continue(())
    };
    let _ = parser.feed(text, &mut keep)?;
    let _ = parser.finish(&mut keep);
    Ok(out)
}

/// Calls `f` with each area of the text of `/proc/<pid>/smaps`, in order, without collecting
/// them; `f` returns [`ControlFlow::Break`] to stop early. The entry `f` sees is reused for the
/// next area (its `VmFlags` strings too), so a long text costs no allocation per area.
///
/// Areas before a malformed line have been handed to `f` when the error is returned.
///
/// ```
/// use std::ops::ControlFlow;
/// let text = b"7f00-8f00 rw-p 00000000 00:00 0 \nRss:                   4 kB\n";
/// let mut rss = 0;
/// mmkit::inspect::maps::parse_smaps_each(text, |e| {
///     rss += e.stats.rss;
///     ControlFlow::Continue(())
/// })?;
/// assert_eq!(rss, 4);
/// # Ok::<(), mmkit::inspect::ParseError>(())
/// ```
pub fn parse_smaps_each(
    text: &[u8],
    mut f: impl FnMut(&SmapsEntry) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, ParseError> {
    let mut parser = SmapsParser::default();
    let mut each = |e: &mut SmapsEntry| f(e);
    if parser.feed(text, &mut each)?.is_break() {
        return Ok(ControlFlow::Break(()));
    }
    Ok(parser.finish(&mut each))
}

/// Where [`SmapsParser`] hands each finished area: a `&mut` so that a collector can take it
/// (and leave an empty one to reuse) and a streaming caller can read it in place.
pub(crate) type Emit<'a> = dyn FnMut(&mut SmapsEntry) -> ControlFlow<()> + 'a;

/// `/proc/<pid>/smaps` parsed piece by piece: each [`feed`](Self::feed) takes whole lines, so
/// a reader can parse a 40 MB text through a small buffer that stays in the CPU's cache. One
/// area is open at a time; it is handed out when the next header (or [`finish`](Self::finish))
/// closes it, and its storage is reused for the next.
///
/// A kernel prints every area's counters in the same order and layout, so the parser learns
/// that order from the first area (its *layout*) and reads each next counter line by position:
/// the line's first 16 bytes (the name, colon and padding) compared with the expected ones as
/// one word, the number parsed from a fixed field. A line that does not match (another order,
/// a number of more than 8 digits, a counter unknown here, odd spacing) takes the general path,
/// which gives the same answer; an area whose known counters came in another order teaches
/// the parser that order for the next areas.
#[derive(Debug)]
pub(crate) struct SmapsParser {
    /// The open area (meaningful while `open`).
    entry: SmapsEntry,
    /// A header has been seen and its area not yet handed out.
    open: bool,
    /// The open area had a `VmFlags` line (else its reused flags are cleared when it closes).
    flags_seen: bool,
    /// Lines seen so far (the number of the last line fed).
    line: usize,
    /// Where the general path looks for the next counter name first (see [`COUNTERS`]).
    hint: usize,
    /// [`counter_prefixes`].
    prefixes: [[u8; 16]; COUNTERS.len()],
    /// The counter lines of an area as the kernel printed the last areas, in order.
    layout: Vec<LayoutLine>,
    /// The open area's next line in `layout`.
    at: usize,
    /// A known counter line of the open area did not match `layout`: `seen` is recording the
    /// area's order, which becomes the layout when the area closes.
    relearn: bool,
    /// The open area's known counters in order (slots of [`COUNTERS`]), while `relearn`.
    seen: Vec<u8>,
    /// The number of the open area's header line.
    header_line: usize,
    /// The text of the last area's counter lines when they were all read by the layout,
    /// right after its header (else empty), and the counters read from it.
    block: Vec<u8>,
    block_stats: MemStats,
    /// The `VmFlags` text `entry.vm_flags` was parsed from.
    flags_text: Vec<u8>,
    /// Flag lists parsed before, with their text: areas in a row often alternate between a
    /// few lists, which are swapped in rather than parsed again.
    flags_seen_before: [(Vec<u8>, Vec<String>); 3],
    /// The slot of `flags_seen_before` replaced next.
    flags_victim: usize,
}

/// One counter line of [`SmapsParser`]'s learned layout, with the last number read there
/// (most areas repeat their neighbours' numbers: the field is compared before it is parsed).
#[derive(Debug, Clone, Copy)]
struct LayoutLine {
    /// The line's first 16 bytes ([`counter_prefix`]) as one word.
    prefix: u128,
    /// The 8-byte number field last read on this line (all zero, never a field, at first).
    field: u64,
    /// Its value.
    value: u64,
    /// The counter's index in [`COUNTERS`].
    slot: u8,
}

impl LayoutLine {
    /// The number of the counter line at the start of `text` when it is this line in the
    /// kernel's layout ([`COUNTER_LINE`] bytes and a newline); `None` for anything else.
    #[inline]
    fn read(&mut self, text: &[u8]) -> Option<u64> {
        let line: &[u8; COUNTER_LINE + 1] = text.get(..=COUNTER_LINE)?.try_into().ok()?;
        let (name, rest) = line.split_first_chunk::<16>()?;
        let (field, tail) = rest.split_first_chunk::<8>()?;
        let tail: &[u8; 4] = tail.try_into().ok()?;
        if u128::from_ne_bytes(*name) != self.prefix || u32::from_ne_bytes(*tail) != u32::from_ne_bytes(*b" kB\n") {
            return None;
        }
        let field_word = u64::from_ne_bytes(*field);
        if field_word != self.field {
            self.value = eight_digits_right_aligned(*field)?;
            self.field = field_word;
        }
        Some(self.value)
    }
}

impl Default for SmapsParser {
    fn default() -> Self {
        SmapsParser {
            entry: SmapsEntry::empty(),
            open: false,
            flags_seen: false,
            line: 0,
            hint: 0,
            prefixes: counter_prefixes(),
            layout: Vec::new(),
            at: 0,
            relearn: false,
            seen: Vec::new(),
            header_line: 0,
            block: Vec::new(),
            block_stats: MemStats::default(),
            flags_text: Vec::new(),
            flags_seen_before: Default::default(),
            flags_victim: 0,
        }
    }
}

impl SmapsEntry {
    /// A placeholder area (no range, no counters).
    pub(crate) fn empty() -> SmapsEntry {
        SmapsEntry {
            area: MapsEntry {
                start: 0,
                end: 0,
                perms: Perms::default(),
                offset: 0,
                device: DeviceId::default(),
                inode: 0,
                backing: Backing::Anonymous,
            },
            stats: MemStats::default(),
            thp_eligible: None,
            protection_key: None,
            vm_flags: Vec::new(),
        }
    }
}

/// Width of a counter line as the kernel prints it when the number has at most 8 digits:
/// the name and colon padded to 16 bytes, the number right-aligned in 8, then ` kB`
/// (`seq_put_decimal_ull_width` in `__show_smap`).
const COUNTER_LINE: usize = 16 + 8 + 3;

/// The start of the `THPeligible` and `ProtectionKey` lines as the kernel prints them
/// (`"THPeligible:    %8u\n"`, `"ProtectionKey:  %8u\n"`), a number field of 8 bytes following.
const THP_PREFIX: &[u8; 16] = b"THPeligible:    ";
const PKEY_PREFIX: &[u8; 16] = b"ProtectionKey:  ";

impl SmapsParser {
    /// Parses `text`, which ends at a line's end (or at the end of the whole text), handing
    /// each area it closes to `emit`; stops when `emit` breaks.
    pub(crate) fn feed(&mut self, text: &[u8], emit: &mut Emit<'_>) -> Result<ControlFlow<()>, ParseError> {
        let mut pos = 0;
        while pos < text.len() {
            if self.open && self.at < self.layout.len() {
                let taken = self.layout_lines(text, pos);
                if taken > 0 {
                    pos += taken;
                    continue;
                }
            }
            self.line += 1;
            let rest = &text[pos..];
            if self.open {
                if let Some(len) = self.fixed_tail_line(rest) {
                    pos += len;
                    continue;
                }
            }
            let end = find_newline(rest).unwrap_or(rest.len());
            let line = &rest[..end];
            pos += end + 1;
            if line.is_empty() {
                continue;
            }
            let no = self.line;
            if let Some(h) = HeaderFields::parse(line) {
                if self.close(emit).is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                h.store(&mut self.entry.area);
                self.open_area();
                continue;
            }
            if self.line_slow(line, no, emit)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reads the open area's counter lines at `text[pos..]` that follow the layout from line
    /// `at` on: the bytes taken (0 when the first does not).
    ///
    /// Most areas are the same size and residency as the ones next to them: when the area's
    /// counters are, byte for byte, the block of the last area whose counters were all read
    /// here, that area's counters are taken whole.
    #[inline]
    fn layout_lines(&mut self, text: &[u8], pos: usize) -> usize {
        let first = self.line == self.header_line;
        let block = &self.block[..];
        if first && !block.is_empty() && text.get(pos..pos + block.len()) == Some(block) {
            // Right after the header: nothing of this area has been read yet.
            let other = std::mem::take(&mut self.entry.stats.other);
            self.entry.stats = MemStats { other, ..self.block_stats.clone() };
            self.at = self.layout.len();
            self.line += self.layout.len();
            return block.len();
        }
        let from = self.at;
        let mut at = from;
        let mut end = pos;
        let stats = &mut self.entry.stats;
        while let Some(l) = self.layout.get_mut(at) {
            let Some(kib) = text.get(end..).and_then(|t| l.read(t)) else { break };
            if let Some(counter) = stats.slot(usize::from(l.slot)) {
                *counter = kib;
            }
            at += 1;
            end += COUNTER_LINE + 1;
        }
        if self.relearn {
            self.seen.extend(self.layout[from..at].iter().map(|l| l.slot));
        }
        self.line += at - from;
        self.at = at;
        if first && at == self.layout.len() {
            // The whole block, right after the header: the next area may repeat it.
            self.block.clear();
            self.block.extend_from_slice(&text[pos..end]);
            self.block_stats.clone_from(&self.entry.stats);
        }
        end - pos
    }

    /// The `THPeligible`, `ProtectionKey` or `VmFlags` line at the start of `text` in the
    /// kernel's layout, applied to the open area: the bytes it took (with its newline), or
    /// `None` for any other line (the general path decides).
    #[inline]
    fn fixed_tail_line(&mut self, text: &[u8]) -> Option<usize> {
        const FIXED: usize = 16 + 8;
        let head: &[u8; 8] = text.first_chunk()?;
        if head == b"VmFlags:" {
            // `VmFlags: rd wr ... \n`: the value is what follows the colon, as `line_slow` takes it.
            let end = find_newline(text)?;
            self.set_flags(&text[8..end]);
            self.flags_seen = true;
            return Some(end + 1);
        }
        let line: &[u8; FIXED + 1] = text.get(..=FIXED)?.try_into().ok()?;
        let (name, field) = line.split_first_chunk::<16>()?;
        let (field, newline) = field.split_first_chunk::<8>()?;
        if newline != b"\n" {
            return None;
        }
        if name == THP_PREFIX {
            self.entry.thp_eligible = Some(match field {
                b"       0" => false,
                b"       1" => true,
                _ => return None,
            });
        } else if name == PKEY_PREFIX {
            // Eight digits fit in a u32.
            let key = u32::try_from(eight_digits_right_aligned(*field)?).ok()?;
            self.entry.protection_key = Some(key);
        } else {
            return None;
        }
        Some(FIXED + 1)
    }

    /// Hands out the last area (call after the last [`feed`](Self::feed)).
    pub(crate) fn finish(&mut self, emit: &mut Emit<'_>) -> ControlFlow<()> {
        self.close(emit)
    }

    /// Hands out the open area, if any; adopts its order of counters as the layout when it
    /// differed.
    fn close(&mut self, emit: &mut Emit<'_>) -> ControlFlow<()> {
        if !std::mem::replace(&mut self.open, false) {
            return ControlFlow::Continue(());
        }
        if std::mem::replace(&mut self.relearn, false) {
            self.block.clear();
            let prefixes = &self.prefixes;
            self.layout.clear();
            self.layout.extend(self.seen.iter().map(|&slot| LayoutLine {
                prefix: u128::from_ne_bytes(prefixes[usize::from(slot)]),
                field: 0,
                value: 0,
                slot,
            }));
        }
        if !self.flags_seen {
            self.entry.vm_flags.clear();
            self.flags_text.clear();
        }
        let flow = emit(&mut self.entry);
        if self.entry.vm_flags.is_empty() {
            // Taken by a collector (or none): the text no longer describes the list.
            self.flags_text.clear();
        }
        flow
    }

    /// Opens the area whose header was just stored in `entry.area`: its counters start at 0.
    fn open_area(&mut self) {
        let e = &mut self.entry;
        let mut other = std::mem::take(&mut e.stats.other);
        other.clear();
        e.stats = MemStats { other, ..MemStats::default() };
        e.thp_eligible = None;
        e.protection_key = None;
        (self.open, self.flags_seen, self.hint, self.at) = (true, false, 0, 0);
        self.header_line = self.line;
    }

    /// Notes that known counter `slot` came on a line the layout did not expect (read by the
    /// general path): the open area's order is recorded from here on, and the layout is
    /// followed again from after `slot`, if it has it.
    fn off_layout(&mut self, slot: usize, line: &[u8]) {
        if !self.relearn {
            self.relearn = true;
            self.seen.clear();
            self.seen.extend(self.layout[..self.at.min(self.layout.len())].iter().map(|l| l.slot));
        }
        // Only lines whose first 16 bytes are the kernel's can be read by position later.
        let (Ok(slot8), Some(prefix)) = (u8::try_from(slot), self.prefixes.get(slot)) else { return };
        if line.get(..16) != Some(&prefix[..]) {
            return;
        }
        self.seen.push(slot8);
        let from = self.at.min(self.layout.len());
        if let Some(j) = self.layout[from..].iter().position(|l| l.slot == slot8) {
            self.at = from + j + 1;
        }
    }

    /// Sets the open area's flags from the `VmFlags` text `value`: kept when it is the same
    /// text as the last area's, swapped in when it is one of the few before, else parsed.
    fn set_flags(&mut self, value: &[u8]) {
        let flags = &mut self.entry.vm_flags;
        if self.flags_text == value && !flags.is_empty() {
            return;
        }
        let slots = &mut self.flags_seen_before;
        let slot = match slots.iter().position(|(text, _)| text == value) {
            Some(i) => i,
            None => {
                let i = self.flags_victim;
                self.flags_victim = (i + 1) % slots.len();
                i
            }
        };
        // The current list goes into the slot; the slot's list comes out (parsed again when
        // its text is not `value`).
        std::mem::swap(&mut self.flags_text, &mut slots[slot].0);
        std::mem::swap(flags, &mut slots[slot].1);
        if self.flags_text != value {
            set_vm_flags(flags, value);
            self.flags_text.clear();
            self.flags_text.extend_from_slice(value);
        }
    }

    /// A header, `VmFlags`, `THPeligible`, `ProtectionKey` or a counter line the layout did
    /// not expect.
    fn line_slow(&mut self, line: &[u8], no: usize, emit: &mut Emit<'_>) -> Result<ControlFlow<()>, ParseError> {
        if is_header(line) {
            let area = MapsEntry::parse_line(line, no)?;
            if self.close(emit).is_break() {
                return Ok(ControlFlow::Break(()));
            }
            self.entry.area = area;
            self.open_area();
            return Ok(ControlFlow::Continue(()));
        }
        if !self.open {
            return Err(ParseError::new(no, "a maps line first", line));
        }
        let entry = &mut self.entry;
        let (key, value) = split_once(line, b':').ok_or_else(|| ParseError::new(no, "`Name: value`", line))?;
        match key {
            b"VmFlags" => {
                self.set_flags(value);
                self.flags_seen = true;
            }
            b"THPeligible" => {
                entry.thp_eligible = Some(match trim(value) {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(ParseError::new(no, "THPeligible 0 or 1", line)),
                });
            }
            b"ProtectionKey" => {
                let v = parse_dec(trim(value)).and_then(|v| u32::try_from(v).ok());
                entry.protection_key = Some(v.ok_or_else(|| ParseError::new(no, "protection key", line))?);
            }
            _ => {
                if let Some(slot) = set_counter(&mut entry.stats, key, value, no, line, &mut self.hint)? {
                    self.off_layout(slot, line);
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Sets `flags` to the space-separated `VmFlags` in `value`, reusing the strings already there.
/// Flags are two ASCII letters; other bytes are kept lossily rather than refused.
fn set_vm_flags(flags: &mut Vec<String>, value: &[u8]) {
    let mut n = 0;
    let mut rest = value;
    while let Some(start) = rest.iter().position(|b| !b.is_ascii_whitespace()) {
        rest = &rest[start..];
        let len = rest.iter().position(u8::is_ascii_whitespace).unwrap_or(rest.len());
        let (f, after) = rest.split_at(len);
        rest = after;
        match flags.get_mut(n) {
            // Areas in a row often share their flags: nothing to write.
            Some(s) if s.len() == f.len() && s.bytes().zip(f).all(|(a, b)| a == *b) => {}
            Some(s) if f.is_ascii() => {
                s.clear();
                s.extend(f.iter().map(|&b| char::from(b)));
            }
            Some(s) => {
                s.clear();
                s.push_str(&String::from_utf8_lossy(f));
            }
            None => flags.push(String::from_utf8_lossy(f).into_owned()),
        }
        n += 1;
    }
    flags.truncate(n);
}

/// The position of the first `\n` in `s`, looked for eight bytes at a time.
fn find_newline(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut chunks = s.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().ok()?) ^ (ONES * u64::from(b'\n'));
        // The lowest byte that is zero (a newline) sets its high bit; bytes above it may too.
        let zero = w.wrapping_sub(ONES) & !w & (ONES * 0x80);
        if zero != 0 {
            return Some(i * 8 + (zero.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    tail.iter().position(|&b| b == b'\n').map(|p| s.len() - tail.len() + p)
}

/// The first 16 bytes of counter `i`'s line as the kernel prints it: the name and colon,
/// padded with spaces (`Private_Hugetlb:` fills all 16).
fn counter_prefix(i: usize) -> Option<[u8; 16]> {
    let name = COUNTERS.get(i)?;
    let mut p = [b' '; 16];
    p.get_mut(..name.len())?.copy_from_slice(name);
    *p.get_mut(name.len())? = b':';
    Some(p)
}

/// [`counter_prefix`] of every counter, computed once per parser.
fn counter_prefixes() -> [[u8; 16]; COUNTERS.len()] {
    std::array::from_fn(|i| counter_prefix(i).unwrap_or([0; 16]))
}

/// The number in an 8-byte field holding spaces, then at least one ASCII digit (as
/// `seq_put_decimal_ull_width` pads it), parsed eight bytes at a time; `None` for anything else.
fn eight_digits_right_aligned(field: [u8; 8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let w = u64::from_le_bytes(field);
    // Leading spaces are the low bytes (the field's first bytes); at least one digit follows.
    let spaces = ((w ^ (ONES * u64::from(b' '))).trailing_zeros() / 8) as usize;
    if spaces == 8 {
        return None;
    }
    let digits = u64::MAX << (spaces * 8);
    // Each byte from the first digit on is 0x30..=0x39: its high nibble is 3, also after +6.
    let high = ONES * 0xf0;
    let threes = (ONES * 0x30) & digits;
    if w & high & digits != threes || (w + ONES * 6) & high & digits != threes {
        return None;
    }
    // "   12345" with spaces as zeros: combine pairs, quads, then halves of the digit values.
    let mut v = w & (ONES * 0x0f) & digits;
    v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
    v = v.wrapping_mul(10000) + (v >> 32);
    Some(v & 0xffff_ffff)
}

/// Parses the whole text of `/proc/<pid>/smaps_rollup`.
pub fn parse_smaps_rollup(text: &[u8]) -> Result<SmapsRollup, ParseError> {
    let mut it = lines(text);
    let (no, header) = it.next().ok_or_else(|| ParseError::new(1, "a rollup header", b""))?;
    if !is_header(header) {
        return Err(ParseError::new(no, "a rollup header", header));
    }
    let area = MapsEntry::parse_line(header, no)?;
    let mut stats = MemStats::default();
    let mut hint = 0;
    for (no, line) in it {
        let (key, value) = split_once(line, b':').ok_or_else(|| ParseError::new(no, "`Name: value`", line))?;
        set_counter(&mut stats, key, value, no, line, &mut hint)?;
    }
    Ok(SmapsRollup { start: area.start, end: area.end, stats })
}

/// Sets the counter `key` from the text `value` (`"   1234 kB"`): the index in [`COUNTERS`] of
/// a known counter, `None` for one kept in `other`.
fn set_counter(
    stats: &mut MemStats,
    key: &[u8],
    value: &[u8],
    no: usize,
    line: &[u8],
    hint: &mut usize,
) -> Result<Option<usize>, ParseError> {
    let kib = parse_kib(value).ok_or_else(|| ParseError::new(no, "a number of kB", line))?;
    if let Some(i) = stats.set(key, kib, hint) {
        return Ok(Some(i));
    }
    if key.is_empty() || !key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return Err(ParseError::new(no, "a counter name", line));
    }
    stats.other.push((String::from_utf8_lossy(key).into_owned(), kib));
    Ok(None)
}

/// `"   1234 kB"` → 1234.
fn parse_kib(value: &[u8]) -> Option<u64> {
    let v = trim(value);
    let number = v.strip_suffix(b"kB").map(trim).unwrap_or(v);
    parse_dec(number)
}

/// Whether a smaps line is a maps header (`start-end ...`) rather than a `Name: value` counter.
fn is_header(line: &[u8]) -> bool {
    match line.iter().position(|b| *b == b' ') {
        Some(sp) => line[..sp].contains(&b'-') && !line[..sp].contains(&b':'),
        None => false,
    }
}

/// Non-empty lines with their 1-based numbers.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|b| *b == b'\n').enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.is_empty())
}

/// Splits off the next space-delimited field (after skipping leading spaces).
fn next_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = trim_start(s);
    if s.is_empty() {
        return None;
    }
    let end = s.iter().position(|b| *b == b' ').unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|b| *b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let i = s.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(s.len());
    &s[i..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let end = s.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(0, |i| i + 1);
    &s[..end]
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(d))
    })
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The fields are public: an entry built with `end` before `start` has length 0 (it
    /// panicked with an overflow in debug builds).
    #[test]
    fn a_hand_built_entry_ending_before_it_starts_is_empty() {
        let mut e = MapsEntry::parse_line(b"7f64f0504000-7f64f0505000 rw-s 00000000 00:06 5 /dev/uio0", 1).unwrap();
        assert_eq!((e.len(), e.is_empty()), (0x1000, false));
        (e.start, e.end) = (e.end, e.start);
        assert_eq!((e.len(), e.is_empty()), (0, true));
    }

    const SAMPLE: &str = "\
55e1095b1000-55e1095b3000 r--p 00000000 fe:00 247030                     /usr/bin/cat
56237c62c000-56237c64d000 rw-p 00000000 00:00 0                          [heap]
7f64f024a000-7f64f030e000 rw-p 00000000 00:00 0 
7f64f0400000-7f64f0401000 rw-s 00000000 00:01 1034                       /memfd:my pool (deleted)
7f64f0500000-7f64f0501000 r--p 00001000 fe:00 12                         /data/my file with spaces.bin
7f64f0502000-7f64f0503000 rw-p 00000000 00:00 0                          [anon:jemalloc pages]
7f64f0504000-7f64f0505000 rw-s 00000000 00:06 5                          /dev/uio0
7f64f0506000-7f64f0507000 rw-s 00000000 00:01 2052                       /dev/zero (deleted)
7f64f0600000-7f64f0800000 rw-p 00000000 00:0f 4096                       /anon_hugepage (deleted)
7f64f0564000-7f64f0566000 r-xp 00000000 00:00 0                          [vdso]
7ffd7f526000-7ffd7f547000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_sample() {
        let m = parse_maps(SAMPLE.as_bytes()).unwrap();
        assert_eq!(m.len(), 12);
        assert_eq!(m[0].start, 0x55e1095b1000);
        assert_eq!(m[0].len(), 0x2000);
        assert_eq!(m[0].device, DeviceId { major: 0xfe, minor: 0 });
        assert_eq!(m[0].inode, 247030);
        assert_eq!(m[0].backing.path(), Some(Path::new("/usr/bin/cat")));
        assert_eq!(m[0].kind(), MapKind::File);
        assert_eq!(m[1].kind(), MapKind::Heap);
        assert_eq!(m[2].backing, Backing::Anonymous);
        assert_eq!(m[2].kind(), MapKind::Anonymous);
        assert_eq!(m[3].backing, Backing::File { path: PathBuf::from("/memfd:my pool"), deleted: true });
        assert!(m[3].perms.shared && m[3].perms.write && !m[3].perms.exec);
        assert_eq!(m[4].backing.path(), Some(Path::new("/data/my file with spaces.bin")));
        assert_eq!(m[4].offset, 0x1000);
        assert_eq!(m[5].backing.anon_name(), Some("jemalloc pages"));
        assert_eq!(m[5].kind(), MapKind::NamedAnonymous);
        assert_eq!(m[6].kind(), MapKind::Device);
        assert_eq!(m[7].kind(), MapKind::Anonymous, "shared anonymous memory");
        assert_eq!(m[8].kind(), MapKind::Anonymous, "anonymous hugetlb memory");
        assert_eq!(m[9].kind(), MapKind::Special);
        assert_eq!(m[10].kind(), MapKind::Stack);
        assert_eq!(m[11].end, 0xffffffffff601000);
        assert_eq!(m[11].perms.to_string(), "--xp");
    }

    #[test]
    fn parses_own_maps_smaps_and_rollup() {
        let maps = parse_maps(&std::fs::read("/proc/self/maps").unwrap()).unwrap();
        assert!(maps.iter().any(|m| m.kind() == MapKind::Stack));
        let smaps = parse_smaps(&std::fs::read("/proc/self/smaps").unwrap()).unwrap();
        assert!(!smaps.is_empty());
        assert!(smaps.iter().all(|s| s.stats.size * 1024 == s.area.len()));
        assert!(smaps.iter().any(|s| s.has_vm_flag("rd")));
        let rollup = parse_smaps_rollup(&std::fs::read("/proc/self/smaps_rollup").unwrap()).unwrap();
        assert!(rollup.stats.rss > 0);
        assert!(rollup.stats.pss <= rollup.stats.rss);
    }

    #[test]
    fn smaps_counters_and_flags() {
        let text = "\
7f00-8f00 rw-p 00000000 00:00 0 
Size:                  4 kB
Rss:                   4 kB
Pss:                   2 kB
AnonHugePages:      2048 kB
FilePmdMapped:         0 kB
Swap:                  8 kB
Locked:                4 kB
Brand_New_Counter:    12 kB
THPeligible:           1
ProtectionKey:         0
VmFlags: rd wr mr mw me lo ac 
";
        let s = parse_smaps(text.as_bytes()).unwrap();
        assert_eq!(s.len(), 1);
        let e = &s[0];
        assert_eq!((e.stats.rss, e.stats.pss, e.stats.anon_huge_pages), (4, 2, 2048));
        assert_eq!((e.stats.swap, e.stats.locked), (8, 4));
        assert_eq!(e.stats.other, vec![("Brand_New_Counter".to_owned(), 12)]);
        assert_eq!(e.thp_eligible, Some(true));
        assert_eq!(e.protection_key, Some(0));
        assert!(e.has_vm_flag("lo") && !e.has_vm_flag("ex"));
    }

    #[test]
    fn counters_in_any_order_and_odd_spacing() {
        // The fast path expects the kernel's order and layout; anything else takes the general
        // path and must give the same answer.
        let text = "7f00-8f00 rw-p 0 00:00 0\nLocked: 3 kB\nRss:4 kB\nSize:\t 8 kB\nNew_One:   7 kB\nPss: 2 kB  \n";
        let e = &parse_smaps(text.as_bytes()).unwrap()[0];
        assert_eq!((e.stats.locked, e.stats.rss, e.stats.size, e.stats.pss), (3, 4, 8, 2));
        assert_eq!(e.stats.other, vec![("New_One".to_owned(), 7)]);
        assert!(parse_smaps(b"7f00-8f00 rw-p 0 00:00 0\nRss: 99999999999999999999 kB\n").is_err());
        assert!(parse_smaps(b"7f00-8f00 rw-p 0 00:00 0\nR-s: 4 kB\n").is_err());
    }

    #[test]
    fn own_smaps_parses_the_same_fed_in_pieces() {
        let text = std::fs::read("/proc/self/smaps").unwrap();
        let whole = parse_smaps(&text).unwrap();
        for piece in [1usize, 7, 100, 4096] {
            assert_eq!(parse_in_pieces(&text, piece), whole, "pieces of {piece} bytes");
        }
    }

    /// `text` fed to one parser in pieces cut after the first newline at or beyond `piece`
    /// bytes, as the reader does; the areas it reports.
    fn parse_in_pieces(text: &[u8], piece: usize) -> Vec<SmapsEntry> {
        let mut p = SmapsParser::default();
        let mut got = Vec::new();
        let mut keep = |e: &mut SmapsEntry| {
            got.push(e.clone());
            ControlFlow::Continue(())
        };
        let mut rest = text;
        while !rest.is_empty() {
            let cut = rest.iter().skip(piece.min(rest.len() - 1)).position(|&b| b == b'\n');
            let n = cut.map_or(rest.len(), |i| piece.min(rest.len() - 1) + i + 1);
            assert!(p.feed(&rest[..n], &mut keep).unwrap().is_continue());
            rest = &rest[n..];
        }
        assert!(p.finish(&mut keep).is_continue());
        got
    }

    /// A counter line in the kernel's layout (the name padded to 16 bytes with its colon, the
    /// number right-aligned in 8, or wider when it has more digits).
    fn kernel_counter(name: &str, v: u64) -> String {
        format!("{:<16}{v:>8} kB\n", format!("{name}:"))
    }

    #[test]
    fn counter_order_changing_mid_file_parses_the_same() {
        // The layout is learned from the first area; later areas change the order, drop and
        // add counters, widen a number past 8 digits, and go back. Each area's counters must
        // be its own, whole or in pieces.
        let base: Vec<&str> = COUNTERS.iter().map(|c| std::str::from_utf8(c).unwrap()).collect();
        let mut reordered = base.clone();
        reordered.swap(3, 9);
        reordered.remove(12);
        let mut with_new = base.clone();
        with_new.insert(5, "Brand_New");
        let orders = [&base, &base, &reordered, &reordered, &with_new, &base, &reordered, &base];
        let (mut text, mut want) = (String::new(), Vec::new());
        for (a, names) in orders.iter().enumerate() {
            text += &format!("{:x}-{:x} rw-p 00000000 00:00 0 \n", 0x1000 * (a + 1), 0x1000 * (a + 2));
            let mut stats = MemStats::default();
            let mut hint = 0;
            for (k, name) in names.iter().enumerate() {
                // Repeated and changing numbers; area 3 has one of 12 digits.
                let v = if a == 3 && k == 0 { 123_456_789_012 } else { ((a * 7 + k) % 5) as u64 * 4 };
                text += &kernel_counter(name, v);
                if stats.set(name.as_bytes(), v, &mut hint).is_none() {
                    stats.other.push(((*name).to_owned(), v));
                }
            }
            text += "THPeligible:           1\nProtectionKey:         7\nVmFlags: rd wr mr mw me ac \n";
            want.push(stats);
        }
        let got = parse_smaps(text.as_bytes()).unwrap();
        assert_eq!(got.iter().map(|e| &e.stats).collect::<Vec<_>>(), want.iter().collect::<Vec<_>>());
        assert!(got.iter().all(|e| e.thp_eligible == Some(true) && e.protection_key == Some(7)));
        for piece in [1usize, 30, 200] {
            let seen: Vec<_> = parse_in_pieces(text.as_bytes(), piece).into_iter().map(|e| e.stats).collect();
            assert_eq!(seen, want, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn repeated_counter_blocks_are_each_areas_own() {
        // Areas whose counter lines repeat the last area's byte for byte take its counters
        // whole: each area must still read as it does alone (where nothing is learned yet).
        let block = |vals: &[(usize, u64)], extra: &str| {
            let mut t = String::new();
            for (k, name) in COUNTERS.iter().enumerate() {
                let name = std::str::from_utf8(name).unwrap();
                if matches!(name, "Pss_Anon" | "Pss_File" | "Pss_Shmem") {
                    continue;
                }
                let v = vals.iter().find(|(i, _)| *i == k).map_or(4, |(_, v)| *v);
                t += &kernel_counter(name, v);
            }
            t + extra
        };
        let x = block(&[], "THPeligible:           0\nVmFlags: rd wr \n");
        let y = block(&[(24, 8)], "THPeligible:           1\nVmFlags: rd \n");
        let z = block(&[(0, 123_456_789)], "");
        let odd = "Brand_New:             4 kB\n".to_owned() + &x;
        let areas = [&x, &x, &x, &y, &x, &x, &z, &z, &x, &odd, &x, &y, &y, &x];
        let (mut text, mut want) = (String::new(), Vec::new());
        for (a, body) in areas.iter().enumerate() {
            let area = format!("{:x}-{:x} rw-p 00000000 00:00 0 \n{body}", 0x1000 * (a + 1), 0x1000 * (a + 2));
            want.extend(parse_smaps(area.as_bytes()).unwrap());
            text += &area;
        }
        assert_eq!(parse_smaps(text.as_bytes()).unwrap(), want);
        assert_eq!((want[3].stats.locked, want[6].stats.size, want[9].stats.other.len()), (8, 123_456_789, 1));
        // Cut anywhere at a line's end, too.
        for piece in [1usize, 100, 700] {
            assert_eq!(parse_in_pieces(text.as_bytes(), piece), want, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn errors_name_their_line_after_lines_read_by_position() {
        // Lines read by the layout, or taken whole with a repeated block, still count: an
        // error names the line where it is, whichever path read the lines before it.
        let mut area = String::from("10-20 rw-p 00000000 00:00 0 \n");
        for name in ["Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Locked"] {
            area += &kernel_counter(name, 4);
        }
        area += "THPeligible:           0\nVmFlags: rd wr \n";
        for bad in ["Rss: four kB", "THPeligible:           2", "VmFlags", "Size:                  4 kB junk"] {
            for before in 1..4 {
                // The bad line first in its area, after the counters, or last.
                for at in [1, 7, 9] {
                    let mut lines: Vec<&str> = area.lines().collect();
                    lines.insert(at, bad);
                    let text = format!("{}{}\n", area.repeat(before), lines.join("\n"));
                    let e = parse_smaps(text.as_bytes()).unwrap_err();
                    assert_eq!(e.line, before * 9 + at + 1, "{bad:?} at {at} after {before} areas: {e}");
                }
            }
        }
    }

    #[test]
    fn each_areas_pathname_is_its_own() {
        // Pathnames are kept from one area to the next when they are the same: every variant
        // next to every other, including paths with spaces and the deleted marker.
        let names = [
            "/a b/c d",
            "/a b/c d",
            "/a b/c d (deleted)",
            "/a b/c d (deleted)",
            "/a b/c d",
            "/a b/c d (deleted) (deleted)",
            "/a b/c d (deleted)",
            "[heap]",
            "[heap]",
            "",
            "",
            "[anon:x y]",
            "/[heap]",
            "[heap]",
            "/memfd:pool (deleted)",
        ];
        let mut text = String::new();
        for (i, n) in names.iter().enumerate() {
            let line = format!("{:x}-{:x} r--p 00001000 fe:01 {} ", 0x1000 * (i + 1), 0x1000 * (i + 2), 7 + i);
            text += &format!("{line:<73}{n}\nSize:                  4 kB\n");
        }
        let got = parse_smaps(text.as_bytes()).unwrap();
        assert_eq!(got.len(), names.len());
        for ((e, n), line) in got.iter().zip(names).zip(text.lines().step_by(2)) {
            assert_eq!(e.area, MapsEntry::parse_line_general(line.as_bytes(), 1).unwrap(), "{line}");
            assert_eq!(e.area.backing.display(), n);
        }
        assert_eq!(got[5].area.backing.path(), Some(Path::new("/a b/c d (deleted)")));
        let mut streamed = Vec::new();
        let _ = parse_smaps_each(text.as_bytes(), |e| {
            streamed.push(e.area.clone());
            ControlFlow::Continue(())
        });
        assert_eq!(streamed, got.iter().map(|e| e.area.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn last_line_without_newline_and_no_vm_flags() {
        let whole = "7f00-8f00 rw-p 00000000 00:00 0 \nSize:                  8 kB\nRss:                   4 kB\n\
THPeligible:           1\nProtectionKey:        12\n";
        let e = &parse_smaps(whole.as_bytes()).unwrap()[0];
        assert_eq!((e.stats.size, e.stats.rss, e.thp_eligible, e.protection_key), (8, 4, Some(true), Some(12)));
        assert!(e.vm_flags.is_empty());
        // Cut before each newline: the last line, read without it, says the same.
        for cut in whole.match_indices('\n').map(|(i, _)| i).skip(1) {
            let want = parse_smaps(&whole.as_bytes()[..=cut]).unwrap();
            assert_eq!(parse_smaps(&whole.as_bytes()[..cut]).unwrap(), want, "{:?}", &whole[..cut]);
        }
        // A counter cut before its number is an error, not a zero.
        assert!(parse_smaps(&whole.as_bytes()[..whole.find("Rss:").unwrap() + 10]).is_err());
        // Flags of an area do not leak into the next that has none.
        let text = "10-20 rw-p 0 00:00 0\nVmFlags: rd wr \n20-30 rw-p 0 00:00 0\nSize:                  4 kB\n";
        let got = parse_smaps(text.as_bytes()).unwrap();
        assert_eq!((got[0].vm_flags.len(), got[1].vm_flags.len()), (2, 0));
        assert!(parse_smaps(b"10-20 rw-p 0 00:00 0\nTHPeligible:           2\n").is_err());
        assert!(parse_smaps(b"10-20 rw-p 0 00:00 0\nProtectionKey:        1x\n").is_err());
    }

    #[test]
    fn newlines_are_found_eight_bytes_at_a_time() {
        for len in 0..40 {
            for nl in (0..len).map(Some).chain([None]) {
                let mut s: Vec<u8> = (0..len).map(|i| [b'a', 0x8a, 0x0b, 0x09, 0xff][i % 5]).collect();
                if let Some(i) = nl {
                    s[i] = b'\n';
                    if i + 3 < len {
                        s[i + 3] = b'\n';
                    }
                }
                assert_eq!(find_newline(&s), s.iter().position(|&b| b == b'\n'), "{s:?}");
            }
        }
    }

    #[test]
    fn reused_flag_lists_are_each_areas_own() {
        let lists = ["rd mr mw me", "rd wr mr mw me ac", "rd mr mw me", "", "rd ex", "rd wr mr mw me ac", "x", "rd ex"];
        let mut text = String::new();
        for (i, l) in lists.iter().enumerate() {
            text += &format!("{:x}-{:x} rw-p 0 00:00 0\n", i * 16 + 16, i * 16 + 32);
            if i != 6 {
                text += &format!("VmFlags: {l} \n");
            }
        }
        let mut seen = Vec::new();
        let flow = parse_smaps_each(text.as_bytes(), |e| {
            seen.push(e.vm_flags.join(" "));
            ControlFlow::Continue(())
        });
        assert!(flow.unwrap().is_continue());
        let want: Vec<String> = lists.iter().enumerate().map(|(i, l)| if i == 6 { "" } else { l }.to_owned()).collect();
        assert_eq!(seen, want);
        let collected: Vec<String> =
            parse_smaps(text.as_bytes()).unwrap().iter().map(|e| e.vm_flags.join(" ")).collect();
        assert_eq!(collected, want);
    }

    /// A counter line read by position as the layout's line for `prefix`.
    fn fixed_counter_line(text: &[u8], prefix: &[u8; 16]) -> Option<u64> {
        LayoutLine { prefix: u128::from_ne_bytes(*prefix), field: 0, value: 0, slot: 0 }.read(text)
    }

    #[test]
    fn counter_lines_in_the_kernels_layout() {
        let prefixes = counter_prefixes();
        let (size, hugetlb) = (&prefixes[0], &prefixes[21]);
        assert_eq!(size, b"Size:           ");
        assert_eq!(hugetlb, b"Private_Hugetlb:");
        let mut v = 0u64;
        while v < 100_000_000 {
            let line = format!("Size:           {v:>8} kB\n");
            assert_eq!(fixed_counter_line(line.as_bytes(), size), Some(v), "{line:?}");
            let line = format!("Private_Hugetlb:{v:>8} kB\n");
            assert_eq!(fixed_counter_line(line.as_bytes(), hugetlb), Some(v), "{line:?}");
            v = v * 3 + 1;
        }
        for bad in [
            "Size:                    kB\n",
            "Size:           1234 67 kB\n",
            "Size:           12a45678 kB\n",
            "Size:           12:45678 kB\n",
            "Size:           12/45678 kB\n",
            "Size:           -1234567 kB\n",
            "Size:            1234567 kb\n",
            "Size:            1234567 kB \n",
            "Size:            1234567 kB",
            "Rss:            1234567 kB\n",
            "Size:          123456789 kB\n",
        ] {
            assert_eq!(fixed_counter_line(bad.as_bytes(), size), None, "{bad:?}");
        }
        // Every byte value in every position of the field: only digits after spaces parse.
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut field = *b"   12345";
                field[pos] = b;
                let text = std::str::from_utf8(&field).ok().map(|t| t.trim_start_matches(' '));
                let want =
                    text.filter(|t| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit())).map(|t| t.parse().unwrap());
                assert_eq!(eight_digits_right_aligned(field), want, "{field:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_lines() {
        for bad in [
            "7f00 rw-p 00000000 00:00 0",
            "7f00-7e00 rw-p 00000000 00:00 0",
            "7f00-8f00 rwzp 00000000 00:00 0",
            "7f00-8f00 rw-p 0000000g 00:00 0",
            "7f00-8f00 rw-p 00000000 0000 0",
            "7f00-8f00 rw-p 00000000 00:00 -1",
            "7f00-8f00 rw-p 00000000 00:00",
            "7f00-8f00 rw-p 11112222333344445 00:00 0",
            "7f00-8f00 rw-p 0 00:00 99999999999999999999999",
        ] {
            assert!(parse_maps(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_smaps(b"Rss: 4 kB\n").is_err());
        assert!(parse_smaps(b"7f00-8f00 rw-p 0 00:00 0\nRss: four kB\n").is_err());
        assert!(parse_smaps(b"7f00-8f00 rw-p 0 00:00 0\nTHPeligible: 2\n").is_err());
        assert!(parse_smaps_rollup(b"").is_err());
        assert!(parse_smaps_rollup(b"Rss: 4 kB\n").is_err());
        let e = parse_maps(b"7f00-8f00 rw-p 0 00:00 0\nnot a line\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    /// A path the kernel could print: absolute, no newline, any other bytes including spaces.
    fn file_path() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-zA-Z0-9 ._\\-()\\[\\]:é]{1,12}", 1..5)
            .prop_map(|parts| format!("/{}", parts.join("/")))
            .prop_filter("no trailing deleted marker", |p| !p.ends_with(" (deleted)"))
    }

    fn backing() -> impl Strategy<Value = Backing> {
        prop_oneof![
            Just(Backing::Anonymous),
            (file_path(), any::<bool>()).prop_map(|(p, deleted)| Backing::File { path: PathBuf::from(p), deleted }),
            "[a-zA-Z0-9 _.\\-]{0,20}".prop_map(|n| Backing::Pseudo(format!("[anon:{n}]"))),
            prop_oneof![
                Just("[heap]"),
                Just("[stack]"),
                Just("[vdso]"),
                Just("[vvar]"),
                Just("[vsyscall]"),
                Just("anon_inode:[perf_event]")
            ]
            .prop_map(|s| Backing::Pseudo(s.to_owned())),
        ]
    }

    prop_compose! {
        fn entry()(start in any::<u64>(), len in any::<u64>(), r in any::<bool>(), w in any::<bool>(),
                   x in any::<bool>(), s in any::<bool>(), offset in any::<u64>(),
                   major in 0u32..4096, minor in 0u32..(1 << 20), inode in any::<u64>(),
                   backing in backing()) -> MapsEntry {
            let end = start.saturating_add(len);
            MapsEntry { start, end, perms: Perms { read: r, write: w, exec: x, shared: s },
                        offset, device: DeviceId { major, minor }, inode, backing }
        }
    }

    /// Formats an entry exactly as `show_vma_header_prefix` + `seq_pad` do.
    fn kernel_format(e: &MapsEntry) -> String {
        let mut line = format!("{:08x}-{:08x} {} {:08x} {} {} ", e.start, e.end, e.perms, e.offset, e.device, e.inode);
        let name = e.backing.display();
        if !name.is_empty() {
            while line.len() < 73 {
                line.push(' ');
            }
            line.push_str(&name);
        }
        line
    }

    proptest! {
        #[test]
        fn maps_line_round_trips(e in entry()) {
            let line = kernel_format(&e);
            let parsed = MapsEntry::parse_line(line.as_bytes(), 1).unwrap();
            prop_assert_eq!(parsed, e);
        }

        #[test]
        fn one_pass_header_reads_as_the_general_path(e in entry(), at in 0usize..120, b in any::<u8>(),
                                                      insert in any::<bool>()) {
            let line = kernel_format(&e);
            let fast = HeaderFields::parse(line.as_bytes()).map(HeaderFields::into_entry);
            // Inodes of 20 digits are left to the general path (which checks for overflow).
            prop_assert_eq!(fast.as_ref(), (e.inode < 10u64.pow(19)).then_some(&e));
            // One byte changed or inserted: the one-pass reader either refuses the line or
            // reads what the general path reads.
            let mut bytes = line.into_bytes();
            let at = at.min(bytes.len());
            if insert || at == bytes.len() {
                bytes.insert(at, b);
            } else {
                bytes[at] = b;
            }
            if let Some(h) = HeaderFields::parse(&bytes) {
                prop_assert_eq!(Ok(h.into_entry()), MapsEntry::parse_line_general(&bytes, 1));
            }
        }

        #[test]
        fn maps_text_round_trips(es in proptest::collection::vec(entry(), 0..20)) {
            let text: String = es.iter().map(|e| kernel_format(e) + "\n").collect();
            prop_assert_eq!(parse_maps(text.as_bytes()).unwrap(), es);
        }

        #[test]
        fn truncated_header_is_an_error(e in entry(), cut in 0usize..5) {
            // Dropping any of the first five fields leaves a line that must not parse.
            let line = kernel_format(&e);
            let fields: Vec<&str> = line.split(' ').filter(|f| !f.is_empty()).take(5).collect();
            let truncated = fields[..cut].join(" ");
            prop_assert!(MapsEntry::parse_line(truncated.as_bytes(), 1).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_maps(&bytes);
            let _ = parse_smaps(&bytes);
            let _ = parse_smaps_rollup(&bytes);
        }

        #[test]
        fn garbage_lines_are_errors(s in "[^0-9a-fA-F\n][^\n]{0,80}") {
            // A line that does not start with a hex digit can be no maps line.
            prop_assert!(parse_maps(s.as_bytes()).is_err());
        }

        #[test]
        fn smaps_counters_round_trip(rss in any::<u64>(), pss in any::<u64>(), swap in any::<u64>(),
                                     thp in any::<bool>(), e in entry()) {
            let text = format!(
                "{}\nRss: {:>8} kB\nPss: {:>8} kB\nSwap: {:>8} kB\nTHPeligible: {:>8}\nVmFlags: rd mr \n",
                kernel_format(&e), rss, pss, swap, u8::from(thp)
            );
            let s = parse_smaps(text.as_bytes()).unwrap();
            prop_assert_eq!(s.len(), 1);
            prop_assert_eq!(&s[0].area, &e);
            prop_assert_eq!((s[0].stats.rss, s[0].stats.pss, s[0].stats.swap), (rss, pss, swap));
            prop_assert_eq!(s[0].thp_eligible, Some(thp));
            prop_assert_eq!(&s[0].vm_flags, &vec!["rd".to_owned(), "mr".to_owned()]);
        }
    }
}
