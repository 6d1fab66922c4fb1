//! The dynamic section and the tables it points to: strings, symbols, hash tables, versions,
//! relocation tables, initializers. Read from the loaded image, bounds-checked, copied.
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::executor::Image;
use crate::plan::Plan;
use object::elf;
use object::LittleEndian as LE;

/// Upper bound on any one table the loader copies (64 MiB): larger is malformed.
const MAX_TABLE: u64 = 64 << 20;

/// `DT_RELR`/`DT_RELRSZ` (packed relative relocations; not in object 0.36).
const DT_RELR: u32 = 36;
const DT_RELRSZ: u32 = 35;

fn bad(detail: String) -> Error {
    Error::new(ErrorKind::BadDynamic, "read dynamic section", detail)
}

/// One relocation with addend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rela {
    pub offset: u64,
    pub r_type: u32,
    pub sym: u32,
    pub addend: i64,
}

/// A dynamic symbol.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sym {
    pub name: u32,
    pub info: u8,
    pub other: u8,
    pub shndx: u16,
    pub value: u64,
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
    pub fn visibility(&self) -> u8 {
        self.other & 0x3
    }
}

/// The GNU hash table (`DT_GNU_HASH`).
#[derive(Debug, Clone)]
pub(crate) struct GnuHash {
    pub symoffset: u32,
    pub bloom_shift: u32,
    pub bloom: Vec<u64>,
    pub buckets: Vec<u32>,
    /// Chain values for symbols `symoffset..`.
    pub chains: Vec<u32>,
}

/// The SysV hash table (`DT_HASH`).
#[derive(Debug, Clone)]
pub(crate) struct SysvHash {
    pub buckets: Vec<u32>,
    pub chains: Vec<u32>,
}

/// What a version index (`DT_VERSYM`) means.
/// Names are offsets into `.dynstr`, checked (terminated, UTF-8) when the table is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Version {
    name: u32,
    /// For versions this library needs (`DT_VERNEED`): the library that provides it.
    file: Option<u32>,
}

/// The parsed dynamic section.
#[derive(Debug, Default)]
pub(crate) struct Dynamic {
    pub needed: Vec<String>,
    pub soname: Option<String>,
    pub runpath: Vec<String>,
    pub strtab: Vec<u8>,
    pub syms: Vec<Sym>,
    pub gnu_hash: Option<GnuHash>,
    pub sysv_hash: Option<SysvHash>,
    pub versym: Vec<u16>,
    /// Indexed by version index (`DT_VERSYM` values without the hidden bit).
    pub versions: Vec<Option<Version>>,
    pub rela: Vec<Rela>,
    pub jmprel: Vec<Rela>,
    pub relr: Vec<u64>,
    pub init: Option<u64>,
    pub init_array: Option<(u64, u64)>,
    pub fini: Option<u64>,
    pub fini_array: Option<(u64, u64)>,
    pub textrel: bool,
}

impl Dynamic {
    /// The NUL-terminated string at `off` in `.dynstr`.
    pub fn str_at(&self, off: u32) -> Result<&str> {
        let bytes =
            self.strtab.get(off as usize..).ok_or_else(|| bad(format!("string offset {off:#x} outside .dynstr")))?;
        let s = std::ffi::CStr::from_bytes_until_nul(bytes).map_err(|_| bad("unterminated string".into()))?;
        std::str::from_utf8(s.to_bytes()).map_err(|_| bad("string is not UTF-8".into()))
    }

    /// The NUL-terminated string at `off` in `.dynstr`, as a C string (no copy, no UTF-8
    /// check: what `dlsym` takes).
    pub fn cstr_at(&self, off: u32) -> Result<&std::ffi::CStr> {
        let bytes =
            self.strtab.get(off as usize..).ok_or_else(|| bad(format!("string offset {off:#x} outside .dynstr")))?;
        std::ffi::CStr::from_bytes_until_nul(bytes).map_err(|_| bad("unterminated string".into()))
    }

