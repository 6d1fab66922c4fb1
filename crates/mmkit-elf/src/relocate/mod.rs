//! Relocation of an x86_64 shared object: `RELR`, `RELATIVE`, `64`, `GLOB_DAT`, `JUMP_SLOT`
//! (bound eagerly), `IRELATIVE`, and `DTPMOD64`/`DTPOFF64` for general-dynamic TLS.
//!
//! Everything else (`COPY`, `TPOFF64`, `TLSDESC`, PC-relative text relocations) is an error
//! that names the relocation and its symbol. This module and the executor are the only ones
//! with `unsafe`: here, calling IFUNC resolvers.

pub(crate) mod atexit;
pub(crate) mod tls;

use crate::dynamic::{Dynamic, Rela};
use crate::error::{Error, ErrorKind, Result};
use crate::image::{Image, Table};
use object::elf;

/// What a symbol reference resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A run-time address (0 for an undefined weak symbol).
    Addr(u64),
    /// An IFUNC: the run-time address of its resolver, to call once relocation is done.
    Ifunc(u64),
    /// A TLS symbol: the defining module's id and the symbol's offset in its block.
    Tls { module: u64, offset: u64 },
}

/// Name of an x86_64 relocation type, for messages.
pub(crate) fn reloc_name(t: u32) -> String {
    let name = match t {
        elf::R_X86_64_NONE => "R_X86_64_NONE",
        elf::R_X86_64_64 => "R_X86_64_64",
        elf::R_X86_64_PC32 => "R_X86_64_PC32",
        elf::R_X86_64_GOT32 => "R_X86_64_GOT32",
        elf::R_X86_64_PLT32 => "R_X86_64_PLT32",
        elf::R_X86_64_COPY => "R_X86_64_COPY",
        elf::R_X86_64_GLOB_DAT => "R_X86_64_GLOB_DAT",
        elf::R_X86_64_JUMP_SLOT => "R_X86_64_JUMP_SLOT",
        elf::R_X86_64_RELATIVE => "R_X86_64_RELATIVE",
        elf::R_X86_64_32 => "R_X86_64_32",
        elf::R_X86_64_32S => "R_X86_64_32S",
        elf::R_X86_64_DTPMOD64 => "R_X86_64_DTPMOD64",
        elf::R_X86_64_DTPOFF64 => "R_X86_64_DTPOFF64",
        elf::R_X86_64_TPOFF64 => "R_X86_64_TPOFF64",
        elf::R_X86_64_TLSDESC => "R_X86_64_TLSDESC",
        elf::R_X86_64_IRELATIVE => "R_X86_64_IRELATIVE",
        elf::R_X86_64_PC64 => "R_X86_64_PC64",
        elf::R_X86_64_RELATIVE64 => "R_X86_64_RELATIVE64",
        _ => return format!("relocation type {t}"),
    };
    name.to_owned()
}

fn unsupported(dy: &Dynamic, r: &Rela, why: &str) -> Error {
    let sym =
        if r.sym == 0 { "no symbol".to_owned() } else { format!("symbol `{}`", dy.sym_name(r.sym).unwrap_or("?")) };
    Error::new(
        ErrorKind::UnsupportedRelocation,
        "relocate",
        format!("{} against {sym} at {:#x} is not supported{why}", reloc_name(r.r_type), r.offset),
    )
    .with_range(r.offset, 8)
}

/// Applies `DT_RELR`: packed relative relocations (`-z pack-relative-relocs`).
fn apply_relr(image: &Image, relr: &Table<u64>) -> Result<()> {
    let bias = image.bias();
    let mut next = 0u64;
    for entry in (0..relr.len()).map_while(|i| image.get(relr, i)).map(u64::from_le) {
        if entry & 1 == 0 {
            image.write_u64(entry, image.read_u64(entry)?.wrapping_add(bias))?;
            next = entry.wrapping_add(8);
        } else {
            let mut bits = entry >> 1;
            let mut at = next;
            while bits != 0 {
                if bits & 1 != 0 {
                    image.write_u64(at, image.read_u64(at)?.wrapping_add(bias))?;
                }
                bits >>= 1;
                at = at.wrapping_add(8);
            }
            next = next.wrapping_add(63 * 8);
        }
    }
    Ok(())
}

