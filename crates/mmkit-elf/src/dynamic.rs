//! The dynamic section and the tables it points to: strings, symbols, hash tables, versions,
//! relocation tables, initializers. Bounds-checked once, then read in place from the loaded
//! image (which a [`Dynamic`] owns, so the tables cannot outlive the mapping).
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::image::Name;
use crate::image::{Image, Table};
use crate::plan::Plan;
use object::elf;
use object::LittleEndian as LE;
use std::sync::atomic::{AtomicU32, Ordering};

/// Upper bound on any one table the loader reads (64 MiB): larger is malformed.
const MAX_TABLE: u64 = 64 << 20;

/// `DT_RELR`/`DT_RELRSZ` (packed relative relocations; not in object 0.36).
const DT_RELR: u32 = 36;
const DT_RELRSZ: u32 = 35;

/// Android's dynamic tags (bionic's `elf.h`; not in object 0.36): packed relocations
/// (`DT_ANDROID_RELA`, "APS2": see `packed.rs`; `DT_ANDROID_REL` is its 32-bit `REL` form) and
/// `DT_RELR` under the names Android 9-10 read (`ld.lld --use-android-relr-tags`).
const DT_ANDROID_REL: u32 = 0x6000_000f;
const DT_ANDROID_RELA: u32 = 0x6000_0011;
const DT_ANDROID_RELASZ: u32 = 0x6000_0012;
const DT_ANDROID_RELR: u32 = 0x6fff_e000;
const DT_ANDROID_RELRSZ: u32 = 0x6fff_e001;
const DT_ANDROID_RELRENT: u32 = 0x6fff_e003;

/// aarch64's `DT_AARCH64_VARIANT_PCS` and `STO_AARCH64_VARIANT_PCS` (not in object 0.36).
const DT_AARCH64_VARIANT_PCS: u32 = 0x7000_0005;
pub(crate) const STO_AARCH64_VARIANT_PCS: u8 = 0x80;

#[cold]
fn bad(detail: String) -> Error {
    Error::new("read dynamic section", ErrorKind::BadDynamic, detail)
}

/// One relocation with addend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rela {
    pub offset: u64,
    pub r_type: u32,
    pub sym: u32,
    pub addend: i64,
}

impl From<elf::Rela64<LE>> for Rela {
    fn from(r: elf::Rela64<LE>) -> Rela {
        let info = r.r_info.get(LE);
        Rela {
            offset: r.r_offset.get(LE),
            r_type: (info & 0xffff_ffff) as u32,
            sym: (info >> 32) as u32,
            addend: r.r_addend.get(LE),
        }
    }
}

/// A dynamic symbol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sym {
    pub name: u32,
    pub info: u8,
    pub other: u8,
    pub shndx: u16,
    pub value: u64,
    pub size: u64,
}

impl From<elf::Sym64<LE>> for Sym {
    fn from(s: elf::Sym64<LE>) -> Sym {
        Sym {
            name: s.st_name.get(LE),
            info: s.st_info,
            other: s.st_other,
            shndx: s.st_shndx.get(LE),
            value: s.st_value.get(LE),
            size: s.st_size.get(LE),
        }
    }
}

impl Sym {
    pub fn bind(&self) -> u8 {
        self.info >> 4
    }
    pub fn kind(&self) -> u8 {
        self.info & 0xf
    }
    pub fn is_defined(&self) -> bool {
        self.shndx != elf::SHN_UNDEF
    }
    /// Whether a lookup may bind to it, as glibc's `check_match` has it: defined, and with a
    /// value unless absolute or TLS (whose value is an offset in its block). A "defined"
    /// symbol of value 0 is none: a weak `__gmon_start__` given a reserved section index
    /// bound to the library's base, and `_init` called its ELF header.
    pub fn is_definition(&self) -> bool {
        self.is_defined() && (self.value != 0 || self.shndx == elf::SHN_ABS || self.kind() == elf::STT_TLS)
    }
    pub fn visibility(&self) -> u8 {
        self.other & 0x3
    }
}

/// The GNU hash table (`DT_GNU_HASH`).
#[derive(Debug)]
pub(crate) struct GnuHash {
    pub symoffset: u32,
    pub bloom_shift: u32,
    pub bloom: Table<u64>,
    pub buckets: Table<u32>,
    /// Chain values for symbols `symoffset..`.
    pub chains: Table<u32>,
}

/// The SysV hash table (`DT_HASH`).
#[derive(Debug)]
pub(crate) struct SysvHash {
    pub buckets: Table<u32>,
    pub chains: Table<u32>,
}

/// What a version index (`DT_VERSYM`) means.
/// Names are offsets into `.dynstr`, checked to lie inside it when the table is read.
#[derive(Debug)]
pub(crate) struct Version {
    name: u32,
    /// The ELF hash of the name, as `DT_VERDEF`/`DT_VERNEED` record it.
    hash: u32,
    /// Length of the name, found on first use (`u32::MAX` until then).
    len: AtomicU32,
    /// For versions this library needs (`DT_VERNEED`): the library that provides it.
    file: Option<u32>,
}

/// A version a library needs (a `Vernaux` record of `DT_VERNEED`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NeededVersion {
    /// The file it is needed from (`vn_file`, a `.dynstr` offset).
    pub file: u32,
    /// Its name (`vna_name`, a `.dynstr` offset checked when the table was read).
    pub name: u32,
    /// The ELF hash of its name (`vna_hash`).
    pub hash: u32,
    /// `VER_FLG_WEAK`: only references of weak symbols need it; its absence is no error.
    pub weak: bool,
}

