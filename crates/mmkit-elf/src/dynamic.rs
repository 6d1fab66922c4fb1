//! The dynamic section and the tables it points to: strings, symbols, hash tables, versions,
//! relocation tables, initializers. Read from the loaded image, bounds-checked, copied.
#![deny(unsafe_code)]

use crate::error::{Error, ErrorKind, Result};
use crate::executor::Image;
use crate::plan::Plan;
use object::elf;
use object::pod;
use object::LittleEndian as LE;
use std::collections::HashMap;

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
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub name: String,
    /// For versions this library needs (`DT_VERNEED`): the library that provides it.
    pub file: Option<String>,
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
    pub versions: HashMap<u16, Version>,
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
        let bytes = self
            .strtab
            .get(off as usize..)
            .ok_or_else(|| bad(format!("string offset {off:#x} outside .dynstr")))?;
        let end = bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("unterminated string".into()))?;
        std::str::from_utf8(&bytes[..end]).map_err(|_| bad("string is not UTF-8".into()))
    }

    /// Name of symbol `index`.
    pub fn sym_name(&self, index: u32) -> Result<&str> {
        let sym = self
            .syms
            .get(index as usize)
            .ok_or_else(|| bad(format!("symbol {index} out of range")))?;
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
        let raw = image.read(dyn_vaddr, dyn_size - dyn_size % 16)?;
        let (entries, _) = pod::slice_from_bytes::<elf::Dyn64<LE>>(&raw, raw.len() / 16)
            .map_err(|()| bad("unreadable dynamic section".into()))?;
        let mut tags: HashMap<u32, u64> = HashMap::new();
        let mut needed_offs = Vec::new();
        let mut flags = 0u64;
        for d in entries {
            let tag = d.d_tag.get(LE) as u32;
            let val = d.d_val.get(LE);
            match tag {
                elf::DT_NULL => break,
                elf::DT_NEEDED => needed_offs.push(val),
                elf::DT_FLAGS => flags = val,
                _ => {
                    tags.insert(tag, val);
                }
            }
        }
        let get = |t: u32| tags.get(&t).copied();
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
        for off in needed_offs {
            let off = u32::try_from(off).map_err(|_| bad("DT_NEEDED offset".into()))?;
            dy.needed.push(dy.str_at(off)?.to_owned());
        }
        if let Some(off) = get(elf::DT_SONAME) {
            dy.soname = Some(dy.str_at(off as u32)?.to_owned());
        }
        if let Some(off) = get(elf::DT_RUNPATH).or(get(elf::DT_RPATH)) {
            dy.runpath = dy
                .str_at(off as u32)?
                .split(':')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
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
            let raw = image.read(symtab, len)?;
            let (syms, _) = pod::slice_from_bytes::<elf::Sym64<LE>>(&raw, nsyms as usize)
                .map_err(|()| bad("unreadable symbol table".into()))?;
            dy.syms = syms
                .iter()
                .map(|s| Sym {
                    name: s.st_name.get(LE),
                    info: s.st_info,
                    other: s.st_other,
                    shndx: s.st_shndx.get(LE),
                    value: s.st_value.get(LE),
                })
                .collect();
        }
        if let Some(addr) = get(elf::DT_VERSYM) {
            let raw = image.read(addr, nsyms * 2)?;
            dy.versym = raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
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
            let raw = image.read(addr, size)?;
            dy.relr = raw
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
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
        self.versions.get(&idx).map(|ver| (ver, hidden))
    }
}