    /// The raw bytes of the string at `off` (without the NUL); `None` if out of range.
    pub fn bytes_at(&self, off: u32) -> Option<&[u8]> {
        self.cstr_at(off).ok().map(std::ffi::CStr::to_bytes)
    }

    /// The GNU hash of the string at `off`; `None` if out of range or unterminated.
    pub fn gnu_hash_at(&self, off: u32) -> Option<u32> {
        let mut h = 5381u32;
        for &c in self.strtab.get(off as usize..)? {
            if c == 0 {
                return Some(h);
            }
            h = h.wrapping_mul(33).wrapping_add(u32::from(c));
        }
        None
    }

    /// A version's name (checked when the version table was read).
    pub fn version_name(&self, v: &Version) -> &str {
        self.str_at(v.name).unwrap_or_default()
    }

    /// A version's name as a C string (for `dlvsym`).
    pub fn version_cname(&self, v: &Version) -> &std::ffi::CStr {
        self.cstr_at(v.name).unwrap_or_default()
    }

    /// For a needed version: the library `DT_VERNEED` names as its provider.
    pub fn version_file(&self, v: &Version) -> Option<&str> {
        v.file.and_then(|f| self.str_at(f).ok())
    }

    /// Name of symbol `index`, as a C string.
    pub fn sym_cname(&self, index: u32) -> Result<&std::ffi::CStr> {
        let sym = self.syms.get(index as usize).ok_or_else(|| bad(format!("symbol {index} out of range")))?;
        self.cstr_at(sym.name)
    }

    /// Name of symbol `index`.
    pub fn sym_name(&self, index: u32) -> Result<&str> {
        let sym = self.syms.get(index as usize).ok_or_else(|| bad(format!("symbol {index} out of range")))?;
        self.str_at(sym.name)
    }