/// The parsed dynamic section of a loaded image, and the image.
#[derive(Debug)]
pub(crate) struct Dynamic {
    /// The loaded image every table lies in.
    pub image: Image,
    /// `DT_NEEDED` names (offsets in `.dynstr`).
    needed: Vec<u32>,
    soname: Option<u32>,
    runpath: Option<u32>,
    /// `runpath` is a `DT_RPATH` (the library has no `DT_RUNPATH`).
    rpath: bool,
    strtab: StrTab,
    syms: Table<elf::Sym64<LE>>,
    pub gnu_hash: Option<GnuHash>,
    pub sysv_hash: Option<SysvHash>,
    versym: Table<u16>,
    /// Indexed by version index (`DT_VERSYM` values without the hidden bit).
    versions: Vec<Option<Version>>,
    /// `DT_VERDEF` and `DT_VERDEFNUM` (the table was walked and checked when read).
    verdef: Option<(u64, u64)>,
    /// `DT_VERNEED` and `DT_VERNEEDNUM` (the table was walked and checked when read).
    verneed: Option<(u64, u64)>,
    /// `DT_ANDROID_RELA`'s relocations, decoded (applied before `DT_RELA`'s, as bionic does).
    packed: Vec<Rela>,
    rela: Table<elf::Rela64<LE>>,
    jmprel: Table<elf::Rela64<LE>>,
    pub relr: Table<u64>,
    pub init: Option<u64>,
    /// `DT_INIT_ARRAY`, checked to lie in the image (entries are relocated run-time addresses).
    pub init_array: Table<u64>,
    pub fini: Option<u64>,
    /// `DT_FINI_ARRAY`, checked the same way.
    pub fini_array: Table<u64>,
    /// `DT_FLAGS` (`DF_STATIC_TLS`, ...).
    pub flags: u64,
    /// `DT_FLAGS_1` (`DF_1_NODELETE`, ...).
    pub flags_1: u64,
    /// `DT_PLTGOT`: the link-time address of the GOT whose words 1 and 2 the PLT's first entry
    /// reads (lazy binding: see `relocate/lazy.rs`).
    pub pltgot: Option<u64>,
    /// The library asks to be bound at load (`DT_BIND_NOW`, `DF_BIND_NOW` or `DF_1_NOW`), as
    /// `-z now` links it: no lazy binding, even for a `dlopen(RTLD_LAZY)`.
    pub bind_now: bool,
    /// `DT_AARCH64_VARIANT_PCS` (an aarch64 library's PLT calls a function of a variant PCS:
    /// its symbol has `STO_AARCH64_VARIANT_PCS`); meaningless for other machines.
    pub aarch64_variant_pcs: bool,
    /// `DT_SYMBOLIC` or `DF_SYMBOLIC` (`-Bsymbolic`): the library's references look in the
    /// library itself first.
    pub symbolic: bool,
}

/// `.dynstr`: borrowed from pages of the image the loader never writes, or, when the library
/// keeps it in a writable segment, a copy read before relocation.
///
/// Linkers put `.dynstr` in a read-only segment; `patchelf` (which auditwheel, Nix and
/// conda use to set a longer `DT_RUNPATH`, a new `DT_SONAME` or an added `DT_NEEDED`) writes
/// the grown table into a new writable `PT_LOAD`, and glibc loads such libraries. No `&[u8]`
/// may borrow pages relocation writes, so those strings are copied (they are the file's: a
/// relocation aimed into the table would change glibc's view of a name, never mmkit's).
#[derive(Debug)]
enum StrTab {
    Mapped(Table<u8>),
    Copied(Box<[u8]>),
}

impl StrTab {
    /// The bytes of the table of `image` (the image it was read from).
    fn bytes<'a>(&'a self, image: &'a Image) -> &'a [u8] {
        match self {
            StrTab::Mapped(table) => image.bytes(table),
            StrTab::Copied(bytes) => bytes,
        }
    }
}

impl Dynamic {
    /// `.dynstr`, borrowed from the image or the copy.
    fn strings(&self) -> &[u8] {
        self.strtab.bytes(&self.image)
    }

    /// The NUL-terminated string at `off` in `.dynstr`.
    pub fn str_at(&self, off: u32) -> Result<&str> {
        std::str::from_utf8(self.cstr_at(off)?.to_bytes()).map_err(|_| bad("string is not UTF-8".into()))
    }

    /// The NUL-terminated string at `off` in `.dynstr`, as a C string (no copy, no UTF-8
    /// check: what `dlsym` takes).
    pub fn cstr_at(&self, off: u32) -> Result<&std::ffi::CStr> {
        let bytes =
            self.strings().get(off as usize..).ok_or_else(|| bad(format!("string offset {off:#x} outside .dynstr")))?;
        std::ffi::CStr::from_bytes_until_nul(bytes).map_err(|_| bad("unterminated string".into()))
    }

    /// The raw bytes of the string at `off` (without the NUL); `None` if out of range.
    pub fn bytes_at(&self, off: u32) -> Option<&[u8]> {
        self.cstr_at(off).ok().map(std::ffi::CStr::to_bytes)
    }

