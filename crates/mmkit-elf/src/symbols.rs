//! Symbol lookup in a library's own dynamic symbol table: GNU hash (or SysV hash), versions.
#![deny(unsafe_code)]

use crate::dynamic::{Dynamic, Sym};
use object::elf;

/// The GNU hash function (`dl_new_hash`).
pub(crate) const fn gnu_hash(name: &[u8]) -> u32 {
    let mut h = 5381u32;
    let mut i = 0;
    while i < name.len() {
        h = h.wrapping_mul(33).wrapping_add(name[i] as u32);
        i += 1;
    }
    h
}

/// The SysV ELF hash function.
pub(crate) fn sysv_hash(name: &[u8]) -> u32 {
    let mut h = 0u32;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// What an exported symbol defines (its `STT_*` type, and `SHN_ABS`): what may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum SymbolKind {
    /// Code (`STT_FUNC`).
    Function,
    /// Code chosen at load time by a resolver (`STT_GNU_IFUNC`).
    Ifunc,
    /// Data (`STT_OBJECT`, `STT_COMMON`).
    Object,
    /// A thread-local variable (`STT_TLS`).
    ThreadLocal,
    /// An absolute value, not an address in the library (`SHN_ABS`: version names such as
    /// libz's `ZLIB_1.2.2`, link-time constants).
    Absolute,
    /// No type (`STT_NOTYPE`), or a definition of a library glibc loaded whose type it does not
    /// tell (its address is in no executable segment).
    Untyped,
}

impl SymbolKind {
    /// The kind of a defined symbol.
    pub(crate) fn of(sym: &Sym) -> SymbolKind {
        SymbolKind::from_st_info(sym.info, sym.shndx)
    }

    /// The kind from a symbol's `st_info` and `st_shndx`.
    pub(crate) fn from_st_info(info: u8, shndx: u16) -> SymbolKind {
        match info & 0xf {
            elf::STT_TLS => SymbolKind::ThreadLocal,
            _ if shndx == elf::SHN_ABS => SymbolKind::Absolute,
            elf::STT_FUNC => SymbolKind::Function,
            elf::STT_GNU_IFUNC => SymbolKind::Ifunc,
            elf::STT_OBJECT | elf::STT_COMMON => SymbolKind::Object,
            _ => SymbolKind::Untyped,
        }
    }

    /// Whether the symbol is code that may be called (`STT_FUNC` or `STT_GNU_IFUNC`).
    pub fn is_function(self) -> bool {
        matches!(self, SymbolKind::Function | SymbolKind::Ifunc)
    }

    /// What it is, for messages: "a data object", "an absolute symbol", ...
    pub fn describe(self) -> &'static str {
        match self {
            SymbolKind::Function => "a function",
            SymbolKind::Ifunc => "an IFUNC",
            SymbolKind::Object => "a data object (STT_OBJECT)",
            SymbolKind::ThreadLocal => "a thread-local variable (STT_TLS)",
            SymbolKind::Absolute => "an absolute symbol (SHN_ABS: a version name or a constant)",
            SymbolKind::Untyped => "a symbol without a type (STT_NOTYPE)",
        }
    }
}

/// Which version a lookup asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want<'a> {
    /// The default (non-hidden) version, or an unversioned symbol — what `dlsym` returns.
    Default,
    /// Exactly this version name (what a versioned reference asks for), as `dlvsym` does.
    Exact(&'a str),
    /// What a relocation without a version binds to, as glibc's `check_match` answers it
    /// (without `DL_LOOKUP_RETURN_NEWEST`): an unversioned definition, or one of the library's
    /// first version (index 2), hidden or not: the oldest, which a library linked before its
    /// dependency had versions was built against; else the only non-hidden versioned one.
    Unversioned,
}

impl<'a> Want<'a> {
    /// The version name asked for, if any (`dlvsym`'s; none for `dlsym`'s default).
    pub(crate) fn version(self) -> Option<&'a str> {
        match self {
            Want::Exact(v) => Some(v),
            Want::Default | Want::Unversioned => None,
        }
    }
}

/// Whether a lookup binds to a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    No,
    Yes,
    /// A definition of a version other than the first, not hidden, met by an unversioned
    /// reference: bound only if it is the library's only such one (glibc's `num_versions`).
    IfOnly,
}