    /// Reads the dynamic section of a loaded image.
    pub fn read(image: &Image, plan: &Plan) -> Result<Dynamic> {
        let Some((dyn_vaddr, dyn_size)) = plan.dynamic else {
            return Err(bad("no PT_DYNAMIC segment".into()));
        };
        if dyn_size > MAX_TABLE {
            return Err(bad(format!("PT_DYNAMIC is {dyn_size:#x} bytes")));
        }
        let mut tags = Tags::default();
        let mut nneeded = 0usize;
        let mut flags = 0u64;
        // Walked in place, twice (`DT_NEEDED` names are read once `.dynstr` is known).
        image.for_each_pod(dyn_vaddr, dyn_size / 16, |d: elf::Dyn64<LE>| {
            let tag = d.d_tag.get(LE) as u32;
            let val = d.d_val.get(LE);
            match tag {
                elf::DT_NULL => return false,
                elf::DT_NEEDED => nneeded += 1,
                elf::DT_FLAGS => flags = val,
                _ => tags.insert(tag, val),
            }
            true
        })?;
        let get = |t: u32| tags.get(t);
        let mut dy = Dynamic {
            textrel: get(elf::DT_TEXTREL).is_some() || flags & u64::from(elf::DF_TEXTREL) != 0,
            ..Dynamic::default()
        };
        if dy.textrel {
            return Err(Error::new(
                ErrorKind::UnsupportedRelocation,
                "relocate",
                "the library has text relocations (DT_TEXTREL); rebuild it with -fPIC",
            ));
        }
        let strtab = get(elf::DT_STRTAB).ok_or_else(|| bad("no DT_STRTAB".into()))?;
        let strsz = get(elf::DT_STRSZ).ok_or_else(|| bad("no DT_STRSZ".into()))?;
        if strsz > MAX_TABLE {
            return Err(bad(format!("DT_STRSZ {strsz:#x} is too large")));
        }
        dy.strtab = image.read(strtab, strsz)?;
        if nneeded > 0 {
            dy.needed.reserve_exact(nneeded);
            let mut failed = None;
            image.for_each_pod(dyn_vaddr, dyn_size / 16, |d: elf::Dyn64<LE>| {
                match d.d_tag.get(LE) as u32 {
                    elf::DT_NULL => return false,
                    elf::DT_NEEDED => {
                        let name = u32::try_from(d.d_val.get(LE))
                            .map_err(|_| bad("DT_NEEDED offset".into()))
                            .and_then(|off| dy.str_at(off).map(str::to_owned));
                        match name {
                            Ok(n) => dy.needed.push(n),
                            Err(e) => {
                                failed = Some(e);
                                return false;
                            }
                        }
                    }
                    _ => {}
                }
                true
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        if let Some(off) = get(elf::DT_SONAME) {
            dy.soname = Some(dy.str_at(off as u32)?.to_owned());
        }
        if let Some(off) = get(elf::DT_RUNPATH).or(get(elf::DT_RPATH)) {
            dy.runpath = dy.str_at(off as u32)?.split(':').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        }
        // Hash tables tell how many symbols there are.
        if let Some(addr) = get(elf::DT_GNU_HASH) {
            dy.gnu_hash = Some(read_gnu_hash(image, addr)?);
        }
        if let Some(addr) = get(elf::DT_HASH) {
            dy.sysv_hash = Some(read_sysv_hash(image, addr)?);
        }
        let nsyms = match (&dy.gnu_hash, &dy.sysv_hash) {
            (_, Some(h)) => h.chains.len() as u64,
            (Some(g), None) => u64::from(g.symoffset) + g.chains.len() as u64,
            (None, None) => 0,
        };
        if let Some(symtab) = get(elf::DT_SYMTAB) {
            let syment = get(elf::DT_SYMENT).unwrap_or(24);
            if syment != 24 {
                return Err(bad(format!("DT_SYMENT is {syment}, expected 24")));
            }
            let len = nsyms
                .checked_mul(24)
                .filter(|&l| l <= MAX_TABLE)
                .ok_or_else(|| bad("symbol table too large".into()))?;
            debug_assert_eq!(len, nsyms * 24);
            dy.syms = image.read_pods(symtab, nsyms, |s: elf::Sym64<LE>| Sym {
                name: s.st_name.get(LE),
                info: s.st_info,
                other: s.st_other,
                shndx: s.st_shndx.get(LE),
                value: s.st_value.get(LE),
            })?;
        }
        if let Some(addr) = get(elf::DT_VERSYM) {
            dy.versym = image.read_pods(addr, nsyms, u16::from_le_bytes)?;
        }
        if let (Some(addr), Some(num)) = (get(elf::DT_VERDEF), get(elf::DT_VERDEFNUM)) {
            read_verdef(image, &mut dy, addr, num)?;
        }
        if let (Some(addr), Some(num)) = (get(elf::DT_VERNEED), get(elf::DT_VERNEEDNUM)) {
            read_verneed(image, &mut dy, addr, num)?;
        }
        if let Some(addr) = get(elf::DT_RELA) {
            let size = get(elf::DT_RELASZ).unwrap_or(0);
            if get(elf::DT_RELAENT).is_some_and(|e| e != 24) {
                return Err(bad("DT_RELAENT is not 24".into()));
            }
            dy.rela = read_rela(image, addr, size)?;
        }
        if get(elf::DT_REL).is_some() {
            return Err(Error::new(
                ErrorKind::UnsupportedRelocation,
                "relocate",
                "DT_REL tables (without addends) are not used on x86_64",
            ));
        }
        if let Some(addr) = get(elf::DT_JMPREL) {
            if get(elf::DT_PLTREL).is_some_and(|t| t != u64::from(elf::DT_RELA)) {
                return Err(bad("DT_PLTREL is not DT_RELA".into()));
            }
            dy.jmprel = read_rela(image, addr, get(elf::DT_PLTRELSZ).unwrap_or(0))?;
        }
        if let Some(addr) = get(DT_RELR) {
            let size = get(DT_RELRSZ).unwrap_or(0);
            if size > MAX_TABLE || size % 8 != 0 {
                return Err(bad(format!("DT_RELRSZ {size:#x}")));
            }
            dy.relr = image.read_pods(addr, size / 8, u64::from_le_bytes)?;
        }
        dy.init = get(elf::DT_INIT);
        dy.fini = get(elf::DT_FINI);
        if let Some(addr) = get(elf::DT_INIT_ARRAY) {
            dy.init_array = Some((addr, get(elf::DT_INIT_ARRAYSZ).unwrap_or(0) / 8));
        }
        if let Some(addr) = get(elf::DT_FINI_ARRAY) {
            dy.fini_array = Some((addr, get(elf::DT_FINI_ARRAYSZ).unwrap_or(0) / 8));
        }
        Ok(dy)
    }

    /// The version that symbol `index` has (defined) or asks for (undefined); `None` for
    /// unversioned (local/global) symbols.
    pub fn version_of(&self, index: u32) -> Option<(&Version, bool)> {
        let v = *self.versym.get(index as usize)?;
        let hidden = v & 0x8000 != 0;
        let idx = v & 0x7fff;
        if idx <= 1 {
            return None;
        }
        self.versions.get(usize::from(idx))?.as_ref().map(|ver| (ver, hidden))
    }
}

fn read_rela(image: &Image, addr: u64, size: u64) -> Result<Vec<Rela>> {
    if size > MAX_TABLE || size % 24 != 0 {
        return Err(bad(format!("relocation table size {size:#x}")));
    }
    image.read_pods(addr, size / 24, |r: elf::Rela64<LE>| {
        let info = r.r_info.get(LE);
        Rela {
            offset: r.r_offset.get(LE),
            r_type: (info & 0xffff_ffff) as u32,
            sym: (info >> 32) as u32,
            addend: r.r_addend.get(LE),
        }
    })
}

fn read_sysv_hash(image: &Image, addr: u64) -> Result<SysvHash> {
    let head: [u32; 2] = image.read_pod::<[[u8; 4]; 2]>(addr)?.map(u32::from_le_bytes);
    let (nbucket, nchain) = (u64::from(head[0]), u64::from(head[1]));
    if (nbucket + nchain) * 4 > MAX_TABLE {
        return Err(bad("DT_HASH too large".into()));
    }
    let buckets = image.read_pods(addr + 8, nbucket, u32::from_le_bytes)?;
    let chains = image.read_pods(addr + 8 + nbucket * 4, nchain, u32::from_le_bytes)?;
    Ok(SysvHash { buckets, chains })
}

fn read_gnu_hash(image: &Image, addr: u64) -> Result<GnuHash> {
    let head: [u32; 4] = image.read_pod::<[[u8; 4]; 4]>(addr)?.map(u32::from_le_bytes);
    let (nbuckets, symoffset, bloom_size, bloom_shift) = (head[0], head[1], head[2], head[3]);
    if u64::from(nbuckets) * 4 > MAX_TABLE || u64::from(bloom_size) * 8 > MAX_TABLE {
        return Err(bad("DT_GNU_HASH too large".into()));
    }
    let bloom_at = addr + 16;
    let bloom: Vec<u64> = image.read_pods(bloom_at, u64::from(bloom_size), u64::from_le_bytes)?;
    let buckets_at = bloom_at + u64::from(bloom_size) * 8;
    let buckets = image.read_pods(buckets_at, u64::from(nbuckets), u32::from_le_bytes)?;
    let chains_at = buckets_at + u64::from(nbuckets) * 4;
    // The chain array has no stored length: walk from the last bucket to a chain end.
    let mut nchains = 0u64;
    if let Some(&max) = buckets.iter().max() {
        if max >= symoffset {
            let mut i = u64::from(max - symoffset);
            loop {
                let v = u32::from_le_bytes(image.read_pod::<[u8; 4]>(chains_at + i * 4)?);
                i += 1;
                if v & 1 != 0 || i * 4 > MAX_TABLE {
                    break;
                }
            }
            nchains = i;
        }
    }
    let chains = image.read_pods(chains_at, nchains, u32::from_le_bytes)?;
    if bloom_size == 0 || !bloom_size.is_power_of_two() {
        return Err(bad(format!("DT_GNU_HASH bloom size {bloom_size} is not a power of two")));
    }
    Ok(GnuHash { symoffset, bloom_shift, bloom, buckets, chains })
}

fn read_verdef(image: &Image, dy: &mut Dynamic, addr: u64, num: u64) -> Result<()> {
    let mut at = addr;
    for _ in 0..num.min(65535) {
        let vd = image.read_pod::<elf::Verdef<LE>>(at)?;
        let idx = vd.vd_ndx.get(LE);
        let aux = vd.vd_aux.get(LE);
        let va = image.read_pod::<elf::Verdaux<LE>>(at + u64::from(aux))?;
        if vd.vd_flags.get(LE) & elf::VER_FLG_BASE == 0 {
            let name = va.vda_name.get(LE);
            dy.str_at(name)?;
            set_version(dy, idx, Version { name, file: None });
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

/// The dynamic tags seen once each (`DT_NEEDED` and `DT_FLAGS` are kept apart): the standard
/// ones in an array, the few OS-specific ones (versions, GNU hash) in a short inline list that
/// spills to the heap only past [`HIGH_INLINE`] distinct tags.
struct Tags {
    low: [Option<u64>; 64],
    high: [(u32, u64); HIGH_INLINE],
    nhigh: usize,
    more: Vec<(u32, u64)>,
}

/// OS-specific tags kept without allocating.
const HIGH_INLINE: usize = 24;

impl Default for Tags {
    fn default() -> Tags {
        Tags { low: [None; 64], high: [(0, 0); HIGH_INLINE], nhigh: 0, more: Vec::new() }
    }
}

impl Tags {
    fn insert(&mut self, tag: u32, val: u64) {
        if let Some(slot) = self.low.get_mut(tag as usize) {
            *slot = Some(val);
            return;
        }
        if let Some(e) = self.high[..self.nhigh].iter_mut().chain(self.more.iter_mut()).find(|(t, _)| *t == tag) {
            e.1 = val;
        } else if self.nhigh < HIGH_INLINE {
            self.high[self.nhigh] = (tag, val);
            self.nhigh += 1;
        } else {
            self.more.push((tag, val));
        }
    }

    fn get(&self, tag: u32) -> Option<u64> {
        match self.low.get(tag as usize) {
            Some(v) => *v,
            None => self.high[..self.nhigh].iter().chain(self.more.iter()).find(|(t, _)| *t == tag).map(|&(_, v)| v),
        }
    }
}

fn read_verneed(image: &Image, dy: &mut Dynamic, addr: u64, num: u64) -> Result<()> {
    let mut at = addr;
    for _ in 0..num.min(65535) {
        let vn = image.read_pod::<elf::Verneed<LE>>(at)?;
        let file = vn.vn_file.get(LE);
        dy.str_at(file)?;
        let mut aux_at = at + u64::from(vn.vn_aux.get(LE));
        for _ in 0..vn.vn_cnt.get(LE) {
            let va = image.read_pod::<elf::Vernaux<LE>>(aux_at)?;
            let name = va.vna_name.get(LE);
            dy.str_at(name)?;
            set_version(dy, va.vna_other.get(LE), Version { name, file: Some(file) });
            let next = va.vna_next.get(LE);
            if next == 0 {
                break;
            }
            aux_at += u64::from(next);
        }
        let next = vn.vn_next.get(LE);
        if next == 0 {
            break;
        }
        at += u64::from(next);
    }
    Ok(())
}