    /// The symbol name at `off` with its GNU hash, found in one pass over its bytes.
    pub fn symbol_name(&self, off: u32) -> Result<Name<'_>> {
        let bytes =
            self.strings().get(off as usize..).ok_or_else(|| bad(format!("string offset {off:#x} outside .dynstr")))?;
        let mut h = 5381u32;
        for (i, &c) in bytes.iter().enumerate() {
            if c == 0 {
                return Ok(Name::new(&bytes[..=i], h));
            }
            h = h.wrapping_mul(33).wrapping_add(u32::from(c));
        }
        Err(bad("unterminated string".into()))
    }

    /// A version's name and recorded hash, for lookups.
    pub fn version_key(&self, v: &Version) -> Name<'_> {
        let strings = self.strings();
        let tail = strings.get(v.name as usize..).unwrap_or_default();
        let mut len = v.len.load(Ordering::Relaxed);
        if len == u32::MAX {
            len = tail.iter().position(|&b| b == 0).unwrap_or(0) as u32;
            v.len.store(len, Ordering::Relaxed);
        }
        Name::new(tail.get(..=len as usize).unwrap_or(b"\0"), v.hash)
    }

    /// Checks that `off` is a string offset of `.dynstr` (every one is terminated: the table
    /// ends with a NUL, checked when it was read).
    fn check_str(&self, off: u32) -> Result<()> {
        if (off as usize) < self.strings().len() {
            Ok(())
        } else {
            Err(bad(format!("string offset {off:#x} outside .dynstr")))
        }
    }

    /// A version's name (its offset was checked when the version table was read; a name that
    /// is not UTF-8 reads as empty).
    pub fn version_name(&self, v: &Version) -> &str {
        self.str_at(v.name).unwrap_or_default()
    }

    /// For a needed version: the library `DT_VERNEED` names as its provider.
    pub fn version_file(&self, v: &Version) -> Option<&str> {
        v.file.and_then(|f| self.str_at(f).ok())
    }

    /// Number of dynamic symbols (as the hash table tells).
    pub fn sym_count(&self) -> usize {
        self.syms.len()
    }

    /// Symbol `index`.
    pub fn sym(&self, index: u32) -> Option<Sym> {
        self.image.get(&self.syms, index as usize).map(Sym::from)
    }

    /// Run-time address of symbol `index`'s entry in `.dynsym`.
    pub fn sym_address(&self, index: u32) -> Option<usize> {
        self.syms.address_of(index as usize)
    }

    /// Symbol `index`, or an error naming it.
    pub fn sym_or_err(&self, index: u32) -> Result<Sym> {
        self.sym(index).ok_or_else(|| bad(format!("symbol {index} out of range")))
    }

    /// Name of symbol `index`.
    pub fn sym_name(&self, index: u32) -> Result<&str> {
        self.str_at(self.sym_or_err(index)?.name)
    }

    /// The relocations with addends: `DT_ANDROID_RELA`'s (decoded), `DT_RELA`, then
    /// `DT_JMPREL`.
    pub fn relocations(&self) -> impl Iterator<Item = Rela> + '_ {
        let (image, rela, jmprel) = (&self.image, &self.rela, &self.jmprel);
        self.packed.iter().copied().chain(
            (0..rela.len())
                .map_while(move |i| image.get(rela, i))
                .chain((0..jmprel.len()).map_while(move |i| image.get(jmprel, i)))
                .map(Rela::from),
        )
    }

    /// The number of relocations [`Dynamic::relocations`] yields before `DT_JMPREL`'s (the
    /// packed ones and `DT_RELA`'s).
    pub fn rela_count(&self) -> usize {
        self.packed.len() + self.rela.len()
    }

    /// `DT_NEEDED` names, in order.
    pub fn needed(&self) -> impl Iterator<Item = Result<&str>> + '_ {
        self.needed.iter().map(|&off| self.str_at(off))
    }

    /// `DT_SONAME`, if any.
    pub fn soname(&self) -> Option<&str> {
        self.soname.and_then(|off| self.str_at(off).ok())
    }

    /// The place among the `DT_NEEDED` entries of the one naming the file `file` (a `.dynstr`
    /// offset, as a `DT_VERNEED` entry's `vn_file`): the same offset (linkers write the name
    /// once) or, failing that, the same name.
    pub fn needed_index(&self, file: u32) -> Option<usize> {
        if let Some(i) = self.needed.iter().position(|&off| off == file) {
            return Some(i);
        }
        let name = self.bytes_at(file)?;
        self.needed.iter().position(|&off| self.bytes_at(off) == Some(name))
    }

    /// Whether the library defines the version `name` (ELF hash `hash`) that another library
    /// needs from it, as glibc's `match_symbol` answers it: every `DT_VERDEF` entry (the base
    /// one, the library's own name, too), by hash first, then by name. A library without
    /// `DT_VERDEF` answers yes, as glibc does (the other was linked against a build with
    /// versions). No allocation: called for every needed version of every library loaded.
    pub fn defines_version(&self, hash: u32, name: &[u8]) -> bool {
        let Some((mut at, num)) = self.verdef else { return true };
        for _ in 0..num.min(65535) {
            // Read without error when the library was loaded (`read_verdef`).
            let Ok(vd) = self.image.read_pod::<elf::Verdef<LE>>(at) else { return true };
            if vd.vd_hash.get(LE) == hash {
                let aux = self.image.read_pod::<elf::Verdaux<LE>>(at + u64::from(vd.vd_aux.get(LE)));
                if aux.is_ok_and(|a| self.bytes_at(a.vda_name.get(LE)) == Some(name)) {
                    return true;
                }
            }
            let next = vd.vd_next.get(LE);
            if next == 0 {
                break;
            }
            at += u64::from(next);
        }
        false
    }

    /// Calls `each` with every version the library needs (each `Vernaux` record of
    /// `DT_VERNEED`, in order, with its entry's file); stops at the first error `each` returns.
    /// The walk was bounded and its strings checked when the library was loaded
    /// (`read_verneed`).
    pub fn each_needed_version(&self, mut each: impl FnMut(NeededVersion) -> Result<()>) -> Result<()> {
        let Some((addr, num)) = self.verneed else { return Ok(()) };
        let mut walk = VerneedWalk::new(addr, num);
        while let Some((need, _)) = walk.next(&self.image)? {
            each(need)?;
        }
        Ok(())
    }

    /// `DT_RUNPATH` (or, without it, `DT_RPATH`) directories, unexpanded. An empty element of
    /// a list that is not empty (`/a::/b`, `/a:`) is the current directory, `.`, as glibc's
    /// `fillin_rpath` reads it; an empty string names no directory.
    pub fn runpath(&self) -> impl Iterator<Item = &str> + '_ {
        let list = self.runpath.and_then(|off| self.str_at(off).ok()).unwrap_or("");
        list.split(':').filter(move |_| !list.is_empty()).map(|d| if d.is_empty() { "." } else { d })
    }

    /// Whether [`Dynamic::runpath`] is a `DT_RPATH` (searched before `LD_LIBRARY_PATH`), not a
    /// `DT_RUNPATH` (searched after it).
    pub fn runpath_is_rpath(&self) -> bool {
        self.rpath
    }

    /// Which tag [`Dynamic::runpath`] comes from: a `DT_RUNPATH` counts even when it names no
    /// directory (`DT_RUNPATH=""`), as glibc tests the tag.
    pub(crate) fn path_list(&self) -> PathList {
        match (self.runpath, self.rpath) {
            (None, _) => PathList::None,
            (Some(_), true) => PathList::Rpath,
            (Some(_), false) => PathList::Runpath,
        }
    }

    /// Reads the dynamic section of a loaded image; the result owns the image.
    ///
    /// In phases: read the entries, refuse relocation kinds the loader does not do, then read
    /// and bound-check the string table, the symbol and hash tables, the relocation tables and
    /// the initializer arrays; last, check every string offset and read the version tables.
    pub fn read(image: Image, plan: &Plan) -> Result<Dynamic> {
        let entries = read_entries(&image, plan)?;
        let tags = &entries.tags;
        refuse_unsupported_relocations(tags, entries.flags)?;
        let strings = read_strings(&image, tags)?;
        let relocations = read_relocations(&image, tags)?;
        let symbols = read_symbols(&image, tags, &relocations)?;
        // Checked here, once: a bad size is an error at load, not a walk of an absurd count later.
        let init_array = read_array(&image, tags, elf::DT_INIT_ARRAY, elf::DT_INIT_ARRAYSZ)?;
        let fini_array = read_array(&image, tags, elf::DT_FINI_ARRAY, elf::DT_FINI_ARRAYSZ)?;
        let mut dy = Dynamic {
            needed: entries.needed,
            soname: strings.soname,
            runpath: strings.runpath,
            rpath: strings.rpath,
            strtab: strings.strtab,
            syms: symbols.syms,
            gnu_hash: symbols.gnu_hash,
            sysv_hash: symbols.sysv_hash,
            versym: symbols.versym,
            versions: Vec::new(),
            verdef: None,
            verneed: None,
            packed: relocations.packed,
            rela: relocations.rela,
            jmprel: relocations.jmprel,
            relr: relocations.relr,
            init: tags.get(elf::DT_INIT),
            fini: tags.get(elf::DT_FINI),
            init_array,
            fini_array,
            flags: entries.flags,
            flags_1: entries.flags_1,
            pltgot: tags.get(elf::DT_PLTGOT),
            bind_now: tags.get(elf::DT_BIND_NOW).is_some()
                || entries.flags & u64::from(elf::DF_BIND_NOW) != 0
                || entries.flags_1 & u64::from(elf::DF_1_NOW) != 0,
            aarch64_variant_pcs: entries.variant_pcs,
            symbolic: entries.symbolic || entries.flags & u64::from(elf::DF_SYMBOLIC) != 0,
            image,
        };
        for &off in &dy.needed {
            dy.check_str(off)?;
        }
        for off in [dy.soname, dy.runpath].into_iter().flatten() {
            dy.check_str(off)?;
        }
        if let (Some(addr), Some(num)) = (tags.get(elf::DT_VERDEF), tags.get(elf::DT_VERDEFNUM)) {
            read_verdef(&mut dy, addr, num)?;
            dy.verdef = Some((addr, num));
        }
        if let (Some(addr), Some(num)) = (tags.get(elf::DT_VERNEED), tags.get(elf::DT_VERNEEDNUM)) {
            read_verneed(&mut dy, addr, num)?;
            dy.verneed = Some((addr, num));
        }
        Ok(dy)
    }

    /// Whether the library has a `DT_VERSYM` table (symbol versions).
    pub fn has_versions(&self) -> bool {
        self.versym.len() > 0
    }

    /// Symbol `index`'s raw `DT_VERSYM` entry (version index and hidden bit), if the library
    /// has versions.
    pub fn versym(&self, index: u32) -> Option<u16> {
        self.image.get(&self.versym, index as usize).map(u16::from_le)
    }

    /// The version that symbol `index` has (defined) or asks for (undefined); `None` for
    /// unversioned (local/global) symbols.
    pub fn version_of(&self, index: u32) -> Option<(&Version, bool)> {
        let v = u16::from_le(self.image.get(&self.versym, index as usize)?);
        let hidden = v & 0x8000 != 0;
        let idx = v & 0x7fff;
        if idx <= 1 {
            return None;
        }
        self.versions.get(usize::from(idx))?.as_ref().map(|ver| (ver, hidden))
    }
}