/// Whether symbol `index` is a definition that a lookup may bind to.
fn matches(dy: &Dynamic, index: u32, sym: &Sym, name: &[u8], want: Want<'_>) -> Verdict {
    let yes = |b: bool| if b { Verdict::Yes } else { Verdict::No };
    if !sym.is_definition() || sym.bind() == elf::STB_LOCAL {
        return Verdict::No;
    }
    if !matches!(
        sym.kind(),
        elf::STT_FUNC | elf::STT_OBJECT | elf::STT_GNU_IFUNC | elf::STT_NOTYPE | elf::STT_TLS | elf::STT_COMMON
    ) {
        return Verdict::No;
    }
    if sym.visibility() == elf::STV_HIDDEN || sym.visibility() == elf::STV_INTERNAL {
        return Verdict::No;
    }
    if dy.bytes_at(sym.name) != Some(name) {
        return Verdict::No;
    }
    if let Want::Unversioned = want {
        return match dy.versym(index) {
            None => Verdict::Yes,
            Some(v) if v & 0x7fff < 3 => Verdict::Yes,
            Some(v) if v & 0x8000 == 0 => Verdict::IfOnly,
            Some(_) => Verdict::No,
        };
    }
    match (want, dy.version_of(index)) {
        (_, None) => Verdict::Yes,
        (Want::Exact(v), Some((ver, _))) => yes(dy.version_name(ver) == v),
        (_, Some((_, hidden))) => yes(!hidden),
    }
}

/// Finds the definition of `name` in the library's own table; returns the symbol index and
/// the symbol.
pub(crate) fn lookup(dy: &Dynamic, name: &str, want: Want<'_>) -> Option<(u32, Sym)> {
    // The only non-hidden definition of a later version an unversioned reference met, and
    // how many it met.
    let mut only: (Option<(u32, Sym)>, u32) = (None, 0);
    let found = lookup_in_chain(dy, name, want, &mut only);
    found.or(if only.1 == 1 { only.0 } else { None })
}

fn lookup_in_chain(
    dy: &Dynamic,
    name: &str,
    want: Want<'_>,
    only: &mut (Option<(u32, Sym)>, u32),
) -> Option<(u32, Sym)> {
    let mut verdict = |i: u32, sym: Sym| match matches(dy, i, &sym, name.as_bytes(), want) {
        Verdict::Yes => Some((i, sym)),
        Verdict::IfOnly => {
            only.1 += 1;
            only.0.get_or_insert((i, sym));
            None
        }
        Verdict::No => None,
    };
    let bytes = name.as_bytes();
    let image = &dy.image;
    if let Some(gh) = &dy.gnu_hash {
        let h = gnu_hash(bytes);
        let words = gh.bloom.len() as u32;
        let word = u64::from_le(image.get(&gh.bloom, ((h / 64) % words.max(1)) as usize)?);
        let mask = (1u64 << (h % 64)) | (1u64 << ((h >> (gh.bloom_shift % 32)) % 64));
        if word & mask != mask {
            return None;
        }
        let nbuckets = gh.buckets.len().max(1) as u32;
        let mut i = u32::from_le(image.get(&gh.buckets, (h % nbuckets) as usize)?);
        if i == 0 || i < gh.symoffset {
            return None;
        }
        loop {
            let chain = u32::from_le(image.get(&gh.chains, (i - gh.symoffset) as usize)?);
            if chain | 1 == h | 1 {
                let sym = dy.sym(i)?;
                if let Some(found) = verdict(i, sym) {
                    return Some(found);
                }
            }
            if chain & 1 != 0 {
                return None;
            }
            i = i.checked_add(1)?;
        }
    }
    if let Some(sh) = &dy.sysv_hash {
        let nbuckets = sh.buckets.len() as u32;
        if nbuckets == 0 {
            return None;
        }
        let h = sysv_hash(bytes);
        let mut i = u32::from_le(image.get(&sh.buckets, (h % nbuckets) as usize)?);
        let mut steps = 0;
        while i != 0 && steps <= sh.chains.len() {
            let sym = dy.sym(i)?;
            if let Some(found) = verdict(i, sym) {
                return Some(found);
            }
            i = u32::from_le(image.get(&sh.chains, i as usize)?);
            steps += 1;
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_reference_values() {
        // Values from the GNU hash and SysV hash specifications' examples.
        assert_eq!(gnu_hash(b""), 0x0000_1505);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(gnu_hash(b"exit"), 0x7c96_7e3f);
        assert_eq!(sysv_hash(b""), 0);
        assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
        assert_eq!(sysv_hash(b"exit"), 0x0006_cf04);
    }
}