fn read_rela(image: &Image, addr: u64, size: u64) -> Result<Vec<Rela>> {
    if size > MAX_TABLE || size % 24 != 0 {
        return Err(bad(format!("relocation table size {size:#x}")));
    }
    let raw = image.read(addr, size)?;
    let (relas, _) = pod::slice_from_bytes::<elf::Rela64<LE>>(&raw, (size / 24) as usize)
        .map_err(|()| bad("unreadable relocation table".into()))?;
    Ok(relas
        .iter()
        .map(|r| {
            let info = r.r_info.get(LE);
            Rela {
                offset: r.r_offset.get(LE),
                r_type: (info & 0xffff_ffff) as u32,
                sym: (info >> 32) as u32,
                addend: r.r_addend.get(LE),
            }
        })
        .collect())
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_sysv_hash(image: &Image, addr: u64) -> Result<SysvHash> {
    let head = u32s(&image.read(addr, 8)?);
    let (nbucket, nchain) = (u64::from(head[0]), u64::from(head[1]));
    if (nbucket + nchain) * 4 > MAX_TABLE {
        return Err(bad("DT_HASH too large".into()));
    }
    let buckets = u32s(&image.read(addr + 8, nbucket * 4)?);
    let chains = u32s(&image.read(addr + 8 + nbucket * 4, nchain * 4)?);
    Ok(SysvHash { buckets, chains })
}

fn read_gnu_hash(image: &Image, addr: u64) -> Result<GnuHash> {
    let head = u32s(&image.read(addr, 16)?);
    let (nbuckets, symoffset, bloom_size, bloom_shift) = (head[0], head[1], head[2], head[3]);
    if u64::from(nbuckets) * 4 > MAX_TABLE || u64::from(bloom_size) * 8 > MAX_TABLE {
        return Err(bad("DT_GNU_HASH too large".into()));
    }
    let bloom_at = addr + 16;
    let bloom: Vec<u64> = image
        .read(bloom_at, u64::from(bloom_size) * 8)?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let buckets_at = bloom_at + u64::from(bloom_size) * 8;
    let buckets = u32s(&image.read(buckets_at, u64::from(nbuckets) * 4)?);
    let chains_at = buckets_at + u64::from(nbuckets) * 4;
    // The chain array has no stored length: walk from the last bucket to a chain end.
    let mut nchains = 0u64;
    if let Some(&max) = buckets.iter().max() {
        if max >= symoffset {
            let mut i = u64::from(max - symoffset);
            loop {
                let v = u32s(&image.read(chains_at + i * 4, 4)?)[0];
                i += 1;
                if v & 1 != 0 || i * 4 > MAX_TABLE {
                    break;
                }
            }
            nchains = i;
        }
    }
    let chains = u32s(&image.read(chains_at, nchains * 4)?);
    if bloom_size == 0 || !bloom_size.is_power_of_two() {
        return Err(bad(format!(
            "DT_GNU_HASH bloom size {bloom_size} is not a power of two"
        )));
    }
    Ok(GnuHash {
        symoffset,
        bloom_shift,
        bloom,
        buckets,
        chains,
    })
}

fn read_verdef(image: &Image, dy: &mut Dynamic, addr: u64, num: u64) -> Result<()> {
    let mut at = addr;
    for _ in 0..num.min(65535) {
        let raw = image.read(at, 20)?;
        let (vd, _) =
            pod::from_bytes::<elf::Verdef<LE>>(&raw).map_err(|()| bad("verdef".into()))?;
        let idx = vd.vd_ndx.get(LE);
        let aux = vd.vd_aux.get(LE);
        let raw = image.read(at + u64::from(aux), 8)?;
        let (va, _) =
            pod::from_bytes::<elf::Verdaux<LE>>(&raw).map_err(|()| bad("verdaux".into()))?;
        let name = dy.str_at(va.vda_name.get(LE))?.to_owned();
        if vd.vd_flags.get(LE) & elf::VER_FLG_BASE == 0 {
            dy.versions.insert(idx, Version { name, file: None });
        }
        let next = vd.vd_next.get(LE);
        if next == 0 {
            break;
        }
        at += u64::from(next);
    }
    Ok(())
}

fn read_verneed(image: &Image, dy: &mut Dynamic, addr: u64, num: u64) -> Result<()> {
    let mut at = addr;
    for _ in 0..num.min(65535) {
        let raw = image.read(at, 16)?;
        let (vn, _) =
            pod::from_bytes::<elf::Verneed<LE>>(&raw).map_err(|()| bad("verneed".into()))?;
        let file = dy.str_at(vn.vn_file.get(LE))?.to_owned();
        let mut aux_at = at + u64::from(vn.vn_aux.get(LE));
        for _ in 0..vn.vn_cnt.get(LE) {
            let raw = image.read(aux_at, 16)?;
            let (va, _) =
                pod::from_bytes::<elf::Vernaux<LE>>(&raw).map_err(|()| bad("vernaux".into()))?;
            let name = dy.str_at(va.vna_name.get(LE))?.to_owned();
            dy.versions.insert(
                va.vna_other.get(LE),
                Version {
                    name,
                    file: Some(file.clone()),
                },
            );
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