/// The entries of `PT_DYNAMIC` the loader reads: the tags it keeps, `DT_NEEDED` in order,
/// `DT_FLAGS` and `DT_FLAGS_1`, and whether `DT_AARCH64_VARIANT_PCS` and `DT_SYMBOLIC` are there.
struct Entries {
    tags: Tags,
    needed: Vec<u32>,
    flags: u64,
    flags_1: u64,
    variant_pcs: bool,
    symbolic: bool,
}

/// Phase 1: the dynamic entries, up to `DT_NULL`.
fn read_entries(image: &Image, plan: &Plan) -> Result<Entries> {
    let Some((dyn_vaddr, dyn_size)) = plan.dynamic else {
        return Err(bad("no PT_DYNAMIC segment".into()));
    };
    if dyn_size > MAX_TABLE {
        return Err(bad(format!("PT_DYNAMIC is {dyn_size:#x} bytes")));
    }
    let mut out = Entries {
        tags: Tags::default(),
        needed: Vec::new(),
        flags: 0,
        flags_1: 0,
        variant_pcs: false,
        symbolic: false,
    };
    let entries: Table<elf::Dyn64<LE>> = image.table(dyn_vaddr, dyn_size / 16, false)?;
    for i in 0..entries.len() {
        let Some(d) = image.get(&entries, i) else { break };
        let tag = d.d_tag.get(LE) as u32;
        let val = d.d_val.get(LE);
        match tag {
            elf::DT_NULL => break,
            elf::DT_NEEDED => {
                out.needed.push(u32::try_from(val).map_err(|_| bad(format!("DT_NEEDED offset {val:#x}")))?)
            }
            elf::DT_FLAGS => out.flags = val,
            elf::DT_FLAGS_1 => out.flags_1 = val,
            DT_AARCH64_VARIANT_PCS => out.variant_pcs = true,
            elf::DT_SYMBOLIC => out.symbolic = true,
            _ => out.tags.insert(tag, val),
        }
    }
    Ok(out)
}