/// Calls an IFUNC resolver and returns the implementation it chose.
///
/// # Safety
/// `resolver` must be the run-time address of an IFUNC resolver of a relocated library.
pub(crate) unsafe fn call_ifunc_resolver(resolver: u64) -> u64 {
    type Resolver = unsafe extern "C" fn() -> u64;
    // SAFETY: the caller vouches this is a resolver (signature `void *(*)(void)`; x86_64
    // resolvers may take hwcap arguments but ignore extra ones by the ABI).
    unsafe { std::mem::transmute::<usize, Resolver>(resolver as usize)() }
}

/// Relocates a loaded image.
///
/// `resolve(sym_index)` binds a symbol reference (lookup order and versions are the library
/// module's business); `tls_module` is this library's TLS module id, if it has `PT_TLS`.
///
/// # Safety
/// IFUNC resolvers of the library (and resolved IFUNC symbols of its dependencies) are called:
/// the image must be fully mapped and its dependencies relocated.
pub(crate) unsafe fn relocate(
    dy: &Dynamic,
    resolve: &mut dyn FnMut(u32) -> Result<Target>,
    tls_module: Option<u64>,
) -> Result<()> {
    let image = &dy.image;
    apply_relr(image, &dy.relr)?;
    let bias = image.bias();
    // IRELATIVE and IFUNC-bound references run resolver code: do them last, when every other
    // relocation (the data a resolver may read) is in place.
    let mut deferred: Vec<(u64, u64, i64)> = Vec::new();
    for r in dy.relocations() {
        let r = &r;
        match r.r_type {
            elf::R_X86_64_NONE => {}
            elf::R_X86_64_RELATIVE => {
                image.write_u64(r.offset, bias.wrapping_add(r.addend as u64))?;
            }
            elf::R_X86_64_IRELATIVE => {
                deferred.push((r.offset, bias.wrapping_add(r.addend as u64), 0));
            }
            elf::R_X86_64_64 | elf::R_X86_64_GLOB_DAT | elf::R_X86_64_JUMP_SLOT => {
                let addend = if r.r_type == elf::R_X86_64_64 { r.addend } else { 0 };
                let target = if r.sym == 0 { Target::Addr(0) } else { resolve(r.sym)? };
                match target {
                    Target::Addr(a) => image.write_u64(r.offset, a.wrapping_add(addend as u64))?,
                    Target::Ifunc(resolver) => deferred.push((r.offset, resolver, addend)),
                    Target::Tls { .. } => {
                        return Err(unsupported(dy, r, " (it names a TLS symbol)"));
                    }
                }
            }
            elf::R_X86_64_DTPMOD64 => {
                let module = if r.sym == 0 {
                    tls_module
                } else {
                    match resolve(r.sym)? {
                        Target::Tls { module, .. } => Some(module),
                        _ => None,
                    }
                };
                let module = module
                    .ok_or_else(|| unsupported(dy, r, " (no TLS module of an mmkit-loaded library defines it)"))?;
                image.write_u64(r.offset, module)?;
            }
            elf::R_X86_64_DTPOFF64 => {
                let offset = if r.sym == 0 {
                    0
                } else {
                    match resolve(r.sym)? {
                        Target::Tls { offset, .. } => offset,
                        _ => return Err(unsupported(dy, r, " (the symbol is not TLS)")),
                    }
                };
                image.write_u64(r.offset, offset.wrapping_add(r.addend as u64))?;
            }
            elf::R_X86_64_COPY => {
                return Err(unsupported(dy, r, " (copy relocations belong in executables)"));
            }
            elf::R_X86_64_TPOFF64 => {
                return Err(unsupported(
                    dy,
                    r,
                    " (initial-exec TLS needs static TLS space; build with -fPIC and the \
                     default global-dynamic model)",
                ));
            }
            elf::R_X86_64_TLSDESC => {
                return Err(unsupported(dy, r, " (TLS descriptors; build with -mtls-dialect=gnu)"));
            }
            _ => return Err(unsupported(dy, r, "")),
        }
    }
    for (offset, resolver, addend) in deferred {
        // SAFETY: the address came from an IRELATIVE addend or an STT_GNU_IFUNC definition of
        // a relocated library (function contract).
        let chosen = unsafe { call_ifunc_resolver(resolver) };
        image.write_u64(offset, chosen.wrapping_add(addend as u64))?;
    }
    Ok(())
}