/// Phase 2: text relocations and `DT_REL` tables are refused before anything else is read.
fn refuse_unsupported_relocations(tags: &Tags, flags: u64) -> Result<()> {
    if tags.get(elf::DT_TEXTREL).is_some() || flags & u64::from(elf::DF_TEXTREL) != 0 {
        return Err(Error::new(
            "relocate",
            ErrorKind::UnsupportedRelocation,
            "the library has text relocations (DT_TEXTREL); rebuild it with -fPIC",
        ));
    }
    if tags.get(elf::DT_REL).is_some() || tags.get(DT_ANDROID_REL).is_some() {
        return Err(Error::new(
            "relocate",
            ErrorKind::UnsupportedRelocation,
            "DT_REL tables (without addends; DT_ANDROID_REL packs one) are not used on x86_64 or aarch64",
        ));
    }
    Ok(())
}

/// `.dynstr` and the offsets of the strings the loader names: `DT_SONAME` and the search path.
struct Strings {
    strtab: StrTab,
    soname: Option<u32>,
    runpath: Option<u32>,
    rpath: bool,
}

/// Which list a library's search entries come from: glibc searches a `DT_RPATH` before
/// `LD_LIBRARY_PATH` (and the loaders' with it), a `DT_RUNPATH` after it (and not the
/// loaders'), even when the `DT_RUNPATH` names no directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathList {
    /// Neither tag.
    None,
    /// `DT_RPATH` (without `DT_RUNPATH`).
    Rpath,
    /// `DT_RUNPATH`, empty or not.
    Runpath,
}

/// Phase 3: the string table (bounded, terminated) and the name and search-path offsets.
fn read_strings(image: &Image, tags: &Tags) -> Result<Strings> {
    let strtab = tags.get(elf::DT_STRTAB).ok_or_else(|| bad("no DT_STRTAB".into()))?;
    let strsz = tags.get(elf::DT_STRSZ).ok_or_else(|| bad("no DT_STRSZ".into()))?;
    if strsz > MAX_TABLE {
        return Err(bad(format!("DT_STRSZ {strsz:#x} is too large")));
    }
    let strtab = if image.writable(strtab, strsz) {
        StrTab::Copied(image.read(strtab, strsz)?.into_boxed_slice())
    } else {
        StrTab::Mapped(image.table::<u8>(strtab, strsz, true)?)
    };
    if strtab.bytes(image).last().is_some_and(|&b| b != 0) {
        return Err(bad("the last string of .dynstr is not terminated".into()));
    }
    let offset = |t: u32| -> Result<Option<u32>> {
        tags.get(t).map(|v| u32::try_from(v).map_err(|_| bad(format!("string offset {v:#x}")))).transpose()
    };
    let (soname, runpath) = (offset(elf::DT_SONAME)?, offset(elf::DT_RUNPATH)?);
    // glibc ignores DT_RPATH when DT_RUNPATH is present.
    let (runpath, rpath) = match runpath {
        Some(r) => (Some(r), false),
        None => (offset(elf::DT_RPATH)?, true),
    };
    Ok(Strings { strtab, soname, runpath, rpath })
}

/// The dynamic symbols, the hash tables that count them, and their version indexes.
struct Symbols {
    syms: Table<elf::Sym64<LE>>,
    gnu_hash: Option<GnuHash>,
    sysv_hash: Option<SysvHash>,
    versym: Table<u16>,
}

/// Phase 5: the hash tables (which tell how many symbols there are), the symbol table and
/// `DT_VERSYM`.
///
/// `DT_HASH` counts every symbol; `DT_GNU_HASH` only up to its last hashed one, and GNU ld
/// writes a table that hashes nothing with `symoffset` 1 and the imports after it (a library
/// that exports nothing: a plugin that registers itself from its constructor). Without
/// `DT_HASH`, the table also reaches the highest symbol a relocation names, when the image
/// holds it (glibc reads symbols by index without a count).
fn read_symbols(image: &Image, tags: &Tags, relocations: &Relocations) -> Result<Symbols> {
    let gnu_hash = tags.get(elf::DT_GNU_HASH).map(|addr| read_gnu_hash(image, addr)).transpose()?;
    let sysv_hash = tags.get(elf::DT_HASH).map(|addr| read_sysv_hash(image, addr)).transpose()?;
    let mut nsyms = match (&gnu_hash, &sysv_hash) {
        (_, Some(h)) => h.chains.len() as u64,
        (Some(g), None) => u64::from(g.symoffset) + g.chains.len() as u64,
        (None, None) => 0,
    };
    let mut syms = Table::empty();
    if let Some(symtab) = tags.get(elf::DT_SYMTAB) {
        let syment = tags.get(elf::DT_SYMENT).unwrap_or(24);
        if syment != 24 {
            return Err(bad(format!("DT_SYMENT is {syment}, expected 24")));
        }
        if nsyms.saturating_mul(24) > MAX_TABLE {
            return Err(bad("symbol table too large".into()));
        }
        syms = image.table(symtab, nsyms, false)?;
        if sysv_hash.is_none() {
            let referenced = relocations.symbols_named(image, tags.get(elf::DT_RELACOUNT).unwrap_or(0));
            // An index past the image stays out of range: the relocation pass names it.
            if referenced > nsyms && referenced.saturating_mul(24) <= MAX_TABLE {
                if let Ok(t) = image.table(symtab, referenced, false) {
                    (syms, nsyms) = (t, referenced);
                }
            }
        }
    }
    let versym = match tags.get(elf::DT_VERSYM) {
        Some(addr) => image.table(addr, nsyms, false)?,
        None => Table::empty(),
    };
    Ok(Symbols { syms, gnu_hash, sysv_hash, versym })
}

/// The relocation tables: `DT_ANDROID_RELA` (decoded), `DT_RELA`, `DT_JMPREL` and `DT_RELR`.
struct Relocations {
    packed: Vec<Rela>,
    rela: Table<elf::Rela64<LE>>,
    jmprel: Table<elf::Rela64<LE>>,
    relr: Table<u64>,
}

impl Relocations {
    /// One more than the highest symbol index a relocation names (0 if none does), the first
    /// `relative` entries of `DT_RELA` (`DT_RELACOUNT`: `R_*_RELATIVE`, no symbol) skipped.
    fn symbols_named(&self, image: &Image, relative: u64) -> u64 {
        let rela = (usize::try_from(relative).unwrap_or(usize::MAX).min(self.rela.len())..self.rela.len())
            .map_while(|i| image.get(&self.rela, i));
        let jmprel = (0..self.jmprel.len()).map_while(|i| image.get(&self.jmprel, i));
        let named = rela.chain(jmprel).map(|r| r.r_info.get(LE) >> 32);
        named.chain(self.packed.iter().map(|r| u64::from(r.sym))).max().map_or(0, |m| m + 1)
    }
}

/// Phase 4: the relocation tables, their entry sizes and kinds checked.
fn read_relocations(image: &Image, tags: &Tags) -> Result<Relocations> {
    let rela = match tags.get(elf::DT_RELA) {
        Some(addr) => {
            if tags.get(elf::DT_RELAENT).is_some_and(|e| e != 24) {
                return Err(bad("DT_RELAENT is not 24".into()));
            }
            rela_table(image, addr, tags.get(elf::DT_RELASZ).unwrap_or(0))?
        }
        None => Table::empty(),
    };
    let jmprel = match tags.get(elf::DT_JMPREL) {
        Some(addr) => {
            if tags.get(elf::DT_PLTREL).is_some_and(|t| t != u64::from(elf::DT_RELA)) {
                return Err(bad("DT_PLTREL is not DT_RELA".into()));
            }
            rela_table(image, addr, tags.get(elf::DT_PLTRELSZ).unwrap_or(0))?
        }
        None => Table::empty(),
    };
    // Android 9-10's names for DT_RELR, as bionic reads them (DT_RELR first if both are there).
    let relr = match (tags.get(DT_RELR), tags.get(DT_ANDROID_RELR)) {
        (Some(addr), _) => Some((addr, tags.get(DT_RELRSZ).unwrap_or(0), "DT_RELRSZ")),
        (None, Some(addr)) => {
            if tags.get(DT_ANDROID_RELRENT).is_some_and(|e| e != 8) {
                return Err(bad("DT_ANDROID_RELRENT is not 8".into()));
            }
            Some((addr, tags.get(DT_ANDROID_RELRSZ).unwrap_or(0), "DT_ANDROID_RELRSZ"))
        }
        (None, None) => None,
    };
    let relr = match relr {
        Some((addr, size, name)) => {
            if size > MAX_TABLE || !size.is_multiple_of(8) {
                return Err(bad(format!("{name} {size:#x}")));
            }
            image.table(addr, size / 8, false)?
        }
        None => Table::empty(),
    };
    let packed = match tags.get(DT_ANDROID_RELA) {
        Some(addr) => {
            let size = tags.get(DT_ANDROID_RELASZ).unwrap_or(0);
            if size > MAX_TABLE {
                return Err(bad(format!("DT_ANDROID_RELASZ {size:#x}")));
            }
            crate::packed::decode_rela(&image.read(addr, size)?).map_err(bad)?
        }
        None => Vec::new(),
    };
    Ok(Relocations { packed, rela, jmprel, relr })
}

/// Phase 6: an initializer or finalizer array (`tag`, its byte size in `size_tag`).
fn read_array(image: &Image, tags: &Tags, tag: u32, size_tag: u32) -> Result<Table<u64>> {
    match tags.get(tag) {
        Some(addr) => {
            let size = tags.get(size_tag).unwrap_or(0);
            if size > MAX_TABLE {
                return Err(bad(format!("array size {size:#x} (tag {tag:#x})")));
            }
            image.table(addr, size / 8, false)
        }
        None => Ok(Table::empty()),
    }
}

fn rela_table(image: &Image, addr: u64, size: u64) -> Result<Table<elf::Rela64<LE>>> {
    if size > MAX_TABLE || !size.is_multiple_of(24) {
        return Err(bad(format!("relocation table size {size:#x}")));
    }
    image.table(addr, size / 24, false)
}

/// A little-endian u32 at link-time `vaddr`.
fn read_u32(image: &Image, vaddr: u64) -> Result<u32> {
    Ok(u32::from_le_bytes(image.read_pod::<[u8; 4]>(vaddr)?))
}

fn read_sysv_hash(image: &Image, addr: u64) -> Result<SysvHash> {
    let (nbucket, nchain) = (u64::from(read_u32(image, addr)?), u64::from(read_u32(image, addr + 4)?));
    if (nbucket + nchain) * 4 > MAX_TABLE {
        return Err(bad("DT_HASH too large".into()));
    }
    let buckets = image.table(addr + 8, nbucket, false)?;
    let chains = image.table(addr + 8 + nbucket * 4, nchain, false)?;
    Ok(SysvHash { buckets, chains })
}

fn read_gnu_hash(image: &Image, addr: u64) -> Result<GnuHash> {
    let head: [u32; 4] = image.read_pod::<[[u8; 4]; 4]>(addr)?.map(u32::from_le_bytes);
    let (nbuckets, symoffset, bloom_size, bloom_shift) = (head[0], head[1], head[2], head[3]);
    if u64::from(nbuckets) * 4 > MAX_TABLE || u64::from(bloom_size) * 8 > MAX_TABLE {
        return Err(bad("DT_GNU_HASH too large".into()));
    }
    if bloom_size == 0 || !bloom_size.is_power_of_two() {
        return Err(bad(format!("DT_GNU_HASH bloom size {bloom_size} is not a power of two")));
    }
    let bloom_at = addr + 16;
    let bloom = image.table(bloom_at, u64::from(bloom_size), false)?;
    let buckets_at = bloom_at + u64::from(bloom_size) * 8;
    let buckets: Table<u32> = image.table(buckets_at, u64::from(nbuckets), false)?;
    let chains_at = buckets_at + u64::from(nbuckets) * 4;
    // The chain array has no stored length: walk from the last bucket to a chain end.
    let max = (0..buckets.len()).filter_map(|i| image.get(&buckets, i)).map(u32::from_le).max();
    let mut nchains = 0u64;
    if let Some(max) = max.filter(|&m| m >= symoffset) {
        let mut i = u64::from(max - symoffset);
        loop {
            let v = read_u32(image, chains_at + i * 4)?;
            i += 1;
            if v & 1 != 0 || i * 4 > MAX_TABLE {
                break;
            }
        }
        nchains = i;
    }
    let chains = image.table(chains_at, nchains, false)?;
    Ok(GnuHash { symoffset, bloom_shift, bloom, buckets, chains })
}

fn read_verdef(dy: &mut Dynamic, addr: u64, num: u64) -> Result<()> {
    let mut at = addr;
    for _ in 0..num.min(65535) {
        let vd = dy.image.read_pod::<elf::Verdef<LE>>(at)?;
        let idx = vd.vd_ndx.get(LE);
        let aux = vd.vd_aux.get(LE);
        let va = dy.image.read_pod::<elf::Verdaux<LE>>(at + u64::from(aux))?;
        if vd.vd_flags.get(LE) & elf::VER_FLG_BASE == 0 {
            let name = va.vda_name.get(LE);
            dy.check_str(name)?;
            let hash = vd.vd_hash.get(LE);
            set_version(dy, idx, Version { name, hash, len: AtomicU32::new(u32::MAX), file: None });
        }
        let next = vd.vd_next.get(LE);
        if next == 0 {
            break;
        }
        at += u64::from(next);
    }
    Ok(())
}

/// Records version index `idx` (the hidden bit is not part of an index).
fn set_version(dy: &mut Dynamic, idx: u16, v: Version) {
    let i = usize::from(idx & 0x7fff);
    if dy.versions.len() <= i {
        if dy.versions.capacity() <= i {
            dy.versions.reserve((i + 1).max(16) - dy.versions.len());
        }
        dy.versions.resize_with(i + 1, || None);
    }
    dy.versions[i] = Some(v);
}

/// The dynamic tags the loader reads (`DT_NEEDED` and `DT_FLAGS` are handled apart), each
/// kept once: a later entry of the same tag replaces an earlier one.
struct Tags([Option<u64>; 39]);

impl Default for Tags {
    fn default() -> Tags {
        Tags([None; 39])
    }
}

impl Tags {
    /// Where `tag` is kept, if the loader reads it.
    fn slot(tag: u32) -> Option<usize> {
        Some(match tag {
            elf::DT_TEXTREL => 0,
            elf::DT_REL => 1,
            elf::DT_STRTAB => 2,
            elf::DT_STRSZ => 3,
            elf::DT_SONAME => 4,
            elf::DT_RUNPATH => 5,
            elf::DT_RPATH => 6,
            elf::DT_GNU_HASH => 7,
            elf::DT_HASH => 8,
            elf::DT_SYMTAB => 9,
            elf::DT_SYMENT => 10,
            elf::DT_VERSYM => 11,
            elf::DT_RELA => 12,
            elf::DT_RELAENT => 13,
            elf::DT_RELASZ => 14,
            elf::DT_JMPREL => 15,
            elf::DT_PLTREL => 16,
            elf::DT_PLTRELSZ => 17,
            DT_RELR => 18,
            DT_RELRSZ => 19,
            elf::DT_INIT => 20,
            elf::DT_FINI => 21,
            elf::DT_INIT_ARRAY => 22,
            elf::DT_INIT_ARRAYSZ => 23,
            elf::DT_FINI_ARRAY => 24,
            elf::DT_FINI_ARRAYSZ => 25,
            elf::DT_VERDEF => 26,
            elf::DT_VERDEFNUM => 27,
            elf::DT_VERNEED => 28,
            elf::DT_VERNEEDNUM => 29,
            elf::DT_PLTGOT => 30,
            elf::DT_BIND_NOW => 31,
            DT_ANDROID_REL => 32,
            DT_ANDROID_RELA => 33,
            DT_ANDROID_RELASZ => 34,
            DT_ANDROID_RELR => 35,
            DT_ANDROID_RELRSZ => 36,
            DT_ANDROID_RELRENT => 37,
            elf::DT_RELACOUNT => 38,
            _ => return None,
        })
    }

    fn insert(&mut self, tag: u32, val: u64) {
        if let Some(i) = Tags::slot(tag) {
            self.0[i] = Some(val);
        }
    }

    fn get(&self, tag: u32) -> Option<u64> {
        let slot = Tags::slot(tag);
        debug_assert!(slot.is_some(), "dynamic tag {tag:#x} is read but not kept");
        self.0[slot?]
    }
}

fn read_verneed(dy: &mut Dynamic, addr: u64, num: u64) -> Result<()> {
    let mut walk = VerneedWalk::new(addr, num);
    while let Some((need, index)) = walk.next(&dy.image)? {
        dy.check_str(need.file)?;
        dy.check_str(need.name)?;
        let version =
            Version { name: need.name, hash: need.hash, len: AtomicU32::new(u32::MAX), file: Some(need.file) };
        set_version(dy, index, version);
    }
    Ok(())
}

/// A walk over the `Vernaux` records of `DT_VERNEED` (at `at`, `DT_VERNEEDNUM` entries), in
/// order, each with its entry's file. It borrows nothing between steps, so the parser may
/// change the [`Dynamic`] whose image it reads.
struct VerneedWalk {
    /// The next `Verneed` entry, while `entries_left` is not 0.
    at: u64,
    entries_left: u64,
    /// The current entry's file and its next `Vernaux` record, while `aux_left` is not 0.
    file: u32,
    aux_at: u64,
    aux_left: u16,
    records: u32,
}

impl VerneedWalk {
    /// Version indices have 15 bits: more records than that in all is a table made to make
    /// the walk long (65535 libraries of 65535 records each sharing one chain: 2^32 steps).
    const MAX_RECORDS: u32 = 65535;

    fn new(at: u64, num: u64) -> VerneedWalk {
        VerneedWalk { at, entries_left: num.min(65535), file: 0, aux_at: 0, aux_left: 0, records: 0 }
    }

    /// The next record and its version index (`vna_other`), or `None` at the end.
    fn next(&mut self, image: &Image) -> Result<Option<(NeededVersion, u16)>> {
        while self.aux_left == 0 {
            if self.entries_left == 0 {
                return Ok(None);
            }
            let vn = image.read_pod::<elf::Verneed<LE>>(self.at)?;
            self.file = vn.vn_file.get(LE);
            self.aux_at = self.at + u64::from(vn.vn_aux.get(LE));
            self.aux_left = vn.vn_cnt.get(LE);
            match vn.vn_next.get(LE) {
                0 => self.entries_left = 0,
                next => (self.entries_left, self.at) = (self.entries_left - 1, self.at + u64::from(next)),
            }
        }
        self.records += 1;
        if self.records > Self::MAX_RECORDS {
            return Err(bad(format!("DT_VERNEED holds more than {} version records", Self::MAX_RECORDS)));
        }
        let va = image.read_pod::<elf::Vernaux<LE>>(self.aux_at)?;
        match va.vna_next.get(LE) {
            0 => self.aux_left = 0,
            next => (self.aux_left, self.aux_at) = (self.aux_left - 1, self.aux_at + u64::from(next)),
        }
        let need = NeededVersion {
            file: self.file,
            name: va.vna_name.get(LE),
            hash: va.vna_hash.get(LE),
            weak: va.vna_flags.get(LE) & elf::VER_FLG_WEAK != 0,
        };
        Ok(Some((need, va.vna_other.get(LE))))
    }
}
